#!/bin/sh
# UI mechanics over the scripted engine (exact reply lengths and rates): streaming and the
# status bar, slash commands and hints, Ctrl-C / Esc stopping a long reply, resize mid-reply,
# a tiny terminal, wide characters and emoji, multi-line input and bracketed paste, Ctrl-D,
# hanging indents of wrapped lines (/help, a list item in a reply).
# usage: test_ui_fake.sh PATH/bitnet-chat-fake
FAKE=${1:?usage: test_ui_fake.sh bitnet-chat-fake}
. "$(dirname "$0")/lib.sh"

MODEL="$T_DIR/model.gguf"
: >"$MODEL"
APP="BN_FAKE_LOAD_MS=200 $FAKE --db '$T_DIR/h.db'"

# 0. A slow load shows a progress bar; a message typed meanwhile is answered once it is ready.
t_start 100 30 "BN_FAKE_TOKENS=3 BN_FAKE_LOAD_MS=4000 $FAKE --db '$T_DIR/h0.db' '$MODEL'"
t_wait_re "^ Loading model\.gguf \[#*-+\] +[0-9]+% · layer [0-9]+/10"
t_type "early bird"; t_keys Enter
t_wait "The model is still loading"
t_wait "You said: early bird." 15
t_wait "Loaded model.gguf"

# 1. Loads with a progress bar, a reply streams, the status bar shows the figures.
t_start 100 30 "BN_FAKE_TOKENS=30 BN_FAKE_RATE=100 $APP '$MODEL'"
t_wait "Loaded model.gguf"
t_wait "T 0.70"
t_wait "Type a message and press Enter. /help lists the commands."
t_type "hello"
t_keys Enter
t_wait "You said: hello. w1 w2"
t_wait "w30"
t_wait_re "^ model\.gguf · .*[0-9.]+ tok/s · TTFT [0-9]+ ms · 31 tok"

# 2. /temp changes the status bar; a bad value gives a hint and keeps the old value.
t_type "/temp 0.3"; t_keys Enter
t_wait "T 0.30"
t_wait "temperature set to 0.30"
t_type "/temp hot"; t_keys Enter
t_wait "/temp: expected a number from 0 to 100"
t_wait "T 0.30"
t_type "/nosuchcommand"; t_keys Enter
t_wait "Unknown command /nosuchcommand"
t_type "/top_k -3"; t_keys Enter
t_wait "/top_k: expected a whole number"

# 3. /load of a path that does not exist keeps the model.
t_type "/load $T_DIR/missing.gguf"; t_keys Enter
t_wait "Could not load missing.gguf"
t_wait_re "^ model\.gguf · "
t_type "again"; t_keys Enter
t_wait "You said: again."
t_wait_count "31 tok · " 2

# 3b. A hint longer than the pane wraps over up to three rows instead of losing its end: a
#     refused /export's usage comes last (cut at the pane's edge before).
EXISTING="$T_DIR/an-export-file-that-exists-already-with-a-long-name.md"
: >"$EXISTING"
t_type "/export md $EXISTING"; t_keys Enter
t_wait "already exists;"
t_wait "[PATH])"

# 4. Ctrl-C at an empty prompt explains how to quit; with text it clears the line.
t_keys C-c
t_wait "To leave, press Ctrl-D or type /quit."
t_type "some draft"
t_wait "> some draft"
t_keys C-c
t_wait_gone "> some draft"

