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
// Each block derives its work from the position: the split length (at least 64 positions,
// longer at long context), and how many blocks per KV head and split work: up to one per query
// head where the splits are few, one (the whole group) where they fill the GPU. So a short
// context makes few splits (little to combine) and keeps the SMs busy over the query heads, and
// a long one makes ~2 blocks per SM that each stream their rows once.
//
// A block streams its span in tiles of 64 positions (32 for head_dim > 128) through two
// shared-memory stages filled by 16-byte cp.async, the first two issued before the PDL wait:
// the rows < pos are final before the previous kernel starts (earlier steps wrote them), so the
// KV traffic overlaps the QKV projection. Per tile: scores of all the group's heads (f32, q
// rotated in shared memory), an online softmax in f32 (running max and sum per head), and
// P.V accumulated in registers. A block that holds the current position computes its k (RoPE)
// and v after the wait, patches them into its tile and (the first block of the group) writes
// them to the cache. With more than one split, each block writes (max, sum, o) per head and the
// last block of the group to arrive combines them (no second launch: a launch plus its PDL wait
// costs ~1 us per layer, more than the combine at these sizes).
#include <stdint.h>

#include "kernels/cuda/attention_decode.cuh"
#include "kernels/cuda/common.cuh"

namespace {

using namespace attn_decode;

// The product's configuration (kernels/dev/README.md, "Decode attention"): 128 threads, tiles of
// 64 positions (32 for head_dim > 128), two blocks per SM, splits of >= 64 positions rounded to
// 16, query heads spread at short context.
template <int MAXHD>
using ProductCfg = Cfg<MAXHD, 128, (MAXHD > 128 ? 32 : 64)>;
constexpr Knobs PRODUCT_KNOBS = {2, 64, false, true};

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
