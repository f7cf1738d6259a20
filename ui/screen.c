/* Curses lifecycle, colours and signal flags (see screen.h). */
#define _GNU_SOURCE
#include "ui/screen.h"
#include "ui/textwidth.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Mouse wheel reports (X10 + SGR encoding) and bracketed paste, on and off. */
static const char TERM_MODES_ON[] = "\x1b[?1000h\x1b[?1006h\x1b[?2004h";
static const char TERM_MODES_OFF[] = "\x1b[?2004l\x1b[?1006l\x1b[?1000l";
/* Emergency reset used from a crash handler: modes off, leave the alternate screen, show the
 * cursor, reset attributes. */
static const char TERM_EMERGENCY[] =
    "\x1b[?2004l\x1b[?1006l\x1b[?1000l\x1b[0m\x1b[?1049l\x1b[?25h\r\n";

static bool g_active;
static bool g_colors;
static attr_t g_style[ST__COUNT];
static struct termios g_saved_tios;
static bool g_have_tios;
static int g_sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t g_sig_quit, g_sig_int, g_sig_winch, g_sig_tstp, g_sig_cont;
static SCREEN *g_screen;

static void write_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void on_signal(int sig) {
    int saved = errno;
    if (sig == SIGWINCH) g_sig_winch = 1;
    else if (sig == SIGINT) g_sig_int = 1;
    else if (sig == SIGTSTP) g_sig_tstp = 1;
    else if (sig == SIGCONT) g_sig_cont = 1;
    else g_sig_quit = sig;
    if (g_sig_pipe[1] >= 0) {
        char b = 1;
        ssize_t w = write(g_sig_pipe[1], &b, 1);
        (void)w;
    }
    errno = saved;
}

/* A crash: put the terminal back with async-signal-safe calls only, then die as we would
 * have. */
