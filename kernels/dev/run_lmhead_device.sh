#!/bin/sh
# One device call for the lm_head kernels (issue #11: the int8 head near the copy bandwidth):
# the lab's versions against the card's streaming floors (dev_lm_head at the 2B-4T head: each
# version checked against a CPU reference, then timed), every lm_head kernel test with
# compute-sanitizer memcheck (racecheck too when time is left), the int8-vs-f16 agreement on
# real text on the GPU (test_lm_head_int8_cuda: the demo model), the CLI, bench's lm_head table,
# and the full kernel and backend tests (the f16 head's activation layout changed too). Each step
# under a timeout, in order of importance; none is started after 400 s.
# Run from the root of a source checkout on the GPU machine (any recent main: only its assets/
# and tests/ data are read): sh X/run_lmhead_device.sh X, where the carried folder X holds
# bins.tar.xz: build/bitnet-chat and build/tests/{dev_lm_head, test_kernels_cuda,
# test_lm_head_int8_cuda, test_backend_cuda}, stripped, from a CUDA build in
# /work/wt-lmhead-i8/build (their compiled-in source path /work/wt-lmhead-i8 is linked to the
# checkout here). $OUT gets summary.txt (every table and test tail) and logs.tar.xz.
set -u
X=$(cd "${1:?carried folder}" && pwd)
D=/tmp/lmbin
mkdir -p $D && tar xJf "$X/bins.tar.xz" -C $D || { echo "cannot unpack $X/bins.tar.xz"; exit 1; }
B=$D/build
mkdir -p /work && { [ -e /work/wt-lmhead-i8 ] || ln -s "$PWD" /work/wt-lmhead-i8; }
S=$OUT/summary.txt
L=/tmp/lmlogs # every log; packed into $OUT/logs.tar.xz (few files come back)
mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.used --format=csv >"$S" 2>&1
T0=$(date +%s)
step() { # name seconds log command...
    n=$1 t=$2 log=$3
    shift 3
    t0=$(date +%s)
    if [ $((t0 - T0)) -gt 400 ]; then
        echo "$n: skipped (time)" >>"$S"
        return
    fi
    timeout "$t" "$@" >"$L/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
step lab_2b 60 lab_2b.txt $B/tests/dev_lm_head
step tkc_lm_head 60 tkc_lm.txt $B/tests/test_kernels_cuda lm_head
step lm_head_int8_cuda 90 lmi8.txt env BN_DEMO_ROOT=$PWD $B/tests/test_lm_head_int8_cuda cuda
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
[ -n "$CS" ] || echo "compute-sanitizer: not found" >>"$S"
[ -n "$CS" ] && step memcheck 90 memcheck.txt "$CS" --tool memcheck --error-exitcode 9 $B/tests/test_kernels_cuda lm_head
step test_kernels_cuda_full 60 tkc.txt $B/tests/test_kernels_cuda
step test_backend_cuda 60 tbc.txt $B/tests/test_backend_cuda
step cli_cuda 30 cli.txt env BN_BIN=$B/bitnet-chat BN_SOURCE_DIR=$PWD sh tests/cli/test_lm_head_cli.sh cuda
step bench 90 bench.txt $B/bitnet-chat bench --backend cuda --quick --skip-kernels
[ -n "$CS" ] && step racecheck 90 racecheck.txt "$CS" --tool racecheck --error-exitcode 9 $B/tests/test_kernels_cuda lm_head
{
    echo "--- lab 128256 x 2560"; grep -E "^\||^FAIL|agree|FAILED|device" "$L/lab_2b.txt"
    echo "--- kernel tests (lm_head)"; grep -E "lm_head|FAIL|checks" "$L/tkc_lm.txt" | tail -10
    echo "--- sanitizers"; tail -3 "$L/memcheck.txt" 2>/dev/null; tail -3 "$L/racecheck.txt" 2>/dev/null
    echo "--- test_lm_head_int8_cuda"; grep -vE "greedy prompt" "$L/lmi8.txt" | tail -12
    echo "--- full kernel / backend tests"; grep -E "FAIL|checks" "$L/tkc.txt" | tail -6; grep -E "FAIL|checks" "$L/tbc.txt" | tail -4
    echo "--- cli"; tail -3 "$L/cli.txt"
    echo "--- bench"; grep -B2 -A14 "lm_head f16 vs int8" "$L/bench.txt"; grep -iE "error|bench:" "$L/bench.txt" | head -5
} >>"$S"
tar cJf "$OUT/logs.tar.xz" -C $L . 2>/dev/null
cat "$S"
exit 0
