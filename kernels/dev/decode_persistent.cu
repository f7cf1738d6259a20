// The persistent decode kernel (decode_persistent.h): every layer of one decode step in one
// cooperative launch, two blocks of 256 threads per SM, each block's weights of the next GEMV
// loaded into registers before it waits for the current step's input, steps released by device
// counters.
#include <cuda_fp16.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/w2a8_gemv.cuh"
#include "kernels/dev/decode_persistent.h"
#include "kernels/w2a8.h"

namespace {

enum {
    PD_THREADS = 256,  // the product GEMV prologue's reduction order (gemv_prologue_fast<256>)
    PD_WARPS = PD_THREADS / 32,
    PD_NG = PD_THREADS / 8,  // 8-lane groups of the dot products
    PD_MAX_K = 16384,        // k_pad of a GEMV input (shared memory of the int8 vector)
    PD_MAX_ROWS = 512,       // rows of one GEMV step per block
    PD_MAX_REP = 8,
    PD_MAX_HD = 256,
    PD_ATT_CHUNK = 256,  // positions of one attention task at most
    PD_ATT_BATCH = 64,   // positions whose K rows a block loads in one batch (8 per warp)
    PD_MAX_LAYERS = 64,  // the layer table sits in shared memory
};
// 16-byte weight pieces per thread held in registers for each GEMV (QKV, O, gate/up, down); a
// step with more pieces per thread runs further rounds after its wait. 2B-4T on 264 blocks
// needs exactly 3, 2, 10 and 5 (Llama3-8B shapes take two or more rounds).
enum { PD_WQ = 3, PD_WO = 2, PD_WG = 10, PD_WD = 5 };
// float4s of the input vector per thread in the fast prologue (k_pad <= 4 * 256 * MAXC); larger
// inputs take the general prologue (three passes over x: correct, slower).
enum { PD_MAXC_D = 3, PD_MAXC_F = 7 };
enum { PD_VARIANTS = 3 };  // when the next GEMV's loads are issued (decode_persistent_kernel)

struct PdLayerDev {
    const uint8_t *w[4];   // QKV, O, gate/up (interleaved), down
    const float *norm[4];  // attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm
    __half *kc, *vc;
    float g[4][3];
    int seg[4][2];
    int act;  // the gate/up activation (KcudaTernary.act)
};

struct PdStep {
    int n_out, k_in, k_pad, rb, align;  // rb: row bytes; align: rows kept together (gate/up pairs)
};

struct PdParams {
    const PdLayerDev *layers;
    int n_layers;
    PdStep st[4];
    int n_heads, n_kv, hd, ctx, style, max_splits;
    float eps;
    const float *rope;
    const int *pos;
    float *x, *qkv, *att, *gu, *part;
    unsigned *cnt;   // [n_layers * 5 + 1]: step counters, then the exit counter
    unsigned *gcnt;  // [n_heads]: finished slices of each attention unit (query head or KV group)
    KcudaDecodeTaps taps;
};

// ---- synchronisation ----------------------------------------------------------------------------
__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ unsigned ld_relaxed(const unsigned *p) {
    unsigned v;
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void red_release_add(unsigned *p, unsigned v) {
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned long long globaltimer() {
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    return now;
}
__device__ __forceinline__ void trace_at(unsigned long long *t) {
    if (t) *t = globaltimer();
}
// The lab timeline slot of (layer, step, which) for this block, or NULL.
__device__ __forceinline__ unsigned long long *trace_slot(unsigned long long *tr, int n_layers, int l, int k, int which) {
    return tr ? tr + (((size_t)blockIdx.x * n_layers + l) * 5 + k) * 6 + which : nullptr;
}

// The grid-wide step counters follow CUTLASS's generic barrier (cutlass/barrier.h): a block
// counts a step with __syncthreads then one red.release.gpu from thread 0; a waiting block's
// thread 0 polls with ld.acquire.gpu, then __syncthreads. The barrier orders the other threads'
// writes before the release and their reads after the acquire. The poll is relaxed and one
// acquire load follows it: an acquire invalidates the SM's L1 (CCTL.IVALL in the SASS), which
// the other block on the SM may be reading through. t: lab timeline slots (the release; t[4]:
// when the wait began).
__device__ __forceinline__ void wait_count(const unsigned *c, unsigned target, unsigned long long *t) {
    if (threadIdx.x == 0) {
        if (t) t[4] = globaltimer();
        while (ld_relaxed(c) < target) {
        }
        (void)ld_acquire(c);  // >= target (the counters only grow within a launch)
        trace_at(t);
    }
    __syncthreads();
}
__device__ __forceinline__ void signal_count(unsigned *c, unsigned long long *t) {
    __syncthreads();
    if (threadIdx.x == 0) {
        red_release_add(c, 1u);
        trace_at(t);
    }
}

// ---- GEMV geometry --------------------------------------------------------------------------------
// A block owns rows [r0, r0 + nrows) of a GEMV. Its work items are (row, segment) pairs: when it
// has fewer rows than 8-lane groups, each row is cut into nseg segments of 8C pieces (16 bytes =
// 64 weights) so that every group has work; integer partial sums, so the cut changes no bit.
// Item it = grp + NG * (k / C) of thread piece k; the lane's pieces of an item are sub + 8j.
struct PdGeo {
    int r0, nrows, nseg, C, nk, items, P;
};

__device__ __forceinline__ void block_rows(const PdStep &s, int b, int G, int *r0, int *r1) {
    const long long units = s.n_out / s.align;
    *r0 = (int)(units * b / G) * s.align;
    *r1 = (int)(units * (b + 1) / G) * s.align;
}

__device__ void geo_init(const PdStep &S, int b, int G, PdGeo &g) {
    int r0, r1;
    block_rows(S, b, G, &r0, &r1);
    const int nrows = r1 - r0, P = S.rb >> 4;
    int nseg = nrows > 0 ? max(1, PD_NG / nrows) : 1;
    nseg = min(nseg, max(1, P / 8));
    const int C = (P + 8 * nseg - 1) / (8 * nseg);
    nseg = (P + 8 * C - 1) / (8 * C);
    g.r0 = r0;
    g.nrows = nrows;
    g.nseg = nseg;
    g.C = C;
    g.P = P;
    g.items = nrows * nseg;
    g.nk = (g.items + PD_NG - 1) / PD_NG * C;
}

// This thread's pieces k = k0, k0 + 1, ... in order: item it = grp + NG * (k / C) (its row
// within the block and segment), piece pc = segment * 8C + sub + 8 (k % C). Stepped without a
// division per piece (two integer divisions by runtime values cost ~40 instructions, and the
// dot products sit on the critical path); divides only where the item changes.
struct PieceIt {
    int k, kp, kc, row, pc0, it;
    __device__ __forceinline__ void item(const PdGeo &g) {
        it = (threadIdx.x >> 3) + PD_NG * kc;
        const int seg = g.nrows > 0 ? it / g.nrows : 0;
        row = it - seg * g.nrows;
        pc0 = seg * 8 * g.C + (threadIdx.x & 7);
    }
    __device__ __forceinline__ PieceIt(const PdGeo &g, int k0) : k(k0) {
        kc = k0 / g.C;
        kp = k0 - kc * g.C;
        item(g);
    }
    __device__ __forceinline__ int pc() const { return pc0 + 8 * kp; }
    __device__ __forceinline__ bool ok(const PdGeo &g) const { return k < g.nk && it < g.items && pc() < g.P; }
    __device__ __forceinline__ void next(const PdGeo &g) {
        k++;
        if (++kp == g.C) {
            kp = 0;
            kc++;
            item(g);
        }
    }
};

// Issues round `round` of this thread's weight loads (16-byte, non-coherent, streaming).
template <int W>
__device__ __forceinline__ void pd_load(uint4 (&w)[W], const uint8_t *base, int rb, const PdGeo &g, int round) {
    PieceIt pi(g, round * W);
#pragma unroll
    for (int i = 0; i < W; i++) {
        w[i] = pi.ok(g) ? ld_stream((const uint4 *)(base + (size_t)(g.r0 + pi.row) * rb) + pi.pc()) : make_uint4(0, 0, 0, 0);
        pi.next(g);
    }
}

// Dot products of round `round` against the int8 input qs (act_offset layout): the product
// GEMV's dot_chunk per piece, each item's sum reduced over its 8 lanes and added into acc[row]
// (shared memory, exact integers).
template <int W>
__device__ __forceinline__ void pd_dot(const uint4 (&w)[W], const PdGeo &g, int round, const int8_t *qs, int *acc) {
    int a4[4] = {0, 0, 0, 0};
    PieceIt pi(g, round * W);
#pragma unroll
    for (int i = 0; i < W; i++) {
        if (pi.k >= g.nk) break;  // uniform over the block
        if (pi.ok(g)) dot_chunk(w[i], qs, pi.pc(), a4);
        if (pi.kp == g.C - 1 || pi.k == g.nk - 1 || i == W - 1) {  // uniform: the item ends here
            int t = dot_total(a4);
            t += __shfl_xor_sync(0xffffffffu, t, 4);
            t += __shfl_xor_sync(0xffffffffu, t, 2);
            t += __shfl_xor_sync(0xffffffffu, t, 1);
            if ((threadIdx.x & 7) == 0 && pi.it < g.items) atomicAdd(&acc[pi.row], t);
            a4[0] = a4[1] = a4[2] = a4[3] = 0;
        }
        pi.next(g);
    }
}

struct PdShared {
    int8_t qs[PD_MAX_K];  // GEMV input; attention: the P.V partials (4096 floats)
    int acc[PD_MAX_ROWS];
    float att_q[PD_MAX_REP * PD_MAX_HD];
    float att_sc[PD_MAX_REP * PD_ATT_CHUNK];
    float kcur[PD_MAX_HD], vcur[PD_MAX_HD];  // this position's rotated k and v, f16-rounded
    float att_ml[PD_MAX_REP][2];
    float red[GEMV_RED], red2[PD_WARPS];
    int qred[PD_WARPS];
    int flag;
    PdGeo geo[4];
    PdLayerDev layers[PD_MAX_LAYERS];
};

// One GEMV step M (0 QKV, 1 O, 2 gate/up, 3 down) of layer l with this block's weights already
// in (or on their way to) w. pre() runs before the wait, mid() after the prologue (when its
// registers are free again): they issue the next step's weight loads.
template <int M, int W, int MAXC, class Pre, class Mid>
__device__ __forceinline__ void gemv_step(const PdParams &p, int l, unsigned target, PdShared &sh, uint4 (&w)[W],
                                          Pre &&pre, Mid &&mid) {
    const PdStep &S = p.st[M];
    const PdGeo &g = sh.geo[M];
    const PdLayerDev &L = sh.layers[l];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int r0 = g.r0, nrows = g.nrows;
    constexpr int K = M == 0 ? 0 : M + 1;  // step index within the layer
    unsigned long long *const tr = tid == 0 ? trace_slot(p.taps.trace, p.n_layers, l, K, 0) : nullptr;
    if (tr) tr[5] = globaltimer();
    // For the residual steps, the rows of x this block owns (O and down split x's rows
    // identically, so this block wrote them itself, before this step): loaded before the wait.
    float xold[PD_MAX_ROWS / PD_THREADS];
#pragma unroll
    for (int u = 0; u < PD_MAX_ROWS / PD_THREADS; u++) {
        const int i = tid + u * PD_THREADS;
        xold[u] = (M == 1 || M == 3) && i < nrows ? __ldcg(p.x + r0 + i) : 0.0f;
    }
    pre();
    // input complete: QKV after the previous layer's down, O after attention, gate/up after O,
    // down after gate/up
    if (M == 0 && l > 0) wait_count(p.cnt + (l - 1) * 5 + 4, target, tr);
    if (M == 0 && l == 0 && tr) tr[4] = tr[0] = globaltimer();
    if (M != 0) wait_count(p.cnt + l * 5 + K - 1, target, tr);
    for (int i = tid; i < nrows; i += PD_THREADS) sh.acc[i] = 0;
    GemvParams gp = {};
    gp.x = M == 0 || M == 2 ? p.x : M == 1 ? p.att : p.gu;
    gp.norm_w = L.norm[M];
    gp.eps = p.eps;
    gp.k_in = S.k_in;
    gp.k_pad = S.k_pad;
    float s;
    if (S.k_pad <= 4 * PD_THREADS * MAXC) {
        // the norm weights with x in one batch (registers are kept for the weights)
        float4 wn[MAXC];
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int e = 4 * (tid + PD_THREADS * i);
            wn[i] = e < S.k_in ? __ldg((const float4 *)(gp.norm_w + e)) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
        s = gemv_prologue_fast<PD_THREADS, MAXC>(gp, wn, sh.qs, sh.red, sh.red2, sh.qred, lane, warp);
    } else {
        s = gemv_prologue_general<PD_THREADS>(gp, sh.qs, sh.red, sh.qred, lane, warp);
    }
    __syncthreads();  // q and the zeroed accumulators complete
    if (tr) tr[2] = globaltimer();
    mid();
    const uint8_t *wbase = L.w[M];
    pd_dot<W>(w, g, 0, sh.qs, sh.acc);
    for (int r = 1; r * W < g.nk; r++) {  // shapes whose pieces do not fit the registers
        pd_load<W>(w, wbase, S.rb, g, r);
        pd_dot<W>(w, g, r, sh.qs, sh.acc);
    }
    __syncthreads();  // accumulators complete
    if (tr) tr[3] = globaltimer();
    int qsum = 0;
#pragma unroll
    for (int i = 0; i < PD_WARPS; i++) qsum += sh.qred[i];
    const float g0 = L.g[M][0], g1 = L.g[M][1], g2 = L.g[M][2];
    if (M == 2) {
        for (int i = 2 * tid; i < nrows; i += 2 * PD_THREADS) {
            const float yg = __fmul_rn(__fdiv_rn((float)(sh.acc[i] - qsum), s), g0);
            const float yu = __fmul_rn(__fdiv_rn((float)(sh.acc[i + 1] - qsum), s), g1);
            const float m = glu_act_mul(yg, yu, L.act);
            const int o = (r0 + i) >> 1;
            p.gu[o] = m;
            if (p.taps.gu) p.taps.gu[(size_t)l * (S.n_out >> 1) + o] = m;
        }
    } else {
        const int seg0 = L.seg[M][0], seg1 = L.seg[M][1];
#pragma unroll
        for (int u = 0; u < PD_MAX_ROWS / PD_THREADS; u++) {
            const int i = tid + u * PD_THREADS;
            if (i >= nrows) break;
            const int r = r0 + i;
            const float gg = r < seg0 ? g0 : r < seg1 ? g1 : g2;
            const float y = __fmul_rn(__fdiv_rn((float)(sh.acc[i] - qsum), s), gg);
            if (M == 0) {
                p.qkv[r] = y;
                if (p.taps.qkv) p.taps.qkv[(size_t)l * S.n_out + r] = y;
            } else {
                const float v = __fadd_rn(xold[u], y);
                p.x[r] = v;
                float *t = M == 1 ? p.taps.x_mid : p.taps.x_out;
                if (t) t[(size_t)l * S.n_out + r] = v;
            }
        }
    }
    if (p.taps.q[M] && blockIdx.x == 0) {
        for (int e = tid; e < S.k_pad; e += PD_THREADS) p.taps.q[M][(size_t)l * S.k_pad + e] = sh.qs[act_offset(e)];
        if (tid == 0) p.taps.s[M][l] = s;
    }
    signal_count(p.cnt + l * 5 + K, trace_slot(p.taps.trace, p.n_layers, l, K, 1));
}

// ---- attention --------------------------------------------------------------------------------
// Tasks: at short context one per (query head, 64 positions), so that a few hundred positions
// still spread over many blocks; where that would not fit in one task per block, one per (KV
// group, slice of the context) loading each K/V row once for the group's heads. A unit (query
// head or KV group) with several slices is combined by its last slice to finish.
struct AttPlan {
    int nh, chunk, nsplit, ntask, units;
};
__device__ __forceinline__ AttPlan att_plan(const PdParams &p, int pos) {
    const int kv_len = pos + 1, rep = p.n_heads / p.n_kv, G = gridDim.x;
    AttPlan a;
    const int ns64 = (kv_len + PD_ATT_BATCH - 1) / PD_ATT_BATCH;
    if (p.n_heads * ns64 <= G) {
        a.nh = 1;
        a.chunk = PD_ATT_BATCH;
        a.units = p.n_heads;
    } else {
        a.nh = rep;
        const int spl = max(1, G / p.n_kv);
        int chunk = (kv_len + spl - 1) / spl;
        a.chunk = min((int)PD_ATT_CHUNK, max((int)PD_ATT_BATCH, (chunk + 31) / 32 * 32));
        a.units = p.n_kv;
    }
    a.nsplit = (kv_len + a.chunk - 1) / a.chunk;
    a.ntask = a.units * a.nsplit;
    return a;
}

// K rows of positions t0 + j0 + warp + 8 pp (pp < 8) as f16 pairs (lane + 32u of the row); the
// row of `pos` is not read (this step writes it; the rotated k comes from shared memory).
__device__ __forceinline__ void load_k(uint32_t (&kr)[8][4], const __half *kc, size_t head_base, int hd, int t0,
                                       int j0, int nt, int pos) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, NP = hd >> 1;
#pragma unroll
    for (int pp = 0; pp < 8; pp++) {
        const int j = j0 + warp + 8 * pp, t = t0 + j;
        const uint32_t *row = (const uint32_t *)(kc + head_base + (size_t)t * hd);
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int d2 = lane + 32 * u;
            kr[pp][u] = j < nt && t != pos && d2 < NP ? row[d2] : 0u;
        }
    }
}

__device__ __forceinline__ float2 h2f(uint32_t v) { return __half22float2(*(const __half2 *)&v); }

// Attention of layer l. pre() runs first (issues the next GEMV's weight loads).
template <class Pre>
__device__ __forceinline__ void attention_step(const PdParams &p, int l, int pos, PdShared &sh, Pre &&pre) {
    const int G = gridDim.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hd = p.hd, half = hd / 2, NP = hd / 2, rep = p.n_heads / p.n_kv;
    const int kv_len = pos + 1;
    const AttPlan a = att_plan(p, pos);
    pre();
    if ((int)blockIdx.x >= a.ntask) return;
    const PdLayerDev &L = sh.layers[l];
    __half *const kc = L.kc, *const vc = L.vc;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *cs = p.rope + (size_t)pos * hd;
    const int q_dim = p.n_heads * hd, kv_dim = p.n_kv * hd;
    const int rec = hd + 2, nh = a.nh;
    const int slices = PD_THREADS / NP;  // P.V: position slices of NP threads each
    float *pv = (float *)sh.qs;          // P.V partials [slice][head][hd]
    uint32_t kr[8][4];
    bool first = true;
    for (int task = blockIdx.x; task < a.ntask; task += G) {
        int g, hb, sp, unit;
        if (nh == 1) {
            unit = task / a.nsplit, sp = task - unit * a.nsplit;
            hb = unit, g = unit / rep;
        } else {
            g = task % p.n_kv, sp = task / p.n_kv;
            unit = g, hb = g * rep;
        }
        const int t0 = sp * a.chunk, nt = min(a.chunk, kv_len - t0);
        const bool last = t0 + nt == kv_len;
        const bool writer = last && hb % rep == 0;  // one task per KV group writes the cache row
        const size_t head_base = (size_t)g * p.ctx * hd;
        load_k(kr, kc, head_base, hd, t0, 0, nt, pos);  // rows < pos are final: before the wait
        if (first) {
            wait_count(p.cnt + l * 5 + 0, (unsigned)G, tid == 0 ? trace_slot(p.taps.trace, p.n_layers, l, 1, 0) : nullptr);
            first = false;
        }
        // q of the task's heads, rotated; this position's k (rotated) and v, f16-rounded
        for (int idx = tid; idx < nh * half; idx += PD_THREADS) {
            const int h = idx / half, i = idx % half;
            const int i0 = p.style == 0 ? i : 2 * i, i1 = p.style == 0 ? i + half : 2 * i + 1;
            const float *q = p.qkv + (size_t)(hb + h) * hd;
            const float x0 = __ldcg(q + i0), x1 = __ldcg(q + i1), c = cs[2 * i], s = cs[2 * i + 1];
            sh.att_q[h * hd + i0] = x0 * c - x1 * s;
            sh.att_q[h * hd + i1] = x1 * c + x0 * s;
        }
        if (last) {
            const float *k = p.qkv + q_dim + (size_t)g * hd, *v = p.qkv + q_dim + kv_dim + (size_t)g * hd;
            for (int i = tid; i < half; i += PD_THREADS) {
                const int i0 = p.style == 0 ? i : 2 * i, i1 = p.style == 0 ? i + half : 2 * i + 1;
                const float x0 = __ldcg(k + i0), x1 = __ldcg(k + i1), c = cs[2 * i], s = cs[2 * i + 1];
                const __half h0 = __float2half_rn(x0 * c - x1 * s), h1 = __float2half_rn(x1 * c + x0 * s);
                sh.kcur[i0] = __half2float(h0);
                sh.kcur[i1] = __half2float(h1);
                if (writer) {
                    kc[head_base + (size_t)pos * hd + i0] = h0;
                    kc[head_base + (size_t)pos * hd + i1] = h1;
                }
            }
            for (int d = tid; d < hd; d += PD_THREADS) {
                const __half hv = __float2half_rn(__ldcg(v + d));
                sh.vcur[d] = __half2float(hv);
                if (writer) vc[head_base + (size_t)pos * hd + d] = hv;
            }
        }
        __syncthreads();
        // scores: a warp per position, lanes over f16 pairs of the row
        for (int j0 = 0; j0 < nt; j0 += PD_ATT_BATCH) {
            if (j0 > 0) load_k(kr, kc, head_base, hd, t0, j0, nt, pos);
#pragma unroll
            for (int pp = 0; pp < 8; pp++) {
                const int j = j0 + warp + 8 * pp;
                if (j >= nt) break;  // uniform per warp
                const bool cur = t0 + j == pos;
                float2 kf[4];
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    const int d2 = lane + 32 * u;
                    kf[u] = cur ? (d2 < NP ? make_float2(sh.kcur[2 * d2], sh.kcur[2 * d2 + 1]) : make_float2(0.f, 0.f))
                                : h2f(kr[pp][u]);
                }
#pragma unroll
                for (int h = 0; h < PD_MAX_REP; h++) {
                    if (h >= nh) break;
                    float part = 0.0f;
#pragma unroll
                    for (int u = 0; u < 4; u++) {
                        const int d2 = lane + 32 * u;
                        if (d2 < NP) {
                            const float2 qv = *(const float2 *)&sh.att_q[h * hd + 2 * d2];
                            part = fmaf(qv.x, kf[u].x, part);
                            part = fmaf(qv.y, kf[u].y, part);
                        }
                    }
                    const float t = warp_sum(part);
                    if (lane == 0 && j < nt) sh.att_sc[h * PD_ATT_CHUNK + j] = t * scale;
                }
            }
        }
        __syncthreads();
        if (warp < nh) {  // softmax of head `warp` over the slice
            float *sc = sh.att_sc + warp * PD_ATT_CHUNK;
            float m = -INFINITY;
            for (int j = lane; j < nt; j += 32) m = fmaxf(m, sc[j]);
            m = warp_max(m);
            float sum = 0.0f;
            for (int j = lane; j < nt; j += 32) {
                const float e = expf(sc[j] - m);
                sc[j] = e;
                sum += e;
            }
            sum = warp_sum(sum);
            if (lane == 0) sh.att_ml[warp][0] = m, sh.att_ml[warp][1] = sum;
        }
        __syncthreads();
        // P.V: thread (slice, pair) reads v[j][2 d2 .. 2 d2 + 1] once for all the task's heads
        {
            const int sl = tid / NP, d2 = tid - sl * NP;
            if (sl < slices) {
                float2 o[PD_MAX_REP];
#pragma unroll
                for (int h = 0; h < PD_MAX_REP; h++) o[h] = make_float2(0.f, 0.f);
                const uint32_t *vr = (const uint32_t *)(vc + head_base) + d2;
                for (int j0 = sl; j0 < nt; j0 += slices * 16) {
                    uint32_t vv[16];
#pragma unroll
                    for (int u = 0; u < 16; u++) {
                        const int j = j0 + u * slices, t = t0 + j;
                        vv[u] = j < nt && t != pos ? vr[(size_t)t * NP] : 0u;
                    }
#pragma unroll
                    for (int u = 0; u < 16; u++) {
                        const int j = j0 + u * slices;
                        if (j < nt) {
                            const float2 vf =
                                t0 + j == pos ? make_float2(sh.vcur[2 * d2], sh.vcur[2 * d2 + 1]) : h2f(vv[u]);
#pragma unroll
                            for (int h = 0; h < PD_MAX_REP; h++)
                                if (h < nh) {
                                    const float pr = sh.att_sc[h * PD_ATT_CHUNK + j];
                                    o[h].x = fmaf(pr, vf.x, o[h].x);
                                    o[h].y = fmaf(pr, vf.y, o[h].y);
                                }
                        }
                    }
                }
#pragma unroll
                for (int h = 0; h < PD_MAX_REP; h++)
                    if (h < nh) *(float2 *)&pv[((size_t)sl * nh + h) * hd + 2 * d2] = o[h];
            }
        }
        __syncthreads();
        const int nsplit = a.nsplit;
        float *part_h = p.part + (size_t)hb * p.max_splits * rec;  // records [head][split][rec]
        for (int idx = tid; idx < nh * hd; idx += PD_THREADS) {
            const int h = idx / hd, d = idx - h * hd;
            float o = 0.0f;
            for (int s2 = 0; s2 < slices; s2++) o += pv[((size_t)s2 * nh + h) * hd + d];
            if (nsplit == 1) {
                const float r = o / sh.att_ml[h][1];
                const size_t oi = (size_t)(hb + h) * hd + d;
                p.att[oi] = r;
                if (p.taps.att) p.taps.att[(size_t)l * q_dim + oi] = r;
            } else {
                float *rp = part_h + ((size_t)h * p.max_splits + sp) * rec;
                rp[2 + d] = o;
                if (d == 0) rp[0] = sh.att_ml[h][0], rp[1] = sh.att_ml[h][1];
            }
        }
        bool done = nsplit == 1;
        if (!done) {
            __threadfence();
            __syncthreads();
            if (tid == 0) sh.flag = atomicAdd(&p.gcnt[unit], 1u) == (unsigned)nsplit - 1;
            __syncthreads();
            done = sh.flag;
            if (done) {
                __threadfence();
                // (max, sum) of every (head, slice) record into shared memory in one batch
                float *ml = sh.att_sc;  // nh * nsplit pairs (the plan bounds rep * max_splits)
                for (int idx = tid; idx < nh * nsplit; idx += PD_THREADS) {
                    const int h = idx / nsplit, s2 = idx - h * nsplit;
                    const float *rp = part_h + ((size_t)h * p.max_splits + s2) * rec;
                    ml[2 * idx] = __ldcg(rp);
                    ml[2 * idx + 1] = __ldcg(rp + 1);
                }
                __syncthreads();
                for (int idx = tid; idx < nh * hd; idx += PD_THREADS) {
                    const int h = idx / hd, d = idx - h * hd;
                    const float *rp = part_h + (size_t)h * p.max_splits * rec + 2 + d;
                    const float *mh = ml + 2 * h * nsplit;
                    float M = -INFINITY;
                    for (int s2 = 0; s2 < nsplit; s2++) M = fmaxf(M, mh[2 * s2]);
                    float num = 0.0f, den = 0.0f;
                    for (int s0 = 0; s0 < nsplit; s0 += 8) {
                        float ov[8];
#pragma unroll
                        for (int u = 0; u < 8; u++) ov[u] = s0 + u < nsplit ? __ldcg(rp + (size_t)(s0 + u) * rec) : 0.0f;
#pragma unroll
                        for (int u = 0; u < 8; u++)
                            if (s0 + u < nsplit) {
                                const float f = expf(mh[2 * (s0 + u)] - M);
                                den = fmaf(mh[2 * (s0 + u) + 1], f, den);
                                num = fmaf(ov[u], f, num);
                            }
                    }
                    const float r = num / den;
                    const size_t oi = (size_t)(hb + h) * hd + d;
                    p.att[oi] = r;
                    if (p.taps.att) p.taps.att[(size_t)l * q_dim + oi] = r;
                }
                if (tid == 0) p.gcnt[unit] = 0;
            }
        }
        if (done) signal_count(p.cnt + l * 5 + 1, tid == 0 ? trace_slot(p.taps.trace, p.n_layers, l, 1, 1) : nullptr);
        __syncthreads();  // shared memory free for the next task
    }
}

