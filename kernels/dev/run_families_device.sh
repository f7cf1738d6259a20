#!/bin/sh
# One device call for the model families on the GPU (issue #14): builds nothing. Run from the
# root of a checkout (the copy of the source tree on the GPU machine; the fixtures are read from
# its tests/data/families); $1 = folder with the binaries of a CUDA build of the same tree:
#   test_families_cuda   the families fixtures and random models at head_dim 256 / 100 / 96,
#                        CUDA backend against CPU backend
#   test_backend_cuda    the BitNet 2B-4T path (relu^2, sub-norms) after the GLU epilogue change
#   test_kernels_cuda    the kernels against their scalar references
# $2: phases, any of "tests" (default) and "sanitize" (compute-sanitizer memcheck over
# test_families_cuda on Llama3 and the random models). Logs go to $OUT; $OUT/summary.txt has one rc line
# per run and the tests' summary lines.
set -u
D=$1
P=${2:-tests}
S=$OUT/summary.txt
F=$PWD/tests/data/families
has() { case " $P " in *" $1 "*) return 0 ;; esac; return 1; }
nvidia-smi --query-gpu=name,driver_version --format=csv >"$S" 2>&1
fam() { # name, then the test's arguments
    n=$1
    shift
    "$D/test_families_cuda" "$@" >"$OUT/families_$n.txt" 2>&1
    echo "test_families_cuda $n rc $?" >>"$S"
    grep -E "worst logit|refused|FAIL|failed|SKIP" "$OUT/families_$n.txt" | head -8 >>"$S"
}
if has tests; then
    fam llama3 "$F/llama3"
    fam falcon3 "$F/falcon3"
    fam falcon3_i2s "$F/falcon3" i2s.gguf
    fam falcon3_tq2_0 "$F/falcon3" tq2_0.gguf
    fam onebit "$F/onebit"
    fam random random
    "$D/test_backend_cuda" >"$OUT/test_backend_cuda.txt" 2>&1
    echo "test_backend_cuda rc $?" >>"$S"
    "$D/test_kernels_cuda" >"$OUT/test_kernels_cuda.txt" 2>&1
    echo "test_kernels_cuda rc $?" >>"$S"
    grep -E "FAIL|failed" "$OUT/test_backend_cuda.txt" "$OUT/test_kernels_cuda.txt" | head -10 >>"$S"
fi
if has sanitize; then
    for n in llama3 random; do
        a=$F/$n
        [ $n = random ] && a=random
        timeout 240 compute-sanitizer --tool memcheck "$D/test_families_cuda" "$a" >"$OUT/memcheck_$n.txt" 2>&1
        echo "memcheck test_families_cuda $n rc $?: $(grep 'ERROR SUMMARY' "$OUT/memcheck_$n.txt" | tail -1)" >>"$S"
    done
fi
cat "$S"
exit 0
