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
    int act;  // GLU activation (KcudaTernary.act)
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

// Epilogue of every GEMM version: a warp's MT x NT mma tiles (rows from m0, columns from n0)
// -> acc - qsum, then y = acc / s * gamma per the epilogue, bit for bit as the CPU reference.
template <int EP, int MT, int NT>
__device__ __forceinline__ void gemm4_epilogue(const GemmParams &p, int (&acc)[MT][NT][4], int m0, int n0,
                                               int gid, int tig) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int t = m0 + mt * 16 + gid + half * 8;
            if (t >= p.M) continue;
            const float s = p.s ? p.s[t] : 1.0f;
            const int qs = p.qsum[t];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const int n = n0 + nt * 8 + tig * 2;
                const int a0 = acc[mt][nt][half * 2] - qs, a1 = acc[mt][nt][half * 2 + 1] - qs;
                if (EP == KCUDA_EP_I32) {
                    int32_t *o = (int32_t *)p.out + (size_t)t * p.ld_out;
                    if (n < p.n_out) o[n] = a0;
                    if (n + 1 < p.n_out) o[n + 1] = a1;
                } else if (EP == KCUDA_EP_GLU) {
                    if (n + 1 < p.n_out) {
                        const float g = __fmul_rn(__fdiv_rn((float)a0, s), p.g0);
                        const float u = __fmul_rn(__fdiv_rn((float)a1, s), p.g1);
                        ((float *)p.out)[(size_t)t * p.ld_out + (n >> 1)] = glu_act_mul(g, u, p.act);
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

// VER 4: weights stay 2-bit in shared memory and are expanded straight into mma B fragments.
// The I2_S block of a row is 32 bytes; byte b holds the weights k = b, b+32, b+64, b+96 (shifts
// 6/4/2/0). The m16n8k32 B fragment of thread (gid, tig) for k-step kk needs the four weights
// 32kk + 4tig + 0..3 (b0) and 32kk + 16 + 4tig + 0..3 (b1) of column gid: (word >> (6 - 2kk)) &
// 0x03030303 of the 32-bit words at bytes 4tig and 16 + 4tig. So two 32-bit shared loads per
// column and k-tile give all 8 fragment registers of the four k-steps; version 3's expansion
// pass (16 KB of int8 stores per k-tile and a second barrier) is gone. Block tiles are
// templated (warps WGM x WGN, each MT x 16 rows by NT x 8 columns) so the launcher can pick a
// tile that fills the 132 SMs at every M and N; activation tiles are swizzled (16-byte chunk c
// of row r at c ^ (r & 7): conflict-free ldmatrix without padding), weight halves likewise
// (half h of row n at h ^ ((n >> 2) & 1): the 8 columns x 4 lanes of a fragment load hit 32
// different banks).
template <int WGM, int WGN, int MT, int NT, int ST, int KB>
struct Gemm4Cfg {  // KB: I2_S blocks (k-tiles of 128) per pipeline stage, i.e. per barrier
    static constexpr int BM = WGM * MT * 16, BN = WGN * NT * 8, THREADS = WGM * WGN * 32, STAGES = ST;
    static constexpr int A_STAGE = BM * BK * KB, W_STAGE = BN * 32 * KB;
    static constexpr size_t SMEM = (size_t)STAGES * (A_STAGE + W_STAGE);
};

template <int EP, class C, int WGM, int WGN, int MT, int NT>
__global__ void __launch_bounds__(C::THREADS) w2a8_gemm_kernel4(GemmParams p) {
    extern __shared__ __align__(128) uint8_t smem[];
    uint8_t *const As = smem;                                  // [STAGES][BM][128], swizzled
    uint8_t *const Wr = smem + (size_t)C::STAGES * C::A_STAGE;  // [STAGES][BN][32], swizzled
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WGN, wn = warp % WGN, gid = lane >> 2, tig = lane & 3;
    const int n_base = blockIdx.x * C::BN, m_base = blockIdx.y * C::BM;
    const size_t rb = (size_t)p.k_pad / 4;
    constexpr int KB = C::A_STAGE / (C::BM * BK);
    const int NB = p.k_pad / BK;             // I2_S blocks
    const int KT = (NB + KB - 1) / KB;       // pipeline stages; blocks past NB are zero-filled
    constexpr int A_CHUNKS = C::BM * 8, W_CHUNKS = C::BN * 2;
    auto issue_a = [&](int kt, int st) {
#pragma unroll
        for (int b = 0; b < KB; b++) {
            const int kb = kt * KB + b;
#pragma unroll
            for (int i = 0; i < (A_CHUNKS + C::THREADS - 1) / C::THREADS; i++) {
                const int idx = tid + C::THREADS * i;
                if (A_CHUNKS % C::THREADS == 0 || idx < A_CHUNKS) {
                    const int r = idx >> 3, c = idx & 7, t = m_base + r;
                    const bool ok = t < p.M && kb < NB;
                    const int8_t *src = p.q + (ok ? (size_t)t * p.k_pad + (size_t)kb * BK + c * 16 : 0);
                    cp_async16(As + (size_t)st * C::A_STAGE + b * C::BM * BK + r * BK + ((c ^ (r & 7)) << 4), src, ok);
                }
            }
        }
    };
    auto issue_w = [&](int kt, int st) {
#pragma unroll
        for (int b = 0; b < KB; b++) {
            const int kb = kt * KB + b;
#pragma unroll
            for (int i = 0; i < (W_CHUNKS + C::THREADS - 1) / C::THREADS; i++) {
                const int idx = tid + C::THREADS * i;
                if (W_CHUNKS % C::THREADS == 0 || idx < W_CHUNKS) {
                    const int r = idx >> 1, h = idx & 1, n = n_base + r;
                    const bool ok = n < p.n_out && kb < NB;
                    const uint8_t *src = p.w + (ok ? (size_t)n * rb + (size_t)kb * 32 + h * 16 : 0);
                    cp_async16(Wr + (size_t)st * C::W_STAGE + b * C::BN * 32 + r * 32 + ((h ^ ((r >> 2) & 1)) << 4), src, ok);
                }
            }
        }
    };
    int acc[MT][NT][4];
#pragma unroll
    for (int a = 0; a < MT; a++)
#pragma unroll
        for (int b = 0; b < NT; b++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[a][b][c] = 0;
    // The weights are constant: their first stages are requested before waiting on the previous
    // kernel (PDL), the activations after. Group 0 then holds W(0..STAGES-2) and A(0), group s
    // A(s): tile s is complete when group s is.
    pdl_trigger();
#pragma unroll
    for (int st = 0; st < C::STAGES - 1; st++)
        if (st < KT) issue_w(st, st);
    pdl_wait();
#pragma unroll
    for (int st = 0; st < C::STAGES - 1; st++) {
        if (st < KT) issue_a(st, st);
        cp_async_commit();
    }
    // per-lane constant parts of the shared addresses
    const int a_row0 = wm * MT * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;  // + mt * 16
    const int a_hi = lane >> 4;                                              // chunk = 2kk + a_hi
    const int w_row0 = wn * NT * 8 + gid;                                    // + nt * 8
    const int w_sw = (w_row0 >> 2) & 1;  // (row >> 2) & 1 is the same for every nt (rows + 8k)
    for (int kt = 0; kt < KT; kt++) {
        const int st = kt % C::STAGES;
        cp_async_wait<C::STAGES - 2>();
        __syncthreads();  // tile kt landed for every thread; every warp finished tile kt-1
        {
            const int nk = kt + C::STAGES - 1;
            if (nk < KT) {
                issue_w(nk, nk % C::STAGES);
                issue_a(nk, nk % C::STAGES);
            }
            cp_async_commit();
        }
#pragma unroll
        for (int b = 0; b < KB; b++) {
        const uint8_t *A = As + (size_t)st * C::A_STAGE + b * C::BM * BK;
        const uint8_t *W = Wr + (size_t)st * C::W_STAGE + b * C::BN * 32;
        uint32_t w0[NT], w1[NT];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const uint8_t *row = W + (w_row0 + nt * 8) * 32 + tig * 4;
            w0[nt] = *(const uint32_t *)(row + (w_sw << 4));
            w1[nt] = *(const uint32_t *)(row + ((w_sw ^ 1) << 4));
        }
#pragma unroll
        for (int kk = 0; kk < BK / 32; kk++) {
            uint32_t af[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const int r = a_row0 + mt * 16;
                ldsm_x4(af[mt], A + r * BK + (((2 * kk + a_hi) ^ (r & 7)) << 4));
            }
            const int sh = 6 - 2 * kk;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const uint32_t bf[2] = {(w0[nt] >> sh) & 0x03030303u, (w1[nt] >> sh) & 0x03030303u};
#pragma unroll
                for (int mt = 0; mt < MT; mt++) mma_s8(acc[mt][nt], af[mt], bf);
            }
        }
        }
    }
    cp_async_wait<0>();
    gemm4_epilogue<EP, MT, NT>(p, acc, m_base + wm * MT * 16, n_base + wn * NT * 8, gid, tig);
}

// The tile configurations of version 4 (index = kcuda_set_gemm_config's argument - 1):
//   1: 128x128, 8 warps of 64x32   2: 128x64, 4 warps of 64x32   3: 64x64, 4 warps of 32x32
//   4: 64x32, 4 warps of 16x32     5: 64x16, 4 warps of 16x16 (small M: many blocks)
//   6: 64x64 as 3, two k-tiles per stage (half the barriers), 3 stages
//   7: 64x16 as 5, two k-tiles per stage, 4 stages
#define GEMM4_CONFIGS(X)    \
    X(1, 2, 4, 4, 4, 4, 1)  \
    X(2, 2, 2, 4, 4, 4, 1)  \
    X(3, 2, 2, 2, 4, 4, 1)  \
    X(4, 4, 1, 1, 4, 6, 1)  \
    X(5, 4, 1, 1, 2, 6, 1)  \
    X(6, 2, 2, 2, 4, 3, 2)  \
    X(7, 4, 1, 1, 2, 4, 2)
enum { GEMM4_NCFG = 7 };
const int GEMM4_BM[GEMM4_NCFG] = {128, 128, 64, 64, 64, 64, 64};
const int GEMM4_BN[GEMM4_NCFG] = {128, 64, 64, 32, 16, 64, 16};

int g_pdl = 0;  // PDL for this launch (kcuda_w2a8_gemm_ex)

int g_gemm_carveout = -1;  // percent for the GEMM kernels (-1 / -2: the common one)

template <int EP, int WGM, int WGN, int MT, int NT, int ST, int KB>
int gemm4_launch_ep(dim3 grid, void *stream, const GemmParams &p) {
    using C = Gemm4Cfg<WGM, WGN, MT, NT, ST, KB>;
    auto kern = w2a8_gemm_kernel4<EP, C, WGM, WGN, MT, NT>;
    static bool attr = false;
    if (!attr) {
        KCUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
        if (g_gemm_carveout >= 0) {
            const int rc = kcuda_prepare_func((const void *)kern);  // the common carveout first, then ours
            if (rc) return rc;
            KCUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, g_gemm_carveout));
        }
        attr = true;
    }
    return kcuda_launch(kern, grid, dim3(C::THREADS), C::SMEM, stream, g_pdl, p);
}

