// W2A8 prefill GEMM on int8 tensor cores: mma.sync.m16n8k32 s8 x s8 -> s32. Version 3 is the
// default (see the version notes at each kernel); version 1 (64x128 block tile, k-tile 128 = one I2_S block, 4 warps
// of 32x64, weights expanded from 2-bit codes to int8 {0,1,2} in shared memory, next tile
// prefetched into registers while the tensor cores work on the current one).
#include <stdlib.h>

#include "kernels/cuda/common.cuh"

namespace {

enum { BM = 64, BN = 128, BK = 128, PADK = BK + 16, GEMM_THREADS = 128 };

struct GemmParams {
    const uint8_t *w;
    int n_out, k_pad, M;
    const int8_t *q;
    const float *s;
    const int32_t *qsum;
    int seg0, seg1;
    float g0, g1, g2;
    void *out;
    int ld_out;
};

__device__ __forceinline__ void mma_s8(int (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *ptr) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(ptr);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

template <int EP>
__device__ __forceinline__ void gemm_epilogue(const GemmParams &p, int (&acc)[2][8][4], int m_base,
                                              int n_base, int wm, int wn, int gid, int tig) {
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int t = m_base + wm * 32 + mt * 16 + gid + half * 8;
            if (t >= p.M) continue;
            const float s = p.s ? p.s[t] : 1.0f;
            const int qs = p.qsum[t];
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                const int n = n_base + wn * 64 + nt * 8 + tig * 2;
                const int a0 = acc[mt][nt][half * 2] - qs, a1 = acc[mt][nt][half * 2 + 1] - qs;
                if (EP == KCUDA_EP_I32) {
                    int32_t *o = (int32_t *)p.out + (size_t)t * p.ld_out;
                    if (n < p.n_out) o[n] = a0;
                    if (n + 1 < p.n_out) o[n + 1] = a1;
                } else if (EP == KCUDA_EP_GLU) {
                    if (n + 1 < p.n_out) {
                        const float g = __fmul_rn(__fdiv_rn((float)a0, s), p.g0);
                        const float u = __fmul_rn(__fdiv_rn((float)a1, s), p.g1);
                        const float r = g > 0.0f ? g : 0.0f;
                        ((float *)p.out)[(size_t)t * p.ld_out + (n >> 1)] = __fmul_rn(__fmul_rn(r, r), u);
                    }
                } else {
                    float *o = (float *)p.out + (size_t)t * p.ld_out;
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int nn = n + e;
                        if (nn >= p.n_out) continue;
                        const float g = nn < p.seg0 ? p.g0 : nn < p.seg1 ? p.g1 : p.g2;
                        const float y = __fmul_rn(__fdiv_rn((float)(e ? a1 : a0), s), g);
                        if (EP == KCUDA_EP_RESID) o[nn] = __fadd_rn(o[nn], y);
                        else o[nn] = y;
                    }
                }
            }
        }
    }
}

