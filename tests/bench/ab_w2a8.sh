#!/bin/sh
# A/B timing of kernels/cpu/cpu_w2a8.c: REV's version against the working tree's, in one process
# (see tests/bench/ab_w2a8.c for the method). Not a ctest. Build the tree first (build/libbn_kernels.a).
# usage: sh tests/bench/ab_w2a8.sh REV [M tokens] [rounds] [BUILD_DIR] [threads] [r16]
#   r16: new = this tree's kernels on the R16 layout (kernels/cpu/cpu_w2a8_r16.c), old = REV's I2_S
#   e.g. sh tests/bench/ab_w2a8.sh HEAD~3 1 41      decode GEMV;  ... HEAD~3 64 11   prefill GEMM
# An A/A run (REV = the tree's own commit, no changes) shows the noise floor of the machine.
set -eu
rev=${1:?usage: ab_w2a8.sh REV [M] [rounds] [BUILD_DIR]}
m=${2:-1}
rounds=${3:-21}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${4:-$src/build}
threads=${5:-2}
mode=${6:-}
[ -f "$build/libbn_kernels.a" ] || { echo "no $build/libbn_kernels.a: build the tree first"; exit 1; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
git -C "$src" show "$rev:kernels/cpu/cpu_w2a8.c" >"$t/old_w2a8.c"
flags="-I$src -I$src/tests/helpers -O2 -g -DNDEBUG -std=gnu11"
ren=""
for f in quant_act_cpu w2a8_gemm_rows w2a8_linear_rows w2a8_linear_rows_ex w2a8_linear_mt \
         w2a8_linear_mt_ex i2s_codes_valid; do
    ren="$ren -D$f=old_$f"
done
${CC:-cc} $flags $ren -c "$t/old_w2a8.c" -o "$t/old.o"
${CC:-cc} $flags -c "$src/tests/bench/ab_w2a8.c" -o "$t/ab.o"
${CC:-cc} "$t/ab.o" "$t/old.o" "$build/libbn_kernels.a" -o "$t/ab_w2a8" -lm -lpthread
echo "ab_w2a8: old = $rev:kernels/cpu/cpu_w2a8.c, new = the working tree${mode:+ ($mode)}; $threads thread(s)"
"$t/ab_w2a8" "$m" "$rounds" "$threads" $mode
