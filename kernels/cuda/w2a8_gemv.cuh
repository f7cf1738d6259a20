// The decode GEMV kernels (batch 1, W2A8, fused RMSNorm + int8 prologue, the epilogues of
// kernels_cuda.h), shared by their launcher (w2a8_gemv.cu) and the kernel lab
// (kernels/dev/w2a8_gemv.cu), which runs them at other row counts and shapes. Internal to
// kernels/cuda and kernels/dev.
#pragma once
#include "kernels/cuda/common.cuh"

struct GemvParams {
    const uint8_t *w;
    int n_out, k_pad, k_in;
    const float *x, *norm_w;
    float eps;
    const int8_t *q;
    const float *s;
    const int32_t *qsum;
    int seg0, seg1;
    float g0, g1, g2;
    int act;           // GLU activation (KcudaTernary.act)
    void *out;
    int late_trigger;  // next kernel may launch: 0 at the start, 1 after the PDL wait, 2 after the dot products
};

enum { GEMV_THREADS = 128, GEMV_ROWS = 16 };
enum { GEMV_RED = 8 }; // the fast prologue's sum of squares: one partial per warp of 256 threads

// Activation layout in shared memory: chunk c (64 weights = 16 bytes of a row, half h of I2_S
// block b) needs the 16 activations at block offsets 32j + 16h for j = 0..3. Those four
// 16-byte pieces are stored together at 64c, piece j in slot (j + b) % 4, so the 8 lanes of a
// row group (chunks c..c+7) hit 8 different 16-byte bank groups.
__device__ __forceinline__ int act_offset(int i) {
    const int b = i >> 7, o = i & 127, j = o >> 5, h = (o >> 4) & 1, e = o & 15;
    return (b << 7) + (h << 6) + (((j + b) & 3) << 4) + e;
}