// VER 1: fragments by 32-bit shared loads; VER 2: by ldmatrix.x4 (4x fewer load instructions;
// an 8x16-byte int8 tile has the layout of an 8x8 b16 matrix, which is what mma expects).
template <int EP, int VER>
__global__ void __launch_bounds__(GEMM_THREADS) w2a8_gemm_kernel(GemmParams p) {
    __shared__ __align__(16) int8_t As[BM][PADK];
    __shared__ __align__(16) int8_t Ws[BN][PADK];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1, gid = lane >> 2, tig = lane & 3;
    const int n_base = blockIdx.x * BN, m_base = blockIdx.y * BM;
    const size_t rb = (size_t)p.k_pad / 4;
    const int KT = p.k_pad / BK;

    uint4 ra[4], rw[2];
    auto load = [&](int kt) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int idx = tid + GEMM_THREADS * i, r = idx >> 3, c16 = idx & 7;
            const int t = m_base + r;
            ra[i] = t < p.M ? *(const uint4 *)(p.q + (size_t)t * p.k_pad + (size_t)kt * BK + c16 * 16)
                            : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int idx = tid + GEMM_THREADS * i, r = idx >> 1, h = idx & 1;
            const int n = n_base + r;
            rw[i] = n < p.n_out ? __ldcs((const uint4 *)(p.w + (size_t)n * rb + (size_t)kt * 32 + h * 16))
                                : make_uint4(0, 0, 0, 0);
        }
    };
    auto store = [&]() {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int idx = tid + GEMM_THREADS * i, r = idx >> 3, c16 = idx & 7;
            *(uint4 *)&As[r][c16 * 16] = ra[i];
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int idx = tid + GEMM_THREADS * i, r = idx >> 1, h = idx & 1;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int sh = 6 - 2 * j;
                uint4 v;
                v.x = (rw[i].x >> sh) & 0x03030303u;
                v.y = (rw[i].y >> sh) & 0x03030303u;
                v.z = (rw[i].z >> sh) & 0x03030303u;
                v.w = (rw[i].w >> sh) & 0x03030303u;
                *(uint4 *)&Ws[r][32 * j + 16 * h] = v;
            }
        }
    };

    int acc[2][8][4];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int b = 0; b < 8; b++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[a][b][c] = 0;

    pdl_trigger();
    pdl_wait();
    load(0);
    for (int kt = 0; kt < KT; kt++) {
        __syncthreads();
        store();
        __syncthreads();
        if (kt + 1 < KT) load(kt + 1);
#pragma unroll
        for (int kk = 0; kk < BK / 32; kk++) {
            uint32_t af[2][4], bf[8][2];
            if (VER == 2) {
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
                    ldsm_x4(af[mt], &As[wm * 32 + mt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8][kk * 32 + (lane >> 4) * 16]);
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    uint32_t r[4];
                    ldsm_x4(r, &Ws[wn * 64 + np * 16 + (lane & 7) + (lane >> 4) * 8][kk * 32 + ((lane >> 3) & 1) * 16]);
                    bf[2 * np][0] = r[0];
                    bf[2 * np][1] = r[1];
                    bf[2 * np + 1][0] = r[2];
                    bf[2 * np + 1][1] = r[3];
                }
            } else {
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                const int r = wm * 32 + mt * 16 + gid;
                af[mt][0] = *(const uint32_t *)&As[r][kk * 32 + tig * 4];
                af[mt][1] = *(const uint32_t *)&As[r + 8][kk * 32 + tig * 4];
                af[mt][2] = *(const uint32_t *)&As[r][kk * 32 + 16 + tig * 4];
                af[mt][3] = *(const uint32_t *)&As[r + 8][kk * 32 + 16 + tig * 4];
            }
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                const int n = wn * 64 + nt * 8 + gid;
                bf[nt][0] = *(const uint32_t *)&Ws[n][kk * 32 + tig * 4];
                bf[nt][1] = *(const uint32_t *)&Ws[n][kk * 32 + 16 + tig * 4];
            }
            }
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < 8; nt++) mma_s8(acc[mt][nt], af[mt], bf[nt]);
        }
    }

    gemm_epilogue<EP>(p, acc, m_base, n_base, wm, wn, gid, tig);
}


// VER 3: a 4-stage cp.async pipeline (activation tiles and raw 2-bit weight tiles land in
// shared memory three k-tiles ahead; version 2 waited one memory latency per k-tile, which
// dominated at small M), ldmatrix fragments as in version 2.
enum { STAGES = 4 };
constexpr size_t GEMM3_SMEM = (size_t)STAGES * BM * PADK + (size_t)STAGES * BN * 32 + (size_t)BN * PADK;

__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

