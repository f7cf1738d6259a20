/* Scalar reference twins (`_ref`) of the CPU kernels: plain loops, no SIMD, no threads. They
 * are the oracle the fast paths and the CUDA kernels are tested against, so they stay
 * obviously correct rather than fast. */
#include "kernels/cpu/cpu_fp.h"

#include <math.h>
#include <string.h>

#include "kernels/cpu/kernels_cpu.h"

int32_t qsum_ref(const int8_t *q, int n_pad) {
    int32_t s = 0;
    for (int i = 0; i < n_pad; i++) s += q[i];
    return s;
}

void w2a8_gemm_ref(const uint8_t *w, int n_out, int k_pad, const int8_t *q, int M,
                   int32_t *acc, int ld_acc) {
    for (int m = 0; m < M; m++)
        w2a8_gemv_ref(w, n_out, k_pad, q + (size_t)m * k_pad, acc + (size_t)m * ld_acc);
}

void w2a8_linear_ref(const uint8_t *w, int n_out, int k_pad, float gamma, const int8_t *q,
                     const float *s, int M, float *out, int ld_out, int accumulate) {
    const size_t rb = i2s_row_bytes(k_pad);
    for (int m = 0; m < M; m++) {
        const int8_t *qm = q + (size_t)m * k_pad;
        for (int r = 0; r < n_out; r++) {
            const uint8_t *row = w + rb * (size_t)r;
            int32_t acc = 0;
            for (int j = 0; j < k_pad; j++) acc += i2s_get(row, j) * (int32_t)qm[j];
            const float y = (float)acc / s[m] * gamma;
            float *o = &out[(size_t)m * ld_out + r];
            *o = accumulate ? *o + y : y;
        }
    }
}

/* ---- half / bfloat16 ------------------------------------------------------------------------ */

