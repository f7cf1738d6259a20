// Lab: the prefill GEMM's earlier versions and every tile of version 4, for dev_w2a8_gemm
// (kernels/dev/w2a8_gemm.cu). Versions 1-3 live only here; version 4's kernel is the product's
// (kernels/cuda/w2a8_gemm.cuh), which picks three of the tiles below by shape. All epilogue
// int32 (the lab checks the accumulators exactly).
//   1: 64x128 block tile, k-tile 128 = one I2_S block, 4 warps of 32x64, weights expanded from
//      2-bit codes to int8 {0,1,2} in shared memory, next tile prefetched into registers
//   2: version 1 with ldmatrix fragments   3: + a 4-stage cp.async pipeline
//   4: 2-bit weights expanded straight into mma fragments (the product kernel), tiles:
//      1: 128x128, 8 warps of 64x32   2: 128x64, 4 warps of 64x32   3: 64x64, 4 warps of 32x32
//      4: 64x32, 4 warps of 16x32     5: 64x16, 4 warps of 16x16 (small M: many blocks)
//      6: 64x64 as 3, two k-tiles per stage (half the barriers), 3 stages
//      7: 64x16 as 5, two k-tiles per stage, 4 stages
//      8: 64x64 as 3, 3 stages   9: 64x64 as 3, 6 stages
//      10: 64x128, 4 warps of 64x32 (a warp's B fragments serve 4 row tiles; no two warps
//          expand the same weights)   11: 64x64, 4 warps of 64x16
//      12: 64x128, 8 warps of 32x32   13: 128x64, 8 warps of 32x32
//      14: 128x64 as 2, 3 stages      15: 64x64, 2 warps of 64x32
//      16: 128x32, 4 warps of 64x16   17: 10 with 3 stages   18: 64x64 as 3, 5 stages
//      19: 64x128, 4 warps of 32x64 (an A fragment serves 8 column tiles: shared-memory bytes per
//          mma 144 against 240 for tile 3, counting the cp.async writes)   20: 19 with 3 stages
//      21: 128x128, 8 warps of 32x64   22: 64x64, 2 warps of 32x64
//      each also split over K (1..4 blocks per tile, clusters; the product's rule picks the split)
//      (the product: 17, split over K by its rule, where its grid has a block per SM; else 3
//      where its grid covers ~90% of the SMs; else 7)
//   5: warpgroup MMA (wgmma, sm_90a; kernels/dev/w2a8_gemm_wgmma.cuh), tiles GEMM5_CONFIGS, each
//      also split over K (1..4)
#pragma once
#include "kernels/cuda/w2a8_gemm.cuh"
#include "kernels/dev/w2a8_gemm_wgmma.cuh"
#include "kernels/dev/w2a8_gemm_wgmma_ss.cuh"

