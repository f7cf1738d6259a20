/* Small helpers that tests and benchmarks share (header-only, like check.h): a monotonic clock,
 * reading a whole file, and reading the space-separated numbers of the reference files. */
#ifndef BN_TEST_UTIL_H
#define BN_TEST_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The whole file, NUL-terminated (binary files may hold NULs: *n is the length); NULL when it
 * cannot be opened or memory runs out. Free with free(). */
static inline char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0, got;
    char *b = malloc(cap + 1);
    while (b && (got = fread(b + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *nb = realloc(b, (cap *= 2) + 1);
            if (!nb) free(b);
            b = nb;
        }
    }
    fclose(f);
    if (!b) return NULL;
    b[len] = 0;
    *n = len;
    return b;
}

/* Up to max integers (floats) from the space-separated text at p; returns how many. */
static inline int read_ints(const char *p, int *out, int max) {
    int n = 0;
    char *end;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p || n >= max) break;
        out[n++] = (int)v;
        p = end;
    }
    return n;
}

static inline int read_floats(const char *p, float *out, int max) {
    int n = 0;
    char *end;
    for (;;) {
        float v = strtof(p, &end);
        if (end == p || n >= max) break;
        out[n++] = v;
        p = end;
    }
    return n;
}

#endif
