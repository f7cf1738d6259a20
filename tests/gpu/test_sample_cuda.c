/* The device sampler (kcuda_sample, used by the CUDA backend for every setting but plain greedy)
 * against the host sampler (infer/sampler.c), which is the reference:
 *   1. kernel: synthetic logits built to hit the edges (ties, +-0, NaN, -inf, a flat vocabulary,
 *      a peaked one, a window of penalised ids) at vocab 1000 and 128256, every combination of
 *      temperature, top-k, top-p, min-p and penalty, 12 draws each from one seeded pair of
 *      samplers: the device must give the host's token at every draw, and use the uniform exactly
 *      when the host does (else the two RNG streams part and later draws differ);
 *      (except a top-p nucleus wider than 1024 tokens without top-k, where the host's order is
 *      its quickselect's: there a chi-square test checks the distribution, stat_test);
 *   2. backend: the demo model (assets/bitnet-demo.gguf) generating 48 tokens with each setting,
 *      infer_sample on the CUDA backend (device sampler) against the host sampler over the same
 *      backend's logits (infer_logits): the same token sequence for the same seed.
 * Exact equality is the expectation: every comparison the two make has the same bits; only double
 * sums are added in another order, which can change a draw only when the uniform falls within
 * ~1e-16 (relative) of a boundary between two tokens (sample.cu). Exits 77 without a GPU.
 * Argument "quick": part 1 at vocab 1000 only (for compute-sanitizer). */
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

/* The backend's argument packing (cuda_sample_args), from sampler s. */
static int device_draw(Dev *d, Sampler *s, const float *logits, int *used) {
    static unsigned char buf[sizeof(KcudaSampleArgs) + MAX_PEN * sizeof(int32_t)];
    KcudaSampleArgs *a = (KcudaSampleArgs *)buf;
    int32_t *ids = (int32_t *)(a + 1);
    memset(a, 0, sizeof *a);
    const int np = cuda_sample_args(s, a, ids, MAX_PEN);
    if (np < 0) return -2;
    int out[2] = {-1, -1};
    if (cudaMemcpy(d->d_logits, logits, sizeof(float) * (size_t)d->n, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d->d_args, buf, sizeof *a + (size_t)np * 4, cudaMemcpyHostToDevice) != cudaSuccess)
        return -1;
    if (kcuda_sample(d->d_logits, d->n, d->d_args, (const int32_t *)(d->d_args + 1), d->d_scratch, d->scratch, d->d_out,
                     NULL)) {
        fprintf(stderr, "kcuda_sample: %s\n", kcuda_last_error());
        return -1;
    }
    if (cudaMemcpy(out, d->d_out, sizeof out, cudaMemcpyDeviceToHost) != cudaSuccess) return -1;
    *used = out[1];
    if (out[1]) sampler_skip_uniform(s);
    return out[0];
}

/* Logits of kind k: 0 peaked (a few strong tokens), 1 flat (all within 0.5), 2 coarse ties
 * (values on a grid of 0.25, +-0 included), 3 with NaN and -inf entries, 4 all -inf but one. */
