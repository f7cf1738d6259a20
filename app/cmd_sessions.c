/* The history tools on the command line: --sessions, --show ID, --search TEXT,
 * --export ID [--format md|json] [-o FILE], --delete ID [--yes].
 * Exit codes: 0 done, 1 failed (message on stderr; for --search: no match), 2 usage. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/modes.h"
#include "app/store.h"
#include "app/store_internal.h"
#include "app/termsafe.h"
#include "infer/utf8.h"

static void fmt_local(int64_t ms, char *buf, size_t cap) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M", &tm);
}

/* Copies at most max_cols characters of s (UTF-8; one column each, which is right for the
 * common case and never splits a character), adding "..." when cut. */
static void clip(const char *s, int max_cols, char *out, size_t cap) {
    size_t o = 0;
    int cols = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && o + 8 < cap) {
        if (cols == max_cols) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = *p;
        int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
        if (c == '\n' || c == '\r' || c == '\t') {
            out[o++] = ' ';
            p++;
        } else {
            for (int i = 0; i < len && *p; i++) out[o++] = (char)*p++;
        }
        cols++;
    }
    out[o] = 0;
}

/* Stored text to the terminal, control characters made visible (app/termsafe.h). */
static void put_safe(const char *t, int keep_newlines) { termsafe_puts(stdout, t, keep_newlines); }

static Store *open_for(const AppConfig *cfg, Err *err) {
    /* --no-history promises no writes: open read-only (no migration, no WAL switch). */
    unsigned flags = cfg->no_history ? STORE_OPEN_READONLY : STORE_OPEN_NOCREATE;
    return store_open_ex(cfg->db_path, flags, err);
}

static int fail(const Err *err) {
    fprintf(stderr, "bitnet-chat: %s\n", err->msg);
    return 1;
}

/* ---- --format json for the listings (shape documented in the README, "Scripts") ---------- */

static bool want_json(const AppConfig *cfg) { return cfg->format && !strcmp(cfg->format, "json"); }

static json_t *jtext(const char *s) {
    char *c = utf8_repair(s ? s : "", s ? strlen(s) : 0);
    json_t *j = c ? json_string(c) : json_null();
    free(c);
    return j ? j : json_null();
}

/* {"format": NAME, "format_version": 1, key: arr}, one object on stdout, then a new line. */
static int print_json(const char *name, const char *key, json_t *arr, json_t *extra) {
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string(name));
    json_object_set_new(root, "format_version", json_integer(1));
    if (extra) json_object_update(root, extra);
    json_object_set_new(root, key, arr);
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    putchar('\n');
    json_decref(root);
    json_decref(extra);
    return rc ? 1 : 0;
}

static json_t *session_json(const StoreSession *s) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(s->id));
    json_object_set_new(o, "title", jtext(s->title));
    json_object_set_new(o, "created_at", json_integer(s->created_at));
    json_object_set_new(o, "updated_at", json_integer(s->updated_at));
    json_object_set_new(o, "model_name", jtext(s->model_name));
    json_object_set_new(o, "model_path", jtext(s->model_path));
    json_object_set_new(o, "message_count", json_integer(s->message_count));
    return o;
}

/* A search hit: the snippet as plain text, and where the matches are in it as [start, end)
 * byte offsets (the store marks them with \x01 ... \x02). */
static json_t *hit_json(const StoreSearchHit *h) {
    json_t *o = json_object();
    json_object_set_new(o, "session_id", json_integer(h->session_id));
    json_object_set_new(o, "message_id", json_integer(h->message_id));
    json_object_set_new(o, "session_title", jtext(h->session_title));
    char *clean = utf8_repair(h->snippet ? h->snippet : "", h->snippet ? strlen(h->snippet) : 0);
    json_t *ranges = json_array();
    size_t o_len = 0, start = 0;
    for (const char *p = clean ? clean : ""; *p; p++) {
        if (*p == '\x01') start = o_len;
        else if (*p == '\x02')
            json_array_append_new(ranges, json_pack("[I,I]", (json_int_t)start, (json_int_t)o_len));
        else clean[o_len++] = *p;
    }
    if (clean) clean[o_len] = 0;
    json_t *snip = clean ? json_string(clean) : NULL;
    json_object_set_new(o, "snippet", snip ? snip : json_string(""));
    json_object_set_new(o, "matches", ranges);
    free(clean);
    return o;
}

