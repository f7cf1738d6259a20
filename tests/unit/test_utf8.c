/* infer/utf8: the strict decoder against a plain textbook decoder (every sequence of up to three
 * bytes, all four-byte sequences of every lead with sampled tails), repair and cuts against
 * brute-force definitions on random bytes, and the contracts every user relies on: valid text
 * passes unchanged, output is always valid. The stream has its own test (test_tokenizer_utf8). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/utf8.h"

#define FFFD "\xef\xbf\xbd"

/* Textbook decode: the lead gives the length and payload bits, the continuations six bits each,
 * then the value must need exactly that length and be a Unicode scalar value. */
static int ref_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    int len;
    uint32_t v;
    if (c < 0x80) len = 1, v = c;
    else if ((c & 0xE0) == 0xC0) len = 2, v = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, v = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, v = c & 0x07;
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static int same_decode(const unsigned char *s, size_t n) {
    uint32_t a = 0x7FFFFFFF, b = 0x7FFFFFFF;
    int la = utf8_decode((const char *)s, n, &a), lb = ref_decode(s, n, &b);
    return la == lb && (la == 0 || a == b);
}

/* Whether s[0..n) is well-formed throughout, by the reference. */
static int valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = ref_decode((const unsigned char *)s + i, n - i, &cp);
        if (!l) return 0;
        i += (size_t)l;
    }
    return 1;
}

static uint64_t rng = 88172645463325252ull;
static unsigned next_byte(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)(rng >> 24);
}

/* Bytes drawn so that leads, continuations and the edge values of both are common. */
static unsigned edge_byte(void) {
    static const unsigned char pool[] = {'a', ' ', 0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                         0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee,
                                         0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf8, 0xfe, 0xff};
    return pool[next_byte() % sizeof pool];
}

static void test_decode(void) {
    unsigned char s[4];
    int bad = 0;
    /* every 1-, 2- and 3-byte input, each also with fewer bytes available */
    for (uint32_t x = 0; x < (1u << 24); x++) {
        s[0] = (unsigned char)(x >> 16), s[1] = (unsigned char)(x >> 8), s[2] = (unsigned char)x;
        for (size_t n = 0; n <= 3; n++) bad += !same_decode(s, n);
    }
    /* every lead and second byte of a 4-byte input, with sampled third and fourth bytes */
    for (unsigned c0 = 0xE0; c0 <= 0xFF; c0++)
        for (unsigned c1 = 0; c1 < 256; c1++)
            for (int k = 0; k < 64; k++) {
                s[0] = (unsigned char)c0, s[1] = (unsigned char)c1;
                s[2] = (unsigned char)(k < 32 ? edge_byte() : next_byte());
                s[3] = (unsigned char)(k < 32 ? edge_byte() : next_byte());
                for (size_t n = 0; n <= 4; n++) bad += !same_decode(s, n);
            }
    CHECK_EQ_INT(bad, 0);

    uint32_t cp = 0;
    CHECK_EQ_INT(utf8_decode("\xf4\x8f\xbf\xbf", 4, &cp), 4); /* U+10FFFF, the last */
    CHECK_EQ_INT(cp, 0x10FFFF);
    CHECK_EQ_INT(utf8_decode("\xed\x9f\xbf", 3, &cp), 3);      /* U+D7FF, before surrogates */
    CHECK_EQ_INT(cp, 0xD7FF);
    CHECK_EQ_INT(utf8_decode("\xed\xa0\x80", 3, &cp), 0);      /* U+D800 */
    CHECK_EQ_INT(utf8_decode("\xe0\x9f\xbf", 3, &cp), 0);      /* overlong U+07FF */
    CHECK_EQ_INT(utf8_decode("", 0, &cp), 0);

    /* utf8_next: the same characters; anything else is one byte of U+FFFD */
    CHECK_EQ_INT(utf8_next("\xe6\x97\xa5", 3, &cp), 3);
    CHECK_EQ_INT(cp, 0x65E5);
    cp = 0;
    CHECK_EQ_INT(utf8_next("\xe6\x97", 2, &cp), 1);
    CHECK_EQ_INT(cp, 0xFFFD);
}

/* Reference repair: each byte that does not begin a well-formed character is one U+FFFD. */
static size_t ref_repair(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = ref_decode((const unsigned char *)s + i, n - i, &cp);
        if (l) memcpy(out + o, s + i, (size_t)l), o += (size_t)l, i += (size_t)l;
        else memcpy(out + o, FFFD, 3), o += 3, i++;
    }
    return o;
}

