// The prefill GEMM on Hopper warpgroup MMA (wgmma.mma_async, sm_90a; lab version 5): the kernel
// and its helpers, which the lab (w2a8_gemm_wgmma.cuh, dev_w2a8_gemm) runs at every tile
// configuration next to the mma.sync kernel of kernels/cuda/w2a8_gemm.cuh. It was the product's
// prefill GEMM from 128 tokens for one session and went back to the lab: alone, the lab timed the
// four 2B GEMMs of a layer at T = 512 at 112.4 us against 140.8 for mma.sync, but inside
// `bitnet-chat` prefill (CUPTI timeline of a 2002-token prompt, H100, 2026-12-06) its 120 GEMMs of
// a 512-token chunk took 6.60-6.75 ms against 4.76-4.86 for mma.sync, and bench TTFT at 512 was
// 8.79 ms against 7.03 (kernels/dev/README.md, "Prefill GEMM on warpgroup MMA"). Racecheck also
// reports hazards between the load warpgroup's cp.async into the weight stages and the consumers'
// loads of them (with and without a __syncwarp before the empty-barrier arrival): unresolved.
//
// Operands: the product's output rows (weights) are wgmma's M and come from registers, the tokens
// are its N and come from shared memory. The 2-bit weights stay 2-bit in shared memory and are
// expanded straight into A fragments, as version 4 expands them into mma.sync B fragments: the A
// fragment of a warp (16 rows x 32 k, the m16n8k32 layout) for k-step kk needs, per row, the
// four weights 32kk + 4tig + 0..3 and 32kk + 16 + 4tig + 0..3, i.e. (word >> (6 - 2kk)) &
// 0x03030303 of the 32-bit words at bytes 4tig and 16 + 4tig of the row's I2_S block. Four
// shared loads per 64-row tile and k-tile give all 16 A registers of its four k-steps; no int8
// weight tile is ever written. The activations (int8, K-major: a token's 128 bytes of a k-tile
// are one row) are copied by cp.async into the 128-byte-swizzled layout wgmma reads (16-byte
// chunk c of row r at c ^ (r & 7), 8-row groups 1024 bytes apart, 1024-byte aligned buffers),
// the same swizzle version 4 uses for ldmatrix.
// Fragment rows are permuted so that a thread's two accumulator rows (gid, gid + 8) are the
// output columns 2gid and 2gid + 1: the GLU pairs (gate, up) and the I32/F32 column pairs then
// sit in one thread, and the epilogue is gemm_store_pair, as for every version.
// Pipeline: STAGES buffers, cp.async loads STAGES - 1 k-tiles ahead; a warpgroup issues the
// wgmmas of one k-tile (4 k-steps x MW tiles, back to back) and waits for them before it expands
// the next k-tile's A fragments: ptxas serializes every wgmma of a kernel where registers that a
// wgmma in flight reads are defined before its wait (info C7513, seen with wait_group 1 and two
// alternating fragment arrays), so the overlap comes from the other warpgroup of the block.
// Split-K over clusters of 1 x 1 x SK blocks as in version 4 (partial int32 sums meet in
// distributed shared memory; exact in any order).
#pragma once
#include "kernels/cuda/w2a8_gemm.cuh"

