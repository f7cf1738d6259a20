#!/bin/sh
# --mmap (CPU backend reads the weights in place instead of its huge-page copy): accepted by -p
# and the chat path's option parser, and the reply is the default one byte for byte (the two
# ways compute the same logits; test_cpu_weights checks that bit for bit and that the option
# reaches the backend).
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"
D="$BN_SOURCE_DIR/assets/bitnet-demo.gguf"
for w in copy mmap; do
    flag=""
    [ $w = mmap ] && flag=--mmap
    "$BN_BIN" -p "What does coastal mean?" --model "$D" --backend cpu $flag --temp 0 -n 16 -t 2 \
        --no-history >"$T/$w" 2>"$T/$w.err" || { fail "-p $flag (exit $?)"; cat "$T/$w.err"; }
done
[ -s "$T/copy" ] || fail "no reply"
cmp -s "$T/copy" "$T/mmap" || fail "--mmap changed the reply"
cli_done
