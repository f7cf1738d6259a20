/* Readline in callback mode (see input.h).
 *
 * Readline is told to leave the terminal alone: no signal handlers, no SIGWINCH, no
 * termios prep/deprep (curses already set raw mode), no LINES/COLUMNS export (they would
 * pin curses to a stale size), output to /dev/null (a bell or a completion listing must
 * not scribble over the screen). Bytes reach it through a queue that rl_getc_function reads;
 * when readline wants more bytes than were queued (the rest of a multibyte character during
 * Ctrl-R search) the getc hook blocks on stdin for them. */
#define _GNU_SOURCE
#include "ui/input.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "app/commands.h"
#include "ui/textwidth.h"

enum { QUEUE = 8192, HISTORY_MAX = 1000 };

static const char PROMPT[] = "> ";

static unsigned char g_queue[QUEUE];
static size_t g_q_head, g_q_len;
static char *g_line;
static bool g_eof;
static bool g_dirty = true;
static bool g_active;
static char *g_history_path;
static FILE *g_null_out;
static char g_matches[512];
static bool g_have_matches;

/* ---- readline hooks ------------------------------------------------------------------ */

static int hook_getc(FILE *f) {
    (void)f;
    if (g_q_len) {
        int c = g_queue[g_q_head];
        g_q_head = (g_q_head + 1) % QUEUE;
        g_q_len--;
        return c;
    }
    /* Readline needs another byte now (the rest of a character or sequence). */
    struct pollfd p = {STDIN_FILENO, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) return EOF;
    unsigned char c;
    ssize_t r = read(STDIN_FILENO, &c, 1);
    return r == 1 ? c : EOF;
}

static int hook_input_available(void) { return g_q_len > 0; }

static void hook_redisplay(void) { g_dirty = true; }

static void remember_new(const char *line);

static void on_line(char *line) {
    if (!line) {
        g_eof = true;
        return;
    }
    free(g_line);
    g_line = line;
    if (*line) {
        HIST_ENTRY *last = history_length ? history_get(history_base + history_length - 1) : NULL;
        if (!last || strcmp(last->line, line)) {
            add_history(line);
            remember_new(line);
        }
    }
}

static int insert_newline(int count, int key) {
    (void)key;
    for (int i = 0; i < (count > 0 ? count : 1); i++) rl_insert_text("\n");
    return 0;
}

/* Completion: command names in the first word, paths in the argument of /load and
 * /export, nothing elsewhere (Tab in a message must not list the current directory). */
static char *complete_command(const char *text, int state) {
    static int idx;
    static size_t len;
    int n;
    const Command *t = commands_table(&n);
    if (!state) {
        idx = 0;
        len = strlen(text);
    }
    while (idx < n) {
        const Command *c = &t[idx++];
        if (!strncmp(c->name, text, len)) return strdup(c->name);
    }
    return NULL;
}

static char **attempt_completion(const char *text, int start, int end) {
    (void)end;
    rl_attempted_completion_over = 1;
    const char *buf = rl_line_buffer;
    size_t lead = 0;
    while (buf[lead] == ' ') lead++;
    if (buf[lead] != '/') return NULL;
    if ((size_t)start == lead) return rl_completion_matches(text, complete_command);
    const char *sp = buf + lead;
    size_t wl = strcspn(sp, " \t");
    const Command *c = commands_find(sp, wl);
    if (c && c->arg_is_path) {
        rl_attempted_completion_over = 0;
        return rl_completion_matches(text, rl_filename_completion_function);
    }
    return NULL;
}

static void show_matches(char **matches, int num, int max_len) {
    (void)max_len;
    size_t o = 0;
    g_matches[0] = 0;
    for (int i = 1; i <= num && o + 2 < sizeof g_matches; i++)
        o += (size_t)snprintf(g_matches + o, sizeof g_matches - o, "%s%s", i > 1 ? "  " : "",
                              matches[i]);
    g_have_matches = true;
    g_dirty = true;
}

/* ---- history file: one entry per line, '\' and new lines escaped --------------------- */

static void history_load(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n') line[--n] = 0;
        char *o = line;
        for (char *p = line; *p; p++) {
            if (*p == '\\' && p[1] == 'n') *o++ = '\n', p++;
            else if (*p == '\\' && p[1] == '\\') *o++ = '\\', p++;
            else *o++ = *p;
        }
        *o = 0;
        if (*line) add_history(line);
    }
    free(line);
    fclose(f);
}

