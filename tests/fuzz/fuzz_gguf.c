/* libFuzzer target: the GGUF reader, then (when the header parses) the whole model loader on
 * the same bytes through a memfd, so tensor-level checks, TQ/float conversions and the
 * tokenizer metadata path are fuzzed too. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "infer/gguf.h"
#include "infer/model.h"

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    GgufFile g;
    Err err;
    if (gguf_parse(&g, data, size, "fuzz.gguf", &err)) return 0;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < g.n_kv; i++) {
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(g.kv[i].key.len < 255 ? g.kv[i].key.len : 255),
                 g.kv[i].key.ptr);
        int64_t v;
        double d;
        GgufStr s;
        if (!gguf_get_int(&g, key, &v, NULL)) acc += (uint64_t)v;
        if (!gguf_get_float(&g, key, &d, NULL)) acc += (uint64_t)(d == d);
        if (!gguf_get_str(&g, key, &s, NULL) && s.len) acc += (uint8_t)s.ptr[s.len - 1];
        uint64_t n;
        const char **p;
        size_t *l;
        if (!gguf_get_str_array(&g, key, &n, &p, &l, NULL)) {
            for (uint64_t j = 0; j < n; j++) acc += l[j] ? (uint8_t)p[j][l[j] - 1] : 0;
            free(p);
            free(l);
        }
        for (uint64_t j = 0; j < g.kv[i].arr_n && j < 64; j++)
            if (!gguf_get_arr_int(&g.kv[i], j, &v)) acc += (uint64_t)v;
    }
    for (uint64_t i = 0; i < g.n_tensors; i++)
        acc += g.tensors[i].data[0] + g.tensors[i].data[g.tensors[i].nbytes - 1];
    sink = acc;
    gguf_close(&g);

    int fd = memfd_create("fuzz-gguf", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        Model m;
        if (model_load(&m, path, NULL, &err) == 0) model_free(&m);
    }
    close(fd);
    return 0;
}
