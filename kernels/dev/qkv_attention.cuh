// A lab kernel (issue #12, session 10; kernels/dev/README.md, "QKV + attention in one kernel":
// measured slower than the product's two kernels at every position, so not in the product): the
// decode QKV projection with the short-context attention behind it in one kernel, with its
// launcher (qkv_attn::decode), for the lab kernels/dev/fuse_lab.cu (dev_fuse).
//
// The idea: a decode layer is five dependent kernels, and each boundary exposes ~3.4-4.4 us on an
// H100 while its bytes take 0.5-2.9 us. QKV -> attention is the one boundary that is not global:
// the attention of KV group g needs only the q rows of g's query heads and g's k and v rows. So
// the QKV kernel (the decode GEMV's kernel 3, 8 lanes a row, 16 rows a block: same prologue,
// same integer dot products, same bits in d_qkv) counts, per KV group (or per query head), the
// blocks that have written their rows (threadfence + atomicAdd: the last-block pattern, no
// spinning, no assumption about which blocks are resident), and the LAST block of a unit runs its
// attention at the current position: RoPE on q and k, the f16 KV cache write of this position,
// an online softmax in f32 over the pos + 1 positions in chunks of 64, P.V, the output where the
// attention kernels write it (out[h * hd + d]). It resets its counter, so counters are zero
// between launches (as the attention kernels leave theirs). Why it loses (measured): that one
// block does a unit's attention serially while the rest of the GPU idles, +5 us a layer at
// position 0 against the product's attention kernel, +70 us at 511.
//
// Shapes: head_dim a multiple of 16 up to 128 (every block's 16 rows then lie in one part of one
// group), up to 8 query heads per KV head, K of the QKV matrix up to 4096 (a lane's chunks in
// registers).
#pragma once
#include <cuda_fp16.h>

#include "kernels/cuda/w2a8_gemv.cuh"

