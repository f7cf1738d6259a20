/* Each CUDA kernel against the scalar references of kernels/w2a8.h (and plain loops here):
 * exact int32 accumulators of the GEMV and GEMM, the same float epilogue bit for bit, the fused
 * quant prologue equal to quant_act_ref, poisoned outputs, ragged shapes (odd N, k_in < k_pad),
 * rejected bad shapes; the lm_head + argmax, and attention (decode split over the context at
 * every GQA ratio and head_dim the families use, contexts past 4096; prefill).
 * `test_kernels_cuda attention`: the decode attention tests alone, small (for compute-sanitizer).
 * Skips (77) without a CUDA device. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/w2a8.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(float a) { return ((float)(rnd() % 200001) / 100000.0f - 1.0f) * a; }

static void *dmalloc(size_t n) {
    void *p = NULL;
    REQUIRE(cudaMalloc(&p, n) == cudaSuccess);
    return p;
}
static void up(void *d, const void *h, size_t n) { REQUIRE(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice) == cudaSuccess); }
static void down(void *h, const void *d, size_t n) {
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost) == cudaSuccess);
}

/* Random I2_S rows; about 1 in 50 code pairs is 3 (never written, read as 0). */
static void rand_i2s(uint8_t *w, size_t bytes) {
    for (size_t i = 0; i < bytes; i++) {
        uint8_t v = 0;
        for (int j = 0; j < 4; j++) {
            uint32_t c = rnd() % 100;
            v |= (uint8_t)((c < 2 ? 3 : c % 3) << (2 * j));
        }
        w[i] = v;
    }
}

static float host_y(int32_t acc, float s, float g) { return (float)acc / s * g; }

static void test_gemv(int n, int k_in, int glu) {
    const int k_pad = i2s_round_up_k(k_in);
    const size_t rb = (size_t)k_pad / 4;
    uint8_t *hw = malloc(rb * n);
    rand_i2s(hw, rb * n);
    float *x = malloc(sizeof(float) * k_pad);
    for (int i = 0; i < k_in; i++) x[i] = frand(3.0f);
    int8_t *q = malloc(k_pad);
    const float s = quant_act_ref(x, k_in, k_pad, q);
    int32_t qsum = 0;
    for (int i = 0; i < k_pad; i++) qsum += q[i];
    int32_t *ref = malloc(sizeof(int32_t) * n);
    w2a8_gemv_ref(hw, n, k_pad, q, ref);

    uint8_t *dw = dmalloc(rb * n);
    float *dx = dmalloc(sizeof(float) * k_pad);
    int8_t *dq = dmalloc(k_pad);
    float *ds = dmalloc(4);
    int32_t *dqs = dmalloc(4);
    void *dout = dmalloc(sizeof(float) * n);
    up(dx, x, sizeof(float) * k_in);
    up(dq, q, k_pad);
    up(ds, &s, 4);
    up(dqs, &qsum, 4);
    KcudaTernary m = {0};
    m.d_codes = dw;
    m.n_out = n;
    m.k_pad = k_pad;
    int32_t *got = malloc(sizeof(int32_t) * n);
    float *gotf = malloc(sizeof(float) * n);
    if (!glu) {
        REQUIRE(kcuda_upload_i2s(dw, hw, n, k_pad, 0, 1) == 0);
        m.seg_end[0] = n / 2;
        m.seg_end[1] = (3 * n) / 4;
        m.gamma[0] = 0.75f, m.gamma[1] = 1.25f, m.gamma[2] = 2.5f;
        /* (1) pre-quantized input, exact int32 */
        REQUIRE(cudaMemset(dout, 0x7f, sizeof(float) * n) == cudaSuccess);
        CHECK_EQ_INT(kcuda_w2a8_gemv(&m, NULL, 0, NULL, 0, dq, ds, dqs, KCUDA_EP_I32, dout, 0, NULL), 0);
        down(got, dout, sizeof(int32_t) * n);
        int bad = 0;
        for (int r = 0; r < n; r++) bad += got[r] != ref[r];
        CHECK_MSG(bad == 0, "gemv %dx%d prequant: %d rows differ", n, k_in, bad);
        /* (2) the fused quantization prologue, exact int32 */
        REQUIRE(cudaMemset(dout, 0x7f, sizeof(float) * n) == cudaSuccess);
        CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, k_in, NULL, 0, NULL, NULL, NULL, KCUDA_EP_I32, dout, 1, NULL), 0);
        down(got, dout, sizeof(int32_t) * n);
        bad = 0;
        for (int r = 0; r < n; r++) bad += got[r] != ref[r];
        CHECK_MSG(bad == 0, "gemv %dx%d fused quant: %d rows differ", n, k_in, bad);
        /* (3) float epilogue with segment scales, bit-identical to the host formula */
        REQUIRE(cudaMemset(dout, 0xff, sizeof(float) * n) == cudaSuccess);
        CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, k_in, NULL, 0, NULL, NULL, NULL, KCUDA_EP_F32, dout, 0, NULL), 0);
        down(gotf, dout, sizeof(float) * n);
        bad = 0;
        for (int r = 0; r < n; r++) {
            const float g = r < m.seg_end[0] ? m.gamma[0] : r < m.seg_end[1] ? m.gamma[1] : m.gamma[2];
            bad += gotf[r] != host_y(ref[r], s, g);
        }
        CHECK_MSG(bad == 0, "gemv %dx%d f32 epilogue: %d rows differ", n, k_in, bad);
        /* (4) residual add */
        float *base = malloc(sizeof(float) * n);
        for (int r = 0; r < n; r++) base[r] = frand(10.0f);
        up(dout, base, sizeof(float) * n);
        CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, k_in, NULL, 0, NULL, NULL, NULL, KCUDA_EP_RESID, dout, 0, NULL), 0);
        down(gotf, dout, sizeof(float) * n);
        bad = 0;
        for (int r = 0; r < n; r++) {
            const float g = r < m.seg_end[0] ? m.gamma[0] : r < m.seg_end[1] ? m.gamma[1] : m.gamma[2];
            bad += gotf[r] != base[r] + host_y(ref[r], s, g);
        }
        CHECK_MSG(bad == 0, "gemv %dx%d residual epilogue: %d rows differ", n, k_in, bad);
        free(base);
    } else {
        /* host rows 0..n/2-1 = gate, n/2.. = up; device interleaves them */
        const int h = n / 2;
        REQUIRE(kcuda_upload_i2s(dw, hw, h, k_pad, 0, 2) == 0);
        REQUIRE(kcuda_upload_i2s(dw, hw + rb * h, h, k_pad, 1, 2) == 0);
        m.glu = 1;
        m.gamma[0] = 0.5f, m.gamma[1] = 1.5f;
        REQUIRE(cudaMemset(dout, 0xff, sizeof(float) * n) == cudaSuccess);
        CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, k_in, NULL, 0, NULL, NULL, NULL, KCUDA_EP_GLU, dout, 0, NULL), 0);
        down(gotf, dout, sizeof(float) * h);
        int bad = 0;
        for (int i = 0; i < h; i++) {
            const float g = host_y(ref[i], s, 0.5f), u = host_y(ref[h + i], s, 1.5f);
            const float r = g > 0 ? g : 0;
            bad += gotf[i] != r * r * u;
        }
        CHECK_MSG(bad == 0, "gemv glu %dx%d: %d outputs differ", n, k_in, bad);
        /* GEMM GLU, 3 tokens: the same input three times */
        int8_t *q3 = malloc((size_t)3 * k_pad);
        float s3[3] = {s, s, s};
        int32_t qs3[3] = {qsum, qsum, qsum};
        for (int t = 0; t < 3; t++) memcpy(q3 + (size_t)t * k_pad, q, k_pad);
        int8_t *dq3 = dmalloc((size_t)3 * k_pad);
        float *ds3 = dmalloc(12);
        int32_t *dqs3 = dmalloc(12);
        float *do3 = dmalloc(sizeof(float) * 3 * h);
        up(dq3, q3, (size_t)3 * k_pad);
        up(ds3, s3, 12);
        up(dqs3, qs3, 12);
        REQUIRE(cudaMemset(do3, 0xff, sizeof(float) * 3 * h) == cudaSuccess);
        CHECK_EQ_INT(kcuda_w2a8_gemm(&m, dq3, ds3, dqs3, 3, KCUDA_EP_GLU, do3, h, 0, NULL), 0);
        float *g3 = malloc(sizeof(float) * 3 * h);
        down(g3, do3, sizeof(float) * 3 * h);
        bad = 0;
        for (int t = 0; t < 3; t++)
            for (int i = 0; i < h; i++) bad += g3[(size_t)t * h + i] != gotf[i];
        CHECK_MSG(bad == 0, "gemm glu %dx%d: %d outputs differ from the GEMV", n, k_in, bad);
        free(q3), free(g3);
        cudaFree(dq3), cudaFree(ds3), cudaFree(dqs3), cudaFree(do3);
    }
    free(hw), free(x), free(q), free(ref), free(got), free(gotf);
    cudaFree(dw), cudaFree(dx), cudaFree(dq), cudaFree(ds), cudaFree(dqs), cudaFree(dout);
}

/* The GEMV's two kernels (w2a8_gemv.cu picks by shape) give the same bits with the RMSNorm
 * prologue: a 13824-row matrix (kernel 5, two rows per lane group) and its first 2560 rows
 * alone (kernel 3) on the same input, norm weights and scales; rows 0..2559 must match bit for
 * bit (same per-thread partials and reduction order). With each trigger placement. */
