#!/bin/sh
# The chat as a demanding user meets it (issue 15), over the scripted engine: keys that must
# never be lost or misrouted, commands that must never run by accident.
# usage: test_ui_chat.sh PATH/bitnet-chat-fake
FAKE=${1:?usage: test_ui_chat.sh bitnet-chat-fake}
. "$(dirname "$0")/lib.sh"

MODEL="$T_DIR/model.gguf"
: >"$MODEL"
APP="BN_FAKE_LOAD_MS=100 $FAKE --db '$T_DIR/h.db'"

# 1. A lone Esc with no reply running is not readline's Meta prefix: the next key is kept.
# (Before: Esc, then "/temp 0.5" sent "temp 0.5" to the model.)
t_start 100 30 "BN_FAKE_TOKENS=3 $APP '$MODEL'"
t_wait "Loaded model.gguf"
t_keys Escape
sleep 0.3
t_type "/temp 0.5"; t_keys Enter
t_wait "temperature set to 0.50"
t_absent "You said: temp"
t_keys Escape
sleep 0.3
t_type "what"
t_wait "> what"
t_keys C-c

# 2. Esc pressed to stop a reply that has just ended, with a key right behind it (one
# Alt+key to the program, as tmux sends it): the key is typed, the Esc dropped.
t_type "quick"; t_keys Enter
t_wait "You said: quick. w1 w2 w3"
t_keys Escape w h a t
t_wait "> what"
t_keys C-c

# 3. "/ temp" is a command (refused with a hint), not a message to the model.
t_type "/ temp 0.5"; t_keys Enter
t_wait "No command after /"
t_absent "You said: / temp"

# 4. Prefixes: /ex is ambiguous (never /export), /q does not quit, /re lists its commands.
t_type "/ex"; t_keys Enter
t_wait "/ex is ambiguous: /export /exit"
t_type "/q"; t_keys Enter
t_wait "type /quit in full"
t_type "/re"; t_keys Enter
t_wait "/re is ambiguous: /repeat_penalty /regen /reply /rename /reset"
T_CHECKS=$((T_CHECKS + 1))
ls "$T_DIR"/bitnet-chat-*.md >/dev/null 2>&1 && t_fail "/ex wrote an export"
t_type "/exit"; t_keys Enter
t_wait "EXITED rc=0"

# 5. No model: Enter clears the line (the /load typed next stands alone), Up brings it back.
t_start 100 30 "BN_FAKE_TOKENS=3 $APP '$T_DIR/missing.gguf'"
t_wait "Could not load missing.gguf"
t_type "my question"; t_keys Enter
t_wait "No model is loaded"
t_wait_gone "> my question"
t_type "/load $MODEL"; t_keys Enter
t_wait "Loaded model.gguf"
t_keys Up Up
t_wait "> my question"
t_keys Enter
t_wait "You said: my question."

# 6. vi mode keeps its Esc: to command mode, then 0 i inserts at the start.
printf 'set editing-mode vi\n' >"$T_DIR/inputrc"
t_start 100 30 "INPUTRC='$T_DIR/inputrc' BN_FAKE_TOKENS=3 $APP '$MODEL'"
t_wait "Loaded model.gguf"
t_type "abc"
t_wait "> abc"
t_keys Escape
sleep 0.3
t_type "0iX"
t_wait "> Xabc"

# 7. /quit mid-reply: the partial reply is recorded as cancelled (before: stop reason "").
t_start 100 30 "BN_FAKE_TOKENS=100000 BN_FAKE_RATE=50 $FAKE --db '$T_DIR/h7.db' '$MODEL'"
t_wait "Loaded model.gguf"
t_type "until quit"; t_keys Enter
t_wait "w5 "
t_type "/quit"; t_keys Enter
t_wait "EXITED rc=0"
if command -v sqlite3 >/dev/null 2>&1; then
    saved=$(sqlite3 "$T_DIR/h7.db" "select interrupted || ':' || stop_reason from messages where role='assistant'")
    T_CHECKS=$((T_CHECKS + 1))
    [ "$saved" = "1:cancelled" ] || t_fail "/quit mid-reply recorded '$saved', expected 1:cancelled"
fi

# 8. The session browser: ids and dates on every row; F2 as xterm and tmux send it (ESC O Q,
# terminfo kf2) renames; after a rename the selection stays on the renamed session (the list is
# sorted by time, so it moves); the session being chatted in is not deleted; e exports; search
# hits name their session.
mkdir -p "$T_DIR/cwd8"
cd "$T_DIR/cwd8" || exit 1
t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h8.db' '$MODEL'"
cd - >/dev/null || exit 1
t_wait "Loaded model.gguf"
for w in alpha beta gamma; do
    t_type "$w"; t_keys Enter
    t_wait "You said: $w. w1 w2"
    t_wait_gone "generating"
    [ $w = gamma ] || { t_type "/new"; t_keys Enter; t_wait "New session"; }