# 5. Ctrl-C stops a long reply within a token; the partial text stays, marked interrupted.
t_start 100 30 "BN_FAKE_TOKENS=100000 BN_FAKE_RATE=40 $APP '$MODEL'"
t_wait "Loaded model.gguf"
t_type "long story"; t_keys Enter
t_wait "w20 "
t_wait "generating"
# /clear would hide the reply being written: refused while it runs.
t_type "/clear"; t_keys Enter
t_wait "Stop the reply first (Esc), then /clear."
t_wait "You said: long story."
t_keys C-c
t_wait_re "[0-9]+ tok · [0-9.]+ tok/s · TTFT [0-9]+ ms · interrupted"
t_wait_gone "generating"
n1=$(t_screen | grep -o 'w[0-9]*' | tail -n 1)
sleep 0.5
n2=$(t_screen | grep -o 'w[0-9]*' | tail -n 1)
T_CHECKS=$((T_CHECKS + 1))
[ "$n1" = "$n2" ] || t_fail "reply kept growing after Ctrl-C ($n1 -> $n2)"
# Esc stops the next one the same way.
t_type "another"; t_keys Enter
t_wait "You said: another."
t_wait "generating"
t_keys Escape
t_wait_gone "generating"
T_CHECKS=$((T_CHECKS + 1))
[ "$(t_screen | grep -c ' · interrupted')" -ge 2 ] || t_fail "second reply not marked interrupted"

# 6. Resize mid-reply: the text is re-wrapped, streaming goes on, tiny sizes show a note.
t_type "resize me"; t_keys Enter
t_wait "You said: resize me."
t_resize 50 20
t_wait "generating"
t_resize 10 3
t_wait "too small"
t_wait "24x5" # the shorter note fits whole
t_resize 70 20
t_wait "generating"
t_wait_re "^  w[0-9]+ w[0-9]+"
t_keys C-c
t_wait_gone "generating"
t_wait "interrupted"
t_layout_ok model.gguf

# 7. Wide characters and emoji in the input line and in the transcript.
t_start 60 20 "BN_FAKE_TOKENS=3 $APP '$MODEL'"
t_wait "Loaded model.gguf"
t_type "日本語のテキスト 😀 café"
t_wait "> 日本語のテキスト 😀 café"
t_keys Enter
t_wait "You said: 日本語のテキスト 😀 café."
# The cursor sits after the last wide character: type at the end, then check the line.
t_type "漢字"; t_keys Left; t_type "X"
t_wait "> 漢X字"
t_keys C-c

# 8. Multi-line input: Ctrl-J inserts a new line, a bracketed paste stays one message.
t_type "first line"; t_keys C-j; t_type "second line"
t_wait "  second line"
t_keys Enter
t_wait "You said: first line"
t_paste "pasted one
pasted two"
t_wait "  pasted two"
t_absent "You said: pasted one"
t_keys Enter
t_wait "You said: pasted one"
t_wait "pasted two. w1 w2 w3"
t_wait_count "4 tok · " 2 # this step's two replies are done (older ones may have scrolled away)

# 9. Ctrl-D quits and the terminal is given back.
t_keys C-d
t_wait "EXITED rc=0"

# 10. After a restart the sessions are in the browser, newest first; search finds a message
# and highlights it; a session opens read-only with its figures; resume continues it.
t_start 100 30 "BN_FAKE_TOKENS=3 $APP --browse '$MODEL'"
t_wait "Saved sessions:"
t_wait "long story"
t_wait_re "^ hello +model\.gguf +20[0-9-]+ [0-9:]+ +4 msg"
# At 40 columns the key help keeps whole items and says that more are left out (it was cut
# mid-word: "/ search · n re").
t_resize 40 30
t_wait_re "^ Enter open · r resume · / search · …"
t_resize 100 30
t_wait_re "^ hello +model\.gguf +20[0-9-]+ [0-9:]+ +4 msg"
t_type "/"
t_wait "Search:"
t_type "café"; t_keys Enter
t_wait "2 matches for \"café\""
t_wait "You said: 日本語のテキスト"
# The match is drawn in its own style: an SGR sequence right before it, another after.
T_CHECKS=$((T_CHECKS + 1))
tmux -L "$T_SOCK" capture-pane -p -e | grep -q "$(printf '\033')\[[0-9;]*mcafé$(printf '\033')" ||
    t_fail "search match not highlighted"
