// Kernel lab: prefill attention. The product's version 4 (kernels/cuda/attention_prefill.cuh:
// K/V kernel, then q roped on load and the keys split over a cluster of S blocks) at every split
// S = 1, 2, 4, 8 and at the split the product picks, beside versions 2 / 3 with their RoPE
// kernel (kernels/dev/attention_prefill_v2.cuh, the product until 2026-12-06, chosen by T as
// it chose them), in the same run.
//
// Checks (before any timing): every output against a double-precision host reference over the
// f16 cache the device wrote (q roped on the host with the kernels' formulas), relative to the
// largest |output|, bar 1e-5 (fp32 sums of ~T terms reach a few 1e-6); the cache rows of the K/V
// kernel: V exact, K within one f16 step of the host's rotation (an fma contraction may differ),
// K and V the same as version 2's RoPE kernel wrote. Shapes: ragged T, pos0 0 and not a multiple
// of 16, GQA 1-8, head_dim 16-128 (multiples of 16: what the tiled kernels take; 100 and 256 go
// to attention_wide.cu), both RoPE styles, cache rows before pos0 random.
// Times: median of 20 graph replays of 5 launches (K/V or RoPE kernel + attention), 2B shapes
// (20/5 heads of 128): T = 512 from 0 and at 512, 1024, 1536 (the chunks of a 2000-token
// prompt), a tail of 18 at 512, T = 64, 128, 256, 200 at 1800; Llama3-8B's 32/8 at T = 512.
//
// Build: CMake target dev_attn_prefill. Run: ./dev_attn_prefill [check|time] (default both).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <thread>
#include <vector>

#include "kernels/cuda/attention_prefill.cuh"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/dev/attention_prefill_v2.cuh"
#include "kernels/dev/lab.cuh"

static void parallel_for(int n, const std::function<void(int)> &f) {
    const int nt = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> th;
    for (int w = 0; w < nt; w++)
        th.emplace_back([&, w] {
            for (int i = w; i < n; i += nt) f(i);
        });
    for (auto &t : th) t.join();
}

static float h2f(uint16_t h) {
    __half x;
    memcpy(&x, &h, 2);
    return __half2float(x);
}
static uint16_t f2h(float f) {
    const __half x = __float2half_rn(f);
    uint16_t h;
    memcpy(&h, &x, 2);
    return h;
}

struct Case {
    int nh, nkv, hd, T, pos0, style;
};

// One shape on the device: inputs, the cache rows before pos0, buffers, the host reference.
struct Bench {
    Case c;
    int ctx, qkv, q_span, n_cols;
    std::vector<float> rope, hx;
    std::vector<uint16_t> kc0, vc0;  // cache with rows < pos0 filled, the rest poison
    float *dqkv, *dqkv0, *datt, *drope;
    uint16_t *dk, *dv, *dk0, *dv0;
    std::vector<double> ref;
    double amax = 0;

