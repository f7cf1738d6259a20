// Decode attention over the f16 KV cache with RoPE and GQA (one token; flash-decoding style).
// The prefill kernels are in attention_prefill.cu (and attention_wide.cu for wide heads).
//
// At long context, one block per (KV head, split of the context): the block loads each K/V row
// of its split once and computes every query head of that KV group from it (GQA 1..8 in one
// block; larger groups take several blocks per KV head). Why: the previous kernel ran one block
// per (query head, chunk of 64), so every row was loaded n_rep times (4 for the 2B model) and the
// grid was mostly tiny blocks; measured on an H100, decode at context 2756 ran at 665 tok/s
// against 859 at context 515, ~1.1 TB/s on the unique KV bytes.
//
// The grid is fixed per launch (the graph is captured once; the position lives in device
// memory): about the blocks that fit on the GPU at once (2 per SM here; the occupancy query
// says), with a number of splits chosen so that one block per KV head and split fills them.
// Each block derives its work from the position: the split length (at least 64 positions,
// longer at long context), and how many blocks per KV head and split work: up to one per query
// head where the splits are few, one (the whole group) where they fill the GPU. So a short
// context makes few splits (little to combine) and keeps the SMs busy over the query heads, and
// a long one makes ~2 blocks per SM that each stream their rows once.
//
// A block streams its span in tiles of 64 positions (32 for head_dim > 128) through two
// shared-memory stages filled by 16-byte cp.async, the first two issued before the PDL wait:
// the rows < pos are final before the previous kernel starts (earlier steps wrote them), so the
// KV traffic overlaps the QKV projection. Per tile: scores of all the group's heads (f32, q
// rotated in shared memory), an online softmax in f32 (running max and sum per head), and
// P.V accumulated in registers. A block that holds the current position computes its k (RoPE)
// and v after the wait, patches them into its tile and (the first block of the group) writes
// them to the cache. With more than one split, each block writes (max, sum, o) per head and the
// last block of the group to arrive combines them (no second launch: a launch plus its PDL wait
// costs ~1 us per layer, more than the combine at these sizes).
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/common.cuh"

