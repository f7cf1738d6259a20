/* GGUF writer for converted models (see gguf_write.h). */
#include "infer/gguf_write.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer/gguf.h"
#include "infer/model_quant.h"
#include "infer/tokenizer.h"
#include "infer/tokenizer_spm.h"
#include "kernels/w2a8.h"

const char *const BITNET_CHAT_TEMPLATE =
    "{% for message in messages %}{% set content = message['role'] | capitalize + ': ' + "
    "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = "
    "bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ 'Assistant: ' }}{% endif %}";

enum { ALIGN = 32 };

/* ---- growable byte buffer for the header ------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} Buf;

static void put(Buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(Buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(Buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(Buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}
static void kv_key(Buf *b, const char *k, uint32_t type) {
    put_str(b, k, strlen(k));
    put_u32(b, type);
}
static void kv_u32(Buf *b, int *n, const char *k, uint32_t v) { kv_key(b, k, GGUF_UINT32); put_u32(b, v); (*n)++; }
static void kv_f32(Buf *b, int *n, const char *k, float v) { kv_key(b, k, GGUF_FLOAT32); put(b, &v, 4); (*n)++; }
static void kv_bool(Buf *b, int *n, const char *k, int v) { uint8_t x = (uint8_t)!!v; kv_key(b, k, GGUF_BOOL); put(b, &x, 1); (*n)++; }
static void kv_str(Buf *b, int *n, const char *k, const char *v) { kv_key(b, k, GGUF_STRING); put_str(b, v, strlen(v)); (*n)++; }

/* ---- tensors ---------------------------------------------------------------------------------- */

typedef enum { SRC_TERNARY, SRC_NORM, SRC_DENSE } SrcKind;

typedef struct {
    char name[64];
    SrcKind kind;
    uint32_t type;
    uint64_t ne0, ne1;
    int n_dims;
    uint64_t nbytes;
    const TernaryMatrix *tm;
    int permute_heads;   /* SRC_TERNARY: > 0 = q/k of arch llama, rows reordered per head */
    const float *norm;
    const DenseMatrix *dense;
} OutTensor;

/* Embedding type on disk: F16 unless that would change a value. */
static uint32_t dense_out_type(const DenseMatrix *d) {
    if (d->type == FT_F16) return GGML_F16;
    const size_t n = (size_t)d->rows * d->cols;
    for (size_t i = 0; i < n; i++) {
        float v = float_elem(d->data, d->type, i);
        if (f16_to_f32(f32_to_f16(v)) != v && !isnan(v)) return d->type == FT_BF16 ? GGML_BF16 : GGML_F32;
    }
    return GGML_F16;
}

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

static int write_pad(FILE *f, uint64_t n) {
    static const uint8_t zeros[ALIGN];
    return n ? write_all(f, zeros, (size_t)n) : 0;
}

