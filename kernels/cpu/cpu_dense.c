/* Fast fp32 kernels: dense f16/bf16/f32 matrix products (the lm_head), half conversions,
 * RMSNorm and one-head attention, with AVX2/FMA/F16C paths and scalar fallbacks.
 * The dense products use FMA in their own order and match dense_gemm_ref to fp32 rounding.
 * RMSNorm and attention keep the reference's summation order (dot_f32_ref: one 8-lane
 * accumulator, multiply then add, the same horizontal sum) and are bit-identical to it. */
#include "kernels/cpu/cpu_fp.h"

#include <math.h>
#include <string.h>

#include "kernels/cpu/kernels_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BN_X86 1
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#endif

/* ---- conversions ------------------------------------------------------------------------------ */

#ifdef BN_X86
AVX2_TARGET static void f32_to_f16_avx2(const float *x, uint16_t *h, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = f32_to_f16_ref(x[i]);
}
AVX2_TARGET static void f16_to_f32_avx2(const uint16_t *h, float *x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) x[i] = f16_to_f32_ref(h[i]);
}
#endif

void f32_to_f16_row(const float *x, uint16_t *h, int n) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) {
        f32_to_f16_avx2(x, h, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) h[i] = f32_to_f16_ref(x[i]);
}

void f16_to_f32_row(const uint16_t *h, float *x, int n) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) {
        f16_to_f32_avx2(h, x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) x[i] = f16_to_f32_ref(h[i]);
}

/* ---- dense GEMM --------------------------------------------------------------------------------- */

static float dense_get(CpuDenseType type, const void *w, size_t i) {
    switch (type) {
    case CPU_DENSE_F16: return f16_to_f32_ref(((const uint16_t *)w)[i]);
    case CPU_DENSE_BF16: return bf16_to_f32_ref(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

static void dense_rows_scalar(CpuDenseType type, const void *w, int k, const float *x, int M,
                              int r0, int r1, float *y, int ld_y) {
    for (int r = r0; r < r1; r++)
        for (int m = 0; m < M; m++) {
            float acc[8] = {0};
            const float *xm = x + (size_t)m * k;
            int j = 0;
            for (; j + 8 <= k; j += 8)
                for (int l = 0; l < 8; l++) acc[l] += dense_get(type, w, (size_t)r * k + j + l) * xm[j + l];
            float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for (; j < k; j++) s += dense_get(type, w, (size_t)r * k + j) * xm[j];
            y[(size_t)m * ld_y + r] = s;
        }
}

#ifdef BN_X86
AVX2_TARGET static inline __m256 load8(CpuDenseType type, const void *w, size_t i) {
    if (type == CPU_DENSE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    if (type == CPU_DENSE_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i))), 16));
    return _mm256_loadu_ps((const float *)w + i);
}

AVX2_TARGET static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One token: 4 rows at a time, two accumulators per row (8 FMA chains in flight). */
AVX2_TARGET static void dense_gemv_avx2(CpuDenseType type, const void *w, int k, const float *x,
                                        int r0, int r1, float *y) {
    const int k16 = k / 16 * 16;
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        __m256 a[4][2];
        for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm256_setzero_ps();
        for (int j = 0; j < k16; j += 16) {
            const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
            for (int i = 0; i < 4; i++) {
                const size_t base = (size_t)(r + i) * k + j;
                a[i][0] = _mm256_fmadd_ps(load8(type, w, base), x0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(load8(type, w, base + 8), x1, a[i][1]);
            }
        }
        for (int i = 0; i < 4; i++) {
            float s = hsum_ps(_mm256_add_ps(a[i][0], a[i][1]));
            for (int j = k16; j < k; j++) s += dense_get(type, w, (size_t)(r + i) * k + j) * x[j];
            y[r + i] = s;
        }
    }
    if (r < r1) dense_rows_scalar(type, w, k, x, 1, r, r1, y, 0);
}

