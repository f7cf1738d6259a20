// The prefill attention kernels over the f16 KV cache (K roped and K/V written to the cache for
// T tokens, then causal attention with GQA on tensor cores, q roped as it is loaded), shared by
// their launcher (attention_prefill.cu) and the labs (kernels/dev/attn_prefill_lab.cu, which
// runs them beside versions 2 and 3 in kernels/dev/attention_prefill_v2.cuh). Internal to
// kernels/cuda and kernels/dev.
#pragma once
#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"

namespace {

enum { ATT_THREADS = 128, CHUNK = 64, ATT_MAX_SPLIT = 8 };  // threads per 4-warp block, keys per tile, cluster

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

// K roped and written to the cache, V written, for T tokens; q is left as it is (the attention
// kernel rotates it while loading its fragments). Four elements a thread: float2/float4 loads,
// half2 stores, consecutive threads on consecutive dims (version 2's kernel rotated q in place
// too, one scalar element a thread, a block per token). Same formulas as rope_host / the decode
// kernel: r0 = a c - b s, r1 = b c + a s, each rounded to f16 once.
__global__ void kv_prefill_kernel(const float *qkv, int ld, int T, int n_heads, int n_kv, int hd, int ctx, int style,
                                  const float *rope, int pos0, __half *kc, __half *vc) {
    pdl_trigger();
    pdl_wait();  // qkv comes from the previous kernel
    const int quads = hd / 4, per_tok = n_kv * quads;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= 2 * T * per_tok) return;
    const bool is_v = idx >= T * per_tok;
    const int r = is_v ? idx - T * per_tok : idx;
    const int t = r / per_tok, g = (r % per_tok) / quads, j = r % quads, pos = pos0 + t;
    const float *src = qkv + (size_t)t * ld + (size_t)(n_heads + (is_v ? n_kv : 0) + g) * hd;
    __half *dst = (is_v ? vc : kc) + ((size_t)g * ctx + pos) * hd;
    if (is_v) {
        const float4 v = *(const float4 *)(src + 4 * j);
        *(__half2 *)(dst + 4 * j) = __floats2half2_rn(v.x, v.y);
        *(__half2 *)(dst + 4 * j + 2) = __floats2half2_rn(v.z, v.w);
        return;
    }
    const float *cs = rope + (size_t)pos * hd;
    if (style == 0) {  // pairs (i, i + hd/2), i = 2j, 2j + 1
        const int half = hd / 2, i = 2 * j;
        const float2 a = *(const float2 *)(src + i), b = *(const float2 *)(src + i + half);
        const float4 c = *(const float4 *)(cs + 2 * i);  // cos_i, sin_i, cos_i+1, sin_i+1
        *(__half2 *)(dst + i) = __floats2half2_rn(a.x * c.x - b.x * c.y, a.y * c.z - b.y * c.w);
        *(__half2 *)(dst + i + half) = __floats2half2_rn(b.x * c.x + a.x * c.y, b.y * c.z + a.y * c.w);
    } else {  // pairs (2i, 2i + 1), i = 2j, 2j + 1
        const float4 v = *(const float4 *)(src + 4 * j), c = *(const float4 *)(cs + 4 * j);
        *(__half2 *)(dst + 4 * j) = __floats2half2_rn(v.x * c.x - v.y * c.y, v.y * c.x + v.x * c.y);
        *(__half2 *)(dst + 4 * j + 2) = __floats2half2_rn(v.z * c.z - v.w * c.w, v.w * c.z + v.z * c.w);
    }
}