namespace {

enum {
    THREADS = 128,
    WARPS = THREADS / 32,
    MAX_REP = 8,      // query heads of one block
    MIN_CHUNK = 64,   // positions of one split at least (a split costs a combine record)
    MAX_SPLITS = 256, // splits of one KV group at most (bounds the combine's shared memory)
    MAX_HD = 256,
};

struct DecodeParams {
    int n_heads, n_kv, rep;  // query heads, KV heads, query heads per KV head
    int hb_max, hg_min;      // query heads per block at most (<= MAX_REP); blocks per KV head at least
    int target;              // blocks that fill the GPU (SMs x blocks per SM)
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
__device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;" ::: "memory"); }

// Positions per tile and the thread mappings, by the largest head_dim an instantiation takes.
template <int MAXHD>
struct Cfg {
    static constexpr int TILE = MAXHD > 128 ? 32 : 64;
    static constexpr int NPT = THREADS / TILE;   // scores: threads per position (2 or 4)
    static constexpr int HPT = MAX_REP / NPT;    // scores: heads per thread at most
    static constexpr int DP = MAXHD / 2;         // P.V: threads over dimension pairs
    static constexpr int PH = THREADS / DP;      // P.V: position phases (4, 2, 1)
    static constexpr int QI = (MAX_REP * MAXHD / 2 + THREADS - 1) / THREADS;  // q pairs per thread
};

// Row strides (halves) of the K and V tiles: K rows padded by 16 bytes so that the 8 lanes of a
// 16-byte shared load hit 8 different bank groups (row stride = 4 banks mod 32); V rows are read
// along the row, so they are not padded. With head_dim % 8 != 0 the rows are 4-byte aligned.
__host__ __device__ __forceinline__ int ld_k(int hd, bool vec8) { return hd + (vec8 ? 8 : 2); }

// Dynamic shared memory: the two stages [K tile][V tile], reused at the end for the per-phase
// outputs and the combine's (max, sum) table.
template <int MAXHD>
__host__ __device__ __forceinline__ size_t stage_halves(int hd, bool vec8) {
    return (size_t)Cfg<MAXHD>::TILE * (ld_k(hd, vec8) + hd);
}
template <int MAXHD>
size_t dyn_smem(int hd, bool vec8, int splits) {
    size_t b = 2 * stage_halves<MAXHD>(hd, vec8) * sizeof(__half);
    const size_t red = (size_t)Cfg<MAXHD>::PH * MAX_REP * MAXHD * sizeof(float);
    const size_t comb = (size_t)2 * splits * MAX_REP * sizeof(float);
    if (red > b) b = red;
    if (comb > b) b = comb;
    return (b + 15) / 16 * 16;
}

// Split s of a context of kv_len positions: [s * chunk, min(kv_len, (s + 1) * chunk)).
__device__ __forceinline__ int split_chunk(int kv_len, int splits) {
    int chunk = (kv_len + splits - 1) / splits;
    chunk = (chunk + 15) / 16 * 16;
    return chunk < MIN_CHUNK ? MIN_CHUNK : chunk;
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
template <int MAXHD, bool VEC8>
__global__ void __launch_bounds__(THREADS) attn_decode_kernel(DecodeParams p) {
    using C = Cfg<MAXHD>;
    constexpr int TILE = C::TILE;
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
    const int chunk = split_chunk(kv_len, p.splits);
    const int nsplit = (kv_len + chunk - 1) / chunk;
    int hg = p.target / (p.n_kv * nsplit);  // blocks per KV head and split at this position
    hg = max(p.hg_min, min(p.rep, hg));
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
    const size_t stage_n = stage_halves<MAXHD>(hd, VEC8);

    // Issues the copy of tile it (positions t0 + it * TILE ...) into stage it & 1, row pos
    // excepted (written after the wait); always commits a group, so that "all but the newest
    // group done" means "tile it done" in the loop below.
    auto issue = [&](int it) {
        if (it < n_tiles) {
            __half *ks = stage0 + (size_t)(it & 1) * stage_n, *vs = ks + (size_t)TILE * ldk;
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
    issue(0);
    issue(1);
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
        const __half *ks = stage0 + (size_t)(it & 1) * stage_n;
        const __half *vs = ks + (size_t)TILE * ldk;
        cp_async_wait1();
        __syncthreads();  // tile it landed (all threads' copies); q, cur_k/cur_v written
        if (has_cur && pos - tb < cnt && pos >= tb) {
            const int jp = pos - tb;
            __half *kw = (__half *)ks + jp * ldk, *vw = (__half *)vs + jp * ldv;
            for (int d = tid; d < hd; d += THREADS) kw[d] = cur_k[d], vw[d] = cur_v[d];
            __syncthreads();
        }
        // scores: thread (position jj, head slice hs) over all head_dim, heads hs + NPT i
        {
            const int jj = tid % TILE, hs = tid / TILE;
            if (jj < cnt) {
                float acc[C::HPT];
#pragma unroll
                for (int i = 0; i < C::HPT; i++) acc[i] = 0.0f;
                const __half *kr = ks + jj * ldk;
                if (VEC8) {
                    for (int c = 0; c < hd; c += 8) {
                        const uint4 u = *(const uint4 *)(kr + c);
                        const __half2 *h2 = (const __half2 *)&u;
                        const float2 f0 = __half22float2(h2[0]), f1 = __half22float2(h2[1]);
                        const float2 f2 = __half22float2(h2[2]), f3 = __half22float2(h2[3]);
#pragma unroll
                        for (int i = 0; i < C::HPT; i++) {
                            const int r = hs + C::NPT * i;
                            if (r < nh) {
                                const float4 qa4 = *(const float4 *)&qs[r][c], qb4 = *(const float4 *)&qs[r][c + 4];
                                float a = acc[i];
                                a = fmaf(qa4.x, f0.x, a);
                                a = fmaf(qa4.y, f0.y, a);
                                a = fmaf(qa4.z, f1.x, a);
                                a = fmaf(qa4.w, f1.y, a);
                                a = fmaf(qb4.x, f2.x, a);
                                a = fmaf(qb4.y, f2.y, a);
                                a = fmaf(qb4.z, f3.x, a);
                                a = fmaf(qb4.w, f3.y, a);
                                acc[i] = a;
                            }
                        }
                    }
                } else {
                    for (int c = 0; c < hd; c += 2) {
                        const float2 f = __half22float2(*(const __half2 *)(kr + c));
#pragma unroll
                        for (int i = 0; i < C::HPT; i++) {
                            const int r = hs + C::NPT * i;
                            if (r < nh) {
                                const float2 q2 = *(const float2 *)&qs[r][c];
                                acc[i] = fmaf(q2.y, f.y, fmaf(q2.x, f.x, acc[i]));
                            }
                        }
                    }
                }
#pragma unroll
                for (int i = 0; i < C::HPT; i++) {
                    const int r = hs + C::NPT * i;
                    if (r < nh) sc[r][jj] = acc[i] * scale;
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
        __syncthreads();  // stage it & 1, sc and pr consumed
        issue(it + 2);
    }
    if (p.late == 2) pdl_trigger();

    // This split's outputs: the phases' partial sums added through shared memory (the stages
    // are free now; the last issue() calls committed empty groups).
    float *ob = (float *)dyn;  // [PH][MAX_REP][MAXHD]
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
        for (int q = 0; q < C::PH; q++) s += ob[((size_t)q * MAX_REP + r) * MAXHD + d];
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
    const int q4 = hd4 / 4;
    for (int idx = tid; idx < nh * q4; idx += THREADS) {
        const int r = idx / q4, d = (idx - r * q4) * 4;
        const float *src = po + (recb + r) * hd4 + d;
        const size_t step = (size_t)p.hb_max * hd4;  // next split, same head
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int s0 = 0; s0 < nsplit; s0 += 16) {
            float4 v[16];
#pragma unroll
            for (int u = 0; u < 16; u++)
                v[u] = s0 + u < nsplit ? __ldcg((const float4 *)(src + (size_t)(s0 + u) * step)) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < 16; u++)
                if (s0 + u < nsplit) {
                    const float w = wm[(s0 + u) * MAX_REP + r];
                    acc.x = fmaf(v[u].x, w, acc.x);
                    acc.y = fmaf(v[u].y, w, acc.y);
                    acc.z = fmaf(v[u].z, w, acc.z);
                    acc.w = fmaf(v[u].w, w, acc.w);
                }
        }
        const float L = lsum[r];
        float *dst = p.out + (size_t)(h0 + r) * hd + d;
        const float res[4] = {acc.x / L, acc.y / L, acc.z / L, acc.w / L};
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (d + e < hd) dst[e] = res[e];
    }
    if (tid == 0) p.count[bx] = 0;
}

// Query heads per block at most, and the fewest blocks per KV head (at most MAX_REP heads a block).
void head_blocks(const KcudaAttnShape *a, int *hg_min, int *hb_max) {
    const int rep = a->n_heads / a->n_kv;
    *hg_min = (rep + MAX_REP - 1) / MAX_REP;
    *hb_max = rep < MAX_REP ? rep : MAX_REP;
}

int max_splits(const KcudaAttnShape *a) {
    const int s = (a->ctx + MIN_CHUNK - 1) / MIN_CHUNK;
    return s < MAX_SPLITS ? s : MAX_SPLITS;
}

int decode_check(const KcudaAttnShape *a, const char *fn) {
    if (!a || !a->d_rope) return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL shape or rope table", fn);
    if (a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->head_dim <= 0 || a->head_dim % 2 ||
        a->head_dim > MAX_HD || a->ctx <= 0)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: heads %d/%d, head_dim %d, ctx %d unsupported (an even head_dim up to %d, query heads a multiple of KV heads)",
                          fn, a->n_heads, a->n_kv, a->head_dim, a->ctx, (int)MAX_HD);
    return KCUDA_OK;
}

template <int MAXHD, bool VEC8>
int launch_decode(DecodeParams &p, int n_cols, int pdl, void *stream) {
    auto kern = attn_decode_kernel<MAXHD, VEC8>;
    const int rc = kcuda_prepare_func((const void *)kern);
    if (rc) return rc;
    // the largest dynamic shared memory any launch of this instantiation asks for
    const size_t smax = dyn_smem<MAXHD>(MAXHD, VEC8, MAX_SPLITS);
    static int attr_done;  // per instantiation
    if (!attr_done) {
        KCUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smax));
        attr_done = 1;
    }
    // Splits: at long context (n_cols blocks per split, one per KV head) the splits fill the
    // blocks that fit on the GPU at once (2 per SM where the occupancy allows: the K/V of a
    // block's span then all in flight from before the wait), within [1, max_splits]; rounded
    // down so that they make one wave. Each block takes >= MIN_CHUNK positions.
    int dev = 0, nsm = 0, per_sm = 0;
    KCUDA_TRY(cudaGetDevice(&dev));
    KCUDA_TRY(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev));
    const size_t smem_probe = dyn_smem<MAXHD>(p.hd, VEC8, 1);
    KCUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, THREADS, smem_probe));
    per_sm = per_sm < 1 ? 1 : per_sm > 2 ? 2 : per_sm;
    const int target = nsm * per_sm;
    p.target = target;
    int splits = target / n_cols;
    if (splits > p.splits) splits = p.splits;  // p.splits holds the cap (max_splits)
    if (splits < 1) splits = 1;
    p.splits = splits;
    // the most blocks any position uses: <= target where the heads are spread (hg chosen from
    // target), <= n_cols * splits where they are not
    const int blocks = target > n_cols * splits ? target : n_cols * splits;
    const size_t smem = dyn_smem<MAXHD>(p.hd, VEC8, splits);
    return kcuda_launch(kern, dim3((unsigned)blocks), dim3(THREADS), smem, stream, pdl, p);
}

}  // namespace

