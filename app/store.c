/* The SQLite conversation store: opening (paths, permissions, WAL, busy timeout), the versioned
 * schema and its migrations, and the prepared statements behind store.h.
 *
 * Schema history (PRAGMA user_version):
 *   v1  sessions(id, title, created_at, updated_at, model_name, model_path, system_prompt,
 *       sampling JSON) and a linear messages list (no parent, no per-reply model/backend).
 *   v2  messages.parent_id (branches; backfilled as "previous message of the session"),
 *       per-reply backend / model_name / sampling / prompt_tok_s, sessions.active_leaf
 *       (backfilled as the newest message).
 *   v3  messages_fts: an FTS5 index over messages.text, kept in sync by triggers.
 *   v4  messages.error: why a failed reply failed (older failed replies keep '').
 * Each step runs in its own BEGIN IMMEDIATE transaction and re-reads the version inside it, so
 * two programs opening an old file at once apply each step exactly once. */
#include "app/store.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/paths.h"
#include "app/store_internal.h"

/* ---- statements ------------------------------------------------------------------------- */

/* The columns a message or session query selects, each listed once with the name that reads it
 * (MC_* / SC_*): the enum and the SQL come from the same list, so they cannot drift apart. */
#define MSG_COLUMNS(X)                                                                        \
    X(MC_ID, "m.id, ")                                                                        \
    X(MC_SESSION_ID, "m.session_id, ")                                                        \
    X(MC_PARENT_ID, "coalesce(m.parent_id, 0), ")                                             \
    X(MC_ROLE, "m.role, ")                                                                    \
    X(MC_TEXT, "m.text, ")                                                                    \
    X(MC_CREATED_AT, "m.created_at, ")                                                        \
    X(MC_PROMPT_TOKENS, "m.prompt_tokens, ")                                                  \
    X(MC_REPLY_TOKENS, "m.reply_tokens, ")                                                    \
    X(MC_TTFT_MS, "m.ttft_ms, ")                                                              \
    X(MC_TOK_PER_S, "m.tok_per_s, ")                                                          \
    X(MC_STOP_REASON, "m.stop_reason, ")                                                      \
    X(MC_INTERRUPTED, "m.interrupted, ")                                                      \
    X(MC_BACKEND, "m.backend, ")                                                              \
    X(MC_MODEL_NAME, "m.model_name, ")                                                        \
    X(MC_SAMPLING, "m.sampling, ")                                                            \
    X(MC_PROMPT_TOK_S, "m.prompt_tok_s, ")                                                    \
    X(MC_ERROR, "m.error") /* the last one without a comma */
#define SESSION_COLUMNS(X)                                                                    \
    X(SC_ID, "s.id, ")                                                                        \
    X(SC_TITLE, "s.title, ")                                                                  \
    X(SC_CREATED_AT, "s.created_at, ")                                                        \
    X(SC_UPDATED_AT, "s.updated_at, ")                                                        \
    X(SC_MODEL_NAME, "s.model_name, ")                                                        \
    X(SC_MODEL_PATH, "s.model_path, ")                                                        \
    X(SC_SYSTEM_PROMPT, "s.system_prompt, ")                                                  \
    X(SC_SAMPLING, "s.sampling, ")                                                            \
    X(SC_ACTIVE_LEAF, "coalesce(s.active_leaf, 0), ")                                         \
    X(SC_MESSAGE_COUNT, "(SELECT count(*) FROM messages c WHERE c.session_id = s.id)")
#define COLUMN_ENUM(name, sql) name,
#define COLUMN_SQL(name, sql) sql
enum { MSG_COLUMNS(COLUMN_ENUM) };
enum { SESSION_COLUMNS(COLUMN_ENUM) };
#define MSG_COLS MSG_COLUMNS(COLUMN_SQL)
#define SESSION_COLS SESSION_COLUMNS(COLUMN_SQL)

/* Parameters are named (":title") and bound by name, see Binder below. */

enum {
    ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
    ST_SESSION_INSERT, ST_SESSION_GET, ST_SESSION_LIST, ST_SESSION_RENAME, ST_SESSION_SETTINGS,
    ST_SESSION_DELETE_MESSAGES, ST_SESSION_DELETE, ST_SESSION_TOUCH, ST_SET_LEAF,
    ST_MSG_INSERT, ST_MSG_UPDATE, ST_MSG_GET, ST_MSG_ALL, ST_MSG_SIBLINGS, ST_MSG_NEWEST_CHILD,
    ST_BRANCH, ST_BRANCH_IDS, ST_SEARCH, ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SESSION_INSERT] =
        "INSERT INTO sessions(title, created_at, updated_at, model_name, model_path, "
        "system_prompt, sampling, active_leaf) VALUES(:title, :created_at, :updated_at, "
        ":model_name, :model_path, :system_prompt, :sampling, NULL)",
    [ST_SESSION_GET] = "SELECT " SESSION_COLS " FROM sessions s WHERE s.id = :id",
    [ST_SESSION_LIST] = "SELECT " SESSION_COLS " FROM sessions s ORDER BY s.updated_at DESC, s.id DESC",
    [ST_SESSION_RENAME] = "UPDATE sessions SET title = :title, updated_at = :now WHERE id = :id",
    [ST_SESSION_SETTINGS] =
        "UPDATE sessions SET model_name = :model_name, model_path = :model_path, "
        "system_prompt = :system_prompt, sampling = :sampling, updated_at = :now WHERE id = :id",
    [ST_SESSION_DELETE_MESSAGES] = "DELETE FROM messages WHERE session_id = :id",
    [ST_SESSION_DELETE] = "DELETE FROM sessions WHERE id = :id",
    [ST_SESSION_TOUCH] = "UPDATE sessions SET updated_at = max(updated_at, :now) WHERE id = :id",
    [ST_SET_LEAF] =
        "UPDATE sessions SET active_leaf = :leaf, updated_at = max(updated_at, :now) "
        "WHERE id = :id",
    /* The message fields that INSERT and UPDATE share have the same names: one function binds
     * them for both (bind_message_fields). */
    [ST_MSG_INSERT] =
        "INSERT INTO messages(session_id, parent_id, role, text, created_at, prompt_tokens, "
        "reply_tokens, ttft_ms, tok_per_s, stop_reason, interrupted, backend, model_name, "
        "sampling, prompt_tok_s, error) VALUES(:session_id, :parent_id, :role, :text, :created_at, "
        ":prompt_tokens, :reply_tokens, :ttft_ms, :tok_per_s, :stop_reason, :interrupted, "
        ":backend, :model_name, :sampling, :prompt_tok_s, :error)",
    [ST_MSG_UPDATE] =
        "UPDATE messages SET text = :text, prompt_tokens = :prompt_tokens, "
        "reply_tokens = :reply_tokens, ttft_ms = :ttft_ms, tok_per_s = :tok_per_s, "
        "stop_reason = :stop_reason, interrupted = :interrupted, backend = :backend, "
        "model_name = :model_name, sampling = :sampling, prompt_tok_s = :prompt_tok_s, "
        "error = :error WHERE id = :id",
    [ST_MSG_GET] = "SELECT " MSG_COLS " FROM messages m WHERE m.id = :id",
    [ST_MSG_ALL] = "SELECT " MSG_COLS " FROM messages m WHERE m.session_id = :id ORDER BY m.id",
    [ST_MSG_SIBLINGS] =
        "SELECT " MSG_COLS " FROM messages m, messages me WHERE me.id = :id "
        "AND m.session_id = me.session_id AND m.parent_id IS me.parent_id ORDER BY m.id",
    [ST_MSG_NEWEST_CHILD] = "SELECT max(id) FROM messages WHERE parent_id = :id",
    /* Walk from the active leaf up to the root; depth orders the result root first. */
    [ST_BRANCH] =
        "WITH RECURSIVE b(id, depth) AS ("
        "  SELECT active_leaf, 0 FROM sessions WHERE id = :id AND active_leaf IS NOT NULL"
        "  UNION ALL SELECT p.parent_id, b.depth + 1 FROM messages p JOIN b ON p.id = b.id"
        "  WHERE p.parent_id IS NOT NULL)"
        " SELECT " MSG_COLS " FROM b JOIN messages m ON m.id = b.id ORDER BY b.depth DESC",
    [ST_BRANCH_IDS] =
        "WITH RECURSIVE b(id) AS ("
        "  SELECT active_leaf FROM sessions WHERE id = :id AND active_leaf IS NOT NULL"
        "  UNION ALL SELECT p.parent_id FROM messages p JOIN b ON p.id = b.id"
        "  WHERE p.parent_id IS NOT NULL) SELECT id FROM b",
    [ST_SEARCH] =
        "SELECT m.session_id, m.id, s.title, "
        "snippet(messages_fts, 0, char(1), char(2), '\xe2\x80\xa6', 16) "
        "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
        "JOIN sessions s ON s.id = m.session_id "
        "WHERE messages_fts MATCH :query ORDER BY rank, m.id DESC LIMIT :max",
};