static void mkdirs_for(const char *path) {
    char *d = strdup(path);
    if (!d) return;
    for (char *p = d + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(d, 0700);
            *p = '/';
        }
    free(d);
}

/* Lines entered in this run, escaped as in the file, to be merged into it on exit. */
static char **g_new;
static size_t g_n_new, g_cap_new;

static char *escape_line(const char *line) {
    char *e = malloc(strlen(line) * 2 + 1), *o = e;
    if (!e) return NULL;
    for (const char *p = line; *p; p++) {
        if (*p == '\n') *o++ = '\\', *o++ = 'n';
        else if (*p == '\\') *o++ = '\\', *o++ = '\\';
        else *o++ = *p;
    }
    *o = 0;
    return e;
}

static void remember_new(const char *line) {
    if (g_n_new == g_cap_new) {
        size_t cap = g_cap_new ? g_cap_new * 2 : 64;
        char **n = realloc(g_new, cap * sizeof *n);
        if (!n) return;
        g_new = n;
        g_cap_new = cap;
    }
    char *e = escape_line(line);
    if (e) g_new[g_n_new++] = e;
}

/* Writes the file as it is now (another copy of the program may have added lines since we
 * read it) plus this run's lines, the last HISTORY_MAX of them, through a private temporary
 * file renamed into place, so that two copies quitting together never lose each other's
 * lines nor leave a torn file. */
