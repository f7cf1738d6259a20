/* Transcript layout and scrolling (see chatview.h). */
#define _GNU_SOURCE
#include "ui/chatview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ui/textwidth.h"

enum { INDENT = 2 };

typedef struct {
    uint64_t serial;
    unsigned version;
    size_t len;      /* text length when wrapped */
    int width;
    TwLine *lines;
    int n, cap;
} WrapCache;

/* The three parts of a message's block of lines. */
enum { PART_HEAD = 0, PART_TEXT = 1, PART_TAIL = 2 };

struct ChatView {
    bool detailed;
    WrapCache *cache;
    int n_cache;
    uint64_t generation;
    /* Position: following the bottom, or the first visible line given by message serial,
     * part and (for text) the byte offset of its line, which survives a re-wrap. */
    bool follow;
    uint64_t anchor_serial;
    int anchor_part;
    int anchor_sub; /* head: row within the head; text: byte offset; tail: row in the tail */
    int pending_delta;
    int pending_pages;
    bool pending_home, pending_end;
    int last_rows, last_total, last_top;
};

ChatView *chatview_new(bool detailed) {
    ChatView *v = calloc(1, sizeof *v);
    if (v) {
        v->detailed = detailed;
        v->follow = true;
    }
    return v;
}

void chatview_free(ChatView *v) {
    if (!v) return;
    for (int i = 0; i < v->n_cache; i++) free(v->cache[i].lines);
    free(v->cache);
    free(v);
}

void chatview_scroll(ChatView *v, int lines) { v->pending_delta += lines; }
void chatview_page(ChatView *v, int pages) { v->pending_pages += pages; }
void chatview_home(ChatView *v) { v->pending_home = true, v->pending_end = false; }
void chatview_end(ChatView *v) { v->pending_end = true, v->pending_home = false; }
bool chatview_following(const ChatView *v) { return v->follow; }
int chatview_lines_below(const ChatView *v) {
    int below = v->last_total - (v->last_top + v->last_rows);
    return below > 0 ? below : 0;
}

static bool has_head(const AppMessage *m) { return m->kind == MSG_USER || m->kind == MSG_ASSISTANT; }

static int head_rows(const ChatView *v, const AppMessage *m) { return has_head(m) ? 1 : 0; }

/* Rows after the text: a finished reply's figures (and, in the detailed view, its settings),
 * then one blank line. */
static int tail_rows(const ChatView *v, const AppMessage *m) {
    int r = 1;
    if (m->kind == MSG_ASSISTANT && !m->streaming) {
        r++;
        if (v->detailed && m->sampling.set) r++;
    }
    return r;
}

static int text_indent(const AppMessage *m) { return has_head(m) ? INDENT : 0; }

/* Continuation lines hang under list items and indented text in every message, and under the
 * second column of the program's notes (their format is ours: /help, /params). */
static unsigned hang_flags(const AppMessage *m) {
    return TW_HANG_INDENT | (m->kind == MSG_NOTE ? TW_HANG_COLUMNS : 0);
}

static WrapCache *wrap(ChatView *v, int idx, const AppMessage *m, int cols) {
    if (idx >= v->n_cache) {
        int n = idx + 32;
        WrapCache *c = realloc(v->cache, (size_t)n * sizeof *c);
        if (!c) return NULL;
        memset(c + v->n_cache, 0, (size_t)(n - v->n_cache) * sizeof *c);
        v->cache = c;
        v->n_cache = n;
    }
    WrapCache *c = &v->cache[idx];
    int width = cols - text_indent(m);
    if (width < 1) width = 1;
    if (c->serial == m->serial && c->version == m->version && c->width == width && c->n)
        return c;
    if (c->serial == m->serial && c->width == width && c->n && m->streaming && m->len >= c->len) {
        /* A streaming reply only grows: only its last line is wrapped again. */
        if (tw_rewrap_last(m->text, m->len, width, hang_flags(m), &c->lines, &c->n, &c->cap) >= 0) {
            c->version = m->version;
            c->len = m->len;
            return c;
        }
    }
    c->serial = m->serial;
    c->version = m->version;
    c->width = width;
    c->len = m->len;
    c->n = 0;
    if (tw_wrap(m->text, m->len, width, hang_flags(m), &c->lines, &c->n, &c->cap) < 0) c->n = 0;
    return c;
}

static int msg_rows(const ChatView *v, const AppMessage *m, const WrapCache *c) {
    return head_rows(v, m) + (c ? c->n : 1) + tail_rows(v, m);
}

/* Line of the text part that holds byte offset off. */
static int text_line_of(const WrapCache *c, int off) {
    int best = 0;
    for (int i = 0; i < c->n; i++)
        if ((int)c->lines[i].start <= off) best = i;
    return best;
}

