// Lab: the tiles of the warpgroup-MMA prefill GEMM (version 5, w2a8_gemm_wgmma_kernel.cuh)
// that dev_w2a8_gemm runs, each at every epilogue (the lab checks the float epilogues too).
#pragma once
#include "kernels/dev/w2a8_gemm_wgmma_kernel.cuh"

// The tiles (id, warpgroups, 64-row tiles per warpgroup, tokens per block, stages, warp-specialized):
//   1: 256 rows x 128 tokens (2 warpgroups of 128x128): per k-tile 16 KB of activations and 8 KB
//      of weights for 4.2 M multiply-adds, the least global traffic of the 128-accumulator tiles
//   2: 128 x 256 (2 warpgroups of 64x256)   3: 128 x 128 (2 warpgroups of 64x128, 64 accumulators)
//   4: 128 x 128 (1 warpgroup of 128x128)   5: 256 x 64 (2 warpgroups of 128x64)
//   6: 1 with 6 stages   7: 256 x 128 as 4 warpgroups of 64x128 (more warpgroups to cover each
//      other's wait for their wgmmas)
//   8-10: warp-specialized (a load warpgroup, mbarriers): 8: as 1   9: as 6   10: as 2
//   11: 8 whose load warpgroup first asks L2 for all the block's weights (bulk prefetch per row)
#define GEMM5_CONFIGS(X)     \
    X(1, 2, 2, 128, 4, false) \
    X(2, 2, 1, 256, 4, false) \
    X(3, 2, 1, 128, 4, false) \
    X(4, 1, 2, 128, 5, false) \
    X(5, 2, 2, 64, 6, false)  \
    X(6, 2, 2, 128, 6, false) \
    X(7, 4, 1, 128, 4, false) \
    X(8, 2, 2, 128, 4, true)  \
    X(9, 2, 2, 128, 6, true)  \
    X(10, 2, 1, 256, 4, true) \
    X(11, 2, 2, 128, 4, 2)
enum { GEMM5_N_CONFIGS = 11 };

namespace {

template <int EP, int NWG, int MW, int BT, int ST, int WS>
int lab_gemm5_ep(void *stream, int sk, const GemmParams &p) {
    using C = Gemm5Cfg<NWG, MW, BT, ST, WS>;
    auto kern = w2a8_gemm_kernel5<EP, C, NWG, MW, BT, WS>;
    static bool attr = false;
    if (!attr) {
        KCUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
        attr = true;
    }
    const dim3 grid((unsigned)((p.n_out + C::BM - 1) / C::BM), (unsigned)((p.M + BT - 1) / BT), (unsigned)sk);
    return gemm4_launch_grid<C>(kern, grid, stream, 0, p);
}

// Version 5 at tile cfg (GEMM5_CONFIGS), split over K into sk blocks per tile, epilogue ep.
int lab_gemm5_cfg(int cfg, int ep, void *stream, int sk, const GemmParams &p) {
    switch (cfg * 8 + ep) {
#define X(id, nwg, mw, bt, st, ws)                                                                      \
    case id * 8 + KCUDA_EP_I32: return lab_gemm5_ep<KCUDA_EP_I32, nwg, mw, bt, st, ws>(stream, sk, p);     \
    case id * 8 + KCUDA_EP_F32: return lab_gemm5_ep<KCUDA_EP_F32, nwg, mw, bt, st, ws>(stream, sk, p);     \
    case id * 8 + KCUDA_EP_RESID: return lab_gemm5_ep<KCUDA_EP_RESID, nwg, mw, bt, st, ws>(stream, sk, p); \
    case id * 8 + KCUDA_EP_GLU: return lab_gemm5_ep<KCUDA_EP_GLU, nwg, mw, bt, st, ws>(stream, sk, p);
        GEMM5_CONFIGS(X)
#undef X
    default: return kcuda_fail(KCUDA_ERR_ARG, "lab_gemm: bad version-5 tile %d or epilogue %d", cfg, ep);
    }
}

}  // namespace
