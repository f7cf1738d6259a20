/* The CUDA backend's decode across the fused QKV + attention kernel's limit
 * (kcuda_qkv_attn_decode_until: below it the decode graph runs the projection and the attention
 * as one kernel, from it the separate kernels), on random models of several attention shapes
 * (GQA 1 to 8, head_dim 16 to 128, both RoPE styles) against the scalar reference forward pass
 * (tests/helpers/forward_ref.c): every step's logits, the device's greedy pick, and steps back
 * below the limit after it (a rewound history). Also: a shape the fused kernel does not take
 * has no limit, and its launcher refuses it with a message. Skips (77) without a CUDA device.
 *
 * Tolerance: logits within 2e-2 of max|logit| (test_backend_cuda.c says why not exact). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "forward_ref.h"
#include "infer/infer.h"
#include "kernels/cpu/kernels_cpu.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/w2a8.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(float a) { return ((float)(rnd() % 200001) / 100000.0f - 1.0f) * a; }

static void rand_ternary(TernaryMatrix *t, int n_out, int n_in, float gamma) {
    t->n_out = n_out;
    t->n_in = n_in;
    t->n_in_pad = i2s_round_up_k(n_in);
    int8_t *v = malloc((size_t)n_out * n_in);
    for (size_t i = 0; i < (size_t)n_out * n_in; i++) v[i] = (int8_t)((int)(rnd() % 3) - 1);
    uint8_t *c = malloc((size_t)n_out * t->n_in_pad / 4);
    i2s_pack(v, n_out, n_in, t->n_in_pad, c);
    free(v);
    t->codes = c;
    t->scale = gamma;
}

static float *rand_norm(int n) {
    float *w = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) w[i] = 1.0f + frand(0.2f);
    return w;
}

/* The 2B-4T block (relu^2, sub-norms, tied embedding), dim = n_heads * hd, two layers. */
static void make_model(Model *m, int n_heads, int n_kv, int hd, RopeStyle style, int ctx) {
    memset(m, 0, sizeof *m);
    ModelConfig *c = &m->cfg;
    strcpy(c->arch, "bitnet-b1.58");
    const int dim = n_heads * hd, kv_dim = n_kv * hd, ffn = 320;
    c->n_layers = 2, c->dim = dim, c->n_heads = n_heads, c->n_kv_heads = n_kv, c->head_dim = hd;
    c->ffn_dim = ffn, c->vocab_size = 300, c->ctx_len = ctx;
    c->rope_theta = 10000.0f, c->norm_eps = 1e-5f, c->rope_style = style, c->bos_id = -1;
    c->ffn_act = FFN_RELU2, c->sub_norms = 1, c->tied = 1;
    m->layers = calloc((size_t)c->n_layers, sizeof(LayerWeights));
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *w = &m->layers[l];
        w->attn_norm = rand_norm(dim), w->attn_sub_norm = rand_norm(dim);
        w->ffn_norm = rand_norm(dim), w->ffn_sub_norm = rand_norm(ffn);
        rand_ternary(&w->wq, dim, dim, 0.11f);
        rand_ternary(&w->wk, kv_dim, dim, 0.13f);
        rand_ternary(&w->wv, kv_dim, dim, 0.07f);
        rand_ternary(&w->wo, dim, dim, 0.05f);
        rand_ternary(&w->w_gate, ffn, dim, 0.09f);
        rand_ternary(&w->w_up, ffn, dim, 0.08f);
        rand_ternary(&w->w_down, dim, ffn, 0.04f);
    }
    uint16_t *e = malloc(sizeof(uint16_t) * c->vocab_size * dim);
    for (int i = 0; i < c->vocab_size * dim; i++) e[i] = f32_to_f16_ref(frand(1.0f));
    m->tok_embd = (DenseMatrix){FT_F16, c->vocab_size, dim, e};
    m->output = m->tok_embd;
    m->output_norm = rand_norm(dim);
}

static void free_model(Model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        LayerWeights *w = &m->layers[l];
        free((void *)w->attn_norm), free((void *)w->attn_sub_norm), free((void *)w->ffn_norm), free((void *)w->ffn_sub_norm);
        TernaryMatrix *t[7] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
        for (int i = 0; i < 7; i++) free((void *)t[i]->codes);
    }
    free(m->layers);
    free((void *)m->tok_embd.data);
    free((void *)m->output_norm);
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static double rel_err(const float *a, const float *ref, int n) {
    double mx = 0, mr = 0;
    for (int i = 0; i < n; i++) {
        mx = fmax(mx, fabs((double)a[i] - ref[i]));
        mr = fmax(mr, fabs((double)ref[i]));
    }
    return mx / (mr > 0 ? mr : 1);
}

