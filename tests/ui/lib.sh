# Helpers for the tmux-driven UI tests (sourced). Each test runs the real program in a private
# tmux server (-L, its own socket) with a fixed window size, types with send-keys and reads the
# screen with capture-pane. Waits poll the screen with a deadline instead of sleeping.
# HOME and the XDG directories point into a temporary directory, so the user's files are never
# touched.

command -v tmux >/dev/null 2>&1 || { echo "SKIP: tmux is not installed"; exit 77; }

T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bnui.XXXXXX")
T_BASE="bnui$$"
T_SOCK="$T_BASE"
T_RUNS=0
T_FAILS=0
T_CHECKS=0
export HOME="$T_DIR/home" XDG_DATA_HOME="$T_DIR/data" XDG_CONFIG_HOME="$T_DIR/config"
export LC_ALL=C.UTF-8 LANG=C.UTF-8
unset NO_COLOR
# The terminal type inside tmux: tmux's own entry where installed, else screen's.
T_TERM=tmux-256color
infocmp "$T_TERM" >/dev/null 2>&1 || T_TERM=screen-256color
infocmp "$T_TERM" >/dev/null 2>&1 || T_TERM=screen
mkdir -p "$HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME"

t_kill_server() {
    tmux -L "$T_SOCK" kill-server >/dev/null 2>&1
    rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$T_SOCK" # the socket file stays behind otherwise
}

t_cleanup() {
    # Every server this test started (one may be left from an interrupted step).
    i=1
    while [ $i -le "$T_RUNS" ]; do
        T_SOCK="${T_BASE}_$i"
        t_kill_server
        i=$((i + 1))
    done
    if [ "$T_FAILS" -eq 0 ] || [ -z "$KEEP_UI_TMP" ]; then
        # The program may still be saving its input history as the server goes away.
        rm -rf "$T_DIR" 2>/dev/null || { sleep 1; rm -rf "$T_DIR"; }
    fi
}
trap t_cleanup EXIT INT TERM

# t_start W H 'COMMAND': starts the shell command COMMAND in a new private server (stopping a
# running one). When the command exits, the pane stays, showing "EXITED rc=N".
t_start() {
    [ "$T_RUNS" -gt 0 ] && t_kill_server
    T_RUNS=$((T_RUNS + 1))
    T_SOCK="${T_BASE}_$T_RUNS" # a fresh server each time: no race with one shutting down
    rm -f "$T_DIR/pid"
    {
        # The program replaces this shell (exec), so the pid written here is the program's.
        echo "echo \$\$ >'$T_DIR/pid'"
        echo "exec env $3"
    } >"$T_DIR/prog.sh"
    {
        echo "TERM=$T_TERM; export TERM"
        echo "sh '$T_DIR/prog.sh' 2>>'$T_DIR/stderr'"
        echo 'echo "EXITED rc=$?"'
        echo 'sleep 600'
    } >"$T_DIR/run.sh"
    tmux -L "$T_SOCK" -u -f /dev/null new-session -d -x "$1" -y "$2" "sh '$T_DIR/run.sh'"
}

