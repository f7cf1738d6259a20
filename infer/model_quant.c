/* Weight conversions (see model_quant.h). The file formats are described in our own words:
 *
 * TQ2_0 (llama.cpp, 66 bytes per 256 weights): 64 bytes of 2-bit codes, then an f16 scale d.
 *   The block is two halves of 128 weights; in half h, byte m (0..31) holds weight
 *   h*128 + 32*l + m in bits 2l+1..2l (l = 0..3, lowest pair first). Value = (code - 1) * d.
 *   (I2_S uses the same 32-byte grouping but puts weight m in the HIGHEST pair, so the two are
 *   bit-reversed within each byte.)
 * TQ1_0 (llama.cpp, 54 bytes per 256 weights): 48 bytes of base-3 digits packed five per byte,
 *   4 bytes packed four per byte, then an f16 scale d. A byte q stores its digits as a fixed
 *   point fraction: digit n is the integer part of 3 * (q * 3^n mod 256) / 256. Bytes 0..31
 *   give weights n*32 + m (n = 0..4), bytes 32..47 give weights 160 + n*16 + m, and the 4
 *   trailing bytes give weights 240 + n*4 + m (n = 0..3). Value = (digit - 1) * d.
 *
 * Embedding types (dequant_to_f16):
 * Q8_0 (34 bytes / 32 values): f16 d, then 32 int8 q; value = d * q.
 * Q4_K (144 bytes / 256): f16 d, f16 dmin, 12 bytes holding eight 6-bit scales and eight 6-bit
 *   mins, 128 bytes of 4-bit q. Sub-block j (32 values) has scale sc_j and min m_j: for j < 4
 *   the low 6 bits of byte j and byte j+4; for j >= 4 the low/high nibble of byte j+4 with the
 *   top two bits of byte j-4 / byte j as bits 5..4. Values come in 64-value chunks c = 0..3:
 *   byte c*32 + l gives value c*64 + l from its low nibble (sub-block 2c) and value
 *   c*64 + 32 + l from its high nibble (sub-block 2c+1); value = (d*sc)*q - (dmin*m).
 * Q6_K (210 bytes / 256): 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales,
 *   f16 d. In half h (128 values), for l = 0..31: value h*128 + 32*c + l takes its low bits from
 *   ql[h*64 + l + 32*(c&1)] (low nibble for c < 2, high nibble for c >= 2) and its high bits
 *   from bits 2c+1..2c of qh[h*32 + l]; q = that 6-bit number - 32; value = (d*scale[e/16])*q
 *   with e the value's index in the block. */
#include "infer/model_quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/w2a8.h"

float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const int exp = (h >> 10) & 0x1f;
    const uint32_t man = h & 0x3ff;
    float f;
    if (exp == 0) {
        f = ldexpf((float)man, -24); /* zero or subnormal */
    } else if (exp == 31) {
        f = man ? NAN : INFINITY;
    } else {
        uint32_t bits = ((uint32_t)(exp - 15 + 127) << 23) | (man << 13);
        memcpy(&f, &bits, 4);
    }
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits |= sign;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000) return sign | (ax > 0x7f800000 ? 0x7e00 : 0x7c00);
    if (ax >= 0x477ff000) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (ax < 0x38800000) {                       /* below the smallest normal: subnormal */
        float a;
        memcpy(&a, &ax, 4);
        return sign | (uint16_t)lrintf(a * 16777216.0f); /* units of 2^-24, half to even */
    }
    uint32_t r = ax - ((uint32_t)(127 - 15) << 23);
    uint32_t mant = r >> 13, rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (mant & 1))) mant++;
    return sign | (uint16_t)mant;
}

float bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

float float_elem(const void *data, int type, size_t i) {
    const uint8_t *p = data;
    if (type == 0) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return type == 1 ? f16_to_f32(h) : bf16_to_f32(h);
}

/* Row of n float-typed values -> f32 (type-specialized so the compiler can vectorize). */
static void row_to_f32(const void *src, int type, size_t n, float *dst) {
    if (type == 0) {
        memcpy(dst, src, n * 4);
    } else if (type == 30) {
        uint16_t h[256];
        uint32_t bits[256];
        for (size_t i = 0; i < n; i += 256) {
            const size_t m = n - i < 256 ? n - i : 256;
            memcpy(h, (const uint8_t *)src + 2 * i, m * 2); /* src may be unaligned */
            for (size_t j = 0; j < m; j++) bits[j] = (uint32_t)h[j] << 16;
            memcpy(dst + i, bits, m * 4);
        }
    } else {
        const uint8_t *p = src;
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    }
}

