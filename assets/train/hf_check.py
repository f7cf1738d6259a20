#!/usr/bin/env python3
"""Cross-check the exported HF directory with Hugging Face transformers' own
BitNet implementation (independent code): load HFDIR in fp32 and compare the
last-prompt-position logits of the golden prompts with reference.json.
Usage: hf_check.py HFDIR reference.json
"""
import json, sys
import torch
from transformers import AutoModelForCausalLM

hfdir, refp = sys.argv[1], sys.argv[2]
torch.backends.cuda.matmul.allow_tf32 = False
m = AutoModelForCausalLM.from_pretrained(hfdir, torch_dtype=torch.float32).eval()
ref = json.load(open(refp))
worst = 0.0
for g in ref["golden"]:
    with torch.no_grad():
        lg = m(torch.tensor([g["prompt_ids"]])).logits[0, -1].float()
    r = torch.tensor(g["last_prompt_logits"])
    d = (lg - r).abs().max().item()
    worst = max(worst, d)
    print(f"{g['prompt']!r}: max|hf - ref| = {d:.4g} (max|ref| {r.abs().max().item():.3g}); "
          f"argmax hf {int(lg.argmax())} ref {int(r.argmax())}")
print("hf_check worst", worst)
