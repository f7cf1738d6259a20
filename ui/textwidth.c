/* Display widths and greedy word wrap of UTF-8 text (see textwidth.h). */
#define _GNU_SOURCE /* wcwidth */
#include "ui/textwidth.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "infer/utf8.h"

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

/* ---- grapheme clusters ---------------------------------------------------------------------
 *
 * Which convention, and why. Terminals do not agree on the width of emoji sequences, and what
 * matters most is that our idea of a width matches both the terminal's and curses' (curses
 * places every cell itself; a cell the terminal draws wider or narrower than curses thinks
 * shifts the rest of the line). So widths follow what the terminal is sent, cell by cell, and
 * the three points where terminals differ are measured on the terminal itself at start-up
 * (ui/screen.c writes a sample and asks for the cursor position, as vim does for ambiguous
 * widths; tw_set_terminal() takes the answer). Without an answer the defaults are what tmux
 * 3.3 draws (measured; our tests run in it):
 *   - a character and the zero-width code points after it (combining marks, variation
 *     selectors, ZWJ, tags) are one cell as wide as that character (wcwidth);
 *   - an emoji ZWJ sequence (Extended_Pictographic, ZWJ, Extended_Pictographic, ...) is one
 *     cell as wide as its first emoji: the family U+1F468 ZWJ U+1F469 ZWJ U+1F467 is 2 columns,
 *     as in tmux >= 3.3, kitty, WezTerm, foot, iTerm2, Windows Terminal. A cell holds at most
 *     TW_CELL_MAX code points (curses' CCHARW_MAX); a longer sequence is cut at a ZWJ, which is
 *     then not sent, so that the terminal draws the rest as another emoji rather than joining
 *     it behind curses' back (a family of four: 4 columns). Measured "not joined" (xterm,
 *     VTE): each emoji is a cell of its own, the family 6 columns;
 *   - a skin-tone modifier (U+1F3FB..U+1F3FF) is a cell of its own, 2 columns (a thumbs-up
 *     with a tone is 4), as tmux, xterm and VTE draw it. Measured "joined" (kitty, WezTerm):
 *     it goes into its emoji's cell, 2 columns in all;
 *   - VS16 does not widen: U+2764 U+FE0F (red heart) is 1 column. Measured "widens" (kitty,
 *     WezTerm draw it 2 wide, which curses cannot count for a 1-column character): the VS16 is
 *     not sent, so the heart is drawn 1 column wide there too;
 *   - regional indicators are 1 column each (wcwidth), so a flag (a pair) is 2, as everywhere.
 * Whatever the widths, a grapheme cluster (Unicode UAX #29, in the subset above plus
 * regional-indicator pairs) is never split: not by wrapping, fitting or cursor placement. A
 * zero-width code point with nothing to attach to (at the start of the text, or after a space,
 * tab or line end) is drawn on a space: 1 column. */

static TwTerm g_term = {.zwj_joins = true, .modifier_joins = false, .vs16_widens = false};

void tw_set_terminal(const TwTerm *t) { g_term = *t; }
TwTerm tw_get_terminal(void) { return g_term; }

