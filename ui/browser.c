/* Session browser (see browser.h). Screens: the list (sessions or search hits), a prompt
 * line (search text, new title), a delete confirmation, and a read-only view. */
#define _GNU_SOURCE
#include "ui/browser.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ui/chatview.h"
#include "ui/textwidth.h"

typedef enum { SCR_LIST, SCR_VIEW } Scr;
typedef enum { PR_NONE, PR_SEARCH, PR_RENAME, PR_CONFIRM_DELETE } Prompt;

struct Browser {
    App *app;
    Scr scr;
    Prompt prompt;
    char edit[256];          /* prompt line being typed */
    char query[256];         /* active search, "" = the session list */
    AppSessionRow *rows;
    int n_rows;
    AppSearchHit *hits;
    int n_hits;
    int sel, top;
    char message[300];       /* one-line feedback */
    bool message_is_error;
    /* read-only view */
    AppTranscript view;
    AppSessionRow view_row;
    ChatView *cv;
    int page_rows;
};

static void set_msg(Browser *b, bool err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_msg(Browser *b, bool err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->message, sizeof b->message, fmt, ap);
    va_end(ap);
    b->message_is_error = err;
}

static int count(const Browser *b) { return b->query[0] ? b->n_hits : b->n_rows; }

static int64_t selected_id(const Browser *b) {
    if (b->sel < 0 || b->sel >= count(b)) return 0;
    return b->query[0] ? b->hits[b->sel].session_id : b->rows[b->sel].id;
}

static const char *selected_title(const Browser *b) {
    if (b->sel < 0 || b->sel >= count(b)) return "";
    return b->query[0] ? b->hits[b->sel].title : b->rows[b->sel].title;
}

static void reload(Browser *b) {
    free(b->rows);
    free(b->hits);
    b->rows = NULL;
    b->hits = NULL;
    b->n_rows = b->n_hits = 0;
    char why[300];
    if (b->query[0]) {
        if (app_search(b->app, b->query, &b->hits, &b->n_hits, why, sizeof why))
            set_msg(b, true, "Search failed: %s", why);
        else
            set_msg(b, false, "%d match%s for \"%s\" (Esc: back to all sessions)", b->n_hits,
                    b->n_hits == 1 ? "" : "es", b->query);
    } else {
        if (app_sessions(b->app, &b->rows, &b->n_rows, why, sizeof why))
            set_msg(b, true, "Cannot list sessions: %s", why);
    }
    if (b->sel >= count(b)) b->sel = count(b) - 1;
    if (b->sel < 0) b->sel = 0;
}

/* Puts the selection on session id (in the list or, for a search, on its first hit). */
static void select_id(Browser *b, int64_t id) {
    for (int i = 0; i < count(b); i++)
        if ((b->query[0] ? b->hits[i].session_id : b->rows[i].id) == id) {
            b->sel = i;
            return;
        }
}

/* 'd': asks first, but the live chat's own session is refused at once (deleting it split
 * the conversation: the model kept the old turns, the database only the later ones). */
static void ask_delete(Browser *b, int64_t id) {
    if (!id) return;
    if (app_history_readonly(b->app)) {
        set_msg(b, true, "Read-only (--no-history): sessions cannot be deleted.");
        return;
    }
    if (id == app_current_session(b->app)) {
        set_msg(b, true, "This is the session you are chatting in: start /new first, then "
                         "delete it.");
        return;
    }
    b->prompt = PR_CONFIRM_DELETE;
}

static void ask_rename(Browser *b, const char *title) {
    if (app_history_readonly(b->app)) {
        set_msg(b, true, "Read-only (--no-history): sessions cannot be renamed.");
        return;
    }
    b->prompt = PR_RENAME;
    snprintf(b->edit, sizeof b->edit, "%s", title);
}

/* 'e': the session as Markdown in the current directory, under a new time-stamped name. */
static void export_id(Browser *b, int64_t id) {
    if (!id) return;
    char written[1400], why[600];
    if (app_session_export(b->app, id, "md", NULL, written, sizeof written, why, sizeof why))
        set_msg(b, true, "Export failed: %s", why);
    else
        set_msg(b, false, "Exported to %s", written);
}

