/* The device sampler against the host sampler (infer/sampler.c), which is the reference. The
 * device has two ways to a draw: kcuda_sample (no sort of the vocabulary; it declines where the
 * candidates exceed its bounds) and kcuda_sample_sorted (a full sort, the fallback); the backend
 * runs the first and, where it declines, the second.
 *   1. kernel: synthetic logits built to hit the edges (ties, +-0, NaN, NaN first, -inf, a flat
 *      vocabulary, a peaked one, values a few ulps apart, a window of penalised ids) at vocab 1000
 *      and 128256, every combination of temperature, top-k, top-p, min-p and penalty, 12 draws
 *      each from one seeded pair of samplers: both device paths must give the host's token at
 *      every draw (kcuda_sample where it does not decline), and use the uniform exactly when the
 *      host does (else the two RNG streams part and later draws differ); kcuda_sample must both
 *      accept and decline at vocab 128256 (so the fallback is exercised). The exception: a top-p
 *      nucleus wider than 1024 tokens without top-k, where the host's order past rank 1024 is its
 *      quickselect's (those draws are not compared here: stat_test);
 *   2. stat_test: such a wide nucleus. The device walks it in rank order: every device draw must
 *      equal a plain rank-order reference draw (ref_draw, written here) with the same uniform;
 *      the host's draws must follow the exact distribution (chi-square over 16 bins). ref_draw
 *      itself is checked against the host sampler on the CPU where the host walks rank order
 *      (ref_self_check, which runs without a GPU too);
 *   3. backend: the demo model (assets/bitnet-demo.gguf) generating 48 tokens with each setting,
 *      infer_sample on the CUDA backend (device sampler) against the host sampler over the same
 *      backend's logits (infer_logits): the same token sequence for the same seed.
 * Exact equality is the expectation: every comparison the two make has the same bits; only double
 * sums are added in another order, which can change a draw only when the uniform falls within
 * ~1e-16 (relative) of a boundary between two tokens (sample.cu). Exits 77 without a GPU.
 * Argument "quick": part 1 at vocab 1000 only, one draw per case, penalties 1 and 1.1 (for
 * compute-sanitizer). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "check.h"
#include "infer/backend_cuda.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "infer/sampler.h"
#include "kernels/cuda/kernels_cuda.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(void) { return (float)(rnd() % 1000001) / 1000000.0f; }

enum { MAX_PEN = 4096 };

typedef struct {
    KcudaSampleArgs *d_args;
    int *d_out;
    float *d_logits;
    void *d_scratch;
    size_t scratch;
    int n;
} Dev;

typedef struct {
    int tok, used, declined;
} Draw;

static void dev_open(Dev *d, int n) {
    memset(d, 0, sizeof *d);
    d->n = n;
    d->scratch = kcuda_sample_scratch(n);
    REQUIRE(cudaMalloc((void **)&d->d_args, sizeof(KcudaSampleArgs) + MAX_PEN * 4) == cudaSuccess &&
            cudaMalloc((void **)&d->d_out, 3 * sizeof(int)) == cudaSuccess &&
            cudaMalloc((void **)&d->d_logits, 4 * (size_t)n) == cudaSuccess &&
            cudaMalloc(&d->d_scratch, d->scratch) == cudaSuccess);
    REQUIRE(cudaMemset(d->d_scratch, 0, d->scratch) == cudaSuccess); /* kcuda_sample's counters start at zero */
}

static void dev_close(Dev *d) {
    cudaFree(d->d_args), cudaFree(d->d_out), cudaFree(d->d_logits), cudaFree(d->d_scratch);
}

static void dev_logits(Dev *d, const float *logits) {
    REQUIRE(cudaMemcpy(d->d_logits, logits, sizeof(float) * (size_t)d->n, cudaMemcpyHostToDevice) == cudaSuccess);
}

/* One device draw with the arguments on the device: path 0 kcuda_sample, 1 kcuda_sample with
 * greedy set, 2 kcuda_sample_sorted. */