// The dot products take each 2-bit code in place instead of shifting it down: code j of a byte
// (bits 6-2j) masked out is code << (6 - 2j), an unsigned byte <= 128, and one accumulator per j
// sums those against the activations (dp4a u8 x s8), so acc[j] = 4^(3-j) * sum(code * q) exactly
// and dot_total() shifts each back. One LOP3 + one IDP per 4 weights instead of SHF + LOP3 + IDP
// (cuobjdump of kernel 3 at K 2560: 262 LOP3 + 149 SHF beside 160 IDP), and four independent
// chains instead of one. |acc[0]| <= 128 * 128 * K/4 < 2^31 for K <= 32768 (the launcher's limit).
// Measured in the decode chain on an H100 (2026-12-06, kernels/dev/run_timeline_device.sh, 2B
// shapes, two rounds alternated): gate/up 4.63 -> 4.03 us exposed per layer, QKV 3.84 -> 3.60,
// decode step 990 -> 972 us at position ~50, 1164 -> 1138 us at ~530.
__device__ __forceinline__ int dp4a_u8s8(uint32_t a, uint32_t b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

__device__ __forceinline__ int dot_total(const int (&acc)[4]) {
    return (acc[0] >> 6) + (acc[1] >> 4) + (acc[2] >> 2) + acc[3];
}

__device__ __forceinline__ void dot_chunk(uint4 w, const int8_t *qs, int c, int (&acc)[4]) {
    const int b = c >> 1;
    const uint4 *base = (const uint4 *)(qs + (c << 6));
    const uint32_t ww[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const uint4 a = base[(j + b) & 3];
        const uint32_t aa[4] = {a.x, a.y, a.z, a.w};
        const uint32_t mask = 0x03030303u << (6 - 2 * j);
#pragma unroll
        for (int m = 0; m < 4; m++) acc[j] = dp4a_u8s8(ww[m] & mask, aa[m], acc[j]);
    }
}

// The prologue's general paths, shared by both kernels: x that the float4 path cannot take (three
// strided passes over x, L1/L2-resident), or a pre-quantized q with its scale and sum. Writes q
// into qs (act_offset layout) and the per-warp sums of q into qred; returns s.
template <int NT = GEMV_THREADS>
__device__ __forceinline__ float gemv_prologue_general(const GemvParams &p, int8_t *qs, float *red, int *qred,
                                                       int lane, int warp) {
    const int tid = threadIdx.x;
    float s;
    if (p.x) {
        float inv = 1.0f;
        if (p.norm_w) {
            float ss = 0.0f;
            for (int i = tid; i < p.k_in; i += NT) ss += p.x[i] * p.x[i];
            ss = block_sum<NT>(ss, red);
            inv = 1.0f / sqrtf(ss / (float)p.k_in + p.eps);
    }
        float amax = 0.0f;
        for (int i = tid; i < p.k_in; i += NT) {
            float v = p.norm_w ? p.norm_w[i] * (p.x[i] * inv) : p.x[i];
            amax = fmaxf(amax, fabsf(v));
    }
        amax = block_max<NT>(amax, red);
        s = 127.0f / fmaxf(amax, 1e-5f);
        int sum = 0;
        for (int i4 = tid * 4; i4 < p.k_pad; i4 += NT * 4) {
            uint32_t word = 0;
    #pragma unroll
            for (int j = 0; j < 4; j++) {
                const int i = i4 + j;
                int qi = 0;
                if (i < p.k_in) {
                    float v = p.norm_w ? p.norm_w[i] * (p.x[i] * inv) : p.x[i];
                    float r = fminf(fmaxf(rintf(v * s), -128.0f), 127.0f);
                    qi = (int)r;
                }
                sum += qi;
                word |= (uint32_t)(qi & 0xff) << (8 * j);
            }
            *(uint32_t *)(qs + act_offset(i4)) = word;
    }
        sum = warp_sum_i(sum);
        if (lane == 0) qred[warp] = sum;
    } else {
        for (int i4 = tid * 4; i4 < p.k_pad; i4 += NT * 4)
            *(uint32_t *)(qs + act_offset(i4)) = *(const uint32_t *)(p.q + i4);
        s = p.s ? p.s[0] : 1.0f;
        if (tid < NT / 32) qred[tid] = tid == 0 ? p.qsum[0] : 0;
    }
    return s;
}

// The fast prologue of both kernels: x in one batch of MAXC float4s per thread (one L2 round trip),
// wn the norm weights loaded before the PDL wait, then two block reductions: x_n = wn * (x * inv),
// s = 127 / max|x_n|, q = rint(x_n * s) into qs (act_offset layout), per-warp sums of q into
// qred. Returns s. red: GEMV_RED floats, red2: NT/32, this call's own (its reductions skip the
// leading barrier). Used where k_in % 4 == 0, k_pad <= 4 NT MAXC
// and x, norm_w are 16-byte aligned.
template <int NT, int MAXC>
__device__ __forceinline__ float gemv_prologue_fast(const GemvParams &p, const float4 (&wn)[MAXC], int8_t *qs,
                                                    float *red, float *red2, int *qred, int lane, int warp) {
    const int tid = threadIdx.x;
    float4 xv[MAXC];
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int e = 4 * (tid + NT * i);
        xv[i] = e < p.k_in ? *(const float4 *)(p.x + e) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (p.norm_w) {
        // The sum of squares in the order of 256 threads whatever NT is (with 128, a thread keeps
        // the partials of threads tid and tid + 128 apart), so every kernel, block size and
        // matrix computes the same inv, s and q for the same x.
        static_assert(NT == 128 || NT == 256, "the prologue's sum order is that of 256 threads");
        constexpr int V = 256 / NT;
        float ssv[V];
#pragma unroll
        for (int v = 0; v < V; v++) ssv[v] = 0.0f;
#pragma unroll
        for (int i = 0; i < MAXC; i++)
            ssv[i % V] += xv[i].x * xv[i].x + xv[i].y * xv[i].y + xv[i].z * xv[i].z + xv[i].w * xv[i].w;
#pragma unroll
        for (int v = 0; v < V; v++) {
            const float w = warp_sum(ssv[v]);
            if (lane == 0) red[warp + v * (NT / 32)] = w;
        }
        __syncthreads();
        float ss = 0.0f;
#pragma unroll
        for (int k = 0; k < GEMV_RED; k++) ss += red[k];
        const float inv = 1.0f / sqrtf(ss / (float)p.k_in + p.eps);
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            xv[i].x = wn[i].x * (xv[i].x * inv);
            xv[i].y = wn[i].y * (xv[i].y * inv);
            xv[i].z = wn[i].z * (xv[i].z * inv);
            xv[i].w = wn[i].w * (xv[i].w * inv);
        }
    }
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < MAXC; i++)
        amax = fmaxf(amax, fmaxf(fmaxf(fabsf(xv[i].x), fabsf(xv[i].y)), fmaxf(fabsf(xv[i].z), fabsf(xv[i].w))));
    amax = block_max<NT, true>(amax, red2);
    const float s = 127.0f / fmaxf(amax, 1e-5f);
    int sum = 0;
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int e = 4 * (tid + NT * i);
        if (e < p.k_pad) {
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
    if (lane == 0) qred[warp] = sum;
    return s;
}