/* Packs one row of codes (0, 1, 2 = -1, 0, +1) into I2_S bytes; lanes k..k_pad-1 get code 1. */
static void pack_row(const uint8_t *codes, int k, int k_pad, uint8_t *row) {
    for (int b = 0; b < k_pad / I2S_BLOCK; b++) {
        const int base = b * I2S_BLOCK;
        uint8_t *out = row + b * I2S_BLOCK_BYTES;
        if (base + I2S_BLOCK <= k) {
            const uint8_t *c = codes + base;
            for (int g = 0; g < 32; g++)
                out[g] = (uint8_t)(c[g] << 6 | c[g + 32] << 4 | c[g + 64] << 2 | c[g + 96]);
        } else {
            for (int g = 0; g < 32; g++) {
                uint8_t v = 0;
                for (int q = 0; q < 4; q++) {
                    const int j = base + g + 32 * q;
                    v |= (uint8_t)((j < k ? codes[j] : 1) << (6 - 2 * q));
                }
                out[g] = v;
            }
        }
    }
}

int ternarize_absmean(const void *w, int type, int n_out, int n_in, int k_pad, uint8_t *out,
                      float *gamma_out) {
    const size_t n = (size_t)n_out * (size_t)n_in, es = type == 0 ? 4 : 2;
    float *row = malloc((size_t)n_in * sizeof *row);
    uint8_t *codes = malloc((size_t)n_in);
    if (!row || !codes) {
        free(row);
        free(codes);
        return -1;
    }
    /* gamma = mean |W|: four double accumulators (exact enough that the one rounding to float
     * matches a pairwise double sum such as numpy's) */
    double acc[4] = {0, 0, 0, 0};
    /* A matrix that is already ternary (every value 0 or +-a: what converters write when they
     * expand packed weights to F16/F32, e.g. for Llama3-8B-1.58) keeps a as its scale: a float
     * engine computes with those values as they are, while mean|W| = a * (share of nonzeros)
     * would shrink every output by that share. Master weights are never of this form. */
    float mag = 0.0f;
    int exact = 1;
    for (int r = 0; r < n_out; r++) {
        row_to_f32((const uint8_t *)w + (size_t)r * n_in * es, type, (size_t)n_in, row);
        int j = 0;
        for (; j + 4 <= n_in; j += 4)
            for (int q = 0; q < 4; q++) acc[q] += fabsf(row[j + q]);
        for (; j < n_in; j++) acc[0] += fabsf(row[j]);
        for (j = 0; exact && j < n_in; j++) {
            const float a = fabsf(row[j]);
            if (a != 0.0f && a != mag) exact = mag == 0.0f ? (mag = a, 1) : 0;
        }
    }
    const double sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    if (!isfinite(sum)) { /* a NaN or an infinity among the weights: no gamma describes them */
        free(row);
        free(codes);
        return -2;
    }
    float gamma = n ? (float)(sum / (double)n) : 0.0f;
    if (exact && mag > 0.0f && isfinite(mag)) gamma = mag;
    if (!(gamma >= 1e-5f)) gamma = 1e-5f; /* also catches NaN */
    const float s = 1.0f / gamma;
    const size_t rb = i2s_row_bytes(k_pad);
    for (int r = 0; r < n_out; r++) {
        row_to_f32((const uint8_t *)w + (size_t)r * n_in * es, type, (size_t)n_in, row);
        /* clamp(rint(v), -1, 1) with rint half-to-even is exactly: +1 above 0.5, -1 below -0.5,
         * else 0 (±0.5 round to 0; NaN compares false and gives 0). Branch-free, vectorizable. */
        for (int j = 0; j < n_in; j++) {
            const float v = row[j] * s;
            codes[j] = (uint8_t)(1 + (v > 0.5f) - (v < -0.5f));
        }
        pack_row(codes, n_in, k_pad, out + rb * (size_t)r);
    }
    free(row);
    free(codes);
    *gamma_out = gamma;
    return 0;
}

/* Both TQ formats: one block's codes (0..3) and f16 d. Checks the one-scale rule, stores the
 * block's codes into the row (code 1 everywhere when d == 0: all weights are zero). */