struct Store {
    sqlite3 *db;
    char *path;
    int readonly;
    char ro_reason[700];           /* why it is read-only, naming the file or directory */
    int in_tx;                     /* an explicit store_begin is open */
    sqlite3_stmt *st[ST_COUNT];
};

/* ---- migrations ------------------------------------------------------------------------- */

static const char *const migrations[STORE_SCHEMA_VERSION] = {
    /* -> v1 */
    "CREATE TABLE sessions("
    "  id INTEGER PRIMARY KEY,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"            /* unix ms */
    "  updated_at INTEGER NOT NULL,"
    "  model_name TEXT NOT NULL DEFAULT '',"
    "  model_path TEXT NOT NULL DEFAULT '',"
    "  system_prompt TEXT NOT NULL DEFAULT '',"
    "  sampling TEXT NOT NULL DEFAULT '{}');"   /* JSON: see sampling_to_json */
    "CREATE TABLE messages("
    "  id INTEGER PRIMARY KEY,"
    "  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
    "  role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),"
    "  text TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  prompt_tokens INTEGER NOT NULL DEFAULT 0,"
    "  reply_tokens INTEGER NOT NULL DEFAULT 0,"
    "  ttft_ms REAL NOT NULL DEFAULT 0,"
    "  tok_per_s REAL NOT NULL DEFAULT 0,"
    "  stop_reason TEXT NOT NULL DEFAULT '',"
    "  interrupted INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX messages_by_session ON messages(session_id, id);"
    "CREATE INDEX sessions_by_update ON sessions(updated_at);",
    /* -> v2: branches and per-reply provenance. parent_id has no ON DELETE action: messages
     * go only with their session (one statement), never one by one, and a cascade along a
     * long chain would recurse once per message. */
    "ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id);"
    "ALTER TABLE messages ADD COLUMN backend TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE messages ADD COLUMN model_name TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE messages ADD COLUMN sampling TEXT NOT NULL DEFAULT '{}';"
    "ALTER TABLE messages ADD COLUMN prompt_tok_s REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN active_leaf INTEGER;"
    "UPDATE messages SET parent_id = (SELECT max(p.id) FROM messages p"
    "  WHERE p.session_id = messages.session_id AND p.id < messages.id);"
    "UPDATE messages SET model_name = (SELECT s.model_name FROM sessions s"
    "  WHERE s.id = messages.session_id), sampling = (SELECT s.sampling FROM sessions s"
    "  WHERE s.id = messages.session_id) WHERE role = 'assistant';"
    "UPDATE sessions SET active_leaf = (SELECT max(m.id) FROM messages m"
    "  WHERE m.session_id = sessions.id);"
    "CREATE INDEX messages_by_parent ON messages(parent_id);",
    /* -> v3: full-text search. External content: the text lives once, in messages. */
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content = 'messages',"
    "  content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2');"
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN"
    "  INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN"
    "  INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    "  END;"
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN"
    "  INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    "  INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END;"
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');",
    /* -> v4: the reason a reply failed, shown on resume, --show and export. */
    "ALTER TABLE messages ADD COLUMN error TEXT NOT NULL DEFAULT '';",
};

/* ---- helpers ---------------------------------------------------------------------------- */

int64_t store_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One line for the user: what went wrong in words, the SQLite message, the file. */
static int db_fail(const Store *s, sqlite3 *db, Err *err, const char *what) {
    int rc = sqlite3_extended_errcode(db) & 0xff;
    const char *path = s && s->path ? s->path : "";
    const char *hint = "";
    switch (rc) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: hint = "the database is locked by another program; "; break;
    case SQLITE_READONLY: hint = "the database is read-only; "; break;
    case SQLITE_FULL: hint = "the disk is full; "; break;
    case SQLITE_CORRUPT: hint = "the database is damaged; "; break;
    case SQLITE_NOTADB: hint = "the file is not a database (or is damaged); "; break;
    case SQLITE_IOERR:
        /* SQLite reports a full disk met outside a plain write (at open: the -shm, the -wal
         * header) as an I/O error; the system's errno tells what it was. */
        switch (sqlite3_system_errno(db)) {
        case ENOSPC: hint = "the disk is full; "; break;
        case EDQUOT: hint = "the disk quota is exceeded; "; break;
        case EFBIG: hint = "the file size limit is reached; "; break;
        default: hint = "input/output error; "; break;
        }
        break;
    case SQLITE_CANTOPEN: hint = "cannot open the file; "; break;
    default: break;
    }
    if (rc == SQLITE_NOTADB) /* SQLite's own text ("file is not a database") says it again */
        return err_set(err, "history %s: %s: not a database (not SQLite, or damaged)", what, path);
    return err_set(err, "history %s: %s%s (%s)", what, hint, sqlite3_errmsg(db), path);
}

