/* Fast ternary x int8 products on I2_S rows (see kernels_cpu.h for the contract).
 *
 * The trick shared by every x86 path: an I2_S block is 32 bytes holding 128 weights; shifting
 * the block right by 6, 4, 2, 0 and masking with 3 gives the codes of weights g, g+32, g+64,
 * g+96 (g = 0..31) as 32 byte lanes, i.e. 32 consecutive weights. A byte shuffle maps the codes
 * {0,1,2,3} to {0,1,2,1}, so an (unused) code 3 counts as zero exactly as in the reference.
 * The unsigned codes c then multiply the signed int8 activations q:
 *   AVX2:    vpmaddubsw (u8 x s8 -> pairs summed in int16; |pair| <= 2*2*128 = 512, so never
 *            saturates), summed in int16 for at most 32 products (|sum| <= 16384), then widened
 *            with vpmaddwd against ones;
 *   AVX-512: vpdpbusd (u8 x s8, four products summed straight into int32, no saturation).
 * and sum_j (c_j - 1) q_j = sum_j c_j q_j - sum_j q_j: the row sum of q (qsum) is subtracted
 * once per output. All integer results equal w2a8_gemm_ref exactly.
 *
 * Decode (one token) streams each weight byte once: it is memory bound, so the GEMV decodes the
 * codes on the fly, 4 rows at a time sharing the activation loads. Prefill (many tokens) is
 * compute bound: the GEMM decodes a panel of 4 rows once into a stack buffer and reuses it for
 * every token of the batch, with a 4 rows x 4 tokens register tile. */
#include "kernels/cpu/cpu_fp.h"

#include <math.h>
#include <string.h>

#include "kernels/cpu/kernels_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BN_X86 1
#endif

enum {
    GEMM_RB = 4,      /* rows per panel */
    GEMM_TB = 4,      /* tokens per register tile */
    GEMM_MT = 64,     /* tokens per pass over a panel (acc tile on the stack) */
    GEMM_KC = 8192,   /* k per panel chunk: 4 rows x 8192 codes = 32 KiB of stack */
};

/* ---- activation quantization ---------------------------------------------------------------- */

#ifdef BN_X86
__attribute__((target("avx2,fma,f16c"))) static float quant_act_avx2(const float *x, int n,
                                                                      int n_pad, int8_t *q,
                                                                      int32_t *qsum) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 vmax = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    float amax = _mm_cvtss_f32(m4);
    for (; i < n; i++) {
        const float a = x[i] < 0 ? -x[i] : x[i];
        if (a > amax) amax = a;
    }
    const float s = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
    const __m256 vs = _mm256_set1_ps(s);
    __m256i vsum = _mm256_setzero_si256();
    i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v[4];
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256 f = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), vs),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v[j] = _mm256_cvtps_epi32(f);
            vsum = _mm256_add_epi32(vsum, v[j]);
        }
        /* packs saturate to [-128, 127], the same clamp as the reference */
        const __m256i p01 = _mm256_packs_epi32(v[0], v[1]), p23 = _mm256_packs_epi32(v[2], v[3]);
        __m256i b = _mm256_packs_epi16(p01, p23);
        b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), b);
    }
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(vsum), _mm256_extracti128_si256(vsum, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    int32_t sum = _mm_cvtsi128_si32(s4);
    /* the tail: rintf rounds half to even, as _mm256_round_ps does */
    for (int j = i; j < n; j++) {
        float v = rintf(x[j] * s);
        v = v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v;
        q[j] = (int8_t)v;
        sum += q[j];
    }
    memset(q + n, 0, (size_t)(n_pad - n));
    if (qsum) *qsum = sum;
    return s;
}
#endif

float quant_act_cpu(const float *x, int n, int n_pad, int8_t *q, int32_t *qsum) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) return quant_act_avx2(x, n, n_pad, q, qsum);
#endif
    const float s = quant_act_ref(x, n, n_pad, q);
    if (qsum) *qsum = qsum_ref(q, n_pad);
    return s;
}

/* ---- scalar fast path ----------------------------------------------------------------------- */

static const int8_t code_value[4] = {-1, 0, 1, 0};

/* Decodes a row of I2_S codes into int8 {-1, 0, 1}. */
static void decode_row_scalar(const uint8_t *row, int k_pad, int8_t *t) {
    for (int b = 0; b < k_pad / I2S_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * I2S_BLOCK_BYTES;
        int8_t *tb = t + (size_t)b * I2S_BLOCK;
        for (int g = 0; g < 32; g++) {
            const uint8_t c = blk[g];
            tb[g] = code_value[c >> 6];
            tb[g + 32] = code_value[(c >> 4) & 3];
            tb[g + 64] = code_value[(c >> 2) & 3];
            tb[g + 96] = code_value[c & 3];
        }
    }
}

/* rows [r0, r1) x tokens [0, M): true sums (already signed, no qsum needed), written to
 * acc[m * ld_acc + (r - r0)] */
