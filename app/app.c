/* The chat controller (see app.h).
 *
 * How a message flows:
 *  1. The UI's readline handler passes the typed line to app_submit_line().
 *  2. A "/command" goes to the command table (app/commands.c), which changes settings or
 *     starts an action and returns reaction flags.
 *  3. Other text becomes a MSG_USER in the transcript. It is committed to the history before
 *     generation starts, then the whole conversation (system prompt + turns) is handed to
 *     engine_submit(); the engine reuses its KV cache for the common prefix.
 *  4. The engine thread streams EV_TOKEN / EV_STATS events; app_process_events() appends the
 *     text to the growing MSG_ASSISTANT and updates the live figures. The reply is
 *     checkpointed to the history every 2 s (app_tick), so a crash loses seconds.
 *  5. EV_DONE finalises the reply with its stop reason and figures; a cancelled reply keeps
 *     its partial text, marked interrupted.
 * Events that carry an old request id (a reply cancelled before /new) are dropped. */
#include "app/app.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "app/commands.h"
#include "app/commands_cli.h"
#include "app/store.h"
#include "infer/engine.h"
#include "infer/sampler.h"

enum { CHECKPOINT_MS = 2000 };

struct App {
    Engine *engine;
    AppConfig cfg;
    AppTranscript tr;
    uint64_t next_serial;

    /* model */
    EngineModelInfo model;
    bool model_loaded;
    bool loading;
    float load_frac;
    char load_stage[48];
    char load_name[128];
    char pending_load_path[1024]; /* model to load when AppOptions.load_model was false */
    uint64_t load_req;

    /* generation */
    uint64_t gen_req;
    int reply_idx;              /* index of the streaming MSG_ASSISTANT, -1 if none */
    bool submit_when_loaded;    /* a message typed while the model was loading */
    EngineStats stats;          /* live, then the last reply's final figures */
    int64_t last_checkpoint_ms;
    unsigned checkpoint_version;

    AppSampling sampling;
    char *system_prompt;

    /* history */
    Store *store;
    bool history_ok;
    char history_msg[200];
    int64_t session_id;
    char session_title[128];
    int64_t leaf_id;            /* last stored message of the active branch */

    char hint[256];
    unsigned hint_serial;
    char browser_query[256];
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void copy_str(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    if (s && s[1]) return s + 1;
    return path;
}

/* ---- transcript ---------------------------------------------------------------------------- */

static void msg_free(AppMessage *m) {
    free(m->text);
    memset(m, 0, sizeof *m);
}

void app_transcript_free(AppTranscript *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) msg_free(&t->msgs[i]);
    free(t->msgs);
    memset(t, 0, sizeof *t);
}

static AppMessage *tr_push(AppTranscript *t, uint64_t *serial, AppMsgKind kind) {
    if (t->n == t->cap) {
        int ncap = t->cap ? t->cap * 2 : 32;
        AppMessage *nm = realloc(t->msgs, (size_t)ncap * sizeof *nm);
        if (!nm) return NULL;
        t->msgs = nm;
        t->cap = ncap;
    }
    AppMessage *m = &t->msgs[t->n++];
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->serial = ++*serial;
    m->created_at = now_ms();
    m->text = calloc(1, 1);
    m->cap = 1;
    return m;
}

static int msg_append(AppMessage *m, const char *s, size_t n) {
    if (m->len + n + 1 > m->cap) {
        size_t ncap = m->cap ? m->cap : 64;
        while (ncap < m->len + n + 1) ncap *= 2;
        char *nt = realloc(m->text, ncap);
        if (!nt) return -1;
        m->text = nt;
        m->cap = ncap;
    }
    memcpy(m->text + m->len, s, n);
    m->len += n;
    m->text[m->len] = 0;
    m->version++;
    return 0;
}

static void tr_remove(AppTranscript *t, int idx) {
    msg_free(&t->msgs[idx]);
    memmove(&t->msgs[idx], &t->msgs[idx + 1], (size_t)(t->n - idx - 1) * sizeof *t->msgs);
    t->n--;
    if (t->view_start > idx) t->view_start--;
    t->generation++;
}

void app_note(App *a, AppMsgKind kind, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    AppMessage *m = tr_push(&a->tr, &a->next_serial, kind);
    if (m) msg_append(m, buf, strlen(buf));
}

void app_set_hint(App *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->hint, sizeof a->hint, fmt, ap);
    va_end(ap);
    a->hint_serial++;
}

const char *app_hint(const App *a, unsigned *serial) {
    if (serial) *serial = a->hint_serial;
    return a->hint;
}

/* ---- sampling ---------------------------------------------------------------------------- */

static AppSampling sampling_from(const SamplerParams *p) {
    AppSampling s = {
        .temperature = p->temperature, .top_p = p->top_p, .min_p = p->min_p,
        .repeat_penalty = p->repeat_penalty, .top_k = p->top_k, .max_tokens = p->max_tokens,
        .seed = (int64_t)p->seed, .seed_set = false,
    };
    return s;
}

static SamplerParams sampler_from(const AppSampling *s) {
    SamplerParams p = sampler_params_default();
    p.temperature = (float)s->temperature;
    p.top_p = (float)s->top_p;
    p.min_p = (float)s->min_p;
    p.repeat_penalty = (float)s->repeat_penalty;
    p.top_k = s->top_k;
    p.max_tokens = s->max_tokens;
    if (s->seed_set) p.seed = (uint64_t)s->seed;
    else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    }
    return p;
}

