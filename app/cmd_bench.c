/* `bitnet-chat bench [--backend cpu|cuda] [--quick]`: prints its method, then
 *   (1) a kernel table: W2A8 GEMV latency for the 8 shapes of the seed benchmark, L2-cold, and
 *       on CUDA cuBLAS bf16 GEMV measured the same way, GB/s and % of copy bandwidth measured
 *       in the same run;
 *   (2) an end-to-end table for (prompt, generated) = (64,16), (64,64), (512,64) on a random
 *       model with the shapes of BitNet-b1.58-2B-4T: prefill ms, decode ms, decode tok/s.
 * Every figure printed here is measured in this run; nothing is hard-coded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/commands_cli.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "kernels/w2a8.h"
#ifdef BITNET_HAVE_CUDA
#include "kernels/cuda/kernels_cuda.h"
#endif

/* Provided by other areas of the tree; the bench falls back to its own where they are absent. */
#pragma weak model_init_random
#pragma weak model_config_bitnet_2b
#pragma weak backend_cpu_ops
#pragma weak model_free

/* Buffers of the fallback random model (freed by bench_free_model). */
static void *g_bufs[512];
static int g_nbufs;
static void *bench_alloc(size_t n, Err *err) {
    void *p = g_nbufs < 512 ? malloc(n ? n : 1) : NULL;
    if (!p) {
        err_set(err, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    g_bufs[g_nbufs++] = p;
    return p;
}
static void bench_free_model(Model *m) {
    if (model_init_random && model_free) {
        model_free(m);
        return;
    }
    for (int i = 0; i < g_nbufs; i++) free(g_bufs[i]);
    g_nbufs = 0;
    free(m->layers);
    memset(m, 0, sizeof *m);
}

static const int SHAPES[8][2] = {{2560, 2560}, {3840, 2560}, {13824, 2560}, {2560, 6912},
                                 {3200, 3200}, {4800, 3200}, {3200, 10240}, {20480, 3200}};
static const double SEED_US[8] = {5.07, 5.39, 8.97, 10.51, 6.05, 6.18, 14.50, 13.09};

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

/* Random model with BitNet-2B-4T shapes, used when model_init_random is not linked in. */
static ModelConfig config_2b(void) {
    if (model_config_bitnet_2b) return model_config_bitnet_2b();
    ModelConfig c;
    memset(&c, 0, sizeof c);
    strcpy(c.arch, "bitnet-b1.58");
    strcpy(c.name, "random 2B-4T shapes");
    c.n_layers = 30, c.dim = 2560, c.n_heads = 20, c.n_kv_heads = 5, c.head_dim = 128;
    c.ffn_dim = 6912, c.vocab_size = 128256, c.ctx_len = 4096;
    c.rope_theta = 500000.0f, c.norm_eps = 1e-5f, c.rope_style = ROPE_HALF, c.bos_id = 128000;
    return c;
}

static int random_ternary(TernaryMatrix *t, int n_out, int n_in, Err *err) {
    t->n_out = n_out, t->n_in = n_in, t->n_in_pad = i2s_round_up_k(n_in);
    const size_t bytes = (size_t)n_out * t->n_in_pad / 4;
    uint8_t *c = bench_alloc(bytes, err);
    if (!c) return -1;
    for (size_t i = 0; i < bytes; i += 8) {
        uint64_t r = rnd64(), v = 0;
        for (int j = 0; j < 32; j++) { /* 32 codes in 0..2 */
            v |= (uint64_t)((r & 0xff) % 3) << (2 * j);
            if ((j & 7) == 7) r = rnd64();
            else r >>= 8;
        }
        memcpy(c + i, &v, bytes - i < 8 ? bytes - i : 8);
    }
    t->codes = c;
    t->scale = 1.0f / sqrtf((float)n_in * 2.0f / 3.0f);
    return 0;
}

static int random_model(Model *m, Err *err) {
    const ModelConfig c = config_2b();
    if (model_init_random) return model_init_random(m, &c, 42, err);
    memset(m, 0, sizeof *m);
    m->cfg = c;
    m->layers = calloc((size_t)c.n_layers, sizeof *m->layers);
    if (!m->layers) return err_set(err, "out of memory");
    float *ones = bench_alloc(sizeof(float) * (size_t)(c.ffn_dim > c.dim ? c.ffn_dim : c.dim), err);
    if (!ones) return -1;
    for (int i = 0; i < (c.ffn_dim > c.dim ? c.ffn_dim : c.dim); i++) ones[i] = 1.0f;
    const int hd = c.head_dim;
    for (int l = 0; l < c.n_layers; l++) {
        LayerWeights *w = &m->layers[l];
        w->attn_norm = w->attn_sub_norm = w->ffn_norm = w->ffn_sub_norm = ones;
        if (random_ternary(&w->wq, c.n_heads * hd, c.dim, err) || random_ternary(&w->wk, c.n_kv_heads * hd, c.dim, err) ||
            random_ternary(&w->wv, c.n_kv_heads * hd, c.dim, err) || random_ternary(&w->wo, c.dim, c.n_heads * hd, err) ||
            random_ternary(&w->w_gate, c.ffn_dim, c.dim, err) || random_ternary(&w->w_up, c.ffn_dim, c.dim, err) ||
            random_ternary(&w->w_down, c.dim, c.ffn_dim, err))
            return -1;
    }
    const size_t ne = (size_t)c.vocab_size * c.dim;
    uint16_t *e = bench_alloc(ne * 2, err);
    if (!e) return -1;
    for (size_t i = 0; i < ne; i++) { /* f16 in about [-1, 1): sign, exponent 14..15, mantissa */
        const uint64_t r = rnd64();
        e[i] = (uint16_t)(((r >> 20) & 0x8000u) | ((14u + ((r >> 10) & 1)) << 10) | (r & 0x3ffu));
    }
    m->tok_embd = (DenseMatrix){FT_F16, c.vocab_size, c.dim, e};
    m->output = m->tok_embd;
    m->output_norm = ones;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* End-to-end: prefill P tokens (+ the first pick), then G-1 decode steps of eval + sample. */
static int bench_e2e(const BackendOps *ops, const Model *m, int quick) {
    InferOptions o = {ops == &backend_cpu_ops ? BACKEND_CPU : BACKEND_CUDA, 0, 1024};
    Err err = {{0}};
#ifdef BITNET_HAVE_CUDA
    const size_t mem0 = ops->kind[0] == 'c' && ops->kind[1] == 'u' ? kcuda_mem_used() : 0;
#endif
    void *b = ops->create(m, &o, &err);
    if (!b) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    char desc[256];
    ops->describe(b, desc, sizeof desc);
    printf("\nEnd to end (%s), random model with BitNet-b1.58-2B-4T shapes, batch 1, greedy, ctx 1024.\n", desc);
    printf("Method: prefill = eval(P tokens) + first pick; decode = G-1 steps of eval(1 token) + pick,\n"
           "host clock around each phase; median of %d runs after 1 warm-up; tok/s = (G-1) / decode.\n",
           quick ? 3 : 5);
    /* BITNET_BENCH_PROFILE=1: one short run (64, 8) without warm-up, for a profiler. */
    const int profile = getenv("BITNET_BENCH_PROFILE") != NULL;
    const int cfgs[3][2] = {{64, profile ? 8 : 16}, {64, 64}, {512, 64}};
    printf("\n| prompt | gen | prefill ms | decode ms | decode tok/s | ms/token |\n|---:|---:|---:|---:|---:|---:|\n");
    int32_t *toks = malloc(sizeof(int32_t) * 512);
    for (int i = 0; i < 512; i++) toks[i] = (int32_t)(rnd64() % (uint64_t)m->cfg.vocab_size);
    int rc = 0;
    for (int ci = 0; ci < (profile ? 1 : 3) && !rc; ci++) {
        const int P = cfgs[ci][0], G = cfgs[ci][1], runs = profile ? 1 : quick ? 3 : 5;
        double pre[8], dec[8];
        for (int r = profile ? 1 : 0; r <= runs && !rc; r++) {
            double t0 = now_s();
            int32_t tok = 0;
            if (ops->eval(b, toks, P, 0, NULL, &err) || ops->sample(b, NULL, &tok, &err) != 1) {
                rc = 1;
                break;
            }
            double t1 = now_s();
            for (int s = 1; s < G; s++)
                if (ops->eval(b, &tok, 1, P + s - 1, NULL, &err) || ops->sample(b, NULL, &tok, &err) != 1) {
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
        printf("| %d | %d | %.2f | %.2f | %.1f | %.3f |\n", P, G, pm, dm, (G - 1) / (dm * 1e-3), dm / (G - 1));
    }
    if (rc) fprintf(stderr, "bench: %s\n", err.msg[0] ? err.msg : "backend returned no greedy token");
#ifdef BITNET_HAVE_CUDA
    if (mem0 || (ops->kind[0] == 'c' && ops->kind[1] == 'u')) {
        const size_t mem1 = kcuda_mem_used();
        printf("\nDevice memory in use (cudaMemGetInfo): %.0f MiB with the model loaded, of which %.0f MiB"
               " were in use before it (CUDA context); model + KV cache (ctx 1024) + scratch: %.0f MiB.\n",
               mem1 / 1048576.0, mem0 / 1048576.0, (mem1 - mem0) / 1048576.0);
    }
#endif
    free(toks);
    ops->destroy(b);
    return rc;
}

#ifdef BITNET_HAVE_CUDA
static int bench_cuda_kernels(int quick) {
    char dev[200] = "?";
    kcuda_device_describe(dev, sizeof dev);
    printf("Device: %s\n", dev);
    const double copy = kcuda_copy_bandwidth_gbs((size_t)1 << 30, quick ? 5 : 15);
    printf("Copy bandwidth: cudaMemcpy device-to-device of 1 GiB, read + write bytes counted, median: %.0f GB/s\n",
           copy);
    printf("\nW2A8 GEMV, batch 1. Method: weights in rotating buffers (>= 256 MiB in all, > 5x L2) so each\n"
           "launch reads its weights from HBM; max(100, buffers) launches captured in one CUDA graph; median\n"
           "replay time / launches. Input: f32 activations quantized to int8 inside the kernel. Each shape is\n"
           "first checked exactly (int32) against w2a8_gemv_ref on 256 rows. cuBLAS: bf16 GEMV (cublasGemmEx,\n"
           "fp32 compute), same method. Bytes = packed weights + activations + outputs; %% = GB/s / copy.\n"
           "Seed = Microsoft BitNet gpu/ kernel on an H100, same method (research/peers-h100.md).\n");
    KcudaGemvBench rows[8];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < 8; i++) rows[i].n = SHAPES[i][0], rows[i].k = SHAPES[i][1];
    if (kcuda_bench_gemv(rows, 8, quick)) {
        fprintf(stderr, "bench: %s\n", kcuda_last_error());
        return 1;
    }
    printf("\n| N x K | W2A8 us | W2A8+PDL us | GB/s | %% copy | cuBLAS bf16 us | bf16 / W2A8 | seed us | seed / W2A8 |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < 8; i++) {
        const KcudaGemvBench *r = &rows[i];
        const double gbs = r->w2a8_bytes / (r->w2a8_us * 1e-6) / 1e9;
        printf("| %dx%d | %.2f | %.2f | %.0f | %.0f%% | %.2f | %.2f | %.2f | %.2f |\n", r->n, r->k, r->w2a8_us,
               r->w2a8_pdl_us, gbs, 100.0 * gbs / copy, r->cublas_us, r->cublas_us / r->w2a8_us, SEED_US[i],
               SEED_US[i] / r->w2a8_us);
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

int cmd_bench(const AppConfig *cfg) {
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
    Model m;
    Err err = {{0}};
#ifdef BITNET_HAVE_CUDA
    if (use_cuda) {
        rc = getenv("BITNET_BENCH_PROFILE") ? 0 : bench_cuda_kernels(cfg->quick);
        if (rc) return rc;
        printf("\nBuilding the random model...\n");
        fflush(stdout);
        if (random_model(&m, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        rc = bench_e2e(&backend_cuda_ops, &m, cfg->quick);
        bench_free_model(&m);
        return rc;
    }
#endif
    if (!&backend_cpu_ops) {
        fprintf(stderr, "bitnet-chat: bench: the CPU backend is not part of this build yet\n");
        return 1;
    }
    if (random_model(&m, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    rc = bench_e2e(&backend_cpu_ops, &m, cfg->quick);
    bench_free_model(&m);
    return rc;
}
