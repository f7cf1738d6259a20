#!/usr/bin/env python3
"""Makes the tiny model fixtures in tests/data/models with writers nobody on this project wrote:
llama.cpp's gguf-py (PyPI `gguf`, its GGUFWriter and its own TQ1_0/TQ2_0 quantizers), the
`safetensors` package, and Hugging Face `tokenizers` for a small real byte-level BPE vocabulary.

Requirements: pip install gguf==0.19.0 numpy safetensors tokenizers ml_dtypes
Run: python3 tests/data/models/gen_fixtures.py   (rewrites the fixtures next to this file)

Two random BitNet-shaped models (seeded, so the output is reproducible):
  T ("ternary", dim 256, ffn 512, 2 layers, heads 4 / kv 2, K multiples of 256 for TQ types)
      i2s.gguf   official layout: arch bitnet-b1.58, I2_S (type 36) + f32 scale, F16 token_embd,
                 F32 norms, no tokenizer.ggml.pre (like Microsoft's file)
      tq2_0.gguf TQ2_0 linear weights quantized by gguf-py (pre = llama-bpe)
      tq1_0.gguf TQ1_0 linear weights quantized by gguf-py
      hf_packed/ HF packed uint8 [out/4, in] + weight_scale (autobitlinear), bf16 norms and
                 embedding, sharded in two safetensors files with model.safetensors.index.json
  M ("master", dim 128, ffn 256, 2 layers, heads 4 / kv 2): float master weights
      f16.gguf   F16 linear weights (the loader ternarizes with absmean)
      hf_bf16/   HF bf16 master weights in one model.safetensors
  bitnet25.gguf  the older published variant: arch "bitnet-25" (every key prefixed with it),
                 I2_S, one layer (dim 128, ffn 256, heads 2 / kv 1)
Seed corpora for tests/fuzz/corpus_* are written too (tiny I2_S and F16 GGUFs, a small
safetensors file, the tokenizer.json).

expected.json holds, per fixture, what a loader must produce, computed here with numpy:
for each ternary matrix the FNV-1a 64 hash of its ternary values (t + 1 as bytes, row-major
[out][in]), the counts of -1/0/+1 and gamma as float32 bits; FNV-1a 64 of every norm and of the
embedding as little-endian float32 values. I2_S is not in gguf-py's type enum, so its tensor bytes
are made here from the published layout (128-weight blocks of 32 bytes, weight g of a block in
bits 7..6 of byte g, g+32 in bits 5..4, g+64 in 3..2, g+96 in 1..0; codes 0/1/2 = -1/0/+1; then
the f32 scale and padding to 32 bytes) and handed to GGUFWriter as raw bytes with type id 36.
"""
import json
import os
import struct

import gguf
import ml_dtypes
import numpy as np
import safetensors.numpy as stn
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ARCH = "bitnet-b1.58"
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
CHAT_TEMPLATE = ("{% for message in messages %}{% set content = message['role'] | capitalize + "
                 "': ' + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
                 "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}")
TEXT = """BitNet b1.58 stores every weight of its linear layers as -1, 0 or +1 with one scale per
matrix, and quantizes activations to eight bits per token. The model has thirty layers, a hidden
size of 2560 and a vocabulary of 128256 tokens. User: How are you? Assistant: I am fine, thanks!
def read_file(path): return open(path).read()  # numbers 12345 and 3.14159, emoji-free text.
The quick brown fox jumps over the lazy dog. Ternary weights make matrix products cheap."""


def fnv64(data: bytes) -> str:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return "%016x" % h


def f32bits(x) -> int:
    return struct.unpack("<I", struct.pack("<f", float(np.float32(x))))[0]


def make_tokenizer():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([TEXT] * 4, trainer)
    tok.add_special_tokens(SPECIALS)
    return tok


def tokenizer_tables(tok):
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    for a in j["added_tokens"]:
        vocab[a["content"]] = a["id"]
    n = max(vocab.values()) + 1
    tokens = [None] * n
    for s, i in vocab.items():
        tokens[i] = s
    assert all(t is not None for t in tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    types = [3 if t in SPECIALS else 1 for t in tokens]
    return tokens, types, merges


def save_hf_tokenizer(tok, d):
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                   "chat_template": CHAT_TEMPLATE, "model_max_length": 4096}, f, indent=1)


