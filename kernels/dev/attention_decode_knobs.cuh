// Lab copy of the tiled per-KV-group decode attention kernel (the product's kcuda_attn_decode
// until the spans kernel, kernels/cuda/attention_decode_long.cuh, replaced it) with
// every knob the lab measured (kernels/dev/README.md, "Decode attention lab"): threads, tile,
// stages, one or two FMA chains in the scores, the combine's batch and its spreading over all
// threads, blocks per SM, the shortest split, split rounding to 16 positions, head spreading at
// short context. The product header keeps only the settings the product instantiates; this copy
// lets dev_attn_decode time the others against it.
#pragma once
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/common.cuh"

namespace {  // internal linkage: the product and the lab each instantiate their own kernels
namespace attn_decode_knobs {

enum {
    MAX_REP = 8,      // query heads of one block
    MAX_SPLITS = 256, // splits of one KV group at most (bounds the combine's shared memory)
    MAX_HD = 256,
    SCRATCH_CHUNK = 64,  // the shortest split any knob allows (sizes the scratch records)
};

// How a launch divides the work (host side; the kernel derives its blocks from these and the
// position). per_sm: blocks per SM the splits aim to fill (at most what fits); min_chunk:
// positions of a split at least (a multiple of 16, >= SCRATCH_CHUNK); align_tile: split lengths
// rounded up to whole tiles (else to 16 positions); spread: at short context, spread a KV
// group's query heads over several blocks when the splits are too few to fill the GPU.
struct Knobs {
    int per_sm, min_chunk;
    bool align_tile, spread;
};

struct DecodeParams {
    int n_heads, n_kv, rep;  // query heads, KV heads, query heads per KV head
    int hb_max;              // query heads per block at most (<= MAX_REP)
    int hg_lo, hg_hi;        // blocks per KV head and split: at least, at most
    int target;              // blocks that fill the GPU (SMs x blocks per SM)
    int min_chunk, align;    // split length: at least, rounded up to a multiple of
    int hd, ctx, style, splits;
    int late;  // the next launch may start: 0 at this kernel's start, 1 after its PDL wait, 2 after its tiles
    const float *rope;  // [ctx][hd/2][2]
    const float *qkv;   // q | k | v (f32, before RoPE)
    __half *kc, *vc;    // [n_kv][ctx][hd]
    const int *pos;
    float *out;   // [n_heads][hd]
    float *part;  // per (block column, split, head < hb_max): o [hd4], then (max, sum) pairs after all o
    int *count;   // arrivals per block column (n_kv * rep), left zero
};

__device__ __forceinline__ void rope_pair(int style, int hd, int i, int *i0, int *i1) {
    if (style == 0) {
        *i0 = i;
        *i1 = i + hd / 2;
    } else {
        *i0 = 2 * i;
        *i1 = 2 * i + 1;
    }
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// all but the newest N groups done
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// Threads per block, positions per tile and the thread mappings, by the largest head_dim an
// instantiation takes.
// STAGES_: tiles in flight (shared-memory stages); ILP2_: the scores' dot products in two chains
// of FMAs; CB_: the combine's loads per batch; PC_: the combine's splits over all the threads.
template <int MAXHD, int THREADS_, int TILE_, int STAGES_ = 2, bool ILP2_ = false, int CB_ = 16, bool PC_ = false>
struct Cfg {
    static constexpr bool PC = PC_;
    static constexpr int STAGES = STAGES_;
    static constexpr bool ILP2 = ILP2_;
    static constexpr int CB = CB_;
    static constexpr int THREADS = THREADS_;
    static constexpr int WARPS = THREADS / 32;
    static constexpr int TILE = TILE_;
    static constexpr int NPT = THREADS / TILE;   // scores: threads per position
    static constexpr int HPT = MAX_REP / NPT;    // scores: heads per thread at most
    static constexpr int DP = MAXHD / 2;         // P.V: threads over dimension pairs
    static constexpr int PH = THREADS / DP;      // P.V: position phases
    static constexpr int QI = (MAX_REP * MAXHD / 2 + THREADS - 1) / THREADS;  // q pairs per thread
    static_assert(NPT >= 1 && NPT <= MAX_REP && MAX_REP % NPT == 0, "tile and threads");
    static_assert(PH >= 1 && THREADS % DP == 0, "P.V mapping");
    static_assert(WARPS <= MAX_REP && MAX_REP % WARPS == 0, "softmax: heads per warp");
    static_assert(THREADS >= MAXHD / 2, "RoPE: one pair per thread");
};

// Row strides (halves) of the K and V tiles: K rows padded by 16 bytes so that the 8 lanes of a
// 16-byte shared load hit 8 different bank groups (row stride = 4 banks mod 32); V rows are read
// along the row, so they are not padded. With head_dim % 8 != 0 the rows are 4-byte aligned.
__host__ __device__ __forceinline__ int ld_k(int hd, bool vec8) { return hd + (vec8 ? 8 : 2); }

template <class C>
__host__ __device__ __forceinline__ size_t stage_halves(int hd, bool vec8) {
    return (size_t)C::TILE * (ld_k(hd, vec8) + hd);
}

template <class C, int MAXHD>
size_t dyn_smem(int hd, bool vec8, int splits) {
    size_t b = C::STAGES * stage_halves<C>(hd, vec8) * sizeof(__half);
    const size_t red = (size_t)C::PH * MAX_REP * MAXHD * sizeof(float);
    const size_t comb = (size_t)2 * splits * MAX_REP * sizeof(float) + (C::PC ? (size_t)C::THREADS * 16 : 0);
    if (red > b) b = red;
    if (comb > b) b = comb;
    return (b + 15) / 16 * 16;
}

// Split s of a context of kv_len positions: [s * chunk, min(kv_len, (s + 1) * chunk)).
__device__ __forceinline__ int split_chunk(int kv_len, const DecodeParams &p) {
    int chunk = (kv_len + p.splits - 1) / p.splits;
    chunk = (chunk + p.align - 1) / p.align * p.align;
    return chunk < p.min_chunk ? p.min_chunk : chunk;
}

// grid (blocks), THREADS threads, blocks >= the most any position uses (kcuda_attn_decode). VEC8:
// head_dim % 8 == 0 (16-byte cp.async); otherwise the rows are copied with 4-byte loads
// (ld.global.cg) and shared stores. The blocks' work is chosen from the position: the splits,
// then how many blocks per KV head and split (hg) and on how many query heads each: at long
// context one block per KV head and split takes the whole group (each row loaded once); at short
// context, where the splits are few, the group's heads are spread over up to rep blocks so that
// the GPU still has work for its SMs (the rows are then read by several blocks, from L2). Blocks
// past the work leave at once; the grid is kept to about one wave of the GPU so that few do (a
// block that leaves still holds its shared memory while it reads the position).
template <int MAXHD, bool VEC8, class C>
__global__ void __launch_bounds__(C::THREADS) attn_decode_kernel(DecodeParams p) {
    constexpr int TILE = C::TILE, THREADS = C::THREADS, WARPS = C::WARPS;
    extern __shared__ __align__(16) unsigned char dyn[];
    __shared__ __align__(16) float qs[MAX_REP][MAXHD];      // rotated q of the block's heads
    __shared__ __align__(16) float sc[MAX_REP][TILE];       // scores of one tile
    __shared__ __align__(16) float pr[TILE][MAX_REP];       // e^(s - m) of one tile, per position
    __shared__ __align__(16) __half cur_k[MAXHD], cur_v[MAXHD];  // the current position's row
    __shared__ float rs[MAXHD];                             // RoPE (cos, sin) pairs at pos
    __shared__ float corr[MAX_REP], mlv[MAX_REP][2], lsum[MAX_REP];
    __shared__ int last_sh;

    if (p.late == 0) pdl_trigger();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hd = p.hd, half = hd / 2, ldk = ld_k(hd, VEC8), ldv = hd;
    // The position and the cached rows (< pos) were written before the previous kernel started
    // (graph order: the position copy precedes the first kernel; rows by earlier steps), so
    // they are read before waiting on it.
    const int pos = *p.pos, kv_len = pos + 1;
    const int chunk = split_chunk(kv_len, p);
    const int nsplit = (kv_len + chunk - 1) / chunk;
    int hg = p.target / (p.n_kv * nsplit);  // blocks per KV head and split at this position
    hg = max(p.hg_lo, min(p.hg_hi, hg));
    const int hb = (p.rep + hg - 1) / hg;   // query heads per block (<= hb_max)
    hg = (p.rep + hb - 1) / hb;
    const int per_split = p.n_kv * hg;
    if ((int)blockIdx.x >= per_split * nsplit) return;
    const int sp = blockIdx.x / per_split, rem = blockIdx.x - sp * per_split;
    const int g = rem / hg, slot = rem - g * hg;
    const int bx = g * p.rep + slot;  // this (KV head, head slot)'s counter and record column
    const int r0 = slot * hb, nh = min(hb, p.rep - r0);  // this block's query heads: r0 .. r0 + nh - 1
    const int t0 = sp * chunk, n_span = min(chunk, kv_len - t0);
    const int n_tiles = (n_span + TILE - 1) / TILE;
    const bool has_cur = sp == nsplit - 1;  // the span ends at pos
    const size_t head_base = (size_t)g * p.ctx * hd;
    __half *stage0 = (__half *)dyn;
    const size_t stage_n = stage_halves<C>(hd, VEC8);

    // Issues the copy of tile it (positions t0 + it * TILE ...) into stage it % STAGES, row pos
    // excepted (written after the wait); always commits a group, so that "all but the newest
    // group done" means "tile it done" in the loop below.
    auto issue = [&](int it) {
        if (it < n_tiles) {
            __half *ks = stage0 + (size_t)(it % C::STAGES) * stage_n, *vs = ks + (size_t)TILE * ldk;
            const int tb = t0 + it * TILE, cnt = min(TILE, n_span - it * TILE);
            if (VEC8) {
                const int per_row = hd / 8;
                for (int idx = tid; idx < cnt * per_row; idx += THREADS) {
                    const int j = idx / per_row, c = idx - j * per_row, t = tb + j;
                    if (t == pos) continue;
                    const size_t off = head_base + (size_t)t * hd + c * 8;
                    cp_async16(ks + j * ldk + c * 8, p.kc + off);
                    cp_async16(vs + j * ldv + c * 8, p.vc + off);
                }
            } else {
                for (int idx = tid; idx < cnt * half; idx += THREADS) {
                    const int j = idx / half, c = idx - j * half, t = tb + j;
                    if (t == pos) continue;
                    const size_t off = head_base + (size_t)t * hd + c * 2;
                    const unsigned kw = __ldcg((const unsigned *)(p.kc + off));
                    const unsigned vw = __ldcg((const unsigned *)(p.vc + off));
                    *(unsigned *)(ks + j * ldk + c * 2) = kw;
                    *(unsigned *)(vs + j * ldv + c * 2) = vw;
                }
            }
        }
        cp_async_commit();
    };
#pragma unroll
    for (int it = 0; it < C::STAGES; it++) issue(it);
    if (tid < half) {  // the RoPE pairs at pos (a constant table), before the wait too
        rs[2 * tid] = p.rope[(size_t)pos * hd + 2 * tid];
        rs[2 * tid + 1] = p.rope[(size_t)pos * hd + 2 * tid + 1];
    }
    pdl_wait();
    if (p.late == 1) pdl_trigger();

    // The previous kernel's outputs: q of the block's heads and, for the last split, this
    // position's k and v; all loads issued before any store (one L2 round trip, not one per
    // element). __ldcg: the q/k/v buffer is rewritten every layer, so L1 copies may be stale.
    const float *qg = p.qkv + (size_t)(g * p.rep + r0) * hd;
    const float *kg = p.qkv + (size_t)p.n_heads * hd + (size_t)g * hd;
    const float *vg = kg + (size_t)p.n_kv * hd;
    float qa[C::QI], qb[C::QI];
#pragma unroll
    for (int u = 0; u < C::QI; u++) {
        const int idx = tid + u * THREADS;
        qa[u] = qb[u] = 0.0f;
        if (idx < nh * half) {
            const int r = idx / half, i = idx - r * half;
            int i0, i1;
            rope_pair(p.style, hd, i, &i0, &i1);
            qa[u] = __ldcg(qg + r * hd + i0);
            qb[u] = __ldcg(qg + r * hd + i1);
        }
    }
    float ka = 0.0f, kb = 0.0f, va = 0.0f, vb = 0.0f;
    if (has_cur) {
        if (tid < half) {
            int i0, i1;
            rope_pair(p.style, hd, tid, &i0, &i1);
            ka = __ldcg(kg + i0);
            kb = __ldcg(kg + i1);
        }
        if (tid < hd) va = __ldcg(vg + tid);
        if (tid + THREADS < hd) vb = __ldcg(vg + tid + THREADS);
    }
    __syncthreads();  // rs complete
#pragma unroll
    for (int u = 0; u < C::QI; u++) {
        const int idx = tid + u * THREADS;
        if (idx < nh * half) {
            const int r = idx / half, i = idx - r * half;
            int i0, i1;
            rope_pair(p.style, hd, i, &i0, &i1);
            const float c = rs[2 * i], s = rs[2 * i + 1];
            qs[r][i0] = qa[u] * c - qb[u] * s;
            qs[r][i1] = qb[u] * c + qa[u] * s;
        }
    }
    if (has_cur) {
        const bool writer = r0 == 0;  // one block per KV head writes the cache row
        __half *krow = p.kc + head_base + (size_t)pos * hd, *vrow = p.vc + head_base + (size_t)pos * hd;
        if (tid < half) {
            int i0, i1;
            rope_pair(p.style, hd, tid, &i0, &i1);
            const float c = rs[2 * tid], s = rs[2 * tid + 1];
            const __half h0 = __float2half_rn(ka * c - kb * s), h1 = __float2half_rn(kb * c + ka * s);
            cur_k[i0] = h0;
            cur_k[i1] = h1;
            if (writer) krow[i0] = h0, krow[i1] = h1;
        }
        if (tid < hd) {
            const __half h = __float2half_rn(va);
            cur_v[tid] = h;
            if (writer) vrow[tid] = h;
        }
        if (tid + THREADS < hd) {
            const __half h = __float2half_rn(vb);
            cur_v[tid + THREADS] = h;
            if (writer) vrow[tid + THREADS] = h;
        }
    }

    const float scale = 1.0f / sqrtf((float)hd);
    float m_run[MAX_REP / WARPS], l_run[MAX_REP / WARPS];  // softmax state of heads warp + WARPS * i
#pragma unroll
    for (int i = 0; i < MAX_REP / WARPS; i++) m_run[i] = -INFINITY, l_run[i] = 0.0f;
    const int dp = tid % C::DP, ph = tid / C::DP;  // P.V: dims 2 dp, 2 dp + 1; positions ph + PH k
    const bool dp_on = 2 * dp < hd;
    float o[MAX_REP][2];
#pragma unroll
    for (int r = 0; r < MAX_REP; r++) o[r][0] = o[r][1] = 0.0f;
    for (int it = 0; it < n_tiles; it++) {
        const int tb = t0 + it * TILE, cnt = min(TILE, n_span - it * TILE);
        const __half *ks = stage0 + (size_t)(it % C::STAGES) * stage_n;
        const __half *vs = ks + (size_t)TILE * ldk;
        cp_async_wait<C::STAGES - 1>();
        __syncthreads();  // tile it landed (all threads' copies); q, cur_k/cur_v written
        if (has_cur && pos - tb < cnt && pos >= tb) {
            const int jp = pos - tb;
            __half *kw = (__half *)ks + jp * ldk, *vw = (__half *)vs + jp * ldv;
            for (int d = tid; d < hd; d += THREADS) kw[d] = cur_k[d], vw[d] = cur_v[d];
            __syncthreads();
        }
        // scores: thread (position jj, head slice hs) over all head_dim, heads hs + NPT i
        {
            constexpr int npt = C::NPT;
            const int jj = tid % TILE, hs = tid / TILE;
            if (jj < cnt) {
                float acc[C::HPT], acc2[C::HPT];
#pragma unroll
                for (int i = 0; i < C::HPT; i++) acc[i] = acc2[i] = 0.0f;
                const __half *kr = ks + jj * ldk;
                if (VEC8) {
                    for (int c = 0; c < hd; c += 8) {
                        const uint4 u = *(const uint4 *)(kr + c);
                        const __half2 *h2 = (const __half2 *)&u;
                        const float2 f0 = __half22float2(h2[0]), f1 = __half22float2(h2[1]);
                        const float2 f2 = __half22float2(h2[2]), f3 = __half22float2(h2[3]);
#pragma unroll
                        for (int i = 0; i < C::HPT; i++) {
                            const int r = hs + npt * i;
                            if (r < nh) {
                                const float4 qa4 = *(const float4 *)&qs[r][c], qb4 = *(const float4 *)&qs[r][c + 4];
                                float a = acc[i], b = acc2[i];
                                a = fmaf(qa4.x, f0.x, a);
                                a = fmaf(qa4.y, f0.y, a);
                                a = fmaf(qa4.z, f1.x, a);
                                a = fmaf(qa4.w, f1.y, a);
                                if (C::ILP2) {  // a second chain: half the dependent FMAs
                                    b = fmaf(qb4.x, f2.x, b);
                                    b = fmaf(qb4.y, f2.y, b);
                                    b = fmaf(qb4.z, f3.x, b);
                                    b = fmaf(qb4.w, f3.y, b);
                                } else {
                                    a = fmaf(qb4.x, f2.x, a);
                                    a = fmaf(qb4.y, f2.y, a);
                                    a = fmaf(qb4.z, f3.x, a);
                                    a = fmaf(qb4.w, f3.y, a);
                                }
                                acc[i] = a, acc2[i] = b;
                            }
                        }
                    }
                } else {
                    for (int c = 0; c < hd; c += 2) {
                        const float2 f = __half22float2(*(const __half2 *)(kr + c));
#pragma unroll
                        for (int i = 0; i < C::HPT; i++) {
                            const int r = hs + npt * i;
                            if (r < nh) {
                                const float2 q2 = *(const float2 *)&qs[r][c];
                                acc[i] = fmaf(q2.y, f.y, fmaf(q2.x, f.x, acc[i]));
                            }
                        }
                    }
                }
#pragma unroll
                for (int i = 0; i < C::HPT; i++) {
                    const int r = hs + npt * i;
                    if (r < nh) sc[r][jj] = (C::ILP2 ? acc[i] + acc2[i] : acc[i]) * scale;
                }
            }
        }
        __syncthreads();
        // online softmax: warp w updates heads w, w + WARPS over the tile's positions
#pragma unroll
        for (int i = 0; i < MAX_REP / WARPS; i++) {
            const int r = warp + WARPS * i;
            if (r < nh) {
                float mx = -INFINITY;
                for (int j = lane; j < cnt; j += 32) mx = fmaxf(mx, sc[r][j]);
                mx = warp_max(mx);
                const float mn = fmaxf(m_run[i], mx);  // finite: the tile has a position
                const float cr = expf(m_run[i] - mn);  // 0 on the first tile
                float sum = 0.0f;
                for (int j = lane; j < cnt; j += 32) {
                    const float e = expf(sc[r][j] - mn);
                    pr[j][r] = e;
                    sum += e;
                }
                sum = warp_sum(sum);
                l_run[i] = l_run[i] * cr + sum;
                m_run[i] = mn;
                if (lane == 0) corr[r] = cr;
            }
        }
        __syncthreads();
        // P.V: thread (dim pair dp, phase ph) for every head of the block
        if (dp_on) {
#pragma unroll
            for (int r = 0; r < MAX_REP; r++)
                if (r < nh) {
                    const float cr = corr[r];
                    o[r][0] *= cr;
                    o[r][1] *= cr;
                }
            const __half *vcol = vs + 2 * dp;
            for (int j = ph; j < cnt; j += C::PH) {
                const float2 v = __half22float2(*(const __half2 *)(vcol + j * ldv));
                const float4 pa = *(const float4 *)&pr[j][0];
                const float pv[4] = {pa.x, pa.y, pa.z, pa.w};
#pragma unroll
                for (int r = 0; r < 4; r++)
                    if (r < nh) {
                        o[r][0] = fmaf(pv[r], v.x, o[r][0]);
                        o[r][1] = fmaf(pv[r], v.y, o[r][1]);
                    }
                if (nh > 4) {
                    const float4 pb = *(const float4 *)&pr[j][4];
                    const float pw[4] = {pb.x, pb.y, pb.z, pb.w};
#pragma unroll
                    for (int r = 0; r < 4; r++)
                        if (r + 4 < nh) {
                            o[r + 4][0] = fmaf(pw[r], v.x, o[r + 4][0]);
                            o[r + 4][1] = fmaf(pw[r], v.y, o[r + 4][1]);
                        }
                }
            }
        }
        __syncthreads();  // stage it % STAGES, sc and pr consumed
        issue(it + C::STAGES);
    }
    if (p.late == 2) pdl_trigger();

    // This split's outputs: the phases' partial sums added through shared memory (the stages
    // are free now; the last issue() calls committed empty groups).
    float *ob = (float *)dyn;  // [PH][MAX_REP][MAXHD]
    constexpr int PHR = C::PH;
    if (dp_on)
#pragma unroll
        for (int r = 0; r < MAX_REP; r++)
            if (r < nh) {
                ob[((size_t)ph * MAX_REP + r) * MAXHD + 2 * dp] = o[r][0];
                ob[((size_t)ph * MAX_REP + r) * MAXHD + 2 * dp + 1] = o[r][1];
            }
    if (lane == 0)
#pragma unroll
        for (int i = 0; i < MAX_REP / WARPS; i++) {
            const int r = warp + WARPS * i;
            if (r < nh) mlv[r][0] = m_run[i], mlv[r][1] = l_run[i];
        }
    __syncthreads();
    const int h0 = g * p.rep + r0;  // first query head of the block
    const int hd4 = (hd + 3) / 4 * 4;
    const int ncol = p.n_kv * p.rep;
    const size_t rec0 = ((size_t)bx * p.splits + sp) * p.hb_max;  // this split's first record
    float *po = p.part, *pml = p.part + (size_t)ncol * p.splits * p.hb_max * hd4;
    for (int idx = tid; idx < nh * hd; idx += THREADS) {
        const int r = idx / hd, d = idx - r * hd;
        float s = 0.0f;
#pragma unroll
        for (int q = 0; q < PHR; q++) s += ob[((size_t)q * MAX_REP + r) * MAXHD + d];
        if (nsplit == 1) p.out[(size_t)(h0 + r) * hd + d] = s / mlv[r][1];
        else po[(rec0 + r) * hd4 + d] = s;
    }
    if (nsplit == 1) return;
    if (tid < nh) {
        pml[(rec0 + tid) * 2] = mlv[tid][0];
        pml[(rec0 + tid) * 2 + 1] = mlv[tid][1];
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) last_sh = atomicAdd(&p.count[bx], 1) == nsplit - 1;
    __syncthreads();
    if (!last_sh) return;
    __threadfence();
    // Combine: out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s, per head.
    // The (max, sum) pairs of every split go to shared memory in one batch, the weights are
    // computed once per (split, head), then each thread adds 4 consecutive outputs of a head
    // over the splits, 16 independent 16-byte loads at a time (the combine is on every layer's
    // critical path: 52 splits at context 4096 for the 2B model make 4 L2 round trips).
    float *wm = (float *)dyn, *wl = wm + (size_t)nsplit * MAX_REP;  // [split][head]
    const size_t recb = (size_t)bx * p.splits * p.hb_max;             // split 0's first record
    for (int idx = tid; idx < nsplit * nh; idx += THREADS) {
        const int s2 = idx / nh, r = idx - s2 * nh;
        const float2 v = __ldcg((const float2 *)(pml + (recb + (size_t)s2 * p.hb_max + r) * 2));
        wm[s2 * MAX_REP + r] = v.x;
        wl[s2 * MAX_REP + r] = v.y;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < MAX_REP / WARPS; i++) {
        const int r = warp + WARPS * i;
        if (r < nh) {
            float M = -INFINITY;
            for (int s2 = lane; s2 < nsplit; s2 += 32) M = fmaxf(M, wm[s2 * MAX_REP + r]);
            M = warp_max(M);
            float L = 0.0f;
            for (int s2 = lane; s2 < nsplit; s2 += 32) {
                const float w = expf(wm[s2 * MAX_REP + r] - M);
                wm[s2 * MAX_REP + r] = w;
                L = fmaf(wl[s2 * MAX_REP + r], w, L);
            }
            L = warp_sum(L);
            if (lane == 0) lsum[r] = L;
        }
    }
    __syncthreads();
    // With PC, the threads left over by the (head, 4 outputs) items take the splits in G groups,
    // whose sums are added through shared memory after the wm/wl table (fewer batches of loads
    // in a row: 32 splits at 256 threads and 4 heads of 128 make one batch instead of two).
    const int q4 = hd4 / 4, items = nh * q4;
    int G = C::PC ? THREADS / items : 1;
    G = G < 1 ? 1 : G > nsplit ? nsplit : G;
    const int span = (nsplit + G - 1) / G;
    float4 *gsum = (float4 *)(wl + (size_t)nsplit * MAX_REP);  // 64 * nsplit bytes from dyn: aligned
    for (int idx = tid; idx < G * items; idx += THREADS) {
        const int gi = idx / items, it = idx - gi * items;
        const int r = it / q4, d = (it - r * q4) * 4;
        const int sb = gi * span, se = min(nsplit, sb + span);
        const float *src = po + (recb + r) * hd4 + d;
        const size_t step = (size_t)p.hb_max * hd4;  // next split, same head
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int s0 = sb; s0 < se; s0 += C::CB) {
            float4 v[C::CB];
#pragma unroll
            for (int u = 0; u < C::CB; u++)
                v[u] = s0 + u < se ? __ldcg((const float4 *)(src + (size_t)(s0 + u) * step)) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < C::CB; u++)
                if (s0 + u < se) {
                    const float w = wm[(s0 + u) * MAX_REP + r];
                    acc.x = fmaf(v[u].x, w, acc.x);
                    acc.y = fmaf(v[u].y, w, acc.y);
                    acc.z = fmaf(v[u].z, w, acc.z);
                    acc.w = fmaf(v[u].w, w, acc.w);
                }
        }
        if (G > 1) {
            gsum[idx] = acc;
            continue;
        }
        const float L = lsum[r];
        float *dst = p.out + (size_t)(h0 + r) * hd + d;
        const float res[4] = {acc.x / L, acc.y / L, acc.z / L, acc.w / L};
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (d + e < hd) dst[e] = res[e];
    }
    if (G > 1) {
        __syncthreads();
        for (int it = tid; it < items; it += THREADS) {
            const int r = it / q4, d = (it - r * q4) * 4;
            float4 acc = gsum[it];
            for (int gi = 1; gi < G; gi++) {
                const float4 v = gsum[gi * items + it];
                acc.x += v.x, acc.y += v.y, acc.z += v.z, acc.w += v.w;
            }
            const float L = lsum[r];
            float *dst = p.out + (size_t)(h0 + r) * hd + d;
            const float res[4] = {acc.x / L, acc.y / L, acc.z / L, acc.w / L};
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (d + e < hd) dst[e] = res[e];
        }
    }
    if (tid == 0) p.count[bx] = 0;
}


// Splits of one KV group at most for a cache of ctx positions (sizes the scratch records).
inline int max_splits(int ctx) {
    const int s = (ctx + SCRATCH_CHUNK - 1) / SCRATCH_CHUNK;
    return s < MAX_SPLITS ? s : MAX_SPLITS;
}

// Fills p's split and block fields from the knobs and launches. p holds the shape, the pointers,
// late, and in p.splits the cap (max_splits). Splits: at long context (one block per KV head
// and split, n_cols blocks per split) they fill the blocks that fit on the GPU at once (knobs.
// per_sm per SM where the occupancy allows), within [1, cap]; rounded down so that they make
// one wave. The grid is the most blocks any position uses.
template <int MAXHD, bool VEC8, class C>
int launch(DecodeParams &p, const Knobs &k, int pdl, void *stream) {
    auto kern = attn_decode_kernel<MAXHD, VEC8, C>;
    const int rc = kcuda_prepare_func((const void *)kern);
    if (rc) return rc;
    // the largest dynamic shared memory any launch of this instantiation asks for
    static int attr_done;  // per instantiation
    if (!attr_done) {
        KCUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)dyn_smem<C, MAXHD>(MAXHD, VEC8, MAX_SPLITS)));
        attr_done = 1;
    }
    p.hg_lo = (p.rep + MAX_REP - 1) / MAX_REP;
    p.hg_hi = k.spread ? p.rep : p.hg_lo;
    p.hb_max = p.rep < MAX_REP ? p.rep : MAX_REP;
    p.min_chunk = k.min_chunk;
    p.align = k.align_tile ? C::TILE : 16;
    const int n_cols = p.n_kv * p.hg_lo;
    int nsm = kcuda_sm_count(), per_sm = 0;
    if (nsm <= 0) return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_attn_decode: no SM count");
    KCUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, C::THREADS, dyn_smem<C, MAXHD>(p.hd, VEC8, 1)));
    per_sm = per_sm < 1 ? 1 : per_sm > k.per_sm ? k.per_sm : per_sm;
    p.target = nsm * per_sm;
    int splits = p.target / n_cols;
    if (splits > p.splits) splits = p.splits;
    if (splits < 1) splits = 1;
    p.splits = splits;
    // <= target where the heads are spread (hg chosen from target), <= n_cols * splits where not
    const int blocks = p.target > n_cols * splits ? p.target : n_cols * splits;
    return kcuda_launch(kern, dim3((unsigned)blocks), dim3(C::THREADS), dyn_smem<C, MAXHD>(p.hd, VEC8, splits), stream, pdl, p);
}

}  // namespace attn_decode_knobs
}  // namespace
