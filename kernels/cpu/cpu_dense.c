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

void dense_row_to_f32(CpuDenseType type, const void *w, int k, int r, float *out) {
    if (type == CPU_DENSE_F16) {
        f16_to_f32_row((const uint16_t *)w + (size_t)r * k, out, k);
        return;
    }
    dense_row_to_f32_ref(type, w, k, r, out);
}

/* ---- dense GEMM --------------------------------------------------------------------------------- */

static float dense_row_scalar(CpuDenseType type, const void *w, int k, const float *xm, int r) {
    float acc[8] = {0};
    int j = 0;
    for (; j + 8 <= k; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += dense_get(type, w, (size_t)r * k + j + l) * xm[j + l];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; j < k; j++) s += dense_get(type, w, (size_t)r * k + j) * xm[j];
    return s;
}

static void dense_rows_scalar(CpuDenseType type, const void *w, int k, const float *x, int M,
                              int r0, int r1, float *y, int ld_y) {
    for (int r = r0; r < r1; r++)
        for (int m = 0; m < M; m++) y[(size_t)m * ld_y + r] = dense_row_scalar(type, w, k, x + (size_t)m * k, r);
}

#ifdef BN_X86
AVX2_TARGET static inline __m256 load8(CpuDenseType type, const void *w, size_t i) {
    if (type == CPU_DENSE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    if (type == CPU_DENSE_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i))), 16));
    return _mm256_loadu_ps((const float *)w + i);
}

/* ((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7)): the reference's combination order (dot_f32_ref) */
AVX2_TARGET static inline float hsum_ps(__m256 v) {
    const __m256 t = _mm256_hadd_ps(v, v);
    const __m256 u = _mm256_hadd_ps(t, t);
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1)));
}

/* The same sum for eight vectors at once: lane j of the result is hsum_ps(v[j]). */
AVX2_TARGET static inline __m256 hsum8_ps(const __m256 v[8]) {
    const __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
    const __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* exp_ref on 8 lanes with the same operations */
AVX2_TARGET static inline __m256 exp8_ps(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ); /* false for nan and below -87 */
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 z = _mm256_mul_ps(r, r);
    __m256 y = _mm256_fmadd_ps(p, z, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), keep);
}

