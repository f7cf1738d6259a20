// Kernel benchmarks for `bitnet-chat bench`: copy bandwidth, W2A8 GEMV vs cuBLAS bf16 GEMV,
// the four GEMVs of one 2B layer, the f16 and the int8 lm_head. Method: weights in rotating buffers (> 256 MB in all, over
// 5x the 50 MB L2) so every launch reads them from HBM; L launches captured in one CUDA graph;
// 3 warm-up replays, then the median replay time / L.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <dlfcn.h>
#include <stdio.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/w2a8.h"

namespace {

const size_t ROT_BYTES = 256u << 20;

uint64_t g_rng = 0x9E3779B97F4A7C15ull;
uint32_t rnd() {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

__global__ void fill_bf16_kernel(__nv_bfloat16 *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        p[i] = __float2bfloat16((float)(h % 2001) / 1000.0f - 1.0f);
    }
}

struct Timer {
    cudaEvent_t a, b;
    Timer() {
        cudaEventCreate(&a);
        cudaEventCreate(&b);
    }
    ~Timer() {
        cudaEventDestroy(a);
        cudaEventDestroy(b);
    }
};

// Captures body(i) for i < L into a graph and returns the median microseconds per body.
template <typename F>
int time_graph(cudaStream_t st, int L, int reps, F body, double *us) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t ge = nullptr;
    KCUDA_TRY(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    int rc = 0;
    for (int i = 0; i < L && !rc; i++) rc = body(i);
    cudaError_t e = cudaStreamEndCapture(st, &g);
    if (rc) {
        if (g) cudaGraphDestroy(g);
        return rc;
    }
    if (e != cudaSuccess) return kcuda_fail(KCUDA_ERR_CUDA, "graph capture: %s", cudaGetErrorString(e));
    e = cudaGraphInstantiate(&ge, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) return kcuda_fail(KCUDA_ERR_CUDA, "graph instantiate: %s", cudaGetErrorString(e));
    Timer t;
    std::vector<float> ms;
    for (int r = 0; r < reps + 3; r++) {
        cudaEventRecord(t.a, st);
        cudaGraphLaunch(ge, st);
        cudaEventRecord(t.b, st);
        e = cudaEventSynchronize(t.b);
        if (e != cudaSuccess) {
            cudaGraphExecDestroy(ge);
            return kcuda_fail(KCUDA_ERR_CUDA, "graph replay: %s", cudaGetErrorString(e));
        }
        float m = 0;
        cudaEventElapsedTime(&m, t.a, t.b);
        if (r >= 3) ms.push_back(m);
    }
    cudaGraphExecDestroy(ge);
    std::sort(ms.begin(), ms.end());
    *us = ms[ms.size() / 2] * 1000.0 / L;
    return KCUDA_OK;
}

struct DevBuf {
    void *p = nullptr;
    ~DevBuf() {
        if (p) cudaFree(p);
    }
};

// Random I2_S matrix on the host (codes 0..2).
void random_i2s(std::vector<uint8_t> &h, int n, int k) {
    h.resize((size_t)n * k / 4);
    for (auto &b : h) {
        uint8_t v = 0;
        for (int j = 0; j < 4; j++) v |= (uint8_t)((rnd() % 3) << (2 * j));
        b = v;
    }
}

}  // namespace

extern "C" double kcuda_copy_bandwidth_gbs(size_t bytes, int reps) {
    DevBuf a, b;
    if (cudaMalloc(&a.p, bytes) != cudaSuccess || cudaMalloc(&b.p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return 0.0;
    }
    cudaMemset(a.p, 1, bytes);
    Timer t;
    std::vector<float> ms;
    for (int r = 0; r < reps + 2; r++) {
        cudaEventRecord(t.a);
        cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(t.b);
        cudaEventSynchronize(t.b);
        float m = 0;
        cudaEventElapsedTime(&m, t.a, t.b);
        if (r >= 2) ms.push_back(m);
    }
    std::sort(ms.begin(), ms.end());
    return 2.0 * (double)bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;
}

// cuBLAS is the benchmark's baseline only, so bitnet-chat does not link it (the program must
// start where libcublas is missing or cannot be mapped): the library is opened here, at bench
// time, and its absence only leaves the baseline column empty. The header gives the types.
namespace {
struct Cublas {
    void *lib;
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetWorkspace_v2) set_workspace;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                              const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
};

// Opens the cuBLAS of this toolkit's major version (or the unversioned name); false if absent.
bool cublas_open(Cublas *c) {
    char name[32];
    snprintf(name, sizeof name, "libcublas.so.%d", CUDART_VERSION / 1000);
    c->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!c->lib) c->lib = dlopen("libcublas.so", RTLD_NOW | RTLD_LOCAL);
    if (!c->lib) return false;
    c->create = (decltype(c->create))dlsym(c->lib, "cublasCreate_v2");
    c->destroy = (decltype(c->destroy))dlsym(c->lib, "cublasDestroy_v2");
    c->set_stream = (decltype(c->set_stream))dlsym(c->lib, "cublasSetStream_v2");
    c->set_workspace = (decltype(c->set_workspace))dlsym(c->lib, "cublasSetWorkspace_v2");
    c->gemm_ex = (decltype(c->gemm_ex))dlsym(c->lib, "cublasGemmEx");
    if (c->create && c->destroy && c->set_stream && c->set_workspace && c->gemm_ex) return true;
    dlclose(c->lib);
    c->lib = nullptr;
    return false;
}
}  // namespace

