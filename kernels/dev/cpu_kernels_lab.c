/* CPU kernel lab: checks each fast kernel against its _ref twin, then times it on one thread,
 * for every ISA this CPU has. Build: it is built as `cpu_kernels_lab` with the tests
 * (tests/bench/bench.cmake); run ./build/tests/cpu_kernels_lab [seconds-per-item, default 0.3].
 *
 * Timings use the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time: on a shared
 * machine a preempted thread does not count against the kernel, while memory stalls do. Each
 * figure is the best of several passes. Napkin math printed beside each:
 *   - decode GEMV (ternary, 2B-4T shapes): the 7 matrices of 30 layers rotated (521 MB, far
 *     beyond the L3), GB/s of weights streamed, against a plain vector read of 512 MiB on the
 *     same thread (the ceiling for a memory-bound kernel);
 *   - lm_head f16 GEMV: 128256 x 2560 (657 MB), GB/s;
 *   - prefill GEMM (64 tokens), I2_S and R16 layouts: GMAC/s per core (Zen 4 vpdpbusd peak: 64
 *     MAC/cycle: 233 G/s at the 3.64 GHz measured on the 2-core EPYC VM);
 *   - attention: one GQA group of 4 heads, head_dim 128, f16 cache, GMAC/s (2 * ctx * 128 per
 *     head).
 * Findings that shaped the kernels are noted in the kernels/cpu sources (e.g. the GEMV software
 * prefetch: 5 -> 21 GB/s from DRAM on one core). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "kernels/cpu/kernels_cpu.h"

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *big(size_t n, int fill) {
    void *p = NULL;
    if (posix_memalign(&p, (size_t)2 << 20, n) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE);
#endif
    memset(p, fill, n);
    return p;
}

static uint64_t rng = 88172645463325252ull;
static uint8_t rnd8(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint8_t)(rng >> 24);
}

/* seconds per call of fn: best of passes of at least `budget` seconds in total */
typedef void (*Fn)(void *);
static double time_best(Fn fn, void *ctx, double budget) {
    double best = 1e30, spent = 0;
    for (int pass = 0; pass < 3 || spent < budget; pass++) {
        const double a = cpu_s();
        fn(ctx);
        const double d = cpu_s() - a;
        spent += d;
        if (d < best) best = d;
        if (pass > 50) break;
    }
    return best;
}

typedef struct {
    uint8_t *w;       /* 30 layers x 7 ternary matrices, packed back to back */
    uint8_t *wr;      /* the same in the R16 layout (same offsets: every n_out % 16 == 0) */
    size_t off[7], layer_bytes;
    int n[7], k[7];
    int8_t *q;
    int32_t qsum;
    float s, *y;
    int flags;
} GemvCtx;

static void gemv_all(void *p) {
    GemvCtx *c = p;
    for (int l = 0; l < 30; l++)
        for (int i = 0; i < 7; i++)
            if (c->flags == 2)
                w2a8_linear_r16_rows(c->wr + c->layer_bytes * l + c->off[i], c->n[i], c->k[i], 0.01f, c->q,
                                     &c->qsum, &c->s, 1, 0, c->n[i], c->y, c->n[i], 0);
            else w2a8_linear_rows_ex(c->w + c->layer_bytes * l + c->off[i], c->k[i], 0.01f, c->q,
                                &c->qsum, &c->s, 1, 0, c->n[i], c->y, c->n[i], 0, c->flags);
}

typedef struct {
    const uint16_t *e;
    const float *x;
    float *y;
} HeadCtx;

static void head_all(void *p) {
    HeadCtx *c = p;
    dense_gemm_rows(CPU_DENSE_F16, c->e, 2560, c->x, 1, 0, 128256, c->y, 128256);
}

typedef struct {
    const uint8_t *buf;
    size_t n;
    uint64_t sink;
} ReadCtx;

static void read_all(void *p) {
    ReadCtx *c = p;
    const uint64_t *v = (const uint64_t *)c->buf;
    uint64_t a = 0, b = 0, d = 0, e = 0;
    for (size_t i = 0; i + 4 <= c->n / 8; i += 4) a ^= v[i], b ^= v[i + 1], d ^= v[i + 2], e ^= v[i + 3];
    c->sink ^= a ^ b ^ d ^ e;
}

