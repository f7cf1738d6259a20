/* Tokenizer: every Llama 3 vector (Hugging Face ids), through each way of building the
 * tokenizer (tokenizer.json with "a b" merges, with ["a","b"] pair merges, GGUF-style arrays),
 * the fast path against the plain reference on random and hostile input, and malformed files.
 * argv[1]: the folder holding the unpacked Llama 3 tokenizer.json + tokenizer_config.json. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/tokenizer.h"

typedef struct {
    char *text;
    size_t len;
    int32_t *ids;
    size_t n_ids;
} Vector;

static Vector *load_vectors(const char *path, size_t *n) {
    FILE *f = fopen(path, "r");
    REQUIRE(f != NULL);
    Vector *v = NULL;
    size_t cap = 0;
    *n = 0;
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
        REQUIRE(o != NULL);
        json_t *text = json_object_get(o, "text"), *ids = json_object_get(o, "ids");
        REQUIRE(json_is_string(text) && json_is_array(ids));
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            v = realloc(v, cap * sizeof *v);
            REQUIRE(v != NULL);
        }
        Vector *x = &v[(*n)++];
        x->len = json_string_length(text);
        x->text = malloc(x->len + 1);
        memcpy(x->text, json_string_value(text), x->len + 1);
        x->n_ids = json_array_size(ids);
        x->ids = malloc((x->n_ids + 1) * sizeof *x->ids);
        for (size_t i = 0; i < x->n_ids; i++) x->ids[i] = (int32_t)json_integer_value(json_array_get(ids, i));
        json_decref(o);
    }
    free(line);
    fclose(f);
    return v;
}

static void free_vectors(Vector *v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i].text), free(v[i].ids);
    free(v);
}

static int same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Encodes every vector with the fast path (and the reference when `reference`); returns the
 * number that matched exactly. */
static size_t check_vectors(const Tokenizer *t, const Vector *v, size_t n, int reference,
                            const char *what) {
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t *ids = NULL;
        size_t nids = 0;
        Err err = {{0}};
        int rc = reference ? tokenizer_encode_reference(t, v[i].text, v[i].len, &ids, &nids, &err)
                           : tokenizer_encode(t, v[i].text, v[i].len, &ids, &nids, &err);
        CHECK_MSG(rc == 0, "%s: %s", what, err.msg);
        int same = rc == 0 && same_ids(ids, nids, v[i].ids, v[i].n_ids);
        CHECK_MSG(same, "%s: vector %zu \"%.60s\" differs", what, i, v[i].text);
        if (!same && rc == 0) {
            print_ids("expected", v[i].ids, v[i].n_ids);
            print_ids("got     ", ids, nids);
        }
        ok += same;
        free(ids);
    }
    return ok;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    REQUIRE(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* The newer tokenizer.json form: merges as ["left", "right"] pairs. */
static char *to_pair_merges(const char *json, size_t len, size_t *out_len) {
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    REQUIRE(root != NULL);
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    REQUIRE(json_is_array(merges));
    json_t *pairs = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        const char *s = json_string_value(m);
        REQUIRE(s != NULL);
        const char *sp = strchr(s, ' ');
        REQUIRE(sp != NULL);
        json_array_append_new(pairs, json_pack("[s#s]", s, (int)(sp - s), sp + 1));
    }
    json_object_set_new(json_object_get(root, "model"), "merges", pairs);
    char *out = json_dumps(root, JSON_COMPACT);
    REQUIRE(out != NULL);
    json_decref(root);
    *out_len = strlen(out);
    return out;
}

static uint64_t rng_state = 0x1234567887654321ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Decoding the ids gives back exactly the input bytes. */
static int round_trips(const Tokenizer *t, const char *text, size_t len, const int32_t *ids,
                       size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t bl;
        const char *b = tokenizer_token_bytes(t, ids[i], &bl);
        if (!b || tokenizer_is_special(t, ids[i]) || o + bl > len || memcmp(text + o, b, bl))
            return 0;
        o += bl;
    }
    return o == len;
}

