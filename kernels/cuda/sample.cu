// Token sampling on the device: the same draw as the host sampler (infer/sampler.c) from the
// same logits, so that one int per token crosses to the host.
//
// The host chain is: repetition penalty -> top-k -> min-p -> top-p -> temperature -> draw, every
// filter keeping a prefix of the candidates in rank order (logit descending, id ascending), and
// the draw walks its candidates in the order it holds them: rank order once top-k or top-p has
// sorted them, else vocabulary order. Each logit, penalised when its id is in the window's
// (sorted) id list, becomes a 32-bit key whose ascending order is the rank order (NaN last);
// (key, id) as one 64-bit number is then unique and ascends in rank order.
//
// Two ways to the same draw:
//   - kcuda_sample, without sorting the vocabulary (a handful of kernels, each block owning 1024
//     consecutive ids, the last block of a kernel to finish doing the whole-vocabulary step):
//       scan:    keys, the maximum (greedy ends here) and a histogram of the keys' top 12 bits;
//                its last block plans the draw and finds the histogram bucket of the k-th key;
//       refine:  (twice, at most) the next 12 and the last 8 bits of the k-th key, until the
//                keys up to its bucket are few enough to sort in shared memory (POOL_CAP);
//       gather:  appends the candidates (keys up to that bound, or min-p's survivors) to a pool,
//                or, for a draw in vocabulary order, sums each block's weights; its last block
//                sorts the pool and picks, or finds the drawn id block by block.
//     Where the candidates do not fit (top-k above TOPK_CAP, min-p keeping more than POOL_CAP
//     tokens, a top-p nucleus past the TOPK_CAP best, more than POOL_CAP tokens tied with the
//     k-th) it declines, and the caller runs
//   - kcuda_sample_sorted: a stable radix sort of all (key, id) pairs (cub), one block walking
//     the kept prefix.
// Both use the host's formulas: the same float threshold for min-p (log(min_p) computed on the
// host), double sums of exp() for top-p and of the (float) weights, the host's uniform, the first
// candidate whose running weight exceeds it. Every comparison and every per-token weight has the
// host's bits (up to the last bit of exp(), CUDA's and glibc's both within 1 ulp); the double sums
// are added in another order (trees instead of left to right), which moves them by a few units
// in the last place (~1e-16 relative). A draw can therefore differ only when the uniform lands
// within ~1e-16 of a boundary between two tokens: about once in 1e15 draws. One exception, by
// design: a top-p nucleus wider than 1024 tokens without top-k, where the host's order past rank
// 1024 is its quickselect's; the device walks rank order there (the same distribution).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"

