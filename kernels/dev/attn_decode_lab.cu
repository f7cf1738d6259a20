// Decode attention lab (issues #11, #12): the tiled per-KV-group kernel (the product's
// kcuda_attn_decode until the spans kernel) in every configuration the lab measured (threads per
// block, tile length, stages, FMA chains, combine; blocks per SM, shortest split, split rounding,
// head spreading: its lab copy kernels/dev/attention_decode_knobs.cuh), the spans kernel's
// settings (kernels/dev/attention_decode_long.cuh, the lab copy of the product's
// kcuda_attn_decode: modes long, longk, longsan, attn10), the short-context kernel
// (kernels/cuda/attention_decode_head.cuh, "v3": the product's kernel until 2026-12-06, here with
// a grid over the whole context so that it runs at every position), and the product's entry
// points as the backend calls them (kcuda_attn_decode; kcuda_attn_decode_head below its limit:
// "product by position"); 2B-4T heads (20 query heads, 5 KV heads, head_dim 128, 30 layers).
//
//   dev_attn_decode [check|time|all|san|sweep|long|longk|longsan|attn10] [top N] [only CFG,CFG,...]
//
// check: every variant against a double-precision host reference (the kernel's own cache row
// at the position, rows below it as uploaded) at 16 positions of the 2B shape up to 4095 and at
// 5 positions of four other shapes (GQA 1, 8 and 12, head_dim 64 and 96); the arrival counters
// must be left zero. A variant that fails is not timed.
// time: microseconds per layer, median of graph replays (lab_graph_us), at positions 96, 544,
// 2080 and 4064 (the middle of bench's 64-token windows at contexts 64, 512, 2048 and 4032):
//   alone  30 launches of the variant, one per layer's cache (315 MB, far past the 50 MB L2),
//          chained with PDL (trigger after the wait, as the product);
//   chain  30 decode layers as the product runs them: the product's GEMVs (QKV with the norm
//          prologue, O + residual, gate/up with relu^2, down + residual; random ternary weights,
//          522 MB) around the variant, triggers "LLELL" (infer/backend_cuda.c); also the chain
//          without attention (QKV -> O directly), so "chain - gemv" is attention's cost in place.
// The summary ranks the variants by the sum of their chain times at the four positions, then
// times the top 8 with the product's and v3 again in 3 rounds (CONFIRM lines) and the top 3's
// trigger placements. san: the check of one launch setting per build configuration, few
// positions (a run short enough for compute-sanitizer).
// sweep: the short-context kernel, the long-context kernel and the product by position, in
// place (chain - gemv), at positions 64, 128, ... 4096, 3 rounds each (SWEEP lines, medians),
// the crossover (CROSS), the same for Llama3-8B's heads alone (32/8/128, SWEEP8B), what a second
// decode graph costs (capture + instantiate time, device memory: GRAPH) and what one more launch
// per layer that leaves at once costs in the chain (EMPTY: the price of choosing on the device
// with two launches).
// long: the spans kernel's settings (kernels/dev/attention_decode_long.cuh, the lab copy of the
// product's kcuda_attn_decode) against the product: long_mode;
// longk: the same for its cluster instantiation (a separate run: a fault there ends the process);
// longsan: its check at a few settings, shapes and positions (for compute-sanitizer).
// attn10: the check at every shape the GPU tests run, then the product against this session's
// candidates in place (attn10_mode); attn10k: the same for the cluster setting.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cpu/kernels_cpu.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/cuda/attention_decode_head.cuh"
#include "kernels/dev/attention_decode_long.cuh"
#include "kernels/dev/attention_decode_knobs.cuh"
#include "kernels/dev/lab.cuh"

