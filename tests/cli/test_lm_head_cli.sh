#!/bin/sh
# --lm-head on the command line: a bad value is one clear line and exit 2; f16 and int8 are
# accepted; the CPU backend runs int8 too (a reply, no note that it would be ignored).
# With "cuda" as $1 (label gpu): int8 on the CUDA backend runs the demo model to a reply.
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"

usage_error "--lm-head: expected f16 or int8, not 'int4'" -p "Hi" --lm-head int4 --no-history
usage_error "--lm-head" -p "Hi" --lm-head --no-history

if [ "${1:-cpu}" = cuda ]; then
    "$BN_BIN" -p "What does coastal mean?" --model "$BN_SOURCE_DIR/assets/bitnet-demo.gguf" --backend cuda --lm-head int8 --temp 0 -n 24 --no-history \
        >"$T/c8" 2>"$T/c8.err"
    rc=$?
    if grep -q "no CUDA device" "$T/c8.err"; then echo "SKIP: no CUDA device"; exit 77; fi
    [ $rc = 0 ] && [ -s "$T/c8" ] || { fail "cuda int8 run (exit $rc)"; cat "$T/c8.err"; }
    cli_done
fi

for h in f16 int8; do
    "$BN_BIN" -p "Hello there" --model "$M" --backend cpu --lm-head $h --temp 0 -n 12 --no-history \
        >"$T/$h" 2>"$T/$h.err" || { fail "--lm-head $h run"; cat "$T/$h.err"; }
done
[ -s "$T/int8" ] || fail "no reply with --lm-head int8 on the CPU backend"
grep -q "applies to the CUDA backend only" "$T/int8.err" && fail "the CPU backend says it ignores --lm-head int8"
cli_done
