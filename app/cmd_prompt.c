/* Non-interactive generation:
 *   bitnet-chat -p PROMPT [options]          one reply streamed to stdout, stats to stderr;
 *   bitnet-chat perplexity --model M FILE    perplexity of a text file (llama.cpp's method).
 * The one-shot prompt goes through the engine thread exactly as the chat does, so its figures
 * are the ones the chat shows. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/history.h"
#include "app/modes.h"
#include "app/paths.h"
#include "app/perplexity.h"
#include "app/termsafe.h"
#include "infer/engine.h"
#include "infer/infer.h"
#include "infer/model.h"
#include "infer/tokenizer.h"

/* ---- shared option handling ------------------------------------------------------------------- */

static InferOptions infer_options_from(const AppConfig *cfg) {
    InferOptions o = {.backend = BACKEND_AUTO, .threads = cfg->threads, .ctx = cfg->ctx,
                      .lm_head_int8 = cfg->lm_head_int8, .kv_f32 = cfg->kv_f32,
                      .weights_map = cfg->mmap_weights};
    if (cfg->backend && !strcmp(cfg->backend, "cpu")) o.backend = BACKEND_CPU;
    else if (cfg->backend && !strcmp(cfg->backend, "cuda")) o.backend = BACKEND_CUDA;
    return o;
}

/* infer_create caps a context longer than the model's trained one; the user hears of it once. */
static void ctx_capped_note(int asked, int got) {
    fprintf(stderr, "bitnet-chat: --ctx %d is more than the model's trained context; using %d\n",
            asked, got);
}

static const char *model_path_or_default(const AppConfig *cfg) {
    if (cfg->model) return cfg->model;
    return app_default_model_path();
}

/* ---- one-shot prompt -------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted = 0;
/* SIGTERM or SIGHUP (e.g. `timeout`, a closed terminal): the reply is cancelled and saved like
 * a Ctrl-C, then the process ends by that signal so the caller sees what happened. */
static volatile sig_atomic_t terminated_by = 0;

