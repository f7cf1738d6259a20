/* The row-interleaved ternary layout R16 and its kernels (see kernels_cpu.h for the contract).
 *
 * Why a second layout: in I2_S each row is its own stream, so a vpdpbusd (64 products summed in
 * fours into 16 int32 lanes) leaves 16 partial sums of ONE row in a register; they must be
 * summed across lanes at the end, and a GEMM tile must first unpack each row's codes into a
 * byte buffer to pair them with the right activations. In R16 the 16 lanes of a register are 16
 * rows: lane l holds 4 consecutive weights of row l, and the activation operand is the same 4
 * int8 values broadcast to every lane (an embedded-broadcast memory operand of vpdpbusd). Each
 * accumulator then IS 16 outputs of one token: no horizontal sums, no unpack buffer, and a
 * prefill tile of 16 rows x 16 tokens issues 64 vpdpbusd per 64-byte weight load and 7 shift /
 * mask operations. Measured on one core of the 2-core EPYC (thread CPU time, 64 tokens, the four
 * 2B shapes, cpu_kernels_lab): 215-229 G multiply-adds/s against 164-176 for the I2_S GEMM,
 * i.e. 92-98% of one 64-lane vpdpbusd per cycle at the 3.64 GHz the core runs at. Decode reads each group of 16
 * rows as one contiguous stream (I2_S: 4 interleaved row streams that need software prefetch):
 * 0.95x the time of the I2_S decode GEMV on one core (gemv_group_r16).
 *
 * Layout: rows in groups of 16 (n_out padded to a multiple of 16 with zero weights); a group
 * is k_pad / 16 chunks of 64 bytes; byte 4l + b of chunk c holds, in bits 2f+1..2f, the code of
 * weight 16c + 4f + b of row l of the group (f = 0..3). Codes as in I2_S ({0,1,2} = -1, 0, +1),
 * and the unused code 3 is written as 1 (zero), which is how every kernel reads it, so the
 * kernels here need no remapping: (byte >> 2f) & 3 is the unsigned code. */
#include "kernels/cpu/cpu_fp.h"

#include <string.h>

#include "kernels/cpu/kernels_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BN_X86 1
#endif

/* The 128 codes of one I2_S block as bytes in natural order, code 3 read as 1. */
static void block_codes_scalar(const uint8_t *blk, uint8_t codes[I2S_BLOCK]) {
    static const uint8_t canon[4] = {0, 1, 2, 1};
    for (int g = 0; g < 32; g++) {
        const uint8_t b = blk[g];
        codes[g] = canon[b >> 6], codes[g + 32] = canon[(b >> 4) & 3];
        codes[g + 64] = canon[(b >> 2) & 3], codes[g + 96] = canon[b & 3];
    }
}

#ifdef BN_X86
__attribute__((target("avx2"))) static void block_codes_avx2(const uint8_t *blk, uint8_t codes[I2S_BLOCK]) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i lut = _mm256_setr_epi8(0, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i wv = _mm256_loadu_si256((const __m256i *)blk);
    for (int i = 0; i < 4; i++)
        _mm256_storeu_si256((__m256i *)(codes + 32 * i),
                            _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(wv, 6 - 2 * i), m3)));
}
#endif

