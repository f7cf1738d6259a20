/* Memory read bandwidth probe: the yardstick for memory-bound decode (bytes per token divided
 * by this figure is the fastest decode the machine can do). Every thread of a pool streams its
 * slice of a 512 MiB buffer (16x a 32 MiB L3; on transparent huge pages where the system allows,
 * like the model's weights) with vector loads; the best of several passes is reported, as 1e9
 * bytes per second. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "kernels/cpu/kernels_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BN_X86 1
#endif

typedef struct {
    const uint8_t *buf;
    size_t bytes;
    int next; /* chunk counter */
    uint64_t sink[64];
} BwJob;

enum { BW_CHUNK = 4 << 20 };

#ifdef BN_X86
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    const __m256i x = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(x, 0) ^ (uint64_t)_mm256_extract_epi64(x, 3);
}
#endif

static uint64_t read_scalar(const uint8_t *p, size_t n) {
    uint64_t a = 0, b = 0, v0, v1;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        memcpy(&v0, p + i, 8);
        memcpy(&v1, p + i + 8, 8);
        a ^= v0;
        b ^= v1;
    }
    return a ^ b;
}

static void bw_task(void *ctx, int ith, int nth) {
    BwJob *j = ctx;
    (void)nth;
    for (int c; (size_t)(c = cpu_chunk_claim(&j->next)) * BW_CHUNK < j->bytes;) {
        const uint8_t *p = j->buf + (size_t)c * BW_CHUNK;
#ifdef BN_X86
        if (cpu_isa_active() >= CPU_ISA_AVX2) {
            j->sink[ith & 63] ^= read_avx2(p, BW_CHUNK);
            continue;
        }
#endif
        j->sink[ith & 63] ^= read_scalar(p, BW_CHUNK);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cpu_measure_read_bandwidth_gbs_threads(int n_threads) {
    const size_t bytes = (size_t)512 << 20;
    void *buf = NULL;
    if (posix_memalign(&buf, (size_t)2 << 20, bytes) != 0) return 0.0;
#ifdef MADV_HUGEPAGE
    madvise(buf, bytes, MADV_HUGEPAGE); /* as model weights are (model_storage_alloc) */
#endif
    memset(buf, 0x5a, bytes); /* fault every page in before timing */
    CpuPool *pool = cpu_pool_create(n_threads > 0 ? n_threads : cpu_num_cores());
    BwJob j;
    memset(&j, 0, sizeof j);
    j.buf = buf;
    j.bytes = bytes;
    cpu_pool_run(pool, bw_task, &j); /* warm-up: wakes the workers */
    double best = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        j.next = 0;
        const double t0 = now_s();
        cpu_pool_run(pool, bw_task, &j);
        const double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    cpu_pool_destroy(pool);
    free(buf);
    return best > 0 ? (double)bytes / best / 1e9 : 0.0;
}

double cpu_measure_read_bandwidth_gbs(void) { return cpu_measure_read_bandwidth_gbs_threads(0); }
