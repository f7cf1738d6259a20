/* Status bar text and painting (see statusbar.h). */
#include "ui/statusbar.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ui/textwidth.h"

typedef struct {
    char text[160];
    int priority; /* lower = dropped later */
} Field;

void statusbar_format(const AppStatus *st, int cols, char *out, size_t cap, int *busy_at,
                      int *warn_at) {
    *busy_at = -1;
    *warn_at = -1;
    out[0] = 0;
    if (cap < 8) return;
    Field f[12];
    int n = 0;
    if (st->loading) {
        int barw = cols / 4;
        if (barw > 30) barw = 30;
        if (barw < 5) barw = 5;
        char bar[64];
        int fill = (int)(st->load_frac * (float)barw + 0.5f);
        if (fill > barw) fill = barw;
        if (fill < 0) fill = 0;
        for (int i = 0; i < barw; i++) bar[i] = i < fill ? '#' : '-';
        bar[barw] = 0;
        snprintf(f[n].text, sizeof f[n].text, "Loading %s [%s] %3.0f%%", st->load_name, bar,
                 st->load_frac * 100.0);
        f[n++].priority = 0;
        if (st->load_stage[0]) {
            snprintf(f[n].text, sizeof f[n].text, "%s", st->load_stage);
            f[n++].priority = 3;
        }
        if (st->model_loaded) {
            snprintf(f[n].text, sizeof f[n].text, "using %s meanwhile", st->model);
            f[n++].priority = 4;
        }
    } else if (!st->model_loaded) {
        snprintf(f[n].text, sizeof f[n].text, "no model (/load PATH)");
        f[n++].priority = 0;
    } else {
        /* The file's name too when it is not the model's (two files may share a name). */
        const char *slash = strrchr(st->model_path, '/');
        const char *file = slash ? slash + 1 : st->model_path;
        const char *dot = strrchr(file, '.');
        size_t stem = dot && dot > file ? (size_t)(dot - file) : strlen(file);
        bool same = !strcmp(file, st->model) ||
                    (strlen(st->model) == stem && !strncmp(file, st->model, stem));
        if (*file && !same)
            snprintf(f[n].text, sizeof f[n].text, "%s (%s)", st->model, file);
        else
            snprintf(f[n].text, sizeof f[n].text, "%s", st->model);
        f[n++].priority = 1;
        /* The short form: the part in parentheses (why CUDA is not used, ...) is in /show. */
        size_t bl = strcspn(st->backend, "(");
        while (bl && st->backend[bl - 1] == ' ') bl--;
        snprintf(f[n].text, sizeof f[n].text, "%.*s", (int)bl, st->backend);
        f[n++].priority = 5;
    }
    if (st->model_loaded && !st->loading) {
        if (st->gen_tokens || st->generating) {
            snprintf(f[n].text, sizeof f[n].text, "%.1f tok/s", st->tok_s);
            f[n++].priority = 0;
            snprintf(f[n].text, sizeof f[n].text, "TTFT %.0f ms", st->ttft_ms);
            f[n++].priority = 2;
            snprintf(f[n].text, sizeof f[n].text, "%d tok", st->gen_tokens);
            f[n++].priority = 2;
        }
        if (st->ctx_size) {
            snprintf(f[n].text, sizeof f[n].text, "ctx %d/%d", st->ctx_used, st->ctx_size);
            f[n++].priority = 3;
        }
    }
    snprintf(f[n].text, sizeof f[n].text, "T %.2f", st->sampling.temperature);
    f[n++].priority = 1;

    char busy[64] = "", warn[200] = "";
    if (st->generating) snprintf(busy, sizeof busy, "generating (Esc stops)");
    if (!st->history_ok) snprintf(warn, sizeof warn, "%s", st->history_msg);

    /* Drop the least important fields until everything fits. */
    for (;;) {
        int w = 1;
        for (int i = 0; i < n; i++) w += tw_width(f[i].text, strlen(f[i].text)) + 3;
        if (busy[0]) w += tw_width(busy, strlen(busy)) + 3;
        if (warn[0]) w += tw_width(warn, strlen(warn)) + 3;
        if (w <= cols) break;
        /* Least important first: details (priority >= 3), then long warnings, then the
         * remaining fields. */
        int worst = -1;
        for (int i = 0; i < n; i++)
            if (f[i].priority > 0 && (worst < 0 || f[i].priority >= f[worst].priority)) worst = i;
        bool shorten_first = worst < 0 || f[worst].priority < 3;
        if (shorten_first && warn[0] && strcmp(warn, "history not saved") &&
            strcmp(warn, "history off")) {
            snprintf(warn, sizeof warn, "%s", st->history_msg[0] && !strncmp(st->history_msg, "history off", 11)
                                                  ? "history off" : "history not saved");
            continue;
        }
        if (shorten_first && busy[0] && strcmp(busy, "generating")) {
            snprintf(busy, sizeof busy, "generating");
            continue;
        }
        if (worst >= 0) {
            memmove(&f[worst], &f[worst + 1], (size_t)(n - worst - 1) * sizeof f[0]);
            n--;
            continue;
        }
        break; /* the drawing clips the rest */
    }
    size_t o = (size_t)snprintf(out, cap, " ");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? " · " : "", f[i].text);
    if (busy[0] && o < cap) {
        o += (size_t)snprintf(out + o, cap - o, " · ");
        if (o < cap) *busy_at = (int)o;
        o += (size_t)snprintf(out + o, cap - o, "%s", busy);
    }
    if (warn[0] && o < cap) {
        o += (size_t)snprintf(out + o, cap - o, " · ");
        if (o < cap) *warn_at = (int)o;
        snprintf(out + o, cap - o, "%s", warn);
    }
}

void statusbar_draw(WINDOW *w, const AppStatus *st) {
    int rows, cols;
    getmaxyx(w, rows, cols);
    (void)rows;
    char text[1024];
    int busy_at, warn_at;
    statusbar_format(st, cols, text, sizeof text, &busy_at, &warn_at);
    wbkgdset(w, ' ' | screen_style(ST_STATUS));
    werase(w);
    size_t n = strlen(text);
    /* Segments: [0, busy) normal, [busy, warn) busy style, [warn, end) warning style. */
    int cuts[3] = {0, busy_at >= 0 ? busy_at : (int)n, warn_at >= 0 ? warn_at : (int)n};
    if (cuts[1] > cuts[2]) cuts[1] = cuts[2];
    Style styles[3] = {ST_STATUS, ST_STATUS_BUSY, ST_STATUS_WARN};
    int col = 0;
    for (int s = 0; s < 3; s++) {
        size_t from = (size_t)cuts[s], to = s < 2 ? (size_t)cuts[s + 1] : n;
        if (to <= from || col >= cols) continue;
        col += screen_put(w, 0, col, text + from, to - from, cols - col, screen_style(styles[s]));
    }
    wattrset(w, A_NORMAL);
}
