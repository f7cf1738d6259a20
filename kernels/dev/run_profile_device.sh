#!/bin/sh
# One device call that times every kernel of the product path in isolation (Nsight Compute,
# gpu__time_duration, clocks and caches left alone) on a 2B-shaped GGUF (random weights):
#   - decode after a short prompt and after a ~3600-token prompt (--ctx 4096), default sampling
#     (the device sampler's kernels included), the last decode step's kernels listed in order;
#   - prefill of a 512-token prompt, its kernels summed by name.
# ncu serialises the kernels, so PDL overlap is gone: the figures say what each kernel costs
# alone, not the step's wall time (bench says that). Run from the source copy's root:
#   sh kernels/dev/run_profile_device.sh X      (X as for run_release_device.sh)
set -u
X=$(cd "${1:?carried folder}" && pwd)
S=$OUT/summary.txt
mkdir -p /work && { [ -e /work/main ] || ln -s "$PWD" /work/main; }
tar xJf "$X/build.tar.xz" -C /work/main || { echo "cannot unpack the build"; exit 1; }
[ -f "$X/overlay.tar.xz" ] && { tar xJf "$X/overlay.tar.xz" -C /work/main || exit 1; }
B=/work/main/build-cuda
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$S" 2>&1
xz -dc "$X/tokenizer.json.xz" >/tmp/tokenizer.json
$B/tests/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b >/tmp/make.txt 2>&1 || { cat /tmp/make.txt >>"$S"; exit 1; }
line="The quick brown fox jumps over the lazy dog near the river bank today."
yes "$line" | head -n 240 >/tmp/p3600.txt
yes "$line" | head -n 34 >/tmp/p512.txt
NCU="ncu --metrics gpu__time_duration.sum --cache-control none --clock-control none --csv --page raw"
prof() { # name args...
    n=$1
    shift
    timeout 240 $NCU $B/bitnet-chat "$@" --model /tmp/2b.gguf --no-history --backend cuda >/tmp/$n.csv 2>/tmp/$n.err </dev/null
    echo "$n: rc $? ($(wc -l </tmp/$n.csv) lines)" >>"$S"
}
prof short -p "Tell me a long story about the sea." -n 3
prof long -f /tmp/p3600.txt -n 3 --ctx 4096
prof pre512 -f /tmp/p512.txt -n 1 --ctx 4096
python3 - "$S" <<'EOF' >>"$S" 2>&1
import csv, sys, collections
def load(n):
    rows = []
    with open(f"/tmp/{n}.csv") as f:
        lines = [l for l in f if l.startswith('"')]
    r = csv.reader(lines)
    hdr = next(r)
    ki, ti = hdr.index("Kernel Name"), hdr.index("gpu__time_duration.sum")
    gi = hdr.index("Grid Size") if "Grid Size" in hdr else None
    for row in r:
        try:
            t = float(row[ti].replace(",", ""))
        except ValueError:
            continue  # the units row
        rows.append((row[ki][:70], t, row[gi] if gi is not None else ""))
    return rows
for n in ("short", "long"):
    rows = load(n)
    # the last decode step: from the last attention decode kernel's layer 0 on; find the step
    # boundary as the last run of kernels after the final 'sample' or argmax kernel's predecessor
    print(f"\n== {n}: {len(rows)} kernels; the last 190 in launch order (ns) ==")
    for k, t, g in rows[-190:]:
        print(f"{t:10.0f}  {k}  {g}")
    agg = collections.OrderedDict()
    for k, t, g in rows[-190:]:
        a = agg.setdefault(k, [0, 0.0])
        a[0] += 1
        a[1] += t
    print(f"-- {n}: last 190 by name: count, total us, mean us")
    for k, (c, t) in sorted(agg.items(), key=lambda x: -x[1][1]):
        print(f"{c:4d} {t/1e3:9.1f} {t/1e3/c:8.2f}  {k}")
rows = load("pre512")
agg = collections.OrderedDict()
for k, t, g in rows:
    a = agg.setdefault(k, [0, 0.0])
    a[0] += 1
    a[1] += t
print(f"\n== pre512: {len(rows)} kernels, total {sum(t for _, t, _ in rows)/1e3:.1f} us; by name ==")
for k, (c, t) in sorted(agg.items(), key=lambda x: -x[1][1]):
    print(f"{c:4d} {t/1e3:9.1f} {t/1e3/c:8.2f}  {k}")
EOF
tail -5 /tmp/short.err >>"$S"