static void gemm_scalar(const uint8_t *w, int k_pad, const int8_t *q, int M, int r0, int r1,
                        int32_t *acc, int ld_acc) {
    int8_t t[GEMM_KC];
    const size_t rb = i2s_row_bytes(k_pad);
    for (int r = r0; r < r1; r++) {
        for (int m = 0; m < M; m++) acc[(size_t)m * ld_acc + (r - r0)] = 0;
        for (int k0 = 0; k0 < k_pad; k0 += GEMM_KC) {
            const int kc = k_pad - k0 < GEMM_KC ? k_pad - k0 : GEMM_KC;
            decode_row_scalar(w + rb * (size_t)r + (size_t)k0 / 4, kc, t);
            for (int m = 0; m < M; m++) {
                const int8_t *qm = q + (size_t)m * k_pad + k0;
                int32_t s = 0;
                for (int j = 0; j < kc; j++) s += t[j] * qm[j];
                acc[(size_t)m * ld_acc + (r - r0)] += s;
            }
        }
    }
}

#ifdef BN_X86
/* ---- AVX2 ------------------------------------------------------------------------------------ */

#define CODE_LUT_BYTES 0, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0

__attribute__((target("avx2,fma,f16c"))) static inline int32_t hsum_epi32_avx2(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Building blocks shared by the AVX2 and AVX-512 paths (always inlined: an AVX2 function inlines
 * into an AVX-512 one, so each caller gets the code it had when these were written out). */

/* The 128 int8 activations of block b, as the four 32-lane vectors that meet code fields 6, 4,
 * 2, 0 of the block's 32 bytes. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
act_block_avx2(const int8_t *q, int b, __m256i a[4]) {
    const int8_t *qb = q + (size_t)b * I2S_BLOCK;
    #pragma GCC unroll 4
    for (int i = 0; i < 4; i++) a[i] = _mm256_loadu_si256((const __m256i *)(qb + 32 * i));
}

/* The rows of a group are read as interleaved streams, which the hardware prefetcher follows
 * poorly (measured: 5 GB/s from DRAM on one core, against 25+ for a plain stream); fetch the next
 * group (contiguous after this one) one group ahead, 32 bytes per row per block step: 21 GB/s.
 * pf is the next group of this call's rows, or this group itself for the last one (rows past r1
 * belong to another thread's chunk). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
prefetch_group(const uint8_t *pf, int b, int NR) {
    _mm_prefetch((const char *)(pf + (size_t)b * 32 * NR), _MM_HINT_T0);
    if (NR > 1) _mm_prefetch((const char *)(pf + (size_t)b * 32 * NR + 64), _MM_HINT_T0);
}

/* The four code fields (bits 7-6, 5-4, 3-2, 1-0) of 32 I2_S bytes as unsigned codes {0,1,2}
 * (code 3 -> 1, i.e. weight 0, as in the reference). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
codes_avx2(__m256i wv, __m256i lut, __m256i m3, __m256i c[4]) {
    c[0] = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(wv, 6), m3));
    c[1] = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(wv, 4), m3));
    c[2] = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(wv, 2), m3));
    c[3] = _mm256_shuffle_epi8(lut, _mm256_and_si256(wv, m3));
}

/* The row loop of a GEMV over rows [r0, r1): groups of 4 rows, then single rows, each prefetching
 * the group after it. ROWS(g, NR, o, pf) leaves the raw sums of rows g..g+NR-1 in o; the loop
 * subtracts qsum. A macro, not a function, because each ISA's row kernel must be inlined into a
 * caller compiled for that ISA. */
/* Prefetch distance of the decode GEMV, in 4-row groups. Measured with tests/bench/ab_w2a8.sh (M = 1,
 * 15 interleaved rounds, 2 threads, 2026-12-06 on the shared 2-core VM) against 1 group: 2 groups
 * 0.99-1.04x the time over the four 2B shapes, 4 groups 0.97-1.20x; no gain, so one group. */
#define GEMV_PF_GROUPS 1
#define GEMV_ROW_LOOP(w, k_pad, qsum, r0, r1, acc, ROWS)                                          \
    do {                                                                                          \
        const size_t rb_ = i2s_row_bytes(k_pad);                                                  \
        /* the first GEMV_PF_GROUPS groups have no predecessor to prefetch them */              \
        const int nf_ = (r1) - (r0) < 4 * GEMV_PF_GROUPS ? (r1) - (r0) : 4 * GEMV_PF_GROUPS;      \
        for (size_t o_ = 0; o_ < rb_ * (size_t)nf_; o_ += 64)                                     \
            _mm_prefetch((const char *)((w) + rb_ * (size_t)(r0) + o_), _MM_HINT_T0);             \
        int r_ = (r0);                                                                            \
        for (; r_ + 4 <= (r1); r_ += 4) {                                                         \
            int32_t o4_[4];                                                                       \
            const uint8_t *g_ = (w) + rb_ * (size_t)r_;                                           \
            ROWS(g_, 4, o4_,                                                                      \
                 r_ + 4 * (GEMV_PF_GROUPS + 1) <= (r1) ? g_ + 4 * GEMV_PF_GROUPS * rb_ : g_);     \
            _Pragma("GCC unroll 4") for (int i_ = 0; i_ < 4; i_++) (acc)[r_ - (r0) + i_] =        \
                o4_[i_] - (qsum);                                                                 \
        }                                                                                         \
        for (; r_ < (r1); r_++) {                                                                 \
            int32_t o1_[1];                                                                       \
            const uint8_t *g_ = (w) + rb_ * (size_t)r_;                                           \
            ROWS(g_, 1, o1_, r_ + 1 < (r1) ? g_ + rb_ : g_);                                      \
            (acc)[r_ - (r0)] = o1_[0] - (qsum);                                                   \
        }                                                                                         \
    } while (0)

/* GEMV over NR consecutive rows (NR = 4 or 1); raw sums of c*q into out[0..NR). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
gemv_rows_avx2(const uint8_t *w, size_t rb, int nb, const int8_t *q, int NR, int32_t *out,
               const uint8_t *pf) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i lut = _mm256_setr_epi8(CODE_LUT_BYTES, CODE_LUT_BYTES);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc32[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256()};
    for (int b0 = 0; b0 < nb; b0 += 8) {
        const int b1 = b0 + 8 < nb ? b0 + 8 : nb;
        __m256i acc16[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                            _mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int b = b0; b < b1; b++) {
            __m256i a[4], c[4];
            act_block_avx2(q, b, a);
            prefetch_group(pf, b, NR);
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                codes_avx2(_mm256_loadu_si256((const __m256i *)(w + rb * (size_t)r + (size_t)b * 32)),
                           lut, m3, c);
                __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(c[0], a[0]), _mm256_maddubs_epi16(c[1], a[1]));
                s = _mm256_add_epi16(s, _mm256_add_epi16(_mm256_maddubs_epi16(c[2], a[2]),
                                                         _mm256_maddubs_epi16(c[3], a[3])));
                acc16[r] = _mm256_add_epi16(acc16[r], s);
            }
        }
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc32[r] = _mm256_add_epi32(acc32[r], _mm256_madd_epi16(acc16[r], ones));
    }
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) out[r] = hsum_epi32_avx2(acc32[r]);
}

__attribute__((target("avx2,fma,f16c"))) static void gemv_avx2(const uint8_t *w, int k_pad,
                                                                const int8_t *q, int32_t qsum,
                                                                int r0, int r1, int32_t *acc) {
    const size_t rb = i2s_row_bytes(k_pad);
    const int nb = k_pad / I2S_BLOCK;
#define ROWS_AVX2(g, NR, o, pf) gemv_rows_avx2(g, rb, nb, q, NR, o, pf)
    GEMV_ROW_LOOP(w, k_pad, qsum, r0, r1, acc, ROWS_AVX2);
#undef ROWS_AVX2
}

/* Decodes nr rows x kc codes (kc % 128 == 0) into unsigned codes {0,1,2} in natural k order. */
__attribute__((target("avx2,fma,f16c"))) static void unpack_panel_avx2(const uint8_t *w,
                                                                        size_t rb, int nr,
                                                                        int kc, uint8_t *panel) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i lut = _mm256_setr_epi8(CODE_LUT_BYTES, CODE_LUT_BYTES);
    #pragma GCC unroll 4
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = w + rb * (size_t)r;
        uint8_t *pr = panel + (size_t)r * GEMM_KC;
        for (int b = 0; b < kc / I2S_BLOCK; b++) {
            __m256i c[4];
            codes_avx2(_mm256_loadu_si256((const __m256i *)(row + (size_t)b * 32)), lut, m3, c);
            uint8_t *pb = pr + (size_t)b * I2S_BLOCK;
            #pragma GCC unroll 4
            for (int i = 0; i < 4; i++) _mm256_storeu_si256((__m256i *)(pb + 32 * i), c[i]);
        }
    }
}

