#!/bin/sh
# One device call for the screened exact lm_head (kernels/cuda/screen.cu, infer/backend_cuda.c):
# its GPU test in full, compute-sanitizer memcheck and racecheck over its kernels (the test's
# short mode), `bench --backend cuda --skip-kernels --quick` (decode by context and the lm_head
# table with the full and the screened f16 head from the same run, device memory), every other
# GPU ctest (they run the screened head: it is the default), then `bitnet-chat -p` on a 2B-shaped
# file with the default sampling settings and greedy. Each step is cut to the time left
# (DEADLINE seconds, 570 unless set). Builds nothing. Run from the root of the source copy on the
# device machine:
#   sh kernels/dev/run_screen_device.sh X
# X holds build.tar.xz: the CUDA build folder made on the development machine as
# /work/wt-gpu-screen/build, packed by kernels/dev/pack_cuda_build.sh (its test files name that
# absolute path, and the tests find the demo model under it, so a link makes both valid here).
# The Llama 3 tokenizer for the 2B-shaped file comes from this copy's tests/data. Logs and
# summary.txt go to $OUT.
set -u
T0=$(date +%s)
X=$(cd "${1:?carried folder}" && pwd)
S=$OUT/summary.txt
L=/tmp/logs # every log; packed into $OUT/logs.tar.xz at the end (few files come back)
mkdir -p $L
mkdir -p /work && { [ -e /work/wt-gpu-screen ] || ln -s "$PWD" /work/wt-gpu-screen; }
tar xJf "$X/build.tar.xz" -C /work/wt-gpu-screen || { echo "cannot unpack the build"; exit 1; }
B=/work/wt-gpu-screen/build
export BN_DEMO_ROOT="$PWD"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
DEADLINE=${DEADLINE:-570}
step() { # name seconds log command...: cut to what the deadline leaves, skipped past it
    n=$1 t=$2 log=$3
    shift 3
    rem=$((DEADLINE - ($(date +%s) - T0)))
    if [ $rem -lt 20 ]; then
        echo "$n: skipped (the call's time is spent)" >>"$S"
        return
    fi
    [ "$t" -gt "$rem" ] && t=$rem
    t0=$(date +%s)
    timeout "$t" "$@" >"$L/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
# (a)-(d): kernels at 2B width, then the demo model and a 2B-shaped random model side by side
step "test_screen_cuda" 200 screen.txt $B/tests/test_screen_cuda
grep -E "steps|bound /|tokens|exact rows|checks|FAIL" "$L/screen.txt" | head -60 >>"$S"
for tool in memcheck racecheck; do
    step "$tool test_screen_cuda short" 70 s_$tool.txt compute-sanitizer --tool $tool $B/tests/test_screen_cuda short
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks" "$L/s_$tool.txt" | tail -2 >>"$S"
done
step "bench --backend cuda --skip-kernels --quick" 170 bench.txt $B/bitnet-chat bench --backend cuda --skip-kernels --quick
step "ctest -L gpu (the others)" 150 gpu_tests.txt ctest --test-dir $B -L gpu -E test_screen_cuda --output-on-failure --timeout 120
grep -E "tests passed|\*\*\*|Passed|Failed|Not Run" "$L/gpu_tests.txt" | sed 's/^ *//' >>"$S"
# what a user gets: -p on a 2B-shaped file (random weights), the stats line from stderr
tar xJf tests/data/tokenizer/llama3-tokenizer.tar.xz -O llama3/tokenizer.json >/tmp/tokenizer.json 2>/dev/null
step "make_bench_model" 90 make.txt $B/tests/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b
for opts in "" "--temp 0 --repeat-penalty 1"; do
    [ $((DEADLINE - ($(date +%s) - T0))) -lt 30 ] && break
    timeout 30 $B/bitnet-chat -p "Tell me a long story about the sea." -n 500 --model /tmp/2b.gguf --no-history \
        --backend cuda $opts >/dev/null 2>"$L/p.txt" </dev/null
    echo "-p ${opts:-default sampling}: rc $? $(tail -1 $L/p.txt)" >>"$S"
done
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $L . | xz -6 >"$OUT/logs.tar.xz"
cp "$L/bench.txt" "$L/screen.txt" "$OUT/" 2>/dev/null
cat "$S"
echo "--- bench (lm_head and decode-by-context tables, memory)"
grep -vE "^\|[-|: ]+\|$" "$L/bench.txt" | grep -E "^\||Device memory|screened|tok/s" | tail -60
exit 0