static void make_logits(float *l, int n, int k) {
    for (int i = 0; i < n; i++) {
        switch (k) {
        case 0: l[i] = -4.0f + 3.0f * frand() + (rnd() % 200 == 0 ? 9.0f * frand() : 0.0f); break;
        case 1: l[i] = 0.5f * frand(); break;
        case 2: l[i] = (float)((int)(rnd() % 17) - 8) * 0.25f; if (l[i] == 0.0f && (rnd() & 1)) l[i] = -0.0f; break;
        case 3: l[i] = rnd() % 50 == 0 ? NAN : rnd() % 40 == 0 ? -INFINITY : 6.0f * frand() - 3.0f; break;
        default: l[i] = -INFINITY; break;
        }
    }
    if (k == 4) l[rnd() % (unsigned)n] = 1.0f;
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

static int kernel_test(int n) {
    Dev d = {0};
    d.n = n;
    d.scratch = kcuda_sample_scratch(n);
    if (cudaMalloc((void **)&d.d_args, sizeof(KcudaSampleArgs) + MAX_PEN * 4) != cudaSuccess ||
        cudaMalloc((void **)&d.d_out, 8) != cudaSuccess || cudaMalloc((void **)&d.d_logits, 4 * (size_t)n) != cudaSuccess ||
        cudaMalloc(&d.d_scratch, d.scratch) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc failed\n");
        return 1;
    }
    float *logits = malloc(sizeof(float) * (size_t)n), *copy = malloc(sizeof(float) * (size_t)n);
    const float temps[] = {0.0f, 0.7f, 1.5f};
    const int topk[] = {0, 1, 40, 1000};
    const float topp[] = {1.0f, 0.95f, 0.5f, 0.0f};
    const float minp[] = {0.0f, 0.05f, 0.5f};
    const float pens[] = {1.0f, 1.1f, 0.8f};
    int cases = 0, draws = 0, mismatches = 0, used = 0, wide = 0;
    for (int kind = 0; kind < 5; kind++)
        for (int ti = 0; ti < 3; ti++)
            for (int ki = 0; ki < 4; ki++)
                for (int pi = 0; pi < 4; pi++)
                    for (int mi = 0; mi < 3; mi++)
                        for (int ri = 0; ri < 3; ri++) {
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
                            make_logits(logits, n, kind);
                            for (int w = 0; w < 80; w++) { /* repeats inside the window on purpose */
                                const int32_t t = (int32_t)(rnd() % (unsigned)(w % 3 ? 64 : n));
                                sampler_accept(sh, t);
                                sampler_accept(sd, t);
                            }
                            int is_wide = 0;
                            for (int r = 0; r < 12; r++) {
                                memcpy(copy, logits, sizeof(float) * (size_t)n);
                                const int th = sampler_sample(sh, copy, n);
                                if (r == 0 && p.temperature > 0.0f && p.top_k == 0 && p.top_p < 1.0f && n > 1024)
                                    is_wide = nucleus(copy, n, &p) > 900; /* margin: the window shifts it */
                                int u = 0;
                                const int td = device_draw(&d, sd, logits, &u);
                                if (is_wide) /* another order, the same distribution: stat_test */
                                    wide++;
                                else
                                    draws++, used += u;
                                if (!is_wide && th != td) {
                                    if (mismatches++ < 10)
                                        fprintf(stderr, "vocab %d kind %d t %.2f k %d p %.2f min_p %.2f pen %.1f draw %d: host %d, device %d\n",
                                                n, kind, p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty, r, th, td);
                                }
                                sampler_accept(sh, th);
                                sampler_accept(sd, th);
                            }
                            sampler_free(sh);
                            sampler_free(sd);
                            cases++;
                        }
    printf("kernel, vocab %d: %d settings x logits, %d draws compared (%d used the uniform), %d differ from the host; "
           "%d draws from top-p nuclei wider than 1024 tokens not compared (stat_test)\n", n, cases, draws, used, mismatches,
           wide);
    CHECK_EQ_INT(mismatches, 0);
    CHECK(used > draws / 2);
    free(logits);
    free(copy);
    cudaFree(d.d_args);
    cudaFree(d.d_out);
    cudaFree(d.d_logits);
    cudaFree(d.d_scratch);
    return 0;
}

/* A top-p nucleus wider than 1024 tokens without top-k, where the host's draw order past rank
 * 1024 is its quickselect's: the device must draw from the same distribution. Fixed logits
 * (vocab 128256, a slowly falling tail, so top-p 0.9 keeps a few thousand tokens), N draws from
 * each sampler, tokens binned into 16 groups of consecutive ranks of about equal probability
 * (computed here in double); two-sample chi-square (15 degrees of freedom) between host and
 * device, and one-sample against the exact probabilities for each: below 37.7 (p = 0.001). */
static void stat_test(void) {
    enum { V = 128256, N = 3000, B = 16 };
    Dev d = {0};
    d.n = V;
    d.scratch = kcuda_sample_scratch(V);
    REQUIRE(cudaMalloc((void **)&d.d_args, sizeof(KcudaSampleArgs) + MAX_PEN * 4) == cudaSuccess &&
            cudaMalloc((void **)&d.d_out, 8) == cudaSuccess && cudaMalloc((void **)&d.d_logits, 4 * (size_t)V) == cudaSuccess &&
            cudaMalloc(&d.d_scratch, d.scratch) == cudaSuccess);
    float *lg = malloc(sizeof(float) * V), *copy = malloc(sizeof(float) * V), *v = malloc(sizeof(float) * V);
    int *bin = malloc(sizeof(int) * V);
    REQUIRE(lg && copy && v && bin);
    for (int i = 0; i < V; i++) lg[i] = -0.002f * (float)(rnd() % 20000) + 0.3f * frand();
    SamplerParams p = sampler_params_default();
    p.temperature = 1.0f, p.top_k = 0, p.top_p = 0.9f, p.min_p = 0.0f, p.repeat_penalty = 1.0f, p.seed = 5;
    memcpy(v, lg, sizeof(float) * V);
    qsort(v, V, sizeof *v, cmp_desc);
    const int keep = nucleus(lg, V, &p);
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
    /* a tie at an edge could put a token of a later bin into an earlier one: bins are built from
     * the same logits for both samplers, so the comparison stays fair either way */
    long ch[B] = {0}, cd[B] = {0};
    Sampler *sh = sampler_create(&p, V), *sd = sampler_create(&p, V);
    p.seed = 6;
    sampler_reset(sd, &p); /* independent streams */
    int bad = 0;
    for (int t = 0; t < N; t++) {
        memcpy(copy, lg, sizeof(float) * V);
        const int th = sampler_sample(sh, copy, V);
        int u = 0;
        const int td = device_draw(&d, sd, lg, &u);
        if (th < 0 || th >= V || td < 0 || td >= V) {
            bad++;
            continue;
        }
        ch[bin[th]]++, cd[bin[td]]++;
    }
    double x2 = 0, xh = 0, xd = 0;
    for (int k = 0; k < B; k++) {
        if (ch[k] + cd[k]) x2 += (double)(ch[k] - cd[k]) * (ch[k] - cd[k]) / (double)(ch[k] + cd[k]);
        const double e = share[k] * N;
        if (e > 0) xh += (ch[k] - e) * (ch[k] - e) / e, xd += (cd[k] - e) * (cd[k] - e) / e;
    }
    printf("wide nucleus (%d tokens of %d, top-p 0.9, no top-k): %d draws each; chi-square over %d bins: host vs device "
           "%.1f, host vs exact %.1f, device vs exact %.1f (limit 37.7)\n", keep, V, N, B, x2, xh, xd);
    CHECK(keep > 1024);
    CHECK_EQ_INT(bad, 0);
    CHECK(x2 < 37.7);
    CHECK(xh < 37.7);
    CHECK(xd < 37.7);
    sampler_free(sh);
    sampler_free(sd);
    free(lg), free(copy), free(v), free(bin);
    cudaFree(d.d_args), cudaFree(d.d_out), cudaFree(d.d_logits), cudaFree(d.d_scratch);
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
        {1.0f, 0, 1.0f, 0.0f, 1.0f},    /* plain temperature */
        {1.2f, 0, 0.9f, 0.0f, 1.0f},    /* top-p alone over the whole vocabulary */
        {0.8f, 5, 1.0f, 0.0f, 1.3f},    /* top-k + penalty */
        {1.0f, 0, 1.0f, 0.2f, 1.0f},    /* min-p alone */
        {2.0f, 100, 0.5f, 0.02f, 0.9f}, /* everything, penalty < 1 */
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

/* argv[1] "quick": the kernel part at vocab 1000 only (for compute-sanitizer). */
int main(int argc, char **argv) {
    if (kcuda_device_count() <= 0) SKIP("no CUDA device");
    const int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    kernel_test(1000);
    if (!quick) {
        kernel_test(128256);
        stat_test();
        backend_test();
    }
    return check_report("test_sample_cuda");
}
