/* Engine thread mechanics on a tiny synthetic model (random weights: the text is noise, but the
 * plumbing is real): load progress, submit -> tokens -> done, KV-cache reuse, cancel within one
 * token (also of queued requests), a failed swap keeping the old model, no model, request ids,
 * context overflow (dropped turns, too-long prompt, context full), a UI that stops reading, and
 * destroy while generating. Run it under TSan too (-DBITNET_SANITIZE=thread).
 * argv[1]: folder with the unpacked Llama 3 tokenizer.json. */
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "infer/engine.h"
#include "infer/model.h"

static char tok_path[4096];

/* model_config_tiny, with a stop token no reply can produce (beyond the tokenizer's 128256),
 * so that random weights never end a reply early and every run reaches its limit */
static ModelConfig tiny_config(void) {
    ModelConfig c = model_config_tiny();
    c.n_stop = 1;
    c.stop_ids[0] = 128255 + 1000000;
    return c;
}

typedef struct {
    char text[1 << 16];
    int text_len;
    int n_token_events, n_stats, n_progress, n_errors;
    int done;
    StopReason reason;
    EngineStats final;
    EngineStats last_stats;
    char error[400];
    int foreign; /* events with an unexpected request id */
    int utf8_ok;
    EngineModelInfo loaded;
    int loaded_ok, load_failed;
} Result;

