// W2A8 decode GEMV (batch 1) with the fused RMSNorm+quant prologue and the epilogues of
// kernels_cuda.h; per-row RMSNorm+quant for the prefill path. Lab lineage: kernels/dev
// w2a8_gemv.cu version 3 (I2_S rows, 16-byte loads, all of a lane's loads issued before the
// prologue, 8 lanes per row, swizzled activations in shared memory).
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/common.cuh"

static thread_local char g_err[512];

int kcuda_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return code;
}

extern "C" const char *kcuda_last_error(void) { return g_err; }

// The L2 prefetch range of the next decode launch on this thread (kernels_cuda.h).
static thread_local L2Pf g_pf;

extern "C" int kcuda_set_l2_prefetch(const void *d_p0, size_t n0, const void *d_p1, size_t n1) {
    L2Pf pf = {};
    const void *p[2] = {d_p0, d_p1};
    const size_t n[2] = {n0, n1};
    for (int i = 0; i < 2; i++) {
        if (!n[i]) continue;
        if (!p[i]) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_set_l2_prefetch: NULL range of %zu bytes", n[i]);
        // the instruction wants 16-byte alignment and a multiple of 16 bytes: shrink inwards
        const uintptr_t a = ((uintptr_t)p[i] + 15) & ~(uintptr_t)15;
        const uintptr_t e = ((uintptr_t)p[i] + n[i]) & ~(uintptr_t)15;
        if (e <= a) continue;
        if (!pf.n0) pf.p0 = (const char *)a, pf.n0 = e - a;
        else pf.p1 = (const char *)a, pf.n1 = e - a;
    }
    // bulk prefetch instructions (per-line and per-sector modes measured no better, lab)
    pf.mode = 0;
    g_pf = pf;
    return KCUDA_OK;
}

static thread_local int g_next_trigger = -1;
extern "C" void kcuda_set_next_trigger(int late) { g_next_trigger = late < 0 || late > 2 ? -1 : late; }
int kcuda_take_trigger() {
    const int t = g_next_trigger;
    g_next_trigger = -1;
    return t;
}

static thread_local unsigned long long *g_trace;
extern "C" void kcuda_set_trace(unsigned long long *d_slots) { g_trace = d_slots; }
unsigned long long *kcuda_take_trace() {
    unsigned long long *t = g_trace;
    g_trace = nullptr;
    return t;
}

L2Pf kcuda_take_prefetch() {
    const L2Pf pf = g_pf;
    g_pf = L2Pf{};
    return pf;
}

int kcuda_prepare_func(const void *fn) {
    static const void *done[256];
    static int n_done;
    for (int i = 0; i < n_done; i++)
        if (done[i] == fn) return KCUDA_OK;
    const int carveout = 70;  // percent of the maximum shared memory (why: common.cuh)
    const cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout, carveout);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "setting the shared memory carveout: %s", cudaGetErrorString(e));
    if (n_done < 256) done[n_done++] = fn;
    return KCUDA_OK;
}

extern "C" int kcuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int kcuda_device_describe(char *buf, int cap) {
    int dev = 0;
    cudaDeviceProp p;
    KCUDA_TRY(cudaGetDevice(&dev));
    KCUDA_TRY(cudaGetDeviceProperties(&p, dev));
    snprintf(buf, (size_t)cap, "%s, sm_%d%d, %d SMs, %.1f GiB", p.name, p.major, p.minor,
             p.multiProcessorCount, (double)p.totalGlobalMem / (1024.0 * 1024 * 1024));
    return KCUDA_OK;
}

extern "C" size_t kcuda_mem_used(void) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) return 0;
    return tot - fr;
}

// ---- upload ------------------------------------------------------------------------------------

extern "C" int kcuda_upload_i2s(uint8_t *d_dst, const uint8_t *h_rows, int rows, int k_pad,
                                int row0, int row_step) {
    if (!d_dst || !h_rows || rows <= 0 || k_pad <= 0 || k_pad % 128 || row0 < 0 || row_step < 1)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_upload_i2s: bad arguments (rows %d, k_pad %d)",
                          rows, k_pad);
    const size_t rb = (size_t)k_pad / 4;
    uint8_t *tmp = (uint8_t *)malloc(rb * (size_t)rows);
    if (!tmp) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_upload_i2s: out of host memory");
    for (size_t i = 0; i < rb * (size_t)rows; i++) {
        // Code 3 is never written; the reference reads it as 0, so make it code 1.
        uint8_t b = h_rows[i];
        uint8_t hi = b & 0xaa, lo = b & 0x55;
        uint8_t three = hi & (uint8_t)(lo << 1);  // bit 2i+1 set where the pair is 11
        b ^= three;                               // 11 -> 01
        tmp[i] = b;
    }
    cudaError_t e;
    if (row_step == 1)
        e = cudaMemcpy(d_dst + rb * (size_t)row0, tmp, rb * (size_t)rows, cudaMemcpyHostToDevice);
    else
        e = cudaMemcpy2D(d_dst + rb * (size_t)row0, rb * (size_t)row_step, tmp, rb, rb,
                         (size_t)rows, cudaMemcpyHostToDevice);
    free(tmp);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_upload_i2s: %s", cudaGetErrorString(e));
    return KCUDA_OK;
}

