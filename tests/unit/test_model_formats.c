/* Every committed fixture (tests/data/models, made by gen_fixtures.py with gguf-py, safetensors
 * and tokenizers) loads to exactly the ternary codes, scales, norms and embedding that the
 * script's numpy reference recorded in expected.json. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "infer/model.h"
#include "infer/model_quant.h"
#include "infer/tokenizer.h"
#include "kernels/w2a8.h"

#define DIR BN_TEST_DATA "/models"

static uint64_t fnv_init(void) { return 0xcbf29ce484222325ull; }
static uint64_t fnv_byte(uint64_t h, uint8_t b) { return (h ^ b) * 0x100000001b3ull; }

static void hex64(uint64_t h, char out[17]) { snprintf(out, 17, "%016llx", (unsigned long long)h); }

static void check_mat(const TernaryMatrix *tm, json_t *e, const char *what) {
    uint64_t h = fnv_init();
    long neg = 0, zero = 0, pos = 0;
    const size_t rb = i2s_row_bytes(tm->n_in_pad);
    for (int r = 0; r < tm->n_out; r++)
        for (int j = 0; j < tm->n_in; j++) {
            int t = i2s_get(tm->codes + rb * (size_t)r, j);
            h = fnv_byte(h, (uint8_t)(t + 1));
            neg += t < 0, zero += t == 0, pos += t > 0;
        }
    /* padding lanes must be zero so they never change a dot product */
    for (int r = 0; r < tm->n_out; r++)
        for (int j = tm->n_in; j < tm->n_in_pad; j++) CHECK(i2s_get(tm->codes + rb * (size_t)r, j) == 0);
    char hx[17];
    hex64(h, hx);
    CHECK_MSG(!strcmp(hx, json_string_value(json_object_get(e, "fnv"))), "%s codes hash %s", what, hx);
    CHECK_EQ_INT(neg, json_integer_value(json_object_get(e, "neg")));
    CHECK_EQ_INT(zero, json_integer_value(json_object_get(e, "zero")));
    CHECK_EQ_INT(pos, json_integer_value(json_object_get(e, "pos")));
    uint32_t bits;
    memcpy(&bits, &tm->scale, 4);
    CHECK_MSG(bits == (uint32_t)json_integer_value(json_object_get(e, "gamma_bits")),
              "%s gamma %.9g expected %.9g", what, (double)tm->scale,
              json_real_value(json_object_get(e, "gamma")));
    /* dequantized values: gamma * t must equal the reference's gamma * t; with equal codes and
     * equal gamma bits this holds, checked here on one element per row for the record */
    for (int r = 0; r < tm->n_out; r += 37) {
        float w = tm->scale * (float)i2s_get(tm->codes + rb * (size_t)r, 0);
        CHECK(w == 0.0f || w == tm->scale || w == -tm->scale);
    }
}

static void check_vec(const float *v, int n, json_t *e, const char *what) {
    uint64_t h = fnv_init();
    const uint8_t *p = (const uint8_t *)v;
    for (size_t i = 0; i < (size_t)n * 4; i++) h = fnv_byte(h, p[i]);
    char hx[17];
    hex64(h, hx);
    CHECK_MSG(e && !strcmp(hx, json_string_value(e)), "%s hash %s", what, hx);
}

static void check_dense(const DenseMatrix *d, json_t *e) {
    uint64_t h = fnv_init();
    for (size_t i = 0; i < (size_t)d->rows * d->cols; i++) {
        float f = float_elem(d->data, d->type, i);
        uint8_t b[4];
        memcpy(b, &f, 4);
        for (int k = 0; k < 4; k++) h = fnv_byte(h, b[k]);
    }
    char hx[17];
    hex64(h, hx);
    CHECK_MSG(!strcmp(hx, json_string_value(e)), "embedding hash %s", hx);
}

/* Is p inside a mapping of a file whose path ends with `suffix`? (proves in-place use) */
static int mapped_from(const void *p, const char *suffix) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[1024];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
        line[strcspn(line, "\n")] = 0;
        size_t n = strlen(line), s = strlen(suffix);
        if ((uintptr_t)p >= lo && (uintptr_t)p < hi && n >= s && !strcmp(line + n - s, suffix)) found = 1;
    }
    fclose(f);
    return found;
}

static int progress_calls;
static float last_frac;
static void on_progress(void *user, float frac, const char *stage) {
    (void)user;
    (void)stage;
    CHECK(frac >= last_frac - 1e-6f && frac <= 1.0f + 1e-6f);
    last_frac = frac;
    progress_calls++;
}

