#!/bin/sh
# perplexity --kl-divergence-base / --kl-divergence and --kv-cache through the real binary:
#   a run compared with its own base: KL 0, same top-1, same PPL, no text file needed;
#   a grid model (tests/data/grid) against transformers' base: the summary lines, 100% top-1
#   with --kv-cache f32; both options at once compare and save; --chunks N scores the first N
#   chunks (of a text or of a base) and a base file is announced with its size first;
#   bad input (missing or broken base, another vocabulary, options in the wrong place, a bad
#   --kv-cache value, f32 cache with --backend cuda): one clear line, non-zero exit.
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"
G="$BN_SOURCE_DIR/tests/data/grid"

i=0
: >"$T/text.txt"
while [ $i -lt 40 ]; do
    echo "The quick brown fox jumps over the lazy dog. Number $i of a short text to score." >>"$T/text.txt"
    i=$((i + 1))
done
"$BN_BIN" perplexity --model "$M" "$T/text.txt" --ctx 64 -b cpu --kl-divergence-base "$T/base.kl" \
    >"$T/a" 2>"$T/a.err" || { fail "saving a base"; cat "$T/a.err"; }
grep -q "logits of [0-9]* positions saved to $T/base.kl" "$T/a.err" || { fail "no saved note"; cat "$T/a.err"; }
[ "$(head -c 8 "$T/base.kl")" = BNKLDIV1 ] || fail "base file magic"
ppl=$(sed -n 's/^Final estimate: PPL = \([0-9.e+]*\) .*/\1/p' "$T/a")
"$BN_BIN" perplexity --model "$M" -b cpu --kl-divergence "$T/base.kl" >"$T/b" 2>"$T/b.err" \
    || { fail "comparing with own base"; cat "$T/b.err"; }
grep -q "^Base PPL = $ppl$" "$T/b" || { fail "base PPL is not the saving run's ($ppl)"; cat "$T/b"; }
grep -q "^Final estimate: PPL = $ppl " "$T/b" || { fail "PPL differs from the saving run"; cat "$T/b"; }
grep -q "^Mean KL divergence = 0 " "$T/b" || { fail "own base: KL not 0"; cat "$T/b"; }
grep -q "^Same top-1 = 100.0000% " "$T/b" || { fail "own base: top-1 not 100%"; cat "$T/b"; }

# --chunks: only the first chunks, of the text or of the base
"$BN_BIN" perplexity --model "$M" -b cpu --chunks 1 --kl-divergence "$T/base.kl" >"$T/c" 2>"$T/c.err" \
    || { fail "--chunks 1 with a base"; cat "$T/c.err"; }
grep -q "^Same top-1 = 100.0000% (31 of 31 positions)" "$T/c" || { fail "--chunks 1: positions"; cat "$T/c"; }
"$BN_BIN" perplexity --model "$M" "$T/text.txt" --ctx 64 -b cpu --chunks 2 --kl-divergence-base "$T/c2.kl" \
    >/dev/null 2>"$T/c2.err" || { fail "--chunks 2 saving"; cat "$T/c2.err"; }
V=$(od -An -tu4 -j8 -N4 "$T/base.kl" | tr -d ' ')   # the vocabulary, from the header
[ "$(wc -c <"$T/c2.kl")" = $((24 + 2 * 64 * 4 + 2 * 31 * V * 4)) ] \
    || fail "--chunks 2: base file size"
grep -q "will take" "$T/c2.err" || { fail "no size note before saving"; cat "$T/c2.err"; }
usage_error "perplexity subcommand" -p hi --model "$M" --chunks 2

# a grid model against transformers
"$BN_BIN" perplexity --model "$G/g2" -b cpu --kv-cache f32 --kl-divergence "$G/g2/base.kl" \
    --kl-divergence-base "$T/g2.kl" >"$T/g" 2>"$T/g.err" || { fail "grid g2"; cat "$T/g.err"; }
for l in "Base PPL = " "Delta PPL = " "Mean KL divergence = " "99th percentile KL divergence = " \
         "Maximum KL divergence = " "Same top-1 = 100.0000% (127 of 127 positions)" \
         "Same top-1 without near-ties = "; do
    grep -q "^$l" "$T/g" || { fail "grid g2: no line '$l'"; cat "$T/g"; }
done
[ -s "$T/g2.kl" ] && [ "$(wc -c <"$T/g2.kl")" = "$(wc -c <"$G/g2/base.kl")" ] \
    || fail "compare and save at once: saved file has the wrong size"

# bad input
expect_fail 1 "$T/none.kl" "$BN_BIN" perplexity --model "$M" --kl-divergence "$T/none.kl"
printf 'BNKLDIV1 and then too little' >"$T/short.kl"
expect_fail 1 "$T/short.kl" "$BN_BIN" perplexity --model "$M" --kl-divergence "$T/short.kl"
printf 'not a base file at all, not at all' >"$T/junk.kl"
expect_fail 1 "BNKLDIV1" "$BN_BIN" perplexity --model "$M" --kl-divergence "$T/junk.kl"
expect_fail 1 "vocabulary" "$BN_BIN" perplexity --model "$G/g2" -b cpu --kl-divergence "$T/base.kl"
expect_fail 1 "--ctx 64" "$BN_BIN" perplexity --model "$M" -b cpu --ctx 32 --kl-divergence "$T/base.kl"
usage_error "perplexity subcommand" -p hi --model "$M" --kl-divergence "$T/base.kl"
usage_error "usage" perplexity --model "$M"
usage_error "--kv-cache" perplexity --model "$M" --kv-cache f8 "$T/text.txt"
expect_fail 1 "CPU backend only" "$BN_BIN" perplexity --model "$M" --backend cuda --kv-cache f32 \
    "$T/text.txt" --ctx 64

cli_done
