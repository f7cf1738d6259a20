/* The CPU backend's weight store (infer/cpu_weights.h) on the shipped demo model (a GGUF used
 * in place from its mmap): by default the file-mapped ternary matrices and lm_head are copied
 * onto huge pages; with weights_map they are read in place. Checked here:
 *   - both ways give bit-identical logits (prefill of 40 tokens, then 8 decode steps, 1 and 2
 *     threads), equal to those of the plain Infer API; with AVX-512 VNNI the default runs on
 *     the R16 repack of the ternary matrices, the mapped way on the file's I2_S rows;
 *   - the copy really happened (the backend's description says so, and the view's codes are
 *     outside the file mapping) when the kernel offers transparent huge pages, and the Model
 *     itself is left untouched (its codes still point into the mapping);
 *   - the int8 lm_head (InferOptions.lm_head_int8) gives, at every position, the logits of
 *     lm_head_i8_gemv_ref on the same final hidden state to fp32 rounding, with the bytes of
 *     lm_head_quant_i8_ref. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/backend_cpu.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "infer/model_storage.h"
#include "kernels/cpu/kernels_cpu.h"

enum { P = 40, G = 8 };

static int thp_available(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    char buf[128] = "";
    const int ok = fgets(buf, sizeof buf, f) && !strstr(buf, "[never]");
    fclose(f);
    return ok;
}

/* logits of P prompt tokens then G greedy steps, (P + G) * V floats */
static float *run(const Model *m, const InferOptions *o, const CpuBackendOptions *co, char *desc) {
    Err err = {{0}};
    void *b = backend_cpu_create_ex(m, o, co, &err);
    CHECK_MSG(b != NULL, "%s", err.msg);
    if (!b) return NULL;
    backend_cpu_ops.describe(b, desc, 256);
    const int V = m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * (size_t)V * (P + G));
    int32_t toks[P];
    for (int i = 0; i < P; i++) toks[i] = (int32_t)((i * 7919 + 13) % V);
    int rc = backend_cpu_ops.eval(b, toks, P, 0, out, &err);
    for (int s = 0; s < G && rc == 0; s++) {
        const float *lg = backend_cpu_ops.logits(b);
        int32_t t = 0;
        for (int i = 1; i < V; i++)
            if (lg[i] > lg[t]) t = i;
        rc = backend_cpu_ops.eval(b, &t, 1, P + s, NULL, &err);
        if (rc == 0) memcpy(out + (size_t)(P + s) * V, backend_cpu_ops.logits(b), sizeof(float) * (size_t)V);
    }
    CHECK_MSG(rc == 0, "%s", err.msg);
    backend_cpu_ops.destroy(b);
    if (rc) free(out);
    return rc ? NULL : out;
}

