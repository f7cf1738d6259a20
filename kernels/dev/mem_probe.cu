// Lab: what the CUDA context's limits, a stream, small allocations and graphs cost in device
// memory, each step measured as cudaMemGetInfo (total - free) before and after it, for #12's
// memory target (the 2B model under 2 GB). Run in a fresh process on an idle GPU (the figures
// are device-wide): ./build/tests/dev_mem_probe
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

static size_t used() {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) return 0;
    return tot - fr;
}
static double mib(double b) { return b / 1048576.0; }

// A frame of 64 ints in local memory: filled from memory and read at an index read from memory,
// so the compiler can neither fold it nor keep it in registers.
__global__ void frame_kernel(int *out, const int *in, int sel) {
    int buf[64];
#pragma unroll 1
    for (int i = 0; i < 64; i++) buf[i] = in[i] * sel + (int)threadIdx.x;
    out[blockIdx.x * blockDim.x + threadIdx.x] = buf[in[64 + (threadIdx.x & 63)] & 63];
}
__global__ void tiny_kernel(int *p) {
    if (threadIdx.x == 0) atomicAdd(p, 1);
}

static size_t get_limit(cudaLimit l) {
    size_t v = 0;
    if (cudaDeviceGetLimit(&v, l) != cudaSuccess) {
        cudaGetLastError();
        return (size_t)-1;
    }
    return v;
}

// Sets limit l to v, prints the code, the value read back and the change in use.
static void set_limit(const char *name, cudaLimit l, size_t v) {
    const size_t u0 = used();
    const cudaError_t e = cudaDeviceSetLimit(l, v);
    if (e != cudaSuccess) cudaGetLastError();
    const size_t u1 = used();
    printf("  %-28s set %8zu: %-22s reads %8zu; in use %8.1f MiB (%+.1f)\n", name, v,
           e == cudaSuccess ? "ok" : cudaGetErrorString(e), get_limit(l), mib((double)u1), mib((double)u1 - (double)u0));
}

