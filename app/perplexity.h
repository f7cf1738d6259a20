/* Perplexity of a token sequence, by llama.cpp's method so that figures compare: the tokens are
 * cut into chunks of n_ctx, the first token of each chunk is set to BOS (when there is one), and
 * only the second half of each chunk is scored (the logits at position j score token j + 1 for
 * j = n_ctx/2 .. n_ctx-2), so every scored token has at least n_ctx/2 tokens of context.
 * PPL = exp(mean negative log-likelihood); the +/- is the standard error of that mean carried
 * through exp (ppl * stderr). */
#ifndef BN_PERPLEXITY_H
#define BN_PERPLEXITY_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"
#include "infer/infer.h"

enum { PPL_DEFAULT_CTX = 512, PPL_MIN_CTX = 8 };

typedef struct {
    double ppl, ppl_stderr;
    double mean_nll;
    long n_scored;       /* tokens scored */
    long n_evaluated;    /* tokens run through the model */
    int n_chunks;
    double seconds;
} PplResult;

/* Called after each chunk with the running perplexity and the seconds that chunk took. */
typedef void (*PplChunkFn)(void *user, int chunk, int n_chunks, double running_ppl, double secs);

/* inf must have a context of at least n_ctx. tokens is not modified. Returns 0, or -1 with err
 * (fewer than n_ctx tokens, n_ctx too small, an evaluation error). */
int perplexity_run(Infer *inf, int n_vocab, const int32_t *tokens, size_t n_tokens, int n_ctx,
                   int bos, PplChunkFn on_chunk, void *user, PplResult *out, Err *err);

/* -log softmax(logits)[tok], in double. */
double perplexity_token_nll(const float *logits, int n_vocab, int32_t tok);

#endif
