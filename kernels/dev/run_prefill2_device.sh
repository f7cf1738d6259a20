#!/bin/sh
# One device call for the prefill attention work (version 4: keys split over a cluster, q roped
# on load, a vectorized K/V kernel): correctness first, then times, each new beside the baseline
# in the same run. Builds nothing. Steps (~3-4 minutes on an H100):
#   1. dev_attn_prefill: version 4 at every split S = 1/2/4/8 and the product's pick against a
#      double-precision host reference at 20 shapes (ragged T, pos0 0 / odd / 1000, GQA 1-8,
#      head_dim 16-128, both RoPE styles), then timed beside versions 2/3 + their RoPE kernel
#      (the product before) at T = 512 from 0, 512 at 1536 (TTFT chunk), 18 at 512, 64, 512 at
#      512, and Llama3-8B's 32/8 heads;
#   2. GPU tests through ctest: test_kernels_cuda (attention prefill at every shape it has, the
#      new split-boundary cases), test_backend_cuda, test_families_cuda_* (prefill against the
#      CPU backend), test_attn_prefill_cuda;
#   3. `bitnet-chat bench --backend cuda --skip-kernels --quick` prefill and TTFT rows: new, base,
#      and the experiment pm1024 (new with prefill batches of 1024 tokens instead of 512);
#   4. TTFT of `bitnet-chat -f` on ~2000- and ~500-token prompts (2B-shaped file, random weights),
#      new, base, pm1024 and pm2048 (batches of 2048) alternated, two rounds.
# Run from the root of the source copy on the device machine:
#   sh kernels/dev/run_prefill2_device.sh X [final]
# (final: also compute-sanitizer memcheck and racecheck over `test_kernels_cuda prefill`, which
# runs the cluster-split kernel on tail chunks; ~1 minute more)
# X holds build.tar.xz (the CUDA build folder made on the development machine as
# /work/wt-prefill2/build: the CTest files name that absolute path, so a link makes it valid here;
# only the binaries below, stripped, plus the CTestTestfile.cmake files), base.tar.xz
# (bitnet-chat.base: the same tree with kernels/cuda/attention_prefill.cu[h] as on main before
# this work; bitnet-chat.pm1024 / .pm2048: the new tree with PREFILL_MAX 1024 / 2048 in
# infer/backend_cuda.c, optional) and tokenizer.json.xz (the Llama 3 tokenizer, for the 2B-shaped file). Packed on the
# development machine by
#   sh kernels/dev/run_prefill2_device.sh --pack BUILD_DIR BASE_DIR TOKENIZER_JSON X
# (BASE_DIR holds bitnet-chat.base and optionally bitnet-chat.pm1024, bitnet-chat.pm2048)
# (packed for the lead at /work/main/.xfer/prefill2: sh kernels/dev/run_prefill2_device.sh
# /path/to/prefill2, carrying that folder). Logs go to $OUT/logs.tar.xz, the lab's output to $OUT/lab.txt, the summary to $OUT/summary.txt.
set -u
if [ "${1:-}" = --pack ]; then
    B=${2:?build dir} BASE=${3:?baseline dir} TOK=${4:?tokenizer.json} X=${5:?output dir}
    T=$(mktemp -d)
    mkdir -p "$T/build/tests" "$X"
    for f in bitnet-chat tests/test_kernels_cuda tests/test_backend_cuda tests/test_families_cuda \
        tests/make_bench_model tests/dev_attn_prefill; do
        cp "$B/$f" "$T/build/$f" && strip "$T/build/$f" || exit 1
    done
    (cd "$B" && find . -name CTestTestfile.cmake) | while read -r f; do
        mkdir -p "$T/build/$(dirname "$f")" && cp "$B/$f" "$T/build/$f"
    done
    tar cf - -C "$T" build | xz -T2 -6 >"$X/build.tar.xz" || exit 1
    mkdir -p "$T/base" && cp "$BASE/bitnet-chat.base" "$T/base/" || exit 1
    for v in pm1024 pm2048; do [ -f "$BASE/bitnet-chat.$v" ] && cp "$BASE/bitnet-chat.$v" "$T/base/"; done
    strip "$T/base/"*
    tar cf - -C "$T" base | xz -T2 -6 >"$X/base.tar.xz" || exit 1
    xz -T2 -6 -c "$TOK" >"$X/tokenizer.json.xz" || exit 1
    rm -rf "$T"
    ls -la "$X"
    exit 0
