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

/* ---- KL-divergence base files (perplexity --kl-divergence-base / --kl-divergence) ----------
 * A base file holds the tokens of a perplexity run and the logits of every scored position, so
 * that another run (another engine, backend, quantization or option) can be compared with it
 * position by position. Layout, all little-endian, no padding:
 *   offset 0   8 bytes   magic "BNKLDIV1"
 *          8   uint32    n_vocab
 *         12   uint32    n_ctx      (tokens per chunk, >= PPL_MIN_CTX)
 *         16   uint32    n_chunks
 *         20   uint32    0          (reserved)
 *         24   int32     tokens[n_chunks * n_ctx]: the tokens exactly as evaluated (a BOS, when
 *                        the model has one, already in the first slot of every chunk)
 *          then float32  logits[n_chunks][n_ctx - 1 - n_ctx/2][n_vocab]: for each chunk, the
 *                        raw logits (before softmax) at positions j = n_ctx/2 .. n_ctx-2, where
 *                        the logits at j predict token j + 1 of the chunk.
 * The file size must be exactly what the header implies. tests/oracle/write_kl_base.py writes
 * one from transformers' logits. */
typedef struct {
    int n_vocab, n_ctx, n_chunks;
    int32_t *tokens;          /* n_chunks * n_ctx */
    void *f;                  /* FILE *, at the first logit */
    char path[1024];
} PplKlBase;

int ppl_kl_base_open(PplKlBase *b, const char *path, Err *err);
void ppl_kl_base_close(PplKlBase *b);

typedef struct {
    const char *save_path;    /* write a base file here (NULL: none) */
    PplKlBase *base;          /* compare with this base (NULL: none); its n_vocab and n_ctx must
                               * match the run's, it must hold at least the run's chunks (the
                               * first ones are compared), and tokens should be base->tokens
                               * with bos -1 */
} PplKl;

/* A position whose base top-2 logits lie within this fraction of the base's largest |logit| is
 * a near-tie: there an int8 activation that rounds the other way (float summation order; 1-4%
 * of the logit range, README "Agreement with transformers") may swap the two, whichever engine
 * is right. Top-1 agreement is also reported without them. */
#define PPL_KL_NEAR_TIE 0.01
/* 1 when the top two of x[0..n) are closer than PPL_KL_NEAR_TIE of its largest |value|: a
 * position where two correct engines may pick different tokens. */
int ppl_near_tie(const float *x, int n);

typedef struct {
    long n;                   /* positions compared */
    long n_clear;             /* positions that are not near-ties in the base */
    double top1_clear;        /* argmax agreement over those */
    double kl_mean, kl_stderr, kl_p99, kl_max;   /* KL(base || this run), nats per position */
    double top1;              /* fraction of positions whose argmax agrees */
    double base_ppl;          /* the perplexity the base logits give the same tokens */
} PplKlResult;

/* KL(p || q) in nats of the softmaxes of two logit vectors, in double. */
double perplexity_kl(const float *base, const float *test, int n_vocab);

/* Called after each chunk with the running perplexity and the seconds that chunk took. */
typedef void (*PplChunkFn)(void *user, int chunk, int n_chunks, double running_ppl, double secs);

/* inf must have a context of at least n_ctx. tokens is not modified. Returns 0, or -1 with err
 * (fewer than n_ctx tokens, n_ctx too small, an evaluation error). */
int perplexity_run(Infer *inf, int n_vocab, const int32_t *tokens, size_t n_tokens, int n_ctx,
                   int bos, PplChunkFn on_chunk, void *user, PplResult *out, Err *err);

/* perplexity_run that also writes a base file and/or compares with one (kl may be NULL; klr
 * receives the comparison when kl->base is set). A base file that cannot be written completely
 * is removed and reported. */
int perplexity_run_kl(Infer *inf, int n_vocab, const int32_t *tokens, size_t n_tokens, int n_ctx,
                      int bos, const PplKl *kl, PplChunkFn on_chunk, void *user, PplResult *out,
                      PplKlResult *klr, Err *err);

/* -log softmax(logits)[tok], in double. */
double perplexity_token_nll(const float *logits, int n_vocab, int32_t tok);

#endif
