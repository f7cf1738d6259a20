/* Unit tests of the weight conversions (infer/model_quant.h) on hand-made inputs whose answer
 * is known: half/bfloat conversions, absmean rounding at the exact ±0.5 boundaries, TQ sign and
 * scale rules, HF packing order and the refusals of non-ternary data. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "infer/model_quant.h"
#include "kernels/w2a8.h"

static int get(const uint8_t *rows, int k_pad, int r, int j) { return i2s_get(rows + (size_t)r * k_pad / 4, j); }

int main(void) {
    /* every finite f16 survives f16 -> f32 -> f16 */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN payloads */
        bad += f32_to_f16(f16_to_f32((uint16_t)h)) != h;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ_INT(f32_to_f16(65520.0f), 0x7c00);              /* rounds up to inf */
    CHECK_EQ_INT(f32_to_f16(65519.0f), 0x7bff);
    CHECK_EQ_INT(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);     /* tie to even */
    CHECK_EQ_INT(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    CHECK_EQ_INT(f32_to_f16(5.9604645e-8f), 0x0001);          /* smallest subnormal */
    CHECK_EQ_INT(f32_to_bf16(1.0f), 0x3f80);
    CHECK(bf16_to_f32(0xbf80) == -1.0f);

    /* absmean: mean|W| = 1 exactly, so s = 1 and the ±0.5 ties round to 0 (half to even) */
    float w[2][8] = {{0.5f, -0.5f, 1.5f, -1.5f, 1.0f, 1.0f, 1.0f, 1.0f},
                     {0.51f, -0.51f, 0.49f, -0.49f, 1.0f, 1.0f, 1.0f, 1.0f}};
    uint8_t codes[2 * 32];
    float gamma = 0;
    REQUIRE(ternarize_absmean(w, 0, 1, 8, 128, codes, &gamma) == 0);
    CHECK(gamma == 1.0f);
    int want0[8] = {0, 0, 1, -1, 1, 1, 1, 1};
    for (int j = 0; j < 8; j++) CHECK_EQ_INT(get(codes, 128, 0, j), want0[j]);
    for (int j = 8; j < 128; j++) CHECK_EQ_INT(get(codes, 128, 0, j), 0); /* padding */
    REQUIRE(ternarize_absmean(w[1], 0, 1, 8, 128, codes, &gamma) == 0);
    CHECK_NEAR(gamma, 0.75, 1e-7);
    /* 0.51/0.75 = 0.68 -> 1; 0.49/0.75 = 0.65 -> 1 as well */
    int want1[8] = {1, -1, 1, -1, 1, 1, 1, 1};
    for (int j = 0; j < 8; j++) CHECK_EQ_INT(get(codes, 128, 0, j), want1[j]);
    float zeros[4] = {0};
    REQUIRE(ternarize_absmean(zeros, 0, 1, 4, 128, codes, &gamma) == 0);
    CHECK(gamma == 1e-5f); /* clamped */
    /* bf16 input gives the same answer as f32 */
    uint16_t wb[8];
    for (int j = 0; j < 8; j++) wb[j] = f32_to_bf16(w[0][j]);
    REQUIRE(ternarize_absmean(wb, 30, 1, 8, 128, codes, &gamma) == 0);
    for (int j = 0; j < 8; j++) CHECK_EQ_INT(get(codes, 128, 0, j), want0[j]);

    /* TQ2_0: weight h*128 + 32l + m in bits 2l..2l+1 of byte h*32 + m, d after 64 bytes */
    uint8_t tq[2 * 66];
    memset(tq, 0, sizeof tq);
    for (int b = 0; b < 2; b++) {
        uint8_t *blk = tq + 66 * b;
        memset(blk, 0x55, 64); /* all zero weights */
        blk[0] = (uint8_t)((blk[0] & ~3) | 2);        /* weight 0 = +1 */
        blk[0] = (uint8_t)((blk[0] & ~(3 << 2)) | 0); /* weight 32 = -1 */
        blk[33] = (uint8_t)((blk[33] & ~(3 << 6)) | (2 << 6)); /* weight 128 + 96 + 1 = +1 */
        uint16_t d = f32_to_f16(b == 0 ? 0.25f : 0.25f);
        memcpy(blk + 64, &d, 2);
    }
    uint8_t out[2 * 64];
    Err err;
    REQUIRE(tq2_0_to_i2s(tq, 1, 512, 512, out, &gamma, &err) == 0);
    CHECK(gamma == 0.25f);
    CHECK_EQ_INT(get(out, 512, 0, 0), 1);
    CHECK_EQ_INT(get(out, 512, 0, 32), -1);
    CHECK_EQ_INT(get(out, 512, 0, 225), 1);
    CHECK_EQ_INT(get(out, 512, 0, 256 + 225), 1);
    CHECK_EQ_INT(get(out, 512, 0, 1), 0);
    /* negative d: the same matrix with every sign flipped, gamma positive */
    uint16_t dneg = f32_to_f16(-0.25f);
    memcpy(tq + 64, &dneg, 2);
    memcpy(tq + 66 + 64, &dneg, 2);
    REQUIRE(tq2_0_to_i2s(tq, 1, 512, 512, out, &gamma, &err) == 0);
    CHECK(gamma == 0.25f);
    CHECK_EQ_INT(get(out, 512, 0, 0), -1);
    CHECK_EQ_INT(get(out, 512, 0, 32), 1);
    CHECK_EQ_INT(get(out, 512, 0, 1), 0);
    /* two blocks with different scales: refused with a clear message */
    uint16_t d2 = f32_to_f16(0.5f);
    memcpy(tq + 66 + 64, &d2, 2);
    CHECK(tq2_0_to_i2s(tq, 1, 512, 512, out, &gamma, &err) == -1);
    CHECK(strstr(err.msg, "different scales") != NULL);
    /* a zero-scale block is fine whatever its codes */
    uint16_t dz = 0;
    memcpy(tq + 66 + 64, &dz, 2);
    tq[66] = 0xff;
    REQUIRE(tq2_0_to_i2s(tq, 1, 512, 512, out, &gamma, &err) == 0);
    CHECK_EQ_INT(get(out, 512, 0, 256), 0);
    /* code 3 in a live block is refused */
    tq[1] = 0xff;
    CHECK(tq2_0_to_i2s(tq, 1, 512, 512, out, &gamma, &err) == -1);
    CHECK(strstr(err.msg, "code 3") != NULL);

    /* TQ1_0: byte value 0 -> all digits 0 (-1); 242 = 3^5 - 1 -> digits give code 2 (+1) */
    uint8_t t1[54];
    memset(t1, 0, sizeof t1);
    t1[0] = 255; /* base-3 fixed point of "22222" rounded up: 242*256/243 = 254.9 -> 255 */
    uint16_t d1 = f32_to_f16(2.0f);
    memcpy(t1 + 52, &d1, 2);
    uint8_t out1[64];
    REQUIRE(tq1_0_to_i2s(t1, 1, 256, 256, out1, &gamma, &err) == 0);
    CHECK(gamma == 2.0f);
    for (int n = 0; n < 5; n++) CHECK_EQ_INT(get(out1, 256, 0, n * 32), 1);
    CHECK_EQ_INT(get(out1, 256, 0, 1), -1);
    CHECK_EQ_INT(get(out1, 256, 0, 255), -1);

    /* HF packing: bit pair i of packed row r is original row r + i*N/4 */
    uint8_t packed[1 * 128];
    for (int k = 0; k < 128; k++) packed[k] = (uint8_t)(2 | 1 << 2 | 0 << 4 | 2 << 6); /* +1, 0, -1, +1 */
    uint8_t hp[4 * 32];
    REQUIRE(hf_packed_to_i2s(packed, 4, 128, 128, hp, &err) == 0);
    CHECK_EQ_INT(get(hp, 128, 0, 5), 1);
    CHECK_EQ_INT(get(hp, 128, 1, 5), 0);
    CHECK_EQ_INT(get(hp, 128, 2, 5), -1);
    CHECK_EQ_INT(get(hp, 128, 3, 127), 1);
    packed[7] = 0xff;
    CHECK(hf_packed_to_i2s(packed, 4, 128, 128, hp, &err) == -1);
    CHECK(strstr(err.msg, "code 3") != NULL);

    /* Q8_0: value = d * q */
    uint8_t q8[34];
    uint16_t dq = f32_to_f16(0.5f);
    memcpy(q8, &dq, 2);
    for (int i = 0; i < 32; i++) q8[2 + i] = (uint8_t)(int8_t)(i - 16);
    uint16_t y[32];
    REQUIRE(dequant_to_f16(q8, 8, 32, y) == 0);
    for (int i = 0; i < 32; i++) CHECK(f16_to_f32(y[i]) == 0.5f * (float)(i - 16));
    CHECK(dequant_to_f16(q8, 2, 32, y) == -1); /* Q4_0: not supported */
    return check_report("test_model_quant");
}
