/* Session exports: Markdown (the active branch, for reading) and JSON (every stored field of
 * the session and of every message on every branch, for scripts). The JSON format is
 * documented in README.md, section "History"; tests/unit/test_store.c parses it back. One writer per
 * format takes a plain view (a session and its messages), which the database gives for a saved
 * session and the recorder's memory for one that is not saved (app_export). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/store.h"
#include "app/store_internal.h"
#include "infer/utf8.h"

enum { EXPORT_FORMAT_VERSION = 1 };

/* A failed write of the export (a full disk, a closed pipe): errno holds the latest cause. */
static int write_failed(Err *err) {
    const int e = errno;
    return err_set(err, "export: writing failed: %s", e ? strerror(e) : "the output is incomplete");
}

static void fmt_time(int64_t ms, char *buf, size_t cap) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* "temperature 0.7, top-k 40, ..." for the settings that are set; "" when none is. */
void store_sampling_describe(const SamplerParams *sp, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
#define ADD(...)                                                                              \
    do {                                                                                      \
        if (used < cap) {                                                                     \
            int k = snprintf(buf + used, cap - used, "%s", used ? ", " : "");                 \
            if (k > 0) used += (size_t)k;                                                     \
        }                                                                                     \
        if (used < cap) {                                                                     \
            int k = snprintf(buf + used, cap - used, __VA_ARGS__);                            \
            if (k > 0) used += (size_t)k;                                                     \
        }                                                                                     \
    } while (0)
    const unsigned set = sp->set;
    if (set & SAMPLER_SET_TEMPERATURE) ADD("temperature %g", store_float_decimal(sp->temperature));
    if (set & SAMPLER_SET_TOP_K) ADD("top-k %d", sp->top_k);
    if (set & SAMPLER_SET_TOP_P) ADD("top-p %g", store_float_decimal(sp->top_p));
    if (set & SAMPLER_SET_MIN_P) ADD("min-p %g", store_float_decimal(sp->min_p));
    if (set & SAMPLER_SET_REPEAT_PENALTY)
        ADD("repeat penalty %g", store_float_decimal(sp->repeat_penalty));
    if (set & SAMPLER_SET_MAX_TOKENS) ADD("max tokens %d", sp->max_tokens);
    if (set & SAMPLER_SET_SEED) ADD("seed %lld", (long long)(sp->seed & INT64_MAX));
#undef ADD
}

/* "34 tokens · 45.2 tok/s · TTFT 120 ms · ..." for one reply. */
void store_reply_describe(const StoreMessage *m, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "%d prompt tokens, %d reply tokens", m->prompt_tokens, m->reply_tokens);
    size_t used = k > 0 ? (size_t)k : 0;
#define ADD(...)                                                                              \
    do {                                                                                      \
        if (used < cap) {                                                                     \
            int k_ = snprintf(buf + used, cap - used, __VA_ARGS__);                           \
            if (k_ > 0) used += (size_t)k_;                                                   \
        }                                                                                     \
    } while (0)
    if (m->ttft_ms > 0) ADD(" \xC2\xB7 TTFT %.1f ms", m->ttft_ms);
    if (m->prompt_tok_s > 0) ADD(" \xC2\xB7 prefill %.1f tok/s", m->prompt_tok_s);
    if (m->tok_per_s > 0) ADD(" \xC2\xB7 %.1f tok/s", m->tok_per_s);
    ADD(" \xC2\xB7 stop: %s", m->stop_reason[0] ? m->stop_reason : "none");
    if (m->error[0]) ADD(" \xC2\xB7 failed: %s", m->error);
    else if (m->interrupted) ADD(" \xC2\xB7 interrupted");
    if (m->model_name[0]) ADD(" \xC2\xB7 model: %s", m->model_name);
    if (m->backend[0]) ADD(" \xC2\xB7 %s", m->backend);
#undef ADD
}