/* Many tokens: 2 rows x 4 tokens register tile, so each weight is converted once per 4 tokens
 * and read once per call (rows are streamed in order). */
AVX2_TARGET static void dense_gemm_avx2(CpuDenseType type, const void *w, int k, const float *x,
                                        int M, int r0, int r1, float *y, int ld_y) {
    const int k8 = k / 8 * 8;
    for (int r = r0; r < r1; r += 2) {
        const int nr = r1 - r >= 2 ? 2 : 1;
        for (int m = 0; m < M; m += 4) {
            const int nt = M - m >= 4 ? 4 : M - m;
            __m256 a[2][4];
            for (int i = 0; i < 2; i++)
                for (int t = 0; t < 4; t++) a[i][t] = _mm256_setzero_ps();
            for (int j = 0; j < k8; j += 8) {
                __m256 wv[2];
                for (int i = 0; i < nr; i++) wv[i] = load8(type, w, (size_t)(r + i) * k + j);
                for (int t = 0; t < nt; t++) {
                    const __m256 xv = _mm256_loadu_ps(x + (size_t)(m + t) * k + j);
                    for (int i = 0; i < nr; i++) a[i][t] = _mm256_fmadd_ps(wv[i], xv, a[i][t]);
                }
            }
            for (int i = 0; i < nr; i++)
                for (int t = 0; t < nt; t++) {
                    float s = hsum_ps(a[i][t]);
                    for (int j = k8; j < k; j++)
                        s += dense_get(type, w, (size_t)(r + i) * k + j) * x[(size_t)(m + t) * k + j];
                    y[(size_t)(m + t) * ld_y + r + i] = s;
                }
        }
    }
}
#endif

void dense_gemm_rows(CpuDenseType type, const void *w, int k, const float *x, int M, int r0,
                     int r1, float *y, int ld_y) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) {
        if (M == 1) dense_gemv_avx2(type, w, k, x, r0, r1, y);
        else dense_gemm_avx2(type, w, k, x, M, r0, r1, y, ld_y);
        return;
    }
#endif
    dense_rows_scalar(type, w, k, x, M, r0, r1, y, ld_y);
}

typedef struct {
    CpuDenseType type;
    const void *w;
    int n, k;
    const float *x;
    int M;
    float *y;
    int ld_y;
} DenseJob;

static void dense_task(void *ctx, int ith, int nth) {
    const DenseJob *j = ctx;
    int r0, r1;
    cpu_split(j->n, 16, ith, nth, &r0, &r1);
    if (r1 > r0) dense_gemm_rows(j->type, j->w, j->k, j->x, j->M, r0, r1, j->y, j->ld_y);
}

void dense_gemm_mt(CpuPool *p, CpuDenseType type, const void *w, int n, int k, const float *x,
                   int M, float *y, int ld_y) {
    DenseJob j = {type, w, n, k, x, M, y, ld_y};
    cpu_pool_run(p, dense_task, &j);
}

/* ---- RMSNorm ----------------------------------------------------------------------------------- */

#ifdef BN_X86
AVX2_TARGET static void rmsnorm_avx2(const float *x, const float *w, int n, float eps, float *out) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(v, v));
    }
    float ss = hsum_ps(acc);
    for (; i < n; i++) {
        const float p = x[i] * x[i];
        ss = ss + p;
    }
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    const __m256 vinv = _mm256_set1_ps(inv);
    i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv)));
    for (; i < n; i++) out[i] = w[i] * (x[i] * inv);
}
#endif

void rmsnorm_cpu(const float *x, const float *w, int n, float eps, float *out) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) {
        rmsnorm_avx2(x, w, n, eps, out);
        return;
    }
#endif
    rmsnorm_ref(x, w, n, eps, out);
}

/* ---- attention (one query head) ------------------------------------------------------------------ */