void w2a8_r16_pack(const uint8_t *w, int n_out, int k_pad, int g0, int g1, uint8_t *dst) {
    const size_t rb = i2s_row_bytes(k_pad), gb = (size_t)R16_ROWS * rb;
#ifdef BN_X86
    const int avx2 = cpu_isa_active() >= CPU_ISA_AVX2;
#endif
    for (int g = g0; g < g1; g++) {
        uint8_t *d = dst + (size_t)g * gb;
        for (int bk = 0; bk < k_pad / I2S_BLOCK; bk++) {
            /* the block's codes for the 16 rows (rows past n_out: zero weights, code 1) */
            uint8_t codes[R16_ROWS][I2S_BLOCK];
            for (int l = 0; l < R16_ROWS; l++) {
                const int r = g * R16_ROWS + l;
                const uint8_t *blk = w + (size_t)r * rb + (size_t)bk * I2S_BLOCK_BYTES;
                if (r >= n_out) memset(codes[l], 1, I2S_BLOCK);
#ifdef BN_X86
                else if (avx2) block_codes_avx2(blk, codes[l]);
#endif
                else block_codes_scalar(blk, codes[l]);
            }
            /* chunk c of the block, lane l: bytes b of the 4 words 4c + f (f = 0..3) of row l,
             * each code shifted to field f; codes are < 4, so the shifts never carry */
            for (int c = 0; c < I2S_BLOCK / 16; c++)
                for (int l = 0; l < R16_ROWS; l++) {
                    uint32_t v = 0;
                    for (int f = 0; f < 4; f++) {
                        uint32_t word;
                        memcpy(&word, codes[l] + 16 * c + 4 * f, 4);
                        v |= word << (2 * f);
                    }
                    memcpy(d + ((size_t)bk * (I2S_BLOCK / 16) + (size_t)c) * 64 + 4 * (size_t)l, &v, 4);
                }
        }
    }
}

/* ---- scalar path (CPUs without AVX-512 VNNI never get R16 weights from the backend; this
 * keeps the kernels correct wherever they are called) ------------------------------------------ */

/* raw sums sum_j c_j q_j of the 16 rows of group wg for one token */
static void group_sums_scalar(const uint8_t *wg, int k_pad, const int8_t *q, int32_t out[R16_ROWS]) {
    for (int l = 0; l < R16_ROWS; l++) out[l] = 0;
    for (int c = 0; c < k_pad / 16; c++)
        for (int l = 0; l < R16_ROWS; l++)
            for (int b = 0; b < 4; b++) {
                const unsigned v = wg[(size_t)c * 64 + 4 * l + b];
                for (int f = 0; f < 4; f++) out[l] += (int32_t)((v >> (2 * f)) & 3) * q[16 * c + 4 * f + b];
            }
}

#ifdef BN_X86
#define R16_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"

/* NT tokens x the 16 rows of one group over nc chunks: acc[t] lane l = raw sum of row l with
 * token t. Per chunk: one 64-byte load, 3 shifts and 4 masks, 4 * NT vpdpbusd whose activation
 * operand is a 4-byte broadcast from memory. */
__attribute__((target(R16_TARGET), always_inline)) static inline void
tile_r16(const uint8_t *wg, int nc, const int8_t *q, size_t ldq, int NT, __m512i acc[16]) {
    const __m512i m3 = _mm512_set1_epi8(3);
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_si512();
    for (int c = 0; c < nc; c++) {
        const __m512i wv = _mm512_loadu_si512((const void *)(wg + (size_t)c * 64));
#pragma GCC unroll 4
        for (int f = 0; f < 4; f++) {
            const __m512i v = _mm512_and_si512(f ? _mm512_srli_epi16(wv, 2 * f) : wv, m3);
#pragma GCC unroll 16
            for (int t = 0; t < NT; t++) {
                int32_t a;
                memcpy(&a, q + (size_t)t * ldq + 16 * c + 4 * f, 4);
                acc[t] = _mm512_dpbusd_epi32(acc[t], v, _mm512_set1_epi32(a));
            }
        }
    }
}

/* One token (decode): the 16 rows' sums with 8 independent accumulators (4 fields x 2 chunk
 * parities: a single chain would wait on vpdpbusd's latency every 64 bytes). The group is one
 * contiguous stream, prefetched R16_PF bytes ahead into L2, up to the end of the matrix: a
 * thread's rows are a chunk, and stopping at the chunk's end left every chunk's last 8 KiB
 * unprefetched (end to end, 1 thread, the I2_S GEMV's time x1.04-1.06 instead of 0.95). Measured on one core (thread CPU time, the 30
 * layers of 2B shapes, 521 MB, 5-9 paired rounds against the I2_S CODES_VALID GEMV, 2026-12-06):
 * no software prefetch 0.93x its time; 4 KiB ahead into L1 0.99x; 8 KiB ahead into L2 0.86-0.97x
 * (median 0.95x, 28-30 GB/s); 4 KiB into L2 1.10-1.14x; 16 KiB into L2 0.88-0.95x. */