static void test_gemv_kernels_agree(int k_in, int late) {
    const int n = 13824, n_small = 2560, k_pad = i2s_round_up_k(k_in);
    const size_t rb = (size_t)k_pad / 4;
    uint8_t *hw = malloc(rb * n);
    rand_i2s(hw, rb * n);
    float *x = malloc(sizeof(float) * k_in), *nw = malloc(sizeof(float) * k_in);
    for (int i = 0; i < k_in; i++) x[i] = frand(3.0f), nw[i] = 0.25f + (float)(rnd() % 1000) / 500.0f;
    uint8_t *dw = dmalloc(rb * n);
    float *dx = dmalloc(sizeof(float) * k_in), *dnw = dmalloc(sizeof(float) * k_in);
    float *dbig = dmalloc(sizeof(float) * n), *dsmall = dmalloc(sizeof(float) * n_small);
    REQUIRE(kcuda_upload_i2s(dw, hw, n, k_pad, 0, 1) == 0);
    up(dx, x, sizeof(float) * k_in);
    up(dnw, nw, sizeof(float) * k_in);
    KcudaTernary m = {0};
    m.d_codes = dw;
    m.n_out = n;
    m.k_pad = k_pad;
    m.seg_end[0] = m.seg_end[1] = n;
    m.gamma[0] = m.gamma[1] = m.gamma[2] = 0.75f;
    REQUIRE(cudaMemset(dbig, 0xff, sizeof(float) * n) == cudaSuccess);
    REQUIRE(cudaMemset(dsmall, 0xff, sizeof(float) * n_small) == cudaSuccess);
    CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, k_in, dnw, 1e-5f, NULL, NULL, NULL, KCUDA_EP_F32, dbig,
                                 late ? KCUDA_PDL_AFTER_WORK : KCUDA_PDL_LATE, NULL), 0);
    m.n_out = m.seg_end[0] = m.seg_end[1] = n_small;
    CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, k_in, dnw, 1e-5f, NULL, NULL, NULL, KCUDA_EP_F32, dsmall,
                                 late ? KCUDA_PDL_LATE : KCUDA_PDL_EARLY, NULL), 0);
    float *big = malloc(sizeof(float) * n), *small = malloc(sizeof(float) * n_small);
    down(big, dbig, sizeof(float) * n);
    down(small, dsmall, sizeof(float) * n_small);
    int bad = 0, nan = 0;
    for (int r = 0; r < n_small; r++) bad += memcmp(&big[r], &small[r], 4) != 0;
    for (int r = 0; r < n; r++) nan += big[r] != big[r];
    CHECK_MSG(bad == 0 && nan == 0, "gemv %dx%d with norm: %d rows differ between the kernels, %d not written", n,
              k_in, bad, nan);
    free(hw), free(x), free(nw), free(big), free(small);
    cudaFree(dw), cudaFree(dx), cudaFree(dnw), cudaFree(dbig), cudaFree(dsmall);
}

/* GEMM: M tokens, exact int32 against w2a8_gemv_ref per token, and the f32 epilogue. Also the
 * per-row norm+quant kernel (no norm) against quant_act_ref. */
static void test_gemm(int M, int n, int k_in) {
    const int k_pad = i2s_round_up_k(k_in);
    const size_t rb = (size_t)k_pad / 4;
    uint8_t *hw = malloc(rb * n);
    rand_i2s(hw, rb * n);
    float *x = calloc((size_t)M * k_in, sizeof(float));
    for (size_t i = 0; i < (size_t)M * k_in; i++) x[i] = frand(2.0f);
    int8_t *q = malloc((size_t)M * k_pad);
    float *s = malloc(sizeof(float) * M);
    for (int t = 0; t < M; t++) s[t] = quant_act_ref(x + (size_t)t * k_in, k_in, k_pad, q + (size_t)t * k_pad);
    uint8_t *dw = dmalloc(rb * n);
    float *dx = dmalloc(sizeof(float) * M * k_in);
    int8_t *dq = dmalloc((size_t)M * k_pad);
    float *ds = dmalloc(sizeof(float) * M);
    int32_t *dqs = dmalloc(sizeof(int32_t) * M);
    int32_t *dout = dmalloc(sizeof(int32_t) * M * n);
    REQUIRE(kcuda_upload_i2s(dw, hw, n, k_pad, 0, 1) == 0);
    up(dx, x, sizeof(float) * M * k_in);
    REQUIRE(cudaMemset(dq, 0x55, (size_t)M * k_pad) == cudaSuccess);
    CHECK_EQ_INT(kcuda_rmsnorm_quant(dx, M, k_in, k_in, k_pad, NULL, 0, dq, ds, dqs, 0, NULL), 0);
    int8_t *gq = malloc((size_t)M * k_pad);
    float *gs = malloc(sizeof(float) * M);
    down(gq, dq, (size_t)M * k_pad);
    down(gs, ds, sizeof(float) * M);
    CHECK_MSG(memcmp(gq, q, (size_t)M * k_pad) == 0, "rmsnorm_quant rows (no norm) differ from quant_act_ref");
    int bad = 0;
    for (int t = 0; t < M; t++) bad += gs[t] != s[t];
    CHECK_MSG(bad == 0, "quant scales differ in %d rows", bad);
    REQUIRE(cudaMemset(dout, 0x7f, sizeof(int32_t) * M * n) == cudaSuccess);
    KcudaTernary m = {0};
    m.d_codes = dw;
    m.n_out = n;
    m.k_pad = k_pad;
    m.seg_end[0] = m.seg_end[1] = n;
    m.gamma[0] = m.gamma[1] = m.gamma[2] = 0.3f;
    CHECK_EQ_INT(kcuda_w2a8_gemm(&m, dq, ds, dqs, M, KCUDA_EP_I32, dout, n, 0, NULL), 0);
    int32_t *got = malloc(sizeof(int32_t) * M * n), *ref = malloc(sizeof(int32_t) * n);
    down(got, dout, sizeof(int32_t) * M * n);
    bad = 0;
    for (int t = 0; t < M; t++) {
        w2a8_gemv_ref(hw, n, k_pad, q + (size_t)t * k_pad, ref);
        for (int r = 0; r < n; r++) bad += got[(size_t)t * n + r] != ref[r];
    }
    CHECK_MSG(bad == 0, "gemm M=%d %dx%d: %d outputs differ", M, n, k_in, bad);
    CHECK_EQ_INT(kcuda_w2a8_gemm(&m, dq, ds, dqs, M, KCUDA_EP_F32, dout, n, 0, NULL), 0);
    float *gf = (float *)got;
    down(gf, dout, sizeof(float) * M * n);
    bad = 0;
    for (int t = 0; t < M; t++) {
        w2a8_gemv_ref(hw, n, k_pad, q + (size_t)t * k_pad, ref);
        for (int r = 0; r < n; r++) bad += gf[(size_t)t * n + r] != host_y(ref[r], s[t], 0.3f);
    }
    CHECK_MSG(bad == 0, "gemm M=%d %dx%d f32: %d outputs differ", M, n, k_in, bad);
    free(hw), free(x), free(q), free(s), free(gq), free(gs), free(got), free(ref);
    cudaFree(dw), cudaFree(dx), cudaFree(dq), cudaFree(ds), cudaFree(dqs), cudaFree(dout);
}

static void test_bad_shapes(void) {
    uint8_t *dw = dmalloc(4096);
    float *dx = dmalloc(4096);
    float *dout = dmalloc(4096);
    KcudaTernary m = {0};
    m.d_codes = dw;
    m.n_out = 8;
    m.k_pad = 100; /* not a multiple of 128 */
    CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, 100, NULL, 0, NULL, NULL, NULL, KCUDA_EP_F32, dout, 0, NULL), KCUDA_ERR_SHAPE);
    CHECK(strstr(kcuda_last_error(), "multiple of 128") != NULL);
    CHECK_EQ_INT(kcuda_w2a8_gemm(&m, (int8_t *)dx, dx, (int32_t *)dx, 4, KCUDA_EP_F32, dout, 8, 0, NULL), KCUDA_ERR_SHAPE);
    m.k_pad = 128;
    CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, 200, NULL, 0, NULL, NULL, NULL, KCUDA_EP_F32, dout, 0, NULL), KCUDA_ERR_SHAPE);
    CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, 128, NULL, 0, NULL, NULL, NULL, KCUDA_EP_GLU, dout, 0, NULL), KCUDA_ERR_SHAPE);
    CHECK_EQ_INT(kcuda_w2a8_gemv(&m, NULL, 0, NULL, 0, NULL, NULL, NULL, KCUDA_EP_F32, dout, 0, NULL), KCUDA_ERR_ARG);
    m.d_codes = dw + 4; /* misaligned */
    CHECK_EQ_INT(kcuda_w2a8_gemv(&m, dx, 128, NULL, 0, NULL, NULL, NULL, KCUDA_EP_F32, dout, 0, NULL), KCUDA_ERR_ARG);
    CHECK_EQ_INT(kcuda_lm_head(KCUDA_F16, dw, 10, 100, dx, NULL, 0, dout, NULL, NULL, 0, NULL), KCUDA_ERR_SHAPE);
    KcudaAttnShape a = {4, 3, 64, 16, 0, dx}; /* 4 heads over 3 kv heads */
    CHECK_EQ_INT(kcuda_attn_prefill(&a, dx, 1024, 1, 0, (uint16_t *)dw, (uint16_t *)dw, dout, 0, NULL), KCUDA_ERR_SHAPE);
    CHECK_EQ_INT(kcuda_rmsnorm_quant(dx, 1, 64, 200, 128, NULL, 0, (int8_t *)dw, dx, (int32_t *)dx, 0, NULL), KCUDA_ERR_SHAPE);
    cudaFree(dw), cudaFree(dx), cudaFree(dout);
}