static int list_sessions(const AppConfig *cfg) {
    Err err = {{0}};
    Store *s = open_for(cfg, &err);
    if (!s) {
        if (strstr(err.msg, "no history database")) { /* nothing recorded yet is not an error */
            if (want_json(cfg)) print_json("bitnet-chat-sessions", "sessions", json_array(), NULL);
            else printf("No saved sessions.\n");
            fprintf(stderr, "bitnet-chat: %s\n", err.msg);
            return 0;
        }
        return fail(&err);
    }
    StoreSession *ss;
    int n;
    if (store_session_list(s, &ss, &n, &err)) {
        store_close(s);
        return fail(&err);
    }
    if (want_json(cfg)) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(arr, session_json(&ss[i]));
        print_json("bitnet-chat-sessions", "sessions", arr, NULL);
    } else if (n == 0) {
        printf("No saved sessions.\n");
    } else {
        printf("%6s  %-16s  %-24s  %5s  %s\n", "ID", "UPDATED", "MODEL", "MSGS", "TITLE");
        for (int i = 0; i < n; i++) {
            char when[32], model[128], title[512];
            fmt_local(ss[i].updated_at, when, sizeof when);
            clip(ss[i].model_name[0] ? ss[i].model_name : "-", 21, model, sizeof model);
            for (char *q = model; *q; q++)
                if ((unsigned char)*q < 0x20 || *q == 0x7f) *q = '?';
            clip(ss[i].title[0] ? ss[i].title : "(untitled)", 60, title, sizeof title);
            printf("%6lld  %-16s  %-24s  %5d  ", (long long)ss[i].id, when, model,
                   ss[i].message_count);
            put_safe(title, 0);
            putchar('\n');
        }
    }
    store_sessions_free(ss, n);
    store_close(s);
    return 0;
}

static int show_session(const AppConfig *cfg) {
    Err err = {{0}};
    Store *s = open_for(cfg, &err);
    if (!s) return fail(&err);
    if (want_json(cfg)) { /* the whole session, every branch: what --export writes */
        int r = store_export_json(s, cfg->session_id, stdout, &err);
        store_close(s);
        return r ? fail(&err) : 0;
    }
    StoreSession ss;
    StoreMessage *m = NULL;
    int n = 0;
    if (store_session_get(s, cfg->session_id, &ss, &err)) {
        store_close(s);
        return fail(&err);
    }
    if (store_message_branch(s, cfg->session_id, &m, &n, &err)) {
        store_session_clear(&ss);
        store_close(s);
        return fail(&err);
    }
    char t1[32], t2[32], line[1024];
    fmt_local(ss.created_at, t1, sizeof t1);
    fmt_local(ss.updated_at, t2, sizeof t2);
    printf("Session %lld: ", (long long)ss.id);
    put_safe(ss.title[0] ? ss.title : "(untitled)", 0);
    printf("\nCreated %s, updated %s\n", t1, t2);
    if (ss.model_name[0] || ss.model_path[0]) {
        fputs("Model: ", stdout);
        put_safe(ss.model_name, 0);
        if (ss.model_path[0]) {
            fputs(ss.model_name[0] ? " (" : "(", stdout);
            put_safe(ss.model_path, 0);
            putchar(')');
        }
        putchar('\n');
    }
    store_sampling_describe(&ss.sampling, line, sizeof line);
    if (line[0]) printf("Sampling: %s\n", line);
    if (ss.system_prompt[0]) {
        fputs("System prompt: ", stdout);
        put_safe(ss.system_prompt, 1);
        putchar('\n');
    }
    for (int i = 0; i < n; i++) {
        fmt_local(m[i].created_at, t1, sizeof t1);
        printf("\n[%s] %s\n", m[i].role, t1);
        put_safe(m[i].text, 1);
        putchar('\n');
        if (!strcmp(m[i].role, "assistant")) {
            store_reply_describe(&m[i], line, sizeof line);
            fputs("  (", stdout);
            put_safe(line, 0);
            fputs(")\n", stdout);
        }
    }
    if (ss.message_count > n)
        printf("\n(%d more message%s on other branches: --export %lld --format json has them all)\n",
               ss.message_count - n, ss.message_count - n == 1 ? "" : "s", (long long)ss.id);
    store_messages_free(m, n);
    store_session_clear(&ss);
    store_close(s);
    return 0;
}

