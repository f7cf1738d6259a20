/* The device sampler against the host sampler (infer/sampler.c), which is the reference. The
 * device has three launchers (kernels/cuda/sample.cu): kcuda_sample_argmax (greedy),
 * kcuda_sample_topk (top-k on, up to KCUDA_SAMPLE_TOPK_MAX; it declines other settings) and
 * kcuda_sample_sorted (every setting); the backend picks one by the settings.
 *   1. kernel: synthetic logits built to hit the edges (ties, +-0, NaN, NaN first, -inf, all
 *      NaN, fewer valid logits than k, all equal, a flat vocabulary, a peaked one, values a few
 *      ulps apart, a window of penalised ids) at vocab 1000 and 128256, every combination of
 *      temperature, top-k (off, 1, 2, 40, the cap or n - 1, one past it), top-p, min-p and
 *      penalty, 12 draws each (4 at vocab 128256) from one seeded pair of samplers: every launcher
 *      that takes the setting must give the host's token at every draw and use the uniform exactly
 *      when the host does (else the two RNG streams part and later draws differ); kcuda_sample_topk
 *      must decline exactly the settings outside its range. The comparison is shown to be sharp: the top-k
 *      kernel with a shifted uniform must differ from the host on some draws. The exception: a
 *      top-p nucleus wider than 1024 tokens without top-k, where the host's order past rank 1024
 *      is its quickselect's (those draws are not compared here: stat_test);
 *   2. stat_test: such a wide nucleus. The device walks it in rank order: every device draw must
 *      equal a plain rank-order reference draw (ref_draw, written here) with the same uniform;
 *      the host's draws must follow the exact distribution (chi-square over 16 bins). ref_draw
 *      itself is checked against the host sampler on the CPU where the host walks rank order
 *      (ref_self_check, which runs without a GPU too);
 *   3. backend: the demo model (assets/bitnet-demo.gguf) generating 48 tokens with each setting,
 *      infer_sample on the CUDA backend (device sampler) against the host sampler over the same
 *      backend's logits (infer_logits): the same token sequence for the same seed.
 *   4. advance_test: kcuda_draw_advance (decoding ahead) against the host sampler's own steps: from
 *      a state copied with sampler_draw_state, a few hundred draws of random tokens, each used or
 *      not, some declined, with windows of 0 to KCUDA_DRAW_WINDOW_MAX and tokens outside the
 *      vocabulary: after each, the next draw's arguments (uniform bits, penalty ids, m), token,
 *      position and the result ring equal what sampler_skip_uniform + sampler_accept +
 *      cuda_sample_args give on the host.
 *   5. ahead_test: decoding ahead through the backend on the demo model: the engine's pattern
 *      (eval, sample, accept) gives the host sampler's tokens over the plain steps' logits, nearly
 *      every step adopted as queued; with deviations (a token not accepted, logits() after a draw,
 *      eval of another token) the same tokens, the steps done again, logits() equal to the plain
 *      step's; a penalty window longer than the device keeps decodes the plain way; greedy with a
 *      penalty from an empty window; the defaults with the whole f16 head and with the int8 head;
 *      InferOptions.decode_plain adopts nothing and gives the same tokens.
 * Exact equality is the expectation: every comparison the two make has the same bits; only exp()
 * (and, in kcuda_sample_sorted, the order of the double sums) may differ in the last bit, which
 * can change a draw only when the uniform falls within ~1e-16 (relative) of a boundary between
 * two tokens (sample.cu). Exits 77 without a GPU.
 * Argument "quick": part 1 at vocab 1000 and 20000 only, one draw per case, penalties 1 and 1.1.
 * Argument "sanitize": for compute-sanitizer, kcuda_sample_topk and kcuda_sample_argmax only, a
 * few dozen launches at vocab 3000 and 20000 (the top-k merge with and without its cutting rounds),
 * with items 4 and 5 (5 for the defaults and greedy only).
 * Argument "ahead": items 4 and 5 alone (5 for two settings); "advance": item 4 alone, two windows
 * of 40 draws (compute-sanitizer's racecheck over kcuda_draw_advance).
 * Argument "time": not a test: each launcher's time per draw at vocab 128256 (event-timed). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    REQUIRE(cudaMemset(d->d_scratch, 0, d->scratch) == cudaSuccess); /* the kernels' counters start at zero */
}

static void dev_close(Dev *d) {
    cudaFree(d->d_args), cudaFree(d->d_out), cudaFree(d->d_logits), cudaFree(d->d_scratch);
}

static void dev_logits(Dev *d, const float *logits) {
    REQUIRE(cudaMemcpy(d->d_logits, logits, sizeof(float) * (size_t)d->n, cudaMemcpyHostToDevice) == cudaSuccess);
}

enum { PATH_TOPK, PATH_ARGMAX, PATH_SORTED };
static const char *const PATH_NAME[3] = {"kcuda_sample_topk", "kcuda_sample_argmax", "kcuda_sample_sorted"};

static int dev_launch(Dev *d, int path, void *stream) {
    const int32_t *ids = (const int32_t *)(d->d_args + 1);
    switch (path) {
    case PATH_TOPK: return kcuda_sample_topk(d->d_logits, d->n, d->d_args, ids, d->d_scratch, d->scratch, d->d_out, stream);
    case PATH_ARGMAX:
        return kcuda_sample_argmax(d->d_logits, d->n, d->d_args, ids, d->d_scratch, d->scratch, d->d_out, stream);
    default: return kcuda_sample_sorted(d->d_logits, d->n, d->d_args, ids, d->d_scratch, d->scratch, d->d_out, stream);
    }
}

/* One device draw by launcher `path`, with the arguments on the device. */
static Draw dev_run(Dev *d, int path) {
    const int rc = dev_launch(d, path, NULL);
    if (rc) fprintf(stderr, "%s: %s\n", PATH_NAME[path], kcuda_last_error());
    REQUIRE(rc == 0);
    int out[3] = {-1, -1, -1};
    REQUIRE(cudaMemcpy(out, d->d_out, sizeof out, cudaMemcpyDeviceToHost) == cudaSuccess);
    return (Draw){out[0], out[1], out[2]};
}

