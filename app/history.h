/* History: the recorder. One object that the one-shot prompt (app/cmd_prompt.c) and the chat
 * (app/app.c) feed as a conversation happens, so that a crash loses seconds, not conversations:
 *
 *     History *h = history_open(cfg->db_path, cfg->no_history, &warn);   // never NULL but OOM
 *     if (warn.msg[0]) show(warn.msg);                  // e.g. "running without history: ..."
 *     history_begin_session(h, &info);                  // model, system prompt, sampling
 *     history_add_user(h, text);                        // committed BEFORE generation starts
 *     history_reply_begin(h, &reply_info);              // the reply row exists from here on
 *     ... on each EV_TOKEN: history_reply_append(h, text, len);   // checkpoints every 2 s
 *     ... on EV_STATS (optional): history_reply_stats(h, &stats);
 *     ... on EV_DONE: history_reply_end(h, &stats, reason, reason == STOP_CANCELLED);
 *     history_close(h);                                 // also commits an open reply
 *
 * Durability: the user message and the (empty, interrupted) reply row are committed before the
 * first token; the reply text is written at most checkpoint_ms (default 2000) after it arrives
 * and in full at the end. A reply cut off by a crash is found marked interrupted, holding the
 * text of its last checkpoint.
 *
 * Degrading, never losing: the conversation is always kept in memory (history_messages). If the
 * database cannot be opened (corrupt, newer schema, read-only, locked, full disk) or a write
 * fails later, the recorder goes on in memory only, hands out one clear warning
 * (history_take_warning), never modifies a damaged file, and retries the writes it owes at the
 * next commit point (user message, reply start, reply end) with a short busy timeout; what was
 * not yet saved is written then, so a passing lock loses nothing.
 *
 * A new chat (history_begin_session, history_resume) while the database is unavailable keeps
 * the unsaved earlier conversation on an owed list, written first at the next commit point.
 *
 * Branches: history_regenerate drops the last reply from the in-memory branch; the next reply
 * becomes its sibling (same parent) and the session's active branch moves to it. The old reply
 * stays in the database. history_truncate does the same for any point (edit a message).
 *
 * Main thread only (SQLite is used from the main thread only). */
#ifndef BN_HISTORY_H
#define BN_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/store.h"
#include "infer/engine.h"
#include "infer/err.h"
#include "infer/sampler.h"

typedef struct History History;

/* What a session is recorded with; every string may be NULL (stored as ""). */
typedef struct {
    const char *title;          /* NULL: the first line of the first user message */
    const char *model_name, *model_path;
    const char *system_prompt;
    SamplerParams sampling;
} HistorySessionInfo;

/* What one reply is made with (per message: the model can change mid-session). */
typedef struct {
    const char *model_name;
    const char *backend;        /* e.g. EngineModelInfo.backend */
    SamplerParams sampling;
} HistoryReplyInfo;

/* Opens the recorder on path (NULL: the default $XDG_DATA_HOME/bitnet-chat/history.db).
 * no_history: nothing is read or written, no file or directory is created, no warning.
 * If the database cannot be used, the recorder works in memory only and warn->msg (warn may be
 * NULL) holds one line saying why and that the conversation will not be saved; otherwise
 * warn->msg is "". Returns NULL only when out of memory. */
History *history_open(const char *path, bool no_history, Err *warn);

/* Commits an open reply (as interrupted, unless it was ended), tries once more to write what is
 * owed, closes the database and frees everything. Safe with NULL. */
void history_close(History *h);

/* For a program about to exit: commits an open reply and tries once more to write what is
 * owed (as history_close does). Returns true, with one line in lost->msg, when a conversation
 * that was promised to be "saved when possible" (a lock, a failed write) still is not: the
 * last chance has passed and the user must hear it. */
bool history_flush_final(History *h, Err *lost);

/* True while the recorder writes to a database (false: --no-history, or degraded). */
bool history_persistent(const History *h);