/* softmax in place, as the reference's softmax_ref */
AVX2_TARGET static void softmax_avx2(float *x, int n) {
    float mx = -INFINITY;
    for (int t = 0; t < n; t++)
        if (x[t] > mx) mx = x[t];
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    int t = 0;
    for (; t + 8 <= n; t += 8) {
        const __m256 e = exp8_ps(_mm256_sub_ps(_mm256_loadu_ps(x + t), vmx));
        _mm256_storeu_ps(x + t, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum_ps(acc);
    for (; t < n; t++) {
        x[t] = exp_ref(x[t] - mx);
        sum = sum + x[t];
    }
    const float inv = 1.0f / sum;
    const __m256 vinv = _mm256_set1_ps(inv);
    for (t = 0; t + 8 <= n; t += 8) _mm256_storeu_ps(x + t, _mm256_mul_ps(_mm256_loadu_ps(x + t), vinv));
    for (; t < n; t++) x[t] = x[t] * inv;
}

/* One row of the GEMV below, with the very operations each row of its 4-row groups does, so
 * that a row's value never depends on the group it fell in (dense_dot_row, the screen). */
AVX2_TARGET static inline float gemv_row_avx2(CpuDenseType type, const void *w, int k,
                                              const float *x, int r) {
    const int k16 = k / 16 * 16;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    const size_t row = (size_t)r * k;
    for (int j = 0; j < k16; j += 16) {
        a0 = _mm256_fmadd_ps(load8(type, w, row + j), _mm256_loadu_ps(x + j), a0);
        a1 = _mm256_fmadd_ps(load8(type, w, row + j + 8), _mm256_loadu_ps(x + j + 8), a1);
    }
    float s = hsum_ps(_mm256_add_ps(a0, a1));
    for (int j = k16; j < k; j++) s += dense_get(type, w, row + j) * x[j];
    return s;
}

/* One token: 4 rows at a time, two accumulators per row (8 FMA chains in flight). */
AVX2_TARGET static void dense_gemv_avx2(CpuDenseType type, const void *w, int k, const float *x,
                                        int r0, int r1, float *y) {
    const int k16 = k / 16 * 16;
    const size_t esz = type == CPU_DENSE_F32 ? 4 : 2;
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        __m256 a[4][2];
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm256_setzero_ps();
        /* next 4-row group, one group ahead, into L2: the 4 rows are interleaved streams that
         * the hardware prefetcher follows poorly (see gemv_rows_vnni). L2, not L1: a group of
         * an lm_head is 20 KB and would evict the rows in use (one core, from DRAM: 13 GB/s
         * without, 14 into L1, 22 into L2). */
        const char *next = (const char *)w + (size_t)(r + 4) * k * esz;
        for (int j = 0; j < k16; j += 16) {
            for (size_t o = 0; o < 64 * esz; o += 64) _mm_prefetch(next + (size_t)j * 4 * esz + o, _MM_HINT_T1);
            const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
            #pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const size_t base = (size_t)(r + i) * k + j;
                a[i][0] = _mm256_fmadd_ps(load8(type, w, base), x0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(load8(type, w, base + 8), x1, a[i][1]);
            }
        }
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            float s = hsum_ps(_mm256_add_ps(a[i][0], a[i][1]));
            for (int j = k16; j < k; j++) s += dense_get(type, w, (size_t)(r + i) * k + j) * x[j];
            y[r + i] = s;
        }
    }
    for (; r < r1; r++) y[r] = gemv_row_avx2(type, w, k, x, r);
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
            #pragma GCC unroll 4
            for (int i = 0; i < 2; i++)
                #pragma GCC unroll 4
                for (int t = 0; t < 4; t++) a[i][t] = _mm256_setzero_ps();
            for (int j = 0; j < k8; j += 8) {
                __m256 wv[2];
                #pragma GCC unroll 4
                for (int i = 0; i < nr; i++) wv[i] = load8(type, w, (size_t)(r + i) * k + j);
                #pragma GCC unroll 4
                for (int t = 0; t < nt; t++) {
                    const __m256 xv = _mm256_loadu_ps(x + (size_t)(m + t) * k + j);
                    #pragma GCC unroll 4
                    for (int i = 0; i < nr; i++) a[i][t] = _mm256_fmadd_ps(wv[i], xv, a[i][t]);
                }
            }
            #pragma GCC unroll 4
            for (int i = 0; i < nr; i++)
                #pragma GCC unroll 4
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

float dense_dot_row(CpuDenseType type, const void *w, int k, const float *x, int r) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) return gemv_row_avx2(type, w, k, x, r);
#endif
    return dense_row_scalar(type, w, k, x, r);
}

typedef struct {
    CpuDenseType type;
    const void *w;
    int n, k;
    const float *x;
    int M;
    float *y;
    int ld_y, next;
} DenseJob;

enum { DENSE_CHUNK = 256 }; /* rows per claimed chunk: 1.3 MB of an f16 2560-wide lm_head */

static void dense_task(void *ctx, int ith, int nth) {
    DenseJob *j = ctx;
    (void)ith, (void)nth;
    for (int c; (c = cpu_chunk_claim(&j->next)) * DENSE_CHUNK < j->n;) {
        const int r0 = c * DENSE_CHUNK, r1 = r0 + DENSE_CHUNK < j->n ? r0 + DENSE_CHUNK : j->n;
        dense_gemm_rows(j->type, j->w, j->k, j->x, j->M, r0, r1, j->y, j->ld_y);
    }
}

void dense_gemm_mt(CpuPool *p, CpuDenseType type, const void *w, int n, int k, const float *x,
                   int M, float *y, int ld_y) {
    DenseJob j = {type, w, n, k, x, M, y, ld_y, 0};
    cpu_pool_run(p, dense_task, &j);
}

/* ---- int8 lm_head ----------------------------------------------------------------------------- */

/* Quantization: the same operations as lm_head_quant_i8_ref (max |w| per row; s = max / 127 in
 * fp32; q = rint(w / s) clamped to +-127, an IEEE division per element), 8 lanes at a time, so
 * the bytes and scales are identical. */
