/* CPU backend: the BitNet b1.58 forward pass on the CPU kernels (kernels/cpu), multithreaded on
 * one persistent pool. Per layer, for a batch of T tokens (bitnet.md 1.2):
 *   h = RMSNorm(x) -> int8 per token -> q, k, v (ternary) -> RoPE -> KV cache
 *   -> causal GQA attention -> RMSNorm (attn_sub_norm) -> int8 -> o_proj -> x += o
 *   h = RMSNorm(x) -> int8 -> gate, up (ternary) -> act(g) * u -> RMSNorm (ffn_sub_norm)
 *   -> int8 -> down_proj -> x += d
 * where act is relu^2 (2B-4T) or SiLU (Llama-style, 1bitLLM), and a plain Llama block
 * (cfg.sub_norms == 0) quantizes the attention output and act(g) * u without the sub-norms.
 * then the final RMSNorm and the lm_head (f16/bf16/f32 embedding, fp32 accumulation).
 * The lm_head of the last token is lazy: eval keeps its input (the normed final hidden vector);
 * logits() computes the whole head on demand, and sample() screens it where the sampler only
 * looks at the k best logits (greedy, top-k): an int8 copy of the table (half the bytes) bounds
 * every logit, and only the rows that can reach the top k are computed exactly, by the very
 * arithmetic of the whole head (kernels_cpu.h, "the screened exact lm_head"). The token picked
 * is the one the whole head gives, ties and sampler draws included.
 * Prompts run in batches of up to max_batch tokens through the ternary GEMM, so each weight is
 * read once per batch; decode is the T = 1 case (GEMV). Every buffer, the KV cache and the RoPE
 * table are allocated once at create (the ones sized by the context are mapped and take memory
 * only as positions are used; see lazy_map): eval allocates nothing and does no I/O. */
#include "infer/backend_cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "infer/cpu_weights.h"
#include "kernels/cpu/kernels_cpu.h"

enum { HEAD_NONE = 0, HEAD_PENDING, HEAD_FULL };

typedef struct {
    const Model *m;  /* the model as the kernels read it: the weight store's view (cpu_weights.h) */
    CpuWeights *weights;
    const uint8_t *const *r16; /* [n_layers][MAT_COUNT] R16 copies of the ternaries, or NULL */
    const int8_t *lm_q;     /* int8 lm_head (InferOptions.lm_head_int8), or the screen's table */
    const float *lm_scale;
    const float *lm_bound;  /* the screen's B_r, NULL when the int8 table IS the head or no screen */
    LmScreen *screen;
    float *slogits;         /* [vocab] the screened logits (exact candidates, -inf elsewhere) */
    uint8_t *pen_mask;      /* [vocab] rows under the repetition penalty, zero between tokens */
    int32_t *pen_ids;       /* [vocab] */
    float *xlast;           /* [dim] the lm_head input of the last token evaluated */
    int head;               /* HEAD_*: what logits holds */
    int screen_cap;         /* most candidates computed exactly before falling back */
    int force_full;         /* backend_cpu_set_full_head (InferOptions.lm_head_full makes no screen) */
    CpuScreenStats stats;
    ModelConfig c;
    CpuPool *pool;
    int n_threads;
    int ctx, B, kv_f16;
    int q_dim, kv_dim;
    CpuDenseType emb_type, out_type;
    /* activations, B token rows each */
    float *x;        /* [B][dim] residual stream */
    float *xn;       /* [B][xn_ld] normed rows / lm_head input */
    int xn_ld;       /* max(dim, q_dim, ffn) */
    int8_t *q8;      /* [B][k_pad] int8 activations of the current linear, rows k_pad apart */
    int k8_ld;       /* max n_in_pad */
    float *qs;       /* [B] activation scales s */
    int32_t *qsum;   /* [B] sums of the int8 rows */
    float *q, *k, *v;/* [B][q_dim], [B][kv_dim], [B][kv_dim] */
    float *att;      /* [B][q_dim] attention output */
    float *g, *u;    /* [B][ffn] */
    float *scores;   /* [n_threads][group][ctx] attention probabilities (lazy_map) */
    float *rope;     /* [ctx][head_dim/2][2] cos, sin (lazy_map), rows < rope_rows filled */
    int rope_rows;
    float *logits;   /* [vocab] of the last token evaluated */
    void *kcache, *vcache; /* [n_layers][ctx][kv_dim], f16 or f32 (lazy_map) */
    size_t kv_bytes, scores_bytes, rope_bytes; /* sizes of the lazy_map buffers */
    uint8_t *valid;  /* [n_layers][MAT_COUNT]: W2A8_CODES_VALID when the matrix holds no code 3 */
    char desc[160];
} CpuBackend;

