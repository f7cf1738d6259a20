// The decode attention kernel for short contexts (attention.cu: kcuda_attn_decode_head): one
// block per (query head, chunk of 64 positions), the chunk's K/V rows staged in shared memory
// with 16-byte loads issued before the PDL wait, the last block of each head combining the
// splits. head_dim a multiple of 16 up to 128 (each half of a row in 16-byte pieces). It was the product's only decode kernel until
// 2026-12-06 ("version 3" in kernels/dev/README.md); the per-KV-group kernel
// (attention_decode_long.cuh) loads each row once per group instead of once per query head and wins
// at long context, this one has fewer dependent steps per block and wins at short context.
#pragma once
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"

namespace {
namespace attn_head {

enum { ATT_THREADS = 128, CHUNK = 64, MAX_HD = 128, COMBINE_TILE = 128 };

struct AttnParams {
    int n_heads, n_kv, hd, ctx, style;
    int max_splits;  // the grid's chunks per head: positions < 64 * max_splits only
    const float *rope;
    const float *qkv;
    __half *kc, *vc;
    const int *pos;
    float *out, *part;
    int *count;
    int late;  // the next launch may start: 0 at this kernel's start, 1 after its PDL wait, 2 after the softmax
};

__device__ __forceinline__ void rope_pair_h(int style, int hd, int i, int *i0, int *i1) {
    if (style == 0) {
        *i0 = i;
        *i1 = i + hd / 2;
    } else {
        *i0 = 2 * i;
        *i1 = 2 * i + 1;
    }
}

// How the last block of a head combines the splits (the lab times the others against the
// product's FENCES; kernels/dev/README.md, "Decode attention at every context length"):
//   FENCES       every thread fences its partial stores, thread 0 takes the ticket, the last block
//                fences again and reads the (max, sum) pairs, then the partial outputs: three
//                dependent L2 round trips after the ticket (max, then weights, then outputs);
//   ONE_TRIP     the same ticket; each output thread then loads the (max, sum) pair and its
//                partial output of 16 splits at once and combines them with a running max: one
//                L2 round trip per 16 splits;
//   ONE_TRIP_REL ONE_TRIP with the ticket as one release-acquire atomic of thread 0 between two
//                barriers instead of the fences.
enum Combine { FENCES = 0, ONE_TRIP = 1, ONE_TRIP_REL = 2 };

// grid (n_heads, max_splits), ATT_THREADS threads. One block per (query head, chunk of 64
// positions): each block's instruction stream is short (no per-head predication). The chunk's
// K/V rows are staged in shared memory with 16-byte loads issued before waiting on the previous
// kernel (positions < pos are final by then, see below). A position past the grid's chunks
// makes every head's output NaN (the caller chose the wrong kernel: loud, never a silent
// partial sum).
template <int COMBINE>
__global__ void __launch_bounds__(ATT_THREADS) attn_head_kernel(AttnParams p) {
    __shared__ __align__(16) float qs[MAX_HD];
    __shared__ float sc[CHUNK];
    __shared__ __align__(16) __half ks[CHUNK][MAX_HD + 8];
    __shared__ __align__(16) __half vs[CHUNK][MAX_HD];
    __shared__ float ml[2];
    __shared__ int last_sh;
    __shared__ float mls[2][COMBINE_TILE];  // per split of a tile: e^(m - M), l
    __shared__ float red[ATT_THREADS / 32];
    if (!p.late) pdl_trigger();
    // The position and the cached rows (< pos) were written before the previous kernel started
    // (graph order: the position copy precedes the first kernel; rows by earlier steps), so
    // they are read before waiting on it: the K/V loads overlap the QKV projection.
    const int h = blockIdx.x, sp = blockIdx.y, tid = threadIdx.x;
    const int hd = p.hd, half = hd / 2, n_rep = p.n_heads / p.n_kv, g = h / n_rep;
    const int pos = *p.pos, kv_len = pos + 1;
    const int nsplit = (kv_len + CHUNK - 1) / CHUNK;
    if (nsplit > p.max_splits) {
        if (sp == 0) {
            pdl_wait();  // out may still be read before it
            if (tid < hd) p.out[(size_t)h * hd + tid] = __int_as_float(0x7fc00000);
        }
        return;
    }
    if (sp >= nsplit) return;
    const int t0 = sp * CHUNK, nt = min(CHUNK, kv_len - t0);
    const size_t head_base = ((size_t)g * p.ctx) * hd;
    const int per_row = hd / 8;
#pragma unroll 8
    for (int idx = tid; idx < CHUNK * per_row; idx += ATT_THREADS) {
        const int j = idx / per_row, c = idx % per_row, t = t0 + j;
        uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
        if (j < nt && t != pos) {
            kv4 = *(const uint4 *)(p.kc + head_base + (size_t)t * hd + c * 8);
            vv4 = *(const uint4 *)(p.vc + head_base + (size_t)t * hd + c * 8);
        }
        *(uint4 *)&ks[j][c * 8] = kv4;
        *(uint4 *)&vs[j][c * 8] = vv4;
    }
    // The rope pair of this thread, read before the wait (the table is constant).
    const float *cs = p.rope + (size_t)pos * hd;  // [hd/2][2]
    int i0 = 0, i1 = 0;
    float c = 0.0f, s = 0.0f;
    if (tid < half) {
        rope_pair_h(p.style, hd, tid, &i0, &i1);
        c = cs[2 * tid];
        s = cs[2 * tid + 1];
    }
    pdl_wait();
    if (p.late == 1) pdl_trigger();
    const float *q = p.qkv + (size_t)h * hd;
    const bool last = sp == nsplit - 1;
    const float *k = p.qkv + (size_t)p.n_heads * hd + (size_t)g * hd;
    const float *v = k + (size_t)p.n_kv * hd;
    float a, b, ka, kb, vv;
    __syncthreads();  // staged rows complete before the current row is written into them
    if (tid < half) {
        a = q[i0], b = q[i1];
        qs[i0] = a * c - b * s;
        qs[i1] = b * c + a * s;
        if (last) {
            const int jc = pos - t0;
            ka = k[i0], kb = k[i1];
            const __half h0 = __float2half_rn(ka * c - kb * s), h1 = __float2half_rn(kb * c + ka * s);
            ks[jc][i0] = h0;
            ks[jc][i1] = h1;
            if (h % n_rep == 0) {  // one block per KV head writes the cache row
                p.kc[head_base + (size_t)pos * hd + i0] = h0;
                p.kc[head_base + (size_t)pos * hd + i1] = h1;
            }
        }
    }
    if (last && tid < hd) {
        vv = v[tid];
        const __half hv = __float2half_rn(vv);
        vs[pos - t0][tid] = hv;
        if (h % n_rep == 0) p.vc[head_base + (size_t)pos * hd + tid] = hv;
    }
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)hd);
    {
        const int j = tid >> 1, hh = tid & 1, d0 = hh * half;
        float acc = 0.0f;
        if (j < nt) {
            for (int m = 0; m < half / 8; m++) {
                const uint4 u = *(const uint4 *)&ks[j][d0 + m * 8];
                const float4 qa = *(const float4 *)&qs[d0 + m * 8], qb = *(const float4 *)&qs[d0 + m * 8 + 4];
                const __half2 *h2 = (const __half2 *)&u;
                const float2 f0 = __half22float2(h2[0]), f1 = __half22float2(h2[1]);
                const float2 f2 = __half22float2(h2[2]), f3 = __half22float2(h2[3]);
                acc = fmaf(qa.x, f0.x, acc);
                acc = fmaf(qa.y, f0.y, acc);
                acc = fmaf(qa.z, f1.x, acc);
                acc = fmaf(qa.w, f1.y, acc);
                acc = fmaf(qb.x, f2.x, acc);
                acc = fmaf(qb.y, f2.y, acc);
                acc = fmaf(qb.z, f3.x, acc);
                acc = fmaf(qb.w, f3.y, acc);
            }
        }
        acc += __shfl_xor_sync(0xffffffffu, acc, 1);
        if (hh == 0) sc[j] = j < nt ? acc * scale : -INFINITY;
    }
    __syncthreads();
    const int lane = tid & 31, warp = tid >> 5;
    if (warp == 0) {
        const float v0 = sc[lane], v1 = sc[lane + 32];
        const float m = warp_max(fmaxf(v0, v1));
        const float e0 = lane < nt ? expf(v0 - m) : 0.0f;
        const float e1 = lane + 32 < nt ? expf(v1 - m) : 0.0f;
        const float l = warp_sum(e0 + e1);
        sc[lane] = e0;
        sc[lane + 32] = e1;
        if (lane == 0) {
            ml[0] = m;
            ml[1] = l;
        }
    }
    __syncthreads();
    if (p.late == 2) pdl_trigger();
    const int d = tid;
    float o = 0.0f;
    if (d < hd) {
#pragma unroll 8
        for (int j = 0; j < nt; j++) o = fmaf(sc[j], __half2float(vs[j][d]), o);
    }
    if (nsplit == 1) {
        if (d < hd) p.out[(size_t)h * hd + d] = o / ml[1];
        return;
    }
    // Partial (m, l, o) of this split; the last split block of this head combines them.
    const int rec = hd + 2;
    float *base = p.part + (size_t)h * p.max_splits * rec;
    if (d < hd) base[(size_t)sp * rec + 2 + d] = o;
    if (tid == 0) {
        base[(size_t)sp * rec] = ml[0];
        base[(size_t)sp * rec + 1] = ml[1];
    }
    if (COMBINE == ONE_TRIP_REL) {
        // the barrier orders the block's partial stores before thread 0's release, and the
        // last block's loads after its acquire
        __syncthreads();
        if (tid == 0) {
            int old;
            asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(old) : "l"(&p.count[h]) : "memory");
            last_sh = old == nsplit - 1;
        }
        __syncthreads();
        if (!last_sh) return;
    } else {
        __threadfence();
        __syncthreads();
        if (tid == 0) last_sh = atomicAdd(&p.count[h], 1) == nsplit - 1;
        __syncthreads();
        if (!last_sh) return;
        __threadfence();
    }
    if (COMBINE != FENCES) {
        // out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M): thread d loads (m, l, o_d) of 16
        // splits at once (every thread of a warp the same m and l: one broadcast request), then
        // folds them into a running (max, num, den)
        if (d < hd) {
            constexpr int B = 16;
            float M = -INFINITY, num = 0.0f, den = 0.0f;
            for (int s0 = 0; s0 < nsplit; s0 += B) {
                float mv[B], lv[B], ov[B];
#pragma unroll
                for (int u = 0; u < B; u++) {
                    const float *r = base + (size_t)(s0 + u) * rec;
                    const bool in = s0 + u < nsplit;
                    mv[u] = in ? __ldcg(r) : -INFINITY;
                    lv[u] = in ? __ldcg(r + 1) : 0.0f;
                    ov[u] = in ? __ldcg(r + 2 + d) : 0.0f;
                }
                float bm = mv[0];
#pragma unroll
                for (int u = 1; u < B; u++) bm = fmaxf(bm, mv[u]);
                const float Mn = fmaxf(M, bm);  // finite: every split has a position
                const float c = expf(M - Mn);    // 0 on the first batch
                num *= c, den *= c;
#pragma unroll
                for (int u = 0; u < B; u++) {
                    const float w = expf(mv[u] - Mn);  // 0 past nsplit
                    den = fmaf(lv[u], w, den);
                    num = fmaf(ov[u], w, num);
                }
                M = Mn;
            }
            p.out[(size_t)h * hd + d] = num / den;
        }
        if (tid == 0) p.count[h] = 0;
        return;
    }
    // Combine: out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M). The splits' (m, l) pass through
    // shared memory in tiles, so the loop over splits reads no global memory but the o values,
    // eight independent loads at a time. (The earlier form, past 16 splits, read m, l and o of
    // every split in a loop of dependent L2 round trips, twice; issue #11 measured decode at
    // context ~1,900, 30 splits, at about half the speed of context 512, 8 splits.)
    {
        float mloc = -INFINITY;
        for (int s2 = tid; s2 < nsplit; s2 += ATT_THREADS) mloc = fmaxf(mloc, __ldcg(base + (size_t)s2 * rec));
        const float M = block_max<ATT_THREADS>(mloc, red);
        float num = 0.0f, den = 0.0f;
        for (int s0 = 0; s0 < nsplit; s0 += COMBINE_TILE) {
            const int ns = min((int)COMBINE_TILE, nsplit - s0);
            __syncthreads();  // the previous tile is consumed
            for (int j = tid; j < ns; j += ATT_THREADS) {
                const float *r = base + (size_t)(s0 + j) * rec;
                mls[0][j] = expf(__ldcg(r) - M);
                mls[1][j] = __ldcg(r + 1);
            }
            __syncthreads();
            if (d < hd) {
                const float *o0 = base + (size_t)s0 * rec + 2 + d;
                for (int j = 0; j < ns; j += 8) {
                    float ov[8];
#pragma unroll
                    for (int u = 0; u < 8; u++) ov[u] = j + u < ns ? __ldcg(o0 + (size_t)(j + u) * rec) : 0.0f;
#pragma unroll
                    for (int u = 0; u < 8; u++)
                        if (j + u < ns) {
                            den = fmaf(mls[1][j + u], mls[0][j + u], den);
                            num = fmaf(ov[u], mls[0][j + u], num);
                        }
                }
            }
        }
        if (d < hd) p.out[(size_t)h * hd + d] = num / den;
    }
    if (tid == 0) p.count[h] = 0;
}



// Scratch floats for a grid of max_splits chunks: (hd + 2) per (query head, chunk).
inline size_t scratch(int n_heads, int hd, int max_splits) { return (size_t)n_heads * max_splits * (hd + 2); }

// With the product's carveout and PDL launch (kcuda_launch).
template <int COMBINE = FENCES>
inline int launch(const AttnParams &p, int pdl, cudaStream_t st) {
    return kcuda_launch(attn_head_kernel<COMBINE>, dim3((unsigned)p.n_heads, (unsigned)p.max_splits), dim3(ATT_THREADS), 0,
                        st, pdl, p);
}

}  // namespace attn_head
}  // namespace