t_keys Enter
t_wait "(read-only)"
t_wait_re "T 0\.70 · top-p 0\.95 · top-k 40"
t_type "r"
t_wait "Resumed"
t_wait "You said: 日本語のテキスト"
t_type "and more"; t_keys Enter
t_wait "You said: and more."
t_type "/rename Renamed chat"; t_keys Enter
t_wait "Session renamed"
t_type "/sessions"; t_keys Enter
t_wait "Renamed chat"
# Rename in the browser: the old title is offered, Ctrl-U clears it, Ctrl-W drops a word.
t_keys Home
t_type "n"
t_wait "New title (Ctrl-U clears): Renamed chat"
t_keys C-u
t_type "Browser title extra"
t_wait "New title (Ctrl-U clears): Browser title extra"
t_keys C-w
t_wait_gone "title extra"
t_keys Enter
t_wait "Renamed."
t_wait_re "^ Browser title +model\.gguf"
# The session being chatted in is not deleted (that split the conversation); another one
# is, after a question: n keeps it, y deletes it.
t_keys Home
t_type "d"
t_wait "This is the session you are chatting in: start /new first"
t_keys Down
before=$(t_screen | grep -o 'Saved sessions: [0-9]*' | grep -o '[0-9]*$')
t_type "d"
t_wait "and all its messages? (y/N)"
t_type "n"
t_wait "Not deleted."
t_type "d"; t_type "y"
t_wait "Session deleted."
t_wait "Saved sessions: $((before - 1)) "
t_wait "Browser title"
t_type "q"
t_wait_re "^>"
t_keys C-d
t_wait "EXITED rc=0"

# 11. Tab completes commands; several matches are listed on the hint line.
t_start 100 30 "BN_FAKE_TOKENS=600 BN_FAKE_RATE=1000 $APP '$MODEL'"
t_wait "Loaded model.gguf"
t_type "/para"; t_keys Tab
t_wait "> /params"
t_keys C-c
t_type "/top"; t_keys Tab
t_wait "/top_k  /top_p"
t_keys C-c
mkdir -p "$T_DIR/models_dir" && : >"$T_DIR/models_dir/other.gguf"
t_type "/load $T_DIR/models_d"; t_keys Tab
t_wait "/load $T_DIR/models_dir/"
t_keys Tab
t_wait "/load $T_DIR/models_dir/other.gguf"
t_keys Enter
t_wait "Switched to other.gguf"

# 12. Scrolled up, the view stays put while a reply streams and across a resize (the same
# text stays at the top); End follows again.
t_type "scroll test"; t_keys Enter
t_wait "w600"
t_keys PPage
t_wait "more (End)"
top=$(t_screen | head -n 1 | grep -o 'w[0-9]*' | head -n 1)
t_resize 80 30
t_wait "more (End)"
sleep 0.5 # let the program see the new size and repaint
T_CHECKS=$((T_CHECKS + 1))
t_screen | head -n 3 | grep -q -- "$top " || t_fail "after the resize $top is no longer at the top"
t_keys End
t_wait_gone "more (End)"

# 13. /regen writes the last reply again; the old one stays in the history as a branch.
t_type "/regen"; t_keys Enter
t_wait_count "You said: scroll test." 1
t_wait "601 tok · "
T_CHECKS=$((T_CHECKS + 1))
[ "$(t_screen | grep -c 'Assistant ')" -le 1 ] || t_fail "the old reply is still on screen"
n_asst=$(sqlite3 "$T_DIR/h.db" "select count(*) from messages where role='assistant' and text like 'You said: scroll test.%'" 2>/dev/null)
T_CHECKS=$((T_CHECKS + 1))
[ -z "$n_asst" ] || [ "$n_asst" -eq 2 ] || t_fail "expected 2 stored replies (branches), found $n_asst"

