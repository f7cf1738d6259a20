/* ui/keys: splitting raw terminal input into keys (sequences split across reads, a lone Esc,
 * mouse reports, bracketed paste markers, UTF-8, pass-through of everything else). */
#include <string.h>

#include "check.h"
#include "ui/keys.h"

static int one(const char *s, bool at_end, size_t *used) {
    Key k;
    *used = keys_decode(s, strlen(s), at_end, &k);
    return *used ? (int)k.type : -1;
}

int main(void) {
    size_t u;
    CHECK_EQ_INT(one("a", false, &u), K_BYTES);
    CHECK_EQ_INT(u, 1);
    CHECK_EQ_INT(one("\x03", false, &u), K_CTRL_C);
    CHECK_EQ_INT(one("\x04", false, &u), K_CTRL_D);
    CHECK_EQ_INT(one("\r", false, &u), K_ENTER);
    CHECK_EQ_INT(one("\x7f", false, &u), K_BACKSPACE);
    CHECK_EQ_INT(one("\n", false, &u), K_BYTES); /* Ctrl-J goes to readline */
    /* A lone ESC waits for more input unless the timeout passed. */
    CHECK_EQ_INT(one("\x1b", false, &u), -1);
    CHECK_EQ_INT(one("\x1b", true, &u), K_ESC);
    CHECK_EQ_INT(one("\x1b\x1b", false, &u), K_ESC);
    CHECK_EQ_INT(u, 1);
    /* Cursor and editing keys in their CSI and SS3 forms. */
    CHECK_EQ_INT(one("\x1b[A", false, &u), K_UP);
    CHECK_EQ_INT(u, 3);
    CHECK_EQ_INT(one("\x1bOB", false, &u), K_DOWN);
    CHECK_EQ_INT(one("\x1b[5~", false, &u), K_PGUP);
    CHECK_EQ_INT(u, 4);
    CHECK_EQ_INT(one("\x1b[6~", false, &u), K_PGDN);
    CHECK_EQ_INT(one("\x1b[5;5~", false, &u), K_PGUP); /* with a modifier */
    CHECK_EQ_INT(one("\x1b[1~", false, &u), K_HOME);
    CHECK_EQ_INT(one("\x1b[H", false, &u), K_HOME);
    CHECK_EQ_INT(one("\x1bOF", false, &u), K_END);
    CHECK_EQ_INT(one("\x1b[4~", false, &u), K_END);
    CHECK_EQ_INT(one("\x1b[3~", false, &u), K_DELETE);
    CHECK_EQ_INT(one("\x1b[12~", false, &u), K_F2);
    CHECK_EQ_INT(one("\x1bOQ", false, &u), K_F2); /* xterm, tmux: terminfo kf2 */
    CHECK_EQ_INT(one("\x1b[1;5C", false, &u), K_RIGHT);
    CHECK_EQ_INT(u, 6);
    CHECK_EQ_INT(one("\x1b[99~", false, &u), K_BYTES); /* unknown: passed through whole */
    CHECK_EQ_INT(u, 5);
    /* Unfinished sequences wait; at the timeout they pass through. */
    CHECK_EQ_INT(one("\x1b[", false, &u), -1);
    CHECK_EQ_INT(one("\x1b[5", false, &u), -1);
    CHECK_EQ_INT(one("\x1b[5", true, &u), K_BYTES);
    CHECK_EQ_INT(u, 3);
    /* Alt + key. */
    CHECK_EQ_INT(one("\x1b" "b", false, &u), K_BYTES);
    CHECK_EQ_INT(u, 2);
    CHECK_EQ_INT(one("\x1b\r", false, &u), K_BYTES);
    CHECK_EQ_INT(u, 2);
    /* Mouse: SGR and legacy wheel reports; clicks are ignored. */
    CHECK_EQ_INT(one("\x1b[<64;10;5M", false, &u), K_WHEEL_UP);
    CHECK_EQ_INT(u, 11);
    CHECK_EQ_INT(one("\x1b[<65;1;1M", false, &u), K_WHEEL_DOWN);
    CHECK_EQ_INT(one("\x1b[<0;3;4M", false, &u), K_MOUSE_OTHER);
    CHECK_EQ_INT(one("\x1b[<0;3;4m", false, &u), K_MOUSE_OTHER);
    CHECK_EQ_INT(one("\x1b[M`!!", false, &u), K_WHEEL_UP); /* 96 - 32 = 64 */
    CHECK_EQ_INT(u, 6);
    CHECK_EQ_INT(one("\x1b[Ma!!", false, &u), K_WHEEL_DOWN);
    CHECK_EQ_INT(one("\x1b[M`", false, &u), -1); /* legacy report still arriving */
    /* Bracketed paste markers. */
    CHECK_EQ_INT(one("\x1b[200~hello", false, &u), K_PASTE_BEGIN);
    CHECK_EQ_INT(u, 6);
    CHECK_EQ_INT(keys_find_paste_end("abc\x1b[201~def", 12), 3);
    CHECK_EQ_INT(keys_find_paste_end("abc\x1b[201", 8), -1);
    /* UTF-8: a whole character at once; a truncated one waits, then passes through. */
    CHECK_EQ_INT(one("\xe6\x97\xa5x", false, &u), K_BYTES);
    CHECK_EQ_INT(u, 3);
    CHECK_EQ_INT(one("\xf0\x9f\x98", false, &u), -1);
    CHECK_EQ_INT(one("\xf0\x9f\x98", true, &u), K_BYTES);
    CHECK_EQ_INT(u, 3);
    CHECK_EQ_INT(one("\xff", false, &u), K_BYTES);
    CHECK_EQ_INT(u, 1);
    /* Random bytes: always progress, never past the end. */
    unsigned seed = 99;
    int bad = 0;
    for (int it = 0; it < 20000; it++) {
        char buf[16];
        size_t n = 1 + ((seed = seed * 1103515245u + 12345u) >> 16) % 15;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (char)((seed >> 16) % 4 == 0 ? 0x1b : (seed >> 8));
        }
        size_t off = 0;
        while (off < n) {
            Key k;
            size_t used = keys_decode(buf + off, n - off, true, &k);
            if (used == 0 || used > n - off) {
                bad++;
                break;
            }
            off += used;
        }
    }
    CHECK_EQ_INT(bad, 0);
    return check_report("test_keys");
}
