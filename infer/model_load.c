/* model_load: GGUF files and Hugging Face directories -> Model (infer/model.h).
 *
 * What is used in place from the mapping (no copy): I2_S matrices of an official GGUF and
 * f16/bf16/f32 embeddings whose data is suitably aligned. Everything that has to change form
 * (TQ1_0/TQ2_0, HF packed uint8, float weights to ternarize, norms to f32) gets one buffer from
 * model_storage_alloc. Mappings are handed to the Model's storage, so model_free releases all. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infer/chat_template.h"
#include "infer/gguf.h"
#include "infer/model.h"
#include "infer/model_quant.h"
#include "infer/model_storage.h"
#include "infer/safetensors.h"
#include "infer/tokenizer.h"
#include "infer/tokenizer_spm.h"
#include "kernels/w2a8.h"

/* Upper bounds that keep every size computation far from overflow and refuse absurd configs
 * before any allocation. */
enum { MAX_LAYERS = 1024, MAX_DIM = 1 << 16, MAX_FFN = 1 << 18, MAX_VOCAB = 1 << 22,
       MAX_HEADS = 1024 };

/* ---- progress / cancel ---------------------------------------------------------------------- */

typedef struct {
    const ModelLoadOptions *opt;
    int done, total;
    const char *path;
} Progress;

static int step(Progress *p, const char *stage, Err *err) {
    /* The flag is set from another thread (engine_destroy), so read it atomically. */
    if (p->opt && p->opt->cancel && __atomic_load_n(p->opt->cancel, __ATOMIC_ACQUIRE))
        return err_set(err, "%s: loading cancelled", p->path);
    p->done++;
    if (p->opt && p->opt->progress)
        p->opt->progress(p->opt->user, p->total ? (float)p->done / (float)p->total : 0.0f, stage);
    return 0;
}

/* ---- conversion jobs -------------------------------------------------------------------------
 * Matrices that must change form (TQ, HF packed, float -> ternary) are validated and given
 * their buffers while the file is walked, then converted by a few worker threads: the bf16
 * master checkpoint is 2 G weights. The loading thread meanwhile reports progress and watches
 * the cancel flag. Each job writes only its own buffer and scale, so no locking is needed. */

typedef enum { JOB_FLOAT, JOB_TQ1, JOB_TQ2, JOB_PACKED, JOB_I2S_FLAT } JobKind;

typedef struct {
    JobKind kind;
    const uint8_t *src;
    int type, n_out, n_in, k_pad;
    uint8_t *dst;
    float *scale;
    float packed_scale;   /* JOB_PACKED: the scale to store */
    char name[96];
    int rc;
    Err err;
} ConvJob;

typedef struct {
    ConvJob *jobs;
    int n, cap;
    atomic_int next, done, stop;
} JobList;

static ConvJob *job_add(JobList *jl, Err *err) {
    if (jl->n == jl->cap) {
        int cap = jl->cap ? jl->cap * 2 : 64;
        ConvJob *j = realloc(jl->jobs, (size_t)cap * sizeof *j);
        if (!j) {
            err_set(err, "out of memory");
            return NULL;
        }
        jl->jobs = j;
        jl->cap = cap;
    }
    ConvJob *j = &jl->jobs[jl->n++];
    memset(j, 0, sizeof *j);
    return j;
}

static void job_run(ConvJob *j) {
    switch (j->kind) {
    case JOB_FLOAT:
        j->rc = ternarize_absmean(j->src, j->type, j->n_out, j->n_in, j->k_pad, j->dst, j->scale);
        if (j->rc == -2) err_set(&j->err, "holds non-finite weights (NaN or infinity)");
        else if (j->rc) err_set(&j->err, "out of memory");
        break;
    case JOB_TQ1:
        j->rc = tq1_0_to_i2s(j->src, j->n_out, j->n_in, j->k_pad, j->dst, j->scale, &j->err);
        break;
    case JOB_TQ2:
        j->rc = tq2_0_to_i2s(j->src, j->n_out, j->n_in, j->k_pad, j->dst, j->scale, &j->err);
        break;
    case JOB_PACKED:
        j->rc = hf_packed_to_i2s(j->src, j->n_out, j->n_in, j->k_pad, j->dst, &j->err);
        *j->scale = j->packed_scale;
        break;
    case JOB_I2S_FLAT:
        j->rc = i2s_flat_to_i2s(j->src, j->n_out, j->n_in, j->k_pad, j->dst, &j->err);
        *j->scale = j->packed_scale;
        break;
    }
}

static void *job_worker(void *arg) {
    JobList *jl = arg;
    for (;;) {
        if (atomic_load(&jl->stop)) break;
        int i = atomic_fetch_add(&jl->next, 1);
        if (i >= jl->n) break;
        job_run(&jl->jobs[i]);
        atomic_fetch_add(&jl->done, 1);
    }
    return NULL;
}

static int finite_scale(float s) { return isfinite(s) && s >= 0.0f; }

static int jobs_run(JobList *jl, Progress *pr, Err *err) {
    if (jl->n == 0) return 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = ncpu < 1 ? 1 : ncpu > 16 ? 16 : (int)ncpu;
    if (nt > jl->n) nt = jl->n;
    pthread_t th[16];
    int started = 0;
    for (int i = 0; i < nt; i++)
        if (pthread_create(&th[started], NULL, job_worker, jl) == 0) started++;
    if (!started) job_worker(jl); /* no threads to be had: convert here */
    int reported = 0, cancelled = 0;
    while (started) {
        int d = atomic_load(&jl->done);
        for (; reported < d; reported++)
            if (step(pr, "converting", err)) {
                cancelled = 1;
                atomic_store(&jl->stop, 1);
            }
        if (d >= jl->n || cancelled) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    if (cancelled) return -1;
    for (; reported < jl->n; reported++)
        if (step(pr, "converting", err)) return -1;
    for (int i = 0; i < jl->n; i++) {
        if (jl->jobs[i].rc) return err_set(err, "%s: tensor %s: %s", pr->path, jl->jobs[i].name, jl->jobs[i].err.msg);
        /* e.g. a TQ block scale of inf: refused here, with the tensor's name, not by a backend */
        if (!finite_scale(*jl->jobs[i].scale))
            return err_set(err, "%s: tensor %s: scale %g is not a finite non-negative number",
                           pr->path, jl->jobs[i].name, (double)*jl->jobs[i].scale);
    }
    return 0;
}

/* ---- common --------------------------------------------------------------------------------- */

static int check_config(const ModelConfig *c, const char *path, Err *err) {
    if (c->n_layers < 1 || c->n_layers > MAX_LAYERS || c->dim < 1 || c->dim > MAX_DIM ||
        c->n_heads < 1 || c->n_heads > MAX_HEADS || c->n_kv_heads < 1 ||
        c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads || c->dim % c->n_heads ||
        c->ffn_dim < 1 || c->ffn_dim > MAX_FFN || c->vocab_size < 1 || c->vocab_size > MAX_VOCAB)
        return err_set(err, "%s: implausible model shape (layers %d, dim %d, heads %d/%d, ffn %d, "
                            "vocab %d)", path, c->n_layers, c->dim, c->n_heads, c->n_kv_heads,
                       c->ffn_dim, c->vocab_size);
    if (c->head_dim % 2)
        return err_set(err, "%s: head dimension %d is odd (RoPE needs pairs)", path, c->head_dim);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta) || !(c->norm_eps > 0) ||
        !isfinite(c->norm_eps) || c->ctx_len < 1)
        return err_set(err, "%s: bad rope_theta, rms eps or context length", path);
    return 0;
}

static void set_stops(ModelConfig *c, const int *ids, int n) {
    for (int i = 0; i < n; i++) {
        int id = ids[i], dup = 0;
        if (id < 0 || id >= c->vocab_size) continue;
        for (int j = 0; j < c->n_stop; j++) dup |= c->stop_ids[j] == id;
        if (!dup && c->n_stop < (int)(sizeof c->stop_ids / sizeof c->stop_ids[0]))
            c->stop_ids[c->n_stop++] = id;
    }
}

/* The chat format the model's template asks for (chat_format_detect), then the stops: the
 * format's end of turn first (what a chat stops on), <|eot_id|>, eos, then the file's extra eos
 * ids. */
static void finish_stops(Model *m, const int *extra, int n_extra) {
    int ids[3] = {-1, -1, -1};
    m->cfg.chat_format = chat_format_detect(m->chat_template, m->tok, m->cfg.ffn_act, m->chat_note,
                                            sizeof m->chat_note);
    if (m->tok) {
        ids[0] = chat_format_end_token(m->tok, m->cfg.chat_format);
        ids[1] = tokenizer_eot(m->tok);
        ids[2] = tokenizer_eos(m->tok);
    }
    set_stops(&m->cfg, ids, 3);
    set_stops(&m->cfg, extra, n_extra);
}

static int float_type_ok(int t) { return t == FT_F32 || t == FT_F16 || t == FT_BF16; }
static size_t float_size(int t) { return t == FT_F32 ? 4 : 2; }

