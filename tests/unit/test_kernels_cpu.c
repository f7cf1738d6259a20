/* CPU kernels: every fast path against its scalar _ref twin, on every ISA this CPU has
 * (scalar, AVX2, AVX-512 VNNI), over tuned and ragged shapes and 1..4 threads.
 *   - ternary x int8: integer sums EXACTLY equal, including random bytes with the unused
 *     code 3, activations at -128/127 and the worst case for int16 saturation;
 *   - scaled outputs (acc / s * gamma, + residual): bit-identical floats;
 *   - activation quantization: identical int8, scale and row sum;
 *   - half conversions: identical bits (all 65536 halves; random and edge floats);
 *   - RMSNorm and attention: bit-identical (the reference fixes the fp32 summation order);
 *   - dense (lm_head): within fp32 rounding of the double-accumulated reference. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/cpu/kernels_cpu.h"

static uint64_t rng = 0x1234567887654321ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rndf(void) { return ((float)(rnd() & 0xffffff) / 16777216.0f) * 2.0f - 1.0f; }

/* codes: 0 random valid {0,1,2}; 1 random bytes (code 3 included); 2 all +1 */
static void fill_codes(uint8_t *w, size_t n, int mode) {
    for (size_t i = 0; i < n; i++) {
        if (mode == 1) w[i] = (uint8_t)rnd();
        else if (mode == 2) w[i] = 0xaa;
        else w[i] = (uint8_t)((rnd() % 3) << 6 | (rnd() % 3) << 4 | (rnd() % 3) << 2 | (rnd() % 3));
    }
}

/* acts: 0 random int8 in [-128, 127]; 1 all -128; 2 all 127 */
static void fill_acts(int8_t *q, size_t n, int mode) {
    for (size_t i = 0; i < n; i++) q[i] = mode == 1 ? -128 : mode == 2 ? 127 : (int8_t)(rnd() & 0xff);
}

