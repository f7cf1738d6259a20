/* The I2_S layout helpers against a hand-decoded block: one known byte pattern, pack/unpack
 * round trips, and the reference GEMV against a plain int dot product. */
#include <stdint.h>

#include "check.h"
#include "kernels/w2a8.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

int main(void) {
    /* Byte 0 = 0b10 01 00 10: weight 0 -> +1 (bits 7..6 = 2), weight 32 -> 0, weight 64 -> -1,
     * weight 96 -> +1, as the official I2_S block layout says. */
    uint8_t block[32];
    i2s_fill_zero(block, sizeof block);
    block[0] = 0x92;
    CHECK_EQ_INT(i2s_get(block, 0), 1);
    CHECK_EQ_INT(i2s_get(block, 32), 0);
    CHECK_EQ_INT(i2s_get(block, 64), -1);
    CHECK_EQ_INT(i2s_get(block, 96), 1);
    CHECK_EQ_INT(i2s_get(block, 1), 0);

    /* Round trip through pack with padding (k = 200 -> 256). */
    enum { N = 7, K = 200, KP = 256 };
    int8_t t[N * K];
    for (int i = 0; i < N * K; i++) t[i] = (int8_t)((int)(next_u32() % 3) - 1);
    uint8_t packed[N * KP / 4];
    i2s_pack(t, N, K, KP, packed);
    int bad = 0;
    for (int r = 0; r < N; r++) {
        for (int j = 0; j < K; j++) bad += i2s_get(packed + r * KP / 4, j) != t[r * K + j];
        for (int j = K; j < KP; j++) bad += i2s_get(packed + r * KP / 4, j) != 0;
    }
    CHECK_EQ_INT(bad, 0);

    /* Activation quantization: max maps to 127, ties round to even, padding is zero. */
    float x[5] = {1.0f, -0.5f, 0.25f, 2.0f / 127.0f * 2.5f, 0.0f};
    int8_t q[8];
    float s = quant_act_ref(x, 5, 8, q);
    CHECK_NEAR(s, 127.0f, 1e-6);
    CHECK_EQ_INT(q[0], 127);
    CHECK_EQ_INT(q[1], -64); /* -63.5 -> -64 (even) */
    CHECK_EQ_INT(q[2], 32);  /* 31.75 -> 32 */
    CHECK_EQ_INT(q[3], 5);   /* 5.0 */
    CHECK_EQ_INT(q[5], 0);

    /* Reference GEMV equals a plain dot product. */
    int8_t a[KP];
    for (int j = 0; j < KP; j++) a[j] = j < K ? (int8_t)(next_u32() % 255 - 127) : 0;
    int32_t acc[N];
    w2a8_gemv_ref(packed, N, KP, a, acc);
    for (int r = 0; r < N; r++) {
        int32_t want = 0;
        for (int j = 0; j < K; j++) want += t[r * K + j] * a[j];
        CHECK_EQ_INT(acc[r], want);
    }
    return check_report("test_w2a8_layout");
}
