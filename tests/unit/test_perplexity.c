/* Perplexity: the chunked, batched scoring (app/perplexity.c) against a plain token-by-token
 * evaluation of the same chunks on a small random model, plus the per-token NLL on hand-made
 * logits. KL-divergence base files: KL on hand-made logits; a saved base read back byte for
 * byte (header, tokens with BOS, logits equal to a one-by-one evaluation); a run compared with
 * its own base (KL 0, same top-1, same PPL) and with another model's (mean, p99 and max KL
 * equal to a plain recomputation from the two sets of logits); broken base files refused with
 * a message naming the file. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "app/perplexity.h"
#include "check.h"
#include "infer/infer.h"
#include "infer/model.h"

static void test_nll(void) {
    float flat[4] = {0, 0, 0, 0};
    CHECK_NEAR(perplexity_token_nll(flat, 4, 2), log(4.0), 1e-12);
    float l[3] = {(float)log(0.5), (float)log(0.3), (float)log(0.2)};
    CHECK_NEAR(perplexity_token_nll(l, 3, 1), -log(0.3), 1e-6);
    float big[2] = {1000.0f, 990.0f}; /* no overflow */
    CHECK_NEAR(perplexity_token_nll(big, 2, 0), log1p(exp(-10.0)), 1e-9);
}

static void test_kl_hand(void) {
    float a[2] = {0, 0}, b[2] = {(float)log(0.25), (float)log(0.75)};
    CHECK_NEAR(perplexity_kl(a, a, 2), 0, 1e-15);
    CHECK_NEAR(perplexity_kl(a, b, 2), 0.5 * log(0.5 / 0.25) + 0.5 * log(0.5 / 0.75), 1e-7);
    float c[3] = {1000.0f, 999.0f, -5.0f}, d[3] = {0.0f, -1.0f, -1005.0f}; /* shift-invariant */
    CHECK_NEAR(perplexity_kl(c, d, 3), 0, 1e-12);
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(p, 1, n, f) == n);
    fclose(f);
}