static bool is_ext_pict(uint32_t c) {
    /* Extended_Pictographic (Unicode emoji-data), in coarse ranges. */
    if (c < 0xA9) return false;
    if (c == 0xA9 || c == 0xAE || c == 0x203C || c == 0x2049 || c == 0x2122 || c == 0x2139 ||
        c == 0x2328 || c == 0x2388 || c == 0x23CF || c == 0x24C2 || c == 0x25B6 || c == 0x25C0 ||
        c == 0x2B50 || c == 0x2B55 || c == 0x3030 || c == 0x303D || c == 0x3297 || c == 0x3299)
        return true;
    return (c >= 0x2194 && c <= 0x2199) || (c >= 0x21A9 && c <= 0x21AA) ||
           (c >= 0x231A && c <= 0x231B) || (c >= 0x23E9 && c <= 0x23F3) ||
           (c >= 0x23F8 && c <= 0x23FA) || (c >= 0x25AA && c <= 0x25AB) ||
           (c >= 0x25FB && c <= 0x25FE) || (c >= 0x2600 && c <= 0x27BF) ||
           (c >= 0x2934 && c <= 0x2935) || (c >= 0x2B05 && c <= 0x2B07) ||
           (c >= 0x2B1B && c <= 0x2B1C) || (c >= 0x1F000 && c <= 0x1F0FF) ||
           (c >= 0x1F10D && c <= 0x1F10F) || c == 0x1F12F || (c >= 0x1F16C && c <= 0x1F171) ||
           (c >= 0x1F17E && c <= 0x1F17F) || c == 0x1F18E || (c >= 0x1F191 && c <= 0x1F19A) ||
           (c >= 0x1F1AD && c <= 0x1F1E5) || (c >= 0x1F201 && c <= 0x1F20F) || c == 0x1F21A ||
           c == 0x1F22F || (c >= 0x1F232 && c <= 0x1F23A) || (c >= 0x1F23C && c <= 0x1F23F) ||
           (c >= 0x1F249 && c <= 0x1F3FA) || (c >= 0x1F400 && c <= 0x1F53D) ||
           (c >= 0x1F546 && c <= 0x1F64F) || (c >= 0x1F680 && c <= 0x1F6FF) ||
           (c >= 0x1F774 && c <= 0x1F77F) || (c >= 0x1F7D5 && c <= 0x1F7FF) ||
           (c >= 0x1F80C && c <= 0x1F80F) || (c >= 0x1F848 && c <= 0x1F84F) ||
           (c >= 0x1F85A && c <= 0x1F85F) || (c >= 0x1F888 && c <= 0x1F88F) ||
           (c >= 0x1F8AE && c <= 0x1F8FF) || (c >= 0x1F90C && c <= 0x1F93A) ||
           (c >= 0x1F93C && c <= 0x1F945) || (c >= 0x1F947 && c <= 0x1FAFF) ||
           (c >= 0x1FC00 && c <= 0x1FFFD);
}

static bool is_modifier(uint32_t c) { return c >= 0x1F3FB && c <= 0x1F3FF; }
static bool is_ri(uint32_t c) { return c >= 0x1F1E6 && c <= 0x1F1FF; }
enum { ZWJ = 0x200D };

/* Zero-width code points that attach to the cell before them. */
static bool is_extend(uint32_t c) {
    return c >= 0x300 && tw_display_cp(c) == c && wcwidth((wchar_t)c) == 0;
}

size_t tw_cell(const char *s, size_t n, TwCell *c, bool *glue) {
    uint32_t cp;
    size_t i = (size_t)utf8_next(s, n, &cp);
    c->n = 0;
    *glue = false;
    if (cp == '\t') {
        c->cp[c->n++] = ' ';
        c->width = TW_TAB;
        c->tab = true;
        return i;
    }
    c->tab = false;
    bool pict = false;
    if (is_extend(cp)) {
        /* Nothing to attach to: drawn on a space. */
        c->cp[c->n++] = ' ';
        c->width = 1;
        c->cp[c->n++] = cp;
    } else {
        c->cp[c->n++] = tw_display_cp(cp);
        c->width = tw_cp_width(cp);
        pict = is_ext_pict(cp) || is_modifier(cp); /* a modifier continues its emoji */
        if (cp == ' ' || cp == '\n') return i; /* a space never takes marks: it stays a break */
    }
    while (i < n) {
        uint32_t next;
        int l = utf8_next(s + i, n - i, &next);
        if (next == ZWJ && pict && i + (size_t)l < n) {
            uint32_t after;
            int l2 = utf8_next(s + i + (size_t)l, n - i - (size_t)l, &after);
            if (is_ext_pict(after)) {
                /* An emoji ZWJ sequence: the next emoji joins this cell (no width of its
                 * own), if the cell has room for both; else the ZWJ is dropped and the emoji
                 * starts the next cell of the same cluster. On a terminal that does not join
                 * them, the ZWJ stays with this cell and the emoji takes a cell of its own. */
                if (!g_term.zwj_joins) {
                    if (c->n < TW_CELL_MAX) c->cp[c->n++] = ZWJ;
                    *glue = true;
                    return i + (size_t)l;
                }
                if (c->n + 2 <= TW_CELL_MAX) {
                    c->cp[c->n++] = ZWJ;
                    c->cp[c->n++] = after;
                    i += (size_t)(l + l2);
                    continue;
                }
                *glue = true;
                return i + (size_t)l;
            }
        }
        if (!is_extend(next)) {
            if (pict && is_modifier(next)) {
                /* An emoji modifier: in this cell where the terminal joins it, else a cell of
                 * its own in the same cluster. */
                if (g_term.modifier_joins && c->n < TW_CELL_MAX) {
                    c->cp[c->n++] = next;
                    i += (size_t)l;
                    continue;
                }
                *glue = true;
            }
            break;
        }
        /* VS16 on a 1-column character, where the terminal would draw it 2 wide: not sent. */
        bool drop = next == 0xFE0F && g_term.vs16_widens && c->width == 1;
        if (c->n < TW_CELL_MAX && !drop) c->cp[c->n++] = next; /* further marks are not drawn */
        i += (size_t)l;
    }
    return i;
}

