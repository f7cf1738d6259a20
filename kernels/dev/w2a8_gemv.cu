// Kernel lab: W2A8 GEMV (batch 1) versions, each checked exactly against the CPU reference
// (w2a8_gemv_ref, int32) at every shape before it is timed.
//
// Build (also built by CMake as dev_w2a8_gemv when nvcc is present):
//   cmake --build build --target dev_w2a8_gemv
// Run: ./dev_w2a8_gemv [version|fast|l2]   (no argument: all versions; fast: versions 3-8)
//
// Versions:
//   1  one thread per row, byte loads of the I2_S row, scalar decode (the naive port)
//   2  one warp per row, 4-byte loads, lane-strided over the row, dp4a with shifted masks
//   3  kernel 3 of kernels/cuda/w2a8_gemv.cuh on every shape: 8 lanes per row, 16-byte loads,
//      all of a lane's loads issued before the activations are staged (swizzled) in shared
//      memory, qsum trick
//   4  version 3 launched with programmatic dependent launch (overlaps consecutive launches)
//   5  kernel 5 (PDL): R rows per 8-lane group chosen by shape (R = 4 where that still gives
//      >= 198 blocks, e.g. 13824 rows: 216 blocks of 64 rows instead of 864 of 16)
//   6  the product's choice (kcuda_w2a8_gemv, PDL): kernel 5 with R = 2 where that gives >= 198
//      blocks and K <= 4096, else kernel 3
//   7  kernel 5 with R = 4 everywhere K <= 4096 (PDL)
//   8  version 5 with the next launch triggered after the PDL wait (at most one kernel ahead)
// (Versions 5/7/8 once also staged the norm weights in shared memory by cp.async; this lab feeds
// int8 input, where they take no norm, so the timings here are the same kernels'. Versions 9/10,
// an L2 prefetch of the weights ~16 MB ahead inside the GEMV, made decode 2-14% slower and were
// deleted: kernels/dev/README.md, "Version 9"; the "l2" study below keeps the raw prefetch.)
//
// Timing: weights in rotating buffers of >= 256 MiB in all (> 5x L2), max(100, buffers)
// launches in one CUDA graph, median replay / launches; GB/s over packed weight bytes +
// activations + outputs; % of a device-to-device copy measured in the same run.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "kernels/cuda/kernels_cuda.h"
#include "kernels/cuda/w2a8_gemv.cuh"
#include "kernels/w2a8.h"

#include "kernels/dev/lab.cuh"

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

