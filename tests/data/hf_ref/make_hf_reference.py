#!/usr/bin/env python3
"""Builds the Hugging Face reference fixture for the BitNet b1.58 forward pass (tests/data/hf_ref).

What it makes, in tests/data/hf_ref/model/ (an HF directory like microsoft/bitnet-b1.58-2B-4T-bf16,
only tiny):
  config.json        BitNetConfig: hidden 256, 2 layers, 4 heads / 2 KV heads, head_dim 64,
                     intermediate 288 (not a multiple of 128: exercises K padding of down_proj),
                     tied embeddings, rope_theta 500000, eps 1e-5, and
                     quantization_config {quant_method: bitnet, linear_class: autobitlinear,
                     quantization_mode: online}: the bf16 master weights are ternarized on the
                     fly (absmean) and activations fake-quantized per token (absmax, int8).
  model.safetensors  bf16 master weights (random; norm weights random around 1 so a loader that
                     ignores them fails).
  tokenizer.json     a tiny byte-level BPE (Llama 3 pre-tokenizer regex), trained here with
                     `tokenizers` on this script's own docstrings, plus Llama 3 style specials.
and in tests/data/hf_ref/:
  reference.txt      per prompt: its token ids, transformers' greedy continuation (32 tokens) and
                     the top-1 margin at every position;
  logits.f32         little-endian float32 logits of every prompt position, prompts concatenated.

How transformers runs it (read from transformers/integrations/bitnet.py, v5.23): with
linear_class "autobitlinear" and quantization_mode "online", every nn.Linear except lm_head
becomes AutoBitLinear: forward = F.linear(ActQuant(x), WeightQuant(W)), where WeightQuant is
round(W / mean|W|).clamp(-1, 1) * mean|W| and ActQuant is round(x * 127 / max|x|).clamp(-128, 127)
/ (127 / max|x|), both computed in fp32. The quantizer is applied by from_pretrained, so the
script saves the random model first, then reloads it with the quantization_config. It runs the
reference in float32 (the bf16 masters convert exactly) with eager attention; torch.compile of
the quant functions is disabled (TORCHDYNAMO_DISABLE=1), which changes nothing numerically.

Run:  python3 tests/data/hf_ref/make_hf_reference.py   (needs torch, transformers, tokenizers,
safetensors, numpy; CPU is enough, ~20 s).
"""
import json
import os
import shutil
import sys

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import BitNetConfig, BitNetForCausalLM  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "model")
SEED = 1234
VOCAB = 320
GEN = 32
EMB_STD = float(os.environ.get("EMB_STD", "0.25"))

# The Llama 3 pre-tokenizer split pattern (as published in its tokenizer.json).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]


def build_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [__doc__] * 4 + [build_tokenizer.__doc__ or "", "The quick brown fox jumps over the lazy dog."]
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(SPECIALS)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    return tok


def main():
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)

    tok = build_tokenizer()
    tok.save(os.path.join(OUT, "tokenizer.json"))
    bos, eos, eot = (tok.token_to_id(s) for s in SPECIALS)

    cfg = BitNetConfig(
        vocab_size=VOCAB, hidden_size=256, intermediate_size=288, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=256,
        rms_norm_eps=1e-5, hidden_act="relu2", tie_word_embeddings=True,
        bos_token_id=bos, eos_token_id=[eos, eot],
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )
    model = BitNetForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))       # norms: random around 1
            elif "embed_tokens" in name:
                p.copy_(EMB_STD * torch.randn_like(p))           # embedding (tied lm_head)
            else:
                p.copy_(0.05 * torch.randn_like(p))              # linear masters
    model = model.to(torch.bfloat16)
    model.save_pretrained(OUT, safe_serialization=True)

    # config.json as the published BitNet bf16 checkpoint has it: online quantization, and the
    # older top-level rope_theta beside transformers 5's rope_parameters.
    cpath = os.path.join(OUT, "config.json")
    with open(cpath) as f:
        c = json.load(f)
    c["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                "quantization_mode": "online"}
    c["rope_theta"] = 500000.0
    c["torch_dtype"] = "bfloat16"
    with open(cpath, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)

    ref = BitNetForCausalLM.from_pretrained(OUT, dtype=torch.float32, attn_implementation="eager")
    ref.eval()
    lin = type(ref.model.layers[0].self_attn.q_proj).__name__
    assert lin == "AutoBitLinear" and ref.model.layers[0].self_attn.q_proj.online_quant, lin
    assert type(ref.lm_head).__name__ == "Linear"

    texts = ["The quick brown fox jumps over the lazy dog.",
             "BitNet b1.58 runs with ternary weights and int8 activations on the CPU."]
    prompts = [[bos] + tok.encode(t, add_special_tokens=False).ids for t in texts]
    rng = np.random.default_rng(SEED)
    prompts.append([bos] + [int(v) for v in rng.integers(0, VOCAB, size=39)])  # crosses batches of 16
    prompts.append([int(v) for v in rng.integers(0, VOCAB, size=5)])            # no BOS

    lines = [f"# transformers {__import__('transformers').__version__} torch {torch.__version__}, "
             f"float32, eager attention, AutoBitLinear online; made by make_hf_reference.py",
             f"vocab {VOCAB}", f"prompts {len(prompts)}"]
    all_logits = []
    with torch.no_grad():
        for i, p in enumerate(prompts):
            ids = torch.tensor([p])
            logits = ref(ids).logits[0].float().numpy()                 # [len, vocab]
            all_logits.append(logits.astype("<f4"))
            top2 = np.sort(logits, axis=-1)[:, -2:]
            margin = top2[:, 1] - top2[:, 0]
            out = ref.generate(ids, max_new_tokens=GEN, do_sample=False, eos_token_id=None,
                               pad_token_id=0, min_new_tokens=GEN)
            gen = out[0, len(p):].tolist()
            # margins of the greedy steps, from a full forward over prompt + continuation
            full = ref(out).logits[0].float().numpy()
            t2 = np.sort(full, axis=-1)[:, -2:]
            gmargin = (t2[:, 1] - t2[:, 0])[len(p) - 1:len(p) - 1 + GEN]
            lines.append(f"prompt {i} {len(p)} " + " ".join(map(str, p)))
            lines.append(f"greedy {i} {len(gen)} " + " ".join(map(str, gen)))
            lines.append(f"margin {i} {len(p)} " + " ".join(f"{m:.5f}" for m in margin))
            lines.append(f"greedy_margin {i} {len(gmargin)} " + " ".join(f"{m:.5f}" for m in gmargin))
            lines.append(f"logit_absmax {i} {float(np.abs(logits).max()):.5f}")
    with open(os.path.join(HERE, "reference.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    np.concatenate(all_logits, axis=0).tofile(os.path.join(HERE, "logits.f32"))
    size = sum(os.path.getsize(os.path.join(d, x)) for d in (HERE, OUT) for x in os.listdir(d)
               if os.path.isfile(os.path.join(d, x)))
    print(f"wrote {OUT} and reference.txt / logits.f32 ({size / 1e6:.2f} MB in all)", file=sys.stderr)


if __name__ == "__main__":
    main()