template <int WGM, int WGN, int MT, int NT, int ST, int KB>
int gemm4_launch_cfg(int ep, int M, void *stream, const GemmParams &p) {
    using C = Gemm4Cfg<WGM, WGN, MT, NT, ST, KB>;
    const dim3 grid((unsigned)((p.n_out + C::BN - 1) / C::BN), (unsigned)((M + C::BM - 1) / C::BM));
    switch (ep) {
    case KCUDA_EP_F32: return gemm4_launch_ep<KCUDA_EP_F32, WGM, WGN, MT, NT, ST, KB>(grid, stream, p);
    case KCUDA_EP_RESID: return gemm4_launch_ep<KCUDA_EP_RESID, WGM, WGN, MT, NT, ST, KB>(grid, stream, p);
    case KCUDA_EP_GLU: return gemm4_launch_ep<KCUDA_EP_GLU, WGM, WGN, MT, NT, ST, KB>(grid, stream, p);
    case KCUDA_EP_I32: return gemm4_launch_ep<KCUDA_EP_I32, WGM, WGN, MT, NT, ST, KB>(grid, stream, p);
    default: return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: bad epilogue %d", ep);
    }
}

int g_sm_count = 0;
void gemm_defaults();
int g_gemm_config = -1;  // 0: by shape (gemm4_pick), 1..GEMM4_NCFG: forced, -1: not set yet