#ifdef BN_X86
/* head_dim % 8 == 0. Scores: four positions at a time (independent chains), each one 8-lane
 * accumulator over the head as in dot_f32_ref. Output: out[i] += p_t * V[t][i] in t order,
 * four 8-wide column groups at a time. */
AVX2_TARGET static void attention_head_avx2(const float *q, const void *k, const void *v,
                                            int kv_f16, size_t kv_stride, int n_ctx,
                                            int head_dim, float *scratch, float *out) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    const CpuDenseType ty = kv_f16 ? CPU_DENSE_F16 : CPU_DENSE_F32;
    float mx = -INFINITY;
    int t = 0;
    for (; t + 4 <= n_ctx; t += 4) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const size_t b0 = (size_t)t * kv_stride;
        for (int i = 0; i < head_dim; i += 8) {
            const __m256 qv = _mm256_loadu_ps(q + i);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(qv, load8(ty, k, b0 + i)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(qv, load8(ty, k, b0 + kv_stride + i)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(qv, load8(ty, k, b0 + 2 * kv_stride + i)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(qv, load8(ty, k, b0 + 3 * kv_stride + i)));
        }
        scratch[t] = hsum_ps(a0) * scale;
        scratch[t + 1] = hsum_ps(a1) * scale;
        scratch[t + 2] = hsum_ps(a2) * scale;
        scratch[t + 3] = hsum_ps(a3) * scale;
    }
    for (; t < n_ctx; t++) {
        __m256 a0 = _mm256_setzero_ps();
        for (int i = 0; i < head_dim; i += 8)
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(q + i), load8(ty, k, (size_t)t * kv_stride + i)));
        scratch[t] = hsum_ps(a0) * scale;
    }
    for (t = 0; t < n_ctx; t++)
        if (scratch[t] > mx) mx = scratch[t];
    float sum = 0.0f;
    for (t = 0; t < n_ctx; t++) {
        scratch[t] = expf(scratch[t] - mx);
        sum += scratch[t];
    }
    const float inv = 1.0f / sum;
    for (t = 0; t < n_ctx; t++) scratch[t] = scratch[t] * inv;
    int i = 0;
    for (; i + 32 <= head_dim; i += 32) {
        __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
        for (t = 0; t < n_ctx; t++) {
            const __m256 p = _mm256_set1_ps(scratch[t]);
            const size_t b = (size_t)t * kv_stride + i;
            o0 = _mm256_add_ps(o0, _mm256_mul_ps(p, load8(ty, v, b)));
            o1 = _mm256_add_ps(o1, _mm256_mul_ps(p, load8(ty, v, b + 8)));
            o2 = _mm256_add_ps(o2, _mm256_mul_ps(p, load8(ty, v, b + 16)));
            o3 = _mm256_add_ps(o3, _mm256_mul_ps(p, load8(ty, v, b + 24)));
        }
        _mm256_storeu_ps(out + i, o0);
        _mm256_storeu_ps(out + i + 8, o1);
        _mm256_storeu_ps(out + i + 16, o2);
        _mm256_storeu_ps(out + i + 24, o3);
    }
    for (; i < head_dim; i += 8) {
        __m256 o0 = _mm256_setzero_ps();
        for (t = 0; t < n_ctx; t++)
            o0 = _mm256_add_ps(o0, _mm256_mul_ps(_mm256_set1_ps(scratch[t]), load8(ty, v, (size_t)t * kv_stride + i)));
        _mm256_storeu_ps(out + i, o0);
    }
}
#endif

void attention_head_cpu(const float *q, const void *k, const void *v, int kv_f16,
                        size_t kv_stride, int n_ctx, int head_dim, float *scratch, float *out) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2 && head_dim % 8 == 0 && head_dim <= 1024) {
        attention_head_avx2(q, k, v, kv_f16, kv_stride, n_ctx, head_dim, scratch, out);
        return;
    }
#endif
    attention_head_ref(q, k, v, kv_f16, kv_stride, n_ctx, head_dim, scratch, out);
}