static void on_crash(int sig) {
    if (g_active) {
        if (g_have_tios) tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tios);
        write_all(STDOUT_FILENO, TERM_EMERGENCY, sizeof TERM_EMERGENCY - 1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGWINCH, &sa, NULL);
    /* A stop from outside (kill -TSTP) only sets a flag: the loop then gives the terminal
     * back before stopping, as for Ctrl-Z. SIGCONT after a stop we could not catch (SIGSTOP)
     * sets the terminal up again. These replace the handler newterm() installed, which knows
     * nothing of our mouse and paste modes. */
    sigaction(SIGTSTP, &sa, NULL);
    sigaction(SIGCONT, &sa, NULL);
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void setup_styles(void) {
    const char *nc = getenv("NO_COLOR");
    g_colors = has_colors() && !(nc && *nc);
    if (g_colors) {
        start_color();
        use_default_colors();
    }
    bool c256 = g_colors && COLORS >= 256;
    /* pair, fg (256 / 8 colours), bg */
    struct { Style s; short fg256, fg8, bg256, bg8; attr_t extra, mono; } def[] = {
        {ST_USER_LABEL, 39, COLOR_CYAN, -1, -1, A_BOLD, A_BOLD},
        {ST_USER_TEXT, 153, COLOR_CYAN, -1, -1, 0, 0},
        {ST_ASSIST_LABEL, 114, COLOR_GREEN, -1, -1, A_BOLD, A_BOLD | A_UNDERLINE},
        {ST_META, 245, COLOR_WHITE, -1, -1, 0, A_DIM},
        {ST_NOTE, 250, COLOR_WHITE, -1, -1, 0, A_DIM},
        {ST_ERROR, 203, COLOR_RED, -1, -1, A_BOLD, A_BOLD},
        {ST_STATUS, 252, COLOR_WHITE, 236, COLOR_BLUE, 0, A_REVERSE},
        {ST_STATUS_BUSY, 220, COLOR_YELLOW, 236, COLOR_BLUE, A_BOLD, A_REVERSE | A_BOLD},
        {ST_STATUS_WARN, 203, COLOR_RED, 236, COLOR_BLUE, A_BOLD, A_REVERSE | A_BOLD},
        {ST_HINT, 16, COLOR_BLACK, 222, COLOR_YELLOW, 0, A_REVERSE},
        {ST_SELECTED, 255, COLOR_WHITE, 24, COLOR_BLUE, A_BOLD, A_REVERSE},
        {ST_MATCH, 16, COLOR_BLACK, 214, COLOR_YELLOW, A_BOLD, A_BOLD | A_UNDERLINE},
        {ST_TITLE, 255, COLOR_WHITE, 238, COLOR_BLUE, A_BOLD, A_REVERSE | A_BOLD},
        {ST_PROMPT, 39, COLOR_CYAN, -1, -1, A_BOLD, A_BOLD},
    };
    g_style[ST_NORMAL] = A_NORMAL;
    for (size_t i = 0; i < sizeof def / sizeof def[0]; i++) {
        short pair = (short)(i + 1);
        if (g_colors) {
            init_pair(pair, c256 ? def[i].fg256 : def[i].fg8, c256 ? def[i].bg256 : def[i].bg8);
            g_style[def[i].s] = COLOR_PAIR(pair) | def[i].extra;
        } else {
            g_style[def[i].s] = def[i].mono;
        }
    }
}

/* Typed-ahead bytes read while waiting for the width probe's answers (see probe_widths). */
static char g_stash[4096];
static size_t g_stash_len;

size_t screen_take_typeahead(char *buf, size_t cap) {
    size_t n = g_stash_len < cap ? g_stash_len : cap;
    memcpy(buf, g_stash, n);
    memmove(g_stash, g_stash + n, g_stash_len - n);
    g_stash_len -= n;
    return n;
}

/* Asks the terminal how it draws the three kinds of sequence terminals disagree on (an emoji
 * ZWJ sequence, a skin-tone modifier, VS16; see ui/textwidth.c): each sample is written at the
 * top-left corner of the (still blank) screen followed by a cursor position request, and the
 * answer's column is its width. Bytes typed meanwhile are kept for the input. A terminal that
 * does not answer within PROBE_MS keeps the defaults. The screen is cleared afterwards. */
enum { PROBE_MS = 300 };

static void probe_widths(void) {
    static const char *const samples[3] = {
        "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", /* family */
        "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", /* thumbs up, medium skin tone */
        "\xe2\x9d\xa4\xef\xb8\x8f",           /* red heart + VS16 */
    };
    char q[128];
    size_t o = 0;
    for (int i = 0; i < 3; i++)
        o += (size_t)snprintf(q + o, sizeof q - o, "\x1b[H%s\x1b[6n", samples[i]);
    o += (size_t)snprintf(q + o, sizeof q - o, "\x1b[H\x1b[2K");
    fflush(stdout);
    write_all(STDOUT_FILENO, q, o);
    int width[3], got = 0;
    char in[513];
    size_t len = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (got < 3) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = PROBE_MS - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
        struct pollfd p = {STDIN_FILENO, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) break;
        ssize_t r = read(STDIN_FILENO, in + len, sizeof in - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
        in[len] = 0;
        /* Take every answer ESC [ row ; col R out; the other bytes were typed: keep them. */
        size_t i = 0;
        while (i < len) {
            if (in[i] == 0x1b && got < 3) {
                int row, col, used = 0;
                if (sscanf(in + i, "\x1b[%d;%dR%n", &row, &col, &used) == 2 && used > 0) {
                    width[got++] = col - 1;
                    i += (size_t)used;
                    continue;
                }
                if (!memchr(in + i, 'R', len - i) && len - i < 16) break; /* cut in two reads */
            }
            if (g_stash_len < sizeof g_stash) g_stash[g_stash_len++] = in[i];
            i++;
        }
        memmove(in, in + i, len - i);
        len -= i;
    }
    for (size_t i = 0; i < len && g_stash_len < sizeof g_stash; i++) g_stash[g_stash_len++] = in[i];
    if (got == 3) {
        TwTerm t = tw_get_terminal();
        if (width[0] == 2) t.zwj_joins = true;
        else if (width[0] == 6) t.zwj_joins = false;
        if (width[1] == 2) t.modifier_joins = true;
        else if (width[1] == 4) t.modifier_joins = false;
        if (width[2] == 2) t.vs16_widens = true;
        else if (width[2] == 1) t.vs16_widens = false;
        tw_set_terminal(&t);
    }
    clearok(curscr, TRUE);
}

int screen_init(char *why, size_t whylen) {
    if (g_active) return 0;
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        snprintf(why, whylen, "the chat needs a terminal (use -p PROMPT for scripts)");
        return -1;
    }
    if (tcgetattr(STDIN_FILENO, &g_saved_tios) == 0) g_have_tios = true;
    if (g_sig_pipe[0] < 0) {
        if (pipe(g_sig_pipe) == 0) {
            fcntl(g_sig_pipe[0], F_SETFL, O_NONBLOCK);
            fcntl(g_sig_pipe[1], F_SETFL, O_NONBLOCK);
            fcntl(g_sig_pipe[0], F_SETFD, FD_CLOEXEC);
            fcntl(g_sig_pipe[1], F_SETFD, FD_CLOEXEC);
        }
    }
    /* The size comes from the tty (ioctl), not from LINES/COLUMNS in the environment, which
     * go stale on resize. (use_env(FALSE) would take terminfo's fixed size instead.) */
    use_env(TRUE);
    use_tioctl(TRUE);
    g_screen = newterm(NULL, stdout, stdin);
    if (!g_screen) {
        const char *t = getenv("TERM");
        snprintf(why, whylen, "cannot set up the terminal (TERM=%s)", t ? t : "(unset)");
        return -1;
    }
    set_term(g_screen);
    /* A terminal that cannot place the cursor (TERM=dumb, an editor's shell buffer) would
     * get a scramble of text: refuse with a reason instead. */
    const char *cup = tigetstr("cup");
    if (!cup || cup == (char *)-1 || !*cup) {
        const char *t = getenv("TERM");
        endwin();
        delscreen(g_screen);
        g_screen = NULL;
        if (g_have_tios) tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tios);
        snprintf(why, whylen,
                 "the terminal (TERM=%s) cannot move the cursor; the chat needs a full-screen "
                 "terminal (use -p PROMPT for one reply)", t ? t : "(unset)");
        return -1;
    }
    g_active = true;
    atexit(screen_shutdown);
    raw();
    noecho();
    nonl();
    refresh(); /* the alternate screen is on and blank before the probe writes to it */
    probe_widths();
    intrflush(stdscr, FALSE);
    keypad(stdscr, FALSE);
    set_escdelay(25);
    setup_styles();
    install_handlers();
    fflush(stdout);
    write_all(STDOUT_FILENO, TERM_MODES_ON, sizeof TERM_MODES_ON - 1);
    return 0;
}

