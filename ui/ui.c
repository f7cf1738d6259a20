/* The full-screen chat and its event loop.
 *
 * One thread (the main one) runs curses, readline and the App; the engine decodes on its own
 * thread. The loop poll()s three descriptors: the terminal, the engine's event fd and the
 * signal pipe. Terminal bytes are split into keys (ui/keys.c): the keys the UI owns (scroll,
 * wheel, Esc/Ctrl-C, paste) are handled here, the rest go to readline. Engine events are
 * drained in batches, so a burst of tokens costs one repaint. Repaints are bounded to
 * FRAME_MS apart (about 30 per second), engine events taken DRAIN_MS apart (20 per second):
 * the UI never slows decoding down, it only shows its progress. */
#define _GNU_SOURCE
#include "ui/ui.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/app.h"
#include "app/paths.h"
#include "ui/browser.h"
#include "ui/chatview.h"
#include "ui/input.h"
#include "ui/keys.h"
#include "ui/screen.h"
#include "ui/statusbar.h"
#include "ui/textwidth.h"

enum {
    FRAME_MS = 33,     /* at most ~30 repaints a second (typing, scrolling) */
    /* Engine events are taken at most every DRAIN_MS: a streaming reply is repainted ~20
     * times a second, smooth to the eye, while the main thread's share of a core stays well
     * under 2% even when the engine has every core busy (tests/ui/bench_ui_vs_prompt.py). */
    DRAIN_MS = 50,
    ESC_WAIT_MS = 30,  /* a lone ESC: nothing followed within this time */
    /* Esc pressed to stop a reply that has just ended, then a key: the two may arrive as one
     * Alt+key (tmux holds an Esc for 500 ms by default to see what follows). For this long
     * after a reply ends, Esc + key is taken as two keys, so the key is never eaten. */
    ESC_AFTER_REPLY_MS = 1000,
    HINT_MIN_MS = 1500,/* a hint stays at least this long before a key clears it */
    HINT_ROWS = 3,     /* rows a long hint may wrap over (draw_hint) */
    MIN_COLS = 24,
    MIN_ROWS = 5,
    INBUF = 16384,
};

typedef struct {
    App *app;
    ChatView *view;
    Browser *browser;
    bool browse_only;        /* started as --browse: closing the browser quits */
    WINDOW *chat_w, *status_w, *input_w;
    int rows, cols, input_rows;
    bool dirty;              /* a frame is due: draw() repaints every window, and curses sends
                              * the terminal only the cells that changed, so one flag is enough */
    int64_t last_draw;
    int64_t last_drain;      /* when engine events were last taken */
    bool engine_waiting;     /* the engine fd was readable; taken at the next frame */
    char inbuf[INBUF];
    size_t inlen;
    int64_t esc_deadline;    /* >0: an unfinished escape sequence is waiting */
    int64_t reply_ended_at;  /* when the last reply ended (mono_ms), 0 if none yet */
    char kf2[16];            /* the terminal's F2 key (terminfo kf2), "" if unknown */
    size_t kf2_len;
    bool in_paste;
    char *paste;
    size_t paste_len, paste_cap;
    unsigned hint_serial;
    char hint[512];
    int64_t hint_shown_at;
    bool quit;
} Ui;

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void show_hint(Ui *u, const char *text) {
    snprintf(u->hint, sizeof u->hint, "%s", text);
    u->hint_shown_at = mono_ms();
    u->dirty = true;
}

/* ---- layout and drawing ------------------------------------------------------------------ */

static void free_windows(Ui *u) {
    if (u->chat_w) delwin(u->chat_w);
    if (u->status_w) delwin(u->status_w);
    if (u->input_w) delwin(u->input_w);
    u->chat_w = u->status_w = u->input_w = NULL;
}

static bool too_small(const Ui *u) { return u->rows < MIN_ROWS || u->cols < MIN_COLS; }

/* (Re)creates the windows when the size or the input's height changed. */
static void layout(Ui *u) {
    int rows = LINES, cols = COLS;
    int want = input_rows_needed(cols);
    int max_in = (rows - 2) / 3;
    if (max_in < 1) max_in = 1;
    if (want > max_in) want = max_in;
    if (want < 1) want = 1;
    if (u->chat_w && rows == u->rows && cols == u->cols && want == u->input_rows) return;
    free_windows(u);
    u->rows = rows;
    u->cols = cols;
    u->input_rows = want;
    u->dirty = true;
    if (too_small(u)) return;
    int chat_rows = rows - 1 - want;
    u->chat_w = newwin(chat_rows, cols, 0, 0);
    u->status_w = newwin(1, cols, chat_rows, 0);
    u->input_w = newwin(want, cols, chat_rows + 1, 0);
    input_resize(rows, cols);
}