/* Tile: NR (<= 2) panel rows x NT (<= 4) tokens over kc codes; adds raw sums into out[r][t]. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
tile_avx2(const uint8_t *panel, int kc, const int8_t *q, size_t ldq, int NR, int NT,
          int32_t out[GEMM_RB][GEMM_MT], int r_off, int t_off) {
    /* vpmaddubsw lanes are in [-512, 508], so 64 of them (2048 k) sum exactly in int16
     * ([-32768, 32512]); widen with vpmaddwd once per 2048 k instead of once per 32. */
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc32[2][4];
#pragma GCC unroll 4
    for (int r = 0; r < 2; r++)
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) acc32[r][t] = _mm256_setzero_si256();
    for (int k0 = 0; k0 < kc; k0 += 2048) {
        const int k1 = k0 + 2048 < kc ? k0 + 2048 : kc;
        __m256i acc[2][4];
#pragma GCC unroll 4
        for (int r = 0; r < 2; r++)
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) acc[r][t] = _mm256_setzero_si256();
        for (int k = k0; k < k1; k += 32) {
            __m256i wv[2];
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) wv[r] = _mm256_loadu_si256((const __m256i *)(panel + (size_t)r * GEMM_KC + k));
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                const __m256i a = _mm256_loadu_si256((const __m256i *)(q + (size_t)t * ldq + k));
#pragma GCC unroll 4
                for (int r = 0; r < NR; r++) acc[r][t] = _mm256_add_epi16(acc[r][t], _mm256_maddubs_epi16(wv[r], a));
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) acc32[r][t] = _mm256_add_epi32(acc32[r][t], _mm256_madd_epi16(acc[r][t], ones));
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) out[r_off + r][t_off + t] += hsum_epi32_avx2(acc32[r][t]);
}