namespace {

using attn_decode_knobs::Cfg;
using attn_decode_knobs::DecodeParams;
using attn_decode_knobs::Knobs;

constexpr int LAYERS = 30;

struct Shape {
    int n_heads, n_kv, hd, ctx;
};

// Device buffers of one shape: LAYERS caches (or one), qkv input, output, scratch, counters.
struct Bufs {
    Shape s;
    int n_layers;
    __half *kc = nullptr, *vc = nullptr;  // [layer][n_kv][ctx][hd]
    float *qkv = nullptr, *out = nullptr, *part = nullptr, *rope = nullptr;
    int *count = nullptr, *pos = nullptr;
    int host_pos = 0;  // the position set_pos wrote (what the backend knows on the host)
    size_t layer_n() const { return (size_t)s.n_kv * s.ctx * s.hd; }
};

size_t part_floats(const Shape &s) {
    const size_t hd4 = (size_t)(s.hd + 3) / 4 * 4;
    const int rep = s.n_heads / s.n_kv, hb = rep < 8 ? rep : 8;
    const size_t mine = (size_t)s.n_heads * attn_decode_knobs::max_splits(s.ctx) * hb * (hd4 + 2);
    const size_t v3 = attn_head::scratch(s.n_heads, s.hd, (s.ctx + attn_head::CHUNK - 1) / attn_head::CHUNK);
    KcudaAttnShape a = {s.n_heads, s.n_kv, s.hd, s.ctx, 0, nullptr};
    return std::max(std::max(mine, v3), kcuda_attn_decode_scratch(&a));
}

// A variant: a name and how to launch it on b (layer l) with a launch option.
struct Variant {
    std::string name;
    std::function<int(Bufs &, int l, int pdl, cudaStream_t)> launch;
    std::function<void(int)> carveout;  // sets the kernel's preferred shared-memory carveout (percent)
    bool ok = true;
    double alone[4] = {0, 0, 0, 0}, chain[4] = {0, 0, 0, 0};
};

template <class C>
int launch_mine(const Knobs &k, Bufs &b, int l, int pdl, cudaStream_t st) {
    DecodeParams p = {};
    p.n_heads = b.s.n_heads;
    p.n_kv = b.s.n_kv;
    p.rep = b.s.n_heads / b.s.n_kv;
    p.hd = b.s.hd;
    p.ctx = b.s.ctx;
    p.style = 0;
    p.splits = attn_decode_knobs::max_splits(b.s.ctx);
    p.late = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;
    p.rope = b.rope;
    p.qkv = b.qkv;
    p.kc = b.kc + (size_t)l * b.layer_n();
    p.vc = b.vc + (size_t)l * b.layer_n();
    p.pos = b.pos;
    p.out = b.out;
    p.part = b.part;
    p.count = b.count;
    return attn_decode_knobs::launch<128, true, C>(p, k, pdl, st);
}

// The short-context kernel with a grid over the whole context (every position).
int launch_v3(Bufs &b, int l, int pdl, cudaStream_t st) {
    attn_head::AttnParams p = {};
    p.n_heads = b.s.n_heads;
    p.n_kv = b.s.n_kv;
    p.hd = b.s.hd;
    p.ctx = b.s.ctx;
    p.style = 0;
    p.max_splits = (b.s.ctx + attn_head::CHUNK - 1) / attn_head::CHUNK;
    p.rope = b.rope;
    p.qkv = b.qkv;
    p.kc = b.kc + (size_t)l * b.layer_n();
    p.vc = b.vc + (size_t)l * b.layer_n();
    p.pos = b.pos;
    p.out = b.out;
    p.part = b.part;
    p.count = b.count;
    p.late = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;
    return attn_head::launch(p, pdl, st);
}

// The product's entry points (bn_kernels) as the backend calls them: by_pos picks the kernel
// from the host's position (kcuda_attn_decode_head below its limit), else the long-context one.
int launch_product(bool by_pos, Bufs &b, int l, int pdl, cudaStream_t st) {
    const KcudaAttnShape a = {b.s.n_heads, b.s.n_kv, b.s.hd, b.s.ctx, 0, b.rope};
    const bool head = by_pos && b.host_pos < kcuda_attn_decode_head_until(&a);
    uint16_t *kc = (uint16_t *)(b.kc + (size_t)l * b.layer_n()), *vc = (uint16_t *)(b.vc + (size_t)l * b.layer_n());
    return (head ? kcuda_attn_decode_head : kcuda_attn_decode)(&a, b.qkv, kc, vc, b.pos, b.out, b.part, b.count, pdl, st);
}

// The product by position with the head kernel's combine COMBINE (attn_head::Combine) below
// its limit (the product's grid: the chunks below kcuda_attn_decode_head_until), the product's
// kcuda_attn_decode from there: what the product would be with that combine (mode "attn10").
template <int COMBINE>
int launch_by_pos_head(Bufs &b, int l, int pdl, cudaStream_t st) {
    const KcudaAttnShape a = {b.s.n_heads, b.s.n_kv, b.s.hd, b.s.ctx, 0, b.rope};
    const int until = kcuda_attn_decode_head_until(&a);
    if (b.host_pos >= until) return launch_product(false, b, l, pdl, st);
    attn_head::AttnParams p = {};
    p.n_heads = b.s.n_heads;
    p.n_kv = b.s.n_kv;
    p.hd = b.s.hd;
    p.ctx = b.s.ctx;
    p.style = 0;
    p.max_splits = (until + attn_head::CHUNK - 1) / attn_head::CHUNK;
    p.rope = b.rope;
    p.qkv = b.qkv;
    p.kc = b.kc + (size_t)l * b.layer_n();
    p.vc = b.vc + (size_t)l * b.layer_n();
    p.pos = b.pos;
    p.out = b.out;
    p.part = b.part;
    p.count = b.count;
    p.late = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;
    return attn_head::launch<COMBINE>(p, pdl, st);
}

// The spans kernel (kernels/dev/attention_decode_long.cuh) at the shape of b: the instantiation
// by head_dim (64, 128, 256; 16-byte rows when head_dim % 8 == 0) with THREADS threads.
// The probe (mode "probe"): the spans kernel's launch for layer g_probe_layer records its blocks'
// timeline into g_probe (attn_long::probe_mark) while g_probe is set.
unsigned long long *g_probe = nullptr;
int g_probe_layer = -1;

template <int THREADS, bool CLUSTER = false, bool BULK = false, bool TC = false>
int launch_long(const attn_long::Knobs &k, Bufs &b, int l, int pdl, cudaStream_t st) {
    attn_long::Params p = {};
    p.n_heads = b.s.n_heads;
    p.n_kv = b.s.n_kv;
    p.rep = b.s.n_heads / b.s.n_kv;
    p.hd = b.s.hd;
    p.ctx = b.s.ctx;
    p.style = 0;
    p.late = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;
    p.rope = b.rope;
    p.qkv = b.qkv;
    p.kc = b.kc + (size_t)l * b.layer_n();
    p.vc = b.vc + (size_t)l * b.layer_n();
    p.pos = b.pos;
    p.out = b.out;
    p.part = b.part;
    p.count = b.count;
    p.probe = l == g_probe_layer ? g_probe : nullptr;
    // the probe build (Cfg PROBE): the product's instantiation (T256, cp.async) at the 2B-4T
    // heads only; every other launch records nothing
    if constexpr (THREADS == 256 && !CLUSTER && !BULK && TC)
        if (p.probe && p.hd == 128 && p.rep <= 4)
            return attn_long::launch<true, attn_long::Cfg<128, 256, 4, false, false, true, true>>(p, k, pdl, st);
    p.probe = nullptr;
    return attn_long::launch_shape<THREADS, CLUSTER, BULK, TC>(p, k, pdl, st);
}

// The spans kernel's settings the "long" mode checks and times: name "S<threads> sm<blocks per
// SM> c<shortest span> b<tile budget, KB>". b16 and b32 make several tiles per span at long
// context (the online-softmax path), the others one. clusters: the CLUSTER instantiation
// instead, "K<blocks per cluster> c<shortest span> b<budget>" (mode "longk").
// bulk: the BULK instantiation (names "B..." and "BK...", "r<rows per bulk copy>" unless 32);
// tc: the TC instantiation (tensor cores; "T" in the name).
template <bool CL, bool BU, bool TC>
std::function<int(Bufs &, int, int, cudaStream_t)> long_launcher(const attn_long::Knobs &k, int threads) {
    if (threads == 512) return [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_long<512, CL, BU, TC>(k, b, l, pdl, st); };
    return [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_long<256, CL, BU, TC>(k, b, l, pdl, st); };
}
void add_long(std::vector<Variant> &vs, bool clusters = false) {
    struct L {
        int threads, per_sm, min_chunk, kb, cluster, bulk, rows, tc = 0, rel = 0;
    };
    const L ls[] = {{256, 1, 32, 100, 0, 0, 0}, {256, 1, 64, 100, 0, 0, 0}, {256, 2, 32, 64, 0, 0, 0}, {256, 2, 16, 64, 0, 0, 0},
                    {256, 3, 32, 48, 0, 0, 0},  {512, 1, 32, 100, 0, 0, 0}, {512, 2, 32, 64, 0, 0, 0}, {256, 2, 32, 32, 0, 0, 0},
                    {256, 1, 32, 16, 0, 0, 0},  {256, 1, 32, 150, 16, 0, 0}, {256, 1, 32, 100, 16, 0, 0}, {256, 1, 16, 150, 16, 0, 0},
                    {256, 1, 32, 150, 8, 0, 0}, {256, 1, 32, 32, 16, 0, 0},  {512, 1, 32, 150, 16, 0, 0},
                    // bulk copies (issue #12, session 9)
                    {256, 1, 64, 100, 0, 1, 32}, {256, 1, 32, 100, 0, 1, 32}, {256, 1, 64, 100, 0, 1, 16},
                    {256, 1, 64, 100, 0, 1, 256}, {256, 2, 32, 64, 0, 1, 32}, {256, 3, 32, 48, 0, 1, 16},
                    {512, 1, 32, 100, 0, 1, 32}, {256, 1, 32, 32, 0, 1, 32}, {256, 1, 32, 16, 0, 1, 16},
                    {256, 1, 32, 150, 16, 1, 32}, {256, 1, 32, 150, 8, 1, 32},
                    // tensor cores (T), with cp.async or bulk copies (BT)
                    {256, 1, 64, 100, 0, 0, 0, 1}, {256, 1, 32, 100, 0, 0, 0, 1}, {256, 2, 32, 64, 0, 0, 0, 1},
                    {256, 1, 64, 100, 0, 1, 1, 1}, {256, 2, 32, 64, 0, 1, 1, 1}, {512, 1, 32, 100, 0, 0, 0, 1},
                    {256, 3, 32, 48, 0, 0, 0, 1}, {256, 1, 32, 32, 0, 0, 0, 1}, {256, 1, 32, 32, 0, 1, 1, 1},
                    {256, 1, 32, 150, 16, 0, 0, 1}, {256, 1, 32, 150, 16, 1, 1, 1},
                    // the ticket by a release-acquire atomic (" f")
                    {256, 1, 64, 100, 0, 0, 0, 1, 1}, {256, 1, 64, 100, 0, 0, 0, 0, 1}, {512, 1, 32, 100, 0, 0, 0, 1, 1}};
    for (const L &x : ls) {
        if ((x.cluster != 0) != clusters) continue;
        const attn_long::Knobs k = {x.per_sm, x.min_chunk, x.kb * 1024, x.cluster, x.rows, x.rel};
        Variant v;
        char nm[64], rows[16] = "";
        if (x.bulk && x.rows != 32 && !x.tc) snprintf(rows, sizeof rows, " r%d", x.rows);
        const char *pre = x.bulk ? (x.tc ? "BT" : "B") : x.tc ? "T" : x.cluster ? "" : "S";
        if (x.cluster) snprintf(nm, sizeof nm, "%sK%d%s c%d b%d%s", pre, x.cluster, x.threads == 512 ? " t512" : "", x.min_chunk, x.kb, rows);
        else snprintf(nm, sizeof nm, "%s%d sm%d c%d b%d%s%s", pre, x.threads, x.per_sm, x.min_chunk, x.kb, rows, x.rel ? " f" : "");
        v.name = nm;
        if (x.tc) {
            if (x.cluster) v.launch = x.bulk ? long_launcher<true, true, true>(k, x.threads) : long_launcher<true, false, true>(k, x.threads);
            else v.launch = x.bulk ? long_launcher<false, true, true>(k, x.threads) : long_launcher<false, false, true>(k, x.threads);
        } else if (x.bulk && x.cluster)
            v.launch = [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_long<256, true, true>(k, b, l, pdl, st); };
        else if (x.bulk && x.threads == 512)
            v.launch = [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_long<512, false, true>(k, b, l, pdl, st); };
        else if (x.bulk)
            v.launch = [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_long<256, false, true>(k, b, l, pdl, st); };
        else if (x.cluster && x.threads == 512)
            v.launch = [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_long<512, true>(k, b, l, pdl, st); };
        else if (x.cluster)
            v.launch = [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_long<256, true>(k, b, l, pdl, st); };
        else if (x.threads == 512)
            v.launch = [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_long<512>(k, b, l, pdl, st); };
        else
            v.launch = [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_long<256>(k, b, l, pdl, st); };
        v.carveout = [](int) {};  // the product's 70% (kcuda_prepare_func)
        vs.push_back(v);
    }
}

template <class C>
void add_config(std::vector<Variant> &vs, const char *cname) {
    int occ = 0;
    CK(cudaFuncSetAttribute(attn_decode_knobs::attn_decode_kernel<128, true, C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            (int)attn_decode_knobs::dyn_smem<C, 128>(128, true, attn_decode_knobs::MAX_SPLITS)));
    CK(cudaFuncSetAttribute(attn_decode_knobs::attn_decode_kernel<128, true, C>, cudaFuncAttributePreferredSharedMemoryCarveout, 70));
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, attn_decode_knobs::attn_decode_kernel<128, true, C>, C::THREADS,
                                                     attn_decode_knobs::dyn_smem<C, 128>(128, true, 1)));
    printf("config %s: %d threads, tile %d, %zu B dynamic shared memory, %d blocks per SM fit\n", cname, C::THREADS,
           C::TILE, attn_decode_knobs::dyn_smem<C, 128>(128, true, 52), occ);
    for (int per_sm = 1; per_sm <= 4 && per_sm <= std::max(occ, 1); per_sm++)
        for (int mc : {64, 128, 256})
            for (int align = 0; align < 2; align++)
                for (int spread = 1; spread >= 0; spread--) {
                    const Knobs k = {per_sm, mc, align != 0, spread != 0};
                    Variant v;
                    char nm[96];
                    snprintf(nm, sizeof nm, "%s sm%d c%d %s %s", cname, per_sm, mc, align ? "at" : "a16",
                             spread ? "spread" : "group");
                    v.name = nm;
                    v.launch = [k](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_mine<C>(k, b, l, pdl, st); };
                    v.carveout = [](int pc) {
                        CK(cudaFuncSetAttribute(attn_decode_knobs::attn_decode_kernel<128, true, C>,
                                                cudaFuncAttributePreferredSharedMemoryCarveout, pc));
                    };
                    vs.push_back(v);
                }
}

float h2f(__half h) { return __half2float(h); }

void alloc(Bufs &b, const Shape &s, int n_layers) {
    b.s = s;
    b.n_layers = n_layers;
    const size_t n = b.layer_n() * n_layers;
    CK(cudaMalloc(&b.kc, n * 2));
    CK(cudaMalloc(&b.vc, n * 2));
    const int qkv_dim = (s.n_heads + 2 * s.n_kv) * s.hd;
    CK(cudaMalloc(&b.qkv, (size_t)qkv_dim * 4));
    CK(cudaMalloc(&b.out, (size_t)s.n_heads * s.hd * 4));
    CK(cudaMalloc(&b.part, part_floats(s) * 4));
    CK(cudaMalloc(&b.count, (size_t)s.n_heads * 4));
    CK(cudaMemset(b.count, 0, (size_t)s.n_heads * 4));
    CK(cudaMalloc(&b.pos, 4));
    std::vector<float> cs((size_t)s.ctx * s.hd);
    rope_table_init(cs.data(), s.ctx, s.hd, 500000.0f);
    CK(cudaMalloc(&b.rope, cs.size() * 4));
    CK(cudaMemcpy(b.rope, cs.data(), cs.size() * 4, cudaMemcpyHostToDevice));
}

void release(Bufs &b) {
    cudaFree(b.kc), cudaFree(b.vc), cudaFree(b.qkv), cudaFree(b.out), cudaFree(b.part), cudaFree(b.rope);
    cudaFree(b.count), cudaFree(b.pos);
}