static StoreSampling store_sampling(const AppSampling *s) {
    StoreSampling o = {s->temperature, s->top_p, s->min_p, s->repeat_penalty,
                       s->top_k, s->max_tokens, s->seed_set ? s->seed : -1};
    return o;
}

static AppSampling app_sampling_of(const StoreSampling *s, const AppSampling *fallback) {
    AppSampling o = *fallback;
    if (s->temperature >= 0) o.temperature = s->temperature;
    if (s->top_p > 0) o.top_p = s->top_p;
    if (s->min_p >= 0) o.min_p = s->min_p;
    if (s->repeat_penalty > 0) o.repeat_penalty = s->repeat_penalty;
    if (s->top_k >= 0) o.top_k = s->top_k;
    if (s->max_tokens > 0) o.max_tokens = s->max_tokens;
    o.seed_set = s->seed >= 0;
    if (o.seed_set) o.seed = s->seed;
    return o;
}

/* ---- history ---------------------------------------------------------------------------- */

static void history_failed(App *a, const char *what, const Err *err) {
    if (!a->history_ok) return;
    a->history_ok = false;
    snprintf(a->history_msg, sizeof a->history_msg, "history not saved: %s: %s", what,
             err ? err->msg : "");
    app_note(a, MSG_ERROR, "History is not being saved (%s: %s). The chat goes on in memory.",
             what, err ? err->msg : "");
}

static void make_title(const char *text, char *out, size_t cap) {
    size_t n = 0;
    const char *p = text;
    while (*p == ' ' || *p == '\n' || *p == '\t') p++;
    /* First line, at most ~60 bytes, cut at a UTF-8 character boundary. */
    while (p[n] && p[n] != '\n' && n < 60 && n + 1 < cap) n++;
    while (n > 0 && p[n] && ((unsigned char)p[n] & 0xC0) == 0x80) n--;
    memcpy(out, p, n);
    out[n] = 0;
    if (!n) copy_str(out, cap, "(untitled)");
}

static int ensure_session(App *a, const char *first_text) {
    if (!a->history_ok) return -1;
    if (a->session_id) return 0;
    StoreSession s;
    memset(&s, 0, sizeof s);
    char title[128];
    make_title(first_text, title, sizeof title);
    s.title = title;
    s.model_name = a->model.name;
    s.model_path = a->model.path;
    s.system_prompt = a->system_prompt ? a->system_prompt : "";
    s.sampling = store_sampling(&a->sampling);
    Err err = {{0}};
    int64_t id = store_session_create(a->store, &s, &err);
    if (id <= 0) {
        history_failed(a, "creating the session", &err);
        return -1;
    }
    a->session_id = id;
    a->leaf_id = 0;
    copy_str(a->session_title, sizeof a->session_title, title);
    return 0;
}

static void fill_store_msg(App *a, const AppMessage *m, StoreMessage *sm) {
    memset(sm, 0, sizeof *sm);
    sm->id = m->store_id;
    sm->session_id = a->session_id;
    copy_str(sm->role, sizeof sm->role, m->kind == MSG_USER ? "user" : "assistant");
    sm->text = m->text;
    sm->created_at = m->created_at;
    sm->prompt_tokens = m->prompt_tokens;
    sm->reply_tokens = m->gen_tokens;
    sm->ttft_ms = m->ttft_ms;
    sm->tok_per_s = m->tok_s;
    copy_str(sm->stop_reason, sizeof sm->stop_reason, m->stop_reason);
    sm->interrupted = m->streaming || m->interrupted;
    copy_str(sm->backend, sizeof sm->backend, m->backend);
    copy_str(sm->model_name, sizeof sm->model_name, m->model);
    sm->sampling = store_sampling(&m->sampling);
}

/* Adds a message (user before generation, assistant as soon as it starts) to the active
 * branch. */
static void history_add(App *a, AppMessage *m) {
    if (!a->history_ok || ensure_session(a, m->text)) return;
    StoreMessage sm;
    fill_store_msg(a, m, &sm);
    sm.parent_id = a->leaf_id;
    Err err = {{0}};
    int64_t id = store_message_add(a->store, &sm, &err);
    if (id <= 0) {
        history_failed(a, "saving a message", &err);
        return;
    }
    m->store_id = id;
    a->leaf_id = id;
    if (store_set_active_leaf(a->store, a->session_id, id, &err))
        history_failed(a, "saving the active branch", &err);
}

static void history_update(App *a, AppMessage *m) {
    if (!a->history_ok || !m->store_id) return;
    StoreMessage sm;
    fill_store_msg(a, m, &sm);
    Err err = {{0}};
    if (store_message_update(a->store, &sm, &err)) history_failed(a, "saving the reply", &err);
}

