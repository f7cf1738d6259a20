/* Where the CPU backend reads its weights from. A GGUF model's tensors are used in place from
 * the file's mmap (4 KiB pages); decode streams every ternary matrix and the lm_head once per
 * token, so the CPU backend by default copies them once, at create, into anonymous memory on
 * transparent huge pages (2 MiB), drops its mappings of the copied file pages, and runs on the
 * copy. Buffers that are already anonymous (a converted model, the random bench model) are
 * used as they are. With CPU_WEIGHTS_MAP nothing is copied (the mmap-without-copy promise, for
 * users short of memory). Where the CPU has AVX-512 VNNI the ternary matrices are repacked into
 * the R16 layout (kernels/cpu/kernels_cpu.h) in the same pass instead of being copied as they
 * are. The optional int8 lm_head (per-row scales) lives in the same store.
 * The Model is never changed: the backend runs on a view (a shallow copy of it whose layer
 * table and lm_head point into the store). */
#ifndef BN_CPU_WEIGHTS_H
#define BN_CPU_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"
#include "infer/model.h"

typedef enum {
    CPU_WEIGHTS_AUTO = 0, /* copy file-mapped weights to huge pages when THP and memory allow */
    CPU_WEIGHTS_MAP = 1,  /* use the file mapping as is (no copy) */
} CpuWeightsMode;

/* What the store makes of the lm_head: nothing (the f16 table is read whole every token), the
 * int8 table that replaces it (--lm-head int8), or the int8 table plus the per-row bound
 * constants of the screened exact f16 head (kernels_cpu.h, "the screened exact lm_head"). */
typedef enum { CPU_LM_F16 = 0, CPU_LM_INT8 = 1, CPU_LM_SCREEN = 2 } CpuLmHead;

typedef struct CpuWeights CpuWeights;

typedef struct {
    const Model *view;      /* the model the backend runs on (the original or the view) */
    const int8_t *lm_q;     /* int8 lm_head [vocab][dim], NULL unless requested */
    const float *lm_scale;  /* [vocab] per-row scales of lm_q */
    const float *lm_bound;  /* [vocab] the screen's B_r (lm_head_screen_bound_cpu), NULL unless
                             * CPU_LM_SCREEN was asked for and granted (not with CPU_WEIGHTS_MAP,
                             * which promises no copy, nor when memory is short) */
    double lm_prep_s;       /* seconds spent making lm_q (and lm_bound) */
    const uint8_t *const *r16; /* [n_layers * 7] (q, k, v, o, gate, up, down): each ternary
                                * matrix in the R16 layout, or NULL (use the view's I2_S) */
    size_t copied_bytes;    /* bytes copied into huge-page memory (0: none) */
    size_t r16_bytes;       /* of which repacked into R16 */
    int huge;               /* 1 if the store was advised onto huge pages */
} CpuWeightsInfo;

/* Prepares the weights of m for the CPU backend; lm: what to make of the lm_head (the int8
 * table has lm_head_quant_i8_ref's bytes). n_threads: how many threads may share the copy /
 * quantization. Returns NULL with err set (out of memory). *info describes the result. */
CpuWeights *cpu_weights_create(const Model *m, CpuWeightsMode mode, CpuLmHead lm, int n_threads,
                               CpuWeightsInfo *info, Err *err);
void cpu_weights_free(CpuWeights *w); /* NULL ok */

#endif
