/* Perplexity (method in perplexity.h). Logits are fetched for at most PPL_LOGIT_BATCH positions
 * at a time, so memory stays at 64 x vocab floats whatever the context (twice that when a base
 * file is compared). */
#include "app/perplexity.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { PPL_LOGIT_BATCH = 64 };

static const char KL_MAGIC[8] = {'B', 'N', 'K', 'L', 'D', 'I', 'V', '1'};
enum { KL_HEADER = 24 };

double perplexity_token_nll(const float *logits, int n_vocab, int32_t tok) {
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double z = 0;
    for (int i = 0; i < n_vocab; i++) z += exp((double)logits[i] - mx);
    return -((double)logits[tok] - mx - log(z));
}

/* log of the softmax denominator, in double */
static double log_sum_exp(const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double z = 0;
    for (int i = 0; i < n; i++) z += exp((double)x[i] - mx);
    return mx + log(z);
}

double perplexity_kl(const float *base, const float *test, int n_vocab) {
    const double lb = log_sum_exp(base, n_vocab), lt = log_sum_exp(test, n_vocab);
    double kl = 0;
    for (int i = 0; i < n_vocab; i++) {
        const double a = (double)base[i] - lb;
        kl += exp(a) * (a - ((double)test[i] - lt));
    }
    return kl > 0 ? kl : 0; /* rounding can leave -1e-17 for identical inputs */
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int ppl_near_tie(const float *x, int n) {
    float a = -INFINITY, b = -INFINITY, mx = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] > a) b = a, a = x[i];
        else if (x[i] > b) b = x[i];
        if (fabsf(x[i]) > mx) mx = fabsf(x[i]);
    }
    return n > 1 && (double)(a - b) < PPL_KL_NEAR_TIE * (double)mx;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Arrays of int32 / float32 in the file's little-endian order (this program runs only on
 * little-endian hosts: x86-64 and aarch64 Linux; the static check keeps it honest). */
_Static_assert(sizeof(float) == 4 && sizeof(int32_t) == 4, "32-bit floats and ints");

int ppl_kl_base_open(PplKlBase *b, const char *path, Err *err) {
    memset(b, 0, sizeof *b);
    snprintf(b->path, sizeof b->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, "%s: %s", path, strerror(errno));
    struct stat st;
    unsigned char h[KL_HEADER];
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(err, "%s: not a regular file", path);
    }
    if (fread(h, 1, sizeof h, f) != sizeof h || memcmp(h, KL_MAGIC, 8)) {
        fclose(f);
        return err_set(err, "%s: not a KL-divergence base file (no BNKLDIV1 header)", path);
    }
    const uint32_t nv = get_u32(h + 8), nc = get_u32(h + 12), nch = get_u32(h + 16);
    if (nv < 1 || nv > (1u << 22) || nc < PPL_MIN_CTX || nc > (1u << 20) || nch < 1 ||
        nch > (1u << 20) || get_u32(h + 20) != 0) {
        fclose(f);
        return err_set(err, "%s: implausible header (vocab %u, ctx %u, chunks %u)", path, nv, nc, nch);
    }
    const uint64_t scored = (uint64_t)nch * (nc - 1 - nc / 2);
    const uint64_t want = KL_HEADER + (uint64_t)nch * nc * 4 + scored * nv * 4;
    if ((uint64_t)st.st_size != want) {
        fclose(f);
        return err_set(err, "%s: %llu bytes, but vocab %u, ctx %u and %u chunks need %llu", path,
                       (unsigned long long)st.st_size, nv, nc, nch, (unsigned long long)want);
    }
    b->tokens = malloc((size_t)nch * nc * sizeof *b->tokens);
    if (!b->tokens) {
        fclose(f);
        return err_set(err, "%s: out of memory", path);
    }
    if (fread(b->tokens, 4, (size_t)nch * nc, f) != (size_t)nch * nc) {
        free(b->tokens);
        b->tokens = NULL;
        fclose(f);
        return err_set(err, "%s: read error", path);
    }
    for (size_t i = 0; i < (size_t)nch * nc; i++)
        if (b->tokens[i] < 0 || (uint32_t)b->tokens[i] >= nv) {
            err_set(err, "%s: token %d at %zu is outside the vocabulary of %u", path, b->tokens[i], i, nv);
            free(b->tokens);
            b->tokens = NULL;
            fclose(f);
            return -1;
        }
    b->n_vocab = (int)nv;
    b->n_ctx = (int)nc;
    b->n_chunks = (int)nch;
    b->f = f;
    return 0;
}

