/* GGUF reader: see gguf.h for the layout. Every read goes through a cursor that knows how many
 * bytes remain, so no length taken from the file is trusted before it is checked. */
#include "infer/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- ggml type table ---------------------------------------------------------------------- */

typedef struct {
    const char *name;
    uint32_t block;  /* elements per block */
    uint32_t bytes;  /* bytes per block */
} TypeInfo;

/* Block sizes of the ggml types (public facts of the format). Types not listed are rejected. */
static const TypeInfo *type_info(uint32_t t) {
    static const TypeInfo tab[] = {
        [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},        [2] = {"Q4_0", 32, 18},
        [3] = {"Q4_1", 32, 20},     [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},
        [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 40},     [10] = {"Q2_K", 256, 84},
        [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144},  [13] = {"Q5_K", 256, 176},
        [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},  [16] = {"IQ2_XXS", 256, 66},
        [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
        [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110}, [22] = {"IQ2_S", 256, 82},
        [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},       [25] = {"I16", 1, 2},
        [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},       [28] = {"F64", 1, 8},
        [29] = {"IQ1_M", 256, 56},  [30] = {"BF16", 1, 2},      [34] = {"TQ1_0", 256, 54},
        [35] = {"TQ2_0", 256, 66},
        [36] = {"I2_S", 4, 1},      /* sized specially: n/4 bytes + 32 (the f32 scale + pad) */
    };
    if (t >= sizeof tab / sizeof tab[0] || !tab[t].name) return NULL;
    return &tab[t];
}

const char *gguf_type_name(uint32_t t) {
    const TypeInfo *ti = type_info(t);
    return ti ? ti->name : "unknown";
}

static int mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a && b > UINT64_MAX / a) return -1;
    *out = a * b;
    return 0;
}

uint64_t gguf_tensor_nbytes(uint32_t type, const uint64_t ne[GGUF_MAX_DIMS], Err *err) {
    const TypeInfo *ti = type_info(type);
    if (!ti) {
        err_set(err, "unknown tensor type %u", type);
        return 0;
    }
    uint64_t n = 1;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) {
        if (ne[i] == 0 || mul_u64(n, ne[i], &n) || n > ((uint64_t)1 << 50)) {
            err_set(err, "tensor shape is empty or too large");
            return 0;
        }
    }
    if (ne[0] % ti->block) {
        err_set(err, "%s row length %llu is not a multiple of its block size %u", ti->name,
                (unsigned long long)ne[0], ti->block);
        return 0;
    }
    if (type == GGML_I2_S) return n / 4 + 32;
    return n / ti->block * ti->bytes;
}

/* ---- cursor -------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end, *base;
    const char *name;
    Err *err;
} Cur;

static uint64_t cur_left(const Cur *c) { return (uint64_t)(c->end - c->p); }

static int cur_read(Cur *c, void *dst, uint64_t n, const char *what) {
    if (cur_left(c) < n)
        return err_set(c->err, "%s: truncated file (reading %s at byte %lld)", c->name, what,
                       (long long)(c->p - c->base));
    memcpy(dst, c->p, (size_t)n);
    c->p += n;
    return 0;
}

static int cur_u32(Cur *c, uint32_t *v, const char *what) { *v = 0; return cur_read(c, v, 4, what); }
static int cur_u64(Cur *c, uint64_t *v, const char *what) { *v = 0; return cur_read(c, v, 8, what); }

static int cur_str(Cur *c, GgufStr *s, uint64_t max_len, const char *what) {
    uint64_t len = 0;
    if (cur_u64(c, &len, what)) return -1;
    if (len > cur_left(c))
        return err_set(c->err, "%s: %s length %llu runs past the end of the file", c->name, what,
                       (unsigned long long)len);
    if (len > max_len)
        return err_set(c->err, "%s: %s length %llu exceeds the limit %llu", c->name, what,
                       (unsigned long long)len, (unsigned long long)max_len);
    s->ptr = (const char *)c->p;
    s->len = len;
    c->p += len;
    return 0;
}

static uint64_t scalar_size(uint32_t t) {
    switch (t) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static const char *vtype_name(uint32_t t) {
    static const char *n[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                              "bool", "string", "array", "uint64", "int64", "float64"};
    return t < GGUF_N_TYPES ? n[t] : "unknown";
}

/* Printable prefix of a file string for messages. */
static void str_show(GgufStr s, char *buf, size_t cap) {
    size_t n = 0;
    for (uint64_t i = 0; i < s.len && n + 5 < cap && i < 80; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch >= 32 && ch < 127) buf[n++] = (char)ch;
        else n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", ch);
    }
    if (s.len > 80 && n + 4 < cap) buf[n++] = '.', buf[n++] = '.', buf[n++] = '.';
    buf[n < cap ? n : cap - 1] = 0;
}