static int write_tensor(FILE *f, const OutTensor *t) {
    if (t->kind == SRC_TERNARY) {
        const TernaryMatrix *tm = t->tm;
        const size_t rb = (size_t)tm->n_in / 4;
        if (tm->n_in_pad != tm->n_in) {
            /* rows of a length that is no multiple of 128 (1bitLLM-3B's 8640): bitnet.cpp's
             * layout, 128-value blocks over the flattened tensor that cross rows
             * (model_quant.h i2s_flat_to_i2s reads it back) */
            const size_t prb = i2s_row_bytes(tm->n_in_pad);
            const int hd = t->permute_heads > 0 ? tm->n_out / t->permute_heads : 0;
            uint8_t blk[I2S_BLOCK_BYTES] = {0};
            int pos = 0;
            for (int g = 0; g < tm->n_out; g++) {
                const int h = hd ? g / hd : 0, r = hd ? g % hd : 0;
                const uint8_t *row = tm->codes + prb * (size_t)(hd ? h * hd + (r % 2) * (hd / 2) + r / 2 : g);
                for (int k = 0; k < tm->n_in; k++) {
                    const int c = row[k / I2S_BLOCK * I2S_BLOCK_BYTES + k % 32] >> (6 - 2 * (k % I2S_BLOCK / 32)) & 3;
                    blk[pos % 32] |= (uint8_t)(c << (6 - 2 * (pos / 32)));
                    if (++pos == I2S_BLOCK) {
                        if (write_all(f, blk, sizeof blk)) return -1;
                        memset(blk, 0, sizeof blk);
                        pos = 0;
                    }
                }
            }
        } else if (t->permute_heads > 0) {
            /* llama.cpp's q/k order (model_load.c unpermute_qk is the inverse): file row
             * 2i + half of a head holds model row half * head_dim/2 + i */
            const int hd = tm->n_out / t->permute_heads;
            for (int g = 0; g < tm->n_out; g++) {
                const int h = g / hd, r = g % hd;
                if (write_all(f, tm->codes + rb * (size_t)(h * hd + (r % 2) * (hd / 2) + r / 2), rb))
                    return -1;
            }
        } else if (write_all(f, tm->codes, (size_t)tm->n_out * rb)) {
            return -1;
        }
        uint8_t tail[32] = {0};
        memcpy(tail, &tm->scale, 4);
        return write_all(f, tail, sizeof tail);
    }
    if (t->kind == SRC_NORM) return write_all(f, t->norm, (size_t)t->ne0 * 4);
    const DenseMatrix *d = t->dense;
    const size_t n = (size_t)d->rows * d->cols;
    if ((t->type == GGML_F16 && d->type == FT_F16) || (t->type == GGML_BF16 && d->type == FT_BF16) ||
        (t->type == GGML_F32 && d->type == FT_F32))
        return write_all(f, d->data, n * (t->type == GGML_F32 ? 4 : 2));
    uint16_t chunk[4096];
    for (size_t i = 0; i < n; i += 4096) {
        size_t m = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < m; j++) chunk[j] = f32_to_f16(float_elem(d->data, d->type, i + j));
        if (write_all(f, chunk, m * 2)) return -1;
    }
    return 0;
}

