// Decode attention over the f16 KV cache with RoPE and GQA (one token; flash-decoding style), in
// two kernels: the per-KV-group spans kernel (kcuda_attn_decode, attention_decode_long.cuh) at
// any position, and the per-query-head kernel (kcuda_attn_decode_head, attention_decode_head.cuh)
// below kcuda_attn_decode_head_until positions, where it is faster; the backend captures one
// decode graph per kernel and picks by position (infer/backend_cuda.c). The prefill kernels are
// in attention_prefill.cu (and attention_wide.cu for wide heads).
//
// The spans kernel: one block per (KV head, span of the context) loads each K/V row of its span
// once for every query head of its group (GQA 1..8 in one block; larger groups take several
// blocks per KV head), the spans balanced over the SMs, a span's rows requested before the PDL
// wait (they are final before the previous kernel starts), the scores and P.V on tensor cores
// where head_dim % 16 == 0, and the spans of a group combined by the group's last-arriving
// block. How and why: attention_decode_long.cuh. The tiled per-KV-group kernel it replaced (one
// tile of 128 positions per split, CUDA-core dot products) is the lab's
// kernels/dev/attention_decode_knobs.cuh, setting "t256x128s1ip sm2 c128 at group".
#include <stdint.h>

#include "kernels/cuda/attention_decode_long.cuh"
#include "kernels/cuda/attention_decode_head.cuh"
#include "kernels/cuda/common.cuh"

namespace {

using attn_long::MAX_HD;
using attn_long::MAX_REP;
using attn_long::max_splits;

// How the head kernel's last block of a query head combines its splits (attention_decode_head.cuh,
// attn_head::Combine): ONE_TRIP_REL, the (max, sum) pairs and partial outputs of 16 splits in one
// batch of loads and the ticket as one release-acquire atomic, instead of FENCES (three dependent
// L2 round trips and every thread's fences: the setting measured in the sweep below). On an H100
// (2026-12-06, kernels/dev/README.md, "Decode attention at every context length"): within the
// tests' bound wherever test_kernels_cuda ran the head kernel by position (GQA 1-8 and 12, up to
// its limit); `bitnet-chat -p` after a 517-token prompt (positions 517-816) 1165.2 tok/s against
// 1119.8 with FENCES in the same call. Set it back to FENCES (or ONE_TRIP, the fences kept) if a
// later measurement says so.
constexpr attn_head::Combine HEAD_COMBINE = attn_head::ONE_TRIP_REL;

// Decode takes the per-query-head kernel while its blocks (n_heads per 64 positions) fit in one
// wave of the GPU (SMs x the blocks of it an SM holds: 132 x 4 on an H100), the per-KV-group
// kernel from there. Measured (H100 80GB HBM3, 2026-12-06, `dev_attn_decode sweep`: us per layer
// in place inside 30 product decode layers, median of 3 rounds, every 64 positions to 4095;
// kernels/dev/README.md, "Decode attention by position"), 2B-4T heads (20 query heads):
//   position          64    512   1024   1344   1664 | 1728   2048   4032
//   per query head   4.83   6.97   8.64  10.71  11.36 | 13.01  14.94  24.59
//   per KV group     5.39  10.85  11.59  11.90  12.29 | 12.35  12.70  14.86
// The head kernel is faster at every position below 1728 and slower at every one from there: it
// jumps by 1.7 us between 27 and 28 splits (540 and 560 blocks), a second wave. Llama3-8B's heads
// (32/8/128, alone): faster up to 960 (17 splits x 32 = 544 blocks at 1088: 14.27 against 10.95),
// the same edge. One wave (528 blocks) puts the limit at 1664 for 2B-4T and 1024 for 8B.
int head_wave_blocks() {
    // device properties, asked once (thread-safe static initialization); 0: no head kernel
    static const int wave = [] {
        int per_sm = 0;
        const int nsm = kcuda_sm_count();
        if (nsm <= 0 || kcuda_prepare_func((const void *)attn_head::attn_head_kernel<HEAD_COMBINE>) ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attn_head::attn_head_kernel<HEAD_COMBINE>, attn_head::ATT_THREADS, 0) !=
                cudaSuccess) {
            cudaGetLastError();
            return 0;
        }
        return nsm * per_sm;
    }();
    return wave;
}

