/* The sampling settings as a value: what the command line, the slash commands, the history and
 * the sampler (infer/sampler.h) all pass around. It depends on nothing, so the UI, which shows
 * the settings, may see it (the one infer/ header besides utf8.h that it does). */
#ifndef BN_SAMPLER_PARAMS_H
#define BN_SAMPLER_PARAMS_H

#include <stdint.h>

/* Bits of SamplerParams.set: the settings that hold a known value (given on the command line
 * or by a slash command, read from a stored session, or a default in use); a clear bit means
 * "not given" and its field is not to be read. The sampler reads every value and ignores the
 * mask; the app overlays one source on another with it (sampler_params_merge) and the store
 * writes only the settings whose bit is set. repeat_last_n has no bit: only the default sets it. */
enum {
    SAMPLER_SET_TEMPERATURE = 1u << 0,
    SAMPLER_SET_TOP_K = 1u << 1,
    SAMPLER_SET_TOP_P = 1u << 2,
    SAMPLER_SET_MIN_P = 1u << 3,
    SAMPLER_SET_REPEAT_PENALTY = 1u << 4,
    SAMPLER_SET_SEED = 1u << 5,
    SAMPLER_SET_MAX_TOKENS = 1u << 6,
    SAMPLER_SET_ALL = (1u << 7) - 1,
};

/* The one type for sampling settings, from the command line to the engine and the history. A
 * zeroed value is "nothing given". */
typedef struct {
    float temperature;     /* 0 = greedy */
    int top_k;             /* 0 = off */
    float top_p;           /* 1 = off */
    float min_p;           /* 0 = off */
    float repeat_penalty;  /* 1 = off */
    int repeat_last_n;     /* window for the penalty */
    uint64_t seed;
    int max_tokens;        /* reply length limit */
    unsigned set;          /* SAMPLER_SET_* bits */
} SamplerParams;

/* Defaults: temperature 0.7, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.1 over 64,
 * seed from the clock, max_tokens 1024; set = SAMPLER_SET_ALL. */
SamplerParams sampler_params_default(void);
/* Copies into dst each setting whose bit is set in src, and sets that bit in dst. */
void sampler_params_merge(SamplerParams *dst, const SamplerParams *src);

#endif
