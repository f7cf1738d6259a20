#!/usr/bin/env python3
"""Make tests/data/demo/golden.txt + golden_logits.f32 from the training run's
reference.json (written by assets/train/train.py: the PyTorch model in eval mode,
strict fp32, greedy), plus the committed engine replies ("eprompt"/"engine" lines)
from the output of `test_demo_golden scan engine_prompts.txt` (bitnet-chat's CPU
backend; prompts chosen for a top-2 logit margin >= 0.5 at every greedy step, so
that fp32 summation order on another backend cannot flip a token).
Usage: gen_golden.py reference.json OUTDIR [SCAN_OUTPUT]"""
import json, struct, sys
ref = json.load(open(sys.argv[1]))
out = sys.argv[2]
g = ref["golden"]
with open(f"{out}/golden.txt", "w") as f:
    f.write("# PyTorch reference of assets/bitnet-demo.gguf (assets/train/bitnet_model.py, eval, fp32)\n")
    f.write(f"vocab {len(g[0]['last_prompt_logits'])}\ngolden {len(g)}\n")
    for i, x in enumerate(g):
        assert "\n" not in x["prompt"]
        f.write(f"text {i} {x['prompt']}\n")
        f.write(f"prompt {i} {len(x['prompt_ids'])} " + " ".join(map(str, x["prompt_ids"])) + "\n")
        f.write(f"reply {i} {len(x['reply_ids'])} " + " ".join(map(str, x["reply_ids"])) + "\n")
        f.write(f"margin {i} {len(x['steps'])} " + " ".join(f"{s['margin']:.5f}" for s in x["steps"]) + "\n")
        f.write(f"absmax {i} {max(abs(v) for v in x['last_prompt_logits']):.6f}\n")
if len(sys.argv) > 3:
    with open(f"{out}/golden.txt", "a") as f:
        for i, line in enumerate(l for l in open(sys.argv[3]) if l.startswith("scan ")):
            head, text, ids = line.rstrip("\n").split("|")
            ids = ids.split()
            assert float(head.split()[1]) >= 0.5, line
            f.write(f"eprompt {i} {text}\nengine {i} {len(ids)} {' '.join(ids)}\n")
with open(f"{out}/golden_logits.f32", "wb") as f:
    for x in g:
        f.write(struct.pack(f"<{len(x['last_prompt_logits'])}f", *x["last_prompt_logits"]))
