#!/bin/sh
# One device call that checks a whole CUDA build the way users and CI get it: every GPU ctest,
# `bitnet-chat -p` on a 2B-shaped model file (random weights) with the default sampling settings
# and others at a short and a long context, the engine's overhead, `bench --backend cuda
# --skip-kernels` (every end-to-end table, the Llama3-8B-1.58 shapes included), then
# compute-sanitizer over the backend and the changed kernels for as long as the call lasts (each
# step is cut to the time left: DEADLINE seconds, 570 unless set). Run from the root of the source
# copy on the device machine:
#   sh kernels/dev/run_release_device.sh X [short]
# (short: one round of -p rows instead of two)
# X holds build.tar.xz (a CUDA build folder made on the development machine as
# /work/main/build-cuda: its test files name that absolute path, so a link makes it valid here)
# and tokenizer.json.xz (the Llama 3 tokenizer, for the 2B-shaped file), optionally overlay.tar.xz
# (build files newer than build.tar.xz) and bitnet-chat.base.xz (a baseline binary). Logs and summary.txt go
# to $OUT.
set -u
T0=$(date +%s)
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
DEADLINE=${DEADLINE:-570} # seconds of this call the steps may use (the run limit is 600)
left() { [ $(($(date +%s) - T0)) -lt $((DEADLINE - 20)) ]; }
step() { # name seconds log command...: cut to what the deadline leaves, skipped past it
    n=$1 t=$2 log=$3
    shift 3
    rem=$((DEADLINE - ($(date +%s) - T0)))
    if [ $rem -lt 20 ]; then
        echo "$n: skipped (the call's time is spent)" >>"$S"
        return
    fi
    [ "$t" -gt "$rem" ] && t=$rem
    t0=$(date +%s)
    timeout "$t" "$@" >"$L/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
step "ctest -L gpu" 300 gpu_tests.txt ctest --test-dir $B -L gpu --output-on-failure --timeout 150
grep -E "tests passed|\*\*\*|Passed|Failed|Not Run" "$L/gpu_tests.txt" | sed 's/^ *//' >>"$S"
# What a user gets: -p on a 2B-shaped file, the stats line from stderr, with each sampling
# setting after a short prompt and after ~2000- and ~3600-token prompts (--ctx 4096). When X
# holds bitnet-chat.base.xz (the binary before a change), each row runs it too, alternated,
# so the change is measured against a baseline from the same run.
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
                left || continue
                name=new
                [ "$bin" = "$B/bitnet-chat" ] || name=base
                timeout 60 $bin "$@" --model /tmp/2b.gguf --no-history --backend cuda $opts \
                    >/dev/null 2>"$L/p.txt" </dev/null
                echo "round $round $name -p $label, $pr: rc $? $(tail -1 $L/p.txt)" >>"$S"
            done
        done
    done <<'LIST'
default-sampling short,p2000,p3600
greedy-nopenalty short,p3600 --temp 0 --repeat-penalty 1
int8-head-default short --lm-head int8
LIST
    [ "$MODE" = short ] && break
done
# The engine's per-token overhead: the engine thread (as -p and the chat use it) against a plain
# infer_eval + infer_sample loop on the same file, same run.
step "bench_engine default" 60 eng_default.txt $B/tests/bench_engine --backend cuda --sampling default --model /tmp/2b.gguf /tmp/tokenizer.json 500
tail -2 "$L/eng_default.txt" >>"$S"
# bench without --quick: the end-to-end tables, decode by context, sampling cost, lm_head f16 vs
# int8, prefill/TTFT, and the Llama3-8B-1.58 shapes
step "bench --backend cuda --skip-kernels" 240 bench.txt $B/bitnet-chat bench --backend cuda --skip-kernels
# compute-sanitizer over the kernels this version changed, as long as the call's time lasts
step "memcheck test_backend_cuda" 90 san.txt compute-sanitizer --tool memcheck $B/tests/test_backend_cuda
grep -E "ERROR SUMMARY" "$L/san.txt" >>"$S"
for tool in memcheck racecheck; do
    step "$tool test_sample_cuda sanitize" 60 s_$tool.txt compute-sanitizer --tool $tool $B/tests/test_sample_cuda sanitize
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks" "$L/s_$tool.txt" | tail -2 >>"$S"
    step "$tool test_kernels_cuda attention" 60 k_$tool.txt compute-sanitizer --tool $tool $B/tests/test_kernels_cuda attention
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks" "$L/k_$tool.txt" | tail -2 >>"$S"
    step "$tool test_kernels_cuda lm_head" 60 h_$tool.txt compute-sanitizer --tool $tool $B/tests/test_kernels_cuda lm_head
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks" "$L/h_$tool.txt" | tail -2 >>"$S"
    step "$tool test_kernels_cuda prefill" 60 g_$tool.txt compute-sanitizer --tool $tool $B/tests/test_kernels_cuda prefill
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks" "$L/g_$tool.txt" | tail -2 >>"$S"
done
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $L . | xz -6 >"$OUT/logs.tar.xz"
cp "$L/bench.txt" "$OUT/" 2>/dev/null
cat "$S"
echo "--- bench"
grep -vE "^\|[-|: ]+\|$" "$L/bench.txt" | tail -90
exit 0
