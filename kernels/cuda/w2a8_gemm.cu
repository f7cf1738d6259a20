// The prefill GEMM launcher (kernel 4 of w2a8_gemm.cuh, one of three tiles chosen by shape, split
// over K where that fills the GPU) and the per-row RMSNorm + int8 quantization of the prefill
// rows. (The warpgroup-MMA kernel, version 5, is in the lab: kernels/dev/w2a8_gemm_wgmma_kernel.cuh
// says why it left the product.)
#include "kernels/cuda/w2a8_gemm.cuh"

namespace {

// The three tiles the launcher picks from (Gemm4Cfg: warps WGM x WGN of MT x NT mma tiles,
// pipeline stages, k-tiles per stage). Measured on the H100 (lab, kernels/dev/README.md):
// - 64x128 as 4 warps of 64x32, 3 stages (lab tile 17, 2026-12-06): a warp's B fragments serve
//   four row tiles and no two warps expand the same weights. At T = 512 with the split below it
//   takes the four 2B GEMMs from 157.0 us (64x64, no split) to 137.9 us: gate/up 72.3 -> 61.2,
//   down 42.0 -> 34.7 (3 splits), QKV 23.7 -> 23.2, O 19.0 -> 18.8 (2 splits). Used where its
//   grid has at least one block per SM.
// - 64x64 as 4 warps of 32x32 (2026-11-23): the fastest of the first seven tiles at T = 512 and
//   at T = 64 on gate/up; used below the 64x128 tile where its grid covers ~90% of the SMs.
// - 64x16 with two k-tiles per stage: where 64x64 gives too few blocks (T = 64, N = 2560/3840),
//   7.2-7.4 us against 7.7-8.1 with one.
// Only the 64x128 tile splits over K (its T = 512 rows above); the two small-M tiles were not
// measured split and launch as before.
#define GEMM_TILE_64X128 1, 4, 4, 4, 3, 1  // 4 warps of 64x32, 3 stages of one k-tile
#define GEMM_TILE_64X64 2, 2, 2, 4, 4, 1   // 4 warps of 32x32, 4 stages of one k-tile
#define GEMM_TILE_64X16 4, 1, 1, 2, 4, 2   // 4 warps of 16x16, 4 stages of two k-tiles

// Blocks of kernel 4 with configuration C that one SM holds at once (0 where the query fails).
template <class C, typename K>
int gemm4_blocks_per_sm(K kern) {
    int n = 0;
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kern, C::THREADS, C::SMEM) == cudaSuccess ? n : 0;
}

// Split-K factor for a grid of `blocks` tiles over nb I2_S blocks: the largest of 1..4 whose
// split grid still fits the GPU at once (every block resident: one wave), keeping >= 8 I2_S
// blocks per split (the pipeline's fill and the reduction stay small against the k-loop). On
// the 64x128 tile at T = 512 this picks the fastest split of the lab's 1..4 on all four 2B
// shapes (2026-12-06). Needs clusters (compute capability 9.0).
int gemm_split_k(long blocks, int per_sm, int nb) {
    static const int cc_major = [] {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
            v = 0;
        return v;
    }();
    const long cap = (long)per_sm * kcuda_sm_count();
    int sk = 1;
    if (cc_major < 9) return 1;
    while (sk < 4 && blocks * (sk + 1) <= cap && nb / (sk + 1) >= 8) sk++;
    return sk;
}

template <int EP, int WGM, int WGN, int MT, int NT, int ST, int KB>
int gemm4_launch_ep(int pdl, void *stream, bool split, const GemmParams &p) {
    using C = Gemm4Cfg<WGM, WGN, MT, NT, ST, KB>;
    auto kern = w2a8_gemm_kernel4<EP, C, WGM, WGN, MT, NT>;
    // once per kernel (thread-safe static initialization)
    static const cudaError_t attr = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM);
    if (attr != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_w2a8_gemm: shared memory of %zu bytes: %s", C::SMEM, cudaGetErrorString(attr));
    // after the carveout is set (kcuda_prepare_func), which the occupancy depends on
    static const int per_sm = kcuda_prepare_func((const void *)kern) ? 0 : gemm4_blocks_per_sm<C>(kern);
    dim3 grid((unsigned)((p.n_out + C::BN - 1) / C::BN), (unsigned)((p.M + C::BM - 1) / C::BM));
    grid.z = split ? (unsigned)gemm_split_k((long)grid.x * grid.y, per_sm, p.k_pad / BK) : 1u;
    return gemm4_launch_grid<C>(kern, grid, stream, pdl, p);
}

