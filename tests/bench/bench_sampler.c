/* Sampler speed on a 128256-token vocabulary (not a test): time per sampled token for the
 * default settings and for top-p over the whole vocabulary, against a baseline that sorts the
 * whole vocabulary with qsort (what a naive top-k/top-p does), measured in the same run.
 * Logits: a peaked distribution (a few hundred strong tokens over noise) like a real model's. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/sampler.h"
#include "test_util.h"

enum { NV = 128256, REPS = 200 };

typedef struct {
    float l;
    int id;
} Pair;

static int cmp_pair(const void *a, const void *b) {
    const Pair *x = a, *y = b;
    return (x->l < y->l) - (x->l > y->l);
}

int main(void) {
    float *l = malloc(NV * sizeof *l), *buf = malloc(NV * sizeof *buf);
    Pair *pairs = malloc(NV * sizeof *pairs);
    uint64_t x = 1;
    for (int i = 0; i < NV; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(x >> 11) * 0x1.0p-53;
        l[i] = (float)(u * 4.0 + (i % 397 == 0 ? 8.0 : 0.0));
    }
    /* baseline: copy, full sort, softmax over the sorted list, walk to top-p, draw */
    double t0 = now_s();
    volatile int sink = 0;
    for (int r = 0; r < REPS; r++) {
        for (int i = 0; i < NV; i++) pairs[i] = (Pair){l[i], i};
        qsort(pairs, NV, sizeof *pairs, cmp_pair);
        double z = 0, cum = 0;
        for (int i = 0; i < NV; i++) z += exp((double)pairs[i].l - pairs[0].l);
        int k = 0;
        while (k < NV && cum < 0.95 * z) cum += exp((double)pairs[k++].l - pairs[0].l);
        sink += pairs[k / 2].id;
    }
    double base = (now_s() - t0) / REPS;

    struct {
        const char *name;
        int top_k;
        float top_p, min_p;
    } cases[] = {{"defaults (top-k 40, top-p 0.95, min-p 0.05)", 40, 0.95f, 0.05f},
                 {"top-p 0.95 only (whole vocabulary)", 0, 0.95f, 0.0f},
                 {"min-p 0.05 only", 0, 1.0f, 0.05f},
                 {"temperature only (no filters)", 0, 1.0f, 0.0f}};
    printf("sampler: %d-token vocabulary, %d draws each, repetition penalty 1.1 over 64\n", NV, REPS);
    printf("baseline (qsort of the whole vocabulary + top-p walk): %.3f ms/token\n", base * 1e3);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        SamplerParams p = sampler_params_default();
        p.seed = 3;
        p.top_k = cases[c].top_k;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        Sampler *s = sampler_create(&p, NV);
        t0 = now_s();
        for (int r = 0; r < REPS; r++) {
            memcpy(buf, l, NV * sizeof *l);
            int32_t tok = sampler_sample(s, buf, NV);
            sampler_accept(s, tok);
            sink += tok;
        }
        double t = (now_s() - t0) / REPS;
        printf("%-46s %.3f ms/token  (%.1fx faster than the baseline)\n", cases[c].name, t * 1e3,
               base / t);
        sampler_free(s);
    }
    free(l);
    free(buf);
    free(pairs);
    return sink == -1;
}
