#!/bin/sh
# --mmap (CPU backend reads the weights in place instead of its huge-page copy): accepted by -p
# and the chat path's option parser, and the reply is the default one byte for byte (the two
# ways compute the same logits; test_cpu_weights checks that bit for bit and that the option
# reaches the backend). The default also screens the f16 lm_head through an int8 copy, which
# --mmap does not make (it promises no copy): so the replies also show, end to end through -p,
# that the screened head picks the whole head's tokens, greedy and sampled with seeds. Short
# demo replies rarely come near a wrong screen's edge (a screen threshold raised by 3 logits
# still passed here): test_lm_screen is the check with teeth (it caught that one).
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"
D="$BN_SOURCE_DIR/assets/bitnet-demo.gguf"
for s in "--temp 0" "--seed 5" "--seed 9 --temp 1.5 --repeat-penalty 1.3" "--seed 4 --temp 1.2 --top-k 3"; do
    for w in copy mmap; do
        flag=""
        [ $w = mmap ] && flag=--mmap
        # shellcheck disable=SC2086 # $s holds several options
        "$BN_BIN" -p "What does coastal mean?" --model "$D" --backend cpu $flag $s -n 200 -t 2 \
            --no-history >"$T/$w" 2>"$T/$w.err" || { fail "-p $flag $s (exit $?)"; cat "$T/$w.err"; }
    done
    [ -s "$T/copy" ] || fail "no reply ($s)"
    cmp -s "$T/copy" "$T/mmap" || fail "--mmap changed the reply ($s)"
done
cli_done
