#!/usr/bin/env python3
"""Writes the seed inputs of fuzz_hf_folder (tests/fuzz/corpus_hf_folder/): a tiny BitNet model
(1 layer, hidden 8, 2/1 heads, ffn 16, vocab 305) as one Hugging Face folder packed into one
input (see fuzz_hf_folder.c for the layout). Two seeds: bf16 master weights in a single
model.safetensors, and packed uint8 weights with weight_scale in two indexed shards.
Standard library only; the tokenizer files are the test fixture's (tests/data/models/hf_bf16)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "data", "models", "hf_bf16")
OUT = os.path.join(HERE, "corpus_hf_folder")
SEP = b"\n%%FILE%%\n"
D, F, H, KV, V, L = 8, 16, 2, 1, 305, 1
HD = D // H


def bf16(x):
    return struct.pack("<I", struct.unpack("<I", struct.pack("<f", x))[0])[2:]


def values(n, seed):
    # a small deterministic sequence in [-1, 1)
    out, s = [], seed
    for _ in range(n):
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        out.append((s % 2000) / 1000.0 - 1.0)
    return out


def safetensors(tensors):
    header, blob = {}, b""
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def model_tensors(packed):
    t, seed = [], 1
    t.append(("model.embed_tokens.weight", "BF16", [V, D], b"".join(bf16(v) for v in values(V * D, 7))))
    t.append(("model.norm.weight", "BF16", [D], bf16(1.0) * D))
    mats = [("self_attn.q_proj", H * HD, D), ("self_attn.k_proj", KV * HD, D), ("self_attn.v_proj", KV * HD, D),
            ("self_attn.o_proj", D, H * HD), ("mlp.gate_proj", F, D), ("mlp.up_proj", F, D),
            ("mlp.down_proj", D, F)]
    for l in range(L):
        p = "model.layers.%d." % l
        for n, size in (("input_layernorm", D), ("self_attn.attn_sub_norm", D),
                        ("post_attention_layernorm", D), ("mlp.ffn_sub_norm", F)):
            t.append((p + n + ".weight", "BF16", [size], bf16(1.0) * size))
        for n, o, i in mats:
            seed += 1
            if packed:
                codes = bytes((v * 97 + 13) % 256 for v in range(o // 4 * i))
                t.append((p + n + ".weight", "U8", [o // 4, i], codes))
                t.append((p + n + ".weight_scale", "BF16", [], bf16(0.5)))
            else:
                t.append((p + n + ".weight", "BF16", [o, i], b"".join(bf16(v) for v in values(o * i, seed))))
    return t


def config():
    return json.dumps({"model_type": "bitnet", "hidden_act": "relu2", "hidden_size": D,
                       "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
                       "num_key_value_heads": KV, "vocab_size": V, "max_position_embeddings": 64,
                       "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
                       "bos_token_id": 300, "eos_token_id": [301, 304]}, indent=1).encode()


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = open(os.path.join(FIX, "tokenizer.json"), "rb").read()
    tcfg = open(os.path.join(FIX, "tokenizer_config.json"), "rb").read()
    single = SEP.join([config(), tok, tcfg, b"", safetensors(model_tensors(False))])
    open(os.path.join(OUT, "bf16_single.bin"), "wb").write(single)
    t = model_tensors(True)
    half = len(t) // 2
    shards = [t[:half], t[half:]]
    names = ["model-%05d-of-00002.safetensors" % (k + 1) for k in range(2)]
    index = {"metadata": {}, "weight_map": {n: names[k] for k in range(2) for n, _, _, _ in shards[k]}}
    packed = SEP.join([config(), tok, tcfg, json.dumps(index, indent=1).encode()] +
                      [safetensors(s) for s in shards])
    open(os.path.join(OUT, "packed_shards.bin"), "wb").write(packed)


if __name__ == "__main__":
    main()