#ifdef BN_X86
AVX2_TARGET static void quant_i8_rows_avx2(CpuDenseType type, const void *w, int n, int k,
                                           int8_t *q, float *scale) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const int k8 = k / 8 * 8;
    for (int r = 0; r < n; r++) {
        const size_t base = (size_t)r * k;
        __m256 vm = _mm256_setzero_ps();
        for (int j = 0; j < k8; j += 8) vm = _mm256_max_ps(_mm256_and_ps(load8(type, w, base + j), absmask), vm);
        float lanes[8], m = 0.0f;
        _mm256_storeu_ps(lanes, vm);
        for (int l = 0; l < 8; l++) m = fmaxf(m, lanes[l]);
        for (int j = k8; j < k; j++) m = fmaxf(m, fabsf(dense_get(type, w, base + j)));
        volatile float sv = m / 127.0f; /* as the reference: one fp32 division, kept as written */
        const float s = sv;
        scale[r] = s;
        if (!(s > 0.0f)) {
            memset(q + base, 0, (size_t)k);
            continue;
        }
        const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
        int j = 0;
        for (; j < k8; j += 8) {
            __m256 v = _mm256_round_ps(_mm256_div_ps(load8(type, w, base + j), vs),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            const __m256i i32 = _mm256_cvtps_epi32(v);
            const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
            _mm_storel_epi64((__m128i *)(q + base + j), _mm_packs_epi16(i16, i16));
        }
        for (; j < k; j++) {
            float v = rintf(dense_get(type, w, base + j) / s);
            v = fminf(fmaxf(v, -127.0f), 127.0f);
            q[base + j] = (int8_t)(int)v;
        }
    }
}
#endif

void lm_head_quant_i8_cpu(CpuDenseType type, const void *w, int n, int k, int8_t *q, float *scale) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) {
        quant_i8_rows_avx2(type, w, n, k, q, scale);
        return;
    }
#endif
    lm_head_quant_i8_ref(type, w, n, k, q, scale);
}

/* The screen's bound constants (lm_head_screen_bound_ref), 8 elements at a time in two double
 * vectors: the same sums of squares in another order, both rounded up with the same slack. */
#ifdef BN_X86
AVX2_TARGET static void screen_bound_avx2(CpuDenseType type, const void *w, const int8_t *q,
                                          const float *scale, int n, int k, float *B) {
    const int k8 = k / 8 * 8;
    for (int r = 0; r < n; r++) {
        const size_t base = (size_t)r * k;
        const double s = scale[r];
        const __m256d vs = _mm256_set1_pd(s);
        __m256d e = _mm256_setzero_pd(), ww = _mm256_setzero_pd(), qq = _mm256_setzero_pd();
        for (int j = 0; j < k8; j += 8) {
            const __m256 wf = load8(type, w, base + j);
            const __m256 qf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + base + j))));
            const __m256d w0 = _mm256_cvtps_pd(_mm256_castps256_ps128(wf)), w1 = _mm256_cvtps_pd(_mm256_extractf128_ps(wf, 1));
            const __m256d q0 = _mm256_cvtps_pd(_mm256_castps256_ps128(qf)), q1 = _mm256_cvtps_pd(_mm256_extractf128_ps(qf, 1));
            const __m256d d0 = _mm256_sub_pd(w0, _mm256_mul_pd(vs, q0)), d1 = _mm256_sub_pd(w1, _mm256_mul_pd(vs, q1));
            e = _mm256_add_pd(e, _mm256_add_pd(_mm256_mul_pd(d0, d0), _mm256_mul_pd(d1, d1)));
            ww = _mm256_add_pd(ww, _mm256_add_pd(_mm256_mul_pd(w0, w0), _mm256_mul_pd(w1, w1)));
            qq = _mm256_add_pd(qq, _mm256_add_pd(_mm256_mul_pd(q0, q0), _mm256_mul_pd(q1, q1)));
        }
        double le[4], lw[4], lq[4];
        _mm256_storeu_pd(le, e), _mm256_storeu_pd(lw, ww), _mm256_storeu_pd(lq, qq);
        double e2 = (le[0] + le[1]) + (le[2] + le[3]), w2 = (lw[0] + lw[1]) + (lw[2] + lw[3]);
        double q2 = (lq[0] + lq[1]) + (lq[2] + lq[3]);
        for (int j = k8; j < k; j++) {
            const double wj = dense_get(type, w, base + j), qj = q[base + j], d = wj - s * qj;
            e2 += d * d, w2 += wj * wj, q2 += qj * qj;
        }
        B[r] = lm_screen_bound_finish(e2, w2, q2, s, k);
    }
}
#endif