int store_errcode(const Store *s) { return s && s->db ? sqlite3_extended_errcode(s->db) & 0xff : 0; }

static char *dup_col(sqlite3_stmt *st, int col) {
    const unsigned char *t = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    char *r = malloc((size_t)n + 1);
    if (!r) return NULL;
    if (n) memcpy(r, t, (size_t)n);
    r[n] = 0;
    return r;
}

static void copy_col(sqlite3_stmt *st, int col, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

/* 0.7f is 0.69999998...: the shortest decimal that reads back as the same float is the value
 * the user typed, so the JSON (and the export) hold 0.7 as a double, not the float's expansion.
 * Nine significant digits always read back as the same float. */
double store_float_decimal(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static void put_float(json_t *o, const SamplerParams *sp, unsigned bit, const char *key, float v) {
    if ((sp->set & bit) && isfinite(v))
        json_object_set_new(o, key, json_real(store_float_decimal(v)));
}

/* Sampling settings as a small JSON object holding the settings whose bit is set; the keys
 * present set the bits when it is read back. */
char *store_sampling_to_json(const SamplerParams *sp) {
    json_t *o = json_object();
    if (!o) return NULL;
    put_float(o, sp, SAMPLER_SET_TEMPERATURE, "temperature", sp->temperature);
    put_float(o, sp, SAMPLER_SET_TOP_P, "top_p", sp->top_p);
    put_float(o, sp, SAMPLER_SET_MIN_P, "min_p", sp->min_p);
    put_float(o, sp, SAMPLER_SET_REPEAT_PENALTY, "repeat_penalty", sp->repeat_penalty);
    if (sp->set & SAMPLER_SET_TOP_K) json_object_set_new(o, "top_k", json_integer(sp->top_k));
    if (sp->set & SAMPLER_SET_MAX_TOKENS)
        json_object_set_new(o, "max_tokens", json_integer(sp->max_tokens));
    if (sp->set & SAMPLER_SET_SEED)
        json_object_set_new(o, "seed", json_integer((json_int_t)(sp->seed & INT64_MAX)));
    char *r = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(o);
    return r;
}

/* A number setting; one beyond a float's range is damage, not a setting. */
static void get_float(const json_t *o, const char *key, unsigned bit, float *dst, unsigned *set) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v) || !(fabs(json_number_value(v)) <= FLT_MAX)) return;
    *dst = (float)json_number_value(v);
    *set |= bit;
}

/* An integer setting in [0, max]; a negative one (older programs wrote -1 for "unset") is
 * not set. */
static bool get_count(const json_t *o, const char *key, json_int_t max, json_int_t *out) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return false;
    *out = json_integer_value(v);
    return true;
}

void store_sampling_from_json(const char *text, SamplerParams *sp) {
    memset(sp, 0, sizeof *sp);
    if (!text) return;
    json_t *o = json_loads(text, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }
    get_float(o, "temperature", SAMPLER_SET_TEMPERATURE, &sp->temperature, &sp->set);
    get_float(o, "top_p", SAMPLER_SET_TOP_P, &sp->top_p, &sp->set);
    get_float(o, "min_p", SAMPLER_SET_MIN_P, &sp->min_p, &sp->set);
    get_float(o, "repeat_penalty", SAMPLER_SET_REPEAT_PENALTY, &sp->repeat_penalty, &sp->set);
    json_int_t n;
    if (get_count(o, "top_k", INT_MAX, &n)) sp->top_k = (int)n, sp->set |= SAMPLER_SET_TOP_K;
    if (get_count(o, "max_tokens", INT_MAX, &n))
        sp->max_tokens = (int)n, sp->set |= SAMPLER_SET_MAX_TOKENS;
    if (get_count(o, "seed", INT64_MAX, &n)) sp->seed = (uint64_t)n, sp->set |= SAMPLER_SET_SEED;
    json_decref(o);
}

/* ---- binding by name ---------------------------------------------------------------------
 * fossil's db_bind_* by name: a statement's parameters are bound as ":title", never by a
 * position that a reordered column list would shift. The first failure is kept: out of memory
 * (the sampling JSON), or a name the statement lacks, a programming error that fails the call
 * with a message naming the parameter rather than storing NULL. */

typedef struct {
    sqlite3_stmt *st;
    int rc;             /* SQLITE_OK until a bind fails */
    const char *failed; /* the parameter of the first failure */
} Binder;

static void bound(Binder *b, const char *name, int rc) {
    if (rc != SQLITE_OK && b->rc == SQLITE_OK) b->rc = rc, b->failed = name;
}

static int param(const Binder *b, const char *name) {
    return sqlite3_bind_parameter_index(b->st, name);
}

static void bind_int64(Binder *b, const char *name, int64_t v) {
    bound(b, name, sqlite3_bind_int64(b->st, param(b, name), v));
}

static void bind_int(Binder *b, const char *name, int v) {
    bound(b, name, sqlite3_bind_int(b->st, param(b, name), v));
}

/* A figure; a non-finite one (a division by a zero time) is stored as 0. */
static void bind_figure(Binder *b, const char *name, double v) {
    bound(b, name, sqlite3_bind_double(b->st, param(b, name), isfinite(v) ? v : 0));
}

static void bind_text(Binder *b, const char *name, const char *t) {
    bound(b, name, sqlite3_bind_text(b->st, param(b, name), t ? t : "", -1, SQLITE_TRANSIENT));
}

/* A row id, NULL when 0 (no parent, no active leaf). */
static void bind_id(Binder *b, const char *name, int64_t id) {
    int i = param(b, name);
    bound(b, name, id > 0 ? sqlite3_bind_int64(b->st, i, id) : sqlite3_bind_null(b->st, i));
}

static void bind_sampling(Binder *b, const char *name, const SamplerParams *sp) {
    char *j = store_sampling_to_json(sp);
    bound(b, name,
          j ? sqlite3_bind_text(b->st, param(b, name), j, (int)strlen(j), free) : SQLITE_NOMEM);
}

