// Prefill attention over the f16 KV cache (kernels in attention_prefill.cuh): K roped and K/V
// written to the cache for T tokens, then causal attention with GQA on tensor cores (mma.sync
// m16n8k16 f16 -> f32, flash-attention style, q roped as it is loaded), the keys of each query
// tile split over a cluster of blocks where the grid alone would leave the SMs waiting on long
// chains of key tiles.
#include "kernels/cuda/attention_prefill.cuh"

namespace {
int cc_major_now() {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
        return 0;
    return v;
}

template <int HD>
int attn4_run(const KcudaAttnShape *a, const float *d_qkv, int ld_qkv, int T, int pos0, const uint16_t *d_kc,
              const uint16_t *d_vc, float *d_out, int pdl, void *stream) {
    // once per kernel (thread-safe static initialization), after the carveout and the
    // shared-memory attribute are set (attn4_launch with S = 1 sets both; the occupancy
    // depends on them)
    static const int per_sm = [] {
        const size_t smem = (size_t)2 * 2 * CHUNK * (HD + 8) * sizeof(__half);
        int n = 0;
        if (cudaFuncSetAttribute(attn_prefill_kernel4<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) !=
                cudaSuccess ||
            kcuda_prepare_func((const void *)attn_prefill_kernel4<HD>) ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_prefill_kernel4<HD>, ATT_THREADS, smem) != cudaSuccess)
            return 0;
        return n;
    }();
    static const int cc_major = cc_major_now();
    const int n_rep = a->n_heads / a->n_kv, hpb = n_rep % 4 == 0 ? 4 : n_rep % 2 == 0 ? 2 : 1;
    const int S = attn4_pick_splits(T, pos0, 16 * (4 / hpb), a->n_heads / hpb, per_sm, kcuda_sm_count(), cc_major);
    return attn4_launch<HD>(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, d_out, S, pdl, stream);
}
}  // namespace

extern "C" int kcuda_attn_prefill(const KcudaAttnShape *a, float *d_qkv, int ld_qkv, int T,
                                  int pos0, uint16_t *d_kc, uint16_t *d_vc, float *d_out,
                                  int pdl, void *stream) {
    int rc = kcuda_attn_check_shape(a, "kcuda_attn_prefill");
    if (rc) return rc;
    if (!d_qkv || !d_kc || !d_vc || !d_out) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_prefill: NULL pointer");
    if (T <= 0 || pos0 < 0 || pos0 + T > a->ctx || ld_qkv < (a->n_heads + 2 * a->n_kv) * a->head_dim)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_attn_prefill: T %d at %d beyond ctx %d (or ld %d)", T, pos0, a->ctx, ld_qkv);
    // float4 loads of qkv rows and of the rope table, half2 stores into the cache
    if (ld_qkv % 4 || (uintptr_t)d_qkv % 16 || (uintptr_t)a->d_rope % 16 || (uintptr_t)d_kc % 16 || (uintptr_t)d_vc % 16 ||
        (uintptr_t)d_out % 8)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_attn_prefill: ld %d not a multiple of 4, or a pointer not 16-byte aligned", ld_qkv);
    rc = kv_prefill_launch(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, pdl, stream);
    if (rc) return rc;
    // tiles by head_dim: 96 (and 80) would waste a third (a fifth) of the mma on zeros in 128
    if (a->head_dim <= 64) return attn4_run<64>(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, d_out, pdl, stream);
    if (a->head_dim <= 96) return attn4_run<96>(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, d_out, pdl, stream);
    return attn4_run<128>(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, d_out, pdl, stream);
}
