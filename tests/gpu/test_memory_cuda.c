/* The CUDA backend's account of its device memory (infer_memory, printed by bench) against what
 * it allocates: on a random model with the 2B model's layer shapes (fewer layers, a smaller
 * vocabulary, ctx 4096), each part the shapes fix equals its size computed here, the prefill
 * scratch holds its buffers with qkv + attention output sharing one region with gate/up's output
 * (and no more than that), and the sum of the parts is what cudaMemGetInfo saw the backend take
 * (creation, a two-chunk prefill, decode steps greedy and sampled: every graph kind), within the
 * allocator's 2 MiB rounding of its one allocation. Skips (77) without a CUDA device. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "infer/sampler.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/w2a8.h"

enum { PREFILL_T = 512, CTX = 4096 };

static const InferMemPart *part(const InferMemPart *p, int n, const char *prefix) {
    for (int i = 0; i < n; i++)
        if (!strncmp(p[i].what, prefix, strlen(prefix))) return &p[i];
    return NULL;
}

/* A prompt over two prefill chunks, then greedy and default-sampled decode steps. */
static int workload(Infer *inf, int vocab, Err *err) {
    int32_t toks[700];
    for (int i = 0; i < 700; i++) toks[i] = (int32_t)((i * 7919u + 13u) % (unsigned)vocab);
    SamplerParams greedy = sampler_params_default(), deflt = sampler_params_default();
    greedy.temperature = 0.0f;
    greedy.repeat_penalty = 1.0f;
    Sampler *sg = sampler_create(&greedy, vocab), *sd = sampler_create(&deflt, vocab);
    int rc = !sg || !sd || infer_eval(inf, toks, 700, 0, NULL, err);
    int32_t tok = 1;
    for (int s = 0; s < 8 && !rc; s++) {
        Sampler *smp = s < 4 ? sg : sd;
        rc = infer_sample(inf, smp, &tok, err) || infer_eval(inf, &tok, 1, 700 + s, NULL, err);
    }
    if (!rc) rc = infer_sample(inf, sd, &tok, err);
    sampler_free(sg);
    sampler_free(sd);
    return rc;
}

int main(void) {
    if (kcuda_device_count() <= 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    ModelConfig c = model_config_bitnet_2b();
    c.n_layers = 3;
    c.vocab_size = 32000;
    Model m;
    Err err = {{0}};
    REQUIRE(model_init_random(&m, &c, 7, &err) == 0);
    const InferOptions o = {.backend = BACKEND_CUDA, .ctx = CTX};
    /* a first backend through the same work: the context's stack reserve grows to the largest
     * frame launched and the kernels' modules load, neither of which is the backend's */
    Infer *warm = infer_create(&m, &o, &err);
    REQUIRE(warm != NULL);
    REQUIRE(workload(warm, c.vocab_size, &err) == 0);
    infer_destroy(warm);

    const size_t mem0 = kcuda_mem_used();
    Infer *inf = infer_create(&m, &o, &err);
    REQUIRE(inf != NULL);
    REQUIRE(workload(inf, c.vocab_size, &err) == 0);
    const size_t mem1 = kcuda_mem_used();
    InferMemPart p[INFER_MEM_PARTS_MAX];
    const int n = infer_memory(inf, p, INFER_MEM_PARTS_MAX);
    size_t sum = 0;
    for (int i = 0; i < n; i++) {
        printf("  %-52s %10.3f MiB\n", p[i].what, p[i].bytes / 1048576.0);
        sum += p[i].bytes;
    }
    const double taken = (double)mem1 - (double)mem0;
    printf("sum %.3f MiB; cudaMemGetInfo: %.3f MiB more than before the backend\n", sum / 1048576.0, taken / 1048576.0);

    /* the parts the shapes fix */
    const int dim = c.dim, hd = c.head_dim, q = c.n_heads * hd, kv = c.n_kv_heads * hd, ffn = c.ffn_dim;
    const size_t kd = (size_t)i2s_round_up_k(dim), kf = (size_t)i2s_round_up_k(ffn), ko = (size_t)i2s_round_up_k(q);
    const size_t tern = (size_t)c.n_layers * (((size_t)q + 2 * kv + 2 * ffn) * kd / 4 + (size_t)dim * ko / 4 + (size_t)dim * kf / 4);
    const InferMemPart *w = part(p, n, "ternary weights"), *e = part(p, n, "embedding = lm_head"),
                       *s8 = part(p, n, "int8 lm_head screen"), *k = part(p, n, "KV cache"),
                       *pre = part(p, n, "scratch: prefill"), *g = part(p, n, "CUDA graphs");
    REQUIRE(w && e && s8 && k && pre && g);
    CHECK(w->bytes == tern);
    CHECK(e->bytes == (size_t)c.vocab_size * dim * 2);
    /* the int8 rows, then one f32 scale and one bound constant per row, each 256-byte aligned */
    CHECK(s8->bytes == (size_t)c.vocab_size * dim + 2 * (((size_t)c.vocab_size * 4 + 255) / 256 * 256));
    CHECK(k->bytes == (size_t)c.n_layers * 2 * kv * CTX * 2);
    /* prefill: the hidden rows, one region for qkv + attention output or gate/up's output, the
     * int8 rows, three per-row values, each 256-byte aligned; the unaliased layout was
     * 4 * (dim + qkv + q + ffn) bytes a row */
    const size_t qa = (size_t)q + q + 2 * kv, region = qa > (size_t)ffn ? qa : (size_t)ffn;
    const size_t maxk = kf > kd ? (kf > ko ? kf : ko) : (kd > ko ? kd : ko);
    const size_t want = (size_t)PREFILL_T * (4 * ((size_t)dim + region) + maxk) + 3 * (size_t)PREFILL_T * 4;
    CHECK_MSG(pre->bytes == want, "prefill scratch %zu bytes, the plan %zu", pre->bytes, want);
    CHECK(pre->bytes < (size_t)PREFILL_T * 4 * ((size_t)dim + q + 2 * kv + q + ffn));
    printf("graphs: %.3f MiB (%s)\n", g->bytes / 1048576.0, g->what);
    /* everything the backend took is in the account, and nothing more: the allocator rounds its
     * one allocation up to 2 MiB pages */
    const double slack = 4.0 * 1048576;
    CHECK_MSG(taken >= (double)sum - 2.0 * 1048576 && taken <= (double)sum + slack,
              "cudaMemGetInfo %.3f MiB, the account %.3f MiB", taken / 1048576.0, sum / 1048576.0);
    infer_destroy(inf);
    model_free(&m);
    return check_report("test_memory_cuda");
}
