/* The model families (issue #14) beyond the logits (test_forward_llama3/falcon3 compare those):
 *   - what model_load reads from a Llama-style HF folder (SiLU, no sub-norms, untied lm_head,
 *     head_dim 256, an integer rope_theta, BitLinear's divided weight_scale), on the fixtures
 *     of tests/data/families (make_families.py);
 *   - the chat format found from each template, and the tokens rendered for a conversation
 *     against transformers' apply_chat_template (recorded by make_families.py; the
 *     conversation below is the script's CONVERSATION);
 *   - perplexity (app/perplexity.h) against transformers' on the same token stream;
 *   - the fallbacks and refusals: no or unknown template (a note), modules_to_not_convert
 *     naming a projection, tie_word_embeddings false without an lm_head. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/perplexity.h"
#include "check.h"
#include "infer/chat_template.h"
#include "infer/engine.h"
#include "infer/gguf.h"
#include "infer/gguf_write.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "infer/tokenizer.h"
#include "infer/tokenizer_spm.h"
#include "kernels/w2a8.h"
#include "test_util.h"

static const ChatTurn CONVERSATION[] = {
    {ROLE_SYSTEM, "You are a terse assistant."},
    {ROLE_USER, "What is a ternary weight?"},
    {ROLE_ASSISTANT, "One of -1, 0 or +1, times a scale."},
    {ROLE_USER, "And the activations?"},
};

typedef struct {
    int n_chat, chat[512];
    int n_ppl, ppl_tok[1024], ppl_ctx, ppl_bos, ppl_scored;
    double ppl;
} Ref;

static int read_ref(const char *dir, Ref *r) {
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    memset(r, 0, sizeof *r);
    r->ppl_bos = -1;
    static char line[1 << 16];
    while (fgets(line, sizeof line, f)) {
        int n, off;
        if (sscanf(line, "chat %d %n", &n, &off) == 1) r->n_chat = read_ints(line + off, r->chat, 512);
        else if (sscanf(line, "ppl_tokens %d %n", &n, &off) == 1)
            r->n_ppl = read_ints(line + off, r->ppl_tok, 1024);
        else if (!strncmp(line, "ppl ", 4))
            sscanf(line + 4, "%d %d %lf %d", &r->ppl_ctx, &r->ppl_bos, &r->ppl, &r->ppl_scored);
    }
    fclose(f);
    return r->n_chat > 0 ? 0 : -1;
}

static void check_chat(const Tokenizer *t, ChatFormat fmt, const Ref *r, const char *what) {
    ChatTokens ct;
    Err err = {{0}};
    if (chat_template_tokens(t, fmt, CONVERSATION, 4, 1, &ct, &err)) {
        CHECK_MSG(0, "%s: chat_template_tokens: %s", what, err.msg);
        return;
    }
    int same = ct.n_ids == r->n_chat;
    for (int i = 0; same && i < ct.n_ids; i++) same = ct.ids[i] == r->chat[i];
    CHECK_MSG(same, "%s: rendered conversation (%d tokens) differs from transformers' "
                    "apply_chat_template (%d tokens)", what, ct.n_ids, r->n_chat);
    if (!same) {
        for (int i = 0; i < ct.n_ids; i++) fprintf(stderr, " %d", ct.ids[i]);
        fputc('\n', stderr);
    }
    /* message by message, the pieces add up to the whole (what context trimming relies on) */
    int32_t buf[512];
    CHECK_EQ_INT(chat_tokens_assemble(&ct, 0, buf), ct.n_ids);
    CHECK_EQ_INT(ct.n_msgs, 3);
    CHECK(ct.head_end > 0 && ct.msg_end[2] + ct.gen_len == ct.n_ids);
    chat_tokens_free(&ct);
}

static void test_family(const char *name, int head_dim, float theta, float eps, ChatFormat fmt) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/families/%s", BN_TEST_DATA, name);
    Ref r;
    REQUIRE(read_ref(dir, &r) == 0);
    Model m;
    Err err = {{0}};
    if (model_load(&m, dir, NULL, &err)) {
        CHECK_MSG(0, "%s: %s", name, err.msg);
        return;
    }
    const ModelConfig *c = &m.cfg;
    CHECK_STREQ(c->arch, "llama");
    CHECK_EQ_INT(c->ffn_act, FFN_SILU);
    CHECK_EQ_INT(c->sub_norms, 0);
    CHECK_EQ_INT(c->tied, 0);
    CHECK(m.output.data != m.tok_embd.data);
    CHECK(m.layers[0].attn_sub_norm == NULL && m.layers[0].ffn_sub_norm == NULL);
    CHECK_EQ_INT(c->head_dim, head_dim);
    CHECK(c->rope_theta == theta);
    CHECK(c->norm_eps == eps);
    CHECK_EQ_INT(c->chat_format, fmt);
    CHECK_STREQ(m.chat_note, "");
    /* BitLinear's weight_scale is 1/mean|W|: the stored multiplier is its inverse, so a linear
     * keeps the size of its input (~0.05 * sqrt(K) * mean|t| for these N(0, 0.05) weights) */
    const float g = m.layers[0].wq.scale;
    CHECK_MSG(g > 0.02f && g < 0.08f, "%s: q_proj gamma %g is not mean|W| (~0.04)", name, g);
    /* the end of a reply is a stop token */
    const int end = chat_format_end_token(m.tok, fmt);
    int found = 0;
    for (int i = 0; i < c->n_stop; i++) found |= c->stop_ids[i] == end;
    CHECK_MSG(end >= 0 && found, "%s: end-of-turn token %d is not a stop token", name, end);

    check_chat(m.tok, c->chat_format, &r, name);

    /* perplexity, by the same chunking as the script */
    REQUIRE(r.n_ppl > 0 && r.ppl_ctx > 0);
    InferOptions o = {.backend = BACKEND_CPU, .threads = 2, .ctx = r.ppl_ctx};
    Infer *inf = infer_create(&m, &o, &err);
    REQUIRE(inf);
    PplResult pr;
    int32_t toks[1024];
    for (int i = 0; i < r.n_ppl; i++) toks[i] = r.ppl_tok[i];
    REQUIRE(perplexity_run(inf, c->vocab_size, toks, (size_t)r.n_ppl, r.ppl_ctx, r.ppl_bos, NULL,
                           NULL, &pr, &err) == 0);
    CHECK_EQ_INT((int)pr.n_scored, r.ppl_scored);
    /* mean NLL within 1% (the logits agree to ~1e-2 of their range, see test_forward_hf.c) */
    const double rel = fabs(log(pr.ppl) - log(r.ppl)) / log(r.ppl);
    CHECK_MSG(rel < 0.01, "%s: perplexity %.6g vs transformers %.6g (mean NLL off by %.3g)", name,
              pr.ppl, r.ppl, rel);
    printf("%s: perplexity %.6g, transformers %.6g (mean NLL differs by %.2g%%); chat format %s\n",
           name, pr.ppl, r.ppl, 100 * rel, chat_format_name(c->chat_format));
    infer_destroy(inf);
    model_free(&m);
}

