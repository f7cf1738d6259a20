/* CPU feature detection and the persistent thread pool the CPU kernels run on.
 *
 * Why a hand-made pool: a decode step of the 2B model dispatches ~200 small parallel jobs
 * (7 linears, norms and attention per layer), so the hand-off must cost microseconds, not a
 * thread creation. Workers spin on a generation counter for a short while after each job (the
 * next one usually follows within microseconds), then sleep on a condition variable so an idle
 * engine burns no CPU. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "kernels/cpu/kernels_cpu.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- ISA ------------------------------------------------------------------------------------ */

static int isa_detected = -1;
static int isa_cap = CPU_ISA_AVX512;

CpuIsa cpu_isa_detect(void) {
    if (isa_detected < 0) {
        int isa = CPU_ISA_SCALAR;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
            __builtin_cpu_supports("f16c"))
            isa = CPU_ISA_AVX2;
        if (isa == CPU_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512vnni"))
            isa = CPU_ISA_AVX512;
#endif
        isa_detected = isa;
    }
    return (CpuIsa)isa_detected;
}

CpuIsa cpu_isa_active(void) {
    const int d = cpu_isa_detect();
    return (CpuIsa)(d < isa_cap ? d : isa_cap);
}

CpuIsa cpu_isa_set(CpuIsa want) {
    isa_cap = want;
    return cpu_isa_active();
}

const char *cpu_isa_name(CpuIsa isa) {
    switch (isa) {
    case CPU_ISA_AVX2: return "AVX2";
    case CPU_ISA_AVX512: return "AVX-512 VNNI";
    default: return "scalar";
    }
}

/* Online CPUs, fewer when the process is restricted to a subset (taskset, cpusets). */
int cpu_num_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int a = CPU_COUNT(&set);
        if (a >= 1 && (n < 1 || a < n)) n = a;
    }
    return n < 1 ? 1 : (int)n;
}

void cpu_split(int n, int align, int ith, int nth, int *begin, int *end) {
    if (align < 1) align = 1;
    const int units = (n + align - 1) / align;
    const int per = units / nth, extra = units % nth;
    const int u0 = ith * per + (ith < extra ? ith : extra);
    const int u1 = u0 + per + (ith < extra ? 1 : 0);
    int b = u0 * align, e = u1 * align;
    if (b > n) b = n;
    if (e > n) e = n;
    *begin = b;
    *end = e;
}

/* ---- pool ----------------------------------------------------------------------------------- */

/* Pause iterations a worker spins for the next job (~0.3-1 ms) before it sleeps, and that the
 * caller spins for the workers before it starts yielding its core (a worker that is not
 * running, on a busy machine, cannot finish while we spin on its core). */
enum { POOL_SPIN = 1 << 14, POOL_WAIT_SPIN = 1 << 11 };

typedef struct {
    CpuPool *pool;
    int ith;
} Worker;

struct CpuPool {
    int n;
    pthread_t *threads;
    Worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;      /* bumped once per job */
    atomic_int entry;     /* workers that joined the current job; negative once it is closed */
    atomic_int left;      /* joined workers that have finished */
    atomic_int stop;
    CpuTaskFn fn;         /* written only while no worker can join; read only after joining */
    void *ctx;
};

/* Why join-then-close: the caller does not wait for every worker to check in, only for the
 * workers that joined before it finished its own share. A worker that is asleep or descheduled
 * (a busy machine) is simply not waited for: tasks share their work through cpu_chunk_claim, so
 * whoever runs takes it all. Without this, each of the ~150 jobs of a decode step waited one
 * scheduler wake-up for an idle worker. */
enum { POOL_CLOSED = 1 << 30 };

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *arg) {
    Worker *wk = arg;
    CpuPool *p = wk->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; g == seen && i < POOL_SPIN; i++) {
            cpu_relax();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = g;
        if (atomic_fetch_add_explicit(&p->entry, 1, memory_order_acq_rel) >= 0) {
            p->fn(p->ctx, wk->ith, p->n);
            atomic_fetch_add_explicit(&p->left, 1, memory_order_release);
        }
    }
    return NULL;
}

CpuPool *cpu_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    CpuPool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->entry, -POOL_CLOSED);
    atomic_init(&p->left, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads, sizeof *p->threads);
        p->workers = calloc((size_t)n_threads, sizeof *p->workers);
        if (!p->threads || !p->workers) {
            free(p->threads);
            free(p->workers);
            free(p);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            p->workers[i] = (Worker){p, i};
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]) != 0) {
                p->n = i; /* stop the ones already running */
                cpu_pool_destroy(p);
                return NULL;
            }
        }
    }
    return p;
}

void cpu_pool_destroy(CpuPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->workers);
    free(p);
}

int cpu_pool_threads(const CpuPool *p) { return p ? p->n : 1; }

void cpu_pool_run(CpuPool *p, CpuTaskFn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    /* the previous job is closed and every worker that joined it has left: nobody reads these */
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->left, 0, memory_order_relaxed);
    atomic_store_explicit(&p->entry, 0, memory_order_release); /* open */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    const int joined = atomic_fetch_sub_explicit(&p->entry, POOL_CLOSED, memory_order_acq_rel);
    for (long i = 0; atomic_load_explicit(&p->left, memory_order_acquire) < joined; i++) {
        if (i < POOL_WAIT_SPIN) cpu_relax();
        else sched_yield(); /* a joined worker was descheduled mid-chunk: give it the core */
    }
}