struct CancelAt {
    volatile int *flag;
    float at;
};
static void cancel_at(void *user, float frac, const char *stage) {
    struct CancelAt *c = user;
    (void)stage;
    if (frac >= c->at) *c->flag = 1;
}

static void check_fixture(json_t *all, const char *name) {
    json_t *e = json_object_get(all, name);
    REQUIRE(e);
    char path[1024];
    snprintf(path, sizeof path, DIR "/%s", name);
    Model m;
    Err err = {{0}};
    progress_calls = 0;
    last_frac = 0;
    ModelLoadOptions opt = {on_progress, NULL, NULL};
    int rc = model_load(&m, path, &opt, &err);
    CHECK_MSG(rc == 0, "%s: %s", name, err.msg);
    if (rc) return;
    printf("%s: loaded as %s, arch %s\n", name, m.format, m.cfg.arch);
    CHECK_STREQ(m.cfg.arch, !strcmp(name, "bitnet25.gguf") ? "bitnet-25"
                            : strstr(name, ".gguf") ? "bitnet-b1.58" : "bitnet");
    json_t *cfg = json_object_get(e, "cfg");
    CHECK_EQ_INT(m.cfg.dim, json_integer_value(json_object_get(cfg, "dim")));
    CHECK_EQ_INT(m.cfg.ffn_dim, json_integer_value(json_object_get(cfg, "ffn")));
    CHECK_EQ_INT(m.cfg.n_layers, json_integer_value(json_object_get(cfg, "layers")));
    CHECK_EQ_INT(m.cfg.n_heads, json_integer_value(json_object_get(cfg, "heads")));
    CHECK_EQ_INT(m.cfg.n_kv_heads, json_integer_value(json_object_get(cfg, "kv_heads")));
    CHECK_EQ_INT(m.cfg.vocab_size, json_integer_value(json_object_get(e, "vocab")));
    CHECK_EQ_INT(m.cfg.head_dim, m.cfg.dim / m.cfg.n_heads);
    CHECK_EQ_INT(m.cfg.ctx_len, 4096);
    CHECK_NEAR(m.cfg.rope_theta, 500000.0, 0);
    CHECK_NEAR(m.cfg.norm_eps, 1e-5, 1e-12);
    CHECK_EQ_INT(m.cfg.rope_style, ROPE_HALF);
    CHECK(progress_calls >= 7 * m.cfg.n_layers);
    CHECK_NEAR(last_frac, 1.0, 1e-6);
    check_dense(&m.tok_embd, json_object_get(e, "embd"));
    json_t *eo = json_object_get(e, "output");
    if (eo) {
        CHECK(m.output.data != m.tok_embd.data); /* untied lm_head */
        check_dense(&m.output, eo);
    } else {
        CHECK(m.output.data == m.tok_embd.data); /* tied */
    }
    json_t *norms = json_object_get(e, "norms"), *mats = json_object_get(e, "mats");
    check_vec(m.output_norm, m.cfg.dim, json_object_get(norms, "output_norm"), "output_norm");
    for (int l = 0; l < m.cfg.n_layers; l++) {
        LayerWeights *lw = &m.layers[l];
        char k[64];
        struct { const char *n; const float *v; int len; } nv[4] = {
            {"attn_norm", lw->attn_norm, m.cfg.dim}, {"attn_sub_norm", lw->attn_sub_norm, m.cfg.dim},
            {"ffn_norm", lw->ffn_norm, m.cfg.dim}, {"ffn_sub_norm", lw->ffn_sub_norm, m.cfg.ffn_dim}};
        for (int i = 0; i < 4; i++) {
            snprintf(k, sizeof k, "%d.%s", l, nv[i].n);
            check_vec(nv[i].v, nv[i].len, json_object_get(norms, k), k);
        }
        struct { const char *n; const TernaryMatrix *tm; } tv[7] = {
            {"wq", &lw->wq}, {"wk", &lw->wk}, {"wv", &lw->wv}, {"wo", &lw->wo},
            {"w_gate", &lw->w_gate}, {"w_up", &lw->w_up}, {"w_down", &lw->w_down}};
        for (int i = 0; i < 7; i++) {
            snprintf(k, sizeof k, "%d.%s", l, tv[i].n);
            json_t *me = json_object_get(mats, k);
            REQUIRE(me);
            char what[128];
            snprintf(what, sizeof what, "%s %s", name, k);
            check_mat(tv[i].tm, me, what);
        }
    }
    json_t *tk = json_object_get(all, "_tokenizer");
    REQUIRE(m.tok);
    CHECK_EQ_INT(tokenizer_n_vocab(m.tok), json_integer_value(json_object_get(tk, "n_tokens")));
    CHECK_EQ_INT(m.cfg.bos_id, json_integer_value(json_object_get(tk, "bos")));
    int eot = (int)json_integer_value(json_object_get(tk, "eot")),
        eos = (int)json_integer_value(json_object_get(tk, "eos"));
    int has_eot = 0, has_eos = 0;
    for (int i = 0; i < m.cfg.n_stop; i++) {
        has_eot |= m.cfg.stop_ids[i] == eot;
        has_eos |= m.cfg.stop_ids[i] == eos;
    }
    CHECK_MSG(has_eot && has_eos, "%s: stops must include eot %d and eos %d (n_stop %d)", name, eot,
              eos, m.cfg.n_stop);
    CHECK(m.chat_template && strstr(m.chat_template, "<|eot_id|>"));
    /* the tokenizer built from this file's metadata encodes like Hugging Face tokenizers did */
    json_t *hello = json_object_get(tk, "hello_ids");
    int32_t *ids = NULL;
    size_t n_ids = 0;
    REQUIRE(tokenizer_encode(m.tok, "Hello world", 11, &ids, &n_ids, &err) == 0);
    CHECK_EQ_INT(n_ids, json_array_size(hello));
    for (size_t i = 0; i < n_ids && i < json_array_size(hello); i++)
        CHECK_EQ_INT(ids[i], json_integer_value(json_array_get(hello, i)));
    free(ids);
    if (!strcmp(name, "i2s.gguf")) {
        /* the official layout is used in place: codes and embedding point into the file's mapping */
        CHECK_EQ_INT(mapped_from(m.layers[1].w_down.codes, "/i2s.gguf"), 1);
        CHECK_EQ_INT(mapped_from(m.tok_embd.data, "/i2s.gguf"), 1);
        CHECK_EQ_INT(m.tok_embd.type, FT_F16);
    }
    if (!strcmp(name, "hf_bf16")) CHECK_EQ_INT(mapped_from(m.tok_embd.data, "/hf_bf16/model.safetensors"), 1);
    model_free(&m);
    CHECK(m.layers == NULL && m.storage == NULL);
}