static void stmt_done(sqlite3_stmt *st);

/* 0 when every bind took; else resets the statement and fills err. */
static int bind_check(Binder *b, Err *err, const char *what) {
    if (b->rc == SQLITE_OK) return 0;
    stmt_done(b->st);
    if (b->rc == SQLITE_NOMEM) return err_set(err, "out of memory");
    return err_set(err, "history %s: binding %s: %s", what, b->failed, sqlite3_errstr(b->rc));
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
static int step_done(sqlite3_stmt *st) {
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void stmt_done(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Implicit transactions: a call made outside store_begin runs in its own. */
static int tx_open(Store *s, int *own, Err *err) {
    *own = 0;
    if (s->in_tx) return 0;
    if (step_done(s->st[ST_BEGIN])) return db_fail(s, s->db, err, "begin");
    *own = 1;
    return 0;
}

static int tx_close(Store *s, int own, int ok, Err *err) {
    if (!own) return ok ? 0 : -1;
    if (ok) {
        if (step_done(s->st[ST_COMMIT]) == 0) return 0;
        db_fail(s, s->db, err, "commit");
    }
    step_done(s->st[ST_ROLLBACK]);
    return -1;
}

int store_begin(Store *s, Err *err) {
    if (s->in_tx) return err_set(err, "history: a transaction is already open");
    if (step_done(s->st[ST_BEGIN])) return db_fail(s, s->db, err, "begin");
    s->in_tx = 1;
    return 0;
}

int store_commit(Store *s, Err *err) {
    if (!s->in_tx) return err_set(err, "history: no transaction is open");
    if (step_done(s->st[ST_COMMIT])) {
        db_fail(s, s->db, err, "commit");
        step_done(s->st[ST_ROLLBACK]);
        s->in_tx = 0;
        return -1;
    }
    s->in_tx = 0;
    return 0;
}

void store_rollback(Store *s) {
    if (!s->in_tx) return;
    step_done(s->st[ST_ROLLBACK]);
    s->in_tx = 0;
}

/* ---- paths ------------------------------------------------------------------------------ */

char *store_default_path(void) {
    return app_data_file("history.db");
}

/* mkdir -p of the directory holding path; new directories are 0700 (private history). */
static int make_parent_dirs(const char *path, Err *err) {
    char *d = strdup(path);
    if (!d) return err_set(err, "out of memory");
    char *slash = strrchr(d, '/');
    if (!slash || slash == d) {
        free(d);
        return 0;
    }
    *slash = 0;
    for (char *p = d + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(d, 0700) != 0 && errno != EEXIST) {
                err_set(err, "history: cannot create directory %s: %s", d, strerror(errno));
                free(d);
                return -1;
            }
            *p = c;
            if (!c) break;
        }
    }
    free(d);
    return 0;
}

/* ---- open / close ----------------------------------------------------------------------- */

static int exec_sql(Store *s, const char *sql, Err *err, const char *what) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sqlite3_free(msg);
        return db_fail(s, s->db, err, what);
    }
    return 0;
}

static int read_version(Store *s, int *version, Err *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, s->db, err, "open");
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_fail(s, s->db, err, "open");
    }
    *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

/* A version-0 file with tables in it belongs to some other program: leave it alone. */
static int check_foreign_tables(Store *s, Err *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, s->db, err, "open");
    int rc = sqlite3_step(st), n = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) return db_fail(s, s->db, err, "open");
    if (n > 0)
        return err_set(err, "history: %s is an SQLite database of another program (it has "
                            "tables but no bitnet-chat schema version); it was left untouched",
                       s->path);
    return 0;
}