/* A norm vector of any float type -> f32 buffer slot. Returns -1 when an element is NaN or
 * infinite (it would turn every activation after it into NaN). */
static int norm_to_f32(const void *src, int type, int n, float *dst) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        dst[i] = float_elem(src, type, (size_t)i);
        bad |= !isfinite(dst[i]);
    }
    return bad ? -1 : 0;
}

/* Dense matrix used in place when aligned for its element type, else copied. */
static int dense_in_place(Model *m, DenseMatrix *d, int type, int rows, int cols, const void *src,
                          Err *err) {
    d->type = (FloatType)type;
    d->rows = rows;
    d->cols = cols;
    const size_t es = float_size(type);
    if ((uintptr_t)src % es == 0) {
        d->data = src;
        return 0;
    }
    void *buf = model_storage_alloc(m, (size_t)rows * cols * es, err);
    if (!buf) return -1;
    memcpy(buf, src, (size_t)rows * cols * es);
    d->data = buf;
    return 0;
}

static uint8_t *alloc_codes(Model *m, TernaryMatrix *tm, int n_out, int n_in, Err *err) {
    tm->n_out = n_out;
    tm->n_in = n_in;
    tm->n_in_pad = i2s_round_up_k(n_in);
    uint8_t *buf = model_storage_alloc(m, (size_t)n_out * i2s_row_bytes(tm->n_in_pad), err);
    tm->codes = buf;
    return buf;
}


/* ---- GGUF ----------------------------------------------------------------------------------- */

typedef struct {
    GgufFile g;
    char arch[32];
    char key[256];
} GgufCtx;

static const char *akey(GgufCtx *c, const char *suffix) {
    snprintf(c->key, sizeof c->key, "%s.%s", c->arch, suffix);
    return c->key;
}

static int g_int(GgufCtx *c, const char *suffix, int *out, int required, int def, Err *err) {
    int64_t v;
    const char *k = akey(c, suffix);
    if (!gguf_find_kv(&c->g, k)) {
        if (required) return err_set(err, "%s: missing key %s", c->g.path, k);
        *out = def;
        return 0;
    }
    if (gguf_get_int(&c->g, k, &v, err)) return -1;
    if (v < 0 || v > INT32_MAX) return err_set(err, "%s: key %s out of range", c->g.path, k);
    *out = (int)v;
    return 0;
}

static int g_float(GgufCtx *c, const char *suffix, float *out, float def, Err *err) {
    double v;
    const char *k = akey(c, suffix);
    if (!gguf_find_kv(&c->g, k)) {
        *out = def;
        return 0;
    }
    if (gguf_get_float(&c->g, k, &v, err)) return -1;
    *out = (float)v;
    return 0;
}

/* "[2560, 128]": the dims of a shape, as many as it has ("[]" for a scalar). */
static void fmt_shape(char *buf, size_t cap, const uint64_t *dims, int n) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static const GgufTensor *g_tensor(GgufCtx *c, const char *name, int n_dims_max, uint64_t ne0,
                                  uint64_t ne1, Err *err) {
    const GgufTensor *t = gguf_find_tensor(&c->g, name);
    if (!t) {
        err_set(err, "%s: missing tensor %s", c->g.path, name);
        return NULL;
    }
    if ((int)t->n_dims > n_dims_max || t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 ||
        t->ne[3] != 1) {
        char got[160], want[64];
        const uint64_t w[2] = {ne0, ne1};
        fmt_shape(got, sizeof got, t->ne, (int)t->n_dims);
        fmt_shape(want, sizeof want, w, n_dims_max == 1 && ne1 == 1 ? 1 : 2);
        err_set(err, "%s: tensor %s has shape %s, expected %s", c->g.path, name, got, want);
        return NULL;
    }
    return t;
}

/* Records how the file stored a ternary linear in m->weights ("mixed" once two differ). */
static void note_weights(Model *m, const char *what) {
    if (!m->weights[0]) snprintf(m->weights, sizeof m->weights, "%s", what);
    else if (strcmp(m->weights, what) != 0) snprintf(m->weights, sizeof m->weights, "mixed");
}

static int g_ternary(Model *m, GgufCtx *c, JobList *jl, const char *name, int n_out, int n_in,
                     TernaryMatrix *tm, Err *err) {
    const GgufTensor *t = g_tensor(c, name, 2, (uint64_t)n_in, (uint64_t)n_out, err);
    if (!t) return -1;
    switch (t->type) {
    case GGML_I2_S: {
        if (n_in % I2S_BLOCK) {
            /* bitnet.cpp's quantizers cut the flattened tensor into 128-value blocks, so with
             * rows of another length (1bitLLM-3B's FFN width 8640) its blocks cross rows:
             * repacked into padded rows. (bitnet.cpp itself lists I2_S as unsupported for
             * that model; the layout is still well defined.) */
            if ((uint64_t)n_out * (uint64_t)n_in % I2S_BLOCK)
                return err_set(err, "%s: I2_S tensor %s holds %d x %d values, not a whole number of "
                                    "%d-value blocks", c->g.path, name, n_out, n_in, I2S_BLOCK);
            uint8_t *buf = alloc_codes(m, tm, n_out, n_in, err);
            if (!buf) return -1;
            memcpy(&tm->scale, t->data + (size_t)n_out * n_in / 4, 4);
            if (!finite_scale(tm->scale))
                return err_set(err, "%s: I2_S tensor %s has a bad scale %g", c->g.path, name,
                               (double)tm->scale);
            ConvJob *j = job_add(jl, err);
            if (!j) return -1;
            j->kind = JOB_I2S_FLAT;
            j->src = t->data;
            j->n_out = n_out;
            j->n_in = n_in;
            j->k_pad = tm->n_in_pad;
            j->dst = buf;
            j->scale = &tm->scale;
            j->packed_scale = tm->scale;
            snprintf(j->name, sizeof j->name, "%s", name);
            note_weights(m, "I2_S repacked to padded rows");
            return 0;
        }
        tm->n_out = n_out;
        tm->n_in = n_in;
        tm->n_in_pad = n_in;
        tm->codes = t->data; /* in place */
        memcpy(&tm->scale, t->data + (size_t)n_out * n_in / 4, 4);
        if (!finite_scale(tm->scale))
            return err_set(err, "%s: I2_S tensor %s has a bad scale %g", c->g.path, name,
                           (double)tm->scale);
        note_weights(m, "I2_S");
        return 1; /* nothing to convert */
    }
    case GGML_TQ1_0:
    case GGML_TQ2_0:
    case GGML_F32:
    case GGML_F16:
    case GGML_BF16: {
        uint8_t *buf = alloc_codes(m, tm, n_out, n_in, err);
        if (!buf) return -1;
        ConvJob *j = job_add(jl, err);
        if (!j) return -1;
        j->kind = t->type == GGML_TQ1_0 ? JOB_TQ1 : t->type == GGML_TQ2_0 ? JOB_TQ2 : JOB_FLOAT;
        char what[48];
        snprintf(what, sizeof what, j->kind == JOB_FLOAT ? "ternarized from %s" : "%s repacked to I2_S",
                 gguf_type_name(t->type));
        note_weights(m, what);
        j->src = t->data;
        j->type = (int)t->type;
        j->n_out = n_out;
        j->n_in = n_in;
        j->k_pad = tm->n_in_pad;
        j->dst = buf;
        j->scale = &tm->scale;
        snprintf(j->name, sizeof j->name, "%s", name);
        return 0;
    }
    default:
        return err_set(err, "%s: tensor %s has type %s; ternary weights must be I2_S, TQ1_0, "
                            "TQ2_0, F32, F16 or BF16", c->g.path, name, gguf_type_name(t->type));
    }
}

static int g_norm(GgufCtx *c, const char *name, int n, float *dst, Err *err) {
    const GgufTensor *t = g_tensor(c, name, 1, (uint64_t)n, 1, err);
    if (!t) return -1;
    if (!float_type_ok((int)t->type))
        return err_set(err, "%s: norm %s has type %s (expected F32, F16 or BF16)", c->g.path, name,
                       gguf_type_name(t->type));
    if (norm_to_f32(t->data, (int)t->type, n, dst))
        return err_set(err, "%s: norm %s holds non-finite values (NaN or infinity)", c->g.path, name);
    return 0;
}

static int g_dense(Model *m, GgufCtx *c, const char *name, DenseMatrix *d, Err *err) {
    const GgufTensor *t = g_tensor(c, name, 2, (uint64_t)m->cfg.dim, (uint64_t)m->cfg.vocab_size, err);
    if (!t) return -1;
    if (dequant_supported((int)t->type)) {
        /* llama-quantize often stores the embedding as Q4_K/Q6_K/Q8_0: expand to f16 once */
        const size_t n = (size_t)m->cfg.vocab_size * (size_t)m->cfg.dim;
        uint16_t *buf = model_storage_alloc(m, n * 2, err);
        if (!buf) return -1;
        dequant_to_f16(t->data, (int)t->type, n, buf);
        *d = (DenseMatrix){FT_F16, m->cfg.vocab_size, m->cfg.dim, buf};
        return 0;
    }
    if (!float_type_ok((int)t->type))
        return err_set(err, "%s: %s has type %s; embeddings must be F16, BF16, F32, Q8_0, Q4_K or "
                            "Q6_K", c->g.path, name, gguf_type_name(t->type));
    return dense_in_place(m, d, (int)t->type, m->cfg.vocab_size, m->cfg.dim, t->data, err);
}

