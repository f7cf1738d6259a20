// Lab version of the int8 lm_head on tensor cores (dev_lm_head "i8 mma"): correct (within
// 3.3e-7 of the largest logit) but slower on an H100 than the product's CUDA-core kernel with
// conflict-free activations (kernels/cuda/lm_head.cuh; 2026-12-06, 128256 x 2560 with the
// argmax: 128.5 us for U = 4 against 121.6). Kept for the record and as the base for a
// batched (several-token) int8 head, where the tensor cores would carry more than one column.
#pragma once
#include <cuda_fp16.h>

#include "kernels/cuda/lm_head.cuh"

namespace {

// ---- the int8 lm_head on tensor cores ----------------------------------------------------------
// Why tensor cores (the plan): with f32 activations on the CUDA cores, each weight byte costs a byte
// permute, a subtraction and an FMA, and the activation vector is read from shared memory four
// bytes per weight byte; that kernel streamed 1628 GB/s where the f16 head streams 2941 (H100,
// 2026-12-06). Here each int8 pair becomes an exact f16 pair (one byte permute places the biased
// bytes in the mantissas of 1024, one f16x2 subtraction removes 1152), and mma.sync m16n8k16
// multiplies 16 rows by the activation vector split into two f16 columns, x = hi + lo
// (hi = f16(x), lo = f16(x - hi)): the products are exact, and x is carried to 2^-22 of itself
// (the f16 head's test tolerance is 1e-5 of the largest logit). Before the split x is scaled by
// a power of two so that max|x| lies in [2^14, 2^15) (no f16 overflow, lo stays normal for the
// larger entries); the logit is unscaled exactly. Each step's four products start from zero and
// are added to the row's f32 sum with IEEE adds, so the tensor cores' own accumulation rounding
// covers 64 products at a time.
//
// Work split: a warp owns a tile of 16 rows (16 * k bytes); per step, lane (g, t) (g = lane / 4,
// t = lane % 4) loads 16 bytes of row g and of row g + 8 at byte 64 * step + 16 * t, and byte
// 4m + j of its chunk is column k = 2t + j (j < 2) or 2t + 8 + j - 2 of mma m (m = 0..3); the
// activation fragments read the same 16 positions as f16 (hi for even g, lo for odd g: columns
// 0 and 1 of the product, the others are unused). Batches of U steps are double-buffered, the
// next tile's first batch in flight while a tile finishes. Row sums land in lanes t = 0:
// D[g][0] + D[g][1] and D[g + 8][0] + D[g + 8][1].
enum { LM8_THREADS = 256, LM8_WARPS = LM8_THREADS / 32 };

// Shared memory: hi at 0, lo at lm8_lo_offset (16 bytes past a 128-byte boundary, so that the hi
// and lo fragments of one step fall in different banks), each k padded to 64 with zeros.
__host__ __device__ __forceinline__ int lm8_kpad(int k) { return (k + 63) & ~63; }
__host__ __device__ __forceinline__ size_t lm8_lo_offset(int k) {
    return (((size_t)lm8_kpad(k) * 2 + 127) & ~(size_t)127) + 16;
}
__host__ __device__ __forceinline__ size_t lm8_smem(int k) { return lm8_lo_offset(k) + (size_t)lm8_kpad(k) * 2; }

// Two int8 weights (bytes sel of u, already XOR 0x80) as an exact f16 pair.
__device__ __forceinline__ uint32_t lm8_pair(uint32_t u, uint32_t sel) {
    const uint32_t h = __byte_perm(u, 0x64646464u, sel);  // f16 1024 + (b + 128) in each half
    uint32_t r;
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(h), "r"(0x64806480u));  // - 1152
    return r;
}

