#!/bin/sh
# One device call that records the decode step as it really runs (Nsight Systems, every node of
# the CUDA graph traced, PDL overlap kept) on a 2B-shaped GGUF (random weights), and prints where
# a token's time goes: for each kernel of the last decode steps its exposed time (its end minus
# the previous kernel's end: what it adds to the step's critical path) beside its duration (start
# to end, which with PDL includes the wait for its predecessor). ncu (run_profile_device.sh)
# times kernels alone; this says what they cost in the chain. Run from the source copy's root:
#   sh kernels/dev/run_timeline_device.sh X      (X as for run_release_device.sh)
set -u
X=$(cd "${1:?carried folder}" && pwd)
S=$OUT/timeline.txt
mkdir -p /work && { [ -e /work/main ] || ln -s "$PWD" /work/main; }
[ -x /work/main/build-cuda/bitnet-chat ] || tar xJf "$X/build.tar.xz" -C /work/main || { echo "cannot unpack the build"; exit 1; }
B=/work/main/build-cuda
NSYS=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
[ -n "$NSYS" ] || { echo "no nsys on this machine" >"$S"; exit 0; }
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
    timeout 150 "$NSYS" profile -t cuda --cuda-graph-trace=node -o /tmp/$n -f true \
        $B/bitnet-chat "$@" --model /tmp/2b.gguf --no-history --backend cuda </dev/null >/tmp/$n.out 2>&1
    echo "$n: nsys rc $?" >>"$S"
    timeout 120 "$NSYS" stats --report cuda_gpu_trace --format csv -o /tmp/$n /tmp/$n.nsys-rep >/dev/null 2>&1
    ls /tmp/$n*_cuda_gpu_trace.csv >>"$S" 2>&1
}
trace short -p "Tell me a long story about the sea." -n 40
trace greedy -p "Tell me a long story about the sea." -n 40 --temp 0 --repeat-penalty 1
trace ctx512 -f /tmp/p512.txt -n 40
python3 - >>"$S" 2>&1 <<'EOF'
import csv, glob, collections
for n in ("short", "greedy", "ctx512"):
    fs = glob.glob(f"/tmp/{n}*_cuda_gpu_trace.csv")
    if not fs:
        print(f"\n== {n}: no trace"); continue
    rows = []
    with open(fs[0]) as f:
        r = csv.DictReader(f)
        for row in r:
            name = row.get("Name", "")
            try:
                st = int(row["Start (ns)"]); du = int(row["Duration (ns)"])
            except (KeyError, ValueError):
                continue
            rows.append((st, st + du, name))
    rows.sort(key=lambda x: x[1])
    kern = [x for x in rows if "[CUDA mem" not in x[2]]
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
    print(f"-- by name over those steps: count per step, exposed us per step, mean exposed us, mean duration us (sum exposed per step {tot / len(steps):.1f} us)")
    for k, (c, e, d) in sorted(agg.items(), key=lambda x: -x[1][1]):
        print(f"{c / len(steps):6.1f} {e / len(steps):9.1f} {e / c:8.2f} {d / c:8.2f}  {k}")
    print("-- the last step, first 16 kernels: start, end relative to the step's first start (us), exposed")
    s = steps[-1]; t0 = s[0][0]; prev = None
    for st, en, name in s[:16]:
        print(f"{(st - t0) / 1e3:8.2f} {(en - t0) / 1e3:8.2f} {((en - prev) if prev else en - st) / 1e3:7.2f}  {name[:60]}")
        prev = en
EOF
tail -3 /tmp/short.out >>"$S"
