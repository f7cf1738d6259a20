/* Writes a model file with random ternary weights at a published shape, for measuring what a
 * user gets (`bitnet-chat -p --model FILE`) on shapes whose real weights are too large to carry
 * (the device machine has no network). Not a test:
 *   ./build/tests/make_bench_model TOKENIZER OUT.gguf [SHAPE] [seed]
 *   ./build/tests/make_bench_model --list
 * SHAPE is one of the table below (default 2b). TOKENIZER is a tokenizer.json, tokenizer.model,
 * GGUF or HF folder with at most the shape's vocabulary size of tokens: the Llama 3 one for the
 * BPE families (../shared/tokenizer/llama3/tokenizer.json holds 128256, which Falcon3's 131072
 * holds too; the extra rows are never produced from text), a SentencePiece tokenizer.model for
 * 1bitLLM's (GGUF tells its SiLU BitNet from 2B-4T by that vocabulary), and any small BPE
 * tokenizer for Falcon-E's 32768 (e.g. tests/data/families/chatml/tokenizer.json). Speed does
 * not depend on the weight values; replies are noise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/gguf_write.h"
#include "infer/model.h"

/* The families' shapes (research/model-family.md, from the published config.json files).
 * Falcon-E publishes no config: its rows are estimates that match the published I2_S GGUF's
 * tensor census (24 layers, untied) and file size (0.63 GB / 1 GB), marked "est." */
typedef struct {
    const char *name, *what;
    int layers, dim, heads, kv, head_dim, ffn, vocab, ctx;
    float theta, eps;
    FfnAct act;
    int sub_norms, tied;
} Shape;

static const Shape SHAPES[] = {
    {"falcon3-1b", "Falcon3-1B-1.58bit", 18, 2048, 8, 4, 256, 8192, 131072, 8192, 1000042.0f, 1e-6f, FFN_SILU, 0, 0},
    {"falcon3-3b", "Falcon3-3B-1.58bit", 22, 3072, 12, 4, 256, 9216, 131072, 8192, 1000042.0f, 1e-6f, FFN_SILU, 0, 0},
    {"falcon3-7b", "Falcon3-7B-1.58bit", 28, 3072, 12, 4, 256, 23040, 131072, 8192, 1000042.0f, 1e-6f, FFN_SILU, 0, 0},
    {"falcon3-10b", "Falcon3-10B-1.58bit", 40, 3072, 12, 4, 256, 23040, 131072, 8192, 1000042.0f, 1e-6f, FFN_SILU, 0, 0},
    {"falcon-e-1b", "Falcon-E-1B (est.)", 24, 2048, 16, 2, 128, 8192, 32768, 2048, 1e6f, 1e-5f, FFN_SILU, 0, 0},
    {"falcon-e-3b", "Falcon-E-3B (est.)", 22, 3072, 24, 2, 128, 9216, 32768, 2048, 1e6f, 1e-5f, FFN_SILU, 0, 0},
    {"1bitllm-large", "1bitLLM bitnet_b1_58-large", 24, 1536, 16, 16, 96, 4096, 32002, 2048, 10000.0f, 1e-5f, FFN_SILU, 1, 1},
    {"1bitllm-3b", "1bitLLM bitnet_b1_58-3B", 26, 3200, 32, 32, 100, 8640, 32002, 2048, 10000.0f, 1e-5f, FFN_SILU, 1, 1},
};

static ModelConfig shape_config(const Shape *s) {
    ModelConfig c = model_config_llama3_8b(); /* the Llama-style defaults; every shape field set below */
    snprintf(c.name, sizeof c.name, "%s shapes", s->what);
    c.n_layers = s->layers;
    c.dim = s->dim;
    c.n_heads = s->heads;
    c.n_kv_heads = s->kv;
    c.head_dim = s->head_dim;
    c.ffn_dim = s->ffn;
    c.vocab_size = s->vocab;
    c.ctx_len = s->ctx;
    c.rope_theta = s->theta;
    c.norm_eps = s->eps;
    c.ffn_act = s->act;
    c.sub_norms = s->sub_norms;
    c.tied = s->tied;
    c.bos_id = -1;
    c.n_stop = 0;
    c.chat_format = CHAT_PLAIN;
    return c;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--list")) {
        printf("2b\nllama3-8b\n");
        for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) printf("%s\n", SHAPES[i].name);
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: make_bench_model TOKENIZER OUT.gguf [SHAPE] [seed]  (--list: the shapes)\n");
        return 2;
    }
    const char *shape = argc > 3 ? argv[3] : "2b";
    const unsigned long long seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    ModelConfig cfg;
    int found = 1;
    if (!strcmp(shape, "2b")) cfg = model_config_bitnet_2b();
    else if (!strcmp(shape, "llama3-8b")) cfg = model_config_llama3_8b();
    else {
        found = 0;
        for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
            if (!strcmp(shape, SHAPES[i].name)) cfg = shape_config(&SHAPES[i]), found = 1;
    }
    if (!found) {
        fprintf(stderr, "make_bench_model: unknown shape \"%s\" (--list shows them)\n", shape);
        return 2;
    }
    Err err = {{0}};
    Model m;
    if (model_init_random(&m, &cfg, seed, &err)) {
        fprintf(stderr, "make_bench_model: %s\n", err.msg);
        return 1;
    }
    m.tok = model_load_tokenizer(argv[1], &err);
    if (!m.tok) {
        fprintf(stderr, "make_bench_model: %s\n", err.msg);
        model_free(&m);
        return 1;
    }
    char note[512] = "";
    const int rc = gguf_write_model(&m, argv[2], note, sizeof note, &err);
    if (rc) fprintf(stderr, "make_bench_model: %s\n", err.msg);
    else printf("make_bench_model: wrote %s (%s, seed %llu)%s%s\n", argv[2], cfg.name, seed,
                note[0] ? ": " : "", note);
    if (!rc) {
        /* what one decode step must read at least (kernels/dev/run_families_speed_device.sh
         * turns it into % of the byte floor): every ternary matrix as stored (rows padded to
         * 128), the f16 lm_head, one f16 embedding row, and the f16 K and V rows per position */
        double w = 0;
        for (int l = 0; l < cfg.n_layers; l++) {
            const LayerWeights *L = &m.layers[l];
            const TernaryMatrix *t[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (int i = 0; i < 7; i++) w += (double)t[i]->n_out * t[i]->n_in_pad / 4;
        }
        const double head = 2.0 * cfg.vocab_size * cfg.dim + 2.0 * cfg.dim;
        const double kv = (double)cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * 2;
        printf("bytes_per_token %.0f kv_bytes_per_position %.0f (ternary %.0f MB, lm_head %.0f MB)\n", w + head,
               kv, w / 1e6, head / 1e6);
    }
    model_free(&m);
    return rc ? 1 : 0;
}
