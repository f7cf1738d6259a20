/* Terminal-safe text (app/termsafe.h): what --show, --search, --sessions, --export to a terminal
 * and -p to a terminal write. Every C0 byte but new line and tab, DEL and C1 controls (UTF-8
 * U+0080..U+009F) become visible; everything else is byte-exact; text split into pieces (a
 * token stream) gives the same as the whole, including a C1 control split between pieces. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "app/modes.h"
#include "app/termsafe.h"
#include "check.h"

/* s[0..n) made safe in pieces of `piece` bytes; malloc'ed, length in *len. */
static char *safe(const char *s, size_t n, size_t piece, int keep_newlines, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    REQUIRE(f);
    TermSafe ts = {0, keep_newlines};
    for (size_t i = 0; i < n; i += piece) REQUIRE(termsafe_write(&ts, f, s + i, n - i < piece ? n - i : piece) == 0);
    REQUIRE(termsafe_finish(&ts, f) == 0);
    fclose(f);
    return buf;
}

static void expect(const char *name, const char *in, size_t n, int keep, const char *want) {
    for (size_t piece = 1; piece <= n + 1; piece++) {
        size_t len;
        char *got = safe(in, n, piece, keep, &len);
        CHECK_MSG(len == strlen(want) && memcmp(got, want, len) == 0, "%s (pieces of %zu): got '%.*s'",
                  name, piece, (int)len, got);
        free(got);
    }
}

/* String literals with their exact length (they may hold NUL). */
#define EXPECT(name, lit, keep, want) expect(name, lit, sizeof lit - 1, keep, want)

/* -p's writer (PromptOut, app/modes.h) fed a reply holding ESC sequences, a BEL and a
 * C1 control split between pieces: to a terminal (a pty) they arrive as caret forms, to a pipe
 * byte for byte; a newline is added at the end. Reads what the writer wrote from the other end. */
static const char *const reply_pieces[] = {"Hi \x1B[2J", "\x1B]52;c;aGk=\x07 x\xC2", "\x9B" "31m"};

static size_t read_all(int fd, char *buf, size_t cap, size_t want) {
    size_t got = 0;
    while (got < want && got < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2000) <= 0) break;
        ssize_t k = read(fd, buf + got, cap - got);
        if (k <= 0) break;
        got += (size_t)k;
    }
    return got;
}

static void write_reply(FILE *f) {
    PromptOut o;
    prompt_out_init(&o, f);
    for (size_t i = 0; i < sizeof reply_pieces / sizeof reply_pieces[0]; i++)
        CHECK(prompt_out_write(&o, reply_pieces[i], strlen(reply_pieces[i])) == 0);
    prompt_out_end(&o);
    CHECK_EQ_INT(o.err, 0);
}

static void test_prompt_writer(void) {
    const char tty_want[] = "Hi ^[[2J^[]52;c;aGk=^G x^?31m\n";
    const char raw_want[] = "Hi \x1B[2J\x1B]52;c;aGk=\x07 x\xC2\x9B" "31m\n";
    char buf[256];
    /* a terminal */
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    REQUIRE(m >= 0);
    REQUIRE(grantpt(m) == 0 && unlockpt(m) == 0);
    int s = open(ptsname(m), O_RDWR | O_NOCTTY);
    REQUIRE(s >= 0);
    struct termios tio;
    REQUIRE(tcgetattr(s, &tio) == 0);
    cfmakeraw(&tio); /* no \n -> \r\n: compare the bytes the writer sent */
    REQUIRE(tcsetattr(s, TCSANOW, &tio) == 0);
    FILE *f = fdopen(s, "w");
    REQUIRE(f);
    write_reply(f);
    size_t n = read_all(m, buf, sizeof buf, sizeof tty_want - 1);
    CHECK_MSG(n == sizeof tty_want - 1 && memcmp(buf, tty_want, n) == 0, "pty got %zu bytes: %.*s",
              n, (int)n, buf);
    fclose(f);
    close(m);
    /* a pipe */
    int p[2];
    REQUIRE(pipe(p) == 0);
    f = fdopen(p[1], "w");
    REQUIRE(f);
    write_reply(f);
    fclose(f);
    n = read_all(p[0], buf, sizeof buf, sizeof raw_want - 1);
    CHECK(n == sizeof raw_want - 1 && memcmp(buf, raw_want, n) == 0);
    close(p[0]);
}

int main(void) {
    test_prompt_writer();
    EXPECT("plain", "hello, world", 1, "hello, world");
    EXPECT("utf-8 passes", "caf\xC3\xA9 \xC2\xA9 \xE2\x80\x94", 1, "caf\xC3\xA9 \xC2\xA9 \xE2\x80\x94");
    EXPECT("OSC title", "a\x1B]0;pwned\x07z", 1, "a^[]0;pwned^Gz");
    EXPECT("clear screen", "\x1B[2J", 1, "^[[2J");
    EXPECT("OSC 52 clipboard", "\x1B]52;c;aGk=\x07", 1, "^[]52;c;aGk=^G");
    EXPECT("NUL and DEL", "a\0b\x7F", 1, "a^@b^?");
    EXPECT("C1 CSI", "x\xC2\x9B" "31m", 1, "x^?31m");
    EXPECT("C1 at the end", "x\xC2\x85", 1, "x^?");
    EXPECT("lone C2 at the end", "x\xC2", 1, "x\xC2");
    EXPECT("newlines kept", "a\nb\tc\rd", 1, "a\nb\tc^Md");
    EXPECT("one line", "a\nb\tc\rd", 0, "a b c d");
    /* Every byte: no raw control survives, in any piece size. */
    char all[256];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    for (size_t piece = 1; piece <= 257; piece += 16) {
        size_t len;
        char *got = safe(all, 256, piece, 1, &len);
        int raw = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)got[i];
            if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) raw++;
            if (c == 0xC2 && i + 1 < len && (unsigned char)got[i + 1] >= 0x80 && (unsigned char)got[i + 1] <= 0x9F) raw++;
        }
        CHECK_MSG(raw == 0, "%d raw control bytes with pieces of %zu", raw, piece);
        free(got);
    }
    CHECK(termsafe_puts(stdout, "", 0) == 0);
    return check_report("test_termsafe");
}
