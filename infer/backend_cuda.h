/* The CUDA backend's one helper shared with its tests (CUDA builds only; the backend itself is
 * reached through backend_cuda_ops in infer/infer.h). */
#ifndef BITNET_INFER_BACKEND_CUDA_H
#define BITNET_INFER_BACKEND_CUDA_H

#include <stdint.h>

#include "infer/sampler.h"
#include "kernels/cuda/kernels_cuda.h"

/* Packs sampler s's settings (temperature, top-k, top-p, min-p, repetition penalty), its penalty
 * window's distinct ids (at most max_ids, into ids) and its next uniform for kcuda_sample_*.
 * Returns the number of ids, or -1 when the window holds more than max_ids distinct tokens (the
 * host sampler draws instead). */
int cuda_sample_args(Sampler *s, KcudaSampleArgs *a, int32_t *ids, int max_ids);

#endif
