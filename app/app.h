/* App: the chat controller that the full-screen UI drives. It owns the Engine (inference
 * thread), the in-memory transcript, the history store and the sampling settings. It never
 * draws: every call changes state and returns AppReaction flags, and the UI alone decides
 * what to repaint (htop's pattern). The UI includes only this header (and app/commands.h),
 * never infer/: whatever it needs from the engine is re-exposed here as plain values (the
 * sampling settings are infer/sampler.h's SamplerParams, a plain value type, by way of cli.h).
 *
 * Threading: every function is called from the main thread. Engine events arrive through
 * app_event_fd() (poll it); app_process_events() drains them. */
#ifndef BN_APP_H
#define BN_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/cli.h"

typedef struct App App;

/* Reaction flags returned by the App and by slash commands. */
enum {
    REACT_NONE = 0,
    REACT_CHAT = 1 << 0,    /* the transcript changed */
    REACT_STATUS = 1 << 1,  /* the status bar or the hint changed */
    REACT_QUIT = 1 << 2,    /* leave the program */
    REACT_BROWSER = 1 << 3, /* open the session browser (app_browser_query() may preset a search) */
    REACT_REDRAW = 1 << 4,  /* repaint the whole screen (the transcript was replaced) */
    REACT_KEEP_INPUT = 1 << 5, /* the line was not taken (e.g. a reply is running): give it back */
    REACT_SET_INPUT = 1 << 6,  /* put app_take_input() into the input line (/edit) */
    REACT_COPY = 1 << 7,       /* put app_take_copy() on the clipboard (/copy) */
};

typedef enum {
    MSG_USER = 0,
    MSG_ASSISTANT,
    MSG_NOTE,   /* program output (/help, /params, model loaded): shown, never sent or stored */
    MSG_ERROR,  /* a failure the user should see: shown, never sent or stored */
} AppMsgKind;

typedef struct {
    AppMsgKind kind;
    char *text;           /* UTF-8 (possibly invalid bytes from a model), len bytes, 0-terminated */
    size_t len, cap;
    uint64_t serial;      /* unique per message for the life of the App */
    unsigned version;     /* bumped whenever text or figures change */
    bool streaming;       /* reply still being generated */
    bool interrupted;     /* stopped by the user (partial text kept) */
    char stop_reason[16]; /* "eos", "max_tokens", "ctx_full", "cancelled", "error", "" */
    char error[384];      /* why a reply failed (stop "error"), also when read back, else "" */
    int prompt_tokens, gen_tokens;
    double ttft_ms, tok_s;
    char model[128];      /* model that wrote a reply */
    char backend[256];
    SamplerParams sampling; /* settings a reply was made with, its seed included; set 0: none */
    int64_t store_id;     /* row in the history, 0 if not stored */
    int alt_i, alt_n;     /* a reply made again (/regen): version alt_i of alt_n (0: only one) */
    int64_t created_at;   /* unix ms */
} AppMessage;

/* A conversation as the UI shows it: the live chat or a saved session opened read-only. */
typedef struct {
    AppMessage *msgs;
    int n, cap;
    int view_start;       /* /clear hides messages before this index from the view */
    int ctx_start;        /* /reset: messages before this index are shown, not sent */
    uint64_t generation;  /* bumped when messages are removed or replaced (re-wrap everything) */
} AppTranscript;

void app_transcript_free(AppTranscript *t);

typedef struct {
    char model[128];        /* active model name, "" if none */
    char model_path[1024];  /* its file or directory, absolute */
    int n_params_m;         /* millions of parameters */
    char arch[32];          /* architecture as the file names it */
    char format[32];        /* "gguf", "hf-safetensors" */
    char weights[48];       /* how the file stored the ternary weights */
    int vocab_size;
    int ctx_train;          /* trained context; ctx_size below is the one in use */
    char chat_format[16];   /* chat format in use */
    char chat_note[192];    /* why that format when it is a fallback, else "" */
    double load_ms;         /* how long its load took */
    char backend[256];
    bool model_loaded;
    bool loading;           /* a load is under way */
    float load_frac;        /* 0..1 */
    char load_stage[48];
    char load_name[128];    /* file being loaded */
    bool generating;
    double tok_s, ttft_ms;  /* live while generating, then the last reply's final figures */
    int gen_tokens, prompt_tokens;
    int ctx_used, ctx_size;
    int dropped_turns;
    SamplerParams sampling;
    bool history_ok;        /* false: the chat works in memory only */
    char history_msg[200];  /* why history is not saved */
    int64_t session_id;     /* 0 until the first message is stored */
    char session_title[128];
    bool has_system;
} AppStatus;

typedef struct {
    bool load_model;        /* start loading the model at once (the chat); false: on resume */
} AppOptions;

/* Creates the engine (starting the model load), opens the history. Never fails for a bad
 * model or a broken database: those become messages. NULL only when out of memory or the
 * engine thread cannot start (err says why). */
App *app_create(const AppConfig *cfg, const AppOptions *opt, char *err, size_t errlen);
void app_destroy(App *a); /* NULL ok; cancels and joins the engine */

