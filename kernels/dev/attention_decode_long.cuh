// Lab copy of the product's decode attention kernel for long contexts, "spans"
// (kernels/cuda/attention_decode_long.cuh, kcuda_attn_decode from the head kernel's limit on: one
// token over the f16 KV cache, RoPE, GQA; one block per KV group and span of the context), with
// the settings the lab compares against it (kernels/dev/README.md, "Decode attention by balanced
// spans" and the sections after it): CUDA-core dot products at every head_dim (TC false), 512
// threads, thread-block clusters combined through distributed shared memory (CLUSTER), bulk
// copies (BULK, Knobs.bulk_rows), the combine's ticket between every thread's fences
// (Knobs.rel_ticket 0) and a timeline probe (PROBE). The product header keeps only the settings
// the product instantiates (T256 sm1 c64 b100 with the release-acquire ticket, "T256 sm1 c64 b100
// f" here); this copy lets dev_attn_decode time the others against it. Its P.V runs in TF32
// (m16n8k8, p as tf32 hi + lo: f32 range, ~2^-22 of p; V's f16 converts to tf32 exactly) and q
// is scaled by a power of two before its f16 split (lo normal down to 2^-18 of the largest |q|):
// the f16 hi + lo P.V before it missed the tests' error bound where an output's reference sits
// in small probabilities (no normal f16 below 2^-14, none at all below 2^-24, so e^-30 was 0;
// "Decode attention at every context length").
// How it differs
// from the tiled per-KV-group kernel before it (kernels/dev/attention_decode_knobs.cuh, setting
// "t256x128s1ip sm2 c128 at group") and why:
//
// - The splits are balanced over the SMs: a KV group's context is cut into as many spans as one
//   block per (KV head, span) and per_sm blocks per SM make (26 x 5 = 130 blocks of 158
//   positions for the 2B model at 4096 on 132 SMs, per_sm 1), rounded to 16 positions, not to
//   a tile of 128 (which made 32 spans: 160 blocks, 28 SMs with two, so twice the bytes on the
//   SMs that finish last). Measured (H100, kernels/dev/README.md, "Decode attention by balanced
//   spans"): 11.20 / 14.91 us per layer in place at 2048 / 4095 against the tiled kernel's
//   12.17 / 15.04, and ~14 us alone for 10.5 MB: the bytes per SM were not the bound; the
//   kernel's latency chain is (Nsight Compute: the CUDA-core scores and P.V after the PDL wait
//   were ~45% of a block's life, the bytes ~10%; README, "Decode attention toward its bytes"),
//   hence the tensor-core setting (TC, below).
// - A block's whole span is one tile where it fits the shared-memory budget (the dynamic shared
//   memory is sized per launch, up to SPAN positions), all of it requested by 16-byte cp.async
//   before the PDL wait, so one pass of the tile's dependent steps (scores, softmax, P.V) per
//   block; past the budget (long caches on few SMs) the block walks tiles with an online softmax.
// - Scores: 8 lanes per position, each lane a 16-byte K chunk (a row's 8 lanes read 128
//   contiguous bytes: no bank conflicts, no row padding) against q held in shared memory in the
//   order the lanes read it (128 contiguous bytes per 8 lanes too), three shuffles per head.
// - P.V: one lane per 16-byte V chunk (8 dims) and position phase, 8 accumulators per head; the
//   phases of a warp are added by shuffles, the warps through shared memory.
// - The combine (last-arriving block of a group): the partial outputs are loaded in the same
//   batch as the (max, sum) pairs, before the weights are known, so the combine is one L2 round
//   trip, not two.
// head_dim % 8 != 0 (e.g. 100) is staged with 4-byte loads into rows padded to a multiple of 8
// with zeros (K) so that the compute is the same.
#pragma once
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include <mutex>

#include "kernels/cuda/common.cuh"

namespace {  // internal linkage: the product and the lab each instantiate their own kernels
namespace attn_long {

enum {
    MAX_REP = 8,        // query heads of one block
    MAX_SPLITS = 256,   // spans of one KV group at most (bounds the combine's shared memory)
    MAX_HD = 256,
    SCRATCH_CHUNK = 64, // scratch records per group: ceil(ctx / 64) at most (kcuda_attn_decode_scratch)
    ALIGN = 16,         // span lengths and tiles are multiples of 16 positions
    CB = 8,             // the combine's loads in flight per thread
};

// How a launch divides the work (host side). per_sm: blocks per SM the spans aim to fill;
// min_chunk: positions of a span at least (a multiple of ALIGN); smem: the dynamic shared
// memory a block may take (bytes; bounds the tile); cluster: with a CLUSTER instantiation, the
// blocks of a cluster (8, or 16 where the device allows), which is then the number of spans.
struct Knobs {
    int per_sm, min_chunk, smem, cluster;
    int bulk_rows;  // BULK instantiations: rows per bulk copy (0: 32)
    int rel_ticket; // 1: the ticket by one release-acquire atomic (no __threadfence)
};

struct Params {
    int n_heads, n_kv, rep;  // query heads, KV heads, query heads per KV head
    int hb_max;              // query heads per block (<= MAX_REP; the last block of a group may take fewer)
    int hg;                  // blocks per KV head and span (rep > MAX_REP takes several)
    int min_chunk;           // span length at least
    int tile;                // positions staged at once (multiple of ALIGN)
    int hd, ctx, style, splits;
    int late;  // the next launch may start: 0 at this kernel's start, 1 after its PDL wait, 2 after its tiles
    const float *rope;  // [ctx][hd/2][2]
    const float *qkv;   // q | k | v (f32, before RoPE)
    __half *kc, *vc;    // [n_kv][ctx][hd]
    const int *pos;
    float *out;   // [n_heads][hd]
    float *part;  // per (block column, span, head < hb_max): o [hd4], then (max, sum) pairs after all o
    int *count;   // arrivals per block column (n_kv * rep), left zero
    // lab only (Cfg PROBE): where a launch records its blocks' timeline (PROBE_SLOTS per block:
    // see probe_mark), or nullptr
    unsigned long long *probe;
    int bulk_rows;  // BULK: rows per bulk copy
    int rel_ticket; // the combine's ticket by a release-acquire atomic instead of fences (Knobs)
};

// The probe (lab): per block, slot 0 the global timer (ns) at the start, 1..8 clock64 at the
// marks below, 9 the global timer at the end, 10 the SM. Marks: 1 start, 2 loads issued, 3 PDL
// wait passed, 4 q rotated (the tile loop's start), 5 the tile landed, 6 P.V done, 7 partials
// written and the ticket taken, 8 end (the combine, in the last block); 11 and 12 the first
// tile's scores and softmax done.
enum { PROBE_SLOTS = 16 };
__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
template <class C>
__device__ __forceinline__ void probe_mark(const Params &p, int k) {
    if constexpr (C::PROBE)
        if (p.probe && threadIdx.x == 0) p.probe[(size_t)blockIdx.x * PROBE_SLOTS + k] = clock64();
}
template <class C>
__device__ __forceinline__ void probe_end(const Params &p) {
    if (!C::PROBE) return;
    if (p.probe && threadIdx.x == 0) {
        unsigned long long *r = p.probe + (size_t)blockIdx.x * PROBE_SLOTS;
        r[8] = clock64();
        r[9] = global_ns();
        unsigned sm;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
        r[10] = sm;
    }
}

// The tensor memory accelerator's bulk copies (sm_90): global -> shared, completion counted in
// bytes on an mbarrier. One thread issues a copy of many rows; the copy engine, not the
// load/store units, keeps the bytes in flight.
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(unsigned long long *bar, unsigned count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}
__device__ __forceinline__ void mbar_expect_tx(unsigned long long *bar, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void bulk_g2s(void *dst, const void *src, unsigned bytes, unsigned long long *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(bar))
                 : "memory");
#endif
}
__device__ __forceinline__ void mbar_wait(unsigned long long *bar, unsigned parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned done = 0;
    while (!done)
        asm volatile(
            "{\n\t.reg .pred q;\n\tmbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2;\n\tselp.u32 %0, 1, 0, q;\n\t}"
            : "=r"(done)
            : "r"(smem_u32(bar)), "r"(parity)
            : "memory");
#endif
}
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

// TC: c += a . b (m16n8k16, f16 in, f32 accumulators) and the fragment loads.
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// TC P.V: c += a . b (m16n8k8, tf32 in, f32 accumulators). tf32 has f32's exponent range, so
// probabilities far below 2^-24 keep their relative precision (f16 had none there).
__device__ __forceinline__ void mma1688_tf32(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// x rounded to tf32 (10 mantissa bits, to nearest, ties away), as a float whose low 13 bits are 0
__device__ __forceinline__ float to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
}
__device__ __forceinline__ void ldsm_x4(uint32_t a[4], const __half *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t a[4], const __half *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(smem_u32(p)));
}

