/* A kernel timeline recorder for the lab, loaded into an unchanged program with LD_PRELOAD:
 * CUPTI's concurrent-kernel activity records (start and end of every kernel, graph nodes
 * included, without serialising them, so PDL overlap stays as it runs) are written at exit as
 * CSV lines "start_ns,end_ns,graph_node_id,name" to the file named by BN_TRACE_OUT (default
 * /tmp/kernels.csv). Nsight Systems is not on the device machines (KINDS.md); this is what
 * kernels/dev/run_timeline_device.sh uses instead. Build (development machine):
 *   cc -O2 -shared -fPIC -o cupti_trace.so kernels/dev/cupti_trace.c \
 *      -I/usr/local/cuda/include -L/usr/local/cuda/lib64 -lcupti */
#include <cupti.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BUF_BYTES = 8 << 20 };

static FILE *out;
static long n_records, n_dropped;

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *buffer = aligned_alloc(8, BUF_BYTES);
    *size = *buffer ? BUF_BYTES : 0;
    *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid) {
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *rec = NULL;
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        if (out)
            fprintf(out, "%llu,%llu,%llu,%s\n", (unsigned long long)k->start, (unsigned long long)k->end,
                    (unsigned long long)k->graphNodeId, k->name ? k->name : "?");
        n_records++;
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS) n_dropped += (long)dropped;
    free(buffer);
}

__attribute__((constructor)) static void trace_start(void) {
    const char *path = getenv("BN_TRACE_OUT");
    out = fopen(path && *path ? path : "/tmp/kernels.csv", "w");
    if (!out) return;
    if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS)
        fprintf(stderr, "cupti_trace: cannot enable kernel activity\n");
}

__attribute__((destructor)) static void trace_stop(void) {
    cuptiActivityFlushAll(1);
    if (out) {
        fclose(out);
        out = NULL;
    }
    fprintf(stderr, "cupti_trace: %ld kernel records, %ld dropped\n", n_records, n_dropped);
}
