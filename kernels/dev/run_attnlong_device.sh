#!/bin/sh
# One device call for the spans decode-attention kernel (issue #12, kernels/dev/
# attention_decode_long.cuh) against the product's decode attention, from prebuilt binaries only
# (nothing is built on the device). Run from the root of a source copy:
#   sh kernels/dev/run_attnlong_device.sh X [product]
# "product" (once the kernel is the product's kcuda_attn_decode; DEADLINE 270 unless set):
# test_kernels_cuda attention_all (every decode-attention shape), test_backend_cuda, racecheck
# over test_kernels_cuda attention, `bitnet-chat bench --quick` of this build and of
# bitnet-chat.base (the branch point's, when X holds it), then step 1 with the settings in
# LAB_ONLY only (default "S256 sm1 c32 b100"; the product's entry points and the tiled kernel
# are always in).
# X holds xz-compressed stripped binaries of a CUDA build of this branch:
#   dev_attn_decode.xz                         (required: the lab)
#   test_kernels_cuda.xz, test_backend_cuda.xz (optional: the product's attention tests)
#   bitnet-chat.xz, bitnet-chat.base.xz        (product mode: end to end, this build / the base)
# Packing, on the development machine (from the worktree root, build/ a CUDA build):
#   cmake --build build --target dev_attn_decode test_kernels_cuda test_backend_cuda
#   mkdir -p X && for b in dev_attn_decode test_kernels_cuda test_backend_cuda; do
#       strip -o X/$b build/tests/$b && xz -T2 -f X/$b; done
#   strip -o X/bitnet-chat build/bitnet-chat && xz -T2 -f X/bitnet-chat   (product mode; and the
#   base build's bitnet-chat as X/bitnet-chat.base.xz)
# Lab mode (the default), each step cut to the time left (DEADLINE seconds, 230 unless set):
#   1. dev_attn_decode long: the spans kernel's settings and the product's entry points checked
#      against the double-precision host reference (2B-4T heads at 24 positions up to 4095; GQA
#      1, 3, 8, 12, head_dim 64, 80, 96, 100, 256; Llama3-8B heads), then microseconds per layer
#      in place (30 decode layers of the product's GEMVs around it, chain - gemv, median of 3
#      interleaved rounds) at positions 64 / 512 / 1024 / 2048 / 4095, new against the product
#      by position and the product's long-context kernel in the same run (LONG, RATIO, BEST
#      lines), alone at 4095 (ALONE), and Llama3-8B heads alone (LONG8B);
#   2. dev_attn_decode longk: the same for the cluster instantiation (K lines; a separate process,
#      so that a fault there leaves step 1's figures);
#   3. dev_attn_decode longsan under compute-sanitizer racecheck and memcheck (the spans kernel's
#      settings, both instantiations, at a few positions and shapes);
#   4. where present: test_kernels_cuda attention, test_backend_cuda.
# summary.txt, lab.txt and lab_k.txt go to $OUT, every other log to $OUT/logs.tar.xz.
set -u
T0=$(date +%s)
X=$(cd "${1:?carried folder}" && pwd)
MODE=${2:-lab}
S=$OUT/summary.txt
W=/work/wt-attnlong
mkdir -p /work
[ -e $W ] || ln -s "$PWD" $W # the test binaries name $W/tests/data (compiled in)
B=/tmp/al
L=$B/logs
mkdir -p $L
for b in dev_attn_decode test_kernels_cuda test_backend_cuda bitnet-chat bitnet-chat.base; do
    [ -f "$X/$b.xz" ] && xz -dc "$X/$b.xz" >$B/$b && chmod +x $B/$b
done
[ -x $B/dev_attn_decode ] || { echo "no $X/dev_attn_decode.xz" | tee "$S"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
if [ "$MODE" = product ]; then DEADLINE=${DEADLINE:-270}; else DEADLINE=${DEADLINE:-230}; fi
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
lab() { # log mode [only]: the lab's long mode and its summary lines (step sets $log: lf here)
    lf=$1 m=$2
    shift 2
    step "dev_attn_decode $m $*" 100 $lf $B/dev_attn_decode $m "$@"
    grep -E "^check|FAIL|refused|^LONG \||^RATIO|^BEST|^ALONE|rror" "$OUT/$lf" | head -60 >>"$S"
    grep -E "^LONG8B" "$OUT/$lf" | grep -v "product long" >>"$S"
}
if [ "$MODE" = product ]; then
    [ -x $B/test_kernels_cuda ] && step "test_kernels_cuda attention_all" 60 tk.txt $B/test_kernels_cuda attention_all &&
        grep -E "CHECK failed|checks|attention decode at .* 20/5 hd 128" "$L/tk.txt" | tail -5 >>"$S"
    [ -x $B/test_backend_cuda ] && step "test_backend_cuda" 40 tb.txt $B/test_backend_cuda &&
        grep -E "CHECK failed|checks" "$L/tb.txt" | tail -3 >>"$S"
    [ -x $B/test_kernels_cuda ] &&
        step "racecheck test_kernels_cuda attention" 45 tsan.txt compute-sanitizer --tool racecheck $B/test_kernels_cuda attention &&
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|checks" "$L/tsan.txt" | tail -2 >>"$S"
    for bin in bitnet-chat bitnet-chat.base; do
        [ -x $B/$bin ] || continue
        step "bench $bin" 50 bench_$bin.txt $B/$bin bench --backend cuda --skip-kernels --quick
        echo "bench $bin:" >>"$S"
        grep -A7 "^| context" "$L/bench_$bin.txt" | grep -vE "^\|[-|: ]+\|$" >>"$S"
    done
    lab lab.txt long only "${LAB_ONLY:-S256 sm1 c32 b100}"
else
    lab lab.txt long
    lab lab_k.txt longk
    for tool in racecheck memcheck; do
        step "$tool dev_attn_decode longsan" 40 san_$tool.txt compute-sanitizer --tool $tool $B/dev_attn_decode longsan
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^check|longsan" "$L/san_$tool.txt" | tail -4 >>"$S"
    done
    if [ -x $B/test_kernels_cuda ]; then
        step "test_kernels_cuda attention" 40 kernels_attn.txt $B/test_kernels_cuda attention
        grep -E "CHECK failed|checks" "$L/kernels_attn.txt" | tail -4 >>"$S"
    fi
    if [ -x $B/test_backend_cuda ]; then
        step "test_backend_cuda" 40 backend.txt $B/test_backend_cuda
        grep -E "CHECK failed|checks" "$L/backend.txt" | tail -4 >>"$S"
    fi
fi
echo "total $(($(date +%s) - T0)) s" >>"$S"
tar cf - -C $B logs | xz >"$OUT/logs.tar.xz"
cat "$S"