// MAXHD: the largest head_dim of an instantiation (64, 128 or 256); THREADS: 256 or 512; HB:
// query heads per block at most (4 or 8: the P.V accumulators are 8 per head and thread, so HB 4
// keeps the 2B model's 4-head groups at ~80 registers, beside the GEMVs that share the SMs).
// CLUSTER: a KV group's spans are the blocks of one thread-block cluster (compute capability
// 9.0), combined through distributed shared memory after a cluster barrier: no partials in
// global memory, no fence, no ticket, no last block's L2 round trips.
// BULK: the rows are staged by bulk copies (cp.async.bulk, p.bulk_rows rows each, issued by warp
// 0) instead of 16-byte cp.async from every thread (head_dim % 8 == 0; others as before).
// TC: the scores and P.V on tensor cores (f32 accumulators; the block's query heads are the 8
// columns). Scores: mma.sync m16n8k16, q scaled by a power of two (the block's largest |q| to
// [2^14, 2^15), undone exactly in f32) and split into f16 hi + lo (two products, ~2^-22 of q; K
// as stored). P.V: mma.sync m16n8k8 tf32, p split into tf32 hi + lo (two products: ~2^-22 of p at
// f32's range, where f16 hi + lo lost every p below 2^-24 and most bits below 2^-14; V's f16
// values are tf32 values, converted exactly from the same ldmatrix fragments). Rows padded by 16 bytes for
// conflict-free ldmatrix (BULK then copies row by row). head_dim % 16 == 0 (the host launches
// the other instantiation otherwise).
// PROBE (lab builds only): the blocks record their timeline into p.probe (probe_mark); the
// product's instantiations have none of that code.
template <int MAXHD_, int THREADS_, int HB_, bool CLUSTER_ = false, bool BULK_ = false, bool TC_ = false, bool PROBE_ = false>
struct Cfg {
    static constexpr int MAXHD = MAXHD_, THREADS = THREADS_, WARPS = THREADS / 32, HB = HB_;
    static constexpr bool CLUSTER = CLUSTER_, BULK = BULK_, TC = TC_, PROBE = PROBE_;
    static constexpr int MTW = (MAXHD / 16 + WARPS - 1) / WARPS;  // TC P.V: 16-dim tiles a warp at most
    // blocks per SM the registers allow at least: ~80 registers at 256 threads and HB 4 (no spills)
    static constexpr int MINB = THREADS >= 512 ? (HB > 4 ? 1 : 2) : (HB > 4 ? 2 : 3);
    static constexpr int PVL = MAXHD / 8;   // P.V: lanes per position (one 16-byte chunk each)
    static constexpr int PPW = 32 / PVL;    // P.V: position phases per warp
    static constexpr int NPH = WARPS * PPW; // P.V: position phases
    static constexpr int HPW = (HB + WARPS - 1) / WARPS;  // softmax: heads per warp at most
    static_assert(MAXHD == 64 || MAXHD == 128 || MAXHD == 256, "MAXHD");
    static_assert(THREADS % 32 == 0 && THREADS >= MAXHD, "threads");
    static_assert(HB == 4 || HB == MAX_REP, "heads per block");
};

__host__ __device__ __forceinline__ int hd8_of(int hd) { return (hd + 7) / 8 * 8; }

// Dynamic shared memory of a block: the K and V tile (rows of hd8 halves), the scores sc
// [MAX_REP][tile] and probabilities pr [tile][MAX_REP]; after the tiles the same bytes hold
// the warps' P.V sums [WARPS][MAX_REP][hd8] and, in the combining block, the weights
// [splits][MAX_REP] x 2.
template <class C>
__host__ __device__ __forceinline__ size_t tile_bytes(int hd, int tile) {
    if (C::TC)  // padded K and V rows, scores [MAX_REP][tile] f32, p hi and lo [MAX_REP][tile + 8] tf32
        return (size_t)tile * (hd8_of(hd) + 8) * 2 * sizeof(__half) + (size_t)MAX_REP * tile * sizeof(float) +
               (size_t)2 * MAX_REP * (tile + 8) * sizeof(float);
    return (size_t)tile * hd8_of(hd) * 2 * sizeof(__half) + (size_t)2 * MAX_REP * tile * sizeof(float);
}
template <class C>
size_t dyn_smem(int hd, int tile, int splits) {
    size_t b = tile_bytes<C>(hd, tile);
    // the warps' sums, then (CLUSTER) the block's partial output [MAX_REP][hd8]
    const size_t red = (size_t)(C::WARPS + (C::CLUSTER ? 1 : 0)) * MAX_REP * hd8_of(hd) * sizeof(float);
    const size_t comb = (size_t)2 * splits * MAX_REP * sizeof(float) + (size_t)C::THREADS * 16;  // weights, group sums
    if (red > b) b = red;
    if (comb > b) b = comb;
    return (b + 15) / 16 * 16;
}

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

// Where dim d of q sits in shared memory: chunk c = d / 8 is read by lane c % 8 of its position
// group in round c / 8, as two float4 (dims 0-3, 4-7 of the chunk); the 8 lanes of a round read
// 128 contiguous bytes per float4.
__device__ __forceinline__ int q_slot(int d) {
    const int c = d >> 3, e = d & 7;
    return ((((c >> 3) * 2 + (e >> 2)) * 8 + (c & 7)) << 2) + (e & 3);
}

// Split s of a context of kv_len positions: [s * chunk, min(kv_len, (s + 1) * chunk)).
__device__ __forceinline__ int span_chunk(int kv_len, const Params &p) {
    int chunk = (kv_len + p.splits - 1) / p.splits;
    chunk = (chunk + ALIGN - 1) / ALIGN * ALIGN;
    return chunk < p.min_chunk ? p.min_chunk : chunk;
}

// The cluster barriers of a block without a span (CLUSTER, more than one span): the two that
// the combining blocks pass (cluster_combine).
__device__ __forceinline__ void cluster_idle() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    cl.sync();
    cl.sync();
#endif
}

