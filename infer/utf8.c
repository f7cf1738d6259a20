/* UTF-8 (see utf8.h). The well-formedness rules live in lead_len and continues (RFC 3629's
 * table of well-formed byte sequences); decoding, repair and the stream all go through them. */
#include "infer/utf8.h"

#include <stdlib.h>
#include <string.h>

/* Expected length of a sequence led by c (0: c cannot lead). */
static int lead_len(unsigned c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Whether byte b may follow the prefix p[0..k) (k >= 1) in well-formed UTF-8: the second byte's
 * narrower ranges rule out overlong forms (E0, F0), surrogates (ED) and values past U+10FFFF
 * (F4). */
static int continues(const unsigned char *p, int k, unsigned b) {
    if ((b & 0xC0) != 0x80) return 0;
    if (k == 1) {
        unsigned c = p[0];
        if (c == 0xE0) return b >= 0xA0;
        if (c == 0xED) return b <= 0x9F;
        if (c == 0xF0) return b >= 0x90;
        if (c == 0xF4) return b <= 0x8F;
    }
    return 1;
}

int utf8_decode(const char *str, size_t n, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0) return 0;
    const int len = lead_len(s[0]);
    if (len == 0 || (size_t)len > n) return 0;
    uint32_t v = len == 1 ? s[0] : s[0] & (0x7Fu >> len);
    for (int k = 1; k < len; k++) {
        if (!continues(s, k, s[k])) return 0;
        v = (v << 6) | (s[k] & 0x3Fu);
    }
    *cp = v;
    return len;
}

int utf8_next(const char *s, size_t n, uint32_t *cp) {
    const int len = utf8_decode(s, n, cp);
    if (len) return len;
    *cp = 0xFFFD;
    return 1;
}

char *utf8_repair(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1); /* one bad byte becomes the 3 bytes of U+FFFD */
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        const int len = utf8_decode(s + i, n - i, &cp);
        if (len) {
            memcpy(out + o, s + i, (size_t)len);
            o += (size_t)len;
            i += (size_t)len;
        } else {
            memcpy(out + o, UTF8_REPLACEMENT, 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    return out;
}

size_t utf8_cut(const char *s, size_t len, size_t room) {
    if (len <= room) return len;
    size_t n = room;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    return n;
}

/* ---- streaming ------------------------------------------------------------------------------- */

static int out_put(char *out, size_t cap, size_t *o, const void *src, size_t n) {
    if (*o + n > cap) return 0;
    memcpy(out + *o, src, n);
    *o += n;
    return 1;
}

size_t utf8_stream_feed(Utf8Stream *s, const char *bytes, size_t len, char *out, size_t cap) {
    size_t o = 0;
    if (!s || !out) return 0;
    if (s->n_pending < 0 || s->n_pending > 3) s->n_pending = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned b = (unsigned char)bytes[i];
        if (s->n_pending) {
            if (continues(s->pending, s->n_pending, b)) {
                s->pending[s->n_pending++] = (unsigned char)b;
                if (s->n_pending == lead_len(s->pending[0])) {
                    if (!out_put(out, cap, &o, s->pending, (size_t)s->n_pending)) return o;
                    s->n_pending = 0;
                }
                continue;
            }
            /* A broken sequence: one U+FFFD for it, then b starts afresh. */
            if (!out_put(out, cap, &o, UTF8_REPLACEMENT, 3)) return o;
            s->n_pending = 0;
        }
        int l = lead_len(b);
        if (l == 1) {
            if (!out_put(out, cap, &o, &bytes[i], 1)) return o;
        } else if (l == 0) {
            if (!out_put(out, cap, &o, UTF8_REPLACEMENT, 3)) return o;
        } else {
            s->pending[0] = (unsigned char)b;
            s->n_pending = 1;
        }
    }
    return o;
}

size_t utf8_stream_flush(Utf8Stream *s, char *out, size_t cap) {
    size_t o = 0;
    if (!s) return 0;
    if (s->n_pending > 0 && out) out_put(out, cap, &o, UTF8_REPLACEMENT, 3);
    s->n_pending = 0;
    return o;
}
