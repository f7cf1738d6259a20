#!/bin/sh
# Packs a CUDA build folder for kernels/dev/run_release_device.sh: the files ctest needs
# (CTestTestfile.cmake, generated test data) and, of the executables, only those the device runs
# (bitnet-chat, the GPU tests' binaries, make_bench_model, bench_engine), stripped; CPU-only test
# binaries stay behind (each CUDA-linked binary is ~17 MB of fatbin, and xz over all of them took
# 10 minutes on the 2-core development machine). Usage, from the source root:
#   sh kernels/dev/pack_cuda_build.sh BUILD_DIR OUT.tar.xz
set -eu
B=${1:?build dir}
O=${2:?output .tar.xz}
T=$(mktemp -d)
keep="bitnet-chat tests/make_bench_model tests/bench_engine"
keep="$keep $(ctest --test-dir "$B" -L gpu --show-only=json-v1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
b = sys.argv[1].rstrip("/") + "/"
print(" ".join(sorted({a[len(b):] for t in d["tests"] for a in t["command"] if a.startswith(b)})))' "$(cd "$B" && pwd)")"
name=$(basename "$B")
mkdir -p "$T/$name"
(cd "$B" && find . -path ./CMakeFiles -prune -o -name CMakeFiles -prune -o -type f ! -name '*.o' ! -name '*.a' ! -name '.ninja*' -print) |
    while read -r f; do
        f=${f#./}
        elf=0
        if file "$B/$f" | grep -q ELF; then
            elf=1
            case " $keep " in *" $f "*) ;; *) continue ;; esac
        fi
        mkdir -p "$T/$name/$(dirname "$f")"
        cp "$B/$f" "$T/$name/$f"
        if [ $elf = 1 ]; then strip "$T/$name/$f"; fi
    done
tar cf - -C "$T" "$name" | xz -T2 --lzma2=preset=6,dict=192MiB >"$O"
rm -rf "$T"
ls -la "$O"
