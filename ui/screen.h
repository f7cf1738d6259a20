/* The terminal: curses setup and teardown, colours, signals. One screen_shutdown() restores
 * the terminal on every path: normal exit, an error, exit() (atexit), SIGTERM/SIGHUP (flags,
 * handled by the loop) and crashes (a handler that resets the tty with async-signal-safe
 * calls, then re-raises). */
#ifndef BN_SCREEN_H
#define BN_SCREEN_H

#include <stdbool.h>
#include <stddef.h>

#ifndef NCURSES_WIDECHAR
#define NCURSES_WIDECHAR 1
#endif
#include <ncurses.h>

typedef enum {
    ST_NORMAL = 0,
    ST_USER_LABEL,   /* "You" */
    ST_USER_TEXT,
    ST_ASSIST_LABEL, /* "Assistant" */
    ST_META,         /* dim figures beside a label */
    ST_NOTE,         /* program output */
    ST_ERROR,
    ST_STATUS,       /* the status bar */
    ST_STATUS_BUSY,  /* the status bar's "generating" part */
    ST_STATUS_WARN,  /* "history not saved" */
    ST_HINT,         /* one-line hints */
    ST_SELECTED,     /* browser selection */
    ST_MATCH,        /* search match */
    ST_TITLE,        /* browser header */
    ST_PROMPT,       /* input prompt */
    ST__COUNT
} Style;

/* Sets up curses (raw, noecho, nonl, no keypad: readline gets raw bytes), colours (none
 * when NO_COLOR is set), mouse wheel reports and bracketed paste. Returns 0, or -1 with why
 * (e.g. not a terminal). */
int screen_init(char *why, size_t whylen);
/* Idempotent. */
void screen_shutdown(void);
/* Bytes typed while screen_init() waited for the terminal's answers (its width probe), to be
 * handled as input first. Returns how many were copied into buf. */
size_t screen_take_typeahead(char *buf, size_t cap);
bool screen_active(void);

attr_t screen_style(Style s);
/* Draws UTF-8 text at (row, col) in attribute a, at most max_cols columns (a grapheme cluster
 * that does not fit is left out whole), cell by cell as ui/textwidth.c measures it, so that
 * curses and the terminal agree on every column. Returns the columns drawn. */
int screen_put(WINDOW *w, int row, int col, const char *s, size_t n, int max_cols, attr_t a);
bool screen_has_colors(void);

/* Signals seen since the last call (flags are cleared). */
typedef struct {
    int quit;     /* SIGTERM or SIGHUP: its number (the exit status is 128 + it); 0: none */
    bool intr;    /* SIGINT from outside (Ctrl-C itself arrives as a key in raw mode) */
    bool resize;  /* SIGWINCH */
    bool stop;    /* SIGTSTP from outside (kill -TSTP; Ctrl-Z itself arrives as a key) */
    bool cont;    /* SIGCONT: continued after a stop we could not see (SIGSTOP) */
} ScreenSignals;
ScreenSignals screen_take_signals(void);
/* Puts text on the terminal's clipboard (OSC 52). */
void screen_clipboard(const char *text);
/* Readable when a signal arrived (poll it beside stdin). */
int screen_signal_fd(void);
/* Reads the new size from the tty and resizes curses. */
void screen_apply_resize(void);
/* Ctrl-Z or SIGTSTP: restores the terminal, stops the process, and when it is continued
 * sets the terminal up again (the caller repaints everything). */
void screen_suspend(void);
/* After SIGCONT: puts the terminal back in the program's modes (a shell may have reset it
 * while we were stopped) and forces a full repaint. */
void screen_resume(void);

#endif
