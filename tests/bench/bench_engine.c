/* Engine overhead (not a test): decode speed through the engine thread (submit -> EV_TOKEN
 * events -> EV_DONE, as the UI and -p see it) against a plain loop of infer_eval + infer_sample +
 * sampler_accept on the same model in the same run, fixed token count.
 * Usage: bench_engine [--backend cpu|cuda] [--sampling greedy|default] [--model FILE]
 *                     TOKENIZER_JSON [n_tokens] [dim] [layers]
 * Without --model: a random synthetic model (dim, layers). "default" is the chat's default
 * sampler with a fixed seed; greedy is --temp 0 --repeat-penalty 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/engine.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "test_util.h"

static int usage(void) {
    fprintf(stderr, "usage: bench_engine [--backend cpu|cuda] [--sampling greedy|default] [--model FILE] "
                    "TOKENIZER_JSON [n_tokens] [dim] [layers]\n");
    return 2;
}

/* The decode as a plain loop on its own Infer: n_tok steps of infer_sample + sampler_accept +
 * infer_eval after one token at position 0. Returns tok/s, or -1 (err set). */
static double plain_loop(const Model *m, const InferOptions *io, const SamplerParams *sp, int n_tok, char *desc,
                         int desc_cap, Err *err) {
    Infer *inf = infer_create(m, io, err);
    Sampler *s = inf ? sampler_create(sp, m->cfg.vocab_size) : NULL;
    double rate = -1;
    if (!inf || !s) goto out;
    infer_describe(inf, desc, desc_cap);
    int32_t tok = m->cfg.vocab_size > 128000 ? 128000 : 1;
    if (infer_eval(inf, &tok, 1, 0, NULL, err) < 0) goto out;
    const double t0 = now_s();
    for (int i = 0; i < n_tok; i++) {
        if (infer_sample(inf, s, &tok, err) < 0) goto out;
        sampler_accept(s, tok);
        if (infer_eval(inf, &tok, 1, i + 1, NULL, err) < 0) goto out;
    }
    rate = n_tok / (now_s() - t0);
out:
    sampler_free(s);
    infer_destroy(inf);
    return rate;
}

int main(int argc, char **argv) {
    BackendKind backend = BACKEND_CPU;
    int greedy = 1;
    const char *model_path = NULL;
    int a = 1;
    for (; a + 1 < argc && !strncmp(argv[a], "--", 2); a += 2) {
        if (!strcmp(argv[a], "--backend") && (!strcmp(argv[a + 1], "cpu") || !strcmp(argv[a + 1], "cuda")))
            backend = !strcmp(argv[a + 1], "cuda") ? BACKEND_CUDA : BACKEND_CPU;
        else if (!strcmp(argv[a], "--sampling") && (!strcmp(argv[a + 1], "greedy") || !strcmp(argv[a + 1], "default")))
            greedy = !strcmp(argv[a + 1], "greedy");
        else if (!strcmp(argv[a], "--model"))
            model_path = argv[a + 1];
        else
            return usage();
    }
    argc -= a - 1, argv += a - 1;
    if (argc < 2) return usage();
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
    InferOptions io = {.backend = backend, .threads = 0, .ctx = 0};
    SamplerParams sp = sampler_params_default();
    sp.seed = 42;
    if (greedy) sp.temperature = 0, sp.repeat_penalty = 1;
    sp.max_tokens = n_tok;

    /* baseline: the same decode as a plain loop, before and after the engine's run (their mean
     * cancels a slow drift of the machine) */
    Model m;
    Err err = {{0}};
    if (model_path ? model_load(&m, model_path, NULL, &err) < 0 : model_init_random(&m, &c, 1, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (model_path) c = m.cfg;
    io.ctx = n_tok + 64 < c.ctx_len ? n_tok + 64 : c.ctx_len;
    char desc[160] = "";
    const double before = plain_loop(&m, &io, &sp, n_tok, desc, sizeof desc, &err);
    if (before < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

    /* through the engine */
    EngineOptions eo = {.model_path = NULL, .infer = io};
    Engine *e = engine_create(&eo, &err);
    if (!e) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    uint64_t id = model_path ? engine_load(e, model_path) : engine_load_synthetic(e, &c, 1, argv[1]);
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
    const double after = plain_loop(&m, &io, &sp, n_tok, desc, sizeof desc, &err);
    model_free(&m);
    if (after < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const double base = (before + after) / 2;
    printf("engine overhead: %s model dim %d, %d layers, vocab %d, %s, %s sampling, %d tokens\n",
           model_path ? model_path : "random", c.dim, c.n_layers, c.vocab_size, desc, greedy ? "greedy" : "default",
           n_tok);
    printf("plain loop (infer_eval + infer_sample + sampler_accept): %.1f tok/s (%.1f before, %.1f after the engine)\n",
           base, before, after);
    printf("through the engine (EV_DONE gen_tok_s): %.1f tok/s = %.3fx the plain loop "
           "(%d token events, stop %s)\n",
           st.gen_tok_s, st.gen_tok_s / base, events, stop_reason_name(why));
    return 0;
}