__attribute__((target("avx2,fma,f16c"))) static void gemm_core_avx2(const uint8_t *w,
                                                                     int k_pad, const int8_t *q,
                                                                     int M, int nr,
                                                                     int32_t out[GEMM_RB][GEMM_MT]) {
    uint8_t panel[GEMM_RB * GEMM_KC] __attribute__((aligned(64)));
    const size_t rb = i2s_row_bytes(k_pad);
    for (int k0 = 0; k0 < k_pad; k0 += GEMM_KC) {
        const int kc = k_pad - k0 < GEMM_KC ? k_pad - k0 : GEMM_KC;
        unpack_panel_avx2(w + (size_t)k0 / 4, rb, nr, kc, panel);
        for (int r = 0; r < nr; r += 2) {
            const int nrr = nr - r >= 2 ? 2 : 1;
            int t = 0;
            for (; t + 4 <= M; t += 4) {
                if (nrr == 2) tile_avx2(panel + (size_t)r * GEMM_KC, kc, q + (size_t)t * k_pad + k0, (size_t)k_pad, 2, 4, out, r, t);
                else tile_avx2(panel + (size_t)r * GEMM_KC, kc, q + (size_t)t * k_pad + k0, (size_t)k_pad, 1, 4, out, r, t);
            }
            for (; t < M; t++) tile_avx2(panel + (size_t)r * GEMM_KC, kc, q + (size_t)t * k_pad + k0, (size_t)k_pad, nrr, 1, out, r, t);
        }
    }
}

/* ---- AVX-512 VNNI ---------------------------------------------------------------------------- */

#define VNNI_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"

__attribute__((target(VNNI_TARGET), always_inline)) static inline void
gemv_rows_vnni(const uint8_t *w, size_t rb, int nb, const int8_t *q, int NR, int32_t *out,
               const uint8_t *pf) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i lut = _mm256_setr_epi8(CODE_LUT_BYTES, CODE_LUT_BYTES);
    __m256i acc[4][2];
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int b = 0; b < nb; b++) {
        __m256i a[4], c[4];
        act_block_avx2(q, b, a);
        prefetch_group(pf, b, NR);
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            codes_avx2(_mm256_loadu_si256((const __m256i *)(w + rb * (size_t)r + (size_t)b * 32)),
                       lut, m3, c);
            acc[r][0] = _mm256_dpbusd_epi32(acc[r][0], c[0], a[0]);
            acc[r][1] = _mm256_dpbusd_epi32(acc[r][1], c[1], a[1]);
            acc[r][0] = _mm256_dpbusd_epi32(acc[r][0], c[2], a[2]);
            acc[r][1] = _mm256_dpbusd_epi32(acc[r][1], c[3], a[3]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) out[r] = hsum_epi32_avx2(_mm256_add_epi32(acc[r][0], acc[r][1]));
}

/* GEMV for rows known to hold no code 3 (W2A8_CODES_VALID): each 2-bit field is masked in
 * place, never shifted or remapped: (byte & 0xC0) = c << 6, (byte & 0x30) = c << 4, ... so the
 * four fields of a block feed four accumulators whose sums are exact multiples of 64, 16, 4, 1
 * (|sum| < 2^31 for k < 131072) and are scaled back by exact shifts. 9 vector ops per 32 bytes
 * instead of 16: one core decodes faster than it can stream. */
