/* EventChan: the engine thread's way back to the main thread. A bounded ring of fixed-size
 * EngineEvents copied by value, guarded by one mutex, plus a non-blocking pipe whose read end is
 * readable exactly while events are waiting (one byte is written on empty -> non-empty, and the
 * pipe is drained when the consumer empties the ring), so a UI can poll() it beside stdin.
 *
 * Flow control, so that a slow consumer never stalls decoding and never loses text:
 *   - token text (chan_push_text) is appended to the last unread EV_TOKEN of the same request
 *     when the ring is at least half full, and is never dropped: what does not fit is handed
 *     back to the producer, which keeps it and offers it again with the next token;
 *   - EV_STATS and EV_LOAD_PROGRESS (chan_push_latest) replace an unread event of the same kind
 *     and request at the tail, and are skipped when the ring is nearly full (a newer one follows);
 *   - the other events (loaded, load failed, error, done: chan_push_wait) use a reserve at the
 *     end of the ring that the kinds above never take, and only wait for space if the consumer
 *     has left many requests' worth of them unread; chan_close() ends any such wait. */
#ifndef BN_CHAN_H
#define BN_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "infer/engine.h"
#include "infer/err.h"

typedef struct EventChan EventChan;

EventChan *chan_create(int capacity, Err *err);
void chan_destroy(EventChan *c);   /* NULL ok; no thread may be using it */
int chan_fd(const EventChan *c);   /* read end of the wake pipe */

/* Producer side (one producer thread). */
/* Queues as much of text[0..len) (complete UTF-8) as fits and returns the bytes taken; cuts
 * only between UTF-8 characters. */
size_t chan_push_text(EventChan *c, uint64_t req, const char *text, size_t len);
/* Like chan_push_text but waits for room until all of it is queued; -1 if the chan was closed. */
int chan_push_text_wait(EventChan *c, uint64_t req, const char *text, size_t len);
/* Stats / progress: replaces an unread tail event of the same type and request, else queues it
 * if the ring has room; returns 1 if queued or merged, 0 if skipped. */
int chan_push_latest(EventChan *c, const EngineEvent *ev);
/* Queues ev, waiting for room if needed; -1 if the chan was closed (ev is then dropped). */
int chan_push_wait(EventChan *c, const EngineEvent *ev);
/* Makes every current and future wait return (used at shutdown). */
void chan_close(EventChan *c);

/* Consumer side (one consumer thread). */
int chan_pop(EventChan *c, EngineEvent *out, int max);
/* Waits up to timeout_ms (-1: forever) for at least one event, then pops like chan_pop. */
int chan_wait(EventChan *c, EngineEvent *out, int max, int timeout_ms);
/* Events waiting (for tests). */
int chan_count(EventChan *c);

#endif
