#!/bin/sh
# The CUDA build of bitnet-chat needs no cuBLAS (only `bench` uses it, opened at run time): its
# dynamic section names no libcublas, and it starts and answers a prompt on the CPU (where this
# runs without a GPU, as CI does, `--backend auto` is the CPU).
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"

command -v readelf >/dev/null 2>&1 || { echo "SKIP: readelf not found"; exit 77; }
readelf -d "$BN_BIN" >"$T/dyn" 2>&1 || { fail "readelf -d failed"; cat "$T/dyn"; }
grep -q NEEDED "$T/dyn" || { fail "readelf shows no NEEDED entries"; cat "$T/dyn"; }
if grep NEEDED "$T/dyn" | grep -qi cublas; then
    fail "bitnet-chat links cuBLAS:"
    grep NEEDED "$T/dyn"
fi

"$BN_BIN" --help >"$T/help" 2>&1 || { fail "--help exit $?"; cat "$T/help"; }
"$BN_BIN" -p "Hello" --model "$M" --temp 0 -n 4 --backend auto --no-history >"$T/p" 2>"$T/p.err" \
    || { fail "-p exit $?"; cat "$T/p.err"; }
grep -q "reply [0-9]* tokens" "$T/p.err" || { fail "-p: no stats line"; cat "$T/p.err"; }
# Where the build's CUDA backend could not start, the backend description carries why, whole
# (it was cut mid-word once the CPU description grew: "no CUDA , 2048-token context").
i=0
while [ $i -lt 40 ]; do printf 'The quick brown fox jumps over the lazy dog. '; i=$((i + 1)); done >"$T/text"
"$BN_BIN" perplexity --model "$M" --ctx 64 "$T/text" >/dev/null 2>"$T/ppl.err" || { fail "perplexity exit $?"; cat "$T/ppl.err"; }
line=$(grep "chunks of" "$T/ppl.err")
case "$line" in
*"CUDA unavailable"*) case "$line" in *"))") ;; *) fail "backend description cut: $line" ;; esac ;;
esac
cli_done
