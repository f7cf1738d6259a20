#!/bin/sh
# The device call of the persistent decode lab (kernels/dev/README.md, "Persistent decode").
# Builds nothing: run from the root of a checkout on the GPU machine with $1 = a folder holding
# the binary dev_decode_persistent (build/tests/dev_decode_persistent of a CUDA build: static
# CUDA runtime, no other file needed). Runs the lab (every check with both load schedules, then
# the timing of both against the per-kernel chain in the same run, with per-step timelines), then
# compute-sanitizer memcheck, racecheck and synccheck over the small shapes. Logs go to $OUT;
# summary.txt (device, return codes, sanitizer summaries, then the lab's tables) is printed last.
# Optional $2: the lab mode (default all; check, time, small, tiny).
set -u
D=$(cd "${1:?folder with dev_decode_persistent}" && pwd)
MODE=${2:-all}
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$S" 2>&1
date -u >>"$S"
timeout 330 "$D/dev_decode_persistent" "$MODE" >"$OUT/lab.txt" 2>&1
echo "lab ($MODE) rc $?" >>"$S"
for t in memcheck racecheck synccheck; do
    timeout 70 compute-sanitizer --tool $t "$D/dev_decode_persistent" tiny >"$OUT/san_$t.txt" 2>&1
    echo "$t (tiny) rc $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/san_$t.txt" | tail -1)" >>"$S"
done
echo >>"$S"
cat "$OUT/lab.txt" >>"$S"
cat "$S"
exit 0
