#!/bin/sh
# No environment variable changes what the engine computes or how fast: kernels/ and infer/ read
# none (the kernel lab, kernels/dev, may). Options travel as arguments; `bench` takes flags.
# Usage: check_no_env.sh [ROOT]. Exits 1 listing the reads.

# check_tree DIR: prints every environment read under DIR/kernels and DIR/infer; 1 if any.
check_tree() {
    hits=$(cd "$1" && find kernels infer \( -name '*.[ch]' -o -name '*.cu' -o -name '*.cuh' \) \
               ! -path 'kernels/dev/*' -exec grep -nHE '\b(secure_)?getenv[[:space:]]*\(' {} + 2>/dev/null)
    [ -z "$hits" ] && return 0
    echo "environment read in the engine:"; echo "$hits"
    return 1
}

# Self-test: the same check_tree passes a clean tree and fails on a planted read in each folder,
# or a green result would prove nothing.
self_test() {
    tmp=$(mktemp -d) || return 1
    ok=0
    mkdir -p "$tmp/kernels/cuda" "$tmp/kernels/dev" "$tmp/infer"
    echo 'int f(void) { return 0; }' > "$tmp/infer/a.c"
    echo 'const char *lab(void) { return getenv("X"); }' > "$tmp/kernels/dev/lab.cu"
    check_tree "$tmp" >/dev/null || { echo "self-test: a clean tree failed"; ok=1; }
    for f in kernels/cuda/k.cu infer/b.c; do
        echo 'int v(void) { return getenv ("BITNET_X") != 0; }' > "$tmp/$f"
        check_tree "$tmp" >/dev/null && { echo "self-test: a read in $f passed"; ok=1; }
        rm "$tmp/$f"
    done
    rm -rf "$tmp"
    return $ok
}

self_test || exit 1
check_tree "${1:-.}" || exit 1
echo "kernels/ and infer/ read no environment variable"
