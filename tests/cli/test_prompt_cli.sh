#!/bin/sh
# One-shot prompt and perplexity through the real binary, on the small GGUF fixture model
# (random weights: the text is noise, the mechanics are real).
#   -p: exit 0, a stats line on stderr, greedy and seeded runs reproducible, a bad model path is
#       one error line and a non-zero exit, the exchange lands in the history database;
#   perplexity: running values and a final estimate; a too-short file is a clear error.
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"

"$BN_BIN" -p "Hello there" --model "$M" --temp 0 -n 12 --no-history >"$T/a" 2>"$T/a.err"
rc=$?
[ $rc = 0 ] || { fail "-p exit $rc"; cat "$T/a.err"; }
grep -q "^bitnet-chat: prompt [0-9]* tokens (.* tok/s), reply [0-9]* tokens (.* tok/s), TTFT [0-9]* ms, context [0-9]*/[0-9]*, stop: " "$T/a.err" \
    || { fail "no stats line"; cat "$T/a.err"; }
"$BN_BIN" -p "Hello there" --model "$M" --temp 0 -n 12 --no-history >"$T/b" 2>/dev/null
cmp -s "$T/a" "$T/b" || fail "greedy runs differ"

"$BN_BIN" -p "Hi" --model "$M" --temp 1 --seed 42 -n 16 --no-history >"$T/s1" 2>/dev/null
"$BN_BIN" -p "Hi" --model "$M" --temp 1 --seed 42 -n 16 --no-history >"$T/s2" 2>/dev/null
cmp -s "$T/s1" "$T/s2" || fail "same seed, different text"

# a system prompt and all sampling options are accepted
"$BN_BIN" -p "Hi" --model "$M" --system "Be brief." --temp 0.8 --top-k 20 --top-p 0.9 \
    --min-p 0.1 --repeat-penalty 1.2 --seed 1 -n 4 --ctx 128 --threads 1 --backend cpu \
    --no-history >/dev/null 2>"$T/o.err" || { fail "options run"; cat "$T/o.err"; }
grep -q "context [0-9]*/128," "$T/o.err" || { fail "--ctx not applied"; cat "$T/o.err"; }

# a bad model: one clear line, non-zero exit
"$BN_BIN" -p "Hi" --model "$T/missing.gguf" --no-history >"$T/bad" 2>"$T/bad.err"
rc=$?
[ $rc != 0 ] || fail "bad model path exits 0"
[ "$(wc -l <"$T/bad.err")" = 1 ] || { fail "bad model path: not exactly one line"; cat "$T/bad.err"; }
grep -q "missing.gguf" "$T/bad.err" || fail "bad model path: error does not name the file"
[ -s "$T/bad" ] && fail "bad model path wrote to stdout"

# history: the exchange is saved
"$BN_BIN" -p "Remember this line" --model "$M" --temp 0 -n 4 --db "$T/h.db" >/dev/null 2>"$T/h.err" \
    || { fail "-p with --db"; cat "$T/h.err"; }
"$BN_BIN" --db "$T/h.db" --show 1 >"$T/show" 2>&1 || { fail "--show"; cat "$T/show"; }
grep -q "Remember this line" "$T/show" || { fail "user message not in history"; cat "$T/show"; }
grep -q "^\[assistant\]" "$T/show" || { fail "reply not in history"; cat "$T/show"; }

# perplexity
i=0
: >"$T/text.txt"
while [ $i -lt 40 ]; do
    echo "The quick brown fox jumps over the lazy dog. Number $i of a short text to score." >>"$T/text.txt"
    i=$((i + 1))
done
"$BN_BIN" perplexity --model "$M" "$T/text.txt" --ctx 64 >"$T/ppl" 2>"$T/ppl.err"
rc=$?
[ $rc = 0 ] || { fail "perplexity exit $rc"; cat "$T/ppl.err"; }
grep -q "^\[1\][0-9.e+]*,\[2\][0-9.e+]*," "$T/ppl" || { fail "no running values"; cat "$T/ppl"; }
grep -q "^Final estimate: PPL = [0-9.e+]* +/- [0-9.e+]*$" "$T/ppl" || { fail "no final estimate"; cat "$T/ppl"; }
echo "short" >"$T/short.txt"
"$BN_BIN" perplexity --model "$M" "$T/short.txt" --ctx 64 >/dev/null 2>"$T/short.err"
[ $? != 0 ] || fail "perplexity of a too-short file exits 0"
grep -q "needs at least 64" "$T/short.err" || { fail "short file message"; cat "$T/short.err"; }

cli_done