static void *xcalloc(size_t n, size_t size, int *failed) {
    void *p = NULL;
    const size_t bytes = n * size;
    if (size && bytes / size != n) {
        *failed = 1;
        return NULL;
    }
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        *failed = 1;
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

/* The buffers that grow with the context (KV cache, RoPE table, attention scores) are mapped,
 * not allocated and cleared: the kernel hands out zero pages on first write, so a long context
 * costs nothing until it is used (clearing 5.5 GB for --ctx 1048576 took 27 s before the first
 * token). Nothing unwritten is read: attention at position p reads KV rows 0..p, which eval
 * writes in order; the scores row is written before it is read; RoPE rows are filled as
 * positions come into use. An unwritten page would read as zero, as calloc'd memory did.
 * MAP_NORESERVE: the size was checked against free memory instead. */
static void *lazy_map(size_t bytes, int *failed) {
    if (bytes == 0) bytes = 1;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
        *failed = 1;
        return NULL;
    }
    return p;
}

static void cpu_destroy(void *bp) {
    CpuBackend *b = bp;
    if (!b) return;
    cpu_pool_destroy(b->pool);
    cpu_weights_free(b->weights);
    lm_screen_free(b->screen);
    void *bufs[] = {b->x, b->xn, b->q8, b->qs, b->qsum, b->q, b->k, b->v, b->att, b->g,
                    b->u, b->logits, b->valid, b->slogits, b->pen_mask, b->pen_ids, b->xlast};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    void *maps[] = {b->kcache, b->vcache, b->scores, b->rope};
    const size_t sizes[] = {b->kv_bytes, b->kv_bytes, b->scores_bytes, b->rope_bytes};
    for (size_t i = 0; i < 4; i++)
        if (maps[i]) munmap(maps[i], sizes[i] ? sizes[i] : 1);
    free(b);
}

/* The first number of path (key NULL) or of its line starting with key, into *out; 1 if found. */
static int read_u64_file(const char *path, const char *key, uint64_t *out) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    int found = 0;
    const size_t kl = key ? strlen(key) : 0;
    while (!found && fgets(line, sizeof line, f)) {
        if (key && strncmp(line, key, kl)) continue;
        char *end;
        const unsigned long long v = strtoull(line + kl, &end, 10);
        if (end != line + kl) *out = v, found = 1;
        if (!key) break;
    }
    fclose(f);
    return found;
}

/* MemAvailable, lowered to what is left under a cgroup v2 memory limit (containers) and under
 * an address-space limit (ulimit -v); 0 when none of them can be read. */
uint64_t backend_cpu_mem_available(void) {
    uint64_t avail = 0, v, cur;
    if (read_u64_file("/proc/meminfo", "MemAvailable:", &v)) avail = v * 1024;
    /* memory.max holds "max" when there is no limit: strtoull then reads nothing */
    if (read_u64_file("/sys/fs/cgroup/memory.max", NULL, &v) &&
        read_u64_file("/sys/fs/cgroup/memory.current", NULL, &cur)) {
        const uint64_t left = v > cur ? v - cur : 0;
        if (!avail || left < avail) avail = left;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        read_u64_file("/proc/self/statm", NULL, &v)) {
        const uint64_t used = v * (uint64_t)sysconf(_SC_PAGESIZE);
        const uint64_t left = (uint64_t)rl.rlim_cur > used ? (uint64_t)rl.rlim_cur - used : 0;
        if (!avail || left < avail) avail = left;
    }
    return avail;
}

static int dense_type(FloatType t, CpuDenseType *out) {
    switch (t) {
    case FT_F32: *out = CPU_DENSE_F32; return 0;
    case FT_F16: *out = CPU_DENSE_F16; return 0;
    case FT_BF16: *out = CPU_DENSE_BF16; return 0;
    }
    return -1;
}

static int check_ternary(const TernaryMatrix *t, int n_out, int n_in, const char *name, int l,
                         Err *err) {
    if (!t->codes || t->n_out != n_out || t->n_in != n_in || t->n_in_pad != i2s_round_up_k(n_in))
        return err_set(err, "cpu backend: layer %d %s has shape %dx%d (pad %d), expected %dx%d",
                       l, name, t->n_out, t->n_in, t->n_in_pad, n_out, n_in);
    if (!isfinite(t->scale))
        return err_set(err, "cpu backend: layer %d %s has a non-finite scale", l, name);
    return 0;
}

/* The ternary matrices of a layer in a fixed order (indexes of CpuBackend.valid). */
enum { MAT_Q, MAT_K, MAT_V, MAT_O, MAT_GATE, MAT_UP, MAT_DOWN, MAT_COUNT };
static void layer_mats(const LayerWeights *L, const TernaryMatrix *ts[MAT_COUNT]) {
    ts[MAT_Q] = &L->wq, ts[MAT_K] = &L->wk, ts[MAT_V] = &L->wv, ts[MAT_O] = &L->wo;
    ts[MAT_GATE] = &L->w_gate, ts[MAT_UP] = &L->w_up, ts[MAT_DOWN] = &L->w_down;
}

