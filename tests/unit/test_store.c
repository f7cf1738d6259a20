/* The conversation store and the recorder: schema and migrations (from empty and from the
 * committed v1 fixture), round trips of every field, branches, full-text search, exports,
 * two writers at once, and damaged / read-only / locked / newer databases. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "app/history.h"
#include "app/store.h"
#include "app/store_internal.h"
#include "check.h"
#include "infer/utf8.h"
#include "test_util.h"

static char tmpdir[512];

static void path_in(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void rm_db(const char *p) {
    char b[1100];
    unlink(p);
    snprintf(b, sizeof b, "%s-wal", p);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", p);
    unlink(b);
}

static void write_all(const char *p, const void *d, size_t n) {
    FILE *f = fopen(p, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(d, 1, n, f) == n);
    fclose(f);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *d = read_file(from, &n);
    REQUIRE(d);
    write_all(to, d, n);
    free(d);
}

static int same_bytes(const char *p, const char *d, size_t n) {
    size_t m;
    char *e = read_file(p, &m);
    int same = e && m == n && memcmp(e, d, n) == 0;
    free(e);
    return same;
}

static SamplerParams sampling_a(void) {
    SamplerParams sp = {.temperature = 0.7f, .top_p = 0.95f, .min_p = 0.05f, .repeat_penalty = 1.1f,
                        .top_k = 40, .max_tokens = 1024, .seed = 123456789012345ULL,
                        .set = SAMPLER_SET_ALL};
    return sp;
}

static void check_sampling_eq(const SamplerParams *a, const SamplerParams *b) {
    CHECK_EQ_INT(a->set, b->set);
    CHECK(a->temperature == b->temperature);
    CHECK(a->top_p == b->top_p);
    CHECK(a->min_p == b->min_p);
    CHECK(a->repeat_penalty == b->repeat_penalty);
    CHECK_EQ_INT(a->top_k, b->top_k);
    CHECK_EQ_INT(a->max_tokens, b->max_tokens);
    CHECK_EQ_INT(a->seed, b->seed);
}

static int count_rows(const char *db_path, const char *sql) {
    sqlite3 *db;
    REQUIRE(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

/* ---- schema ----------------------------------------------------------------------------- */

static void test_fresh_default_path(void) {
    char xdg[600], expect[700];
    path_in(xdg, sizeof xdg, "xdg");
    setenv("XDG_DATA_HOME", xdg, 1);
    char *def = store_default_path();
    snprintf(expect, sizeof expect, "%s/bitnet-chat/history.db", xdg);
    CHECK_STREQ(def, expect);
    Err err = {{0}};
    Store *s = store_open(NULL, &err);
    CHECK_MSG(s != NULL, "%s", err.msg);
    if (!s) return;
    CHECK_STREQ(store_path(s), expect);
    CHECK_EQ_INT(store_schema_version(s), STORE_SCHEMA_VERSION);
    struct stat sb;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/bitnet-chat", xdg);
    REQUIRE(stat(dir, &sb) == 0);
    CHECK_EQ_INT(sb.st_mode & 0777, 0700);
    REQUIRE(stat(expect, &sb) == 0);
    CHECK_EQ_INT(sb.st_mode & 0777, 0600);
    /* foreign keys are on: a message of a session that does not exist is refused */
    StoreMessage m = {.session_id = 999, .text = "x"};
    strcpy(m.role, "user");
    CHECK(store_message_add(s, &m, &err) < 0);
    CHECK(store_integrity_check(s, &err) == 0);
    store_close(s);
    /* WAL mode is persistent in the file */
    sqlite3 *db;
    REQUIRE(sqlite3_open(expect, &db) == SQLITE_OK);
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK_STREQ((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* XDG_DATA_HOME unset (or relative): ~/.local/share */
    unsetenv("XDG_DATA_HOME");
    setenv("HOME", "/home/someone", 1);
    free(def);
    def = store_default_path();
    CHECK_STREQ(def, "/home/someone/.local/share/bitnet-chat/history.db");
    free(def);
    setenv("XDG_DATA_HOME", "relative/dir", 1);
    def = store_default_path();
    CHECK_STREQ(def, "/home/someone/.local/share/bitnet-chat/history.db");
    free(def);
    unsetenv("XDG_DATA_HOME");
    /* NOCREATE on a missing file: clear message, no file made */
    char miss[600];
    path_in(miss, sizeof miss, "missing.db");
    CHECK(store_open_ex(miss, STORE_OPEN_NOCREATE, &err) == NULL);
    CHECK(strstr(err.msg, "no history database") != NULL);
    CHECK(access(miss, F_OK) != 0);
}

static void test_v1_migration(void) {
    char src[600], p[600];
    snprintf(src, sizeof src, "%s/store/history_v1.db", BN_TEST_DATA);
    path_in(p, sizeof p, "v1.db");
    rm_db(p);
    copy_file(src, p);
    CHECK_EQ_INT(count_rows(p, "PRAGMA user_version"), 1);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    REQUIRE(s != NULL);
    CHECK_EQ_INT(store_schema_version(s), STORE_SCHEMA_VERSION);
    CHECK(store_integrity_check(s, &err) == 0);

    StoreSession *ss;
    int n;
    REQUIRE(store_session_list(s, &ss, &n, &err) == 0);
    CHECK_EQ_INT(n, 3);
    if (n == 3) { /* newest first */
        CHECK_EQ_INT(ss[0].id, 2);
        CHECK_STREQ(ss[0].title, "Crème brûlée");
        CHECK_EQ_INT(ss[0].message_count, 2);
        CHECK_EQ_INT(ss[0].active_leaf, 6);
        CHECK(ss[0].sampling.temperature == 0.0f);
        CHECK_EQ_INT(ss[0].sampling.top_k, 0);
        /* not in the v1 row: unknown, not invented */
        CHECK(!(ss[0].sampling.set & SAMPLER_SET_TOP_P));
        CHECK_EQ_INT(ss[0].sampling.seed, 7);
        CHECK_EQ_INT(ss[1].id, 1);
        CHECK_STREQ(ss[1].title, "Rust or C for a tokenizer?");
        CHECK_STREQ(ss[1].model_name, "bitnet-b1.58-2B-4T");
        CHECK_STREQ(ss[1].model_path, "/models/ggml-model-i2_s.gguf");
        CHECK_STREQ(ss[1].system_prompt, "You are a concise assistant.");
        CHECK_EQ_INT(ss[1].created_at, 1767225600000LL);
        CHECK_EQ_INT(ss[1].updated_at, 1767225600000LL + 65000);
        CHECK_EQ_INT(ss[1].active_leaf, 4);
        CHECK(ss[1].sampling.temperature == 0.7f);
        CHECK(ss[1].sampling.repeat_penalty == 1.1f);
        CHECK_EQ_INT(ss[1].sampling.max_tokens, 1024);
    }
    store_sessions_free(ss, n);

    /* The linear v1 list became a parent chain; the branch is the whole conversation. */
    StoreMessage *m;
    REQUIRE(store_message_branch(s, 1, &m, &n, &err) == 0);
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        for (int i = 0; i < 4; i++) CHECK_EQ_INT(m[i].id, i + 1);
        CHECK_EQ_INT(m[0].parent_id, 0);
        CHECK_EQ_INT(m[1].parent_id, 1);
        CHECK_EQ_INT(m[3].parent_id, 3);
        CHECK_STREQ(m[0].text, "Rust or C for a tokenizer?\nIt must be fast.");
        CHECK_STREQ(m[1].role, "assistant");
        CHECK_EQ_INT(m[1].prompt_tokens, 31);
        CHECK_EQ_INT(m[1].reply_tokens, 17);
        CHECK(m[1].ttft_ms == 120.5);
        CHECK(m[1].tok_per_s == 48.25);
        CHECK_STREQ(m[1].stop_reason, "eos");
        CHECK_STREQ(m[1].model_name, "bitnet-b1.58-2B-4T"); /* backfilled from the session */
        CHECK(m[1].sampling.temperature == 0.7f);
        CHECK_STREQ(m[0].model_name, "");                   /* user turns carry none */
        CHECK_EQ_INT(m[2].created_at, 1767225600000LL + 60000);
    }
    store_messages_free(m, n);
    REQUIRE(store_message_branch(s, 2, &m, &n, &err) == 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(m[0].parent_id, 0); /* the chain does not cross sessions */
        CHECK_EQ_INT(m[1].parent_id, 5);
        CHECK_EQ_INT(m[1].interrupted, 1);
        CHECK_STREQ(m[0].text, "Recette de crème brûlée, s'il te plaît 🍮");
    }
    store_messages_free(m, n);

    /* The full-text index was built over the old rows. */
    StoreSearchHit *hits;
    REQUIRE(store_search(s, "PCRE2", &hits, &n, &err) == 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_EQ_INT(hits[0].message_id, 4);
        CHECK_EQ_INT(hits[0].session_id, 1);
        CHECK(strstr(hits[0].snippet, "\x01PCRE2\x02") != NULL);
    }
    store_search_free(hits, n);
    REQUIRE(store_search(s, "creme", &hits, &n, &err) == 0); /* diacritics folded */
    CHECK_EQ_INT(n, 2);
    store_search_free(hits, n);
    store_close(s);

    /* Opening again changes nothing (no step runs twice). */
    s = store_open(p, &err);
    REQUIRE(s);
    CHECK_EQ_INT(store_schema_version(s), STORE_SCHEMA_VERSION);
    store_close(s);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 8);
}

