/* Key decoding (see keys.h). Sequences recognised: CSI (ESC [ params final), SS3 (ESC O x),
 * legacy mouse (ESC [ M b x y), SGR mouse (ESC [ < b ; x ; y M|m), Alt-key (ESC x). */
#include "ui/keys.h"

#include <stdlib.h>
#include <string.h>

static size_t set(Key *k, KeyType t, const char *b, size_t len) {
    k->type = t;
    k->bytes = b;
    k->len = len;
    return len;
}

/* Maps a complete CSI sequence to a key. */
static KeyType csi_key(const char *s, size_t len) {
    char final = s[len - 1];
    /* Parameters between "ESC [" and the final byte. */
    const char *p = s + 2;
    size_t pl = len - 3;
    int first = 0;
    bool has_num = false;
    for (size_t i = 0; i < pl && p[i] >= '0' && p[i] <= '9'; i++) {
        first = first * 10 + (p[i] - '0');
        has_num = true;
    }
    switch (final) {
    case 'A': return K_UP;
    case 'B': return K_DOWN;
    case 'C': return K_RIGHT;
    case 'D': return K_LEFT;
    case 'H': return K_HOME;
    case 'F': return K_END;
    case '~':
        if (!has_num) return K_BYTES;
        switch (first) {
        case 1: case 7: return K_HOME;
        case 4: case 8: return K_END;
        case 3: return K_DELETE;
        case 5: return K_PGUP;
        case 6: return K_PGDN;
        case 12: return K_F2;
        case 200: return K_PASTE_BEGIN;
        case 201: return K_PASTE_END;
        }
        return K_BYTES;
    }
    return K_BYTES;
}

size_t keys_decode(const char *buf, size_t n, bool at_end, Key *k) {
    if (n == 0) return 0;
    unsigned char c = (unsigned char)buf[0];
    if (c != 0x1b) {
        switch (c) {
        case 0x03: return set(k, K_CTRL_C, buf, 1);
        case 0x04: return set(k, K_CTRL_D, buf, 1);
        case 0x0c: return set(k, K_CTRL_L, buf, 1);
        case 0x1a: return set(k, K_CTRL_Z, buf, 1);
        case '\r': return set(k, K_ENTER, buf, 1);
        case '\t': return set(k, K_TAB, buf, 1);
        case 0x7f: case 0x08: return set(k, K_BACKSPACE, buf, 1);
        }
        /* A UTF-8 character is passed whole when complete (readline takes it either way). */
        size_t need = c >= 0xF8 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > 1 && n < need && !at_end) return 0;
        size_t len = 1;
        while (len < need && len < n && ((unsigned char)buf[len] & 0xC0) == 0x80) len++;
        return set(k, K_BYTES, buf, len);
    }
    if (n == 1) return at_end ? set(k, K_ESC, buf, 1) : 0;
    unsigned char c1 = (unsigned char)buf[1];
    if (c1 == '[') {
        if (n >= 3 && buf[2] == 'M') { /* legacy mouse: 3 raw bytes follow */
            if (n < 6) return at_end ? set(k, K_BYTES, buf, n) : 0;
            int b = (unsigned char)buf[3] - 32;
            KeyType t = (b & 0x43) == 0x40 ? K_WHEEL_UP : (b & 0x43) == 0x41 ? K_WHEEL_DOWN
                                                                             : K_MOUSE_OTHER;
            return set(k, t, buf, 6);
        }
        size_t i = 2;
        while (i < n && (unsigned char)buf[i] >= 0x20 && (unsigned char)buf[i] <= 0x3F) i++;
        if (i >= n) return at_end ? set(k, K_BYTES, buf, n) : 0;
        unsigned char fin = (unsigned char)buf[i];
        if (fin < 0x40 || fin > 0x7E) return set(k, K_BYTES, buf, i); /* malformed: pass through */
        size_t len = i + 1;
        if (buf[2] == '<' && (fin == 'M' || fin == 'm')) { /* SGR mouse */
            int b = atoi(buf + 3);
            KeyType t = (b & 0x43) == 0x40 ? K_WHEEL_UP : (b & 0x43) == 0x41 ? K_WHEEL_DOWN
                                                                             : K_MOUSE_OTHER;
            return set(k, t, buf, len);
        }
        return set(k, csi_key(buf, len), buf, len);
    }
    if (c1 == 'O') {
        if (n < 3) return at_end ? set(k, K_BYTES, buf, n) : 0;
        KeyType t = K_BYTES;
        switch (buf[2]) {
        case 'A': t = K_UP; break;
        case 'B': t = K_DOWN; break;
        case 'C': t = K_RIGHT; break;
        case 'D': t = K_LEFT; break;
        case 'H': t = K_HOME; break;
        case 'F': t = K_END; break;
        case 'Q': t = K_F2; break; /* F2 as xterm and tmux send it (terminfo kf2) */
        }
        return set(k, t, buf, 3);
    }
    if (c1 == 0x1b) return set(k, K_ESC, buf, 1); /* Esc pressed twice: the first is alone */
    /* Alt + key: ESC then one character, passed to readline as is. */
    Key inner;
    size_t l = keys_decode(buf + 1, n - 1, at_end, &inner);
    if (!l) return 0;
    return set(k, K_BYTES, buf, l + 1);
}

long keys_find_paste_end(const char *buf, size_t n) {
    static const char mark[] = "\x1b[201~";
    for (size_t i = 0; i + 6 <= n; i++)
        if (!memcmp(buf + i, mark, 6)) return (long)i;
    return -1;
}