/* ---- duplicate detection (open addressing over the strings in the mapping) ------------------- */

static uint64_t str_hash(GgufStr s) {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < s.len; i++) h = (h ^ (unsigned char)s.ptr[i]) * 1099511628211ull;
    return h;
}

static int str_eq(GgufStr a, GgufStr b) { return a.len == b.len && !memcmp(a.ptr, b.ptr, a.len); }

/* Returns the index of an earlier equal string, or -1 after inserting. */
static int64_t set_insert(int64_t *slots, uint64_t cap, const GgufStr *all, int64_t idx) {
    uint64_t h = str_hash(all[idx]) & (cap - 1);
    while (slots[h] >= 0) {
        if (str_eq(all[slots[h]], all[idx])) return slots[h];
        h = (h + 1) & (cap - 1);
    }
    slots[h] = idx;
    return -1;
}

/* Builds the hash index of n strings (kept for lookups) and refuses duplicates. */
static int build_index(const GgufStr *strs, uint64_t n, const char *name, const char *what,
                       int64_t **slots_out, uint64_t *cap_out, Err *err) {
    uint64_t cap = 16;
    while (cap < n * 2) cap *= 2;
    int64_t *slots = malloc(cap * sizeof *slots);
    if (!slots) return err_set(err, "%s: out of memory", name);
    memset(slots, 0xff, cap * sizeof *slots);
    for (uint64_t i = 0; i < n; i++) {
        if (set_insert(slots, cap, strs, (int64_t)i) >= 0) {
            char show[128];
            str_show(strs[i], show, sizeof show);
            free(slots);
            return err_set(err, "%s: duplicate %s \"%s\"", name, what, show);
        }
    }
    *slots_out = slots;
    *cap_out = cap;
    return 0;
}

/* ---- parse --------------------------------------------------------------------------------- */

static int parse_value(Cur *c, GgufKV *kv, GgufStr key) {
    char show[128];
    const uint8_t *start = c->p;
    if (kv->type == GGUF_STRING) {
        GgufStr s;
        if (cur_str(c, &s, UINT64_MAX, "string value")) return -1;
    } else if (kv->type == GGUF_ARRAY) {
        if (cur_u32(c, &kv->arr_type, "array type") || cur_u64(c, &kv->arr_n, "array length"))
            return -1;
        start = c->p;
        if (kv->arr_type == GGUF_ARRAY) {
            str_show(key, show, sizeof show);
            return err_set(c->err, "%s: key \"%s\" holds a nested array (not supported)", c->name,
                           show);
        }
        if (kv->arr_type == GGUF_STRING) {
            /* each element needs at least its 8-byte length */
            if (kv->arr_n > cur_left(c) / 8) {
                str_show(key, show, sizeof show);
                return err_set(c->err, "%s: array \"%s\" claims %llu strings, more than the file holds",
                               c->name, show, (unsigned long long)kv->arr_n);
            }
            for (uint64_t i = 0; i < kv->arr_n; i++) {
                GgufStr s;
                if (cur_str(c, &s, UINT64_MAX, "array string")) return -1;
            }
        } else {
            uint64_t es = scalar_size(kv->arr_type);
            if (!es) {
                str_show(key, show, sizeof show);
                return err_set(c->err, "%s: array \"%s\" has unknown element type %u", c->name, show,
                               kv->arr_type);
            }
            if (kv->arr_n > cur_left(c) / es) {
                str_show(key, show, sizeof show);
                return err_set(c->err, "%s: array \"%s\" of %llu elements runs past the end of the file",
                               c->name, show, (unsigned long long)kv->arr_n);
            }
            c->p += kv->arr_n * es;
        }
    } else {
        uint64_t sz = scalar_size(kv->type);
        if (!sz) {
            str_show(key, show, sizeof show);
            return err_set(c->err, "%s: key \"%s\" has unknown value type %u", c->name, show, kv->type);
        }
        if (cur_left(c) < sz) return err_set(c->err, "%s: truncated file (in a value)", c->name);
        c->p += sz;
    }
    kv->val = start;
    kv->val_bytes = (uint64_t)(c->p - start);
    return 0;
}

typedef struct {
    uint64_t off, end;
    uint64_t idx;
} Span;