namespace {
namespace qkv_attn {

enum { NT = 128, LPR = 8, CHUNK = 64, MAX_HD = 128, MAX_REP = 8 };

struct Params {
    GemvParams g;  // the QKV GEMV (EP_F32 into qkv), late_trigger as kernel 3
    int n_heads, n_kv, hd, style;
    const float *rope;  // [ctx][hd/2][2]
    __half *kc, *vc;    // [n_kv][ctx][hd]
    const int *pos;
    float *out;  // [n_heads * hd]
    int *count;  // n_kv ints, zero at start, left zero
    int ctx;
    int prefetch;  // before the PDL wait, the group's blocks prefetch its cached rows into L2
    int per_head;  // the attention per query head (run by the last block of the head's q rows and
                   // its group's k, v rows), else per KV group (the last block of the group's rows)
};

// Shared memory of the attention phase (bytes), aliasing the GEMV's activations once they are
// consumed: q rotated [rep][hd] f32, scores [rep][CHUNK], the running (m, l, alpha) per head, the
// current k and v rows, the chunk's K [CHUNK][hd + 8] and V [CHUNK][hd] in f16.
__host__ __device__ inline int att_smem_bytes(int rep, int hd) {
    return rep * hd * 4 + rep * CHUNK * 4 + 3 * MAX_REP * 4 + 2 * hd * 2 + CHUNK * (hd + 8) * 2 + CHUNK * hd * 2;
}

// The RoPE pairs (KcudaAttnShape.rope_style) and 16-byte asynchronous copies. Each decode
// attention header keeps its own (attention_decode_head.cuh: rope_pair_h), and those headers are
// being reorganised; these are this kernel's.
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
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

// The attention of query heads h0 .. h0 + rep - 1 (of KV group g) at position pos by one block
// of NT threads; q, k, v are read from global memory through L2 (other blocks of this grid wrote
// them). write: this block writes the group's cache row at pos (one block a group does). NH: the
// most heads a call takes (the registers of its per-head sums).
template <int NH>
__device__ __forceinline__ void group_attention(const Params &p, int g, int h0, int rep, bool write, int pos,
                                                unsigned char *sm) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hd = p.hd, half = hd / 2;
    if (pos < 0 || pos >= p.ctx) {  // outside the cache: NaN, loud, and no write
        for (int i = tid; i < rep * hd; i += NT) p.out[(size_t)h0 * hd + i] = __int_as_float(0x7fc00000);
        return;
    }
    float *qf = (float *)sm;                    // [rep][hd]
    float *sc = qf + rep * hd;                  // [rep][CHUNK]
    float *mla = sc + rep * CHUNK;              // m [MAX_REP], l [MAX_REP], alpha [MAX_REP]
    __half *kcur = (__half *)(mla + 3 * MAX_REP);  // [hd]
    __half *vcur = kcur + hd;                   // [hd]
    __half *ks = vcur + hd;                     // [CHUNK][hd + 8]
    __half *vs = ks + CHUNK * (hd + 8);         // [CHUNK][hd]
    const int kstride = hd + 8;
    const float *cs = p.rope + (size_t)pos * hd;
    const float *qkv = (const float *)p.g.out;
    const size_t head_base = (size_t)g * p.ctx * hd;
    const int kv_len = pos + 1, per_row = hd / 8;
    // The chunk's cached rows (< pos: written by earlier steps) go to shared memory by cp.async,
    // every copy issued at once and no register held: the first chunk's before this step's q, k
    // and v are read (their round trips overlap). (Through registers, 16 uint4 a thread, the
    // kernel took 168 registers a thread: 3 blocks an SM for the whole grid, against 80.)
    auto load_chunk = [&](int t0) {
        const int nt = min((int)CHUNK, kv_len - t0);
        for (int idx = tid; idx < nt * per_row; idx += NT) {
            const int j = idx / per_row, c = idx % per_row, t = t0 + j;
            if (t != pos) {
                cp_async16(ks + j * kstride + c * 8, p.kc + head_base + (size_t)t * hd + c * 8);
                cp_async16(vs + j * hd + c * 8, p.vc + head_base + (size_t)t * hd + c * 8);
            }
        }
        cp_async_commit();
    };
    load_chunk(0);
    // q of the group's heads and this position's k with RoPE, v: loads first, then the math.
    constexpr int QLOADS = (NH * MAX_HD / 2 + NT - 1) / NT;
    float qa[QLOADS], qb[QLOADS], ka = 0.0f, kb = 0.0f, vv = 0.0f;
    const float *k = qkv + (size_t)p.n_heads * hd + (size_t)g * hd;
    const float *v = k + (size_t)p.n_kv * hd;
#pragma unroll
    for (int u = 0; u < QLOADS; u++) {
        const int idx = tid + u * NT, h = idx / half, i = idx % half;
        if (idx < rep * half) {
            int i0, i1;
            rope_pair(p.style, hd, i, &i0, &i1);
            qa[u] = __ldcg(qkv + (size_t)(h0 + h) * hd + i0);
            qb[u] = __ldcg(qkv + (size_t)(h0 + h) * hd + i1);
        }
    }
    if (tid < half) {
        int i0, i1;
        rope_pair(p.style, hd, tid, &i0, &i1);
        ka = __ldcg(k + i0), kb = __ldcg(k + i1);
    }
    if (tid < hd) vv = __ldcg(v + tid);  // hd <= NT
#pragma unroll
    for (int u = 0; u < QLOADS; u++) {
        const int idx = tid + u * NT, h = idx / half, i = idx % half;
        if (idx < rep * half) {
            int i0, i1;
            rope_pair(p.style, hd, i, &i0, &i1);
            const float c = cs[2 * i], s = cs[2 * i + 1];
            qf[h * hd + i0] = qa[u] * c - qb[u] * s;
            qf[h * hd + i1] = qb[u] * c + qa[u] * s;
        }
    }
    if (tid < half) {
        int i0, i1;
        rope_pair(p.style, hd, tid, &i0, &i1);
        const float c = cs[2 * tid], s = cs[2 * tid + 1];
        const __half a0 = __float2half_rn(ka * c - kb * s), a1 = __float2half_rn(kb * c + ka * s);
        kcur[i0] = a0;
        kcur[i1] = a1;
        if (pos < CHUNK) ks[pos * kstride + i0] = a0, ks[pos * kstride + i1] = a1;
        if (write) {
            p.kc[head_base + (size_t)pos * hd + i0] = a0;
            p.kc[head_base + (size_t)pos * hd + i1] = a1;
        }
    }
    if (tid < hd) {
        const __half hv = __float2half_rn(vv);
        vcur[tid] = hv;
        if (pos < CHUNK) vs[pos * hd + tid] = hv;
        if (write) p.vc[head_base + (size_t)pos * hd + tid] = hv;
    }
    if (tid < MAX_REP) {
        mla[tid] = -INFINITY;
        mla[MAX_REP + tid] = 0.0f;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    const int parts = NT / hd;  // P.V: threads per output element, splitting the positions
    const int d = tid % hd, part = tid / hd;
    float o[NH];
#pragma unroll
    for (int h = 0; h < NH; h++) o[h] = 0.0f;
    for (int t0 = 0; t0 < kv_len; t0 += CHUNK) {
        const int nt = min((int)CHUNK, kv_len - t0);
        if (t0) {
            __syncthreads();  // the previous chunk is consumed
            load_chunk(t0);
            // this position's rows in the last chunk, from kcur / vcur (written before the first
            // chunk's barrier; the first chunk takes them in the rope phase)
            if (pos - t0 < CHUNK)
                for (int c = tid; c < per_row; c += NT) {
                    *(uint4 *)(ks + (pos - t0) * kstride + c * 8) = *(const uint4 *)(kcur + c * 8);
                    *(uint4 *)(vs + (pos - t0) * hd + c * 8) = *(const uint4 *)(vcur + c * 8);
                }
        }
        cp_async_wait_all();
        __syncthreads();  // the chunk's rows, and the first time kcur, vcur, qf and mla, visible
        // Scores: two threads a position (each half of the row), every head of the group.
        {
            const int j = tid >> 1, hh = tid & 1, d0 = hh * half;
            float acc[NH];
#pragma unroll
            for (int h = 0; h < NH; h++) acc[h] = 0.0f;
            if (j < nt) {
                for (int m = 0; m < half / 8; m++) {
                    const uint4 u = *(const uint4 *)(ks + j * kstride + d0 + m * 8);
                    const __half2 *h2 = (const __half2 *)&u;
                    float kf[8];
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float2 f = __half22float2(h2[e]);
                        kf[2 * e] = f.x;
                        kf[2 * e + 1] = f.y;
                    }
#pragma unroll
                    for (int h = 0; h < NH; h++) {
                        if (h < rep) {
                            const float4 qa = *(const float4 *)(qf + h * hd + d0 + m * 8);
                            const float4 qb = *(const float4 *)(qf + h * hd + d0 + m * 8 + 4);
                            acc[h] = fmaf(qa.x, kf[0], acc[h]);
                            acc[h] = fmaf(qa.y, kf[1], acc[h]);
                            acc[h] = fmaf(qa.z, kf[2], acc[h]);
                            acc[h] = fmaf(qa.w, kf[3], acc[h]);
                            acc[h] = fmaf(qb.x, kf[4], acc[h]);
                            acc[h] = fmaf(qb.y, kf[5], acc[h]);
                            acc[h] = fmaf(qb.z, kf[6], acc[h]);
                            acc[h] = fmaf(qb.w, kf[7], acc[h]);
                        }
                    }
                }
            }
#pragma unroll
            for (int h = 0; h < NH; h++) {
                const float a = acc[h] + __shfl_xor_sync(0xffffffffu, acc[h], 1);
                if (h < rep && hh == 0) sc[h * CHUNK + j] = j < nt ? a * scale : -INFINITY;
            }
        }
        __syncthreads();
        // The online softmax: a warp a head.
        for (int h = warp; h < rep; h += NT / 32) {
            const float v0 = sc[h * CHUNK + lane], v1 = sc[h * CHUNK + lane + 32];
            const float mc = warp_max(fmaxf(v0, v1));
            const float mo = mla[h], mn = fmaxf(mo, mc);
            const float e0 = lane < nt ? expf(v0 - mn) : 0.0f;
            const float e1 = lane + 32 < nt ? expf(v1 - mn) : 0.0f;
            const float ls = warp_sum(e0 + e1);
            sc[h * CHUNK + lane] = e0;
            sc[h * CHUNK + lane + 32] = e1;
            // every lane has read mla[h] (mo) before lane 0 replaces it: the shuffles above
            // converge the warp but order no memory (compute-sanitizer racecheck: 12 hazard warnings)
            __syncwarp();
            if (lane == 0) {
                const float al = expf(mo - mn);  // 0 on the first chunk (mo = -inf)
                mla[h] = mn;
                mla[MAX_REP + h] = mla[MAX_REP + h] * al + ls;
                mla[2 * MAX_REP + h] = al;
            }
        }
        __syncthreads();
        if (part < parts) {
#pragma unroll
            for (int h = 0; h < NH; h++)
                if (h < rep) o[h] *= mla[2 * MAX_REP + h];
            for (int j = part; j < nt; j += parts) {
                const float vf = __half2float(vs[j * hd + d]);
#pragma unroll
                for (int h = 0; h < NH; h++)
                    if (h < rep) o[h] = fmaf(sc[h * CHUNK + j], vf, o[h]);
            }
        }
    }
    // Sum the parts (hd < NT) through shared memory (the K tile, consumed), then o / l.
    __syncthreads();
    // [parts][rep][hd]: NT * MAX_REP floats (4 KiB) at most, within the K and V tiles (>= 5 KiB)
    float *po = (float *)ks;
    if (parts > 1) {
        if (part < parts) {
#pragma unroll
            for (int h = 0; h < NH; h++)
                if (h < rep) po[(part * rep + h) * hd + d] = o[h];
        }
        __syncthreads();
        for (int idx = tid; idx < rep * hd; idx += NT) {
            const int h = idx / hd, dd = idx % hd;
            float s = 0.0f;
            for (int q = 0; q < parts; q++) s += po[(q * rep + h) * hd + dd];
            p.out[(size_t)(h0 + h) * hd + dd] = s / mla[MAX_REP + h];
        }
    } else if (part == 0) {
#pragma unroll
        for (int h = 0; h < NH; h++)
            if (h < rep) p.out[(size_t)(h0 + h) * hd + d] = o[h] / mla[MAX_REP + h];
    }
}

// grid: n_out / 16 blocks of NT threads; dynamic shared memory max(k_pad, att_smem_bytes).
// The GEMV part is kernel 3 (w2a8_gemv.cuh) with the F32 epilogue, 8 lanes a row.
// Registers: with K <= 2560 (MAXC <= 5) held to kernel 3's 80, so that two blocks still fit on an
// SM beside the previous kernel's when PDL launches this one early (without the bound: 92 or
// more; ptxas spills 16-56 bytes with it, the block's long-lived indices by the look of it); at 7
// and 8 the bound spilled 140-208 bytes, so those take what they need (126-152).
// PER_HEAD: Params.per_head as a template parameter (the per-head sums in registers: 1 or 8).
template <int MAXC, bool PER_HEAD>
__global__ void __launch_bounds__(NT, (MAXC <= 5 ? 6 : 1)) qkv_attn_kernel(Params pa) {
    const GemvParams &p = pa.g;
    extern __shared__ uint4 smem_q4[];
    int8_t *qs = (int8_t *)smem_q4;
    __shared__ float red[GEMV_RED], red2[NT / 32];
    __shared__ int qred[NT / 32];
    __shared__ int last_sh;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int grp = lane / LPR, sub = lane % LPR;
    // This block's rows lie in one part (q, k or v) of one KV group (head_dim % 16 == 0). The k and
    // v rows take the first blocks of the grid, the q rows the last: blocks start in index order,
    // so the last block to finish a head's rows is most often one of its q blocks (per query head,
    // each then runs its own head; were it a v block, that block would run all its group's heads).
    const int hd = pa.hd, rep = pa.n_heads / pa.n_kv, qd = pa.n_heads * hd, kvd = pa.n_kv * hd;
    const int kv_blocks = 2 * kvd / GEMV_ROWS, qrows = rep * hd;
    const int r0 = (int)blockIdx.x < kv_blocks ? qd + (int)blockIdx.x * GEMV_ROWS
                                               : ((int)blockIdx.x - kv_blocks) * GEMV_ROWS;
    const int row = r0 + warp * (32 / LPR) + grp;
    const bool row_ok = row < p.n_out;
    const int C = p.k_pad >> 6;
    const uint4 *wrow = (const uint4 *)(p.w + (size_t)(row_ok ? row : 0) * (size_t)(p.k_pad >> 2));
    uint4 wv[MAXC];
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int c = sub + LPR * i;
        wv[i] = (row_ok && c < C) ? ld_stream(wrow + c) : make_uint4(0, 0, 0, 0);
    }
    const bool fast = p.x && (p.k_in & 3) == 0 && p.k_pad <= 4 * NT * MAXC && ((uintptr_t)p.x & 15) == 0 &&
                      ((uintptr_t)p.norm_w & 15) == 0;
    float4 wn[MAXC];
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int e = 4 * (threadIdx.x + NT * i);
        wn[i] = fast && e < p.k_in && p.norm_w ? *(const float4 *)(p.norm_w + e) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    // rank: this block's place among its group's blocks (its share of the prefetch)
    int grp_of, rank;
    if (r0 < qd) {
        grp_of = r0 / qrows, rank = (r0 - grp_of * qrows) / GEMV_ROWS;
    } else if (r0 < qd + kvd) {
        grp_of = (r0 - qd) / hd, rank = (qrows + r0 - qd - grp_of * hd) / GEMV_ROWS;
    } else {
        grp_of = (r0 - qd - kvd) / hd, rank = (qrows + hd + r0 - qd - kvd - grp_of * hd) / GEMV_ROWS;
    }
    const int expect = (rep + 2) * hd / GEMV_ROWS;  // blocks of a group: its q, k and v rows
    if (pa.prefetch) {
        // The group's cached rows below the position (written by earlier steps) into L2 while the
        // previous kernel runs, so that the last block's loads hit L2. A hint only: the position
        // may be read early here (a stale one would only prefetch other lines).
        const int pp = *pa.pos;
        if (pp > 0 && pp < pa.ctx) {
            const size_t lines = ((size_t)pp * hd * 2 + 127) / 128;
            const char *kb = (const char *)(pa.kc + (size_t)grp_of * pa.ctx * hd);
            const char *vb = (const char *)(pa.vc + (size_t)grp_of * pa.ctx * hd);
            for (size_t i = (size_t)rank * NT + threadIdx.x; i < 2 * lines; i += (size_t)expect * NT) {
                const char *a = i < lines ? kb + i * 128 : vb + (i - lines) * 128;
                asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(a));
            }
        }
    }
    if (!p.late_trigger) pdl_trigger();
    pdl_wait();
    if (p.late_trigger == 1) pdl_trigger();
    float s;
    if (fast) {
        s = gemv_prologue_fast<NT, MAXC>(p, wn, qs, red, red2, qred, lane, warp);
    } else {
        s = gemv_prologue_general<NT>(p, qs, red, qred, lane, warp);
    }
    __syncthreads();
    int acc4[4] = {0, 0, 0, 0};
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int c = sub + LPR * i;
        if (c < C) dot_chunk(wv[i], qs, c, acc4);
    }
    for (int base = LPR * MAXC; base < C; base += LPR * MAXC) {
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int c = base + sub + LPR * i;
            wv[i] = (row_ok && c < C) ? ld_stream(wrow + c) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int c = base + sub + LPR * i;
            if (c < C) dot_chunk(wv[i], qs, c, acc4);
        }
    }
    int acc = dot_total(acc4);
    acc += __shfl_xor_sync(0xffffffffu, acc, 4);
    acc += __shfl_xor_sync(0xffffffffu, acc, 2);
    acc += __shfl_xor_sync(0xffffffffu, acc, 1);
    int qsum = 0;
