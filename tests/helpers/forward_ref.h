/* A plain scalar BitNet b1.58 forward pass (one token at a time, _ref kernels only), the
 * oracle for the CPU backend's fast forward. See forward_ref.c. */
#ifndef BN_TEST_FORWARD_REF_H
#define BN_TEST_FORWARD_REF_H
#include "infer/model.h"

typedef struct RefForward RefForward;
RefForward *ref_forward_create(const Model *m, int ctx, int kv_f16);
void ref_forward_free(RefForward *r);
/* Runs token at position pos (positions must come in order from 0) and writes vocab logits. */
void ref_forward_step(RefForward *r, int token, int pos, float *logits);
#endif