static Draw dev_run(Dev *d, int path) {
    const int32_t *ids = (const int32_t *)(d->d_args + 1);
    int rc = path == 2 ? kcuda_sample_sorted(d->d_logits, d->n, d->d_args, ids, d->d_scratch, d->scratch, d->d_out, NULL)
                       : kcuda_sample(d->d_logits, d->n, d->d_args, ids, path == 1, d->d_scratch, d->scratch, d->d_out,
                                      NULL);
    if (rc) fprintf(stderr, "%s: %s\n", path == 2 ? "kcuda_sample_sorted" : "kcuda_sample", kcuda_last_error());
    REQUIRE(rc == 0);
    int out[3] = {-1, -1, -1};
    REQUIRE(cudaMemcpy(out, d->d_out, sizeof out, cudaMemcpyDeviceToHost) == cudaSuccess);
    return (Draw){out[0], out[1], out[2]};
}

/* The backend's argument packing (cuda_sample_args) from sampler s, then kcuda_sample (*fast)
 * and kcuda_sample_sorted (*sorted) on the logits already on the device, and with greedy set
 * (*greedy) when the temperature says greedy. Consumes the uniform when the draw the backend
 * would keep (fast, or sorted where fast declined) used it. */
static void device_draw(Dev *d, Sampler *s, Draw *fast, Draw *sorted, Draw *greedy) {
    static unsigned char buf[sizeof(KcudaSampleArgs) + MAX_PEN * sizeof(int32_t)];
    KcudaSampleArgs *a = (KcudaSampleArgs *)buf;
    memset(a, 0, sizeof *a);
    const int np = cuda_sample_args(s, a, (int32_t *)(a + 1), MAX_PEN);
    REQUIRE(np >= 0);
    REQUIRE(cudaMemcpy(d->d_args, buf, sizeof *a + (size_t)np * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    *fast = dev_run(d, 0);
    *sorted = dev_run(d, 2);
    *greedy = a->temperature > 0.0f ? (Draw){-1, 0, 0} : dev_run(d, 1);
    if (fast->declined ? sorted->used : fast->used) sampler_skip_uniform(s);
}

/* Logits of kind k: 0 peaked (a few strong tokens), 1 flat (all within 0.5), 2 coarse ties
 * (values on a grid of 0.25, +-0 included), 3 with NaN and -inf entries, 4 all -inf but one,
 * 5 values a few ulps apart (4096 distinct floats just above 1: kcuda_sample's radix select
 * down to its last digit), 6 peaked with a NaN first logit (the host's argmax keeps id 0). */
enum { KINDS = 7 };
static void make_logits(float *l, int n, int k) {
    for (int i = 0; i < n; i++) {
        switch (k) {
        case 0: case 6: l[i] = -4.0f + 3.0f * frand() + (rnd() % 200 == 0 ? 9.0f * frand() : 0.0f); break;
        case 1: l[i] = 0.5f * frand(); break;
        case 2: l[i] = (float)((int)(rnd() % 17) - 8) * 0.25f; if (l[i] == 0.0f && (rnd() & 1)) l[i] = -0.0f; break;
        case 3: l[i] = rnd() % 50 == 0 ? NAN : rnd() % 40 == 0 ? -INFINITY : 6.0f * frand() - 3.0f; break;
        case 5: {
            const uint32_t u = 0x3f800000u + rnd() % 4096u;
            memcpy(&l[i], &u, 4);
            break;
        }
        default: l[i] = -INFINITY; break;
        }
    }
    if (k == 4) l[rnd() % (unsigned)n] = 1.0f;
    if (k == 6) l[0] = NAN;
}

static int cmp_desc(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

/* Candidates the host's top-p keeps from (penalised) logits without top-k: more than 1024 means
 * its draw order past rank 1024 is its quickselect's, which the device does not reproduce (the
 * same distribution: stat_test). Mirrors infer/sampler.c; used only to classify a case. */
static int nucleus(const float *pen, int n_vocab, const SamplerParams *p) {
    float *v = malloc(sizeof(float) * (size_t)n_vocab);
    int n = 0;
    for (int i = 0; i < n_vocab; i++)
        if (pen[i] == pen[i]) v[n++] = pen[i];
    qsort(v, (size_t)n, sizeof *v, cmp_desc);
    double z = 0;
    for (int i = 0; i < n; i++)
        if ((double)v[i] - v[0] > -80.0) z += exp((double)v[i] - v[0]);
    if (p->min_p > 0.0f) {
        int keep = 1;
        while (keep < n && v[keep] >= v[0] + logf(p->min_p)) keep++;
        n = keep;
    }
    double cum = 0, target = p->top_p * z;
    int keep = n;
    for (int i = 0; i < n; i++) {
        cum += exp((double)v[i] - v[0]);
        if (cum >= target) {
            keep = i + 1;
            break;
        }
    }
    free(v);
    return keep;
}

static int kernel_test(int n, int quick) {
    const int n_draws = quick ? 1 : 12, n_pens = quick ? 2 : 3;
    Dev d;
    dev_open(&d, n);
    float *logits = malloc(sizeof(float) * (size_t)n), *copy = malloc(sizeof(float) * (size_t)n);
    REQUIRE(logits && copy);
    const float temps[] = {0.0f, 0.7f, 1.5f};
    const int topk[] = {0, 1, 40, 1000, 2000};
    const float topp[] = {1.0f, 0.95f, 0.5f, 0.0f};
    const float minp[] = {0.0f, 0.05f, 0.5f};
    const float pens[] = {1.0f, 1.1f, 0.8f};
    int cases = 0, draws = 0, used = 0, wide = 0, accepted = 0, declined = 0;
    int bad_fast = 0, bad_sorted = 0, bad_greedy = 0, bad_used = 0;
    for (int kind = 0; kind < KINDS; kind++)
        for (int ti = 0; ti < 3; ti++)
            for (int ki = 0; ki < 5; ki++)
                for (int pi = 0; pi < 4; pi++)
                    for (int mi = 0; mi < 3; mi++)
                        for (int ri = 0; ri < n_pens; ri++) {
                            if (ti == 0 && (ki || pi || mi)) continue; /* greedy ignores the filters */
                            SamplerParams p = sampler_params_default();
                            p.temperature = temps[ti];
                            p.top_k = topk[ki];
                            p.top_p = topp[pi];
                            p.min_p = minp[mi];
                            p.repeat_penalty = pens[ri];
                            p.repeat_last_n = 64;
                            p.seed = 1000u + (uint64_t)cases;
                            Sampler *sh = sampler_create(&p, n), *sd = sampler_create(&p, n);
                            REQUIRE(sh && sd);
                            make_logits(logits, n, kind);
                            dev_logits(&d, logits);
                            for (int w = 0; w < 80; w++) { /* repeats inside the window on purpose */
                                const int32_t t = (int32_t)(rnd() % (unsigned)(w % 3 ? 64 : n));
                                sampler_accept(sh, t);
                                sampler_accept(sd, t);
                            }
                            int is_wide = 0;
                            for (int r = 0; r < n_draws; r++) {
                                memcpy(copy, logits, sizeof(float) * (size_t)n);
                                const int th = sampler_sample(sh, copy, n);
                                if (r == 0 && p.temperature > 0.0f && (p.top_k <= 0 || p.top_k >= n) && p.top_p < 1.0f &&
                                    n > 1024)
                                    is_wide = nucleus(copy, n, &p) > 900; /* margin: the window shifts it */
                                Draw f, so, g;
                                device_draw(&d, sd, &f, &so, &g);
                                if (f.declined) declined++;
                                else accepted++;
                                if (is_wide) { /* another order, the same distribution: stat_test */
                                    wide++;
                                } else {
                                    draws++;
                                    used += so.used;
                                    const int bf = !f.declined && (f.tok != th || f.used != so.used);
                                    const int bs = so.tok != th || so.declined;
                                    const int bg = p.temperature <= 0.0f && (g.tok != th || g.used || g.declined);
                                    bad_fast += bf, bad_sorted += bs, bad_greedy += bg;
                                    if ((bf || bs || bg) && bad_fast + bad_sorted + bad_greedy <= 10)
                                        fprintf(stderr, "vocab %d kind %d t %.2f k %d p %.2f min_p %.2f pen %.1f draw %d: host %d, "
                                                "fast %d (declined %d), sorted %d, greedy %d\n", n, kind, p.temperature, p.top_k,
                                                p.top_p, p.min_p, p.repeat_penalty, r, th, f.tok, f.declined, so.tok, g.tok);
                                }
                                /* a declined fast draw must say so and nothing else */
                                if (f.declined && (f.tok != -1 || f.used)) bad_used++;
                                sampler_accept(sh, th);
                                sampler_accept(sd, th);
                            }
                            sampler_free(sh);
                            sampler_free(sd);
                            cases++;
                        }
    printf("kernel, vocab %d: %d settings x logits, %d draws compared (%d used the uniform); kcuda_sample accepted %d "
           "and declined %d draws; differ from the host: kcuda_sample %d, kcuda_sample_sorted %d, greedy %d; %d draws "
           "from top-p nuclei wider than 1024 tokens not compared (stat_test)\n", n, cases, draws, used, accepted, declined,
           bad_fast, bad_sorted, bad_greedy, wide);
    CHECK_EQ_INT(bad_fast, 0);
    CHECK_EQ_INT(bad_sorted, 0);
    CHECK_EQ_INT(bad_greedy, 0);
    CHECK_EQ_INT(bad_used, 0);
    CHECK(used > draws / 2);
    CHECK(accepted > 0);
    if (n > 100000) CHECK(declined > 0); /* the fallback is exercised */
    free(logits);
    free(copy);
    dev_close(&d);
    return 0;
}

typedef struct {
    float logit;
    int32_t id;
} Cand;

static int cand_rank(const void *a, const void *b) {
    const Cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The draw the device makes for top-p without top-k (no penalty, no min-p), written plainly:
 * every valid logit in rank order (logit descending, id ascending); top-p keeps the shortest
 * prefix whose mass exp(l - max) reaches top_p * z (z without masses below e^-80); weights
 * (float)exp((l - max) / T) (0 below e^-80); the first candidate whose running weight exceeds
 * u * (sum of the weights), else the last with any weight. */
typedef struct {
    Cand *c;
    double *w;
    int n;
    double z;
} RefDraw;

static void ref_prepare(RefDraw *r, const float *lg, int V, float top_p, float temp) {
    r->c = malloc(sizeof *r->c * (size_t)V);
    r->w = malloc(sizeof *r->w * (size_t)V);
    REQUIRE(r->c && r->w);
    int n = 0;
    for (int i = 0; i < V; i++)
        if (lg[i] == lg[i]) r->c[n++] = (Cand){lg[i], i};
    qsort(r->c, (size_t)n, sizeof *r->c, cand_rank);
    const double mx = r->c[0].logit;
    double z = 0, cum = 0;
    for (int i = 0; i < n; i++)
        if ((double)r->c[i].logit - mx > -80.0) z += exp((double)r->c[i].logit - mx);
    int keep = n;
    for (int i = 0; i < n; i++) {
        cum += exp((double)r->c[i].logit - mx);
        if (cum >= (double)top_p * z) {
            keep = i + 1;
            break;
        }
    }
    r->n = keep;
    r->z = 0;
    for (int i = 0; i < keep; i++) {
        const double d = ((double)r->c[i].logit - mx) * (1.0 / (double)temp);
        r->w[i] = d > -80.0 ? (double)(float)exp(d) : 0.0;
        r->z += r->w[i];
    }
}

static int ref_draw(const RefDraw *r, double u01) {
    const double u = u01 * r->z;
    double cum = 0;
    for (int i = 0; i < r->n; i++) {
        cum += r->w[i];
        if (u < cum) return r->c[i].id;
    }
    for (int i = r->n - 1; i > 0; i--)
        if (r->w[i] > 0.0) return r->c[i].id;
    return r->c[0].id;
}

static void ref_free(RefDraw *r) {
    free(r->c);
    free(r->w);
}

/* ref_draw against the host sampler where the host walks rank order (a nucleus of at most 1024
 * tokens: a peaked vocabulary of 128256, top-p 0.9 and 0.5 without top-k), 1000 draws each with
 * the host's own uniform: every draw the same. Runs on the CPU. (Over a nucleus wider than 1024,
 * where the host's order is its quickselect's, about a third of the draws differ: the check is
 * sharp.) */
static void ref_self_check(void) {
    enum { V = 128256, N = 1000 };
    float *lg = malloc(sizeof(float) * V), *copy = malloc(sizeof(float) * V);
    REQUIRE(lg && copy);
    make_logits(lg, V, 0);
    for (int i = 0; i < V; i++) lg[i] *= 1.6f; /* more peaked: top-p 0.9 keeps a few dozen */
    const float tps[2] = {0.9f, 0.5f};
    for (int k = 0; k < 2; k++) {
        SamplerParams p = sampler_params_default();
        p.temperature = 1.3f, p.top_k = 0, p.top_p = tps[k], p.min_p = 0.0f, p.repeat_penalty = 1.0f, p.seed = 11 + k;
        Sampler *s = sampler_create(&p, V);
        REQUIRE(s);
        RefDraw r;
        ref_prepare(&r, lg, V, p.top_p, p.temperature);
        int differ = 0;
        for (int t = 0; t < N; t++) {
            const double u = sampler_peek_uniform(s);
            memcpy(copy, lg, sizeof(float) * V);
            differ += sampler_sample(s, copy, V) != ref_draw(&r, u);
        }
        printf("reference draw (rank order) vs the host sampler, top-p %.1f (nucleus %d tokens): %d of %d draws differ\n",
               p.top_p, r.n, differ, N);
        CHECK(r.n > 1 && r.n <= 1024);
        CHECK_EQ_INT(differ, 0);
        ref_free(&r);
        sampler_free(s);
    }
    free(lg), free(copy);
}

/* A top-p nucleus wider than 1024 tokens without top-k, where the host's draw order past rank
 * 1024 is its quickselect's (fixed logits: vocab 128256, a slowly falling tail, so top-p 0.9
 * keeps a few thousand tokens). N draws each:
 *   - the device (kcuda_sample must decline: the nucleus is past its 1024 best; then
 *     kcuda_sample_sorted) against ref_draw with the same uniform: every draw equal;
 *   - the host sampler against the exact probabilities: chi-square over 16 bins of consecutive
 *     ranks of about equal probability (15 degrees of freedom) below 37.7 (p = 0.001).
 * (A chi-square of the device's draws against the exact probabilities is printed, not checked:
 * with exact equality to ref_draw it measures only the uniforms' luck.) */
static void stat_test(void) {
    enum { V = 128256, N = 3000, B = 16 };
    Dev d;
    dev_open(&d, V);
    float *lg = malloc(sizeof(float) * V), *copy = malloc(sizeof(float) * V), *v = malloc(sizeof(float) * V);
    int *bin = malloc(sizeof(int) * V);
    REQUIRE(lg && copy && v && bin);
    for (int i = 0; i < V; i++) lg[i] = -0.002f * (float)(rnd() % 20000) + 0.3f * frand();
    dev_logits(&d, lg);
    SamplerParams p = sampler_params_default();
    p.temperature = 1.0f, p.top_k = 0, p.top_p = 0.9f, p.min_p = 0.0f, p.repeat_penalty = 1.0f, p.seed = 5;
    memcpy(v, lg, sizeof(float) * V);
    qsort(v, V, sizeof *v, cmp_desc);
    const int keep = nucleus(lg, V, &p);
    RefDraw ref;
    ref_prepare(&ref, lg, V, p.top_p, p.temperature);
    /* bin edges: logit thresholds at equal shares of the kept mass (weights e^(l - max)) */
    double tot = 0;
    for (int i = 0; i < keep; i++) tot += exp((double)v[i] - v[0]);
    float edge[B];
    double cum = 0, share[B] = {0};
    int b = 0;
    for (int i = 0; i < keep; i++) {
        const double w = exp((double)v[i] - v[0]);
        if (b < B - 1 && cum + w > tot * (b + 1) / B && cum > 0) edge[b++] = v[i - 1];
        cum += w;
        share[b] += w / tot;
    }
    while (b < B - 1) edge[b++] = -INFINITY;
    edge[B - 1] = -INFINITY;
    for (int i = 0; i < V; i++) {
        int k = 0;
        while (k < B - 1 && lg[i] < edge[k]) k++;
        bin[i] = k;
    }
    long ch[B] = {0}, cd[B] = {0};
    Sampler *sh = sampler_create(&p, V), *sd = sampler_create(&p, V);
    p.seed = 6;
    sampler_reset(sd, &p); /* independent streams */
    int bad = 0, differ = 0, fast_taken = 0;
    for (int t = 0; t < N; t++) {
        memcpy(copy, lg, sizeof(float) * V);
        const int th = sampler_sample(sh, copy, V);
        const double u = sampler_peek_uniform(sd);
        Draw f, so, g;
        device_draw(&d, sd, &f, &so, &g);
        const int tr = ref_draw(&ref, u);
        fast_taken += !f.declined;
        if (so.tok != tr && differ++ < 5) fprintf(stderr, "wide nucleus, draw %d (u %.17g): device %d, reference %d\n", t, u, so.tok, tr);
        if (th < 0 || th >= V || so.tok < 0 || so.tok >= V) {
            bad++;
            continue;
        }
        ch[bin[th]]++, cd[bin[so.tok]]++;
    }
    double xh = 0, xd = 0;
    for (int k = 0; k < B; k++) {
        const double e = share[k] * N;
        if (e > 0) xh += (ch[k] - e) * (ch[k] - e) / e, xd += (cd[k] - e) * (cd[k] - e) / e;
    }
    printf("wide nucleus (%d tokens of %d, top-p 0.9, no top-k): %d draws; device vs the rank-order reference: %d "
           "differ (kcuda_sample took %d, declined the rest); chi-square over %d bins: host vs exact %.1f (limit 37.7), "
           "device vs exact %.1f (not checked)\n", keep, V, N, differ, fast_taken, B, xh, xd);
    CHECK(keep > 1024);
    CHECK_EQ_INT(ref.n, keep);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(differ, 0);
    CHECK_EQ_INT(fast_taken, 0);
    CHECK(xh < 37.7);
    sampler_free(sh);
    sampler_free(sd);
    ref_free(&ref);
    free(lg), free(copy), free(v), free(bin);
    dev_close(&d);
}

static const char *root_dir(void) {
    const char *r = getenv("BN_DEMO_ROOT");
    return r && *r ? r : BN_SOURCE_DIR;
}

/* Generates GEN tokens from a fixed prompt twice per setting, once with
 * infer_sample (the device sampler) and once with the host sampler over infer_logits. */
static void backend_test(void) {
    enum { GEN = 48 };
    Model m;
    Err err = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/assets/bitnet-demo.gguf", root_dir());
    const int loaded = model_load(&m, path, NULL, &err) == 0;
    CHECK_MSG(loaded, "%s: %s", path, err.msg);
    if (!loaded) return;
    InferOptions o = {.backend = BACKEND_CUDA, .threads = 0, .ctx = 256, .lm_head_int8 = 0};
    Infer *inf = infer_create(&m, &o, &err);
    CHECK_MSG(inf != NULL, "infer_create: %s", err.msg);
    if (!inf) {
        model_free(&m);
        return;
    }
    const int V = m.cfg.vocab_size;
    float *copy = malloc(sizeof(float) * (size_t)V);
    const int32_t prompt[6] = {1, 300, 301, 302, 303, 304};
    const struct { float t; int k; float p, mp, pen; } S[] = {
        {0.7f, 40, 0.95f, 0.05f, 1.1f}, /* the defaults */
        {0.0f, 0, 1.0f, 0.0f, 1.1f},    /* greedy with the penalty */
        {0.0f, 0, 1.0f, 0.0f, 1.0f},    /* plain greedy: the decode graph's argmax */
        {1.0f, 0, 1.0f, 0.0f, 1.0f},    /* plain temperature */
        {1.2f, 0, 0.9f, 0.0f, 1.0f},    /* top-p alone over the whole vocabulary */
        {0.8f, 5, 1.0f, 0.0f, 1.3f},    /* top-k + penalty */
        {1.0f, 0, 1.0f, 0.2f, 1.0f},    /* min-p alone */
        {2.0f, 100, 0.5f, 0.02f, 0.9f}, /* everything, penalty < 1 */
        {1.0f, 2000, 1.0f, 0.0f, 1.1f}, /* top-k past kcuda_sample's bound: kcuda_sample_sorted */
    };
    int total = 0, differ = 0;
    for (size_t si = 0; si < sizeof S / sizeof S[0]; si++) {
        int32_t seq[2][GEN];
        for (int way = 0; way < 2; way++) {
            SamplerParams p = sampler_params_default();
            p.temperature = S[si].t, p.top_k = S[si].k, p.top_p = S[si].p, p.min_p = S[si].mp, p.repeat_penalty = S[si].pen;
            p.seed = 77 + si;
            Sampler *s = sampler_create(&p, V);
            for (int i = 0; i < 6; i++) sampler_accept(s, prompt[i]);
            int rc = infer_eval(inf, prompt, 6, 0, NULL, &err);
            for (int g = 0; g < GEN && !rc; g++) {
                int32_t tok = -1;
                if (g > 0) rc = infer_eval(inf, &seq[way][g - 1], 1, 5 + g, NULL, &err);
                if (rc) break;
                if (way == 0) {
                    rc = infer_sample(inf, s, &tok, &err);
                } else {
                    const float *lg = infer_logits(inf);
                    if (!lg) rc = -1;
                    else {
                        memcpy(copy, lg, sizeof(float) * (size_t)V);
                        tok = sampler_sample(s, copy, V);
                    }
                }
                seq[way][g] = tok;
                sampler_accept(s, tok);
            }
            if (rc) fprintf(stderr, "setting %zu: %s\n", si, err.msg);
            CHECK(rc == 0);
            sampler_free(s);
        }
        int d = 0;
        for (int g = 0; g < GEN; g++) d += seq[0][g] != seq[1][g];
        if (d) fprintf(stderr, "demo model, setting %zu: %d of %d tokens differ (first device %d host %d)\n", si, d, GEN,
                       seq[0][0], seq[1][0]);
        total += GEN;
        differ += d;
    }
    printf("backend, demo model: %zu settings, %d tokens, %d differ between the device and the host sampler\n",
           sizeof S / sizeof S[0], total, differ);
    CHECK_EQ_INT(differ, 0);
    free(copy);
    infer_destroy(inf);
    model_free(&m);
}

/* argv[1] "quick": the kernel part at vocab 1000 only, smaller (for compute-sanitizer). */
int main(int argc, char **argv) {
    ref_self_check();
    if (kcuda_device_count() <= 0) {
        if (check_failures_) return check_report("test_sample_cuda");
        SKIP("no CUDA device (the CPU check of the reference draw passed)");
    }
    const int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    kernel_test(1000, quick);
    if (!quick) {
        kernel_test(128256, 0);
        stat_test();
        backend_test();
    }
    return check_report("test_sample_cuda");
}