// The head kernel's scores read each half of a row in 16-byte pieces: head_dim % 16 == 0.
bool head_shape(const KcudaAttnShape *a) { return a->head_dim % 16 == 0 && a->head_dim <= attn_head::MAX_HD; }

// The spans kernel's setting (kernels/dev/README.md, "Decode attention toward its bytes";
// `dev_attn_decode long` times it against the alternatives): one block per SM (26 spans of up to
// 160 positions per KV group for 2B-4T at 4096), spans of at least 64 positions, a tile budget of
// 100 KB, 256 threads, 16-byte cp.async, tensor cores where head_dim % 16 == 0. Measured (H100
// 80GB HBM3, 2026-12-06, in place inside 30 product decode layers, us per layer at 1024 / 2048 /
// 4095, same run): 10.19 / 10.86 / 12.95 against the tiled per-KV-group kernel before it 10.79 /
// 12.33 / 14.92 and the same spans on CUDA cores 10.48 / 11.60 / 15.14; bulk copies instead of
// cp.async were slower (11.78 / 15.83 on CUDA cores at 2048 / 4095), two blocks per SM too
// (11.84 / 14.44).
//
// The spans' combine takes its ticket by one release-acquire atomic of thread 0 between two
// barriers (attention_decode_long.cuh; lab setting "T256 sm1 c64 b100 f"), not by every thread's
// fences before and after the ticket (the setting measured above): the lab copy
// (kernels/dev/attention_decode_long.cuh) keeps the fence variant, and `dev_attn_decode attn10`
// times the two against each other (kernels/dev/README.md, "Decode attention at every context
// length").
constexpr attn_long::Knobs SPANS = {1, 64, 100 * 1024};

int decode_check(const KcudaAttnShape *a, const char *fn) {
    if (!a || !a->d_rope) return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL shape or rope table", fn);
    if (a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->head_dim <= 0 || a->head_dim % 2 ||
        a->head_dim > MAX_HD || a->ctx <= 0)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: heads %d/%d, head_dim %d, ctx %d unsupported (an even head_dim up to %d, query heads a multiple of KV heads)",
                          fn, a->n_heads, a->n_kv, a->head_dim, a->ctx, (int)MAX_HD);
    return KCUDA_OK;
}

}  // namespace

extern "C" int kcuda_attn_decode_head_until(const KcudaAttnShape *a) {
    if (!a || a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->head_dim <= 0 || a->ctx <= 0 ||
        !head_shape(a))
        return 0;
    const int until = head_wave_blocks() / a->n_heads * attn_head::CHUNK;  // a whole number of chunks: NaN from there
    return a->ctx < until ? a->ctx : until;
}

// chunks of 64 positions the head kernel's grid covers
static int head_splits(const KcudaAttnShape *a) {
    return (kcuda_attn_decode_head_until(a) + attn_head::CHUNK - 1) / attn_head::CHUNK;
}

extern "C" size_t kcuda_attn_decode_scratch(const KcudaAttnShape *a) {
    if (!a || a->n_heads <= 0 || a->n_kv <= 0 || a->head_dim <= 0 || a->ctx <= 0) return 0;
    const int rep = a->n_heads / a->n_kv, hb_max = rep < MAX_REP ? rep : MAX_REP;
    const size_t hd4 = (size_t)(a->head_dim + 3) / 4 * 4;
    const size_t group = (size_t)a->n_heads * max_splits(a->ctx) * hb_max * (hd4 + 2);
    const size_t head = attn_head::scratch(a->n_heads, a->head_dim, head_splits(a));
    return group > head ? group : head;
}