// Kernel 3 or kernel 5 with R rows per group, int32 output, MAXC chosen as the product does.
template <int R>
static int launch_kernel(int per_lane, dim3 grid, bool pdl, void *st, const GemvParams &p) {
    const dim3 blk(GEMV_THREADS);
    const size_t smem = (size_t)p.k_pad;
    if constexpr (R == 0) {
        if (per_lane <= 4) return kcuda_launch(w2a8_gemv_kernel3<4, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        if (per_lane <= 5) return kcuda_launch(w2a8_gemv_kernel3<5, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        if (per_lane <= 7) return kcuda_launch(w2a8_gemv_kernel3<7, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        if (per_lane <= 8) return kcuda_launch(w2a8_gemv_kernel3<8, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        if (per_lane <= 14) return kcuda_launch(w2a8_gemv_kernel3<14, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        return kcuda_launch(w2a8_gemv_kernel3<16, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
    } else {
        if (per_lane <= 4) return kcuda_launch(w2a8_gemv_kernel5<4, R, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        if (per_lane <= 5) return kcuda_launch(w2a8_gemv_kernel5<5, R, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        if (per_lane <= 7) return kcuda_launch(w2a8_gemv_kernel5<7, R, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        if constexpr (R > 1) {  // R rows of more than 8 chunks would not fit in registers
            return kcuda_launch(w2a8_gemv_kernel5<8, R, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        } else {
            if (per_lane <= 8) return kcuda_launch(w2a8_gemv_kernel5<8, 1, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
            if (per_lane <= 14) return kcuda_launch(w2a8_gemv_kernel5<14, 1, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
            return kcuda_launch(w2a8_gemv_kernel5<16, 1, KCUDA_EP_I32>, grid, blk, smem, st, pdl, p);
        }
    }
}

// Rows per group of version 5: as many as keep >= 1.5 blocks per SM of an H100 (198).
static int rows_by_shape(int n) {
    if ((n + 63) / 64 >= 198) return 4;
    if ((n + 31) / 32 >= 198) return 2;
    return 1;
}

static int launch(int ver, const Dev &d, const uint8_t *w, int n, int k, cudaStream_t st) {
    switch (ver) {
    case 1: w2a8_gemv_kernel1<<<(n + 127) / 128, 128, 0, st>>>(w, n, k, d.q, d.out); return cudaGetLastError() != cudaSuccess;
    case 2: w2a8_gemv_kernel2<<<(n + 3) / 4, 128, 0, st>>>(w, n, k, d.q, d.qsum_h, d.out); return cudaGetLastError() != cudaSuccess;
    case 6: {
        KcudaTernary m = {};
        m.d_codes = w;
        m.n_out = n;
        m.k_pad = k;
        m.seg_end[0] = m.seg_end[1] = n;
        m.gamma[0] = m.gamma[1] = m.gamma[2] = 1.0f;
        return kcuda_w2a8_gemv(&m, nullptr, 0, nullptr, 0, d.q, d.s, d.qsum, KCUDA_EP_I32, d.out, KCUDA_PDL_EARLY, st);
    }
    default: {
        GemvParams p = {};
        p.w = w;
        p.n_out = n;
        p.k_pad = p.k_in = k;
        p.q = d.q;
        p.s = d.s;
        p.qsum = d.qsum;
        p.seg0 = p.seg1 = n;
        p.g0 = p.g1 = p.g2 = 1.0f;
        p.out = d.out;
        p.late_trigger = ver == 8;
        const int per_lane = (k / 64 + 7) / 8;
        if (ver <= 4) return launch_kernel<0>(per_lane, dim3((unsigned)((n + 15) / 16)), ver == 4, st, p);
        const int R = per_lane > 8 ? 1 : ver == 7 ? 4 : rows_by_shape(n);
        const dim3 grid((unsigned)((n + 16 * R - 1) / (16 * R)));
        if (R == 4) return launch_kernel<4>(per_lane, grid, true, st, p);
        if (R == 2) return launch_kernel<2>(per_lane, grid, true, st, p);
        return launch_kernel<1>(per_lane, grid, true, st, p);
    }
    }
}

// ---- "l2": does a prefetch put weights into L2, and how fast? ------------------------------------
// Raw streams over 16 MB regions of a 1 GiB buffer (each region cold: the buffer is 20x L2).
// Per iteration: [prefetch kernel over region i] [spin kernel of G us] [read kernel over region i];
// read time = time(all three) - time(prefetch + spin), in graphs of 48 iterations.
__global__ void read_kernel(const uint4 *p, size_t n16, int *sink) {
    uint32_t x = 0;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n16; i += 4 * stride) {
        uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride), d = __ldcs(p + i + 3 * stride);
        x ^= a.x ^ b.y ^ c.z ^ d.w;
    }
    for (; i < n16; i += stride) x ^= __ldcs(p + i).x;
    if (x == 0x12345679u) *sink = 1;
}
__global__ void spin_kernel(long long ns) {
    const long long t0 = clock64();
    // the SM clock is ~1.7-2 GHz; a spin of ns*2 cycles is >= ns nanoseconds
    while (clock64() - t0 < 2 * ns) {
    }
}
// mode 0: nothing; 1: bulk (cp.async.bulk.prefetch.L2, 16 KB per instruction); 2: per-thread
// prefetch.global.L2 every 128 bytes; 3: every 32 bytes; 4: ld.global.L2::256B of one byte per 256
__global__ void prefetch_kernel(const char *p, size_t n, int mode, int *sink) {
    const size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x, nt = (size_t)gridDim.x * blockDim.x;
    if (mode == 1) {
        for (size_t c = tid; c * 16384 < n; c += nt)
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + c * 16384), "r"(16384u) : "memory");
    } else if (mode == 2 || mode == 3) {
        const size_t st = mode == 2 ? 128 : 32;
        for (size_t o = tid * st; o < n; o += nt * st) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
    } else if (mode == 4) {
        uint32_t x = 0;
        for (size_t o = tid * 256; o < n; o += nt * 256) {
            uint32_t v;
            asm volatile("ld.global.L2::256B.u32 %0, [%1];" : "=r"(v) : "l"(p + o));
            x ^= v;
        }
        if (x == 0x12345679u) *sink = 1;
    }
}

// Median us per launch of `body`, `iters` launches in a graph (lab.cuh), 9 replays, 2 warm-up.
static double graph_us(cudaStream_t st, int iters, const std::function<void(int)> &body) {
    return lab_graph_us(st, iters, 9, 2, [&](int i) {
        body(i);
        return 0;
    });
}

static int l2_study(double copy) {
    const size_t total = (size_t)1 << 30, region = (size_t)16 << 20;
    const int nreg = (int)(total / region);
    char *buf;
    int *sink;
    CK(cudaMalloc(&buf, total));
    CK(cudaMalloc(&sink, 4));
    CK(cudaMemset(buf, 1, total));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int rb = prop.multiProcessorCount * 4;
    const int iters = 48;
    auto rd = [&](int i) { read_kernel<<<rb, 256, 0, st>>>((const uint4 *)(buf + region * (size_t)(i % nreg)), region / 16, sink); };
    // hot: the same region each time (L2-resident after the first)
    const double hot = graph_us(st, iters, [&](int) { read_kernel<<<rb, 256, 0, st>>>((const uint4 *)buf, region / 16, sink); });
    // hot, but each read maps addresses to SMs differently from the one before (other grid size)
    const double hot2 = graph_us(st, iters, [&](int i) {
        read_kernel<<<(i & 1) ? rb : rb * 3 / 4 + 1, 256, 0, st>>>((const uint4 *)buf, region / 16, sink);
    });
    const double cold = graph_us(st, iters, rd);
    printf("\nL2 study: read of a 16 MB region: cold (from HBM) %.2f us (%.0f GB/s), L2-resident %.2f us (%.0f GB/s),\n"
           "L2-resident but read by other SMs than last time %.2f us (%.0f GB/s); copy %.0f GB/s\n",
           cold, region / cold / 1e3, hot, region / hot / 1e3, hot2, region / hot2 / 1e3, copy);
    printf("| prefetch | gap us | read us after it | GB/s | prefetch kernel + gap us |\n|---|---:|---:|---:|---:|\n");
    const char *names[5] = {"none", "bulk 16 KB", "prefetch.L2 /128 B", "prefetch.L2 /32 B", "ld.L2::256B"};
    for (int mode = 0; mode <= 4; mode++)
        for (int gap : {0, 4, 8, 16, 32}) {
            if (mode == 0 && gap) continue;
            const int pb = mode == 1 ? prop.multiProcessorCount * 2 : rb;
            auto pf = [&](int i) {
                prefetch_kernel<<<pb, 256, 0, st>>>(buf + region * (size_t)(i % nreg), region, mode, sink);
                spin_kernel<<<1, 32, 0, st>>>(gap * 1000LL);
            };
            const double a = graph_us(st, iters, pf);
            const double b = graph_us(st, iters, [&](int i) { pf(i); rd(i); });
            printf("| %s | %d | %.2f | %.0f | %.2f |\n", names[mode], gap, b - a, region / (b - a) / 1e3, a);
        }
    // A stream: read region i while region i+1 is prefetched (the decode pattern), per mode
    printf("\n| prefetch of the next region during the read of this one | us per 16 MB | GB/s |\n|---|---:|---:|\n");
    for (int mode = 0; mode <= 4; mode++) {
        const int pb = mode == 1 ? prop.multiProcessorCount * 2 : rb;
        const double t = graph_us(st, iters, [&](int i) {
            prefetch_kernel<<<pb, 256, 0, st>>>(buf + region * (size_t)((i + 1) % nreg), region, mode, sink);
            rd(i);
        });
        printf("| %s | %.2f | %.0f |\n", names[mode], t, region / t / 1e3);
    }
    cudaFree(buf);
    cudaFree(sink);
    return 0;
}

// Each timed shape once more with its weights L2-resident (one buffer, R = 1): the kernel's floor
// when every weight byte is an L2 hit.
static void hot_floor(int ver, const int (*shapes)[2], int n_timed, double copy);

int main(int argc, char **argv) {
    lab_seed(0xDEADBEEFCAFEF00Dull);
    if (argc > 1 && strcmp(argv[1], "l2") == 0) {
        const double copy = kcuda_copy_bandwidth_gbs((size_t)1 << 30, 11);
        l2_study(copy);
        const int shapes[][2] = {{2560, 2560}, {3840, 2560}, {13824, 2560}, {2560, 6912},
                                 {3200, 3200}, {4800, 3200}, {3200, 10240}, {20480, 3200}};
        printf("\nWeights L2-resident (one buffer), int8 input, PDL:\n| version | N x K | us | GB/s |\n|---:|---|---:|---:|\n");
        for (int v : {4, 6}) hot_floor(v, shapes, 8, copy);
        return 0;
    }
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
    printf("| version | N x K | us | GB/s | %% copy |\n|---:|---|---:|---:|---:|\n");
    for (int ver = 1; ver <= 8; ver++) {
        if ((only && ver != only) || (fast && ver < 3)) continue;
        for (int si = 0; si < n_shapes; si++) {
            const int n = shapes[si][0], k = shapes[si][1];
            const size_t wb = (size_t)n * k / 4;
            std::vector<uint8_t> hw = lab_random_i2s(wb);
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
            if (launch(ver, d, d.w, n, k, st)) {
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
                const int L = R * ((100 + R - 1) / R);  // a whole number of rotations
                const double us = lab_graph_us(st, L, 13, 3, [&](int i) {
                    launch(ver, d, d.w + wb * (i % R), n, k, st);
                    return 0;
                });
                const double gbs = (wb + k + 4.0 * n) / (us * 1e-6) / 1e9;
                printf("| %d | %dx%d | %.2f | %.0f | %.0f%% |\n", ver, n, k, us, gbs, 100 * gbs / copy);
            }
            cudaFree(d.w), cudaFree(d.q), cudaFree(d.s), cudaFree(d.qsum), cudaFree(d.out);
        }
        printf("(v%d: all %d shapes checked exactly against w2a8_gemv_ref)\n", ver, n_shapes);
    }
    return 0;
}

static void hot_floor(int ver, const int (*shapes)[2], int n_timed, double copy) {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    for (int si = 0; si < n_timed; si++) {
        const int n = shapes[si][0], k = shapes[si][1];
        const size_t wb = (size_t)n * k / 4;
        std::vector<uint8_t> hw(wb);
        for (auto &b : hw) b = (uint8_t)(rnd() & 0x55);
        std::vector<int8_t> hq(k);
        int qs = 0;
        for (auto &v : hq) qs += (v = (int8_t)((int)(rnd() % 255) - 127));
        Dev d;
        d.qsum_h = qs;
        CK(cudaMalloc(&d.w, wb));
        CK(cudaMalloc(&d.q, k));
        CK(cudaMalloc(&d.s, 4));
        CK(cudaMalloc(&d.qsum, 4));
        CK(cudaMalloc(&d.out, n * 4));
        CK(cudaMemcpy(d.w, hw.data(), wb, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d.q, hq.data(), k, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d.qsum, &qs, 4, cudaMemcpyHostToDevice));
        const double us = graph_us(st, 100, [&](int) { launch(ver, d, d.w, n, k, st); });
        const double gbs = (wb + k + 4.0 * n) / (us * 1e-6) / 1e9;
        printf("| %d | %dx%d | %.2f | %.0f |\n", ver, n, k, us, gbs);
        cudaFree(d.w), cudaFree(d.q), cudaFree(d.s), cudaFree(d.qsum), cudaFree(d.out);
    }
    (void)copy;
    cudaStreamDestroy(st);
}
