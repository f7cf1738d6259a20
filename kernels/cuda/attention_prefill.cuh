// The prefill attention kernels over the f16 KV cache (RoPE + cache write for T tokens, then
// causal attention with GQA on tensor cores), shared by their launcher (attention_prefill.cu)
// and the kernel lab (kernels/dev/w2a8_gemm.cu), which runs both key splits at every T next to
// the CUDA-core version 1. Internal to kernels/cuda and kernels/dev.
#pragma once
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"

namespace {

enum { ATT_THREADS = 128, CHUNK = 64 };  // threads per 4-warp block, keys per tile

__device__ __forceinline__ void rope_pair(int style, int hd, int i, int *i0, int *i1) {
    if (style == 0) {
        *i0 = i;
        *i1 = i + hd / 2;
    } else {
        *i0 = 2 * i;
        *i1 = 2 * i + 1;
    }
}

__global__ void rope_kv_prefill_kernel(float *qkv, int ld, int n_heads, int n_kv, int hd,
                                       int ctx, int style, const float *rope, int pos0,
                                       __half *kc, __half *vc) {
    pdl_trigger();
    pdl_wait();  // qkv comes from the previous kernel
    const int t = blockIdx.x, pos = pos0 + t, half = hd / 2;
    const float *cs = rope + (size_t)pos * hd;
    float *row = qkv + (size_t)t * ld;
    for (int idx = threadIdx.x; idx < (n_heads + n_kv) * half; idx += blockDim.x) {
        const int h = idx / half, i = idx % half;
        int i0, i1;
        rope_pair(style, hd, i, &i0, &i1);
        const float c = cs[2 * i], s = cs[2 * i + 1];
        float *v = row + (size_t)h * hd;
        const float a = v[i0], b = v[i1];
        const float r0 = a * c - b * s, r1 = b * c + a * s;
        if (h < n_heads) {
            v[i0] = r0;
            v[i1] = r1;
        } else {
            const size_t base = ((size_t)(h - n_heads) * ctx + pos) * hd;
            kc[base + i0] = __float2half_rn(r0);
            kc[base + i1] = __float2half_rn(r1);
        }
    }
    const float *vsrc = row + (size_t)(n_heads + n_kv) * hd;
    for (int idx = threadIdx.x; idx < n_kv * hd; idx += blockDim.x) {
        const int g = idx / hd, i = idx % hd;
        vc[((size_t)g * ctx + pos) * hd + i] = __float2half_rn(vsrc[idx]);
    }
}

// ---- version 2: tensor cores ----------------------------------------------------------------
//
// A block is 4 warps; each warp owns 16 query rows of one head. The block's warps are HPB heads
// of one KV group (GQA: HPB = 4, 2 or 1, the largest dividing the group size) times 4/HPB
// consecutive 16-query tiles, so each K/V tile staged in shared memory serves all of them. Keys
// go in tiles of 64 (double-buffered cp.async, zero-filled past the end), S = Q K^T and O += P V
// by mma.sync m16n8k16 with f32 accumulation, online softmax in registers (the S accumulator
// layout is the A-fragment layout of P, so P never leaves registers), and warps skip key tiles
// past their own causal limit. Precision: Q and P are split into f16 hi + lo parts (x = hi + lo
// to ~2^-22 relative) and each product is done twice, so the only roundings beyond fp32 are the
// f16 K/V of the cache, which the host reference and the decode kernel share. Blocks of late
// queries (the longest) are scheduled first.
struct Attn2Params {
    const float *qkv;
    int ld, T, pos0, n_heads, n_kv, hd, ctx, hpb, qpb;
    const __half *kc, *vc;
    float *out;
    float scale_log2;  // log2(e) / sqrt(hd)
};

__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], const void *ptr) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(ptr);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void ldsm4_t(uint32_t (&r)[4], const void *ptr) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(ptr);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void cp_async16z(void *dst, const void *src, bool valid) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}
// (x, y) -> f16x2 hi and the f16x2 of the remainders
__device__ __forceinline__ void split2(float x, float y, uint32_t *hi, uint32_t *lo) {
    const __half2 h = __floats2half2_rn(x, y);
    const float2 hf = __half22float2(h);
    const __half2 l = __floats2half2_rn(x - hf.x, y - hf.y);
    *hi = *(const uint32_t *)&h;
    *lo = *(const uint32_t *)&l;
}