static void test_repair(void) {
    /* the exporters' cases: a character cut short, overlong, surrogate, past U+10FFFF */
    char *r = utf8_repair("cut \xe2\x82 mid-char", 15);
    CHECK_STREQ(r, "cut " FFFD FFFD " mid-char");
    free(r);
    r = utf8_repair("ok \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xf0\x9f\x99\x82", 19);
    CHECK_STREQ(r, "ok " FFFD FFFD " " FFFD FFFD FFFD " " FFFD FFFD FFFD FFFD " \xf0\x9f\x99\x82");
    free(r);
    r = utf8_repair("a\0b", 3); /* n bytes, not up to a NUL */
    CHECK(r && r[0] == 'a' && r[1] == 0 && r[2] == 'b' && r[3] == 0);
    free(r);

    int bad = 0, invalid = 0;
    for (int iter = 0; iter < 100000; iter++) {
        char in[48], want[48 * 3 + 1];
        const size_t n = next_byte() % sizeof in;
        for (size_t i = 0; i < n; i++) in[i] = (char)(iter % 4 ? edge_byte() : next_byte());
        const size_t w = ref_repair(in, n, want);
        char *got = utf8_repair(in, n);
        if (!got) {
            bad++;
            continue;
        }
        bad += memcmp(got, want, w) != 0 || got[w] != 0;
        invalid += !valid(got, w);
        /* repairing repaired text changes nothing */
        char *again = utf8_repair(got, w);
        bad += !again || memcmp(again, got, w + 1) != 0;
        free(again);
        free(got);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(invalid, 0);
}

/* The largest cut <= room at which s does not continue a character, by trying each. */
static size_t ref_cut(const char *s, size_t len, size_t room) {
    if (len <= room) return len;
    for (size_t n = room; n > 0; n--)
        if (((unsigned char)s[n] & 0xC0) != 0x80) return n;
    return 0;
}

static void test_cut(void) {
    const char *robot = "ab\xf0\x9f\xa4\x96" "c"; /* a, b, U+1F916, c */
    CHECK_EQ_INT(utf8_cut(robot, 7, 10), 7);
    CHECK_EQ_INT(utf8_cut(robot, 7, 6), 6);
    CHECK_EQ_INT(utf8_cut(robot, 7, 5), 2); /* not inside the robot */
    CHECK_EQ_INT(utf8_cut(robot, 7, 3), 2);
    CHECK_EQ_INT(utf8_cut(robot, 7, 2), 2);
    CHECK_EQ_INT(utf8_cut("\x80\x80\x80", 3, 2), 0);

    int bad = 0;
    for (int iter = 0; iter < 100000; iter++) {
        char in[40];
        const size_t len = 1 + next_byte() % (sizeof in - 1), room = next_byte() % (len + 4);
        for (size_t i = 0; i < len; i++) in[i] = (char)edge_byte();
        bad += utf8_cut(in, len, room) != ref_cut(in, len, room);
    }
    CHECK_EQ_INT(bad, 0);

    /* cutting valid text anywhere leaves two valid halves */
    const char *text = "h\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x98\x80!";
    const size_t n = strlen(text);
    for (size_t room = 0; room < n; room++) {
        const size_t c = utf8_cut(text, n, room);
        CHECK_MSG(c <= room && valid(text, c) && valid(text + c, n - c), "room %zu: cut %zu", room, c);
    }
}

/* The stream and repair differ only in how many U+FFFD a broken sequence gives; on valid text
 * both are the identity, and the stream's output is valid too. */
static void test_stream_agrees(void) {
    int bad = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char in[32], out[32 * 3 + 16];
        const size_t n = next_byte() % sizeof in;
        for (size_t i = 0; i < n; i++) in[i] = (char)edge_byte();
        Utf8Stream st;
        memset(&st, 0, sizeof st);
        size_t o = utf8_stream_feed(&st, in, n, out, sizeof out);
        o += utf8_stream_flush(&st, out + o, sizeof out - o);
        bad += !valid(out, o);
        if (valid(in, n)) bad += o != n || memcmp(in, out, n) != 0;
    }
    CHECK_EQ_INT(bad, 0);
}

int main(void) {
    test_decode();
    test_repair();
    test_cut();
    test_stream_agrees();
    return check_report("test_utf8");
}
