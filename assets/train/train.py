#!/usr/bin/env python3
"""Quantization-aware training of the bitnet-chat demo model, then export and
reference outputs, all in one run (the device machine keeps nothing).

Usage: train.py --data DIR --tok tokenizer.json --out OUTDIR --minutes M [--compile] [--smoke]
Writes to OUTDIR:
  hf/            config.json, model.safetensors (packed ternary + weight_scale,
                 autobitlinear), tokenizer.json, tokenizer_config.json, generation_config.json
  train_log.txt  the run's log (throughput, losses)
  metrics.json   held-out loss / perplexity (reply tokens), tokens seen, wall time
  reference.json greedy replies to the quality suite and golden logits, computed by
                 this model in eval mode in strict fp32 (no TF32)
"""
import argparse, copy, json, math, os, random, time
import numpy as np
import torch
import torch.nn.functional as F
from bitnet_model import BitNet, weight_ternary, pack_hf_ternary, unpack_hf_ternary

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--tok", required=True)
p.add_argument("--out", required=True)
p.add_argument("--minutes", type=float, default=8.0)
p.add_argument("--layers", type=int, default=10)
p.add_argument("--dim", type=int, default=512)
p.add_argument("--ffn", type=int, default=1536)
p.add_argument("--heads", type=int, default=8)
p.add_argument("--kv_heads", type=int, default=2)
p.add_argument("--rows", type=int, default=64)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--wd", type=float, default=0.05)
p.add_argument("--warmup", type=int, default=200)
p.add_argument("--eval_every_s", type=float, default=40.0)
p.add_argument("--compile", action="store_true")
p.add_argument("--smoke", action="store_true", help="tiny eval/suite for a quick end-to-end check")
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()

os.makedirs(f"{args.out}/hf", exist_ok=True)
logf = open(f"{args.out}/train_log.txt", "w")
def log(*a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True); logf.write(s + "\n"); logf.flush()

torch.manual_seed(args.seed); random.seed(args.seed); np.random.seed(args.seed)
dev = "cuda"
torch.backends.cuda.matmul.allow_tf32 = True   # exact for the integer matmuls; training only
torch.backends.cudnn.allow_tf32 = True
log("device", torch.cuda.get_device_name(0), "torch", torch.__version__)

tok_json = json.load(open(args.tok))
specials = {t["content"]: t["id"] for t in tok_json["added_tokens"]}
BOS, EOS, EOT = specials["<|begin_of_text|>"], specials["<|end_of_text|>"], specials["<|eot_id|>"]
VOCAB = len(tok_json["model"]["vocab"]) + len(specials)
assert VOCAB == 4096
cfg = {
    "vocab_size": VOCAB, "hidden_size": args.dim, "intermediate_size": args.ffn,
    "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
    "num_key_value_heads": args.kv_heads, "head_dim": args.dim // args.heads,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
}

def load(split):
    z = np.load(f"{args.data}/{split}.npz")
    return z["tokens"].astype(np.int64), z["mask"].astype(np.int64), z["offsets"]

def pack(tokens, mask, offs, order, L):
    """Greedy packing of whole samples into rows of L tokens; returns ids, loss-weight, pos, doc."""
    rows_ids, rows_w, rows_pos, rows_doc = [], [], [], []
    cur = []
    def flush():
        ids = np.zeros(L, np.int64); w = np.zeros(L, np.float32)
        pos = np.zeros(L, np.int64); doc = np.full(L, 1 << 20, np.int64)
        o = 0
        for d, i in enumerate(cur):
            a, b = offs[i], offs[i + 1]; n = b - a
            ids[o:o + n] = tokens[a:b]
            w[o:o + n - 1] = mask[a + 1:b]          # weight of predicting token t+1
            pos[o:o + n] = np.arange(n); doc[o:o + n] = d
            o += n
        pos[o:] = np.arange(L - o)
        rows_ids.append(ids); rows_w.append(w); rows_pos.append(pos); rows_doc.append(doc)
    used = 0
    for i in order:
        n = offs[i + 1] - offs[i]
        if used + n > L:
            flush(); cur = []; used = 0
        cur.append(i); used += n
    if cur:
        flush()
    return (torch.tensor(np.stack(rows_ids)), torch.tensor(np.stack(rows_w)),
            torch.tensor(np.stack(rows_pos)), torch.tensor(np.stack(rows_doc)))

def make_mask(doc):
    T = doc.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc.device).tril()
    return ((doc[:, :, None] == doc[:, None, :]) & causal)[:, None]

train = load("train"); val = load("val"); test = load("test")
ntrain = len(train[2]) - 1
val_b = pack(*val, np.arange(len(val[2]) - 1), args.seq)
test_b = pack(*test, np.arange(len(test[2]) - 1), args.seq)
if args.smoke:
    val_b = tuple(t[:8] for t in val_b); test_b = tuple(t[:8] for t in test_b)
