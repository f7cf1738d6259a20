#!/bin/sh
# One device call for decode attention by position (issue #12): the backend's two decode graphs
# (the per-query-head kernel below kcuda_attn_decode_head_until, the per-KV-group kernel from
# there), from prebuilt binaries only (nothing is built on the device). Run from the root of a
# source copy (its tests/data is what the family tests read):
#   sh kernels/dev/run_attn_hybrid_device.sh X
# Steps, each cut to the time left (DEADLINE seconds of the call, 570 unless set), in order:
#   1. dev_attn_decode sweep: the product's entry points checked against the host reference,
#      then the short-context kernel, the long-context kernel and the product by position in
#      place (30 decode layers) at positions 64..4095 (SWEEP, CROSS), a second graph's cost
#      (GRAPH), a launch per layer that leaves at once (EMPTY), Llama3-8B heads alone (SWEEP8B);
#   2. test_kernels_cuda attention (both kernels, sanitizer-sized), test_backend_cuda (decode
#      across the boundary and back), test_families_cuda on every fixture and random shapes;
#   3. compute-sanitizer memcheck and racecheck over `test_kernels_cuda attention`;
#   4. `bitnet-chat bench --backend cuda --skip-kernels --quick`, this build and (when X holds
#      bitnet-chat.base.xz) the build before it, alternated twice: decode by context rows;
#   5. where X holds the tracer (cupti_trace.so, libcupti.so.13.xz: kernels/dev/cupti_trace.c) and
#      tokenizer.json.xz: `bitnet-chat -p` on a 2B-shaped file, both binaries, greedy, after
#      prompts of ~16, ~517 and ~1290 tokens (below the head kernel's limit), each kernel's
#      start and end recorded (PDL overlap kept): per decode layer, attention's exposed time (its
#      end minus its predecessor's) and duration, and the step's time (TIMELINE lines);
#   6. test_kernels_cuda in full (every kernel; decode attention at every shape and both kernels).
# X holds build.tar.xz: the folder build/ of the worktree /work/wt-attn-hybrid with bitnet-chat
# and tests/{test_kernels_cuda,test_backend_cuda,test_families_cuda,dev_attn_decode,
# make_bench_model} (stripped).
# The test binaries name /work/wt-attn-hybrid/tests/data (compiled in), so that path is made a
# link to this source copy. summary.txt, lab.txt (the sweep), bench.txt and logs.tar.xz (every
# other log) go to $OUT.
set -u
T0=$(date +%s)
X=$(cd "${1:?carried folder}" && pwd)
S=$OUT/summary.txt
W=/work/wt-attn-hybrid
mkdir -p /work
[ -e $W ] || ln -s "$PWD" $W
mkdir -p /tmp/ah && xz -dc "$X/build.tar.xz" | tar xf - -C /tmp/ah || { echo "cannot unpack $X/build.tar.xz"; exit 1; }
B=/tmp/ah/build
L=/tmp/ah/logs # logs other than the lab's and the benches', packed into $OUT/logs.tar.xz
mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
DEADLINE=${DEADLINE:-570}
step() { # name seconds log command...: cut to what the deadline leaves, skipped past it; the log
    # goes to $OUT when its name says (lab, bench), else to $L
    n=$1 t=$2 log=$3
    case $log in lab* | bench*) log=$OUT/$log ;; *) log=$L/$log ;; esac
    shift 3
    rem=$((DEADLINE - ($(date +%s) - T0)))
    if [ $rem -lt 15 ]; then
        echo "$n: skipped (the call's time is spent)" >>"$S"
        return
    fi
    [ "$t" -gt "$rem" ] && t=$rem
    t0=$(date +%s)
    timeout "$t" "$@" >"$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
step "dev_attn_decode sweep" 150 lab.txt $B/tests/dev_attn_decode sweep
grep -E "^check|FAIL|^CROSS|^GRAPH|^EMPTY" "$OUT/lab.txt" | head -20 >>"$S"
step "test_kernels_cuda attention" 60 kernels_attn.txt $B/tests/test_kernels_cuda attention
grep -E "CHECK failed|checks|head kernel" "$L/kernels_attn.txt" | tail -4 >>"$S"
step "test_backend_cuda" 60 backend.txt $B/tests/test_backend_cuda
grep -E "CHECK failed|checks|boundary|decode logits" "$L/backend.txt" | tail -4 >>"$S"
for f in "families/llama3" "families/falcon3" "families/falcon3 i2s.gguf" "families/onebit" "random"; do
    # shellcheck disable=SC2086
    step "test_families_cuda $f" 90 fam.txt $B/tests/test_families_cuda $f
    cat "$L/fam.txt" >>"$L/families.txt"
    grep -E "CHECK failed|checks" "$L/fam.txt" | tail -2 >>"$S"
