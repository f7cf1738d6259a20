#!/bin/sh
# Model paths that are not plain files: a FIFO or a link to /dev/zero in place of a file of a
# Hugging Face folder (config.json, tokenizer.json, tokenizer_config.json, model.safetensors)
# used to block the load forever (open/read of a FIFO) or read without end. Each must now be
# one line naming the file, exit 1, within seconds; for -p and tokenize alike. Also the top
# path: a FIFO, a device, a directory without config.json, a symlink loop.
set -u
: "${BN_BIN:?BN_BIN must point at bitnet-chat}"
: "${BN_SOURCE_DIR:?}"
HF="$BN_SOURCE_DIR/tests/data/models/hf_bf16"
T=$(mktemp -d "${TMPDIR:-/tmp}/bn_qa_model.XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
command -v timeout >/dev/null || { echo "no timeout command"; exit 77; }
# load_fails EXPECTED_TEXT ARGS...: exit 1 (not a hang: timeout gives 124), one line with the text
load_fails() {
    want=$1
    shift
    timeout 20 "$BN_BIN" "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    [ $rc = 1 ] || fail "$*: exit $rc, expected 1 (124 = hung)"
    [ "$(wc -l <"$T/err")" = 1 ] || { fail "$*: not one line"; cat "$T/err"; }
    grep -q -- "$want" "$T/err" || { fail "$*: message lacks '$want'"; cat "$T/err"; }
}

for f in config.json tokenizer.json tokenizer_config.json model.safetensors; do
    rm -rf "$T/hf"
    cp -r "$HF" "$T/hf"
    rm "$T/hf/$f"
    mkfifo "$T/hf/$f" || { echo "cannot make a FIFO"; exit 77; }
    load_fails "hf/$f: not a regular file" -p hi -n 2 --no-history --model "$T/hf"
    rm "$T/hf/$f"
    ln -s /dev/zero "$T/hf/$f"
    load_fails "hf/$f: not a regular file" -p hi -n 2 --no-history --model "$T/hf"
done
# tokenize reads only the tokenizer files
for f in tokenizer.json tokenizer_config.json; do
    rm -rf "$T/hf"
    cp -r "$HF" "$T/hf"
    rm "$T/hf/$f"
    mkfifo "$T/hf/$f"
    load_fails "hf/$f: not a regular file" tokenize "$T/hf" "hello"
done

mkfifo "$T/fifo.gguf"
load_fails "not a regular file" -p hi --no-history --model "$T/fifo.gguf"
load_fails "not a regular file" tokenize "$T/fifo.gguf" "hello"
load_fails "not a regular file" -p hi --no-history --model /dev/zero
mkdir "$T/empty"
load_fails "no config.json" -p hi --no-history --model "$T/empty"
ln -s loop2 "$T/loop1"
ln -s loop1 "$T/loop2"
load_fails "loop1" -p hi --no-history --model "$T/loop1"

[ $fails = 0 ] && echo "test_qa_model_cli: all passed"
exit $((fails > 0))
