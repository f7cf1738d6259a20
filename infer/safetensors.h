/* safetensors reader over a read-only mmap, single files and sharded sets.
 *
 * File layout: u64 little-endian header length H, then H bytes of JSON
 *   {"NAME": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {...}}
 * then the data section; offsets are relative to its start (8 + H). Every entry is checked:
 * known dtype, sane shape, end - begin == elements * dtype size, inside the file, no duplicate
 * names (JSON_REJECT_DUPLICATES). Tensors point into the mapping. */
#ifndef BN_SAFETENSORS_H
#define BN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"

typedef enum {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_U16,
    ST_U32, ST_U64, ST_F8_E4M3, ST_F8_E5M2, ST_N_DTYPES
} StDtype;

enum { ST_MAX_DIMS = 8, ST_MAX_HEADER = 100 << 20 };

typedef struct {
    char *name;                   /* malloc'ed */
    StDtype dtype;
    int n_dims;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t n_elements;
    uint64_t nbytes;
    const uint8_t *data;          /* into the mapping of its file */
    int file;                     /* index into StSet.files */
} StTensor;

typedef struct {
    char path[1024];
    void *map;
    size_t map_len;
} StFile;

typedef struct {
    StFile *files;
    int n_files;
    StTensor *tensors;
    size_t n_tensors, cap_tensors;
    int64_t *slots;               /* name hash index, built by st_open_dir */
    size_t n_slots;
} StSet;

/* Parses one buffer (kept alive by the caller) and appends its tensors to set, tagged `file`. */
int st_parse(StSet *set, int file, const void *data, size_t size, const char *name, Err *err);
/* Maps and parses one file, appending to set. */
int st_open_file(StSet *set, const char *path, Err *err);
/* Opens a Hugging Face model directory's weights: model.safetensors, or the shards named by
 * model.safetensors.index.json (weight_map). Checks that every indexed tensor is present in
 * the shard that the index names. */
int st_open_dir(StSet *set, const char *dir, Err *err);
/* Frees the tables; unmaps files whose map is still set (set .map = NULL to hand it over). */
void st_close(StSet *set);

const StTensor *st_find(const StSet *set, const char *name);
const char *st_dtype_name(StDtype t);
size_t st_dtype_size(StDtype t);

#endif