int app_event_fd(const App *a);
/* Drains engine events into the transcript and status; returns reactions. */
int app_process_events(App *a);
/* Timers (reply checkpoints every 2 s); call at least every second while generating. */
int app_tick(App *a);

/* A line typed by the user: a /command or a message. Returns reactions. */
int app_submit_line(App *a, const char *line);
/* Stops the reply being generated (partial text kept, marked interrupted). */
int app_cancel(App *a);
bool app_busy(const App *a);

const AppTranscript *app_transcript(const App *a);
void app_status(const App *a, AppStatus *out);

/* One-line hint for the user (bad argument, how to quit, ...); serial changes with each. */
const char *app_hint(const App *a, unsigned *serial);
void app_set_hint(App *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds program output to the transcript (MSG_NOTE or MSG_ERROR). */
void app_note(App *a, AppMsgKind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Settings and actions used by the slash commands (app/commands.c). Each returns reactions;
 * a refusal sets the hint. The sampling settings of the next reply have every bit set but
 * SAMPLER_SET_SEED, which marks a fixed seed (without it each reply gets one from the clock). */
SamplerParams app_get_sampling(const App *a);
int app_set_sampling(App *a, const SamplerParams *s);   /* saved with the session */
const char *app_get_system(const App *a);             /* "" if none */
int app_set_system(App *a, const char *text);         /* NULL or "" clears */
int app_load_model(App *a, const char *path);
int app_new_session(App *a);
int app_regenerate(App *a);
int app_clear_view(App *a);
/* /reset: a new context (and saved session) in the same view: the text above stays on screen
 * and the model no longer sees it. */
int app_reset_context(App *a);
/* /undo: drops the last exchange (your message and its reply) from the view and the context;
 * it stays in the history as another branch. */
int app_undo(App *a);
/* /edit: the same, and your message goes back into the input line (REACT_SET_INPUT) to be
 * changed and sent again as a new branch. */
int app_edit_last(App *a);
/* /copy [N]: the last reply, or its N-th fenced code block, for the clipboard (REACT_COPY). */
int app_copy_reply(App *a, int block);
/* /reply N: the last reply becomes its version N (of those /regen made), in the view, the
 * context and the saved session's active branch. */
int app_switch_reply(App *a, int version);
/* The text for the input line or the clipboard that the last such reaction was about. */
const char *app_take_input(App *a);
const char *app_take_copy(App *a);
int app_rename_session(App *a, const char *title);
/* Writes the live conversation as "md" or "json" to path (NULL: a name in the current
 * directory); returns 0 and the path written, or -1 with why. */
int app_export(App *a, const char *format, const char *path, char *written, size_t wlen,
               char *why, size_t whylen);
/* Opens the session browser, optionally with a search already typed. */
int app_open_browser(App *a, const char *query);
const char *app_browser_query(const App *a); /* "" if none */

/* ---- saved sessions (the browser) ---- */
typedef struct {
    int64_t id;
    char title[160];
    char model[128];
    int64_t created_at, updated_at; /* unix ms */
    int message_count;
} AppSessionRow;

typedef struct {
    int64_t session_id, message_id;
    char title[160];
    char snippet[400];   /* match markers: \x01 starts a match, \x02 ends it */
} AppSearchHit;

bool app_history_ok(const App *a);
/* --no-history: saved sessions can be browsed, searched and exported, not changed. */
bool app_history_readonly(App *a);
/* The saved session of the live chat, 0 until its first message is stored. */
int64_t app_current_session(const App *a);
/* Writes saved session id as "md" or "json" to path (NULL: a time-stamped name in the current
 * directory), never replacing a file, mode 0600; 0 and the path, or -1 with why. */
int app_session_export(App *a, int64_t id, const char *format, const char *path, char *written,
                       size_t wlen, char *why, size_t whylen);
/* Newest first; *out malloc'ed (free()). Return 0, or -1 with why. */
int app_sessions(App *a, AppSessionRow **out, int *n, char *why, size_t whylen);
int app_search(App *a, const char *query, AppSearchHit **out, int *n, char *why, size_t whylen);
/* The active branch of a saved session with per-reply figures (read-only view). */
int app_session_view(App *a, int64_t id, AppSessionRow *row, AppTranscript *out, char *why,
                     size_t whylen);
/* The same, but when message_id (a search hit) is not on the active branch, the branch that
 * holds it, under a note saying so. message_id 0: the active branch. */
int app_session_view_at(App *a, int64_t id, int64_t message_id, AppSessionRow *row, AppTranscript *out,
                        char *why, size_t whylen);
/* Continues a saved session: its messages, system prompt and settings become the live
 * chat (the next reply re-reads the conversation into the engine's cache). */
int app_session_resume(App *a, int64_t id, char *why, size_t whylen);
/* The newest saved session (--continue): its id, or 0 with why. */
int64_t app_newest_session(App *a, char *why, size_t whylen);
int app_session_rename(App *a, int64_t id, const char *title, char *why, size_t whylen);
int app_session_delete(App *a, int64_t id, char *why, size_t whylen);

/* Starts loading the model if AppOptions.load_model was false (the browser resumed). */
void app_ensure_model(App *a);

#endif
