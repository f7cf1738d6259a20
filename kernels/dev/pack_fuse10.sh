#!/bin/sh
# Packs what kernels/dev/run_fuse10_device.sh runs into BUILD/fuse10_carry/f10.tar.xz (stripped):
# the lab, the GPU tests the decode path touches, make_bench_model, the tokenizer, this build's
# bitnet-chat and the baseline BUILD/fuse10_base/bitnet-chat (made beforehand: this branch with
# FUSE_UNTIL = 0 in kernels/cuda/qkv_attention.cu, built, copied there). Usage, from the source
# root: sh kernels/dev/pack_fuse10.sh build
set -eu
B=${1:?build dir}
T=$(mktemp -d)
for f in tests/dev_fuse tests/test_fused_decode_cuda tests/test_backend_cuda tests/test_demo_golden_cuda tests/test_families_cuda \
    tests/make_bench_model bitnet-chat fuse10_base/bitnet-chat; do
    mkdir -p "$T/build/$(dirname $f)"
    cp "$B/$f" "$T/build/$f"
    strip "$T/build/$f"
done
mkdir -p "$T/build/tokenizer-data/llama3"
cp "$B/tokenizer-data/llama3/tokenizer.json" "$T/build/tokenizer-data/llama3/"
mkdir -p "$B/fuse10_carry"
tar cf - -C "$T" build | xz -T2 -6 >"$B/fuse10_carry/f10.tar.xz.tmp"
mv "$B/fuse10_carry/f10.tar.xz.tmp" "$B/fuse10_carry/f10.tar.xz" 
rm -rf "$T"
ls -la "$B/fuse10_carry/f10.tar.xz"