int main(void) {
    const char *root = getenv("BN_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/assets/bitnet-demo.gguf", root && *root ? root : BN_SOURCE_DIR);
    Model m;
    Err err = {{0}};
    REQUIRE(model_load(&m, path, NULL, &err) == 0);
    const int V = m.cfg.vocab_size;
    const size_t nl = (size_t)V * (P + G);
    REQUIRE(model_storage_is_mapped(&m, m.layers[0].wq.codes) && model_storage_is_mapped(&m, m.output.data));
    const uint8_t *codes0 = m.layers[0].wq.codes;
    const int thp = thp_available();
    for (int th = 1; th <= 2; th++) {
        InferOptions o = {.backend = BACKEND_CPU, .threads = th, .ctx = 64};
        CpuBackendOptions copy = {.kv_f32 = 0}, map = {.weights_map = 1};
        char dc[256], dm[256];
        float *a = run(&m, &o, &copy, dc), *b = run(&m, &o, &map, dm);
        REQUIRE(a && b);
        printf("threads %d: default \"%s\"; map \"%s\"\n", th, dc, dm);
        CHECK_MSG(!memcmp(a, b, sizeof(float) * nl), "copied and mapped weights give different logits");
        CHECK(!strstr(dm, "huge pages"));
        if (thp) CHECK_MSG(strstr(dc, "weights on huge pages") != NULL, "no huge-page copy: %s", dc);
        else printf("note: transparent huge pages are off here; the copy is skipped by design\n");
        /* with AVX-512 VNNI the default runs on the R16 repack, so the equality above checks
         * the R16 kernels against the I2_S ones through the whole model */
        if (cpu_isa_active() >= CPU_ISA_AVX512) CHECK_MSG(strstr(dc, "R16 layout") != NULL, "no R16 repack: %s", dc);
        else printf("note: no AVX-512 VNNI here; the R16 repack is skipped by design\n");
        CHECK(!strstr(dm, "R16"));
        CHECK(m.layers[0].wq.codes == codes0); /* the Model is never changed */
        /* the Infer API (the engine's path) computes the same */
        Infer *inf = infer_create(&m, &o, &err);
        REQUIRE(inf);
        int32_t toks[P];
        for (int i = 0; i < P; i++) toks[i] = (int32_t)((i * 7919 + 13) % V);
        float *c = malloc(sizeof(float) * (size_t)V * P);
        REQUIRE(c && infer_eval(inf, toks, P, 0, c, &err) == 0);
        CHECK(!memcmp(a, c, sizeof(float) * (size_t)V * P));
        char di[320];
        infer_describe(inf, di, sizeof di);
        if (thp) CHECK_MSG(strstr(di, "huge pages") != NULL, "infer_create did not copy: %s", di);
        infer_destroy(inf);
        /* InferOptions.weights_map (the command line's --mmap) reaches the backend */
        InferOptions om = o;
        om.weights_map = 1;
        inf = infer_create(&m, &om, &err);
        REQUIRE(inf);
        infer_describe(inf, di, sizeof di);
        CHECK_MSG(strstr(di, "huge pages") == NULL, "weights_map ignored: %s", di);
        infer_destroy(inf);
        free(c);

        /* int8 lm_head: every position against the same model whose lm_head is the reference
         * int8 table expanded to f32 (q * scale), run on the dense f32 path */
        InferOptions o8 = {.backend = BACKEND_CPU, .threads = th, .ctx = 64, .lm_head_int8 = 1};
        char d8[256];
        float *q8 = run(&m, &o8, &copy, d8);
        REQUIRE(q8);
        CHECK(strstr(d8, "int8 lm_head") != NULL);
        const int D = m.cfg.dim;
        int8_t *q = malloc((size_t)V * D);
        float *sc = malloc(sizeof(float) * (size_t)V), *deq = malloc(sizeof(float) * (size_t)V * D);
        REQUIRE(q && sc && deq);
        lm_head_quant_i8_ref(m.output.type == FT_F16 ? CPU_DENSE_F16 : m.output.type == FT_BF16 ? CPU_DENSE_BF16 : CPU_DENSE_F32,
                             m.output.data, V, D, q, sc);
        for (size_t i = 0; i < (size_t)V * D; i++) deq[i] = (float)q[i] * sc[i / (size_t)D];
        Model mq = m;
        mq.output = (DenseMatrix){FT_F32, V, D, deq};
        float *r8 = run(&mq, &o, &map, dm);
        REQUIRE(r8);
        double worst = 0;
        int same = 0;
        for (int t = 0; t < P + G; t++) {
            const float *x = r8 + (size_t)t * V, *y = q8 + (size_t)t * V;
            double mx = 0, d = 0;
            int ax = 0, ay = 0;
            for (int i = 0; i < V; i++) {
                mx = fmax(mx, fabs(x[i]));
                d = fmax(d, fabs((double)x[i] - y[i]));
                if (x[i] > x[ax]) ax = i;
                if (y[i] > y[ay]) ay = i;
            }
            worst = fmax(worst, d / (mx > 0 ? mx : 1));
            same += ax == ay;
        }
        printf("threads %d: int8 lm_head vs reference table: max |diff| / max |logit| %.2e, top-1 equal %d / %d\n",
               th, worst, same, P + G);
        CHECK(worst < 1e-5);
        CHECK(same == P + G);
        free(q), free(sc), free(deq), free(q8), free(r8), free(a), free(b);
    }
    model_free(&m);
    return check_report("test_cpu_weights");
}
