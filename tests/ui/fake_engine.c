/* A scripted stand-in for infer/engine.c (same API, engine.h) used by the UI tests that need
 * exact control: replies of a set length at a set rate, so that Ctrl-C in the middle of a long
 * reply, a resize mid-reply and the redraw rate can be tested deterministically. The real
 * program is tested with a real model as well (the tmux scripts in tests/ui).
 *
 * Environment: BN_FAKE_TOKENS (reply length, default 40), BN_FAKE_RATE (tokens/s, default
 * 200), BN_FAKE_LOAD_MS (load time, default 300), BN_FAKE_STATS_MS (interval of the figures
 * events, default 250). A model "loads" when its path is readable.
 * A reply echoes the last user message, then counts words: "w1 w2 ...". */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "infer/engine.h"

enum { RING = 4096 };

typedef struct {
    int kind; /* 1 load, 2 submit */
    uint64_t id;
    char *path;
    char *last_user;
    int n_turns;
} Req;

struct Engine {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Req queue[16];
    int q_head, q_len;
    bool stop;
    atomic_bool cancel;
    EngineEvent ring[RING];
    int r_head, r_len;
    int wake[2];
    uint64_t next_id;
    EngineModelInfo info;
    bool loaded;
    int ctx_used;
};

const char *stop_reason_name(StopReason r) {
    static const char *n[] = {"eos", "max_tokens", "ctx_full", "cancelled", "error"};
    return (unsigned)r < 5 ? n[r] : "?";
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int env_int(const char *name, int def) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static void push(Engine *e, const EngineEvent *ev) {
    pthread_mutex_lock(&e->mu);
    while (e->r_len == RING && !e->stop) {
        pthread_mutex_unlock(&e->mu);
        usleep(1000); /* the ring is full: back-pressure, as the real engine does */
        pthread_mutex_lock(&e->mu);
    }
    bool was_empty = e->r_len == 0;
    if (e->r_len < RING) {
        e->ring[(e->r_head + e->r_len) % RING] = *ev;
        e->r_len++;
    }
    pthread_mutex_unlock(&e->mu);
    if (was_empty) {
        char b = 1;
        ssize_t w = write(e->wake[1], &b, 1);
        (void)w;
    }
}

static void do_load(Engine *e, Req *r) {
    EngineEvent ev;
    memset(&ev, 0, sizeof ev);
    ev.req = r->id;
    if (access(r->path, R_OK) != 0) {
        ev.type = EV_LOAD_FAILED;
        snprintf(ev.u.error.msg, sizeof ev.u.error.msg, "%s: %s", r->path, strerror(errno));
        push(e, &ev);
        return;
    }
    int ms = env_int("BN_FAKE_LOAD_MS", 300);
    for (int i = 0; i <= 10; i++) {
        ev.type = EV_LOAD_PROGRESS;
        ev.u.progress.frac = i / 10.0f;
        snprintf(ev.u.progress.stage, sizeof ev.u.progress.stage, "layer %d/10", i);
        push(e, &ev);
        usleep((useconds_t)ms * 100);
    }
    memset(&ev, 0, sizeof ev);
    ev.req = r->id;
    ev.type = EV_LOADED;
    const char *b = strrchr(r->path, '/');
    snprintf(ev.u.loaded.name, sizeof ev.u.loaded.name, "%s", b ? b + 1 : r->path);
    snprintf(ev.u.loaded.path, sizeof ev.u.loaded.path, "%s", r->path);
    /* A long description with a part in parentheses, as the CPU backend's can be: the status
     * bar shows the short form, /show the whole. */
    snprintf(ev.u.loaded.backend, sizeof ev.u.loaded.backend,
             "fake engine (scripted replies: no model runs)");
    ev.u.loaded.ctx_size = 2048;
    pthread_mutex_lock(&e->mu);
    e->info = ev.u.loaded;
    e->loaded = true;
    e->ctx_used = 0;
    pthread_mutex_unlock(&e->mu);
    push(e, &ev);
}

static void do_submit(Engine *e, Req *r) {
    EngineEvent ev;
    int total = env_int("BN_FAKE_TOKENS", 40), rate = env_int("BN_FAKE_RATE", 200);
    double stats_s = env_int("BN_FAKE_STATS_MS", 250) / 1000.0;
    double t0 = now_s(), first = 0, last_stats = t0;
    int prompt = 10 + (int)strlen(r->last_user) / 4;
    EngineStats st = {.prompt_tokens = prompt, .ctx_size = 2048};
    StopReason reason = STOP_MAX_TOKENS;
    char word[ENGINE_TOKEN_TEXT];
    for (int i = 0; i < total + 1; i++) {
        if (atomic_load(&e->cancel)) {
            reason = STOP_CANCELLED;
            break;
        }
        if (i == 0) snprintf(word, sizeof word, "You said: %.80s.", r->last_user);
        else snprintf(word, sizeof word, " w%d", i);
        /* Pace to the set rate. */
        double due = t0 + (double)(i + 1) / rate;
        double now = now_s();
        if (due > now) usleep((useconds_t)((due - now) * 1e6));
        if (i == 0) first = now_s();
        memset(&ev, 0, sizeof ev);
        ev.type = EV_TOKEN;
        ev.req = r->id;
        ev.u.token.len = (int)strlen(word);
        memcpy(ev.u.token.text, word, (size_t)ev.u.token.len);
        push(e, &ev);
        st.gen_tokens = i + 1;
        double el = now_s() - first;
        st.ttft_ms = (first - t0) * 1000;
        st.gen_tok_s = el > 0 ? (st.gen_tokens - 1) / el : 0;
        st.ctx_used = e->ctx_used + prompt + st.gen_tokens;
        if (now_s() - last_stats > stats_s) {
            memset(&ev, 0, sizeof ev);
            ev.type = EV_STATS;
            ev.req = r->id;
            ev.u.stats = st;
            push(e, &ev);
            last_stats = now_s();
        }
    }
    e->ctx_used = st.ctx_used;
    memset(&ev, 0, sizeof ev);
    ev.type = EV_DONE;
    ev.req = r->id;
    ev.u.done.reason = reason;
    ev.u.done.stats = st;
    push(e, &ev);
}

static void *run(void *arg) {
    Engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->q_len && !e->stop) pthread_cond_wait(&e->cv, &e->mu);
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            return NULL;
        }
        Req r = e->queue[e->q_head];
        e->q_head = (e->q_head + 1) % 16;
        e->q_len--;
        pthread_mutex_unlock(&e->mu);
        atomic_store(&e->cancel, false);
        if (r.kind == 1) do_load(e, &r);
        else do_submit(e, &r);
        free(r.path);
        free(r.last_user);
    }
}

