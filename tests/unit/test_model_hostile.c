/* Hostile model files: every fixture truncated at many points and overwritten with random bytes
 * (many seeds) in its header / metadata / tensor-table region, then loaded. Each load must end
 * in a clean one-line error naming the file, or in a successful load whose every referenced
 * byte can be read (ASan checks that in the sanitizer build). Counts are printed. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "infer/gguf.h"
#include "infer/model.h"
#include "infer/safetensors.h"
#include "kernels/w2a8.h"

#define FIXDIR BN_TEST_DATA "/models"

static long n_tried, n_failed_clean, n_loaded;
static char tmpdir[256];

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    REQUIRE(p && fread(p, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

static void spill(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(p, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

/* Reads every byte a loaded Model points at (ASan turns a bad pointer into a failure). */
static volatile uint32_t sink;
static void touch(const Model *m) {
    uint32_t acc = 0;
    const ModelConfig *c = &m->cfg;
    size_t es = m->tok_embd.type == FT_F32 ? 4 : 2;
    const uint8_t *e = m->tok_embd.data;
    for (size_t i = 0; i < (size_t)m->tok_embd.rows * m->tok_embd.cols * es; i += 61) acc += e[i];
    acc += e[(size_t)m->tok_embd.rows * m->tok_embd.cols * es - 1];
    for (int i = 0; i < c->dim; i++) acc += (uint32_t)m->output_norm[i];
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *lw = &m->layers[l];
        const TernaryMatrix *t[7] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->w_gate, &lw->w_up, &lw->w_down};
        for (int i = 0; i < 7; i++) {
            size_t nb = (size_t)t[i]->n_out * i2s_row_bytes(t[i]->n_in_pad);
            for (size_t b = 0; b < nb; b += 13) acc += t[i]->codes[b];
            acc += t[i]->codes[nb - 1];
        }
        for (int i = 0; i < c->dim; i++)
            acc += (uint32_t)(lw->attn_norm[i] + lw->ffn_norm[i] + lw->attn_sub_norm[i]);
        for (int i = 0; i < c->ffn_dim; i++) acc += (uint32_t)lw->ffn_sub_norm[i];
    }
    sink = acc;
}

/* Loads path; returns 0 if loaded, 1 if it failed cleanly. */
static int try_load(const char *path, const char *must_name) {
    Model m;
    Err err = {{0}};
    n_tried++;
    if (model_load(&m, path, NULL, &err) == 0) {
        touch(&m);
        model_free(&m);
        n_loaded++;
        return 0;
    }
    n_failed_clean++;
    CHECK_MSG(err.msg[0] && !strchr(err.msg, '\n'), "error must be one non-empty line: [%s]", err.msg);
    if (must_name) CHECK_MSG(strstr(err.msg, must_name) != NULL, "error should name %s: %s", must_name, err.msg);
    CHECK(m.storage == NULL && m.layers == NULL && m.tok == NULL);
    return 1;
}

/* ---- GGUF ------------------------------------------------------------------------------------- */