int main(int argc, char **argv) {
    (void)argc, (void)argv;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    const char *lazy = getenv("CUDA_MODULE_LOADING");
    printf("%s, %d SMs x %d threads; CUDA_MODULE_LOADING=%s\n", p.name, p.multiProcessorCount,
           p.maxThreadsPerMultiProcessor, lazy ? lazy : "(unset: the default)");
    cudaFree(0);
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    printf("context made (cudaFree(0)): in use %.1f MiB of %.1f MiB\n", mib((double)(tot - fr)), mib((double)tot));
    printf("limits at creation: stack %zu B, malloc heap %zu B, printf FIFO %zu B, device-runtime pending launches %zu\n",
           get_limit(cudaLimitStackSize), get_limit(cudaLimitMallocHeapSize), get_limit(cudaLimitPrintfFifoSize),
           get_limit(cudaLimitDevRuntimePendingLaunchCount));

    printf("\nper-thread stack (cudaLimitStackSize):\n");
    const size_t stacks[] = {1024, 256, 128, 96, 80, 72, 64, 32, 16, 8, 0};
    for (size_t s : stacks) set_limit("stack", cudaLimitStackSize, s);

    printf("\nmalloc heap and printf FIFO (no kernel here uses either):\n");
    set_limit("malloc heap", cudaLimitMallocHeapSize, 0);
    set_limit("malloc heap", cudaLimitMallocHeapSize, 1 << 20);
    set_limit("malloc heap", cudaLimitMallocHeapSize, 64 << 20);
    set_limit("malloc heap", cudaLimitMallocHeapSize, 8 << 20);
    set_limit("printf FIFO", cudaLimitPrintfFifoSize, 0);
    set_limit("printf FIFO", cudaLimitPrintfFifoSize, 64 << 20);
    set_limit("printf FIFO", cudaLimitPrintfFifoSize, 1 << 20);

    // the stack grown at launch: a 256-byte frame under a limit of 0
    printf("\ngrowth at launch:\n");
    set_limit("stack", cudaLimitStackSize, 0);
    cudaFuncAttributes fa;
    cudaFuncGetAttributes(&fa, frame_kernel);
    int *d_out = NULL, *d_cnt = NULL, *d_in = NULL;
    size_t u0 = used();
    cudaMalloc(&d_out, 132 * 256 * sizeof(int));
    cudaMalloc(&d_cnt, sizeof(int));
    cudaMemset(d_cnt, 0, sizeof(int));
    {  // in[i] = i for the values, in[64 + j] = 7 j + 1 for the indices
        int h_in[128];
        for (int i = 0; i < 64; i++) h_in[i] = i, h_in[64 + i] = 7 * i + 1;
        cudaMalloc(&d_in, sizeof h_in);
        cudaMemcpy(d_in, h_in, sizeof h_in, cudaMemcpyHostToDevice);
    }
    printf("  two small cudaMalloc's (33 KiB, 4 B): %+.1f MiB\n", mib((double)used() - (double)u0));
    u0 = used();
    frame_kernel<<<132, 256>>>(d_out, d_in, 3);
    cudaError_t e = cudaDeviceSynchronize();
    int h = -1;
    cudaMemcpy(&h, d_out + 5, sizeof h, cudaMemcpyDeviceToHost);
    printf("  frame_kernel (localSizeBytes %zu) under stack 0: %s, out[5] = %d (expected %d), stack now %zu B, "
           "in use %+.1f MiB\n", fa.localSizeBytes, cudaGetErrorString(e), h, ((7 * 5 + 1) & 63) * 3 + 5,
           get_limit(cudaLimitStackSize), mib((double)used() - (double)u0));
    set_limit("stack (again)", cudaLimitStackSize, 0);
    {  // the same kernel first launched inside a graph, under a limit of 0 again
        cudaStream_t gs;
        cudaStreamCreateWithFlags(&gs, cudaStreamNonBlocking);
        cudaMemset(d_out, 0, 132 * 256 * sizeof(int));
        cudaGraph_t g = NULL;
        cudaGraphExec_t x = NULL;
        cudaStreamBeginCapture(gs, cudaStreamCaptureModeThreadLocal);
        frame_kernel<<<132, 256, 0, gs>>>(d_out, d_in, 3);
        cudaStreamEndCapture(gs, &g);
        u0 = used();
        e = cudaGraphInstantiate(&x, g, 0);
        const size_t u1 = used();
        if (e == cudaSuccess) e = cudaGraphUpload(x, gs);
        if (e == cudaSuccess) e = cudaStreamSynchronize(gs);
        const size_t u2 = used(), st_up = get_limit(cudaLimitStackSize);
        if (e == cudaSuccess) e = cudaGraphLaunch(x, gs);
        if (e == cudaSuccess) e = cudaStreamSynchronize(gs);
        h = -1;
        cudaMemcpy(&h, d_out + 5, sizeof h, cudaMemcpyDeviceToHost);
        printf("  frame_kernel in a graph under stack 0: %s, out[5] = %d (expected %d); in use %+.1f MiB at "
               "instantiation, %+.1f at upload (stack %zu B), %+.1f after the launch (stack %zu B)\n",
               cudaGetErrorString(e), h, ((7 * 5 + 1) & 63) * 3 + 5, mib((double)u1 - (double)u0),
               mib((double)u2 - (double)u1), st_up, mib((double)used() - (double)u2), get_limit(cudaLimitStackSize));
        cudaGraphExecDestroy(x);
        cudaGraphDestroy(g);
        cudaStreamDestroy(gs);
    }
    set_limit("stack (again)", cudaLimitStackSize, 0);

    printf("\nstream and graphs:\n");
    u0 = used();
    cudaStream_t st;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    printf("  a non-blocking stream: %+.1f MiB\n", mib((double)used() - (double)u0));
    const int nodes[] = {8, 160, 160, 160};
    for (int k : nodes) {
        cudaGraph_t g = NULL;
        cudaGraphExec_t x = NULL;
        cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
        for (int i = 0; i < k; i++) tiny_kernel<<<1, 32, 0, st>>>(d_cnt);
        cudaStreamEndCapture(st, &g);
        const size_t a = used();
        e = cudaGraphInstantiate(&x, g, 0);
        const size_t b = used();
        if (e == cudaSuccess) e = cudaGraphUpload(x, st);
        cudaStreamSynchronize(st);
        const size_t c = used();
        if (e == cudaSuccess) e = cudaGraphLaunch(x, st);
        cudaStreamSynchronize(st);
        const size_t d = used();
        printf("  graph of %3d kernels: instantiate %+.2f MiB, upload %+.2f, first launch %+.2f (%s)\n", k,
               mib((double)b - (double)a), mib((double)c - (double)b), mib((double)d - (double)c), cudaGetErrorString(e));
        cudaGraphDestroy(g);  // the executable graph stays, as the backend keeps its own
    }
    u0 = used();
    {
        cudaGraph_t g = NULL;
        cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
        for (int i = 0; i < 160; i++) tiny_kernel<<<1, 32, 0, st>>>(d_cnt);
        cudaStreamEndCapture(st, &g);
        u0 = used();
        for (int r = 0; r < 24; r++) {
            cudaGraphExec_t x = NULL;
            cudaGraphInstantiate(&x, g, 0);
            cudaGraphUpload(x, st);
        }
        cudaStreamSynchronize(st);
        printf("  24 more instantiations + uploads of a 160-kernel graph: %+.2f MiB\n", mib((double)used() - (double)u0));
        cudaGraphDestroy(g);
    }
    cudaMemGetInfo(&fr, &tot);
    printf("\nend: in use %.1f MiB\n", mib((double)(tot - fr)));
    return 0;
}
