/* Sampler: hand-made logits with known answers, edge cases of each filter, seed reproducibility,
 * and sampled frequencies against the exact distribution. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/sampler.h"

static SamplerParams plain(float temp, uint64_t seed) {
    SamplerParams p = sampler_params_default();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = seed;
    return p;
}

/* Draws n samples from fresh copies of logits; counts into hist[n_vocab]. */
static void histogram(Sampler *s, const float *logits, int nv, int n, int *hist) {
    float *buf = malloc((size_t)nv * sizeof *buf);
    memset(hist, 0, (size_t)nv * sizeof *hist);
    for (int i = 0; i < n; i++) {
        memcpy(buf, logits, (size_t)nv * sizeof *buf);
        int32_t t = sampler_sample(s, buf, nv);
        if (t >= 0 && t < nv) hist[t]++;
        else hist[0] = -1000000; /* makes the caller's checks fail */
    }
    free(buf);
}

static void test_greedy(void) {
    float l[6] = {0.1f, 3.0f, -2.0f, 3.0f, 2.9f, -INFINITY};
    SamplerParams p = plain(0.0f, 1);
    Sampler *s = sampler_create(&p, 6);
    REQUIRE(s);
    CHECK_EQ_INT(sampler_sample(s, l, 6), 1); /* tie: the lower id */
    /* greedy ignores the filters and the RNG */
    p.top_k = 1;
    p.top_p = 0.01f;
    p.seed = 99;
    sampler_reset(s, &p);
    CHECK_EQ_INT(sampler_sample(s, l, 6), 1);
    /* a larger vocabulary than the sampler was made for is refused */
    float big[7] = {0};
    CHECK_EQ_INT(sampler_sample(s, big, 7), -1);
    sampler_free(s);
}

static void test_distribution(void) {
    /* probabilities 0.5, 0.3, 0.15, 0.05 */
    const double pr[4] = {0.5, 0.3, 0.15, 0.05};
    float l[4];
    for (int i = 0; i < 4; i++) l[i] = (float)log(pr[i]) + 7.0f; /* shift: softmax-invariant */
    int hist[4];
    const int N = 200000;

    SamplerParams p = plain(1.0f, 12345);
    Sampler *s = sampler_create(&p, 4);
    histogram(s, l, 4, N, hist);
    for (int i = 0; i < 4; i++) CHECK_NEAR((double)hist[i] / N, pr[i], 0.006);

    /* temperature 0.5 squares the probabilities */
    p.temperature = 0.5f;
    sampler_reset(s, &p);
    histogram(s, l, 4, N, hist);
    double z = 0;
    for (int i = 0; i < 4; i++) z += pr[i] * pr[i];
    for (int i = 0; i < 4; i++) CHECK_NEAR((double)hist[i] / N, pr[i] * pr[i] / z, 0.006);

    /* top-k 2: renormalised 0.625 / 0.375 */
    p = plain(1.0f, 777);
    p.top_k = 2;
    sampler_reset(s, &p);
    histogram(s, l, 4, N, hist);
    CHECK_NEAR((double)hist[0] / N, 0.625, 0.006);
    CHECK_NEAR((double)hist[1] / N, 0.375, 0.006);
    CHECK_EQ_INT(hist[2] + hist[3], 0);

    /* top-p 0.8: 0.5 + 0.3 reaches it exactly -> two tokens; 0.81 needs the third */
    p = plain(1.0f, 778);
    p.top_p = 0.79f;
    sampler_reset(s, &p);
    histogram(s, l, 4, N, hist);
    CHECK_EQ_INT(hist[2] + hist[3], 0);
    CHECK_NEAR((double)hist[0] / N, 0.625, 0.006);
    p.top_p = 0.81f;
    sampler_reset(s, &p);
    histogram(s, l, 4, N, hist);
    CHECK_EQ_INT(hist[3], 0);
    CHECK_NEAR((double)hist[2] / N, 0.15 / 0.95, 0.006);

    /* top-p -> 0 keeps the best token only; top-p 1 keeps all */
    p.top_p = 0.0f;
    sampler_reset(s, &p);
    histogram(s, l, 4, 2000, hist);
    CHECK_EQ_INT(hist[0], 2000);
    p.top_p = 1e-6f;
    sampler_reset(s, &p);
    histogram(s, l, 4, 2000, hist);
    CHECK_EQ_INT(hist[0], 2000);
    p.top_p = 1.0f;
    sampler_reset(s, &p);
    histogram(s, l, 4, N, hist);
    CHECK_NEAR((double)hist[3] / N, 0.05, 0.004);

    /* min-p 0.5: keeps p >= 0.25 -> tokens 0 and 1; min-p 1: the best only; 0.1: three */
    p = plain(1.0f, 779);
    p.min_p = 0.5f;
    sampler_reset(s, &p);
    histogram(s, l, 4, N, hist);
    CHECK_EQ_INT(hist[2] + hist[3], 0);
    CHECK_NEAR((double)hist[1] / N, 0.375, 0.006);
    p.min_p = 1.0f;
    sampler_reset(s, &p);
    histogram(s, l, 4, 2000, hist);
    CHECK_EQ_INT(hist[0], 2000);
    p.min_p = 0.2f; /* threshold 0.1: drops only the 0.05 token */
    sampler_reset(s, &p);
    histogram(s, l, 4, N, hist);
    CHECK_EQ_INT(hist[3], 0);
    CHECK_NEAR((double)hist[2] / N, 0.15 / 0.95, 0.006);
    /* min-p after top-k (the sorted path) gives the same answer */
    p.top_k = 3;
    sampler_reset(s, &p);
    histogram(s, l, 4, N, hist);
    CHECK_EQ_INT(hist[3], 0);
    CHECK_NEAR((double)hist[2] / N, 0.15 / 0.95, 0.006);

    /* top-p and min-p look at temperature-1 probabilities: a high temperature flattens what
     * survives but does not let the filtered tokens back in */
    p = plain(5.0f, 780);
    p.min_p = 0.5f;
    sampler_reset(s, &p);
    histogram(s, l, 4, N, hist);
    CHECK_EQ_INT(hist[2] + hist[3], 0);
    double a = pow(0.5, 0.2), b = pow(0.3, 0.2);
    CHECK_NEAR((double)hist[0] / N, a / (a + b), 0.006);
    sampler_free(s);
}

