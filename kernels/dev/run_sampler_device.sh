#!/bin/sh
# One device call for the device sampler (kernels/cuda/sample.cu, issue 11): its tests, both
# compute-sanitizer tools over its kernels, the sampling cost table of `bench`, and what a user
# gets: `bitnet-chat -p` decode figures on a 2B-shaped model file (random weights, 500 tokens)
# with the default settings, `--temp 0` (greedy with the default repetition penalty), `--temp 0
# --repeat-penalty 1` (plain greedy, the decode graph's argmax) and top-p alone. Builds nothing.
# Run from the root of the source copy on the device machine (its assets/ hold the demo model):
#   sh kernels/dev/run_sampler_device.sh X
# X holds bins.tar.xz (stripped bitnet-chat, test_sample_cuda, test_backend_cuda,
# test_kernels_cuda, make_bench_model, from a CUDA build of this branch) and tokenizer.json.xz
# (the Llama 3 tokenizer, for the 2B-shaped file). Logs and summary.txt go to $OUT; the summary
# is printed at the end. About 8 minutes.
set -u
X=$(cd "${1:?carried folder}" && pwd)
D=/tmp/sampler_bin
mkdir -p $D && tar xJf "$X/bins.tar.xz" -C $D || { echo "cannot unpack $X/bins.tar.xz"; exit 1; }
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
step() { # name seconds log command...
    n=$1 t=$2 log=$3
    shift 3
    t0=$(date +%s)
    timeout "$t" "$@" >"$OUT/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
# the tests (test_sample_cuda reads assets/bitnet-demo.gguf under BN_DEMO_ROOT)
step "test_sample_cuda" 300 sample.txt env BN_DEMO_ROOT="$PWD" $D/test_sample_cuda
grep -E "^(kernel|wide|backend|reference)|differ|FAIL|checks" "$OUT/sample.txt" | head -20 >>"$S"
step "test_backend_cuda" 120 backend.txt $D/test_backend_cuda
grep -E "FAIL|checks" "$OUT/backend.txt" | tail -3 >>"$S"
step "test_kernels_cuda" 180 kernels.txt $D/test_kernels_cuda
grep -E "FAIL|checks" "$OUT/kernels.txt" | tail -3 >>"$S"
# compute-sanitizer over the sampler's kernels (vocab 1000, every setting, both paths)
step "memcheck test_sample_cuda quick" 200 memcheck.txt compute-sanitizer --tool memcheck $D/test_sample_cuda quick
grep -E "ERROR SUMMARY|checks" "$OUT/memcheck.txt" >>"$S"
step "racecheck test_sample_cuda quick" 300 racecheck.txt compute-sanitizer --tool racecheck $D/test_sample_cuda quick
grep -E "RACECHECK SUMMARY|ERROR SUMMARY|checks" "$OUT/racecheck.txt" >>"$S"
# what a user gets: -p on a 2B-shaped file, 500 tokens, the stats line from stderr
xz -dc "$X/tokenizer.json.xz" >/tmp/tokenizer.json
step "make_bench_model" 120 make.txt $D/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b
for round in 1 2; do
    while read -r label opts; do
        timeout 60 $D/bitnet-chat -p "Tell me a long story about the sea." --model /tmp/2b.gguf -n 500 --no-history \
            --backend cuda $opts >/dev/null 2>"$OUT/p.txt" </dev/null
        echo "-p $label (round $round): rc $? $(tail -1 $OUT/p.txt)" >>"$S"
    done <<'LIST'
defaults
temp0 --temp 0
temp0-penalty1 --temp 0 --repeat-penalty 1
top-p-alone --top-k 0 --min-p 0 --repeat-penalty 1
LIST
done
# the sampling cost table of bench (BITNET_BENCH_SKIP_KERNELS: no kernel table, less device time)
step "bench --backend cuda --quick" 240 bench.txt env BITNET_BENCH_SKIP_KERNELS=1 $D/bitnet-chat bench --backend cuda --quick
grep -A8 "^Sampling cost per token" "$OUT/bench.txt" >>"$S"
grep -E "^\| (64|512) \| (16|64) \|" "$OUT/bench.txt" >>"$S"
cat "$S"
exit 0