// ---- kernel 3: one row per LPR-lane group ------------------------------------------------------------
// LPR (8 or 16) lanes per row, 16 rows per block of 16 * LPR threads, 16-byte loads: all of a
// lane's weight loads and its norm weights are issued before the PDL wait, then the prologue
// quantizes x into swizzled shared memory and the dot products run from registers. MAXC = 16-byte
// loads in flight per lane. 16 lanes halve each thread's share of a long row (K 6912: down_proj)
// in the prologue and the dot products, both on the critical path after the wait.
template <int MAXC, int EP, int LPR = 8>
__global__ void __launch_bounds__(16 * LPR) w2a8_gemv_kernel3(GemvParams p) {
    constexpr int NT = 16 * LPR;
    extern __shared__ uint4 smem_q4[];
    int8_t *qs = (int8_t *)smem_q4;
    __shared__ float red[GEMV_RED], red2[NT / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int grp = lane / LPR, sub = lane % LPR;
    const int row = blockIdx.x * GEMV_ROWS + warp * (32 / LPR) + grp;
    const bool row_ok = row < p.n_out;
    const int C = p.k_pad >> 6;
    const uint4 *wrow = (const uint4 *)(p.w + (size_t)(row_ok ? row : 0) * (size_t)(p.k_pad >> 2));

    // Weights do not depend on the previous kernel: start streaming them now.
    uint4 wv[MAXC];
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int c = sub + LPR * i;
        wv[i] = (row_ok && c < C) ? ld_stream(wrow + c) : make_uint4(0, 0, 0, 0);
    }
    // The norm weights are constant too: fetched before the wait as well.
    const bool fast = p.x && (p.k_in & 3) == 0 && p.k_pad <= 4 * NT * MAXC && ((uintptr_t)p.x & 15) == 0 &&
                      ((uintptr_t)p.norm_w & 15) == 0;
    float4 wn[MAXC];
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int e = 4 * (threadIdx.x + NT * i);
        wn[i] = fast && e < p.k_in && p.norm_w ? *(const float4 *)(p.norm_w + e) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (!p.late_trigger) pdl_trigger();
    pdl_wait();
    if (p.late_trigger == 1) pdl_trigger();
    // The residual this row adds to, loaded now: its L2 round trip overlaps the prologue's load
    // of x instead of following the dot products.
    const float resid = (EP == KCUDA_EP_RESID && sub == 0 && row_ok) ? ((const float *)p.out)[row] : 0.0f;

    __shared__ int qred[NT / 32];
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
    if (LPR == 16) acc += __shfl_xor_sync(0xffffffffu, acc, 8);
    acc += __shfl_xor_sync(0xffffffffu, acc, 4);
    acc += __shfl_xor_sync(0xffffffffu, acc, 2);
    acc += __shfl_xor_sync(0xffffffffu, acc, 1);
    int qsum = 0;
#pragma unroll
    for (int w = 0; w < NT / 32; w++) qsum += qred[w];
    acc -= qsum;  // codes c = t + 1
    if (p.late_trigger == 2) pdl_trigger();
    if (EP == KCUDA_EP_GLU) {
        const float y = __fmul_rn(__fdiv_rn((float)acc, s), (grp & 1) ? p.g1 : p.g0);
        const float up = __shfl_down_sync(0xffffffffu, y, LPR);
        if (sub == 0 && (grp & 1) == 0 && row_ok) ((float *)p.out)[row >> 1] = glu_act_mul(y, up, p.act);
        return;
    }
    if (sub != 0 || !row_ok) return;
    if (EP == KCUDA_EP_I32) {
        ((int32_t *)p.out)[row] = acc;
        return;
    }
    const float g = row < p.seg0 ? p.g0 : row < p.seg1 ? p.g1 : p.g2;
    // Explicit roundings: no fused multiply-add, so the result equals the CPU's
    // y = (float)acc / s * gamma; out += y bit for bit.
    const float y = __fmul_rn(__fdiv_rn((float)acc, s), g);
    float *o = (float *)p.out + row;
    *o = EP == KCUDA_EP_RESID ? __fadd_rn(resid, y) : y;
}