extern "C" int kcuda_bench_gemv(KcudaGemvBench *rows, int n_rows, int quick) {
    cudaStream_t st;
    KCUDA_TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cublasHandle_t cb = nullptr;
    DevBuf ws;
    Cublas cu = {};
    if (cublas_open(&cu) && cu.create(&cb) == CUBLAS_STATUS_SUCCESS) {
        cu.set_stream(cb, st);
        cudaMalloc(&ws.p, 32u << 20);
        cu.set_workspace(cb, ws.p, 32u << 20);
    } else {
        cb = nullptr;
    }
    int rc = 0;
    const int reps = quick ? 7 : 21;
    for (int si = 0; si < n_rows && !rc; si++) {
        KcudaGemvBench *b = &rows[si];
        const int n = b->n, k = b->k;
        if (k % 128) {
            rc = kcuda_fail(KCUDA_ERR_SHAPE, "bench: k %d not a multiple of 128", k);
            break;
        }
        const size_t wb = (size_t)n * k / 4;
        int R = (int)((ROT_BYTES + wb - 1) / wb);
        if (R < 2) R = 2;
        b->rot_w2a8 = R;
        b->w2a8_bytes = (double)wb + k * 4.0 + n * 4.0;
        std::vector<uint8_t> hw;
        random_i2s(hw, n, k);
        DevBuf dw, dx, dq, dout, dsq;
        KCUDA_TRY(cudaMalloc(&dw.p, wb * R));
        for (int r = 0; r < R; r++)
            KCUDA_TRY(cudaMemcpy((uint8_t *)dw.p + wb * r, hw.data(), wb, cudaMemcpyHostToDevice));
        // Activations: random floats; the check uses the same input quantized on the host.
        std::vector<float> hx(k);
        for (auto &v : hx) v = (float)((int)(rnd() % 20001) - 10000) / 1000.0f;
        std::vector<int8_t> hq(k);
        const float s = quant_act_ref(hx.data(), k, k, hq.data());
        int32_t hsum = 0;
        for (int i = 0; i < k; i++) hsum += hq[i];
        KCUDA_TRY(cudaMalloc(&dx.p, k * sizeof(float)));
        KCUDA_TRY(cudaMalloc(&dq.p, k));
        KCUDA_TRY(cudaMalloc(&dsq.p, 16));
        KCUDA_TRY(cudaMalloc(&dout.p, (size_t)n * 4));
        KCUDA_TRY(cudaMemcpy(dx.p, hx.data(), k * sizeof(float), cudaMemcpyHostToDevice));
        KCUDA_TRY(cudaMemcpy(dq.p, hq.data(), k, cudaMemcpyHostToDevice));
        KCUDA_TRY(cudaMemcpy(dsq.p, &s, 4, cudaMemcpyHostToDevice));
        KCUDA_TRY(cudaMemcpy((char *)dsq.p + 4, &hsum, 4, cudaMemcpyHostToDevice));

        KcudaTernary m = {};
        m.d_codes = (const uint8_t *)dw.p;
        m.n_out = n;
        m.k_pad = k;
        m.seg_end[0] = m.seg_end[1] = n;
        m.gamma[0] = m.gamma[1] = m.gamma[2] = 1.0f;
        // Exact check on sampled rows, through the fused prologue (quantization of x).
        KCUDA_TRY(cudaMemset(dout.p, 0xff, (size_t)n * 4));
        rc = kcuda_w2a8_gemv(&m, (const float *)dx.p, k, nullptr, 0.0f, nullptr, nullptr, nullptr,
                             KCUDA_EP_I32, dout.p, 0, st);
        if (rc) break;
        KCUDA_TRY(cudaStreamSynchronize(st));
        std::vector<int32_t> got(n);
        KCUDA_TRY(cudaMemcpy(got.data(), dout.p, (size_t)n * 4, cudaMemcpyDeviceToHost));
        int checked = 0;
        for (int t = 0; t < 256; t++) {
            const int r = t < 2 ? (t ? n - 1 : 0) : (int)(rnd() % (uint32_t)n);
            int32_t ref;
            w2a8_gemv_ref(hw.data() + (size_t)r * (k / 4), 1, k, hq.data(), &ref);
            if (ref != got[r]) {
                rc = kcuda_fail(KCUDA_ERR_CUDA, "bench check %dx%d: row %d got %d, reference %d", n, k, r, got[r], ref);
                break;
            }
            checked++;
        }
        if (rc) break;
        b->checked_rows = checked;
        const int L = std::max(100, R);
        for (int v = 0; v < 4 && !rc; v++) {
            const int pdl = v & 1, int8_in = v >> 1;
            double us = 0;
            rc = time_graph(st, L, reps, [&](int i) {
                KcudaTernary mi = m;
                mi.d_codes = (const uint8_t *)dw.p + wb * (i % R);
                if (int8_in)
                    return kcuda_w2a8_gemv(&mi, nullptr, 0, nullptr, 0.0f, (const int8_t *)dq.p, (const float *)dsq.p,
                                           (const int32_t *)((char *)dsq.p + 4), KCUDA_EP_F32, dout.p, pdl, st);
                return kcuda_w2a8_gemv(&mi, (const float *)dx.p, k, nullptr, 0.0f, nullptr, nullptr,
                                       nullptr, KCUDA_EP_F32, dout.p, pdl, st);
            }, &us);
            double *dst[4] = {&b->w2a8_us, &b->w2a8_pdl_us, &b->w2a8_q_us, &b->w2a8_q_pdl_us};
            *dst[v] = us;
        }
        if (rc) break;
        cudaFree(dw.p);
        dw.p = nullptr;
        // cuBLAS bf16 GEMV, same method.
        b->cublas_us = -1;
        const size_t bb = (size_t)n * k * 2;
        int Rb = (int)((ROT_BYTES + bb - 1) / bb);
        if (Rb < 2) Rb = 2;
        b->rot_bf16 = Rb;
        b->bf16_bytes = (double)bb + k * 2.0 + n * 2.0;
        DevBuf bw, bx, by;
        if (cb && cudaMalloc(&bw.p, bb * Rb) == cudaSuccess && cudaMalloc(&bx.p, k * 2) == cudaSuccess &&
            cudaMalloc(&by.p, n * 2) == cudaSuccess) {
            fill_bf16_kernel<<<1024, 256, 0, st>>>((__nv_bfloat16 *)bw.p, bb * Rb / 2, 1);
            fill_bf16_kernel<<<8, 256, 0, st>>>((__nv_bfloat16 *)bx.p, k, 2);
            KCUDA_TRY(cudaStreamSynchronize(st));
            const float alpha = 1.0f, beta = 0.0f;
            const int Lb = std::max(100, Rb);
            double us = 0;
            int r2 = time_graph(st, Lb, reps, [&](int i) {
                const void *W = (const char *)bw.p + bb * (i % Rb);
                cublasStatus_t cs = cu.gemm_ex(cb, CUBLAS_OP_T, CUBLAS_OP_N, n, 1, k, &alpha, W, CUDA_R_16BF, k,
                                                 bx.p, CUDA_R_16BF, k, &beta, by.p, CUDA_R_16BF, n,
                                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                return cs == CUBLAS_STATUS_SUCCESS ? 0 : kcuda_fail(KCUDA_ERR_CUDA, "cublasGemmEx failed (%d)", (int)cs);
            }, &us);
            if (!r2) b->cublas_us = us;
        } else {
            cudaGetLastError();
        }
    }
    if (cb) cu.destroy(cb);
    if (cu.lib) dlclose(cu.lib);
    cudaStreamDestroy(st);
    return rc;
}

// The four GEMVs of one 2B layer as decode runs them (f32 input with the norm prologue: QKV, O +
// residual, gate/up with act(g)*u, down + residual), layers in rotating buffers, in a graph:
// microseconds per layer without and with programmatic dependent launch (all triggers early).
extern "C" int kcuda_bench_layer(int dim, int ffn, int n_kv_dim, double *us, double *us_pdl) {
    cudaStream_t st;
    KCUDA_TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const int kd = i2s_round_up_k(dim), kf = i2s_round_up_k(ffn);
    const int nq = dim + 2 * n_kv_dim;
    const size_t b_qkv = (size_t)nq * kd / 4, b_o = (size_t)dim * kd / 4, b_gu = (size_t)2 * ffn * kd / 4,
                 b_dn = (size_t)dim * kf / 4;
    const size_t layer = b_qkv + b_o + b_gu + b_dn;
    int R = (int)((ROT_BYTES + layer - 1) / layer);
    DevBuf w, x, att, gu, y;
    int rc = 0;
    if (cudaMalloc(&w.p, layer * R) != cudaSuccess) {
        cudaStreamDestroy(st);
        return kcuda_fail(KCUDA_ERR_CUDA, "bench layer: out of device memory");
    }
    std::vector<uint8_t> h;
    random_i2s(h, 1, (int)(layer * 4));
    for (int r = 0; r < R; r++) KCUDA_TRY(cudaMemcpy((uint8_t *)w.p + layer * r, h.data(), layer, cudaMemcpyHostToDevice));
    KCUDA_TRY(cudaMalloc(&x.p, (size_t)kf * 4));
    KCUDA_TRY(cudaMalloc(&att.p, (size_t)nq * 4));
    KCUDA_TRY(cudaMalloc(&gu.p, (size_t)kf * 4));
    KCUDA_TRY(cudaMalloc(&y.p, (size_t)kd * 4));
    std::vector<float> hx(kf, 0.0f);
    for (int i = 0; i < kf; i++) hx[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
    KCUDA_TRY(cudaMemcpy(x.p, hx.data(), (size_t)kf * 4, cudaMemcpyHostToDevice));
    KCUDA_TRY(cudaMemcpy(gu.p, hx.data(), (size_t)kf * 4, cudaMemcpyHostToDevice));
    KCUDA_TRY(cudaMemcpy(att.p, hx.data(), (size_t)nq * 4, cudaMemcpyHostToDevice));
    KCUDA_TRY(cudaMemcpy(y.p, hx.data(), (size_t)kd * 4, cudaMemcpyHostToDevice));
    const float *nw = (const float *)x.p;  // any positive-ish weights will do for timing
    for (int pdl = 0; pdl < 2 && !rc; pdl++) {
        double t = 0;
        rc = time_graph(st, 3 * R, 11, [&](int i) {
            const uint8_t *base = (const uint8_t *)w.p + layer * (i % R);
            KcudaTernary m = {};
            m.gamma[0] = m.gamma[1] = m.gamma[2] = 0.01f;
            m.d_codes = base;
            m.n_out = nq;
            m.k_pad = kd;
            m.seg_end[0] = dim;
            m.seg_end[1] = dim + n_kv_dim;
            int r = kcuda_w2a8_gemv(&m, (const float *)y.p, dim, nw, 1e-5f, nullptr, nullptr, nullptr, KCUDA_EP_F32, att.p, pdl, st);
            if (r) return r;
            m.d_codes = base + b_qkv;
            m.n_out = dim;
            m.seg_end[0] = m.seg_end[1] = dim;
            r = kcuda_w2a8_gemv(&m, (const float *)att.p, dim, nw, 1e-5f, nullptr, nullptr, nullptr, KCUDA_EP_RESID, y.p, pdl, st);
            if (r) return r;
            m.d_codes = base + b_qkv + b_o;
            m.n_out = 2 * ffn;
            m.glu = 1;
            r = kcuda_w2a8_gemv(&m, (const float *)y.p, dim, nw, 1e-5f, nullptr, nullptr, nullptr, KCUDA_EP_GLU, gu.p, pdl, st);
            if (r) return r;
            m.d_codes = base + b_qkv + b_o + b_gu;
            m.n_out = dim;
            m.k_pad = kf;
            m.glu = 0;
            return kcuda_w2a8_gemv(&m, (const float *)gu.p, ffn, nw, 1e-5f, nullptr, nullptr, nullptr, KCUDA_EP_RESID, y.p, pdl, st);
        }, &t);
        if (pdl) *us_pdl = t;
        else *us = t;
    }
    cudaStreamDestroy(st);
    return rc;
}

// ---- benchmark of the two lm_heads (bitnet-chat bench) -----------------------------------------

namespace {
__global__ void fill_f16_kernel(__half *w, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        w[i] = __float2half(((float)(h & 0xffff) / 65536.0f - 0.5f) * 0.1f);
    }
}
}  // namespace

// Median time per launch (norm + GEMV + argmax, no PDL) of the f16 and the int8 lm_head at
// n x k, random weights; the matrices (n*k*3 bytes) are far larger than L2, so each launch
// streams its weights from HBM.
extern "C" int kcuda_bench_lm_head(int n, int k, int reps, double *us_f16, double *us_i8, int *same_argmax) {
    if (n <= 0 || k <= 0 || k % 16 || reps < 1 || reps > 101)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_bench_lm_head: bad shape %d x %d or reps %d", n, k, reps);
    __half *w = NULL;
    int8_t *q = NULL;
    float *s = NULL, *x = NULL, *nw = NULL, *logits = NULL;
    int *best = NULL, *am = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    int rc = KCUDA_OK;
    float ms[2][101];
    const size_t nk = (size_t)n * k;
    const int scr = kcuda_lm_head_scratch(n);
    if (cudaMalloc(&w, nk * 2) != cudaSuccess || cudaMalloc(&q, nk) != cudaSuccess ||
        cudaMalloc(&s, (size_t)n * 4) != cudaSuccess || cudaMalloc(&x, (size_t)k * 8) != cudaSuccess ||
        cudaMalloc(&logits, (size_t)n * 4) != cudaSuccess || cudaMalloc(&best, (size_t)scr * 4) != cudaSuccess ||
        cudaMalloc(&am, 8) != cudaSuccess || cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        rc = kcuda_fail(KCUDA_ERR_CUDA, "kcuda_bench_lm_head: out of device memory");
        goto done;
    }
    nw = x + k;
    fill_f16_kernel<<<1024, 256>>>(w, nk, 12345u);
    {
        // x and the norm weights: simple finite values
        float *h = (float *)malloc((size_t)k * 8);
        if (!h) {
            rc = kcuda_fail(KCUDA_ERR_CUDA, "kcuda_bench_lm_head: out of memory");
            goto done;
        }
        for (int i = 0; i < k; i++) h[i] = (float)((i * 37) % 101) / 50.0f - 1.0f, h[k + i] = 1.0f + (float)(i % 7) / 10.0f;
        cudaMemcpy(x, h, (size_t)k * 8, cudaMemcpyHostToDevice);
        free(h);
    }
    if ((rc = kcuda_quant_rows_i8(KCUDA_F16, w, n, k, q, s, NULL))) goto done;
    for (int v = 0; v < 2 && !rc; v++) {
        int am_v[2];
        for (int r = -2; r < reps && !rc; r++) {  // two warm-up launches
            cudaEventRecord(e0, NULL);
            rc = v == 0 ? kcuda_lm_head(KCUDA_F16, w, n, k, x, nw, 1e-5f, logits, best, am, 0, NULL)
                        : kcuda_lm_head_i8(q, s, n, k, x, nw, 1e-5f, logits, best, am, 0, NULL);
            cudaEventRecord(e1, NULL);
            if (cudaEventSynchronize(e1) != cudaSuccess) rc = kcuda_fail(KCUDA_ERR_CUDA, "kcuda_bench_lm_head: launch failed");
            if (r >= 0) cudaEventElapsedTime(&ms[v][r], e0, e1);
        }
        cudaMemcpy(&am_v[0], am, 4, cudaMemcpyDeviceToHost);
        if (v == 0) *same_argmax = am_v[0];
        else *same_argmax = *same_argmax == am_v[0];
    }
    if (!rc) {
        for (int v = 0; v < 2; v++)  // insertion sort, then the median
            for (int i = 1; i < reps; i++)
                for (int j = i; j > 0 && ms[v][j] < ms[v][j - 1]; j--) {
                    const float t = ms[v][j];
                    ms[v][j] = ms[v][j - 1];
                    ms[v][j - 1] = t;
                }
        *us_f16 = ms[0][reps / 2] * 1e3;
        *us_i8 = ms[1][reps / 2] * 1e3;
    }
done:
    cudaFree(w), cudaFree(q), cudaFree(s), cudaFree(x), cudaFree(logits), cudaFree(best), cudaFree(am);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return rc;
}
