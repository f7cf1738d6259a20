/* Weak stand-ins for symbols of other areas that a test binary reaches only through
 * model_free: when the real definition is linked in, it wins; until then the tests link.
 * Random models have no tokenizer, so the stand-in is never asked to free one. */
#include <stddef.h>

#include "infer/tokenizer.h"

__attribute__((weak)) void tokenizer_free(Tokenizer *t) { (void)t; }
