/* History store stand-in for builds where app/store.c has not landed yet: every call fails
 * with a clear message, so the chat runs with "history not saved". */
#include <stdlib.h>

#include "app/store.h"

#define NOT_BUILT(err) err_set(err, "the history store is not built into this binary")

Store *store_open(const char *path, Err *err) { NOT_BUILT(err); return NULL; }
void store_close(Store *s) { (void)s; }
int64_t store_session_create(Store *s, const StoreSession *in, Err *err) { return NOT_BUILT(err); }
int store_session_get(Store *s, int64_t id, StoreSession *out, Err *err) { return NOT_BUILT(err); }
int store_session_rename(Store *s, int64_t id, const char *t, Err *err) { return NOT_BUILT(err); }
int store_session_update_settings(Store *s, const StoreSession *in, Err *err) { return NOT_BUILT(err); }
int store_session_delete(Store *s, int64_t id, Err *err) { return NOT_BUILT(err); }
int store_session_list(Store *s, StoreSession **o, int *n, Err *err) { return NOT_BUILT(err); }
void store_session_clear(StoreSession *ss) { (void)ss; }
void store_sessions_free(StoreSession *arr, int n) { free(arr); }
int64_t store_message_add(Store *s, const StoreMessage *m, Err *err) { return NOT_BUILT(err); }
int store_message_update(Store *s, const StoreMessage *m, Err *err) { return NOT_BUILT(err); }
int store_message_branch(Store *s, int64_t id, StoreMessage **o, int *n, Err *err) { return NOT_BUILT(err); }
void store_messages_free(StoreMessage *arr, int n) { free(arr); }
int store_set_active_leaf(Store *s, int64_t sid, int64_t mid, Err *err) { return NOT_BUILT(err); }
int store_search(Store *s, const char *q, StoreSearchHit **o, int *n, Err *err) { return NOT_BUILT(err); }
void store_search_free(StoreSearchHit *arr, int n) { free(arr); }
