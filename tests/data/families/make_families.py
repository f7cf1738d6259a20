#!/usr/bin/env python3
"""Builds the reference fixtures of the BitNet model families (tests/data/families).

For each family a tiny random model is written as the Hugging Face folder its published
checkpoints are, and run by transformers' own classes to record what the C engine must match:

  llama3/   Llama3-8B-1.58 style: LlamaForCausalLM, model_type "llama", hidden 256, 2 layers,
            4 heads / 2 KV heads (head_dim 64), intermediate 288 (not a multiple of 128: K
            padding of down_proj), untied lm_head, rope_theta 500000.0, eps 1e-5,
            quantization_config {quant_method: bitnet, modules_to_not_convert: null} and a
            Llama 3 header chat template.
  falcon3/  Falcon3-*-1.58bit style: the same class with head_dim 256 stated in the config
            (hidden 512, 2 heads / 1 KV head), intermediate 384, rope_theta 1000042 written as an
            integer, eps 1e-6, modules_to_not_convert ["lm_head"], eos <|endoftext|>, the
            Falcon3 <|system|>/<|user|>/<|assistant|> template.
  chatml/   a tokenizer folder only, with a ChatML (<|im_start|> ... <|im_end|>) template, the
            form reported for Falcon-E: checks the C rendering against transformers'.

The linears are stored as transformers' BitLinear expects a packed checkpoint: `weight` uint8
[N/4, K] (2-bit codes in four bands of N/4 rows, integrations/bitnet.py pack_weights) and
`weight_scale` bf16 [1] = 1 / mean|W| (the forward divides by it). Embedding, lm_head and norms
are bf16. transformers loads the folder with its BitNet quantizer (BitLinear: unpack, per-token
absmax int8 activations, y = (x_q . t) / (s_x * weight_scale)) and runs it in float32 with eager
attention.

Recorded beside each model (reference.txt, logits.f32), as tests/data/hf_ref does for 2B-4T:
every prompt's token ids, transformers' logits at every position, its 32-token greedy
continuation, the top-1 margins; then `chat` (the ids of a fixed conversation from
tokenizer.apply_chat_template with the generation prompt) and `ppl` (perplexity of a token
stream by app/perplexity.h's method: chunks of n_ctx tokens, the first set to BOS when there is
one, the second half of each chunk scored).

Run:  python3 tests/data/families/make_families.py  (needs torch, transformers >= 5, accelerate,
tokenizers, safetensors, numpy; CPU is enough, ~30 s).
"""
import json
import math
import os
import shutil
import sys

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from transformers.integrations.bitnet import pack_weights  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = 32
PPL_CTX = 32

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The chat formats, written here from their descriptions (research/model-family.md).
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# (a newline right after a block tag is dropped by transformers' Jinja settings: trim_blocks)
FALCON3_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% if not loop.last %}{{ '\\n' }}{% endif %}"
    "{% else %}{{ '\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is a ternary weight?"},
    {"role": "assistant", "content": "One of -1, 0 or +1, times a scale."},
    {"role": "user", "content": "And the activations?"},
]

FAMILIES = {
    "llama3": dict(
        vocab=384, specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                             "<|end_header_id|>", "<|eot_id|>"],
        bos="<|begin_of_text|>", eos="<|eot_id|>", template=LLAMA3_TEMPLATE,
        cfg=dict(hidden_size=256, intermediate_size=288, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                 max_position_embeddings=256),
        theta=500000.0, not_convert=None, seed=2024),
    "falcon3": dict(
        vocab=400, specials=["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|pad|>"],
        bos=None, eos="<|endoftext|>", template=FALCON3_TEMPLATE,
        cfg=dict(hidden_size=512, intermediate_size=384, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=256, rms_norm_eps=1e-6,
                 max_position_embeddings=256),
        theta=1000042, not_convert=["lm_head"], seed=3030),
    "chatml": dict(
        vocab=360, specials=["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"],
        bos="<|begin_of_text|>", eos="<|im_end|>", template=CHATML_TEMPLATE, cfg=None),
}


