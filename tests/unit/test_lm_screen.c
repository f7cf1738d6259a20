/* The screened exact lm_head of the CPU backend (backend_cpu.c; kernels_cpu.h states the bound):
 *   1. the per-row dot of the candidates (dense_dot_row) equals, bit for bit, the whole head's
 *      GEMV value for every row, on every ISA this CPU runs (scalar, AVX2, AVX-512);
 *   2. the bound constants: the fast twin against the reference;
 *   3. the bound invariant: for every row of every decode step (the demo model, 300 steps; a
 *      2B-shaped model with fewer layers and a smaller vocabulary, 60 steps; the same with rows
 *      exactly representable in int8, where only the float-rounding term of the bound is left;
 *      every ISA) the exact logit lies in [a - b, a + b]; and the check has teeth: with B_r
 *      shrunk to 1/64 (to 0 on the exact-int8 rows) it finds violations (with the quantization term E_r dropped from B_r the
 *      test failed on 1.6 million rows and 7 tokens, checked by hand);
 *   4. token identity: the screened backend and the one with InferOptions.lm_head_full give the
 *      same token sequences, over hundreds of tokens, for greedy, the defaults, top-k 1,
 *      top-k vocab-1, penalties below and above 1, with fixed seeds; the screen did serve
 *      (its counters say so) wherever the setting allows;
 *   5. logits() after a screened pick returns the whole head's logits bit for bit;
 *   6. hostile heads: a NaN row and an inf row (every token falls back, counted), all rows
 *      equal (flat logits: over the cap, counted); the tokens still equal the whole head's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/backend_cpu.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "infer/sampler.h"
#include "kernels/cpu/kernels_cpu.h"

static CpuDenseType dtype(const Model *m) {
    return m->output.type == FT_F16 ? CPU_DENSE_F16 : m->output.type == FT_BF16 ? CPU_DENSE_BF16 : CPU_DENSE_F32;
}

static void *backend(const Model *m, int threads, int full) {
    InferOptions o = {.backend = BACKEND_CPU, .threads = threads, .ctx = 512, .lm_head_full = full};
    Err err = {{0}};
    void *b = backend_cpu_create_ex(m, &o, NULL, &err);
    CHECK_MSG(b != NULL, "%s", err.msg);
    return b;
}

/* The int8 table and the bounds, as the backend makes them at load. */
typedef struct {
    int8_t *q;
    float *scale, *B;
} Tables;

static Tables tables(const Model *m) {
    const int V = m->cfg.vocab_size, D = m->cfg.dim;
    Tables t = {malloc((size_t)V * D), malloc(sizeof(float) * V), malloc(sizeof(float) * V)};
    REQUIRE(t.q && t.scale && t.B);
    lm_head_quant_i8_cpu(dtype(m), m->output.data, V, D, t.q, t.scale);
    lm_head_screen_bound_cpu(dtype(m), m->output.data, t.q, t.scale, V, D, t.B);
    return t;
}

static void tables_free(Tables *t) { free(t->q), free(t->scale), free(t->B); }

/* ---- 1 + 3: per-row dot and the invariant along a greedy decode ------------------------------ */

typedef struct {
    long rows, violations, shrunk_violations, dot_mismatch;
    double worst_ratio; /* max |exact - a| / b */
} Inv;

static void check_token(const Model *m, const Tables *t, CpuPool *pool, const float *x, Inv *inv,
                        float shrink, float *y, float *a) {
    const int V = m->cfg.vocab_size, D = m->cfg.dim;
    dense_gemm_mt(pool, dtype(m), m->output.data, V, D, x, 1, y, V); /* the whole head */
    lm_head_i8_gemv_rows(t->q, t->scale, D, x, 0, V, a);
    const float xn = lm_screen_xnorm(x, D);
    for (int r = 0; r < V; r++) {
        const float d = dense_dot_row(dtype(m), m->output.data, D, x, r);
        if (memcmp(&d, &y[r], sizeof d)) inv->dot_mismatch++;
        const float b = lm_screen_radius(a[r], t->B[r], xn);
        if (!(y[r] >= a[r] - b && y[r] <= a[r] + b)) inv->violations++;
        const float bs = lm_screen_radius(a[r], t->B[r] * shrink, xn);
        if (!(y[r] >= a[r] - bs && y[r] <= a[r] + bs)) inv->shrunk_violations++;
        const double ratio = fabs((double)y[r] - a[r]) / b;
        if (ratio > inv->worst_ratio) inv->worst_ratio = ratio;
        inv->rows++;
    }
}

