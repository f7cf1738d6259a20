/* The input line: GNU readline in callback mode inside a curses window (rlncurses' design).
 * Readline never touches the terminal: the UI feeds it bytes (input_feed), it edits its line
 * buffer, and input_draw() paints prompt + buffer into the input window with a wcwidth-correct
 * cursor. Emacs/vi modes and key bindings come from ~/.inputrc ($if bitnet-chat works);
 * Ctrl-J and Alt-Enter insert a new line; Tab completes slash commands and paths after /load
 * and /export; the history is kept per user across runs. */
#ifndef BN_INPUT_H
#define BN_INPUT_H

#include <stdbool.h>
#include <stddef.h>

#include "ui/screen.h"

/* history_path NULL: in-memory history only. */
void input_init(const char *history_path, int rows, int cols);
/* Saves the history and removes the handler. Idempotent. */
void input_shutdown(void);

/* Gives readline these bytes (one key or more) and lets it process them. */
void input_feed(const char *bytes, size_t n);
/* Inserts text at the cursor as typed (a bracketed paste: new lines kept, nothing sent). */
void input_insert(const char *text, size_t n);
/* Clears the line and any half-typed state (Ctrl-C at the prompt). */
void input_clear(void);
/* A lone Esc with no reply running: vi insert mode goes to command mode; otherwise it is
 * dropped, never left pending as readline's Meta prefix (which ate the next key: Esc, then
 * "/temp 0.5" sent "temp 0.5" to the model). */
void input_escape(void);
/* Forgets a half-read key sequence (an Esc that readline holds), keeping the line. */
void input_drop_pending(void);
/* Replaces the line (puts back text that could not be sent). */
void input_set_text(const char *text);
bool input_is_empty(void);
/* After a cursor motion: readline moves by code point (marks go with their letter), which
 * can leave the point inside a grapheme cluster such as an emoji ZWJ sequence. Moves it to
 * the cluster's start (dir < 0) or end (dir > 0), so that Left/Right step over a family or a
 * flag in one press. */
void input_snap_point(int dir);
/* Backspace over a grapheme cluster that readline would take apart (a flag, an emoji ZWJ
 * sequence, an emoji with a skin tone): deletes all of it (undoable) and returns true. Returns
 * false where readline's own Backspace does the right thing (a letter and its marks) or in vi
 * command mode; the caller then passes the key on. */
bool input_delete_cluster_before(void);

/* A completed line, if Enter was pressed since the last call: malloc'ed, caller frees. Sets
 * *eof when Ctrl-D was pressed on an empty line. */
char *input_take_line(bool *eof);
/* Completion matches to show (set when Tab lists several), "" if none; cleared on read. */
bool input_take_matches(char *out, size_t cap);

/* Rows the input needs at this width (prompt + buffer, wrapped), at least 1. */
int input_rows_needed(int cols);
/* Paints prompt + buffer into w and leaves the curses cursor at the editing point. */
void input_draw(WINDOW *w);
void input_resize(int rows, int cols);
/* Redisplay was requested by readline since the last draw. */
bool input_take_dirty(void);

#endif