// CLUSTER: out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M) over the spans s < nsplit (the
// cluster's blocks of rank s), from their shared memory: cpo (the block's partial [nh][hd]) and
// ml ((max, sum) per head) at the same addresses in every block. The block of span sp takes
// the outputs sp * THREADS + tid + k * nsplit * THREADS.
template <class C>
__device__ __forceinline__ void cluster_combine(const Params &p, const float *cpo, const float *ml, int nh, int nsplit, int sp,
                                                int h0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    __shared__ float wt[16][MAX_REP], lt[MAX_REP];  // weights e^(m_s - M) per (span, head); the sums
    const int tid = threadIdx.x, hd = p.hd;
    cl.sync();  // every block's partial and (max, sum) written (release / acquire at cluster scope)
    if (tid < nsplit * nh) {
        const int s2 = tid / nh, r = tid - s2 * nh;
        const float *rml = cl.map_shared_rank(ml, (unsigned)s2);
        wt[s2][r] = rml[2 * r];
    }
    __syncthreads();
    if (tid < nh) {
        float M = -INFINITY;
        for (int s2 = 0; s2 < nsplit; s2++) M = fmaxf(M, wt[s2][tid]);
        float L = 0.0f;
        for (int s2 = 0; s2 < nsplit; s2++) {
            const float *rml = cl.map_shared_rank(ml, (unsigned)s2);
            const float w = expf(wt[s2][tid] - M);
            wt[s2][tid] = w;
            L = fmaf(rml[2 * tid + 1], w, L);
        }
        lt[tid] = L;
    }
    __syncthreads();
    for (int idx = sp * C::THREADS + tid; idx < nh * hd; idx += nsplit * C::THREADS) {
        const int r = idx / hd;
        float v[16];
#pragma unroll
        for (int s2 = 0; s2 < 16; s2++) v[s2] = s2 < nsplit ? cl.map_shared_rank(cpo, (unsigned)s2)[idx] : 0.0f;
        float acc = 0.0f;
#pragma unroll
        for (int s2 = 0; s2 < 16; s2++)
            if (s2 < nsplit) acc = fmaf(v[s2], wt[s2][r], acc);
        p.out[(size_t)h0 * hd + idx] = acc / lt[r];
    }
    cl.sync();  // no block leaves (freeing its shared memory) while another still reads it
#endif
}