void *backend_cpu_create_ex(const Model *m, const InferOptions *o, const CpuBackendOptions *co,
                            Err *err) {
    const ModelConfig *c = &m->cfg;
    if (c->n_layers <= 0 || c->dim <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->head_dim <= 0 || c->head_dim % 2 || c->n_heads % c->n_kv_heads || c->ffn_dim <= 0 ||
        c->vocab_size <= 0 || (c->ffn_act != FFN_RELU2 && c->ffn_act != FFN_SILU) || !m->layers) {
        err_set(err, "cpu backend: invalid model config");
        return NULL;
    }
    const int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m->layers[l];
        if (!L->attn_norm || !L->ffn_norm || !L->attn_sub_norm != !c->sub_norms ||
            !L->ffn_sub_norm != !c->sub_norms) {
            err_set(err, "cpu backend: layer %d's norm weights do not match the config (%s)", l,
                    c->sub_norms ? "attn/ffn norms and both sub-norms" : "attn/ffn norms only");
            return NULL;
        }
        if (check_ternary(&L->wq, q_dim, c->dim, "q_proj", l, err) ||
            check_ternary(&L->wk, kv_dim, c->dim, "k_proj", l, err) ||
            check_ternary(&L->wv, kv_dim, c->dim, "v_proj", l, err) ||
            check_ternary(&L->wo, c->dim, q_dim, "o_proj", l, err) ||
            check_ternary(&L->w_gate, c->ffn_dim, c->dim, "gate_proj", l, err) ||
            check_ternary(&L->w_up, c->ffn_dim, c->dim, "up_proj", l, err) ||
            check_ternary(&L->w_down, c->dim, c->ffn_dim, "down_proj", l, err))
            return NULL;
    }
    CpuDenseType et, ot;
    if (!m->tok_embd.data || !m->output.data || !m->output_norm ||
        dense_type(m->tok_embd.type, &et) || dense_type(m->output.type, &ot) ||
        m->tok_embd.rows != c->vocab_size || m->tok_embd.cols != c->dim ||
        m->output.rows != c->vocab_size || m->output.cols != c->dim) {
        err_set(err, "cpu backend: embedding / lm_head missing or not [%d][%d] f32/f16/bf16",
                c->vocab_size, c->dim);
        return NULL;
    }

    CpuBackend *b = calloc(1, sizeof *b);
    if (!b) {
        err_set(err, "cpu backend: out of memory");
        return NULL;
    }
    b->c = *c;
    b->q_dim = q_dim;
    b->kv_dim = kv_dim;
    b->emb_type = et;
    b->out_type = ot;
    /* Positions past the trained context have no meaning to the model (infer_create caps the
     * request with a note; this covers direct callers). */
    b->ctx = o && o->ctx > 0 ? o->ctx : c->ctx_len;
    if (c->ctx_len > 0 && b->ctx > c->ctx_len) b->ctx = c->ctx_len;
    if (b->ctx <= 0) b->ctx = 4096;
    b->B = co && co->max_batch > 0 ? co->max_batch : 64;
    b->kv_f16 = (co && co->kv_f32) || (o && o->kv_f32) ? 0 : 1;
    /* The command line caps --threads at the CPU count (more only queue behind each other:
     * --threads 1000 made the first token take 15 s); tests run more threads than CPUs on
     * purpose, to cover uneven work splits, so the backend itself only bounds the pool. */
    b->n_threads = o && o->threads > 0 ? o->threads : cpu_num_cores();
    if (b->n_threads > 256) b->n_threads = 256;

    b->xn_ld = c->dim > q_dim ? c->dim : q_dim;
    if (c->ffn_dim > b->xn_ld) b->xn_ld = c->ffn_dim;
    b->k8_ld = i2s_round_up_k(b->xn_ld);
    const size_t B = (size_t)b->B, hd2 = (size_t)c->head_dim / 2;
    const size_t kv_elems = (size_t)c->n_layers * (size_t)b->ctx * (size_t)kv_dim;
    const size_t kv_size = b->kv_f16 ? 2 : 4;
    b->kv_bytes = kv_elems * kv_size;
    b->scores_bytes = (size_t)b->n_threads * (size_t)b->ctx * (size_t)(c->n_heads / c->n_kv_heads) *
                      sizeof(float);
    b->rope_bytes = (size_t)b->ctx * hd2 * 2 * sizeof(float);
    /* A context whose cache (with the RoPE table and attention scratch, which also grow with it)
     * would not fit in free memory is refused here, not discovered by swapping once it fills. */
    const double need = 2.0 * (double)b->kv_bytes + (double)b->scores_bytes + (double)b->rope_bytes;
    const uint64_t avail = backend_cpu_mem_available();
    if (avail && need > (double)avail) {
        err_set(err, "a %d-token context needs %.1f GiB of memory (KV cache) but only %.1f GiB "
                "is free; use a smaller --ctx", b->ctx, need / 1073741824.0,
                (double)avail / 1073741824.0);
        cpu_destroy(b);
        return NULL;
    }
    /* The weights: by default copied onto huge pages when they come from a file mapping
     * (cpu_weights.h; measured in README "CPU speed"), or read in place when memory is short or
     * on request (--mmap). */
    CpuWeightsInfo wi;
    const CpuLmHead lm = o && o->lm_head_int8 ? CPU_LM_INT8
                         : o && o->lm_head_full ? CPU_LM_F16 : CPU_LM_SCREEN;
    b->weights = cpu_weights_create(m, (co && co->weights_map) || (o && o->weights_map)
                                        ? CPU_WEIGHTS_MAP : CPU_WEIGHTS_AUTO,
                                    lm, b->n_threads, &wi, err);
    if (!b->weights) {
        cpu_destroy(b);
        return NULL;
    }
    b->m = wi.view;
    b->r16 = wi.r16;
    b->lm_q = wi.lm_q;
    b->lm_scale = wi.lm_scale;
    b->lm_bound = wi.lm_bound;
    b->stats.prep_s = wi.lm_prep_s;
    int failed = 0;
    b->x = xcalloc(B * c->dim, sizeof(float), &failed);
    b->xn = xcalloc(B * b->xn_ld, sizeof(float), &failed);
    b->q8 = xcalloc(B * b->k8_ld, 1, &failed);
    b->qs = xcalloc(B, sizeof(float), &failed);
    b->qsum = xcalloc(B, sizeof(int32_t), &failed);
    b->q = xcalloc(B * q_dim, sizeof(float), &failed);
    b->k = xcalloc(B * kv_dim, sizeof(float), &failed);
    b->v = xcalloc(B * kv_dim, sizeof(float), &failed);
    b->att = xcalloc(B * q_dim, sizeof(float), &failed);
    b->g = xcalloc(B * c->ffn_dim, sizeof(float), &failed);
    b->u = xcalloc(B * c->ffn_dim, sizeof(float), &failed);
    b->scores = lazy_map(b->scores_bytes, &failed);
    b->rope = lazy_map(b->rope_bytes, &failed);
    b->logits = xcalloc((size_t)c->vocab_size, sizeof(float), &failed);
    b->kcache = lazy_map(b->kv_bytes, &failed);
    b->vcache = lazy_map(b->kv_bytes, &failed);
    b->valid = xcalloc((size_t)c->n_layers * MAT_COUNT, 1, &failed);
    b->xlast = xcalloc((size_t)c->dim, sizeof(float), &failed);
    if (b->lm_bound) {
        /* 1/16 of the rows: the exact rows may then add 1/16 of the whole head's bytes to the
         * int8 pass's half; typical tokens need far fewer (35 rows greedy, 315 with top-k 40 on
         * the 2B shapes), and a top-k above half the cap falls back without trying */
        b->screen_cap = c->vocab_size / 16 > 1 ? c->vocab_size / 16 : 1;
        b->slogits = xcalloc((size_t)c->vocab_size, sizeof(float), &failed);
        b->pen_mask = xcalloc((size_t)c->vocab_size, 1, &failed);
        b->pen_ids = xcalloc((size_t)c->vocab_size, sizeof(int32_t), &failed);
        if (!failed && !(b->screen = lm_screen_create(c->vocab_size, b->n_threads, b->screen_cap)))
            failed = 1;
    }
    if (failed) {
        err_set(err, "cpu backend: out of memory for a %d-token context (KV cache %.0f MiB)",
                b->ctx, 2.0 * (double)kv_elems * (double)kv_size / 1048576.0);
        cpu_destroy(b);
        return NULL;
    }
    /* One pass over the codes (~25 ms for the 2B model) buys the faster decode GEMV for every
     * matrix without the unused code 3, i.e. all of them unless the file is damaged. */
    for (int l = 0; l < c->n_layers; l++) {
        const TernaryMatrix *ts[MAT_COUNT];
        layer_mats(&b->m->layers[l], ts);
        for (int i = 0; i < MAT_COUNT; i++)
            b->valid[l * MAT_COUNT + i] = b->r16[l * MAT_COUNT + i] ? 0 : i2s_codes_valid(ts[i]->codes, (size_t)ts[i]->n_out * i2s_row_bytes(ts[i]->n_in_pad))
                                      ? W2A8_CODES_VALID : 0;
    }
    b->pool = cpu_pool_create(b->n_threads);
    if (!b->pool) {
        err_set(err, "cpu backend: cannot start %d threads", b->n_threads);
        cpu_destroy(b);
        return NULL;
    }
    snprintf(b->desc, sizeof b->desc, "CPU, %d thread%s, %s, KV %s%s%s%s", b->n_threads,
             b->n_threads == 1 ? "" : "s", cpu_isa_name(cpu_isa_active()),
             b->kv_f16 ? "f16" : "f32", wi.copied_bytes && wi.huge ? ", weights on huge pages" : "",
             wi.r16_bytes ? ", R16 layout" : "",
             b->lm_bound ? (ot == CPU_DENSE_F16 ? ", screened f16 lm_head" : ot == CPU_DENSE_BF16
                            ? ", screened bf16 lm_head" : ", screened f32 lm_head")
                         : b->lm_q ? ", int8 lm_head" : "");
    return b;
}

