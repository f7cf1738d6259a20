#!/bin/sh
# One device call for the warpgroup-MMA prefill GEMM (version 5, kernels/dev/w2a8_gemm_wgmma.cuh;
# issue #12): the GEMM lab in its wgmma mode (`dev_w2a8_gemm wgmma 512 64`: version 5's tiles x
# splits 1..4 each checked exactly first, int32 and the float epilogues bit for bit, at the
# ragged shapes and at T = 512 and 64, then timed beside version 4's tiles 17 (splits 1..4) and 3 and the
# product's pick, the four 2B-4T shapes); where the folder has them, `test_kernels_cuda prefill`
# (the product's GEMM at the edges of both kernels' tiles, with the epilogues), and `bench --backend cuda --skip-kernels
# --quick` of bitnet-chat and bitnet-chat.base (prefill 64 / 512 and TTFT rows, new then base).
# Builds nothing. Run from the root of the source copy on the device machine (~1-4 minutes):
#   sh kernels/dev/run_wgmma_device.sh X [full]
# (full: also the whole test_kernels_cuda, ~1-3 minutes more)
# X holds wgmma.tar.xz, packed on the development machine (stripped, xz) by
#   cmake --build build --target dev_w2a8_gemm [test_kernels_cuda bitnet-chat]
#   sh kernels/dev/run_wgmma_device.sh --pack build X [BASELINE_BITNET_CHAT]
# (the lab alone is enough for the first call; BASELINE_BITNET_CHAT: a bitnet-chat built before
# the change, run beside the new one). Logs, the lab's output and summary.txt go to $OUT.
# Packed for the first call (lab only, branch wgmma at a4aef2b): /work/main/.xfer/wgmma, i.e.
#   sh kernels/dev/run_wgmma_device.sh .xfer/wgmma     (with /work/main/.xfer carried)
# and for a second call with the product launching the wgmma kernel (branch wgmma-promote: the
# lab, test_kernels_cuda, bitnet-chat built for 90a, and bitnet-chat.base, the same source built
# with -DCMAKE_CUDA_ARCHITECTURES=90, i.e. the mma.sync kernel at every shape): .xfer/wgmma2
set -u
if [ "${1:-}" = --pack ]; then
    B=${2:?build dir} X=${3:?output dir} BASE=${4:-}
    T=$(mktemp -d)
    mkdir -p "$T/wgmma" "$X"
    for f in tests/dev_w2a8_gemm tests/test_kernels_cuda bitnet-chat; do
        [ -f "$B/$f" ] || continue
        cp "$B/$f" "$T/wgmma/" && strip "$T/wgmma/$(basename $f)" || exit 1
    done
    [ -f "$T/wgmma/dev_w2a8_gemm" ] || { echo "no $B/tests/dev_w2a8_gemm"; exit 1; }
    if [ -n "$BASE" ]; then cp "$BASE" "$T/wgmma/bitnet-chat.base" && strip "$T/wgmma/bitnet-chat.base" || exit 1; fi
    tar cf - -C "$T" wgmma | xz -T2 -6 >"$X/wgmma.tar.xz" || exit 1
    rm -rf "$T"
    ls -la "$X"
    exit 0
fi
X=$(cd "${1:?carried folder}" && pwd)
S=$OUT/summary.txt
tar xJf "$X/wgmma.tar.xz" -C /tmp || { echo "cannot unpack $X/wgmma.tar.xz"; exit 1; }
D=/tmp/wgmma
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader >"$S" 2>&1
. "$(dirname "$0")/device_step.sh" # step NAME SECONDS LOG COMMAND...
# the lab: every variant checked before it is timed; a failed version-5 variant is reported
# (where it differs) and left out, the others go on
step "dev_w2a8_gemm wgmma 512 64" 220 lab_wgmma.txt "$D/dev_w2a8_gemm" wgmma 512 64
grep -E "FAILED|all versions exact|^BEST|four GEMMs|^  token" "$OUT/lab_wgmma.txt" | head -60 >>"$S"
echo "--- T shape version us (TOPS): version 4 tile 17 splits 1..4, tile 3, the product; version 5 tiles x splits" >>"$S"
grep -E "^\| gemm \| (4|5|product) " "$OUT/lab_wgmma.txt" | awk -F'|' '{printf "%s %s %s %s (%s)\n", $4, $5, $3, $6, $7}' | sed 's/  */ /g' >>"$S"
if [ -f "$D/test_kernels_cuda" ]; then
    step "test_kernels_cuda prefill" 90 kprefill.txt "$D/test_kernels_cuda" prefill
    grep -E "FAIL|checks" "$OUT/kprefill.txt" | head -10 >>"$S"
    if [ "${2:-}" = full ]; then
        step "test_kernels_cuda" 240 kernels.txt "$D/test_kernels_cuda"
        grep -E "FAIL|checks" "$OUT/kernels.txt" | head -10 >>"$S"
    fi
fi
for bin in bitnet-chat bitnet-chat.base; do
    [ -f "$D/$bin" ] || continue
    step "bench $bin" 120 "bench_$bin.txt" "$D/$bin" bench --backend cuda --skip-kernels --quick
    grep -E "^\| (64|512) \| (16|64) \|" "$OUT/bench_$bin.txt" | head -3 | sed "s/^/$bin: /" >>"$S"
    grep -E "^\| (512|2000|4000) \| [0-9.]+ \| [0-9]+ \|$" "$OUT/bench_$bin.txt" | sed "s/^/$bin TTFT: /" >>"$S"
done
cat "$S"
exit 0
