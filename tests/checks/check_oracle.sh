#!/bin/sh
# The scalar reference (kernels/*_ref.c, kernels/cpu/cpu_ref.c) is the oracle every fast path is
# checked against, so it must not run any of them: a bug in a fast path would then agree with
# itself. This checks the built library: every symbol a *_ref.c object calls that the kernels
# library itself defines must be another reference (name ending in _ref). Calls into libc and
# libm are not the library's and pass. Usage: check_oracle.sh path/to/libbn_kernels.a
lib=${1:?usage: check_oracle.sh LIBRARY}
command -v nm >/dev/null 2>&1 || { echo "SKIP: nm not found"; exit 77; }
[ -r "$lib" ] || { echo "FAIL: cannot read $lib"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
# "member symbol" per line: what the library defines, and what each member calls
nm "$lib" | awk '/:$/ { m = $1; sub(/:$/, "", m); next } NF == 3 && $2 ~ /[TDBRW]/ { print $3 }' |
    sort -u > "$tmp/defined"
nm -u "$lib" | awk '/:$/ { m = $1; sub(/:$/, "", m); next } NF == 2 && $1 == "U" { print m, $2 }' \
    > "$tmp/calls"
if ! grep -q '_ref\.c\.o ' "$tmp/calls"; then
    echo "FAIL: no *_ref.c object in $lib (renamed? then update this check)"; exit 1
fi
bad=0
n=0
while read -r member sym; do
    case $member in *_ref.c.o) ;; *) continue ;; esac
    n=$((n + 1))
    grep -qx "$sym" "$tmp/defined" || continue       # libc / libm
    case $sym in *_ref) continue ;; esac
    echo "FAIL: the reference $member calls $sym, which is not a reference"; bad=1
done < "$tmp/calls"
[ $bad -eq 0 ] && echo "ok: the reference objects call only references, libc and libm ($n calls)"
exit $bad