static void draw_too_small(Ui *u) {
    erase();
    /* The longest note that fits whole, word-wrapped into whatever space there is. */
    char full[96], mid[64];
    snprintf(full, sizeof full, "terminal too small (%dx%d); need %dx%d", u->cols, u->rows,
             MIN_COLS, MIN_ROWS);
    snprintf(mid, sizeof mid, "too small: %dx%d < %dx%d", u->cols, u->rows, MIN_COLS, MIN_ROWS);
    const char *notes[] = {full, mid, "too small", "small", "!"};
    int cols = u->cols > 0 ? u->cols : 1;
    TwLine *lines = NULL;
    int n = 0, cap = 0;
    const char *msg = notes[0];
    for (size_t i = 0; i < sizeof notes / sizeof notes[0]; i++) {
        msg = notes[i];
        n = 0;
        tw_wrap(msg, strlen(msg), cols, 0, &lines, &n, &cap);
        bool fits = n <= u->rows;
        for (int j = 0; j < n; j++)
            if (lines[j].cols > cols) fits = false;
        if (fits) break;
    }
    for (int i = 0; i < n && i < u->rows; i++)
        screen_put(stdscr, i, 0, msg + lines[i].start, lines[i].len, cols, A_NORMAL);
    free(lines);
    curs_set(0);
    wnoutrefresh(stdscr);
}

/* A hint is word-wrapped over up to HINT_ROWS rows at the bottom of the transcript pane, a
 * space each side: a refused command's message ends with its usage, and a single row cut at 80
 * columns lost it ("/export: PATH already exists; ... (usage: /export [md|" ). When even those
 * rows are not enough, the last one ends in "…". */
static void draw_hint(Ui *u) {
    if (!u->hint[0] || !u->chat_w) return;
    int rows, cols;
    getmaxyx(u->chat_w, rows, cols);
    const int width = cols > 3 ? cols - 2 : 1;
    const attr_t style = screen_style(ST_HINT);
    TwLine *wrapped = NULL, one = {0, strlen(u->hint), 0, 0};
    int n = 0, cap = 0;
    const bool ok = tw_wrap(u->hint, strlen(u->hint), width, 0, &wrapped, &n, &cap) > 0;
    const TwLine *lines = ok ? wrapped : &one; /* out of memory: one row, cut at the edge */
    if (!ok) n = 1;
    int max_rows = rows > 1 ? rows - 1 : 1; /* leave the pane at least one row of its own */
    if (max_rows > HINT_ROWS) max_rows = HINT_ROWS;
    const int shown = n < max_rows ? n : max_rows;
    for (int i = 0; i < shown; i++) {
        const int row = rows - shown + i;
        const TwLine *l = &lines[i];
        wattrset(u->chat_w, style);
        mvwhline(u->chat_w, row, 0, ' ', cols);
        wattrset(u->chat_w, A_NORMAL);
        if (i == shown - 1 && n > shown) {
            const size_t fit = tw_fit(u->hint + l->start, l->len, width - 1);
            screen_put(u->chat_w, row, 1, u->hint + l->start, fit, width - 1, style);
            screen_put(u->chat_w, row, 1 + tw_width(u->hint + l->start, fit), "…", strlen("…"), 1, style);
        } else {
            screen_put(u->chat_w, row, 1, u->hint + l->start, l->len, width, style);
        }
    }
    free(wrapped);
}

static void draw(Ui *u) {
    layout(u);
    if (too_small(u)) {
        draw_too_small(u);
        doupdate();
        u->dirty = false;
        return;
    }
    if (u->browser) {
        WINDOW *full = newwin(u->rows, u->cols, 0, 0);
        if (full) {
            browser_draw(u->browser, full);
            wnoutrefresh(full);
            delwin(full);
        }
        doupdate();
        u->dirty = false;
        return;
    }
    AppStatus st;
    app_status(u->app, &st);
    chatview_draw(u->view, u->chat_w, app_transcript(u->app));
    draw_hint(u);
    statusbar_draw(u->status_w, &st);
    input_draw(u->input_w);
    wnoutrefresh(u->chat_w);
    wnoutrefresh(u->status_w);
    wnoutrefresh(u->input_w); /* last: the terminal cursor stays in the input line */
    doupdate();
    u->dirty = false;
}

/* ---- reactions --------------------------------------------------------------------------- */