/* Migrations from empty run every step, each in its own transaction: a step that fails
 * leaves the file at the previous version, and the next open finishes the job. */
static void test_migration_steps(void) {
    char p[600];
    path_in(p, sizeof p, "steps.db");
    rm_db(p);
    /* a v1 database where step 2 cannot run: a column named like one it adds */
    sqlite3 *db;
    REQUIRE(sqlite3_open(p, &db) == SQLITE_OK);
    char src[600];
    snprintf(src, sizeof src, "%s/store/history_v1.db", BN_TEST_DATA);
    sqlite3_close(db);
    rm_db(p);
    copy_file(src, p);
    REQUIRE(sqlite3_open(p, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "ALTER TABLE messages ADD COLUMN backend TEXT", NULL, NULL, NULL) ==
            SQLITE_OK);
    sqlite3_close(db);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    CHECK(s == NULL);
    CHECK_MSG(strstr(err.msg, "from v1 to v2") != NULL, "%s", err.msg);
    CHECK_EQ_INT(count_rows(p, "PRAGMA user_version"), 1);    /* rolled back whole */
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'parent_id'"), 0);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 8);
    store_close(s);
}

static void test_newer_and_foreign_refused(void) {
    char p[600];
    path_in(p, sizeof p, "newer.db");
    rm_db(p);
    sqlite3 *db;
    REQUIRE(sqlite3_open(p, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE future(x); INSERT INTO future VALUES (1);"
                             "PRAGMA user_version = 99;", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    size_t n;
    char *before = read_file(p, &n);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    CHECK(s == NULL);
    CHECK_MSG(strstr(err.msg, "newer than this bitnet-chat") && strstr(err.msg, "99"), "%s", err.msg);
    CHECK(same_bytes(p, before, n));
    free(before);
    /* The recorder goes on in memory and says so. */
    Err w = {{0}};
    History *h = history_open(p, false, &w);
    REQUIRE(h);
    CHECK(strstr(w.msg, "newer") != NULL);
    CHECK(!history_persistent(h));
    CHECK(history_add_user(h, "hello") == 0);
    history_close(h);

    path_in(p, sizeof p, "foreign.db");
    rm_db(p);
    REQUIRE(sqlite3_open(p, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE notes(x); INSERT INTO notes VALUES ('mine');", NULL, NULL,
                         NULL) == SQLITE_OK);
    sqlite3_close(db);
    before = read_file(p, &n);
    s = store_open(p, &err);
    CHECK(s == NULL);
    CHECK_MSG(strstr(err.msg, "another program") != NULL, "%s", err.msg);
    CHECK(same_bytes(p, before, n));
    free(before);
}

/* ---- round trips ------------------------------------------------------------------------ */

/* The sampling JSON keeps the form older versions wrote, so databases need no migration: texts
 * as the previous writer (StoreSampling doubles through jansson at 17 digits, "unset" left out)
 * produced them read back to the same settings and are written again byte for byte; the float
 * settings are stored as the decimals the user typed. Damaged values set nothing. */
static void test_sampling_json(void) {
    static const char *const old[] = {
        "{\"max_tokens\":1024,\"min_p\":0.050000000000000003,\"repeat_penalty\":1.1000000000000001,"
        "\"seed\":123456789012345,\"temperature\":0.69999999999999996,\"top_k\":40,"
        "\"top_p\":0.94999999999999996}",
        "{\"max_tokens\":1024,\"min_p\":0.050000000000000003,\"repeat_penalty\":1.1000000000000001,"
        "\"temperature\":0.69999999999999996,\"top_k\":40,\"top_p\":0.94999999999999996}",
        "{\"seed\":7,\"temperature\":0.0,\"top_k\":0}",
        "{\"max_tokens\":99,\"min_p\":0.0,\"repeat_penalty\":1.0,\"seed\":0,\"temperature\":1.5,"
        "\"top_k\":0,\"top_p\":1.0}",
        "{}",
    };
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) {
        SamplerParams sp;
        store_sampling_from_json(old[i], &sp);
        char *again = store_sampling_to_json(&sp);
        CHECK_STREQ(again, old[i]);
        free(again);
    }
    SamplerParams sp;
    store_sampling_from_json(old[0], &sp);
    check_sampling_eq(&sp, &(SamplerParams){.temperature = 0.7f, .top_p = 0.95f, .min_p = 0.05f,
                                            .repeat_penalty = 1.1f, .top_k = 40, .max_tokens = 1024,
                                            .seed = 123456789012345ULL, .set = SAMPLER_SET_ALL});
    store_sampling_from_json(old[1], &sp);
    CHECK_EQ_INT(sp.set, SAMPLER_SET_ALL & ~SAMPLER_SET_SEED);
    CHECK(store_float_decimal(0.7f) == 0.7 && store_float_decimal(0.95f) == 0.95);
    CHECK(store_float_decimal(1.0f / 3.0f) == 0.33333334);
    store_sampling_from_json("{\"temperature\":1e300,\"top_p\":\"0.5\",\"top_k\":-1,\"seed\":-1,"
                             "\"max_tokens\":9999999999}", &sp);
    CHECK_EQ_INT(sp.set, 0);
    store_sampling_from_json("not json", &sp);
    CHECK_EQ_INT(sp.set, 0);
    store_sampling_from_json(NULL, &sp);
    CHECK_EQ_INT(sp.set, 0);
}

static void test_round_trip(void) {
    char p[600];
    path_in(p, sizeof p, "rt.db");
    rm_db(p);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    REQUIRE(s);
    StoreSession in = {.title = "Título ✓", .created_at = 1700000000123LL,
                       .updated_at = 1700000000456LL, .model_name = "bitnet-2B",
                       .model_path = "/m/x.gguf", .system_prompt = "Be brief.\nVery.",
                       .sampling = sampling_a()};
    int64_t sid = store_session_create(s, &in, &err);
    REQUIRE(sid > 0);
    StoreMessage u = {.session_id = sid, .text = "question with 'quotes' and \"double\"; DROP TABLE x;",
                      .created_at = 1700000001000LL};
    strcpy(u.role, "user");
    int64_t uid = store_message_add(s, &u, &err);
    REQUIRE(uid > 0);
    StoreMessage a = {.session_id = sid, .parent_id = uid, .text = "answer ünïcödé 中文 🙂",
                      .created_at = 1700000002000LL, .prompt_tokens = 123, .reply_tokens = 456,
                      .ttft_ms = 78.125, .tok_per_s = 91.0625, .interrupted = 1,
                      .sampling = sampling_a(), .prompt_tok_s = 1234.5};
    strcpy(a.role, "assistant");
    strcpy(a.stop_reason, "max_tokens");
    strcpy(a.backend, "CUDA: NVIDIA H100 80GB HBM3");
    strcpy(a.model_name, "bitnet-2B");
    a.sampling.temperature = 0.0f;
    a.sampling.seed = 0;
    int64_t aid = store_message_add(s, &a, &err);
    REQUIRE(aid > 0);

    StoreSession out;
    REQUIRE(store_session_get(s, sid, &out, &err) == 0);
    CHECK_STREQ(out.title, in.title);
    CHECK_EQ_INT(out.created_at, in.created_at);
    CHECK(out.updated_at >= in.updated_at);
    CHECK_STREQ(out.model_name, in.model_name);
    CHECK_STREQ(out.model_path, in.model_path);
    CHECK_STREQ(out.system_prompt, in.system_prompt);
    check_sampling_eq(&out.sampling, &in.sampling);
    CHECK_EQ_INT(out.active_leaf, aid); /* a new message becomes the active leaf */
    CHECK_EQ_INT(out.message_count, 2);
    store_session_clear(&out);

    StoreMessage g;
    REQUIRE(store_message_get(s, aid, &g, &err) == 0);
    CHECK_EQ_INT(g.id, aid);
    CHECK_EQ_INT(g.session_id, sid);
    CHECK_EQ_INT(g.parent_id, uid);
    CHECK_STREQ(g.role, "assistant");
    CHECK_STREQ(g.text, a.text);
    CHECK_EQ_INT(g.created_at, a.created_at);
    CHECK_EQ_INT(g.prompt_tokens, 123);
    CHECK_EQ_INT(g.reply_tokens, 456);
    CHECK(g.ttft_ms == a.ttft_ms);
    CHECK(g.tok_per_s == a.tok_per_s);
    CHECK(g.prompt_tok_s == a.prompt_tok_s);
    CHECK_STREQ(g.stop_reason, "max_tokens");
    CHECK_EQ_INT(g.interrupted, 1);
    CHECK_STREQ(g.backend, a.backend);
    CHECK_STREQ(g.model_name, a.model_name);
    check_sampling_eq(&g.sampling, &a.sampling);
    store_message_clear(&g);

    /* update every updatable field */
    a.id = aid;
    a.text = "final answer";
    a.prompt_tokens = 1;
    a.reply_tokens = 2;
    a.ttft_ms = 3.5;
    a.tok_per_s = 4.5;
    a.prompt_tok_s = 5.5;
    strcpy(a.stop_reason, "eos");
    a.interrupted = 0;
    strcpy(a.backend, "CPU, 2 threads (AVX2)");
    strcpy(a.model_name, "other");
    a.sampling = sampling_a();
    REQUIRE(store_message_update(s, &a, &err) == 0);
    REQUIRE(store_message_get(s, aid, &g, &err) == 0);
    CHECK_STREQ(g.text, "final answer");
    CHECK_EQ_INT(g.prompt_tokens, 1);
    CHECK_EQ_INT(g.reply_tokens, 2);
    CHECK(g.ttft_ms == 3.5 && g.tok_per_s == 4.5 && g.prompt_tok_s == 5.5);
    CHECK_STREQ(g.stop_reason, "eos");
    CHECK_EQ_INT(g.interrupted, 0);
    CHECK_STREQ(g.backend, "CPU, 2 threads (AVX2)");
    CHECK_STREQ(g.model_name, "other");
    check_sampling_eq(&g.sampling, &a.sampling);
    store_message_clear(&g);

    /* rename, settings */
    REQUIRE(store_session_rename(s, sid, "renamed", &err) == 0);
    StoreSession upd = {.id = sid, .model_name = "m2", .model_path = "/p2", .system_prompt = "",
                        .sampling = sampling_a()};
    upd.sampling.top_k = 7;
    REQUIRE(store_session_update_settings(s, &upd, &err) == 0);
    REQUIRE(store_session_get(s, sid, &out, &err) == 0);
    CHECK_STREQ(out.title, "renamed");
    CHECK_STREQ(out.model_name, "m2");
    CHECK_STREQ(out.model_path, "/p2");
    CHECK_STREQ(out.system_prompt, "");
    CHECK_EQ_INT(out.sampling.top_k, 7);
    store_session_clear(&out);
    CHECK(store_session_rename(s, 9999, "x", &err) < 0);
    CHECK(strstr(err.msg, "no session 9999") != NULL);
    CHECK(store_session_get(s, 9999, &out, &err) < 0);

    /* unset sampling values survive as unset */
    StoreSession bare = {.title = "bare"};
    int64_t bid = store_session_create(s, &bare, &err);
    REQUIRE(store_session_get(s, bid, &out, &err) == 0);
    CHECK_EQ_INT(out.sampling.set, 0);
    store_session_clear(&out);

    /* explicit transaction: rolled back work leaves nothing */
    REQUIRE(store_begin(s, &err) == 0);
    StoreMessage t = {.session_id = bid, .text = "rolled back"};
    strcpy(t.role, "user");
    CHECK(store_message_add(s, &t, &err) > 0);
    store_rollback(s);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages WHERE text = 'rolled back'"), 0);
    StoreMessage bad = {.session_id = bid, .text = "x"};
    strcpy(bad.role, "robot");
    CHECK(store_message_add(s, &bad, &err) < 0);
    CHECK(strstr(err.msg, "role") != NULL);

    /* delete: the session and its messages go, others stay */
    REQUIRE(store_session_delete(s, sid, &err) == 0);
    CHECK(store_session_get(s, sid, &out, &err) < 0);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 0);
    CHECK(store_session_delete(s, sid, &err) < 0);
    CHECK(store_integrity_check(s, &err) == 0);
    store_close(s);
}

