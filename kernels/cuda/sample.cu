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
// Three launchers, the caller choosing by the settings (infer/backend_cuda.c):
//   - kcuda_sample_argmax: greedy (the penalised argmax), one kernel;
//   - kcuda_sample_topk: top-k on, 1 <= k <= KCUDA_SAMPLE_TOPK_MAX (the defaults), one kernel.
//     With top-k on, every later filter and the draw look only at the k best in rank order, so
//     only those are needed, sorted. Each block sorts its 1024 ids' (key, id) numbers (bitonic,
//     in registers and shared memory) and writes its best min(k, valid) to scratch: a sorted
//     list. The last block to finish merges the lists: while they hold many more candidates
//     than k, a bound (the k-th smallest of the lists' first s entries, s the smallest power of
//     two giving 1.5 k of them) cuts every list to its entries at or below it (the k best stay:
//     k entries lie at or below the bound); then the remaining candidates, sorted (a count of
//     the ones below each, or a block sort past 256), begin with the k best. Its pick runs the
//     host's walks: the block computes each candidate's exp()s, one thread adds the running sums
//     left to right as the host does, a warp finds where each walk stops. Measured (H100,
//     2026-12-06, vocab 128256, `test_sample_cuda time`): 22.1 us for the defaults against 79.1
//     for the sort; 14.7 at top-k 1 (the blocks' sorts: the argmax kernel takes 7.7); 33.5-37.7
//     at top-k 256, the cap (its merge's pool sort is sized for it).
//   - kcuda_sample_sorted: every other setting: a stable radix sort of all (key, id) pairs
//     (cub), one block walking the kept prefix (sums added in trees).
// All use the host's formulas: the same float threshold for min-p (log(min_p) computed on the
// host), double sums of exp() for top-p and of the (float) weights, the host's uniform, the first
// candidate whose running weight exceeds it. Every comparison and every per-token weight has the
// host's bits up to the last bit of exp() (CUDA's and glibc's are both within 1 ulp, and agree on
// nearly every argument); kcuda_sample_topk adds its sums in the host's order, kcuda_sample_sorted
// in trees, which moves them by a few units in the last place (~1e-16 relative). A draw can
// therefore differ only when the uniform lands within ~1e-16 of a boundary between two tokens:
// about once in 1e15 draws. One exception, by design: a top-p nucleus wider than 1024 tokens
// without top-k, where the host's order past rank 1024 is its quickselect's; the device walks
// rank order there (the same distribution).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"

