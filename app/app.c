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
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/commands.h"
#include "app/history.h"
#include "app/paths.h"
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

    SamplerParams sampling;
    char *system_prompt;

    /* history */
    History *hist;              /* the recorder: never NULL once created */
    bool history_ok;            /* the recorder writes to a database now */
    char history_msg[200];      /* why not */

    char hint[256];
    unsigned hint_serial;
    char browser_query[256];
    char *input_preset;         /* REACT_SET_INPUT text */
    char *copy_text;            /* REACT_COPY text */
    int64_t load_started_ms;    /* when the current load began (monotonic) */
    int64_t reply_started_ms;   /* when the current reply was requested (monotonic) */
    double load_ms;             /* how long the last load took */
    /* --no-history: the history file opened read-only for the browser, on first use */
    Store *ro_store;
    bool ro_tried;
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
    if (t->ctx_start > idx) t->ctx_start--;
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

/* The settings a stored session or reply holds, over fallback for what it lacks. Stored values
 * out of range are damage and left out; the seed is fixed only when one was stored. */
static SamplerParams sampling_over(const SamplerParams *stored, const SamplerParams *fallback) {
    SamplerParams ok = *stored;
    if (!(ok.temperature >= 0)) ok.set &= ~SAMPLER_SET_TEMPERATURE;
    if (!(ok.top_p > 0)) ok.set &= ~SAMPLER_SET_TOP_P;
    if (!(ok.min_p >= 0)) ok.set &= ~SAMPLER_SET_MIN_P;
    if (!(ok.repeat_penalty > 0)) ok.set &= ~SAMPLER_SET_REPEAT_PENALTY;
    if (ok.top_k < 0) ok.set &= ~SAMPLER_SET_TOP_K;
    if (ok.max_tokens <= 0) ok.set &= ~SAMPLER_SET_MAX_TOKENS;
    SamplerParams o = *fallback;
    o.set &= ~SAMPLER_SET_SEED;
    sampler_params_merge(&o, &ok);
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
    in.sampling = a->sampling;
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

    a->sampling = sampler_params_default();
    a->sampling.set &= ~SAMPLER_SET_SEED; /* a seed from the clock per reply unless one is given */
    sampler_params_merge(&a->sampling, &cfg->sampling);
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
        a->load_started_ms = mono_ms();
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
    /* Leaving mid-reply (/quit, Ctrl-D, SIGTERM) stops the reply as Esc would: the text so
     * far is kept and recorded as cancelled (it was stop reason "", as after a crash). The
     * screen is gone by now, so a conversation that could not be saved after all is reported
     * on stderr. */
    if (a->gen_req && a->reply_idx >= 0) {
        engine_cancel(a->engine);
        history_reply_end(a->hist, &a->stats, STOP_CANCELLED, true);
    }
    Err lost = {{0}};
    if (history_flush_final(a->hist, &lost)) fprintf(stderr, "bitnet-chat: %s\n", lost.msg);
    history_close(a->hist);
    store_close(a->ro_store);
    engine_destroy(a->engine);
    app_transcript_free(&a->tr);
    free(a->system_prompt);
    free(a->input_preset);
    free(a->copy_text);
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
    copy_str(o->model_path, sizeof o->model_path, a->model_loaded ? a->model.path : "");
    o->n_params_m = a->model_loaded ? a->model.n_params_m : 0;
    if (a->model_loaded) {
        copy_str(o->arch, sizeof o->arch, a->model.arch);
        copy_str(o->format, sizeof o->format, a->model.format);
        copy_str(o->weights, sizeof o->weights, a->model.weights);
        copy_str(o->chat_format, sizeof o->chat_format, a->model.chat_format);
        copy_str(o->chat_note, sizeof o->chat_note, a->model.chat_note);
        o->vocab_size = a->model.vocab_size;
        o->ctx_train = a->model.ctx_train;
    }
    o->load_ms = a->load_ms;
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
    for (int i = a->tr.ctx_start; i < a->tr.n; i++) {
        const AppMessage *m = &a->tr.msgs[i];
        if (m->kind == MSG_USER) turns[n++] = (ChatTurn){ROLE_USER, m->text};
        else if (m->kind == MSG_ASSISTANT && m->len) turns[n++] = (ChatTurn){ROLE_ASSISTANT, m->text};
    }
    SamplerParams sp = a->sampling;
    if (!(sp.set & SAMPLER_SET_SEED)) {
        sp.seed = sampler_params_default().seed;
        sp.set |= SAMPLER_SET_SEED; /* the reply records the seed it was made with */
    }
    uint64_t req = engine_submit(a->engine, turns, n, &sp);
    free(turns);
    if (!req) return REACT_CHAT | REACT_STATUS; /* an EV_ERROR says why */
    a->gen_req = req;
    a->reply_started_ms = mono_ms();
    memset(&a->stats, 0, sizeof a->stats);
    AppMessage *r = tr_push(&a->tr, &a->next_serial, MSG_ASSISTANT);
    if (!r) {
        engine_cancel(a->engine);
        return REACT_STATUS;
    }
    r->streaming = true;
    r->sampling = sp;
    copy_str(r->model, sizeof r->model, a->model.name);
    copy_str(r->backend, sizeof r->backend, a->model.backend);
    a->reply_idx = a->tr.n - 1;
    HistoryReplyInfo ri = {a->model.name, a->model.backend, sp};
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
        /* Not handed back to the input line: the /load typed next would be appended to it.
         * The input history has it. */
        app_set_hint(a, "No model is loaded: use /load PATH (Up brings the message back).");
        return REACT_STATUS;
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
    /* Every line whose first visible character is '/' is a command ("/ temp" included: it
     * is refused with a hint rather than sent to the model), except "//text". */
    if (*p == '/' && p[1] != '/') return commands_run(a, p);
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
                app_absolute_path(a->model.path, sizeof a->model.path);
                a->model_loaded = true;
                if (e->req == a->load_req) a->loading = false;
                memset(&a->stats, 0, sizeof a->stats);
                a->stats.ctx_size = a->model.ctx_size;
                /* Said also when it was quick: the user sees the load ended, and its cost. */
                a->load_ms = a->load_started_ms ? (double)(mono_ms() - a->load_started_ms) : 0;
                app_note(a, MSG_NOTE, "%s %s (%s, %d-token context) in %.1f s.",
                         switched ? "Switched to" : "Loaded", a->model.name, a->model.backend,
                         a->model.ctx_size, a->load_ms / 1000.0);
                if (a->model.chat_note[0]) app_note(a, MSG_NOTE, "Note: %s.", a->model.chat_note);
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
                if (a->stats.gen_tokens == 0) {
                    /* The engine's figures come a little later: until then the bar read "0 tok
                     * · TTFT 0 ms" over streaming text. The first token sets both (the time as
                     * seen here); the engine's own figures replace them. */
                    a->stats.gen_tokens = 1;
                    a->stats.ttft_ms = (double)(mono_ms() - a->reply_started_ms);
                    react |= REACT_STATUS;
                }
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
                if (e->req && e->req == a->gen_req) {
                    /* kept with the reply, so a resume or an export says why it failed */
                    history_reply_error(a->hist, e->u.error.msg);
                    if (a->reply_idx >= 0 && a->reply_idx < a->tr.n)
                        copy_str(a->tr.msgs[a->reply_idx].error,
                                 sizeof a->tr.msgs[a->reply_idx].error, e->u.error.msg);
                }
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

SamplerParams app_get_sampling(const App *a) { return a->sampling; }

int app_set_sampling(App *a, const SamplerParams *s) {
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
    a->load_started_ms = mono_ms();
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
    for (int i = a->tr.n - 1; i >= a->tr.ctx_start; i--) {
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
    int versions = 1;
    if (last_asst > last_user) {
        versions = a->tr.msgs[last_asst].alt_n > 0 ? a->tr.msgs[last_asst].alt_n + 1 : 2;
        tr_remove(&a->tr, last_asst);
        history_regenerate(a->hist);
    }
    int r = start_reply(a);
    if (a->reply_idx >= 0 && versions > 1) {
        /* Shown as "2/2" under the reply: an older version exists, /reply brings it back. */
        a->tr.msgs[a->reply_idx].alt_i = versions;
        a->tr.msgs[a->reply_idx].alt_n = versions;
    }
    return r | REACT_CHAT | REACT_REDRAW;
}

int app_clear_view(App *a) {
    a->tr.view_start = a->tr.n;
    a->tr.generation++;
    return REACT_REDRAW | REACT_CHAT;
}

int app_reset_context(App *a) {
    if (a->gen_req) {
        app_set_hint(a, "Stop the reply first (Esc), then /reset.");
        return REACT_STATUS;
    }
    a->tr.ctx_start = a->tr.n;
    memset(&a->stats, 0, sizeof a->stats);
    a->stats.ctx_size = a->model.ctx_size;
    HistorySessionInfo in = session_info(a);
    history_begin_session(a->hist, &in);
    history_check(a);
    app_note(a, MSG_NOTE, "Context reset: the model no longer sees the text above (a new "
                          "session; /clear only clears the screen).");
    a->tr.ctx_start = a->tr.n; /* the note itself is not part of the new context either */
    return REACT_CHAT | REACT_STATUS;
}

/* Drops the last user message and everything after it from the view and from the recorder's
 * active branch (the rows stay in the database as a branch). Returns the index it was at, or
 * -1 with a hint. */
static int drop_last_exchange(App *a, const char *what, char **user_text) {
    if (a->gen_req) {
        app_set_hint(a, "Stop the reply first (Esc), then %s.", what);
        return -1;
    }
    int last_user = -1;
    for (int i = a->tr.n - 1; i >= a->tr.ctx_start && last_user < 0; i--)
        if (a->tr.msgs[i].kind == MSG_USER) last_user = i;
    int n_hist = 0, keep = -1;
    const StoreMessage *hm = history_messages(a->hist, &n_hist);
    for (int i = n_hist - 1; i >= 0 && keep < 0; i--)
        if (!strcmp(hm[i].role, "user")) keep = i;
    if (last_user < 0 || keep < 0) {
        app_set_hint(a, "Nothing to %s: no message of yours in this context.", what + 1);
        return -1;
    }
    if (history_truncate(a->hist, keep)) {
        app_set_hint(a, "%s failed: the history is not at a message of yours.", what);
        return -1;
    }
    history_check(a);
    if (user_text) *user_text = strdup(a->tr.msgs[last_user].text);
    while (a->tr.n > last_user) tr_remove(&a->tr, a->tr.n - 1);
    return last_user;
}

int app_undo(App *a) {
    if (drop_last_exchange(a, "/undo", NULL) < 0) return REACT_STATUS;
    app_set_hint(a, "Removed your last message and its reply (kept in the history as a "
                    "branch).");
    return REACT_CHAT | REACT_STATUS | REACT_REDRAW;
}

int app_edit_last(App *a) {
    char *text = NULL;
    if (drop_last_exchange(a, "/edit", &text) < 0) return REACT_STATUS;
    free(a->input_preset);
    a->input_preset = text;
    app_set_hint(a, "Edit your message and press Enter: the reply starts a new branch.");
    return REACT_CHAT | REACT_STATUS | REACT_REDRAW | REACT_SET_INPUT;
}

/* The n-th (1-based) ``` fenced block of text, malloc'ed; NULL when there are fewer. */
static char *code_block(const char *text, int n) {
    const char *p = text;
    for (int k = 1;; k++) {
        const char *open = strstr(p, "```");
        if (!open) return NULL;
        const char *body = strchr(open, '\n');
        if (!body) return NULL;
        body++;
        const char *close = strstr(body, "```");
        if (!close) close = body + strlen(body);
        if (k == n) {
            size_t len = (size_t)(close - body);
            if (len && body[len - 1] == '\n') len--;
            return strndup(body, len);
        }
        if (!*close) return NULL;
        p = close + 3;
    }
}

int app_copy_reply(App *a, int block) {
    const AppMessage *m = NULL;
    for (int i = a->tr.n - 1; i >= 0 && !m; i--)
        if (a->tr.msgs[i].kind == MSG_ASSISTANT && a->tr.msgs[i].len) m = &a->tr.msgs[i];
    if (!m) {
        app_set_hint(a, "Nothing to copy yet: no reply.");
        return REACT_STATUS;
    }
    char *t = block > 0 ? code_block(m->text, block) : strdup(m->text);
    if (!t) {
        app_set_hint(a, "The last reply has no code block %d.", block);
        return REACT_STATUS;
    }
    free(a->copy_text);
    a->copy_text = t;
    if (block > 0)
        app_set_hint(a, "Copied code block %d of the last reply (%zu bytes).", block, strlen(t));
    else app_set_hint(a, "Copied the last reply (%zu bytes).", strlen(t));
    return REACT_COPY | REACT_STATUS;
}

const char *app_take_input(App *a) { return a->input_preset ? a->input_preset : ""; }
const char *app_take_copy(App *a) { return a->copy_text ? a->copy_text : ""; }

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

/* A conversation that is not saved (no history, or the database failed) is exported from the
 * recorder's memory by the same writers as a saved one: one format either way. Its messages
 * are the active branch. */
static int export_unsaved(App *a, bool json, FILE *f, Err *err) {
    int n;
    const StoreMessage *msgs = history_messages(a->hist, &n);
    StoreSession ss = *history_session(a->hist);
    ss.message_count = n;
    StoreMessage *view = malloc(sizeof *view * (size_t)(n ? n : 1));
    if (!view) return err_set(err, "export: out of memory");
    for (int i = 0; i < n; i++) {
        view[i] = msgs[i];
        view[i].on_active_branch = 1;
    }
    int rc = json ? store_write_json(&ss, view, n, f, err) : store_write_markdown(&ss, view, n, f, err);
    free(view);
    return rc;
}

static int export_to(App *a, int64_t id, const char *format, const char *path, char *written,
                     size_t wlen, char *why, size_t whylen);
static Store *browse_store(App *a);
static int need_store(App *a, char *why, size_t whylen);

int app_export(App *a, const char *format, const char *path, char *written, size_t wlen,
               char *why, size_t whylen) {
    /* A saved session is exported from the database (every field, all branches in JSON);
     * one not saved (no history) from memory. */
    int64_t sid = history_persistent(a->hist) ? current_session_id(a) : 0;
    return export_to(a, sid, format, path, written, wlen, why, whylen);
}

int app_session_export(App *a, int64_t id, const char *format, const char *path, char *written,
                       size_t wlen, char *why, size_t whylen) {
    if (need_store(a, why, whylen)) return -1;
    return export_to(a, id, format, path, written, wlen, why, whylen);
}

/* Creates a new file for an export, mode 0600 (a conversation is as private as the database it
 * comes from), never replacing one. No path: a time-stamped name in the working directory; a
 * directory: that name inside it, with "-2", "-3", ... where an export of the same second is
 * there already. The name used goes to out. Returns the open file, or NULL with why. */
static FILE *export_create(const char *path, bool json, char *out, size_t olen, char *why,
                           size_t whylen) {
    struct stat sb;
    const char *dir = !path || !*path                                 ? ""
                      : stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? path
                                                                    : NULL;
    int fd = -1;
    if (!dir) {
        snprintf(out, olen, "%s", path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    } else {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        const size_t dl = strlen(dir);
        for (int i = 1; i < 100; i++) {
            char nth[16] = "";
            if (i > 1) snprintf(nth, sizeof nth, "-%d", i);
            int n = snprintf(out, olen, "%s%sbitnet-chat-%s%s.%s", dir,
                             dl && dir[dl - 1] != '/' ? "/" : "", stamp, nth, json ? "json" : "md");
            if (n < 0 || (size_t)n >= olen) {
                snprintf(why, whylen, "%s: path too long", dir);
                return NULL;
            }
            fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd >= 0 || errno != EEXIST) break;
        }
    }
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        snprintf(why, whylen, "%s: %s", out,
                 errno == EEXIST ? "already exists; choose another name" : strerror(errno));
        if (fd >= 0) close(fd), unlink(out);
    }
    return f;
}

/* id 0: the live conversation from memory. */
static int export_to(App *a, int64_t sid, const char *format, const char *path, char *written,
                     size_t wlen, char *why, size_t whylen) {
    bool json = format && !strcmp(format, "json");
    char name[4200];
    FILE *f = export_create(path, json, name, sizeof name, why, whylen);
    if (!f) return -1;
    path = name;
    Store *st = browse_store(a);
    int rc;
    Err err = {{0}};
    if (st && sid)
        rc = json ? store_export_json(st, sid, f, &err) : store_export_markdown(st, sid, f, &err);
    else
        rc = export_unsaved(a, json, f, &err);
    if (rc && err.msg[0]) {
        fclose(f);
        unlink(path);
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    if (fclose(f) || rc) {
        unlink(path);
        snprintf(why, whylen, "%s: write failed", path);
        return -1;
    }
    copy_str(written, wlen, path);
    return 0;
}

/* ---- saved sessions ---------------------------------------------------------------------- */

/* The database the browser reads: the recorder's, or with --no-history the same file opened
 * read-only (the README promises the history tools do so; before, /sessions said there were
 * none while the file held 17). */
static Store *browse_store(App *a) {
    Store *st = history_store(a->hist);
    if (st || !a->cfg.no_history) return st;
    if (!a->ro_tried) {
        a->ro_tried = true;
        Err err = {{0}};
        a->ro_store = store_open_ex(a->cfg.db_path, STORE_OPEN_READONLY, &err);
    }
    return a->ro_store;
}

static int need_store(App *a, char *why, size_t whylen) {
    if (browse_store(a)) return 0;
    snprintf(why, whylen, "%s", a->history_msg[0] ? a->history_msg : "no history database");
    return -1;
}

/* Changes to saved sessions: refused when the history is only read (--no-history). */
static int need_writable_store(App *a, char *why, size_t whylen) {
    if (need_store(a, why, whylen)) return -1;
    if (history_store(a->hist)) return 0;
    snprintf(why, whylen, "the history is read-only with --no-history");
    return -1;
}

bool app_history_readonly(App *a) { return !history_store(a->hist) && browse_store(a); }

int64_t app_current_session(const App *a) { return current_session_id(a); }

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
    if (store_session_list(browse_store(a), &ss, &cnt, &err)) {
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
    if (store_search(browse_store(a), query, &hits, &cnt, &err)) {
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

/* m's text (after what it holds) and figures from stored message sm; a reply gets its sampling,
 * fallback filling what was not stored. */
static void fill_stored(AppMessage *m, const StoreMessage *sm, const SamplerParams *fallback) {
    msg_append(m, sm->text ? sm->text : "", sm->text ? strlen(sm->text) : 0);
    m->store_id = sm->id;
    m->created_at = sm->created_at;
    m->prompt_tokens = sm->prompt_tokens;
    m->gen_tokens = sm->reply_tokens;
    m->ttft_ms = sm->ttft_ms;
    m->tok_s = sm->tok_per_s;
    copy_str(m->stop_reason, sizeof m->stop_reason, sm->stop_reason);
    copy_str(m->error, sizeof m->error, sm->error);
    m->interrupted = sm->interrupted;
    copy_str(m->model, sizeof m->model, sm->model_name);
    copy_str(m->backend, sizeof m->backend, sm->backend);
    if (m->kind == MSG_ASSISTANT) m->sampling = sampling_over(&sm->sampling, fallback);
}

/* A stored message as a transcript entry of the given kind (a note is the system prompt). */
static AppMessage *push_stored(AppTranscript *tr, uint64_t *serial, AppMsgKind kind,
                               const StoreMessage *sm, const SamplerParams *fallback) {
    AppMessage *m = tr_push(tr, serial, kind);
    if (!m) return NULL;
    if (kind == MSG_NOTE) msg_append(m, "System prompt: ", 15);
    fill_stored(m, sm, fallback);
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
    Store *st = browse_store(a);
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
    SamplerParams fallback = a->sampling;
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

/* Which version of its replies a stored reply is (its siblings under the same message). */
static void set_versions(App *a, AppMessage *m) {
    Store *st = browse_store(a);
    StoreMessage *sib = NULL;
    int n = 0;
    Err err = {{0}};
    if (!st || !m->store_id || store_message_siblings(st, m->store_id, &sib, &n, &err)) return;
    if (n > 1)
        for (int i = 0; i < n; i++)
            if (sib[i].id == m->store_id) m->alt_i = i + 1, m->alt_n = n;
    store_messages_free(sib, n);
}

int app_switch_reply(App *a, int version) {
    if (a->gen_req) {
        app_set_hint(a, "Stop the reply first (Esc), then /reply.");
        return REACT_STATUS;
    }
    int n_hist = 0;
    const StoreMessage *hm = history_messages(a->hist, &n_hist);
    Store *st = history_store(a->hist);
    int idx = -1;
    for (int i = a->tr.n - 1; i >= a->tr.ctx_start && idx < 0; i--)
        if (a->tr.msgs[i].kind == MSG_ASSISTANT) idx = i;
    if (idx < 0 || n_hist == 0 || strcmp(hm[n_hist - 1].role, "assistant") || !hm[n_hist - 1].id) {
        app_set_hint(a, "No saved reply to switch: /reply works on the last reply of a saved "
                        "session.");
        return REACT_STATUS;
    }
    if (!st || !history_persistent(a->hist)) {
        app_set_hint(a, "Other versions of a reply are kept in the history, which is off.");
        return REACT_STATUS;
    }
    StoreMessage *sib = NULL;
    int n = 0;
    Err err = {{0}};
    if (store_message_siblings(st, hm[n_hist - 1].id, &sib, &n, &err)) {
        app_set_hint(a, "/reply: %s", err.msg);
        return REACT_STATUS;
    }
    if (n < 2 || version < 1 || version > n) {
        if (n < 2) app_set_hint(a, "The last reply has one version: /regen writes another.");
        else app_set_hint(a, "/reply: expected a version from 1 to %d", n);
        store_messages_free(sib, n);
        return REACT_STATUS;
    }
    const StoreMessage *t = &sib[version - 1];
    int64_t sid = current_session_id(a);
    int rc = store_set_active_leaf(st, sid, t->id, &err);
    if (!rc) rc = history_resume(a->hist, sid, &err);
    if (rc) {
        app_set_hint(a, "/reply: %s", err.msg);
        store_messages_free(sib, n);
        return REACT_STATUS;
    }
    /* The view keeps everything above; only the reply changes. */
    AppMessage *m = &a->tr.msgs[idx];
    m->len = 0;
    m->text[0] = 0;
    fill_stored(m, t, &a->sampling);
    m->alt_i = version;
    m->alt_n = n;
    a->tr.generation++;
    store_messages_free(sib, n);
    app_set_hint(a, "Reply version %d of %d; the next message continues from it.", version, n);
    return REACT_CHAT | REACT_STATUS | REACT_REDRAW;
}

/* "temperature 0.70 -> 0.20, top-k 40 -> 10" for the settings that differ; "" if none. */
static void sampling_changes(const SamplerParams *o, const SamplerParams *n, char *out,
                             size_t cap) {
    size_t k = 0;
    out[0] = 0;
#define BN_CHANGED(cond, ...)                                                                  \
    if ((cond) && k < cap) {                                                                   \
        k += (size_t)snprintf(out + k, cap - k, "%s", k ? ", " : "");                          \
        if (k < cap) k += (size_t)snprintf(out + k, cap - k, __VA_ARGS__);                     \
    }
    BN_CHANGED(o->temperature != n->temperature, "temperature %.2f -> %.2f", o->temperature,
               n->temperature);
    BN_CHANGED(o->top_p != n->top_p, "top-p %.2f -> %.2f", o->top_p, n->top_p);
    BN_CHANGED(o->top_k != n->top_k, "top-k %d -> %d", o->top_k, n->top_k);
    BN_CHANGED(o->min_p != n->min_p, "min-p %.2f -> %.2f", o->min_p, n->min_p);
    BN_CHANGED(o->repeat_penalty != n->repeat_penalty, "repeat penalty %.2f -> %.2f",
               o->repeat_penalty, n->repeat_penalty);
    BN_CHANGED(o->max_tokens != n->max_tokens, "max tokens %d -> %d", o->max_tokens,
               n->max_tokens);
    const bool o_fixed = o->set & SAMPLER_SET_SEED, n_fixed = n->set & SAMPLER_SET_SEED;
    BN_CHANGED(o_fixed != n_fixed || (n_fixed && o->seed != n->seed), "seed %s -> %s",
               o_fixed ? "fixed" : "random", n_fixed ? "fixed" : "random");
#undef BN_CHANGED
}

int64_t app_newest_session(App *a, char *why, size_t whylen) {
    AppSessionRow *rows = NULL;
    int n = 0;
    if (app_sessions(a, &rows, &n, why, whylen)) return 0;
    int64_t id = n > 0 ? rows[0].id : 0;
    free(rows);
    if (!id) snprintf(why, whylen, "there is no saved session to continue");
    return id;
}

int app_session_resume(App *a, int64_t id, char *why, size_t whylen) {
    if (a->gen_req) {
        snprintf(why, whylen, "a reply is being written; stop it first");
        return -1;
    }
    if (need_writable_store(a, why, whylen)) return -1;
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
        AppMessage *m = push_stored(&a->tr, &a->next_serial, user ? MSG_USER : MSG_ASSISTANT,
                                    sm, &a->sampling);
        if (!m) break;
        if (!user) set_versions(a, m);
    }
    const StoreSession *sess = history_session(a->hist);
    bool system_changed = strcmp(a->system_prompt ? a->system_prompt : "",
                                 sess->system_prompt ? sess->system_prompt : "") != 0;
    free(a->system_prompt);
    a->system_prompt = sess->system_prompt && *sess->system_prompt ? strdup(sess->system_prompt) : NULL;
    SamplerParams before = a->sampling;
    a->sampling = sampling_over(&sess->sampling, &a->sampling);
    /* The session's settings replace the ones in use: say which did change (it was silent). */
    char changed[512];
    sampling_changes(&before, &a->sampling, changed, sizeof changed);
    if (system_changed)
        snprintf(changed + strlen(changed), sizeof changed - strlen(changed), "%ssystem prompt",
                 changed[0] ? ", " : "");
    /* The browser counts every message of the session, versions from /regen and /edit
     * included; say how the two numbers relate when they differ. */
    char count[96];
    if (sess->message_count > a->tr.n)
        snprintf(count, sizeof count, "%d messages on its current branch, %d in all", a->tr.n,
                 sess->message_count);
    else
        snprintf(count, sizeof count, "%d message%s", a->tr.n, a->tr.n == 1 ? "" : "s");
    app_note(a, MSG_NOTE, "Resumed \"%s\" (%s). The next reply continues it.%s%s%s",
             current_title(a), count, changed[0] ? "\nThe session's settings are now in use: " : "",
             changed, changed[0] ? "." : "");
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
    if (need_writable_store(a, why, whylen)) return -1;
    Err err = {{0}};
    if (store_session_rename(history_store(a->hist), id, title, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    return 0;
}

int app_session_delete(App *a, int64_t id, char *why, size_t whylen) {
    if (need_writable_store(a, why, whylen)) return -1;
    if (id && id == current_session_id(a)) {
        /* Deleting it under the live chat split the conversation: the model still saw the old
         * turns while the database kept only the later ones. */
        snprintf(why, whylen, "it is the session you are chatting in; start /new first");
        return -1;
    }
    Err err = {{0}};
    if (store_session_delete(history_store(a->hist), id, &err)) {
        snprintf(why, whylen, "%s", err.msg);
        return -1;
    }
    return 0;
}