namespace {

enum {
    THREADS = 1024,   // every kernel's block; in kcuda_sample a block owns THREADS consecutive ids
    KEY_THREADS = 256,
    // The largest candidate count kcuda_sample selects (top-k, top-p's prefix without top-k):
    // the host's own bound for a rank-ordered nucleus (TOP_P_MAX_SORTED), far above the default
    // top-k of 40 and the few hundred tokens a peaked distribution's nucleus holds.
    TOPK_CAP = 1024,
    // Candidates the last block sorts in shared memory (16 KB of 64-bit keys): twice TOPK_CAP,
    // room for the other keys in the k-th key's histogram bucket.
    POOL_CAP = 2048,
    HIST_BINS = 4096, // radix digits of the k-th key: bits 31..20, 19..8, 7..0
    MAX_BLOCKS = THREADS,  // the last block reads one partial per thread: vocabularies up to 1M
};
constexpr uint32_t KEY_NAN = 0xffffffffu;
constexpr uint32_t KEY_ALL = KEY_NAN - 1;  // a bound that keeps every valid key

// Ascending key order = descending float order; -0 and +0 share a key (the host compares them
// equal and breaks the tie by id).
__device__ __forceinline__ uint32_t rank_key(float v) {
    if (v != v) return KEY_NAN;
    if (v == 0.0f) v = 0.0f;
    const uint32_t u = __float_as_uint(v);
    const uint32_t ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // ascending with v
    return ~ord;
}
__device__ __forceinline__ float key_value(uint32_t key) {
    const uint32_t ord = ~key;
    return __uint_as_float((ord & 0x80000000u) ? (ord & 0x7fffffffu) : ~ord);
}

// logits[i] after the repetition penalty (pen_ids: n_pen distinct ids, ascending).
__device__ __forceinline__ float penalised(const float *__restrict__ logits, int i, const KcudaSampleArgs &a,
                                           const int32_t *__restrict__ pen_ids) {
    float v = logits[i];
    const int np = a.n_pen;
    if (np > 0) {
        int lo = 0, hi = np;  // first index with pen_ids[idx] >= i
        while (lo < hi) {
            const int mid = (lo + hi) >> 1;
            if (pen_ids[mid] < i) lo = mid + 1;
            else hi = mid;
        }
        if (lo < np && pen_ids[lo] == i) v = v > 0.0f ? v / a.penalty : v * a.penalty;
    }
    return v;
}

// The host's formulas: top-p's mass of a logit (z skips masses below e^-80, the walk does not)
// and the draw's weight (rounded to float).
__device__ __forceinline__ double mass_cut(double v, double mx) {
    const double d = v - mx;
    return d > -80.0 ? exp(d) : 0.0;
}
__device__ __forceinline__ double draw_weight(double v, double mx, double inv_t) {
    const double d = (v - mx) * inv_t;
    return d > -80.0 ? (double)(float)exp(d) : 0.0;
}

using Reduce = cub::BlockReduce<double, THREADS>;
using Scan = cub::BlockScan<double, THREADS>;
using ReduceInt = cub::BlockReduce<int, THREADS>;
using ScanInt = cub::BlockScan<int, THREADS>;

// Sum over ranks [0, n) of f(rank), as a block; every thread gets the total.
template <typename F>
__device__ double block_total(int n, F f, typename Reduce::TempStorage &tmp, double *bcast) {
    double part = 0.0;
    for (int r = threadIdx.x; r < n; r += THREADS) part += f(r);
    const double t = Reduce(tmp).Sum(part);
    if (threadIdx.x == 0) *bcast = t;
    __syncthreads();
    const double out = *bcast;
    __syncthreads();
    return out;
}

// The first rank r < n whose running sum of f(0..r), plus *carry, satisfies hit(sum) (n if
// none); *carry then holds the running sum up to where the walk stopped.
template <typename F, typename H>
__device__ int block_first_prefix(int n, F f, H hit, typename Scan::TempStorage &tmp, double *carry, int *found) {
    if (threadIdx.x == 0) *found = n;
    __syncthreads();
    for (int base = 0; base < n; base += THREADS) {
        const int r = base + threadIdx.x;
        const double v = r < n ? f(r) : 0.0;
        double incl, total;
        Scan(tmp).InclusiveSum(v, incl, total);
        incl += *carry;
        if (r < n && hit(incl)) atomicMin(found, r);
        __syncthreads();
        if (threadIdx.x == 0) *carry += total;
        __syncthreads();
        if (*found < n) break;
    }
    const int out = *found;
    __syncthreads();
    return out;
}

// Smallest value over the block (every thread gets it); sh: 32 entries of shared memory.
__device__ unsigned long long block_min_u64(unsigned long long v, unsigned long long *sh) {
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long t = __shfl_xor_sync(0xffffffffu, v, o);
        v = t < v ? t : v;
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    unsigned long long r = sh[0];
    for (int w = 1; w < THREADS / 32; w++) r = sh[w] < r ? sh[w] : r;
    __syncthreads();
    return r;
}

// ---- kcuda_sample: no sort of the vocabulary -------------------------------------------------

// What the kernels after `scan` do (State.mode).
enum { M_DONE = 0, M_SELECT2, M_SELECT3, M_GATHER, M_UNRANKED };

// Shared by the kernels of one draw, in device scratch. ticket, pool_n and the histogram are
// zero between draws (zeroed once with the scratch; each user leaves them zero).
struct State {
    unsigned ticket;          // blocks of the running kernel done (its last block resets it)
    int mode;
    int n_valid;              // non-NaN logits
    int need;                 // radix select: 1-based rank of the k-th key inside the bucket
    int before;               // radix select: valid keys ranked before the bucket
    uint32_t prefix;          // radix select: the k-th key's bits found so far
    uint32_t thresh;          // M_GATHER / M_UNRANKED: the candidates are the keys <= thresh
    uint32_t minp_key;        // min-p keeps the keys <= minp_key (KEY_ALL when off)
    int pool_n;               // M_GATHER: candidates appended to the pool
    unsigned long long best;  // smallest (key << 32 | id): the largest logit and its id
};
struct Part {
    unsigned long long best;
    int valid;
    double z;  // sum of mass_cut over the block's valid logits (top-p's mass without top-k)
    double w;  // sum of the draw weights of the block's candidates (M_UNRANKED)
};
struct Fast {
    uint32_t *keys;            // [n_vocab]
    Part *part;                // [blocks]
    uint32_t *hist;            // [HIST_BINS]
    State *st;
    unsigned long long *pool;  // [POOL_CAP]
};

// Whether the plan may select the k-th key (the blocks of `scan` then build the histogram).
__device__ __forceinline__ bool uses_select(const KcudaSampleArgs &a, int n) {
    const bool top_k_on = a.top_k > 0 && a.top_k < n;
    if (!(a.temperature > 0.0f)) return false;
    if (top_k_on) return a.top_k <= TOPK_CAP;
    return a.top_p < 1.0f && !(a.min_p > 0.0f);
}

// Radix levels 1 and 2 stop once the keys up to the k-th key's bucket are at most this many: a
// bitonic sort of the pool takes log2(size)^2/2 block-wide steps (66 at 2048, 36 at 256), another
// level one more pass over the keys. (A choice, not a measurement; level 3 takes up to POOL_CAP.)
__device__ __forceinline__ int pool_goal(int k) {
    const int g = 4 * k > 256 ? 4 * k : 256;
    return g < POOL_CAP ? g : POOL_CAP;
}

// Called by every thread after its block's results are written: true in the last block of the
// grid to get here (which then sees every block's results) and resets the ticket.
__device__ bool last_block(State *st, int *flag) {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned t = atomicAdd(&st->ticket, 1u);
        *flag = t == gridDim.x - 1;
        if (*flag) st->ticket = 0;
    }
    __syncthreads();
    const bool last = *flag != 0;
    if (last) __threadfence();
    return last;
}