// ---- GEMV ----------------------------------------------------------------------------------------

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
    L2Pf pf;           // later kernels' weights to prefetch into L2 (decode), may be empty
    unsigned long long *trace;  // decode timeline slots (lab), or NULL
};

enum { GEMV_THREADS = 128, GEMV_ROWS = 16 };

// Activation layout in shared memory: chunk c (64 weights = 16 bytes of a row, half h of I2_S
// block b) needs the 16 activations at block offsets 32j + 16h for j = 0..3. Those four
// 16-byte pieces are stored together at 64c, piece j in slot (j + b) % 4, so the 8 lanes of a
// row group (chunks c..c+7) hit 8 different 16-byte bank groups.
__device__ __forceinline__ int act_offset(int i) {
    const int b = i >> 7, o = i & 127, j = o >> 5, h = (o >> 4) & 1, e = o & 15;
    return (b << 7) + (h << 6) + (((j + b) & 3) << 4) + e;
}

__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

__device__ __forceinline__ int dot_chunk(uint4 w, const int8_t *qs, int c, int acc) {
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

template <int MAXC, int EP>
__global__ void __launch_bounds__(GEMV_THREADS) w2a8_gemv_kernel3(GemvParams p) {
    extern __shared__ uint4 smem_q4[];
    int8_t *qs = (int8_t *)smem_q4;
    trace_mark(p.trace, 0);
    __shared__ float red[GEMV_THREADS / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int grp = lane >> 3, sub = lane & 7;
    const int row = blockIdx.x * GEMV_ROWS + warp * 4 + grp;
    const bool row_ok = row < p.n_out;
    const int C = p.k_pad >> 6;
    const uint4 *wrow = (const uint4 *)(p.w + (size_t)(row_ok ? row : 0) * (size_t)(p.k_pad >> 2));

    // Weights do not depend on the previous kernel: start streaming them now.
    uint4 wv[MAXC];
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int c = sub + 8 * i;
        wv[i] = (row_ok && c < C) ? ld_stream(wrow + c) : make_uint4(0, 0, 0, 0);
    }
    // The norm weights are constant too: fetched before the wait as well.
    const bool fast = p.x && (p.k_in & 3) == 0 && p.k_pad <= 512 * MAXC && ((uintptr_t)p.x & 15) == 0 &&
                      ((uintptr_t)p.norm_w & 15) == 0;
    float4 wn[MAXC];
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int e = 4 * (threadIdx.x + GEMV_THREADS * i);
        wn[i] = fast && e < p.k_in && p.norm_w ? *(const float4 *)(p.norm_w + e) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    // After this kernel's own loads: a later kernel's weights into L2 (no registers held).
    l2_prefetch_share(p.pf, blockIdx.x, gridDim.x);
    if (!p.late_trigger) pdl_trigger();
    pdl_wait();
    trace_mark(p.trace, 1);
    if (p.late_trigger == 1) pdl_trigger();

    __shared__ int qred[GEMV_THREADS / 32];
    float s;
    if (fast) {
        // Fast prologue: each thread loads its float4s of x in one batch, so the prologue
        // waits for one L2 round trip, then two reductions.
        const int tid = threadIdx.x;
        float4 xv[MAXC];
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int e = 4 * (tid + GEMV_THREADS * i);
            xv[i] = e < p.k_in ? *(const float4 *)(p.x + e) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
        if (p.norm_w) {
            float ss = 0.0f;
#pragma unroll
            for (int i = 0; i < MAXC; i++)
                ss += xv[i].x * xv[i].x + xv[i].y * xv[i].y + xv[i].z * xv[i].z + xv[i].w * xv[i].w;
            ss = block_sum<GEMV_THREADS>(ss, red);
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
        amax = block_max<GEMV_THREADS>(amax, red);
        s = 127.0f / fmaxf(amax, 1e-5f);
        int sum = 0;
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int e = 4 * (tid + GEMV_THREADS * i);
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
    } else if (p.x) {
        const int tid = threadIdx.x;
        float inv = 1.0f;
        if (p.norm_w) {
            float ss = 0.0f;
            for (int i = tid; i < p.k_in; i += GEMV_THREADS) ss += p.x[i] * p.x[i];
            ss = block_sum<GEMV_THREADS>(ss, red);
            inv = 1.0f / sqrtf(ss / (float)p.k_in + p.eps);
        }
        float amax = 0.0f;
        for (int i = tid; i < p.k_in; i += GEMV_THREADS) {
            float v = p.norm_w ? p.norm_w[i] * (p.x[i] * inv) : p.x[i];
            amax = fmaxf(amax, fabsf(v));
        }
        amax = block_max<GEMV_THREADS>(amax, red);
        s = 127.0f / fmaxf(amax, 1e-5f);
        int sum = 0;
        for (int i4 = tid * 4; i4 < p.k_pad; i4 += GEMV_THREADS * 4) {
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
        for (int i4 = threadIdx.x * 4; i4 < p.k_pad; i4 += GEMV_THREADS * 4)
            *(uint32_t *)(qs + act_offset(i4)) = *(const uint32_t *)(p.q + i4);
        s = p.s ? p.s[0] : 1.0f;
        if (threadIdx.x < GEMV_THREADS / 32) qred[threadIdx.x] = threadIdx.x == 0 ? p.qsum[0] : 0;
    }
    __syncthreads();

    int acc = 0;
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int c = sub + 8 * i;
        if (c < C) acc = dot_chunk(wv[i], qs, c, acc);
    }
    for (int base = 8 * MAXC; base < C; base += 8 * MAXC) {
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int c = base + sub + 8 * i;
            wv[i] = (row_ok && c < C) ? ld_stream(wrow + c) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int c = base + sub + 8 * i;
            if (c < C) acc = dot_chunk(wv[i], qs, c, acc);
        }
    }
    acc += __shfl_xor_sync(0xffffffffu, acc, 4);
    acc += __shfl_xor_sync(0xffffffffu, acc, 2);
    acc += __shfl_xor_sync(0xffffffffu, acc, 1);
    int qsum = 0;
#pragma unroll
    for (int w = 0; w < GEMV_THREADS / 32; w++) qsum += qred[w];
    acc -= qsum;  // codes c = t + 1
    trace_mark(p.trace, 2);
    if (p.late_trigger == 2) pdl_trigger();
    if (EP == KCUDA_EP_GLU) {
        const float y = __fmul_rn(__fdiv_rn((float)acc, s), (grp & 1) ? p.g1 : p.g0);
        const float up = __shfl_down_sync(0xffffffffu, y, 8);
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
    if (EP == KCUDA_EP_RESID) *o = __fadd_rn(*o, y);
    else *o = y;
}

// ---- versions 5 and 6 (version 6 with R 2 is the default since 2026-11-23) ----------------------
// Measured on an H100 (2026-11-23, kernels/dev/README.md): faster in isolation on the big
// matrices (13824x2560 int8-in PDL 5.83 -> 4.32 us, 20480x3200 10.02 -> 8.38 us), but no faster
// end to end (decode 64/64: version 3 1007 tok/s; 5: 778; 6: 904; 6 with R 2 and the late
// trigger: 1013, within run-to-run spread): with fewer registers per block, the kernels after
// the current one become resident early and their weight loads compete with the current
// kernel's critical path. Kept selectable (lab: kcuda_set_gemv_version). Later (kernels/dev/README.md,
// fourth and final calls): version 6 with R 2 (only gate/up uses the kernel below, in one wave)
// and a trigger placement chosen per kernel by the backend: decode 64/64 996 -> 1062 tok/s.
// Version 3 with (a) R rows per 8-lane group (a block covers 16*R rows), so the big matrices run
// in one wave with fewer registers per weight byte and leave room on each SM for the next
// kernel's blocks (PDL) to preload their weights; (b) the norm weights copied to shared memory
// with cp.async before the PDL wait instead of being held in registers (v3: K 2560 80 registers,
// K 6912 228, i.e. 6 and 2 blocks per SM, so the 864 blocks of the 13824-row gate/up matrix
// took two waves). Each thread copies and later reads only its own float4s of norm_w, so
// cp.async.wait_all suffices (no barrier). The prologue arithmetic is written exactly as in
// version 3 (same per-thread partials, same block reduction order): same s, same q, same bits.
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    const unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sa), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit_wait_all() {
    asm volatile("cp.async.commit_group;\ncp.async.wait_all;" ::: "memory");
}

// NA independent accumulators per row (a single int chain of MAXC*16 dependent dp4a was the
// longest path after the PDL wait: K 6912 has 224 of them per lane); integer sums, so exact.
template <int R>
struct GemvAcc {
    static constexpr int NA = R >= 4 ? 1 : R == 2 ? 2 : 4;
};

template <int MAXC, int R>
__device__ __forceinline__ void dot_chunk_rows(const uint4 (&w)[R][MAXC], int i, const int8_t *qs, int c,
                                               int (&acc)[R][GemvAcc<R>::NA]) {
    constexpr int NA = GemvAcc<R>::NA;
    const int b = c >> 1;
    const uint4 *base = (const uint4 *)(qs + (c << 6));
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const uint4 a = base[(j + b) & 3];
        const uint32_t aa[4] = {a.x, a.y, a.z, a.w};
        const int sh = 6 - 2 * j;
#pragma unroll
        for (int r = 0; r < R; r++) {
            const uint32_t ww[4] = {w[r][i].x, w[r][i].y, w[r][i].z, w[r][i].w};
#pragma unroll
            for (int m = 0; m < 4; m++)
                acc[r][j % NA] = __dp4a((int)((ww[m] >> sh) & 0x03030303u), (int)aa[m], acc[r][j % NA]);
        }
    }
}