static void test_seed(void) {
    enum { NV = 1000, T = 200 };
    float *l = malloc(NV * sizeof *l), *buf = malloc(NV * sizeof *buf);
    uint64_t x = 42;
    for (int i = 0; i < NV; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((x >> 40) % 1000) / 200.0f;
    }
    int32_t seq[3][T];
    uint64_t seeds[3] = {5, 5, 6};
    for (int k = 0; k < 3; k++) {
        SamplerParams p = sampler_params_default();
        p.seed = seeds[k];
        p.temperature = 1.0f;
        p.top_k = 0;
        p.top_p = 0.95f;
        p.min_p = 0.0f;
        p.repeat_penalty = 1.1f;
        Sampler *s = sampler_create(&p, NV);
        for (int t = 0; t < T; t++) {
            memcpy(buf, l, NV * sizeof *l);
            seq[k][t] = sampler_sample(s, buf, NV);
            sampler_accept(s, seq[k][t]);
        }
        sampler_free(s);
    }
    CHECK(memcmp(seq[0], seq[1], sizeof seq[0]) == 0);
    CHECK(memcmp(seq[0], seq[2], sizeof seq[0]) != 0);
    /* reset with the same params restarts the same sequence */
    SamplerParams p = sampler_params_default();
    p.seed = 5;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 0.95f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.1f;
    Sampler *s = sampler_create(&p, NV);
    for (int t = 0; t < 17; t++) {
        memcpy(buf, l, NV * sizeof *l);
        sampler_accept(s, sampler_sample(s, buf, NV));
    }
    sampler_reset(s, &p);
    int same = 1;
    for (int t = 0; t < T; t++) {
        memcpy(buf, l, NV * sizeof *l);
        int32_t tok = sampler_sample(s, buf, NV);
        sampler_accept(s, tok);
        same &= tok == seq[0][t];
    }
    CHECK(same);
    sampler_free(s);
    free(l);
    free(buf);
}

