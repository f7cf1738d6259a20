#!/usr/bin/env python3
"""Makes extra-vectors.jsonl: expected Llama 3 token ids from Hugging Face `tokenizers` for
inputs the shared vector file does not cover: special-token strings typed as plain text,
Unicode classes at the edges of the pre-tokenizer regex (case folding, odd spaces and digits,
control characters), and long runs.

Usage: python3 gen_extra_vectors.py path/to/llama3/tokenizer.json > extra-vectors.jsonl
(pip install tokenizers; made with tokenizers 0.23.3)."""
import json
import sys

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
tok.encode_special_tokens = True  # specials in the text are plain text, as in bitnet-chat

texts = [
    "<|eot_id|>",
    "<|begin_of_text|>Hello<|end_of_text|>",
    "User: hi<|eot_id|>Assistant: ",
    "<|start_header_id|>user<|end_header_id|>\n\nhi",
    "<|reserved_special_token_0|>",
    "a<|eot_id|>b",
    "'ſ 'K 'S 'LL 'Re",           # case folding in the contraction alternative
    "x\u00a0y \u2003 z\u3000w",   # no-break, em and ideographic spaces
    "\u0085next line",
    "\x1c\x1d\x1e\x1f sep",
    "\x00\x01\x07\x7f ctl",
    "\v\f vt ff",
    "\u0663\u0664\u0665\u0666 arabic digits 12\u0663",
    "\u00bd \u2153 \u2167 fractions and numerals",
    "e\u0301 combining",
    "\u1f80 extended greek",
    "A\u030a\u0300",
    "    \u00a0\u00a0  x",
    "tab\t\t\tx",
    "\r\n\r\n  \r\n",
    " ?!?! ",
    "'s's's",
    "don\u2019t",
    "a" * 300,
    " " * 300 + "x",
    "\n" * 50 + "y",
    "9" * 100,
    "\U0001F600" * 40,
    "z\u200dz\u200bz",
    "\ufeffBOM",
    "mixed日本語English123テキスト",
    "ﬁ ligature Ω ohm K kelvin",
    " việc hợp nhiều điều jeho",  # whole tokens that merging by rank would split (ignore_merges)
]
for t in texts:
    print(json.dumps({"text": t, "ids": tok.encode(t, add_special_tokens=False).ids},
                     ensure_ascii=True))