void lm_head_screen_bound_cpu(CpuDenseType type, const void *w, const int8_t *q,
                              const float *scale, int n, int k, float *B) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) {
        screen_bound_avx2(type, w, q, scale, n, k, B);
        return;
    }
#endif
    lm_head_screen_bound_ref(type, w, q, scale, n, k, B);
}

/* GEMV: y[r] = scale[r] * sum_j q[r][j] x[j], fp32 FMA lanes (the reference sums in double, so
 * the two agree to fp32 rounding). 4 rows at a time share the activation loads; the next group
 * is prefetched into L2 as in dense_gemv_avx2 (4 interleaved row streams). */
static void i8_gemv_scalar(const int8_t *q, const float *scale, int k, const float *x, int r0,
                           int r1, float *y) {
    for (int r = r0; r < r1; r++) {
        float acc = 0.0f;
        for (int j = 0; j < k; j++) acc += (float)q[(size_t)r * k + j] * x[j];
        y[r] = acc * scale[r];
    }
}

#ifdef BN_X86
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
AVX512_TARGET static void i8_gemv_avx512(const int8_t *q, const float *scale, int k,
                                         const float *x, int r0, int r1, float *y) {
    const int k32 = k / 32 * 32;
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        __m512 a[4][2];
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm512_setzero_ps();
        const char *next = (const char *)(q + (size_t)(r + 4) * k);
        for (int j = 0; j < k32; j += 32) {
            _mm_prefetch(next + (size_t)j * 4, _MM_HINT_T1);
            _mm_prefetch(next + (size_t)j * 4 + 64, _MM_HINT_T1);
            const __m512 x0 = _mm512_loadu_ps(x + j), x1 = _mm512_loadu_ps(x + j + 16);
            #pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const int8_t *row = q + (size_t)(r + i) * k + j;
                const __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)row)));
                const __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + 16))));
                a[i][0] = _mm512_fmadd_ps(w0, x0, a[i][0]);
                a[i][1] = _mm512_fmadd_ps(w1, x1, a[i][1]);
            }
        }
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(a[i][0], a[i][1]));
            for (int j = k32; j < k; j++) s += (float)q[(size_t)(r + i) * k + j] * x[j];
            y[r + i] = s * scale[r + i];
        }
    }
    if (r < r1) i8_gemv_scalar(q, scale, k, x, r, r1, y);
}

AVX2_TARGET static void i8_gemv_avx2(const int8_t *q, const float *scale, int k, const float *x,
                                     int r0, int r1, float *y) {
    const int k16 = k / 16 * 16;
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        __m256 a[4][2];
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm256_setzero_ps();
        const char *next = (const char *)(q + (size_t)(r + 4) * k);
        for (int j = 0; j < k16; j += 16) {
            _mm_prefetch(next + (size_t)j * 4, _MM_HINT_T1);
            const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
            #pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const int8_t *row = q + (size_t)(r + i) * k + j;
                const __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)row)));
                const __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + 8))));
                a[i][0] = _mm256_fmadd_ps(w0, x0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(w1, x1, a[i][1]);
            }
        }
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            float s = hsum_ps(_mm256_add_ps(a[i][0], a[i][1]));
            for (int j = k16; j < k; j++) s += (float)q[(size_t)(r + i) * k + j] * x[j];
            y[r + i] = s * scale[r + i];
        }
    }
    if (r < r1) i8_gemv_scalar(q, scale, k, x, r, r1, y);
}
#endif