log("train samples", ntrain, "tokens", len(train[0]), "val rows", val_b[0].shape[0], "test rows", test_b[0].shape[0])

model = BitNet(cfg).to(dev)
nparam = sum(p.numel() for p in model.parameters())
log("config", json.dumps(cfg), "params", nparam)
fwd = torch.compile(model) if args.compile else model

decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)

def batch_loss(m, ids, w, pos, doc):
    ids, w, pos, doc = ids.to(dev, non_blocking=True), w.to(dev), pos.to(dev), doc.to(dev)
    logits = m(ids, pos, make_mask(doc))
    tgt = torch.roll(ids, -1, dims=1)
    l = F.cross_entropy(logits.view(-1, logits.shape[-1]), tgt.view(-1), reduction="none")
    return (l * w.view(-1)).sum(), w.sum()

@torch.no_grad()
def evaluate(m, b, rows=16):
    tot, n = 0.0, 0.0
    for i in range(0, b[0].shape[0], rows):
        l, c = batch_loss(m, *(t[i:i + rows] for t in b))
        tot += l.item(); n += c.item()
    return tot / n

budget = args.minutes * 60.0
t0 = time.time()
step, seen, epoch = 0, 0, 0
best = (float("inf"), None, 0)
last_eval = t0
rows = None
while True:
    if rows is None or ri >= rows[0].shape[0]:
        order = np.random.permutation(ntrain)
        rows = pack(*train, order, args.seq)
        perm = torch.randperm(rows[0].shape[0]); rows = tuple(t[perm] for t in rows)
        ri = 0; epoch += 1
        log(f"epoch {epoch}: {rows[0].shape[0]} rows")
    el = time.time() - t0
    frac = min(el / budget, 1.0)
    lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
    for g in opt.param_groups:
        g["lr"] = lr
    b = tuple(t[ri:ri + args.rows].pin_memory() for t in rows); ri += args.rows
    model.train()
    l, c = batch_loss(fwd, *b)
    loss = l / c
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    step += 1; seen += b[0].numel()
    now = time.time()
    if step % 50 == 0:
        log(f"step {step} ep {epoch} t {now - t0:.0f}s lr {lr:.2e} loss {loss.item():.4f} gnorm {gn.item():.2f} "
            f"tok/s {seen / (now - t0):.0f}")
    done = now - t0 >= budget or (args.smoke and step >= 60)
    if now - last_eval >= args.eval_every_s or done:
        model.eval()
        vl = evaluate(fwd, val_b)
        last_eval = time.time()
        log(f"eval step {step} t {now - t0:.0f}s val_loss {vl:.4f} ppl {math.exp(vl):.2f}")
        if vl < best[0]:
            best = (vl, copy.deepcopy(model.state_dict()), step)
    if done:
        break

train_s = time.time() - t0
log(f"trained {step} steps, {seen} tokens in {train_s:.0f}s; best val {best[0]:.4f} at step {best[2]}")
model.load_state_dict(best[1])
model.eval()
model.round_to_shipped()

# ---- strict fp32 from here: the reference numerics
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
vl = evaluate(model, val_b); tl = evaluate(model, test_b)
metrics = {"val_loss": vl, "val_ppl": math.exp(vl), "test_loss": tl, "test_ppl": math.exp(tl),
           "loss_on": "reply tokens (and their <|eot_id|>) of held-out conversations",
           "steps": step, "train_tokens_seen": seen, "train_seconds": train_s, "epochs": epoch,
           "best_step": best[2], "params": nparam, "config": cfg, "device": torch.cuda.get_device_name(0)}
log("final", json.dumps(metrics))
json.dump(metrics, open(f"{args.out}/metrics.json", "w"), indent=1)

# ---- export: HF directory, packed ternary weights (exact), autobitlinear (multiply by weight_scale)
from safetensors.torch import save_file
sd = {}
lin = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
sd["model.embed_tokens.weight"] = model.embed_tokens.weight.detach().cpu().to(torch.bfloat16)
sd["model.norm.weight"] = model.norm.weight.detach().cpu().to(torch.bfloat16)
for i, L in enumerate(model.layers):
    pre = f"model.layers.{i}."
    for name in lin:
        w = getattr(L, name).weight.detach()
        wt, gamma = weight_ternary(w)
        packed = pack_hf_ternary(wt.cpu())
        assert torch.equal(unpack_hf_ternary(packed), wt.cpu())
        part = "self_attn." if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp."
        sd[pre + part + name + ".weight"] = packed
        sd[pre + part + name + ".weight_scale"] = gamma.reshape(1).cpu().to(torch.bfloat16)
        assert sd[pre + part + name + ".weight_scale"].float().item() == gamma.item()
    sd[pre + "input_layernorm.weight"] = L.input_layernorm.weight.detach().cpu().to(torch.bfloat16)
    sd[pre + "post_attention_layernorm.weight"] = L.post_attention_layernorm.weight.detach().cpu().to(torch.bfloat16)
    sd[pre + "self_attn.attn_sub_norm.weight"] = L.attn_sub_norm.weight.detach().cpu().to(torch.bfloat16)
    sd[pre + "mlp.ffn_sub_norm.weight"] = L.ffn_sub_norm.weight.detach().cpu().to(torch.bfloat16)
