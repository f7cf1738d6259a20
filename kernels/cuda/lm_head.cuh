// The lm_head kernel (f16 / bf16 / f32 rows, and int8 rows with per-row scales for the optional
// int8 head): the final RMSNorm fused in front, the greedy argmax fused behind. Shared by its
// launcher (dense.cu) and the kernel lab (kernels/dev/lm_head.cu), which runs it with the
// activation layout the product no longer uses and next to the tensor-core version it beat.
// Internal to kernels/cuda and kernels/dev.
#pragma once
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
    // The screen (int8 weights, SCREEN = true; screen.cu): the per-row bound constant B_r in,
    // [lo_r, hi_r] out (lohi[2r], lohi[2r + 1]) instead of logits, each warp's largest lo_r in
    // bmax[blockIdx.x * LM_WARPS + warp] instead of the block's best pick.
    const float *row_bound;
    float *lohi, *bmax;
};

__device__ __forceinline__ bool lm_better(float v, int i, float bv, int bi) {
    return v > bv || (v == bv && i < bi);
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
        if (lm_better(bv, bi, v, idx)) {
            v = bv;
            idx = bi;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (lm_better(ov, oi, v, idx)) {
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
            if (lm_better(vs[w], is[w], v, idx)) {
                v = vs[w];
                idx = is[w];
            }
        out[0] = idx == 0x7fffffff ? 0 : idx;
    }
}

// The block's best (value, row) pair from each warp's, written to best[2 * blockIdx.x].
template <int WARPS>
__device__ __forceinline__ void lm_block_best(float v, int i, int *best) {
    __shared__ float bv_sh[WARPS];
    __shared__ int bi_sh[WARPS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (lm_better(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
    if (lane == 0) {
        bv_sh[warp] = v;
        bi_sh[warp] = i;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < WARPS; w++)
            if (lm_better(bv_sh[w], bi_sh[w], v, i)) {
                v = bv_sh[w];
                i = bi_sh[w];
            }
        best[2 * blockIdx.x] = __float_as_int(v);
        best[2 * blockIdx.x + 1] = i;
    }
}

// Where a lane finds its activations: chunk c (16 bytes of a row, EPC weights) needs EPC / 4
// pieces of 4 floats. SPREAD stores piece q of every chunk together, at (q * C + c) * 4, so the
// 32 lanes of a warp (chunks c .. c + 31) read 512 consecutive bytes, no bank conflict; without
// it, chunk-major at c * EPC + 4q, the lanes read at a stride of EPC * 4 bytes: a 2-way bank
// conflict for f16 / bf16 (32 bytes), 4-way for int8 (64 bytes). Measured on an H100
// (2026-12-06, dev_lm_head, 128256 x 2560 with the argmax): int8 198.4 us chunk-major, 121.6
// spread (the read-only floor of those 328 MB: 112.1 us). The launcher (dense.cu) picks it.
template <int EPC, bool SPREAD>
__device__ __forceinline__ float4 lm_x4(const float *xs, int c, int C, int q) {
    return *(const float4 *)(xs + (SPREAD ? (q * C + c) * 4 : c * EPC + 4 * q));
}
template <int EPC, bool SPREAD>
__device__ __forceinline__ int lm_xs_index(int i, int C) {
    const int c = i / EPC, j = i % EPC;
    return SPREAD ? ((j >> 2) * C + c) * 4 + (j & 3) : i;
}

// The final RMSNorm of x into xs (shared memory, lm_x4's layout), as every lm_head kernel does
// it: one function, so that the screen's exact rows (screen.cu) see the bits the full head
// sees. NT threads; red: NT / 32 floats of shared memory.
template <int EPC, bool SPREAD, int NT>
__device__ __forceinline__ void lm_load_x(const float *x, const float *norm_w, float eps, int k, float *xs,
                                          float *red) {
    const int C = k / EPC;
    float inv = 1.0f;
    if (norm_w) {
        float ss = 0.0f;
        for (int i = threadIdx.x; i < k; i += NT) ss += x[i] * x[i];
        ss = block_sum<NT>(ss, red);
        inv = 1.0f / sqrtf(ss / (float)k + eps);
    }
    for (int i = threadIdx.x; i < k; i += NT)
        xs[lm_xs_index<EPC, SPREAD>(i, C)] = norm_w ? norm_w[i] * (x[i] * inv) : x[i];
    __syncthreads();
}

// The screen's ||xs||_2, rounded up: squares and sums in double (each square exact, the sum's
// relative error below (k + NT) 2^-53, covered by the 1e-9 margin for any k the head takes),
// the square root correctly rounded, then up to float. Every thread gets the value.
template <int NT>
__device__ __forceinline__ float lm_xs_norm_up(const float *xs, int k) {
    __shared__ double dred[NT / 32];
    double s = 0.0;
    for (int i = threadIdx.x; i < k; i += NT) s += (double)xs[i] * (double)xs[i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) dred[threadIdx.x >> 5] = s;
    __syncthreads();
    double t = 0.0;
#pragma unroll
    for (int i = 0; i < NT / 32; i++) t += dred[i];
    return __double2float_ru(sqrt(t) * (1.0 + 1e-9));
}

// [lo, hi] of a row's exact f16-path logit from its int8 logit a, its bound constant B (see
// kernels_cuda.h, kcuda_screen_prepare) and ||xs||_2 rounded up: b = B X + 4u |a| + 1e-30 (the
// int8 path's final scale multiply, u = 2^-24, and a floor above every underflow error), each
// operation rounded up, lo rounded down, hi up. A row whose a is not finite or whose bound is
// huge (a partial sum could then overflow, which no relative bound covers) gets (-inf, +inf):
// always a candidate, never a threshold.
__device__ __forceinline__ float2 screen_bounds(float a, float B, float X) {
    const float b = __fadd_ru(__fmul_ru(B, X), __fmaf_ru(fabsf(a), 2.4e-7f, 1e-30f));
    if (!(fabsf(a) <= 1e30f) || !(b <= 1e30f)) return make_float2(-INFINITY, INFINITY);
    return make_float2(__fsub_rd(a, b), __fadd_ru(a, b));
}

// The dot product of one 16-byte chunk with its activations, in element order (so both layouts
// give the same bits).
template <typename T> struct Conv;
template <> struct Conv<__half> {
    template <bool S> static __device__ __forceinline__ float dot(uint4 v, const float *xs, int c, int C, float acc) {
        const __half2 *h = (const __half2 *)&v;
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const float4 x = lm_x4<8, S>(xs, c, C, q);
            const float2 f0 = __half22float2(h[2 * q]), f1 = __half22float2(h[2 * q + 1]);
            acc = fmaf(f0.x, x.x, acc);
            acc = fmaf(f0.y, x.y, acc);
            acc = fmaf(f1.x, x.z, acc);
            acc = fmaf(f1.y, x.w, acc);
        }
        return acc;
    }
    enum { EPC = 8 };
};
template <> struct Conv<__nv_bfloat16> {
    template <bool S> static __device__ __forceinline__ float dot(uint4 v, const float *xs, int c, int C, float acc) {
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const float4 x = lm_x4<8, S>(xs, c, C, q);
            acc = fmaf(__uint_as_float(u[2 * q] << 16), x.x, acc);
            acc = fmaf(__uint_as_float(u[2 * q] & 0xffff0000u), x.y, acc);
            acc = fmaf(__uint_as_float(u[2 * q + 1] << 16), x.z, acc);
            acc = fmaf(__uint_as_float(u[2 * q + 1] & 0xffff0000u), x.w, acc);
        }
        return acc;
    }
    enum { EPC = 8 };
};
// int8 weights (the optional int8 lm_head): 16 weights per 16-byte chunk, f32 activations, so
// the only error against the f16 head is the weight rounding; the row scale is applied once to
// the finished dot product. Why not (float)(int8_t)byte: integer-to-float conversion runs at a
// quarter of the FMA rate on sm_90 and would cost about as long as the weight stream itself;
// instead each byte, biased to b + 128, is placed by one byte permute into the mantissa of 2^23
// (0x4B0000xx = 2^23 + b + 128), and one exact subtraction gives b.
template <> struct Conv<int8_t> {
    template <bool S> static __device__ __forceinline__ float dot(uint4 v, const float *xs, int c, int C, float acc) {
        const uint32_t u[4] = {v.x ^ 0x80808080u, v.y ^ 0x80808080u, v.z ^ 0x80808080u, v.w ^ 0x80808080u};
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const float4 x = lm_x4<16, S>(xs, c, C, q);
            const float xv[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float f = __uint_as_float(__byte_perm(u[q], 0x4B000000u, 0x7540u + j)) - 8388736.0f;
                acc = fmaf(f, xv[j], acc);
            }
        }
        return acc;
    }
    enum { EPC = 16 };
};
template <> struct Conv<float> {
    template <bool S> static __device__ __forceinline__ float dot(uint4 v, const float *xs, int c, int C, float acc) {
        const float4 x = lm_x4<4, S>(xs, c, C, 0);
        acc = fmaf(__uint_as_float(v.x), x.x, acc);
        acc = fmaf(__uint_as_float(v.y), x.y, acc);
        acc = fmaf(__uint_as_float(v.z), x.z, acc);
        acc = fmaf(__uint_as_float(v.w), x.w, acc);
        return acc;
    }
    enum { EPC = 4 };
};

