#!/bin/sh
# Odd output and input files for the history export and perplexity:
#   --export -o onto a FIFO (stands for /dev/stdout, /dev/null: the export used to be renamed
#   over it, replacing the device) is written through and the FIFO stays; a link to a regular
#   file replaces the file it names, not the link; a directory or an empty name is one clear
#   line; --db on a FIFO or device is refused by name and -p goes on without history;
#   the first run creates the default history directory (it used to run without history when
#   ~/.local/share/bitnet-chat did not exist); perplexity of an empty file, a directory or a device is one clear line, exit 1.
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"
# one_line_fail EXPECTED_TEXT CMD...: exit 1, one line on stderr holding the text
one_line_fail() { expect_fail 1 "$@"; }

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
"$BN_BIN" --db "$T/h.db" --export 1 -o "$T/link.md" --force 2>"$T/err" || { fail "export to a link"; cat "$T/err"; }
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

# first run with the default database: its directory is created (private), the exchange saved
mkdir "$T/home"
env -u XDG_DATA_HOME HOME="$T/home" "$BN_BIN" -p "first run" --model "$M" --temp 0 -n 2 \
    >/dev/null 2>"$T/err" || { fail "-p on first run"; cat "$T/err"; }
grep -q "will not be saved" "$T/err" && { fail "first run: history not saved"; cat "$T/err"; }
[ -f "$T/home/.local/share/bitnet-chat/history.db" ] || fail "first run: no history.db created"
[ "$(stat -c %a "$T/home/.local/share/bitnet-chat" 2>/dev/null)" = 700 ] || fail "history directory not 0700"
env -u XDG_DATA_HOME HOME="$T/home" "$BN_BIN" --sessions >"$T/out" 2>&1
grep -q "first run" "$T/out" || { fail "first run: session not listed"; cat "$T/out"; }
# XDG_DATA_HOME (absolute) is honoured the same way
env XDG_DATA_HOME="$T/xdg/data" "$BN_BIN" -p "xdg run" --model "$M" --temp 0 -n 2 >/dev/null 2>"$T/err" \
    || { fail "-p with XDG_DATA_HOME"; cat "$T/err"; }
[ -f "$T/xdg/data/bitnet-chat/history.db" ] || { fail "XDG_DATA_HOME: no history.db"; cat "$T/err"; }

# perplexity inputs
: >"$T/empty.txt"
one_line_fail "empty.txt is empty" "$BN_BIN" perplexity --model "$M" "$T/empty.txt"
one_line_fail "dir: is a directory" "$BN_BIN" perplexity --model "$M" "$T/dir"
one_line_fail "/dev/zero: is a device" timeout 20 "$BN_BIN" perplexity --model "$M" /dev/zero

# history listings whose output cannot be written: exit 1 with a message (they exited 0)
for args in "--sessions" "--show 1" "--search exchange"; do
    "$BN_BIN" --db "$T/h.db" $args >&- 2>"$T/err"
    rc=$?
    [ $rc = 1 ] || fail "$args with stdout closed: exit $rc, expected 1"
    grep -q "writing to stdout failed" "$T/err" || { fail "$args >&-: no message"; cat "$T/err"; }
done

# tokenize reading a directory as stdin: an error, not an empty input (--jsonl exited 0)
one_line_fail "cannot read stdin: Is a directory" sh -c '"$0" tokenize "$1" <"$2"' "$BN_BIN" "$M" "$T"
one_line_fail "cannot read stdin: Is a directory" sh -c '"$0" tokenize --jsonl "$1" <"$2"' "$BN_BIN" "$M" "$T"

# an export onto a full disk names the cause (it said only "write failed")
if [ -w /dev/full ]; then
    one_line_fail "export: writing failed: No space left on device" "$BN_BIN" --db "$T/h.db" --export 1 -o /dev/full
    "$BN_BIN" --db "$T/h.db" --export 1 --format json >/dev/full 2>"$T/err"
    [ $? = 1 ] || fail "json export >/dev/full: exit status"
    grep -q "No space left on device" "$T/err" || { fail "json export >/dev/full: message"; cat "$T/err"; }
fi

# --help and --version into a full disk or a closed stdout: exit 1 with a message (exit 0 before)
for args in "--help" "--version"; do
    if [ -w /dev/full ]; then
        "$BN_BIN" $args >/dev/full 2>"$T/err"
        rc=$?
        [ $rc = 1 ] || fail "$args >/dev/full: exit $rc, expected 1"
        grep -q "writing to stdout failed" "$T/err" || { fail "$args >/dev/full: no message"; cat "$T/err"; }
    fi
    "$BN_BIN" $args >&- 2>"$T/err"
    rc=$?
    [ $rc = 1 ] || fail "$args >&-: exit $rc, expected 1"
    [ "$(wc -l <"$T/err")" = 1 ] || { fail "$args >&-: not one line"; cat "$T/err"; }
done

# perplexity whose result cannot be written: exit 1 with a message (it used to exit 0)
i=0
: >"$T/text.txt"
while [ $i -lt 40 ]; do
    echo "The quick brown fox jumps over the lazy dog. Line $i of a short text." >>"$T/text.txt"
    i=$((i + 1))
done
"$BN_BIN" perplexity --model "$M" "$T/text.txt" --ctx 64 >&- 2>"$T/err"
rc=$?
[ $rc = 1 ] || fail "perplexity with stdout closed: exit $rc, expected 1"
grep -q "writing the result to stdout failed" "$T/err" || { fail "perplexity >&-: no message"; cat "$T/err"; }

# A database another program keeps locked for the whole run: -p still answers, says the
# exchange is kept in memory, and at exit says that it was not saved after all (it used to
# promise "saved when possible" and exit without a word). Once the lock is gone, -p saves.
LOCKER=${1:-}
if [ -n "$LOCKER" ] && [ -x "$LOCKER" ]; then
    "$BN_BIN" -p "First" --model "$M" --temp 0 -n 2 --db "$T/lk.db" >/dev/null 2>&1 || fail "lk.db setup"
    "$LOCKER" "$T/lk.db" 60 >"$T/lk.out" 2>&1 &
    lpid=$!
    i=0
    while ! grep -q locked "$T/lk.out" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    "$BN_BIN" -p "While locked" --model "$M" --temp 0 -n 2 --db "$T/lk.db" >"$T/out" 2>"$T/err"
    rc=$?
    kill "$lpid" 2>/dev/null
    wait "$lpid" 2>/dev/null
    [ $rc = 0 ] || fail "-p on a locked database: exit $rc"
    [ -s "$T/out" ] || fail "-p on a locked database: no reply"
    grep -q "locked by another program" "$T/err" || { fail "locked: no lock message"; cat "$T/err"; }
    grep -q "was not saved" "$T/err" || { fail "locked: the loss is not reported"; cat "$T/err"; }
    "$BN_BIN" --db "$T/lk.db" --search "locked" >/dev/null 2>&1 && fail "the locked exchange was saved?"
    "$BN_BIN" -p "After the lock" --model "$M" --temp 0 -n 2 --db "$T/lk.db" >/dev/null 2>"$T/err" \
        || { fail "-p after the lock"; cat "$T/err"; }
    [ -s "$T/err" ] && grep -q "not saved" "$T/err" && { fail "after the lock: still not saved"; cat "$T/err"; }
    "$BN_BIN" --db "$T/lk.db" --search "After" >/dev/null 2>&1 || fail "the exchange after the lock was not saved"
else
    echo "SKIP part: no hold_db_lock helper given"
fi

cli_done