// Adds the block's shared histogram to the global one (the non-zero bins).
__device__ void flush_hist(const uint32_t *h, uint32_t *g, int nbins) {
    __syncthreads();
    for (int b = threadIdx.x; b < nbins; b += THREADS) {
        const uint32_t c = h[b];
        if (c) atomicAdd(&g[b], c);
    }
}

// Over the global histogram g[0..nbins) (ascending keys = rank order): the bucket holding the
// k-th key (1-based; -1 if there are fewer), the keys in the buckets before it and in it. Leaves g
// zero. Every thread gets the answer.
struct Bucket {
    int bin, before, count;
};
__device__ Bucket find_bucket(uint32_t *g, int nbins, int k, typename ScanInt::TempStorage &tmp, Bucket *sh) {
    enum { PER = HIST_BINS / THREADS };
    const int b0 = threadIdx.x * PER;
    int c[PER], tot = 0;
    for (int j = 0; j < PER; j++) {
        const int b = b0 + j;
        c[j] = b < nbins ? (int)__ldcg(&g[b]) : 0;
        if (b < nbins) g[b] = 0;
        tot += c[j];
    }
    if (threadIdx.x == 0) *sh = Bucket{-1, 0, 0};
    __syncthreads();
    int excl;
    ScanInt(tmp).ExclusiveSum(tot, excl);
    if (excl < k && excl + tot >= k) {
        int run = excl;
        for (int j = 0; j < PER; j++) {
            if (run + c[j] >= k) {
                *sh = Bucket{b0 + j, run, c[j]};
                break;
            }
            run += c[j];
        }
    }
    __syncthreads();
    const Bucket out = *sh;
    __syncthreads();
    return out;
}

__device__ void finish(int *out, int tok, int used, int declined) {
    if (threadIdx.x == 0) out[0] = tok, out[1] = used, out[2] = declined;
}