/* shrink: the factor on B_r that the check must catch */
static void invariant(const char *name, const Model *m, int steps, float shrink) {
    const int V = m->cfg.vocab_size;
    Tables t = tables(m);
    float *y = malloc(sizeof(float) * V), *a = malloc(sizeof(float) * V);
    REQUIRE(y && a);
    const CpuIsa best = cpu_isa_detect();
    long shrunk = 0;
    for (int isa = CPU_ISA_SCALAR; isa <= (int)best; isa++) {
        cpu_isa_set((CpuIsa)isa);
        /* scalar is slow: a fraction of the steps there */
        const int n = isa == CPU_ISA_SCALAR ? steps / 6 : isa < (int)best ? steps / 3 : steps;
        CpuPool *pool = cpu_pool_create(2);
        void *b = backend(m, 2, 0);
        REQUIRE(b && pool);
        Inv inv = {0};
        Err err = {{0}};
        int32_t tok = 1 % V;
        for (int s = 0; s < n; s++) {
            REQUIRE(backend_cpu_ops.eval(b, &tok, 1, s, NULL, &err) == 0);
            const float *x = backend_cpu_lm_input(b);
            REQUIRE(x);
            check_token(m, &t, pool, x, &inv, shrink, y, a);
            /* a varied path: the greedy token, every 7th step a fixed other one */
            REQUIRE(backend_cpu_ops.sample(b, NULL, &tok, &err) == 1);
            if (s % 7 == 3) tok = (tok * 31 + s) % V;
        }
        printf("%s, %s: %d steps, %ld rows: violations %ld, with B x %g %ld, max |exact-a|/b %.2e, "
               "dot_row != GEMV %ld\n", name, cpu_isa_name((CpuIsa)isa), n, inv.rows, inv.violations,
               shrink, inv.shrunk_violations, inv.worst_ratio, inv.dot_mismatch);
        CHECK_MSG(inv.violations == 0, "%s %s: %ld rows outside their interval", name,
                  cpu_isa_name((CpuIsa)isa), inv.violations);
        CHECK_MSG(inv.dot_mismatch == 0, "%s %s: dense_dot_row differs from the GEMV on %ld rows",
                  name, cpu_isa_name((CpuIsa)isa), inv.dot_mismatch);
        shrunk += inv.shrunk_violations;
        backend_cpu_ops.destroy(b);
        cpu_pool_destroy(pool);
    }
    cpu_isa_set(best);
    /* (on the exact-int8 rows the AVX2 int8 and f16 sums run in the same order and agree
     * exactly, so only the other ISAs can show it there) */
    CHECK_MSG(shrunk > 0, "%s: B_r x %g went unnoticed", name, shrink);
    /* 2: the fast bounds against the reference (the reference in double, another order) */
    const int D = m->cfg.dim, nr = V < 512 ? V : 512;
    float *Br = malloc(sizeof(float) * nr);
    REQUIRE(Br);
    lm_head_screen_bound_ref(dtype(m), m->output.data, t.q, t.scale, nr, D, Br);
    double worst = 0;
    for (int r = 0; r < nr; r++) worst = fmax(worst, fabs((double)Br[r] - t.B[r]) / Br[r]);
    printf("%s: bound fast vs reference: max relative difference %.2e over %d rows\n", name, worst, nr);
    CHECK(worst <= 1e-6);
    free(Br), free(y), free(a);
    tables_free(&t);
}

/* ---- the kernel alone: lm_screen_mt against a brute-force top-k ------------------------------ */

/* On the demo head with hidden vectors of a decode: for 1..3 threads, k in {1, 5, 40}, with and
 * without a penalty mask: every row among the k best penalised exact logits (ties at the k-th
 * included) is a candidate, every candidate holds dense_dot_row's bits, every other row -inf,
 * and the count returned is the number of candidates; a cap below that count gives OVER_CAP. */
static int desc_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

