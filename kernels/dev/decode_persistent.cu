// The persistent decode kernel (decode_persistent.h): every layer of one decode step in one
// cooperative launch, one block per SM, weights streamed by TMA bulk copies into a ring of
// shared-memory stages ahead of the dependency chain, steps released by device counters.
#include <cuda_fp16.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/dev/decode_persistent.h"
#include "kernels/w2a8.h"

namespace {

enum {
    PD_THREADS = 512,          // 16 warps: enough lanes for the prologue (K 6912: 3.4 float4 each)
    PD_WARPS = PD_THREADS / 32,
    PD_GROUPS = PD_THREADS / 8,  // 8-lane row groups of the dot products
    PD_MAXV = 8,               // float4 of the input vector per thread: k_pad <= 16384
    PD_MAX_K = PD_MAXV * 4 * PD_THREADS,
    PD_MAX_ROWS = 1024,        // rows of one GEMV step per block
    PD_MAX_STAGES = 16,
    PD_STAGE_BYTES = 16384,
    PD_MAX_REP = 8,
    PD_MAX_HD = 256,
    PD_ATT_CHUNK = 256,        // positions of one attention task at most
    PD_MAX_LAYERS = 64,        // the weight pointers of every layer sit in shared memory
};

struct PdLayerDev {
    const uint8_t *w[4];     // QKV, O, gate/up (interleaved), down
    const float *norm[4];    // attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm
    __half *kc, *vc;
    float g[4][3];
    int seg[4][2];
};

struct PdStep {
    int n_out, k_in, k_pad, rb, align, cr;  // rb: row bytes; cr: rows per ring stage
};

struct PdParams {
    const PdLayerDev *layers;
    int n_layers;
    PdStep st[4];
    int n_heads, n_kv, hd, ctx, style, spl, max_splits;
    float eps;
    const float *rope;
    const int *pos;
    float *x, *qkv, *att, *gu, *part;
    unsigned *cnt;   // [n_layers * 5 + 1]: step counters, then the exit counter
    unsigned *gcnt;  // [n_kv]: finished slices of each KV group's attention
    int ns, stage_bytes;
    KcudaDecodeTaps taps;
};

// ---- PTX helpers --------------------------------------------------------------------------------
__device__ __forceinline__ unsigned smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, unsigned parity) {
    const unsigned a = smem_u32(bar);
    unsigned ok = 0;
    while (!ok)
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
            : "=r"(ok)
            : "r"(a), "r"(parity)
            : "memory");
}
// Bulk copy global -> shared (TMA), completion counted in bytes on the stage's mbarrier.
__device__ __forceinline__ void bulk_g2s(void *dst, const void *src, unsigned bytes, uint64_t *bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(bar))
                 : "memory");
}
__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
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

// The grid-wide step counters follow CUTLASS's generic barrier (cutlass/barrier.h): a block
// counts a step with __syncthreads then one red.release.gpu from thread 0; a waiting block's
// thread 0 polls with ld.acquire.gpu, then __syncthreads. The barrier orders the other threads'
// writes before the release and their reads after the acquire; no separate fence.
// Waits until *c >= target. t: lab timeline slot.
__device__ __forceinline__ void wait_count(const unsigned *c, unsigned target, unsigned long long *t) {
    if (threadIdx.x == 0) {
        while (ld_acquire(c) < target) {
        }
        trace_at(t);
    }
    __syncthreads();
}
// Publishes this block's writes of the step, then counts the step once for this block.
__device__ __forceinline__ void signal_count(unsigned *c, unsigned long long *t) {
    __syncthreads();
    if (threadIdx.x == 0) {
        red_release_add(c, 1u);
        trace_at(t);
    }
}
// The lab timeline slot of (layer, step, which) for this block, or NULL.
__device__ __forceinline__ unsigned long long *trace_slot(unsigned long long *tr, int n_layers, int l, int k, int which) {
    return tr ? tr + (((size_t)blockIdx.x * n_layers + l) * 5 + k) * 6 + which : nullptr;
}

