/* The persistent decode kernel: all transformer layers of one decode step in one launch.
 * A lab kernel (kernels/dev/README.md, "Persistent decode"); the first version (TMA bulk copies
 * into a shared-memory ring, one 512-thread block per SM) measured about 2x slower than the
 * per-kernel chain and is in git history (ff554cf). This is the second design.
 *
 * Two blocks of 256 threads per SM run an explicit schedule. For every layer: QKV GEMV (RMSNorm
 * + int8 quantization of x recomputed in each block, with the product GEMV's own prologue),
 * attention, O GEMV + residual, gate/up GEMV with act(g)*u, down GEMV + residual. A GEMV step
 * gives each block a fixed contiguous range of rows; the block loads its rows of the NEXT GEMV
 * into registers (16-byte non-coherent loads, as the product's GEMV does before its PDL wait)
 * before it waits for the current step's input, so a matrix's bytes are in flight during the
 * step before it. A step starts when a device counter says its input vector is complete
 * (release/acquire at GPU scope), not when a grid ends. Attention: at short context one task per
 * (query head, 64 positions); past that one per (KV group, slice of the context); the last slice
 * of a unit combines the partial softmax records.
 *
 * Arithmetic: the W2A8 GEMVs use the per-kernel path's prologue (gemv_prologue_fast with 256
 * threads: the same sum-of-squares order, so the same int8 input bits) and formulas: integer dot
 * products exact, y = (float)acc / s * gamma with explicit roundings, residual adds in place.
 * Attention: fp32 scores and softmax (expf), f16 KV cache as KcudaAttnShape describes.
 *
 * Device memory layout of the weights: exactly the per-kernel path's (KcudaTernary; QKV rows
 * concatenated, gate/up interleaved row by row with glu = 1), so both paths share one upload. */
#ifndef BN_DECODE_PERSISTENT_H
#define BN_DECODE_PERSISTENT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/kernels_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    KcudaTernary qkv, o, gu, down; /* gu: glu = 1 (interleaved) */
    const float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm; /* device */
    uint16_t *kc, *vc;             /* this layer's f16 cache, [n_kv][ctx][head_dim] */
} KcudaDecodeLayer;

typedef struct {
    int n_layers, dim, ffn;
    float eps;
    KcudaAttnShape attn; /* heads, head_dim, ctx, rope style and table */
} KcudaDecodeShape;

/* Lab taps (all optional, device memory): per layer l, the step outputs and the int8 inputs of
 * the four GEMVs as the kernel computed them: qkv[l][qkv_dim], att[l][q_dim], x_mid[l][dim]
 * (x after the O residual), gu[l][ffn], x_out[l][dim]; q[m][l][k_pad of GEMV m] (unswizzled)
 * and s[m][l] for m = QKV, O, gate/up, down. */
typedef struct {
    float *qkv, *att, *x_mid, *gu, *x_out;
    int8_t *q[4];
    float *s[4];
    /* timeline: [block][layer][step 0..4][6] %globaltimer ns: [0] when the block's wait for the
     * step's input released, [1] when it counted the step done, [2] (GEMV steps) when its int8
     * input was in shared memory, [3] when its dot products were done, [4] when it began to
     * wait, [5] (GEMV steps) when the step began (before issuing the next weights); 0 where
     * it did not */
    unsigned long long *trace;
} KcudaDecodeTaps;

typedef struct KcudaDecodePlan KcudaDecodePlan;

/* Checks the shapes (all layers alike; K of every GEMV a multiple of 128 with k_in a multiple of
 * 4 and k_pad <= 16384; head_dim even, <= 256; at most 8 query heads per KV head; at most 64
 * layers), sizes the grid from the device's occupancy (two resident blocks per SM where they
 * fit) and allocates the layer table and scratch. KCUDA_ERR_SHAPE with a message for a shape it
 * cannot run. */
int kcuda_decode_plan_create(const KcudaDecodeShape *s, const KcudaDecodeLayer *layers,
                             KcudaDecodePlan **out);
void kcuda_decode_plan_destroy(KcudaDecodePlan *p);
/* Lab: write the taps on every later launch (NULL: stop). */
int kcuda_decode_plan_set_taps(KcudaDecodePlan *p, const KcudaDecodeTaps *t);
/* Lab: which schedule later launches run: 0 issues every GEMV's weight loads before the
 * previous step's wait; 1 issues down's and the next QKV's after the previous step's prologue
 * (fewer live registers); 2 issues each GEMV's loads at its own start, before its wait (the
 * per-kernel chain's placement). Default 0. */
int kcuda_decode_plan_set_variant(KcudaDecodePlan *p, int variant);
/* Grid size, threads per block and blocks per SM, for reports. */
void kcuda_decode_plan_describe(const KcudaDecodePlan *p, int *blocks, int *threads, int *per_sm);

/* One decode step of all layers on the residual stream d_x (dim floats, in place) at the
 * position *d_pos (device int): writes this position's K/V rows into every layer's cache.
 * A cooperative launch (every block resident), capturable in a CUDA graph. */
int kcuda_decode_layers(KcudaDecodePlan *p, float *d_x, const int *d_pos, void *stream);

#ifdef __cplusplus
}
#endif
#endif