# ---- models ------------------------------------------------------------------------------------

def shapes(cfg):
    d, f = cfg["dim"], cfg["ffn"]
    hd = d // cfg["heads"]
    qd, kvd = cfg["heads"] * hd, cfg["kv_heads"] * hd
    return {"wq": (qd, d), "wk": (kvd, d), "wv": (kvd, d), "wo": (d, qd),
            "w_gate": (f, d), "w_up": (f, d), "w_down": (d, f)}


GGUF_MAT = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
            "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down"}
HF_MAT = {"wq": "self_attn.q_proj", "wk": "self_attn.k_proj", "wv": "self_attn.v_proj",
          "wo": "self_attn.o_proj", "w_gate": "mlp.gate_proj", "w_up": "mlp.up_proj",
          "w_down": "mlp.down_proj"}
GGUF_NORM = {"attn_norm": "attn_norm", "attn_sub_norm": "attn_sub_norm", "ffn_norm": "ffn_norm",
             "ffn_sub_norm": "ffn_sub_norm"}
HF_NORM = {"attn_norm": "input_layernorm", "attn_sub_norm": "self_attn.attn_sub_norm",
           "ffn_norm": "post_attention_layernorm", "ffn_sub_norm": "mlp.ffn_sub_norm"}


def random_model(cfg, vocab, seed):
    rng = np.random.default_rng(seed)
    d, f = cfg["dim"], cfg["ffn"]
    m = {"embd": rng.normal(0, 1.0, (vocab, d)).astype(np.float32),
         "output_norm": rng.uniform(0.5, 1.5, d).astype(np.float32), "layers": []}
    for _ in range(cfg["layers"]):
        lw = {}
        for k, (o, i) in shapes(cfg).items():
            lw[k] = rng.normal(0, 0.02, (o, i)).astype(np.float32)
        for k in GGUF_NORM:
            lw[k] = rng.uniform(0.5, 1.5, f if k == "ffn_sub_norm" else d).astype(np.float32)
        m["layers"].append(lw)
    return m


def absmean(w32):
    """Ternarize like the loader: gamma = mean|W| (double sum, one rounding), t = rint(W * (1/gamma))."""
    gamma = np.float32(np.mean(np.abs(w32.astype(np.float64))))
    gamma = max(gamma, np.float32(1e-5))
    s = np.float32(1.0) / gamma
    t = np.clip(np.rint(w32 * s), -1, 1).astype(np.int8)
    return t, np.float32(gamma)


