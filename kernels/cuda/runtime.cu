// The runtime side of the CUDA kernels: the last error message, the shared-memory carveout set
// once per kernel, device queries, and the upload of I2_S rows.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <mutex>

#include "kernels/cuda/common.cuh"

static thread_local char g_err[512];

int kcuda_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return code;
}

extern "C" const char *kcuda_last_error(void) { return g_err; }

// The kernels already given their carveout; a lock, since two backends may launch from two
// threads (setting the attribute twice is harmless, reading a half-written list is not).
int kcuda_prepare_func(const void *fn) {
    static std::mutex mu;
    static const void *done[256];
    static int n_done;
    std::lock_guard<std::mutex> hold(mu);
    for (int i = 0; i < n_done; i++)
        if (done[i] == fn) return KCUDA_OK;
    const int carveout = 70;  // percent of the maximum shared memory (why: common.cuh)
    const cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout, carveout);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "setting the shared memory carveout: %s", cudaGetErrorString(e));
    if (n_done < 256) done[n_done++] = fn;
    return KCUDA_OK;
}

extern "C" int kcuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int kcuda_device_describe(char *buf, int cap) {
    int dev = 0;
    cudaDeviceProp p;
    KCUDA_TRY(cudaGetDevice(&dev));
    KCUDA_TRY(cudaGetDeviceProperties(&p, dev));
    snprintf(buf, (size_t)cap, "%s, sm_%d%d, %d SMs, %.1f GiB", p.name, p.major, p.minor,
             p.multiProcessorCount, (double)p.totalGlobalMem / (1024.0 * 1024 * 1024));
    return KCUDA_OK;
}

int kcuda_sm_count() {
    // a device property, asked once (thread-safe static initialization)
    static const int n = [] {
        int dev = 0, c = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
            cudaGetLastError();
            return 0;
        }
        return c;
    }();
    return n;
}

// The CUDA context reserves each thread's stack for every thread the GPU can hold (132 SMs x
// 2048 on an H100: each byte of the per-thread limit is 0.26 MiB of device memory). Measured
// there: 527 MiB in use by the context at the default 1 KiB, 331 at 256 bytes, 281 at 64. The
// driver grows the reserve at the launch of a kernel whose frame needs more and keeps it grown
// (cuCtxSetLimit's contract; checked on an H100: a 1600-byte frame under a 64-byte limit ran,
// gave its result and raised the limit), so the limit starts at 0 and the reserve becomes the
// largest frame among the kernels the process launches (at most 72 bytes for ours, cuobjdump
// --dump-resource-usage, 2026-12-06), not a guess above it. 128 bytes where 0 is refused. Once
// per process: setting it again would shrink a reserve the kernels have grown (a stall and a
// reallocation at their next launch).
extern "C" void kcuda_context_trim(void) {
    static std::once_flag once;
    std::call_once(once, [] {
        if (cudaDeviceSetLimit(cudaLimitStackSize, 0) == cudaSuccess) return;
        cudaGetLastError();
        if (cudaDeviceSetLimit(cudaLimitStackSize, 128) != cudaSuccess) cudaGetLastError();
    });
}

extern "C" size_t kcuda_mem_used(void) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) return 0;
    return tot - fr;
}

// ---- arguments ---------------------------------------------------------------------------------

int kcuda_check_ternary(const KcudaTernary *w, KcudaEpilogue ep, const char *fn) {
    if (!w || !w->d_codes)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: NULL matrix", fn);
    if (w->n_out <= 0 || w->k_pad <= 0 || w->k_pad % 128)
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: shape %d x %d unsupported (k_pad must be a positive multiple of 128)", fn, w->n_out, w->k_pad);
    if ((uintptr_t)w->d_codes % 16)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: weights not 16-byte aligned", fn);
    if (ep == KCUDA_EP_GLU && (!w->glu || w->n_out % 2))
        return kcuda_fail(KCUDA_ERR_SHAPE, "%s: GLU epilogue needs an interleaved gate/up matrix with even rows (n_out %d)", fn, w->n_out);
    if (w->glu && ep != KCUDA_EP_GLU && ep != KCUDA_EP_I32)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: gate/up matrix needs the GLU epilogue", fn);
    if (w->act != KCUDA_ACT_RELU2 && w->act != KCUDA_ACT_SILU)
        return kcuda_fail(KCUDA_ERR_ARG, "%s: bad GLU activation %d", fn, w->act);
    if ((int)ep < 0 || (int)ep > 3) return kcuda_fail(KCUDA_ERR_ARG, "%s: bad epilogue %d", fn, (int)ep);
    return KCUDA_OK;
}

// ---- upload ------------------------------------------------------------------------------------

extern "C" int kcuda_upload_i2s(uint8_t *d_dst, const uint8_t *h_rows, int rows, int k_pad,
                                int row0, int row_step) {
    if (!d_dst || !h_rows || rows <= 0 || k_pad <= 0 || k_pad % 128 || row0 < 0 || row_step < 1)
        return kcuda_fail(KCUDA_ERR_ARG, "kcuda_upload_i2s: bad arguments (rows %d, k_pad %d)",
                          rows, k_pad);
    const size_t rb = (size_t)k_pad / 4;
    uint8_t *tmp = (uint8_t *)malloc(rb * (size_t)rows);
    if (!tmp) return kcuda_fail(KCUDA_ERR_ARG, "kcuda_upload_i2s: out of host memory");
    for (size_t i = 0; i < rb * (size_t)rows; i++) {
        // Code 3 is never written; the reference reads it as 0, so make it code 1.
        uint8_t b = h_rows[i];
        uint8_t hi = b & 0xaa, lo = b & 0x55;
        uint8_t three = hi & (uint8_t)(lo << 1);  // bit 2i+1 set where the pair is 11
        b ^= three;                               // 11 -> 01
        tmp[i] = b;
    }
    cudaError_t e;
    if (row_step == 1)
        e = cudaMemcpy(d_dst + rb * (size_t)row0, tmp, rb * (size_t)rows, cudaMemcpyHostToDevice);
    else
        e = cudaMemcpy2D(d_dst + rb * (size_t)row0, rb * (size_t)row_step, tmp, rb, rb,
                         (size_t)rows, cudaMemcpyHostToDevice);
    free(tmp);
    if (e != cudaSuccess)
        return kcuda_fail(KCUDA_ERR_CUDA, "kcuda_upload_i2s: %s", cudaGetErrorString(e));
    return KCUDA_OK;
}