static void test_gemm_shapes(CpuIsa isa) {
    const struct { int n_out, k_pad, M; } shapes[] = {
        {1, 128, 1},    {7, 128, 3},    {13, 256, 1},   {64, 2560, 1},  {37, 384, 5},
        {5, 8320, 2},   {9, 8320, 1},   {33, 640, 67},  {20, 1024, 4},  {640, 2560, 1},
        {30, 6912, 9},  {3, 2048, 1},   {4, 16384, 5},  {48, 256, 16},  {16, 128, 31},
    };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int n = shapes[si].n_out, kp = shapes[si].k_pad, M = shapes[si].M;
        /* (codes, acts): random x random, bytes with code 3 x random, bytes x -128, and the
         * int16 worst cases: all +1 x -128, all +1 x 127 */
        const int combos[5][2] = {{0, 0}, {1, 0}, {1, 1}, {2, 1}, {2, 2}};
        for (int ci = 0; ci < 5; ci++) {
                const int cm = combos[ci][0], am = combos[ci][1];
                const size_t wb = (size_t)n * kp / 4;
                uint8_t *w = malloc(wb);
                int8_t *q = malloc((size_t)M * kp);
                int32_t *qs = malloc(sizeof(int32_t) * (size_t)M);
                int32_t *ref = malloc(sizeof(int32_t) * (size_t)M * n);
                int32_t *got = malloc(sizeof(int32_t) * (size_t)M * n);
                float *s = malloc(sizeof(float) * (size_t)M);
                float *yr = malloc(sizeof(float) * (size_t)M * n), *yg = malloc(sizeof(float) * (size_t)M * n);
                fill_codes(w, wb, cm);
                fill_acts(q, (size_t)M * kp, am);
                for (int m = 0; m < M; m++) {
                    qs[m] = qsum_ref(q + (size_t)m * kp, kp);
                    s[m] = 1.0f + 100.0f * (float)(rnd() % 1000) / 1000.0f;
                }
                w2a8_gemm_ref(w, n, kp, q, M, ref, n);
                /* whole range, then a ragged sub-range [r0, r1) */
                for (int pass = 0; pass < 2; pass++) {
                    const int r0 = pass ? (n > 2 ? 1 : 0) : 0, r1 = pass ? n - (n > 5 ? 2 : 0) : n;
                    for (size_t i = 0; i < (size_t)M * n; i++) got[i] = 0x7777777;
                    CHECK_EQ_INT(w2a8_gemm_rows(w, kp, q, qs, M, r0, r1, got, n), 0);
                    int bad = 0;
                    for (int m = 0; m < M; m++)
                        for (int r = r0; r < r1; r++) bad += got[(size_t)m * n + r] != ref[(size_t)m * n + r];
                    CHECK_MSG(bad == 0, "%s gemm n=%d k=%d M=%d codes=%d acts=%d rows [%d,%d): %d mismatches",
                              cpu_isa_name(isa), n, kp, M, cm, am, r0, r1, bad);
                }
                /* scaled outputs, plain and accumulating: bit-identical */
                const float gamma = 0.0123f;
                for (int accm = 0; accm < 2; accm++) {
                    for (size_t i = 0; i < (size_t)M * n; i++) yr[i] = yg[i] = rndf();
                    w2a8_linear_ref(w, n, kp, gamma, q, s, M, yr, n, accm);
                    CHECK_EQ_INT(w2a8_linear_rows(w, kp, gamma, q, qs, s, M, 0, n, yg, n, accm), 0);
                    CHECK_MSG(memcmp(yr, yg, sizeof(float) * (size_t)M * n) == 0,
                              "%s linear n=%d k=%d M=%d accumulate=%d not bit-identical",
                              cpu_isa_name(isa), n, kp, M, accm);
                }
                /* threads 1..4 */
                for (int th = 1; th <= 4; th++) {
                    CpuPool *p = cpu_pool_create(th);
                    REQUIRE(p != NULL);
                    for (size_t i = 0; i < (size_t)M * n; i++) yg[i] = -1.0f;
                    w2a8_linear_ref(w, n, kp, gamma, q, s, M, yr, n, 0);
                    CHECK_EQ_INT(w2a8_linear_mt(p, w, n, kp, gamma, q, qs, s, M, yg, n, 0), 0);
                    CHECK_MSG(memcmp(yr, yg, sizeof(float) * (size_t)M * n) == 0,
                              "%s linear_mt threads=%d n=%d k=%d M=%d", cpu_isa_name(isa), th, n, kp, M);
                    /* the fast path for rows known to hold no code 3 */
                    const int valid = i2s_codes_valid(w, wb);
                    CHECK_EQ_INT(valid, cm != 1); /* random bytes hold some 3s, the others none */
                    if (valid) {
                        for (size_t i = 0; i < (size_t)M * n; i++) yg[i] = -1.0f;
                        CHECK_EQ_INT(w2a8_linear_mt_ex(p, w, n, kp, gamma, q, qs, s, M, yg, n, 0, W2A8_CODES_VALID), 0);
                        CHECK_MSG(memcmp(yr, yg, sizeof(float) * (size_t)M * n) == 0,
                                  "%s linear_mt CODES_VALID threads=%d n=%d k=%d M=%d", cpu_isa_name(isa), th, n, kp, M);
                    }
                    cpu_pool_destroy(p);
                }
                /* the R16 layout (code 3 rewritten at the repack): the same bits as the
                 * reference, plain and accumulating, whole and from the second group on, with
                 * 1..3 threads; packed in two halves, as threads may share the repack */
                uint8_t *wr = malloc(w2a8_r16_bytes(n, kp));
                const int ng = (n + R16_ROWS - 1) / R16_ROWS;
                memset(wr, 0xff, w2a8_r16_bytes(n, kp));
                w2a8_r16_pack(w, n, kp, 0, ng / 2, wr);
                w2a8_r16_pack(w, n, kp, ng / 2, ng, wr);
                for (int accm = 0; accm < 2; accm++)
                    for (int pass = 0; pass < 2; pass++) {
                        const int r0 = pass && n > R16_ROWS ? R16_ROWS : 0, r1 = pass && n > R16_ROWS + 2 ? n - 2 : n;
                        for (size_t i = 0; i < (size_t)M * n; i++) yr[i] = yg[i] = rndf();
                        w2a8_linear_ref(w, n, kp, gamma, q, s, M, yr, n, accm);
                        CHECK_EQ_INT(w2a8_linear_r16_rows(wr, n, kp, gamma, q, qs, s, M, r0, r1, yg, n, accm), 0);
                        int bad = 0;
                        for (int m = 0; m < M; m++)
                            for (int r = r0; r < r1; r++)
                                bad += memcmp(&yr[(size_t)m * n + r], &yg[(size_t)m * n + r], sizeof(float)) != 0;
                        CHECK_MSG(bad == 0, "%s linear_r16 n=%d k=%d M=%d codes=%d acts=%d accumulate=%d rows [%d,%d): %d not bit-identical",
                                  cpu_isa_name(isa), n, kp, M, cm, am, accm, r0, r1, bad);
                    }
                for (int th = 1; th <= 3; th++) {
                    CpuPool *p = cpu_pool_create(th);
                    REQUIRE(p != NULL);
                    for (size_t i = 0; i < (size_t)M * n; i++) yg[i] = -1.0f;
                    w2a8_linear_ref(w, n, kp, gamma, q, s, M, yr, n, 0);
                    CHECK_EQ_INT(w2a8_linear_r16_mt(p, wr, n, kp, gamma, q, qs, s, M, yg, n, 0), 0);
                    CHECK_MSG(memcmp(yr, yg, sizeof(float) * (size_t)M * n) == 0,
                              "%s linear_r16_mt threads=%d n=%d k=%d M=%d", cpu_isa_name(isa), th, n, kp, M);
                    cpu_pool_destroy(p);
                }
                free(wr);
                free(w), free(q), free(qs), free(ref), free(got), free(s), free(yr), free(yg);
            }
    }
    /* a bad shape is refused, not computed */
    int8_t q[128] = {0};
    int32_t qs0 = 0, acc[1];
    uint8_t w[32];
    CHECK_EQ_INT(w2a8_gemm_rows(w, 100, q, &qs0, 1, 0, 1, acc, 1), KERR_SHAPE);
    float s1 = 1.0f, y1[32];
    uint8_t wr[16 * 32];
    CHECK_EQ_INT(w2a8_linear_r16_rows(wr, 16, 128, 1.0f, q, &qs0, &s1, 1, 8, 16, y1, 16, 0), KERR_SHAPE);
    CHECK_EQ_INT(w2a8_linear_r16_rows(wr, 16, 100, 1.0f, q, &qs0, &s1, 1, 0, 16, y1, 16, 0), KERR_SHAPE);
    CHECK_EQ_INT(w2a8_linear_r16_rows(wr, 16, 128, 1.0f, q, &qs0, &s1, 1, 0, 32, y1, 16, 0), KERR_SHAPE);
}

