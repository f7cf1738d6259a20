#!/bin/sh
# One device call for the lab kernel QKV + attention in one kernel (issue #12, session 10:
# kernels/dev/qkv_attention.cuh, lab kernels/dev/fuse_lab.cu; not in the product), from a prebuilt
# CUDA build folder (nothing is built on the device), at most DEADLINE seconds (100 unless set;
# every step under `timeout`, cut to the time left). From the root of a source copy:
#   sh kernels/dev/run_fuse10_device.sh BUILD
# BUILD holds tests/dev_fuse. Steps:
#   1. dev_fuse check: the fused kernel (through its launcher, per KV group, per query head)
#      against the product's QKV GEMV + attention, the CPU reference of the projection and a
#      double-precision attention reference (7 shapes, positions 0-511; CHECK lines);
#   2. dev_fuse time: us per layer, 30 decode layers of 2B-4T shapes, the product against the
#      fused settings at positions 0, 16, 63, 127, 255, 511 (TIME, BEST, LIMIT);
#   3. compute-sanitizer racecheck and memcheck over `dev_fuse san`.
# summary.txt goes to $OUT, every log to $OUT/logs.tar.xz.
set -u
T0=$(date +%s)
B=$(cd "${1:?build folder}" && pwd)
DEADLINE=${DEADLINE:-100}
S=$OUT/summary.txt
W=/tmp/f10
L=$W/logs
mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
step() { # name seconds log command...: cut to what the deadline leaves, skipped past it
    n=$1 t=$2 log=$L/$3
    shift 3
    rem=$((DEADLINE - ($(date +%s) - T0)))
    if [ $rem -lt 5 ]; then
        echo "$n: skipped (the call's time is spent)" >>"$S"
        return
    fi
    [ "$t" -gt "$rem" ] && t=$rem
    t0=$(date +%s)
    timeout "$t" "$@" >"$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
step "dev_fuse check" 30 check.txt $B/tests/dev_fuse check
grep -E "^CHECK|FAIL|refused|^check" $L/check.txt | head -30 >>"$S"
step "dev_fuse time" 30 time.txt $B/tests/dev_fuse time
grep -E "^time|^\| position|^TIME|^BEST|^LIMIT|FAIL|refused" $L/time.txt >>"$S"
for tool in racecheck memcheck; do
    step "$tool dev_fuse san" 25 san_$tool.txt compute-sanitizer --tool $tool $B/tests/dev_fuse san
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^check" $L/san_$tool.txt | tail -3 >>"$S"
done
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $W logs | xz >"$OUT/logs.tar.xz"
cat "$S"
