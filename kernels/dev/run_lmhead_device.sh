#!/bin/sh
# One device call for the optional int8 lm_head (--lm-head int8), not yet run on a GPU: the
# device was not lent to the session that wrote it (2026-11-23). Run from the root of a checkout
# (the copy of the source tree on the GPU machine); $1 = a .tar.gz of the binaries bitnet-chat,
# test_kernels_cuda, test_backend_cuda, test_lm_head_int8_cuda (stripped: ~28 MB packed); logs
# to $OUT. Order: the numbers first (the f16 vs int8 row of bench, end-to-end tables without the
# kernel table), then the agreement on the demo model on the GPU, then the kernel and backend
# tests and the CLI test, each under a timeout.
set -u
D=/tmp/lmbin
mkdir -p $D && tar xzf "$1" -C $D || exit 1
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv >"$S" 2>&1
step() {  # step NAME TIMEOUT LOG CMD...
    n=$1 t=$2 log=$3
    shift 3
    t0=$(date +%s)
    timeout "$t" "$@" >"$OUT/$log" 2>&1
    echo "$n rc $? ($(( $(date +%s) - t0 )) s)" >>"$S"
}
step bench 150 bench.txt env BITNET_BENCH_SKIP_KERNELS=1 $D/bitnet-chat bench --backend cuda --quick
step test_lm_head_int8_cuda 60 lmi8.txt env BN_DEMO_ROOT=$PWD $D/test_lm_head_int8_cuda cuda
step test_kernels_cuda 150 tkc.txt $D/test_kernels_cuda
step test_backend_cuda 90 tbc.txt $D/test_backend_cuda
step test_lm_head_cli_cuda 30 cli.txt env BN_BIN=$D/bitnet-chat BN_SOURCE_DIR=$PWD sh tests/test_lm_head_cli.sh cuda
cat "$S"
echo ---; grep -A14 "lm_head f16 vs int8" "$OUT/bench.txt"; grep -E "^\| (64|512) \||Device memory" "$OUT/bench.txt"
echo ---; tail -7 "$OUT/lmi8.txt"
echo ---; grep -E "int8 lm_head|FAIL|checks" "$OUT/tkc.txt" | tail -15
echo ---; grep -E "FAIL|checks" "$OUT/tbc.txt" | tail -5; tail -3 "$OUT/cli.txt"
exit 0
