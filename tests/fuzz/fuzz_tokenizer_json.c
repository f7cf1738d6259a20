/* libFuzzer target: tokenizer.json reading (tokenizer_load_json through a memfd path), then a
 * short encode of fixed text with whatever tokenizer came out. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "infer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz-tokenizer", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        Err err;
        Tokenizer *t = tokenizer_load_json(path, &err);
        if (t) {
            static const char text[] = "Hello world! read_file(x) 12345 \xc3\xa9t\xc3\xa9 <|eot_id|>";
            int32_t *ids = NULL;
            size_t n = 0;
            if (tokenizer_encode(t, text, sizeof text - 1, &ids, &n, &err) == 0) free(ids);
            tokenizer_free(t);
        }
    }
    close(fd);
    return 0;
}
