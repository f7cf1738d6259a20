/* Display width of UTF-8 text and word wrapping: pure functions, no curses, unit-tested
 * (tests/unit/test_textwidth.c). Widths follow wcwidth() of the current locale (main() calls
 * setlocale) for each terminal cell: combining marks take 0 columns, East Asian wide and
 * emoji 2, the rest 1; text is measured, wrapped and cut by grapheme clusters (emoji ZWJ
 * sequences, flags, marks are never split; textwidth.c says which widths and why).
 * Bytes that are not valid UTF-8 (utf8_next of infer/utf8.h: one U+FFFD a byte) and control
 * characters are shown as U+FFFD (1 column), a tab as TW_TAB spaces, so text from a model can
 * never emit terminal escape sequences. */
#ifndef BN_TEXTWIDTH_H
#define BN_TEXTWIDTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <wchar.h>

enum { TW_TAB = 4 };

/* Columns a code point takes on screen after tw_display_cp(). */
int tw_cp_width(uint32_t cp);
/* What is drawn for cp: controls and unprintables become U+FFFD (tab is handled by callers). */
uint32_t tw_display_cp(uint32_t cp);

/* One terminal cell as curses stores it (cchar_t): a spacing character plus what is drawn with
 * it (marks, variation selectors, the rest of an emoji ZWJ sequence). See textwidth.c for
 * the width convention and why. */
enum { TW_CELL_MAX = 5 }; /* curses' CCHARW_MAX */
typedef struct {
    uint32_t cp[TW_CELL_MAX]; /* what is drawn (controls already replaced by U+FFFD) */
    int n;
    int width;                /* columns: the first code point's, TW_TAB for a tab */
    bool tab;                 /* a tab: draw width spaces */
} TwCell;
/* How this terminal draws the sequences terminals disagree on (see textwidth.c); measured by
 * ui/screen.c at start-up. Defaults: as tmux 3.3 (ZWJ sequences joined, the rest not). */
typedef struct {
    bool zwj_joins;      /* an emoji ZWJ sequence is drawn as one emoji */
    bool modifier_joins; /* a skin-tone modifier is drawn in its emoji's cell */
    bool vs16_widens;    /* VS16 makes a 1-column character 2 columns wide */
} TwTerm;
void tw_set_terminal(const TwTerm *t);
TwTerm tw_get_terminal(void);

/* Decodes the cell at s[0..n) (n >= 1) into *c; returns the bytes it takes. *glue is set
 * when the next cell belongs to the same grapheme cluster (must not be split from it). */
size_t tw_cell(const char *s, size_t n, TwCell *c, bool *glue);
/* Bytes of the grapheme cluster at s[0..n) (n >= 1); *cols gets its width. */
size_t tw_cluster(const char *s, size_t n, int *cols);

/* Columns of s[0..n). */
int tw_width(const char *s, size_t n);
/* Number of bytes of s[0..n) that fit in max_cols columns, never splitting a grapheme
 * cluster. */
size_t tw_fit(const char *s, size_t n, int max_cols);

/* One wrapped line: bytes [start, start+len) of the text, cols wide, drawn hang columns right
 * of the text's left edge (the hanging indent: 0 on the first line of each logical line). */
typedef struct {
    size_t start, len;
    int cols;
    int hang;
} TwLine;

/* Hanging indents (tw_wrap's flags): the continuation lines of a logical line ('\n' ends one)
 * start under the text after its prefix, not at the left edge, so that list items and
 * two-column text stay readable in a narrow pane.
 *   TW_HANG_INDENT: the prefix is the line's leading spaces and tabs and a list marker after
 *     them ("- ", "* ", "+ ", "• ", or 1 to 9 digits and ". " or ") ") with the blanks after it;
 *   TW_HANG_COLUMNS: for text whose format we control (the program's notes: /help, /params):
 *     on an indented line, the prefix runs to the end of the first run of 2 or more spaces
 *     after the line's first text ("  /show      the model: ..." hangs under "the"). Tried first; where it finds no
 *     prefix, or one too wide, TW_HANG_INDENT's rule (if asked for) applies.
 * A prefix counts only when text follows it on its line and it leaves the continuation lines
 * room: at most half the width, and at least TW_HANG_MIN_ROOM columns after it; else the
 * line has no hang. */
enum { TW_HANG_INDENT = 1u, TW_HANG_COLUMNS = 2u };
enum { TW_HANG_MIN_ROOM = 16 };

/* Word-wraps s[0..n) to width columns (width >= 1). '\n' ends a line; a line breaks after the
 * last space that fits, or inside a word longer than the line; the spaces at a soft break
 * are dropped; an empty text is one empty line. With a hang (flags above), continuation lines
 * are wrapped to width - hang, and the first line does not break inside its prefix (a long
 * word after "- " is split, not moved below an orphaned "-"). Appends to *lines (realloc'ed,
 * *cap its capacity, caller frees) and returns the number of lines appended, -1 if out of
 * memory. */
int tw_wrap(const char *s, size_t n, int width, unsigned flags, TwLine **lines, int *count,
            int *cap);

/* For text that only grows, by whole UTF-8 characters (a streaming reply): lines[0..*count) (*count >= 1) are tw_wrap's
 * lines of s[0..m), m <= n, with the same width and flags; makes them tw_wrap's lines of
 * s[0..n). Greedy wrapping closed the lines before the last on text already there, so only
 * the last is wrapped again (from its logical line's start if it is that line's first, else
 * from its own start with its hang). Returns the number of lines after the kept ones, -1 if
 * out of memory (the lines are then incomplete: wrap the whole text). */
int tw_rewrap_last(const char *s, size_t n, int width, unsigned flags, TwLine **lines,
                   int *count, int *cap);

/* Converts s[0..n) to what is drawn: wide chars, U+FFFD for bad bytes and controls, tabs as
 * spaces. Writes at most cap-1 wchar_t plus a terminating 0; returns how many were written. */
size_t tw_to_wcs(const char *s, size_t n, wchar_t *out, size_t cap);

/* Typed or pasted text made safe to send and store: malformed UTF-8 becomes U+FFFD, control
 * characters other than new line and tab (C0, DEL, C1) are dropped. Returns a malloc'ed
 * string (NULL if out of memory). */
char *tw_sanitize(const char *s, size_t n);

#endif