namespace {

// D[64 x 64] (+)= A[64 x 32] (registers) * B[32 x 64] (shared memory, descriptor), s8 x s8 -> s32.
__device__ __forceinline__ void wgmma_rs_n64(int (&d)[32], const uint32_t (&a)[4], uint64_t desc_b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

// D[64 x 128] (+)= A[64 x 32] (registers) * B[32 x 128] (shared memory, descriptor), s8 x s8 -> s32.
__device__ __forceinline__ void wgmma_rs_n128(int (&d)[64], const uint32_t (&a)[4], uint64_t desc_b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

// D[64 x 256] (+)= A[64 x 32] (registers) * B[32 x 256] (shared memory, descriptor), s8 x s8 -> s32.
__device__ __forceinline__ void wgmma_rs_n256(int (&d)[128], const uint32_t (&a)[4], uint64_t desc_b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, {%128, %129, %130, %131}, %132, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]), "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]), "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]), "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]), "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]), "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]), "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]), "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]), "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// Pins a register's value at this point of the program: the compiler may not move its
// computation past this (into a wgmma pipeline stage, which would make ptxas serialize the wgmmas)
// nor read it before.
__device__ __forceinline__ void reg_fence(uint32_t &r) { asm volatile("" : "+r"(r)::"memory"); }
__device__ __forceinline__ void reg_fence(int &r) { asm volatile("" : "+r"(r)::"memory"); }
__device__ __forceinline__ void reg_fence(uint64_t &r) { asm volatile("" : "+l"(r)::"memory"); }
// Makes this thread's generic-proxy shared-memory writes (cp.async included, once waited for)
// visible to the async proxy that wgmma reads through.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart
// (stride byte offset; the leading byte offset is unused for swizzled K-major operands whose
// k-extent, 32 bytes, lies within one 128-byte row). Start address >> 4 in bits 0-13.
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t saddr) {
    return (uint64_t)((saddr & 0x3FFFFu) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}

template <int BT>
__device__ __forceinline__ void wgmma_rs(int (&d)[BT / 2], const uint32_t (&a)[4], uint64_t desc_b) {
    if constexpr (BT == 64) wgmma_rs_n64(d, a, desc_b);
    else if constexpr (BT == 128) wgmma_rs_n128(d, a, desc_b);
    else wgmma_rs_n256(d, a, desc_b);
}

__device__ __forceinline__ void mbar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"((uint32_t)__cvta_generic_to_shared(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"((uint32_t)__cvta_generic_to_shared(bar)) : "memory");
}
// An arrival on bar once every cp.async this thread issued so far has landed (the barrier's
// expected count stays as initialized).
__device__ __forceinline__ void cp_async_mbar_arrive(uint64_t *bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"((uint32_t)__cvta_generic_to_shared(bar)) : "memory");
}
// Waits until the phase of bar with this parity has completed.
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(bar);
    uint32_t done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(a), "r"(parity)
            : "memory");
    } while (!done);
}

// The end of a version-5 or version-7 block (consumer threads only): the accumulators of the
// block's output rows n0 + 64m (the fragment rows permuted as above: acc[m][4j + e], e = 0, 1,
// is row n0 + 64m, token t0 + 8j + e; acc[m][4j + 2 + e] row n0 + 64m + 1, same token) go through
// the epilogue. Split-K: park them in smem (the pipeline buffers, free by then) as int4
// [MW][BT/8][CONSUMERS], then add the other blocks' parts of the token groups j this block owns
// (j % sk == rank); a load warpgroup meets the same three barriers in its own branch.
template <int EP, int MW, int BT, int CONSUMERS>
__device__ __forceinline__ void gemm5_finish(const GemmParams &p, int (&acc)[MW][BT / 2], uint8_t *smem, int n0, int t0,
                                             int tid, int sk, int rank) {
    auto store = [&](int j) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int t = t0 + 8 * j + e;
            if (t >= p.M) continue;
            const float s = p.s ? p.s[t] : 1.0f;
            const int qs = p.qsum[t];
#pragma unroll
            for (int m = 0; m < MW; m++) gemm_store_pair<EP>(p, t, n0 + 64 * m, acc[m][4 * j + e] - qs, acc[m][4 * j + 2 + e] - qs, s);
        }
    };
    if (sk == 1) {
#pragma unroll
        for (int j = 0; j < BT / 8; j++) store(j);
        return;
    }
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    int4 *park = (int4 *)smem;
    __syncthreads();  // every warp is done with the pipeline buffers
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int j = 0; j < BT / 8; j++)
            park[(m * (BT / 8) + j) * CONSUMERS + tid] =
                    make_int4(acc[m][4 * j], acc[m][4 * j + 1], acc[m][4 * j + 2], acc[m][4 * j + 3]);
    cluster.sync();  // every block's accumulators are parked
    for (int r = 0; r < sk; r++) {
        if (r == rank) continue;
        const int4 *other = cluster.map_shared_rank(park, (unsigned)r);
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int j = 0; j < BT / 8; j++) {
                if (j % sk != rank) continue;
                const int4 v = other[(m * (BT / 8) + j) * CONSUMERS + tid];
                acc[m][4 * j] += v.x, acc[m][4 * j + 1] += v.y, acc[m][4 * j + 2] += v.z, acc[m][4 * j + 3] += v.w;
            }
    }
    cluster.sync();  // no block leaves (freeing its shared memory) while another still reads it