/* A string of a view: "" for NULL (a session not saved may lack some). */
static const char *s_or_empty(const char *s) { return s ? s : ""; }

int store_write_markdown(const StoreSession *ss, const StoreMessage *msgs, int n, FILE *to,
                         Err *err) {
    char t1[64], t2[64], samp[512], line[1024];
    const char *title = s_or_empty(ss->title), *model_name = s_or_empty(ss->model_name);
    const char *model_path = s_or_empty(ss->model_path), *system = s_or_empty(ss->system_prompt);
    fprintf(to, "# %s\n\n", title[0] ? title : "(untitled)");
    if (ss->id) fprintf(to, "- Session: %lld\n", (long long)ss->id);
    if (ss->created_at) {
        fmt_time(ss->created_at, t1, sizeof t1);
        fmt_time(ss->updated_at, t2, sizeof t2);
        fprintf(to, "- Created: %s\n- Updated: %s\n", t1, t2);
    }
    if (model_name[0] || model_path[0])
        fprintf(to, "- Model: %s%s%s%s\n", model_name, model_path[0] ? " (" : "", model_path,
                model_path[0] ? ")" : "");
    store_sampling_describe(&ss->sampling, samp, sizeof samp);
    if (samp[0]) fprintf(to, "- Sampling: %s\n", samp);
    if (system[0]) fprintf(to, "\n## System prompt\n\n%s\n", system);
    for (int i = 0; i < n; i++) {
        const StoreMessage *m = &msgs[i];
        const char *who = !strcmp(m->role, "user") ? "User"
                          : !strcmp(m->role, "assistant") ? "Assistant" : "System";
        fprintf(to, "\n## %s\n\n%s\n", who, m->text);
        if (!strcmp(m->role, "assistant")) {
            store_reply_describe(m, line, sizeof line);
            fprintf(to, "\n*%s*\n", line);
        }
    }
    if (fflush(to) != 0 || ferror(to)) return write_failed(err);
    return 0;
}

/* Malformed UTF-8 (a reply cut in the middle of a character) becomes U+FFFD: jansson refuses
 * invalid UTF-8. */
static json_t *jstr(const char *s) {
    char *c = utf8_repair(s ? s : "", s ? strlen(s) : 0);
    json_t *j = c ? json_string(c) : NULL;
    free(c);
    return j ? j : json_string("");
}

