/* Engine: the inference thread. It owns the Model, the Infer runtime (KV cache, CUDA context)
 * and does model loading itself so the UI stays live. The main thread talks to it only here:
 *   - requests go in through engine_load / engine_submit / engine_cancel;
 *   - fixed-size events come back through a bounded queue; engine_event_fd() becomes readable
 *     when events are waiting (poll it beside stdin), engine_poll() drains them.
 * Every event carries the id of the request it belongs to, so a UI can drop stale ones. */
#ifndef BN_ENGINE_H
#define BN_ENGINE_H

#include <stdint.h>

#include "infer/chat_template.h"
#include "infer/err.h"
#include "infer/infer.h"
#include "infer/sampler.h"

typedef struct Engine Engine;

typedef enum {
    EV_LOAD_PROGRESS = 1, /* progress: a model load is under way */
    EV_LOADED,            /* loaded: the new model is active */
    EV_LOAD_FAILED,       /* error.msg: the old model (if any) stays active */
    EV_TOKEN,             /* token: complete UTF-8 text of one or more tokens */
    EV_STATS,             /* stats: live figures, sent at least every 250 ms while generating */
    EV_DONE,              /* done: generation ended (final stats included) */
    EV_ERROR,             /* error.msg: a request failed (followed by EV_DONE reason ERROR) */
} EngineEventType;

typedef enum {
    STOP_EOS = 0,         /* a stop token (<|eot_id|>, <|end_of_text|>) */
    STOP_MAX_TOKENS,
    STOP_CTX_FULL,        /* the context window filled up during the reply */
    STOP_CANCELLED,
    STOP_ERROR,
} StopReason;

const char *stop_reason_name(StopReason r); /* "eos", "max_tokens", "ctx_full", "cancelled", "error" */

typedef struct {
    int prompt_tokens;      /* tokens in the rendered prompt actually evaluated this turn */
    int gen_tokens;         /* reply tokens so far */
    double prefill_ms;
    double ttft_ms;         /* submit -> first reply token */
    double prompt_tok_s;    /* prompt tokens / prefill time */
    double gen_tok_s;       /* reply tokens / decode time */
    int ctx_used, ctx_size; /* KV positions in use / capacity */
    int dropped_turns;      /* oldest turns left out because the context was full */
} EngineStats;

typedef struct {
    char name[128];         /* model name */
    char path[1024];
    char backend[256];      /* "CUDA: NVIDIA H100 80GB HBM3" / "CPU, 2 threads (AVX2)"; with the
                             * CPU layout, the lm_head and why CUDA was not used, ~160 chars */
    char arch[32];          /* ModelConfig.arch: "bitnet-b1.58", "llama", "bitnet" (HF) ... */
    char format[32];        /* Model.format: "gguf", "hf-safetensors" */
    char weights[48];       /* Model.weights: how the file stored the ternary weights */
    int ctx_size;           /* context in use (what the backend allocated) */
    int ctx_train;          /* trained context (ModelConfig.ctx_len) */
    int vocab_size;
    int n_params_m;         /* millions of parameters */
    char chat_format[16];   /* chat_format_name(): "bitnet", "llama3", "falcon3", "chatml", "plain" */
    char chat_note[192];    /* why that format when it is a fallback (Model.chat_note), else "" */
} EngineModelInfo;

enum { ENGINE_TOKEN_TEXT = 120 };

typedef struct {
    EngineEventType type;
    uint64_t req;
    union {
        struct { float frac; char stage[48]; } progress;
        EngineModelInfo loaded;
        struct { int len; char text[ENGINE_TOKEN_TEXT]; } token;
        EngineStats stats;
        struct { StopReason reason; EngineStats stats; } done;
        struct { char msg[384]; } error;
    } u;
} EngineEvent;

typedef struct {
    const char *model_path;  /* NULL: start with no model (engine_load later) */
    InferOptions infer;
} EngineOptions;

/* Starts the thread; if opts->model_path is set a load begins at once (request id 1). */
Engine *engine_create(const EngineOptions *opts, Err *err);
/* Cancels any work, joins the thread, frees the model. Safe with NULL. */
void engine_destroy(Engine *e);

int engine_event_fd(const Engine *e);
/* Non-blocking: copies up to max waiting events into out and returns how many. */
int engine_poll(Engine *e, EngineEvent *out, int max);
/* Blocking variant for scripts (one-shot prompt, tests): waits up to timeout_ms (-1 forever). */
int engine_wait(Engine *e, EngineEvent *out, int max, int timeout_ms);

/* Loads another model; the current one keeps serving until the new one is ready, and stays
 * if the load fails. Returns the request id. */
uint64_t engine_load(Engine *e, const char *path);

/* Starts a reply to the conversation (copied; the last turn is normally the user's). The
 * engine reuses the KV cache for the longest common prefix with the previous request. If the
 * conversation does not fit, the oldest turns after the system prompt are dropped and the
 * count is reported in the stats. Returns the request id, 0 if no model is loaded (an
 * EV_ERROR then tells why). */
uint64_t engine_submit(Engine *e, const ChatTurn *turns, int n_turns, const SamplerParams *p);
/* (Requests run one at a time in the order made: a submit during a reply starts after it, so
 * call engine_cancel first to replace one. A submit while a load is pending is accepted and
 * runs on the new model, or fails with EV_ERROR if that load fails and no model is left.) */

/* Stops the current generation within one token (EV_DONE with STOP_CANCELLED). Replies
 * requested before this call and still queued end the same way without running; later ones
 * are not affected, nor are model loads. */
void engine_cancel(Engine *e);

/* Info on the active model; returns 0 if none. Safe from the main thread. */
int engine_model_info(Engine *e, EngineModelInfo *out);

/* Loads a synthetic model (model_init_random with cfg and seed) plus the tokenizer at
 * tokenizer_path (a tokenizer.json, GGUF file or HF directory; required: without a tokenizer the
 * load fails),
 * like engine_load. For tests and benchmarks: random weights produce noise. */
uint64_t engine_load_synthetic(Engine *e, const ModelConfig *cfg, uint64_t seed,
                               const char *tokenizer_path);

/* Reply tokens generated so far by the request being answered now (any thread). */
int engine_reply_tokens(Engine *e);

#endif
