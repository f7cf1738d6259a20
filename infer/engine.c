/* Engine: the inference thread.
 *
 * DESIGN
 * Two threads meet here. The engine thread owns the Model, the Infer runtime (KV cache, CUDA
 * context) and the Sampler; nothing else ever touches them. The main thread (UI, app) talks to
 * it through three things only:
 *   1. a request queue (mutex + condvar): engine_load / engine_submit append a Request and
 *      signal; the engine thread waits while the queue is empty, takes the head out, unlocks,
 *      does the work, and comes back (the redis bio.c pattern). Requests run in FIFO order.
 *   2. an EventChan (infer/chan.h): fixed-size events copied by value into a bounded ring, with
 *      a pipe that is readable while events wait. Every event carries its request id.
 *   3. an atomic "cancel up to" id: engine_cancel() stores the newest id handed out so far, and
 *      the engine checks it before every token, so a cancel stops the running request within
 *      one token and also the ones still queued behind it, but never a request made later.
 * Model info for the UI is a small snapshot under the queue mutex.
 *
 * A reply: the turns are rendered with the chat template into token pieces; if they do not fit
 * in the context minus room for the reply, the oldest messages after the system prompt are left
 * out (and counted). The KV cache is reused for the longest common token prefix with what it
 * already holds, the rest is prefilled in batches, then tokens are decoded one by one until a
 * stop token, max_tokens, a full context, a cancel or an error. Token text reaches the ring as
 * complete UTF-8; if the UI falls behind, text is merged into fewer events or kept here until
 * there is room, never dropped, so decoding never waits for the UI. Only the end of a request
 * (its last text, then EV_DONE) waits for room, and only if the UI has read nothing for a whole
 * ring's worth of events; engine_destroy() ends that wait.
 *
 * Loads ignore engine_cancel(); engine_destroy() stops one in progress (through
 * ModelLoadOptions.cancel) and drops what is still queued. */
#include "infer/engine.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/chan.h"
#include "infer/chat_template.h"
#include "infer/model.h"
#include "infer/tokenizer.h"
#include "infer/utf8.h"

enum {
    ENGINE_RING = 256,       /* events in the ring */
    /* Prompt tokens per infer_eval call: a cancel is seen between calls. Not a backend's batch:
     * each backend splits a call into batches its buffers hold (CUDA PREFILL_MAX, CPU
     * max_batch), so the two numbers need not agree. */
    PREFILL_CHUNK = 512,
    STATS_EVERY_MS = 250,
};

typedef enum { REQ_LOAD, REQ_LOAD_SYNTHETIC, REQ_SUBMIT } RequestKind;

typedef struct Request {
    struct Request *next;
    RequestKind kind;
    uint64_t id;
    double t_submit_ms;      /* monotonic clock when the request was made */
    char *path;              /* load: model path; synthetic: tokenizer path (may be NULL) */
    ChatTurn *turns;         /* submit: turns, texts in the same allocation */
    int n_turns;
    SamplerParams params;
    ModelConfig synth_cfg;   /* synthetic */
    uint64_t synth_seed;
} Request;

struct Engine {
    pthread_t thread;
    int thread_started;

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Request *q_head, *q_tail;
    int quit;
    int loads_pending;       /* loads queued or running */
    int has_model;
    uint64_t next_id;
    EngineModelInfo info;

    /* shared, atomic */
    _Atomic uint64_t cancel_upto;
    atomic_int reply_tokens;
    volatile int load_cancel; /* for ModelLoadOptions.cancel; written with __atomic_store_n */

    EventChan *chan;         /* thread-safe by itself */
    InferOptions iopts;      /* read-only after create */

    /* engine thread only */
    Model *model;            /* heap: Infer keeps a pointer to it, so it must not move */
    Infer *inf;
    Sampler *sampler;
    int32_t *kv_tokens;      /* tokens whose K/V sit at positions 0..n_kv */
    int n_kv, kv_cap;
    char *pending;           /* token text the ring had no room for yet */
    size_t pending_len, pending_cap;
    uint64_t load_req;       /* id of the load in progress (for progress events) */
};

