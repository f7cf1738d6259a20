#!/bin/sh
# One device call for QKV + attention in one kernel (issue #12, session 10, "fuse10" helper:
# kernels/cuda/qkv_attention.cuh), from prebuilt binaries only (nothing is built on the device),
# at most DEADLINE seconds (100 unless set; every step under `timeout`, cut to the time left).
# Run from the root of a source copy, in one of two forms:
#   sh kernels/dev/run_fuse10_device.sh BUILD [BASE]
#       BUILD: a CUDA build folder holding tests/dev_fuse, tests/make_bench_model, bitnet-chat and
#       tokenizer-data/llama3/tokenizer.json (the GPU tests are ctest's: not run here);
#       BASE (optional): a baseline bitnet-chat for the -p rows (e.g. main's).
#   sh kernels/dev/run_fuse10_device.sh CARRY
#       CARRY holds f10.tar.xz (kernels/dev/pack_fuse10.sh): the binaries above plus
#       test_fused_decode_cuda, test_demo_golden_cuda, test_backend_cuda, test_families_cuda and the
#       baseline fuse10_base/bitnet-chat (this branch with FUSE_UNTIL 0), unpacked under
#       /work/wt-fuse10/build (a link to this copy is made: the tests read their data there); the
#       tests then run here too.
# Steps:
#   1. dev_fuse check: the fused kernel (as built, per KV group, per query head) against the
#      product's QKV GEMV + attention, the CPU reference of the projection and a double-precision
#      attention reference (7 shapes, positions 0-511; CHECK lines);
#   2. dev_fuse time: us per layer, 30 decode layers of 2B-4T shapes, the product against the
#      fused settings at positions 0, 16, 63, 127, 255, 511 (TIME, BEST, LIMIT);
#   3. (CARRY form) test_fused_decode_cuda, test_demo_golden_cuda, test_backend_cuda;
#   4. bitnet-chat -p on a 2B-shaped GGUF with random weights (default sampling), BASE and this
#      build alternated: -n 100 after a short prompt (every step below the fused limit of 128)
#      twice each, -n 500 once each; the rate line of each;
#   5. with the time left: (CARRY form) test_families_cuda random, then compute-sanitizer
#      racecheck and memcheck over `dev_fuse san`.
# summary.txt goes to $OUT, every log to $OUT/logs.tar.xz.
set -u
T0=$(date +%s)
A=$(cd "${1:?build folder or carried folder}" && pwd)
DEADLINE=${DEADLINE:-100}
S=$OUT/summary.txt
W=/tmp/f10
L=$W/logs
mkdir -p $L
if [ -f "$A/f10.tar.xz" ]; then
    FORM=carry
    mkdir -p /work
    [ -e /work/wt-fuse10 ] || ln -s "$PWD" /work/wt-fuse10
    tar xJf "$A/f10.tar.xz" -C /work/wt-fuse10 || { echo "cannot unpack f10.tar.xz" | tee "$S"; exit 1; }
    B=/work/wt-fuse10/build
    BASE=$B/fuse10_base/bitnet-chat
else
    FORM=build
    B=$A
    BASE=${2:-}
    [ -n "$BASE" ] && BASE=$(cd "$(dirname "$BASE")" && pwd)/$(basename "$BASE")
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
echo "form $FORM, build $B, base ${BASE:-none}" >>"$S"
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
if [ $FORM = carry ]; then
    cd $B/tests
    step "test_fused_decode_cuda" 20 fused_decode.txt ./test_fused_decode_cuda
    grep -E "limit|FAIL|passed|failed" $L/fused_decode.txt | tail -8 >>"$S"
    step "test_demo_golden_cuda" 20 demo.txt ./test_demo_golden_cuda cuda
    tail -3 $L/demo.txt >>"$S"
    step "test_backend_cuda" 15 backend.txt ./test_backend_cuda
    grep -E "FAIL|passed|failed" $L/backend.txt | tail -3 >>"$S"
    cd - >/dev/null
fi
step "make_bench_model" 20 make.txt $B/tests/make_bench_model $B/tokenizer-data/llama3/tokenizer.json $W/2b.gguf 2b
pp() { # name binary n
    [ -x "$2" ] || return
    rem=$((DEADLINE - ($(date +%s) - T0)))
    [ $rem -lt 12 ] && { echo "-p $1 -n $3: skipped (time)" >>"$S"; return; }
    timeout 12 "$2" -p "Tell me a long story about the sea." -n "$3" --model $W/2b.gguf --no-history --backend cuda \
        >/dev/null 2>$L/p_$1_$3.txt </dev/null
    echo "$1 -p -n $3: rc $? $(tail -1 $L/p_$1_$3.txt)" >>"$S"
}
if [ -f $W/2b.gguf ]; then
    pp base "$BASE" 100
    pp fused $B/bitnet-chat 100
    pp fused $B/bitnet-chat 100
    pp base "$BASE" 100
    pp base "$BASE" 500
    pp fused $B/bitnet-chat 500
fi
if [ $FORM = carry ]; then
    cd $B/tests
    step "test_families_cuda random" 30 families.txt ./test_families_cuda random
    tail -3 $L/families.txt >>"$S"
    cd - >/dev/null
fi
for tool in racecheck memcheck; do
    step "$tool dev_fuse san" 25 san_$tool.txt compute-sanitizer --tool $tool $B/tests/dev_fuse san
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^check" $L/san_$tool.txt | tail -3 >>"$S"
done
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $W logs | xz >"$OUT/logs.tar.xz"
cat "$S"