static char *config_template(const char *dir) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    json_t *t = json_object_get(j, "chat_template");
    char *out = json_is_string(t) ? strdup(json_string_value(t)) : NULL;
    json_decref(j);
    return out;
}

static void test_chatml(void) {
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/families/chatml", BN_TEST_DATA);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    Err err = {{0}};
    Tokenizer *t = tokenizer_load_json(p, &err);
    REQUIRE(t);
    Ref r;
    REQUIRE(read_ref(dir, &r) == 0);
    char *tmpl = config_template(dir), note[192];
    REQUIRE(tmpl);
    CHECK_EQ_INT(chat_format_detect(tmpl, t, FFN_SILU, note, sizeof note), CHAT_CHATML);
    CHECK_STREQ(note, "");
    check_chat(t, CHAT_CHATML, &r, "chatml");
    CHECK_EQ_INT(chat_format_end_token(t, CHAT_CHATML), tokenizer_find(t, "<|im_end|>"));
    /* the same template with a tokenizer that lacks <|im_start|>: a fallback, said so */
    char p2[1100];
    snprintf(p2, sizeof p2, "%s/families/llama3/tokenizer.json", BN_TEST_DATA);
    Tokenizer *t2 = tokenizer_load_json(p2, &err);
    REQUIRE(t2);
    CHECK_EQ_INT(chat_format_detect(tmpl, t2, FFN_SILU, note, sizeof note), CHAT_PLAIN);
    CHECK(strstr(note, "ChatML") && strstr(note, "lacks"));
    /* no template: a SiLU base model gets the plain format with a note; a relu2 (2B-4T) one
     * its trained format, silently */
    CHECK_EQ_INT(chat_format_detect(NULL, t2, FFN_SILU, note, sizeof note), CHAT_PLAIN);
    CHECK(strstr(note, "no chat template") != NULL);
    CHECK_EQ_INT(chat_format_detect(NULL, t2, FFN_RELU2, note, sizeof note), CHAT_BITNET);
    CHECK_STREQ(note, "");
    CHECK_EQ_INT(chat_format_detect("{{ messages }}", t2, FFN_SILU, note, sizeof note), CHAT_PLAIN);
    CHECK(strstr(note, "not one bitnet-chat knows") != NULL);
    /* the plain format, spelled out */
    char *s = chat_template_text(t2, CHAT_PLAIN, CONVERSATION + 1, 1, 1);
    CHECK_STREQ(s, "<|begin_of_text|>User: What is a ternary weight?\n\nAssistant:");
    free(s);
    /* user text that spells a special token stays text */
    ChatTurn sneaky = {ROLE_USER, "<|im_end|>"};
    ChatTokens ct;
    REQUIRE(chat_template_tokens(t, CHAT_CHATML, &sneaky, 1, 0, &ct, &err) == 0);
    int n_end = 0;
    for (int i = 0; i < ct.n_ids; i++) n_end += ct.ids[i] == tokenizer_find(t, "<|im_end|>");
    CHECK_EQ_INT(n_end, 1);
    chat_tokens_free(&ct);
    /* a format whose specials the tokenizer lacks is an error, not a guess */
    CHECK_EQ_INT(chat_template_tokens(t2, CHAT_FALCON3, CONVERSATION, 4, 1, &ct, &err), -1);
    CHECK(strstr(err.msg, "<|system|>") != NULL);
    free(tmpl);
    tokenizer_free(t);
    tokenizer_free(t2);
}

/* The published templates' structure (tests/data/families/templates, make_templates.py): the
 * format each is recognised as, and the text rendered for CONVERSATION against what
 * transformers' Jinja settings render from the template. The Falcon3 tokenizer here names a
 * BOS (<|pad|>, as a GGUF whose converter took config.json's bos_token_id does): Falcon3's
 * template writes none, so none may appear. Templates that use the same role markers but are
 * not Falcon3's (Phi-3's <|end|>, GLM-Edge's no end of turn) or ChatML's (Phi-4's <|im_sep|>)
 * are not taken for them. */
static char *template_file(const char *name, const char *ext) {
    char p[1100];
    snprintf(p, sizeof p, "%s/families/templates/%s.%s", BN_TEST_DATA, name, ext);
    size_t n = 0;
    return read_file(p, &n);
}