/* The database path, or NULL with --no-history. */
const char *history_path(const History *h);

/* The underlying store for browsing/searching (NULL when there is none: --no-history or the
 * database could not be opened). Do not close it. */
Store *history_store(History *h);

/* Copies the pending warning (a write failed, the recorder fell back to memory, or writes came
 * back) into out and returns true once per new warning; false when there is none. */
bool history_take_warning(History *h, Err *out);

/* Starts a new, empty conversation (the previous one, if any, is finished as by
 * history_close's reply handling). The session row is created lazily by the first
 * history_add_user, so abandoned empty chats leave nothing behind. Returns 0. */
int history_begin_session(History *h, const HistorySessionInfo *info);

/* Loads an existing session and its active branch (root first) so the chat continues it.
 * Returns 0, or -1 with err filled (unknown id, no database); the current conversation is then
 * left as it was. */
int history_resume(History *h, int64_t session_id, Err *err);

/* Changes the session's model / system prompt / sampling (e.g. after /load, /system, /temp);
 * info->title NULL keeps the title. Written at once when the session exists. Returns 0. */
int history_update_session(History *h, const HistorySessionInfo *info);

/* Renames the current session. Returns 0. */
int history_rename(History *h, const char *title);

/* Appends a user message to the active branch and commits it (creating the session row the
 * first time) before returning: call it before submitting to the engine. Returns 0, or -1 when
 * a reply is still open (end it first) or out of memory. */
int history_add_user(History *h, const char *text);

/* Starts the assistant reply: its row (empty text, interrupted = 1) is committed and becomes
 * the session's active leaf. Returns 0, or -1 when a reply is already open. */
int history_reply_begin(History *h, const HistoryReplyInfo *info);

/* Appends streamed text (any bytes; len may be 0). Cheap: it copies into memory and, when
 * checkpoint_ms have passed since the last write, writes the text so far (one UPDATE).
 * Returns 0, or -1 when no reply is open or out of memory. */
int history_reply_append(History *h, const char *text, size_t len);

/* Records live figures (written with the next checkpoint). Returns 0 (-1: no reply open). */
int history_reply_stats(History *h, const EngineStats *stats);

/* Ends the reply: final text, figures (stats may be NULL), the stop reason and the interrupted
 * flag (true for a cancel or an error), committed in full. Returns 0 (-1: no reply open). */
int history_reply_end(History *h, const EngineStats *stats, StopReason reason, bool interrupted);

/* Records why the open reply failed (the engine's error message; saved with the next write,
 * at the latest by history_reply_end). Returns 0 (-1: no reply open). */
int history_reply_error(History *h, const char *msg);

/* Drops the last assistant reply from the active branch (it stays in the database); the next
 * history_reply_begin records the new reply as its sibling. Returns 0, or -1 when the branch
 * does not end with a finished assistant reply. */
int history_regenerate(History *h);

/* Keeps the first n_keep messages of the active branch and drops the rest from it (they stay
 * in the database); the next message starts a sibling branch. Returns 0 (-1: a reply is open
 * or n_keep is out of range). */
int history_truncate(History *h, int n_keep);

/* The active branch in memory, root first (valid until the next call on h). id is the database
 * id, 0 while not (yet) saved; text is always NUL-terminated. */
const StoreMessage *history_messages(const History *h, int *n);

/* The current session (id 0 until its row is written). */
const StoreSession *history_session(const History *h);

/* Bytes of the open (or last) reply known to be committed to the database: the UI may show
 * "saved"; the crash test uses it to check that a killed reply kept its last checkpoint. */
size_t history_saved_reply_len(const History *h);

/* Checkpoint interval for reply text in ms (default 2000, or the environment variable
 * BITNET_HISTORY_CHECKPOINT_MS when set to 0..600000 at history_open; tests use less). */
void history_set_checkpoint_ms(History *h, int ms);

#endif
