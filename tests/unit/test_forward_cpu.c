/* The CPU backend's fast forward pass (batched prefill, AVX2/AVX-512 kernels, 1..3 threads)
 * against the plain scalar reference forward (forward_ref.c), on random models with ragged
 * shapes (dims not multiples of 128, head_dim 40, vocab 333, both RoPE pairings) and an
 * HF-like shape, with f16 and f32 KV caches.
 *
 * Tolerance: the ternary dot products are exact in both; RMSNorm, attention, RoPE, the int8
 * quantization and the KV cache rounding are bit-identical by construction (the reference fixes
 * the fp32 summation order, kernels_cpu.h). Only the lm_head differs: the reference sums in
 * double, the fast path in fp32 FMA lanes, so logits agree to ~1e-7 of their range (measured
 * 1.4e-7). The test allows 1e-5 x max(1, max |logit|) and requires identical greedy tokens. A
 * larger difference means a real bug: one flipped int8 rounding anywhere moves logits by ~1%.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "forward_ref.h"
#include "infer/backend_cpu.h"
#include "infer/infer.h"
#include "kernels/cpu/kernels_cpu.h"

enum { PROMPT = 20, GEN = 24 };

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static double max_abs(const float *x, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double max_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static double worst_rel = 0;

static void run_config(const char *name, const ModelConfig *cfg, int ctx) {
    Model m;
    Err err = {{0}};
    REQUIRE(model_init_random(&m, cfg, 7, &err) == 0);
    const int V = cfg->vocab_size, total = PROMPT + GEN;
    int32_t prompt[PROMPT];
    for (int i = 0; i < PROMPT; i++) prompt[i] = (i * 37 + 11) % V;

    for (int kv_f16 = 0; kv_f16 < 2; kv_f16++) {
        /* reference: prompt, then greedy */
        float *ref_logits = malloc(sizeof(float) * (size_t)total * V);
        int32_t ref_tok[PROMPT + GEN + 1];
        memcpy(ref_tok, prompt, sizeof prompt);
        RefForward *rf = ref_forward_create(&m, ctx, kv_f16);
        for (int p = 0; p < total; p++) {
            ref_forward_step(rf, ref_tok[p], p, ref_logits + (size_t)p * V);
            if (p >= PROMPT - 1) ref_tok[p + 1] = argmax(ref_logits + (size_t)p * V, V);
        }
        ref_forward_free(rf);
        const double scale = fmax(1.0, max_abs(ref_logits, total * V));

        const int threads[] = {1, 2, 3};
        const int batches[] = {64, 7, 1};
        for (int ti = 0; ti < 3; ti++) {
            const int th = threads[ti], mb = batches[ti];
            InferOptions o = {.backend = BACKEND_CPU, .threads = th, .ctx = ctx, .lm_head_int8 = 0};
            CpuBackendOptions co = {.kv_f32 = !kv_f16, .max_batch = mb};
            void *b = backend_cpu_create_ex(&m, &o, &co, &err);
            REQUIRE(b != NULL);
            float *all = malloc(sizeof(float) * (size_t)PROMPT * V);
            CHECK_EQ_INT(backend_cpu_ops.eval(b, prompt, PROMPT, 0, all, &err), 0);
            double d = max_diff(all, ref_logits, PROMPT * V);
            CHECK_MSG(d <= 1e-5 * scale, "%s kv_f16=%d threads=%d batch=%d prompt: max diff %g (scale %g)",
                      name, kv_f16, th, mb, d, scale);
            worst_rel = fmax(worst_rel, d / scale);
            for (int p = 0; p < PROMPT; p++)
                CHECK_EQ_INT(argmax(all + (size_t)p * V, V), argmax(ref_logits + (size_t)p * V, V));
            CHECK(memcmp(backend_cpu_ops.logits(b), all + (size_t)(PROMPT - 1) * V, sizeof(float) * V) == 0);
            int32_t picked = -1;
            CHECK_EQ_INT(backend_cpu_ops.sample(b, NULL, &picked, &err), 1); /* greedy without a sampler */
            CHECK_EQ_INT(picked, argmax(all + (size_t)(PROMPT - 1) * V, V));
            /* greedy decode, one token at a time */
            int same = 1;
            int32_t tok = argmax(backend_cpu_ops.logits(b), V);
            for (int p = PROMPT; p < total; p++) {
                same &= tok == ref_tok[p];
                CHECK_EQ_INT(backend_cpu_ops.eval(b, &tok, 1, p, NULL, &err), 0);
                const float *lg = backend_cpu_ops.logits(b);
                d = max_diff(lg, ref_logits + (size_t)p * V, V);
                worst_rel = fmax(worst_rel, d / scale);
                CHECK_MSG(d <= 1e-5 * scale, "%s kv_f16=%d threads=%d decode pos %d: max diff %g",
                          name, kv_f16, th, p, d);
                tok = argmax(lg, V);
            }
            same &= tok == ref_tok[total];
            CHECK_MSG(same, "%s kv_f16=%d threads=%d: greedy tokens differ from the reference",
                      name, kv_f16, th);
            /* errors are reported, not computed */
            int32_t bad = V;
            CHECK_EQ_INT(backend_cpu_ops.eval(b, &bad, 1, total, NULL, &err), -1);
            CHECK(strstr(err.msg, "out of range") != NULL);
            tok = 0;
            CHECK_EQ_INT(backend_cpu_ops.eval(b, &tok, 1, ctx, NULL, &err), -1);
            CHECK(strstr(err.msg, "context") != NULL);
            free(all);
            backend_cpu_ops.destroy(b);
        }
        free(ref_logits);
    }

    /* the public API: infer_create picks the CPU, prefill in one call == step by step */
    InferOptions o = {.backend = BACKEND_AUTO, .threads = 2, .ctx = ctx, .lm_head_int8 = 0};
    Infer *inf = infer_create(&m, &o, &err);
    REQUIRE(inf != NULL);
    char desc[256];
    infer_describe(inf, desc, sizeof desc);
    printf("%s: %s\n", name, desc);
    CHECK_EQ_INT(infer_ctx(inf), ctx);
    CHECK_EQ_INT(infer_eval(inf, prompt, PROMPT, 0, NULL, &err), 0);
    float *last = malloc(sizeof(float) * V);
    memcpy(last, infer_logits(inf), sizeof(float) * V);
    for (int p = 0; p < PROMPT; p++) CHECK_EQ_INT(infer_eval(inf, &prompt[p], 1, p, NULL, &err), 0);
    CHECK_MSG(max_diff(last, infer_logits(inf), V) <= 1e-5 * fmax(1.0, max_abs(last, V)),
              "%s: batched prefill vs token-by-token", name);
    CHECK_EQ_INT(argmax(last, V), argmax(infer_logits(inf), V));
    int32_t tok0 = -1;
    CHECK_EQ_INT(infer_sample(inf, NULL, &tok0, &err), 0);
    CHECK_EQ_INT(tok0, argmax(infer_logits(inf), V));
    SamplerParams sp = sampler_params_default();
    sp.temperature = 0.0f; /* greedy through the host sampler */
    sp.repeat_penalty = 1.0f;
    Sampler *smp = sampler_create(&sp, V);
    REQUIRE(smp != NULL);
    CHECK_EQ_INT(infer_sample(inf, smp, &tok0, &err), 0);
    CHECK_EQ_INT(tok0, argmax(infer_logits(inf), V));
    sampler_free(smp);
    free(last);
    infer_destroy(inf);
    model_free(&m);
}

