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
 *   trailing bytes give weights 240 + n*4 + m (n = 0..3). Value = (digit - 1) * d. */
#include "infer/model_quant.h"

#include <math.h>
#include <stdio.h>
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

float ternarize_absmean(const void *w, int type, int n_out, int n_in, int k_pad, uint8_t *out) {
    const size_t n = (size_t)n_out * (size_t)n_in;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += fabs((double)float_elem(w, type, i));
    float gamma = n ? (float)(sum / (double)n) : 0.0f;
    if (!(gamma >= 1e-5f)) gamma = 1e-5f; /* also catches NaN */
    const float s = 1.0f / gamma;
    const size_t rb = i2s_row_bytes(k_pad);
    i2s_fill_zero(out, rb * (size_t)n_out);
    for (int r = 0; r < n_out; r++) {
        uint8_t *row = out + rb * (size_t)r;
        for (int j = 0; j < n_in; j++) {
            float v = rintf(float_elem(w, type, (size_t)r * n_in + j) * s);
            int t = v > 0.5f ? 1 : v < -0.5f ? -1 : 0; /* clamp to [-1, 1]; NaN -> 0 */
            i2s_set(row, j, t);
        }
    }
    return gamma;
}

/* Shared by both TQ formats: codes[256] in {0,1,2,3} and the block's f16 d. */
typedef struct {
    int have;
    uint16_t d;
} ScaleCheck;

static int tq_block(const uint8_t codes[256], uint16_t d, uint8_t *row, int col0, ScaleCheck *sc,
                    const char *fmt, int r, Err *err) {
    if ((d & 0x7fff) == 0) return 0; /* scale 0: every weight is 0 (row already zero-filled) */
    if ((d & 0x7c00) == 0x7c00)
        return err_set(err, "%s block scale is inf/NaN (row %d)", fmt, r);
    if (!sc->have) {
        sc->have = 1;
        sc->d = d;
    } else if (sc->d != d) {
        return err_set(err, "%s blocks carry different scales (%g and %g at row %d): not a BitNet "
                            "ternary matrix with one scale; only such matrices are supported", fmt,
                       (double)f16_to_f32(sc->d), (double)f16_to_f32(d), r);
    }
    for (int i = 0; i < 256; i++) {
        if (codes[i] > 2) return err_set(err, "%s code 3 is not ternary (row %d)", fmt, r);
        i2s_set(row, col0 + i, (int)codes[i] - 1);
    }
    return 0;
}

static float scale_of(const ScaleCheck *sc) {
    if (!sc->have) return 0.0f;
    return fabsf(f16_to_f32(sc->d)); /* a negative d with codes flipped is the same matrix only
                                        if we also flip; handled by the caller's sign below */
}

static int tq_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out,
                     float *gamma, Err *err, int is_tq1) {
    const char *fmt = is_tq1 ? "TQ1_0" : "TQ2_0";
    const size_t bb = is_tq1 ? 54 : 66;
    if (n_in % 256) return err_set(err, "%s row length %d is not a multiple of 256", fmt, n_in);
    const size_t rb = i2s_row_bytes(k_pad);
    i2s_fill_zero(out, rb * (size_t)n_out);
    ScaleCheck sc = {0};
    uint8_t codes[256];
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    for (int r = 0; r < n_out; r++) {
        for (int b = 0; b < n_in / 256; b++) {
            const uint8_t *blk = src + ((size_t)r * (size_t)(n_in / 256) + (size_t)b) * bb;
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
            if (tq_block(codes, d, out + rb * (size_t)r, b * 256, &sc, fmt, r, err)) return -1;
        }
    }
    *gamma = scale_of(&sc);
    if (sc.have && (sc.d & 0x8000)) {
        /* d < 0: value = (code-1) * d = -(code-1) * |d|; flip every weight */
        for (int r = 0; r < n_out; r++)
            for (int j = 0; j < n_in; j++) i2s_set(out + rb * (size_t)r, j, -i2s_get(out + rb * (size_t)r, j));
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

int hf_packed_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out, Err *err) {
    if (n_out % 4) return err_set(err, "packed weight has %d output rows, not a multiple of 4", n_out);
    const int q = n_out / 4;
    const size_t rb = i2s_row_bytes(k_pad);
    i2s_fill_zero(out, rb * (size_t)n_out);
    for (int r = 0; r < q; r++) {
        for (int k = 0; k < n_in; k++) {
            const uint8_t b = src[(size_t)r * n_in + k];
            for (int i = 0; i < 4; i++) {
                const int code = (b >> (2 * i)) & 3;
                if (code == 3)
                    return err_set(err, "packed weight byte [%d][%d] holds code 3 (not ternary)", r, k);
                i2s_set(out + rb * (size_t)(r + i * q), k, code - 1);
            }
        }
    }
    return 0;
}
