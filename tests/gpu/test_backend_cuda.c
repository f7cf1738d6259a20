/* The CUDA backend against the scalar reference forward pass (tests/helpers/forward_ref.c: the
 * _ref kernels, f16 KV cache like the backend's), on a small random model with ragged sizes
 * (ffn 320 -> k_pad 384, vocab 500): prefill logits (all positions), decode logits per step,
 * greedy continuations, and the error paths. Skips (77) without a CUDA device.
 *
 * Tolerance: logits within 2e-2 of max|logit|. Why not exact: the norms' sums of squares are
 * added in another order on the GPU, so an activation landing on a rounding boundary of the
 * int8 quantization may move by one step; everything else agrees to fp32 rounding. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "forward_ref.h"
#include "infer/infer.h"
#include "kernels/cpu/kernels_cpu.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/w2a8.h"

static uint64_t rng = 0x13198A2E03707344ull;
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

static void make_model(Model *m) {
    memset(m, 0, sizeof *m);
    ModelConfig *c = &m->cfg;
    strcpy(c->arch, "bitnet-b1.58");
    c->n_layers = 2, c->dim = 256, c->n_heads = 4, c->n_kv_heads = 2, c->head_dim = 64;
    c->ffn_dim = 320, c->vocab_size = 500, c->ctx_len = 128;
    c->rope_theta = 10000.0f, c->norm_eps = 1e-5f, c->rope_style = ROPE_HALF, c->bos_id = -1;
    c->ffn_act = FFN_RELU2, c->sub_norms = 1, c->tied = 1; /* the 2B-4T block (model.h) */
    m->layers = calloc((size_t)c->n_layers, sizeof(LayerWeights));
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *w = &m->layers[l];
        w->attn_norm = rand_norm(c->dim), w->attn_sub_norm = rand_norm(c->dim);
        w->ffn_norm = rand_norm(c->dim), w->ffn_sub_norm = rand_norm(c->ffn_dim);
        rand_ternary(&w->wq, 256, 256, 0.11f);
        rand_ternary(&w->wk, 128, 256, 0.13f);
        rand_ternary(&w->wv, 128, 256, 0.07f);
        rand_ternary(&w->wo, 256, 256, 0.05f);
        rand_ternary(&w->w_gate, 320, 256, 0.09f);
        rand_ternary(&w->w_up, 320, 256, 0.08f);
        rand_ternary(&w->w_down, 256, 320, 0.04f);
    }
    uint16_t *e = malloc(sizeof(uint16_t) * c->vocab_size * c->dim);
    for (int i = 0; i < c->vocab_size * c->dim; i++) e[i] = f32_to_f16_ref(frand(1.0f));
    m->tok_embd = (DenseMatrix){FT_F16, c->vocab_size, c->dim, e};
    m->output = m->tok_embd;
    m->output_norm = rand_norm(c->dim);
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

