/* Synthetic models with random weights (model_init_random) and the BitNet-b1.58-2B-4T config:
 * for benchmarks at the real shapes and for tests that need no model file. Weights are
 * deterministic for a seed. Ternary codes are uniform over {-1, 0, +1}; gamma is chosen so a
 * linear roughly keeps the scale of its input (1 / sqrt(2/3 * n_in)); the embedding is an f16
 * matrix of mean 0, variance 1 (triangular, near enough to N(0, 1)); norm weights are 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/model.h"
#include "infer/model_storage.h"
#include "kernels/cpu/kernels_cpu.h"
#include "kernels/w2a8.h"

/* A Llama 3 vocabulary model (BitNet-b1.58-2B-4T's tokens, RoPE and norms) of the given
 * shapes: the configs below differ only in these. */
static ModelConfig config_llama3_vocab(const char *name, int n_layers, int dim, int n_heads,
                                       int n_kv_heads, int head_dim, int ffn_dim, int ctx_len) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "bitnet-b1.58");
    snprintf(c.name, sizeof c.name, "%s", name);
    c.n_layers = n_layers;
    c.dim = dim;
    c.n_heads = n_heads;
    c.n_kv_heads = n_kv_heads;
    c.head_dim = head_dim;
    c.ffn_dim = ffn_dim;
    c.vocab_size = 128256;
    c.ctx_len = ctx_len;
    c.rope_theta = 500000.0f;
    c.norm_eps = 1e-5f;
    c.rope_style = ROPE_HALF;
    c.bos_id = 128000;
    c.n_stop = 2;
    c.stop_ids[0] = 128009; /* <|eot_id|> */
    c.stop_ids[1] = 128001; /* <|end_of_text|> */
    c.ffn_act = FFN_RELU2;
    c.sub_norms = 1;
    c.tied = 1;
    c.chat_format = CHAT_BITNET;
    return c;
}

ModelConfig model_config_bitnet_2b(void) {
    return config_llama3_vocab("BitNet-b1.58-2B-4T shapes", 30, 2560, 20, 5, 128, 6912, 4096);
}

ModelConfig model_config_llama3_8b(void) {
    ModelConfig c = config_llama3_vocab("Llama3-8B-1.58 shapes", 32, 4096, 32, 8, 128, 14336, 8192);
    c.ffn_act = FFN_SILU;
    c.sub_norms = 0;
    c.tied = 0;
    c.chat_format = CHAT_LLAMA3;
    snprintf(c.arch, sizeof c.arch, "llama");
    return c;
}

ModelConfig model_config_tiny(void) {
    return config_llama3_vocab("tiny-random", 2, 64, 4, 2, 16, 128, 1024);
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Bytes holding four codes from {0,1,2} (never 3): the 81 valid I2_S bytes. */
static void valid_bytes(uint8_t tab[81]) {
    int n = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 3; c++)
                for (int d = 0; d < 3; d++) tab[n++] = (uint8_t)(a << 6 | b << 4 | c << 2 | d);
}

static int init_ternary(Model *m, TernaryMatrix *t, int n_out, int n_in, uint64_t *rng,
                        Err *err) {
    static uint8_t tab[81];
    if (!tab[80]) valid_bytes(tab);
    t->n_out = n_out;
    t->n_in = n_in;
    t->n_in_pad = i2s_round_up_k(n_in);
    const size_t rb = i2s_row_bytes(t->n_in_pad);
    uint8_t *codes = model_storage_alloc(m, rb * (size_t)n_out, err);
    if (!codes) return -1;
    const size_t n_bytes = rb * (size_t)n_out;
    for (size_t i = 0; i < n_bytes; i += 8) {
        uint64_t r = rng_next(rng);
        for (size_t j = i; j < i + 8 && j < n_bytes; j++, r >>= 8)
            codes[j] = tab[((r & 0xff) * 81) >> 8];
    }
    if (n_in != t->n_in_pad) /* the padding columns must be zero weights */
        for (int r = 0; r < n_out; r++)
            for (int j = n_in; j < t->n_in_pad; j++) i2s_set(codes + rb * (size_t)r, j, 0);
    t->codes = codes;
    t->scale = 1.0f / sqrtf(2.0f / 3.0f * (float)n_in);
    return 0;
}