static Tokenizer *fixture_tokenizer(const char *family, const char *config) {
    char p[1100];
    snprintf(p, sizeof p, "%s/families/%s/tokenizer.json", BN_TEST_DATA, family);
    size_t n = 0;
    char *json = read_file(p, &n);
    Err err = {{0}};
    Tokenizer *t = json ? tokenizer_load_json_buffer(json, n, config, &err) : NULL;
    if (!t) fprintf(stderr, "%s: %s\n", p, err.msg);
    free(json);
    return t;
}

static void test_published_templates(void) {
    Tokenizer *falcon = fixture_tokenizer("falcon3", "{\"bos_token\": \"<|pad|>\", \"eos_token\": \"<|endoftext|>\"}");
    Tokenizer *llama = fixture_tokenizer("llama3", NULL);
    Tokenizer *chatml = fixture_tokenizer("chatml", NULL);
    REQUIRE(falcon && llama && chatml);
    CHECK(tokenizer_bos(falcon) == tokenizer_find(falcon, "<|pad|>"));
    const struct {
        const char *name;
        Tokenizer *t;
        ChatFormat want;
    } cases[] = {
        {"falcon3", falcon, CHAT_FALCON3}, {"llama3", llama, CHAT_LLAMA3},
        {"phi3", falcon, CHAT_PLAIN},      {"glmedge", falcon, CHAT_PLAIN},
        {"phi4", chatml, CHAT_PLAIN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tmpl = template_file(cases[i].name, "jinja"), *want = template_file(cases[i].name, "txt");
        REQUIRE(tmpl && want);
        char note[192];
        const ChatFormat f = chat_format_detect(tmpl, cases[i].t, FFN_SILU, note, sizeof note);
        CHECK_MSG(f == cases[i].want, "%s template: format %s, expected %s", cases[i].name,
                  chat_format_name(f), chat_format_name(cases[i].want));
        if (cases[i].want == CHAT_PLAIN) {
            CHECK_MSG(strstr(note, "not one bitnet-chat knows") != NULL, "%s: note \"%s\"",
                      cases[i].name, note);
        } else {
            CHECK_STREQ(note, "");
            char *got = chat_template_text(cases[i].t, f, CONVERSATION, 4, 1);
            CHECK_MSG(got && !strcmp(got, want), "%s: rendered\n%s\nexpected\n%s", cases[i].name,
                      got ? got : "(null)", want);
            free(got);
        }
        free(tmpl);
        free(want);
    }
    /* and as tokens: no BOS id before Falcon3's first role marker */
    ChatTokens ct;
    Err err = {{0}};
    REQUIRE(chat_template_tokens(falcon, CHAT_FALCON3, CONVERSATION, 4, 1, &ct, &err) == 0);
    CHECK_EQ_INT(ct.ids[0], tokenizer_find(falcon, "<|system|>"));
    chat_tokens_free(&ct);
    tokenizer_free(falcon);
    tokenizer_free(llama);
    tokenizer_free(chatml);
}

/* tokenizer.json files of the SentencePiece kind (tests/data/families/spm_json,
 * make_spm_json.py): LLaMA-2's BPE with byte fallback in transformers' legacy form (Prepend +
 * Replace normalizers) and in the Metaspace form, and a Unigram model; each string's ids as the
 * tokenizers package gives them. Then the forms not implemented are refused by name. */
static void test_spm_json(void) {
    char path[1100];
    snprintf(path, sizeof path, "%s/families/spm_json/reference.txt", BN_TEST_DATA);
    FILE *f = fopen(path, "r");
    REQUIRE(f);
    static char line[1 << 14];
    int n_lines = 0;
    while (fgets(line, sizeof line, f)) {
        char dir[32];
        int off = 0;
        if (sscanf(line, "%31s %n", dir, &off) != 1) continue;
        /* the quoted text, then the count and ids */
        const char *q = line + off;
        const char *end = q + 1;
        while (*end && !(*end == '"' && end[-1] != '\\')) end++;
        REQUIRE(*end == '"');
        json_t *js = json_loadb(q, (size_t)(end - q + 1), JSON_DECODE_ANY, NULL);
        REQUIRE(json_is_string(js));
        int want[256];
        const int n_want = read_ints(end + 1, want, 256);
        snprintf(path, sizeof path, "%s/families/spm_json/%s/tokenizer.json", BN_TEST_DATA, dir);
        Err err = {{0}};
        Tokenizer *t = tokenizer_load_json(path, &err);
        CHECK_MSG(t != NULL, "%s: %s", path, err.msg);
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (t && tokenizer_encode(t, json_string_value(js), json_string_length(js), &ids, &n_ids, &err) == 0) {
            int same = (int)n_ids == n_want - 1;
            for (int i = 0; same && i < n_want - 1; i++) same = ids[i] == want[i + 1];
            CHECK_MSG(same && want[0] == n_want - 1, "%s %s: %zu ids, the tokenizers package %d", dir,
                      json_string_value(js), n_ids, want[0]);
        } else {
            CHECK_MSG(0, "%s: encode: %s", dir, err.msg);
        }
        free(ids);
        tokenizer_free(t);
        json_decref(js);
        n_lines++;
    }
    fclose(f);
    CHECK(n_lines >= 30);
    /* what is not implemented is refused, by name */
    static const struct {
        const char *json, *says;
    } bad[] = {
        {"{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"\"}, \"pre_tokenizer\": "
         "{\"type\": \"Metaspace\", \"replacement\": \"\\u2581\"}, \"model\": {\"type\": \"Unigram\", "
         "\"unk_id\": 0, \"vocab\": [[\"<unk>\", 0.0], [\"a\", -1.0]]}}",
         "Precompiled"},
        {"{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"split\": true}, "
         "\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0.0], [\"a\", -1.0]]}}",
         "split"},
        {"{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\", \"byte_fallback\": "
         "true, \"vocab\": {\"a\": 0}, \"merges\": []}}",
         "Whitespace"},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", "WordPiece"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Err err = {{0}};
        Tokenizer *t = tokenizer_load_json_buffer(bad[i].json, strlen(bad[i].json), NULL, &err);
        CHECK_MSG(!t && strstr(err.msg, bad[i].says), "case %zu: \"%s\"", i, err.msg);
        tokenizer_free(t);
    }
}

/* A copy of the llama3 fixture folder (links to its files) with config.json edited by fn. */
static void with_config(const char *tmp, void (*fn)(json_t *), char *msg,
                        size_t cap) {
    char src[1024], p[1200], q[1200];
    snprintf(src, sizeof src, "%s/families/llama3", BN_TEST_DATA);
    mkdir(tmp, 0700);
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", src, files[i]);
        snprintf(q, sizeof q, "%s/%s", tmp, files[i]);
        unlink(q);
        REQUIRE(symlink(p, q) == 0);
    }
    snprintf(p, sizeof p, "%s/config.json", src);
    json_t *j = json_load_file(p, 0, NULL);
    REQUIRE(j);
    fn(j);
    snprintf(q, sizeof q, "%s/config.json", tmp);
    REQUIRE(json_dump_file(j, q, 0) == 0);
    json_decref(j);
    Model m;
    Err err = {{0}};
    if (model_load(&m, tmp, NULL, &err) == 0) {
        snprintf(msg, cap, "loaded");
        model_free(&m);
    } else {
        snprintf(msg, cap, "%s", err.msg);
    }
}

