// Kernel lab: the persistent decode kernel (kernels/dev/decode_persistent.cu) against the CPU
// reference and against the per-kernel decode chain, then timed against that chain.
//
// Built by CMake as dev_decode_persistent where nvcc is present. Run:
//   ./dev_decode_persistent [check|time|all|small|tiny]   (default all; small: the small shapes
//                                                     only, tiny: those with dim <= 1024,
//                                                     for compute-sanitizer, schedule 0 only)
//
// Check (every shape and every load schedule (kcuda_decode_plan_set_variant), one decode step at
// the given positions, random ternary weights): the kernel writes lab taps (decode_persistent.h) and every GEMV is checked per layer from the
// kernel's own int8 input: y = w2a8_gemv_ref(W, q) / s * gamma, the residual adds and
// relu^2(g)*u must equal the kernel's outputs bit for bit (integer dot products exact, the
// epilogue in IEEE fp32 with the same roundings); the int8 inputs themselves against
// quant_act_ref(rmsnorm_ref(kernel's input)) (the kernel sums the squares in the product GEMV's
// order, the reference in another, so a lane may differ by one where x*s sits on a rounding boundary: counted, not failed below
// 1e-3 of the lanes); attention against attention_group_ref over the kernel's own KV cache
// (fp32 tolerance 2e-5 relative to the largest output). Then the end state of x against the
// per-kernel chain (kcuda_w2a8_gemv + kcuda_attn_decode) from the same start, reported.
//
// Timing: lab_graph_us (kernels/dev/lab.cuh): `steps` decode steps captured in one graph,
// median replay / steps; the whole model's weights (521 MB for 2B-4T) are > 10x L2, so every
// step reads them from HBM. Every load schedule, and baselines in the same run: the per-kernel
// chain as the product runs it (PDL, triggers LLELL), the f16 lm_head alone, and a 1 GiB
// device-to-device copy (read + write counted) for the byte floor. Then, per position and
// schedule, the timeline of one step (%globaltimer per block at each step's boundaries).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/cpu/kernels_cpu.h"
#include "kernels/dev/decode_persistent.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/w2a8.h"

#include "kernels/dev/lab.cuh"

enum { PD_LAB_VARIANTS = 3 };  // kcuda_decode_plan_set_variant

struct Shape {
    const char *name;
    int n_layers, dim, ffn, n_heads, n_kv, hd, ctx, style;
    std::vector<int> pos;
    bool time;
};

// I2_S bytes with codes 0..2 only, one random draw per byte (fast enough for 1.7 GB).
static uint8_t g_i2s_bytes[81];
static void init_i2s_table() {
    for (int v = 0; v < 81; v++) {
        int t = v;
        uint8_t b = 0;
        for (int j = 0; j < 4; j++) b |= (uint8_t)((t % 3) << (2 * j)), t /= 3;
        g_i2s_bytes[v] = b;
    }
}
static void fill_i2s(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = g_i2s_bytes[rnd() % 81];
}
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xffffff) / 16777216.0f; }

struct HostLayer {
    std::vector<uint8_t> wq, wk, wv, wo, wg, wu, wd;  // I2_S rows (host layout)
    float gq, gk, gv, go, gg, gu, gd;
    std::vector<float> an, asn, fn, fsn;              // norm weights
};

struct Model {
    Shape s;
    int q_dim, kv_dim, qkv_dim, kd, ko, kf;
    std::vector<HostLayer> h;
    std::vector<KcudaDecodeLayer> dl;
    std::vector<void *> allocs;
    float *d_rope = nullptr;
    std::vector<float> rope;
    std::vector<uint16_t> kv0;  // initial caches, all layers: [l][k|v][n_kv][ctx][hd]
    uint16_t *d_kv = nullptr;
    size_t kv_per = 0;          // elements of one of K or V per layer
    size_t tern_bytes = 0;
};

