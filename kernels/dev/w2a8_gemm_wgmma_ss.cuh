// Lab version 7 of the prefill GEMM: warpgroup MMA (sm_90a) with BOTH operands in shared memory.
// Version 5 (w2a8_gemm_wgmma_kernel.cuh) expands the 2-bit weights straight into wgmma's register
// A operand; ptxas then serializes a warpgroup's wgmmas against the next k-tile's expansion
// (info C7513), so each consumer warpgroup waits for its own k-tile before it starts the next and
// the tensor pipe idles whenever both consumers expand or wait: 763 TOPS on gate/up at T = 512,
// 39% of the H100's int8 peak (kernels/dev/README.md, "Prefill GEMM on warpgroup MMA").
//
// Here the load warpgroup expands: it copies the 2-bit weights of a k-tile (cp.async, a ring of
// ST2 stages, issued ST2 - 1 k-tiles ahead), writes them as int8 codes {0, 1, 2} into an int8
// stage in the 128-byte-swizzled K-major layout wgmma reads (the layout the activations already
// use), and the consumers issue wgmma with A and B from shared-memory descriptors, keeping one
// k-tile's wgmmas in flight while the next k-tile's are issued (wait_group 1): no register a
// wgmma reads is written while it runs. The code's offset (w = c - 1) is removed in the epilogue as
// in every version (acc - sum of q).
//
// Row order: wgmma's accumulator row i of a 64-row tile is smem row i; the expansion writes output
// row 16w + 2i (i < 8) into smem row 16w + i and 16w + 2(i - 8) + 1 into 16w + i (w = warp of the
// warpgroup), so a thread's two accumulator rows gid, gid + 8 are the output rows 2gid, 2gid + 1
// as in version 5, and the epilogue (gemm5_finish, split-K included) is version 5's.
//
// Stages: full[st] completes when the stage's activations have landed (one cp.async arrival per
// load thread) and the load warpgroup has written its int8 weights (one arrival per load thread
// after its proxy fence); empty[st] when every consumer warp's wgmmas reading it have completed.
#pragma once
#include "kernels/dev/w2a8_gemm_wgmma_kernel.cuh"

namespace {

// D[64 x 128] (+)= A[64 x 32] * B[32 x 128], both from shared-memory descriptors, s8 x s8 -> s32.
__device__ __forceinline__ void wgmma_ss_n128(int (&d)[64], uint64_t desc_a, uint64_t desc_b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
        : "l"(desc_a), "l"(desc_b));
}

// The load warpgroup's own barrier (named barrier 1, its 128 threads; 0 is __syncthreads).
__device__ __forceinline__ void loaders_sync() { asm volatile("bar.sync 1, 128;" ::: "memory"); }

// Two consumer warpgroups of MW 64-row tiles each by 128 tokens (BM = 128 MW rows), one load
// warpgroup; ST int8 + activation stages, ST2 2-bit stages.
template <int MW, int ST, int ST2>
struct Gemm7Cfg {
    static_assert(ST >= 2 && ST2 >= 2, "pipeline stages");
    static constexpr int NWG = 2, BT = 128, BM = 64 * MW * NWG, CONSUMERS = 128 * NWG, THREADS = CONSUMERS + 128;
    static constexpr int ST_ = ST, ST2_ = ST2;
    static constexpr int A_STAGE = BT * BK, Q_STAGE = BM * BK, W_STAGE = BM * 32;  // activations, int8 and 2-bit weights
    static constexpr size_t PIPE = (size_t)ST * (A_STAGE + Q_STAGE) + (size_t)ST2 * W_STAGE;
    static constexpr size_t PARK = (size_t)MW * (BT / 2) * 4 * CONSUMERS;  // split-K accumulators
    static constexpr size_t BAR_OFF = PIPE > PARK ? PIPE : PARK;
    static constexpr size_t SMEM = BAR_OFF + 2 * ST * 8 + 1024;  // + alignment to 1024
    static_assert(SMEM <= 227 * 1024, "shared memory of one block");
};