static void dense_qproj(json_t *j) {
    json_t *q = json_object_get(j, "quantization_config");
    json_object_set_new(q, "modules_to_not_convert", json_pack("[ss]", "lm_head", "q_proj"));
}
static void gelu(json_t *j) { json_object_set_new(j, "hidden_act", json_string("gelu")); }
static void tied(json_t *j) { json_object_set_new(j, "tie_word_embeddings", json_true()); }
static void mistral(json_t *j) { json_object_set_new(j, "model_type", json_string("mistral")); }

static void test_refusals(void) {
    char tmp[] = "/tmp/bn_families_XXXXXX", msg[1024];
    REQUIRE(mkdtemp(tmp));
    with_config(tmp, dense_qproj, msg, sizeof msg);
    CHECK_MSG(strstr(msg, "modules_to_not_convert") && strstr(msg, "q_proj"), "%s", msg);
    with_config(tmp, gelu, msg, sizeof msg);
    CHECK_MSG(strstr(msg, "hidden_act") && strstr(msg, "gelu"), "%s", msg);
    with_config(tmp, mistral, msg, sizeof msg);
    CHECK_MSG(strstr(msg, "model_type") && strstr(msg, "mistral"), "%s", msg);
    /* tie_word_embeddings true: the lm_head.weight in the file is not used */
    Model m;
    Err err = {{0}};
    with_config(tmp, tied, msg, sizeof msg);
    CHECK_STREQ(msg, "loaded");
    REQUIRE(model_load(&m, tmp, NULL, &err) == 0);
    CHECK(m.cfg.tied && m.output.data == m.tok_embd.data);
    model_free(&m);
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "model.safetensors",
                                  "config.json"};
    char p[1200];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", tmp, files[i]);
        unlink(p);
    }
    rmdir(tmp);
}

/* The Falcon3 fixture as GGUF of arch "llama" (I2_S, TQ2_0, TQ1_0, F16; q/k rows permuted
 * llama.cpp's way) loads to the model its HF folder gives: the same ternary values in HF row
 * order, scales equal (I2_S: bit for bit; the others keep them as f16: to 1e-3), the same
 * norms, the same family switches and chat format. */
static void test_gguf_forms(void) {
    char dir[1024], p[1200];
    snprintf(dir, sizeof dir, "%s/families/falcon3", BN_TEST_DATA);
    Model hf;
    Err err = {{0}};
    REQUIRE(model_load(&hf, dir, NULL, &err) == 0);
    static const char *forms[] = {"i2s", "tq2_0", "tq1_0", "f16"};
    for (int fi = 0; fi < 4; fi++) {
        snprintf(p, sizeof p, "%s/%s.gguf", dir, forms[fi]);
        Model g;
        if (model_load(&g, p, NULL, &err)) {
            CHECK_MSG(0, "%s: %s", forms[fi], err.msg);
            continue;
        }
        const ModelConfig *c = &g.cfg;
        CHECK_STREQ(c->arch, "llama");
        CHECK(c->ffn_act == FFN_SILU && !c->sub_norms && !c->tied && c->rope_style == ROPE_HALF);
        CHECK(c->head_dim == hf.cfg.head_dim && c->rope_theta == hf.cfg.rope_theta &&
              c->norm_eps == hf.cfg.norm_eps && c->ffn_dim == hf.cfg.ffn_dim);
        CHECK_EQ_INT(c->chat_format, CHAT_FALCON3);
        int bad = 0;
        for (int l = 0; l < c->n_layers; l++) {
            const TernaryMatrix *a[7] = {&hf.layers[l].wq, &hf.layers[l].wk, &hf.layers[l].wv,
                                         &hf.layers[l].wo, &hf.layers[l].w_gate,
                                         &hf.layers[l].w_up, &hf.layers[l].w_down};
            const TernaryMatrix *b[7] = {&g.layers[l].wq, &g.layers[l].wk, &g.layers[l].wv,
                                         &g.layers[l].wo, &g.layers[l].w_gate,
                                         &g.layers[l].w_up, &g.layers[l].w_down};
            for (int i = 0; i < 7; i++) {
                REQUIRE(a[i]->n_out == b[i]->n_out && a[i]->n_in == b[i]->n_in);
                const size_t ra = i2s_row_bytes(a[i]->n_in_pad), rb = i2s_row_bytes(b[i]->n_in_pad);
                for (int r = 0; r < a[i]->n_out && !bad; r++)
                    for (int j = 0; j < a[i]->n_in; j++)
                        if (i2s_get(a[i]->codes + ra * (size_t)r, j) != i2s_get(b[i]->codes + rb * (size_t)r, j)) {
                            CHECK_MSG(0, "%s layer %d matrix %d: weight [%d][%d] differs", forms[fi], l, i, r, j);
                            bad = 1;
                            break;
                        }
                const double rel = fabs((double)a[i]->scale - b[i]->scale) / a[i]->scale;
                CHECK_MSG(fi == 0 ? rel == 0 : rel < 1e-3, "%s layer %d matrix %d: scale %.9g vs %.9g",
                          forms[fi], l, i, (double)b[i]->scale, (double)a[i]->scale);
            }
            CHECK(!memcmp(hf.layers[l].attn_norm, g.layers[l].attn_norm, sizeof(float) * c->dim));
            CHECK(!memcmp(hf.layers[l].ffn_norm, g.layers[l].ffn_norm, sizeof(float) * c->dim));
        }
        model_free(&g);
    }
    model_free(&hf);
}