// grid (blocks), THREADS threads. VEC8: head_dim % 8 == 0 (16-byte cp.async of the rows);
// otherwise 4-byte loads into rows padded with zeros. See the top of the file.
template <bool VEC8, class C>
__global__ void __launch_bounds__(C::THREADS, C::MINB) attn_long_kernel(Params p) {
    constexpr int THREADS = C::THREADS, WARPS = C::WARPS, MAXHD = C::MAXHD;
    extern __shared__ __align__(16) unsigned char dyn[];
    __shared__ __align__(16) float qs[MAX_REP][MAXHD];  // rotated q of the block's heads (q_slot order)
    __shared__ float rs[MAXHD];                         // RoPE (cos, sin) pairs at pos
    __shared__ float corr[MAX_REP], mlv[MAX_REP][2], lsum[MAX_REP];
    __shared__ int last_sh;
    __shared__ __align__(8) unsigned long long bar;  // BULK: the tile's copies
    constexpr bool BULK = C::BULK && VEC8;
    constexpr bool TC = C::TC && VEC8;
    constexpr int QHL = TC ? MAXHD + 8 : 2;  // TC: q hi / lo rows [head][dim], padded (conflict-free B loads)
    __shared__ __align__(16) __half qh[TC ? MAX_REP : 1][QHL], ql[TC ? MAX_REP : 1][QHL];
    __shared__ unsigned q_amax;  // TC: the largest |q| of the block's heads (f32 bits; non-negative floats order as integers)

    if (p.late == 0) pdl_trigger();
    probe_mark<C>(p, 1);
    if constexpr (C::PROBE)
        if (p.probe && threadIdx.x == 0) p.probe[(size_t)blockIdx.x * PROBE_SLOTS] = global_ns();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hd = p.hd, half = hd / 2, hd8 = hd8_of(hd), nch = hd8 / 8;
    const int ldr = TC ? hd8 + 8 : hd8;  // K and V row stride (halves) in shared memory
    // The position and the cached rows (< pos) were written before the previous kernel started
    // (graph order: the position copy precedes the first kernel; rows by earlier steps), so
    // they are read before waiting on it.
    const int pos = *p.pos, kv_len = pos + 1;
    const int chunk = span_chunk(kv_len, p);
    const int nsplit = (kv_len + chunk - 1) / chunk;
    const int hg = p.hg, hb = p.hb_max;
    const int per_split = p.n_kv * hg;
    // blocks: span-major (a span's blocks of every column, then the next span); CLUSTER:
    // column-major, the p.splits spans of a column being one cluster
    int sp, rem;
    if (C::CLUSTER) {
        rem = blockIdx.x / p.splits;
        sp = blockIdx.x - rem * p.splits;
        if (sp >= nsplit) {  // no span here: only the cluster barriers, unless nothing is combined
            pdl_trigger();  // waits for nothing: lets the next kernel in at once
            if (nsplit > 1) cluster_idle();
            return;
        }
    } else {
        if ((int)blockIdx.x >= per_split * nsplit) return;
        sp = blockIdx.x / per_split;
        rem = blockIdx.x - sp * per_split;
    }
    const int g = rem / hg, slot = rem - g * hg;
    const int bx = g * p.rep + slot;  // this (KV head, head slot)'s counter and record column
    const int r0 = slot * hb, nh = min(hb, p.rep - r0);  // this block's query heads: r0 .. r0 + nh - 1
    const int t0 = sp * chunk, n_span = min(chunk, kv_len - t0);
    const int tile = p.tile, n_tiles = (n_span + tile - 1) / tile;
    const bool has_cur = sp == nsplit - 1;  // the span ends at pos
    const size_t head_base = (size_t)g * p.ctx * hd;
    __half *ks = (__half *)dyn, *vs = ks + (size_t)tile * ldr;
    float *sc = (float *)(vs + (size_t)tile * ldr);  // [MAX_REP][tile]
    float *pr = sc + (size_t)MAX_REP * tile;         // [tile][MAX_REP]
    // TC: p hi / lo [MAX_REP][pst] tf32 (in place of pr); pst = tile + 8 words: the P.V's 8-byte
    // B loads (head gq, positions 2 tq, 2 tq + 1) of a half warp fall in 16 distinct bank pairs
    const int pst = tile + 8;
    float *ph = pr, *pl = ph + (size_t)MAX_REP * pst;

    // Copies tile it (positions t0 + it * tile ...) into the stage, row pos excepted (written
    // after the wait), and commits.
    auto issue = [&](int it) {
        const int tb = t0 + it * tile, cnt = min(tile, n_span - it * tile);
        if (BULK) {  // row pos comes along (stale): it is patched after the copy landed
            if (warp == 0) {
                const unsigned row_b = (unsigned)hd * 2, rows = TC ? 1u : (unsigned)p.bulk_rows;  // TC: padded rows
                if (lane == 0) mbar_expect_tx(&bar, 2u * row_b * (unsigned)cnt);
                __syncwarp();
                const int nc = (cnt + (int)rows - 1) / (int)rows;
                for (int c = lane; c < 2 * nc; c += 32) {
                    const int j = (c >> 1) * (int)rows, n = min((int)rows, cnt - j);
                    const size_t off = head_base + (size_t)(tb + j) * hd;
                    if (c & 1) bulk_g2s(vs + (size_t)j * ldr, p.vc + off, (unsigned)n * row_b, &bar);
                    else bulk_g2s(ks + (size_t)j * ldr, p.kc + off, (unsigned)n * row_b, &bar);
                }
            }
            return;
        }
        if (VEC8) {
            for (int idx = tid; idx < cnt * nch; idx += THREADS) {
                const int j = idx / nch, c = idx - j * nch, t = tb + j;
                if (t == pos) continue;
                const size_t off = head_base + (size_t)t * hd + c * 8;
                cp_async16(ks + j * ldr + c * 8, p.kc + off);
                cp_async16(vs + j * ldr + c * 8, p.vc + off);
            }
        } else {
            for (int idx = tid; idx < cnt * half; idx += THREADS) {
                const int j = idx / half, c = idx - j * half, t = tb + j;
                if (t == pos) continue;
                const size_t off = head_base + (size_t)t * hd + c * 2;
                *(unsigned *)(ks + j * hd8 + c * 2) = __ldcg((const unsigned *)(p.kc + off));
                *(unsigned *)(vs + j * hd8 + c * 2) = __ldcg((const unsigned *)(p.vc + off));
            }
        }
        cp_async_commit();
    };
    if (!VEC8)  // the pad columns: K zero (q's pad is zero too; 0 x garbage could be NaN), V zero
        for (int idx = tid; idx < tile * (hd8 - hd); idx += THREADS) {
            const int j = idx / (hd8 - hd), c = hd + idx % (hd8 - hd);
            ks[j * ldr + c] = __float2half(0.0f);
            vs[j * ldr + c] = __float2half(0.0f);
        }
    if (BULK && tid == 0) mbar_init(&bar, 1);
    if (BULK) __syncwarp();
    issue(0);
    probe_mark<C>(p, 2);
    if (tid < half) {  // the RoPE pairs at pos (a constant table), before the wait too
        rs[2 * tid] = p.rope[(size_t)pos * hd + 2 * tid];
        rs[2 * tid + 1] = p.rope[(size_t)pos * hd + 2 * tid + 1];
    }
    for (int idx = tid; idx < MAX_REP * MAXHD; idx += THREADS) (&qs[0][0])[idx] = 0.0f;  // pads and absent heads
    if (TC) {
        for (int idx = tid; idx < MAX_REP * QHL; idx += THREADS) (&qh[0][0])[idx] = (&ql[0][0])[idx] = __float2half(0.0f);
        if (tid == 0) q_amax = 0u;
    }
    pdl_wait();
    if (p.late == 1) pdl_trigger();
    probe_mark<C>(p, 3);

    // The previous kernel's outputs: q of the block's heads and, for the last span, this
    // position's k and v; all loads issued before any store. __ldcg: the q/k/v buffer is
    // rewritten every layer, so L1 copies may be stale.
    constexpr int QI = (MAX_REP * MAXHD / 2 + THREADS - 1) / THREADS;  // q pairs per thread
    const float *qg = p.qkv + (size_t)(g * p.rep + r0) * hd;
    const float *kg = p.qkv + (size_t)p.n_heads * hd + (size_t)g * hd;
    const float *vg = kg + (size_t)p.n_kv * hd;
    float qa[QI], qb[QI];
#pragma unroll
    for (int u = 0; u < QI; u++) {
        const int idx = tid + u * THREADS;
        qa[u] = qb[u] = 0.0f;
        if (idx < nh * half) {
            const int r = idx / half, i = idx - r * half;
            int i0, i1;
            rope_pair(p.style, hd, i, &i0, &i1);
            qa[u] = __ldcg(qg + r * hd + i0);
            qb[u] = __ldcg(qg + r * hd + i1);
        }
    }
    float ka = 0.0f, kb = 0.0f, va = 0.0f;
    if (has_cur) {
        if (tid < half) {
            int i0, i1;
            rope_pair(p.style, hd, tid, &i0, &i1);
            ka = __ldcg(kg + i0);
            kb = __ldcg(kg + i1);
        }
        if (tid < hd) va = __ldcg(vg + tid);
    }
    __syncthreads();  // rs complete, qs zeroed
    float q_unscale = 1.0f;  // TC: the scores' factor 2^-k undoing q's scale (exact: a power of two)
    if constexpr (TC) {
        // q rotated, then scaled by 2^k so that the block's largest |q| lands in [2^14, 2^15) (f16
        // max 65504) and split into f16 hi + lo: x - hi is exact in f32, its f16 rounding leaves
        // ~2^-22 of x, and lo stays a normal f16 down to 2^-18 of the largest |q| (unscaled, q
        // below 2^-3 had a subnormal lo: an absolute error of 2^-25 in place of ~2^-22 of q)
        float amax = 0.0f;
#pragma unroll
        for (int u = 0; u < QI; u++) {
            const int idx = tid + u * THREADS;
            if (idx < nh * half) {
                const int i = idx % half;
                const float c = rs[2 * i], s = rs[2 * i + 1];
                const float x0 = qa[u] * c - qb[u] * s, x1 = qb[u] * c + qa[u] * s;
                qa[u] = x0, qb[u] = x1;
                amax = fmaxf(amax, fmaxf(fabsf(x0), fabsf(x1)));
            }
        }
        amax = warp_max(amax);
        if (lane == 0) atomicMax(&q_amax, __float_as_uint(amax));
        __syncthreads();  // q_amax complete
        const float m = __uint_as_float(q_amax);
        int k = 0;
        if (m > 0.0f && m < INFINITY) {  // 0 or inf/NaN (the reference's result then is too): unscaled
            k = 14 - ilogbf(m);          // m 2^k in [2^14, 2^15)
            k = k > 126 ? 126 : k < -126 ? -126 : k;
        }
        const float qsc = ldexpf(1.0f, k);
        q_unscale = ldexpf(1.0f, -k);
#pragma unroll
        for (int u = 0; u < QI; u++) {
            const int idx = tid + u * THREADS;
            if (idx < nh * half) {
                const int r = idx / half, i = idx - r * half;
                int i0, i1;
                rope_pair(p.style, hd, i, &i0, &i1);
                const float x0 = qa[u] * qsc, x1 = qb[u] * qsc;
                const __half h0 = __float2half_rn(x0), h1 = __float2half_rn(x1);
                qh[r][i0] = h0, qh[r][i1] = h1;
                ql[r][i0] = __float2half_rn(x0 - __half2float(h0)), ql[r][i1] = __float2half_rn(x1 - __half2float(h1));
            }
        }
    } else {
#pragma unroll
        for (int u = 0; u < QI; u++) {
            const int idx = tid + u * THREADS;
            if (idx < nh * half) {
                const int r = idx / half, i = idx - r * half;
                int i0, i1;
                rope_pair(p.style, hd, i, &i0, &i1);
                const float c = rs[2 * i], s = rs[2 * i + 1];
                const float x0 = qa[u] * c - qb[u] * s, x1 = qb[u] * c + qa[u] * s;
                qs[r][q_slot(i0)] = x0;
                qs[r][q_slot(i1)] = x1;
            }
        }
    }
    // this position's k and v: into the tile that holds pos (the last one of the last span) and,
    // by one block per KV head, into the cache
    __half cur_k0 = __float2half(0.0f), cur_k1 = cur_k0, cur_v = cur_k0;
    int ci0 = 0, ci1 = 0;
    const int last_tb = t0 + (n_tiles - 1) * tile;  // first position of the last tile
    if (has_cur) {
        const bool writer = r0 == 0;
        __half *krow = p.kc + head_base + (size_t)pos * hd, *vrow = p.vc + head_base + (size_t)pos * hd;
        if (tid < half) {
            rope_pair(p.style, hd, tid, &ci0, &ci1);
            const float c = rs[2 * tid], s = rs[2 * tid + 1];
            cur_k0 = __float2half_rn(ka * c - kb * s);
            cur_k1 = __float2half_rn(kb * c + ka * s);
            if (writer) krow[ci0] = cur_k0, krow[ci1] = cur_k1;
        }
        if (tid < hd) {
            cur_v = __float2half_rn(va);
            if (writer) vrow[tid] = cur_v;
        }
    }

    const float scale = 1.0f / sqrtf((float)hd);
    float m_run[C::HPW], l_run[C::HPW];  // softmax state of heads warp + WARPS * i
#pragma unroll
    for (int i = 0; i < C::HPW; i++) m_run[i] = -INFINITY, l_run[i] = 0.0f;
    // P.V: lane chunk (8 dims) and position phase
    const int pv_c = lane % C::PVL, pv_ph = warp * C::PPW + lane / C::PVL;
    const bool pv_on = pv_c < nch;
    float o[C::HB][8];
#pragma unroll
    for (int r = 0; r < C::HB; r++)
#pragma unroll
        for (int e = 0; e < 8; e++) o[r][e] = 0.0f;
    // scores: 8 lanes per position (lane sl = lane % 8 takes chunks sl, sl + 8, ...), 4 positions per warp
    const int sl = lane & 7, sg = lane >> 3;
    // TC: the lane's fragment coordinates (gq, tq); P.V by warp: 16-dim tiles (mt_n of them) x
    // position groups (ng; group grp takes the k-steps grp, grp + ng, ...), hi and lo accumulators
    const int gq = lane >> 2, tq = lane & 3;
    const int mt_n = hd / 16, ng = !TC || mt_n >= WARPS ? 1 : WARPS / mt_n, grp = !TC || mt_n >= WARPS ? 0 : warp / mt_n;
    float oc[TC ? C::MTW : 1][4], ol[TC ? C::MTW : 1][4];
#pragma unroll
    for (int i = 0; i < (TC ? C::MTW : 1); i++)
#pragma unroll
        for (int e = 0; e < 4; e++) oc[i][e] = ol[i][e] = 0.0f;
    probe_mark<C>(p, 4);

    for (int it = 0; it < n_tiles; it++) {
        const int tb = t0 + it * tile, cnt = min(tile, n_span - it * tile);
        if (it > 0) {
            __syncthreads();  // the previous tile consumed (P.V read vs, pr)
            issue(it);
        }
        // the tile landed (this thread's copies; BULK: all of them), then the current row
        // patched in (BULK copied a stale one)
        if (BULK) mbar_wait(&bar, (unsigned)it & 1u);
        else cp_async_wait_all();
        if (has_cur && tb == last_tb) {  // pos is in this tile
            const int jp = pos - tb;
            if (tid < half) ks[jp * ldr + ci0] = cur_k0, ks[jp * ldr + ci1] = cur_k1;
            if (tid < hd) vs[jp * ldr + tid] = cur_v;
            if (!VEC8 && tid < hd8 - hd) vs[jp * ldr + hd + tid] = __float2half(0.0f), ks[jp * ldr + hd + tid] = __float2half(0.0f);
        }
        if (TC && (cnt & 15))  // the V rows up to the next 16 (P.V's last k-step): zero, not stale (p is 0 there)
            for (int idx = tid; idx < (16 - (cnt & 15)) * hd; idx += THREADS)
                vs[(size_t)(cnt + idx / hd) * ldr + idx % hd] = __float2half(0.0f);
        __syncthreads();  // tile landed (all threads' copies); q and the current row written
        if (it == 0) probe_mark<C>(p, 5);
        if constexpr (TC) {
            // scores on tensor cores: warp w takes 16-position tiles w, w + WARPS, ...: A = 16 K
            // rows x 16 dims (ldmatrix), B = q hi / lo (16 dims x 8 heads), C = positions x heads
            const int nmt = (cnt + 15) / 16, nks = hd / 16, mi = lane >> 3;
            for (int mt = warp; mt < nmt; mt += WARPS) {
                const int m0 = mt * 16;
                const __half *arow = ks + (size_t)(m0 + (lane & 7) + (mi & 1) * 8) * ldr + (mi >> 1) * 8;
                float ch[4] = {0.f, 0.f, 0.f, 0.f}, cl[4] = {0.f, 0.f, 0.f, 0.f};
                for (int kk = 0; kk < nks; kk++) {
                    uint32_t a[4];
                    ldsm_x4(a, arow + kk * 16);
                    const int k0 = kk * 16 + 2 * tq;
                    mma16816(ch, a, *(const uint32_t *)&qh[gq][k0], *(const uint32_t *)&qh[gq][k0 + 8]);
                    mma16816(cl, a, *(const uint32_t *)&ql[gq][k0], *(const uint32_t *)&ql[gq][k0 + 8]);
                }
                const int j0 = m0 + gq, j1 = j0 + 8, h0 = 2 * tq;
                if (h0 < nh) {
                    if (j0 < cnt) sc[h0 * tile + j0] = (ch[0] + cl[0]) * q_unscale * scale;
                    if (j1 < cnt) sc[h0 * tile + j1] = (ch[2] + cl[2]) * q_unscale * scale;
                }
                if (h0 + 1 < nh) {
                    if (j0 < cnt) sc[(h0 + 1) * tile + j0] = (ch[1] + cl[1]) * q_unscale * scale;
                    if (j1 < cnt) sc[(h0 + 1) * tile + j1] = (ch[3] + cl[3]) * q_unscale * scale;
                }
            }
        } else
        for (int j0 = warp * 4; j0 < cnt; j0 += WARPS * 4) {
            const int j = j0 + sg;
            float acc[C::HB];
#pragma unroll
            for (int r = 0; r < C::HB; r++) acc[r] = 0.0f;
            if (j < cnt) {
                const __half *kr = ks + j * hd8;
                for (int c = sl; c < nch; c += 8) {
                    const uint4 u = *(const uint4 *)(kr + c * 8);
                    const __half2 *h2 = (const __half2 *)&u;
                    const float2 f0 = __half22float2(h2[0]), f1 = __half22float2(h2[1]);
                    const float2 f2 = __half22float2(h2[2]), f3 = __half22float2(h2[3]);
                    const int qo = ((c >> 3) * 2 * 8 + sl) * 4;  // q_slot of the chunk's dim 0
#pragma unroll
                    for (int r = 0; r < C::HB; r++)
                        if (r < nh) {
                            const float4 qa4 = *(const float4 *)&qs[r][qo], qb4 = *(const float4 *)&qs[r][qo + 32];
                            float a = acc[r];
                            a = fmaf(qa4.x, f0.x, a);
                            a = fmaf(qa4.y, f0.y, a);
                            a = fmaf(qa4.z, f1.x, a);
                            a = fmaf(qa4.w, f1.y, a);
                            a = fmaf(qb4.x, f2.x, a);
                            a = fmaf(qb4.y, f2.y, a);
                            a = fmaf(qb4.z, f3.x, a);
                            a = fmaf(qb4.w, f3.y, a);
                            acc[r] = a;
                        }
                }
            }
#pragma unroll
            for (int r = 0; r < C::HB; r++)
                if (r < nh) {
                    float a = acc[r];
                    a += __shfl_xor_sync(0xffffffffu, a, 1);
                    a += __shfl_xor_sync(0xffffffffu, a, 2);
                    a += __shfl_xor_sync(0xffffffffu, a, 4);
                    if (sl == r && j < cnt) sc[r * tile + j] = a * scale;
                }
        }
        __syncthreads();
        if (it == 0) probe_mark<C>(p, 11);
        // online softmax: warp w updates heads w, w + WARPS over the tile's positions
#pragma unroll
        for (int i = 0; i < C::HPW; i++) {
            const int r = warp + WARPS * i;
            if (r < nh) {
                float mx = -INFINITY;
                for (int j = lane; j < cnt; j += 32) mx = fmaxf(mx, sc[r * tile + j]);
                mx = warp_max(mx);
                const float mn = fmaxf(m_run[i], mx);  // finite: the tile has a position
                const float cr = expf(m_run[i] - mn);  // 0 on the first tile
                float sum = 0.0f;
                for (int j = lane; j < cnt; j += 32) {
                    const float e = expf(sc[r * tile + j] - mn);
                    if (TC) {  // tf32 hi + lo: e - hi is exact in f32, its tf32 rounding leaves ~2^-22 of e
                        const float eh = to_tf32(e);
                        ph[r * pst + j] = eh;
                        pl[r * pst + j] = to_tf32(e - eh);
                    } else {
                        pr[j * MAX_REP + r] = e;
                    }
                    sum += e;
                }
                if (TC)  // up to the next 16 positions (P.V's last k-step): 0
                    for (int j = cnt + lane; j < ((cnt + 15) & ~15); j += 32) ph[r * pst + j] = pl[r * pst + j] = 0.0f;
                sum = warp_sum(sum);
                l_run[i] = l_run[i] * cr + sum;
                m_run[i] = mn;
                if (lane == 0) corr[r] = cr;
            }
        }
        __syncthreads();
        if (it == 0) probe_mark<C>(p, 12);
        // P.V: lane (chunk pv_c, phase pv_ph) over positions pv_ph + NPH k, every head of the block
        if constexpr (TC) {
            // on tensor cores: O^T (16 dims x 8 heads) += V^T (ldmatrix.trans of 16 rows) . p, as two
            // tf32 k-steps of 8 positions. The f16 fragment a[] holds dim gq (a[0], a[2]) and gq + 8
            // (a[1], a[3]) at positions 2 tq, 2 tq + 1 (a[0], a[1]) and 8 + 2 tq, 9 + 2 tq (a[2],
            // a[3]); the tf32 layout wants k = tq (a0, a1; b0) and tq + 4 (a2, a3; b1). A dot product
            // may take its k in any order applied to both A and B, so k = tq is position 2 tq and
            // k = tq + 4 position 2 tq + 1: A from a[]'s low / high halves, B the pair p[gq][2 tq, 2 tq + 1].
            const int nk = (cnt + 15) / 16, mi = lane >> 3;
            if (grp < ng)
#pragma unroll
                for (int i = 0; i < C::MTW; i++) {
                    const int mt = mt_n >= WARPS ? warp + WARPS * i : i == 0 ? warp % mt_n : mt_n;
                    if (mt < mt_n) {
                        if (it > 0) {
                            const float c0 = corr[2 * tq], c1 = corr[2 * tq + 1];
                            oc[i][0] *= c0, oc[i][1] *= c1, oc[i][2] *= c0, oc[i][3] *= c1;
                            ol[i][0] *= c0, ol[i][1] *= c1, ol[i][2] *= c0, ol[i][3] *= c1;
                        }
                        const __half *vb = vs + (size_t)((lane & 7) + (mi >> 1) * 8) * ldr + mt * 16 + (mi & 1) * 8;
                        for (int kk = grp; kk < nk; kk += ng) {
                            const int p0 = kk * 16, pj = gq * pst + p0 + 2 * tq;
                            uint32_t a[4];
                            ldsm_x4_t(a, vb + (size_t)p0 * ldr);
                            const float2 d0 = __half22float2(*(const __half2 *)&a[0]), d1 = __half22float2(*(const __half2 *)&a[1]);
                            const float2 d2 = __half22float2(*(const __half2 *)&a[2]), d3 = __half22float2(*(const __half2 *)&a[3]);
                            const uint32_t va0[4] = {__float_as_uint(d0.x), __float_as_uint(d1.x), __float_as_uint(d0.y), __float_as_uint(d1.y)};
                            const uint32_t va1[4] = {__float_as_uint(d2.x), __float_as_uint(d3.x), __float_as_uint(d2.y), __float_as_uint(d3.y)};
                            const float2 ph0 = *(const float2 *)&ph[pj], ph1 = *(const float2 *)&ph[pj + 8];
                            const float2 pl0 = *(const float2 *)&pl[pj], pl1 = *(const float2 *)&pl[pj + 8];
                            mma1688_tf32(oc[i], va0, __float_as_uint(ph0.x), __float_as_uint(ph0.y));
                            mma1688_tf32(ol[i], va0, __float_as_uint(pl0.x), __float_as_uint(pl0.y));
                            mma1688_tf32(oc[i], va1, __float_as_uint(ph1.x), __float_as_uint(ph1.y));
                            mma1688_tf32(ol[i], va1, __float_as_uint(pl1.x), __float_as_uint(pl1.y));
                        }
                    }
                }
        } else if (pv_on) {
            if (it > 0)
#pragma unroll
                for (int r = 0; r < C::HB; r++)
                    if (r < nh) {
                        const float cr = corr[r];
#pragma unroll
                        for (int e = 0; e < 8; e++) o[r][e] *= cr;
                    }
            const __half *vcol = vs + pv_c * 8;
            for (int j = pv_ph; j < cnt; j += C::NPH) {
                const uint4 u = *(const uint4 *)(vcol + j * ldr);
                const __half2 *h2 = (const __half2 *)&u;
                float v[8];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float2 f = __half22float2(h2[e]);
                    v[2 * e] = f.x, v[2 * e + 1] = f.y;
                }
                const float4 pa = *(const float4 *)&pr[j * MAX_REP];
                const float pv4[4] = {pa.x, pa.y, pa.z, pa.w};
#pragma unroll
                for (int r = 0; r < 4; r++)
                    if (r < nh)
#pragma unroll
                        for (int e = 0; e < 8; e++) o[r][e] = fmaf(pv4[r], v[e], o[r][e]);
                if constexpr (C::HB > 4) {
                    const float4 pb = *(const float4 *)&pr[j * MAX_REP + 4];
                    const float pw4[4] = {pb.x, pb.y, pb.z, pb.w};
#pragma unroll
                    for (int r = 0; r < 4; r++)
                        if (r + 4 < nh)
#pragma unroll
                            for (int e = 0; e < 8; e++) o[r + 4][e] = fmaf(pw4[r], v[e], o[r + 4][e]);
                }
            }
        }
    }
    if (p.late == 2) pdl_trigger();
    probe_mark<C>(p, 6);

    // The phases of a warp added by shuffles, the warps' sums through shared memory (the tile's
    // bytes are free after the barrier). TC: the position groups' sums.
    if (!TC)