static void *cpu_create(const Model *m, const InferOptions *o, Err *err) {
    return backend_cpu_create_ex(m, o, NULL, err);
}

/* ---- parallel steps ------------------------------------------------------------------------ */

/* Runs fn over the pool, or inline on the caller for work too small to share. */
static void run(CpuBackend *b, CpuTaskFn fn, void *ctx, int parallel) {
    if (parallel) cpu_pool_run(b->pool, fn, ctx);
    else fn(ctx, 0, 1);
}

typedef struct {
    CpuBackend *b;
    const float *in;    /* [T][ld_in] */
    int ld_in, n;
    const float *w;     /* norm weight [n]; NULL: quantize `in` as it is (no sub-norm) */
    int k_pad, T;
    int next;           /* token counter (cpu_chunk_claim) */
} NormQuantJob;

/* xn = RMSNorm(in) * w, then q8 = int8(xn) per token (q8 = int8(in) when w is NULL). */
static void norm_quant_task(void *ctx, int ith, int nth) {
    NormQuantJob *j = ctx;
    CpuBackend *b = j->b;
    (void)ith, (void)nth;
    for (int t; (t = cpu_chunk_claim(&j->next)) < j->T;) {
        const float *in = j->in + (size_t)t * j->ld_in;
        if (j->w) {
            float *xn = b->xn + (size_t)t * b->xn_ld;
            rmsnorm_cpu(in, j->w, j->n, b->c.norm_eps, xn);
            in = xn;
        }
        b->qs[t] = quant_act_cpu(in, j->n, j->k_pad, b->q8 + (size_t)t * j->k_pad, &b->qsum[t]);
    }
}