/* Saves a base with model a, checks its bytes, compares a and then b with it. */
static void test_kl_files(Model *ma, Model *mb, const int32_t *tokens, size_t n_tok, int n_ctx) {
    const int V = ma->cfg.vocab_size;
    Err err = {{0}};
    char path[] = "/tmp/bn-kl-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    InferOptions o = {.backend = BACKEND_CPU, .threads = 1, .ctx = n_ctx};
    Infer *ia = infer_create(ma, &o, &err), *ib = infer_create(mb, &o, &err);
    REQUIRE(ia && ib);
    PplKl save = {path, NULL};
    PplResult ra, rb, rs;
    PplKlResult k;
    REQUIRE(perplexity_run_kl(ia, V, tokens, n_tok, n_ctx, 1, &save, NULL, NULL, &ra, NULL, &err) == 0);

    /* the bytes: header, tokens as evaluated (BOS first in each chunk), logits of the scored
     * positions as a one-by-one evaluation gives them */
    const int n_chunks = (int)(n_tok / (size_t)n_ctx), per = n_ctx - 1 - n_ctx / 2;
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    unsigned char h[24];
    REQUIRE(fread(h, 1, 24, f) == 24);
    CHECK(!memcmp(h, "BNKLDIV1", 8));
    uint32_t hv[4];
    memcpy(hv, h + 8, 16);
    CHECK(hv[0] == (uint32_t)V && hv[1] == (uint32_t)n_ctx && hv[2] == (uint32_t)n_chunks && hv[3] == 0);
    int32_t *ft = malloc((size_t)n_chunks * n_ctx * 4);
    float *fl = malloc((size_t)n_chunks * per * V * 4), *la = malloc((size_t)V * 4);
    REQUIRE(ft && fl && la);
    REQUIRE(fread(ft, 4, (size_t)n_chunks * n_ctx, f) == (size_t)n_chunks * n_ctx);
    REQUIRE(fread(fl, 4, (size_t)n_chunks * per * V, f) == (size_t)n_chunks * per * V);
    CHECK(fgetc(f) == EOF);
    fclose(f);
    int tok_ok = 1;
    double worst = 0;
    for (int c = 0; c < n_chunks; c++)
        for (int j = 0; j < n_ctx; j++) {
            int32_t want = j == 0 ? 1 : tokens[(size_t)c * n_ctx + j];
            tok_ok &= ft[(size_t)c * n_ctx + j] == want;
            if (j == n_ctx - 1) continue;
            REQUIRE(infer_eval(ia, &want, 1, j, NULL, &err) == 0);
            if (j < n_ctx / 2) continue;
            const float *got = fl + ((size_t)c * per + (size_t)(j - n_ctx / 2)) * V;
            for (int v = 0; v < V; v++)
                worst = fmax(worst, fabs((double)got[v] - infer_logits(ia)[v]));
        }
    CHECK(tok_ok);
    CHECK_MSG(worst < 1e-3, "saved logits differ from a one-by-one run by %g", worst);

    /* the same model against its own base: nothing differs */
    PplKlBase base;
    REQUIRE(ppl_kl_base_open(&base, path, &err) == 0);
    CHECK(base.n_vocab == V && base.n_ctx == n_ctx && base.n_chunks == n_chunks);
    PplKl cmp = {NULL, &base};
    REQUIRE(perplexity_run_kl(ia, V, base.tokens, (size_t)n_chunks * n_ctx, n_ctx, -1, &cmp, NULL,
                              NULL, &rs, &k, &err) == 0);
    CHECK(k.n == (long)n_chunks * per && k.kl_mean == 0 && k.kl_max == 0 && k.top1 == 1.0);
    CHECK_NEAR(k.base_ppl, ra.ppl, 1e-9 * ra.ppl);
    CHECK_NEAR(rs.ppl, ra.ppl, 1e-9 * ra.ppl);
    ppl_kl_base_close(&base);

    /* another model: the summary equals a plain recomputation from both sets of logits */
    REQUIRE(ppl_kl_base_open(&base, path, &err) == 0);
    REQUIRE(perplexity_run_kl(ib, V, base.tokens, (size_t)n_chunks * n_ctx, n_ctx, -1, &cmp, NULL,
                              NULL, &rb, &k, &err) == 0);
    double *kl = malloc((size_t)n_chunks * per * sizeof *kl), sum = 0;
    long same = 0, n = 0;
    for (int c = 0; c < n_chunks; c++)
        for (int j = 0; j < n_ctx - 1; j++) {
            REQUIRE(infer_eval(ib, &base.tokens[(size_t)c * n_ctx + j], 1, j, NULL, &err) == 0);
            if (j < n_ctx / 2) continue;
            const float *bl = fl + ((size_t)c * per + (size_t)(j - n_ctx / 2)) * V;
            memcpy(la, infer_logits(ib), (size_t)V * 4);
            double lb = 0, lt = 0, xb, xt;
            int ab = 0, at = 0;
            for (int v = 1; v < V; v++) {
                if (bl[v] > bl[ab]) ab = v;
                if (la[v] > la[at]) at = v;
            }
            xb = bl[ab], xt = la[at];
            for (int v = 0; v < V; v++) lb += exp(bl[v] - xb), lt += exp(la[v] - xt);
            double d = 0;
            for (int v = 0; v < V; v++) {
                double pb = (bl[v] - xb) - log(lb), pt = (la[v] - xt) - log(lt);
                d += exp(pb) * (pb - pt);
            }
            kl[n++] = d;
            sum += d;
            same += ab == at;
        }
    qsort(kl, (size_t)n, sizeof *kl, cmp_d);
    CHECK_EQ_INT(k.n, n);
    CHECK_MSG(k.kl_mean > 0 && fabs(k.kl_mean - sum / n) <= 1e-3 * k.kl_mean, "mean KL %g vs %g",
              k.kl_mean, sum / n);
    const long r99 = (long)ceil(0.99 * (double)n);
    CHECK_NEAR(k.kl_p99, kl[r99 - 1], 1e-3 * kl[r99 - 1] + 1e-9);
    CHECK_NEAR(k.kl_max, kl[n - 1], 1e-3 * kl[n - 1] + 1e-9);
    CHECK_NEAR(k.top1, (double)same / n, 1e-12);
    CHECK_NEAR(k.base_ppl, ra.ppl, 1e-9 * ra.ppl);
    ppl_kl_base_close(&base);

    /* a base made with another context or vocabulary is refused */
    REQUIRE(ppl_kl_base_open(&base, path, &err) == 0);
    CHECK(perplexity_run_kl(ib, V, base.tokens, (size_t)n_chunks * n_ctx, n_ctx / 2, -1, &cmp,
                            NULL, NULL, &rb, &k, &err) < 0 && strstr(err.msg, path));
    ppl_kl_base_close(&base);

    /* broken files: each refused with a message naming the file */
    const size_t full = 24 + (size_t)n_chunks * n_ctx * 4 + (size_t)n_chunks * per * V * 4;
    unsigned char *bytes = malloc(full);
    f = fopen(path, "rb");
    REQUIRE(f && fread(bytes, 1, full, f) == full);
    fclose(f);
    write_bytes(path, bytes, full - 4); /* truncated */
    CHECK(ppl_kl_base_open(&base, path, &err) < 0 && strstr(err.msg, path) && strstr(err.msg, "bytes"));
    bytes[0] = 'X'; /* not a base file */
    write_bytes(path, bytes, full);
    CHECK(ppl_kl_base_open(&base, path, &err) < 0 && strstr(err.msg, "BNKLDIV1"));
    bytes[0] = 'B';
    int32_t bad = V + 5; /* a token outside the vocabulary */
    memcpy(bytes + 24 + 4 * 3, &bad, 4);
    write_bytes(path, bytes, full);
    CHECK(ppl_kl_base_open(&base, path, &err) < 0 && strstr(err.msg, "outside the vocabulary"));
    CHECK(ppl_kl_base_open(&base, "/nonexistent/base.kl", &err) < 0 && strstr(err.msg, "/nonexistent/base.kl"));
    /* a base that cannot be written completely is reported and not left behind */
    PplKl nosave = {"/nonexistent-dir/x.kl", NULL};
    CHECK(perplexity_run_kl(ia, V, tokens, n_tok, n_ctx, 1, &nosave, NULL, NULL, &rs, NULL, &err) < 0 &&
          strstr(err.msg, "/nonexistent-dir/x.kl"));
    if (access("/dev/full", W_OK) == 0) {
        PplKl full_dev = {"/dev/full", NULL};
        CHECK(perplexity_run_kl(ia, V, tokens, n_tok, n_ctx, 1, &full_dev, NULL, NULL, &rs, NULL, &err) < 0 &&
              strstr(err.msg, "write error"));
    }
    free(bytes);
    free(kl);
    free(ft);
    free(fl);
    free(la);
    remove(path);
    infer_destroy(ia);
    infer_destroy(ib);
}