// Version 3 = KSPLIT 2: 8 warps; warps 4..7 take the same rows as warps 0..3 but the odd key
// tiles (each stage brings two tiles), and their (max, sum, O) are merged into warps 0..3
// through shared memory at the end. Why: at T = 512 the grid is 160 blocks, all resident at
// once, so the time is the longest block's serial chain of key tiles (8 for the last queries);
// the split halves it at the same number of warps per SM (one 8-warp block instead of two
// 4-warp blocks: 249 registers a thread).
template <int HD, int KSPLIT>
__global__ void __launch_bounds__(ATT_THREADS * KSPLIT) attn_prefill_kernel2(Attn2Params p) {
    constexpr int KS = HD / 16;      // k-steps of Q K^T
    constexpr int ON = HD / 8;       // n-tiles of O
    constexpr int ROW = HD + 8;      // padded smem row (halves): 16-byte rows offset by one bank group
    constexpr int TILE = CHUNK * ROW;
    constexpr int NTH = ATT_THREADS * KSPLIT;
    extern __shared__ __align__(16) __half kvs[];  // [2 stages][KSPLIT tiles][K, V][CHUNK][ROW]
    const int tid = threadIdx.x, lane = tid & 31, gid = lane >> 2, tig = lane & 3;
    const int warp = (tid >> 5) & 3, kslice = tid >> 7;  // rows by warp, key tiles by kslice
    const int n_rep = p.n_heads / p.n_kv, groups_per_kv = n_rep / p.hpb;
    const int g = blockIdx.x / groups_per_kv, hsub = blockIdx.x % groups_per_kv;
    const int qb = gridDim.y - 1 - blockIdx.y;  // long (late) query blocks first
    const int h = g * n_rep + hsub * p.hpb + warp % p.hpb;
    const int t0 = (qb * p.qpb + warp / p.hpb) * 16;
    const int q_span = 16 * p.qpb;
    const int kv_end = p.pos0 + min(p.T, (qb + 1) * q_span);  // keys [0, kv_end) for the block
    const bool active = t0 < p.T;
    const int kv_end_w = p.pos0 + min(p.T, t0 + 16);          // this warp's keys
    const __half *kh = p.kc + (size_t)g * p.ctx * p.hd, *vh = p.vc + (size_t)g * p.ctx * p.hd;

    auto load_tile = [&](int kb, int buf) {  // KSPLIT tiles from key kb
        constexpr int CPR = HD / 8;  // 16-byte chunks per row
        for (int idx = tid; idx < KSPLIT * CHUNK * CPR; idx += NTH) {
            const int sl = idx / (CHUNK * CPR), rem = idx % (CHUNK * CPR);
            __half *ks = kvs + ((size_t)buf * KSPLIT + sl) * 2 * TILE, *vs = ks + TILE;
            const int j = rem / CPR, c = rem % CPR, key = kb + sl * CHUNK + j;
            const bool ok = key < kv_end && c * 8 < p.hd;
            const size_t off = ok ? (size_t)key * p.hd + c * 8 : 0;
            cp_async16z(ks + j * ROW + c * 8, kh + off, ok);
            cp_async16z(vs + j * ROW + c * 8, vh + off, ok);
        }
        asm volatile("cp.async.commit_group;");
    };

    pdl_trigger();
    pdl_wait();  // the RoPE kernel wrote q and the cache rows
    load_tile(0, 0);
    // Q fragments (hi and lo) of this warp's 16 rows; rows past T repeat row T-1 (finite, never
    // stored), dims past hd are zero.
    uint32_t qh[KS][4], ql[KS][4];
    {
        const int ta = min(t0 + gid, p.T - 1), tb = min(t0 + gid + 8, p.T - 1);
        const float *ra = p.qkv + (size_t)ta * p.ld + (size_t)h * p.hd;
        const float *rb = p.qkv + (size_t)tb * p.ld + (size_t)h * p.hd;
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
            const int d0 = ks * 16 + 2 * tig, d1 = d0 + 8;
            float2 a0 = make_float2(0.f, 0.f), b0 = a0, a1 = a0, b1 = a0;
            if (active && d0 < p.hd) {
                a0 = *(const float2 *)(ra + d0);
                b0 = *(const float2 *)(rb + d0);
            }
            if (active && d1 < p.hd) {
                a1 = *(const float2 *)(ra + d1);
                b1 = *(const float2 *)(rb + d1);
            }
            split2(a0.x, a0.y, &qh[ks][0], &ql[ks][0]);
            split2(b0.x, b0.y, &qh[ks][1], &ql[ks][1]);
            split2(a1.x, a1.y, &qh[ks][2], &ql[ks][2]);
            split2(b1.x, b1.y, &qh[ks][3], &ql[ks][3]);
        }
    }
    float o[ON][4];
