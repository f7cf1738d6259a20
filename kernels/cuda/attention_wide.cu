// Prefill attention for heads the tiled prefill kernels (attention_prefill.cu) cannot hold: any
// even head_dim up to 256 (Falcon3's 256, 1bitLLM's 96 and 100), any grouping. Correctness first
// and plain: a RoPE + KV-write kernel, then one block per (query head, token) that walks the
// cached keys with an online softmax per warp and merges its 8 warps at the end. The KV cache,
// the RoPE table and the arithmetic are those of the other kernels: K and V rounded to f16 when
// written and read back from the cache, q kept in f32, scores scaled by 1/sqrt(head_dim).
// (Decode takes these shapes in attention.cu, kcuda_attn_decode.)
#include <cuda_fp16.h>
#include <math.h>

#include "kernels/cuda/common.cuh"

namespace {

enum { WIDE_THREADS = 256, WIDE_WARPS = WIDE_THREADS / 32, WIDE_MAX_HD = 256, WIDE_PER_LANE = WIDE_MAX_HD / 32 };

struct WideParams {
    int n_heads, n_kv, hd, ctx, style, ld_qkv, pos0;
    const float *rope;  // [ctx][hd/2][2]
    const float *qkv;   // [T][ld_qkv]: q | k | v, before RoPE
    __half *kc, *vc;    // [n_kv][ctx][hd]
    float *out;         // [T][n_heads * hd]
};

__device__ __forceinline__ int wide_pos(const WideParams &p, int t) { return p.pos0 + t; }

__device__ __forceinline__ void wide_pair(int style, int hd, int i, int *i0, int *i1) {
    if (style == 0) {
        *i0 = i;
        *i1 = i + hd / 2;
    } else {
        *i0 = 2 * i;
        *i1 = 2 * i + 1;
    }
}

// grid (n_kv, T), WIDE_THREADS threads: k of token t roped and v, as f16, into the cache.
__global__ void __launch_bounds__(WIDE_THREADS) wide_kv_write_kernel(WideParams p) {
    const int g = blockIdx.x, t = blockIdx.y, tid = threadIdx.x, hd = p.hd, half = hd / 2;
    const int pos = wide_pos(p, t);
    const float *k = p.qkv + (size_t)t * p.ld_qkv + (size_t)p.n_heads * hd + (size_t)g * hd;
    const float *v = k + (size_t)p.n_kv * hd;
    const size_t row = ((size_t)g * p.ctx + pos) * hd;
    if (tid < half) {
        int i0, i1;
        wide_pair(p.style, hd, tid, &i0, &i1);
        const float c = p.rope[(size_t)pos * hd + 2 * tid], s = p.rope[(size_t)pos * hd + 2 * tid + 1];
        const float a = k[i0], b = k[i1];
        p.kc[row + i0] = __float2half_rn(a * c - b * s);
        p.kc[row + i1] = __float2half_rn(b * c + a * s);
    }
    if (tid < hd) p.vc[row + tid] = __float2half_rn(v[tid]);
}

// grid (n_heads, T), WIDE_THREADS threads. Lane l of each warp holds dims 8l..8l+7 of q and of
// its output; warp w takes keys w, w + 8, ... with its own running max / sum (online softmax).
__global__ void __launch_bounds__(WIDE_THREADS) wide_attend_kernel(WideParams p) {
    __shared__ float qs[WIDE_MAX_HD];
    __shared__ float wm[WIDE_WARPS], wl[WIDE_WARPS];
    __shared__ float wacc[WIDE_WARPS][WIDE_MAX_HD];
    const int h = blockIdx.x, t = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hd = p.hd, half = hd / 2, g = h / (p.n_heads / p.n_kv);
    const int pos = wide_pos(p, t);
    const float *q = p.qkv + (size_t)t * p.ld_qkv + (size_t)h * hd;
    if (tid < half) {
        int i0, i1;
        wide_pair(p.style, hd, tid, &i0, &i1);
        const float c = p.rope[(size_t)pos * hd + 2 * tid], s = p.rope[(size_t)pos * hd + 2 * tid + 1];
        const float a = q[i0], b = q[i1];
        qs[i0] = a * c - b * s;
        qs[i1] = b * c + a * s;
    }
    __syncthreads();
    float qr[WIDE_PER_LANE], acc[WIDE_PER_LANE];
#pragma unroll
    for (int e = 0; e < WIDE_PER_LANE; e++) {
        const int d = lane * WIDE_PER_LANE + e;
        qr[e] = d < hd ? qs[d] : 0.0f;
        acc[e] = 0.0f;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    const __half *kb = p.kc + (size_t)g * p.ctx * hd, *vb = p.vc + (size_t)g * p.ctx * hd;
    float m = -INFINITY, l = 0.0f;
    for (int j = warp; j <= pos; j += WIDE_WARPS) {
        const __half *kr = kb + (size_t)j * hd, *vr = vb + (size_t)j * hd;
        float sdot = 0.0f;
#pragma unroll
        for (int e = 0; e < WIDE_PER_LANE; e++) {
            const int d = lane * WIDE_PER_LANE + e;
            if (d < hd) sdot += qr[e] * __half2float(kr[d]);
        }
        const float sj = warp_sum(sdot) * scale;
        const float mn = fmaxf(m, sj);
        const float corr = expf(m - mn), pj = expf(sj - mn);
        l = l * corr + pj;
#pragma unroll
        for (int e = 0; e < WIDE_PER_LANE; e++) {
            const int d = lane * WIDE_PER_LANE + e;
            acc[e] = acc[e] * corr + (d < hd ? pj * __half2float(vr[d]) : 0.0f);
        }
        m = mn;
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
#pragma unroll
    for (int e = 0; e < WIDE_PER_LANE; e++) wacc[warp][lane * WIDE_PER_LANE + e] = acc[e];
    __syncthreads();
    // merge: warp 0 always saw key 0, so the largest max is finite; warps without keys add 0
    float mx = wm[0];
    for (int w = 1; w < WIDE_WARPS; w++) mx = fmaxf(mx, wm[w]);
    if (tid < hd) {
        float num = 0.0f, den = 0.0f;
        for (int w = 0; w < WIDE_WARPS; w++) {
            if (!(wl[w] > 0.0f)) continue;
            const float f = expf(wm[w] - mx);
            num += f * wacc[w][tid];
            den += f * wl[w];
        }
        p.out[(size_t)t * p.n_heads * hd + (size_t)h * hd + tid] = num / den;
    }
}

int wide_check(const KcudaAttnShape *a, const char *fn) {
    if (!a || !a->d_rope) return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL shape or rope table", fn);
    if (a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->head_dim <= 0 || a->head_dim % 2 ||
        a->head_dim > WIDE_MAX_HD || a->ctx <= 0)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: heads %d/%d, head_dim %d, ctx %d unsupported (an even head_dim up to %d)",
                          fn, a->n_heads, a->n_kv, a->head_dim, a->ctx, WIDE_MAX_HD);
    return KCUDA_OK;
}

int wide_run(const KcudaAttnShape *a, const float *d_qkv, int ld_qkv, int T, int pos0, uint16_t *d_kc,
             uint16_t *d_vc, float *d_out, void *stream) {
    WideParams p = {};
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv;
    p.hd = a->head_dim;
    p.ctx = a->ctx;
    p.style = a->rope_style;
    p.ld_qkv = ld_qkv;
    p.pos0 = pos0;
    p.rope = a->d_rope;
    p.qkv = d_qkv;
    p.kc = (__half *)d_kc;
    p.vc = (__half *)d_vc;
    p.out = d_out;
    int rc = kcuda_launch(wide_kv_write_kernel, dim3((unsigned)a->n_kv, (unsigned)T), dim3(WIDE_THREADS), 0, stream, 0, p);
    if (rc) return rc;
    return kcuda_launch(wide_attend_kernel, dim3((unsigned)a->n_heads, (unsigned)T), dim3(WIDE_THREADS), 0, stream, 0, p);
}

}  // namespace

extern "C" int kcuda_attn_prefill_wide(const KcudaAttnShape *a, const float *d_qkv, int ld_qkv, int T, int pos0,
                                       uint16_t *d_kc, uint16_t *d_vc, float *d_out, void *stream) {
    int rc = wide_check(a, "kcuda_attn_prefill_wide");
    if (rc) return rc;
    if (!d_qkv || !d_kc || !d_vc || !d_out) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_prefill_wide: NULL pointer");
    if (T <= 0 || pos0 < 0 || pos0 + T > a->ctx || ld_qkv < (a->n_heads + 2 * a->n_kv) * a->head_dim)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_attn_prefill_wide: T %d at %d beyond ctx %d (or ld %d)", T, pos0, a->ctx, ld_qkv);
    return wide_run(a, d_qkv, ld_qkv, T, pos0, d_kc, d_vc, d_out, stream);
}