// ---- kernel 5: R rows per 8-lane group ------------------------------------------------------------
// Version 3 with R rows per 8-lane group (a block covers 16*R rows): a big matrix runs in one wave with fewer registers per
// weight byte. Kernel 3 holds K 2560 in 80 registers (6 blocks per SM), so the 864 blocks of the
// 13824-row gate/up matrix took two waves; with R 2 it is 432 blocks in one. Measured on an H100
// (2026-11-23, kernels/dev/README.md): 13824x2560 5.83 -> 4.31 us alone (int8 input, PDL); decode
// 64/64 with the backend's trigger placement 996 -> 1062 tok/s. The prologue arithmetic is
// written exactly as in kernel 3 (same per-thread partials, same block reduction order): same s,
// same q, same bits.

template <int MAXC, int R>
__device__ __forceinline__ void dot_chunk_rows(const uint4 (&w)[R][MAXC], int i, const int8_t *qs, int c,
                                               int (&acc)[R][4]) {
    const int b = c >> 1;
    const uint4 *base = (const uint4 *)(qs + (c << 6));
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const uint4 a = base[(j + b) & 3];
        const uint32_t aa[4] = {a.x, a.y, a.z, a.w};
        const uint32_t mask = 0x03030303u << (6 - 2 * j);
#pragma unroll
        for (int r = 0; r < R; r++) {
            const uint32_t ww[4] = {w[r][i].x, w[r][i].y, w[r][i].z, w[r][i].w};
#pragma unroll
            for (int m = 0; m < 4; m++) acc[r][j] = dp4a_u8s8(ww[m] & mask, aa[m], acc[r][j]);
        }
    }
}