template <int V>
__global__ void __launch_bounds__(PD_THREADS, 2) decode_persistent_kernel(PdParams p) {
    extern __shared__ __align__(16) uint8_t smem_raw[];
    PdShared &sh = *(PdShared *)smem_raw;
    const int tid = threadIdx.x, G = gridDim.x, b = blockIdx.x;
    if (tid < 4) geo_init(p.st[tid], b, G, sh.geo[tid]);
    for (int i = tid; i < p.n_layers; i += PD_THREADS) sh.layers[i] = p.layers[i];
    __syncthreads();
    const int pos = *p.pos;
    const unsigned units = (unsigned)att_plan(p, pos).units;  // the O step waits for these
    uint4 wq[PD_WQ], wo[PD_WO], wg[PD_WG], wd[PD_WD];
    auto none = [] {};
    auto load_o = [&](int l) { pd_load<PD_WO>(wo, sh.layers[l].w[1], p.st[1].rb, sh.geo[1], 0); };
    auto load_g = [&](int l) { pd_load<PD_WG>(wg, sh.layers[l].w[2], p.st[2].rb, sh.geo[2], 0); };
    auto load_d = [&](int l) { pd_load<PD_WD>(wd, sh.layers[l].w[3], p.st[3].rb, sh.geo[3], 0); };
    auto load_q = [&](int l) {
        if (l < p.n_layers) pd_load<PD_WQ>(wq, sh.layers[l].w[0], p.st[0].rb, sh.geo[0], 0);
    };
    if (V != 2) pd_load<PD_WQ>(wq, sh.layers[0].w[0], p.st[0].rb, sh.geo[0], 0);
    for (int l = 0; l < p.n_layers; l++) {
        // Variant 0: each step issues the loads of the next GEMV's weights before it waits: O's
        // during QKV, gate/up's during O (blocks without an attention task reach O's wait right
        // after QKV, so the largest matrix is in flight during attention), down's during gate/up,
        // the next layer's QKV during down. Variant 1: down's and the next QKV's after the
        // prologue instead (fewer registers live). Variant 2: each GEMV's own loads at its start,
        // before its wait, as the per-kernel chain does before its PDL wait (nothing in flight
        // when a step counts itself done: the release's MEMBAR may wait for this thread's
        // outstanding loads).
        if (V == 2) {
            gemv_step<0, PD_WQ, PD_MAXC_D>(p, l, G, sh, wq, [&] { load_q(l); }, none);
            attention_step(p, l, pos, sh, none);
            gemv_step<1, PD_WO, PD_MAXC_D>(p, l, units, sh, wo, [&] { load_o(l); }, none);
            gemv_step<2, PD_WG, PD_MAXC_D>(p, l, G, sh, wg, [&] { load_g(l); }, none);
            gemv_step<3, PD_WD, PD_MAXC_F>(p, l, G, sh, wd, [&] { load_d(l); }, none);
            continue;
        }
        gemv_step<0, PD_WQ, PD_MAXC_D>(p, l, G, sh, wq, [&] { load_o(l); }, none);
        attention_step(p, l, pos, sh, none);
        gemv_step<1, PD_WO, PD_MAXC_D>(p, l, units, sh, wo, [&] { load_g(l); }, none);
        if (V == 0) {
            gemv_step<2, PD_WG, PD_MAXC_D>(p, l, G, sh, wg, [&] { load_d(l); }, none);
            gemv_step<3, PD_WD, PD_MAXC_F>(p, l, G, sh, wd, [&] { load_q(l + 1); }, none);
        } else {
            gemv_step<2, PD_WG, PD_MAXC_D>(p, l, G, sh, wg, none, [&] { load_d(l); });
            gemv_step<3, PD_WD, PD_MAXC_F>(p, l, G, sh, wd, none, [&] { load_q(l + 1); });
        }
    }
    // The last block out resets the counters for the next launch (every block has passed all of
    // its waits by the time it counts itself out).
    __syncthreads();
    if (tid == 0) {
        const unsigned nc = (unsigned)p.n_layers * 5;
        if (atomicAdd(p.cnt + nc, 1u) == (unsigned)G - 1) {
            __threadfence();
            for (unsigned i = 0; i <= nc; i++) p.cnt[i] = 0;
        }
    }
}

