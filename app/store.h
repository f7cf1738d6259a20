/* Store: the SQLite conversation history. One connection, used from the main thread only.
 * Statements are prepared once and always bound. Every function returns 0 / an id on success
 * and -1 with err filled on failure; a failure never destroys stored data. */
#ifndef BN_STORE_H
#define BN_STORE_H

#include <stdint.h>
#include <stdio.h>

#include "infer/err.h"
#include "infer/sampler_params.h"

typedef struct Store Store;

typedef struct {
    int64_t id;
    char *title;
    int64_t created_at, updated_at;   /* unix milliseconds */
    char *model_name, *model_path;
    char *system_prompt;
    SamplerParams sampling;           /* the settings whose bit is set were stored */
    int64_t active_leaf;              /* id of the last message of the active branch, 0 if none */
    int message_count;
} StoreSession;

typedef struct {
    int64_t id, session_id, parent_id; /* parent 0: first message */
    char role[16];                     /* "system", "user", "assistant" */
    char *text;
    int64_t created_at;
    int prompt_tokens, reply_tokens;
    double ttft_ms, tok_per_s;
    char stop_reason[16];              /* "", "eos", "max_tokens", "ctx_full", "cancelled", "error" */
    int interrupted;
    char error[384];                   /* why a reply failed (stop "error"), else "" (v4) */
    char backend[256];
    char model_name[128];
    SamplerParams sampling;            /* settings the reply was made with (those stored) */
    double prompt_tok_s;               /* prefill speed (prompt tokens / prefill time) */
    int on_active_branch;              /* filled by store_message_all: 1 if on the active branch */
} StoreMessage;

typedef struct {
    int64_t session_id, message_id;
    char *session_title;
    char *snippet;                     /* with match markers \x01 (start) and \x02 (end) */
} StoreSearchHit;

/* The schema version this program writes (PRAGMA user_version). A database with a higher
 * version is refused (and left untouched); lower versions are migrated step by step, each step
 * in its own transaction. */
enum { STORE_SCHEMA_VERSION = 4 };

/* Flags for store_open_ex. */
enum {
    STORE_OPEN_NOCREATE = 1,  /* fail with a clear message if the file does not exist */
    STORE_OPEN_READONLY = 2,  /* never write (no migrations: an older schema is refused) */
};

/* path NULL: $XDG_DATA_HOME/bitnet-chat/history.db (~/.local/share/... when unset); the
 * default directory is created 0700. A new file is created 0600. WAL mode, foreign keys on,
 * a busy timeout of 5 s so that two running copies share the file. A database that is not a
 * database, damaged, newer than this program, or locked fails with a one-line message and is
 * never modified. A read-only file opens read-only when its schema is current (writes then
 * fail with a clear message; see store_readonly). */
Store *store_open(const char *path, Err *err);
Store *store_open_ex(const char *path, unsigned flags, Err *err);
int store_readonly(const Store *s);
/* Why a read-only store is read-only, naming what is: "PATH is read-only", "PATH-shm is
 * read-only (...)", "the directory D is read-only (...)". */
const char *store_readonly_reason(const Store *s);
/* Busy timeout in ms for later calls (the recorder shortens it while retrying). */
void store_set_busy_timeout(Store *s, int ms);
/* PRAGMA integrity_check: 0 when "ok", else -1 with the first problem in err. */
int store_integrity_check(Store *s, Err *err);
int store_schema_version(Store *s);
void store_close(Store *s);
const char *store_path(const Store *s);
char *store_default_path(void);   /* malloc'ed */

/* Inserts a session (in->id ignored; created_at/updated_at 0 = now). Returns the new id. */
int64_t store_session_create(Store *s, const StoreSession *in, Err *err);
int store_session_get(Store *s, int64_t id, StoreSession *out, Err *err);
int store_session_rename(Store *s, int64_t id, const char *title, Err *err);
/* Sets model_name, model_path, system_prompt and sampling of session in->id (not the title). */
int store_session_update_settings(Store *s, const StoreSession *in, Err *err);
int store_session_delete(Store *s, int64_t id, Err *err);
/* Newest first; *out is malloc'ed (free with store_sessions_free). */
int store_session_list(Store *s, StoreSession **out, int *n, Err *err);
void store_session_clear(StoreSession *ss);
void store_sessions_free(StoreSession *arr, int n);

/* Inserts m (id ignored; created_at 0 = now; parent_id 0 = first message) and makes it the
 * session's active leaf. Returns the new id. */
int64_t store_message_add(Store *s, const StoreMessage *m, Err *err);
/* Checkpoint of a streaming reply: text so far and figures; interrupted stays 1 until final. */
int store_message_update(Store *s, const StoreMessage *m, Err *err);
/* The active branch of a session, root first. */
int store_message_branch(Store *s, int64_t session_id, StoreMessage **out, int *n, Err *err);
void store_messages_free(StoreMessage *arr, int n);
int store_set_active_leaf(Store *s, int64_t session_id, int64_t message_id, Err *err);
/* Every message of a session (all branches), in id order, on_active_branch filled. */
int store_message_all(Store *s, int64_t session_id, StoreMessage **out, int *n, Err *err);
/* One message by id. */
int store_message_get(Store *s, int64_t id, StoreMessage *out, Err *err);
void store_message_clear(StoreMessage *m);
/* The messages sharing m's parent (m included), in id order: the alternatives a regenerate or
 * an edit produced. Switch with store_set_active_leaf on the chosen one's last descendant
 * (store_branch_leaf). */
int store_message_siblings(Store *s, int64_t message_id, StoreMessage **out, int *n, Err *err);
/* The newest leaf below message_id (message_id itself when it has no children). */
int64_t store_branch_leaf(Store *s, int64_t message_id, Err *err);

/* Explicit transactions (BEGIN IMMEDIATE ... COMMIT / ROLLBACK); the single-call functions
 * above each run in their own transaction when none is open. */
int store_begin(Store *s, Err *err);
int store_commit(Store *s, Err *err);
void store_rollback(Store *s);

/* Full-text search over message text, best match first (bm25), at most max hits (0: 100).
 * The query is taken literally: each word must appear (any order; case and diacritics
 * ignored); "double quoted words" must appear as a phrase; a word ending in * matches as a
 * prefix. No FTS syntax reaches SQLite, so no query is a syntax error. A query with no
 * searchable word (only punctuation) fails with a clear message. */
int store_search(Store *s, const char *query, StoreSearchHit **out, int *n, Err *err);
int store_search_max(Store *s, const char *query, int max, StoreSearchHit **out, int *n, Err *err);
void store_search_free(StoreSearchHit *arr, int n);
/* The FTS5 MATCH expression store_search binds for a user query (malloc'ed; NULL when the
 * query has no searchable word). Exposed for tests. */
char *store_fts_query(const char *user_query);

/* Exports (app/store_export.c). Markdown: the active branch, readable, with per-reply stats.
 * JSON: every stored field of the session and of every message on every branch; the format
 * is documented in README.md (section "History"). */
int store_export_markdown(Store *s, int64_t session_id, FILE *to, Err *err);
int store_export_json(Store *s, int64_t session_id, FILE *to, Err *err);
/* The writers behind both, over a session and messages held in memory (a conversation that is
 * not saved: history_session / history_messages): msgs are written as given, id 0 (no row yet)
 * as null in JSON, and Markdown leaves out the session id and times a view does not have. */
int store_write_markdown(const StoreSession *ss, const StoreMessage *msgs, int n, FILE *to,
                         Err *err);
int store_write_json(const StoreSession *ss, const StoreMessage *msgs, int n, FILE *to, Err *err);

#endif