// One warp per row, a persistent grid; lane l reads 16-byte chunks l, l+32, ... of the row,
// up to MAXL of them in flight before the first use. Int8 rows are half as long; two rows per
// warp (as many bytes in flight as f16) measured slower (2026-12-06: 242 us against 202 with the
// chunk-major layout), and the tensor-core kernel of kernels/dev/lm_head_mma.cuh slower than
// this one with SPREAD (128.5 us against 121.6).
template <typename T, int MAXL, bool SPREAD, bool SCREEN = false>
__global__ void __launch_bounds__(LM_THREADS) lm_head_kernel1(LmParams p) {
    extern __shared__ float xs[];
    __shared__ float red[LM_WARPS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    constexpr int EPC = Conv<T>::EPC;
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

    lm_load_x<EPC, SPREAD, LM_THREADS>(p.x, p.norm_w, p.eps, p.k, xs, red);
    float xnorm = 0.0f;
    if constexpr (SCREEN) xnorm = lm_xs_norm_up<LM_THREADS>(xs, p.k);

    float best_v = -INFINITY;
    int best_i = 0x7fffffff;
    auto finish = [&](float acc, int r) {
        acc = warp_sum(acc);
        if (p.row_scale) acc *= p.row_scale[r];
        if constexpr (SCREEN) {
            const float2 b = screen_bounds(acc, p.row_bound[r], xnorm);
            if (lane == 0) *(float2 *)(p.lohi + 2 * (size_t)r) = b;
            best_v = fmaxf(best_v, b.x);
        } else {
            if (lane == 0) p.logits[r] = acc;
            if (lm_better(acc, r, best_v, best_i)) {
                best_v = acc;
                best_i = r;
            }
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
                if (c < C) acc = Conv<T>::template dot<SPREAD>(src[i], xs, c, C, acc);
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
                if (c < C) acc = Conv<T>::template dot<SPREAD>(wv[i], xs, c, C, acc);
            }
            for (int base = 32 * MAXL; base < C; base += 32 * MAXL) {
                issue(row, base);
#pragma unroll
                for (int i = 0; i < MAXL; i++) {
                    const int c = base + lane + 32 * i;
                    if (c < C) acc = Conv<T>::template dot<SPREAD>(wv[i], xs, c, C, acc);
                }
            }
            const int next = row + stride;
            if (next < p.n) issue(next, 0);
            finish(acc, row);
        }
    }
    if constexpr (SCREEN) {
        if (lane == 0) p.bmax[blockIdx.x * LM_WARPS + warp] = best_v;  // the warp's largest lo
    } else if (p.best) {
        lm_block_best<LM_WARPS>(best_v, best_i, p.best);
    }
}

}  // namespace