int main(void) {
    test_nll();
    test_kl_hand();
    ModelConfig c = model_config_tiny(); /* with a small vocabulary and context */
    c.vocab_size = 300;
    c.ctx_len = 64;
    c.bos_id = 1;
    c.n_stop = 0;
    Model m;
    Err err = {{0}};
    REQUIRE(model_init_random(&m, &c, 77, &err) == 0);
    const int n_ctx = 32;
    InferOptions o = {.backend = BACKEND_CPU, .threads = 1, .ctx = n_ctx};
    Infer *inf = infer_create(&m, &o, &err);
    REQUIRE(inf);
    const size_t n_tok = 3 * (size_t)n_ctx + 7; /* the tail that is not a whole chunk is unused */
    int32_t tokens[3 * 32 + 7];
    uint64_t x = 5;
    for (size_t i = 0; i < n_tok; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((x >> 33) % (uint64_t)c.vocab_size);
    }
    tokens[0] = 1;
    int32_t saved[3 * 32 + 7];
    memcpy(saved, tokens, sizeof tokens);

    PplResult r;
    REQUIRE(perplexity_run(inf, c.vocab_size, tokens, n_tok, n_ctx, 1, NULL, NULL, &r, &err) == 0);
    CHECK(memcmp(saved, tokens, sizeof tokens) == 0);
    CHECK_EQ_INT(r.n_chunks, 3);
    CHECK_EQ_INT(r.n_scored, 3 * (n_ctx - 1 - n_ctx / 2));

    /* the plain way: one token at a time, BOS at the start of every chunk */
    double nll = 0;
    long count = 0;
    for (int ch = 0; ch < 3; ch++) {
        for (int j = 0; j < n_ctx - 1; j++) {
            int32_t t = j == 0 ? 1 : tokens[ch * n_ctx + j];
            REQUIRE(infer_eval(inf, &t, 1, j, NULL, &err) == 0);
            if (j >= n_ctx / 2) {
                nll += perplexity_token_nll(infer_logits(inf), c.vocab_size, tokens[ch * n_ctx + j + 1]);
                count++;
            }
        }
    }
    CHECK_EQ_INT(count, r.n_scored);
    double mean = nll / (double)count;
    CHECK_MSG(fabs(mean - r.mean_nll) <= 1e-3 * fabs(mean), "batched %.6f, one by one %.6f",
              r.mean_nll, mean);
    CHECK_NEAR(r.ppl, exp(r.mean_nll), 1e-9 * r.ppl);
    CHECK(r.ppl_stderr > 0);

    /* too few tokens, too small a context */
    CHECK(perplexity_run(inf, c.vocab_size, tokens, n_ctx - 1, n_ctx, 1, NULL, NULL, &r, &err) < 0);
    CHECK(perplexity_run(inf, c.vocab_size, tokens, n_tok, 4, 1, NULL, NULL, &r, &err) < 0);
    CHECK(perplexity_run(inf, c.vocab_size, tokens, n_tok, 64, 1, NULL, NULL, &r, &err) < 0);
    infer_destroy(inf);

    Model m2;
    REQUIRE(model_init_random(&m2, &c, 78, &err) == 0);
    test_kl_files(&m, &m2, saved, n_tok, n_ctx);
    model_free(&m2);
    model_free(&m);
    return check_report("test_perplexity");
}
