// Dense (f16 / bf16 / f32) kernels: the lm_head GEMV with the final RMSNorm fused in front and
// the greedy argmax fused behind, and the embedding lookup.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"

namespace {

enum { LM_THREADS = 256, LM_WARPS = LM_THREADS / 32 };

struct LmParams {
    const void *w;
    int n, k;
    const float *x, *norm_w;
    float eps;
    float *logits;
    const float *row_scale;  // int8 weights: logit = row_scale[r] * dot (NULL for float types)
    int *best;
    int *argmax;
};

template <typename T> struct Conv;
template <> struct Conv<__half> {
    static __device__ __forceinline__ float dot(uint4 v, const float *x, float acc) {
        const __half2 *h = (const __half2 *)&v;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __half22float2(h[i]);
            acc = fmaf(f.x, x[2 * i], acc);
            acc = fmaf(f.y, x[2 * i + 1], acc);
        }
        return acc;
    }
    enum { EPC = 8 };
};
template <> struct Conv<__nv_bfloat16> {
    static __device__ __forceinline__ float dot(uint4 v, const float *x, float acc) {
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            acc = fmaf(__uint_as_float(u[i] << 16), x[2 * i], acc);
            acc = fmaf(__uint_as_float(u[i] & 0xffff0000u), x[2 * i + 1], acc);
        }
        return acc;
    }
    enum { EPC = 8 };
};
// int8 weights (the optional int8 lm_head): 16 weights per 16-byte chunk, f32 activations, so
// the only error against the f16 head is the weight rounding; the row scale is applied once to
// the finished dot product (finish()). Why not (float)(int8_t)byte: integer-to-float conversion
// runs at a quarter of the FMA rate on sm_90 and would cost about as long as the weight stream
// itself; instead each byte, biased to b + 128, is placed by one byte permute into the mantissa
// of 2^23 (0x4B0000xx = 2^23 + b + 128), and one exact subtraction gives b.
template <> struct Conv<int8_t> {
    static __device__ __forceinline__ float dot(uint4 v, const float *x, float acc) {
        const uint32_t u[4] = {v.x ^ 0x80808080u, v.y ^ 0x80808080u, v.z ^ 0x80808080u, v.w ^ 0x80808080u};
#pragma unroll
        for (int i = 0; i < 4; i++) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float f = __uint_as_float(__byte_perm(u[i], 0x4B000000u, 0x7540u + j)) - 8388736.0f;
                acc = fmaf(f, x[4 * i + j], acc);
            }
        }
        return acc;
    }
    enum { EPC = 16 };
};
template <> struct Conv<float> {
    static __device__ __forceinline__ float dot(uint4 v, const float *x, float acc) {
        acc = fmaf(__uint_as_float(v.x), x[0], acc);
        acc = fmaf(__uint_as_float(v.y), x[1], acc);
        acc = fmaf(__uint_as_float(v.z), x[2], acc);
        acc = fmaf(__uint_as_float(v.w), x[3], acc);
        return acc;
    }
    enum { EPC = 4 };
};

__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