Browser *browser_open(App *a, const char *query) {
    Browser *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->app = a;
    snprintf(b->query, sizeof b->query, "%s", query ? query : "");
    reload(b);
    return b;
}

static void close_view(Browser *b) {
    app_transcript_free(&b->view);
    chatview_free(b->cv);
    b->cv = NULL;
    b->scr = SCR_LIST;
}

void browser_free(Browser *b) {
    if (!b) return;
    close_view(b);
    free(b->rows);
    free(b->hits);
    free(b);
}

static void open_view(Browser *b) {
    int64_t id = selected_id(b);
    if (!id) return;
    char why[300];
    app_transcript_free(&b->view);
    /* from a search hit: the branch that holds the match, also when /regen made it an older one */
    const int64_t hit_msg = b->query[0] ? b->hits[b->sel].message_id : 0;
    if (app_session_view_at(b->app, id, hit_msg, &b->view_row, &b->view, why, sizeof why)) {
        set_msg(b, true, "Cannot open the session: %s", why);
        return;
    }
    chatview_free(b->cv);
    b->cv = chatview_new(true);
    chatview_home(b->cv);
    b->scr = SCR_VIEW;
}

static BrowserResult resume(Browser *b, int64_t id) {
    if (!id) return BROWSER_STAY;
    char why[300];
    if (app_session_resume(b->app, id, why, sizeof why)) {
        set_msg(b, true, "Cannot resume: %s", why);
        return BROWSER_STAY;
    }
    return BROWSER_RESUMED;
}

/* Removes the last UTF-8 character of s. */
static void pop_char(char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        n--;
        if (((unsigned char)s[n] & 0xC0) != 0x80) break;
    }
    s[n] = 0;
}

static void edit_append(Browser *b, const char *t, size_t n) {
    size_t l = strlen(b->edit);
    for (size_t i = 0; i < n && l + 1 < sizeof b->edit; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c < 0x20 || c == 0x7f) continue;
        b->edit[l++] = (char)c;
    }
    b->edit[l] = 0;
}

void browser_paste(Browser *b, const char *text, size_t n) {
    if (b->prompt == PR_SEARCH || b->prompt == PR_RENAME) edit_append(b, text, n);
}

static BrowserResult prompt_key(Browser *b, const Key *k) {
    if (b->prompt == PR_CONFIRM_DELETE) {
        bool yes = k->type == K_BYTES && k->len == 1 && (k->bytes[0] == 'y' || k->bytes[0] == 'Y');
        b->prompt = PR_NONE;
        if (!yes) {
            set_msg(b, false, "Not deleted.");
            return BROWSER_STAY;
        }
        char why[300];
        int64_t id = b->scr == SCR_VIEW ? b->view_row.id : selected_id(b);
        if (app_session_delete(b->app, id, why, sizeof why)) {
            set_msg(b, true, "Delete failed: %s", why);
        } else {
            set_msg(b, false, "Session deleted.");
            if (b->scr == SCR_VIEW) close_view(b);
            reload(b);
        }
        return BROWSER_STAY;
    }
    switch (k->type) {
    case K_ESC:
    case K_CTRL_C:
        b->prompt = PR_NONE;
        return BROWSER_STAY;
    case K_BACKSPACE: pop_char(b->edit); return BROWSER_STAY;
    case K_BYTES:
        if (k->len == 1 && k->bytes[0] == 0x15) { /* Ctrl-U: clear (the old title is prefilled) */
            b->edit[0] = 0;
            return BROWSER_STAY;
        }
        if (k->len == 1 && k->bytes[0] == 0x17) { /* Ctrl-W: delete the last word */
            size_t n = strlen(b->edit);
            while (n && b->edit[n - 1] == ' ') n--;
            while (n && b->edit[n - 1] != ' ') n--;
            b->edit[n] = 0;
            return BROWSER_STAY;
        }
        edit_append(b, k->bytes, k->len);
        return BROWSER_STAY;
    case K_ENTER:
        if (b->prompt == PR_SEARCH) {
            snprintf(b->query, sizeof b->query, "%s", b->edit);
            b->sel = 0;
            b->message[0] = 0;
            reload(b);
        } else if (b->prompt == PR_RENAME) {
            /* Surrounding spaces are not part of a title (as with /rename). */
            size_t n = strlen(b->edit), lead = strspn(b->edit, " ");
            while (n > lead && b->edit[n - 1] == ' ') n--;
            memmove(b->edit, b->edit + lead, n - lead);
            b->edit[n - lead] = 0;
            char why[300];
            int64_t id = b->scr == SCR_VIEW ? b->view_row.id : selected_id(b);
            if (!b->edit[0]) set_msg(b, true, "The title cannot be empty.");
            else if (app_session_rename(b->app, id, b->edit, why, sizeof why))
                set_msg(b, true, "Rename failed: %s", why);
            else {
                set_msg(b, false, "Renamed.");
                if (b->scr == SCR_VIEW)
                    snprintf(b->view_row.title, sizeof b->view_row.title, "%s", b->edit);
                reload(b);
                /* The list is sorted by time: the renamed session may have moved. The next
                 * key must act on it, not on whatever took its row. */
                select_id(b, id);
            }
        }
        b->prompt = PR_NONE;
        return BROWSER_STAY;
    default: return BROWSER_STAY;
    }
}