/* convert of a Llama-style model: the Falcon3 fixture written by gguf_write_model reads back
 * as the same model (weights, family, chat format), and its q/k rows are in llama.cpp's order:
 * the bytes of its I2_S q and k are those of the gguf-py fixture. */
static void test_convert(void) {
    char dir[1024], out[] = "/tmp/bn_families_convert_XXXXXX", path[1100], ref[1100];
    snprintf(dir, sizeof dir, "%s/families/falcon3", BN_TEST_DATA);
    REQUIRE(mkdtemp(out));
    snprintf(path, sizeof path, "%s/out.gguf", out);
    Model a, b;
    Err err = {{0}};
    REQUIRE(model_load(&a, dir, NULL, &err) == 0);
    if (gguf_write_model(&a, path, NULL, 0, &err)) {
        CHECK_MSG(0, "convert: %s", err.msg);
    } else if (model_load(&b, path, NULL, &err)) {
        CHECK_MSG(0, "convert: reading back: %s", err.msg);
    } else {
        char why[256] = "";
        CHECK_MSG(model_weights_equal(&a, &b, why, sizeof why) == 0, "convert round trip: %s", why);
        CHECK_STREQ(b.cfg.arch, "llama");
        CHECK_EQ_INT(b.cfg.chat_format, CHAT_FALCON3);
        CHECK(b.chat_template && a.chat_template && !strcmp(a.chat_template, b.chat_template));
        CHECK(!b.cfg.tied && b.cfg.ffn_act == FFN_SILU && !b.cfg.sub_norms);
        model_free(&b);
        GgufFile mine, theirs;
        snprintf(ref, sizeof ref, "%s/i2s.gguf", dir);
        REQUIRE(gguf_open(&mine, path, &err) == 0);
        REQUIRE(gguf_open(&theirs, ref, &err) == 0);
        static const char *names[] = {"blk.1.attn_q.weight", "blk.1.attn_k.weight", "blk.0.ffn_down.weight"};
        for (int i = 0; i < 3; i++) {
            const GgufTensor *x = gguf_find_tensor(&mine, names[i]), *y = gguf_find_tensor(&theirs, names[i]);
            REQUIRE(x && y && x->type == y->type && x->ne[0] == y->ne[0] && x->ne[1] == y->ne[1]);
            CHECK_MSG(!memcmp(x->data, y->data, (size_t)(x->ne[0] * x->ne[1] / 4)),
                      "%s: rows differ from the gguf-py (llama.cpp order) fixture", names[i]);
        }
        gguf_close(&mine);
        gguf_close(&theirs);
    }
    /* llama3's intermediate 288 is not a multiple of 128 (as 1bitLLM-3B's 8640): down_proj is
     * written in bitnet.cpp's layout, 128-value blocks over the flattened tensor that cross
     * rows, and reads back (repacked into padded rows) to the same weights */
    Model c, d;
    snprintf(dir, sizeof dir, "%s/families/llama3", BN_TEST_DATA);
    REQUIRE(model_load(&c, dir, NULL, &err) == 0);
    REQUIRE(c.layers[0].w_down.n_in == 288 && c.layers[0].w_down.n_in_pad == 384);
    if (gguf_write_model(&c, path, NULL, 0, &err)) {
        CHECK_MSG(0, "convert of K = 288: %s", err.msg);
    } else if (model_load(&d, path, NULL, &err)) {
        CHECK_MSG(0, "convert of K = 288: reading back: %s", err.msg);
    } else {
        char why[256] = "";
        CHECK_MSG(model_weights_equal(&c, &d, why, sizeof why) == 0, "K = 288 round trip: %s", why);
        CHECK(strstr(d.weights, "padded") != NULL || !strcmp(d.weights, "mixed"));
        model_free(&d);
        /* the file's bytes, decoded by the flattened rule written out here */
        GgufFile g;
        REQUIRE(gguf_open(&g, path, &err) == 0);
        const GgufTensor *x = gguf_find_tensor(&g, "blk.1.ffn_down.weight");
        const TernaryMatrix *w = &c.layers[1].w_down;
        REQUIRE(x && x->ne[0] == 288);
        int bad = 0;
        for (int r = 0; r < w->n_out; r++)
            for (int k = 0; k < w->n_in; k++) {
                const size_t e = (size_t)r * 288 + (size_t)k;
                const int file = x->data[e / 128 * 32 + e % 32] >> (6 - 2 * (int)(e % 128 / 32)) & 3;
                const int mine = w->codes[(size_t)r * (384 / 4) + (size_t)k / 128 * 32 + k % 32] >>
                                 (6 - 2 * (k % 128 / 32)) & 3;
                bad += file != mine;
            }
        CHECK_EQ_INT(bad, 0);
        float sc;
        memcpy(&sc, x->data + (size_t)w->n_out * 288 / 4, 4);
        CHECK(sc == w->scale);
        gguf_close(&g);
    }
    /* 1bitLLM's SiLU BitNet with its SentencePiece vocabulary: bitnet-b1.58 as bitnet.cpp
     * writes it, tokenizer.ggml.model "llama" (pieces, scores, types); it reads back as the
     * same weights, SiLU with both sub-norms, tied, and the same tokenizer. The shape has the
     * 3B's FFN width 8640 and hidden rows of 400 (no multiple of 128 either): every linear takes
     * the flattened layout. */
    {
        char tm[1100];
        snprintf(tm, sizeof tm, "%s/families/onebit/tokenizer.model", BN_TEST_DATA);
        ModelConfig oc = model_config_tiny();
        oc.n_layers = 1, oc.dim = 400, oc.n_heads = 4, oc.n_kv_heads = 4, oc.head_dim = 100;
        oc.ffn_dim = 8640, oc.vocab_size = 400, oc.ctx_len = 256, oc.rope_theta = 10000.0f;
        oc.ffn_act = FFN_SILU, oc.sub_norms = 1, oc.tied = 1, oc.bos_id = 1, oc.n_stop = 0;
        Model o, p2;
        REQUIRE(model_init_random(&o, &oc, 11, &err) == 0);
        o.tok = model_load_tokenizer(tm, &err);
        REQUIRE(o.tok);
        if (gguf_write_model(&o, path, NULL, 0, &err)) {
            CHECK_MSG(0, "convert of a 1bitLLM-style model: %s", err.msg);
        } else if (model_load(&p2, path, NULL, &err)) {
            CHECK_MSG(0, "1bitLLM-style round trip: reading back: %s", err.msg);
        } else {
            char why[256] = "";
            CHECK_MSG(model_weights_equal(&o, &p2, why, sizeof why) == 0, "1bitLLM-style round trip: %s", why);
            CHECK_STREQ(p2.cfg.arch, "bitnet-b1.58");
            CHECK(p2.cfg.ffn_act == FFN_SILU && p2.cfg.sub_norms && p2.cfg.tied);
            CHECK_EQ_INT(tokenizer_bos(p2.tok), tokenizer_bos(o.tok));
            CHECK_EQ_INT(tokenizer_eos(p2.tok), tokenizer_eos(o.tok));
            static const char *texts[] = {"Hello world", "  two leading spaces", "caf\xc3\xa9 \xe2\x9c\x93"};
            for (int i = 0; i < 3; i++) {
                int32_t *x = NULL, *y = NULL;
                size_t nx = 0, ny = 0;
                REQUIRE(tokenizer_encode(o.tok, texts[i], strlen(texts[i]), &x, &nx, &err) == 0);
                REQUIRE(tokenizer_encode(p2.tok, texts[i], strlen(texts[i]), &y, &ny, &err) == 0);
                CHECK_MSG(nx == ny && !memcmp(x, y, nx * sizeof *x), "\"%s\" encodes differently after convert",
                          texts[i]);
                free(x);
                free(y);
            }
            model_free(&p2);
        }
        model_free(&o);
        /* a SentencePiece model read from tokenizer.json (merge ranks) has no GGUF form */
        char tj[1100];
        snprintf(tj, sizeof tj, "%s/families/spm_json/legacy/tokenizer.json", BN_TEST_DATA);
        REQUIRE(model_init_random(&o, &oc, 11, &err) == 0);
        o.tok = model_load_tokenizer(tj, &err);
        REQUIRE(o.tok);
        CHECK_EQ_INT(gguf_write_model(&o, path, NULL, 0, &err), -1);
        CHECK_MSG(strstr(err.msg, "tokenizer.model") != NULL, "%s", err.msg);
        model_free(&o);
    }
    /* a matrix that is not a whole number of 128-value blocks cannot be I2_S at all */
    Model e;
    ModelConfig ec = model_config_tiny();
    ec.ffn_dim = 100; /* 64 x 100 = 6400 = 50 blocks: fine; the o_proj... */
    ec.dim = 72;      /* ... 72 x 100 = 7200 is not */
    ec.n_heads = 4, ec.n_kv_heads = 2, ec.head_dim = 18;
    REQUIRE(model_init_random(&e, &ec, 7, &err) == 0);
    e.tok = c.tok; /* any tokenizer: the tensors are refused first */
    CHECK_EQ_INT(gguf_write_model(&e, path, NULL, 0, &err), -1);
    CHECK_MSG(strstr(err.msg, "whole number") != NULL, "%s", err.msg);
    e.tok = NULL;
    model_free(&e);
    model_free(&c);
    model_free(&a);
    unlink(path);
    rmdir(out);
}