enum { R16_PF = 8192 };
__attribute__((target(R16_TARGET), always_inline)) static inline __m512i
gemv_group_r16(const uint8_t *wg, int nc, const int8_t *q, const uint8_t *pf_end) {
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512i acc[2][4];
#pragma GCC unroll 4
    for (int f = 0; f < 4; f++) acc[0][f] = acc[1][f] = _mm512_setzero_si512();
    for (int c = 0; c < nc; c += 2) {
        const uint8_t *pf = wg + (size_t)c * 64 + R16_PF;
        if (pf < pf_end) {
            _mm_prefetch((const char *)pf, _MM_HINT_T1);
            _mm_prefetch((const char *)pf + 64, _MM_HINT_T1);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i wv = _mm512_loadu_si512((const void *)(wg + (size_t)(c + h) * 64));
#pragma GCC unroll 4
            for (int f = 0; f < 4; f++) {
                int32_t a;
                memcpy(&a, q + 16 * (c + h) + 4 * f, 4);
                const __m512i v = _mm512_and_si512(f ? _mm512_srli_epi16(wv, 2 * f) : wv, m3);
                acc[h][f] = _mm512_dpbusd_epi32(acc[h][f], v, _mm512_set1_epi32(a));
            }
        }
    }
    const __m512i s01 = _mm512_add_epi32(_mm512_add_epi32(acc[0][0], acc[1][0]), _mm512_add_epi32(acc[0][1], acc[1][1]));
    const __m512i s23 = _mm512_add_epi32(_mm512_add_epi32(acc[0][2], acc[1][2]), _mm512_add_epi32(acc[0][3], acc[1][3]));
    return _mm512_add_epi32(s01, s23);
}

/* y = (float)(raw - qsum) / s * gamma (+ out), the reference's operations in the same order,
 * 16 rows at once, masked to the rows that exist. */
__attribute__((target(R16_TARGET), always_inline)) static inline void
store_r16(__m512i raw, int32_t qsum, float s, float gamma, __mmask16 mask, float *out, int accumulate) {
    const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(raw, _mm512_set1_epi32(qsum)));
    __m512 y = _mm512_mul_ps(_mm512_div_ps(v, _mm512_set1_ps(s)), _mm512_set1_ps(gamma));
    if (accumulate) y = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), y);
    _mm512_mask_storeu_ps(out, mask, y);
}

/* tokens [t0, t0 + NT) of group g */
__attribute__((target(R16_TARGET), always_inline)) static inline void
block_r16(const uint8_t *wg, int k_pad, const int8_t *q, const int32_t *qsum, const float *s,
          float gamma, int t0, int NT, __mmask16 mask, float *out, int ld_out, int accumulate) {
    __m512i acc[16];
    tile_r16(wg, k_pad / 16, q + (size_t)t0 * k_pad, (size_t)k_pad, NT, acc);
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++)
        store_r16(acc[t], qsum[t0 + t], s[t0 + t], gamma, mask, out + (size_t)(t0 + t) * ld_out, accumulate);
}

__attribute__((target(R16_TARGET))) static void
linear_r16_avx512(const uint8_t *wr, int n_out, int k_pad, float gamma, const int8_t *q,
                  const int32_t *qsum, const float *s, int M, int r0, int r1, float *out, int ld_out,
                  int accumulate) {
    const size_t gb = (size_t)R16_ROWS * i2s_row_bytes(k_pad);
    const int nc = k_pad / 16;
    const uint8_t *end = wr + gb * (size_t)((n_out + R16_ROWS - 1) / R16_ROWS);
    for (int r = r0; r < r1; r += R16_ROWS) {
        const uint8_t *wg = wr + gb * (size_t)(r / R16_ROWS);
        const __mmask16 mask = r1 - r >= R16_ROWS ? (__mmask16)0xffff : (__mmask16)((1u << (r1 - r)) - 1);
        float *o = out + r;
        if (M == 1) {
            store_r16(gemv_group_r16(wg, nc, q, end), qsum[0], s[0], gamma, mask, o, accumulate);
            continue;
        }
        /* blocks of 16 tokens, then the rest as 8 + 4 + 2 + 1 (each block re-reads the group's
         * codes, which stay in L1/L2: 10 KB for k = 2560) */
        int t = 0;
        for (; t + 16 <= M; t += 16) block_r16(wg, k_pad, q, qsum, s, gamma, t, 16, mask, o, ld_out, accumulate);
        if (M - t >= 8) block_r16(wg, k_pad, q, qsum, s, gamma, t, 8, mask, o, ld_out, accumulate), t += 8;
        if (M - t >= 4) block_r16(wg, k_pad, q, qsum, s, gamma, t, 4, mask, o, ld_out, accumulate), t += 4;
        if (M - t >= 2) block_r16(wg, k_pad, q, qsum, s, gamma, t, 2, mask, o, ld_out, accumulate), t += 2;
        if (M - t >= 1) block_r16(wg, k_pad, q, qsum, s, gamma, t, 1, mask, o, ld_out, accumulate);
    }
}
#endif