done
t_type "/sessions"; t_keys Enter
t_wait "Saved sessions: 3 "
t_wait_re "^ alpha +model\.gguf +20[0-9-]+ [0-9:]+ +2 msg +#1"
t_keys End
t_keys F2
t_wait "New title (Ctrl-U clears): alpha"
t_keys C-u; t_type "zulu renamed"; t_keys Enter
t_wait "Renamed."
t_wait_re "^ zulu renamed +model"
t_type "d"
t_wait "Delete \"zulu renamed\" and all its messages? (y/N)"
t_type "n"
t_wait "Not deleted."
t_keys Home Down # gamma: the live chat's session
t_type "d"
t_wait "This is the session you are chatting in: start /new first"
t_type "e"
t_wait "Exported to bitnet-chat-"
T_CHECKS=$((T_CHECKS + 1))
f=$(ls "$T_DIR"/cwd8/bitnet-chat-*.md 2>/dev/null | head -n 1)
{ [ -n "$f" ] && grep -q "gamma" "$f"; } || t_fail "e did not export the selected session"
T_CHECKS=$((T_CHECKS + 1))
[ -n "$f" ] && [ "$(stat -c %a "$f")" = 600 ] || t_fail "browser export is not private (0600)"
t_keys Enter
t_wait_re "^ #3 gamma \(read-only\) · model\.gguf · "
t_keys Escape
t_type "/"; t_type "beta"; t_keys Enter
t_wait "#2 beta: "
t_keys Escape
t_type "q"
# /export from the chat is private as well (it was 0644).
t_type "/export $T_DIR/chat.md"; t_keys Enter
t_wait "Exported to"
T_CHECKS=$((T_CHECKS + 1))
[ "$(stat -c %a "$T_DIR/chat.md" 2>/dev/null)" = 600 ] || t_fail "/export file is not 0600"
t_keys C-d
t_wait "EXITED rc=0"

# 9. /sessions with --no-history opens the file read-only (it said there were none).
t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --no-history --db '$T_DIR/h8.db' '$MODEL'"
t_wait "Loaded model.gguf"
t_type "/sessions"; t_keys Enter
t_wait "Saved sessions: 3 "
t_type "d"
t_wait "Read-only (--no-history): sessions cannot be deleted."
t_type "r"
t_wait "read-only with --no-history"
t_keys Enter
t_wait "You said: alpha."

# 10. A load says how long it took, also when it is quick; /show tells what is loaded.
t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h10.db' --temp 0.2 '$MODEL'"
t_wait_re "Loaded model\.gguf \(.*-token context\) in [0-9]+\.[0-9] s\."
t_type "/show"; t_keys Enter
t_wait "File: $MODEL"
t_wait_re "Loaded in [0-9]+\.[0-9]+ s"
t_type "/bye"; t_keys Enter
t_wait "EXITED rc=0"

# 11. /undo, /edit, /reset, /copy.
t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h11.db' '$MODEL'"
tmux -L "$T_SOCK" set -g set-clipboard on
t_wait "Loaded model.gguf"
t_type "first"; t_keys Enter
t_wait "You said: first. w1 w2"; t_wait_gone "generating"
t_type "secnd"; t_keys Enter
t_wait "You said: secnd. w1 w2"; t_wait_gone "generating"
t_type "/edit"; t_keys Enter
t_wait "> secnd"
t_wait_gone "You said: secnd."
t_keys C-u; t_type "second"; t_keys Enter
t_wait "You said: second. w1 w2"; t_wait_gone "generating"
t_type "/undo"; t_keys Enter
t_wait "Removed your last message and its reply"
t_wait_gone "You said: second."
t_wait "You said: first."
if command -v sqlite3 >/dev/null 2>&1; then
    T_CHECKS=$((T_CHECKS + 1))
    # every version stays in the history as a branch: first, secnd, second and their replies
    [ "$(sqlite3 "$T_DIR/h11.db" 'select count(*) from messages')" = 6 ] ||
        t_fail "/edit and /undo lost messages: $(sqlite3 "$T_DIR/h11.db" 'select role, text from messages')"
fi
t_type "code:"; t_keys C-j; t_type '```'; t_keys C-j; t_type "x = 1"; t_keys C-j; t_type '```'; t_keys Enter
t_wait_count "x = 1" 2 # the message and the reply that echoes it
t_wait_gone "generating"
t_type "/copy 1"; t_keys Enter
t_wait "Copied code block 1"
T_CHECKS=$((T_CHECKS + 1))
[ "$(tmux -L "$T_SOCK" show-buffer 2>/dev/null)" = "x = 1" ] ||
    t_fail "/copy 1: clipboard holds '$(tmux -L "$T_SOCK" show-buffer 2>/dev/null)'"