static void kernel_alone(const Model *m) {
    const int V = m->cfg.vocab_size, D = m->cfg.dim;
    Tables t = tables(m);
    float *y = malloc(sizeof(float) * V), *lg = malloc(sizeof(float) * V), *pen = malloc(sizeof(float) * V);
    float *srt = malloc(sizeof(float) * V);
    uint8_t *mask = calloc((size_t)V, 1);
    REQUIRE(y && lg && pen && mask && srt);
    for (int r = 0; r < V; r += 13) mask[r] = 1;
    void *b = backend(m, 1, 1);
    REQUIRE(b);
    Err err = {{0}};
    int32_t tok = 7;
    long bad = 0, cases = 0;
    for (int step = 0; step < 12; step++) {
        REQUIRE(backend_cpu_ops.eval(b, &tok, 1, step, NULL, &err) == 0);
        const float *x = backend_cpu_lm_input(b);
        tok = (tok * 131 + 17) % V;
        for (int th = 1; th <= 3; th++) {
            CpuPool *pool = cpu_pool_create(th);
            LmScreen *ls = lm_screen_create(V, th, 64);
            REQUIRE(pool && ls);
            dense_gemm_mt(pool, dtype(m), m->output.data, V, D, x, 1, y, V);
            const int ks[3] = {1, 5, 40};
            for (int ki = 0; ki < 3; ki++)
                for (int pm = 0; pm < 2; pm++) {
                    const float p = pm ? 1.3f : 1.0f;
                    for (int r = 0; r < V; r++) pen[r] = pm && mask[r] ? (y[r] > 0 ? y[r] / p : y[r] * p) : y[r];
                    /* the k-th best penalised value */
                    memcpy(srt, pen, sizeof(float) * V);
                    qsort(srt, (size_t)V, sizeof(float), desc_float);
                    const float kth = srt[ks[ki] - 1];
                    LmScreenQuery qy = {.k = ks[ki], .penalty = p, .mask = pm ? mask : NULL, .cap = V / 4};
                    const int n = lm_screen_mt(pool, ls, dtype(m), m->output.data, t.q, t.scale, t.B, V, D, x, &qy, lg);
                    int cnt = 0;
                    for (int r = 0; r < V; r++) {
                        if (lg[r] == -INFINITY) {
                            bad += pen[r] >= kth; /* a row that can make the top k was dropped */
                            continue;
                        }
                        cnt++;
                        const float d = dense_dot_row(dtype(m), m->output.data, D, x, r);
                        bad += memcmp(&lg[r], &d, sizeof d) != 0 || memcmp(&lg[r], &y[r], sizeof d) != 0;
                    }
                    bad += n != cnt || n < ks[ki];
                    cases++;
                    if (n > 1) { /* the same query with a cap just below: falls back */
                        qy.cap = n - 1;
                        bad += lm_screen_mt(pool, ls, dtype(m), m->output.data, t.q, t.scale, t.B, V, D, x, &qy, lg) !=
                               LM_SCREEN_OVER_CAP;
                    }
                }
            lm_screen_free(ls);
            cpu_pool_destroy(pool);
        }
    }
    printf("lm_screen_mt alone: %ld cases (12 tokens x 1-3 threads x k 1/5/40 x penalty), %ld wrong\n", cases, bad);
    CHECK_EQ_INT(bad, 0);
    backend_cpu_ops.destroy(b);
    free(y), free(lg), free(pen), free(mask), free(srt);
    tables_free(&t);
}

/* ---- 4 + 5: token identity ------------------------------------------------------------------- */

/* As infer_sample: the backend's pick, else the host sampler over logits(). */
static int32_t pick(void *b, Sampler *s, float *buf, int V) {
    Err err = {{0}};
    int32_t tok = -1;
    const int r = backend_cpu_ops.sample(b, s, &tok, &err);
    CHECK_MSG(r >= 0, "%s", err.msg);
    if (r == 0) {
        memcpy(buf, backend_cpu_ops.logits(b), sizeof(float) * V);
        tok = sampler_sample(s, buf, V);
    }
    return tok;
}

typedef struct {
    const char *name;
    float temp;
    int top_k;
    float top_p, min_p, pen;
    int screenable; /* the screen serves this setting */
} Setting;

/* G tokens after a P-token prompt on both backends; returns the number of differing tokens.
 * Every logits() of the screened backend after its pick is compared with the full one's. */
