/* Token sampler over host logits.
 *
 * Order of the steps (the same as llama.cpp's default chain, so settings mean the same thing):
 *   repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw.
 * Top-p and min-p therefore look at the distribution at temperature 1; the temperature only
 * reshapes what survives the filters. Temperature <= 0 is greedy (argmax after the penalty).
 *
 * Cost per token is O(vocab) and nothing is allocated per token (buffers are sized once):
 *   - top-k keeps the k best in one pass through a k-entry heap (most logits cost one compare);
 *   - min-p is a threshold filter;
 *   - top-p needs its nucleus in rank order: a quickselect (expected linear) plus a heapsort of
 *     a prefix that grows geometrically until the mass is reached, so a peaked distribution
 *     sorts a few dozen entries; only a flat nucleus without top-k or min-p sorts many;
 *   - the final weights are computed once, and weights below 1e-35 of the best are not computed.
 * bench_sampler (tests/) measures this against a full sort of the vocabulary.
 *
 * Determinism: candidates are ordered by (logit desc, id asc), a strict total order, and the RNG
 * is xoshiro256** seeded through splitmix64, so a seed and the same logits give the same token
 * on every run. */
#include "infer/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SAMPLER_MAX_WINDOW = 1 << 16, TOP_P_FIRST_PREFIX = 64, TOP_P_MAX_SORTED = 1024 };

typedef struct {
    float logit;
    int32_t id;
} Cand;

struct Sampler {
    SamplerParams p;
    int n_vocab;
    uint64_t rng[4];
    /* repetition-penalty window: ring of the last win_cap accepted tokens */
    int32_t *window;
    int win_cap, win_n, win_head;
    /* stamp[id] == stamp_round marks a token already penalised in this call */
    uint32_t *stamp;
    uint32_t stamp_round;
    Cand *cand;     /* n_vocab entries */
    float *weights; /* n_vocab entries: sampling weights of the surviving candidates */
};

SamplerParams sampler_params_default(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    SamplerParams p = {
        .temperature = 0.7f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.1f,
        .repeat_last_n = 64,
        .seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec,
        .max_tokens = 1024,
        .set = SAMPLER_SET_ALL,
    };
    return p;
}

void sampler_params_merge(SamplerParams *dst, const SamplerParams *src) {
    const unsigned m = src->set;
    if (m & SAMPLER_SET_TEMPERATURE) dst->temperature = src->temperature;
    if (m & SAMPLER_SET_TOP_K) dst->top_k = src->top_k;
    if (m & SAMPLER_SET_TOP_P) dst->top_p = src->top_p;
    if (m & SAMPLER_SET_MIN_P) dst->min_p = src->min_p;
    if (m & SAMPLER_SET_REPEAT_PENALTY) dst->repeat_penalty = src->repeat_penalty;
    if (m & SAMPLER_SET_SEED) dst->seed = src->seed;
    if (m & SAMPLER_SET_MAX_TOKENS) dst->max_tokens = src->max_tokens;
    dst->set |= m & SAMPLER_SET_ALL;
}

/* ---- RNG: splitmix64 to expand the seed, xoshiro256** to draw ------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ---- ordering helpers ------------------------------------------------------------------------- */

/* a ranks before b: higher logit first, lower id breaks ties (a strict total order). */
static inline int cand_before(const Cand *a, const Cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static inline void cand_swap(Cand *a, Cand *b) {
    Cand t = *a;
    *a = *b;
    *b = t;
}

/* Heapsort c[0..n) into rank order. The heap keeps the worst-ranked element on top. */
static void sift_down(Cand *c, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, worst = i;
        if (l < n && cand_before(&c[worst], &c[l])) worst = l;
        if (l + 1 < n && cand_before(&c[worst], &c[l + 1])) worst = l + 1;
        if (worst == i) return;
        cand_swap(&c[i], &c[worst]);
        i = worst;
    }
}

static void cand_sort(Cand *c, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(c, n, i);
    for (int end = n - 1; end > 0; end--) {
        cand_swap(&c[0], &c[end]);
        sift_down(c, end, 0);
    }
}

/* Rearranges c[0..n) so that its k best elements come first (in no particular order).
 * Quickselect with a median-of-three pivot; after too many rounds it falls back to a heap-based
 * selection, so the worst case stays O(n log n). */
