// Decode attention over the f16 KV cache with RoPE and GQA (one token; flash-decoding style), in
// two kernels: the per-KV-group kernel (kcuda_attn_decode, attention_decode.cuh) at any position,
// and the per-query-head kernel (kcuda_attn_decode_head, attention_decode_head.cuh) below
// kcuda_attn_decode_head_until positions, where it is faster; the backend captures one decode
// graph per kernel and picks by position (infer/backend_cuda.c). The prefill kernels are in
// attention_prefill.cu (and attention_wide.cu for wide heads).
//
// The per-KV-group kernel: one block per (KV head, split of the context): the block loads each K/V row
// of its split once and computes every query head of that KV group from it (GQA 1..8 in one
// block; larger groups take several blocks per KV head). Why: the previous kernel ran one block
// per (query head, chunk of 64), so every row was loaded n_rep times (4 for the 2B model) and the
// grid was mostly tiny blocks; measured on an H100, decode at context 2756 ran at 665 tok/s
// against 859 at context 515, ~1.1 TB/s on the unique KV bytes.
//
// The grid is fixed per launch (the graph is captured once; the position lives in device
// memory): about the blocks that fit on the GPU at once (2 per SM here; the occupancy query
// says), with a number of splits chosen so that one block per KV head and split fills them.
// Each block derives its work from the position: its split (at least one tile, rounded up to
// whole tiles, longer at long context) and its query heads (the whole group; more than 8 per KV
// head take several blocks). Blocks past the work leave at once.
//
// A block streams its span in tiles (128 positions in one shared-memory stage for head_dim <=
// 128; 32 in two stages above) filled by 16-byte cp.async, the first stages issued before the
// PDL wait: the rows < pos are final before the previous kernel starts (earlier steps wrote
// them), so the KV traffic overlaps the QKV projection. Per tile: scores of all the group's
// heads (f32, q rotated in shared memory, two FMA chains per dot product), an online softmax in
// f32 (running max and sum per head), and P.V accumulated in registers. A block that holds the current
// position computes its k (RoPE) and v after the wait, patches them into its tile and (the first
// block of the group) writes them to the cache. With more than one split, each block writes
// (max, sum, o) per head and the last block of the group to arrive combines them (no second
// launch: a launch plus its PDL wait costs ~1 us per layer, more than the combine at these sizes).
// The device code and its knobs are in attention_decode.cuh; the lab (kernels/dev/
// attn_decode_lab.cu) times every other setting of them.
#include <stdint.h>

#include <type_traits>

#include "kernels/cuda/attention_decode.cuh"
#include "kernels/cuda/attention_decode_head.cuh"
#include "kernels/cuda/common.cuh"

namespace {

using namespace attn_decode;

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

// The product's configuration (H100 80GB HBM3, 2026-12-06, dev_attn_decode: us per layer inside
// 30 product decode layers less the same layers without attention, at positions 96 / 544 / 2080
// / 4064; kernels/dev/README.md, "Decode attention lab"), for head_dim <= 128:
//   256 threads, one tile of 128 positions per split (1 stage), two FMA chains in the scores,
//   the combine over all threads, 2 blocks per SM, splits of >= 128 positions in whole tiles, no
//   head spreading: 5.39 / 10.60 / 12.45 / 14.65;
//   the same with tiles of 64 in 2 stages and splits of >= 64: 7.92 / 8.69 / 13.13 / 17.34
//   (bench: 965.0 / 931.1 / 831.8 / 744.6 tok/s at context 64 / 512 / 2048 / 4032);
//   the setting before (128 threads, tiles of 64, one FMA chain, splits rounded to 16, heads
//   spread at short context): 8.93 / 11.18 / 14.87 / 22.98; version 3 (block per query head and
//   64 positions): 4.96 / 6.73 / 15.06 / 24.42.
// Why (measured): at 4064 one tile of 128 per split is 2.7 us faster than two tiles of 64 (one
// pass of a tile's dependent steps: wait, barrier, scores, barrier, softmax, barrier, P.V,
// barrier); below 128 positions one split needs no combine (5.4 us at 96 against 7.9); at 544
// splits of 64 are faster (8.7 against 10.6), the one position where this setting loses (a
// kernel would need both tile shapes to pick by position). 256 threads give 16 warps per SM for
// the latency-bound loop (128: 8); spreading a group's heads over several blocks made more,
// slower blocks. Past 52 x 128 positions a split takes several tiles, loaded one after the
// other (one stage).
// head_dim > 128 (not timed): tiles of 32 in 2 stages (shared memory), splits of >= 64.
template <int MAXHD>
struct Product {
    using Cfg128 = Cfg<MAXHD, 256, 128, 1, true>;
    using Cfg32 = Cfg<MAXHD, 256, 32, 2, false>;
};
template <int MAXHD>
using ProductCfg = typename std::conditional<(MAXHD > 128), typename Product<MAXHD>::Cfg32, typename Product<MAXHD>::Cfg128>::type;
template <int MAXHD>
constexpr Knobs product_knobs() {
    return MAXHD > 128 ? Knobs{2, 64} : Knobs{2, 128};
}

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
    const bool vec8 = a->head_dim % 8 == 0;
    DecodeParams p = {};
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv;
    p.rep = a->n_heads / a->n_kv;
    p.hd = a->head_dim;
    p.ctx = a->ctx;
    p.style = a->rope_style;
    p.splits = max_splits(a->ctx);
    p.late = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;
    p.rope = a->d_rope;
    p.qkv = d_qkv;
    p.kc = (__half *)d_kc;
    p.vc = (__half *)d_vc;
    p.pos = d_pos;
    p.out = d_out;
    p.part = d_part;
    p.count = d_count;
    if (a->head_dim <= 64)
        return vec8 ? launch<64, true, ProductCfg<64>>(p, product_knobs<64>(), pdl, stream)
                : launch<64, false, ProductCfg<64>>(p, product_knobs<64>(), pdl, stream);
    if (a->head_dim <= 128)
        return vec8 ? launch<128, true, ProductCfg<128>>(p, product_knobs<128>(), pdl, stream)
                : launch<128, false, ProductCfg<128>>(p, product_knobs<128>(), pdl, stream);
    return vec8 ? launch<256, true, ProductCfg<256>>(p, product_knobs<256>(), pdl, stream)
                : launch<256, false, ProductCfg<256>>(p, product_knobs<256>(), pdl, stream);
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
