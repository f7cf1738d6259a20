/* The recorder (history.h): keeps the current conversation in memory and mirrors it into the
 * store at commit points and timed checkpoints.
 *
 * Memory is the truth; the database is brought up to date by sync(). Every message carries
 * its database id (0: not written yet) and a dirty flag; the session row is created with the
 * first message. sync() writes whatever is owed in one transaction, so a failed write leaves
 * nothing half-done: the ids it handed out are forgotten on rollback and tried again later. */
#include "app/history.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/store_internal.h"

enum { DEFAULT_CHECKPOINT_MS = 2000, RETRY_BUSY_MS = 250, NORMAL_BUSY_MS = 5000, TITLE_MAX = 80 };

typedef struct {
    int dirty;          /* memory differs from the row (or there is no row yet) */
    size_t len, cap;    /* text length and allocation (replies grow by appends) */
    int64_t new_id;     /* id handed out by the sync in progress */
} MsgMeta;

/* One conversation as the recorder holds it. */
typedef struct {
    StoreSession sess;  /* sess.id 0 until the row exists */
    int sess_dirty, title_dirty, title_auto;
    int64_t leaf_in_db; /* the session's active_leaf as last written */
    StoreMessage *msgs; /* the active branch, root first */
    MsgMeta *meta;
    int n, cap;
} Conv;

struct History {
    Store *store;       /* NULL: memory only (no_history, or the file could not be opened) */
    char *path;         /* NULL with no_history */
    int can_write;      /* 0: read-only or damaged file: never write again */
    int degraded;       /* the last write failed: retry at the next commit point */
    int reopen;         /* the open failed on a lock: try opening again at commit points */
    int warn_pending;
    Err warning;

    Conv c;             /* the current conversation */
    Conv *owed;         /* earlier conversations not yet fully written (the database was
                         * unavailable when a new one started); written first by sync_db */
    int n_owed;

