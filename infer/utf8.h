/* UTF-8, once for the whole program: strict decoding, repair of malformed text, cuts at
 * character boundaries, and a streaming decoder that holds an incomplete tail back.
 *
 * Well-formed means RFC 3629: no overlong forms, no surrogates (U+D800..DFFF), nothing past
 * U+10FFFF. Malformed input becomes U+FFFD, by one of two rules:
 *   - utf8_next / utf8_repair (text at rest: exports, typed input, display): each byte that
 *     does not begin a well-formed character is one U+FFFD;
 *   - Utf8Stream (model output, token by token): each maximal ill-formed subpart is one U+FFFD,
 *     as Python's errors="replace" and WHATWG decoders do, so a character cut short between
 *     tokens gives one replacement.
 * Both leave well-formed text unchanged and always produce well-formed text.
 * Depends on nothing else of the program; ui/ may use it (the one header of infer/ it sees). */
#ifndef BN_UTF8_H
#define BN_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define UTF8_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

/* If s[0..n) begins with a well-formed character: stores it in *cp, returns its length (1-4).
 * Otherwise (n == 0 included) returns 0. */
int utf8_decode(const char *s, size_t n, uint32_t *cp);

/* One character of s[0..n), n >= 1: as utf8_decode, except that a byte that does not begin a
 * well-formed character gives *cp = 0xFFFD and length 1. */
int utf8_next(const char *s, size_t n, uint32_t *cp);

/* A copy of s[0..n) with each byte that does not begin a well-formed character replaced by
 * U+FFFD (utf8_next's rule). NUL-terminated, malloc'ed; NULL if out of memory. */
char *utf8_repair(const char *s, size_t n);

/* The largest cut <= room such that s[0..cut) does not end inside a character (len when
 * len <= room): the cut backs up over continuation bytes. 0 if s[0..room] holds no boundary. */
size_t utf8_cut(const char *s, size_t len, size_t room);

/* Streaming decode: feeds a token's bytes and emits only complete UTF-8 sequences; an
 * incomplete tail is held until the next token completes it (invalid bytes become U+FFFD).
 * Zero-initialise before the first feed. */
typedef struct {
    unsigned char pending[8];
    int n_pending;
} Utf8Stream;
/* Appends the complete UTF-8 text available after adding `bytes` to out (capacity cap);
 * returns the number of bytes written. len + 8 bytes suffice for valid UTF-8; each invalid byte
 * may become a 3-byte U+FFFD, so 3 * len + 8 is always enough (with less, the output stops at
 * a character boundary). */
size_t utf8_stream_feed(Utf8Stream *s, const char *bytes, size_t len, char *out, size_t cap);
/* Flushes what is left (as U+FFFD for an incomplete sequence). */
size_t utf8_stream_flush(Utf8Stream *s, char *out, size_t cap);

#endif
