/* Store: the SQLite conversation history. One connection, used from the main thread only.
 * Statements are prepared once and always bound. Every function returns 0 / an id on success
 * and -1 with err filled on failure; a failure never destroys stored data. */
#ifndef BN_STORE_H
#define BN_STORE_H

#include <stdint.h>

#include "infer/err.h"

typedef struct Store Store;

typedef struct {
    double temperature, top_p, min_p, repeat_penalty;
    int top_k, max_tokens;
    int64_t seed;
} StoreSampling;

typedef struct {
    int64_t id;
    char *title;
    int64_t created_at, updated_at;   /* unix milliseconds */
    char *model_name, *model_path;
    char *system_prompt;
    StoreSampling sampling;
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
    char backend[128];
    char model_name[128];
    StoreSampling sampling;            /* settings the reply was made with */
} StoreMessage;

typedef struct {
    int64_t session_id, message_id;
    char *session_title;
    char *snippet;                     /* with match markers \x01 (start) and \x02 (end) */
} StoreSearchHit;

/* path NULL: $XDG_DATA_HOME/bitnet-chat/history.db (~/.local/share/... when unset). */
Store *store_open(const char *path, Err *err);
void store_close(Store *s);
const char *store_path(const Store *s);
char *store_default_path(void);   /* malloc'ed */

int64_t store_session_create(Store *s, const StoreSession *in, Err *err);
int store_session_get(Store *s, int64_t id, StoreSession *out, Err *err);
int store_session_rename(Store *s, int64_t id, const char *title, Err *err);
int store_session_update_settings(Store *s, const StoreSession *in, Err *err);
int store_session_delete(Store *s, int64_t id, Err *err);
/* Newest first; *out is malloc'ed (free with store_sessions_free). */
int store_session_list(Store *s, StoreSession **out, int *n, Err *err);
void store_session_clear(StoreSession *ss);
void store_sessions_free(StoreSession *arr, int n);

int64_t store_message_add(Store *s, const StoreMessage *m, Err *err);
/* Checkpoint of a streaming reply: text so far and figures; interrupted stays 1 until final. */
int store_message_update(Store *s, const StoreMessage *m, Err *err);
/* The active branch of a session, root first. */
int store_message_branch(Store *s, int64_t session_id, StoreMessage **out, int *n, Err *err);
void store_messages_free(StoreMessage *arr, int n);
int store_set_active_leaf(Store *s, int64_t session_id, int64_t message_id, Err *err);

int store_search(Store *s, const char *query, StoreSearchHit **out, int *n, Err *err);
void store_search_free(StoreSearchHit *arr, int n);

#endif
