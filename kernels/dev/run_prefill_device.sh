#!/bin/sh
# One device call for the prefill work (GEMM split-K and tiles, norm+quant version 3): the GPU
# tests that cover prefill, the GEMM lab at T = 512 (every tile x split, each checked exactly
# before it is timed), `bench --backend cuda --skip-kernels --quick` (prefill 64 / 512 rows) and
# TTFT of `bitnet-chat -p` on a ~2000-token prompt (2B-shaped file, random weights), each for the
# new build and the baseline binary (the build before the change) alternated in the same run, and
# an Nsight Compute pass over five GEMM variants where ncu exists. Builds nothing. Run from the
# root of the source copy on the device machine:
#   sh kernels/dev/run_prefill_device.sh X [final|short]
# (final: compute-sanitizer memcheck and racecheck over `test_kernels_cuda prefill`, which runs
# the split GEMM, instead of the ncu pass; short, ~3 minutes: `test_kernels_cuda prefill`, the
# bench rows and -p TTFT only, the PDL experiment last)
# X holds build.tar.xz (a CUDA build folder made on the development machine as
# /work/wt-prefill-speed/build: the test files name that absolute path, so a link makes it valid
# here; only the binaries below, stripped, plus the CTestTestfile.cmake files), base.tar.xz
# (bitnet-chat and the lab built before the change: bitnet-chat.base, dev_w2a8_gemm.base;
# optionally bitnet-chat.pdl, the new build with the prefill chain launched with PDL, an
# experiment) and tokenizer.json.xz (the Llama 3 tokenizer, for the 2B-shaped file). Packed on
# the development machine by
#   sh kernels/dev/run_prefill_device.sh --pack BUILD_DIR BASE_DIR TOKENIZER_XZ X
# Logs and summary.txt go to $OUT.
set -u
if [ "${1:-}" = --pack ]; then
    B=${2:?build dir} BASE=${3:?baseline dir} TOK=${4:?tokenizer.json.xz} X=${5:?output dir}
    T=$(mktemp -d)
    mkdir -p "$T/build/tests" "$X"
    for f in bitnet-chat tests/test_kernels_cuda tests/test_backend_cuda tests/test_demo_golden_cuda \
        tests/test_families_cuda tests/make_bench_model tests/dev_w2a8_gemm; do
        cp "$B/$f" "$T/build/$f" && strip "$T/build/$f" || exit 1
    done
    (cd "$B" && find . -name CTestTestfile.cmake) | while read -r f; do
        mkdir -p "$T/build/$(dirname "$f")" && cp "$B/$f" "$T/build/$f"
    done
    tar cf - -C "$T" build | xz -T2 --lzma2=preset=6,dict=128MiB >"$X/build.tar.xz" || exit 1
    mkdir -p "$T/base" && cp "$BASE/bitnet-chat.base" "$BASE/dev_w2a8_gemm.base" "$T/base/" || exit 1
    [ -f "$BASE/bitnet-chat.pdl" ] && cp "$BASE/bitnet-chat.pdl" "$T/base/"
    strip "$T/base/"*
    tar cf - -C "$T" base | xz -T2 --lzma2=preset=6,dict=128MiB >"$X/base.tar.xz" || exit 1
    cp "$TOK" "$X/tokenizer.json.xz"
    rm -rf "$T"
    ls -la "$X"
    exit 0
fi
X=$(cd "${1:?carried folder}" && pwd)
MODE=${2:-}
S=$OUT/summary.txt
L=/tmp/logs # every log; packed into $OUT/logs.tar.xz at the end
mkdir -p $L
mkdir -p /work && { [ -e /work/wt-prefill-speed ] || ln -s "$PWD" /work/wt-prefill-speed; }
tar xJf "$X/build.tar.xz" -C /work/wt-prefill-speed || { echo "cannot unpack the build"; exit 1; }
tar xJf "$X/base.tar.xz" -C /tmp || { echo "cannot unpack the baseline"; exit 1; }
B=/work/wt-prefill-speed/build
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader >"$S" 2>&1
STEP_DIR=$L
. "$(dirname "$0")/device_step.sh" # step NAME SECONDS LOG COMMAND...
# correctness first: the GEMM (every tile the product picks, split-K at the small shapes, all
# epilogues) and norm+quant against the references; prefill against decode and the CPU; the
# demo golden replies; the model families (other K, head dims) on the GPU against the CPU
if [ "$MODE" = short ]; then
    step "test_kernels_cuda prefill" 60 kprefill.txt $B/tests/test_kernels_cuda prefill
    tail -2 "$L/kprefill.txt" >>"$S"
