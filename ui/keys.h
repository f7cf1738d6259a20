/* Splits raw terminal input into keys. The terminal is in raw mode without keypad(), so that
 * readline receives the original byte sequences (its keymaps and inputrc match on them);
 * this decoder only recognises the keys the UI handles itself (scrolling, mouse wheel,
 * bracketed paste, Esc, Ctrl-C) and passes every other sequence through whole. Pure, tested
 * in tests/unit/test_keys.c. */
#ifndef BN_KEYS_H
#define BN_KEYS_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    K_BYTES = 0,  /* anything else: raw bytes (a character, a control key, an escape sequence) */
    K_ESC,        /* Esc on its own */
    K_CTRL_C,
    K_CTRL_D,
    K_CTRL_L,
    K_CTRL_Z,
    K_ENTER,
    K_BACKSPACE,
    K_TAB,
    K_UP, K_DOWN, K_LEFT, K_RIGHT,
    K_HOME, K_END, K_PGUP, K_PGDN, K_DELETE, K_F2,
    K_WHEEL_UP, K_WHEEL_DOWN,
    K_MOUSE_OTHER, /* clicks and other mouse reports: ignored */
    K_PASTE_BEGIN, K_PASTE_END,
} KeyType;

typedef struct {
    KeyType type;
    const char *bytes; /* the raw bytes (points into the input buffer) */
    size_t len;
} Key;

/* Decodes one key from buf[0..n). Returns the bytes it takes, or 0 when buf holds only the
 * start of an escape sequence (wait for more input). With at_end set (no more input came
 * within the Esc timeout), a lone ESC is K_ESC and an unfinished sequence is passed through
 * as bytes. */
size_t keys_decode(const char *buf, size_t n, bool at_end, Key *out);

/* Finds the end-of-paste marker ESC[201~ in buf[0..n); returns its offset or -1. */
long keys_find_paste_end(const char *buf, size_t n);

#endif