#pragma unroll
    for (int j = 0; j < BT / 8; j++)
        if (j % sk == rank) store(j);
}

// NWG warpgroups, each MW tiles of 64 output rows by BT tokens; STAGES pipeline buffers. WS
// (warp-specialized): one more warpgroup issues every load and the stages are handed over
// through mbarriers (full: landed; empty: every consumer warp done with it), so the consumer
// warpgroups never wait for each other and one's tensor work covers the other's wait for its
// wgmmas and its fragment expansion; the load warpgroup gives registers to the consumers
// (setmaxnreg: a block of 3 warpgroups gets 168 registers a thread, which spilled the 128
// accumulators; a single load warp costs as much, warps being allotted registers by quarter of
// the SM). Else every thread loads and the block meets at a barrier per k-tile.
template <int NWG, int MW, int BT, int ST, int WS>
struct Gemm5Cfg {
    static_assert(BT == 64 || BT == 128 || BT == 256, "wgmma N");
    static_assert(ST >= 2, "pipeline stages");
    static_assert(!WS || NWG == 2, "the register split below is for 2 consumer warpgroups");
    static constexpr int BM = 64 * MW * NWG, CONSUMERS = 128 * NWG, THREADS = CONSUMERS + (WS ? 128 : 0), STAGES = ST;
    // registers a thread with WS: consumers 208, loaders 88 (2 x 128 x 208 + 128 x 88 <= 65536;
    // the tile with 128 accumulators needs ~203, and the loaders spilled at 40-72)
    static constexpr int A_STAGE = BT * BK, W_STAGE = BM * 32;  // activations, 2-bit weights
    static constexpr size_t PIPE = (size_t)ST * (A_STAGE + W_STAGE);
    static constexpr size_t PARK = (size_t)MW * (BT / 2) * 4 * CONSUMERS;  // split-K accumulators
    static constexpr size_t BAR_OFF = PIPE > PARK ? PIPE : PARK;          // mbarriers (WS) after both
    static constexpr size_t SMEM = BAR_OFF + (WS ? 2 * ST * 8 : 0) + 1024;  // + alignment to 1024
};