static void apply(Ui *u, int react) {
    if (react & (REACT_CHAT | REACT_STATUS)) u->dirty = true;
    if (react & REACT_REDRAW) {
        u->dirty = true;
        chatview_end(u->view);
    }
    if (react & REACT_QUIT) u->quit = true;
    if (react & REACT_COPY) screen_clipboard(app_take_copy(u->app));
    if (react & REACT_BROWSER) {
        browser_free(u->browser);
        u->browser = browser_open(u->app, app_browser_query(u->app));
        u->dirty = true;
    }
    unsigned serial;
    const char *h = app_hint(u->app, &serial);
    if (serial != u->hint_serial) {
        u->hint_serial = serial;
        show_hint(u, h);
    }
}

static void submit_lines(Ui *u) {
    bool eof;
    char *line = input_take_line(&eof);
    if (eof) {
        u->quit = true;
        free(line);
        return;
    }
    if (!line) return;
    /* What the terminal sent may be anything (a paste of binary, a stray C1 control):
     * the model and the history get valid UTF-8 without control characters. */
    char *clean = tw_sanitize(line, strlen(line));
    if (clean) {
        free(line);
        line = clean;
    }
    /* A new line clears the old hint; the command may set a new one. */
    u->hint[0] = 0;
    int react = app_submit_line(u->app, line);
    if (react & REACT_KEEP_INPUT) input_set_text(line);
    if (react & REACT_SET_INPUT) input_set_text(app_take_input(u->app));
    else if (!(react & REACT_BROWSER)) chatview_end(u->view); /* sending jumps to the bottom */
    free(line);
    apply(u, react | REACT_CHAT);
    u->dirty = true;
}

/* ---- keys -------------------------------------------------------------------------------- */

static void browser_result(Ui *u, BrowserResult r) {
    switch (r) {
    case BROWSER_STAY: break;
    case BROWSER_QUIT: u->quit = true; break;
    case BROWSER_CLOSE:
        if (u->browse_only) {
            u->quit = true;
            break;
        }
        browser_free(u->browser);
        u->browser = NULL;
        break;
    case BROWSER_RESUMED:
        browser_free(u->browser);
        u->browser = NULL;
        u->browse_only = false;
        chatview_end(u->view);
        apply(u, REACT_REDRAW | REACT_CHAT | REACT_STATUS);
        break;
    }
    u->dirty = true;
}

static bool reply_just_ended(const Ui *u) {
    return u->reply_ended_at && mono_ms() - u->reply_ended_at < ESC_AFTER_REPLY_MS;
}

static void chat_key(Ui *u, const Key *k) {
    /* Any key clears a hint that has been readable for a while. */
    if (u->hint[0] && mono_ms() - u->hint_shown_at > HINT_MIN_MS) {
        u->hint[0] = 0;
        u->dirty = true;
    }
    switch (k->type) {
    case K_CTRL_C:
        if (app_busy(u->app)) apply(u, app_cancel(u->app));
        else if (!input_is_empty()) input_clear();
        else show_hint(u, "To leave, press Ctrl-D or type /quit.");
        break;
    case K_ESC:
        if (app_busy(u->app)) apply(u, app_cancel(u->app));
        else if (!reply_just_ended(u)) input_escape(); /* else it was meant for the reply */
        break;
    case K_PGUP: chatview_page(u->view, -1); u->dirty = true; break;
    case K_PGDN: chatview_page(u->view, 1); u->dirty = true; break;
    case K_WHEEL_UP: chatview_scroll(u->view, -3); u->dirty = true; break;
    case K_WHEEL_DOWN: chatview_scroll(u->view, 3); u->dirty = true; break;
    case K_MOUSE_OTHER: break;
    case K_HOME:
    case K_END:
        if (input_is_empty()) {
            if (k->type == K_HOME) chatview_home(u->view);
            else chatview_end(u->view);
            u->dirty = true;
        } else {
            input_feed(k->bytes, k->len);
        }
        break;
    case K_CTRL_L:
        clearok(curscr, TRUE);
        u->dirty = true;
        break;
    case K_BACKSPACE:
        if (!input_delete_cluster_before()) input_feed(k->bytes, k->len);
        break;
    case K_LEFT:
    case K_RIGHT:
        input_feed(k->bytes, k->len);
        input_snap_point(k->type == K_LEFT ? -1 : 1);
        break;
    default:
        input_feed(k->bytes, k->len);
        submit_lines(u);
        break;
    }
    u->dirty = true;
}

static void paste_append(Ui *u, const char *s, size_t n) {
    if (u->paste_len + n + 1 > u->paste_cap) {
        size_t cap = u->paste_cap ? u->paste_cap : 4096;
        while (cap < u->paste_len + n + 1) cap *= 2;
        char *p = realloc(u->paste, cap);
        if (!p) return;
        u->paste = p;
        u->paste_cap = cap;
    }
    memcpy(u->paste + u->paste_len, s, n);
    u->paste_len += n;
}