/* Whether kcuda_sample_topk takes these settings (the backend's choice, sample_graph_for). */
static int topk_range(const SamplerParams *p, int n) {
    return p->top_k >= 1 && p->top_k < n && p->top_k <= KCUDA_SAMPLE_TOPK_MAX;
}

/* The backend's argument packing (cuda_sample_args) from sampler s, then kcuda_sample_topk
 * (*topk), kcuda_sample_sorted (*sorted) and, when the temperature says greedy,
 * kcuda_sample_argmax (*greedy) on the logits already on the device. Consumes the uniform when
 * the draw the backend would keep used it. *shifted (if not NULL): kcuda_sample_topk again with
 * the uniform moved by a half (the test's sharpness check). */
static void device_draw(Dev *d, Sampler *s, Draw *topk, Draw *sorted, Draw *greedy, Draw *shifted) {
    static unsigned char buf[sizeof(KcudaSampleArgs) + MAX_PEN * sizeof(int32_t)];
    KcudaSampleArgs *a = (KcudaSampleArgs *)buf;
    memset(a, 0, sizeof *a);
    const int np = cuda_sample_args(s, a, (int32_t *)(a + 1), MAX_PEN);
    REQUIRE(np >= 0);
    REQUIRE(cudaMemcpy(d->d_args, buf, sizeof *a + (size_t)np * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    *topk = dev_run(d, PATH_TOPK);
    *sorted = dev_run(d, PATH_SORTED);
    *greedy = a->temperature > 0.0f ? (Draw){-1, 0, 0} : dev_run(d, PATH_ARGMAX);
    if (shifted) {
        a->u01 = fmod(a->u01 + 0.5, 1.0);
        REQUIRE(cudaMemcpy(d->d_args, buf, sizeof *a, cudaMemcpyHostToDevice) == cudaSuccess);
        *shifted = dev_run(d, PATH_TOPK);
    }
    const SamplerParams *p = sampler_params(s);
    const Draw kept = !(p->temperature > 0.0f) ? *greedy : topk_range(p, d->n) ? *topk : *sorted;
    if (kept.used) sampler_skip_uniform(s);
}

/* Logits of kind k: 0 peaked (a few strong tokens), 1 flat (all within 0.5), 2 coarse ties
 * (values on a grid of 0.25, +-0 included), 3 with NaN and -inf entries, 4 all -inf but one,
 * 5 values a few ulps apart (4096 distinct floats just above 1), 6 peaked with a NaN first logit
 * (the host's argmax keeps id 0), 7 all NaN, 8 NaN but for 30 tokens (fewer than most k), 9 all
 * equal (rank order = id order: the top-k merge's lists overlap the most, its cutting rounds
 * run several times), 10 as the screened lm_head leaves them (-inf but for ~150 peaked rows, in
 * runs of neighbours as the screen's 32-row groups give them), 11 -inf but for one 1024-id block
 * with exactly 256 live logits and one with 257 (kcuda_sample_topk's ranking by count and its
 * sort, side by side; ties included; one block of 256 or 257 at vocabularies below 2048), 12 all
 * -inf (the host's first candidate: id 0), 13 all -inf or NaN: NaN at ids 0 and 1 half the time
 * (the lowest -inf id is then later), else -inf at 0 and NaN at 1. */
enum { KINDS = 14 };
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
        case 7: case 8: l[i] = NAN; break;
        case 9: l[i] = 0.75f; break;
        default: l[i] = -INFINITY; break;
        }
    }
    if (k == 10)
        for (int j = 0; j < 150; j++) {
            const int at = (int)(rnd() % (unsigned)n), run = 1 + (int)(rnd() % 4);
            for (int r = 0; r < run && at + r < n; r++) l[at + r] = -2.0f + 4.0f * frand() + (rnd() % 20 == 0 ? 6.0f : 0.0f);
        }
    if (k == 11) { /* block b0 gets 256 live ids, block b0 + 1 (or b0 if there is one) 257 */
        const int blocks = (n + 1023) / 1024, b0 = blocks > 1 ? (int)(rnd() % (unsigned)(blocks - 1)) : 0;
        for (int part = 0; part < (blocks > 1 ? 2 : 1); part++) {
            const int base = (b0 + part) * 1024, span = n - base < 1024 ? n - base : 1024;
            const int live = blocks > 1 ? 256 + part : 256 + (int)(rnd() & 1u), want = live < span ? live : span;
            for (int c = 0; c < want;) {
                const int at = base + (int)(rnd() % (unsigned)span);
                if (l[at] == -INFINITY) l[at] = (float)(int)(rnd() % 9) * 0.5f, c++; /* coarse: ties */
            }
        }
    }
    if (k == 13)
        for (int i = 0; i < n; i++)
            if (rnd() % 3 == 0 || i < 2) l[i] = NAN;
    if (k == 13 && (rnd() & 1)) l[0] = -INFINITY, l[1] = NAN; /* the lowest -inf id is 0: not special */
    if (k == 4) l[rnd() % (unsigned)n] = 1.0f;
    if (k == 6) l[0] = NAN;
    if (k == 8)
        for (int j = 0; j < 30; j++) l[rnd() % (unsigned)n] = 2.0f * frand();
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
    /* 12 draws a case at vocab 1000, 4 at 128256 (the whole test stays under a minute on an H100:
     * the host sampler and the sort take ~1 ms a draw there) */
    const int n_draws = quick ? 1 : n > 100000 ? 4 : 12, n_pens = quick ? 2 : 3;
    Dev d;
    dev_open(&d, n);
    float *logits = malloc(sizeof(float) * (size_t)n), *copy = malloc(sizeof(float) * (size_t)n);
    REQUIRE(logits && copy);
    const float temps[] = {0.0f, 0.7f, 1.5f};
    const int cap = KCUDA_SAMPLE_TOPK_MAX < n - 1 ? KCUDA_SAMPLE_TOPK_MAX : n - 1;
    const int topk[] = {0, 1, 2, 40, cap, cap + 1}; /* cap + 1: past the cap, or top-k off (= n) */
    const float topp[] = {1.0f, 0.95f, 0.5f, 0.0f};
    const float minp[] = {0.0f, 0.05f, 0.5f};
    const float pens[] = {1.0f, 1.1f, 0.8f};
    int cases = 0, draws = 0, used = 0, wide = 0, topk_draws = 0, sharp = 0, sharp_of = 0;
    int bad_topk = 0, bad_sorted = 0, bad_greedy = 0, bad_decline = 0;
    for (int kind = 0; kind < KINDS; kind++)
        for (int ti = 0; ti < 3; ti++)
            for (int ki = 0; ki < 6; ki++) {
                /* fresh logits of this kind for each temperature and top-k (not each case: at
                 * vocab 128256 making them costs ~2 ms) */
                make_logits(logits, n, kind);
                dev_logits(&d, logits);
                for (int pi = 0; pi < 4; pi++)
                    for (int mi = 0; mi < 3; mi++)
                        for (int ri = 0; ri < n_pens; ri++) {
                            if (ti == 0 && (pi || mi || (ki && ki != 3))) continue; /* greedy ignores the filters */
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
                            for (int w = 0; w < 80; w++) { /* repeats inside the window on purpose */
                                const int32_t t = (int32_t)(rnd() % (unsigned)(w % 3 ? 64 : n));
                                sampler_accept(sh, t);
                                sampler_accept(sd, t);
                            }
                            const int in_range = topk_range(&p, n);
                            int is_wide = 0;
                            for (int r = 0; r < n_draws; r++) {
                                memcpy(copy, logits, sizeof(float) * (size_t)n);
                                const int th = sampler_sample(sh, copy, n);
                                if (r == 0 && p.temperature > 0.0f && (p.top_k <= 0 || p.top_k >= n) && p.top_p < 1.0f &&
                                    n > 1024)
                                    is_wide = nucleus(copy, n, &p) > 900; /* margin: the window shifts it */
                                Draw f, so, g, sf;
                                device_draw(&d, sd, &f, &so, &g, in_range && r == 0 ? &sf : NULL);
                                /* kcuda_sample_topk declines exactly outside its range, and says nothing else */
                                if (f.declined != !in_range || (f.declined && (f.tok != -1 || f.used))) bad_decline++;
                                if (is_wide) { /* another order, the same distribution: stat_test */
                                    wide++;
                                } else {
                                    draws++;
                                    used += so.used;
                                    const int bt = in_range && (f.tok != th || f.used != so.used);
                                    const int bs = so.tok != th || so.declined;
                                    const int bg = p.temperature <= 0.0f && (g.tok != th || g.used || g.declined);
                                    topk_draws += in_range;
                                    bad_topk += bt, bad_sorted += bs, bad_greedy += bg;
                                    if ((bt || bs || bg) && bad_topk + bad_sorted + bad_greedy <= 10)
                                        fprintf(stderr, "vocab %d kind %d t %.2f k %d p %.2f min_p %.2f pen %.1f draw %d: host %d, "
                                                "topk %d (declined %d), sorted %d, greedy %d\n", n, kind, p.temperature, p.top_k,
                                                p.top_p, p.min_p, p.repeat_penalty, r, th, f.tok, f.declined, so.tok, g.tok);
                                    if (in_range && r == 0 && f.used) sharp_of++, sharp += sf.tok != th;
                                }
                                sampler_accept(sh, th);
                                sampler_accept(sd, th);
                            }
                            sampler_free(sh);
                            sampler_free(sd);
                            cases++;
                        }
            }
    printf("kernel, vocab %d: %d settings x logits, %d draws compared (%d used the uniform), %d of them by "
           "kcuda_sample_topk; differ from the host: kcuda_sample_topk %d, kcuda_sample_sorted %d, kcuda_sample_argmax %d; "
           "kcuda_sample_topk declined wrongly %d times; with the uniform shifted by 0.5 it differs from the host in %d of %d "
           "draws; %d draws from top-p nuclei wider than 1024 tokens not compared (stat_test)\n", n, cases, draws, used,
           topk_draws, bad_topk, bad_sorted, bad_greedy, bad_decline, sharp, sharp_of, wide);
    CHECK_EQ_INT(bad_topk, 0);
    CHECK_EQ_INT(bad_sorted, 0);
    CHECK_EQ_INT(bad_greedy, 0);
    CHECK_EQ_INT(bad_decline, 0);
    CHECK(used > draws / 2);
    CHECK(topk_draws > draws / 3);
    CHECK(sharp > sharp_of / 10); /* the comparison can fail */
    free(logits);
    free(copy);
    dev_close(&d);
    return 0;
}