    int reply_open;
    size_t saved_reply_len;
    int ckpt_ms;
    int64_t last_ckpt;  /* monotonic ms */
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

static void set_str(char **dst, const char *src) {
    char *n = dup_or_empty(src);
    if (!n) return; /* out of memory: keep the old value rather than lose it */
    free(*dst);
    *dst = n;
}

static void warn(History *h, const char *fmt, const char *detail) {
    err_set(&h->warning, fmt, detail);
    h->warn_pending = 1;
}

/* "WHY; THEN": what went wrong, then what becomes of the conversation. */
static void warn_why(History *h, const char *why, const char *then) {
    err_set(&h->warning, "%s; %s", why, then);
    h->warn_pending = 1;
}

static void reset_conversation(History *h);

/* ---- opening ---------------------------------------------------------------------------- */

static int is_lock(int rc) { return rc == SQLITE_BUSY || rc == SQLITE_LOCKED; }

static void attach_store(History *h, Store *st) {
    h->store = st;
    h->can_write = !store_readonly(st);
    if (!h->can_write)
        warn(h, "history: %s; this conversation will not be saved", store_readonly_reason(st));
}

History *history_open(const char *path, bool no_history, Err *warnout) {
    if (warnout) warnout->msg[0] = 0;
    History *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->ckpt_ms = DEFAULT_CHECKPOINT_MS;
    /* The interval can be tuned from outside (the crash test of the real program uses it). */
    const char *env = getenv("BITNET_HISTORY_CHECKPOINT_MS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (!*end && v >= 0 && v <= 600000) h->ckpt_ms = (int)v;
    }
    reset_conversation(h);
    if (no_history) return h;
    h->path = path ? strdup(path) : store_default_path();
    Err e = {{0}};
    int rc = 0;
    /* With no --db, let the store resolve the default path itself: it also creates the missing
     * directories (0700) of a fresh account's $XDG_DATA_HOME. */
    Store *st = h->path ? store_open_rc(path, 0, &e, &rc) : NULL;
    if (!h->path) err_set(&e, "history: no home directory (set HOME or XDG_DATA_HOME, or use --db)");
    if (st) {
        attach_store(h, st);
    } else if (is_lock(rc)) {
        h->reopen = 1; /* a passing lock: keep the path and try again when there is news */
        warn_why(h, e.msg, "the conversation is kept in memory and saved once the database is free");
    } else {
        warn_why(h, e.msg, "running without history: this conversation will not be saved");
    }
    if (warnout && h->warn_pending) {
        *warnout = h->warning;
        h->warn_pending = 0;
    }
    return h;
}

bool history_persistent(const History *h) {
    return h && h->store && h->can_write && !h->degraded;
}

const char *history_path(const History *h) { return h ? h->path : NULL; }
Store *history_store(History *h) { return h ? h->store : NULL; }

bool history_take_warning(History *h, Err *out) {
    if (!h || !h->warn_pending) return false;
    if (out) *out = h->warning;
    h->warn_pending = 0;
    return true;
}

void history_set_checkpoint_ms(History *h, int ms) { h->ckpt_ms = ms < 0 ? 0 : ms; }

/* ---- syncing memory to the database ------------------------------------------------------ */

/* "First line of the first user message", cut at a UTF-8 character boundary. */
static char *auto_title(const char *text) {
    while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r') text++;
    size_t n = strcspn(text, "\r\n");
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\t')) n--;
    int cut = n > TITLE_MAX;
    if (cut) {
        n = TITLE_MAX;
        while (n && ((unsigned char)text[n] & 0xC0) == 0x80) n--;
    }
    char *t = malloc(n + 4);
    if (!t) return NULL;
    memcpy(t, text, n);
    if (cut) memcpy(t + n, "\xe2\x80\xa6", 3), n += 3;
    t[n] = 0;
    return t;
}

static void conv_free(Conv *c) {
    for (int i = 0; i < c->n; i++) free(c->msgs[i].text);
    free(c->msgs);
    free(c->meta);
    store_session_clear(&c->sess);
    memset(c, 0, sizeof *c);
}

/* Whether the database lacks anything of c. */
static int conv_unsaved(const Conv *c) {
    if (c->sess.id == 0) return c->n > 0;
    if (c->sess_dirty || c->title_dirty) return 1;
    for (int i = 0; i < c->n; i++)
        if (!c->msgs[i].id || c->meta[i].dirty) return 1;
    return (c->n ? c->msgs[c->n - 1].id : 0) != c->leaf_in_db;
}

/* Writes what the database lacks of one conversation, in one transaction. On failure it is
 * rolled back whole and the ids it handed out are forgotten, so the next try starts clean. */
static int sync_conv(History *h, Conv *c, Err *e) {
    if (c->sess.id == 0 && c->n == 0) return 0; /* sessions are born with their first message */
    int created_session = 0;
    if (store_begin(h->store, e)) goto fail;
    if (c->sess.id == 0) {
        if (c->title_auto && (!c->sess.title || !c->sess.title[0])) {
            for (int i = 0; i < c->n; i++)
                if (!strcmp(c->msgs[i].role, "user")) {
                    char *t = auto_title(c->msgs[i].text);
                    if (t) free(c->sess.title), c->sess.title = t;
                    break;
                }
        }
        int64_t id = store_session_create(h->store, &c->sess, e);
        if (id < 0) goto fail_tx;
        c->sess.id = id;
        created_session = 1;
    } else {
        if (c->sess_dirty && store_session_update_settings(h->store, &c->sess, e)) goto fail_tx;
        if (c->title_dirty && store_session_rename(h->store, c->sess.id, c->sess.title, e))
            goto fail_tx;
    }
    int64_t leaf = 0;
    for (int i = 0; i < c->n; i++) {
        StoreMessage *m = &c->msgs[i];
        MsgMeta *mm = &c->meta[i];
        mm->new_id = 0;
        if (m->id && !mm->dirty) {
            leaf = m->id;
            continue;
        }
        m->session_id = c->sess.id;
        if (i > 0) m->parent_id = c->msgs[i - 1].id ? c->msgs[i - 1].id : c->meta[i - 1].new_id;
        else m->parent_id = 0;
        if (m->id) {
            if (store_message_update(h->store, m, e)) goto fail_tx;
            leaf = m->id;
        } else {
            int64_t id = store_message_add(h->store, m, e);
            if (id < 0) goto fail_tx;
            mm->new_id = leaf = id;
        }
    }
    if (leaf != c->leaf_in_db && store_set_active_leaf(h->store, c->sess.id, leaf, e))
        goto fail_tx;
    if (store_commit(h->store, e)) goto fail;
    /* Committed: the new ids are real now. */
    for (int i = 0; i < c->n; i++) {
        if (c->meta[i].new_id) c->msgs[i].id = c->meta[i].new_id;
        c->meta[i].new_id = 0;
        c->meta[i].dirty = 0;
    }
    c->leaf_in_db = leaf;
    c->sess_dirty = c->title_dirty = 0;
    return 0;

fail_tx:
    store_rollback(h->store);
fail:
    if (created_session) c->sess.id = 0;
    for (int i = 0; i < c->n; i++) {
        c->meta[i].new_id = 0;
        if (!c->msgs[i].id) c->msgs[i].parent_id = 0;
    }
    return -1;
}

/* Brings the database up to date: first any earlier conversations still owed, then the
 * current one. checkpoint: a timed write while a reply streams; skipped while degraded so a
 * locked database never stalls the stream. Returns 0 when the database has everything (or
 * there is none to write to). */
static int sync_db(History *h, int checkpoint) {
    if (!h->path) return 0;
    if ((h->degraded || h->reopen) && checkpoint) return -1;
    if (!h->store && h->reopen) {
        Err e = {{0}};
        int rc = 0;
        Store *st = store_open_rc(h->path, 0, &e, &rc);
        if (!st) {
            if (!is_lock(rc)) {
                h->reopen = 0;
                warn_why(h, e.msg, "this conversation will not be saved");
            }
            return -1;
        }
        h->reopen = 0;
        h->degraded = 1; /* so that success below announces that saving works again */
        attach_store(h, st);
    }
    if (!h->store || !h->can_write) return -1;
    if (h->degraded) store_set_busy_timeout(h->store, RETRY_BUSY_MS);

    Err e = {{0}};
    int ok = 1;
    while (ok && h->n_owed > 0) {
        if (sync_conv(h, &h->owed[0], &e)) {
            ok = 0;
        } else {
            conv_free(&h->owed[0]);
            memmove(h->owed, h->owed + 1, (size_t)(h->n_owed - 1) * sizeof *h->owed);
            h->n_owed--;
        }
    }
    if (ok && sync_conv(h, &h->c, &e)) ok = 0;
    if (ok) {
        if (h->c.n && !strcmp(h->c.msgs[h->c.n - 1].role, "assistant"))
            h->saved_reply_len = h->c.meta[h->c.n - 1].len;
        if (h->degraded) {
            h->degraded = 0;
            store_set_busy_timeout(h->store, NORMAL_BUSY_MS);
            warn(h, "history: saving to %s again; the conversation so far is saved", h->path);
        }
        return 0;
    }
    int rc = store_errcode(h->store);
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB || rc == SQLITE_READONLY) {
        /* Never write into a damaged or read-only file again during this run. */
        h->can_write = 0;
        warn_why(h, e.msg, "this conversation continues in memory but will not be saved");
    } else if (!h->degraded) {
        h->degraded = 1;
        warn_why(h, e.msg, "the conversation is kept in memory and saved when possible");
    }
    return -1;
}