/* A long conversation deletes in one go (no recursion along the parent chain). */
static void test_long_chain_delete(void) {
    char p[600];
    path_in(p, sizeof p, "chain.db");
    rm_db(p);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    REQUIRE(s);
    StoreSession in = {.title = "long"};
    int64_t sid = store_session_create(s, &in, &err);
    REQUIRE(store_begin(s, &err) == 0);
    int64_t parent = 0;
    for (int i = 0; i < 1500; i++) {
        StoreMessage m = {.session_id = sid, .parent_id = parent, .text = "turn"};
        strcpy(m.role, i % 2 ? "assistant" : "user");
        parent = store_message_add(s, &m, &err);
        REQUIRE(parent > 0);
    }
    REQUIRE(store_commit(s, &err) == 0);
    StoreMessage *m;
    int n;
    REQUIRE(store_message_branch(s, sid, &m, &n, &err) == 0);
    CHECK_EQ_INT(n, 1500);
    store_messages_free(m, n);
    CHECK_MSG(store_session_delete(s, sid, &err) == 0, "%s", err.msg);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 0);
    store_close(s);
}

/* ---- branches --------------------------------------------------------------------------- */

static HistoryReplyInfo reply_info(void) {
    HistoryReplyInfo ri = {.model_name = "bitnet-2B", .backend = "CPU", .sampling = sampling_a()};
    return ri;
}

static void reply(History *h, const char *text, StopReason why) {
    HistoryReplyInfo ri = reply_info();
    REQUIRE(history_reply_begin(h, &ri) == 0);
    REQUIRE(history_reply_append(h, text, strlen(text)) == 0);
    EngineStats st = {.prompt_tokens = 10, .gen_tokens = 5, .ttft_ms = 12.5, .gen_tok_s = 40.25,
                      .prompt_tok_s = 800};
    REQUIRE(history_reply_end(h, &st, why, why == STOP_CANCELLED) == 0);
}

static void test_branches(void) {
    char p[600];
    path_in(p, sizeof p, "branch.db");
    rm_db(p);
    Err w = {{0}};
    History *h = history_open(p, false, &w);
    REQUIRE(h);
    CHECK_STREQ(w.msg, "");
    CHECK(history_persistent(h));
    HistorySessionInfo si = {.model_name = "bitnet-2B", .model_path = "/m.gguf",
                             .system_prompt = "sys", .sampling = sampling_a()};
    REQUIRE(history_begin_session(h, &si) == 0);
    CHECK_EQ_INT(history_session(h)->id, 0);    /* no row before the first message */
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM sessions"), 0);
    REQUIRE(history_add_user(h, "  First line of the question  \nsecond line") == 0);
    int64_t sid = history_session(h)->id;
    CHECK(sid > 0);
    reply(h, "first answer", STOP_EOS);
    CHECK(history_regenerate(h) == 0);
    CHECK(history_regenerate(h) < 0);           /* the branch now ends with the user turn */
    reply(h, "second answer", STOP_EOS);

    int n;
    const StoreMessage *mem = history_messages(h, &n);
    CHECK_EQ_INT(n, 2);
    CHECK_STREQ(mem[1].text, "second answer");
    Err err = {{0}};
    Store *s = history_store(h);
    REQUIRE(s);
    StoreSession ss;
    REQUIRE(store_session_get(s, sid, &ss, &err) == 0);
    CHECK_STREQ(ss.title, "First line of the question"); /* first user line, trimmed */
    CHECK_EQ_INT(ss.message_count, 3);
    CHECK_EQ_INT(ss.active_leaf, mem[1].id);
    store_session_clear(&ss);
    StoreMessage *sib;
    int ns;
    REQUIRE(store_message_siblings(s, mem[1].id, &sib, &ns, &err) == 0);
    CHECK_EQ_INT(ns, 2);
    if (ns == 2) {
        CHECK_STREQ(sib[0].text, "first answer");
        CHECK_STREQ(sib[1].text, "second answer");
        CHECK_EQ_INT(sib[0].parent_id, mem[0].id);
        CHECK_EQ_INT(sib[1].parent_id, mem[0].id);
        /* switch back to the first answer */
        REQUIRE(store_set_active_leaf(s, sid, store_branch_leaf(s, sib[0].id, &err), &err) == 0);
    }
    StoreMessage *br;
    int nb;
    REQUIRE(store_message_branch(s, sid, &br, &nb, &err) == 0);
    CHECK_EQ_INT(nb, 2);
    if (nb == 2) CHECK_STREQ(br[1].text, "first answer");
    store_messages_free(br, nb);
    /* all messages, with the active branch marked */
    REQUIRE(store_message_all(s, sid, &br, &nb, &err) == 0);
    CHECK_EQ_INT(nb, 3);
    if (nb == 3) {
        CHECK_EQ_INT(br[0].on_active_branch, 1);
        CHECK_EQ_INT(br[1].on_active_branch, 1);
        CHECK_EQ_INT(br[2].on_active_branch, 0);
    }
    store_messages_free(br, nb);
    if (ns == 2) CHECK(store_set_active_leaf(s, 999999, sib[0].id, &err) < 0);
    store_messages_free(sib, ns);

    /* resume follows the active branch; the conversation continues on it */
    REQUIRE(history_resume(h, sid, &err) == 0);
    mem = history_messages(h, &n);
    CHECK_EQ_INT(n, 2);
    if (n == 2) CHECK_STREQ(mem[1].text, "first answer");
    REQUIRE(history_add_user(h, "follow-up") == 0);
    reply(h, "third answer", STOP_MAX_TOKENS);
    /* edit the first question: a sibling user turn starts a new branch */
    REQUIRE(history_truncate(h, 0) == 0);
    REQUIRE(history_add_user(h, "edited question") == 0);
    reply(h, "answer to the edit", STOP_CANCELLED);
    history_close(h);

    s = store_open(p, &err);
    REQUIRE(s);
    REQUIRE(store_message_branch(s, sid, &br, &nb, &err) == 0);
    CHECK_EQ_INT(nb, 2);
    if (nb == 2) {
        CHECK_STREQ(br[0].text, "edited question");
        CHECK_EQ_INT(br[0].parent_id, 0);
        CHECK_STREQ(br[1].text, "answer to the edit");
        CHECK_STREQ(br[1].stop_reason, "cancelled");
        CHECK_EQ_INT(br[1].interrupted, 1);
        CHECK_EQ_INT(br[1].reply_tokens, 5);
        CHECK(br[1].tok_per_s == 40.25);
        CHECK(br[1].ttft_ms == 12.5);
        CHECK(br[1].prompt_tok_s == 800);
        CHECK_STREQ(br[1].backend, "CPU");
        CHECK_STREQ(br[1].model_name, "bitnet-2B");
    }
    store_messages_free(br, nb);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 7);
    CHECK(store_integrity_check(s, &err) == 0);
    store_close(s);
}

