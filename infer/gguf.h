/* GGUF reader (versions 2 and 3, little endian) over a read-only mmap.
 *
 * File layout: magic "GGUF", u32 version, u64 tensor count, u64 key/value count; then the
 * key/value table (string key, u32 value type, value), then the tensor table (string name,
 * u32 n_dims, u64 ne[n_dims] with ne[0] the contiguous dimension, u32 ggml type, u64 offset
 * relative to the data section); the data section starts at the end of the tensor table
 * rounded up to general.alignment (default 32). Strings are u64 length + bytes (no NUL).
 *
 * Everything is checked against the file size with overflow-safe arithmetic before use, so a
 * truncated or hostile file gives one error line naming the file and the problem, never a read
 * outside the mapping. The parsed tables point into the mapping (no copies). */
#ifndef BN_GGUF_H
#define BN_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"

typedef enum {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4,
    GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9,
    GGUF_UINT64 = 10, GGUF_INT64 = 11, GGUF_FLOAT64 = 12, GGUF_N_TYPES
} GgufValueType;

/* ggml tensor types this project reads or needs to size. I2_S (36) is the type of Microsoft's
 * BitNet fork (mainline ggml gave id 36 to a type it later removed). */
enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_I8 = 24, GGML_I16 = 25, GGML_I32 = 26, GGML_I64 = 27,
    GGML_F64 = 28, GGML_BF16 = 30, GGML_TQ1_0 = 34, GGML_TQ2_0 = 35, GGML_I2_S = 36
};

enum {
    GGUF_MAX_DIMS = 4,
    GGUF_MAX_TENSORS = 1 << 16,
    GGUF_MAX_KV = 1 << 16,
    GGUF_MAX_KEY = 1 << 16,        /* bytes in a key or tensor name */
    GGUF_MAX_ALIGNMENT = 1 << 16,
    GGUF_DEFAULT_ALIGNMENT = 32,
};

typedef struct {
    const char *ptr; /* not NUL-terminated; points into the mapping */
    uint64_t len;
} GgufStr;

typedef struct {
    GgufStr key;
    uint32_t type;        /* GgufValueType */
    uint32_t arr_type;    /* element type when type == GGUF_ARRAY */
    uint64_t arr_n;       /* element count when type == GGUF_ARRAY */
    const uint8_t *val;   /* scalar value bytes, string (u64 len + bytes), or first element */
    uint64_t val_bytes;   /* bytes the value occupies in the file */
} GgufKV;

typedef struct {
    GgufStr name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];  /* unused dims are 1 */
    uint32_t type;               /* ggml type id */
    uint64_t offset;             /* relative to the data section */
    uint64_t nbytes;
    const uint8_t *data;         /* into the mapping */
} GgufTensor;

typedef struct {
    char path[1024];
    const uint8_t *base;
    size_t size;
    void *map;              /* non-NULL when gguf_open mapped the file */
    size_t map_len;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    GgufKV *kv;
    GgufTensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;
    int64_t *kv_slots, *t_slots;   /* hash indexes for the lookups */
    uint64_t kv_cap, t_cap;
} GgufFile;

/* Maps and parses a file. On error returns -1 with "PATH: problem" in err and *g zeroed. */
int gguf_open(GgufFile *g, const char *path, Err *err);
/* Parses a buffer the caller keeps alive (used by the fuzzer and by gguf_open). */
int gguf_parse(GgufFile *g, const void *data, size_t size, const char *name, Err *err);
/* Frees the tables; unmaps unless the mapping was handed over (g->map set to NULL). */
void gguf_close(GgufFile *g);

/* Bytes a tensor of `type` with these dims occupies; 0 (with err) for an unknown type or a
 * shape the type cannot hold. */
uint64_t gguf_tensor_nbytes(uint32_t type, const uint64_t ne[GGUF_MAX_DIMS], Err *err);
const char *gguf_type_name(uint32_t ggml_type);

const GgufKV *gguf_find_kv(const GgufFile *g, const char *key);
const GgufTensor *gguf_find_tensor(const GgufFile *g, const char *name);

/* Typed getters: return 0 and set *out, or -1 (missing key or a value of another kind; err
 * says which). Integer getters accept any integer type whose value fits. */
int gguf_get_int(const GgufFile *g, const char *key, int64_t *out, Err *err);
int gguf_get_float(const GgufFile *g, const char *key, double *out, Err *err);
int gguf_get_bool(const GgufFile *g, const char *key, int *out, Err *err);
/* Borrowed string (not NUL-terminated). */
int gguf_get_str(const GgufFile *g, const char *key, GgufStr *out, Err *err);
/* Copies a string value into buf (NUL-terminated; fails if it does not fit or contains NUL). */
int gguf_get_cstr(const GgufFile *g, const char *key, char *buf, size_t cap, Err *err);

/* Array access. A string array is returned as malloc'ed pointer/length tables into the mapping
 * (free both with free()). Numeric arrays: element i converted to int64 or double. */
int gguf_get_str_array(const GgufFile *g, const char *key, uint64_t *n, const char ***ptrs,
                       size_t **lens, Err *err);
int gguf_get_arr_int(const GgufKV *kv, uint64_t i, int64_t *out);

#endif
