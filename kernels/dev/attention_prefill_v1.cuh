// Lab: prefill attention version 1 on CUDA cores, for dev_w2a8_gemm (kernels/dev/w2a8_gemm.cu).
// One block per (query head, 16 queries); keys in tiles of 64 through shared memory, online
// softmax per query row. 121.6 us per 2B layer at T = 512 on an H100 (11 TFLOP/s, RoPE kernel
// included), 14.8 us at T = 64; the product's tensor-core kernel (attention_prefill.cuh) took
// 29.5 / 26.6 us (one / two key splits) at T = 512. Reads the cache the RoPE kernel wrote.
#pragma once
#include "kernels/cuda/attention_prefill.cuh"

namespace {
enum { QT = 16, MAX_HD = 128 };  // queries per block, largest head_dim
__global__ void __launch_bounds__(ATT_THREADS) attn_prefill_kernel1(
    const float *qkv, int ld, int T, int pos0, int n_heads, int n_kv, int hd, int ctx,
    const __half *kc, const __half *vc, float *out) {
    __shared__ __align__(16) float qs[QT][MAX_HD];
    __shared__ __align__(16) __half ks[CHUNK][MAX_HD + 8];
    __shared__ __align__(16) __half vs[CHUNK][MAX_HD];
    __shared__ __align__(16) float sc[QT][CHUNK];
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
                const float2 f0 = __half22float2(h2[0]), f1 = __half22float2(h2[1]);
                const float2 f2 = __half22float2(h2[2]), f3 = __half22float2(h2[3]);
#pragma unroll
                for (int r = 0; r < 8; r++) {
                    // 16-byte broadcast reads of q: 4x fewer shared loads than scalar reads
                    const float4 qa = *(const float4 *)&qs[qg * 8 + r][c * 8];
                    const float4 qb = *(const float4 *)&qs[qg * 8 + r][c * 8 + 4];
                    float a = acc[r];
                    a = fmaf(qa.x, f0.x, a);
                    a = fmaf(qa.y, f0.y, a);
                    a = fmaf(qa.z, f1.x, a);
                    a = fmaf(qa.w, f1.y, a);
                    a = fmaf(qb.x, f2.x, a);
                    a = fmaf(qb.y, f2.y, a);
                    a = fmaf(qb.z, f3.x, a);
                    a = fmaf(qb.w, f3.y, a);
                    acc[r] = a;
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
            // Four keys at a time: sc rows read as float4 (probabilities past nk are 0).
            for (int j = 0; j < nk; j += 4) {
                const float v0 = __half2float(vs[j][tid]), v1 = __half2float(vs[j + 1][tid]);
                const float v2 = __half2float(vs[j + 2][tid]), v3 = __half2float(vs[j + 3][tid]);
#pragma unroll
                for (int r = 0; r < QT; r++) {
                    const float4 pr = *(const float4 *)&sc[r][j];
                    float a = o[r];
                    a = fmaf(pr.x, v0, a);
                    a = fmaf(pr.y, v1, a);
                    a = fmaf(pr.z, v2, a);
                    a = fmaf(pr.w, v3, a);
                    o[r] = a;
                }
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
}  // namespace

static int lab_attn_prefill_v1(const KcudaAttnShape *a, const float *d_qkv, int ld_qkv, int T, int pos0,
                               const uint16_t *d_kc, const uint16_t *d_vc, float *d_out, void *stream) {
    return kcuda_launch(attn_prefill_kernel1, dim3((unsigned)a->n_heads, (unsigned)((T + QT - 1) / QT)),
                        dim3(ATT_THREADS), 0, stream, 0, d_qkv, ld_qkv, T, pos0, a->n_heads, a->n_kv,
                        a->head_dim, a->ctx, (const __half *)d_kc, (const __half *)d_vc, d_out);
}