__attribute__((target(VNNI_TARGET), always_inline)) static inline void
gemv_rows_vnni_valid(const uint8_t *w, size_t rb, int nb, const int8_t *q, int NR, int32_t *out,
                     const uint8_t *pf) {
    const __m256i f6 = _mm256_set1_epi8((char)0xc0), f4 = _mm256_set1_epi8(0x30);
    const __m256i f2 = _mm256_set1_epi8(0x0c), f0 = _mm256_set1_epi8(0x03);
    __m256i acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int f = 0; f < 4; f++) acc[r][f] = _mm256_setzero_si256();
    for (int b = 0; b < nb; b++) {
        __m256i a[4];
        act_block_avx2(q, b, a);
        prefetch_group(pf, b, NR);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + rb * (size_t)r + (size_t)b * 32));
            acc[r][0] = _mm256_dpbusd_epi32(acc[r][0], _mm256_and_si256(wv, f6), a[0]);
            acc[r][1] = _mm256_dpbusd_epi32(acc[r][1], _mm256_and_si256(wv, f4), a[1]);
            acc[r][2] = _mm256_dpbusd_epi32(acc[r][2], _mm256_and_si256(wv, f2), a[2]);
            acc[r][3] = _mm256_dpbusd_epi32(acc[r][3], _mm256_and_si256(wv, f0), a[3]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        out[r] = (hsum_epi32_avx2(acc[r][0]) >> 6) + (hsum_epi32_avx2(acc[r][1]) >> 4) +
                 (hsum_epi32_avx2(acc[r][2]) >> 2) + hsum_epi32_avx2(acc[r][3]);
}

__attribute__((target(VNNI_TARGET))) static void gemv_vnni(const uint8_t *w, int k_pad,
                                                           const int8_t *q, int32_t qsum, int r0,
                                                           int r1, int32_t *acc, int valid) {
    const size_t rb = i2s_row_bytes(k_pad);
    const int nb = k_pad / I2S_BLOCK;
#define ROWS_VNNI(g, NR, o, pf)                                                                   \
    do {                                                                                          \
        if (valid) gemv_rows_vnni_valid(g, rb, nb, q, NR, o, pf);                                 \
        else gemv_rows_vnni(g, rb, nb, q, NR, o, pf);                                             \
    } while (0)
    GEMV_ROW_LOOP(w, k_pad, qsum, r0, r1, acc, ROWS_VNNI);
#undef ROWS_VNNI
}

__attribute__((target(VNNI_TARGET))) static inline int32_t hsum_epi32_512(__m512i v) {
    return _mm512_reduce_add_epi32(v);
}

/* Tile: NR (<= 4) panel rows x NT (<= 4) tokens over kc codes, 64 at a time. */
__attribute__((target(VNNI_TARGET), always_inline)) static inline void
tile_vnni(const uint8_t *panel, int kc, const int8_t *q, size_t ldq, int NR, int NT,
          int32_t out[GEMM_RB][GEMM_MT], int t_off) {
    __m512i acc[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < 4; t++) acc[r][t] = _mm512_setzero_si512();
    for (int k = 0; k < kc; k += 64) {
        __m512i wv[4];
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) wv[r] = _mm512_loadu_si512((const void *)(panel + (size_t)r * GEMM_KC + k));
        #pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m512i a = _mm512_loadu_si512((const void *)(q + (size_t)t * ldq + k));
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], wv[r], a);
        }
    }
    if (NR == 4 && NT == 4) {
        /* the 16 horizontal sums at once: a transpose-and-add tree (45 vector ops) instead of 16
         * separate reductions (~9 ops each), which cost about a fifth of the 640 vpdpbusd of a
         * 2560-deep tile; integer adds, so the sums are the same whatever the order */
        __m512i u[4];
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[r][0], acc[r][1]),
                                                 _mm512_unpackhi_epi32(acc[r][0], acc[r][1]));
            const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[r][2], acc[r][3]),
                                                 _mm512_unpackhi_epi32(acc[r][2], acc[r][3]));
            /* lane 4L + t of u[r]: the part of acc[r][t] in 128-bit lane L */
            u[r] = _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
        }
        const __m512i v01 = _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], 0x88), _mm512_shuffle_i32x4(u[0], u[1], 0xdd));
        const __m512i v23 = _mm512_add_epi32(_mm512_shuffle_i32x4(u[2], u[3], 0x88), _mm512_shuffle_i32x4(u[2], u[3], 0xdd));
        /* lane 4r + t: the whole sum of acc[r][t] */
        const __m512i w = _mm512_add_epi32(_mm512_shuffle_i32x4(v01, v23, 0x88), _mm512_shuffle_i32x4(v01, v23, 0xdd));
        int32_t sums[16];
        _mm512_storeu_si512((void *)sums, w);
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            #pragma GCC unroll 4
            for (int t = 0; t < 4; t++) out[r][t_off + t] += sums[4 * r + t];
        return;
    }
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < NT; t++) out[r][t_off + t] += hsum_epi32_512(acc[r][t]);
}

