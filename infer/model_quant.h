/* Conversions from the weight encodings found in model files to the Model's own forms
 * (I2_S codes + one gamma per matrix, f32 norms). Pure functions over memory, so the tests
 * and the fuzzers can drive them directly. */
#ifndef BN_MODEL_QUANT_H
#define BN_MODEL_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);       /* round to nearest even; overflow -> inf */
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);      /* round to nearest even */

/* Element i of a float tensor of ggml type 0 (F32), 1 (F16) or 30 (BF16); unaligned-safe. */
float float_elem(const void *data, int type, size_t i);

/* Absmean ternarization of W[n_out][n_in] (ggml type F32/F16/BF16), in fp32:
 * gamma = max(mean|W|, 1e-5) (sum in double, rounded once to float), t = clamp(rint(W / gamma
 * computed as W * (1/gamma)), -1, 1) with round-half-to-even. Writes I2_S rows of k_pad.
 * Returns -1 when out of memory, -2 when a weight is NaN or infinite (nothing is written). */
int ternarize_absmean(const void *w, int type, int n_out, int n_in, int k_pad, uint8_t *out,
                      float *gamma);

/* llama.cpp TQ2_0 / TQ1_0 (256-element blocks, one f16 scale d per block) to I2_S. Every
 * block whose d is nonzero must carry the same d: that is the BitNet case, where the file was
 * quantized from gamma * {-1, 0, 1}. A matrix with differing block scales cannot be one
 * ternary matrix times one gamma, so it is refused rather than silently altered.
 * n_in must be a multiple of 256. Returns 0 and *gamma, or -1 with err. */
int tq2_0_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out, float *gamma,
                 Err *err);
int tq1_0_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out, float *gamma,
                 Err *err);

/* bitnet.cpp's I2_S laid over the whole flattened tensor, as its quantizers write it: value e
 * of W (e = r * n_in + k) sits in 128-value block e / 128, byte e % 32 of it, bits
 * 7-6 / 5-4 / 3-2 / 1-0 for the block's quarter (e % 128) / 32. When n_in is a multiple of 128
 * that is our row layout; otherwise the blocks cross rows, and this repacks them into rows of
 * k_pad (zero codes after n_in). n_out * n_in must be a multiple of 128. Code 3 is refused. */
int i2s_flat_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out, Err *err);

/* Hugging Face packed uint8 [n_out/4][n_in] (transformers' BitNet packing: bit pair i of
 * packed row r holds original row r + i*n_out/4, code = t + 1) to I2_S. Code 3 is refused. */
int hf_packed_to_i2s(const uint8_t *src, int n_out, int n_in, int k_pad, uint8_t *out, Err *err);

/* Quantized embedding / lm_head rows as llama.cpp writes them (Q8_0, Q4_K, Q6_K; ggml type ids
 * 8, 12, 14) to f16: the value is computed in fp32 exactly as ggml does, then rounded once to
 * f16 (relative error <= 2^-11, far below the quantization error of those types).
 * n must be a multiple of the type's block (32 or 256). Returns -1 for other types. */
int dequant_to_f16(const uint8_t *src, int type, size_t n, uint16_t *dst);
int dequant_supported(int type);

#endif