/* For compute-sanitizer: kcuda_sample_topk (k 1, 40 and the cap; at k 40 also with the
 * arguments and result in mapped pinned memory, as the backend runs it) and kcuda_sample_argmax
 * on peaked, tied, NaN and all-equal logits at vocab 3000 (3 blocks) and 20000 (20 blocks), the
 * default filters; each draw still compared with the host. */
static void sanitize_test(void) {
    const int vocabs[2] = {3000, 20000}, kinds[4] = {0, 2, 3, 9};
    int launches = 0, bad = 0;
    for (int vi = 0; vi < 2; vi++) {
        const int n = vocabs[vi];
        Dev d;
        dev_open(&d, n);
        float *logits = malloc(sizeof(float) * (size_t)n), *copy = malloc(sizeof(float) * (size_t)n);
        REQUIRE(logits && copy);
        for (int ki = 0; ki < 4; ki++)
            for (int kk = 0; kk < 4; kk++) {
                SamplerParams p = sampler_params_default();
                p.seed = 7u + (uint64_t)launches;
                p.top_k = kk == 0 ? 1 : kk == 1 ? 40 : KCUDA_SAMPLE_TOPK_MAX;
                if (kk == 3) p.temperature = 0.0f; /* greedy: both launchers */
                Sampler *sh = sampler_create(&p, n), *sd = sampler_create(&p, n);
                REQUIRE(sh && sd);
                make_logits(logits, n, kinds[ki]);
                dev_logits(&d, logits);
                for (int w = 0; w < 40; w++) {
                    const int32_t t = (int32_t)(rnd() % (unsigned)n);
                    sampler_accept(sh, t);
                    sampler_accept(sd, t);
                }
                memcpy(copy, logits, sizeof(float) * (size_t)n);
                const int th = sampler_sample(sh, copy, n);
                static unsigned char buf[sizeof(KcudaSampleArgs) + MAX_PEN * sizeof(int32_t)];
                KcudaSampleArgs *a = (KcudaSampleArgs *)buf;
                const int np = cuda_sample_args(sd, a, (int32_t *)(a + 1), MAX_PEN);
                REQUIRE(np >= 0);
                REQUIRE(cudaMemcpy(d.d_args, buf, sizeof *a + (size_t)np * 4, cudaMemcpyHostToDevice) == cudaSuccess);
                const Draw f = dev_run(&d, PATH_TOPK);
                bad += f.tok != th;
                launches++;
                if (kk == 1) { /* the backend's way: arguments and result in mapped pinned memory */
                    unsigned char *h = NULL;
                    KcudaSampleArgs *m_args = NULL;
                    REQUIRE(cudaHostAlloc((void **)&h, sizeof buf + 16, cudaHostAllocMapped) == cudaSuccess);
                    memcpy(h, buf, sizeof buf);
                    int *h_out = (int *)(h + sizeof buf), *m_out = NULL;
                    REQUIRE(cudaHostGetDevicePointer((void **)&m_args, h, 0) == cudaSuccess);
                    m_out = (int *)((unsigned char *)m_args + sizeof buf);
                    REQUIRE(kcuda_sample_topk(d.d_logits, n, m_args, (const int32_t *)(m_args + 1), d.d_scratch, d.scratch,
                                              m_out, NULL) == 0);
                    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
                    bad += h_out[0] != th;
                    launches++;
                    cudaFreeHost(h);
                }
                if (kk == 3) {
                    const Draw g = dev_run(&d, PATH_ARGMAX);
                    bad += g.tok != th;
                    launches++;
                }
                sampler_free(sh);
                sampler_free(sd);
            }
        free(logits), free(copy);
        dev_close(&d);
    }
    printf("sanitize: %d launches of kcuda_sample_topk / kcuda_sample_argmax, %d differ from the host\n", launches, bad);
    CHECK_EQ_INT(bad, 0);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The sampler graph's shapes, as the backend could capture them, timed from the host (graph
 * launch + stream synchronize, median of 3 x 200, the logits of d already there): the arguments
 * copied in (16 KiB from pinned memory) and the result copied out around the kernel (the backend
 * before 2026-12-06), or the kernel alone reading the arguments from and writing the result to
 * pinned host memory (mapped), or the kernel alone on device memory (the floor). The defaults,
 * kcuda_sample_topk. */
