/* The CUDA backend's helpers shared with its tests (CUDA builds only; the backend itself is
 * reached through backend_cuda_ops in infer/infer.h). */
#ifndef BITNET_INFER_BACKEND_CUDA_H
#define BITNET_INFER_BACKEND_CUDA_H

#include <stdint.h>

#include "infer/model.h"
#include "infer/sampler.h"
#include "kernels/cuda/kernels_cuda.h"

/* Packs sampler s's settings (temperature, top-k, top-p, min-p, repetition penalty), its penalty
 * window's distinct ids (at most max_ids, into ids) and its next uniform for kcuda_sample_*.
 * Returns the number of ids, or -1 when the window holds more than max_ids distinct tokens (the
 * host sampler draws instead). */
int cuda_sample_args(Sampler *s, KcudaSampleArgs *a, int32_t *ids, int max_ids);

/* The lm_head screen's state after the work queued so far (waits for it), for the tests: when the
 * logits on the device are a screened step's (the last decode step screened, and no full head
 * since), [lo, hi] of every row into lohi (2 * vocab floats, or NULL) and the rows computed
 * exactly (the logits other than -inf) into *exact_rows (or NULL), and returns 1; otherwise 0
 * (*exact_rows = 0), -1 on a CUDA error. backend: a handle of backend_cuda_ops.create. */
int cuda_screen_probe(void *backend, float *lohi, int *exact_rows);

/* Decoding ahead, for the tests: the decode steps adopted as queued ahead of the host, and the
 * steps done again the plain way (the host sampler was not where the device assumed, or the
 * logits of a step whose successor was queued were asked for). */
void cuda_ahead_counts(void *backend, long *adopted, long *redone);

/* The prefill batch's buffers in the scratch (infer/backend_cuda.c carve_scratch): byte offsets
 * from the start of their part, and its size, for T tokens of a model with config c. Buffers
 * whose lifetimes in a layer's stream order are disjoint share bytes (qkv + the attention output
 * and gate/up's output). Needs no device: test_prefill_plan checks it on every build. */
typedef struct {
    size_t x, qkv, att, gu, s, qsum, tok, q; /* f32 [T][dim], [T][qkv], [T][q], [T][ffn], f32 [T],
                                              * i32 [T], i32 [T], int8 [T][largest k_pad] */
    size_t bytes;
} CudaPrefillPlan;
void cuda_prefill_plan(const ModelConfig *c, int T, CudaPrefillPlan *p);

#endif
