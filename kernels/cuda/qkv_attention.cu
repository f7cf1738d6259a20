// The decode QKV projection with the short-context attention fused behind it
// (kcuda_qkv_attn_decode; the kernel and why: qkv_attention.cuh).
#include "kernels/cuda/qkv_attention.cuh"

namespace {

// Positions below which the backend takes the fused kernel: one block computes a KV group's
// attention after the projection, so its cost grows with the position while the separate
// attention kernel spreads the context over the GPU. Chosen from the lab (kernels/dev/fuse_lab.cu,
// kernels/dev/README.md "QKV + attention in one kernel").
constexpr int FUSE_UNTIL = 128;
// The group's blocks prefetch its cached rows into L2 before their PDL wait (lab: "fusedHN" is
// the kernel without).
constexpr int FUSE_PREFETCH = 1;
// The attention per query head (each head's last block runs that head: rep blocks a group work
// at once) rather than per KV group (one block runs the group's heads) (lab: fusedH, fusedG).
constexpr int FUSE_PER_HEAD = 1;

int fuse_shape_ok(const KcudaTernary *w, const KcudaAttnShape *a) {
    if (!w || !a || a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->ctx <= 0) return 0;
    const int hd = a->head_dim, rep = a->n_heads / a->n_kv;
    if (hd <= 0 || hd % 16 || hd > qkv_attn::MAX_HD || rep > qkv_attn::MAX_REP) return 0;
    if (w->glu || w->n_out != (a->n_heads + 2 * a->n_kv) * hd || w->k_pad <= 0 || w->k_pad % 128) return 0;
    // a lane's chunks of a row in registers (kernel 3 with MAXC <= 8): K <= 4096
    return (w->k_pad / 64 + qkv_attn::LPR - 1) / qkv_attn::LPR <= 8;
}

}  // namespace

extern "C" int kcuda_qkv_attn_decode_until(const KcudaTernary *w, const KcudaAttnShape *a) {
    if (!fuse_shape_ok(w, a)) return 0;
    return a->ctx < FUSE_UNTIL ? a->ctx : FUSE_UNTIL;
}

extern "C" int kcuda_qkv_attn_decode(const KcudaTernary *w, const float *d_x, int k_in, const float *d_norm_w,
                                     float eps, const KcudaAttnShape *a, float *d_qkv, uint16_t *d_kc, uint16_t *d_vc,
                                     const int *d_pos, float *d_out, int *d_count, int pdl, void *stream) {
    const char *fn = "kcuda_qkv_attn_decode";
    int rc = kcuda_check_ternary(w, KCUDA_EP_F32, fn);
    if (rc) return rc;
    rc = kcuda_attn_check_shape(a, fn);
    if (rc) return rc;
    if (!a->d_rope || !d_x || !d_qkv || !d_kc || !d_vc || !d_pos || !d_out || !d_count)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL pointer", fn);
    if (!fuse_shape_ok(w, a))
        return kcuda_fail(KCUDA_ERR_SHAPE,
                          "%s: heads %d/%d, head_dim %d, QKV %dx%d unsupported (head_dim a multiple of 16 up to %d, "
                          "up to %d query heads per KV head, K up to 4096, rows = (heads + 2 KV heads) x head_dim)",
                          fn, a->n_heads, a->n_kv, a->head_dim, w->n_out, w->k_pad, (int)qkv_attn::MAX_HD,
                          (int)qkv_attn::MAX_REP);
    if (k_in <= 0 || k_in > w->k_pad)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: input length %d does not fit k_pad %d", fn, k_in, w->k_pad);
    if ((uintptr_t)d_kc % 16 || (uintptr_t)d_vc % 16)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: cache not 16-byte aligned", fn);
    if (pdl < KCUDA_PDL_OFF || pdl > KCUDA_PDL_AFTER_WORK) return kcuda_fail(KCUDA_ERR_ARG, "%s: launch option %d", fn, pdl);
    qkv_attn::Params p = qkv_attn::make_params(w, d_x, k_in, d_norm_w, eps, a, d_qkv, d_kc, d_vc, d_pos, d_out, d_count, pdl);
    p.prefetch = FUSE_PREFETCH;
    p.per_head = FUSE_PER_HEAD;
    return qkv_attn::launch(p, pdl, (cudaStream_t)stream);
}