static void test_penalty(void) {
    SamplerParams p = plain(0.0f, 1);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    Sampler *s = sampler_create(&p, 4);
    float l[4] = {2.0f, -1.0f, 1.9f, 0.5f};
    sampler_accept(s, 0);
    sampler_accept(s, 0); /* a repeated token is penalised once, not twice */
    CHECK_EQ_INT(sampler_sample(s, l, 4), 2);
    CHECK_NEAR(l[0], 1.0, 0);
    CHECK_NEAR(l[1], -1.0, 0);
    sampler_accept(s, 1);
    sampler_accept(s, 2); /* window of 2: token 0 has left it */
    float m[4] = {2.0f, -1.0f, 1.9f, 0.5f};
    CHECK_EQ_INT(sampler_sample(s, m, 4), 0);
    CHECK_NEAR(m[0], 2.0, 0);
    CHECK_NEAR(m[1], -2.0, 0); /* negative logits are multiplied */
    CHECK_NEAR(m[2], 0.95, 1e-6);
    /* penalty 1 leaves logits untouched */
    p.repeat_penalty = 1.0f;
    sampler_reset(s, &p);
    sampler_accept(s, 0);
    float q[4] = {2.0f, -1.0f, 1.9f, 0.5f};
    CHECK_EQ_INT(sampler_sample(s, q, 4), 0);
    CHECK_NEAR(q[0], 2.0, 0);
    /* reset clears the window */
    p.repeat_penalty = 2.0f;
    sampler_reset(s, &p);
    float r[4] = {2.0f, -1.0f, 1.9f, 0.5f};
    CHECK_EQ_INT(sampler_sample(s, r, 4), 0);
    sampler_free(s);
}