// 1. Keys, the maximum, the top-12-bit histogram; the last block plans.
__global__ void __launch_bounds__(THREADS)
sample_scan_kernel(const float *__restrict__ logits, int n, const KcudaSampleArgs *__restrict__ args,
                   const int32_t *__restrict__ pen_ids, Fast f, int greedy_only, int *__restrict__ out) {
    __shared__ uint32_t hist[HIST_BINS];
    __shared__ unsigned long long red[32];
    __shared__ union {
        typename ReduceInt::TempStorage r;
        typename ScanInt::TempStorage s;
    } tmp;
    __shared__ Bucket bk;
    __shared__ int flag;
    const KcudaSampleArgs a = *args;
    const bool greedy = greedy_only || !(a.temperature > 0.0f);
    const bool hist_on = !greedy && uses_select(a, n);
    if (hist_on)
        for (int b = threadIdx.x; b < HIST_BINS; b += THREADS) hist[b] = 0;
    __syncthreads();
    const int i = blockIdx.x * THREADS + threadIdx.x;
    uint32_t key = KEY_NAN;
    if (i < n) {
        key = rank_key(penalised(logits, i, a, pen_ids));
        f.keys[i] = key;
        if (hist_on && key != KEY_NAN) atomicAdd(&hist[key >> 20], 1u);
    }
    const unsigned long long best = block_min_u64((unsigned long long)key << 32 | (unsigned)i, red);
    const int valid = ReduceInt(tmp.r).Sum(key != KEY_NAN ? 1 : 0);
    if (hist_on) flush_hist(hist, f.hist, HIST_BINS);
    if (threadIdx.x == 0) f.part[blockIdx.x].best = best, f.part[blockIdx.x].valid = valid;
    if (!last_block(f.st, &flag)) return;

    // The last block: the whole vocabulary's maximum and count, then the plan.
    const int t = threadIdx.x;
    const bool has = t < (int)gridDim.x;
    const unsigned long long all_best = block_min_u64(has ? __ldcg(&f.part[t].best) : ~0ull, red);
    __syncthreads();
    const int n_valid = ReduceInt(tmp.r).Sum(has ? __ldcg(&f.part[t].valid) : 0);
    __syncthreads();
    const uint32_t best_key = (uint32_t)(all_best >> 32);
    const int best_id = (int)(all_best & 0xffffffffu);
    const float max_logit = key_value(best_key);
    const bool top_k_on = a.top_k > 0 && a.top_k < n;
    const int n_c = top_k_on && a.top_k < n_valid ? a.top_k : n_valid;  // the host's n before min-p
    const bool minp_on = a.min_p > 0.0f && n_c > 1;
    const uint32_t minp_key = minp_on ? rank_key(max_logit + a.log_min_p) : KEY_ALL;
    const int k = top_k_on ? a.top_k : TOPK_CAP;
    int mode = M_DONE, tok = -1, declined = 0;
    uint32_t thresh = KEY_ALL;
    Bucket b = {0, 0, 0};
    bool selected = false;
    if (greedy) {
        // the host's argmax: nothing compares greater than a NaN first logit, so it stays 0
        tok = __ldcg(&f.keys[0]) == KEY_NAN ? 0 : best_id;
    } else if (n_valid == 0 || max_logit == -INFINITY) {
        tok = n_valid == 0 ? 0 : best_id;  // the host: argmax (0) / its first candidate
    } else if (!top_k_on && !(a.top_p < 1.0f)) {
        mode = M_UNRANKED;  // drawn in vocabulary order among min-p's survivors
        thresh = minp_key;
    } else if (top_k_on && a.top_k > TOPK_CAP) {
        declined = 1;
    } else if (!top_k_on && minp_on) {
        mode = M_GATHER;  // the pool: min-p's survivors (gather declines past POOL_CAP)
        thresh = minp_key;
    } else if (n_valid <= k) {
        mode = M_GATHER;  // every valid logit
    } else {  // uses_select() held: the histogram is there
        b = find_bucket(f.hist, HIST_BINS, k, tmp.s, &bk);
        selected = true;
        if (b.bin < 0) declined = 1;
        else if (b.before + b.count <= pool_goal(k)) mode = M_GATHER, thresh = (uint32_t)b.bin << 20 | 0xfffffu;
        else mode = M_SELECT2;
    }
    if (hist_on && !selected)  // built but not needed after all: leave it zero
        for (int j = t; j < HIST_BINS; j += THREADS) f.hist[j] = 0;
    if (mode == M_DONE) finish(out, tok, 0, declined);
    State *st = f.st;
    if (t == 0) {
        st->mode = mode;
        st->n_valid = n_valid;
        st->best = all_best;
        st->minp_key = minp_key;
        st->thresh = thresh;
        st->prefix = (uint32_t)b.bin;
        st->need = k - b.before;
        st->before = b.before;
    }
}

// 2. and 3. The next digit of the k-th key (level 2: bits 19..8, level 3: bits 7..0) among the
// keys whose higher bits are those found.
__global__ void __launch_bounds__(THREADS) sample_refine_kernel(int n, Fast f, int level, int *__restrict__ out) {
    __shared__ uint32_t hist[HIST_BINS];
    __shared__ typename ScanInt::TempStorage tmp;
    __shared__ Bucket bk;
    __shared__ int flag;
    State *st = f.st;
    if (st->mode != (level == 2 ? M_SELECT2 : M_SELECT3)) return;
    const uint32_t prefix = st->prefix;
    const int shift = level == 2 ? 8 : 0, pshift = level == 2 ? 20 : 8, nbins = level == 2 ? HIST_BINS : 256;
    for (int b = threadIdx.x; b < nbins; b += THREADS) hist[b] = 0;
    __syncthreads();
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i < n) {
        const uint32_t key = f.keys[i];
        if (key != KEY_NAN && key >> pshift == prefix) atomicAdd(&hist[(key >> shift) & (uint32_t)(nbins - 1)], 1u);
    }
    flush_hist(hist, f.hist, nbins);
    if (!last_block(st, &flag)) return;
    const Bucket b = find_bucket(f.hist, nbins, st->need, tmp, &bk);
    if (threadIdx.x != 0) return;
    const int pool = st->before + b.before + b.count;
    if (b.bin < 0) {
        st->mode = M_DONE;
        finish(out, -1, 0, 1);
    } else if (level == 2 && pool > pool_goal(st->need + st->before)) {
        st->mode = M_SELECT3;
        st->prefix = prefix << 12 | (uint32_t)b.bin;
        st->need -= b.before;
        st->before += b.before;
    } else if (pool > POOL_CAP) {  // more than POOL_CAP keys tie with the k-th
        st->mode = M_DONE;
        finish(out, -1, 0, 1);
    } else {
        st->mode = M_GATHER;
        st->thresh = level == 2 ? (prefix << 20 | (uint32_t)b.bin << 8 | 0xffu) : (prefix << 8 | (uint32_t)b.bin);
    }
}

