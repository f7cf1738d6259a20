#!/bin/sh
# bitnet-chat convert from the command line: success on each published form, clear one-line
# errors (and exit 1, nothing written) on bad inputs and outputs.
set -u
d="$BN_SOURCE_DIR/tests/data/models"
t=$(mktemp -d) || exit 1
trap 'rm -rf "$t"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
for src in i2s.gguf tq2_0.gguf hf_packed hf_bf16; do
    if "$BN_BIN" convert "$d/$src" "$t/$src.gguf" >"$t/out" 2>"$t/err" && grep -q "verified bit-identical" "$t/out"; then
        ok "convert $src"
    else
        bad "convert $src: $(cat "$t/out" "$t/err")"
    fi
done
# the converted file converts again to the same bytes (the writer is deterministic)
"$BN_BIN" convert "$t/i2s.gguf.gguf" "$t/again.gguf" >/dev/null 2>&1 && cmp -s "$t/i2s.gguf.gguf" "$t/again.gguf" \
    && ok "convert is deterministic" || bad "second convert differs"
expect_err() { # expected-substring, args...
    want=$1; shift
    if "$BN_BIN" convert "$@" >"$t/out" 2>"$t/err"; then bad "convert $* succeeded"; return; fi
    if grep -q -- "$want" "$t/err" && [ "$(wc -l <"$t/err")" -le 2 ]; then ok "convert $*: $(tail -1 "$t/err")"
    else bad "convert $*: expected '$want', got: $(cat "$t/err")"; fi
}
expect_err "no such file" "$t/missing.gguf" "$t/x.gguf"
expect_err "config.json" "$t" "$t/x.gguf"
expect_err "not a GGUF" "$d/gen_fixtures.py" "$t/x.gguf"
expect_err "No such file" "$d/i2s.gguf" "$t/no/such/dir/x.gguf"
expect_err "overwrite the source" "$d/i2s.gguf" "$d/i2s.gguf"
expect_err "usage" "$d/i2s.gguf"
[ ! -e "$t/x.gguf" ] || bad "a failed convert left $t/x.gguf"
ls -a "$t" | grep -q "tmp-" && bad "temporary file left behind"
exit $fail