# 14. SIGTERM mid-reply: the partial reply is saved as interrupted and the terminal restored
# (alternate screen left, mouse reporting off).
t_type "/max_tokens 100000"; t_keys Enter
t_start 100 30 "BN_FAKE_TOKENS=100000 BN_FAKE_RATE=50 $APP '$MODEL'"
t_wait "Loaded model.gguf"
t_type "until killed"; t_keys Enter
t_wait "w10 "
pid=$(t_pid)
kill -TERM "$pid"
t_wait "EXITED rc=143"
T_CHECKS=$((T_CHECKS + 1))
[ "$(tmux -L "$T_SOCK" display -p '#{alternate_on}#{mouse_any_flag}')" = "00" ] ||
    t_fail "terminal modes not restored after SIGTERM"
saved=$(sqlite3 "$T_DIR/h.db" "select interrupted || ':' || (text like 'You said: until killed.%') || ':' || stop_reason from messages where role='assistant' order by id desc limit 1" 2>/dev/null)
T_CHECKS=$((T_CHECKS + 1))
[ -z "$saved" ] || [ "$saved" = "1:1:cancelled" ] || t_fail "partial reply not saved as interrupted, cancelled ($saved)"

# 15. A crash (SIGSEGV) still gives the terminal back.
t_start 100 30 "$APP '$MODEL'"
t_wait "Loaded model.gguf"
pid=$(t_pid)
kill -SEGV "$pid"
t_wait "EXITED rc=139"
T_CHECKS=$((T_CHECKS + 1))
[ "$(tmux -L "$T_SOCK" display -p '#{alternate_on}#{mouse_any_flag}')" = "00" ] ||
    t_fail "terminal modes not restored after a crash"

# 16. NO_COLOR: no colour sequences at all.
t_start 100 30 "NO_COLOR=1 $APP '$MODEL'"
t_wait "Loaded model.gguf"
T_CHECKS=$((T_CHECKS + 1))
# (39/49, "default colour", may appear; any other colour parameter may not)
tmux -L "$T_SOCK" capture-pane -p -e | grep -oE "$(printf '\033')\[[0-9;]*m" | tr -d 'm\033[' |
    tr ';' '\n' | grep -qxE '3[0-8]|4[0-8]|9[0-7]|10[0-7]' && t_fail "colours used despite NO_COLOR"

# 18 (here, while a server runs). A damaged database: the chat works and says history is off.
head -c 20000 /dev/urandom >"$T_DIR/broken.db"
t_start 110 30 "BN_FAKE_TOKENS=3 BN_FAKE_LOAD_MS=100 $FAKE --db '$T_DIR/broken.db' '$MODEL'"
t_wait "Loaded model.gguf"
t_wait "history not saved"
t_type "still works"; t_keys Enter
t_wait "You said: still works."
t_keys C-d
t_wait "EXITED rc=0"
# 19. A fresh account (no ~/.local/share yet) and no --db: the default database is created.
t_start 100 30 "XDG_DATA_HOME='$T_DIR/fresh/share' BN_FAKE_TOKENS=2 BN_FAKE_LOAD_MS=100 $FAKE '$MODEL'"
t_wait "Loaded model.gguf"
t_type "first words"; t_keys Enter
t_wait "You said: first words."
t_absent "history not saved"
T_CHECKS=$((T_CHECKS + 1))
[ -f "$T_DIR/fresh/share/bitnet-chat/history.db" ] || t_fail "default history database not created"
t_start 100 30 "NO_COLOR=1 $APP '$MODEL'"
t_wait "Loaded model.gguf"

# 17. The input history survives restarts (saved on quit and on SIGTERM/SIGHUP); Up recalls
# it and Ctrl-R searches it.
t_keys Up
t_wait "> still works"
t_keys C-c
t_keys C-r
t_type "scroll"
t_wait "(reverse-i-search)\`scroll': scroll test"
t_keys C-g
t_keys C-c
t_keys C-d
t_wait "EXITED rc=0"

