#!/bin/sh
# Odd output and input files for the history export and perplexity:
#   --export -o onto a FIFO (stands for /dev/stdout, /dev/null: the export used to be renamed
#   over it, replacing the device) is written through and the FIFO stays; a link to a regular
#   file replaces the file it names, not the link; a directory or an empty name is one clear
#   line; --db on a FIFO or device is refused by name and -p goes on without history;
#   perplexity of an empty file, a directory or a device is one clear line, exit 1.
set -u
: "${BN_BIN:?BN_BIN must point at bitnet-chat}"
: "${BN_SOURCE_DIR:?}"
M="$BN_SOURCE_DIR/tests/data/models/i2s.gguf"
T=$(mktemp -d "${TMPDIR:-/tmp}/bn_qa_files.XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# one_line_fail EXPECTED_TEXT CMD...: exit 1, one line on stderr holding the text
one_line_fail() {
    want=$1
    shift
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    [ $rc = 1 ] || fail "$*: exit $rc, expected 1"
    [ "$(wc -l <"$T/err")" = 1 ] || { fail "$*: not one line"; cat "$T/err"; }
    grep -q -- "$want" "$T/err" || { fail "$*: message lacks '$want'"; cat "$T/err"; }
}

"$BN_BIN" -p "Keep this exchange" --model "$M" --temp 0 -n 4 --db "$T/h.db" >/dev/null 2>&1 \
    || fail "-p to set up the history"
"$BN_BIN" --db "$T/h.db" --export 1 >"$T/ref.md" 2>&1 || fail "plain export"

# a FIFO: written through, stays a FIFO
mkfifo "$T/fifo" || { echo "cannot make a FIFO"; exit 77; }
cat "$T/fifo" >"$T/fifo.out" &
reader=$!
"$BN_BIN" --db "$T/h.db" --export 1 -o "$T/fifo" 2>"$T/err" || { fail "export to a FIFO"; cat "$T/err"; }
# if the export did not open the FIFO, the reader would wait forever
( sleep 5; kill $reader 2>/dev/null ) >/dev/null 2>&1 &
watchdog=$!
wait $reader
kill $watchdog 2>/dev/null
[ -p "$T/fifo" ] || fail "the FIFO was replaced by a file"
cmp -s "$T/fifo.out" "$T/ref.md" || fail "the FIFO did not receive the export"

# a link to a regular file
echo old >"$T/target.md"
ln -s target.md "$T/link.md"
"$BN_BIN" --db "$T/h.db" --export 1 -o "$T/link.md" 2>"$T/err" || { fail "export to a link"; cat "$T/err"; }
[ -L "$T/link.md" ] || fail "the link was replaced by a file"
cmp -s "$T/target.md" "$T/ref.md" || fail "the link's target does not hold the export"

# a new file, then a missing session keeps it as it was
"$BN_BIN" --db "$T/h.db" --export 1 -o "$T/new.md" 2>/dev/null || fail "export to a new file"
cmp -s "$T/new.md" "$T/ref.md" || fail "new file differs"
one_line_fail "no session 99" "$BN_BIN" --db "$T/h.db" --export 99 -o "$T/new.md"
cmp -s "$T/new.md" "$T/ref.md" || fail "a failed export changed the existing file"

mkdir "$T/dir"
one_line_fail "is a directory" "$BN_BIN" --db "$T/h.db" --export 1 -o "$T/dir"
one_line_fail "empty" "$BN_BIN" --db "$T/h.db" --export 1 -o ""
ls -A "$T" "$T/dir" | grep -q "tmp-" && fail "a temporary file was left"

# --db on a FIFO (stands for /dev/null): refused by name, nothing created beside it, and -p
# still answers (without history)
one_line_fail "not a regular file" "$BN_BIN" --db "$T/fifo" --sessions
"$BN_BIN" -p "hi" --model "$M" --temp 0 -n 2 --db "$T/fifo" >"$T/out" 2>"$T/err" \
    || { fail "-p with --db on a FIFO"; cat "$T/err"; }
grep -q "fifo is not a regular file.*will not be saved" "$T/err" || { fail "-p --db FIFO: no warning"; cat "$T/err"; }
[ -s "$T/out" ] || fail "-p --db FIFO: no reply"
ls "$T" | grep -q "fifo-" && fail "a file was created beside the FIFO"

# perplexity inputs
: >"$T/empty.txt"
one_line_fail "empty.txt is empty" "$BN_BIN" perplexity --model "$M" "$T/empty.txt"
one_line_fail "dir: is a directory" "$BN_BIN" perplexity --model "$M" "$T/dir"
one_line_fail "/dev/zero: is a device" timeout 20 "$BN_BIN" perplexity --model "$M" /dev/zero

[ $fails = 0 ] && echo "test_qa_files_cli: all passed"
exit $((fails > 0))