template <int EP>
__global__ void __launch_bounds__(GEMM_THREADS) w2a8_gemm_kernel3(GemmParams p) {
    extern __shared__ __align__(16) uint8_t smem[];
    int8_t(*As)[BM][PADK] = (int8_t(*)[BM][PADK])smem;
    uint8_t(*Wr)[BN][32] = (uint8_t(*)[BN][32])(smem + (size_t)STAGES * BM * PADK);
    int8_t(*Ws)[PADK] = (int8_t(*)[PADK])(smem + (size_t)STAGES * BM * PADK + (size_t)STAGES * BN * 32);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1, gid = lane >> 2, tig = lane & 3;
    const int n_base = blockIdx.x * BN, m_base = blockIdx.y * BM;
    const size_t rb = (size_t)p.k_pad / 4;
    const int KT = p.k_pad / BK;
    auto issue = [&](int kt, int st) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int idx = tid + GEMM_THREADS * i, r = idx >> 3, c16 = idx & 7;
            const int t = m_base + r;
            const int8_t *src = p.q + (size_t)(t < p.M ? t : 0) * p.k_pad + (size_t)kt * BK + c16 * 16;
            cp_async16(&As[st][r][c16 * 16], src, t < p.M);
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int idx = tid + GEMM_THREADS * i, r = idx >> 1, h = idx & 1;
            const int n = n_base + r;
            const uint8_t *src = p.w + (size_t)(n < p.n_out ? n : 0) * rb + (size_t)kt * 32 + h * 16;
            cp_async16(&Wr[st][r][h * 16], src, n < p.n_out);
        }
    };
    int acc[2][8][4];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int b = 0; b < 8; b++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[a][b][c] = 0;
    pdl_trigger();
    pdl_wait();
#pragma unroll
    for (int st = 0; st < STAGES - 1; st++) {
        if (st < KT) issue(st, st);
        cp_async_commit();
    }
    for (int kt = 0; kt < KT; kt++) {
        const int st = kt % STAGES;
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // tile kt has landed for all threads; mma of kt-1 is done everywhere
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int idx = tid + GEMM_THREADS * i, r = idx >> 1, h = idx & 1;
            const uint4 raw = *(const uint4 *)&Wr[st][r][h * 16];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int sh = 6 - 2 * j;
                uint4 v;
                v.x = (raw.x >> sh) & 0x03030303u;
                v.y = (raw.y >> sh) & 0x03030303u;
                v.z = (raw.z >> sh) & 0x03030303u;
                v.w = (raw.w >> sh) & 0x03030303u;
                *(uint4 *)&Ws[r][32 * j + 16 * h] = v;
            }
        }
        {
            const int nk = kt + STAGES - 1;
            if (nk < KT) issue(nk, nk % STAGES);
            cp_async_commit();
        }
        __syncthreads();  // Ws complete
#pragma unroll
        for (int kk = 0; kk < BK / 32; kk++) {
            uint32_t af[2][4], bf[8][2];
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
                ldsm_x4(af[mt], &As[st][wm * 32 + mt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8][kk * 32 + (lane >> 4) * 16]);
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t r[4];
                ldsm_x4(r, &Ws[wn * 64 + np * 16 + (lane & 7) + (lane >> 4) * 8][kk * 32 + ((lane >> 3) & 1) * 16]);
                bf[2 * np][0] = r[0];
                bf[2 * np][1] = r[1];
                bf[2 * np + 1][0] = r[2];
                bf[2 * np + 1][1] = r[3];
            }
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < 8; nt++) mma_s8(acc[mt][nt], af[mt], bf[nt]);
        }
    }
    cp_async_wait<0>();
    gemm_epilogue<EP>(p, acc, m_base, n_base, wm, wn, gid, tig);
}

int g_gemm_version = 3;

template <int EP>
int gemm3_launch_ep(dim3 grid, void *stream, const GemmParams &p) {
    static bool attr = false;
    if (!attr) {
        KCUDA_TRY(cudaFuncSetAttribute(w2a8_gemm_kernel3<EP>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)GEMM3_SMEM));
        attr = true;
    }
    return kcuda_launch(w2a8_gemm_kernel3<EP>, grid, dim3(GEMM_THREADS), GEMM3_SMEM, stream, 0, p);
}

