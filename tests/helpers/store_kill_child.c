/* Helper for test_store_kill: records three finished turns, then streams one long reply
 * through the recorder forever, checkpointing every 50 ms, and reports after every append how
 * many reply bytes it has appended ("A") and how many are known committed ("S"). The test kills
 * it with SIGKILL in the middle of the reply. Usage: store_kill_child DB_PATH */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "app/history.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: store_kill_child DB_PATH\n");
        return 2;
    }
    Err w = {{0}};
    History *h = history_open(argv[1], false, &w);
    if (!h || w.msg[0]) {
        fprintf(stderr, "store_kill_child: %s\n", w.msg);
        return 1;
    }
    history_set_checkpoint_ms(h, 50);
    HistorySessionInfo si = {.model_name = "bitnet-demo", .system_prompt = "sys"};
    history_begin_session(h, &si);
    HistoryReplyInfo ri = {.model_name = "bitnet-demo", .backend = "CPU"};
    char buf[64];
    for (int i = 0; i < 3; i++) {
        snprintf(buf, sizeof buf, "question %d", i);
        if (history_add_user(h, buf)) return 1;
        if (history_reply_begin(h, &ri)) return 1;
        snprintf(buf, sizeof buf, "answer %d", i);
        history_reply_append(h, buf, strlen(buf));
        EngineStats st = {.gen_tokens = 2};
        if (history_reply_end(h, &st, STOP_EOS, false)) return 1;
    }
    if (history_add_user(h, "the long one") || history_reply_begin(h, &ri)) return 1;
    size_t appended = 0;
    struct timespec pause = {0, 2 * 1000 * 1000};
    for (int i = 0; i < 1000000; i++) {
        snprintf(buf, sizeof buf, "chunk%06d ", i); /* 12 bytes */
        if (history_reply_append(h, buf, 12)) return 1;
        appended += 12;
        printf("A %zu S %zu\n", appended, history_saved_reply_len(h));
        fflush(stdout);
        nanosleep(&pause, NULL);
    }
    history_close(h);
    return 0;
}
