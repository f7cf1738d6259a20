/* `bitnet-chat bench [--backend cpu|cuda] [--quick] [--skip-kernels] [--profile]`: prints its
 * method, then
 *   (1) a kernel table: W2A8 GEMV latency for the 8 shapes of the seed benchmark, L2-cold, and
 *       on CUDA cuBLAS bf16 GEMV measured the same way, GB/s and % of copy bandwidth measured
 *       in the same run;
 *   (2) an end-to-end table for (prompt, generated) = (64,16), (64,64), (512,64) on a random
 *       model with the shapes of BitNet-b1.58-2B-4T: prefill ms, decode ms, decode tok/s; on CUDA
 *       the time to first token of 512-, 2000- and 4000-token prompts.
 * Every figure printed here is measured in this run; nothing is hard-coded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/modes.h"
#include "infer/backend_cpu.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "infer/sampler.h"
#include "kernels/cpu/kernels_cpu.h"
#include "kernels/w2a8.h"
#ifdef BITNET_HAVE_CUDA
#include "kernels/cuda/kernels_cuda.h"
#endif

enum { N_SHAPES = 8 };
static const int SHAPES[N_SHAPES][2] = {{2560, 2560}, {3840, 2560}, {13824, 2560}, {2560, 6912},
                                 {3200, 3200}, {4800, 3200}, {3200, 10240}, {20480, 3200}};
#ifdef BITNET_HAVE_CUDA
/* Microsoft's seed W2A8 kernel on an H100, same method (research/peers-h100.md, table A). */
static const double SEED_US[N_SHAPES] = {5.07, 5.39, 8.97, 10.51, 6.05, 6.18, 14.50, 13.09};
#endif

/* CPU read bandwidth measured by bench_cpu_kernels in this run (GB/s), for the % columns. */
static double g_cpu_bw;

/* Bytes one decode step reads from memory: every ternary matrix, the lm_head (int8 + scales or
 * as stored) and the norm weights; the KV cache (under 6 MB per token at these contexts) and the
 * embedding row are left out. */
static double decode_bytes(const Model *m, int lm_int8) {
    const ModelConfig *c = &m->cfg;
    double b = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m->layers[l];
        const TernaryMatrix *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) b += (double)ts[i]->n_out * (double)i2s_row_bytes(ts[i]->n_in_pad);
        b += 4.0 * (3.0 * c->dim + c->ffn_dim);
    }
    const double es = m->output.type == FT_F32 ? 4 : 2;
    b += lm_int8 ? (double)m->output.rows * m->output.cols + 4.0 * m->output.rows
                 : (double)m->output.rows * m->output.cols * es;
    return b + 4.0 * c->dim;
}

/* The same with the screened f16 lm_head (backend_cpu.c): the int8 table, its scales and bound
 * constants, and cand f16 rows computed exactly (the mean per token); the screen's scratch
 * (hi and logits, 8 bytes a row, written then read back from cache) is left out. */