def build_tokenizer(vocab, specials):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab - len(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    corpus = [__doc__] * 4 + [m["content"] for m in CONVERSATION] + ["system user assistant"] * 4
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(specials)
    assert tok.get_vocab_size() == vocab, tok.get_vocab_size()
    return tok


def write_tokenizer(out, fam):
    tok = build_tokenizer(fam["vocab"], fam["specials"])
    tok.save(os.path.join(out, "tokenizer.json"))
    tc = {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": fam["template"],
          "bos_token": fam["bos"], "eos_token": fam["eos"], "add_bos_token": fam["bos"] is not None,
          "model_max_length": 256, "clean_up_tokenization_spaces": False}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
    hf_tok = PreTrainedTokenizerFast.from_pretrained(out)
    return tok, hf_tok


def chat_ids(hf_tok):
    ids = hf_tok.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    text = hf_tok.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    return [int(i) for i in ids], text


def ternary_packed(w):
    """BitLinear's checkpoint form of a float matrix: packed codes and 1 / mean|W|."""
    inv = 1.0 / w.abs().mean().clamp(min=1e-5)
    t = (w * inv).round().clamp(-1, 1)
    scale = inv.to(torch.bfloat16).float()  # what the file keeps
    return pack_weights(t.clone()), scale.reshape(1).to(torch.bfloat16)


def make_model(name, fam):
    out = os.path.join(HERE, name)
    torch.manual_seed(fam["seed"])
    tok, hf_tok = write_tokenizer(out, fam)
    specials = {s: tok.token_to_id(s) for s in fam["specials"]}
    bos = specials.get(fam["bos"]) if fam["bos"] else None
    eos = specials[fam["eos"]]
    cfg = LlamaConfig(vocab_size=fam["vocab"], hidden_act="silu", tie_word_embeddings=False,
                      bos_token_id=bos, eos_token_id=eos, attention_bias=False, mlp_bias=False,
                      rope_parameters={"rope_type": "default", "rope_theta": float(fam["theta"])},
                      **fam["cfg"])
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "embed_tokens" in pname or "lm_head" in pname:
                p.copy_(0.25 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    model = model.to(torch.bfloat16)
    tmp = os.path.join(out, "_float")
    model.save_pretrained(tmp, safe_serialization=True)
    sd = load_file(os.path.join(tmp, "model.safetensors"))
    packed = {}
    for k, v in sd.items():
        if k.endswith("_proj.weight"):
            w, s = ternary_packed(v.float())
            packed[k] = w
            packed[k[:-len("weight")] + "weight_scale"] = s
        else:
            packed[k] = v.contiguous()
    if "lm_head.weight" not in packed:
        raise SystemExit("lm_head.weight not saved")
    save_file(packed, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json")) as f:
        c = json.load(f)
    shutil.rmtree(tmp)
    # config.json as the published checkpoints write it: top-level rope_theta (Falcon3's an
    # integer), is_bitnet_config, and BitLinear's quantization_config (no linear_class).
    c.pop("rope_parameters", None)
    c["rope_theta"] = fam["theta"]
    c["rope_scaling"] = None
    c["is_bitnet_config"] = True
    c["torch_dtype"] = "bfloat16"
    c["quantization_config"] = {"modules_to_not_convert": fam["not_convert"], "quant_method": "bitnet"}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)

    ref = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    ref.eval()
    lin = ref.model.layers[0].self_attn.q_proj
    assert type(lin).__name__ == "BitLinear", type(lin).__name__
    assert type(ref.lm_head).__name__ == "Linear"

    texts = ["The quick brown fox jumps over the lazy dog.",
             "Ternary weights and int8 activations: the linears of every family."]
    prefix = [bos] if bos is not None else []
    prompts = [prefix + tok.encode(t, add_special_tokens=False).ids for t in texts]
    rng = np.random.default_rng(fam["seed"])
    prompts.append(prefix + [int(v) for v in rng.integers(0, fam["vocab"], size=39)])
    prompts.append([int(v) for v in rng.integers(0, fam["vocab"], size=5)])

    lines = [f"# transformers {__import__('transformers').__version__} torch {torch.__version__}, "
             f"float32, eager attention, BitLinear packed; made by make_families.py",
             f"vocab {fam['vocab']}", f"prompts {len(prompts)}"]
    all_logits = []
    with torch.no_grad():
        for i, p in enumerate(prompts):
            ids = torch.tensor([p])
            logits = ref(ids).logits[0].float().numpy()
            all_logits.append(logits.astype("<f4"))
            top2 = np.sort(logits, axis=-1)[:, -2:]
            margin = top2[:, 1] - top2[:, 0]
            outp = ref.generate(ids, max_new_tokens=GEN, do_sample=False, eos_token_id=None,
                                pad_token_id=0, min_new_tokens=GEN)
            gen = outp[0, len(p):].tolist()
            full = ref(outp).logits[0].float().numpy()
            t2 = np.sort(full, axis=-1)[:, -2:]
            gmargin = (t2[:, 1] - t2[:, 0])[len(p) - 1:len(p) - 1 + GEN]
            lines.append(f"prompt {i} {len(p)} " + " ".join(map(str, p)))
            lines.append(f"greedy {i} {len(gen)} " + " ".join(map(str, gen)))
            lines.append(f"margin {i} {len(p)} " + " ".join(f"{m:.5f}" for m in margin))
            lines.append(f"greedy_margin {i} {len(gmargin)} " + " ".join(f"{m:.5f}" for m in gmargin))
            lines.append(f"logit_absmax {i} {float(np.abs(logits).max()):.5f}")

        # perplexity, app/perplexity.h's method
        stream = tok.encode(__doc__, add_special_tokens=False).ids[:4 * PPL_CTX]
        nll, n = 0.0, 0
        for c0 in range(0, len(stream) - PPL_CTX + 1, PPL_CTX):
            chunk = list(stream[c0:c0 + PPL_CTX])
            if bos is not None:
                chunk[0] = bos
            lg = torch.log_softmax(ref(torch.tensor([chunk])).logits[0].double(), dim=-1)
            for j in range(PPL_CTX // 2, PPL_CTX - 1):
                nll -= float(lg[j, chunk[j + 1]])
                n += 1
        lines.append(f"ppl_tokens {len(stream)} " + " ".join(map(str, stream)))
        lines.append(f"ppl {PPL_CTX} {bos if bos is not None else -1} {math.exp(nll / n):.6f} {n}")

    ids, text = chat_ids(hf_tok)
    lines.append(f"chat {len(ids)} " + " ".join(map(str, ids)))
    lines.append("chat_text " + json.dumps(text))
    with open(os.path.join(out, "reference.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    np.concatenate(all_logits, axis=0).tofile(os.path.join(out, "logits.f32"))


def make_tokenizer_only(name, fam):
    out = os.path.join(HERE, name)
    _, hf_tok = write_tokenizer(out, fam)
    ids, text = chat_ids(hf_tok)
    with open(os.path.join(out, "reference.txt"), "w") as f:
        f.write(f"# chat ids from transformers {__import__('transformers').__version__} "
                f"apply_chat_template; made by make_families.py\n")
        f.write(f"chat {len(ids)} " + " ".join(map(str, ids)) + "\n")
        f.write("chat_text " + json.dumps(text) + "\n")


def main():
    for name, fam in FAMILIES.items():
        out = os.path.join(HERE, name)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.makedirs(out)
        if fam["cfg"] is None:
            make_tokenizer_only(name, fam)
        else:
            make_model(name, fam)
        size = sum(os.path.getsize(os.path.join(out, x)) for x in os.listdir(out))
        print(f"wrote {out} ({size / 1e6:.2f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