template <int WGM, int WGN, int MT, int NT, int ST, int KB>
int gemm4_launch(int ep, int pdl, void *stream, bool split, const GemmParams &p) {
    switch (ep) {
    case KCUDA_EP_F32: return gemm4_launch_ep<KCUDA_EP_F32, WGM, WGN, MT, NT, ST, KB>(pdl, stream, split, p);
    case KCUDA_EP_RESID: return gemm4_launch_ep<KCUDA_EP_RESID, WGM, WGN, MT, NT, ST, KB>(pdl, stream, split, p);
    case KCUDA_EP_GLU: return gemm4_launch_ep<KCUDA_EP_GLU, WGM, WGN, MT, NT, ST, KB>(pdl, stream, split, p);
    case KCUDA_EP_I32: return gemm4_launch_ep<KCUDA_EP_I32, WGM, WGN, MT, NT, ST, KB>(pdl, stream, split, p);
    default: return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: bad epilogue %d", ep);
    }
}

bool gemm_tile_64x128(int M, int N) {
    const int sms = kcuda_sm_count();
    return (long)((N + 127) / 128) * ((M + 63) / 64) >= (long)(sms ? sms : 132);
}

bool gemm_tile_64x64(int M, int N) {
    const int sms = kcuda_sm_count();
    const long blocks = (long)((N + 63) / 64) * ((M + 63) / 64);
    return blocks * 10 >= (long)(sms ? sms : 132) * 9;
}

// ---- per-row RMSNorm + int8 quantization for prefill (lab version 2) -----------------------
// The same formulas as norm_quant_prologue (kcuda_rmsnorm_quant), but each row is read from
// memory once, as float4 into registers (up to 8 per thread: k_pad <= 8192), instead of three
// strided passes with a block reduction after each: version 1 took 5.6 us (512 rows x 2560)
// and 11.4 us (x 6912), four times per layer. Only the order of the sum of squares differs.
enum { NQ_THREADS = 256, NQ_VPT = 8 };
__global__ void __launch_bounds__(NQ_THREADS) norm_quant_rows2_kernel(const float *x, int ld_x, int k_in, int k_pad,
                                                                    const float *norm_w, float eps, int8_t *q,
                                                                    float *s_out, int32_t *qsum) {
    __shared__ float red[NQ_THREADS / 32];
    pdl_trigger();
    const int r = blockIdx.x, tid = threadIdx.x, n4 = k_in / 4, p4 = k_pad / 4;
    float4 w[NQ_VPT];
#pragma unroll
    for (int v = 0; v < NQ_VPT; v++) {  // norm weights are constant: read before the wait
        const int j = tid + NQ_THREADS * v;
        w[v] = norm_w && j < n4 ? ((const float4 *)norm_w)[j] : make_float4(1.f, 1.f, 1.f, 1.f);
    }
    pdl_wait();
    const float4 *xr = (const float4 *)(x + (size_t)r * ld_x);
    float4 xv[NQ_VPT];
    float ss = 0.0f;
#pragma unroll
    for (int v = 0; v < NQ_VPT; v++) {
        const int j = tid + NQ_THREADS * v;
        xv[v] = j < n4 ? xr[j] : make_float4(0.f, 0.f, 0.f, 0.f);
        ss += xv[v].x * xv[v].x + xv[v].y * xv[v].y + xv[v].z * xv[v].z + xv[v].w * xv[v].w;
    }
    float inv = 1.0f;
    if (norm_w) {
        ss = block_sum<NQ_THREADS>(ss, red);
        inv = 1.0f / sqrtf(ss / (float)k_in + eps);
    }
    float amax = 0.0f;
#pragma unroll
    for (int v = 0; v < NQ_VPT; v++) {
        if (norm_w) {
            xv[v].x = w[v].x * (xv[v].x * inv);
            xv[v].y = w[v].y * (xv[v].y * inv);
            xv[v].z = w[v].z * (xv[v].z * inv);
            xv[v].w = w[v].w * (xv[v].w * inv);
        }
        amax = fmaxf(amax, fmaxf(fmaxf(fabsf(xv[v].x), fabsf(xv[v].y)), fmaxf(fabsf(xv[v].z), fabsf(xv[v].w))));
    }
    amax = block_max<NQ_THREADS>(amax, red);
    const float sc = 127.0f / fmaxf(amax, 1e-5f);
    int sum = 0;
#pragma unroll
    for (int v = 0; v < NQ_VPT; v++) {
        const int j = tid + NQ_THREADS * v;
        if (j < p4) {
            const float e[4] = {xv[v].x, xv[v].y, xv[v].z, xv[v].w};  // zeros past k_in
            uint32_t word = 0;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int qi = (int)fminf(fmaxf(rintf(e[i] * sc), -128.0f), 127.0f);
                sum += qi;
                word |= (uint32_t)(qi & 0xff) << (8 * i);
            }
            ((uint32_t *)(q + (size_t)r * k_pad))[j] = word;
        }
    }
    sum = block_sum_i<NQ_THREADS>(sum, red);
    if (tid == 0) {
        s_out[r] = sc;
        qsum[r] = sum;
    }
}

}  // namespace