/* Fast vs reference (pieces and ids) and round trip on one input. */
static int compare_paths(const Tokenizer *t, const char *s, size_t n) {
    size_t *b1 = NULL, *b2 = NULL, n1 = 0, n2 = 0;
    int32_t *i1 = NULL, *i2 = NULL;
    size_t m1 = 0, m2 = 0;
    Err err = {{0}};
    int ok = tokenizer_pretokenize(t, s, n, 0, &b1, &n1, &err) == 0 &&
             tokenizer_pretokenize(t, s, n, 1, &b2, &n2, &err) == 0 && n1 == n2 &&
             memcmp(b1, b2, (n1 + 1) * sizeof *b1) == 0;
    ok = ok && tokenizer_encode(t, s, n, &i1, &m1, &err) == 0 &&
         tokenizer_encode_reference(t, s, n, &i2, &m2, &err) == 0 && same_ids(i1, m1, i2, m2) &&
         round_trips(t, s, n, i1, m1);
    free(b1), free(b2), free(i1), free(i2);
    return ok;
}

static void test_random_inputs(const Tokenizer *t) {
    /* Pieces that meet at the edges of the regex's classes, ASCII and not. */
    static const char *atoms[] = {
        "a", "Z", "q", "0", "7", " ", "  ", "\t", "\n", "\r", "\r\n", "\v", "\f", "'", "'s", "'S",
        "'ll", "'Re", "'ve", "'d", "'m", "'t", "!", "?", ".", ",", "-", "_", "(", ")", "\"", "#",
        "\x01", "\x1c", "\x1f", "\x7f", "\xc3\xa9" /* é */, "\xc5\xbf" /* ſ */,
        "\xe2\x84\xaa" /* Kelvin */, "\xd9\xa3" /* Arabic 3 */, "\xc2\xbd" /* ½ */,
        "\xc2\xa0" /* NBSP */, "\xe2\x80\x83" /* em space */, "\xc2\x85" /* NEL */,
        "\xe3\x80\x80" /* ideographic space */, "\xe2\x80\x94" /* — */, "\xe6\x97\xa5" /* 日 */,
        "\xf0\x9f\xa4\x96" /* 🤖 */, "\xcc\x81" /* combining acute */, "\xe2\x80\x8d" /* ZWJ */,
        "\xff", "\x80", "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xed\xa0\x80", "\xc0\xaf",
        "hello", " world", "123456", "<|eot_id|>",
    };
    const size_t n_atoms = sizeof atoms / sizeof *atoms;
    char buf[1024];
    int bad = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 0;
        int parts = 1 + (int)(rnd() % 24);
        for (int k = 0; k < parts; k++) {
            const char *a = atoms[rnd() % n_atoms];
            size_t l = strlen(a);
            if (n + l >= sizeof buf) break;
            memcpy(buf + n, a, l);
            n += l;
        }
        if (!compare_paths(t, buf, n)) {
            if (bad++ < 5) {
                fprintf(stderr, "  fast/reference mismatch on:");
                for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", (unsigned char)buf[i]);
                fprintf(stderr, "\n");
            }
        }
    }
    CHECK_MSG(bad == 0, "%d random inputs differ between fast and reference", bad);
    /* Raw random bytes (mostly invalid UTF-8) never crash and round-trip. */
    bad = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = rnd() % 200;
        for (size_t i = 0; i < n; i++) buf[i] = (char)(rnd() % 4 == 0 ? rnd() % 128 : rnd());
        bad += !compare_paths(t, buf, n);
    }
    CHECK_MSG(bad == 0, "%d random byte strings failed", bad);
    /* Every single byte, and every ASCII pair. */
    bad = 0;
    for (int a = 0; a < 256; a++) {
        char s[2] = {(char)a, 0};
        bad += !compare_paths(t, s, 1);
        for (int b = 0; b < 128 && a < 128; b++) {
            s[1] = (char)b;
            bad += !compare_paths(t, s, 2);
        }
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_long_inputs(const Tokenizer *t) {
    /* Long runs: no quadratic blow-up, no crash, same as the reference, round trip. */
    static const char *fills[] = {" ", "a", "\n", " \n", "9", "\xe6\x97\xa5", "!", "\xff", "ab "};
    for (size_t f = 0; f < sizeof fills / sizeof *fills; f++) {
        size_t fl = strlen(fills[f]), n = 0, cap = 3000;
        char *s = malloc(cap + 8);
        while (n + fl <= cap) memcpy(s + n, fills[f], fl), n += fl;
        s[n++] = 'x';
        CHECK_MSG(compare_paths(t, s, n), "long run of \"%s\"", fills[f]);
        free(s);
    }
    /* 1 MB runs through PCRE2 (non-ASCII): no JIT stack trouble, round trip. */
    static const char *wide[] = {"\xc2\xa0", "\xe2\x80\x94", "\xe3\x80\x80\n", "\xff"};
    for (size_t f = 0; f < sizeof wide / sizeof *wide; f++) {
        size_t fl = strlen(wide[f]), n = 0, cap = 1u << 20;
        char *s = malloc(cap + 8);
        while (n + fl <= cap) memcpy(s + n, wide[f], fl), n += fl;
        s[n++] = 'x';
        int32_t *ids = NULL;
        size_t nids = 0;
        Err err = {{0}};
        CHECK_MSG(tokenizer_encode(t, s, n, &ids, &nids, &err) == 0, "%s", err.msg);
        CHECK(nids > 0 && round_trips(t, s, n, ids, nids));
        free(ids);
        free(s);
    }
    /* 1 MB of one letter: the heap path (the piece is not a token), then whitespace. */
    size_t n = 1u << 20;
    char *s = malloc(n);
    memset(s, 'q', n);
    int32_t *ids = NULL;
    size_t nids = 0;
    Err err = {{0}};
    CHECK(tokenizer_encode(t, s, n, &ids, &nids, &err) == 0);
    CHECK(nids > 0 && round_trips(t, s, n, ids, nids));
    free(ids);
    memset(s, ' ', n);
    CHECK(tokenizer_encode(t, s, n, &ids, &nids, &err) == 0);
    CHECK(nids > 0 && round_trips(t, s, n, ids, nids));
    free(ids);
    free(s);
}

static void test_malformed(const char *real_json, size_t real_len) {
    static const char *bad[] = {
        "", "{", "[]", "null", "{\"model\": 1}", "{\"model\": {}}",
        "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", /* no pre_tokenizer */
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": \"x\"}}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": -1}}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\\nb\\r\": -1}}}",
        "{\"pre_tokenizer\": {\"type\": \"Bad\\nType\"}, \"model\": {\"vocab\": {\"a\": 0}}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 99999999999}}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 2000000}}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {}}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0, \"b\": 0}}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": 5}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": [1]}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": [[\"a\", 1]]}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": 3}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 0, \"content\": \"b\"}]}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": \"x\"}]}",
        "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}}, \"model\": {\"vocab\": {\"a\": 0}}}",
        "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}}, \"model\": {\"vocab\": {\"a\": 0}}}",
        "{\"pre_tokenizer\": {\"type\": \"Metaspace\"}, \"model\": {\"vocab\": {\"a\": 0}}}",
        "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": 1}, \"model\": {\"vocab\": {\"a\": 0}}}",
        "{\"pre_tokenizer\": 7, \"model\": {\"vocab\": {\"a\": 0}}}",
        "{\"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}}}",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"byte_fallback\": true, \"vocab\": {\"a\": 0}}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        Err err = {{0}};
        Tokenizer *t = tokenizer_load_json_buffer(bad[i], strlen(bad[i]), NULL, &err);
        CHECK_MSG(t == NULL, "malformed %zu accepted", i);
        CHECK_MSG(err.msg[0] && !strchr(err.msg, '\n'), "malformed %zu: message \"%s\"", i, err.msg);
        tokenizer_free(t);
    }
    /* A tiny but valid one loads; a bad tokenizer_config.json is reported. */
    const char *tiny = "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": "
                       "{\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}";
    Err err = {{0}};
    Tokenizer *t = tokenizer_load_json_buffer(tiny, strlen(tiny), NULL, &err);
    CHECK_MSG(t != NULL, "tiny: %s", err.msg);
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0;
        /* 'c' has no token in this vocabulary: an error, not a crash. */
        CHECK(tokenizer_encode(t, "abab", 4, &ids, &n, &err) == 0 && n == 2 && ids[0] == 2);
        free(ids);
        ids = NULL;
        CHECK(tokenizer_encode(t, "abc", 3, &ids, &n, &err) < 0 && err.msg[0]);
        free(ids);
        tokenizer_free(t);
    }
    t = tokenizer_load_json_buffer(tiny, strlen(tiny), "{oops", &err);
    CHECK(t == NULL && strstr(err.msg, "tokenizer_config.json"));
    /* Truncations of the real file fail cleanly: many in the first 64 KB (header, added
     * tokens, pre-tokenizer), a few deep inside the vocab and the merges (parsing is slow). */
    int accepted = 0;
    size_t cuts[48];
    int n_cuts = 0;
    for (size_t c = 1; c < 65536 && n_cuts < 40; c = c * 5 / 4 + 7) cuts[n_cuts++] = c;
    for (int k = 1; k <= 7; k++) cuts[n_cuts++] = real_len / 8 * (size_t)k + 3;
    cuts[n_cuts++] = real_len - 2;
    for (int ci = 0; ci < n_cuts; ci++) {
        size_t cut = cuts[ci];
        if (cut >= real_len) continue;
        Err e = {{0}};
        Tokenizer *tt = tokenizer_load_json_buffer(real_json, cut, NULL, &e);
        accepted += tt != NULL;
        CHECK(tt != NULL || (e.msg[0] && !strchr(e.msg, '\n')));
        tokenizer_free(tt);
    }
    CHECK_EQ_INT(accepted, 0);
    /* Bad paths. */
    CHECK(tokenizer_load_json("/nonexistent/tokenizer.json", &err) == NULL &&
          strstr(err.msg, "/nonexistent/tokenizer.json"));
    CHECK(tokenizer_load_json("/", &err) == NULL && err.msg[0]);
}

