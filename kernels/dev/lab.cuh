// Helpers shared by the kernel labs (kernels/dev/*.cu): error check, a seeded random stream,
// random I2_S weight bytes, and the one timing method every lab table uses.
#ifndef BN_KERNELS_DEV_LAB_CUH
#define BN_KERNELS_DEV_LAB_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

// A lab is a program, not a library: a failed CUDA call ends it with the file and line.
#define CK(x)                                                                                   \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));        \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

// xorshift64: fast, reproducible from the seed each lab sets (lab_seed), no library state.
static uint64_t lab_rng = 0x0123456789ABCDEFull;
static inline void lab_seed(uint64_t s) { lab_rng = s; }
static inline uint32_t rnd() {
    lab_rng ^= lab_rng << 13, lab_rng ^= lab_rng >> 7, lab_rng ^= lab_rng << 17;
    return (uint32_t)(lab_rng >> 16);
}

// I2_S bytes of random ternary codes 0..2 (four 2-bit codes per byte).
static inline std::vector<uint8_t> lab_random_i2s(size_t bytes) {
    std::vector<uint8_t> w(bytes);
    for (auto &b : w) {
        uint8_t v = 0;
        for (int j = 0; j < 4; j++) v |= (uint8_t)((rnd() % 3) << (2 * j));
        b = v;
    }
    return w;
}

// The timing method: `launches` enqueues (enqueue(i), i = 0..launches-1) captured in one CUDA
// graph, replayed `reps` times; the first `skip` replays warm up; the median replay time over
// the launches, in microseconds. enqueue returns nonzero when a launch was refused.
template <class Enqueue>
static double lab_graph_us(cudaStream_t st, int launches, int reps, int skip, Enqueue &&enqueue) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < launches; i++)
        if (enqueue(i)) {
            fprintf(stderr, "launch %d refused while capturing\n", i);
            exit(1);
        }
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> ms;
    for (int r = 0; r < reps; r++) {
        CK(cudaEventRecord(a, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float m;
        CK(cudaEventElapsedTime(&m, a, b));
        if (r >= skip) ms.push_back(m);
    }
    std::sort(ms.begin(), ms.end());
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms[ms.size() / 2] * 1000.0 / launches;
}

#endif