static void paste_done(Ui *u) {
    if (u->browser) browser_paste(u->browser, u->paste, u->paste_len);
    else input_insert(u->paste, u->paste_len);
    u->paste_len = 0;
    u->in_paste = false;
    u->dirty = true;
}

/* Splits the bytes read so far into keys; with at_end, an unfinished escape is resolved. */
static void process_input(Ui *u, bool at_end) {
    size_t off = 0;
    while (off < u->inlen && !u->quit) {
        if (u->in_paste) {
            /* Everything up to ESC[201~ is pasted text, kept as one block. */
            long end = keys_find_paste_end(u->inbuf + off, u->inlen - off);
            if (end >= 0) {
                paste_append(u, u->inbuf + off, (size_t)end);
                off += (size_t)end + 6;
                paste_done(u);
                continue;
            }
            size_t keep = u->inlen - off > 5 ? 5 : u->inlen - off; /* a marker may be split */
            paste_append(u, u->inbuf + off, u->inlen - off - keep);
            off = u->inlen - keep;
            break;
        }
        Key k;
        size_t used = 0;
        if (u->kf2_len) {
            /* F2 as this terminal sends it (terminfo kf2), which keys_decode may not know
             * (the Linux console's ESC [ [ B). A partial match waits like any sequence. */
            size_t avail = u->inlen - off, m = avail < u->kf2_len ? avail : u->kf2_len;
            if (!memcmp(u->inbuf + off, u->kf2, m)) {
                if (m == u->kf2_len) k = (Key){K_F2, u->inbuf + off, m}, used = m;
                else if (!at_end) break;
            }
        }
        if (!used) used = keys_decode(u->inbuf + off, u->inlen - off, at_end, &k);
        if (!used) break; /* wait for the rest of a sequence */
        off += used;
        if (k.type == K_PASTE_BEGIN) {
            u->in_paste = true;
            u->paste_len = 0;
            continue;
        }
        if (k.type == K_PASTE_END) continue;
        if (k.type == K_BYTES && k.len == 2 && k.bytes[0] == 0x1b &&
            (u->browser || app_busy(u->app) || reply_just_ended(u))) {
            /* Esc and a key typed right after it arrive together and look like Alt+key. The
             * browser has no Alt keys, while a reply runs Esc means stop, and just after one
             * ended it was meant to: split them. */
            Key esc = {K_ESC, k.bytes, 1};
            if (u->browser) browser_result(u, browser_key(u->browser, &esc));
            else chat_key(u, &esc);
            if (u->quit) break;
            off -= 1;
            continue;
        }
        if (k.type == K_CTRL_Z) {
            /* Suspends from the chat and from the browser alike. */
            screen_suspend();
            u->dirty = true;
            continue;
        }
        if (u->browser) {
            browser_result(u, browser_key(u->browser, &k));
            u->dirty = true;
        } else {
            chat_key(u, &k);
        }
    }
    memmove(u->inbuf, u->inbuf + off, u->inlen - off);
    u->inlen -= off;
    u->esc_deadline = u->inlen && !u->in_paste ? (u->esc_deadline ? u->esc_deadline
                                                                   : mono_ms() + ESC_WAIT_MS)
                                               : 0;
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* The input history lives beside the default history database, in the same per-user data
 * directory (app_data_file applies the XDG rules for both), so both files always agree. */
static char *input_history_path(void) {
    return app_data_file("input_history");
}

static int run(const AppConfig *cfg, bool browse) {
    char why[600];
    AppOptions opt = {.load_model = !browse};
    /* The App (engine thread, database) starts before curses so that a failure is printed
     * on a normal terminal. */
    App *app = app_create(cfg, &opt, why, sizeof why);
    if (!app) {
        fprintf(stderr, "bitnet-chat: %s\n", why);
        return 1;
    }
    if (cfg->resume_latest || cfg->resume_id) {
        /* --continue / --resume ID: the chat opens on that session, without the browser. */
        int64_t id = cfg->resume_id ? cfg->resume_id : app_newest_session(app, why, sizeof why);
        if (!id || app_session_resume(app, id, why, sizeof why)) {
            fprintf(stderr, "bitnet-chat: %s: %s\n", cfg->resume_id ? "--resume" : "--continue",
                    why);
            app_destroy(app);
            return 1;
        }
    }
    if (screen_init(why, sizeof why)) {
        app_destroy(app);
        fprintf(stderr, "bitnet-chat: %s\n", why);
        return 1;
    }
    Ui u;
    memset(&u, 0, sizeof u);
    u.app = app;
    u.view = chatview_new(false);
    u.browse_only = browse;
    const char *kf2 = tigetstr("kf2");
    if (kf2 && kf2 != (const char *)-1 && strlen(kf2) > 1 && strlen(kf2) < sizeof u.kf2) {
        snprintf(u.kf2, sizeof u.kf2, "%s", kf2);
        u.kf2_len = strlen(kf2);
    }
    char *hist = cfg->no_history ? NULL : input_history_path();
    input_init(hist, LINES, COLS);
    free(hist);
    u.inlen = screen_take_typeahead(u.inbuf, sizeof u.inbuf);
    if (browse) u.browser = browser_open(app, "");
    u.dirty = true;
    apply(&u, REACT_CHAT | REACT_STATUS);

    int quit_signal = 0;
    while (!u.quit) {
        int64_t now = mono_ms();
        int timeout = 1000;
        if (app_busy(app)) timeout = 250; /* history warnings, the hint timer */
        if (u.dirty) {
            int wait = (int)(u.last_draw + FRAME_MS - now);
            timeout = wait > 0 ? wait : 0;
        }
        /* Engine events are taken at most every DRAIN_MS: while a reply streams, the main
         * thread wakes ~20 times a second instead of once per token, leaving the cores to
         * the decoder (the channel merges the text meanwhile; it never blocks the engine). */
        if (u.engine_waiting) {
            int wait = (int)(u.last_drain + DRAIN_MS - now);
            if (wait < 0) wait = 0;
            if (wait < timeout) timeout = wait;
        }
        if (u.esc_deadline) {
            int wait = (int)(u.esc_deadline - now);
            if (wait < 0) wait = 0;
            if (wait < timeout) timeout = wait;
        }
        struct pollfd fds[3] = {
            {STDIN_FILENO, POLLIN, 0},
            {screen_signal_fd(), POLLIN, 0},
            {u.engine_waiting ? -1 : app_event_fd(app), POLLIN, 0},
        };
        int pr = poll(fds, 3, timeout);
        if (pr < 0 && errno != EINTR) break;
        if (pr > 0 && (fds[2].revents & POLLIN)) u.engine_waiting = true;

        ScreenSignals sig = screen_take_signals();
        if (sig.quit) {
            quit_signal = sig.quit;
            break;
        }
        if (sig.resize) {
            screen_apply_resize();
            u.dirty = true;
        }
        if (sig.stop) {
            screen_suspend();
            u.dirty = true;
        } else if (sig.cont) {
            screen_resume();
            u.dirty = true;
        }
        if (sig.intr) {
            Key k = {K_CTRL_C, "\x03", 1};
            if (u.browser) browser_result(&u, browser_key(u.browser, &k));
            else chat_key(&u, &k);
        }
        if (pr > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(STDIN_FILENO, u.inbuf + u.inlen, sizeof u.inbuf - u.inlen);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) break; /* terminal gone */
            if (r > 0) u.inlen += (size_t)r;
        }
        bool at_end = u.esc_deadline && mono_ms() >= u.esc_deadline;
        if (u.inlen) process_input(&u, at_end || u.inlen == sizeof u.inbuf);
        if (u.engine_waiting && mono_ms() - u.last_drain >= DRAIN_MS) {
            u.engine_waiting = false;
            u.last_drain = mono_ms();
            bool was_busy = app_busy(app);
            apply(&u, app_process_events(app));
            if (was_busy && !app_busy(app)) {
                /* An Esc meant for the reply must not linger as a prefix of the next key. */
                u.reply_ended_at = mono_ms();
                input_drop_pending();
            }
        }
        app_tick(app);

        char matches[512];
        if (input_take_matches(matches, sizeof matches)) show_hint(&u, matches);
        if (input_take_dirty()) u.dirty = true;
        now = mono_ms();
        if (u.dirty && now - u.last_draw >= FRAME_MS) {
            draw(&u);
            u.last_draw = now;
        }
    }

    input_shutdown();
    browser_free(u.browser);
    chatview_free(u.view);
    free_windows(&u);
    free(u.paste);
    screen_shutdown();
    app_destroy(app);
    /* Ended by SIGTERM/SIGHUP: say so in the status, as a shell would (143 for SIGTERM). */
    return quit_signal ? 128 + quit_signal : 0;
}

int ui_run_chat(const AppConfig *cfg) { return run(cfg, false); }
int ui_run_browser(const AppConfig *cfg) { return run(cfg, true); }