static double decode_bytes_screened(const Model *m, double cand) {
    const double es = m->output.type == FT_F32 ? 4 : 2;
    return decode_bytes(m, 1) + 4.0 * m->output.rows + cand * m->output.cols * es;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t g_rng = 0x853c49e6748fea9bull;
static uint64_t rnd64(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return g_rng;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#ifdef BITNET_HAVE_CUDA
/* Device memory in use now (cudaMemGetInfo) beside mem0, what was in use before the backend was
 * made (the CUDA context): the backend's model + KV cache of ctx positions + scratch; then the
 * backend's own account of its allocations by kind (infer_memory), their sum, and what
 * cudaMemGetInfo saw beyond it (the allocator's rounding, the context's growth since mem0: its
 * stack reserve grows to the largest kernel frame launched). */
static void print_device_memory(Infer *inf, const char *when, int ctx, size_t mem0) {
    const size_t mem1 = kcuda_mem_used();
    printf("\nDevice memory in use (cudaMemGetInfo) %s, KV cache of %d positions: %.0f MiB, of\n"
           "which %.0f MiB were in use before the backend was made (CUDA context); model + KV cache + scratch: %.0f MiB.\n",
           when, ctx, mem1 / 1048576.0, mem0 / 1048576.0, (mem1 - mem0) / 1048576.0);
    InferMemPart parts[INFER_MEM_PARTS_MAX];
    const int n = infer_memory(inf, parts, INFER_MEM_PARTS_MAX);
    size_t sum = 0;
    for (int i = 0; i < n; i++) {
        printf("  %-52s %8.1f MiB\n", parts[i].what, parts[i].bytes / 1048576.0);
        sum += parts[i].bytes;
    }
    if (n)
        printf("  %-52s %8.1f MiB (cudaMemGetInfo beyond it since the context: %.1f MiB)\n", "the backend's allocations, sum",
               sum / 1048576.0, ((double)mem1 - (double)mem0 - (double)sum) / 1048576.0);
}
#endif

/* End-to-end through the infer API: prefill P tokens (infer_eval) + the first greedy pick
 * (infer_sample), then G-1 steps of infer_eval(1 token) + infer_sample. */
/* threads: --threads (0 = all cores; the command line has capped it at the CPU count) */
/* shapes: the model the random weights imitate, for the table's title */
/* profile: one short run of one row only (--profile: to run under a profiler) */
static int bench_e2e(BackendKind kind, const Model *m, const char *shapes, int quick, int threads, int lm_int8,
                     int profile) {
    InferOptions o = {.backend = kind, .threads = threads, .ctx = 1024, .lm_head_int8 = lm_int8};
    Err err = {{0}};
#ifdef BITNET_HAVE_CUDA
    if (kind == BACKEND_CUDA) kcuda_context_trim(); /* as the backend will: the context's own size */
    const size_t mem0 = kind == BACKEND_CUDA ? kcuda_mem_used() : 0;
#endif
    Infer *inf = infer_create(m, &o, &err);
    if (!inf) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    SamplerParams sp = sampler_params_default();
    sp.temperature = 0.0f;
    sp.repeat_penalty = 1.0f;
    Sampler *smp = sampler_create(&sp, m->cfg.vocab_size);
    char desc[320];
    infer_describe(inf, desc, sizeof desc);
    const int runs = profile ? 1 : kind == BACKEND_CPU ? 1 : quick ? 3 : 5;
    printf("\nEnd to end (%s), random model with %s shapes (model_init_random), batch 1,\n"
           "greedy, ctx 1024. Method: prefill = infer_eval(P tokens) + first infer_sample; decode = G-1 steps of\n"
           "infer_eval(1 token) + infer_sample; host clock around each phase; median of %d run(s)%s;\n"
           "tok/s = (G-1) / decode.\n",
           desc, shapes, runs, runs > 1 ? " after 1 warm-up" : "");
    const int cfgs[3][2] = {{64, profile ? 8 : 16}, {64, 64}, {512, 64}};
    const int cpu_cols = kind == BACKEND_CPU && g_cpu_bw > 0;
    /* the CPU backend screens its f16 head with an int8 copy when it can (backend_cpu.c): the
     * bytes of the screen, its few candidate rows (well under 1 MB a token) left out */
    const int cpu_screened = kind == BACKEND_CPU && !lm_int8 && strstr(desc, ", screened ");
    const double dbytes = cpu_screened ? decode_bytes_screened(m, 0) : decode_bytes(m, lm_int8);
    if (cpu_cols)
        printf("Decode GB/s = %.1f MB read per token (ternary matrices + lm_head%s + norms) x tok/s; %% of the\n"
               "read bandwidth measured above (%.1f GB/s).\n", dbytes / 1e6,
               cpu_screened ? " screened: int8 table, scales and bounds" : "", g_cpu_bw);
    printf("\n| prompt | gen | prefill ms | decode ms | decode tok/s | ms/token |%s\n|---:|---:|---:|---:|---:|---:|%s\n",
           cpu_cols ? " GB/s | % read BW |" : "", cpu_cols ? "---:|---:|" : "");
    int32_t *toks = malloc(sizeof(int32_t) * 512);
    for (int i = 0; i < 512; i++) toks[i] = (int32_t)(rnd64() % (uint64_t)m->cfg.vocab_size);
    int rc = !smp || !toks;
    for (int ci = 0; ci < (profile ? 1 : 3) && !rc; ci++) {
        const int P = cfgs[ci][0], G = cfgs[ci][1];
        double pre[8], dec[8];
        for (int r = runs > 1 ? 0 : 1; r <= runs && !rc; r++) {
            double t0 = now_s();
            int32_t tok = 0;
            if (infer_eval(inf, toks, P, 0, NULL, &err) || infer_sample(inf, smp, &tok, &err)) {
                rc = 1;
                break;
            }
            double t1 = now_s();
            for (int s = 1; s < G; s++)
                if (infer_eval(inf, &tok, 1, P + s - 1, NULL, &err) || infer_sample(inf, smp, &tok, &err)) {
                    rc = 1;
                    break;
                }
            double t2 = now_s();
            if (r > 0) pre[r - 1] = (t1 - t0) * 1e3, dec[r - 1] = (t2 - t1) * 1e3;
        }
        if (rc) break;
        qsort(pre, (size_t)runs, sizeof(double), cmp_double);
        qsort(dec, (size_t)runs, sizeof(double), cmp_double);
        const double pm = pre[runs / 2], dm = dec[runs / 2];
        printf("| %d | %d | %.2f | %.2f | %.1f | %.3f |", P, G, pm, dm, (G - 1) / (dm * 1e-3), dm / (G - 1));
        if (cpu_cols) {
            const double gbs = dbytes * (G - 1) / (dm * 1e-3) / 1e9;
            printf(" %.1f | %.0f%% |", gbs, 100.0 * gbs / g_cpu_bw);
        }
        printf("\n");
        fflush(stdout);
    }
    if (rc) fprintf(stderr, "bench: %s\n", err.msg[0] ? err.msg : "out of memory");
#ifdef BITNET_HAVE_CUDA
    if (kind == BACKEND_CUDA) {
        print_device_memory(inf, "with the model loaded", o.ctx, mem0);
    }
#endif
    free(toks);
    sampler_free(smp);
    infer_destroy(inf);
    return rc;
}

#ifdef BITNET_HAVE_CUDA
/* One timed decode through the engine API with sampler settings sp: the P-token prompt toks (its
 * ids into the penalty window) and the first pick, then G-1 steps of infer_eval(1 token) +
 * infer_sample, whose wall time goes to *seconds. Returns nonzero on failure (err set, or out of
 * memory with err empty). */
static int decode_timed(Infer *inf, const Model *m, const SamplerParams *sp, const int32_t *toks, int P, int G,
                        double *seconds, Err *err) {
    Sampler *smp = sampler_create(sp, m->cfg.vocab_size);
    int32_t tok = 0;
    for (int i = 0; i < P && smp; i++) sampler_accept(smp, toks[i]);
    int rc = !smp || infer_eval(inf, toks, P, 0, NULL, err) || infer_sample(inf, smp, &tok, err);
    const double t1 = now_s();
    for (int g = 1; g < G && !rc; g++) {
        sampler_accept(smp, tok);
        rc = infer_eval(inf, &tok, 1, P + g - 1, NULL, err) || infer_sample(inf, smp, &tok, err);
    }
    *seconds = now_s() - t1;
    sampler_free(smp);
    return rc;
}

/* The CUDA lm_head ways the lm_head table compares (InferOptions.lm_head_int8 / lm_head_full). */
enum { HEAD_SCREENED = 0, HEAD_INT8 = 1, HEAD_FULL = 2 };
/* Median decode tok/s of a P-token prompt + G generated (greedy) over `runs` runs after a warm-up,
 * with lm_head way `head` (HEAD_*); mem (may be NULL): device bytes the backend took
 * (cudaMemGetInfo after infer_create minus before). */
static double e2e_decode_tok_s_ex(const Model *m, int P, int G, int runs, int head, size_t *mem) {
    InferOptions o = {.backend = BACKEND_CUDA, .threads = 0, .ctx = 1024, .lm_head_int8 = head == HEAD_INT8,
                      .lm_head_full = head == HEAD_FULL};
    Err err = {{0}};
    kcuda_context_trim(); /* as the backend will, so the difference is the backend's own */
    const size_t mem0 = kcuda_mem_used();
    Infer *inf = infer_create(m, &o, &err);
    if (mem) *mem = inf ? kcuda_mem_used() - mem0 : 0;
    if (!inf) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    SamplerParams sp = sampler_params_default();
    sp.temperature = 0.0f;
    sp.repeat_penalty = 1.0f;
    Sampler *smp = sampler_create(&sp, m->cfg.vocab_size);
    int32_t toks[512];
    for (int i = 0; i < 512; i++) toks[i] = (int32_t)(rnd64() % (uint64_t)m->cfg.vocab_size);
    double dec[16];
    int rc = !smp || P > 512 || runs > 15;
    for (int r = 0; r <= runs && !rc; r++) {
        int32_t tok = 0;
        if (infer_eval(inf, toks, P, 0, NULL, &err) || infer_sample(inf, smp, &tok, &err)) {
            rc = 1;
            break;
        }
        const double t1 = now_s();
        for (int s = 1; s < G && !rc; s++)
            rc = infer_eval(inf, &tok, 1, P + s - 1, NULL, &err) || infer_sample(inf, smp, &tok, &err);
        dec[r] = now_s() - t1;
    }
    if (rc) fprintf(stderr, "bench: %s\n", err.msg[0] ? err.msg : "out of memory");
    sampler_free(smp);
    infer_destroy(inf);
    if (rc) return -1;
    qsort(dec + 1, (size_t)runs, sizeof(double), cmp_double);
    return (G - 1) / dec[1 + runs / 2];
}

/* Bytes one decode step at context `pos` must read at least: every ternary matrix, the lm_head
 * (f16 or int8 + row scales), one embedding row, and the K and V rows of positions 0..pos of
 * every layer (f16). */
static double decode_floor_bytes(const Model *m, int lm_int8, double pos) {
    const ModelConfig *c = &m->cfg;
    double b = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *w = &m->layers[l];
        const TernaryMatrix *t[7] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
        for (int i = 0; i < 7; i++) b += (double)t[i]->n_out * t[i]->n_in_pad / 4;
    }
    b += lm_int8 ? (double)c->vocab_size * c->dim + 4.0 * c->vocab_size : 2.0 * c->vocab_size * c->dim;
    b += 2.0 * c->dim;
    b += (pos + 1) * c->n_layers * 2.0 * c->n_kv_heads * c->head_dim * 2.0;
    return b;
}

/* Time to first token of long prompts (prefill in chunks of up to 512 tokens, then the first
 * greedy pick): infer_eval of P random tokens at position 0 + infer_sample, host clock, median of
 * `runs` runs after 1 warm-up, KV cache of 4096 positions. */
static void bench_ttft(const Model *m, int quick, int lm_int8) {
    static const int PS[3] = {512, 2000, 4000};
    const int runs = quick ? 3 : 5;
    InferOptions o = {.backend = BACKEND_CUDA, .threads = 0, .ctx = 4096, .lm_head_int8 = lm_int8};
    Err err = {{0}};
    const size_t mem0 = kcuda_mem_used();
    Infer *inf = infer_create(m, &o, &err);
    int32_t *toks = malloc(sizeof(int32_t) * 4096);
    SamplerParams sp = sampler_params_default();
    sp.temperature = 0.0f;
    sp.repeat_penalty = 1.0f;
    Sampler *smp = sampler_create(&sp, m->cfg.vocab_size);
    if (!inf || !toks || !smp) {
        fprintf(stderr, "bench: %s\n", inf ? "out of memory" : err.msg);
        infer_destroy(inf);
        free(toks);
        sampler_free(smp);
        return;
    }
    const int ctx = infer_ctx(inf); /* capped at the model's trained context */
    for (int i = 0; i < 4096; i++) toks[i] = (int32_t)(rnd64() % (uint64_t)m->cfg.vocab_size);
    printf("\nTime to first token (greedy, %s lm_head): infer_eval of a P-token random prompt at position 0\n"
           "(prefill in chunks of up to 512) + the first infer_sample; host clock; median of %d runs after 1\n"
           "warm-up; KV cache of %d positions.\n\n| prompt | TTFT ms | prompt tok/s |\n|---:|---:|---:|\n",
           lm_int8 ? "int8" : "f16", runs, ctx);
    for (int pi = 0; pi < 3; pi++) {
        const int P = PS[pi] < ctx ? PS[pi] : ctx - 1;
        double t[8];
        int rc = 0;
        for (int r = 0; r <= runs && !rc; r++) {
            int32_t tok = 0;
            const double t0 = now_s();
            rc = infer_eval(inf, toks, P, 0, NULL, &err) || infer_sample(inf, smp, &tok, &err);
            t[r] = now_s() - t0;
        }
        if (rc) {
            fprintf(stderr, "bench: %s\n", err.msg[0] ? err.msg : "out of memory");
            break;
        }
        qsort(t + 1, (size_t)runs, sizeof(double), cmp_double);
        const double ms = t[1 + runs / 2] * 1e3;
        printf("| %d | %.2f | %.0f |\n", P, ms, P / (ms * 1e-3));
        fflush(stdout);
    }
    /* the only backend alive: what a chat at the 2B model's full context holds on the device */
    print_device_memory(inf, "after these prompts", ctx, mem0);
    sampler_free(smp);
    infer_destroy(inf);
    free(toks);
}

/* Decode at contexts 64..4096 as a chat sees it: the engine API (infer_eval of one token +
 * infer_sample) with the default sampler and with greedy, after a prompt of C tokens (C - G for
 * the last row, so that its G steps end at the model's 4096 positions); % of the byte floor at
 * the copy bandwidth measured in this run, counting the K/V rows read at each step. */
static void bench_contexts(const Model *m, int quick, int lm_int8, double copy_gbs) {
    enum { G = 64 };
    static const int CTX[4] = {64, 512, 2048, 4096};
    const int runs = quick ? 3 : 5;
    /* the float head both ways, full and screened (the same tokens), one backend each */
    InferOptions o = {.backend = BACKEND_CUDA, .threads = 0, .ctx = 4096 + G, .lm_head_int8 = lm_int8};
    Err err = {{0}};
    Infer *way_inf[2] = {NULL, NULL};
    const int heads = lm_int8 ? 1 : 2;
    for (int h = 0; h < heads; h++) {
        o.lm_head_full = heads == 2 && h == 0;
        if (!(way_inf[h] = infer_create(m, &o, &err))) break;
    }
    Infer *inf = way_inf[heads - 1];
    int32_t *toks = malloc(sizeof(int32_t) * 4096);
    if (!way_inf[0] || !inf || !toks) {
        fprintf(stderr, "bench: %s\n", inf ? "out of memory" : err.msg);
        infer_destroy(way_inf[0]);
        if (heads == 2) infer_destroy(way_inf[1]);
        free(toks);
        return;
    }
    const int ctx = infer_ctx(inf); /* capped at the model's trained context */
    for (int i = 0; i < 4096; i++) toks[i] = (int32_t)(rnd64() % (uint64_t)m->cfg.vocab_size);
    const SamplerParams def = sampler_params_default();
    printf("\nDecode by context (%s lm_head, KV cache of %d positions): the engine API, infer_eval(1 token) +\n"
           "infer_sample, after a prompt of P random tokens (P = the context, less %d where the steps would pass the\n"
           "cache); %d tokens generated; median of %d runs after 1 warm-up. Default sampler = temperature %.1f,\n"
           "top-k %d, top-p %.2f, min-p %.2f, repetition penalty %.1f over %d (on the device); greedy = temperature\n"
           "0, no penalty. Byte floor = ternary weights + lm_head + the K/V rows read at the mean position\n"
           "(P + %d), at the copy bandwidth of this run (%.0f GB/s)%s.\n\n",
           lm_int8 ? "int8" : "f16", ctx, G, G, runs, def.temperature, def.top_k, def.top_p, def.min_p,
           def.repeat_penalty, def.repeat_last_n, G / 2, copy_gbs,
           lm_int8 ? ""
                   : "; the f16 head two ways, each row from its own backend in this run: full (every row each\n"
                     "token, InferOptions.lm_head_full) and screened (the default: int8 bounds, then the f16 rows that\n"
                     "can be sampled; the same tokens), the floor counted with the full f16 head for both");
    printf("| context | prompt | lm_head | greedy tok/s | default sampler tok/s | default / greedy | MB read per token | %% of byte floor (greedy) | %% of byte floor (default) |\n"
           "|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
    double full_tps[2] = {0, 0}; /* the full head's row at this context */
    for (int ci = 0; ci < 4; ci++) {
        const int C = CTX[ci], P = C + G <= ctx ? C : ctx - G;
        if (P < 1) continue;
        for (int h = 0; h < heads; h++) {
            inf = way_inf[h];
            double tps[2] = {0, 0};
            for (int way = 0; way < 2; way++) {
                SamplerParams sp = def;
                sp.seed = 42;
                if (way == 0) sp.temperature = 0.0f, sp.repeat_penalty = 1.0f;
                double dec[16];
                int rc = 0;
                for (int r = 0; r <= runs && !rc; r++) rc = decode_timed(inf, m, &sp, toks, P, G, &dec[r], &err);
                if (rc) {
                    fprintf(stderr, "bench: %s\n", err.msg[0] ? err.msg : "out of memory");
                    infer_destroy(way_inf[0]);
                    if (heads == 2) infer_destroy(way_inf[1]);
                    free(toks);
                    return;
                }
                qsort(dec + 1, (size_t)runs, sizeof(double), cmp_double);
                tps[way] = (G - 1) / dec[1 + runs / 2];
            }
            const double bytes = decode_floor_bytes(m, lm_int8, P + G / 2.0);
            printf("| %d | %d | %s | %.1f | %.1f | %.3f | %.0f | %.0f%% | %.0f%% |\n", C, P,
                   lm_int8 ? "int8" : h == 0 ? "f16 full" : "screened f16", tps[0], tps[1], tps[1] / tps[0], bytes / 1e6,
                   100.0 * bytes * tps[0] / (copy_gbs * 1e9), 100.0 * bytes * tps[1] / (copy_gbs * 1e9));
            if (heads == 2 && h == 0) full_tps[0] = tps[0], full_tps[1] = tps[1];
            if (heads == 2 && h == 1 && full_tps[0] > 0)
                printf("| %d | | screened / full | %.3f | %.3f | | | | |\n", C, tps[0] / full_tps[0], tps[1] / full_tps[1]);
            fflush(stdout);
        }
    }
    infer_destroy(way_inf[0]);
    if (heads == 2) infer_destroy(way_inf[1]);
    free(toks);
}

/* What each sampling setting costs per token on the device: decode through the engine API
 * (infer_eval of one token + infer_sample) after a 64-token prompt, G tokens, with greedy (the
 * decode graph's argmax), greedy with the repetition penalty (kcuda_sample_argmax), the default
 * sampler (top-k 40: kcuda_sample_topk), the defaults with top-k at the top-k kernel's cap and
 * one past it (kcuda_sample_sorted: the sort's cost with the same filters, the baseline of the
 * defaults' row) and top-p alone (the sort); the settings interleaved run by run, median per
 * setting. Sampling cost = ms/token minus greedy's ms/token in this run (which is the decode step
 * itself). On random weights the logits are flat: top-p alone keeps most of the vocabulary. */
static void bench_sampler_cost(const Model *m, int quick) {
    enum { P = 64, G = 128, NS = 6 };
    const int runs = quick ? 3 : 7;
    InferOptions o = {.backend = BACKEND_CUDA, .threads = 0, .ctx = 1024, .lm_head_int8 = 0};
    Err err = {{0}};
    Infer *way[2] = {infer_create(m, &o, &err), NULL}; /* decoding ahead (the default), plain */
    o.decode_plain = 1;
    if (way[0]) way[1] = infer_create(m, &o, &err);
    if (!way[0] || !way[1]) {
        fprintf(stderr, "bench: %s\n", err.msg);
        infer_destroy(way[0]);
        return;
    }
    int32_t toks[P];
    for (int i = 0; i < P; i++) toks[i] = (int32_t)(rnd64() % (uint64_t)m->cfg.vocab_size);
    const SamplerParams def = sampler_params_default();
    SamplerParams sp[NS];
    char cap_name[64], past_name[64];
    snprintf(cap_name, sizeof cap_name, "default sampler, top-k %d (top-k kernel)", KCUDA_SAMPLE_TOPK_MAX);
    snprintf(past_name, sizeof past_name, "default sampler, top-k %d (sort)", KCUDA_SAMPLE_TOPK_MAX + 1);
    const char *name[NS] = {"greedy (temperature 0, no penalty)", "greedy + repetition penalty",
                            "default sampler (top-k kernel)", cap_name, past_name, "top-p alone (sort)"};
    for (int k = 0; k < NS; k++) sp[k] = def, sp[k].seed = 42;
    sp[0].temperature = 0.0f, sp[0].repeat_penalty = 1.0f;
    sp[1].temperature = 0.0f;
    sp[3].top_k = KCUDA_SAMPLE_TOPK_MAX;
    sp[4].top_k = KCUDA_SAMPLE_TOPK_MAX + 1;
    sp[5].top_k = 0, sp[5].min_p = 0.0f, sp[5].repeat_penalty = 1.0f;
    printf("\nSampling cost per token on the device: decode %d tokens after a %d-token prompt through the engine API\n"
           "(infer_eval of one token + infer_sample), settings interleaved, median of %d runs after 1 warm-up.\n"
           "Cost = ms/token - greedy's ms/token (the decode step, argmax in its graph) in this run. Default sampler =\n"
           "temperature %.1f, top-k %d, top-p %.2f, min-p %.2f, penalty %.1f over %d; top-p alone = top-p %.2f at\n"
           "temperature %.1f (random weights give flat logits: its nucleus is most of the vocabulary). The device sampler\n"
           "runs kcuda_sample_argmax for greedy with a penalty, kcuda_sample_topk for top-k up to %d, else the sort.\n"
           "Plain = the same backend without decoding ahead (InferOptions.decode_plain: the host reads each token before\n"
           "the next step is launched), interleaved with it: the same tokens.\n\n",
           G, P, runs, def.temperature, def.top_k, def.top_p, def.min_p, def.repeat_penalty, def.repeat_last_n, def.top_p,
           def.temperature, KCUDA_SAMPLE_TOPK_MAX);
    double ms[2][NS][16];
    int rc = 0;
    for (int r = 0; r <= runs && !rc; r++)
        for (int k = 0; k < NS && !rc; k++)
            for (int w = 0; w < 2 && !rc; w++) {
                double sec = 0;
                rc = decode_timed(way[w], m, &sp[k], toks, P, G, &sec, &err);
                if (r > 0) ms[w][k][r - 1] = sec * 1e3 / (G - 1);
            }
    infer_destroy(way[0]);
    infer_destroy(way[1]);
    if (rc) {
        fprintf(stderr, "bench: %s\n", err.msg[0] ? err.msg : "out of memory");
        return;
    }
    double med[NS], plain[NS];
    for (int k = 0; k < NS; k++) {
        qsort(ms[0][k], (size_t)runs, sizeof(double), cmp_double);
        qsort(ms[1][k], (size_t)runs, sizeof(double), cmp_double);
        med[k] = ms[0][k][runs / 2];
        plain[k] = ms[1][k][runs / 2];
    }
    printf("| setting | tok/s | ms/token | sampling us/token | %% of the decode step | tok/s vs greedy | plain tok/s | ahead / plain |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < NS; k++)
        printf("| %s | %.1f | %.3f | %.1f | %.1f%% | %.3f | %.1f | %.3f |\n", name[k], 1e3 / med[k], med[k],
               (med[k] - med[0]) * 1e3, 100.0 * (med[k] - med[0]) / med[0], med[0] / med[k], 1e3 / plain[k],
               plain[k] / med[k]);
    printf("(sampling cost against the sort's with the same filters, top-k %d: the defaults %.2fx, top-k %d %.2fx)\n",
           KCUDA_SAMPLE_TOPK_MAX + 1, (med[2] - med[0]) / (med[4] - med[0]), KCUDA_SAMPLE_TOPK_MAX,
           (med[3] - med[0]) / (med[4] - med[0]));
    fflush(stdout);
}

/* The f16 and the int8 lm_head side by side in this run: the lm_head kernel alone at the 2B
 * shape, then decode 64/64 and 512/64 end to end and the backend's device memory, each way. */
static void bench_lm_head_compare(const Model *m, int quick) {
    const int V = m->cfg.vocab_size, D = m->cfg.dim, reps = quick ? 11 : 31, runs = quick ? 3 : 5;
    double us16 = 0, us8 = 0;
    int same = 0;
    KcudaScreenBench sb;
    printf("\nlm_head f16 vs int8 (--lm-head; int8 = per-row absmax scales made at load, fp32 activations,\n"
           "final RMSNorm and greedy argmax fused as in f16). Kernel: %d x %d, random weights, median of %d\n"
           "event-timed launches (the weights are far larger than L2). Decode: as in the end-to-end table,\n"
           "median of %d runs after 1 warm-up. Memory: device bytes the backend takes (ctx 1024); the\n"
           "embedding lookup keeps the f16 table (tied to the lm_head), so int8 adds its copy.\n\n",
           V, D, reps, runs);
    if (kcuda_bench_lm_head(V, D, reps, &us16, &us8, &same) || kcuda_bench_lm_head_screen(V, D, reps, &sb)) {
        fprintf(stderr, "bench lm_head: %s\n", kcuda_last_error());
        return;
    }
    /* v: f16 full, f16 screened, int8 (HEAD_*) */
    static const int head[3] = {HEAD_FULL, HEAD_SCREENED, HEAD_INT8};
    double t[3][2];
    size_t mem[3];
    for (int v = 0; v < 3; v++) {
        t[v][0] = e2e_decode_tok_s_ex(m, 64, 64, runs, head[v], &mem[v]);
        t[v][1] = e2e_decode_tok_s_ex(m, 512, 64, runs, head[v], NULL);
    }
    printf("Screened f16 (the default): the int8 copy gives every row an interval holding its exact f16 logit, then\n"
           "only the rows that can reach the sampler's m best are computed in f16 (the others -inf): the same tokens\n"
           "as the full head. Its kernel rows: screen + exact pass on the same random head with N(0, 0.02) weights\n"
           "and N(0, 1) activations with 1%% 20x outliers, a new vector each launch (%d screen warps); m = 1 is\n"
           "greedy, m = 104 the defaults (top-k 40 + 64 penalised ids); exact rows = mean / max per pass.\n"
           "Decode rows are greedy (m = 1).\n\n", sb.warps);
    printf("| lm_head | kernel us | GB/s | exact f16 rows | decode 64/64 tok/s | decode 512/64 tok/s | backend MiB |\n"
           "|---|---:|---:|---:|---:|---:|---:|\n");
    printf("| f16 full | %.1f | %.0f | %d | %.1f | %.1f | %.0f |\n", us16, (double)V * D * 2 / (us16 * 1e3), V, t[0][0],
           t[0][1], mem[0] / 1048576.0);
    for (int i = 0; i < 2; i++)
        printf("| screened f16, m = %d | %.1f | | %.0f / %d | %s | %s | %s |\n", sb.m[i], sb.us_screen[i],
               sb.rows_mean[i], sb.rows_max[i], i ? "" : "see below", i ? "" : "see below", i ? "" : "see below");
    printf("| screened f16 (decode, greedy) | | | | %.1f | %.1f | %.0f |\n", t[1][0], t[1][1], mem[1] / 1048576.0);
    printf("| int8 | %.1f | %.0f | | %.1f | %.1f | %.0f |\n", us8, ((double)V * D + V * 4.0) / (us8 * 1e3), t[2][0],
           t[2][1], mem[2] / 1048576.0);
    printf("| screened / full | %.2fx (m = 1), %.2fx (m = 104) time | | | %.3fx | %.3fx | %+.0f |\n",
           sb.us_screen[0] / sb.us_full, sb.us_screen[1] / sb.us_full, t[1][0] / t[0][0], t[1][1] / t[0][1],
           ((double)mem[1] - (double)mem[0]) / 1048576.0);
    printf("| int8 / f16 full | %.2fx time | | | %.3fx | %.3fx | %+.0f |\n", us8 / us16, t[2][0] / t[0][0],
           t[2][1] / t[0][1], ((double)mem[2] - (double)mem[0]) / 1048576.0);
    printf("(screened greedy picks %s the full head's on every bench vector; full f16 kernel in the screen bench:\n"
           "%.1f us)\n", sb.same ? "equal" : "DIFFER FROM", sb.us_full);
    printf("(random weights: top-1 of the two kernels %s on the bench input; agreement on real text:\n"
           "test_lm_head_int8 on the demo model, README GPU section)\n", same ? "agreed" : "differed");
}

#endif

/* CPU kernel table: the fast multithreaded W2A8 linear (kernels/cpu) on the 8 shapes, checked
 * exactly against w2a8_gemm_ref on sampled rows, timed over rotating weight buffers. */
static int bench_cpu_kernels(int quick, int threads) {
    const int nth = threads > 0 ? threads : cpu_num_cores();
    CpuPool *pool = cpu_pool_create(nth);
    const double bw = cpu_measure_read_bandwidth_gbs_threads(nth);
    g_cpu_bw = bw;
    printf("CPU: %s, %d thread%s; read bandwidth (same threads, buffer >> LLC): %.1f GB/s\n",
           cpu_isa_name(cpu_isa_active()), cpu_pool_threads(pool),
           cpu_pool_threads(pool) == 1 ? "" : "s", bw);
    printf("\nW2A8 linear (w2a8_linear_mt_ex), batch 1. Method: weights in rotating buffers (>= 256 MiB in all),\n"
           "each shape first checked exactly (int32) against w2a8_gemm_ref on 64 rows, then the mean of\n"
           "%d calls (cycling through the buffers). GB/s over packed weights + activations + outputs.\n",
           quick ? 20 : 60);
    printf("\n| N x K | us | GB/s | %% read BW |\n|---|---:|---:|---:|\n");
    int rc = 0;
    for (int i = 0; i < N_SHAPES && !rc; i++) {
        const int n = SHAPES[i][0], k = SHAPES[i][1];
        const size_t wb = (size_t)n * k / 4;
        int R = (int)((((size_t)256 << 20) + wb - 1) / wb);
        uint8_t *w = malloc(wb * (size_t)R);
        int8_t *q = malloc((size_t)k);
        float *out = malloc(sizeof(float) * (size_t)n), *x = malloc(sizeof(float) * (size_t)k);
        int32_t *acc = malloc(sizeof(int32_t) * (size_t)n), *ref = malloc(sizeof(int32_t) * 64);
        if (!w || !q || !out || !x || !acc || !ref) {
            fprintf(stderr, "bench: out of memory\n");
            rc = 1;
        } else {
            for (size_t b = 0; b < wb; b++) {
                const uint64_t r = rnd64();
                w[b] = (uint8_t)((r % 3) | ((r >> 8) % 3) << 2 | ((r >> 16) % 3) << 4 | ((r >> 24) % 3) << 6);
            }
            for (int r = 1; r < R; r++) memcpy(w + wb * (size_t)r, w, wb);
            for (int j = 0; j < k; j++) x[j] = (float)((int)(rnd64() % 2001) - 1000) / 100.0f;
            int32_t qsum = 0;
            const float s = quant_act_cpu(x, k, k, q, &qsum);
            const int r0 = (int)(rnd64() % (uint64_t)(n - 63));
            w2a8_gemm_ref(w + (size_t)r0 * (k / 4), 64, k, q, 1, ref, 64);
            w2a8_gemm_rows(w, k, q, &qsum, 1, r0, r0 + 64, acc, n);
            for (int r = 0; r < 64; r++)
                if (acc[r0 + r] != ref[r]) {
                    fprintf(stderr, "bench: CPU W2A8 %dx%d row %d: %d, reference %d\n", n, k, r0 + r, acc[r0 + r], ref[r]);
                    rc = 1;
                    break;
                }
            /* Time the path decode runs: the backend checks the codes once at load and then
             * uses the masked (no code 3) GEMV. */
            const int flags = i2s_codes_valid(w, wb) ? W2A8_CODES_VALID : 0;
            const int L = quick ? 20 : 60;
            double t0 = now_s();
            for (int it = 0; it < L && !rc; it++)
                w2a8_linear_mt_ex(pool, w + wb * (size_t)(it % R), n, k, 1.0f, q, &qsum, &s, 1, out,
                                  n, 0, flags);
            const double us = (now_s() - t0) / L * 1e6;
            const double gbs = ((double)wb + k + 4.0 * n) / (us * 1e-6) / 1e9;
            if (!rc) printf("| %dx%d | %.1f | %.1f | %.0f%% |\n", n, k, us, gbs, 100.0 * gbs / bw);
        }
        free(w), free(q), free(out), free(x), free(acc), free(ref);
    }
    cpu_pool_destroy(pool);
    return rc;
}

/* kB of a /proc/self/status line (VmRSS, VmHWM); 0 if unreadable. */
static double proc_status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double v = 0;
    const size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) v = atof(line + kl + 1);
    if (f) fclose(f);
    return v;
}

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The screened f16 lm_head against the whole head on one backend (backend_cpu_set_full_head
 * switches it), decode with greedy and with the default sampler, alternated rounds. */
static int bench_cpu_screen(const Model *m, const char *shapes, int quick, int threads) {
    enum { P = 64, G = 64, NS = 2 };
    const int rounds = quick ? 3 : 5, V = m->cfg.vocab_size;
    InferOptions o = {.backend = BACKEND_CPU, .threads = threads, .ctx = 1024};
    Err err = {{0}};
    void *b = backend_cpu_create_ex(m, &o, NULL, &err);
    if (!b) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    CpuScreenStats st0, st1;
    if (!backend_cpu_screen_stats(b, &st0)) {
        printf("\nScreened lm_head: not in use on this backend (memory short or no f16 head).\n");
        backend_cpu_ops.destroy(b);
        return 0;
    }
    printf("\nScreened f16 lm_head vs the whole head (random model with %s shapes, one backend, %d thread%s).\n"
           "Method: %d alternated rounds, each: for each sampler and each head (order rotated), eval of a %d-token\n"
           "prompt, then %d steps of eval(1 token) + pick (the backend's sample(), else the host sampler on\n"
           "logits(), as infer_sample); tok/s = %d / time of those steps, median. Defaults: temperature 0.7,\n"
           "top-k 40, top-p 0.95, min-p 0.05, penalty 1.1 over 64, seed 1. MB/token as decode_bytes (screened:\n"
           "the int8 table, scales, bounds and the candidate rows). Int8 table and bounds made at creation\n"
           "in %.2f s.\n",
           shapes, threads > 0 ? threads : cpu_num_cores(), (threads > 0 ? threads : cpu_num_cores()) == 1 ? "" : "s",
           rounds, P, G, G, st0.prep_s);
    int32_t *toks = malloc(sizeof(int32_t) * P);
    float *buf = malloc(sizeof(float) * (size_t)V);
    int rc = !toks || !buf;
    for (int i = 0; i < P && !rc; i++) toks[i] = (int32_t)(rnd64() % (uint64_t)V);
    double dec[NS][2][8];
    long cand[NS] = {0}, scr[NS] = {0};
    int cmax[NS] = {0};
    for (int r = 0; r < rounds && !rc; r++)
        for (int i = 0; i < 2 * NS && !rc; i++) {
            const int k = (i + r) % (2 * NS), si = k / 2, full = k % 2;
            SamplerParams sp = sampler_params_default();
            sp.seed = 1;
            if (si == 0) sp.temperature = 0.0f, sp.repeat_penalty = 1.0f;
            Sampler *smp = sampler_create(&sp, V);
            if (!smp) {
                rc = 1;
                break;
            }
            backend_cpu_set_full_head(b, full);
            rc = backend_cpu_ops.eval(b, toks, P, 0, NULL, &err);
            for (int j = 0; j < P; j++) sampler_accept(smp, toks[j]);
            backend_cpu_screen_stats(b, &st0);
            const double t0 = now_s();
            for (int g = 0; g < G && !rc; g++) {
                int32_t t = 0;
                const int sr = backend_cpu_ops.sample(b, smp, &t, &err);
                if (sr == 0) {
                    memcpy(buf, backend_cpu_ops.logits(b), sizeof(float) * (size_t)V);
                    t = sampler_sample(smp, buf, V);
                }
                rc = sr < 0 || t < 0;
                if (!full) { /* this token's candidates */
                    backend_cpu_screen_stats(b, &st1);
                    if (st1.cand_sum - st0.cand_sum > cmax[si]) cmax[si] = (int)(st1.cand_sum - st0.cand_sum);
                    cand[si] += st1.cand_sum - st0.cand_sum, scr[si] += st1.screened - st0.screened;
                    st0 = st1;
                }
                sampler_accept(smp, t);
                if (!rc) rc = backend_cpu_ops.eval(b, &t, 1, P + g, NULL, &err);
            }
            dec[si][full][r] = now_s() - t0;
            sampler_free(smp);
        }
    backend_cpu_set_full_head(b, 0);
    if (rc) fprintf(stderr, "bench: %s\n", err.msg[0] ? err.msg : "out of memory");
    if (!rc) {
        printf("\n| sampler | lm_head | decode tok/s | MB/token | GB/s | %% read BW | candidates mean / max | screened / whole (paired) |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|\n");
        for (int si = 0; si < NS; si++)
            for (int full = 0; full < 2; full++) {
                double d[8], rr[8];
                memcpy(d, dec[si][full], sizeof(double) * (size_t)rounds);
                qsort(d, (size_t)rounds, sizeof(double), cmp_double);
                for (int r = 0; r < rounds; r++) rr[r] = dec[si][1][r] / dec[si][0][r];
                qsort(rr, (size_t)rounds, sizeof(double), cmp_double);
                const double tps = G / d[rounds / 2], cm = scr[si] ? (double)cand[si] / scr[si] : 0;
                const double mb = (full ? decode_bytes(m, 0) : decode_bytes_screened(m, cm)) / 1e6;
                char cs[64] = "", rs[32] = "";
                if (!full) {
                    snprintf(cs, sizeof cs, "%.1f / %d (%ld of %d tokens)", cm, cmax[si], scr[si], rounds * G);
                    snprintf(rs, sizeof rs, "%.3f", rr[rounds / 2]);
                }
                printf("| %s | %s | %.1f | %.1f | %.1f | %.0f%% | %s | %s |\n", si ? "defaults" : "greedy",
                       full ? "whole f16" : "screened f16", tps, mb, mb * tps / 1e3,
                       g_cpu_bw > 0 ? 100.0 * mb * tps / 1e3 / g_cpu_bw : 0.0, cs, rs);
            }
    }
    free(toks), free(buf);
    backend_cpu_ops.destroy(b);
    return rc;
}

/* "On the real file": the model of --model loaded as the chat loads it, then the CPU backend
 * four ways side by side in alternated rounds: weights copied onto huge pages with the screened
 * f16 lm_head (the default; the f16 table stays in the mapping), the huge-page copy with the
 * whole f16 head read every token (InferOptions.lm_head_full; the table copied too), weights read
 * in place from the file mapping (no copy, so no screen either), and the huge-page copy with the
 * int8 lm_head. */
static int bench_cpu_file(const char *path, int quick, int threads) {
    enum { NV = 4, PP = 512, P0 = 16, TG = 64, V_SCREEN = 0, V_FULL = 1, V_MAP = 2, V_INT8 = 3 };
    const int rounds = quick ? 3 : 5;
    printf("\nOn the real file: %s\n", path);
    fflush(stdout);
    Model m;
    Err err = {{0}};
    double t0 = now_s();
    if (model_load(&m, path, NULL, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    const double load_s = now_s() - t0;
    static const char *names[NV] = {"huge-page copy, screened f16 lm_head (default)",
                                    "huge-page copy, whole f16 lm_head", "mapped in place (whole f16 lm_head)",
                                    "huge-page copy, int8 lm_head"};
    void *b[NV] = {0};
    double create_s[NV] = {0}, rss_mib[NV] = {0};
    int rc = 0;
    for (int v = 0; v < NV && !rc; v++) {
        InferOptions o = {.backend = BACKEND_CPU, .threads = threads, .ctx = 1024, .lm_head_int8 = v == V_INT8,
                          .lm_head_full = v == V_FULL};
        CpuBackendOptions co = {.weights_map = v == V_MAP};
        const double r0 = proc_status_kb("VmRSS:");
        t0 = now_s();
        b[v] = backend_cpu_create_ex(&m, &o, &co, &err);
        create_s[v] = now_s() - t0;
        rss_mib[v] = (proc_status_kb("VmRSS:") - r0) / 1024.0;
        if (!b[v]) fprintf(stderr, "bench: %s\n", err.msg), rc = 1;
    }
    const int V = m.cfg.vocab_size;
    CpuScreenStats st0 = {0}, st1 = {0};
    long cand = 0, screened = 0;
    int cand_max = 0;
    int32_t *toks = malloc(sizeof(int32_t) * PP);
    double pre[NV][8], dec[NV][8], dec_cpu[NV][8];
    rc |= !toks;
    for (int i = 0; i < PP && !rc; i++) toks[i] = (int32_t)(rnd64() % (uint64_t)V);
    char desc[NV][200];
    for (int v = 0; v < NV && !rc; v++) backend_cpu_ops.describe(b[v], desc[v], sizeof desc[v]);
    printf("Method: model_load once (%.2f s), then one backend per row (creation time: the copy, and\n"
           "for int8 and the screen the quantization); %d alternated rounds (order rotated each round), each\n"
           "row per round:\n"
           "prefill = eval of %d random tokens at position 0; decode = eval of a %d-token prompt, then %d\n"
           "steps of eval(1 token) + greedy pick (the backend's sample()), tok/s = %d / time of those steps.\n"
           "Medians; ratios paired within a round, then the median. RSS: growth of the process RSS while\n"
           "the backend was created. MB/token: bytes a decode step reads (decode_bytes; screened: the int8\n"
           "table, its scales and bounds, and the candidate f16 rows). With 1 thread (-t 1) all work runs on\n"
           "the timing thread, so decode is also given from its CPU time (CLOCK_THREAD_CPUTIME_ID), which\n"
           "other tenants of a shared machine disturb far less.\n",
           load_s, rounds, PP, P0, TG, TG);
    for (int r = 0; r < rounds && !rc; r++)
        for (int i = 0; i < NV && !rc; i++) {
            const int v = (i + r) % NV;
            double t1 = now_s();
            rc = backend_cpu_ops.eval(b[v], toks, PP, 0, NULL, &err);
            pre[v][r] = now_s() - t1;
            if (!rc) rc = backend_cpu_ops.eval(b[v], toks, P0, 0, NULL, &err);
            if (v == V_SCREEN) backend_cpu_screen_stats(b[v], &st0);
            t1 = now_s();
            const double c1 = thread_cpu_s();
            for (int s = 0; s < TG && !rc; s++) {
                int32_t t = 0;
                rc = backend_cpu_ops.sample(b[v], NULL, &t, &err) != 1;
                if (v == V_SCREEN) { /* this token's candidates */
                    backend_cpu_screen_stats(b[v], &st1);
                    if (st1.cand_sum - st0.cand_sum > cand_max) cand_max = (int)(st1.cand_sum - st0.cand_sum);
                    cand += st1.cand_sum - st0.cand_sum, screened += st1.screened - st0.screened;
                    st0 = st1;
                }
                if (!rc) rc = backend_cpu_ops.eval(b[v], &t, 1, P0 + s, NULL, &err);
            }
            dec[v][r] = now_s() - t1;
            dec_cpu[v][r] = thread_cpu_s() - c1;
        }
    if (rc) fprintf(stderr, "bench: %s\n", err.msg[0] ? err.msg : "out of memory");
    if (!rc) {
        if (threads == 1)
            for (int v = 0; v < NV; v++) {
                double d[8];
                memcpy(d, dec_cpu[v], sizeof(double) * (size_t)rounds);
                qsort(d, (size_t)rounds, sizeof(double), cmp_double);
                printf("%s: decode %.1f tok/s by thread CPU time\n", names[v], TG / d[rounds / 2]);
            }
        const double cmean = screened ? (double)cand / (double)screened : 0;
        printf("Screened lm_head: %ld of %d decode tokens screened, candidates per token mean %.1f, max %d "
               "(of %d rows); int8 table and bounds made in %.2f s at creation.\n",
               screened, rounds * TG, cmean, cand_max, V, st1.prep_s);
        printf("\n| weights | backend | create s | RSS +MiB | prefill %d tok/s | decode tok/s | MB/token | GB/s | %% read BW |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|\n", PP);
        double pm[NV], dm[NV];
        for (int v = 0; v < NV; v++) {
            double a[8], d[8];
            memcpy(a, pre[v], sizeof(double) * (size_t)rounds);
            memcpy(d, dec[v], sizeof(double) * (size_t)rounds);
            qsort(a, (size_t)rounds, sizeof(double), cmp_double);
            qsort(d, (size_t)rounds, sizeof(double), cmp_double);
            pm[v] = PP / a[rounds / 2], dm[v] = TG / d[rounds / 2];
            const double mb = (v == V_SCREEN ? decode_bytes_screened(&m, cmean) : decode_bytes(&m, v == V_INT8)) / 1e6;
            const double gbs = mb * dm[v] / 1e3;
            printf("| %s | %s | %.2f | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f%% |\n", names[v], desc[v], create_s[v],
                   rss_mib[v], pm[v], dm[v], mb, gbs, g_cpu_bw > 0 ? 100.0 * gbs / g_cpu_bw : 0.0);
        }
        /* (row, baseline): screened / whole head, copy / map (both whole), int8 / whole f16 */
        static const int pairs[3][2] = {{V_SCREEN, V_FULL}, {V_FULL, V_MAP}, {V_INT8, V_FULL}};
        static const char *pnames[3] = {"screened / whole f16 head", "copy / map", "int8 / whole f16 head"};
        for (int pi = 0; pi < 3; pi++) {
            const int v = pairs[pi][0], o = pairs[pi][1];
            double rp[8], rd[8];
            for (int r = 0; r < rounds; r++) rp[r] = pre[o][r] / pre[v][r], rd[r] = dec[o][r] / dec[v][r];
            qsort(rp, (size_t)rounds, sizeof(double), cmp_double);
            qsort(rd, (size_t)rounds, sizeof(double), cmp_double);
            printf("| ratio %s (paired) | | | | %.3f | %.3f | | | |\n", pnames[pi], rp[rounds / 2], rd[rounds / 2]);
            if (threads == 1) {
                for (int r = 0; r < rounds; r++) rd[r] = dec_cpu[o][r] / dec_cpu[v][r];
                qsort(rd, (size_t)rounds, sizeof(double), cmp_double);
                printf("| ratio %s, decode by thread CPU time (paired) | | | | | %.3f | | | |\n", pnames[pi],
                       rd[rounds / 2]);
            }
        }
        printf("Peak RSS of this process (all four backends and the load): %.0f MiB.\n",
               proc_status_kb("VmHWM:") / 1024.0);
    }
    for (int v = 0; v < NV; v++)
        if (b[v]) backend_cpu_ops.destroy(b[v]);
    free(toks);
    model_free(&m);
    return rc;
}

#ifdef BITNET_HAVE_CUDA
static int bench_cuda_kernels(int quick, double *copy_out) {
    char dev[200] = "?";
    kcuda_device_describe(dev, sizeof dev);
    printf("Device: %s\n", dev);
    const double copy = kcuda_copy_bandwidth_gbs((size_t)1 << 30, quick ? 5 : 15);
    printf("Copy bandwidth: cudaMemcpy device-to-device of 1 GiB, read + write bytes counted, median: %.0f GB/s\n",
           copy);
    *copy_out = copy;
    printf("\nW2A8 GEMV, batch 1. Method: weights in rotating buffers (>= 256 MiB in all, > 5x L2) so each\n"
           "launch reads its weights from HBM; max(100, buffers) launches captured in one CUDA graph; median\n"
           "replay time / launches. Four variants: int8 input (as the seed kernel takes it) and f32 input\n"
           "quantized inside the kernel (as decode uses it), each without and with programmatic dependent\n"
           "launch (PDL: the next launch's weight loads overlap this one). Each shape is first checked exactly\n"
           "(int32) against w2a8_gemv_ref on 256 rows. cuBLAS: bf16 GEMV (cublasGemmEx, fp32 compute; libcublas\n"
           "opened by bench only), same method. GB/s and %% of copy: int8 input with PDL, bytes = packed weights + activations + outputs.\n"
           "Seed = Microsoft BitNet gpu/ kernel (int8 input) on an H100, same method (research/peers-h100.md);\n"
           "seed / W2A8 uses the int8-input kernel with PDL.\n");
    KcudaGemvBench rows[N_SHAPES];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < N_SHAPES; i++) rows[i].n = SHAPES[i][0], rows[i].k = SHAPES[i][1];
    if (kcuda_bench_gemv(rows, N_SHAPES, quick)) {
        fprintf(stderr, "bench: %s\n", kcuda_last_error());
        return 1;
    }
    printf("\n| N x K | int8-in us | int8-in PDL us | f32-in us | f32-in PDL us | GB/s | %% copy | cuBLAS bf16 us | bf16 / W2A8 | seed us | seed / W2A8 |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < N_SHAPES; i++) {
        const KcudaGemvBench *r = &rows[i];
        const double best = r->w2a8_q_pdl_us;
        const double gbs = r->w2a8_bytes / (best * 1e-6) / 1e9;
        char cb[48] = "n/a | n/a"; /* libcublas not found: the baseline column stays empty */
        if (r->cublas_us > 0) snprintf(cb, sizeof cb, "%.2f | %.2f", r->cublas_us, r->cublas_us / best);
        printf("| %dx%d | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f%% | %s | %.2f | %.2f |\n", r->n, r->k, r->w2a8_q_us,
               r->w2a8_q_pdl_us, r->w2a8_us, r->w2a8_pdl_us, gbs, 100.0 * gbs / copy, cb, SEED_US[i],
               SEED_US[i] / best);
    }
    double us = 0, us_pdl = 0;
    if (kcuda_bench_layer(2560, 6912, 640, &us, &us_pdl) == 0)
        printf("\nOne 2B layer's four GEMVs (QKV 3840x2560 + O 2560x2560 + gate/up 13824x2560 + down 2560x6912,\n"
               "with fused norm+quant prologues and residual / relu^2*up epilogues), L2-cold, in a graph:\n"
               "%.2f us per layer; with PDL between kernels: %.2f us (seed: 29.94 us).\n",
               us, us_pdl);
    else
        fprintf(stderr, "bench layer: %s\n", kcuda_last_error());
    return 0;
}
#endif

int mode_bench(const AppConfig *cfg) {
    const char *want = cfg->backend ? cfg->backend : "auto";
    int use_cuda = 0;
#ifdef BITNET_HAVE_CUDA
    if (strcmp(want, "cuda") == 0 || strcmp(want, "auto") == 0) use_cuda = kcuda_device_count() > 0;
    if (strcmp(want, "cuda") == 0 && !use_cuda) {
        fprintf(stderr, "bitnet-chat: bench: no CUDA device found\n");
        return 1;
    }
#else
    if (strcmp(want, "cuda") == 0) {
        fprintf(stderr, "bitnet-chat: bench: this build has no CUDA backend\n");
        return 1;
    }
#endif
    printf("bitnet-chat bench (%s backend%s)\n", use_cuda ? "cuda" : "cpu", cfg->quick ? ", quick" : "");
    int rc = 0;
#ifdef BITNET_HAVE_CUDA
    double copy = 0;
    /* --skip-kernels: straight to the end-to-end tables, to spend less device time */
    if (use_cuda && !cfg->bench_skip_kernels)
        rc = bench_cuda_kernels(cfg->quick, &copy);
    else if (use_cuda)
        copy = kcuda_copy_bandwidth_gbs((size_t)1 << 30, cfg->quick ? 5 : 15);
#endif
    if (!use_cuda && !cfg->bench_skip_kernels) rc = bench_cpu_kernels(cfg->quick, cfg->threads);
    if (!rc && !use_cuda && cfg->model) rc = bench_cpu_file(cfg->model, cfg->quick, cfg->threads);
    if (rc) return rc;
    printf("\nBuilding the random model...\n");
    fflush(stdout);
    Model m;
    Err err = {{0}};
    const ModelConfig c = model_config_bitnet_2b();
    if (model_init_random(&m, &c, 42, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    rc = bench_e2e(use_cuda ? BACKEND_CUDA : BACKEND_CPU, &m, "BitNet-b1.58-2B-4T", cfg->quick, cfg->threads,
                   cfg->lm_head_int8, cfg->bench_profile);
    if (!rc && !use_cuda && !cfg->bench_profile && !cfg->lm_head_int8)
        rc = bench_cpu_screen(&m, "BitNet-b1.58-2B-4T", cfg->quick, cfg->threads);
#ifdef BITNET_HAVE_CUDA
    if (!rc && use_cuda && !cfg->bench_profile) bench_ttft(&m, cfg->quick, cfg->lm_head_int8);
    if (!rc && use_cuda && !cfg->bench_profile) bench_contexts(&m, cfg->quick, cfg->lm_head_int8, copy);
    if (!rc && use_cuda && !cfg->bench_profile) bench_sampler_cost(&m, cfg->quick);
    if (!rc && use_cuda && !cfg->bench_profile) bench_lm_head_compare(&m, cfg->quick);
#endif
    model_free(&m);
#ifdef BITNET_HAVE_CUDA
    /* The largest Llama-style family on the GPU (SiLU, no sub-norms, untied lm_head): 7.0e9
     * ternary weights (1.7 GB at 2 bits) and 2.1 GB of f16 embedding + head, so decode reads
     * ~2.8 GB a token against ~1.2 GB for the 2B shapes. CUDA only: on the CPU this model takes
     * minutes per configuration. */
    if (!rc && use_cuda && !cfg->quick && !cfg->bench_profile) {
        printf("\nBuilding the random Llama3-8B-1.58 model...\n");
        fflush(stdout);
        const ModelConfig c8 = model_config_llama3_8b();
        if (model_init_random(&m, &c8, 42, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        rc = bench_e2e(BACKEND_CUDA, &m, "Llama3-8B-1.58", cfg->quick, cfg->threads, cfg->lm_head_int8, 0);
        model_free(&m);
    }
#endif
    return rc;
}
