#!/bin/sh
# One device call for the optional int8 lm_head (--lm-head int8), planned but not yet run: no
# device was lent to the session that wrote it (2026-11-23). Run from the root of a checkout (the
# copy of the source tree on the GPU machine): sh kernels/dev/run_lmhead_device.sh X, where the
# carried folder X holds bins.tgz (stripped bitnet-chat, test_kernels_cuda, test_backend_cuda,
# test_lm_head_int8_cuda: ~28 MB packed), prose.txt (tests/data/lm_head/), lib.sh and
# test_lm_head_cli.sh (tests/cli/), so that it also works on a tree without this branch. Logs to
# $OUT. The int8 kernel tests first, then the numbers (bench: f16 vs int8 row and end-to-end
# tables, without the kernel table), the agreement on the demo model on the GPU, the CLI, and
# the full kernel and backend tests, each under a timeout (~4 minutes in all at most).
set -u
X=$(cd "${1:?carried folder}" && pwd)
D=/tmp/lmbin R=/tmp/lmroot
mkdir -p $D $R/tests/data/lm_head $R/tests/cli && tar xzf $X/bins.tgz -C $D || exit 1
ln -sf $PWD/assets $R/assets
cp $X/prose.txt $R/tests/data/lm_head/ && cp $X/lib.sh $X/test_lm_head_cli.sh $R/tests/cli/
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv >"$S" 2>&1
step() {
    n=$1 t=$2 log=$3
    shift 3
    t0=$(date +%s)
    timeout "$t" "$@" >"$OUT/$log" 2>&1
    echo "$n rc $? ($(( $(date +%s) - t0 )) s)" >>"$S"
}
step tkc_lm_head_i8 30 tkc_i8.txt $D/test_kernels_cuda lm_head_i8
step bench 80 bench.txt $D/bitnet-chat bench --backend cuda --quick --skip-kernels
step lm_head_int8_cuda 40 lmi8.txt env BN_DEMO_ROOT=$R $D/test_lm_head_int8_cuda cuda
step cli_cuda 20 cli.txt env BN_BIN=$D/bitnet-chat BN_SOURCE_DIR=$R sh $R/tests/cli/test_lm_head_cli.sh cuda
step test_backend_cuda 40 tbc.txt $D/test_backend_cuda
step test_kernels_cuda_full 45 tkc.txt $D/test_kernels_cuda
cat "$S"
echo ---; grep -E "int8 lm_head|FAIL|checks" "$OUT/tkc_i8.txt" | tail -12
echo ---; grep -B2 -A14 "lm_head f16 vs int8" "$OUT/bench.txt"; grep -E "^\| (64|512) \||Device memory|End to end" "$OUT/bench.txt"; grep -iE "error|bench:" "$OUT/bench.txt" | head -5
echo ---; tail -8 "$OUT/lmi8.txt"
echo ---; tail -4 "$OUT/cli.txt"; grep -E "FAIL|checks" "$OUT/tbc.txt" | tail -4; grep -E "FAIL|checks" "$OUT/tkc.txt" | tail -6
exit 0