/* 1bitLLM's layout (its logits: test_forward_onebit): read as a SiLU BitNet block with both
 * sub-norms under their 1bitLLM names, tied, head_dim 100; no template means the plain format,
 * said so. convert refuses this fixture only for its shape: down_proj's 200 x 270 weights are no
 * whole number of I2_S blocks (test_convert writes a 1bitLLM-style model that is). */
static void test_onebit(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/families/onebit", BN_TEST_DATA);
    Model m;
    Err err = {{0}};
    REQUIRE(model_load(&m, dir, NULL, &err) == 0);
    CHECK(m.cfg.ffn_act == FFN_SILU && m.cfg.sub_norms && m.cfg.tied);
    CHECK(m.layers[1].attn_sub_norm && m.layers[1].ffn_sub_norm && m.output.data == m.tok_embd.data);
    CHECK_EQ_INT(m.cfg.head_dim, 100);
    CHECK_EQ_INT(m.cfg.chat_format, CHAT_PLAIN);
    CHECK(strstr(m.chat_note, "no chat template") != NULL);
    CHECK_EQ_INT(m.cfg.stop_ids[0], tokenizer_eos(m.tok));
    CHECK_EQ_INT(gguf_write_model(&m, "/tmp/bn_families_never.gguf", NULL, 0, &err), -1);
    CHECK_MSG(strstr(err.msg, "whole number") != NULL, "%s", err.msg);
    model_free(&m);
}

