// Attention over the f16 KV cache with RoPE and GQA: the decode kernel (one token, split over
// the sequence in chunks of 64 positions, last block combines) and the prefill kernels
// (RoPE + cache write for T tokens, then causal attention tiled 16 queries x 64 keys).
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"

namespace {

enum { ATT_THREADS = 128, CHUNK = 64, MAX_REP = 8, MAX_HD = 128, QT = 16 };

struct AttnParams {
    int n_heads, n_kv, hd, ctx, style, max_splits;
    const float *rope;
    const float *qkv;
    __half *kc, *vc;
    const int *pos;
    float *out, *part;
    int *count;
};

__device__ __forceinline__ void rope_pair(int style, int hd, int i, int *i0, int *i1) {
    if (style == 0) {
        *i0 = i;
        *i1 = i + hd / 2;
    } else {
        *i0 = 2 * i;
        *i1 = 2 * i + 1;
    }
}

// Version 2: the chunk's K and V rows are staged in shared memory with 16-byte loads all issued
// at once (version 1 read V inside the position loop: one memory latency per position).
__global__ void __launch_bounds__(ATT_THREADS) attn_decode_kernel2(AttnParams p) {
    __shared__ float qs[MAX_REP][MAX_HD];
    __shared__ float sc[MAX_REP][CHUNK];
    __shared__ __align__(16) __half ks[CHUNK][MAX_HD + 8];
    __shared__ __align__(16) __half vs[CHUNK][MAX_HD];
    __shared__ float mloc[MAX_REP], lloc[MAX_REP];
    __shared__ int last_sh;
    pdl_trigger();
    pdl_wait();
    const int g = blockIdx.x, sp = blockIdx.y, tid = threadIdx.x;
    const int hd = p.hd, half = hd / 2, n_rep = p.n_heads / p.n_kv;
    const int pos = *p.pos, kv_len = pos + 1;
    const int nsplit = (kv_len + CHUNK - 1) / CHUNK;
    if (sp >= nsplit) return;
    const int t0 = sp * CHUNK, nt = min(CHUNK, kv_len - t0);
    const size_t head_base = ((size_t)g * p.ctx) * hd;
    // Issue the cached rows (positions < pos) first; the current one is computed below.
    const int per_row = hd / 8;
#pragma unroll 8
    for (int idx = tid; idx < CHUNK * per_row; idx += ATT_THREADS) {
        const int j = idx / per_row, c = idx % per_row, t = t0 + j;
        uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
        if (j < nt && t != pos) {
            kv4 = *(const uint4 *)(p.kc + head_base + (size_t)t * hd + c * 8);
            vv4 = *(const uint4 *)(p.vc + head_base + (size_t)t * hd + c * 8);
        }
        *(uint4 *)&ks[j][c * 8] = kv4;
        *(uint4 *)&vs[j][c * 8] = vv4;
    }
    const float *cs = p.rope + (size_t)pos * hd;  // [hd/2][2]
    const float *q = p.qkv + (size_t)g * n_rep * hd;
    for (int idx = tid; idx < n_rep * half; idx += ATT_THREADS) {
        const int h = idx / half, i = idx % half;
        int i0, i1;
        rope_pair(p.style, hd, i, &i0, &i1);
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float a = q[h * hd + i0], b = q[h * hd + i1];
        qs[h][i0] = a * c - b * s;
        qs[h][i1] = b * c + a * s;
    }
    __syncthreads();  // the staged rows are complete before the current row is written
    if (sp == nsplit - 1) {
        const int jc = pos - t0;
        const float *k = p.qkv + (size_t)p.n_heads * hd + (size_t)g * hd;
        const float *v = k + (size_t)p.n_kv * hd;
        for (int i = tid; i < half; i += ATT_THREADS) {
            int i0, i1;
            rope_pair(p.style, hd, i, &i0, &i1);
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float a = k[i0], b = k[i1];
            const __half h0 = __float2half_rn(a * c - b * s), h1 = __float2half_rn(b * c + a * s);
            ks[jc][i0] = h0;
            ks[jc][i1] = h1;
            p.kc[head_base + (size_t)pos * hd + i0] = h0;
            p.kc[head_base + (size_t)pos * hd + i1] = h1;
        }
        for (int i = tid; i < hd; i += ATT_THREADS) {
            const __half hv = __float2half_rn(v[i]);
            vs[jc][i] = hv;
            p.vc[head_base + (size_t)pos * hd + i] = hv;
        }
    }
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)hd);
    {
        const int j = tid >> 1, hh = tid & 1;
        float part[MAX_REP];
#pragma unroll
        for (int h = 0; h < MAX_REP; h++) part[h] = 0.0f;
        if (j < nt) {
            const int d0 = hh * half;
            for (int m = 0; m < half / 8; m++) {
                const uint4 u = *(const uint4 *)&ks[j][d0 + m * 8];
                const __half2 *h2 = (const __half2 *)&u;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float2 f = __half22float2(h2[e]);
                    const int d = d0 + m * 8 + 2 * e;
#pragma unroll
                    for (int h = 0; h < MAX_REP; h++)
                        if (h < n_rep) {
                            part[h] = fmaf(qs[h][d], f.x, part[h]);
                            part[h] = fmaf(qs[h][d + 1], f.y, part[h]);
                        }
                }
            }
        }
