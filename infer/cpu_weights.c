/* The CPU backend's weight store (cpu_weights.h). */
#include "infer/cpu_weights.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "infer/backend_cpu.h"
#include "infer/model_storage.h"
#include "kernels/cpu/kernels_cpu.h"

struct CpuWeights {
    Model view;           /* shallow copy of the model; layers and output redirected */
    LayerWeights *layers; /* the view's layer table (owned) */
    const uint8_t **r16;  /* [n_layers * 7] R16 copies in the store, or NULL entries */
    void *store;          /* one anonymous mapping holding every copied tensor */
    size_t store_len;
};

enum { HUGE = 2 << 20, ALIGN = 64 };

static size_t up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static size_t ternary_bytes(const TernaryMatrix *t) {
    return (size_t)t->n_out * i2s_row_bytes(t->n_in_pad);
}

static size_t dense_bytes(const DenseMatrix *d) {
    const size_t es = d->type == FT_F32 ? 4 : 2;
    return (size_t)d->rows * (size_t)d->cols * es;
}

static void layer_ternaries(LayerWeights *L, TernaryMatrix *ts[7]) {
    ts[0] = &L->wq, ts[1] = &L->wk, ts[2] = &L->wv, ts[3] = &L->wo;
    ts[4] = &L->w_gate, ts[5] = &L->w_up, ts[6] = &L->w_down;
}

/* The file pages of [p, p + n) that this process mapped while copying are dropped from its
 * page tables (the page cache keeps them; a later read faults them back in), so the copy does
 * not count twice in the resident size. Only whole pages inside the range are touched. */
static void drop_mapped_pages(const void *p, size_t n) {
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + pg - 1) / pg * pg, e = ((uintptr_t)p + n) / pg * pg;
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

typedef struct {
    const Model *m;
    CpuDenseType type;
    int8_t *q;
    float *scale;
    float *bound; /* the screen's B_r, or NULL */
    int mapped;   /* the table lives in the file mapping: its pages are dropped once read */
    int next;
} QuantJob;

/* 64 rows: the bound re-reads the rows just quantized while they are in L2 (320 KB of f16 at
 * 2560 columns) */
enum { QUANT_CHUNK = 64 };

static void quant_task(void *ctx, int ith, int nth) {
    QuantJob *j = ctx;
    const DenseMatrix *o = &j->m->output;
    const size_t es = o->type == FT_F32 ? 4 : 2;
    (void)ith, (void)nth;
    for (int c; (c = cpu_chunk_claim(&j->next)) * QUANT_CHUNK < o->rows;) {
        const int r0 = c * QUANT_CHUNK, n = o->rows - r0 < QUANT_CHUNK ? o->rows - r0 : QUANT_CHUNK;
        const void *w = (const char *)o->data + (size_t)r0 * o->cols * es;
        int8_t *q = j->q + (size_t)r0 * o->cols;
        lm_head_quant_i8_cpu(j->type, w, n, o->cols, q, j->scale + r0);
        if (j->bound) lm_head_screen_bound_cpu(j->type, w, q, j->scale + r0, n, o->cols, j->bound + r0);
        /* as in copy_task: the process never holds the table's file pages and the int8 copy at
         * once (a -p run peaked at 1485 MiB RSS when they were dropped only at the end) */
        if (j->mapped) drop_mapped_pages(w, (size_t)n * o->cols * es);
    }
}

/* The copy itself, shared by the pool's threads in pieces of about 4 MiB: a cold file is read
 * from disk here instead of during the first prompt, and two threads fault in and fill the huge
 * pages faster than one. An item is either a plain copy of n bytes or, with n_out > 0, the R16
 * repack of an I2_S matrix (pieces of whole 16-row groups). */
typedef struct {
    const void *src;
    void *dst;
    size_t n;        /* bytes of src */
    int n_out, k_pad;/* R16 repack when n_out > 0 */
    int mapped;      /* src lives in the file mapping: its pages are dropped once read */
} CopyItem;

typedef struct {
    const CopyItem *items;
    int n_items;
    int next;
} CopyJob;

enum { COPY_PIECE = 4 << 20 };

/* pieces of an item, and the size of one in units (bytes, or groups for a repack) */
static size_t piece_units(const CopyItem *it) {
    if (it->n_out <= 0) return COPY_PIECE;
    const size_t gb = (size_t)R16_ROWS * i2s_row_bytes(it->k_pad);
    return COPY_PIECE / gb ? COPY_PIECE / gb : 1;
}
static size_t item_units(const CopyItem *it) {
    return it->n_out > 0 ? (size_t)(it->n_out + R16_ROWS - 1) / R16_ROWS : it->n;
}

