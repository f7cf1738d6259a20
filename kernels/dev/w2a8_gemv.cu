// Kernel lab: W2A8 GEMV (batch 1) versions, each checked exactly against the CPU reference
// (w2a8_gemv_ref, int32) at every shape before it is timed.
//
// Build (also built by CMake as dev_w2a8_gemv when nvcc is present):
//   nvcc -arch=sm_90 -O3 -std=c++17 -I. kernels/dev/w2a8_gemv.cu kernels/w2a8_ref.c \
//        kernels/cuda/w2a8_gemv.cu -o dev_w2a8_gemv
// Run: ./dev_w2a8_gemv [version|fast]   (no argument: all versions; fast: versions 3-10)
//
// Versions:
//   1  one thread per row, byte loads of the I2_S row, scalar decode (the naive port)
//   2  one warp per row, 4-byte loads, lane-strided over the row, dp4a with shifted masks
//   3  8 lanes per row, 16-byte loads, all of a lane's loads issued before the activations
//      are staged (swizzled) in shared memory, qsum trick (promoted: kernels/cuda/w2a8_gemv.cu)
//   4  version 3 launched with programmatic dependent launch (overlaps consecutive launches)
//   5  kernel 5 (kernels/cuda/w2a8_gemv.cu), PDL: R rows per 8-lane group chosen by shape
//      (R = 4 where that still gives >= 198 blocks, e.g. 13824 rows: 216 blocks of 64 rows
//      instead of 864 of 16), norm weights staged in shared memory by cp.async before the wait
//   6  kernel 5 with R = 2 everywhere K <= 4096 (PDL)
//   7  kernel 5 with R = 4 everywhere K <= 4096 (PDL)
//   8  version 5 with the next launch triggered after the PDL wait (at most one kernel ahead)
//   9  version 3 + L2 prefetch: each launch first issues cp.async.bulk.prefetch.L2 for the
//      weights of the launch ~16 MB further along the rotation (as decode prefetches one layer
//      ahead), and triggers the next launch after its PDL wait
//  10  version 9 with the kernel of version 6 (R 2 rows per 8-lane group where K <= 4096)
//
// Versions 9/10 still move every launch's weights from HBM (the rotation is > 5x L2); the
// prefetch only moves the moment they are read from HBM ahead of the launch's dependency wait.
//
// Timing: weights in rotating buffers of >= 256 MiB in all (> 5x L2), max(100, buffers)
// launches in one CUDA graph, median replay / launches; GB/s over packed weight bytes +
// activations + outputs; % of a device-to-device copy measured in the same run.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/kernels_cuda.h"
#include "kernels/w2a8.h"

#define CK(x)                                                                                   \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));        \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

static uint64_t rng = 0xDEADBEEFCAFEF00Dull;
static uint32_t rnd() {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

// ---- version 1 --------------------------------------------------------------------------------
__global__ void w2a8_gemv_kernel1(const uint8_t *w, int n, int k_pad, const int8_t *q, int32_t *out) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n) return;
    const uint8_t *row = w + (size_t)r * (k_pad / 4);
    int acc = 0;
    for (int j = 0; j < k_pad; j++) {
        const uint8_t b = row[(j / 128) * 32 + (j % 32)];
        const int c = (b >> (6 - 2 * ((j % 128) / 32))) & 3;
        acc += (c == 3 ? 0 : c - 1) * q[j];
    }
    out[r] = acc;
}

// ---- version 2 --------------------------------------------------------------------------------
__global__ void w2a8_gemv_kernel2(const uint8_t *w, int n, int k_pad, const int8_t *q, int qsum, int32_t *out) {
    const int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (r >= n) return;
    const uint32_t *row = (const uint32_t *)(w + (size_t)r * (k_pad / 4));
    const int words = k_pad / 16;
    int acc = 0;
    for (int i = lane; i < words; i += 32) {
        const uint32_t v = row[i];
        const int blk = i / 8, g = (i % 8) * 4;  // bytes g..g+3 of block blk
        const int8_t *qb = q + blk * 128 + g;
#pragma unroll
        for (int j = 0; j < 4; j++)
            acc = __dp4a((int)((v >> (6 - 2 * j)) & 0x03030303u), *(const int *)(qb + 32 * j), acc);
    }
    for (int o = 16; o; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) out[r] = acc - qsum;
}

struct Dev {
    uint8_t *w;
    int8_t *q;
    float *s;
    int32_t *qsum;
    int32_t *out;
    int qsum_h;
};

static int launch(int ver, const Dev &d, const uint8_t *w, int n, int k, cudaStream_t st,
                  const uint8_t *pf = nullptr, size_t pf_n = 0) {
    switch (ver) {
    case 1: w2a8_gemv_kernel1<<<(n + 127) / 128, 128, 0, st>>>(w, n, k, d.q, d.out); return cudaGetLastError() != cudaSuccess;
    case 2: w2a8_gemv_kernel2<<<(n + 3) / 4, 128, 0, st>>>(w, n, k, d.q, d.qsum_h, d.out); return cudaGetLastError() != cudaSuccess;
    default: {
        KcudaTernary m = {};
        m.d_codes = w;
        m.n_out = n;
        m.k_pad = k;
        m.seg_end[0] = m.seg_end[1] = n;
        m.gamma[0] = m.gamma[1] = m.gamma[2] = 1.0f;
        kcuda_set_gemv_version(ver <= 4 || ver == 9 ? 3 : ver == 10 ? 6 : 5, ver == 6 || ver == 10 ? 2 : ver == 7 ? 4 : 0);
        kcuda_set_gemv_late_trigger(ver >= 8);
        if (ver >= 9 && pf_n) kcuda_set_l2_prefetch(pf, pf_n, nullptr, 0);
        return kcuda_w2a8_gemv(&m, nullptr, 0, nullptr, 0, d.q, d.s, d.qsum, KCUDA_EP_I32, d.out, ver >= 4, st);
    }
    }
}