/* Large vocabulary: every drawn token must lie in the filtered set computed by a plain sort. */
static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_large_vocab(void) {
    enum { NV = 128256 };
    float *l = malloc(NV * sizeof *l), *buf = malloc(NV * sizeof *buf),
          *sorted = malloc(NV * sizeof *l);
    uint64_t x = 7;
    for (int i = 0; i < NV; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        /* a peaked distribution: a few strong logits over noise */
        double u = (double)(x >> 11) * 0x1.0p-53;
        l[i] = (float)(u * 8.0 + (i % 9973 == 0 ? 6.0 : 0.0));
    }
    memcpy(sorted, l, NV * sizeof *l);
    qsort(sorted, NV, sizeof *sorted, cmp_desc);
    double z = 0;
    for (int i = 0; i < NV; i++) z += exp((double)sorted[i] - sorted[0]);

    /* top-k 40: the 40th best logit is the lowest admissible */
    SamplerParams p = plain(1.0f, 3);
    p.top_k = 40;
    Sampler *s = sampler_create(&p, NV);
    int ok = 1;
    for (int t = 0; t < 300; t++) {
        memcpy(buf, l, NV * sizeof *l);
        int32_t tok = sampler_sample(s, buf, NV);
        ok &= tok >= 0 && tok < NV && l[tok] >= sorted[39];
    }
    CHECK(ok);

    /* top-p 0.5 over the whole vocabulary (the growing sorted prefix) */
    double cum = 0;
    int keep = 0;
    while (cum < 0.5 * z) cum += exp((double)sorted[keep++] - sorted[0]);
    p = plain(1.0f, 4);
    p.top_p = 0.5f;
    sampler_reset(s, &p);
    ok = 1;
    int seen_low = 0;
    for (int t = 0; t < 300; t++) {
        memcpy(buf, l, NV * sizeof *l);
        int32_t tok = sampler_sample(s, buf, NV);
        ok &= tok >= 0 && tok < NV && l[tok] >= sorted[keep - 1];
        seen_low |= l[tok] < sorted[keep / 2];
    }
    CHECK_MSG(ok, "top-p drew a token outside the nucleus of %d", keep);
    CHECK_MSG(keep > 1024, "nucleus %d", keep); /* exercises prefix growth and the mass select */
    CHECK(seen_low);       /* and drew from the lower half of the nucleus too */

    /* the edge of a wide nucleus is exact: 4000 near-equal tokens, the rest negligible; at a
     * very high temperature the draw is near uniform over the nucleus, so its far end shows up,
     * and nothing beyond it ever does */
    {
        for (int i = 0; i < NV; i++) buf[i] = i < 4000 ? 5.0f + (float)i * 5e-5f : -100.0f;
        memcpy(sorted, buf, NV * sizeof *buf);
        qsort(sorted, NV, sizeof *sorted, cmp_desc);
        double zz = 0, cc = 0;
        for (int i = 0; i < NV; i++) zz += exp((double)sorted[i] - sorted[0]);
        int edge = 0;
        while (cc < 0.5 * zz) cc += exp((double)sorted[edge++] - sorted[0]);
        float *lw = malloc(NV * sizeof *lw);
        memcpy(lw, buf, NV * sizeof *lw);
        p = plain(1000.0f, 9);
        p.top_p = 0.5f;
        sampler_reset(s, &p);
        int inside = 1, far_end = 0;
        for (int t = 0; t < 3000; t++) {
            memcpy(buf, lw, NV * sizeof *lw);
            int32_t tok = sampler_sample(s, buf, NV);
            inside &= tok >= 0 && tok < NV && lw[tok] >= sorted[edge - 1];
            far_end |= tok >= 0 && tok < NV && lw[tok] < sorted[edge - 1 - edge / 20];
        }
        CHECK_MSG(edge > 1900 && edge < 2100, "edge %d", edge); /* beyond the sorted prefix */
        CHECK(inside);
        CHECK(far_end);
        free(lw);
    }

    /* min-p 0.1 alone (the unsorted compaction path) */
    p = plain(1.0f, 5);
    p.min_p = 0.1f;
    sampler_reset(s, &p);
    ok = 1;
    for (int t = 0; t < 300; t++) {
        memcpy(buf, l, NV * sizeof *l);
        int32_t tok = sampler_sample(s, buf, NV);
        ok &= tok >= 0 && tok < NV && l[tok] >= sorted[0] + logf(0.1f);
    }
    CHECK(ok);

    /* ties rank by id: with every logit equal, top-k 5 draws only ids 0..4, all of them */
    for (int i = 0; i < NV; i++) l[i] = 0.5f;
    p = plain(1.0f, 8);
    p.top_k = 5;
    sampler_reset(s, &p);
    int seen[5] = {0};
    ok = 1;
    for (int t = 0; t < 500; t++) {
        memcpy(buf, l, NV * sizeof *l);
        int32_t tok = sampler_sample(s, buf, NV);
        ok &= tok >= 0 && tok < 5;
        if (tok >= 0 && tok < 5) seen[tok] = 1;
    }
    CHECK(ok);
    CHECK(seen[0] && seen[1] && seen[2] && seen[3] && seen[4]);

    /* NaN logits are never picked */
    for (int i = 0; i < NV; i++) buf[i] = (i == 5) ? 1.0f : NAN;
    p = plain(1.0f, 6);
    sampler_reset(s, &p);
    CHECK_EQ_INT(sampler_sample(s, buf, NV), 5);
    sampler_free(s);
    free(l);
    free(buf);
    free(sorted);
}

/* What a device sampler takes from the host one (sampler_penalty_ids, sampler_peek_uniform,
 * sampler_skip_uniform): the penalised ids distinct and ascending, none when the penalty is off,
 * -1 past cap; the peeked uniform is the one the next draw uses (with 1000 equal logits the draw
 * is token floor(u * 1000)), peeking consumes nothing, skipping consumes exactly one. */