#pragma unroll
    for (int r = 0; r < C::HB; r++)
        if (r < nh)
#pragma unroll
            for (int e = 0; e < 8; e++)
#pragma unroll
                for (int m = C::PVL; m < 32; m *= 2) o[r][e] += __shfl_xor_sync(0xffffffffu, o[r][e], m);
    if (lane == 0)
#pragma unroll
        for (int i = 0; i < C::HPW; i++) {
            const int r = warp + WARPS * i;
            if (r < nh) mlv[r][0] = m_run[i], mlv[r][1] = l_run[i];
        }
    __syncthreads();  // every warp done with the tile
    float *red = (float *)dyn;  // [WARPS][MAX_REP][hd8]
    const int nred = TC ? ng : WARPS;
    if (TC) {
        if (grp < ng)
#pragma unroll
            for (int i = 0; i < (TC ? C::MTW : 1); i++) {
                const int mt = mt_n >= WARPS ? warp + WARPS * i : i == 0 ? warp % mt_n : mt_n;
                if (mt >= mt_n) continue;
                const int d = mt * 16 + gq, hA = 2 * tq;
                float *dst = red + (size_t)grp * MAX_REP * hd8;
                if (hA < nh) dst[hA * hd8 + d] = oc[i][0] + ol[i][0], dst[hA * hd8 + d + 8] = oc[i][2] + ol[i][2];
                if (hA + 1 < nh) dst[(hA + 1) * hd8 + d] = oc[i][1] + ol[i][1], dst[(hA + 1) * hd8 + d + 8] = oc[i][3] + ol[i][3];
            }
    } else if (lane < C::PVL && pv_on)