// The activation layout and dot product of the per-kernel GEMV (w2a8_gemv.cu, version 3): piece
// p (16 bytes of a row = 64 weights, half p&1 of I2_S block p>>1) meets the 64 activations at
// qs + 64p, the four 16-byte pieces rotated by the block index (bank spread for 8 lanes).
__device__ __forceinline__ int act_offset(int i) {
    const int b = i >> 7, o = i & 127, j = o >> 5, h = (o >> 4) & 1, e = o & 15;
    return (b << 7) + (h << 6) + (((j + b) & 3) << 4) + e;
}
__device__ __forceinline__ int dot_piece(uint4 w, const int8_t *qs, int c, int acc) {
    const int b = c >> 1;
    const uint4 *base = (const uint4 *)(qs + (c << 6));
    const uint32_t ww[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const uint4 a = base[(j + b) & 3];
        const uint32_t aa[4] = {a.x, a.y, a.z, a.w};
        const int sh = 6 - 2 * j;
#pragma unroll
        for (int m = 0; m < 4; m++) acc = __dp4a((int)((ww[m] >> sh) & 0x03030303u), (int)aa[m], acc);
    }
    return acc;
}

struct PdSmem {
    int r0[4], r1[4], nch[4];
    int cpl, total;
    // the weight pointers of every layer: the producer (thread 0) starts a bulk copy without a
    // global load (measured: one L2 round trip per chunk on the critical path otherwise)
    const uint8_t *w[PD_MAX_LAYERS][4];
};

__device__ __forceinline__ void block_rows(const PdStep &s, int b, int G, int *r0, int *r1) {
    const long long units = s.n_out / s.align;
    *r0 = (int)(units * b / G) * s.align;
    *r1 = (int)(units * (b + 1) / G) * s.align;
}

// Thread 0: starts the bulk copy of chunk j of this block's weight stream into its ring stage.
// The stream: for each layer, for each GEMV, this block's rows in chunks of at most cr rows.
__device__ void issue_chunk(const PdParams &p, const PdSmem &sc, int j, uint8_t *ring, uint64_t *bars) {
    if (j >= sc.total) return;
    const int l = j / sc.cpl;
    int r = j - l * sc.cpl, m = 0;
    while (r >= sc.nch[m]) r -= sc.nch[m++];
    const PdStep &S = p.st[m];
    const int row = sc.r0[m] + r * S.cr;
    const int rows = min(S.cr, sc.r1[m] - row);
    const unsigned bytes = (unsigned)rows * (unsigned)S.rb;
    const uint8_t *src = sc.w[l][m] + (size_t)row * S.rb;
    const int slot = j % p.ns;
    mbar_expect_tx(&bars[slot], bytes);
    bulk_g2s(ring + (size_t)slot * p.stage_bytes, src, bytes, &bars[slot]);
}

// RMSNorm (nw != NULL) + int8 quantization of in[0..k_in) into qs (swizzled, zeros to k_pad):
// the formulas of rmsnorm_ref + quant_act_ref, fp32; the sum of squares in this block's order.
// Returns s; the per-warp partial sums of q are left in redi (read after a later barrier).
__device__ __forceinline__ float pd_prologue(const float *in, int k_in, int k_pad, const float4 (&wn)[PD_MAXV],
                                             bool has_norm, float eps, int8_t *qs, float *red_ss, float *red_mx,
                                             int *redi) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float4 xv[PD_MAXV];