static int migrate(Store *s, Err *err) {
    for (;;) {
        if (exec_sql(s, "BEGIN IMMEDIATE", err, "migrate")) return -1;
        int v;
        if (read_version(s, &v, err)) goto fail;
        if (v == 0 && check_foreign_tables(s, err)) goto fail;
        if (v >= STORE_SCHEMA_VERSION) {
            exec_sql(s, "COMMIT", NULL, "migrate");
            return 0;
        }
        if (exec_sql(s, migrations[v], err, "migrate")) {
            err_prefix(err, "upgrading the schema from v%d to v%d", v, v + 1);
            goto fail;
        }
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (exec_sql(s, sql, err, "migrate")) goto fail;
        if (exec_sql(s, "COMMIT", err, "migrate")) goto fail;
        continue;
    fail:
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
}

/* Opens s->path read-only through a URI with immutable=1 (no locks, no WAL index). */
static int open_immutable(Store *s) {
    size_t n = strlen(s->path);
    char *uri = malloc(n * 3 + 32), *o = uri;
    if (!uri) return -1;
    o += sprintf(o, "file:");
    for (const unsigned char *p = (const unsigned char *)s->path; *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#' || *p < 0x20) o += sprintf(o, "%%%02X", *p);
        else *o++ = (char)*p;
    }
    strcpy(o, "?immutable=1");
    int rc = sqlite3_open_v2(uri, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    free(uri);
    if (!s->db) return -1;
    sqlite3_extended_result_codes(s->db, 1);
    s->readonly = 1;
    return rc == SQLITE_OK ? 0 : -1;
}

Store *store_open(const char *path, Err *err) { return store_open_rc(path, 0, err, NULL); }

Store *store_open_ex(const char *path, unsigned flags, Err *err) {
    return store_open_rc(path, flags, err, NULL);
}

Store *store_open_rc(const char *path, unsigned flags, Err *err, int *sqlite_rc) {
    if (sqlite_rc) *sqlite_rc = 0;
    Store *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, "out of memory");
        return NULL;
    }
    int nocreate = (flags & (STORE_OPEN_NOCREATE | STORE_OPEN_READONLY)) != 0;
    if (path) {
        s->path = strdup(path);
    } else {
        s->path = store_default_path();
        if (!s->path) {
            err_set(err, "history: no home directory (set HOME or XDG_DATA_HOME, or use --db)");
            goto fail;
        }
        if (!nocreate && make_parent_dirs(s->path, err)) goto fail;
    }
    if (!s->path) {
        err_set(err, "out of memory");
        goto fail;
    }
    struct stat sb;
    if (stat(s->path, &sb) != 0) {
        if (errno != ENOENT) {
            err_set(err, "history: %s: %s", s->path, strerror(errno));
            goto fail;
        }
        if (nocreate) {
            err_set(err, "history: no history database at %s yet", s->path);
            goto fail;
        }
        /* Created here, not by SQLite, so that it is private (0600) from the first byte; the
         * -wal and -shm files SQLite makes later copy these permissions. */
        int fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            err_set(err, "history: cannot create %s: %s", s->path, strerror(errno));
            goto fail;
        }
        if (fd >= 0) close(fd);
    } else if (S_ISDIR(sb.st_mode)) {
        err_set(err, "history: %s is a directory, not a database file", s->path);
        goto fail;
    } else if (!S_ISREG(sb.st_mode)) {
        /* SQLite would fail on it with "disk I/O error", after leaving a -journal file beside
         * it (in /dev for --db /dev/null). */
        err_set(err, "history: %s is not a regular file (a device, FIFO or socket), not a "
                     "database file", s->path);
        goto fail;
    }

    /* What we cannot write is opened as an immutable snapshot (no locks, no -wal/-shm files),
     * so that browsing never leaves side files behind: SQLite made them with the database's
     * mode, and a -shm of mode 0400 left by browsing a 0400 file kept the database read-only
     * after it was made writable again. Exact as long as no -wal holds data; one that does is
     * read through SQLite's normal read-only path below. */
    int immutable = 0;
    {
        char side[2][4200], dir[4200];
        snprintf(side[0], sizeof side[0], "%s-wal", s->path);
        snprintf(side[1], sizeof side[1], "%s-shm", s->path);
        snprintf(dir, sizeof dir, "%s", s->path);
        char *slash = strrchr(dir, '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == dir) dir[1] = 0;
        else *slash = 0;
        struct stat ws;
        const int wal_data = stat(side[0], &ws) == 0 && ws.st_size > 0;
        const int side_missing = access(side[0], F_OK) != 0 || access(side[1], F_OK) != 0;
        if (access(s->path, W_OK) != 0) {
            snprintf(s->ro_reason, sizeof s->ro_reason, "%s is read-only", s->path);
            immutable = !wal_data;
        } else if (access(side[0], F_OK) == 0 && access(side[0], W_OK) != 0) {
            snprintf(s->ro_reason, sizeof s->ro_reason, "%s is read-only (remove it, or make it "
                     "writable, to save history again)", side[0]);
            immutable = 1;
        } else if (access(side[1], F_OK) == 0 && access(side[1], W_OK) != 0) {
            snprintf(s->ro_reason, sizeof s->ro_reason, "%s is read-only (remove it, or make it "
                     "writable, to save history again)", side[1]);
            immutable = 1;
        } else if (side_missing && access(dir, W_OK) != 0) {
            snprintf(s->ro_reason, sizeof s->ro_reason, "the directory %s is read-only (SQLite "
                     "keeps its -wal and -shm files beside the database)", dir);
            immutable = !wal_data;
        }
    }
    int oflags = (flags & STORE_OPEN_READONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (immutable) {
        if (open_immutable(s)) {
            if (!s->db) {
                err_set(err, "out of memory");
                goto fail;
            }
            db_fail(s, s->db, err, "open");
            goto fail;
        }
    } else if (sqlite3_open_v2(s->path, &s->db, oflags, NULL) != SQLITE_OK) {
        if (!s->db) {
            err_set(err, "out of memory");
            goto fail;
        }
        db_fail(s, s->db, err, "open");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    if (!immutable) s->readonly = sqlite3_db_readonly(s->db, "main") == 1;
    if (s->readonly && !s->ro_reason[0])
        snprintf(s->ro_reason, sizeof s->ro_reason, "%s is read-only", s->path);

    /* The version is read before anything could write: a newer file is refused untouched. */
    int version;
    if (read_version(s, &version, err)) {
        /* A WAL file we may not write: SQLite cannot set up its shared-memory index beside it,
         * so even reading fails. Such a file can still be browsed as an immutable snapshot. */
        int rc = sqlite3_extended_errcode(s->db) & 0xff;
        if (!((rc == SQLITE_READONLY || rc == SQLITE_CANTOPEN) && access(s->path, W_OK) != 0))
            goto fail;
        sqlite3_close_v2(s->db);
        s->db = NULL;
        if (open_immutable(s) || read_version(s, &version, err)) goto fail;
    }
    if (version > STORE_SCHEMA_VERSION) {
        err_set(err, "history: %s has schema version %d, newer than this bitnet-chat knows (%d); "
                     "it was left untouched (upgrade bitnet-chat, or use --db for another file)",
                s->path, version, STORE_SCHEMA_VERSION);
        goto fail;
    }
    if (version < STORE_SCHEMA_VERSION && s->readonly) {
        err_set(err, "history: %s has schema version %d and needs upgrading to %d, but it is "
                     "read-only",
                s->path, version, STORE_SCHEMA_VERSION);
        goto fail;
    }
    if (version == 0 && check_foreign_tables(s, err)) goto fail;
    if (!s->readonly) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW) {
            db_fail(s, s->db, err, "open");
            sqlite3_finalize(st);
            goto fail;
        }
        sqlite3_finalize(st);
        /* FULL: each commit is synced to disk, so a committed message survives a power cut
         * too, not only a crash of the program. It costs one fsync per commit (about 3 ms here),
         * and the recorder commits at most every 2 s while a reply streams. */
        if (exec_sql(s, "PRAGMA synchronous = FULL", err, "open")) goto fail;
    }
    if (exec_sql(s, "PRAGMA foreign_keys = ON", err, "open")) goto fail;
    if (version < STORE_SCHEMA_VERSION && migrate(s, err)) goto fail;

    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            db_fail(s, s->db, err, "prepare");
            err_prefix(err, "the schema of %s is not what bitnet-chat v%d expects", s->path,
                       STORE_SCHEMA_VERSION);
            goto fail;
        }
    }
    return s;
fail:
    if (sqlite_rc && s->db) *sqlite_rc = sqlite3_extended_errcode(s->db) & 0xff;
    store_close(s);
    return NULL;
}

void store_close(Store *s) {
    if (!s) return;
    if (s->in_tx) store_rollback(s);
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->st[i]);
    if (s->db) sqlite3_close_v2(s->db);
    free(s->path);
    free(s);
}

const char *store_path(const Store *s) { return s ? s->path : NULL; }
int store_readonly(const Store *s) { return s ? s->readonly : 1; }
const char *store_readonly_reason(const Store *s) {
    return s && s->ro_reason[0] ? s->ro_reason : "the database is read-only";
}
void store_set_busy_timeout(Store *s, int ms) { sqlite3_busy_timeout(s->db, ms); }

int store_schema_version(Store *s) {
    int v = -1;
    if (read_version(s, &v, NULL)) return -1;
    return v;
}

