// Shared helpers of the CUDA kernels: error reporting, PDL launch, block reductions,
// the fused RMSNorm + int8 quantization prologue. Internal to kernels/cuda.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/kernels_cuda.h"

// Records the message of the last failure (thread-local) and returns code.
int kcuda_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Streaming multiprocessors of the current device; 0 when it cannot be asked.
int kcuda_sm_count();

// KCUDA_OK, or the error (with a message naming fn) for a ternary matrix a GEMV / GEMM cannot take
// with epilogue ep (NULL, shape, alignment, gate/up layout, activation, epilogue).
int kcuda_check_ternary(const KcudaTernary *w, KcudaEpilogue ep, const char *fn);

// KCUDA_OK, or the error (with a message naming fn) for a shape no attention kernel supports.
int kcuda_attn_check_shape(const KcudaAttnShape *a, const char *fn);

#define KCUDA_TRY(call)                                                                         \
    do {                                                                                        \
        cudaError_t e_ = (call);                                                                \
        if (e_ != cudaSuccess)                                                                  \
            return kcuda_fail(KCUDA_ERR_CUDA, "%s:%d: %s: %s", __FILE__, __LINE__, #call,       \
                              cudaGetErrorString(e_));                                          \
    } while (0)

// Sets one shared-memory carveout on every kernel before its first launch (70% of the maximum
// shared memory). Why: kernels that prefer different
// L1/shared splits make the SMs reconfigure between launches. Measured end to end on an H100
// (2026-11-23, 64/64 decode): per-kernel defaults 950 tok/s, all at 100% 958, all at 70% 1016
// (70% keeps more L1 for the GEMV prologues and still fits the 71 KB prefill GEMM twice).
int kcuda_prepare_func(const void *fn);

// Launches kernel with grid/block/smem on stream, with programmatic dependent launch on
// request, and checks the launch.
template <typename... KArgs, typename... Args>
static int kcuda_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                        void *stream, int pdl, Args... args) {
    int rc = kcuda_prepare_func((const void *)kernel);
    if (rc) return rc;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = (cudaStream_t)stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, ((KArgs)args)...);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "kernel launch (grid %u, block %u): %s", grid.x, block.x,
                          cudaGetErrorString(e));
    return KCUDA_OK;
}

// PDL: let the next kernel be scheduled; wait for the previous one's results.
__device__ __forceinline__ void pdl_trigger() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// A 16-byte load of weights read once: through the non-coherent path, not kept in L1.
__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// The gated FFN's m = act(g) * u for the GLU epilogues (KcudaTernary.act), with the roundings
// of kernels/cpu relu2_mul_ref / silu_mul_ref spelled out (no fused multiply-add). relu^2 is
// then bit for bit the CPU's; SiLU differs only by expf (CUDA's is within 2 ulp, glibc's within
// 1), a few ulp of m before the int8 quantization of down_proj's input.
__device__ __forceinline__ float glu_act_mul(float g, float u, int act) {
    if (act == KCUDA_ACT_SILU) return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
    const float r = g > 0.0f ? g : 0.0f;
    return __fmul_rn(__fmul_rn(r, r), u);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ int warp_sum_i(int v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Block-wide reductions for NT threads (multiple of 32); red is >= NT/32 floats of shared
// memory. The order of additions is fixed, so every block computes the same bits. FRESH: red is
// used by this call only (no earlier reader can still be at it), so the leading barrier is left
// out.
template <int NT, bool FRESH = false>
__device__ __forceinline__ float block_sum(float v, float *red) {
    v = warp_sum(v);
    if (!FRESH) __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = 0.0f;
#pragma unroll
    for (int i = 0; i < NT / 32; i++) t += red[i];
    return t;
}
template <int NT, bool FRESH = false>
__device__ __forceinline__ float block_max(float v, float *red) {
    v = warp_max(v);
    if (!FRESH) __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = red[0];
#pragma unroll
    for (int i = 1; i < NT / 32; i++) t = fmaxf(t, red[i]);
    return t;
}
template <int NT>
__device__ __forceinline__ int block_sum_i(int v, float *red) {
    v = warp_sum_i(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) ((int *)red)[threadIdx.x >> 5] = v;
    __syncthreads();
    int t = 0;
#pragma unroll
    for (int i = 0; i < NT / 32; i++) t += ((int *)red)[i];
    return t;
}

// The fused prologue: q[0..k_pad) (shared) = int8 quantization of x_n = w * (x * inv_rms)
// (or of x itself when w == NULL), the same formulas as rmsnorm_ref + quant_act_ref:
// inv = 1/sqrtf(mean(x^2) + eps), s = 127 / max(max|x_n|, 1e-5), q = rint(x_n * s).
// Returns s; *qsum = sum(q). x is read from global memory (three passes, L1/L2 resident).
template <int NT>
__device__ __forceinline__ float norm_quant_prologue(const float *__restrict__ x, int k_in,
                                                     int k_pad, const float *__restrict__ w,
                                                     float eps, int8_t *q, int *qsum,
                                                     float *red) {
    const int tid = threadIdx.x;
    float inv = 1.0f;
    if (w) {
        float ss = 0.0f;
        for (int i = tid; i < k_in; i += NT) ss += x[i] * x[i];
        ss = block_sum<NT>(ss, red);
        inv = 1.0f / sqrtf(ss / (float)k_in + eps);
    }
    float amax = 0.0f;
    for (int i = tid; i < k_in; i += NT) {
        float v = w ? w[i] * (x[i] * inv) : x[i];
        amax = fmaxf(amax, fabsf(v));
    }
    amax = block_max<NT>(amax, red);
    const float s = 127.0f / fmaxf(amax, 1e-5f);
    int sum = 0;
    // Four lanes at a time so the stores to shared memory are words.
    for (int i4 = tid * 4; i4 < k_pad; i4 += NT * 4) {
        uint32_t word = 0;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int i = i4 + j, qi = 0;
            if (i < k_in) {
                float v = w ? w[i] * (x[i] * inv) : x[i];
                float r = rintf(v * s);
                r = fminf(fmaxf(r, -128.0f), 127.0f);
                qi = (int)r;
            }
            sum += qi;
            word |= (uint32_t)(qi & 0xff) << (8 * j);
        }
        *(uint32_t *)(q + i4) = word;
    }
    *qsum = block_sum_i<NT>(sum, red);
    return s;
}