__attribute__((target(VNNI_TARGET))) static void gemm_core_vnni(const uint8_t *w, int k_pad,
                                                                const int8_t *q, int M, int nr,
                                                                int32_t out[GEMM_RB][GEMM_MT]) {
    uint8_t panel[GEMM_RB * GEMM_KC] __attribute__((aligned(64)));
    const size_t rb = i2s_row_bytes(k_pad);
    for (int k0 = 0; k0 < k_pad; k0 += GEMM_KC) {
        const int kc = k_pad - k0 < GEMM_KC ? k_pad - k0 : GEMM_KC;
        unpack_panel_avx2(w + (size_t)k0 / 4, rb, nr, kc, panel);
        const int8_t *qk = q + k0;
        int t = 0;
        if (nr == 4) {
            for (; t + 4 <= M; t += 4) tile_vnni(panel, kc, qk + (size_t)t * k_pad, (size_t)k_pad, 4, 4, out, t);
            for (; t < M; t++) tile_vnni(panel, kc, qk + (size_t)t * k_pad, (size_t)k_pad, 4, 1, out, t);
        } else {
            for (; t < M; t++) tile_vnni(panel, kc, qk + (size_t)t * k_pad, (size_t)k_pad, nr, 1, out, t);
        }
    }
}
#endif /* BN_X86 */

/* ---- dispatch ---------------------------------------------------------------------------------- */

/* Raw sums sum_j c_j q_j (unsigned codes) for nr <= GEMM_RB rows starting at w, M <= GEMM_MT
 * tokens, into out[r][m]; returns 1, or 0 when no SIMD path applies. */
static int gemm_core(const uint8_t *w, int k_pad, const int8_t *q, int M, int nr,
                     int32_t out[GEMM_RB][GEMM_MT]) {
#ifdef BN_X86
    const CpuIsa isa = cpu_isa_active();
    if (isa >= CPU_ISA_AVX2) {
        #pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
            for (int m = 0; m < M; m++) out[r][m] = 0;
        if (isa >= CPU_ISA_AVX512) gemm_core_vnni(w, k_pad, q, M, nr, out);
        else gemm_core_avx2(w, k_pad, q, M, nr, out);
        return 1;
    }
#endif
    (void)w, (void)k_pad, (void)q, (void)M, (void)nr, (void)out;
    return 0;
}

/* GEMV (M == 1): true sums for rows [r0, r1) into acc[r - r0]. */
static void gemv_dispatch(const uint8_t *w, int k_pad, const int8_t *q, int32_t qsum, int r0,
                          int r1, int32_t *acc, int flags) {
#ifdef BN_X86
    const CpuIsa isa = cpu_isa_active();
    if (isa >= CPU_ISA_AVX512) {
        gemv_vnni(w, k_pad, q, qsum, r0, r1, acc, (flags & W2A8_CODES_VALID) != 0);
        return;
    }
    if (isa >= CPU_ISA_AVX2) {
        gemv_avx2(w, k_pad, q, qsum, r0, r1, acc);
        return;
    }
#endif
    (void)qsum, (void)flags;
    gemm_scalar(w, k_pad, q, 1, r0, r1, acc, 0);
}

/* y[m] = (float)(acc[m] - qsum[m]) / s[m] * gamma for one output row over n tokens: the
 * epilogue of the prefill GEMM, vectorized over tokens (a division per output is otherwise a
 * measurable share of prefill). Same IEEE operations as the scalar reference, same bits. */
#ifdef BN_X86
__attribute__((target("avx2,fma,f16c"))) static void scale_row_avx2(const int32_t *acc,
                                                                     const int32_t *qsum,
                                                                     const float *s, float gamma,
                                                                     int n, float *y) {
    const __m256 g = _mm256_set1_ps(gamma);
    int m = 0;
    for (; m + 8 <= n; m += 8) {
        const __m256i a = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(acc + m)),
                                           _mm256_loadu_si256((const __m256i *)(qsum + m)));
        _mm256_storeu_ps(y + m, _mm256_mul_ps(_mm256_div_ps(_mm256_cvtepi32_ps(a), _mm256_loadu_ps(s + m)), g));
    }
    for (; m < n; m++) y[m] = (float)(acc[m] - qsum[m]) / s[m] * gamma;
}
#endif

static void scale_row(const int32_t *acc, const int32_t *qsum, const float *s, float gamma, int n,
                      float *y) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) {
        scale_row_avx2(acc, qsum, s, gamma, n, y);
        return;
    }
#endif
    for (int m = 0; m < n; m++) y[m] = (float)(acc[m] - qsum[m]) / s[m] * gamma;
}

/* Prefill: while one panel (4 rows) is multiplied by every token of the batch, pull the next
 * panel's codes into L2, so its unpack does not wait on DRAM (a panel is computed for ~5 us,
 * long enough for the hardware prefetcher to have lost the stream). */
static void prefetch_next_panel(const uint8_t *w, size_t rb, int r, int r1) {
#ifdef BN_X86
    if (r >= r1) return;
    const int n = r1 - r < GEMM_RB ? r1 - r : GEMM_RB;
    const char *p = (const char *)(w + rb * (size_t)r);
    for (size_t o = 0; o < rb * (size_t)n; o += 64) _mm_prefetch(p + o, _MM_HINT_T1);
#else
    (void)w, (void)rb, (void)r, (void)r1;
#endif
}