#pragma unroll
    for (int w = 0; w < NT / 32; w++) qsum += qred[w];
    acc -= qsum;  // codes c = t + 1
    if (p.late_trigger == 2) pdl_trigger();
    if (sub == 0 && row_ok) {
        const float g = row < p.seg0 ? p.g0 : row < p.seg1 ? p.g1 : p.g2;
        // the roundings of kernel 3 (the CPU's y = (float)acc / s * gamma)
        ((float *)p.out)[row] = __fmul_rn(__fdiv_rn((float)acc, s), g);
    }

    __threadfence();  // this block's rows are visible before its arrival is counted
    __syncthreads();
    // Arrivals: per KV group, one count of its blocks; per query head, one count per head of the
    // head's q blocks and its group's k and v blocks (a k or v block counts for each head of its
    // group). last_sh: bit r set where this block is the last arrival of head (or group) r's unit.
    const int expect_head = 3 * hd / GEMV_ROWS;
    if (warp == 0) {
        bool last = false;
        if (!PER_HEAD) {
            last = lane == 0 && atomicAdd(&pa.count[grp_of], 1) == expect - 1;
        } else if (r0 < qd) {
            last = lane == 0 && atomicAdd(&pa.count[r0 / hd], 1) == expect_head - 1;
        } else {
            last = lane < rep && atomicAdd(&pa.count[grp_of * rep + lane], 1) == expect_head - 1;
        }
        const unsigned m = __ballot_sync(0xffffffffu, last);
        if (lane == 0) last_sh = (int)m;
    }
    __syncthreads();
    const unsigned m = (unsigned)last_sh;
    if (!m) return;
    __threadfence();  // every other block's rows of the unit are visible from here
    const int pos = *pa.pos;
    // One call site (three inlined copies of the attention spilled at 80 registers).
    for (int r = 0; r < MAX_REP; r++) {
        if (!(m >> r & 1)) continue;
        int h0, nh, unit;  // the unit's first head, its heads, its counter
        if (!PER_HEAD) {
            h0 = grp_of * rep, nh = rep, unit = grp_of;
        } else if (r0 < qd) {
            h0 = r0 / hd, nh = 1, unit = h0;
        } else {
            h0 = grp_of * rep + r, nh = 1, unit = h0;
        }
        __syncthreads();  // the previous unit's shared memory is consumed
        if (threadIdx.x == 0) pa.count[unit] = 0;  // every block of the unit has counted
        // the group's cache row at pos: by its group's unit, or by its first head's
        group_attention<PER_HEAD ? 1 : MAX_REP>(pa, grp_of, h0, nh, h0 % rep == 0, pos, (unsigned char *)smem_q4);
    }
}