// A persistent grid; each warp takes R rows at a time (a group) and lane l reads the group's
// 16-byte chunks l, l+32, ... (the rows' chunks end to end), up to MAXL of them in flight before
// the first use, while the next group's are loaded. R = 2 for int8 rows: one int8 row of 2560 is
// half the bytes of an f16 row, and with one row per warp the int8 head read only 1628 GB/s
// against the f16 head's 2914 on an H100 (bench, 2026-12-06): the bytes in flight per warp, not
// the arithmetic, set the pace. Rows longer than 32 * MAXL chunks (R = 1 only) are read in
// pieces.
template <typename T, int MAXL, int R>
__global__ void __launch_bounds__(LM_THREADS, R > 1 ? 2 : 1) lm_head_kernel1(LmParams p) {
    extern __shared__ float xs[];
    __shared__ float red[LM_WARPS];
    __shared__ float bv_sh[LM_WARPS];
    __shared__ int bi_sh[LM_WARPS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int EPC = Conv<T>::EPC;
    const int C = p.k / EPC;      // chunks per row
    const int G = R * C;          // chunks per group
    const uint4 *W = (const uint4 *)p.w;
    int grp = blockIdx.x * LM_WARPS + warp;  // rows grp * R .. grp * R + R - 1
    const int stride = gridDim.x * LM_WARPS;
    const int n_grp = R == 1 ? p.n : (p.n + R - 1) / R;
    const bool whole = G <= 32 * MAXL;     // the group fits in one set of loads

    // chunk c of group g: row g * R + c / C, chunk c % C of that row (rows are contiguous, so
    // that is chunk g * G + c of the matrix, when the row exists); groups of R > 1 rows are
    // always whole (lm_dispatch)
    auto issue_into = [&](uint4 (&dst)[MAXL], int g, int base) {
#pragma unroll
        for (int i = 0; i < MAXL; i++) {
            const int c = base + lane + 32 * i;
            bool in;
            if constexpr (R == 1) in = g < p.n && c < C;
            else in = c < G && g * R + c / C < p.n;
            dst[i] = in ? ld_stream(W + (size_t)g * G + c) : make_uint4(0, 0, 0, 0);
        }
    };
    uint4 wv[MAXL];
    issue_into(wv, grp, 0);
    pdl_trigger();
    pdl_wait();

    float inv = 1.0f;
    if (p.norm_w) {
        float ss = 0.0f;
        for (int i = threadIdx.x; i < p.k; i += LM_THREADS) ss += p.x[i] * p.x[i];
        ss = block_sum<LM_THREADS>(ss, red);
        inv = 1.0f / sqrtf(ss / (float)p.k + p.eps);
    }
    for (int i = threadIdx.x; i < p.k; i += LM_THREADS)
        xs[i] = p.norm_w ? p.norm_w[i] * (p.x[i] * inv) : p.x[i];
    __syncthreads();

    float best_v = -INFINITY;
    int best_i = 0x7fffffff;
    auto finish = [&](float acc, int r) {
        acc = warp_sum(acc);
        if (R > 1 && r >= p.n) return;  // the phantom row of a last, half-full group
        if (p.row_scale) acc *= p.row_scale[r];
        if (lane == 0) p.logits[r] = acc;
        if (better(acc, r, best_v, best_i)) {
            best_v = acc;
            best_i = r;
        }
    };
    if (whole) {
        // Two register sets: the next group's loads are in flight while this group is reduced.
        uint4 wn[MAXL];
        auto dot_group = [&](const uint4 (&src)[MAXL], int g) {
            float acc[R];
#pragma unroll
            for (int j = 0; j < R; j++) acc[j] = 0.0f;
#pragma unroll
            for (int i = 0; i < MAXL; i++) {
                const int c = lane + 32 * i;
#pragma unroll
                for (int j = 0; j < R; j++)
                    if (c >= j * C && c < (j + 1) * C) acc[j] = Conv<T>::dot(src[i], xs + (c - j * C) * EPC, acc[j]);
            }
#pragma unroll
            for (int j = 0; j < R; j++) finish(acc[j], g * R + j);
        };
        while (grp < n_grp) {
            issue_into(wn, grp + stride, 0);
            dot_group(wv, grp);
            grp += stride;
            if (grp >= n_grp) break;
            issue_into(wv, grp + stride, 0);
            dot_group(wn, grp);
            grp += stride;
        }
    } else {
        for (int row = grp; row < p.n; row += stride) {  // R == 1 here (lm_dispatch)
            float acc = 0.0f;
#pragma unroll
            for (int i = 0; i < MAXL; i++) {
                const int c = lane + 32 * i;
                if (c < C) acc = Conv<T>::dot(wv[i], xs + c * EPC, acc);
            }
            for (int base = 32 * MAXL; base < C; base += 32 * MAXL) {
                issue_into(wv, row, base);
#pragma unroll
                for (int i = 0; i < MAXL; i++) {
                    const int c = base + lane + 32 * i;
                    if (c < C) acc = Conv<T>::dot(wv[i], xs + c * EPC, acc);
                }
            }
            const int next = row + stride;
            if (next < p.n) issue_into(wv, next, 0);
            finish(acc, row);
        }
    }
    if (!p.best) return;
    if (lane == 0) {
        bv_sh[warp] = best_v;
        bi_sh[warp] = best_i;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float v = bv_sh[0];
        int i = bi_sh[0];
        for (int w = 1; w < LM_WARPS; w++)
            if (better(bv_sh[w], bi_sh[w], v, i)) {
                v = bv_sh[w];
                i = bi_sh[w];
            }
        p.best[2 * blockIdx.x] = __float_as_int(v);
        p.best[2 * blockIdx.x + 1] = i;
    }
}

__global__ void __launch_bounds__(1024) argmax_final_kernel(const int *best, int nblocks, int *out) {
    __shared__ float vs[32];
    __shared__ int is[32];
    pdl_trigger();
    pdl_wait();
    float v = -INFINITY;
    int idx = 0x7fffffff;
    for (int b = threadIdx.x; b < nblocks; b += blockDim.x) {
        const float bv = __int_as_float(best[2 * b]);
        const int bi = best[2 * b + 1];
        if (better(bv, bi, v, idx)) {
            v = bv;
            idx = bi;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (better(ov, oi, v, idx)) {
            v = ov;
            idx = oi;
        }
    }
    if ((threadIdx.x & 31) == 0) {
        vs[threadIdx.x >> 5] = v;
        is[threadIdx.x >> 5] = idx;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        v = vs[0];
        idx = is[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (better(vs[w], is[w], v, idx)) {
                v = vs[w];
                idx = is[w];
            }
        out[0] = idx == 0x7fffffff ? 0 : idx;
    }
}

template <typename T>
__global__ void __launch_bounds__(256) embed_kernel(const T *e, int vocab, int dim, const int32_t *tok,
                                                    float *x, int *err) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x;
    const int id = tok[t];
    const bool ok = id >= 0 && id < vocab;
    if (!ok && threadIdx.x == 0 && err) *err = 1;
#pragma unroll 8
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = 0.0f;
        if (ok) {
            const T w = e[(size_t)id * dim + i];
            if constexpr (sizeof(T) == 4) v = (float)w;
            else v = (float)w;
        }
        x[(size_t)t * dim + i] = v;
    }
}

// The persistent grid of one lm_head kernel: as many blocks as fit on the SMs at once (with
// the shared memory of the first call's k); 0 when the device cannot be asked.
template <typename T, int MAXL, int R>
int lm_grid(size_t smem) {
    int per_sm = 0;
    const int sms = kcuda_sm_count();
    if (!sms ||
        cudaFuncSetAttribute(lm_head_kernel1<T, MAXL, R>, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) !=
            cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, lm_head_kernel1<T, MAXL, R>, LM_THREADS,
                                                      64 * 1024 > smem ? smem : 64 * 1024) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return sms * (per_sm < 1 ? 1 : per_sm);
}

template <typename T, int MAXL, int R>
int lm_launch(const LmParams &lp, void *stream, int pdl, int *nblocks_out) {
    const size_t smem = (size_t)lp.k * sizeof(float);
    static const int grid = lm_grid<T, MAXL, R>(smem);  // once per kernel (thread-safe static initialization)
    if (!grid) return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_lm_head: cannot size the grid (device query failed)");
    int g = grid;
    const int need = ((lp.n + R - 1) / R + LM_WARPS - 1) / LM_WARPS;
    if (g > need) g = need;
    *nblocks_out = g;
    return kcuda_launch(lm_head_kernel1<T, MAXL, R>, dim3((unsigned)g), dim3(LM_THREADS), smem, stream, pdl, lp);
}

// Chunks in flight per lane: MAXL, for R rows per warp. Int8 rows take two per warp when both
// fit one set of loads (see lm_head_kernel1).
template <typename T>
int lm_dispatch(const LmParams &lp, void *stream, int pdl, int *nb) {
    const int per_lane = (lp.k / Conv<T>::EPC + 31) / 32;
    if constexpr (sizeof(T) == 1) {
        const int per_lane2 = (2 * (lp.k / Conv<T>::EPC) + 31) / 32;
        if (per_lane2 <= 8) return lm_launch<T, 8, 2>(lp, stream, pdl, nb);
        if (per_lane2 <= 10) return lm_launch<T, 10, 2>(lp, stream, pdl, nb);  // 12 would spill
    }
    if (per_lane <= 4) return lm_launch<T, 4, 1>(lp, stream, pdl, nb);
    if (per_lane <= 8) return lm_launch<T, 8, 1>(lp, stream, pdl, nb);
    if (per_lane <= 10) return lm_launch<T, 10, 1>(lp, stream, pdl, nb);
    return lm_launch<T, 12, 1>(lp, stream, pdl, nb);
}

}  // namespace

