/* An independent, plain, one-token-at-a-time BitNet b1.58 forward pass built only from the
 * scalar _ref kernels (no SIMD, no threads, no batching): the oracle the CPU backend's fast
 * batched forward is compared with (tests/unit/test_forward_cpu.c). It follows bitnet.md 1.2 step
 * by step (with the family switches of ModelConfig: SiLU or relu^2, sub-norms or none); the KV cache is f32, or rounded through f16 when kv_f16 is set, as the backend's
 * default cache is. */
#include "forward_ref.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kernels_cpu.h"

struct RefForward {
    const Model *m;
    int ctx, kv_f16, q_dim, kv_dim;
    float *x, *xn, *q, *k, *v, *att, *g, *u, *scores, *rope, *kc, *vc;
    int8_t *q8;
};

static CpuDenseType dt(FloatType t) {
    return t == FT_F16 ? CPU_DENSE_F16 : t == FT_BF16 ? CPU_DENSE_BF16 : CPU_DENSE_F32;
}

RefForward *ref_forward_create(const Model *m, int ctx, int kv_f16) {
    const ModelConfig *c = &m->cfg;
    RefForward *r = calloc(1, sizeof *r);
    r->m = m;
    r->ctx = ctx;
    r->kv_f16 = kv_f16;
    r->q_dim = c->n_heads * c->head_dim;
    r->kv_dim = c->n_kv_heads * c->head_dim;
    int big = c->dim > r->q_dim ? c->dim : r->q_dim;
    if (c->ffn_dim > big) big = c->ffn_dim;
    r->x = calloc((size_t)c->dim, 4);
    r->xn = calloc((size_t)big, 4);
    r->q8 = calloc((size_t)i2s_round_up_k(big), 1);
    r->q = calloc((size_t)r->q_dim, 4);
    r->k = calloc((size_t)r->kv_dim, 4);
    r->v = calloc((size_t)r->kv_dim, 4);
    r->att = calloc((size_t)r->q_dim, 4);
    r->g = calloc((size_t)c->ffn_dim, 4);
    r->u = calloc((size_t)c->ffn_dim, 4);
    r->scores = calloc((size_t)ctx, 4);
    r->rope = calloc((size_t)ctx * c->head_dim, 4);
    r->kc = calloc((size_t)c->n_layers * ctx * r->kv_dim, 4);
    r->vc = calloc((size_t)c->n_layers * ctx * r->kv_dim, 4);
    rope_table_init(r->rope, ctx, c->head_dim, c->rope_theta);
    return r;
}

void ref_forward_free(RefForward *r) {
    if (!r) return;
    free(r->x), free(r->xn), free(r->q8), free(r->q), free(r->k), free(r->v), free(r->att);
    free(r->g), free(r->u), free(r->scores), free(r->rope), free(r->kc), free(r->vc);
    free(r);
}

/* y = W x for a ternary matrix: norm already applied to x; int8 quant, exact dot, rescale. */
static void bitlinear(RefForward *r, const TernaryMatrix *w, const float *x, float *y, int acc) {
    const float s = quant_act_ref(x, w->n_in, w->n_in_pad, r->q8);
    w2a8_linear_ref(w->codes, w->n_out, w->n_in_pad, w->scale, r->q8, &s, 1, y, w->n_out, acc);
}

void ref_forward_step(RefForward *r, int token, int pos, float *logits) {
    const Model *m = r->m;
    const ModelConfig *c = &m->cfg;
    const int hd = c->head_dim, style = c->rope_style == ROPE_ADJACENT;
    dense_row_to_f32_ref(dt(m->tok_embd.type), m->tok_embd.data, c->dim, token, r->x);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m->layers[l];
        rmsnorm_ref(r->x, L->attn_norm, c->dim, c->norm_eps, r->xn);
        bitlinear(r, &L->wq, r->xn, r->q, 0);
        bitlinear(r, &L->wk, r->xn, r->k, 0);
        bitlinear(r, &L->wv, r->xn, r->v, 0);
        rope_apply_ref(r->q, c->n_heads, hd, r->rope + (size_t)pos * hd, style);
        rope_apply_ref(r->k, c->n_kv_heads, hd, r->rope + (size_t)pos * hd, style);
        float *kl = r->kc + (size_t)l * r->ctx * r->kv_dim, *vl = r->vc + (size_t)l * r->ctx * r->kv_dim;
        for (int i = 0; i < r->kv_dim; i++) {
            float kv = r->k[i], vv = r->v[i];
            if (r->kv_f16) kv = f16_to_f32_ref(f32_to_f16_ref(kv)), vv = f16_to_f32_ref(f32_to_f16_ref(vv));
            kl[(size_t)pos * r->kv_dim + i] = kv;
            vl[(size_t)pos * r->kv_dim + i] = vv;
        }
        for (int h = 0; h < c->n_heads; h++) {
            const int kvh = h / (c->n_heads / c->n_kv_heads);
            attention_head_ref(r->q + (size_t)h * hd, kl + (size_t)kvh * hd, vl + (size_t)kvh * hd, 0,
                               (size_t)r->kv_dim, pos + 1, hd, r->scores, r->att + (size_t)h * hd);
        }
        if (c->sub_norms) rmsnorm_ref(r->att, L->attn_sub_norm, r->q_dim, c->norm_eps, r->xn);
        else memcpy(r->xn, r->att, (size_t)r->q_dim * sizeof(float));
        bitlinear(r, &L->wo, r->xn, r->x, 1);
        rmsnorm_ref(r->x, L->ffn_norm, c->dim, c->norm_eps, r->xn);
        bitlinear(r, &L->w_gate, r->xn, r->g, 0);
        bitlinear(r, &L->w_up, r->xn, r->u, 0);
        if (c->ffn_act == FFN_SILU) silu_mul_ref(r->g, r->u, c->ffn_dim, r->g);
        else relu2_mul_ref(r->g, r->u, c->ffn_dim, r->g);
        if (c->sub_norms) rmsnorm_ref(r->g, L->ffn_sub_norm, c->ffn_dim, c->norm_eps, r->xn);
        else memcpy(r->xn, r->g, (size_t)c->ffn_dim * sizeof(float));
        bitlinear(r, &L->w_down, r->xn, r->x, 1);
    }
    rmsnorm_ref(r->x, m->output_norm, c->dim, c->norm_eps, r->xn);
    dense_gemm_ref(dt(m->output.type), m->output.data, c->vocab_size, c->dim, r->xn, 1, logits,
                   c->vocab_size);
}
