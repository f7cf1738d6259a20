#!/usr/bin/env python3
"""Writes a random F16 GGUF with the shapes of BitNet-b1.58-2B-4T (arch bitnet-b1.58) for the
CPU peer comparison (kernels/dev/bench_cpu_peers.sh). Linear weights hold {-1, 0, +1} x 0.05 so
every engine's quantizer keeps them exactly; the tied embedding is F16 N(0, 0.02); norms are ones.
Tokenizer: the Llama 3 tokenizer.json given on the command line (BPE, gpt2 / llama-bpe).
Needs numpy and a gguf-py package on PYTHONPATH (the script passes the one of a fetched peer tree).
Usage: gen_b158_f16.py TOKENIZER.json OUT.gguf"""
import json
import sys

import numpy as np
import gguf

HID, FFN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 2560, 6912, 30, 20, 5, 128, 128256


def main():
    tok_path, out = sys.argv[1], sys.argv[2]
    tok = json.load(open(tok_path, encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    added = {a["id"]: a["content"] for a in tok.get("added_tokens", [])}
    tokens = [""] * VOCAB
    types = [gguf.TokenType.NORMAL] * VOCAB
    for s, i in vocab.items():
        tokens[i] = s
    for i, s in added.items():
        tokens[i] = s
        types[i] = gguf.TokenType.CONTROL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    arch = "bitnet-b1.58"
    w = gguf.GGUFWriter(out, arch)
    w.add_name("random-bitnet-b1.58-2B-4T-shapes")
    w.add_file_type(1)
    w.add_context_length(4096)
    w.add_embedding_length(HID)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_vocab_size(VOCAB)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(128000)
    w.add_eos_token_id(128001)

    rng = np.random.default_rng(1234)
    # one pool of ternary values; each matrix is a window at its own offset, so layers differ
    pool = ((rng.integers(0, 3, size=FFN * HID + (1 << 22), dtype=np.int8) - 1) * 0.05).astype(np.float16)
    plan = [("token_embd.weight", (VOCAB, HID), "emb"), ("output_norm.weight", (HID,), "one")]
    mats = [("attn_q", (HID, HID)), ("attn_k", (KV_HEADS * HEAD_DIM, HID)), ("attn_v", (KV_HEADS * HEAD_DIM, HID)),
            ("attn_output", (HID, HID)), ("ffn_gate", (FFN, HID)), ("ffn_up", (FFN, HID)), ("ffn_down", (HID, FFN))]
    for l in range(LAYERS):
        plan += [(f"blk.{l}.attn_norm.weight", (HID,), "one"), (f"blk.{l}.attn_sub_norm.weight", (HID,), "one"),
                 (f"blk.{l}.ffn_norm.weight", (HID,), "one"), (f"blk.{l}.ffn_sub_norm.weight", (FFN,), "one")]
        plan += [(f"blk.{l}.{n}.weight", s, "tern") for n, s in mats]
    for name, shape, kind in plan:
        dt = np.float32 if kind == "one" else np.float16
        w.add_tensor_info(name, shape, np.dtype(dt), int(np.prod(shape)) * np.dtype(dt).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for k, (name, shape, kind) in enumerate(plan):
        n = int(np.prod(shape))
        if kind == "one":
            t = np.ones(shape, dtype=np.float32)
        elif kind == "emb":
            t = (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float16).reshape(shape)
        else:
            off = (k * 1000003) % (pool.size - n + 1)
            t = pool[off:off + n].reshape(shape)
        w.write_tensor_data(t)
    w.close()


if __name__ == "__main__":
    main()