template <int EP, class C, int NWG, int MW, int BT, int WS>
__global__ void __launch_bounds__(C::THREADS, 1) w2a8_gemm_kernel5(GemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ uint8_t smem_raw[];
    uint8_t *const smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint8_t *const As = smem;                                   // [STAGES][BT][128], swizzled
    uint8_t *const Wr = smem + (size_t)C::STAGES * C::A_STAGE;  // [STAGES][BM][32]
    uint64_t *const full = (uint64_t *)(smem + C::BAR_OFF), *const empty = full + C::STAGES;  // WS only
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wg = warp >> 2, wq = warp & 3, gid = lane >> 2, tig = lane & 3;
    const bool producer = WS && wg == NWG;
    const int n_base = blockIdx.x * C::BM, t_base = blockIdx.y * BT;
    const size_t rb = (size_t)p.k_pad / 4;
    const int sk = (int)gridDim.z, rank = (int)blockIdx.z;
    const int kb_lo = p.k_pad / BK * rank / sk;             // this split's first I2_S block
    const int NB = p.k_pad / BK * (rank + 1) / sk - kb_lo;  // and its number of blocks
    constexpr int A_CHUNKS = BT * 8, W_CHUNKS = C::BM * 2;
    constexpr int LT = WS ? 128 : C::THREADS;  // threads that load
    const int lt = WS ? tid - C::CONSUMERS : tid;
    auto issue_a = [&](int kb, int st) {
#pragma unroll
        for (int i = 0; i < (A_CHUNKS + LT - 1) / LT; i++) {
            const int idx = lt + LT * i;
            if (A_CHUNKS % LT == 0 || idx < A_CHUNKS) {
                const int r = idx >> 3, c = idx & 7, t = t_base + r;
                const bool ok = t < p.M;
                const int8_t *src = p.q + (ok ? (size_t)t * p.k_pad + (size_t)(kb_lo + kb) * BK + c * 16 : 0);
                cp_async16(As + (size_t)st * C::A_STAGE + r * BK + ((c ^ (r & 7)) << 4), src, ok);
            }
        }
    };
    auto issue_w = [&](int kb, int st) {
#pragma unroll
        for (int i = 0; i < (W_CHUNKS + LT - 1) / LT; i++) {
            const int idx = lt + LT * i;
            if (W_CHUNKS % LT == 0 || idx < W_CHUNKS) {
                const int r = idx >> 1, h = idx & 1, n = n_base + r;
                const bool ok = n < p.n_out;
                const uint8_t *src = p.w + (ok ? (size_t)n * rb + (size_t)(kb_lo + kb) * 32 + h * 16 : 0);
                cp_async16(Wr + (size_t)st * C::W_STAGE + r * 32 + h * 16, src, ok);
            }
        }
    };
    int acc[MW][BT / 2];
    auto zero_acc = [&] {
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int i = 0; i < BT / 2; i++) acc[m][i] = 0, reg_fence(acc[m][i]);
    };
    // this thread's A rows within the block tile: fragment rows gid and gid + 8 of warp wq are
    // output rows 2gid and 2gid + 1 of its 16 (+ 64 per tile m)
    const int w_row = wg * 64 * MW + wq * 16 + 2 * gid;
    const uint32_t a_base = (uint32_t)__cvta_generic_to_shared(As);
    // The wgmmas of k-tile kb from stage st (landed and visible to this thread), then their wait:
    // ptxas serializes every wgmma of a kernel where registers that a wgmma in flight reads are
    // defined before its wait (info C7513, seen with wait_group 1 and two alternating fragment
    // arrays), so a warpgroup waits for its own k-tile before expanding the next one.
    auto mma_tile = [&](int st) {
        const uint8_t *W = Wr + (size_t)st * C::W_STAGE;
        uint32_t af[MW][4][4];
#pragma unroll
        for (int m = 0; m < MW; m++) {
            const uint8_t *r0 = W + (w_row + m * 64) * 32 + tig * 4;
            const uint32_t w00 = *(const uint32_t *)r0, w01 = *(const uint32_t *)(r0 + 16);
            const uint32_t w10 = *(const uint32_t *)(r0 + 32), w11 = *(const uint32_t *)(r0 + 48);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                const int sh = 6 - 2 * kk;
                af[m][kk][0] = (w00 >> sh) & 0x03030303u;  // row gid (output 2gid), k 4tig..
                af[m][kk][1] = (w10 >> sh) & 0x03030303u;  // row gid + 8 (output 2gid + 1)
                af[m][kk][2] = (w01 >> sh) & 0x03030303u;  // row gid, k 16 + 4tig..
                af[m][kk][3] = (w11 >> sh) & 0x03030303u;
            }
        }
        const uint32_t a_st = a_base + (uint32_t)(st * C::A_STAGE);
        uint64_t desc[4];
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {  // every input defined before the first wgmma
            desc[kk] = wgmma_desc_sw128(a_st + 32 * kk);
            reg_fence(desc[kk]);
#pragma unroll
            for (int m = 0; m < MW; m++)
#pragma unroll
                for (int i = 0; i < 4; i++) reg_fence(af[m][kk][i]);
        }
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
#pragma unroll
            for (int m = 0; m < MW; m++) wgmma_rs<BT>(acc[m], af[m][kk], desc[kk]);
        wgmma_commit();
        wgmma_wait<0>();
    };
    pdl_trigger();
    if constexpr (WS) {
        if (tid == 0)
            for (int s = 0; s < C::STAGES; s++) mbar_init(&full[s], LT), mbar_init(&empty[s], NWG * 4);
        __syncthreads();  // the barriers are initialized
        if (producer) {
            asm volatile("setmaxnreg.dec.sync.aligned.u32 88;\n" ::: "memory");
            if constexpr (WS == 2) {
                // every weight byte this block will read, asked of L2 at once (one bulk prefetch
                // per row, the rows shared out over the blocks of the other token tiles, which
                // read the same rows): the DRAM latency paid once instead of per k-tile, where a
                // prefill meets each layer's weights in DRAM (the lab's `cold` mode)
                const int gy = (int)gridDim.y, y = (int)blockIdx.y;
                for (int r = lt; r < C::BM; r += 128) {
                    const int n = n_base + r;
                    if (n < p.n_out && r % gy == y)
                        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p.w + (size_t)n * rb + (size_t)kb_lo * 32),
                                     "r"(NB * 32)
                                     : "memory");
                }
            }
            // weights (constant) of the first stages before the wait on the previous kernel (PDL)
            for (int kb = 0; kb < C::STAGES && kb < NB; kb++) issue_w(kb, kb);
            pdl_wait();
            for (int kb = 0; kb < NB; kb++) {
                const int st = kb % C::STAGES;
                if (kb >= C::STAGES) {
                    mbar_wait(&empty[st], ((kb / C::STAGES) + 1) & 1);  // its tile kb - STAGES consumed
                    issue_w(kb, st);
                }
                issue_a(kb, st);
                cp_async_mbar_arrive(&full[st]);
            }
            asm volatile("cp.async.wait_all;" ::: "memory");
            if (sk > 1) {  // the consumers' split-K barriers below (this warpgroup never runs
                           // their code: it holds 88 registers)
                __syncthreads();
                cooperative_groups::this_cluster().sync();
                cooperative_groups::this_cluster().sync();
            }
            return;
        }
        asm volatile("setmaxnreg.inc.sync.aligned.u32 208;\n" ::: "memory");
        zero_acc();
        pdl_wait();  // the epilogue reads the previous kernel's scales, sums (and residual)
        for (int kb = 0; kb < NB; kb++) {
            const int st = kb % C::STAGES;
            mbar_wait(&full[st], (kb / C::STAGES) & 1);
            fence_proxy_async();  // the landed stage, seen by this thread, to wgmma's proxy
            mma_tile(st);
            // the warp's reads of stage st (every lane's weight loads in mma_tile) ordered before
            // lane 0's arrival, which lets the load warpgroup overwrite the stage
            __syncwarp();
            if (lane == 0) mbar_arrive(&empty[st]);
        }
    } else {
        zero_acc();
        // weights before the wait on the previous kernel, activations after; group 0 holds
        // W(0..STAGES-2) and A(0), group s A(s); loads run STAGES - 1 k-tiles ahead
        constexpr int AHEAD = C::STAGES - 1;
#pragma unroll
        for (int st = 0; st < AHEAD; st++)
            if (st < NB) issue_w(st, st);
        pdl_wait();
#pragma unroll
        for (int st = 0; st < AHEAD; st++) {
            if (st < NB) issue_a(st, st);
            cp_async_commit();
        }
        for (int kb = 0; kb < NB; kb++) {
            const int st = kb % C::STAGES;
            cp_async_wait<C::STAGES - 2>();
            fence_proxy_async();
            __syncthreads();  // tile kb landed for every thread; every warpgroup finished tile kb-1
            const int nk = kb + AHEAD;
            if (nk < NB) {
                issue_w(nk, nk % C::STAGES);
                issue_a(nk, nk % C::STAGES);
            }
            cp_async_commit();
            mma_tile(st);
        }
        cp_async_wait<0>();
    }
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int i = 0; i < BT / 2; i++) reg_fence(acc[m][i]);
    gemm5_finish<EP, MW, BT, C::CONSUMERS>(p, acc, smem, n_base + w_row, t_base + 2 * tig, tid, sk, rank);
#else
    __trap();  // built without sm_90a features: the launcher never selects this kernel then
#endif
}

}  // namespace