static void norm_quant(CpuBackend *b, const float *in, int ld_in, int n, const float *w,
                       int k_pad, int T) {
    NormQuantJob j = {b, in, ld_in, n, w, k_pad, T, 0};
    run(b, norm_quant_task, &j, T > 1);
}

/* One matrix of a linear step and where its output goes: token t's row at out + t * ld. */
typedef struct {
    const TernaryMatrix *w;
    float *out;
    int ld;
} LinearPart;

/* Several ternary matrices sharing one int8 input, as one row space split across threads. */
typedef struct {
    LinearPart part[3];
    const uint8_t *r16[3]; /* the R16 copy of part[i].w, or NULL */
    int flags[3];
    int n_mat, accumulate, T;
    const int8_t *q8;
    const int32_t *qsum;
    const float *qs;
    int rc, next;
} MultiLinearJob;

/* Rows per claimed chunk (a multiple of R16_ROWS, and so of the I2_S kernels' 4). 256 for
 * decode measured the same as 64 (1 thread, thread CPU time, 2 x 5 paired rounds). */
enum { LINEAR_CHUNK = 64 };

/* Chunks of each matrix in turn; a chunk never spans two matrices. */
static void multi_linear_task(void *ctx, int ith, int nth) {
    MultiLinearJob *j = ctx;
    (void)ith, (void)nth;
    int n_chunks[3], total = 0;
    for (int i = 0; i < j->n_mat; i++) {
        n_chunks[i] = (j->part[i].w->n_out + LINEAR_CHUNK - 1) / LINEAR_CHUNK;
        total += n_chunks[i];
    }
    for (int c; (c = cpu_chunk_claim(&j->next)) < total;) {
        int i = 0;
        while (c >= n_chunks[i]) c -= n_chunks[i++];
        const TernaryMatrix *w = j->part[i].w;
        const int a = c * LINEAR_CHUNK, e = a + LINEAR_CHUNK < w->n_out ? a + LINEAR_CHUNK : w->n_out;
        const int rc = j->r16[i]
            ? w2a8_linear_r16_rows(j->r16[i], w->n_out, w->n_in_pad, w->scale, j->q8, j->qsum, j->qs, j->T, a,
                                   e, j->part[i].out, j->part[i].ld, j->accumulate)
            : w2a8_linear_rows_ex(w->codes, w->n_in_pad, w->scale, j->q8, j->qsum, j->qs, j->T, a,
                                  e, j->part[i].out, j->part[i].ld, j->accumulate, j->flags[i]);
        if (rc != 0) j->rc = -1;
    }
}

/* The n_mat (1..3) matrices of layer l that start at index mat (MAT_*, in the order of parts),
 * over the one int8 input of the T tokens; accumulate adds into the outputs (the residual
 * stream) instead of writing them. */
