/* Perplexity: the chunked, batched scoring (app/perplexity.c) against a plain token-by-token
 * evaluation of the same chunks on a small random model, plus the per-token NLL on hand-made
 * logits. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app/perplexity.h"
#include "check.h"
#include "infer/infer.h"
#include "infer/model.h"

static void test_nll(void) {
    float flat[4] = {0, 0, 0, 0};
    CHECK_NEAR(perplexity_token_nll(flat, 4, 2), log(4.0), 1e-12);
    float l[3] = {(float)log(0.5), (float)log(0.3), (float)log(0.2)};
    CHECK_NEAR(perplexity_token_nll(l, 3, 1), -log(0.3), 1e-6);
    float big[2] = {1000.0f, 990.0f}; /* no overflow */
    CHECK_NEAR(perplexity_token_nll(big, 2, 0), log1p(exp(-10.0)), 1e-9);
}

int main(void) {
    test_nll();
    ModelConfig c = model_config_tiny(); /* with a small vocabulary and context */
    c.vocab_size = 300;
    c.ctx_len = 64;
    c.bos_id = 1;
    c.n_stop = 0;
    Model m;
    Err err = {{0}};
    REQUIRE(model_init_random(&m, &c, 77, &err) == 0);
    const int n_ctx = 32;
    InferOptions o = {.backend = BACKEND_CPU, .threads = 1, .ctx = n_ctx};
    Infer *inf = infer_create(&m, &o, &err);
    REQUIRE(inf);
    const size_t n_tok = 3 * (size_t)n_ctx + 7; /* the tail that is not a whole chunk is unused */
    int32_t tokens[3 * 32 + 7];
    uint64_t x = 5;
    for (size_t i = 0; i < n_tok; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((x >> 33) % (uint64_t)c.vocab_size);
    }
    tokens[0] = 1;
    int32_t saved[3 * 32 + 7];
    memcpy(saved, tokens, sizeof tokens);

    PplResult r;
    REQUIRE(perplexity_run(inf, c.vocab_size, tokens, n_tok, n_ctx, 1, NULL, NULL, &r, &err) == 0);
    CHECK(memcmp(saved, tokens, sizeof tokens) == 0);
    CHECK_EQ_INT(r.n_chunks, 3);
    CHECK_EQ_INT(r.n_scored, 3 * (n_ctx - 1 - n_ctx / 2));

    /* the plain way: one token at a time, BOS at the start of every chunk */
    double nll = 0;
    long count = 0;
    for (int ch = 0; ch < 3; ch++) {
        for (int j = 0; j < n_ctx - 1; j++) {
            int32_t t = j == 0 ? 1 : tokens[ch * n_ctx + j];
            REQUIRE(infer_eval(inf, &t, 1, j, NULL, &err) == 0);
            if (j >= n_ctx / 2) {
                nll += perplexity_token_nll(infer_logits(inf), c.vocab_size, tokens[ch * n_ctx + j + 1]);
                count++;
            }
        }
    }
    CHECK_EQ_INT(count, r.n_scored);
    double mean = nll / (double)count;
    CHECK_MSG(fabs(mean - r.mean_nll) <= 1e-3 * fabs(mean), "batched %.6f, one by one %.6f",
              r.mean_nll, mean);
    CHECK_NEAR(r.ppl, exp(r.mean_nll), 1e-9 * r.ppl);
    CHECK(r.ppl_stderr > 0);

    /* too few tokens, too small a context */
    CHECK(perplexity_run(inf, c.vocab_size, tokens, n_ctx - 1, n_ctx, 1, NULL, NULL, &r, &err) < 0);
    CHECK(perplexity_run(inf, c.vocab_size, tokens, n_tok, 4, 1, NULL, NULL, &r, &err) < 0);
    CHECK(perplexity_run(inf, c.vocab_size, tokens, n_tok, 64, 1, NULL, NULL, &r, &err) < 0);
    infer_destroy(inf);
    model_free(&m);
    return check_report("test_perplexity");
}
