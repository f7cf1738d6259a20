/* SentencePiece tokenizer of the LLaMA / LLaMA-2 kind (1bitLLM's bitnet_b1_58 models): a BPE
 * model whose pieces carry scores, with byte fallback. Read from a SentencePiece
 * `tokenizer.model` (protobuf ModelProto) or from GGUF metadata (tokenizer.ggml.model "llama":
 * tokens, scores, token types). Wrapped as a Tokenizer by tokenizer_from_spm (tokenizer.h),
 * so callers see one tokenizer type.
 *
 * Encoding, as sentencepiece's BPE model does it:
 *   - normalization: the identity (models with a normalization rule such as NFKC are refused),
 *     runs of whitespace collapsed and the ends stripped when remove_extra_whitespaces is set,
 *     a leading space added when add_dummy_prefix is set, then every ' ' written as U+2581;
 *   - the text is split into UTF-8 characters, and the adjacent pair whose concatenation is a
 *     piece with the highest score is merged, leftmost first on equal scores, until no pair is
 *     a piece;
 *   - a symbol that is not a piece becomes its bytes' <0xXX> pieces (byte fallback), or the
 *     unknown piece when the model has no byte pieces.
 * Control pieces (<s>, </s>) are never produced from text. */
#ifndef BN_TOKENIZER_SPM_H
#define BN_TOKENIZER_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"

typedef struct SpmModel SpmModel;

/* A SentencePiece model file (tokenizer.model). */
SpmModel *spm_load_file(const char *path, Err *err);
/* The same from memory (the file's bytes). */
SpmModel *spm_load_buffer(const unsigned char *buf, size_t len, Err *err);
/* From GGUF arrays: n pieces (UTF-8, with U+2581 for spaces), their scores and token types
 * (TOKTYPE_*; NULL = all normal); bos/eos -1 when unknown. */
SpmModel *spm_from_pieces(int n, const char *const *pieces, const size_t *lens,
                          const float *scores, const int32_t *types, int add_dummy_prefix,
                          int bos, int eos, Err *err);
void spm_free(SpmModel *s);

/* The forms a Hugging Face tokenizer.json gives the same models (tokenizer_json.c):
 *   spm_set_merges: BPE whose pairs merge by their rank in merges ("left right", lowest rank
 *     first, leftmost on a tie) rather than by the merged piece's score; a pair whose parts or
 *     result are not mergeable pieces is dropped;
 *   spm_set_unigram: a Unigram model: the segmentation with the highest total score, an
 *     unknown character scoring 10 below the lowest piece, neighbouring unknowns as one
 *     symbol (then bytes, or the unknown piece);
 *   spm_set_prefix: the space prefix: added or not, and (Metaspace) left out when the text
 *     already starts with a space; no whitespace is collapsed. */
int spm_set_merges(SpmModel *s, int n, const char *const *merges, const size_t *lens, Err *err);
void spm_set_unigram(SpmModel *s);
void spm_set_prefix(SpmModel *s, int add_prefix, int unless_space);

/* Whether any text can be encoded: every byte piece (<0x00>..<0xFF>) or an unknown piece.
 * Returns 0, or -1 with "tokenizer: ..." in err. */
int spm_check(const SpmModel *s, Err *err);
int spm_n_vocab(const SpmModel *s);
int spm_bos(const SpmModel *s);
int spm_eos(const SpmModel *s);
int spm_is_special(const SpmModel *s, int id);     /* control pieces */
/* What a piece stands for: U+2581 as ' ', <0xXX> as that byte, control pieces as their text. */
const char *spm_token_bytes(const SpmModel *s, int id, size_t *len);
/* The model as GGUF stores it (tokenizer.ggml.model "llama"): each piece's spelling, score
 * and type, and whether a space prefix is added. spm_gguf_form is 0 when the model encodes as
 * those arrays say (read from tokenizer.model or GGUF), -1 with err when it does not (read from
 * a tokenizer.json: merge ranks, Unigram or Metaspace's prefix rule, which GGUF cannot hold). */
int spm_gguf_form(const SpmModel *s, Err *err);
const char *spm_piece(const SpmModel *s, int id, size_t *len);
float spm_score(const SpmModel *s, int id);
int spm_type(const SpmModel *s, int id);
int spm_add_prefix(const SpmModel *s);
/* A piece by its spelling (e.g. "<s>"), -1 if none. */
int spm_find(const SpmModel *s, const char *piece);
/* *ids is malloc'ed (a valid pointer even for no ids). */
int spm_encode(const SpmModel *s, const char *text, size_t len, int32_t **ids, size_t *n_ids,
               Err *err);

#endif
