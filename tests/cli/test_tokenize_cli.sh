#!/bin/sh
# `bitnet-chat tokenize`: ids for TEXT, for stdin, --jsonl, a folder path, and clear errors.
# $1: folder with the Llama 3 tokenizer.json (unpacked at configure time).
set -u
dir=$1
tok=$dir/tokenizer.json
fail=0
check() { # name, expected, actual
    if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAIL: $1: expected [$2] got [$3]"; fail=1; fi
}
out=$("$BN_BIN" tokenize "$tok" "Hello, my dog is cute") || fail=1
check "text argument" "9906 11 856 5679 374 19369" "$out"
out=$(printf 'Hello, my dog is cute' | "$BN_BIN" tokenize "$dir") || fail=1
check "stdin, folder path" "9906 11 856 5679 374 19369" "$out"
out=$(printf 'end with newline\n' | "$BN_BIN" tokenize "$tok") || fail=1
check "stdin keeps its newline" "408 449 40127 198" "$out"
out=$("$BN_BIN" tokenize "$tok" "User: hi<|eot_id|>Assistant: ") || fail=1
check "specials are text" "1502 25 15960 27 91 68 354 851 91 29 72803 25 220" "$out"
out=$(printf '{"text": "Hello, my dog is cute"}\n{"text": ""}\n{"text": "a\\u0000b"}\n' |
      "$BN_BIN" tokenize --jsonl "$tok") || fail=1
check "jsonl" '{"ids": [9906, 11, 856, 5679, 374, 19369]}
{"ids": []}
{"ids": [64, 188, 65]}' "$out"
# A GGUF file (its embedded vocabulary, through the model loader), an HF folder and its
# tokenizer.json give the same ids (the models fixtures share one small vocabulary).
models=$BN_SOURCE_DIR/tests/data/models
if [ -f "$models/i2s.gguf" ] && [ -d "$models/hf_bf16" ]; then
    text='Hello world! The model has thirty layers. <|eot_id|>'
    a=$("$BN_BIN" tokenize "$models/i2s.gguf" "$text") || fail=1
    b=$("$BN_BIN" tokenize "$models/hf_bf16" "$text") || fail=1
    c=$("$BN_BIN" tokenize "$models/hf_bf16/tokenizer.json" "$text") || fail=1
    check "gguf = hf folder" "$b" "$a"
    check "hf folder = tokenizer.json" "$c" "$b"
    [ -n "$a" ] || { echo "FAIL: no ids from the GGUF"; fail=1; }
fi
# Errors: one line on stderr, nonzero exit, nothing on stdout.
for bad in /nonexistent/tokenizer.json "$BN_SOURCE_DIR/tests"; do
    err=$("$BN_BIN" tokenize "$bad" "x" 2>&1 >/dev/null); rc=$?
    lines=$(printf '%s\n' "$err" | wc -l)
    if [ $rc -ne 0 ] && [ "$lines" -eq 1 ]; then echo "ok: error for $bad: $err"
    else echo "FAIL: bad path $bad: rc=$rc stderr=[$err]"; fail=1; fi
done
tmp=$(mktemp -d)
printf '{"model": {"vocab": 3}' > "$tmp/tokenizer.json"
err=$("$BN_BIN" tokenize "$tmp/tokenizer.json" "x" 2>&1 >/dev/null); rc=$?
case "$err" in *"$tmp/tokenizer.json"*) [ $rc -ne 0 ] && echo "ok: malformed file: $err" ;;
    *) echo "FAIL: malformed file: rc=$rc [$err]"; fail=1 ;; esac
err=$(printf '{"text": 5}\n' | "$BN_BIN" tokenize --jsonl "$tok" 2>&1 >/dev/null); rc=$?
case "$err" in *"line 1"*) [ $rc -ne 0 ] && echo "ok: bad jsonl line: $err" ;;
    *) echo "FAIL: bad jsonl: rc=$rc [$err]"; fail=1 ;; esac
rm -rf "$tmp"
exit $fail