#pragma unroll
        for (int r = 0; r < C::HB; r++)
            if (r < nh) {
                float *dst = red + ((size_t)warp * MAX_REP + r) * hd8 + pv_c * 8;
                *(float4 *)dst = make_float4(o[r][0], o[r][1], o[r][2], o[r][3]);
                *(float4 *)(dst + 4) = make_float4(o[r][4], o[r][5], o[r][6], o[r][7]);
            }
    __syncthreads();
    const int h0 = g * p.rep + r0;  // first query head of the block
    const int hd4 = (hd + 3) / 4 * 4;
    const int ncol = p.n_kv * p.rep;
    const size_t rec0 = ((size_t)bx * p.splits + sp) * p.hb_max;  // this span's first record
    float *po = p.part, *pml = p.part + (size_t)ncol * p.splits * p.hb_max * hd4;
    float *cpo = red + (size_t)WARPS * MAX_REP * hd8;  // CLUSTER: this block's partial [r][d]
    for (int idx = tid; idx < nh * hd; idx += THREADS) {
        const int r = idx / hd, d = idx - r * hd;
        float s = 0.0f;
        for (int w = 0; w < nred; w++) s += red[((size_t)w * MAX_REP + r) * hd8 + d];
        if (nsplit == 1) p.out[(size_t)(h0 + r) * hd + d] = s / mlv[r][1];
        else if (C::CLUSTER) cpo[idx] = s;
        else po[(rec0 + r) * hd4 + d] = s;
    }
    if (nsplit == 1) {
        probe_mark<C>(p, 7);
        probe_end<C>(p);
        return;
    }
    if (C::CLUSTER) {
        probe_mark<C>(p, 7);
        cluster_combine<C>(p, cpo, &mlv[0][0], nh, nsplit, sp, h0);
        probe_end<C>(p);
        return;
    }
    if (tid < nh) {
        pml[(rec0 + tid) * 2] = mlv[tid][0];
        pml[(rec0 + tid) * 2 + 1] = mlv[tid][1];
    }
    if (p.rel_ticket) {
        // the ticket as one release-acquire atomic by thread 0 between two barriers (the
        // barrier orders the block's partial stores before it, and the last block's loads
        // after it), in place of a full fence on every thread before and after
        __syncthreads();
        if (tid == 0) {
            int old;
            asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(old) : "l"(&p.count[bx]) : "memory");
            last_sh = old == nsplit - 1;
        }
        __syncthreads();
    } else {
        __threadfence();
        __syncthreads();
        if (tid == 0) last_sh = atomicAdd(&p.count[bx], 1) == nsplit - 1;
        __syncthreads();
    }
    probe_mark<C>(p, 7);
    if (!last_sh) {
        probe_end<C>(p);
        return;
    }
    if (!p.rel_ticket) __threadfence();
    // Combine: out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s, per head.
    // Each thread takes 4 consecutive outputs of a head over a group of the spans (the threads
    // left over by the (head, 4 outputs) items take the spans in G groups, added through shared
    // memory). Its first CB partial outputs are loaded together with the (max, sum) pairs: one
    // L2 round trip before the weights, not two.
    const int q4 = hd4 / 4, items = nh * q4;
    int G = THREADS / items;
    G = G < 1 ? 1 : G > nsplit ? nsplit : G;
    const int span = (nsplit + G - 1) / G;
    const size_t recb = (size_t)bx * p.splits * p.hb_max;  // span 0's first record
    const size_t step = (size_t)p.hb_max * hd4;            // next span, same head
    float4 v[CB];
    const int my = tid < G * items ? tid : -1;  // the first item of this thread (items > THREADS: more below)
    {
        const int m0 = my < 0 ? 0 : my;
        const int gi = m0 / items, it = m0 - gi * items, r = it / q4, d = (it - r * q4) * 4;
        const int sb = gi * span, se = my < 0 ? 0 : min(nsplit, sb + span);
        const float *src = po + (recb + r) * hd4 + d;
#pragma unroll
        for (int u = 0; u < CB; u++)
            v[u] = sb + u < se ? __ldcg((const float4 *)(src + (size_t)(sb + u) * step)) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    float *wm = (float *)dyn, *wl = wm + (size_t)nsplit * MAX_REP;  // [span][head]
    for (int idx = tid; idx < nsplit * nh; idx += THREADS) {
        const int s2 = idx / nh, r = idx - s2 * nh;
        const float2 ml = __ldcg((const float2 *)(pml + (recb + (size_t)s2 * p.hb_max + r) * 2));
        wm[s2 * MAX_REP + r] = ml.x;
        wl[s2 * MAX_REP + r] = ml.y;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < C::HPW; i++) {
        const int r = warp + WARPS * i;
        if (r < nh) {
            float M = -INFINITY;
            for (int s2 = lane; s2 < nsplit; s2 += 32) M = fmaxf(M, wm[s2 * MAX_REP + r]);
            M = warp_max(M);
            float L = 0.0f;
            for (int s2 = lane; s2 < nsplit; s2 += 32) {
                const float w = expf(wm[s2 * MAX_REP + r] - M);
                wm[s2 * MAX_REP + r] = w;
                L = fmaf(wl[s2 * MAX_REP + r], w, L);
            }
            L = warp_sum(L);
            if (lane == 0) lsum[r] = L;
        }
    }
    __syncthreads();
    float4 *gsum = (float4 *)(wl + (size_t)nsplit * MAX_REP);  // after the weights: 16-byte aligned (nsplit * 64 bytes)
    for (int idx = tid; idx < G * items; idx += THREADS) {
        const int gi = idx / items, it = idx - gi * items;
        const int r = it / q4, d = (it - r * q4) * 4;
        const int sb = gi * span, se = min(nsplit, sb + span);
        const float *src = po + (recb + r) * hd4 + d;
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int s0 = sb; s0 < se; s0 += CB) {
            if (idx != my || s0 != sb)  // not the batch loaded above
#pragma unroll
                for (int u = 0; u < CB; u++)
                    v[u] = s0 + u < se ? __ldcg((const float4 *)(src + (size_t)(s0 + u) * step)) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < CB; u++)
                if (s0 + u < se) {
                    const float w = wm[(s0 + u) * MAX_REP + r];
                    acc.x = fmaf(v[u].x, w, acc.x);
                    acc.y = fmaf(v[u].y, w, acc.y);
                    acc.z = fmaf(v[u].z, w, acc.z);
                    acc.w = fmaf(v[u].w, w, acc.w);
                }
        }
        if (G > 1) {
            gsum[idx] = acc;
            continue;
        }
        const float L = lsum[r];
        float *dst = p.out + (size_t)(h0 + r) * hd + d;
        const float res[4] = {acc.x / L, acc.y / L, acc.z / L, acc.w / L};
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (d + e < hd) dst[e] = res[e];
    }
    if (G > 1) {
        __syncthreads();
        for (int it = tid; it < items; it += THREADS) {
            const int r = it / q4, d = (it - r * q4) * 4;
            float4 acc = gsum[it];
            for (int gi = 1; gi < G; gi++) {
                const float4 w = gsum[gi * items + it];
                acc.x += w.x, acc.y += w.y, acc.z += w.z, acc.w += w.w;
            }
            const float L = lsum[r];
            float *dst = p.out + (size_t)(h0 + r) * hd + d;
            const float res[4] = {acc.x / L, acc.y / L, acc.z / L, acc.w / L};
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (d + e < hd) dst[e] = res[e];
        }
    }
    if (tid == 0) p.count[bx] = 0;
    probe_end<C>(p);
}