extern "C" int kcuda_lm_head_scratch(int n) {
    const int sms = kcuda_sm_count();
    (void)n;
    return 2 * 64 * (sms ? sms : 256);  // at most 64 resident blocks per SM
}

// Shared by the float and int8 heads: type KCUDA_F32/F16/BF16 with row_scale NULL, or int8
// rows (type ignored) with row_scale.
static int lm_head_common(KcudaDtype type, const void *d_w, const float *row_scale, int n, int k,
                          const float *d_x, const float *d_norm_w, float eps, float *d_logits,
                          int *d_best, int *d_argmax, int pdl, void *stream, const char *fn) {
    if (!d_w || !d_x || !d_logits || (d_best && !d_argmax))
        return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL pointer", fn);
    if (!row_scale && type != KCUDA_F32 && type != KCUDA_F16 && type != KCUDA_BF16)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: bad dtype %d", fn, (int)type);
    const int esize = row_scale ? 1 : type == KCUDA_F32 ? 4 : 2;
    if (n <= 0 || k <= 0 || ((size_t)k * esize) % 16 || k > 16384)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: shape %d x %d unsupported (row must be a multiple of 16 bytes, k <= 16384)", fn, n, k);
    if ((uintptr_t)d_w % 16) return kcuda_fail(KCUDA_ERR_ARG, "%s: weights not 16-byte aligned", fn);
    LmParams lp = {d_w, n, k, d_x, d_norm_w, eps, d_logits, row_scale, d_best, d_argmax};
    int nb = 0, rc;
    if (row_scale) rc = lm_dispatch<int8_t>(lp, stream, pdl, &nb);
    else if (type == KCUDA_F16) rc = lm_dispatch<__half>(lp, stream, pdl, &nb);
    else if (type == KCUDA_BF16) rc = lm_dispatch<__nv_bfloat16>(lp, stream, pdl, &nb);
    else rc = lm_dispatch<float>(lp, stream, pdl, &nb);
    if (rc || !d_best) return rc;
    if (nb * 2 > kcuda_lm_head_scratch(n))
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: scratch too small for %d blocks", fn, nb);
    return kcuda_launch(argmax_final_kernel, dim3(1), dim3(1024), 0, stream, pdl, (const int *)d_best, nb, d_argmax);
}

