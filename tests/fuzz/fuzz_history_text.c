/* libFuzzer target: the chat-history text paths. The input is split at each byte 0x00 into a
 * title, a system prompt and then alternating user / assistant messages; the assistant parts
 * are fed to the recorder the way tokens arrive (in small pieces, with the NUL bytes of the
 * reply itself put back in between parts 3 and 4, so a reply holding NUL is fuzzed too).
 * Then, with oracles that abort on a wrong answer:
 *   - the Markdown export holds every message as stored, and nothing but what was stored;
 *   - the JSON export parses back, and each text equals the stored text made valid UTF-8;
 *   - the stored reply equals what the recorder was fed, NUL bytes shown as U+FFFD;
 *   - the terminal-safe copy of the export holds no control byte but new line and tab, and
 *     equals the same text made safe one byte at a time (the streaming path of -p);
 *   - search with the last part as the query succeeds or fails with a message.
 * The database is a file in /dev/shm, created once; each input's session is deleted after. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/history.h"
#include "app/store.h"
#include "app/store_internal.h"
#include "app/termsafe.h"
#include "infer/utf8.h"

enum { MAX_PARTS = 8 };

static char db_path[256];

/* The recorder's one call into the engine thread's file (infer/engine.c), which this clang
 * build does not compile (the kernels below it need gcc's CPU feature names). The harness only
 * ends replies with STOP_EOS. */
const char *stop_reason_name(StopReason r) { return r == STOP_EOS ? "eos" : "not-eos"; }

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_history_text: oracle failed: %s\n", what);
        abort();
    }
}

/* The stored form of a reply: NUL bytes become U+FFFD (what the recorder promises). */
static char *nul_to_fffd(const uint8_t *p, size_t n) {
    char *o = malloc(n * 3 + 1), *w = o;
    for (size_t i = 0; i < n; i++) {
        if (p[i]) *w++ = (char)p[i];
        else memcpy(w, "\xEF\xBF\xBD", 3), w += 3;
    }
    *w = 0;
    return o;
}

