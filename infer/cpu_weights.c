/* The CPU backend's weight store (cpu_weights.h). */
#include "infer/cpu_weights.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "infer/backend_cpu.h"
#include "infer/model_storage.h"
#include "kernels/cpu/kernels_cpu.h"

struct CpuWeights {
    Model view;           /* shallow copy of the model; layers and output redirected */
    LayerWeights *layers; /* the view's layer table (owned) */
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
    int next;
} QuantJob;

enum { QUANT_CHUNK = 512 };

static void quant_task(void *ctx, int ith, int nth) {
    QuantJob *j = ctx;
    const DenseMatrix *o = &j->m->output;
    const size_t es = o->type == FT_F32 ? 4 : 2;
    (void)ith, (void)nth;
    for (int c; (c = cpu_chunk_claim(&j->next)) * QUANT_CHUNK < o->rows;) {
        const int r0 = c * QUANT_CHUNK, n = o->rows - r0 < QUANT_CHUNK ? o->rows - r0 : QUANT_CHUNK;
        lm_head_quant_i8_cpu(j->type, (const char *)o->data + (size_t)r0 * o->cols * es, n,
                              o->cols, j->q + (size_t)r0 * o->cols, j->scale + r0);
    }
}

/* The copy itself, shared by the pool's threads in 4 MiB pieces: a cold file is read from disk
 * here instead of during the first prompt, and two threads fault in and fill the huge pages
 * faster than one. */
typedef struct {
    const void *src;
    void *dst;
    size_t n;
} CopyItem;

typedef struct {
    const CopyItem *items;
    int n_items;
    int next;
} CopyJob;

enum { COPY_PIECE = 4 << 20 };

static void copy_task(void *ctx, int ith, int nth) {
    CopyJob *j = ctx;
    (void)ith, (void)nth;
    for (int c; (c = cpu_chunk_claim(&j->next)) >= 0;) {
        int i = 0;
        size_t off = (size_t)c * COPY_PIECE;
        while (i < j->n_items && off >= j->items[i].n) off -= up(j->items[i].n, COPY_PIECE), i++;
        if (i >= j->n_items) return;
        /* piece c is [off, off + COPY_PIECE) of item i (items are counted in whole pieces) */
        const size_t n = j->items[i].n - off < COPY_PIECE ? j->items[i].n - off : COPY_PIECE;
        memcpy((char *)j->items[i].dst + off, (const char *)j->items[i].src + off, n);
        /* released piece by piece, so the process never holds the file pages and the copy at
         * once (peak RSS of a -p run: 2293 MiB when they were released only at the end) */
        drop_mapped_pages((const char *)j->items[i].src + off, n);
    }
}

static CpuDenseType dense_kind(FloatType t) {
    return t == FT_F32 ? CPU_DENSE_F32 : t == FT_F16 ? CPU_DENSE_F16 : CPU_DENSE_BF16;
}

CpuWeights *cpu_weights_create(const Model *m, CpuWeightsMode mode, int lm_int8, int n_threads,
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

    /* What to copy: tensors that live in a file mapping (anonymous buffers already sit on huge
     * pages: model_storage_alloc advises them). */
    const int copy = mode != CPU_WEIGHTS_MAP;
    size_t need = 0;
    for (int l = 0; l < L && copy; l++) {
        TernaryMatrix *ts[7];
        layer_ternaries(&w->layers[l], ts);
        for (int i = 0; i < 7; i++)
            if (model_storage_is_mapped(m, ts[i]->codes)) need += up(ternary_bytes(ts[i]), ALIGN);
    }
    /* with the int8 lm_head the f16 table is only read a row per token, by the embedding lookup
     * (tied), so it stays in the mapping */
    const int copy_out = copy && !lm_int8 && model_storage_is_mapped(m, m->output.data);
    if (copy_out) need += up(dense_bytes(&m->output), ALIGN);
    const size_t lm_q_bytes = lm_int8 ? up((size_t)m->output.rows * m->output.cols, ALIGN) : 0;
    const size_t lm_s_bytes = lm_int8 ? up((size_t)m->output.rows * sizeof(float), ALIGN) : 0;
    /* Copy only when it fits beside what is already resident: a copy that pushes the machine
     * into swap would cost far more than the huge pages gain. */
    const uint64_t avail = backend_cpu_mem_available();
    if (need && avail && (double)need * 1.1 + (double)(lm_q_bytes + lm_s_bytes) > (double)avail) need = 0;
    const size_t total = need + lm_q_bytes + lm_s_bytes;
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
        /* Without transparent huge pages a copy buys nothing over the page cache. */
        if (!info->huge) need = 0;
    }
    char *p = w->store;
    CpuPool *pool = (need || lm_int8) && n_threads > 1 ? cpu_pool_create(n_threads) : NULL;
    if (need) {
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
                if (!model_storage_is_mapped(m, ts[i]->codes)) continue;
                const size_t n = ternary_bytes(ts[i]);
                items[ni++] = (CopyItem){ts[i]->codes, p, n};
                ts[i]->codes = (const uint8_t *)p;
                p += up(n, ALIGN);
            }
        }
        if (copy_out) {
            /* a tied embedding keeps reading its rows from the file (a few per token) */
            items[ni++] = (CopyItem){m->output.data, p, dense_bytes(&m->output)};
            w->view.output.data = p;
            p += up(dense_bytes(&m->output), ALIGN);
        }
        CopyJob cj = {items, ni, 0};
        cpu_pool_run(pool, copy_task, &cj);
        for (int i = 0; i < ni; i++) {
            drop_mapped_pages(items[i].src, items[i].n);
            info->copied_bytes += items[i].n;
        }
        free(items);
    }
    if (lm_int8) {
        QuantJob j = {&w->view, dense_kind(m->output.type), (int8_t *)p,
                      (float *)(p + lm_q_bytes), 0};
        cpu_pool_run(pool, quant_task, &j);
        /* the f16 pages just read for the quantization are not needed resident any more */
        if (model_storage_is_mapped(m, m->output.data))
            drop_mapped_pages(m->output.data, dense_bytes(&m->output));
        info->lm_q = j.q;
        info->lm_scale = j.scale;
    }
    cpu_pool_destroy(pool);
    info->view = &w->view;
    return w;
}

void cpu_weights_free(CpuWeights *w) {
    if (!w) return;
    if (w->store) munmap(w->store, w->store_len);
    free(w->layers);
    free(w);
}
