#!/bin/sh
# One device call for decode attention at long context (issue #12, session 9, "attn" helper):
# the spans kernel with bulk copies (kernels/dev/attention_decode_long.cuh, BULK) against the
# product's decode attention, from prebuilt binaries only (nothing is built on the device). Run
# from the root of a source copy of this branch:
#   sh kernels/dev/run_attn9_device.sh X
# X (under 25 MB) holds:
#   build.tar.xz       `sh kernels/dev/pack_cuda_build.sh build X/build.tar.xz` (bitnet-chat, the
#                      GPU tests, make_bench_model; ctest's files; any top folder name: its
#                      absolute paths must be /work/wt-attn/<top> or /work/main/<top>)
#   MODE               (optional) "product" when this build changes the product: runs ctest -L gpu;
#                      "final": step 1 only, for the settings in LAB_ONLY (a file in X, one
#                      comma-separated line), then longk for those in LAB_ONLY_K (if present),
#                      DEADLINE 110; build.tar.xz and the tokenizer are then not needed
#   labs.tar.xz        the lab binary: tar cf - -C build/tests dev_attn_decode | xz (stripped)
#   tokenizer.json.xz  for make_bench_model (a 2B-4T-shaped GGUF with random ternary weights)
#   bitnet-chat.base.xz  (optional) the branch point's bitnet-chat: -p beside this build's
# Steps, each cut to the time left (DEADLINE seconds, 560 unless set):
#   1. dev_attn_decode long: every spans setting (S: 16-byte cp.async; B: bulk copies) and the
#      product's entry points checked against the double-precision host reference (2B-4T heads at
#      24 positions up to 4095; GQA 1, 3, 8, 12; head_dim 64, 80, 96, 100, 128, 256; Llama3-8B
#      heads), then us per layer in place (30 decode layers of the product's GEMVs around it,
#      chain - gemv, median of 3 interleaved rounds) at 64 / 512 / 1024 / 2048 / 4095 against the
#      product by position in the same run (LONG, RATIO, BEST), the timeline of one launch per
#      spans setting in place and alone at 1024 / 2048 / 4095 (PROBE), alone at 4095 (ALONE),
#      Llama3-8B heads alone (LONG8B);
#   2. ctest -L gpu (this build; MODE product only);
#   3. bitnet-chat -p (defaults, 2B-shaped GGUF) after a short prompt, ~2000 and ~3600 tokens,
#      this build and the base (when present), the decode rate line of each;
#   4. dev_attn_decode longk: the cluster instantiations (K, BK, TK; a separate process);
#   5. compute-sanitizer racecheck and memcheck over dev_attn_decode longsan.
# summary.txt, lab.txt and lab_k.txt go to $OUT, every other log to $OUT/logs.tar.xz.
set -u
T0=$(date +%s)
X=$(cd "${1:?carried folder}" && pwd)
DEADLINE=${DEADLINE:-560}
S=$OUT/summary.txt
B=/tmp/a9
L=$B/logs
mkdir -p $L
# the packed build's ctest files and tests name absolute paths under the packing tree
mkdir -p /work
for w in /work/wt-attn /work/main; do [ -e $w ] || ln -s "$PWD" $w; done
MODE=$(cat "$X/MODE" 2>/dev/null || echo lab)
if [ "$MODE" != final ]; then
    tar xJf "$X/build.tar.xz" -C "$PWD" || { echo "cannot unpack build.tar.xz" | tee "$S"; exit 1; }
    BD=$PWD/$(xz -dc "$X/build.tar.xz" | tar tf - | head -1 | cut -d/ -f1)
else
    DEADLINE=110
fi
tar xJf "$X/labs.tar.xz" -C $B || { echo "cannot unpack labs.tar.xz" | tee "$S"; exit 1; }
[ -f "$X/bitnet-chat.base.xz" ] && xz -dc "$X/bitnet-chat.base.xz" >$B/bitnet-chat.base && chmod +x $B/bitnet-chat.base
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
step() { # name seconds log command...: cut to what the deadline leaves, skipped past it
    n=$1 t=$2 log=$3
    case $log in lab*) log=$OUT/$log ;; *) log=$L/$log ;; esac
    shift 3
    rem=$((DEADLINE - ($(date +%s) - T0)))
    if [ $rem -lt 10 ]; then
        echo "$n: skipped (the call's time is spent)" >>"$S"
        return
    fi
    [ "$t" -gt "$rem" ] && t=$rem
    t0=$(date +%s)
    timeout "$t" "$@" >"$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
lab() { # log mode [args]
    lf=$1 m=$2
    shift 2
    step "dev_attn_decode $m $*" 150 $lf $B/dev_attn_decode $m "$@"
    grep -E "^check|FAIL|refused|^LONG \||^RATIO|^BEST|^ALONE|^EARLYQ|rror" "$OUT/$lf" | head -120 >>"$S"
    grep -E "PROBE" "$OUT/$lf" >>"$S"
    grep -E "^LONG8B" "$OUT/$lf" | grep -v "product long" >>"$S"
}
if [ "$MODE" = final ]; then
    lab lab.txt long only "$(cat "$X/LAB_ONLY")"
    # the cluster settings in a process of their own (never run before: a fault there keeps the above)
    [ -f "$X/LAB_ONLY_K" ] && lab lab_k.txt longk only "$(cat "$X/LAB_ONLY_K")"
    echo "total $(($(date +%s) - T0)) s" >>"$S"
    cat "$S"
    exit 0
fi
lab lab.txt long
if [ "$MODE" = product ]; then
    step "ctest -L gpu" 150 ctest.txt ctest --test-dir "$BD" -L gpu -j3 --output-on-failure --timeout 140
    grep -E "tests passed|\*\*\*|Failed|Not Run" "$L/ctest.txt" | sed 's/^ *//' >>"$S"
fi
xz -dc "$X/tokenizer.json.xz" >$B/tokenizer.json
step "make_bench_model" 60 make.txt "$BD/tests/make_bench_model" $B/tokenizer.json $B/2b.gguf 2b
line="The quick brown fox jumps over the lazy dog near the river bank today."
yes "$line" | head -n 133 >$B/p2000.txt
yes "$line" | head -n 240 >$B/p3600.txt
for pr in short p2000 p3600; do
    for bin in $B/bitnet-chat.base "$BD/bitnet-chat"; do
        [ -x "$bin" ] || continue
        [ "$bin" = "$BD/bitnet-chat" ] && name=new || name=base
        rem=$((DEADLINE - ($(date +%s) - T0)))
        [ $rem -lt 45 ] && { echo "-p $name $pr: skipped (time)" >>"$S"; continue; }
        if [ $pr = short ]; then set -- -p "Tell me a long story about the sea." -n 500; else set -- -f $B/$pr.txt -n 400 --ctx 4096; fi
        timeout 40 "$bin" "$@" --model $B/2b.gguf --no-history --backend cuda >/dev/null 2>$L/p_${name}_$pr.txt </dev/null
        echo "$name -p $pr: rc $? $(tail -1 $L/p_${name}_$pr.txt)" >>"$S"
    done
done
lab lab_k.txt longk
for tool in racecheck memcheck; do
    step "$tool dev_attn_decode longsan" 60 san_$tool.txt compute-sanitizer --tool $tool $B/dev_attn_decode longsan
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^check|longsan" "$L/san_$tool.txt" | tail -6 >>"$S"
done
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $B logs | xz >"$OUT/logs.tar.xz"
cat "$S"