static void add_tensor(OutTensor *ts, int *n, const char *name, SrcKind kind, uint32_t type,
                       uint64_t ne0, uint64_t ne1, int n_dims) {
    OutTensor *t = &ts[(*n)++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->type = type;
    t->ne0 = ne0;
    t->ne1 = ne1;
    t->n_dims = n_dims;
    uint64_t ne[4] = {ne0, ne1, 1, 1};
    t->nbytes = gguf_tensor_nbytes(type, ne, NULL);
}

static int is_llama3_vocab(const TokenizerVocab *v) {
    return !v->pre || !strcmp(v->pre, "llama-bpe") || !strcmp(v->pre, "llama3");
}

/* The temporary file being written, for gguf_write_remove_partial (from a signal handler). */
static char partial_path[4200];
static volatile sig_atomic_t partial_set;

void gguf_write_remove_partial(void) {
    if (partial_set) unlink(partial_path);
}

/* The output must be a new file or a regular file to replace: the finished file is renamed
 * into place, which would swap a device (/dev/null), a FIFO or a directory for a regular file.
 * A symbolic link to a regular file is followed, so the file it names is the one replaced. */
int gguf_write_check_output(const char *out_path, char *resolved, size_t cap, Err *err) {
    struct stat ls, st;
    if (resolved && cap) snprintf(resolved, cap, "%s", out_path);
    if (!out_path || !out_path[0]) return err_set(err, "the output path is empty");
    if (lstat(out_path, &ls) != 0) {
        if (errno == ENOENT) return 0;
        return err_set(err, "%s: %s", out_path, strerror(errno));
    }
    if (S_ISLNK(ls.st_mode)) {
        if (stat(out_path, &st) != 0) {
            if (errno == ENOENT) return 0; /* a dangling link is replaced like a missing file */
            return err_set(err, "%s: %s", out_path, strerror(errno));
        }
    } else {
        st = ls;
    }
    if (S_ISDIR(st.st_mode))
        return err_set(err, "%s: is a directory (give the path of the .gguf file to write)",
                       out_path);
    if (!S_ISREG(st.st_mode))
        return err_set(err, "%s: not a regular file (a device, FIFO or socket); refusing to "
                       "replace it", out_path);
    if (S_ISLNK(ls.st_mode) && resolved && cap) {
        char *real = realpath(out_path, NULL);
        if (!real) return err_set(err, "%s: %s", out_path, strerror(errno));
        if (strlen(real) >= cap) {
            free(real);
            return err_set(err, "%s: path too long", out_path);
        }
        snprintf(resolved, cap, "%s", real);
        free(real);
    }
    return 0;
}

int gguf_write_model(const Model *m, const char *out_path, char *note, size_t note_cap, Err *err) {
    if (note && note_cap) note[0] = 0;
    char out_real[4096];
    if (gguf_write_check_output(out_path, out_real, sizeof out_real, err)) return -1;
    const ModelConfig *c = &m->cfg;
    /* BitNet 2B-4T is written as arch bitnet-b1.58, the Llama-style models (SiLU, no
     * sub-norms) as bitnet.cpp writes them: arch llama, q/k rows permuted. 1bitLLM's SiLU
     * BitNet would be bitnet-b1.58 too, which readers tell from 2B-4T by its SentencePiece
     * vocabulary, and this writer only writes BPE ones. */
    const int is_llama = c->ffn_act == FFN_SILU && !c->sub_norms;
    if (!is_llama && !c->sub_norms)
        return err_set(err, "%s: writing a relu2 model without sub-norms to GGUF is not supported", out_path);
    if (!m->tok) return err_set(err, "%s: the model has no tokenizer to write", out_path);
    const TokenizerVocab *v = tokenizer_vocab(m->tok);
    const SpmModel *spm = tokenizer_spm(m->tok);
    if (!v && !spm) return err_set(err, "%s: the tokenizer cannot give back its vocabulary", out_path);
    if (spm && spm_gguf_form(spm, err)) {
        err_prefix(err, "%s", out_path);
        return -1;
    }
    /* 1bitLLM's SiLU BitNet is bitnet-b1.58 as bitnet.cpp writes it; readers tell it from
     * 2B-4T (relu2) by its SentencePiece vocabulary, so a SiLU one with a BPE vocabulary, or a
     * relu2 one with a SentencePiece vocabulary, would read back wrong */
    if (!is_llama && (c->ffn_act == FFN_SILU) != (spm != NULL))
        return err_set(err, "%s: a %s BitNet model with a %s vocabulary cannot be written so that it reads "
                            "back the same (GGUF tells 1bitLLM's SiLU from 2B-4T's relu2 by the vocabulary)",
                       out_path, c->ffn_act == FFN_SILU ? "SiLU" : "relu2", spm ? "SentencePiece" : "BPE");

    /* ---- tensor list ---- */
    const int n_max = 3 + 11 * c->n_layers;
    OutTensor *ts = calloc((size_t)n_max, sizeof *ts);
    Buf h = {0};
    FILE *f = NULL;
    char tmp[4200] = "";
    int rc = -1;
    if (!ts) return err_set(err, "out of memory");
    int nt = 0;
    uint32_t emb_type = dense_out_type(&m->tok_embd);
    add_tensor(ts, &nt, "token_embd.weight", SRC_DENSE, emb_type, (uint64_t)c->dim, (uint64_t)c->vocab_size, 2);
    ts[nt - 1].dense = &m->tok_embd;
    add_tensor(ts, &nt, "output_norm.weight", SRC_NORM, GGML_F32, (uint64_t)c->dim, 1, 1);
    ts[nt - 1].norm = m->output_norm;
    if (m->output.data && m->output.data != m->tok_embd.data) {
        add_tensor(ts, &nt, "output.weight", SRC_DENSE, dense_out_type(&m->output), (uint64_t)c->dim,
                   (uint64_t)c->vocab_size, 2);
        ts[nt - 1].dense = &m->output;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *lw = &m->layers[l];
        struct { const char *n; const TernaryMatrix *tm; const float *norm; int len; } parts[11] = {
            {"attn_norm", NULL, lw->attn_norm, c->dim}, {"attn_q", &lw->wq, NULL, 0},
            {"attn_k", &lw->wk, NULL, 0}, {"attn_v", &lw->wv, NULL, 0},
            {"attn_output", &lw->wo, NULL, 0}, {"attn_sub_norm", NULL, lw->attn_sub_norm, c->dim},
            {"ffn_norm", NULL, lw->ffn_norm, c->dim}, {"ffn_gate", &lw->w_gate, NULL, 0},
            {"ffn_up", &lw->w_up, NULL, 0}, {"ffn_down", &lw->w_down, NULL, 0},
            {"ffn_sub_norm", NULL, lw->ffn_sub_norm, c->ffn_dim}};
        for (int i = 0; i < 11; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, parts[i].n);
            if (!parts[i].tm && !parts[i].norm) continue; /* a plain Llama block's sub-norms */
            if (parts[i].tm) {
                const TernaryMatrix *tm = parts[i].tm;
                if ((uint64_t)tm->n_in * (uint64_t)tm->n_out % I2S_BLOCK || tm->n_in % 4) {
                    err_set(err, "%s: %s holds %d x %d weights; I2_S needs a whole number of %d-value "
                            "blocks", out_path, name, tm->n_out, tm->n_in, I2S_BLOCK);
                    goto out;
                }
                add_tensor(ts, &nt, name, SRC_TERNARY, GGML_I2_S, (uint64_t)tm->n_in, (uint64_t)tm->n_out, 2);
                ts[nt - 1].tm = tm;
                if (is_llama && tm == &lw->wq) ts[nt - 1].permute_heads = c->n_heads;
                if (is_llama && tm == &lw->wk) ts[nt - 1].permute_heads = c->n_kv_heads;
            } else {
                add_tensor(ts, &nt, name, SRC_NORM, GGML_F32, (uint64_t)parts[i].len, 1, 1);
                ts[nt - 1].norm = parts[i].norm;
            }
        }
    }

    /* ---- header: key/values ---- */
    int n_kv = 0;
    Buf kv = {0};
    const char *A = is_llama ? "llama" : "bitnet-b1.58";
    char k[128];
#define AK(s) (snprintf(k, sizeof k, "%s.%s", A, s), k)
    kv_str(&kv, &n_kv, "general.architecture", A);
    kv_str(&kv, &n_kv, "general.name", c->name[0] ? c->name : "bitnet");
    kv_u32(&kv, &n_kv, "general.file_type", 40); /* LLAMA_FTYPE_MOSTLY_I2_S in BitNet's fork */
    kv_u32(&kv, &n_kv, "general.quantization_version", 2);
    kv_u32(&kv, &n_kv, "general.alignment", ALIGN);
    kv_u32(&kv, &n_kv, AK("vocab_size"), (uint32_t)c->vocab_size);
    kv_u32(&kv, &n_kv, AK("context_length"), (uint32_t)c->ctx_len);
    kv_u32(&kv, &n_kv, AK("embedding_length"), (uint32_t)c->dim);
    kv_u32(&kv, &n_kv, AK("block_count"), (uint32_t)c->n_layers);
    kv_u32(&kv, &n_kv, AK("feed_forward_length"), (uint32_t)c->ffn_dim);
    kv_u32(&kv, &n_kv, AK("rope.dimension_count"), (uint32_t)c->head_dim);
    kv_u32(&kv, &n_kv, AK("attention.head_count"), (uint32_t)c->n_heads);
    kv_u32(&kv, &n_kv, AK("attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    kv_f32(&kv, &n_kv, AK("attention.layer_norm_rms_epsilon"), c->norm_eps);
    kv_f32(&kv, &n_kv, AK("rope.freq_base"), c->rope_theta);
#undef AK
    if (spm) {
        /* SentencePiece as llama.cpp's "llama" tokenizer: pieces, scores, token types */
        const int n = spm_n_vocab(spm);
        kv_str(&kv, &n_kv, "tokenizer.ggml.model", "llama");
        kv_key(&kv, "tokenizer.ggml.tokens", GGUF_ARRAY);
        put_u32(&kv, GGUF_STRING);
        put_u64(&kv, (uint64_t)n);
        for (int i = 0; i < n; i++) {
            size_t l = 0;
            const char *p = spm_piece(spm, i, &l);
            put_str(&kv, p, l);
        }
        n_kv++;
        kv_key(&kv, "tokenizer.ggml.scores", GGUF_ARRAY);
        put_u32(&kv, GGUF_FLOAT32);
        put_u64(&kv, (uint64_t)n);
        for (int i = 0; i < n; i++) {
            const float sc = spm_score(spm, i);
            put(&kv, &sc, 4);
        }
        n_kv++;
        kv_key(&kv, "tokenizer.ggml.token_type", GGUF_ARRAY);
        put_u32(&kv, GGUF_INT32);
        put_u64(&kv, (uint64_t)n);
        for (int i = 0; i < n; i++) {
            const int32_t ty = spm_type(spm, i);
            put(&kv, &ty, 4);
        }
        n_kv++;
        kv_bool(&kv, &n_kv, "tokenizer.ggml.add_space_prefix", spm_add_prefix(spm));
        goto specials;
    }
    kv_str(&kv, &n_kv, "tokenizer.ggml.model", "gpt2");
    if (is_llama3_vocab(v)) kv_str(&kv, &n_kv, "tokenizer.ggml.pre", "llama-bpe");
    else kv_str(&kv, &n_kv, "tokenizer.ggml.pre", v->pre);
    kv_key(&kv, "tokenizer.ggml.tokens", GGUF_ARRAY);
    put_u32(&kv, GGUF_STRING);
    put_u64(&kv, (uint64_t)v->n_tokens);
    for (int i = 0; i < v->n_tokens; i++)
        put_str(&kv, v->tokens[i], v->token_lens ? v->token_lens[i] : strlen(v->tokens[i]));
    n_kv++;
    kv_key(&kv, "tokenizer.ggml.token_type", GGUF_ARRAY);
    put_u32(&kv, GGUF_INT32);
    put_u64(&kv, (uint64_t)v->n_tokens);
    for (int i = 0; i < v->n_tokens; i++) {
        int32_t ty = v->token_types ? v->token_types[i]
                                    : (tokenizer_is_special(m->tok, i) ? TOKTYPE_CONTROL : TOKTYPE_NORMAL);
        put(&kv, &ty, 4);
    }
    n_kv++;
    kv_key(&kv, "tokenizer.ggml.merges", GGUF_ARRAY);
    put_u32(&kv, GGUF_STRING);
    put_u64(&kv, (uint64_t)v->n_merges);
    for (int i = 0; i < v->n_merges; i++)
        put_str(&kv, v->merges[i], v->merge_lens ? v->merge_lens[i] : strlen(v->merges[i]));
    n_kv++;
specials:;
    int bos = tokenizer_bos(m->tok), eos = tokenizer_eos(m->tok), eot = tokenizer_eot(m->tok);
    /* GGUF has one eos and one eot key. HF configs often name <|eot_id|> as the tokenizer's eos
     * and list <|end_of_text|> only in config.json; keep both stops by writing the first stop
     * that is not the eot as eos. */
    if (eos == eot)
        for (int i = 0; i < c->n_stop; i++)
            if (c->stop_ids[i] != eot) {
                eos = c->stop_ids[i];
                break;
            }
    if (bos >= 0) kv_u32(&kv, &n_kv, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0) kv_u32(&kv, &n_kv, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (eot >= 0) kv_u32(&kv, &n_kv, "tokenizer.ggml.eot_token_id", (uint32_t)eot);
    kv_bool(&kv, &n_kv, "tokenizer.ggml.add_bos_token", bos >= 0);
    /* 2B-4T gets the template it was trained on (not the one bitnet.cpp writes); the other
     * families keep their own, which is what readers detect the format from */
    if (c->chat_format == CHAT_BITNET)
        kv_str(&kv, &n_kv, "tokenizer.chat_template", BITNET_CHAT_TEMPLATE);
    else if (m->chat_template)
        kv_str(&kv, &n_kv, "tokenizer.chat_template", m->chat_template);

    put(&h, "GGUF", 4);
    put_u32(&h, 3);
    put_u64(&h, (uint64_t)nt);
    put_u64(&h, (uint64_t)n_kv);
    if (!kv.oom) put(&h, kv.p, kv.n);
    free(kv.p);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        put_str(&h, ts[i].name, strlen(ts[i].name));
        put_u32(&h, (uint32_t)ts[i].n_dims);
        put_u64(&h, ts[i].ne0);
        if (ts[i].n_dims == 2) put_u64(&h, ts[i].ne1);
        put_u32(&h, ts[i].type);
        put_u64(&h, off);
        off += (ts[i].nbytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    if (h.oom || kv.oom) {
        err_set(err, "out of memory");
        goto out;
    }

    /* ---- write to a temporary file beside OUT, then rename ---- */
    {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", out_real);
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp-XXXXXX", dirname(dir), "bitnet-convert");
    }
    /* Stop signals wait while the file is created and recorded, so that a handler calling
     * gguf_write_remove_partial never misses a file that exists. */
    sigset_t stop_sigs, old_mask;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, &old_mask);
    int fd = mkstemp(tmp);
    if (fd >= 0) {
        memcpy(partial_path, tmp, sizeof partial_path);
        partial_set = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (fd < 0) {
        err_set(err, "%s: cannot create the output file: %s", out_path, strerror(errno));
        tmp[0] = 0;
        goto out;
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; a model file is not secret */
    f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        err_set(err, "%s: %s", out_path, strerror(errno));
        goto out;
    }
    errno = 0;
    if (write_all(f, h.p, h.n) || write_pad(f, (ALIGN - h.n % ALIGN) % ALIGN)) goto io_fail;
    for (int i = 0; i < nt; i++)
        if (write_tensor(f, &ts[i]) || write_pad(f, (ALIGN - ts[i].nbytes % ALIGN) % ALIGN)) goto io_fail;
    if (fflush(f) || fsync(fileno(f))) goto io_fail;
    if (fclose(f)) {
        f = NULL;
        goto io_fail;
    }
    f = NULL;
    if (rename(tmp, out_real)) {
        err_set(err, "%s: cannot rename the finished file into place: %s", out_path, strerror(errno));
        goto out;
    }
    tmp[0] = 0;
    if (note && emb_type != GGML_F16)
        snprintf(note, note_cap, "token_embd kept as %s: F16 cannot hold every value exactly",
                 gguf_type_name(emb_type));
    rc = 0;
    goto out;
io_fail:
    err_set(err, "%s: write failed: %s", out_path, errno ? strerror(errno) : "I/O error");
out:
    if (f) fclose(f);
    if (tmp[0]) unlink(tmp);
    partial_set = 0;
    free(h.p);
    free(ts);
    return rc;
}

/* ---- comparison ------------------------------------------------------------------------------- */

static int tm_equal(const TernaryMatrix *a, const TernaryMatrix *b, const char *what, int l,
                    char *why, size_t cap) {
    if (a->n_out != b->n_out || a->n_in != b->n_in) {
        snprintf(why, cap, "layer %d %s: shapes differ", l, what);
        return -1;
    }
    uint32_t sa, sb;
    memcpy(&sa, &a->scale, 4);
    memcpy(&sb, &b->scale, 4);
    if (sa != sb) {
        snprintf(why, cap, "layer %d %s: scale %.9g vs %.9g", l, what, (double)a->scale, (double)b->scale);
        return -1;
    }
    const size_t ra = i2s_row_bytes(a->n_in_pad), rb = i2s_row_bytes(b->n_in_pad);
    if (ra == rb && !memcmp(a->codes, b->codes, ra * (size_t)a->n_out)) return 0; /* fast path */
    for (int r = 0; r < a->n_out; r++)
        for (int j = 0; j < a->n_in; j++)
            if (i2s_get(a->codes + ra * (size_t)r, j) != i2s_get(b->codes + rb * (size_t)r, j)) {
                snprintf(why, cap, "layer %d %s: weight [%d][%d] differs", l, what, r, j);
                return -1;
            }
    return 0;
}

static int vec_equal(const float *a, const float *b, int n, const char *what, int l, char *why,
                     size_t cap) {
    if (!a || !b ? a != b : memcmp(a, b, (size_t)n * 4) != 0) { /* sub-norms may be absent */
        snprintf(why, cap, "layer %d %s differs", l, what);
        return -1;
    }
    return 0;
}

static int dense_equal(const DenseMatrix *a, const DenseMatrix *b, const char *what, char *why,
                       size_t cap) {
    if (a->rows != b->rows || a->cols != b->cols) {
        snprintf(why, cap, "%s: shapes differ", what);
        return -1;
    }
    const size_t n = (size_t)a->rows * a->cols;
    if (a->type == b->type && !memcmp(a->data, b->data, n * (a->type == FT_F32 ? 4 : 2))) return 0;
    for (size_t i = 0; i < n; i++) {
        float x = float_elem(a->data, a->type, i), y = float_elem(b->data, b->type, i);
        if (memcmp(&x, &y, 4) && !(isnan(x) && isnan(y))) {
            snprintf(why, cap, "%s: element %zu differs (%g vs %g)", what, i, (double)x, (double)y);
            return -1;
        }
    }
    return 0;
}

int model_weights_equal(const Model *a, const Model *b, char *why, size_t cap) {
    const ModelConfig *x = &a->cfg, *y = &b->cfg;
    if (x->n_layers != y->n_layers || x->dim != y->dim || x->n_heads != y->n_heads ||
        x->n_kv_heads != y->n_kv_heads || x->ffn_dim != y->ffn_dim || x->vocab_size != y->vocab_size ||
        x->ctx_len != y->ctx_len || x->rope_theta != y->rope_theta || x->norm_eps != y->norm_eps ||
        x->ffn_act != y->ffn_act || x->sub_norms != y->sub_norms) {
        snprintf(why, cap, "model configs differ");
        return -1;
    }
    if (dense_equal(&a->tok_embd, &b->tok_embd, "token embedding", why, cap) ||
        dense_equal(&a->output, &b->output, "lm_head", why, cap) ||
        vec_equal(a->output_norm, b->output_norm, x->dim, "output_norm", -1, why, cap))
        return -1;
    for (int l = 0; l < x->n_layers; l++) {
        const LayerWeights *p = &a->layers[l], *q = &b->layers[l];
        if (vec_equal(p->attn_norm, q->attn_norm, x->dim, "attn_norm", l, why, cap) ||
            vec_equal(p->attn_sub_norm, q->attn_sub_norm, x->dim, "attn_sub_norm", l, why, cap) ||
            vec_equal(p->ffn_norm, q->ffn_norm, x->dim, "ffn_norm", l, why, cap) ||
            vec_equal(p->ffn_sub_norm, q->ffn_sub_norm, x->ffn_dim, "ffn_sub_norm", l, why, cap) ||
            tm_equal(&p->wq, &q->wq, "wq", l, why, cap) || tm_equal(&p->wk, &q->wk, "wk", l, why, cap) ||
            tm_equal(&p->wv, &q->wv, "wv", l, why, cap) || tm_equal(&p->wo, &q->wo, "wo", l, why, cap) ||
            tm_equal(&p->w_gate, &q->w_gate, "w_gate", l, why, cap) ||
            tm_equal(&p->w_up, &q->w_up, "w_up", l, why, cap) ||
            tm_equal(&p->w_down, &q->w_down, "w_down", l, why, cap))
            return -1;
    }
    return 0;
}