static char *safe_copy(const char *s, size_t n, size_t piece, size_t *out_len) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    TermSafe ts = {0, 1};
    for (size_t i = 0; i < n; i += piece) termsafe_write(&ts, f, s + i, n - i < piece ? n - i : piece);
    termsafe_finish(&ts, f);
    fclose(f);
    *out_len = len;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!db_path[0]) snprintf(db_path, sizeof db_path, "/dev/shm/fuzz-history-%d.db", (int)getpid());
    const uint8_t *part[MAX_PARTS];
    size_t len[MAX_PARTS];
    int n = 0;
    size_t start = 0;
    while (n < MAX_PARTS - 1) {
        const uint8_t *q = memchr(data + start, 0, size - start);
        if (!q) break;
        part[n] = data + start;
        len[n++] = (size_t)(q - (data + start));
        start = (size_t)(q - data) + 1;
    }
    part[n] = data + start; /* the last part keeps its NUL bytes */
    len[n++] = size - start;
    for (int i = n; i < MAX_PARTS; i++) part[i] = data, len[i] = 0;
    char *s[MAX_PARTS];
    for (int i = 0; i < MAX_PARTS; i++) s[i] = strndup((const char *)part[i], len[i]);

    Err warn = {{0}};
    History *h = history_open(db_path, false, &warn);
    check(h != NULL, "history_open");
    check(history_persistent(h), warn.msg[0] ? warn.msg : "history not persistent");
    /* Commits at the user message, reply start and end only: a checkpoint per piece would make
     * each input dozens of synced transactions (4 inputs/s instead of hundreds). */
    history_set_checkpoint_ms(h, 3600 * 1000);
    HistorySessionInfo si = {.title = len[0] ? s[0] : NULL, .model_name = "fuzz", .model_path = "/fuzz",
                             .system_prompt = s[1]};
    HistoryReplyInfo ri = {.model_name = "fuzz", .backend = "cpu"};
    history_begin_session(h, &si);
    EngineStats st;
    memset(&st, 0, sizeof st);
    char *expect_reply[MAX_PARTS] = {0};
    for (int i = 2; i < MAX_PARTS; i++) {
        if (i % 2 == 0) {
            history_add_user(h, s[i][0] ? s[i] : "?");
            continue;
        }
        /* The reply: the part's own bytes (the last part may hold NULs), fed in 3-byte pieces. */
        history_reply_begin(h, &ri);
        for (size_t k = 0; k < len[i]; k += 3)
            history_reply_append(h, (const char *)part[i] + k, len[i] - k < 3 ? len[i] - k : 3);
        history_reply_end(h, &st, STOP_EOS, false);
        expect_reply[i] = nul_to_fffd(part[i], len[i]);
    }
    const StoreSession *ss = history_session(h);
    int64_t sid = ss->id;
    check(sid > 0, "session saved");
    Store *db = history_store(h);

    /* Stored texts. */
    StoreMessage *msgs;
    int nm;
    Err err = {{0}};
    check(store_message_branch(db, sid, &msgs, &nm, &err) == 0, err.msg);
    check(nm == MAX_PARTS - 2, "message count");
    for (int i = 0; i < nm; i++) {
        const int pi = i + 2;
        if (pi % 2) {
            check(!strcmp(msgs[i].text, expect_reply[pi]), "stored reply == fed bytes (NUL as U+FFFD)");
            check(!strcmp(msgs[i].stop_reason, "eos") && !msgs[i].interrupted, "reply complete");
        }
        else check(!strcmp(msgs[i].text, s[pi][0] ? s[pi] : "?"), "stored user text");
    }

    /* Markdown export: every stored text appears as it is. */
    char *md = NULL;
    size_t md_len = 0;
    FILE *f = open_memstream(&md, &md_len);
    check(store_export_markdown(db, sid, f, &err) == 0, err.msg);
    fclose(f);
    for (int i = 0; i < nm; i++) check(strstr(md, msgs[i].text) != NULL, "markdown holds each message");

    /* JSON export: parses back, texts as stored (made valid UTF-8). */
    char *js = NULL;
    size_t js_len = 0;
    f = open_memstream(&js, &js_len);
    check(store_export_json(db, sid, f, &err) == 0, err.msg);
    fclose(f);
    json_error_t je;
    json_t *root = json_loadb(js, js_len, 0, &je);
    check(root != NULL, "json export parses");
    json_t *arr = json_object_get(root, "messages");
    check(json_is_array(arr) && json_array_size(arr) == (size_t)nm, "json message count");
    for (int i = 0; i < nm; i++) {
        char *clean = utf8_repair(msgs[i].text, strlen(msgs[i].text));
        const char *t = json_string_value(json_object_get(json_array_get(arr, (size_t)i), "text"));
        check(t && !strcmp(t, clean), "json text == stored text made valid UTF-8");
        free(clean);
    }
    json_decref(root);

    /* Terminal-safe copies: no control byte survives, and pieces give the same as the whole. */
    size_t l1, l2;
    char *a = safe_copy(md, md_len, md_len ? md_len : 1, &l1), *b = safe_copy(md, md_len, 1, &l2);
    check(l1 == l2 && !memcmp(a, b, l1), "terminal-safe copy independent of piece size");
    for (size_t i = 0; i < l1; i++) {
        unsigned char c = (unsigned char)a[i];
        check(c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f), "no control byte in safe copy");
        check(!(c == 0xC2 && i + 1 < l1 && (unsigned char)a[i + 1] >= 0x80 && (unsigned char)a[i + 1] <= 0x9F),
              "no C1 control in safe copy");
    }
    free(a);
    free(b);
    free(md);
    free(js);

    /* Search: any query either finds hits or fails with a message; never a crash. */
    StoreSearchHit *hits;
    int nh;
    if (store_search(db, s[MAX_PARTS - 1], &hits, &nh, &err) == 0) store_search_free(hits, nh);
    else check(err.msg[0] != 0, "search failure has a message");
    free(store_fts_query(s[0]));

    store_messages_free(msgs, nm);
    check(store_session_delete(db, sid, &err) == 0, err.msg);
    history_close(h);
    for (int i = 0; i < MAX_PARTS; i++) free(s[i]), free(expect_reply[i]);
    return 0;
}