    explicit Bench(const Case &cs) : c(cs) {
        ctx = c.pos0 + c.T + 5;
        qkv = (c.nh + 2 * c.nkv) * c.hd;
        const int rep = c.nh / c.nkv, hpb = rep % 4 == 0 ? 4 : rep % 2 == 0 ? 2 : 1;
        q_span = 16 * (4 / hpb);
        n_cols = c.nh / hpb;
        const int half = c.hd / 2;
        rope.resize((size_t)ctx * c.hd);
        for (int i = 0; i < half; i++) {
            const float inv_freq = 1.0f / powf(500000.0f, (float)(2 * i) / (float)c.hd);
            for (int p = 0; p < ctx; p++) {
                rope[((size_t)p * half + i) * 2] = cosf((float)p * inv_freq);
                rope[((size_t)p * half + i) * 2 + 1] = sinf((float)p * inv_freq);
            }
        }
        hx.resize((size_t)c.T * qkv);
        for (auto &v : hx) v = (float)((int)(rnd() % 2001) - 1000) / 400.0f;  // |x| <= 2.5: peaked rows too
        const size_t cn = (size_t)c.nkv * ctx * c.hd;
        kc0.assign(cn, 0xffff), vc0.assign(cn, 0xffff);  // NaN past pos0
        for (int g = 0; g < c.nkv; g++)
            for (int p = 0; p < c.pos0; p++)
                for (int i = 0; i < c.hd; i++) {
                    kc0[((size_t)g * ctx + p) * c.hd + i] = f2h((float)((int)(rnd() % 2001) - 1000) / 400.0f);
                    vc0[((size_t)g * ctx + p) * c.hd + i] = f2h((float)((int)(rnd() % 2001) - 1000) / 400.0f);
                }
        CK(cudaMalloc(&dqkv, hx.size() * 4));
        CK(cudaMalloc(&dqkv0, hx.size() * 4));
        CK(cudaMalloc(&datt, (size_t)c.T * c.nh * c.hd * 4));
        CK(cudaMalloc(&drope, rope.size() * 4));
        CK(cudaMalloc(&dk, cn * 2));
        CK(cudaMalloc(&dv, cn * 2));
        CK(cudaMalloc(&dk0, cn * 2));
        CK(cudaMalloc(&dv0, cn * 2));
        CK(cudaMemcpy(dqkv0, hx.data(), hx.size() * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(drope, rope.data(), rope.size() * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dk0, kc0.data(), cn * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dv0, vc0.data(), cn * 2, cudaMemcpyHostToDevice));
    }
    ~Bench() {
        cudaFree(dqkv), cudaFree(dqkv0), cudaFree(datt), cudaFree(drope);
        cudaFree(dk), cudaFree(dv), cudaFree(dk0), cudaFree(dv0);
    }
    KcudaAttnShape shape() const { return {c.nh, c.nkv, c.hd, ctx, c.style, drope}; }
    void reset() {
        const size_t cn = (size_t)c.nkv * ctx * c.hd;
        CK(cudaMemcpy(dqkv, dqkv0, hx.size() * 4, cudaMemcpyDeviceToDevice));
        CK(cudaMemcpy(dk, dk0, cn * 2, cudaMemcpyDeviceToDevice));
        CK(cudaMemcpy(dv, dv0, cn * 2, cudaMemcpyDeviceToDevice));
        CK(cudaMemset(datt, 0xff, (size_t)c.T * c.nh * c.hd * 4));  // NaN poison
    }
    // host rotation of element pair i of a head at position pos (the kernels' formulas)
    void rope_host(float *v, int pos) const {
        const int half = c.hd / 2;
        for (int i = 0; i < half; i++) {
            const int i0 = c.style ? 2 * i : i, i1 = c.style ? 2 * i + 1 : i + half;
            const float cs = rope[((size_t)pos * half + i) * 2], sn = rope[((size_t)pos * half + i) * 2 + 1];
            const float a = v[i0], b = v[i1];
            v[i0] = a * cs - b * sn;
            v[i1] = b * cs + a * sn;
        }
    }
    // Checks the cache the device wrote for rows pos0..pos0+T-1 (and rows before untouched);
    // returns the number of failures. Sets the reference from that cache.
    int check_cache_and_make_ref(const char *what) {
        const size_t cn = (size_t)c.nkv * ctx * c.hd;
        std::vector<uint16_t> hk(cn), hv(cn);
        CK(cudaMemcpy(hk.data(), dk, cn * 2, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hv.data(), dv, cn * 2, cudaMemcpyDeviceToHost));
        int far = 0, steps = 0;
        std::vector<float> v(c.hd);
        for (int t = 0; t < c.T; t++)
            for (int g = 0; g < c.nkv; g++) {
                const float *src = hx.data() + (size_t)t * qkv + (size_t)(c.nh + g) * c.hd;
                memcpy(v.data(), src, c.hd * 4);
                rope_host(v.data(), c.pos0 + t);
                for (int i = 0; i < c.hd; i++) {
                    const size_t at = ((size_t)g * ctx + c.pos0 + t) * c.hd + i;
                    const float kd = h2f(hk[at]), kh = h2f(f2h(v[i]));
                    const float step = fmaxf(fabsf(kh), 1e-3f) / 1024.0f * 1.01f;
                    far += !(fabsf(kd - kh) <= step);
                    steps += kd != kh;
                    far += hv[at] != f2h(src[(size_t)c.nkv * c.hd + i]);
                }
            }
        int before = 0;
        for (int g = 0; g < c.nkv; g++)
            for (size_t i = 0; i < (size_t)c.pos0 * c.hd; i++)
                before += hk[(size_t)g * ctx * c.hd + i] != kc0[(size_t)g * ctx * c.hd + i] ||
                          hv[(size_t)g * ctx * c.hd + i] != vc0[(size_t)g * ctx * c.hd + i];
        if (far || before)
            printf("| %s cache | %d/%d hd %d T %d pos0 %d | %d K one f16 step off, %d further off, %d rows before pos0 changed FAILED |\n",
                   what, c.nh, c.nkv, c.hd, c.T, c.pos0, steps, far, before);
        // reference over that cache
        std::vector<float> Q((size_t)c.T * c.nh * c.hd);
        for (int t = 0; t < c.T; t++)
            for (int h = 0; h < c.nh; h++) {
                float *q = &Q[((size_t)t * c.nh + h) * c.hd];
                memcpy(q, hx.data() + (size_t)t * qkv + (size_t)h * c.hd, c.hd * 4);
                rope_host(q, c.pos0 + t);
            }
        ref.assign((size_t)c.T * c.nh * c.hd, 0.0);
        parallel_for(c.T * c.nh, [&](int th) {
            const int t = th / c.nh, h = th % c.nh, g = h / (c.nh / c.nkv), n = c.pos0 + t + 1;
            std::vector<double> sc(n);
            double mx = -1e300, sum = 0;
            const float *q = &Q[((size_t)t * c.nh + h) * c.hd];
            for (int j = 0; j < n; j++) {
                double d = 0;
                for (int i = 0; i < c.hd; i++) d += (double)q[i] * h2f(hk[((size_t)g * ctx + j) * c.hd + i]);
                sc[j] = d / sqrt((double)c.hd);
                mx = std::max(mx, sc[j]);
            }
            for (int j = 0; j < n; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (int i = 0; i < c.hd; i++) {
                double o = 0;
                for (int j = 0; j < n; j++) o += sc[j] * h2f(hv[((size_t)g * ctx + j) * c.hd + i]);
                ref[((size_t)t * c.nh + h) * c.hd + i] = o / sum;
            }
        });
        amax = 0;
        for (double x : ref) amax = std::max(amax, fabs(x));
        return far + before;
    }
    double max_err() {
        std::vector<float> got((size_t)c.T * c.nh * c.hd);
        CK(cudaMemcpy(got.data(), datt, got.size() * 4, cudaMemcpyDeviceToHost));
        double e = 0;
        for (size_t i = 0; i < got.size(); i++) {
            const double d = fabs((double)got[i] - ref[i]);
            if (!(d <= e)) e = d;  // NaN sticks
        }
        return e;
    }
    // version 2/3 with their RoPE kernel, chosen by T as the product chose them
    int run_old(cudaStream_t st) {
        KcudaAttnShape a = shape();
        int rc = kcuda_launch(rope_kv_prefill_kernel, dim3((unsigned)c.T), dim3(256), 0, st, 0, dqkv, qkv, c.nh, c.nkv,
                              c.hd, ctx, c.style, (const float *)drope, c.pos0, (__half *)dk, (__half *)dv);
        if (rc) return rc;
        const bool split = c.T >= 192;
        if (c.hd <= 64)
            return split ? attn2_launch<64, 2>(&a, dqkv, qkv, c.T, c.pos0, dk, dv, datt, 0, st)
                         : attn2_launch<64, 1>(&a, dqkv, qkv, c.T, c.pos0, dk, dv, datt, 0, st);
        return split ? attn2_launch<128, 2>(&a, dqkv, qkv, c.T, c.pos0, dk, dv, datt, 0, st)
                     : attn2_launch<128, 1>(&a, dqkv, qkv, c.T, c.pos0, dk, dv, datt, 0, st);
    }
    // version 4 at split S (0: the product's pick, through kcuda_attn_prefill)
    int run_new(cudaStream_t st, int S) {
        KcudaAttnShape a = shape();
        if (S == 0) return kcuda_attn_prefill(&a, dqkv, qkv, c.T, c.pos0, dk, dv, datt, 0, st);
        int rc = kv_prefill_launch(&a, dqkv, qkv, c.T, c.pos0, dk, dv, 0, st);
        if (rc) return rc;
        if (c.hd <= 64) return attn4_launch<64>(&a, dqkv, qkv, c.T, c.pos0, dk, dv, datt, S, 0, st);
        if (c.hd <= 96) return attn4_launch<96>(&a, dqkv, qkv, c.T, c.pos0, dk, dv, datt, S, 0, st);
        return attn4_launch<128>(&a, dqkv, qkv, c.T, c.pos0, dk, dv, datt, S, 0, st);
    }
    int picked_split() const {
        int dev = 0, cc = 0, per_sm = 0;
        CK(cudaGetDevice(&dev));
        CK(cudaDeviceGetAttribute(&cc, cudaDevAttrComputeCapabilityMajor, dev));
        const int HD = c.hd <= 64 ? 64 : c.hd <= 96 ? 96 : 128;
        const size_t smem = (size_t)2 * 2 * CHUNK * (HD + 8) * 2;
        if (HD == 64) CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attn_prefill_kernel4<64>, ATT_THREADS, smem));
        else if (HD == 96) CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attn_prefill_kernel4<96>, ATT_THREADS, smem));
        else CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attn_prefill_kernel4<128>, ATT_THREADS, smem));
        return attn4_pick_splits(c.T, c.pos0, q_span, n_cols, per_sm, kcuda_sm_count(), cc);
    }
};

