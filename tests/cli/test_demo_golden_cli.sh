#!/bin/sh
# The demo model through the real command line: `bitnet-chat -p PROMPT --temp 0` replies to the
# prompts of tests/data/demo/engine_prompts.txt exactly as committed in tests/data/demo/replies/
# (the decoded "engine" ids of golden.txt; see tests/oracle/test_demo_golden.c). $1: cpu or cuda.
# Also checks that with no --model the bundled assets/bitnet-demo.gguf is found and used.
set -u
backend=${1:-cpu}
data=$BN_SOURCE_DIR/tests/data/demo
model=$BN_SOURCE_DIR/assets/bitnet-demo.gguf
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
i=0
while IFS= read -r prompt; do
    "$BN_BIN" -p "$prompt" --temp 0 --repeat-penalty 1 -n 48 --no-history --backend "$backend" \
        --model "$model" >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    if [ $rc -ne 0 ] && [ "$backend" = cuda ] && grep -q -i "cuda" "$tmp/err"; then
        echo "SKIP: $(tail -n 1 "$tmp/err")"
        exit 77
    fi
    if [ $rc -ne 0 ]; then
        echo "FAIL: [$prompt]: exit $rc: $(cat "$tmp/err")"; fail=1
    elif cmp -s "$tmp/out" "$data/replies/$i.txt"; then
        echo "ok ($backend): [$prompt]"
    else
        echo "FAIL ($backend): [$prompt]"
        echo "  expected: $(cat "$data/replies/$i.txt")"
        echo "  got:      $(cat "$tmp/out")"
        fail=1
    fi
    i=$((i + 1))
done <"$data/engine_prompts.txt"
[ $i -ge 6 ] || { echo "FAIL: only $i prompts read"; fail=1; }
if [ "$backend" = cpu ]; then
    # no --model: the bundled demo model
    if "$BN_BIN" -p "Hello!" --temp 0 --repeat-penalty 1 -n 48 --no-history --backend cpu \
        >"$tmp/out" 2>"$tmp/err" && cmp -s "$tmp/out" "$data/replies/1.txt"; then
        echo "ok: default model"
    else
        echo "FAIL: default model: $(cat "$tmp/out" "$tmp/err")"; fail=1
    fi
fi
exit $fail
