#!/bin/sh
# Scripts meet the one-shot prompt and the history tools (issue 15): the prompt from stdin
# (-p -), from a file (-f), stdin added after -p TEXT; --format json for --sessions, --show and
# --search, and refused where it means nothing.
. "$BN_SOURCE_DIR/tests/cli/lib.sh"
DB="$T/h.db"
run() { "$BN_BIN" --model "$M" --db "$DB" -n 2 --seed 1 "$@"; }

# -p - reads the prompt from stdin (before: a literal "-" was sent and became the title).
echo "question from stdin" | run -p - >"$T/out" 2>"$T/err" || fail "-p -: exit $?"
"$BN_BIN" --db "$DB" --sessions --format json >"$T/s.json" || fail "--sessions --format json: exit $?"
grep -q '"title": "question from stdin"' "$T/s.json" || { fail "-p -: title is not the stdin text"; cat "$T/s.json"; }
grep -q '"format": "bitnet-chat-sessions"' "$T/s.json" || fail "--sessions --format json: no format marker"
grep -q '"message_count": 2' "$T/s.json" || fail "--sessions --format json: no message_count"

# stdin that is not a terminal is added after -p TEXT, with a blank line between.
printf 'line one\nline two\n' | run -p "Summarise:" >/dev/null 2>"$T/err" || fail "-p TEXT with stdin: exit $?"
"$BN_BIN" --db "$DB" --show 2 --format json >"$T/show.json" || fail "--show --format json: exit $?"
grep -q '"text": "Summarise:\\n\\nline one\\nline two\\n"' "$T/show.json" ||
    { fail "stdin not appended after -p TEXT"; grep '"text"' "$T/show.json"; }
# --show --format json is the JSON export.
"$BN_BIN" --db "$DB" --export 2 --format json >"$T/export.json"
cmp -s "$T/show.json" "$T/export.json" || fail "--show --format json differs from --export --format json"

# -f FILE: the prompt from a file (after -p TEXT when both are given); stdin is not read.
printf 'from the file' >"$T/q.txt"
run -f "$T/q.txt" </dev/null >/dev/null 2>&1 || fail "-f FILE: exit $?"
"$BN_BIN" --db "$DB" --search "file" --format json >"$T/hits.json" || fail "--search --format json: exit $?"
grep -q '"format": "bitnet-chat-search"' "$T/hits.json" || fail "--search --format json: no format marker"
grep -q '"snippet": "from the file"' "$T/hits.json" || { fail "--search --format json: snippet"; cat "$T/hits.json"; }
# the match "file" is bytes 9..13 of the snippet
tr -d ' \n' <"$T/hits.json" | grep -q '"matches":\[\[9,13\]\]' || { fail "--search --format json: match offsets"; cat "$T/hits.json"; }
# No match: an empty list and exit 1.
"$BN_BIN" --db "$DB" --search "zebra" --format json >"$T/none.json" 2>/dev/null
[ $? = 1 ] || fail "--search with no match: exit status not 1"
tr -d ' \n' <"$T/none.json" | grep -q '"hits":\[\]' || fail "--search with no match: not an empty list"

# Model paths are stored absolute and normalised (they were stored as typed).
"$BN_BIN" --model "$BN_SOURCE_DIR/tests/../tests/data/models/i2s.gguf" --db "$T/p.db" -n 1 -p hi \
    </dev/null >/dev/null 2>&1 || fail "-p with a relative model path: exit $?"
"$BN_BIN" --db "$T/p.db" --sessions --format json >"$T/p.json"
grep -q "\"model_path\": \"$(realpath "$M")\"" "$T/p.json" || { fail "model path not normalised"; grep model_path "$T/p.json"; }

# --export -o: one rule with /export: an existing file is kept unless --force (it was replaced).
echo "keep me" >"$T/exists.md"
expect_fail 1 "exists.md already exists (--force replaces it)" "$BN_BIN" --db "$DB" --export 1 -o "$T/exists.md"
grep -qx "keep me" "$T/exists.md" || fail "--export -o replaced an existing file without --force"
expect_fail 1 "no session 77" "$BN_BIN" --db "$DB" --export 77 -o "$T/exists.md"
"$BN_BIN" --db "$DB" --export 1 -o "$T/exists.md" --force 2>"$T/err" || fail "--force: exit $?"
grep -q "question from stdin" "$T/exists.md" || fail "--force did not replace the file"
"$BN_BIN" --db "$DB" --export 1 -o "$T/new.md" || fail "--export -o to a new file: exit $?"
[ "$(stat -c %a "$T/new.md")" = 600 ] || fail "--export -o file is not 0600"

# Bad input: one line, nothing done.
expect_fail 1 "the prompt is empty (stdin had no text)" "$BN_BIN" --model "$M" --no-history -p -
expect_fail 1 "-f $T/missing.txt: No such file" "$BN_BIN" --model "$M" --no-history -f "$T/missing.txt"
expect_fail 1 "is a directory" "$BN_BIN" --model "$M" --no-history -f "$T"
usage_error "-p - and -f - both read stdin" -p - -f -
usage_error "--format applies to --export, --sessions, --show and --search only" --format json -p hi
usage_error "--format applies to" --format json
usage_error "-f: empty file name" -f ""

cli_done