/* Waits for req's end (EV_LOADED / EV_LOAD_FAILED / EV_DONE, or 60 s): returns its type and
 * fills *last with that event; EV_ERROR of req counts as a failure. */
static int wait_end(Engine *e, uint64_t req, EngineEvent *last) {
    EngineEvent ev;
    for (int waited = 0; waited < 600;) {
        const int n = engine_wait(e, &ev, 1, 100);
        if (n == 0) waited++;
        if (n == 0 || ev.req != req) continue;
        if (ev.type == EV_LOADED || ev.type == EV_LOAD_FAILED || ev.type == EV_DONE || ev.type == EV_ERROR) {
            *last = ev;
            return ev.type;
        }
    }
    return -1;
}

/* /load between families at run time: one engine loads each family in turn (CPU), reports the
 * chat format it found, and answers a chat rendered in that family's format (the prompt
 * tokens are those chat_template_tokens gives for the model, so the format travels with it). */
static void test_engine_switch(void) {
    static const char *dirs[] = {"families/llama3", "families/falcon3", "families/onebit",
                                 "hf_ref/model", "families/falcon3/i2s.gguf"};
    static const char *formats[] = {"llama3", "falcon3", "plain", "bitnet", "falcon3"};
    EngineOptions eo = {.model_path = NULL, .infer = {.backend = BACKEND_CPU, .threads = 2, .ctx = 128}};
    Err err = {{0}};
    Engine *e = engine_create(&eo, &err);
    REQUIRE(e);
    for (int i = 0; i < 5; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", BN_TEST_DATA, dirs[i]);
        EngineEvent ev;
        const int ty = wait_end(e, engine_load(e, path), &ev);
        if (ty != EV_LOADED) {
            CHECK_MSG(0, "engine load of %s: %s", dirs[i], ty == EV_LOAD_FAILED ? ev.u.error.msg : "no answer");
            continue;
        }
        CHECK_STREQ(ev.u.loaded.chat_format, formats[i]);
        CHECK_MSG(!strcmp(formats[i], "plain") == (ev.u.loaded.chat_note[0] != 0),
                  "%s: note \"%s\"", dirs[i], ev.u.loaded.chat_note);
        Model m;
        REQUIRE(model_load(&m, path, NULL, &err) == 0);
        ChatTokens ct;
        REQUIRE(chat_template_tokens(m.tok, m.cfg.chat_format, CONVERSATION, 2, 1, &ct, &err) == 0);
        SamplerParams sp = sampler_params_default();
        sp.temperature = 0.0f;
        sp.max_tokens = 3;
        const int dt = wait_end(e, engine_submit(e, CONVERSATION, 2, &sp), &ev);
        CHECK_MSG(dt == EV_DONE, "%s: the chat did not finish (%s)", dirs[i],
                  dt == EV_ERROR ? ev.u.error.msg : "no EV_DONE");
        if (dt == EV_DONE) {
            CHECK_EQ_INT(ev.u.done.stats.prompt_tokens, ct.n_ids);
            CHECK(ev.u.done.reason == STOP_EOS || ev.u.done.reason == STOP_MAX_TOKENS);
        }
        chat_tokens_free(&ct);
        model_free(&m);
    }
    engine_destroy(e);
}

/* SentencePiece (infer/tokenizer_spm.c): the onebit fixture's tokenizer.model, and the same
 * pieces from its GGUF (tokenizer.ggml.model "llama"), encode as the sentencepiece package
 * does (reference.txt "spm" lines: dummy prefix, runs of spaces, byte fallback for characters
 * without a piece, a literal U+2581), and decode back to the text with its leading space. The
 * GGUF (arch bitnet-b1.58 with a SentencePiece vocabulary) is read as 1bitLLM: SiLU. */
