/* Return codes of every kernel entry point, CPU and CUDA: 0 on success, else one of these.
 * Kernels never print or exit; the CUDA launchers also leave one line saying why
 * (kcuda_last_error). */
#ifndef BN_KERR_H
#define BN_KERR_H

enum {
    KERR_OK = 0,
    KERR_SHAPE = -2, /* a shape the kernel cannot do (the CUDA message names it) */
    KERR_ARG = -3,   /* NULL pointer, misaligned pointer, bad enum */
    KERR_CUDA = -4,  /* a CUDA call failed (the message has its error string) */
};

#endif