// Rows that do not fit the kernel above (k_pad > 8192, k_in or ld_x not multiples of 4,
// unaligned pointers) go to kcuda_rmsnorm_quant (lab version 1), which also checks the
// arguments and names what is wrong.
extern "C" int kcuda_rmsnorm_quant_prefill(const float *d_x, int rows, int ld_x, int k_in, int k_pad,
                                           const float *d_norm_w, float eps, int8_t *d_q, float *d_s,
                                           int32_t *d_qsum, int pdl, void *stream) {
    const bool fits = d_x && d_q && d_s && d_qsum && rows > 0 && k_in > 0 && k_in <= k_pad && k_pad % 128 == 0 &&
                      k_pad <= NQ_THREADS * NQ_VPT * 4 && k_in % 4 == 0 && ld_x % 4 == 0 && ld_x >= k_in &&
                      ((uintptr_t)d_x | (uintptr_t)d_norm_w | (uintptr_t)d_q) % 16 == 0;
    if (!fits) return kcuda_rmsnorm_quant(d_x, rows, ld_x, k_in, k_pad, d_norm_w, eps, d_q, d_s, d_qsum, pdl, stream);
    return kcuda_launch(norm_quant_rows2_kernel, dim3((unsigned)rows), dim3(NQ_THREADS), 0, stream, pdl, d_x, ld_x,
                        k_in, k_pad, d_norm_w, eps, d_q, d_s, d_qsum);
}

extern "C" int kcuda_w2a8_gemm(const KcudaTernary *w, const int8_t *d_q, const float *d_s,
                               const int32_t *d_qsum, int M, KcudaEpilogue ep, void *d_out,
                               int ld_out, int pdl, void *stream) {
    const int rc = kcuda_check_ternary(w, ep, "kcuda_w2a8_gemm");
    if (rc) return rc;
    if (!d_q || !d_qsum || !d_out) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: NULL pointer");
    if (M <= 0) return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_w2a8_gemm: %d tokens", M);
    if ((uintptr_t)d_q % 16) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemm: activations not 16-byte aligned");
    const int out_cols = ep == KCUDA_EP_GLU ? w->n_out / 2 : w->n_out;
    if (ld_out < out_cols)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_w2a8_gemm: ld_out %d < %d", ld_out, out_cols);
    GemmParams p = {};
    p.w = w->d_codes;
    p.n_out = w->n_out;
    p.k_pad = w->k_pad;
    p.M = M;
    p.q = d_q;
    p.s = d_s;
    p.qsum = d_qsum;
    p.seg0 = w->glu ? w->n_out : w->seg_end[0];
    p.seg1 = w->glu ? w->n_out : w->seg_end[1];
    p.g0 = w->gamma[0];
    p.g1 = w->gamma[1];
    p.g2 = w->gamma[2];
    p.act = w->act;
    p.out = d_out;
    p.ld_out = ld_out;
    if (gemm_tile_64x128(M, w->n_out)) return gemm4_launch<GEMM_TILE_64X128>(ep, pdl, stream, true, p);
    if (gemm_tile_64x64(M, w->n_out)) return gemm4_launch<GEMM_TILE_64X64>(ep, pdl, stream, false, p);
    return gemm4_launch<GEMM_TILE_64X16>(ep, pdl, stream, false, p);
}