size_t tw_cluster(const char *s, size_t n, int *cols) {
    /* Fast path, most text: an ASCII character not followed by a mark (a mark would be
     * non-ASCII) is a cluster of its own, 1 column (a control is drawn as U+FFFD). */
    if ((unsigned char)s[0] < 0x80 && (n == 1 || (unsigned char)s[1] < 0x80)) {
        *cols = s[0] == '\t' ? TW_TAB : 1;
        return 1;
    }
    size_t i = 0;
    int w = 0;
    for (int cells = 0;; cells++) {
        TwCell c;
        bool glue;
        uint32_t first;
        utf8_next(s + i, n - i, &first);
        i += tw_cell(s + i, n - i, &c, &glue);
        w += c.width;
        if (i >= n) break;
        if (!glue) {
            /* Regional indicators pair up into flags: a lone one takes the next. */
            uint32_t next;
            utf8_next(s + i, n - i, &next);
            if (cells == 0 && is_ri(first) && is_ri(next)) {
                i += tw_cell(s + i, n - i, &c, &glue);
                w += c.width;
            }
            break;
        }
    }
    *cols = w;
    return i;
}

int tw_width(const char *s, size_t n) {
    int cols = 0;
    for (size_t i = 0; i < n;) {
        int w;
        i += tw_cluster(s + i, n - i, &w);
        cols += w;
    }
    return cols;
}

size_t tw_fit(const char *s, size_t n, int max_cols) {
    int cols = 0;
    size_t i = 0;
    while (i < n) {
        int w;
        size_t len = tw_cluster(s + i, n - i, &w);
        if (cols + w > max_cols) break;
        cols += w;
        i += len;
    }
    return i;
}

static int push_line(TwLine **lines, int *count, int *cap, size_t start, size_t len, int cols,
                     int hang) {
    if (*count == *cap) {
        int ncap = *cap ? *cap * 2 : 64;
        TwLine *nl = realloc(*lines, (size_t)ncap * sizeof *nl);
        if (!nl) return -1;
        *lines = nl;
        *cap = ncap;
    }
    (*lines)[(*count)++] = (TwLine){start, len, cols, hang};
    return 0;
}

/* ---- hanging indents -------------------------------------------------------------------------
 *
 * A logical line's hang is decided from its first bytes only, and tw_rewrap_last relies on
 * this: the hang given to a continuation line while a reply streams must be the one the whole
 * text gives. It is, because a hang only counts if it is at most width - TW_HANG_MIN_ROOM and
 * text follows it. A logical line breaks only once a cluster ends past column width; every
 * byte the rules below read lies before a valid hang's column plus 11 (the longest marker
 * looked ahead: 9 digits, "." and a blank), so it was there at the first break. A prefix not
 * complete by then (the text ended inside it) would end past that column, where the whole
 * text gives no valid hang either. */

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* Steps over blanks from s[*i], adding their columns to *col. */
static void skip_blanks(const char *s, size_t n, size_t *i, int *col) {
    for (; *i < n && is_blank(s[*i]); (*i)++) *col += s[*i] == '\t' ? TW_TAB : 1;
}

