/* Writes a model file with random ternary weights at a published shape, for measuring what a
 * user gets (`bitnet-chat -p --model FILE`) on shapes whose real weights are too large to carry
 * (the device machine has no network). Not a test:
 *   ./build/tests/make_bench_model TOKENIZER OUT.gguf [2b|llama3-8b] [seed]
 * TOKENIZER is a tokenizer.json (or a GGUF/HF folder) whose vocabulary the shape's vocab size
 * holds, e.g. ../shared/tokenizer/llama3/tokenizer.json for both presets. Speed does not depend
 * on the weight values; replies are noise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/gguf_write.h"
#include "infer/model.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: make_bench_model TOKENIZER OUT.gguf [2b|llama3-8b] [seed]\n");
        return 2;
    }
    const char *shape = argc > 3 ? argv[3] : "2b";
    const unsigned long long seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    ModelConfig cfg;
    if (!strcmp(shape, "2b")) cfg = model_config_bitnet_2b();
    else if (!strcmp(shape, "llama3-8b")) cfg = model_config_llama3_8b();
    else {
        fprintf(stderr, "make_bench_model: unknown shape \"%s\" (2b or llama3-8b)\n", shape);
        return 2;
    }
    Err err = {{0}};
    Model m;
    if (model_init_random(&m, &cfg, seed, &err)) {
        fprintf(stderr, "make_bench_model: %s\n", err.msg);
        return 1;
    }
    m.tok = model_load_tokenizer(argv[1], &err);
    if (!m.tok) {
        fprintf(stderr, "make_bench_model: %s\n", err.msg);
        model_free(&m);
        return 1;
    }
    char note[512] = "";
    const int rc = gguf_write_model(&m, argv[2], note, sizeof note, &err);
    if (rc) fprintf(stderr, "make_bench_model: %s\n", err.msg);
    else printf("make_bench_model: wrote %s (%s shapes, seed %llu)%s%s\n", argv[2], cfg.name, seed,
                note[0] ? ": " : "", note);
    model_free(&m);
    return rc ? 1 : 0;
}
