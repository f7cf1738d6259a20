/* Model memory ownership (model_storage.h) and model_free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "infer/model_storage.h"
#include "infer/tokenizer.h"

typedef struct {
    void *addr;
    size_t len;
    int is_mapping;
} StorageItem;

struct ModelStorage {
    StorageItem *items;
    int n, cap;
};

static int storage_push(Model *m, void *addr, size_t len, int is_mapping, Err *err) {
    if (!m->storage) {
        m->storage = calloc(1, sizeof *m->storage);
        if (!m->storage) return err_set(err, "out of memory");
    }
    ModelStorage *s = m->storage;
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        StorageItem *it = realloc(s->items, (size_t)cap * sizeof *it);
        if (!it) return err_set(err, "out of memory");
        s->items = it;
        s->cap = cap;
    }
    s->items[s->n++] = (StorageItem){addr, len, is_mapping};
    return 0;
}

void *model_storage_alloc(Model *m, size_t bytes, Err *err) {
    void *p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded < bytes || posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        err_set(err, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    if (storage_push(m, p, bytes, 0, err)) {
        free(p);
        return NULL;
    }
    return p;
}

int model_storage_add_mapping(Model *m, void *addr, size_t len, Err *err) {
    return storage_push(m, addr, len, 1, err);
}

void model_free(Model *m) {
    if (!m) return;
    if (m->storage) {
        for (int i = m->storage->n - 1; i >= 0; i--) {
            StorageItem *it = &m->storage->items[i];
            if (it->is_mapping) munmap(it->addr, it->len);
            else free(it->addr);
        }
        free(m->storage->items);
        free(m->storage);
    }
    if (m->tok) tokenizer_free(m->tok);
    free(m->chat_template);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
