#!/bin/sh
# One device call for QKV + attention in one kernel (issue #12, session 10, "fuse10" helper:
# kernels/cuda/qkv_attention.cuh), from prebuilt binaries only (nothing is built on the device),
# at most ~115 s (each step under `timeout`, cut to the time left). Run from the root of a source
# copy of this branch, with the carried folder:
#   sh kernels/dev/run_fuse10_device.sh build/fuse10_carry
# The folder holds f10.tar.xz, made on the development machine by kernels/dev/pack_fuse10.sh:
# build/tests/{dev_fuse,test_fused_decode_cuda,test_backend_cuda,test_demo_golden_cuda,test_families_cuda,
# make_bench_model},
# build/bitnet-chat (this branch), build/fuse10_base/bitnet-chat (this branch with the fused
# kernel's limit set to 0: the decode graphs of main) and the Llama 3 tokenizer, stripped; their
# absolute paths name /work/wt-fuse10 (a link to this copy is made).
# Steps:
#   1. dev_fuse check: the fused kernel against the product's QKV GEMV + attention and a
#      double-precision reference (7 shapes, positions 0-511; CHECK lines);
#   2. dev_fuse time: us per layer, 30 decode layers of 2B-4T shapes, product vs fused variants at
#      positions 0, 16, 63, 127, 255, 511 (TIME, BEST, LIMIT);
#   3. the GPU tests the product path touches: test_fused_decode_cuda (decode across the fused
#      limit, five shapes, against the reference forward), test_demo_golden_cuda (greedy replies
#      identical to the CPU backend on the demo model), test_backend_cuda, test_families_cuda random;
#   4. bitnet-chat -p on a 2B-shaped GGUF with random weights (default sampling), base and this
#      build alternated: -n 100 after a short prompt (every step below the fused limit of 128)
#      twice, and -n 500 once; the rate line of each;
#   5. test_families_cuda random, then (with the time left) compute-sanitizer racecheck and
#      memcheck over `dev_fuse san`.
# summary.txt goes to $OUT, every log to $OUT/logs.tar.xz.
set -u
T0=$(date +%s)
X=$(cd "${1:?carried folder}" && pwd)
DEADLINE=${DEADLINE:-115}
S=$OUT/summary.txt
W=/tmp/f10
L=$W/logs
mkdir -p $L
mkdir -p /work
[ -e /work/wt-fuse10 ] || ln -s "$PWD" /work/wt-fuse10
tar xJf "$X/f10.tar.xz" -C /work/wt-fuse10 || { echo "cannot unpack f10.tar.xz" | tee "$S"; exit 1; }
B=/work/wt-fuse10/build
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
step "dev_fuse time" 40 time.txt $B/tests/dev_fuse time
grep -E "^time|^\| position|^TIME|^BEST|^LIMIT|FAIL|refused" $L/time.txt >>"$S"
cd $B/tests
step "test_fused_decode_cuda" 20 fused_decode.txt ./test_fused_decode_cuda
grep -E "limit|FAIL|passed|failed" $L/fused_decode.txt | tail -8 >>"$S"
step "test_demo_golden_cuda" 25 demo.txt ./test_demo_golden_cuda cuda
tail -3 $L/demo.txt >>"$S"
step "test_backend_cuda" 20 backend.txt ./test_backend_cuda
grep -E "FAIL|passed|failed|checks" $L/backend.txt | tail -3 >>"$S"
cd /work/wt-fuse10
step "make_bench_model" 20 make.txt $B/tests/make_bench_model $B/tokenizer-data/llama3/tokenizer.json $W/2b.gguf 2b
pp() { # name binary n
    rem=$((DEADLINE - ($(date +%s) - T0)))
    [ $rem -lt 12 ] && { echo "-p $1 -n $3: skipped (time)" >>"$S"; return; }
    timeout 12 "$2" -p "Tell me a long story about the sea." -n "$3" --model $W/2b.gguf --no-history --backend cuda \
        >/dev/null 2>$L/p_$1_$3.txt </dev/null
    echo "$1 -p -n $3: rc $? $(tail -1 $L/p_$1_$3.txt)" >>"$S"
}
pp base $B/fuse10_base/bitnet-chat 100
pp fused $B/bitnet-chat 100
pp fused $B/bitnet-chat 100
pp base $B/fuse10_base/bitnet-chat 100
pp base $B/fuse10_base/bitnet-chat 500
pp fused $B/bitnet-chat 500
cd $B/tests
step "test_families_cuda random" 30 families.txt ./test_families_cuda random
tail -3 $L/families.txt >>"$S"
# with what time is left: the fused kernel under compute-sanitizer (two shapes, two positions)
for tool in racecheck memcheck; do
    step "$tool dev_fuse san" 25 san_$tool.txt compute-sanitizer --tool $tool $B/tests/dev_fuse san
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^check" $L/san_$tool.txt | tail -3 >>"$S"
done
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $W logs | xz >"$OUT/logs.tar.xz"
cat "$S"