static void test_quant(CpuIsa isa) {
    const int ns[] = {1, 7, 31, 32, 33, 100, 2560, 6912, 1000};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        const int n = ns[i], np = i2s_round_up_k(n);
        float *x = malloc(sizeof(float) * (size_t)n);
        int8_t *qr = malloc((size_t)np), *qg = malloc((size_t)np);
        for (int rep = 0; rep < 4; rep++) {
            for (int j = 0; j < n; j++) {
                x[j] = rndf() * (rep == 3 ? 1e-7f : 3.0f);
                /* exact ties: x * s = k + 0.5 when max = 127 */
                if (rep == 1 && j % 3 == 0) x[j] = ((float)(int)(rnd() % 200) - 100.0f + 0.5f) / 127.0f;
            }
            if (rep == 1) x[0] = 1.0f; /* max 1 so s = 127 and the ties above are exact */
            if (rep == 2) for (int j = 0; j < n; j++) x[j] = 0.0f;
            memset(qg, 0x11, (size_t)np);
            int32_t qs = 12345;
            const float sr = quant_act_ref(x, n, np, qr);
            const float sg = quant_act_cpu(x, n, np, qg, &qs);
            CHECK_MSG(sr == sg, "%s quant n=%d rep=%d scale", cpu_isa_name(isa), n, rep);
            CHECK_MSG(memcmp(qr, qg, (size_t)np) == 0, "%s quant n=%d rep=%d values", cpu_isa_name(isa), n, rep);
            CHECK_EQ_INT(qs, qsum_ref(qr, np));
        }
        free(x), free(qr), free(qg);
    }
}

