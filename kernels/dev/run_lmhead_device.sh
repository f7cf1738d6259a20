#!/bin/sh
# One device call for the int8 lm_head (--lm-head int8): the lab's versions against the f16 head
# and the card's streaming floors (dev_lm_head: each version checked against a CPU reference,
# then timed), the int8 kernel's tests, compute-sanitizer memcheck and racecheck over them, the
# int8-vs-f16 agreement on real text on the GPU (test_lm_head_int8_cuda: the demo model), the
# CLI, bench's lm_head table, and the full kernel and backend tests, each under a timeout, in
# order of importance; a step that would start after 500 s is skipped (the call's limit is 600).
# Run from the root of a source checkout on the GPU machine (any recent main: only its assets/
# and tests/ data are read): sh X/run_lmhead_device.sh X, where the carried folder X holds
# bins.tar.xz: build/bitnet-chat and build/tests/{dev_lm_head, test_kernels_cuda,
# test_lm_head_int8_cuda, test_backend_cuda}, stripped, from a CUDA build in
# /work/wt-lmhead-i8/build (their compiled-in source path /work/wt-lmhead-i8 is linked to the
# checkout here). Logs and summary.txt go to $OUT.
set -u
X=$(cd "${1:?carried folder}" && pwd)
D=/tmp/lmbin
mkdir -p $D && tar xJf "$X/bins.tar.xz" -C $D || { echo "cannot unpack $X/bins.tar.xz"; exit 1; }
B=$D/build
mkdir -p /work && { [ -e /work/wt-lmhead-i8 ] || ln -s "$PWD" /work/wt-lmhead-i8; }
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.used --format=csv >"$S" 2>&1
T0=$(date +%s)
step() { # name seconds log command...
    n=$1 t=$2 log=$3
    shift 3
    t0=$(date +%s)
    if [ $((t0 - T0)) -gt 500 ]; then
        echo "$n: skipped (time)" >>"$S"
        return
    fi
    timeout "$t" "$@" >"$OUT/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
step lab_2b 60 lab_2b.txt $B/tests/dev_lm_head
step tkc_lm_head_i8 30 tkc_i8.txt $B/tests/test_kernels_cuda lm_head_i8
step lm_head_int8_cuda 90 lmi8.txt env BN_DEMO_ROOT=$PWD $B/tests/test_lm_head_int8_cuda cuda
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
[ -n "$CS" ] || echo "compute-sanitizer: not found" >>"$S"
[ -n "$CS" ] && step memcheck 60 memcheck.txt "$CS" --tool memcheck --error-exitcode 9 $B/tests/test_kernels_cuda lm_head_i8
step cli_cuda 30 cli.txt env BN_BIN=$B/bitnet-chat BN_SOURCE_DIR=$PWD sh tests/cli/test_lm_head_cli.sh cuda
step bench 90 bench.txt $B/bitnet-chat bench --backend cuda --quick --skip-kernels
step lab_8b 60 lab_8b.txt $B/tests/dev_lm_head 128256 4096
step lab_ragged 40 lab_ragged.txt $B/tests/dev_lm_head 32001 2048
[ -n "$CS" ] && step racecheck 90 racecheck.txt "$CS" --tool racecheck --error-exitcode 9 $B/tests/test_kernels_cuda lm_head_i8
step test_kernels_cuda_full 60 tkc.txt $B/tests/test_kernels_cuda
step test_backend_cuda 60 tbc.txt $B/tests/test_backend_cuda
{
    echo "--- lab 128256 x 2560"; grep -E "^\||^FAIL|^grids|agree|FAILED|device" "$OUT/lab_2b.txt"
    echo "--- lab 128256 x 4096"; grep -E "^\||^FAIL|agree|FAILED" "$OUT/lab_8b.txt"
    echo "--- lab 32001 x 2048"; grep -E "^\||^FAIL|agree|FAILED" "$OUT/lab_ragged.txt"
    echo "--- kernel tests (int8)"; grep -E "int8 lm_head|FAIL|checks" "$OUT/tkc_i8.txt" | tail -8
    echo "--- sanitizers"; tail -3 "$OUT/memcheck.txt" 2>/dev/null; tail -3 "$OUT/racecheck.txt" 2>/dev/null
    echo "--- test_lm_head_int8_cuda"; grep -vE "greedy prompt" "$OUT/lmi8.txt" | tail -12
    echo "--- cli"; tail -3 "$OUT/cli.txt"
    echo "--- bench"; grep -B2 -A14 "lm_head f16 vs int8" "$OUT/bench.txt"; grep -iE "error|bench:" "$OUT/bench.txt" | head -5
    echo "--- full kernel / backend tests"; grep -E "FAIL|checks" "$OUT/tkc.txt" | tail -6; grep -E "FAIL|checks" "$OUT/tbc.txt" | tail -4
} >>"$S"
cat "$S"
exit 0