fi
X=$(cd "${1:?carried folder}" && pwd)
MODE=${2:-}
S=$OUT/summary.txt
L=/tmp/logs # every log; packed into $OUT/logs.tar.xz at the end
mkdir -p $L
mkdir -p /work && { [ -e /work/wt-prefill2 ] || ln -s "$PWD" /work/wt-prefill2; }
tar xJf "$X/build.tar.xz" -C /work/wt-prefill2 || { echo "cannot unpack the build"; exit 1; }
tar xJf "$X/base.tar.xz" -C /tmp || { echo "cannot unpack the baseline"; exit 1; }
B=/work/wt-prefill2/build
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader >"$S" 2>&1
step() { # name seconds log command...
    n=$1 t=$2 log=$3
    shift 3
    t0=$(date +%s)
    timeout "$t" "$@" >"$L/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
# 1. the lab: every check, then the timings (it times nothing that failed its check)
step "dev_attn_prefill" 120 lab.txt $B/tests/dev_attn_prefill
grep -E "^device|^checks|FAILED|^\| time|all ok" "$L/lab.txt" >>"$S"
# 2. the GPU tests that run prefill attention
# (test_attn_prefill_cuda is step 1's check again: left out)
step "ctest GPU tests" 200 gpu_tests.txt ctest --test-dir $B --output-on-failure --timeout 180 \
    -R '^(test_kernels_cuda|test_backend_cuda|test_families_cuda_.*)$'
grep -E "tests passed|\*\*\*|Passed|Failed|Not Run" "$L/gpu_tests.txt" | sed 's/^ *//' >>"$S"
# the prefill attention checks' worst error against its bound (1.00 = at the bound)
grep -E "attention prefill .*worst" "$L/gpu_tests.txt" | sort -t= -k2 -n | tail -3 | sed 's/^/  worst: /' >>"$S"
if [ "$MODE" = final ]; then
    for tool in memcheck racecheck; do
        step "$tool test_kernels_cuda prefill" 120 san_$tool.txt compute-sanitizer --tool $tool $B/tests/test_kernels_cuda prefill
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks" "$L/san_$tool.txt" | tail -2 >>"$S"
    done
fi
# 3. bench rows: prefill and TTFT, new / base / pm1024
bench() { # binary name
    step "bench $2" 90 bench_$2.txt $1 bench --backend cuda --skip-kernels --quick
    grep -E "^\| (64|512) \| (16|64) \|" "$L/bench_$2.txt" | head -3 | sed "s/^/$2: /" >>"$S"
    grep -E "^\| (512|2000|4000) \| [0-9.]+ \| [0-9]+ \|$" "$L/bench_$2.txt" | sed "s/^/$2 TTFT: /" >>"$S"
    grep -A1 "^Device memory" "$L/bench_$2.txt" | tr '\n' ' ' | sed "s/^/$2: /" >>"$S"
    echo >>"$S"
}
bins="$B/bitnet-chat /tmp/base/bitnet-chat.base"
for v in pm1024 pm2048; do [ -f /tmp/base/bitnet-chat.$v ] && bins="$bins /tmp/base/bitnet-chat.$v"; done
name_of() { case $1 in */bitnet-chat) echo new ;; *.base) echo base ;; *.pm1024) echo pm1024 ;; *) echo pm2048 ;; esac; }
bench $B/bitnet-chat new
bench /tmp/base/bitnet-chat.base base
[ -f /tmp/base/bitnet-chat.pm1024 ] && bench /tmp/base/bitnet-chat.pm1024 pm1024
# 4. TTFT through -f on a 2B-shaped file, every binary alternated
xz -dc "$X/tokenizer.json.xz" >/tmp/tokenizer.json
step "make_bench_model" 120 make.txt $B/tests/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b
line="The quick brown fox jumps over the lazy dog near the river bank today."
yes "$line" | head -n 133 >/tmp/p2000.txt
yes "$line" | head -n 32 >/tmp/p512.txt
for round in 1 2; do
    for pr in p2000 p512; do
        [ $pr = p512 ] && [ $round = 2 ] && continue
        for bin in $bins; do
            name=$(name_of $bin)
            timeout 60 $bin -f /tmp/$pr.txt -n 4 --ctx 4096 --temp 0 --model /tmp/2b.gguf --no-history --backend cuda \
                >/tmp/out_$name.txt 2>"$L/p.txt" </dev/null
            echo "round $round $name -f $pr: rc $? $(tail -1 $L/p.txt)" >>"$S"
        done
        for name in base pm1024 pm2048; do
            [ -f /tmp/out_$name.txt ] || continue
            cmp -s /tmp/out_new.txt /tmp/out_$name.txt && r=identical || r=differ
            echo "  $pr: replies of new and $name $r" >>"$S"
        done
    done
done
tar cf - -C $L . | xz -6 >"$OUT/logs.tar.xz"
cp "$L/lab.txt" "$OUT/" 2>/dev/null
cat "$S"
exit 0