// The parameters of a launch (the shapes checked by decode below); prefetch and per_head off.
inline Params make_params(const KcudaTernary *w, const float *d_x, int k_in, const float *d_norm_w, float eps,
                          const KcudaAttnShape *a, float *d_qkv, uint16_t *d_kc, uint16_t *d_vc, const int *d_pos,
                          float *d_out, int *d_count, int pdl) {
    qkv_attn::Params p = {};
    p.g.w = w->d_codes;
    p.g.n_out = w->n_out;
    p.g.k_pad = w->k_pad;
    p.g.k_in = k_in;
    p.g.x = d_x;
    p.g.norm_w = d_norm_w;
    p.g.eps = eps;
    p.g.seg0 = w->seg_end[0];
    p.g.seg1 = w->seg_end[1];
    p.g.g0 = w->gamma[0];
    p.g.g1 = w->gamma[1];
    p.g.g2 = w->gamma[2];
    p.g.out = d_qkv;
    p.g.late_trigger = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;  // as kcuda_w2a8_gemv
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv;
    p.hd = a->head_dim;
    p.style = a->rope_style;
    p.ctx = a->ctx;
    p.rope = a->d_rope;
    p.kc = (__half *)d_kc;
    p.vc = (__half *)d_vc;
    p.pos = d_pos;
    p.out = d_out;
    p.count = d_count;
    return p;
}