int gemm3_launch(int ep, dim3 grid, void *stream, const GemmParams &p) {
    switch (ep) {
    case KCUDA_EP_F32: return gemm3_launch_ep<KCUDA_EP_F32>(grid, stream, p);
    case KCUDA_EP_RESID: return gemm3_launch_ep<KCUDA_EP_RESID>(grid, stream, p);
    case KCUDA_EP_GLU: return gemm3_launch_ep<KCUDA_EP_GLU>(grid, stream, p);
    case KCUDA_EP_I32: return gemm3_launch_ep<KCUDA_EP_I32>(grid, stream, p);
    default: return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: bad epilogue %d", ep);
    }
}

template <int VER>
int gemm_launch(int ep, dim3 grid, void *stream, const GemmParams &p) {
    switch (ep) {
    case KCUDA_EP_F32: return kcuda_launch(w2a8_gemm_kernel<KCUDA_EP_F32, VER>, grid, dim3(GEMM_THREADS), 0, stream, 0, p);
    case KCUDA_EP_RESID: return kcuda_launch(w2a8_gemm_kernel<KCUDA_EP_RESID, VER>, grid, dim3(GEMM_THREADS), 0, stream, 0, p);
    case KCUDA_EP_GLU: return kcuda_launch(w2a8_gemm_kernel<KCUDA_EP_GLU, VER>, grid, dim3(GEMM_THREADS), 0, stream, 0, p);
    case KCUDA_EP_I32: return kcuda_launch(w2a8_gemm_kernel<KCUDA_EP_I32, VER>, grid, dim3(GEMM_THREADS), 0, stream, 0, p);
    default: return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: bad epilogue %d", ep);
    }
}

}  // namespace

extern "C" void kcuda_set_gemm_version(int v) { g_gemm_version = v >= 1 && v <= 3 ? v : 3; }

extern "C" int kcuda_w2a8_gemm(const KcudaTernary *w, const int8_t *d_q, const float *d_s,
                               const int32_t *d_qsum, int M, KcudaEpilogue ep, void *d_out,
                               int ld_out, void *stream) {
    if (!w || !w->d_codes || !d_q || !d_qsum || !d_out)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: NULL pointer");
    if (w->n_out <= 0 || w->k_pad <= 0 || w->k_pad % 128 || M <= 0)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_w2a8_gemm: shape M %d, N %d, K %d unsupported (K must be a positive multiple of 128)", M, w->n_out, w->k_pad);
    if (((uintptr_t)w->d_codes | (uintptr_t)d_q) % 16)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: weights and activations must be 16-byte aligned");
    if (ep == KCUDA_EP_GLU && (!w->glu || w->n_out % 2))
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_w2a8_gemm: GLU epilogue needs an interleaved gate/up matrix");
    if (w->glu && ep != KCUDA_EP_GLU && ep != KCUDA_EP_I32)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: gate/up matrix needs the GLU epilogue");
    const int out_cols = ep == KCUDA_EP_GLU ? w->n_out / 2 : w->n_out;
    if (ld_out < out_cols)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_w2a8_gemm: ld_out %d < %d", ld_out, out_cols);
    GemmParams p = {};
    p.w = w->d_codes;
    p.n_out = w->n_out;
    p.k_pad = w->k_pad;
    p.M = M;
    p.q = d_q;
    p.s = d_s;
    p.qsum = d_qsum;
    p.seg0 = w->glu ? w->n_out : w->seg_end[0];
    p.seg1 = w->glu ? w->n_out : w->seg_end[1];
    p.g0 = w->gamma[0];
    p.g1 = w->gamma[1];
    p.g2 = w->gamma[2];
    p.out = d_out;
    p.ld_out = ld_out;
    const dim3 grid((unsigned)((w->n_out + BN - 1) / BN), (unsigned)((M + BM - 1) / BM));
    if (g_gemm_version == 1) return gemm_launch<1>(ep, grid, stream, p);
    if (g_gemm_version == 2) return gemm_launch<2>(ep, grid, stream, p);
    return gemm3_launch(ep, grid, stream, p);
}