int w2a8_linear_r16_rows(const uint8_t *wr, int n_out, int k_pad, float gamma, const int8_t *q,
                         const int32_t *qsum, const float *s, int M, int r0, int r1, float *out,
                         int ld_out, int accumulate) {
    if (k_pad <= 0 || k_pad % I2S_BLOCK || r0 < 0 || r0 % R16_ROWS || r1 < r0 || r1 > n_out || M < 0)
        return KERR_SHAPE;
#ifdef BN_X86
    if (cpu_isa_active() >= CPU_ISA_AVX512) {
        linear_r16_avx512(wr, n_out, k_pad, gamma, q, qsum, s, M, r0, r1, out, ld_out, accumulate);
        return 0;
    }
#endif
    const size_t gb = (size_t)R16_ROWS * i2s_row_bytes(k_pad);
    for (int r = r0; r < r1; r += R16_ROWS) {
        const int nr = r1 - r < R16_ROWS ? r1 - r : R16_ROWS;
        for (int m = 0; m < M; m++) {
            int32_t raw[R16_ROWS];
            group_sums_scalar(wr + gb * (size_t)(r / R16_ROWS), k_pad, q + (size_t)m * k_pad, raw);
            const int32_t qs = qsum[m];
            float *o = out + (size_t)m * ld_out + r;
            for (int l = 0; l < nr; l++) {
                const float y = (float)(raw[l] - qs) / s[m] * gamma;
                o[l] = accumulate ? o[l] + y : y;
            }
        }
    }
    return 0;
}

typedef struct {
    const uint8_t *wr;
    int n_out, k_pad;
    float gamma;
    const int8_t *q;
    const int32_t *qsum;
    const float *s;
    int M;
    float *out;
    int ld_out, accumulate;
    int rc, next;
} R16Job;

enum { R16_CHUNK = 64 }; /* rows per claimed chunk (4 groups) */

static void r16_task(void *ctx, int ith, int nth) {
    R16Job *j = ctx;
    (void)ith, (void)nth;
    for (int c; (c = cpu_chunk_claim(&j->next)) * R16_CHUNK < j->n_out;) {
        const int r0 = c * R16_CHUNK, r1 = r0 + R16_CHUNK < j->n_out ? r0 + R16_CHUNK : j->n_out;
        if (w2a8_linear_r16_rows(j->wr, j->n_out, j->k_pad, j->gamma, j->q, j->qsum, j->s, j->M, r0, r1,
                                 j->out, j->ld_out, j->accumulate) != 0)
            j->rc = KERR_SHAPE;
    }
}

int w2a8_linear_r16_mt(CpuPool *p, const uint8_t *wr, int n_out, int k_pad, float gamma,
                       const int8_t *q, const int32_t *qsum, const float *s, int M, float *out,
                       int ld_out, int accumulate) {
    if (k_pad <= 0 || k_pad % I2S_BLOCK || n_out < 0 || M < 0) return KERR_SHAPE;
    R16Job j = {wr, n_out, k_pad, gamma, q, qsum, s, M, out, ld_out, accumulate, 0, 0};
    cpu_pool_run(p, r16_task, &j);
    return j.rc;
}