// The launch of a checked shape (decode below checks it): kernel 3's
// loads in flight per lane by K, shared memory for the GEMV's activations or the attention.
template <int MAXC>
inline int launch_maxc(const Params &p, size_t smem, int pdl, cudaStream_t st) {
    const dim3 grid((unsigned)(p.g.n_out / GEMV_ROWS));
    if (p.per_head) return kcuda_launch(qkv_attn_kernel<MAXC, true>, grid, dim3(NT), smem, st, pdl, p);
    return kcuda_launch(qkv_attn_kernel<MAXC, false>, grid, dim3(NT), smem, st, pdl, p);
}
inline int launch(const Params &p, int pdl, cudaStream_t st) {
    const int att = att_smem_bytes(p.n_heads / p.n_kv, p.hd);
    const size_t smem = (size_t)(att > p.g.k_pad ? att : p.g.k_pad);
    const int per_lane = (p.g.k_pad / 64 + LPR - 1) / LPR;
    if (per_lane <= 4) return launch_maxc<4>(p, smem, pdl, st);
    if (per_lane <= 5) return launch_maxc<5>(p, smem, pdl, st);
    if (per_lane <= 7) return launch_maxc<7>(p, smem, pdl, st);
    return launch_maxc<8>(p, smem, pdl, st);
}

