// Decode attention over the f16 KV cache with RoPE and GQA (one token; flash-decoding style).
// The prefill kernels are in attention_prefill.cu (and attention_wide.cu for wide heads).
//
// At long context, one block per (KV head, split of the context): the block loads each K/V row
// of its split once and computes every query head of that KV group from it (GQA 1..8 in one
// block; larger groups take several blocks per KV head). Why: the previous kernel ran one block
// per (query head, chunk of 64), so every row was loaded n_rep times (4 for the 2B model) and the
// grid was mostly tiny blocks; measured on an H100, decode at context 2756 ran at 665 tok/s
// against 859 at context 515, ~1.1 TB/s on the unique KV bytes.
//
// The grid is fixed per launch (the graph is captured once; the position lives in device
// memory): about the blocks that fit on the GPU at once (2 per SM here; the occupancy query
// says), with a number of splits chosen so that one block per KV head and split fills them.
// Each block derives its work from the position: its split (at least 64 positions, rounded up
// to whole tiles, longer at long context) and its query heads (the whole group; more than 8 per
// KV head take several blocks). Blocks past the work leave at once.
//
// A block streams its span in tiles of 64 positions (32 for head_dim > 128) through two
// shared-memory stages filled by 16-byte cp.async, the first two issued before the PDL wait:
// the rows < pos are final before the previous kernel starts (earlier steps wrote them), so the
// KV traffic overlaps the QKV projection. Per tile: scores of all the group's heads (f32, q
// rotated in shared memory, two FMA chains per dot product), an online softmax in f32 (running
// max and sum per head), and P.V accumulated in registers. A block that holds the current
// position computes its k (RoPE) and v after the wait, patches them into its tile and (the first
// block of the group) writes them to the cache. With more than one split, each block writes
// (max, sum, o) per head and the last block of the group to arrive combines them (no second
// launch: a launch plus its PDL wait costs ~1 us per layer, more than the combine at these sizes).
// The device code and its knobs are in attention_decode.cuh; the lab (kernels/dev/
// attn_decode_lab.cu) times every other setting of them.
#include <stdint.h>

#include "kernels/cuda/attention_decode.cuh"
#include "kernels/cuda/common.cuh"

namespace {

using namespace attn_decode;

// The product's configuration, the fastest of 349 in the lab at every context (H100 80GB HBM3,
// 2026-12-06, dev_attn_decode: us per layer inside 30 product decode layers, less the same
// layers without attention, at positions 96 / 544 / 2080 / 4064; kernels/dev/README.md):
//   256 threads, tile 64, 2 stages, two FMA chains, 2 blocks per SM, splits >= 64 positions in
//   whole tiles, no head spreading: 7.60 / 8.76 / 13.14 / 17.13;
//   the previous setting (128 threads, one FMA chain, splits rounded to 16, heads spread at
//   short context): 8.85 / 10.90 / 14.78 / 22.87; version 3 (block per query head and 64
//   positions): 4.71 / 6.72 / 15.19 / 24.59.
// Why: with 128 threads at 2 blocks per SM, 8 warps per SM run the latency-bound tile loop (256:
// 16); whole tiles end no span with a part-tile (at 4064: 32 splits of 128 instead of 52 of 80,
// also fewer records to combine); spreading a group's heads over several blocks at short
// context made more, slower blocks (one head of four per block leaves 3/4 of the score threads
// idle) and cost 0.2-1.5 us. Tile 32 (half the shared memory) was slower at every context (more
// tiles in a row), 3 or 4 stages at 1 block per SM slower past 2048, combine batches of 32 no
// gain. For head_dim > 128 the tile is 32 (shared memory), the rest the same (not timed there).
template <int MAXHD>
using ProductCfg = Cfg<MAXHD, 256, (MAXHD > 128 ? 32 : 64), 2, true>;
constexpr Knobs PRODUCT_KNOBS = {2, 64, true, false};

int decode_check(const KcudaAttnShape *a, const char *fn) {
    if (!a || !a->d_rope) return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL shape or rope table", fn);
    if (a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->head_dim <= 0 || a->head_dim % 2 ||
        a->head_dim > MAX_HD || a->ctx <= 0)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: heads %d/%d, head_dim %d, ctx %d unsupported (an even head_dim up to %d, query heads a multiple of KV heads)",
                          fn, a->n_heads, a->n_kv, a->head_dim, a->ctx, (int)MAX_HD);
    return KCUDA_OK;
}

}  // namespace

extern "C" size_t kcuda_attn_decode_scratch(const KcudaAttnShape *a) {
    if (!a || a->n_heads <= 0 || a->n_kv <= 0 || a->head_dim <= 0 || a->ctx <= 0) return 0;
    const int rep = a->n_heads / a->n_kv, hb_max = rep < MAX_REP ? rep : MAX_REP;
    const size_t hd4 = (size_t)(a->head_dim + 3) / 4 * 4;
    return (size_t)a->n_heads * max_splits(a->ctx) * hb_max * (hd4 + 2);
}

extern "C" int kcuda_attn_decode(const KcudaAttnShape *a, const float *d_qkv, uint16_t *d_kc,
                                 uint16_t *d_vc, const int *d_pos, float *d_out, float *d_part,
                                 int *d_count, int pdl, void *stream) {
    int rc = decode_check(a, "kcuda_attn_decode");
    if (rc) return rc;
    if (!d_qkv || !d_kc || !d_vc || !d_pos || !d_out || !d_part || !d_count)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_decode: NULL pointer");
    const bool vec8 = a->head_dim % 8 == 0;
    if ((uintptr_t)d_part % 16 || (uintptr_t)d_kc % (vec8 ? 16 : 4) || (uintptr_t)d_vc % (vec8 ? 16 : 4))
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_decode: misaligned cache or scratch pointer");
    if (pdl < KCUDA_PDL_OFF || pdl > KCUDA_PDL_AFTER_WORK)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_decode: launch option %d", pdl);
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
        return vec8 ? launch<64, true, ProductCfg<64>>(p, PRODUCT_KNOBS, pdl, stream)
                : launch<64, false, ProductCfg<64>>(p, PRODUCT_KNOBS, pdl, stream);
    if (a->head_dim <= 128)
        return vec8 ? launch<128, true, ProductCfg<128>>(p, PRODUCT_KNOBS, pdl, stream)
                : launch<128, false, ProductCfg<128>>(p, PRODUCT_KNOBS, pdl, stream);
    return vec8 ? launch<256, true, ProductCfg<256>>(p, PRODUCT_KNOBS, pdl, stream)
                : launch<256, false, ProductCfg<256>>(p, PRODUCT_KNOBS, pdl, stream);
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
