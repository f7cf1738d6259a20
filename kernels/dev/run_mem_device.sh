#!/bin/sh
# One device call for #12's memory target (the 2B model under 2 GB at ctx 4096): every GPU ctest,
# the context probe (kernels/dev/mem_probe.cu: the stack, heap and printf limits, a stream, graphs,
# each by cudaMemGetInfo), the largest kernel frames (cuobjdump --dump-resource-usage),
# `bench --backend cuda --quick --skip-kernels` (its device-memory lines with the backend's
# breakdown), and `bitnet-chat -p` after a ~3600-token prompt at --ctx 4096 with the process's
# device memory sampled by nvidia-smi every 50 ms (peak) and the device's in use before, with the
# default sampling, greedy and the sort (--top-k 0); with bitnet-chat.base.xz (and .base0.xz) in X
# the same for the binaries before the change, alternated, same run.
# Run from the root of the source copy on the device machine:
#   sh X/run_mem_device.sh X
# X holds build.tar.xz (the CUDA build folder made on the development machine as
# /work/wt-mem/build; its test files name that absolute path, so a link makes it valid here),
# tokenizer.json.xz (the Llama 3 tokenizer), dev_mem_probe.xz (the probe; pack_cuda_build.sh
# keeps only the test binaries) and optionally bitnet-chat.base.xz / .base0.xz (baselines). Logs and summary.txt go to
# $OUT.
set -u
T0=$(date +%s)
X=$(cd "${1:?carried folder}" && pwd)
S=$OUT/summary.txt
L=/tmp/logs
mkdir -p $L /work
[ -e /work/wt-mem ] || ln -s "$PWD" /work/wt-mem
tar xJf "$X/build.tar.xz" -C /work/wt-mem || { echo "cannot unpack the build"; exit 1; }
B=/work/wt-mem/build
DEADLINE=${DEADLINE:-570}
step() { # name seconds log command...: cut to what the deadline leaves
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
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.reserved,memory.used --format=csv >"$S" 2>&1
echo "== probe (fresh process) ==" >>"$S"
xz -dc "$X/dev_mem_probe.xz" >/tmp/dev_mem_probe && chmod +x /tmp/dev_mem_probe
step "dev_mem_probe" 60 probe.txt /tmp/dev_mem_probe
cat "$L/probe.txt" >>"$S"
# the same with one hardware queue instead of the default 8 (each may hold device memory)
step "dev_mem_probe, CUDA_DEVICE_MAX_CONNECTIONS=1" 60 probe1.txt env CUDA_DEVICE_MAX_CONNECTIONS=1 /tmp/dev_mem_probe
grep -E "^context made|stack +set +(1024|0):" "$L/probe1.txt" | head -3 >>"$S"
echo "== largest kernel frames in bitnet-chat (cuobjdump --dump-resource-usage: STACK, LOCAL) ==" >>"$S"
cuobjdump --dump-resource-usage $B/bitnet-chat >"$L/res.txt" 2>&1
python3 - "$L/res.txt" >>"$S" 2>&1 <<'EOF'
import re, sys
rows, fn = [], None
for line in open(sys.argv[1]):
    m = re.search(r"Function (\S+):", line)
    if m: fn = m.group(1)
    st = re.search(r"STACK:(\d+)", line); lo = re.search(r"LOCAL:(\d+)", line)
    if st and fn: rows.append((int(st.group(1)), int(lo.group(1)) if lo else 0, fn))
rows.sort(reverse=True)
print(f"{len(rows)} kernels; with a stack frame: {sum(1 for r in rows if r[0] or r[1])}")
for s, l, f in rows[:8]: print(f"  STACK {s:4d} LOCAL {l:4d}  {f[:110]}")
EOF
step "ctest -L gpu" 240 gpu_tests.txt ctest --test-dir $B -L gpu --output-on-failure --timeout 150
grep -E "tests passed|\*\*\*|Failed|Not Run" "$L/gpu_tests.txt" | sed 's/^ *//' >>"$S"
xz -dc "$X/tokenizer.json.xz" >/tmp/tokenizer.json
step "make_bench_model" 120 make.txt $B/tests/make_bench_model /tmp/tokenizer.json /tmp/2b.gguf 2b
line="The quick brown fox jumps over the lazy dog near the river bank today."
yes "$line" | head -n 240 >/tmp/p3600.txt
bins="$B/bitnet-chat"
for v in base base0; do
    [ -f "$X/bitnet-chat.$v.xz" ] && xz -dc "$X/bitnet-chat.$v.xz" >/tmp/bitnet-chat.$v && chmod +x /tmp/bitnet-chat.$v &&
        bins="$bins /tmp/bitnet-chat.$v"
done
# peak of the process's device memory (nvidia-smi per process, every 50 ms) during -p
peak_run() { # name bin args...
    n=$1 bin=$2
    shift 2
    before=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits)
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 50 >"$L/smi_$n.txt" 2>&1 &
    smi=$!
    timeout 60 $bin "$@" --model /tmp/2b.gguf --no-history --backend cuda >/dev/null 2>"$L/p_$n.txt" </dev/null
    rc=$?
    sleep 0.2
    kill $smi 2>/dev/null
    wait $smi 2>/dev/null
    peak=$(awk -F', *' '$2+0 > m {m = $2+0} END {print m+0}' "$L/smi_$n.txt")
    echo "$n: rc $rc; device in use before $before MiB; process peak (nvidia-smi) $peak MiB; $(tail -1 $L/p_$n.txt)" >>"$S"
}
echo "== -p after a ~3600-token prompt, --ctx 4096 (new, then the baselines carried) ==" >>"$S"
for round in 1 2; do
    for setting in default greedy sort; do
        case $setting in
        default) set -- ;;
        greedy) set -- --temp 0 ;;
        sort) set -- --top-k 0 ;;
        esac
        for bin in $bins; do
            name=new
            [ "$bin" = "$B/bitnet-chat" ] || name=$(basename "$bin" | sed 's/bitnet-chat\.//')
            peak_run "$name-$setting-$round" $bin -f /tmp/p3600.txt -n 200 --ctx 4096 "$@"
        done
    done
    [ $round = 1 ] || break
done
peak_run "new-short" $B/bitnet-chat -p "Tell me a long story about the sea." -n 200 --ctx 4096
# what the kernels' code takes: every module loaded at start instead of on first use (the default)
peak_run "new-eager" env CUDA_MODULE_LOADING=EAGER $B/bitnet-chat -f /tmp/p3600.txt -n 200 --ctx 4096
peak_run "new-1-connection" env CUDA_DEVICE_MAX_CONNECTIONS=1 $B/bitnet-chat -f /tmp/p3600.txt -n 200 --ctx 4096
echo "== bench --backend cuda --quick --skip-kernels: device memory ==" >>"$S"
step "bench new" 150 bench.txt $B/bitnet-chat bench --backend cuda --quick --skip-kernels
grep -E "^Device memory|^which|^  [a-zA-Z]|^\| (64|512|2000|4000) \|" "$L/bench.txt" | head -60 >>"$S"
step "memcheck test_backend_cuda" 120 san.txt compute-sanitizer --tool memcheck $B/tests/test_backend_cuda
grep -E "ERROR SUMMARY" "$L/san.txt" >>"$S"
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $L . | xz -6 >"$OUT/logs.tar.xz"
cp "$L/bench.txt" "$OUT/" 2>/dev/null
cat "$S"
exit 0