static void *dmalloc(Model &m, size_t n) {
    void *p;
    CK(cudaMalloc(&p, n));
    m.allocs.push_back(p);
    return p;
}
static float *upload_f(Model &m, const std::vector<float> &v) {
    float *d = (float *)dmalloc(m, v.size() * 4);
    CK(cudaMemcpy(d, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    return d;
}

// reuse: layers beyond it repeat the host bytes of layer l % reuse (timing-only shapes)
static void build(Model &m, const Shape &s, int reuse) {
    m.s = s;
    m.q_dim = s.n_heads * s.hd;
    m.kv_dim = s.n_kv * s.hd;
    m.qkv_dim = m.q_dim + 2 * m.kv_dim;
    m.kd = i2s_round_up_k(s.dim);
    m.ko = i2s_round_up_k(m.q_dim);
    m.kf = i2s_round_up_k(s.ffn);
    const int NL = s.n_layers;
    m.h.resize(NL);
    m.dl.resize(NL);
    for (int l = 0; l < NL; l++) {
        HostLayer &H = m.h[l];
        if (l >= reuse) {
            H = m.h[l % reuse];
        } else {
            auto mk = [&](std::vector<uint8_t> &w, int rows, int k_pad) {
                w.resize((size_t)rows * k_pad / 4);
                fill_i2s(w.data(), w.size());
            };
            mk(H.wq, m.q_dim, m.kd), mk(H.wk, m.kv_dim, m.kd), mk(H.wv, m.kv_dim, m.kd);
            mk(H.wo, s.dim, m.ko), mk(H.wg, s.ffn, m.kd), mk(H.wu, s.ffn, m.kd), mk(H.wd, s.dim, m.kf);
            // padding lanes of a ragged K hold code 1 (zero), as the loaders write them
            auto pad = [&](std::vector<uint8_t> &w, int rows, int k, int k_pad) {
                for (int r = 0; r < rows; r++)
                    for (int j = k; j < k_pad; j++) i2s_set(w.data() + (size_t)r * k_pad / 4, j, 0);
            };
            pad(H.wq, m.q_dim, s.dim, m.kd), pad(H.wk, m.kv_dim, s.dim, m.kd), pad(H.wv, m.kv_dim, s.dim, m.kd);
            pad(H.wo, s.dim, m.q_dim, m.ko), pad(H.wg, s.ffn, s.dim, m.kd), pad(H.wu, s.ffn, s.dim, m.kd);
            pad(H.wd, s.dim, s.ffn, m.kf);
            // q, k, v of magnitude ~1 (as trained models have them): attention scores of order 1, so
            // fp32 summation order moves the softmax by rounding only
            H.gq = frand(0.02f, 0.06f), H.gk = frand(0.02f, 0.06f), H.gv = frand(0.02f, 0.06f);
            H.go = frand(0.01f, 0.03f), H.gg = frand(0.02f, 0.06f), H.gu = frand(0.02f, 0.06f), H.gd = frand(0.01f, 0.03f);
            auto nv = [&](std::vector<float> &v, int n) {
                v.resize(n);
                for (auto &x : v) x = frand(0.5f, 1.5f);
            };
            nv(H.an, s.dim), nv(H.asn, m.q_dim), nv(H.fn, s.dim), nv(H.fsn, s.ffn);
        }
    }
    // one allocation for all ternary weights, in the product's order (QKV, O, gate/up, down)
    size_t tern = 0;
    for (int l = 0; l < NL; l++)
        tern += (size_t)(m.qkv_dim + 2 * s.ffn) * m.kd / 4 + (size_t)s.dim * m.ko / 4 + (size_t)s.dim * m.kf / 4;
    m.tern_bytes = tern;
    uint8_t *cur = (uint8_t *)dmalloc(m, tern);
    for (int l = 0; l < NL; l++) {
        HostLayer &H = m.h[l];
        KcudaDecodeLayer &D = m.dl[l];
        memset(&D, 0, sizeof D);
        auto up = [&](KcudaTernary &t, int rows, int k_pad, int glu) {
            t.d_codes = cur;
            t.n_out = rows;
            t.k_pad = k_pad;
            t.glu = glu;
            t.seg_end[0] = t.seg_end[1] = rows;
            cur += (size_t)rows * k_pad / 4;
        };
        up(D.qkv, m.qkv_dim, m.kd, 0);
        CK(kcuda_upload_i2s((uint8_t *)D.qkv.d_codes, H.wq.data(), m.q_dim, m.kd, 0, 1) ? cudaErrorUnknown : cudaSuccess);
        CK(kcuda_upload_i2s((uint8_t *)D.qkv.d_codes, H.wk.data(), m.kv_dim, m.kd, m.q_dim, 1) ? cudaErrorUnknown : cudaSuccess);
        CK(kcuda_upload_i2s((uint8_t *)D.qkv.d_codes, H.wv.data(), m.kv_dim, m.kd, m.q_dim + m.kv_dim, 1) ? cudaErrorUnknown
                                                                                                            : cudaSuccess);
        D.qkv.seg_end[0] = m.q_dim, D.qkv.seg_end[1] = m.q_dim + m.kv_dim;
        D.qkv.gamma[0] = H.gq, D.qkv.gamma[1] = H.gk, D.qkv.gamma[2] = H.gv;
        up(D.o, s.dim, m.ko, 0);
        CK(kcuda_upload_i2s((uint8_t *)D.o.d_codes, H.wo.data(), s.dim, m.ko, 0, 1) ? cudaErrorUnknown : cudaSuccess);
        D.o.gamma[0] = D.o.gamma[1] = D.o.gamma[2] = H.go;
        up(D.gu, 2 * s.ffn, m.kd, 1);
        CK(kcuda_upload_i2s((uint8_t *)D.gu.d_codes, H.wg.data(), s.ffn, m.kd, 0, 2) ? cudaErrorUnknown : cudaSuccess);
        CK(kcuda_upload_i2s((uint8_t *)D.gu.d_codes, H.wu.data(), s.ffn, m.kd, 1, 2) ? cudaErrorUnknown : cudaSuccess);
        D.gu.gamma[0] = H.gg, D.gu.gamma[1] = H.gu;
        up(D.down, s.dim, m.kf, 0);
        CK(kcuda_upload_i2s((uint8_t *)D.down.d_codes, H.wd.data(), s.dim, m.kf, 0, 1) ? cudaErrorUnknown : cudaSuccess);
        D.down.gamma[0] = D.down.gamma[1] = D.down.gamma[2] = H.gd;
        D.attn_norm = upload_f(m, H.an), D.attn_sub_norm = upload_f(m, H.asn);
        D.ffn_norm = upload_f(m, H.fn), D.ffn_sub_norm = upload_f(m, H.fsn);
    }
    if (reuse < NL)  // free the host copies of timing-only shapes (not checked)
        for (auto &H : m.h) H = HostLayer{};
    m.rope.resize((size_t)s.ctx * s.hd);
    rope_table_init(m.rope.data(), s.ctx, s.hd, 10000.0f);
    m.d_rope = upload_f(m, m.rope);
    m.kv_per = (size_t)s.n_kv * s.ctx * s.hd;
    m.kv0.resize(m.kv_per * 2 * NL);
    for (auto &v : m.kv0) v = f32_to_f16_ref(frand(-1.5f, 1.5f));
    m.d_kv = (uint16_t *)dmalloc(m, m.kv0.size() * 2);
    for (int l = 0; l < NL; l++) {
        m.dl[l].kc = m.d_kv + m.kv_per * (2 * l);
        m.dl[l].vc = m.d_kv + m.kv_per * (2 * l + 1);
    }
}

static void reset_kv(Model &m) { CK(cudaMemcpy(m.d_kv, m.kv0.data(), m.kv0.size() * 2, cudaMemcpyHostToDevice)); }

static KcudaAttnShape attn_shape(const Model &m) {
    KcudaAttnShape a = {};
    a.n_heads = m.s.n_heads, a.n_kv = m.s.n_kv, a.head_dim = m.s.hd, a.ctx = m.s.ctx, a.rope_style = m.s.style;
    a.d_rope = m.d_rope;
    return a;
}

// The per-kernel decode chain as infer/backend_cuda.c enqueues it (PDL with its trigger
// placement per kernel: late, late, early, late, late).
struct Chain {
    float *d_qkv, *d_att, *d_gu, *d_part;
    int *d_count;
    KcudaAttnShape a;
    bool ok;  // the per-kernel attention takes this shape
};
static Chain chain_make(Model &m) {
    Chain c = {};
    c.a = attn_shape(m);
    c.ok = m.s.hd % 16 == 0 && m.s.hd <= 128;
    c.d_qkv = (float *)dmalloc(m, (size_t)m.qkv_dim * 4);
    c.d_att = (float *)dmalloc(m, (size_t)m.q_dim * 4);
    c.d_gu = (float *)dmalloc(m, (size_t)m.s.ffn * 4);
    c.d_part = (float *)dmalloc(m, kcuda_attn_decode_scratch(&c.a) * 4 + 16);
    c.d_count = (int *)dmalloc(m, (size_t)m.s.n_heads * 4);
    CK(cudaMemset(c.d_count, 0, (size_t)m.s.n_heads * 4));
    return c;
}
static int chain_step(Model &m, Chain &c, float *d_x, const int *d_pos, cudaStream_t st) {
    const float eps = 1e-5f;
    const int late = KCUDA_PDL_LATE, early = KCUDA_PDL_EARLY;
    for (int l = 0; l < m.s.n_layers; l++) {
        KcudaDecodeLayer &L = m.dl[l];
        if (kcuda_w2a8_gemv(&L.qkv, d_x, m.s.dim, L.attn_norm, eps, NULL, NULL, NULL, KCUDA_EP_F32, c.d_qkv, late, st)) return 1;
        if (kcuda_attn_decode(&c.a, c.d_qkv, L.kc, L.vc, d_pos, c.d_att, c.d_part, c.d_count, late, st)) return 1;
        if (kcuda_w2a8_gemv(&L.o, c.d_att, m.q_dim, L.attn_sub_norm, eps, NULL, NULL, NULL, KCUDA_EP_RESID, d_x, early, st))
            return 1;
        if (kcuda_w2a8_gemv(&L.gu, d_x, m.s.dim, L.ffn_norm, eps, NULL, NULL, NULL, KCUDA_EP_GLU, c.d_gu, late, st)) return 1;
        if (kcuda_w2a8_gemv(&L.down, c.d_gu, m.s.ffn, L.ffn_sub_norm, eps, NULL, NULL, NULL, KCUDA_EP_RESID, d_x, late, st))
            return 1;
    }
    return 0;
}

static KcudaDecodePlan *make_plan(Model &m) {
    KcudaDecodeShape ds = {};
    ds.n_layers = m.s.n_layers, ds.dim = m.s.dim, ds.ffn = m.s.ffn, ds.eps = 1e-5f;
    ds.attn = attn_shape(m);
    KcudaDecodePlan *p = NULL;
    if (kcuda_decode_plan_create(&ds, m.dl.data(), &p)) {
        fprintf(stderr, "%s: plan: %s\n", m.s.name, kcuda_last_error());
        exit(1);
    }
    return p;
}

template <class T>
static std::vector<T> dget(const T *d, size_t n) {
    std::vector<T> h(n);
    CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

// y[r] = acc / s * gamma with explicit fp32 roundings (host IEEE, no contraction: separate
// statements)
static float lin(int32_t acc, float s, float g) {
    volatile float a = (float)acc / s;
    return a * g;
}

struct QStat {
    long flips = 0, lanes = 0;
};
// q of the kernel against quant_act_ref(rmsnorm_ref(in)); returns the kernel's q for the exact check
static void check_q(const float *in, int k, int k_pad, const float *nw, const int8_t *qk, float sk, QStat &qs,
                    float *s_rel) {
    std::vector<float> xn(k);
    std::vector<int8_t> q(k_pad);
    rmsnorm_ref(in, nw, k, 1e-5f, xn.data());
    const float s = quant_act_ref(xn.data(), k, k_pad, q.data());
    for (int i = 0; i < k_pad; i++) qs.flips += q[i] != qk[i];
    qs.lanes += k_pad;
    const float r = fabsf(s - sk) / s;
    if (r > *s_rel) *s_rel = r;
}

// One decode step at pos with taps; checks every layer. Returns the number of hard failures.
static int check_step(Model &m, KcudaDecodePlan *plan, Chain &ch, int variant, int pos, int layers_checked) {
    const Shape &s = m.s;
    const int NL = s.n_layers;
    reset_kv(m);
    std::vector<float> x0(s.dim);
    for (auto &v : x0) v = frand(-2.0f, 2.0f);
    float *d_x = (float *)dmalloc(m, (size_t)s.dim * 4);
    int *d_pos = (int *)dmalloc(m, 4);
    CK(cudaMemcpy(d_x, x0.data(), x0.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_pos, &pos, 4, cudaMemcpyHostToDevice));
    KcudaDecodeTaps t = {};
    t.qkv = (float *)dmalloc(m, (size_t)NL * m.qkv_dim * 4);
    t.att = (float *)dmalloc(m, (size_t)NL * m.q_dim * 4);
    t.x_mid = (float *)dmalloc(m, (size_t)NL * s.dim * 4);
    t.gu = (float *)dmalloc(m, (size_t)NL * s.ffn * 4);
    t.x_out = (float *)dmalloc(m, (size_t)NL * s.dim * 4);
    const int kp[4] = {m.kd, m.ko, m.kd, m.kf};
    for (int i = 0; i < 4; i++) {
        t.q[i] = (int8_t *)dmalloc(m, (size_t)NL * kp[i]);
        t.s[i] = (float *)dmalloc(m, (size_t)NL * 4);
    }
    CK(kcuda_decode_plan_set_taps(plan, &t) ? cudaErrorUnknown : cudaSuccess);
    if (kcuda_decode_layers(plan, d_x, d_pos, 0)) {
        fprintf(stderr, "launch: %s\n", kcuda_last_error());
        exit(1);
    }
    CK(cudaDeviceSynchronize());
    kcuda_decode_plan_set_taps(plan, NULL);
    auto qkv = dget(t.qkv, (size_t)NL * m.qkv_dim), att = dget(t.att, (size_t)NL * m.q_dim);
    auto xmid = dget(t.x_mid, (size_t)NL * s.dim), gu = dget(t.gu, (size_t)NL * s.ffn), xout = dget(t.x_out, (size_t)NL * s.dim);
    auto xfin = dget(d_x, (size_t)s.dim);
    std::vector<int8_t> q[4];
    std::vector<float> sv[4];
    for (int i = 0; i < 4; i++) q[i] = dget(t.q[i], (size_t)NL * kp[i]), sv[i] = dget(t.s[i], (size_t)NL);
    auto kv = dget(m.d_kv, m.kv0.size());

    long exact_bad = 0, exact_n = 0, kv_bad = 0;
    QStat qst;
    float s_rel = 0.0f, att_err = 0.0f, k_err = 0.0f;
    std::vector<int32_t> acc(std::max(std::max(m.qkv_dim, s.dim), s.ffn));
    auto exact = [&](float a, float b) {
        exact_n++;
        if (memcmp(&a, &b, 4)) exact_bad++;
    };
    const int LC = std::min(NL, layers_checked);
    for (int l = 0; l < LC; l++) {
        const HostLayer &H = m.h[l];
        const float *xin = l == 0 ? x0.data() : &xout[(size_t)(l - 1) * s.dim];
        // QKV
        const int8_t *q0 = &q[0][(size_t)l * m.kd];
        const float s0 = sv[0][l];
        check_q(xin, s.dim, m.kd, H.an.data(), q0, s0, qst, &s_rel);
        const float *y = &qkv[(size_t)l * m.qkv_dim];
        w2a8_gemv_ref(H.wq.data(), m.q_dim, m.kd, q0, acc.data());
        for (int r = 0; r < m.q_dim; r++) exact(lin(acc[r], s0, H.gq), y[r]);
        w2a8_gemv_ref(H.wk.data(), m.kv_dim, m.kd, q0, acc.data());
        for (int r = 0; r < m.kv_dim; r++) exact(lin(acc[r], s0, H.gk), y[m.q_dim + r]);
        w2a8_gemv_ref(H.wv.data(), m.kv_dim, m.kd, q0, acc.data());
        for (int r = 0; r < m.kv_dim; r++) exact(lin(acc[r], s0, H.gv), y[m.q_dim + m.kv_dim + r]);
        // attention over the kernel's cache (rows < pos as uploaded, row pos written by it)
        std::vector<float> qr(y, y + m.q_dim), kr(y + m.q_dim, y + m.q_dim + m.kv_dim);
        const float *cs = &m.rope[(size_t)pos * s.hd];
        rope_apply_ref(qr.data(), s.n_heads, s.hd, cs, s.style);
        rope_apply_ref(kr.data(), s.n_kv, s.hd, cs, s.style);
        const uint16_t *kc = &kv[m.kv_per * 2 * l], *vc = &kv[m.kv_per * (2 * l + 1)];
        for (int g = 0; g < s.n_kv; g++)
            for (int d = 0; d < s.hd; d++) {
                const size_t i = ((size_t)g * s.ctx + pos) * s.hd + d;
                const float e = fabsf(f16_to_f32_ref(kc[i]) - kr[(size_t)g * s.hd + d]);
                k_err = std::max(k_err, e / (fabsf(kr[(size_t)g * s.hd + d]) + 1e-3f));
                kv_bad += vc[i] != f32_to_f16_ref(y[m.q_dim + m.kv_dim + g * s.hd + d]);
            }
        // rows of other positions untouched
        for (int g = 0; g < s.n_kv; g++)
            for (int t2 = 0; t2 < s.ctx; t2++) {
                if (t2 == pos) continue;
                const size_t i = ((size_t)g * s.ctx + t2) * s.hd;
                kv_bad += memcmp(&kc[i], &m.kv0[m.kv_per * 2 * l + i], (size_t)s.hd * 2) != 0;
                kv_bad += memcmp(&vc[i], &m.kv0[m.kv_per * (2 * l + 1) + i], (size_t)s.hd * 2) != 0;
            }
        const int rep = s.n_heads / s.n_kv;
        std::vector<float> ao(m.q_dim), scr((size_t)rep * (pos + 1));
        for (int g = 0; g < s.n_kv; g++)
            attention_group_ref(&qr[(size_t)g * rep * s.hd], rep, kc + (size_t)g * s.ctx * s.hd, vc + (size_t)g * s.ctx * s.hd,
                                1, (size_t)s.hd, pos + 1, s.hd, scr.data(), &ao[(size_t)g * rep * s.hd]);
        const float *ak = &att[(size_t)l * m.q_dim];
        float amax = 0.0f, dmax = 0.0f;
        for (int i = 0; i < m.q_dim; i++) amax = std::max(amax, fabsf(ao[i])), dmax = std::max(dmax, fabsf(ao[i] - ak[i]));
        att_err = std::max(att_err, dmax / std::max(amax, 1e-20f));
        // O + residual
        const int8_t *q1 = &q[1][(size_t)l * m.ko];
        const float s1 = sv[1][l];
        check_q(ak, m.q_dim, m.ko, H.asn.data(), q1, s1, qst, &s_rel);
        w2a8_gemv_ref(H.wo.data(), s.dim, m.ko, q1, acc.data());
        const float *xm = &xmid[(size_t)l * s.dim];
        for (int r = 0; r < s.dim; r++) {
            volatile float v = xin[r] + lin(acc[r], s1, H.go);
            exact(v, xm[r]);
        }
        // gate/up
        const int8_t *q2 = &q[2][(size_t)l * m.kd];
        const float s2 = sv[2][l];
        check_q(xm, s.dim, m.kd, H.fn.data(), q2, s2, qst, &s_rel);
        std::vector<int32_t> ag(s.ffn), au(s.ffn);
        w2a8_gemv_ref(H.wg.data(), s.ffn, m.kd, q2, ag.data());
        w2a8_gemv_ref(H.wu.data(), s.ffn, m.kd, q2, au.data());
        const float *gk = &gu[(size_t)l * s.ffn];
        for (int r = 0; r < s.ffn; r++) {
            const float yg = lin(ag[r], s2, H.gg), yu = lin(au[r], s2, H.gu);
            const float rr = yg > 0.0f ? yg : 0.0f;
            volatile float r2 = rr * rr;
            volatile float v = r2 * yu;
            exact(v, gk[r]);
        }
        // down + residual
        const int8_t *q3 = &q[3][(size_t)l * m.kf];
        const float s3 = sv[3][l];
        check_q(gk, s.ffn, m.kf, H.fsn.data(), q3, s3, qst, &s_rel);
        w2a8_gemv_ref(H.wd.data(), s.dim, m.kf, q3, acc.data());
        const float *xo = &xout[(size_t)l * s.dim];
        for (int r = 0; r < s.dim; r++) {
            volatile float v = xm[r] + lin(acc[r], s3, H.gd);
            exact(v, xo[r]);
        }
    }
    for (int r = 0; r < s.dim; r++) exact(xfin[r], xout[(size_t)(NL - 1) * s.dim + r]);
    // the per-kernel chain from the same start
    double chain_rel = -1.0;
    if (ch.ok) {
        reset_kv(m);
        CK(cudaMemcpy(d_x, x0.data(), x0.size() * 4, cudaMemcpyHostToDevice));
        if (chain_step(m, ch, d_x, d_pos, 0)) {
            fprintf(stderr, "chain: %s\n", kcuda_last_error());
            exit(1);
        }
        CK(cudaDeviceSynchronize());
        auto xc = dget(d_x, (size_t)s.dim);
        double mx = 0.0, dx = 0.0;
        for (int r = 0; r < s.dim; r++) mx = std::max(mx, (double)fabsf(xc[r])), dx = std::max(dx, (double)fabsf(xc[r] - xfin[r]));
        chain_rel = dx / std::max(mx, 1e-30);
    }
    const double flip_rate = qst.lanes ? (double)qst.flips / (double)qst.lanes : 0.0;
    const bool fail = exact_bad || kv_bad || att_err > 2e-5f || flip_rate > 1e-3 || k_err > 2e-3f;
    char cr[32] = "n/a";
    if (chain_rel >= 0) snprintf(cr, sizeof cr, "%.1e", chain_rel);
    printf("| %s | v%d | %d | %d/%d | %ld/%ld | %ld | %.2e | %.1e | %ld/%ld | %.1e | %s | %s |\n", s.name, variant, pos, LC, NL, exact_bad,
           exact_n, kv_bad, att_err, k_err, qst.flips, qst.lanes, s_rel, cr, fail ? "FAIL" : "ok");
    return fail ? 1 : 0;
}

// The timeline of one step (after warm-up launches): per step of a layer, means over layers
// 1..n-1 of the first and last block's wait release and of the step's completion (the last
// block's count), each relative to the previous step's completion; then per block (means over
// blocks and layers 1..n-1): issue = step start to the start of the wait (the next GEMV's weight
// loads issued, the residual rows loaded), spin = in the wait, prologue = release to the int8
// input in shared memory, dots = the dot products (this step's weights from registers),
// epilogue = outputs written and the step counted.
static void timeline(Model &m, KcudaDecodePlan *plan, float *d_x, const int *d_pos, int pos, cudaStream_t st) {
    int blocks, threads, per_sm;
    kcuda_decode_plan_describe(plan, &blocks, &threads, &per_sm);
    const int NL = m.s.n_layers;
    const size_t n = (size_t)blocks * NL * 5 * 6;
    unsigned long long *d_tr = (unsigned long long *)dmalloc(m, n * 8);
    CK(cudaMemset(d_tr, 0, n * 8));
    for (int i = 0; i < 3; i++) CK(kcuda_decode_layers(plan, d_x, d_pos, st) ? cudaErrorUnknown : cudaSuccess);
    KcudaDecodeTaps t = {};
    t.trace = d_tr;
    kcuda_decode_plan_set_taps(plan, &t);
    CK(kcuda_decode_layers(plan, d_x, d_pos, st) ? cudaErrorUnknown : cudaSuccess);
    kcuda_decode_plan_set_taps(plan, NULL);
    CK(cudaStreamSynchronize(st));
    auto h = dget(d_tr, n);
    std::vector<double> rel_min(NL * 5, 1e30), rel_max(NL * 5, 0), done(NL * 5, 0);
    double iss[5] = {0}, spin[5] = {0}, pro[5] = {0}, dots[5] = {0}, epi[5] = {0};  // per block, layers 1..NL-1
    int cnt[5] = {0}, tasks[5] = {0};
    for (int b = 0; b < blocks; b++)
        for (int i = 0; i < NL * 5; i++) {
            const unsigned long long *e = &h[((size_t)b * NL * 5 + i) * 6];
            if (e[0]) rel_min[i] = std::min(rel_min[i], (double)e[0]), rel_max[i] = std::max(rel_max[i], (double)e[0]);
            if (e[1]) done[i] = std::max(done[i], (double)e[1]);
            const int k = i % 5;
            if (i < 5 || !e[0] || !e[1]) continue;
            if (k == 1) {  // attention: the blocks with a task
                spin[k] += (double)(e[0] - e[4]), epi[k] += (double)(e[1] - e[0]);
                cnt[k]++;
                continue;
            }
            if (e[2] && e[3] && e[4] && e[5]) {
                iss[k] += (double)(e[4] - e[5]), spin[k] += (double)(e[0] - e[4]);
                pro[k] += (double)(e[2] - e[0]), dots[k] += (double)(e[3] - e[2]), epi[k] += (double)(e[1] - e[3]);
                cnt[k]++;
            }
        }
    for (int k = 0; k < 5; k++) tasks[k] = cnt[k] / std::max(1, NL - 1);
    const char *names[5] = {"QKV", "attention", "O", "gate/up", "down"};
    printf("\nTimeline, %s at pos %d (us; release/done after the previous step's completion, means over layers 1..%d; "
           "per block: means over blocks; attention: blocks with a task, 'epilogue' = release to done):\n\n"
           "| step | first release | last release | done | blocks | issue | spin | prologue | dots | epilogue+count |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
           m.s.name, pos, NL - 1);
    for (int k = 0; k < 5; k++) {
        double a = 0, b2 = 0, c = 0;
        for (int l = 1; l < NL; l++) {
            const int i = l * 5 + k;
            const double prev = done[i - 1];
            a += (rel_min[i] - prev) / 1e3 / (NL - 1), b2 += (rel_max[i] - prev) / 1e3 / (NL - 1), c += (done[i] - prev) / 1e3 / (NL - 1);
        }
        const double nc = cnt[k] ? cnt[k] * 1e3 : 1.0;
        if (k == 1)
            printf("| %s | %.2f | %.2f | %.2f | %d | | %.2f | | | %.2f |\n", names[k], a, b2, c, tasks[k], spin[k] / nc, epi[k] / nc);
        else
            printf("| %s | %.2f | %.2f | %.2f | %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n", names[k], a, b2, c, tasks[k], iss[k] / nc,
                   spin[k] / nc, pro[k] / nc, dots[k] / nc, epi[k] / nc);
    }
    printf("layers 1..%d: %.2f us per layer; whole step (first release to last done): %.1f us\n", NL - 1,
           (done[NL * 5 - 1] - done[4]) / 1e3 / (NL - 1), (done[NL * 5 - 1] - rel_min[0]) / 1e3);
}

static void time_shape(Model &m, KcudaDecodePlan *plan, Chain &ch, int pos, double copy_gbs, double lm_us, cudaStream_t st) {
    const Shape &s = m.s;
    float *d_x = (float *)dmalloc(m, (size_t)s.dim * 4);
    int *d_pos = (int *)dmalloc(m, 4);
    std::vector<float> x0(s.dim);
    for (auto &v : x0) v = frand(-2.0f, 2.0f);
    CK(cudaMemcpy(d_x, x0.data(), x0.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_pos, &pos, 4, cudaMemcpyHostToDevice));
    reset_kv(m);
    const int steps = 20;
    double pers[PD_LAB_VARIANTS];
    for (int v = 0; v < PD_LAB_VARIANTS; v++) {
        CK(kcuda_decode_plan_set_variant(plan, v) ? cudaErrorUnknown : cudaSuccess);
        pers[v] = lab_graph_us(st, steps, 15, 3, [&](int) { return kcuda_decode_layers(plan, d_x, d_pos, st); });
    }
    double chain = -1.0;
    if (ch.ok) chain = lab_graph_us(st, steps, 15, 3, [&](int) { return chain_step(m, ch, d_x, d_pos, st); });
    int best = 0;
    for (int v = 1; v < PD_LAB_VARIANTS; v++)
        if (pers[v] < pers[best]) best = v;
    const double kv_bytes = (double)s.n_layers * 2.0 * s.n_kv * (pos + 1) * s.hd * 2.0;
    const double bytes = (double)m.tern_bytes + kv_bytes;
    const double floor_us = bytes / (copy_gbs * 1e3);
    char cu[32] = "n/a", cr[32] = "n/a";
    if (chain > 0) snprintf(cu, sizeof cu, "%.1f", chain), snprintf(cr, sizeof cr, "%.2f", chain / pers[best]);
    printf("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f%% | %s | %.2f | %s |", s.name, pos, bytes / 1e6, pers[0],
           pers[1], pers[2], pers[best] / s.n_layers, 100.0 * floor_us / pers[best], cu, chain > 0 ? chain / s.n_layers : 0.0, cr);
    if (lm_us > 0) {
        const double lm_bytes = 128256.0 * s.dim * 2.0;
        const double all_floor = (bytes + lm_bytes) / (copy_gbs * 1e3);
        printf(" %.0f | %.0f | %.0f%% | %.0f |", 1e6 / (pers[best] + lm_us), chain > 0 ? 1e6 / (chain + lm_us) : 0.0,
               100.0 * all_floor / (pers[best] + lm_us), 1e6 / all_floor);
    } else {
        printf(" - | - | - | - |");
    }
    printf("\n");
    for (int v = 0; v < PD_LAB_VARIANTS; v++) {
        CK(kcuda_decode_plan_set_variant(plan, v) ? cudaErrorUnknown : cudaSuccess);
        printf("(variant %d)", v);
        timeline(m, plan, d_x, d_pos, pos, st);
    }
    CK(kcuda_decode_plan_set_variant(plan, 0) ? cudaErrorUnknown : cudaSuccess);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // lines survive a timeout
    const char *mode = argc > 1 ? argv[1] : "all";
    const bool tiny = !strcmp(mode, "tiny");  // compute-sanitizer: the shapes with dim <= 1024
    const bool small = tiny || !strcmp(mode, "small");
    const bool do_check = small || !strcmp(mode, "check") || !strcmp(mode, "all");
    const bool do_time = !small && (!strcmp(mode, "time") || !strcmp(mode, "all"));
    if (kcuda_device_count() <= 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    init_i2s_table();
    lab_seed(0x5eed12ull);
    char desc[200] = "?";
    kcuda_device_describe(desc, sizeof desc);
    int drv = 0;
    cudaDriverGetVersion(&drv);
    printf("device: %s, driver API %d\n", desc, drv);
    std::vector<Shape> shapes = {
        {"2B-4T", 30, 2560, 6912, 20, 5, 128, 4096, 0, {0, 63, 511, 4095}, true},
        {"GQA1 hd128", 2, 1024, 2816, 8, 8, 128, 1024, 0, {700}, false},
        {"GQA8 hd64 ffn3000", 2, 1024, 3000, 16, 2, 64, 512, 0, {100}, false},
        {"ragged 768/1000 hd64 adj", 3, 768, 1000, 12, 4, 64, 256, 1, {0, 37}, false},
        {"hd256", 2, 2048, 4096, 8, 2, 256, 1024, 0, {300}, false},
        {"hd100", 2, 1600, 4000, 16, 4, 100, 512, 0, {200}, false},
        {"hd96", 2, 1536, 4096, 16, 4, 96, 512, 0, {130}, false},
        {"8B shapes", 2, 4096, 14336, 32, 8, 128, 2048, 0, {200}, false},
    };
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    int fails = 0;
    double copy = 0.0, lm_us = -1.0;
    if (do_time) {
        copy = kcuda_copy_bandwidth_gbs((size_t)1 << 30, 10);
        printf("copy bandwidth (1 GiB device-to-device, read + write): %.0f GB/s\n", copy);
    }
    if (do_check)
        printf("\nCheck (one step; exact = GEMV outputs, residuals, relu^2*u, final x bit for bit from the kernel's int8 "
               "inputs; kv = cache rows wrong; att = max |err| / max |out| vs attention_group_ref; k = rel err of the "
               "rotated f16 k row; q flips vs quant_act_ref(rmsnorm_ref(input)); s = max rel diff of the scale; "
               "chain = max |x - x_chain| / max |x_chain| after all layers)\n\n"
               "| shape | variant | pos | layers checked | exact bad | kv bad | att | k | q flips | s | chain | |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (const Shape &s : shapes) {
        if ((small && s.n_layers > 3) || (tiny && s.dim > 1024)) continue;
        if (!do_check && !s.time) continue;
        Model m;
        build(m, s, s.n_layers);
        KcudaDecodePlan *plan = make_plan(m);
        Chain ch = chain_make(m);
        if (do_check)
            // tiny (the sanitizers' mode): schedule 0 only; the schedules differ only in where the
            // register loads are issued, not in shared or global memory accesses
            for (int v = 0; v < (tiny ? 1 : PD_LAB_VARIANTS); v++) {
                CK(kcuda_decode_plan_set_variant(plan, v) ? cudaErrorUnknown : cudaSuccess);
                for (int pos : s.pos) fails += check_step(m, plan, ch, v, pos, s.n_layers > 4 && pos > 0 ? 3 : s.n_layers);
            }
        CK(kcuda_decode_plan_set_variant(plan, 0) ? cudaErrorUnknown : cudaSuccess);
        if (do_time && s.time) {
            int blocks, threads, per_sm;
            kcuda_decode_plan_describe(plan, &blocks, &threads, &per_sm);
            if (lm_us < 0) {
                // the f16 lm_head alone (final norm + greedy argmax), same run
                const size_t n = 128256;
                void *w;
                float *x, *nw, *logits;
                int *best, *am;
                CK(cudaMalloc(&w, n * s.dim * 2));
                CK(cudaMemset(w, 0x3c, n * s.dim * 2));
                CK(cudaMalloc(&x, s.dim * 4));
                CK(cudaMalloc(&nw, s.dim * 4));
                CK(cudaMemset(x, 0, s.dim * 4));
                CK(cudaMemset(nw, 0, s.dim * 4));
                CK(cudaMalloc(&logits, n * 4));
                CK(cudaMalloc(&best, kcuda_lm_head_scratch((int)n) * 4));
                CK(cudaMalloc(&am, 4));
                lm_us = lab_graph_us(st, 10, 15, 3, [&](int) {
                    return kcuda_lm_head(KCUDA_F16, w, (int)n, s.dim, x, nw, 1e-5f, logits, best, am, KCUDA_PDL_EARLY, st);
                });
                cudaFree(w), cudaFree(x), cudaFree(nw), cudaFree(logits), cudaFree(best), cudaFree(am);
                printf("\nf16 lm_head 128256x%d alone: %.1f us\n", s.dim, lm_us);
            }
            printf("\nTiming (%s: %d blocks of %d threads, %d per SM; graph of 20 steps, median of 12 replays; "
                   "persistent v0 / v1 / v2 = the three load schedules (kcuda_decode_plan_set_variant), the faster one in the "
                   "per-layer, %% of floor, ratio and tok/s columns; floor = (ternary + KV bytes) / copy bandwidth; "
                   "chain = the per-kernel path, PDL, LLELL, same run; tok/s with the f16 lm_head added)\n\n"
                   "| shape | pos | MB read | persistent v0 us | v1 us | v2 us | best us/layer | %% of floor | chain us | chain "
                   "us/layer | chain / persistent | tok/s persistent | tok/s chain | %% of step floor | floor tok/s |\n"
                   "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                   s.name, blocks, threads, per_sm);
            for (int pos : s.pos) time_shape(m, plan, ch, pos, copy, lm_us, st);
        }
        kcuda_decode_plan_destroy(plan);
        for (void *p : m.allocs) cudaFree(p);
    }
    printf("\n%s (%d failing checks)\n", fails ? "FAIL" : "all checks pass", fails);
    return fails ? 1 : 0;
}
