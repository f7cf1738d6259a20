#!/usr/bin/env python3
"""The grid oracle: random BitNet b1.58 models built with Hugging Face transformers' own classes
(BitNetConfig / BitNetForCausalLM and its BitNet quantization), saved as HF folders, and
transformers' float32 logits recorded as KL-divergence base files (write_kl_base.py's format).
test_grid_oracle (tests/oracle/oracle.cmake) runs bitnet-chat's engine on every folder and compares.

    python3 tests/oracle/make_grid.py [OUT_DIR]      (default tests/data/grid; ~1 min on CPU)
    python3 tests/oracle/make_grid.py OUT --init default --only g1   (investigation variants)

The grid (GRID below) covers GQA ratios 1-5, head_dim 64 and 128, rope theta 1e4 and 5e5,
contexts 64-256, 2-4 layers, tied and untied heads, and both checkpoint forms:
  online   bf16 master weights, quantization_config {linear_class autobitlinear,
           quantization_mode online}: transformers ternarizes on the fly (absmean) and
           fake-quantizes activations per token (absmax int8), all in fp32;
  offline  packed uint8 weights (4 ternary rows per byte row) + weight_scale, made here from the
           same absmean ternarization: autobitlinear (weight_scale = gamma, multiplies) or
           bitlinear (weight_scale = 1/gamma, divides).
config.json is written by transformers 5 (rope_theta only inside rope_parameters).

Weights: transformers' default init (normal, std 0.02; norms 1) gives nearly flat output
distributions whose top-2 logits are often within 1e-3 of each other, so the top-1 token
there is decided by float noise, not by the model. The grid uses "peaked" weights instead:
norms 1 + 0.2 N(0,1), embedding 0.25 N(0,1), linear masters 0.05 N(0,1) (as tests/data/hf_ref).
--init default builds the flat kind for the README's measurement.

The tokens scored are random (uniform over the 256 byte tokens) with BOS first: the models
are random, so text would mean nothing to them. Needs torch, transformers, accelerate,
tokenizers, safetensors, numpy.
"""
import argparse
import json
import os
import shutil
import sys

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import BitNetConfig, BitNetForCausalLM  # noqa: E402
from transformers.integrations.bitnet import pack_weights  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from write_kl_base import write_base  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
VOCAB = 256 + len(SPECIALS)
EMB_STD = float(os.environ.get("GRID_EMB_STD", "0.1"))

# name: heads, kv heads, head_dim, layers, ffn, theta, ctx, chunks, form, linear class, tied
GRID = {
    "g1": (1, 1, 128, 2, 128, 1e4, 64, 4, "online", "autobitlinear", True),
    "g2": (3, 1, 64, 2, 128, 5e5, 256, 1, "online", "autobitlinear", True),
    "g3": (2, 1, 128, 2, 128, 1e4, 128, 2, "offline", "autobitlinear", False),
    "g4": (4, 1, 64, 3, 128, 1e4, 128, 2, "offline", "autobitlinear", True),
    "g5": (5, 1, 64, 2, 128, 5e5, 256, 1, "offline", "autobitlinear", True),
    "g6": (2, 2, 128, 4, 128, 5e5, 64, 4, "offline", "bitlinear", False),
    "g7": (2, 1, 64, 3, 192, 5e5, 128, 2, "online", "autobitlinear", True),
}


def build_tokenizer():
    """A byte-level BPE with no merges: 256 byte tokens and three Llama 3 style specials."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=256, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(["abc"], trainer=trainer)
    tok.add_special_tokens(SPECIALS)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    return tok


def absmean_ternary(w):
    """transformers' WeightQuant in fp32: t = clamp(round(w / mean|w|)), gamma = mean|w|."""
    w = w.float()
    scale = 1.0 / w.abs().mean().clamp(min=1e-5)
    return (w * scale).round().clamp(-1, 1), 1.0 / scale


