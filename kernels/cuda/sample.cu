// Token sampling on the device: the same draw as the host sampler (infer/sampler.c) from the
// same logits, so that one int per token crosses to the host.
//
// The host chain is: repetition penalty -> top-k -> min-p -> top-p -> temperature -> draw, every
// filter keeping a prefix of the candidates in rank order (logit descending, id ascending). So
// the device ranks the whole vocabulary once and then walks prefixes:
//   1. keys: each logit, penalised when its id is in the window's (sorted) id list, becomes a
//      32-bit key whose ascending order is the rank order (NaN last); ids ride along;
//   2. a stable radix sort of (key, id) pairs (cub): ties keep ascending ids, as on the host;
//   3. one block walks the kept prefix with the host's formulas: the same float threshold for
//      min-p (log(min_p) computed on the host), double sums of exp() for top-p and the weights,
//      the host's uniform, the first candidate whose running weight exceeds it, in the order the
//      host holds its candidates (rank order, or vocabulary order when nothing sorted them).
// Every comparison and every per-token weight has the host's bits; only the double sums are
// added in another order (tree instead of left to right), which moves them by a few units in
// the last place (~1e-16 relative). A draw can therefore differ only when the uniform lands
// within ~1e-16 of a boundary between two tokens: about once in 1e15 draws. One exception, by
// design: a top-p nucleus wider than 1024 tokens without top-k (see the pick kernel).
// Why a full sort and not a top-k selection: top-p without top-k may need the whole ranked
// vocabulary (a flat distribution), and one sort of 128k pairs is a few microseconds on an H100
// (measured in `bench`), small next to a ~1 ms decode step.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"

namespace {

enum { KEY_THREADS = 256, PICK_THREADS = 1024 };
constexpr uint32_t KEY_NAN = 0xffffffffu;

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

__global__ void __launch_bounds__(KEY_THREADS)
sample_keys_kernel(const float *__restrict__ logits, int n, const KcudaSampleArgs *__restrict__ args,
                   const int32_t *__restrict__ pen_ids, uint32_t *__restrict__ keys, int32_t *__restrict__ ids) {
    const int i = blockIdx.x * KEY_THREADS + threadIdx.x;
    if (i >= n) return;
    float v = logits[i];
    const int np = args->n_pen;
    if (np > 0) {
        int lo = 0, hi = np;  // first index with pen_ids[idx] >= i
        while (lo < hi) {
            const int mid = (lo + hi) >> 1;
            if (pen_ids[mid] < i) lo = mid + 1;
            else hi = mid;
        }
        if (lo < np && pen_ids[lo] == i) {
            const float pen = args->penalty;
            v = v > 0.0f ? v / pen : v * pen;
        }
    }
    keys[i] = rank_key(v);
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

using Reduce = cub::BlockReduce<double, PICK_THREADS>;
using Scan = cub::BlockScan<double, PICK_THREADS>;

// Sum over ranks [0, n) of f(rank), as a block; every thread gets the total.
template <typename F>
__device__ double block_total(int n, F f, typename Reduce::TempStorage &tmp, double *bcast) {
    double part = 0.0;
    for (int r = threadIdx.x; r < n; r += PICK_THREADS) part += f(r);
    const double t = Reduce(tmp).Sum(part);
    if (threadIdx.x == 0) *bcast = t;
    __syncthreads();
    const double out = *bcast;
    __syncthreads();
    return out;
}

// The first rank r < n whose running sum of f(0..r) satisfies hit(sum) (n if none).
template <typename F, typename H>
__device__ int block_first_prefix(int n, F f, H hit, typename Scan::TempStorage &tmp, double *carry, int *found) {
    if (threadIdx.x == 0) *carry = 0.0, *found = n;
    __syncthreads();
    for (int base = 0; base < n; base += PICK_THREADS) {
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
    return *found;
}

__global__ void __launch_bounds__(PICK_THREADS)
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
    // out[0]: the token; out[1]: 1 when the uniform was used (the host then consumes it)
    if (n_valid == 0) {  // all NaN: the host's argmax gives 0
        if (threadIdx.x == 0) out[0] = 0, out[1] = 0;
        return;
    }
    if (!(a.temperature > 0.0f)) {
        if (threadIdx.x == 0) out[0] = ids[0], out[1] = 0;
        return;
    }
    const bool top_k = a.top_k > 0 && a.top_k < n_vocab;
    int n = top_k && a.top_k < n_valid ? a.top_k : n_valid;
    const float max_logit = key_value(keys[0]);
    if (max_logit == -INFINITY) {
        if (threadIdx.x == 0) out[0] = ids[0], out[1] = 0;
        return;
    }
    const double mx = (double)max_logit;
    auto lg = [&](int r) { return (double)key_value(keys[r]); };
    double z = 0.0;
    if (a.top_p < 1.0f && n > 1)
        z = block_total(n, [&](int r) { const double d = lg(r) - mx; return d > -80.0 ? exp(d) : 0.0; }, tmp.red, &carry);
    if (a.min_p > 0.0f && n > 1) {
        // keep the prefix with logit >= max + log(min_p) (at least the best token)
        const float thresh = max_logit + a.log_min_p;
        const int keep = first_above(keys, n, rank_key(thresh));
        n = keep > 1 ? keep : 1;
    }
    // The host draws over its candidates in the order it holds them: rank order once top-k or
    // top-p has sorted them, else vocabulary order (min-p only filters in place). Past the first
    // 1024 ranks of a top-p nucleus its order is that of a quickselect, which no parallel walk
    // reproduces: there the device walks rank order, the same distribution (tests say so).
    bool ranked = top_k;
    if (a.top_p < 1.0f && n > 1) {
        const double target = (double)(a.top_p > 0.0f ? a.top_p : 0.0f) * z;
        const int i = block_first_prefix(n, [&](int r) { return exp(lg(r) - mx); },
                                         [&](double cum) { return cum >= target; }, tmp.scan, &carry, &found);
        if (i < n) n = i + 1;
        ranked = true;
    }
    const double inv_t = a.inv_temp;
    auto weight_of = [&](double v) {
        const double d = (v - mx) * inv_t;
        return d > -80.0 ? (double)(float)exp(d) : 0.0;
    };
    // candidates: ranks [0, n), or in vocabulary order the ids whose key is at most the last kept
    // one's (the same set: keys are ordered by logit, and the kept set is a rank prefix)
    const uint32_t last_key = keys[n - 1];
    const int m = ranked ? n : n_vocab;
    auto weight = [&](int i) {
        if (ranked) return weight_of(lg(i));
        const uint32_t k = id_keys[i];
        return k <= last_key ? weight_of((double)key_value(k)) : 0.0;
    };
    const double z2 = block_total(m, weight, tmp.red, &carry);
    const double u = a.u01 * z2;
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
    }
}

struct Scratch {
    uint32_t *k0, *k1;
    int32_t *i0, *i1;
    void *cub;
    size_t cub_bytes;
};

size_t align_up(size_t x) { return (x + 255) / 256 * 256; }

size_t cub_bytes(int n) {
    size_t b = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, b, (const uint32_t *)nullptr, (uint32_t *)nullptr,
                                    (const int32_t *)nullptr, (int32_t *)nullptr, n);
    return b;
}