static uint16_t f2h(float f) { /* round to nearest even; subnormals too, no overflow (test data) */
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax < 0x38800000u) /* below 2^-14: multiples of 2^-24 (exact scaling, rintf rounds to even) */
        return (uint16_t)(sign | (uint32_t)rintf(fabsf(f) * 16777216.0f));
    uint32_t h = (ax >> 13) - ((127u - 15u) << 10);
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}
static float h2f(uint16_t h) {
    const uint32_t e = (h >> 10) & 0x1f, mnt = h & 0x3ff, sign = (uint32_t)(h & 0x8000u) << 16;
    if (e == 0) return (sign ? -1.0f : 1.0f) * (float)mnt / 16777216.0f;
    uint32_t x = sign | ((e + 112u) << 23) | (mnt << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static void test_lm_head(KcudaDtype type, int n, int k) {
    const size_t es = type == KCUDA_F32 ? 4 : 2;
    void *hw = malloc(es * n * k);
    double *wf = malloc(sizeof(double) * n * k);
    for (size_t i = 0; i < (size_t)n * k; i++) {
        const float v = frand(1.0f);
        if (type == KCUDA_F32) ((float *)hw)[i] = v, wf[i] = v;
        else if (type == KCUDA_F16) ((uint16_t *)hw)[i] = f2h(v), wf[i] = h2f(f2h(v));
        else {
            uint32_t u;
            memcpy(&u, &v, 4);
            ((uint16_t *)hw)[i] = (uint16_t)(u >> 16);
            u &= 0xffff0000u;
            float t;
            memcpy(&t, &u, 4);
            wf[i] = t;
        }
    }
    float *x = malloc(sizeof(float) * k), *nw = malloc(sizeof(float) * k);
    double ss = 0;
    for (int i = 0; i < k; i++) x[i] = frand(2.0f), nw[i] = 0.5f + frand(0.4f), ss += (double)x[i] * x[i];
    const double inv = 1.0 / sqrt(ss / k + 1e-5);
    void *dw = dmalloc(es * n * k);
    float *dx = dmalloc(sizeof(float) * k), *dn = dmalloc(sizeof(float) * k), *dl = dmalloc(sizeof(float) * n);
    int *dbest = dmalloc(sizeof(int) * kcuda_lm_head_scratch(n)), *dam = dmalloc(sizeof(int));
    up(dw, hw, es * n * k);
    up(dx, x, sizeof(float) * k);
    up(dn, nw, sizeof(float) * k);
    REQUIRE(cudaMemset(dl, 0xff, sizeof(float) * n) == cudaSuccess);
    CHECK_EQ_INT(kcuda_lm_head(type, dw, n, k, dx, dn, 1e-5f, dl, dbest, dam, 1, NULL), 0);
    float *got = malloc(sizeof(float) * n);
    int am = -1;
    down(got, dl, sizeof(float) * n);
    down(&am, dam, sizeof(int));
    double maxerr = 0, maxref = 0;
    int ref_am = 0;
    for (int r = 0; r < n; r++) {
        double acc = 0;
        for (int j = 0; j < k; j++) acc += wf[(size_t)r * k + j] * (nw[j] * (x[j] * inv));
        maxerr = fmax(maxerr, fabs(acc - got[r]));
        maxref = fmax(maxref, fabs(acc));
        if (got[r] > got[ref_am]) ref_am = r;
    }
    CHECK_MSG(maxerr <= 1e-5 * maxref + 1e-5, "lm_head type %d: max error %g (max |logit| %g)", (int)type, maxerr, maxref);
    CHECK_EQ_INT(am, ref_am);
    free(hw), free(wf), free(x), free(nw), free(got);
    cudaFree(dw), cudaFree(dx), cudaFree(dn), cudaFree(dl), cudaFree(dbest), cudaFree(dam);
}

/* Each float type through both code paths of the kernel (a row in one set of loads per lane,
 * double-buffered, and longer rows in rounds of loads), with one chunk per row, ragged last
 * rounds, and the 2B shape's k. */
static void test_lm_head_float_all(void) {
    test_lm_head(KCUDA_F16, 1000, 256);
    test_lm_head(KCUDA_F16, 3001, 2560);
    test_lm_head(KCUDA_F16, 40, 8192);
    test_lm_head(KCUDA_F16, 9, 8);
    test_lm_head(KCUDA_BF16, 777, 2560);
    test_lm_head(KCUDA_BF16, 65, 4104);
    test_lm_head(KCUDA_F32, 300, 132);
    test_lm_head(KCUDA_F32, 100, 2560);
}

/* Attention: host reference over f16-rounded K/V (RoPE rotate-half or adjacent). */
static void rope_host(float *v, int hd, int pos, float theta, int style) {
    const int half = hd / 2;
    for (int i = 0; i < half; i++) {
        const float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        const float a = (float)pos * inv_freq, c = cosf(a), s = sinf(a);
        const int i0 = style ? 2 * i : i, i1 = style ? 2 * i + 1 : i + half;
        const float x0 = v[i0], x1 = v[i1];
        v[i0] = x0 * c - x1 * s;
        v[i1] = x1 * c + x0 * s;
    }
}

static float *rope_table(int ctx, int hd, float theta) {
    const int half = hd / 2;
    float *rope = malloc(sizeof(float) * ctx * hd);
    for (int i = 0; i < half; i++) {
        const float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        for (int p = 0; p < ctx; p++) {
            rope[((size_t)p * half + i) * 2] = cosf((float)p * inv_freq);
            rope[((size_t)p * half + i) * 2 + 1] = sinf((float)p * inv_freq);
        }
    }
    return rope;
}

/* Elements of a cache row written by the device (dk, dv: hd values) that differ from the host's
 * rotated k and v (f16-rounded already, exact in f16): V bit for bit, K within one f16 ulp (the
 * device may evaluate the RoPE products with fused multiply-adds, so its f32 result can differ
 * from the host's in the last bit and then round to the neighbouring f16). */
static void cache_row_bad(const uint16_t *dk, const uint16_t *dv, const float *K, const float *V, int hd, int *kbad,
                          int *vbad) {
    for (int i = 0; i < hd; i++) {
        const uint16_t hb = f2h(K[i]);
        const int mg = dk[i] & 0x7fff, mh = hb & 0x7fff; /* distance in f16 steps, across 0 too */
        const int dist = ((dk[i] ^ hb) & 0x8000) == 0 ? abs(mg - mh) : mg + mh;
        if (dist > 1) (*kbad)++;
        if (dv[i] != f2h(V[i])) (*vbad)++;
    }
}

typedef struct {
    double worst, worst_err, worst_tol;
    int bad;
} AttnErr;

/* One query position against a float64 reference computed from the device's own f16 cache (kc,
 * vc: [n_kv][ctx][hd]) over rows 0..n_rows-1 (n_rows = P + 1; a negative control passes fewer),
 * with the query qraw (the raw qkv row: q of every head first) rotated on the host (Q, n_heads *
 * hd), and a per-element bound instead of one absolute threshold.
 * Bound (u = 2^-24, float32 unit roundoff), first order, for output element i of head h:
 *   score error    e_s <= u (hd + 8) B,  B = max_j sum_d |k_jd| (|qa_d| + |qb_d|) / sqrt(hd),
 *                  where qa, qb are the two raw q values that RoPE mixes into q_d (a length-hd
 *                  float32 dot product, the rotation and the scale);
 *   weights        p_j relative error <= 2 e_s + u (2 n + 2 max|s_j| + 80) (max subtraction, expf
 *                  of an argument up to 2 max|s|, sums of n terms, the online-softmax rescales
 *                  and the split combine);
 *   output         |o_i - ref_i| <= (that + u (n + 80)) * sum_j p_j |v_ji|.
 * The check allows twice the bound (second-order terms). Errors of a real fault (a wrong position,
 * a lost split, a stale row, another head's query) are of the size of the values themselves,
 * orders above it (the negative controls of test_attn_positions show that on the device); a
 * fixed 2e-5 instead failed once at 2.6e-5 on other random inputs. */
static void attn_step_check(int n_heads, int n_kv, int hd, int ctx, int n_rows, int style, const float *qraw,
                            const float *Q, const uint16_t *kc, const uint16_t *vc, const float *got, AttnErr *e) {
    const double u = 1.0 / 16777216.0;
    const int half = hd / 2;
    double *sc = malloc(sizeof(double) * n_rows), *p = malloc(sizeof(double) * n_rows);
    for (int h = 0; h < n_heads; h++) {
        const int g = h / (n_heads / n_kv);
        const float *q = Q + (size_t)h * hd, *qr = qraw + (size_t)h * hd;
        double mx = -1e300, sum = 0, B = 0, smax = 0;
        for (int j = 0; j < n_rows; j++) {
            double d = 0, b = 0;
            for (int i = 0; i < hd; i++) {
                const double kv = h2f(kc[((size_t)g * ctx + j) * hd + i]);
                const int pi = style ? (i ^ 1) : (i < half ? i + half : i - half);
                d += (double)q[i] * kv;
                b += fabs(kv) * (fabs(qr[i]) + fabs(qr[pi]));
            }
            sc[j] = d / sqrt((double)hd);
            B = fmax(B, b / sqrt((double)hd));
            mx = fmax(mx, sc[j]);
            smax = fmax(smax, fabs(sc[j]));
        }
        for (int j = 0; j < n_rows; j++) sum += (p[j] = exp(sc[j] - mx));
        const double n = n_rows, es = u * (hd + 8) * B;
        const double rel = 2 * es + u * (2 * n + 2 * smax + 80) + u * (n + 80);
        for (int i = 0; i < hd; i++) {
            double o = 0, av = 0;
            for (int j = 0; j < n_rows; j++) {
                const double vv = h2f(vc[((size_t)g * ctx + j) * hd + i]);
                o += p[j] / sum * vv;
                av += p[j] / sum * fabs(vv);
            }
            const double tol = 2 * rel * av, err = fabs((double)got[(size_t)h * hd + i] - o);
            if (!(err <= tol)) e->bad++;
            if (tol > 0 && err / tol > e->worst) e->worst = err / tol, e->worst_err = err, e->worst_tol = tol;
        }
    }
    free(sc), free(p);
}

/* Checks attention outputs got [steps][n_heads*hd] (each step t attends positions 0..t) and the
 * cache rows 0..steps-1 against the host (attn_step_check, cache_row_bad). */
static void attn_check(int n_heads, int n_kv, int hd, int ctx, int steps, int style, const float *qkv,
                       const float *Q, const float *K, const float *V, const uint16_t *kc, const uint16_t *vc,
                       const float *got, const char *what) {
    const int qkv_dim = (n_heads + 2 * n_kv) * hd;
    int kbad = 0, vbad = 0;
    for (int t = 0; t < steps; t++)
        for (int g = 0; g < n_kv; g++) {
            const size_t c = ((size_t)g * ctx + t) * hd, hsrc = ((size_t)t * n_kv + g) * hd;
            cache_row_bad(kc + c, vc + c, K + hsrc, V + hsrc, hd, &kbad, &vbad);
        }
    CHECK_MSG(kbad == 0 && vbad == 0, "attention %s %d/%d hd %d: cache rows wrong (K %d, V %d elements)", what,
              n_heads, n_kv, hd, kbad, vbad);
    AttnErr e = {0};
    for (int t = 0; t < steps; t++)
        attn_step_check(n_heads, n_kv, hd, ctx, t + 1, style, qkv + (size_t)t * qkv_dim, Q + (size_t)t * n_heads * hd,
                        kc, vc, got + (size_t)t * n_heads * hd, &e);
    printf("attention %s %d/%d hd %d style %d, %d steps: worst error %.3g = %.2f of its bound %.3g\n", what, n_heads,
           n_kv, hd, style, steps, e.worst_err, e.worst, e.worst_tol);
    CHECK_MSG(e.bad == 0, "attention %s %d/%d hd %d style %d: %d outputs beyond the error bound", what, n_heads, n_kv,
              hd, style, e.bad);
}

/* The split counters must be left zero (the next launch relies on it). */
static void check_counts_zero(const int *dcount, int n, const char *what) {
    int *c = malloc(sizeof(int) * n), nz = 0;
    down(c, dcount, sizeof(int) * n);
    for (int i = 0; i < n; i++) nz += c[i] != 0;
    CHECK_MSG(nz == 0, "attention %s: %d split counters left non-zero", what, nz);
    free(c);
}

/* The decode kernels' common signature, and the one decode takes at position P: with by_pos the
 * backend's choice (the per-query-head kernel below kcuda_attn_decode_head_until, where the
 * shape has it), else always the per-KV-group kernel (which must be right at every position). */
typedef int (*AttnDecodeFn)(const KcudaAttnShape *, const float *, uint16_t *, uint16_t *, const int *, float *,
                            float *, int *, int, void *);
static AttnDecodeFn attn_decode_at(const KcudaAttnShape *a, int P, int by_pos) {
    return by_pos && P < kcuda_attn_decode_head_until(a) ? kcuda_attn_decode_head : kcuda_attn_decode;
}

/* Decode one position at a time from 0 (each step writes its cache row and attends 0..t), with
 * the split scratch poisoned (NaN) before every other step, then prefill of the same tokens in
 * two calls (the tiled kernels, or attention_wide.cu for the heads they cannot hold), both
 * against the host. by_pos: attn_decode_at. */
static void test_attention_k(int n_heads, int n_kv, int hd, int ctx, int steps, int style, int by_pos) {
    const float theta = 10000.0f;
    const int qkv_dim = (n_heads + 2 * n_kv) * hd;
    float *rope = rope_table(ctx, hd, theta);
    float *qkv = malloc(sizeof(float) * qkv_dim * steps);
    for (int i = 0; i < qkv_dim * steps; i++) qkv[i] = frand(1.5f);
    /* host K/V after rope, f16-rounded */
    float *K = malloc(sizeof(float) * steps * n_kv * hd), *V = malloc(sizeof(float) * steps * n_kv * hd);
    float *Q = malloc(sizeof(float) * steps * n_heads * hd);
    for (int t = 0; t < steps; t++) {
        const float *row = qkv + (size_t)t * qkv_dim;
        memcpy(Q + (size_t)t * n_heads * hd, row, sizeof(float) * n_heads * hd);
        for (int h = 0; h < n_heads; h++) rope_host(Q + ((size_t)t * n_heads + h) * hd, hd, t, theta, style);
        for (int g = 0; g < n_kv; g++) {
            float *k = K + ((size_t)t * n_kv + g) * hd, *v = V + ((size_t)t * n_kv + g) * hd;
            memcpy(k, row + (size_t)(n_heads + g) * hd, sizeof(float) * hd);
            memcpy(v, row + (size_t)(n_heads + n_kv + g) * hd, sizeof(float) * hd);
            rope_host(k, hd, t, theta, style);
            for (int i = 0; i < hd; i++) k[i] = h2f(f2h(k[i])), v[i] = h2f(f2h(v[i]));
        }
    }
    float *drope = dmalloc(sizeof(float) * ctx * hd), *dqkv = dmalloc(sizeof(float) * qkv_dim * steps);
    float *dout = dmalloc(sizeof(float) * n_heads * hd * steps);
    uint16_t *dk = dmalloc(2 * (size_t)n_kv * ctx * hd), *dv = dmalloc(2 * (size_t)n_kv * ctx * hd);
    const size_t cache_n = (size_t)n_kv * ctx * hd;
    uint16_t *hk = malloc(2 * cache_n), *hv = malloc(2 * cache_n);
    KcudaAttnShape a = {n_heads, n_kv, hd, ctx, style, drope};
    const size_t part_n = kcuda_attn_decode_scratch(&a);
    CHECK(part_n > 0);
    float *dpart = dmalloc(sizeof(float) * part_n);
    int *dcount = dmalloc(sizeof(int) * n_heads), *dpos = dmalloc(sizeof(int));
    REQUIRE(cudaMemset(dcount, 0, sizeof(int) * n_heads) == cudaSuccess);
    up(drope, rope, sizeof(float) * ctx * hd);
    up(dqkv, qkv, sizeof(float) * qkv_dim * steps);
    float *got = malloc(sizeof(float) * n_heads * hd * steps);
    /* decode, one position at a time */
    for (int t = 0; t < steps; t++) {
        up(dpos, &t, sizeof(int));
        REQUIRE(cudaMemset(dout, 0xff, sizeof(float) * n_heads * hd) == cudaSuccess);
        if (t % 2) REQUIRE(cudaMemset(dpart, 0xff, sizeof(float) * part_n) == cudaSuccess);
        CHECK_EQ_INT(attn_decode_at(&a, t, by_pos)(&a, dqkv + (size_t)t * qkv_dim, dk, dv, dpos, dout, dpart, dcount,
                                                   1 + t % 3, NULL), 0);
        down(got + (size_t)t * n_heads * hd, dout, sizeof(float) * n_heads * hd);
    }
    check_counts_zero(dcount, n_heads, "decode");
    down(hk, dk, 2 * cache_n);
    down(hv, dv, 2 * cache_n);
    attn_check(n_heads, n_kv, hd, ctx, steps, style, qkv, Q, K, V, hk, hv, got,
               by_pos && kcuda_attn_decode_head_until(&a) > 0 ? "decode (head kernel below its limit)" : "decode");
    /* prefill: first half at once, then the rest at once (pos0 > 0) */
    REQUIRE(cudaMemset(dk, 0xff, 2 * (size_t)n_kv * ctx * hd) == cudaSuccess);
    REQUIRE(cudaMemset(dv, 0xff, 2 * (size_t)n_kv * ctx * hd) == cudaSuccess);
    const int t1 = steps / 2;
    const int tiled = hd % 16 == 0 && hd <= 128 && n_heads / n_kv <= 8;
    if (tiled) {
        CHECK_EQ_INT(kcuda_attn_prefill(&a, dqkv, qkv_dim, t1, 0, dk, dv, dout, 0, NULL), 0);
        CHECK_EQ_INT(kcuda_attn_prefill(&a, dqkv + (size_t)t1 * qkv_dim, qkv_dim, steps - t1, t1, dk, dv,
                                        dout + (size_t)t1 * n_heads * hd, 0, NULL), 0);
    } else {
        CHECK_EQ_INT(kcuda_attn_prefill_wide(&a, dqkv, qkv_dim, t1, 0, dk, dv, dout, NULL), 0);
        CHECK_EQ_INT(kcuda_attn_prefill_wide(&a, dqkv + (size_t)t1 * qkv_dim, qkv_dim, steps - t1, t1, dk, dv,
                                             dout + (size_t)t1 * n_heads * hd, NULL), 0);
    }
    down(got, dout, sizeof(float) * n_heads * hd * steps);
    down(hk, dk, 2 * cache_n);
    down(hv, dv, 2 * cache_n);
    attn_check(n_heads, n_kv, hd, ctx, steps, style, qkv, Q, K, V, hk, hv, got, tiled ? "prefill" : "prefill wide");
    free(rope), free(qkv), free(K), free(V), free(Q), free(got), free(hk), free(hv);
    cudaFree(drope), cudaFree(dqkv), cudaFree(dout), cudaFree(dk), cudaFree(dv), cudaFree(dpart), cudaFree(dcount), cudaFree(dpos);
}

static void test_attention(int n_heads, int n_kv, int hd, int ctx, int steps, int style) {
    test_attention_k(n_heads, n_kv, hd, ctx, steps, style, 1);
}

/* Decode at chosen positions of a long context, the rows before them random f16 data written
 * straight into the cache (so a position of 4,000 costs one reference step, not 4,000): dense
 * runs of positions around 64, 128, 1024, 2048, 4096 and 8192 (the splits are multiples of 16
 * and at least 64 positions, the tiles 64 or 32, so every remainder of a split and of a tile is
 * met), with the scratch poisoned (NaN) before every call and the counters checked zero after
 * it. At each position the first query head of every KV group gets a spike: one earlier row's
 * key is made parallel to that head's rotated query (score ~30 above the rest), so that head's
 * output is about that row's value and a row lost, read twice or read from the wrong place
 * moves it by the size of the values, at any context length (with uniform random rows a single
 * row weighs 1/n, below the bound at n = 4096). The spike rows cycle over the first, the last,
 * the middle and the 16-aligned rows of the context.
 * With controls != 0, also three negative controls per position, each of which must fail the
 * bound: the spike row's value swapped with its neighbour's in the reference (a misplaced row),
 * the next head's output compared as this one's (a wrong query head), one output moved by 0.01
 * (about what losing one split of 80 rows of 4,096 does). They show on the device that the
 * check catches real faults. by_pos: attn_decode_at; with it, where the per-query-head kernel's
 * limit is below ctx, that kernel is also run once at its limit and must answer NaN. */
static void test_attn_positions(int n_heads, int n_kv, int hd, int ctx, int style, int dense, int controls, int by_pos) {
    const float theta = 500000.0f;
    const int qkv_dim = (n_heads + 2 * n_kv) * hd, rep = n_heads / n_kv;
    const size_t cache_n = (size_t)n_kv * ctx * hd;
    float *rope = rope_table(ctx, hd, theta);
    uint16_t *hk = malloc(2 * cache_n), *hv = malloc(2 * cache_n);
    for (size_t i = 0; i < cache_n; i++) hk[i] = f2h(frand(1.0f)), hv[i] = f2h(frand(1.0f));
    float *drope = dmalloc(sizeof(float) * ctx * hd), *dqkv = dmalloc(sizeof(float) * qkv_dim);
    float *dout = dmalloc(sizeof(float) * n_heads * hd);
    uint16_t *dk = dmalloc(2 * cache_n), *dv = dmalloc(2 * cache_n);
    KcudaAttnShape a = {n_heads, n_kv, hd, ctx, style, drope};
    const size_t part_n = kcuda_attn_decode_scratch(&a);
    float *dpart = dmalloc(sizeof(float) * part_n);
    int *dcount = dmalloc(sizeof(int) * n_heads), *dpos = dmalloc(sizeof(int));
    REQUIRE(cudaMemset(dcount, 0, sizeof(int) * n_heads) == cudaSuccess);
    up(drope, rope, sizeof(float) * ctx * hd);
    up(dk, hk, 2 * cache_n);
    up(dv, hv, 2 * cache_n);
    int pos[160], np = 0;
    const int until = kcuda_attn_decode_head_until(&a);
    /* the head kernel's limit among the others in ascending order, so the positions around it
     * are taken wherever it falls (512 for 64 heads of 64) */
    int starts[] = {0, 60, 120, 1016, 2040, 4088, 8184, until - 2};
    for (int s = (int)(sizeof starts / sizeof starts[0]) - 1; s > 0 && starts[s] < starts[s - 1]; s--) {
        const int t = starts[s];
        starts[s] = starts[s - 1], starts[s - 1] = t;
    }
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++)
        for (int i = 0; i < (dense ? 20 : 3); i++)
            if (starts[s] + i < ctx && starts[s] + i > (np ? pos[np - 1] : -1) && np < 150) pos[np++] = starts[s] + i;
    if (pos[np - 1] != ctx - 1) pos[np++] = ctx - 1;
    float *qkv = malloc(sizeof(float) * qkv_dim), *Q = malloc(sizeof(float) * n_heads * hd);
    float *K = malloc(sizeof(float) * n_kv * hd), *V = malloc(sizeof(float) * n_kv * hd);
    float *got = malloc(sizeof(float) * n_heads * hd), *bad_out = malloc(sizeof(float) * n_heads * hd);
    uint16_t *tmp = malloc(2 * (size_t)hd);
    AttnErr e = {0};
    int kbad = 0, vbad = 0, ctl_ok = 1, n_ctl = 0, n_head = 0, n_past = 0;
    for (int pi = 0; pi < np; pi++) {
        const int P = pos[pi];
        for (int i = 0; i < qkv_dim; i++) qkv[i] = frand(1.5f);
        memcpy(Q, qkv, sizeof(float) * n_heads * hd);
        for (int h = 0; h < n_heads; h++) rope_host(Q + (size_t)h * hd, hd, P, theta, style);
        for (int g = 0; g < n_kv; g++) {
            float *k = K + (size_t)g * hd, *v = V + (size_t)g * hd;
            memcpy(k, qkv + (size_t)(n_heads + g) * hd, sizeof(float) * hd);
            memcpy(v, qkv + (size_t)(n_heads + n_kv + g) * hd, sizeof(float) * hd);
            rope_host(k, hd, P, theta, style);
            for (int i = 0; i < hd; i++) k[i] = h2f(f2h(k[i])), v[i] = h2f(f2h(v[i]));
        }
        /* the spikes: row js[g] < P of group g parallel to head g * rep's rotated query */
        int js[64] = {0};
        for (int g = 0; g < n_kv && g < 64 && P > 0; g++) {
            const int c = (pi + g) % 5;
            js[g] = c == 0 ? 0 : c == 1 ? P - 1 : c == 2 ? P / 2 : c == 3 ? P / 16 * 16 : (P / 16 * 16 + P - 1) / 2;
            if (js[g] >= P) js[g] = P - 1;
            const float *qh = Q + (size_t)g * rep * hd;
            double q2 = 0;
            for (int i = 0; i < hd; i++) q2 += (double)qh[i] * qh[i];
            const double beta = 30.0 * sqrt((double)hd) / q2;
            const size_t c0 = ((size_t)g * ctx + js[g]) * hd;
            for (int i = 0; i < hd; i++) hk[c0 + i] = f2h((float)(beta * qh[i]));
            up(dk + c0, hk + c0, 2 * (size_t)hd);
        }
        up(dqkv, qkv, sizeof(float) * qkv_dim);
        up(dpos, &P, sizeof(int));
        REQUIRE(cudaMemset(dout, 0xff, sizeof(float) * n_heads * hd) == cudaSuccess);
        REQUIRE(cudaMemset(dpart, 0xff, sizeof(float) * part_n) == cudaSuccess);
        if (by_pos && until > 0 && P == until) { /* the head kernel past its limit: NaN, nothing else written */
            CHECK_EQ_INT(kcuda_attn_decode_head(&a, dqkv, dk, dv, dpos, dout, dpart, dcount, KCUDA_PDL_LATE, NULL), 0);
            down(got, dout, sizeof(float) * n_heads * hd);
            int nan = 0;
            for (int i = 0; i < n_heads * hd; i++) nan += isnan(got[i]) != 0;
            CHECK_MSG(nan == n_heads * hd, "attention head kernel at its limit %d: %d of %d outputs NaN", P, nan, n_heads * hd);
            check_counts_zero(dcount, n_heads, "head kernel at its limit");
            n_past++;
        }
        CHECK_EQ_INT(attn_decode_at(&a, P, by_pos)(&a, dqkv, dk, dv, dpos, dout, dpart, dcount, KCUDA_PDL_LATE, NULL), 0);
        n_head += attn_decode_at(&a, P, by_pos) == kcuda_attn_decode_head;
        down(got, dout, sizeof(float) * n_heads * hd);
        /* the new rows, into the host copy (later positions read them) */
        for (int g = 0; g < n_kv; g++) {
            const size_t c = ((size_t)g * ctx + P) * hd;
            down(hk + c, dk + c, 2 * (size_t)hd);
            down(hv + c, dv + c, 2 * (size_t)hd);
            cache_row_bad(hk + c, hv + c, K + (size_t)g * hd, V + (size_t)g * hd, hd, &kbad, &vbad);
        }
        attn_step_check(n_heads, n_kv, hd, ctx, P + 1, style, qkv, Q, hk, hv, got, &e);
        check_counts_zero(dcount, n_heads, "positions");
        if (controls && P >= 2) {
            AttnErr c1 = {0}, c2 = {0}, c3 = {0};
            const size_t r0 = (size_t)js[0] * hd, r1 = (size_t)(js[0] + 1) * hd; /* rows js, js + 1 <= P */
            memcpy(tmp, hv + r0, 2 * (size_t)hd), memcpy(hv + r0, hv + r1, 2 * (size_t)hd), memcpy(hv + r1, tmp, 2 * (size_t)hd);
            attn_step_check(n_heads, n_kv, hd, ctx, P + 1, style, qkv, Q, hk, hv, got, &c1);
            memcpy(tmp, hv + r0, 2 * (size_t)hd), memcpy(hv + r0, hv + r1, 2 * (size_t)hd), memcpy(hv + r1, tmp, 2 * (size_t)hd);
            for (int h = 0; h < n_heads; h++)
                memcpy(bad_out + (size_t)h * hd, got + (size_t)((h + 1) % n_heads) * hd, sizeof(float) * hd);
            attn_step_check(n_heads, n_kv, hd, ctx, P + 1, style, qkv, Q, hk, hv, bad_out, &c2);
            memcpy(bad_out, got, sizeof(float) * n_heads * hd);
            bad_out[hd / 2] += 0.01f;
            attn_step_check(n_heads, n_kv, hd, ctx, P + 1, style, qkv, Q, hk, hv, bad_out, &c3);
            n_ctl++;
            if (!c1.bad || (n_heads > 1 && !c2.bad) || !c3.bad) {
                ctl_ok = 0;
                fprintf(stderr, "a negative control passed at position %d: misplaced row %d, wrong head %d, +0.01 %d outputs beyond the bound\n",
                        P, c1.bad, c2.bad, c3.bad);
            }
        }
    }
    printf("attention decode at %d positions up to %d (%d by the head kernel, below %d), %d/%d hd %d style %d: worst error %.3g = %.2f of its bound %.3g",
           np, pos[np - 1], n_head, by_pos ? until : 0, n_heads, n_kv, hd, style, e.worst_err, e.worst, e.worst_tol);
    if (by_pos && until > 0 && until < ctx) CHECK_MSG(n_past == 1, "attention: the head kernel's limit %d not met", until);
    if (controls) printf("; negative controls at %d positions%s", n_ctl, ctl_ok ? ", all caught" : ", NOT all caught");
    printf("\n");
    CHECK_MSG(kbad == 0 && vbad == 0, "attention positions %d/%d hd %d: cache rows wrong (K %d, V %d elements)",
              n_heads, n_kv, hd, kbad, vbad);
    CHECK_MSG(e.bad == 0, "attention decode positions %d/%d hd %d style %d: %d outputs beyond the error bound",
              n_heads, n_kv, hd, style, e.bad);
    CHECK_MSG(ctl_ok && (!controls || n_ctl > 0), "attention %d/%d hd %d: a negative control was not caught", n_heads,
              n_kv, hd);
    free(rope), free(hk), free(hv), free(qkv), free(Q), free(K), free(V), free(got), free(bad_out), free(tmp);
    cudaFree(drope), cudaFree(dqkv), cudaFree(dout), cudaFree(dk), cudaFree(dv), cudaFree(dpart), cudaFree(dcount),
        cudaFree(dpos);
}

/* Shapes and arguments decode attention refuses, each with a message. */
static void test_bad_attn_shapes(void) {
    float *dx = dmalloc(1 << 16);
    uint16_t *dc = dmalloc(1 << 16);
    int *di = dmalloc(64);
    REQUIRE(cudaMemset(dx, 0, 1 << 16) == cudaSuccess);
    REQUIRE(cudaMemset(di, 0, 64) == cudaSuccess);
    float *rope = dx, *qkv = dx + 4096, *out = dx + 8192, *part = dx + 12288;
    int *pos = di, *count = di + 4;
    KcudaAttnShape a = {4, 2, 66, 16, 0, rope};
    CHECK_EQ_INT(kcuda_attn_decode(&a, qkv, dc, dc + 4096, pos, out, part, count, 1, NULL), KCUDA_OK); /* even: taken */
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const int bad[][3] = {{4, 3, 64}, {4, 2, 65}, {4, 2, 258}, {4, 2, 0}, {0, 1, 64}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        KcudaAttnShape b = {bad[i][0], bad[i][1], bad[i][2], 16, 0, rope};
        CHECK_EQ_INT(kcuda_attn_decode(&b, qkv, dc, dc + 4096, pos, out, part, count, 1, NULL), KCUDA_ERR_SHAPE);
        CHECK(strstr(kcuda_last_error(), "kcuda_attn_decode") != NULL);
    }
    a.head_dim = 64;
    CHECK_EQ_INT(kcuda_attn_decode(&a, qkv, dc, dc + 4096, pos, out, NULL, count, 1, NULL), KCUDA_ERR_ARG);
    CHECK_EQ_INT(kcuda_attn_decode(&a, qkv, dc + 1, dc + 4096, pos, out, part, count, 1, NULL), KCUDA_ERR_ARG); /* misaligned */
    CHECK_EQ_INT(kcuda_attn_decode(&a, qkv, dc, dc + 4096, pos, out, part, count, 7, NULL), KCUDA_ERR_ARG); /* option */
    /* the per-query-head kernel: head_dim a multiple of 16 up to 128 */
    CHECK_EQ_INT(kcuda_attn_decode_head_until(&a), 16); /* all of a short context */
    for (int hd = 66; hd <= 72; hd += 6) { /* even; a multiple of 8 */
        a.head_dim = hd;
        CHECK_EQ_INT(kcuda_attn_decode_head_until(&a), 0);
        CHECK_EQ_INT(kcuda_attn_decode_head(&a, qkv, dc, dc + 4096, pos, out, part, count, 1, NULL), KCUDA_ERR_SHAPE);
        CHECK(strstr(kcuda_last_error(), "kcuda_attn_decode_head") != NULL);
    }
    a.head_dim = 136;
    CHECK_EQ_INT(kcuda_attn_decode_head_until(&a), 0);
    CHECK_EQ_INT(kcuda_attn_decode_head(&a, qkv, dc, dc + 4096, pos, out, part, count, 1, NULL), KCUDA_ERR_SHAPE);
    a.head_dim = 64;
    CHECK_EQ_INT(kcuda_attn_decode_head(&a, qkv, dc, dc + 4096, pos, out, NULL, count, 1, NULL), KCUDA_ERR_ARG);
    CHECK_EQ_INT(kcuda_attn_decode_head(&a, qkv, dc + 1, dc + 4096, pos, out, part, count, 1, NULL), KCUDA_ERR_ARG);
    CHECK_EQ_INT(kcuda_attn_decode_head(&a, qkv, dc, dc + 4096, pos, out, part, count, 7, NULL), KCUDA_ERR_ARG);
    a.d_rope = NULL;
    CHECK_EQ_INT(kcuda_attn_decode(&a, qkv, dc, dc + 4096, pos, out, part, count, 1, NULL), KCUDA_ERR_ARG);
    CHECK_EQ_INT(kcuda_attn_decode_head(&a, qkv, dc, dc + 4096, pos, out, part, count, 1, NULL), KCUDA_ERR_ARG);
    cudaFree(dx), cudaFree(dc), cudaFree(di);
}

/* Decode attention over the shapes the families need: every GQA ratio 1..8 (and 12, two blocks
 * per KV head), head_dim 64, 72, 80, 96, 100, 128, 256 (and 32, 48), both RoPE styles, contexts
 * past 4096; long spans that stream many tiles through the stages (many KV heads: few splits
 * each; one stage reused tile after tile where head_dim <= 128). quick: the subset for
 * compute-sanitizer. */
static void test_attn_decode_all(int quick) {
    if (quick) {
        test_attention(8, 2, 128, 256, 140, 0);
        test_attention_k(8, 2, 128, 256, 140, 0, 0);
        test_attention(6, 2, 100, 160, 130, 1);
        test_attn_positions(20, 5, 128, 4160, 0, 0, 0, 1);
        test_attn_positions(20, 5, 128, 1200, 0, 0, 0, 0);
        test_attn_positions(16, 16, 64, 1200, 1, 0, 0, 1);
        test_attn_positions(32, 32, 128, 1200, 0, 0, 0, 0); /* 32 KV heads: spans of 2 tiles in one stage */
        test_attn_positions(6, 2, 256, 600, 0, 0, 0, 1);
        test_attn_positions(64, 64, 64, 2100, 0, 0, 0, 0); /* 64 KV heads: several tiles a span */
        return;
    }
    /* the 2B-4T heads, dense around every boundary: as the backend chooses, and the per-KV-group
     * kernel alone (it must be right at every position: shapes without the head kernel take it
     * from position 0) */
    test_attn_positions(20, 5, 128, 4160, 0, 1, 1, 1);
    test_attn_positions(20, 5, 128, 4160, 0, 1, 1, 0);
    static const int hds[] = {64, 96, 100, 128, 256, 80, 64, 128};
    for (int by_pos = 0; by_pos < 2; by_pos++)
        for (int rep = 1; rep <= 8; rep++)
            test_attn_positions(2 * rep, 2, hds[rep - 1], 4160, rep % 2, 0, 0, by_pos);
    test_attn_positions(24, 2, 80, 4160, 0, 0, 0, 1);   /* 12 query heads per KV head */
    test_attn_positions(24, 2, 80, 4160, 0, 0, 0, 0);
    test_attn_positions(12, 4, 256, 4160, 1, 0, 0, 1);  /* Falcon3's heads */
    test_attn_positions(64, 64, 64, 4160, 0, 0, 0, 0);  /* 64 KV heads: ~820 positions a block */
    test_attn_positions(64, 64, 64, 4160, 0, 0, 0, 1);
    test_attn_positions(32, 32, 128, 4160, 1, 0, 0, 0); /* 32 KV heads of 128: 5 tiles a span, one stage */
    test_attn_positions(32, 32, 100, 8200, 1, 0, 0, 1); /* 1bitLLM's heads (4-byte rows), long spans */
    test_attn_positions(8, 1, 128, 8200, 0, 0, 0, 1);
    test_attn_positions(32, 8, 128, 4160, 0, 0, 0, 1);  /* Llama3-8B's heads */
    /* the spans kernel where the other tests reach it least: head_dim 72 (16-byte rows, not a
     * multiple of 16: no tensor cores), a context that is a multiple of nothing (spans and tiles
     * end off every boundary), 48 (tensor cores on three 16-dim tiles) from position 0 */
    test_attn_positions(6, 3, 72, 1100, 1, 0, 0, 1);
    test_attn_positions(20, 5, 128, 4133, 0, 0, 0, 0);
    test_attention_k(6, 2, 48, 600, 520, 1, 0);
    /* step by step from position 0, and prefill */
    test_attention(20, 5, 128, 512, 150, 0);
    test_attention_k(20, 5, 128, 512, 150, 0, 0);
    test_attention(4, 2, 64, 128, 70, 1);
    test_attention(2, 2, 32, 64, 40, 0);
    test_attention(2, 1, 32, 1280, 1100, 0);
    test_attention_k(2, 1, 32, 1280, 1100, 0, 0);
    test_attention(12, 4, 256, 300, 200, 0); /* wide prefill: head_dim 256 */
    test_attention(6, 2, 96, 300, 200, 1);   /* wide prefill: 96 */
    test_attention(6, 2, 100, 300, 200, 0);  /* wide prefill: 100 */
    test_attention(24, 2, 64, 200, 130, 1);  /* wide prefill: 12 per KV head */
}

/* Prefill GEMM: the residual and GLU epilogues against the host formulas on the exact int32
 * reference, outputs poisoned first (the tile follows from M x N: kernels_cuda.h). */
static void test_gemm_epilogues(int M, int n, int k_in) {
    const int k_pad = i2s_round_up_k(k_in);
    const size_t rb = (size_t)k_pad / 4;
    uint8_t *hw = malloc(rb * n);
    rand_i2s(hw, rb * n);
    float *x = malloc(sizeof(float) * (size_t)M * k_in), *s = malloc(sizeof(float) * M);
    int8_t *q = malloc((size_t)M * k_pad);
    int32_t *qs = malloc(sizeof(int32_t) * M), *ref = malloc(sizeof(int32_t) * (size_t)M * n);
    for (size_t i = 0; i < (size_t)M * k_in; i++) x[i] = frand(2.0f);
    for (int t = 0; t < M; t++) {
        s[t] = quant_act_ref(x + (size_t)t * k_in, k_in, k_pad, q + (size_t)t * k_pad);
        qs[t] = 0;
        for (int i = 0; i < k_pad; i++) qs[t] += q[(size_t)t * k_pad + i];
        w2a8_gemv_ref(hw, n, k_pad, q + (size_t)t * k_pad, ref + (size_t)t * n);
    }
    uint8_t *dw = dmalloc(rb * n);
    int8_t *dq = dmalloc((size_t)M * k_pad);
    float *ds = dmalloc(sizeof(float) * M), *dout = dmalloc(sizeof(float) * (size_t)M * n);
    int32_t *dqs = dmalloc(sizeof(int32_t) * M);
    REQUIRE(kcuda_upload_i2s(dw, hw, n, k_pad, 0, 1) == 0);
    up(dq, q, (size_t)M * k_pad);
    up(ds, s, sizeof(float) * M);
    up(dqs, qs, sizeof(int32_t) * M);
    float *base = malloc(sizeof(float) * (size_t)M * n), *got = malloc(sizeof(float) * (size_t)M * n);
    for (size_t i = 0; i < (size_t)M * n; i++) base[i] = frand(4.0f);
    /* residual: out += acc / s * gamma(row segment) (three segments, as QKV) */
    KcudaTernary m = {0};
    m.d_codes = dw;
    m.n_out = n;
    m.k_pad = k_pad;
    m.seg_end[0] = n / 3, m.seg_end[1] = 2 * n / 3;
    m.gamma[0] = 0.25f, m.gamma[1] = 1.75f, m.gamma[2] = 0.5f;
    up(dout, base, sizeof(float) * (size_t)M * n);
    CHECK_EQ_INT(kcuda_w2a8_gemm(&m, dq, ds, dqs, M, KCUDA_EP_RESID, dout, n, 0, NULL), 0);
    down(got, dout, sizeof(float) * (size_t)M * n);
    int bad = 0;
    for (int t = 0; t < M; t++)
        for (int r = 0; r < n; r++) {
            const float g = r < m.seg_end[0] ? 0.25f : r < m.seg_end[1] ? 1.75f : 0.5f;
            bad += got[(size_t)t * n + r] != base[(size_t)t * n + r] + host_y(ref[(size_t)t * n + r], s[t], g);
        }
    CHECK_MSG(bad == 0, "gemm resid M=%d %dx%d: %d outputs differ", M, n, k_in, bad);
    /* GLU: rows interleaved gate/up (n even) */
    if (n % 2 == 0) {
        m.glu = 1;
        m.seg_end[0] = m.seg_end[1] = n;
        m.gamma[0] = 0.5f, m.gamma[1] = 1.5f;
        const int h = n / 2;
        REQUIRE(cudaMemset(dout, 0xff, sizeof(float) * (size_t)M * n) == cudaSuccess);
        CHECK_EQ_INT(kcuda_w2a8_gemm(&m, dq, ds, dqs, M, KCUDA_EP_GLU, dout, h, 0, NULL), 0);
        down(got, dout, sizeof(float) * (size_t)M * h);
        bad = 0;
        for (int t = 0; t < M; t++)
            for (int i = 0; i < h; i++) {
                const float g = host_y(ref[(size_t)t * n + 2 * i], s[t], 0.5f);
                const float u = host_y(ref[(size_t)t * n + 2 * i + 1], s[t], 1.5f);
                const float r = g > 0 ? g : 0;
                bad += got[(size_t)t * h + i] != r * r * u;
            }
        CHECK_MSG(bad == 0, "gemm glu M=%d %dx%d: %d outputs differ", M, n, k_in, bad);
    }
    free(hw), free(x), free(s), free(q), free(qs), free(ref), free(base), free(got);
    cudaFree(dw), cudaFree(dq), cudaFree(ds), cudaFree(dout), cudaFree(dqs);
}

/* Prefill norm+quant version 2: without a norm exactly quant_act_ref (q, s, sum q); with a norm
 * against version 1 (only the order of the sum of squares differs: scales within 1e-6, a
 * quantized value off by one only where x*s sits on a rounding boundary, at most 1 in 1000). */
static void test_norm_prefill(int rows, int k_in, int ld) {
    const int k_pad = i2s_round_up_k(k_in);
    float *x = calloc((size_t)rows * ld, sizeof(float)), *nw = malloc(sizeof(float) * k_in);
    for (size_t i = 0; i < (size_t)rows * ld; i++) x[i] = frand(3.0f);
    for (int i = 0; i < k_in; i++) nw[i] = 0.5f + frand(0.4f);
    int8_t *q = malloc((size_t)rows * k_pad), *g1 = malloc((size_t)rows * k_pad), *g2 = malloc((size_t)rows * k_pad);
    float *s = malloc(sizeof(float) * rows), *s1 = malloc(sizeof(float) * rows), *s2 = malloc(sizeof(float) * rows);
    int32_t *qs1 = malloc(sizeof(int32_t) * rows), *qs2 = malloc(sizeof(int32_t) * rows);
    float *dx = dmalloc(sizeof(float) * (size_t)rows * ld), *dn = dmalloc(sizeof(float) * k_in), *ds = dmalloc(sizeof(float) * rows);
    int8_t *dq = dmalloc((size_t)rows * k_pad);
    int32_t *dqs = dmalloc(sizeof(int32_t) * rows);
    up(dx, x, sizeof(float) * (size_t)rows * ld);
    up(dn, nw, sizeof(float) * k_in);
    REQUIRE(cudaMemset(dq, 0x55, (size_t)rows * k_pad) == cudaSuccess);
    CHECK_EQ_INT(kcuda_rmsnorm_quant_prefill(dx, rows, ld, k_in, k_pad, NULL, 0, dq, ds, dqs, 0, NULL), 0);
    down(g2, dq, (size_t)rows * k_pad);
    down(s2, ds, sizeof(float) * rows);
    down(qs2, dqs, sizeof(int32_t) * rows);
    int bad = 0;
    for (int t = 0; t < rows; t++) {
        s[t] = quant_act_ref(x + (size_t)t * ld, k_in, k_pad, q + (size_t)t * k_pad);
        int32_t sum = 0;
        for (int i = 0; i < k_pad; i++) sum += q[(size_t)t * k_pad + i];
        bad += s[t] != s2[t] || sum != qs2[t] || memcmp(q + (size_t)t * k_pad, g2 + (size_t)t * k_pad, k_pad) != 0;
    }
    CHECK_MSG(bad == 0, "norm_quant_prefill %dx%d (ld %d) without norm: %d rows differ from quant_act_ref", rows, k_in, ld, bad);
    /* with the norm: version 2 against version 1 */
    REQUIRE(cudaMemset(dq, 0x55, (size_t)rows * k_pad) == cudaSuccess);
    CHECK_EQ_INT(kcuda_rmsnorm_quant_prefill(dx, rows, ld, k_in, k_pad, dn, 1e-5f, dq, ds, dqs, 0, NULL), 0);
    down(g2, dq, (size_t)rows * k_pad);
    down(s2, ds, sizeof(float) * rows);
    down(qs2, dqs, sizeof(int32_t) * rows);
    CHECK_EQ_INT(kcuda_rmsnorm_quant(dx, rows, ld, k_in, k_pad, dn, 1e-5f, dq, ds, dqs, 0, NULL), 0);
    down(g1, dq, (size_t)rows * k_pad);
    down(s1, ds, sizeof(float) * rows);
    down(qs1, dqs, sizeof(int32_t) * rows);
    int off = 0, far = 0, sbad = 0, sumbad = 0;
    for (int t = 0; t < rows; t++) {
        sbad += fabsf(s1[t] - s2[t]) > 1e-6f * s1[t];
        int32_t sum = 0;
        for (int i = 0; i < k_pad; i++) {
            const int d = g2[(size_t)t * k_pad + i] - g1[(size_t)t * k_pad + i];
            off += d != 0;
            far += d > 1 || d < -1 || (i >= k_in && g2[(size_t)t * k_pad + i] != 0);
            sum += g2[(size_t)t * k_pad + i];
        }
        sumbad += sum != qs2[t];
    }
    CHECK_MSG(sbad == 0 && far == 0 && sumbad == 0 && off * 1000 <= rows * k_in,
              "norm_quant_prefill %dx%d with norm: %d scales, %d values off by more than 1, %d sums, %d off by one", rows,
              k_in, sbad, far, sumbad, off);
    free(x), free(nw), free(q), free(g1), free(g2), free(s), free(s1), free(s2), free(qs1), free(qs2);
    cudaFree(dx), cudaFree(dn), cudaFree(ds), cudaFree(dq), cudaFree(dqs);
}

/* The prefill kernels at more shapes: the GEMM's three tiles (64x128 split over K where its grid
 * has a block per SM; 64x64 where its grid covers ~90% of the SMs: 300 x 1610 and 260 x 1610 take
 * it on a 132-SM GPU; 64x16 otherwise) at ragged M, N and K 2560/3200/6912 with the epilogues; norm+quant; attention with more group sizes and head
 * dims (48: padded to 64) and both key splits (two from 192 tokens of a chunk on: T = 260). */
static void test_prefill_more(void) {
    const int gs[][3] = {{1, 256, 256}, {5, 130, 384}, {77, 1000, 3200}, {130, 264, 6912}, {64, 200, 2560},
                         {200, 264, 2560}, {300, 1610, 384}};
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) test_gemm(gs[i][0], gs[i][1], gs[i][2]);
    test_gemm_epilogues(77, 1002, 2560);
    test_gemm_epilogues(3, 64, 6912);
    test_gemm_epilogues(300, 1000, 2560);
    test_gemm_epilogues(260, 1610, 2560);
    /* the 64x128 tile (a block per SM or more), split over K in 2 / 3 (132-SM H100); 100 x 9000
     * splits in 2 */
    test_gemm(270, 4100, 2560);
    test_gemm_epilogues(130, 7000, 6912);
    test_gemm(100, 9000, 2560);
    /* ragged tokens and columns at K 3200 and 6912, the 2B O projection at 512 tokens, a K of 3
     * I2_S blocks (no split) */
    test_gemm_epilogues(129, 1000, 3200);
    test_gemm(300, 1100, 6912);
    test_gemm(512, 2560, 2560);
    test_gemm_epilogues(140, 516, 384);
    test_norm_prefill(37, 2560, 2560);
    test_norm_prefill(20, 6912, 6912);
    test_norm_prefill(9, 2600, 2604); /* k_pad 2688 > k_in, ld > k_in */
    test_norm_prefill(5, 8192, 8192);
    test_norm_prefill(3, 9000, 9000); /* over 8192: the per-row fallback kernel */
    test_attention(6, 2, 48, 256, 130, 1);  /* 3 heads per KV head, head_dim 48 */
    test_attention(8, 1, 128, 600, 520, 0); /* 8 heads per KV head; chunks of 260: two key splits */
    test_attention(6, 2, 48, 600, 520, 1);
}