/* Recorder details: lazy sessions, titles, settings, no_history. */
static void test_recorder(void) {
    char p[600];
    path_in(p, sizeof p, "rec.db");
    rm_db(p);
    History *h = history_open(p, false, NULL);
    REQUIRE(h);
    REQUIRE(history_begin_session(h, NULL) == 0);
    history_close(h); /* an empty chat leaves no session */
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM sessions"), 0);

    h = history_open(p, false, NULL);
    HistorySessionInfo si = {.title = "given title", .model_name = "a"};
    REQUIRE(history_begin_session(h, &si) == 0);
    char longline[300];
    memset(longline, 'x', sizeof longline - 1);
    longline[sizeof longline - 1] = 0;
    REQUIRE(history_add_user(h, longline) == 0);
    CHECK(history_reply_append(h, "x", 1) < 0);    /* no reply open */
    HistoryReplyInfo ri = reply_info();
    REQUIRE(history_reply_begin(h, &ri) == 0);
    CHECK(history_reply_begin(h, &ri) < 0);         /* already open */
    CHECK(history_add_user(h, "too early") < 0);    /* reply open */
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages WHERE role = 'assistant' AND interrupted = 1"), 1);
    EngineStats st = {.gen_tokens = 3};
    CHECK(history_reply_stats(h, &st) == 0);
    history_close(h); /* closing mid-reply commits it as interrupted */
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM sessions WHERE title = 'given title'"), 1);
    CHECK_EQ_INT(count_rows(p, "SELECT reply_tokens FROM messages WHERE role = 'assistant'"), 3);
    CHECK_EQ_INT(count_rows(p, "SELECT interrupted FROM messages WHERE role = 'assistant'"), 1);

    /* auto title: long first line cut at 80 bytes with an ellipsis; then renamed and updated */
    h = history_open(p, false, NULL);
    REQUIRE(history_begin_session(h, NULL) == 0);
    const char *utf = "ééééééééééééééééééééééééééééééééééééééééééééééééééé"; /* 2-byte chars */
    REQUIRE(history_add_user(h, utf) == 0);
    const StoreSession *cur = history_session(h);
    CHECK(strlen(cur->title) <= 83);
    CHECK(strncmp(cur->title, utf, 80) == 0);
    CHECK(strstr(cur->title, "\xe2\x80\xa6") != NULL);
    int64_t sid = cur->id;
    REQUIRE(history_rename(h, "new name") == 0);
    HistorySessionInfo up = {.model_name = "switched", .model_path = "/s", .system_prompt = "sp",
                             .sampling = sampling_a()};
    REQUIRE(history_update_session(h, &up) == 0);
    history_close(h);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    StoreSession ss;
    REQUIRE(store_session_get(s, sid, &ss, &err) == 0);
    CHECK_STREQ(ss.title, "new name");
    CHECK_STREQ(ss.model_name, "switched");
    CHECK_STREQ(ss.system_prompt, "sp");
    check_sampling_eq(&ss.sampling, &up.sampling);
    store_session_clear(&ss);
    store_close(s);

    /* --no-history: nothing is created, everything is kept in memory */
    char q[600];
    path_in(q, sizeof q, "nohist/never.db");
    Err w;
    h = history_open(q, true, &w);
    REQUIRE(h);
    CHECK_STREQ(w.msg, "");
    CHECK(!history_persistent(h));
    CHECK(history_store(h) == NULL);
    REQUIRE(history_add_user(h, "private") == 0);
    reply(h, "still private", STOP_EOS);
    int n;
    const StoreMessage *mem = history_messages(h, &n);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(mem[0].id, 0);
    CHECK(!history_take_warning(h, &w));
    Err e2;
    CHECK(history_resume(h, 1, &e2) < 0);
    history_close(h);
    path_in(q, sizeof q, "nohist");
    CHECK(access(q, F_OK) != 0);
}

/* A reply that failed keeps the engine's reason (schema v4): read back with the branch (what a
 * resume shows), in --show's line and in both exports; an old v3 file gains the column on open
 * and keeps every row. */
