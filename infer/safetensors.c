/* safetensors reader: see safetensors.h. The JSON header is parsed with jansson; every number
 * taken from it is range-checked before any pointer is formed. */
#include "infer/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_N_DTYPES] = {
    [ST_F64] = {"F64", 8},  [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I64] = {"I64", 8},  [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},  [ST_I8] = {"I8", 1},     [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_U16] = {"U16", 2},  [ST_U32] = {"U32", 4},
    [ST_U64] = {"U64", 8},  [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(StDtype t) { return (unsigned)t < ST_N_DTYPES ? dtypes[t].name : "?"; }
size_t st_dtype_size(StDtype t) { return (unsigned)t < ST_N_DTYPES ? dtypes[t].size : 0; }

static int push_tensor(StSet *set, StTensor *t, Err *err) {
    if (set->n_tensors == set->cap_tensors) {
        size_t cap = set->cap_tensors ? set->cap_tensors * 2 : 64;
        StTensor *n = realloc(set->tensors, cap * sizeof *n);
        if (!n) return err_set(err, "out of memory");
        set->tensors = n;
        set->cap_tensors = cap;
    }
    set->tensors[set->n_tensors++] = *t;
    return 0;
}

static int get_u64(json_t *j, uint64_t *out) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return -1;
    *out = (uint64_t)json_integer_value(j);
    return 0;
}

typedef struct {
    uint64_t b, e;
    size_t idx;
} Span;

static int span_cmp(const void *x, const void *y) {
    const Span *a = x, *b = y;
    return a->b < b->b ? -1 : a->b > b->b ? 1 : (a->e > b->e) - (a->e < b->e);
}

/* No two tensors of one file may share bytes (a hostile header could otherwise alias one
 * tensor's data as another's; the GGUF reader refuses the same). Empty tensors take no bytes. */
static int check_overlap(StSet *set, size_t first, const uint8_t *base, const char *name, Err *err) {
    const size_t n = set->n_tensors - first;
    if (n < 2) return 0;
    Span *sp = malloc(n * sizeof *sp);
    if (!sp) return err_set(err, "%s: out of memory", name);
    size_t k = 0;
    for (size_t i = first; i < set->n_tensors; i++) {
        const StTensor *t = &set->tensors[i];
        if (!t->nbytes) continue;
        const uint64_t b = (uint64_t)(t->data - base);
        sp[k++] = (Span){b, b + t->nbytes, i};
    }
    qsort(sp, k, sizeof *sp, span_cmp);
    int rc = 0;
    for (size_t i = 1; i < k && !rc; i++)
        if (sp[i].b < sp[i - 1].e)
            rc = err_set(err, "%s: tensors \"%.80s\" and \"%.80s\" overlap (data_offsets [%llu, %llu] "
                              "and [%llu, %llu])", name, set->tensors[sp[i - 1].idx].name,
                         set->tensors[sp[i].idx].name, (unsigned long long)sp[i - 1].b,
                         (unsigned long long)sp[i - 1].e, (unsigned long long)sp[i].b,
                         (unsigned long long)sp[i].e);
    free(sp);
    return rc;
}

