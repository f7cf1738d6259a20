/* Text bound for a terminal, made unable to drive it: control characters become visible
 * caret forms, so stored or generated text can never move the cursor, clear the screen,
 * retitle the window or write the clipboard (OSC 52). Used wherever such text reaches a
 * terminal: --show, --search, --sessions, --export to a terminal and -p's reply stream. Pipes
 * and files get the bytes unchanged (callers decide with isatty).
 *
 * The rules: new line and tab pass (with keep_newlines 0 they, and CR, become a space); any
 * other C0 byte (NUL included) and DEL become "^@".."^_" and "^?"; a C1 control written in
 * UTF-8 (U+0080..U+009F: 0xC2 0x80..0x9F) becomes "^?". Everything else passes byte for byte.
 * Text may arrive in pieces (a token stream): a 0xC2 that ends one piece is held until the
 * next piece shows whether it starts a C1 control. */
#ifndef BN_TERMSAFE_H
#define BN_TERMSAFE_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    int held_c2;       /* a 0xC2 lead byte seen at the end of the previous piece */
    int keep_newlines;
} TermSafe;

/* Writes s[0..n) made safe to f. Returns 0, or -1 when a write failed (errno as stdio set it). */
int termsafe_write(TermSafe *ts, FILE *f, const char *s, size_t n);
/* Writes a held byte (the text ended inside a sequence). Returns 0 or -1 as above. */
int termsafe_finish(TermSafe *ts, FILE *f);
/* The whole of a NUL-terminated string in one call (a one-line context with keep_newlines 0). */
int termsafe_puts(FILE *f, const char *s, int keep_newlines);

#endif
