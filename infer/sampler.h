/* Token sampling over host logits: greedy, temperature, top-k, top-p, min-p, repetition
 * penalty, seeded RNG (same seed + same settings + same backend = same text). */
#ifndef BN_SAMPLER_H
#define BN_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature;     /* 0 = greedy */
    int top_k;             /* 0 = off */
    float top_p;           /* 1 = off */
    float min_p;           /* 0 = off */
    float repeat_penalty;  /* 1 = off */
    int repeat_last_n;     /* window for the penalty */
    uint64_t seed;
    int max_tokens;        /* reply length limit */
} SamplerParams;

/* Defaults: temperature 0.7, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.1 over 64,
 * seed from the clock, max_tokens 1024. */
SamplerParams sampler_params_default(void);

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

#endif