// Block reductions without the leading barrier of block_sum/block_max: each call gets its own
// shared slots, so no earlier reader can still be using them. Same order of operations.
__device__ __forceinline__ float block_sum_once(float v, float *red) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = 0.0f;
#pragma unroll
    for (int i = 0; i < GEMV_THREADS / 32; i++) t += red[i];
    return t;
}
__device__ __forceinline__ float block_max_once(float v, float *red) {
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = red[0];
#pragma unroll
    for (int i = 1; i < GEMV_THREADS / 32; i++) t = fmaxf(t, red[i]);
    return t;
}

template <int MAXC, int R, int EP, int NS>
__global__ void __launch_bounds__(GEMV_THREADS) w2a8_gemv_kernel5(GemvParams p) {
    extern __shared__ uint4 smem_q4[];
    int8_t *qs = (int8_t *)smem_q4;
    trace_mark(p.trace, 0);
    float *wn_s = (float *)(qs + p.k_pad);  // k_pad floats when the fast path has a norm
    __shared__ float red[GEMV_THREADS / 32], red2[GEMV_THREADS / 32];
    __shared__ int qred[GEMV_THREADS / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int grp = lane >> 3, sub = lane & 7;
    const int row0 = blockIdx.x * (GEMV_ROWS * R) + warp * 4 + grp;  // row r: row0 + 16 r
    const int C = p.k_pad >> 6;
    const size_t rb = (size_t)(p.k_pad >> 2);

    uint4 wv[R][MAXC];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int row = row0 + GEMV_ROWS * r;
        const uint4 *wrow = (const uint4 *)(p.w + (size_t)(row < p.n_out ? row : 0) * rb);
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int c = sub + 8 * i;
            wv[r][i] = (row < p.n_out && c < C) ? ld_stream(wrow + c) : make_uint4(0, 0, 0, 0);
        }
    }
    const bool fast = p.x && (p.k_in & 3) == 0 && p.k_pad <= 512 * MAXC && ((uintptr_t)p.x & 15) == 0 &&
                      ((uintptr_t)p.norm_w & 15) == 0;
    const int tid = threadIdx.x;
    // NS = 1: norm weights to shared memory by cp.async; NS = 0: into registers (as version 3).
    float4 wnr[NS ? 1 : MAXC];
    if (NS && fast && p.norm_w) {
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int e = 4 * (tid + GEMV_THREADS * i);
            if (e < p.k_in) cp_async16(wn_s + e, p.norm_w + e);
        }
    }
    if (!NS) {
#pragma unroll
        for (int i = 0; i < (NS ? 1 : MAXC); i++) {
            const int e = 4 * (tid + GEMV_THREADS * i);
            wnr[i] = fast && e < p.k_in && p.norm_w ? *(const float4 *)(p.norm_w + e) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
    }
    l2_prefetch_share(p.pf, blockIdx.x, gridDim.x);
    if (!p.late_trigger) pdl_trigger();
    pdl_wait();
    trace_mark(p.trace, 1);
    if (p.late_trigger == 1) pdl_trigger();

    float s;
    if (fast) {
        float4 xv[MAXC];
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int e = 4 * (tid + GEMV_THREADS * i);
            xv[i] = e < p.k_in ? *(const float4 *)(p.x + e) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
        if (p.norm_w) {
            float ss = 0.0f;
#pragma unroll
            for (int i = 0; i < MAXC; i++)
                ss += xv[i].x * xv[i].x + xv[i].y * xv[i].y + xv[i].z * xv[i].z + xv[i].w * xv[i].w;
            if (NS) cp_async_commit_wait_all();
            ss = block_sum_once(ss, red);
            const float inv = 1.0f / sqrtf(ss / (float)p.k_in + p.eps);
#pragma unroll
            for (int i = 0; i < MAXC; i++) {
                const int e = 4 * (tid + GEMV_THREADS * i);
                const float4 wn = !NS ? wnr[NS ? 0 : i]
                                  : e < p.k_in ? *(const float4 *)(wn_s + e) : make_float4(0.f, 0.f, 0.f, 0.f);
                xv[i].x = wn.x * (xv[i].x * inv);
                xv[i].y = wn.y * (xv[i].y * inv);
                xv[i].z = wn.z * (xv[i].z * inv);
                xv[i].w = wn.w * (xv[i].w * inv);
            }
        }
        float amax = 0.0f;
#pragma unroll
        for (int i = 0; i < MAXC; i++)
            amax = fmaxf(amax, fmaxf(fmaxf(fabsf(xv[i].x), fabsf(xv[i].y)), fmaxf(fabsf(xv[i].z), fabsf(xv[i].w))));
        amax = block_max_once(amax, red2);
        s = 127.0f / fmaxf(amax, 1e-5f);
        int sum = 0;
#pragma unroll
        for (int i = 0; i < MAXC; i++) {
            const int e = 4 * (tid + GEMV_THREADS * i);
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
    } else if (p.x) {
        float inv = 1.0f;
        if (p.norm_w) {
            float ss = 0.0f;
            for (int i = tid; i < p.k_in; i += GEMV_THREADS) ss += p.x[i] * p.x[i];
            ss = block_sum<GEMV_THREADS>(ss, red);
            inv = 1.0f / sqrtf(ss / (float)p.k_in + p.eps);
        }
        float amax = 0.0f;
        for (int i = tid; i < p.k_in; i += GEMV_THREADS) {
            float v = p.norm_w ? p.norm_w[i] * (p.x[i] * inv) : p.x[i];
            amax = fmaxf(amax, fabsf(v));
        }
        amax = block_max<GEMV_THREADS>(amax, red);
        s = 127.0f / fmaxf(amax, 1e-5f);
        int sum = 0;
        for (int i4 = tid * 4; i4 < p.k_pad; i4 += GEMV_THREADS * 4) {
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
        for (int i4 = tid * 4; i4 < p.k_pad; i4 += GEMV_THREADS * 4)
            *(uint32_t *)(qs + act_offset(i4)) = *(const uint32_t *)(p.q + i4);
        s = p.s ? p.s[0] : 1.0f;
        if (tid < GEMV_THREADS / 32) qred[tid] = tid == 0 ? p.qsum[0] : 0;
    }
    __syncthreads();

    constexpr int NA = GemvAcc<R>::NA;
    int acc[R][NA];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int a = 0; a < NA; a++) acc[r][a] = 0;
#pragma unroll
    for (int i = 0; i < MAXC; i++) {
        const int c = sub + 8 * i;
        if (c < C) dot_chunk_rows<MAXC, R>(wv, i, qs, c, acc);
    }
    for (int base = 8 * MAXC; base < C; base += 8 * MAXC) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int row = row0 + GEMV_ROWS * r;
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
    for (int w = 0; w < GEMV_THREADS / 32; w++) qsum += qred[w];
    trace_mark(p.trace, 2);
    if (p.late_trigger == 2) pdl_trigger();
#pragma unroll
    for (int r = 0; r < R; r++) {
        int a = acc[r][0];
#pragma unroll
        for (int t = 1; t < NA; t++) a += acc[r][t];
        a += __shfl_xor_sync(0xffffffffu, a, 4);
        a += __shfl_xor_sync(0xffffffffu, a, 2);
        a += __shfl_xor_sync(0xffffffffu, a, 1);
        a -= qsum;  // codes c = t + 1
        const int row = row0 + GEMV_ROWS * r;
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
        if (EP == KCUDA_EP_RESID) *o = __fadd_rn(*o, y);
        else *o = y;
    }
}

template <int MAXC, int R, int NS>
static int gemv5_launch(int ep, dim3 grid, size_t smem, void *stream, int pdl, const GemvParams &p) {
    const dim3 blk(GEMV_THREADS);
    switch (ep) {
    case KCUDA_EP_F32: return kcuda_launch(w2a8_gemv_kernel5<MAXC, R, KCUDA_EP_F32, NS>, grid, blk, smem, stream, pdl, p);
    case KCUDA_EP_RESID: return kcuda_launch(w2a8_gemv_kernel5<MAXC, R, KCUDA_EP_RESID, NS>, grid, blk, smem, stream, pdl, p);
    case KCUDA_EP_GLU: return kcuda_launch(w2a8_gemv_kernel5<MAXC, R, KCUDA_EP_GLU, NS>, grid, blk, smem, stream, pdl, p);
    default: return kcuda_launch(w2a8_gemv_kernel5<MAXC, R, KCUDA_EP_I32, NS>, grid, blk, smem, stream, pdl, p);
    }
}
// Norm weights in shared memory (ns = 1, version 5) or in registers (ns = 0, version 6, big
// matrices only).
template <int MAXC, int R>
static int gemv5_dispatch_ep(int ep, int ns, dim3 grid, size_t smem, void *stream, int pdl, const GemvParams &p) {
    if constexpr (R == 1) {
        return gemv5_launch<MAXC, R, 1>(ep, grid, smem, stream, pdl, p);
    } else {
        if (ns) return gemv5_launch<MAXC, R, 1>(ep, grid, smem, stream, pdl, p);
        return gemv5_launch<MAXC, R, 0>(ep, grid, smem, stream, pdl, p);
    }
}

// R > 1 only where a lane holds at most 8 chunks of a row (K <= 4096): beyond that R rows of
// weights would not fit in registers.
template <int R>
static int gemv5_dispatch(int per_lane, int ep, int ns, dim3 grid, size_t smem, void *stream, int pdl, const GemvParams &p) {
    if (per_lane <= 4) return gemv5_dispatch_ep<4, R>(ep, ns, grid, smem, stream, pdl, p);
    if (per_lane <= 5) return gemv5_dispatch_ep<5, R>(ep, ns, grid, smem, stream, pdl, p);
    if (per_lane <= 7) return gemv5_dispatch_ep<7, R>(ep, ns, grid, smem, stream, pdl, p);
    return gemv5_dispatch_ep<8, R>(ep, ns, grid, smem, stream, pdl, p);
}
template <>
int gemv5_dispatch<1>(int per_lane, int ep, int ns, dim3 grid, size_t smem, void *stream, int pdl, const GemvParams &p) {
    if (per_lane <= 4) return gemv5_dispatch_ep<4, 1>(ep, ns, grid, smem, stream, pdl, p);
    if (per_lane <= 5) return gemv5_dispatch_ep<5, 1>(ep, ns, grid, smem, stream, pdl, p);
    if (per_lane <= 7) return gemv5_dispatch_ep<7, 1>(ep, ns, grid, smem, stream, pdl, p);
    if (per_lane <= 8) return gemv5_dispatch_ep<8, 1>(ep, ns, grid, smem, stream, pdl, p);
    if (per_lane <= 14) return gemv5_dispatch_ep<14, 1>(ep, ns, grid, smem, stream, pdl, p);
    return gemv5_dispatch_ep<16, 1>(ep, ns, grid, smem, stream, pdl, p);
}

// Lab switches (kernels_cuda.h): version 3, 5 or 6; rows per 8-lane group for versions 5/6
// (0 = by shape); where version 5/6 kernels trigger the next launch (before or after their PDL
// wait). Only the lab sets them; the product runs the defaults below.
static int g_gemv_version = -1, g_gemv_rows = 0, g_gemv_late = 0;

extern "C" void kcuda_set_gemv_version(int v, int rows_per_group) {
    g_gemv_version = v == 3 ? 3 : v == 6 ? 6 : 5;
    g_gemv_rows = rows_per_group == 1 || rows_per_group == 2 || rows_per_group == 4 ? rows_per_group : 0;
}
extern "C" void kcuda_set_gemv_late_trigger(int late) { g_gemv_late = late != 0; }
static void gemv_version_from_env(void);
int kcuda_gemv_late_now() {
    gemv_version_from_env();
    return g_gemv_late;
}

static void gemv_version_from_env(void) {
    if (g_gemv_version >= 0) return;
    // default: version 6 with 2 rows per group (gate/up in one wave; measured end to end
    // 2026-11-23 with the per-kernel triggers of the backend: kernels/dev/README.md)
    kcuda_set_gemv_version(6, 2);
}

// Rows per group by shape: as many as keep >= 1.5 blocks per SM (132 SMs), so a matrix of
// 13824 rows runs 216 blocks of 64 rows instead of 864 of 16; small matrices keep 1 row (their
// latency, not bandwidth, decides).
static int gemv5_rows(int n_out) {
    const int want = 198;
    if ((n_out + 63) / 64 >= want) return 4;
    if ((n_out + 31) / 32 >= want) return 2;
    return 1;
}

template <int MAXC>
static int gemv_dispatch_ep(int ep, dim3 grid, size_t smem, void *stream, int pdl,
                            const GemvParams &p) {
    switch (ep) {
    case KCUDA_EP_F32: return kcuda_launch(w2a8_gemv_kernel3<MAXC, KCUDA_EP_F32>, grid, dim3(GEMV_THREADS), smem, stream, pdl, p);
    case KCUDA_EP_RESID: return kcuda_launch(w2a8_gemv_kernel3<MAXC, KCUDA_EP_RESID>, grid, dim3(GEMV_THREADS), smem, stream, pdl, p);
    case KCUDA_EP_GLU: return kcuda_launch(w2a8_gemv_kernel3<MAXC, KCUDA_EP_GLU>, grid, dim3(GEMV_THREADS), smem, stream, pdl, p);
    default: return kcuda_launch(w2a8_gemv_kernel3<MAXC, KCUDA_EP_I32>, grid, dim3(GEMV_THREADS), smem, stream, pdl, p);
    }
}

static int check_ternary(const KcudaTernary *w, KcudaEpilogue ep, const char *fn) {
    if (!w || !w->d_codes)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL matrix", fn);
    if (w->n_out <= 0 || w->k_pad <= 0 || w->k_pad % 128)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: shape %d x %d unsupported (k_pad must be a positive multiple of 128)", fn, w->n_out, w->k_pad);
    if ((uintptr_t)w->d_codes % 16)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: weights not 16-byte aligned", fn);
    if (ep == KCUDA_EP_GLU && (!w->glu || w->n_out % 2))
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: GLU epilogue needs an interleaved gate/up matrix with even rows (n_out %d)", fn, w->n_out);
    if (w->glu && ep != KCUDA_EP_GLU && ep != KCUDA_EP_I32)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: gate/up matrix needs the GLU epilogue", fn);
    if (w->act != KCUDA_ACT_RELU2 && w->act != KCUDA_ACT_SILU)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: bad GLU activation %d", fn, w->act);
    if ((int)ep < 0 || (int)ep > 3) return kcuda_fail(KCUDA_ERR_ARG, "%s: bad epilogue %d", fn, (int)ep);
    return KCUDA_OK;
}

static GemvParams make_params(const KcudaTernary *w, void *out) {
    GemvParams p = {};
    p.w = w->d_codes;
    p.n_out = w->n_out;
    p.k_pad = w->k_pad;
    p.seg0 = w->glu ? w->n_out : w->seg_end[0];
    p.seg1 = w->glu ? w->n_out : w->seg_end[1];
    p.g0 = w->gamma[0];
    p.g1 = w->gamma[1];
    p.g2 = w->gamma[2];
    p.act = w->act;
    p.out = out;
    return p;
}

extern "C" int kcuda_w2a8_gemv(const KcudaTernary *w, const float *d_x, int k_in,
                               const float *d_norm_w, float eps, const int8_t *d_q,
                               const float *d_s, const int32_t *d_qsum, KcudaEpilogue ep,
                               void *d_out, int pdl, void *stream) {
    int rc = check_ternary(w, ep, "kcuda_w2a8_gemv");
    if (rc) return rc;
    if (!d_out) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemv: NULL output");
    if (d_x) {
        if (k_in <= 0 || k_in > w->k_pad)
            return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_w2a8_gemv: input length %d does not fit k_pad %d", k_in, w->k_pad);
    } else if (!d_q || !d_qsum || ((uintptr_t)d_q % 4)) {
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemv: needs d_x, or d_q (4-byte aligned) with d_qsum");
    }
    if (w->k_pad > 32768)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_w2a8_gemv: k_pad %d above 32768 (shared memory)", w->k_pad);
    GemvParams p = make_params(w, d_out);
    p.k_in = d_x ? k_in : w->k_pad;
    p.x = d_x;
    p.norm_w = d_norm_w;
    p.eps = eps;
    p.q = d_q;
    p.s = d_s;
    p.qsum = d_qsum;
    p.pf = kcuda_take_prefetch();
    p.trace = kcuda_take_trace();
    // the trigger placement: from the launch option, else what the lab armed, else the global
    const int armed = kcuda_take_trigger();
    const int trig = pdl >= KCUDA_PDL_LATE ? pdl - 1 : armed;
    const int per_lane = (w->k_pad / 64 + 7) / 8;
    gemv_version_from_env();
    int R = per_lane > 8 ? 1 : g_gemv_rows ? g_gemv_rows : gemv5_rows(w->n_out);
    // Version 6: version 3 where one row per group is chosen, else version 5 with the norm
    // weights in registers.
    if (g_gemv_version == 6 && per_lane <= 8 && gemv5_rows(w->n_out) == 1) R = 1;
    if (g_gemv_version == 5 || (g_gemv_version == 6 && R > 1)) {
        const int ns = g_gemv_version == 5;
        p.late_trigger = trig >= 0 ? trig : g_gemv_late;
        const dim3 grid5((unsigned)((w->n_out + GEMV_ROWS * R - 1) / (GEMV_ROWS * R)));
        // q, then the norm weights (fast path only: k_pad <= 512 * MAXC, so <= 32 KB here)
        const bool norm_smem = ns && d_x && d_norm_w && w->k_pad <= 512 * 16;
        const size_t smem5 = (size_t)w->k_pad + (norm_smem ? (size_t)w->k_pad * 4 : 0);
        if (R == 4) return gemv5_dispatch<4>(per_lane, ep, ns, grid5, smem5, stream, pdl, p);
        if (R == 2) return gemv5_dispatch<2>(per_lane, ep, ns, grid5, smem5, stream, pdl, p);
        return gemv5_dispatch<1>(per_lane, ep, ns, grid5, smem5, stream, pdl, p);
    }
    p.late_trigger = trig >= 0 ? trig : g_gemv_late;
    const dim3 grid((unsigned)((w->n_out + GEMV_ROWS - 1) / GEMV_ROWS));
    const size_t smem = (size_t)w->k_pad;
    // Loads per lane in flight = MAXC; instantiated for the model shapes (K 2560: 5, 3200: 7,
    // 6912: 14), so no registers are spent on always-masked chunks.
    if (per_lane <= 4) return gemv_dispatch_ep<4>(ep, grid, smem, stream, pdl, p);
    if (per_lane <= 5) return gemv_dispatch_ep<5>(ep, grid, smem, stream, pdl, p);
    if (per_lane <= 7) return gemv_dispatch_ep<7>(ep, grid, smem, stream, pdl, p);
    if (per_lane <= 8) return gemv_dispatch_ep<8>(ep, grid, smem, stream, pdl, p);
    if (per_lane <= 14) return gemv_dispatch_ep<14>(ep, grid, smem, stream, pdl, p);
    return gemv_dispatch_ep<16>(ep, grid, smem, stream, pdl, p);
}

// ---- per-row RMSNorm + quant (prefill) ------------------------------------------------------

__global__ void __launch_bounds__(GEMV_THREADS) rmsnorm_quant_rows_kernel(
    const float *x, int ld_x, int k_in, int k_pad, const float *norm_w, float eps, int8_t *q,
    float *s, int32_t *qsum) {
    __shared__ float red[GEMV_THREADS / 32];
    pdl_trigger();
    pdl_wait();
    const int r = blockIdx.x;
    int sum = 0;
    const float sc = norm_quant_prologue<GEMV_THREADS>(x + (size_t)r * ld_x, k_in, k_pad, norm_w,
                                                       eps, q + (size_t)r * k_pad, &sum, red);
    if (threadIdx.x == 0) {
        s[r] = sc;
        qsum[r] = sum;
    }
}

extern "C" int kcuda_rmsnorm_quant(const float *d_x, int rows, int ld_x, int k_in, int k_pad,
                                   const float *d_norm_w, float eps, int8_t *d_q, float *d_s,
                                   int32_t *d_qsum, int pdl, void *stream) {
    if (!d_x || !d_q || !d_s || !d_qsum)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_rmsnorm_quant: NULL pointer");
    if (rows <= 0 || k_in <= 0 || k_in > k_pad || k_pad % 128 || ld_x < k_in)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_rmsnorm_quant: rows %d, k_in %d, k_pad %d, ld %d unsupported", rows, k_in, k_pad, ld_x);
    if ((uintptr_t)d_q % 4)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_rmsnorm_quant: q not 4-byte aligned");
    return kcuda_launch(rmsnorm_quant_rows_kernel, dim3((unsigned)rows), dim3(GEMV_THREADS), 0,
                        stream, pdl, d_x, ld_x, k_in, k_pad, d_norm_w, eps, d_q, d_s, d_qsum);
}
