#!/bin/sh
# One device call of the decode work (kernels/dev/README.md). Run from the root of a checkout (the
# copy of the source tree on the GPU machine); $1 = folder with the binaries (bitnet-chat,
# dev_w2a8_gemv, test_kernels_cuda, test_backend_cuda, test_demo_golden_cuda); logs go to $OUT.
# $2: BITNET_BENCH_VERSIONS list for the variants table ("-": no table); $3: phases, any of
#   lab (GEMV lab, versions 3-10), l2 (L2 prefetch study + L2-resident floors), tests (the four
#   GPU tests), sanitize (compute-sanitizer memcheck over test_kernels_cuda, test_backend_cuda),
#   pftests (test_backend_cuda with the L2 prefetch on), bench (bitnet-chat bench --backend cuda + the variants table), trace (decode timelines of the
#   variants in $4, one short run each, to $OUT/trace.txt).
set -u
D=$1
V=${2:--}
P=${3:-lab tests bench}
TV=${4:-}
S=$OUT/summary.txt
has() { case " $P " in *" $1 "*) return 0 ;; esac; return 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv >"$S" 2>&1
if has lab; then "$D/dev_w2a8_gemv" fast >"$OUT/lab.txt" 2>&1; echo "lab rc $?" >>"$S"; fi
if has l2; then "$D/dev_w2a8_gemv" l2 >"$OUT/l2.txt" 2>&1; echo "l2 rc $?" >>"$S"; fi
if has tests; then
    "$D/test_kernels_cuda" >"$OUT/tests.txt" 2>&1; echo "test_kernels_cuda rc $?" >>"$S"
    "$D/test_backend_cuda" >>"$OUT/tests.txt" 2>&1; echo "test_backend_cuda rc $?" >>"$S"
    BN_DEMO_ROOT=$PWD "$D/test_demo_golden_cuda" cuda >>"$OUT/tests.txt" 2>&1; echo "test_demo_golden_cuda rc $?" >>"$S"
    BN_BIN=$D/bitnet-chat BN_SOURCE_DIR=$PWD sh tests/cli/test_demo_golden_cli.sh cuda >>"$OUT/tests.txt" 2>&1
    echo "test_demo_golden_cli_cuda rc $?" >>"$S"
    grep -E "FAIL|worst error" "$OUT/tests.txt" | head -20 >>"$S"
fi
if has pftests; then  # the backend with the L2 prefetch on (both modes, into the lm_head too)
    for m in 0 1; do
        BITNET_CUDA_PREFETCH=1 BITNET_CUDA_PREFETCH_LM=1 BITNET_CUDA_PREFETCH_MODE=$m "$D/test_backend_cuda" >>"$OUT/tests.txt" 2>&1
        echo "test_backend_cuda, prefetch mode $m rc $?" >>"$S"
    done
fi
sanitize() {
    for t in test_kernels_cuda test_backend_cuda; do
        timeout 120 compute-sanitizer --tool memcheck "$D/$t" >"$OUT/memcheck_$t.txt" 2>&1
        echo "memcheck $t rc $?: $(grep 'ERROR SUMMARY' "$OUT/memcheck_$t.txt" | tail -1)" >>"$S"
    done
}
if has bench; then
    if [ "$V" = - ]; then "$D/bitnet-chat" bench --backend cuda >"$OUT/bench.txt" 2>&1
    else BITNET_BENCH_VERSIONS=$V "$D/bitnet-chat" bench --backend cuda >"$OUT/bench.txt" 2>&1; fi
    echo "bench rc $?" >>"$S"
fi
if has trace; then
    BITNET_BENCH_PROFILE=1 BITNET_CUDA_TRACE=$OUT/trace.txt BITNET_BENCH_VERSIONS=$TV "$D/bitnet-chat" bench --backend cuda >"$OUT/trace_bench.txt" 2>&1
    echo "trace rc $?" >>"$S"
fi
if has sanitize; then sanitize; fi  # last: slow
[ -f "$OUT/lab.txt" ] && grep -E "^\| (3|4|9|10) \|" "$OUT/lab.txt" | grep -vE "\| (7x128|1001x384) " >>"$S"
[ -f "$OUT/bench.txt" ] && grep -E "per layer|^\| (64|512) \||^\| [0-9]+ \| [0-9]+ \| [01]/[01]|^\| [0-9]+x[0-9]+ \|" "$OUT/bench.txt" >>"$S"
cat "$S"
[ -f "$OUT/l2.txt" ] && cat "$OUT/l2.txt"
[ -f "$OUT/trace.txt" ] && grep -vE "^\|---" "$OUT/trace.txt"
[ -f "$OUT/bench.txt" ] && grep -E "^\| [0-9]+ \| [0-9]+ \| [01]/[01]" "$OUT/bench.txt"
exit 0