/* Bytes of a list marker at s[0..n) (its blank after it not included), 0 if none. */
static size_t list_marker(const char *s, size_t n) {
    size_t m = 0;
    if (n >= 1 && (s[0] == '-' || s[0] == '*' || s[0] == '+')) m = 1;
    else if (n >= 3 && !memcmp(s, "\xe2\x80\xa2", 3)) m = 3; /* • */
    else {
        while (m < n && m < 10 && s[m] >= '0' && s[m] <= '9') m++;
        if (m == 0 || m > 9 || m >= n || (s[m] != '.' && s[m] != ')')) return 0;
        m++;
    }
    return m < n && is_blank(s[m]) ? m : 0;
}

/* The column where the text after the prefix starts, if text follows it on the line and it
 * is at most max; else 0. */
static int text_column(const char *s, size_t n, size_t i, int col, int max) {
    return i < n && s[i] != '\n' && col <= max ? col : 0;
}

static int indent_hang(const char *s, size_t n, int max) {
    size_t i = 0;
    int col = 0;
    skip_blanks(s, n, &i, &col);
    size_t m = list_marker(s + i, n - i);
    if (m) {
        col += tw_width(s + i, m);
        i += m;
        skip_blanks(s, n, &i, &col);
    }
    return text_column(s, n, i, col, max);
}

static int columns_hang(const char *s, size_t n, int max) {
    size_t i = 0;
    int col = 0;
    skip_blanks(s, n, &i, &col);
    /* Only indented rows are columns (/help's and /params' are): a note's unindented line
     * may quote the user ("System prompt: Be   brief"), whose spaces are not a layout. */
    if (i == 0 || i >= n || s[i] == '\n') return 0;
    while (i < n && s[i] != '\n' && col <= max) {
        if (s[i] == ' ' && i + 1 < n && s[i + 1] == ' ') {
            for (; i < n && s[i] == ' '; i++) col++;
            return text_column(s, n, i, col, max);
        }
        int w;
        i += tw_cluster(s + i, n - i, &w);
        col += w;
    }
    return 0;
}

/* The hang of the logical line that starts at s[0] (it runs to '\n' or n), 0 if none. */
static int line_hang(const char *s, size_t n, int width, unsigned flags) {
    int max = width / 2;
    if (max > width - TW_HANG_MIN_ROOM) max = width - TW_HANG_MIN_ROOM;
    if (max < 1) return 0;
    int h = 0;
    if (flags & TW_HANG_COLUMNS) h = columns_hang(s, n, max);
    if (!h && (flags & TW_HANG_INDENT)) h = indent_hang(s, n, max);
    return h;
}

/* Wraps s[from..n): from starts a logical line if hang < 0, else it starts a continuation
 * line of a logical line with that hang. Line starts are offsets in s. */