static float *ones(Model *m, int n, Err *err) {
    float *p = model_storage_alloc(m, (size_t)n * sizeof(float), err);
    if (p)
        for (int i = 0; i < n; i++) p[i] = 1.0f;
    return p;
}

/* An f16 [rows][cols] matrix of mean 0, variance 1 (the embedding, and an untied lm_head). */
static int random_f16(Model *m, DenseMatrix *d, int rows, int cols, uint64_t *rng, Err *err) {
    const size_t n_emb = (size_t)rows * cols;
    uint16_t *emb = model_storage_alloc(m, n_emb * sizeof(uint16_t), err);
    if (!emb) return -1;
    enum { CH = 4096 };
    float tmp[CH];
    for (size_t i = 0; i < n_emb; i += CH) {
        const size_t n = n_emb - i < CH ? n_emb - i : CH;
        for (size_t j = 0; j < n; j += 2) {
            const uint64_t r = rng_next(rng);
            /* two values per draw, each a sum of two 16-bit uniforms (triangular: mean 1,
             * variance 2/12), rescaled to mean 0, variance 1 */
            const float u0 = (float)(r & 0xffff) + (float)((r >> 16) & 0xffff);
            const float u1 = (float)((r >> 32) & 0xffff) + (float)(r >> 48);
            tmp[j] = (u0 / 65536.0f - 1.0f) * 2.4494897f;
            if (j + 1 < n) tmp[j + 1] = (u1 / 65536.0f - 1.0f) * 2.4494897f;
        }
        f32_to_f16_row(tmp, emb + i, (int)n);
    }
    *d = (DenseMatrix){FT_F16, rows, cols, emb};
    return 0;
}

int model_init_random(Model *m, const ModelConfig *cfg, uint64_t seed, Err *err) {
    memset(m, 0, sizeof *m);
    const ModelConfig *c = cfg;
    if (c->n_layers <= 0 || c->dim <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->head_dim <= 0 || c->head_dim % 2 || c->ffn_dim <= 0 || c->vocab_size <= 0 ||
        c->n_heads % c->n_kv_heads || c->ctx_len <= 0 || c->n_layers > 4096 ||
        c->dim > (1 << 20) || c->ffn_dim > (1 << 22) || c->vocab_size > (1 << 24) ||
        (size_t)c->n_heads * c->head_dim > (1u << 22))
        return err_set(err, "model_init_random: invalid config (layers %d dim %d heads %d/%d "
                            "head_dim %d ffn %d vocab %d ctx %d)",
                       c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_dim,
                       c->vocab_size, c->ctx_len);
    m->cfg = *c;
    snprintf(m->format, sizeof m->format, "random");
    snprintf(m->path, sizeof m->path, "random:%llu", (unsigned long long)seed);
    if (!m->cfg.name[0]) snprintf(m->cfg.name, sizeof m->cfg.name, "random");
    uint64_t rng = seed * 0x2545f4914f6cdd1dull + 1;

    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return err_set(err, "model_init_random: out of memory");
    const int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *L = &m->layers[l];
        if (!(L->attn_norm = ones(m, c->dim, err)) || !(L->ffn_norm = ones(m, c->dim, err)) ||
            (c->sub_norms && (!(L->attn_sub_norm = ones(m, q_dim, err)) ||
                              !(L->ffn_sub_norm = ones(m, c->ffn_dim, err)))) ||
            init_ternary(m, &L->wq, q_dim, c->dim, &rng, err) ||
            init_ternary(m, &L->wk, kv_dim, c->dim, &rng, err) ||
            init_ternary(m, &L->wv, kv_dim, c->dim, &rng, err) ||
            init_ternary(m, &L->wo, c->dim, q_dim, &rng, err) ||
            init_ternary(m, &L->w_gate, c->ffn_dim, c->dim, &rng, err) ||
            init_ternary(m, &L->w_up, c->ffn_dim, c->dim, &rng, err) ||
            init_ternary(m, &L->w_down, c->dim, c->ffn_dim, &rng, err))
            goto fail;
    }
    if (!(m->output_norm = ones(m, c->dim, err))) goto fail;

    if (random_f16(m, &m->tok_embd, c->vocab_size, c->dim, &rng, err)) goto fail;
    m->output = m->tok_embd;
    if (!c->tied && random_f16(m, &m->output, c->vocab_size, c->dim, &rng, err)) goto fail;
    return 0;
fail:
    err_prefix(err, "model_init_random");
    model_free(m);
    return -1;
}