void lm_head_i8_gemv_rows(const int8_t *q, const float *scale, int k, const float *x, int r0,
                          int r1, float *y) {
#ifdef BN_X86
    const CpuIsa isa = cpu_isa_active();
    if (isa >= CPU_ISA_AVX512) {
        i8_gemv_avx512(q, scale, k, x, r0, r1, y);
        return;
    }
    if (isa >= CPU_ISA_AVX2) {
        i8_gemv_avx2(q, scale, k, x, r0, r1, y);
        return;
    }
#endif
    i8_gemv_scalar(q, scale, k, x, r0, r1, y);
}

typedef struct {
    const int8_t *q;
    const float *scale;
    int n, k;
    const float *x;
    int M;
    float *y;
    int ld_y, next;
} I8Job;

enum { I8_CHUNK = 512 }; /* rows per claimed chunk: 1.3 MB of a 2560-wide int8 lm_head */

static void i8_task(void *ctx, int ith, int nth) {
    I8Job *j = ctx;
    (void)ith, (void)nth;
    const int per = (j->n + I8_CHUNK - 1) / I8_CHUNK;
    for (int c; (c = cpu_chunk_claim(&j->next)) < per * j->M;) {
        const int m = c / per, r0 = (c % per) * I8_CHUNK;
        const int r1 = r0 + I8_CHUNK < j->n ? r0 + I8_CHUNK : j->n;
        lm_head_i8_gemv_rows(j->q, j->scale, j->k, j->x + (size_t)m * j->k, r0, r1,
                             j->y + (size_t)m * j->ld_y);
    }
}

void lm_head_i8_gemm_mt(CpuPool *p, const int8_t *q, const float *scale, int n, int k,
                        const float *x, int M, float *y, int ld_y) {
    I8Job j = {q, scale, n, k, x, M, y, ld_y, 0};
    cpu_pool_run(p, i8_task, &j);
}

/* ---- RMSNorm ----------------------------------------------------------------------------------- */

#ifdef BN_X86
AVX2_TARGET static void rmsnorm_avx2(const float *x, const float *w, int n, float eps, float *out) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    float ss = hsum_ps(acc);
    for (; i < n; i++) ss = fmaf(x[i], x[i], ss);
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
/* G (<= 4 per pass) heads sharing one KV head, head_dim % 8 == 0. Scores: two positions at a
 * time, each (head, position) one 8-lane FMA accumulator over the head as in dot_f32_ref, so
 * every K row is loaded and converted once for all the heads. Softmax as the reference. Output:
 * out[g][i] = fma(p[g][t], V[t][i], out[g][i]) in t order, 16 columns x 4 heads at a time. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
attention_pass_avx2(const float *qg, int ng, const void *k, const void *v, CpuDenseType ty,
                    size_t kv_stride, int n_ctx, int head_dim, float *sg, float *outg) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    {
        int t = 0;
        for (; t + 2 <= n_ctx; t += 2) {
            __m256 a[4][2];
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) a[g][0] = a[g][1] = _mm256_setzero_ps();
            const size_t b0 = (size_t)t * kv_stride;
            for (int i = 0; i < head_dim; i += 8) {
                const __m256 k0 = load8(ty, k, b0 + i), k1 = load8(ty, k, b0 + kv_stride + i);
#pragma GCC unroll 4
                for (int g = 0; g < ng; g++) {
                    const __m256 qv = _mm256_loadu_ps(qg + (size_t)g * head_dim + i);
                    a[g][0] = _mm256_fmadd_ps(qv, k0, a[g][0]);
                    a[g][1] = _mm256_fmadd_ps(qv, k1, a[g][1]);
                }
            }
            __m256 all[8];
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) all[g] = a[g][0], all[4 + g] = a[g][1];
            float sums[8];
            _mm256_storeu_ps(sums, _mm256_mul_ps(hsum8_ps(all), _mm256_set1_ps(scale)));
            for (int g = 0; g < ng; g++) {
                sg[(size_t)g * n_ctx + t] = sums[g];
                sg[(size_t)g * n_ctx + t + 1] = sums[4 + g];
            }
        }
        for (; t < n_ctx; t++)
            for (int g = 0; g < ng; g++) {
                __m256 a0 = _mm256_setzero_ps();
                for (int i = 0; i < head_dim; i += 8)
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + (size_t)g * head_dim + i), load8(ty, k, (size_t)t * kv_stride + i), a0);
                sg[(size_t)g * n_ctx + t] = hsum_ps(a0) * scale;
            }
        for (int g = 0; g < ng; g++) softmax_avx2(sg + (size_t)g * n_ctx, n_ctx);
        for (int i = 0; i < head_dim; i += 16) {
            const int two = i + 16 <= head_dim;
            __m256 o[4][2];
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) o[g][0] = o[g][1] = _mm256_setzero_ps();
            for (t = 0; t < n_ctx; t++) {
                const size_t b = (size_t)t * kv_stride + i;
                const __m256 v0 = load8(ty, v, b), v1 = two ? load8(ty, v, b + 8) : v0;
#pragma GCC unroll 4
                for (int g = 0; g < ng; g++) {
                    const __m256 p = _mm256_set1_ps(sg[(size_t)g * n_ctx + t]);
                    o[g][0] = _mm256_fmadd_ps(p, v0, o[g][0]);
                    o[g][1] = _mm256_fmadd_ps(p, v1, o[g][1]);
                }
            }
            for (int g = 0; g < ng; g++) {
                float *og = outg + (size_t)g * head_dim + i;
                _mm256_storeu_ps(og, o[g][0]);
                if (two) _mm256_storeu_ps(og + 8, o[g][1]);
            }
        }
    }
}

/* Passes of 4 heads (the 2B model's GQA group), then 2 and 1, each with a constant head count
 * so the accumulators stay in registers. */
