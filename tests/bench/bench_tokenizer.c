/* Tokenizer encoding speed, one thread.
 *   bench_tokenizer [--tokenizer PATH] [--mb N] [--reps N] [TEXT_FILE]
 * The text (default: the GPL-3 text from /usr/share/common-licenses, English) is repeated up to
 * N MB (default 8). Each stage runs `reps` times (default 5); the best time is reported as MB/s
 * of input text, next to baselines measured in the same run: memcpy of the text and the
 * pre-tokenization by PCRE2 alone (the reference path). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/tokenizer.h"
#include "test_util.h"

typedef enum { ST_MEMCPY, ST_PRE_REF, ST_PRE_FAST, ST_ENC_REF, ST_ENC_FAST } Stage;

static volatile size_t sink;

static double run_stage(Stage st, const Tokenizer *t, const char *text, size_t n, char *scratch,
                        size_t *count) {
    Err err = {{0}};
    double t0 = now_s();
    size_t c = 0;
    if (st == ST_MEMCPY) {
        memcpy(scratch, text, n);
        c = (unsigned char)scratch[n / 2];
    } else if (st == ST_PRE_REF || st == ST_PRE_FAST) {
        size_t *b = NULL;
        if (tokenizer_pretokenize(t, text, n, st == ST_PRE_REF, &b, &c, &err) < 0) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            exit(1);
        }
        free(b);
    } else {
        int32_t *ids = NULL;
        int rc = st == ST_ENC_REF ? tokenizer_encode_reference(t, text, n, &ids, &c, &err)
                                  : tokenizer_encode(t, text, n, &ids, &c, &err);
        if (rc < 0) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            exit(1);
        }
        free(ids);
    }
    double dt = now_s() - t0;
    sink += c;
    *count = c;
    return dt;
}

int main(int argc, char **argv) {
    const char *tok_path = BN_TOK_DIR "/tokenizer.json";
    const char *text_path = "/usr/share/common-licenses/GPL-3";
    double mb = 8;
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (argv[i][0] != '-') text_path = argv[i];
        else {
            fprintf(stderr, "usage: bench_tokenizer [--tokenizer PATH] [--mb N] [--reps N] [TEXT_FILE]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (mb <= 0) mb = 1;
    Err err = {{0}};
    double t0 = now_s();
    Tokenizer *t = tokenizer_load_json(tok_path, &err);
    if (!t) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    double load_s = now_s() - t0;
    size_t flen = 0;
    char *file = read_file(text_path, &flen);
    if (!file || flen == 0) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", text_path);
        return 1;
    }
    size_t target = (size_t)(mb * 1e6), n = 0;
    if (target < flen) target = flen;
    char *text = malloc(target + flen), *scratch = malloc(target + flen);
    int copies = 0;
    while (n < target) memcpy(text + n, file, flen), n += flen, copies++;

    printf("bench_tokenizer: method\n");
    printf("  tokenizer   %s (loaded in %.2f s)\n", tok_path, load_s);
    printf("  text        %s, %zu bytes, repeated %d times = %zu bytes\n", text_path, flen, copies, n);
    printf("  timing      best of %d runs per stage, one thread, CLOCK_MONOTONIC\n", reps);
    printf("  MB/s        input bytes / 1e6 / seconds\n\n");
    static const char *names[] = {"memcpy (baseline)", "pre-tokenize, PCRE2 only (baseline)",
                                  "pre-tokenize, fast", "encode, reference", "encode, fast"};
    double best[5];
    size_t counts[5];
    for (int st = 0; st < 5; st++) {
        best[st] = 1e30;
        int r = st == ST_ENC_REF ? (reps < 2 ? reps : 2) : reps;
        for (int k = 0; k < r; k++) {
            double dt = run_stage((Stage)st, t, text, n, scratch, &counts[st]);
            if (dt < best[st]) best[st] = dt;
        }
    }
    printf("  %-40s %10s %12s %14s\n", "stage", "MB/s", "items", "vs PCRE2 pre");
    for (int st = 0; st < 5; st++) {
        const char *what = st == ST_MEMCPY ? "" : st <= ST_PRE_FAST ? "pieces" : "tokens";
        printf("  %-40s %10.1f %12zu %-6s %6.2fx\n", names[st], n / 1e6 / best[st],
               st == ST_MEMCPY ? (size_t)0 : counts[st], what, best[ST_PRE_REF] / best[st]);
    }
    printf("\n  encode fast: %.1f MB/s, %.2f bytes/token, %.1f M tokens/s\n",
           n / 1e6 / best[ST_ENC_FAST], (double)n / (double)counts[ST_ENC_FAST],
           counts[ST_ENC_FAST] / 1e6 / best[ST_ENC_FAST]);
    if (counts[ST_ENC_FAST] != counts[ST_ENC_REF] || counts[ST_PRE_FAST] != counts[ST_PRE_REF])
        printf("  WARNING: fast and reference counts differ\n");
    free(text);
    free(scratch);
    free(file);
    tokenizer_free(t);
    return 0;
}