// Bitonic sort of s[0..n2) ascending, n2 a power of two, by the block.
__device__ void block_sort(unsigned long long *s, int n2) {
    for (int k = 2; k <= n2; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int x = threadIdx.x; x < n2; x += THREADS) {
                const int y = x ^ j;
                if (y > x) {
                    const unsigned long long p = s[x], q = s[y];
                    if ((p > q) == ((x & k) == 0)) s[x] = q, s[y] = p;
                }
            }
            __syncthreads();
        }
}

// 4. The candidates: appended to the pool (ranked draw) or their weights summed per block
// (vocabulary order); the last block draws.
__global__ void __launch_bounds__(THREADS)
sample_gather_kernel(int n, const KcudaSampleArgs *__restrict__ args, Fast f, int *__restrict__ out) {
    __shared__ union {
        typename Reduce::TempStorage red;
        typename Scan::TempStorage scan;
        typename ScanInt::TempStorage iscan;
    } tmp;
    __shared__ unsigned long long sp[POOL_CAP];
    __shared__ unsigned long long red[32];
    __shared__ double carry;
    __shared__ int found, flag, base;
    State *st = f.st;
    const int mode = st->mode;
    if (mode != M_GATHER && mode != M_UNRANKED) return;
    const KcudaSampleArgs a = *args;
    const uint32_t thresh = st->thresh;
    const int n_valid = st->n_valid;
    const double mx = (double)key_value((uint32_t)(st->best >> 32));
    const bool top_k_on = a.top_k > 0 && a.top_k < n;
    const bool z_all = mode == M_GATHER && !top_k_on && a.top_p < 1.0f && n_valid > 1;  // top-p's mass over all
    const int t = threadIdx.x, i = blockIdx.x * THREADS + t;
    const uint32_t key = i < n ? f.keys[i] : KEY_NAN;
    if (mode == M_GATHER) {
        const int take = key <= thresh;
        int off, total;
        ScanInt(tmp.iscan).ExclusiveSum(take, off, total);
        if (t == 0) base = total ? atomicAdd(&st->pool_n, total) : 0;
        __syncthreads();
        if (take && base + off < POOL_CAP) f.pool[base + off] = (unsigned long long)key << 32 | (unsigned)i;
        if (z_all) {
            const double z = Reduce(tmp.red).Sum(key != KEY_NAN ? mass_cut(key_value(key), mx) : 0.0);
            if (t == 0) f.part[blockIdx.x].z = z;
        }
    } else {
        const double w = key <= thresh ? draw_weight(key_value(key), mx, a.inv_temp) : 0.0;
        const double ws = Reduce(tmp.red).Sum(w);
        if (t == 0) f.part[blockIdx.x].w = ws;
    }
    if (!last_block(st, &flag)) return;

    const int nb = (int)gridDim.x;
    const bool has = t < nb;
    if (mode == M_UNRANKED) {
        // z: the sum of the blocks' sums; the first block whose running sum exceeds u, then the
        // host's walk from that block's first id on (into the next block should rounding leave
        // the walk short of u inside it)
        double excl, z;
        Scan(tmp.scan).ExclusiveSum(has ? __ldcg(&f.part[t].w) : 0.0, excl, z);
        const double u = a.u01 * z;
        if (t == 0) found = nb;
        __syncthreads();
        if (has && u < excl + __ldcg(&f.part[t].w)) atomicMin(&found, t);
        __syncthreads();
        const int blk = found;
        __syncthreads();  // every thread has read `found` before block_first_prefix reuses it
        if (t == blk) carry = excl;  // (ordered by the barrier in block_first_prefix)
        int pick = -1;
        if (blk < nb) {
            const int from = blk * THREADS;
            auto weight = [&](int r) {
                const uint32_t k = f.keys[from + r];
                return k <= thresh ? draw_weight(key_value(k), mx, a.inv_temp) : 0.0;
            };
            const int r = block_first_prefix(n - from, weight, [&](double cum) { return u < cum; }, tmp.scan, &carry,
                                             &found);
            if (r < n - from) pick = from + r;
        }
        if (pick < 0) {
            // rounding left u at the top: the last candidate with any weight, else the first
            int last = -1, first = n;
            for (int id = t; id < n; id += THREADS) {
                const uint32_t k = f.keys[id];
                if (k > thresh) continue;
                if (first == n) first = id;
                if (draw_weight(key_value(k), mx, a.inv_temp) > 0.0) last = id;
            }
            const unsigned long long no = ~0ull;
            const unsigned long long lm = block_min_u64(last >= 0 ? (unsigned long long)(n - 1 - last) : no, red);
            const unsigned long long fm = block_min_u64((unsigned long long)first, red);
            pick = lm != no ? n - 1 - (int)lm : (int)fm;
        }
        finish(out, pick, 1, 0);
        return;
    }

    // M_GATHER: sort the pool, then the host's walk over its rank-ordered candidates
    const int pn = __ldcg(&st->pool_n);
    __syncthreads();
    if (t == 0) st->pool_n = 0;
    if (pn > POOL_CAP) {  // min-p keeps too many
        finish(out, -1, 0, 1);
        return;
    }
    int n2 = 2;
    while (n2 < pn) n2 <<= 1;
    for (int r = t; r < n2; r += THREADS) sp[r] = r < pn ? __ldcg(&f.pool[r]) : ~0ull;
    __syncthreads();
    block_sort(sp, n2);
    auto lg = [&](int r) { return (double)key_value((uint32_t)(sp[r] >> 32)); };
    const int n_c = top_k_on && a.top_k < n_valid ? a.top_k : n_valid;  // the host's n before min-p
    const bool minp_on = a.min_p > 0.0f && n_c > 1;
    int m = top_k_on ? n_c : pn;  // candidates held: a rank prefix
    // whether the pool holds every candidate that min-p keeps (else top-p must end inside it)
    const bool complete = top_k_on || minp_on || pn == n_valid;
    double z = 0.0;
    if (a.top_p < 1.0f && n_c > 1) {
        if (t == 0) carry = 0.0;
        __syncthreads();
        if (top_k_on) z = block_total(m, [&](int r) { return mass_cut(lg(r), mx); }, tmp.red, &carry);
        else z = block_total(nb, [&](int r) { return __ldcg(&f.part[r].z); }, tmp.red, &carry);
    }
    if (minp_on) {
        const uint32_t mk = st->minp_key;
        int lo = 0, hi = m;  // the first rank whose key is above min-p's
        while (lo < hi) {
            const int mid = (lo + hi) >> 1;
            if ((uint32_t)(sp[mid] >> 32) <= mk) lo = mid + 1;
            else hi = mid;
        }
        m = lo > 1 ? lo : 1;
    }
    if (a.top_p < 1.0f && m > 1) {
        const double target = (double)(a.top_p > 0.0f ? a.top_p : 0.0f) * z;
        if (t == 0) carry = 0.0;
        __syncthreads();
        const int r = block_first_prefix(m, [&](int q) { return exp(lg(q) - mx); },
                                         [&](double cum) { return cum >= target; }, tmp.scan, &carry, &found);
        if (r < m) {
            m = r + 1;
        } else if (!complete) {  // the nucleus goes past the TOPK_CAP best
            finish(out, -1, 0, 1);
            return;
        }
    }
    auto weight = [&](int r) { return draw_weight(lg(r), mx, a.inv_temp); };
    if (t == 0) carry = 0.0;
    __syncthreads();
    const double z2 = block_total(m, weight, tmp.red, &carry);
    const double u = a.u01 * z2;
    if (t == 0) carry = 0.0;
    __syncthreads();
    int pick = block_first_prefix(m, weight, [&](double cum) { return u < cum; }, tmp.scan, &carry, &found);
    if (t == 0) {
        if (pick >= m) {  // rounding left u at the top: the last candidate with any weight, else the first
            pick = 0;
            for (int r = m - 1; r > 0; r--)
                if (weight(r) > 0.0) {
                    pick = r;
                    break;
                }
        }
        out[0] = (int)(sp[pick] & 0xffffffffu), out[1] = 1, out[2] = 0;
    }
}