/* Raw sums sum_j c_j q_j of panel rows [r, r + nr) x the mt tokens of qm into tile[i][m]: the
 * SIMD core, or without one the scalar kernel, whose signed sums get qsum (of those tokens)
 * added back. Each panel is first pulled towards L2 by the previous one (prefetch_next_panel). */
static void panel_sums(const uint8_t *w, int k_pad, const int8_t *qm, const int32_t *qsum, int mt,
                       int r, int r1, int32_t tile[GEMM_RB][GEMM_MT]) {
    const size_t rb = i2s_row_bytes(k_pad);
    const int nr = r1 - r < GEMM_RB ? r1 - r : GEMM_RB;
    prefetch_next_panel(w, rb, r + GEMM_RB, r1);
    if (gemm_core(w + rb * (size_t)r, k_pad, qm, mt, nr, tile)) return;
    for (int i = 0; i < nr; i++) {
        gemm_scalar(w, k_pad, qm, mt, r + i, r + i + 1, &tile[i][0], 1);
        for (int m = 0; m < mt; m++) tile[i][m] += qsum[m];
    }
}

/* The batched (M > 1) loop of w2a8_gemm_rows and w2a8_linear_rows_ex: blocks of GEMM_MT
 * tokens, panels of GEMM_RB rows; store(ctx, m0, mt, r, nr, tile) writes out each panel's raw
 * sums (one indirect call per panel, which takes microseconds to compute). */
typedef void (*PanelStore)(void *ctx, int m0, int mt, int r, int nr,
                           int32_t tile[GEMM_RB][GEMM_MT]);
static void gemm_panels(const uint8_t *w, int k_pad, const int8_t *q, const int32_t *qsum, int M,
                        int r0, int r1, PanelStore store, void *ctx) {
    int32_t tile[GEMM_RB][GEMM_MT];
    for (int m0 = 0; m0 < M; m0 += GEMM_MT) {
        const int mt = M - m0 < GEMM_MT ? M - m0 : GEMM_MT;
        for (int r = r0; r < r1; r += GEMM_RB) {
            panel_sums(w, k_pad, q + (size_t)m0 * k_pad, qsum + m0, mt, r, r1, tile);
            store(ctx, m0, mt, r, r1 - r < GEMM_RB ? r1 - r : GEMM_RB, tile);
        }
    }
}

typedef struct {
    const int32_t *qsum;
    int32_t *acc;
    int ld_acc;
} SumsOut;

/* true sums: acc[m][r] = raw - qsum[m] */
static void store_sums(void *ctx, int m0, int mt, int r, int nr, int32_t tile[GEMM_RB][GEMM_MT]) {
    const SumsOut *o = ctx;
    #pragma GCC unroll 4
    for (int i = 0; i < nr; i++)
        for (int m = 0; m < mt; m++)
            o->acc[(size_t)(m0 + m) * o->ld_acc + r + i] = tile[i][m] - o->qsum[m0 + m];
}

typedef struct {
    const int32_t *qsum;
    const float *s;
    float gamma;
    float *out;
    int ld_out, accumulate;
} LinearOut;

/* out[m][r] (+)= (raw - qsum[m]) / s[m] * gamma */
static void store_linear(void *ctx, int m0, int mt, int r, int nr,
                         int32_t tile[GEMM_RB][GEMM_MT]) {
    const LinearOut *o = ctx;
    float y[GEMM_RB][GEMM_MT];
    for (int i = 0; i < nr; i++) scale_row(&tile[i][0], o->qsum + m0, o->s + m0, o->gamma, mt, y[i]);
    /* token by token, the panel's rows together: each output line is touched once per panel
     * (row by row touched the 64 token lines 4 times, and a 64-token output of a 6912-row matrix
     * is larger than L2). perf (cpu-clock) put this store at 14% of the GEMM's samples in a
     * 512-token prefill; tests/bench/ab_w2a8.sh HEAD 64 9 build 1 gave 0.93-1.00x the thread CPU time. */
    for (int m = 0; m < mt; m++) {
        float *d = &o->out[(size_t)(m0 + m) * o->ld_out + r];
        if (o->accumulate)
            for (int i = 0; i < nr; i++) d[i] = d[i] + y[i][m];
        else
            for (int i = 0; i < nr; i++) d[i] = y[i][m];
    }
}

static int shape_ok(int k_pad, int r0, int r1, int M) {
    return k_pad > 0 && k_pad % I2S_BLOCK == 0 && r0 >= 0 && r1 >= r0 && M >= 0;
}