static int g_id(GgufCtx *c, const char *key, int *out) {
    int64_t v;
    *out = -1;
    if (gguf_find_kv(&c->g, key) && !gguf_get_int(&c->g, key, &v, NULL) && v >= 0 && v < INT32_MAX)
        *out = (int)v;
    return *out;
}

/* A special token id (bos, eos, eot): absent -> -1; present but not an id of the vocabulary ->
 * refused, since a stop token that can never match lets every reply run to the limit. */
static int g_special_id(GgufCtx *c, const char *key, uint64_t n_tok, int *out, Err *err) {
    int64_t v;
    *out = -1;
    if (!gguf_find_kv(&c->g, key)) return 0;
    if (gguf_get_int(&c->g, key, &v, NULL))
        return err_set(err, "%s: %s is not an integer", c->g.path, key);
    if (v < 0 || (uint64_t)v >= n_tok)
        return err_set(err, "%s: %s = %lld is not a token id (the vocabulary has %llu tokens)",
                       c->g.path, key, (long long)v, (unsigned long long)n_tok);
    *out = (int)v;
    return 0;
}

/* tokenizer.ggml.model "llama": SentencePiece pieces with scores and types (1bitLLM). */
static Tokenizer *gguf_spm_tokenizer(GgufCtx *c, Err *err) {
    uint64_t n = 0;
    const char **toks = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    Tokenizer *tk = NULL;
    if (gguf_get_str_array(&c->g, "tokenizer.ggml.tokens", &n, &toks, &lens, err)) return NULL;
    if (n == 0 || n > MAX_VOCAB) {
        err_set(err, "%s: tokenizer.ggml.tokens has %llu entries", c->g.path, (unsigned long long)n);
        goto out;
    }
    const GgufKV *sc = gguf_find_kv(&c->g, "tokenizer.ggml.scores");
    const GgufKV *tt = gguf_find_kv(&c->g, "tokenizer.ggml.token_type");
    scores = calloc(n, sizeof *scores);
    types = malloc(n * sizeof *types);
    if (!scores || !types) {
        err_set(err, "out of memory");
        goto out;
    }
    if (!sc || sc->type != GGUF_ARRAY || sc->arr_type != GGUF_FLOAT32 || sc->arr_n != n) {
        err_set(err, "%s: a SentencePiece tokenizer needs tokenizer.ggml.scores (f32, one per token)",
                c->g.path);
        goto out;
    }
    memcpy(scores, sc->val, n * sizeof *scores);
    for (uint64_t i = 0; i < n; i++) {
        int64_t x = TOKTYPE_NORMAL;
        if (tt && (tt->type != GGUF_ARRAY || tt->arr_n != n || gguf_get_arr_int(tt, i, &x) ||
                   x < TOKTYPE_NORMAL || x > TOKTYPE_BYTE)) {
            err_set(err, "%s: tokenizer.ggml.token_type is not a token type per token", c->g.path);
            goto out;
        }
        types[i] = (int32_t)x;
    }
    int prefix = 1, bos, eos;
    if (gguf_find_kv(&c->g, "tokenizer.ggml.add_space_prefix"))
        gguf_get_bool(&c->g, "tokenizer.ggml.add_space_prefix", &prefix, NULL);
    if (g_special_id(c, "tokenizer.ggml.bos_token_id", n, &bos, err) ||
        g_special_id(c, "tokenizer.ggml.eos_token_id", n, &eos, err))
        goto out;
    SpmModel *s = spm_from_pieces((int)n, toks, lens, scores, types, prefix, bos, eos, err);
    if (s) tk = tokenizer_from_spm(s, err);
    if (!tk) err_prefix(err, "%s: tokenizer", c->g.path);
out:
    free(toks);
    free(lens);
    free(scores);
    free(types);
    return tk;
}

/* tokenizer.ggml.* -> Tokenizer. */
static Tokenizer *gguf_tokenizer(GgufCtx *c, Err *err) {
    char model[64];
    if (gguf_get_cstr(&c->g, "tokenizer.ggml.model", model, sizeof model, err)) return NULL;
    if (!strcmp(model, "llama")) return gguf_spm_tokenizer(c, err);
    if (strcmp(model, "gpt2")) {
        err_set(err, "%s: tokenizer model \"%s\" is not supported (byte-level BPE \"gpt2\" or "
                     "SentencePiece \"llama\")", c->g.path, model);
        return NULL;
    }
    TokenizerVocab v;
    memset(&v, 0, sizeof v);
    uint64_t n_tok = 0, n_merge = 0;
    const char **toks = NULL, **merges = NULL;
    size_t *tok_lens = NULL, *merge_lens = NULL;
    int32_t *types = NULL;
    Tokenizer *tk = NULL;
    char pre[64];
    if (gguf_get_str_array(&c->g, "tokenizer.ggml.tokens", &n_tok, &toks, &tok_lens, err)) goto out;
    if (n_tok == 0 || n_tok > MAX_VOCAB) {
        err_set(err, "%s: tokenizer.ggml.tokens has %llu entries", c->g.path, (unsigned long long)n_tok);
        goto out;
    }
    if (gguf_find_kv(&c->g, "tokenizer.ggml.merges") &&
        gguf_get_str_array(&c->g, "tokenizer.ggml.merges", &n_merge, &merges, &merge_lens, err))
        goto out;
    if (n_merge > (1u << 24)) {
        err_set(err, "%s: too many merges", c->g.path);
        goto out;
    }
    const GgufKV *tt = gguf_find_kv(&c->g, "tokenizer.ggml.token_type");
    if (tt) {
        if (tt->type != GGUF_ARRAY || tt->arr_n != n_tok) {
            err_set(err, "%s: tokenizer.ggml.token_type does not match the token count", c->g.path);
            goto out;
        }
        types = malloc(n_tok * sizeof *types);
        if (!types) {
            err_set(err, "out of memory");
            goto out;
        }
        for (uint64_t i = 0; i < n_tok; i++) {
            int64_t x;
            if (gguf_get_arr_int(tt, i, &x) || x < INT32_MIN || x > INT32_MAX) {
                err_set(err, "%s: tokenizer.ggml.token_type is not an integer array", c->g.path);
                goto out;
            }
            types[i] = (int32_t)x;
        }
    }
    v.n_tokens = (int)n_tok;
    v.tokens = toks;
    v.token_lens = tok_lens;
    v.token_types = types;
    v.n_merges = (int)n_merge;
    v.merges = merges;
    v.merge_lens = merge_lens;
    v.pre = NULL;
    if (gguf_find_kv(&c->g, "tokenizer.ggml.pre") &&
        !gguf_get_cstr(&c->g, "tokenizer.ggml.pre", pre, sizeof pre, NULL))
        v.pre = pre;
    /* The official BitNet file has no tokenizer.ggml.pre although its vocabulary is Llama 3's:
     * NULL means the Llama 3 regex (infer/tokenizer.h). */
    if (g_special_id(c, "tokenizer.ggml.bos_token_id", n_tok, &v.bos_id, err) ||
        g_special_id(c, "tokenizer.ggml.eos_token_id", n_tok, &v.eos_id, err) ||
        g_special_id(c, "tokenizer.ggml.eot_token_id", n_tok, &v.eot_id, err))
        goto out;
    v.ignore_merges = !v.pre || !strcmp(v.pre, "llama-bpe") || !strcmp(v.pre, "llama3");
    tk = tokenizer_from_vocab(&v, err);
    if (tk && tokenizer_check(tk, err)) {
        tokenizer_free(tk);
        tk = NULL;
    }
    if (!tk) err_prefix(err, "%s", c->g.path); /* the message starts "tokenizer: " */
out:
    free(toks);
    free(tok_lens);
    free(merges);
    free(merge_lens);
    free(types);
    return tk;
}

/* The family switches of a GGUF file. Arch "llama" is a plain Llama block (SiLU, no
 * sub-norms). The bitnet arches have both sub-norms, and their name does not tell the FFN
 * activation: 2B-4T (relu^2) and 1bitLLM (SiLU) are both written as "bitnet-b1.58". What does
 * tell is the vocabulary, the only metadata the two differ in: 1bitLLM keeps LLaMA-2's
 * SentencePiece tokenizer (tokenizer.ggml.model "llama"), 2B-4T the Llama 3 BPE ("gpt2"). */
