/* ui/textwidth: UTF-8 decoding, display widths, fitting and word wrap. */
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/utf8.h"
#include "ui/textwidth.h"

static TwLine *g_lines;
static int g_count, g_cap;

/* Wraps with hanging-indent flags and returns the lines as drawn, joined with '|': each line
 * after its hang in spaces (for compact expectations). */
static const char *hwrap(const char *s, int width, unsigned flags) {
    static char out[2048];
    g_count = 0;
    int n = tw_wrap(s, strlen(s), width, flags, &g_lines, &g_count, &g_cap);
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) out[o++] = '|';
        for (int k = 0; k < g_lines[i].hang; k++) out[o++] = ' ';
        memcpy(out + o, s + g_lines[i].start, g_lines[i].len);
        o += g_lines[i].len;
        out[o] = 0;
    }
    return out;
}

#define HANGS(s, width, flags, want) CHECK_STREQ(hwrap(s, width, flags), want)

/* Wraps without hangs and returns the lines joined with '|'. */
static const char *wrap_str(const char *s, int width) { return hwrap(s, width, 0); }

static void test_decode(void) {
    uint32_t cp;
    CHECK_EQ_INT(utf8_next("A", 1, &cp), 1);
    CHECK_EQ_INT(cp, 'A');
    CHECK_EQ_INT(utf8_next("\xc3\xa9", 2, &cp), 2); /* é */
    CHECK_EQ_INT(cp, 0xE9);
    CHECK_EQ_INT(utf8_next("\xe6\x97\xa5", 3, &cp), 3); /* 日 */
    CHECK_EQ_INT(cp, 0x65E5);
    CHECK_EQ_INT(utf8_next("\xf0\x9f\x98\x80", 4, &cp), 4); /* 😀 */
    CHECK_EQ_INT(cp, 0x1F600);
    /* Malformed: each consumes one byte and yields U+FFFD. */
    CHECK_EQ_INT(utf8_next("\xc0\x80", 2, &cp), 1); /* overlong */
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(utf8_next("\xed\xa0\x80", 3, &cp), 1); /* surrogate */
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(utf8_next("\xe6\x97", 2, &cp), 1); /* truncated */
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(utf8_next("\xe6" "A", 2, &cp), 1); /* bad continuation */
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(utf8_next("\xff", 1, &cp), 1);
    CHECK_EQ_INT(cp, 0xFFFD);
    CHECK_EQ_INT(utf8_next("\xf4\x90\x80\x80", 4, &cp), 1); /* > U+10FFFF */
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

#define FAMILY3 "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7"
#define FAMILY4 FAMILY3 "\xe2\x80\x8d\xf0\x9f\x91\xa6"
#define HEART_VS16 "\xe2\x9d\xa4\xef\xb8\x8f"
#define FLAG_JP "\xf0\x9f\x87\xaf\xf0\x9f\x87\xb5"
#define RI_F "\xf0\x9f\x87\xab"
#define THUMBS_TONE "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd"
#define WOMAN_TONE_LAPTOP "\xf0\x9f\x91\xa9\xf0\x9f\x8f\xbd\xe2\x80\x8d\xf0\x9f\x92\xbb"
#define RAINBOW_FLAG "\xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88"
#define RUNNER_FEMALE "\xf0\x9f\x8f\x83\xe2\x80\x8d\xe2\x99\x80\xef\xb8\x8f"
#define ACUTE "\xcc\x81"
#define ZWJ_S "\xe2\x80\x8d"

static int cluster_len(const char *s) {
    int w;
    return (int)tw_cluster(s, strlen(s), &w);
}

/* Grapheme clusters and their widths, as tmux 3.3 draws them (the expected values were
 * measured there: printf the sequence, then read #{cursor_x}); see ui/textwidth.c. */
static void test_clusters(void) {
    CHECK_EQ_INT(tw_width(FAMILY3, strlen(FAMILY3)), 2);          /* ZWJ sequence: one emoji */
    CHECK_EQ_INT(cluster_len(FAMILY3), (int)strlen(FAMILY3));
    CHECK_EQ_INT(tw_width(FAMILY4, strlen(FAMILY4)), 4);          /* too long for a cell: cut */
    CHECK_EQ_INT(cluster_len(FAMILY4), (int)strlen(FAMILY4));     /* ...but never split */
    CHECK_EQ_INT(tw_width(RUNNER_FEMALE, strlen(RUNNER_FEMALE)), 2);
    CHECK_EQ_INT(cluster_len(RUNNER_FEMALE), (int)strlen(RUNNER_FEMALE));
    CHECK_EQ_INT(tw_width(RAINBOW_FLAG, strlen(RAINBOW_FLAG)), 1); /* first emoji is 1 wide */
    CHECK_EQ_INT(tw_width(HEART_VS16, strlen(HEART_VS16)), 1);    /* VS16 does not widen */
    CHECK_EQ_INT(cluster_len(HEART_VS16), (int)strlen(HEART_VS16));
    CHECK_EQ_INT(tw_width(FLAG_JP, strlen(FLAG_JP)), 2);
    CHECK_EQ_INT(cluster_len(FLAG_JP), (int)strlen(FLAG_JP));
    CHECK_EQ_INT(cluster_len(FLAG_JP RI_F), (int)strlen(FLAG_JP)); /* pairs, not runs */
    CHECK_EQ_INT(tw_width(FLAG_JP RI_F, strlen(FLAG_JP RI_F)), 3);
    CHECK_EQ_INT(tw_width(THUMBS_TONE, strlen(THUMBS_TONE)), 4);  /* modifier: its own cell */
    CHECK_EQ_INT(cluster_len(THUMBS_TONE), (int)strlen(THUMBS_TONE));
    CHECK_EQ_INT(tw_width(WOMAN_TONE_LAPTOP, strlen(WOMAN_TONE_LAPTOP)), 4);
    CHECK_EQ_INT(cluster_len(WOMAN_TONE_LAPTOP), (int)strlen(WOMAN_TONE_LAPTOP));
    CHECK_EQ_INT(tw_width("e" ACUTE ACUTE, 5), 1);
    CHECK_EQ_INT(cluster_len("e" ACUTE "x"), 3);
    CHECK_EQ_INT(tw_width(ACUTE "x", 3), 2);                       /* a stray mark: on a space */
    CHECK_EQ_INT(tw_width("a " ACUTE, 4), 3);
    CHECK_EQ_INT(cluster_len(" " ACUTE), 1);                        /* a space stays a break */
    CHECK_EQ_INT(tw_width("a" ZWJ_S "b", 5), 2);                    /* ZWJ joins emoji only */
    CHECK_EQ_INT(cluster_len("a" ZWJ_S "b"), 4);
    /* The cells curses gets: the family is one cell of 5 code points, 2 columns. */
    TwCell c;
    bool glue;
    CHECK_EQ_INT(tw_cell(FAMILY3, strlen(FAMILY3), &c, &glue), (int)strlen(FAMILY3));
    CHECK(c.n == 5 && c.width == 2 && c.cp[0] == 0x1F468 && c.cp[2] == 0x1F469 && c.cp[4] == 0x1F467);
    CHECK(!glue);
    /* Family of four: the first cell takes three members; the ZWJ before the fourth is not
     * sent (it would make the terminal join what curses counts as another cell). */
    size_t l = tw_cell(FAMILY4, strlen(FAMILY4), &c, &glue);
    CHECK_EQ_INT(l, strlen(FAMILY3) + 3);
    CHECK(c.n == 5 && glue);
    CHECK_EQ_INT(tw_cell(FAMILY4 + l, strlen(FAMILY4) - l, &c, &glue), 4);
    CHECK(c.n == 1 && c.cp[0] == 0x1F466 && c.width == 2);
    /* Fitting and wrapping never split a cluster. */
    CHECK_EQ_INT(tw_fit(FAMILY3, strlen(FAMILY3), 1), 0);
    CHECK_EQ_INT(tw_fit("x" FAMILY3, 1 + strlen(FAMILY3), 2), 1);
    CHECK_EQ_INT(tw_fit("x" FAMILY3, 1 + strlen(FAMILY3), 3), 1 + (int)strlen(FAMILY3));
    CHECK_EQ_INT(tw_fit(FLAG_JP, strlen(FLAG_JP), 1), 0);
    CHECK_EQ_INT(tw_fit(THUMBS_TONE, strlen(THUMBS_TONE), 3), 0);
    CHECK_STREQ(wrap_str("ab " FAMILY3 " cd", 3), "ab|" FAMILY3 "|cd");
    CHECK_STREQ(wrap_str("abc" FLAG_JP, 4), "abc|" FLAG_JP);
    CHECK_STREQ(wrap_str(THUMBS_TONE THUMBS_TONE, 5), THUMBS_TONE "|" THUMBS_TONE);
}

static void test_sanitize(void) {
    const char in[] = "A\xff\xfe" "B\xc2\x9b" "C\xe2\x80\x8b" "D\xed\xa0\x80" "E\x1b[31m\x7f\n\tF\xe6\x97";
    char *out = tw_sanitize(in, sizeof in - 1);
    CHECK(out != NULL);
    if (out)
        CHECK_STREQ(out, "A\xef\xbf\xbd\xef\xbf\xbd" "B" "C\xe2\x80\x8b" "D\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                         "E[31m\n\tF\xef\xbf\xbd\xef\xbf\xbd");
    free(out);
    out = tw_sanitize("日本 😀 ok", strlen("日本 😀 ok"));
    CHECK_STREQ(out, "日本 😀 ok");
    free(out);
}

/* The other conventions, as measured on terminals that draw these differently. */
static void test_terminal_modes(void) {
    TwTerm saved = tw_get_terminal();
    TwTerm t = saved;
    t.zwj_joins = false; /* xterm, VTE */
    tw_set_terminal(&t);
    CHECK_EQ_INT(tw_width(FAMILY3, strlen(FAMILY3)), 6);
    CHECK_EQ_INT(cluster_len(FAMILY3), (int)strlen(FAMILY3)); /* still one cluster */
    CHECK_EQ_INT(tw_fit("x" FAMILY3, 1 + strlen(FAMILY3), 6), 1);
    TwCell c;
    bool glue;
    CHECK_EQ_INT(tw_cell(FAMILY3, strlen(FAMILY3), &c, &glue), 7); /* man + ZWJ */
    CHECK(c.n == 2 && c.cp[1] == 0x200D && glue && c.width == 2);
    t = saved;
    t.modifier_joins = true; /* kitty, WezTerm */
    tw_set_terminal(&t);
    CHECK_EQ_INT(tw_width(THUMBS_TONE, strlen(THUMBS_TONE)), 2);
    CHECK_EQ_INT(tw_cell(THUMBS_TONE, strlen(THUMBS_TONE), &c, &glue), (int)strlen(THUMBS_TONE));
    CHECK(c.n == 2 && c.cp[1] == 0x1F3FD && !glue);
    CHECK_EQ_INT(tw_width(WOMAN_TONE_LAPTOP, strlen(WOMAN_TONE_LAPTOP)), 2);
    t = saved;
    t.vs16_widens = true; /* kitty, WezTerm */
    tw_set_terminal(&t);
    CHECK_EQ_INT(tw_width(HEART_VS16, strlen(HEART_VS16)), 1);
    CHECK_EQ_INT(tw_cell(HEART_VS16, strlen(HEART_VS16), &c, &glue), (int)strlen(HEART_VS16));
    CHECK(c.n == 1 && c.cp[0] == 0x2764); /* the VS16 is not sent */
    CHECK_EQ_INT(tw_width("\xf0\x9f\x98\x80\xef\xb8\x8f", 7), 2); /* 2 wide anyway: kept */
    CHECK_EQ_INT(tw_cell("\xf0\x9f\x98\x80\xef\xb8\x8f", 7, &c, &glue), 7);
    CHECK(c.n == 2);
    tw_set_terminal(&saved);
}

/* Hanging indents (the tests below): the continuation lines of a list item, an indented line
 * and (asked for, for the program's notes) a two-column line start under the text after the
 * prefix. First, list items. */
static void test_hang_lists(void) {
    const unsigned I = TW_HANG_INDENT;
    HANGS("- alpha beta gamma delta epsilon", 24, I, "- alpha beta gamma delta|  epsilon");
    CHECK_EQ_INT(g_lines[0].hang, 0);
    CHECK_EQ_INT(g_lines[1].hang, 2);
    HANGS("* alpha beta gamma delta epsilon", 24, I, "* alpha beta gamma delta|  epsilon");
    HANGS("+ alpha beta gamma delta epsilon", 24, I, "+ alpha beta gamma delta|  epsilon");
    HANGS("• alpha beta gamma delta epsilon", 24, I, "• alpha beta gamma delta|  epsilon");
    HANGS("12. alpha beta gamma delta epsilon zeta eta theta", 24, I,
          "12. alpha beta gamma|    delta epsilon zeta|    eta theta");
    HANGS("3) alpha beta gamma delta epsilon", 24, I, "3) alpha beta gamma|   delta epsilon");
    HANGS("123456789. alpha beta gamma delta", 30, I,
          "123456789. alpha beta gamma|           delta");
    /* Nested, and blanks after the marker: under the text. */
    HANGS("  - nested item with some more words", 24, I,
          "  - nested item with|    some more words");
    HANGS("-   gap item with some more words", 24, I, "-   gap item with some|    more words");
    /* Not markers: no space after, a decimal, ten digits, emphasis; no text after one. */
    HANGS("12.5 is a number and more words", 24, I, "12.5 is a number and|more words");
    HANGS("1234567890. ten digits is not a list", 24, I, "1234567890. ten digits|is not a list");
    HANGS("-x is not a list item at all here", 24, I, "-x is not a list item at|all here");
    HANGS("*bold* is not a list item at all", 24, I, "*bold* is not a list|item at all");
    HANGS("1\xff. is not a list item at all", 24, I, "1\xff. is not a list item|at all");
    HANGS("-", 24, I, "-");
    HANGS("- ", 24, I, "- ");
    /* A long word after the marker is split there, not moved under an orphaned "-". */
    HANGS("- abcdefghijklmnopqrstuvwxyz0123456789", 20, I,
          "- abcdefghijklmnopqr|  stuvwxyz0123456789");
    HANGS("- abcdefghijklmnopqrstuvwxyz0123456789", 20, 0,
          "-|abcdefghijklmnopqrst|uvwxyz0123456789");
    /* Each logical line has its own hang; the first line of each is at 0. */
    HANGS("Intro text here:\n- one two three four five six\n10. seven eight nine ten eleven",
          24, I, "Intro text here:|- one two three four|  five six|10. seven eight nine ten|"
                 "    eleven");
    CHECK(g_count == 5 && g_lines[1].hang == 0 && g_lines[3].hang == 0 && g_lines[4].hang == 4);
    /* Without the flag nothing hangs. */
    HANGS("- alpha beta gamma delta epsilon", 24, 0, "- alpha beta gamma delta|epsilon");
}

static void test_hang_indent(void) {
    const unsigned I = TW_HANG_INDENT;
    HANGS("    code with some long words here", 24, I, "    code with some long|    words here");
    HANGS("\tcode with some long words here", 24, I, "\tcode with some long|    words here");
    CHECK_EQ_INT(g_lines[1].hang, TW_TAB);
    HANGS(" \t- item in a tabbed list goes on", 24, I, " \t- item in a tabbed|       list goes on");
    /* A long word after the indent is split in place (without a hang the spaces are dropped). */
    HANGS("    abcdefghijklmnopqrstuvwxyz", 20, I, "    abcdefghijklmnop|    qrstuvwxyz");
    HANGS("    abcdefghijklmnopqrstuvwxyz", 20, 0, "abcdefghijklmnopqrst|uvwxyz");
    /* Blank lines and lines of blanks only have no hang. */
    HANGS("    \n\n  x", 24, I, "    ||  x");
}

/* The two-column rule, on /help's own lines. */
static void test_hang_columns(void) {
    const unsigned C = TW_HANG_COLUMNS, IC = TW_HANG_INDENT | TW_HANG_COLUMNS;
    const char *show = "  /show                      the model: file, architecture, weights, "
                       "vocabulary, context, chat format, backend";
    char want[256];
    snprintf(want, sizeof want, "%.80s|%29scontext, chat format, backend", show, "");
    HANGS(show, 80, IC, want);
    CHECK_EQ_INT(g_lines[1].hang, 29);
    HANGS(show, 80, C, want);
    /* Too wide a column for the width: the indent rule, or nothing. */
    HANGS(show, 50, IC,
          "  /show                      the model: file,"
          "|  architecture, weights, vocabulary, context, chat|  format, backend");
    HANGS(show, 50, C,
          "  /show                      the model: file,"
          "|architecture, weights, vocabulary, context, chat|format, backend");
    /* Not asked for: the indent only. */
    HANGS("  /x  alpha beta gamma delta epsilon", 24, TW_HANG_INDENT,
          "  /x  alpha beta gamma|  delta epsilon");
    HANGS("  /x  alpha beta gamma delta epsilon", 24, C,
          "  /x  alpha beta gamma|      delta epsilon");
    /* The first text may hold single spaces (/params' names); leading blanks are no run. */
    HANGS("  system prompt   \"You are a helpful assistant.\"", 40, IC,
          "  system prompt   \"You are a helpful|                  assistant.\"");
    HANGS("     one two three four five six", 24, C, "     one two three four|five six");
    /* No run, or no text after it: no column. */
    HANGS("Keys: Enter send, Ctrl-J new line", 24, IC, "Keys: Enter send, Ctrl-J|new line");
    /* An unindented line is no column row: a note may quote the user's own spaces. */
    HANGS("System prompt: Be   brief and kind to all of them", 40, TW_HANG_COLUMNS,
          "System prompt: Be   brief and kind to|all of them");
    HANGS("  /x    ", 24, C, "  /x    ");
}

/* Too little room left: no hang (never a width below TW_HANG_MIN_ROOM or past the middle). */
static void test_hang_fallback(void) {
    const unsigned I = TW_HANG_INDENT;
    HANGS("- alpha beta gamma delta", 17, I, "- alpha beta|gamma delta");
    HANGS("- alpha beta gamma delta", 18, I, "- alpha beta gamma|  delta");
    char text[128], want[160];
    /* At most half the width: 20 of 40 hangs, 21 does not. */
    snprintf(text, sizeof text, "%20saaaa bbbb cccc dddd eeee", "");
    snprintf(want, sizeof want, "%20saaaa bbbb cccc dddd|%20seeee", "", "");
    HANGS(text, 40, I, want);
    snprintf(text, sizeof text, "%21saaaa bbbb cccc dddd eeee", "");
    snprintf(want, sizeof want, "%21saaaa bbbb cccc dddd|eeee", "");
    HANGS(text, 40, I, want);
    /* At least TW_HANG_MIN_ROOM after it: 14 of 30 hangs, 15 does not. */
    snprintf(text, sizeof text, "%14saaaa bbbb cccc dddd", "");
    snprintf(want, sizeof want, "%14saaaa bbbb cccc|%14sdddd", "", "");
    HANGS(text, 30, I, want);
    snprintf(text, sizeof text, "%15saaaa bbbb cccc dddd", "");
    snprintf(want, sizeof want, "%15saaaa bbbb cccc|dddd", "");
    HANGS(text, 30, I, want);
    /* Tiny widths: as without a hang. */
    for (int w = 1; w <= 17; w++) {
        char plain[256];
        snprintf(plain, sizeof plain, "%s", hwrap("- a list item  with\n  12. words", w, 0));
        HANGS("- a list item  with\n  12. words", w, TW_HANG_INDENT | TW_HANG_COLUMNS, plain);
    }
}

/* Wide characters (CJK, emoji) in the prefix count their columns; bytes that are not UTF-8
 * count one column each, as drawn (U+FFFD). */
static void test_hang_wide(void) {
    const unsigned IC = TW_HANG_INDENT | TW_HANG_COLUMNS;
    HANGS(" 日本語  one two three four five six", 30, IC,
          " 日本語  one two three four|         five six");
    CHECK_EQ_INT(g_lines[1].hang, 9);
    HANGS("  " FAMILY3 "  one two three four five six", 30, IC,
          "  " FAMILY3 "  one two three four five|      six");
    HANGS("  😀e\xcc\x81  one two three four five six", 30, IC,
          "  😀e\xcc\x81  one two three four five|       six");
    HANGS("- 日本語日本語日本語日本語日本語", 20, IC, "- 日本語日本語日本語|  日本語日本語");
    HANGS("• " FLAG_JP " flags and more words here", 24, IC,
          "• " FLAG_JP " flags and more|  words here");
}

static void test_hang_invalid_utf8(void) {
    const unsigned IC = TW_HANG_INDENT | TW_HANG_COLUMNS;
    HANGS(" \xff\xfe  one two three four five six", 30, IC,
          " \xff\xfe  one two three four five|     six");
    CHECK_EQ_INT(g_lines[1].hang, 5);
    /* Text of bad bytes after a marker hangs under them and keeps every byte. */
    char text[64], want[80];
    memcpy(text, "- ", 2);
    memset(text + 2, '\xff', 30);
    text[32] = 0;
    snprintf(want, sizeof want, "- %.18s|  %.12s", text + 2, text + 2);
    HANGS(text, 20, IC, want);
    /* A cut-off "•" is no marker; nor is a marker's digit followed by a bad byte. */
    HANGS("\xe2\x80 alpha beta gamma delta epsilon", 24, IC,
          "\xe2\x80 alpha beta gamma|delta epsilon");
    HANGS("- \xe2\x80\xa2 alpha beta gamma delta", 24, IC,
          "- \xe2\x80\xa2 alpha beta gamma|  delta");
}

static const char *const g_pieces[] = {
    "a", "bc", " ", "  ", "\n", "日", "😀", "e\xcc\x81", "word", "\xff", "longlonglongword", "\t",
    FAMILY3, FAMILY4, FLAG_JP, RI_F, THUMBS_TONE, "\xf0\x9f\x8f\xbd", HEART_VS16, ACUTE, ZWJ_S,
    "w12 ", "x", "\n- ", "\n* ", "\n• ", "\n12. ", "\n3) ", "\n  ", "\n\t", "- ", "12", ".", ")",
    "1", "   ", "        ", "the ", "list ", "item ", "\xe2\x80"};
enum { N_PIECES = sizeof g_pieces / sizeof g_pieces[0] };
static const unsigned g_flags[] = {0, TW_HANG_INDENT, TW_HANG_COLUMNS,
                                   TW_HANG_INDENT | TW_HANG_COLUMNS};

/* Random texts: every line fits, lines are in order and together keep every non-space byte;
 * a logical line's first line has no hang, its others share one that leaves them room. */
static void test_wrap_random(void) {
    unsigned seed = 12345;
    int bad = 0;
    for (int iter = 0; iter < 4000; iter++) {
        char text[512];
        size_t n = 0;
        int parts = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 60;
        for (int p = 0; p < parts; p++) {
            seed = seed * 1103515245u + 12345u;
            const char *pc = g_pieces[(seed >> 16) % N_PIECES];
            size_t l = strlen(pc);
            if (n + l >= sizeof text) break;
            memcpy(text + n, pc, l);
            n += l;
        }
        int width = 2 + (int)((seed >> 8) % 50);
        unsigned flags = g_flags[iter % 4];
        g_count = 0;
        tw_wrap(text, n, width, flags, &g_lines, &g_count, &g_cap);
        char joined[512];
        size_t jn = 0, last_end = 0;
        int hang = 0;
        for (int i = 0; i < g_count; i++) {
            TwLine *l = &g_lines[i];
            int cw0;
            /* Only a single cluster wider than the whole line (a tab or wide char in a
             * very narrow pane) may exceed it. */
            int oversize = l->hang + l->cols > width &&
                           !(l->len && tw_cluster(text + l->start, l->len, &cw0) == l->len);
            if (oversize || l->start < last_end ||
                tw_width(text + l->start, l->len) != l->cols)
                bad++;
            bool first = i == 0 || memchr(text + last_end, '\n', l->start - last_end);
            if (first ? l->hang != 0 : hang >= 0 && l->hang != hang) bad++;
            hang = first ? -1 : l->hang;
            if (l->hang && (l->hang > width / 2 || width - l->hang < TW_HANG_MIN_ROOM)) bad++;
            if (!flags && l->hang) bad++;
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

/* Appends text code point by code point, re-wrapping with tw_rewrap_last each time; returns
 * the number of times the lines differed from a full wrap. */
static int stream_mismatches(const char *text, int width, unsigned flags) {
    TwLine *inc = NULL, *full = NULL;
    int n_inc = 0, cap_inc = 0, n_full = 0, cap_full = 0, bad = 0;
    size_t total = strlen(text);
    tw_wrap(text, 0, width, flags, &inc, &n_inc, &cap_inc);
    for (size_t n = 0; n < total;) {
        uint32_t cp;
        n += (size_t)utf8_next(text + n, total - n, &cp);
        tw_rewrap_last(text, n, width, flags, &inc, &n_inc, &cap_inc);
        n_full = 0;
        tw_wrap(text, n, width, flags, &full, &n_full, &cap_full);
        bad += n_full != n_inc;
        for (int i = 0; i < n_full && i < n_inc; i++)
            bad += full[i].start != inc[i].start || full[i].len != inc[i].len ||
                   full[i].cols != inc[i].cols || full[i].hang != inc[i].hang;
    }
    free(inc);
    free(full);
    return bad;
}

/* The chat view re-wraps a growing reply with tw_rewrap_last, from its last line only. That is
 * right only if appending text never moves an earlier break nor changes the hang a
 * continuation line was given: check it against a full wrap, piece by piece. */
static void test_wrap_incremental(void) {
    unsigned seed = 4242;
    int bad = 0, hung = 0;
    for (int iter = 0; iter < 250; iter++) {
        char text[1200];
        size_t n = 0;
        int width = 3 + (int)(((seed = seed * 1103515245u + 12345u) >> 16) % 60);
        unsigned flags = g_flags[iter % 4];
        TwLine *inc = NULL, *full = NULL;
        int n_inc = 0, cap_inc = 0, n_full = 0, cap_full = 0;
        tw_wrap(text, 0, width, flags, &inc, &n_inc, &cap_inc);
        for (int step = 0; step < 100; step++) {
            seed = seed * 1103515245u + 12345u;
            const char *pc = g_pieces[(seed >> 16) % N_PIECES];
            size_t l = strlen(pc);
            if (n + l >= sizeof text) break;
            memcpy(text + n, pc, l);
            n += l;
            tw_rewrap_last(text, n, width, flags, &inc, &n_inc, &cap_inc);
            n_full = 0;
            tw_wrap(text, n, width, flags, &full, &n_full, &cap_full);
            if (n_full != n_inc) {
                bad++;
                break;
            }
            for (int i = 0; i < n_full; i++) {
                if (full[i].start != inc[i].start || full[i].len != inc[i].len ||
                    full[i].cols != inc[i].cols || full[i].hang != inc[i].hang)
                    bad++;
                hung += full[i].hang > 0;
            }
        }
        free(inc);
        free(full);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(hung > 1000); /* the hanging case was exercised */
}

/* Streams texts code point by code point at every width from the first that leaves a hang
 * room (17) to 60, against the full wrap. */
static void test_wrap_streaming_hang(void) {
    /* Where a hang could change as the text grows: a list number longer than a marker's (so
     * the rule never looks further ahead than the room a hang leaves), a first line that lost
     * its leading spaces before a long word (its hang is measured from before them), list
     * items and two-column lines. */
    const unsigned IC = TW_HANG_INDENT | TW_HANG_COLUMNS;
    char digits[128];
    snprintf(digits, sizeof digits, "  %s. tail words here and more words to wrap around it",
             "123456789012345678901234567890");
    int bad_digits = 0, bad_dropped = 0, bad_mixed = 0;
    for (int w = 17; w <= 60; w++) {
        bad_digits += stream_mismatches(digits, w, IC);
        bad_dropped += stream_mismatches("                              longword  more words that "
                                         "go on and on and on and on", w, IC);
        bad_mixed += stream_mismatches("Intro:\n- one two three four five six seven eight nine\n"
                                       "  12. ten eleven twelve thirteen fourteen fifteen\n"
                                       "\tcode(with, some, arguments, that, are, long)\n"
                                       "  /show      the model: file, architecture, weights",
                                       w, IC);
    }
    CHECK_EQ_INT(bad_digits, 0);
    CHECK_EQ_INT(bad_dropped, 0);
    CHECK_EQ_INT(bad_mixed, 0);
}

int main(void) {
    if (!setlocale(LC_ALL, "C.UTF-8") && !setlocale(LC_ALL, "en_US.UTF-8"))
        SKIP("no UTF-8 locale available");
    test_decode();
    test_width();
    test_wrap();
    test_clusters();
    test_terminal_modes();
    test_sanitize();
    test_hang_lists();
    test_hang_indent();
    test_hang_columns();
    test_hang_fallback();
    test_hang_wide();
    test_hang_invalid_utf8();
    test_wrap_random();
    test_wrap_incremental();
    test_wrap_streaming_hang();
    /* The wrapping invariants hold under every measured convention. */
    TwTerm saved = tw_get_terminal();
    for (int mode = 0; mode < 8; mode++) {
        TwTerm t = {.zwj_joins = mode & 1, .modifier_joins = (mode >> 1) & 1, .vs16_widens = (mode >> 2) & 1};
        tw_set_terminal(&t);
        test_wrap_random();
        test_wrap_incremental();
    }
    tw_set_terminal(&saved);
    free(g_lines);
    return check_report("test_textwidth");
}