// ---- kcuda_sample_sorted: a full sort (the fallback) ----------------------------------------

__global__ void __launch_bounds__(KEY_THREADS)
sample_keys_kernel(const float *__restrict__ logits, int n, const KcudaSampleArgs *__restrict__ args,
                   const int32_t *__restrict__ pen_ids, uint32_t *__restrict__ keys, int32_t *__restrict__ ids) {
    const int i = blockIdx.x * KEY_THREADS + threadIdx.x;
    if (i >= n) return;
    keys[i] = rank_key(penalised(logits, i, *args, pen_ids));
    ids[i] = i;
}

// First index in the non-decreasing keys[0..n) whose key is > limit (n if none).
__device__ int first_above(const uint32_t *keys, int n, uint32_t limit) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (keys[mid] <= limit) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

__global__ void __launch_bounds__(THREADS)
sample_pick_kernel(const uint32_t *__restrict__ keys, const int32_t *__restrict__ ids,
                   const uint32_t *__restrict__ id_keys, int n_vocab, const KcudaSampleArgs *__restrict__ args,
                   int *__restrict__ out) {
    __shared__ union {
        typename Reduce::TempStorage red;
        typename Scan::TempStorage scan;
    } tmp;
    __shared__ double carry;
    __shared__ int found;
    const KcudaSampleArgs a = *args;
    const int n_valid = first_above(keys, n_vocab, KEY_NAN - 1);
    if (n_valid == 0) {  // all NaN: the host's argmax gives 0
        finish(out, 0, 0, 0);
        return;
    }
    if (!(a.temperature > 0.0f)) {  // the host's argmax: a NaN first logit stays the pick
        finish(out, id_keys[0] == KEY_NAN ? 0 : ids[0], 0, 0);
        return;
    }
    const bool top_k = a.top_k > 0 && a.top_k < n_vocab;
    int n = top_k && a.top_k < n_valid ? a.top_k : n_valid;
    const float max_logit = key_value(keys[0]);
    if (max_logit == -INFINITY) {
        finish(out, ids[0], 0, 0);
        return;
    }
    const double mx = (double)max_logit;
    auto lg = [&](int r) { return (double)key_value(keys[r]); };
    double z = 0.0;
    if (threadIdx.x == 0) carry = 0.0;
    __syncthreads();
    if (a.top_p < 1.0f && n > 1) z = block_total(n, [&](int r) { return mass_cut(lg(r), mx); }, tmp.red, &carry);
    if (a.min_p > 0.0f && n > 1) {
        // keep the prefix with logit >= max + log(min_p) (at least the best token)
        const float thresh = max_logit + a.log_min_p;
        const int keep = first_above(keys, n, rank_key(thresh));
        n = keep > 1 ? keep : 1;
    }
    // The host draws over its candidates in the order it holds them: rank order once top-k or
    // top-p has sorted them, else vocabulary order (min-p only filters in place).
    bool ranked = top_k;
    if (a.top_p < 1.0f && n > 1) {
        const double target = (double)(a.top_p > 0.0f ? a.top_p : 0.0f) * z;
        if (threadIdx.x == 0) carry = 0.0;
        __syncthreads();
        const int i = block_first_prefix(n, [&](int r) { return exp(lg(r) - mx); },
                                         [&](double cum) { return cum >= target; }, tmp.scan, &carry, &found);
        if (i < n) n = i + 1;
        ranked = true;
    }
    const double inv_t = a.inv_temp;
    // candidates: ranks [0, n), or in vocabulary order the ids whose key is at most the last kept
    // one's (the same set: keys are ordered by logit, and the kept set is a rank prefix)
    const uint32_t last_key = keys[n - 1];
    const int m = ranked ? n : n_vocab;
    auto weight = [&](int i) {
        if (ranked) return draw_weight(lg(i), mx, inv_t);
        const uint32_t k = id_keys[i];
        return k <= last_key ? draw_weight((double)key_value(k), mx, inv_t) : 0.0;
    };
    if (threadIdx.x == 0) carry = 0.0;
    __syncthreads();
    const double z2 = block_total(m, weight, tmp.red, &carry);
    const double u = a.u01 * z2;
    if (threadIdx.x == 0) carry = 0.0;
    __syncthreads();
    int pick = block_first_prefix(m, weight, [&](double cum) { return u < cum; }, tmp.scan, &carry, &found);
    if (threadIdx.x == 0) {
        if (pick >= m) {  // rounding left u at the top: the last candidate with any weight, else the first
            pick = -1;
            for (int i = m - 1; i >= 0 && pick < 0; i--)
                if (weight(i) > 0.0) pick = i;
            if (pick < 0) {
                pick = 0;
                if (!ranked)
                    while (id_keys[pick] > last_key) pick++;
            }
        }
        out[0] = ranked ? ids[pick] : pick;
        out[1] = 1;
        out[2] = 0;
    }
}