#pragma unroll
    for (int i = 0; i < ON; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;  // rows gid, gid + 8
    const int qpos_a = p.pos0 + min(t0 + gid, p.T - 1), qpos_b = p.pos0 + min(t0 + gid + 8, p.T - 1);
    const int n_tiles = (kv_end + KSPLIT * CHUNK - 1) / (KSPLIT * CHUNK);  // stages
    for (int it = 0; it < n_tiles; it++) {
        const int kb = (it * KSPLIT + kslice) * CHUNK;  // this warp's tile
        if (it + 1 < n_tiles) load_tile((it + 1) * KSPLIT * CHUNK, (it + 1) & 1);
        else asm volatile("cp.async.commit_group;");
        asm volatile("cp.async.wait_group 1;");
        __syncthreads();
        if (active && kb < kv_end_w) {
            const __half *ks = kvs + ((size_t)(it & 1) * KSPLIT + kslice) * 2 * TILE, *vs = ks + TILE;
            float s[8][4];
#pragma unroll
            for (int i = 0; i < 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
            for (int ks_ = 0; ks_ < KS; ks_++) {
#pragma unroll
                for (int jj = 0; jj < 4; jj++) {
                    uint32_t b[4];
                    const int i = lane >> 3;
                    ldsm4(b, ks + (jj * 16 + (lane & 7) + (i >> 1) * 8) * ROW + ks_ * 16 + (i & 1) * 8);
                    mma_f16(s[2 * jj], qh[ks_], b[0], b[1]);
                    mma_f16(s[2 * jj], ql[ks_], b[0], b[1]);
                    mma_f16(s[2 * jj + 1], qh[ks_], b[2], b[3]);
                    mma_f16(s[2 * jj + 1], ql[ks_], b[2], b[3]);
                }
            }
            if (kb + CHUNK - 1 > p.pos0 + t0) {  // the tile reaches past the warp's first query
#pragma unroll
                for (int nt = 0; nt < 8; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int key = kb + nt * 8 + 2 * tig + e;
                        if (key > qpos_a) s[nt][e] = -INFINITY;
                        if (key > qpos_b) s[nt][2 + e] = -INFINITY;
                    }
            }
            float mx_a = m_a, mx_b = m_b;
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                mx_a = fmaxf(mx_a, fmaxf(s[nt][0], s[nt][1]));
                mx_b = fmaxf(mx_b, fmaxf(s[nt][2], s[nt][3]));
            }
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
            // Slice 0 starts with tile 0, where key 0 is valid for every row, so its maxima are
            // finite from then on. A slice-1 warp's first tile can mask a whole row (a tile that
            // starts inside the warp's rows when pos0 is not a multiple of 16): that row keeps
            // m = -inf, factor 1, offset 0, so its probabilities are exp2(-inf) = 0, not NaN.
            const float ca = mx_a == -INFINITY ? 1.0f : exp2f((m_a - mx_a) * p.scale_log2);
            const float cb = mx_b == -INFINITY ? 1.0f : exp2f((m_b - mx_b) * p.scale_log2);
            m_a = mx_a;
            m_b = mx_b;
            const float oa = mx_a == -INFINITY ? 0.0f : mx_a * p.scale_log2;
            const float ob = mx_b == -INFINITY ? 0.0f : mx_b * p.scale_log2;
            float sa = 0.0f, sb = 0.0f;
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                s[nt][0] = exp2f(fmaf(s[nt][0], p.scale_log2, -oa));
                s[nt][1] = exp2f(fmaf(s[nt][1], p.scale_log2, -oa));
                s[nt][2] = exp2f(fmaf(s[nt][2], p.scale_log2, -ob));
                s[nt][3] = exp2f(fmaf(s[nt][3], p.scale_log2, -ob));
                sa += s[nt][0] + s[nt][1];
                sb += s[nt][2] + s[nt][3];
            }
            l_a = l_a * ca + sa;
            l_b = l_b * cb + sb;
#pragma unroll
            for (int i = 0; i < ON; i++) {
                o[i][0] *= ca;
                o[i][1] *= ca;
                o[i][2] *= cb;
                o[i][3] *= cb;
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {  // keys 16j .. 16j+15 of the tile
                uint32_t ph[4], pl[4];
                split2(s[2 * j][0], s[2 * j][1], &ph[0], &pl[0]);
                split2(s[2 * j][2], s[2 * j][3], &ph[1], &pl[1]);
                split2(s[2 * j + 1][0], s[2 * j + 1][1], &ph[2], &pl[2]);
                split2(s[2 * j + 1][2], s[2 * j + 1][3], &ph[3], &pl[3]);
#pragma unroll
                for (int dd = 0; dd < HD / 16; dd++) {
                    uint32_t b[4];
                    const int i = lane >> 3;
                    ldsm4_t(b, vs + (j * 16 + (lane & 7) + (i & 1) * 8) * ROW + dd * 16 + (i >> 1) * 8);
                    mma_f16(o[2 * dd], ph, b[0], b[1]);
                    mma_f16(o[2 * dd], pl, b[0], b[1]);
                    mma_f16(o[2 * dd + 1], ph, b[2], b[3]);
                    mma_f16(o[2 * dd + 1], pl, b[2], b[3]);
                }
            }
        }
        __syncthreads();  // every warp is done with this buffer before it is refilled
    }
    if (KSPLIT == 2) {  // merge slice 1 into slice 0 (the K/V buffers are free after the loop)
        float *mg = (float *)kvs + (size_t)warp * (4 * ON + 4) * 32 + lane;  // [warp][value][lane]
        if (kslice == 1 && active) {
#pragma unroll
            for (int i = 0; i < ON; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) mg[(i * 4 + e) * 32] = o[i][e];
            mg[(4 * ON) * 32] = m_a;
            mg[(4 * ON + 1) * 32] = m_b;
            mg[(4 * ON + 2) * 32] = l_a;
            mg[(4 * ON + 3) * 32] = l_b;
        }
        __syncthreads();
        if (kslice == 1) return;
        if (active) {
            // slice 0 always saw key 0 (finite m); slice 1 may have seen nothing (m = -inf,
            // factor exp2(-inf) = 0, its l and O are 0)
            const float m1a = mg[(4 * ON) * 32], m1b = mg[(4 * ON + 1) * 32];
            const float ma = fmaxf(m_a, m1a), mb = fmaxf(m_b, m1b);
            const float c0a = exp2f((m_a - ma) * p.scale_log2), c1a = exp2f((m1a - ma) * p.scale_log2);
            const float c0b = exp2f((m_b - mb) * p.scale_log2), c1b = exp2f((m1b - mb) * p.scale_log2);
            l_a = l_a * c0a + mg[(4 * ON + 2) * 32] * c1a;
            l_b = l_b * c0b + mg[(4 * ON + 3) * 32] * c1b;
#pragma unroll
            for (int i = 0; i < ON; i++) {
                o[i][0] = o[i][0] * c0a + mg[(i * 4 + 0) * 32] * c1a;
                o[i][1] = o[i][1] * c0a + mg[(i * 4 + 1) * 32] * c1a;
                o[i][2] = o[i][2] * c0b + mg[(i * 4 + 2) * 32] * c1b;
                o[i][3] = o[i][3] * c0b + mg[(i * 4 + 3) * 32] * c1b;
            }
        }
    }
    if (!active) return;
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    const int ta = t0 + gid, tb = t0 + gid + 8;
    float *outa = p.out + (size_t)ta * p.n_heads * p.hd + (size_t)h * p.hd;
    float *outb = p.out + (size_t)tb * p.n_heads * p.hd + (size_t)h * p.hd;
#pragma unroll
    for (int i = 0; i < ON; i++) {
        const int d = i * 8 + 2 * tig;
        if (d < p.hd) {
            if (ta < p.T) *(float2 *)(outa + d) = make_float2(o[i][0] / l_a, o[i][1] / l_a);
            if (tb < p.T) *(float2 *)(outb + d) = make_float2(o[i][2] / l_b, o[i][3] / l_b);
        }
    }
}

