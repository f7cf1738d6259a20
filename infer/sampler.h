/* Token sampling over host logits: greedy, temperature, top-k, top-p, min-p, repetition
 * penalty, seeded RNG (same seed + same settings + same backend = same text). */
#ifndef BN_SAMPLER_H
#define BN_SAMPLER_H

#include <stdint.h>

#include "infer/sampler_params.h"

typedef struct Sampler Sampler;
Sampler *sampler_create(const SamplerParams *p, int n_vocab);
void sampler_free(Sampler *s);
void sampler_reset(Sampler *s, const SamplerParams *p);
/* Records a token in the penalty window (prompt and generated tokens alike). */
void sampler_accept(Sampler *s, int32_t tok);
/* Picks a token; may modify logits in place. */
int32_t sampler_sample(Sampler *s, float *logits, int n_vocab);
const SamplerParams *sampler_params(const Sampler *s);

/* For a device sampler that draws what sampler_sample() would from the same logits
 * (infer/backend_cuda.c): the distinct ids of the penalty window, ascending, into ids[0..cap)
 * (returns their count: 0 when the penalty is off, -1 when more than cap); the uniform that the
 * next draw would use, without consuming it; and consuming it, which the caller does exactly
 * when the draw happened (sampler_sample() draws once per call that reaches its final draw). */
int sampler_penalty_ids(Sampler *s, int32_t *ids, int cap);
double sampler_peek_uniform(const Sampler *s);
void sampler_skip_uniform(Sampler *s);
/* And for a device that draws several steps ahead of the host (kernels_cuda.h, KcudaDrawState):
 * what one draw carries to the next, in the sampler's own layout: the RNG's four words, the
 * penalty window as a ring (*cap slots, *n used, the oldest at *head) copied into
 * window[0..*cap). Returns 0, or -1 when the window is longer than max (nothing copied). The
 * device then repeats sampler_skip_uniform and sampler_accept after each draw, and the host does
 * the same when it takes the token, so both stay equal. */
int sampler_draw_state(const Sampler *s, uint64_t rng[4], int32_t *window, int max, int *cap, int *n, int *head);

#endif