// ---- scratch ------------------------------------------------------------------------------------

size_t align_up(size_t x) { return (x + 255) / 256 * 256; }

size_t cub_bytes(int n) {
    size_t b = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, b, (const uint32_t *)nullptr, (uint32_t *)nullptr,
                                    (const int32_t *)nullptr, (int32_t *)nullptr, n);
    return b;
}

int blocks_of(int n) { return (n + THREADS - 1) / THREADS; }

// The fast path's pieces first (state, histogram, pool, partials, keys), then the sort's.
struct Scratch {
    Fast f;
    uint32_t *k0, *k1;
    int32_t *i0, *i1;
    void *cub;
    size_t cub_bytes, total;
};

Scratch carve(void *base, int n) {
    Scratch s;
    char *p = (char *)base;
    const size_t a = align_up((size_t)n * 4);
    s.f.st = (State *)p, p += align_up(sizeof(State));
    s.f.hist = (uint32_t *)p, p += align_up(HIST_BINS * 4);
    s.f.pool = (unsigned long long *)p, p += align_up(POOL_CAP * 8);
    s.f.part = (Part *)p, p += align_up((size_t)blocks_of(n) * sizeof(Part));
    s.f.keys = (uint32_t *)p, p += a;
    s.k0 = (uint32_t *)p, p += a;
    s.k1 = (uint32_t *)p, p += a;
    s.i0 = (int32_t *)p, p += a;
    s.i1 = (int32_t *)p, p += a;
    s.cub = p;
    s.cub_bytes = cub_bytes(n);
    s.total = (size_t)(p - (char *)base) + align_up(s.cub_bytes);
    return s;
}

