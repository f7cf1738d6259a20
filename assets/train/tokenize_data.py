#!/usr/bin/env python3
"""Tokenize the chat corpus into the exact token stream the engine will see.

Each conversation becomes  <|begin_of_text|> [System: s<|eot_id|>] User: u<|eot_id|>Assistant: a<|eot_id|> ...
The prompt part of the final turn ("...Assistant: ") is tokenized on its own,
as bitnet-chat renders the generation prompt (it ends in a lone " " token), and
the reply is tokenized separately. Earlier turns of multi-turn samples are
tokenized either way at random, so both renderings of history are familiar.
Loss mask = 1 on reply tokens and their closing <|eot_id|>.

Output: DATA/{train,val,test}.npz with tokens (uint16, flat), mask (uint8, flat),
offsets (int64, sample starts; last = total).
Usage: tokenize_data.py DATA_DIR TOKENIZER_JSON
"""
import json, random, sys
import numpy as np
from tokenizers import Tokenizer

rng = random.Random(99)
MAX_LEN = 1024

def main():
    data, tokpath = sys.argv[1], sys.argv[2]
    tok = Tokenizer.from_file(tokpath)
    BOS, EOT = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|eot_id|>")
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids

    def render(conv):
        ids, mask = [BOS], [0]
        if conv["system"]:
            t = enc("System: " + conv["system"].strip() + "<|eot_id|>"); ids += t; mask += [0] * len(t)
        n = len(conv["turns"])
        for i, (u, a) in enumerate(conv["turns"]):
            u, a = u.strip(), a.strip()
            if i < n - 1 and rng.random() < 0.5:
                # history rendered as one string: "User: u<|eot_id|>Assistant: a<|eot_id|>"
                p = enc("User: " + u + "<|eot_id|>")
                q = enc("Assistant: " + a)
                ids += p + q + [EOT]; mask += [0] * len(p) + [0, 0] + [1] * (len(q) - 2) + [1]
            else:
                p = enc("User: " + u + "<|eot_id|>Assistant: ")
                r = enc(a) + [EOT]
                ids += p + r; mask += [0] * len(p) + [1] * len(r)
        return ids, mask

    for split in ("train", "val", "test"):
        convs = [json.loads(l) for l in open(f"{data}/{split}.jsonl")]
        if split == "train":
            # ~12% multi-turn conversations made by chaining 2-3 single turns
            rng.shuffle(convs)
            out, i = [], 0
            while i < len(convs):
                if rng.random() < 0.12 and i + 3 <= len(convs):
                    k = rng.choice([2, 3])
                    c = {"src": "multi", "system": convs[i]["system"],
                         "turns": [t for cc in convs[i:i + k] for t in cc["turns"]]}
                    out.append(c); i += k
                else:
                    out.append(convs[i]); i += 1
            convs = out
            # the small sources are upweighted (3x jargon, 2x fortunes, 40x small talk)
            extra = [c for c in convs if c["src"] == "jargon"] * 2 + \
                    [c for c in convs if c["src"].startswith("fortune")] + \
                    [c for c in convs if c["src"] == "smalltalk"] * 39
            convs += extra
        toks, masks, offs = [], [], [0]
        dropped = 0
        for c in convs:
            ids, m = render(c)
            if len(ids) > MAX_LEN:
                dropped += 1; continue
            toks += ids; masks += m; offs.append(len(toks))
        np.savez_compressed(f"{data}/{split}.npz", tokens=np.array(toks, np.uint16), mask=np.array(masks, np.uint8),
                 offsets=np.array(offs, np.int64))
        print(split, "samples", len(offs) - 1, "tokens", len(toks), "loss tokens", int(sum(masks)), "dropped", dropped)

if __name__ == "__main__":
    main()