// The stream is non-blocking: host-side copies and memsets are waited for before any launch.
void set_pos(Bufs &b, int P) {
    b.host_pos = P;
    CK(cudaMemcpy(b.pos, &P, 4, cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());
}

float frand() { return (float)((int)(rnd() % 20001) - 10000) / 10000.0f; }

// ---- check ---------------------------------------------------------------------------------------

struct CheckData {
    std::vector<__half> kc, vc;  // one layer, as uploaded
    std::vector<float> qkv, rope;
};

// Reference output at position P from the host cache (row P taken from the device's own write,
// checked separately against the host RoPE) into ref [n_heads][hd]; av = sum_j p_j |v_j| per output.
void reference(const Shape &s, const CheckData &d, int P, const std::vector<__half> &krow, const std::vector<__half> &vrow,
               std::vector<double> &ref, std::vector<double> &av) {
    const int hd = s.hd, half = hd / 2, rep = s.n_heads / s.n_kv;
    ref.assign((size_t)s.n_heads * hd, 0.0);
    av.assign((size_t)s.n_heads * hd, 0.0);
    std::vector<double> q(hd), sc(P + 1);
    const float *cs = d.rope.data() + (size_t)P * hd;
    for (int h = 0; h < s.n_heads; h++) {
        const int g = h / rep;
        const float *qr = d.qkv.data() + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], sn = cs[2 * i + 1], a = qr[i], b = qr[i + half];
            q[i] = (double)(a * c - b * sn);
            q[i + half] = (double)(b * c + a * sn);
        }
        double mx = -1e300;
        for (int j = 0; j <= P; j++) {
            double acc = 0;
            for (int i = 0; i < hd; i++) {
                const __half kv = j == P ? krow[(size_t)g * hd + i] : d.kc[((size_t)g * s.ctx + j) * hd + i];
                acc += q[i] * h2f(kv);
            }
            sc[j] = acc / sqrt((double)hd);
            mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int j = 0; j <= P; j++) sum += (sc[j] = exp(sc[j] - mx));
        for (int j = 0; j <= P; j++) {
            const double w = sc[j] / sum;
            for (int i = 0; i < hd; i++) {
                const double v = h2f(j == P ? vrow[(size_t)g * hd + i] : d.vc[((size_t)g * s.ctx + j) * hd + i]);
                ref[(size_t)h * hd + i] += w * v;
                av[(size_t)h * hd + i] += w * fabs(v);
            }
        }
    }
}

// The cache rows a launch wrote at P against the host: K = f16 of RoPE(k) (within the f16 rounding
// of a value computed in another order), V = f16 of v exactly. Returns the groups found wrong.
int row_check(const Shape &s, const CheckData &d, int P, const std::vector<__half> &krow, const std::vector<__half> &vrow) {
    int bad = 0;
    const int half = s.hd / 2;
    const float *cs = d.rope.data() + (size_t)P * s.hd;
    for (int g = 0; g < s.n_kv; g++) {
        const float *kr = d.qkv.data() + (size_t)(s.n_heads + g) * s.hd;
        const float *vr = kr + (size_t)s.n_kv * s.hd;
        bool ok = true;
        for (int i = 0; i < half && ok; i++) {
            const float e0 = kr[i] * cs[2 * i] - kr[i + half] * cs[2 * i + 1];
            const float e1 = kr[i + half] * cs[2 * i] + kr[i] * cs[2 * i + 1];
            const float g0 = h2f(krow[(size_t)g * s.hd + i]), g1 = h2f(krow[(size_t)g * s.hd + i + half]);
            if (fabsf(g0 - e0) > 2e-3f * fabsf(e0) + 1e-4f || fabsf(g1 - e1) > 2e-3f * fabsf(e1) + 1e-4f) {
                fprintf(stderr, "FAIL shape %d/%d hd %d pos %d: K row of group %d wrong at %d\n", s.n_heads, s.n_kv, s.hd, P, g, i);
                ok = false;
            }
        }
        for (int i = 0; i < s.hd && ok; i++)
            if (h2f(vrow[(size_t)g * s.hd + i]) != h2f(__float2half(vr[i]))) {
                fprintf(stderr, "FAIL shape %d/%d hd %d pos %d: V row of group %d wrong at %d\n", s.n_heads, s.n_kv, s.hd, P, g, i);
                ok = false;
            }
        bad += !ok;
    }
    return bad;
}

