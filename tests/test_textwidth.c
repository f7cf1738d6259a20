/* ui/textwidth: UTF-8 decoding, display widths, fitting and word wrap. */
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ui/textwidth.h"

static TwLine *g_lines;
static int g_count, g_cap;

/* Wraps and returns the lines joined with '|' (for compact expectations). */
static const char *wrap_str(const char *s, int width) {
    static char out[1024];
    g_count = 0;
    int n = tw_wrap(s, strlen(s), width, &g_lines, &g_count, &g_cap);
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) out[o++] = '|';
        memcpy(out + o, s + g_lines[i].start, g_lines[i].len);
        o += g_lines[i].len;
        out[o] = 0;
    }
    return out;
}

static void test_decode(void) {
    uint32_t cp;
    CHECK_EQ_INT(tw_decode("A", 1, &cp), 1);
    CHECK_EQ_INT(cp, 'A');
    CHECK_EQ_INT(tw_decode("\xc3\xa9", 2, &cp), 2); /* é */
    CHECK_EQ_INT(cp, 0xE9);
    CHECK_EQ_INT(tw_decode("\xe6\x97\xa5", 3, &cp), 3); /* 日 */
    CHECK_EQ_INT(cp, 0x65E5);
    CHECK_EQ_INT(tw_decode("\xf0\x9f\x98\x80", 4, &cp), 4); /* 😀 */
    CHECK_EQ_INT(cp, 0x1F600);
    /* Malformed: each consumes one byte and yields U+FFFD. */
    CHECK_EQ_INT(tw_decode("\xc0\x80", 2, &cp), 1); /* overlong */
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(tw_decode("\xed\xa0\x80", 3, &cp), 1); /* surrogate */
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(tw_decode("\xe6\x97", 2, &cp), 1); /* truncated */
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(tw_decode("\xe6" "A", 2, &cp), 1); /* bad continuation */
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(tw_decode("\xff", 1, &cp), 1);
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(tw_decode("\xf4\x90\x80\x80", 4, &cp), 1); /* > U+10FFFF */
    CHECK_EQ_INT(cp, 0xFFFD);
}

static void test_width(void) {
    CHECK_EQ_INT(tw_width("abc", 3), 3);
    CHECK_EQ_INT(tw_width("日本", 6), 4);
    CHECK_EQ_INT(tw_width("e\xcc\x81", 3), 1);             /* e + combining acute */
    CHECK_EQ_INT(tw_width("\xf0\x9f\x98\x80", 4), 2);      /* emoji */
    CHECK_EQ_INT(tw_width("\t", 1), TW_TAB);
    CHECK_EQ_INT(tw_width("\x1b[31m", 5), 5);              /* ESC drawn as U+FFFD, 1 col */
    CHECK_EQ_INT(tw_width("\xff\xfe", 2), 2);
    CHECK_EQ_INT(tw_display_cp(0x1b), 0xFFFD);
    CHECK_EQ_INT(tw_display_cp(0x9b), 0xFFFD);             /* C1 CSI */
    CHECK_EQ_INT(tw_display_cp('x'), 'x');
    /* fit never splits a character, keeps combining marks with their base */
    CHECK_EQ_INT(tw_fit("日本語", 9, 3), 3);
    CHECK_EQ_INT(tw_fit("日本語", 9, 4), 6);
    CHECK_EQ_INT(tw_fit("ae\xcc\x81z", 5, 2), 4);
    CHECK_EQ_INT(tw_fit("abc", 3, 10), 3);
    CHECK_EQ_INT(tw_fit("abc", 3, 0), 0);
    wchar_t w[16];
    CHECK_EQ_INT(tw_to_wcs("a\tb\x1b", 4, w, 16), 7);
    CHECK(w[0] == L'a' && w[1] == L' ' && w[4] == L' ' && w[5] == L'b' && w[6] == 0xFFFD);
    CHECK_EQ_INT(tw_to_wcs("abcdef", 6, w, 4), 3); /* bounded */
    CHECK(w[3] == 0);
}

static void test_wrap(void) {
    CHECK_STREQ(wrap_str("hello world", 5), "hello|world");
    CHECK_STREQ(wrap_str("hello world", 11), "hello world");
    CHECK_STREQ(wrap_str("hello world", 10), "hello|world");
    CHECK_STREQ(wrap_str("hello   world", 7), "hello|world");
    CHECK_STREQ(wrap_str("a\nb", 10), "a|b");
    CHECK_STREQ(wrap_str("a\n\nb", 10), "a||b");
    CHECK_STREQ(wrap_str("a\n", 10), "a|");
    CHECK_STREQ(wrap_str("", 10), "");
    CHECK_EQ_INT(g_count, 1);
    CHECK_STREQ(wrap_str("abcdefghij", 4), "abcd|efgh|ij");
    CHECK_STREQ(wrap_str("ab abcdefghij", 4), "ab|abcd|efgh|ij");
    CHECK_STREQ(wrap_str("日本語", 5), "日本|語");
    CHECK_STREQ(wrap_str("日本語", 4), "日本|語");
    CHECK_STREQ(wrap_str("a 😀😀", 4), "a|😀😀");
    CHECK_STREQ(wrap_str("trailing   ", 8), "trailing");
    CHECK_STREQ(wrap_str("x  ", 2), "x");
    CHECK_STREQ(wrap_str("x ", 2), "x ");
    CHECK_STREQ(wrap_str("ae\xcc\x81" "b", 2), "ae\xcc\x81|b");
    /* Column counts are right and never exceed the width. */
    wrap_str("one two 日本 three", 6);
    for (int i = 0; i < g_count; i++) CHECK(g_lines[i].cols <= 6);
    CHECK_STREQ(wrap_str("one two 日本 three", 6), "one|two|日本|three");
}

