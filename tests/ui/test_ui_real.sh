#!/bin/sh
# The real program with a real (small) model, driven in tmux: a reply streams and the status
# bar shows tok/s; /temp changes the status; /load of a bad path keeps the model; Ctrl-C stops
# a long reply; resize mid-reply; a wide-character and emoji prompt; after a restart the
# session is in the browser and search finds it. Uses the demo model (assets/), else the small
# random test model.
# usage: test_ui_real.sh (env BN_BIN, BN_SOURCE_DIR)
BIN=${BN_BIN:?BN_BIN not set}
SRC=${BN_SOURCE_DIR:?BN_SOURCE_DIR not set}
. "$(dirname "$0")/lib.sh"

MODEL=""
# The demo model first: it writes real text at a pace that can be watched (about 200 tok/s on
# one thread). Its replies normally end after a few dozen tokens, so the Ctrl-C step samples
# near-uniformly (/temp 100, /top_k 0, ...), which makes the end-of-text token rare and the
# replies long; the random test model runs at thousands of tok/s and its small vocabulary
# hits end-of-text soon under such sampling, too fast to interrupt reliably.
for m in "$SRC/assets/bitnet-demo.gguf" "$SRC/tests/data/models/i2s.gguf"; do
    [ -f "$m" ] && { MODEL=$m; break; }
done
[ -n "$MODEL" ] || { echo "SKIP: no model (assets/bitnet-demo.gguf or tests/data/models/i2s.gguf)"; exit 77; }
NAME=$(basename "$MODEL")
# One thread keeps the reply slow enough on a fast machine to interrupt it.
APP="$BIN --db '$T_DIR/h.db' --threads 1 --backend cpu"

t_start 100 30 "$APP '$MODEL'"
t_wait_re "^(Loaded|Could not load)" 60
t_wait "Loaded "
MODEL_NAME=$(t_screen | sed -n 's/^Loaded \([^ ]*\) .*/\1/p' | head -n 1)

# A reply streams (the model's words are noise for a random test model; any text will do),
# then the status bar keeps its figures.
t_type "Hello 日本語 😀 naïve"
t_wait "> Hello 日本語 😀 naïve"
t_keys Enter
t_wait "  Hello 日本語 😀 naïve"
t_wait_re "[0-9]+ tok · [0-9.]+ tok/s · TTFT [0-9]+ ms" 60
t_wait_re "^ $MODEL_NAME · .*[0-9.]+ tok/s · TTFT [0-9]+ ms · [0-9]+ tok · ctx [0-9]+/[0-9]+ · T 0\.70"

# /temp changes the status bar.
t_type "/temp 0.2"; t_keys Enter
t_wait_re "· T 0\.20"

# /load of a bad path keeps the model.
t_type "/load $T_DIR/no-such-model.gguf"; t_keys Enter
t_wait "Could not load no-such-model.gguf" 30
t_wait_re "^ $MODEL_NAME · "
t_type "/stats"; t_keys Enter
t_wait "Model: $MODEL_NAME"
# /show: what was loaded and how (the engine fills it at load; the UI formats it).
t_type "/show"; t_keys Enter
t_wait_re "^ *Architecture: bitnet"
t_wait_re "^ *Weights: I2_S"
t_wait_re "^ *Vocabulary: [0-9]+ tokens"
t_wait_re "^ *Context: [0-9]+ tokens in use, trained [0-9]+"
t_wait_re "^ *Chat format: [a-z0-9]+"

# Ctrl-C stops a long reply. Near-uniform sampling makes the end-of-text token unlikely, so
# replies run long; a reply may still end on its own before the key arrives, hence a few tries.
t_type "/max_tokens 100000"; t_keys Enter
t_type "/temp 100"; t_keys Enter
t_type "/top_k 0"; t_keys Enter
t_type "/top_p 1"; t_keys Enter
t_type "/min_p 0"; t_keys Enter
stopped=0
try=1
while [ $try -le 5 ] && [ $stopped -eq 0 ]; do
    t_type "Write a very long story, number $try."; t_keys Enter
    if t_seen "generating" 30; then
        t_keys C-c
        t_wait_gone "generating" 10
        last=$(t_screen | grep -E '^  [0-9]+ tok · ' | tail -n 1)
        case "$last" in *interrupted*) stopped=1 ;; esac
    fi
    try=$((try + 1))
done
T_CHECKS=$((T_CHECKS + 1))
[ $stopped -eq 1 ] || t_fail "no reply was marked interrupted after Ctrl-C in 5 tries"

# Resize while a reply streams: it goes on, re-wrapped to the new width.
resized=0
try=1
while [ $try -le 5 ] && [ $resized -eq 0 ]; do
    t_type "One more long story, number $try."; t_keys Enter
    if t_seen "generating" 30; then
        t_resize 60 20
        t_seen "generating" 2 && resized=1
        t_layout_ok "$MODEL_NAME"
        t_resize 100 30
        t_keys C-c
        t_wait_gone "generating" 10
    fi
    try=$((try + 1))
done
T_CHECKS=$((T_CHECKS + 1))
[ $resized -eq 1 ] || t_fail "no reply was still running after a resize in 5 tries"
t_wait_re "^ $MODEL_NAME · "
t_keys C-d
t_wait "EXITED rc=0" 20

# After a restart the session is in the browser, and search finds the message.
t_start 100 30 "$APP --browse '$MODEL'"
t_wait "Saved sessions: 1"
t_wait "Hello 日本語 😀 naïve"
t_type "/"; t_type "naïve"; t_keys Enter
t_wait "1 match for \"naïve\""
t_keys Enter
t_wait "(read-only)"
# Each reply's header names its settings; a long sampled reply (the seed comes from the clock)
# can push the later headers below the screen, so from the top page down until each is seen.
wait_paging() {
    T_CHECKS=$((T_CHECKS + 1))
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do t_keys PgUp; done
    sleep 0.3
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        if t_screen | grep -qE -- "$1"; then return 0; fi
        t_keys PgDn
        sleep 0.3
    done
    t_screen | grep -qE -- "$1" || t_fail "not found on any page: /$1/"
}
wait_paging "T 0\.70 · top-p 0\.95"
wait_paging "T 100\.00 · top-p 1\.00 · top-k 0"
t_keys Escape
t_wait "Search \"naïve\""
t_keys Escape
t_wait "Saved sessions: 1"
t_type "q"
t_wait "EXITED rc=0" 20

t_done test_ui_real