static int span_cmp(const void *a, const void *b) {
    const Span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Step 1: magic, version and the two counts, each checked against the limits and against what
 * the file can hold before anything is allocated. */
static int parse_header(GgufFile *g, Cur *c) {
    const char *name = c->name;
    char magic[4];
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0) {
        if (g->size >= 4 && !memcmp(g->base, "FUGG", 4))
            return err_set(c->err, "%s: big-endian GGUF is not supported", name);
        return err_set(c->err, "%s: not a GGUF file (bad magic)", name);
    }
    cur_read(c, magic, 4, "magic");
    if (cur_u32(c, &g->version, "version")) return -1;
    if (g->version == 1)
        return err_set(c->err, "%s: GGUF version 1 is not supported (only 2 and 3)", name);
    if (g->version != 2 && g->version != 3)
        return err_set(c->err, "%s: unsupported GGUF version %u (expected 2 or 3)", name, g->version);
    if (cur_u64(c, &g->n_tensors, "tensor count") || cur_u64(c, &g->n_kv, "key count")) return -1;
    if (g->n_tensors > GGUF_MAX_TENSORS)
        return err_set(c->err, "%s: tensor count %llu exceeds the limit %d", name,
                       (unsigned long long)g->n_tensors, GGUF_MAX_TENSORS);
    if (g->n_kv > GGUF_MAX_KV)
        return err_set(c->err, "%s: key count %llu exceeds the limit %d", name,
                       (unsigned long long)g->n_kv, GGUF_MAX_KV);
    /* A key/value takes at least 12 bytes and a tensor entry at least 24: reject absurd counts
     * before allocating. */
    if (g->n_kv > cur_left(c) / 12 || g->n_tensors > cur_left(c) / 24)
        return err_set(c->err, "%s: truncated file (%llu keys and %llu tensors cannot fit in %zu bytes)",
                       name, (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, g->size);
    return 0;
}

/* Step 2: the key/values (names: scratch of n_kv entries), their index, then the alignment they
 * may set. */
static int parse_kvs(GgufFile *g, Cur *c, GgufStr *names) {
    const char *name = c->name;
    char show[128];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        GgufKV *kv = &g->kv[i];
        if (cur_str(c, &kv->key, GGUF_MAX_KEY, "key")) return -1;
        if (kv->key.len == 0)
            return err_set(c->err, "%s: key %llu is empty", name, (unsigned long long)i);
        if (cur_u32(c, &kv->type, "value type")) return -1;
        if (kv->type >= GGUF_N_TYPES) {
            str_show(kv->key, show, sizeof show);
            return err_set(c->err, "%s: key \"%s\" has unknown value type %u", name, show, kv->type);
        }
        if (parse_value(c, kv, kv->key)) return -1;
        names[i] = kv->key;
    }
    if (build_index(names, g->n_kv, name, "key", &g->kv_slots, &g->kv_cap, c->err)) return -1;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (gguf_find_kv(g, "general.alignment")) {
        int64_t a;
        if (gguf_get_int(g, "general.alignment", &a, NULL) || a <= 0 || a > GGUF_MAX_ALIGNMENT ||
            (a & (a - 1)))
            return err_set(c->err, "%s: general.alignment is not a power of two up to %d", name,
                           GGUF_MAX_ALIGNMENT);
        g->alignment = (uint64_t)a;
    }
    return 0;
}

/* Step 3: the tensor infos (name, shape, type, aligned offset; names: scratch of n_tensors
 * entries) and their index. */
static int parse_tensor_infos(GgufFile *g, Cur *c, GgufStr *names) {
    const char *name = c->name;
    char show[128];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        if (cur_str(c, &t->name, GGUF_MAX_KEY, "tensor name")) return -1;
        str_show(t->name, show, sizeof show);
        if (cur_u32(c, &t->n_dims, "tensor dims")) return -1;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return err_set(c->err, "%s: tensor \"%s\" has %u dimensions (1..%d allowed)", name, show,
                           t->n_dims, GGUF_MAX_DIMS);
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (cur_u64(c, &t->ne[d], "tensor shape")) return -1;
            if (t->ne[d] == 0 || t->ne[d] > ((uint64_t)1 << 40))
                return err_set(c->err, "%s: tensor \"%s\" has an invalid dimension %llu", name, show,
                               (unsigned long long)t->ne[d]);
        }
        if (cur_u32(c, &t->type, "tensor type") || cur_u64(c, &t->offset, "tensor offset"))
            return -1;
        Err e2;
        t->nbytes = gguf_tensor_nbytes(t->type, t->ne, &e2);
        if (!t->nbytes) return err_set(c->err, "%s: tensor \"%s\": %s", name, show, e2.msg);
        if (t->offset % g->alignment)
            return err_set(c->err, "%s: tensor \"%s\" data offset %llu is not aligned to %llu", name,
                           show, (unsigned long long)t->offset, (unsigned long long)g->alignment);
        names[i] = t->name;
    }
    return build_index(names, g->n_tensors, name, "tensor name", &g->t_slots, &g->t_cap, c->err);
}