static int gguf_family(GgufCtx *c, int is_llama, ModelConfig *cfg, Err *err) {
    char tm[32] = "";
    if (gguf_find_kv(&c->g, "tokenizer.ggml.model"))
        gguf_get_cstr(&c->g, "tokenizer.ggml.model", tm, sizeof tm, NULL);
    cfg->sub_norms = !is_llama;
    cfg->ffn_act = is_llama || !strcmp(tm, "llama") ? FFN_SILU : FFN_RELU2;
    if (is_llama && gguf_find_tensor(&c->g, "blk.0.attn_sub_norm.weight"))
        return err_set(err, "%s: arch llama with attn_sub_norm tensors: a BitNet model written "
                            "under the wrong architecture name", c->g.path);
    /* Some early "bitnet" conversions keep each matrix scale as a separate {1} tensor
     * multiplied after the matmul; ignoring it would compute something else. */
    if (gguf_find_tensor(&c->g, "blk.0.attn_q.scale"))
        return err_set(err, "%s: per-matrix scale tensors (blk.N.*.scale) are not supported; "
                            "convert the model again with a current converter", c->g.path);
    return 0;
}

/* llama.cpp's converters store q and k with the rows of each head reordered for adjacent-pair
 * RoPE: HF row (half, i) of a head (i < head_dim/2) is GGUF row 2i + half. This puts them back
 * into HF order, so the model is the same whatever file it came from (rotate-half RoPE, and
 * `convert` writes what it read). Rows used in place from the file's mapping (I2_S) are copied
 * out of it (q and k: ~170 MB for Llama3-8B); a buffer of our own (converted from TQ/F16) is
 * reordered where it is, one head at a time. */
static int unpermute_qk(Model *m, const GgufFile *g, TernaryMatrix *w, int n_head, Err *err) {
    const int hd = w->n_out / n_head, half = hd / 2;
    const size_t rb = i2s_row_bytes(w->n_in_pad), head_bytes = rb * (size_t)hd;
    const int in_file = w->codes >= g->base && w->codes < g->base + g->size;
    uint8_t *dst = in_file ? model_storage_alloc(m, rb * (size_t)w->n_out, err) : (uint8_t *)w->codes;
    uint8_t *tmp = malloc(head_bytes);
    if (!dst || !tmp) {
        free(tmp);
        return dst ? err_set(err, "out of memory") : -1;
    }
    for (int h = 0; h < n_head; h++) {
        const uint8_t *src = w->codes + head_bytes * (size_t)h;
        for (int i = 0; i < half; i++)
            for (int k = 0; k < 2; k++)
                memcpy(tmp + rb * (size_t)(k * half + i), src + rb * (size_t)(2 * i + k), rb);
        memcpy(dst + head_bytes * (size_t)h, tmp, head_bytes);
    }
    free(tmp);
    w->codes = dst;
    return 0;
}

static int load_gguf(Model *m, const char *path, const ModelLoadOptions *opt, Err *err) {
    GgufCtx c;
    memset(&c, 0, sizeof c);
    JobList jl;
    memset(&jl, 0, sizeof jl);
    if (gguf_open(&c.g, path, err)) return -1;
    /* From here the mapping belongs to the Model (model_free unmaps it). */
    if (model_storage_add_mapping(m, c.g.map, c.g.map_len, err)) {
        gguf_close(&c.g);
        return -1;
    }
    c.g.map = NULL;
    int rc = -1;
    ModelConfig *cfg = &m->cfg;
    if (gguf_get_cstr(&c.g, "general.architecture", c.arch, sizeof c.arch, err)) goto out;
    /* bitnet.cpp writes the Llama-style ternary models (Llama3-8B-1.58, Falcon3, Falcon-E) as
     * "llama", BitNet-b1.58-2B-4T as "bitnet-b1.58" (older files "bitnet-25") and 1bitLLM's
     * models as "bitnet-b1.58" (older files "bitnet"). */
    const int is_llama = !strcmp(c.arch, "llama");
    if (!is_llama && strcmp(c.arch, "bitnet-b1.58") && strcmp(c.arch, "bitnet-25") &&
        strcmp(c.arch, "bitnet")) {
        err_set(err, "%s: architecture \"%s\" is not supported (expected bitnet-b1.58, "
                     "bitnet-25, bitnet or llama with ternary weights)", path, c.arch);
        goto out;
    }
    snprintf(cfg->arch, sizeof cfg->arch, "%s", c.arch);
    if (gguf_find_kv(&c.g, "general.name"))
        gguf_get_cstr(&c.g, "general.name", cfg->name, sizeof cfg->name, NULL);
    if (g_int(&c, "block_count", &cfg->n_layers, 1, 0, err) ||
        g_int(&c, "embedding_length", &cfg->dim, 1, 0, err) ||
        g_int(&c, "feed_forward_length", &cfg->ffn_dim, 1, 0, err) ||
        g_int(&c, "attention.head_count", &cfg->n_heads, 1, 0, err) ||
        g_int(&c, "context_length", &cfg->ctx_len, 0, 4096, err))
        goto out;
    if (g_int(&c, "attention.head_count_kv", &cfg->n_kv_heads, 0, cfg->n_heads, err) ||
        g_float(&c, "rope.freq_base", &cfg->rope_theta, 500000.0f, err) ||
        g_float(&c, "attention.layer_norm_rms_epsilon", &cfg->norm_eps, 1e-5f, err))
        goto out;
    const GgufTensor *emb = gguf_find_tensor(&c.g, "token_embd.weight");
    if (!emb) {
        err_set(err, "%s: missing tensor token_embd.weight", path);
        goto out;
    }
    if (emb->ne[1] > MAX_VOCAB) {
        err_set(err, "%s: token_embd.weight has %llu rows", path, (unsigned long long)emb->ne[1]);
        goto out;
    }
    g_int(&c, "vocab_size", &cfg->vocab_size, 0, (int)emb->ne[1], NULL);
    cfg->head_dim = cfg->n_heads > 0 ? cfg->dim / cfg->n_heads : 0;
    cfg->rope_style = ROPE_HALF;
    if (check_config(cfg, path, err)) goto out;
    if (gguf_family(&c, is_llama, cfg, err)) goto out;
    int rot;
    if (g_int(&c, "rope.dimension_count", &rot, 0, cfg->head_dim, err)) goto out;
    if (rot != cfg->head_dim) {
        err_set(err, "%s: partial RoPE (%d of %d dims) is not supported", path, rot, cfg->head_dim);
        goto out;
    }
    int kl, vl;
    if (g_int(&c, "attention.key_length", &kl, 0, cfg->head_dim, err) ||
        g_int(&c, "attention.value_length", &vl, 0, cfg->head_dim, err))
        goto out;
    if (kl != cfg->head_dim || vl != cfg->head_dim) {
        err_set(err, "%s: attention key/value length %d/%d differs from dim/heads = %d (not supported)",
                path, kl, vl, cfg->head_dim);
        goto out;
    }
    if (gguf_find_kv(&c.g, akey(&c, "rope.scaling.type"))) {
        char st[32] = "";
        gguf_get_cstr(&c.g, akey(&c, "rope.scaling.type"), st, sizeof st, NULL);
        if (strcmp(st, "none")) {
            err_set(err, "%s: RoPE scaling \"%s\" is not supported", path, st);
            goto out;
        }
    }
    if (!cfg->name[0]) { /* no general.name: the file name without its extension */
        const char *b = strrchr(path, '/');
        snprintf(cfg->name, sizeof cfg->name, "%s", b ? b + 1 : path);
        char *dot = strrchr(cfg->name, '.');
        if (dot && dot != cfg->name) *dot = 0;
    }

    const int L = cfg->n_layers, D = cfg->dim, F = cfg->ffn_dim;
    const int QD = cfg->n_heads * cfg->head_dim, KVD = cfg->n_kv_heads * cfg->head_dim;
    Progress pr = {opt, 0, 14 * L + 3, path};
    char name[96];
    static const char *mats[7] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                  "ffn_gate", "ffn_up", "ffn_down"};
    /* Every tensor present with its shape before anything is allocated, so that a header
     * claiming a huge model cannot make us allocate more than the file backs. */
    for (int l = 0; l < L; l++) {
        static const char *norms_[4] = {"attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"};
        const int outs[7] = {QD, KVD, KVD, D, F, F, D}, ins[7] = {D, D, D, QD, D, D, F};
        for (int i = 0; i < 4; i++) {
            if (!cfg->sub_norms && i % 2) continue;
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, norms_[i]);
            if (!g_tensor(&c, name, 1, (uint64_t)(i == 3 ? F : D), 1, err)) goto out;
        }
        for (int i = 0; i < 7; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[i]);
            if (!g_tensor(&c, name, 2, (uint64_t)ins[i], (uint64_t)outs[i], err)) goto out;
        }
    }
    m->layers = calloc((size_t)L, sizeof *m->layers);
    float *norms = model_storage_alloc(m, ((size_t)L * (3 * D + F) + D) * sizeof(float), err);
    if (!m->layers || !norms) {
        if (!m->layers) err_set(err, "out of memory");
        goto out;
    }
    if (g_dense(m, &c, "token_embd.weight", &m->tok_embd, err) || step(&pr, "embedding", err)) goto out;
    cfg->tied = !gguf_find_tensor(&c.g, "output.weight");
    if (!cfg->tied) {
        if (g_dense(m, &c, "output.weight", &m->output, err)) goto out;
    } else {
        m->output = m->tok_embd; /* tied, as in the official file */
    }
    m->output_norm = norms;
    if (g_norm(&c, "output_norm.weight", D, norms, err)) goto out;
    norms += D;
    for (int l = 0; l < L; l++) {
        LayerWeights *lw = &m->layers[l];
        TernaryMatrix *tms[7] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->w_gate, &lw->w_up, &lw->w_down};
        const int outs[7] = {QD, KVD, KVD, D, F, F, D}, ins[7] = {D, D, D, QD, D, D, F};
        struct { const char *n; int len; const float **dst; } nm[4] = {
            {"attn_norm", D, &lw->attn_norm}, {"attn_sub_norm", D, &lw->attn_sub_norm},
            {"ffn_norm", D, &lw->ffn_norm}, {"ffn_sub_norm", F, &lw->ffn_sub_norm}};
        for (int i = 0; i < 4; i++) {
            if (!cfg->sub_norms && i % 2) continue;
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, nm[i].n);
            if (g_norm(&c, name, nm[i].len, norms, err)) goto out;
            *nm[i].dst = norms;
            norms += nm[i].len;
        }
        for (int i = 0; i < 7; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[i]);
            int r = g_ternary(m, &c, &jl, name, outs[i], ins[i], tms[i], err);
            if (r < 0 || step(&pr, "weights", err) || (r == 1 && step(&pr, "weights", err))) goto out;
        }
    }
    if (gguf_find_kv(&c.g, "tokenizer.chat_template")) {
        GgufStr s;
        if (!gguf_get_str(&c.g, "tokenizer.chat_template", &s, NULL) && s.len < (1u << 20)) {
            m->chat_template = malloc(s.len + 1);
            if (m->chat_template) {
                memcpy(m->chat_template, s.ptr, s.len);
                m->chat_template[s.len] = 0;
            }
        }
    }
    if (jobs_run(&jl, &pr, err)) goto out;
    if (is_llama) /* llama.cpp's converters permute q/k rows for adjacent-pair RoPE */
        for (int l = 0; l < L; l++)
            if (unpermute_qk(m, &c.g, &m->layers[l].wq, cfg->n_heads, err) ||
                unpermute_qk(m, &c.g, &m->layers[l].wk, cfg->n_kv_heads, err))
                goto out;
    if (step(&pr, "tokenizer", err)) goto out;
    m->tok = gguf_tokenizer(&c, err);
    if (!m->tok) goto out;
    if (tokenizer_n_vocab(m->tok) > cfg->vocab_size) {
        err_set(err, "%s: tokenizer has %d tokens but the embedding only %d rows", path,
                tokenizer_n_vocab(m->tok), cfg->vocab_size);
        goto out;
    }
    cfg->bos_id = tokenizer_bos(m->tok);
    int extra[2];
    g_id(&c, "tokenizer.ggml.eot_token_id", &extra[0]);
    g_id(&c, "tokenizer.ggml.eos_token_id", &extra[1]);
    finish_stops(m, extra, 2);
    if (cfg->n_stop == 0) {
        err_set(err, "%s: no end-of-text token (no <|eot_id|>, <|end_of_text|> or "
                     "tokenizer.ggml.eos_token_id): a reply could never stop", path);
        goto out;
    }
    snprintf(m->format, sizeof m->format, "gguf");
    if (step(&pr, "done", err)) goto out;
    rc = 0;
