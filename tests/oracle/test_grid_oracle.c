/* The grid oracle: bitnet-chat's engine against Hugging Face transformers' BitNetForCausalLM on
 * random models over GQA 1-5, head_dim 64/128, rope theta 1e4/5e5, contexts 64-256, 2-4 layers,
 * bf16-master (online) and packed (offline, autobitlinear and bitlinear) checkpoints.
 *
 * Fixtures: tests/data/grid/gN, made by tests/oracle/make_grid.py (the GRID table there): each an
 * HF folder loaded here through model_load, and base.kl, transformers' float32 logits for random
 * tokens in the format of app/perplexity.h. Each model is scored by perplexity_run_kl (the
 * code behind `bitnet-chat perplexity --kl-divergence`) on the CPU backend.
 *
 * Checks, with the KV cache in f32 (the reference is float32 throughout):
 *   - perplexity within 0.5% of transformers';
 *   - top-1 agreement at least 99.5% over the positions that are not near-ties
 *     (PPL_KL_NEAR_TIE: transformers' own top two within 1% of its largest |logit|);
 *   - mean KL divergence under 1e-3 nats.
 * With the default f16 cache: perplexity within 0.5% and mean KL under 1e-3.
 * And on every grid model, 32 greedy tokens after a 16-token prompt are identical between the
 * scalar reference forward pass (tests/helpers/forward_ref.c) and the fast CPU backend, f32 and f16
 * caches alike, up to the first step where the reference's own top two are a near-tie.
 * Built with -DGRID_CUDA (test_grid_oracle_cuda, label gpu; skips without a device) the same
 * runs use the CUDA backend (f16 cache only): the f16 checks against transformers, and greedy
 * tokens identical to the scalar reference with an f16 cache.
 * Measured (README "Agreement with transformers"): all-position top-1 97.6-100% with f32, every
 * mismatch at a transformers top-2 gap under 0.71% of the range; mean KL 3e-7 to 1.9e-4.
 * Why near-ties may differ: both engines round x * 127/max|x| to int8 the same way, but the
 * float inputs of that rounding differ in their last bits (summation order), so now and then
 * one activation lies on the other side of a .5; that moves logits by 1-4% of their range from
 * there on. transformers differs from itself by as much when one of its own sums is reordered
 * (weight_scale folded into the weights or applied after the matmul: mean KL 4e-5). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/perplexity.h"
#include "check.h"
#include "forward_ref.h"
#include "infer/infer.h"
#include "infer/model.h"
#ifdef GRID_CUDA
#include "kernels/cuda/kernels_cuda.h"
#define GRID_BACKEND BACKEND_CUDA
#define GRID_NAME "test_grid_oracle_cuda"
#else
#define GRID_BACKEND BACKEND_CPU
#define GRID_NAME "test_grid_oracle"
#endif

static int run_one(const char *dir, int kv_f32) {
    char model_dir[1024], base_path[1100];
    snprintf(model_dir, sizeof model_dir, "%s", dir);
    snprintf(base_path, sizeof base_path, "%s/base.kl", dir);
    Model m;
    Err err = {{0}};
    if (model_load(&m, model_dir, NULL, &err)) {
        CHECK_MSG(0, "model_load(%s): %s", model_dir, err.msg);
        return -1;
    }
    PplKlBase base;
    if (ppl_kl_base_open(&base, base_path, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        model_free(&m);
        return -1;
    }
    InferOptions o = {.backend = GRID_BACKEND, .threads = 2, .ctx = base.n_ctx, .kv_f32 = kv_f32};
    Infer *inf = infer_create(&m, &o, &err);
    REQUIRE(inf);
    PplKl kl = {NULL, &base};
    PplResult r;
    PplKlResult k;
    int rc = perplexity_run_kl(inf, m.cfg.vocab_size, base.tokens,
                               (size_t)base.n_chunks * (size_t)base.n_ctx, base.n_ctx, -1, &kl, NULL,
                               NULL, &r, &k, &err);
    CHECK_MSG(rc == 0, "%s: %s", dir, err.msg);
    if (rc == 0) {
        const double dppl = r.ppl / k.base_ppl - 1.0;
        const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
        printf("%s KV %s: layers %d, heads %d/%d, head_dim %d, theta %g, ctx %d: PPL %.4f vs %.4f "
               "(%+.4f%%), mean KL %.3g, p99 KL %.3g, top-1 %.2f%% (%ld positions), without "
               "near-ties %.2f%% (%ld)\n", name, kv_f32 ? "f32" : "f16", m.cfg.n_layers,
               m.cfg.n_heads, m.cfg.n_kv_heads, m.cfg.head_dim, (double)m.cfg.rope_theta,
               base.n_ctx, r.ppl, k.base_ppl, 100 * dppl, k.kl_mean, k.kl_p99, 100 * k.top1, k.n,
               100 * k.top1_clear, k.n_clear);
        CHECK_MSG(fabs(dppl) <= 0.005, "%s KV %s: perplexity %+.3f%% off transformers'", name,
                  kv_f32 ? "f32" : "f16", 100 * dppl);
        CHECK_MSG(k.kl_mean < 1e-3, "%s KV %s: mean KL %g", name, kv_f32 ? "f32" : "f16", k.kl_mean);
        if (kv_f32) {
            CHECK_MSG(k.top1_clear >= 0.995, "%s: top-1 agreement %.2f%% without near-ties", name,
                      100 * k.top1_clear);
            CHECK_MSG(k.n_clear >= k.n * 8 / 10, "%s: %ld of %ld positions are near-ties", name,
                      k.n - k.n_clear, k.n);
        }
    }
    infer_destroy(inf);
    ppl_kl_base_close(&base);
    model_free(&m);
    return rc;
}

enum { PROMPT = 16, GREEDY = 32 };

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Greedy continuation of the first PROMPT tokens of the base file by the scalar reference and by
 * the fast CPU backend. */