int main(void) {
    ModelConfig a = model_config_bitnet_2b();
    a.n_layers = 2, a.dim = 200, a.n_heads = 5, a.n_kv_heads = 1, a.head_dim = 40;
    a.ffn_dim = 300, a.vocab_size = 333, a.ctx_len = 64, a.rope_style = ROPE_ADJACENT;
    a.rope_theta = 10000.0f;
    run_config("ragged", &a, 64);

    ModelConfig b = model_config_bitnet_2b();
    b.n_layers = 3, b.dim = 256, b.n_heads = 4, b.n_kv_heads = 2, b.head_dim = 64;
    b.ffn_dim = 512, b.vocab_size = 400, b.ctx_len = 128;
    run_config("hf-like", &b, 128);

    /* a Llama-style block (Llama3-8B-1.58, Falcon3, Falcon-E): SiLU, no sub-norms, untied
     * lm_head, head_dim 256 as Falcon3 has it */
    ModelConfig c = model_config_bitnet_2b();
    c.n_layers = 2, c.dim = 192, c.n_heads = 3, c.n_kv_heads = 1, c.head_dim = 256;
    c.ffn_dim = 320, c.vocab_size = 350, c.ctx_len = 64, c.rope_theta = 1000042.0f;
    c.ffn_act = FFN_SILU, c.sub_norms = 0, c.tied = 0;
    run_config("llama-style", &c, 64);
    /* 1bitLLM: SiLU with both sub-norms, head_dim 100 (not a multiple of 8) */
    ModelConfig d = model_config_bitnet_2b();
    d.n_layers = 2, d.dim = 200, d.n_heads = 2, d.n_kv_heads = 2, d.head_dim = 100;
    d.ffn_dim = 270, d.vocab_size = 300, d.ctx_len = 64, d.rope_theta = 10000.0f;
    d.ffn_act = FFN_SILU;
    run_config("1bitllm-style", &d, 64);
    /* 1bitLLM-3B's FFN width itself, 8640 = 67.5 blocks of 128: down_proj's K padded to 8704 */
    d.n_layers = 1, d.ffn_dim = 8640;
    run_config("1bitllm-3b-ffn", &d, 64);

    /* the scalar kernels drive the same forward */
    cpu_isa_set(CPU_ISA_SCALAR);
    run_config("hf-like/scalar", &b, 128);
    cpu_isa_set(CPU_ISA_AVX512);
    printf("worst |logit diff| / max|logit|: %.3g\n", worst_rel);
    return check_report("test_forward_cpu");
}