static void test_failed_reply_reason(void) {
    char p[600];
    path_in(p, sizeof p, "failed.db");
    rm_db(p);
    History *h = history_open(p, false, NULL);
    REQUIRE(h);
    REQUIRE(history_begin_session(h, NULL) == 0);
    REQUIRE(history_add_user(h, "question") == 0);
    CHECK(history_reply_error(h, "too early") < 0); /* no reply open */
    HistoryReplyInfo ri = reply_info();
    REQUIRE(history_reply_begin(h, &ri) == 0);
    REQUIRE(history_reply_append(h, "part", 4) == 0);
    REQUIRE(history_reply_error(h, "cuda: out of memory in layer 3") == 0);
    REQUIRE(history_reply_end(h, NULL, STOP_ERROR, true) == 0);
    int64_t sid = history_session(h)->id;
    history_close(h);

    Err err = {{0}};
    Store *s = store_open(p, &err);
    REQUIRE(s);
    StoreMessage *m;
    int n;
    REQUIRE(store_message_branch(s, sid, &m, &n, &err) == 0);
    REQUIRE(n == 2);
    CHECK_STREQ(m[1].stop_reason, "error");
    CHECK_STREQ(m[1].error, "cuda: out of memory in layer 3");
    CHECK_STREQ(m[0].error, "");
    char line[1024];
    store_reply_describe(&m[1], line, sizeof line);
    CHECK_MSG(strstr(line, "failed: cuda: out of memory in layer 3") != NULL, "%s", line);
    store_messages_free(m, n);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    REQUIRE(f);
    CHECK(store_export_json(s, sid, f, &err) == 0);
    CHECK(store_export_markdown(s, sid, f, &err) == 0);
    fclose(f);
    CHECK(buf && strstr(buf, "\"error\": \"cuda: out of memory in layer 3\"") != NULL);
    CHECK(buf && strstr(buf, "\xC2\xB7 failed: cuda: out of memory in layer 3") != NULL); /* Markdown */
    free(buf);
    store_close(s);

    /* The same file as schema v3 wrote it (no error column), then opened: migrated, rows kept,
     * the old failed reply with an empty reason. */
    sqlite3 *db;
    REQUIRE(sqlite3_open(p, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "ALTER TABLE messages DROP COLUMN error; PRAGMA user_version = 3;",
                         NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(count_rows(p, "PRAGMA user_version"), 3);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'error'"), 0);
    s = store_open(p, &err);
    REQUIRE(s);
    CHECK_EQ_INT(store_schema_version(s), STORE_SCHEMA_VERSION);
    CHECK(store_integrity_check(s, &err) == 0);
    REQUIRE(store_message_branch(s, sid, &m, &n, &err) == 0);
    REQUIRE(n == 2);
    CHECK_STREQ(m[0].text, "question");
    CHECK_STREQ(m[1].text, "part");
    CHECK_STREQ(m[1].stop_reason, "error");
    CHECK_EQ_INT(m[1].interrupted, 1);
    CHECK_STREQ(m[1].error, "");
    store_messages_free(m, n);
    StoreSearchHit *hits;
    REQUIRE(store_search(s, "question", &hits, &n, &err) == 0);
    CHECK_EQ_INT(n, 1);
    store_search_free(hits, n);
    store_close(s);
}

/* A reply holding every byte value 0-255 (a model can emit byte 0 like any other byte token),
 * streamed in pieces: bytes 1-255 are stored and read back exactly, byte 0 as U+FFFD (texts are
 * C strings; cutting at the NUL stored a fraction of the reply marked complete), and the reply
 * keeps its stop reason. The text in memory (what a resumed chat sends) is the same. */
static void test_every_byte(void) {
    char p[600];
    path_in(p, sizeof p, "bytes.db");
    rm_db(p);
    History *h = history_open(p, false, NULL);
    REQUIRE(h);
    REQUIRE(history_begin_session(h, NULL) == 0);
    REQUIRE(history_add_user(h, "all bytes please") == 0);
    HistoryReplyInfo ri = reply_info();
    REQUIRE(history_reply_begin(h, &ri) == 0);
    char all[512];
    for (int i = 0; i < 512; i++) all[i] = (char)(i & 0xff); /* 0..255 twice */
    for (int i = 0; i < 512; i += 7) REQUIRE(history_reply_append(h, all + i, i + 7 <= 512 ? 7 : 512 - i) == 0);
    EngineStats st = {.gen_tokens = 512};
    REQUIRE(history_reply_end(h, &st, STOP_EOS, false) == 0);
    char want[600];
    size_t wl = 0;
    for (int i = 0; i < 512; i++) {
        if (all[i]) want[wl++] = all[i];
        else memcpy(want + wl, "\xEF\xBF\xBD", 3), wl += 3;
    }
    want[wl] = 0;
    int n;
    const StoreMessage *mem = history_messages(h, &n);
    REQUIRE(n == 2);
    CHECK_EQ_INT(strlen(mem[1].text), wl);
    CHECK(memcmp(mem[1].text, want, wl + 1) == 0);
    int64_t sid = history_session(h)->id;
    history_close(h);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    REQUIRE(s);
    StoreMessage *m;
    REQUIRE(store_message_branch(s, sid, &m, &n, &err) == 0);
    REQUIRE(n == 2);
    CHECK_EQ_INT(strlen(m[1].text), wl);
    CHECK(memcmp(m[1].text, want, wl + 1) == 0);
    CHECK_STREQ(m[1].stop_reason, "eos");
    CHECK_EQ_INT(m[1].interrupted, 0);
    /* Through the store directly: bytes 1-255 round-trip exactly. */
    StoreMessage in = {.session_id = sid, .parent_id = m[1].id, .text = all + 1};
    char tail[256];
    memcpy(tail, all + 1, 255);
    tail[255] = 0;
    in.text = tail;
    snprintf(in.role, sizeof in.role, "user");
    int64_t id = store_message_add(s, &in, &err);
    REQUIRE(id > 0);
    StoreMessage back;
    REQUIRE(store_message_get(s, id, &back, &err) == 0);
    CHECK_EQ_INT(strlen(back.text), 255);
    CHECK(memcmp(back.text, tail, 256) == 0);
    store_message_clear(&back);
    store_messages_free(m, n);
    store_close(s);
}

/* ---- search ----------------------------------------------------------------------------- */

static int64_t add_msg(Store *s, int64_t sid, const char *role, const char *text) {
    Err err;
    StoreMessage m = {.session_id = sid, .text = (char *)text};
    snprintf(m.role, sizeof m.role, "%s", role);
    int64_t id = store_message_add(s, &m, &err);
    REQUIRE(id > 0);
    return id;
}

static int search_count(Store *s, const char *q) {
    StoreSearchHit *h;
    int n;
    Err err;
    if (store_search(s, q, &h, &n, &err)) return -1;
    store_search_free(h, n);
    return n;
}

static void test_search(void) {
    char p[600];
    path_in(p, sizeof p, "search.db");
    rm_db(p);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    REQUIRE(s);
    StoreSession a = {.title = "kernels"}, b = {.title = "cooking"};
    int64_t sa = store_session_create(s, &a, &err), sb = store_session_create(s, &b, &err);
    add_msg(s, sa, "user", "How fast is the W2A8 kernel on an H100?");
    int64_t best = add_msg(s, sa, "assistant", "The kernel kernel kernel streams 2-bit weights.");
    add_msg(s, sb, "user", "A recipe for bread with a crisp crust");
    int64_t edit = add_msg(s, sb, "assistant", "Knead the dough for ten minutes.");

    StoreSearchHit *h;
    int n;
    REQUIRE(store_search(s, "kernel", &h, &n, &err) == 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(h[0].message_id, best); /* more matches rank first */
        CHECK_EQ_INT(h[0].session_id, sa);
        CHECK_STREQ(h[0].session_title, "kernels");
        CHECK(strstr(h[0].snippet, "\x01kernel\x02") != NULL);
    }
    store_search_free(h, n);
    CHECK_EQ_INT(search_count(s, "KERNEL h100"), 1);  /* all words, any case */
    CHECK_EQ_INT(search_count(s, "\"crisp crust\""), 1);
    CHECK_EQ_INT(search_count(s, "\"crust crisp\""), 0);
    CHECK_EQ_INT(search_count(s, "kern*"), 2);
    CHECK_EQ_INT(search_count(s, "bread OR kernel"), 0); /* OR is a word, not an operator */

    /* edits re-index */
    StoreMessage m;
    REQUIRE(store_message_get(s, edit, &m, &err) == 0);
    free(m.text);
    m.text = strdup("Fold the dough gently.");
    REQUIRE(store_message_update(s, &m, &err) == 0);
    store_message_clear(&m);
    CHECK_EQ_INT(search_count(s, "knead"), 0);
    CHECK_EQ_INT(search_count(s, "gently"), 1);

    /* hostile queries: literal, never a syntax error */
    const char *weird[] = {"kernel AND", "\"unterminated kernel", "NEAR(kernel", "text:kernel",
                           "-kernel", "kernel)", "kernel^", "'; DROP TABLE messages; --",
                           "{kernel}", "k*e*r", "ker\"nel", "\xff\xfe kernel"};
    for (size_t i = 0; i < sizeof weird / sizeof weird[0]; i++) {
        int c = search_count(s, weird[i]);
        CHECK_MSG(c >= 0, "query <%s> failed", weird[i]);
    }
    CHECK_EQ_INT(search_count(s, "kernel AND"), 0);     /* "kernel" and "and": no message has both */
    CHECK_EQ_INT(search_count(s, "NEAR(kernel"), 0);
    CHECK_EQ_INT(search_count(s, "text:kernel"), 0);    /* one phrase "text kernel" */
    CHECK_EQ_INT(search_count(s, "-kernel"), 2);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 4);
    /* nothing searchable: a clear message */
    CHECK(store_search(s, "*** -- ()", &h, &n, &err) < 0);
    CHECK(strstr(err.msg, "no word to search for") != NULL);
    CHECK(store_search(s, "", &h, &n, &err) < 0);

    char *q = store_fts_query("a \"b c\" d* \"e\"\"f\" ***");
    CHECK_STREQ(q, "\"a\" \"b c\" \"d\"* \"e\" \"f\"");
    free(q);
    q = store_fts_query("say \"hi");
    CHECK_STREQ(q, "\"say\" \"hi\"");
    free(q);

    /* deletes drop out of the index */
    REQUIRE(store_session_delete(s, sa, &err) == 0);
    CHECK_EQ_INT(search_count(s, "kernel"), 0);
    CHECK_EQ_INT(search_count(s, "dough"), 1);
    CHECK(store_integrity_check(s, &err) == 0);
    /* search_max limits */
    for (int i = 0; i < 30; i++) add_msg(s, sb, "user", "dough again");
    REQUIRE(store_search_max(s, "dough", 5, &h, &n, &err) == 0);
    CHECK_EQ_INT(n, 5);
    store_search_free(h, n);
    store_close(s);
}

/* ---- exports ---------------------------------------------------------------------------- */

static void test_exports(void) {
    char src[600], p[600];
    snprintf(src, sizeof src, "%s/store/history_v1.db", BN_TEST_DATA);
    path_in(p, sizeof p, "export.db");
    rm_db(p);
    copy_file(src, p);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    REQUIRE(s);
    /* Markdown against the expected file */
    char out[600], expect[600];
    path_in(out, sizeof out, "s1.md");
    FILE *f = fopen(out, "w");
    REQUIRE(store_export_markdown(s, 1, f, &err) == 0);
    fclose(f);
    snprintf(expect, sizeof expect, "%s/store/expected_session1.md", BN_TEST_DATA);
    size_t ne, no;
    char *e = read_file(expect, &ne), *got = read_file(out, &no);
    CHECK(e && got && ne == no && memcmp(e, got, ne) == 0);
    if (e && got && (ne != no || memcmp(e, got, ne)))
        fprintf(stderr, "markdown export differs: diff %s %s\n", expect, out);
    free(e);
    free(got);

    /* add a branch and odd bytes, then JSON: parse back and compare every field */
    StoreMessage alt = {.session_id = 2, .parent_id = 5, .text = "cut \xe2\x82 mid-char",
                        .prompt_tokens = 3, .reply_tokens = 4, .ttft_ms = 1.25, .tok_per_s = 2.5,
                        .prompt_tok_s = 9.75, .sampling = sampling_a()};
    strcpy(alt.role, "assistant");
    strcpy(alt.backend, "CPU");
    strcpy(alt.model_name, "m");
    strcpy(alt.stop_reason, "eos");
    int64_t alt_id = store_message_add(s, &alt, &err);
    REQUIRE(alt_id > 0);
    REQUIRE(store_set_active_leaf(s, 2, 6, &err) == 0);
    path_in(out, sizeof out, "s2.json");
    f = fopen(out, "w");
    REQUIRE(store_export_json(s, 2, f, &err) == 0);
    fclose(f);
    json_error_t je;
    json_t *root = json_load_file(out, 0, &je);
    CHECK_MSG(root != NULL, "%s", je.text);
    StoreSession ss;
    REQUIRE(store_session_get(s, 2, &ss, &err) == 0);
    StoreMessage *all;
    int n;
    REQUIRE(store_message_all(s, 2, &all, &n, &err) == 0);
    if (root) {
        CHECK_STREQ(json_string_value(json_object_get(root, "format")), "bitnet-chat-session");
        CHECK_EQ_INT(json_integer_value(json_object_get(root, "format_version")), 1);
        json_t *js = json_object_get(root, "session");
        CHECK_EQ_INT(json_integer_value(json_object_get(js, "id")), 2);
        CHECK_STREQ(json_string_value(json_object_get(js, "title")), ss.title);
        CHECK_EQ_INT(json_integer_value(json_object_get(js, "created_at")), ss.created_at);
        CHECK_EQ_INT(json_integer_value(json_object_get(js, "updated_at")), ss.updated_at);
        CHECK_STREQ(json_string_value(json_object_get(js, "model_name")), ss.model_name);
        CHECK_STREQ(json_string_value(json_object_get(js, "model_path")), ss.model_path);
        CHECK_STREQ(json_string_value(json_object_get(js, "system_prompt")), ss.system_prompt);
        CHECK_EQ_INT(json_integer_value(json_object_get(js, "active_leaf")), 6);
        json_t *jsp = json_object_get(js, "sampling");
        CHECK(json_number_value(json_object_get(jsp, "temperature")) == 0.0);
        CHECK(json_is_null(json_object_get(jsp, "top_p")));
        CHECK_EQ_INT(json_integer_value(json_object_get(jsp, "seed")), 7);
        json_t *arr = json_object_get(root, "messages");
        CHECK_EQ_INT(json_array_size(arr), n);
        for (int i = 0; i < n && i < (int)json_array_size(arr); i++) {
            json_t *o = json_array_get(arr, i);
            const StoreMessage *m = &all[i];
            CHECK_EQ_INT(json_integer_value(json_object_get(o, "id")), m->id);
            json_t *par = json_object_get(o, "parent_id");
            CHECK(m->parent_id ? json_integer_value(par) == m->parent_id : json_is_null(par));
            CHECK_STREQ(json_string_value(json_object_get(o, "role")), m->role);
            char *clean = utf8_repair(m->text, strlen(m->text));
            CHECK_STREQ(json_string_value(json_object_get(o, "text")), clean);
            free(clean);
            CHECK_EQ_INT(json_integer_value(json_object_get(o, "created_at")), m->created_at);
            CHECK_EQ_INT(json_integer_value(json_object_get(o, "prompt_tokens")), m->prompt_tokens);
            CHECK_EQ_INT(json_integer_value(json_object_get(o, "reply_tokens")), m->reply_tokens);
            CHECK_NEAR(json_number_value(json_object_get(o, "ttft_ms")), m->ttft_ms, 1e-9);
            CHECK_NEAR(json_number_value(json_object_get(o, "tok_per_s")), m->tok_per_s, 1e-9);
            CHECK_NEAR(json_number_value(json_object_get(o, "prompt_tok_s")), m->prompt_tok_s, 1e-9);
            CHECK_STREQ(json_string_value(json_object_get(o, "stop_reason")), m->stop_reason);
            CHECK_EQ_INT(json_is_true(json_object_get(o, "interrupted")), m->interrupted);
            CHECK_STREQ(json_string_value(json_object_get(o, "backend")), m->backend);
            CHECK_STREQ(json_string_value(json_object_get(o, "model_name")), m->model_name);
            CHECK_EQ_INT(json_is_true(json_object_get(o, "on_active_branch")), m->on_active_branch);
            json_t *sp = json_object_get(o, "sampling");
            /* a float setting is its decimal (0.7, not 0.69999998...) */
            if (m->sampling.set & SAMPLER_SET_TEMPERATURE)
                CHECK(json_number_value(json_object_get(sp, "temperature")) ==
                      store_float_decimal(m->sampling.temperature));
            if (m->sampling.set & SAMPLER_SET_TOP_K)
                CHECK_EQ_INT(json_integer_value(json_object_get(sp, "top_k")), m->sampling.top_k);
            if (m->sampling.set & SAMPLER_SET_SEED)
                CHECK_EQ_INT(json_integer_value(json_object_get(sp, "seed")), m->sampling.seed);
            if (m->id == alt_id) CHECK(json_number_value(json_object_get(sp, "temperature")) == 0.7);
        }
        CHECK_EQ_INT(n, 3);
        if (n == 3) {
            CHECK_EQ_INT(all[2].id, alt_id);
            CHECK_EQ_INT(all[2].on_active_branch, 0);
            CHECK_EQ_INT(all[1].on_active_branch, 1);
            CHECK_STREQ(json_string_value(json_object_get(json_array_get(arr, 2), "text")),
                        "cut \xEF\xBF\xBD\xEF\xBF\xBD mid-char");
        }
        json_decref(root);
    }
    store_messages_free(all, n);
    store_session_clear(&ss);
    f = fopen(out, "w");
    CHECK(store_export_json(s, 77, f, &err) < 0);
    CHECK(strstr(err.msg, "no session 77") != NULL);
    fclose(f);
    store_close(s);

    const char *bad = "ok \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xf0\x9f\x99\x82";
    char *c = utf8_repair(bad, strlen(bad));
    CHECK_STREQ(c, "ok \xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD "
                   "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD \xf0\x9f\x99\x82");
    free(c);
}

/* ---- concurrency and broken files ------------------------------------------------------- */

/* Two processes record conversations into one file at the same time. */
static void test_two_writers(void) {
    char p[600];
    path_in(p, sizeof p, "two.db");
    rm_db(p);
    Store *init = store_open(p, NULL); /* schema in place; then both race on it */
    REQUIRE(init);
    store_close(init);
    enum { TURNS = 60 };
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        REQUIRE(kids[k] >= 0);
        if (kids[k] == 0) {
            Err w = {{0}};
            History *h = history_open(p, false, &w);
            if (!h || w.msg[0]) _exit(10);
            history_set_checkpoint_ms(h, 0); /* every append writes: maximum contention */
            char buf[64];
            HistoryReplyInfo ri = {.model_name = "m"};
            for (int i = 0; i < TURNS; i++) {
                snprintf(buf, sizeof buf, "writer%d turn %d", k, i);
                if (history_add_user(h, buf)) _exit(11);
                if (history_reply_begin(h, &ri)) _exit(12);
                for (int j = 0; j < 3; j++)
                    if (history_reply_append(h, "tok ", 4)) _exit(13);
                if (history_reply_end(h, NULL, STOP_EOS, false)) _exit(14);
                if (!history_persistent(h)) _exit(15);
            }
            Err e;
            _exit(history_take_warning(h, &e) ? 16 : (history_close(h), 0));
        }
    }
    for (int k = 0; k < 2; k++) {
        int st;
        REQUIRE(waitpid(kids[k], &st, 0) == kids[k]);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d exit %d", k, WEXITSTATUS(st));
    }
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM sessions"), 2);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 4 * TURNS);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages WHERE role = 'assistant' AND text = 'tok tok tok ' AND interrupted = 0"), 2 * TURNS);
    Err err;
    Store *s = store_open(p, &err);
    REQUIRE(s);
    CHECK(store_integrity_check(s, &err) == 0);
    CHECK_EQ_INT(search_count(s, "writer1"), TURNS);
    store_close(s);
}

