#!/usr/bin/env python3
"""Builds the reference fixtures of the BitNet model families (tests/data/families).

For each family a tiny random model is written as the Hugging Face folder its published
checkpoints are, and run by transformers' own classes to record what the C engine must match:

  llama3/   Llama3-8B-1.58 style: LlamaForCausalLM, model_type "llama", hidden 256, 2 layers,
            4 heads / 2 KV heads (head_dim 64), intermediate 288 (not a multiple of 128: K
            padding of down_proj), untied lm_head, rope_theta 500000.0, eps 1e-5,
            quantization_config {quant_method: bitnet, modules_to_not_convert: null} and a
            Llama 3 header chat template.
  falcon3/  Falcon3-*-1.58bit style: the same class with head_dim stated in the config (128
            here to keep the files small; test_forward_cpu runs head_dim 256), hidden 256, 2 heads
            / 1 KV head, intermediate 256, vocab 320, rope_theta 1000042 written as an
            integer, eps 1e-6, modules_to_not_convert ["lm_head"], eos <|endoftext|>, the
            Falcon3 <|system|>/<|user|>/<|assistant|> template; and the same weights as GGUF
            files of arch "llama" the way llama.cpp-family converters write them (q/k rows
            permuted for adjacent-pair RoPE, tokenizer.ggml.pre "falcon3"), written with
            llama.cpp's gguf-py: i2s.gguf (I2_S, type 36, bytes made here from the published
            layout as tests/data/models/gen_fixtures.py does, F16 embedding and lm_head),
            tq2_0.gguf / tq1_0.gguf (gguf-py's own quantizers) and f16.gguf (the ternary values
            times their scale, as F16: what converters write before quantizing).
  onebit/   1bitLLM bitnet_b1_58 style: BitnetForCausalLM (model_type "llama", no
            quantization_config), fp16 master weights quantized on the fly (absmean ternary
            weights, absmax int8 activations), SiLU FFN with inner_attn_ln before o_proj and
            ffn_layernorm before down_proj, tied embedding, rope_theta 10000. transformers has no
            class for it (the published repos carry their own modeling_bitnet.py), so the graph is
            written out below (onebit_forward) from that description; hidden 200, 2 heads of
            head_dim 100 (as 1bitLLM-3B), intermediate 270 (not a multiple of 128, as its 8640).
            The tokenizer is a SentencePiece BPE model with byte fallback, as LLaMA-2's (trained
            here with the `sentencepiece` package: identity normalization, dummy prefix, spaces
            kept), shipped as tokenizer.model only; reference.txt also records
            sentencepiece's own encoding of a few awkward strings (`spm` lines). f16.gguf holds
            the same model as bitnet.cpp's converter names it (arch "bitnet-b1.58", sub-norms
            as attn_sub_norm / ffn_sub_norm, q/k not permuted, tokenizer.ggml.model "llama" with
            scores and token types), with the fp16 masters as F16.
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

Run:  python3 tests/data/families/make_families.py [FAMILY...]  (needs torch, transformers >= 5, accelerate,
tokenizers, safetensors, numpy, gguf==0.19.0; CPU is enough, a few minutes).
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
        vocab=320, specials=["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|pad|>"],
        bos=None, eos="<|endoftext|>", template=FALCON3_TEMPLATE,
        cfg=dict(hidden_size=256, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=128, rms_norm_eps=1e-6,
                 max_position_embeddings=256),
        theta=1000042, not_convert=["lm_head"], seed=3030, gguf=True),
    "onebit": dict(
        vocab=400, specials=["<s>", "</s>"], bos="<s>", eos="</s>", template=None,
        cfg=dict(hidden_size=200, intermediate_size=270, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=2, rms_norm_eps=1e-5,
                 max_position_embeddings=256),
        theta=10000.0, seed=4242, onebit=True),
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
    if fam.get("gguf"):
        write_gguf_forms(out, fam, tok)


def i2s_bytes(t):
    """I2_S bytes of an int8 ternary matrix [n][k]: tests/data/models/gen_fixtures.py's."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "gen_fixtures", os.path.join(HERE, "..", "models", "gen_fixtures.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.i2s_bytes(t)


