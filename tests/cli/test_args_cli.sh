#!/bin/sh
# Bad and edge values on the command line: a usage error is one line and exit 2, before any
# model is loaded; edge values that are allowed work.
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"

usage_error "the prompt is empty" -p "" --model "$M" --db "$T/h.db"
usage_error "the prompt is empty" -p "
	 " --model "$M" --db "$T/h.db"
[ -e "$T/h.db" ] && fail "an empty prompt created the history database"
usage_error "--db: empty path" --db "" --sessions
usage_error "--db: empty path" --db "" -p "hi" --model "$M"
usage_error "--ctx" -p hi --ctx -1
usage_error "--ctx" -p hi --ctx 1x
usage_error "--threads" -p hi --threads 5000
usage_error "--threads" -p hi --threads 0
usage_error "--threads" -p hi --threads -2
usage_error "--threads" -p hi --threads two
usage_error "--threads" -p hi --threads 99999999999999999999
usage_error "--ctx" -p hi --ctx 0
usage_error "--ctx" -p hi --ctx 99999999999999999999
usage_error "--temp" -p hi --temp nan
usage_error "--temp" -p hi --temp inf
usage_error "--temp" -p hi --temp -0.5
usage_error "--top-p" -p hi --top-p 1.5
usage_error "--max-tokens" -p hi -n 0
usage_error "--seed" -p hi --seed -1
usage_error "--show" --show 0
usage_error "--show" --show 9223372036854775808
usage_error "--backend" -p hi --backend gpu
usage_error "--format" --export 1 --format html
usage_error "cannot be combined" --sessions --search x
usage_error "unexpected argument" -p hi a b

# allowed edges: the context just large enough, one token, --top-k far above the vocabulary
"$BN_BIN" -p "hi" --model "$M" -n 1 --temp 0 --top-k 16777216 --no-history >"$T/out" 2>"$T/err" \
    || { fail "edge values refused"; cat "$T/err"; }
# a context that cannot hold the prompt: one line, exit 1, nothing on stdout
"$BN_BIN" -p "hi" --model "$M" --ctx 1 --no-history >"$T/out" 2>"$T/err"
rc=$?
[ $rc = 1 ] || fail "--ctx 1: exit $rc, expected 1"
grep -q "context holds 1" "$T/err" || { fail "--ctx 1: message"; cat "$T/err"; }
[ -s "$T/out" ] && fail "--ctx 1 wrote to stdout"
# a context that holds the prompt but no reply says why (it read "needs N but holds N")
n=$(sed -n 's/.*the prompt needs \([0-9]*\) tokens.*/\1/p' "$T/err")
"$BN_BIN" -p "hi" --model "$M" --ctx "$n" --no-history >"$T/out" 2>"$T/err"
rc=$?
[ $rc = 1 ] || fail "--ctx $n: exit $rc, expected 1"
grep -q "needs $n tokens and the reply at least 1, but the context holds $n" "$T/err" \
    || { fail "--ctx = prompt length: message"; cat "$T/err"; }
"$BN_BIN" -p "hi" --model "$M" --ctx $((n + 1)) --temp 0 --no-history >"$T/out" 2>"$T/err" \
    || { fail "--ctx prompt+1 refused"; cat "$T/err"; }
grep -q "stop: ctx_full" "$T/err" || { fail "--ctx prompt+1: not ctx_full"; cat "$T/err"; }

# More threads than CPUs: capped, said once on stderr, and the reply is the same as with the
# CPU count (greedy). A context beyond the model's trained one: capped with a message, same reply.
ncpu=$(getconf _NPROCESSORS_ONLN)
"$BN_BIN" -p "hi" --model "$M" -n 4 --temp 0 --no-history >"$T/ref" 2>"$T/err" \
    || { fail "reference reply"; cat "$T/err"; }
"$BN_BIN" -p "hi" --model "$M" -n 4 --temp 0 --no-history --threads 1000 >"$T/out" 2>"$T/err" \
    || { fail "--threads 1000 refused"; cat "$T/err"; }
[ "$(grep -c "threads 1000 is more than the" "$T/err")" = 1 ] || { fail "--threads 1000: message"; cat "$T/err"; }
grep -q "using $ncpu" "$T/err" || { fail "--threads 1000: not capped at $ncpu"; cat "$T/err"; }
cmp -s "$T/ref" "$T/out" || fail "--threads 1000: another reply"
"$BN_BIN" -p "hi" --model "$M" -n 4 --temp 0 --no-history --ctx 1048576 >"$T/out" 2>"$T/err" \
    || { fail "--ctx 1048576 refused"; cat "$T/err"; }
