#!/usr/bin/env python3
"""Run the demo model's quality suite through bitnet-chat itself and write the replies.

Usage: run_suite.py BITNET_CHAT_BINARY [MODEL]   (from the repository root)
For each prompt of assets/eval/prompts.jsonl runs
  bitnet-chat -p PROMPT --temp 0 --repeat-penalty 1 -n 256 --model MODEL --no-history --backend cpu
(greedy, no system prompt) and writes assets/eval/suite_replies.jsonl and suite_replies.md,
with an automatic format check per kind of prompt (see on_format below).
"""
import json, re, subprocess, sys

binary = sys.argv[1]
model = sys.argv[2] if len(sys.argv) > 2 else "assets/bitnet-demo.gguf"
rows = [json.loads(l) for l in open("assets/eval/prompts.jsonl")]

def on_format(src, prompt, reply):
    """Does the reply have the shape the model was taught for this kind of question?"""
    if src == "wn-define":
        return bool(re.match(r"^[\w'\-. ]+ (is an? (noun|verb|adjective|adverb) meaning |has (two|three|several) meanings:)", reply))
    if src == "wn-synonym":
        return reply.startswith(("Other words for ", "Another word for "))
    if src == "wn-hypernym":
        return bool(re.match(r"^An? .+ is a kind of ", reply))
    if src == "wn-antonym":
        return reply.startswith("The opposite of ")
    if src == "jargon":
        return len(reply) > 20 and not reply.startswith(("Other words", "The opposite"))
    if src.startswith("fortune"):
        return 10 < len(reply) < 800
    if src == "smalltalk":
        return len(reply) > 5
    return False

out = []
for r in rows:
    cmd = [binary, "-p", r["prompt"], "--temp", "0", "--repeat-penalty", "1", "-n", "256",
           "--model", model, "--no-history", "--backend", "cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    reply = p.stdout.rstrip("\n")
    stats = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    stop = re.search(r"stop: (\w+)", stats)
    row = dict(r, reply=reply, rc=p.returncode, stop=stop.group(1) if stop else None,
               on_format=on_format(r["src"], r["prompt"], reply))
    out.append(row)
    print(json.dumps(r["prompt"]), "->", json.dumps(reply)[:160], row["stop"], flush=True)

with open("assets/eval/suite_replies.jsonl", "w") as f:
    for row in out:
        f.write(json.dumps(row) + "\n")
n = len(out)
fmt = sum(r["on_format"] for r in out)
eos = sum(r["stop"] == "eos" for r in out)
with open("assets/eval/suite_replies.md", "w") as f:
    f.write("# Demo model: quality suite (greedy replies by bitnet-chat)\n\n")
    f.write(f"Command per prompt: `{' '.join(cmd[:1])} -p PROMPT --temp 0 --repeat-penalty 1 -n 256 "
            f"--model {model} --no-history --backend cpu`  (written by assets/eval/run_suite.py)\n\n")
    f.write(f"- prompts: {n} ({sum(not r['seen_in_training'] for r in out)} never seen verbatim in training)\n")
    f.write(f"- replies ended by the model (<|eot_id|>): {eos}/{n}\n")
    f.write(f"- on-format (automatic check of the reply's shape for its kind of question): {fmt}/{n}\n\n")
    for i, r in enumerate(out, 1):
        f.write(f"## {i}. {r['prompt']}\n\nkind: {r['src']}; prompt seen in training: "
                f"{'yes' if r['seen_in_training'] else 'no'}; stop: {r['stop']}; on-format: "
                f"{'yes' if r['on_format'] else 'no'}\n\n")
        f.write("```text\n" + r["reply"] + "\n```\n\n")
        if r.get("dataset_answer"):
            f.write("Held-out dataset answer (never trained on):\n\n```text\n" + r["dataset_answer"] + "\n```\n\n")
print(f"on-format {fmt}/{n}, eos {eos}/{n}")