static void history_save_settings(App *a) {
    if (!a->history_ok || !a->session_id) return;
    StoreSession s;
    memset(&s, 0, sizeof s);
    s.id = a->session_id;
    s.title = a->session_title;
    s.model_name = a->model.name;
    s.model_path = a->model.path;
    s.system_prompt = a->system_prompt ? a->system_prompt : "";
    s.sampling = store_sampling(&a->sampling);
    s.active_leaf = a->leaf_id;
    Err err = {{0}};
    if (store_session_update_settings(a->store, &s, &err))
        history_failed(a, "saving the settings", &err);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

App *app_create(const AppConfig *cfg, const AppOptions *opt, char *errbuf, size_t errlen) {
    App *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    a->cfg = *cfg;
    a->reply_idx = -1;

    SamplerParams sp = sampler_params_default();
    a->sampling = sampling_from(&sp);
    if (!isnan(cfg->temp)) a->sampling.temperature = cfg->temp;
    if (!isnan(cfg->top_p)) a->sampling.top_p = cfg->top_p;
    if (!isnan(cfg->min_p)) a->sampling.min_p = cfg->min_p;
    if (!isnan(cfg->repeat_penalty)) a->sampling.repeat_penalty = cfg->repeat_penalty;
    if (cfg->top_k >= 0) a->sampling.top_k = cfg->top_k;
    if (cfg->max_tokens > 0) a->sampling.max_tokens = cfg->max_tokens;
    if (cfg->seed_set) a->sampling.seed = cfg->seed, a->sampling.seed_set = true;
    if (cfg->system && *cfg->system) a->system_prompt = strdup(cfg->system);

    /* History first: a broken database is a message, never a reason to stop. */
    if (cfg->no_history) {
        a->history_ok = false;
        copy_str(a->history_msg, sizeof a->history_msg, "history off (--no-history)");
    } else {
        Err err = {{0}};
        a->store = store_open(cfg->db_path, &err);
        if (a->store) {
            a->history_ok = true;
        } else {
            a->history_ok = false;
            snprintf(a->history_msg, sizeof a->history_msg, "history not saved: %s", err.msg);
            app_note(a, MSG_ERROR,
                     "The history database cannot be used (%s). The chat works, but nothing "
                     "is saved.", err.msg);
        }
    }

    const char *model = cfg->model ? cfg->model : app_default_model_path();
    EngineOptions eo;
    memset(&eo, 0, sizeof eo);
    eo.infer.backend = !strcmp(cfg->backend ? cfg->backend : "auto", "cpu")    ? BACKEND_CPU
                       : !strcmp(cfg->backend ? cfg->backend : "auto", "cuda") ? BACKEND_CUDA
                                                                               : BACKEND_AUTO;
    eo.infer.threads = cfg->threads;
    eo.infer.ctx = cfg->ctx;
    bool load_now = !opt || opt->load_model;
    eo.model_path = load_now ? model : NULL;
    Err err = {{0}};
    a->engine = engine_create(&eo, &err);
    if (!a->engine) {
        snprintf(errbuf, errlen, "cannot start the engine: %s", err.msg);
        app_destroy(a);
        return NULL;
    }
    if (!model) {
        app_note(a, MSG_ERROR,
                 "No model given and the demo model (assets/bitnet-demo.gguf) was not found. "
                 "Use /load PATH to load one.");
    } else if (load_now) {
        a->loading = true;
        a->load_req = 1;
        copy_str(a->load_name, sizeof a->load_name, base_name(model));
        copy_str(a->load_stage, sizeof a->load_stage, "starting");
    } else {
        copy_str(a->pending_load_path, sizeof a->pending_load_path, model);
    }
    return a;
}

void app_ensure_model(App *a) {
    if (!a->pending_load_path[0] || a->model_loaded || a->loading) return;
    app_load_model(a, a->pending_load_path);
    a->pending_load_path[0] = 0;
}

void app_destroy(App *a) {
    if (!a) return;
    /* A reply still streaming is saved as interrupted before the engine goes away. */
    if (a->reply_idx >= 0 && a->reply_idx < a->tr.n) {
        AppMessage *m = &a->tr.msgs[a->reply_idx];
        m->streaming = false;
        m->interrupted = true;
        copy_str(m->stop_reason, sizeof m->stop_reason, "cancelled");
        history_update(a, m);
    }
    engine_destroy(a->engine);
    store_close(a->store);
    app_transcript_free(&a->tr);
    free(a->system_prompt);
    free(a);
}

int app_event_fd(const App *a) { return engine_event_fd(a->engine); }
bool app_busy(const App *a) { return a->gen_req != 0; }
const AppTranscript *app_transcript(const App *a) { return &a->tr; }
bool app_history_ok(const App *a) { return a->history_ok; }

void app_status(const App *a, AppStatus *o) {
    memset(o, 0, sizeof *o);
    copy_str(o->model, sizeof o->model, a->model_loaded ? a->model.name : "");
    copy_str(o->backend, sizeof o->backend, a->model_loaded ? a->model.backend : "");
    o->model_loaded = a->model_loaded;
    o->loading = a->loading;
    o->load_frac = a->load_frac;
    copy_str(o->load_stage, sizeof o->load_stage, a->load_stage);
    copy_str(o->load_name, sizeof o->load_name, a->load_name);
    o->generating = a->gen_req != 0;
    o->tok_s = a->stats.gen_tok_s;
    o->ttft_ms = a->stats.ttft_ms;
    o->gen_tokens = a->stats.gen_tokens;
    o->prompt_tokens = a->stats.prompt_tokens;
    o->ctx_used = a->stats.ctx_used;
    o->ctx_size = a->stats.ctx_size ? a->stats.ctx_size : a->model.ctx_size;
    o->dropped_turns = a->stats.dropped_turns;
    o->sampling = a->sampling;
    o->history_ok = a->history_ok;
    copy_str(o->history_msg, sizeof o->history_msg, a->history_msg);
    o->session_id = a->session_id;
    copy_str(o->session_title, sizeof o->session_title, a->session_title);
    o->has_system = a->system_prompt && *a->system_prompt;
}

/* ---- generation ---------------------------------------------------------------------------- */

/* Sends the conversation (system prompt + user/assistant turns) to the engine and opens a new
 * streaming reply. */
static int start_reply(App *a) {
    int n = 0;
    ChatTurn *turns = malloc((size_t)(a->tr.n + 1) * sizeof *turns);
    if (!turns) {
        app_set_hint(a, "out of memory");
        return REACT_STATUS;
    }
    if (a->system_prompt && *a->system_prompt)
        turns[n++] = (ChatTurn){ROLE_SYSTEM, a->system_prompt};
    for (int i = 0; i < a->tr.n; i++) {
        const AppMessage *m = &a->tr.msgs[i];
        if (m->kind == MSG_USER) turns[n++] = (ChatTurn){ROLE_USER, m->text};
        else if (m->kind == MSG_ASSISTANT && m->len) turns[n++] = (ChatTurn){ROLE_ASSISTANT, m->text};
    }
    SamplerParams sp = sampler_from(&a->sampling);
    uint64_t req = engine_submit(a->engine, turns, n, &sp);
    free(turns);
    if (!req) return REACT_CHAT | REACT_STATUS; /* an EV_ERROR says why */
    a->gen_req = req;
    memset(&a->stats, 0, sizeof a->stats);
    AppMessage *r = tr_push(&a->tr, &a->next_serial, MSG_ASSISTANT);
    if (!r) {
        engine_cancel(a->engine);
        return REACT_STATUS;
    }
    r->streaming = true;
    r->sampling = a->sampling;
    r->sampling.seed = (int64_t)sp.seed;
    r->has_sampling = true;
    copy_str(r->model, sizeof r->model, a->model.name);
    copy_str(r->backend, sizeof r->backend, a->model.backend);
    a->reply_idx = a->tr.n - 1;
    history_add(a, r);
    a->last_checkpoint_ms = mono_ms();
    a->checkpoint_version = r->version;
    return REACT_CHAT | REACT_STATUS;
}

static int send_message(App *a, const char *text) {
    if (a->gen_req) {
        app_set_hint(a, "A reply is being written: wait, or press Esc / Ctrl-C to stop it.");
        return REACT_STATUS | REACT_KEEP_INPUT;
    }
    if (!a->model_loaded && !a->loading) {
        app_set_hint(a, "No model is loaded: use /load PATH.");
        return REACT_STATUS | REACT_KEEP_INPUT;
    }
    AppMessage *m = tr_push(&a->tr, &a->next_serial, MSG_USER);
    if (!m || msg_append(m, text, strlen(text))) {
        app_set_hint(a, "out of memory");
        return REACT_STATUS;
    }
    history_add(a, m);
    if (!a->model_loaded) {
        a->submit_when_loaded = true;
        app_set_hint(a, "The model is still loading; the reply starts when it is ready.");
        return REACT_CHAT | REACT_STATUS;
    }
    return start_reply(a) | REACT_CHAT;
}

int app_submit_line(App *a, const char *line) {
    const char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '/' && p[1] != '/' && p[1] != ' ' && p[1]) return commands_run(a, p);
    /* "//text" sends "/text" literally. */
    if (*p == '/' && p[1] == '/') line = p + 1;
    bool blank = true;
    for (const char *q = line; *q; q++)
        if (*q != ' ' && *q != '\n' && *q != '\t') blank = false;
    if (blank) return REACT_NONE;
    return send_message(a, line);
}