int store_integrity_check(Store *s, Err *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, s->db, err, "integrity check");
    int rc = sqlite3_step(st), ok = 0;
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        ok = t && strcmp(t, "ok") == 0;
        if (!ok) err_set(err, "history: integrity check of %s: %s", s->path, t ? t : "?");
    } else {
        db_fail(s, s->db, err, "integrity check");
    }
    sqlite3_finalize(st);
    if (!ok) return -1;
    /* The FTS index must agree with the messages it indexes. */
    if (sqlite3_exec(s->db, "INSERT INTO messages_fts(messages_fts, rank) VALUES('integrity-check', 1)",
                     NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, s->db, err, "full-text index check");
    return 0;
}

/* ---- sessions --------------------------------------------------------------------------- */

static int read_session(sqlite3_stmt *st, StoreSession *o) {
    memset(o, 0, sizeof *o);
    o->id = sqlite3_column_int64(st, SC_ID);
    o->title = dup_col(st, SC_TITLE);
    o->created_at = sqlite3_column_int64(st, SC_CREATED_AT);
    o->updated_at = sqlite3_column_int64(st, SC_UPDATED_AT);
    o->model_name = dup_col(st, SC_MODEL_NAME);
    o->model_path = dup_col(st, SC_MODEL_PATH);
    o->system_prompt = dup_col(st, SC_SYSTEM_PROMPT);
    store_sampling_from_json((const char *)sqlite3_column_text(st, SC_SAMPLING), &o->sampling);
    o->active_leaf = sqlite3_column_int64(st, SC_ACTIVE_LEAF);
    o->message_count = sqlite3_column_int(st, SC_MESSAGE_COUNT);
    if (!o->title || !o->model_name || !o->model_path || !o->system_prompt) {
        store_session_clear(o);
        return -1;
    }
    return 0;
}

void store_session_clear(StoreSession *ss) {
    if (!ss) return;
    free(ss->title);
    free(ss->model_name);
    free(ss->model_path);
    free(ss->system_prompt);
    memset(ss, 0, sizeof *ss);
}

void store_sessions_free(StoreSession *arr, int n) {
    for (int i = 0; i < n; i++) store_session_clear(&arr[i]);
    free(arr);
}

int64_t store_session_create(Store *s, const StoreSession *in, Err *err) {
    Binder b = {.st = s->st[ST_SESSION_INSERT]};
    int64_t created = in->created_at ? in->created_at : store_now_ms();
    bind_text(&b, ":title", in->title);
    bind_int64(&b, ":created_at", created);
    bind_int64(&b, ":updated_at", in->updated_at ? in->updated_at : created);
    bind_text(&b, ":model_name", in->model_name);
    bind_text(&b, ":model_path", in->model_path);
    bind_text(&b, ":system_prompt", in->system_prompt);
    bind_sampling(&b, ":sampling", &in->sampling);
    if (bind_check(&b, err, "create session")) return -1;
    if (step_done(b.st)) return db_fail(s, s->db, err, "create session");
    return sqlite3_last_insert_rowid(s->db);
}

int store_session_get(Store *s, int64_t id, StoreSession *out, Err *err) {
    Binder b = {.st = s->st[ST_SESSION_GET]};
    bind_int64(&b, ":id", id);
    if (bind_check(&b, err, "read session")) return -1;
    sqlite3_stmt *st = b.st;
    int rc = sqlite3_step(st);
    int r = -1;
    if (rc == SQLITE_ROW) {
        r = read_session(st, out);
        if (r) err_set(err, "out of memory");
    } else if (rc == SQLITE_DONE) {
        err_set(err, "history: no session %lld", (long long)id);
    } else {
        db_fail(s, s->db, err, "read session");
    }
    stmt_done(st);
    return r;
}

static int changes_or_missing(Store *s, int64_t id, Err *err) {
    if (sqlite3_changes(s->db) == 0) return err_set(err, "history: no session %lld", (long long)id);
    return 0;
}

int store_session_rename(Store *s, int64_t id, const char *title, Err *err) {
    Binder b = {.st = s->st[ST_SESSION_RENAME]};
    bind_int64(&b, ":id", id);
    bind_text(&b, ":title", title);
    bind_int64(&b, ":now", store_now_ms());
    if (bind_check(&b, err, "rename session")) return -1;
    if (step_done(b.st)) return db_fail(s, s->db, err, "rename session");
    return changes_or_missing(s, id, err);
}

int store_session_update_settings(Store *s, const StoreSession *in, Err *err) {
    Binder b = {.st = s->st[ST_SESSION_SETTINGS]};
    bind_int64(&b, ":id", in->id);
    bind_text(&b, ":model_name", in->model_name);
    bind_text(&b, ":model_path", in->model_path);
    bind_text(&b, ":system_prompt", in->system_prompt);
    bind_sampling(&b, ":sampling", &in->sampling);
    bind_int64(&b, ":now", store_now_ms());
    if (bind_check(&b, err, "update session")) return -1;
    if (step_done(b.st)) return db_fail(s, s->db, err, "update session");
    return changes_or_missing(s, in->id, err);
}

int store_session_delete(Store *s, int64_t id, Err *err) {
    int own;
    if (tx_open(s, &own, err)) return -1;
    /* the messages first: parent_id has no ON DELETE action (see the v2 migration) */
    Binder msgs = {.st = s->st[ST_SESSION_DELETE_MESSAGES]};
    Binder sess = {.st = s->st[ST_SESSION_DELETE]};
    bind_int64(&msgs, ":id", id);
    int ok = !bind_check(&msgs, err, "delete session");
    if (ok && !(ok = step_done(msgs.st) == 0)) db_fail(s, s->db, err, "delete session");
    int found = 0;
    if (ok) {
        bind_int64(&sess, ":id", id);
        ok = !bind_check(&sess, err, "delete session");
        if (ok && !(ok = step_done(sess.st) == 0)) db_fail(s, s->db, err, "delete session");
        found = ok && sqlite3_changes(s->db) > 0;
    }
    if (tx_close(s, own, ok, err)) return -1;
    if (!found) return err_set(err, "history: no session %lld", (long long)id);
    return 0;
}

int store_session_list(Store *s, StoreSession **out, int *n, Err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = s->st[ST_SESSION_LIST];
    int cap = 0, rc;
    StoreSession *arr = NULL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            StoreSession *na = realloc(arr, (size_t)cap * sizeof *arr);
            if (!na) goto oom;
            arr = na;
        }
        if (read_session(st, &arr[*n])) goto oom;
        (*n)++;
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        store_sessions_free(arr, *n);
        *n = 0;
        return db_fail(s, s->db, err, "list sessions");
    }
    *out = arr;
    return 0;
oom:
    stmt_done(st);
    store_sessions_free(arr, *n);
    *n = 0;
    return err_set(err, "out of memory");
}

