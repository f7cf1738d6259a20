/* Included first by CPU kernel files whose results must be bit-identical to the _ref twins:
 * turns off floating-point contraction (a*b+c fused into one FMA), which GCC does by default in
 * GNU C mode wherever the target has FMA (the AVX2 functions do), and which would change the
 * rounding of the scaled outputs y = acc / s * gamma (+ residual). */
#ifndef BN_CPU_FP_H
#define BN_CPU_FP_H
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#endif