__device__ __forceinline__ void lm8_mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                        uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <int U>
__global__ void __launch_bounds__(LM8_THREADS, 2) lm_head_i8_kernel(LmParams p) {
    extern __shared__ __align__(16) unsigned char lm8_sm[];
    __shared__ float red[LM8_WARPS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int kpad = lm8_kpad(p.k), steps = kpad >> 6, batches = (steps + U - 1) / U;
    const int tiles = (p.n + 15) >> 4, tstride = gridDim.x * LM8_WARPS;
    const int8_t *W = (const int8_t *)p.w;
    int tile = blockIdx.x * LM8_WARPS + warp, batch = 0;

    uint4 a[U], b[U], na[U], nb[U];
    auto load = [&](uint4 (&A)[U], uint4 (&B)[U], int tl, int bt) {
        const int r0 = tl * 16 + g, r1 = r0 + 8;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int col = ((bt * U + u) << 6) + (t << 4);
            const bool in = col < p.k;
            A[u] = in && r0 < p.n ? ld_stream((const uint4 *)(W + (size_t)r0 * p.k + col)) : make_uint4(0, 0, 0, 0);
            B[u] = in && r1 < p.n ? ld_stream((const uint4 *)(W + (size_t)r1 * p.k + col)) : make_uint4(0, 0, 0, 0);
        }
    };
    load(a, b, tile, 0);
    pdl_trigger();
    pdl_wait();

    // x_n = RMSNorm(x) (the f16 head's formula), scaled by 2^sh, split into f16 hi + lo.
    __half *xh = (__half *)lm8_sm, *xl = (__half *)(lm8_sm + lm8_lo_offset(p.k));
    float inv = 1.0f;
    if (p.norm_w) {
        float ss = 0.0f;
        for (int i = threadIdx.x; i < p.k; i += LM8_THREADS) ss += p.x[i] * p.x[i];
        ss = block_sum<LM8_THREADS>(ss, red);
        inv = 1.0f / sqrtf(ss / (float)p.k + p.eps);
    }
    float amax = 0.0f;
    for (int i = threadIdx.x; i < p.k; i += LM8_THREADS)
        amax = fmaxf(amax, fabsf(p.norm_w ? p.norm_w[i] * (p.x[i] * inv) : p.x[i]));
    amax = block_max<LM8_THREADS>(amax, red);
    int ex = 0;
    frexpf(amax, &ex);
    const int sh = min(max(15 - ex, -100), 100);
    for (int i = threadIdx.x; i < kpad; i += LM8_THREADS) {
        const float v = i < p.k ? ldexpf(p.norm_w ? p.norm_w[i] * (p.x[i] * inv) : p.x[i], sh) : 0.0f;
        const __half h = __float2half_rn(v);
        xh[i] = h;
        xl[i] = __float2half_rn(v - __half2float(h));
    }
    const float unscale = ldexpf(1.0f, -sh);
    __syncthreads();

    const __half *xs = (g & 1) ? xl : xh;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float best_v = -INFINITY;
    int best_i = 0x7fffffff;
    auto compute = [&](const uint4 (&A)[U], const uint4 (&B)[U], int bt) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int s = bt * U + u;
            if (s < steps) {
                const uint4 *xp = (const uint4 *)(xs + (s << 6) + (t << 4));
                const uint4 x0 = xp[0], x1 = xp[1];
                const uint32_t xv[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
                const uint32_t ua[4] = {A[u].x ^ 0x80808080u, A[u].y ^ 0x80808080u, A[u].z ^ 0x80808080u,
                                        A[u].w ^ 0x80808080u};
                const uint32_t ub[4] = {B[u].x ^ 0x80808080u, B[u].y ^ 0x80808080u, B[u].z ^ 0x80808080u,
                                        B[u].w ^ 0x80808080u};
                float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int m = 0; m < 4; m++)
                    lm8_mma(d, lm8_pair(ua[m], 0x4140u), lm8_pair(ub[m], 0x4140u), lm8_pair(ua[m], 0x4342u),
                            lm8_pair(ub[m], 0x4342u), xv[2 * m], xv[2 * m + 1]);
#pragma unroll
                for (int i = 0; i < 4; i++) acc[i] += d[i];
            }
        }
    };
    auto finish = [&](int tl) {
        if (t == 0) {
            const int r0 = tl * 16 + g, r1 = r0 + 8;
            if (r0 < p.n) {
                const float v = (acc[0] + acc[1]) * unscale * p.row_scale[r0];
                p.logits[r0] = v;
                if (lm_better(v, r0, best_v, best_i)) best_v = v, best_i = r0;
            }
            if (r1 < p.n) {
                const float v = (acc[2] + acc[3]) * unscale * p.row_scale[r1];
                p.logits[r1] = v;
                if (lm_better(v, r1, best_v, best_i)) best_v = v, best_i = r1;
            }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) acc[i] = 0.0f;
    };
    // The next batch: the following steps of this tile, or the first of the warp's next tile.
    auto advance = [&](int &tl, int &bt) {
        if (++bt == batches) bt = 0, tl += tstride;
    };
    while (tile < tiles) {
        int nt = tile, nbt = batch;
        advance(nt, nbt);
        load(na, nb, nt, nbt);
        compute(a, b, batch);
        if (batch == batches - 1) finish(tile);
        tile = nt, batch = nbt;
        if (tile >= tiles) break;
        advance(nt, nbt);
        load(a, b, nt, nbt);
        compute(na, nb, batch);
        if (batch == batches - 1) finish(tile);
        tile = nt, batch = nbt;
    }
    if (p.best) lm_block_best<LM8_WARPS>(best_v, best_i, p.best);
}

}  // namespace
