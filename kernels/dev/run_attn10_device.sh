#!/bin/sh
# One device call for decode attention at every context length (issue #12, session 10): whether
# the spans kernel (kernels/cuda/attention_decode_long.cuh, kcuda_attn_decode from the head
# kernel's limit on) is right at every shape the GPU tests run, and the product against the other
# settings in place. Nothing is built on the device; every step runs under `timeout` and the whole
# call stays under DEADLINE seconds (95 unless set). Run from the root of a source copy:
#   sh kernels/dev/run_attn10_device.sh D
# D is either a CUDA build folder (-DCMAKE_CUDA_ARCHITECTURES=90) with tests/dev_attn_decode and
# tests/test_kernels_cuda, or a folder with those two binaries xz-compressed (dev_attn_decode.xz,
# test_kernels_cuda.xz).
# QUICK=quick (environment): step 1 checks the 2B-4T heads and the three shapes where the f16 P.V
# failed (64/64 hd 64, 32/32 hd 128, 16/2 hd 128) only (the 22 shapes took all of its 40 s in the
# first call, 2026-12-06 18:51), so that its timing runs.
# Steps:
#   1. dev_attn_decode attn10 (40 s at most): the product's entry points, the spans kernel alone,
#      the other settings and v3 checked against the double-precision host reference at 22 shapes
#      (GQA 1-8 and 12; head_dim 32, 48, 64, 66, 72, 80, 96, 100, 128, 256; contexts up to 8200),
#      then in place at 96 / 544 / 1100 / 2048 / 4095 (IN10, RATIO10 lines);
#   2. test_kernels_cuda attention_all (35 s at most): every decode attention test of ctest's
#      test_kernels_cuda, alone, with its time (the build whose `ctest -L gpu` did not finish in
#      150 s had the spans kernel in the product);
#   3. dev_attn_decode attn10k (what is left, 20 s at most, a process of its own): the same for
#      the spans kernel's cluster setting on tensor cores (never run before);
#   4. compute-sanitizer memcheck over `test_kernels_cuda attention` (the small set), if time is left.
# $OUT/summary.txt (also printed), $OUT/lab.txt, $OUT/attention_all.txt, $OUT/lab_k.txt,
# $OUT/memcheck.txt.
set -u
T0=$(date +%s)
X=$(cd "${1:?carried folder}" && pwd)
DEADLINE=${DEADLINE:-95}
S=$OUT/summary.txt
if [ -x "$X/tests/dev_attn_decode" ] && [ -x "$X/tests/test_kernels_cuda" ]; then
    B=$X/tests
else
    B=/tmp/a10
    mkdir -p $B
    for f in dev_attn_decode test_kernels_cuda; do
        xz -dc "$X/$f.xz" >$B/$f && chmod +x $B/$f || { echo "cannot unpack $f.xz" | tee "$S"; exit 1; }
    done
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
step() { # name seconds log command...: cut to what the deadline leaves, skipped past it
    n=$1 t=$2 log=$OUT/$3
    shift 3
    rem=$((DEADLINE - ($(date +%s) - T0)))
    if [ $rem -lt 8 ]; then
        echo "$n: skipped (the call's time is spent)" >>"$S"
        return
    fi
    [ "$t" -gt "$rem" ] && t=$rem
    t0=$(date +%s)
    timeout -k 3 "$t" "$@" >"$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s, limit $t s)" >>"$S"
}
step "dev_attn_decode attn10 ${QUICK:-}" 40 lab.txt $B/dev_attn_decode attn10 ${QUICK:-}
grep -E "^check|FAIL|refused|^CHECK10|^IN10|^RATIO10|^in place|rror" "$OUT/lab.txt" | head -80 >>"$S"
step "test_kernels_cuda attention_all" 35 attention_all.txt $B/test_kernels_cuda attention_all
grep -E "FAIL|passed|failed|rror|SKIP" "$OUT/attention_all.txt" | head -20 >>"$S"
echo "attention_all last lines:" >>"$S"
tail -3 "$OUT/attention_all.txt" >>"$S"
step "dev_attn_decode attn10k" 20 lab_k.txt $B/dev_attn_decode attn10k
grep -E "^check|FAIL|refused|^CHECK10|^IN10|^RATIO10|rror" "$OUT/lab_k.txt" | grep -v "by position, head" | head -40 >>"$S"
if command -v compute-sanitizer >/dev/null 2>&1; then
    step "memcheck test_kernels_cuda attention" 60 memcheck.txt compute-sanitizer --tool memcheck $B/test_kernels_cuda attention
    grep -E "ERROR SUMMARY|passed|failed" "$OUT/memcheck.txt" | tail -3 >>"$S"
fi
echo "total $(($(date +%s) - T0)) s" >>"$S"
cat "$S"