void screen_shutdown(void) {
    if (!g_active) return;
    g_active = false;
    write_all(STDOUT_FILENO, TERM_MODES_OFF, sizeof TERM_MODES_OFF - 1);
    endwin();
    if (g_screen) {
        delscreen(g_screen);
        g_screen = NULL;
    }
    if (g_have_tios) tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tios);
    fflush(stdout);
}

bool screen_active(void) { return g_active; }

int screen_put(WINDOW *w, int row, int col, const char *s, size_t n, int max_cols, attr_t a) {
    int used = 0;
    wattrset(w, a);
    for (size_t i = 0; i < n;) {
        /* Fast path (this runs for every visible line at every frame): a run of printable
         * ASCII goes in with one call. Its last character stays out when a non-ASCII byte
         * follows, since that may be a mark belonging to it. */
        size_t end = i;
        while (end < n && (unsigned char)s[end] >= 0x20 && (unsigned char)s[end] < 0x7F) end++;
        if (end < n && (unsigned char)s[end] >= 0x80 && end > i) end--;
        if (end > i) {
            int run = (int)(end - i);
            if (run > max_cols - used) run = max_cols - used;
            if (run <= 0) break;
            mvwaddnstr(w, row, col + used, s + i, run);
            used += run;
            i += (size_t)run;
            continue;
        }
        int cw;
        size_t len = tw_cluster(s + i, n - i, &cw);
        if (used + cw > max_cols) break;
        for (size_t j = i; j < i + len;) {
            TwCell c;
            bool glue;
            j += tw_cell(s + j, i + len - j, &c, &glue);
            wchar_t first[2] = {(wchar_t)c.cp[0], 0};
            cchar_t cc;
            memset(&cc, 0, sizeof cc);
            setcchar(&cc, first, a & ~A_COLOR, (short)PAIR_NUMBER(a), NULL);
            if (c.tab) {
                for (int k = 0; k < c.width; k++) mvwadd_wch(w, row, col + used + k, &cc);
            } else {
                /* The rest of the cell goes in directly: setcchar() keeps only zero-width code
                 * points after the first, and an emoji ZWJ sequence is drawn as one cell
                 * (curses then counts the first emoji's width, as the terminal draws it). */
                for (int k = 1; k < c.n; k++) cc.chars[k] = (wchar_t)c.cp[k];
                mvwadd_wch(w, row, col + used, &cc);
            }
            used += c.width;
        }
        i += len;
    }
    wattrset(w, A_NORMAL);
    return used;
}
attr_t screen_style(Style s) { return (unsigned)s < ST__COUNT ? g_style[s] : A_NORMAL; }
bool screen_has_colors(void) { return g_colors; }
int screen_signal_fd(void) { return g_sig_pipe[0]; }