# 20. A relative XDG_DATA_HOME is ignored (the XDG rule): the input history goes to
# ~/.local/share/bitnet-chat/, not under the working directory, and is private (0600).
mkdir -p "$T_DIR/cwd"
cd "$T_DIR/cwd" || exit 1
t_start 100 30 "XDG_DATA_HOME=rel/data BN_FAKE_TOKENS=2 BN_FAKE_LOAD_MS=100 $FAKE --db '$T_DIR/h20.db' '$MODEL'"
cd - >/dev/null || exit 1
t_wait "Loaded model.gguf"
t_type "remember me"; t_keys Enter
t_wait "You said: remember me."
t_keys C-d
t_wait "EXITED rc=0"
T_CHECKS=$((T_CHECKS + 1))
[ ! -e "$T_DIR/cwd/rel" ] || t_fail "a relative XDG_DATA_HOME was used ($T_DIR/cwd/rel exists)"
T_CHECKS=$((T_CHECKS + 1))
grep -qx "remember me" "$HOME/.local/share/bitnet-chat/input_history" 2>/dev/null ||
    t_fail "input history not in \$HOME/.local/share/bitnet-chat"
T_CHECKS=$((T_CHECKS + 1))
[ "$(stat -c %a "$HOME/.local/share/bitnet-chat/input_history" 2>/dev/null)" = 600 ] ||
    t_fail "input history is not private (mode $(stat -c %a "$HOME/.local/share/bitnet-chat/input_history" 2>/dev/null))"

# 20b. Two copies at once: each one's typed lines survive the other's exit.
t_start 100 30 "BN_FAKE_TOKENS=2 BN_FAKE_LOAD_MS=100 $FAKE --db '$T_DIR/h20b.db' '$MODEL'"
t_wait "Loaded model.gguf"
tmux -L "$T_SOCK" new-window -d "env TERM=$T_TERM BN_FAKE_TOKENS=2 BN_FAKE_LOAD_MS=100 $FAKE --db '$T_DIR/h20c.db' '$MODEL'"
sleep 1
t_type "typed in copy one"; t_keys Enter
t_wait "You said: typed in copy one."
tmux -L "$T_SOCK" send-keys -t :1 -l "typed in copy two"; tmux -L "$T_SOCK" send-keys -t :1 Enter
sleep 0.5
tmux -L "$T_SOCK" send-keys -t :1 C-d
sleep 1
t_keys C-d
t_wait "EXITED rc=0"
for l in "typed in copy one" "typed in copy two" "still works"; do
    T_CHECKS=$((T_CHECKS + 1))
    grep -qx "$l" "$XDG_DATA_HOME/bitnet-chat/input_history" || t_fail "input history lost '$l'"
done

# 21. Ctrl-Z and SIGTSTP from outside, under a shell with job control: the terminal is given
# back (normal screen, mouse reporting off) before the program stops; after fg it is set up
# again and repainted, and typing works. The same from the browser.
if command -v bash >/dev/null 2>&1; then
    t_start 100 30 "PS1='SHELL> ' bash --norc --noprofile -i 2>/dev/tty" # (its prompt goes to stderr)
    t_wait 'SHELL>'
    t_type "sh -c 'echo \$\$ >\"$T_DIR/pid21\"; exec env BN_FAKE_TOKENS=3 BN_FAKE_LOAD_MS=100 $FAKE --db \"$T_DIR/h21.db\" \"$MODEL\"'"
    t_keys Enter
    t_wait "Loaded model.gguf"
    modes() { tmux -L "$T_SOCK" display -p '#{alternate_on}#{mouse_any_flag}'; }
    for how in key signal browser; do
        case $how in
        key) t_keys C-z ;;
        signal) kill -TSTP "$(cat "$T_DIR/pid21")" ;;
        browser) t_type "/sessions"; t_keys Enter; t_wait "Saved sessions:"; t_keys C-z ;;
        esac
        t_wait "Stopped"
        T_CHECKS=$((T_CHECKS + 1))
        [ "$(modes)" = "00" ] || t_fail "$how: terminal not given back on suspend ($(modes))"
        tmux -L "$T_SOCK" send-keys -l "clear; fg"; t_keys Enter
        if [ $how = browser ]; then
            t_wait "Saved sessions:"
            t_type "q"
        fi
        t_wait_re "^ model\.gguf · "
        T_CHECKS=$((T_CHECKS + 1))
        [ "$(modes)" = "11" ] || t_fail "$how: terminal modes not set up again after fg ($(modes))"
        t_type "after $how"
        t_wait "> after $how"
        t_keys Enter
        t_wait "You said: after $how."
    done
    t_keys C-d
    t_wait 'SHELL>'
