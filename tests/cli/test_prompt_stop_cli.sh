#!/bin/sh
# -p when its output goes away or it is told to stop; the reply must be saved every time:
#   - a reader that exits (`| true`, `| head -c 10`): the process ends by SIGPIPE (status 141),
#     quietly, and the reply is in the history, marked cancelled, starting with what was read;
#   - stdout (or all of stdin/stdout/stderr) closed, or on a full disk: one line naming the error, exit 1, reply saved;
#   - SIGTERM mid-reply: the reply is cancelled and saved (not only its last checkpoint), then
#     the process ends by SIGTERM (143);
#   - a one-token reply has no decode speed to show ("-" rather than a bogus figure).
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"
# checkpoints far apart: what is found in the database was written by the final save
BITNET_HISTORY_CHECKPOINT_MS=600000
export BITNET_HISTORY_CHECKPOINT_MS
LONG="--model $M --temp 1 --seed 7 -n 3000"

# the last reply of session $1 in $2 is saved, cancelled, and (optionally) starts with file $3
reply_saved() {
    "$BN_BIN" --db "$2" --export "$1" --format json >"$T/exp.json" 2>"$T/exp.err" \
        || { fail "export of session $1: $(cat "$T/exp.err")"; return; }
    grep -q '"stop_reason": "cancelled"' "$T/exp.json" || { fail "session $1: reply not cancelled"; head -c 2000 "$T/exp.json"; }
    grep -q '"role": "assistant"' "$T/exp.json" || fail "session $1: no reply"
    if [ $# -ge 3 ]; then
        "$BN_BIN" --db "$2" --export "$1" --format md >"$T/exp.md" 2>/dev/null
        grep -qF "$(cat "$3")" "$T/exp.md" || { fail "session $1: saved reply lacks what was read"; cat "$3"; }
    fi
}

# 1. reader gone before the first token
{ "$BN_BIN" -p "pipe one" $LONG --db "$T/h.db" 2>"$T/e1"; echo $? >"$T/rc1"; } | true
[ "$(cat "$T/rc1")" = 141 ] || { fail "| true: exit $(cat "$T/rc1"), expected 141 (SIGPIPE)"; cat "$T/e1"; }
grep -q "failed\|error" "$T/e1" && { fail "| true: error message"; cat "$T/e1"; }
reply_saved 1 "$T/h.db"

# 2. reader takes 10 bytes then goes
{ "$BN_BIN" -p "pipe two" $LONG --db "$T/h.db" 2>"$T/e2"; echo $? >"$T/rc2"; } | head -c 10 >"$T/head"
[ "$(cat "$T/rc2")" = 141 ] || { fail "| head: exit $(cat "$T/rc2"), expected 141"; cat "$T/e2"; }
[ "$(wc -c <"$T/head")" = 10 ] || fail "| head: did not read 10 bytes"
reply_saved 2 "$T/h.db"

# 3. stdout closed
"$BN_BIN" -p "closed" $LONG --db "$T/h.db" >&- 2>"$T/e3"
rc=$?
[ $rc = 1 ] || fail "stdout closed: exit $rc, expected 1"
grep -q "^bitnet-chat: writing the reply to stdout failed: " "$T/e3" || { fail "stdout closed: no message"; cat "$T/e3"; }
reply_saved 3 "$T/h.db"

# 4. full disk
if [ -c /dev/full ]; then
    "$BN_BIN" -p "full" $LONG --db "$T/h.db" >/dev/full 2>"$T/e4"
    rc=$?
    [ $rc = 1 ] || fail "/dev/full: exit $rc, expected 1"
    grep -q "No space left" "$T/e4" || { fail "/dev/full: no message"; cat "$T/e4"; }
    reply_saved 4 "$T/h.db"
    next=5
else
    next=4
fi

# 5. SIGTERM mid-reply (the reply runs until the 4096-token context is full: seconds)
"$BN_BIN" -p "terminate" --model "$M" --temp 1 --seed 7 -n 100000 --db "$T/h.db" >"$T/o5" 2>"$T/e5" &
pid=$!
i=0
while [ ! -s "$T/o5" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
sleep 0.3
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 143 ] || { fail "SIGTERM: exit $rc, expected 143"; cat "$T/e5"; }
[ -s "$T/o5" ] || fail "SIGTERM: no reply text before the signal"
head -c 20 "$T/o5" >"$T/o5head"
reply_saved $next "$T/h.db" "$T/o5head"

# 5b. stdin, stdout and stderr all closed: the reply used to go into the engine's own wake pipe
# (which took fd 1), exit 0 with the text lost. Now: exit 1, the reply saved as cancelled.
next=$((next + 1))
sh -c 'exec <&- >&- 2>&-; "$0" "$@"; echo $? >"'"$T/rc_closed"'"' "$BN_BIN" -p "all closed" \
    --model "$M" --temp 1 --seed 7 -n 3000 --db "$T/h.db"
[ "$(cat "$T/rc_closed")" = 1 ] || fail "all fds closed: exit $(cat "$T/rc_closed"), expected 1"
reply_saved $next "$T/h.db"

# 6. one token: no decode speed
"$BN_BIN" -p "one" --model "$M" --temp 0 -n 1 --no-history >/dev/null 2>"$T/e6" || fail "-n 1 failed"
grep -q "reply 1 tokens (- tok/s)" "$T/e6" || { fail "-n 1: decode speed shown"; cat "$T/e6"; }

cli_done