static bool is_char(const Key *k, char c) {
    return k->type == K_BYTES && k->len == 1 && k->bytes[0] == c;
}

BrowserResult browser_key(Browser *b, const Key *k) {
    if (b->prompt != PR_NONE) return prompt_key(b, k);
    if (k->type == K_CTRL_D) return BROWSER_QUIT;
    if (b->scr == SCR_VIEW) {
        switch (k->type) {
        case K_UP: chatview_scroll(b->cv, -1); break;
        case K_DOWN: case K_ENTER: chatview_scroll(b->cv, 1); break;
        case K_PGUP: chatview_page(b->cv, -1); break;
        case K_PGDN: chatview_page(b->cv, 1); break;
        case K_WHEEL_UP: chatview_scroll(b->cv, -3); break;
        case K_WHEEL_DOWN: chatview_scroll(b->cv, 3); break;
        case K_HOME: chatview_home(b->cv); break;
        case K_END: chatview_end(b->cv); break;
        case K_ESC: case K_LEFT: case K_CTRL_C: close_view(b); break;
        case K_F2: ask_rename(b, b->view_row.title); break;
        case K_DELETE: ask_delete(b, b->view_row.id); break;
        default:
            if (is_char(k, 'q')) close_view(b);
            else if (is_char(k, 'k')) chatview_scroll(b->cv, -1);
            else if (is_char(k, 'j')) chatview_scroll(b->cv, 1);
            else if (is_char(k, ' ')) chatview_page(b->cv, 1);
            else if (is_char(k, 'g')) chatview_home(b->cv);
            else if (is_char(k, 'G')) chatview_end(b->cv);
            else if (is_char(k, 'r')) return resume(b, b->view_row.id);
            else if (is_char(k, 'n')) ask_rename(b, b->view_row.title);
            else if (is_char(k, 'd')) ask_delete(b, b->view_row.id);
            else if (is_char(k, 'e')) export_id(b, b->view_row.id);
        }
        return BROWSER_STAY;
    }
    int n = count(b);
    int page = b->page_rows > 1 ? b->page_rows : 10;
    switch (k->type) {
    case K_UP: b->sel--; break;
    case K_DOWN: b->sel++; break;
    case K_PGUP: b->sel -= page; break;
    case K_PGDN: b->sel += page; break;
    case K_WHEEL_UP: b->sel -= 3; break;
    case K_WHEEL_DOWN: b->sel += 3; break;
    case K_HOME: b->sel = 0; break;
    case K_END: b->sel = n - 1; break;
    case K_ENTER: case K_RIGHT: open_view(b); break;
    case K_F2:
        if (selected_id(b)) ask_rename(b, selected_title(b));
        break;
    case K_DELETE: ask_delete(b, selected_id(b)); break;
    case K_ESC: case K_CTRL_C:
        if (b->query[0]) {
            b->query[0] = 0;
            b->message[0] = 0;
            reload(b);
            break;
        }
        return BROWSER_CLOSE;
    default:
        if (is_char(k, 'q')) return BROWSER_CLOSE;
        if (is_char(k, 'k')) b->sel--;
        else if (is_char(k, 'j')) b->sel++;
        else if (is_char(k, 'g')) b->sel = 0;
        else if (is_char(k, 'G')) b->sel = n - 1;
        else if (is_char(k, 'r')) return resume(b, selected_id(b));
        else if (is_char(k, '/') || is_char(k, 's')) {
            b->prompt = PR_SEARCH;
            snprintf(b->edit, sizeof b->edit, "%s", b->query);
        } else if (is_char(k, 'n') && selected_id(b)) ask_rename(b, selected_title(b));
        else if (is_char(k, 'd')) ask_delete(b, selected_id(b));
        else if (is_char(k, 'e')) export_id(b, selected_id(b));
        else if (is_char(k, 'R')) reload(b);
    }
    if (b->sel >= n) b->sel = n - 1;
    if (b->sel < 0) b->sel = 0;
    return BROWSER_STAY;
}