done
rm -f "$L/fam.txt"
for tool in memcheck racecheck; do
    step "$tool test_kernels_cuda attention" 90 san_$tool.txt compute-sanitizer --tool $tool $B/tests/test_kernels_cuda attention
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks" "$L/san_$tool.txt" | tail -2 >>"$S"
done
bins="$B/bitnet-chat"
[ -f "$X/bitnet-chat.base.xz" ] && xz -dc "$X/bitnet-chat.base.xz" >/tmp/ah/bitnet-chat.base && chmod +x /tmp/ah/bitnet-chat.base &&
    bins="$bins /tmp/ah/bitnet-chat.base"
for round in 1 2; do
    # a second round only where it leaves the full kernel test a minute
    [ $round = 2 ] && [ $((DEADLINE - ($(date +%s) - T0))) -lt 220 ] && break
    for bin in $bins; do
        name=new
        [ "$bin" = "$B/bitnet-chat" ] || name=base
        step "bench $name round $round" 75 bench_${name}_$round.txt $bin bench --backend cuda --skip-kernels --quick
        echo "bench $name round $round:" >>"$S"
        grep -A7 "^| context" "$OUT/bench_${name}_$round.txt" | grep -vE "^\|[-|: ]+\|$" >>"$S"
    done
done
cat "$OUT"/bench_* >"$OUT/bench.txt" 2>/dev/null && rm -f "$OUT"/bench_*_*.txt
if [ -f "$X/cupti_trace.so" ] && [ -f "$X/libcupti.so.13.xz" ] && [ -f "$X/tokenizer.json.xz" ]; then
    mkdir -p /tmp/ah/cupti && xz -dc "$X/libcupti.so.13.xz" >/tmp/ah/cupti/libcupti.so.13
    xz -dc "$X/tokenizer.json.xz" >/tmp/ah/tokenizer.json
    step "make_bench_model 2b" 120 make.txt $B/tests/make_bench_model /tmp/ah/tokenizer.json /tmp/ah/2b.gguf 2b
    line="The quick brown fox jumps over the lazy dog near the river bank today."
    yes "$line" | head -n 34 >/tmp/ah/p512.txt
    yes "$line" | head -n 85 >/tmp/ah/p1290.txt
    for bin in $bins; do
        name=new
        [ "$bin" = "$B/bitnet-chat" ] || name=base
        for pr in short p512 p1290; do
            case $pr in
            short) set -- -p "Tell me a long story about the sea." ;;
            *) set -- -f /tmp/ah/$pr.txt ;;
            esac
            [ $((DEADLINE - ($(date +%s) - T0))) -lt 40 ] && continue
            LD_LIBRARY_PATH=/tmp/ah/cupti LD_PRELOAD=$X/cupti_trace.so BN_TRACE_OUT=$L/tl_${name}_$pr.csv timeout 60 \
                "$bin" "$@" -n 40 --temp 0 --repeat-penalty 1 --model /tmp/ah/2b.gguf --no-history --backend cuda \
                </dev/null >$L/tl_${name}_$pr.out 2>&1
            echo "timeline $name $pr: rc $? $(grep -E 'tok/s' $L/tl_${name}_$pr.out | tr '\n' ' ')" >>"$S"
        done
    done
    # per trace: the last 5 decode steps (each starts at the embedding kernel; 5 kernels a layer,
    # attention second): step time, attention's mean exposed time and duration per layer
    python3 - "$L" >>"$S" 2>&1 <<'EOF'
import glob, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], "tl_*.csv"))):
    rows = []
    for line in open(f):
        a = line.rstrip("\n").split(",", 3)
        if len(a) == 4:
            rows.append((int(a[0]), int(a[1]), a[3]))
    rows.sort(key=lambda x: x[1])
    starts = [i for i, x in enumerate(rows) if "embed" in x[2]]
    name = os.path.basename(f)[3:-4]
    if len(starts) < 6:
        print(f"TIMELINE {name}: {len(rows)} kernels, {len(starts)} steps")
        continue
    steps = [rows[starts[i]:starts[i + 1]] for i in range(len(starts) - 6, len(starts) - 1)]
    step_us = sum((s[-1][1] - s[0][0]) for s in steps) / len(steps) / 1e3
    exp = dur = n = 0
    kinds = set()
    for s in steps:
        for i in range(2, min(len(s), 151), 5):
            exp += s[i][1] - s[i - 1][1]
            dur += s[i][1] - s[i][0]
            n += 1
            kinds.add("head" if "attn_head" in s[i][2] else "group" if "attn_decode" in s[i][2] else s[i][2][:30])
    print(f"TIMELINE {name:12s} step {step_us:7.1f} us; attention per layer exposed {exp / n / 1e3:6.2f} us, "
          f"duration {dur / n / 1e3:6.2f} us ({'/'.join(sorted(kinds))})")
EOF
fi
step "test_kernels_cuda (all)" 200 kernels_all.txt $B/tests/test_kernels_cuda
grep -E "CHECK failed|checks" "$L/kernels_all.txt" | tail -4 >>"$S"
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $L . | xz -6 >"$OUT/logs.tar.xz"
echo "--- lab sweep"
grep -E "^SWEEP|^CROSS|^GRAPH|^EMPTY" "$OUT/lab.txt"
echo "--- summary"
cat "$S"
exit 0