static uint64_t enqueue(Engine *e, Req r) {
    pthread_mutex_lock(&e->mu);
    r.id = ++e->next_id;
    if (e->q_len < 16) {
        e->queue[(e->q_head + e->q_len) % 16] = r;
        e->q_len++;
    }
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return r.id;
}

Engine *engine_create(const EngineOptions *opts, Err *err) {
    Engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pipe(e->wake)) {
        err_set(err, "pipe: %s", strerror(errno));
        free(e);
        return NULL;
    }
    fcntl(e->wake[0], F_SETFL, O_NONBLOCK);
    fcntl(e->wake[1], F_SETFL, O_NONBLOCK);
    if (opts->model_path) enqueue(e, (Req){.kind = 1, .path = strdup(opts->model_path)});
    pthread_create(&e->thread, NULL, run, e);
    return e;
}

void engine_destroy(Engine *e) {
    if (!e) return;
    atomic_store(&e->cancel, true);
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    for (int i = 0; i < e->q_len; i++) {
        free(e->queue[(e->q_head + i) % 16].path);
        free(e->queue[(e->q_head + i) % 16].last_user);
    }
    close(e->wake[0]);
    close(e->wake[1]);
    free(e);
}

int engine_event_fd(const Engine *e) { return e->wake[0]; }

int engine_poll(Engine *e, EngineEvent *out, int max) {
    char buf[64];
    while (read(e->wake[0], buf, sizeof buf) > 0) {}
    pthread_mutex_lock(&e->mu);
    int n = 0;
    while (n < max && e->r_len) {
        out[n++] = e->ring[e->r_head];
        e->r_head = (e->r_head + 1) % RING;
        e->r_len--;
    }
    bool more = e->r_len > 0;
    pthread_mutex_unlock(&e->mu);
    if (more) {
        char b = 1;
        ssize_t w = write(e->wake[1], &b, 1);
        (void)w;
    }
    return n;
}

int engine_wait(Engine *e, EngineEvent *out, int max, int timeout_ms) {
    double end = now_s() + timeout_ms / 1000.0;
    for (;;) {
        int n = engine_poll(e, out, max);
        if (n || (timeout_ms >= 0 && now_s() > end)) return n;
        usleep(1000);
    }
}

uint64_t engine_load(Engine *e, const char *path) {
    return enqueue(e, (Req){.kind = 1, .path = strdup(path)});
}

uint64_t engine_submit(Engine *e, const ChatTurn *turns, int n_turns, const SamplerParams *p) {
    pthread_mutex_lock(&e->mu);
    bool loaded = e->loaded;
    pthread_mutex_unlock(&e->mu);
    if (!loaded) {
        EngineEvent ev;
        memset(&ev, 0, sizeof ev);
        ev.type = EV_ERROR;
        snprintf(ev.u.error.msg, sizeof ev.u.error.msg, "no model is loaded");
        push(e, &ev);
        return 0;
    }
    const char *last = "";
    for (int i = 0; i < n_turns; i++)
        if (turns[i].role == ROLE_USER) last = turns[i].text;
    return enqueue(e, (Req){.kind = 2, .last_user = strdup(last), .n_turns = n_turns});
}

void engine_cancel(Engine *e) { atomic_store(&e->cancel, true); }

int engine_model_info(Engine *e, EngineModelInfo *out) {
    pthread_mutex_lock(&e->mu);
    int ok = e->loaded;
    if (ok) *out = e->info;
    pthread_mutex_unlock(&e->mu);
    return ok;
}