Scratch carve(void *base, int n) {
    Scratch s;
    char *p = (char *)base;
    const size_t a = align_up((size_t)n * 4);
    s.k0 = (uint32_t *)p, p += a;
    s.k1 = (uint32_t *)p, p += a;
    s.i0 = (int32_t *)p, p += a;
    s.i1 = (int32_t *)p, p += a;
    s.cub = p;
    s.cub_bytes = cub_bytes(n);
    return s;
}

}  // namespace

extern "C" size_t kcuda_sample_scratch(int n_vocab) {
    if (n_vocab <= 0) return 0;
    return 4 * align_up((size_t)n_vocab * 4) + align_up(cub_bytes(n_vocab));
}

extern "C" int kcuda_sample(const float *d_logits, int n_vocab, const KcudaSampleArgs *d_args,
                            const int32_t *d_pen_ids, void *d_scratch, size_t scratch_bytes, int *d_out,
                            void *stream) {
    if (!d_logits || !d_args || !d_pen_ids || !d_scratch || !d_out)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_sample: NULL pointer");
    if (n_vocab <= 0 || scratch_bytes < kcuda_sample_scratch(n_vocab))
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_sample: vocab %d with %zu scratch bytes (needs %zu)", n_vocab,
                          scratch_bytes, kcuda_sample_scratch(n_vocab));
    Scratch s = carve(d_scratch, n_vocab);
    const cudaStream_t st = (cudaStream_t)stream;
    int rc = kcuda_launch(sample_keys_kernel, dim3((unsigned)((n_vocab + KEY_THREADS - 1) / KEY_THREADS)),
                          dim3(KEY_THREADS), 0, stream, 0, d_logits, n_vocab, d_args, d_pen_ids, s.k0, s.i0);
    if (rc) return rc;
    size_t cb = s.cub_bytes;
    KCUDA_TRY(cub::DeviceRadixSort::SortPairs(s.cub, cb, s.k0, s.k1, s.i0, s.i1, n_vocab, 0, 32, st));
    return kcuda_launch(sample_pick_kernel, dim3(1), dim3(PICK_THREADS), 0, stream, 0, (const uint32_t *)s.k1,
                        (const int32_t *)s.i1, (const uint32_t *)s.k0, n_vocab, d_args, d_out);
}