template <int MAXC, int R, int EP, int NT = GEMV_THREADS>
__global__ void __launch_bounds__(NT) w2a8_gemv_kernel5(GemvParams p) {
    constexpr int RS = NT / 8;  // rows of one R slice
    extern __shared__ uint4 smem_q4[];
    int8_t *qs = (int8_t *)smem_q4;
    __shared__ float red[GEMV_RED], red2[NT / 32];
    __shared__ int qred[NT / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int grp = lane >> 3, sub = lane & 7;
    const int row0 = blockIdx.x * (RS * R) + warp * 4 + grp;  // row r: row0 + RS r
    const int C = p.k_pad >> 6;
    const size_t rb = (size_t)(p.k_pad >> 2);

    uint4 wv[R][MAXC];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int row = row0 + RS * r;
        const uint4 *wrow = (const uint4 *)(p.w + (size_t)(row < p.n_out ? row : 0) * rb);
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int c = sub + 8 * i;
            wv[r][i] = (row < p.n_out && c < C) ? ld_stream(wrow + c) : make_uint4(0, 0, 0, 0);
        }
    }
    const bool fast = p.x && (p.k_in & 3) == 0 && p.k_pad <= 4 * NT * MAXC && ((uintptr_t)p.x & 15) == 0 &&
                      ((uintptr_t)p.norm_w & 15) == 0;
    const int tid = threadIdx.x;
    // The norm weights are constant: loaded into registers before the wait (as version 3).
    float4 wnr[MAXC];
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int e = 4 * (tid + NT * i);
        wnr[i] = fast && e < p.k_in && p.norm_w ? *(const float4 *)(p.norm_w + e) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (!p.late_trigger) pdl_trigger();
    pdl_wait();
    if (p.late_trigger == 1) pdl_trigger();
    // The residuals, loaded now (as kernel 3): their round trip overlaps the prologue's.
    float resid[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int row = row0 + RS * r;
        resid[r] = (EP == KCUDA_EP_RESID && sub == 0 && row < p.n_out) ? ((const float *)p.out)[row] : 0.0f;
    }

    float s;
    if (fast) {
        s = gemv_prologue_fast<NT, MAXC>(p, wnr, qs, red, red2, qred, lane, warp);
    } else {
        s = gemv_prologue_general<NT>(p, qs, red, qred, lane, warp);
    }
    __syncthreads();

    int acc[R][4];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int a = 0; a < 4; a++) acc[r][a] = 0;
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int c = sub + 8 * i;
        if (c < C) dot_chunk_rows<MAXC, R>(wv, i, qs, c, acc);
    }
    for (int base = 8 * MAXC; base < C; base += 8 * MAXC) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int row = row0 + RS * r;
            const uint4 *wrow = (const uint4 *)(p.w + (size_t)(row < p.n_out ? row : 0) * rb);
#pragma unroll
            for (int i = 0; i < MAXC; i++) {
                const int c = base + sub + 8 * i;
                wv[r][i] = (row < p.n_out && c < C) ? ld_stream(wrow + c) : make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int c = base + sub + 8 * i;
            if (c < C) dot_chunk_rows<MAXC, R>(wv, i, qs, c, acc);
        }
    }
    int qsum = 0;
#pragma unroll
    for (int w = 0; w < NT / 32; w++) qsum += qred[w];
    if (p.late_trigger == 2) pdl_trigger();
#pragma unroll
    for (int r = 0; r < R; r++) {
        int a = dot_total(acc[r]);
        a += __shfl_xor_sync(0xffffffffu, a, 4);
        a += __shfl_xor_sync(0xffffffffu, a, 2);
        a += __shfl_xor_sync(0xffffffffu, a, 1);
        a -= qsum;  // codes c = t + 1
        const int row = row0 + RS * r;
        const bool row_ok = row < p.n_out;
        if (EP == KCUDA_EP_GLU) {
            const float y = __fmul_rn(__fdiv_rn((float)a, s), (grp & 1) ? p.g1 : p.g0);
            const float up = __shfl_down_sync(0xffffffffu, y, 8);
            if (sub == 0 && (grp & 1) == 0 && row_ok) ((float *)p.out)[row >> 1] = glu_act_mul(y, up, p.act);
            continue;
        }
        if (sub != 0 || !row_ok) continue;
        if (EP == KCUDA_EP_I32) {
            ((int32_t *)p.out)[row] = a;
            continue;
        }
        const float g = row < p.seg0 ? p.g0 : row < p.seg1 ? p.g1 : p.g2;
        const float y = __fmul_rn(__fdiv_rn((float)a, s), g);
        float *o = (float *)p.out + row;
        *o = EP == KCUDA_EP_RESID ? __fadd_rn(resid[r], y) : y;
    }
}