// Runs every variant at the positions of one shape; marks failures. Returns the failures.
int check_shape(std::vector<Variant> &vs, Variant &v3, const Shape &s, const std::vector<int> &positions, cudaStream_t st) {
    Bufs b;
    alloc(b, s, 1);
    CheckData d;
    const size_t n = b.layer_n();
    d.kc.resize(n), d.vc.resize(n);
    for (size_t i = 0; i < n; i++) d.kc[i] = __float2half(frand()), d.vc[i] = __float2half(frand());
    const int qkv_dim = (s.n_heads + 2 * s.n_kv) * s.hd;
    d.qkv.resize(qkv_dim);
    for (int i = 0; i < qkv_dim; i++) d.qkv[i] = 4.0f * frand();  // scores of std ~1.3: a peaked softmax
    d.rope.resize((size_t)s.ctx * s.hd);
    rope_table_init(d.rope.data(), s.ctx, s.hd, 500000.0f);
    CK(cudaMemcpy(b.kc, d.kc.data(), n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(b.vc, d.vc.data(), n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(b.qkv, d.qkv.data(), (size_t)qkv_dim * 4, cudaMemcpyHostToDevice));
    int fails = 0;
    const bool v3_ok = s.hd % 16 == 0 && s.hd <= 128;
    std::vector<Variant *> all;
    for (auto &v : vs) all.push_back(&v);
    if (v3_ok) all.push_back(&v3);
    std::vector<float> got((size_t)s.n_heads * s.hd);
    std::vector<int> cnt(s.n_heads);
    // Every launch at P writes row P of the cache; the host mirror (d.kc, d.vc) takes the first
    // variant's row, and that row is put back on the device after all variants ran at P, so that
    // the rows below any later position are the mirror's (positions ascend).
    const size_t row_pitch = (size_t)s.ctx * s.hd * 2, row_bytes = (size_t)s.hd * 2;
    std::vector<__half> krow((size_t)s.n_kv * s.hd), vrow((size_t)s.n_kv * s.hd);
    std::vector<__half> kown(krow.size()), vown(vrow.size());
    std::vector<double> ref, av, ref2, av2;
    double worst_all = 0;
    int own_rows = 0;  // launches whose row at P differed from the first variant's
    for (int P : positions) {
        set_pos(b, P);
        bool have_ref = false;
        for (Variant *v : all) {
            CK(cudaMemset(b.out, 0xff, got.size() * 4));  // NaN: an output not written fails
            CK(cudaDeviceSynchronize());
            if (v->launch(b, 0, KCUDA_PDL_LATE, st)) {
                fprintf(stderr, "%s: launch refused: %s\n", v->name.c_str(), kcuda_last_error());
                v->ok = false, fails++;
                continue;
            }
            CK(cudaStreamSynchronize(st));
            CK(cudaMemcpy(got.data(), b.out, got.size() * 4, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(cnt.data(), b.count, cnt.size() * 4, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy2D(kown.data(), row_bytes, b.kc + (size_t)P * s.hd, row_pitch, row_bytes, s.n_kv, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy2D(vown.data(), row_bytes, b.vc + (size_t)P * s.hd, row_pitch, row_bytes, s.n_kv, cudaMemcpyDeviceToHost));
            if (!have_ref) {  // the row at P as the first variant wrote it, checked against the host
                krow = kown, vrow = vown;
                fails += row_check(s, d, P, krow, vrow);
                reference(s, d, P, krow, vrow, ref, av);
                have_ref = true;
            }
            // a row at P rounded differently (a valid f32 ordering): that variant gets its own reference
            const bool same = !memcmp(kown.data(), krow.data(), krow.size() * 2) && !memcmp(vown.data(), vrow.data(), vrow.size() * 2);
            if (!same) {
                own_rows++;
                if (row_check(s, d, P, kown, vown)) v->ok = false, fails++;
                reference(s, d, P, kown, vown, ref2, av2);
            }
            const std::vector<double> &R = same ? ref : ref2, &A = same ? av : av2;
            double worst = 0;
            for (size_t i = 0; i < got.size(); i++) {
                const double e = fabs((double)got[i] - R[i]) / (A[i] + 1e-30);
                if (!(e <= worst)) worst = std::isnan(e) ? 1e30 : e;
            }
            int nz = 0;
            for (int c : cnt) nz += c != 0;
            worst_all = std::max(worst_all, worst);
            if (!(worst <= 3e-5) || nz) {
                if (v->ok)
                    fprintf(stderr, "FAIL %s: shape %d/%d hd %d ctx %d pos %d: worst error %.3g of sum p|v| (bound 3e-5), %d counters left\n",
                            v->name.c_str(), s.n_heads, s.n_kv, s.hd, s.ctx, P, worst, nz);
                v->ok = false, fails++;
                CK(cudaMemset(b.count, 0, (size_t)s.n_heads * 4));
                CK(cudaDeviceSynchronize());
            }
        }
        if (have_ref) {  // the mirror's row P, on the host and on the device
            for (int g = 0; g < s.n_kv; g++)
                for (int i = 0; i < s.hd; i++) {
                    d.kc[((size_t)g * s.ctx + P) * s.hd + i] = krow[(size_t)g * s.hd + i];
                    d.vc[((size_t)g * s.ctx + P) * s.hd + i] = vrow[(size_t)g * s.hd + i];
                }
            CK(cudaMemcpy2D(b.kc + (size_t)P * s.hd, row_pitch, krow.data(), row_bytes, row_bytes, s.n_kv, cudaMemcpyHostToDevice));
            CK(cudaMemcpy2D(b.vc + (size_t)P * s.hd, row_pitch, vrow.data(), row_bytes, row_bytes, s.n_kv, cudaMemcpyHostToDevice));
        }
    }
    if (own_rows) printf("(%d launches wrote a row at P that differs from the first variant's; each checked with its own)\n", own_rows);
    printf("check %d/%d hd %d ctx %d at %zu positions, %zu variants: worst error %.3g of sum p|v|, %d failures\n", s.n_heads,
           s.n_kv, s.hd, s.ctx, positions.size(), all.size(), worst_all, fails);
    release(b);
    return fails;
}

// ---- time ----------------------------------------------------------------------------------------

struct Chain {
    uint8_t *w = nullptr;  // LAYERS x (qkv | o | gate/up | down)
    size_t b_qkv, b_o, b_gu, b_dn, layer;
    float *x, *att, *gu, *nw;
    int dim = 2560, ffn = 6912, nq = 3840;
};

void chain_alloc(Chain &c) {
    c.b_qkv = (size_t)c.nq * c.dim / 4, c.b_o = (size_t)c.dim * c.dim / 4, c.b_gu = (size_t)2 * c.ffn * c.dim / 4;
    c.b_dn = (size_t)c.dim * c.ffn / 4;
    c.layer = c.b_qkv + c.b_o + c.b_gu + c.b_dn;
    CK(cudaMalloc(&c.w, c.layer * LAYERS));
    const std::vector<uint8_t> h = lab_random_i2s(c.layer);
    for (int l = 0; l < LAYERS; l++) CK(cudaMemcpy(c.w + c.layer * l, h.data(), c.layer, cudaMemcpyHostToDevice));
    std::vector<float> hx(c.ffn);
    for (auto &v : hx) v = frand();
    CK(cudaMalloc(&c.x, c.ffn * 4));
    CK(cudaMalloc(&c.att, c.ffn * 4));
    CK(cudaMalloc(&c.gu, c.ffn * 4));
    CK(cudaMalloc(&c.nw, c.ffn * 4));
    for (float *p : {c.x, c.att, c.gu}) CK(cudaMemcpy(p, hx.data(), c.ffn * 4, cudaMemcpyHostToDevice));
    for (auto &v : hx) v = 1.0f + 0.1f * frand();
    CK(cudaMemcpy(c.nw, hx.data(), c.ffn * 4, cudaMemcpyHostToDevice));
}

// The QKV projection's trigger in the chain: the product's LATE (after its PDL wait), or EARLY
// (at its start: attention then launches while the previous layer's down projection still runs
// and its K/V loads, issued before its own wait, have two kernels' time to land; mode "long").
int g_qkv_pdl = KCUDA_PDL_LATE;

// One decode layer l: QKV -> attention (attn, or none) -> O -> gate/up -> down, triggers LLELL
// (QKV: g_qkv_pdl).
int chain_layer(Chain &c, Bufs &b, int l, const Variant *attn, int attn_pdl, cudaStream_t st) {
    const uint8_t *base = c.w + c.layer * l;
    KcudaTernary m = {};
    m.gamma[0] = m.gamma[1] = m.gamma[2] = 0.01f;
    m.d_codes = base;
    m.n_out = c.nq;
    m.k_pad = c.dim;
    m.seg_end[0] = c.dim;
    m.seg_end[1] = c.dim + 640;
    int r = kcuda_w2a8_gemv(&m, c.x, c.dim, c.nw, 1e-5f, nullptr, nullptr, nullptr, KCUDA_EP_F32, b.qkv, g_qkv_pdl, st);
    if (r) return r;
    if (attn) {
        r = attn->launch(b, l, attn_pdl, st);
        if (r) return r;
    }
    m.d_codes = base + c.b_qkv;
    m.n_out = c.dim;
    m.seg_end[0] = m.seg_end[1] = c.dim;
    r = kcuda_w2a8_gemv(&m, attn ? b.out : b.qkv, c.dim, c.nw, 1e-5f, nullptr, nullptr, nullptr, KCUDA_EP_RESID, c.x, KCUDA_PDL_EARLY, st);
    if (r) return r;
    m.d_codes = base + c.b_qkv + c.b_o;
    m.n_out = 2 * c.ffn;
    m.glu = 1;
    r = kcuda_w2a8_gemv(&m, c.x, c.dim, c.nw, 1e-5f, nullptr, nullptr, nullptr, KCUDA_EP_GLU, c.gu, KCUDA_PDL_LATE, st);
    if (r) return r;
    m.d_codes = base + c.b_qkv + c.b_o + c.b_gu;
    m.n_out = c.dim;
    m.k_pad = c.ffn;
    m.glu = 0;
    return kcuda_w2a8_gemv(&m, c.gu, c.ffn, c.nw, 1e-5f, nullptr, nullptr, nullptr, KCUDA_EP_RESID, c.x, KCUDA_PDL_LATE, st);
}

const int TIME_POS[4] = {96, 544, 2080, 4064};

double time_alone(Variant &v, Bufs &b, int pdl, cudaStream_t st) {
    return lab_graph_us(st, LAYERS, 11, 2, [&](int i) { return v.launch(b, i, pdl, st); });
}

double time_chain(Chain &c, Bufs &b, const Variant *v, int pdl, cudaStream_t st) {
    double per = 0;
    // one graph of LAYERS layers; lab_graph_us divides by its launches, so it is told LAYERS
    per = lab_graph_us(st, LAYERS, 15, 3, [&](int i) { return chain_layer(c, b, i, v, pdl, st); });
    return per;
}

// A launch that waits for its predecessor and leaves: what the unused kernel of a device-side
// choice between two launches per layer costs at least (it must wait, or its successor could
// pass its own PDL wait while attention still runs).
__global__ void pass_kernel(const int *pos) {
    pdl_wait();
    if (*pos < 0) __trap();  // never: keeps the read
}

double lab_now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median3(double a, double b, double c) { return std::max(std::min(a, b), std::min(std::max(a, b), c)); }

// Capture + instantiate of the 30-layer chain as one graph (about the product's decode graph:
// 150 kernels here, 152 there): milliseconds on the host and device memory taken while it lives.
void graph_cost(Chain &c, Bufs &b, const Variant *v, cudaStream_t st, double *ms, double *mib) {
    CK(cudaDeviceSynchronize());
    size_t free0 = 0, free1 = 0, total = 0;
    CK(cudaMemGetInfo(&free0, &total));
    const double t0 = lab_now_ms();
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int l = 0; l < LAYERS; l++)
        if (chain_layer(c, b, l, v, KCUDA_PDL_LATE, st)) exit(1);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphUpload(ge, st));
    CK(cudaStreamSynchronize(st));
    *ms = lab_now_ms() - t0;
    CK(cudaMemGetInfo(&free1, &total));
    *mib = ((double)free0 - (double)free1) / 1048576.0;
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
}

// The sweep (mode "sweep"): see the top of the file.
void sweep(Chain &c, Bufs &b, Variant &v3, Variant *prod, Variant *lng, cudaStream_t st) {
    std::vector<int> P;
    for (int p = 64; p < b.s.ctx; p += 64) P.push_back(p);
    P.push_back(b.s.ctx - 1);
    const KcudaAttnShape a = {b.s.n_heads, b.s.n_kv, b.s.hd, b.s.ctx, 0, b.rope};
    const KcudaAttnShape a8 = {32, 8, 128, 4096, 0, b.rope};
    printf("\nsweep, 2B-4T heads in place (chain - gemv, us per layer, median of 3 rounds); the product's limit: %d (Llama3-8B heads: %d)\n",
           kcuda_attn_decode_head_until(&a), kcuda_attn_decode_head_until(&a8));
    printf("| position | gemv chain | short (v3) | long | product by position | best |\n|---:|---:|---:|---:|---:|---|\n");
    std::vector<double> ts(P.size()), tl(P.size()), tp(P.size());
    for (size_t i = 0; i < P.size(); i++) {
        set_pos(b, P[i]);
        double r[3][4];
        for (int round = 0; round < 3; round++) {
            r[round][0] = time_chain(c, b, nullptr, KCUDA_PDL_LATE, st);
            r[round][1] = time_chain(c, b, &v3, KCUDA_PDL_LATE, st) - r[round][0];
            r[round][2] = time_chain(c, b, lng, KCUDA_PDL_LATE, st) - r[round][0];
            r[round][3] = time_chain(c, b, prod, KCUDA_PDL_LATE, st) - r[round][0];
        }
        double m[4];
        for (int k = 0; k < 4; k++) m[k] = median3(r[0][k], r[1][k], r[2][k]);
        ts[i] = m[1], tl[i] = m[2], tp[i] = m[3];
        printf("SWEEP %5d %7.2f %7.2f %7.2f %7.2f %s\n", P[i], m[0], m[1], m[2], m[3], m[1] < m[2] ? "short" : "long");
        fflush(stdout);
    }
    // the crossover: the first position from which the long-context kernel is never slower
    size_t k = P.size();
    while (k > 0 && tl[k - 1] <= ts[k - 1]) k--;
    int short_wins = 0;
    for (size_t i = 0; i < k; i++) short_wins += ts[i] < tl[i];
    printf("CROSS 2B: the long-context kernel is at least as fast from position %d on (short faster at %d of the %zu positions below)\n",
           k < P.size() ? P[k] : -1, short_wins, k);
    double lost = 0, best = 0;
    for (size_t i = 0; i < P.size(); i++) lost += tp[i] - std::min(ts[i], tl[i]), best += std::min(ts[i], tl[i]);
    printf("CROSS product by position: %.2f us per layer summed over the sweep above the best of the two at each position (%.2f)\n",
           lost, best);
}

void sweep_8b(Variant &v3, Variant *lng, Variant *prod, cudaStream_t st) {
    Bufs b;
    alloc(b, {32, 8, 128, 4096}, LAYERS);
    const size_t n = b.layer_n() * LAYERS;
    {
        std::vector<__half> h(n);
        for (auto &x : h) x = __float2half(frand());
        CK(cudaMemcpy(b.kc, h.data(), n * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(b.vc, h.data(), n * 2, cudaMemcpyHostToDevice));
        std::vector<float> q((32 + 16) * 128);
        for (auto &x : q) x = frand();
        CK(cudaMemcpy(b.qkv, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
    }
    printf("\nsweep, Llama3-8B heads (32/8/128) alone (30 launches, us per launch, median of 3 rounds): short, long, product by position\n");
    int cross = -1;
    for (int p = 64; p < 4096; p += 128) {
        set_pos(b, p);
        double r[3][3];
        for (int round = 0; round < 3; round++) {
            r[round][0] = time_alone(v3, b, KCUDA_PDL_LATE, st);
            r[round][1] = time_alone(*lng, b, KCUDA_PDL_LATE, st);
            r[round][2] = time_alone(*prod, b, KCUDA_PDL_LATE, st);
        }
        const double s0 = median3(r[0][0], r[1][0], r[2][0]), l0 = median3(r[0][1], r[1][1], r[2][1]);
        const double p0 = median3(r[0][2], r[1][2], r[2][2]);
        if (cross < 0 && l0 <= s0) cross = p;
        printf("SWEEP8B %5d %7.2f %7.2f %7.2f %s\n", p, s0, l0, p0, s0 < l0 ? "short" : "long");
    }
    printf("CROSS 8B alone: first position where the long-context kernel is at least as fast: %d\n", cross);
    release(b);
}

// The timeline of one launch of a spans variant (layer 15 of 30) in place (chain) or alone: per
// block the marks of attn_long::probe_mark; printed: blocks, start spread, end, and per phase the
// median and largest duration over the blocks (ns: clock64 deltas scaled by the block's own
// global-timer / clock ratio), and the phases of the block that ended last (the combine).
void probe_report(Variant &v, Chain *c, Bufs &b, int P, cudaStream_t st) {
    const int MAXB = 4096;
    if (!g_probe) CK(cudaMalloc(&g_probe, (size_t)MAXB * attn_long::PROBE_SLOTS * 8));
    CK(cudaMemset(g_probe, 0, (size_t)MAXB * attn_long::PROBE_SLOTS * 8));
    set_pos(b, P);
    g_probe_layer = 15;
    if (c) time_chain(*c, b, &v, KCUDA_PDL_LATE, st);
    else time_alone(v, b, KCUDA_PDL_LATE, st);
    g_probe_layer = -1;
    CK(cudaDeviceSynchronize());
    std::vector<unsigned long long> h((size_t)MAXB * attn_long::PROBE_SLOTS);
    CK(cudaMemcpy(h.data(), g_probe, h.size() * 8, cudaMemcpyDeviceToHost));
    std::vector<int> blk;
    for (int i = 0; i < MAXB; i++)
        if (h[(size_t)i * attn_long::PROBE_SLOTS + 9]) blk.push_back(i);
    if (blk.empty()) {
        printf("PROBE %s at %d %s: no block recorded\n", v.name.c_str(), P, c ? "chain" : "alone");
        return;
    }
    auto R = [&](int i, int k) { return h[(size_t)i * attn_long::PROBE_SLOTS + k]; };
    unsigned long long t0 = ~0ull, tend = 0;
    int last = blk[0];
    std::vector<double> ratio;
    for (int i : blk) {
        t0 = std::min(t0, R(i, 0));
        if (R(i, 9) > tend) tend = R(i, 9), last = i;
        if (R(i, 8) > R(i, 1)) ratio.push_back((double)(R(i, 9) - R(i, 0)) / (double)(R(i, 8) - R(i, 1)));
    }
    std::sort(ratio.begin(), ratio.end());
    const double ns_per_clk = ratio.empty() ? 0.0 : ratio[ratio.size() / 2];
    std::vector<double> st0, en;
    for (int i : blk) st0.push_back((double)(R(i, 0) - t0)), en.push_back((double)(R(i, 9) - t0));
    std::sort(st0.begin(), st0.end());
    std::sort(en.begin(), en.end());
    printf("PROBE %s at %d %s: %zu blocks, %.3f ns/clk; start +%.0f/+%.0f/+%.0f ns (min/med/max), end +%.0f/+%.0f ns (med/max)\n",
           v.name.c_str(), P, c ? "chain" : "alone", blk.size(), ns_per_clk, st0[0], st0[st0.size() / 2], st0.back(),
           en[en.size() / 2], en.back());
    const char *names[9] = {"", "", "issue", "wait", "q", "landed", "tile", "ticket", "end"};
    printf("PROBE   phase ns (median / max over blocks; the last block):");
    for (int k = 2; k <= 8; k++) {
        std::vector<double> d;
        for (int i : blk)
            if (R(i, k) >= R(i, k - 1) && R(i, k - 1)) d.push_back((double)(R(i, k) - R(i, k - 1)) * ns_per_clk);
        std::sort(d.begin(), d.end());
        const double dl = R(last, k) >= R(last, k - 1) ? (double)(R(last, k) - R(last, k - 1)) * ns_per_clk : -1;
        if (!d.empty()) printf(" %s %.0f/%.0f;%.0f", names[k], d[d.size() / 2], d.back(), dl);
    }
    // the first tile's parts: landed -> scores -> softmax -> P.V (marks 5, 11, 12, 6)
    const int sub[4] = {5, 11, 12, 6};
    const char *subn[3] = {"scores", "softmax", "pv"};
    for (int k = 0; k < 3; k++) {
        std::vector<double> d;
        for (int i : blk)
            if (R(i, sub[k]) && R(i, sub[k + 1]) >= R(i, sub[k])) d.push_back((double)(R(i, sub[k + 1]) - R(i, sub[k])) * ns_per_clk);
        std::sort(d.begin(), d.end());
        if (!d.empty()) printf(" %s %.0f/%.0f", subn[k], d[d.size() / 2], d.back());
    }
    printf("\n");
}

// Mode "long" (issue #12): the spans kernel's settings and the product's entry points checked
// against the host reference (2B-4T heads at 24 positions up to 4095; GQA 1, 3, 8 and 12,
// head_dim 64, 80, 96, 100 and 256, Llama3-8B's heads), then in place (chain - gemv, us per
// layer, median of 3 rounds, the rounds interleaved) at positions 64 / 512 / 1024 / 2048 / 4095
// against the product by position (the head kernel below its limit, kcuda_attn_decode from
// there), kcuda_attn_decode alone, the tiled per-KV-group kernel in its product setting
// (kernels/dev/attention_decode_knobs.cuh "t256x128s1ip sm2 c128 at group") and v3; then
// Llama3-8B heads alone (30 launches).
int long_mode(std::vector<Variant> &vs, Variant &v3, const char *only, bool clusters, cudaStream_t st) {
    std::vector<Variant> keep;
    for (auto &v : vs)  // the product's entry points, and the tiled kernel's product setting (before the spans kernel)
        if (v.name.rfind("product", 0) == 0 || v.name == "t256x128s1ip sm2 c128 at group") keep.push_back(v);
    add_long(keep, clusters);
    if (only) add_long(keep, !clusters);  // settings named from both instantiations
    if (only) {
        std::vector<Variant> k2;
        for (auto &v : keep)
            if (v.name.rfind("product", 0) == 0 || v.name[0] == 't' || ("," + std::string(only) + ",").find("," + v.name + ",") != std::string::npos)
                k2.push_back(v);
        keep.swap(k2);
    }
    vs.swap(keep);
    int fails = 0;
    fails += check_shape(vs, v3, {20, 5, 128, 4096},
                         {0, 1, 15, 16, 17, 31, 63, 64, 65, 127, 128, 200, 511, 512, 1000, 1407, 1663, 1664, 2047, 2048,
                          2080, 3001, 4094, 4095},
                         st);
    fails += check_shape(vs, v3, {32, 8, 128, 4096}, {0, 100, 1100, 4095}, st);
    // the other shapes without the tiled lab setting (its lab launcher instantiates head_dim 128 only)
    std::vector<Variant> any;
    for (auto &v : vs)
        if (v.name[0] != 't') any.push_back(v);
    fails += check_shape(any, v3, {8, 8, 128, 1024}, {0, 64, 65, 700, 1023}, st);
    fails += check_shape(any, v3, {12, 4, 100, 1024}, {0, 17, 65, 700, 1023}, st);
    fails += check_shape(any, v3, {16, 2, 128, 1024}, {0, 64, 65, 700, 1023}, st);
    fails += check_shape(any, v3, {24, 2, 96, 1024}, {0, 64, 65, 700, 1023}, st);
    fails += check_shape(any, v3, {4, 2, 64, 1024}, {0, 64, 65, 700, 1023}, st);
    fails += check_shape(any, v3, {6, 3, 80, 1024}, {0, 33, 65, 700, 1023}, st);
    fails += check_shape(any, v3, {8, 1, 256, 2048}, {0, 64, 65, 1500, 2047}, st);
    // where the f16 P.V (p as f16 hi + lo) missed the bound on the GPU (2026-12-06 18:51, worst
    // 1.7e-4 / 3.5e-5 / 2.8e-4 of sum p|v| against 3e-5): outputs in small probabilities
    fails += check_shape(any, v3, {64, 64, 64, 4160}, {0, 65, 511, 512, 1000, 4159}, st);
    fails += check_shape(any, v3, {32, 32, 128, 4160}, {0, 65, 1000, 4159}, st);
    fails += check_shape(any, v3, {16, 2, 128, 4160}, {0, 65, 4159}, st);
    for (auto &v : vs)
        for (auto &w : any)
            if (w.name == v.name && !w.ok) v.ok = false;
    printf("check: %d failures\n", fails);

    const int POS[5] = {64, 512, 1024, 2048, 4095};
    Bufs b;
    alloc(b, {20, 5, 128, 4096}, LAYERS);
    {
        const size_t n = b.layer_n() * LAYERS;
        std::vector<__half> h(n);
        for (auto &x : h) x = __float2half(frand());
        CK(cudaMemcpy(b.kc, h.data(), n * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(b.vc, h.data(), n * 2, cudaMemcpyHostToDevice));
        std::vector<float> q(3840);
        for (auto &x : q) x = frand();
        CK(cudaMemcpy(b.qkv, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
    }
    Chain c;
    chain_alloc(c);
    std::vector<Variant *> tv;
    for (auto &v : vs)
        if (v.ok) tv.push_back(&v);
    if (v3.ok) tv.push_back(&v3);
    // [variant][position][round]
    std::vector<std::vector<std::vector<double>>> t(tv.size(), std::vector<std::vector<double>>(5, std::vector<double>(3)));
    std::vector<double> gemv(5);
    for (int round = 0; round < 3; round++)
        for (int pi = 0; pi < 5; pi++) {
            set_pos(b, POS[pi]);
            const double g = time_chain(c, b, nullptr, KCUDA_PDL_LATE, st);
            if (round == 1) gemv[pi] = g;
            for (size_t k = 0; k < tv.size(); k++) t[k][pi][round] = time_chain(c, b, tv[k], KCUDA_PDL_LATE, st) - g;
        }
    printf("\nin place (30 decode layers: chain - gemv, us per layer, median of 3 rounds); gemv chain %.2f %.2f %.2f %.2f %.2f\n",
           gemv[0], gemv[1], gemv[2], gemv[3], gemv[4]);
    printf("| variant | 64 | 512 | 1024 | 2048 | 4095 |\n|---|---:|---:|---:|---:|---:|\n");
    std::vector<std::vector<double>> med(tv.size(), std::vector<double>(5));
    int prod = -1;
    for (size_t k = 0; k < tv.size(); k++) {
        for (int pi = 0; pi < 5; pi++) med[k][pi] = median3(t[k][pi][0], t[k][pi][1], t[k][pi][2]);
        if (tv[k]->name == "product by position") prod = (int)k;
        printf("LONG | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", tv[k]->name.c_str(), med[k][0], med[k][1], med[k][2], med[k][3],
               med[k][4]);
    }
    if (prod >= 0)
        for (size_t k = 0; k < tv.size(); k++)
            if ((int)k != prod)
                printf("RATIO %-32s / product by position: %.3f %.3f %.3f %.3f %.3f\n", tv[k]->name.c_str(), med[k][0] / med[prod][0],
                       med[k][1] / med[prod][1], med[k][2] / med[prod][2], med[k][3] / med[prod][3], med[k][4] / med[prod][4]);
    for (int pi = 0; pi < 5; pi++) {
        size_t best = 0;
        for (size_t k = 1; k < tv.size(); k++)
            if (med[k][pi] < med[best][pi]) best = k;
        printf("BEST at %4d: %-32s %.2f us (product by position %.2f)\n", POS[pi], tv[best]->name.c_str(), med[best][pi],
               prod >= 0 ? med[prod][pi] : 0.0);
    }
    // QKV triggering at its start (EARLYQ): every variant's chain against the product's gemv
    // chain (QKV late), i.e. what a layer costs more than the GEMVs as the product runs them
    {
        std::vector<std::vector<std::vector<double>>> te(tv.size(), std::vector<std::vector<double>>(5, std::vector<double>(3)));
        std::vector<std::vector<double>> ge(5, std::vector<double>(3)), gl(5, std::vector<double>(3));
        for (int round = 0; round < 3; round++)
            for (int pi = 0; pi < 5; pi++) {
                set_pos(b, POS[pi]);
                g_qkv_pdl = KCUDA_PDL_LATE;
                gl[pi][round] = time_chain(c, b, nullptr, KCUDA_PDL_LATE, st);
                g_qkv_pdl = KCUDA_PDL_EARLY;
                ge[pi][round] = time_chain(c, b, nullptr, KCUDA_PDL_LATE, st);
                for (size_t k = 0; k < tv.size(); k++) te[k][pi][round] = time_chain(c, b, tv[k], KCUDA_PDL_LATE, st) - gl[pi][round];
                g_qkv_pdl = KCUDA_PDL_LATE;
            }
        printf("\nQKV early (chain with QKV triggering at its start - the gemv chain with QKV late, us per layer, median of 3)\n");
        printf("EARLYQ | gemv chain, QKV early - late | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
               median3(ge[0][0] - gl[0][0], ge[0][1] - gl[0][1], ge[0][2] - gl[0][2]), median3(ge[1][0] - gl[1][0], ge[1][1] - gl[1][1], ge[1][2] - gl[1][2]),
               median3(ge[2][0] - gl[2][0], ge[2][1] - gl[2][1], ge[2][2] - gl[2][2]), median3(ge[3][0] - gl[3][0], ge[3][1] - gl[3][1], ge[3][2] - gl[3][2]),
               median3(ge[4][0] - gl[4][0], ge[4][1] - gl[4][1], ge[4][2] - gl[4][2]));
        for (size_t k = 0; k < tv.size(); k++) {
            double m[5];
            for (int pi = 0; pi < 5; pi++) m[pi] = median3(te[k][pi][0], te[k][pi][1], te[k][pi][2]);
            printf("EARLYQ | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", tv[k]->name.c_str(), m[0], m[1], m[2], m[3], m[4]);
        }
    }
    // the timeline of one launch (layer 15) of the spans variants, in place (QKV late, then
    // early) and alone
    for (Variant *v : tv)
        if (v->name.rfind("T256 ", 0) == 0)  // the probe build: the product's instantiation (launch_long)
            for (int P : {1024, 2048, 4095}) {
                probe_report(*v, &c, b, P, st);
                g_qkv_pdl = KCUDA_PDL_EARLY;
                printf("(QKV early) ");
                probe_report(*v, &c, b, P, st);
                g_qkv_pdl = KCUDA_PDL_LATE;
                probe_report(*v, nullptr, b, P, st);
            }
    // alone at 4095: what the bytes cost without the chain around (10.5 MB per layer: 3.5 us at 3 TB/s)
    set_pos(b, 4095);
    for (Variant *v : tv) printf("ALONE at 4095 %-32s %.2f us per launch\n", v->name.c_str(), time_alone(*v, b, KCUDA_PDL_LATE, st));
    release(b);
    // Llama3-8B heads alone
    alloc(b, {32, 8, 128, 4096}, LAYERS);
    {
        const size_t n = b.layer_n() * LAYERS;
        std::vector<__half> h(n);
        for (auto &x : h) x = __float2half(frand());
        CK(cudaMemcpy(b.kc, h.data(), n * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(b.vc, h.data(), n * 2, cudaMemcpyHostToDevice));
        std::vector<float> q((32 + 16) * 128);
        for (auto &x : q) x = frand();
        CK(cudaMemcpy(b.qkv, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
    }
    printf("\nLlama3-8B heads (32/8/128) alone (30 launches, us per launch, median of 3 rounds):\n");
    for (int pi = 0; pi < 5; pi++) {
        set_pos(b, POS[pi]);
        for (Variant *v : tv) {
            double r[3];
            for (int round = 0; round < 3; round++) r[round] = time_alone(*v, b, KCUDA_PDL_LATE, st);
            printf("LONG8B %4d %-32s %.2f\n", POS[pi], v->name.c_str(), median3(r[0], r[1], r[2]));
        }
    }
    release(b);
    return fails ? 1 : 0;
}

// Mode "attn10" (issue #12, session 10; kernels/dev/run_attn10_device.sh): one short run that
// says whether the spans kernel may be the product and which combine is faster.
//  1. check: the product's entry points (by position; kcuda_attn_decode alone at every
//     position), the candidates below and v3 against the double-precision host reference at every
//     attention shape tests/gpu runs (GQA 1-8 and 12, head_dim 32, 48, 64, 66, 72, 80, 96, 100,
//     128, 256, contexts up to 8200, positions around every span, tile and chunk boundary and the
//     head kernel's limit), counters left zero (CHECK10 lines; "check: N failures");
//  2. in place (30 decode layers: chain - gemv, us per layer, median of 3 interleaved rounds) at
//     positions 96 / 544 / 1100 / 2048 / 4095, the product by position (attention.cu:
//     HEAD_COMBINE below the head kernel's limit, kcuda_attn_decode from there)
//     against each setting named (IN10, RATIO10 lines):
//       "by position, head fences" / "one-trip" / "one-trip rel": the head kernel's combine
//         FENCES (measured last session) / ONE_TRIP / ONE_TRIP_REL (attention_decode_head.cuh)
//         below its limit, the product's kcuda_attn_decode above;
//       "T256 sm1 c64 b100" / "T256 sm1 c64 b100 f": the spans kernel with every thread's fences
//         around the ticket (measured last session) / the ticket as one release-acquire atomic, at
//         every position.
// clusters (mode "attn10k", a process of its own: a fault there keeps the rest): the candidate
// is the spans kernel's cluster setting on tensor cores instead ("TK16 c32 b150": a KV group's
// 16 spans combined through distributed shared memory after a cluster barrier, no ticket, no
// partials in global memory; never run on a GPU before).
// quick ("attn10 quick"): the check at the 2B-4T heads and the three shapes where the f16 P.V
// missed the bound (64/64 hd 64, 32/32 hd 128, 16/2 hd 128; the 22 shapes took the whole 40 s
// of the first call), so that the timing runs.
int attn10_mode(std::vector<Variant> &base, Variant &v3, cudaStream_t st, bool clusters, bool quick) {
    std::vector<Variant> vs;
    for (auto &v : base)
        if (v.name.rfind("product", 0) == 0) vs.push_back(v);
    if (clusters) {
        std::vector<Variant> lv;
        add_long(lv, true);
        for (auto &v : lv)
            if (v.name == "TK16 c32 b150") vs.push_back(v);
    }
    Variant h0, h1, h1r;
    h0.name = "by position, head fences";
    h0.launch = launch_by_pos_head<attn_head::FENCES>;
    h1.name = "by position, head one-trip";
    h1.launch = launch_by_pos_head<attn_head::ONE_TRIP>;
    h1r.name = "by position, head one-trip rel";
    h1r.launch = launch_by_pos_head<attn_head::ONE_TRIP_REL>;
    for (Variant *v : {&h0, &h1, &h1r}) {
        v->carveout = [](int) {};
        if (!clusters) vs.push_back(*v);
    }
    if (!clusters) {
        std::vector<Variant> lv;
        add_long(lv, false);
        for (auto &v : lv)
            if (v.name == "T256 sm1 c64 b100" || v.name == "T256 sm1 c64 b100 f") vs.push_back(v);
    }
    struct S {
        Shape s;
        std::vector<int> pos;
    };
    const std::vector<S> shapes = {
        {{20, 5, 128, 4096}, {0, 1, 15, 16, 17, 63, 64, 65, 95, 96, 127, 128, 129, 511, 543, 544, 1099, 1100, 1407, 1663, 1664, 1665, 2047, 2048, 3001, 4094, 4095}},
        {{20, 5, 128, 8200}, {0, 1663, 1664, 4096, 8191, 8199}},
        {{32, 32, 100, 8200}, {0, 64, 65, 4100, 8199}},
        {{8, 1, 128, 8200}, {0, 63, 64, 1100, 8199}},
        {{32, 8, 128, 4160}, {0, 100, 1023, 1024, 1100, 4159}},
        {{2, 1, 32, 1280}, {0, 1, 63, 64, 65, 1099, 1279}},
        {{2, 2, 32, 64}, {0, 17, 39, 63}},
        {{6, 2, 48, 600}, {0, 64, 65, 130, 519, 599}},
        {{24, 2, 80, 4160}, {0, 65, 1000, 4159}},
        {{12, 4, 256, 4160}, {0, 65, 1000, 4159}},
        {{64, 64, 64, 4160}, {0, 65, 511, 512, 1000, 4159}},
        {{32, 32, 128, 4160}, {0, 65, 1000, 4159}},
        {{6, 3, 72, 1024}, {0, 65, 1023}},
        {{4, 2, 66, 256}, {0, 17, 255}},
        {{2, 2, 64, 4160}, {0, 65, 4159}},
        {{4, 2, 96, 4160}, {0, 65, 4159}},
        {{6, 2, 100, 4160}, {0, 65, 4159}},
        {{8, 2, 128, 4160}, {0, 65, 2000, 4159}},
        {{10, 2, 256, 4160}, {0, 65, 4159}},
        {{12, 2, 80, 4160}, {0, 65, 4159}},
        {{14, 2, 64, 4160}, {0, 65, 4159}},
        {{16, 2, 128, 4160}, {0, 65, 4159}},
    };
    int fails = 0;
    for (const S &x : shapes) {
        const bool small_p = (x.s.n_heads == 64 && x.s.hd == 64) || (x.s.n_heads == 32 && x.s.n_kv == 32 && x.s.hd == 128) ||
                             (x.s.n_heads == 16 && x.s.n_kv == 2 && x.s.hd == 128);
        if (quick && &x != &shapes[0] && !small_p) continue;
        fails += check_shape(vs, v3, x.s, x.pos, st);
    }
    printf("check: %d failures\n", fails);
    for (auto &v : vs) printf("CHECK10 %-34s %s\n", v.name.c_str(), v.ok ? "ok" : "FAILED");

    const int POS[5] = {96, 544, 1100, 2048, 4095};
    Bufs b;
    alloc(b, {20, 5, 128, 4096}, LAYERS);
    {
        const size_t n = b.layer_n() * LAYERS;
        std::vector<__half> h(n);
        for (auto &x : h) x = __float2half(frand());
        CK(cudaMemcpy(b.kc, h.data(), n * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(b.vc, h.data(), n * 2, cudaMemcpyHostToDevice));
        std::vector<float> q(3840);
        for (auto &x : q) x = frand();
        CK(cudaMemcpy(b.qkv, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
    }
    Chain c;
    chain_alloc(c);
    std::vector<Variant *> tv;
    for (auto &v : vs)
        if (v.ok) tv.push_back(&v);
    std::vector<std::vector<std::vector<double>>> t(tv.size(), std::vector<std::vector<double>>(5, std::vector<double>(3)));
    std::vector<double> gemv(5);
    for (int round = 0; round < 3; round++)
        for (int pi = 0; pi < 5; pi++) {
            set_pos(b, POS[pi]);
            const double g = time_chain(c, b, nullptr, KCUDA_PDL_LATE, st);
            if (round == 1) gemv[pi] = g;
            for (size_t k = 0; k < tv.size(); k++) t[k][pi][round] = time_chain(c, b, tv[k], KCUDA_PDL_LATE, st) - g;
        }
    printf("\nin place (30 decode layers: chain - gemv, us per layer, median of 3 rounds); gemv chain %.2f %.2f %.2f %.2f %.2f\n",
           gemv[0], gemv[1], gemv[2], gemv[3], gemv[4]);
    printf("IN10 | variant | 96 | 544 | 1100 | 2048 | 4095 |\n");
    std::vector<std::vector<double>> med(tv.size(), std::vector<double>(5));
    int prod = -1;
    for (size_t k = 0; k < tv.size(); k++) {
        for (int pi = 0; pi < 5; pi++) med[k][pi] = median3(t[k][pi][0], t[k][pi][1], t[k][pi][2]);
        if (tv[k]->name == "product by position") prod = (int)k;
        printf("IN10 | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", tv[k]->name.c_str(), med[k][0], med[k][1], med[k][2], med[k][3],
               med[k][4]);
    }
    if (prod >= 0)
        for (size_t k = 0; k < tv.size(); k++)
            if ((int)k != prod)
                printf("RATIO10 %-34s / product: %.3f %.3f %.3f %.3f %.3f\n", tv[k]->name.c_str(),
                       med[k][0] / med[prod][0], med[k][1] / med[prod][1], med[k][2] / med[prod][2], med[k][3] / med[prod][3],
                       med[k][4] / med[prod][4]);
    release(b);
    return fails ? 1 : 0;
}

}  // namespace

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "all";
    int top = 12;
    const char *only = nullptr;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "top")) top = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "only")) only = argv[i + 1];
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    char desc[256];
    kcuda_device_describe(desc, sizeof desc);
    printf("device: %s\n", desc);
    lab_seed(0x5eed0011ull);
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

    std::vector<Variant> vs;
    // name: threads x tile, s stages, i two FMA chains in the scores, b32 combine batches of 32
    add_config<Cfg<128, 128, 64>>(vs, "t128x64s2");  // the product's until 2026-12-06
    add_config<Cfg<128, 128, 32>>(vs, "t128x32s2");
    add_config<Cfg<128, 256, 64>>(vs, "t256x64s2");
    add_config<Cfg<128, 256, 32>>(vs, "t256x32s2");
    add_config<Cfg<128, 64, 32>>(vs, "t64x32s2");
    add_config<Cfg<128, 128, 64, 2, true>>(vs, "t128x64s2i");
    add_config<Cfg<128, 128, 32, 2, true>>(vs, "t128x32s2i");
    add_config<Cfg<128, 256, 64, 2, true>>(vs, "t256x64s2i");
    add_config<Cfg<128, 128, 64, 3, true>>(vs, "t128x64s3i");
    add_config<Cfg<128, 128, 32, 4, true>>(vs, "t128x32s4i");
    add_config<Cfg<128, 256, 64, 3, true>>(vs, "t256x64s3i");
    add_config<Cfg<128, 256, 32, 4, true>>(vs, "t256x32s4i");
    add_config<Cfg<128, 128, 64, 2, true, 32>>(vs, "t128x64s2ib32");
    add_config<Cfg<128, 256, 64, 3, true, 32>>(vs, "t256x64s3ib32");
    add_config<Cfg<128, 256, 64, 2, true, 16, true>>(vs, "t256x64s2ip");  // p: combine over all threads
    add_config<Cfg<128, 256, 64, 3, true, 16, true>>(vs, "t256x64s3ip");
    add_config<Cfg<128, 256, 128, 1, true>>(vs, "t256x128s1i");  // a split of 128 in one tile
    add_config<Cfg<128, 256, 128, 1, true, 16, true>>(vs, "t256x128s1ip");
    add_config<Cfg<128, 256, 128, 2, true>>(vs, "t256x128s2i");
    for (int by_pos = 1; by_pos >= 0; by_pos--) {  // the product's code, through its entry points
        Variant v;
        v.name = by_pos ? "product by position" : "product long-context kernel";
        v.launch = [by_pos](Bufs &b, int l, int pdl, cudaStream_t st) { return launch_product(by_pos != 0, b, l, pdl, st); };
        v.carveout = [](int) {};  // the library's kernels: not reachable from here
        vs.push_back(v);
    }
    if (!strcmp(mode, "sweep")) {  // the product's entry points only (checked first)
        std::vector<Variant> keep;
        for (auto &v : vs)
            if (v.name.rfind("product", 0) == 0) keep.push_back(v);
        vs.swap(keep);
    }
    if (only) {  // keep the configurations named (comma-separated, the part of the name before the knobs)
        std::vector<Variant> keep;
        for (auto &v : vs) {
            const std::string cfg = v.name.substr(0, v.name.find(' '));
            if (cfg == "product" || ("," + std::string(only) + ",").find("," + cfg + ",") != std::string::npos) keep.push_back(v);
        }
        vs.swap(keep);
    }
    Variant v3;
    v3.name = "v3 (short-context kernel, grid over the context)";
    v3.launch = launch_v3;
    v3.carveout = [](int pc) {
        CK(cudaFuncSetAttribute(attn_head::attn_head_kernel<attn_head::FENCES>, cudaFuncAttributePreferredSharedMemoryCarveout, pc));
    };
    if (!strcmp(mode, "long") || !strcmp(mode, "longk")) return long_mode(vs, v3, only, !strcmp(mode, "longk"), st);
    if (!strcmp(mode, "attn10") || !strcmp(mode, "attn10k")) return attn10_mode(vs, v3, st, !strcmp(mode, "attn10k"), argc > 2 && !strcmp(argv[2], "quick"));
    if (!strcmp(mode, "longsan")) {  // for compute-sanitizer: the spans kernel, a few settings and positions
        std::vector<Variant> few, all_long;
        add_long(all_long, false);
        add_long(all_long, true);
        for (auto &v : all_long)
            if (v.name == "S256 sm1 c32 b100" || v.name == "S256 sm2 c32 b32" || v.name == "K16 c32 b150" ||
                v.name == "B256 sm1 c32 b100" || v.name == "B256 sm1 c32 b32" || v.name == "BK16 c32 b150" ||
                v.name == "T256 sm1 c32 b100" || v.name == "BT256 sm1 c32 b32" || v.name == "TK16 c32 b150")
                few.push_back(v);
        int f = check_shape(few, v3, {20, 5, 128, 4096}, {65, 4095}, st);
        f += check_shape(few, v3, {12, 4, 100, 1024}, {1023}, st);
        f += check_shape(few, v3, {8, 1, 256, 2048}, {2047}, st);
        f += check_shape(few, v3, {64, 64, 64, 4160}, {512, 4159}, st);  // small probabilities (the f16 P.V's failures)
        f += check_shape(few, v3, {32, 32, 128, 4160}, {4159}, st);
        printf("longsan: %d failures\n", f);
        return f ? 1 : 0;
    }
    // the product's setting for head_dim <= 128 (attention.cu) and the two before it
    const std::string product = "t256x128s1ip sm2 c128 at group", before = "t256x64s2i sm2 c64 at group",
                      before2 = "t128x64s2 sm2 c64 a16 spread";
    auto is_base = [&](const Variant *v) {
        return v->name == product || v->name == before || v->name == before2 || v->name.rfind("v3", 0) == 0 ||
               v->name.rfind("product", 0) == 0;
    };
    printf("%zu variants + v3; the product's: %s\n", vs.size(), product.c_str());

    int fails = 0;
    if (!strcmp(mode, "san")) {  // for compute-sanitizer: one launch setting per build configuration
        std::vector<Variant> few;
        for (auto &v : vs)
            if (v.name.find(" sm1 c64 a16 spread") != std::string::npos || v.name.find(" sm2 c128 at group") != std::string::npos ||
                v.name.rfind("product", 0) == 0)
                few.push_back(v);
        fails += check_shape(few, v3, {20, 5, 128, 4096}, {0, 65, 1000, 4095}, st);
        fails += check_shape(few, v3, {24, 2, 96, 1024}, {65, 1023}, st);
        printf("san: %d failures\n", fails);
        return fails ? 1 : 0;
    }
    if (strcmp(mode, "time")) {
        fails += check_shape(vs, v3, {20, 5, 128, 4096},
                             {0, 1, 15, 63, 64, 65, 127, 128, 200, 511, 512, 1000, 1407, 1408, 2047, 2080, 3001, 4095}, st);
        fails += check_shape(vs, v3, {8, 8, 128, 1024}, {0, 64, 65, 700, 1023}, st);
        fails += check_shape(vs, v3, {16, 2, 128, 1024}, {0, 64, 65, 700, 1023}, st);
        fails += check_shape(vs, v3, {24, 2, 96, 1024}, {0, 64, 65, 700, 1023}, st);
        fails += check_shape(vs, v3, {4, 2, 64, 1024}, {0, 64, 65, 700, 1023}, st);
        printf("check: %d failures\n", fails);
    }
    if (!strcmp(mode, "check")) return fails ? 1 : 0;

    Bufs b;
    alloc(b, {20, 5, 128, 4096}, LAYERS);
    {
        const size_t n = b.layer_n() * LAYERS;
        std::vector<__half> h(n);
        for (auto &x : h) x = __float2half(frand());
        CK(cudaMemcpy(b.kc, h.data(), n * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(b.vc, h.data(), n * 2, cudaMemcpyHostToDevice));
        std::vector<float> q(3840);
        for (auto &x : q) x = frand();
        CK(cudaMemcpy(b.qkv, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
    }
    Chain c;
    chain_alloc(c);
    double gemv[4];
    for (int pi = 0; pi < 4; pi++) {
        set_pos(b, TIME_POS[pi]);
        gemv[pi] = time_chain(c, b, nullptr, KCUDA_PDL_LATE, st);
    }
    if (!strcmp(mode, "sweep")) {
        Variant *prod = nullptr, *lng = nullptr;
        for (auto &v : vs) {
            if (v.name == "product by position") prod = &v;
            if (v.name == "product long-context kernel") lng = &v;
        }
        if (!prod || !lng || !prod->ok || !lng->ok || !v3.ok) {
            printf("sweep: a variant failed its check\n");
            return 1;
        }
        sweep(c, b, v3, prod, lng, st);
        // what a second decode graph costs, and a device-side choice by a second launch per layer
        double ms[3], mib[3];
        for (int r = 0; r < 3; r++) graph_cost(c, b, lng, st, &ms[r], &mib[r]);
        printf("GRAPH capture + instantiate + upload of 30 layers (150 kernels): %.2f ms (median of 3: %.2f %.2f %.2f), device memory %.2f MiB\n",
               median3(ms[0], ms[1], ms[2]), ms[0], ms[1], ms[2], median3(mib[0], mib[1], mib[2]));
        Variant pass = *lng;
        pass.name = "long + a launch that leaves";
        pass.launch = [lng](Bufs &bb, int l, int pdl, cudaStream_t s2) {
            const int r = lng->launch(bb, l, pdl, s2);
            return r ? r : kcuda_launch(pass_kernel, dim3(1), dim3(32), 0, s2, KCUDA_PDL_LATE, (const int *)bb.pos);
        };
        for (int pi = 0; pi < 4; pi++) {
            set_pos(b, TIME_POS[pi]);
            double r1[3], r2[3];
            for (int r = 0; r < 3; r++) {
                const double g = time_chain(c, b, nullptr, KCUDA_PDL_LATE, st);
                r1[r] = time_chain(c, b, lng, KCUDA_PDL_LATE, st) - g;
                r2[r] = time_chain(c, b, &pass, KCUDA_PDL_LATE, st) - g;
            }
            const double a1 = median3(r1[0], r1[1], r1[2]), a2 = median3(r2[0], r2[1], r2[2]);
            printf("EMPTY at %4d: long %.2f us per layer, with a launch that leaves after it %.2f (+%.2f)\n", TIME_POS[pi], a1, a2, a2 - a1);
        }
        release(b);
        sweep_8b(v3, lng, prod, st);
        return fails ? 1 : 0;
    }
    printf("\nmicroseconds per layer (median of 12 graph replays of 30 layers); chain - gemv = attention in place\n");
    printf("gemv chain without attention: %.2f %.2f %.2f %.2f\n", gemv[0], gemv[1], gemv[2], gemv[3]);
    printf("| variant | alone 96 | 544 | 2080 | 4064 | chain-gemv 96 | 544 | 2080 | 4064 | sum |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    std::vector<Variant *> all;
    all.push_back(&v3);
    for (auto &v : vs) all.push_back(&v);
    for (Variant *v : all) {
        if (!v->ok) continue;
        for (int pi = 0; pi < 4; pi++) {
            set_pos(b, TIME_POS[pi]);
            v->alone[pi] = time_alone(*v, b, KCUDA_PDL_LATE, st);
            v->chain[pi] = time_chain(c, b, v, KCUDA_PDL_LATE, st) - gemv[pi];
        }
        double sum = 0;
        for (double x : v->chain) sum += x;
        printf("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", v->name.c_str(), v->alone[0], v->alone[1],
               v->alone[2], v->alone[3], v->chain[0], v->chain[1], v->chain[2], v->chain[3], sum);
        fflush(stdout);
    }
    std::vector<Variant *> rank;
    for (Variant *v : all)
        if (v->ok) rank.push_back(v);
    auto sum = [](const Variant *v) { return v->chain[0] + v->chain[1] + v->chain[2] + v->chain[3]; };
    std::sort(rank.begin(), rank.end(), [&](const Variant *a, const Variant *b2) { return sum(a) < sum(b2); });
    printf("\nRANKED by the sum of chain-gemv (us per layer at 96 / 544 / 2080 / 4064):\n");
    for (int i = 0; i < (int)rank.size() && i < top; i++)
        printf("RANK %2d %-32s %6.2f %6.2f %6.2f %6.2f sum %6.2f\n", i + 1, rank[i]->name.c_str(), rank[i]->chain[0], rank[i]->chain[1],
               rank[i]->chain[2], rank[i]->chain[3], sum(rank[i]));
    for (Variant *v : rank)
        if (is_base(v))
            printf("BASE    %-32s %6.2f %6.2f %6.2f %6.2f sum %6.2f\n", v->name.c_str(), v->chain[0], v->chain[1], v->chain[2],
                   v->chain[3], sum(v));
    // best per position
    for (int pi = 0; pi < 4; pi++) {
        const Variant *best = nullptr;
        for (Variant *v : rank)
            if (!best || v->chain[pi] < best->chain[pi]) best = v;
        if (best) printf("BEST at %4d: %-32s %.2f us\n", TIME_POS[pi], best->name.c_str(), best->chain[pi]);
    }
    // the top 8, the product's and v3 again, in 3 rounds (a variant's rounds are apart in time)
    printf("\nconfirm (3 rounds; median of the rounds, chain-gemv us per layer at 96 / 544 / 2080 / 4064):\n");
    std::vector<Variant *> conf(rank.begin(), rank.begin() + std::min<size_t>(8, rank.size()));
    for (Variant *v : rank)
        if (is_base(v) && std::find(conf.begin(), conf.end(), v) == conf.end()) conf.push_back(v);
    std::vector<std::vector<double>> ct(conf.size(), std::vector<double>(12));
    for (int round = 0; round < 3; round++)
        for (int pi = 0; pi < 4; pi++) {
            set_pos(b, TIME_POS[pi]);
            const double g = time_chain(c, b, nullptr, KCUDA_PDL_LATE, st);
            for (size_t k = 0; k < conf.size(); k++) ct[k][pi * 3 + round] = time_chain(c, b, conf[k], KCUDA_PDL_LATE, st) - g;
        }
    for (size_t k = 0; k < conf.size(); k++) {
        double m[4], tot = 0;
        for (int pi = 0; pi < 4; pi++) {
            std::sort(ct[k].begin() + pi * 3, ct[k].begin() + pi * 3 + 3);
            m[pi] = ct[k][pi * 3 + 1];
            tot += m[pi];
        }
        printf("CONFIRM %-32s %6.2f %6.2f %6.2f %6.2f sum %6.2f (spread of rounds at 4064: %.2f)\n", conf[k]->name.c_str(), m[0], m[1],
               m[2], m[3], tot, ct[k][11] - ct[k][9]);
    }
    // the trigger placement of the top 3 and of the product: attention's trigger early / late / after its tiles
    printf("\ntrigger placement (chain-gemv, us per layer at 96 / 544 / 2080 / 4064):\n");
    std::vector<Variant *> trig(rank.begin(), rank.begin() + std::min<size_t>(3, rank.size()));
    for (Variant *v : rank)
        if (is_base(v) && std::find(trig.begin(), trig.end(), v) == trig.end()) trig.push_back(v);
    for (Variant *v : trig)
        for (int pdl : {KCUDA_PDL_EARLY, KCUDA_PDL_AFTER_WORK}) {
            double t[4];
            for (int pi = 0; pi < 4; pi++) {
                set_pos(b, TIME_POS[pi]);
                t[pi] = time_chain(c, b, v, pdl, st) - gemv[pi];
            }
            printf("TRIG %-32s %s %6.2f %6.2f %6.2f %6.2f sum %6.2f\n", v->name.c_str(), pdl == KCUDA_PDL_EARLY ? "early" : "after",
                   t[0], t[1], t[2], t[3], t[0] + t[1] + t[2] + t[3]);
        }
    // the carveout (hypothesis: a kernel whose shared-memory split differs from its neighbours'
    // makes the SMs reconfigure between launches): attention at 50% and 100% while the GEMVs
    // keep the product's 70%
    printf("\ncarveout of the attention kernel alone (GEMVs at 70%%; chain-gemv us per layer at 96 / 544 / 2080 / 4064):\n");
    for (Variant *v : trig)
        for (int pc : {50, 100}) {
            v->launch(b, 0, KCUDA_PDL_LATE, st);  // the first launch sets the product's 70%; override after it
            CK(cudaDeviceSynchronize());
            v->carveout(pc);
            double t[4];
            for (int pi = 0; pi < 4; pi++) {
                set_pos(b, TIME_POS[pi]);
                t[pi] = time_chain(c, b, v, KCUDA_PDL_LATE, st) - gemv[pi];
            }
            v->carveout(70);
            printf("CARVE %-32s %3d%% %6.2f %6.2f %6.2f %6.2f sum %6.2f\n", v->name.c_str(), pc, t[0], t[1], t[2], t[3],
                   t[0] + t[1] + t[2] + t[3]);
        }
    release(b);
    return fails ? 1 : 0;
}