// Measured on the H100 (lab, 2026-11-23): the 64x64 tile (4 blocks of 4 warps per SM) is the
// fastest or within 10% at T = 512 on all four 2B shapes and at T = 64 on gate/up, the bigger
// tiles lose (fewer warps to hide the mma and shared-load latencies); where 64x64 gives too
// few blocks to cover the SMs once (T = 64, N = 2560/3840), 64x16 with two k-tiles per stage
// (tile 7) is fastest (7.2-7.4 us against 7.7-8.1 for tile 5; two k-tiles per stage lose at
// 64x64: 3 stages of 20 KB leave room for fewer blocks). Rule: PICK_BIG when its grid covers
// ~90% of the SMs, else PICK_SMALL.
int g_pick_big = 3, g_pick_small = 7;
int gemm4_pick(int M, int N) {
    gemm_defaults();
    if (g_gemm_config >= 1 && g_gemm_config <= GEMM4_NCFG) return g_gemm_config;
    if (!g_sm_count) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&g_sm_count, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
            cudaGetLastError();
            g_sm_count = 132;
        }
    }
    const int c = g_pick_big - 1;
    const long blocks = (long)((N + GEMM4_BN[c] - 1) / GEMM4_BN[c]) * ((M + GEMM4_BM[c] - 1) / GEMM4_BM[c]);
    return blocks * 10 >= (long)g_sm_count * 9 ? g_pick_big : g_pick_small;
}