static void test_device_hooks(void) {
    enum { NV = 1000 };
    SamplerParams p = plain(1.0f, 99);
    p.repeat_penalty = 1.1f;
    p.repeat_last_n = 8;
    Sampler *s = sampler_create(&p, NV);
    const int32_t toks[10] = {5, 900, 5, 17, 3, 900, 42, 17, 7, 6}; /* the last 8 stay */
    for (int i = 0; i < 10; i++) sampler_accept(s, toks[i]);
    int32_t ids[8];
    const int n = sampler_penalty_ids(s, ids, 8);
    const int32_t want[7] = {3, 5, 6, 7, 17, 42, 900}; /* window 5 17 3 900 42 17 7 6, distinct, sorted */
    CHECK_EQ_INT(n, 7);
    for (int i = 0; i < 7 && i < n; i++) CHECK_EQ_INT(ids[i], want[i]);
    CHECK_EQ_INT(sampler_penalty_ids(s, ids, 5), -1);
    /* the state copied for decoding ahead: the ring as accepted (the oldest at head), -1 past max */
    {
        uint64_t st[4];
        int32_t win[8];
        int cap = -1, wn = -1, head = -1;
        CHECK_EQ_INT(sampler_draw_state(s, st, win, 8, &cap, &wn, &head), 0);
        CHECK_EQ_INT(cap, 8);
        CHECK_EQ_INT(wn, 8);
        for (int i = 0; i < 8; i++) CHECK_EQ_INT(win[(head + i) % 8], toks[2 + i]);
        CHECK_EQ_INT(sampler_draw_state(s, st, win, 7, &cap, &wn, &head), -1);
        Sampler *twin = sampler_create(&p, NV); /* same seed: the same RNG words until a draw */
        uint64_t st2[4];
        CHECK_EQ_INT(sampler_draw_state(twin, st2, win, 8, &cap, &wn, &head), 0);
        CHECK(memcmp(st, st2, sizeof st) == 0);
        CHECK_EQ_INT(wn, 0);
        sampler_skip_uniform(twin);
        CHECK_EQ_INT(sampler_draw_state(twin, st2, win, 8, &cap, &wn, &head), 0);
        CHECK(memcmp(st, st2, sizeof st) != 0);
        sampler_free(twin);
    }
    p.repeat_penalty = 1.0f;
    Sampler *off = sampler_create(&p, NV);
    for (int i = 0; i < 10; i++) sampler_accept(off, toks[i]);
    CHECK_EQ_INT(sampler_penalty_ids(off, ids, 8), 0);
    /* peek / skip against the draws of a twin sampler */
    Sampler *a = sampler_create(&p, NV), *b = sampler_create(&p, NV);
    float *l = malloc(sizeof(float) * NV);
    for (int r = 0; r < 20; r++) {
        const double u = sampler_peek_uniform(a);
        CHECK(sampler_peek_uniform(a) == u);
        for (int i = 0; i < NV; i++) l[i] = 0.5f;
        const int t = sampler_sample(b, l, NV);
        CHECK_EQ_INT(t, (int)(u * NV));
        sampler_skip_uniform(a);
    }
    free(l);
    sampler_free(s);
    sampler_free(off);
    sampler_free(a);
    sampler_free(b);
}

/* The set-mask: defaults have every bit; a merge copies only the settings given, and marks them. */
static void test_params_merge(void) {
    SamplerParams d = sampler_params_default();
    CHECK_EQ_INT(d.set, SAMPLER_SET_ALL);
    SamplerParams given = {.temperature = 0.0f, .top_k = 5, .top_p = 0.5f, .seed = 9,
                           .set = SAMPLER_SET_TEMPERATURE | SAMPLER_SET_SEED};
    SamplerParams o = d;
    o.set &= ~SAMPLER_SET_SEED;
    sampler_params_merge(&o, &given);
    CHECK(o.temperature == 0.0f);
    CHECK_EQ_INT(o.seed, 9);
    CHECK_EQ_INT(o.top_k, d.top_k);  /* not given: kept */
    CHECK(o.top_p == d.top_p);
    CHECK(o.min_p == d.min_p && o.repeat_penalty == d.repeat_penalty);
    CHECK_EQ_INT(o.max_tokens, d.max_tokens);
    CHECK_EQ_INT(o.set, SAMPLER_SET_ALL);
    SamplerParams none = {0};
    sampler_params_merge(&none, &(SamplerParams){.max_tokens = 7, .set = SAMPLER_SET_MAX_TOKENS});
    CHECK_EQ_INT(none.set, SAMPLER_SET_MAX_TOKENS);
    CHECK_EQ_INT(none.max_tokens, 7);
    CHECK_EQ_INT(none.top_k, 0);
}

int main(void) {
    test_params_merge();
    test_greedy();
    test_distribution();
    test_seed();
    test_penalty();
    test_large_vocab();
    test_device_hooks();
    return check_report("test_sampler");
}
