/* The persistent decode kernel: all transformer layers of one decode step in one launch.
 * A lab kernel (kernels/dev/README.md, "Persistent decode"): correct on every shape tried, but
 * measured about 2x slower than the per-kernel chain the product runs, so not in the product.
 *
 * One block per SM (about 210 KB of shared memory each) runs an explicit schedule. For every
 * layer it does five steps in order: QKV GEMV (RMSNorm + int8 quantization of x recomputed in
 * the block), attention (tasks of one KV group x one slice of the context; the last slice of a
 * group to finish combines the partial softmax records), O GEMV + residual, gate/up GEMV with
 * relu^2(g)*u, down GEMV + residual. A GEMV step gives each block a fixed contiguous range of
 * rows; a block's rows over all layers form one byte stream that a bulk copy engine (TMA,
 * cp.async.bulk) streams into a ring of shared-memory stages, as far ahead as the ring reaches
 * (more than one layer of that block's weights on an H100), independently of the activations.
 * A step starts when a device counter says its input vector is complete (release/acquire at GPU
 * scope), not when a grid ends.
 *
 * Arithmetic: the W2A8 GEMVs use the per-kernel path's formulas (kernels_cuda.h): integer dot
 * products exact, y = (float)acc / s * gamma with explicit roundings, residual adds in place;
 * RMSNorm sums in a different order than the per-kernel GEMV (fp32 rounding). Attention: fp32
 * scores and softmax (expf), f16 KV cache as KcudaAttnShape describes.
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
    /* timeline: [block][layer][step 0..4][6] %globaltimer ns when the block's wait for the
     * step's input released, when it counted the step done, and (GEMV steps) when its int8
     * input was in shared memory and when its dot products were done (0 where it did not);
     * then (GEMV steps) the ns thread 0 spent waiting for the stages' bulk copies and issuing
     * the refills */
    unsigned long long *trace;
} KcudaDecodeTaps;

typedef struct KcudaDecodePlan KcudaDecodePlan;

/* Checks the shapes (all layers alike; K of every GEMV a multiple of 128 with k_in a multiple of
 * 4 and k_pad <= 16384; head_dim even, <= 256; at most 8 query heads per KV head), sizes the
 * grid from the device's occupancy (one resident block per SM) and allocates the layer table
 * and scratch. KCUDA_ERR_SHAPE with a message for a shape it cannot run. */
int kcuda_decode_plan_create(const KcudaDecodeShape *s, const KcudaDecodeLayer *layers,
                             KcudaDecodePlan **out);
void kcuda_decode_plan_destroy(KcudaDecodePlan *p);
/* Lab: write the taps on every later launch (NULL: stop). */
int kcuda_decode_plan_set_taps(KcudaDecodePlan *p, const KcudaDecodeTaps *t);
/* Grid size and stages of the shared-memory ring, for reports. */
void kcuda_decode_plan_describe(const KcudaDecodePlan *p, int *blocks, int *stages,
                                int *stage_bytes);

/* One decode step of all layers on the residual stream d_x (dim floats, in place) at the
 * position *d_pos (device int): writes this position's K/V rows into every layer's cache.
 * A cooperative launch (every block resident), capturable in a CUDA graph. */
int kcuda_decode_layers(KcudaDecodePlan *p, float *d_x, const int *d_pos, void *stream);

#ifdef __cplusplus
}
#endif
#endif
