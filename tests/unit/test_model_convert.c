/* convert: every fixture written as an official-layout I2_S GGUF loads back bit-identically
 * (codes, scales, norms, embedding, tokenizer vocabulary), carries the official keys, and a
 * write that cannot finish (no space, bad directory) leaves no partial file behind. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "infer/gguf.h"
#include "infer/gguf_write.h"
#include "infer/model.h"
#include "infer/tokenizer.h"

#define FIXDIR BN_TEST_DATA "/models"

static char tmpdir[256];

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int str_is(GgufStr s, const char *c) { return s.len == strlen(c) && !memcmp(s.ptr, c, s.len); }

static void check_vocab_equal(const Tokenizer *a, const Tokenizer *b) {
    const TokenizerVocab *x = tokenizer_vocab(a), *y = tokenizer_vocab(b);
    REQUIRE(x && y);
    CHECK_EQ_INT(x->n_tokens, y->n_tokens);
    CHECK_EQ_INT(x->n_merges, y->n_merges);
    int bad = 0;
    for (int i = 0; i < x->n_tokens && i < y->n_tokens; i++) {
        size_t lx = x->token_lens ? x->token_lens[i] : strlen(x->tokens[i]);
        size_t ly = y->token_lens ? y->token_lens[i] : strlen(y->tokens[i]);
        bad += lx != ly || memcmp(x->tokens[i], y->tokens[i], lx);
    }
    for (int i = 0; i < x->n_merges && i < y->n_merges; i++) {
        size_t lx = x->merge_lens ? x->merge_lens[i] : strlen(x->merges[i]);
        size_t ly = y->merge_lens ? y->merge_lens[i] : strlen(y->merges[i]);
        bad += lx != ly || memcmp(x->merges[i], y->merges[i], lx);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(tokenizer_bos(a), tokenizer_bos(b));
    CHECK_EQ_INT(tokenizer_eot(a), tokenizer_eot(b));
    static const char text[] = "Hello world! read_file(path) 12345";
    int32_t *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    Err err;
    REQUIRE(tokenizer_encode(a, text, sizeof text - 1, &ia, &na, &err) == 0);
    REQUIRE(tokenizer_encode(b, text, sizeof text - 1, &ib, &nb, &err) == 0);
    CHECK(na == nb && na > 0 && !memcmp(ia, ib, na * sizeof *ia));
    free(ia);
    free(ib);
}

static void round_trip(const char *fixture) {
    char src[512], out[512], why[256], note[256];
    snprintf(src, sizeof src, FIXDIR "/%s", fixture);
    snprintf(out, sizeof out, "%s/%s.out.gguf", tmpdir, fixture);
    Model a, b;
    Err err = {{0}};
    REQUIRE(model_load(&a, src, NULL, &err) == 0);
    int rc = gguf_write_model(&a, out, note, sizeof note, &err);
    CHECK_MSG(rc == 0, "%s: %s", fixture, err.msg);
    if (rc) {
        model_free(&a);
        return;
    }
    rc = model_load(&b, out, NULL, &err);
    CHECK_MSG(rc == 0, "%s reload: %s", fixture, err.msg);
    if (rc) {
        model_free(&a);
        return;
    }
    rc = model_weights_equal(&a, &b, why, sizeof why);
    CHECK_MSG(rc == 0, "%s: %s", fixture, why);
    CHECK_STREQ(b.format, "gguf");
    CHECK_EQ_INT(b.cfg.bos_id, a.cfg.bos_id);
    CHECK_EQ_INT(b.cfg.n_stop, a.cfg.n_stop);
    for (int i = 0; i < a.cfg.n_stop && i < b.cfg.n_stop; i++) CHECK_EQ_INT(b.cfg.stop_ids[i], a.cfg.stop_ids[i]);
    check_vocab_equal(a.tok, b.tok);
    CHECK(b.chat_template && !strcmp(b.chat_template, BITNET_CHAT_TEMPLATE));
    printf("%s -> %s: bit-identical%s%s\n", fixture, out, note[0] ? "; " : "", note);
    model_free(&b);
    model_free(&a);

    /* The written file is the official layout. */
    GgufFile g;
    REQUIRE(gguf_open(&g, out, &err) == 0);
    CHECK_EQ_INT(g.version, 3);
    CHECK_EQ_INT(g.alignment, 32);
    GgufStr s;
    CHECK(gguf_get_str(&g, "general.architecture", &s, NULL) == 0 && str_is(s, "bitnet-b1.58"));
    CHECK(gguf_get_str(&g, "tokenizer.ggml.model", &s, NULL) == 0 && str_is(s, "gpt2"));
    CHECK(gguf_get_str(&g, "tokenizer.ggml.pre", &s, NULL) == 0 && str_is(s, "llama-bpe"));
    int64_t v;
    CHECK(gguf_get_int(&g, "general.file_type", &v, NULL) == 0 && v == 40);
    int64_t layers = 0;
    CHECK(gguf_get_int(&g, "bitnet-b1.58.block_count", &layers, NULL) == 0 && layers >= 1);
    int n_i2s = 0, n_f32 = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        n_i2s += g.tensors[i].type == GGML_I2_S;
        n_f32 += g.tensors[i].type == GGML_F32;
    }
    CHECK_EQ_INT(n_i2s, 7 * layers);
    CHECK_EQ_INT(n_f32, 4 * layers + 1);
    const GgufTensor *emb = gguf_find_tensor(&g, "token_embd.weight");
    CHECK(emb && emb->type == GGML_F16);
    const GgufTensor *outw = gguf_find_tensor(&g, "output.weight");
    if (!strcmp(fixture, "f16.gguf")) CHECK(outw && outw->type == GGML_F16); /* untied Q8_0 source */
    else CHECK(outw == NULL);                                                 /* tied */
    if (!strcmp(fixture, "i2s.gguf")) {
        /* I2_S blobs (codes + scale + padding) are byte-identical to gguf-py's original */
        GgufFile o;
        REQUIRE(gguf_open(&o, src, &err) == 0);
        int same = 0;
        for (uint64_t i = 0; i < o.n_tensors; i++) {
            char name[96];
            snprintf(name, sizeof name, "%.*s", (int)o.tensors[i].name.len, o.tensors[i].name.ptr);
            const GgufTensor *t = gguf_find_tensor(&g, name);
            REQUIRE(t);
            same += t->type == o.tensors[i].type && t->nbytes == o.tensors[i].nbytes &&
                    !memcmp(t->data, o.tensors[i].data, t->nbytes);
        }
        CHECK_EQ_INT(same, (int)o.n_tensors);
        gguf_close(&o);
    }
    gguf_close(&g);
    unlink(out);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bn-convert-XXXXXX");
    REQUIRE(mkdtemp(tmpdir));
    const char *names[] = {"i2s.gguf", "tq2_0.gguf", "tq1_0.gguf", "hf_packed", "hf_bf16", "f16.gguf",
                           "bitnet25.gguf"};
    for (int i = 0; i < 7; i++) round_trip(names[i]);

    Model m;
    Err err;
    REQUIRE(model_load(&m, FIXDIR "/i2s.gguf", NULL, &err) == 0);
    /* Bad directory: a clear message, nothing created. */
    CHECK(gguf_write_model(&m, "/nonexistent-dir-bn/x.gguf", NULL, 0, &err) == -1);
    CHECK(strstr(err.msg, "/nonexistent-dir-bn/x.gguf") && strstr(err.msg, "No such file"));
    /* A full disk (simulated with a file size limit): error, no OUT and no temporary left. */
    char out[512];
    snprintf(out, sizeof out, "%s/full.gguf", tmpdir);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {64 * 1024, 64 * 1024};
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &rl);
        Err e2;
        int rc = gguf_write_model(&m, out, NULL, 0, &e2);
        printf("full disk: %s\n", rc ? e2.msg : "(no error!)");
        fflush(stdout);
        _exit(rc == -1 && strstr(e2.msg, "write failed") ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ_INT(count_files(tmpdir), 0);
    model_free(&m);
    rmdir(tmpdir);
    return check_report("test_model_convert");
}
