/* Perplexity (method in perplexity.h). Logits are fetched for at most PPL_LOGIT_BATCH positions
 * at a time, so memory stays at 64 x vocab floats whatever the context. */
#include "app/perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { PPL_LOGIT_BATCH = 64 };

double perplexity_token_nll(const float *logits, int n_vocab, int32_t tok) {
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double z = 0;
    for (int i = 0; i < n_vocab; i++) z += exp((double)logits[i] - mx);
    return -((double)logits[tok] - mx - log(z));
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

int perplexity_run(Infer *inf, int n_vocab, const int32_t *tokens, size_t n_tokens, int n_ctx,
                   int bos, PplChunkFn on_chunk, void *user, PplResult *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (n_ctx < PPL_MIN_CTX) return err_set(err, "perplexity: context %d is too small", n_ctx);
    if (n_tokens < (size_t)n_ctx)
        return err_set(err, "perplexity: %zu tokens, at least %d needed", n_tokens, n_ctx);
    if (infer_ctx(inf) < n_ctx)
        return err_set(err, "perplexity: the runtime holds %d positions, %d needed", infer_ctx(inf),
                       n_ctx);
    size_t n_chunks = n_tokens / (size_t)n_ctx;
    if (n_chunks > 0x7fffffff) n_chunks = 0x7fffffff;
    float *logits = malloc((size_t)PPL_LOGIT_BATCH * (size_t)n_vocab * sizeof *logits);
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    if (!logits || !chunk) {
        free(logits);
        free(chunk);
        return err_set(err, "perplexity: out of memory");
    }
    double nll = 0, nll2 = 0;
    long count = 0, evaluated = 0;
    int first = n_ctx / 2, rc = 0;
    struct timespec t_all;
    clock_gettime(CLOCK_MONOTONIC, &t_all);
    for (size_t c = 0; c < n_chunks && rc == 0; c++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        memcpy(chunk, tokens + c * (size_t)n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (bos >= 0) chunk[0] = bos;
        /* the first half only builds context */
        rc = infer_eval(inf, chunk, first, 0, NULL, err);
        evaluated += first;
        for (int j = first; rc == 0 && j < n_ctx - 1; j += PPL_LOGIT_BATCH) {
            int n = n_ctx - 1 - j < PPL_LOGIT_BATCH ? n_ctx - 1 - j : PPL_LOGIT_BATCH;
            rc = infer_eval(inf, chunk + j, n, j, logits, err);
            evaluated += n;
            for (int k = 0; rc == 0 && k < n; k++) {
                int32_t next = chunk[j + k + 1];
                if (next < 0 || next >= n_vocab) {
                    rc = err_set(err, "perplexity: token %d outside the vocabulary", next);
                    break;
                }
                double v = perplexity_token_nll(logits + (size_t)k * (size_t)n_vocab, n_vocab, next);
                nll += v;
                nll2 += v * v;
                count++;
            }
        }
        if (rc == 0 && on_chunk)
            on_chunk(user, (int)c, (int)n_chunks, exp(nll / (double)count), seconds_since(&t0));
    }
    free(logits);
    free(chunk);
    if (rc != 0) return -1;
    double mean = nll / (double)count;
    double var = nll2 / (double)count - mean * mean;
    double se = count > 1 && var > 0 ? sqrt(var / (double)(count - 1)) : 0;
    out->mean_nll = mean;
    out->ppl = exp(mean);
    out->ppl_stderr = out->ppl * se;
    out->n_scored = count;
    out->n_evaluated = evaluated;
    out->n_chunks = (int)n_chunks;
    out->seconds = seconds_since(&t_all);
    return 0;
}
