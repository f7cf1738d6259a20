#!/bin/sh
# The README's examples of load errors ("When a model does not load") are the program's own
# words: the demo model cut to 100 bytes and cut in half, and a directory with no config.json,
# are loaded with -p, and each message (after "cannot load the model: ") must appear verbatim,
# in backquotes, in the README. Skips when the demo model is missing.
set -u
: "${BN_BIN:?}" "${BN_SOURCE_DIR:?}"
DEMO="$BN_SOURCE_DIR/assets/bitnet-demo.gguf"
README="$BN_SOURCE_DIR/README.md"
[ -f "$DEMO" ] || { echo "SKIP: no demo model"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/bn_readme_err.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/models/bitnet-2b"
size=$(wc -c <"$DEMO")
fails=0
check() { # label, model path as typed (relative to $T)
    out=$(cd "$T" && "$BN_BIN" --no-history -p hi "$2" 2>&1 >/dev/null)
    rc=$?
    msg=$(printf '%s\n' "$out" | sed -n 's/^bitnet-chat: cannot load the model: //p' | head -n 1)
    if [ $rc -eq 0 ] || [ -z "$msg" ]; then
        echo "FAIL $1: no load error (exit $rc): $out"; fails=1
    elif grep -F -q "\`$msg\`" "$README"; then
        echo "ok   $1: $msg"
    else
        echo "FAIL $1: the README does not show the real message: $msg"; fails=1
    fi
}
head -c 100 "$DEMO" >"$T/models/x.gguf"
check "cut to 100 bytes" models/x.gguf
head -c $((size / 2)) "$DEMO" >"$T/models/x.gguf"
check "cut in half" models/x.gguf
check "no config.json" models/bitnet-2b
exit $fails