extern "C" int kcuda_lm_head(KcudaDtype type, const void *d_w, int n, int k, const float *d_x,
                             const float *d_norm_w, float eps, float *d_logits, int *d_best,
                             int *d_argmax, int pdl, void *stream) {
    return lm_head_common(type, d_w, NULL, n, k, d_x, d_norm_w, eps, d_logits, d_best, d_argmax, pdl, stream,
                          "kcuda_lm_head");
}

extern "C" int kcuda_lm_head_i8(const int8_t *d_q, const float *d_scale, int n, int k, const float *d_x,
                                const float *d_norm_w, float eps, float *d_logits, int *d_best,
                                int *d_argmax, int pdl, void *stream) {
    if (!d_scale) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_lm_head_i8: NULL row scales");
    return lm_head_common(KCUDA_F32, d_q, d_scale, n, k, d_x, d_norm_w, eps, d_logits, d_best, d_argmax, pdl, stream,
                          "kcuda_lm_head_i8");
}

namespace {
template <typename T> __device__ __forceinline__ float to_f32(T v) { return (float)v; }
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

// One block per row: absmax, scale = amax / 127, q = rint(w / scale) (IEEE division and
// round-half-even, written out so that the host reference lm_head_quant_i8_ref gives the same
// bytes).
template <typename T>
__global__ void __launch_bounds__(256) quant_rows_i8_kernel(const T *w, int k, int8_t *q, float *scale) {
    __shared__ float red[8];
    const size_t r = blockIdx.x;
    const T *row = w + r * (size_t)k;
    float m = 0.0f;
    for (int i = threadIdx.x; i < k; i += 256) m = fmaxf(m, fabsf(to_f32(row[i])));
    m = block_max<256>(m, red);
    const float s = __fdiv_rn(m, 127.0f);
    if (threadIdx.x == 0) scale[r] = s;
    for (int i = threadIdx.x; i < k; i += 256) {
        float v = s > 0.0f ? rintf(__fdiv_rn(to_f32(row[i]), s)) : 0.0f;
        v = fminf(fmaxf(v, -127.0f), 127.0f);
        q[r * (size_t)k + i] = (int8_t)(int)v;
    }
}
}  // namespace