def llama_permute(t, n_head):
    """llama.cpp's q/k row order: HF row (half, i) of each head becomes row 2i + half."""
    n, k = t.shape
    return t.reshape(n_head, 2, n // n_head // 2, k).swapaxes(1, 2).reshape(n, k)


def write_gguf_forms(out, fam, tok):
    import gguf
    from transformers.integrations.bitnet import unpack_weights
    sd = load_file(os.path.join(out, "model.safetensors"))
    c = fam["cfg"]
    hd, nh, nkv = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    for a in j["added_tokens"]:
        vocab[a["content"]] = a["id"]
    tokens = [None] * fam["vocab"]
    for t, i in vocab.items():
        tokens[i] = t
    types = [3 if t in fam["specials"] else 1 for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    mats = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
            "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    for kind in ("i2s", "tq2_0", "tq1_0", "f16"):
        w = gguf.GGUFWriter(os.path.join(out, kind + ".gguf"), "llama")
        w.add_name("falcon3-fixture-" + kind)
        w.add_context_length(c["max_position_embeddings"])
        w.add_embedding_length(c["hidden_size"])
        w.add_block_count(c["num_hidden_layers"])
        w.add_feed_forward_length(c["intermediate_size"])
        w.add_rope_dimension_count(hd)
        w.add_head_count(nh)
        w.add_head_count_kv(nkv)
        w.add_key_length(hd)
        w.add_value_length(hd)
        w.add_layer_norm_rms_eps(c["rms_norm_eps"])
        w.add_rope_freq_base(float(fam["theta"]))
        w.add_uint32("general.file_type", 40)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("falcon3")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_eos_token_id(tokens.index(fam["eos"]))
        w.add_chat_template(fam["template"])
        f16 = lambda x: x.float().numpy().astype(np.float16)  # noqa: E731
        f32 = lambda x: x.float().numpy().astype(np.float32)  # noqa: E731
        w.add_tensor("token_embd.weight", f16(sd["model.embed_tokens.weight"]))
        w.add_tensor("output.weight", f16(sd["lm_head.weight"]))
        w.add_tensor("output_norm.weight", f32(sd["model.norm.weight"]))
        for li in range(c["num_hidden_layers"]):
            pre = f"model.layers.{li}."
            w.add_tensor(f"blk.{li}.attn_norm.weight", f32(sd[pre + "input_layernorm.weight"]))
            w.add_tensor(f"blk.{li}.ffn_norm.weight", f32(sd[pre + "post_attention_layernorm.weight"]))
            for hf, gn in mats.items():
                base = pre + ("self_attn." if hf in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp.") + hf
                t = unpack_weights(sd[base + ".weight"], dtype=torch.float32).numpy().astype(np.int8)
                gamma = np.float32(1.0) / np.float32(sd[base + ".weight_scale"].float().item())
                if hf == "q_proj":
                    t = llama_permute(t, nh)
                elif hf == "k_proj":
                    t = llama_permute(t, nkv)
                name = f"blk.{li}.{gn}.weight"
                if kind == "i2s":
                    blob = np.concatenate([i2s_bytes(t), np.frombuffer(np.float32(gamma).tobytes(), np.uint8),
                                           np.zeros(28, np.uint8)])
                    w.add_tensor(name, blob.view(np.int8), raw_shape=t.shape, raw_dtype=36)
                elif kind == "f16":
                    w.add_tensor(name, (t.astype(np.float32) * gamma).astype(np.float16))
                else:
                    qt = gguf.GGMLQuantizationType.TQ2_0 if kind == "tq2_0" else gguf.GGMLQuantizationType.TQ1_0
                    w.add_tensor(name, gguf.quants.quantize(t.astype(np.float32) * gamma, qt), raw_dtype=qt)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


def onebit_weights(fam):
    """Random fp16 masters in 1bitLLM's tensor names."""
    c = fam["cfg"]
    g = torch.Generator().manual_seed(fam["seed"])
    d, f, v = c["hidden_size"], c["intermediate_size"], fam["vocab"]
    rn = lambda *shape, std=1.0: (std * torch.randn(*shape, generator=g)).half()  # noqa: E731
    sd = {"model.embed_tokens.weight": rn(v, d, std=0.25), "model.norm.weight": (1 + rn(d, std=0.2).float()).half()}
    for li in range(c["num_hidden_layers"]):
        p = f"model.layers.{li}."
        for n, shape in (("self_attn.q_proj", (d, d)), ("self_attn.k_proj", (d, d)), ("self_attn.v_proj", (d, d)),
                         ("self_attn.o_proj", (d, d)), ("mlp.gate_proj", (f, d)), ("mlp.up_proj", (f, d)),
                         ("mlp.down_proj", (d, f))):
            sd[p + n + ".weight"] = rn(*shape, std=0.05)
        for n, k in (("input_layernorm", d), ("post_attention_layernorm", d),
                     ("self_attn.inner_attn_ln", d), ("mlp.ffn_layernorm", f)):
            sd[p + n + ".weight"] = (1 + rn(k, std=0.2).float()).half()
    return sd


def onebit_forward(sd, c, theta, ids):
    """1bitLLM's forward in float32: BitLinear = F.linear(act_quant(x), weight_quant(W))."""
    W = {k: v.float() for k, v in sd.items()}
    eps, nh = c["rms_norm_eps"], c["num_attention_heads"]
    d = c["hidden_size"]
    hd = d // nh

    def wq(w):
        s = 1.0 / w.abs().mean().clamp(min=1e-5)
        return (w * s).round().clamp(-1, 1) / s

    def aq(x):
        s = 127.0 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
        return (x * s).round().clamp(-128, 127) / s

    def lin(x, name):
        return torch.nn.functional.linear(aq(x), wq(W[name]))

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    T = len(ids)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    ang = torch.outer(torch.arange(T).float(), inv)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(x):  # [h, T, hd], rotate half
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for li in range(c["num_hidden_layers"]):
        p = f"model.layers.{li}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q, k, v = (lin(h, p + f"self_attn.{n}_proj.weight").view(T, nh, hd).transpose(0, 1) for n in "qkv")
        q, k = rope(q), rope(k)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1) @ v
        a = a.transpose(0, 1).reshape(T, d)
        x = x + lin(rms(a, W[p + "self_attn.inner_attn_ln.weight"]), p + "self_attn.o_proj.weight")
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        m = torch.nn.functional.silu(lin(h, p + "mlp.gate_proj.weight")) * lin(h, p + "mlp.up_proj.weight")
        x = x + lin(rms(m, W[p + "mlp.ffn_layernorm.weight"]), p + "mlp.down_proj.weight")
    x = rms(x, W["model.norm.weight"])
    return x @ W["model.embed_tokens.weight"].T


SPM_TESTS = ["Hello world", "  two leading spaces", "trailing  ", "several   spaces inside",
             "tab\tand\nnewline\n", "caf\u00e9 na\u00efve \u2713 \u65e5\u672c\u8a9e \U0001F642", "12345 3.14159",
             "The quick brown fox jumps over the lazy dog.", " ", "a", "\u2581 literal"]


def build_spm(out, vocab):
    import io
    import sentencepiece as spm
    model = io.BytesIO()
    corpus = [line for line in (__doc__ * 4).split("\n") if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=vocab, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        character_coverage=1.0, minloglevel=2)
    with open(os.path.join(out, "tokenizer.model"), "wb") as f:
        f.write(model.getvalue())
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def write_onebit_gguf(out, fam, sd, sp):
    import gguf
    c, A = fam["cfg"], "bitnet-b1.58"
    w = gguf.GGUFWriter(os.path.join(out, "f16.gguf"), A)
    w.add_name("onebit-fixture")
    for k, v in (("context_length", c["max_position_embeddings"]), ("embedding_length", c["hidden_size"]),
                 ("block_count", c["num_hidden_layers"]), ("feed_forward_length", c["intermediate_size"]),
                 ("rope.dimension_count", c["hidden_size"] // c["num_attention_heads"]),
                 ("attention.head_count", c["num_attention_heads"]),
                 ("attention.head_count_kv", c["num_key_value_heads"])):
        w.add_uint32(f"{A}.{k}", v)
    w.add_float32(f"{A}.attention.layer_norm_rms_epsilon", c["rms_norm_eps"])
    w.add_float32(f"{A}.rope.freq_base", float(fam["theta"]))
    n = sp.get_piece_size()
    types = [3 if sp.is_control(i) else 2 if sp.is_unknown(i) else 6 if sp.is_byte(i)
             else 5 if sp.is_unused(i) else 1 for i in range(n)]
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_add_space_prefix(True)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].float().numpy())
    names = {"input_layernorm": "attn_norm", "self_attn.inner_attn_ln": "attn_sub_norm",
             "post_attention_layernorm": "ffn_norm", "mlp.ffn_layernorm": "ffn_sub_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for li in range(c["num_hidden_layers"]):
        for hf, gn in names.items():
            t = sd[f"model.layers.{li}.{hf}.weight"]
            w.add_tensor(f"blk.{li}.{gn}.weight", t.float().numpy() if t.dim() == 1 else t.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_onebit(name, fam):
    out = os.path.join(HERE, name)
    sp = build_spm(out, fam["vocab"])
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": fam["bos"], "eos_token": fam["eos"], "add_bos_token": True,
                   "tokenizer_class": "LlamaTokenizer"}, f, indent=2)
    bos, eos = sp.piece_to_id(fam["bos"]), sp.piece_to_id(fam["eos"])

    class Tok:  # the few calls below, on sentencepiece
        def encode(self, text, add_special_tokens=False):
            return type("E", (), {"ids": sp.encode(text)})
    tok = Tok()
    c = fam["cfg"]
    sd = onebit_weights(fam)
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    conf = {"architectures": ["BitnetForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "hidden_size": c["hidden_size"], "intermediate_size": c["intermediate_size"],
            "num_hidden_layers": c["num_hidden_layers"], "num_attention_heads": c["num_attention_heads"],
            "num_key_value_heads": c["num_key_value_heads"], "max_position_embeddings": c["max_position_embeddings"],
            "rms_norm_eps": c["rms_norm_eps"], "rope_theta": fam["theta"], "rope_scaling": None,
            "tie_word_embeddings": True, "torch_dtype": "float16", "vocab_size": fam["vocab"],
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": None, "weight_bits": 1,
            "input_bits": 8}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
    fwd = lambda ids: onebit_forward(sd, c, fam["theta"], ids).numpy()  # noqa: E731
    texts = ["The quick brown fox jumps over the lazy dog.",
             "Ternary weights and int8 activations: the linears of every family."]
    prompts = [[bos] + tok.encode(t, add_special_tokens=False).ids for t in texts]
    rng = np.random.default_rng(fam["seed"])
    prompts.append([bos] + [int(v) for v in rng.integers(0, fam["vocab"], size=39)])
    prompts.append([int(v) for v in rng.integers(0, fam["vocab"], size=5)])
    lines = [f"# torch {torch.__version__}, float32, 1bitLLM graph written in make_families.py "
             f"(onebit_forward)", f"vocab {fam['vocab']}", f"prompts {len(prompts)}"]
    all_logits = []
    with torch.no_grad():
        for i, p in enumerate(prompts):
            logits = fwd(p)
            all_logits.append(logits.astype("<f4"))
            seq = list(p)
            for _ in range(GEN):
                seq.append(int(fwd(seq)[-1].argmax()))
            full = fwd(seq)
            gen = seq[len(p):]
            top2 = np.sort(logits, axis=-1)[:, -2:]
            t2 = np.sort(full, axis=-1)[:, -2:]
            gmargin = (t2[:, 1] - t2[:, 0])[len(p) - 1:len(p) - 1 + GEN]
            lines.append(f"prompt {i} {len(p)} " + " ".join(map(str, p)))
            lines.append(f"greedy {i} {len(gen)} " + " ".join(map(str, gen)))
            lines.append(f"margin {i} {len(p)} " + " ".join(f"{m:.5f}" for m in top2[:, 1] - top2[:, 0]))
            lines.append(f"greedy_margin {i} {len(gmargin)} " + " ".join(f"{m:.5f}" for m in gmargin))
            lines.append(f"logit_absmax {i} {float(np.abs(logits).max()):.5f}")
    write_onebit_gguf(out, fam, sd, sp)
    for t in SPM_TESTS:
        ids = sp.encode(t)
        lines.append(f"spm {json.dumps(t)} {len(ids)} " + " ".join(map(str, ids)))
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
    only = sys.argv[1:]  # family names to remake (default: all)
    for name, fam in FAMILIES.items():
        if only and name not in only:
            continue
        out = os.path.join(HERE, name)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.makedirs(out)
        if fam["cfg"] is None:
            make_tokenizer_only(name, fam)
        elif fam.get("onebit"):
            make_onebit(name, fam)
        else:
            make_model(name, fam)
        size = sum(os.path.getsize(os.path.join(out, x)) for x in os.listdir(out))
        print(f"wrote {out} ({size / 1e6:.2f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
