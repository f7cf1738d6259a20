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
/* Sampling settings <-> the JSON text kept in the database (malloc'ed). Values marked unset
 * (non-finite doubles, negative integers) are left out and read back as unset. */
char *store_sampling_to_json(const StoreSampling *sp);
void store_sampling_from_json(const char *text, StoreSampling *sp);
/* All fields unset: NAN doubles, -1 integers. */
StoreSampling store_sampling_unset(void);

/* One-line descriptions used by the exports and --show. */
void store_sampling_describe(const StoreSampling *sp, char *buf, size_t cap);
void store_reply_describe(const StoreMessage *m, char *buf, size_t cap);

#endif
