#!/usr/bin/env python3
"""Train the demo model's byte-level BPE tokenizer (HF `tokenizers`).

Same shape as the Llama 3 tokenizer that BitNet-b1.58-2B-4T uses, just smaller:
Llama 3 pre-tokenizer regex (Split, isolated) + ByteLevel (no prefix space, no
regex of its own), 4086 BPE tokens, then 10 special tokens in Llama 3's order
at the top of the vocabulary (ids 4086..4095):
  <|begin_of_text|> <|end_of_text|> <|reserved_special_token_0..3|>
  <|start_header_id|> <|end_header_id|> <|reserved_special_token_4|> <|eot_id|>
Usage: train_tokenizer.py DATA_DIR OUT_DIR
"""
import json, sys
from tokenizers import Tokenizer, Regex, models, pre_tokenizers, decoders, trainers, processors

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
N_BPE = 4086
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>", "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]

def texts(path):
    for line in open(path):
        c = json.loads(line)
        if c["system"]:
            yield "System: " + c["system"]
        for u, a in c["turns"]:
            yield "User: " + u
            yield "Assistant: " + a

def main():
    data, out = sys.argv[1], sys.argv[2]
    tok = Tokenizer(models.BPE(byte_fallback=False, ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=N_BPE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(texts(f"{data}/train.jsonl"), trainer=trainer)
    assert tok.get_vocab_size() == N_BPE, tok.get_vocab_size()
    tok.add_special_tokens(SPECIALS)
    assert tok.token_to_id("<|begin_of_text|>") == N_BPE and tok.token_to_id("<|eot_id|>") == N_BPE + 9
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
        special_tokens=[("<|begin_of_text|>", N_BPE)])
    tok.save(f"{out}/tokenizer.json")
    enc = tok.encode("User: What does read_file mean?<|eot_id|>Assistant: ", add_special_tokens=True)
    print(enc.tokens)

if __name__ == "__main__":
    main()
