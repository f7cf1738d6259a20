/* The GGUF reader on small hand-built files: every value type, v2 and v3, alignment, and each
 * kind of malformed file refused with a message that names the file and the problem. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/gguf.h"

typedef struct {
    uint8_t b[8192];
    size_t n;
} B;

static void raw(B *b, const void *p, size_t n) {
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void u32(B *b, uint32_t v) { raw(b, &v, 4); }
static void u64(B *b, uint64_t v) { raw(b, &v, 8); }
static void str(B *b, const char *s) {
    u64(b, strlen(s));
    raw(b, s, strlen(s));
}
static void header(B *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    raw(b, "GGUF", 4);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void tensor(B *b, const char *name, uint64_t ne0, uint64_t ne1, uint32_t type, uint64_t off) {
    str(b, name);
    u32(b, 2);
    u64(b, ne0);
    u64(b, ne1);
    u32(b, type);
    u64(b, off);
}
static void pad_to(B *b, size_t align) {
    while (b->n % align) b->b[b->n++] = 0;
}

static void expect_fail(B *b, const char *needle) {
    GgufFile g;
    Err err = {{0}};
    int rc = gguf_parse(&g, b->b, b->n, "t.gguf", &err);
    CHECK_MSG(rc == -1, "expected failure with '%s'", needle);
    if (rc == 0) {
        gguf_close(&g);
        return;
    }
    CHECK_MSG(strstr(err.msg, "t.gguf") && strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
}

int main(void) {
    B b;
    /* all scalar types, a string, arrays of ints and strings, two tensors; v2 and v3 */
    for (uint32_t ver = 2; ver <= 3; ver++) {
        header(&b, ver, 2, 8);
        str(&b, "a.u8"); u32(&b, GGUF_UINT8); raw(&b, "\x07", 1);
        str(&b, "a.i16"); u32(&b, GGUF_INT16); { int16_t v = -5; raw(&b, &v, 2); }
        str(&b, "a.u64"); u32(&b, GGUF_UINT64); u64(&b, 1ull << 40);
        str(&b, "a.f64"); u32(&b, GGUF_FLOAT64); { double v = 0.25; raw(&b, &v, 8); }
        str(&b, "a.bool"); u32(&b, GGUF_BOOL); raw(&b, "\x01", 1);
        str(&b, "a.str"); u32(&b, GGUF_STRING); str(&b, "hello");
        str(&b, "a.arr"); u32(&b, GGUF_ARRAY); u32(&b, GGUF_INT32); u64(&b, 3);
        for (int32_t i = 10; i < 13; i++) raw(&b, &i, 4);
        str(&b, "a.sarr"); u32(&b, GGUF_ARRAY); u32(&b, GGUF_STRING); u64(&b, 2); str(&b, "x"); str(&b, "yz");
        tensor(&b, "w", 4, 2, GGML_F32, 0);
        tensor(&b, "v", 128, 1, GGML_I2_S, 32);
        pad_to(&b, 32);
        size_t data = b.n;
        for (int i = 0; i < 8; i++) { float f = (float)i; raw(&b, &f, 4); }
        memset(b.b + b.n, 0x55, 64);
        b.n += 64; /* I2_S: 128/4 = 32 code bytes + 32 (scale + pad) */
        GgufFile g;
        Err err;
        int rc = gguf_parse(&g, b.b, b.n, "ok.gguf", &err);
        CHECK_MSG(rc == 0, "%s", err.msg);
        if (rc) continue;
        CHECK_EQ_INT(g.version, ver);
        int64_t v;
        double d;
        int bo;
        GgufStr s;
        CHECK(gguf_get_int(&g, "a.u8", &v, NULL) == 0 && v == 7);
        CHECK(gguf_get_int(&g, "a.i16", &v, NULL) == 0 && v == -5);
        CHECK(gguf_get_int(&g, "a.u64", &v, NULL) == 0 && v == (1ll << 40));
        CHECK(gguf_get_float(&g, "a.f64", &d, NULL) == 0 && d == 0.25);
        CHECK(gguf_get_bool(&g, "a.bool", &bo, NULL) == 0 && bo == 1);
        CHECK(gguf_get_str(&g, "a.str", &s, NULL) == 0 && s.len == 5 && !memcmp(s.ptr, "hello", 5));
        CHECK(gguf_get_int(&g, "a.str", &v, &err) == -1 && strstr(err.msg, "expected an integer"));
        CHECK(gguf_get_int(&g, "missing", &v, &err) == -1 && strstr(err.msg, "missing key"));
        const GgufKV *arr = gguf_find_kv(&g, "a.arr");
        CHECK(arr && arr->arr_n == 3 && gguf_get_arr_int(arr, 2, &v) == 0 && v == 12);
        CHECK(gguf_get_arr_int(arr, 3, &v) == -1);
        uint64_t n;
        const char **p;
        size_t *l;
        REQUIRE(gguf_get_str_array(&g, "a.sarr", &n, &p, &l, NULL) == 0);
        CHECK(n == 2 && l[1] == 2 && !memcmp(p[1], "yz", 2));
        free(p);
        free(l);
        const GgufTensor *t = gguf_find_tensor(&g, "w"), *t2 = gguf_find_tensor(&g, "v");
        CHECK(t && t->ne[0] == 4 && t->ne[1] == 2 && t->nbytes == 32 && t->data == b.b + data);
        CHECK(t2 && t2->nbytes == 64 && t2->data == b.b + data + 32);
        CHECK(gguf_find_tensor(&g, "nope") == NULL);
        gguf_close(&g);
        /* every shorter prefix is refused */
        int refused = 0;
        for (size_t cut = 0; cut < b.n; cut++) {
            uint8_t *q = malloc(cut ? cut : 1);
            memcpy(q, b.b, cut);
            if (gguf_parse(&g, q, cut, "cut.gguf", &err) == 0) gguf_close(&g);
            else refused++;
            free(q);
        }
        CHECK_EQ_INT(refused, (int)b.n);
    }

    /* general.alignment honoured */
    header(&b, 3, 1, 1);
    str(&b, "general.alignment"); u32(&b, GGUF_UINT32); u32(&b, 64);
    tensor(&b, "w", 16, 1, GGML_F32, 0);
    pad_to(&b, 64);
    size_t data = b.n;
    b.n += 64;
    GgufFile g;
    Err err;
    REQUIRE(gguf_parse(&g, b.b, b.n, "al.gguf", &err) == 0);
    CHECK(g.alignment == 64 && g.data_offset == data);
    gguf_close(&g);

    /* malformed files */
    memcpy(b.b, "GGML", 4), b.n = 64;
    expect_fail(&b, "bad magic");
    header(&b, 1, 0, 0);
    expect_fail(&b, "version 1");
    header(&b, 4, 0, 0);
    expect_fail(&b, "unsupported GGUF version 4");
    memcpy(b.b, "FUGG", 4);
    expect_fail(&b, "big-endian");
    header(&b, 3, 0, 1u << 20);
    expect_fail(&b, "key count");
    header(&b, 3, 0, 100);
    expect_fail(&b, "cannot fit");
    header(&b, 3, 0, 2);
    str(&b, "k"); u32(&b, GGUF_UINT8); raw(&b, "\x01", 1);
    str(&b, "k"); u32(&b, GGUF_UINT8); raw(&b, "\x02", 1);
    b.n += 32;
    expect_fail(&b, "duplicate key \"k\"");
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, 13); u32(&b, 0);
    b.n += 32;
    expect_fail(&b, "unknown value type 13");
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, GGUF_ARRAY); u32(&b, GGUF_ARRAY); u64(&b, 1);
    b.n += 32;
    expect_fail(&b, "nested array");
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, GGUF_ARRAY); u32(&b, GGUF_UINT64); u64(&b, 1ull << 60);
    b.n += 32;
    expect_fail(&b, "runs past the end");
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, GGUF_STRING); u64(&b, 1ull << 62);
    b.n += 32;
    expect_fail(&b, "runs past the end");
    header(&b, 3, 0, 1);
    str(&b, "general.alignment"); u32(&b, GGUF_UINT32); u32(&b, 48);
    b.n += 32;
    expect_fail(&b, "power of two");
    /* tensor table problems */
    struct { uint64_t ne0; uint32_t type; uint64_t off; const char *msg; } bad[] = {
        {16, 200, 0, "unknown tensor type 200"},
        {16, GGML_F32, 4, "not aligned"},
        {16, GGML_F32, 1 << 20, "outside the file"},
        {100, GGML_TQ2_0, 0, "not a multiple of its block size 256"},
        {0, GGML_F32, 0, "invalid dimension"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        header(&b, 3, 1, 0);
        tensor(&b, "w", bad[i].ne0, 1, bad[i].type, bad[i].off);
        pad_to(&b, 32);
        b.n += 128;
        expect_fail(&b, bad[i].msg);
    }
    header(&b, 3, 2, 0);
    tensor(&b, "w", 16, 1, GGML_F32, 0);
    tensor(&b, "w", 16, 1, GGML_F32, 64);
    pad_to(&b, 32);
    b.n += 128;
    expect_fail(&b, "duplicate tensor name \"w\"");
    header(&b, 3, 2, 0);
    tensor(&b, "a", 16, 1, GGML_F32, 0);
    tensor(&b, "b", 16, 1, GGML_F32, 32);
    pad_to(&b, 32);
    b.n += 128;
    expect_fail(&b, "overlap");
    header(&b, 3, 1, 0);
    str(&b, "w");
    u32(&b, 5);
    b.n += 64;
    expect_fail(&b, "5 dimensions");
    return check_report("test_model_gguf");
}