namespace {

enum { BM = 64, BN = 128, PADK = BK + 16, GEMM_THREADS = 128 };

// Versions 1-3: a warp covers 32 rows x 64 columns of the block tile (2 x 8 mma tiles).
template <int EP>
__device__ __forceinline__ void gemm_epilogue(const GemmParams &p, int (&acc)[2][8][4], int m_base,
                                              int n_base, int wm, int wn, int gid, int tig) {
    gemm4_epilogue<EP, 2, 8>(p, acc, m_base + wm * 32, n_base + wn * 64, gid, tig);
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

#define GEMM4_CONFIGS(X)    \
    X(1, 2, 4, 4, 4, 4, 1)  \
    X(2, 2, 2, 4, 4, 4, 1)  \
    X(3, 2, 2, 2, 4, 4, 1)  \
    X(4, 4, 1, 1, 4, 6, 1)  \
    X(5, 4, 1, 1, 2, 6, 1)  \
    X(6, 2, 2, 2, 4, 3, 2)  \
    X(7, 4, 1, 1, 2, 4, 2)  \
    X(8, 2, 2, 2, 4, 3, 1)  \
    X(9, 2, 2, 2, 4, 6, 1)  \
    X(10, 1, 4, 4, 4, 4, 1) \
    X(11, 1, 4, 4, 2, 4, 1) \
    X(12, 2, 4, 2, 4, 4, 1) \
    X(13, 4, 2, 2, 4, 4, 1) \
    X(14, 2, 2, 4, 4, 3, 1) \
    X(15, 1, 2, 4, 4, 4, 1) \
    X(16, 2, 2, 4, 2, 4, 1) \
    X(17, 1, 4, 4, 4, 3, 1) \
    X(18, 2, 2, 2, 4, 5, 1) \
    X(19, 2, 2, 2, 8, 4, 1) \
    X(20, 2, 2, 2, 8, 3, 1) \
    X(21, 4, 2, 2, 8, 4, 1) \
    X(22, 2, 1, 2, 8, 4, 1)
enum { GEMM4_N_CONFIGS = 22 };

template <int WGM, int WGN, int MT, int NT, int ST, int KB>
int lab_gemm4(void *stream, int sk, const GemmParams &p) {
    using C = Gemm4Cfg<WGM, WGN, MT, NT, ST, KB>;
    auto kern = w2a8_gemm_kernel4<KCUDA_EP_I32, C, WGM, WGN, MT, NT>;
    static bool attr = false;
    if (!attr) {
        KCUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
        attr = true;
    }
    const dim3 grid((unsigned)((p.n_out + C::BN - 1) / C::BN), (unsigned)((p.M + C::BM - 1) / C::BM), (unsigned)sk);
    return gemm4_launch_grid<C>(kern, grid, stream, 0, p);
}

// The tile the product picks (kernels/cuda/w2a8_gemm.cu), for the lab's printout.
int lab_gemm_pick(int M, int N) {
    int dev = 0, sms = 132;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        sms = 132;
    if ((long)((N + 127) / 128) * ((M + 63) / 64) >= (long)sms) return 17;
    return (long)((N + 63) / 64) * ((M + 63) / 64) * 10 >= (long)sms * 9 ? 3 : 7;
}

}  // namespace

// Version ver (1..5; 7: wgmma with both operands in shared memory, w2a8_gemm_wgmma_ss.cuh) of the
// prefill GEMM, versions 4 and 5 with tile cfg (1..GEMM4_N_CONFIGS,
// 1..GEMM5_N_CONFIGS) split over K into sk blocks per tile, int32 accumulators out [M][n_out]; the same arguments as
// kcuda_w2a8_gemm otherwise (one part, gamma unused).
static int lab_gemm(int ver, int cfg, int sk, const KcudaTernary *w, const int8_t *d_q, const int32_t *d_qsum, int M,
                    int32_t *d_out, void *stream) {
    GemmParams p = {};
    p.w = w->d_codes;
    p.n_out = w->n_out;
    p.k_pad = w->k_pad;
    p.M = M;
    p.q = d_q;
    p.qsum = d_qsum;
    p.seg0 = p.seg1 = w->n_out;
    p.g0 = p.g1 = p.g2 = 1.0f;
    p.out = d_out;
    p.ld_out = w->n_out;
    const dim3 grid((unsigned)((w->n_out + BN - 1) / BN), (unsigned)((M + BM - 1) / BM));
    if (ver == 1) return kcuda_launch(w2a8_gemm_kernel<KCUDA_EP_I32, 1>, grid, dim3(GEMM_THREADS), 0, stream, 0, p);
    if (ver == 2) return kcuda_launch(w2a8_gemm_kernel<KCUDA_EP_I32, 2>, grid, dim3(GEMM_THREADS), 0, stream, 0, p);
    if (ver == 3) {
        static bool attr = false;
        if (!attr) {
            KCUDA_TRY(cudaFuncSetAttribute(w2a8_gemm_kernel3<KCUDA_EP_I32>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)GEMM3_SMEM));
            attr = true;
        }
        return kcuda_launch(w2a8_gemm_kernel3<KCUDA_EP_I32>, grid, dim3(GEMM_THREADS), GEMM3_SMEM, stream, 0, p);
    }
    if (ver == 5) return lab_gemm5_cfg(cfg, KCUDA_EP_I32, stream, sk, p);
    if (ver == 7) return lab_gemm7_cfg(cfg, KCUDA_EP_I32, stream, sk, p);
    switch (cfg) {
#define X(id, wgm, wgn, mt, nt, st, kb) \
    case id: return lab_gemm4<wgm, wgn, mt, nt, st, kb>(stream, sk, p);
        GEMM4_CONFIGS(X)
#undef X
    default: return kcuda_fail(KCUDA_ERR_ARG, "lab_gemm: bad tile configuration %d", cfg);
    }
}
