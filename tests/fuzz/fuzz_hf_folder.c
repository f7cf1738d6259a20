/* libFuzzer target: the whole Hugging Face folder load (model_load on a directory) from one
 * input. The input is split at each "\n%%FILE%%\n" into, in order:
 *   config.json, tokenizer.json, tokenizer_config.json, model.safetensors.index.json,
 *   then the weights: model.safetensors when the index part is empty, else the shards
 *   model-00001-of-0000N.safetensors ... (N = the number of parts left, at most 4).
 * An absent part (fewer separators) leaves that file out, so missing-file paths are fuzzed
 * too. The files are written to a private directory under /dev/shm (tmpfs) that is emptied
 * before each input. When the model loads, its tokenizer encodes and decodes a short text. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/model.h"
#include "infer/tokenizer.h"

static const char SEP[] = "\n%%FILE%%\n";
enum { MAX_PARTS = 8 };

static char dir[256];
static volatile uint64_t sink;

static void write_file(const char *name, const uint8_t *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort(); /* the harness itself failed: stop rather than fuzz nothing */
    if (n && fwrite(p, 1, n, f) != n) abort();
    if (fclose(f) != 0) abort();
}

static void clear_dir(void) {
    static const char *names[] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                  "model.safetensors.index.json", "model.safetensors"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    for (int k = 1; k <= 4; k++)
        for (int n = 1; n <= 4; n++) {
            snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, k, n);
            unlink(path);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/fuzz-hf-%d-XXXXXX", (int)getpid());
        if (!mkdtemp(dir)) {
            snprintf(dir, sizeof dir, "/tmp/fuzz-hf-%d-XXXXXX", (int)getpid());
            if (!mkdtemp(dir)) abort();
        }
    }
    clear_dir();
    const uint8_t *part[MAX_PARTS];
    size_t len[MAX_PARTS];
    int n = 0;
    const uint8_t *p = data, *end = data + size;
    const size_t sl = sizeof SEP - 1;
    while (n < MAX_PARTS) {
        const uint8_t *q = n < MAX_PARTS - 1 ? memmem(p, (size_t)(end - p), SEP, sl) : NULL;
        part[n] = p;
        len[n] = q ? (size_t)(q - p) : (size_t)(end - p);
        n++;
        if (!q) break;
        p = q + sl;
    }
    static const char *fixed[4] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                   "model.safetensors.index.json"};
    for (int i = 0; i < n && i < 4; i++)
        if (i != 3 || len[3]) write_file(fixed[i], part[i], len[i]);
    if (n > 4) {
        if (n > 3 && len[3] == 0) {
            write_file("model.safetensors", part[4], len[4]);
        } else {
            const int shards = n - 4;
            for (int k = 0; k < shards; k++) {
                char name[64];
                snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, shards);
                write_file(name, part[4 + k], len[4 + k]);
            }
        }
    }
    Model m;
    Err err;
    if (model_load(&m, dir, NULL, &err) == 0) {
        uint64_t acc = (uint64_t)m.cfg.n_stop + (uint64_t)m.cfg.bos_id;
        if (m.tok) {
            static const char text[] = "Hello, world! 123 \xC3\xA9t\xC3\xA9 <|eot_id|>";
            int32_t *ids = NULL;
            size_t n_ids = 0;
            Err e2;
            if (tokenizer_encode(m.tok, text, sizeof text - 1, &ids, &n_ids, &e2) == 0)
                for (size_t i = 0; i < n_ids; i++) {
                    size_t bl = 0;
                    const char *b = tokenizer_token_bytes(m.tok, ids[i], &bl);
                    if (!b) abort(); /* an id the encoder made must decode */
                    acc += bl ? (uint8_t)b[bl - 1] : 0;
                }
            free(ids);
        }
        sink = acc;
        model_free(&m);
    }
    return 0;
}
