# One device call that records the decode step as it really runs (CUPTI kernel activity through
# kernels/dev/cupti_trace.c loaded with LD_PRELOAD: every node of the CUDA graph, PDL overlap
# kept; Nsight Systems is not on the device machines) on a 2B-shaped GGUF (random weights), and
# prints where a token's time goes: for each kernel of the last decode steps its exposed time (its
# end minus the previous kernel's end: what it adds to the step's critical path) beside its
# duration (start to end, which with PDL includes the wait for its predecessor). ncu
# (run_profile_device.sh) times kernels alone; this says what they cost in the chain. Run from
# the source copy's root:
#   sh kernels/dev/run_timeline_device.sh X T [BIN [LABEL]]
# X as for run_release_device.sh; T holds cupti_trace.so and libcupti.so.13.xz (CUDA 13's); BIN
# another bitnet-chat to trace instead of X's (a variant: run the script once per binary), LABEL
# names its output ($OUT/timeline-LABEL.txt).
set -u
X=$(cd "${1:?carried folder}" && pwd)
T=$(cd "${2:?tracer folder}" && pwd)
S=$OUT/timeline${4:+-$4}.txt
mkdir -p /work && { [ -e /work/main ] || ln -s "$PWD" /work/main; }
[ -x /work/main/build-cuda/bitnet-chat ] || tar xJf "$X/build.tar.xz" -C /work/main || { echo "cannot unpack the build"; exit 1; }
B=/work/main/build-cuda
CHAT=${3:-$B/bitnet-chat}
mkdir -p /tmp/cupti && xz -dc "$T/libcupti.so.13.xz" >/tmp/cupti/libcupti.so.13
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$S" 2>&1
[ -f /tmp/2b.gguf ] || {
    xz -dc "$X/tokenizer.json.xz" >/tmp/tokenizer.json
    $B/tests/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b >/tmp/make.txt 2>&1 || { cat /tmp/make.txt >>"$S"; exit 1; }
}
line="The quick brown fox jumps over the lazy dog near the river bank today."
yes "$line" | head -n 34 >/tmp/p512.txt
trace() { # name args...
    n=$1
    shift
    LD_LIBRARY_PATH=/tmp/cupti LD_PRELOAD=$T/cupti_trace.so BN_TRACE_OUT=/tmp/$n.csv timeout 150 \
        "$CHAT" "$@" --model /tmp/2b.gguf --no-history --backend cuda </dev/null >/tmp/$n.out 2>&1
    echo "$n: rc $? $(grep -E 'cupti_trace|tok/s' /tmp/$n.out | tr '\n' ' ')" >>"$S"
}
trace short -p "Tell me a long story about the sea." -n 40
trace greedy -p "Tell me a long story about the sea." -n 40 --temp 0 --repeat-penalty 1
trace ctx512 -f /tmp/p512.txt -n 40
python3 - >>"$S" 2>&1 <<'EOF'
import collections
for n in ("short", "greedy", "ctx512"):
    rows = []
    try:
        with open(f"/tmp/{n}.csv") as f:
            for line in f:
                a = line.rstrip("\n").split(",", 3)
                if len(a) == 4:
                    rows.append((int(a[0]), int(a[1]), a[3]))
    except OSError:
        print(f"\n== {n}: no trace"); continue
    rows.sort(key=lambda x: x[1])
    kern = rows
    # decode steps: each starts at the embedding kernel
    starts = [i for i, x in enumerate(kern) if "embed" in x[2]]
    if len(starts) < 6:
        print(f"\n== {n}: {len(kern)} kernels, {len(starts)} embed kernels"); continue
    steps = [kern[starts[i]:starts[i + 1]] for i in range(len(starts) - 6, len(starts) - 1)]
    print(f"\n== {n}: last {len(steps)} decode steps (embedding to next embedding) ==")
    for s in steps:
        print(f"step: {len(s)} kernels, first start -> last end {(s[-1][1] - s[0][0]) / 1e3:.1f} us")
    agg = collections.OrderedDict()
    tot = 0.0
    for s in steps:
        prev_end = None
        for st, en, name in s:
            key = name[:60]
            exposed = (en - prev_end) if prev_end is not None else (en - st)
            a = agg.setdefault(key, [0, 0.0, 0.0])
            a[0] += 1; a[1] += exposed; a[2] += en - st
            tot += exposed
            prev_end = en
    print(f"-- by name over those steps: count per step, exposed us per step, mean exposed us, mean duration us (sum exposed per step {tot / len(steps) / 1e3:.1f} us)")
    for k, (c, e, d) in sorted(agg.items(), key=lambda x: -x[1][1]):
        print(f"{c / len(steps):6.1f} {e / len(steps) / 1e3:9.1f} {e / c / 1e3:8.2f} {d / c / 1e3:8.2f}  {k}")
    # the layers' kernels by their place in a layer (the step is embed, 5 per layer, then the head)
    slots = ("QKV", "attention", "O", "gate/up", "down")
    agg = {}
    for s in steps:
        for i in range(1, len(s)):
            if "attn" not in s[i][2] and i % 5 == 2:
                break  # not the 5-per-layer shape
            j = (i - 1) % 5
            if i > 5 * 30:  # past the layers of a 30-layer model
                break
            a = agg.setdefault(slots[j], [0, 0.0, 0.0])
            a[0] += 1; a[1] += s[i][1] - s[i - 1][1]; a[2] += s[i][1] - s[i][0]
    print("-- layer kernels by place: count per step, mean exposed us, mean duration us")
    for k in slots:
        if k in agg:
            c, e, d = agg[k]
            print(f"{c / len(steps):6.1f} {e / c / 1e3:8.2f} {d / c / 1e3:8.2f}  {k}")
    # between steps: the last kernel's end of one step to the first kernel's start of the next
    # (the device idle unless the next step was queued in time)
    gaps = [(steps[i + 1][0][0] - steps[i][-1][1]) / 1e3 for i in range(len(steps) - 1)]
    if gaps:
        print("-- gaps between steps (us): " + " ".join(f"{g:.1f}" for g in gaps))
    print("-- the last step, first 16 kernels: start, end relative to the step's first start (us), exposed")
    s = steps[-1]; t0 = s[0][0]; prev = None
    for st, en, name in s[:16]:
        print(f"{(st - t0) / 1e3:8.2f} {(en - t0) / 1e3:8.2f} {((en - prev) if prev else en - st) / 1e3:7.2f}  {name[:60]}")
        prev = en
EOF
tail -3 /tmp/short.out >>"$S"