ScreenSignals screen_take_signals(void) {
    char buf[64];
    while (g_sig_pipe[0] >= 0 && read(g_sig_pipe[0], buf, sizeof buf) > 0) {}
    ScreenSignals s = {(int)g_sig_quit, g_sig_int != 0, g_sig_winch != 0, g_sig_tstp != 0,
                       g_sig_cont != 0};
    g_sig_quit = g_sig_int = g_sig_winch = g_sig_tstp = g_sig_cont = 0;
    return s;
}

void screen_apply_resize(void) {
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
        resize_term(ws.ws_row, ws.ws_col);
    clearok(curscr, TRUE);
}

void screen_suspend(void) {
    if (!g_active) return;
    write_all(STDOUT_FILENO, TERM_MODES_OFF, sizeof TERM_MODES_OFF - 1);
    def_prog_mode();
    endwin();
    if (g_have_tios) tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tios);
    fflush(stdout);
    /* Stop with the default action; execution goes on here once we are continued. Our
     * handler comes back afterwards, and the SIGCONT flag this raises is dropped: the
     * set-up below is what it would trigger. */
    struct sigaction dfl, ours;
    memset(&dfl, 0, sizeof dfl);
    sigemptyset(&dfl.sa_mask);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGTSTP, &dfl, &ours);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTSTP);
    pthread_sigmask(SIG_UNBLOCK, &set, &old);
    raise(SIGTSTP);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGTSTP, &ours, NULL);
    g_sig_cont = 0;
    screen_resume();
}

void screen_resume(void) {
    if (!g_active) return;
    /* The shell we were stopped from may have put the tty back in cooked mode. */
    reset_prog_mode();
    write_all(STDOUT_FILENO, TERM_MODES_ON, sizeof TERM_MODES_ON - 1);
    screen_apply_resize(); /* the size may have changed meanwhile; forces a full repaint */
}

void screen_clipboard(const char *text) {
    /* OSC 52: the terminal (or tmux with set-clipboard on) puts the text on the system
     * clipboard; base64 keeps any byte of it from being read as a control. Terminals that do
     * not know OSC 52 ignore it. */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(text), cap = 16 + (n + 2) / 3 * 4;
    char *out = malloc(cap);
    if (!out) return;
    size_t o = 0;
    memcpy(out, "\033]52;c;", 7);
    o = 7;
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)u[i] << 16 | (i + 1 < n ? (unsigned)u[i + 1] << 8 : 0) |
                     (i + 2 < n ? u[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o++] = '\a';
    write_all(STDOUT_FILENO, out, o);
    free(out);
}
