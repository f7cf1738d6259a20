/* The screened exact lm_head (kernels_cpu.h explains the bound). Two jobs on the pool per token:
 *   1. the int8 GEMV over every row (the bulk of the bytes: 330 MB on the 2B model), each row's
 *      interval [lo, hi] right after its chunk is computed (still in cache), hi kept, lo fed to
 *      a per-thread k-entry min-heap; then the k-th largest lo of the threads' heaps is T;
 *   2. the rows with hi >= T: dense_dot_row (a few MB of f16 rows), -inf for the others.
 * Neither job leaves a serial pass over the vocabulary to the caller: between them only the
 * heaps (threads x k values) are merged. */
#include "kernels/cpu/cpu_fp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kernels_cpu.h"

struct LmScreen {
    int n, n_threads, max_k;
    float *hi;    /* [n] upper ends of the intervals (the int8 logits first) */
    float *heap;  /* [n_threads][max_k] min-heaps of the largest lo */
    int *heap_n;  /* [n_threads] entries in use */
    int *bad;     /* [n_threads] a non-finite interval was seen */
};

LmScreen *lm_screen_create(int n_rows, int n_threads, int max_k) {
    if (n_rows <= 0 || n_threads <= 0 || max_k <= 0) return NULL;
    LmScreen *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = n_rows, s->n_threads = n_threads, s->max_k = max_k;
    s->hi = malloc((size_t)n_rows * sizeof *s->hi);
    s->heap = malloc((size_t)n_threads * (size_t)max_k * sizeof *s->heap);
    s->heap_n = calloc((size_t)n_threads, sizeof *s->heap_n);
    s->bad = calloc((size_t)n_threads, sizeof *s->bad);
    if (!s->hi || !s->heap || !s->heap_n || !s->bad) {
        lm_screen_free(s);
        return NULL;
    }
    return s;
}

void lm_screen_free(LmScreen *s) {
    if (!s) return;
    free(s->hi);
    free(s->heap);
    free(s->heap_n);
    free(s->bad);
    free(s);
}

/* as the sampler's repetition penalty (infer/sampler.c): monotone in l for p > 0 */
static inline float penalise(float l, float p) { return l > 0.0f ? l / p : l * p; }

/* h[0..n) a min-heap of at most k values: keeps the k largest offered */
static inline void heap_offer(float *h, int *n, int k, float v) {
    if (*n < k) {
        int j = (*n)++;
        while (j > 0 && h[(j - 1) / 2] > v) {
            h[j] = h[(j - 1) / 2];
            j = (j - 1) / 2;
        }
        h[j] = v;
        return;
    }
    if (!(v > h[0])) return;
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, m = i;
        float mv = v;
        if (l < k && h[l] < mv) m = l, mv = h[l];
        if (l + 1 < k && h[l + 1] < mv) m = l + 1;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = v;
}

typedef struct {
    LmScreen *s;
    const int8_t *q;
    const float *scale, *B, *x;
    int n, k;
    float xnorm;
    const LmScreenQuery *qy;
    int next;
} PassJob;

enum { PASS_CHUNK = 512, CAND_CHUNK = 2048 };

static void pass_task(void *ctx, int ith, int nth) {
    PassJob *j = ctx;
    LmScreen *s = j->s;
    (void)nth;
    float *h = s->heap + (size_t)ith * s->max_k;
    int hn = s->heap_n[ith], bad = 0;
    const int kk = j->qy->k;
    const float p = j->qy->penalty, xn = j->xnorm;
    const uint8_t *mask = j->qy->mask;
    for (int c; (c = cpu_chunk_claim(&j->next)) * PASS_CHUNK < j->n;) {
        const int r0 = c * PASS_CHUNK, r1 = r0 + PASS_CHUNK < j->n ? r0 + PASS_CHUNK : j->n;
        lm_head_i8_gemv_rows(j->q, j->scale, j->k, j->x, r0, r1, s->hi);
        for (int r = r0; r < r1; r++) {
            const float a = s->hi[r], b = lm_screen_radius(a, j->B[r], xn);
            float lo = a - b, hi = a + b;
            if (mask && mask[r]) lo = penalise(lo, p), hi = penalise(hi, p);
            /* NaN and inf fail both tests: the whole token falls back */
            if (!(lo >= -3.0e38f && hi <= 3.0e38f)) bad = 1;
            s->hi[r] = hi;
            if (hn < kk || lo > h[0]) heap_offer(h, &hn, kk, lo);
        }
    }
    s->heap_n[ith] = hn;
    if (bad) s->bad[ith] = 1;
}