static void hostile_gguf(const char *fixture, int n_trunc, int n_corrupt_parse, int n_corrupt_load) {
    char src[512], dst[512];
    snprintf(src, sizeof src, FIXDIR "/%s", fixture);
    snprintf(dst, sizeof dst, "%s/%s", tmpdir, fixture);
    size_t n;
    uint8_t *orig = slurp(src, &n);
    GgufFile g;
    Err err;
    REQUIRE(gguf_parse(&g, orig, n, src, &err) == 0);
    uint64_t hdr = g.data_offset, data_end = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++)
        if (g.tensors[i].offset + g.tensors[i].nbytes + hdr > data_end)
            data_end = g.tensors[i].offset + g.tensors[i].nbytes + hdr;
    gguf_close(&g);

    /* 1. Parser alone, every truncation point in the header and a sweep through the data. */
    long parse_fail = 0, parse_n = 0;
    for (size_t cut = 0; cut < n; cut += cut < hdr + 64 ? 1 : 997) {
        uint8_t *p = malloc(cut ? cut : 1); /* exact-size copy so ASan sees any overread */
        memcpy(p, orig, cut);
        int rc = gguf_parse(&g, p, cut, "cut.gguf", &err);
        parse_n++;
        if (rc == 0) gguf_close(&g);
        else parse_fail++;
        CHECK_MSG(rc != 0 || cut >= data_end, "%s cut at %zu of %zu parsed", fixture, cut, n);
        if (rc) CHECK(strstr(err.msg, "cut.gguf") != NULL);
        free(p);
    }
    printf("%s: %ld truncations parsed in memory, %ld refused\n", fixture, parse_n, parse_fail);
    n_tried += parse_n;
    n_failed_clean += parse_fail;
    n_loaded += parse_n - parse_fail;

    /* 2. Full loads of truncated files. */
    for (int i = 0; i < n_trunc; i++) {
        size_t cut = i < n_trunc / 2 ? (size_t)(rnd() % (hdr + 1)) : (size_t)(rnd() % n);
        spill(dst, orig, cut);
        int failed = try_load(dst, fixture);
        CHECK_MSG(failed || cut >= data_end, "%s truncated at %zu loaded", fixture, cut);
    }

    /* 3. Random bytes in the header/metadata/tensor-table region: parser many times, loader
     *    a subset; both must fail cleanly or succeed with sane pointers. */
    uint8_t *p = malloc(n);
    static const uint8_t specials[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0x24, 0x23, 0x22};
    long cp_fail = 0;
    for (int i = 0; i < n_corrupt_parse + n_corrupt_load; i++) {
        memcpy(p, orig, n);
        int k = 1 + (int)(rnd() % 8);
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)(rnd() % hdr);
            p[at] = rnd() % 2 ? specials[rnd() % sizeof specials] : (uint8_t)rnd();
        }
        if (i < n_corrupt_parse) {
            int rc = gguf_parse(&g, p, n, "bad.gguf", &err);
            n_tried++;
            if (rc == 0) {
                /* every tensor's bytes must be inside the buffer */
                uint32_t acc = 0;
                for (uint64_t t = 0; t < g.n_tensors; t++)
                    acc += g.tensors[t].data[0] + g.tensors[t].data[g.tensors[t].nbytes - 1];
                sink = acc;
                gguf_close(&g);
                n_loaded++;
            } else {
                cp_fail++;
                n_failed_clean++;
            }
        } else {
            spill(dst, p, n);
            try_load(dst, NULL);
        }
    }
    printf("%s: %d header corruptions parsed (%ld refused), %d loaded via model_load\n", fixture,
           n_corrupt_parse, cp_fail, n_corrupt_load);

    /* 4. Random bytes anywhere in the tensor data: benign for I2_S codes, refused where the
     *    values stop being one ternary matrix with a finite scale. */
    for (int i = 0; i < 40; i++) {
        memcpy(p, orig, n);
        for (int j = 0; j < 16; j++) p[hdr + rnd() % (n - hdr)] = (uint8_t)rnd();
        spill(dst, p, n);
        try_load(dst, NULL);
    }
    free(p);
    free(orig);
    unlink(dst);
}

/* ---- safetensors / HF directories ------------------------------------------------------------- */

static void copy_dir(const char *from, const char *to) {
    mkdir(to, 0755);
    DIR *d = opendir(from);
    REQUIRE(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char a[768], b[768];
        snprintf(a, sizeof a, "%s/%s", from, de->d_name);
        snprintf(b, sizeof b, "%s/%s", to, de->d_name);
        size_t n;
        uint8_t *p = slurp(a, &n);
        spill(b, p, n);
        free(p);
    }
    closedir(d);
}