static void test_lm_head_i8_all(void); /* int8 lm_head, defined at the end */

/* `test_kernels_cuda prefill`: a small run of the prefill kernels alone, for compute-sanitizer
 * (memcheck, racecheck): every GEMM tile at ragged shapes, norm+quant, attention versions 2/3. */
static int prefill_only(void) {
    test_gemm(5, 130, 384);        /* 64x16 */
    test_gemm(70, 200, 3200);      /* 64x16 */
    test_gemm(300, 1610, 384);     /* 64x64 */
    test_gemm_epilogues(19, 66, 256);
    test_gemm_epilogues(260, 1610, 256);
    test_gemm_epilogues(130, 5700, 2560); /* 64x128 split in 2 (132-SM GPU) */
    test_gemm_epilogues(129, 1000, 3200); /* ragged tokens and columns, K 3200 */
    test_gemm(100, 9000, 2560);           /* 64x128 below 128 tokens, split in 2 */
    test_norm_prefill(7, 2560, 2560);
    test_norm_prefill(3, 2600, 2604);
    test_attention(4, 2, 64, 160, 150, 1);  /* one key split */
    test_attention(8, 2, 128, 160, 150, 0);
    test_attention(4, 2, 64, 400, 390, 1);  /* two key splits */
    test_attention(8, 2, 128, 400, 390, 0);
    return check_report("test_kernels_cuda prefill");
}