typedef struct {
    LmScreen *s;
    CpuDenseType type;
    const void *w;
    const float *x;
    int n, k, cap;
    float T;
    float *logits;
    int total, over, next;
} CandJob;

static void cand_task(void *ctx, int ith, int nth) {
    CandJob *j = ctx;
    const float *hi = j->s->hi;
    (void)ith, (void)nth;
    for (int c; (c = cpu_chunk_claim(&j->next)) * CAND_CHUNK < j->n;) {
        const int r0 = c * CAND_CHUNK, r1 = r0 + CAND_CHUNK < j->n ? r0 + CAND_CHUNK : j->n;
        int cnt = 0;
        for (int r = r0; r < r1; r++) cnt += hi[r] >= j->T;
        /* counted before any row is computed, so an over-full screen wastes at most cap rows */
        if (__atomic_add_fetch(&j->total, cnt, __ATOMIC_RELAXED) > j->cap)
            __atomic_store_n(&j->over, 1, __ATOMIC_RELAXED);
        if (__atomic_load_n(&j->over, __ATOMIC_RELAXED)) continue;
        for (int r = r0; r < r1; r++)
            j->logits[r] = hi[r] >= j->T ? dense_dot_row(j->type, j->w, j->k, j->x, r) : -INFINITY;
    }
}

/* the k-th largest of v[0..n) (k <= n; v is reordered) */
static float kth_largest(float *v, int n, int k) {
    int lo = 0, hi = n - 1;
    const int want = k - 1;
    while (lo < hi) {
        const float pivot = v[lo + (hi - lo) / 2];
        int i = lo, e = hi;
        while (i <= e) {
            while (v[i] > pivot) i++;
            while (v[e] < pivot) e--;
            if (i <= e) {
                const float t = v[i];
                v[i++] = v[e], v[e--] = t;
            }
        }
        if (want <= e) hi = e;
        else if (want >= i) lo = i;
        else return pivot;
    }
    return v[want];
}

int lm_screen_mt(CpuPool *p, LmScreen *s, CpuDenseType type, const void *w, const int8_t *q,
                 const float *scale, const float *B, int n, int k, const float *x,
                 const LmScreenQuery *qy, float *logits) {
    const int nth = cpu_pool_threads(p);
    if (n != s->n || qy->k < 1 || qy->k > s->max_k || qy->k >= n || nth > s->n_threads)
        return KERR_SHAPE;
    const float xnorm = lm_screen_xnorm(x, k);
    if (!(xnorm <= 3.0e38f)) return LM_SCREEN_NONFINITE;
    memset(s->heap_n, 0, (size_t)s->n_threads * sizeof *s->heap_n);
    memset(s->bad, 0, (size_t)s->n_threads * sizeof *s->bad);
    PassJob pj = {s, q, scale, B, x, n, k, xnorm, qy, 0};
    cpu_pool_run(p, pass_task, &pj);
    /* the threads' heaps hold together every lo among the k largest: gather and select */
    int m = 0;
    for (int t = 0; t < s->n_threads; t++) {
        if (s->bad[t]) return LM_SCREEN_NONFINITE;
        if (t > 0) memmove(s->heap + m, s->heap + (size_t)t * s->max_k, (size_t)s->heap_n[t] * sizeof *s->heap);
        m += s->heap_n[t];
    }
    if (m < qy->k) return KERR_SHAPE; /* cannot happen: n > k rows were offered */
    const float T = kth_largest(s->heap, m, qy->k);
    CandJob cj = {s, type, w, x, n, k, qy->cap, T, logits, 0, 0, 0};
    cpu_pool_run(p, cand_task, &cj);
    if (cj.over) return LM_SCREEN_OVER_CAP;
    return cj.total;
}