AVX2_TARGET static void attention_group_avx2(const float *q, int G, const void *k, const void *v,
                                             int kv_f16, size_t kv_stride, int n_ctx,
                                             int head_dim, float *scratch, float *out) {
    const CpuDenseType ty = kv_f16 ? CPU_DENSE_F16 : CPU_DENSE_F32;
    int g0 = 0;
    for (; g0 + 4 <= G; g0 += 4)
        attention_pass_avx2(q + (size_t)g0 * head_dim, 4, k, v, ty, kv_stride, n_ctx, head_dim,
                            scratch + (size_t)g0 * n_ctx, out + (size_t)g0 * head_dim);
    for (; g0 + 2 <= G; g0 += 2)
        attention_pass_avx2(q + (size_t)g0 * head_dim, 2, k, v, ty, kv_stride, n_ctx, head_dim,
                            scratch + (size_t)g0 * n_ctx, out + (size_t)g0 * head_dim);
    for (; g0 < G; g0++)
        attention_pass_avx2(q + (size_t)g0 * head_dim, 1, k, v, ty, kv_stride, n_ctx, head_dim,
                            scratch + (size_t)g0 * n_ctx, out + (size_t)g0 * head_dim);
}
#endif

void attention_group_cpu(const float *q, int G, const void *k, const void *v, int kv_f16,
                         size_t kv_stride, int n_ctx, int head_dim, float *scratch, float *out) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2 && head_dim % 8 == 0) {
        attention_group_avx2(q, G, k, v, kv_f16, kv_stride, n_ctx, head_dim, scratch, out);
        return;
    }
#endif
    attention_group_ref(q, G, k, v, kv_f16, kv_stride, n_ctx, head_dim, scratch, out);
}

void attention_head_cpu(const float *q, const void *k, const void *v, int kv_f16,
                        size_t kv_stride, int n_ctx, int head_dim, float *scratch, float *out) {
    attention_group_cpu(q, 1, k, v, kv_f16, kv_stride, n_ctx, head_dim, scratch, out);
}

/* ---- relu(g)^2 * u ------------------------------------------------------------------------------ */

#ifdef BN_X86
AVX2_TARGET static void relu2_mul_avx2(const float *g, const float *u, int n, float *m) {
    const __m256 z = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 r = _mm256_max_ps(_mm256_loadu_ps(g + i), z);
        _mm256_storeu_ps(m + i, _mm256_mul_ps(_mm256_mul_ps(r, r), _mm256_loadu_ps(u + i)));
    }
    if (i < n) relu2_mul_ref(g + i, u + i, n - i, m + i);
}
#endif

void relu2_mul_cpu(const float *g, const float *u, int n, float *m) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) {
        relu2_mul_avx2(g, u, n, m);
        return;
    }
#endif
    relu2_mul_ref(g, u, n, m);
}