static int search(const AppConfig *cfg) {
    Err err = {{0}};
    Store *s = open_for(cfg, &err);
    if (!s) return fail(&err);
    StoreSearchHit *h;
    int n;
    if (store_search(s, cfg->search, &h, &n, &err)) {
        store_close(s);
        return fail(&err);
    }
    if (want_json(cfg)) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(arr, hit_json(&h[i]));
        json_t *extra = json_object();
        json_object_set_new(extra, "query", jtext(cfg->search));
        print_json("bitnet-chat-search", "hits", arr, extra);
        if (n == 0) fprintf(stderr, "bitnet-chat: no message matches '%s'\n", cfg->search);
        store_search_free(h, n);
        store_close(s);
        return n ? 0 : 1;
    }
    int tty = isatty(STDOUT_FILENO);
    const char *on = tty ? "\033[1m" : "[", *off = tty ? "\033[0m" : "]";
    for (int i = 0; i < n; i++) {
        char title[512];
        clip(h[i].session_title[0] ? h[i].session_title : "(untitled)", 60, title, sizeof title);
        printf("session %lld, message %lld: ", (long long)h[i].session_id,
               (long long)h[i].message_id);
        put_safe(title, 0);
        fputs("\n  ", stdout);
        /* The snippet's match markers become highlighting; everything else is made safe. */
        char *snip = h[i].snippet;
        for (char *p = snip; *p;) {
            size_t k = strcspn(p, "\x01\x02");
            char save = p[k];
            p[k] = 0;
            put_safe(p, 0);
            p[k] = save;
            p += k;
            if (*p == '\x01') fputs(on, stdout), p++;
            else if (*p == '\x02') fputs(off, stdout), p++;
        }
        putchar('\n');
    }
    if (n == 0) fprintf(stderr, "bitnet-chat: no message matches '%s'\n", cfg->search);
    store_search_free(h, n);
    store_close(s);
    return n ? 0 : 1;
}

static int export_session(const AppConfig *cfg) {
    Err err = {{0}};
    const char *out = cfg->output && strcmp(cfg->output, "-") ? cfg->output : NULL;
    /* Where the export goes: a new or regular file is written beside its target and renamed
     * into place (a failed export never leaves a half-written file or clobbers an existing
     * one); a link to a regular file replaces the file it names, not the link. Anything else
     * that exists (/dev/stdout, /dev/null, a FIFO, a terminal) is written to directly: a
     * rename would swap the device or FIFO itself for a regular file. */
    char *dest = NULL;
    int direct = 0;
    if (out) {
        struct stat st;
        if (!out[0]) {
            fprintf(stderr, "bitnet-chat: export: -o: empty file name\n");
            return 1;
        }
        if (stat(out, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                fprintf(stderr, "bitnet-chat: export: %s is a directory (give a file name)\n", out);
                return 1;
            }
            if (S_ISREG(st.st_mode)) dest = realpath(out, NULL);
            else direct = 1;
        }
        if (!direct && !dest) dest = strdup(out);
        if (!direct && !dest) {
            fprintf(stderr, "bitnet-chat: out of memory\n");
            return 1;
        }
    }
    Store *s = open_for(cfg, &err);
    if (!s) {
        free(dest);
        return fail(&err);
    }
    /* One rule with /export: an existing file is not replaced unless --force says so (an
     * unknown session is reported first: that is the bigger mistake). */
    struct stat ost;
    if (out && !direct && !cfg->force && stat(out, &ost) == 0) {
        StoreSession ss;
        if (store_session_get(s, cfg->session_id, &ss, &err)) {
            store_close(s);
            free(dest);
            return fail(&err);
        }
        store_session_clear(&ss);
        fprintf(stderr, "bitnet-chat: export: %s already exists (--force replaces it)\n", out);
        store_close(s);
        free(dest);
        return 1;
    }
    int json = cfg->format && !strcmp(cfg->format, "json");
    FILE *to = stdout;
    char tmp[4200] = "";
    if (direct) {
        to = fopen(out, "w");
        if (!to) {
            fprintf(stderr, "bitnet-chat: cannot write %s: %s\n", out, strerror(errno));
            store_close(s);
            return 1;
        }
    } else if (out) {
        snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", dest);
        int fd = mkstemp(tmp);
        if (fd < 0 || !(to = fdopen(fd, "w"))) {
            fprintf(stderr, "bitnet-chat: cannot write %s: %s\n", out, strerror(errno));
            if (fd >= 0) close(fd), unlink(tmp);
            store_close(s);
            free(dest);
            return 1;
        }
    }
    /* To a terminal the export is made safe like --show (a stored ESC, BEL or C1 byte would
     * otherwise retitle the window, clear the screen or write the clipboard); pipes and files
     * get the stored bytes exactly. */
    FILE *dst = to;
    char *tty_buf = NULL;
    size_t tty_len = 0;
    if (isatty(fileno(to)) && !(to = open_memstream(&tty_buf, &tty_len))) {
        fprintf(stderr, "bitnet-chat: out of memory\n");
        store_close(s);
        free(dest);
        return 1;
    }
    int r = json ? store_export_json(s, cfg->session_id, to, &err)
                 : store_export_markdown(s, cfg->session_id, to, &err);
    if (to != dst) {
        fclose(to);
        to = dst;
        if (r == 0) {
            TermSafe ts = {0, 1};
            errno = 0;
            if (termsafe_write(&ts, to, tty_buf, tty_len) || termsafe_finish(&ts, to) || fflush(to))
                r = err_set(&err, "export: writing failed: %s", errno ? strerror(errno) : "output error");
        }
        free(tty_buf);
    }
    store_close(s);
    if (direct) {
        if (fclose(to) != 0 && r == 0)
            r = err_set(&err, "export: writing %s failed: %s", out, strerror(errno));
    } else if (tmp[0]) {
        if (fclose(to) != 0 && r == 0)
            r = err_set(&err, "export: writing %s failed: %s", out, strerror(errno));
        if (r == 0 && rename(tmp, dest) != 0)
            r = err_set(&err, "export: cannot write %s: %s", out, strerror(errno));
        if (r != 0) unlink(tmp);
    } else if (fflush(stdout) != 0 && r == 0) {
        r = err_set(&err, "export: writing to stdout failed: %s", strerror(errno));
    }
    free(dest);
    return r ? fail(&err) : 0;
}

