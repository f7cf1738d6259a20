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

/* Shared by cpu_ref.c and the fast path: the screen's bound constant B_r from the row's sums of
 * squares in double (e2 = ||w - s q||^2, w2 = ||w||^2, q2 = ||q||^2), rounded up to fp32. */
float lm_screen_bound_finish(double e2, double w2, double q2, double s, int k);
#endif