static int wrap_from(const char *s, size_t n, size_t from, int hang, int width, unsigned flags,
                     TwLine **lines, int *count, int *cap) {
    if (width < 1) width = 1;
    int before = *count;
    size_t line_start = from, i = from;
    int cols = 0;
    /* first: this line is its logical line's first (drawn at 0, width columns of room, no
     * break inside the prefix); else it is drawn at hang with width - hang of room. */
    bool first = hang < 0;
    if (first) hang = line_hang(s + from, n - from, width, flags);
    int room = first ? width : width - hang;
    /* Last soft-break opportunity on this line: text before it ends the line, the line after
     * starts at brk_next (after the run of spaces). */
    size_t brk_end = 0, brk_next = 0;
    int brk_cols = 0, have_brk = 0;
#define PUSH(len_, cols_)                                                                    \
    do {                                                                                     \
        if (push_line(lines, count, cap, line_start, (len_), (cols_), first ? 0 : hang))     \
            return -1;                                                                       \
    } while (0)
    for (;;) {
        if (i >= n || s[i] == '\n') {
            size_t end = i;
            if (cols > room && have_brk && brk_next == i) {
                /* Trailing spaces past the edge are not part of the line. */
                end = brk_end;
                cols = brk_cols;
            }
            PUSH(end - line_start, cols);
            if (i >= n) break;
            i++;
            line_start = i;
            cols = 0;
            have_brk = 0;
            first = true;
            hang = line_hang(s + i, n - i, width, flags);
            room = width;
            if (i >= n) { /* text ends with '\n': that is an empty last line */
                PUSH(0, 0);
                break;
            }
            continue;
        }
        int w;
        size_t len = tw_cluster(s + i, n - i, &w);
        /* A space is a break opportunity, except inside the first line's prefix. */
        if (s[i] == ' ' && len == 1 && !(first && cols < hang)) {
            if (!have_brk || brk_next != i) {
                brk_end = i;
                brk_cols = cols;
            }
            have_brk = 1;
            brk_next = i + 1;
            cols += w;
            i += len; /* spaces past the edge are absorbed by the break */
            continue;
        }
        if (cols + w > room && cols > 0) {
            if (have_brk && brk_end > line_start) {
                PUSH(brk_end - line_start, brk_cols);
                /* Skip the spaces of the break, then restart measuring from there. */
                line_start = brk_next;
                i = brk_next;
            } else if (have_brk && brk_end == line_start) {
                /* Only leading spaces before a long word: drop them (never with a hang: they
                 * are its prefix, no break). The line is still its logical line's first. */
                line_start = brk_next;
                i = brk_next;
                cols = 0;
                have_brk = 0;
                continue;
            } else {
                PUSH(i - line_start, cols);
                line_start = i;
            }
            cols = 0;
            have_brk = 0;
            first = false;
            room = width - hang;
            continue;
        }
        cols += w; /* a whole cluster: marks and joined emoji stay with their base */
        i += len;
    }
#undef PUSH
    return *count - before;
}

int tw_wrap(const char *s, size_t n, int width, unsigned flags, TwLine **lines, int *count,
            int *cap) {
    return wrap_from(s, n, 0, -1, width, flags, lines, count, cap);
}

int tw_rewrap_last(const char *s, size_t n, int width, unsigned flags, TwLine **lines,
                   int *count, int *cap) {
    const TwLine *last = &(*lines)[*count - 1];
    size_t from = last->start;
    int hang = -1;
    if (*count >= 2) {
        /* A continuation line follows its predecessor with at most the spaces of the break
         * between them; a logical line's first has a '\n' before it. */
        size_t prev_end = last[-1].start + last[-1].len;
        if (!memchr(s + prev_end, '\n', from - prev_end)) hang = last->hang;
    }
    /* A first line may have lost its leading spaces (before a long word): start before them,
     * so that its hang is measured as tw_wrap does. */
    if (hang < 0)
        while (from > 0 && s[from - 1] != '\n') from--;
    (*count)--;
    return wrap_from(s, n, from, hang, width, flags, lines, count, cap);
}

size_t tw_to_wcs(const char *s, size_t n, wchar_t *out, size_t cap) {
    size_t o = 0;
    if (cap == 0) return 0;
    for (size_t i = 0; i < n && o + 1 < cap;) {
        uint32_t cp;
        i += (size_t)utf8_next(s + i, n - i, &cp);
        if (cp == '\t') {
            for (int k = 0; k < TW_TAB && o + 1 < cap; k++) out[o++] = L' ';
            continue;
        }
        out[o++] = (wchar_t)tw_display_cp(cp);
    }
    out[o] = 0;
    return o;
}

char *tw_sanitize(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1); /* one bad byte becomes 3 bytes of U+FFFD */
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_next(s + i, n - i, &cp);
        if (cp == 0xFFFD) {
            memcpy(out + o, UTF8_REPLACEMENT, 3);
            o += 3;
        } else if (cp == '\n' || cp == '\t' || !(cp < 0x20 || (cp >= 0x7F && cp < 0xA0))) {
            memcpy(out + o, s + i, (size_t)l);
            o += (size_t)l;
        }
        i += (size_t)l;
    }
    out[o] = 0;
    return out;
}