static void hostile_hf(const char *fixture, const char *victim, int n_trunc, int n_corrupt) {
    char src[512], dst[512], vsrc[600], vdst[600];
    snprintf(src, sizeof src, FIXDIR "/%s", fixture);
    snprintf(dst, sizeof dst, "%s/%s", tmpdir, fixture);
    copy_dir(src, dst);
    snprintf(vsrc, sizeof vsrc, "%s/%s", src, victim);
    snprintf(vdst, sizeof vdst, "%s/%s", dst, victim);
    size_t n;
    uint8_t *orig = slurp(vsrc, &n);
    int is_st = strstr(victim, ".safetensors") && !strstr(victim, ".json");
    uint64_t hlen = 0;
    if (is_st) memcpy(&hlen, orig, 8);
    const size_t region = is_st ? (size_t)hlen + 8 : n;

    /* parser alone (safetensors): every truncation point in the header */
    if (is_st) {
        long fails = 0, tried = 0;
        for (size_t cut = 0; cut < n; cut += cut < region + 16 ? 1 : 499) {
            uint8_t *p = malloc(cut ? cut : 1);
            memcpy(p, orig, cut);
            StSet set = {0};
            Err err;
            int rc = st_parse(&set, 0, p, cut, "cut.safetensors", &err);
            tried++;
            if (rc) {
                fails++;
                CHECK(strstr(err.msg, "cut.safetensors") != NULL);
            }
            CHECK_MSG(rc != 0 || cut == n, "%s cut at %zu parsed", victim, cut);
            st_close(&set);
            free(p);
        }
        printf("%s/%s: %ld truncations parsed in memory, %ld refused\n", fixture, victim, tried, fails);
        n_tried += tried;
        n_failed_clean += fails;
        n_loaded += tried - fails;
    }
    for (int i = 0; i < n_trunc; i++) {
        size_t cut = i < n_trunc / 2 ? (size_t)(rnd() % (region + 1)) : (size_t)(rnd() % n);
        spill(vdst, orig, cut);
        int failed = try_load(dst, NULL);
        CHECK_MSG(failed || cut == n || !is_st, "%s/%s truncated at %zu loaded", fixture, victim, cut);
    }
    uint8_t *p = malloc(n);
    static const uint8_t specials[] = {'"', '{', '}', '[', ']', ',', ':', '9', '-', 0, 0xff, 'e'};
    for (int i = 0; i < n_corrupt; i++) {
        memcpy(p, orig, n);
        int k = 1 + (int)(rnd() % 4);
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)(rnd() % region);
            p[at] = rnd() % 2 ? specials[rnd() % sizeof specials] : (uint8_t)rnd();
        }
        spill(vdst, p, n);
        try_load(dst, NULL);
    }
    spill(vdst, orig, n);
    CHECK_MSG(try_load(dst, NULL) == 0, "%s restored copy must load", fixture);
    free(p);
    free(orig);
}

int main(int argc, char **argv) {
    int scale = argc > 1 ? atoi(argv[1]) : 1; /* a larger run: test_model_hostile 10 */
    if (scale < 1) scale = 1;
    rng_state = 0x9e3779b97f4a7c15ull;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bn-hostile-XXXXXX");
    REQUIRE(mkdtemp(tmpdir));
    hostile_gguf("i2s.gguf", 150 * scale, 4000 * scale, 300 * scale);
    hostile_gguf("tq2_0.gguf", 60 * scale, 1500 * scale, 100 * scale);
    hostile_gguf("tq1_0.gguf", 60 * scale, 1500 * scale, 100 * scale);
    hostile_gguf("f16.gguf", 60 * scale, 1500 * scale, 100 * scale);
    hostile_hf("hf_bf16", "model.safetensors", 60 * scale, 200 * scale);
    hostile_hf("hf_bf16", "config.json", 40 * scale, 150 * scale);
    hostile_hf("hf_packed", "model-00002-of-00002.safetensors", 60 * scale, 200 * scale);
    hostile_hf("hf_packed", "model.safetensors.index.json", 40 * scale, 150 * scale);
    hostile_hf("hf_packed", "tokenizer.json", 40 * scale, 150 * scale);
    hostile_hf("hf_packed", "tokenizer_config.json", 20 * scale, 60 * scale);
    printf("hostile files: %ld damaged inputs tried, %ld refused with a clean error, %ld loaded "
           "(benign damage), 0 crashes\n", n_tried, n_failed_clean, n_loaded);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    return check_report("test_model_hostile");
}
