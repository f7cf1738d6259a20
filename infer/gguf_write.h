/* Writes a loaded Model as a GGUF v3 file in the layout of Microsoft's official BitNet GGUF:
 * arch "bitnet-b1.58", I2_S (type 36) ternary matrices (codes, then the f32 scale, then padding
 * to +32 bytes), F16 token embedding (BF16/F32 kept only when F16 would change a value), F32
 * norms, general.alignment 32, the full tokenizer (gpt2 BPE, tokens, token types, merges,
 * bos/eos/eot, pre "llama-bpe" for Llama 3 vocabularies) and the BitNet chat template
 * (User:/Assistant: turns closed by <|eot_id|>). The Llama-style families (SiLU, no sub-norms:
 * Llama3-8B-1.58, Falcon3, Falcon-E) are written as bitnet.cpp writes them: arch "llama", q/k
 * rows permuted llama.cpp's way, an untied "output" lm_head, and the model's own chat
 * template. 1bitLLM-style models (SiLU with sub-norms) are refused.
 * The file is written to a temporary name in the target directory, synced, then renamed, so a
 * failure (full disk, bad path) leaves no partial OUT behind. */
#ifndef BN_GGUF_WRITE_H
#define BN_GGUF_WRITE_H

#include <stddef.h>

#include "infer/err.h"
#include "infer/model.h"

/* The chat template written into converted files (Jinja, as in tokenizer_config.json). */
extern const char *const BITNET_CHAT_TEMPLATE;

/* note (may be NULL, cap bytes) receives a short remark, e.g. that the embedding was kept in
 * BF16 because F16 cannot hold it exactly. */
/* Checks that out_path may be written by gguf_write_model: missing (or a dangling link), or a
 * regular file (a link to one is followed; resolved, when not NULL, gets the path that will be
 * replaced). A directory, device, FIFO or socket is refused with a message naming the path.
 * Returns 0 or -1 with err set. gguf_write_model calls it first. */
int gguf_write_check_output(const char *out_path, char *resolved, size_t cap, Err *err);

/* Removes the temporary file of a gguf_write_model in progress, if any. Async-signal-safe:
 * for a SIGINT/SIGTERM handler, so an interrupted convert leaves no hidden partial file (which
 * can be gigabytes) beside the output. */
void gguf_write_remove_partial(void);

int gguf_write_model(const Model *m, const char *out_path, char *note, size_t note_cap, Err *err);

/* Compares what a loader produced: config shapes, ternary codes (logical n_out x n_in) and
 * scales bit for bit, norms and embedding/lm_head values (as f32) bit for bit. Returns 0 when
 * equal, else -1 with the first difference in why. */
int model_weights_equal(const Model *a, const Model *b, char *why, size_t cap);

#endif
