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

/* Bytes of memory the process can still take without swapping (MemAvailable, lowered to a
 * cgroup v2 limit and to ulimit -v), or 0 when unknown. The backend refuses a context whose
 * KV cache would not fit in it. */
uint64_t backend_cpu_mem_available(void);

#endif