static int utf8_valid(const char *s, int n) {
    for (int i = 0; i < n;) {
        unsigned c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (int k = 1; k < len; k++)
            if (((unsigned char)s[i + k] & 0xc0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

static void absorb(Result *r, const EngineEvent *ev, uint64_t req) {
    if (ev->req != req) {
        r->foreign++;
        return;
    }
    switch (ev->type) {
    case EV_LOAD_PROGRESS: r->n_progress++; break;
    case EV_LOADED:
        r->loaded = ev->u.loaded;
        r->loaded_ok = 1;
        r->done = 1;
        break;
    case EV_LOAD_FAILED:
        snprintf(r->error, sizeof r->error, "%s", ev->u.error.msg);
        r->load_failed = 1;
        r->done = 1;
        break;
    case EV_TOKEN:
        r->n_token_events++;
        if (!utf8_valid(ev->u.token.text, ev->u.token.len)) r->utf8_ok = 0;
        if (ev->u.token.text[ev->u.token.len] != 0) r->utf8_ok = 0;
        if (r->text_len + ev->u.token.len < (int)sizeof r->text) {
            memcpy(r->text + r->text_len, ev->u.token.text, (size_t)ev->u.token.len);
            r->text_len += ev->u.token.len;
        }
        break;
    case EV_STATS:
        r->n_stats++;
        r->last_stats = ev->u.stats;
        break;
    case EV_ERROR:
        r->n_errors++;
        snprintf(r->error, sizeof r->error, "%s", ev->u.error.msg);
        if (req == 0) r->done = 1; /* a refused request gets no EV_DONE */
        break;
    case EV_DONE:
        r->done = 1;
        r->reason = ev->u.done.reason;
        r->final = ev->u.done.stats;
        break;
    }
}

/* Collects events of req until its EV_DONE / EV_LOADED / EV_LOAD_FAILED (or 60 s). */
static void collect(Engine *e, uint64_t req, Result *r) {
    memset(r, 0, sizeof *r);
    r->utf8_ok = 1;
    EngineEvent ev[1];
    /* one event at a time, so that the next request's events stay queued for the next call */
    for (int waited = 0; !r->done && waited < 600;) {
        int n = engine_wait(e, ev, 1, 100);
        if (n == 0) waited++;
        for (int i = 0; i < n; i++) absorb(r, &ev[i], req);
    }
    r->text[r->text_len] = 0;
}

/* Waits (up to 120 s) until the running request has made at least n reply tokens. */
static int wait_reply_tokens(Engine *e, int n) {
    for (int i = 0; i < 120000 && engine_reply_tokens(e) < n; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    return engine_reply_tokens(e) >= n;
}

static SamplerParams greedy(int max_tokens) {
    SamplerParams p = sampler_params_default();
    p.temperature = 0.0f;
    p.repeat_penalty = 1.0f;
    p.max_tokens = max_tokens;
    return p;
}

static Engine *new_engine(int ctx, Result *load) {
    EngineOptions o = {.model_path = NULL, .infer = {.backend = BACKEND_CPU, .threads = 2, .ctx = ctx}};
    Err err = {{0}};
    Engine *e = engine_create(&o, &err);
    if (!e) {
        fprintf(stderr, "engine_create: %s\n", err.msg);
        exit(1);
    }
    ModelConfig c = tiny_config();
    uint64_t id = engine_load_synthetic(e, &c, 1234, tok_path);
    collect(e, id, load);
    if (!load->loaded_ok) {
        fprintf(stderr, "synthetic load failed: %s\n", load->error);
        exit(1);
    }
    return e;
}

static void test_no_model(void) {
    EngineOptions o = {.model_path = NULL, .infer = {.backend = BACKEND_CPU}};
    Engine *e = engine_create(&o, NULL);
    REQUIRE(e);
    EngineModelInfo info;
    CHECK_EQ_INT(engine_model_info(e, &info), 0);
    ChatTurn t[] = {{ROLE_USER, "hi"}};
    SamplerParams p = greedy(4);
    CHECK_EQ_INT(engine_submit(e, t, 1, &p), 0);
    EngineEvent ev[4];
    int n = engine_wait(e, ev, 4, 1000);
    CHECK_EQ_INT(n, 1);
    CHECK(n == 1 && ev[0].type == EV_ERROR && ev[0].req == 0 && strstr(ev[0].u.error.msg, "no model"));

    /* a load that fails leaves no model; a submit queued behind it gets its error */
    uint64_t lid = engine_load(e, "/nonexistent/model.gguf");
    uint64_t sid = engine_submit(e, t, 1, &p);
    CHECK(lid > 0);
    Result r;
    if (sid == 0) {
        /* the load had already failed: refused at once with an id-0 error */
        collect(e, lid, &r);
        CHECK(r.load_failed && strstr(r.error, "/nonexistent/model.gguf"));
        collect(e, 0, &r);
        CHECK(r.n_errors == 1);
    } else {
        CHECK(sid > lid);
        collect(e, lid, &r);
        CHECK(r.load_failed && strstr(r.error, "/nonexistent/model.gguf"));
        collect(e, sid, &r);
        CHECK(r.done && r.reason == STOP_ERROR && r.n_errors == 1);
    }
    CHECK_EQ_INT(engine_model_info(e, &info), 0);
    engine_destroy(e);
    engine_destroy(NULL);
}

static void test_generate(void) {
    Result load, r1, r2, r3;
    Engine *e = new_engine(0, &load);
    CHECK(load.n_progress >= 1);
    CHECK_STREQ(load.loaded.name, "tiny-random");
    CHECK_EQ_INT(load.loaded.ctx_size, 1024);
    CHECK(load.loaded.backend[0] != 0);
    EngineModelInfo info;
    CHECK_EQ_INT(engine_model_info(e, &info), 1);
    CHECK_STREQ(info.name, "tiny-random");

    ChatTurn t[] = {{ROLE_SYSTEM, "Be brief."}, {ROLE_USER, "Hello there, engine!"}};
    SamplerParams p = greedy(24);
    uint64_t id = engine_submit(e, t, 2, &p);
    collect(e, id, &r1);
    CHECK_MSG(r1.done && r1.reason == STOP_MAX_TOKENS, "reason %d: %s", r1.reason, r1.error);
    CHECK_EQ_INT(r1.final.gen_tokens, 24);
    CHECK(r1.text_len > 0 && r1.utf8_ok);
    CHECK_EQ_INT(r1.foreign, 0);
    CHECK(r1.final.prompt_tokens > 8);
    CHECK(r1.final.ttft_ms > 0 && r1.final.gen_tok_s > 0 && r1.final.prompt_tok_s > 0);
    CHECK_EQ_INT(r1.final.ctx_size, 1024);
    /* the last token is sampled but not evaluated */
    CHECK_EQ_INT(r1.final.ctx_used, r1.final.prompt_tokens + 23);
    CHECK(r1.n_stats >= 1);

    /* the same request again: greedy gives the same text and the cache serves the prompt */
    uint64_t id2 = engine_submit(e, t, 2, &p);
    CHECK(id2 > id);
    collect(e, id2, &r2);
    CHECK(r2.reason == STOP_MAX_TOKENS);
    CHECK_STREQ(r2.text, r1.text);
    CHECK_EQ_INT(r2.final.prompt_tokens, 1);

    /* continuing the conversation evaluates only what is new */
    ChatTurn t3[] = {{ROLE_SYSTEM, "Be brief."}, {ROLE_USER, "Hello there, engine!"},
                     {ROLE_ASSISTANT, r1.text}, {ROLE_USER, "And again?"}};
    uint64_t id3 = engine_submit(e, t3, 4, &p);
    collect(e, id3, &r3);
    CHECK(r3.reason == STOP_MAX_TOKENS);
    /* The cache holds the first prompt up to "Assistant:"; its last token (a lone space) differs
     * because the stored reply is tokenized together with it. */
    int total3 = r3.final.ctx_used - 23;
    CHECK_MSG(r3.final.prompt_tokens <= total3 - (r1.final.prompt_tokens - 1),
              "evaluated %d of %d", r3.final.prompt_tokens, total3);
    CHECK(r3.final.prompt_tokens >= 8); /* eot + "User: And again?" + eot + "Assistant: " */

    /* a prompt longer than one prefill batch (512) is evaluated in several, all of it */
    static char longmsg[5 * 700 + 1];
    for (int i = 0; i < 700; i++) memcpy(longmsg + 5 * i, "word ", 5);
    ChatTurn tl[] = {{ROLE_USER, longmsg}};
    SamplerParams p3 = greedy(3);
    Result rl;
    collect(e, engine_submit(e, tl, 1, &p3), &rl);
    CHECK_MSG(rl.reason == STOP_MAX_TOKENS, "%s", rl.error);
    CHECK(rl.final.prompt_tokens > 600);
    CHECK_EQ_INT(rl.final.ctx_used, 1 + rl.final.prompt_tokens + 2); /* BOS came from the cache */
    CHECK_EQ_INT(rl.final.dropped_turns, 0);

    /* seeded sampling is reproducible */
    SamplerParams s = sampler_params_default();
    s.temperature = 1.0f;
    s.seed = 99;
    s.max_tokens = 16;
    Result a, b;
    collect(e, engine_submit(e, t, 2, &s), &a);
    collect(e, engine_submit(e, t, 2, &s), &b);
    CHECK(a.reason == STOP_MAX_TOKENS && b.reason == STOP_MAX_TOKENS);
    CHECK_STREQ(a.text, b.text);
    engine_destroy(e);
}

static void test_cancel(void) {
    Result load, r;
    Engine *e = new_engine(0, &load);
    ChatTurn t[] = {{ROLE_USER, "Count forever."}};
    SamplerParams p = greedy(100000);
    uint64_t id = engine_submit(e, t, 1, &p);
    /* wait until it is generating */
    REQUIRE(wait_reply_tokens(e, 5));
    engine_cancel(e);
    int at_cancel = engine_reply_tokens(e);
    collect(e, id, &r);
    CHECK(r.done && r.reason == STOP_CANCELLED);
    CHECK_MSG(r.final.gen_tokens <= at_cancel + 1, "%d tokens after cancel at %d",
              r.final.gen_tokens, at_cancel);
    CHECK(r.final.gen_tokens >= 5);

    /* a cancel also stops requests queued behind, but not later ones */
    uint64_t a = engine_submit(e, t, 1, &p);
    uint64_t b = engine_submit(e, t, 1, &p);
    engine_cancel(e);
    SamplerParams q = greedy(3);
    uint64_t c = engine_submit(e, t, 1, &q);
    Result ra, rb, rc;
    collect(e, a, &ra);
    collect(e, b, &rb);
    collect(e, c, &rc);
    CHECK(ra.reason == STOP_CANCELLED && rb.reason == STOP_CANCELLED);
    CHECK_EQ_INT(rb.final.gen_tokens, 0);
    CHECK(rc.reason == STOP_MAX_TOKENS && rc.final.gen_tokens == 3);
    CHECK(a < b && b < c);
    engine_destroy(e);
}

static void test_swap_and_ids(void) {
    Result load, r;
    Engine *e = new_engine(0, &load);
    uint64_t lid = engine_load(e, "/nonexistent/other.gguf");
    collect(e, lid, &r);
    CHECK(r.load_failed && r.error[0]);
    EngineModelInfo info;
    CHECK_EQ_INT(engine_model_info(e, &info), 1);
    CHECK_STREQ(info.name, "tiny-random");
    /* the old model still answers */
    ChatTurn t[] = {{ROLE_USER, "Still there?"}};
    SamplerParams p = greedy(4);
    collect(e, engine_submit(e, t, 1, &p), &r);
    CHECK(r.reason == STOP_MAX_TOKENS && r.final.gen_tokens == 4);

    /* every event carries its own request's id: a UI can drop stale ones */
    SamplerParams longp = greedy(200);
    uint64_t a = engine_submit(e, t, 1, &longp);
    uint64_t b = engine_submit(e, t, 1, &p);
    engine_cancel(e); /* cancels a and b */
    uint64_t c = engine_submit(e, t, 1, &p);
    EngineEvent ev[64];
    int done_a = 0, done_b = 0, done_c = 0, bad = 0, order_ok = 1;
    for (int w = 0; w < 600 && !done_c;) {
        int n = engine_wait(e, ev, 64, 100);
        if (!n) w++;
        for (int i = 0; i < n; i++) {
            if (ev[i].req == a) order_ok &= !done_a;
            else if (ev[i].req == b) order_ok &= done_a && !done_b;
            else if (ev[i].req == c) order_ok &= done_a && done_b && !done_c;
            else bad++;
            if (ev[i].type == EV_DONE) {
                if (ev[i].req == a) done_a = 1;
                if (ev[i].req == b) done_b = 1;
                if (ev[i].req == c) done_c = 1;
            }
        }
    }
    CHECK(done_a && done_b && done_c);
    CHECK(order_ok);
    CHECK_EQ_INT(bad, 0);
    engine_destroy(e);
}

static void test_context(void) {
    Result load, r;
    Engine *e = new_engine(64, &load);
    CHECK_EQ_INT(load.loaded.ctx_size, 64);
    ChatTurn t[] = {{ROLE_USER, "Fill it up."}};
    SamplerParams p = greedy(100000);
    collect(e, engine_submit(e, t, 1, &p), &r);
    CHECK(r.done && r.reason == STOP_CTX_FULL);
    CHECK_EQ_INT(r.final.ctx_used, 64);
    CHECK_EQ_INT(r.final.ctx_size, 64);

    /* a conversation longer than the context: the oldest turns go, the system prompt stays */
    ChatTurn conv[10];
    conv[0] = (ChatTurn){ROLE_SYSTEM, "Short system prompt."};
    for (int i = 1; i < 10; i++)
        conv[i] = (ChatTurn){i % 2 ? ROLE_USER : ROLE_ASSISTANT,
                             "This is a fairly long message that takes some tokens."};
    SamplerParams q = greedy(4);
    collect(e, engine_submit(e, conv, 10, &q), &r);
    CHECK(r.reason == STOP_MAX_TOKENS);
    CHECK(r.final.dropped_turns > 0 && r.final.dropped_turns < 9);
    CHECK(r.final.dropped_turns % 2 == 0); /* never starts with an orphaned assistant turn */
    CHECK(r.final.ctx_used <= 64);

    /* a single message that cannot fit is an error, not a crash */
    static char big[4000];
    for (int i = 0; i + 6 < (int)sizeof big; i += 6) memcpy(big + i, "words ", 6);
    big[sizeof big - 1] = 0;
    ChatTurn huge[] = {{ROLE_USER, big}};
    collect(e, engine_submit(e, huge, 1, &q), &r);
    CHECK(r.reason == STOP_ERROR && r.n_errors == 1 && strstr(r.error, "context"));
    /* and the engine still works afterwards */
    collect(e, engine_submit(e, t, 1, &q), &r);
    CHECK(r.reason == STOP_MAX_TOKENS);
    engine_destroy(e);
}

/* A UI that does not read for a while loses no text: compare with a UI that reads at once. */
static void test_slow_reader(void) {
    Result load, fast, slow;
    ChatTurn t[] = {{ROLE_USER, "Stream a lot."}};
    SamplerParams p = greedy(300);
    Engine *e1 = new_engine(0, &load);
    collect(e1, engine_submit(e1, t, 1, &p), &fast);
    engine_destroy(e1);

    Engine *e2 = new_engine(0, &load);
    uint64_t id = engine_submit(e2, t, 1, &p);
    REQUIRE(wait_reply_tokens(e2, 300));
    /* the wake fd is readable while events wait */
    struct pollfd pf = {.fd = engine_event_fd(e2), .events = POLLIN};
    CHECK_EQ_INT(poll(&pf, 1, 1000), 1);
    collect(e2, id, &slow);
    engine_destroy(e2);
    CHECK(fast.reason == STOP_MAX_TOKENS && slow.reason == STOP_MAX_TOKENS);
    CHECK_EQ_INT(slow.text_len, fast.text_len);
    CHECK_STREQ(slow.text, fast.text);
    /* the unread events were merged: fewer of them than tokens */
    CHECK(slow.n_token_events < 300);
    CHECK(slow.utf8_ok && fast.utf8_ok);
}

/* Rapid submits, cancels and failing loads from the UI side while reading events: every request
 * ends exactly once (EV_DONE, EV_LOADED or EV_LOAD_FAILED), in the order made, and the engine
 * still answers afterwards. */
enum { CHURN_N = 40 };
typedef struct {
    uint64_t ids[CHURN_N + 1];
    int ends[CHURN_N + 1];
    int n_ids;
    int in_order, unknown;
    uint64_t last_ended;
} Churn;

static void churn_read(Churn *c, const EngineEvent *ev, int n) {
    for (int i = 0; i < n; i++) {
        EngineEventType ty = ev[i].type;
        if (ty != EV_DONE && ty != EV_LOADED && ty != EV_LOAD_FAILED) continue;
        int k = 0;
        while (k < c->n_ids && c->ids[k] != ev[i].req) k++;
        if (k == c->n_ids) {
            c->unknown++;
            continue;
        }
        c->ends[k]++;
        c->in_order &= ev[i].req > c->last_ended;
        c->last_ended = ev[i].req;
    }
}

static void test_churn(void) {
    Result load;
    Engine *e = new_engine(0, &load);
    ChatTurn t[] = {{ROLE_USER, "Churn."}};
    Churn c;
    memset(&c, 0, sizeof c);
    c.in_order = 1;
    EngineEvent ev[16];
    for (int i = 0; i <= CHURN_N; i++) {
        SamplerParams p = greedy(1 + i % 5);
        c.ids[i] = i % 7 == 3 ? engine_load(e, "/nonexistent/churn.gguf") : engine_submit(e, t, 1, &p);
        c.n_ids = i + 1;
        if (i % 3 == 0 && i < CHURN_N) engine_cancel(e);
        churn_read(&c, ev, engine_poll(e, ev, 1 + i % 16));
    }
    int inc = 1;
    for (int i = 1; i <= CHURN_N; i++) inc &= c.ids[i] > c.ids[i - 1];
    CHECK(inc);
    for (int w = 0; w < 600 && c.ends[CHURN_N] == 0;) {
        int n = engine_wait(e, ev, 16, 100);
        if (!n) w++;
        churn_read(&c, ev, n);
    }
    int once = 1;
    for (int i = 0; i <= CHURN_N; i++) once &= c.ends[i] == 1;
    CHECK(once);
    CHECK(c.in_order);
    CHECK_EQ_INT(c.unknown, 0);
    EngineModelInfo info;
    CHECK_EQ_INT(engine_model_info(e, &info), 1);
    SamplerParams p = greedy(2);
    Result r;
    collect(e, engine_submit(e, t, 1, &p), &r);
    CHECK(r.done && r.reason == STOP_MAX_TOKENS && r.final.gen_tokens == 2);
    engine_destroy(e);
}

/* A real model file (the GGUF fixture of tests/data/models) through engine_load: progress from
 * the loader, the loaded event, a reply; then a swap to a file that is not a model. */
static void test_load_file(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/i2s.gguf", BN_TEST_DATA);
    EngineOptions o = {.model_path = path, .infer = {.backend = BACKEND_CPU, .threads = 2}};
    Engine *e = engine_create(&o, NULL);
    REQUIRE(e);
    Result r;
    collect(e, 1, &r); /* engine_create's load is request 1 */
    CHECK_MSG(r.loaded_ok, "%s", r.error);
    CHECK(r.n_progress >= 1);
    CHECK_STREQ(r.loaded.path, path);
    CHECK(r.loaded.n_params_m >= 0 && r.loaded.ctx_size > 0);
    /* what /show prints, filled at load */
    CHECK_STREQ(r.loaded.arch, "bitnet-b1.58");
    CHECK_STREQ(r.loaded.format, "gguf");
    CHECK_STREQ(r.loaded.weights, "I2_S");
    CHECK(r.loaded.vocab_size > 0 && r.loaded.ctx_train > 0);
    CHECK(r.loaded.ctx_size <= r.loaded.ctx_train);
    CHECK(r.loaded.chat_format[0] != 0);
    ChatTurn t[] = {{ROLE_USER, "hi"}};
    SamplerParams p = greedy(5);
    collect(e, engine_submit(e, t, 1, &p), &r);
    CHECK(r.done && (r.reason == STOP_MAX_TOKENS || r.reason == STOP_EOS));
    /* a file that exists but is not a model */
    char bad[4096];
    snprintf(bad, sizeof bad, "%s/models/gen_fixtures.py", BN_TEST_DATA);
    collect(e, engine_load(e, bad), &r);
    CHECK(r.load_failed && r.error[0]);
    EngineModelInfo info;
    CHECK(engine_model_info(e, &info) == 1 && strcmp(info.path, path) == 0);
    engine_destroy(e);
}

static void test_destroy_busy(void) {
    Result load;
    Engine *e = new_engine(0, &load);
    ChatTurn t[] = {{ROLE_USER, "Go on and on."}};
    SamplerParams p = greedy(100000);
    engine_submit(e, t, 1, &p);
    engine_submit(e, t, 1, &p); /* a queued one too */
    REQUIRE(wait_reply_tokens(e, 2));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    engine_destroy(e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK_MSG(s < 10.0, "engine_destroy took %.2f s", s);

    /* destroy right after create, with a load queued */
    EngineOptions o = {.model_path = "/nonexistent/x.gguf", .infer = {.backend = BACKEND_CPU}};
    Engine *e2 = engine_create(&o, NULL);
    REQUIRE(e2);
    engine_destroy(e2);
}

int main(int argc, char **argv) {
    if (argc < 2) SKIP("no tokenizer folder given");
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", argv[1]);
    test_no_model();
    test_generate();
    test_cancel();
    test_swap_and_ids();
    test_context();
    test_slow_reader();
    test_load_file();
    test_churn();
    test_destroy_busy();
    return check_report("test_engine");
}