static void copy_task(void *ctx, int ith, int nth) {
    CopyJob *j = ctx;
    (void)ith, (void)nth;
    for (int c; (c = cpu_chunk_claim(&j->next)) >= 0;) {
        int i = 0;
        size_t pc = (size_t)c;
        for (; i < j->n_items; i++) {
            const size_t np = (item_units(&j->items[i]) + piece_units(&j->items[i]) - 1) / piece_units(&j->items[i]);
            if (pc < np) break;
            pc -= np;
        }
        if (i >= j->n_items) return;
        const CopyItem *it = &j->items[i];
        const size_t u0 = pc * piece_units(it), nu = item_units(it) - u0 < piece_units(it) ? item_units(it) - u0 : piece_units(it);
        const char *src;
        size_t n;
        if (it->n_out > 0) {
            const size_t gb = (size_t)R16_ROWS * i2s_row_bytes(it->k_pad);
            w2a8_r16_pack(it->src, it->n_out, it->k_pad, (int)u0, (int)(u0 + nu), it->dst);
            /* the source rows of these groups (the last group may be short) */
            src = (const char *)it->src + u0 * gb;
            n = (u0 + nu) * gb < it->n ? nu * gb : it->n - u0 * gb;
        } else {
            memcpy((char *)it->dst + u0, (const char *)it->src + u0, nu);
            src = (const char *)it->src + u0, n = nu;
        }
        /* released piece by piece, so the process never holds the file pages and the copy at
         * once (peak RSS of a -p run: 2293 MiB when they were released only at the end); never
         * for anonymous memory, which MADV_DONTNEED would clear */
        if (it->mapped) drop_mapped_pages(src, n);
    }
}

static CpuDenseType dense_kind(FloatType t) {
    return t == FT_F32 ? CPU_DENSE_F32 : t == FT_F16 ? CPU_DENSE_F16 : CPU_DENSE_BF16;
}

