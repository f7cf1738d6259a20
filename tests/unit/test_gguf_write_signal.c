/* An interrupted GGUF write leaves no partial file: a child writes a synthetic model (tens of
 * MB, so the write takes a while) with the same signal handling as `bitnet-chat convert`
 * (gguf_write_remove_partial, then death by the signal); the parent waits until the temporary
 * file appears, sends SIGINT, and checks that the directory is empty afterwards and that the
 * child died by SIGINT. A write that is allowed to finish leaves exactly the output. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "infer/gguf_write.h"
#include "infer/model.h"
#include "check.h"

static void on_signal(int sig) {
    gguf_write_remove_partial();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Entries of dir other than . and ..; the first one's name in first (may be NULL). */
static int count_entries(const char *dir, char *first, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == 0 && first) snprintf(first, cap, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static int make_model(Model *m) {
    ModelConfig c = model_config_bitnet_2b();
    c.n_layers = 6;
    c.dim = 1024;
    c.ffn_dim = 4096;
    c.n_heads = 8;
    c.n_kv_heads = 2;
    c.head_dim = 128;
    c.vocab_size = 4096;
    Err err = {{0}};
    if (model_init_random(m, &c, 7, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    m->tok = model_load_tokenizer(BN_SOURCE_DIR "/assets/bitnet-demo.gguf", &err);
    if (!m->tok) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

int main(void) {
    char dir[] = "/tmp/bn_qa_sig.XXXXXX";
    REQUIRE(mkdtemp(dir));
    char out[256];
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    Model m;
    memset(&m, 0, sizeof m);
    REQUIRE(make_model(&m) == 0);

    int interrupted_during_write = 0;
    for (int attempt = 0; attempt < 3 && !interrupted_during_write; attempt++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_signal;
            sigaction(SIGINT, &sa, NULL);
            Err err = {{0}};
            char note[256];
            _exit(gguf_write_model(&m, out, note, sizeof note, &err) ? 1 : 0);
        }
        /* wait for the temporary file, then interrupt */
        char name[256] = "";
        for (int i = 0; i < 20000; i++) {
            if (count_entries(dir, name, sizeof name) > 0) break;
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        int seen_tmp = strstr(name, "tmp-") != NULL;
        kill(pid, SIGINT);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        int left = count_entries(dir, name, sizeof name);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGINT && seen_tmp) {
            interrupted_during_write = 1;
            CHECK_MSG(left == 0, "left behind after SIGINT: %s", name);
        } else {
            /* the write finished before the signal: only the output may be there */
            CHECK(left <= 1);
            unlink(out);
        }
    }
    CHECK_MSG(interrupted_during_write, "%s", "never caught the write in progress");

    /* uninterrupted: exactly the output, no temporary file */
    Err err = {{0}};
    char note[256];
    CHECK_MSG(gguf_write_model(&m, out, note, sizeof note, &err) == 0, "%s", err.msg);
    char name[256] = "";
    CHECK_EQ_INT(count_entries(dir, name, sizeof name), 1);
    CHECK_STREQ(name, "out.gguf");
    unlink(out);
    rmdir(dir);
    model_free(&m);
    return check_report("test_gguf_write_signal");
}