int st_parse(StSet *set, int file, const void *data, size_t size, const char *name, Err *err) {
    const uint8_t *base = data;
    if (size < 8) return err_set(err, "%s: not a safetensors file (only %zu bytes)", name, size);
    uint64_t hlen;
    memcpy(&hlen, base, 8);
    if (hlen > size - 8)
        return err_set(err, "%s: not a safetensors file or truncated (header length %llu, file %zu "
                            "bytes)", name, (unsigned long long)hlen, size);
    if (hlen > ST_MAX_HEADER)
        return err_set(err, "%s: safetensors header of %llu bytes exceeds the limit", name,
                       (unsigned long long)hlen);
    if (hlen < 2 || base[8] != '{')
        return err_set(err, "%s: not a safetensors file (header is not a JSON object)", name);
    json_error_t je;
    json_t *root = json_loadb((const char *)base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) return err_set(err, "%s: bad safetensors header: %s (at byte %d)", name, je.text,
                              je.position + 8);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(err, "%s: safetensors header is not a JSON object", name);
    }
    const uint64_t data_start = 8 + hlen, data_size = size - data_start;
    const char *key;
    json_t *val;
    size_t first = set->n_tensors;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        StTensor t = {0};
        t.file = file;
        json_t *dt = json_object_get(val, "dtype"), *sh = json_object_get(val, "shape"),
               *off = json_object_get(val, "data_offsets");
        if (!json_is_object(val) || !json_is_string(dt) || !json_is_array(sh) ||
            !json_is_array(off) || json_array_size(off) != 2) {
            err_set(err, "%s: tensor \"%.80s\": entry needs dtype, shape and data_offsets", name, key);
            goto fail;
        }
        t.dtype = ST_N_DTYPES;
        for (int i = 0; i < ST_N_DTYPES; i++)
            if (!strcmp(json_string_value(dt), dtypes[i].name)) t.dtype = (StDtype)i;
        if (t.dtype == ST_N_DTYPES) {
            err_set(err, "%s: tensor \"%.80s\" has unknown dtype \"%.20s\"", name, key,
                    json_string_value(dt));
            goto fail;
        }
        if (json_array_size(sh) > ST_MAX_DIMS) {
            err_set(err, "%s: tensor \"%.80s\" has too many dimensions", name, key);
            goto fail;
        }
        t.n_dims = (int)json_array_size(sh);
        t.n_elements = 1;
        for (int d = 0; d < t.n_dims; d++) {
            if (get_u64(json_array_get(sh, (size_t)d), &t.shape[d]) ||
                t.shape[d] > ((uint64_t)1 << 40) ||
                (t.shape[d] && t.n_elements > ((uint64_t)1 << 50) / t.shape[d])) {
                err_set(err, "%s: tensor \"%.80s\" has an invalid shape", name, key);
                goto fail;
            }
            t.n_elements *= t.shape[d];
        }
        uint64_t b, e;
        if (get_u64(json_array_get(off, 0), &b) || get_u64(json_array_get(off, 1), &e) || b > e) {
            err_set(err, "%s: tensor \"%.80s\" has invalid data_offsets", name, key);
            goto fail;
        }
        t.nbytes = t.n_elements * dtypes[t.dtype].size;
        if (e - b != t.nbytes) {
            err_set(err, "%s: tensor \"%.80s\": data_offsets span %llu bytes but %s shape needs %llu",
                    name, key, (unsigned long long)(e - b), dtypes[t.dtype].name,
                    (unsigned long long)t.nbytes);
            goto fail;
        }
        if (e > data_size) {
            err_set(err, "%s: tensor \"%.80s\" data lies outside the file (truncated?)", name, key);
            goto fail;
        }
        t.data = base + data_start + b;
        t.name = strdup(key);
        if (!t.name || push_tensor(set, &t, err)) {
            free(t.name);
            err_set(err, "%s: out of memory", name);
            goto fail;
        }
    }
    json_decref(root);
    if (check_overlap(set, first, base + data_start, name, err)) goto fail_tensors;
    return 0;
fail:
    json_decref(root);
fail_tensors:
    for (size_t i = first; i < set->n_tensors; i++) free(set->tensors[i].name);
    set->n_tensors = first;
    return -1;
}