static int decode_args(const KcudaAttnShape *a, const float *d_qkv, uint16_t *d_kc, uint16_t *d_vc, const int *d_pos,
                       float *d_out, float *d_part, int *d_count, int pdl, const char *fn) {
    int rc = decode_check(a, fn);
    if (rc) return rc;
    if (!d_qkv || !d_kc || !d_vc || !d_pos || !d_out || !d_part || !d_count)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL pointer", fn);
    const bool vec8 = a->head_dim % 8 == 0;
    if ((uintptr_t)d_part % 16 || (uintptr_t)d_kc % (vec8 ? 16 : 4) || (uintptr_t)d_vc % (vec8 ? 16 : 4))
        return kcuda_fail(KCUDA_ERR_ARG, "%s: misaligned cache or scratch pointer", fn);
    if (pdl < KCUDA_PDL_OFF || pdl > KCUDA_PDL_AFTER_WORK) return kcuda_fail(KCUDA_ERR_ARG, "%s: launch option %d", fn, pdl);
    return KCUDA_OK;
}

extern "C" int kcuda_attn_decode_head(const KcudaAttnShape *a, const float *d_qkv, uint16_t *d_kc, uint16_t *d_vc,
                                      const int *d_pos, float *d_out, float *d_part, int *d_count, int pdl, void *stream) {
    int rc = decode_args(a, d_qkv, d_kc, d_vc, d_pos, d_out, d_part, d_count, pdl, "kcuda_attn_decode_head");
    if (rc) return rc;
    if (!head_shape(a))
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_attn_decode_head: head_dim %d unsupported (a multiple of 16 up to %d)",
                          a->head_dim, (int)attn_head::MAX_HD);
    attn_head::AttnParams p = {};
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv;
    p.hd = a->head_dim;
    p.ctx = a->ctx;
    p.style = a->rope_style;
    p.max_splits = head_splits(a);
    p.rope = a->d_rope;
    p.qkv = d_qkv;
    p.kc = (__half *)d_kc;
    p.vc = (__half *)d_vc;
    p.pos = d_pos;
    p.out = d_out;
    p.part = d_part;
    p.count = d_count;
    // the head kernel lets its successor in at its start, after its wait, or after its softmax
    p.late = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;
    return attn_head::launch<HEAD_COMBINE>(p, pdl, (cudaStream_t)stream);
}

extern "C" int kcuda_attn_decode(const KcudaAttnShape *a, const float *d_qkv, uint16_t *d_kc,
                                 uint16_t *d_vc, const int *d_pos, float *d_out, float *d_part,
                                 int *d_count, int pdl, void *stream) {
    const int rc = decode_args(a, d_qkv, d_kc, d_vc, d_pos, d_out, d_part, d_count, pdl, "kcuda_attn_decode");
    if (rc) return rc;
    attn_long::Params p = {};
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv;
    p.rep = a->n_heads / a->n_kv;
    p.hd = a->head_dim;
    p.ctx = a->ctx;
    p.style = a->rope_style;
    p.late = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;
    p.rope = a->d_rope;
    p.qkv = d_qkv;
    p.kc = (__half *)d_kc;
    p.vc = (__half *)d_vc;
    p.pos = d_pos;
    p.out = d_out;
    p.part = d_part;
    p.count = d_count;
    return attn_long::launch_shape<256, true>(p, SPANS, pdl, stream);
}

// Shapes the tiled prefill kernels (attention_prefill.cu) support: their shared-memory tiles hold
// head_dim <= 128 in multiples of 16 and up to 8 query heads per KV head; other heads take
// attention_wide.cu. (Decode takes any even head_dim up to 256 and any grouping: decode_check.)
int kcuda_attn_check_shape(const KcudaAttnShape *a, const char *fn) {
    if (!a || !a->d_rope) return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL shape or rope table", fn);
    if (a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->n_heads / a->n_kv > MAX_REP ||
        a->head_dim <= 0 || a->head_dim > 128 || a->head_dim % 16 || a->ctx <= 0)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: heads %d/%d, head_dim %d, ctx %d unsupported (head_dim a multiple of 16 up to 128, at most 8 query heads per KV head)", fn, a->n_heads, a->n_kv, a->head_dim, a->ctx);
    return KCUDA_OK;
}
