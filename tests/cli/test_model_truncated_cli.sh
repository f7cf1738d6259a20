#!/bin/sh
# A model file truncated while the chat uses it (issue 16 item 3): the process ends by SIGBUS
# (the file is mapped), but only after the crash handler has put the terminal back (the
# emergency sequence leaves the alternate screen and turns mouse reporting off) and said what
# happened. Runs the real chat in a pty (script(1)) on a copy of the demo model and truncates
# the copy after the load, just before a question is sent (a demo reply can end within
# milliseconds, before a truncation that follows the question). --mmap keeps every weight in the
# file mapping (by default the matrices are copied onto huge pages at load and only the embedding
# stays mapped). Skips when script(1) or the demo model is missing, or when no fault happened.
set -u
: "${BN_BIN:?}" "${BN_SOURCE_DIR:?}"
command -v script >/dev/null 2>&1 || { echo "SKIP: script(1) not installed"; exit 77; }
DEMO="$BN_SOURCE_DIR/assets/bitnet-demo.gguf"
[ -f "$DEMO" ] || { echo "SKIP: no demo model"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/bn_trunc.XXXXXX")
trap 'rm -rf "$T"' EXIT
cp "$DEMO" "$T/m.gguf"
(sleep 4; : >"$T/m.gguf"; sleep 0.2; printf 'Tell me a very long story about the sea and ships.\r'; sleep 4) |
    timeout 60 script -qec "\"$BN_BIN\" --no-history --mmap \"$T/m.gguf\"; echo EXIT=\$?" /dev/null >"$T/out" 2>&1
code=$(grep -a -o 'EXIT=[0-9]*' "$T/out" | tail -n 1)
case "$code" in
EXIT=135) ;;
EXIT=0) echo "SKIP: the reply ended before the model file was truncated"; exit 77 ;;
*) echo "FAIL: exit status '$code' (wanted 135, SIGBUS)"; exit 1 ;;
esac
fails=0
if grep -a -q "$(printf '\033\\[?1000l')" "$T/out" && grep -a -q "$(printf '\033\\[?1049l')" "$T/out"; then
    echo "ok   terminal restored (mouse reporting off, alternate screen left)"
else
    echo "FAIL terminal not restored"; fails=1
fi
if grep -a -q "bus error: a file mapped into memory" "$T/out"; then echo "ok   the bus error is explained"
else echo "FAIL no explanation of the bus error"; fails=1; fi
exit $fails