/* ---- messages --------------------------------------------------------------------------- */

static int read_message(sqlite3_stmt *st, StoreMessage *m) {
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(st, MC_ID);
    m->session_id = sqlite3_column_int64(st, MC_SESSION_ID);
    m->parent_id = sqlite3_column_int64(st, MC_PARENT_ID);
    copy_col(st, MC_ROLE, m->role, sizeof m->role);
    m->text = dup_col(st, MC_TEXT);
    m->created_at = sqlite3_column_int64(st, MC_CREATED_AT);
    m->prompt_tokens = sqlite3_column_int(st, MC_PROMPT_TOKENS);
    m->reply_tokens = sqlite3_column_int(st, MC_REPLY_TOKENS);
    m->ttft_ms = sqlite3_column_double(st, MC_TTFT_MS);
    m->tok_per_s = sqlite3_column_double(st, MC_TOK_PER_S);
    copy_col(st, MC_STOP_REASON, m->stop_reason, sizeof m->stop_reason);
    m->interrupted = sqlite3_column_int(st, MC_INTERRUPTED);
    copy_col(st, MC_BACKEND, m->backend, sizeof m->backend);
    copy_col(st, MC_MODEL_NAME, m->model_name, sizeof m->model_name);
    store_sampling_from_json((const char *)sqlite3_column_text(st, MC_SAMPLING), &m->sampling);
    m->prompt_tok_s = sqlite3_column_double(st, MC_PROMPT_TOK_S);
    copy_col(st, MC_ERROR, m->error, sizeof m->error);
    return m->text ? 0 : -1;
}

void store_message_clear(StoreMessage *m) {
    if (!m) return;
    free(m->text);
    memset(m, 0, sizeof *m);
}

void store_messages_free(StoreMessage *arr, int n) {
    for (int i = 0; i < n; i++) free(arr[i].text);
    free(arr);
}

/* The fields INSERT and UPDATE share (same names in both statements). */
static void bind_message_fields(Binder *b, const StoreMessage *m) {
    bind_text(b, ":text", m->text);
    bind_int(b, ":prompt_tokens", m->prompt_tokens);
    bind_int(b, ":reply_tokens", m->reply_tokens);
    bind_figure(b, ":ttft_ms", m->ttft_ms);
    bind_figure(b, ":tok_per_s", m->tok_per_s);
    bind_text(b, ":stop_reason", m->stop_reason);
    bind_int(b, ":interrupted", m->interrupted ? 1 : 0);
    bind_text(b, ":backend", m->backend);
    bind_text(b, ":model_name", m->model_name);
    bind_sampling(b, ":sampling", &m->sampling);
    bind_figure(b, ":prompt_tok_s", m->prompt_tok_s);
    bind_text(b, ":error", m->error);
}

int64_t store_message_add(Store *s, const StoreMessage *m, Err *err) {
    if (strcmp(m->role, "user") && strcmp(m->role, "assistant") && strcmp(m->role, "system"))
        return err_set(err, "history: unknown message role '%s'", m->role);
    int own;
    if (tx_open(s, &own, err)) return -1;
    const int64_t created = m->created_at ? m->created_at : store_now_ms();
    int64_t id = -1;
    Binder ins = {.st = s->st[ST_MSG_INSERT]};
    bind_int64(&ins, ":session_id", m->session_id);
    bind_id(&ins, ":parent_id", m->parent_id);
    bind_text(&ins, ":role", m->role);
    bind_int64(&ins, ":created_at", created);
    bind_message_fields(&ins, m);
    int ok = !bind_check(&ins, err, "add message");
    if (ok && step_done(ins.st)) {
        ok = 0;
        db_fail(s, s->db, err, "add message");
    } else if (ok) {
        id = sqlite3_last_insert_rowid(s->db);
        Binder leaf = {.st = s->st[ST_SET_LEAF]};
        bind_int64(&leaf, ":id", m->session_id);
        bind_id(&leaf, ":leaf", id);
        bind_int64(&leaf, ":now", created);
        if (bind_check(&leaf, err, "add message")) {
            ok = 0;
        } else if (step_done(leaf.st)) {
            ok = 0;
            db_fail(s, s->db, err, "add message");
        } else if (sqlite3_changes(s->db) == 0) {
            ok = 0;
            err_set(err, "history: no session %lld", (long long)m->session_id);
        }
    }
    if (tx_close(s, own, ok, err)) return -1;
    return id;
}

int store_message_update(Store *s, const StoreMessage *m, Err *err) {
    int own;
    if (tx_open(s, &own, err)) return -1;
    Binder up = {.st = s->st[ST_MSG_UPDATE]};
    bind_int64(&up, ":id", m->id);
    bind_message_fields(&up, m);
    int ok = !bind_check(&up, err, "save message");
    if (ok && step_done(up.st)) {
        ok = 0;
        db_fail(s, s->db, err, "save message");
    } else if (ok && sqlite3_changes(s->db) == 0) {
        ok = 0;
        err_set(err, "history: no message %lld", (long long)m->id);
    } else if (ok) {
        Binder touch = {.st = s->st[ST_SESSION_TOUCH]};
        bind_int64(&touch, ":id", m->session_id);
        bind_int64(&touch, ":now", store_now_ms());
        if (bind_check(&touch, err, "save message")) {
            ok = 0;
        } else if (step_done(touch.st)) {
            ok = 0;
            db_fail(s, s->db, err, "save message");
        }
    }
    return tx_close(s, own, ok, err);
}

/* Runs a message query bound to one id and collects the rows. */
static int collect_messages(Store *s, int stmt, int64_t id, StoreMessage **out, int *n, Err *err,
                            const char *what) {
    *out = NULL;
    *n = 0;
    Binder b = {.st = s->st[stmt]};
    bind_int64(&b, ":id", id);
    if (bind_check(&b, err, what)) return -1;
    sqlite3_stmt *st = b.st;
    StoreMessage *arr = NULL;
    int cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            StoreMessage *na = realloc(arr, (size_t)cap * sizeof *arr);
            if (!na) goto oom;
            arr = na;
        }
        if (read_message(st, &arr[*n])) goto oom;
        (*n)++;
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        store_messages_free(arr, *n);
        *n = 0;
        return db_fail(s, s->db, err, what);
    }
    *out = arr;
    return 0;
oom:
    stmt_done(st);
    store_messages_free(arr, *n);
    *n = 0;
    return err_set(err, "out of memory");
}

int store_message_branch(Store *s, int64_t session_id, StoreMessage **out, int *n, Err *err) {
    return collect_messages(s, ST_BRANCH, session_id, out, n, err, "read conversation");
}