const char *stop_reason_name(StopReason r) {
    switch (r) {
    case STOP_EOS: return "eos";
    case STOP_MAX_TOKENS: return "max_tokens";
    case STOP_CTX_FULL: return "ctx_full";
    case STOP_CANCELLED: return "cancelled";
    case STOP_ERROR: return "error";
    }
    return "unknown";
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- events ----------------------------------------------------------------------------------- */

static void emit_error(Engine *e, uint64_t req, EngineEventType type, const char *msg) {
    EngineEvent ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.req = req;
    snprintf(ev.u.error.msg, sizeof ev.u.error.msg, "%s", msg);
    chan_push_wait(e->chan, &ev);
}

static void emit_done(Engine *e, uint64_t req, StopReason reason, const EngineStats *st) {
    EngineEvent ev;
    memset(&ev, 0, sizeof ev);
    ev.type = EV_DONE;
    ev.req = req;
    ev.u.done.reason = reason;
    if (st) ev.u.done.stats = *st;
    chan_push_wait(e->chan, &ev);
}

static void emit_stats(Engine *e, uint64_t req, const EngineStats *st) {
    EngineEvent ev;
    memset(&ev, 0, sizeof ev);
    ev.type = EV_STATS;
    ev.req = req;
    ev.u.stats = *st;
    chan_push_latest(e->chan, &ev);
}

/* Offers text (plus whatever is still pending) to the ring; keeps what does not fit. */
static void emit_text(Engine *e, uint64_t req, const char *text, size_t len) {
    if (len > 0) {
        if (e->pending_len + len > e->pending_cap) {
            size_t cap = e->pending_cap ? e->pending_cap : 1024;
            while (cap < e->pending_len + len) cap *= 2;
            char *p = realloc(e->pending, cap);
            if (!p) {
                /* cannot keep it: hand it over waiting for room rather than lose it */
                chan_push_text_wait(e->chan, req, e->pending, e->pending_len);
                e->pending_len = 0;
                chan_push_text_wait(e->chan, req, text, len);
                return;
            }
            e->pending = p;
            e->pending_cap = cap;
        }
        memcpy(e->pending + e->pending_len, text, len);
        e->pending_len += len;
    }
    if (e->pending_len == 0) return;
    size_t took = chan_push_text(e->chan, req, e->pending, e->pending_len);
    memmove(e->pending, e->pending + took, e->pending_len - took);
    e->pending_len -= took;
}

static void flush_text(Engine *e, uint64_t req) {
    if (e->pending_len) chan_push_text_wait(e->chan, req, e->pending, e->pending_len);
    e->pending_len = 0;
}

static int cancelled(Engine *e, uint64_t req) {
    return atomic_load_explicit(&e->cancel_upto, memory_order_acquire) >= req;
}

/* ---- loading ---------------------------------------------------------------------------------- */

static void load_progress(void *user, float frac, const char *stage) {
    Engine *e = user;
    EngineEvent ev;
    memset(&ev, 0, sizeof ev);
    ev.type = EV_LOAD_PROGRESS;
    ev.req = e->load_req;
    ev.u.progress.frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    snprintf(ev.u.progress.stage, sizeof ev.u.progress.stage, "%s", stage ? stage : "");
    chan_push_latest(e->chan, &ev);
}

static int64_t count_params(const ModelConfig *c, int tied) {
    int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t layer = d * q + 2 * d * kv + q * d + 3 * d * c->ffn_dim + 3 * d + c->ffn_dim;
    return layer * c->n_layers + (int64_t)c->vocab_size * d * (tied ? 1 : 2) + d;
}

static void free_model(Model *m) {
    if (!m) return;
    model_free(m);
    free(m);
}

/* Makes a freshly loaded model (heap, ownership taken) the active one, freeing the old one;
 * on failure frees the new one and leaves the old one active. */
static int install_model(Engine *e, Model *m, Err *err) {
    if (!m->tok) {
        err_set(err, "%s: the model has no tokenizer", m->path[0] ? m->path : "model");
        free_model(m);
        return -1;
    }
    if (tokenizer_n_vocab(m->tok) > m->cfg.vocab_size) {
        err_set(err, "%s: the tokenizer has %d tokens but the model only %d", m->path,
                tokenizer_n_vocab(m->tok), m->cfg.vocab_size);
        free_model(m);
        return -1;
    }
    load_progress(e, 1.0f, "preparing backend");
    Infer *inf = infer_create(m, &e->iopts, err);
    if (!inf) {
        free_model(m);
        return -1;
    }
    SamplerParams sp = sampler_params_default();
    Sampler *s = sampler_create(&sp, m->cfg.vocab_size);
    int ctx = infer_ctx(inf);
    int32_t *kv = malloc((size_t)(ctx > 0 ? ctx : 1) * sizeof *kv);
    if (!s || !kv || ctx < 1) {
        sampler_free(s);
        free(kv);
        infer_destroy(inf);
        free_model(m);
        return err_set(err, ctx < 1 ? "the backend reports no context" : "out of memory");
    }
    /* swap in: the old Infer goes before the old Model it points into */
    infer_destroy(e->inf);
    sampler_free(e->sampler);
    free(e->kv_tokens);
    free_model(e->model);
    e->model = m;
    e->inf = inf;
    e->sampler = s;
    e->kv_tokens = kv;
    e->kv_cap = ctx;
    e->n_kv = 0;

    EngineModelInfo info;
    memset(&info, 0, sizeof info);
    snprintf(info.name, sizeof info.name, "%s", m->cfg.name[0] ? m->cfg.name : "model");
    snprintf(info.path, sizeof info.path, "%s", m->path);
    infer_describe(inf, info.backend, sizeof info.backend);
    snprintf(info.arch, sizeof info.arch, "%s", m->cfg.arch);
    snprintf(info.format, sizeof info.format, "%s", m->format);
    snprintf(info.weights, sizeof info.weights, "%s", m->weights);
    info.ctx_size = ctx;
    info.ctx_train = m->cfg.ctx_len;
    info.vocab_size = m->cfg.vocab_size;
    info.n_params_m = (int)(count_params(&m->cfg, m->output.data == m->tok_embd.data) / 1000000);
    snprintf(info.chat_format, sizeof info.chat_format, "%s", chat_format_name(m->cfg.chat_format));
    snprintf(info.chat_note, sizeof info.chat_note, "%s", m->chat_note);
    pthread_mutex_lock(&e->mu);
    e->info = info;
    e->has_model = 1;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

static void do_load(Engine *e, Request *r) {
    Err err = {{0}};
    e->load_req = r->id;
    load_progress(e, 0.0f, "opening");
    int rc = -1;
    Model *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(&err, "out of memory");
    } else if (r->kind == REQ_LOAD) {
        ModelLoadOptions lo = {.progress = load_progress, .user = e, .cancel = &e->load_cancel};
        rc = model_load(m, r->path, &lo, &err);
    } else {
        rc = model_init_random(m, &r->synth_cfg, r->synth_seed, &err);
        if (rc == 0 && r->path) {
            m->tok = model_load_tokenizer(r->path, &err);
            if (!m->tok) {
                model_free(m);
                rc = -1;
            }
        }
        if (rc == 0) snprintf(m->path, sizeof m->path, "synthetic:%s", m->cfg.name);
    }
    if (rc == 0) {
        rc = install_model(e, m, &err);
    } else if (m) {
        model_free(m); /* a failed loader leaves it zeroed or partly filled: both are safe */
        free(m);
    }

    EngineEvent ev;
    memset(&ev, 0, sizeof ev);
    ev.req = r->id;
    if (rc == 0) {
        ev.type = EV_LOADED;
        pthread_mutex_lock(&e->mu);
        ev.u.loaded = e->info;
        pthread_mutex_unlock(&e->mu);
    } else {
        ev.type = EV_LOAD_FAILED;
        snprintf(ev.u.error.msg, sizeof ev.u.error.msg, "%s",
                 err.msg[0] ? err.msg : "model load failed");
    }
    pthread_mutex_lock(&e->mu);
    e->loads_pending--;
    pthread_mutex_unlock(&e->mu);
    chan_push_wait(e->chan, &ev);
}

/* ---- generation ------------------------------------------------------------------------------- */

/* The model's stop tokens; a model file that names none stops at the tokenizer's <|eot_id|>
 * and end-of-text tokens instead. */
static int is_stop(const Model *m, int32_t tok) {
    if (m->cfg.n_stop <= 0)
        return tok == tokenizer_eot(m->tok) || tok == tokenizer_eos(m->tok);
    const int max_stop = (int)(sizeof m->cfg.stop_ids / sizeof m->cfg.stop_ids[0]);
    for (int i = 0; i < m->cfg.n_stop && i < max_stop; i++)
        if (m->cfg.stop_ids[i] == tok) return 1;
    return 0;
}

/* Decode speed: tokens after the first over the time since the first. The first token is
 * sampled from the prefill's logits, so a one-token reply has no decode step to time: its speed
 * stays 0 (unknown) rather than 1 / (sampling time), which read as thousands of tok/s. */
static void finish_stats(EngineStats *st, double t_first, double t_last) {
    if (st->gen_tokens > 1 && t_last > t_first)
        st->gen_tok_s = (st->gen_tokens - 1) * 1000.0 / (t_last - t_first);
}

static void fail_request(Engine *e, uint64_t req, const char *msg, const EngineStats *st) {
    emit_error(e, req, EV_ERROR, msg);
    emit_done(e, req, STOP_ERROR, st);
}


/* Renders the turns and fits them into the context: leaves room for the reply (a quarter of
 * the context, or max_tokens if smaller) and drops the oldest messages after the system prompt
 * until the rest fits, never the last one. Returns the malloc'ed prompt or NULL with err. */
static int32_t *fit_prompt(Engine *e, const Request *r, int ctx, int max_tokens, int *n_out,
                           int *dropped, Err *err) {
    ChatTokens ct;
    if (chat_template_tokens(e->model->tok, e->model->cfg.chat_format, r->turns, r->n_turns, 1, &ct, err) < 0) return NULL;
    int room = max_tokens < ctx / 4 ? max_tokens : ctx / 4;
    if (room < 1) room = 1;
    int first = 0;
    while (first < ct.n_msgs - 1 && chat_tokens_len_from(&ct, first) > ctx - room) first++;
    /* the kept part should not open with the assistant's half of a dropped exchange */
    while (first > 0 && first < ct.n_msgs - 1 && ct.msg_role[first] == ROLE_ASSISTANT) first++;
    int n = chat_tokens_len_from(&ct, first);
    int32_t *prompt = NULL;
    if (n > ctx - 1) {
        err_set(err,
                "the prompt needs %d tokens and the reply at least 1, but the context holds %d; "
                "shorten the message or the system prompt, or use a larger context",
                n, ctx);
    } else if (!(prompt = malloc((size_t)n * sizeof *prompt))) {
        err_set(err, "out of memory");
    } else {
        chat_tokens_assemble(&ct, first, prompt);
        *n_out = n;
        *dropped = first;
    }
    chat_tokens_free(&ct);
    return prompt;
}

/* Feeds one reply token's text through the UTF-8 assembler to the ring. */
static void emit_token_text(Engine *e, uint64_t req, Utf8Stream *u8, int32_t tok) {
    const Tokenizer *t = e->model->tok;
    if (tokenizer_is_special(t, tok)) return; /* control tokens are not reply text */
    size_t blen = 0;
    const char *bytes = tokenizer_token_bytes(t, tok, &blen);
    char text[512];
    while (bytes && blen > 0) {
        /* utf8_stream_feed needs 3 * len + 8 bytes of room (invalid bytes become U+FFFD) */
        size_t piece = blen < (sizeof text - 8) / 3 ? blen : (sizeof text - 8) / 3;
        size_t n = utf8_stream_feed(u8, bytes, piece, text, sizeof text);
        emit_text(e, req, text, n);
        bytes += piece;
        blen -= piece;
    }
}

static void do_submit(Engine *e, Request *r) {
    EngineStats st;
    memset(&st, 0, sizeof st);
    atomic_store(&e->reply_tokens, 0);
    if (cancelled(e, r->id)) {
        emit_done(e, r->id, STOP_CANCELLED, &st);
        return;
    }
    if (!e->model) {
        fail_request(e, r->id, "no model is loaded", &st);
        return;
    }
    Err err = {{0}};
    const Model *m = e->model;
    int ctx = infer_ctx(e->inf);
    int max_tokens = r->params.max_tokens > 0 ? r->params.max_tokens : ctx;
    st.ctx_size = ctx;
    st.ctx_used = e->n_kv;

    int n_prompt = 0;
    int32_t *prompt = fit_prompt(e, r, ctx, max_tokens, &n_prompt, &st.dropped_turns, &err);
    if (!prompt) {
        fail_request(e, r->id, err.msg, &st);
        return;
    }

    /* Reuse the KV cache for the longest common prefix; the last prompt token is always
     * evaluated again so that its logits are fresh. */
    int keep = 0;
    while (keep < e->n_kv && keep < n_prompt && e->kv_tokens[keep] == prompt[keep]) keep++;
    if (keep >= n_prompt) keep = n_prompt - 1;
    e->n_kv = keep;

    SamplerParams sp = r->params;
    sampler_reset(e->sampler, &sp);
    int from = sp.repeat_last_n > 0 && sp.repeat_last_n < n_prompt ? n_prompt - sp.repeat_last_n : 0;
    for (int i = from; i < n_prompt; i++) sampler_accept(e->sampler, prompt[i]);

    StopReason reason = STOP_ERROR;
    int failed = 0;
    double t_start = now_ms(), t_prefill_end = t_start, t_first = 0, t_last = 0;
    Utf8Stream u8;
    memset(&u8, 0, sizeof u8);

    /* prefill, in batches so that a cancel is seen between them */
    emit_stats(e, r->id, &st);
    for (int pos = keep; pos < n_prompt;) {
        if (cancelled(e, r->id)) {
            reason = STOP_CANCELLED;
            goto done;
        }
        int n = n_prompt - pos < PREFILL_CHUNK ? n_prompt - pos : PREFILL_CHUNK;
        if (infer_eval(e->inf, prompt + pos, n, pos, NULL, &err) < 0) {
            failed = 1;
            goto done;
        }
        memcpy(e->kv_tokens + pos, prompt + pos, (size_t)n * sizeof *prompt);
        pos += n;
        e->n_kv = pos;
        st.prompt_tokens = pos - keep;
        st.ctx_used = pos;
        st.prefill_ms = now_ms() - t_start;
        if (pos < n_prompt) emit_stats(e, r->id, &st);
    }
    t_prefill_end = now_ms();
    st.prefill_ms = t_prefill_end - t_start;
    if (st.prefill_ms > 0) st.prompt_tok_s = st.prompt_tokens * 1000.0 / st.prefill_ms;
    emit_stats(e, r->id, &st);

    /* decode */
    double t_stats = t_prefill_end;
    for (;;) {
        if (cancelled(e, r->id)) {
            reason = STOP_CANCELLED;
            break;
        }
        int32_t tok = -1;
        if (infer_sample(e->inf, e->sampler, &tok, &err) < 0) {
            failed = 1;
            break;
        }
        double t = now_ms();
        if (t_first == 0) {
            st.ttft_ms = t - r->t_submit_ms;
            t_first = t;
        }
        if (tok < 0 || tok >= m->cfg.vocab_size) {
            err_set(&err, "the backend picked token %d, outside the vocabulary", tok);
            failed = 1;
            break;
        }
        if (is_stop(m, tok)) {
            reason = STOP_EOS;
            break;
        }
        sampler_accept(e->sampler, tok);
        st.gen_tokens++;
        t_last = t;
        atomic_store(&e->reply_tokens, st.gen_tokens);
        const int stop = st.gen_tokens >= max_tokens || e->n_kv >= ctx;
        /* Where eval only queues the step (CUDA), queue the next token's step before handing
         * this one out, so detokenizing and the channel run while the device computes. */
        const int overlap = !stop && infer_eval_queues(e->inf);
        const int eval_rc = overlap ? infer_eval(e->inf, &tok, 1, e->n_kv, NULL, &err) : 0;
        emit_token_text(e, r->id, &u8, tok);
        if (stop) {
            reason = st.gen_tokens >= max_tokens ? STOP_MAX_TOKENS : STOP_CTX_FULL;
            break;
        }
        if (eval_rc < 0 || (!overlap && infer_eval(e->inf, &tok, 1, e->n_kv, NULL, &err) < 0)) {
            failed = 1;
            break;
        }
        e->kv_tokens[e->n_kv++] = tok;
        st.ctx_used = e->n_kv;
        if (t - t_stats >= STATS_EVERY_MS) {
            finish_stats(&st, t_first, t_last);
            emit_stats(e, r->id, &st);
            t_stats = t;
        }
    }
    {
        char tail[64];
        size_t n = utf8_stream_flush(&u8, tail, sizeof tail);
        emit_text(e, r->id, tail, n);
    }
done:
    free(prompt);
    flush_text(e, r->id);
    st.ctx_used = e->n_kv;
    finish_stats(&st, t_first, t_last);
    if (failed) {
        /* the cache may hold half-written positions: start from scratch next time */
        e->n_kv = 0;
        fail_request(e, r->id, err.msg[0] ? err.msg : "inference failed", &st);
        return;
    }
    emit_done(e, r->id, reason, &st);
}

/* ---- the thread ------------------------------------------------------------------------------- */

static void request_free(Request *r) {
    if (!r) return;
    free(r->path);
    free(r->turns);
    free(r);
}

static void *engine_main(void *arg) {
    Engine *e = arg;
    /* Asynchronous signals (Ctrl-C, SIGTERM, SIGWINCH ...) belong to the main thread. Faults
     * stay unblocked: a blocked SIGSEGV/SIGBUS/SIGFPE/SIGILL raised by this thread (or by the
     * CPU pool threads, which inherit this mask) kills the process without running the crash
     * handler that puts the terminal back; a model file truncated during a reply does that
     * (tests/unit/test_engine_fault.c). */
    sigset_t all;
    sigfillset(&all);
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) sigdelset(&all, faults[i]);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->q_head && !e->quit) pthread_cond_wait(&e->cv, &e->mu);
        if (e->quit) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        Request *r = e->q_head;
        e->q_head = r->next;
        if (!e->q_head) e->q_tail = NULL;
        pthread_mutex_unlock(&e->mu);

        if (r->kind == REQ_SUBMIT) do_submit(e, r);
        else do_load(e, r);
        request_free(r);
    }
    /* the CUDA context and device memory are released by the thread that made them */
    infer_destroy(e->inf);
    e->inf = NULL;
    sampler_free(e->sampler);
    e->sampler = NULL;
    free_model(e->model);
    e->model = NULL;
    return NULL;
}

