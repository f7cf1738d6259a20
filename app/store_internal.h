/* Helpers shared by the store's own files (store.c, store_export.c, history.c); not part of
 * the public store API. */
#ifndef BN_STORE_INTERNAL_H
#define BN_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "app/store.h"

/* store_open_ex that also reports the SQLite primary result code of a failure (0 when the
 * failure was not SQLite's), so the recorder can tell a passing lock from a damaged file. */
Store *store_open_rc(const char *path, unsigned flags, Err *err, int *sqlite_rc);
/* Wall-clock time in unix milliseconds. */
int64_t store_now_ms(void);
/* The SQLite primary result code of the last failure (SQLITE_BUSY, SQLITE_FULL, ...). */
int store_errcode(const Store *s);
/* Sampling settings <-> the JSON text kept in the database (malloc'ed). Only the settings
 * whose bit is set are written; the keys present set the bits read back. */
char *store_sampling_to_json(const SamplerParams *sp);
void store_sampling_from_json(const char *text, SamplerParams *sp);
/* The shortest decimal that reads back as f, as a double (0.7f -> 0.7): how the JSON and the
 * export write a float setting. */
double store_float_decimal(float f);

/* One-line descriptions used by the exports and --show. */
void store_sampling_describe(const SamplerParams *sp, char *buf, size_t cap);
void store_reply_describe(const StoreMessage *m, char *buf, size_t cap);

#endif