#pragma unroll
        for (int h = 0; h < MAX_REP; h++) part[h] += __shfl_xor_sync(0xffffffffu, part[h], 1);
        if (hh == 0) {
#pragma unroll
            for (int h = 0; h < MAX_REP; h++)
                if (h < n_rep) sc[h][j] = j < nt ? part[h] * scale : -INFINITY;
        }
    }
    __syncthreads();
    const int lane = tid & 31, warp = tid >> 5;
    for (int h = warp; h < n_rep; h += ATT_THREADS / 32) {
        const float v0 = sc[h][lane], v1 = sc[h][lane + 32];
        const float m = warp_max(fmaxf(v0, v1));
        const float e0 = lane < nt ? expf(v0 - m) : 0.0f;
        const float e1 = lane + 32 < nt ? expf(v1 - m) : 0.0f;
        const float l = warp_sum(e0 + e1);
        sc[h][lane] = e0;
        sc[h][lane + 32] = e1;
        if (lane == 0) {
            mloc[h] = m;
            lloc[h] = l;
        }
    }
    __syncthreads();
    float o[MAX_REP];
#pragma unroll
    for (int h = 0; h < MAX_REP; h++) o[h] = 0.0f;
    const int d = tid;
    if (d < hd) {
        for (int j = 0; j < nt; j++) {
            const float vv = __half2float(vs[j][d]);
#pragma unroll
            for (int h = 0; h < MAX_REP; h++)
                if (h < n_rep) o[h] = fmaf(sc[h][j], vv, o[h]);
        }
    }
    if (nsplit == 1) {
        if (d < hd) {
#pragma unroll
            for (int h = 0; h < MAX_REP; h++)
                if (h < n_rep) p.out[(size_t)(g * n_rep + h) * hd + d] = o[h] / lloc[h];
        }
        return;
    }
    // Partial (m, l, o) of this split; the last split block to finish combines all of them.
    const int rec = hd + 2;
    float *mine = p.part + ((size_t)g * p.max_splits + sp) * n_rep * rec;
    if (d < hd) {
#pragma unroll
        for (int h = 0; h < MAX_REP; h++)
            if (h < n_rep) mine[h * rec + 2 + d] = o[h];
    }
    if (tid < n_rep) {
        mine[tid * rec] = mloc[tid];
        mine[tid * rec + 1] = lloc[tid];
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) last_sh = atomicAdd(&p.count[g], 1) == nsplit - 1;
    __syncthreads();
    if (!last_sh) return;
    __threadfence();
    if (d < hd) {
        for (int h = 0; h < n_rep; h++) {
            float M = -INFINITY;
            for (int s2 = 0; s2 < nsplit; s2++)
                M = fmaxf(M, __ldcg(p.part + ((size_t)g * p.max_splits + s2) * n_rep * rec + h * rec));
            float num = 0.0f, den = 0.0f;
            for (int s2 = 0; s2 < nsplit; s2++) {
                const float *r = p.part + ((size_t)g * p.max_splits + s2) * n_rep * rec + h * rec;
                const float f = expf(__ldcg(r) - M);
                den = fmaf(__ldcg(r + 1), f, den);
                num = fmaf(__ldcg(r + 2 + d), f, num);
            }
            p.out[(size_t)(g * n_rep + h) * hd + d] = num / den;
        }
    }
    if (tid == 0) p.count[g] = 0;
}

// ---- prefill ------------------------------------------------------------------------------------

__global__ void rope_kv_prefill_kernel(float *qkv, int ld, int n_heads, int n_kv, int hd,
                                       int ctx, int style, const float *rope, int pos0,
                                       __half *kc, __half *vc) {
    const int t = blockIdx.x, pos = pos0 + t, half = hd / 2;
    const float *cs = rope + (size_t)pos * hd;
    float *row = qkv + (size_t)t * ld;
    for (int idx = threadIdx.x; idx < (n_heads + n_kv) * half; idx += blockDim.x) {
        const int h = idx / half, i = idx % half;
        int i0, i1;
        rope_pair(style, hd, i, &i0, &i1);
        const float c = cs[2 * i], s = cs[2 * i + 1];
        float *v = row + (size_t)h * hd;
        const float a = v[i0], b = v[i1];
        const float r0 = a * c - b * s, r1 = b * c + a * s;
        if (h < n_heads) {
            v[i0] = r0;
            v[i1] = r1;
        } else {
            const size_t base = ((size_t)(h - n_heads) * ctx + pos) * hd;
            kc[base + i0] = __float2half_rn(r0);
            kc[base + i1] = __float2half_rn(r1);
        }
    }
    const float *vsrc = row + (size_t)(n_heads + n_kv) * hd;
    for (int idx = threadIdx.x; idx < n_kv * hd; idx += blockDim.x) {
        const int g = idx / hd, i = idx % hd;
        vc[((size_t)g * ctx + pos) * hd + i] = __float2half_rn(vsrc[idx]);
    }
}