extern "C" int kcuda_quant_rows_i8(KcudaDtype type, const void *d_w, int n, int k, int8_t *d_q, float *d_scale,
                                   void *stream) {
    if (!d_w || !d_q || !d_scale) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_quant_rows_i8: NULL pointer");
    if (n <= 0 || k <= 0) return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_quant_rows_i8: shape %d x %d", n, k);
    switch (type) {
    case KCUDA_F16: return kcuda_launch(quant_rows_i8_kernel<__half>, dim3((unsigned)n), dim3(256), 0, stream, 0, (const __half *)d_w, k, d_q, d_scale);
    case KCUDA_BF16: return kcuda_launch(quant_rows_i8_kernel<__nv_bfloat16>, dim3((unsigned)n), dim3(256), 0, stream, 0, (const __nv_bfloat16 *)d_w, k, d_q, d_scale);
    case KCUDA_F32: return kcuda_launch(quant_rows_i8_kernel<float>, dim3((unsigned)n), dim3(256), 0, stream, 0, (const float *)d_w, k, d_q, d_scale);
    default: return kcuda_fail(KCUDA_ERR_ARG, "kcuda_quant_rows_i8: bad dtype %d", (int)type);
    }
}

extern "C" int kcuda_embed(KcudaDtype type, const void *d_e, int vocab, int dim,
                           const int32_t *d_tok, int T, float *d_x, int *d_err, int pdl,
                           void *stream) {
    if (!d_e || !d_tok || !d_x) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_embed: NULL pointer");
    if (vocab <= 0 || dim <= 0 || T <= 0)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_embed: vocab %d, dim %d, T %d", vocab, dim, T);
    switch (type) {
    case KCUDA_F16: return kcuda_launch(embed_kernel<__half>, dim3((unsigned)T), dim3(256), 0, stream, pdl, (const __half *)d_e, vocab, dim, d_tok, d_x, d_err);
    case KCUDA_BF16: return kcuda_launch(embed_kernel<__nv_bfloat16>, dim3((unsigned)T), dim3(256), 0, stream, pdl, (const __nv_bfloat16 *)d_e, vocab, dim, d_tok, d_x, d_err);
    case KCUDA_F32: return kcuda_launch(embed_kernel<float>, dim3((unsigned)T), dim3(256), 0, stream, pdl, (const float *)d_e, vocab, dim, d_tok, d_x, d_err);
    default: return kcuda_fail(KCUDA_ERR_ARG, "kcuda_embed: bad dtype %d", (int)type);
    }
}