out:
    free(jl.jobs);
    gguf_close(&c.g); /* tables only: the mapping is the Model's */
    return rc;
}

/* ---- Hugging Face directory ----------------------------------------------------------------- */

static int j_int(json_t *cfg, const char *key, int *out, int required, int def, const char *path,
                 Err *err) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (required) return err_set(err, "%s: no %s", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return err_set(err, "%s: %s is not a non-negative integer", path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int j_float(json_t *cfg, const char *key, float *out, float def, const char *path, Err *err) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) return err_set(err, "%s: %s is not a number", path, key);
    *out = (float)json_number_value(v);
    return 0;
}

/* bos_token_id / eos_token_id: absent, null, a number or a list of numbers (at most cap), each
 * an id of the vocabulary. Returns how many, or -1 with err naming the file and the value: a
 * stop id that can never match would let every reply run to the limit. */
static int j_ids(json_t *v, int *ids, int cap, const char *key, int vocab, const char *path, Err *err) {
    if (!v || json_is_null(v)) return 0;
    if (json_is_array(v) && json_array_size(v) > (size_t)cap)
        return err_set(err, "%s: %s lists %zu ids (at most %d are supported)", path, key,
                       json_array_size(v), cap);
    int n = 0;
    size_t i, len = json_is_array(v) ? json_array_size(v) : 1;
    for (i = 0; i < len; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(e)) return err_set(err, "%s: %s is not an integer or a list of integers", path, key);
        json_int_t id = json_integer_value(e);
        if (id < 0 || id >= vocab)
            return err_set(err, "%s: %s %lld is not a token id (vocab_size is %d)", path, key,
                           (long long)id, vocab);
        ids[n++] = (int)id;
    }
    return n;
}

/* ---- config.json keys ------------------------------------------------------------------------
 * What transformers 4.4x-5.x writes for BitNet and Llama models, key by key: each one is read,
 * refused when it asks for something this engine does not compute, or ignored because it cannot
 * change the forward pass (README "config.json keys" lists them all). Nothing that changes the
 * result is ever ignored silently. */

/* A rope_type (rope_parameters.rope_type, or rope_scaling's "rope_type" / older "type") other
 * than the plain one is refused: linear, dynamic, yarn, longrope, llama3 ... all rescale the
 * frequencies, which this engine does not do. */
static int hf_rope_kind_ok(json_t *obj, const char *where, const char *path, Err *err) {
    static const char *keys[2] = {"rope_type", "type"};
    for (int i = 0; i < 2; i++) {
        json_t *t = json_object_get(obj, keys[i]);
        if (!t || json_is_null(t)) continue;
        if (!json_is_string(t))
            return err_set(err, "%s: %s.%s is not a string", path, where, keys[i]);
        if (strcmp(json_string_value(t), "default"))
            return err_set(err, "%s: %s.%s \"%.40s\" is not supported (only plain RoPE, rope_type "
                                "\"default\", is implemented)", path, where, keys[i],
                           json_string_value(t));
    }
    json_t *prf = json_object_get(obj, "partial_rotary_factor");
    if (prf && !json_is_null(prf) && !(json_is_number(prf) && json_number_value(prf) == 1.0))
        return err_set(err, "%s: %s.partial_rotary_factor is not supported (RoPE on all of each head "
                            "only)", path, where);
    return 0;
}

/* rope_theta: at the top level (transformers 4.x) or inside rope_parameters (5.x, which
 * writes it only there). Both present and different is refused: the file contradicts itself. */
static int hf_config_rope(json_t *jc, ModelConfig *cfg, const char *path, Err *err) {
    json_t *top = json_object_get(jc, "rope_theta");
    json_t *rp = json_object_get(jc, "rope_parameters");
    json_t *inner = NULL;
    if (top && !json_is_null(top) && (!json_is_number(top) || !(json_number_value(top) > 0)))
        return err_set(err, "%s: rope_theta is not a positive number", path);
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp))
            return err_set(err, "%s: rope_parameters is not an object", path);
        const char *k;
        json_t *v;
        json_object_foreach(rp, k, v) if (json_is_object(v))
            return err_set(err, "%s: rope_parameters.%.40s: RoPE parameters per layer type are not "
                                "supported", path, k);
        if (hf_rope_kind_ok(rp, "rope_parameters", path, err)) return -1;
        inner = json_object_get(rp, "rope_theta");
        if (inner && !json_is_null(inner) &&
            (!json_is_number(inner) || !(json_number_value(inner) > 0)))
            return err_set(err, "%s: rope_parameters.rope_theta is not a positive number", path);
        if (inner && json_is_null(inner)) inner = NULL;
    }
    if (top && json_is_null(top)) top = NULL;
    if (top && inner && json_number_value(top) != json_number_value(inner))
        return err_set(err, "%s: rope_theta %g and rope_parameters.rope_theta %g disagree", path,
                       json_number_value(top), json_number_value(inner));
    /* 500000 when neither says: BitNet b1.58's value and transformers' BitNetConfig default */
    cfg->rope_theta = inner ? (float)json_number_value(inner)
                    : top   ? (float)json_number_value(top) : 500000.0f;
    json_t *rs = json_object_get(jc, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs)) return err_set(err, "%s: rope_scaling is not an object", path);
        if (hf_rope_kind_ok(rs, "rope_scaling", path, err)) return -1;
        /* transformers versions between the two layouts may keep theta in rope_scaling too */
        json_t *st = json_object_get(rs, "rope_theta");
        if (st && !json_is_null(st)) {
            if (!json_is_number(st) || !(json_number_value(st) > 0))
                return err_set(err, "%s: rope_scaling.rope_theta is not a positive number", path);
            if ((double)cfg->rope_theta != (double)(float)json_number_value(st) && (top || inner))
                return err_set(err, "%s: rope_scaling.rope_theta %g disagrees with rope_theta %g",
                               path, json_number_value(st), (double)cfg->rope_theta);
            cfg->rope_theta = (float)json_number_value(st);
        }
        if (!json_object_get(rs, "rope_type") && !json_object_get(rs, "type"))
            return err_set(err, "%s: rope_scaling without a rope_type is not supported", path);
    }
    json_t *prf = json_object_get(jc, "partial_rotary_factor");
    if (prf && !json_is_null(prf) && !(json_is_number(prf) && json_number_value(prf) == 1.0))
        return err_set(err, "%s: partial_rotary_factor is not supported (RoPE on all of each head "
                            "only)", path);
    if (json_is_true(json_object_get(jc, "rope_interleaved")))
        return err_set(err, "%s: rope_interleaved true is not supported (Hugging Face weights pair "
                            "dimension i with i + head_dim/2)", path);
    return 0;
}