int main(int argc, char **argv) {
    const int fast = argc > 1 && strcmp(argv[1], "fast") == 0;
    const int only = argc > 1 && !fast ? atoi(argv[1]) : 0;
    const int shapes[][2] = {{2560, 2560}, {3840, 2560}, {13824, 2560}, {2560, 6912},
                             {3200, 3200}, {4800, 3200}, {3200, 10240}, {20480, 3200},
                             {7, 128},     {1001, 384}};
    const int n_shapes = 10, n_timed = 8;
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const double copy = kcuda_copy_bandwidth_gbs((size_t)1 << 30, 11);
    printf("device %s, copy bandwidth %.0f GB/s (1 GiB D2D, read+write counted)\n", prop.name, copy);
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaEvent_t ea, eb;
    CK(cudaEventCreate(&ea));
    CK(cudaEventCreate(&eb));
    printf("| version | N x K | us | GB/s | %% copy |\n|---:|---|---:|---:|---:|\n");
    for (int ver = 1; ver <= 10; ver++) {
        if ((only && ver != only) || (fast && ver < 3)) continue;
        for (int si = 0; si < n_shapes; si++) {
            const int n = shapes[si][0], k = shapes[si][1];
            const size_t wb = (size_t)n * k / 4;
            std::vector<uint8_t> hw(wb);
            for (auto &b : hw) {
                uint8_t v = 0;
                for (int j = 0; j < 4; j++) v |= (uint8_t)((rnd() % 3) << (2 * j));
                b = v;
            }
            std::vector<int8_t> hq(k);
            int qs = 0;
            for (auto &v : hq) qs += (v = (int8_t)((int)(rnd() % 255) - 127));
            std::vector<int32_t> ref(n), got(n);
            w2a8_gemv_ref(hw.data(), n, k, hq.data(), ref.data());
            const int R = si < n_timed ? (int)std::max<size_t>(2, ((256u << 20) + wb - 1) / wb) : 1;
            Dev d;
            d.qsum_h = qs;
            CK(cudaMalloc(&d.w, wb * R));
            CK(cudaMalloc(&d.q, k));
            CK(cudaMalloc(&d.s, 4));
            CK(cudaMalloc(&d.qsum, 4));
            CK(cudaMalloc(&d.out, n * 4));
            for (int r = 0; r < R; r++) CK(cudaMemcpy(d.w + wb * r, hw.data(), wb, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(d.q, hq.data(), k, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(d.qsum, &qs, 4, cudaMemcpyHostToDevice));
            CK(cudaMemset(d.out, 0x7f, n * 4));
            if (launch(ver, d, d.w, n, k, st, d.w, wb)) {
                fprintf(stderr, "v%d %dx%d: launch failed: %s\n", ver, n, k, kcuda_last_error());
                return 1;
            }
            CK(cudaStreamSynchronize(st));
            CK(cudaMemcpy(got.data(), d.out, n * 4, cudaMemcpyDeviceToHost));
            for (int r = 0; r < n; r++)
                if (got[r] != ref[r]) {
                    fprintf(stderr, "v%d %dx%d: row %d = %d, reference %d: FAILED\n", ver, n, k, r, got[r], ref[r]);
                    return 1;
                }
            if (si < n_timed) {
                // a whole number of rotations, so the prefetch of the last launches (wrapping
                // around) is what the first launches of the next replay read
                const int L = R * ((100 + R - 1) / R);
                const int ahead = (int)std::min<size_t>(R - 1, std::max<size_t>(1, ((16u << 20) + wb - 1) / wb));
                cudaGraph_t g;
                cudaGraphExec_t ge;
                CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                for (int i = 0; i < L; i++) launch(ver, d, d.w + wb * (i % R), n, k, st, d.w + wb * ((i + ahead) % R), wb);
                CK(cudaStreamEndCapture(st, &g));
                CK(cudaGraphInstantiate(&ge, g, 0));
                std::vector<float> ms;
                for (int r = 0; r < 13; r++) {
                    CK(cudaEventRecord(ea, st));
                    CK(cudaGraphLaunch(ge, st));
                    CK(cudaEventRecord(eb, st));
                    CK(cudaEventSynchronize(eb));
                    float m;
                    CK(cudaEventElapsedTime(&m, ea, eb));
                    if (r >= 3) ms.push_back(m);
                }
                std::sort(ms.begin(), ms.end());
                const double us = ms[ms.size() / 2] * 1000.0 / L;
                const double gbs = (wb + k + 4.0 * n) / (us * 1e-6) / 1e9;
                printf("| %d | %dx%d | %.2f | %.0f | %.0f%% |\n", ver, n, k, us, gbs, 100 * gbs / copy);
                cudaGraphExecDestroy(ge);
                cudaGraphDestroy(g);
            }
            cudaFree(d.w), cudaFree(d.q), cudaFree(d.s), cudaFree(d.qsum), cudaFree(d.out);
        }
        printf("(v%d: all %d shapes checked exactly against w2a8_gemv_ref)\n", ver, n_shapes);
    }
    return 0;
}