void ppl_kl_base_close(PplKlBase *b) {
    if (b->f) fclose(b->f);
    free(b->tokens);
    b->f = NULL;
    b->tokens = NULL;
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int perplexity_run(Infer *inf, int n_vocab, const int32_t *tokens, size_t n_tokens, int n_ctx,
                   int bos, PplChunkFn on_chunk, void *user, PplResult *out, Err *err) {
    return perplexity_run_kl(inf, n_vocab, tokens, n_tokens, n_ctx, bos, NULL, on_chunk, user, out,
                             NULL, err);
}

int perplexity_run_kl(Infer *inf, int n_vocab, const int32_t *tokens, size_t n_tokens, int n_ctx,
                      int bos, const PplKl *kl, PplChunkFn on_chunk, void *user, PplResult *out,
                      PplKlResult *klr, Err *err) {
    memset(out, 0, sizeof *out);
    if (klr) memset(klr, 0, sizeof *klr);
    if (n_ctx < PPL_MIN_CTX) return err_set(err, "perplexity: context %d is too small", n_ctx);
    if (n_tokens < (size_t)n_ctx)
        return err_set(err, "perplexity: %zu tokens, at least %d needed", n_tokens, n_ctx);
    if (infer_ctx(inf) < n_ctx)
        return err_set(err, "perplexity: the runtime holds %d positions, %d needed", infer_ctx(inf),
                       n_ctx);
    size_t n_chunks = n_tokens / (size_t)n_ctx;
    if (n_chunks > 0x7fffffff) n_chunks = 0x7fffffff;
    PplKlBase *base = kl ? kl->base : NULL;
    const char *save = kl ? kl->save_path : NULL;
    /* a run may score the first chunks of a base only (--chunks) */
    if (base && (base->n_vocab != n_vocab || base->n_ctx != n_ctx || (size_t)base->n_chunks < n_chunks))
        return err_set(err, "%s: made with vocab %d, ctx %d, %d chunks; this run has vocab %d, ctx %d, "
                            "%zu chunks", base->path, base->n_vocab, base->n_ctx, base->n_chunks,
                       n_vocab, n_ctx, n_chunks);
    const size_t per_chunk = (size_t)(n_ctx - 1 - n_ctx / 2);
    float *logits = malloc((size_t)PPL_LOGIT_BATCH * (size_t)n_vocab * sizeof *logits);
    float *blog = base ? malloc((size_t)PPL_LOGIT_BATCH * (size_t)n_vocab * sizeof *blog) : NULL;
    double *kls = base ? malloc(n_chunks * per_chunk * sizeof *kls) : NULL;
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    FILE *sf = NULL;
    int rc = 0, created = 0;
    if (!logits || !chunk || (base && (!blog || !kls))) {
        rc = err_set(err, "perplexity: out of memory");
        goto done;
    }
    if (save) {
        sf = fopen(save, "wb");
        if (!sf) {
            rc = err_set(err, "%s: %s", save, strerror(errno));
            goto done;
        }
        created = 1;
        unsigned char h[KL_HEADER];
        memcpy(h, KL_MAGIC, 8);
        put_u32(h + 8, (uint32_t)n_vocab);
        put_u32(h + 12, (uint32_t)n_ctx);
        put_u32(h + 16, (uint32_t)n_chunks);
        put_u32(h + 20, 0);
        int ok = fwrite(h, 1, sizeof h, sf) == sizeof h;
        for (size_t c = 0; ok && c < n_chunks; c++) {
            memcpy(chunk, tokens + c * (size_t)n_ctx, (size_t)n_ctx * sizeof *chunk);
            if (bos >= 0) chunk[0] = bos;
            ok = fwrite(chunk, 4, (size_t)n_ctx, sf) == (size_t)n_ctx;
        }
        if (!ok) {
            rc = err_set(err, "%s: write error: %s", save, strerror(errno));
            goto done;
        }
    }
    double nll = 0, nll2 = 0, bnll = 0, ksum = 0, ksum2 = 0;
    long count = 0, evaluated = 0, same_top = 0, n_clear = 0, same_clear = 0;
    int first = n_ctx / 2;
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
            if (rc) break;
            evaluated += n;
            const size_t nf = (size_t)n * (size_t)n_vocab;
            if (sf && fwrite(logits, 4, nf, sf) != nf) {
                rc = err_set(err, "%s: write error: %s", save, strerror(errno));
                break;
            }
            if (base && fread(blog, 4, nf, (FILE *)base->f) != nf) {
                rc = err_set(err, "%s: read error", base->path);
                break;
            }
            for (int k = 0; k < n; k++) {
                int32_t next = chunk[j + k + 1];
                if (next < 0 || next >= n_vocab) {
                    rc = err_set(err, "perplexity: token %d outside the vocabulary", next);
                    break;
                }
                const float *lg = logits + (size_t)k * (size_t)n_vocab;
                double v = perplexity_token_nll(lg, n_vocab, next);
                nll += v;
                nll2 += v * v;
                if (base) {
                    const float *bl = blog + (size_t)k * (size_t)n_vocab;
                    const double d = perplexity_kl(bl, lg, n_vocab);
                    kls[count] = d;
                    ksum += d;
                    ksum2 += d * d;
                    const int same = argmax(bl, n_vocab) == argmax(lg, n_vocab);
                    same_top += same;
                    if (!ppl_near_tie(bl, n_vocab)) {
                        n_clear++;
                        same_clear += same;
                    }
                    bnll += perplexity_token_nll(bl, n_vocab, next);
                }
                count++;
            }
        }
        if (rc == 0 && on_chunk)
            on_chunk(user, (int)c, (int)n_chunks, exp(nll / (double)count), seconds_since(&t0));
    }
    if (rc == 0 && sf) {
        FILE *f = sf;
        sf = NULL;
        if (fclose(f) != 0) rc = err_set(err, "%s: write error: %s", save, strerror(errno));
    }
    if (rc != 0) goto done;
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
    if (base && klr) {
        klr->n = count;
        klr->kl_mean = ksum / (double)count;
        double kv = ksum2 / (double)count - klr->kl_mean * klr->kl_mean;
        klr->kl_stderr = count > 1 && kv > 0 ? sqrt(kv / (double)(count - 1)) : 0;
        qsort(kls, (size_t)count, sizeof *kls, cmp_double);
        /* nearest rank: the smallest value with at least 99% of positions at or below it */
        long r = (long)ceil(0.99 * (double)count);
        klr->kl_p99 = kls[(r < 1 ? 1 : r) - 1];
        klr->kl_max = kls[count - 1];
        klr->top1 = (double)same_top / (double)count;
        klr->n_clear = n_clear;
        klr->top1_clear = n_clear ? (double)same_clear / (double)n_clear : 1.0;
        klr->base_ppl = exp(bnll / (double)count);
    }
done:
    if (sf) fclose(sf);
    if (rc != 0 && created) remove(save); /* never leave a partial base file */
    free(logits);
    free(blog);
    free(kls);
    free(chunk);
    return rc ? -1 : 0;
}
