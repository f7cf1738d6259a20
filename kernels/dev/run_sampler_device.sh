#!/bin/sh
# One device call for the device sampler (kernels/cuda/sample.cu, issue 11): each launcher's time
# per draw (test_sample_cuda time: kcuda_sample_topk, kcuda_sample_sorted, kcuda_sample_argmax,
# event-timed), compute-sanitizer memcheck and racecheck over the new kernels
# (test_sample_cuda sanitize: kcuda_sample_topk and kcuda_sample_argmax only, a few dozen
# launches), the whole test_sample_cuda (every launcher against the host sampler), what a user
# gets (`bitnet-chat -p` decode figures on a 2B-shaped model file, random weights, 500 tokens,
# two rounds: the defaults, greedy with and without the penalty, top-k 257, past the top-k
# kernel's cap) and the sampling cost table of `bench` (its rows: the top-k kernel, the sort with the same
# filters). Builds nothing; keeps the whole call under ~9.5 minutes (a step that would not fit
# is cut short and says so). Run from the root of the source copy on the device machine (its
# assets/ hold the demo model):
#   sh kernels/dev/run_sampler_device.sh X [short]
# (short, ~3 minutes: test_sample_cuda quick instead of the whole test, no bench, one round of
# -p rows)
# X holds bins.tar.xz (stripped bitnet-chat, test_sample_cuda and make_bench_model from a CUDA
# build of this branch; optionally bitnet-chat.a, another build of bitnet-chat whose -p rows then
# run alternated with the new one, a baseline from the same run) and tokenizer.json.xz (the
# Llama 3 tokenizer, for the 2B-shaped file).
# The test binaries name the build's source folder (/work/wt-sampler-fast) for the demo model:
# a link to this tree makes it valid here (BN_DEMO_ROOT says the same). Logs and summary.txt go
# to $OUT; the summary is printed at the end.
set -u
X=$(cd "${1:?carried folder}" && pwd)
MODE=${2:-}
D=/tmp/sampler_bin
T0=$(date +%s)
BUDGET=570
mkdir -p $D && tar xJf "$X/bins.tar.xz" -C $D || { echo "cannot unpack $X/bins.tar.xz"; exit 1; }
mkdir -p /work && { [ -e /work/wt-sampler-fast ] || ln -s "$PWD" /work/wt-sampler-fast; }
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
step() { # name seconds log command...: the command under a timeout cut to what the budget leaves
    n=$1 t=$2 log=$3
    shift 3
    left=$((BUDGET - ($(date +%s) - T0)))
    if [ $left -lt 15 ]; then
        echo "$n: skipped (the call's time budget is spent)" >>"$S"
        return
    fi
    [ $t -gt $left ] && t=$left
    t1=$(date +%s)
    timeout "$t" "$@" >"$OUT/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t1)) s, limit $t)" >>"$S"
}
export BN_DEMO_ROOT="$PWD"
step "test_sample_cuda time" 60 time.txt $D/test_sample_cuda time
grep -E "^\||launcher time" "$OUT/time.txt" | grep -v -- "---" >>"$S"
step "test_sample_cuda sanitize" 60 sanitize.txt $D/test_sample_cuda sanitize
grep -E "^sanitize|FAIL|checks" "$OUT/sanitize.txt" >>"$S"
step "memcheck test_sample_cuda sanitize" 90 memcheck.txt compute-sanitizer --tool memcheck $D/test_sample_cuda sanitize
grep -E "ERROR SUMMARY|checks" "$OUT/memcheck.txt" >>"$S"
step "racecheck test_sample_cuda sanitize" 120 racecheck.txt compute-sanitizer --tool racecheck $D/test_sample_cuda sanitize
grep -E "RACECHECK SUMMARY|ERROR SUMMARY|checks" "$OUT/racecheck.txt" >>"$S"
if [ "$MODE" = short ]; then
    step "test_sample_cuda quick" 90 sample.txt $D/test_sample_cuda quick
else
    step "test_sample_cuda" 240 sample.txt $D/test_sample_cuda
fi
grep -E "^(kernel|wide|backend|reference)|differ|FAIL|checks" "$OUT/sample.txt" | head -24 >>"$S"
# what a user gets: -p on a 2B-shaped file, 500 tokens, the stats line from stderr
xz -dc "$X/tokenizer.json.xz" >/tmp/tokenizer.json
step "make_bench_model" 120 make.txt $D/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b
bins=$D/bitnet-chat
[ -f $D/bitnet-chat.a ] && bins="$bins $D/bitnet-chat.a"
rounds="1 2"
[ "$MODE" = short ] && rounds=1
for round in $rounds; do
    while read -r label opts; do
        for bin in $bins; do
            [ $(($(date +%s) - T0)) -gt $((BUDGET - 200)) ] && { echo "-p $label (round $round): skipped (time)" >>"$S"; continue; }
            timeout 60 $bin -p "Tell me a long story about the sea." --model /tmp/2b.gguf -n 500 --no-history \
                --backend cuda $opts >/dev/null 2>"$OUT/p.txt" </dev/null
            echo "$(basename $bin) -p $label (round $round): rc $? $(tail -1 $OUT/p.txt)" >>"$S"
        done
    done <<'LIST'
defaults
temp0-penalty1 --temp 0 --repeat-penalty 1
temp0 --temp 0
top-k-257-sort --top-k 257
LIST
done
if [ "$MODE" != short ]; then
    step "bench --backend cuda --skip-kernels --quick" 200 bench.txt $D/bitnet-chat bench --backend cuda --skip-kernels --quick
    grep -A12 "^Sampling cost per token" "$OUT/bench.txt" | grep -vE "^\|[-|: ]+\|$" >>"$S"
    grep -E "^\(sampling cost" "$OUT/bench.txt" >>"$S"
fi
echo "total: $(($(date +%s) - T0)) s" >>"$S"
cat "$S"
exit 0
