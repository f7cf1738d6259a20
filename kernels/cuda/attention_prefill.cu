// Prefill attention over the f16 KV cache (kernels in attention_prefill.cuh): RoPE + cache write
// for T tokens, then causal attention with GQA on tensor cores (mma.sync m16n8k16 f16 -> f32,
// flash-attention style), with one or two key splits by T.
#include "kernels/cuda/attention_prefill.cuh"

// The key split by T: two splits (lab version 3) from 192 tokens on, else one (version 2).
// Measured on the H100 (lab, 2026-11-23, RoPE kernel included): T = 512 one split 29.5 us,
// two 26.6 us; T = 64 one split 11.2 us, two 12.5 us (short chains: the merge and 8-warp blocks
// cost more than they save).
enum { ATTN_SPLIT_MIN_T = 192 };

extern "C" int kcuda_attn_prefill(const KcudaAttnShape *a, float *d_qkv, int ld_qkv, int T,
                                  int pos0, uint16_t *d_kc, uint16_t *d_vc, float *d_out,
                                  int pdl, void *stream) {
    int rc = kcuda_attn_check_shape(a, "kcuda_attn_prefill");
    if (rc) return rc;
    if (!d_qkv || !d_kc || !d_vc || !d_out) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_prefill: NULL pointer");
    if (T <= 0 || pos0 < 0 || pos0 + T > a->ctx || ld_qkv < (a->n_heads + 2 * a->n_kv) * a->head_dim)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_attn_prefill: T %d at %d beyond ctx %d (or ld %d)", T, pos0, a->ctx, ld_qkv);
    rc = kcuda_launch(rope_kv_prefill_kernel, dim3((unsigned)T), dim3(256), 0, stream, pdl, d_qkv,
                      ld_qkv, a->n_heads, a->n_kv, a->head_dim, a->ctx, a->rope_style, a->d_rope,
                      pos0, (__half *)d_kc, (__half *)d_vc);
    if (rc) return rc;
    const bool split = T >= ATTN_SPLIT_MIN_T;
    if (a->head_dim <= 64)
        return split ? attn2_launch<64, 2>(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, d_out, pdl, stream)
                     : attn2_launch<64, 1>(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, d_out, pdl, stream);
    return split ? attn2_launch<128, 2>(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, d_out, pdl, stream)
                 : attn2_launch<128, 1>(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, d_out, pdl, stream);
}