grep -q "ctx 1048576 is more than the model's trained context; using [0-9]" "$T/err" \
    || { fail "--ctx 1048576: message"; cat "$T/err"; }
cmp -s "$T/ref" "$T/out" || fail "--ctx 1048576: another reply"
trained=$(sed -n "s/.*trained context; using \([0-9]*\).*/\1/p" "$T/err")
grep -q "context [0-9]*/$trained," "$T/err" || { fail "--ctx 1048576: context not $trained"; cat "$T/err"; }
# A model trained for 2^30 positions (the fixture with its u32 context_length patched): its
# default context would need far more memory than there is, so it is refused with one line that
# says so and what to do; a --ctx that fits works.
cp "$M" "$T/long.gguf"
off=$(grep -obUa "context_length" "$T/long.gguf" | head -1 | cut -d: -f1)
if [ -n "$off" ] && [ "$(od -A n -t u4 -j $((off + 14)) -N 4 "$T/long.gguf" | tr -d ' ')" = 4 ]; then
    printf '\000\000\000\100' | dd of="$T/long.gguf" bs=1 seek=$((off + 18)) conv=notrunc 2>/dev/null
    "$BN_BIN" -p "hi" --model "$T/long.gguf" -n 2 --no-history >"$T/out" 2>"$T/err"
    rc=$?
    [ $rc = 1 ] || fail "2^30-position model: exit $rc, expected 1"
    grep -q "1073741824-token context needs .* GiB of memory .* use a smaller --ctx" "$T/err" \
        || { fail "2^30-position model: message"; cat "$T/err"; }
    [ "$(wc -l <"$T/err")" = 1 ] || { fail "2^30-position model: not one line"; cat "$T/err"; }
    "$BN_BIN" -p "hi" --model "$T/long.gguf" -n 2 --no-history --ctx 4096 >"$T/out" 2>"$T/err" \
        || { fail "2^30-position model with --ctx 4096"; cat "$T/err"; }
else
    fail "cannot find the u32 context_length of the fixture"
fi

# perplexity caps the same way and says so
awk 'BEGIN { for (i = 0; i < 400; i++) printf "the cat sat on the mat and looked at the dog. " }' >"$T/text"
"$BN_BIN" perplexity --model "$M" --ctx 1048576 "$T/text" >"$T/out" 2>"$T/err"
grep -q "ctx 1048576 is more than the model's trained context" "$T/err" \
    || { fail "perplexity --ctx 1048576: message"; cat "$T/err"; }

# bench runs on the threads it is given (it used all cores whatever --threads said); --profile
# keeps it to one short end-to-end run
"$BN_BIN" bench --backend cpu --quick --threads 1 --profile >"$T/out" 2>"$T/err" \
    || { fail "bench --threads 1"; cat "$T/err"; }
grep -q "^CPU: .*, 1 thread;" "$T/out" || { fail "bench --threads 1: kernel table not on 1 thread"; head -3 "$T/out"; }
grep -q "^End to end (CPU, 1 thread," "$T/out" || { fail "bench --threads 1: end to end not on 1 thread"; grep "End to end" "$T/out"; }
# --skip-kernels: no kernel table, the end-to-end run still there
"$BN_BIN" bench --backend cpu --quick --threads 1 --profile --skip-kernels >"$T/out" 2>"$T/err" \
    || { fail "bench --skip-kernels"; cat "$T/err"; }
grep -q "^CPU: " "$T/out" && { fail "bench --skip-kernels: the kernel table ran"; head -3 "$T/out"; }
grep -q "^End to end (CPU, 1 thread," "$T/out" || { fail "bench --skip-kernels: no end-to-end run"; cat "$T/out"; }

# tokenize --jsonl: blank lines hold no record and are skipped
printf '{"text": "a"}\n\n  \n{"text": "b"}\n\n' | "$BN_BIN" tokenize --jsonl "$M" >"$T/out" 2>"$T/err" \
    || { fail "jsonl with blank lines"; cat "$T/err"; }
[ "$(wc -l <"$T/out")" = 2 ] || { fail "jsonl: expected 2 records"; cat "$T/out"; }

cli_done
