#!/bin/sh
# The history command line, driven through the real binary ($BN_BIN) on a copy of the
# committed v1 fixture: --sessions, --show, --search, --export (md against the expected file,
# json), --delete (refused without a terminal, confirmed on one, --yes), --no-history, and
# broken or missing databases.
set -u
: "${BN_BIN:?BN_BIN must point at bitnet-chat}"
: "${BN_SOURCE_DIR:?}"
DATA="$BN_SOURCE_DIR/tests/data/store"
T=$(mktemp -d "${TMPDIR:-/tmp}/bn_store_cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; fails=$((fails + 1)); }
# expect NAME WANTED_RC CMD... : runs CMD, output in $T/out and $T/err
expect() {
    name=$1 want=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" = "$want" ]; then ok "$name (rc $rc)"; else
        bad "$name: rc $rc, wanted $want"; sed 's/^/    /' "$T/out" "$T/err"; fi
}
has() { # has NAME FILE TEXT
    if grep -qF -- "$3" "$2"; then ok "$1"; else bad "$1: '$3' not in $2"; sed 's/^/    /' "$2"; fi
}
hasnt() {
    if grep -qF -- "$3" "$2"; then bad "$1: '$3' in $2"; else ok "$1"; fi
}

DB="$T/h.db"
cp "$DATA/history_v1.db" "$DB"
export TZ=UTC

# --no-history never writes: the v1 file cannot be read without upgrading, so it is refused
expect "no-history on an old file" 1 "$BN_BIN" --db "$DB" --no-history --sessions
has "no-history says why" "$T/err" "needs upgrading"
if cmp -s "$DB" "$DATA/history_v1.db"; then ok "no-history left the file alone"; else bad "no-history changed the file"; fi

expect "sessions" 0 "$BN_BIN" --db "$DB" --sessions
has "sessions header" "$T/out" "TITLE"
has "sessions row 1" "$T/out" "Rust or C for a tokenizer?"
has "sessions row 2" "$T/out" "Crème brûlée"
has "sessions model" "$T/out" "bitnet-b1.58-2B-4T"
# newest first
first=$(sed -n 2p "$T/out" | awk '{print $1}')
[ "$first" = 2 ] && ok "sessions newest first" || bad "sessions order: first id $first"

expect "show" 0 "$BN_BIN" --db "$DB" --show 1
has "show title" "$T/out" "Session 1: Rust or C for a tokenizer?"
has "show user text" "$T/out" "It must be fast."
has "show stats" "$T/out" "TTFT 120.5 ms"
has "show stop" "$T/out" "stop: eos"
has "show system prompt" "$T/out" "System prompt: You are a concise assistant."
expect "show interrupted reply" 0 "$BN_BIN" --db "$DB" --show 2
has "show marks interrupted" "$T/out" "interrupted"
expect "show unknown id" 1 "$BN_BIN" --db "$DB" --show 99
has "show unknown id message" "$T/err" "no session 99"

expect "search" 0 "$BN_BIN" --db "$DB" --search "pcre2 unicode"
has "search hit" "$T/out" "session 1, message 4"
has "search highlight" "$T/out" "[PCRE2]"
expect "search phrase" 0 "$BN_BIN" --db "$DB" --search '"crème brûlée"'
has "search phrase hit" "$T/out" "session 2, message 5"
expect "search no match" 1 "$BN_BIN" --db "$DB" --search "zebra"
has "search no match message" "$T/err" "no message matches"
expect "search fts syntax is literal" 1 "$BN_BIN" --db "$DB" --search 'PCRE2 AND NOT('
has "fts syntax gives no error, just no match" "$T/err" "no message matches"
expect "search punctuation only" 1 "$BN_BIN" --db "$DB" --search '(*)'
has "search punctuation message" "$T/err" "no word to search for"

expect "export md" 0 "$BN_BIN" --db "$DB" --export 1
if cmp -s "$T/out" "$DATA/expected_session1.md"; then ok "export md matches expected file"; else
    bad "export md differs"; diff "$DATA/expected_session1.md" "$T/out" | head -20; fi
expect "export json to file" 0 "$BN_BIN" --db "$DB" --export 2 --format json -o "$T/s2.json"
has "export json format tag" "$T/s2.json" '"format": "bitnet-chat-session"'
has "export json text" "$T/s2.json" 'Cuire à 100 °C pendant'
has "export json interrupted" "$T/s2.json" '"interrupted": true'
[ ! -s "$T/out" ] && ok "export -o writes nothing to stdout" || bad "export -o wrote to stdout"
echo "keep me" >"$T/keep.md"
expect "export unknown id" 1 "$BN_BIN" --db "$DB" --export 42 -o "$T/keep.md"
has "failed export keeps the old file" "$T/keep.md" "keep me"
[ -z "$(ls "$T" | grep 'keep.md.tmp')" ] && ok "no temp file left" || bad "temp file left"
expect "export to a missing directory" 1 "$BN_BIN" --db "$DB" --export 1 -o "$T/no/such/dir/x.md"
has "export dir message" "$T/err" "cannot write"
expect "export bad format" 2 "$BN_BIN" --db "$DB" --export 1 --format html

expect "delete without a terminal" 1 "$BN_BIN" --db "$DB" --delete 1 </dev/null
has "delete refusal says why" "$T/err" "add --yes"
expect "still there" 0 "$BN_BIN" --db "$DB" --show 1
expect "delete with no-history" 2 "$BN_BIN" --db "$DB" --no-history --delete 1 --yes
if command -v script >/dev/null 2>&1; then
    printf 'n\n' | script -qec "\"$BN_BIN\" --db \"$DB\" --delete 1" /dev/null >"$T/tty" 2>&1
    has "tty delete asks" "$T/tty" "Delete session 1"
    expect "answer no keeps it" 0 "$BN_BIN" --db "$DB" --show 1
    printf 'y\n' | script -qec "\"$BN_BIN\" --db \"$DB\" --delete 1" /dev/null >"$T/tty" 2>&1
    has "tty delete confirmed" "$T/tty" "Deleted session 1"
    expect "gone after yes" 1 "$BN_BIN" --db "$DB" --show 1
else
    echo "note: 'script' not installed; the terminal confirmation part is not run"
    expect "delete --yes" 0 "$BN_BIN" --db "$DB" --delete 1 --yes
fi
# Stored escape sequences are shown visibly, never sent to the terminal raw.
expect "show escapes" 0 "$BN_BIN" --db "$DB" --show 3
has "escape in title made visible" "$T/out" 'Terminal ^[[2J title'
has "OSC in text made visible" "$T/out" 'show me ^[]0;pwned^G escapes'
has "C1 CSI made visible" "$T/out" 'ok ^[[31mred^[[0m ^?'
if LC_ALL=C grep -q "$(printf '\033')" "$T/out"; then bad "raw ESC in --show output"; else ok "no raw ESC in --show output"; fi
expect "sessions with escapes" 0 "$BN_BIN" --db "$DB" --sessions
if LC_ALL=C grep -q "$(printf '\033')" "$T/out"; then bad "raw ESC in --sessions output"; else ok "no raw ESC in --sessions output"; fi
expect "export keeps the bytes" 0 "$BN_BIN" --db "$DB" --export 3
if LC_ALL=C grep -q "$(printf '\033')" "$T/out"; then ok "export keeps the original text"; else bad "export lost the ESC bytes"; fi
# ... but to a terminal it is made safe like --show (a pty from script(1)), in both formats
# and with -o naming the terminal.
if command -v script >/dev/null 2>&1; then
    for how in "--export 3" "--export 3 --format json" "--export 3 -o /dev/tty"; do
        script -qec "\"$BN_BIN\" --db \"$DB\" $how" /dev/null >"$T/tty" 2>&1
        if LC_ALL=C grep -q "$(printf '\033')" "$T/tty"; then bad "raw ESC in $how to a terminal"
        else ok "no raw ESC in $how to a terminal"; fi
        if LC_ALL=C grep -q "$(printf '\007')" "$T/tty"; then bad "raw BEL in $how to a terminal"
        else ok "no raw BEL in $how to a terminal"; fi
    done
    has "export to a terminal shows the escape" "$T/tty" '^[]0;pwned^G'
else
    echo "note: 'script' not installed; export to a terminal is not checked"
fi
expect "delete --yes 3" 0 "$BN_BIN" --db "$DB" --delete 3 --yes

expect "delete --yes" 0 "$BN_BIN" --db "$DB" --delete 2 --yes
has "delete message" "$T/out" "Deleted session 2"
expect "delete unknown" 1 "$BN_BIN" --db "$DB" --delete 2 --yes
expect "empty list" 0 "$BN_BIN" --db "$DB" --sessions
has "empty list message" "$T/out" "No saved sessions."
expect "search after delete" 1 "$BN_BIN" --db "$DB" --search "pcre2"

# A file that is not a database: one clear line, file untouched
head -c 5000 /dev/urandom >"$T/junk.db"
cp "$T/junk.db" "$T/junk.orig"
expect "junk database" 1 "$BN_BIN" --db "$T/junk.db" --sessions
has "junk message" "$T/err" "not a database"
if cmp -s "$T/junk.db" "$T/junk.orig"; then ok "junk file untouched"; else bad "junk file changed"; fi

# Default location: nothing recorded yet is not an error, and listing creates nothing
expect "default path, nothing yet" 0 env XDG_DATA_HOME="$T/xdg" "$BN_BIN" --sessions
has "default path named" "$T/err" "$T/xdg/bitnet-chat/history.db"
[ ! -e "$T/xdg" ] && ok "listing created nothing" || bad "listing created $T/xdg"

echo "$fails failure(s)"
[ "$fails" = 0 ]
