#!/bin/sh
# Decode speed of every model family on the GPU, as a user gets it, in one device call:
# `bitnet-chat bench --backend cuda` (its 2B-4T and Llama3-8B-1.58 end-to-end rows, and the copy
# bandwidth the % columns use), then for each published shape a model file with random ternary
# weights (tests/make_bench_model) and `bitnet-chat -p` generating 256 tokens on CUDA: tok/s,
# MB read per token and % of the byte floor (bytes one decode step must read, at the mean
# context of the reply, over the copy bandwidth of the same run). Builds nothing. Run from the
# root of the source copy on the device machine:
#   sh kernels/dev/run_families_speed_device.sh .xfer/families [bench|families|all] [SHAPE...]
# A whole run (bench, then all ten shapes) may pass the 10-minute limit of one call: run `bench`
# first, then `families` (or a few SHAPEs at a time) with COPY_GBS=<the copy bandwidth that
# bench's summary line gives> in the environment, so the % column uses the same figure.
# .xfer/families/families.tar.xz holds (made on the development machine, see below):
#   bin/bitnet-chat       a CUDA build (stripped)
#   bin/make_bench_model  tests/make_bench_model of the same tree (stripped)
#   tok/llama3.json       the Llama 3 tokenizer.json (BPE shapes: 2b, llama3-8b, falcon3-*)
#   tok/onebit.model      tests/data/families/onebit/tokenizer.model (1bitLLM shapes: GGUF tells
#                         their SiLU BitNet from 2B-4T's relu2 by a SentencePiece vocabulary)
#   tok/small.json        tests/data/families/chatml/tokenizer.json (Falcon-E's 32768 vocabulary
#                         is smaller than Llama 3's)
# Packing, on the development machine from the worktree root, after building those targets:
#   mkdir -p /tmp/fp/bin /tmp/fp/tok && cp build/bitnet-chat build/tests/make_bench_model /tmp/fp/bin/ &&
#   strip /tmp/fp/bin/* && cp ../shared/tokenizer/llama3/tokenizer.json /tmp/fp/tok/llama3.json &&
#   cp tests/data/families/onebit/tokenizer.model /tmp/fp/tok/onebit.model &&
#   cp tests/data/families/chatml/tokenizer.json /tmp/fp/tok/small.json &&
#   tar cf - -C /tmp/fp bin tok | xz --lzma2=preset=6,dict=192MiB > .xfer/families/families.tar.xz
# Speed does not depend on the weight values (replies are noise); Falcon-E's dimensions are
# estimates (make_bench_model's table says which). Results go to $OUT (summary.txt, logs).
set -u
X=$(cd "${1:?carried folder, e.g. .xfer/families}" && pwd)
MODE=${2:-all}
[ $# -ge 2 ] && shift 2 || shift $#
SHAPES=${*:-"2b llama3-8b falcon3-1b falcon3-3b falcon3-7b falcon3-10b falcon-e-1b falcon-e-3b 1bitllm-large 1bitllm-3b"}
OUT=${OUT:-/tmp/families_out}
mkdir -p "$OUT"
W=/tmp/families_speed
rm -rf "$W" && mkdir -p "$W" && tar xJf "$X/families.tar.xz" -C "$W" || { echo "cannot unpack $X/families.tar.xz"; exit 1; }
B=$W/bin
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader >"$S" 2>&1
copy=""
if [ "$MODE" != families ]; then
    # the kernel tables are skipped (--skip-kernels): the end-to-end rows are what is wanted here
    t0=$(date +%s)
    timeout 400 "$B/bitnet-chat" bench --backend cuda --skip-kernels >"$OUT/bench.txt" 2>&1
    echo "bench --backend cuda: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
    copy=$(sed -n 's/.*copy bandwidth of this run (\([0-9.]*\) GB\/s).*/\1/p' "$OUT/bench.txt" | head -1)
fi
if [ "$MODE" != bench ]; then
    # the copy bandwidth of an earlier bench call when this one ran none
    [ -n "$copy" ] || copy=${COPY_GBS:-}
    echo "copy bandwidth (from bench, device-to-device, read + write counted): ${copy:-unknown} GB/s" >>"$S"
    echo "" >>"$S"
    echo "| shape | reply tokens | decode tok/s | MB read per token | % of byte floor | TTFT | load + run s |" >>"$S"
    echo "|---|---:|---:|---:|---:|---:|---:|" >>"$S"
    for shape in $SHAPES; do
        case $shape in
        1bitllm-*) tok=$W/tok/onebit.model ;;
        falcon-e-*) tok=$W/tok/small.json ;;
        *) tok=$W/tok/llama3.json ;;
        esac
        m=/tmp/families_bench.gguf
        rm -f $m
        if ! timeout 240 "$B/make_bench_model" "$tok" $m "$shape" >"$OUT/make_$shape.txt" 2>&1; then
            echo "| $shape | make_bench_model failed: $(tail -1 "$OUT/make_$shape.txt") |" >>"$S"
            continue
        fi
        bytes=$(awk '/^bytes_per_token/ {print $2}' "$OUT/make_$shape.txt")
        kvpos=$(awk '/^bytes_per_token/ {print $4}' "$OUT/make_$shape.txt")
        t0=$(date +%s)
        timeout 180 "$B/bitnet-chat" -p "Write a long story about a lighthouse keeper and the sea." --model $m -n 256 \
            --no-history --backend cuda >/dev/null 2>"$OUT/p_$shape.txt" </dev/null
        rc=$?
        dt=$(($(date +%s) - t0))
        line=$(grep "reply .* tok/s" "$OUT/p_$shape.txt" | tail -1)
        n=$(echo "$line" | sed -n 's/.*reply \([0-9]*\) tokens.*/\1/p')
        tps=$(echo "$line" | sed -n 's/.*reply [0-9]* tokens (\([0-9.]*\) tok\/s).*/\1/p')
        ttft=$(echo "$line" | sed -n 's/.*TTFT \([0-9]* ms\).*/\1/p')
        ctx=$(echo "$line" | sed -n 's/.*context \([0-9]*\)\/.*/\1/p')
        if [ "$rc" != 0 ] || [ -z "$tps" ]; then
            echo "| $shape | -p failed (rc $rc): $(tail -1 "$OUT/p_$shape.txt") |" >>"$S"
        else
            # the reply's mean position: the context at the end less half the reply
            awk -v b="$bytes" -v kv="$kvpos" -v t="$tps" -v c="${copy:-0}" -v ctx="${ctx:-0}" -v n="$n" \
                -v s="$shape" -v tt="$ttft" -v dt="$dt" 'BEGIN {
                    by = b + kv * (ctx - n / 2);
                    pct = c > 0 ? sprintf("%.0f%%", 100 * by * t / (c * 1e9)) : "n/a";
                    printf "| %s | %d | %.1f | %.0f | %s | %s | %d |\n", s, n, t, by / 1e6, pct, tt, dt }' >>"$S"
        fi
        rm -f $m
    done
fi
cat "$S"
if [ -f "$OUT/bench.txt" ]; then
    echo "--- bench (end-to-end rows)"
    grep -E "^\||Building|copy bandwidth" "$OUT/bench.txt" | grep -vE "^\|[-|: ]+\|$" | tail -40
fi
exit 0