int main(void) {
    json_error_t je;
    json_t *all = json_load_file(DIR "/expected.json", 0, &je);
    REQUIRE(all);
    const char *names[] = {"i2s.gguf", "tq2_0.gguf", "tq1_0.gguf", "f16.gguf", "hf_packed", "hf_bf16",
                           "bitnet25.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) check_fixture(all, names[i]);

    /* Model.weights says how each file stored its ternary linears (/show prints it). */
    {
        const char *enc[][2] = {{"i2s.gguf", "I2_S"},
                                {"tq2_0.gguf", "TQ2_0 repacked to I2_S"},
                                {"tq1_0.gguf", "TQ1_0 repacked to I2_S"},
                                {"f16.gguf", "ternarized from F16"},
                                {"hf_packed", "packed U8 repacked to I2_S"},
                                {"hf_bf16", "ternarized from BF16"}};
        for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++) {
            char p[600];
            snprintf(p, sizeof p, DIR "/%s", enc[i][0]);
            Model m;
            Err e;
            REQUIRE(model_load(&m, p, NULL, &e) == 0);
            CHECK_MSG(strcmp(m.weights, enc[i][1]) == 0, "%s: weights \"%s\"", enc[i][0], m.weights);
            model_free(&m);
        }
    }

    /* Same ternary model in four encodings: I2_S, TQ2_0, TQ1_0 and HF packed carry the same codes
     * (their scales differ only by the f16/bf16 rounding each format imposes). */
    Model a, b;
    Err err;
    REQUIRE(model_load(&a, DIR "/i2s.gguf", NULL, &err) == 0);
    const char *same[] = {DIR "/tq2_0.gguf", DIR "/tq1_0.gguf", DIR "/hf_packed"};
    for (int i = 0; i < 3; i++) {
        REQUIRE(model_load(&b, same[i], NULL, &err) == 0);
        const TernaryMatrix *x = &a.layers[1].w_gate, *y = &b.layers[1].w_gate;
        int diff = 0;
        for (int r = 0; r < x->n_out; r++)
            for (int j = 0; j < x->n_in; j++)
                diff += i2s_get(x->codes + (size_t)r * x->n_in_pad / 4, j) !=
                        i2s_get(y->codes + (size_t)r * y->n_in_pad / 4, j);
        CHECK_EQ_INT(diff, 0);
        CHECK_NEAR(x->scale, y->scale, x->scale * 1e-2);
        model_free(&b);
    }
    model_free(&a);

    /* HF packed with linear_class "bitlinear" (or none): weight_scale is 1/gamma. Same files,
     * config rewritten; also eos_token_id as a plain number and the older torch_dtype key. */
    {
        char tmp[] = "/tmp/bn-hfcfg-XXXXXX";
        REQUIRE(mkdtemp(tmp));
        const char *files[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                               "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"};
        char a_[600], b_[600];
        for (int i = 0; i < 5; i++) {
            snprintf(a_, sizeof a_, DIR "/hf_packed/%s", files[i]);
            snprintf(b_, sizeof b_, "%s/%s", tmp, files[i]);
            REQUIRE(symlink(a_, b_) == 0);
        }
        Model ref;
        REQUIRE(model_load(&ref, DIR "/hf_packed", NULL, &err) == 0);
        json_t *cfgj = json_load_file(DIR "/hf_packed/config.json", 0, NULL);
        REQUIRE(cfgj);
        for (int variant = 0; variant < 2; variant++) {
            json_t *qc = json_object_get(cfgj, "quantization_config");
            if (variant == 0) json_object_set_new(qc, "linear_class", json_string("bitlinear"));
            else json_object_del(cfgj, "quantization_config");
            json_object_set_new(cfgj, "eos_token_id", json_integer(301));
            snprintf(b_, sizeof b_, "%s/config.json", tmp);
            REQUIRE(json_dump_file(cfgj, b_, 0) == 0);
            Model m2;
            int rc = model_load(&m2, tmp, NULL, &err);
            CHECK_MSG(rc == 0, "%s", err.msg);
            if (rc) continue;
            const TernaryMatrix *x = &ref.layers[0].wk, *y = &m2.layers[0].wk;
            CHECK(x->scale > 0 && y->scale == 1.0f / x->scale); /* autobitlinear gamma = ws */
            CHECK(!memcmp(x->codes, y->codes, (size_t)x->n_out * x->n_in_pad / 4));
            int has301 = 0;
            for (int i = 0; i < m2.cfg.n_stop; i++) has301 |= m2.cfg.stop_ids[i] == 301;
            CHECK(has301);
            model_free(&m2);
        }
        json_decref(cfgj);
        model_free(&ref);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        CHECK(system(cmd) == 0);
    }

    /* The cancel flag stops a load with an error and leaves nothing behind. */
    volatile int cancel = 1;
    ModelLoadOptions copt = {NULL, NULL, &cancel};
    CHECK(model_load(&a, DIR "/tq2_0.gguf", &copt, &err) == -1);
    CHECK(strstr(err.msg, "cancel") != NULL);
    CHECK(a.layers == NULL && a.storage == NULL);

    /* Cancelled in the middle of the threaded conversion (from the progress callback, as the
     * UI does): stops with an error, workers joined, nothing leaked (ASan build checks that). */
    for (int f = 0; f < 2; f++) {
        volatile int cancel2 = 0;
        struct CancelAt ca = {&cancel2, f ? 0.6f : 0.3f};
        ModelLoadOptions mopt = {cancel_at, &ca, &cancel2};
        CHECK(model_load(&a, f ? DIR "/tq1_0.gguf" : DIR "/hf_bf16", &mopt, &err) == -1);
        CHECK(strstr(err.msg, "cancel") != NULL);
        CHECK(a.layers == NULL && a.storage == NULL);
    }

    /* Clear messages for bad paths. */
    CHECK(model_load(&a, DIR "/no-such-model.gguf", NULL, &err) == -1);
    CHECK(strstr(err.msg, "no-such-model.gguf") && strstr(err.msg, "no such file"));
    CHECK(model_load(&a, DIR, NULL, &err) == -1); /* a directory without config.json */
    CHECK(strstr(err.msg, "config.json") != NULL);
    CHECK(model_load(&a, DIR "/gen_fixtures.py", NULL, &err) == -1);
    CHECK(strstr(err.msg, "not a GGUF") != NULL);
    CHECK(model_load(&a, DIR "/hf_bf16/config.json", NULL, &err) == 0); /* a file inside an HF dir */
    model_free(&a);
    printf("messages: %s\n", err.msg);
    json_decref(all);
    return check_report("test_model_formats");
}