save_file({k: v.contiguous() for k, v in sd.items()}, f"{args.out}/hf/model.safetensors", metadata={"format": "pt"})
hf_cfg = {
    "architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
    "vocab_size": VOCAB, "hidden_size": cfg["hidden_size"], "intermediate_size": cfg["intermediate_size"],
    "num_hidden_layers": cfg["num_hidden_layers"], "num_attention_heads": cfg["num_attention_heads"],
    "num_key_value_heads": cfg["num_key_value_heads"], "head_dim": cfg["head_dim"],
    "hidden_act": "relu2", "max_position_embeddings": 2048, "rms_norm_eps": cfg["rms_norm_eps"],
    "rope_theta": cfg["rope_theta"], "tie_word_embeddings": True, "attention_bias": False,
    "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
    "bos_token_id": BOS, "eos_token_id": [EOS, EOT], "pad_token_id": EOS,
    "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                            "quantization_mode": "offline", "modules_to_not_convert": ["lm_head"]},
}
json.dump(hf_cfg, open(f"{args.out}/hf/config.json", "w"), indent=2)
json.dump({"bos_token_id": BOS, "eos_token_id": [EOS, EOT], "do_sample": False, "max_new_tokens": 256},
          open(f"{args.out}/hf/generation_config.json", "w"), indent=2)
tmpl = ("{% for message in messages %}{% set content = message['role'] | capitalize + ': ' + "
        "message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}")
json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": True,
           "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": tmpl,
           "clean_up_tokenization_spaces": False},
          open(f"{args.out}/hf/tokenizer_config.json", "w"), indent=2)
import shutil
shutil.copy(args.tok, f"{args.out}/hf/tokenizer.json")

# ---- reference replies and golden logits (strict fp32, eval mode, plain causal, positions 0..T-1)
from tokenizers import Tokenizer
tk = Tokenizer.from_file(args.tok)

@torch.no_grad()
def logits_of(ids):
    t = torch.tensor([ids], device=dev)
    pos = torch.arange(len(ids), device=dev)[None]
    return model(t, pos, None)[0]

@torch.no_grad()
def greedy(prompt, max_new=160, keep=0):
    ids = [BOS] + tk.encode(f"User: {prompt.strip()}<|eot_id|>Assistant: ", add_special_tokens=False).ids
    n0 = len(ids); steps = []
    for k in range(max_new):
        lg = logits_of(ids)[-1]
        top = torch.topk(lg, 2)
        nxt = int(top.indices[0])
        if k < keep:
            steps.append({"token": nxt, "logit": float(top.values[0]), "margin": float(top.values[0] - top.values[1])})
        ids.append(nxt)
        if nxt in (EOT, EOS):
            break
    out = ids[n0:]
    text = tk.decode([t for t in out if t not in (EOT, EOS)], skip_special_tokens=False)
    return ids[:n0], out, text, steps

suite = [json.loads(l) for l in open(f"{args.data}/suite.jsonl")]
if args.smoke:
    suite = suite[:3]
ref = {"note": "PyTorch reference (assets/train/bitnet_model.py), eval mode, fp32 without TF32, "
               "prompt = <|begin_of_text|>User: PROMPT<|eot_id|>Assistant: , greedy, no system prompt",
       "suite": [], "golden": []}
for s in suite:
    pids, out, text, _ = greedy(s["prompt"])
    ref["suite"].append({"src": s["src"], "prompt": s["prompt"], "reply": text, "reply_ids": out,
                         "stopped": bool(out and out[-1] in (EOT, EOS)), "reference_answer": s["reference"]})
    log("SUITE", json.dumps(s["prompt"]), "->", json.dumps(text)[:300])
extra = ["Who are you?", "What does gerbil mean?", "What is kludge in hacker slang?", "Tell me a saying about work."]
for prm in extra:
    pids, out, text, steps = greedy(prm, max_new=48, keep=48)
    lg = logits_of(pids)[-1].cpu()
    ref["golden"].append({"prompt": prm, "prompt_ids": pids, "reply_ids": out, "reply": text, "steps": steps,
                          "last_prompt_logits": [float(x) for x in lg]})
    log("GOLDEN", json.dumps(prm), "->", json.dumps(text)[:300], "min margin",
        min(s["margin"] for s in steps) if steps else None)
json.dump(ref, open(f"{args.out}/reference.json", "w"))
log("done; total wall", f"{time.time() - t0:.0f}s")
