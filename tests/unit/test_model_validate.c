/* Loader validations: files that parse but cannot be used are refused at load, with one line
 * that names the file (and the tensor or key), instead of loading and failing later or
 * silently misbehaving. Each case starts from a copy of the hf_bf16 fixture (or i2s.gguf) with
 * one thing changed:
 *   - tokenizers: empty vocabulary, a missing byte token, two tokens with one string, no end
 *     token at all (GGUF and HF), a tokenizer_config eos_token that names no token;
 *   - special ids: bos 2^31, eos = vocab size, eos 999999, eos -5, a list of 100000;
 *   - weights: NaN and infinite ternary weights, a NaN norm;
 *   - safetensors: two tensors sharing bytes;
 *   - messages: a 1-D and a 5-D shape shown as they are, a GGUF tensor offset that wraps. */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "infer/gguf.h"
#include "infer/model.h"
#include "infer/tokenizer.h"
#include "test_util.h"

#define FIXDIR BN_TEST_DATA "/models"

static char tmp[256];

static void spill(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(p, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

/* A fresh copy of fixture in tmp/name; returns its path (static buffer). */
static const char *fresh(const char *fixture, const char *name) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    mkdir(dir, 0755);
    char from[512];
    snprintf(from, sizeof from, FIXDIR "/%s", fixture);
    DIR *d = opendir(from);
    REQUIRE(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char a[800], b[800];
        snprintf(a, sizeof a, "%s/%s", from, de->d_name);
        snprintf(b, sizeof b, "%s/%s", dir, de->d_name);
        size_t n;
        char *p = read_file(a, &n);
        REQUIRE(p);
        spill(b, p, n);
        free(p);
    }
    closedir(d);
    return dir;
}

static json_t *load_json(const char *dir, const char *file) {
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    REQUIRE(j);
    return j;
}

static void save_json(const char *dir, const char *file, json_t *j) {
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    REQUIRE(json_dump_file(j, p, JSON_INDENT(1) | JSON_PRESERVE_ORDER) == 0);
    json_decref(j);
}

/* model.safetensors split into its header (parsed) and data; written back by st_save. */
typedef struct {
    json_t *hdr;
    char *data;
    size_t n_data;
} StFile;

static StFile st_load(const char *dir) {
    char p[800];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    size_t n;
    char *raw = read_file(p, &n);
    REQUIRE(raw && n >= 8);
    uint64_t hl;
    memcpy(&hl, raw, 8);
    StFile f;
    json_error_t je;
    f.hdr = json_loadb(raw + 8, (size_t)hl, 0, &je);
    REQUIRE(f.hdr);
    f.n_data = n - 8 - (size_t)hl;
    f.data = malloc(f.n_data);
    memcpy(f.data, raw + 8 + hl, f.n_data);
    free(raw);
    return f;
}

static void st_save(const char *dir, StFile *f) {
    char *h = json_dumps(f->hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t hl = strlen(h), padded = (hl + 7) / 8 * 8;
    size_t total = 8 + padded + f->n_data;
    char *out = malloc(total);
    uint64_t hl64 = padded;
    memcpy(out, &hl64, 8);
    memcpy(out + 8, h, hl);
    memset(out + 8 + hl, ' ', padded - hl);
    memcpy(out + 8 + padded, f->data, f->n_data);
    char p[800];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    spill(p, out, total);
    free(out);
    free(h);
    free(f->data);
    json_decref(f->hdr);
}

/* The bytes of tensor name inside f->data. */
static char *st_bytes(StFile *f, const char *name, size_t *n) {
    json_t *off = json_object_get(json_object_get(f->hdr, name), "data_offsets");
    REQUIRE(off);
    size_t b = (size_t)json_integer_value(json_array_get(off, 0)), e = (size_t)json_integer_value(json_array_get(off, 1));
    *n = e - b;
    return f->data + b;
}

/* model_load must fail with one line holding every string of want (NULL-terminated). */
static void refused(const char *what, const char *path, const char *const *want) {
    Model m;
    Err err = {{0}};
    int rc = model_load(&m, path, NULL, &err);
    CHECK_MSG(rc != 0, "%s: loaded", what);
    if (rc == 0) {
        model_free(&m);
        return;
    }
    printf("%-34s -> %s\n", what, err.msg);
    CHECK_MSG(!strchr(err.msg, '\n'), "%s: message has a new line", what);
    CHECK_MSG(!strstr(err.msg, "tokenizer: tokenizer:"), "%s: %s", what, err.msg);
    for (int i = 0; want[i]; i++)
        CHECK_MSG(strstr(err.msg, want[i]) != NULL, "%s: '%s' not in: %s", what, want[i], err.msg);
}
#define REFUSED(what, path, ...) refused(what, path, (const char *const[]){__VA_ARGS__, NULL})

static void loads(const char *what, const char *path) {
    Model m;
    Err err = {{0}};
    int rc = model_load(&m, path, NULL, &err);
    CHECK_MSG(rc == 0, "%s: %s", what, err.msg);
    if (rc == 0) model_free(&m);
}

/* ---- tokenizers ------------------------------------------------------------------------------ */

static void test_tokenizers(void) {
    char want[900];
    loads("the fixture itself", fresh("hf_bf16", "base"));

    const char *d = fresh("hf_bf16", "tok_empty");
    json_t *t = load_json(d, "tokenizer.json");
    json_object_set_new(json_object_get(t, "model"), "vocab", json_object());
    json_object_set_new(json_object_get(t, "model"), "merges", json_array());
    json_object_set_new(t, "added_tokens", json_array());
    save_json(d, "tokenizer.json", t);
    snprintf(want, sizeof want, "%s/tokenizer.json", d);
    REFUSED("empty vocabulary", d, want, "empty vocabulary");

    d = fresh("hf_bf16", "tok_nobyte");
    t = load_json(d, "tokenizer.json");
    json_t *v = json_object_get(json_object_get(t, "model"), "vocab");
    json_t *id = json_incref(json_object_get(v, "U"));
    json_object_del(v, "U");
    json_object_set_new(v, "<not-a-byte>", id);
    save_json(d, "tokenizer.json", t);
    snprintf(want, sizeof want, "%s/tokenizer.json", d);
    REFUSED("a byte without a token", d, want, "byte 0x55 has no token");

    /* "中" is not byte-level spelled (kept as its UTF-8 bytes); "ä¸Ń" spells the same bytes. */
    d = fresh("hf_bf16", "tok_dup");
    t = load_json(d, "tokenizer.json");
    v = json_object_get(json_object_get(t, "model"), "vocab");
    const char *keys[2] = {NULL, NULL};
    const char *k;
    json_t *val;
    json_object_foreach(v, k, val) {
        if (json_integer_value(val) == 298) keys[0] = k;
        if (json_integer_value(val) == 299) keys[1] = k;
    }
    REQUIRE(keys[0] && keys[1]);
    char k0[64], k1[64];
    snprintf(k0, sizeof k0, "%s", keys[0]);
    snprintf(k1, sizeof k1, "%s", keys[1]);
    json_object_del(v, k0);
    json_object_del(v, k1);
    json_object_set_new(v, "\xC3\xA4\xC2\xB8\xC5\x83", json_integer(298));
    json_object_set_new(v, "\xE4\xB8\xAD", json_integer(299));
    save_json(d, "tokenizer.json", t);
    snprintf(want, sizeof want, "%s/tokenizer.json", d);
    REFUSED("two tokens, one string", d, want, "tokens 298 and 299 stand for the same bytes");

    d = fresh("hf_bf16", "tok_noend");
    t = load_json(d, "tokenizer.json");
    json_t *added = json_object_get(t, "added_tokens");
    size_t i;
    json_array_foreach(added, i, val) {
        const char *c = json_string_value(json_object_get(val, "content"));
        const int end = !strcmp(c, "<|end_of_text|>"), eot = !strcmp(c, "<|eot_id|>");
        if (end) json_object_set_new(val, "content", json_string("<|gone_a|>")); /* frees c */
        if (eot) json_object_set_new(val, "content", json_string("<|gone_b|>"));
    }
    save_json(d, "tokenizer.json", t);
    t = load_json(d, "config.json");
    json_object_del(t, "eos_token_id");
    save_json(d, "config.json", t);
    t = load_json(d, "tokenizer_config.json");
    json_object_del(t, "eos_token");
    save_json(d, "tokenizer_config.json", t);
    REFUSED("no end token", d, d, "no end-of-text token");

    d = fresh("hf_bf16", "tok_cfg_eos");
    t = load_json(d, "tokenizer_config.json");
    json_object_set_new(t, "eos_token", json_string("<|no_such_token|>"));
    save_json(d, "tokenizer_config.json", t);
    REFUSED("tokenizer_config eos names nothing", d, "tokenizer_config.json", "eos_token", "<|no_such_token|>");

    /* The same checks on vocabularies built in memory (the GGUF path). */
    static const char *dup[] = {"a", "b", "a"};
    TokenizerVocab tv = {.n_tokens = 3, .tokens = dup, .bos_id = -1, .eos_id = -1, .eot_id = -1};
    Err err = {{0}};
    Tokenizer *tk = tokenizer_from_vocab(&tv, &err);
    REQUIRE(tk);
    CHECK(tokenizer_check(tk, &err) < 0 && strstr(err.msg, "tokens 0 and 2 stand for the same bytes"));
    tokenizer_free(tk);
    static const char *empty[] = {"a", "", "b"};
    tv.tokens = empty;
    tk = tokenizer_from_vocab(&tv, &err);
    REQUIRE(tk);
    CHECK(tokenizer_check(tk, &err) < 0 && strstr(err.msg, "token 1 is empty"));
    tokenizer_free(tk);
    /* every byte present, two specials with one text */
    const char *full[260];
    char store[256][8];
    TokenizerVocab fv = {.n_tokens = 0, .bos_id = -1, .eos_id = -1, .eot_id = -1};
    for (int b = 0; b < 256; b++) {
        /* GPT-2 byte-level spelling: printable Latin-1 bytes as themselves, the rest from U+0100 */
        int cp = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE) ? b : -1;
        static int next = 0x100;
        if (cp < 0) cp = next++;
        if (cp < 0x80) store[b][0] = (char)cp, store[b][1] = 0;
        else store[b][0] = (char)(0xC0 | (cp >> 6)), store[b][1] = (char)(0x80 | (cp & 0x3F)), store[b][2] = 0;
        full[b] = store[b];
    }
    full[256] = "<|eot_id|>";
    full[257] = "<|eot_id|>";
    int32_t types[258];
    for (int i2 = 0; i2 < 258; i2++) types[i2] = i2 < 256 ? TOKTYPE_NORMAL : TOKTYPE_CONTROL;
    fv.n_tokens = 258;
    fv.tokens = full;
    fv.token_types = types;
    tk = tokenizer_from_vocab(&fv, &err);
    REQUIRE(tk);
    CHECK_MSG(tokenizer_check(tk, &err) < 0 && strstr(err.msg, "special tokens 256 and 257"), "%s", err.msg);
    tokenizer_free(tk);
    fv.n_tokens = 257; /* one special: usable */
    tk = tokenizer_from_vocab(&fv, &err);
    REQUIRE(tk);
    CHECK_MSG(tokenizer_check(tk, &err) == 0, "%s", err.msg);
    tokenizer_free(tk);
}

/* ---- special ids ----------------------------------------------------------------------------- */

static void special_case(const char *name, const char *key, json_t *value, const char *want) {
    const char *d = fresh("hf_bf16", name);
    json_t *c = load_json(d, "config.json");
    json_object_set_new(c, key, value);
    save_json(d, "config.json", c);
    REFUSED(name, d, "config.json", key, want);
}

static void test_special_ids(void) {
    special_case("bos 2^31", "bos_token_id", json_integer(2147483648LL), "2147483648");
    special_case("eos = vocab size", "eos_token_id", json_integer(305), "305");
    special_case("eos 999999", "eos_token_id", json_integer(999999), "999999");
    special_case("eos -5", "eos_token_id", json_integer(-5), "-5");
    json_t *big = json_array();
    for (int i = 0; i < 100000; i++) json_array_append_new(big, json_integer(301));
    special_case("eos list of 100000", "eos_token_id", big, "100000");
    json_t *mixed = json_array();
    json_array_append_new(mixed, json_integer(301));
    json_array_append_new(mixed, json_integer(4000));
    special_case("eos list with a stranger", "eos_token_id", mixed, "4000");
}

/* ---- weights --------------------------------------------------------------------------------- */

static void poison(const char *name, const char *tensor, uint16_t bf16, int all) {
    const char *d = fresh("hf_bf16", name);
    StFile f = st_load(d);
    size_t n;
    char *p = st_bytes(&f, tensor, &n);
    for (size_t i = 0; i < n; i += 2)
        if (all || i == n / 2) memcpy(p + i, &bf16, 2);
    st_save(d, &f);
    REFUSED(name, d, tensor, "non-finite");
}

static void test_non_finite(void) {
    poison("all NaN weights", "model.layers.1.self_attn.q_proj.weight", 0x7FC0, 1);
    poison("one inf weight", "model.layers.0.mlp.down_proj.weight", 0x7F80, 0);
    poison("one -inf weight", "model.layers.0.mlp.up_proj.weight", 0xFF80, 0);
    poison("NaN in a norm", "model.layers.0.mlp.ffn_sub_norm.weight", 0x7FC0, 0);
}

/* ---- safetensors layout and messages --------------------------------------------------------- */

static void test_layout(void) {
    /* two norms of one size made to share the bytes of one */
    const char *d = fresh("hf_bf16", "overlap");
    StFile f = st_load(d);
    json_t *a = json_object_get(f.hdr, "model.layers.0.input_layernorm.weight");
    json_t *b = json_object_get(f.hdr, "model.layers.0.post_attention_layernorm.weight");
    json_object_set(b, "data_offsets", json_object_get(a, "data_offsets"));
    st_save(d, &f);
    REFUSED("overlapping tensors", d, "model.safetensors", "overlap",
            "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight");
    /* a partial overlap: one tensor starts inside another */
    d = fresh("hf_bf16", "overlap2");
    f = st_load(d);
    a = json_object_get(f.hdr, "model.layers.1.input_layernorm.weight");
    json_t *off = json_object_get(a, "data_offsets");
    json_int_t s0 = json_integer_value(json_array_get(off, 0)) + 2;
    json_t *no = json_array();
    json_array_append_new(no, json_integer(s0));
    json_array_append_new(no, json_integer(s0 + 256));
    json_object_set_new(json_object_get(f.hdr, "model.layers.1.post_attention_layernorm.weight"), "data_offsets", no);
    st_save(d, &f);
    REFUSED("partly overlapping tensors", d, "model.safetensors", "overlap");

    /* 1-D tensor of 256 given as [128, 2]: both shapes shown as they are */
    d = fresh("hf_bf16", "shape1d");
    f = st_load(d);
    json_t *sh = json_array();
    json_array_append_new(sh, json_integer(128));
    json_array_append_new(sh, json_integer(2));
    json_object_set_new(json_object_get(f.hdr, "model.layers.0.mlp.ffn_sub_norm.weight"), "shape", sh);
    st_save(d, &f);
    REFUSED("1-D shape message", d, "model.layers.0.mlp.ffn_sub_norm.weight", "has shape [128, 2], expected [256]");

    d = fresh("hf_bf16", "shape5d");
    f = st_load(d);
    sh = json_array();
    static const int dims[5] = {2, 2, 2, 2, 16};
    for (int i = 0; i < 5; i++) json_array_append_new(sh, json_integer(dims[i]));
    json_object_set_new(json_object_get(f.hdr, "model.layers.0.mlp.ffn_sub_norm.weight"), "shape", sh);
    st_save(d, &f);
    REFUSED("5-D shape message", d, "has shape [2, 2, 2, 2, 16], expected [256]");
}

/* GGUF: a tensor offset near 2^64 must not be reported as a place inside the file. */
static void test_gguf_offset_wrap(void) {
    size_t n;
    char *raw = read_file(FIXDIR "/i2s.gguf", &n);
    REQUIRE(raw);
    GgufFile g;
    Err err = {{0}};
    REQUIRE(gguf_parse(&g, raw, n, "i2s.gguf", &err) == 0);
    REQUIRE(g.n_tensors > 0);
    /* tensor info: u64 name length, name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset */
    const GgufTensor *t = &g.tensors[0];
    size_t nl = t->name.len;
    char *hit = NULL;
    for (size_t i = 0; i + 8 + nl <= n && !hit; i++) {
        uint64_t l;
        memcpy(&l, raw + i, 8);
        if (l == nl && !memcmp(raw + i + 8, t->name.ptr, nl)) hit = raw + i;
    }
    REQUIRE(hit);
    size_t at = (size_t)(hit - raw) + 8 + nl + 4 + 8 * t->n_dims + 4;
    gguf_close(&g);
    uint64_t wrap = (uint64_t)0 - 64; /* aligned; + the data offset wraps to a small number */
    memcpy(raw + at, &wrap, 8);
    char p[400];
    snprintf(p, sizeof p, "%s/wrap.gguf", tmp);
    spill(p, raw, n);
    free(raw);
    char offs[64];
    snprintf(offs, sizeof offs, "%llu", (unsigned long long)wrap);
    REFUSED("GGUF offset that wraps", p, "wrap.gguf", "lies outside", offs);
}

/* A copy of i2s.gguf with one thing changed at the first place the bytes `find` occur (after
 * `skip` bytes of them): `with` written over the bytes that follow. */
static void gguf_patch(const char *name, const void *find, size_t fn, size_t skip, const void *with,
                       size_t wn, char *path, size_t cap) {
    size_t n;
    char *raw = read_file(FIXDIR "/i2s.gguf", &n);
    REQUIRE(raw);
    char *hit = memmem(raw, n, find, fn);
    REQUIRE(hit && (size_t)(hit - raw) + fn + skip + wn <= n);
    if (wn) memcpy(hit + fn + skip, with, wn);
    snprintf(path, cap, "%s/%s", tmp, name);
    spill(path, raw, n);
    free(raw);
}

static void test_gguf_tokenizer(void) {
    char p[400];
    /* tokenizer.ggml.eos_token_id: key, then u32 type, then the value */
    static const char key[] = "tokenizer.ggml.eos_token_id";
    int32_t bad = 999999;
    gguf_patch("eos999999.gguf", key, sizeof key - 1, 4, &bad, 4, p, sizeof p);
    REFUSED("GGUF eos 999999", p, "eos999999.gguf", "tokenizer.ggml.eos_token_id", "999999");
    /* the one-byte token "U" (u64 length 1, then the byte) spelled as a space: byte 0x55 has no
     * token and the space's raw bytes repeat the token for 0x20 */
    static const char u_tok[9] = {1, 0, 0, 0, 0, 0, 0, 0, 'U'};
    gguf_patch("nou.gguf", u_tok, 9, 0, NULL, 0, p, sizeof p);
    {
        size_t n;
        char *raw = read_file(p, &n);
        char *hit = memmem(raw, n, u_tok, 9);
        REQUIRE(hit);
        hit[8] = ' ';
        spill(p, raw, n);
        free(raw);
    }
    REFUSED("GGUF token repeated", p, "nou.gguf: tokenizer: ", "the same bytes");
}

/* convert refuses what the loader refuses: exit 1, the reason on stderr, no output file. */
static void convert_refused(const char *what, const char *src, const char *want) {
    char out[400], errf[400], cmd[2000];
    snprintf(out, sizeof out, "%s/converted.gguf", tmp);
    snprintf(errf, sizeof errf, "%s/convert.err", tmp);
    unlink(out);
    snprintf(cmd, sizeof cmd, "'%s/bitnet-chat' convert '%s' '%s' >/dev/null 2>'%s'", BN_BINARY_DIR,
             src, out, errf);
    int rc = system(cmd);
    size_t n = 0;
    char *msg = read_file(errf, &n);
    CHECK_MSG(rc != 0, "convert %s: exit 0", what);
    CHECK_MSG(access(out, F_OK) != 0, "convert %s: left %s behind", what, out);
    CHECK_MSG(msg && strstr(msg, want), "convert %s: '%s' not in: %s", what, want, msg ? msg : "");
    free(msg);
}

static void test_convert(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/all NaN weights", tmp);
    convert_refused("NaN weights", p, "model.layers.1.self_attn.q_proj.weight");
    snprintf(p, sizeof p, "%s/one inf weight", tmp);
    convert_refused("an inf weight", p, "model.layers.0.mlp.down_proj.weight");
    snprintf(p, sizeof p, "%s/tok_nobyte", tmp);
    convert_refused("a byte without a token", p, "tokenizer.json");
    snprintf(p, sizeof p, "%s/tok_noend", tmp);
    convert_refused("no end token", p, "no end-of-text token");
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/bn-validate-XXXXXX");
    REQUIRE(mkdtemp(tmp));
    test_tokenizers();
    test_special_ids();
    test_non_finite();
    test_layout();
    test_gguf_offset_wrap();
    test_gguf_tokenizer();
    test_convert(); /* on folders the cases above made */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    return check_report("test_model_validate");
}