/* The keys that would add computation this engine does not have. */
static int hf_config_refusals(json_t *jc, const char *path, Err *err) {
    static const char *bias[2] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++)
        if (json_is_true(json_object_get(jc, bias[i])))
            return err_set(err, "%s: %s true is not supported (BitNet linears have no bias)", path,
                           bias[i]);
    static const char *window[2] = {"sliding_window", "use_sliding_window"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(jc, window[i]);
        if (v && !json_is_null(v) && !json_is_false(v))
            return err_set(err, "%s: %s is not supported (full causal attention only)", path,
                           window[i]);
    }
    json_t *qc = json_object_get(jc, "quantization_config");
    if (qc && !json_is_null(qc)) {
        if (!json_is_object(qc)) return err_set(err, "%s: quantization_config is not an object", path);
        json_t *qm = json_object_get(qc, "quant_method");
        if (json_is_string(qm) && strcmp(json_string_value(qm), "bitnet"))
            return err_set(err, "%s: quantization_config.quant_method \"%.40s\" is not supported "
                                "(expected \"bitnet\")", path, json_string_value(qm));
        json_t *lc = json_object_get(qc, "linear_class");
        if (lc && !json_is_null(lc) &&
            (!json_is_string(lc) || (strcmp(json_string_value(lc), "bitlinear") &&
                                     strcmp(json_string_value(lc), "autobitlinear"))))
            return err_set(err, "%s: quantization_config.linear_class %s%.40s%s is not supported "
                                "(expected \"bitlinear\" or \"autobitlinear\")", path,
                           json_is_string(lc) ? "\"" : "", json_is_string(lc) ? json_string_value(lc)
                           : "(not a string)", json_is_string(lc) ? "\"" : "");
        json_t *mode = json_object_get(qc, "quantization_mode");
        if (mode && !json_is_null(mode) &&
            (!json_is_string(mode) || (strcmp(json_string_value(mode), "online") &&
                                       strcmp(json_string_value(mode), "offline"))))
            return err_set(err, "%s: quantization_config.quantization_mode is not \"online\" or "
                                "\"offline\"", path);
        /* transformers keeps the listed linears in float; this engine ternarizes every one
         * but the lm_head, so only the lm_head may be listed */
        json_t *keep = json_object_get(qc, "modules_to_not_convert");
        if (keep && !json_is_null(keep)) {
            if (!json_is_array(keep))
                return err_set(err, "%s: quantization_config.modules_to_not_convert is not a list",
                               path);
            size_t i;
            json_t *e;
            json_array_foreach(keep, i, e) if (!json_is_string(e) || strcmp(json_string_value(e), "lm_head"))
                return err_set(err, "%s: quantization_config.modules_to_not_convert lists %.60s: "
                                    "only lm_head may stay unquantized here", path,
                               json_is_string(e) ? json_string_value(e) : "a non-string");
        }
        if (json_is_true(json_object_get(qc, "use_rms_norm")))
            return err_set(err, "%s: quantization_config.use_rms_norm true (an RMSNorm inside every "
                                "BitLinear) is not supported", path);
    }
    return 0;
}

static int st_float_type(StDtype d) {
    return d == ST_F32 ? FT_F32 : d == ST_F16 ? FT_F16 : d == ST_BF16 ? FT_BF16 : -1;
}

typedef struct {
    StSet st;
    const char *dir;
    int autobit;   /* weight_scale multiplies (AutoBitLinear) rather than divides (BitLinear) */
} HfCtx;

static const StTensor *h_tensor(HfCtx *h, const char *name, uint64_t d0, uint64_t d1, int ndim,
                                Err *err) {
    const StTensor *t = st_find(&h->st, name);
    if (!t) {
        err_set(err, "%s: missing tensor %s", h->dir, name);
        return NULL;
    }
    if (t->n_dims != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char got[160], want[64];
        const uint64_t w[2] = {d0, d1};
        fmt_shape(got, sizeof got, t->shape, t->n_dims);
        fmt_shape(want, sizeof want, w, ndim);
        err_set(err, "%s: tensor %s has shape %s, expected %s", h->dir, name, got, want);
        return NULL;
    }
    return t;
}

static int h_ternary(Model *m, HfCtx *h, JobList *jl, const char *base, int n_out, int n_in,
                     TernaryMatrix *tm, Err *err) {
    char name[160];
    snprintf(name, sizeof name, "%s.weight", base);
    const StTensor *t = st_find(&h->st, name);
    if (!t) return err_set(err, "%s: missing tensor %s", h->dir, name);
    ConvJob *j;
    if (t->dtype == ST_U8) {
        if (!(t = h_tensor(h, name, (uint64_t)n_out / 4, (uint64_t)n_in, 2, err))) return -1;
        if (n_out % 4) return err_set(err, "%s: packed %s: %d rows not a multiple of 4", h->dir, name, n_out);
        char sname[176];
        snprintf(sname, sizeof sname, "%s.weight_scale", base);
        const StTensor *s = st_find(&h->st, sname);
        if (!s) return err_set(err, "%s: packed weight %s has no %s", h->dir, name, sname);
        int ft = st_float_type(s->dtype);
        if (ft < 0 || s->n_elements != 1)
            return err_set(err, "%s: %s must be one float (is %s with %llu elements)", h->dir, sname,
                           st_dtype_name(s->dtype), (unsigned long long)s->n_elements);
        float ws = float_elem(s->data, ft, 0);
        if (!isfinite(ws) || ws <= 0.0f)
            return err_set(err, "%s: %s = %g is not a positive scale", h->dir, sname, (double)ws);
        uint8_t *buf = alloc_codes(m, tm, n_out, n_in, err);
        if (!buf || !(j = job_add(jl, err))) return -1;
        j->kind = JOB_PACKED;
        note_weights(m, "packed U8 repacked to I2_S");
        j->packed_scale = h->autobit ? ws : 1.0f / ws;
        j->dst = buf;
    } else {
        int ft = st_float_type(t->dtype);
        if (ft < 0)
            return err_set(err, "%s: %s has dtype %s (expected BF16/F16/F32 master weights or packed U8)",
                           h->dir, name, st_dtype_name(t->dtype));
        if (!(t = h_tensor(h, name, (uint64_t)n_out, (uint64_t)n_in, 2, err))) return -1;
        uint8_t *buf = alloc_codes(m, tm, n_out, n_in, err);
        if (!buf || !(j = job_add(jl, err))) return -1;
        j->kind = JOB_FLOAT;
        j->type = ft;
        char what[48];
        snprintf(what, sizeof what, "ternarized from %s", st_dtype_name(t->dtype));
        note_weights(m, what);
        j->dst = buf;
    }
    j->src = t->data;
    j->n_out = n_out;
    j->n_in = n_in;
    j->k_pad = tm->n_in_pad;
    j->scale = &tm->scale;
    snprintf(j->name, sizeof j->name, "%s", name);
    return 0;
}

static int h_norm(HfCtx *h, const char *name, int n, float *dst, Err *err) {
    const StTensor *t = h_tensor(h, name, (uint64_t)n, 0, 1, err);
    if (!t) return -1;
    int ft = st_float_type(t->dtype);
    if (ft < 0) return err_set(err, "%s: norm %s has dtype %s", h->dir, name, st_dtype_name(t->dtype));
    if (norm_to_f32(t->data, ft, n, dst))
        return err_set(err, "%s: norm %s holds non-finite values (NaN or infinity)", h->dir, name);
    return 0;
}

static int h_dense(Model *m, HfCtx *h, const char *name, DenseMatrix *d, Err *err) {
    const StTensor *t = h_tensor(h, name, (uint64_t)m->cfg.vocab_size, (uint64_t)m->cfg.dim, 2, err);
    if (!t) return -1;
    int ft = st_float_type(t->dtype);
    if (ft < 0) return err_set(err, "%s: %s has dtype %s (expected BF16/F16/F32)", h->dir, name,
                               st_dtype_name(t->dtype));
    return dense_in_place(m, d, ft, m->cfg.vocab_size, m->cfg.dim, t->data, err);
}