int app_cancel(App *a) {
    if (a->gen_req) {
        engine_cancel(a->engine);
        return REACT_STATUS;
    }
    if (a->submit_when_loaded) {
        a->submit_when_loaded = false;
        app_set_hint(a, "Cancelled: the message will not be answered.");
        return REACT_STATUS;
    }
    return REACT_NONE;
}

static void finish_reply(App *a, StopReason reason, const EngineStats *st) {
    if (a->reply_idx < 0 || a->reply_idx >= a->tr.n) {
        a->gen_req = 0;
        a->reply_idx = -1;
        return;
    }
    AppMessage *m = &a->tr.msgs[a->reply_idx];
    m->streaming = false;
    m->interrupted = reason == STOP_CANCELLED;
    copy_str(m->stop_reason, sizeof m->stop_reason, stop_reason_name(reason));
    m->gen_tokens = st->gen_tokens;
    m->prompt_tokens = st->prompt_tokens;
    m->ttft_ms = st->ttft_ms;
    m->tok_s = st->gen_tok_s;
    m->version++;
    if (reason == STOP_ERROR && m->len == 0) {
        /* Nothing was written: the failure is shown as an error note instead. */
        if (m->store_id) history_update(a, m);
        tr_remove(&a->tr, a->reply_idx);
    } else {
        history_update(a, m);
    }
    if (st->dropped_turns > 0)
        app_set_hint(a, "The conversation is longer than the context: the %d oldest turn%s "
                     "were left out.", st->dropped_turns, st->dropped_turns == 1 ? "" : "s");
    else if (reason == STOP_CTX_FULL)
        app_set_hint(a, "The context window is full: start a /new session to go on.");
    a->gen_req = 0;
    a->reply_idx = -1;
}

