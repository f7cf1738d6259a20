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
#include "app/history.h"
#include "app/store.h"
#include "infer/engine.h"
#include "infer/sampler.h"

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

    AppSampling sampling;
    char *system_prompt;

    /* history */
    History *hist;              /* the recorder: never NULL once created */
    bool history_ok;            /* the recorder writes to a database now */
    char history_msg[200];      /* why not */

    char hint[256];
    unsigned hint_serial;
    char browser_query[256];
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
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

/* ---- history ------------------------------------------------------------------------------
 * The recorder (app/history.h) owns durability: the user message is committed before the
 * request goes to the engine, the reply row exists from its first token on and its text is
 * checkpointed every 2 s; a failure degrades it to memory with one warning, which is shown. */

static void history_check(App *a) {
    Err w = {{0}};
    if (history_take_warning(a->hist, &w)) app_note(a, MSG_ERROR, "%s", w.msg);
    bool ok = history_persistent(a->hist);
    if (ok) {
        a->history_ok = true;
        a->history_msg[0] = 0;
    } else if (a->history_ok || !a->history_msg[0]) {
        a->history_ok = false;
        if (a->cfg.no_history) copy_str(a->history_msg, sizeof a->history_msg, "history off (--no-history)");
        else snprintf(a->history_msg, sizeof a->history_msg, "history not saved%s%s",
                      w.msg[0] ? ": " : "", w.msg);
    }
}

static HistorySessionInfo session_info(const App *a) {
    HistorySessionInfo in;
    memset(&in, 0, sizeof in);
    in.model_name = a->model_loaded ? a->model.name : a->load_name;
    in.model_path = a->model_loaded ? a->model.path : "";
    in.system_prompt = a->system_prompt ? a->system_prompt : "";
    in.sampling = store_sampling(&a->sampling);
    return in;
}

static void history_save_settings(App *a) {
    HistorySessionInfo in = session_info(a);
    history_update_session(a->hist, &in);
    history_check(a);
}

static int64_t current_session_id(const App *a) { return history_session(a->hist)->id; }

static const char *current_title(const App *a) {
    const StoreSession *s = history_session(a->hist);
    return s->title ? s->title : "";
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

    /* History first: a broken database is a message, never a reason to stop. (The store
     * creates a fresh account's missing data directories itself.) */
    Err warn = {{0}};
    a->hist = history_open(cfg->db_path, cfg->no_history, &warn);
    if (!a->hist) {
        snprintf(errbuf, errlen, "out of memory");
        free(a->system_prompt);
        free(a);
        return NULL;
    }
    if (warn.msg[0]) {
        app_note(a, MSG_ERROR, "%s", warn.msg);
        snprintf(a->history_msg, sizeof a->history_msg, "history not saved: %s", warn.msg);
    }
    history_check(a);

    const char *model = cfg->model ? cfg->model : app_default_model_path();
    EngineOptions eo;
    memset(&eo, 0, sizeof eo);
    eo.infer.backend = !strcmp(cfg->backend ? cfg->backend : "auto", "cpu")    ? BACKEND_CPU
                       : !strcmp(cfg->backend ? cfg->backend : "auto", "cuda") ? BACKEND_CUDA
                                                                               : BACKEND_AUTO;
    eo.infer.threads = cfg->threads;
    eo.infer.ctx = cfg->ctx;
    eo.infer.lm_head_int8 = cfg->lm_head_int8;
    eo.infer.weights_map = cfg->mmap_weights;
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
    HistorySessionInfo in = session_info(a);
    history_begin_session(a->hist, &in);
    return a;
}

void app_ensure_model(App *a) {
    if (!a->pending_load_path[0] || a->model_loaded || a->loading) return;
    app_load_model(a, a->pending_load_path);
    a->pending_load_path[0] = 0;
}

