// Dense (f16 / bf16 / f32) kernels: the lm_head GEMV with the final RMSNorm fused in front and
// the greedy argmax fused behind (the int8 head's kernel is in lm_head.cuh), the int8
// quantizer of the optional int8 head, and the embedding lookup.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/lm_head.cuh"

namespace {

enum { LM_THREADS = 256, LM_WARPS = LM_THREADS / 32 };

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

// One warp per row, a persistent grid; lane l reads 16-byte chunks l, l+32, ... of the row,
// up to MAXL of them in flight before the first use.
template <typename T, int MAXL>
__global__ void __launch_bounds__(LM_THREADS) lm_head_kernel1(LmParams p) {
    extern __shared__ float xs[];
    __shared__ float red[LM_WARPS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int EPC = Conv<T>::EPC;
    const int C = p.k / EPC;
    const size_t row_chunks = (size_t)C;
    const uint4 *W = (const uint4 *)p.w;
    int row = blockIdx.x * LM_WARPS + warp;
    const int stride = gridDim.x * LM_WARPS;

    uint4 wv[MAXL];
    auto issue = [&](int r, int base) {
#pragma unroll
        for (int i = 0; i < MAXL; i++) {
            const int c = base + lane + 32 * i;
            wv[i] = (r < p.n && c < C) ? ld_stream(W + (size_t)r * row_chunks + c) : make_uint4(0, 0, 0, 0);
        }
    };
    issue(row, 0);
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
        if (lane == 0) p.logits[r] = acc;
        if (lm_better(acc, r, best_v, best_i)) {
            best_v = acc;
            best_i = r;
        }
    };
    if (C <= 32 * MAXL) {
        // Two register sets: the next row's loads are in flight while this row is reduced.
        uint4 wn[MAXL];
        auto issue_into = [&](uint4 (&dst)[MAXL], int r) {
#pragma unroll
            for (int i = 0; i < MAXL; i++) {
                const int c = lane + 32 * i;
                dst[i] = (r < p.n && c < C) ? ld_stream(W + (size_t)r * row_chunks + c) : make_uint4(0, 0, 0, 0);
            }
        };
        auto dot_row = [&](const uint4 (&src)[MAXL]) {
            float acc = 0.0f;
#pragma unroll
            for (int i = 0; i < MAXL; i++) {
                const int c = lane + 32 * i;
                if (c < C) acc = Conv<T>::dot(src[i], xs + c * EPC, acc);
            }
            return acc;
        };
        while (row < p.n) {
            issue_into(wn, row + stride);
            finish(dot_row(wv), row);
            row += stride;
            if (row >= p.n) break;
            issue_into(wv, row + stride);
            finish(dot_row(wn), row);
            row += stride;
        }
    } else {
        for (; row < p.n; row += stride) {
            float acc = 0.0f;
#pragma unroll
            for (int i = 0; i < MAXL; i++) {
                const int c = lane + 32 * i;
                if (c < C) acc = Conv<T>::dot(wv[i], xs + c * EPC, acc);
            }
            for (int base = 32 * MAXL; base < C; base += 32 * MAXL) {
                issue(row, base);
#pragma unroll
                for (int i = 0; i < MAXL; i++) {
                    const int c = base + lane + 32 * i;
                    if (c < C) acc = Conv<T>::dot(wv[i], xs + c * EPC, acc);
                }
            }
            const int next = row + stride;
            if (next < p.n) issue(next, 0);
            finish(acc, row);
        }
    }
    if (p.best) lm_block_best<LM_WARPS>(best_v, best_i, p.best);
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
int lm_grid(const void *kernel, int threads, size_t smem, int smem_max) {
    int per_sm = 0;
    const int sms = kcuda_sm_count();
    if (!sms || cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_max) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads,
                                                      (size_t)smem_max > smem ? smem : (size_t)smem_max) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return sms * (per_sm < 1 ? 1 : per_sm);
}

template <typename T, int MAXL>
int lm_launch(const LmParams &lp, void *stream, int pdl, int *nblocks_out) {
    const size_t smem = (size_t)lp.k * sizeof(float);
    // once per kernel (thread-safe static initialization)
    static const int grid = lm_grid((const void *)lm_head_kernel1<T, MAXL>, LM_THREADS, smem, 64 * 1024);
    if (!grid) return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_lm_head: cannot size the grid (device query failed)");
    int g = grid;
    const int need = (lp.n + LM_WARPS - 1) / LM_WARPS;
    if (g > need) g = need;
    *nblocks_out = g;
    return kcuda_launch(lm_head_kernel1<T, MAXL>, dim3((unsigned)g), dim3(LM_THREADS), smem, stream, pdl, lp);
}

template <typename T>
int lm_dispatch(const LmParams &lp, void *stream, int pdl, int *nb) {
    const int per_lane = (lp.k / Conv<T>::EPC + 31) / 32;
    if (per_lane <= 4) return lm_launch<T, 4>(lp, stream, pdl, nb);
    if (per_lane <= 8) return lm_launch<T, 8>(lp, stream, pdl, nb);
    if (per_lane <= 10) return lm_launch<T, 10>(lp, stream, pdl, nb);
    return lm_launch<T, 12>(lp, stream, pdl, nb);
}

// The int8 head (lm_head.cuh), batches of LM8_U steps (64 bytes of 16 rows each) in flight per
// warp; the lab (kernels/dev/lm_head.cu) times U = 2, 4 and 5.
enum { LM8_U = 4 };
int lm_launch_i8(const LmParams &lp, void *stream, int pdl, int *nblocks_out) {
    const size_t smem = lm8_smem(lp.k);
    static const int grid = lm_grid((const void *)lm_head_i8_kernel<LM8_U>, LM8_THREADS, smem, (int)lm8_smem(16384));
    if (!grid) return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_lm_head_i8: cannot size the grid (device query failed)");
    const int tiles = (lp.n + 15) / 16, need = (tiles + LM8_WARPS - 1) / LM8_WARPS;
    *nblocks_out = grid < need ? grid : need;
    return kcuda_launch(lm_head_i8_kernel<LM8_U>, dim3((unsigned)*nblocks_out), dim3(LM8_THREADS), smem, stream, pdl,
                        lp);
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
    if (row_scale) rc = lm_launch_i8(lp, stream, pdl, &nb);
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
