/* A/B of the CPU ternary linear (kernels/cpu/cpu_w2a8.c): another revision's file, compiled with
 * its public names prefixed old_ (tests/bench/ab_w2a8.sh does that), against this tree's, in one
 * process so that both see the same machine at the same moment (a shared VM swings by 2x between
 * runs). Method, printed with the results: per shape, both versions are first checked to give
 * identical outputs; then in each round each version makes L calls over rotating weight buffers
 * (256 MiB in all, beyond the LLC), the order alternating between rounds; the figure is the
 * median over rounds of the time per call, and new/old their ratio. Run it against the same
 * revision (A/A) to see the noise floor. usage: ab_w2a8 [M tokens] [rounds] [threads]
 * With threads = 1 the time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), which the other
 * tenants of a shared VM disturb far less than wall time.
 * With a 4th argument "r16", new = this tree's kernels on the R16 layout (the weights repacked
 * once, outside the timing), old = the other revision's I2_S kernels: the layout change itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernels/cpu/kernels_cpu.h"
#include "kernels/w2a8.h"
#include "test_util.h"
int old_w2a8_linear_mt_ex(CpuPool *p, const uint8_t *w, int n_out, int k_pad, float gamma,
                          const int8_t *q, const int32_t *qsum, const float *s, int M, float *out,
                          int ld_out, int accumulate, int flags);
static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
    const int M = argc > 1 ? atoi(argv[1]) : 1, rounds = argc > 2 ? atoi(argv[2]) : 15;
    const int threads = argc > 3 ? atoi(argv[3]) : 2;
    const int r16 = argc > 4 && strcmp(argv[4], "r16") == 0;
    if (M < 1 || M > 64 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "usage: ab_w2a8 [M tokens, 1..64] [rounds, 1..64]\n");
        return 2;
    }
    const int shapes[4][2] = {{2560, 2560}, {640, 2560}, {6912, 2560}, {2560, 6912}};
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "usage: ab_w2a8 [M tokens, 1..64] [rounds, 1..64] [threads, 1..64]\n");
        return 2;
    }
    CpuPool *pool = cpu_pool_create(threads);
    uint64_t r = 88172645463325252ull;
    for (int si = 0; si < 4; si++) {
        const int n = shapes[si][0], k = shapes[si][1];
        const size_t wb = (size_t)n * k / 4;
        const int R = (int)((((size_t)256 << 20) + wb - 1) / wb);
        uint8_t *w = malloc(wb * R), *wr = NULL;
        for (size_t b = 0; b < wb * R; b++) { r ^= r << 13, r ^= r >> 7, r ^= r << 17; w[b] = (uint8_t)((r % 3) | ((r >> 8) % 3) << 2 | ((r >> 16) % 3) << 4 | ((r >> 24) % 3) << 6); }
        if (r16) { /* n is a multiple of 16 here, so both layouts have the same size */
            wr = malloc(wb * R);
            for (int i = 0; i < R; i++) w2a8_r16_pack(w + wb * (size_t)i, n, k, 0, n / R16_ROWS, wr + wb * (size_t)i);
        }
        int8_t *q = malloc((size_t)k * M); float *x = malloc(sizeof(float) * k * M), s[64]; int32_t qs[64];
        for (int j = 0; j < k * M; j++) x[j] = (float)((int)(j * 7919 % 2001) - 1000) / 100.0f;
        for (int m = 0; m < M; m++) s[m] = quant_act_cpu(x + (size_t)m * k, k, k, q + (size_t)m * k, &qs[m]);
        float *ya = malloc(sizeof(float) * n * M), *yb = malloc(sizeof(float) * n * M);
        old_w2a8_linear_mt_ex(pool, w, n, k, 0.5f, q, qs, s, M, ya, n, 0, W2A8_CODES_VALID);
        if (r16) w2a8_linear_r16_mt(pool, wr, n, k, 0.5f, q, qs, s, M, yb, n, 0);
        else w2a8_linear_mt_ex(pool, w, n, k, 0.5f, q, qs, s, M, yb, n, 0, W2A8_CODES_VALID);
        if (memcmp(ya, yb, sizeof(float) * n * M)) { printf("MISMATCH %dx%d\n", n, k); return 1; }
        double to[64], tn[64]; const int L = M == 1 ? 40 : 6;
        for (int rd = 0; rd < rounds; rd++) {
            for (int v = 0; v < 2; v++) {
                const int ver = (rd + v) % 2; /* alternate which goes first */
                double t0 = threads == 1 ? thread_cpu_s() : now_s();
                for (int it = 0; it < L; it++) {
                    const uint8_t *wi = w + wb * (size_t)(it % R);
                    if (ver && r16) w2a8_linear_r16_mt(pool, wr + wb * (size_t)(it % R), n, k, 0.5f, q, qs, s, M, yb, n, 0);
                    else if (ver) w2a8_linear_mt_ex(pool, wi, n, k, 0.5f, q, qs, s, M, yb, n, 0, W2A8_CODES_VALID);
                    else old_w2a8_linear_mt_ex(pool, wi, n, k, 0.5f, q, qs, s, M, ya, n, 0, W2A8_CODES_VALID);
                }
                (ver ? tn : to)[rd] = ((threads == 1 ? thread_cpu_s() : now_s()) - t0) / L * 1e6;
            }
        }
        qsort(to, rounds, sizeof(double), cmpd); qsort(tn, rounds, sizeof(double), cmpd);
        printf("M=%d %5dx%-5d old %8.1f us  new %8.1f us  new/old %.3f  (medians of %d interleaved rounds of %d calls, %s)\n",
               M, n, k, to[rounds / 2], tn[rounds / 2], tn[rounds / 2] / to[rounds / 2], rounds, L,
               threads == 1 ? "1 thread, thread CPU time" : "wall time");
        if (r16) printf("      (new = R16 layout, old = I2_S)\n");
        free(w), free(wr), free(q), free(x), free(ya), free(yb);
    }
    return 0;
}