void app_destroy(App *a) {
    if (!a) return;
    /* A reply still streaming is committed as interrupted; the screen is gone by now, so a
     * conversation that could not be saved after all is reported on stderr. */
    Err lost = {{0}};
    if (history_flush_final(a->hist, &lost)) fprintf(stderr, "bitnet-chat: %s\n", lost.msg);
    history_close(a->hist);
    engine_destroy(a->engine);
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
    o->session_id = current_session_id(a);
    copy_str(o->session_title, sizeof o->session_title, current_title(a));
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
    HistoryReplyInfo ri = {a->model.name, a->model.backend, store_sampling(&r->sampling)};
    ri.sampling.seed = r->sampling.seed;
    history_reply_begin(a->hist, &ri);
    history_check(a);
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
    history_add_user(a->hist, text); /* committed before the request is sent */
    history_check(a);
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
    history_reply_end(a->hist, st, reason, reason == STOP_CANCELLED || reason == STOP_ERROR);
    history_check(a);
    if (reason == STOP_ERROR && m->len == 0) {
        /* Nothing was written: the failure is shown as an error note instead. */
        tr_remove(&a->tr, a->reply_idx);
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
                if (a->cfg.ctx > a->model.ctx_size)
                    app_note(a, MSG_NOTE, "--ctx %d is more than this model's trained context; "
                             "using %d.", a->cfg.ctx, a->model.ctx_size);
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
                /* Cheap: copies, and writes a checkpoint when 2 s have passed. */
                history_reply_append(a->hist, e->u.token.text, (size_t)e->u.token.len);
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
                    history_reply_stats(a->hist, &a->stats);
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
    /* Checkpoints ride on the token events (history_reply_append); here only the warnings a
     * background retry may have produced are collected. */
    bool was = a->history_ok;
    history_check(a);
    return was != a->history_ok ? REACT_STATUS | REACT_CHAT : 0;
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
    HistorySessionInfo in = session_info(a);
    history_begin_session(a->hist, &in);
    history_check(a);
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
    if (last_asst > last_user) {
        tr_remove(&a->tr, last_asst);
        history_regenerate(a->hist);
    }
    return start_reply(a) | REACT_CHAT | REACT_REDRAW;
}

int app_clear_view(App *a) {
    a->tr.view_start = a->tr.n;
    a->tr.generation++;
    return REACT_REDRAW | REACT_CHAT;
}

int app_rename_session(App *a, const char *title) {
    history_rename(a->hist, title);
    history_check(a);
    if (a->cfg.no_history)
        app_set_hint(a, "Title set for this run; nothing is saved (--no-history).");
    else if (!current_session_id(a))
        app_set_hint(a, "Title set; the session is saved with the first message.");
    else
        app_set_hint(a, "Session renamed to \"%s\".", current_title(a));
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
    fprintf(f, "# %s\n\n", current_title(a)[0] ? current_title(a) : "bitnet-chat conversation");
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
    json_object_set_new(root, "title", json_text(current_title(a), strlen(current_title(a))));
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
    /* A saved session is exported from the database (every field, all branches in JSON);
     * one not saved (no history) from memory. */
    Store *st = history_store(a->hist);
    int64_t sid = current_session_id(a);
    int rc;
    Err err = {{0}};
    if (st && sid && history_persistent(a->hist))
        rc = json ? store_export_json(st, sid, f, &err) : store_export_markdown(st, sid, f, &err);
    else
        rc = json ? export_json(a, f) : export_md(a, f);
    if (rc && err.msg[0]) {
        fclose(f);
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    if (fclose(f) || rc) {
        snprintf(why, whylen, "%s: write failed", path);
        return -1;
    }
    copy_str(written, wlen, path);
    return 0;
}

/* ---- saved sessions ---------------------------------------------------------------------- */

static int need_store(App *a, char *why, size_t whylen) {
    if (history_store(a->hist)) return 0;
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
    if (store_session_list(history_store(a->hist), &ss, &cnt, &err)) {
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
    if (store_search(history_store(a->hist), query, &hits, &cnt, &err)) {
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

/* A stored message as a transcript entry of the given kind (a note is the system prompt), with
 * its figures; an assistant reply gets its sampling, fallback filling what was not stored. */
static AppMessage *push_stored(AppTranscript *tr, uint64_t *serial, AppMsgKind kind,
                               const StoreMessage *sm, const AppSampling *fallback) {
    AppMessage *m = tr_push(tr, serial, kind);
    if (!m) return NULL;
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
        m->sampling = app_sampling_of(&sm->sampling, fallback);
        m->has_sampling = true;
    }
    return m;
}

/* The messages of the branch through message `through` (its newest leaf back to the root, root
 * first), as indices into all[] (every message of the session, store_message_all); NULL when
 * the message is not in the session. Why here and not a store query: a session's messages are
 * already read whole for the view, and walking parent ids over them is exact and cheap. */
static int *branch_through(Store *st, const StoreMessage *all, int n_all, int64_t through, int *n_out) {
    *n_out = 0;
    Err err = {{0}};
    int64_t cur = store_branch_leaf(st, through, &err);
    if (cur <= 0) return NULL;
    int *idx = malloc((size_t)(n_all > 0 ? n_all : 1) * sizeof *idx);
    if (!idx) return NULL;
    int n = 0;
    while (cur && n < n_all) { /* n < n_all also stops a (corrupt) parent cycle */
        int k = -1;
        for (int i = 0; i < n_all; i++)
            if (all[i].id == cur) k = i;
        if (k < 0) break;
        idx[n++] = k;
        cur = all[k].parent_id;
    }
    if (cur || n == 0) { /* a parent outside the session: not a usable branch */
        free(idx);
        return NULL;
    }
    for (int i = 0; i < n / 2; i++) {
        int t = idx[i];
        idx[i] = idx[n - 1 - i];
        idx[n - 1 - i] = t;
    }
    *n_out = n;
    return idx;
}

/* The session's active branch, or, when `through` names a message that is not on it (a search
 * hit in an older /regen branch), the branch that holds that message (*other set). */
static int load_branch(App *a, int64_t id, int64_t through, StoreSession *sess, AppTranscript *out,
                       uint64_t *serial, bool *other, char *why, size_t whylen) {
    Err err = {{0}};
    *other = false;
    Store *st = history_store(a->hist);
    if (store_session_get(st, id, sess, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    StoreMessage *msgs = NULL;
    int cnt = 0, *order = NULL, n_order = 0;
    if (through) {
        if (store_message_all(st, id, &msgs, &cnt, &err)) {
            snprintf(why, whylen, "%s", err.msg);
            store_session_clear(sess);
            return -1;
        }
        bool off_branch = false;
        for (int i = 0; i < cnt; i++)
            if (msgs[i].id == through) off_branch = !msgs[i].on_active_branch;
        if (off_branch) order = branch_through(st, msgs, cnt, through, &n_order);
        if (!order) { /* on the active branch (or not found): the usual view */
            store_messages_free(msgs, cnt);
            msgs = NULL;
            cnt = 0;
        }
    }
    if (!order && store_message_branch(st, id, &msgs, &cnt, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        store_session_clear(sess);
        return -1;
    }
    *other = order != NULL;
    AppSampling fallback = a->sampling;
    const int n_show = order ? n_order : cnt;
    for (int j = 0; j < n_show; j++) {
        const StoreMessage *sm = &msgs[order ? order[j] : j];
        AppMsgKind kind = !strcmp(sm->role, "user")        ? MSG_USER
                          : !strcmp(sm->role, "assistant") ? MSG_ASSISTANT
                                                           : MSG_NOTE;
        if (!push_stored(out, serial, kind, sm, &fallback)) break;
    }
    free(order);
    store_messages_free(msgs, cnt);
    return 0;
}

/* Inserts a note before the first message of a view. */
static void view_note_first(App *a, AppTranscript *out, const char *text) {
    AppMessage *m = tr_push(out, &a->next_serial, MSG_NOTE);
    if (!m) return;
    msg_append(m, text, strlen(text));
    AppMessage tmp = *m;
    memmove(&out->msgs[1], &out->msgs[0], (size_t)(out->n - 1) * sizeof *out->msgs);
    out->msgs[0] = tmp;
}

int app_session_view(App *a, int64_t id, AppSessionRow *row, AppTranscript *out, char *why,
                     size_t whylen) {
    return app_session_view_at(a, id, 0, row, out, why, whylen);
}

int app_session_view_at(App *a, int64_t id, int64_t message_id, AppSessionRow *row, AppTranscript *out,
                        char *why, size_t whylen) {
    memset(out, 0, sizeof *out);
    if (need_store(a, why, whylen)) return -1;
    StoreSession sess;
    memset(&sess, 0, sizeof sess);
    bool other = false;
    if (load_branch(a, id, message_id, &sess, out, &a->next_serial, &other, why, whylen)) return -1;
    row_from(&sess, row);
    if (other) /* shown above the system prompt */
        view_note_first(a, out, "This is an earlier branch (a reply made again with /regen), the one that "
                                "holds the match; resuming continues the session's current branch.");
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
    Err err = {{0}};
    if (history_resume(a->hist, id, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    uint64_t gen = a->tr.generation;
    reset_conversation(a);
    a->tr.generation = gen + 1;
    int n = 0;
    const StoreMessage *msgs = history_messages(a->hist, &n);
    for (int i = 0; i < n; i++) {
        const StoreMessage *sm = &msgs[i];
        bool user = !strcmp(sm->role, "user");
        if (!user && strcmp(sm->role, "assistant")) continue; /* the system prompt is the session's */
        if (!push_stored(&a->tr, &a->next_serial, user ? MSG_USER : MSG_ASSISTANT, sm,
                         &a->sampling))
            break;
    }
    const StoreSession *sess = history_session(a->hist);
    free(a->system_prompt);
    a->system_prompt = sess->system_prompt && *sess->system_prompt ? strdup(sess->system_prompt) : NULL;
    a->sampling = app_sampling_of(&sess->sampling, &a->sampling);
    app_note(a, MSG_NOTE, "Resumed \"%s\" (%d messages). The next reply continues it.",
             current_title(a), a->tr.n);
    history_check(a);
    app_ensure_model(a);
    return 0;
}

int app_session_rename(App *a, int64_t id, const char *title, char *why, size_t whylen) {
    if (id && id == current_session_id(a)) {
        history_rename(a->hist, title); /* keeps the recorder's copy in step */
        history_check(a);
        return 0;
    }
    if (need_store(a, why, whylen)) return -1;
    Err err = {{0}};
    if (store_session_rename(history_store(a->hist), id, title, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    return 0;
}

int app_session_delete(App *a, int64_t id, char *why, size_t whylen) {
    if (need_store(a, why, whylen)) return -1;
    bool current = id == current_session_id(a);
    if (current && a->gen_req) {
        snprintf(why, whylen, "this session is writing a reply; stop it first");
        return -1;
    }
    Err err = {{0}};
    if (store_session_delete(history_store(a->hist), id, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    if (current) {
        /* The live chat goes on; its next message starts a new saved session. */
        HistorySessionInfo in = session_info(a);
        history_begin_session(a->hist, &in);
        for (int i = 0; i < a->tr.n; i++) a->tr.msgs[i].store_id = 0;
    }
    return 0;
}
