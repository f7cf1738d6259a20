/* Engine overhead (not a test): decode speed of a synthetic model through the engine thread
 * (submit -> EV_TOKEN events -> EV_DONE, as the UI sees it) against a plain loop of infer_eval +
 * infer_sample on the same model in the same run. Greedy, fixed token count, CPU backend.
 * Usage: bench_engine TOKENIZER_JSON [n_tokens] [dim] [layers] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/engine.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "test_util.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_engine TOKENIZER_JSON [n_tokens] [dim] [layers]\n");
        return 2;
    }
    int n_tok = argc > 2 ? atoi(argv[2]) : 200;
    ModelConfig c = model_config_tiny(); /* resized below */
    snprintf(c.name, sizeof c.name, "bench");
    c.dim = argc > 3 ? atoi(argv[3]) : 512;
    c.n_layers = argc > 4 ? atoi(argv[4]) : 4;
    c.n_heads = 8;
    c.n_kv_heads = 2;
    c.head_dim = c.dim / 8;
    c.ffn_dim = c.dim * 2;
    c.ctx_len = 2048;
    c.n_stop = 1;
    c.stop_ids[0] = 1 << 30; /* never: every run makes n_tok tokens */
    InferOptions io = {.backend = BACKEND_CPU, .threads = 0, .ctx = 0};
    SamplerParams sp = sampler_params_default();
    sp.temperature = 0;
    sp.repeat_penalty = 1;
    sp.max_tokens = n_tok;

    /* baseline: the same decode as a plain loop */
    Model m;
    Err err = {{0}};
    if (model_init_random(&m, &c, 1, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    Infer *inf = infer_create(&m, &io, &err);
    Sampler *s = sampler_create(&sp, c.vocab_size);
    if (!inf || !s) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char desc[160];
    infer_describe(inf, desc, sizeof desc);
    int32_t tok = 128000;
    infer_eval(inf, &tok, 1, 0, NULL, &err);
    double t0 = now_s();
    for (int i = 0; i < n_tok; i++) {
        if (infer_sample(inf, s, &tok, &err) < 0 || infer_eval(inf, &tok, 1, i + 1, NULL, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    }
    double base = n_tok / (now_s() - t0);
    sampler_free(s);
    infer_destroy(inf);
    model_free(&m);

    /* through the engine */
    EngineOptions eo = {.model_path = NULL, .infer = io};
    Engine *e = engine_create(&eo, &err);
    uint64_t id = engine_load_synthetic(e, &c, 1, argv[1]);
    EngineEvent ev[64];
    int loaded = 0;
    while (!loaded) {
        int n = engine_wait(e, ev, 64, -1);
        for (int i = 0; i < n; i++) {
            if (ev[i].req == id && ev[i].type == EV_LOAD_FAILED) {
                fprintf(stderr, "%s\n", ev[i].u.error.msg);
                return 1;
            }
            loaded |= ev[i].req == id && ev[i].type == EV_LOADED;
        }
    }
    ChatTurn t[] = {{ROLE_USER, "hi"}};
    id = engine_submit(e, t, 1, &sp);
    EngineStats st;
    memset(&st, 0, sizeof st);
    StopReason why = STOP_ERROR;
    int done = 0, events = 0;
    while (!done) {
        int n = engine_wait(e, ev, 64, -1);
        for (int i = 0; i < n; i++) {
            if (ev[i].req != id) continue;
            events += ev[i].type == EV_TOKEN;
            if (ev[i].type == EV_DONE) {
                st = ev[i].u.done.stats;
                why = ev[i].u.done.reason;
                done = 1;
            }
        }
    }
    engine_destroy(e);
    printf("engine overhead: random model dim %d, %d layers, vocab %d, %s, greedy, %d tokens\n",
           c.dim, c.n_layers, c.vocab_size, desc, n_tok);
    printf("plain loop (infer_eval + infer_sample): %.1f tok/s\n", base);
    printf("through the engine (EV_DONE gen_tok_s): %.1f tok/s = %.3fx the plain loop "
           "(%d token events, stop %s)\n",
           st.gen_tok_s, st.gen_tok_s / base, events, stop_reason_name(why));
    return 0;
}
