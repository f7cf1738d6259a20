/* The packed layouts of W2A8 (2-bit ternary weights, 8-bit activations), defined once.
 *
 * Host layout: I2_S, as in Microsoft's official BitNet GGUF (ggml type 36), so that an official
 * file is used in place from its mmap with no copy. A matrix W of n_out rows by k columns
 * (k a multiple of I2S_BLOCK) is stored row after row, each row k/4 bytes, cut into blocks of
 * 128 weights = 32 bytes. Within a block, byte g (0..31) holds
 *     weight g      in bits 7..6
 *     weight g + 32 in bits 5..4
 *     weight g + 64 in bits 3..2
 *     weight g + 96 in bits 1..0
 * Codes: 0 -> -1, 1 -> 0, 2 -> +1 (3 is never written; read as 0).
 * Why this layout for the CPU too: shifting a 32-byte block right by 6/4/2/0 and masking with 3
 * gives 32 consecutive weights per shift, exactly one AVX2 register of int8 lanes.
 *
 * Matrices from other formats whose k is not a multiple of 128 are padded at load to
 * k_pad = round_up(k, 128) with code 1 (zero); activations are quantized into k_pad lanes with
 * zeros in the tail, so padding never changes a dot product.
 *
 * The GPU keeps these rows byte for byte, code 3 rewritten to 1 at upload (kernels/cuda/kernels_cuda.h
 * says why no tile permutation is needed). */
#ifndef BN_W2A8_H
#define BN_W2A8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { I2S_BLOCK = 128, I2S_BLOCK_BYTES = 32 };

static inline int i2s_round_up_k(int k) { return (k + I2S_BLOCK - 1) / I2S_BLOCK * I2S_BLOCK; }
static inline size_t i2s_row_bytes(int k_pad) { return (size_t)k_pad / 4; }

/* Ternary value (-1, 0, +1) of weight j in an I2_S row. */
static inline int i2s_get(const uint8_t *row, int j) {
    const uint8_t b = row[(j / I2S_BLOCK) * I2S_BLOCK_BYTES + (j % 32)];
    const int code = (b >> (6 - 2 * ((j % I2S_BLOCK) / 32))) & 3;
    return code == 3 ? 0 : code - 1;
}

/* Sets weight j of an I2_S row to t in {-1, 0, +1}. */
static inline void i2s_set(uint8_t *row, int j, int t) {
    uint8_t *b = &row[(j / I2S_BLOCK) * I2S_BLOCK_BYTES + (j % 32)];
    const int shift = 6 - 2 * ((j % I2S_BLOCK) / 32);
    *b = (uint8_t)((*b & ~(3u << shift)) | ((unsigned)(t + 1) << shift));
}

/* Fills n bytes of I2_S rows with code 1 (all weights zero). */
void i2s_fill_zero(uint8_t *rows, size_t n_bytes);

/* Packs a row-major int8 ternary matrix t[n_out][k] into I2_S rows of k_pad weights. */
void i2s_pack(const int8_t *t, int n_out, int k, int k_pad, uint8_t *out);

/* --- scalar reference (the oracle every fast path is checked against) --------------------- */

/* Per-token activation quantization: s = 127 / max(|x|, 1e-5); q = clamp(rint(x * s)) with
 * round-half-to-even, lanes n..n_pad-1 set to 0. Returns s (the caller divides by it). */
float quant_act_ref(const float *x, int n, int n_pad, int8_t *q);

/* acc[r] = sum_j ternary(W[r][j]) * q[j], exact int32, for one activation row. */
void w2a8_gemv_ref(const uint8_t *w, int n_out, int k_pad, const int8_t *q, int32_t *acc);

#ifdef __cplusplus
}
#endif
#endif