else
step "ctest prefill-related GPU tests" 180 gpu_tests.txt ctest --test-dir $B --output-on-failure --timeout 120 \
    -R '^(test_kernels_cuda|test_backend_cuda|test_demo_golden_cuda|test_demo_golden_cli_cuda|test_families_cuda_random)$'
grep -E "tests passed|\*\*\*|Passed|Failed|Not Run" "$L/gpu_tests.txt" | sed 's/^ *//' >>"$S"
fi
if [ "$MODE" = final ]; then
    for tool in memcheck racecheck; do
        step "$tool test_kernels_cuda prefill" 150 san_$tool.txt compute-sanitizer --tool $tool $B/tests/test_kernels_cuda prefill
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks" "$L/san_$tool.txt" | tail -2 >>"$S"
    done
fi
# the lab: exact check of every variant, then timings (T = 512, the four 2B shapes)
if [ "$MODE" != short ]; then
    step "lab new" 120 lab_new.txt $B/tests/dev_w2a8_gemm 512
    grep -E "^BEST|four GEMMs|rmsnorm_quant|attention v1|FAILED" "$L/lab_new.txt" >>"$S"
fi
# end to end: bench rows (prefill 64 / 512, median of 3 after a warm-up), new then base
bins="$B/bitnet-chat /tmp/base/bitnet-chat.base"
pdl=
[ -f /tmp/base/bitnet-chat.pdl ] && pdl=/tmp/base/bitnet-chat.pdl
[ "$MODE" = short ] || bins="$bins $pdl"
name_of() { case $1 in */bitnet-chat) echo new ;; *.base) echo base ;; *) echo pdl ;; esac; }
bench() { # binary
    name=$(name_of $1)
    step "bench $name" 120 bench_$name.txt $1 bench --backend cuda --skip-kernels --quick
    grep -E "^\| (64|512) \| (16|64) \|" "$L/bench_$name.txt" | head -3 | sed "s/^/$name: /" >>"$S"
    grep -E "^\| (512|2000|4000) \| [0-9.]+ \| [0-9]+ \|$" "$L/bench_$name.txt" | sed "s/^/$name TTFT: /" >>"$S"
}
for bin in $bins; do bench $bin; done
# TTFT through -p on a 2B-shaped file: ~2000- and ~500-token prompts, new and base alternated
xz -dc "$X/tokenizer.json.xz" >/tmp/tokenizer.json
step "make_bench_model" 150 make.txt $B/tests/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b
line="The quick brown fox jumps over the lazy dog near the river bank today."
yes "$line" | head -n 133 >/tmp/p2000.txt
yes "$line" | head -n 32 >/tmp/p512.txt
for round in 1 2; do
    for pr in p2000 p512; do
        for bin in $bins; do
            [ $pr = p512 ] && [ $round = 2 ] && continue
            name=$(name_of $bin)
            timeout 60 $bin -f /tmp/$pr.txt -n 4 --ctx 4096 --temp 0 --model /tmp/2b.gguf --no-history --backend cuda \
                >/dev/null 2>"$L/p.txt" </dev/null
            echo "round $round $name -p $pr: rc $? $(tail -1 $L/p.txt)" >>"$S"
        done
    done
done
# short: the PDL experiment last; else where the GEMM's time goes (ncu: stall reasons, issue
# slots, occupancy) for five variants
if [ "$MODE" = short ]; then
    [ -n "$pdl" ] && bench $pdl
elif [ "$MODE" = final ]; then
    :
elif command -v ncu >/dev/null 2>&1; then
    step "ncu lab prof" 90 ncu.txt ncu --kernel-name regex:w2a8_gemm_kernel4 --section SchedulerStats \
        --section WarpStateStats --section Occupancy --section ComputeWorkloadAnalysis --section LaunchStats \
        $B/tests/dev_w2a8_gemm prof
else
    echo "ncu: not found" >>"$S"
fi
tar cf - -C $L . | xz -6 >"$OUT/logs.tar.xz"
cp "$L/lab_new.txt" "$L/ncu.txt" "$OUT/" 2>/dev/null
cat "$S"
exit 0
