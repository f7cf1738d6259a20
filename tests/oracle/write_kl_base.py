#!/usr/bin/env python3
"""Writes a KL-divergence base file (the format `bitnet-chat perplexity --kl-divergence` reads,
documented in app/perplexity.h and the README) from Hugging Face transformers' logits.

    write_kl_base.py MODEL_DIR TEXT_FILE OUT.kl [--ctx 512] [--chunks N] [--dtype float32]

The text is tokenized by the model folder's tokenizer (special-token text taken as text) with BOS
first, cut into chunks of --ctx tokens whose first token is set to BOS (llama.cpp's perplexity
method, as bitnet-chat does), and each chunk is run through AutoModelForCausalLM in one forward pass (eager attention). The logits
of positions ctx/2 .. ctx-2 of every chunk are stored as float32. Then:

    bitnet-chat perplexity --model MODEL_DIR --kl-divergence OUT.kl

Needs torch and transformers (CPU is enough). tests/oracle/make_grid.py uses write_base().
"""
import argparse
import os
import struct
import sys

import numpy as np

MAGIC = b"BNKLDIV1"


def scored_range(n_ctx):
    """Positions of a chunk whose logits are stored: they predict tokens n_ctx/2+1 .. n_ctx-1."""
    return range(n_ctx // 2, n_ctx - 1)


def write_base(path, n_vocab, chunks, logits_of):
    """chunks: list of equal-length int token lists, exactly as evaluated (BOS already first where
    the model has one). logits_of(chunk) -> float array [n_ctx, n_vocab] (at least n_vocab
    columns: a padded lm_head is cut). The file is written under a temporary name and renamed."""
    n_ctx = len(chunks[0])
    assert n_ctx >= 8 and all(len(c) == n_ctx for c in chunks)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<4I", n_vocab, n_ctx, len(chunks), 0))
        for c in chunks:
            assert all(0 <= t < n_vocab for t in c)
            f.write(np.asarray(c, dtype="<i4").tobytes())
        for c in chunks:
            lg = np.asarray(logits_of(c), dtype=np.float32)[:, :n_vocab]
            assert lg.shape == (n_ctx, n_vocab), lg.shape
            r = scored_range(n_ctx)
            f.write(np.ascontiguousarray(lg[r.start:r.stop]).astype("<f4").tobytes())
    os.replace(tmp, path)


def read_base(path):
    """-> (tokens [n_chunks, n_ctx] int32, logits [n_chunks, scored, n_vocab] float32)."""
    with open(path, "rb") as f:
        head = f.read(24)
        assert head[:8] == MAGIC, f"{path}: not a base file"
        n_vocab, n_ctx, n_chunks, _ = struct.unpack("<4I", head[8:])
        toks = np.frombuffer(f.read(4 * n_ctx * n_chunks), dtype="<i4").reshape(n_chunks, n_ctx)
        k = len(scored_range(n_ctx))
        lg = np.frombuffer(f.read(), dtype="<f4").reshape(n_chunks, k, n_vocab)
    return toks, lg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("text")
    ap.add_argument("out")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=0, help="at most this many chunks (0: all)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    a = ap.parse_args()
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Text that spells a special token ("<|eot_id|>") is taken as text, as bitnet-chat's
    # perplexity (and llama.cpp's) tokenizes it; transformers would otherwise make it the special
    # token. With this the ids are identical to `bitnet-chat tokenize` (checked on this README:
    # 37145 tokens with the tests/data/hf_ref tokenizer).
    tok = AutoTokenizer.from_pretrained(a.model_dir, split_special_tokens=True)
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=getattr(torch, a.dtype),
                                                 attn_implementation="eager").eval()
    text = open(a.text, encoding="utf-8").read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id
    if bos is not None:
        ids = [bos] + ids
    n = len(ids) // a.ctx
    if a.chunks:
        n = min(n, a.chunks)
    if n < 1:
        sys.exit(f"{a.text}: {len(ids)} tokens, fewer than --ctx {a.ctx}")
    chunks = []
    for c in range(n):
        ch = ids[c * a.ctx:(c + 1) * a.ctx]
        if bos is not None:
            ch[0] = bos
        chunks.append(ch)

    def logits_of(ch):
        with torch.no_grad():
            return model(torch.tensor([ch])).logits[0].float().numpy()

    write_base(a.out, model.config.vocab_size, chunks, logits_of)
    print(f"{a.out}: {n} chunks of {a.ctx}, {n * len(scored_range(a.ctx))} scored positions",
          file=sys.stderr)


if __name__ == "__main__":
    main()
