// Dense (f16 / bf16 / f32, and int8 for the optional int8 lm_head) kernels: the lm_head
// launcher (the kernel, with the final RMSNorm fused in front and the greedy argmax behind, is in
// lm_head.cuh), the int8 quantizer of the optional int8 head, and the embedding lookup.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/lm_head.cuh"

namespace {

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

// The activation layout of lm_head_kernel1 (lm_head.cuh): piece-major (SPREAD) for int8, where
// the chunk-major layout's 4-way bank conflict bound the kernel (H100, 2026-12-06, 128256 x 2560
// with the argmax: 198.4 us chunk-major, 121.6 spread, read-only floor 112.1; dev_lm_head). The
// float types keep the chunk-major layout (2-way conflict for f16/bf16, none for f32), which
// streams at 94% of that floor (f16 237.4 us for 656 MB); dev_lm_head's "f16 v2" measures f16
// with SPREAD, not yet run on a device.
template <typename T> constexpr bool lm_spread() { return Conv<T>::EPC == 16; }

template <typename T, int MAXL, bool SCREEN = false>
int lm_launch(const LmParams &lp, void *stream, int pdl, int *nblocks_out) {
    const size_t smem = (size_t)lp.k * sizeof(float);
    // once per kernel (thread-safe static initialization)
    static const int grid = lm_grid((const void *)lm_head_kernel1<T, MAXL, lm_spread<T>(), SCREEN>, LM_THREADS, smem, 64 * 1024);
    if (!grid) return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_lm_head: cannot size the grid (device query failed)");
    int g = grid;
    const int need = (lp.n + LM_WARPS - 1) / LM_WARPS;
    if (g > need) g = need;
    *nblocks_out = g;
    return kcuda_launch(lm_head_kernel1<T, MAXL, lm_spread<T>(), SCREEN>, dim3((unsigned)g), dim3(LM_THREADS), smem, stream, pdl, lp);
}

template <typename T, bool SCREEN = false>
int lm_dispatch(const LmParams &lp, void *stream, int pdl, int *nb) {
    const int per_lane = (lp.k / Conv<T>::EPC + 31) / 32;
    if (per_lane <= 4) return lm_launch<T, 4, SCREEN>(lp, stream, pdl, nb);
    if (per_lane <= 8) return lm_launch<T, 8, SCREEN>(lp, stream, pdl, nb);
    if (per_lane <= 10) return lm_launch<T, 10, SCREEN>(lp, stream, pdl, nb);
    return lm_launch<T, 12, SCREEN>(lp, stream, pdl, nb);
}

}  // namespace

extern "C" int kcuda_screen_warps_max(void) {
    const int sms = kcuda_sm_count();
    return 64 * LM_WARPS * (sms ? sms : 256);  // at most 64 resident blocks per SM, as kcuda_lm_head_scratch
}

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
    LmParams lp = {d_w, n, k, d_x, d_norm_w, eps, d_logits, row_scale, d_best, d_argmax, NULL, NULL, NULL};
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

extern "C" int kcuda_screen_bounds(const int8_t *d_q, const float *d_scale, const float *d_bound, int n, int k,
                                   const float *d_x, const float *d_norm_w, float eps, float *d_lohi, float *d_bmax,
                                   int *nb_out, int pdl, void *stream) {
    if (!d_q || !d_scale || !d_bound || !d_x || !d_lohi || !d_bmax || !nb_out)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_screen_bounds: NULL pointer");
    if (n <= 0 || k <= 0 || k % 16 || k > 16384)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_screen_bounds: shape %d x %d unsupported (k a multiple of 16, at most 16384)", n, k);
    if ((uintptr_t)d_q % 16) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_screen_bounds: weights not 16-byte aligned");
    LmParams lp = {d_q, n, k, d_x, d_norm_w, eps, NULL, d_scale, NULL, NULL, d_bound, d_lohi, d_bmax};
    int nb = 0;
    const int rc = lm_dispatch<int8_t, true>(lp, stream, pdl, &nb);
    if (rc) return rc;
    if (nb * LM_WARPS > kcuda_screen_warps_max())
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_screen_bounds: %d warps exceed the scratch", nb * LM_WARPS);
    *nb_out = nb * LM_WARPS;
    return 0;
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
