/* EventChan: bounded event ring + wake pipe. Flow-control rules are in chan.h. */
#include "infer/chan.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "infer/utf8.h"

/* Slots at the end of the ring kept for the events that must not be skipped. */
enum { CHAN_RESERVE = 16, CHAN_MIN_CAPACITY = 2 * CHAN_RESERVE };

struct EventChan {
    pthread_mutex_t mu;
    pthread_cond_t nonempty; /* consumer waits here (chan_wait) */
    pthread_cond_t space;    /* producer waits here (chan_push_wait) */
    EngineEvent *ring;
    int cap, head, count;
    int closed;
    int signaled;            /* a wake byte is in the pipe */
    int fds[2];
};

EventChan *chan_create(int capacity, Err *err) {
    if (capacity < CHAN_MIN_CAPACITY) capacity = CHAN_MIN_CAPACITY;
    EventChan *c = calloc(1, sizeof *c);
    if (!c) {
        err_set(err, "event channel: out of memory");
        return NULL;
    }
    c->fds[0] = c->fds[1] = -1;
    c->ring = calloc((size_t)capacity, sizeof *c->ring);
    if (!c->ring) {
        free(c);
        err_set(err, "event channel: out of memory");
        return NULL;
    }
    c->cap = capacity;
    if (pipe(c->fds) != 0) {
        err_set(err, "event channel: pipe: %s", strerror(errno));
        free(c->ring);
        free(c);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(c->fds[i], F_SETFL, fcntl(c->fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(c->fds[i], F_SETFD, FD_CLOEXEC);
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->nonempty, &ca);
    pthread_cond_init(&c->space, &ca);
    pthread_condattr_destroy(&ca);
    return c;
}

void chan_destroy(EventChan *c) {
    if (!c) return;
    close(c->fds[0]);
    close(c->fds[1]);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->nonempty);
    pthread_cond_destroy(&c->space);
    free(c->ring);
    free(c);
}

int chan_fd(const EventChan *c) { return c->fds[0]; }

/* ---- helpers (mutex held) --------------------------------------------------------------------- */

static EngineEvent *tail(EventChan *c) {
    return c->count ? &c->ring[(c->head + c->count - 1) % c->cap] : NULL;
}

static void append(EventChan *c, const EngineEvent *ev) {
    c->ring[(c->head + c->count) % c->cap] = *ev;
    if (c->count++ == 0) {
        if (!c->signaled) {
            char b = 1;
            /* the pipe holds at most one byte, so this never fills it */
            if (write(c->fds[1], &b, 1) == 1) c->signaled = 1;
        }
        pthread_cond_signal(&c->nonempty);
    }
}

/* Appends what fits of text to the tail token event (if it is one of req). */
static size_t merge_text(EventChan *c, uint64_t req, const char *text, size_t len) {
    EngineEvent *t = tail(c);
    if (!t || t->type != EV_TOKEN || t->req != req) return 0;
    size_t room = (size_t)(ENGINE_TOKEN_TEXT - 1 - t->u.token.len);
    size_t n = utf8_cut(text, len, room);
    memcpy(t->u.token.text + t->u.token.len, text, n);
    t->u.token.len += (int)n;
    t->u.token.text[t->u.token.len] = 0;
    return n;
}

static size_t push_text_locked(EventChan *c, uint64_t req, const char *text, size_t len) {
    size_t done = 0;
    int soft_limit = c->cap - CHAN_RESERVE;
    while (done < len) {
        if (c->count >= c->cap / 2) {
            size_t n = merge_text(c, req, text + done, len - done);
            done += n;
            if (done == len) break;
        }
        if (c->count >= soft_limit) break;
        EngineEvent ev;
        memset(&ev, 0, sizeof ev.type + sizeof ev.req + sizeof ev.u.token.len);
        ev.type = EV_TOKEN;
        ev.req = req;
        size_t n = utf8_cut(text + done, len - done, ENGINE_TOKEN_TEXT - 1);
        if (n == 0) n = len - done < ENGINE_TOKEN_TEXT - 1 ? len - done : ENGINE_TOKEN_TEXT - 1;
        memcpy(ev.u.token.text, text + done, n);
        ev.u.token.text[n] = 0;
        ev.u.token.len = (int)n;
        append(c, &ev);
        done += n;
    }
    return done;
}

/* ---- producer --------------------------------------------------------------------------------- */

size_t chan_push_text(EventChan *c, uint64_t req, const char *text, size_t len) {
    pthread_mutex_lock(&c->mu);
    size_t n = push_text_locked(c, req, text, len);
    pthread_mutex_unlock(&c->mu);
    return n;
}

int chan_push_text_wait(EventChan *c, uint64_t req, const char *text, size_t len) {
    size_t done = 0;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        done += push_text_locked(c, req, text + done, len - done);
        if (done == len) break;
        if (c->closed) {
            rc = -1;
            break;
        }
        pthread_cond_wait(&c->space, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int chan_push_latest(EventChan *c, const EngineEvent *ev) {
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    EngineEvent *t = tail(c);
    if (t && t->type == ev->type && t->req == ev->req) {
        *t = *ev;
        rc = 1;
    } else if (c->count < c->cap - CHAN_RESERVE) {
        append(c, ev);
        rc = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int chan_push_wait(EventChan *c, const EngineEvent *ev) {
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    while (c->count >= c->cap && !c->closed) pthread_cond_wait(&c->space, &c->mu);
    if (c->count < c->cap) append(c, ev);
    else rc = -1;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void chan_close(EventChan *c) {
    pthread_mutex_lock(&c->mu);
    c->closed = 1;
    pthread_cond_broadcast(&c->space);
    pthread_cond_broadcast(&c->nonempty);
    pthread_mutex_unlock(&c->mu);
}

/* ---- consumer --------------------------------------------------------------------------------- */

static int pop_locked(EventChan *c, EngineEvent *out, int max) {
    int n = 0;
    while (n < max && c->count > 0) {
        out[n++] = c->ring[c->head];
        c->head = (c->head + 1) % c->cap;
        c->count--;
    }
    if (c->count == 0 && c->signaled) {
        char buf[16];
        while (read(c->fds[0], buf, sizeof buf) > 0) {
        }
        c->signaled = 0;
    }
    if (n > 0) pthread_cond_broadcast(&c->space);
    return n;
}

int chan_pop(EventChan *c, EngineEvent *out, int max) {
    if (max <= 0) return 0;
    pthread_mutex_lock(&c->mu);
    int n = pop_locked(c, out, max);
    pthread_mutex_unlock(&c->mu);
    return n;
}

int chan_wait(EventChan *c, EngineEvent *out, int max, int timeout_ms) {
    if (max <= 0) return 0;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&c->mu);
    while (c->count == 0 && !c->closed && timeout_ms != 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&c->nonempty, &c->mu);
        } else if (pthread_cond_timedwait(&c->nonempty, &c->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    int n = pop_locked(c, out, max);
    pthread_mutex_unlock(&c->mu);
    return n;
}

int chan_count(EventChan *c) {
    pthread_mutex_lock(&c->mu);
    int n = c->count;
    pthread_mutex_unlock(&c->mu);
    return n;
}
