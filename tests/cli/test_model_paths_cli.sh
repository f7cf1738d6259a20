#!/bin/sh
# Model paths that are not plain files: a FIFO or a link to /dev/zero in place of a file of a
# Hugging Face folder (config.json, tokenizer.json, tokenizer_config.json, model.safetensors)
# used to block the load forever (open/read of a FIFO) or read without end. Each must now be
# one line naming the file, exit 1, within seconds; for -p and tokenize alike. Also the top
# path: a FIFO, a device, a directory without config.json, a symlink loop.
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"
HF="$BN_SOURCE_DIR/tests/data/models/hf_bf16"
command -v timeout >/dev/null || { echo "no timeout command"; exit 77; }
# load_fails EXPECTED_TEXT ARGS...: exit 1 (not a hang: timeout gives 124), one line with the text
load_fails() {
    want=$1
    shift
    expect_fail 1 "$want" timeout 20 "$BN_BIN" "$@"
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

cli_done