static int identity(const Model *m, void *bs, void *bf, const Setting *st, int G, uint64_t seed,
                    int *logits_differ) {
    const int V = m->cfg.vocab_size;
    enum { P = 12 };
    SamplerParams sp = sampler_params_default();
    sp.temperature = st->temp, sp.top_k = st->top_k, sp.top_p = st->top_p, sp.min_p = st->min_p;
    sp.repeat_penalty = st->pen, sp.repeat_last_n = 64, sp.seed = seed;
    Sampler *ss = sampler_create(&sp, V), *sf = sampler_create(&sp, V);
    float *buf = malloc(sizeof(float) * V);
    REQUIRE(ss && sf && buf);
    int32_t prompt[P];
    for (int i = 0; i < P; i++) prompt[i] = (int32_t)((i * 977 + seed) % (uint64_t)V);
    Err err = {{0}};
    REQUIRE(backend_cpu_ops.eval(bs, prompt, P, 0, NULL, &err) == 0);
    REQUIRE(backend_cpu_ops.eval(bf, prompt, P, 0, NULL, &err) == 0);
    for (int i = 0; i < P; i++) sampler_accept(ss, prompt[i]), sampler_accept(sf, prompt[i]);
    int differ = 0;
    for (int g = 0; g < G; g++) {
        const int32_t ts = pick(bs, ss, buf, V), tf = pick(bf, sf, buf, V);
        differ += ts != tf;
        /* logits() after the pick: the whole head, bit for bit */
        if (g % 16 == 0 && memcmp(backend_cpu_ops.logits(bs), backend_cpu_ops.logits(bf), sizeof(float) * V))
            (*logits_differ)++;
        if (ts < 0 || ts >= V) break;
        sampler_accept(ss, ts), sampler_accept(sf, ts);
        /* both continue from the screened token, so one difference does not hide later ones */
        REQUIRE(backend_cpu_ops.eval(bs, &ts, 1, P + g, NULL, &err) == 0);
        REQUIRE(backend_cpu_ops.eval(bf, &ts, 1, P + g, NULL, &err) == 0);
    }
    sampler_free(ss), sampler_free(sf), free(buf);
    return differ;
}

static void identities(const char *name, const Model *m, int G) {
    const int V = m->cfg.vocab_size;
    const Setting settings[] = {
        {"greedy", 0.0f, 40, 0.95f, 0.05f, 1.0f, 1},
        {"greedy, penalty 1.3", 0.0f, 0, 1.0f, 0.0f, 1.3f, 1},
        {"defaults", 0.7f, 40, 0.95f, 0.05f, 1.1f, 1},
        {"top-k 1", 0.8f, 1, 1.0f, 0.0f, 1.0f, 1},
        {"top-k 40, penalty 0.8", 1.0f, 40, 0.9f, 0.0f, 0.8f, 1},
        {"top-k 40, penalty 1.5, hot", 1.5f, 40, 1.0f, 0.0f, 1.5f, 1},
        {"top-k vocab-1", 0.7f, V - 1, 0.95f, 0.05f, 1.1f, 0},
        {"top-k off", 0.7f, 0, 0.95f, 0.05f, 1.1f, 0},
    };
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        void *bs = backend(m, 2, 0), *bf = backend(m, 2, 1);
        REQUIRE(bs && bf);
        CpuScreenStats st, stf;
        CHECK(backend_cpu_screen_stats(bs, &st) == 1);
        CHECK(backend_cpu_screen_stats(bf, &stf) == 0); /* lm_head_full: no screen at all */
        char d[256];
        backend_cpu_ops.describe(bs, d, sizeof d);
        CHECK_MSG(strstr(d, "screened f16 lm_head") != NULL, "%s", d);
        int logits_differ = 0, differ = 0;
        for (uint64_t seed = 1; seed <= 2; seed++)
            differ += identity(m, bs, bf, &settings[i], G, seed * 7919, &logits_differ);
        backend_cpu_screen_stats(bs, &st);
        printf("%s, %s: %d tokens x 2 seeds: %d differ; screened %ld (candidates mean %.1f max %d), "
               "fallbacks: setting %ld, non-finite %ld, cap %ld\n", name, settings[i].name, G, differ,
               st.screened, st.screened ? (double)st.cand_sum / st.screened : 0.0, st.cand_max,
               st.fallback_setting, st.fallback_nonfinite, st.fallback_cap);
        CHECK_MSG(differ == 0, "%s %s: %d tokens differ", name, settings[i].name, differ);
        CHECK_MSG(logits_differ == 0, "%s %s: logits() after a screened pick differ", name, settings[i].name);
        if (settings[i].screenable)
            CHECK_MSG(st.screened > (long)G, "%s %s: the screen served %ld of %d tokens", name,
                      settings[i].name, st.screened, 2 * G);
        else
            CHECK_MSG(st.screened == 0 && st.fallback_setting >= 2L * G, "%s %s: screened %ld",
                      name, settings[i].name, st.screened);
        backend_cpu_ops.destroy(bs);
        backend_cpu_ops.destroy(bf);
    }
}