/* Random texts: every line fits, lines are in order and together keep every non-space byte. */
static void test_wrap_random(void) {
    const char *pieces[] = {"a", "bc", " ", "  ", "\n", "日", "😀", "e\xcc\x81", "word", "\xff",
                            "longlonglongword", "\t"};
    unsigned seed = 12345;
    int bad = 0;
    for (int iter = 0; iter < 2000; iter++) {
        char text[512];
        size_t n = 0;
        int parts = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 40;
        for (int p = 0; p < parts; p++) {
            seed = seed * 1103515245u + 12345u;
            const char *pc = pieces[(seed >> 16) % (sizeof pieces / sizeof pieces[0])];
            size_t l = strlen(pc);
            if (n + l >= sizeof text) break;
            memcpy(text + n, pc, l);
            n += l;
        }
        int width = 2 + (int)((seed >> 8) % 20);
        g_count = 0;
        tw_wrap(text, n, width, &g_lines, &g_count, &g_cap);
        char joined[512];
        size_t jn = 0, last_end = 0;
        for (int i = 0; i < g_count; i++) {
            TwLine *l = &g_lines[i];
            uint32_t cp0;
            /* Only a single character wider than the whole line (a tab or wide char in a
             * very narrow pane) may exceed it. */
            int oversize = l->cols > width &&
                           !(l->len && (size_t)tw_decode(text + l->start, l->len, &cp0) == l->len);
            if (oversize || l->start < last_end ||
                tw_width(text + l->start, l->len) != l->cols)
                bad++;
            last_end = l->start + l->len;
            for (size_t k = 0; k < l->len; k++)
                if (text[l->start + k] != ' ') joined[jn++] = text[l->start + k];
        }
        size_t en = 0;
        for (size_t k = 0; k < n; k++)
            if (text[k] != ' ' && text[k] != '\n') {
                if (en >= jn || joined[en] != text[k]) bad++;
                en++;
            }
        if (en != jn) bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

/* The chat view re-wraps a growing reply from the start of its last line only. That is right
 * only if appending text never moves an earlier break: check it against a full wrap. */
static void test_wrap_incremental(void) {
    const char *pieces[] = {"a", "bc", " ", "  ", "\n", "日", "😀", "e\xcc\x81", "word", "\xff",
                            "longlonglongword", "\t", "w12 ", "x"};
    unsigned seed = 4242;
    int bad = 0;
    for (int iter = 0; iter < 500; iter++) {
        char text[600];
        size_t n = 0;
        int width = 3 + (int)(((seed = seed * 1103515245u + 12345u) >> 16) % 25);
        TwLine *inc = NULL, *full = NULL;
        int n_inc = 0, cap_inc = 0, n_full = 0, cap_full = 0;
        tw_wrap(text, 0, width, &inc, &n_inc, &cap_inc);
        for (int step = 0; step < 60; step++) {
            seed = seed * 1103515245u + 12345u;
            const char *pc = pieces[(seed >> 16) % (sizeof pieces / sizeof pieces[0])];
            size_t l = strlen(pc);
            if (n + l >= sizeof text) break;
            memcpy(text + n, pc, l);
            n += l;
            size_t from = inc[n_inc - 1].start;
            n_inc--;
            int before = n_inc;
            tw_wrap(text + from, n - from, width, &inc, &n_inc, &cap_inc);
            for (int i = before; i < n_inc; i++) inc[i].start += from;
            n_full = 0;
            tw_wrap(text, n, width, &full, &n_full, &cap_full);
            if (n_full != n_inc) {
                bad++;
                break;
            }
            for (int i = 0; i < n_full; i++)
                if (full[i].start != inc[i].start || full[i].len != inc[i].len ||
                    full[i].cols != inc[i].cols)
                    bad++;
        }
        free(inc);
        free(full);
    }
    CHECK_EQ_INT(bad, 0);
}

int main(void) {
    if (!setlocale(LC_ALL, "C.UTF-8") && !setlocale(LC_ALL, "en_US.UTF-8"))
        SKIP("no UTF-8 locale available");
    test_decode();
    test_width();
    test_wrap();
    test_wrap_random();
    test_wrap_incremental();
    free(g_lines);
    return check_report("test_textwidth");
}