# t_pid: the process id of the program started by t_start.
t_pid() {
    i=0
    while [ ! -s "$T_DIR/pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    cat "$T_DIR/pid"
}

t_screen() { tmux -L "$T_SOCK" capture-pane -p 2>/dev/null; }
t_keys() { tmux -L "$T_SOCK" send-keys "$@"; }
# Types text literally (no key-name interpretation).
t_type() { tmux -L "$T_SOCK" send-keys -l -- "$1"; }
t_resize() { tmux -L "$T_SOCK" resize-window -x "$1" -y "$2"; }
# Pastes text as a terminal paste (bracketed when the program enabled bracketed paste).
t_paste() {
    printf '%s' "$1" >"$T_DIR/paste"
    tmux -L "$T_SOCK" load-buffer "$T_DIR/paste"
    tmux -L "$T_SOCK" paste-buffer -p
}

t_fail() {
    T_FAILS=$((T_FAILS + 1))
    echo "FAIL: $*"
    echo "---- screen ----"
    t_screen
    echo "---- stderr ----"
    cat "$T_DIR/stderr" 2>/dev/null
    echo "----------------"
}

# t_wait TEXT [SECONDS]: waits until TEXT (fixed string) is on the screen.
t_wait() {
    T_CHECKS=$((T_CHECKS + 1))
    deadline=$(( $(date +%s) + ${2:-10} ))
    while :; do
        if t_screen | grep -qF -- "$1"; then return 0; fi
        if [ "$(date +%s)" -ge "$deadline" ]; then t_fail "timed out waiting for '$1'"; return 1; fi
        sleep 0.1
    done
}

# t_seen TEXT [SECONDS]: like t_wait, but only returns whether TEXT showed up (no failure).
t_seen() {
    deadline=$(( $(date +%s) + ${2:-10} ))
    while :; do
        if t_screen | grep -qF -- "$1"; then return 0; fi
        if [ "$(date +%s)" -ge "$deadline" ]; then return 1; fi
        sleep 0.05
    done
}

# t_wait_re REGEX [SECONDS]: same with an extended regular expression.
t_wait_re() {
    T_CHECKS=$((T_CHECKS + 1))
    deadline=$(( $(date +%s) + ${2:-10} ))
    while :; do
        if t_screen | grep -qE -- "$1"; then return 0; fi
        if [ "$(date +%s)" -ge "$deadline" ]; then t_fail "timed out waiting for /$1/"; return 1; fi
        sleep 0.1
    done
}

# t_wait_count TEXT N [SECONDS]: waits until TEXT is on at least N lines of the screen.
t_wait_count() {
    T_CHECKS=$((T_CHECKS + 1))
    deadline=$(( $(date +%s) + ${3:-10} ))
    while :; do
        if [ "$(t_screen | grep -cF -- "$1")" -ge "$2" ]; then return 0; fi
        if [ "$(date +%s)" -ge "$deadline" ]; then t_fail "timed out waiting for $2 x '$1'"; return 1; fi
        sleep 0.1
    done
}

# t_wait_gone TEXT [SECONDS]: waits until TEXT is no longer on the screen.
t_wait_gone() {
    T_CHECKS=$((T_CHECKS + 1))
    deadline=$(( $(date +%s) + ${2:-10} ))
    while :; do
        if ! t_screen | grep -qF -- "$1"; then return 0; fi
        if [ "$(date +%s)" -ge "$deadline" ]; then t_fail "'$1' still on screen"; return 1; fi
        sleep 0.1
    done
}

# t_absent TEXT: TEXT is not on the screen now.
t_absent() {
    T_CHECKS=$((T_CHECKS + 1))
    if t_screen | grep -qF -- "$1"; then t_fail "unexpected '$1' on screen"; return 1; fi
}

# t_layout_ok MODEL_NAME: the screen is one clean frame: the status bar (starting with the
# model name) is on the line above the input line, exactly once, and the input line is last.
t_layout_ok() {
    T_CHECKS=$((T_CHECKS + 1))
    sleep 0.3 # let a frame pass after the last change
    t_screen | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' >"$T_DIR/layout" # drop trailing blank lines
    n=$(wc -l <"$T_DIR/layout")
    status=$(sed -n "$((n - 1))p" "$T_DIR/layout")
    last=$(sed -n "${n}p" "$T_DIR/layout")
    bars=$(grep -c "^ $1 · " "$T_DIR/layout")
    case "$status" in " $1 · "*) ;; *) t_fail "no status bar above the input line"; return 1 ;; esac
    case "$last" in ">"*) ;; *) t_fail "the input line is not last"; return 1 ;; esac
    [ "$bars" -eq 1 ] || { t_fail "$bars status bars on screen (a stale frame)"; return 1; }
}

# t_line_of TEXT: prints the first screen line holding TEXT.
t_line_of() { t_screen | grep -F -- "$1" | head -n 1; }

t_done() {
    if [ "$T_FAILS" -ne 0 ]; then
        echo "$1: $T_FAILS of $T_CHECKS checks FAILED (set KEEP_UI_TMP=1 to keep $T_DIR)"
        exit 1
    fi
    echo "$1: all $T_CHECKS checks passed"
    exit 0
}