int gemm4_launch(int ep, int M, void *stream, const GemmParams &p) {
    switch (gemm4_pick(M, p.n_out)) {
#define X(id, wgm, wgn, mt, nt, st, kb) \
    case id: return gemm4_launch_cfg<wgm, wgn, mt, nt, st, kb>(ep, M, stream, p);
        GEMM4_CONFIGS(X)
#undef X
    default: return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: bad tile configuration");
    }
}

int g_gemm_version = 0;  // 0: not set yet

// The defaults unless the lab's kcuda_set_gemm_* ran: version 4, tile by shape, no carveout of
// its own.
void gemm_defaults() {
    if (g_gemm_version == 0) g_gemm_version = 4;
    if (g_gemm_carveout < 0) g_gemm_carveout = -2;  // -2: checked, none
    if (g_gemm_config < 0) g_gemm_config = 0;
}

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


// ---- per-row RMSNorm + int8 quantization for prefill, version 2 -----------------------------
// The same formulas as norm_quant_prologue (kcuda_rmsnorm_quant), but each row is read from
// memory once, as float4 into registers (up to 8 per thread: k_pad <= 8192), instead of three
// strided passes with a block reduction after each: version 1 took 5.6 us (512 rows x 2560)
// and 11.4 us (x 6912), four times per layer. Only the order of the sum of squares differs.
enum { NQ_THREADS = 256, NQ_VPT = 8 };
__global__ void __launch_bounds__(NQ_THREADS) norm_quant_rows2_kernel(const float *x, int ld_x, int k_in, int k_pad,
                                                                    const float *norm_w, float eps, int8_t *q,
                                                                    float *s_out, int32_t *qsum) {
    __shared__ float red[NQ_THREADS / 32];
    pdl_trigger();
    const int r = blockIdx.x, tid = threadIdx.x, n4 = k_in / 4, p4 = k_pad / 4;
    float4 w[NQ_VPT];
#pragma unroll
    for (int v = 0; v < NQ_VPT; v++) {  // norm weights are constant: read before the wait
        const int j = tid + NQ_THREADS * v;
        w[v] = norm_w && j < n4 ? ((const float4 *)norm_w)[j] : make_float4(1.f, 1.f, 1.f, 1.f);
    }
    pdl_wait();
    const float4 *xr = (const float4 *)(x + (size_t)r * ld_x);
    float4 xv[NQ_VPT];
    float ss = 0.0f;
#pragma unroll
    for (int v = 0; v < NQ_VPT; v++) {
        const int j = tid + NQ_THREADS * v;
        xv[v] = j < n4 ? xr[j] : make_float4(0.f, 0.f, 0.f, 0.f);
        ss += xv[v].x * xv[v].x + xv[v].y * xv[v].y + xv[v].z * xv[v].z + xv[v].w * xv[v].w;
    }
    float inv = 1.0f;
    if (norm_w) {
        ss = block_sum<NQ_THREADS>(ss, red);
        inv = 1.0f / sqrtf(ss / (float)k_in + eps);
    }
    float amax = 0.0f;
#pragma unroll
    for (int v = 0; v < NQ_VPT; v++) {
        if (norm_w) {
            xv[v].x = w[v].x * (xv[v].x * inv);
            xv[v].y = w[v].y * (xv[v].y * inv);
            xv[v].z = w[v].z * (xv[v].z * inv);
            xv[v].w = w[v].w * (xv[v].w * inv);
        }
        amax = fmaxf(amax, fmaxf(fmaxf(fabsf(xv[v].x), fabsf(xv[v].y)), fmaxf(fabsf(xv[v].z), fabsf(xv[v].w))));
    }
    amax = block_max<NQ_THREADS>(amax, red);
    const float sc = 127.0f / fmaxf(amax, 1e-5f);
    int sum = 0;
#pragma unroll
    for (int v = 0; v < NQ_VPT; v++) {
        const int j = tid + NQ_THREADS * v;
        if (j < p4) {
            const float e[4] = {xv[v].x, xv[v].y, xv[v].z, xv[v].w};  // zeros past k_in
            uint32_t word = 0;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int qi = (int)fminf(fmaxf(rintf(e[i] * sc), -128.0f), 127.0f);
                sum += qi;
                word |= (uint32_t)(qi & 0xff) << (8 * i);
            }
            ((uint32_t *)(q + (size_t)r * k_pad))[j] = word;
        }
    }
    sum = block_sum_i<NQ_THREADS>(sum, red);
    if (tid == 0) {
        s_out[r] = sc;
        qsum[r] = sum;
    }
}

