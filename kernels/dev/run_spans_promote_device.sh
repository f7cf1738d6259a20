#!/bin/sh
# One device call for the spans kernel's promotion (branch promote11: kcuda_attn_decode from the
# head kernel's limit is the spans kernel with its TF32 P.V), prepared in session 11, not run (no
# device machine could be started that session). Nothing is built on the device. Run from the
# root of a source copy:
#   DL=SECONDS sh kernels/dev/run_spans_promote_device.sh X [TL]
# X holds build.tar.xz (kernels/dev/pack_cuda_build.sh of main's CUDA build: the baseline),
# promote.tar.xz (the same of this branch's build), dev_attn_decode.xz (the lab, stripped) and
# tokenizer.json.xz (shared/tokenizer/llama3/tokenizer.json); TL the CUPTI tracer folder of
# run_timeline_device.sh (optional). In order, each step cut to what DL (seconds) leaves:
#   1. dev_attn_decode attn10 quick (run_attn10_device.sh, QUICK=quick): the TF32 kernel checked
#      against the double-precision reference at the 2B heads and the three shapes where the f16
#      P.V failed, then timed in place against the other settings (IN10 / RATIO10 lines);
#   2. test_kernels_cuda attention_all of this branch;
#   3. bitnet-chat -p, main against this branch, after 2002 / 3607 / 16 / 517-token prompts, with
#      the process's peak device memory (nvidia-smi), and greedy;
#   4. ctest -L gpu of this branch; 5. racecheck and synccheck over test_kernels_cuda attention;
#   6. the CUPTI timeline of this branch's -p.
# $OUT/summary.txt (also printed), $OUT/logs/, $OUT/attn10/.
set -u
T0=$(date +%s)
DL=${DL:-560}
X=$(cd "${1:?carried folder}" && pwd)
TL=${2:-}
S=$OUT/summary.txt
L=$OUT/logs
mkdir -p $L
mkdir -p /work && { [ -e /work/main ] || ln -s "$PWD" /work/main; }
tar xJf $X/build.tar.xz -C /work/main || { echo "cannot unpack" >$S; exit 1; }
B=/work/main/build-cuda
for f in dev_attn_decode; do xz -dc $X/$f.xz >$B/tests/$f && chmod +x $B/tests/$f; done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>$S 2>&1
left() { echo $((DL - ($(date +%s) - T0))); }
step() {
    n=$1 t=$2 log=$3
    shift 3
    rem=$(left)
    if [ $rem -lt 15 ]; then echo "$n: skipped" >>$S; return; fi
    [ "$t" -gt "$rem" ] && t=$rem
    t0=$(date +%s)
    timeout -k 3 "$t" "$@" >"$L/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>$S
}
xz -dc $X/tokenizer.json.xz >/tmp/tokenizer.json
$B/tests/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b >$L/make.txt 2>&1 || echo "make_bench_model failed" >>$S
line="The quick brown fox jumps over the lazy dog near the river bank today."
yes "$line" | head -n 34 >/tmp/p512.txt
yes "$line" | head -n 133 >/tmp/p2000.txt
yes "$line" | head -n 240 >/tmp/p3600.txt
peak_run() { # name bin args...
    n=$1 bin=$2
    shift 2
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 50 >"$L/smi_$n.txt" 2>&1 &
    smi=$!
    timeout 40 $bin "$@" --model /tmp/2b.gguf --no-history --backend cuda >"$L/o_$n.txt" 2>"$L/p_$n.txt" </dev/null
    rc=$?
    sleep 0.2
    kill $smi 2>/dev/null
    wait $smi 2>/dev/null
    peak=$(awk -F', *' '$2+0 > m {m = $2+0} END {print m+0}' "$L/smi_$n.txt")
    echo "$n: rc $rc; peak $peak MiB; $(tail -1 $L/p_$n.txt)" >>"$S"
    rm -f "$L/smi_$n.txt"
}
rem=$(left); mkdir -p $OUT/attn10
QUICK=quick OUT=$OUT/attn10 DEADLINE=70 timeout -k 3 75 sh kernels/dev/run_attn10_device.sh $B >/dev/null 2>&1; echo "attn10 lab rc $? ($(($(date +%s) - T0)) s)" >>$S
cp $B/bitnet-chat /tmp/bitnet-chat.main
tar xJf $X/promote.tar.xz -C /work/main || echo "cannot unpack promote" >>$S
cmp -s $B/bitnet-chat /tmp/bitnet-chat.main && echo "promote build NOT unpacked" >>$S
step "attention_all (promote)" 60 attn_all.txt $B/tests/test_kernels_cuda attention_all
tail -3 $L/attn_all.txt >>$S
for r in 1; do
  for v in main new; do
    bin=/tmp/bitnet-chat.main; [ $v = new ] && bin=$B/bitnet-chat
    peak_run $v-p2000-$r $bin -f /tmp/p2000.txt -n 300 --ctx 4096
    peak_run $v-p3600-$r $bin -f /tmp/p3600.txt -n 200 --ctx 4096
    [ $r = 1 ] && peak_run $v-s500-$r $bin -p "Tell me a long story about the sea." -n 500
    [ $(left) -gt 60 ] && peak_run $v-p512-$r $bin -f /tmp/p512.txt -n 300 --ctx 4096
  done
done
for v in p2000-1 p3600-1 s500-1; do cmp -s $L/o_main-$v.txt $L/o_new-$v.txt && echo "$v: same reply text main/new" >>$S || echo "$v: reply text DIFFERS main/new" >>$S; done
peak_run greedy500 $B/bitnet-chat -p "Tell me a long story about the sea." -n 500 --temp 0
echo "-p done $(($(date +%s) - T0)) s" >>$S
step "ctest -L gpu" 180 gpu.txt ctest --test-dir $B -L gpu -j2 --output-on-failure --timeout 170
grep -E "tests passed|\*\*\*|Failed|Not Run|Test +#" $L/gpu.txt | sed 's/^ *//' >>$S
step "racecheck attention" 45 rc_attn.txt compute-sanitizer --tool racecheck $B/tests/test_kernels_cuda attention
grep -E "SUMMARY|CHECK failed|passed|failed" $L/rc_attn.txt | tail -4 >>$S
step "synccheck attention" 45 sc_attn.txt compute-sanitizer --tool synccheck $B/tests/test_kernels_cuda attention
grep -E "SUMMARY|CHECK failed|passed|failed" $L/sc_attn.txt | tail -4 >>$S
rem=$(left); if [ -n "$TL" ] && [ $rem -gt 45 ]; then
  OUT=$OUT timeout -k 3 $((rem - 5)) sh kernels/dev/run_timeline_device.sh $X $TL >/dev/null 2>&1; echo "timeline rc $? ($(($(date +%s) - T0)) s)" >>$S; fi
rm -f $L/o_*
echo "total $(($(date +%s) - T0)) s" >>$S
cat $S