uint16_t f32_to_f16_ref(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan (keep a quiet nan) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {                                  /* below 2^-14: subnormal half */
        if (ax < 0x33000000u) return (uint16_t)sign;         /* < 2^-25: rounds to 0 */
        const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
        const int e = (int)(ax >> 23);                       /* 102..112 */
        const int shift = 126 - e;                           /* so that result = mant >> shift */
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((ax >> 13) - ((127u - 15u) << 10));
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into the exponent */
    return (uint16_t)(sign | h);
}

float f16_to_f32_ref(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu;
    uint32_t x;
    if (e == 0) {
        if (m == 0) x = sign;
        else { /* subnormal: m * 2^-24 */
            float f = (float)m * 5.9604644775390625e-8f;
            memcpy(&x, &f, 4);
            x |= sign;
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0); /* nan comes out quiet, as F16C does */
    } else {
        x = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

float bf16_to_f32_ref(uint16_t h) {
    const uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

void dense_gemm_ref(CpuDenseType type, const void *w, int n, int k, const float *x, int M,
                    float *y, int ld_y) {
    for (int m = 0; m < M; m++)
        for (int r = 0; r < n; r++) {
            double acc = 0;
            for (int j = 0; j < k; j++)
                acc += (double)dense_get(type, w, (size_t)r * k + j) * x[(size_t)m * k + j];
            y[(size_t)m * ld_y + r] = (float)acc;
        }
}

void dense_row_to_f32_ref(CpuDenseType type, const void *w, int k, int r, float *out) {
    for (int j = 0; j < k; j++) out[j] = dense_get(type, w, (size_t)r * k + j);
}

void lm_head_quant_i8_ref(CpuDenseType type, const void *w, int n, int k, int8_t *q, float *scale) {
    for (int r = 0; r < n; r++) {
        float m = 0.0f;
        for (int j = 0; j < k; j++) m = fmaxf(m, fabsf(dense_get(type, w, (size_t)r * k + j)));
        /* volatile: the division is done in fp32 exactly as written (no reassociation into a
         * multiply by 127/m), so the bytes match the device quantizer */
        volatile float s = m / 127.0f;
        scale[r] = s;
        for (int j = 0; j < k; j++) {
            float v = s > 0.0f ? rintf(dense_get(type, w, (size_t)r * k + j) / s) : 0.0f;
            v = fminf(fmaxf(v, -127.0f), 127.0f);
            q[(size_t)r * k + j] = (int8_t)(int)v;
        }
    }
}

void lm_head_i8_gemv_ref(const int8_t *q, const float *scale, int n, int k, const float *x, float *y) {
    for (int r = 0; r < n; r++) {
        double acc = 0;
        for (int j = 0; j < k; j++) acc += (double)q[(size_t)r * k + j] * x[j];
        y[r] = (float)(acc * scale[r]);
    }
}

/* The screen's per-row bound constant (kernels_cpu.h, "the screened exact lm_head"). The sums
 * run in double: s_r q_rj is exact there (24 x 8 bits) and the relative error of the three
 * sums of squares is below k 2^-53 (3e-13 at k = 2560), which the factor 1 + 1e-9 covers
 * before the result is rounded up to fp32. */
float lm_screen_bound_finish(double e2, double w2, double q2, double s, int k) {
    const double u = 0x1p-24, K = (double)k + 16.0, gamma = K * u / (1.0 - K * u);
    const double B = (sqrt(e2) + gamma * (sqrt(w2) + s * sqrt(q2))) * (1.0 + 1e-9);
    float f = (float)B;
    if ((double)f < B) f = nextafterf(f, INFINITY);
    return f;
}

void lm_head_screen_bound_ref(CpuDenseType type, const void *w, const int8_t *q,
                              const float *scale, int n, int k, float *B) {
    for (int r = 0; r < n; r++) {
        const double s = scale[r];
        double e2 = 0, w2 = 0, q2 = 0;
        for (int j = 0; j < k; j++) {
            const double wj = dense_get(type, w, (size_t)r * k + j), qj = q[(size_t)r * k + j];
            const double d = wj - s * qj;
            e2 += d * d;
            w2 += wj * wj;
            q2 += qj * qj;
        }
        B[r] = lm_screen_bound_finish(e2, w2, q2, s, k);
    }
}

float lm_screen_xnorm(const float *x, int k) {
    double ss = 0;
    for (int j = 0; j < k; j++) ss += (double)x[j] * x[j];
    const double n = sqrt(ss) * (1.0 + 1e-9);
    float f = (float)n;
    if ((double)f < n) f = nextafterf(f, INFINITY);
    return f;
}

/* ---- norms, rope, attention ----------------------------------------------------------------- */

/* The fixed summation order of fp32 dot products in the reference: 8 interleaved partial sums
 * (lane l takes elements l, l+8, l+16, ...; each step one fused multiply-add, fmaf), combined
 * as ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7)), then the tail (n % 8) in order, also fused. A SIMD
 * path that keeps one 8-lane FMA accumulator and does the same horizontal sum gets the same
 * bits, so the fast forward pass can match this reference exactly (no int8 rounding flips
 * between them). */
float dot_f32_ref(const float *a, const float *b, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] = fmaf(a[i + l], b[i + l], acc[l]);
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

void rmsnorm_ref(const float *x, const float *w, int n, float eps, float *out) {
    const float ss = dot_f32_ref(x, x, n);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * inv);
}

void rope_table_init(float *cs, int n_pos, int head_dim, float theta) {
    rope_table_fill(cs, 0, n_pos, head_dim, theta);
}

void rope_table_fill(float *cs, int p0, int p1, int head_dim, float theta) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* transformers: inv_freq = 1 / base ** (arange(0, hd, 2).float() / hd), all fp32 */
        const float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        for (int p = p0; p < p1; p++) {
            const float a = (float)p * inv_freq;
            cs[((size_t)p * half + i) * 2 + 0] = cosf(a);
            cs[((size_t)p * half + i) * 2 + 1] = sinf(a);
        }
    }
}

void rope_apply_ref(float *x, int n_heads, int head_dim, const float *cs_pos, int style) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            const float c = cs_pos[2 * i], s = cs_pos[2 * i + 1];
            const int i0 = style == 0 ? i : 2 * i, i1 = style == 0 ? i + half : 2 * i + 1;
            const float a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = b * c + a * s;
        }
    }
}