static void graph_time(Dev *d, cudaStream_t st) {
    enum { REPS = 200, BYTES = sizeof(KcudaSampleArgs) + MAX_PEN * sizeof(int32_t) };
    unsigned char *h_args = NULL;
    int *h_out = NULL;
    REQUIRE(cudaMallocHost((void **)&h_args, BYTES) == cudaSuccess && cudaMallocHost((void **)&h_out, 16) == cudaSuccess);
    KcudaSampleArgs *a = (KcudaSampleArgs *)h_args;
    SamplerParams p = sampler_params_default();
    p.seed = 3;
    Sampler *s = sampler_create(&p, d->n);
    REQUIRE(s);
    for (int w = 0; w < 64; w++) sampler_accept(s, (int32_t)(rnd() % (unsigned)d->n));
    REQUIRE(cuda_sample_args(s, a, (int32_t *)(a + 1), MAX_PEN) >= 0);
    REQUIRE(cudaMemcpy(d->d_args, h_args, BYTES, cudaMemcpyHostToDevice) == cudaSuccess);
    KcudaSampleArgs *m_args = NULL;
    int *m_out = NULL;
    REQUIRE(cudaHostGetDevicePointer((void **)&m_args, h_args, 0) == cudaSuccess &&
            cudaHostGetDevicePointer((void **)&m_out, h_out, 0) == cudaSuccess);
    const char *name[3] = {"copy in + kernel + copy out", "kernel on mapped host memory", "kernel alone (device memory)"};
    printf("\nsampler graph shapes, vocab %d, the defaults, kcuda_sample_topk: host time per graph launch + "
           "synchronize, median of 3 x %d\n| graph | us | token |\n|---|---:|---:|\n", d->n, REPS);
    for (int shape = 0; shape < 3; shape++) {
        cudaGraph_t g = NULL;
        cudaGraphExec_t ge = NULL;
        REQUIRE(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
        int rc = 0;
        if (shape == 0) {
            rc |= cudaMemcpyAsync(d->d_args, h_args, BYTES, cudaMemcpyHostToDevice, st) != cudaSuccess;
            rc |= kcuda_sample_topk(d->d_logits, d->n, d->d_args, (const int32_t *)(d->d_args + 1), d->d_scratch,
                                    d->scratch, d->d_out, st);
            rc |= cudaMemcpyAsync(h_out, d->d_out, 3 * sizeof(int), cudaMemcpyDeviceToHost, st) != cudaSuccess;
        } else if (shape == 1) {
            rc |= kcuda_sample_topk(d->d_logits, d->n, m_args, (const int32_t *)(m_args + 1), d->d_scratch, d->scratch,
                                    m_out, st);
        } else {
            rc |= kcuda_sample_topk(d->d_logits, d->n, d->d_args, (const int32_t *)(d->d_args + 1), d->d_scratch,
                                    d->scratch, d->d_out, st);
        }
        REQUIRE(cudaStreamEndCapture(st, &g) == cudaSuccess && rc == 0);
        REQUIRE(cudaGraphInstantiate(&ge, g, 0) == cudaSuccess);
        double t3[3];
        for (int rep = 0; rep < 3; rep++) {
            for (int w = 0; w < 20; w++)
                REQUIRE(cudaGraphLaunch(ge, st) == cudaSuccess && cudaStreamSynchronize(st) == cudaSuccess);
            const double t0 = now_s();
            for (int w = 0; w < REPS; w++)
                REQUIRE(cudaGraphLaunch(ge, st) == cudaSuccess && cudaStreamSynchronize(st) == cudaSuccess);
            t3[rep] = (now_s() - t0) * 1e6 / REPS;
        }
        int out[3] = {-1, -1, -1};
        if (shape == 2) REQUIRE(cudaMemcpy(out, d->d_out, sizeof out, cudaMemcpyDeviceToHost) == cudaSuccess);
        else memcpy(out, h_out, sizeof out);
        const double lo = t3[0] < t3[1] ? t3[0] : t3[1], hi = t3[0] < t3[1] ? t3[1] : t3[0];
        printf("| %s | %.1f | %d |\n", name[shape], t3[2] < lo ? lo : t3[2] > hi ? hi : t3[2], out[0]);
        cudaGraphExecDestroy(ge);
        cudaGraphDestroy(g);
    }
    sampler_free(s);
    cudaFreeHost(h_args);
    cudaFreeHost(h_out);
}

/* Not a test: each launcher's time per draw (CUDA events around 200 launches on one stream,
 * after 20 warm-up launches; the arguments already on the device) at vocab 128256, on peaked, flat
 * and screened logits, with the default settings (and their top-k at the cap, 256), greedy with the penalty,
 * against kcuda_sample_sorted with the same settings. */
static void time_test(void) {
    enum { V = 128256, REPS = 200, WARM = 20 };
    Dev d;
    dev_open(&d, V);
    float *logits = malloc(sizeof(float) * V);
    REQUIRE(logits);
    cudaStream_t st;
    cudaEvent_t e0, e1;
    REQUIRE(cudaStreamCreate(&st) == cudaSuccess && cudaEventCreate(&e0) == cudaSuccess &&
            cudaEventCreate(&e1) == cudaSuccess);
    static unsigned char buf[sizeof(KcudaSampleArgs) + MAX_PEN * sizeof(int32_t)];
    printf("launcher time per draw, vocab %d, penalty 1.1 over 64 tokens, median of 3 x %d event-timed launches\n"
           "| logits | setting | launcher | us | vs sorted |\n|---|---|---|---:|---:|\n", V, REPS);
    /* screened: -inf but for ~150 rows, as the screened lm_head leaves them (kcuda_sample_topk's
     * blocks rank their few live logits by counting; on the others they sort all 1024) */
    const char *kname[3] = {"peaked", "flat", "screened"};
    const int kinds[3] = {0, 1, 10};
    for (int kind = 0; kind < 3; kind++) {
        make_logits(logits, V, kinds[kind]);
        dev_logits(&d, logits);
        const struct { const char *name; float t; int k; float p, mp; int path; } R[] = {
            {"defaults (top-k 40)", 0.7f, 40, 0.95f, 0.05f, PATH_SORTED},
            {"defaults (top-k 40)", 0.7f, 40, 0.95f, 0.05f, PATH_TOPK},
            {"defaults, top-k 256", 0.7f, KCUDA_SAMPLE_TOPK_MAX, 0.95f, 0.05f, PATH_SORTED},
            {"defaults, top-k 256", 0.7f, KCUDA_SAMPLE_TOPK_MAX, 0.95f, 0.05f, PATH_TOPK},
            /* the parts: the blocks' sorts with a trivial merge; the merge without top-p/min-p */
            {"top-k 1", 0.7f, 1, 1.0f, 0.0f, PATH_TOPK},
            {"top-k 40 alone", 0.7f, 40, 1.0f, 0.0f, PATH_TOPK},
            {"greedy + penalty", 0.0f, 40, 1.0f, 0.0f, PATH_ARGMAX},
        };
        double sorted_us = 0;
        for (size_t r = 0; r < sizeof R / sizeof R[0]; r++) {
            SamplerParams p = sampler_params_default();
            p.temperature = R[r].t, p.top_k = R[r].k, p.top_p = R[r].p, p.min_p = R[r].mp, p.seed = 1;
            Sampler *s = sampler_create(&p, V);
            REQUIRE(s);
            for (int w = 0; w < 64; w++) sampler_accept(s, (int32_t)(rnd() % V));
            KcudaSampleArgs *a = (KcudaSampleArgs *)buf;
            const int np = cuda_sample_args(s, a, (int32_t *)(a + 1), MAX_PEN);
            REQUIRE(np >= 0);
            REQUIRE(cudaMemcpy(d.d_args, buf, sizeof *a + (size_t)np * 4, cudaMemcpyHostToDevice) == cudaSuccess);
            double t3[3];
            for (int rep = 0; rep < 3; rep++) {
                for (int w = 0; w < WARM; w++) REQUIRE(dev_launch(&d, R[r].path, st) == 0);
                REQUIRE(cudaEventRecord(e0, st) == cudaSuccess);
                for (int w = 0; w < REPS; w++) REQUIRE(dev_launch(&d, R[r].path, st) == 0);
                REQUIRE(cudaEventRecord(e1, st) == cudaSuccess && cudaEventSynchronize(e1) == cudaSuccess);
                float ms = 0;
                REQUIRE(cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess);
                t3[rep] = ms * 1e3 / REPS;
            }
            const double lo = t3[0] < t3[1] ? t3[0] : t3[1], hi = t3[0] < t3[1] ? t3[1] : t3[0];
            const double med = t3[2] < lo ? lo : t3[2] > hi ? hi : t3[2];
            if (R[r].path == PATH_SORTED) sorted_us = med;
            printf("| %s | %s | %s | %.1f | %.2fx |\n", kname[kind], R[r].name, PATH_NAME[R[r].path], med,
                   sorted_us > 0 ? med / sorted_us : 0.0);
            sampler_free(s);
        }
    }
    graph_time(&d, st);
    cudaEventDestroy(e0), cudaEventDestroy(e1), cudaStreamDestroy(st);
    free(logits);
    dev_close(&d);
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
 *   - the device (kcuda_sample_topk must decline: no top-k; kcuda_sample_sorted draws) against
 *     ref_draw with the same uniform: every draw equal;
 *   - the host sampler against the exact probabilities: chi-square over 16 bins of consecutive
 *     ranks of about equal probability (15 degrees of freedom) below 37.7 (p = 0.001).
 * (A chi-square of the device's draws against the exact probabilities is printed, not checked:
 * with exact equality to ref_draw it measures only the uniforms' luck.) */
static void stat_test(void) {
    enum { V = 128256, N = 2000, B = 16 };
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
    int bad = 0, differ = 0, topk_taken = 0;
    for (int t = 0; t < N; t++) {
        memcpy(copy, lg, sizeof(float) * V);
        const int th = sampler_sample(sh, copy, V);
        const double u = sampler_peek_uniform(sd);
        Draw f, so, g;
        device_draw(&d, sd, &f, &so, &g, NULL);
        const int tr = ref_draw(&ref, u);
        topk_taken += !f.declined;
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
           "differ (kcuda_sample_topk took %d, declined the rest); chi-square over %d bins: host vs exact %.1f (limit 37.7), "
           "device vs exact %.1f (not checked)\n", keep, V, N, differ, topk_taken, B, xh, xd);
    CHECK(keep > 1024);
    CHECK_EQ_INT(ref.n, keep);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(differ, 0);
    CHECK_EQ_INT(topk_taken, 0);
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

/* The demo model into m (0), or a failed check (-1). */
static int load_demo(Model *m) {
    Err err = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/assets/bitnet-demo.gguf", root_dir());
    const int loaded = model_load(m, path, NULL, &err) == 0;
    CHECK_MSG(loaded, "%s: %s", path, err.msg);
    return loaded ? 0 : -1;
}

/* Generates GEN tokens from a fixed prompt twice per setting, once with
 * infer_sample (the device sampler) and once with the host sampler over infer_logits. */
static void backend_test(void) {
    enum { GEN = 48 };
    Model m;
    Err err = {{0}};
    if (load_demo(&m)) return;
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
        {0.9f, KCUDA_SAMPLE_TOPK_MAX, 0.9f, 0.0f, 1.1f},     /* top-k at kcuda_sample_topk's cap */
        {1.0f, KCUDA_SAMPLE_TOPK_MAX + 1, 1.0f, 0.0f, 1.1f}, /* top-k past it: kcuda_sample_sorted */
        {1.0f, 1, 1.0f, 0.0f, 1.0f},    /* top-k 1 */
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

/* Decoding ahead (item 4 of the header). */
static void advance_case(const SamplerParams *p, int n_vocab, int prompt, int steps) {
    Sampler *s = sampler_create(p, n_vocab);
    REQUIRE(s != NULL);
    for (int i = 0; i < prompt; i++) sampler_accept(s, (int32_t)(rnd() % (uint32_t)n_vocab));
    for (int i = 0; i < 3; i++) sampler_skip_uniform(s);
    KcudaDrawState *st = calloc(1, sizeof *st);
    KcudaSampleArgs *a = calloc(1, sizeof *a + MAX_PEN * 4), *ha = calloc(1, sizeof *ha + MAX_PEN * 4),
                    *got = calloc(1, sizeof *got + MAX_PEN * 4);
    REQUIRE(st && a && ha && got);
    uint64_t r[4];
    REQUIRE(sampler_draw_state(s, r, st->window, KCUDA_DRAW_WINDOW_MAX, &st->win_cap, &st->win_n, &st->win_head) == 0);
    memcpy(st->rng, r, sizeof r);
    REQUIRE(cuda_sample_args(s, a, (int32_t *)(a + 1), MAX_PEN) >= 0);
    KcudaDrawState *d_st;
    KcudaSampleArgs *d_a;
    int *d_draw, *d_io, *ring;
    REQUIRE(cudaMalloc((void **)&d_st, sizeof *st) == cudaSuccess &&
            cudaMalloc((void **)&d_a, sizeof *a + MAX_PEN * 4) == cudaSuccess &&
            cudaMalloc((void **)&d_draw, 3 * sizeof(int)) == cudaSuccess &&
            cudaMalloc((void **)&d_io, 3 * sizeof(int)) == cudaSuccess &&
            cudaHostAlloc((void **)&ring, KCUDA_DRAW_SLOT * KCUDA_DRAW_RING * sizeof(int), cudaHostAllocMapped) == cudaSuccess);
    int *d_ring;
    REQUIRE(cudaHostGetDevicePointer((void **)&d_ring, ring, 0) == cudaSuccess);
    int io[3] = {5, 100, kcuda_screen_m(a, n_vocab)};
    REQUIRE(cudaMemcpy(d_st, st, sizeof *st, cudaMemcpyHostToDevice) == cudaSuccess &&
            cudaMemcpy(d_a, a, sizeof *a + MAX_PEN * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
            cudaMemcpy(d_io, io, sizeof io, cudaMemcpyHostToDevice) == cudaSuccess);
    int bad = 0, pos = 100;
    for (int i = 0; i < steps && !bad; i++) {
        /* tokens: mostly a small set (repeats in the window), some past the vocabulary */
        const uint32_t k = rnd() % 16;
        const int tok = k == 0 ? n_vocab + (int)(rnd() % 3) : (int)(rnd() % (k < 8 ? 12u : (uint32_t)n_vocab));
        const int used = (int)(rnd() % 3 != 0), declined = rnd() % 29 == 0, greedy = rnd() % 7 == 0;
        const int draw[3] = {tok, used, declined};
        REQUIRE(cudaMemcpy(d_draw, draw, sizeof draw, cudaMemcpyHostToDevice) == cudaSuccess);
        CHECK_EQ_INT(kcuda_draw_advance(d_draw, greedy, d_st, d_a, (int32_t *)(d_a + 1), d_io, n_vocab, d_ring, NULL), 0);
        REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
        const int *slot = ring + KCUDA_DRAW_SLOT * (i % KCUDA_DRAW_RING);
        const int eu = greedy ? 0 : used, ed = greedy ? 0 : declined;
        if (slot[KCUDA_DRAW_TOKEN] != tok || slot[KCUDA_DRAW_USED] != eu || slot[KCUDA_DRAW_DECLINED] != ed ||
            slot[KCUDA_DRAW_SEQ] != i + 1)
            bad = 1;
        if (!ed) {
            if (eu) sampler_skip_uniform(s);
            sampler_accept(s, tok);
            pos++;
        }
        const int np = cuda_sample_args(s, ha, (int32_t *)(ha + 1), MAX_PEN);
        REQUIRE(np >= 0);
        REQUIRE(cudaMemcpy(got, d_a, sizeof *a + MAX_PEN * 4, cudaMemcpyDeviceToHost) == cudaSuccess &&
                cudaMemcpy(io, d_io, sizeof io, cudaMemcpyDeviceToHost) == cudaSuccess);
        if (ed) continue; /* a declined draw changes nothing but its ring slot (io keeps the last token) */
        if (memcmp(&got->u01, &ha->u01, sizeof ha->u01) != 0 || got->n_pen != ha->n_pen ||
            memcmp(got + 1, ha + 1, (size_t)np * 4) != 0 || io[0] != tok || io[1] != pos ||
            io[2] != kcuda_screen_m(ha, n_vocab))
            bad = 1;
        int fp[4];
        kcuda_draw_fingerprint(ha, (const int32_t *)(ha + 1), fp);
        if (memcmp(fp, slot + KCUDA_DRAW_FP_N, sizeof fp) != 0) bad = 1;
        if (bad)
            fprintf(stderr, "draw %d (token %d used %d greedy %d): u01 %.17g / host %.17g, n_pen %d / %d, io %d %d %d\n", i,
                    tok, used, greedy, got->u01, ha->u01, got->n_pen, ha->n_pen, io[0], io[1], io[2]);
    }
    CHECK_MSG(!bad, "kcuda_draw_advance equals the host sampler's steps (window %d, penalty %g, temperature %g, vocab %d)",
              p->repeat_last_n, p->repeat_penalty, p->temperature, n_vocab);
    cudaFree(d_st), cudaFree(d_a), cudaFree(d_draw), cudaFree(d_io), cudaFreeHost(ring);
    free(st), free(a), free(ha), free(got);
    sampler_free(s);
}

static void advance_test(int quick) {
    SamplerParams p = sampler_params_default();
    const int windows[] = {64, 0, 1, 7, 300, KCUDA_DRAW_WINDOW_MAX};
    for (size_t w = 0; w < (quick ? 2 : sizeof windows / sizeof windows[0]); w++) {
        p.repeat_last_n = windows[w];
        p.repeat_penalty = 1.1f;
        p.temperature = 0.7f;
        advance_case(&p, 1000, w == 3 ? 3 : 20, quick ? 40 : 300);
    }
    if (quick) return;
    p.repeat_last_n = 64;
    p.repeat_penalty = 1.0f; /* penalty off: no window, no ids */
    advance_case(&p, 50000, 20, 100);
    p.repeat_penalty = 1.1f;
    p.temperature = 0.0f; /* greedy with a penalty: no uniform in the arguments */
    advance_case(&p, 1000, 20, 100);
    p.repeat_penalty = 0.0f; /* a non-positive penalty: the host ignores the window */
    p.temperature = 0.7f;
    advance_case(&p, 1000, 20, 100);
}

/* Decoding ahead through the backend (item 5 of the header). One generation of GEN tokens on
 * backend handle b in the engine's pattern (eval, sample, accept), with deviations at some steps:
 * dev 1: the token is not accepted (the device assumed it was), dev 2: logits() after the draw
 * (the next step is queued by then), dev 3: eval of another token than the one drawn. A negative
 * prompt_accept leaves the prompt out of the penalty window (so it is empty when decoding ahead
 * starts if the first tokens are not accepted either). */
enum { AHEAD_GEN = 40 };
static void ahead_run(void *b, const SamplerParams *p, int V, const int *dev, int32_t *out, int host_ref, float *lg_out,
                      int prompt_accept) {
    Err err = {{0}};
    Sampler *s = sampler_create(p, V);
    REQUIRE(s != NULL);
    const int32_t prompt[6] = {1, 300, 301, 302, 303, 304};
    for (int i = 0; i < 6 && prompt_accept >= 0; i++) sampler_accept(s, prompt[i]);
    float *copy = malloc(sizeof(float) * (size_t)V);
    REQUIRE(copy && backend_cuda_ops.eval(b, prompt, 6, 0, NULL, &err) == 0);
    int32_t tok = -1;
    for (int g = 0; g < AHEAD_GEN; g++) {
        if (g > 0) {
            int32_t in = dev[g] == 3 ? (tok + 1) % V : tok;
            REQUIRE(backend_cuda_ops.eval(b, &in, 1, 5 + g, NULL, &err) == 0);
        }
        if (host_ref) {
            const float *lg = backend_cuda_ops.logits(b);
            REQUIRE(lg != NULL);
            memcpy(copy, lg, sizeof(float) * (size_t)V);
            tok = sampler_sample(s, copy, V);
        } else {
            const int rc = backend_cuda_ops.sample(b, s, &tok, &err);
            if (rc != 1) fprintf(stderr, "ahead: sample: %d %s\n", rc, err.msg);
            REQUIRE(rc == 1);
        }
        if (dev[g] == 2 && lg_out) {
            const float *lg = backend_cuda_ops.logits(b);
            REQUIRE(lg != NULL);
            memcpy(lg_out, lg, sizeof(float) * (size_t)V);
        }
        out[g] = tok;
        if (dev[g] != 1) sampler_accept(s, tok);
    }
    free(copy);
    sampler_free(s);
}

/* ahead_run decoding (host_ref 0) and then as the reference (host_ref 1) with the same settings
 * and deviations; returns the tokens that differ, the steps adopted and redone in the first. */
static int ahead_compare(void *b, const SamplerParams *p, int V, const int *dev, float *lg_dev, float *lg_ref,
                         int prompt_accept, long *adopted, long *redone) {
    int32_t got[AHEAD_GEN], want[AHEAD_GEN];
    long a0, r0, a1, r1;
    cuda_ahead_counts(b, &a0, &r0);
    ahead_run(b, p, V, dev, got, 0, lg_dev, prompt_accept);
    cuda_ahead_counts(b, &a1, &r1);
    ahead_run(b, p, V, dev, want, 1, lg_ref, prompt_accept);
    *adopted = a1 - a0;
    *redone = r1 - r0;
    int d = 0;
    for (int g = 0; g < AHEAD_GEN; g++) d += got[g] != want[g];
    return d;
}

static void ahead_test(int quick) {
    Model m;
    Err err = {{0}};
    if (load_demo(&m)) return;
    InferOptions o = {.backend = BACKEND_CUDA, .ctx = 256};
    void *b = backend_cuda_ops.create(&m, &o, &err);
    CHECK_MSG(b != NULL, "create: %s", err.msg);
    if (!b) {
        model_free(&m);
        return;
    }
    const int V = m.cfg.vocab_size;
    float *lg_dev = malloc(sizeof(float) * (size_t)V), *lg_ref = malloc(sizeof(float) * (size_t)V);
    REQUIRE(lg_dev && lg_ref);
    const struct { float t; int k; float p, mp, pen; int last_n; } S[] = {
        {0.7f, 40, 0.95f, 0.05f, 1.1f, 64}, /* the defaults */
        {0.0f, 0, 1.0f, 0.0f, 1.0f, 64},    /* plain greedy */
        {0.0f, 0, 1.0f, 0.0f, 1.3f, 5},     /* greedy with a short penalty window */
        {1.0f, 0, 0.9f, 0.0f, 1.1f, 64},    /* top-p: the sort */
        {0.8f, 40, 1.0f, 0.0f, 1.1f, 2000}, /* a window longer than the device keeps: plain decode */
    };
    int none[AHEAD_GEN] = {0}, some[AHEAD_GEN] = {0}, late[AHEAD_GEN] = {1, 1};
    some[9] = 1, some[17] = 2, some[25] = 3, some[30] = 1, some[31] = 2;
    {
        /* greedy with a penalty whose window is still empty when decoding ahead starts: later
         * draws must apply the penalty (not the decode graph's plain argmax) */
        SamplerParams p = sampler_params_default();
        p.temperature = 0.0f, p.repeat_penalty = 1.5f, p.repeat_last_n = 8, p.seed = 3;
        long adopted, redone;
        const int d = ahead_compare(b, &p, V, late, NULL, NULL, -1, &adopted, &redone);
        printf("ahead, greedy + penalty from an empty window: %d of %d tokens differ\n", d, AHEAD_GEN);
        CHECK_MSG(d == 0, "ahead, greedy + penalty from an empty window: %d tokens differ from the host sampler", d);
    }
    for (int head = 0; head < 3 && !quick; head++) {
        /* the other lm_heads (the whole f16 head, the int8 head): the defaults decoded ahead; and
         * InferOptions.decode_plain: nothing adopted, the same tokens */
        InferOptions o2 = {.backend = BACKEND_CUDA, .ctx = 256, .lm_head_full = head == 0, .lm_head_int8 = head == 1,
                           .decode_plain = head == 2};
        void *b2 = backend_cuda_ops.create(&m, &o2, &err);
        CHECK_MSG(b2 != NULL, "create: %s", err.msg);
        if (!b2) continue;
        SamplerParams p = sampler_params_default();
        p.seed = 11;
        long adopted, redone;
        const int d = ahead_compare(b2, &p, V, none, NULL, NULL, 1, &adopted, &redone);
        const char *what = head == 0 ? "full f16 lm_head" : head == 1 ? "int8 lm_head" : "decode_plain";
        printf("ahead, %s, defaults: %ld adopted, %d of %d tokens differ\n", what, adopted, d, AHEAD_GEN);
        const int adopted_ok = head == 2 ? adopted == 0 : adopted >= AHEAD_GEN - 3;
        CHECK_MSG(d == 0 && adopted_ok && redone == 0, "ahead, %s: %d differ, %ld adopted, %ld redone", what, d, adopted,
                  redone);
        backend_cuda_ops.destroy(b2);
    }
    for (size_t si = 0; si < (quick ? 2 : sizeof S / sizeof S[0]); si++) {
        SamplerParams p = sampler_params_default();
        p.temperature = S[si].t, p.top_k = S[si].k, p.top_p = S[si].p, p.min_p = S[si].mp, p.repeat_penalty = S[si].pen;
        p.repeat_last_n = S[si].last_n;
        p.seed = 5 + si;
        for (int pass = 0; pass < 2; pass++) {
            const int *dev = pass ? some : none;
            long adopted, redone;
            const int d = ahead_compare(b, &p, V, dev, lg_dev, lg_ref, 1, &adopted, &redone);
            printf("ahead, setting %zu, %s: %ld steps adopted, %ld done again, %d of %d tokens differ\n", si,
                   pass ? "with deviations" : "engine pattern", adopted, redone, d, AHEAD_GEN);
            CHECK_MSG(d == 0, "ahead, setting %zu pass %d: %d tokens differ from the host sampler", si, pass, d);
            if (S[si].last_n <= KCUDA_DRAW_WINDOW_MAX && !pass) {
                CHECK_MSG(adopted >= AHEAD_GEN - 3 && redone == 0, "ahead, setting %zu: %ld adopted, %ld redone", si,
                          adopted, redone);
            } else if (S[si].last_n <= KCUDA_DRAW_WINDOW_MAX) {
                CHECK_MSG(redone >= 2 && adopted >= AHEAD_GEN / 2, "ahead, setting %zu with deviations: %ld adopted, %ld redone",
                          si, adopted, redone);
                CHECK_MSG(memcmp(lg_dev, lg_ref, sizeof(float) * (size_t)V) == 0,
                          "ahead, setting %zu: logits() after a draw differ from the plain step's", si);
            } else {
                CHECK_MSG(adopted == 0, "ahead, setting %zu: a window past the device's was decoded ahead", si);
            }
        }
    }
    free(lg_dev), free(lg_ref);
    backend_cuda_ops.destroy(b);
    model_free(&m);
}

/* argv[1]: "quick", "sanitize" or "time" (the file's header). */
int main(int argc, char **argv) {
    ref_self_check();
    if (kcuda_device_count() <= 0) {
        if (check_failures_) return check_report("test_sample_cuda");
        SKIP("no CUDA device (the CPU check of the reference draw passed)");
    }
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "time") == 0) {
        time_test();
        return 0;
    }
    advance_test(strcmp(mode, "advance") == 0);
    if (strcmp(mode, "advance") == 0) return check_report("test_sample_cuda advance");
    ahead_test(strcmp(mode, "sanitize") == 0 || strcmp(mode, "ahead") == 0); /* sanitizers: two settings */
    if (strcmp(mode, "ahead") == 0) return check_report("test_sample_cuda ahead");
    if (strcmp(mode, "sanitize") == 0) {
        sanitize_test();
        return check_report("test_sample_cuda");
    }
    const int quick = strcmp(mode, "quick") == 0;
    const double t0 = now_s();
    kernel_test(1000, quick);
    if (quick) kernel_test(20000, 1); /* 20 blocks: kcuda_sample_topk's merge */
    if (!quick) {
        const double t1 = now_s();
        kernel_test(128256, 0);
        const double t2 = now_s();
        stat_test();
        const double t3 = now_s();
        backend_test();
        printf("wall time: kernel part %.1f s (vocab 1000) + %.1f s (128256), stat_test %.1f s, backend %.1f s\n", t1 - t0,
               t2 - t1, t3 - t2, now_s() - t3);
    }
    return check_report("test_sample_cuda");
}
