#!/bin/sh
# One device call for the prefill chain (issue #12; kernels/dev/README.md, "The prefill chain"):
# `dev_w2a8_gemm chain` at T = 512 after 1024 and after 0 positions (every variant checked bit for
# bit against the product's chain first, then timed in five compositions and per kernel), with
# the SM clock and power sampled every 200 ms beside it (a throttled clock would show there), then
# `dev_w2a8_gemm wgmma 512` (version 7 as rewritten in 7851a0b: exactness and time beside versions
# 4 and 5) and `dev_w2a8_gemm cold 512`. Builds nothing. Run from the root of the source copy on
# the device machine (~2-4 minutes):
#   sh kernels/dev/run_chain_device.sh X
# X holds chain.tar.xz, packed on the development machine (stripped, xz, ~7 MB) by
#   cmake --build build-cuda --target dev_w2a8_gemm
#   sh kernels/dev/run_chain_device.sh --pack build-cuda X
# with X a folder that .git/info/exclude ignores, carried by the call. Logs, the lab's output and
# summary.txt go to $OUT.
set -u
if [ "${1:-}" = --pack ]; then
    B=${2:?build dir} X=${3:?output dir}
    T=$(mktemp -d)
    mkdir -p "$T/chain" "$X"
    cp "$B/tests/dev_w2a8_gemm" "$T/chain/" && strip "$T/chain/dev_w2a8_gemm" || exit 1
    tar cf - -C "$T" chain | xz -T2 -6 >"$X/chain.tar.xz" || exit 1
    rm -rf "$T"
    ls -la "$X"
    exit 0
fi
X=$(cd "${1:?carried folder}" && pwd)
S=$OUT/summary.txt
tar xJf "$X/chain.tar.xz" -C /tmp || { echo "cannot unpack $X/chain.tar.xz"; exit 1; }
D=/tmp/chain
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader >"$S" 2>&1
. "$(dirname "$0")/device_step.sh" # step NAME SECONDS LOG COMMAND...
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv -lms 200 >"$OUT/clocks.csv" 2>&1 &
SMI=$!
step "chain 512 1024 30" 240 chain_1024.txt "$D/dev_w2a8_gemm" chain 512 1024 30
step "chain 512 0 30" 240 chain_0.txt "$D/dev_w2a8_gemm" chain 512 0 30
kill $SMI 2>/dev/null
step "wgmma 512" 240 wgmma.txt "$D/dev_w2a8_gemm" wgmma 512
step "cold 512" 180 cold.txt "$D/dev_w2a8_gemm" cold 512
grep -h -E "^\| chain|FAILED|BEST5" "$OUT"/chain_*.txt "$OUT/wgmma.txt" >>"$S" 2>/dev/null
cat "$S"