/* ---- drawing ---------------------------------------------------------------------------- */

static int put(WINDOW *w, int row, int col, const char *s, size_t n, int max_cols, attr_t a) {
    return max_cols > 0 ? screen_put(w, row, col, s, n, max_cols, a) : 0;
}

static void fmt_date(int64_t ms, char *out, size_t cap) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%d %H:%M", &tm);
}

static void fill_row(WINDOW *w, int row, int cols, attr_t a) {
    wattrset(w, a);
    mvwhline(w, row, 0, ' ', cols);
    wattrset(w, A_NORMAL);
}

/* A snippet with \x01..\x02 marking matches: matches drawn highlighted. */
static void put_snippet(WINDOW *w, int row, int col, const char *s, int max_cols, attr_t base) {
    bool in = false;
    while (*s && max_cols > 0) {
        size_t n = strcspn(s, "\x01\x02\n");
        if (n) {
            int used = put(w, row, col, s, n, max_cols, in ? screen_style(ST_MATCH) : base);
            col += used;
            max_cols -= used;
            s += n;
            continue;
        }
        if (*s == '\x01') in = true;
        else if (*s == '\x02') in = false;
        else if (*s == '\n') {
            col += put(w, row, col, " ", 1, max_cols, base);
            max_cols--;
        }
        s++;
    }
}

/* The key help as far as it fits in cols: whole items (" · " between them), then " · …" when
 * some are left out. It was cut wherever the edge fell ("n re", "e expo" at 40 columns). */
static void fit_keys(const char *keys, int cols, char *out, size_t cap) {
    static const char sep[] = " · ", more[] = " · …";
    snprintf(out, cap, "%s", keys);
    if (tw_width(out, strlen(out)) <= cols) return;
    for (;;) {
        /* drop the last item */
        char *last = NULL;
        for (char *p = strstr(out, sep); p; p = strstr(p + 1, sep)) last = p;
        if (!last) return; /* one item: put() cuts it at the edge */
        *last = 0;
        const size_t len = strlen(out);
        if (len + sizeof more > cap) return;
        memcpy(out + len, more, sizeof more);
        if (tw_width(out, strlen(out)) <= cols) return;
        *last = 0; /* and try with one item fewer */
    }
}

static void draw_footer(Browser *b, WINDOW *w, int rows, int cols, const char *keys_all) {
    char keys[256];
    fit_keys(keys_all, cols, keys, sizeof keys);
    int r = rows - 1;
    fill_row(w, r, cols, screen_style(ST_STATUS));
    if (b->prompt == PR_SEARCH || b->prompt == PR_RENAME) {
        const char *label = b->prompt == PR_SEARCH ? "Search: " : "New title (Ctrl-U clears): ";
        int lw = put(w, r, 0, label, strlen(label), cols, screen_style(ST_STATUS));
        int ew = put(w, r, lw, b->edit, strlen(b->edit), cols - lw - 1, screen_style(ST_STATUS));
        wmove(w, r, lw + ew < cols ? lw + ew : cols - 1);
        curs_set(1);
        return;
    }
    curs_set(0);
    if (b->prompt == PR_CONFIRM_DELETE) {
        char q[300];
        snprintf(q, sizeof q, "Delete \"%s\" and all its messages? (y/N)",
                 b->scr == SCR_VIEW ? b->view_row.title : selected_title(b));
        put(w, r, 0, q, strlen(q), cols, screen_style(ST_STATUS_WARN));
        return;
    }
    if (b->message[0]) {
        put(w, r, 0, b->message, strlen(b->message), cols,
            screen_style(b->message_is_error ? ST_STATUS_WARN : ST_STATUS));
        if (rows > 2) {
            fill_row(w, r - 1, cols, A_NORMAL);
            put(w, r - 1, 0, keys, strlen(keys), cols, screen_style(ST_META));
        }
        return;
    }
    put(w, r, 0, keys, strlen(keys), cols, screen_style(ST_STATUS));
}

