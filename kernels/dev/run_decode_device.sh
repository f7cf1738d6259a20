#!/bin/sh
# One device call of the decode work (kernels/dev/README.md): the GEMV lab, the GPU tests, and
# `bitnet-chat bench --backend cuda` with the decode variants table. Run from the root of a
# checkout (the copy of the source tree on the GPU machine); $1 = folder with the binaries
# (bitnet-chat, dev_w2a8_gemv, test_kernels_cuda, test_backend_cuda, test_demo_golden_cuda);
# logs go to $OUT. $2 (optional): BITNET_BENCH_VERSIONS list; $3: "sanitize" to also run
# compute-sanitizer memcheck over test_kernels_cuda and test_backend_cuda; "nolab" skips the lab.
set -u
D=$1
V=${2:-1}
X=${3:-}
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv >"$S" 2>&1
case "$X" in *nolab*) ;; *) "$D/dev_w2a8_gemv" fast >"$OUT/lab.txt" 2>&1; echo "lab rc $?" >>"$S" ;; esac
"$D/test_kernels_cuda" >"$OUT/tests.txt" 2>&1; echo "test_kernels_cuda rc $?" >>"$S"
"$D/test_backend_cuda" >>"$OUT/tests.txt" 2>&1; echo "test_backend_cuda rc $?" >>"$S"
BN_DEMO_ROOT=$PWD "$D/test_demo_golden_cuda" cuda >>"$OUT/tests.txt" 2>&1; echo "test_demo_golden_cuda rc $?" >>"$S"
BN_BIN=$D/bitnet-chat BN_SOURCE_DIR=$PWD sh tests/test_demo_golden_cli.sh cuda >>"$OUT/tests.txt" 2>&1
echo "test_demo_golden_cli_cuda rc $?" >>"$S"
case "$X" in *sanitize*)
    for t in test_kernels_cuda test_backend_cuda; do
        compute-sanitizer --tool memcheck --leak-check no "$D/$t" >"$OUT/memcheck_$t.txt" 2>&1
        echo "memcheck $t rc $? ($(grep -c 'ERROR SUMMARY: 0 errors' "$OUT/memcheck_$t.txt") clean summaries)" >>"$S"
    done ;;
esac
BITNET_BENCH_VERSIONS=$V "$D/bitnet-chat" bench --backend cuda >"$OUT/bench.txt" 2>&1; echo "bench rc $?" >>"$S"
grep -E "^\| (3|4|9|10) \|" "$OUT/lab.txt" 2>/dev/null | grep -vE "\| (7x128|1001x384) " >>"$S"
grep -E "per layer|^\| (64|512) \||^\| [0-9]+ \| [0-9]+ \| [01]/[01]" "$OUT/bench.txt" >>"$S"
grep -E "FAIL|worst error" "$OUT/tests.txt" | head -20 >>"$S"
cat "$S"