typedef struct {
    int have;
    uint16_t d;
} ScaleCheck;

static int tq_block(uint8_t codes[256], uint16_t d, ScaleCheck *sc, const char *fmt, int r, Err *err) {
    if ((d & 0x7fff) == 0) {
        memset(codes, 1, 256);
        return 0;
    }
    if ((d & 0x7c00) == 0x7c00) return err_set(err, "%s block scale is inf/NaN (row %d)", fmt, r);
    if (!sc->have) {
        sc->have = 1;
        sc->d = d;
    } else if (sc->d != d) {
        return err_set(err, "%s blocks carry different scales (%g and %g at row %d): not a BitNet "
                            "ternary matrix with one scale; only such matrices are supported", fmt,
                       (double)f16_to_f32(sc->d), (double)f16_to_f32(d), r);
    }
    for (int i = 0; i < 256; i++)
        if (codes[i] > 2) return err_set(err, "%s code 3 is not ternary (row %d)", fmt, r);
    return 0;
}

static int tq_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out,
                     float *gamma, Err *err, int is_tq1) {
    const char *fmt = is_tq1 ? "TQ1_0" : "TQ2_0";
    const size_t bb = is_tq1 ? 54 : 66;
    if (n_in % 256) return err_set(err, "%s row length %d is not a multiple of 256", fmt, n_in);
    const size_t rb = i2s_row_bytes(k_pad);
    uint8_t *row = malloc((size_t)n_in);
    if (!row) return err_set(err, "out of memory");
    ScaleCheck sc = {0};
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    for (int r = 0; r < n_out; r++) {
        for (int b = 0; b < n_in / 256; b++) {
            const uint8_t *blk = src + ((size_t)r * (size_t)(n_in / 256) + (size_t)b) * bb;
            uint8_t *codes = row + (size_t)b * 256;
            uint16_t d;
            if (!is_tq1) {
                for (int h = 0; h < 2; h++)
                    for (int l = 0; l < 4; l++)
                        for (int m = 0; m < 32; m++)
                            codes[h * 128 + l * 32 + m] = (blk[h * 32 + m] >> (2 * l)) & 3;
                memcpy(&d, blk + 64, 2);
            } else {
                for (int n = 0; n < 5; n++)
                    for (int m = 0; m < 32; m++)
                        codes[n * 32 + m] = (uint8_t)(((unsigned)(uint8_t)(blk[m] * pow3[n]) * 3) >> 8);
                for (int n = 0; n < 5; n++)
                    for (int m = 0; m < 16; m++)
                        codes[160 + n * 16 + m] =
                            (uint8_t)(((unsigned)(uint8_t)(blk[32 + m] * pow3[n]) * 3) >> 8);
                for (int n = 0; n < 4; n++)
                    for (int m = 0; m < 4; m++)
                        codes[240 + n * 4 + m] =
                            (uint8_t)(((unsigned)(uint8_t)(blk[48 + m] * pow3[n]) * 3) >> 8);
                memcpy(&d, blk + 52, 2);
            }
            if (tq_block(codes, d, &sc, fmt, r, err)) {
                free(row);
                return -1;
            }
        }
        pack_row(row, n_in, k_pad, out + rb * (size_t)r);
    }
    free(row);
    *gamma = sc.have ? fabsf(f16_to_f32(sc.d)) : 0.0f;
    if (sc.have && (sc.d & 0x8000)) {
        /* d < 0: value = (code-1)*d = -(code-1)*|d|, so mirror every code (0 <-> 2); padding
         * and zero codes (1) stay */
        for (size_t i = 0; i < rb * (size_t)n_out; i++) {
            uint8_t b = out[i], v = 0;
            for (int q = 0; q < 4; q++) v |= (uint8_t)((2 - ((b >> (2 * q)) & 3)) << (2 * q));
            out[i] = v;
        }
    }
    return 0;
}

int tq2_0_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out, float *gamma,
                 Err *err) {
    return tq_to_i2s(src, n_out, n_in, k_pad, out, gamma, err, 0);
}

int tq1_0_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out, float *gamma,
                 Err *err) {
    return tq_to_i2s(src, n_out, n_in, k_pad, out, gamma, err, 1);
}