static void fmt_clock(int64_t ms, char *out, size_t cap) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, cap, "%H:%M", &tm);
}

static void head_text(const AppMessage *m, char *label, size_t lcap, char *meta, size_t mcap) {
    char clock[16];
    fmt_clock(m->created_at, clock, sizeof clock);
    if (m->kind == MSG_USER) {
        snprintf(label, lcap, "You");
        snprintf(meta, mcap, "  %s", clock);
        return;
    }
    snprintf(label, lcap, "Assistant");
    snprintf(meta, mcap, "  %s%s%s%s", clock, m->model[0] ? " · " : "", m->model,
             m->streaming ? " · writing… (Esc stops)" : "");
}

/* The figures under a finished reply (row 0) and, in the detailed view, its settings. */
static void tail_text(const AppMessage *m, int row, char *out, size_t cap) {
    if (row == 1) {
        const SamplerParams *s = &m->sampling;
        snprintf(out, cap, "T %.2f · top-p %.2f · top-k %d · min-p %.2f · repeat %.2f · seed %lld%s%s",
                 s->temperature, s->top_p, s->top_k, s->min_p, s->repeat_penalty,
                 (long long)s->seed, m->backend[0] ? " · " : "", m->backend);
        return;
    }
    size_t o = (size_t)snprintf(out, cap, "%d tok · %.1f tok/s · TTFT %.0f ms", m->gen_tokens,
                                m->tok_s, m->ttft_ms);
    if (o >= cap) return;
    /* A failed reply says so (it read "interrupted" when it came back from the history). */
    if (!strcmp(m->stop_reason, "error"))
        o += (size_t)snprintf(out + o, cap - o, " · failed%s%s", m->error[0] ? ": " : "", m->error);
    else if (m->interrupted) o += (size_t)snprintf(out + o, cap - o, " · interrupted");
    else if (!strcmp(m->stop_reason, "max_tokens"))
        o += (size_t)snprintf(out + o, cap - o, " · stopped at the token limit");
    else if (!strcmp(m->stop_reason, "ctx_full"))
        o += (size_t)snprintf(out + o, cap - o, " · stopped: context full");
    if (o < cap && m->alt_n > 1)
        snprintf(out + o, cap - o, " · version %d/%d (/reply N)", m->alt_i, m->alt_n);
}

/* Draws UTF-8 text at (row, col), clipped to max_cols. */
static void put_text(WINDOW *w, int row, int col, const char *s, size_t n, int max_cols,
                     attr_t attr) {
    if (max_cols > 0) screen_put(w, row, col, s, n, max_cols, attr);
}

static attr_t text_style(const AppMessage *m) {
    switch (m->kind) {
    case MSG_USER: return screen_style(ST_USER_TEXT);
    case MSG_NOTE: return screen_style(ST_NOTE);
    case MSG_ERROR: return screen_style(ST_ERROR);
    default: return A_NORMAL;
    }
}

static void draw_line(ChatView *v, WINDOW *w, int row, int cols, const AppMessage *m,
                      const WrapCache *c, int line) {
    int hr = head_rows(v, m);
    if (line < hr) {
        char label[32], meta[512];
        head_text(m, label, sizeof label, meta, sizeof meta);
        int lw = tw_width(label, strlen(label));
        attr_t la = screen_style(m->kind == MSG_USER ? ST_USER_LABEL : ST_ASSIST_LABEL);
        put_text(w, row, 0, label, strlen(label), cols, la);
        put_text(w, row, lw, meta, strlen(meta), cols - lw, screen_style(ST_META));
        return;
    }
    line -= hr;
    int ind = text_indent(m);
    if (line < c->n) {
        const TwLine *l = &c->lines[line];
        if (m->streaming && m->len == 0) {
            put_text(w, row, ind, "…", strlen("…"), cols - ind, screen_style(ST_META));
            return;
        }
        int x = ind + l->hang; /* a continuation line hangs under its first line's text */
        put_text(w, row, x, m->text + l->start, l->len, cols - x, text_style(m));
        if (m->streaming && line == c->n - 1 && x + l->cols < cols) {
            wattrset(w, screen_style(ST_META));
            mvwaddstr(w, row, x + l->cols, "▍");
            wattrset(w, A_NORMAL);
        }
        return;
    }
    line -= c->n;
    if (line < tail_rows(v, m) - 1) {
        char t[512];
        tail_text(m, line, t, sizeof t);
        put_text(w, row, ind, t, strlen(t), cols - ind, screen_style(ST_META));
    }
}

