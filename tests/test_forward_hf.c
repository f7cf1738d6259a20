/* The CPU forward pass against Hugging Face transformers' own BitNet model.
 *
 * Fixture (tests/data/hf_ref, made by make_hf_reference.py there): a tiny random BitNet
 * (hidden 256, 2 layers, 4/2 heads, head_dim 64, ffn 288, tied embeddings, vocab 320) saved as
 * an HF directory with bf16 master weights and online quantization, plus transformers' float32
 * logits for 4 prompts and its 32-token greedy continuations. The model is loaded here through
 * model_load (the HF-directory loader: absmean ternarization at load) and run by the CPU
 * backend, in batches of 16 so prompts cross batch boundaries.
 *
 * Checks: top-1 identical at every prompt position, every logit within the tolerance below, and
 * the 32-token greedy continuations identical (f32 and f16 KV caches).
 *
 * Tolerance, and why it is not 1e-6: transformers fake-quantizes in float (x_q / s times
 * t * gamma summed by a float matmul; RMSNorm with rsqrt; softmax and RoPE by torch), while we
 * compute exact int32 dots and rescale once. Both round x * s to int8 identically, but their
 * float inputs differ in the last bits, so now and then one activation lands on the other side
 * of a .5 and becomes a different int8 value; that moves a linear's output by about
 * gamma * max|x| / 127 and the change propagates. Logits therefore agree to ~1e-6 relative
 * where no such flip happened and to ~1e-2 of the logit range where one did. The test allows
 * 3% of the prompt's largest |logit|, and reports the measured maximum. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/backend_cpu.h"
#include "infer/infer.h"

/* weak: until the HF loader is in the build the test reports a visible skip */
extern int model_load(Model *m, const char *path, const ModelLoadOptions *opt, Err *err)
    __attribute__((weak));

enum { MAX_PROMPTS = 8, MAX_LEN = 128, GEN = 32 };

typedef struct {
    int n_prompts, vocab;
    int len[MAX_PROMPTS], prompt[MAX_PROMPTS][MAX_LEN];
    int n_gen[MAX_PROMPTS], gen[MAX_PROMPTS][GEN];
    float absmax[MAX_PROMPTS];
    float *logits; /* all prompts' positions, concatenated */
} Reference;

static int read_ints(char *p, int *out, int max) {
    int n = 0;
    char *end;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p || n >= max) break;
        out[n++] = (int)v;
        p = end;
    }
    return n;
}

static int load_reference(Reference *r, const char *dir) {
    char path[1024], line[8192];
    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, "%s/reference.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        int i, n, off;
        if (sscanf(line, "vocab %d", &r->vocab) == 1) continue;
        if (sscanf(line, "prompts %d", &r->n_prompts) == 1) continue;
        if (sscanf(line, "prompt %d %d %n", &i, &n, &off) == 2 && i >= 0 && i < MAX_PROMPTS)
            r->len[i] = read_ints(line + off, r->prompt[i], MAX_LEN);
        else if (sscanf(line, "greedy %d %d %n", &i, &n, &off) == 2 && i >= 0 && i < MAX_PROMPTS)
            r->n_gen[i] = read_ints(line + off, r->gen[i], GEN);
        else if (sscanf(line, "logit_absmax %d %n", &i, &off) == 1 && i >= 0 && i < MAX_PROMPTS)
            r->absmax[i] = strtof(line + off, NULL);
    }
    fclose(f);
    if (r->n_prompts <= 0 || r->n_prompts > MAX_PROMPTS || r->vocab <= 0) return -1;
    size_t total = 0;
    for (int i = 0; i < r->n_prompts; i++) total += (size_t)r->len[i];
    r->logits = malloc(total * (size_t)r->vocab * sizeof(float));
    snprintf(path, sizeof path, "%s/logits.f32", dir);
    f = fopen(path, "rb");
    if (!f) return -1;
    const size_t got = fread(r->logits, sizeof(float), total * (size_t)r->vocab, f);
    fclose(f);
    return got == total * (size_t)r->vocab ? 0 : -1;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int main(void) {
    const char *dir = BN_TEST_DATA "/hf_ref";
    Reference ref;
    REQUIRE(load_reference(&ref, dir) == 0);
    if (!model_load) SKIP("model_load (the HF loader) is not in this build yet");
    Model m;
    Err err = {{0}};
    char mdir[1024];
    snprintf(mdir, sizeof mdir, "%s/model", dir);
    if (model_load(&m, mdir, NULL, &err) != 0) {
        fprintf(stderr, "model_load(%s): %s\n", mdir, err.msg);
        REQUIRE(!"the HF fixture loads");
    }
    REQUIRE(m.cfg.vocab_size == ref.vocab);
    const int V = ref.vocab;
    double worst = 0, worst_rel = 0;
    int flipped_positions = 0, positions = 0;

    for (int kv_f32 = 1; kv_f32 >= 0; kv_f32--) {
        InferOptions o = {BACKEND_CPU, 2, 256};
        CpuBackendOptions co = {kv_f32, 16};
        void *b = backend_cpu_create_ex(&m, &o, &co, &err);
        REQUIRE(b != NULL);
        size_t off = 0;
        for (int i = 0; i < ref.n_prompts; i++) {
            const int n = ref.len[i];
            float *all = malloc(sizeof(float) * (size_t)n * V);
            int32_t toks[MAX_LEN + GEN];
            for (int t = 0; t < n; t++) toks[t] = ref.prompt[i][t];
            CHECK_EQ_INT(backend_cpu_ops.eval(b, toks, n, 0, all, &err), 0);
            const float *hf = ref.logits + off * V;
            const double tol = 0.03 * ref.absmax[i];
            for (int t = 0; t < n; t++) {
                double d = 0;
                for (int v = 0; v < V; v++) d = fmax(d, fabs((double)all[(size_t)t * V + v] - hf[(size_t)t * V + v]));
                worst = fmax(worst, d);
                worst_rel = fmax(worst_rel, d / ref.absmax[i]);
                positions++;
                flipped_positions += d > 1e-4 * ref.absmax[i];
                CHECK_MSG(d <= tol, "prompt %d pos %d kv_f32=%d: max |logit diff| %g > %g", i, t, kv_f32, d, tol);
                CHECK_MSG(argmax(all + (size_t)t * V, V) == argmax(hf + (size_t)t * V, V),
                          "prompt %d pos %d kv_f32=%d: top-1 %d vs transformers %d", i, t, kv_f32,
                          argmax(all + (size_t)t * V, V), argmax(hf + (size_t)t * V, V));
            }
            /* greedy continuation, one token at a time */
            int first_diff = -1;
            int32_t tok = argmax(backend_cpu_ops.logits(b), V);
            for (int g = 0; g < ref.n_gen[i]; g++) {
                if (tok != ref.gen[i][g] && first_diff < 0) first_diff = g;
                CHECK_EQ_INT(backend_cpu_ops.eval(b, &tok, 1, n + g, NULL, &err), 0);
                tok = argmax(backend_cpu_ops.logits(b), V);
            }
            CHECK_MSG(first_diff < 0, "prompt %d kv_f32=%d: greedy continuation differs from transformers at step %d",
                      i, kv_f32, first_diff);
            off += (size_t)n;
            free(all);
        }
        backend_cpu_ops.destroy(b);
    }
    printf("vs transformers: max |logit diff| %.4g (%.3g of the logit range), %d of %d positions "
           "beyond 1e-4 relative\n", worst, worst_rel, flipped_positions, positions);
    model_free(&m);
    free(ref.logits);
    return check_report("test_forward_hf");
}
