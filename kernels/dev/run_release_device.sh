#!/bin/sh
# One device call that checks a whole CUDA build the way users and CI get it: every GPU ctest,
# compute-sanitizer over the backend, `bench --backend cuda`, and `bitnet-chat -p` on a 2B-shaped
# model file (random weights) with the default sampling settings and others, at a short and a
# long context. Run from the root of the source copy on the device machine:
#   sh kernels/dev/run_release_device.sh X [short]
# (short: one round of -p rows and no compute-sanitizer pass, for a call with little device
# time left)
# X holds build.tar.xz (a CUDA build folder made on the development machine as
# /work/main/build-cuda: its test files name that absolute path, so a link makes it valid here)
# and tokenizer.json.xz (the Llama 3 tokenizer, for the 2B-shaped file), optionally overlay.tar.xz
# (build files newer than build.tar.xz) and bitnet-chat.base.xz (a baseline binary). Logs and summary.txt go
# to $OUT.
set -u
X=$(cd "${1:?carried folder}" && pwd)
MODE=${2:-}
S=$OUT/summary.txt
L=/tmp/logs # every log; packed into $OUT/logs.tar.xz at the end (few files come back)
mkdir -p $L
mkdir -p /work && { [ -e /work/main ] || ln -s "$PWD" /work/main; }
tar xJf "$X/build.tar.xz" -C /work/main || { echo "cannot unpack the build"; exit 1; }
# optional: files rebuilt since build.tar.xz was made, unpacked over it (saves re-packing it all)
[ -f "$X/overlay.tar.xz" ] && { tar xJf "$X/overlay.tar.xz" -C /work/main || exit 1; }
B=/work/main/build-cuda
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
step() { # name seconds log command...
    n=$1 t=$2 log=$3
    shift 3
    t0=$(date +%s)
    timeout "$t" "$@" >"$L/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
step "ctest -L gpu" 240 gpu_tests.txt ctest --test-dir $B -L gpu --output-on-failure --timeout 120
grep -E "tests passed|\*\*\*|Passed|Not Run" "$L/gpu_tests.txt" | sed 's/^ *//' >>"$S"
# What a user gets: -p on a 2B-shaped file, the stats line from stderr, with each sampling
# setting after a short prompt and after ~2000- and ~3600-token prompts (--ctx 4096). When X
# holds bitnet-chat.base.xz (the binary before a change), each row runs it too, alternated in two
# rounds, so the change is measured against a baseline from the same run.
xz -dc "$X/tokenizer.json.xz" >/tmp/tokenizer.json
step "make_bench_model" 120 make.txt $B/tests/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b
line="The quick brown fox jumps over the lazy dog near the river bank today."
yes "$line" | head -n 133 >/tmp/p2000.txt
yes "$line" | head -n 240 >/tmp/p3600.txt
bins="$B/bitnet-chat"
[ -f "$X/bitnet-chat.base.xz" ] && xz -dc "$X/bitnet-chat.base.xz" >/tmp/bitnet-chat.base && chmod +x /tmp/bitnet-chat.base &&
    bins="$bins /tmp/bitnet-chat.base"
for round in 1 2; do
    while read -r label prompts opts; do
        for pr in $(echo "$prompts" | tr , ' '); do
            case $pr in
            short) set -- -p "Tell me a long story about the sea." -n 500 ;;
            *) set -- -f /tmp/$pr.txt -n 400 --ctx 4096 ;;
            esac
            for bin in $bins; do
                name=new
                [ "$bin" = "$B/bitnet-chat" ] || name=base
                timeout 60 $bin "$@" --model /tmp/2b.gguf --no-history --backend cuda $opts \
                    >/dev/null 2>"$L/p.txt" </dev/null
                echo "round $round $name -p $label, $pr: rc $? $(tail -1 $L/p.txt)" >>"$S"
            done
        done
    done <<'LIST'
default-sampling short,p2000,p3600
greedy-nopenalty short,p2000,p3600 --temp 0 --repeat-penalty 1
greedy short --temp 0
int8-head-default short --lm-head int8
LIST
    [ "$MODE" = short ] && break
done
# The engine's per-token overhead: the engine thread (as -p and the chat use it) against a plain
# infer_eval + infer_sample loop on the same file, same run.
for smp in default greedy; do
    step "bench_engine $smp" 60 eng_$smp.txt $B/tests/bench_engine --backend cuda --sampling $smp --model /tmp/2b.gguf /tmp/tokenizer.json 500
    tail -2 "$L/eng_$smp.txt" >>"$S"
done
step "bench --backend cuda" 200 bench.txt $B/bitnet-chat bench --backend cuda --quick
if [ "$MODE" != short ]; then
    step "memcheck test_backend_cuda" 100 san.txt compute-sanitizer --tool memcheck $B/tests/test_backend_cuda
    grep -E "ERROR SUMMARY" "$L/san.txt" >>"$S"
    step "racecheck test_sample_cuda quick" 200 race.txt compute-sanitizer --tool racecheck $B/tests/test_sample_cuda quick
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$L/race.txt" >>"$S"
fi
tar cf - -C $L . | xz -6 >"$OUT/logs.tar.xz"
cp "$L/bench.txt" "$OUT/" 2>/dev/null
cat "$S"
echo "--- bench"
grep -vE "^\|[-|: ]+\|$" "$L/bench.txt" | tail -60
exit 0