/* ---- 6: hostile heads --------------------------------------------------------------------------- */

static void hostile(const ModelConfig *cfg) {
    const int V = cfg->vocab_size, D = cfg->dim;
    for (int kind = 0; kind < 3; kind++) {
        Model m;
        Err err = {{0}};
        REQUIRE(model_init_random(&m, cfg, 11, &err) == 0);
        REQUIRE(m.output.type == FT_F16 && m.output.data != m.tok_embd.data);
        uint16_t *w = (uint16_t *)m.output.data; /* the random model's own buffer */
        const char *what = kind == 0 ? "a NaN row" : kind == 1 ? "an inf row" : "all rows equal";
        if (kind < 2) {
            w[(size_t)(V / 3) * D + 5] = kind == 0 ? 0x7e00 : 0x7c00;
        } else {
            for (int r = 1; r < V; r++) memcpy(w + (size_t)r * D, w, sizeof(uint16_t) * D);
        }
        void *bs = backend(&m, 2, 0), *bf = backend(&m, 2, 1);
        REQUIRE(bs && bf);
        enum { G = 24 };
        const Setting greedy = {"greedy", 0.0f, 40, 1.0f, 0.0f, 1.0f, 1};
        const Setting topk = {"defaults", 0.7f, 40, 0.95f, 0.05f, 1.1f, 1};
        int logits_differ = 0;
        const int differ = identity(&m, bs, bf, &greedy, G, 3, &logits_differ) +
                           identity(&m, bs, bf, &topk, G, 5, &logits_differ);
        CpuScreenStats st;
        backend_cpu_screen_stats(bs, &st);
        printf("hostile head, %s: %d tokens differ; screened %ld, fallbacks: non-finite %ld, cap %ld\n",
               what, differ, st.screened, st.fallback_nonfinite, st.fallback_cap);
        CHECK_MSG(differ == 0, "%s: the tokens differ from the whole head's", what);
        CHECK(logits_differ == 0);
        CHECK_EQ_INT(st.screened, 0);
        if (kind < 2) CHECK_EQ_INT(st.fallback_nonfinite, 2 * G);
        else CHECK_EQ_INT(st.fallback_cap, 2 * G);
        backend_cpu_ops.destroy(bs);
        backend_cpu_ops.destroy(bf);
        model_free(&m);
    }
}

int main(void) {
    const char *root = getenv("BN_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/assets/bitnet-demo.gguf", root && *root ? root : BN_SOURCE_DIR);
    Model demo;
    Err err = {{0}};
    REQUIRE(model_load(&demo, path, NULL, &err) == 0);

    /* BitNet-b1.58-2B-4T's widths (dim 2560, so the bound's K), 2 layers, 8192 tokens */
    ModelConfig c = model_config_bitnet_2b();
    c.n_layers = 2, c.vocab_size = 8192, c.ffn_dim = 1024, c.tied = 0, c.ctx_len = 512;
    Model big;
    REQUIRE(model_init_random(&big, &c, 5, &err) == 0);

    invariant("demo", &demo, 300, 1.0f / 64);
    invariant("2B-shaped", &big, 60, 1.0f / 64);
    /* rows exactly representable in int8 (q * 2^-7, each with a +-127): E_r = 0, so the bound
     * is only the float-rounding term gamma (||w|| + s ||q||), which is needed too: without it
     * (B_r x 0, only the 2.5e-7 |a_r| slack left) rows fall outside */
    {
        Model ex;
        REQUIRE(model_init_random(&ex, &c, 6, &err) == 0);
        uint16_t *w = (uint16_t *)ex.output.data;
        uint64_t st = 99;
        for (size_t i = 0; i < (size_t)c.vocab_size * c.dim; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            const int qv = (int)((st >> 33) % 255) - 127;
            w[i] = f32_to_f16_ref(i % (size_t)c.dim == 0 ? 127.0f / 128.0f : (float)qv / 128.0f);
        }
        invariant("exact-int8 rows", &ex, 30, 0.0f);
        model_free(&ex);
    }
    kernel_alone(&demo);
    identities("demo", &demo, 200);
    identities("2B-shaped", &big, 40);

    ModelConfig h = c;
    h.vocab_size = 2048, h.dim = 256, h.n_heads = 4, h.n_kv_heads = 2, h.head_dim = 64, h.ffn_dim = 256;
    hostile(&h);

    model_free(&big);
    model_free(&demo);
    return check_report("test_lm_screen");
}