fi

# 22. A terminal that cannot move the cursor gets a reason, not a scrambled screen.
t_start 100 30 "TERM=dumb BN_FAKE_LOAD_MS=100 $FAKE --db '$T_DIR/h23.db' '$MODEL'"
t_wait "EXITED rc=1"
T_CHECKS=$((T_CHECKS + 1))
grep -q "TERM=dumb) cannot move the cursor" "$T_DIR/stderr" || t_fail "no reason given for TERM=dumb"

# 23. Grapheme clusters drawn as the terminal draws them (ui/textwidth.c): an emoji ZWJ
# sequence (2 columns), a flag, VS16, a skin tone (4, as tmux 3.3 draws it), a combining mark
# and a family of four (cut into 3 + 1 members). The text after each sits in the right column
# (tmux's own grid, via capture-pane) and the cursor is where tmux put it.
S7=$(printf 'A\360\237\221\250\342\200\215\360\237\221\251\342\200\215\360\237\221\247B\360\237\207\257\360\237\207\265C\342\235\244\357\270\217D\360\237\221\215\360\237\217\275Ee\314\201F\360\237\221\250\342\200\215\360\237\221\251\342\200\215\360\237\221\247\342\200\215\360\237\221\246G')
# What tmux shows: the family of four without the ZWJ that was not sent.
S7_SHOWN=$(printf '%s' "$S7" | sed "s/$(printf '\360\237\221\247\342\200\215\360\237\221\246')/$(printf '\360\237\221\247\360\237\221\246')/")
t_start 60 20 "BN_FAKE_TOKENS=3 BN_FAKE_LOAD_MS=100 $FAKE --db '$T_DIR/h22.db' '$MODEL'"
t_wait "Loaded model.gguf"
t_type "$S7"
t_wait "> $S7_SHOWN"
T_CHECKS=$((T_CHECKS + 1))
cx=$(tmux -L "$T_SOCK" display -p '#{cursor_x}')
[ "$cx" = 23 ] || t_fail "cursor after the emoji line at column $cx, expected 23"
t_keys Enter
t_wait "  You said: $S7_SHOWN. w1"
t_layout_ok model.gguf
# Left and Right step over a whole cluster (readline alone would stop inside the family).
FAM=$(printf '\360\237\221\250\342\200\215\360\237\221\251\342\200\215\360\237\221\247')
t_type "a${FAM}b"
t_wait "> a${FAM}b"
t_keys Left Left
t_type "X"
t_wait "> aX${FAM}b"
t_keys Right
t_type "Y"
t_wait "> aX${FAM}Yb"
t_keys C-c
# Backspace takes a whole flag or ZWJ family, not one code point of it.
FLAG=$(printf '\360\237\207\257\360\237\207\265')
t_type "a${FLAG}b${FAM}"
t_wait "> a${FLAG}b${FAM}"
t_keys BSpace
t_wait_gone "> a${FLAG}b${FAM}"
t_wait "> a${FLAG}b"
T_CHECKS=$((T_CHECKS + 1))
cx=$(tmux -L "$T_SOCK" display -p '#{cursor_x}')
[ "$cx" = 6 ] || t_fail "Backspace left part of the family (cursor at $cx, expected 6)"
t_keys Left BSpace
t_wait "> ab"
t_keys C-_ # readline's undo brings the flag back
t_wait "> a${FLAG}b"
t_keys C-c
# Bytes that are not UTF-8 and a C1 control (CSI) typed in: what is sent and saved is valid
# UTF-8 (U+FFFD for each bad byte) without the control.
tmux -L "$T_SOCK" send-keys -H 41 ff fe 42 c2 9b 43 e2 80 8b 44
t_keys Enter
t_wait "You said: A$(printf '\357\277\275\357\277\275')BC$(printf '\342\200\213')D."