int w2a8_gemm_rows(const uint8_t *w, int k_pad, const int8_t *q, const int32_t *qsum, int M,
                   int r0, int r1, int32_t *acc, int ld_acc) {
    if (!shape_ok(k_pad, r0, r1, M)) return KERR_SHAPE;
    if (M == 1) {
        gemv_dispatch(w, k_pad, q, qsum[0], r0, r1, acc + r0, 0);
        return 0;
    }
    SumsOut o = {qsum, acc, ld_acc};
    gemm_panels(w, k_pad, q, qsum, M, r0, r1, store_sums, &o);
    return 0;
}

int w2a8_linear_rows(const uint8_t *w, int k_pad, float gamma, const int8_t *q,
                     const int32_t *qsum, const float *s, int M, int r0, int r1, float *out,
                     int ld_out, int accumulate) {
    return w2a8_linear_rows_ex(w, k_pad, gamma, q, qsum, s, M, r0, r1, out, ld_out, accumulate, 0);
}

int w2a8_linear_rows_ex(const uint8_t *w, int k_pad, float gamma, const int8_t *q,
                        const int32_t *qsum, const float *s, int M, int r0, int r1, float *out,
                        int ld_out, int accumulate, int flags) {
    if (!shape_ok(k_pad, r0, r1, M)) return KERR_SHAPE;
    enum { CHUNK = 256 };
    int32_t acc[CHUNK];
    if (M == 1) {
        for (int c0 = r0; c0 < r1; c0 += CHUNK) {
            const int c1 = r1 - c0 < CHUNK ? r1 : c0 + CHUNK;
            gemv_dispatch(w, k_pad, q, qsum[0], c0, c1, acc, flags);
            for (int r = c0; r < c1; r++) {
                const float y = (float)acc[r - c0] / s[0] * gamma;
                out[r] = accumulate ? out[r] + y : y;
            }
        }
        return 0;
    }
    LinearOut o = {qsum, s, gamma, out, ld_out, accumulate};
    gemm_panels(w, k_pad, q, qsum, M, r0, r1, store_linear, &o);
    return 0;
}

typedef struct {
    const uint8_t *w;
    int n_out, k_pad;
    float gamma;
    const int8_t *q;
    const int32_t *qsum;
    const float *s;
    int M;
    float *out;
    int ld_out, accumulate, flags;
    int rc, next;
} LinearJob;

enum { LINEAR_CHUNK = 64 }; /* rows per claimed chunk (a multiple of GEMM_RB) */

static void linear_task(void *ctx, int ith, int nth) {
    LinearJob *j = ctx;
    (void)ith, (void)nth;
    for (int c; (c = cpu_chunk_claim(&j->next)) * LINEAR_CHUNK < j->n_out;) {
        const int r0 = c * LINEAR_CHUNK, r1 = r0 + LINEAR_CHUNK < j->n_out ? r0 + LINEAR_CHUNK : j->n_out;
        if (w2a8_linear_rows_ex(j->w, j->k_pad, j->gamma, j->q, j->qsum, j->s, j->M, r0, r1,
                                j->out, j->ld_out, j->accumulate, j->flags) != 0)
            j->rc = KERR_SHAPE;
    }
}

int w2a8_linear_mt(CpuPool *p, const uint8_t *w, int n_out, int k_pad, float gamma,
                   const int8_t *q, const int32_t *qsum, const float *s, int M, float *out,
                   int ld_out, int accumulate) {
    return w2a8_linear_mt_ex(p, w, n_out, k_pad, gamma, q, qsum, s, M, out, ld_out, accumulate, 0);
}

int w2a8_linear_mt_ex(CpuPool *p, const uint8_t *w, int n_out, int k_pad, float gamma,
                      const int8_t *q, const int32_t *qsum, const float *s, int M, float *out,
                      int ld_out, int accumulate, int flags) {
    if (!shape_ok(k_pad, 0, n_out, M)) return KERR_SHAPE;
    LinearJob j = {w, n_out, k_pad, gamma, q, qsum, s, M, out, ld_out, accumulate, flags, 0, 0};
    cpu_pool_run(p, linear_task, &j);
    return j.rc;
}

/* ---- code validation ------------------------------------------------------------------------ */

#ifdef BN_X86
__attribute__((target("avx2"))) static int codes_valid_avx2(const uint8_t *w, size_t n) {
    /* a field is 3 iff both of its bits are set: (b & (b >> 1)) & 0x55 != 0 */
    const __m256i m = _mm256_set1_epi8(0x55);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(w + i));
        bad = _mm256_or_si256(bad, _mm256_and_si256(_mm256_and_si256(v, _mm256_srli_epi16(v, 1)), m));
    }
    int ok = _mm256_testz_si256(bad, bad);
    for (; i < n; i++) ok &= ((w[i] & (w[i] >> 1)) & 0x55) == 0;
    return ok;
}
#endif

int i2s_codes_valid(const uint8_t *w, size_t n_bytes) {
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX2) return codes_valid_avx2(w, n_bytes);
#endif
    for (size_t i = 0; i < n_bytes; i++)
        if ((w[i] & (w[i] >> 1)) & 0x55) return 0;
    return 1;
}