int g_norm_version = 0;  // 0: not set yet (the lab's kcuda_set_prefill_norm_version; default 2)

}  // namespace

extern "C" void kcuda_set_prefill_norm_version(int v) { g_norm_version = v == 1 ? 1 : 2; }

extern "C" int kcuda_rmsnorm_quant_prefill(const float *d_x, int rows, int ld_x, int k_in, int k_pad,
                                           const float *d_norm_w, float eps, int8_t *d_q, float *d_s,
                                           int32_t *d_qsum, int pdl, void *stream) {
    if (g_norm_version == 0) g_norm_version = 2;
    const bool fits = d_x && d_q && d_s && d_qsum && rows > 0 && k_in > 0 && k_in <= k_pad && k_pad % 128 == 0 &&
                      k_pad <= NQ_THREADS * NQ_VPT * 4 && k_in % 4 == 0 && ld_x % 4 == 0 && ld_x >= k_in &&
                      ((uintptr_t)d_x | (uintptr_t)d_norm_w | (uintptr_t)d_q) % 16 == 0;
    if (g_norm_version == 1 || !fits)  // version 1 also checks the arguments and names what is wrong
        return kcuda_rmsnorm_quant(d_x, rows, ld_x, k_in, k_pad, d_norm_w, eps, d_q, d_s, d_qsum, pdl, stream);
    return kcuda_launch(norm_quant_rows2_kernel, dim3((unsigned)rows), dim3(NQ_THREADS), 0, stream, pdl, d_x, ld_x,
                        k_in, k_pad, d_norm_w, eps, d_q, d_s, d_qsum);
}

extern "C" void kcuda_set_gemm_version(int v) { g_gemm_version = v >= 1 && v <= 4 ? v : 4; }

extern "C" void kcuda_set_gemm_config(int c) { g_gemm_config = c >= 1 && c <= GEMM4_NCFG ? c : 0; }

extern "C" int kcuda_gemm_config(int M, int N) { return gemm4_pick(M, N); }

extern "C" int kcuda_w2a8_gemm(const KcudaTernary *w, const int8_t *d_q, const float *d_s,
                               const int32_t *d_qsum, int M, KcudaEpilogue ep, void *d_out,
                               int ld_out, void *stream) {
    return kcuda_w2a8_gemm_ex(w, d_q, d_s, d_qsum, M, ep, d_out, ld_out, 0, stream);
}

extern "C" int kcuda_w2a8_gemm_ex(const KcudaTernary *w, const int8_t *d_q, const float *d_s,
                                  const int32_t *d_qsum, int M, KcudaEpilogue ep, void *d_out,
                                  int ld_out, int pdl, void *stream) {
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
    if (w->act != KCUDA_ACT_RELU2 && w->act != KCUDA_ACT_SILU)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: bad GLU activation %d", w->act);
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
    p.act = w->act;
    p.out = d_out;
    p.ld_out = ld_out;
    const dim3 grid((unsigned)((w->n_out + BN - 1) / BN), (unsigned)((M + BM - 1) / BM));
    gemm_defaults();
    if (g_gemm_version == 1) return gemm_launch<1>(ep, grid, stream, p);
    if (g_gemm_version == 2) return gemm_launch<2>(ep, grid, stream, p);
    if (g_gemm_version == 3) return gemm3_launch(ep, grid, stream, p);
    g_pdl = pdl;  // versions 1-3 launch without PDL
    const int rc = gemm4_launch(ep, M, stream, p);
    g_pdl = 0;
    return rc;
}
