/* `bitnet-chat tokenize MODEL_OR_TOKENIZER [TEXT]`: prints the token ids of TEXT (or of all of
 * stdin, byte for byte) separated by spaces. With --jsonl, reads lines {"text": "..."} and writes
 * lines {"ids": [...]}. Plain text only: special-token strings in the text are not specials. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/modes.h"
#include "infer/model.h"
#include "infer/tokenizer.h"

/* Text read from stdin is held in memory whole; an endless stream (/dev/zero) stops here. */
#define STDIN_MAX ((size_t)1 << 30)

static char *read_stream(FILE *f, size_t *len, int *too_big) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    *too_big = 0;
    if (!buf) return NULL;
    for (;;) {
        if (n == cap && cap >= STDIN_MAX) {
            free(buf);
            *too_big = 1;
            return NULL;
        }
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int print_ids(const Tokenizer *t, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0;
    Err err = {{0}};
    if (tokenizer_encode(t, text, len, &ids, &n, &err) < 0) {
        fprintf(stderr, "bitnet-chat: tokenize: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    return 0;
}

static int run_jsonl(const Tokenizer *t) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int rc = 0;
    errno = 0;
    while ((got = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        /* A blank line (often the last one) holds no record: skipped, nothing written. */
        if (strspn(line, " \t\r\n") == (size_t)got) continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)got, JSON_ALLOW_NUL, &je);
        json_t *text = json_object_get(o, "text");
        if (!json_is_string(text)) {
            fprintf(stderr, "bitnet-chat: tokenize: stdin line %ld: %s\n", lineno,
                    o ? "expected an object with a string \"text\"" : je.text);
            json_decref(o);
            rc = 1;
            break;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        Err err = {{0}};
        if (tokenizer_encode(t, json_string_value(text), json_string_length(text), &ids, &n,
                             &err) < 0) {
            fprintf(stderr, "bitnet-chat: tokenize: stdin line %ld: %s\n", lineno, err.msg);
            json_decref(o);
            rc = 1;
            break;
        }
        fputs("{\"ids\": [", stdout);
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        fputs("]}\n", stdout);
        free(ids);
        json_decref(o);
    }
    /* A read error (stdin a directory, an I/O error) is not the end of the input: it ended
     * with exit 0 and no output. */
    if (rc == 0 && ferror(stdin)) {
        fprintf(stderr, "bitnet-chat: tokenize: cannot read stdin: %s\n", strerror(errno));
        rc = 1;
    }
    free(line);
    return rc;
}

int mode_tokenize(const AppConfig *cfg) {
    if (cfg->npos < 1) {
        fprintf(stderr, "bitnet-chat: usage: bitnet-chat tokenize MODEL_OR_TOKENIZER [TEXT]\n");
        return 2;
    }
    Err err = {{0}};
    /* A tokenizer.json, an HF folder or a GGUF file (its embedded vocabulary). */
    Tokenizer *t = model_load_tokenizer(cfg->pos[0], &err);
    if (!t) {
        fprintf(stderr, "bitnet-chat: tokenize: %s\n", err.msg);
        return 1;
    }
    int rc;
    if (cfg->jsonl) {
        if (cfg->npos > 1) {
            fprintf(stderr, "bitnet-chat: tokenize: --jsonl reads stdin; TEXT is not allowed\n");
            rc = 2;
        } else {
            rc = run_jsonl(t);
        }
    } else if (cfg->npos > 1) {
        rc = print_ids(t, cfg->pos[1], strlen(cfg->pos[1]));
    } else {
        size_t len = 0;
        int too_big = 0;
        errno = 0;
        char *text = read_stream(stdin, &len, &too_big);
        if (!text) {
            if (too_big)
                fprintf(stderr, "bitnet-chat: tokenize: stdin holds more than %zu MiB; split it "
                                "(or use --jsonl)\n", STDIN_MAX >> 20);
            else
                fprintf(stderr, "bitnet-chat: tokenize: cannot read stdin: %s\n",
                        errno ? strerror(errno) : "out of memory");
            rc = 1;
        } else {
            rc = print_ids(t, text, len);
            free(text);
        }
    }
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "bitnet-chat: tokenize: cannot write the output\n");
        rc = 1;
    }
    tokenizer_free(t);
    return rc;
}