/* ---- the conversation in memory ---------------------------------------------------------- */

static int grow(History *h) {
    if (h->c.n < h->c.cap) return 0;
    int cap = h->c.cap ? h->c.cap * 2 : 16;
    StoreMessage *m = realloc(h->c.msgs, (size_t)cap * sizeof *m);
    if (!m) return -1;
    h->c.msgs = m;
    MsgMeta *mm = realloc(h->c.meta, (size_t)cap * sizeof *mm);
    if (!mm) return -1;
    h->c.meta = mm;
    h->c.cap = cap;
    return 0;
}

static StoreMessage *push(History *h, const char *role, const char *text) {
    if (grow(h)) return NULL;
    size_t len = text ? strlen(text) : 0;
    char *t = malloc(len + 1);
    if (!t) return NULL;
    if (len) memcpy(t, text, len);
    t[len] = 0;
    StoreMessage *m = &h->c.msgs[h->c.n];
    memset(m, 0, sizeof *m);
    snprintf(m->role, sizeof m->role, "%s", role);
    m->text = t;
    m->created_at = store_now_ms();
    h->c.meta[h->c.n] = (MsgMeta){.dirty = 1, .len = len, .cap = len + 1};
    h->c.n++;
    return m;
}

static void drop_from(History *h, int keep) {
    for (int i = keep; i < h->c.n; i++) free(h->c.msgs[i].text);
    h->c.n = keep;
}

static void apply_stats(StoreMessage *m, const EngineStats *st) {
    if (!st) return;
    m->prompt_tokens = st->prompt_tokens;
    m->reply_tokens = st->gen_tokens;
    m->ttft_ms = st->ttft_ms;
    m->tok_per_s = st->gen_tok_s;
    m->prompt_tok_s = st->prompt_tok_s;
}

/* An open reply is finished as interrupted (the program stopped it, not the model). */
static void finish_open_reply(History *h) {
    if (!h->reply_open) return;
    StoreMessage *m = &h->c.msgs[h->c.n - 1];
    m->interrupted = 1;
    h->c.meta[h->c.n - 1].dirty = 1;
    h->reply_open = 0;
}