// Spans of one KV group at most for a cache of ctx positions (sizes the scratch records).
inline int max_splits(int ctx) {
    const int s = (ctx + SCRATCH_CHUNK - 1) / SCRATCH_CHUNK;
    return s < MAX_SPLITS ? s : MAX_SPLITS;
}

// Fills p's span, tile and block fields from the knobs and launches. p holds the shape, the
// pointers and late. Spans: with one block per KV head and span (n_cols blocks per span) they
// fill knobs.per_sm blocks per SM (where the occupancy at the chosen tile allows), within [1,
// max_splits(ctx)], rounded down so that they make one wave. The tile: the longest span any
// position makes (the span at ctx), rounded to ALIGN, within the shared-memory budget. The grid
// is the most blocks any position uses.
// probe (CLUSTER): only whether a cluster of the setting fits the device (KCUDA_OK) or not
// (KCUDA_ERR_SHAPE, no message), nothing launched.
template <bool VEC8, class C>
int launch(Params &p, const Knobs &k, int pdl, void *stream, bool probe = false) {
    auto kern = attn_long_kernel<VEC8, C>;
    const int rc = kcuda_prepare_func((const void *)kern);
    if (rc) return rc;
    int nsm = kcuda_sm_count();
    if (nsm <= 0) return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_attn_decode: no SM count");
    p.hg = (p.rep + MAX_REP - 1) / MAX_REP;
    p.hb_max = (p.rep + p.hg - 1) / p.hg;
    if (p.hb_max > C::HB) return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_attn_decode: %d query heads per block, the kernel holds %d", p.hb_max, C::HB);
    p.min_chunk = (k.min_chunk + ALIGN - 1) / ALIGN * ALIGN;
    p.bulk_rows = k.bulk_rows > 0 ? k.bulk_rows : 32;
    p.rel_ticket = k.rel_ticket;
    const int n_cols = p.n_kv * p.hg;
    int splits = nsm * k.per_sm / n_cols;
    const int cap = max_splits(p.ctx);
    splits = splits > cap ? cap : splits < 1 ? 1 : splits;
    if (C::CLUSTER) {  // one cluster per column: its blocks are the spans (no scratch records)
        if (k.cluster != 8 && k.cluster != 16) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_decode: cluster of %d blocks", k.cluster);
        splits = k.cluster;
    }
    p.splits = splits;
    // the longest span: at the last position
    int span = (p.ctx + splits - 1) / splits;
    span = (span + ALIGN - 1) / ALIGN * ALIGN;
    if (span < p.min_chunk) span = p.min_chunk;
    const size_t row = tile_bytes<C>(p.hd, ALIGN) / ALIGN;  // bytes per position of a tile
    int budget = (int)((size_t)k.smem / row) / ALIGN * ALIGN;
    if (budget < ALIGN) budget = ALIGN;
    p.tile = span < budget ? span : budget;
    const size_t smem = dyn_smem<C>(p.hd, p.tile, splits);
    {
        // per instantiation: the largest dynamic shared memory allowed so far, raised under a
        // lock (two backends may launch from two threads: unlocked, one thread could lower the
        // attribute below what the other recorded, and that one's next launch would fail)
        static std::mutex mu;
        static int attr_max;
        std::lock_guard<std::mutex> hold(mu);
        if ((int)smem > attr_max) {
            KCUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
            attr_max = (int)smem;
        }
    }
    const int blocks = n_cols * splits;
    if (!C::CLUSTER) return probe ? KCUDA_OK : kcuda_launch(kern, dim3((unsigned)blocks), dim3(C::THREADS), smem, stream, pdl, p);
    int dev = 0, major = 0;
    KCUDA_TRY(cudaGetDevice(&dev));
    KCUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    if (major < 9) return probe ? KCUDA_ERR_SHAPE : kcuda_fail(KCUDA_ERR_CUDA, "kcuda_attn_decode: clusters need compute capability 9.0");
    if (splits > 8) KCUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)blocks);
    cfg.blockDim = dim3(C::THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = (cudaStream_t)stream;
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)splits;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 2 : 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, kern, &cfg) != cudaSuccess) {
        cudaGetLastError();
        clusters = 0;
    }
    if (probe) return clusters >= 1 ? KCUDA_OK : KCUDA_ERR_SHAPE;
    if (clusters < 1)
        return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_attn_decode: no cluster of %d blocks with %zu bytes of shared memory fits", splits, smem);
    const cudaError_t e = cudaLaunchKernelEx(&cfg, kern, p);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_attn_decode: cluster launch (%d blocks of %d): %s", blocks, splits, cudaGetErrorString(e));
    return KCUDA_OK;
}

