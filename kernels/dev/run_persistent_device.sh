#!/bin/sh
# The device call of the persistent decode lab (kernels/dev/README.md, "Persistent decode"), as
# run on 2026-12-06. Run from the root of a checkout on the GPU machine; $1 = folder with the
# binaries dev_decode_persistent (and, for the product tests, test_backend_cuda,
# test_demo_golden_cuda, bitnet-chat); logs go to $OUT, a summary last.
set -u
D=$1
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$S" 2>&1
timeout 150 "$D/dev_decode_persistent" all >"$OUT/lab.txt" 2>&1; echo "lab rc $?" >>"$S"
if [ -x "$D/test_backend_cuda" ]; then
    timeout 60 "$D/test_backend_cuda" >"$OUT/tests.txt" 2>&1; echo "test_backend_cuda rc $?" >>"$S"
    BN_DEMO_ROOT=$PWD timeout 60 "$D/test_demo_golden_cuda" cuda >>"$OUT/tests.txt" 2>&1
    echo "test_demo_golden_cuda rc $?" >>"$S"
    BN_BIN=$D/bitnet-chat BN_SOURCE_DIR=$PWD timeout 60 sh tests/cli/test_demo_golden_cli.sh cuda >>"$OUT/tests.txt" 2>&1
    echo "test_demo_golden_cli_cuda rc $?" >>"$S"
fi
for t in memcheck racecheck synccheck; do
    timeout 60 compute-sanitizer --tool $t "$D/dev_decode_persistent" tiny >"$OUT/san_$t.txt" 2>&1
    echo "$t (tiny) rc $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/san_$t.txt" | tail -1)" >>"$S"
done
cat "$S" "$OUT/lab.txt"
exit 0
