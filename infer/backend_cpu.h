/* The CPU backend's extra knobs, beyond InferOptions (infer/infer.h): tests and benchmarks use
 * them to pin the KV cache precision, the prefill batch and the kernel ISA. The engine goes
 * through infer_create / backend_cpu_ops, which use the defaults. */
#ifndef BN_BACKEND_CPU_H
#define BN_BACKEND_CPU_H

#include <stdint.h>

#include "infer/infer.h"

typedef struct {
    int kv_f32;      /* 1: f32 KV cache; 0 (default): f16 (half the memory, F16C converts) */
    int max_batch;   /* tokens per prefill batch (weights are read once per batch); 0 = 64 */
    int weights_map; /* 1: read the weights in place from the file mapping, never copy them
                      * onto huge pages (infer/cpu_weights.h; the default copies when it fits) */
} CpuBackendOptions;

/* backend_cpu_ops.create with explicit CPU options; returns the backend state for
 * backend_cpu_ops' other functions, or NULL with err set. */
void *backend_cpu_create_ex(const Model *m, const InferOptions *o, const CpuBackendOptions *co,
                            Err *err);

/* The screened exact lm_head (backend_cpu.c; InferOptions.lm_head_full turns it off): what it
 * did since the backend was created. */
typedef struct {
    long screened;           /* tokens picked from the screened head */
    long cand_sum;           /* rows computed exactly over those tokens */
    int cand_max;
    long fallback_setting;   /* sample() calls the screen could not serve: sampler settings that
                              * look at every logit (top-k off), no screen, or turned off */
    long fallback_nonfinite; /* a bound was not finite (NaN/inf weights or activations) */
    long fallback_cap;       /* too many candidates (flat logits) */
    long full;               /* whole heads computed (logits(), fallbacks) */
    double prep_s;           /* seconds spent at creation on the int8 table and the bounds */
} CpuScreenStats;
/* Copies the counters; returns 1 if the backend screens its lm_head, 0 if not (int8 or f32
 * head asked, --mmap, memory short, or InferOptions.lm_head_full). */
int backend_cpu_screen_stats(void *b, CpuScreenStats *st);
/* 1: every token's head is computed whole from now on (benchmarks compare both ways on one
 * backend); 0: screened again where the backend can. */
void backend_cpu_set_full_head(void *b, int full);
/* The lm_head's input of the last token evaluated (the normed final hidden vector, dim
 * floats), or NULL before the first eval: tests check the screen's bound against it. */
const float *backend_cpu_lm_input(void *b);

/* Bytes of memory the process can still take without swapping (MemAvailable, lowered to a
 * cgroup v2 limit and to ulimit -v), or 0 when unknown. The backend refuses a context whose
 * KV cache would not fit in it. */
uint64_t backend_cpu_mem_available(void);

#endif