def i2s_bytes(t):
    """Published I2_S layout of an int8 ternary matrix [n][k] (k % 128 == 0) + f32 scale slot."""
    n, k = t.shape
    codes = (t.astype(np.int16) + 1).astype(np.uint8).reshape(n, k // 128, 4, 32)
    packed = (codes[:, :, 0, :] << 6) | (codes[:, :, 1, :] << 4) | (codes[:, :, 2, :] << 2) | codes[:, :, 3, :]
    return packed.reshape(-1)


def hf_pack(t):
    """transformers' BitNet packing: packed[r][k] bit pair i = code of row r + i*n/4."""
    n, k = t.shape
    q = n // 4
    codes = (t.astype(np.int16) + 1).astype(np.uint8)
    out = np.zeros((q, k), np.uint8)
    for i in range(4):
        out |= codes[i * q:(i + 1) * q] << (2 * i)
    return out


def expect_mat(t, gamma):
    return {"fnv": fnv64((t.astype(np.int16) + 1).astype(np.uint8).tobytes()),
            "neg": int((t == -1).sum()), "zero": int((t == 0).sum()), "pos": int((t == 1).sum()),
            "gamma_bits": f32bits(gamma), "gamma": float(gamma)}


def random_kquant(qt, n_blocks, seed):
    """Random but well-formed Q4_K / Q6_K blocks: random codes and sub-scales, small f16 d."""
    rng = np.random.default_rng(seed)
    if qt == gguf.GGMLQuantizationType.Q4_K:
        b = rng.integers(0, 256, (n_blocks, 144), dtype=np.uint8)
        b[:, 0:2] = rng.uniform(0.001, 0.02, (n_blocks, 1)).astype(np.float16).view(np.uint8)
        b[:, 2:4] = rng.uniform(0.001, 0.02, (n_blocks, 1)).astype(np.float16).view(np.uint8)
    else:
        b = rng.integers(0, 256, (n_blocks, 210), dtype=np.uint8)
        b[:, 208:210] = rng.uniform(0.0005, 0.005, (n_blocks, 1)).astype(np.float16).view(np.uint8)
    return b.reshape(-1)


def expect_vec(v):
    return fnv64(np.asarray(v, dtype="<f4").tobytes())


def gguf_common(w, cfg, vocab, tokens, types, merges, name, pre, arch=ARCH):
    ARCH = arch  # noqa: N806 (the key prefix is the architecture name)
    w.add_name(name)
    w.add_uint32(f"{ARCH}.vocab_size", vocab)
    w.add_uint32(f"{ARCH}.context_length", 4096)
    w.add_uint32(f"{ARCH}.embedding_length", cfg["dim"])
    w.add_uint32(f"{ARCH}.block_count", cfg["layers"])
    w.add_uint32(f"{ARCH}.feed_forward_length", cfg["ffn"])
    w.add_uint32(f"{ARCH}.rope.dimension_count", cfg["dim"] // cfg["heads"])
    w.add_uint32(f"{ARCH}.attention.head_count", cfg["heads"])
    w.add_uint32(f"{ARCH}.attention.head_count_kv", cfg["kv_heads"])
    w.add_float32(f"{ARCH}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32(f"{ARCH}.rope.freq_base", 500000.0)
    w.add_uint32("general.file_type", 40)
    w.add_tokenizer_model("gpt2")
    if pre:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|begin_of_text|>"))
    w.add_eos_token_id(tokens.index("<|end_of_text|>"))
    w.add_add_bos_token(True)


def write_gguf(path, model, cfg, vocab, tok_tables, kind, expected, arch=ARCH):
    tokens, types, merges = tok_tables
    w = gguf.GGUFWriter(path, arch)
    gguf_common(w, cfg, vocab, tokens, types, merges, "fixture-" + kind,
                None if kind == "i2s" else "llama-bpe", arch)
    exp = {"format": "gguf", "cfg": cfg, "vocab": vocab, "mats": {}, "norms": {}}
    if kind in ("tq2_0", "tq1_0"):
        # llama-quantize usually leaves the embedding in a k-quant: Q4_K in one file, Q6_K in the
        # other. gguf-py has no k-quant quantizer, so the blocks are random (with sane scales)
        # and the expected values are gguf-py's own dequantization, rounded to f16.
        qt = gguf.GGMLQuantizationType.Q4_K if kind == "tq2_0" else gguf.GGMLQuantizationType.Q6_K
        blob = random_kquant(qt, vocab * cfg["dim"] // 256, 77 if kind == "tq2_0" else 78)
        qbytes = blob.reshape(vocab, -1)
        w.add_tensor("token_embd.weight", qbytes, raw_dtype=qt)
        deq = gguf.quants.dequantize(qbytes, qt).astype(np.float16)
        exp["embd"] = expect_vec(deq.astype(np.float32))
    else:
        emb16 = model["embd"].astype(np.float16)
        w.add_tensor("token_embd.weight", emb16)
        exp["embd"] = expect_vec(emb16.astype(np.float32))
    if kind == "f16":
        # an untied lm_head, as Q8_0 quantized by gguf-py
        out = np.random.default_rng(79).normal(0, 1.0, (vocab, cfg["dim"])).astype(np.float32)
        q = gguf.quants.quantize(out, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor("output.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        deq = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0).astype(np.float16)
        exp["output"] = expect_vec(deq.astype(np.float32))
    w.add_tensor("output_norm.weight", model["output_norm"])
    exp["norms"]["output_norm"] = expect_vec(model["output_norm"])
    for li, lw in enumerate(model["layers"]):
        for k, gname in GGUF_NORM.items():
            w.add_tensor(f"blk.{li}.{gname}.weight", lw[k])
            exp["norms"][f"{li}.{k}"] = expect_vec(lw[k])
        for k, gname in GGUF_MAT.items():
            name = f"blk.{li}.{gname}.weight"
            t, gamma = absmean(lw[k])
            if kind == "i2s":
                blob = np.concatenate([i2s_bytes(t), np.frombuffer(struct.pack("<f", gamma), np.uint8),
                                       np.zeros(28, np.uint8)])
                w.add_tensor(name, blob.view(np.int8), raw_shape=t.shape, raw_dtype=36)
                exp["mats"][f"{li}.{k}"] = expect_mat(t, gamma)
            elif kind in ("tq2_0", "tq1_0"):
                qt = gguf.GGMLQuantizationType.TQ2_0 if kind == "tq2_0" else gguf.GGMLQuantizationType.TQ1_0
                deq = (t.astype(np.float32) * gamma).astype(np.float32)
                q = gguf.quants.quantize(deq, qt)
                w.add_tensor(name, q, raw_dtype=qt)
                back = gguf.quants.dequantize(q, qt)  # gguf-py's own reading of what it wrote
                g16 = np.float32(np.float16(gamma))
                t_back = np.rint(back / g16).astype(np.int8)
                assert np.array_equal(t_back, t), "gguf-py round trip changed ternary codes"
                exp["mats"][f"{li}.{k}"] = expect_mat(t, g16)
            elif kind == "f16":
                w16 = lw[k].astype(np.float16)
                w.add_tensor(name, w16)
                t16, g = absmean(w16.astype(np.float32))
                exp["mats"][f"{li}.{k}"] = expect_mat(t16, g)
    w.add_chat_template(CHAT_TEMPLATE)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    expected[os.path.basename(path)] = exp


def hf_config(cfg, vocab, packed):
    c = {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_act": "relu2",
         "hidden_size": cfg["dim"], "intermediate_size": cfg["ffn"], "num_hidden_layers": cfg["layers"],
         "num_attention_heads": cfg["heads"], "num_key_value_heads": cfg["kv_heads"],
         "vocab_size": vocab, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
         "rope_theta": 500000.0, "tie_word_embeddings": True, "bos_token_id": 0,
         "eos_token_id": [1, 4]}
    if packed:
        c["torch_dtype"] = "bfloat16"
        c["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                    "quantization_mode": "offline"}
    else:
        c["dtype"] = "bfloat16"  # newer transformers spell it "dtype"
    return c


def write_hf(d, model, cfg, vocab, tok, packed, expected):
    os.makedirs(d, exist_ok=True)
    bf = ml_dtypes.bfloat16
    ids = {t: i for i, t in enumerate(tokenizer_tables(tok)[0])}
    c = hf_config(cfg, vocab, packed)
    c["bos_token_id"] = ids["<|begin_of_text|>"]
    c["eos_token_id"] = [ids["<|end_of_text|>"], ids["<|eot_id|>"]]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    save_hf_tokenizer(tok, d)
    exp = {"format": "hf", "cfg": cfg, "vocab": vocab, "mats": {}, "norms": {}}
    tensors = {}
    embd = model["embd"].astype(bf)
    tensors["model.embed_tokens.weight"] = embd
    exp["embd"] = expect_vec(embd.astype(np.float32))
    on = model["output_norm"].astype(bf)
    tensors["model.norm.weight"] = on
    exp["norms"]["output_norm"] = expect_vec(on.astype(np.float32))
    for li, lw in enumerate(model["layers"]):
        for k, hname in HF_NORM.items():
            v = lw[k].astype(bf)
            tensors[f"model.layers.{li}.{hname}.weight"] = v
            exp["norms"][f"{li}.{k}"] = expect_vec(v.astype(np.float32))
        for k, hname in HF_MAT.items():
            base = f"model.layers.{li}.{hname}"
            wb = lw[k].astype(bf)
            if packed:  # the same ternary matrix as the GGUF fixtures (made from the f32 weights)
                t, gamma = absmean(lw[k])
                tensors[base + ".weight"] = hf_pack(t)
                ws = np.array([gamma], np.float32).astype(bf)
                tensors[base + ".weight_scale"] = ws
                exp["mats"][f"{li}.{k}"] = expect_mat(t, ws.astype(np.float32)[0])
            else:
                tensors[base + ".weight"] = wb
                t, gamma = absmean(wb.astype(np.float32))
                exp["mats"][f"{li}.{k}"] = expect_mat(t, gamma)
    if packed:  # two shards + index, as transformers' save_pretrained writes for big models
        names = list(tensors)
        half = len(names) // 2
        shards = {"model-00001-of-00002.safetensors": names[:half],
                  "model-00002-of-00002.safetensors": names[half:]}
        wm = {}
        for fn, ns in shards.items():
            stn.save_file({n: tensors[n] for n in ns}, os.path.join(d, fn), metadata={"format": "pt"})
            wm.update({n: fn for n in ns})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": int(sum(t.nbytes for t in tensors.values()))},
                       "weight_map": wm}, f, indent=1)
    else:
        stn.save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    expected[os.path.basename(d)] = exp


def main():
    tok = make_tokenizer()
    tables = tokenizer_tables(tok)
    vocab = len(tables[0])
    cfg_t = {"dim": 256, "ffn": 512, "layers": 2, "heads": 4, "kv_heads": 2}
    cfg_m = {"dim": 128, "ffn": 256, "layers": 2, "heads": 4, "kv_heads": 2}
    mt = random_model(cfg_t, vocab, 1234)
    mm = random_model(cfg_m, vocab, 5678)
    expected = {}
    for kind in ("i2s", "tq2_0", "tq1_0"):
        write_gguf(os.path.join(HERE, kind + ".gguf"), mt, cfg_t, vocab, tables, kind, expected)
    write_gguf(os.path.join(HERE, "f16.gguf"), mm, cfg_m, vocab, tables, "f16", expected)
    # the older published variant: arch "bitnet-25" (keys prefixed with it), one small layer
    cfg_o = {"dim": 128, "ffn": 256, "layers": 1, "heads": 2, "kv_heads": 1}
    write_gguf(os.path.join(HERE, "bitnet25.gguf"), random_model(cfg_o, vocab, 91), cfg_o, vocab,
               tables, "i2s", expected, arch="bitnet-25")
    write_hf(os.path.join(HERE, "hf_packed"), mt, cfg_t, vocab, tok, True, expected)
    write_hf(os.path.join(HERE, "hf_bf16"), mm, cfg_m, vocab, tok, False, expected)
    ids = {t: i for i, t in enumerate(tables[0])}
    expected["_tokenizer"] = {"n_tokens": vocab, "bos": ids["<|begin_of_text|>"],
                              "eos": ids["<|end_of_text|>"], "eot": ids["<|eot_id|>"],
                              "n_merges": len(tables[2]),
                              "hello_ids": tok.encode("Hello world", add_special_tokens=False).ids}
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)

    # Seed corpora for the libFuzzer targets (tests/fuzz): the same writers, smaller models.
    fz = os.path.join(HERE, "..", "..", "fuzz")
    for sub in ("corpus_gguf", "corpus_safetensors", "corpus_tokenizer"):
        os.makedirs(os.path.join(fz, sub), exist_ok=True)
    cfg_s = {"dim": 128, "ffn": 128, "layers": 1, "heads": 2, "kv_heads": 1}
    cfg_f = {"dim": 64, "ffn": 64, "layers": 1, "heads": 2, "kv_heads": 1}
    ms, mf = random_model(cfg_s, vocab, 42), random_model(cfg_f, vocab, 43)
    junk = {}
    write_gguf(os.path.join(fz, "corpus_gguf", "tiny_i2s.gguf"), ms, cfg_s, vocab, tables, "i2s", junk)
    write_gguf(os.path.join(fz, "corpus_gguf", "tiny_f16.gguf"), mf, cfg_f, vocab, tables, "f16", junk)
    stn.save_file({"model.norm.weight": mf["output_norm"].astype(ml_dtypes.bfloat16),
                   "w.weight": hf_pack(absmean(mf["layers"][0]["wq"])[0]),
                   "w.weight_scale": np.array([0.5], np.float32)},
                  os.path.join(fz, "corpus_safetensors", "small.safetensors"), metadata={"format": "pt"})
    tok.save(os.path.join(fz, "corpus_tokenizer", "tokenizer.json"))
    for root in (HERE, fz):  # safetensors writes 0600; fixtures are ordinary files
        for d, _, files in os.walk(root):
            for fn in files:
                if not fn.endswith((".sh", ".c", ".py")):
                    os.chmod(os.path.join(d, fn), 0o644)


if __name__ == "__main__":
    main()