static void test_half(CpuIsa isa) {
    /* all halves -> float, fast row vs ref (nan payloads compared as bits too) */
    static uint16_t h[65536], h2[65536];
    static float f[65536];
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    f16_to_f32_row(h, f, 65536);
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        const float r = f16_to_f32_ref(h[i]);
        bad += memcmp(&r, &f[i], 4) != 0;
    }
    CHECK_MSG(bad == 0, "%s f16->f32: %d mismatches", cpu_isa_name(isa), bad);
    /* round trip of every finite half */
    f32_to_f16_row(f, h2, 65536);
    bad = 0;
    for (int i = 0; i < 65536; i++)
        if ((i & 0x7c00) != 0x7c00) bad += h2[i] != h[i];
    CHECK_MSG(bad == 0, "%s f16 round trip: %d mismatches", cpu_isa_name(isa), bad);
    /* random floats across the range, incl. ties, subnormals and overflow */
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = rnd() << 16 ^ rnd();
        if (i % 4 == 0) bits = (bits & 0x807fe000u) | ((uint32_t)(103 + rnd() % 40) << 23) | 0x1000u; /* ties */
        float x;
        memcpy(&x, &bits, 4);
        if (isnan(x)) continue;
        uint16_t a = f32_to_f16_ref(x), b;
        f32_to_f16_row(&x, &b, 1);
        float xs[8] = {x, x, x, x, x, x, x, x};
        uint16_t bs[8];
        f32_to_f16_row(xs, bs, 8);
        bad += a != b || a != bs[3];
    }
    CHECK_MSG(bad == 0, "%s f32->f16: %d mismatches", cpu_isa_name(isa), bad);
}

static double rel_err(const float *a, const float *b, int n, double scale) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - (double)b[i]) / scale;
        if (e > worst || isnan(e)) worst = isnan(e) ? 1e30 : e;
    }
    return worst;
}

