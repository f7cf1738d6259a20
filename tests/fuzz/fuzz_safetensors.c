/* libFuzzer target: the safetensors header parser (JSON via jansson + every bound check). */
#include <stdint.h>
#include <stdio.h>

#include "infer/safetensors.h"

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    StSet set = {0};
    Err err;
    if (st_parse(&set, 0, data, size, "fuzz.safetensors", &err) == 0) {
        uint64_t acc = 0;
        for (size_t i = 0; i < set.n_tensors; i++)
            if (set.tensors[i].nbytes)
                acc += set.tensors[i].data[0] + set.tensors[i].data[set.tensors[i].nbytes - 1];
        if (set.n_tensors) acc += st_find(&set, set.tensors[set.n_tensors - 1].name) != NULL;
        sink = acc;
    }
    st_close(&set);
    return 0;
}
