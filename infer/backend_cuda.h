/* The CUDA backend's helpers shared with its tests (CUDA builds only; the backend itself is
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

/* The lm_head screen's state after the work queued so far (waits for it), for the tests and the
 * bench: [lo, hi] of every row of the last screened decode step into lohi (2 * vocab floats, or
 * NULL), kcuda_screen_exact's statistics since creation into stats (KCUDA_SCREEN_STATS ints, or
 * NULL). backend: a handle of backend_cuda_ops.create. Returns 1 when the last decode step ran
 * the screened head, 0 when it ran the full one or the backend has no screen, -1 on a CUDA
 * error. */
int cuda_screen_probe(void *backend, float *lohi, int *stats);

#endif