/* Step 4: the data section starts at the first aligned offset after the header (header_end);
 * every tensor must lie inside the file, and no two may overlap. */
static int place_tensor_data(GgufFile *g, uint64_t header_end, Err *err) {
    const char *name = g->path;
    char show[128];
    g->data_offset = (header_end + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && g->data_offset > g->size)
        return err_set(err, "%s: truncated file (no room for tensor data)", name);
    uint64_t data_size = g->size > g->data_offset ? g->size - g->data_offset : 0;
    Span *sp = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *sp);
    if (!sp) return err_set(err, "%s: out of memory", name);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            str_show(t->name, show, sizeof show);
            /* Figures relative to the data section: an absolute offset could wrap past 2^64 and
             * print as a place inside the file. */
            err_set(err, "%s: tensor \"%s\" data (%llu bytes at data offset %llu) lies outside the "
                         "file, whose data section holds %llu bytes (truncated?)", name, show,
                    (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                    (unsigned long long)data_size);
            free(sp);
            return -1;
        }
        t->data = (const uint8_t *)g->base + g->data_offset + t->offset;
        sp[i] = (Span){t->offset, t->offset + t->nbytes, i};
    }
    qsort(sp, g->n_tensors, sizeof *sp, span_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        if (sp[i].off < sp[i - 1].end) {
            char show2[128];
            str_show(g->tensors[sp[i].idx].name, show, sizeof show);
            str_show(g->tensors[sp[i - 1].idx].name, show2, sizeof show2);
            err_set(err, "%s: tensors \"%s\" and \"%s\" overlap", name, show2, show);
            free(sp);
            return -1;
        }
    }
    free(sp);
    return 0;
}

int gguf_parse(GgufFile *g, const void *data, size_t size, const char *name, Err *err) {
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", name ? name : "(memory)");
    g->base = data;
    g->size = size;
    Cur c = {data, (const uint8_t *)data + size, data, g->path, err};
    if (parse_header(g, &c)) goto fail;
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    GgufStr *names = calloc((g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors) + 1, sizeof *names);
    if (!g->kv || !g->tensors || !names) {
        free(names);
        err_set(err, "%s: out of memory", g->path);
        goto fail;
    }
    const int bad = parse_kvs(g, &c, names) || parse_tensor_infos(g, &c, names);
    free(names);
    if (bad || place_tensor_data(g, (uint64_t)(c.p - (const uint8_t *)data), err)) goto fail;
    return 0;

fail:
    free(g->kv);
    free(g->tensors);
    free(g->kv_slots);
    free(g->t_slots);
    memset(g, 0, sizeof *g);
    return -1;
}

