#!/bin/sh
# One device call for the CUDA product without its lab (kernels/dev/README.md): the GPU kernel
# tests on the live kernels (exact int32 GEMV/GEMM, the two GEMV kernels' bits with a norm,
# both GEMM tiles, both prefill attention splits), the backend tests, both lab programs (every
# lab version checked exactly against the CPU reference, then timed), `bench --quick` (kernel
# table vs cuBLAS, end to end) and compute-sanitizer memcheck + racecheck over the prefill
# kernels. Builds nothing. Run from the root of the source copy on the device machine:
#   sh kernels/dev/run_lab_device.sh DIR
# DIR holds the binaries of a CUDA build (cmake --build build --target bitnet-chat
# test_kernels_cuda test_backend_cuda dev_w2a8_gemv dev_w2a8_gemm): bitnet-chat,
# test_kernels_cuda, test_backend_cuda, dev_w2a8_gemv, dev_w2a8_gemm. Logs and summary.txt go to
# $OUT.
set -u
D=$(cd "${1:?folder with the binaries}" && pwd)
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
. "$(dirname "$0")/device_step.sh" # step NAME SECONDS LOG COMMAND...
step test_kernels_cuda 240 kernels.txt "$D/test_kernels_cuda"
grep -E "FAIL|checks" "$OUT/kernels.txt" | head -20 >>"$S"
step test_backend_cuda 120 backend.txt "$D/test_backend_cuda"
grep -E "FAIL|checks" "$OUT/backend.txt" | head -10 >>"$S"
step "dev_w2a8_gemv fast" 240 lab_gemv.txt "$D/dev_w2a8_gemv" fast
grep -E "FAILED|checked exactly" "$OUT/lab_gemv.txt" >>"$S"
step "dev_w2a8_gemm 512 64" 300 lab_gemm.txt "$D/dev_w2a8_gemm" 512 64
grep -E "FAILED|four GEMMs|attention v1" "$OUT/lab_gemm.txt" >>"$S"
step "bench --quick" 200 bench.txt "$D/bitnet-chat" bench --backend cuda --quick
step "memcheck prefill" 200 memcheck.txt compute-sanitizer --tool memcheck "$D/test_kernels_cuda" prefill
grep -E "ERROR SUMMARY" "$OUT/memcheck.txt" >>"$S"
step "racecheck prefill" 300 racecheck.txt compute-sanitizer --tool racecheck "$D/test_kernels_cuda" prefill
grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$OUT/racecheck.txt" >>"$S"
cat "$S"
echo "--- bench"
grep -vE "^\|[-|: ]+\|$" "$OUT/bench.txt" | tail -40
exit 0