int main(void) {
    if (kcuda_device_count() <= 0) SKIP("no CUDA device");
    Model m;
    make_model(&m);
    const int V = m.cfg.vocab_size, P = 20, G = 24;
    InferOptions opt = {.backend = BACKEND_CUDA, .threads = 0, .ctx = 0, .lm_head_int8 = 0};
    Err err = {{0}};
    void *b = backend_cuda_ops.create(&m, &opt, &err);
    if (!b) fprintf(stderr, "create: %s\n", err.msg);
    REQUIRE(b != NULL);
    char desc[256];
    backend_cuda_ops.describe(b, desc, sizeof desc);
    printf("%s\n", desc);

    const int ctx = m.cfg.ctx_len;
    RefForward *hr = ref_forward_create(&m, ctx, 1);
    int32_t toks[128];
    for (int i = 0; i < P; i++) toks[i] = (int32_t)(rnd() % V);
    float *all = malloc(sizeof(float) * V * P), *ref = malloc(sizeof(float) * V);
    CHECK_EQ_INT(backend_cuda_ops.eval(b, toks, P, 0, all, &err), 0);
    double worst = 0;
    for (int t = 0; t < P; t++) {
        ref_forward_step(hr, toks[t], t, ref);
        worst = fmax(worst, rel_err(all + (size_t)t * V, ref, V));
    }
    printf("prefill logits: max error / max|logit| = %.3g over %d positions\n", worst, P);
    CHECK(worst < 2e-2);
    const float *lg = backend_cuda_ops.logits(b);
    REQUIRE(lg != NULL);
    CHECK(rel_err(lg, all + (size_t)(P - 1) * V, V) == 0.0);

    /* greedy continuation: GPU picks on the device, host picks from its own logits */
    int32_t gtok, htok = argmax(ref, V);
    CHECK_EQ_INT(backend_cuda_ops.sample(b, NULL, &gtok, &err), 1);
    CHECK_EQ_INT(gtok, argmax(all + (size_t)(P - 1) * V, V));
    int same = gtok == htok, diverged_at = -1;
    double worst_dec = 0;
    int32_t cur = gtok;
    for (int s = 0; s < G && P + s < ctx; s++) {
        const int pos = P + s;
        CHECK_EQ_INT(backend_cuda_ops.eval(b, &cur, 1, pos, NULL, &err), 0);
        ref_forward_step(hr, cur, pos, ref);
        lg = backend_cuda_ops.logits(b);
        REQUIRE(lg != NULL);
        worst_dec = fmax(worst_dec, rel_err(lg, ref, V));
        CHECK_EQ_INT(backend_cuda_ops.sample(b, NULL, &gtok, &err), 1);
        CHECK_EQ_INT(gtok, argmax(lg, V)); /* device argmax == argmax of the device logits */
        htok = argmax(ref, V);
        if (gtok != htok && diverged_at < 0) {
            diverged_at = s;
            printf("greedy diverged at step %d: gpu %d (host logit %g), host %d (%g)\n", s, gtok, ref[gtok], htok, ref[htok]);
        }
        same &= gtok == htok;
        cur = gtok; /* both continue from the GPU's token, so logits stay comparable */
    }
    printf("decode logits: max error / max|logit| = %.3g over %d steps; greedy tokens %s\n", worst_dec, G,
           same ? "identical" : "differ");
    CHECK(worst_dec < 2e-2);
    CHECK(same);

    /* errors: beyond the context, bad token id */
    CHECK(backend_cuda_ops.eval(b, toks, 4, ctx - 2, NULL, &err) != 0);
    CHECK(strstr(err.msg, "beyond the context") != NULL);
    int32_t bad = V + 5;
    CHECK(backend_cuda_ops.eval(b, &bad, 1, 0, NULL, &err) != 0);
    CHECK(strstr(err.msg, "out of range") != NULL);
    backend_cuda_ops.destroy(b);

    /* a long prompt: prefill in two chunks (512 + 88) against 600 host steps */
    {
        InferOptions lo = {.backend = BACKEND_CUDA, .threads = 0, .ctx = 700, .lm_head_int8 = 0};
        void *b2 = backend_cuda_ops.create(&m, &lo, &err);
        REQUIRE(b2 != NULL);
        RefForward *h2 = ref_forward_create(&m, 700, 1);
        int32_t *lt = malloc(sizeof(int32_t) * 600);
        for (int i = 0; i < 600; i++) lt[i] = (int32_t)(rnd() % V);
        CHECK_EQ_INT(backend_cuda_ops.eval(b2, lt, 600, 0, NULL, &err), 0);
        for (int t = 0; t < 600; t++) ref_forward_step(h2, lt[t], t, ref);
        lg = backend_cuda_ops.logits(b2);
        REQUIRE(lg != NULL);
        const double e2 = rel_err(lg, ref, V);
        printf("600-token prefill (2 chunks): last logits max error / max|logit| = %.3g\n", e2);
        CHECK(e2 < 2e-2);
        free(lt);
        ref_forward_free(h2);
        backend_cuda_ops.destroy(b2);
    }

    /* decode across the attention kernels' boundary (the backend's two decode graphs, chosen by
     * position: kcuda_attn_decode_head_until), then back below it (a rewound history): every
     * step's logits against the host's, and the device's greedy pick against its own logits */
    {
        const int lctx = 2048;
        InferOptions lo = {.backend = BACKEND_CUDA, .threads = 0, .ctx = lctx, .lm_head_int8 = 0};
        void *b3 = backend_cuda_ops.create(&m, &lo, &err);
        REQUIRE(b3 != NULL);
        KcudaAttnShape as = {m.cfg.n_heads, m.cfg.n_kv_heads, m.cfg.head_dim, lctx, 0, NULL};
        const int until = kcuda_attn_decode_head_until(&as);
        CHECK(until > 16 && until < lctx - 16); /* the test model's heads have both kernels */
        if (until > 16 && until < lctx - 16) {
            RefForward *h3 = ref_forward_create(&m, lctx, 1);
            const int P0 = until - 8;
            int32_t *lt = malloc(sizeof(int32_t) * P0);
            for (int i = 0; i < P0; i++) lt[i] = (int32_t)(rnd() % V);
            CHECK_EQ_INT(backend_cuda_ops.eval(b3, lt, P0, 0, NULL, &err), 0);
            for (int t = 0; t < P0; t++) ref_forward_step(h3, lt[t], t, ref);
            double we = 0;
            int steps = 0, below = 0, above = 0;
            /* positions P0 .. until + 7, then P0 + 2 .. P0 + 5 again (below the boundary) */
            for (int s = 0; s < 20; s++) {
                const int pos = s < 16 ? P0 + s : P0 + 2 + (s - 16);
                const int32_t tok = (int32_t)(rnd() % V);
                CHECK_EQ_INT(backend_cuda_ops.eval(b3, &tok, 1, pos, NULL, &err), 0);
                ref_forward_step(h3, tok, pos, ref);
                lg = backend_cuda_ops.logits(b3);
                REQUIRE(lg != NULL);
                we = fmax(we, rel_err(lg, ref, V));
                int32_t g;
                CHECK_EQ_INT(backend_cuda_ops.sample(b3, NULL, &g, &err), 1);
                CHECK_EQ_INT(g, argmax(lg, V));
                steps++, below += pos < until, above += pos >= until;
            }
            printf("decode across the attention kernels' boundary (%d): %d steps (%d below, %d at or past), max error / max|logit| = %.3g\n",
                   until, steps, below, above, we);
            CHECK(below > 0 && above > 0);
            CHECK(we < 2e-2);
            free(lt);
            ref_forward_free(h3);
        }
        backend_cuda_ops.destroy(b3);
    }

    /* a shape the kernels cannot do (an odd head_dim: RoPE pairs) gives a message, not a crash */
    m.cfg.head_dim = 63;
    b = backend_cuda_ops.create(&m, &opt, &err);
    CHECK(b == NULL);
    CHECK(strstr(err.msg, "head_dim") != NULL);
    m.cfg.head_dim = 64;

    free(all), free(ref);
    ref_forward_free(hr);
    free_model(&m);
    return check_report("test_backend_cuda");
}