int app_process_events(App *a) {
    EngineEvent ev[64];
    int react = 0, n;
    while ((n = engine_poll(a->engine, ev, 64)) > 0) {
        for (int i = 0; i < n; i++) {
            const EngineEvent *e = &ev[i];
            switch (e->type) {
            case EV_LOAD_PROGRESS:
                if (e->req != a->load_req) break;
                a->loading = true;
                a->load_frac = e->u.progress.frac;
                copy_str(a->load_stage, sizeof a->load_stage, e->u.progress.stage);
                react |= REACT_STATUS;
                break;
            case EV_LOADED: {
                bool switched = a->model_loaded;
                a->model = e->u.loaded;
                a->model_loaded = true;
                if (e->req == a->load_req) a->loading = false;
                memset(&a->stats, 0, sizeof a->stats);
                a->stats.ctx_size = a->model.ctx_size;
                app_note(a, MSG_NOTE, "%s %s (%s, %d-token context).",
                         switched ? "Switched to" : "Loaded", a->model.name, a->model.backend,
                         a->model.ctx_size);
                history_save_settings(a);
                react |= REACT_CHAT | REACT_STATUS;
                if (a->submit_when_loaded) {
                    a->submit_when_loaded = false;
                    react |= start_reply(a);
                }
                break;
            }
            case EV_LOAD_FAILED:
                if (e->req == a->load_req) a->loading = false;
                if (a->model_loaded)
                    app_note(a, MSG_ERROR, "Could not load %s: %s. Still using %s.",
                             a->load_name, e->u.error.msg, a->model.name);
                else
                    app_note(a, MSG_ERROR, "Could not load %s: %s. Use /load PATH to try another "
                             "model.", a->load_name, e->u.error.msg);
                if (a->submit_when_loaded) {
                    a->submit_when_loaded = false;
                    app_set_hint(a, "The message was not answered: no model is loaded.");
                }
                react |= REACT_CHAT | REACT_STATUS;
                break;
            case EV_TOKEN:
                if (e->req != a->gen_req || a->reply_idx < 0) break;
                msg_append(&a->tr.msgs[a->reply_idx], e->u.token.text, (size_t)e->u.token.len);
                react |= REACT_CHAT;
                break;
            case EV_STATS:
                if (e->req != a->gen_req) break;
                a->stats = e->u.stats;
                if (a->reply_idx >= 0) {
                    AppMessage *m = &a->tr.msgs[a->reply_idx];
                    m->gen_tokens = a->stats.gen_tokens;
                    m->tok_s = a->stats.gen_tok_s;
                    m->ttft_ms = a->stats.ttft_ms;
                    m->prompt_tokens = a->stats.prompt_tokens;
                    m->version++;
                }
                react |= REACT_STATUS | REACT_CHAT;
                break;
            case EV_DONE:
                if (e->req != a->gen_req) break;
                a->stats = e->u.done.stats;
                finish_reply(a, e->u.done.reason, &e->u.done.stats);
                react |= REACT_CHAT | REACT_STATUS;
                break;
            case EV_ERROR:
                if (e->req && e->req != a->gen_req && e->req != a->load_req) break;
                app_note(a, MSG_ERROR, "%s", e->u.error.msg);
                react |= REACT_CHAT | REACT_STATUS;
                break;
            }
        }
        if (n < 64) break;
    }
    return react;
}

int app_tick(App *a) {
    if (!a->gen_req || a->reply_idx < 0) return 0;
    int64_t t = mono_ms();
    AppMessage *m = &a->tr.msgs[a->reply_idx];
    if (t - a->last_checkpoint_ms >= CHECKPOINT_MS && m->version != a->checkpoint_version) {
        history_update(a, m);
        a->last_checkpoint_ms = t;
        a->checkpoint_version = m->version;
    }
    return 0;
}

/* ---- settings and actions -------------------------------------------------------------- */

AppSampling app_get_sampling(const App *a) { return a->sampling; }

int app_set_sampling(App *a, const AppSampling *s) {
    a->sampling = *s;
    history_save_settings(a);
    return REACT_STATUS;
}

const char *app_get_system(const App *a) { return a->system_prompt ? a->system_prompt : ""; }

int app_set_system(App *a, const char *text) {
    free(a->system_prompt);
    a->system_prompt = text && *text ? strdup(text) : NULL;
    history_save_settings(a);
    return REACT_STATUS;
}

int app_load_model(App *a, const char *path) {
    if (a->gen_req) {
        app_set_hint(a, "Stop the reply first (Esc), then /load.");
        return REACT_STATUS;
    }
    a->load_req = engine_load(a->engine, path);
    a->loading = true;
    a->load_frac = 0;
    copy_str(a->load_name, sizeof a->load_name, base_name(path));
    copy_str(a->load_stage, sizeof a->load_stage, "starting");
    return REACT_STATUS;
}