static int linear(CpuBackend *b, int l, int mat, const LinearPart *parts, int n_mat, int accumulate,
                  int T, Err *err) {
    const uint8_t *v = b->valid + l * MAT_COUNT + mat;
    MultiLinearJob j = {.n_mat = n_mat, .accumulate = accumulate, .T = T, .q8 = b->q8,
                        .qsum = b->qsum, .qs = b->qs};
    for (int i = 0; i < n_mat; i++) {
        j.part[i] = parts[i];
        j.r16[i] = b->r16[l * MAT_COUNT + mat + i];
        j.flags[i] = v[i];
    }
    cpu_pool_run(b->pool, multi_linear_task, &j);
    if (j.rc) return err_set(err, "cpu backend: ternary linear rejected its shape");
    return 0;
}

typedef struct {
    CpuBackend *b;
    int layer, pos, T;
    int next; /* chunk counter */
} AttnJob;

static size_t kv_offset(const CpuBackend *b, int layer, int p) {
    return ((size_t)layer * b->ctx + (size_t)p) * (size_t)b->kv_dim;
}

/* RoPE on q and k of each token, then k and v into the cache. */
static void rope_store_task(void *ctx, int ith, int nth) {
    AttnJob *j = ctx;
    CpuBackend *b = j->b;
    const int hd = b->c.head_dim, style = b->c.rope_style == ROPE_ADJACENT ? 1 : 0;
    (void)ith, (void)nth;
    for (int t; (t = cpu_chunk_claim(&j->next)) < j->T;) {
        const int p = j->pos + t;
        const float *cs = b->rope + (size_t)p * hd; /* hd/2 pairs of (cos, sin) */
        float *q = b->q + (size_t)t * b->q_dim, *k = b->k + (size_t)t * b->kv_dim;
        const float *v = b->v + (size_t)t * b->kv_dim;
        rope_apply_ref(q, b->c.n_heads, hd, cs, style);
        rope_apply_ref(k, b->c.n_kv_heads, hd, cs, style);
        const size_t off = kv_offset(b, j->layer, p);
        if (b->kv_f16) {
            f32_to_f16_row(k, (uint16_t *)b->kcache + off, b->kv_dim);
            f32_to_f16_row(v, (uint16_t *)b->vcache + off, b->kv_dim);
        } else {
            memcpy((float *)b->kcache + off, k, (size_t)b->kv_dim * sizeof(float));
            memcpy((float *)b->vcache + off, v, (size_t)b->kv_dim * sizeof(float));
        }
    }
}

/* Items are (token, block of hb query heads of one KV group): the heads of a block read their
 * K and V rows once (attention_group_cpu). hb is the whole group unless that leaves too few
 * items to keep every thread busy (decode: 5 KV heads on 2 threads -> blocks of 2 heads). */
static void attention_task(void *ctx, int ith, int nth) {
    AttnJob *j = ctx;
    CpuBackend *b = j->b;
    const int hd = b->c.head_dim, nh = b->c.n_heads, group = nh / b->c.n_kv_heads;
    const size_t esz = b->kv_f16 ? 2 : 4;
    int hb = group;
    while (hb % 2 == 0 && j->T * (nh / hb) < 4 * nth) hb /= 2;
    const int per_t = nh / hb;
    float *scratch = b->scores + (size_t)ith * b->ctx * group;
    for (int i; (i = cpu_chunk_claim(&j->next)) < j->T * per_t;) {
        const int t = i / per_t, h = (i % per_t) * hb, kvh = h / group;
        const size_t off = (kv_offset(b, j->layer, 0) + (size_t)kvh * hd) * esz;
        attention_group_cpu(b->q + (size_t)t * b->q_dim + (size_t)h * hd, hb,
                            (const char *)b->kcache + off, (const char *)b->vcache + off,
                            b->kv_f16, (size_t)b->kv_dim, j->pos + t + 1, hd, scratch,
                            b->att + (size_t)t * b->q_dim + (size_t)h * hd);
    }
}

typedef struct {
    CpuBackend *b;
    int T;
    const float *w;
    int k_pad;
    int next; /* token counter */
} FfnMidJob;

/* m = act(g) * u, then RMSNorm (ffn_sub_norm, when the block has it) and int8, per token. */
static void ffn_mid_task(void *ctx, int ith, int nth) {
    FfnMidJob *j = ctx;
    CpuBackend *b = j->b;
    const int f = b->c.ffn_dim;
    (void)ith, (void)nth;
    for (int t; (t = cpu_chunk_claim(&j->next)) < j->T;) {
        float *g = b->g + (size_t)t * f, *xn = b->xn + (size_t)t * b->xn_ld;
        if (b->c.ffn_act == FFN_SILU) silu_mul_ref(g, b->u + (size_t)t * f, f, g);
        else relu2_mul_cpu(g, b->u + (size_t)t * f, f, g);
        if (j->w) rmsnorm_cpu(g, j->w, f, b->c.norm_eps, xn);
        b->qs[t] = quant_act_cpu(j->w ? xn : g, f, j->k_pad, b->q8 + (size_t)t * j->k_pad, &b->qsum[t]);
    }
}

