/* Context length limits of the CPU backend, through infer_create:
 *   - a context the model was not trained for is capped at its trained length;
 *   - a very long context costs no memory until it is used (the KV cache, RoPE table and
 *     attention scratch are mapped, not cleared): the resident size grows by far less than the
 *     cache's size, and the tokens and logits are bit-identical to a short context's;
 *   - a context whose cache could never fit in memory is refused with a message that says so.
 * Behaviour only: no timing. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "infer/backend_cpu.h"
#include "infer/infer.h"
#include "infer/model.h"

/* Resident set size of this process in bytes (/proc/self/statm, second field). */
static double rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (!f) return -1;
    if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
    fclose(f);
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

enum { N_PROMPT = 9, N_GEN = 8 };

/* Prompt then greedy decode; the tokens picked and the last logits. */
static int run_greedy(const Model *m, int ctx, int32_t out[N_GEN], float *last_logits,
                      int *ctx_got) {
    InferOptions o = {.backend = BACKEND_CPU, .threads = 2, .ctx = ctx};
    Err err = {{0}};
    Infer *inf = infer_create(m, &o, &err);
    if (!inf) {
        fprintf(stderr, "infer_create(ctx %d): %s\n", ctx, err.msg);
        return -1;
    }
    *ctx_got = infer_ctx(inf);
    int32_t prompt[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) prompt[i] = 1000 + 37 * i;
    int rc = infer_eval(inf, prompt, N_PROMPT, 0, NULL, &err);
    for (int i = 0; rc == 0 && i < N_GEN; i++) {
        rc = infer_sample(inf, NULL, &out[i], &err);
        if (rc == 0) rc = infer_eval(inf, &out[i], 1, N_PROMPT + i, NULL, &err);
    }
    if (rc) fprintf(stderr, "eval (ctx %d): %s\n", ctx, err.msg);
    else memcpy(last_logits, infer_logits(inf), (size_t)m->cfg.vocab_size * sizeof(float));
    infer_destroy(inf);
    return rc;
}

int main(void) {
    const uint64_t avail = backend_cpu_mem_available();
    printf("memory available: %.1f GiB\n", (double)avail / 1073741824.0);
    CHECK(avail > 0); /* Linux: /proc/meminfo has MemAvailable */

    ModelConfig c = model_config_tiny();
    const int vocab = c.vocab_size;
    float *la = malloc((size_t)vocab * sizeof(float)), *lb = malloc((size_t)vocab * sizeof(float));
    REQUIRE(la && lb);

    /* 1. trained for 64 positions: a request for 100000 gets 64 */
    c.ctx_len = 64;
    Model m;
    Err err = {{0}};
    REQUIRE(model_init_random(&m, &c, 5, &err) == 0);
    int32_t ta[N_GEN], tb[N_GEN];
    int got = 0;
    CHECK(run_greedy(&m, 100000, ta, la, &got) == 0);
    CHECK_EQ_INT(got, 64);
    model_free(&m);

    /* 2. trained for 4M positions (the KV cache alone is 1 GiB at f16): creating it and
     * decoding a few tokens must not touch the whole cache */
    c.ctx_len = 1 << 22;
    REQUIRE(model_init_random(&m, &c, 5, &err) == 0);
    CHECK(run_greedy(&m, 32, ta, la, &got) == 0);
    CHECK_EQ_INT(got, 32);
    const double kv = 2.0 * c.n_layers * (double)c.ctx_len * c.n_kv_heads * c.head_dim * 2;
    if (avail > 2 * kv) {
        const double rss0 = rss_bytes();
        CHECK(run_greedy(&m, 0, tb, lb, &got) == 0);
        const double grew = rss_bytes() - rss0;
        printf("ctx %d: KV cache %.0f MiB, resident size grew %.1f MiB\n", got, kv / 1048576.0,
               grew / 1048576.0);
        CHECK_EQ_INT(got, 1 << 22);
        CHECK_MSG(grew < kv / 8, "resident size grew %.0f MiB for a %.0f MiB cache",
                  grew / 1048576.0, kv / 1048576.0);
        CHECK(memcmp(ta, tb, sizeof ta) == 0);
        CHECK(memcmp(la, lb, (size_t)vocab * sizeof(float)) == 0);
    } else {
        printf("skipped the 4M-position run: %.1f GiB free\n", (double)avail / 1073741824.0);
    }
    model_free(&m);

    /* 3. trained for 2^30 positions (a 256 GiB cache): refused, saying why */
    c.ctx_len = 1 << 30;
    REQUIRE(model_init_random(&m, &c, 5, &err) == 0);
    InferOptions o = {.backend = BACKEND_CPU, .threads = 1, .ctx = 0};
    Err e2 = {{0}};
    Infer *inf = infer_create(&m, &o, &e2);
    CHECK(inf == NULL);
    printf("refused: %s\n", e2.msg);
    CHECK(strstr(e2.msg, "1073741824-token context") != NULL);
    CHECK(strstr(e2.msg, "use a smaller --ctx") != NULL);
    infer_destroy(inf);
    /* the same model with a context that fits works */
    o.ctx = 128;
    inf = infer_create(&m, &o, &e2);
    CHECK(inf != NULL);
    if (inf) CHECK_EQ_INT(infer_ctx(inf), 128);
    infer_destroy(inf);
    model_free(&m);

    free(la);
    free(lb);
    return check_report("test_backend_cpu_ctx");
}
