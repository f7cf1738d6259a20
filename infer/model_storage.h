/* Ownership of a Model's memory: every mapping and buffer a loader (or the random-model maker)
 * creates is registered here, and model_free() releases them all in one place. */
#ifndef BN_MODEL_STORAGE_H
#define BN_MODEL_STORAGE_H

#include <stddef.h>

#include "infer/model.h"

/* 64-byte aligned, zero-filled buffer owned by the model; NULL (with err) if out of memory. */
void *model_storage_alloc(Model *m, size_t bytes, Err *err);
/* Registers a read-only mapping to be munmap'ed by model_free. */
int model_storage_add_mapping(Model *m, void *addr, size_t len, Err *err);
/* 1 if p lies inside one of the model's file mappings (not in an owned buffer). */
int model_storage_is_mapped(const Model *m, const void *p);

#endif