extern "C" size_t kcuda_attn_decode_scratch(const KcudaAttnShape *a) {
    if (!a || a->n_heads <= 0 || a->n_kv <= 0 || a->head_dim <= 0 || a->ctx <= 0) return 0;
    int hg_min, hb_max;
    head_blocks(a, &hg_min, &hb_max);
    const size_t hd4 = (size_t)(a->head_dim + 3) / 4 * 4;
    return (size_t)a->n_heads * max_splits(a) * hb_max * (hd4 + 2);
}

extern "C" int kcuda_attn_decode(const KcudaAttnShape *a, const float *d_qkv, uint16_t *d_kc,
                                 uint16_t *d_vc, const int *d_pos, float *d_out, float *d_part,
                                 int *d_count, int pdl, void *stream) {
    int rc = decode_check(a, "kcuda_attn_decode");
    if (rc) return rc;
    if (!d_qkv || !d_kc || !d_vc || !d_pos || !d_out || !d_part || !d_count)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_decode: NULL pointer");
    const bool vec8 = a->head_dim % 8 == 0;
    if ((uintptr_t)d_part % 16 || (uintptr_t)d_kc % (vec8 ? 16 : 4) || (uintptr_t)d_vc % (vec8 ? 16 : 4))
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_decode: misaligned cache or scratch pointer");
    if (pdl < KCUDA_PDL_OFF || pdl > KCUDA_PDL_AFTER_WORK)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_decode: launch option %d", pdl);
    DecodeParams p = {};
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv;
    p.rep = a->n_heads / a->n_kv;
    head_blocks(a, &p.hg_min, &p.hb_max);
    p.hd = a->head_dim;
    p.ctx = a->ctx;
    p.style = a->rope_style;
    p.splits = max_splits(a);
    p.late = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;
    p.rope = a->d_rope;
    p.qkv = d_qkv;
    p.kc = (__half *)d_kc;
    p.vc = (__half *)d_vc;
    p.pos = d_pos;
    p.out = d_out;
    p.part = d_part;
    p.count = d_count;
    const int n_cols = a->n_kv * p.hg_min;
    if (a->head_dim <= 64)
        return vec8 ? launch_decode<64, true>(p, n_cols, pdl, stream) : launch_decode<64, false>(p, n_cols, pdl, stream);
    if (a->head_dim <= 128)
        return vec8 ? launch_decode<128, true>(p, n_cols, pdl, stream) : launch_decode<128, false>(p, n_cols, pdl, stream);
    return vec8 ? launch_decode<256, true>(p, n_cols, pdl, stream) : launch_decode<256, false>(p, n_cols, pdl, stream);
}

// Shapes the tiled prefill kernels (attention_prefill.cu) support: their shared-memory tiles hold
// head_dim <= 128 in multiples of 16 and up to 8 query heads per KV head; other heads take
// attention_wide.cu. (Decode takes any even head_dim up to 256 and any grouping: decode_check.)
int kcuda_attn_check_shape(const KcudaAttnShape *a, const char *fn) {
    if (!a || !a->d_rope) return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL shape or rope table", fn);
    if (a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->n_heads / a->n_kv > MAX_REP ||
        a->head_dim <= 0 || a->head_dim > 128 || a->head_dim % 16 || a->ctx <= 0)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: heads %d/%d, head_dim %d, ctx %d unsupported (head_dim a multiple of 16 up to 128, at most 8 query heads per KV head)", fn, a->n_heads, a->n_kv, a->head_dim, a->ctx);
    return KCUDA_OK;
}