// Dims d, d + 1 (d even, below hd) of a q row at position pos, roped as kv_prefill_kernel ropes k.
__device__ __forceinline__ float2 q_rope2(const float *row, const float *cs, int d, int hd, int style) {
    const float2 x = *(const float2 *)(row + d);
    if (style) {
        const float2 c = *(const float2 *)(cs + d);
        return make_float2(x.x * c.x - x.y * c.y, x.y * c.x + x.x * c.y);
    }
    const int half = hd / 2;
    if (d < half) {  // x = a of pairs d, d + 1
        const float2 b = *(const float2 *)(row + d + half);
        const float4 c = *(const float4 *)(cs + 2 * d);
        return make_float2(x.x * c.x - b.x * c.y, x.y * c.z - b.y * c.w);
    }
    const float2 a = *(const float2 *)(row + d - half);  // x = b of pairs d - half, d - half + 1
    const float4 c = *(const float4 *)(cs + 2 * (d - half));
    return make_float2(x.x * c.x + a.x * c.y, x.y * c.z + a.y * c.w);
}

// ---- version 4: tensor cores, keys split over a cluster -------------------------------------
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
//
// The key split: gridDim.z = S blocks (a cluster of 1 x 1 x S) share one query tile; block r
// takes the r-th of S contiguous runs of its key tiles. Each parks its (max, sum, O) per row in
// its shared memory, and after a cluster barrier block r combines every block's records for the
// output columns i with i % S == r (distributed shared memory), exactly as version 3 merged its
// two in-block slices. Why: the time of a prefill is the longest serial chain of key tiles of one
// warp (T = 512 from 0: 160 4-warp blocks for 132 SMs, 8 tiles for the last queries; a chunk at
// 1536: 32; a short tail chunk after a long prompt: a handful of blocks walking every key), and
// with ~2 warps a scheduler the tensor pipe waits on that chain. q is roped here (q_rope2), so
// the K/V kernel before it moves a third of version 2's bytes.
struct Attn4Params {
    const float *qkv;
    const float *rope;
    int ld, T, pos0, n_heads, n_kv, hd, ctx, hpb, qpb, style;
    const __half *kc, *vc;
    float *out;
    float scale_log2;  // log2(e) / sqrt(hd)
};