// Whether the kernel takes these shapes (the QKV matrix as the backend uploads it).
inline bool shape_ok(const KcudaTernary *w, const KcudaAttnShape *a) {
    if (!w || !a || a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->ctx <= 0) return false;
    const int hd = a->head_dim, rep = a->n_heads / a->n_kv;
    if (hd <= 0 || hd % 16 || hd > MAX_HD || rep > MAX_REP) return false;
    if (w->glu || w->n_out != (a->n_heads + 2 * a->n_kv) * hd || w->k_pad <= 0 || w->k_pad % 128) return false;
    // a lane's chunks of a row in registers (kernel 3 with MAXC <= 8): K <= 4096
    return (w->k_pad / 64 + LPR - 1) / LPR <= 8;
}

// The launcher: the projection as kcuda_w2a8_gemv's (d_x with the optional RMSNorm, F32 epilogue
// into d_qkv, the same bits), the attention with kcuda_attn_decode's contract (d_count: n_heads
// ints, zero at start, left zero); prefetch and per_head as given. KCUDA_OK or the error (a shape
// it does not take: KCUDA_ERR_SHAPE with a message).
inline int decode(const KcudaTernary *w, const float *d_x, int k_in, const float *d_norm_w, float eps,
                  const KcudaAttnShape *a, float *d_qkv, uint16_t *d_kc, uint16_t *d_vc, const int *d_pos,
                  float *d_out, int *d_count, int pdl, int prefetch, int per_head, cudaStream_t st) {
    const char *fn = "qkv_attn::decode";
    int rc = kcuda_check_ternary(w, KCUDA_EP_F32, fn);
    if (rc) return rc;
    rc = kcuda_attn_check_shape(a, fn);
    if (rc) return rc;
    if (!d_x || !d_qkv || !d_kc || !d_vc || !d_pos || !d_out || !d_count)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL pointer", fn);
    if (!shape_ok(w, a))
        return kcuda_fail(KCUDA_ERR_SHAPE,
                          "%s: heads %d/%d, head_dim %d, QKV %dx%d unsupported (head_dim a multiple of 16 up to %d, "
                          "up to %d query heads per KV head, K up to 4096, rows = (heads + 2 KV heads) x head_dim)",
                          fn, a->n_heads, a->n_kv, a->head_dim, w->n_out, w->k_pad, (int)MAX_HD, (int)MAX_REP);
    if (k_in <= 0 || k_in > w->k_pad)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: input length %d does not fit k_pad %d", fn, k_in, w->k_pad);
    if ((uintptr_t)d_kc % 16 || (uintptr_t)d_vc % 16) return kcuda_fail(KCUDA_ERR_ARG, "%s: cache not 16-byte aligned", fn);
    if (pdl < KCUDA_PDL_OFF || pdl > KCUDA_PDL_AFTER_WORK) return kcuda_fail(KCUDA_ERR_ARG, "%s: launch option %d", fn, pdl);
    Params p = make_params(w, d_x, k_in, d_norm_w, eps, a, d_qkv, d_kc, d_vc, d_pos, d_out, d_count, pdl);
    p.prefetch = prefetch;
    p.per_head = per_head;
    return launch(p, pdl, st);
}

}  // namespace qkv_attn
}  // namespace