/* ---- eval ------------------------------------------------------------------------------------- */

static int eval_batch(CpuBackend *b, const int32_t *tokens, int T, int pos, float *all_logits,
                      int want_last, Err *err) {
    const ModelConfig *c = &b->c;
    const Model *m = b->m;
    for (int t = 0; t < T; t++)
        dense_row_to_f32(b->emb_type, m->tok_embd.data, c->dim, tokens[t], b->x + (size_t)t * c->dim);

    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m->layers[l];
        /* attention */
        norm_quant(b, b->x, c->dim, c->dim, L->attn_norm, L->wq.n_in_pad, T);
        const LinearPart qkv[3] = {{&L->wq, b->q, b->q_dim}, {&L->wk, b->k, b->kv_dim},
                                   {&L->wv, b->v, b->kv_dim}};
        if (linear(b, l, MAT_Q, qkv, 3, 0, T, err)) return -1;
        AttnJob aj = {b, l, pos, T, 0};
        run(b, rope_store_task, &aj, T > 1);
        aj.next = 0;
        cpu_pool_run(b->pool, attention_task, &aj);
        norm_quant(b, b->att, b->q_dim, b->q_dim, L->attn_sub_norm, L->wo.n_in_pad, T);
        const LinearPart o = {&L->wo, b->x, c->dim};
        if (linear(b, l, MAT_O, &o, 1, 1, T, err)) return -1;
        /* feed-forward */
        norm_quant(b, b->x, c->dim, c->dim, L->ffn_norm, L->w_gate.n_in_pad, T);
        const LinearPart gate_up[2] = {{&L->w_gate, b->g, c->ffn_dim},
                                       {&L->w_up, b->u, c->ffn_dim}};
        if (linear(b, l, MAT_GATE, gate_up, 2, 0, T, err)) return -1;
        FfnMidJob fj = {b, T, L->ffn_sub_norm, L->w_down.n_in_pad, 0};
        run(b, ffn_mid_task, &fj, T > 1);
        const LinearPart down = {&L->w_down, b->x, c->dim};
        if (linear(b, l, MAT_DOWN, &down, 1, 1, T, err)) return -1;
    }

    /* final norm + lm_head: every token for all_logits, else only the last one */
    const int first = all_logits ? 0 : T - 1;
    if (!all_logits && !want_last) return 0;
    if (!all_logits && !(b->lm_q && !b->lm_bound)) {
        /* the f16 head waits for logits() or sample() */
        rmsnorm_cpu(b->x + (size_t)(T - 1) * c->dim, m->output_norm, c->dim, c->norm_eps, b->xlast);
        b->head = HEAD_PENDING;
        return 0;
    }
    b->head = HEAD_FULL;
    for (int t = first; t < T; t++)
        rmsnorm_cpu(b->x + (size_t)t * c->dim, m->output_norm, c->dim, c->norm_eps,
                    b->xn + (size_t)(t - first) * c->dim); /* packed at dim apart */
    memcpy(b->xlast, b->xn + (size_t)(T - 1 - first) * c->dim, (size_t)c->dim * sizeof(float));
    if (b->lm_q && !b->lm_bound) {
        float *y = all_logits ? all_logits : b->logits;
        lm_head_i8_gemm_mt(b->pool, b->lm_q, b->lm_scale, c->vocab_size, c->dim, b->xn,
                           T - first, y, c->vocab_size);
        if (all_logits)
            memcpy(b->logits, all_logits + (size_t)(T - 1) * c->vocab_size,
                   (size_t)c->vocab_size * sizeof(float));
    } else if (all_logits) {
        dense_gemm_mt(b->pool, b->out_type, m->output.data, c->vocab_size, c->dim, b->xn, T,
                      all_logits, c->vocab_size);
        memcpy(b->logits, all_logits + (size_t)(T - 1) * c->vocab_size,
               (size_t)c->vocab_size * sizeof(float));
    }
    return 0;
}

static int cpu_eval(void *bp, const int32_t *tokens, int n, int pos, float *all_logits,
                    Err *err) {
    CpuBackend *b = bp;
    if (n <= 0) return err_set(err, "cpu backend: eval of %d tokens", n);
    if (pos < 0 || pos > b->ctx || n > b->ctx - pos)
        return err_set(err, "cpu backend: positions %d..%d exceed the %d-token context", pos,
                       pos + n - 1, b->ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= b->c.vocab_size)
            return err_set(err, "cpu backend: token id %d out of range (vocab %d)", tokens[i],
                           b->c.vocab_size);
    if (pos + n > b->rope_rows) { /* RoPE rows for the positions coming into use */
        rope_table_fill(b->rope, b->rope_rows, pos + n, b->c.head_dim, b->c.rope_theta);
        b->rope_rows = pos + n;
    }
    b->head = HEAD_NONE; /* from here on the old logits are not the last token's */
    for (int i0 = 0; i0 < n; i0 += b->B) {
        const int T = n - i0 < b->B ? n - i0 : b->B;
        float *al = all_logits ? all_logits + (size_t)i0 * b->c.vocab_size : NULL;
        if (eval_batch(b, tokens + i0, T, pos + i0, al, i0 + T == n, err)) return -1;
    }
    return 0;
}

