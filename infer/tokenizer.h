/* Byte-level BPE tokenizer of the Llama 3 family (BitNet-b1.58-2B-4T): 128000 merge-ranked
 * tokens + 256 special tokens, Llama 3 pre-tokenizer regex (PCRE2, Unicode). Built from GGUF
 * metadata (tokenizer.ggml.*) or from an HF tokenizer.json. Immutable after creation, so one
 * Tokenizer may be used from several threads. */
#ifndef BN_TOKENIZER_H
#define BN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"

typedef struct Tokenizer Tokenizer;

/* GGUF token types (tokenizer.ggml.token_type). */
enum { TOKTYPE_NORMAL = 1, TOKTYPE_UNKNOWN = 2, TOKTYPE_CONTROL = 3, TOKTYPE_USER = 4,
       TOKTYPE_UNUSED = 5, TOKTYPE_BYTE = 6 };

/* The vocabulary as stored in files: token strings in GPT-2 byte-to-unicode form (as in
 * tokenizer.json and tokenizer.ggml.tokens), merges as "left right". Arrays are borrowed for
 * the duration of tokenizer_from_vocab only. */
typedef struct {
    int n_tokens;
    const char *const *tokens;
    const size_t *token_lens;    /* NULL: NUL-terminated */
    const int32_t *token_types;  /* NULL: ids >= first special are CONTROL, others NORMAL */
    int n_merges;
    const char *const *merges;
    const size_t *merge_lens;    /* NULL: NUL-terminated */
    const char *pre;             /* tokenizer.ggml.pre; NULL or "llama-bpe"/"llama3": Llama 3 regex */
    int bos_id, eos_id, eot_id;  /* -1 when unknown; eot is looked up by name when -1 */
    int ignore_merges;           /* Llama 3: a pre-token that is itself a token is taken whole
                                    (always on with the Llama 3 pre-tokenizer, as in tiktoken) */
} TokenizerVocab;

Tokenizer *tokenizer_from_vocab(const TokenizerVocab *v, Err *err);
/* tokenizer.json (reads tokenizer_config.json beside it when present, for bos/eos). */
Tokenizer *tokenizer_load_json(const char *path, Err *err);
/* The same from memory: json is the text of a tokenizer.json (len bytes, need not be
 * NUL-terminated); config_json, when not NULL, is the NUL-terminated text of a
 * tokenizer_config.json. A malformed or hostile buffer gives an error, never a crash. */
Tokenizer *tokenizer_load_json_buffer(const char *json, size_t len, const char *config_json,
                                      Err *err);
void tokenizer_free(Tokenizer *t);
/* Whether a loaded vocabulary can encode any text and decode unambiguously: no empty or
 * repeated ordinary token, a token for each of the 256 bytes, no special text twice. Model
 * loaders call it so that such a file is refused at load, named, rather than failing on the
 * first text that needs a missing byte. Returns 0, or -1 with "tokenizer: ..." in err. */
int tokenizer_check(const Tokenizer *t, Err *err);

/* A SentencePiece model (infer/tokenizer_spm.h: tokenizer.model, or GGUF tokenizer.ggml.model
 * "llama") as a Tokenizer; takes ownership of s (freed on failure too). tokenizer_vocab gives
 * NULL for it (GGUF writing handles byte-level BPE vocabularies only), pretokenize an error. */
typedef struct SpmModel SpmModel;
Tokenizer *tokenizer_from_spm(SpmModel *s, Err *err);
/* The SentencePiece model behind t, NULL for a byte-level BPE one. */
const SpmModel *tokenizer_spm(const Tokenizer *t);

/* Encodes plain text. Special-token strings in the text (e.g. "<|eot_id|>") are encoded as
 * ordinary text: specials are only ever inserted by the chat template. *ids is malloc'ed. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int32_t **ids,
                     size_t *n_ids, Err *err);

/* The plain reference the fast path is tested against: PCRE2 for every pre-token and
 * O(n^2) merging by rank (lowest rank first, leftmost on ties). Same contract; slow. */
int tokenizer_encode_reference(const Tokenizer *t, const char *text, size_t len, int32_t **ids,
                               size_t *n_ids, Err *err);
/* Pre-tokenization only (for tests and benchmarks): *bounds gets n+1 offsets, piece i being
 * text[bounds[i], bounds[i+1]). reference != 0 uses PCRE2 for every piece. *bounds is
 * malloc'ed. */
int tokenizer_pretokenize(const Tokenizer *t, const char *text, size_t len, int reference,
                          size_t **bounds, size_t *n_pieces, Err *err);

int tokenizer_n_vocab(const Tokenizer *t);
int tokenizer_bos(const Tokenizer *t);   /* -1 if none */
int tokenizer_eos(const Tokenizer *t);   /* <|end_of_text|> or the file's eos */
int tokenizer_eot(const Tokenizer *t);   /* <|eot_id|>, -1 if absent */
int tokenizer_find(const Tokenizer *t, const char *token_text); /* exact token string -> id, -1 */
int tokenizer_is_special(const Tokenizer *t, int id);

/* Raw bytes a token stands for (specials: their text). NULL for an out-of-range id. */
const char *tokenizer_token_bytes(const Tokenizer *t, int id, size_t *len);

/* The vocabulary back in file form (for writing GGUF). Valid while t lives. */
const TokenizerVocab *tokenizer_vocab(const Tokenizer *t);

#endif