void (*const pd_kernels[PD_VARIANTS])(PdParams) = {decode_persistent_kernel<0>, decode_persistent_kernel<1>,
                                                      decode_persistent_kernel<2>};

}  // namespace

struct KcudaDecodePlan {
    PdParams p;
    PdLayerDev *d_layers;
    void *d_scratch;
    int blocks, per_sm, variant;
};

extern "C" void kcuda_decode_plan_destroy(KcudaDecodePlan *p) {
    if (!p) return;
    cudaFree(p->d_layers);
    cudaFree(p->d_scratch);
    free(p);
}

static int plan_fail(KcudaDecodePlan *p, int rc) {
    kcuda_decode_plan_destroy(p);
    return rc;
}

extern "C" int kcuda_decode_plan_create(const KcudaDecodeShape *s, const KcudaDecodeLayer *layers,
                                        KcudaDecodePlan **out) {
    if (!s || !layers || !out || s->n_layers <= 0 || !s->attn.d_rope)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_decode_plan_create: NULL argument or no layers");
    *out = NULL;
    const KcudaAttnShape *a = &s->attn;
    const int nh = a->n_heads, nkv = a->n_kv, hd = a->head_dim;
    if (nh <= 0 || nkv <= 0 || nh % nkv || nh / nkv > PD_MAX_REP || hd <= 0 || hd % 2 || hd > PD_MAX_HD ||
        a->ctx <= 0 || (a->rope_style != 0 && a->rope_style != 1))
        return kcuda_fail(KCUDA_ERR_SHAPE,
                          "persistent decode: heads %d/%d, head_dim %d unsupported (head_dim even up to %d, at most %d "
                          "query heads per KV head)",
                          nh, nkv, hd, PD_MAX_HD, PD_MAX_REP);
    const int q_dim = nh * hd, kv_dim = nkv * hd, qkv_dim = q_dim + 2 * kv_dim;
    const int k_in[4] = {s->dim, q_dim, s->dim, s->ffn};
    const int n_out[4] = {qkv_dim, s->dim, 2 * s->ffn, s->dim};
    const char *names[4] = {"QKV", "O", "gate/up", "down"};
    KcudaDecodePlan *p = (KcudaDecodePlan *)calloc(1, sizeof *p);
    if (!p) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_decode_plan_create: out of host memory");
    PdLayerDev *hl = (PdLayerDev *)calloc((size_t)s->n_layers, sizeof *hl);
    if (!hl) return plan_fail(p, kcuda_fail(KCUDA_ERR_ARG, "kcuda_decode_plan_create: out of host memory"));
    for (int l = 0; l < s->n_layers; l++) {
        const KcudaDecodeLayer *L = &layers[l];
        const KcudaTernary *t[4] = {&L->qkv, &L->o, &L->gu, &L->down};
        const float *nw[4] = {L->attn_norm, L->attn_sub_norm, L->ffn_norm, L->ffn_sub_norm};
        for (int m = 0; m < 4; m++) {
            const int kp = i2s_round_up_k(k_in[m]);
            if (!t[m]->d_codes || t[m]->n_out != n_out[m] || t[m]->k_pad != kp || (m == 2) != (t[m]->glu != 0) ||
                ((uintptr_t)t[m]->d_codes & 15) || !nw[m] || ((uintptr_t)nw[m] & 15)) {
                free(hl);
                return plan_fail(p, kcuda_fail(KCUDA_ERR_SHAPE,
                                               "persistent decode: layer %d: %s matrix %dx%d (glu %d) does not match "
                                               "the shape (%dx%d) or is misaligned",
                                               l, names[m], t[m]->n_out, t[m]->k_pad, t[m]->glu, n_out[m], kp));
            }
            hl[l].w[m] = t[m]->d_codes;
            hl[l].norm[m] = nw[m];
            for (int i = 0; i < 3; i++) hl[l].g[m][i] = t[m]->gamma[i];
            hl[l].seg[m][0] = m == 0 ? t[m]->seg_end[0] : n_out[m];
            hl[l].seg[m][1] = m == 0 ? t[m]->seg_end[1] : n_out[m];
        }
        hl[l].act = L->gu.act;
        if (!L->kc || !L->vc) {
            free(hl);
            return plan_fail(p, kcuda_fail(KCUDA_ERR_ARG, "persistent decode: layer %d: no KV cache", l));
        }
        hl[l].kc = (__half *)L->kc;
        hl[l].vc = (__half *)L->vc;
    }
    int dev = 0, sms = 0;
    cudaError_t e;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_CUDA, "persistent decode: device query: %s", cudaGetErrorString(e)));
    }
    int occ = 1 << 30;
    for (int v = 0; v < PD_VARIANTS; v++) {
        int o = 0;
        if ((e = cudaFuncSetAttribute(pd_kernels[v], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sizeof(PdShared))) !=
                cudaSuccess ||
            (e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&o, pd_kernels[v], PD_THREADS, sizeof(PdShared))) !=
                cudaSuccess ||
            o < 1) {
            free(hl);
            return plan_fail(p, kcuda_fail(KCUDA_ERR_CUDA, "persistent decode: no resident block (%s)",
                                           e != cudaSuccess ? cudaGetErrorString(e) : "occupancy 0"));
        }
        if (o < occ) occ = o;
    }
    // Two blocks per SM (the launch bounds ask for it): 256 threads each, the product GEMV's
    // prologue order, and each SM's share of a matrix in half the registers of one thread.
    p->per_sm = occ < 2 ? occ : 2;
    const int G = sms * p->per_sm;
    p->blocks = G;
    PdParams &P = p->p;
    if (s->n_layers > PD_MAX_LAYERS) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_SHAPE, "persistent decode: %d layers unsupported (at most %d)", s->n_layers,
                                       PD_MAX_LAYERS));
    }
    P.n_layers = s->n_layers;
    for (int m = 0; m < 4; m++) {
        PdStep &S = P.st[m];
        S.n_out = n_out[m];
        S.k_in = k_in[m];
        S.k_pad = i2s_round_up_k(k_in[m]);
        S.rb = S.k_pad / 4;
        S.align = m == 2 ? 2 : 1;
        const int max_rows = (int)(((long long)(S.n_out / S.align) + G - 1) / G) * S.align;
        if (S.k_in % 4 || S.k_pad > PD_MAX_K || max_rows > PD_MAX_ROWS) {
            free(hl);
            return plan_fail(p, kcuda_fail(KCUDA_ERR_SHAPE,
                                           "persistent decode: %s GEMV %dx%d unsupported (input a multiple of 4 up to "
                                           "%d, at most %d rows per block on %d blocks)",
                                           names[m], S.n_out, S.k_in, PD_MAX_K, PD_MAX_ROWS, G));
        }
    }
    P.n_heads = nh;
    P.n_kv = nkv;
    P.hd = hd;
    P.ctx = a->ctx;
    P.style = a->rope_style;
    // attention splits (att_plan): per query head at most G / nh; per KV group at most G / nkv,
    // or ctx / PD_ATT_CHUNK where the chunk reaches its cap
    // (a split never holds fewer than PD_ATT_BATCH positions: at most ctx / PD_ATT_BATCH of them)
    const int spl_g = G / nkv > 0 ? G / nkv : 1, batch_splits = (a->ctx + PD_ATT_BATCH - 1) / PD_ATT_BATCH;
    const int spl = spl_g < batch_splits ? spl_g : batch_splits, long_splits = (a->ctx + PD_ATT_CHUNK - 1) / PD_ATT_CHUNK;
    const int group_splits = spl > long_splits ? spl : long_splits;
    P.max_splits = group_splits > G ? group_splits : G;
    if ((nh / nkv) * group_splits > PD_MAX_REP * PD_ATT_CHUNK / 2) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_SHAPE, "persistent decode: context %d too long for %d query heads per KV head",
                                       a->ctx, nh / nkv));
    }
    P.eps = s->eps;
    P.rope = a->d_rope;
    // scratch: qkv, att, gu, attention partials, counters
    const size_t sz[6] = {(size_t)qkv_dim * 4, (size_t)q_dim * 4, (size_t)s->ffn * 4,
                          (size_t)nh * P.max_splits * (hd + 2) * 4, ((size_t)s->n_layers * 5 + 1) * 4, (size_t)nh * 4};
    size_t off[6], tot = 0;
    for (int i = 0; i < 6; i++) off[i] = tot, tot += (sz[i] + 255) / 256 * 256;
    if ((e = cudaMalloc(&p->d_scratch, tot)) != cudaSuccess || (e = cudaMemset(p->d_scratch, 0, tot)) != cudaSuccess ||
        (e = cudaMalloc((void **)&p->d_layers, sizeof *hl * (size_t)s->n_layers)) != cudaSuccess ||
        (e = cudaMemcpy(p->d_layers, hl, sizeof *hl * (size_t)s->n_layers, cudaMemcpyHostToDevice)) != cudaSuccess) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_CUDA, "persistent decode: allocating scratch: %s", cudaGetErrorString(e)));
    }
    free(hl);
    char *base = (char *)p->d_scratch;
    P.qkv = (float *)(base + off[0]);
    P.att = (float *)(base + off[1]);
    P.gu = (float *)(base + off[2]);
    P.part = (float *)(base + off[3]);
    P.cnt = (unsigned *)(base + off[4]);
    P.gcnt = (unsigned *)(base + off[5]);
    P.layers = p->d_layers;
    *out = p;
    return KCUDA_OK;
}