static void cand_select(Cand *c, int n, int k) {
    if (k <= 0 || k >= n) return;
    int lo = 0, hi = n - 1, rounds = 0;
    while (hi > lo) {
        if (++rounds > 64) {
            /* fallback: sort the remaining range (rare: needs pathological pivots) */
            cand_sort(c + lo, hi - lo + 1);
            return;
        }
        int mid = lo + (hi - lo) / 2;
        if (cand_before(&c[mid], &c[lo])) cand_swap(&c[mid], &c[lo]);
        if (cand_before(&c[hi], &c[lo])) cand_swap(&c[hi], &c[lo]);
        if (cand_before(&c[hi], &c[mid])) cand_swap(&c[hi], &c[mid]);
        /* now c[lo] ranks best, c[mid] is the median, c[hi] ranks worst */
        Cand pivot = c[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &pivot)) i++;
            while (cand_before(&pivot, &c[j])) j--;
            if (i <= j) {
                cand_swap(&c[i], &c[j]);
                i++;
                j--;
            }
        }
        /* c[lo..j] rank before-or-equal pivot, c[i..hi] after-or-equal */
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else return;
    }
}

/* Makes c[0..want) the `want` best of c[0..n) in rank order, given c[0..*sorted) already is. */
static void cand_sorted_prefix(Cand *c, int n, int *sorted, int want) {
    if (want > n) want = n;
    if (want <= *sorted) return;
    int s = *sorted;
    cand_select(c + s, n - s, want - s);
    cand_sort(c + s, want - s);
    *sorted = want;
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

static void window_clear(Sampler *s) {
    s->win_n = 0;
    s->win_head = 0;
}

static void sampler_set_params(Sampler *s, const SamplerParams *p) {
    s->p = *p;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    int want = p->repeat_last_n;
    if (p->repeat_penalty == 1.0f || want < 0) want = 0;
    if (want > SAMPLER_MAX_WINDOW) want = SAMPLER_MAX_WINDOW;
    if (want > s->win_cap) {
        int32_t *w = realloc(s->window, (size_t)want * sizeof *w);
        if (w) {
            s->window = w;
            s->win_cap = want;
        }
        /* on failure the penalty window stays at its old size */
    }
    window_clear(s);
}

static int window_len(const Sampler *s) {
    int want = s->p.repeat_last_n;
    if (s->p.repeat_penalty == 1.0f || want < 0) return 0;
    return want < s->win_cap ? want : s->win_cap;
}

Sampler *sampler_create(const SamplerParams *p, int n_vocab) {
    if (!p || n_vocab <= 0) return NULL;
    Sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->stamp = calloc((size_t)n_vocab, sizeof *s->stamp);
    s->weights = malloc((size_t)n_vocab * sizeof *s->weights);
    if (!s->cand || !s->stamp || !s->weights) {
        sampler_free(s);
        return NULL;
    }
    sampler_set_params(s, p);
    return s;
}

void sampler_free(Sampler *s) {
    if (!s) return;
    free(s->window);
    free(s->stamp);
    free(s->cand);
    free(s->weights);
    free(s);
}

void sampler_reset(Sampler *s, const SamplerParams *p) {
    if (s && p) sampler_set_params(s, p);
}

const SamplerParams *sampler_params(const Sampler *s) { return s ? &s->p : NULL; }

void sampler_accept(Sampler *s, int32_t tok) {
    int cap = window_len(s);
    if (!s || cap <= 0) return;
    if (s->win_n < cap) {
        s->window[(s->win_head + s->win_n) % cap] = tok;
        s->win_n++;
    } else {
        s->window[s->win_head] = tok;
        s->win_head = (s->win_head + 1) % cap;
    }
}

static int cmp_i32(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

int sampler_penalty_ids(Sampler *s, int32_t *ids, int cap) {
    const int wl = s ? window_len(s) : 0;
    if (!s || s->p.repeat_penalty == 1.0f || s->p.repeat_penalty <= 0.0f || s->win_n == 0 || wl <= 0) return 0;
    if (++s->stamp_round == 0) { /* as in apply_repeat_penalty */
        memset(s->stamp, 0, (size_t)s->n_vocab * sizeof *s->stamp);
        s->stamp_round = 1;
    }
    int n = 0;
    for (int i = 0; i < s->win_n; i++) {
        const int32_t t = s->window[(s->win_head + i) % wl];
        if (t < 0 || t >= s->n_vocab || s->stamp[t] == s->stamp_round) continue;
        s->stamp[t] = s->stamp_round;
        if (n == cap) return -1;
        ids[n++] = t;
    }
    qsort(ids, (size_t)n, sizeof *ids, cmp_i32);
    return n;
}

double sampler_peek_uniform(const Sampler *s) {
    uint64_t st[4];
    memcpy(st, s->rng, sizeof st);
    return rng_uniform(st);
}

void sampler_skip_uniform(Sampler *s) { (void)rng_uniform(s->rng); }

int sampler_draw_state(const Sampler *s, uint64_t rng[4], int32_t *window, int max, int *cap, int *n, int *head) {
    const int wl = window_len(s);
    if (wl > max) return -1;
    memcpy(rng, s->rng, 4 * sizeof *rng);
    *cap = wl > 0 ? wl : 0;
    *n = wl > 0 ? s->win_n : 0;
    *head = wl > 0 ? s->win_head : 0;
    if (wl > 0) memcpy(window, s->window, (size_t)wl * sizeof *window);
    return 0;
}

/* ---- sampling --------------------------------------------------------------------------------- */

/* llama.cpp semantics: each distinct token of the window once; positive logits are divided by
 * the penalty, negative ones multiplied, so the token always becomes less likely. */
static void apply_repeat_penalty(Sampler *s, float *logits, int n_vocab) {
    float pen = s->p.repeat_penalty;
    int cap = window_len(s);
    if (pen == 1.0f || pen <= 0.0f || s->win_n == 0 || cap <= 0) return;
    if (++s->stamp_round == 0) { /* wrapped: old stamps could collide */
        memset(s->stamp, 0, (size_t)s->n_vocab * sizeof *s->stamp);
        s->stamp_round = 1;
    }
    for (int i = 0; i < s->win_n; i++) {
        int32_t t = s->window[(s->win_head + i) % cap];
        if (t < 0 || t >= n_vocab || s->stamp[t] == s->stamp_round) continue;
        s->stamp[t] = s->stamp_round;
        logits[t] = logits[t] > 0.0f ? logits[t] / pen : logits[t] * pen;
    }
}

static int32_t argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* Top-p over a wide nucleus. c[0..lo) holds the best candidates, of mass acc (weights
 * exp(logit - max_logit)); c[lo..hi) the rest, all ranked after them. Rearranges c[lo..hi) and
 * returns keep such that c[0..keep) is the smallest rank-ordered prefix whose mass reaches
 * target (hi if none does). A quickselect on mass: each round partitions around a pivot and
 * sums the better side only, so the expected cost is linear and nothing is sorted but the
 * last few candidates. */
static int select_mass(Cand *c, int lo, int hi, float max_logit, double acc, double target) {
    while (hi - lo > 16) {
        int mid = lo + (hi - lo) / 2, last = hi - 1;
        if (cand_before(&c[mid], &c[lo])) cand_swap(&c[mid], &c[lo]);
        if (cand_before(&c[last], &c[lo])) cand_swap(&c[last], &c[lo]);
        if (cand_before(&c[last], &c[mid])) cand_swap(&c[last], &c[mid]);
        cand_swap(&c[mid], &c[last]); /* the median goes to the end */
        Cand pivot = c[last];
        int store = lo;
        double better = 0.0;
        for (int k = lo; k < last; k++) {
            if (cand_before(&c[k], &pivot)) {
                better += exp((double)c[k].logit - max_logit);
                cand_swap(&c[k], &c[store++]);
            }
        }
        cand_swap(&c[store], &c[last]);
        /* c[lo..store) rank before the pivot, now at c[store], and c[store+1..hi) after it */
        double with_pivot = better + exp((double)pivot.logit - max_logit);
        if (acc + better >= target) {
            hi = store;
        } else if (acc + with_pivot >= target) {
            return store + 1;
        } else {
            acc += with_pivot;
            lo = store + 1;
        }
    }
    cand_sort(c + lo, hi - lo);
    for (int i = lo; i < hi; i++) {
        acc += exp((double)c[i].logit - max_logit);
        if (acc >= target) return i + 1;
    }
    return hi;
}

/* The k best valid logits into c[0..k) in rank order, in one pass: a heap of the k best so far
 * whose root is the worst of them, so most logits cost one comparison. Returns the count. */
static int top_k_heap(Cand *c, const float *logits, int n_vocab, int k) {
    int n = 0;
    for (int i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (v != v) continue; /* NaN */
        Cand x = {v, i};
        if (n < k) {
            /* sift up: parents rank after (are worse than) children */
            int j = n++;
            while (j > 0 && cand_before(&c[(j - 1) / 2], &x)) {
                c[j] = c[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            c[j] = x;
        } else if (cand_before(&x, &c[0])) {
            c[0] = x;
            sift_down(c, n, 0);
        }
    }
    /* the heap has its worst on top: popping it to the end leaves rank order */
    for (int end = n - 1; end > 0; end--) {
        cand_swap(&c[0], &c[end]);
        sift_down(c, end, 0);
    }
    return n;
}

/* Below this (logit - max) / temperature a token's weight is under 1e-35: it cannot change a
 * double sum that already holds the best token's 1.0, so its exp() is skipped. */
#define NEGLIGIBLE_LOG_WEIGHT (-80.0)

int32_t sampler_sample(Sampler *s, float *logits, int n_vocab) {
    if (!s || !logits || n_vocab <= 0 || n_vocab > s->n_vocab) return -1;
    apply_repeat_penalty(s, logits, n_vocab);
    const SamplerParams *p = &s->p;
    if (!(p->temperature > 0.0f)) return argmax(logits, n_vocab);

    Cand *c = s->cand;
    int n = 0, sorted = 0; /* c[0..sorted) is in rank order */
    if (p->top_k > 0 && p->top_k < n_vocab) {
        n = sorted = top_k_heap(c, logits, n_vocab, p->top_k);
    } else {
        for (int i = 0; i < n_vocab; i++)
            if (logits[i] == logits[i]) c[n++] = (Cand){logits[i], i};
    }
    if (n == 0) return argmax(logits, n_vocab);
    float max_logit = c[0].logit;
    if (sorted == 0)
        for (int i = 1; i < n; i++)
            if (c[i].logit > max_logit) max_logit = c[i].logit;
    if (max_logit == -INFINITY) return c[0].id;

    /* Top-p is measured on the distribution after top-k (temperature 1); min-p's test,
     * p_i >= min_p * p_max, does not change with renormalisation. Both keep a rank-ordered
     * prefix, so applying them in order equals keeping the shorter of the two prefixes: the
     * cheap min-p filter runs first and the top-p walk only sorts its survivors. */
    double z = 0.0;
    if (p->top_p < 1.0f && n > 1)
        for (int i = 0; i < n; i++) {
            double d = (double)c[i].logit - max_logit;
            if (d > NEGLIGIBLE_LOG_WEIGHT) z += exp(d);
        }
    if (p->min_p > 0.0f && n > 1) {
        float thresh = max_logit + logf(p->min_p);
        if (sorted >= n) {
            int keep = 1;
            while (keep < n && c[keep].logit >= thresh) keep++;
            n = sorted = keep;
        } else {
            int w = 0;
            for (int i = 0; i < n; i++)
                if (c[i].logit >= thresh) c[w++] = c[i];
            n = w; /* the best token always passes */
        }
    }
    if (p->top_p < 1.0f && n > 1) {
        double target = (p->top_p > 0.0f ? p->top_p : 0.0f) * z;
        double cum = 0.0;
        int keep = n, i = 0;
        int want = TOP_P_FIRST_PREFIX;
        for (;;) {
            cand_sorted_prefix(c, n, &sorted, want);
            for (; i < sorted; i++) {
                cum += exp((double)c[i].logit - max_logit);
                if (cum >= target) {
                    keep = i + 1;
                    break;
                }
            }
            if (keep < n || sorted >= n) break;
            if (want >= TOP_P_MAX_SORTED) {
                /* a wide nucleus: find its edge among the rest without sorting it */
                keep = select_mass(c, sorted, n, max_logit, cum, target);
                break;
            }
            want = want > n / 4 ? n : want * 4;
        }
        n = keep;
    }

    /* temperature, then draw: weights computed once into a scratch array */
    double inv_t = 1.0 / (double)p->temperature;
    float *w = s->weights;
    z = 0.0;
    for (int i = 0; i < n; i++) {
        double d = ((double)c[i].logit - max_logit) * inv_t;
        w[i] = d > NEGLIGIBLE_LOG_WEIGHT ? (float)exp(d) : 0.0f;
        z += w[i];
    }
    double u = rng_uniform(s->rng) * z, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += w[i];
        if (u < cum) return c[i].id;
    }
    /* rounding left u at the very top: the last token with any weight */
    for (int i = n - 1; i > 0; i--)
        if (w[i] > 0.0f) return c[i].id;
    return c[0].id;
}