template <int EP, class C, int MW>
__global__ void __launch_bounds__(C::THREADS, 1) w2a8_gemm_kernel7(GemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int BT = C::BT, ST = C::ST_, ST2 = C::ST2_;
    extern __shared__ uint8_t smem_raw[];
    uint8_t *const smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint8_t *const As = smem;                                       // [ST][BT][128], swizzled
    uint8_t *const Qs = smem + (size_t)ST * C::A_STAGE;             // [ST][BM][128], swizzled, rows permuted
    uint8_t *const Ws = Qs + (size_t)ST * C::Q_STAGE;               // [ST2][BM][32], 2-bit, output order
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
        for (int s = 0; s < ST; s++) mbar_init(&full[s], 256), mbar_init(&empty[s], C::NWG * 4);
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
        auto issue_w = [&](int kb, int st2) {
#pragma unroll
            for (int i = 0; i < C::BM * 2 / 128; i++) {
                const int idx = lt + 128 * i, r = idx >> 1, h = idx & 1, n = n_base + r;
                const bool ok = n < p.n_out;
                const uint8_t *src = p.w + (ok ? (size_t)n * rb + (size_t)(kb_lo + kb) * 32 + h * 16 : 0);
                cp_async16(Ws + (size_t)st2 * C::W_STAGE + r * 32 + h * 16, src, ok);
            }
        };
        // smem row R (this thread's R = lt + 128 i) of a k-tile's int8 stage: output row o of the block
        auto out_row = [](int R) {
            const int w16 = R & ~15, i = R & 15;
            return w16 + (i < 8 ? 2 * i : 2 * (i - 8) + 1);
        };
        auto expand = [&](int st2, int st) {
#pragma unroll
            for (int i = 0; i < C::BM / 128; i++) {
                const int R = lt + 128 * i;
                const uint4 *src = (const uint4 *)(Ws + (size_t)st2 * C::W_STAGE + out_row(R) * 32);
                const uint4 lo = src[0], hi = src[1];  // bytes 0-15 and 16-31 of the row's I2_S block
                uint8_t *dst = Qs + (size_t)st * C::Q_STAGE + R * BK;
#pragma unroll
                for (int c = 0; c < 8; c++) {  // 16-byte chunk c: k 16c..16c+15 = code s = c / 2 of bytes 16(c % 2)..
                    const uint4 w = (c & 1) ? hi : lo;
                    const int sh = 6 - 2 * (c >> 1);
                    const uint4 v = make_uint4((w.x >> sh) & 0x03030303u, (w.y >> sh) & 0x03030303u,
                                               (w.z >> sh) & 0x03030303u, (w.w >> sh) & 0x03030303u);
                    *(uint4 *)(dst + ((c ^ (R & 7)) << 4)) = v;
                }
            }
        };
        // the weights (constant) of the first k-tiles before the wait on the previous kernel (PDL)
#pragma unroll
        for (int j = 0; j < ST2 - 1; j++) {
            if (j < NB) issue_w(j, j);
            cp_async_commit();
        }
        pdl_wait();
        for (int kb = 0; kb < NB; kb++) {
            const int st = kb % ST;
            if (kb >= ST) mbar_wait(&empty[st], ((kb / ST) + 1) & 1);  // k-tile kb - ST consumed
            issue_a(kb, st);
            cp_async_mbar_arrive(&full[st]);  // arrives once this thread's copies so far have landed
            const int nj = kb + ST2 - 1;      // its 2-bit stage was expanded at kb - 1 (loaders_sync below)
            if (nj < NB) issue_w(nj, nj % ST2);
            cp_async_commit();
            cp_async_wait<ST2 - 1>();  // this thread's pieces of k-tile kb's 2-bit weights have landed
            loaders_sync();            // ... and every load thread's
            expand(kb % ST2, st);
            fence_proxy_async();  // the int8 stage, written by this thread, to wgmma's proxy
            mbar_arrive(&full[st]);
            loaders_sync();  // every thread done reading 2-bit stage kb % ST2 before it is refilled
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
    int acc[MW][BT / 2];
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int i = 0; i < BT / 2; i++) acc[m][i] = 0;
    pdl_wait();  // the epilogue reads the previous kernel's scales, sums (and residual)
    const uint32_t a_base = (uint32_t)__cvta_generic_to_shared(As), q_base = (uint32_t)__cvta_generic_to_shared(Qs);
    for (int kb = 0; kb < NB; kb++) {
        const int st = kb % ST;
        mbar_wait(&full[st], (kb / ST) & 1);
        fence_proxy_async();
        const uint32_t a_st = a_base + (uint32_t)(st * C::A_STAGE);
        const uint32_t q_st = q_base + (uint32_t)(st * C::Q_STAGE + wg * MW * 64 * BK);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
#pragma unroll
            for (int m = 0; m < MW; m++)
                wgmma_ss_n128(acc[m], wgmma_desc_sw128(q_st + m * 64 * BK + 32 * kk), wgmma_desc_sw128(a_st + 32 * kk));
        wgmma_commit();
        wgmma_wait<1>();  // k-tile kb - 1's wgmmas are done: its stage goes back to the loaders
        if (kb > 0) {
            __syncwarp();
            if (lane == 0) mbar_arrive(&empty[(kb - 1) % ST]);
        }
    }
    wgmma_wait<0>();
    const int w_row = wg * 64 * MW + (warp & 3) * 16 + 2 * gid;
    gemm5_finish<EP, MW, BT, C::CONSUMERS>(p, acc, smem, n_base + w_row, t_base + 2 * tig, tid, sk, rank);
#else
    __trap();  // built without sm_90a features: the lab never launches it then
#endif
}

// The tiles of version 7 (id, 64-row tiles per consumer warpgroup, int8 stages, 2-bit stages):
//   1: 256 rows x 128 tokens, 3 + 3 stages (168 KB)   2: the same, 4 + 3 stages (216 KB)
//   3: 128 x 128, 4 + 4 stages (160 KB; twice the blocks for the 2560-row shapes)
#define GEMM7_CONFIGS(X) \
    X(1, 2, 3, 3)        \
    X(2, 2, 4, 3)        \
    X(3, 1, 4, 4)
enum { GEMM7_N_CONFIGS = 3 };

template <int EP, int MW, int ST, int ST2>
int lab_gemm7_ep(void *stream, int sk, const GemmParams &p) {
    using C = Gemm7Cfg<MW, ST, ST2>;
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
#define X(id, mw, st, st2)                                                                           \
    case id * 8 + KCUDA_EP_I32: return lab_gemm7_ep<KCUDA_EP_I32, mw, st, st2>(stream, sk, p);     \
    case id * 8 + KCUDA_EP_F32: return lab_gemm7_ep<KCUDA_EP_F32, mw, st, st2>(stream, sk, p);     \
    case id * 8 + KCUDA_EP_RESID: return lab_gemm7_ep<KCUDA_EP_RESID, mw, st, st2>(stream, sk, p); \
    case id * 8 + KCUDA_EP_GLU: return lab_gemm7_ep<KCUDA_EP_GLU, mw, st, st2>(stream, sk, p);
        GEMM7_CONFIGS(X)
#undef X
    default: return kcuda_fail(KCUDA_ERR_ARG, "lab_gemm: bad version-7 tile %d or epilogue %d", cfg, ep);
    }
}

}  // namespace
