#!/bin/sh
# Decode speed with the full-screen UI open against the one-shot `-p` mode, same model, same
# prompt, greedy, same reply length, alternating runs. The engine measures tok/s the same way in
# both (reply tokens / decode time); the question is whether drawing the UI slows decoding.
# Prints every run, the medians and their ratio.
# usage: bench_ui_vs_prompt.sh BITNET_CHAT MODEL [REPLY_TOKENS=256] [RUNS=5] [extra options...]
BIN=${1:?usage: bench_ui_vs_prompt.sh BITNET_CHAT MODEL [TOKENS] [RUNS] [OPTIONS]}
MODEL=${2:?model}
N=${3:-256}
RUNS=${4:-5}
shift 2; [ $# -gt 0 ] && shift; [ $# -gt 0 ] && shift
EXTRA="$*"
. "$(dirname "$0")/lib.sh"

PROMPT="Tell me a long story about a lighthouse keeper."
# BENCH_NICE=-10 runs both sides at a higher priority, against the noise of a busy machine.
NICE=""
[ -n "$BENCH_NICE" ] && NICE="nice -n $BENCH_NICE"
OPTS="--no-history --temp 0 --max-tokens $N $EXTRA"
echo "method: $RUNS alternating runs of '-p' and the UI (tmux 120x40), greedy, $N reply tokens,"
echo "        prompt \"$PROMPT\", options: $OPTS; tok/s as reported by the engine${NICE:+; run with $NICE}"
: >"$T_DIR/p.txt"; : >"$T_DIR/ui.txt"
run_p() {
    line=$($NICE "$BIN" -p "$PROMPT" $OPTS "$MODEL" </dev/null 2>&1 >/dev/null | grep 'reply [0-9]* tokens')
    p_tok=$(echo "$line" | sed -n 's/.*reply \([0-9]*\) tokens (\([0-9.]*\) tok\/s).*/\1/p')
    p_rate=$(echo "$line" | sed -n 's/.*reply \([0-9]*\) tokens (\([0-9.]*\) tok\/s).*/\2/p')
    [ -n "$p_rate" ] || { echo "could not read the -p figures: $line"; exit 1; }
    echo "$p_rate" >>"$T_DIR/p.txt"
}
run_ui() {
    t_start 120 40 "$NICE $BIN $OPTS '$MODEL'"
    t_wait "Loaded " 120 || exit 1
    # CPU time of the UI (main) thread against all the program's threads while the reply is
    # written, from /proc: the UI's cost, which other load on the machine does not disturb.
    pid=$(t_pid)
    main_0=$(awk '{ print $14 + $15 }' "/proc/$pid/task/$pid/stat" 2>/dev/null)
    all_0=$(cat /proc/"$pid"/task/*/stat 2>/dev/null | awk '{ s += $14 + $15 } END { print s }')
    t_type "$PROMPT"; t_keys Enter
    t_wait_re "^  [0-9]+ tok · [0-9.]+ tok/s" 600 || exit 1
    foot=$(t_screen | grep -E '^  [0-9]+ tok · [0-9.]+ tok/s' | tail -n 1)
    u_tok=$(echo "$foot" | sed -n 's/^  \([0-9]*\) tok · \([0-9.]*\) tok\/s.*/\1/p')
    u_rate=$(echo "$foot" | sed -n 's/^  \([0-9]*\) tok · \([0-9.]*\) tok\/s.*/\2/p')
    main_t=$(awk '{ print $14 + $15 }' "/proc/$pid/task/$pid/stat" 2>/dev/null)
    all_t=$(cat /proc/"$pid"/task/*/stat 2>/dev/null | awk '{ s += $14 + $15 } END { print s }')
    echo "$((${main_t:-0} - ${main_0:-0})) $((${all_t:-0} - ${all_0:-0}))" >>"$T_DIR/cpu.txt"
    t_keys C-d
    t_wait "EXITED rc=0" 30
    echo "$u_rate" >>"$T_DIR/ui.txt"
}
: >"$T_DIR/cpu.txt"
i=1
while [ $i -le "$RUNS" ]; do
    # ABBA order, so that a drift in the machine's load falls on both sides alike.
    if [ $((i % 2)) -eq 1 ]; then run_p; run_ui; else run_ui; run_p; fi
    echo "run $i: -p $p_tok tokens at $p_rate tok/s | UI $u_tok tokens at $u_rate tok/s"
    i=$((i + 1))
done
share=$(awk '{ m += $1; a += $2 } END { if (a > 0) printf "%.1f", 100 * m / a; else print "?" }' "$T_DIR/cpu.txt")
echo "UI (main) thread: $share% of the program's CPU time while replies were written, all UI runs (/proc, 10 ms ticks)"
median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mp=$(median "$T_DIR/p.txt")
mu=$(median "$T_DIR/ui.txt")
bp=$(sort -n "$T_DIR/p.txt" | tail -n 1)
bu=$(sort -n "$T_DIR/ui.txt" | tail -n 1)
echo "median: -p $mp tok/s, UI $mu tok/s, UI/-p = $(awk -v u="$mu" -v p="$mp" 'BEGIN { printf "%.3f", u / p }')"
echo "best:   -p $bp tok/s, UI $bu tok/s, UI/-p = $(awk -v u="$bu" -v p="$bp" 'BEGIN { printf "%.3f", u / p }')"
echo "(best-of is the least disturbed by other load on the machine: $(uptime | sed 's/.*load/load/'))"