static const double BAR = 1e-5;  // of max |out|

// Every version and split at one shape; returns failures.
static int check_case(cudaStream_t st, const Case &cs, bool quiet) {
    Bench b(cs);
    int bad = 0;
    // the old kernels' cache first (the reference uses the new one: both must agree)
    b.reset();
    if (b.run_old(st)) {
        printf("| v2/3 | launch failed: %s FAILED |\n", kcuda_last_error());
        return 1;
    }
    CK(cudaStreamSynchronize(st));
    const size_t cn = (size_t)cs.nkv * b.ctx * cs.hd;
    std::vector<uint16_t> ok(cn), ov(cn), nk(cn), nv(cn);
    CK(cudaMemcpy(ok.data(), b.dk, cn * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(ov.data(), b.dv, cn * 2, cudaMemcpyDeviceToHost));
    bad += b.check_cache_and_make_ref("v2 RoPE");
    const double e_old = b.max_err();
    const int splits[] = {0, 1, 2, 4, 8};
    double e_new[5];
    for (int k = 0; k < 5; k++) {
        b.reset();
        if (b.run_new(st, splits[k])) {
            printf("| v4 S=%d | %d/%d hd %d T %d pos0 %d | launch failed: %s FAILED |\n", splits[k], cs.nh, cs.nkv, cs.hd,
                   cs.T, cs.pos0, kcuda_last_error());
            bad++;
            continue;
        }
        CK(cudaStreamSynchronize(st));
        if (k == 0) {
            CK(cudaMemcpy(nk.data(), b.dk, cn * 2, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(nv.data(), b.dv, cn * 2, cudaMemcpyDeviceToHost));
            int diff = 0;
            for (size_t i = 0; i < cn; i++) diff += ok[i] != nk[i] || ov[i] != nv[i];
            bad += b.check_cache_and_make_ref("v4 K/V");
            if (diff) printf("| v4 K/V cache | %d/%d hd %d T %d pos0 %d | %d elements differ from v2's (noted) |\n", cs.nh,
                             cs.nkv, cs.hd, cs.T, cs.pos0, diff);
        }
        e_new[k] = b.max_err();
        if (!(e_new[k] <= BAR * b.amax)) bad++;
    }
    const bool old_ok = e_old <= BAR * b.amax;
    if (!old_ok) bad++;
    if (!quiet || bad)
        printf("| check | %d/%d hd %d style %d T %d pos0 %d (pick S=%d) | rel err v2/3 %.2g, v4 pick %.2g, S=1 %.2g, 2 %.2g, 4 %.2g, 8 %.2g | %s |\n",
               cs.nh, cs.nkv, cs.hd, cs.style, cs.T, cs.pos0, b.picked_split(), e_old / b.amax, e_new[0] / b.amax,
               e_new[1] / b.amax, e_new[2] / b.amax, e_new[3] / b.amax, e_new[4] / b.amax, bad ? "FAILED" : "ok");
    return bad;
}

static double time_us(cudaStream_t st, const std::function<int()> &body) {
    return lab_graph_us(st, 5, 23, 3, [&](int) {
        const int rc = body();
        if (rc) fprintf(stderr, "launch failed: %s\n", kcuda_last_error());
        return rc;
    });
}

static int time_case(cudaStream_t st, const Case &cs) {
    if (check_case(st, cs, false)) return 1;  // never time what is wrong
    Bench b(cs);
    b.reset();
    const double old_us = time_us(st, [&] { return b.run_old(st); });
    const double kv_old = time_us(st, [&] {
        return kcuda_launch(rope_kv_prefill_kernel, dim3((unsigned)cs.T), dim3(256), 0, st, 0, b.dqkv, b.qkv, cs.nh, cs.nkv,
                            cs.hd, b.ctx, cs.style, (const float *)b.drope, cs.pos0, (__half *)b.dk, (__half *)b.dv);
    });
    KcudaAttnShape a = b.shape();
    const double kv_new = time_us(st, [&] { return kv_prefill_launch(&a, b.dqkv, b.qkv, cs.T, cs.pos0, b.dk, b.dv, 0, st); });
    const int splits[] = {0, 1, 2, 4, 8};
    double us[5];
    for (int k = 0; k < 5; k++) us[k] = time_us(st, [&] { return b.run_new(st, splits[k]); });
    int best = 1;
    for (int k = 2; k < 5; k++)
        if (us[k] < us[best]) best = k;
    const double keys = (double)cs.T * cs.pos0 + (double)cs.T * (cs.T + 1) / 2;
    const double flop = 4.0 * cs.nh * cs.hd * keys;  // QK and PV, one pass (the hi/lo split doubles the mma)
    printf("| time | %d/%d hd %d T %d pos0 %d | old (RoPE + v%d) %.1f us (RoPE alone %.1f) | new pick S=%d %.1f us (K/V alone %.1f) | S=1 %.1f, 2 %.1f, 4 %.1f, 8 %.1f (best S=%d) | %.2fx, %.0f TFLOP/s |\n",
           cs.nh, cs.nkv, cs.hd, cs.T, cs.pos0, cs.T >= 192 ? 3 : 2, old_us, kv_old, b.picked_split(), us[0], kv_new, us[1],
           us[2], us[3], us[4], splits[best], old_us / us[0], flop / (us[0] * 1e-6) / 1e12);
    return 0;
}

int main(int argc, char **argv) {
    const bool do_check = argc < 2 || strcmp(argv[1], "time") != 0;
    const bool do_time = argc < 2 || strcmp(argv[1], "check") != 0;
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    lab_seed(12);
    int bad = 0, n = 0;
    if (do_check) {
        // ragged T, pos0 0 / odd / past a split, GQA 1-8, head_dim 16-128, both styles
        const Case cases[] = {
            {20, 5, 128, 1, 0, 0},    {20, 5, 128, 17, 0, 0},   {20, 5, 128, 77, 3, 1},   {20, 5, 128, 200, 0, 0},
            {20, 5, 128, 300, 45, 0}, {20, 5, 128, 18, 512, 0}, {20, 5, 128, 130, 1000, 1}, {8, 8, 64, 150, 0, 1},
            {8, 4, 64, 99, 29, 0},    {9, 3, 96, 121, 0, 0},    {12, 3, 96, 70, 300, 1},  {16, 4, 128, 260, 7, 0},
            {10, 2, 80, 90, 66, 1},   {12, 2, 112, 65, 0, 0},   {14, 2, 32, 140, 200, 1}, {16, 2, 16, 33, 900, 0},
            {8, 1, 128, 100, 0, 0},   {32, 8, 128, 129, 64, 0}, {6, 6, 48, 50, 1, 1},     {7, 1, 64, 257, 0, 1},
        };
        for (const Case &c : cases) {
            bad += check_case(st, c, false) != 0;
            n++;
        }
        printf("checks: %d shapes, %d failed\n", n, bad);
    }
    if (do_time && !bad) {
        // the 2B shapes at the chunks of a 2000-token prompt (512 at 0, 512, 1024, 1536) and of a
        // ~530-token one (512, then 18 at 512), other T for the split rule; Llama3-8B's heads
        const Case timed[] = {{20, 5, 128, 512, 0, 0},   {20, 5, 128, 512, 1536, 0}, {20, 5, 128, 18, 512, 0},
                              {20, 5, 128, 512, 512, 0}, {20, 5, 128, 512, 1024, 0}, {20, 5, 128, 64, 0, 0},
                              {20, 5, 128, 128, 0, 0},   {20, 5, 128, 256, 0, 0},    {20, 5, 128, 200, 1800, 0},
                              {32, 8, 128, 512, 0, 0}};
        for (const Case &c : timed) bad += time_case(st, c);
    }
    cudaStreamDestroy(st);
    printf("%s\n", bad ? "FAILED" : "all ok");
    return bad ? 1 : 0;
}
