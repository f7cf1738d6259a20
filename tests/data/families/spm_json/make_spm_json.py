#!/usr/bin/env python3
"""tokenizer.json files of the SentencePiece kind, made from the onebit fixture's
tokenizer.model (a LLaMA-2-style BPE with byte fallback), and the ids the `tokenizers` package
gives for awkward strings (reference.txt), for test_tokenizer_spm_json:

  legacy/     transformers' LlamaTokenizerFast conversion with legacy=True, the form LLaMA-2's and
              1bitLLM's tokenizer.json have: BPE model with byte_fallback, normalizer
              Sequence[Prepend "\u2581", Replace " " -> "\u2581"], no pre-tokenizer.
  metaspace/  the same with legacy=False (newer transformers): no normalizer, pre-tokenizer
              Metaspace("\u2581", prepend_scheme "first", split false).
  unigram/    a Unigram model (trained here with sentencepiece, model_type unigram) converted
              by hand: Unigram(vocab with scores, unk_id, byte_fallback) + Metaspace.

reference.txt lines: `<dir> "<escaped text>" n id...`.
Run: python3 make_spm_json.py (needs transformers, tokenizers, sentencepiece, protobuf)."""
import io
import json
import os

import sentencepiece as spm
from tokenizers import Tokenizer, models, pre_tokenizers, decoders

HERE = os.path.dirname(os.path.abspath(__file__))
ONEBIT = os.path.join(HERE, "..", "onebit")

TESTS = ["Hello world", "  two leading spaces", "trailing  ", "several   spaces inside",
         "tab\tand\nnewline\n", "caf\u00e9 na\u00efve \u2713 \u65e5\u672c\u8a9e \U0001F642", "12345 3.14159",
         "The quick brown fox jumps over the lazy dog.", " ", "a", "\u2581 literal", "",
         "zzzz qqqq xxxx", "x\u2581\u2581y  z"]


def esc(s):
    return json.dumps(s, ensure_ascii=True)


def unigram():
    corpus = [line for line in (open(os.path.join(HERE, "..", "make_families.py")).read() * 2).split("\n")
              if line.strip()]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=buf, vocab_size=400, model_type="unigram",
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        character_coverage=1.0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    specials = [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True} for i in (0, 1, 2)]
    tok.add_special_tokens([s["content"] for s in specials])
    return tok, sp


def main():
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import SentencePieceExtractor
    kw = SentencePieceExtractor(os.path.join(ONEBIT, "tokenizer.model")).extract(None)
    vocab, merges = kw["vocab"], kw["merges"]
    lines = []
    for name in ("legacy", "metaspace"):
        # what transformers' LlamaConverter builds (legacy: the normalizer pair LLaMA-2's file has)
        tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        if name == "legacy":
            tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                                   normalizers.Replace(" ", "\u2581")])
        else:
            tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first",
                                                         split=False)
        tok.add_special_tokens(["<unk>", "<s>", "</s>"])
        d = os.path.join(HERE, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        for s in TESTS:
            ids = tok.encode(s, add_special_tokens=False).ids
            lines.append(f"{name} {esc(s)} {len(ids)} " + " ".join(map(str, ids)))
    tok, sp = unigram()
    d = os.path.join(HERE, "unigram")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    for s in TESTS:
        ids = tok.encode(s, add_special_tokens=False).ids
        lines.append(f"unigram {esc(s)} {len(ids)} " + " ".join(map(str, ids)))
        spids = sp.encode(s)
        if spids != ids:
            print("note: sentencepiece differs for", esc(s), spids, ids)
    with open(os.path.join(HERE, "reference.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