/* The whole head for the pending token (the decode GEMV: dense_dot_row's values). */
static void full_head(CpuBackend *b) {
    if (b->head != HEAD_PENDING) return;
    dense_gemm_mt(b->pool, b->out_type, b->m->output.data, b->c.vocab_size, b->c.dim, b->xlast, 1,
                  b->logits, b->c.vocab_size);
    b->head = HEAD_FULL;
    b->stats.full++;
}

static const float *cpu_logits(void *bp) {
    CpuBackend *b = bp;
    full_head(b);
    return b->logits;
}

static int argmax_f(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* How many of the best logits the sampler looks at: 1 for greedy, top_k for top-k sampling,
 * 0 where it looks at them all (top_k off: top-p / min-p / the draw see the whole vocabulary). */
static int sampler_k(const Sampler *s, int vocab) {
    const SamplerParams *p = s ? sampler_params(s) : NULL;
    if (!p || !(p->temperature > 0.0f)) return 1;
    return p->top_k > 0 && p->top_k < vocab ? p->top_k : 0;
}

/* The screened head into slogits; 1 if it holds every logit the sampler can pick from. */
static int screen(CpuBackend *b, Sampler *s) {
    const int V = b->c.vocab_size, k = sampler_k(s, V);
    if (!b->screen || b->force_full || k <= 0 || k > b->screen_cap / 2) {
        b->stats.fallback_setting++;
        return 0;
    }
    LmScreenQuery qy = {.k = k, .penalty = 1.0f, .mask = NULL, .cap = b->screen_cap};
    const int np = s ? sampler_penalty_ids(s, b->pen_ids, V) : 0;
    if (np < 0) { /* cannot happen: the buffer holds the whole vocabulary */
        b->stats.fallback_setting++;
        return 0;
    }
    if (np > 0) {
        qy.penalty = sampler_params(s)->repeat_penalty;
        qy.mask = b->pen_mask;
        for (int i = 0; i < np; i++) b->pen_mask[b->pen_ids[i]] = 1;
    }
    const int rc = lm_screen_mt(b->pool, b->screen, b->out_type, b->m->output.data, b->lm_q,
                                b->lm_scale, b->lm_bound, V, b->c.dim, b->xlast, &qy, b->slogits);
    for (int i = 0; i < np; i++) b->pen_mask[b->pen_ids[i]] = 0;
    if (rc == LM_SCREEN_NONFINITE) b->stats.fallback_nonfinite++;
    else if (rc == LM_SCREEN_OVER_CAP) b->stats.fallback_cap++;
    else if (rc < k) b->stats.fallback_setting++; /* KERR_SHAPE: cannot happen */
    if (rc < k) return 0;
    b->stats.screened++;
    b->stats.cand_sum += rc;
    if (rc > b->stats.cand_max) b->stats.cand_max = rc;
    return 1;
}

/* Greedy without a sampler, or the screened head with one: the pick, returns 1. Otherwise
 * (a setting the screen cannot serve, or no screen) the whole head is computed and 0 returned,
 * so that infer_sample runs the host sampler on logits(). */
static int cpu_sample(void *bp, Sampler *s, int32_t *tok, Err *err) {
    CpuBackend *b = bp;
    const int V = b->c.vocab_size;
    if (b->head == HEAD_PENDING && screen(b, s)) {
        const int32_t t = s ? sampler_sample(s, b->slogits, V) : argmax_f(b->slogits, V);
        if (t < 0 || t >= V) return err_set(err, "cpu backend: sampler returned %d", t);
        *tok = t;
        return 1;
    }
    full_head(b);
    if (s) return 0;
    *tok = argmax_f(b->logits, V);
    return 1;
}

void backend_cpu_set_full_head(void *bp, int full) { ((CpuBackend *)bp)->force_full = full; }

int backend_cpu_screen_stats(void *bp, CpuScreenStats *st) {
    const CpuBackend *b = bp;
    *st = b->stats;
    return b->screen != NULL;
}

const float *backend_cpu_lm_input(void *bp) {
    const CpuBackend *b = bp;
    return b->head == HEAD_NONE ? NULL : b->xlast;
}

static void cpu_describe(void *bp, char *buf, int cap) {
    snprintf(buf, (size_t)cap, "%s", ((CpuBackend *)bp)->desc);
}

const BackendOps backend_cpu_ops = {
    .kind = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .eval = cpu_eval,
    .logits = cpu_logits,
    .sample = cpu_sample,
    .describe = cpu_describe,
};