/* json_load_file for a path that must be a regular file: a FIFO would block the read forever
 * and a device (/dev/zero) would be read without end. *not_regular is set for those. */
static json_t *load_json_file(const char *p, size_t flags, json_error_t *je, int *not_regular) {
    struct stat st;
    if (not_regular) *not_regular = 0;
    if (stat(p, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (not_regular) *not_regular = 1;
        return NULL;
    }
    return json_load_file(p, flags, je);
}

static char *read_chat_template(const char *dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    json_t *j = load_json_file(p, 0, NULL, NULL);
    if (!j) return NULL;
    json_t *t = json_object_get(j, "chat_template");
    char *out = json_is_string(t) ? strdup(json_string_value(t)) : NULL;
    json_decref(j);
    return out;
}

/* tokenizer.json loaded and found usable (tokenizer_check), or NULL with err naming the file. */
static Tokenizer *checked_json_tokenizer(const char *path, Err *err) {
    Tokenizer *t = tokenizer_load_json(path, err);
    if (t && tokenizer_check(t, err)) {
        err_prefix(err, "%s", path);
        tokenizer_free(t);
        t = NULL;
    }
    return t;
}

/* The tokenizer of an HF folder. SentencePiece's own tokenizer.model comes first where there
 * is one (1bitLLM ships LLaMA-2's beside a tokenizer.json converted from it: the same encoding,
 * and only the original keeps the scores GGUF stores); one this reader refuses (Unigram, a
 * normalization rule) leaves tokenizer.json to answer. Otherwise tokenizer.json, byte-level
 * BPE or the SentencePiece kinds tokenizer_json.c reads. When neither loads, the first error
 * is the one reported. */
static Tokenizer *hf_tokenizer(const char *dir, Err *err) {
    char tj[1200], tm[1200];
    struct stat st;
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    snprintf(tm, sizeof tm, "%s/tokenizer.model", dir);
    const int has_json = stat(tj, &st) == 0;
    Err e2 = {{0}};
    if (stat(tm, &st) == 0) {
        SpmModel *s = spm_load_file(tm, has_json ? &e2 : err);
        Tokenizer *t = s ? tokenizer_from_spm(s, err) : NULL;
        if (t || !has_json) return t;
        Tokenizer *j = checked_json_tokenizer(tj, err);
        if (!j && err && e2.msg[0]) *err = e2;
        return j;
    }
    return checked_json_tokenizer(tj, err);
}

/* Names of the four per-layer norms (attn, attn sub, ffn, ffn sub) after "model.layers.N.",
 * NULL for the sub-norms of a plain Llama block. 2B-4T names its sub-norms attn_sub_norm /
 * ffn_sub_norm; 1bitLLM's modeling_bitnet.py inner_attn_ln / ffn_layernorm (the same places:
 * attention output before o_proj, act(g) * u before down_proj). Sets cfg->sub_norms. */
static const char *const *hf_norm_names(HfCtx *h, ModelConfig *cfg) {
    static const char *bitnet[4] = {"input_layernorm", "self_attn.attn_sub_norm",
                                    "post_attention_layernorm", "mlp.ffn_sub_norm"};
    static const char *onebit[4] = {"input_layernorm", "self_attn.inner_attn_ln",
                                    "post_attention_layernorm", "mlp.ffn_layernorm"};
    static const char *llama[4] = {"input_layernorm", NULL, "post_attention_layernorm", NULL};
    cfg->sub_norms = 1;
    if (st_find(&h->st, "model.layers.0.self_attn.inner_attn_ln.weight")) return onebit;
    /* model_type "bitnet" always has them: a missing one is reported as a missing tensor */
    if (!strcmp(cfg->arch, "bitnet") || st_find(&h->st, "model.layers.0.self_attn.attn_sub_norm.weight"))
        return bitnet;
    cfg->sub_norms = 0;
    return llama;
}

static int load_hf(Model *m, const char *dir, const ModelLoadOptions *opt, Err *err) {
    char p[1200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_error_t je;
    int not_regular = 0;
    json_t *jc = load_json_file(p, JSON_REJECT_DUPLICATES, &je, &not_regular);
    if (!jc && not_regular) return err_set(err, "%s: not a regular file", p);
    if (!jc) {
        struct stat st;
        if (stat(p, &st) != 0)
            return err_set(err, "%s: no config.json (expected a GGUF file or a Hugging Face model "
                                "directory)", dir);
        return err_set(err, "%s: %s (line %d)", p, je.text, je.line);
    }
    int rc = -1;
    HfCtx h;
    memset(&h, 0, sizeof h);
    JobList jl;
    memset(&jl, 0, sizeof jl);
    h.dir = dir;
    ModelConfig *cfg = &m->cfg;
    if (!json_is_object(jc)) {
        err_set(err, "%s: not a JSON object", p);
        goto out;
    }
    {
        /* checked first so that a missing tokenizer is reported before minutes of conversion */
        char tp[1200], tm[1200];
        struct stat st;
        snprintf(tp, sizeof tp, "%s/tokenizer.json", dir);
        snprintf(tm, sizeof tm, "%s/tokenizer.model", dir);
        if (stat(tp, &st) != 0 && stat(tm, &st) != 0) {
            err_set(err, "%s: no tokenizer.json (a Hugging Face model folder needs config.json, "
                         "model.safetensors and tokenizer.json, or SentencePiece's "
                         "tokenizer.model)", dir);
            goto out;
        }
    }
    /* model_type "bitnet": BitNet-b1.58-2B-4T. "llama": transformers' LlamaForCausalLM with
     * BitLinear layers (Llama3-8B-1.58, Falcon3-*-1.58bit, Falcon-E) or 1bitLLM's custom
     * BitnetForCausalLM; the tensors present tell which (hf_family). */
    json_t *mt = json_object_get(jc, "model_type");
    const int is_llama = json_is_string(mt) && !strcmp(json_string_value(mt), "llama");
    if (json_is_string(mt) && !is_llama && strcmp(json_string_value(mt), "bitnet")) {
        err_set(err, "%s: model_type \"%.40s\" is not supported (expected \"bitnet\" or a "
                     "ternary \"llama\")", p, json_string_value(mt));
        goto out;
    }
    json_t *act = json_object_get(jc, "hidden_act");
    const char *acts = json_is_string(act) ? json_string_value(act) : is_llama ? "silu" : "relu2";
    if (!strcmp(acts, "relu2")) {
        cfg->ffn_act = FFN_RELU2;
    } else if (!strcmp(acts, "silu")) {
        cfg->ffn_act = FFN_SILU;
    } else {
        err_set(err, "%s: hidden_act \"%.40s\" is not supported (relu2 or silu)", p, acts);
        goto out;
    }
    snprintf(cfg->arch, sizeof cfg->arch, "%s", is_llama ? "llama" : "bitnet");
    {
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", dir);
        size_t tl = strlen(tmp);
        while (tl > 1 && tmp[tl - 1] == '/') tmp[--tl] = 0;
        const char *b = strrchr(tmp, '/');
        snprintf(cfg->name, sizeof cfg->name, "%s", b && b[1] ? b + 1 : tmp);
    }
    if (j_int(jc, "hidden_size", &cfg->dim, 1, 0, p, err) ||
        j_int(jc, "num_hidden_layers", &cfg->n_layers, 1, 0, p, err) ||
        j_int(jc, "num_attention_heads", &cfg->n_heads, 1, 0, p, err) ||
        j_int(jc, "intermediate_size", &cfg->ffn_dim, 1, 0, p, err) ||
        j_int(jc, "vocab_size", &cfg->vocab_size, 1, 0, p, err))
        goto out;
    if (j_int(jc, "num_key_value_heads", &cfg->n_kv_heads, 0, cfg->n_heads, p, err) ||
        j_int(jc, "max_position_embeddings", &cfg->ctx_len, 0, 2048, p, err) ||
        hf_config_rope(jc, cfg, p, err) || hf_config_refusals(jc, p, err) ||
        j_float(jc, "rms_norm_eps", &cfg->norm_eps, 1e-5f, p, err))
        goto out;
    cfg->head_dim = cfg->n_heads > 0 ? cfg->dim / cfg->n_heads : 0;
    json_t *hd = json_object_get(jc, "head_dim");
    /* Falcon3 states head_dim 256 (as it is: 3072 / 12); a head_dim other than hidden /
     * heads would make q wider than the residual stream, which none of the families does */
    if (hd && !json_is_null(hd) && (!json_is_integer(hd) || json_integer_value(hd) != cfg->head_dim)) {
        err_set(err, "%s: head_dim %lld != hidden_size / num_attention_heads is not supported", p,
                json_is_integer(hd) ? (long long)json_integer_value(hd) : -1LL);
        goto out;
    }
    cfg->rope_style = ROPE_HALF;
    if (check_config(cfg, p, err)) goto out;
    json_t *tie = json_object_get(jc, "tie_word_embeddings");
    json_t *qc = json_object_get(jc, "quantization_config");
    /* transformers' BitLinear (linear_class absent or "bitlinear": Llama3-8B-1.58, Falcon3,
     * Falcon-E) stores weight_scale = 1 / mean|W| and divides by it; AutoBitLinear (2B-4T)
     * stores mean|W| and multiplies (research/model-family.md section 0). */
    json_t *lc = json_is_object(qc) ? json_object_get(qc, "linear_class") : NULL;
    h.autobit = json_is_string(lc) && !strcmp(json_string_value(lc), "autobitlinear");

    if (st_open_dir(&h.st, dir, err)) goto out;
    /* transformers' BitNetConfig defaults to untied, but the BitNet checkpoints are tied and
     * ship no lm_head.weight; an absent lm_head is therefore taken as tied there. The
     * Llama-style ones say false and ship it: missing, it is an incomplete download. */
    cfg->tied = json_is_true(tie) || !st_find(&h.st, "lm_head.weight");
    if (is_llama && json_is_false(tie) && cfg->tied) {
        err_set(err, "%s: tie_word_embeddings is false but there is no lm_head.weight", dir);
        goto out;
    }
    const char *const *hn = hf_norm_names(&h, cfg);
    for (int i = 0; i < h.st.n_files; i++) {
        if (model_storage_add_mapping(m, h.st.files[i].map, h.st.files[i].map_len, err)) goto out;
        h.st.files[i].map = NULL;
    }
    const int L = cfg->n_layers, D = cfg->dim, F = cfg->ffn_dim;
    const int QD = cfg->n_heads * cfg->head_dim, KVD = cfg->n_kv_heads * cfg->head_dim;
    Progress pr = {opt, 0, 14 * L + 3, dir};
    /* As for GGUF: all tensors present (norms with their shapes) before allocating. */
    for (int l = 0; l < L; l++) {
        static const char *hm[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                    "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
        char nm2[160];
        for (int i = 0; i < 4; i++) {
            if (!hn[i]) continue;
            snprintf(nm2, sizeof nm2, "model.layers.%d.%s.weight", l, hn[i]);
            if (!h_tensor(&h, nm2, (uint64_t)(i == 3 ? F : D), 0, 1, err)) goto out;
        }
        for (int i = 0; i < 7; i++) {
            snprintf(nm2, sizeof nm2, "model.layers.%d.%s.weight", l, hm[i]);
            if (!st_find(&h.st, nm2)) {
                err_set(err, "%s: missing tensor %s", dir, nm2);
                goto out;
            }
        }
    }
    m->layers = calloc((size_t)L, sizeof *m->layers);
    float *norms = model_storage_alloc(m, ((size_t)L * (3 * D + F) + D) * sizeof(float), err);
    if (!m->layers || !norms) {
        if (!m->layers) err_set(err, "out of memory");
        goto out;
    }
    if (h_dense(m, &h, "model.embed_tokens.weight", &m->tok_embd, err) || step(&pr, "embedding", err))
        goto out;
    if (!cfg->tied) {
        if (h_dense(m, &h, "lm_head.weight", &m->output, err)) goto out;
    } else {
        m->output = m->tok_embd;
    }
    m->output_norm = norms;
    if (h_norm(&h, "model.norm.weight", D, norms, err)) goto out;
    norms += D;
    char name[160];
    static const char *mats[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                  "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    for (int l = 0; l < L; l++) {
        LayerWeights *lw = &m->layers[l];
        TernaryMatrix *tms[7] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->w_gate, &lw->w_up, &lw->w_down};
        const int outs[7] = {QD, KVD, KVD, D, F, F, D}, ins[7] = {D, D, D, QD, D, D, F};
        struct { const char *n; int len; const float **dst; } nm[4] = {
            {hn[0], D, &lw->attn_norm}, {hn[1], D, &lw->attn_sub_norm},
            {hn[2], D, &lw->ffn_norm}, {hn[3], F, &lw->ffn_sub_norm}};
        for (int i = 0; i < 4; i++) {
            if (!nm[i].n) continue;
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, nm[i].n);
            if (h_norm(&h, name, nm[i].len, norms, err)) goto out;
            *nm[i].dst = norms;
            norms += nm[i].len;
        }
        for (int i = 0; i < 7; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, mats[i]);
            if (h_ternary(m, &h, &jl, name, outs[i], ins[i], tms[i], err) || step(&pr, "weights", err))
                goto out;
        }
    }
    if (jobs_run(&jl, &pr, err)) goto out;
    if (step(&pr, "tokenizer", err)) goto out;
    m->tok = hf_tokenizer(dir, err);
    if (!m->tok) goto out;
    if (tokenizer_n_vocab(m->tok) > cfg->vocab_size) {
        err_set(err, "%s: tokenizer has %d tokens but the model only %d", dir,
                tokenizer_n_vocab(m->tok), cfg->vocab_size);
        goto out;
    }
    m->chat_template = read_chat_template(dir);
    cfg->bos_id = tokenizer_bos(m->tok);
    snprintf(p, sizeof p, "%s/config.json", dir);
    int bos_cfg[1], extra[8], n_bos, n_extra;
    if ((n_bos = j_ids(json_object_get(jc, "bos_token_id"), bos_cfg, 1, "bos_token_id",
                       cfg->vocab_size, p, err)) < 0 ||
        (n_extra = j_ids(json_object_get(jc, "eos_token_id"), extra, 8, "eos_token_id",
                         cfg->vocab_size, p, err)) < 0)
        goto out;
    if (cfg->bos_id < 0 && n_bos == 1) cfg->bos_id = bos_cfg[0];
    finish_stops(m, extra, n_extra);
    if (cfg->n_stop == 0) {
        err_set(err, "%s: no end-of-text token (no <|eot_id|> or <|end_of_text|> in tokenizer.json, "
                     "no eos_token_id in config.json): a reply could never stop", dir);
        goto out;
    }
    snprintf(m->format, sizeof m->format, "hf-safetensors");
    if (step(&pr, "done", err)) goto out;
    rc = 0;
out:
    free(jl.jobs);
    st_close(&h.st);
    json_decref(jc);
    return rc;
}