/* Starts a fresh current conversation. The old one is kept on the owed list when the
 * database lacks some of it and may still take it (a lock or a full disk may pass). */
static void reset_conversation(History *h) {
    int retry_possible = h->path && (h->reopen || (h->store && h->can_write));
    if (retry_possible && conv_unsaved(&h->c)) {
        Conv *o = realloc(h->owed, (size_t)(h->n_owed + 1) * sizeof *o);
        if (o) {
            h->owed = o;
            h->owed[h->n_owed++] = h->c;
            memset(&h->c, 0, sizeof h->c);
        }
    }
    conv_free(&h->c);
    /* Strings are never NULL in the session ("" until set); on OOM strdup fails and they stay
     * NULL, which the store binds as "" too. */
    h->c.sess.title = strdup("");
    h->c.sess.model_name = strdup("");
    h->c.sess.model_path = strdup("");
    h->c.sess.system_prompt = strdup("");
    h->c.sess.sampling = (SamplerParams){0};
    h->c.title_auto = 1;
    h->reply_open = 0;
}

static int fill_session(History *h, const HistorySessionInfo *in, int keep_title) {
    if (!keep_title || in->title) {
        set_str(&h->c.sess.title, in->title);
        if (in->title) h->c.title_auto = 0, h->c.title_dirty = 1;
    }
    set_str(&h->c.sess.model_name, in->model_name);
    set_str(&h->c.sess.model_path, in->model_path);
    set_str(&h->c.sess.system_prompt, in->system_prompt);
    h->c.sess.sampling = in->sampling;
    h->c.sess_dirty = 1;
    return h->c.sess.title && h->c.sess.model_name && h->c.sess.model_path && h->c.sess.system_prompt ? 0
                                                                                              : -1;
}

bool history_flush_final(History *h, Err *lost) {
    if (lost) lost->msg[0] = 0;
    if (!h || !h->path) return false;
    const bool promised = h->reopen || h->degraded; /* "saved once the database is free" */
    finish_open_reply(h);
    sync_db(h, 0);
    if (!promised || (!conv_unsaved(&h->c) && h->n_owed == 0)) return false;
    if (!lost) return true;
    if (h->c.sess.id)
        /* its start is in the database (the user message is committed before generation) */
        err_set(lost, "history: %s stayed locked or unwritable to the end; session %lld holds this "
                      "conversation only up to its last successful save, the rest was not saved",
                h->path, (long long)h->c.sess.id);
    else
        err_set(lost, "history: %s stayed locked or unwritable to the end; this conversation "
                      "was not saved", h->path);
    return true;
}

void history_close(History *h) {
    if (!h) return;
    finish_open_reply(h);
    sync_db(h, 0);
    conv_free(&h->c);
    for (int i = 0; i < h->n_owed; i++) conv_free(&h->owed[i]);
    free(h->owed);
    store_close(h->store);
    free(h->path);
    free(h);
}

int history_begin_session(History *h, const HistorySessionInfo *info) {
    finish_open_reply(h);
    sync_db(h, 0);
    reset_conversation(h);
    HistorySessionInfo none = {0};
    if (fill_session(h, info ? info : &none, 0)) return -1;
    h->c.title_dirty = 0; /* the title goes in with the row itself */
    return 0;
}

int history_resume(History *h, int64_t session_id, Err *err) {
    if (!h->store) return err_set(err, "history: no database to resume from");
    StoreSession ss;
    if (store_session_get(h->store, session_id, &ss, err)) return -1;
    StoreMessage *arr;
    int n;
    if (store_message_branch(h->store, session_id, &arr, &n, err)) {
        store_session_clear(&ss);
        return -1;
    }
    finish_open_reply(h);
    sync_db(h, 0);
    reset_conversation(h);
    store_session_clear(&h->c.sess);
    h->c.sess = ss;
    h->c.title_auto = 0;
    for (int i = 0; i < n; i++) {
        if (grow(h)) { /* out of memory: keep what fits */
            for (int j = i; j < n; j++) free(arr[j].text);
            break;
        }
        h->c.msgs[h->c.n] = arr[i];
        size_t len = strlen(arr[i].text);
        h->c.meta[h->c.n] = (MsgMeta){.dirty = 0, .len = len, .cap = len + 1};
        h->c.n++;
    }
    free(arr);
    h->c.leaf_in_db = ss.active_leaf;
    return 0;
}

int history_update_session(History *h, const HistorySessionInfo *info) {
    if (!info) return -1;
    int r = fill_session(h, info, 1);
    if (h->c.sess.id) sync_db(h, 0);
    return r;
}