/* ---- API (main thread) ------------------------------------------------------------------------ */

static uint64_t enqueue(Engine *e, Request *r) {
    pthread_mutex_lock(&e->mu);
    uint64_t id = r->id = ++e->next_id; /* r belongs to the engine thread once queued */
    if (r->kind != REQ_SUBMIT) e->loads_pending++;
    if (e->q_tail) e->q_tail->next = r;
    else e->q_head = r;
    e->q_tail = r;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return id;
}

Engine *engine_create(const EngineOptions *opts, Err *err) {
    Engine *e = calloc(1, sizeof *e);
    if (!e) {
        err_set(err, "engine: out of memory");
        return NULL;
    }
    if (opts) e->iopts = opts->infer;
    e->chan = chan_create(ENGINE_RING, err);
    if (!e->chan) {
        free(e);
        return NULL;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    atomic_init(&e->cancel_upto, 0);
    atomic_init(&e->reply_tokens, 0);
    int rc = pthread_create(&e->thread, NULL, engine_main, e);
    if (rc != 0) {
        err_set(err, "engine: cannot start the thread: %s", strerror(rc));
        chan_destroy(e->chan);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        free(e);
        return NULL;
    }
    e->thread_started = 1;
    if (opts && opts->model_path) engine_load(e, opts->model_path);
    return e;
}

void engine_destroy(Engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    atomic_store(&e->cancel_upto, UINT64_MAX);
    __atomic_store_n(&e->load_cancel, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    chan_close(e->chan); /* a thread waiting for ring space gives up */
    if (e->thread_started) pthread_join(e->thread, NULL);
    Request *r = e->q_head;
    while (r) {
        Request *next = r->next;
        request_free(r);
        r = next;
    }
    free(e->kv_tokens);
    free(e->pending);
    chan_destroy(e->chan);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

int engine_event_fd(const Engine *e) { return chan_fd(e->chan); }

int engine_poll(Engine *e, EngineEvent *out, int max) { return chan_pop(e->chan, out, max); }

int engine_wait(Engine *e, EngineEvent *out, int max, int timeout_ms) {
    return chan_wait(e->chan, out, max, timeout_ms);
}

static Request *request_new(RequestKind kind) {
    Request *r = calloc(1, sizeof *r);
    if (r) {
        r->kind = kind;
        r->t_submit_ms = now_ms();
    }
    return r;
}

/* For a request that could not even be queued (out of memory): tell the UI with id 0. */
static uint64_t refuse(Engine *e, const char *msg) {
    EngineEvent ev;
    memset(&ev, 0, sizeof ev);
    ev.type = EV_ERROR;
    snprintf(ev.u.error.msg, sizeof ev.u.error.msg, "%s", msg);
    chan_push_latest(e->chan, &ev); /* never waits: the caller is the consumer */
    return 0;
}

uint64_t engine_load(Engine *e, const char *path) {
    Request *r = request_new(REQ_LOAD);
    if (!r || !(r->path = strdup(path ? path : ""))) {
        free(r);
        return refuse(e, "engine: out of memory");
    }
    return enqueue(e, r);
}

uint64_t engine_load_synthetic(Engine *e, const ModelConfig *cfg, uint64_t seed,
                               const char *tokenizer_path) {
    Request *r = request_new(REQ_LOAD_SYNTHETIC);
    if (!r || (tokenizer_path && !(r->path = strdup(tokenizer_path)))) {
        free(r);
        return refuse(e, "engine: out of memory");
    }
    r->synth_cfg = *cfg;
    r->synth_seed = seed;
    return enqueue(e, r);
}

uint64_t engine_submit(Engine *e, const ChatTurn *turns, int n_turns, const SamplerParams *p) {
    pthread_mutex_lock(&e->mu);
    int usable = e->has_model || e->loads_pending > 0;
    pthread_mutex_unlock(&e->mu);
    if (!usable) return refuse(e, "no model is loaded: load one first (/load PATH)");
    if (n_turns < 1 || !turns) return refuse(e, "engine_submit: empty conversation");
    size_t bytes = (size_t)n_turns * sizeof(ChatTurn);
    for (int i = 0; i < n_turns; i++) bytes += strlen(turns[i].text ? turns[i].text : "") + 1;
    Request *r = request_new(REQ_SUBMIT);
    ChatTurn *copy = malloc(bytes);
    if (!r || !copy) {
        free(r);
        free(copy);
        return refuse(e, "engine: out of memory");
    }
    char *w = (char *)(copy + n_turns);
    for (int i = 0; i < n_turns; i++) {
        const char *t = turns[i].text ? turns[i].text : "";
        size_t n = strlen(t) + 1;
        memcpy(w, t, n);
        copy[i].role = turns[i].role;
        copy[i].text = w;
        w += n;
    }
    r->turns = copy;
    r->n_turns = n_turns;
    r->params = p ? *p : sampler_params_default();
    return enqueue(e, r);
}

void engine_cancel(Engine *e) {
    pthread_mutex_lock(&e->mu);
    uint64_t newest = e->next_id;
    pthread_mutex_unlock(&e->mu);
    /* monotonic: a later cancel never lowers the mark */
    uint64_t cur = atomic_load(&e->cancel_upto);
    while (cur < newest && !atomic_compare_exchange_weak(&e->cancel_upto, &cur, newest)) {
    }
}

int engine_model_info(Engine *e, EngineModelInfo *out) {
    pthread_mutex_lock(&e->mu);
    int has = e->has_model;
    if (has && out) *out = e->info;
    pthread_mutex_unlock(&e->mu);
    return has;
}

int engine_reply_tokens(Engine *e) { return atomic_load(&e->reply_tokens); }
