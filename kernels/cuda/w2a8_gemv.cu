// The decode GEMV launcher (W2A8, batch 1, kernels in w2a8_gemv.cuh) and the per-row RMSNorm +
// int8 quantization of the prefill path's fallback rows.
#include "kernels/cuda/w2a8_gemv.cuh"

// Which kernel a matrix gets: kernel 5 with 2 rows per 8-lane group where that still gives
// >= 198 blocks (1.5 per SM of an H100's 132) and a lane holds at most 8 chunks of a row
// (K <= 4096; more would not fit in registers): in a 2B-4T decode step only gate/up (13824 rows,
// 432 blocks in one wave). Every other matrix takes kernel 3 (its latency, not its bandwidth,
// decides). Measured on an H100 (2026-11-23, kernels/dev/README.md, lab versions 3 and 6 R 2):
// decode 64/64 1046.5 tok/s with kernel 3 everywhere, 1062.4 with this choice, same triggers.
// Kernel 5 runs 256-thread blocks (64 rows, 216 blocks for gate/up): half the blocks that each
// read and normalise all of x. Measured in the decode chain on an H100 (2026-12-06,
// kernels/dev/run_timeline_device.sh, 2B shapes, two rounds): gate/up 4.03 -> 3.90 us exposed
// per layer, down (its successor) 4.66 -> 4.48, step 945 -> 930 us at position ~50 (1115 ->
// 1114 at ~530); R 4 with 128 threads (the same 216 blocks) was slower (960 us).
enum { GEMV5_MIN_BLOCKS = 198, GEMV5_MAX_CHUNKS = 8, GEMV5_THREADS = 256 };

static bool gemv_two_rows(int n_out, int per_lane) {
    return per_lane <= GEMV5_MAX_CHUNKS && (n_out + 2 * GEMV_ROWS - 1) / (2 * GEMV_ROWS) >= GEMV5_MIN_BLOCKS;
}

template <int MAXC, int LPR = 8>
static int gemv3_launch(int ep, dim3 grid, size_t smem, void *stream, int pdl, const GemvParams &p) {
    const dim3 blk(16 * LPR);
    switch (ep) {
    case KCUDA_EP_F32: return kcuda_launch(w2a8_gemv_kernel3<MAXC, KCUDA_EP_F32, LPR>, grid, blk, smem, stream, pdl, p);
    case KCUDA_EP_RESID: return kcuda_launch(w2a8_gemv_kernel3<MAXC, KCUDA_EP_RESID, LPR>, grid, blk, smem, stream, pdl, p);
    case KCUDA_EP_GLU: return kcuda_launch(w2a8_gemv_kernel3<MAXC, KCUDA_EP_GLU, LPR>, grid, blk, smem, stream, pdl, p);
    default: return kcuda_launch(w2a8_gemv_kernel3<MAXC, KCUDA_EP_I32, LPR>, grid, blk, smem, stream, pdl, p);
    }
}

template <int MAXC, int R = 2, int NT = GEMV5_THREADS>
static int gemv5_launch(int ep, dim3 grid, size_t smem, void *stream, int pdl, const GemvParams &p) {
    const dim3 blk(NT);
    switch (ep) {
    case KCUDA_EP_F32: return kcuda_launch(w2a8_gemv_kernel5<MAXC, R, KCUDA_EP_F32, NT>, grid, blk, smem, stream, pdl, p);
    case KCUDA_EP_RESID: return kcuda_launch(w2a8_gemv_kernel5<MAXC, R, KCUDA_EP_RESID, NT>, grid, blk, smem, stream, pdl, p);
    case KCUDA_EP_GLU: return kcuda_launch(w2a8_gemv_kernel5<MAXC, R, KCUDA_EP_GLU, NT>, grid, blk, smem, stream, pdl, p);
    default: return kcuda_launch(w2a8_gemv_kernel5<MAXC, R, KCUDA_EP_I32, NT>, grid, blk, smem, stream, pdl, p);
    }
}

static GemvParams make_params(const KcudaTernary *w, void *out) {
    GemvParams p = {};
    p.w = w->d_codes;
    p.n_out = w->n_out;
    p.k_pad = w->k_pad;
    p.seg0 = w->glu ? w->n_out : w->seg_end[0];
    p.seg1 = w->glu ? w->n_out : w->seg_end[1];
    p.g0 = w->gamma[0];
    p.g1 = w->gamma[1];
    p.g2 = w->gamma[2];
    p.act = w->act;
    p.out = out;
    return p;
}