template <int HD, int KSPLIT>
int attn2_launch(const KcudaAttnShape *a, float *d_qkv, int ld_qkv, int T, int pos0, uint16_t *d_kc,
                 uint16_t *d_vc, float *d_out, int pdl, void *stream) {
    const size_t smem = (size_t)2 * KSPLIT * 2 * CHUNK * (HD + 8) * sizeof(__half);
    // once per kernel (thread-safe static initialization)
    static const cudaError_t attr =
        cudaFuncSetAttribute(attn_prefill_kernel2<HD, KSPLIT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (attr != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_attn_prefill: shared memory of %zu bytes: %s", smem, cudaGetErrorString(attr));
    Attn2Params p = {};
    p.qkv = d_qkv;
    p.ld = ld_qkv;
    p.T = T;
    p.pos0 = pos0;
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv;
    p.hd = a->head_dim;
    p.ctx = a->ctx;
    const int n_rep = a->n_heads / a->n_kv;
    p.hpb = n_rep % 4 == 0 ? 4 : n_rep % 2 == 0 ? 2 : 1;
    p.qpb = 4 / p.hpb;
    p.kc = (const __half *)d_kc;
    p.vc = (const __half *)d_vc;
    p.out = d_out;
    p.scale_log2 = 1.4426950408889634f / sqrtf((float)a->head_dim);
    const dim3 grid((unsigned)(a->n_heads / p.hpb), (unsigned)((T + 16 * p.qpb - 1) / (16 * p.qpb)));
    return kcuda_launch(attn_prefill_kernel2<HD, KSPLIT>, grid, dim3(ATT_THREADS * KSPLIT), smem, stream, pdl, p);
}

}  // namespace
