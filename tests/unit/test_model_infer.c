/* Every fixture form, once loaded, runs through the CPU backend: the Model the loader builds
 * (in-place I2_S, converted buffers, padded rows, bf16/f16 embeddings, untied lm_head) is one
 * the forward pass accepts, and the logits are finite. A converted copy gives identical logits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "infer/gguf_write.h"
#include "infer/infer.h"
#include "infer/model.h"

#define FIXDIR BN_TEST_DATA "/models"

static float *run(const Model *m, const int32_t *toks, int n) {
    InferOptions o = {.backend = BACKEND_CPU, .threads = 1, .ctx = 64, .lm_head_int8 = 0};
    Err err = {{0}};
    Infer *inf = infer_create(m, &o, &err);
    CHECK_MSG(inf != NULL, "%s", err.msg);
    if (!inf) return NULL;
    float *out = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    int rc = infer_eval(inf, toks, n, 0, NULL, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) memcpy(out, infer_logits(inf), sizeof(float) * (size_t)m->cfg.vocab_size);
    infer_destroy(inf);
    return rc == 0 ? out : (free(out), NULL);
}

int main(void) {
    const char *names[] = {"i2s.gguf", "tq2_0.gguf", "tq1_0.gguf", "f16.gguf", "hf_packed", "hf_bf16"};
    const int32_t toks[5] = {300, 39, 68, 75, 75};
    float *ref_i2s = NULL;
    for (int i = 0; i < 6; i++) {
        char p[512];
        snprintf(p, sizeof p, FIXDIR "/%s", names[i]);
        Model m;
        Err err;
        REQUIRE(model_load(&m, p, NULL, &err) == 0);
        float *lg = run(&m, toks, 5);
        if (lg) {
            int finite = 1;
            double mx = 0;
            for (int v = 0; v < m.cfg.vocab_size; v++) {
                finite &= isfinite(lg[v]) != 0;
                mx = fmax(mx, fabs(lg[v]));
            }
            CHECK_MSG(finite && mx > 0, "%s logits finite and nonzero", names[i]);
            printf("%s: logits ok (max |logit| %.3f)\n", names[i], mx);
            /* the converted GGUF computes exactly the same logits */
            char out[256];
            snprintf(out, sizeof out, "/tmp/bn-model-infer-%d.gguf", (int)getpid());
            Model c;
            REQUIRE(gguf_write_model(&m, out, NULL, 0, &err) == 0);
            REQUIRE(model_load(&c, out, NULL, &err) == 0);
            float *lc = run(&c, toks, 5);
            CHECK(lc && !memcmp(lg, lc, sizeof(float) * (size_t)m.cfg.vocab_size));
            free(lc);
            model_free(&c);
            unlink(out);
            if (i == 0) {
                ref_i2s = lg;
            } else if (!strcmp(names[i], "hf_packed")) {
                /* the same ternary model packed the Hugging Face way: only the rounding of gamma
                 * (bf16 vs f32) and of the embedding (bf16 vs f16) differ, so the logits agree
                 * closely; a wrong packing order or an inverted weight_scale would not */
                double md = 0, mref = 0;
                for (int v = 0; v < m.cfg.vocab_size; v++) {
                    md = fmax(md, fabs(lg[v] - ref_i2s[v]));
                    mref = fmax(mref, fabs(ref_i2s[v]));
                }
                printf("hf_packed vs i2s.gguf: max |diff| %.4f of max |logit| %.3f\n", md, mref);
                CHECK(md < 0.03 * mref);
                free(lg);
            } else {
                free(lg);
            }
        }
        model_free(&m);
    }
    free(ref_i2s);
    return check_report("test_model_infer");
}
