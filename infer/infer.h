/* Infer: one Model running on one backend (CPU or CUDA) with its KV cache and scratch buffers,
 * all sized once at creation for the context length: evaluation allocates nothing and does no
 * I/O. Not thread-safe: one Infer belongs to one thread (the engine thread). */
#ifndef BN_INFER_H
#define BN_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"
#include "infer/model.h"
#include "infer/sampler.h"

typedef enum { BACKEND_AUTO = 0, BACKEND_CPU, BACKEND_CUDA } BackendKind;

typedef struct {
    BackendKind backend;   /* AUTO: CUDA when a device is present, else CPU */
    int threads;           /* CPU threads; 0 = all cores */
    int ctx;               /* KV cache length; 0 = the model's context length */
    int lm_head_int8;      /* int8 lm_head (per-row scales, made at load); 0 = the head as stored */
    int lm_head_full;      /* float lm_head (both backends): 1 = compute every row each token;
                            * 0 = the screened exact head (an int8 copy bounds every row; only
                            * the rows the sampler can see are computed as stored: the same
                            * tokens for about half the bytes; kernels_cuda.h, kernels_cpu.h):
                            * the bench's baseline and the tests' reference */
    int kv_f32;            /* 1: KV cache in f32 (CPU backend only; AUTO then means CPU): for
                            * comparing with a float32 reference, where the f16 cache's rounding
                            * is the largest difference (README, "Agreement with transformers");
                            * 0 = f16 */
    int weights_map;       /* CPU: 1 = read the weights in place from the model file's mapping;
                            * 0 = copy them onto huge pages when they fit (infer/cpu_weights.h) */
    int decode_plain;      /* CUDA: 1 = never queue a decode step ahead of the host (the bench's
                            * baseline); 0 = decode ahead after a device draw (the same tokens;
                            * infer/backend_cuda.c, "decoding ahead") */
} InferOptions;

typedef struct Infer Infer;

/* One kind of device memory a backend holds (infer_memory): what it is and its bytes. */
typedef struct {
    const char *what;
    size_t bytes;
} InferMemPart;
enum { INFER_MEM_PARTS_MAX = 12 };

/* Backend operations. infer.c dispatches through this table; each backend file defines one. */
typedef struct {
    const char *kind;                      /* "cpu", "cuda" */
    void *(*create)(const Model *m, const InferOptions *o, Err *err);
    void (*destroy)(void *b);
    /* Runs tokens[0..n) at positions pos..pos+n-1 (prefill in batches when n > 1), appending
     * to the KV cache. If all_logits is non-NULL it receives n * vocab logits; the logits of
     * the last token are always kept for logits()/sample(). */
    int (*eval)(void *b, const int32_t *tokens, int n, int pos, float *all_logits, Err *err);
    const float *(*logits)(void *b);       /* host copy of the last token's logits */
    /* Optional: picks the next token on the device (greedy, or whatever it supports) and
     * returns 1, or returns 0 to let the host sampler run on logits(). */
    int (*sample)(void *b, Sampler *s, int32_t *tok, Err *err);
    void (*describe)(void *b, char *buf, int cap);  /* "CPU, 2 threads, AVX2" / "CUDA: NVIDIA H100" */
    /* 1: eval() of one token only queues the work and returns; logits()/sample() wait for it.
     * The caller may then do host work (detokenize, hand out the previous token) while the
     * device computes. 0: eval() returns when the work is done (the CPU backend). */
    int eval_queues;
    /* Optional: the device memory the backend holds, by kind, into parts[0..cap); returns the
     * number of parts (NULL: a backend that holds none). */
    int (*memory)(void *b, InferMemPart *parts, int cap);
} BackendOps;

extern const BackendOps backend_cpu_ops;
#ifdef BITNET_HAVE_CUDA
extern const BackendOps backend_cuda_ops;
#endif

Infer *infer_create(const Model *m, const InferOptions *o, Err *err);
void infer_destroy(Infer *inf);
int infer_eval(Infer *inf, const int32_t *tokens, int n, int pos, float *all_logits, Err *err);
const float *infer_logits(Infer *inf);
int infer_sample(Infer *inf, Sampler *s, int32_t *tok, Err *err);
/* 1 when infer_eval of one token returns before the work is done (BackendOps.eval_queues). */
int infer_eval_queues(const Infer *inf);
int infer_ctx(const Infer *inf);
BackendKind infer_backend(const Infer *inf);
void infer_describe(Infer *inf, char *buf, int cap);
/* The device memory the backend holds, by kind (BackendOps.memory), at most cap parts; returns
 * their number, 0 for a backend without device memory. */
int infer_memory(Infer *inf, InferMemPart *parts, int cap);

/* CPUs this process may run on (at least 1): more CPU threads than this only wait for each
 * other. */
int infer_cpu_count(void);

#endif