# A reply that fails says why under it, and still does when the session is resumed.
t_start 100 30 "BN_FAKE_TOKENS=30 BN_FAKE_LOAD_MS=100 $FAKE --db '$T_DIR/h24.db' '$MODEL'"
t_wait "Loaded model.gguf"
t_type "FAIL:the device was lost"; t_keys Enter
t_wait "· failed: fake: the device was lost"
t_start 100 30 "BN_FAKE_LOAD_MS=100 $FAKE --db '$T_DIR/h24.db' --continue '$MODEL'"
t_wait "You said: FAIL:the device was lost."
t_wait "· failed: fake: the device was lost"

# With --no-history, /rename says that nothing will be saved (not "saved with the first message").
t_start 100 30 "BN_FAKE_TOKENS=3 $FAKE --no-history '$MODEL'"
t_wait "Loaded model.gguf"
t_type "/rename Kept nowhere"; t_keys Enter
t_wait "nothing is saved (--no-history)"

# 24. Hanging indents (ui/textwidth.h): at 80 columns /help's long descriptions continue under
# the description column (29), not at the left edge, and its hand-broken lines fit whole.
t_start 80 60 "BN_FAKE_TOKENS=3 $APP '$MODEL'"
t_wait "Loaded model.gguf"
t_type "/help"; t_keys Enter
t_wait "leave or drop text."
t_screen | sed -n '/^Commands:/,/leave or drop text\.$/p' >"$T_DIR/help24"
T_CHECKS=$((T_CHECKS + 1))
[ "$(grep -A1 '^  /show ' "$T_DIR/help24" | sed -n 2p)" = "$(printf '%29s' '')context, chat format, backend" ] ||
    t_fail "/show's description does not continue at column 29"
T_CHECKS=$((T_CHECKS + 1))
at0=$(grep -vE '^(  |Commands:$|Keys: |//text |A command )' "$T_DIR/help24")
[ -z "$at0" ] || t_fail "/help lines wrapped to column 0: $at0"
T_CHECKS=$((T_CHECKS + 1))
off=$(grep -E '^   ' "$T_DIR/help24" | grep -vE "^ {29}[^ ]")
[ -z "$off" ] || t_fail "/help continuation lines not at column 29: $off"
# A list item in a reply hangs under its text (column 2 + 2), while the reply streams and after.
t_start 40 30 "BN_FAKE_TOKENS=40 BN_FAKE_RATE=15 $APP '$MODEL'"
t_wait "Loaded model.gguf"
t_type "list:"; t_keys C-j; t_type "- alpha beta gamma delta epsilon zeta eta"; t_keys Enter
for when in streaming done; do
    if [ $when = streaming ]; then t_wait "w12 "; else t_wait "41 tok · " 15; fi
    T_CHECKS=$((T_CHECKS + 1))
    off=$(t_screen | grep -E ' w[0-9]+' | grep -vE '^    [^ ]')
    [ -z "$off" ] || t_fail "$when: reply lines not under the list item's text: $off"
done
T_CHECKS=$((T_CHECKS + 1))
t_screen | grep -qxE '  - alpha beta gamma delta epsilon zeta' || t_fail "the list item's first line moved"

t_done test_ui_fake
