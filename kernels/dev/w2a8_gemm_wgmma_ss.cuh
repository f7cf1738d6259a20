// Lab version 7 of the prefill GEMM: warpgroup MMA (sm_90a) with BOTH operands in shared memory.
// Version 5 (w2a8_gemm_wgmma_kernel.cuh) expands the 2-bit weights straight into wgmma's register
// A operand; ptxas then serializes a warpgroup's wgmmas against the next k-tile's expansion
// (info C7513), so each consumer warpgroup waits for its own k-tile before it starts the next and
// the tensor pipe idles whenever both consumers expand or wait: 763 TOPS on gate/up at T = 512,
// 39% of the H100's int8 peak (kernels/dev/README.md, "Prefill GEMM on warpgroup MMA").
//
// Here a consumer warpgroup writes the 2-bit weights of its own rows as int8 codes {0, 1, 2} into
// an int8 stage (the 128-byte-swizzled K-major layout the activations already use) and issues
// wgmma with A and B from shared-memory descriptors; it expands k-tile kb + 1 while k-tile kb's
// wgmmas run (no register they read is written meanwhile: their operands are in shared memory), so
// the tensor pipe is fed while the CUDA cores expand. The load warpgroup only copies (cp.async,
// the 2-bit weights and activations of a stage). The code's offset (w = c - 1) is removed in the
// epilogue as in every version (acc - sum of q). A first version had the load warpgroup expand
// (one warpgroup for all 256 rows, two named barriers a k-tile): exact, but 1.2-1.6x slower than
// version 5 (H200, 2026-12-06, kernels/dev/README.md; commit 63c0273). The accumulators start at
// the first k-tile's wgmmas (scale-d 0) instead of being zeroed by moves: with the moves and the
// expansion in one kernel, ptxas serialized every wgmma (info C7515, "non wgmma instructions
// defining accumulator registers"), whether the expansion ran inside the loop or only before it.
//
// Row order: wgmma's accumulator row i of a 64-row tile is smem row i; the expansion writes output
// row 16w + 2i (i < 8) into smem row 16w + i and 16w + 2(i - 8) + 1 into 16w + i (w = warp of the
// warpgroup), so a thread's two accumulator rows gid, gid + 8 are the output rows 2gid, 2gid + 1
// as in version 5, and the epilogue (gemm5_finish, split-K included) is version 5's.
//
// Stages: full[st] completes when the stage's 2-bit weights and activations have landed (one
// cp.async arrival per load thread); empty[st] when every consumer warp's wgmmas reading it have
// completed. The int8 stages belong to the consumers (each warpgroup its own rows); k-tile kb + 1's
// int8 stage is neither kb's nor kb - 1's (the wgmmas possibly in flight) since ST >= 3.
#pragma once
#include "kernels/dev/w2a8_gemm_wgmma_kernel.cuh"