static void test_spm(void) {
    char dir[1024], path[1100], line[4096];
    snprintf(dir, sizeof dir, "%s/families/onebit", BN_TEST_DATA);
    snprintf(path, sizeof path, "%s/f16.gguf", dir);
    Err err = {{0}};
    /* and the folder as 1bitLLM ships it: tokenizer.json (transformers' legacy conversion of
     * the same model, spm_json/legacy) beside tokenizer.model, which the JSON reader now reads */
    char both[] = "/tmp/bn_spm_json_XXXXXX", src[1100], dst[1100];
    REQUIRE(mkdtemp(both));
    static const char *files[] = {"tokenizer.model", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s", dir, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", both, files[i]);
        REQUIRE(symlink(src, dst) == 0);
    }
    snprintf(src, sizeof src, "%s/families/spm_json/legacy/tokenizer.json", BN_TEST_DATA);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", both);
    REQUIRE(symlink(src, dst) == 0);
    Tokenizer *tk[3] = {model_load_tokenizer(dir, &err), model_load_tokenizer(path, &err),
                        model_load_tokenizer(dst, &err)};
    REQUIRE(tk[0] && tk[1] && tk[2]);
    /* the folder with both reads tokenizer.model, the original (the one with a GGUF form) */
    Tokenizer *folder = model_load_tokenizer(both, &err);
    CHECK_MSG(folder != NULL, "%s: %s", both, err.msg);
    CHECK(folder && tokenizer_spm(folder) && spm_gguf_form(tokenizer_spm(folder), &err) == 0);
    CHECK(tokenizer_spm(tk[2]) && spm_gguf_form(tokenizer_spm(tk[2]), &err) == -1);
    tokenizer_free(folder);
    /* and without tokenizer.model, tokenizer.json */
    snprintf(src, sizeof src, "%s/tokenizer.model", both);
    REQUIRE(unlink(src) == 0);
    folder = model_load_tokenizer(both, &err);
    CHECK_MSG(folder && tokenizer_spm(folder) && spm_gguf_form(tokenizer_spm(folder), &err) == -1,
              "%s without tokenizer.model: %s", both, err.msg);
    tokenizer_free(folder);
    CHECK_EQ_INT(tokenizer_bos(tk[2]), tokenizer_bos(tk[0]));
    CHECK_EQ_INT(tokenizer_eos(tk[2]), tokenizer_eos(tk[0]));
    snprintf(path, sizeof path, "%s/reference.txt", dir);
    FILE *f = fopen(path, "r");
    REQUIRE(f);
    int n_cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "spm ", 4)) continue;
        json_error_t je;
        json_t *js = json_loads(line + 4, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
        REQUIRE(json_is_string(js));
        const char *text = json_string_value(js);
        int want[256], n;
        const char *rest = line + 4 + je.position;
        n = atoi(rest);
        while (*rest == ' ') rest++;
        rest = strchr(rest, ' ');
        REQUIRE(read_ints(rest ? rest : "", want, 256) == n);
        for (int k = 0; k < 3; k++) {
            int32_t *ids = NULL;
            size_t n_ids = 0;
            REQUIRE(tokenizer_encode(tk[k], text, strlen(text), &ids, &n_ids, &err) == 0);
            int same = (int)n_ids == n;
            for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
            CHECK_MSG(same, "%s: \"%s\" encodes to %zu ids, sentencepiece %d",
                      k == 2 ? "tokenizer.json" : k ? "gguf" : "tokenizer.model", text, n_ids, n);
            /* decoding: the pieces' bytes give back the text after the dummy-prefix space */
            char buf[1024];
            size_t o = 0;
            for (size_t i = 0; i < n_ids && o < 900; i++) {
                size_t l;
                const char *b = tokenizer_token_bytes(tk[k], ids[i], &l);
                memcpy(buf + o, b, l);
                o += l;
            }
            buf[o] = 0;
            /* (a U+2581 the user typed comes back as a space, in sentencepiece too) */
            if (!strstr(text, "\xe2\x96\x81"))
                CHECK_MSG(o > 0 && buf[0] == ' ' && !strcmp(buf + 1, text), "decode of \"%s\": \"%s\"",
                          text, buf);
            free(ids);
        }
        json_decref(js);
        n_cases++;
    }
    fclose(f);
    CHECK_EQ_INT(n_cases, 11);
    CHECK_EQ_INT(tokenizer_bos(tk[0]), tokenizer_find(tk[0], "<s>"));
    CHECK_EQ_INT(tokenizer_eos(tk[1]), tokenizer_find(tk[1], "</s>"));
    CHECK(tokenizer_is_special(tk[0], tokenizer_bos(tk[0])) && !tokenizer_is_special(tk[0], 300));
    /* "<s>" typed as text is text */
    int32_t *ids = NULL;
    size_t n_ids = 0;
    REQUIRE(tokenizer_encode(tk[0], "<s>", 3, &ids, &n_ids, &err) == 0);
    for (size_t i = 0; i < n_ids; i++) CHECK(ids[i] != tokenizer_bos(tk[0]));
    free(ids);
    CHECK(tokenizer_vocab(tk[0]) == NULL);
    tokenizer_free(tk[0]);
    tokenizer_free(tk[1]);
    tokenizer_free(tk[2]);
    for (int i = 0; i < 3; i++) {
        snprintf(dst, sizeof dst, "%s/%s", both, i < 2 ? files[i] : "tokenizer.json");
        unlink(dst);
    }
    rmdir(both);

    /* the GGUF form is the HF folder's model */
    Model a, b;
    REQUIRE(model_load(&a, dir, NULL, &err) == 0);
    snprintf(path, sizeof path, "%s/f16.gguf", dir);
    if (model_load(&b, path, NULL, &err)) {
        CHECK_MSG(0, "%s", err.msg);
    } else {
        char why[256] = "";
        CHECK(b.cfg.ffn_act == FFN_SILU && b.cfg.sub_norms && b.cfg.tied);
        CHECK_MSG(model_weights_equal(&a, &b, why, sizeof why) == 0, "onebit GGUF vs HF: %s", why);
        model_free(&b);
    }
    model_free(&a);
    /* a tokenizer.model that is not one */
    snprintf(path, sizeof path, "%s/config.json", dir);
    SpmModel *bad = spm_load_file(path, &err);
    CHECK(bad == NULL && strstr(err.msg, "config.json") != NULL);
}

int main(void) {
    test_family("llama3", 64, 500000.0f, 1e-5f, CHAT_LLAMA3);
    test_family("falcon3", 128, 1000042.0f, 1e-6f, CHAT_FALCON3);
    test_gguf_forms();
    test_convert();
    test_onebit();
    test_spm();
    test_engine_switch();
    test_chatml();
    test_published_templates();
    test_spm_json();
    test_refusals();
    return check_report("test_families");
}