static void test_corrupt(void) {
    char p[600];
    path_in(p, sizeof p, "garbage.db");
    rm_db(p);
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)("not a database "[i % 15]);
    write_all(p, junk, sizeof junk);
    Err err = {{0}};
    CHECK(store_open(p, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "not a database") != NULL, "%s", err.msg);
    Err w = {{0}};
    History *h = history_open(p, false, &w);
    REQUIRE(h);
    CHECK_MSG(strstr(w.msg, "not a database") && strstr(w.msg, "will not be saved"), "%s", w.msg);
    CHECK(!history_persistent(h));
    REQUIRE(history_add_user(h, "kept in memory") == 0);
    reply(h, "answer", STOP_EOS);
    int n;
    history_messages(h, &n);
    CHECK_EQ_INT(n, 2);
    history_close(h);
    CHECK(same_bytes(p, junk, sizeof junk)); /* nothing overwritten */

    /* A real database with a damaged page: found when read, reported, not "repaired". */
    path_in(p, sizeof p, "damaged.db");
    rm_db(p);
    Store *s = store_open(p, &err);
    REQUIRE(s);
    StoreSession ss = {.title = "t"};
    int64_t sid = store_session_create(s, &ss, &err);
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    for (int i = 0; i < 40; i++) add_msg(s, sid, "user", big);
    store_close(s);
    size_t len;
    char *d = read_file(p, &len);
    REQUIRE(d && len > 4096 * 8);
    memset(d + 4096 * 3, 0x5A, 4096 * 3); /* pages 4-6: b-tree pages turned to noise */
    write_all(p, d, len);
    s = store_open(p, &err);
    if (s) { /* the header is fine, so it opens; reading the damage fails cleanly */
        StoreMessage *m;
        int r = store_message_all(s, sid, &m, &n, &err);
        if (r == 0) {
            store_messages_free(m, n);
            r = store_integrity_check(s, &err);
        }
        CHECK(r < 0);
        CHECK_MSG(strstr(err.msg, "damaged") || strstr(err.msg, "integrity"), "%s", err.msg);
        store_close(s);
    } else {
        CHECK_MSG(strstr(err.msg, "damaged") || strstr(err.msg, "not a database"), "%s", err.msg);
    }
    free(d);
}

/* A read-only file: its history is still readable; the recorder warns and keeps the chat in
 * memory; the file is not changed. Root ignores file modes, so then a child drops to nobody. */
/* ---- permissions: run as another user (root drops to nobody), in a directory under /tmp so
 * that the test does not depend on where the build tree lives (a build inside root's home
 * could not be entered by nobody). ---------------------------------------------------------- */

static void become_other_user(void) {
    if (geteuid() == 0 && (setgid(65534) || setuid(65534))) _exit(90);
}

