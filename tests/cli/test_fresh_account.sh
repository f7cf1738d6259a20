#!/bin/sh
# On a fresh account (no ~/.local/share yet), the default history works out of the box: the
# one-shot prompt creates the data directories (0700) and the exchange is listed afterwards.
set -u
bin=${BN_BIN:?}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
HOME="$tmp/home" XDG_DATA_HOME= "$bin" -p "hello there" -n 4 --temp 0 >/dev/null 2>"$tmp/err" </dev/null
[ $? -eq 0 ] || { echo "FAIL: -p exited non-zero"; cat "$tmp/err"; fail=1; }
db="$tmp/home/.local/share/bitnet-chat/history.db"
[ -f "$db" ] || { echo "FAIL: no history database at $db"; cat "$tmp/err"; fail=1; }
mode=$(stat -c %a "$tmp/home/.local/share/bitnet-chat" 2>/dev/null)
[ "$mode" = 700 ] || { echo "FAIL: data directory mode '$mode', want 700"; fail=1; }
if grep -q "not be saved" "$tmp/err"; then echo "FAIL: history was off:"; cat "$tmp/err"; fail=1; fi
HOME="$tmp/home" XDG_DATA_HOME= "$bin" --sessions >"$tmp/list" 2>&1
grep -q "hello there" "$tmp/list" || { echo "FAIL: the session is not listed:"; cat "$tmp/list"; fail=1; }
[ $fail -eq 0 ] && echo "fresh account: history created and listed"
exit $fail