// One block per (query head, 16 queries); keys in tiles of 64 through shared memory, online
// softmax per query row.
__global__ void __launch_bounds__(ATT_THREADS) attn_prefill_kernel1(
    const float *qkv, int ld, int T, int pos0, int n_heads, int n_kv, int hd, int ctx,
    const __half *kc, const __half *vc, float *out) {
    __shared__ float qs[QT][MAX_HD];
    __shared__ __align__(16) __half ks[CHUNK][MAX_HD + 8];
    __shared__ __align__(16) __half vs[CHUNK][MAX_HD];
    __shared__ float sc[QT][CHUNK];
    __shared__ float mrow[QT], lrow[QT], corr[QT];
    const int h = blockIdx.x, tq0 = blockIdx.y * QT, tid = threadIdx.x;
    const int g = h / (n_heads / n_kv);
    const float scale = 1.0f / sqrtf((float)hd);
    for (int idx = tid; idx < QT * hd; idx += ATT_THREADS) {
        const int r = idx / hd, d = idx % hd, t = tq0 + r;
        qs[r][d] = t < T ? qkv[(size_t)t * ld + (size_t)h * hd + d] : 0.0f;
    }
    if (tid < QT) {
        mrow[tid] = -INFINITY;
        lrow[tid] = 0.0f;
    }
    float o[QT];
#pragma unroll
    for (int r = 0; r < QT; r++) o[r] = 0.0f;
    const int t_last = min(T, tq0 + QT) - 1;
    const int kv_end = pos0 + t_last + 1;  // keys [0, kv_end)
    const __half *kh = kc + (size_t)g * ctx * hd, *vh = vc + (size_t)g * ctx * hd;
    const int lane = tid & 31, warp = tid >> 5;
    for (int kb = 0; kb < kv_end; kb += CHUNK) {
        const int nk = min(CHUNK, kv_end - kb);
        __syncthreads();
#pragma unroll 8
        for (int idx = tid; idx < CHUNK * (hd / 8); idx += ATT_THREADS) {
            const int j = idx / (hd / 8), c = idx % (hd / 8);
            uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
            if (j < nk) {
                kv4 = *(const uint4 *)(kh + (size_t)(kb + j) * hd + c * 8);
                vv4 = *(const uint4 *)(vh + (size_t)(kb + j) * hd + c * 8);
            }
            *(uint4 *)&ks[j][c * 8] = kv4;
            *(uint4 *)&vs[j][c * 8] = vv4;
        }
        __syncthreads();
        {
            const int j = tid & (CHUNK - 1), qg = tid >> 6;  // queries qg*8 .. qg*8+7
            float acc[8];
#pragma unroll
            for (int r = 0; r < 8; r++) acc[r] = 0.0f;
            for (int c = 0; c < hd / 8; c++) {
                const uint4 u = *(const uint4 *)&ks[j][c * 8];
                const __half2 *h2 = (const __half2 *)&u;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float2 f = __half22float2(h2[e]);
#pragma unroll
                    for (int r = 0; r < 8; r++) {
                        acc[r] = fmaf(qs[qg * 8 + r][c * 8 + 2 * e], f.x, acc[r]);
                        acc[r] = fmaf(qs[qg * 8 + r][c * 8 + 2 * e + 1], f.y, acc[r]);
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < 8; r++) {
                const int qr = qg * 8 + r, qpos = pos0 + tq0 + qr, kpos = kb + j;
                sc[qr][j] = (j < nk && kpos <= qpos && tq0 + qr < T) ? acc[r] * scale : -INFINITY;
            }
        }
        __syncthreads();
        for (int r = warp; r < QT; r += ATT_THREADS / 32) {
            const float v0 = sc[r][lane], v1 = sc[r][lane + 32];
            const float mold = mrow[r];
            const float mnew = fmaxf(mold, warp_max(fmaxf(v0, v1)));
            const float e0 = mnew == -INFINITY ? 0.0f : expf(v0 - mnew);
            const float e1 = mnew == -INFINITY ? 0.0f : expf(v1 - mnew);
            const float sum = warp_sum(e0 + e1);
            sc[r][lane] = e0;
            sc[r][lane + 32] = e1;
            __syncwarp();
            if (lane == 0) {
                const float cf = (mold == -INFINITY) ? 0.0f : expf(mold - mnew);
                corr[r] = cf;
                lrow[r] = lrow[r] * cf + sum;
                mrow[r] = mnew;
            }
        }
        __syncthreads();
        if (tid < hd) {
#pragma unroll
            for (int r = 0; r < QT; r++) o[r] *= corr[r];
            for (int j = 0; j < nk; j++) {
                const float vv = __half2float(vs[j][tid]);
#pragma unroll
                for (int r = 0; r < QT; r++) o[r] = fmaf(sc[r][j], vv, o[r]);
            }
        }
    }
    __syncthreads();
    if (tid < hd)
        for (int r = 0; r < QT; r++) {
            const int t = tq0 + r;
            if (t < T) out[(size_t)t * n_heads * hd + (size_t)h * hd + tid] = o[r] / lrow[r];
        }
}

int check_shape(const KcudaAttnShape *a, const char *fn) {
    if (!a || !a->d_rope) return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL shape or rope table", fn);
    if (a->n_heads <= 0 || a->n_kv <= 0 || a->n_heads % a->n_kv || a->n_heads / a->n_kv > MAX_REP ||
        a->head_dim <= 0 || a->head_dim > MAX_HD || a->head_dim % 16 || a->ctx <= 0)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: heads %d/%d, head_dim %d, ctx %d unsupported (head_dim a multiple of 16 up to 128, at most 8 query heads per KV head)", fn, a->n_heads, a->n_kv, a->head_dim, a->ctx);
    return KCUDA_OK;
}

}  // namespace