/* A fresh directory under /tmp holding name, a database with one session, owned by the user the
 * child becomes; the directory is writable by that user. */
static void make_owned_db(char *dir, size_t dcap, char *db, size_t cap, const char *name) {
    snprintf(dir, dcap, "/tmp/bn-store-perm.XXXXXX");
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(db, cap, "%s/%s", dir, name);
    Err err = {{0}};
    Store *s = store_open(db, &err);
    REQUIRE(s);
    StoreSession ss = {.title = "perm"};
    int64_t sid = store_session_create(s, &ss, &err);
    add_msg(s, sid, "user", "kept");
    store_close(s);
    if (geteuid() == 0) {
        REQUIRE(chown(dir, 65534, 65534) == 0);
        REQUIRE(chown(db, 65534, 65534) == 0);
    }
}

static void rm_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwX '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
    CHECK(system(cmd) == 0);
}

static int child_status(pid_t kid) {
    int st;
    REQUIRE(waitpid(kid, &st, 0) == kid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static void test_read_only(void) {
    char dir[256], p[400];
    snprintf(dir, sizeof dir, "/tmp/bn-store-ro.XXXXXX"); /* enterable by nobody, wherever the build is */
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(p, sizeof p, "%s/ro.db", dir);
    Err err = {{0}};
    Store *s = store_open(p, &err);
    REQUIRE(s);
    StoreSession ss = {.title = "readable"};
    int64_t sid = store_session_create(s, &ss, &err);
    add_msg(s, sid, "user", "old message");
    store_close(s);
    REQUIRE(chmod(p, 0444) == 0);
    size_t n;
    char *before = read_file(p, &n);
    pid_t kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) {
        if (geteuid() == 0) {
            chmod(dir, 0755);
            if (setgid(65534) || setuid(65534)) _exit(20);
        }
        Err w = {{0}};
        History *h = history_open(p, false, &w);
        if (!h) _exit(21);
        /* Opened read-only (as an immutable snapshot when the WAL index cannot be made): it
         * says so, browsing works, and the chat goes on in memory. */
        fprintf(stderr, "read-only warning: %s\n", w.msg);
        if (!strstr(w.msg, "read-only") || !history_store(h)) {
            fprintf(stderr, "warning was: %s\n", w.msg);
            _exit(22);
        }
        if (history_persistent(h)) _exit(23);
        if (history_add_user(h, "new message")) _exit(24);
        HistoryReplyInfo ri = {0};
        if (history_reply_begin(h, &ri) || history_reply_append(h, "x", 1) ||
            history_reply_end(h, NULL, STOP_EOS, false))
            _exit(25);
        int nm;
        history_messages(h, &nm);
        if (nm != 2) _exit(26);
        Store *st = history_store(h);
        if (st) { /* browsing still works */
            StoreSession *list;
            int nl;
            Err e;
            if (store_session_list(st, &list, &nl, &e) || nl != 1) _exit(27);
            store_sessions_free(list, nl);
        }
        history_close(h);
        _exit(0);
    }
    int st;
    REQUIRE(waitpid(kid, &st, 0) == kid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "read-only child exit %d", WEXITSTATUS(st));
    CHECK(same_bytes(p, before, n));
    free(before);
    chmod(p, 0600);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 1);
    rm_tree(dir);
}

/* Browsing a 0400 database (--sessions) must leave nothing behind that makes it read-only once
 * it is writable again (it left -shm/-wal files of mode 0400, and every later chat said "the
 * database is read-only"). A writable database in a read-only directory can still be browsed,
 * and a chat there names the directory. A read-only -shm left beside a writable database is
 * named as the file that is read-only. */
static void test_read_only_side_files(void) {
    char dir[256], db[400];
    /* 1. 0400 database, browsed, then made writable again */
    make_owned_db(dir, sizeof dir, db, sizeof db, "h.db");
    REQUIRE(chmod(db, 0400) == 0);
    pid_t kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) {
        become_other_user();
        Err e = {{0}};
        Store *s = store_open_ex(db, STORE_OPEN_NOCREATE, &e);
        if (!s) {
            fprintf(stderr, "open 0400: %s\n", e.msg);
            _exit(1);
        }
        StoreSession *list;
        int nl;
        if (store_session_list(s, &list, &nl, &e) || nl != 1) _exit(2);
        store_sessions_free(list, nl);
        store_close(s);
        char side[450];
        snprintf(side, sizeof side, "%s-shm", db);
        if (access(side, F_OK) == 0) _exit(8); /* browsing created nothing beside it */
        snprintf(side, sizeof side, "%s-wal", db);
        if (access(side, F_OK) == 0) _exit(9);
        if (chmod(db, 0600)) _exit(3);
        Err w = {{0}};
        History *h = history_open(db, false, &w);
        if (!h) _exit(4);
        if (w.msg[0]) fprintf(stderr, "after chmod 0600: %s\n", w.msg);
        if (!history_persistent(h) || w.msg[0]) _exit(5);
        if (history_add_user(h, "saved again")) _exit(6);
        if (history_take_warning(h, &w)) {
            fprintf(stderr, "after chmod 0600, writing: %s\n", w.msg);
            _exit(7);
        }
        history_close(h);
        _exit(0);
    }
    CHECK_EQ_INT(child_status(kid), 0);
    CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM messages"), 2);
    rm_tree(dir);

    /* 2. writable database, read-only directory */
    make_owned_db(dir, sizeof dir, db, sizeof db, "h.db");
    REQUIRE(chmod(dir, 0555) == 0);
    kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) {
        become_other_user();
        Err e = {{0}};
        Store *s = store_open_ex(db, STORE_OPEN_NOCREATE, &e);
        if (!s) {
            fprintf(stderr, "open in a read-only directory: %s\n", e.msg);
            _exit(11);
        }
        StoreMessage *m;
        int nm;
        if (store_message_branch(s, 1, &m, &nm, &e) || nm != 1 || strcmp(m[0].text, "kept")) _exit(12);
        store_messages_free(m, nm);
        store_close(s);
        Err w = {{0}};
        History *h = history_open(db, false, &w);
        if (!h) _exit(13);
        fprintf(stderr, "read-only directory warning: %s\n", w.msg);
        if (history_persistent(h) || !strstr(w.msg, dir)) _exit(14);
        if (strstr(w.msg, "database is read-only")) _exit(15); /* the file is not */
        history_close(h);
        _exit(0);
    }
    CHECK_EQ_INT(child_status(kid), 0);
    rm_tree(dir);

    /* 3. a read-only -shm beside a writable database */
    make_owned_db(dir, sizeof dir, db, sizeof db, "h.db");
    char shm[420];
    snprintf(shm, sizeof shm, "%s-shm", db);
    {
        FILE *f = fopen(shm, "wb");
        REQUIRE(f);
        fclose(f);
        if (geteuid() == 0) REQUIRE(chown(shm, 65534, 65534) == 0);
        REQUIRE(chmod(shm, 0400) == 0);
    }
    kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) {
        become_other_user();
        Err w = {{0}};
        History *h = history_open(db, false, &w);
        if (!h) _exit(21);
        if (!w.msg[0] && !history_add_user(h, "x")) history_take_warning(h, &w);
        fprintf(stderr, "read-only -shm warning: %s\n", w.msg);
        if (!strstr(w.msg, shm)) _exit(22);
        history_close(h);
        _exit(0);
    }
    CHECK_EQ_INT(child_status(kid), 0);
    rm_tree(dir);
}

/* Another program holds the write lock: the recorder warns, keeps the conversation in memory
 * and writes all of it once the lock is gone. */
