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
t_wait "/re is ambiguous: /repeat_penalty /regen /rename"
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

t_done test_ui_chat