extern "C" int kcuda_decode_plan_set_taps(KcudaDecodePlan *p, const KcudaDecodeTaps *t) {
    if (!p) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_decode_plan_set_taps: NULL plan");
    if (t) p->p.taps = *t;
    else memset(&p->p.taps, 0, sizeof p->p.taps);
    return KCUDA_OK;
}

extern "C" int kcuda_decode_plan_set_variant(KcudaDecodePlan *p, int variant) {
    if (!p || variant < 0 || variant >= PD_VARIANTS)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_decode_plan_set_variant: no plan or variant %d (0..%d)", variant,
                          PD_VARIANTS - 1);
    p->variant = variant;
    return KCUDA_OK;
}

extern "C" void kcuda_decode_plan_describe(const KcudaDecodePlan *p, int *blocks, int *threads, int *per_sm) {
    if (blocks) *blocks = p ? p->blocks : 0;
    if (threads) *threads = PD_THREADS;
    if (per_sm) *per_sm = p ? p->per_sm : 0;
}

extern "C" int kcuda_decode_layers(KcudaDecodePlan *p, float *d_x, const int *d_pos, void *stream) {
    if (!p || !d_x || !d_pos || ((uintptr_t)d_x & 15))
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_decode_layers: NULL or misaligned argument");
    PdParams P = p->p;
    P.x = d_x;
    P.pos = d_pos;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)p->blocks);
    cfg.blockDim = dim3(PD_THREADS);
    cfg.dynamicSmemBytes = sizeof(PdShared);
    cfg.stream = (cudaStream_t)stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    const cudaError_t e = cudaLaunchKernelEx(&cfg, pd_kernels[p->variant], P);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "persistent decode launch (%d blocks): %s", p->blocks, cudaGetErrorString(e));
    return KCUDA_OK;
}