static void test_locked(void) {
    char p[600];
    path_in(p, sizeof p, "locked.db");
    rm_db(p);
    Store *s0 = store_open(p, NULL);
    REQUIRE(s0);
    store_close(s0);
    int go[2], done[2];
    REQUIRE(pipe(go) == 0 && pipe(done) == 0);
    pid_t kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) { /* the other program: holds BEGIN IMMEDIATE until told to stop */
        sqlite3 *db;
        if (sqlite3_open(p, &db) != SQLITE_OK) _exit(30);
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) _exit(31);
        char c = 1;
        if (write(go[1], &c, 1) != 1) _exit(32);
        if (read(done[0], &c, 1) != 1) _exit(33);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(db);
        _exit(0);
    }
    char c;
    REQUIRE(read(go[0], &c, 1) == 1);
    Err w = {{0}};
    History *h = history_open(p, false, &w);
    REQUIRE(h);
    CHECK_STREQ(w.msg, ""); /* WAL: reading is not blocked, so opening works */
    REQUIRE(history_add_user(h, "written while locked") == 0); /* waits the busy timeout, then falls back */
    CHECK(!history_persistent(h));
    CHECK(history_take_warning(h, &w));
    CHECK_MSG(strstr(w.msg, "locked") && strstr(w.msg, "saved when possible"), "%s", w.msg);
    HistoryReplyInfo ri = {0};
    REQUIRE(history_reply_begin(h, &ri) == 0); /* retried: still locked (short timeout) */
    CHECK(!history_take_warning(h, &w));        /* no repeated warning */
    REQUIRE(history_reply_append(h, "partial ", 8) == 0);
    REQUIRE(history_reply_append(h, "reply", 5) == 0);
    REQUIRE(history_reply_end(h, NULL, STOP_EOS, false) == 0);
    /* A new chat while the first is still unsaved: the first is owed, not dropped. */
    REQUIRE(history_begin_session(h, NULL) == 0);
    REQUIRE(history_add_user(h, "second chat while locked") == 0);
    CHECK(!history_persistent(h));
    c = 1;
    REQUIRE(write(done[1], &c, 1) == 1);
    int st;
    waitpid(kid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    REQUIRE(history_reply_begin(h, &ri) == 0); /* commit point: writes both chats */
    CHECK(history_persistent(h));
    CHECK(history_take_warning(h, &w));
    CHECK_MSG(strstr(w.msg, "again"), "%s", w.msg);
    REQUIRE(history_reply_append(h, "second reply", 12) == 0);
    REQUIRE(history_reply_end(h, NULL, STOP_EOS, false) == 0);
    history_close(h);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages WHERE text = 'written while locked'"), 1);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages WHERE text = 'partial reply' AND interrupted = 0"), 1);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages WHERE text = 'second reply' AND interrupted = 0"), 1);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM sessions"), 2);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM sessions WHERE title = 'second chat while locked'"), 1);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 4);

    /* Locked while opening (an old-format file another program holds exclusively): the
     * recorder keeps the path and opens (and migrates) it at the next commit point. */
    char src[600];
    snprintf(src, sizeof src, "%s/store/history_v1.db", BN_TEST_DATA);
    path_in(p, sizeof p, "locked_v1.db");
    rm_db(p);
    copy_file(src, p);
    REQUIRE(pipe(go) == 0 && pipe(done) == 0);
    kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) {
        sqlite3 *db;
        if (sqlite3_open(p, &db) != SQLITE_OK) _exit(30);
        if (sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL) != SQLITE_OK) _exit(31);
        char k = 1;
        if (write(go[1], &k, 1) != 1) _exit(32);
        if (read(done[0], &k, 1) != 1) _exit(33);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(db);
        _exit(0);
    }
    REQUIRE(read(go[0], &c, 1) == 1);
    h = history_open(p, false, &w);
    REQUIRE(h);
    CHECK_MSG(strstr(w.msg, "locked") && strstr(w.msg, "saved once"), "%s", w.msg);
    CHECK(!history_persistent(h));
    REQUIRE(write(done[1], &c, 1) == 1);
    waitpid(kid, &st, 0);
    REQUIRE(history_add_user(h, "after the lock") == 0);
    CHECK(history_persistent(h));
    history_close(h);
    CHECK_EQ_INT(count_rows(p, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 9);
}

/* A full disk (simulated with a file size limit in a child): the write fails, the recorder
 * warns and keeps the message in memory, and writes it once space is back. */
static void test_disk_full(void) {
    char p[600];
    path_in(p, sizeof p, "full.db");
    rm_db(p);
    pid_t kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) {
        signal(SIGXFSZ, SIG_IGN); /* a write past the limit then fails with EFBIG */
        History *h = history_open(p, false, NULL);
        if (!h || !history_persistent(h)) _exit(40);
        if (history_add_user(h, "small first message")) _exit(41);
        struct rlimit rl;
        getrlimit(RLIMIT_FSIZE, &rl);
        struct rlimit tight = {64 * 1024, rl.rlim_max};
        if (setrlimit(RLIMIT_FSIZE, &tight)) _exit(42);
        size_t big = 400 * 1024;
        char *text = malloc(big + 1);
        for (size_t i = 0; i < big; i++) text[i] = "abcdefgh "[i % 9];
        text[big] = 0;
        if (history_add_user(h, text)) _exit(43);
        Err w;
        if (history_persistent(h) || !history_take_warning(h, &w)) _exit(44);
        fprintf(stderr, "disk full warning: %s\n", w.msg);
        if (!strstr(w.msg, "saved when possible")) _exit(45);
        int n;
        const StoreMessage *m = history_messages(h, &n);
        if (n != 2 || strlen(m[1].text) != big) _exit(46);
        if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(47); /* space is back */
        HistoryReplyInfo ri = {0};
        if (history_reply_begin(h, &ri)) _exit(48);
        if (!history_persistent(h) || !history_take_warning(h, &w) || !strstr(w.msg, "again"))
            _exit(49);
        history_reply_append(h, "ok", 2);
        history_reply_end(h, NULL, STOP_EOS, false);
        history_close(h);
        free(text);
        _exit(0);
    }
    int st;
    REQUIRE(waitpid(kid, &st, 0) == kid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "disk-full child exit %d", WEXITSTATUS(st));
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages"), 3);
    CHECK_EQ_INT(count_rows(p, "SELECT max(length(text)) FROM messages"), 400 * 1024);
    Err err;
    Store *s = store_open(p, &err);
    REQUIRE(s);
    CHECK(store_integrity_check(s, &err) == 0);
    store_close(s);
}

/* A write that fails mid-reply (the file size limit; a full disk alike) and never succeeds
 * again: the closing line must not say the conversation was not saved when its start was (the
 * user message and the reply's first checkpoint are in the database). */
static void test_disk_full_mid_reply(void) {
    char p[600];
    path_in(p, sizeof p, "full2.db");
    rm_db(p);
    pid_t kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        History *h = history_open(p, false, NULL);
        if (!h || !history_persistent(h)) _exit(40);
        history_set_checkpoint_ms(h, 0);
        if (history_add_user(h, "question")) _exit(41);
        HistoryReplyInfo ri = reply_info();
        if (history_reply_begin(h, &ri) || history_reply_append(h, "the start, saved. ", 18)) _exit(42);
        struct stat sb;
        if (stat(p, &sb)) _exit(43);
        struct rlimit rl;
        getrlimit(RLIMIT_FSIZE, &rl);
        struct rlimit tight = {(rlim_t)sb.st_size + 4096, rl.rlim_max};
        if (setrlimit(RLIMIT_FSIZE, &tight)) _exit(44);
        static char chunk[8192];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 64; i++) history_reply_append(h, chunk, sizeof chunk);
        history_reply_end(h, NULL, STOP_EOS, false);
        Err lost = {{0}};
        if (!history_flush_final(h, &lost)) _exit(45);
        fprintf(stderr, "mid-reply failure, closing line: %s\n", lost.msg);
        if (strstr(lost.msg, "this conversation was not saved")) _exit(46);
        if (!strstr(lost.msg, "session 1")) _exit(47);
        history_close(h);
        _exit(0);
    }
    int st;
    REQUIRE(waitpid(kid, &st, 0) == kid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mid-reply disk-full child exit %d", WEXITSTATUS(st));
    /* what the closing line says was saved is there */
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages WHERE text = 'question'"), 1);
    CHECK_EQ_INT(count_rows(p, "SELECT count(*) FROM messages WHERE text LIKE 'the start, saved.%'"), 1);
}

/* A disk that is full when the database is opened (SQLite needs room for its -shm and -wal):
 * the message says the disk is full, not "disk I/O error". Needs a small filesystem: a
 * tmpfs of 1 MiB, mounted when the test runs as root (skipped with a note otherwise). */
static void test_disk_full_at_open(void) {
    char mnt[] = "/tmp/bn-store-full.XXXXXX";
    REQUIRE(mkdtemp(mnt) != NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=1m tmpfs '%s' 2>/dev/null", mnt);
    if (geteuid() != 0 || system(cmd) != 0) {
        printf("note: disk full at open not checked (needs root and a tmpfs mount)\n");
        rmdir(mnt);
        return;
    }
    char db[300], fill[300];
    snprintf(db, sizeof db, "%s/h.db", mnt);
    snprintf(fill, sizeof fill, "%s/fill", mnt);
    Err err = {{0}};
    Store *s = store_open(db, &err);
    CHECK_MSG(s != NULL, "open on an empty tmpfs: %s", err.msg);
    store_close(s);
    FILE *f = fopen(fill, "wb");
    REQUIRE(f);
    static char block[512];
    while (fwrite(block, 1, sizeof block, f) == sizeof block && fflush(f) == 0) {
    }
    fclose(f);
    char side[320];
    snprintf(side, sizeof side, "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db);
    unlink(side);
    err.msg[0] = 0;
    s = store_open(db, &err);
    CHECK(s == NULL);
    CHECK_MSG(strstr(err.msg, "disk is full") != NULL, "open on a full disk said: %s", err.msg);
    store_close(s);
    snprintf(cmd, sizeof cmd, "umount '%s'", mnt);
    CHECK(system(cmd) == 0);
    rmdir(mnt);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/test_store.XXXXXX", BN_BINARY_DIR);
    REQUIRE(mkdtemp(tmpdir) != NULL);
    test_fresh_default_path();
    test_v1_migration();
    test_migration_steps();
    test_newer_and_foreign_refused();
    test_sampling_json();
    test_round_trip();
    test_long_chain_delete();
    test_branches();
    test_recorder();
    test_failed_reply_reason();
    test_every_byte();
    test_search();
    test_exports();
    test_two_writers();
    test_corrupt();
    test_read_only();
    test_read_only_side_files();
    test_locked();
    test_disk_full();
    test_disk_full_at_open();
    test_disk_full_mid_reply();
    int rc = check_report("test_store");
    if (rc == 0) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    } else {
        fprintf(stderr, "files kept in %s\n", tmpdir);
    }
    return rc;
}