/* Sets the anchor to the absolute line `top`. */
static void set_anchor(ChatView *v, const AppTranscript *t, const int *rows_of, int top) {
    int acc = 0;
    for (int i = t->view_start; i < t->n; i++) {
        const AppMessage *m = &t->msgs[i];
        int r = rows_of[i - t->view_start];
        if (top < acc + r) {
            int in = top - acc;
            int hr = head_rows(v, m);
            v->anchor_serial = m->serial;
            if (in < hr) {
                v->anchor_part = PART_HEAD;
                v->anchor_sub = in;
            } else if (in < hr + v->cache[i].n) {
                v->anchor_part = PART_TEXT;
                const WrapCache *c = &v->cache[i];
                v->anchor_sub = (int)c->lines[in - hr].start;
            } else {
                v->anchor_part = PART_TAIL;
                v->anchor_sub = in - hr - v->cache[i].n;
            }
            return;
        }
        acc += r;
    }
    v->follow = true;
}

void chatview_draw(ChatView *v, WINDOW *w, const AppTranscript *t) {
    int rows, cols;
    getmaxyx(w, rows, cols);
    werase(w);
    if (t->generation != v->generation) {
        /* Messages were removed or replaced: cached wraps by index are stale. */
        for (int i = 0; i < v->n_cache; i++) v->cache[i].serial = 0;
        v->generation = t->generation;
    }
    int count = t->n - t->view_start;
    if (count < 0) count = 0;
    int *rows_of = calloc((size_t)(count ? count : 1), sizeof *rows_of);
    if (!rows_of) return;
    int total = 0, anchor_line = -1;
    for (int i = t->view_start; i < t->n; i++) {
        const AppMessage *m = &t->msgs[i];
        WrapCache *c = wrap(v, i, m, cols);
        int r = msg_rows(v, m, c);
        rows_of[i - t->view_start] = r;
        if (!v->follow && m->serial == v->anchor_serial && c) {
            int hr = head_rows(v, m);
            if (v->anchor_part == PART_HEAD) anchor_line = total + (v->anchor_sub < hr ? v->anchor_sub : 0);
            else if (v->anchor_part == PART_TEXT) anchor_line = total + hr + text_line_of(c, v->anchor_sub);
            else {
                int tr = tail_rows(v, m);
                anchor_line = total + hr + c->n + (v->anchor_sub < tr ? v->anchor_sub : tr - 1);
            }
        }
        total += r;
    }
    int max_top = total > rows ? total - rows : 0;
    int top;
    if (v->follow || anchor_line < 0) top = max_top;
    else top = anchor_line;
    /* Apply scroll requests. */
    if (v->pending_home) top = 0;
    if (v->pending_end) top = max_top;
    top += v->pending_delta + v->pending_pages * (rows > 2 ? rows - 2 : 1);
    bool moved = v->pending_home || v->pending_end || v->pending_delta || v->pending_pages;
    v->pending_home = v->pending_end = false;
    v->pending_delta = v->pending_pages = 0;
    if (top > max_top) top = max_top;
    if (top < 0) top = 0;
    if (moved || v->follow || anchor_line < 0) {
        v->follow = top >= max_top;
        if (!v->follow) set_anchor(v, t, rows_of, top);
    }
    /* Paint the visible lines. */
    int acc = 0, row = 0;
    for (int i = t->view_start; i < t->n && row < rows; i++) {
        const AppMessage *m = &t->msgs[i];
        int r = rows_of[i - t->view_start];
        if (acc + r <= top) {
            acc += r;
            continue;
        }
        for (int line = top > acc ? top - acc : 0; line < r && row < rows; line++, row++)
            draw_line(v, w, row, cols, m, &v->cache[i], line);
        acc += r;
    }
    v->last_rows = rows;
    v->last_total = total;
    v->last_top = top;
    /* Until the first message, say how to start (under the notes, e.g. "Loaded ..."). */
    bool any_turn = false;
    for (int i = t->view_start; i < t->n && !any_turn; i++)
        any_turn = has_head(&t->msgs[i]);
    if (!any_turn && !v->detailed && row < rows) {
        const char *hello = "Type a message and press Enter. /help lists the commands.";
        put_text(w, row > 0 ? row + 1 < rows ? row + 1 : row : 0, 0, hello, strlen(hello), cols,
                 screen_style(ST_META));
    }
    if (!v->follow && rows > 0) {
        char more[64];
        snprintf(more, sizeof more, " ↓ %d more (End) ", chatview_lines_below(v));
        int mw = tw_width(more, strlen(more));
        if (mw < cols) put_text(w, rows - 1, cols - mw, more, strlen(more), mw, screen_style(ST_HINT));
    }
    free(rows_of);
}