static void greedy_same(const char *dir, int kv_f32) {
    char base_path[1100];
    snprintf(base_path, sizeof base_path, "%s/base.kl", dir);
    Model m;
    Err err = {{0}};
    PplKlBase base;
    if (model_load(&m, dir, NULL, &err)) return; /* reported by run_one */
    if (ppl_kl_base_open(&base, base_path, &err)) {
        model_free(&m);
        return;
    }
    const int V = m.cfg.vocab_size;
    float *lg = malloc((size_t)V * sizeof *lg);
    int32_t ref_toks[PROMPT + GREEDY], fast_toks[PROMPT + GREEDY];
    int ref_tie[PROMPT + GREEDY] = {0}; /* the reference's pick at that step was a near-tie */
    RefForward *rf = ref_forward_create(&m, PROMPT + GREEDY, !kv_f32);
    REQUIRE(rf && lg);
    for (int i = 0; i < PROMPT; i++) ref_toks[i] = fast_toks[i] = base.tokens[i];
    for (int i = 0; i < PROMPT + GREEDY - 1; i++) {
        ref_forward_step(rf, ref_toks[i], i, lg);
        if (i >= PROMPT - 1) ref_toks[i + 1] = argmax(lg, V), ref_tie[i + 1] = ppl_near_tie(lg, V);
    }
    ref_forward_free(rf);
    InferOptions o = {.backend = GRID_BACKEND, .threads = 2, .ctx = PROMPT + GREEDY, .kv_f32 = kv_f32};
    Infer *inf = infer_create(&m, &o, &err);
    REQUIRE(inf);
    int rc = infer_eval(inf, fast_toks, PROMPT, 0, NULL, &err); /* prefill in one batch */
    for (int i = PROMPT; rc == 0 && i < PROMPT + GREEDY; i++) {
        fast_toks[i] = argmax(infer_logits(inf), V);
        if (i + 1 < PROMPT + GREEDY) rc = infer_eval(inf, &fast_toks[i], 1, i, NULL, &err);
    }
    CHECK_MSG(rc == 0, "%s: %s", dir, err.msg);
    int first_diff = -1;
    for (int i = PROMPT; i < PROMPT + GREEDY && first_diff < 0; i++)
        if (ref_toks[i] != fast_toks[i]) first_diff = i - PROMPT;
    /* Identical up to the first near-tie of the reference; there the two may part (the top
     * two closer than 1% of the largest |logit|: the last-bit differences of the f16 cache and
     * the summation order decide it, as for the top-1 check above). g6 on the H100: step 24,
     * margin 0.0095 of a range of 8.6. */
    CHECK_MSG(first_diff < 0 || ref_tie[PROMPT + first_diff],
              "%s KV %s: greedy step %d: reference %d, %s backend %d (not a near-tie)", dir, kv_f32 ? "f32" : "f16",
              first_diff, ref_toks[PROMPT + first_diff], GRID_BACKEND == BACKEND_CUDA ? "CUDA" : "fast CPU",
              fast_toks[PROMPT + first_diff]);
    if (first_diff >= 0)
        printf("%s KV %s: greedy identical for %d steps, then parts at a near-tie of the reference\n", dir,
               kv_f32 ? "f32" : "f16", first_diff);
    infer_destroy(inf);
    free(lg);
    ppl_kl_base_close(&base);
    model_free(&m);
}

int main(void) {
#ifdef GRID_CUDA
    if (kcuda_device_count() <= 0) SKIP("no CUDA device");
    const int kv_first = 0; /* the CUDA backend keeps an f16 cache only */
#else
    const int kv_first = 1;
#endif
    const char *root = BN_TEST_DATA "/grid";
    DIR *d = opendir(root);
    REQUIRE(d);
    char names[32][64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 32)
        if (e->d_name[0] == 'g') snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    CHECK_MSG(n >= 7, "%d grid models in %s", n, root);
    for (int i = 0; i < n; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        for (int kv_f32 = kv_first; kv_f32 >= 0; kv_f32--) {
            run_one(dir, kv_f32);
            greedy_same(dir, kv_f32);
        }
    }
    return check_report(GRID_NAME);
}
