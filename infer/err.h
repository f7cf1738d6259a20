/* Err: the error currency of infer/ and app/. A function that can fail takes an Err * (which
 * may be NULL), fills it with one human-readable line (naming the file and the problem where
 * there is one) and returns an error value. Nothing below the UI prints or exits on error. */
#ifndef BN_ERR_H
#define BN_ERR_H

typedef struct Err {
    char msg[512];
} Err;

/* printf-style; safe with err == NULL. Always returns -1 so callers can `return err_set(...)`. */
int err_set(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to an existing message (for adding context such as a path). */
int err_prefix(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