#pragma unroll
    for (int i = 0; i < PD_MAXV; i++) {
        const int e = 4 * (tid + PD_THREADS * i);
        xv[i] = e < k_in ? __ldcg((const float4 *)(in + e)) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (has_norm) {
        float ss = 0.0f;
#pragma unroll
        for (int i = 0; i < PD_MAXV; i++)
            ss += xv[i].x * xv[i].x + xv[i].y * xv[i].y + xv[i].z * xv[i].z + xv[i].w * xv[i].w;
        ss = warp_sum(ss);
        if (lane == 0) red_ss[warp] = ss;
        __syncthreads();
        float t = 0.0f;
#pragma unroll
        for (int i = 0; i < PD_WARPS; i++) t += red_ss[i];
        const float inv = 1.0f / sqrtf(t / (float)k_in + eps);
#pragma unroll
        for (int i = 0; i < PD_MAXV; i++) {
            xv[i].x = wn[i].x * (xv[i].x * inv);
            xv[i].y = wn[i].y * (xv[i].y * inv);
            xv[i].z = wn[i].z * (xv[i].z * inv);
            xv[i].w = wn[i].w * (xv[i].w * inv);
        }
    }
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < PD_MAXV; i++)
        amax = fmaxf(amax, fmaxf(fmaxf(fabsf(xv[i].x), fabsf(xv[i].y)), fmaxf(fabsf(xv[i].z), fabsf(xv[i].w))));
    amax = warp_max(amax);
    if (lane == 0) red_mx[warp] = amax;
    __syncthreads();
    float mx = red_mx[0];
#pragma unroll
    for (int i = 1; i < PD_WARPS; i++) mx = fmaxf(mx, red_mx[i]);
    const float s = 127.0f / fmaxf(mx, 1e-5f);
    int sum = 0;
#pragma unroll
    for (int i = 0; i < PD_MAXV; i++) {
        const int e = 4 * (tid + PD_THREADS * i);
        if (e < k_pad) {
            const float v[4] = {xv[i].x, xv[i].y, xv[i].z, xv[i].w};
            uint32_t word = 0;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int qi = (int)fminf(fmaxf(rintf(v[j] * s), -128.0f), 127.0f);
                sum += qi;
                word |= (uint32_t)(qi & 0xff) << (8 * j);
            }
            *(uint32_t *)(qs + act_offset(e)) = word;
        }
    }
    sum = warp_sum_i(sum);
    if (lane == 0) redi[warp] = sum;
    return s;
}

struct PdShared {
    int8_t qs[PD_MAX_K];
    int acc[PD_MAX_ROWS];
    float att_q[PD_MAX_REP * PD_MAX_HD];
    float att_sc[PD_MAX_REP * PD_ATT_CHUNK];
    float att_ml[PD_MAX_REP][2];
    float red_ss[PD_WARPS], red_mx[PD_WARPS];
    int redi[PD_WARPS];
    int flag;
    PdSmem sc;
};