def make_model(out, spec, seed, init):
    heads, kv, hd, layers, ffn, theta, ctx, chunks, form, lclass, tied = spec
    torch.manual_seed(seed)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    tok = build_tokenizer()
    tok.save(os.path.join(out, "tokenizer.json"))
    bos, eos, eot = (tok.token_to_id(s) for s in SPECIALS)
    cfg = BitNetConfig(
        vocab_size=VOCAB, hidden_size=heads * hd, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, head_dim=hd, max_position_embeddings=ctx,
        rms_norm_eps=1e-5, hidden_act="relu2", tie_word_embeddings=tied, bos_token_id=bos,
        eos_token_id=[eos, eot], rope_parameters={"rope_type": "default", "rope_theta": theta},
    )
    model = BitNetForCausalLM(cfg)
    if init == "peaked":
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                elif "embed_tokens" in name or "lm_head" in name:
                    p.copy_(EMB_STD * torch.randn_like(p))
                else:
                    p.copy_(0.05 * torch.randn_like(p))
    model = model.to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    qc = {"quant_method": "bitnet", "linear_class": lclass, "quantization_mode": form}
    if form == "offline":
        # the same absmean ternarization transformers does online, stored packed
        path = os.path.join(out, "model.safetensors")
        sd = load_file(path)
        packed = {}
        for k, v in sd.items():
            if k.endswith(".weight") and v.dim() == 2 and ("self_attn" in k or "mlp" in k):
                t, gamma = absmean_ternary(v)
                packed[k] = pack_weights(t.to(torch.int8))
                ws = gamma if lclass == "autobitlinear" else 1.0 / gamma
                packed[k[:-len(".weight")] + ".weight_scale"] = ws.reshape(1).to(torch.bfloat16)
            else:
                packed[k] = v
        save_file(packed, path, metadata={"format": "pt"})
    cpath = os.path.join(out, "config.json")
    with open(cpath) as f:
        c = json.load(f)
    c["quantization_config"] = qc
    with open(cpath, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
    return bos


def reference(out, spec, bos, seed, base_path):
    heads, kv, hd, layers, ffn, theta, ctx, chunks, form, lclass, tied = spec
    ref = BitNetForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    # transformers 5.25 keeps the deserialized offline weights and scales in the checkpoint's
    # bf16 (and BitLinear unpacks to its own .dtype), which would run those matmuls in bf16:
    # the values are ternary and bf16 scales, exact in fp32, so run everything in fp32.
    for mod in ref.modules():
        for n, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
            if t.is_floating_point() and t.dtype != torch.float32:
                t.data = t.data.float()
        if type(mod).__name__ == "BitLinear":
            mod.dtype = torch.float32
    lin = type(ref.model.layers[0].self_attn.q_proj).__name__
    want = "AutoBitLinear" if lclass == "autobitlinear" else "BitLinear"
    assert lin == want, (lin, want)
    assert type(ref.lm_head).__name__ == "Linear"
    rng = np.random.default_rng(seed)
    toks = [[bos] + [int(t) for t in rng.integers(0, 256, size=ctx - 1)] for _ in range(chunks)]

    def logits_of(ch):
        with torch.no_grad():
            return ref(torch.tensor([ch])).logits[0].float().numpy()

    write_base(base_path, VOCAB, toks, logits_of)


def main():
    ap = argparse.ArgumentParser(description="grid oracle fixtures")
    ap.add_argument("out", nargs="?", default=os.path.join(HERE, "..", "data", "grid"))
    ap.add_argument("--init", choices=["peaked", "default"], default="peaked")
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    names = [n for n in GRID if not a.only or n in a.only.split(",")]
    os.makedirs(a.out, exist_ok=True)
    for i, name in enumerate(names):
        spec = GRID[name]
        d = os.path.join(a.out, name)
        bos = make_model(d, spec, a.seed + i, a.init)
        reference(d, spec, bos, a.seed + 100 + i, os.path.join(d, "base.kl"))
        # generation_config.json says nothing the engine reads: leave it out of the fixture
        gc = os.path.join(d, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        print(f"{name}: {spec} -> {size / 1e3:.0f} kB", file=sys.stderr)
    with open(os.path.join(a.out, "README.md"), "w") as f:
        f.write("Made by tests/oracle/make_grid.py with transformers "
                f"{__import__('transformers').__version__}, torch {torch.__version__} "
                f"(init {a.init}, seed {a.seed}). Each folder: an HF model (config.json, "
                "model.safetensors, tokenizer.json) and base.kl, transformers' float32 logits "
                "for random tokens (format: app/perplexity.h).\n")


if __name__ == "__main__":
    main()
