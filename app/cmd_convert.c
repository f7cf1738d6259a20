/* bitnet-chat convert SRC OUT.gguf: loads any supported model form (GGUF I2_S/TQ1_0/TQ2_0/
 * F16/BF16/F32, Hugging Face bf16 or packed directory) and writes it as an official-layout
 * I2_S GGUF (infer/gguf_write.h). The written file is then loaded back and compared with the
 * source weight by weight, so a successful convert is a verified one. */
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/modes.h"
#include "infer/gguf_write.h"
#include "infer/model.h"

/* Percent on one terminal line; nothing when stderr is not a terminal (scripts, logs). */
static int progress_open; /* a progress line is on screen without its newline */

static void show_progress(void *user, float frac, const char *stage) {
    const char *what = user;
    static int last = -1;
    if (!isatty(2)) return;
    int pct = (int)(frac * 100.0f + 0.5f);
    if (pct == last) return;
    last = pct;
    fprintf(stderr, "\r%s: %3d%% %-12s", what, pct, stage);
    progress_open = 1;
    if (pct >= 100) {
        fputc('\n', stderr);
        last = -1;
        progress_open = 0;
    }
}

static void fail_line(const char *fmt, const char *a, const char *b) {
    if (progress_open) fputc('\n', stderr);
    progress_open = 0;
    fprintf(stderr, fmt, a, b);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* A Hugging Face source is a folder (or a config.json / .safetensors inside one); its files are
 * read while the output is written, so an output that replaces one of them (model.safetensors,
 * config.json, tokenizer.json, ...) would destroy the source. True for such an output. */
static int output_replaces_hf_source(const char *src, const char *out) {
    struct stat st, od, sd;
    if (stat(out, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    if (!ends_with(out, ".safetensors") && !ends_with(out, ".json")) return 0;
    char sbuf[4096], obuf[4096];
    snprintf(sbuf, sizeof sbuf, "%s", src);
    snprintf(obuf, sizeof obuf, "%s", out);
    const char *src_dir = src;
    if (stat(src, &sd) != 0) return 0;
    if (!S_ISDIR(sd.st_mode)) src_dir = dirname(sbuf);
    if (stat(src_dir, &sd) != 0 || stat(dirname(obuf), &od) != 0) return 0;
    return sd.st_dev == od.st_dev && sd.st_ino == od.st_ino;
}

/* Ctrl-C, SIGTERM or SIGHUP while writing: the partial temporary file is removed, then the
 * process ends by the signal as it would have. */
static void on_stop_signal(int sig) {
    gguf_write_remove_partial();
    signal(sig, SIG_DFL);
    raise(sig);
}

int mode_convert(const AppConfig *cfg) {
    if (cfg->npos != 2) {
        fprintf(stderr, "bitnet-chat: usage: bitnet-chat convert SRC OUT.gguf\n");
        return 2;
    }
    const char *src = cfg->pos[0], *out = cfg->pos[1];
    struct stat so, sd;
    if (stat(src, &so) == 0 && stat(out, &sd) == 0 && so.st_dev == sd.st_dev && so.st_ino == sd.st_ino) {
        fprintf(stderr, "bitnet-chat: convert: %s: output would overwrite the source\n", out);
        return 1;
    }
    if (output_replaces_hf_source(src, out)) {
        fprintf(stderr, "bitnet-chat: convert: %s: output would overwrite a file of the source "
                        "model folder\n", out);
        return 1;
    }
    Err oerr = {{0}};
    /* Checked before the (long) load; gguf_write_model checks again. */
    if (gguf_write_check_output(out, NULL, 0, &oerr)) {
        fprintf(stderr, "bitnet-chat: convert: %s\n", oerr.msg);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    Model m;
    Err err = {{0}};
    ModelLoadOptions opt = {show_progress, (void *)"loading", NULL};
    if (model_load(&m, src, &opt, &err)) {
        fail_line("bitnet-chat: convert: %s%s\n", err.msg, "");
        return 1;
    }
    char note[256];
    if (gguf_write_model(&m, out, note, sizeof note, &err)) {
        fail_line("bitnet-chat: convert: %s%s\n", err.msg, "");
        model_free(&m);
        return 1;
    }
    Model back;
    ModelLoadOptions opt2 = {show_progress, (void *)"verifying", NULL};
    /* What could not be verified is removed: a file that does not load, or loads as other
     * weights, must not be left behind looking like a converted model. */
    if (model_load(&back, out, &opt2, &err)) {
        unlink(out);
        fail_line("bitnet-chat: convert: wrote %s but it does not load back (removed): %s\n", out,
                  err.msg);
        model_free(&m);
        return 1;
    }
    char why[256];
    int same = model_weights_equal(&m, &back, why, sizeof why) == 0;
    if (!same) {
        unlink(out);
        fail_line("bitnet-chat: convert: %s does not match the source after writing (removed): %s\n",
                  out, why);
    } else
        printf("wrote %s (%s, %d layers, dim %d, vocab %d; I2_S; verified bit-identical)%s%s\n", out,
               m.format, m.cfg.n_layers, m.cfg.dim, m.cfg.vocab_size, note[0] ? "; " : "", note);
    model_free(&back);
    model_free(&m);
    return same ? 0 : 1;
}