/* The fused kernel's limit for a model's shapes (the QKV matrix as the backend uploads it). */
static int fused_until(const Model *m, int ctx) {
    const ModelConfig *c = &m->cfg;
    KcudaAttnShape as = {c->n_heads, c->n_kv_heads, c->head_dim, ctx, c->rope_style == ROPE_ADJACENT, NULL};
    KcudaTernary q = {0};
    q.n_out = (c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
    q.k_pad = i2s_round_up_k(c->dim);
    return kcuda_qkv_attn_decode_until(&q, &as);
}

/* Prefill to 6 below the limit, 12 decode steps across it, 4 back below it. */
static void across(int n_heads, int n_kv, int hd, RopeStyle style) {
    Model m;
    make_model(&m, n_heads, n_kv, hd, style, 4096);
    const int V = m.cfg.vocab_size, until = fused_until(&m, 4096);
    CHECK_MSG(until > 6, "shape %d/%d hd %d: no fused kernel (limit %d)", n_heads, n_kv, hd, until);
    if (until <= 6) {
        free_model(&m);
        return;
    }
    const int ctx = until + 32;
    Err err = {{0}};
    InferOptions o = {.backend = BACKEND_CUDA, .threads = 0, .ctx = ctx, .lm_head_int8 = 0};
    void *b = backend_cuda_ops.create(&m, &o, &err);
    if (!b) fprintf(stderr, "create: %s\n", err.msg);
    REQUIRE(b != NULL);
    RefForward *h = ref_forward_create(&m, ctx, 1);
    float *ref = malloc(sizeof(float) * V);
    const int P0 = until - 6;
    int32_t *toks = malloc(sizeof(int32_t) * P0);
    for (int i = 0; i < P0; i++) toks[i] = (int32_t)(rnd() % V);
    CHECK_EQ_INT(backend_cuda_ops.eval(b, toks, P0, 0, NULL, &err), 0);
    for (int t = 0; t < P0; t++) ref_forward_step(h, toks[t], t, ref);
    double we = 0;
    int below = 0, above = 0, same = 0;
    for (int s = 0; s < 16; s++) {
        const int pos = s < 12 ? P0 + s : P0 + 1 + (s - 12);
        const int32_t tok = (int32_t)(rnd() % V);
        CHECK_EQ_INT(backend_cuda_ops.eval(b, &tok, 1, pos, NULL, &err), 0);
        ref_forward_step(h, tok, pos, ref);
        const float *lg = backend_cuda_ops.logits(b);
        REQUIRE(lg != NULL);
        we = fmax(we, rel_err(lg, ref, V));
        int32_t g;
        CHECK_EQ_INT(backend_cuda_ops.sample(b, NULL, &g, &err), 1);
        CHECK_EQ_INT(g, argmax(lg, V));
        same += g == argmax(ref, V);
        below += pos < until, above += pos >= until;
    }
    printf("%d/%d heads of %d, rope %s: limit %d, 16 steps (%d below, %d at or past), max error / max|logit| = %.3g, "
           "greedy as the host's at %d\n",
           n_heads, n_kv, hd, style == ROPE_ADJACENT ? "adjacent" : "half", until, below, above, we, same);
    CHECK(below > 0 && above > 0);
    CHECK_MSG(we < 2e-2, "shape %d/%d hd %d: error %.3g", n_heads, n_kv, hd, we);
    free(toks), free(ref);
    ref_forward_free(h);
    backend_cuda_ops.destroy(b);
    free_model(&m);
}

int main(void) {
    if (kcuda_device_count() <= 0) SKIP("no CUDA device");
    across(4, 2, 64, ROPE_HALF);
    across(8, 1, 128, ROPE_ADJACENT); /* 8 query heads a KV head */
    across(4, 4, 32, ROPE_HALF);      /* no grouping */
    across(16, 2, 16, ROPE_ADJACENT);
    across(6, 3, 96, ROPE_HALF);

    /* head_dim 80 (not a multiple of 16): no limit, and the launcher says why */
    Model m;
    make_model(&m, 4, 2, 80, ROPE_HALF, 256);
    CHECK_EQ_INT(fused_until(&m, 256), 0);
    KcudaAttnShape as = {4, 2, 80, 256, 0, (const float *)&as};
    static _Alignas(16) uint8_t codes[16];
    KcudaTernary q = {0};
    q.d_codes = codes; /* never read: the shape is refused first */
    q.n_out = 8 * 80;
    q.k_pad = 384;
    float f[4];
    uint16_t kv[8];
    int pos = 0, cnt = 0;
    const int rc = kcuda_qkv_attn_decode(&q, f, 320, NULL, 1e-5f, &as, f, kv, kv, &pos, f, &cnt, KCUDA_PDL_OFF, NULL);
    CHECK(rc != KCUDA_OK);
    CHECK(strstr(kcuda_last_error(), "head_dim") != NULL);
    free_model(&m);
    return check_report("test_fused_decode_cuda");
}