static void history_save(const char *path) {
    mkdirs_for(path);
    char **lines = NULL;
    size_t n = 0, cap = 0;
    FILE *in = fopen(path, "r");
    if (in) {
        char *line = NULL;
        size_t lcap = 0;
        ssize_t len;
        while ((len = getline(&line, &lcap, in)) > 0) {
            if (line[len - 1] == '\n') line[--len] = 0;
            if (!len) continue;
            if (n == cap) {
                size_t c = cap ? cap * 2 : 256;
                char **l = realloc(lines, c * sizeof *l);
                if (!l) break;
                lines = l;
                cap = c;
            }
            lines[n] = strdup(line);
            if (lines[n]) n++;
        }
        free(line);
        fclose(in);
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    /* 0600: the file holds everything the user typed, as private as the chats themselves. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f && fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (f) {
        /* The merged list: file lines, then ours (a line equal to the one before is left
         * out); only the last HISTORY_MAX are written. */
        size_t total = n + g_n_new, skip = total > HISTORY_MAX ? total - HISTORY_MAX : 0;
        const char *prev = NULL;
        for (size_t i = 0; i < total; i++) {
            const char *l = i < n ? lines[i] : g_new[i - n];
            if (i >= n && prev && !strcmp(prev, l)) continue;
            prev = l;
            if (i < skip) continue;
            fputs(l, f);
            fputc('\n', f);
        }
        if (fclose(f) == 0) rename(tmp, path);
        else unlink(tmp);
    }
    for (size_t i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

/* ---- public ---------------------------------------------------------------------------- */

void input_init(const char *history_path, int rows, int cols) {
    if (g_active) return;
    g_null_out = fopen("/dev/null", "w");
    rl_readline_name = "bitnet-chat";
    rl_instream = stdin;
    rl_outstream = g_null_out ? g_null_out : stdout;
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_prep_term_function = NULL;
    rl_deprep_term_function = NULL;
    rl_getc_function = hook_getc;
    rl_input_available_hook = hook_input_available;
    rl_redisplay_function = hook_redisplay;
    rl_attempted_completion_function = attempt_completion;
    rl_completion_display_matches_hook = show_matches;
    /* Defaults that suit a hint line; ~/.inputrc (read by rl_initialize) may change them. */
    rl_variable_bind("show-all-if-ambiguous", "on");
    rl_variable_bind("bell-style", "none");
    rl_initialize(); /* reads ~/.inputrc once; the key bindings below win over it */
    rl_bind_key_in_map('\n', insert_newline, emacs_standard_keymap);
    rl_bind_key_in_map('\n', insert_newline, vi_insertion_keymap);
    rl_bind_keyseq_in_map("\x1b\r", insert_newline, emacs_standard_keymap);
    rl_set_screen_size(rows, cols);
    using_history();
    stifle_history(HISTORY_MAX);
    if (history_path) {
        g_history_path = strdup(history_path);
        history_load(history_path);
    }
    rl_callback_handler_install(PROMPT, on_line);
    g_active = true;
}

void input_shutdown(void) {
    if (!g_active) return;
    g_active = false;
    rl_callback_handler_remove();
    if (g_history_path) history_save(g_history_path);
    free(g_history_path);
    g_history_path = NULL;
    for (size_t i = 0; i < g_n_new; i++) free(g_new[i]);
    free(g_new);
    g_new = NULL;
    g_n_new = g_cap_new = 0;
    free(g_line);
    g_line = NULL;
    if (g_null_out) fclose(g_null_out);
    g_null_out = NULL;
    rl_outstream = stdout;
}

void input_feed(const char *bytes, size_t n) {
    for (size_t i = 0; i < n && g_q_len < QUEUE; i++) {
        g_queue[(g_q_head + g_q_len) % QUEUE] = (unsigned char)bytes[i];
        g_q_len++;
    }
    while (g_q_len && !g_eof) rl_callback_read_char();
    g_dirty = true;
}

void input_insert(const char *text, size_t n) {
    char *t = malloc(n + 1);
    if (!t) return;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        /* Pasted CR / CRLF line ends become new lines; other controls are dropped so a paste
         * cannot carry escape sequences into the buffer. */
        unsigned char c = (unsigned char)text[i];
        if (c == '\r') {
            t[o++] = '\n';
            if (i + 1 < n && text[i + 1] == '\n') i++;
        } else if (c == '\n' || c == '\t' || c >= 0x20) {
            t[o++] = (char)c;
        }
    }
    t[o] = 0;
    rl_insert_text(t);
    free(t);
    g_dirty = true;
}

void input_clear(void) {
    rl_callback_sigcleanup();
    rl_free_line_state();
    rl_replace_line("", 1);
    rl_point = rl_end = 0;
    rl_mark = 0;
    rl_last_func = NULL; /* the next Tab starts a fresh completion */
    /* Leave any incremental search or vi command state and show the normal prompt again. */
    rl_callback_handler_remove();
    rl_callback_handler_install(PROMPT, on_line);
    g_dirty = true;
}

void input_escape(void) {
    /* vi insert mode: the one place a lone Esc means something (to command mode). Done as a
     * call, not by feeding the byte, so readline is never left waiting for a sequence. */
    if (rl_editing_mode == 0 && rl_get_keymap() == vi_insertion_keymap) {
        rl_vi_movement_mode(1, 27);
        g_dirty = true;
    }
}

void input_drop_pending(void) {
    if (RL_ISSTATE(RL_STATE_MULTIKEY | RL_STATE_METANEXT)) {
        rl_callback_sigcleanup(); /* the line itself is kept */
        g_dirty = true;
    }
}

void input_set_text(const char *text) {
    rl_replace_line(text, 1);
    rl_point = rl_end;
    g_dirty = true;
}

bool input_is_empty(void) { return rl_end == 0; }

bool input_delete_cluster_before(void) {
    if (!rl_line_buffer || rl_point <= 0) return false;
    if (rl_editing_mode == 0 && rl_get_keymap() != vi_insertion_keymap) return false;
    size_t point = (size_t)rl_point, n = (size_t)rl_end;
    for (size_t i = 0; i < n;) {
        int w;
        size_t l = tw_cluster(rl_line_buffer + i, n - i, &w);
        if (point > i && point <= i + l) {
            /* Only when the cluster holds more than one spacing character (readline deletes
             * one spacing character and the zero-width ones after it). */
            int spacing = 0;
            for (size_t j = i; j < point;) {
                uint32_t cp;
                j += (size_t)tw_decode(rl_line_buffer + j, point - j, &cp);
                if (cp < 0x300 || wcwidth((wchar_t)cp) != 0) spacing++;
            }
            if (spacing < 2) return false;
            rl_delete_text((int)i, (int)point);
            rl_point = (int)i;
            g_dirty = true;
            return true;
        }
        i += l;
    }
    return false;
}

void input_snap_point(int dir) {
    if (!rl_line_buffer) return;
    size_t point = (size_t)rl_point, n = (size_t)rl_end;
    for (size_t i = 0; i < n && i < point;) {
        int w;
        size_t l = tw_cluster(rl_line_buffer + i, n - i, &w);
        if (point > i && point < i + l) {
            rl_point = (int)(dir < 0 ? i : i + l);
            g_dirty = true;
            return;
        }
        i += l;
    }
}

char *input_take_line(bool *eof) {
    *eof = g_eof;
    g_eof = false;
    char *l = g_line;
    g_line = NULL;
    return l;
}

bool input_take_matches(char *out, size_t cap) {
    if (!g_have_matches) return false;
    snprintf(out, cap, "%s", g_matches);
    g_have_matches = false;
    return true;
}

bool input_take_dirty(void) {
    bool d = g_dirty;
    g_dirty = false;
    return d;
}

void input_resize(int rows, int cols) {
    rl_set_screen_size(rows, cols);
    g_dirty = true;
}

/* Lays out prompt + buffer: rows break at '\n' and at the right edge; continuation rows start
 * under the first character after the prompt. Steps by grapheme cluster (an emoji sequence or
 * a letter with its marks is never split across rows). Calls put() for each cluster (may be
 * NULL) and returns the rows used; cur_row and cur_col get the position of byte rl_point (the
 * start of its cluster when readline's point is inside one, e.g. between the parts of a ZWJ
 * sequence). */
typedef void (*PutFn)(void *ctx, int row, int col, const char *s, size_t n, bool is_prompt);

static int layout(int cols, PutFn put, void *ctx, int *cur_row, int *cur_col) {
    const char *prompt = rl_display_prompt ? rl_display_prompt : PROMPT;
    int pw = tw_width(prompt, strlen(prompt));
    int indent = pw < cols / 2 ? pw : 0;
    int row = 0, col = 0;
    /* The prompt itself wraps like text. */
    for (size_t i = 0, n = strlen(prompt); i < n;) {
        int w;
        size_t l = tw_cluster(prompt + i, n - i, &w);
        if (col + w > cols && col > 0) row++, col = 0;
        if (put) put(ctx, row, col, prompt + i, l, true);
        col += w;
        i += l;
    }
    const char *buf = rl_line_buffer ? rl_line_buffer : "";
    size_t n = (size_t)rl_end;
    size_t point = (size_t)rl_point;
    *cur_row = row;
    *cur_col = col;
    for (size_t i = 0; i < n;) {
        if (buf[i] == '\n') {
            if (point == i) *cur_row = row, *cur_col = col;
            row++;
            col = indent;
            i++;
            continue;
        }
        int w;
        size_t l = tw_cluster(buf + i, n - i, &w);
        if (col + w > cols && col > indent) {
            row++;
            col = indent;
        }
        if (point >= i && point < i + l) *cur_row = row, *cur_col = col;
        if (put) put(ctx, row, col, buf + i, l, false);
        col += w;
        i += l;
    }
    if (point >= n) {
        if (col >= cols) row++, col = indent;
        *cur_row = row;
        *cur_col = col;
    }
    return (*cur_row > row ? *cur_row : row) + 1;
}

int input_rows_needed(int cols) {
    int r, c;
    return layout(cols > 0 ? cols : 1, NULL, NULL, &r, &c);
}

typedef struct {
    WINDOW *w;
    int first_row, rows, cols;
} DrawCtx;

static void put_cell(void *vctx, int row, int col, const char *s, size_t n, bool is_prompt) {
    DrawCtx *d = vctx;
    int r = row - d->first_row;
    if (r < 0 || r >= d->rows) return;
    screen_put(d->w, r, col, s, n, d->cols - col, is_prompt ? screen_style(ST_PROMPT) : A_NORMAL);
}

void input_draw(WINDOW *w) {
    int rows, cols;
    getmaxyx(w, rows, cols);
    werase(w);
    int cr, cc;
    int need = layout(cols, NULL, NULL, &cr, &cc);
    /* Scroll so that the cursor row is visible. */
    int first = 0;
    if (need > rows) first = cr - rows + 1 > 0 ? cr - rows + 1 : 0;
    DrawCtx d = {w, first, rows, cols};
    layout(cols, put_cell, &d, &cr, &cc);
    wattrset(w, A_NORMAL);
    int r = cr - first;
    if (r >= 0 && r < rows && cc < cols) {
        wmove(w, r, cc);
        curs_set(1);
    } else {
        curs_set(0);
    }
}