CpuWeights *cpu_weights_create(const Model *m, CpuWeightsMode mode, CpuLmHead lm, int n_threads,
                               CpuWeightsInfo *info, Err *err) {
    memset(info, 0, sizeof *info);
    CpuWeights *w = calloc(1, sizeof *w);
    const int L = m->cfg.n_layers;
    if (!w || !(w->layers = malloc((size_t)L * sizeof *w->layers))) {
        free(w);
        err_set(err, "cpu backend: out of memory");
        return NULL;
    }
    w->view = *m;
    memcpy(w->layers, m->layers, (size_t)L * sizeof *w->layers);
    w->view.layers = w->layers;
    if (!(w->r16 = calloc((size_t)L * 7, sizeof *w->r16))) {
        cpu_weights_free(w);
        err_set(err, "cpu backend: out of memory");
        return NULL;
    }

    /* What to copy: tensors that live in a file mapping (anonymous buffers already sit on huge
     * pages: model_storage_alloc advises them). Where the CPU has AVX-512 VNNI every ternary
     * matrix is instead repacked into the R16 layout (kernels_cpu.h), whose kernels prefill
     * faster (README "CPU speed"); for an anonymous model that is a second copy of its codes. */
    const int copy = mode != CPU_WEIGHTS_MAP;
    const int r16 = copy && cpu_isa_active() >= CPU_ISA_AVX512;
    size_t need = 0, need_r16 = 0;
    for (int l = 0; l < L && copy; l++) {
        TernaryMatrix *ts[7];
        layer_ternaries(&w->layers[l], ts);
        for (int i = 0; i < 7; i++) {
            if (r16) need_r16 += up(w2a8_r16_bytes(ts[i]->n_out, ts[i]->n_in_pad), ALIGN);
            else if (model_storage_is_mapped(m, ts[i]->codes)) need += up(ternary_bytes(ts[i]), ALIGN);
        }
    }
    const int lm_int8 = lm == CPU_LM_INT8;
    /* the screen is a copy too: none under CPU_WEIGHTS_MAP */
    int screen = lm == CPU_LM_SCREEN && copy;
    const size_t rows_bytes = up((size_t)m->output.rows * sizeof(float), ALIGN);
    size_t lm_q_bytes = lm_int8 || screen ? up((size_t)m->output.rows * m->output.cols, ALIGN) : 0;
    size_t lm_s_bytes = lm_int8 || screen ? rows_bytes : 0;
    /* Copy only when it fits beside what is already resident: a copy that pushes the machine
     * into swap would cost far more than the huge pages gain. The screen (int8 table and
     * bounds, 1/2 of an f16 lm_head) goes first. */
    const uint64_t avail = backend_cpu_mem_available();
    if (screen && avail && (double)(lm_q_bytes + 2 * rows_bytes) * 1.1 > (double)avail)
        screen = 0, lm_q_bytes = lm_s_bytes = 0;
    const size_t lm_b_bytes = screen ? rows_bytes : 0;
    /* With the int8 lm_head, or the screen, the f16 table is read a few rows per token (the
     * embedding lookup when tied, the screen's candidates: 35 rows per greedy token on the 2B
     * model), so it stays in the mapping: 657 MB less memory and copy time. Only settings the
     * screen cannot serve (top-k off, logits()) then read the whole table through 4 KiB pages. */
    const int copy_out = copy && !lm_int8 && !screen && model_storage_is_mapped(m, m->output.data);
    if (copy_out) need += up(dense_bytes(&m->output), ALIGN);
    if ((need || need_r16) && avail &&
        (double)(need + need_r16) * 1.1 + (double)(lm_q_bytes + lm_s_bytes + lm_b_bytes) > (double)avail)
        need = need_r16 = 0;
    const size_t total = need + need_r16 + lm_q_bytes + lm_s_bytes + lm_b_bytes;
    if (total) {
        w->store_len = up(total, HUGE);
        /* 2 MiB alignment so every huge page of the store is fully inside it */
        void *raw = mmap(NULL, w->store_len + HUGE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (raw == MAP_FAILED) {
            cpu_weights_free(w);
            err_set(err, "cpu backend: out of memory for the weight store (%.0f MiB)",
                    (double)total / 1048576.0);
            return NULL;
        }
        char *al = (char *)up((uintptr_t)raw, HUGE);
        if (al > (char *)raw) munmap(raw, (size_t)(al - (char *)raw));
        munmap(al + w->store_len, (size_t)((char *)raw + HUGE - al));
        w->store = al;
#ifdef MADV_HUGEPAGE
        info->huge = madvise(w->store, w->store_len, MADV_HUGEPAGE) == 0;
#endif
        /* Without transparent huge pages a copy buys nothing over the page cache (the R16
         * repack still does). */
        if (!info->huge) need = 0;
    }
    char *p = w->store;
    CpuPool *pool = (need || need_r16 || lm_q_bytes) && n_threads > 1 ? cpu_pool_create(n_threads) : NULL;
    if (need || need_r16) {
        CopyItem *items = malloc(sizeof(CopyItem) * ((size_t)L * 7 + 1));
        if (!items) {
            cpu_pool_destroy(pool);
            cpu_weights_free(w);
            err_set(err, "cpu backend: out of memory");
            return NULL;
        }
        int ni = 0;
        for (int l = 0; l < L; l++) {
            TernaryMatrix *ts[7];
            layer_ternaries(&w->layers[l], ts);
            for (int i = 0; i < 7; i++) {
                const int mapped = model_storage_is_mapped(m, ts[i]->codes);
                const size_t n = ternary_bytes(ts[i]);
                if (need_r16) {
                    /* the view keeps the I2_S codes (unread: the backend runs on the copy) */
                    items[ni++] = (CopyItem){ts[i]->codes, p, n, ts[i]->n_out, ts[i]->n_in_pad, mapped};
                    w->r16[l * 7 + i] = (const uint8_t *)p;
                    p += up(w2a8_r16_bytes(ts[i]->n_out, ts[i]->n_in_pad), ALIGN);
                } else if (need && mapped) {
                    items[ni++] = (CopyItem){ts[i]->codes, p, n, 0, 0, 1};
                    ts[i]->codes = (const uint8_t *)p;
                    p += up(n, ALIGN);
                }
            }
        }
        if (copy_out && need) {
            /* a tied embedding keeps reading its rows from the file (a few per token) */
            items[ni++] = (CopyItem){m->output.data, p, dense_bytes(&m->output), 0, 0, 1};
            w->view.output.data = p;
            p += up(dense_bytes(&m->output), ALIGN);
        }
        CopyJob cj = {items, ni, 0};
        cpu_pool_run(pool, copy_task, &cj);
        for (int i = 0; i < ni; i++) {
            if (items[i].mapped) drop_mapped_pages(items[i].src, items[i].n);
            info->copied_bytes += items[i].n;
            info->r16_bytes += items[i].n_out > 0 ? w2a8_r16_bytes(items[i].n_out, items[i].k_pad) : 0;
        }
        free(items);
    }
    if (lm_q_bytes) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        /* from the view: the huge-page copy of the f16 table when there is one */
        QuantJob j = {&w->view, dense_kind(m->output.type), (int8_t *)p, (float *)(p + lm_q_bytes),
                      screen ? (float *)(p + lm_q_bytes + lm_s_bytes) : NULL,
                      model_storage_is_mapped(m, w->view.output.data), 0};
        cpu_pool_run(pool, quant_task, &j);
        /* the f16 pages just read are not needed resident any more (the screen faults back the
         * few rows it reads) */
        if (model_storage_is_mapped(m, w->view.output.data))
            drop_mapped_pages(m->output.data, dense_bytes(&m->output));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        info->lm_q = j.q;
        info->lm_scale = j.scale;
        info->lm_bound = j.bound;
        info->lm_prep_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    }
    cpu_pool_destroy(pool);
    info->view = &w->view;
    info->r16 = w->r16;
    return w;
}

void cpu_weights_free(CpuWeights *w) {
    if (!w) return;
    if (w->store) munmap(w->store, w->store_len);
    free(w->r16);
    free(w->layers);
    free(w);
}