t_type "/reset"; t_keys Enter
t_wait "Context reset: the model no longer sees the text above"
t_wait "You said: first."
t_keys C-d
t_wait "EXITED rc=0"

# 12. --continue opens the newest session and says which settings it brings (it was silent);
# --resume with an unknown id is one line on stderr.
t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h11.db' --continue '$MODEL'"
t_wait "Resumed \"first\""
t_keys C-d
t_wait "EXITED rc=0"
t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h12.db' --temp 0.2 '$MODEL'"
t_wait "Loaded model.gguf"
t_type "cold"; t_keys Enter
t_wait "You said: cold. w1 w2"; t_wait_gone "generating"
t_keys C-d
t_wait "EXITED rc=0"
t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h12.db' --resume 1 '$MODEL'"
t_wait "Resumed \"cold\""
t_wait "The session's settings are now in use: temperature 0.70 -> 0.20."
t_wait "T 0.20"
t_keys C-d
t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h12.db' --resume 99 '$MODEL'"
t_wait "EXITED rc=1"
T_CHECKS=$((T_CHECKS + 1))
grep -q "bitnet-chat: --resume: " "$T_DIR/stderr" || t_fail "--resume 99: no reason on stderr"

# 13. Versions of a reply: after /regen the reply says "version 2/2"; /reply 1 brings the first
# back (in the view and as the saved session's active branch); resuming shows the same.
t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h13.db' '$MODEL'"
t_wait "Loaded model.gguf"
t_type "pick one"; t_keys Enter
t_wait "You said: pick one. w1 w2"; t_wait_gone "generating"
t_absent "version 1/"
t_type "/regen"; t_keys Enter
t_wait "version 2/2 (/reply N)"
t_type "/reply 1"; t_keys Enter
t_wait "version 1/2 (/reply N)"
t_wait "Reply version 1 of 2"
if command -v sqlite3 >/dev/null 2>&1; then
    T_CHECKS=$((T_CHECKS + 1))
    [ "$(sqlite3 "$T_DIR/h13.db" "select active_leaf = (select min(id) from messages where role='assistant') from sessions")" = 1 ] ||
        t_fail "/reply 1 did not make the first reply the active branch"
fi
t_type "/reply 3"; t_keys Enter
t_wait "/reply: expected a version from 1 to 2"
t_type "/sessions"; t_keys Enter
t_wait "Saved sessions: 1 "
t_wait_re "^ pick one +model\\.gguf .* 3 msg" # the browser counts both versions
t_type "r"
t_wait "Resumed \"pick one\" (2 messages on its current branch, 3 in all)"
t_wait "version 1/2 (/reply N)"
t_keys C-d
t_wait "EXITED rc=0"

# 14. The status bar: tokens and TTFT are set at the first token (they read "0 tok · TTFT 0 ms"
# until the engine's figures came); the backend in its short form (/show has the whole).
t_start 110 30 "BN_FAKE_TOKENS=40 BN_FAKE_RATE=10 BN_FAKE_STATS_MS=100000 $FAKE --db '$T_DIR/h14.db' '$MODEL'"
t_wait "Loaded model.gguf"
t_wait_re "^ model\.gguf · fake engine · "
t_absent "scripted replies: no model runs) ·"
t_type "figures"; t_keys Enter
t_wait "You said: figures."
t_wait_re "TTFT [1-9][0-9]* ms · 1 tok"
t_absent " 0 tok "
t_keys C-c
t_wait_gone "generating"
t_type "/show"; t_keys Enter
t_wait "Backend: fake engine (scripted replies: no model runs)"

# 15. A reply that failed comes back from the history as "failed", not "interrupted".
if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 "$T_DIR/h14.db" "update messages set stop_reason='error', interrupted=1 where role='assistant'"
    t_start 110 30 "BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h14.db' --continue '$MODEL'"
    t_wait "Resumed \"figures\""
    t_wait_re "[0-9]+ tok · .* · failed"
    t_absent "· interrupted"
fi

# 16. F2 as the terminal's terminfo says (the Linux console sends ESC [ [ B) renames too.
if infocmp linux >/dev/null 2>&1; then
    t_start 110 30 "TERM=linux BN_FAKE_TOKENS=2 $FAKE --db '$T_DIR/h14.db' --browse '$MODEL'"
    t_wait "Saved sessions: 1 "
    tmux -L "$T_SOCK" send-keys -H 1b 5b 5b 42
    t_wait "New title (Ctrl-U clears): figures"
fi

t_done test_ui_chat