int main(int argc, char **argv) {
    REQUIRE(argc >= 2);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", argv[1]);
    Err err = {{0}};
    Tokenizer *t = tokenizer_load_json(path, &err);
    if (!t) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(t != NULL);
    CHECK_EQ_INT(tokenizer_n_vocab(t), 128256);
    CHECK_EQ_INT(tokenizer_bos(t), 128000);
    CHECK_EQ_INT(tokenizer_eos(t), 128001);
    CHECK_EQ_INT(tokenizer_eot(t), 128009);
    CHECK_EQ_INT(tokenizer_find(t, "<|start_header_id|>"), 128006);
    CHECK_EQ_INT(tokenizer_find(t, "\xc4\xa0hello"), 24748); /* "Ġhello": file spelling */
    CHECK_EQ_INT(tokenizer_find(t, " hello"), 24748);        /* raw bytes */
    CHECK(tokenizer_is_special(t, 128009) && !tokenizer_is_special(t, 220));
    size_t bl = 0;
    const char *b = tokenizer_token_bytes(t, 220, &bl);
    CHECK(b && bl == 1 && b[0] == ' ');
    b = tokenizer_token_bytes(t, 128009, &bl);
    CHECK(b && bl == 10 && !memcmp(b, "<|eot_id|>", 10));
    CHECK(tokenizer_token_bytes(t, 128256, &bl) == NULL && tokenizer_token_bytes(t, -1, &bl) == NULL);

    char vpath[4096];
    snprintf(vpath, sizeof vpath, "%s/tokenizer/llama3-vectors.jsonl", BN_TEST_DATA);
    size_t nv = 0, nx = 0;
    Vector *v = load_vectors(vpath, &nv);
    snprintf(vpath, sizeof vpath, "%s/tokenizer/extra-vectors.jsonl", BN_TEST_DATA);
    Vector *x = load_vectors(vpath, &nx);
    CHECK(nv >= 291 && nx >= 30);

    size_t ok = check_vectors(t, v, nv, 0, "json a-b merges");
    printf("llama3 vectors: %zu of %zu match (fast path)\n", ok, nv);
    CHECK_EQ_INT(ok, nv);
    ok = check_vectors(t, v, nv, 1, "reference");
    printf("llama3 vectors: %zu of %zu match (reference path)\n", ok, nv);
    CHECK_EQ_INT(ok, nv);
    ok = check_vectors(t, x, nx, 0, "extra vectors");
    printf("extra vectors (specials as text, Unicode edges): %zu of %zu match\n", ok, nx);
    CHECK_EQ_INT(ok, nx);
    CHECK_EQ_INT(check_vectors(t, x, nx, 1, "extra vectors, reference"), nx);

    /* Specials typed by a user never become special ids. */
    for (size_t i = 0; i < nx; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(tokenizer_encode(t, x[i].text, x[i].len, &ids, &n, &err) == 0);
        for (size_t k = 0; k < n; k++) CHECK(!tokenizer_is_special(t, ids[k]));
        free(ids);
    }

    /* The ["a", "b"] pair form of merges. */
    size_t jlen = 0, plen = 0;
    char *json = read_all(path, &jlen);
    char *pairs = to_pair_merges(json, jlen, &plen);
    Tokenizer *tp = tokenizer_load_json_buffer(pairs, plen, NULL, &err);
    CHECK_MSG(tp != NULL, "pairs form: %s", err.msg);
    if (tp) {
        ok = check_vectors(tp, v, nv, 0, "json pair merges");
        printf("llama3 vectors: %zu of %zu match (pair-form merges)\n", ok, nv);
        CHECK_EQ_INT(ok, nv);
        CHECK_EQ_INT(tokenizer_vocab(tp)->n_merges, tokenizer_vocab(t)->n_merges);
        tokenizer_free(tp);
    }
    free(pairs);
    /* tokenizer_config.json names bos/eos as a string or as {"content": ...}. */
    const char *cfg = "{\"bos_token\": {\"content\": \"<|begin_of_text|>\"}, \"eos_token\": "
                      "\"<|eot_id|>\", \"model_max_length\": 1000000000000000019884624838656}";
    Tokenizer *tc = tokenizer_load_json_buffer(json, jlen, cfg, &err);
    CHECK_MSG(tc != NULL, "with config: %s", err.msg);
    if (tc) {
        CHECK_EQ_INT(tokenizer_bos(tc), 128000);
        CHECK_EQ_INT(tokenizer_eos(tc), 128009);
        CHECK_EQ_INT(tokenizer_eot(tc), 128009);
        tokenizer_free(tc);
    }

    /* GGUF-style arrays: the vocabulary handed back, rebuilt; also without token types and
     * without "pre" (tokenizer.ggml.pre is missing in the BitNet GGUF). */
    const TokenizerVocab *view = tokenizer_vocab(t);
    CHECK(view->n_tokens == 128256 && view->n_merges == 280147 && view->ignore_merges);
    TokenizerVocab gv = *view;
    gv.pre = NULL;
    gv.bos_id = gv.eos_id = gv.eot_id = -1;
    Tokenizer *tg = tokenizer_from_vocab(&gv, &err);
    CHECK_MSG(tg != NULL, "from_vocab: %s", err.msg);
    if (tg) {
        ok = check_vectors(tg, v, nv, 0, "from_vocab");
        printf("llama3 vectors: %zu of %zu match (tokenizer_from_vocab)\n", ok, nv);
        CHECK_EQ_INT(ok, nv);
        CHECK_EQ_INT(check_vectors(tg, x, nx, 0, "from_vocab extra"), nx);
        CHECK_EQ_INT(tokenizer_bos(tg), 128000);
        CHECK_EQ_INT(tokenizer_eot(tg), 128009);
        tokenizer_free(tg);
    }
    gv.token_types = NULL;
    gv.token_lens = NULL; /* NUL-terminated strings */
    gv.merge_lens = NULL;
    gv.bos_id = 128000;
    gv.eos_id = 128001;
    gv.pre = "llama-bpe";
    gv.ignore_merges = 0; /* GGUF cannot say it; implied by the Llama 3 pre-tokenizer */
    tg = tokenizer_from_vocab(&gv, &err);
    CHECK_MSG(tg != NULL, "from_vocab without types: %s", err.msg);
    if (tg) {
        CHECK_EQ_INT(check_vectors(tg, v, nv, 0, "from_vocab no types"), nv);
        CHECK_EQ_INT(check_vectors(tg, x, nx, 0, "from_vocab no types extra"), nx);
        CHECK(tokenizer_is_special(tg, 128009) && !tokenizer_is_special(tg, 127999));
        tokenizer_free(tg);
    }
    /* GPT-2 pre-tokenizer and merging by rank for every piece (no ignore_merges): no expected
     * ids from elsewhere, but the heap merge must equal the O(n^2) reference everywhere. */
    gv.pre = "gpt2";
    tg = tokenizer_from_vocab(&gv, &err);
    CHECK_MSG(tg != NULL, "from_vocab gpt2: %s", err.msg);
    if (tg) {
        CHECK(!tokenizer_vocab(tg)->ignore_merges);
        int bad = 0;
        for (size_t i = 0; i < nv; i++) bad += !compare_paths(tg, v[i].text, v[i].len);
        for (size_t i = 0; i < nx; i++) bad += !compare_paths(tg, x[i].text, x[i].len);
        CHECK_EQ_INT(bad, 0);
        tokenizer_free(tg);
    }
    /* Hostile arrays. */
    TokenizerVocab hv = {0};
    CHECK(tokenizer_from_vocab(&hv, &err) == NULL && err.msg[0]);
    const char *toks[] = {"a", NULL};
    hv.n_tokens = 2;
    hv.tokens = toks;
    CHECK(tokenizer_from_vocab(&hv, &err) == NULL && err.msg[0]);
    hv.n_tokens = 1;
    hv.n_merges = 1;
    CHECK(tokenizer_from_vocab(&hv, &err) == NULL && err.msg[0]); /* merges NULL */

    test_random_inputs(t);
    test_long_inputs(t);
    test_malformed(json, jlen);
    free(json);
    free_vectors(v, nv);
    free_vectors(x, nx);
    tokenizer_free(t);
    return check_report("test_tokenizer");
}