extern "C" size_t kcuda_attn_decode_scratch(const KcudaAttnShape *a) {
    const int max_splits = (a->ctx + CHUNK - 1) / CHUNK;
    return (size_t)a->n_kv * max_splits * (a->n_heads / a->n_kv) * (a->head_dim + 2);
}

extern "C" int kcuda_attn_decode(const KcudaAttnShape *a, const float *d_qkv, uint16_t *d_kc,
                                 uint16_t *d_vc, const int *d_pos, float *d_out, float *d_part,
                                 int *d_count, int pdl, void *stream) {
    int rc = check_shape(a, "kcuda_attn_decode");
    if (rc) return rc;
    if (!d_qkv || !d_kc || !d_vc || !d_pos || !d_out || !d_part || !d_count)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_decode: NULL pointer");
    AttnParams p = {};
    p.n_heads = a->n_heads;
    p.n_kv = a->n_kv;
    p.hd = a->head_dim;
    p.ctx = a->ctx;
    p.style = a->rope_style;
    p.max_splits = (a->ctx + CHUNK - 1) / CHUNK;
    p.rope = a->d_rope;
    p.qkv = d_qkv;
    p.kc = (__half *)d_kc;
    p.vc = (__half *)d_vc;
    p.pos = d_pos;
    p.out = d_out;
    p.part = d_part;
    p.count = d_count;
    return kcuda_launch(attn_decode_kernel2, dim3((unsigned)a->n_kv, (unsigned)p.max_splits),
                        dim3(ATT_THREADS), 0, stream, pdl, p);
}

extern "C" int kcuda_attn_prefill(const KcudaAttnShape *a, float *d_qkv, int ld_qkv, int T,
                                  int pos0, uint16_t *d_kc, uint16_t *d_vc, float *d_out,
                                  void *stream) {
    int rc = check_shape(a, "kcuda_attn_prefill");
    if (rc) return rc;
    if (!d_qkv || !d_kc || !d_vc || !d_out) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_attn_prefill: NULL pointer");
    if (T <= 0 || pos0 < 0 || pos0 + T > a->ctx || ld_qkv < (a->n_heads + 2 * a->n_kv) * a->head_dim)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_attn_prefill: T %d at %d beyond ctx %d (or ld %d)", T, pos0, a->ctx, ld_qkv);
    rc = kcuda_launch(rope_kv_prefill_kernel, dim3((unsigned)T), dim3(256), 0, stream, 0, d_qkv,
                      ld_qkv, a->n_heads, a->n_kv, a->head_dim, a->ctx, a->rope_style, a->d_rope,
                      pos0, (__half *)d_kc, (__half *)d_vc);
    if (rc) return rc;
    return kcuda_launch(attn_prefill_kernel1, dim3((unsigned)a->n_heads, (unsigned)((T + QT - 1) / QT)),
                        dim3(ATT_THREADS), 0, stream, 0, (const float *)d_qkv, ld_qkv, T, pos0,
                        a->n_heads, a->n_kv, a->head_dim, a->ctx, (const __half *)d_kc,
                        (const __half *)d_vc, d_out);
}
