/* Scalar reference for the W2A8 layout helpers in kernels/w2a8.h: plain loops, no SIMD, no
 * threads. These are the oracle; keep them obviously correct rather than fast. */
#include "kernels/w2a8.h"

#include <math.h>
#include <string.h>

void i2s_fill_zero(uint8_t *rows, size_t n_bytes) { memset(rows, 0x55, n_bytes); /* 01 01 01 01 */ }

void i2s_pack(const int8_t *t, int n_out, int k, int k_pad, uint8_t *out) {
    const size_t rb = i2s_row_bytes(k_pad);
    i2s_fill_zero(out, rb * (size_t)n_out);
    for (int r = 0; r < n_out; r++)
        for (int j = 0; j < k; j++) i2s_set(out + rb * (size_t)r, j, t[(size_t)r * k + j]);
}

float quant_act_ref(const float *x, int n, int n_pad, int8_t *q) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float s = 127.0f / fmaxf(amax, 1e-5f);
    for (int i = 0; i < n; i++) {
        float v = rintf(x[i] * s); /* default rounding mode: half to even */
        if (v > 127.0f) v = 127.0f;
        if (v < -128.0f) v = -128.0f;
        q[i] = (int8_t)v;
    }
    for (int i = n; i < n_pad; i++) q[i] = 0;
    return s;
}

void w2a8_gemv_ref(const uint8_t *w, int n_out, int k_pad, const int8_t *q, int32_t *acc) {
    const size_t rb = i2s_row_bytes(k_pad);
    for (int r = 0; r < n_out; r++) {
        const uint8_t *row = w + rb * (size_t)r;
        int32_t sum = 0;
        for (int j = 0; j < k_pad; j++) sum += i2s_get(row, j) * (int32_t)q[j];
        acc[r] = sum;
    }
}