int st_open_file(StSet *set, const char *path, Err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    if (len < 8) {
        close(fd);
        return err_set(err, "%s: not a safetensors file (only %zu bytes)", path, len);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return err_set(err, "%s: cannot map: %s", path, strerror(e));
    StFile *nf = realloc(set->files, (size_t)(set->n_files + 1) * sizeof *nf);
    if (!nf) {
        munmap(map, len);
        return err_set(err, "out of memory");
    }
    set->files = nf;
    StFile *f = &set->files[set->n_files];
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->map = map;
    f->map_len = len;
    set->n_files++;
    if (st_parse(set, set->n_files - 1, map, len, path, err)) return -1; /* st_close unmaps */
    return 0;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A shard name from the index must be a plain file name in the directory. */
static int plain_name(const char *s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\') && strlen(s) < 256;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Hash index over all tensor names; a name in two shards is an error. */
static int build_index(StSet *set, const char *dir, Err *err) {
    size_t cap = 16;
    while (cap < set->n_tensors * 2) cap *= 2;
    set->slots = malloc(cap * sizeof *set->slots);
    if (!set->slots) return err_set(err, "out of memory");
    memset(set->slots, 0xff, cap * sizeof *set->slots);
    set->n_slots = cap;
    for (size_t i = 0; i < set->n_tensors; i++) {
        size_t h = name_hash(set->tensors[i].name) & (cap - 1);
        while (set->slots[h] >= 0) {
            if (!strcmp(set->tensors[set->slots[h]].name, set->tensors[i].name))
                return err_set(err, "%s: tensor %.80s appears in two shards", dir, set->tensors[i].name);
            h = (h + 1) & (cap - 1);
        }
        set->slots[h] = (int64_t)i;
    }
    return 0;
}

static int open_dir_files(StSet *set, const char *dir, Err *err);

int st_open_dir(StSet *set, const char *dir, Err *err) {
    if (open_dir_files(set, dir, err)) return -1;
    return set->slots ? 0 : build_index(set, dir, err);
}

static int open_dir_files(StSet *set, const char *dir, Err *err) {
    char p[1200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    struct stat st;
    /* present but not a regular file (a FIFO, a link to /dev/zero, a directory): named as such
     * rather than reported missing */
    if (stat(p, &st) == 0) return st_open_file(set, p, err);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    if (stat(p, &st) == 0 && !S_ISREG(st.st_mode)) return err_set(err, "%s: not a regular file", p);
    if (!file_exists(p))
        return err_set(err, "%s: no model.safetensors or model.safetensors.index.json", dir);
    json_error_t je;
    /* file_exists: a regular file; a FIFO would block json_load_file */
    json_t *idx = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
    if (!idx) return err_set(err, "%s: %s (line %d)", p, je.text, je.line);
    json_t *wm = json_object_get(idx, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        json_decref(idx);
        return err_set(err, "%s: no weight_map object", p);
    }
    const char *key;
    json_t *v;
    /* Open each distinct shard once, in order of first appearance. */
    int rc = 0;
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v) || !plain_name(json_string_value(v))) {
            rc = err_set(err, "%s: weight_map entry \"%.80s\" is not a plain file name", p, key);
            break;
        }
        char sp[1200];
        snprintf(sp, sizeof sp, "%s/%s", dir, json_string_value(v));
        int seen = 0;
        for (int i = 0; i < set->n_files; i++)
            if (!strcmp(set->files[i].path, sp)) seen = 1;
        if (seen) continue;
        if (set->n_files >= 1024) {
            rc = err_set(err, "%s: too many shards", p);
            break;
        }
        if (!file_exists(sp)) {
            rc = err_set(err, "%s: shard %s named in the index is missing", dir, json_string_value(v));
            break;
        }
        if ((rc = st_open_file(set, sp, err))) break;
    }
    /* Every indexed tensor must be in the shard the index names. */
    if (!rc) rc = build_index(set, dir, err);
    if (!rc) {
        json_object_foreach(wm, key, v) {
            const StTensor *t = st_find(set, key);
            char sp[1200];
            snprintf(sp, sizeof sp, "%s/%s", dir, json_string_value(v));
            if (!t || strcmp(set->files[t->file].path, sp)) {
                rc = err_set(err, "%s: tensor %.80s is not in shard %s as the index says", dir, key,
                             json_string_value(v));
                break;
            }
        }
    }
    json_decref(idx);
    if (rc) return -1;
    return 0;
}

void st_close(StSet *set) {
    if (!set) return;
    for (size_t i = 0; i < set->n_tensors; i++) free(set->tensors[i].name);
    free(set->tensors);
    for (int i = 0; i < set->n_files; i++)
        if (set->files[i].map) munmap(set->files[i].map, set->files[i].map_len);
    free(set->files);
    free(set->slots);
    memset(set, 0, sizeof *set);
}

const StTensor *st_find(const StSet *set, const char *name) {
    if (set->slots) {
        size_t h = name_hash(name) & (set->n_slots - 1);
        while (set->slots[h] >= 0) {
            if (!strcmp(set->tensors[set->slots[h]].name, name)) return &set->tensors[set->slots[h]];
            h = (h + 1) & (set->n_slots - 1);
        }
        return NULL;
    }
    for (size_t i = 0; i < set->n_tensors; i++)
        if (!strcmp(set->tensors[i].name, name)) return &set->tensors[i];
    return NULL;
}
