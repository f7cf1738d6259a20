/* UTF-8 decoding, display widths and greedy word wrap (see textwidth.h). */
#define _GNU_SOURCE /* wcwidth */
#include "ui/textwidth.h"

#include <stdlib.h>
#include <wchar.h>

int tw_decode(const char *str, size_t n, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int need;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) need = 1, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, v = c & 0x07, min = 0x10000;
    else {
        *cp = 0xFFFD;
        return 1;
    }
    if ((size_t)need >= n) {
        *cp = 0xFFFD;
        return 1;
    }
    for (int i = 1; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = v;
    return need + 1;
}

uint32_t tw_display_cp(uint32_t cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) return 0xFFFD;
    if (wcwidth((wchar_t)cp) < 0) return 0xFFFD;
    return cp;
}

int tw_cp_width(uint32_t cp) {
    if (cp == '\t') return TW_TAB;
    int w = wcwidth((wchar_t)tw_display_cp(cp));
    return w < 0 ? 1 : w;
}

int tw_width(const char *s, size_t n) {
    int cols = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)tw_decode(s + i, n - i, &cp);
        cols += tw_cp_width(cp);
    }
    return cols;
}

size_t tw_fit(const char *s, size_t n, int max_cols) {
    int cols = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int len = tw_decode(s + i, n - i, &cp);
        int w = tw_cp_width(cp);
        if (cols + w > max_cols) break;
        cols += w;
        i += (size_t)len;
    }
    return i;
}

static int push_line(TwLine **lines, int *count, int *cap, size_t start, size_t len, int cols) {
    if (*count == *cap) {
        int ncap = *cap ? *cap * 2 : 64;
        TwLine *nl = realloc(*lines, (size_t)ncap * sizeof *nl);
        if (!nl) return -1;
        *lines = nl;
        *cap = ncap;
    }
    (*lines)[(*count)++] = (TwLine){start, len, cols};
    return 0;
}

int tw_wrap(const char *s, size_t n, int width, TwLine **lines, int *count, int *cap) {
    if (width < 1) width = 1;
    int before = *count;
    size_t line_start = 0, i = 0;
    int cols = 0;
    /* Last soft-break opportunity on this line: text before it ends the line, the line after
     * starts at brk_next (after the run of spaces). */
    size_t brk_end = 0, brk_next = 0;
    int brk_cols = 0, have_brk = 0;
    for (;;) {
        if (i >= n || s[i] == '\n') {
            size_t end = i;
            if (cols > width && have_brk && brk_next == i) {
                /* Trailing spaces past the edge are not part of the line. */
                end = brk_end;
                cols = brk_cols;
            }
            if (push_line(lines, count, cap, line_start, end - line_start, cols)) return -1;
            if (i >= n) break;
            i++;
            line_start = i;
            cols = 0;
            have_brk = 0;
            if (i >= n) { /* text ends with '\n': that is an empty last line */
                if (push_line(lines, count, cap, line_start, 0, 0)) return -1;
                break;
            }
            continue;
        }
        uint32_t cp;
        int len = tw_decode(s + i, n - i, &cp);
        int w = tw_cp_width(cp);
        if (cp == ' ') {
            /* A break opportunity: the line may end before this space. */
            if (!have_brk || brk_next != i) {
                brk_end = i;
                brk_cols = cols;
            }
            have_brk = 1;
            brk_next = i + 1;
            cols += w;
            i += (size_t)len; /* spaces past the edge are absorbed by the break */
            continue;
        }
        if (cols + w > width && cols > 0) {
            if (have_brk && brk_end > line_start) {
                if (push_line(lines, count, cap, line_start, brk_end - line_start, brk_cols))
                    return -1;
                /* Skip the spaces of the break, then restart measuring from there. */
                line_start = brk_next;
                i = brk_next;
                cols = 0;
                have_brk = 0;
                continue;
            }
            if (have_brk && brk_end == line_start) {
                /* Only leading spaces before a long word: drop them. */
                line_start = brk_next;
                i = brk_next;
                cols = 0;
                have_brk = 0;
                continue;
            }
            if (push_line(lines, count, cap, line_start, i - line_start, cols)) return -1;
            line_start = i;
            cols = 0;
            have_brk = 0;
            continue;
        }
        cols += w;
        i += (size_t)len;
        /* Zero-width marks right after stay with their base character. */
        while (i < n) {
            uint32_t next;
            int nlen = tw_decode(s + i, n - i, &next);
            if (next == '\n' || next == ' ' || tw_cp_width(next) != 0) break;
            i += (size_t)nlen;
        }
    }
    return *count - before;
}

size_t tw_to_wcs(const char *s, size_t n, wchar_t *out, size_t cap) {
    size_t o = 0;
    if (cap == 0) return 0;
    for (size_t i = 0; i < n && o + 1 < cap;) {
        uint32_t cp;
        i += (size_t)tw_decode(s + i, n - i, &cp);
        if (cp == '\t') {
            for (int k = 0; k < TW_TAB && o + 1 < cap; k++) out[o++] = L' ';
            continue;
        }
        out[o++] = (wchar_t)tw_display_cp(cp);
    }
    out[o] = 0;
    return o;
}
