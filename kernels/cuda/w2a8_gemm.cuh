// The prefill GEMM kernel (W2A8 on int8 tensor cores, mma.sync.m16n8k32 s8 x s8 -> s32) and its
// helpers, shared by its launcher (w2a8_gemm.cu) and the kernel lab (kernels/dev/w2a8_gemm.cu),
// which runs it at every tile configuration next to the earlier versions. Internal to
// kernels/cuda and kernels/dev.
#pragma once
#include <cooperative_groups.h>

#include "kernels/cuda/common.cuh"

namespace {

enum { BK = 128 };  // k-tile: one I2_S block

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

// One token's outputs at columns n and n+1 (n even) from its accumulators less qsum (a0, a1):
// y = acc / s * gamma per the epilogue, bit for bit as the CPU reference. The one place that
// turns accumulators into outputs, for every GEMM version (the lab's wgmma kernel included).
template <int EP>
__device__ __forceinline__ void gemm_store_pair(const GemmParams &p, int t, int n, int a0, int a1, float s) {
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

// Epilogue of the mma.sync GEMM versions: a warp's MT x NT mma tiles (rows from m0, columns
// from n0) through gemm_store_pair. With split-K (own_mod > 1) a block writes only the row
// groups (mt, half) with (2 mt + half) % own_mod == own_rank: the others belong to the other
// blocks of its cluster.
template <int EP, int MT, int NT>
__device__ __forceinline__ void gemm4_epilogue(const GemmParams &p, int (&acc)[MT][NT][4], int m0, int n0,
                                               int gid, int tig, int own_mod = 1, int own_rank = 0) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int t = m0 + mt * 16 + gid + half * 8;
            if (t >= p.M || (2 * mt + half) % own_mod != own_rank) continue;
            const float s = p.s ? p.s[t] : 1.0f;
            const int qs = p.qsum[t];
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
                gemm_store_pair<EP>(p, t, n0 + nt * 8 + tig * 2, acc[mt][nt][half * 2] - qs, acc[mt][nt][half * 2 + 1] - qs, s);
        }
    }
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

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

//
// Split-K (gridDim.z = SK > 1, launched as clusters of 1 x 1 x SK blocks): block z of a cluster
// runs the z-th of SK contiguous runs of I2_S blocks of the same output tile; the SK partial int32
// accumulators are summed through distributed shared memory (each block parks its accumulators
// in its own pipeline buffers, each reads the others' for the row groups it owns) and every
// block runs the epilogue on its share of the rows. Integer sums: exact in any order, no global
// workspace, no atomics. It gives the narrow projections at T = 512 (2560 columns: 320 blocks of
// 64x64 for 132 SMs that hold 5 each) the warps to hide the mma and shared-load latencies.
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
    const int sk = (int)gridDim.z, rank = (int)blockIdx.z;
    const int kb_lo = p.k_pad / BK * rank / sk;                // this split's first I2_S block
    const int NB = p.k_pad / BK * (rank + 1) / sk - kb_lo;     // and its number of blocks
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
                    const int8_t *src = p.q + (ok ? (size_t)t * p.k_pad + (size_t)(kb_lo + kb) * BK + c * 16 : 0);
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
                    const uint8_t *src = p.w + (ok ? (size_t)n * rb + (size_t)(kb_lo + kb) * 32 + h * 16 : 0);
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
    const int m0 = m_base + wm * MT * 16, n0 = n_base + wn * NT * 8;
    if (sk == 1) {
        gemm4_epilogue<EP, MT, NT>(p, acc, m0, n0, gid, tig);
        return;
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900  // clusters: the launcher splits K only on sm_90+
    // split-K: park the accumulators as int2 [MT][NT][half][THREADS] (a warp's 32 lanes read and
    // write 256 consecutive bytes), then add the other blocks' parts of the owned row groups
    static_assert((size_t)MT * NT * 4 * C::THREADS * 4 <= C::SMEM, "split-K accumulators exceed the pipeline buffers");
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    int2 *park = (int2 *)smem;
    __syncthreads();  // every warp is done with the pipeline buffers
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int half = 0; half < 2; half++)
                park[((mt * NT + nt) * 2 + half) * C::THREADS + tid] = make_int2(acc[mt][nt][2 * half], acc[mt][nt][2 * half + 1]);
    cluster.sync();  // every block's accumulators are parked
    for (int r = 0; r < sk; r++) {
        if (r == rank) continue;
        const int2 *other = cluster.map_shared_rank(park, (unsigned)r);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int half = 0; half < 2; half++) {
                if ((2 * mt + half) % sk != rank) continue;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const int2 v = other[((mt * NT + nt) * 2 + half) * C::THREADS + tid];
                    acc[mt][nt][2 * half] += v.x;
                    acc[mt][nt][2 * half + 1] += v.y;
                }
            }
    }
    cluster.sync();  // no block leaves (freeing its shared memory) while another still reads it
    gemm4_epilogue<EP, MT, NT>(p, acc, m0, n0, gid, tig, sk, rank);
#endif
}

// Launches kernel 4 (a split-K grid, gridDim.z > 1, as clusters of 1 x 1 x gridDim.z blocks),
// with programmatic dependent launch on request.
template <class C, typename K>
int gemm4_launch_grid(K kern, dim3 grid, void *stream, int pdl, const GemmParams &p) {
    int rc = kcuda_prepare_func((const void *)kern);
    if (rc) return rc;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(C::THREADS);
    cfg.dynamicSmemBytes = C::SMEM;
    cfg.stream = (cudaStream_t)stream;
    cudaLaunchAttribute attr[2];
    int na = 0;
    if (grid.z > 1) {
        attr[na].id = cudaLaunchAttributeClusterDimension;
        attr[na].val.clusterDim.x = 1;
        attr[na].val.clusterDim.y = 1;
        attr[na].val.clusterDim.z = grid.z;
        na++;
    }
    if (pdl) {
        attr[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[na].val.programmaticStreamSerializationAllowed = 1;
        na++;
    }
    cfg.attrs = attr;
    cfg.numAttrs = na;
    const cudaError_t e = cudaLaunchKernelEx(&cfg, kern, p);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "w2a8 GEMM launch (grid %u x %u x %u, block %d): %s", grid.x, grid.y, grid.z,
                          C::THREADS, cudaGetErrorString(e));
    return KCUDA_OK;
}

}  // namespace
