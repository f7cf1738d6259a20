/* Terminal-safe text: see termsafe.h. */
#include "app/termsafe.h"

#include <string.h>

static int put(FILE *f, unsigned char c) { return putc(c, f) == EOF ? -1 : 0; }

static int caret(FILE *f, unsigned char c) {
    return put(f, '^') | put(f, c == 0x7f ? '?' : (unsigned char)(c + 64));
}

int termsafe_write(TermSafe *ts, FILE *f, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    int r = 0;
    if (ts->held_c2 && p < end) {
        ts->held_c2 = 0;
        if (*p >= 0x80 && *p <= 0x9F) {
            r |= put(f, '^') | put(f, '?');
            p++;
        } else {
            r |= put(f, 0xC2);
        }
    }
    for (; p < end; p++) {
        const unsigned char c = *p;
        if (c == '\n' || c == '\t' || (c == '\r' && !ts->keep_newlines)) {
            r |= put(f, ts->keep_newlines ? c : ' ');
        } else if (c < 0x20 || c == 0x7f) {
            r |= caret(f, c);
        } else if (c == 0xC2) {
            if (p + 1 == end) {
                ts->held_c2 = 1;
            } else if (p[1] >= 0x80 && p[1] <= 0x9F) {
                r |= put(f, '^') | put(f, '?');
                p++;
            } else {
                r |= put(f, c);
            }
        } else {
            r |= put(f, c);
        }
    }
    return r ? -1 : 0;
}

int termsafe_finish(TermSafe *ts, FILE *f) {
    if (!ts->held_c2) return 0;
    ts->held_c2 = 0;
    return put(f, 0xC2);
}

int termsafe_puts(FILE *f, const char *s, int keep_newlines) {
    TermSafe ts = {0, keep_newlines};
    int r = termsafe_write(&ts, f, s, strlen(s));
    return termsafe_finish(&ts, f) | r;
}