int gguf_open(GgufFile *g, const char *path, Err *err) {
    memset(g, 0, sizeof *g);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(err, "%s: is a directory, not a GGUF file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, "%s: not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        return err_set(err, "%s: file too small to be GGUF (%lld bytes)", path,
                       (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return err_set(err, "%s: cannot map: %s", path, strerror(e));
    if (gguf_parse(g, map, len, path, err)) {
        munmap(map, len);
        return -1;
    }
    g->map = map;
    g->map_len = len;
    return 0;
}

void gguf_close(GgufFile *g) {
    if (!g) return;
    free(g->kv);
    free(g->tensors);
    free(g->kv_slots);
    free(g->t_slots);
    if (g->map) munmap(g->map, g->map_len);
    memset(g, 0, sizeof *g);
}

/* ---- lookup -------------------------------------------------------------------------------- */


static int64_t index_find(const int64_t *slots, uint64_t cap, const char *key, const void *base,
                          size_t stride) {
    if (!slots) return -1;
    GgufStr k = {key, strlen(key)};
    uint64_t h = str_hash(k) & (cap - 1);
    while (slots[h] >= 0) {
        const GgufStr *s = (const GgufStr *)((const char *)base + (size_t)slots[h] * stride);
        if (str_eq(*s, k)) return slots[h];
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

/* The key and name are the first member of GgufKV and GgufTensor: the index walks them by stride. */
const GgufKV *gguf_find_kv(const GgufFile *g, const char *key) {
    int64_t i = index_find(g->kv_slots, g->kv_cap, key, g->kv, sizeof *g->kv);
    return i < 0 ? NULL : &g->kv[i];
}

const GgufTensor *gguf_find_tensor(const GgufFile *g, const char *name) {
    int64_t i = index_find(g->t_slots, g->t_cap, name, g->tensors, sizeof *g->tensors);
    return i < 0 ? NULL : &g->tensors[i];
}

static int scalar_to_int(uint32_t type, const uint8_t *p, int64_t *out) {
    switch (type) {
    case GGUF_UINT8: *out = *p; return 0;
    case GGUF_INT8: *out = (int8_t)*p; return 0;
    case GGUF_BOOL: *out = *p != 0; return 0;
    case GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > INT64_MAX) return -1;
        *out = (int64_t)v;
        return 0;
    }
    case GGUF_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return 0; }
    default: return -1;
    }
}

static const GgufKV *need(const GgufFile *g, const char *key, Err *err) {
    const GgufKV *kv = gguf_find_kv(g, key);
    if (!kv) err_set(err, "%s: missing key %s", g->path, key);
    return kv;
}

int gguf_get_int(const GgufFile *g, const char *key, int64_t *out, Err *err) {
    const GgufKV *kv = need(g, key, err);
    if (!kv) return -1;
    if (kv->type == GGUF_BOOL || scalar_to_int(kv->type, kv->val, out))
        return err_set(err, "%s: key %s is a %s, expected an integer", g->path, key,
                       vtype_name(kv->type));
    return 0;
}

int gguf_get_float(const GgufFile *g, const char *key, double *out, Err *err) {
    const GgufKV *kv = need(g, key, err);
    if (!kv) return -1;
    if (kv->type == GGUF_FLOAT32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
        return 0;
    }
    if (kv->type == GGUF_FLOAT64) {
        memcpy(out, kv->val, 8);
        return 0;
    }
    int64_t i;
    if (kv->type != GGUF_BOOL && !scalar_to_int(kv->type, kv->val, &i)) {
        *out = (double)i;
        return 0;
    }
    return err_set(err, "%s: key %s is a %s, expected a number", g->path, key, vtype_name(kv->type));
}

int gguf_get_bool(const GgufFile *g, const char *key, int *out, Err *err) {
    const GgufKV *kv = need(g, key, err);
    if (!kv) return -1;
    if (kv->type != GGUF_BOOL)
        return err_set(err, "%s: key %s is a %s, expected a bool", g->path, key, vtype_name(kv->type));
    *out = kv->val[0] != 0;
    return 0;
}

int gguf_get_str(const GgufFile *g, const char *key, GgufStr *out, Err *err) {
    const GgufKV *kv = need(g, key, err);
    if (!kv) return -1;
    if (kv->type != GGUF_STRING)
        return err_set(err, "%s: key %s is a %s, expected a string", g->path, key,
                       vtype_name(kv->type));
    uint64_t len;
    memcpy(&len, kv->val, 8);
    out->ptr = (const char *)kv->val + 8;
    out->len = len;
    return 0;
}

int gguf_get_cstr(const GgufFile *g, const char *key, char *buf, size_t cap, Err *err) {
    GgufStr s;
    if (gguf_get_str(g, key, &s, err)) return -1;
    if (s.len >= cap || memchr(s.ptr, 0, s.len))
        return err_set(err, "%s: key %s: string too long or contains NUL", g->path, key);
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    return 0;
}

int gguf_get_str_array(const GgufFile *g, const char *key, uint64_t *n, const char ***ptrs,
                       size_t **lens, Err *err) {
    const GgufKV *kv = need(g, key, err);
    if (!kv) return -1;
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING)
        return err_set(err, "%s: key %s is not an array of strings", g->path, key);
    *ptrs = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof **ptrs);
    *lens = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof **lens);
    if (!*ptrs || !*lens) {
        free(*ptrs);
        free(*lens);
        *ptrs = NULL;
        *lens = NULL;
        return err_set(err, "%s: out of memory reading %s", g->path, key);
    }
    /* parse_value already checked that every element lies inside the value */
    const uint8_t *p = kv->val;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        (*ptrs)[i] = (const char *)p + 8;
        (*lens)[i] = (size_t)len;
        p += 8 + len;
    }
    *n = kv->arr_n;
    return 0;
}

int gguf_get_arr_int(const GgufKV *kv, uint64_t i, int64_t *out) {
    if (kv->type != GGUF_ARRAY || i >= kv->arr_n) return -1;
    uint64_t es = scalar_size(kv->arr_type);
    if (!es || kv->arr_type == GGUF_FLOAT32 || kv->arr_type == GGUF_FLOAT64) return -1;
    return scalar_to_int(kv->arr_type, kv->val + i * es, out);
}
