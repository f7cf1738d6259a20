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
#   5. test_kernels_cuda in full (every kernel; decode attention at every shape and both kernels).
# X holds build.tar.xz: the folder build/ of the worktree /work/wt-attn-hybrid with bitnet-chat
# and tests/{test_kernels_cuda,test_backend_cuda,test_families_cuda,dev_attn_decode} (stripped).
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
step "test_kernels_cuda (all)" 200 kernels_all.txt $B/tests/test_kernels_cuda
grep -E "CHECK failed|checks" "$L/kernels_all.txt" | tail -4 >>"$S"
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $L . | xz -6 >"$OUT/logs.tar.xz"
echo "--- lab sweep"
grep -E "^SWEEP|^CROSS|^GRAPH|^EMPTY" "$OUT/lab.txt"
echo "--- summary"
cat "$S"
exit 0
