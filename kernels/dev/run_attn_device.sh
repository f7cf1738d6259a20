#!/bin/sh
# One device call for the decode attention of issue #11 (flash-decoding split over the context),
# from prebuilt binaries (nothing is built on the device). Run from the root of the source copy:
#   sh kernels/dev/run_attn_device.sh X [check|speed]
# check: test_kernels_cuda (attention at every GQA ratio and head_dim, contexts past 4096, with
#        negative controls), test_backend_cuda, test_families_cuda (every fixture + random
#        shapes), compute-sanitizer memcheck and racecheck over `test_kernels_cuda attention`,
#        memcheck over test_backend_cuda;
# speed: `bitnet-chat -p` (500 tokens) on a 2B-4T-shaped GGUF with --ctx 4096 after prompts of
#        ~16, ~500, ~2000 and ~3900 tokens, default settings and --temp 0 --repeat-penalty 1,
#        then `bitnet-chat bench --backend cuda --quick` (its decode-by-context table).
# (no mode: check, then speed while time is left). Each step is time-limited; steps that would
# start after 540 s are skipped, so one call stays within the 10-minute limit.
#
# X holds attn.tar.xz, made on the development machine in the worktree /work/wt-gpu-attn after
# `cmake --build build --target bitnet-chat test_kernels_cuda test_backend_cuda test_families_cuda
# make_bench_model`:
#   rm -rf /tmp/attn-pack && mkdir -p /tmp/attn-pack/build/tests &&
#   strip -o /tmp/attn-pack/build/bitnet-chat build/bitnet-chat &&
#   for t in test_kernels_cuda test_backend_cuda test_families_cuda make_bench_model; do
#       strip -o /tmp/attn-pack/build/tests/$t build/tests/$t; done &&
#   mkdir -p /tmp/attn-pack/tests/data && cp -r tests/data/families tests/data/tokenizer /tmp/attn-pack/tests/data &&
#   tar cf - -C /tmp/attn-pack build tests | xz --lzma2=preset=6,dict=192MiB >X/attn.tar.xz
# The test programs name /work/wt-gpu-attn/tests/data (BN_TEST_DATA, compiled in), so the archive
# is unpacked at that path. Logs and summary.txt go to $OUT.
set -u
X=$(cd "${1:?carried folder}" && pwd)
MODE=${2:-all}
S=$OUT/summary.txt
W=/work/wt-gpu-attn
T0=$(date +%s)
mkdir -p $W
if ! xz -dc "$X/attn.tar.xz" | tar xf - -C $W; then
    echo "cannot unpack $X/attn.tar.xz"
    exit 1
fi
B=$W/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
step() { # name seconds log command...
    n=$1 t=$2 log=$3
    shift 3
    if [ $(($(date +%s) - T0)) -gt 540 ]; then
        echo "$n: skipped (time)" >>"$S"
        return
    fi
    t1=$(date +%s)
    timeout "$t" "$@" >"$OUT/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t1)) s)" >>"$S"
}
if [ "$MODE" != speed ]; then
    step "test_kernels_cuda" 240 kernels.txt $B/tests/test_kernels_cuda
    grep -E "^attention decode at|CHECK failed|negative control|checks|passed|failed" "$OUT/kernels.txt" | tail -40 >>"$S"
    step "test_backend_cuda" 60 backend.txt $B/tests/test_backend_cuda
    tail -2 "$OUT/backend.txt" >>"$S"
    for f in "families/llama3" "families/falcon3" "families/falcon3 i2s.gguf" "families/onebit" "random"; do
        # shellcheck disable=SC2086
        step "test_families_cuda $f" 60 fam.txt $B/tests/test_families_cuda $f
        cat "$OUT/fam.txt" >>"$OUT/families.txt"
        grep -E "CHECK failed|checks" "$OUT/fam.txt" | tail -3 >>"$S"
    done
    rm -f "$OUT/fam.txt"
    step "memcheck test_kernels_cuda attention" 150 memcheck.txt compute-sanitizer --tool memcheck $B/tests/test_kernels_cuda attention
    grep -E "ERROR SUMMARY|checks" "$OUT/memcheck.txt" >>"$S"
    step "racecheck test_kernels_cuda attention" 200 racecheck.txt compute-sanitizer --tool racecheck $B/tests/test_kernels_cuda attention
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|checks" "$OUT/racecheck.txt" | tail -5 >>"$S"
    step "memcheck test_backend_cuda" 120 memcheck_backend.txt compute-sanitizer --tool memcheck $B/tests/test_backend_cuda
    grep -E "ERROR SUMMARY" "$OUT/memcheck_backend.txt" >>"$S"
fi
if [ "$MODE" != check ]; then
    # What a user gets: -p on a 2B-shaped file, 500 tokens, the stats line from stderr.
    tar xJf $W/tests/data/tokenizer/llama3-tokenizer.tar.xz -C /tmp
    step "make_bench_model" 120 make.txt $B/tests/make_bench_model /tmp/llama3/tokenizer.json /tmp/2b.gguf 2b
    line="The quick brown fox jumps over the lazy dog near the river bank today."
    for n in 33 133 258; do yes "$line" | head -n $n >/tmp/prompt$n.txt; done
    for opts in "" "--temp 0 --repeat-penalty 1"; do
        for p in short 33 133 258; do
            [ $(($(date +%s) - T0)) -gt 500 ] && { echo "-p ${opts:-defaults}, prompt $p: skipped (time)" >>"$S"; continue; }
            if [ $p = short ]; then set -- -p "Tell me a long story about the sea."; else set -- -f /tmp/prompt$p.txt; fi
            # shellcheck disable=SC2086
            timeout 60 $B/bitnet-chat "$@" --model /tmp/2b.gguf -n 500 --ctx 4096 --no-history --backend cuda $opts \
                >/dev/null 2>"$OUT/p.txt" </dev/null
            echo "-p ${opts:-defaults}, prompt $p lines: rc $? $(tail -1 "$OUT/p.txt")" >>"$S"
        done
    done
    step "bench --backend cuda --quick" 240 bench.txt $B/bitnet-chat bench --backend cuda --quick
    grep -A8 "^| context" "$OUT/bench.txt" | grep -vE "^\|[-|: ]+\|$" >>"$S"
fi
echo "total $(($(date +%s) - T0)) s" >>"$S"
cat "$S"
exit 0