int store_message_all(Store *s, int64_t session_id, StoreMessage **out, int *n, Err *err) {
    if (collect_messages(s, ST_MSG_ALL, session_id, out, n, err, "read conversation")) return -1;
    Binder b = {.st = s->st[ST_BRANCH_IDS]};
    bind_int64(&b, ":id", session_id);
    if (bind_check(&b, err, "read conversation")) {
        store_messages_free(*out, *n);
        *out = NULL;
        *n = 0;
        return -1;
    }
    sqlite3_stmt *st = b.st;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        for (int i = 0; i < *n; i++)
            if ((*out)[i].id == id) (*out)[i].on_active_branch = 1;
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        store_messages_free(*out, *n);
        *out = NULL;
        *n = 0;
        return db_fail(s, s->db, err, "read conversation");
    }
    return 0;
}

int store_message_get(Store *s, int64_t id, StoreMessage *out, Err *err) {
    Binder b = {.st = s->st[ST_MSG_GET]};
    bind_int64(&b, ":id", id);
    if (bind_check(&b, err, "read message")) return -1;
    sqlite3_stmt *st = b.st;
    int rc = sqlite3_step(st), r = -1;
    if (rc == SQLITE_ROW) {
        r = read_message(st, out);
        if (r) err_set(err, "out of memory");
    } else if (rc == SQLITE_DONE) {
        err_set(err, "history: no message %lld", (long long)id);
    } else {
        db_fail(s, s->db, err, "read message");
    }
    stmt_done(st);
    return r;
}

int store_message_siblings(Store *s, int64_t message_id, StoreMessage **out, int *n, Err *err) {
    return collect_messages(s, ST_MSG_SIBLINGS, message_id, out, n, err, "read branches");
}

int64_t store_branch_leaf(Store *s, int64_t message_id, Err *err) {
    sqlite3_stmt *st = s->st[ST_MSG_NEWEST_CHILD];
    int64_t cur = message_id;
    for (;;) {
        Binder b = {.st = st};
        bind_int64(&b, ":id", cur);
        if (bind_check(&b, err, "read branches")) return -1;
        int rc = sqlite3_step(st);
        int64_t child = 0;
        if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
            child = sqlite3_column_int64(st, 0);
        stmt_done(st);
        if (rc != SQLITE_ROW) return db_fail(s, s->db, err, "read branches");
        if (!child) return cur;
        cur = child;
    }
}

int store_set_active_leaf(Store *s, int64_t session_id, int64_t message_id, Err *err) {
    if (message_id > 0) {
        StoreMessage m;
        if (store_message_get(s, message_id, &m, err)) return -1;
        int64_t owner = m.session_id;
        store_message_clear(&m);
        if (owner != session_id)
            return err_set(err, "history: message %lld is not in session %lld",
                           (long long)message_id, (long long)session_id);
    }
    Binder b = {.st = s->st[ST_SET_LEAF]};
    bind_int64(&b, ":id", session_id);
    bind_id(&b, ":leaf", message_id);
    bind_int64(&b, ":now", store_now_ms());
    if (bind_check(&b, err, "switch branch")) return -1;
    if (step_done(b.st)) return db_fail(s, s->db, err, "switch branch");
    return changes_or_missing(s, session_id, err);
}

/* ---- search ----------------------------------------------------------------------------- */

/* A term is searchable when it holds a letter or digit (any non-ASCII byte counts: the FTS
 * tokenizer decides for those); pure punctuation would make an empty FTS phrase. */
static int has_word_char(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x80 || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z')) return 1;
    }
    return 0;
}

static void append_quoted(char **o, const char *p, size_t n) {
    *(*o)++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"') *(*o)++ = '"';
        *(*o)++ = p[i];
    }
    *(*o)++ = '"';
}

char *store_fts_query(const char *q) {
    if (!q) return NULL;
    size_t len = strlen(q);
    char *out = malloc(len * 2 + 16), *o = out;
    if (!out) return NULL;
    const char *p = q;
    int terms = 0;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        const char *start;
        size_t n;
        int prefix = 0;
        if (*p == '"') { /* a phrase, up to the closing quote (or the end) */
            start = ++p;
            while (*p && *p != '"') p++;
            n = (size_t)(p - start);
            if (*p == '"') p++;
        } else {
            start = p;
            while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '"') p++;
            n = (size_t)(p - start);
            if (n > 1 && start[n - 1] == '*') {
                prefix = 1;
                n--;
            }
        }
        if (!has_word_char(start, n)) continue;
        if (terms++) *o++ = ' ';
        append_quoted(&o, start, n);
        if (prefix) *o++ = '*';
    }
    *o = 0;
    if (!terms) {
        free(out);
        return NULL;
    }
    return out;
}

void store_search_free(StoreSearchHit *arr, int n) {
    for (int i = 0; i < n; i++) {
        free(arr[i].session_title);
        free(arr[i].snippet);
    }
    free(arr);
}

int store_search(Store *s, const char *query, StoreSearchHit **out, int *n, Err *err) {
    return store_search_max(s, query, 0, out, n, err);
}

int store_search_max(Store *s, const char *query, int max, StoreSearchHit **out, int *n, Err *err) {
    *out = NULL;
    *n = 0;
    char *fts = store_fts_query(query);
    if (!fts)
        return err_set(err, "search: '%s' has no word to search for (letters or digits)",
                       query ? query : "");
    Binder b = {.st = s->st[ST_SEARCH]};
    bind_text(&b, ":query", fts);
    free(fts);
    bind_int(&b, ":max", max > 0 ? max : 100);
    if (bind_check(&b, err, "search")) return -1;
    sqlite3_stmt *st = b.st;
    StoreSearchHit *arr = NULL;
    int cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            StoreSearchHit *na = realloc(arr, (size_t)cap * sizeof *arr);
            if (!na) goto oom;
            arr = na;
        }
        StoreSearchHit *h = &arr[*n];
        h->session_id = sqlite3_column_int64(st, 0);
        h->message_id = sqlite3_column_int64(st, 1);
        h->session_title = dup_col(st, 2);
        h->snippet = dup_col(st, 3);
        (*n)++;
        if (!h->session_title || !h->snippet) goto oom;
    }
    stmt_done(st);
    if (rc != SQLITE_DONE) {
        store_search_free(arr, *n);
        *n = 0;
        return db_fail(s, s->db, err, "search");
    }
    *out = arr;
    return 0;
oom:
    stmt_done(st);
    store_search_free(arr, *n);
    *n = 0;
    return err_set(err, "out of memory");
}