static int delete_session(const AppConfig *cfg) {
    if (cfg->no_history) {
        fprintf(stderr, "bitnet-chat: --delete changes the history; it cannot be combined with "
                        "--no-history\n");
        return 2;
    }
    Err err = {{0}};
    Store *s = open_for(cfg, &err);
    if (!s) return fail(&err);
    StoreSession ss;
    if (store_session_get(s, cfg->session_id, &ss, &err)) {
        store_close(s);
        return fail(&err);
    }
    if (!cfg->yes) {
        if (!isatty(STDIN_FILENO)) {
            fprintf(stderr, "bitnet-chat: not deleting session %lld without confirmation (stdin is "
                            "not a terminal); add --yes\n",
                    (long long)ss.id);
            store_session_clear(&ss);
            store_close(s);
            return 1;
        }
        fprintf(stderr, "Delete session %lld \"%s\" (%d messages)? [y/N] ", (long long)ss.id,
                ss.title, ss.message_count);
        fflush(stderr);
        char ans[16] = "";
        if (!fgets(ans, sizeof ans, stdin) || (ans[0] != 'y' && ans[0] != 'Y')) {
            fprintf(stderr, "Not deleted.\n");
            store_session_clear(&ss);
            store_close(s);
            return 1;
        }
    }
    int r = store_session_delete(s, ss.id, &err);
    if (r == 0) printf("Deleted session %lld (%d messages).\n", (long long)ss.id, ss.message_count);
    store_session_clear(&ss);
    store_close(s);
    return r ? fail(&err) : 0;
}

/* What the listing commands print is their result: a stdout that could not take it (closed,
 * full disk) is an error, as for the export. */
static int finish_stdout(int rc) {
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "bitnet-chat: writing to stdout failed: %s\n", strerror(errno ? errno : EIO));
        return 1;
    }
    return rc;
}

int mode_sessions(const AppConfig *cfg) {
    switch (cfg->mode) {
    case MODE_SESSIONS: return finish_stdout(list_sessions(cfg));
    case MODE_SHOW: return finish_stdout(show_session(cfg));
    case MODE_SEARCH: return finish_stdout(search(cfg));
    case MODE_EXPORT: return export_session(cfg);
    case MODE_DELETE: return finish_stdout(delete_session(cfg));
    default: break;
    }
    fprintf(stderr, "bitnet-chat: internal error: mode_sessions called for another mode\n");
    return 2;
}