void browser_draw(Browser *b, WINDOW *w) {
    int rows, cols;
    getmaxyx(w, rows, cols);
    werase(w);
    if (b->scr == SCR_VIEW) {
        char head[400], date[32];
        fmt_date(b->view_row.updated_at, date, sizeof date);
        char created[32];
        fmt_date(b->view_row.created_at, created, sizeof created);
        snprintf(head, sizeof head, " #%lld %s (read-only) · %s · %d messages · %s to %s",
                 (long long)b->view_row.id, b->view_row.title,
                 b->view_row.model[0] ? b->view_row.model : "?", b->view_row.message_count,
                 created, date);
        fill_row(w, 0, cols, screen_style(ST_TITLE));
        put(w, 0, 0, head, strlen(head), cols, screen_style(ST_TITLE));
        int body = rows - 2;
        if (body > 0) {
            WINDOW *sub = derwin(w, body, cols, 1, 0);
            if (sub) {
                chatview_draw(b->cv, sub, &b->view);
                delwin(sub);
            }
        }
        draw_footer(b, w, rows, cols,
                    " r resume · n rename · d delete · e export · PgUp/PgDn scroll · Esc back");
        return;
    }
    char head[400];
    if (b->query[0])
        snprintf(head, sizeof head, " Search \"%s\": %d match%s", b->query, b->n_hits,
                 b->n_hits == 1 ? "" : "es");
    else
        snprintf(head, sizeof head, " Saved sessions: %d (newest first)", b->n_rows);
    fill_row(w, 0, cols, screen_style(ST_TITLE));
    put(w, 0, 0, head, strlen(head), cols, screen_style(ST_TITLE));
    int body = rows - 3; /* title, footer and the key help or message line */
    if (body < 1) body = 1;
    b->page_rows = body;
    int n = count(b);
    if (b->sel < b->top) b->top = b->sel;
    if (b->sel >= b->top + body) b->top = b->sel - body + 1;
    if (b->top < 0) b->top = 0;
    if (n == 0) {
        const char *empty = b->query[0] ? "No matches." : "No saved sessions yet.";
        put(w, 2 < rows - 1 ? 2 : 1, 1, empty, strlen(empty), cols - 1, screen_style(ST_META));
    }
    for (int i = b->top; i < n && i - b->top < body; i++) {
        int r = 1 + i - b->top;
        bool sel = i == b->sel;
        attr_t base = sel ? screen_style(ST_SELECTED) : A_NORMAL;
        if (sel) fill_row(w, r, cols, base);
        if (b->query[0]) {
            const AppSearchHit *h = &b->hits[i];
            char t[200];
            snprintf(t, sizeof t, " #%lld %s: ", (long long)h->session_id, h->title);
            int tw = put(w, r, 0, t, strlen(t), cols, base | A_BOLD);
            put_snippet(w, r, tw, h->snippet, cols - tw, base);
        } else {
            const AppSessionRow *s = &b->rows[i];
            char date[32], right[200];
            fmt_date(s->updated_at, date, sizeof date);
            snprintf(right, sizeof right, "  %s  %s  %3d msg  #%-4lld", s->model, date,
                     s->message_count, (long long)s->id);
            int rw = tw_width(right, strlen(right));
            if (rw > cols * 2 / 3) rw = 0;
            char t[200];
            snprintf(t, sizeof t, " %s", s->title);
            put(w, r, 0, t, strlen(t), cols - rw, base | (sel ? A_BOLD : 0));
            if (rw) put(w, r, cols - rw, right, strlen(right), rw, sel ? base : screen_style(ST_META));
        }
    }
    draw_footer(b, w, rows, cols,
                b->query[0]
                    ? " Enter open · r resume · e export · / search · Esc all sessions · q back"
                    : " Enter open · r resume · / search · n rename · d delete · e export · q back");
}
