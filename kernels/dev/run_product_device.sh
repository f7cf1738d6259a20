#!/bin/sh
# One device call for the GPU product path (issue #11): run from the root of a checkout (the
# copy of the source tree on the GPU machine, which provides assets/ and tests/data/):
#   sh kernels/dev/run_product_device.sh X [phases]
# X holds bins.tar.xz (bitnet-chat, bitnet-chat-old = the binary before the change, for the
# same-run baseline, and the GPU tests). Phases (default all): tests, sanitize, bench.
# Logs go to $OUT; summary.txt holds the exit codes and the figures.
set -u
X=$(cd "${1:?carried folder}" && pwd)
P=${2:-tests sanitize bench}
D=/tmp/gpbin
mkdir -p $D && tar xJf "$X/bins.tar.xz" -C $D || exit 1
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >"$S" 2>&1
has() { case " $P " in *" $1 "*) return 0 ;; esac; return 1; }
step() {
    n=$1 t=$2 log=$3
    shift 3
    t0=$(date +%s)
    timeout "$t" "$@" >"$OUT/$log" 2>&1
    echo "$n rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
if has tests; then
    step test_sample_cuda 120 tests.txt $D/test_sample_cuda
    step test_backend_cuda 45 tbc.txt $D/test_backend_cuda
    step test_kernels_cuda 60 tkc.txt $D/test_kernels_cuda
    [ -x $D/test_demo_golden_cuda ] && step test_demo_golden_cuda 45 golden.txt env BN_DEMO_ROOT=$PWD $D/test_demo_golden_cuda cuda
    step test_lm_head_int8_cuda 90 lmi8.txt env BN_DEMO_ROOT=$PWD $D/test_lm_head_int8_cuda cuda
    cat $OUT/tbc.txt $OUT/tkc.txt $OUT/golden.txt $OUT/lmi8.txt >>$OUT/tests.txt 2>/dev/null
    rm -f $OUT/tbc.txt $OUT/tkc.txt $OUT/golden.txt $OUT/lmi8.txt
fi
if has t; then
    step test_sample_cuda 45 tests.txt $D/test_sample_cuda
    step test_backend_cuda 20 tbc.txt $D/test_backend_cuda
    cat $OUT/tbc.txt >>$OUT/tests.txt 2>/dev/null
    rm -f $OUT/tbc.txt
fi
if has q; then
    step test_sample_cuda 60 tests.txt $D/test_sample_cuda
    step test_backend_cuda 30 tbc.txt $D/test_backend_cuda
    cat $OUT/tbc.txt >>$OUT/tests.txt 2>/dev/null
    rm -f $OUT/tbc.txt
    step bench 90 bench.txt $D/bitnet-chat bench --backend cuda --quick --skip-kernels
    cat "$S"
    step test_kernels_cuda 40 tkc.txt $D/test_kernels_cuda
    grep -E "FAIL|checks" $OUT/tkc.txt | tail -5 >>"$S"
fi
if has core; then
    step test_sample_cuda 90 tests.txt $D/test_sample_cuda
    step test_backend_cuda 40 tbc.txt $D/test_backend_cuda
    step test_kernels_cuda 70 tkc.txt $D/test_kernels_cuda
    cat $OUT/tbc.txt $OUT/tkc.txt >>$OUT/tests.txt 2>/dev/null
    rm -f $OUT/tbc.txt $OUT/tkc.txt
fi
if has benchq; then
    step bench 110 bench.txt $D/bitnet-chat bench --backend cuda --quick --skip-kernels
fi
if has bench || has benchq; then
    # the engine path with the default sampler on the demo model (smoke + stats line), new and old
    for b in bitnet-chat bitnet-chat-old; do
        step "prompt $b" 20 prompt_$b.txt $D/$b -p "Tell me about the sea." --model assets/bitnet-demo.gguf -n 200 --seed 1 --no-history --backend cuda
        tail -1 $OUT/prompt_$b.txt >>"$S"
    done
fi
if has bench; then
    step bench 150 bench.txt $D/bitnet-chat bench --backend cuda --quick
    step bench_old 90 bench_old.txt env BITNET_BENCH_SKIP_KERNELS=1 $D/bitnet-chat-old bench --backend cuda --quick
fi
if has san; then
    step memcheck_sample 40 san.txt compute-sanitizer --tool memcheck $D/test_sample_cuda quick
    grep -E "ERROR SUMMARY" $OUT/san.txt >>"$S"
fi
if has sanitize; then
    step memcheck_sample 60 san.txt compute-sanitizer --tool memcheck $D/test_sample_cuda quick
    step racecheck_backend 60 san2.txt compute-sanitizer --tool racecheck $D/test_backend_cuda
    step memcheck_backend 60 san3.txt compute-sanitizer --tool memcheck $D/test_backend_cuda
    cat $OUT/san2.txt $OUT/san3.txt >>$OUT/san.txt
    rm -f $OUT/san2.txt $OUT/san3.txt
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $OUT/san.txt >>"$S"
fi
grep -hE "FAIL|checks|differ|agreement|cuda vs cpu|wide nucleus|worst|error" $OUT/tests.txt 2>/dev/null | head -30 >>"$S"
cat "$S"
for f in bench.txt bench_old.txt; do
    [ -f $OUT/$f ] && { echo "--- $f"; grep -E "^\||Copy bandwidth|Device:|per layer" $OUT/$f | grep -v "^|--"; grep -iE "error|bench:" $OUT/$f | head -5; }
done
exit 0