static json_t *jreal(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* A float setting: its decimal when its bit is set and it is finite, else null. */
static json_t *jsetting(const SamplerParams *sp, unsigned bit, float v) {
    return (sp->set & bit) && isfinite(v) ? json_real(store_float_decimal(v)) : json_null();
}

static json_t *jcount(const SamplerParams *sp, unsigned bit, json_int_t v) {
    return sp->set & bit ? json_integer(v) : json_null();
}

static json_t *jsampling(const SamplerParams *sp) {
    json_t *o = json_object();
    json_object_set_new(o, "temperature", jsetting(sp, SAMPLER_SET_TEMPERATURE, sp->temperature));
    json_object_set_new(o, "top_k", jcount(sp, SAMPLER_SET_TOP_K, sp->top_k));
    json_object_set_new(o, "top_p", jsetting(sp, SAMPLER_SET_TOP_P, sp->top_p));
    json_object_set_new(o, "min_p", jsetting(sp, SAMPLER_SET_MIN_P, sp->min_p));
    json_object_set_new(o, "repeat_penalty",
                        jsetting(sp, SAMPLER_SET_REPEAT_PENALTY, sp->repeat_penalty));
    json_object_set_new(o, "max_tokens", jcount(sp, SAMPLER_SET_MAX_TOKENS, sp->max_tokens));
    json_object_set_new(o, "seed",
                        jcount(sp, SAMPLER_SET_SEED, (json_int_t)(sp->seed & INT64_MAX)));
    return o;
}

/* An id of a view: 0 means not saved (no row yet). */
static json_t *jid(int64_t id) { return id ? json_integer(id) : json_null(); }

int store_write_json(const StoreSession *ss, const StoreMessage *msgs, int n, FILE *to, Err *err) {
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("bitnet-chat-session"));
    json_object_set_new(root, "format_version", json_integer(EXPORT_FORMAT_VERSION));
    json_object_set_new(root, "schema_version", json_integer(STORE_SCHEMA_VERSION));
    json_t *js = json_object();
    json_object_set_new(js, "id", jid(ss->id));
    json_object_set_new(js, "title", jstr(ss->title));
    json_object_set_new(js, "created_at", json_integer(ss->created_at));
    json_object_set_new(js, "updated_at", json_integer(ss->updated_at));
    json_object_set_new(js, "model_name", jstr(ss->model_name));
    json_object_set_new(js, "model_path", jstr(ss->model_path));
    json_object_set_new(js, "system_prompt", jstr(ss->system_prompt));
    json_object_set_new(js, "sampling", jsampling(&ss->sampling));
    json_object_set_new(js, "active_leaf", jid(ss->active_leaf));
    json_object_set_new(js, "message_count", json_integer(ss->message_count));
    json_object_set_new(root, "session", js);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const StoreMessage *m = &msgs[i];
        json_t *o = json_object();
        json_object_set_new(o, "id", jid(m->id));
        json_object_set_new(o, "parent_id", jid(m->parent_id));
        json_object_set_new(o, "role", jstr(m->role));
        json_object_set_new(o, "text", jstr(m->text));
        json_object_set_new(o, "created_at", json_integer(m->created_at));
        json_object_set_new(o, "prompt_tokens", json_integer(m->prompt_tokens));
        json_object_set_new(o, "reply_tokens", json_integer(m->reply_tokens));
        json_object_set_new(o, "ttft_ms", jreal(m->ttft_ms));
        json_object_set_new(o, "tok_per_s", jreal(m->tok_per_s));
        json_object_set_new(o, "prompt_tok_s", jreal(m->prompt_tok_s));
        json_object_set_new(o, "stop_reason", jstr(m->stop_reason));
        json_object_set_new(o, "interrupted", json_boolean(m->interrupted));
        json_object_set_new(o, "error", jstr(m->error));
        json_object_set_new(o, "backend", jstr(m->backend));
        json_object_set_new(o, "model_name", jstr(m->model_name));
        json_object_set_new(o, "sampling", jsampling(&m->sampling));
        json_object_set_new(o, "on_active_branch", json_boolean(m->on_active_branch));
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "messages", arr);
    int r = json_dumpf(root, to, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(root);
    fputc('\n', to);
    if (r != 0 || fflush(to) != 0 || ferror(to)) return write_failed(err);
    return 0;
}

typedef int (*ViewWriter)(const StoreSession *ss, const StoreMessage *msgs, int n, FILE *to,
                         Err *err);

/* Loads a saved session with its messages (every branch, or the active one) and writes it. */
static int export_saved(Store *s, int64_t session_id, int all_branches, ViewWriter write,
                        FILE *to, Err *err) {
    StoreSession ss;
    if (store_session_get(s, session_id, &ss, err)) return -1;
    StoreMessage *msgs;
    int n;
    if ((all_branches ? store_message_all : store_message_branch)(s, session_id, &msgs, &n, err)) {
        store_session_clear(&ss);
        return -1;
    }
    int rc = write(&ss, msgs, n, to, err);
    store_messages_free(msgs, n);
    store_session_clear(&ss);
    return rc;
}

int store_export_markdown(Store *s, int64_t session_id, FILE *to, Err *err) {
    return export_saved(s, session_id, 0, store_write_markdown, to, err);
}

int store_export_json(Store *s, int64_t session_id, FILE *to, Err *err) {
    return export_saved(s, session_id, 1, store_write_json, to, err);
}