// The instantiation for p's shape: MAXHD by head_dim, 16-byte rows where head_dim % 8 == 0, HB 4
// where a block takes at most 4 query heads; TC where head_dim % 16 == 0.
template <int THREADS, bool CLUSTER = false, bool BULK = false, bool TC = false>
int launch_shape(Params &p, const Knobs &k, int pdl, void *stream, bool probe = false) {
    if constexpr (TC) {  // tensor cores take 16 dims a k-step
        if (p.hd % 16) return launch_shape<THREADS, CLUSTER, BULK, false>(p, k, pdl, stream, probe);
    }
    const bool vec8 = p.hd % 8 == 0;
    const int hg = (p.rep + MAX_REP - 1) / MAX_REP, hb4 = (p.rep + hg - 1) / hg <= 4;
    if (p.hd <= 64) {
        if (hb4) return vec8 ? launch<true, Cfg<64, THREADS, 4, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe) : launch<false, Cfg<64, THREADS, 4, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe);
        return vec8 ? launch<true, Cfg<64, THREADS, 8, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe) : launch<false, Cfg<64, THREADS, 8, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe);
    }
    if (p.hd <= 128) {
        if (hb4) return vec8 ? launch<true, Cfg<128, THREADS, 4, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe) : launch<false, Cfg<128, THREADS, 4, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe);
        return vec8 ? launch<true, Cfg<128, THREADS, 8, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe) : launch<false, Cfg<128, THREADS, 8, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe);
    }
    if (hb4) return vec8 ? launch<true, Cfg<256, THREADS, 4, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe) : launch<false, Cfg<256, THREADS, 4, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe);
    return vec8 ? launch<true, Cfg<256, THREADS, 8, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe) : launch<false, Cfg<256, THREADS, 8, CLUSTER, BULK, TC>>(p, k, pdl, stream, probe);
}

}  // namespace attn_long
}  // namespace