namespace {

typedef unsigned long long u64;

enum {
    THREADS = 1024,   // every kernel's block; argmax and top-k give a block THREADS consecutive ids
    KEY_THREADS = 256,
    MAX_BLOCKS = THREADS,  // the last block gives one thread to each block: vocabularies up to 1M
    TOPK_MAX = KCUDA_SAMPLE_TOPK_MAX,
    // The top-k merge's shared pool of candidates: a round's list heads (fewer than 2 x 1.5 k, or
    // one per block; see topk_merge) or the final candidates (at most max(2 k, 256)); at most
    // THREADS, so that one block sort orders them.
    POOL = THREADS,
    // Penalty ids a block copies to shared memory (the backend sends at most 4096; a longer list
    // is searched where it is).
    PEN_SMEM = 4096,
    // A top-k block with at most this many live logits ranks them by counting (each compares
    // itself with all: 256 broadcast reads) instead of sorting its 1024 keys.
    SPARSE_MAX = 256,
};
static_assert(TOPK_MAX <= THREADS && 3 * TOPK_MAX <= POOL,
              "a block's list holds at most its THREADS ids; a round's heads fit the pool");
constexpr uint32_t KEY_NAN = 0xffffffffu;
constexpr uint32_t KEY_NINF = 0xff800000u;  // rank_key(-INFINITY): every live logit's key is below

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
__device__ u64 block_min_u64(u64 v, u64 *sh) {
    for (int o = 16; o > 0; o >>= 1) {
        const u64 t = __shfl_xor_sync(0xffffffffu, v, o);
        v = t < v ? t : v;
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    u64 r = sh[0];
    for (int w = 1; w < THREADS / 32; w++) r = sh[w] < r ? sh[w] : r;
    __syncthreads();
    return r;
}

// Called by every thread after its block's results are written: true in the last block of the
// grid to get here (which then sees every block's results, read with __ldcg) and resets the
// ticket for the next draw.
__device__ bool last_block(unsigned *ticket, int *flag) {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned t = atomicAdd(ticket, 1u);
        *flag = t == gridDim.x - 1;
        if (*flag) *ticket = 0;
    }
    __syncthreads();
    const bool last = *flag != 0;
    if (last) __threadfence();
    return last;
}

__device__ void finish(int *out, int tok, int used, int declined) {
    if (threadIdx.x == 0) out[0] = tok, out[1] = used, out[2] = declined;
}

// The host's argmax over the penalised logits: nothing compares greater than a NaN first logit,
// so it stays the pick; else the best (key, id), whose id is the lowest among equal maxima.
__device__ int host_argmax(const float *logits, const KcudaSampleArgs &a, const int32_t *pen_ids, u64 best) {
    const float l0 = penalised(logits, 0, a, pen_ids);
    return l0 != l0 || (uint32_t)(best >> 32) == KEY_NAN ? 0 : (int)(best & 0xffffffffu);
}

// The arguments and (up to PEN_SMEM of) the penalty ids in shared memory, read once per block:
// every thread's penalty lookup then searches shared memory. Returns the list to search.
__device__ const int32_t *stage_args(const KcudaSampleArgs *args, const int32_t *pen_ids, KcudaSampleArgs *sa,
                                     int32_t *pen) {
    if (threadIdx.x == 0) *sa = *args;
    __syncthreads();
    const int np = sa->n_pen;
    if (np > PEN_SMEM) return pen_ids;
    for (int j = threadIdx.x; j < np; j += THREADS) pen[j] = pen_ids[j];
    __syncthreads();
    return pen;
}

// Scratch of the argmax and top-k kernels (device memory, zeroed once: the tickets start at 0
// and each kernel's last block leaves its ticket 0).
struct Sel {
    unsigned *ticket;  // [2]: argmax, top-k
    u64 *best;         // [blocks]: argmax: each block's smallest (key, id); top-k: its lowest -inf id
    int *len;          // [blocks]: top-k: entries in each block's list
    u64 *lists;        // [blocks * THREADS]: top-k: block b's list at b * THREADS, ascending
};

// ---- kcuda_sample_argmax: greedy with the penalty ---------------------------------------------

__global__ void __launch_bounds__(THREADS)
sample_argmax_kernel(const float *__restrict__ logits, int n, const KcudaSampleArgs *__restrict__ args,
                     const int32_t *__restrict__ pen_ids_in, Sel s, int *__restrict__ out) {
    __shared__ u64 red[32];
    __shared__ int flag;
    __shared__ KcudaSampleArgs sa;
    __shared__ int32_t pen[PEN_SMEM];
    const int32_t *pen_ids = stage_args(args, pen_ids_in, &sa, pen);
    const KcudaSampleArgs a = sa;
    const int i = blockIdx.x * THREADS + threadIdx.x;
    const uint32_t key = i < n ? rank_key(penalised(logits, i, a, pen_ids)) : KEY_NAN;
    const u64 best = block_min_u64((u64)key << 32 | (unsigned)i, red);
    if (threadIdx.x == 0) s.best[blockIdx.x] = best;
    if (!last_block(&s.ticket[0], &flag)) return;
    const int t = threadIdx.x;
    const u64 all = block_min_u64(t < (int)gridDim.x ? __ldcg(&s.best[t]) : ~0ull, red);
    if (t == 0) finish(out, host_argmax(logits, a, pen_ids, all), 0, 0);
}

// ---- kcuda_sample_topk: top-k on, k <= TOPK_MAX -------------------------------------------------

// Sorts one value per thread ascending over the block and returns thread t's value of the sorted
// order (bitonic: strides below 32 by shuffles, the rest through buf, 2 * THREADS entries of
// shared memory used in turn, so one barrier a stage suffices). The 55 stages are unrolled, so
// each one's masks and path are constants.
__device__ __forceinline__ u64 block_sort_u64(u64 v, u64 *buf) {
    const int t = threadIdx.x;
    int ping = 0;
#pragma unroll
    for (int k = 2; k <= THREADS; k <<= 1) {
#pragma unroll
        for (int j = k >> 1; j > 0; j >>= 1) {
            u64 p;
            if (j >= 32) {
                u64 *b = buf + ping * THREADS;
                b[t] = v;
                __syncthreads();
                p = b[t ^ j];
                ping ^= 1;
            } else {
                p = __shfl_xor_sync(0xffffffffu, v, j);
            }
            // the lower index of a pair keeps the smaller value in an ascending run of k
            const bool keep_min = ((t & j) == 0) == ((t & k) == 0);
            v = keep_min ? (p < v ? p : v) : (p < v ? v : p);
        }
    }
    return v;
}

// Entries of the ascending a[0..n) at most v.
__device__ __forceinline__ int upper_bound_u64(const u64 *a, int n, u64 v, bool global) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if ((global ? __ldcg(&a[mid]) : a[mid]) <= v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// The merge's shared memory (the last block's).
struct Merge {
    union {
        u64 pool[POOL];  // segments of the lists' prefixes, one after the other
        struct {         // after the merge: the pick's per-candidate values and running sums
            double mass[TOPK_MAX], cum_mass[TOPK_MAX], cum_w[TOPK_MAX];
            float w[TOPK_MAX];
        } pick;
    };
    u64 top[TOPK_MAX];      // the k best, ascending
    int off[THREADS + 1];   // segment a is pool[off[a], off[a + 1])
    int lid[THREADS];       // and the prefix of block lid[a]'s list
};
union MergeTmp {
    typename ScanInt::TempStorage scan;
    typename ReduceInt::TempStorage red;
};

__device__ int block_sum_int(int v, MergeTmp &tmp, int *bc) {
    const int r = ReduceInt(tmp.red).Sum(v);
    if (threadIdx.x == 0) *bc = r;
    __syncthreads();
    const int out = *bc;
    __syncthreads();
    return out;
}

__device__ int block_min_int(int v, MergeTmp &tmp, int *bc) {
    const int r = ReduceInt(tmp.red).Reduce(v, [](int x, int y) { return y < x ? y : x; });
    if (threadIdx.x == 0) *bc = r;
    __syncthreads();
    const int out = *bc;
    __syncthreads();
    return out;
}

// Copies the first h entries of each block's list (thread b gives block b's h) into the pool,
// the non-empty prefixes as consecutive segments; returns the number of entries, and in *start
// where thread b's prefix begins in the pool.
__device__ int load_prefixes(const Sel &s, int h, int *start, Merge &m, MergeTmp &tmp) {
    int st, total, seg, n_seg;
    ScanInt(tmp.scan).ExclusiveSum(h, st, total);
    __syncthreads();
    ScanInt(tmp.scan).ExclusiveSum(h > 0 ? 1 : 0, seg, n_seg);
    if (h > 0) m.off[seg] = st, m.lid[seg] = threadIdx.x;
    __syncthreads();
    for (int idx = threadIdx.x; idx < total; idx += THREADS) {
        int lo = 0, hi = n_seg - 1;  // the last segment starting at or before idx
        while (lo < hi) {
            const int mid = (lo + hi + 1) >> 1;
            if (m.off[mid] <= idx) lo = mid;
            else hi = mid - 1;
        }
        m.pool[idx] = __ldcg(&s.lists[(size_t)m.lid[lo] * THREADS + (idx - m.off[lo])]);
    }
    __syncthreads();
    *start = st;
    return total;
}

// The pool's n (<= THREADS) entries in ascending order, as a block: thread t gets the t-th
// (~0 past n). Up to 256 entries each thread counts the entries below its own (independent
// broadcast reads: ~2 us less than a sort at 126 entries); more are sorted.
__device__ u64 pool_sorted(const Merge &m, int n, u64 *sort_buf, u64 *out_sh) {
    const int t = threadIdx.x;
    if (n > 256) return block_sort_u64(t < n ? m.pool[t] : ~0ull, sort_buf);
    if (t < n) {
        const u64 v = m.pool[t];
        int r = 0;
#pragma unroll 8
        for (int j = 0; j < n; j++) r += m.pool[j] < v;
        out_sh[r] = v;
    }
    __syncthreads();
    const u64 v = t < n ? out_sh[t] : ~0ull;
    __syncthreads();
    return v;
}

// In the last block: the k best (key, id) of the blocks' sorted lists, ascending, into m.top;
// returns how many there are (min(k, valid logits)). While the lists hold more than
// max(2 k, 256) entries in all, a round cuts them: with s the smallest power of two whose first s
// entries of each list number at least 1.5 k (fewer than 3 k + 1, or one per list: POOL), the
// k-th smallest of those heads is a bound at or below which k entries lie, so every list keeps
// only its entries at or below it; more than 0.5 k heads lie above it, so each round removes
// entries. Random logits at k 40 need one round (a few dozen entries remain); ties (ids ascending
// across blocks) a few. The remaining entries, sorted, begin with the k best.
__device__ int topk_merge(const Sel &s, int nb, int k, Merge &m, MergeTmp &tmp, u64 *sort_buf, u64 *bound, int *bc) {
    const int t = threadIdx.x;
    int len = t < nb ? __ldcg(&s.len[t]) : 0;
    int total = block_sum_int(len, tmp, bc);
    const int goal = 2 * k > 256 ? 2 * k : 256, target = k + (k + 1) / 2;
    int start;
    while (total > goal) {
        const int lists = __syncthreads_count(len > 0);
        int h = 1;
        while (h * lists < target) h <<= 1;
        while (block_sum_int(len < h ? len : h, tmp, bc) < target) h <<= 1;
        const int mine = len < h ? len : h;
        const int n_heads = load_prefixes(s, mine, &start, m, tmp);
        const u64 v = pool_sorted(m, n_heads, sort_buf, m.top);
        if (t == k - 1) *bound = v;
        __syncthreads();
        const u64 b = *bound;
        if (len > 0) {
            int c = upper_bound_u64(m.pool + start, mine, b, false);
            if (c == mine && len > mine) c = mine + upper_bound_u64(s.lists + (size_t)t * THREADS + mine, len - mine, b, true);
            len = c;
        }
        total = block_sum_int(len, tmp, bc);  // (its barriers: the pool is free again)
    }
    total = load_prefixes(s, len, &start, m, tmp);
    const u64 v = pool_sorted(m, total, sort_buf, m.top);
    if (t < k) m.top[t] = v;
    __syncthreads();
    return total < k ? total : k;
}

// Warp-wide (every lane gets it): the first r in [0, n) with pred(r), else n; the last r in
// [0, n) with pred(r), else -1.
template <typename P>
__device__ int warp_first(int n, P pred) {
    for (int base = 0; base < n; base += 32) {
        const int r = base + (threadIdx.x & 31);
        const unsigned hit = __ballot_sync(0xffffffffu, r < n && pred(r));
        if (hit) return base + __ffs(hit) - 1;
    }
    return n;
}
template <typename P>
__device__ int warp_last(int n, P pred) {
    for (int base = (n - 1) & ~31; base >= 0; base -= 32) {
        const int r = base + (threadIdx.x & 31);
        const unsigned hit = __ballot_sync(0xffffffffu, r < n && pred(r));
        if (hit) return base + 31 - __clz(hit);
    }
    return -1;
}

// Running sums of x[0..n) left to right (the host's order) into cum[0..n), by lane 0.
template <typename X>
__device__ void running_sum(int n, X x, double *cum) {
    if ((threadIdx.x & 31) == 0) {
        double c = 0.0;
#pragma unroll 4
        for (int r = 0; r < n; r++) {
            c += x(r);
            cum[r] = c;
        }
    }
    __syncwarp();
}

__global__ void __launch_bounds__(THREADS)
sample_topk_kernel(const float *__restrict__ logits, int n, const KcudaSampleArgs *__restrict__ args,
                   const int32_t *__restrict__ pen_ids_in, Sel s, int *__restrict__ out) {
    __shared__ union {
        int32_t pen[PEN_SMEM];  // the penalty ids, until the keys are made
        u64 sort[2 * THREADS];
    } sh;
    __shared__ Merge m;
    __shared__ MergeTmp tmp;
    __shared__ u64 bound;
    __shared__ int flag, bc, ninf_first, n_sparse;
    __shared__ KcudaSampleArgs sa;
    if (threadIdx.x == 0) ninf_first = 0x7fffffff, n_sparse = 0;  // (stage_args' barrier orders this)
    const int32_t *pen_ids = stage_args(args, pen_ids_in, &sa, sh.pen);
    const KcudaSampleArgs &a = sa;  // (read where used: fewer registers held across the sort)
    const int k = a.top_k, t = threadIdx.x;
    if (!(k >= 1 && k < n && k <= TOPK_MAX)) {  // not this kernel's setting (every block sees it)
        if (blockIdx.x == 0) finish(out, -1, 0, 1);
        return;
    }
    // This block's list: its best min(k, live) ids in rank order, where live ids are those whose
    // penalised logit is neither NaN nor -inf. A -inf candidate has no top-p mass and no weight,
    // and sorts after every live one, so leaving it out of the k best changes no walk of the pick
    // (a shorter candidate list ends where the longer one's weights and masses become zero); only
    // when no logit at all is live does the host's first candidate (the lowest -inf id) matter,
    // and each block keeps that id in s.best. The screened lm_head leaves all but ~100 rows of the
    // vocabulary at -inf, so most blocks have no live id and a few have some: those rank them by
    // counting instead of sorting 1024 keys. Measured (H100, 2026-12-06, `test_sample_cuda time`):
    // the defaults on screened logits 13.8 us against 19.9 on dense ones (sorting every block); in
    // the decode chain (kernels/dev/run_timeline_device.sh) 20.6 -> 13.5 us a token.
    const int i = blockIdx.x * THREADS + t;
    const uint32_t key = i < n ? rank_key(penalised(logits, i, a, pen_ids)) : KEY_NAN;
    const bool live = key < KEY_NINF;
    const unsigned ninf_lanes = __ballot_sync(0xffffffffu, key == KEY_NINF);
    if ((t & 31) == 0 && ninf_lanes) atomicMin(&ninf_first, i + __ffs(ninf_lanes) - 1);
    const int n_live = __syncthreads_count(live);  // (and sh.pen is free for the ranking)
    const int len = n_live < k ? n_live : k;
    const u64 v = (u64)key << 32 | (unsigned)i;
    u64 *list = s.lists + (size_t)blockIdx.x * THREADS;
    if (n_live <= SPARSE_MAX) {
        if (live) sh.sort[atomicAdd(&n_sparse, 1)] = v;  // (any order: the ranks are unique)
        __syncthreads();
        if (live) {
            int r = 0;
            for (int j = 0; j < n_live; j++) r += sh.sort[j] < v;
            if (r < len) list[r] = v;
        }
    } else {
        const u64 sorted = block_sort_u64(live ? v : ~0ull, sh.sort);
        if (t < len) list[t] = sorted;
    }
    if (t == 0) s.len[blockIdx.x] = len, s.best[blockIdx.x] = (u64)(unsigned)ninf_first;
    if (!last_block(&s.ticket[1], &flag)) return;  // (its barriers: sh.sort is free again)

    int mm = topk_merge(s, (int)gridDim.x, k, m, tmp, sh.sort, &bound, &bc);
    if (mm == 0) {  // nothing live: the lowest -inf id, if any, is the host's first candidate
        const int first = block_min_int(t < (int)gridDim.x ? (int)__ldcg(&s.best[t]) : 0x7fffffff, tmp, &bc);
        if (first != 0x7fffffff) {
            if (t == 0) m.top[0] = (u64)KEY_NINF << 32 | (unsigned)first;
            mm = 1;
            __syncthreads();
        }
    }
    if (!(a.temperature > 0.0f)) {
        finish(out, host_argmax(logits, a, pen_ids_in, mm > 0 ? m.top[0] : ~0ull), 0, 0);
        return;
    }
    if (mm == 0) {  // all NaN: the host's argmax gives 0
        finish(out, 0, 0, 0);
        return;
    }
    const float max_logit = key_value((uint32_t)(m.top[0] >> 32));
    const int best_id = (int)(m.top[0] & 0xffffffffu);
    if (max_logit == -INFINITY) {  // the host's first candidate
        finish(out, best_id, 0, 0);
        return;
    }
    // The host's walks over its mm sorted candidates. The block computes each candidate's exp()s
    // and min-p's cut (the candidates are sorted, so its kept prefix is a count); lane 0 of warp
    // 0 adds the running sums left to right as the host does (z is the last one when no mass is
    // below e^-80), and the warp finds where each walk stops.
    const double mx = (double)max_logit;
    const float lt = t < mm ? key_value((uint32_t)(m.top[t] >> 32)) : 0.0f;
    if (t < mm) {
        m.pick.mass[t] = exp((double)lt - mx);
        m.pick.w[t] = (float)draw_weight((double)lt, mx, a.inv_temp);
    }
    const bool topp_on = a.top_p < 1.0f && mm > 1;
    const int any_cut = __syncthreads_or(topp_on && t < mm && !((double)lt - mx > -80.0));
    int nc = mm;
    if (a.min_p > 0.0f && mm > 1) {
        const float thresh = max_logit + a.log_min_p;
        const int keep = __syncthreads_count(t < mm && lt >= thresh);
        nc = keep > 1 ? keep : 1;
    }
    if (t >= 32) return;
    if (topp_on) {
        running_sum(any_cut ? nc : mm, [&](int r) { return m.pick.mass[r]; }, m.pick.cum_mass);
        double z = any_cut ? 0.0 : m.pick.cum_mass[mm - 1];
        if (any_cut)
            for (int r = 0; r < mm; r++)
                if ((double)key_value((uint32_t)(m.top[r] >> 32)) - mx > -80.0) z += m.pick.mass[r];
        if (nc > 1) {
            const double target = (double)(a.top_p > 0.0f ? a.top_p : 0.0f) * z;
            const int r = warp_first(nc, [&](int q) { return m.pick.cum_mass[q] >= target; });
            if (r < nc) nc = r + 1;
        }
    }
    running_sum(nc, [&](int r) { return (double)m.pick.w[r]; }, m.pick.cum_w);
    const double u = a.u01 * m.pick.cum_w[nc - 1];
    int pick = warp_first(nc, [&](int q) { return u < m.pick.cum_w[q]; });
    if (pick >= nc) {  // rounding left u at the top: the last candidate with any weight, else the first
        pick = warp_last(nc, [&](int q) { return q > 0 && m.pick.w[q] > 0.0f; });
        if (pick < 0) pick = 0;
    }
    if (t == 0) out[0] = (int)(m.top[pick] & 0xffffffffu), out[1] = 1, out[2] = 0;
}

// ---- kcuda_sample_sorted: a full sort (every other setting) ----------------------------------

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

// The argmax's and top-k's pieces first (tickets, per-block results, lists), then the sort's.
struct Scratch {
    Sel sel;
    uint32_t *k0, *k1;
    int32_t *i0, *i1;
    void *cub;
    size_t cub_bytes, total;
};

Scratch carve(void *base, int n) {
    Scratch s;
    char *p = (char *)base;
    const size_t a = align_up((size_t)n * 4), nb = (size_t)blocks_of(n);
    s.sel.ticket = (unsigned *)p, p += align_up(2 * sizeof(unsigned));
    s.sel.best = (u64 *)p, p += align_up(nb * sizeof(u64));
    s.sel.len = (int *)p, p += align_up(nb * sizeof(int));
    s.sel.lists = (u64 *)p, p += align_up(nb * THREADS * sizeof(u64));
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

// ---- decoding ahead (kcuda_draw_advance) --------------------------------------------------------
// xoshiro256** as infer/sampler.c draws it: the next 64 bits, and a uniform in [0, 1) from their
// top 53.
__device__ __forceinline__ u64 rotl64(u64 x, int k) { return (x << k) | (x >> (64 - k)); }
__device__ __forceinline__ u64 xoshiro_next(u64 (&s)[4]) {
    const u64 result = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

// One block of KCUDA_DRAW_WINDOW_MAX threads; thread 0 does the serial part (the host's order),
// then each thread takes one window slot: it keeps its token when no earlier slot holds it (the
// host's first occurrence), and writes it at its rank among the kept tokens (ascending; distinct
// by construction): O(window) per thread, ~1 us for 64 slots.
__global__ void __launch_bounds__(KCUDA_DRAW_WINDOW_MAX)
    draw_advance_kernel(const int *draw, int greedy_pick, KcudaDrawState *st, KcudaSampleArgs *args, int32_t *ids,
                        int *io, int n_vocab, int *ring) {
    __shared__ int32_t win[KCUDA_DRAW_WINDOW_MAX];
    __shared__ int keep[KCUDA_DRAW_WINDOW_MAX];
    __shared__ int s_go, s_n;
    __shared__ unsigned s_hash;
    const int t = threadIdx.x;
    if (t == 0) {
        const int tok = draw[0], used = greedy_pick ? 0 : draw[1], declined = greedy_pick ? 0 : draw[2];
        int *slot = ring + KCUDA_DRAW_SLOT * (st->step % KCUDA_DRAW_RING);
        slot[KCUDA_DRAW_TOKEN] = tok, slot[KCUDA_DRAW_USED] = used, slot[KCUDA_DRAW_DECLINED] = declined;
        slot[KCUDA_DRAW_SEQ] = st->step + 1;
        s_go = !declined;
        s_hash = 0;
        if (!declined) {
            u64 r[4] = {st->rng[0], st->rng[1], st->rng[2], st->rng[3]};
            if (used) xoshiro_next(r);
            st->rng[0] = r[0], st->rng[1] = r[1], st->rng[2] = r[2], st->rng[3] = r[3];
            // a peek (r is a copy); 0 for greedy, as the host packs it (cuda_sample_args)
            args->u01 = args->temperature > 0.0f ? (double)(xoshiro_next(r) >> 11) * 0x1.0p-53 : 0.0;
            const int cap = st->win_cap;
            if (cap > 0) {
                if (st->win_n < cap) {
                    st->window[(st->win_head + st->win_n) % cap] = tok;
                    st->win_n++;
                } else {
                    st->window[st->win_head] = tok;
                    st->win_head = (st->win_head + 1) % cap;
                }
            }
            const bool on = !(args->penalty == 1.0f || args->penalty <= 0.0f) && st->win_n > 0 && cap > 0;
            s_n = on ? st->win_n : 0;
            io[0] = tok;
            io[1] += 1;
        }
    }
    __syncthreads();
    if (!s_go) {
        if (t == 0) st->step++;
        return;
    }
    const int n = s_n;
    if (t < n) win[t] = st->window[(st->win_head + t) % st->win_cap];
    __syncthreads();
    int k = 0;
    if (t < n) {
        const int32_t v = win[t];
        k = v >= 0 && v < n_vocab;
        for (int j = 0; j < t && k; j++) k = win[j] != v;
    }
    keep[t] = k;
    __syncthreads();
    int rank = 0, total = 0;
    if (t < n) {
        const int32_t v = win[t];
        for (int j = 0; j < n; j++) {
            total += keep[j];
            rank += keep[j] && win[j] < v;
        }
        if (k) {
            ids[rank] = v;
            atomicAdd(&s_hash, kcuda_draw_id_hash(v, rank));  // a sum: the same whatever the order
        }
    }
    __syncthreads();
    if (t == 0) {
        args->n_pen = n > 0 ? total : 0;
        io[2] = kcuda_screen_m(args, n_vocab);
        int *slot = ring + KCUDA_DRAW_SLOT * (st->step % KCUDA_DRAW_RING);
        const unsigned long long ub = (unsigned long long)__double_as_longlong(args->u01);
        slot[KCUDA_DRAW_FP_N] = args->n_pen;
        slot[KCUDA_DRAW_FP_IDS] = (int)s_hash;
        slot[KCUDA_DRAW_FP_U_LO] = (int)(unsigned)ub;
        slot[KCUDA_DRAW_FP_U_HI] = (int)(unsigned)(ub >> 32);
        st->step++;
    }
}

}  // namespace

extern "C" size_t kcuda_sample_scratch(int n_vocab) {
    if (n_vocab <= 0) return 0;
    return carve(nullptr, n_vocab).total;
}

extern "C" int kcuda_sample_argmax(const float *d_logits, int n_vocab, const KcudaSampleArgs *d_args,
                                   const int32_t *d_pen_ids, void *d_scratch, size_t scratch_bytes, int *d_out,
                                   void *stream) {
    const int rc = check_args("kcuda_sample_argmax", d_logits, n_vocab, d_args, d_pen_ids, d_scratch, scratch_bytes, d_out);
    if (rc) return rc;
    return kcuda_launch(sample_argmax_kernel, dim3((unsigned)blocks_of(n_vocab)), dim3(THREADS), 0, stream, 0, d_logits,
                        n_vocab, d_args, d_pen_ids, carve(d_scratch, n_vocab).sel, d_out);
}

extern "C" int kcuda_sample_topk(const float *d_logits, int n_vocab, const KcudaSampleArgs *d_args,
                                 const int32_t *d_pen_ids, void *d_scratch, size_t scratch_bytes, int *d_out,
                                 void *stream) {
    const int rc = check_args("kcuda_sample_topk", d_logits, n_vocab, d_args, d_pen_ids, d_scratch, scratch_bytes, d_out);
    if (rc) return rc;
    return kcuda_launch(sample_topk_kernel, dim3((unsigned)blocks_of(n_vocab)), dim3(THREADS), 0, stream, 0, d_logits,
                        n_vocab, d_args, d_pen_ids, carve(d_scratch, n_vocab).sel, d_out);
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

extern "C" int kcuda_draw_advance(const int *d_draw, int greedy_pick, KcudaDrawState *d_state, KcudaSampleArgs *d_args,
                                  int32_t *d_pen_ids, int *d_io, int n_vocab, int *ring, void *stream) {
    if (!d_draw || !d_state || !d_args || !d_pen_ids || !d_io || !ring || n_vocab <= 0)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_draw_advance: a NULL pointer or vocab %d", n_vocab);
    return kcuda_launch(draw_advance_kernel, dim3(1), dim3(KCUDA_DRAW_WINDOW_MAX), 0, stream, 0, d_draw, greedy_pick,
                        d_state, d_args, d_pen_ids, d_io, n_vocab, ring);
}