extern "C" int kcuda_w2a8_gemv(const KcudaTernary *w, const float *d_x, int k_in,
                               const float *d_norm_w, float eps, const int8_t *d_q,
                               const float *d_s, const int32_t *d_qsum, KcudaEpilogue ep,
                               void *d_out, int pdl, void *stream) {
    int rc = kcuda_check_ternary(w, ep, "kcuda_w2a8_gemv");
    if (rc) return rc;
    if (!d_out) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemv: NULL output");
    if (d_x) {
        if (k_in <= 0 || k_in > w->k_pad)
            return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_w2a8_gemv: input length %d does not fit k_pad %d", k_in, w->k_pad);
    } else if (!d_q || !d_qsum || ((uintptr_t)d_q % 4)) {
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_w2a8_gemv: needs d_x, or d_q (4-byte aligned) with d_qsum");
    }
    if (w->k_pad > 32768)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_w2a8_gemv: k_pad %d above 32768 (shared memory)", w->k_pad);
    GemvParams p = make_params(w, d_out);
    p.k_in = d_x ? k_in : w->k_pad;
    p.x = d_x;
    p.norm_w = d_norm_w;
    p.eps = eps;
    p.q = d_q;
    p.s = d_s;
    p.qsum = d_qsum;
    // where the next kernel may launch (kernels_cuda.h KCUDA_PDL_*): 0 at this kernel's start,
    // 1 after its PDL wait, 2 after its dot products
    p.late_trigger = pdl >= KCUDA_PDL_LATE ? pdl - 1 : 0;
    const size_t smem = (size_t)w->k_pad;  // the quantized activations
    const int per_lane = (w->k_pad / 64 + 7) / 8;
    if (gemv_two_rows(w->n_out, per_lane)) {
        const int rows = 2 * (GEMV5_THREADS / 8);
        const dim3 grid((unsigned)((w->n_out + rows - 1) / rows));
        if (per_lane <= 4) return gemv5_launch<4>(ep, grid, smem, stream, pdl, p);
        if (per_lane <= 5) return gemv5_launch<5>(ep, grid, smem, stream, pdl, p);
        if (per_lane <= 7) return gemv5_launch<7>(ep, grid, smem, stream, pdl, p);
        return gemv5_launch<8>(ep, grid, smem, stream, pdl, p);
    }
    const dim3 grid((unsigned)((w->n_out + GEMV_ROWS - 1) / GEMV_ROWS));
    // Long rows (K > 4096: down_proj) take 16 lanes a row (256-thread blocks, half the prologue
    // and dot products per thread). Measured in the decode chain on an H100 (2026-12-06,
    // kernels/dev/run_timeline_device.sh, 2B shapes, two rounds): down_proj 5.53 -> 4.69 us
    // exposed per layer, decode step 995 -> 970 us (position ~50) and 1163 -> 1137 us (~530). 16
    // lanes for the K 2560 matrices too: QKV -0.23 us but O +0.36 and attention at ~530 +1.5 us
    // (step 1165 us there), so not for those.
    const int per_lane16 = (w->k_pad / 64 + 15) / 16;
    if (per_lane > 8) {
        if (per_lane16 <= 5) return gemv3_launch<5, 16>(ep, grid, smem, stream, pdl, p);
        if (per_lane16 <= 7) return gemv3_launch<7, 16>(ep, grid, smem, stream, pdl, p);
        if (per_lane16 <= 8) return gemv3_launch<8, 16>(ep, grid, smem, stream, pdl, p);
        if (per_lane16 <= 14) return gemv3_launch<14, 16>(ep, grid, smem, stream, pdl, p);
        return gemv3_launch<16, 16>(ep, grid, smem, stream, pdl, p);
    }
    // Loads per lane in flight = MAXC; instantiated for the model shapes (K 2560: 5, 3200: 7),
    // so no registers are spent on always-masked chunks.
    if (per_lane <= 4) return gemv3_launch<4>(ep, grid, smem, stream, pdl, p);
    if (per_lane <= 5) return gemv3_launch<5>(ep, grid, smem, stream, pdl, p);
    if (per_lane <= 7) return gemv3_launch<7>(ep, grid, smem, stream, pdl, p);
    return gemv3_launch<8>(ep, grid, smem, stream, pdl, p);
}

// ---- per-row RMSNorm + quant (prefill) ------------------------------------------------------

__global__ void __launch_bounds__(GEMV_THREADS) rmsnorm_quant_rows_kernel(
    const float *x, int ld_x, int k_in, int k_pad, const float *norm_w, float eps, int8_t *q,
    float *s, int32_t *qsum) {
    __shared__ float red[GEMV_THREADS / 32];
    pdl_trigger();
    pdl_wait();
    const int r = blockIdx.x;
    int sum = 0;
    const float sc = norm_quant_prologue<GEMV_THREADS>(x + (size_t)r * ld_x, k_in, k_pad, norm_w,
                                                       eps, q + (size_t)r * k_pad, &sum, red);
    if (threadIdx.x == 0) {
        s[r] = sc;
        qsum[r] = sum;
    }
}

extern "C" int kcuda_rmsnorm_quant(const float *d_x, int rows, int ld_x, int k_in, int k_pad,
                                   const float *d_norm_w, float eps, int8_t *d_q, float *d_s,
                                   int32_t *d_qsum, int pdl, void *stream) {
    if (!d_x || !d_q || !d_s || !d_qsum)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_rmsnorm_quant: NULL pointer");
    if (rows <= 0 || k_in <= 0 || k_in > k_pad || k_pad % 128 || ld_x < k_in)
        return kcuda_fail(KCUDA_ERR_SHAPE, "kcuda_rmsnorm_quant: rows %d, k_in %d, k_pad %d, ld %d unsupported", rows, k_in, k_pad, ld_x);
    if ((uintptr_t)d_q % 4)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_rmsnorm_quant: q not 4-byte aligned");
    return kcuda_launch(rmsnorm_quant_rows_kernel, dim3((unsigned)rows), dim3(GEMV_THREADS), 0,
                        stream, pdl, d_x, ld_x, k_in, k_pad, d_norm_w, eps, d_q, d_s, d_qsum);
}