static void reset_conversation(App *a) {
    app_transcript_free(&a->tr);
    a->tr.generation++;
    a->session_id = 0;
    a->leaf_id = 0;
    a->session_title[0] = 0;
    memset(&a->stats, 0, sizeof a->stats);
    a->stats.ctx_size = a->model.ctx_size;
}

int app_new_session(App *a) {
    if (a->gen_req) {
        app_set_hint(a, "Stop the reply first (Esc), then /new.");
        return REACT_STATUS;
    }
    uint64_t gen = a->tr.generation;
    reset_conversation(a);
    a->tr.generation = gen + 1;
    app_set_hint(a, "New session: the model, settings and system prompt are kept.");
    return REACT_REDRAW | REACT_CHAT | REACT_STATUS;
}

int app_regenerate(App *a) {
    if (a->gen_req) {
        app_set_hint(a, "A reply is being written: stop it first (Esc).");
        return REACT_STATUS;
    }
    if (!a->model_loaded) {
        app_set_hint(a, "No model is loaded: use /load PATH.");
        return REACT_STATUS;
    }
    int last_asst = -1, last_user = -1;
    for (int i = a->tr.n - 1; i >= 0; i--) {
        if (a->tr.msgs[i].kind == MSG_ASSISTANT && last_asst < 0 && last_user < 0) last_asst = i;
        if (a->tr.msgs[i].kind == MSG_USER) {
            last_user = i;
            break;
        }
    }
    if (last_user < 0) {
        app_set_hint(a, "Nothing to regenerate yet: send a message first.");
        return REACT_STATUS;
    }
    /* The old reply stays in the history as another branch under the same user message. */
    if (last_asst > last_user) tr_remove(&a->tr, last_asst);
    a->leaf_id = a->tr.msgs[last_user].store_id;
    return start_reply(a) | REACT_CHAT | REACT_REDRAW;
}

int app_clear_view(App *a) {
    a->tr.view_start = a->tr.n;
    a->tr.generation++;
    return REACT_REDRAW | REACT_CHAT;
}

int app_rename_session(App *a, const char *title) {
    if (!a->session_id) {
        app_set_hint(a, "Nothing saved yet: the session gets its name with the first message.");
        return REACT_STATUS;
    }
    char why[256];
    if (app_session_rename(a, a->session_id, title, why, sizeof why)) {
        app_set_hint(a, "Rename failed: %s", why);
        return REACT_STATUS;
    }
    copy_str(a->session_title, sizeof a->session_title, title);
    app_set_hint(a, "Session renamed to \"%s\".", a->session_title);
    return REACT_STATUS;
}

int app_open_browser(App *a, const char *query) {
    copy_str(a->browser_query, sizeof a->browser_query, query);
    return REACT_BROWSER;
}

const char *app_browser_query(const App *a) { return a->browser_query; }

/* ---- export ---------------------------------------------------------------------------- */

static void fmt_time(int64_t ms, char *out, size_t cap) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

static int export_md(App *a, FILE *f) {
    fprintf(f, "# %s\n\n", a->session_title[0] ? a->session_title : "bitnet-chat conversation");
    if (a->model_loaded) fprintf(f, "Model: %s (%s)\n\n", a->model.name, a->model.backend);
    if (a->system_prompt) fprintf(f, "**System:** %s\n\n", a->system_prompt);
    for (int i = 0; i < a->tr.n; i++) {
        const AppMessage *m = &a->tr.msgs[i];
        if (m->kind != MSG_USER && m->kind != MSG_ASSISTANT) continue;
        char when[32];
        fmt_time(m->created_at, when, sizeof when);
        if (m->kind == MSG_USER) {
            fprintf(f, "## User (%s)\n\n%s\n\n", when, m->text);
        } else {
            fprintf(f, "## Assistant (%s)\n\n%s\n\n", when, m->text);
            fprintf(f, "*%s: %d tokens, %.1f tok/s, first token after %.0f ms, T %.2f%s*\n\n",
                    m->model, m->gen_tokens, m->tok_s, m->ttft_ms, m->sampling.temperature,
                    m->interrupted ? ", interrupted" : "");
        }
    }
    return ferror(f) ? -1 : 0;
}

/* A copy of s[0..n) with every malformed UTF-8 byte replaced by U+FFFD (a model may stream
 * any bytes; JSON must be valid UTF-8). Caller frees. */
static char *utf8_clean(const char *s, size_t n) {
    char *o = malloc(n * 3 + 1);
    if (!o) return NULL;
    size_t k = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        int need = c < 0x80 ? 0 : (c >= 0xC2 && c <= 0xDF) ? 1 : (c >= 0xE0 && c <= 0xEF) ? 2
                 : (c >= 0xF0 && c <= 0xF4) ? 3 : -1;
        bool ok = need >= 0 && i + (size_t)need < n;
        for (int j = 1; ok && j <= need; j++) ok = (u[i + j] & 0xC0) == 0x80;
        if (ok && need == 2) {
            unsigned v = ((c & 0x0F) << 12) | ((u[i + 1] & 0x3F) << 6);
            ok = v >= 0x800 && (v < 0xD800 || v > 0xDFFF);
        }
        if (ok && need == 3) {
            unsigned v = ((c & 0x07) << 18) | ((u[i + 1] & 0x3F) << 12);
            ok = v >= 0x10000 && v <= 0x10FFFF;
        }
        if (!ok) {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
            continue;
        }
        memcpy(o + k, s + i, (size_t)need + 1);
        k += (size_t)need + 1;
        i += (size_t)need + 1;
    }
    o[k] = 0;
    return o;
}

