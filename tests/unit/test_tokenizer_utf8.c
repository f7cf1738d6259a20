/* Streaming UTF-8 decode (utf8_stream_feed/flush): complete characters only, tails held until
 * the next token completes them, invalid bytes as U+FFFD (one per maximal invalid subpart, as
 * Python's errors="replace" and WHATWG decoders do). Checked against a plain whole-buffer
 * decoder on random input fed in random splits. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "infer/utf8.h"

#define FFFD "\xef\xbf\xbd"

/* Feeds `in` in pieces of the given sizes (0-terminated list, the rest at once), then flushes. */
static size_t feed_split(const char *in, size_t n, const size_t *sizes, char *out, size_t cap) {
    Utf8Stream s;
    memset(&s, 0, sizeof s);
    size_t o = 0, i = 0;
    for (int k = 0; sizes && sizes[k] && i < n; k++) {
        size_t l = sizes[k] < n - i ? sizes[k] : n - i;
        o += utf8_stream_feed(&s, in + i, l, out + o, cap - o);
        i += l;
    }
    o += utf8_stream_feed(&s, in + i, n - i, out + o, cap - o);
    o += utf8_stream_flush(&s, out + o, cap - o);
    return o;
}

static int decodes_to(const char *in, size_t n, const char *want) {
    char out[256];
    size_t one[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    size_t o1 = feed_split(in, n, NULL, out, sizeof out);
    int ok = o1 == strlen(want) && !memcmp(out, want, o1);
    size_t o2 = feed_split(in, n, one, out, sizeof out); /* byte by byte */
    ok = ok && o2 == strlen(want) && !memcmp(out, want, o2);
    if (!ok) fprintf(stderr, "  decoding \"%.*s\" gave %zu/%zu bytes\n", (int)n, in, o1, o2);
    return ok;
}

/* Reference: whole-buffer decode with maximal-subpart replacement. */
static size_t ref_decode(const unsigned char *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned c = s[i];
        int len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0) {
            memcpy(out + o, FFFD, 3), o += 3, i++;
            continue;
        }
        int k = 1;
        while (k < len && i + k < n) {
            unsigned b = s[i + k];
            unsigned lo = 0x80, hi = 0xBF;
            if (k == 1 && c == 0xE0) lo = 0xA0;
            if (k == 1 && c == 0xED) hi = 0x9F;
            if (k == 1 && c == 0xF0) lo = 0x90;
            if (k == 1 && c == 0xF4) hi = 0x8F;
            if (b < lo || b > hi) break;
            k++;
        }
        if (k == len) memcpy(out + o, s + i, (size_t)len), o += (size_t)len;
        else memcpy(out + o, FFFD, 3), o += 3;
        i += (size_t)k;
    }
    return o;
}

int main(void) {
    /* Valid text passes through; incomplete tails are held. */
    CHECK(decodes_to("hello", 5, "hello"));
    CHECK(decodes_to("\xf0\x9f\xa4\x96", 4, "\xf0\x9f\xa4\x96"));
    Utf8Stream s;
    memset(&s, 0, sizeof s);
    char out[64];
    /* "🤖" as Llama 3 splits it: token 11410 " \xf0\x9f", 97 "\xa4", 244 "\x96". */
    CHECK_EQ_INT(utf8_stream_feed(&s, " \xf0\x9f", 3, out, sizeof out), 1);
    CHECK(out[0] == ' ');
    CHECK_EQ_INT(utf8_stream_feed(&s, "\xa4", 1, out, sizeof out), 0);
    CHECK_EQ_INT(utf8_stream_feed(&s, "\x96 in", 4, out, sizeof out), 7);
    CHECK(!memcmp(out, "\xf0\x9f\xa4\x96 in", 7));
    CHECK_EQ_INT(utf8_stream_flush(&s, out, sizeof out), 0);

    /* Invalid input, compared with Python's bytes.decode("utf-8", "replace"). */
    CHECK(decodes_to("\xf0\x9f\x98" "A", 4, FFFD "A"));
    CHECK(decodes_to("\xc0\x80", 2, FFFD FFFD));
    CHECK(decodes_to("\xed\xa0\x80", 3, FFFD FFFD FFFD));
    CHECK(decodes_to("\xe2\x82", 2, FFFD)); /* incomplete at the end: flushed */
    CHECK(decodes_to("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD));
    CHECK(decodes_to("\xe0\x80\xaf", 3, FFFD FFFD FFFD));
    CHECK(decodes_to("\xf0\x9f\x98\xf0\x9f\x98\x80", 7, FFFD "\xf0\x9f\x98\x80"));
    CHECK(decodes_to("\x80\x80" "a\xff", 4, FFFD FFFD "a" FFFD));

    /* A small output buffer: output stops at a character boundary, never overflows. */
    memset(&s, 0, sizeof s);
    char small[5] = {0, 0, 0, 0, 'Z'};
    size_t w = utf8_stream_feed(&s, "ab\xe2\x82\xac", 5, small, 4);
    CHECK_EQ_INT(w, 2);
    CHECK(small[4] == 'Z');

    /* Random bytes in random splits equal the whole-buffer reference. */
    uint64_t x = 88172645463325252ull;
    int bad = 0;
    static const unsigned char pool[] = {'a', ' ', 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2,
                                         0xdf, 0xe0, 0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    for (int iter = 0; iter < 20000; iter++) {
        unsigned char in[40];
        char got[200], want[200];
        size_t n = 0, sizes[41];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        n = x % 40;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            in[i] = pool[x % sizeof pool];
        }
        int k = 0;
        for (size_t i = 0; i < n && k < 40; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            sizes[k] = 1 + x % 4;
            i += sizes[k];
        }
        sizes[k] = 0;
        size_t g = feed_split((const char *)in, n, sizes, got, sizeof got);
        size_t r = ref_decode(in, n, want);
        bad += g != r || memcmp(got, want, g) != 0;
    }
    CHECK_EQ_INT(bad, 0);
    return check_report("test_tokenizer_utf8");
}