static void test_dense(CpuIsa isa) {
    const struct { int n, k, M; } shapes[] = {{1, 8, 1}, {5, 100, 1}, {67, 256, 3}, {300, 2560, 1}, {33, 96, 7}, {16, 17, 2}};
    const CpuDenseType types[] = {CPU_DENSE_F32, CPU_DENSE_F16, CPU_DENSE_BF16};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int ti = 0; ti < 3; ti++) {
            const int n = shapes[si].n, k = shapes[si].k, M = shapes[si].M;
            const CpuDenseType t = types[ti];
            const size_t esz = t == CPU_DENSE_F32 ? 4 : 2;
            void *w = malloc(esz * (size_t)n * k);
            float *x = malloc(sizeof(float) * (size_t)M * k);
            float *yr = malloc(sizeof(float) * (size_t)M * n), *yg = malloc(sizeof(float) * (size_t)M * n);
            for (size_t i = 0; i < (size_t)n * k; i++) {
                const float v = rndf();
                if (t == CPU_DENSE_F32) ((float *)w)[i] = v;
                else if (t == CPU_DENSE_F16) ((uint16_t *)w)[i] = f32_to_f16_ref(v);
                else {
                    uint32_t b;
                    memcpy(&b, &v, 4);
                    ((uint16_t *)w)[i] = (uint16_t)(b >> 16);
                }
            }
            for (size_t i = 0; i < (size_t)M * k; i++) x[i] = rndf();
            dense_gemm_ref(t, w, n, k, x, M, yr, n);
            for (int th = 1; th <= 3; th++) {
                CpuPool *p = cpu_pool_create(th);
                memset(yg, 0, sizeof(float) * (size_t)M * n);
                dense_gemm_mt(p, t, w, n, k, x, M, yg, n);
                /* |sum| <= k for values in [-1, 1]: fp32 accumulation error ~ k * 2^-24 */
                const double e = rel_err(yr, yg, M * n, (double)k);
                CHECK_MSG(e < 1e-6, "%s dense type %d n=%d k=%d M=%d threads %d: err %g",
                          cpu_isa_name(isa), (int)t, n, k, M, th, e);
                cpu_pool_destroy(p);
            }
            float row[2560], row_ref[2560], row_oracle[2560];
            dense_row_to_f32(t, w, k, n - 1, row);
            dense_row_to_f32_ref(t, w, k, n - 1, row_oracle);
            for (int j = 0; j < k; j++) {
                const float v = t == CPU_DENSE_F32 ? ((float *)w)[(size_t)(n - 1) * k + j]
                              : t == CPU_DENSE_F16 ? f16_to_f32_ref(((uint16_t *)w)[(size_t)(n - 1) * k + j])
                                                   : bf16_to_f32_ref(((uint16_t *)w)[(size_t)(n - 1) * k + j]);
                row_ref[j] = v;
            }
            CHECK(memcmp(row, row_ref, sizeof(float) * (size_t)k) == 0);
            CHECK(memcmp(row_oracle, row_ref, sizeof(float) * (size_t)k) == 0);
            free(w), free(x), free(yr), free(yg);
        }
}