int check_args(const char *fn, const float *d_logits, int n_vocab, const void *d_args, const void *d_pen_ids,
               void *d_scratch, size_t scratch_bytes, const int *d_out) {
    if (!d_logits || !d_args || !d_pen_ids || !d_scratch || !d_out)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL pointer", fn);
    if (n_vocab <= 0 || blocks_of(n_vocab) > MAX_BLOCKS)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: vocabulary of %d tokens (1 to %d)", fn, n_vocab, MAX_BLOCKS * THREADS);
    if (scratch_bytes < kcuda_sample_scratch(n_vocab))
        return kcuda_fail(KCUDA_ERR_ARG, "%s: vocab %d with %zu scratch bytes (needs %zu)", fn, n_vocab, scratch_bytes,
                          kcuda_sample_scratch(n_vocab));
    return KCUDA_OK;
}

}  // namespace

extern "C" size_t kcuda_sample_scratch(int n_vocab) {
    if (n_vocab <= 0) return 0;
    return carve(nullptr, n_vocab).total;
}

extern "C" int kcuda_sample(const float *d_logits, int n_vocab, const KcudaSampleArgs *d_args,
                            const int32_t *d_pen_ids, int greedy, void *d_scratch, size_t scratch_bytes, int *d_out,
                            void *stream) {
    int rc = check_args("kcuda_sample", d_logits, n_vocab, d_args, d_pen_ids, d_scratch, scratch_bytes, d_out);
    if (rc) return rc;
    const Fast f = carve(d_scratch, n_vocab).f;
    const dim3 grid((unsigned)blocks_of(n_vocab)), block(THREADS);
    rc = kcuda_launch(sample_scan_kernel, grid, block, 0, stream, 0, d_logits, n_vocab, d_args, d_pen_ids, f,
                      greedy ? 1 : 0, d_out);
    if (rc || greedy) return rc;
    if ((rc = kcuda_launch(sample_refine_kernel, grid, block, 0, stream, 0, n_vocab, f, 2, d_out)) ||
        (rc = kcuda_launch(sample_refine_kernel, grid, block, 0, stream, 0, n_vocab, f, 3, d_out)))
        return rc;
    return kcuda_launch(sample_gather_kernel, grid, block, 0, stream, 0, n_vocab, d_args, f, d_out);
}

extern "C" int kcuda_sample_sorted(const float *d_logits, int n_vocab, const KcudaSampleArgs *d_args,
                                   const int32_t *d_pen_ids, void *d_scratch, size_t scratch_bytes, int *d_out,
                                   void *stream) {
    int rc = check_args("kcuda_sample_sorted", d_logits, n_vocab, d_args, d_pen_ids, d_scratch, scratch_bytes, d_out);
    if (rc) return rc;
    Scratch s = carve(d_scratch, n_vocab);
    const cudaStream_t st = (cudaStream_t)stream;
    rc = kcuda_launch(sample_keys_kernel, dim3((unsigned)((n_vocab + KEY_THREADS - 1) / KEY_THREADS)),
                      dim3(KEY_THREADS), 0, stream, 0, d_logits, n_vocab, d_args, d_pen_ids, s.k0, s.i0);
    if (rc) return rc;
    size_t cb = s.cub_bytes;
    KCUDA_TRY(cub::DeviceRadixSort::SortPairs(s.cub, cb, s.k0, s.k1, s.i0, s.i1, n_vocab, 0, 32, st));
    return kcuda_launch(sample_pick_kernel, dim3(1), dim3(THREADS), 0, stream, 0, (const uint32_t *)s.k1,
                        (const int32_t *)s.i1, (const uint32_t *)s.k0, n_vocab, d_args, d_out);
}