static float kv_get(const void *base, int kv_f16, size_t i) {
    return kv_f16 ? f16_to_f32_ref(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

/* dot_f32_ref's order, with the K row read (and converted) in place */
static float dot_kv_ref(const float *q, const void *k, int kv_f16, size_t row, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] = fmaf(q[i + l], kv_get(k, kv_f16, row + i + l), acc[l]);
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s = fmaf(q[i], kv_get(k, kv_f16, row + i), s);
    return s;
}

/* e^x for the softmax, defined here (not libm's expf) so that the scalar reference and the SIMD
 * paths compute it with the same IEEE operations and agree bit for bit: x = n ln2 + r with
 * n = rint(x log2 e), r reduced with a two-part ln2 by fused multiply-adds, e^r from the
 * Cephes degree-7 polynomial (Horner, fused), then scaled by 2^n through the exponent bits.
 * Within 2 ulp of e^x on [-87, 88]; below -87 it returns 0 (e^-87 < 2e-38; softmax inputs are
 * x - max <= 0, and the sum they are divided by is at least 1). */
float exp_ref(float x) {
    if (!(x >= -87.0f)) return 0.0f; /* also -inf and nan */
    if (x > 88.0f) x = 88.0f;
    const float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    const float z = r * r;
    float y = fmaf(p, z, r);
    y = y + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, 4);
    return y * two_n;
}

/* In place: x = softmax(x). The sum uses dot_f32_ref's order (8 interleaved partial sums). */
static void softmax_ref(float *x, int n) {
    float mx = -INFINITY;
    for (int t = 0; t < n; t++)
        if (x[t] > mx) mx = x[t];
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int t = 0;
    for (; t + 8 <= n; t += 8)
        for (int l = 0; l < 8; l++) {
            x[t + l] = exp_ref(x[t + l] - mx);
            acc[l] = acc[l] + x[t + l];
        }
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; t < n; t++) {
        x[t] = exp_ref(x[t] - mx);
        sum = sum + x[t];
    }
    const float inv = 1.0f / sum;
    for (t = 0; t < n; t++) x[t] = x[t] * inv;
}

void attention_head_ref(const float *q, const void *k, const void *v, int kv_f16,
                        size_t kv_stride, int n_ctx, int head_dim, float *scratch, float *out) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    for (int t = 0; t < n_ctx; t++)
        scratch[t] = dot_kv_ref(q, k, kv_f16, (size_t)t * kv_stride, head_dim) * scale;
    softmax_ref(scratch, n_ctx);
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0; t < n_ctx; t++)
        for (int i = 0; i < head_dim; i++)
            out[i] = fmaf(scratch[t], kv_get(v, kv_f16, (size_t)t * kv_stride + i), out[i]);
}

void attention_group_ref(const float *q, int G, const void *k, const void *v, int kv_f16,
                         size_t kv_stride, int n_ctx, int head_dim, float *scratch, float *out) {
    for (int g = 0; g < G; g++)
        attention_head_ref(q + (size_t)g * head_dim, k, v, kv_f16, kv_stride, n_ctx, head_dim,
                           scratch + (size_t)g * n_ctx, out + (size_t)g * head_dim);
}

void relu2_mul_ref(const float *g, const float *u, int n, float *m) {
    for (int i = 0; i < n; i++) {
        const float r = g[i] > 0.0f ? g[i] : 0.0f;
        m[i] = r * r * u[i];
    }
}

void silu_mul_ref(const float *g, const float *u, int n, float *m) {
    for (int i = 0; i < n; i++) m[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