/* ---- entry points --------------------------------------------------------------------------- */

static int has_magic(const char *path, const char *magic) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char b[4] = {0};
    size_t n = fread(b, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(b, magic, 4);
}

/* Resolves PATH to either a GGUF file or an HF directory (a config.json or *.safetensors path
 * inside one counts as the directory). Returns 1 = GGUF, 2 = HF dir (dir filled), -1 = error. */
static int classify(const char *path, char *dir, size_t cap, Err *err) {
    struct stat st;
    if (!path || !*path) return err_set(err, "no model path given");
    if (stat(path, &st) != 0)
        return err_set(err, "%s: %s", path, errno == ENOENT ? "no such file or directory" : strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, cap, "%s", path);
        return 2;
    }
    if (!S_ISREG(st.st_mode)) return err_set(err, "%s: not a regular file or directory", path);
    if (has_magic(path, "GGUF") || has_magic(path, "FUGG")) return 1;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (!strcmp(base, "config.json") || (n > 12 && !strcmp(base + n - 12, ".safetensors")) ||
        !strcmp(base, "model.safetensors.index.json")) {
        size_t dl = (size_t)(base - path);
        if (dl == 0) snprintf(dir, cap, ".");
        else snprintf(dir, cap, "%.*s", (int)(dl - 1 ? dl - 1 : 1), path);
        return 2;
    }
    if (st.st_size < 4) return err_set(err, "%s: empty or tiny file, not a model", path);
    return err_set(err, "%s: not a GGUF file (bad magic) nor a Hugging Face model directory", path);
}

int model_load(Model *m, const char *path, const ModelLoadOptions *opt, Err *err) {
    memset(m, 0, sizeof *m);
    char dir[4096];
    int kind = classify(path, dir, sizeof dir, err);
    if (kind < 0) return -1;
    int rc = kind == 1 ? load_gguf(m, path, opt, err) : load_hf(m, dir, opt, err);
    if (rc) {
        model_free(m);
        return -1;
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    return 0;
}

Tokenizer *model_load_tokenizer(const char *path, Err *err) {
    char dir[4096];
    struct stat st;
    if (path && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        size_t n = strlen(path);
        if (n >= 5 && !strcmp(path + n - 5, ".json") && strcmp(path + (n >= 11 ? n - 11 : 0), "config.json"))
            return checked_json_tokenizer(path, err);
        if (n >= 6 && !strcmp(path + n - 6, ".model")) { /* SentencePiece's tokenizer.model */
            SpmModel *s = spm_load_file(path, err);
            return s ? tokenizer_from_spm(s, err) : NULL;
        }
    }
    int kind = classify(path, dir, sizeof dir, err);
    if (kind < 0) return NULL;
    if (kind == 2) return hf_tokenizer(dir, err);
    GgufCtx c;
    memset(&c, 0, sizeof c);
    if (gguf_open(&c.g, path, err)) return NULL;
    Tokenizer *t = gguf_tokenizer(&c, err);
    gguf_close(&c.g);
    return t;
}