static json_t *json_text(const char *s, size_t n) {
    char *c = utf8_clean(s, n);
    json_t *j = json_string(c ? c : "");
    free(c);
    return j;
}

static int export_json(App *a, FILE *f) {
    json_t *root = json_object();
    json_object_set_new(root, "title", json_text(a->session_title, strlen(a->session_title)));
    json_object_set_new(root, "model", json_string(a->model_loaded ? a->model.name : ""));
    const char *sys = a->system_prompt ? a->system_prompt : "";
    json_object_set_new(root, "system", json_text(sys, strlen(sys)));
    json_t *arr = json_array();
    for (int i = 0; i < a->tr.n; i++) {
        const AppMessage *m = &a->tr.msgs[i];
        if (m->kind != MSG_USER && m->kind != MSG_ASSISTANT) continue;
        json_t *o = json_object();
        json_object_set_new(o, "role", json_string(m->kind == MSG_USER ? "user" : "assistant"));
        json_object_set_new(o, "text", json_text(m->text, m->len));
        json_object_set_new(o, "created_at", json_integer(m->created_at));
        if (m->kind == MSG_ASSISTANT) {
            json_object_set_new(o, "model", json_string(m->model));
            json_object_set_new(o, "tokens", json_integer(m->gen_tokens));
            json_object_set_new(o, "tok_per_s", json_real(m->tok_s));
            json_object_set_new(o, "ttft_ms", json_real(m->ttft_ms));
            json_object_set_new(o, "stop_reason", json_string(m->stop_reason));
            json_object_set_new(o, "interrupted", json_boolean(m->interrupted));
            json_object_set_new(o, "temperature", json_real(m->sampling.temperature));
        }
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "messages", arr);
    int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    fputc('\n', f);
    json_decref(root);
    return rc || ferror(f) ? -1 : 0;
}