namespace {

// D[64 x 128] (+)= A[64 x 32] * B[32 x 128], both from shared-memory descriptors, s8 x s8 -> s32.
__device__ __forceinline__ void wgmma_ss_n128(int (&d)[64], uint64_t desc_a, uint64_t desc_b, int scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// Two consumer warpgroups of MW 64-row tiles each by 128 tokens (BM = 128 MW rows), one load
// warpgroup; ST stages (activations, 2-bit weights, int8 weights).
template <int MW, int ST>
struct Gemm7Cfg {
    static_assert(ST >= 3, "pipeline stages: k-tile kb + 1's int8 stage must not be kb's or kb - 1's");
    static constexpr int NWG = 2, BT = 128, BM = 64 * MW * NWG, CONSUMERS = 128 * NWG, THREADS = CONSUMERS + 128;
    static constexpr int ST_ = ST;
    static constexpr int A_STAGE = BT * BK, Q_STAGE = BM * BK, W_STAGE = BM * 32;  // activations, int8 and 2-bit weights
    static constexpr size_t PIPE = (size_t)ST * (A_STAGE + Q_STAGE + W_STAGE);
    static constexpr size_t PARK = (size_t)MW * (BT / 2) * 4 * CONSUMERS;  // split-K accumulators
    static constexpr size_t BAR_OFF = PIPE > PARK ? PIPE : PARK;
    static constexpr size_t SMEM = BAR_OFF + 2 * ST * 8 + 1024;  // + alignment to 1024
    static_assert(SMEM <= 227 * 1024, "shared memory of one block");
};

template <int EP, class C, int MW>
__global__ void __launch_bounds__(C::THREADS, 1) w2a8_gemm_kernel7(GemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int BT = C::BT, ST = C::ST_;
    extern __shared__ uint8_t smem_raw[];
    uint8_t *const smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint8_t *const As = smem;                            // [ST][BT][128], swizzled
    uint8_t *const Qs = smem + (size_t)ST * C::A_STAGE;  // [ST][BM][128], swizzled, rows permuted
    uint8_t *const Ws = Qs + (size_t)ST * C::Q_STAGE;    // [ST][BM][32], 2-bit, output order
    uint64_t *const full = (uint64_t *)(smem + C::BAR_OFF), *const empty = full + ST;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wg = warp >> 2, tig = lane & 3, gid = lane >> 2;
    const int n_base = blockIdx.x * C::BM, t_base = blockIdx.y * BT;
    const size_t rb = (size_t)p.k_pad / 4;
    const int sk = (int)gridDim.z, rank = (int)blockIdx.z;
    const int kb_lo = p.k_pad / BK * rank / sk;             // this split's first I2_S block
    const int NB = p.k_pad / BK * (rank + 1) / sk - kb_lo;  // and its number of blocks
    pdl_trigger();
    if (tid == 0)
        for (int s = 0; s < ST; s++) mbar_init(&full[s], 128), mbar_init(&empty[s], C::NWG * 4);
    __syncthreads();  // the barriers are initialized
    if (wg == C::NWG) {  // the load warpgroup
        asm volatile("setmaxnreg.dec.sync.aligned.u32 88;\n" ::: "memory");
        const int lt = tid - C::CONSUMERS;
        auto issue_a = [&](int kb, int st) {
#pragma unroll
            for (int i = 0; i < BT * 8 / 128; i++) {
                const int idx = lt + 128 * i, r = idx >> 3, c = idx & 7, t = t_base + r;
                const bool ok = t < p.M;
                const int8_t *src = p.q + (ok ? (size_t)t * p.k_pad + (size_t)(kb_lo + kb) * BK + c * 16 : 0);
                cp_async16(As + (size_t)st * C::A_STAGE + r * BK + ((c ^ (r & 7)) << 4), src, ok);
            }
        };
        auto issue_w = [&](int kb, int st) {
#pragma unroll
            for (int i = 0; i < C::BM * 2 / 128; i++) {
                const int idx = lt + 128 * i, r = idx >> 1, h = idx & 1, n = n_base + r;
                const bool ok = n < p.n_out;
                const uint8_t *src = p.w + (ok ? (size_t)n * rb + (size_t)(kb_lo + kb) * 32 + h * 16 : 0);
                cp_async16(Ws + (size_t)st * C::W_STAGE + r * 32 + h * 16, src, ok);
            }
        };
        // the weights (constant) of the first stages before the wait on the previous kernel (PDL)
        for (int kb = 0; kb < ST && kb < NB; kb++) issue_w(kb, kb);
        pdl_wait();
        for (int kb = 0; kb < NB; kb++) {
            const int st = kb % ST;
            if (kb >= ST) {
                mbar_wait(&empty[st], ((kb / ST) + 1) & 1);  // k-tile kb - ST consumed
                issue_w(kb, st);
            }
            issue_a(kb, st);
            cp_async_mbar_arrive(&full[st]);  // arrives once this thread's copies so far have landed
        }
        asm volatile("cp.async.wait_all;" ::: "memory");
        if (sk > 1) {  // the consumers' split-K barriers (gemm5_finish)
            __syncthreads();
            cooperative_groups::this_cluster().sync();
            cooperative_groups::this_cluster().sync();
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 208;\n" ::: "memory");
    const int ct = tid & 127;  // this thread's place in its warpgroup
    // k-tile kb (landed: full waited) into the int8 stage, this warpgroup's MW x 64 rows: smem row
    // R holds output row out_row(R) (the permutation above); 16-byte chunk c = k 16c..16c+15 = code
    // c / 2 (bits 6 - 2(c / 2)) of the row's bytes 16 (c % 2)..
    auto expand = [&](int st) {
        const uint8_t *W = Ws + (size_t)st * C::W_STAGE;
        uint8_t *Q = Qs + (size_t)st * C::Q_STAGE;
#pragma unroll
        for (int i = 0; i < MW * 64 * 8 / 128; i++) {
            const int idx = ct + 128 * i, R = wg * MW * 64 + (idx >> 3), c = idx & 7;
            const int i16 = R & 15, o = (R & ~15) + (i16 < 8 ? 2 * i16 : 2 * (i16 - 8) + 1);
            const uint4 w = *(const uint4 *)(W + o * 32 + (c & 1) * 16);
            const int sh = 6 - 2 * (c >> 1);
            *(uint4 *)(Q + R * BK + ((c ^ (R & 7)) << 4)) = make_uint4((w.x >> sh) & 0x03030303u, (w.y >> sh) & 0x03030303u,
                                                                       (w.z >> sh) & 0x03030303u, (w.w >> sh) & 0x03030303u);
        }
        fence_proxy_async();  // this thread's int8 writes to wgmma's proxy
        asm volatile("bar.sync %0, 128;" ::"r"(1 + wg) : "memory");  // ... and the warpgroup's
    };
    int acc[MW][BT / 2];
    pdl_wait();  // the epilogue reads the previous kernel's scales, sums (and residual)
    const uint32_t a_base = (uint32_t)__cvta_generic_to_shared(As), q_base = (uint32_t)__cvta_generic_to_shared(Qs);
    if (NB > 0) {
        mbar_wait(&full[0], 0);
        expand(0);
    }
    for (int kb = 0; kb < NB; kb++) {
        const int st = kb % ST;
        const uint32_t a_st = a_base + (uint32_t)(st * C::A_STAGE);
        const uint32_t q_st = q_base + (uint32_t)(st * C::Q_STAGE + wg * MW * 64 * BK);
        fence_proxy_async();  // the landed activations, seen by this thread (full waited), to wgmma's proxy
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
#pragma unroll
            for (int m = 0; m < MW; m++)
                wgmma_ss_n128(acc[m], wgmma_desc_sw128(q_st + m * 64 * BK + 32 * kk), wgmma_desc_sw128(a_st + 32 * kk), kb > 0 || kk > 0);
        wgmma_commit();
        if (kb + 1 < NB) {  // the next k-tile's int8 weights while these wgmmas run
            const int nst = (kb + 1) % ST;
            mbar_wait(&full[nst], ((kb + 1) / ST) & 1);
            expand(nst);
        }
        wgmma_wait<1>();  // k-tile kb - 1's wgmmas are done: its stage goes back to the loaders
        if (kb > 0) {
            __syncwarp();
            if (lane == 0) mbar_arrive(&empty[(kb - 1) % ST]);
        }
    }
    wgmma_wait<0>();
    if (NB == 0)  // a split with no k-tile (K = 384 in 4 splits): no wgmma zeroed the accumulators
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int i = 0; i < BT / 2; i++) acc[m][i] = 0;
    const int w_row = wg * 64 * MW + (warp & 3) * 16 + 2 * gid;
    gemm5_finish<EP, MW, BT, C::CONSUMERS>(p, acc, smem, n_base + w_row, t_base + 2 * tig, tid, sk, rank);
#else
    __trap();  // built without sm_90a features: the lab never launches it then
#endif
}

// The tiles of version 7 (id, 64-row tiles per consumer warpgroup, stages):
//   1: 256 rows x 128 tokens, 3 stages (168 KB)   2: the same, 4 stages (224 KB)
//   3: 128 x 128, 4 stages (160 KB; twice the blocks for the 2560-row shapes)
#define GEMM7_CONFIGS(X) \
    X(1, 2, 3)           \
    X(2, 2, 4)           \
    X(3, 1, 4)
enum { GEMM7_N_CONFIGS = 3 };

template <int EP, int MW, int ST>
int lab_gemm7_ep(void *stream, int sk, const GemmParams &p) {
    using C = Gemm7Cfg<MW, ST>;
    auto kern = w2a8_gemm_kernel7<EP, C, MW>;
    static bool attr = false;
    if (!attr) {
        KCUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
        attr = true;
    }
    const dim3 grid((unsigned)((p.n_out + C::BM - 1) / C::BM), (unsigned)((p.M + C::BT - 1) / C::BT), (unsigned)sk);
    return gemm4_launch_grid<C>(kern, grid, stream, 0, p);
}

// Version 7 at tile cfg (GEMM7_CONFIGS), split over K into sk blocks per tile, epilogue ep.
int lab_gemm7_cfg(int cfg, int ep, void *stream, int sk, const GemmParams &p) {
    switch (cfg * 8 + ep) {
#define X(id, mw, st)                                                                           \
    case id * 8 + KCUDA_EP_I32: return lab_gemm7_ep<KCUDA_EP_I32, mw, st>(stream, sk, p);     \
    case id * 8 + KCUDA_EP_F32: return lab_gemm7_ep<KCUDA_EP_F32, mw, st>(stream, sk, p);     \
    case id * 8 + KCUDA_EP_RESID: return lab_gemm7_ep<KCUDA_EP_RESID, mw, st>(stream, sk, p); \
    case id * 8 + KCUDA_EP_GLU: return lab_gemm7_ep<KCUDA_EP_GLU, mw, st>(stream, sk, p);
        GEMM7_CONFIGS(X)
#undef X
    default: return kcuda_fail(KCUDA_ERR_ARG, "lab_gemm: bad version-7 tile %d or epilogue %d", cfg, ep);
    }
}

}  // namespace
