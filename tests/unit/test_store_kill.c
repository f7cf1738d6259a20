/* Durability: a process streaming a reply through the recorder is killed with SIGKILL. The
 * database must pass integrity_check, hold every earlier message, and hold the partial reply
 * marked interrupted with at least the text of its last reported checkpoint (a prefix of what
 * was streamed). Runs three kills at different points. argv[1]: the store_kill_child binary. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "app/store.h"
#include "check.h"

static void expected_stream(char *out, size_t len) {
    char buf[16];
    for (size_t i = 0; i * 12 < len; i++) {
        snprintf(buf, sizeof buf, "chunk%06zu ", i);
        memcpy(out + i * 12, buf, 12);
    }
}

static void one_kill(const char *child, const char *db, size_t min_saved, int extra_lines) {
    unlink(db);
    char side[600];
    snprintf(side, sizeof side, "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db);
    unlink(side);
    int out[2];
    REQUIRE(pipe(out) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(child, child, db, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[128];
    size_t appended = 0, saved = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "A %zu S %zu", &appended, &saved) != 2) break;
        if (saved >= min_saved && extra_lines-- <= 0) break;
    }
    kill(pid, SIGKILL); /* no chance to clean up: mid-reply, maybe mid-write */
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    fclose(f);
    CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child did not die by SIGKILL (status %d)", st);
    CHECK_MSG(saved >= min_saved, "child reported only %zu saved bytes", saved);

    Err err = {{0}};
    Store *s = store_open(db, &err);
    REQUIRE(s);
    CHECK_MSG(store_integrity_check(s, &err) == 0, "%s", err.msg);
    StoreSession *ss;
    int n;
    REQUIRE(store_session_list(s, &ss, &n, &err) == 0);
    CHECK_EQ_INT(n, 1);
    int64_t sid = n ? ss[0].id : 0;
    if (n) CHECK_STREQ(ss[0].title, "question 0");
    store_sessions_free(ss, n);
    StoreMessage *m;
    REQUIRE(store_message_branch(s, sid, &m, &n, &err) == 0);
    CHECK_EQ_INT(n, 8);
    if (n == 8) {
        char buf[32];
        for (int i = 0; i < 3; i++) {
            snprintf(buf, sizeof buf, "question %d", i);
            CHECK_STREQ(m[2 * i].text, buf);
            snprintf(buf, sizeof buf, "answer %d", i);
            CHECK_STREQ(m[2 * i + 1].text, buf);
            CHECK_EQ_INT(m[2 * i + 1].interrupted, 0);
            CHECK_STREQ(m[2 * i + 1].stop_reason, "eos");
            CHECK_EQ_INT(m[2 * i + 1].reply_tokens, 2);
        }
        CHECK_STREQ(m[6].text, "the long one");
        const StoreMessage *r = &m[7];
        CHECK_STREQ(r->role, "assistant");
        CHECK_EQ_INT(r->interrupted, 1);
        CHECK_STREQ(r->stop_reason, "");
        CHECK_STREQ(r->backend, "CPU");
        size_t len = strlen(r->text);
        CHECK_MSG(len >= saved, "reply has %zu bytes, %zu were reported saved", len, saved);
        CHECK(len % 12 == 0);
        char *exp = malloc(len + 12);
        expected_stream(exp, len);
        CHECK(memcmp(exp, r->text, len) == 0);
        free(exp);
        printf("killed after %zu bytes streamed, %zu reported saved, %zu in the database\n",
               appended, saved, len);
    }
    store_messages_free(m, n);
    store_close(s);
}

int main(int argc, char **argv) {
    REQUIRE(argc == 2);
    char dir[512], db[600];
    snprintf(dir, sizeof dir, "%s/test_store_kill.XXXXXX", BN_BINARY_DIR);
    REQUIRE(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/kill.db", dir);
    one_kill(argv[1], db, 1, 0);       /* right after the first checkpoint */
    one_kill(argv[1], db, 600, 0);     /* a few checkpoints in */
    one_kill(argv[1], db, 1200, 7);    /* between two checkpoints: the tail is lost */
    one_kill(argv[1], db, 2400, 3);
    int rc = check_report("test_store_kill");
    if (rc == 0) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    return rc;
}