typedef struct {
    const uint8_t *w;
    int r16;
    int n, k, M;
    const int8_t *q;
    const int32_t *qs;
    const float *s;
    float *y;
} GemmCtx;

static void gemm_one(void *p) {
    GemmCtx *c = p;
    if (c->r16) w2a8_linear_r16_rows(c->w, c->n, c->k, 0.01f, c->q, c->qs, c->s, c->M, 0, c->n, c->y, c->n, 0);
    else w2a8_linear_rows(c->w, c->k, 0.01f, c->q, c->qs, c->s, c->M, 0, c->n, c->y, c->n, 0);
}

typedef struct {
    const float *q;
    const uint16_t *k, *v;
    int ctx;
    float *sc, *out;
} AttnCtx;

static void attn_one(void *p) {
    AttnCtx *c = p;
    for (int i = 0; i < 16; i++) attention_group_cpu(c->q, 4, c->k, c->v, 1, 640, c->ctx, 128, c->sc, c->out);
}

int main(int argc, char **argv) {
    const double budget = argc > 1 ? atof(argv[1]) : 0.3;
    const CpuIsa best = cpu_isa_detect();
    printf("cpu_kernels_lab: best ISA %s; one thread, CPU time, best of passes\n", cpu_isa_name(best));

    /* decode GEMV data: 30 layers of the 2B-4T shapes */
    GemvCtx g;
    memset(&g, 0, sizeof g);
    const int shp[7][2] = {{2560, 2560}, {640, 2560}, {640, 2560}, {2560, 2560}, {6912, 2560}, {6912, 2560}, {2560, 6912}};
    for (int i = 0; i < 7; i++) {
        g.n[i] = shp[i][0], g.k[i] = shp[i][1];
        g.off[i] = g.layer_bytes;
        g.layer_bytes += (size_t)g.n[i] * g.k[i] / 4;
    }
    g.w = big(g.layer_bytes * 30, 0x55);
    g.wr = big(g.layer_bytes * 30, 0x55);
    g.q = malloc(6912);
    g.y = malloc(sizeof(float) * 6912);
    HeadCtx h = {big((size_t)128256 * 2560 * 2, 0x3c), NULL, malloc(sizeof(float) * 128256)};
    float *x = malloc(sizeof(float) * 6912);
    ReadCtx rd = {big((size_t)512 << 20, 0x5a), (size_t)512 << 20, 0};
    if (!g.w || !h.e || !rd.buf) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < g.layer_bytes * 30; i += 4096) g.w[i] = rnd8() & 0xaa; /* codes 0/2 */
    for (int l = 0; l < 30; l++)
        for (int i = 0; i < 7; i++)
            w2a8_r16_pack(g.w + g.layer_bytes * l + g.off[i], g.n[i], g.k[i], 0, g.n[i] / R16_ROWS,
                          g.wr + g.layer_bytes * l + g.off[i]);
    for (int i = 0; i < 6912; i++) x[i] = sinf((float)i), g.q[i] = (int8_t)rnd8();
    h.x = x;
    g.qsum = qsum_ref(g.q, 2560); /* (the value does not change the timing) */
    g.s = 10.0f;

    /* correctness first: every fast GEMV / GEMM equals the reference on one layer */
    {
        int32_t *ref = malloc(sizeof(int32_t) * 6912 * 64), *got = malloc(sizeof(int32_t) * 6912 * 64);
        int8_t *q64 = malloc((size_t)64 * 6912);
        int32_t qs64[64];
        for (int i = 0; i < 64 * 6912; i++) q64[i] = (int8_t)rnd8();
        for (int isa = 0; isa <= (int)best; isa++) {
            cpu_isa_set((CpuIsa)isa);
            for (int i = 0; i < 7; i++) {
                for (int m = 0; m < 64; m++) qs64[m] = qsum_ref(q64 + (size_t)m * g.k[i], g.k[i]);
                for (int M = 1; M <= 64; M += 63) {
                    w2a8_gemm_ref(g.w + g.off[i], g.n[i], g.k[i], q64, M, ref, g.n[i]);
                    w2a8_gemm_rows(g.w + g.off[i], g.k[i], q64, qs64, M, 0, g.n[i], got, g.n[i]);
                    if (memcmp(ref, got, sizeof(int32_t) * (size_t)M * g.n[i])) {
                        printf("MISMATCH: %s %dx%d M=%d\n", cpu_isa_name((CpuIsa)isa), g.n[i], g.k[i], M);
                        return 1;
                    }
                }
            }
        }
        printf("check: all ternary GEMV/GEMM paths equal w2a8_gemm_ref on the 7 layer shapes\n");
        free(ref), free(got), free(q64);
    }

    const double t_read = time_best(read_all, &rd, budget);
    const double read_gbs = (double)rd.n / t_read / 1e9;
    printf("\nplain read of 512 MiB (scalar 64-bit loads): %.1f GB/s\n", read_gbs);

    for (int isa = (int)best; isa >= 0; isa--) {
        cpu_isa_set((CpuIsa)isa);
        printf("\n-- %s\n", cpu_isa_name((CpuIsa)isa));
        for (int fl = 0; fl < 3; fl++) {
            g.flags = fl == 1 ? W2A8_CODES_VALID : fl;
            const double tg = time_best(gemv_all, &g, budget);
            printf("decode GEMV%s, 30 layers (%.0f MB): %.1f ms, %.1f GB/s (%.0f%% of the plain read)\n",
                   fl == 2 ? " R16" : fl ? " CODES_VALID" : "", 30.0 * g.layer_bytes / 1e6, tg * 1e3,
                   30.0 * g.layer_bytes / tg / 1e9, 100.0 * 30.0 * g.layer_bytes / tg / 1e9 / read_gbs);
        }
        const double th = time_best(head_all, &h, budget);
        printf("lm_head f16 GEMV 128256 x 2560 (657 MB): %.1f ms, %.1f GB/s\n", th * 1e3,
               128256.0 * 2560 * 2 / th / 1e9);
        for (int i = 0; i < 7; i += (i == 0 ? 1 : i == 1 ? 3 : 2)) {
            const int M = 64;
            int8_t *q = malloc((size_t)M * g.k[i]);
            int32_t qs[64];
            float s[64], *y = malloc(sizeof(float) * (size_t)M * g.n[i]);
            for (int j = 0; j < M * g.k[i]; j++) q[j] = (int8_t)rnd8();
            for (int m = 0; m < M; m++) qs[m] = qsum_ref(q + (size_t)m * g.k[i], g.k[i]), s[m] = 10.0f;
            for (int r16 = 0; r16 < 2; r16++) {
                GemmCtx gc = {(r16 ? g.wr : g.w) + g.off[i], r16, g.n[i], g.k[i], M, q, qs, s, y};
                const double t = time_best(gemm_one, &gc, budget);
                printf("prefill GEMM%s %4d x %4d, 64 tokens: %.2f ms, %.1f GMAC/s\n", r16 ? " R16" : "",
                       g.n[i], g.k[i], t * 1e3, (double)g.n[i] * g.k[i] * M / t / 1e9);
            }
            free(q), free(y);
        }
        if (isa >= CPU_ISA_AVX2 || best == CPU_ISA_SCALAR) {
            const int ctxs[3] = {64, 512, 2048};
            for (int ci = 0; ci < 3; ci++) {
                const int n = ctxs[ci];
                uint16_t *kk = malloc(2 * 640 * (size_t)n), *vv = malloc(2 * 640 * (size_t)n);
                float qq[512], oo[512], *sc = malloc(sizeof(float) * 4 * (size_t)n);
                for (size_t j = 0; j < 640 * (size_t)n; j++) kk[j] = f32_to_f16_ref(0.01f * (float)(j % 97)), vv[j] = kk[j];
                for (int j = 0; j < 512; j++) qq[j] = 0.01f * (float)(j % 31);
                AttnCtx ac = {qq, kk, vv, n, sc, oo};
                const double t = time_best(attn_one, &ac, budget) / 16;
                printf("attention, GQA group of 4 heads, ctx %4d: %.1f us, %.1f GMAC/s\n", n, t * 1e6,
                       4.0 * 2 * n * 128 / t / 1e9);
                free(kk), free(vv), free(sc);
            }
        }
    }
    return (int)(rd.sink & 0);
}