int app_export(App *a, const char *format, const char *path, char *written, size_t wlen,
               char *why, size_t whylen) {
    bool json = format && !strcmp(format, "json");
    char def[256];
    if (!path || !*path) {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        snprintf(def, sizeof def, "bitnet-chat-%s.%s", stamp, json ? "json" : "md");
        path = def;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = json ? export_json(a, f) : export_md(a, f);
    if (fclose(f) || rc) {
        snprintf(why, whylen, "%s: write failed", path);
        return -1;
    }
    copy_str(written, wlen, path);
    return 0;
}

/* ---- saved sessions ---------------------------------------------------------------------- */

static int need_store(App *a, char *why, size_t whylen) {
    if (a->store) return 0;
    snprintf(why, whylen, "%s", a->history_msg[0] ? a->history_msg : "no history database");
    return -1;
}

static void row_from(const StoreSession *s, AppSessionRow *r) {
    memset(r, 0, sizeof *r);
    r->id = s->id;
    copy_str(r->title, sizeof r->title, s->title);
    copy_str(r->model, sizeof r->model, s->model_name);
    r->created_at = s->created_at;
    r->updated_at = s->updated_at;
    r->message_count = s->message_count;
}

int app_sessions(App *a, AppSessionRow **out, int *n, char *why, size_t whylen) {
    *out = NULL;
    *n = 0;
    if (need_store(a, why, whylen)) return -1;
    StoreSession *ss = NULL;
    int cnt = 0;
    Err err = {{0}};
    if (store_session_list(a->store, &ss, &cnt, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    AppSessionRow *rows = calloc((size_t)(cnt ? cnt : 1), sizeof *rows);
    if (!rows) {
        store_sessions_free(ss, cnt);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    for (int i = 0; i < cnt; i++) row_from(&ss[i], &rows[i]);
    store_sessions_free(ss, cnt);
    *out = rows;
    *n = cnt;
    return 0;
}

int app_search(App *a, const char *query, AppSearchHit **out, int *n, char *why, size_t whylen) {
    *out = NULL;
    *n = 0;
    if (need_store(a, why, whylen)) return -1;
    StoreSearchHit *hits = NULL;
    int cnt = 0;
    Err err = {{0}};
    if (store_search(a->store, query, &hits, &cnt, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    AppSearchHit *o = calloc((size_t)(cnt ? cnt : 1), sizeof *o);
    if (!o) {
        store_search_free(hits, cnt);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    for (int i = 0; i < cnt; i++) {
        o[i].session_id = hits[i].session_id;
        o[i].message_id = hits[i].message_id;
        copy_str(o[i].title, sizeof o[i].title, hits[i].session_title);
        copy_str(o[i].snippet, sizeof o[i].snippet, hits[i].snippet);
    }
    store_search_free(hits, cnt);
    *out = o;
    *n = cnt;
    return 0;
}

static int load_branch(App *a, int64_t id, StoreSession *sess, AppTranscript *out,
                       uint64_t *serial, char *why, size_t whylen) {
    Err err = {{0}};
    if (store_session_get(a->store, id, sess, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    StoreMessage *msgs = NULL;
    int cnt = 0;
    if (store_message_branch(a->store, id, &msgs, &cnt, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        store_session_clear(sess);
        return -1;
    }
    AppSampling fallback = a->sampling;
    for (int i = 0; i < cnt; i++) {
        const StoreMessage *sm = &msgs[i];
        AppMsgKind kind = !strcmp(sm->role, "user")        ? MSG_USER
                          : !strcmp(sm->role, "assistant") ? MSG_ASSISTANT
                                                           : MSG_NOTE;
        AppMessage *m = tr_push(out, serial, kind);
        if (!m) break;
        if (kind == MSG_NOTE) msg_append(m, "System prompt: ", 15);
        msg_append(m, sm->text ? sm->text : "", sm->text ? strlen(sm->text) : 0);
        m->store_id = sm->id;
        m->created_at = sm->created_at;
        m->prompt_tokens = sm->prompt_tokens;
        m->gen_tokens = sm->reply_tokens;
        m->ttft_ms = sm->ttft_ms;
        m->tok_s = sm->tok_per_s;
        copy_str(m->stop_reason, sizeof m->stop_reason, sm->stop_reason);
        m->interrupted = sm->interrupted;
        copy_str(m->model, sizeof m->model, sm->model_name);
        copy_str(m->backend, sizeof m->backend, sm->backend);
        if (kind == MSG_ASSISTANT) {
            m->sampling = app_sampling_of(&sm->sampling, &fallback);
            m->has_sampling = true;
        }
    }
    store_messages_free(msgs, cnt);
    return 0;
}

int app_session_view(App *a, int64_t id, AppSessionRow *row, AppTranscript *out, char *why,
                     size_t whylen) {
    memset(out, 0, sizeof *out);
    if (need_store(a, why, whylen)) return -1;
    StoreSession sess;
    memset(&sess, 0, sizeof sess);
    if (load_branch(a, id, &sess, out, &a->next_serial, why, whylen)) return -1;
    row_from(&sess, row);
    if (sess.system_prompt && *sess.system_prompt) {
        /* Shown first, as a note. */
        AppMessage *m = tr_push(out, &a->next_serial, MSG_NOTE);
        if (m) {
            msg_append(m, "System prompt: ", 15);
            msg_append(m, sess.system_prompt, strlen(sess.system_prompt));
            AppMessage tmp = *m;
            memmove(&out->msgs[1], &out->msgs[0], (size_t)(out->n - 1) * sizeof *out->msgs);
            out->msgs[0] = tmp;
        }
    }
    store_session_clear(&sess);
    return 0;
}

int app_session_resume(App *a, int64_t id, char *why, size_t whylen) {
    if (a->gen_req) {
        snprintf(why, whylen, "a reply is being written; stop it first");
        return -1;
    }
    if (need_store(a, why, whylen)) return -1;
    StoreSession sess;
    memset(&sess, 0, sizeof sess);
    AppTranscript t;
    memset(&t, 0, sizeof t);
    if (load_branch(a, id, &sess, &t, &a->next_serial, why, whylen)) return -1;
    uint64_t gen = a->tr.generation;
    reset_conversation(a);
    /* System messages stored in the branch are not re-sent as turns: the session's system
     * prompt is. */
    for (int i = 0; i < t.n; i++)
        if (t.msgs[i].kind == MSG_NOTE) {
            msg_free(&t.msgs[i]);
            memmove(&t.msgs[i], &t.msgs[i + 1], (size_t)(t.n - i - 1) * sizeof *t.msgs);
            t.n--;
            i--;
        }
    a->tr = t;
    a->tr.generation = gen + 1;
    a->session_id = sess.id;
    a->leaf_id = t.n ? t.msgs[t.n - 1].store_id : 0;
    copy_str(a->session_title, sizeof a->session_title, sess.title);
    app_set_system(a, sess.system_prompt);
    a->sampling = app_sampling_of(&sess.sampling, &a->sampling);
    app_note(a, MSG_NOTE, "Resumed \"%s\" (%d messages). The next reply continues it.",
             a->session_title, t.n);
    store_session_clear(&sess);
    app_ensure_model(a);
    return 0;
}

int app_session_rename(App *a, int64_t id, const char *title, char *why, size_t whylen) {
    if (need_store(a, why, whylen)) return -1;
    Err err = {{0}};
    if (store_session_rename(a->store, id, title, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    if (id == a->session_id) copy_str(a->session_title, sizeof a->session_title, title);
    return 0;
}

int app_session_delete(App *a, int64_t id, char *why, size_t whylen) {
    if (need_store(a, why, whylen)) return -1;
    if (id == a->session_id && a->gen_req) {
        snprintf(why, whylen, "this session is writing a reply; stop it first");
        return -1;
    }
    Err err = {{0}};
    if (store_session_delete(a->store, id, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    if (id == a->session_id) {
        /* The live chat goes on; its next message starts a new saved session. */
        a->session_id = 0;
        a->leaf_id = 0;
        a->session_title[0] = 0;
        for (int i = 0; i < a->tr.n; i++) a->tr.msgs[i].store_id = 0;
    }
    return 0;
}
