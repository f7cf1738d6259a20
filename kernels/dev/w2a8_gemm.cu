// Kernel lab: the prefill path at T tokens (default 512) on the four matrices of one 2B layer:
// W2A8 GEMM versions (1: 32-bit fragment loads, 2: ldmatrix, 3: + 4-stage cp.async), checked exactly against
// w2a8_gemv_ref on sampled tokens before timing; also the per-row norm+quant kernel and the
// prefill attention (RoPE + KV write + causal attention). Times: median of 20 graph replays.
//
// Build: built by CMake as dev_w2a8_gemm. Run: ./dev_w2a8_gemm [T]
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <functional>
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

static uint64_t rng = 0x0123456789ABCDEFull;
static uint32_t rnd() {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static double time_us(cudaStream_t st, int L, const std::function<int()> &body) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < L; i++)
        if (body()) {
            fprintf(stderr, "launch failed: %s\n", kcuda_last_error());
            exit(1);
        }
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> ms;
    for (int r = 0; r < 23; r++) {
        CK(cudaEventRecord(a, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float m;
        CK(cudaEventElapsedTime(&m, a, b));
        if (r >= 3) ms.push_back(m);
    }
    std::sort(ms.begin(), ms.end());
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    return ms[ms.size() / 2] * 1000.0 / L;
}

int main(int argc, char **argv) {
    const int T = argc > 1 ? atoi(argv[1]) : 512;
    const int shapes[4][3] = {{3840, 2560, 0}, {2560, 2560, 0}, {13824, 2560, 1}, {2560, 6912, 0}};
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    printf("prefill lab, T = %d tokens\n| op | version | shape | us | TOPS |\n|---|---:|---|---:|---:|\n", T);
    double layer_best = 0;
    for (int si = 0; si < 4; si++) {
        const int n = shapes[si][0], k = shapes[si][1];
        const size_t wb = (size_t)n * k / 4;
        std::vector<uint8_t> hw(wb);
        for (auto &b : hw) {
            uint8_t v = 0;
            for (int j = 0; j < 4; j++) v |= (uint8_t)((rnd() % 3) << (2 * j));
            b = v;
        }
        std::vector<int8_t> hq((size_t)T * k);
        std::vector<float> hs(T, 1.0f);
        std::vector<int32_t> hsum(T, 0);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < k; i++) hsum[t] += (hq[(size_t)t * k + i] = (int8_t)((int)(rnd() % 255) - 127));
        uint8_t *dw;
        int8_t *dq;
        float *ds;
        int32_t *dsum, *dout;
        CK(cudaMalloc(&dw, wb));
        CK(cudaMalloc(&dq, (size_t)T * k));
        CK(cudaMalloc(&ds, T * 4));
        CK(cudaMalloc(&dsum, T * 4));
        CK(cudaMalloc(&dout, (size_t)T * n * 4));
        CK(cudaMemcpy(dw, hw.data(), wb, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dq, hq.data(), (size_t)T * k, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(ds, hs.data(), T * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dsum, hsum.data(), T * 4, cudaMemcpyHostToDevice));
        KcudaTernary m = {};
        m.d_codes = dw;
        m.n_out = n;
        m.k_pad = k;
        m.seg_end[0] = m.seg_end[1] = n;
        m.gamma[0] = m.gamma[1] = m.gamma[2] = 1.0f;
        double best = 1e30;
        for (int ver = 1; ver <= 3; ver++) {
            kcuda_set_gemm_version(ver);
            CK(cudaMemset(dout, 0x7f, (size_t)T * n * 4));
            if (kcuda_w2a8_gemm(&m, dq, ds, dsum, T, KCUDA_EP_I32, dout, n, st)) {
                fprintf(stderr, "gemm failed: %s\n", kcuda_last_error());
                return 1;
            }
            CK(cudaStreamSynchronize(st));
            std::vector<int32_t> got((size_t)T * n), ref(n);
            CK(cudaMemcpy(got.data(), dout, (size_t)T * n * 4, cudaMemcpyDeviceToHost));
            for (int c = 0; c < 4; c++) {
                const int t = c == 0 ? 0 : c == 1 ? T - 1 : (int)(rnd() % T);
                w2a8_gemv_ref(hw.data(), n, k, hq.data() + (size_t)t * k, ref.data());
                for (int r = 0; r < n; r++)
                    if (ref[r] != got[(size_t)t * n + r]) {
                        fprintf(stderr, "v%d %dx%d token %d row %d: %d vs reference %d FAILED\n", ver, n, k, t, r, got[(size_t)t * n + r], ref[r]);
                        return 1;
                    }
            }
            const double us = time_us(st, 20, [&] { return kcuda_w2a8_gemm(&m, dq, ds, dsum, T, KCUDA_EP_I32, dout, n, st); });
            best = std::min(best, us);
            printf("| gemm | %d | %dx%d | %.1f | %.0f |\n", ver, n, k, us, 2.0 * T * n * k / (us * 1e-6) / 1e12);
        }
        layer_best += best;
        cudaFree(dw), cudaFree(dq), cudaFree(ds), cudaFree(dsum), cudaFree(dout);
    }
    kcuda_set_gemm_version(3);
    printf("four GEMMs of one layer (best versions): %.1f us; x30 layers = %.2f ms\n", layer_best, layer_best * 30 / 1000);
    // norm + quant rows and attention at 2B shapes
    const int dim = 2560, nh = 20, nkv = 5, hd = 128, ctx = 1024, qkv = (nh + 2 * nkv) * hd;
    float *dx, *dqkv, *datt, *drope, *dsc;
    int8_t *dq8;
    int32_t *dqs;
    uint16_t *dk, *dv;
    CK(cudaMalloc(&dx, (size_t)T * 6912 * 4));
    CK(cudaMalloc(&dq8, (size_t)T * 6912));
    CK(cudaMalloc(&dsc, T * 4));
    CK(cudaMalloc(&dqs, T * 4));
    CK(cudaMalloc(&dqkv, (size_t)T * qkv * 4));
    CK(cudaMalloc(&datt, (size_t)T * dim * 4));
    CK(cudaMalloc(&drope, (size_t)ctx * hd * 4));
    CK(cudaMalloc(&dk, (size_t)nkv * ctx * hd * 2));
    CK(cudaMalloc(&dv, (size_t)nkv * ctx * hd * 2));
    std::vector<float> hx((size_t)T * qkv);
    for (auto &v : hx) v = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
    CK(cudaMemcpy(dx, hx.data(), (size_t)T * dim * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dqkv, hx.data(), (size_t)T * qkv * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(drope, hx.data(), (size_t)ctx * hd * 4, cudaMemcpyHostToDevice));
    double us = time_us(st, 20, [&] { return kcuda_rmsnorm_quant(dx, T, dim, dim, dim, dx, 1e-5f, dq8, dsc, dqs, 0, st); });
    printf("| rmsnorm_quant rows | - | %dx%d | %.1f | - |\n", T, dim, us);
    KcudaAttnShape a = {nh, nkv, hd, ctx, 0, drope};
    us = time_us(st, 5, [&] { return kcuda_attn_prefill(&a, dqkv, qkv, T, 0, dk, dv, datt, st); });
    printf("| attention prefill | - | T=%d | %.1f | %.1f |\n", T, us, 4.0 * nh * hd * (double)T * T / 2 / (us * 1e-6) / 1e12);
    return 0;
}