int i2s_flat_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out, Err *err) {
    uint8_t *codes = malloc((size_t)n_in);
    if (!codes) return err_set(err, "out of memory");
    const size_t rb = i2s_row_bytes(k_pad);
    for (int r = 0; r < n_out; r++) {
        for (int k = 0; k < n_in; k++) {
            const size_t e = (size_t)r * (size_t)n_in + (size_t)k, j = e % I2S_BLOCK;
            const uint8_t c = (uint8_t)(src[e / I2S_BLOCK * I2S_BLOCK_BYTES + j % 32] >> (6 - 2 * (j / 32)) & 3);
            if (c == 3) {
                free(codes);
                return err_set(err, "row %d holds code 3, which is no ternary value", r);
            }
            codes[k] = c;
        }
        pack_row(codes, n_in, k_pad, out + (size_t)r * rb);
    }
    free(codes);
    return 0;
}

int hf_packed_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out, Err *err) {
    if (n_out % 4) return err_set(err, "packed weight has %d output rows, not a multiple of 4", n_out);
    const int q = n_out / 4;
    const size_t rb = i2s_row_bytes(k_pad);
    uint8_t *row = malloc((size_t)n_in);
    if (!row) return err_set(err, "out of memory");
    for (int r = 0; r < q; r++) {
        const uint8_t *p = src + (size_t)r * n_in;
        for (int i = 0; i < 4; i++) {
            uint8_t bad = 0;
            for (int k = 0; k < n_in; k++) {
                row[k] = (p[k] >> (2 * i)) & 3;
                bad |= (uint8_t)(row[k] == 3);
            }
            if (bad) {
                free(row);
                return err_set(err, "packed weight row %d holds code 3 (not ternary)", r);
            }
            pack_row(row, n_in, k_pad, out + rb * (size_t)(r + i * q));
        }
    }
    free(row);
    return 0;
}

int dequant_supported(int type) { return type == 8 || type == 12 || type == 14; }

int dequant_to_f16(const uint8_t *src, int type, size_t n, uint16_t *dst) {
    if (type == 8) {
        for (size_t b = 0; b < n / 32; b++, src += 34) {
            uint16_t dh;
            memcpy(&dh, src, 2);
            const float d = f16_to_f32(dh);
            for (int i = 0; i < 32; i++) dst[b * 32 + i] = f32_to_f16(d * (float)(int8_t)src[2 + i]);
        }
        return 0;
    }
    if (type == 12) {
        for (size_t b = 0; b < n / 256; b++, src += 144) {
            uint16_t dh, mh;
            memcpy(&dh, src, 2);
            memcpy(&mh, src + 2, 2);
            const float d = f16_to_f32(dh), dmin = f16_to_f32(mh);
            const uint8_t *sc = src + 4, *q = src + 16;
            uint16_t *y = dst + b * 256;
            for (int j = 0; j < 8; j++) {
                int s, m;
                if (j < 4) {
                    s = sc[j] & 63;
                    m = sc[j + 4] & 63;
                } else {
                    s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4);
                    m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
                }
                const float ds = d * (float)s, dm = dmin * (float)m;
                const int chunk = j / 2, hi = j % 2;
                for (int l = 0; l < 32; l++) {
                    int v = hi ? q[chunk * 32 + l] >> 4 : q[chunk * 32 + l] & 0xF;
                    y[j * 32 + l] = f32_to_f16(ds * (float)v - dm);
                }
            }
        }
        return 0;
    }
    if (type == 14) {
        for (size_t b = 0; b < n / 256; b++, src += 210) {
            const uint8_t *ql = src, *qh = src + 128;
            const int8_t *sc = (const int8_t *)(src + 192);
            uint16_t dh;
            memcpy(&dh, src + 208, 2);
            const float d = f16_to_f32(dh);
            uint16_t *y = dst + b * 256;
            for (int h = 0; h < 2; h++)
                for (int c = 0; c < 4; c++)
                    for (int l = 0; l < 32; l++) {
                        const uint8_t lo = ql[h * 64 + l + 32 * (c & 1)];
                        const int low = c < 2 ? lo & 0xF : lo >> 4;
                        const int high = (qh[h * 32 + l] >> (2 * c)) & 3;
                        const int e = h * 128 + c * 32 + l;
                        y[e] = f32_to_f16((d * (float)sc[e / 16]) * (float)((low | (high << 4)) - 32));
                    }
        }
        return 0;
    }
    return -1;
}
