/* Sampler defaults for builds where infer/sampler.c has not landed yet (the fake engine does
 * not sample). Values from infer/sampler.h. */
#include "infer/sampler.h"

SamplerParams sampler_params_default(void) {
    SamplerParams p = {0.7f, 40, 0.95f, 0.05f, 1.1f, 64, 0, 1024};
    return p;
}