static void test_norm_attention(CpuIsa isa) {
    const int ns[] = {1, 9, 64, 2560, 6912};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        const int n = ns[i];
        float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        for (int j = 0; j < n; j++) x[j] = rndf() * 10.0f, w[j] = rndf();
        rmsnorm_ref(x, w, n, 1e-5f, a);
        rmsnorm_cpu(x, w, n, 1e-5f, b);
        CHECK_MSG(memcmp(a, b, sizeof(float) * (size_t)n) == 0, "%s rmsnorm n=%d not bit-identical",
                  cpu_isa_name(isa), n);
        free(x), free(w), free(a), free(b);
    }
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) { /* relu^2 gating */
        const int n = ns[i];
        float *g = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n);
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        for (int j = 0; j < n; j++) g[j] = rndf() * 30.0f, u[j] = rndf();
        relu2_mul_ref(g, u, n, a);
        relu2_mul_cpu(g, u, n, b);
        CHECK_MSG(memcmp(a, b, sizeof(float) * (size_t)n) == 0, "%s relu2_mul n=%d", cpu_isa_name(isa), n);
        free(g), free(u), free(a), free(b);
    }
    const int hds[] = {64, 128, 24, 40};
    const int ctxs[] = {1, 2, 17, 300};
    for (size_t hi = 0; hi < 4; hi++)
        for (size_t ci = 0; ci < 4; ci++)
            for (int f16 = 0; f16 < 2; f16++) {
                const int hd = hds[hi], nc = ctxs[ci];
                const size_t stride = (size_t)hd * 3; /* rows of a 3-head cache, use head 1 */
                float *q = malloc(sizeof(float) * hd), *kf = malloc(sizeof(float) * stride * nc),
                      *vf = malloc(sizeof(float) * stride * nc);
                uint16_t *kh = malloc(2 * stride * nc), *vh = malloc(2 * stride * nc);
                float *sc = malloc(sizeof(float) * nc), *o1 = malloc(sizeof(float) * hd),
                      *o2 = malloc(sizeof(float) * hd);
                for (int j = 0; j < hd; j++) q[j] = rndf() * 4.0f;
                for (size_t j = 0; j < stride * nc; j++) {
                    kf[j] = rndf() * 2.0f, vf[j] = rndf();
                    kh[j] = f32_to_f16_ref(kf[j]), vh[j] = f32_to_f16_ref(vf[j]);
                }
                const void *K = f16 ? (const void *)(kh + hd) : (const void *)(kf + hd);
                const void *V = f16 ? (const void *)(vh + hd) : (const void *)(vf + hd);
                attention_head_ref(q, K, V, f16, stride, nc, hd, sc, o1);
                attention_head_cpu(q, K, V, f16, stride, nc, hd, sc, o2);
                CHECK_MSG(memcmp(o1, o2, sizeof(float) * (size_t)hd) == 0,
                          "%s attention hd=%d ctx=%d f16=%d not bit-identical (max err %g)",
                          cpu_isa_name(isa), hd, nc, f16, rel_err(o1, o2, hd, 1.0));
                /* GQA groups of 1..5 heads (5 = a pass of 4 and a pass of 1) */
                for (int G = 1; G <= 5; G++) {
                    float *qg = malloc(sizeof(float) * (size_t)G * hd), *scg = malloc(sizeof(float) * (size_t)G * nc);
                    float *g1 = malloc(sizeof(float) * (size_t)G * hd), *g2 = malloc(sizeof(float) * (size_t)G * hd);
                    for (int j = 0; j < G * hd; j++) qg[j] = rndf() * 4.0f;
                    attention_group_ref(qg, G, K, V, f16, stride, nc, hd, scg, g1);
                    attention_group_cpu(qg, G, K, V, f16, stride, nc, hd, scg, g2);
                    CHECK_MSG(memcmp(g1, g2, sizeof(float) * (size_t)G * hd) == 0,
                              "%s attention group G=%d hd=%d ctx=%d f16=%d not bit-identical",
                              cpu_isa_name(isa), G, hd, nc, f16);
                    free(qg), free(scg), free(g1), free(g2);
                }
                free(q), free(kf), free(vf), free(kh), free(vh), free(sc), free(o1), free(o2);
            }
}

/* The int8 lm_head: the fast quantizer makes the reference's bytes and scales exactly (rows with
 * an exact .5 after division, an all-zero row, a NaN weight, f16 / bf16 / f32 sources); the fast
 * GEMV (1..3 threads, M tokens) agrees with lm_head_i8_gemv_ref to fp32 rounding. */