template <int HD>
__global__ void __launch_bounds__(ATT_THREADS) attn_prefill_kernel4(Attn4Params p) {
    constexpr int KS = HD / 16;      // k-steps of Q K^T
    constexpr int ON = HD / 8;       // n-tiles of O
    constexpr int ROW = HD + 8;      // padded smem row (halves): 16-byte rows offset by one bank group
    constexpr int TILE = CHUNK * ROW;
    constexpr int REC = 4 * ON + 4;  // floats a lane parks for the merge: O, m_a, m_b, l_a, l_b
    static_assert((size_t)4 * REC * 32 * 4 <= (size_t)2 * 2 * TILE * 2, "merge records exceed the K/V buffers");
    extern __shared__ __align__(16) __half kvs[];  // [2 stages][K, V][CHUNK][ROW]
    const int tid = threadIdx.x, lane = tid & 31, gid = lane >> 2, tig = lane & 3, warp = tid >> 5;
    const int n_rep = p.n_heads / p.n_kv, groups_per_kv = n_rep / p.hpb;
    const int g = blockIdx.x / groups_per_kv, hsub = blockIdx.x % groups_per_kv;
    const int qb = gridDim.y - 1 - blockIdx.y;  // long (late) query blocks first
    const int S = gridDim.z, rank = blockIdx.z;
    const int h = g * n_rep + hsub * p.hpb + warp % p.hpb;
    const int t0 = (qb * p.qpb + warp / p.hpb) * 16;
    const int q_span = 16 * p.qpb;
    const int kv_end = p.pos0 + min(p.T, (qb + 1) * q_span);  // keys [0, kv_end) for the block
    const bool active = t0 < p.T;
    const int kv_end_w = p.pos0 + min(p.T, t0 + 16);          // this warp's keys
    const int n_all = (kv_end + CHUNK - 1) / CHUNK;
    const int it0 = (int)((long)n_all * rank / S), it1 = (int)((long)n_all * (rank + 1) / S);  // this block's tiles
    const __half *kh = p.kc + (size_t)g * p.ctx * p.hd, *vh = p.vc + (size_t)g * p.ctx * p.hd;

    auto load_tile = [&](int kb, int buf) {
        constexpr int CPR = HD / 8;  // 16-byte chunks per row
        __half *ks = kvs + (size_t)buf * 2 * TILE, *vs = ks + TILE;
        for (int idx = tid; idx < CHUNK * CPR; idx += ATT_THREADS) {
            const int j = idx / CPR, c = idx % CPR, key = kb + j;
            const bool ok = key < kv_end && c * 8 < p.hd;
            const size_t off = ok ? (size_t)key * p.hd + c * 8 : 0;
            cp_async16z(ks + j * ROW + c * 8, kh + off, ok);
            cp_async16z(vs + j * ROW + c * 8, vh + off, ok);
        }
        asm volatile("cp.async.commit_group;");
    };

    pdl_trigger();
    pdl_wait();  // the K/V kernel wrote the cache rows (and q came before it)
    if (it0 < it1) load_tile(it0 * CHUNK, 0);
    // Q fragments (hi and lo) of this warp's 16 rows, roped; rows past T repeat row T-1 (finite,
    // never stored), dims past hd are zero.
    uint32_t qh[KS][4], ql[KS][4];
    const int qpos_a = p.pos0 + min(t0 + gid, p.T - 1), qpos_b = p.pos0 + min(t0 + gid + 8, p.T - 1);
    {
        const float *ra = p.qkv + (size_t)(qpos_a - p.pos0) * p.ld + (size_t)h * p.hd;
        const float *rb = p.qkv + (size_t)(qpos_b - p.pos0) * p.ld + (size_t)h * p.hd;
        const float *csa = p.rope + (size_t)qpos_a * p.hd, *csb = p.rope + (size_t)qpos_b * p.hd;
        const bool load = active && it0 < it1;
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
            const int d0 = ks * 16 + 2 * tig, d1 = d0 + 8;
            float2 a0 = make_float2(0.f, 0.f), b0 = a0, a1 = a0, b1 = a0;
            if (load && d0 < p.hd) {
                a0 = q_rope2(ra, csa, d0, p.hd, p.style);
                b0 = q_rope2(rb, csb, d0, p.hd, p.style);
            }
            if (load && d1 < p.hd) {
                a1 = q_rope2(ra, csa, d1, p.hd, p.style);
                b1 = q_rope2(rb, csb, d1, p.hd, p.style);
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
    for (int it = it0; it < it1; it++) {
        const int kb = it * CHUNK;
        if (it + 1 < it1) load_tile(kb + CHUNK, (it + 1 - it0) & 1);
        else asm volatile("cp.async.commit_group;");
        asm volatile("cp.async.wait_group 1;");
        __syncthreads();
        if (active && kb < kv_end_w) {
            const __half *ks = kvs + (size_t)((it - it0) & 1) * 2 * TILE, *vs = ks + TILE;
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
            // A block's first tile can mask a whole row (a run that starts inside the warp's rows
            // when pos0 is not a multiple of 16): that row keeps m = -inf, factor 1, offset 0,
            // so its probabilities are exp2(-inf) = 0, not NaN.
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
    const int ta = t0 + gid, tb = t0 + gid + 8;
    float *outa = p.out + (size_t)ta * p.n_heads * p.hd + (size_t)h * p.hd;
    float *outb = p.out + (size_t)tb * p.n_heads * p.hd + (size_t)h * p.hd;
    if (S == 1) {
        if (!active) return;
        l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
        l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
#pragma unroll
        for (int i = 0; i < ON; i++) {
            const int d = i * 8 + 2 * tig;
            if (d < p.hd) {
                if (ta < p.T) *(float2 *)(outa + d) = make_float2(o[i][0] / l_a, o[i][1] / l_a);
                if (tb < p.T) *(float2 *)(outb + d) = make_float2(o[i][2] / l_b, o[i][3] / l_b);
            }
        }
        return;
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900  // clusters: the launcher splits only on sm_90+
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    // park [warp][value][lane] in this block's K/V buffers (free: the loop ended on a barrier;
    // a block with no tiles never used them)
    float *rec = (float *)kvs + (size_t)warp * REC * 32 + lane;
#pragma unroll
    for (int i = 0; i < ON; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) rec[(i * 4 + e) * 32] = o[i][e];
    rec[(4 * ON) * 32] = m_a;
    rec[(4 * ON + 1) * 32] = m_b;
    rec[(4 * ON + 2) * 32] = l_a;
    rec[(4 * ON + 3) * 32] = l_b;
    cluster.sync();  // every block's records are parked
    if (active) {
        // The block with tile 0 saw key 0, which every row attends: the maxima are finite. A
        // block that saw nothing of a row has m = -inf: weight exp2(-inf) = 0, its l and O are 0.
        float ma = -INFINITY, mb = -INFINITY;
        for (int r = 0; r < S; r++) {
            const float *x = cluster.map_shared_rank(rec, (unsigned)r);
            ma = fmaxf(ma, x[(4 * ON) * 32]);
            mb = fmaxf(mb, x[(4 * ON + 1) * 32]);
        }
        float la = 0.0f, lb = 0.0f;  // o is parked: it becomes the sum
#pragma unroll
        for (int i = 0; i < ON; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
        for (int r = 0; r < S; r++) {
            const float *x = cluster.map_shared_rank(rec, (unsigned)r);
            const float wa = exp2f((x[(4 * ON) * 32] - ma) * p.scale_log2);
            const float wb = exp2f((x[(4 * ON + 1) * 32] - mb) * p.scale_log2);
            la += x[(4 * ON + 2) * 32] * wa;
            lb += x[(4 * ON + 3) * 32] * wb;
#pragma unroll
            for (int i = 0; i < ON; i++) {
                if (i % S != rank) continue;
                o[i][0] += x[(i * 4 + 0) * 32] * wa;
                o[i][1] += x[(i * 4 + 1) * 32] * wa;
                o[i][2] += x[(i * 4 + 2) * 32] * wb;
                o[i][3] += x[(i * 4 + 3) * 32] * wb;
            }
        }
        la += __shfl_xor_sync(0xffffffffu, la, 1);
        la += __shfl_xor_sync(0xffffffffu, la, 2);
        lb += __shfl_xor_sync(0xffffffffu, lb, 1);
        lb += __shfl_xor_sync(0xffffffffu, lb, 2);
#pragma unroll
        for (int i = 0; i < ON; i++) {
            const int d = i * 8 + 2 * tig;
            if (i % S == rank && d < p.hd) {
                if (ta < p.T) *(float2 *)(outa + d) = make_float2(o[i][0] / la, o[i][1] / la);
                if (tb < p.T) *(float2 *)(outb + d) = make_float2(o[i][2] / lb, o[i][3] / lb);
            }
        }
    }
    cluster.sync();  // no block leaves (freeing its shared memory) while another still reads it
#else
    __trap();  // unreachable: the launcher splits only where clusters exist
#endif
}

// Launches version 4 with S key splits (S > 1: clusters of 1 x 1 x S, compute capability 9.0).
template <int HD>
int attn4_launch(const KcudaAttnShape *a, const float *d_qkv, int ld_qkv, int T, int pos0, const uint16_t *d_kc,
                 const uint16_t *d_vc, float *d_out, int S, int pdl, void *stream) {
    const size_t smem = (size_t)2 * 2 * CHUNK * (HD + 8) * sizeof(__half);
    // once per kernel (thread-safe static initialization)
    static const cudaError_t attr =
        cudaFuncSetAttribute(attn_prefill_kernel4<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (attr != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_attn_prefill: shared memory of %zu bytes: %s", smem, cudaGetErrorString(attr));
    int rc = kcuda_prepare_func((const void *)attn_prefill_kernel4<HD>);
    if (rc) return rc;
    Attn4Params p = {};
    p.qkv = d_qkv;
    p.rope = a->d_rope;
    p.ld = ld_qkv;
    p.T = T;
    p.pos0 = pos0;
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv;
    p.hd = a->head_dim;
    p.ctx = a->ctx;
    p.style = a->rope_style;
    const int n_rep = a->n_heads / a->n_kv;
    p.hpb = n_rep % 4 == 0 ? 4 : n_rep % 2 == 0 ? 2 : 1;
    p.qpb = 4 / p.hpb;
    p.kc = (const __half *)d_kc;
    p.vc = (const __half *)d_vc;
    p.out = d_out;
    p.scale_log2 = 1.4426950408889634f / sqrtf((float)a->head_dim);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(a->n_heads / p.hpb), (unsigned)((T + 16 * p.qpb - 1) / (16 * p.qpb)), (unsigned)S);
    cfg.blockDim = dim3(ATT_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = (cudaStream_t)stream;
    cudaLaunchAttribute at[2];
    int na = 0;
    if (S > 1) {
        at[na].id = cudaLaunchAttributeClusterDimension;
        at[na].val.clusterDim.x = 1;
        at[na].val.clusterDim.y = 1;
        at[na].val.clusterDim.z = (unsigned)S;
        na++;
    }
    if (pdl) {
        at[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[na].val.programmaticStreamSerializationAllowed = 1;
        na++;
    }
    cfg.attrs = at;
    cfg.numAttrs = na;
    const cudaError_t e = cudaLaunchKernelEx(&cfg, attn_prefill_kernel4<HD>, p);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_attn_prefill: launch (grid %u x %u x %d): %s", cfg.gridDim.x,
                          cfg.gridDim.y, S, cudaGetErrorString(e));
    return KCUDA_OK;
}

// Key splits for version 4 (a power of two up to ATT_MAX_SPLIT; 1 below compute capability 9.0):
// the fewest that bring the longest query block's chain of key tiles down to what the whole
// grid's tiles would take per resident block anyway (at least 2 tiles a block, so the pipeline
// and the merge stay small against the loop). n_cols: blocks per query block (heads / HPB);
// per_sm: resident blocks per SM; sms: SMs.
inline int attn4_pick_splits(int T, int pos0, int q_span, int n_cols, int per_sm, int sms, int cc_major) {
    if (cc_major < 9 || per_sm <= 0 || sms <= 0) return 1;
    const int n_qb = (T + q_span - 1) / q_span;
    long tiles = 0;  // block-tiles of the unsplit grid
    for (int qb = 0; qb < n_qb; qb++) tiles += (pos0 + min(T, (qb + 1) * q_span) + CHUNK - 1) / CHUNK;
    tiles *= n_cols;
    const long resident = (long)per_sm * sms;
    const long floor_tiles = max(2L, (tiles + resident - 1) / resident);
    const int longest = (pos0 + T + CHUNK - 1) / CHUNK;
    int S = 1;
    while (S < ATT_MAX_SPLIT && (longest + S - 1) / S > floor_tiles) S *= 2;
    return S;
}

// Launches the K/V kernel (kv_prefill_kernel) for T tokens.
inline int kv_prefill_launch(const KcudaAttnShape *a, const float *d_qkv, int ld_qkv, int T, int pos0, uint16_t *d_kc,
                             uint16_t *d_vc, int pdl, void *stream) {
    const long items = 2L * T * a->n_kv * (a->head_dim / 4);
    return kcuda_launch(kv_prefill_kernel, dim3((unsigned)((items + 255) / 256)), dim3(256), 0, stream, pdl, d_qkv,
                        ld_qkv, T, a->n_heads, a->n_kv, a->head_dim, a->ctx, a->rope_style, a->d_rope, pos0,
                        (__half *)d_kc, (__half *)d_vc);
}

}  // namespace
