#!/bin/sh
# One device call for decode attention speed (issue #11), from prebuilt binaries (nothing is
# built on the device). Run from the root of a source copy:
#   sh kernels/dev/run_attn_device.sh X [all|short] [arguments for dev_attn_decode all]
# Steps, each time-limited, in order of importance; a step that would start too late for the
# 6-minute budget is skipped and says so (short: step 1, `test_kernels_cuda attention`, step 4 and
# the two sanitizers over `test_kernels_cuda attention`, ~2-3 min):
#   1. dev_attn_decode all: every variant checked against the host reference, then timed alone
#      and inside 30 product decode layers at contexts 64..4064 (kernels/dev/attn_decode_lab.cu);
#   2. test_kernels_cuda: every kernel against its reference, decode attention included (the
#      product's configuration; contexts past 4096, every head_dim and GQA ratio);
#   3. compute-sanitizer memcheck and racecheck over `test_kernels_cuda attention` (the product's
#      kernel) and over `dev_attn_decode san` (one launch setting of every lab configuration);
#   4. `bitnet-chat bench --backend cuda --quick --skip-kernels` (decode by context end to end).
# X holds attn.tar.xz, made on the development machine in the worktree /work/wt-attn-speed after
# `cmake --build build --target bitnet-chat test_kernels_cuda dev_attn_decode`:
#   rm -rf /tmp/attn-pack && mkdir -p /tmp/attn-pack/build/tests &&
#   strip -o /tmp/attn-pack/build/bitnet-chat build/bitnet-chat &&
#   for t in test_kernels_cuda dev_attn_decode; do strip -o /tmp/attn-pack/build/tests/$t build/tests/$t; done &&
#   tar cf - -C /tmp/attn-pack build | xz -T2 --lzma2=preset=6,dict=64MiB >X/attn.tar.xz
# The binaries name /work/wt-attn-speed (BN_TEST_DATA and the like, compiled in), so the archive is
# unpacked at that path. Logs and summary.txt go to $OUT.
set -u
X=$(cd "${1:?carried folder}" && pwd)
MODE=${2:-all}
shift
[ $# -gt 0 ] && shift
# the rest: arguments for dev_attn_decode after "all" (e.g. only t256x64s2i,t128x64s2)
S=$OUT/summary.txt
W=/work/wt-attn-speed
T0=$(date +%s)
mkdir -p $W
if ! xz -dc "$X/attn.tar.xz" | tar xf - -C $W; then
    echo "cannot unpack $X/attn.tar.xz"
    exit 1
fi
B=$W/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
step() { # name seconds latest-start log command...
    n=$1 t=$2 late=$3 log=$4
    shift 4
    if [ $(($(date +%s) - T0)) -gt "$late" ]; then
        echo "$n: skipped (time)" >>"$S"
        return
    fi
    t1=$(date +%s)
    timeout "$t" "$@" >"$OUT/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t1)) s)" >>"$S"
}
LT=200
[ "$MODE" = short ] && LT=160
step "dev_attn_decode all $*" $LT 60 lab.txt $B/tests/dev_attn_decode all "$@"
grep -E "^device|^config|^check|^gemv|^RANK|^BASE|^BEST|^CONFIRM|^TRIG|^CARVE" "$OUT/lab.txt" >>"$S"
echo "lab FAIL lines: $(grep -c FAIL "$OUT/lab.txt")" >>"$S"
grep FAIL "$OUT/lab.txt" | head -5 >>"$S"
if [ "$MODE" = short ]; then
    step "test_kernels_cuda attention" 40 200 kernels.txt $B/tests/test_kernels_cuda attention
    grep -E "CHECK failed|checks|passed|failed" "$OUT/kernels.txt" | tail -4 >>"$S"
    step "bench --backend cuda --quick --skip-kernels" 60 100 bench.txt $B/bitnet-chat bench --backend cuda --quick --skip-kernels
    grep -A8 "^| context" "$OUT/bench.txt" | grep -vE "^\|[-|: ]+\|$" >>"$S"
    step "memcheck test_kernels_cuda attention" 40 120 memcheck.txt compute-sanitizer --tool memcheck $B/tests/test_kernels_cuda attention
    grep -E "ERROR SUMMARY|checks" "$OUT/memcheck.txt" | tail -2 >>"$S"
    step "racecheck test_kernels_cuda attention" 60 130 racecheck.txt compute-sanitizer --tool racecheck $B/tests/test_kernels_cuda attention
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|checks" "$OUT/racecheck.txt" | tail -3 >>"$S"
    echo "total $(($(date +%s) - T0)) s" >>"$S"
    cat "$S"
    exit 0
fi
step "test_kernels_cuda" 180 170 kernels.txt $B/tests/test_kernels_cuda
grep -E "CHECK failed|checks|passed|failed" "$OUT/kernels.txt" | tail -6 >>"$S"
step "memcheck test_kernels_cuda attention" 60 250 memcheck.txt compute-sanitizer --tool memcheck $B/tests/test_kernels_cuda attention
grep -E "ERROR SUMMARY|checks" "$OUT/memcheck.txt" | tail -2 >>"$S"
step "racecheck test_kernels_cuda attention" 100 260 racecheck.txt compute-sanitizer --tool racecheck $B/tests/test_kernels_cuda attention
grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|checks" "$OUT/racecheck.txt" | tail -3 >>"$S"
step "memcheck dev_attn_decode san" 60 290 memcheck_lab.txt compute-sanitizer --tool memcheck $B/tests/dev_attn_decode san
grep -E "ERROR SUMMARY|^san|FAIL" "$OUT/memcheck_lab.txt" | tail -3 >>"$S"
step "racecheck dev_attn_decode san" 80 280 racecheck_lab.txt compute-sanitizer --tool racecheck $B/tests/dev_attn_decode san
grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|^san|FAIL" "$OUT/racecheck_lab.txt" | tail -3 >>"$S"
step "bench --backend cuda --quick --skip-kernels" 120 240 bench.txt $B/bitnet-chat bench --backend cuda --quick --skip-kernels
grep -A8 "^| context" "$OUT/bench.txt" | grep -vE "^\|[-|: ]+\|$" >>"$S"
echo "total $(($(date +%s) - T0)) s" >>"$S"
cat "$S"
exit 0