static void test_lm_head_i8(CpuIsa isa) {
    const struct { int n, k, M; } shapes[] = {{1, 8, 1}, {7, 100, 1}, {37, 2560, 1}, {66, 96, 3}, {9, 17, 2}};
    const CpuDenseType types[] = {CPU_DENSE_F32, CPU_DENSE_F16, CPU_DENSE_BF16};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int ti = 0; ti < 3; ti++) {
            const int n = shapes[si].n, k = shapes[si].k, M = shapes[si].M;
            const CpuDenseType t = types[ti];
            const size_t esz = t == CPU_DENSE_F32 ? 4 : 2;
            void *w = malloc(esz * (size_t)n * k);
            for (size_t i = 0; i < (size_t)n * k; i++) {
                const int r = (int)(i / (size_t)k);
                /* row 1: multiples of 1/2 up to 127 (q = v / (127/127) lands on .5 exactly) */
                float v = r == 1 ? (float)((int)(rnd() % 255) - 127) * 0.5f : rndf() * (float)(1 + r % 5);
                if (r == 2 % n && n > 2) v = 0.0f; /* an all-zero row: scale 0, q 0 */
                if (r == 1 && i % (size_t)k == 3 % (size_t)k) v = 127.0f;
                if (t == CPU_DENSE_F32) ((float *)w)[i] = v;
                else if (t == CPU_DENSE_F16) ((uint16_t *)w)[i] = f32_to_f16_ref(v);
                else {
                    uint32_t b;
                    memcpy(&b, &v, 4);
                    ((uint16_t *)w)[i] = (uint16_t)(b >> 16);
                }
            }
            if (n > 3 && t == CPU_DENSE_F32) ((float *)w)[(size_t)3 * k + k / 2] = NAN;
            int8_t *qr = malloc((size_t)n * k), *qf = malloc((size_t)n * k);
            float *sr = malloc(sizeof(float) * (size_t)n), *sf = malloc(sizeof(float) * (size_t)n);
            lm_head_quant_i8_ref(t, w, n, k, qr, sr);
            lm_head_quant_i8_cpu(t, w, n, k, qf, sf);
            CHECK_MSG(memcmp(qr, qf, (size_t)n * k) == 0 && memcmp(sr, sf, sizeof(float) * (size_t)n) == 0,
                      "%s int8 lm_head quant type %d n=%d k=%d differs from the reference",
                      cpu_isa_name(isa), (int)t, n, k);
            float *x = malloc(sizeof(float) * (size_t)M * k);
            float *yr = malloc(sizeof(float) * (size_t)M * n), *yg = malloc(sizeof(float) * (size_t)M * n);
            for (size_t i = 0; i < (size_t)M * k; i++) x[i] = rndf();
            double mag = 0; /* max over rows of scale * sum |q x|: the size fp32 rounding scales with */
            for (int m = 0; m < M; m++) {
                lm_head_i8_gemv_ref(qr, sr, n, k, x + (size_t)m * k, yr + (size_t)m * n);
                for (int r = 0; r < n; r++) {
                    double a = 0;
                    for (int j = 0; j < k; j++) a += fabs((double)qr[(size_t)r * k + j] * x[(size_t)m * k + j]);
                    mag = fmax(mag, a * (isnan(sr[r]) ? 0 : sr[r]));
                }
            }
            for (int th = 1; th <= 3; th++) {
                CpuPool *p = cpu_pool_create(th);
                memset(yg, 0, sizeof(float) * (size_t)M * n);
                lm_head_i8_gemm_mt(p, qf, sf, n, k, x, M, yg, n);
                const double e = rel_err(yr, yg, M * n, mag > 0 ? mag : 1.0);
                CHECK_MSG(e < 1e-6, "%s int8 lm_head gemv type %d n=%d k=%d M=%d threads %d: err %g",
                          cpu_isa_name(isa), (int)t, n, k, M, th, e);
                cpu_pool_destroy(p);
            }
            free(w), free(qr), free(qf), free(sr), free(sf), free(x), free(yr), free(yg);
        }
}

int main(void) {
    const CpuIsa best = cpu_isa_detect();
    printf("CPU: best ISA %s, %d cores\n", cpu_isa_name(best), cpu_num_cores());
    for (int isa = CPU_ISA_SCALAR; isa <= (int)best; isa++) {
        REQUIRE(cpu_isa_set((CpuIsa)isa) == (CpuIsa)isa);
        printf("-- %s\n", cpu_isa_name((CpuIsa)isa));
        test_quant((CpuIsa)isa);
        test_gemm_shapes((CpuIsa)isa);
        test_half((CpuIsa)isa);
        test_dense((CpuIsa)isa);
        test_lm_head_i8((CpuIsa)isa);
        test_norm_attention((CpuIsa)isa);
    }
    cpu_isa_set(CPU_ISA_AVX512);
    /* cpu_split covers [0, n) exactly, aligned */
    for (int n = 0; n < 50; n++)
        for (int nth = 1; nth <= 5; nth++) {
            int next = 0, ok = 1;
            for (int i = 0; i < nth; i++) {
                int b, e;
                cpu_split(n, 4, i, nth, &b, &e);
                ok &= b == next && e >= b && (b % 4 == 0 || b == n);
                next = e;
            }
            CHECK(ok && next == n);
        }
    return check_report("test_kernels_cpu");
}