static void on_sigint(int sig) {
    (void)sig;
    interrupted++;
    if (interrupted > 1) signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

static void on_sigterm(int sig) {
    if (terminated_by) signal(sig, SIG_DFL); /* a second one ends the process at once */
    terminated_by = sig;
}

static int stop_requested(void) { return interrupted || terminated_by; }

/* Ends the process by sig with its default action (after the history was saved). */
static void die_by_signal(int sig) {
    fflush(NULL);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
}

/* ---- the prompt's text: -p TEXT, -f FILE, standard input ------------------------------------ */

enum { PROMPT_MAX_BYTES = 64 << 20 }; /* far beyond any model's context; stops /dev/zero */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int buf_add(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

/* Appends everything fd holds to b. what names the source in messages. A pipe that stays open
 * with nothing in it (stdin of a job run over ssh) would wait silently: after 2 s a note on
 * stderr says what is being waited for. */
static int read_all(int fd, const char *what, Buf *b, bool note_wait) {
    char chunk[65536];
    bool noted = !note_wait;
    for (;;) {
        if (!noted) {
            struct pollfd p = {fd, POLLIN, 0};
            int r = poll(&p, 1, 2000);
            if (r == 0) {
                fprintf(stderr, "bitnet-chat: waiting for %s to end (it is added to the prompt; "
                                "</dev/null leaves it out)\n", what);
                noted = true;
                continue;
            }
            if (r < 0 && errno == EINTR) {
                if (stop_requested()) return -1;
                continue;
            }
            noted = true;
        }
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r == 0) return 0;
        if (r < 0) {
            if (errno == EINTR) {
                if (stop_requested()) return -1;
                continue;
            }
            fprintf(stderr, "bitnet-chat: reading %s: %s\n", what, strerror(errno));
            return -1;
        }
        if (b->n + (size_t)r > PROMPT_MAX_BYTES) {
            fprintf(stderr, "bitnet-chat: %s is larger than %d MiB; no model's context holds "
                            "that\n", what, PROMPT_MAX_BYTES >> 20);
            return -1;
        }
        if (buf_add(b, chunk, (size_t)r)) {
            fprintf(stderr, "bitnet-chat: out of memory reading %s\n", what);
            return -1;
        }
    }
}

/* The prompt: -p TEXT (or stdin for "-"), then -f FILE (or stdin for "-"), then, after -p TEXT
 * without -f, standard input when it is not a terminal (`cat notes | bitnet-chat -p "Sum
 * up:"`; one argument is limited to 128 KiB by the kernel, so long inputs come this way).
 * Parts are joined by a blank line. NULL (message printed) when it cannot be read or is empty. */
static char *prompt_text(const AppConfig *cfg) {
    Buf b = {0};
    bool from_stdin = false, ok = true;
    if (cfg->prompt && strcmp(cfg->prompt, "-")) {
        ok = !buf_add(&b, cfg->prompt, strlen(cfg->prompt));
    } else if (cfg->prompt) {
        ok = !read_all(STDIN_FILENO, "stdin", &b, false);
        from_stdin = true;
    }
    if (ok && cfg->prompt_file) {
        Buf f = {0};
        if (!strcmp(cfg->prompt_file, "-")) {
            ok = !read_all(STDIN_FILENO, "stdin", &f, false);
            from_stdin = true;
        } else {
            int fd = open(cfg->prompt_file, O_RDONLY | O_CLOEXEC);
            struct stat st;
            if (fd < 0) {
                fprintf(stderr, "bitnet-chat: -f %s: %s\n", cfg->prompt_file, strerror(errno));
                ok = false;
            } else if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
                fprintf(stderr, "bitnet-chat: -f %s: is a directory\n", cfg->prompt_file);
                ok = false;
            } else {
                ok = !read_all(fd, cfg->prompt_file, &f, false);
            }
            if (fd >= 0) close(fd);
        }
        if (ok && f.n && b.n) ok = !buf_add(&b, "\n\n", 2);
        if (ok && f.n) ok = !buf_add(&b, f.p, f.n);
        free(f.p);
    }
    if (ok && cfg->prompt && !cfg->prompt_file && !from_stdin && !isatty(STDIN_FILENO)) {
        Buf in = {0};
        ok = !read_all(STDIN_FILENO, "stdin", &in, true);
        if (ok && in.n) ok = !buf_add(&b, "\n\n", 2) && !buf_add(&b, in.p, in.n);
        free(in.p);
    }
    bool visible = false;
    for (size_t i = 0; ok && i < b.n && !visible; i++)
        visible = b.p[i] && !strchr(" \t\r\n\v\f", b.p[i]);
    if (ok && !visible) {
        fprintf(stderr, "bitnet-chat: the prompt is empty%s\n",
                from_stdin          ? " (stdin had no text)"
                : cfg->prompt_file ? " (the file has no text)"
                                   : "");
        ok = false;
    }
    if (ok && memchr(b.p, 0, b.n)) {
        fprintf(stderr, "bitnet-chat: the prompt holds a NUL byte (a binary file?)\n");
        ok = false;
    }
    if (!ok) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* Waits for the load started by engine_create; 0 when loaded, -1 (message printed) if not. */
static int wait_loaded(Engine *e, int show_progress) {
    EngineEvent ev[16];
    int last_pct = -1;
    for (;;) {
        int n = engine_wait(e, ev, 16, 200);
        if (stop_requested()) {
            if (last_pct >= 0) fputc('\n', stderr);
            fprintf(stderr, "bitnet-chat: interrupted while loading the model\n");
            return -2;
        }
        for (int i = 0; i < n; i++) {
            switch (ev[i].type) {
            case EV_LOAD_PROGRESS: {
                int pct = (int)(ev[i].u.progress.frac * 100.0f + 0.5f);
                if (show_progress && pct != last_pct) {
                    fprintf(stderr, "\rloading model: %3d%% %-40s", pct, ev[i].u.progress.stage);
                    last_pct = pct;
                }
                break;
            }
            case EV_LOADED:
                if (last_pct >= 0) fprintf(stderr, "\r%-60s\r", "");
                return 0;
            case EV_LOAD_FAILED:
                if (last_pct >= 0) fprintf(stderr, "\r%-60s\r", "");
                fprintf(stderr, "bitnet-chat: cannot load the model: %s\n", ev[i].u.error.msg);
                return -1;
            default: break;
            }
        }
    }
}

/* "12.3", or "-" for a speed that was not measured (0: e.g. a reply of one token). */
static const char *speed_str(char *buf, size_t cap, double tok_s) {
    if (tok_s > 0 && isfinite(tok_s)) snprintf(buf, cap, "%.1f", tok_s);
    else snprintf(buf, cap, "-");
    return buf;
}

static void print_stats(const EngineStats *st, StopReason reason) {
    char ps[32], gs[32];
    fprintf(stderr,
            "bitnet-chat: prompt %d tokens (%s tok/s), reply %d tokens (%s tok/s), "
            "TTFT %.0f ms, context %d/%d, stop: %s",
            st->prompt_tokens, speed_str(ps, sizeof ps, st->prompt_tok_s), st->gen_tokens,
            speed_str(gs, sizeof gs, st->gen_tok_s), st->ttft_ms, st->ctx_used, st->ctx_size,
            stop_reason_name(reason));
    if (st->dropped_turns) fprintf(stderr, ", %d oldest turns left out", st->dropped_turns);
    fputc('\n', stderr);
}

void prompt_out_init(PromptOut *o, FILE *f) {
    memset(o, 0, sizeof *o);
    o->f = f;
    o->tty = isatty(fileno(f));
    o->ts.keep_newlines = 1;
    o->ended_newline = 1;
}

int prompt_out_write(PromptOut *o, const char *s, size_t n) {
    if (!o->err) {
        errno = 0;
        if ((o->tty ? termsafe_write(&o->ts, o->f, s, n) != 0 : fwrite(s, 1, n, o->f) != n) ||
            fflush(o->f))
            o->err = errno ? errno : EIO;
    }
    if (n > 0) o->ended_newline = s[n - 1] == '\n';
    return o->err ? -1 : 0;
}

void prompt_out_end(PromptOut *o) {
    if (o->tty && !o->err) termsafe_finish(&o->ts, o->f);
    if (!o->ended_newline && !o->err) fputc('\n', o->f);
    o->ended_newline = 1;
    errno = 0;
    if (!o->err && fflush(o->f)) o->err = errno ? errno : EIO;
}

int mode_prompt(const AppConfig *cfg) {
    const char *path = model_path_or_default(cfg);
    if (!path) {
        fprintf(stderr, "bitnet-chat: no model given and the demo model (assets/bitnet-demo.gguf) "
                        "was not found; use --model PATH\n");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_sigterm;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* Read before the model loads: an empty or unreadable input fails at once. */
    char *prompt = prompt_text(cfg);
    if (!prompt) {
        if (terminated_by) die_by_signal(terminated_by);
        return interrupted ? 130 : 1;
    }
    /* A reader that goes away (`| head -c 10`) must not kill the process before the reply is
     * saved: a failed write (EPIPE) stops the reply instead, and the process then ends by
     * SIGPIPE as it would have, quietly. */
    signal(SIGPIPE, SIG_IGN);

    EngineOptions eo = {.model_path = path, .infer = infer_options_from(cfg)};
    Err err = {{0}};
    Engine *e = engine_create(&eo, &err);
    if (!e) {
        fprintf(stderr, "bitnet-chat: %s\n", err.msg);
        free(prompt);
        return 1;
    }
    int loaded = wait_loaded(e, isatty(STDERR_FILENO));
    if (loaded < 0) {
        /* SIGTERM/SIGHUP end the process at once: joining the engine would wait for a load
         * that may be stuck in a read (nothing is saved yet). After Ctrl-C the load is cancelled
         * and joined; a second Ctrl-C ends the process if that takes too long. */
        if (loaded == -2 && terminated_by) die_by_signal(terminated_by);
        engine_destroy(e);
        free(prompt);
        return loaded == -2 ? 130 : 1;
    }

    ChatTurn turns[2];
    int n_turns = 0;
    if (cfg->system && cfg->system[0]) turns[n_turns++] = (ChatTurn){ROLE_SYSTEM, cfg->system};
    turns[n_turns++] = (ChatTurn){ROLE_USER, prompt};
    SamplerParams sp = sampler_params_default(); /* with the command line's settings */
    sampler_params_merge(&sp, &cfg->sampling);

    /* The exchange is recorded like a chat: the user message is committed before generation,
     * the reply is checkpointed while it streams and finalised with its figures. */
    Err warn = {{0}};
    History *h = history_open(cfg->db_path, cfg->no_history, &warn);
    if (!h) {
        fprintf(stderr, "bitnet-chat: out of memory\n");
        engine_destroy(e);
        free(prompt);
        return 1;
    }
    if (warn.msg[0]) fprintf(stderr, "bitnet-chat: %s\n", warn.msg);
    EngineModelInfo info;
    memset(&info, 0, sizeof info);
    engine_model_info(e, &info);
    app_absolute_path(info.path, sizeof info.path);
    if (cfg->ctx > info.ctx_size) ctx_capped_note(cfg->ctx, info.ctx_size);
    HistorySessionInfo si = {.model_name = info.name, .model_path = info.path,
                             .system_prompt = cfg->system, .sampling = sp};
    HistoryReplyInfo ri = {.model_name = info.name, .backend = info.backend,
                           .sampling = sp};
    history_begin_session(h, &si);
    history_add_user(h, prompt);

    uint64_t req = engine_submit(e, turns, n_turns, &sp);
    if (req) history_reply_begin(h, &ri);

    int rc = 1, done = 0, cancel_sent = 0;
    PromptOut out;
    prompt_out_init(&out, stdout);
    EngineEvent ev[32];
    while (!done) {
        if ((stop_requested() || out.err) && !cancel_sent) {
            engine_cancel(e);
            cancel_sent = 1;
        }
        int n = engine_wait(e, ev, 32, 100);
        for (int i = 0; i < n; i++) {
            if (ev[i].req != req) continue;
            switch (ev[i].type) {
            case EV_TOKEN:
                prompt_out_write(&out, ev[i].u.token.text, (size_t)ev[i].u.token.len);
                history_reply_append(h, ev[i].u.token.text, (size_t)ev[i].u.token.len);
                break;
            case EV_STATS: history_reply_stats(h, &ev[i].u.stats); break;
            case EV_ERROR:
                prompt_out_end(&out);
                fprintf(stderr, "bitnet-chat: %s\n", ev[i].u.error.msg);
                history_reply_error(h, ev[i].u.error.msg);
                break;
            case EV_DONE: {
                StopReason why = ev[i].u.done.reason;
                prompt_out_end(&out);
                history_reply_end(h, &ev[i].u.done.stats, why,
                                  why == STOP_CANCELLED || why == STOP_ERROR);
                if (why != STOP_ERROR) print_stats(&ev[i].u.done.stats, why);
                rc = why == STOP_ERROR ? 1 : why == STOP_CANCELLED ? 130 : 0;
                done = 1;
                break;
            }
            default: break;
            }
        }
        if (req == 0) break; /* refused at once; the error event was printed above */
    }
    engine_destroy(e);
    Err hw = {{0}};
    if (history_take_warning(h, &hw)) fprintf(stderr, "bitnet-chat: %s\n", hw.msg);
    if (history_flush_final(h, &hw)) fprintf(stderr, "bitnet-chat: %s\n", hw.msg);
    history_close(h);
    free(prompt);
    if (terminated_by) die_by_signal(terminated_by);
    if (out.err == EPIPE) die_by_signal(SIGPIPE);
    if (out.err) {
        fprintf(stderr, "bitnet-chat: writing the reply to stdout failed: %s\n",
                strerror(out.err));
        return 1;
    }
    return rc;
}

/* ---- perplexity ------------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len, Err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    /* A directory opens but reads as an error; an endless stream (/dev/zero) or a huge file
     * would first fill memory: both refused up front where the kind or size is known. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0) {
        const char *why = S_ISDIR(st.st_mode)                          ? "is a directory"
                          : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "is a device, not a text file"
                          : S_ISREG(st.st_mode) && (uint64_t)st.st_size > ((uint64_t)1 << 32)
                              ? "is larger than 4 GiB"
                              : NULL;
        if (why) {
            fclose(f);
            err_set(err, "%s: %s", path, why);
            return NULL;
        }
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *nb = cap > ((size_t)1 << 32) ? NULL : realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) {
        err_set(err, "%s: out of memory (or larger than 4 GiB)", path);
        return NULL;
    }
    if (bad) {
        free(buf);
        err_set(err, "%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static void print_ppl(FILE *to, double v) {
    if (v < 1e7) fprintf(to, "%.4f", v);
    else fprintf(to, "%.4e", v);
}

static void on_chunk(void *user, int chunk, int n_chunks, double running_ppl, double secs) {
    (void)user;
    if (chunk == 0) /* before the first value, so that a terminal shows it on a line of its own */
        fprintf(stderr, "perplexity: %.2f s per chunk, about %.0f s in all\n", secs,
                secs * n_chunks);
    printf("[%d]", chunk + 1);
    print_ppl(stdout, running_ppl);
    putchar(',');
    fflush(stdout);
}

int mode_perplexity(const AppConfig *cfg) {
    const char *file = cfg->npos > 0 ? cfg->pos[0] : NULL;
    if (!cfg->model || (!file && !cfg->kl_compare)) {
        fprintf(stderr, "bitnet-chat: usage: bitnet-chat perplexity --model M FILE [--ctx N]\n");
        return 2;
    }
    Err err = {{0}};
    char *text = NULL;
    size_t text_len = 0;
    PplKlBase base;
    memset(&base, 0, sizeof base);
    if (cfg->kl_compare) {
        /* the base file's tokens are scored, so a FILE given beside it is not read */
        if (ppl_kl_base_open(&base, cfg->kl_compare, &err)) {
            fprintf(stderr, "bitnet-chat: %s\n", err.msg);
            return 1;
        }
        if (file)
            fprintf(stderr, "bitnet-chat: %s is not read: the tokens of %s are scored\n", file,
                    cfg->kl_compare);
    } else {
        text = read_file(file, &text_len, &err);
        if (!text) {
            fprintf(stderr, "bitnet-chat: %s\n", err.msg);
            return 1;
        }
        if (text_len == 0) {
            fprintf(stderr, "bitnet-chat: %s is empty; perplexity needs a text to score\n", file);
            free(text);
            return 1;
        }
    }
    Model m;
    memset(&m, 0, sizeof m);
    Infer *inf = NULL;
    int32_t *ids = NULL, *tokens = NULL;
    int rc = 1;
    if (model_load(&m, cfg->model, NULL, &err) < 0) {
        fprintf(stderr, "bitnet-chat: cannot load the model: %s\n", err.msg);
        goto out;
    }
    size_t n_tok = 0;
    int bos = -1, n_ctx;
    if (cfg->kl_compare) {
        if (base.n_vocab != m.cfg.vocab_size) {
            fprintf(stderr, "bitnet-chat: %s was made with a vocabulary of %d, the model has %d\n",
                    cfg->kl_compare, base.n_vocab, m.cfg.vocab_size);
            goto out;
        }
        if (cfg->ctx > 0 && cfg->ctx != base.n_ctx) {
            fprintf(stderr, "bitnet-chat: %s was made with --ctx %d; leave --ctx out or give that\n",
                    cfg->kl_compare, base.n_ctx);
            goto out;
        }
        n_ctx = base.n_ctx;
        n_tok = (size_t)base.n_chunks * (size_t)n_ctx;
        if (m.cfg.ctx_len > 0 && n_ctx > m.cfg.ctx_len) {
            fprintf(stderr, "bitnet-chat: %s uses chunks of %d tokens, more than the model's "
                            "context of %d\n", cfg->kl_compare, n_ctx, m.cfg.ctx_len);
            goto out;
        }
    } else {
        if (!m.tok) {
            fprintf(stderr, "bitnet-chat: %s: the model has no tokenizer\n", cfg->model);
            goto out;
        }
        size_t n_ids = 0;
        if (tokenizer_encode(m.tok, text, text_len, &ids, &n_ids, &err) < 0) {
            fprintf(stderr, "bitnet-chat: %s: %s\n", file, err.msg);
            goto out;
        }
        bos = tokenizer_bos(m.tok);
        n_tok = n_ids + (bos >= 0 ? 1 : 0);
        tokens = malloc((n_tok ? n_tok : 1) * sizeof *tokens);
        if (!tokens) {
            fprintf(stderr, "bitnet-chat: out of memory\n");
            goto out;
        }
        if (bos >= 0) tokens[0] = bos;
        memcpy(tokens + (bos >= 0), ids, n_ids * sizeof *ids);
        n_ctx = cfg->ctx > 0 ? cfg->ctx : PPL_DEFAULT_CTX;
        if (m.cfg.ctx_len > 0 && n_ctx > m.cfg.ctx_len) {
            n_ctx = m.cfg.ctx_len;
            if (cfg->ctx > 0) ctx_capped_note(cfg->ctx, n_ctx);
        }
        if (n_ctx < PPL_MIN_CTX) {
            fprintf(stderr, "bitnet-chat: --ctx %d is too small for perplexity (at least %d)\n", n_ctx,
                    PPL_MIN_CTX);
            goto out;
        }
        if (n_tok < (size_t)n_ctx) {
            fprintf(stderr,
                    "bitnet-chat: %s has %zu tokens; perplexity with --ctx %d needs at least %d "
                    "(use a longer text or a smaller --ctx)\n",
                    file, n_tok, n_ctx, n_ctx);
            goto out;
        }
    }
    if (cfg->chunks > 0 && n_tok > (size_t)cfg->chunks * (size_t)n_ctx)
        n_tok = (size_t)cfg->chunks * (size_t)n_ctx;
    if (cfg->kl_base) {
        /* the logits dominate: vocab floats for each scored position (9 GB for 70 chunks of 512
         * with a 128256-token vocabulary), so say so before the run rather than after */
        const double gb = (double)(n_tok / (size_t)n_ctx) * (double)(n_ctx - 1 - n_ctx / 2) *
                          (double)m.cfg.vocab_size * 4.0 / 1e9;
        fprintf(stderr, "perplexity: %s will take %.2f GB%s\n", cfg->kl_base, gb,
                gb > 1.0 && !cfg->chunks ? " (--chunks N limits it)" : "");
    }
    InferOptions io = infer_options_from(cfg);
    io.ctx = n_ctx;
    inf = infer_create(&m, &io, &err);
    if (!inf) {
        fprintf(stderr, "bitnet-chat: %s\n", err.msg);
        goto out;
    }
    char desc[256] = "";
    infer_describe(inf, desc, sizeof desc);
    fprintf(stderr, "perplexity: %zu tokens, %zu chunks of %d, scoring the last %d of each (%s)\n",
            n_tok, n_tok / (size_t)n_ctx, n_ctx, n_ctx - 1 - n_ctx / 2, desc);
    PplResult res;
    PplKlResult klr;
    PplKl kl = {cfg->kl_base, cfg->kl_compare ? &base : NULL};
    if (perplexity_run_kl(inf, m.cfg.vocab_size, cfg->kl_compare ? base.tokens : tokens, n_tok, n_ctx,
                          bos, &kl, on_chunk, NULL, &res, &klr, &err) < 0) {
        fprintf(stderr, "\nbitnet-chat: %s\n", err.msg);
        goto out;
    }
    printf("\nFinal estimate: PPL = ");
    print_ppl(stdout, res.ppl);
    printf(" +/- ");
    print_ppl(stdout, res.ppl_stderr);
    printf("\n");
    if (cfg->kl_compare) {
        printf("Base PPL = ");
        print_ppl(stdout, klr.base_ppl);
        printf("\nDelta PPL = %+.6f (%+.4f%%)\n", res.ppl - klr.base_ppl,
               100.0 * (res.ppl / klr.base_ppl - 1.0));
        printf("Mean KL divergence = %.6g +/- %.2g nats\n", klr.kl_mean, klr.kl_stderr);
        printf("99th percentile KL divergence = %.6g\nMaximum KL divergence = %.6g\n", klr.kl_p99,
               klr.kl_max);
        printf("Same top-1 = %.4f%% (%ld of %ld positions)\n", 100.0 * klr.top1,
               (long)lround(klr.top1 * (double)klr.n), klr.n);
        printf("Same top-1 without near-ties = %.4f%% (%ld of %ld positions; a near-tie: the base's "
               "top two within %g%% of its largest |logit|)\n", 100.0 * klr.top1_clear,
               (long)lround(klr.top1_clear * (double)klr.n_clear), klr.n_clear, 100.0 * PPL_KL_NEAR_TIE);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) { /* the result is the whole point: say so */
        fprintf(stderr, "bitnet-chat: perplexity: writing the result to stdout failed: %s\n",
                strerror(errno ? errno : EIO));
        goto out;
    }
    if (cfg->kl_base)
        fprintf(stderr, "perplexity: logits of %ld positions saved to %s\n", res.n_scored, cfg->kl_base);
    fprintf(stderr, "perplexity: %ld tokens scored in %.1f s (%.1f tokens/s evaluated)\n",
            res.n_scored, res.seconds, res.seconds > 0 ? res.n_evaluated / res.seconds : 0.0);
    rc = 0;
out:
    ppl_kl_base_close(&base);
    free(tokens);
    free(ids);
    infer_destroy(inf);
    model_free(&m);
    free(text);
    return rc;
}