int history_rename(History *h, const char *title) {
    set_str(&h->c.sess.title, title);
    h->c.title_auto = 0;
    h->c.title_dirty = 1;
    if (h->c.sess.id) sync_db(h, 0);
    return 0;
}

int history_add_user(History *h, const char *text) {
    if (h->reply_open) return -1;
    if (!push(h, "user", text)) return -1;
    sync_db(h, 0);
    return 0;
}

int history_reply_begin(History *h, const HistoryReplyInfo *info) {
    if (h->reply_open) return -1;
    StoreMessage *m = push(h, "assistant", "");
    if (!m) return -1;
    /* Until the reply ends, the row says "interrupted": a crash leaves it marked so. */
    m->interrupted = 1;
    if (info) {
        snprintf(m->model_name, sizeof m->model_name, "%s", info->model_name ? info->model_name : "");
        snprintf(m->backend, sizeof m->backend, "%s", info->backend ? info->backend : "");
        m->sampling = info->sampling;
    }
    h->reply_open = 1;
    h->saved_reply_len = 0;
    sync_db(h, 0);
    h->last_ckpt = mono_ms();
    return 0;
}

int history_reply_append(History *h, const char *text, size_t len) {
    if (!h->reply_open) return -1;
    StoreMessage *m = &h->c.msgs[h->c.n - 1];
    MsgMeta *mm = &h->c.meta[h->c.n - 1];
    /* A model may emit byte 0 like any other byte. Texts are C strings from here on (store,
     * exports, the next prompt), so a NUL is kept as U+FFFD: otherwise the reply would be
     * stored cut at it and resumed cut. */
    size_t nuls = 0;
    for (size_t i = 0; i < len; i++) nuls += text[i] == 0;
    const size_t add = len + 2 * nuls;
    if (mm->len + add + 1 > mm->cap) {
        size_t cap = mm->cap * 2;
        if (cap < mm->len + add + 1) cap = mm->len + add + 1;
        if (cap < 256) cap = 256;
        char *t = realloc(m->text, cap);
        if (!t) return -1;
        m->text = t;
        mm->cap = cap;
    }
    if (nuls == 0) {
        if (len) memcpy(m->text + mm->len, text, len);
    } else {
        char *w = m->text + mm->len;
        for (size_t i = 0; i < len; i++) {
            if (text[i]) *w++ = text[i];
            else memcpy(w, "\xEF\xBF\xBD", 3), w += 3;
        }
    }
    mm->len += add;
    m->text[mm->len] = 0;
    mm->dirty = 1;
    int64_t now = mono_ms();
    if (now - h->last_ckpt >= h->ckpt_ms) {
        sync_db(h, 1);
        h->last_ckpt = now;
    }
    return 0;
}

int history_reply_stats(History *h, const EngineStats *stats) {
    if (!h->reply_open) return -1;
    apply_stats(&h->c.msgs[h->c.n - 1], stats);
    h->c.meta[h->c.n - 1].dirty = 1;
    return 0;
}

int history_reply_error(History *h, const char *msg) {
    if (!h->reply_open) return -1;
    StoreMessage *m = &h->c.msgs[h->c.n - 1];
    snprintf(m->error, sizeof m->error, "%s", msg ? msg : "");
    h->c.meta[h->c.n - 1].dirty = 1;
    return 0;
}

int history_reply_end(History *h, const EngineStats *stats, StopReason reason, bool interrupted) {
    if (!h->reply_open) return -1;
    StoreMessage *m = &h->c.msgs[h->c.n - 1];
    apply_stats(m, stats);
    snprintf(m->stop_reason, sizeof m->stop_reason, "%s", stop_reason_name(reason));
    m->interrupted = interrupted ? 1 : 0;
    h->c.meta[h->c.n - 1].dirty = 1;
    h->reply_open = 0;
    sync_db(h, 0);
    return 0;
}

int history_truncate(History *h, int n_keep) {
    if (h->reply_open || n_keep < 0 || n_keep > h->c.n) return -1;
    drop_from(h, n_keep);
    return 0;
}

int history_regenerate(History *h) {
    if (h->reply_open || h->c.n == 0 || strcmp(h->c.msgs[h->c.n - 1].role, "assistant")) return -1;
    return history_truncate(h, h->c.n - 1);
}

const StoreMessage *history_messages(const History *h, int *n) {
    *n = h->c.n;
    return h->c.msgs;
}

const StoreSession *history_session(const History *h) { return &h->c.sess; }

size_t history_saved_reply_len(const History *h) { return h->saved_reply_len; }