// One GEMV step M (0 QKV, 1 O, 2 gate/up, 3 down) of layer l for this block's rows.
template <int M>
__device__ __forceinline__ void gemv_step(const PdParams &p, int l, PdShared &sh, uint8_t *ring, uint64_t *bars,
                                          int &jn) {
    const PdStep &S = p.st[M];
    const int tid = threadIdx.x, G = gridDim.x;
    const PdLayerDev &L = p.layers[l];
    const float *nw = L.norm[M];
    const int r0 = sh.sc.r0[M], nrows = sh.sc.r1[M] - r0, nch = sh.sc.nch[M];
    // Constants and this block's own rows are loaded before waiting for the input: the norm
    // weights, the scales, and for the residual steps the rows of x this block owns (O and down
    // split x's rows identically, so this block wrote them itself, before this step).
    const float g0 = L.g[M][0], g1 = L.g[M][1], g2 = L.g[M][2];
    const int seg0 = L.seg[M][0], seg1 = L.seg[M][1];
    float xold[PD_MAX_ROWS / PD_THREADS];
#pragma unroll
    for (int u = 0; u < PD_MAX_ROWS / PD_THREADS; u++) {
        const int i = tid + u * PD_THREADS;
        xold[u] = (M == 1 || M == 3) && i < nrows ? __ldcg(p.x + r0 + i) : 0.0f;
    }
    float4 wn[PD_MAXV];
#pragma unroll
    for (int i = 0; i < PD_MAXV; i++) {
        const int e = 4 * (tid + PD_THREADS * i);
        wn[i] = nw && e < S.k_in ? __ldg((const float4 *)(nw + e)) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    // input complete: QKV after the previous layer's down, O after attention, gate/up after O,
    // down after gate/up
    constexpr int K = M == 0 ? 0 : M + 1;  // step index within the layer
    unsigned long long *t_rel = trace_slot(p.taps.trace, p.n_layers, l, K, 0);
    if (M == 0 && l > 0) wait_count(p.cnt + (l - 1) * 5 + 4, (unsigned)G, t_rel);
    if (M == 0 && l == 0 && tid == 0) trace_at(t_rel);
    if (M == 1) wait_count(p.cnt + l * 5 + 1, (unsigned)p.n_kv, t_rel);
    if (M == 2) wait_count(p.cnt + l * 5 + 2, (unsigned)G, t_rel);
    if (M == 3) wait_count(p.cnt + l * 5 + 3, (unsigned)G, t_rel);
    const float *in = M == 0 || M == 2 ? p.x : M == 1 ? p.att : p.gu;
    for (int i = tid; i < nrows; i += PD_THREADS) sh.acc[i] = 0;
    const float s = pd_prologue(in, S.k_in, S.k_pad, wn, nw != nullptr, p.eps, sh.qs, sh.red_ss, sh.red_mx, sh.redi);
    __syncthreads();  // q and the zeroed accumulators complete
    if (tid == 0) trace_at(trace_slot(p.taps.trace, p.n_layers, l, K, 2));
    // lab timeline: thread 0's time in the stages' mbarrier waits and in the refills
    unsigned long long *const tr4 = tid == 0 ? trace_slot(p.taps.trace, p.n_layers, l, K, 4) : nullptr;
    unsigned long long t_wait = 0, t_issue = 0;

    const int grp = tid >> 3, sub = tid & 7, P = S.rb >> 4;
    for (int c = 0; c < nch; c++) {
        const int j = jn + c, slot = j % p.ns;
        const unsigned long long tw0 = tr4 ? globaltimer() : 0;
        mbar_wait(&bars[slot], (unsigned)(j / p.ns) & 1u);
        if (tr4) t_wait += globaltimer() - tw0;
        const uint8_t *wb = ring + (size_t)slot * p.stage_bytes;
        const int rbase = c * S.cr, nr = min(S.cr, nrows - rbase);
        // rows x segments over the 8-lane groups: (row, segment) pairs cover the groups when the
        // chunk has fewer rows than groups; integer partial sums, so the order does not matter
        int nseg = max(1, PD_GROUPS / nr);
        nseg = min(nseg, max(1, P / 8));
        const int items = nr * nseg;
        for (int it = 0; it * PD_GROUPS < items; it++) {
            const int g = it * PD_GROUPS + grp;
            const bool ok = g < items;
            int acc = 0;
            if (ok) {
                const int row = g % nr, seg = g / nr;
                const uint4 *wr = (const uint4 *)(wb + (size_t)row * S.rb);
                for (int pc = seg * 8 + sub; pc < P; pc += 8 * nseg) acc = dot_piece(wr[pc], sh.qs, pc, acc);
            }
            acc += __shfl_xor_sync(0xffffffffu, acc, 4);
            acc += __shfl_xor_sync(0xffffffffu, acc, 2);
            acc += __shfl_xor_sync(0xffffffffu, acc, 1);
            if (ok && sub == 0) atomicAdd(&sh.acc[rbase + g % nr], acc);
        }
        // The stage is free again: refill it with the chunk ns further along this block's stream
        // (per chunk, so a step may have more chunks than the ring has stages). The stage was
        // read through the generic proxy; the bulk copy writes it through the async proxy.
        __syncthreads();
        if (tid == 0) {
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            const unsigned long long ti0 = tr4 ? globaltimer() : 0;
            issue_chunk(p, sh.sc, j + p.ns, ring, bars);
            if (tr4) t_issue += globaltimer() - ti0;
        }
    }
    if (nch == 0) __syncthreads();  // accumulators complete (each chunk ends with a barrier)
    if (tid == 0) trace_at(trace_slot(p.taps.trace, p.n_layers, l, K, 3));
    if (tr4) tr4[0] = t_wait, tr4[1] = t_issue;
    jn += nch;
    int qsum = 0;
#pragma unroll
    for (int w = 0; w < PD_WARPS; w++) qsum += sh.redi[w];
    if (M == 2) {
        for (int i = 2 * tid; i < nrows; i += 2 * PD_THREADS) {
            const float yg = __fmul_rn(__fdiv_rn((float)(sh.acc[i] - qsum), s), g0);
            const float yu = __fmul_rn(__fdiv_rn((float)(sh.acc[i + 1] - qsum), s), g1);
            const float r = yg > 0.0f ? yg : 0.0f;
            const float m = __fmul_rn(__fmul_rn(r, r), yu);
            const int o = (r0 + i) >> 1;
            p.gu[o] = m;
            if (p.taps.gu) p.taps.gu[(size_t)l * (S.n_out >> 1) + o] = m;
        }
    } else {
#pragma unroll
        for (int u = 0; u < PD_MAX_ROWS / PD_THREADS; u++) {
            const int i = tid + u * PD_THREADS;
            if (i >= nrows) break;
            const int r = r0 + i;
            const float g = r < seg0 ? g0 : r < seg1 ? g1 : g2;
            const float y = __fmul_rn(__fdiv_rn((float)(sh.acc[i] - qsum), s), g);
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

// Attention of layer l: tasks (KV group g, slice sp of the context) over the blocks; the slice's
// scores, softmax and P.V for the group's query heads; the last slice of a group to finish
// combines the partial (max, sum, output) records and counts the group as done. Every loop that
// reads global memory issues its loads in batches (unrolled, predicated): a loop of dependent
// single loads costs one L2 round trip per element, and attention sits on the critical path.
__device__ void attention_step(const PdParams &p, int l, int pos, PdShared &sh) {
    const int G = gridDim.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hd = p.hd, half = hd / 2, rep = p.n_heads / p.n_kv;
    const int kv_len = pos + 1;
    int chunk = (kv_len + p.spl - 1) / p.spl;
    // at least 64 positions a task: below that the combine (two more L2 round trips) costs more
    // than the positions it spreads
    chunk = min(PD_ATT_CHUNK, max(64, (chunk + 31) / 32 * 32));
    const int nsplit = (kv_len + chunk - 1) / chunk;
    const int ntask = p.n_kv * nsplit;
    if ((int)blockIdx.x >= ntask) return;
    wait_count(p.cnt + l * 5 + 0, (unsigned)G, trace_slot(p.taps.trace, p.n_layers, l, 1, 0));
    const PdLayerDev &L = p.layers[l];
    __half *const kc = L.kc, *const vc = L.vc;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *cs = p.rope + (size_t)pos * hd;
    const int q_dim = p.n_heads * hd, kv_dim = p.n_kv * hd;
    const int rec = hd + 2;
    const int slices = PD_THREADS / hd;  // P.V: position slices of hd threads each
    float *pv = (float *)sh.qs;          // P.V partials [slice][head][hd] (the GEMV input is free now)
    for (int task = blockIdx.x; task < ntask; task += G) {
        const int g = task % p.n_kv, sp = task / p.n_kv;
        const int t0 = sp * chunk, nt = min(chunk, kv_len - t0);
        const bool last = t0 + nt == kv_len;
        const size_t head_base = (size_t)g * p.ctx * hd;
        // q of the group's heads, rotated
        for (int idx = tid; idx < rep * half; idx += PD_THREADS) {
            const int h = idx / half, i = idx % half;
            const int i0 = p.style == 0 ? i : 2 * i, i1 = p.style == 0 ? i + half : 2 * i + 1;
            const float *q = p.qkv + (size_t)(g * rep + h) * hd;
            const float a = __ldcg(q + i0), b = __ldcg(q + i1), c = cs[2 * i], s = cs[2 * i + 1];
            sh.att_q[h * hd + i0] = a * c - b * s;
            sh.att_q[h * hd + i1] = b * c + a * s;
        }
        if (last) {  // this position's k (rotated) and v into the cache
            const float *k = p.qkv + q_dim + (size_t)g * hd, *v = p.qkv + q_dim + kv_dim + (size_t)g * hd;
            for (int i = tid; i < half; i += PD_THREADS) {
                const int i0 = p.style == 0 ? i : 2 * i, i1 = p.style == 0 ? i + half : 2 * i + 1;
                const float a = __ldcg(k + i0), b = __ldcg(k + i1), c = cs[2 * i], s = cs[2 * i + 1];
                kc[head_base + (size_t)pos * hd + i0] = __float2half_rn(a * c - b * s);
                kc[head_base + (size_t)pos * hd + i1] = __float2half_rn(b * c + a * s);
            }
            for (int d = tid; d < hd; d += PD_THREADS) vc[head_base + (size_t)pos * hd + d] = __float2half_rn(__ldcg(v + d));
        }
        __syncthreads();  // q in shared memory; this block's cache row visible to the block
        // scores: a warp takes 4 positions at a time, lanes over head_dim (d = lane + 32u)
        constexpr int U = PD_MAX_HD / 32, PP = 4;
        for (int j0 = warp; j0 < nt; j0 += PD_WARPS * PP) {
            float kv[PP][U];
#pragma unroll
            for (int pp = 0; pp < PP; pp++) {
                const int j = j0 + pp * PD_WARPS;
                const __half *kr = kc + head_base + (size_t)(t0 + j) * hd;
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int d = lane + 32 * u;
                    kv[pp][u] = j < nt && d < hd ? __half2float(kr[d]) : 0.0f;
                }
            }
#pragma unroll
            for (int h = 0; h < PD_MAX_REP; h++) {
                if (h >= rep) break;
                float part[PP];
#pragma unroll
                for (int pp = 0; pp < PP; pp++) part[pp] = 0.0f;
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int d = lane + 32 * u;
                    const float qv = d < hd ? sh.att_q[h * hd + d] : 0.0f;
#pragma unroll
                    for (int pp = 0; pp < PP; pp++) part[pp] = fmaf(qv, kv[pp][u], part[pp]);
                }
#pragma unroll
                for (int pp = 0; pp < PP; pp++) {
                    const float t = warp_sum(part[pp]);
                    const int j = j0 + pp * PD_WARPS;
                    if (lane == 0 && j < nt) sh.att_sc[h * PD_ATT_CHUNK + j] = t * scale;
                }
            }
        }
        __syncthreads();
        if (warp < rep) {  // softmax of head `warp` over the slice
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
        // P.V: thread (slice, d) reads v[j][d] once for all heads of the group, 8 positions a batch
        {
            const int sl = tid / hd, d = tid - sl * hd;
            if (sl < slices) {
                float o[PD_MAX_REP];
#pragma unroll
                for (int h = 0; h < PD_MAX_REP; h++) o[h] = 0.0f;
                const __half *vr = vc + head_base + (size_t)t0 * hd + d;
                for (int j0 = sl; j0 < nt; j0 += slices * 8) {
                    float vv[8];
#pragma unroll
                    for (int u = 0; u < 8; u++) {
                        const int j = j0 + u * slices;
                        vv[u] = j < nt ? __half2float(vr[(size_t)j * hd]) : 0.0f;
                    }
#pragma unroll
                    for (int u = 0; u < 8; u++) {
                        const int j = j0 + u * slices;
                        if (j < nt)
#pragma unroll
                            for (int h = 0; h < PD_MAX_REP; h++)
                                if (h < rep) o[h] = fmaf(sh.att_sc[h * PD_ATT_CHUNK + j], vv[u], o[h]);
                    }
                }
#pragma unroll
                for (int h = 0; h < PD_MAX_REP; h++)
                    if (h < rep) pv[((size_t)sl * rep + h) * hd + d] = o[h];
            }
        }
        __syncthreads();
        float *part_g = p.part + (size_t)g * rep * p.max_splits * rec;
        for (int idx = tid; idx < rep * hd; idx += PD_THREADS) {
            const int h = idx / hd, d = idx - h * hd;
            float o = 0.0f;
            for (int s2 = 0; s2 < slices; s2++) o += pv[((size_t)s2 * rep + h) * hd + d];
            if (nsplit == 1) {
                const float r = o / sh.att_ml[h][1];
                const size_t oi = (size_t)(g * rep + h) * hd + d;
                p.att[oi] = r;
                if (p.taps.att) p.taps.att[(size_t)l * q_dim + oi] = r;
            } else {
                float *rp = part_g + ((size_t)h * p.max_splits + sp) * rec;
                rp[2 + d] = o;
                if (d == 0) rp[0] = sh.att_ml[h][0], rp[1] = sh.att_ml[h][1];
            }
        }
        bool done = nsplit == 1;
        if (!done) {
            __threadfence();
            __syncthreads();
            if (tid == 0) sh.flag = atomicAdd(&p.gcnt[g], 1u) == (unsigned)nsplit - 1;
            __syncthreads();
            done = sh.flag;
            if (done) {
                __threadfence();
                // (max, sum) of every (head, slice) record into shared memory in one batch
                float *ml = sh.att_sc;  // rep * nsplit pairs (the plan bounds rep * max_splits)
                for (int idx = tid; idx < rep * nsplit; idx += PD_THREADS) {
                    const int h = idx / nsplit, s2 = idx - h * nsplit;
                    const float *rp = part_g + ((size_t)h * p.max_splits + s2) * rec;
                    ml[2 * idx] = __ldcg(rp);
                    ml[2 * idx + 1] = __ldcg(rp + 1);
                }
                __syncthreads();
                for (int idx = tid; idx < rep * hd; idx += PD_THREADS) {
                    const int h = idx / hd, d = idx - h * hd;
                    const float *rp = part_g + (size_t)h * p.max_splits * rec + 2 + d;
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
                    const size_t oi = (size_t)(g * rep + h) * hd + d;
                    p.att[oi] = r;
                    if (p.taps.att) p.taps.att[(size_t)l * q_dim + oi] = r;
                }
                if (tid == 0) p.gcnt[g] = 0;
            }
        }
        if (done) signal_count(p.cnt + l * 5 + 1, trace_slot(p.taps.trace, p.n_layers, l, 1, 1));
        __syncthreads();  // shared memory free for the next task
    }
}

__global__ void __launch_bounds__(PD_THREADS, 1) decode_persistent_kernel(PdParams p) {
    extern __shared__ __align__(128) uint8_t ring[];
    __shared__ __align__(16) PdShared sh;
    __shared__ __align__(8) uint64_t bars[PD_MAX_STAGES];
    const int tid = threadIdx.x, G = gridDim.x, b = blockIdx.x;
    if (tid == 0) {
        int cpl = 0;
        for (int m = 0; m < 4; m++) {
            int r0, r1;
            block_rows(p.st[m], b, G, &r0, &r1);
            sh.sc.r0[m] = r0;
            sh.sc.r1[m] = r1;
            sh.sc.nch[m] = (r1 - r0 + p.st[m].cr - 1) / p.st[m].cr;
            cpl += sh.sc.nch[m];
        }
        sh.sc.cpl = cpl;
        sh.sc.total = cpl * p.n_layers;
        for (int i = 0; i < p.ns; i++) mbar_init(&bars[i], 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    for (int i = tid; i < p.n_layers * 4; i += PD_THREADS) sh.sc.w[i >> 2][i & 3] = p.layers[i >> 2].w[i & 3];
    __syncthreads();
    if (tid == 0)
        for (int j = 0; j < p.ns; j++) issue_chunk(p, sh.sc, j, ring, bars);
    const int pos = *p.pos;
    int jn = 0;
    for (int l = 0; l < p.n_layers; l++) {
        gemv_step<0>(p, l, sh, ring, bars, jn);
        attention_step(p, l, pos, sh);
        gemv_step<1>(p, l, sh, ring, bars, jn);
        gemv_step<2>(p, l, sh, ring, bars, jn);
        gemv_step<3>(p, l, sh, ring, bars, jn);
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

}  // namespace

struct KcudaDecodePlan {
    PdParams p;
    PdLayerDev *d_layers;
    void *d_scratch;
    int blocks, ring_bytes;
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
        if (!L->kc || !L->vc) {
            free(hl);
            return plan_fail(p, kcuda_fail(KCUDA_ERR_ARG, "persistent decode: layer %d: no KV cache", l));
        }
        hl[l].kc = (__half *)L->kc;
        hl[l].vc = (__half *)L->vc;
    }
    int dev = 0, sms = 0, optin = 0;
    cudaError_t e;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) != cudaSuccess) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_CUDA, "persistent decode: device query: %s", cudaGetErrorString(e)));
    }
    cudaFuncAttributes fa;
    if ((e = cudaFuncGetAttributes(&fa, decode_persistent_kernel)) != cudaSuccess) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_CUDA, "persistent decode: %s", cudaGetErrorString(e)));
    }
    const int ring_max = optin - (int)fa.sharedSizeBytes;
    int ns = ring_max / PD_STAGE_BYTES;
    if (ns > PD_MAX_STAGES) ns = PD_MAX_STAGES;
    if (ns < 2) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_SHAPE, "persistent decode: %d bytes of shared memory per block is too little", optin));
    }
    p->ring_bytes = ns * PD_STAGE_BYTES;
    if ((e = cudaFuncSetAttribute(decode_persistent_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, p->ring_bytes)) !=
            cudaSuccess ||
        (e = cudaFuncSetAttribute(decode_persistent_kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100)) !=
            cudaSuccess) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_CUDA, "persistent decode: %s", cudaGetErrorString(e)));
    }
    int occ = 0;
    if ((e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, decode_persistent_kernel, PD_THREADS, p->ring_bytes)) !=
            cudaSuccess ||
        occ < 1) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_CUDA, "persistent decode: no resident block (%s)",
                                       e != cudaSuccess ? cudaGetErrorString(e) : "occupancy 0"));
    }
    const int G = sms;  // one block per SM: the ring is sized to the SM's shared memory
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
        S.cr = PD_STAGE_BYTES / S.rb / S.align * S.align;
        const int max_rows = (int)(((long long)(S.n_out / S.align) + G - 1) / G) * S.align;
        if (S.k_in % 4 || S.k_pad > PD_MAX_K || S.cr < S.align || max_rows > PD_MAX_ROWS) {
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
    P.spl = G / nkv > 0 ? G / nkv : 1;
    const int long_splits = (a->ctx + PD_ATT_CHUNK - 1) / PD_ATT_CHUNK;
    P.max_splits = P.spl > long_splits ? P.spl : long_splits;
    if ((nh / nkv) * P.max_splits > PD_MAX_REP * PD_ATT_CHUNK / 2) {
        free(hl);
        return plan_fail(p, kcuda_fail(KCUDA_ERR_SHAPE, "persistent decode: context %d too long for %d query heads per KV head",
                                       a->ctx, nh / nkv));
    }
    P.eps = s->eps;
    P.rope = a->d_rope;
    P.ns = ns;
    P.stage_bytes = PD_STAGE_BYTES;
    // scratch: qkv, att, gu, attention partials, counters
    const size_t sz[6] = {(size_t)qkv_dim * 4, (size_t)q_dim * 4, (size_t)s->ffn * 4,
                          (size_t)nh * P.max_splits * (hd + 2) * 4, ((size_t)s->n_layers * 5 + 1) * 4, (size_t)nkv * 4};
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

extern "C" void kcuda_decode_plan_describe(const KcudaDecodePlan *p, int *blocks, int *stages, int *stage_bytes) {
    if (blocks) *blocks = p ? p->blocks : 0;
    if (stages) *stages = p ? p->p.ns : 0;
    if (stage_bytes) *stage_bytes = p ? p->p.stage_bytes : 0;
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
    cfg.dynamicSmemBytes = (size_t)p->ring_bytes;
    cfg.stream = (cudaStream_t)stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    const cudaError_t e = cudaLaunchKernelEx(&cfg, decode_persistent_kernel, P);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "persistent decode launch (%d blocks): %s", p->blocks, cudaGetErrorString(e));
    return KCUDA_OK;
}
