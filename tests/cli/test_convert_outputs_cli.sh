#!/bin/sh
# convert onto outputs that must not be replaced: a FIFO (stands for /dev/null and other
# devices: the finished file used to be renamed over it), a directory, a file of the source's
# Hugging Face folder. Each is refused up front with one line naming it, and left untouched.
# A link to a regular file is followed: the file it names is replaced, the link stays.
. "${BN_SOURCE_DIR:?}/tests/cli/lib.sh"
HF="$BN_SOURCE_DIR/tests/data/models/hf_bf16"

# refused: exit 1, exactly one line on stderr that names the output, nothing on stdout
refused() { # out expect_text
    expect_fail 1 "$2" "$BN_BIN" convert "$SRC" "$1"
}

SRC="$M"
mkfifo "$T/fifo" || { echo "cannot make a FIFO"; exit 77; }
refused "$T/fifo" "not a regular file"
[ -p "$T/fifo" ] || fail "the FIFO was replaced"
mkdir "$T/dir"
refused "$T/dir" "is a directory"
[ -d "$T/dir" ] || fail "the directory was replaced"
refused "" "empty"

# no temporary file is left behind by a refusal
ls -A "$T" | grep -q "tmp-" && fail "a temporary file was left"

# a link to a regular file: the target is replaced, the link stays a link
echo "old" >"$T/target.gguf"
ln -s target.gguf "$T/link.gguf"
"$BN_BIN" convert "$M" "$T/link.gguf" >/dev/null 2>"$T/err" || { fail "convert onto a link"; cat "$T/err"; }
[ -L "$T/link.gguf" ] || fail "the link was replaced by a file"
[ "$(head -c 4 "$T/target.gguf")" = "GGUF" ] || fail "the link's target was not written"

# Hugging Face source folder: its own files are never replaced
cp -r "$HF" "$T/hf"
for f in model.safetensors config.json tokenizer.json tokenizer_config.json; do
    cp "$T/hf/$f" "$T/$f.orig"
    SRC="$T/hf"
    refused "$T/hf/$f" "source"
    SRC="$T/hf/config.json"
    refused "$T/hf/$f" "source"
    cmp -s "$T/hf/$f" "$T/$f.orig" || fail "$f of the source folder was changed"
done
# a new file in the folder is fine
"$BN_BIN" convert "$T/hf" "$T/hf/out.gguf" >/dev/null 2>"$T/err" || { fail "convert into the source folder"; cat "$T/err"; }

cli_done