int main(int argc, char **argv) {
    if (kcuda_device_count() <= 0) SKIP("no CUDA device");
    char desc[200];
    if (kcuda_device_describe(desc, sizeof desc) == 0) printf("device: %s\n", desc);
    if (argc > 1 && strcmp(argv[1], "prefill") == 0) return prefill_only();
    if (argc > 1 && strcmp(argv[1], "attention") == 0) { /* decode attention alone, small: compute-sanitizer */
        test_attn_decode_all(1);
        test_bad_attn_shapes();
        return check_report("test_kernels_cuda attention");
    }
    if (argc > 1 && strcmp(argv[1], "attention_all") == 0) { /* decode attention alone, every shape (short device runs) */
        test_attn_decode_all(0);
        test_bad_attn_shapes();
        return check_report("test_kernels_cuda attention_all");
    }
    if (argc > 1 && strcmp(argv[1], "lm_head_i8") == 0) { /* the int8 lm_head alone (short device runs) */
        test_lm_head_i8_all();
        return check_report("test_kernels_cuda lm_head_i8");
    }
    if (argc > 1 && strcmp(argv[1], "gemv") == 0) { /* the decode GEMVs, small: compute-sanitizer */
        test_gemv(33, 200, 0);
        test_gemv(100, 640, 0);
        test_gemv(22, 300, 1);
        test_gemv_kernels_agree(2560, 0);
        return check_report("test_kernels_cuda gemv");
    }
    if (argc > 1 && strcmp(argv[1], "lm_head") == 0) { /* every lm_head, small: compute-sanitizer */
        test_lm_head_float_all();
        test_lm_head_i8_all();
        return check_report("test_kernels_cuda lm_head");
    }
    const int shapes[][2] = {{2560, 2560}, {3840, 2560}, {2560, 6912}, {3200, 10240}, {7, 128},
                             {33, 200},    {100, 640},   {1001, 3200}, {17, 16384},  {50, 1000}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_gemv(shapes[i][0], shapes[i][1], 0);
    test_gemv(13824, 2560, 1);
    test_gemv(22, 300, 1);
    test_gemm(1, 256, 256);
    test_gemm(5, 130, 384);
    test_gemm(77, 3840, 2560);
    test_gemm(64, 200, 6912);
    test_bad_shapes();
    test_lm_head_float_all();
    test_bad_attn_shapes();
    test_attn_decode_all(0);
    test_gemv_kernels_agree(2560, 0);
    test_gemv_kernels_agree(3200, 1);
    test_prefill_more();
    test_lm_head_i8_all();
    return check_report("test_kernels_cuda");
}

/* ---- the optional int8 lm_head (kcuda_quant_rows_i8 + kcuda_lm_head_i8) ------------------------
 * The device quantizer against lm_head_quant_i8_ref byte for byte (q and the scales), then the
 * int8 GEMV with the fused RMSNorm against a double-precision reference over the same int8 rows
 * (fp32 summation order only: 1e-5 of the largest logit), every logit written over a NaN-poisoned
 * buffer, the argmax equal to the largest logit returned (lowest index on ties: zero rows
 * tie), ragged n, k from 16 to 16384 (both loop shapes of the kernel), with and without PDL. */
#include "kernels/cpu/kernels_cpu.h"

static void test_lm_head_i8(int n, int k, int with_norm, int pdl) {
    uint16_t *hw = malloc(sizeof(uint16_t) * n * k);
    for (size_t i = 0; i < (size_t)n * k; i++) hw[i] = f2h(frand(0.05f));
    if (n > 3) {
        memset(hw + (size_t)1 * k, 0, sizeof(uint16_t) * k);  /* all-zero rows: scale 0 */
        memset(hw + (size_t)3 * k, 0, sizeof(uint16_t) * k);
        hw[(size_t)2 * k + k / 2] = f2h(60000.0f);             /* one huge weight: the rest rounds to 0 */
    }
    int8_t *q = malloc((size_t)n * k), *gq = malloc((size_t)n * k);
    float *sc = malloc(sizeof(float) * n), *gsc = malloc(sizeof(float) * n);
    lm_head_quant_i8_ref(CPU_DENSE_F16, hw, n, k, q, sc);
    void *dw = dmalloc(sizeof(uint16_t) * n * k);
    int8_t *dq = dmalloc((size_t)n * k);
    float *ds = dmalloc(sizeof(float) * n);
    up(dw, hw, sizeof(uint16_t) * n * k);
    REQUIRE(cudaMemset(dq, 0x55, (size_t)n * k) == cudaSuccess);
    CHECK_EQ_INT(kcuda_quant_rows_i8(KCUDA_F16, dw, n, k, dq, ds, NULL), 0);
    down(gq, dq, (size_t)n * k);
    down(gsc, ds, sizeof(float) * n);
    CHECK_MSG(memcmp(q, gq, (size_t)n * k) == 0, "int8 lm_head %dx%d: device quantizer bytes differ from the reference", n, k);
    CHECK_MSG(memcmp(sc, gsc, sizeof(float) * n) == 0, "int8 lm_head %dx%d: device row scales differ", n, k);

    float *x = malloc(sizeof(float) * k), *nw = malloc(sizeof(float) * k), *xn = malloc(sizeof(float) * k);
    double ss = 0;
    for (int i = 0; i < k; i++) x[i] = frand(2.0f), nw[i] = 0.5f + frand(0.4f), ss += (double)x[i] * x[i];
    const double inv = 1.0 / sqrt(ss / k + 1e-5);
    for (int i = 0; i < k; i++) xn[i] = with_norm ? (float)(nw[i] * (x[i] * inv)) : x[i];
    float *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    lm_head_i8_gemv_ref(q, sc, n, k, xn, ref);
    float *dx = dmalloc(sizeof(float) * k), *dn = dmalloc(sizeof(float) * k), *dl = dmalloc(sizeof(float) * n);
    int *dbest = dmalloc(sizeof(int) * kcuda_lm_head_scratch(n)), *dam = dmalloc(sizeof(int));
    up(dx, x, sizeof(float) * k);
    up(dn, nw, sizeof(float) * k);
    REQUIRE(cudaMemset(dl, 0xff, sizeof(float) * n) == cudaSuccess);
    REQUIRE(cudaMemset(dam, 0xff, sizeof(int)) == cudaSuccess);
    CHECK_EQ_INT(kcuda_lm_head_i8(dq, ds, n, k, dx, with_norm ? dn : NULL, 1e-5f, dl, dbest, dam, pdl, NULL), 0);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    int am = -1;
    down(got, dl, sizeof(float) * n);
    down(&am, dam, sizeof(int));
    double maxerr = 0, maxref = 0;
    int ref_am = 0, nan = 0;
    for (int r = 0; r < n; r++) {
        if (!(got[r] == got[r])) nan++;
        maxerr = fmax(maxerr, fabs((double)ref[r] - got[r]));
        maxref = fmax(maxref, fabs((double)ref[r]));
        if (got[r] > got[ref_am]) ref_am = r;
    }
    CHECK_MSG(nan == 0, "int8 lm_head %dx%d: %d logits not written", n, k, nan);
    CHECK_MSG(maxerr <= 1e-5 * maxref + 1e-6, "int8 lm_head %dx%d norm %d: max error %g (max |logit| %g)", n, k,
              with_norm, maxerr, maxref);
    CHECK_EQ_INT(am, ref_am);
    if (n > 3) CHECK(got[1] == 0.0f && got[3] == 0.0f);
    printf("int8 lm_head %dx%d norm %d pdl %d: quantizer identical, max error %.2e of %.2e, argmax %d\n", n, k, with_norm,
           pdl, maxerr, maxref, am);
    free(hw), free(q), free(gq), free(sc), free(gsc), free(x), free(nw), free(xn), free(ref), free(got);
    cudaFree(dw), cudaFree(dq), cudaFree(ds), cudaFree(dx), cudaFree(dn), cudaFree(dl), cudaFree(dbest), cudaFree(dam);
}

static void test_lm_head_i8_all(void) {
    test_lm_head_i8(1001, 2560, 1, 1);
    test_lm_head_i8(7, 16, 1, 0);
    test_lm_head_i8(33, 4096, 0, 1);
    test_lm_head_i8(300, 5008, 1, 1);
    test_lm_head_i8(50, 16384, 1, 0);
    test_lm_head_i8(12345, 2560, 1, 1);
    /* bad arguments: k not a multiple of 16, no scales, NULL weights */
    int8_t *dq = dmalloc(64 * 32);
    float *ds = dmalloc(64 * 4), *dx = dmalloc(64 * 4), *dl = dmalloc(64 * 4);
    CHECK_EQ_INT(kcuda_lm_head_i8(dq, ds, 64, 24, dx, NULL, 0, dl, NULL, NULL, 0, NULL), KCUDA_ERR_SHAPE);
    CHECK_EQ_INT(kcuda_lm_head_i8(dq, NULL, 64, 32, dx, NULL, 0, dl, NULL, NULL, 0, NULL), KCUDA_ERR_ARG);
    CHECK_EQ_INT(kcuda_lm_head_i8(NULL, ds, 64, 32, dx, NULL, 0, dl, NULL, NULL, 0, NULL), KCUDA_ERR_ARG);
    CHECK_EQ_INT(kcuda_quant_rows_i8((KcudaDtype)7, dq, 64, 32, dq, ds, NULL), KCUDA_ERR_ARG);
    cudaFree(dq), cudaFree(ds), cudaFree(dx), cudaFree(dl);
}
