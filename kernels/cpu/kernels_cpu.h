/* CPU kernels of the BitNet b1.58 forward pass: a scalar `_ref` oracle for every kernel and
 * fast paths (AVX2; AVX-512 VNNI where the CPU has it) picked at run time, plus the persistent
 * thread pool they run on and the probes `bitnet-chat bench --backend cpu` reports.
 *
 * Conventions:
 *   - Ternary weights are I2_S rows (kernels/w2a8.h) of k_pad weights, k_pad % 128 == 0.
 *   - Activations entering a ternary linear are int8 rows of k_pad lanes (zeros past k) with one
 *     fp32 scale s per row (s = 127 / max|x|) and, for the fast paths, the row sum of the int8
 *     values (qsum), which turns the unsigned codes {0,1,2} into {-1,0,+1}:
 *         sum_j (c_j - 1) * q_j = sum_j c_j * q_j - qsum.
 *   - Integer results of every fast path equal the reference EXACTLY (no int16 saturation,
 *     code 3 read as 0 as the reference does). Scaled outputs use the same float operations in
 *     the same order as the reference, y = (float)acc / s * gamma, so they are bit-identical.
 *   - RMSNorm, attention (scores, softmax with our own exp, weighted sum) and relu^2 gating
 *     are bit-identical to their references too: the references fix the fp32 order (8 lanes,
 *     fused multiply-adds, a fixed pairwise combination; see dot_f32_ref), so the whole CPU
 *     forward pass matches the scalar reference forward bit for bit up to the lm_head.
 *   - Dense (f16 / bf16 / f32) dot products (the lm_head) accumulate in fp32 FMA lanes, the
 *     reference in double, so they agree to fp32 rounding, not bit for bit.
 *   - Nothing here allocates per call, except the pool at creation.
 * Kernels never print or exit: they return 0, or KERR_SHAPE (kernels/kerr.h) for shapes they
 * cannot do. */
#ifndef BN_KERNELS_CPU_H
#define BN_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kerr.h"
#include "kernels/w2a8.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CPU features ---------------------------------------------------------------------------- */

typedef enum {
    CPU_ISA_SCALAR = 0,   /* portable C, any CPU */
    CPU_ISA_AVX2 = 1,     /* AVX2 + FMA + F16C */
    CPU_ISA_AVX512 = 2,   /* + AVX-512 F/BW/VL and VNNI (vpdpbusd) */
} CpuIsa;

/* The best ISA this CPU supports (detected once, __builtin_cpu_supports). */
CpuIsa cpu_isa_detect(void);
/* The ISA fast kernels use now: the detected one, unless capped by cpu_isa_set. */
CpuIsa cpu_isa_active(void);
/* Caps the ISA (tests use it to run every path the CPU can); returns the ISA now active,
 * min(want, detected). Not thread-safe against running kernels: call between runs. */
CpuIsa cpu_isa_set(CpuIsa want);
const char *cpu_isa_name(CpuIsa isa); /* "scalar", "AVX2", "AVX-512 VNNI" */
int cpu_num_cores(void);              /* online CPUs this process may use (at least 1) */

/* ---- thread pool ------------------------------------------------------------------------------ */

/* A persistent pool of n_threads - 1 workers plus the calling thread. cpu_pool_run(p, fn, ctx)
 * calls fn(ctx, 0, nth) on the caller and fn(ctx, ith, nth) on each worker ith that joins the
 * job before the caller's own call returns, then waits for the workers that joined. So fn must
 * share its work dynamically (cpu_chunk_claim), never by ith: a worker that is asleep or not
 * scheduled is not waited for, and the caller alone may do everything. ith is unique among the
 * concurrent calls (use it to pick per-thread scratch). Workers spin briefly for the next job,
 * then sleep on a condition variable, so an idle pool costs no CPU. A NULL pool runs
 * fn(ctx, 0, 1) on the caller. */
typedef struct CpuPool CpuPool;
typedef void (*CpuTaskFn)(void *ctx, int ith, int nth);
CpuPool *cpu_pool_create(int n_threads); /* NULL if threads cannot be started */
void cpu_pool_destroy(CpuPool *p);        /* NULL ok */
int cpu_pool_threads(const CpuPool *p);   /* 1 for NULL */
void cpu_pool_run(CpuPool *p, CpuTaskFn fn, void *ctx);

/* Splits [0, n) into nth nearly equal parts aligned to `align` and returns part ith. */
void cpu_split(int n, int align, int ith, int nth, int *begin, int *end);

/* Dynamic sharing inside one job: threads claim chunk indices from a shared counter (reset it
 * to 0 before cpu_pool_run), so a thread that starts late on a busy machine takes fewer chunks
 * instead of making the others wait for its fixed share. Results never depend on who ran a
 * chunk. */
static inline int cpu_chunk_claim(int *next) { return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED); }

/* ---- activation quantization (W2A8 "A8") ------------------------------------------------------ */

/* Same as quant_act_ref (kernels/w2a8.h), and also stores sum(q) in *qsum when qsum != NULL. */
float quant_act_cpu(const float *x, int n, int n_pad, int8_t *q, int32_t *qsum);
int32_t qsum_ref(const int8_t *q, int n_pad);

/* ---- ternary x int8 products ------------------------------------------------------------------- */

/* acc[m * ld_acc + r] = sum_j t(W[r][j]) * q[m * k_pad + j] for tokens m < M and all rows r;
 * exact int32. The oracle for every fast path below. */
void w2a8_gemm_ref(const uint8_t *w, int n_out, int k_pad, const int8_t *q, int M,
                   int32_t *acc, int ld_acc);

/* Fast twin of w2a8_gemm_ref for rows [r0, r1) only (one thread's share). q holds M rows of
 * k_pad int8, qsum their sums (quant_act_cpu). M == 1 is the decode GEMV; M > 1 is the prefill
 * GEMM, which unpacks each weight tile once and reuses it for all M tokens. */
int w2a8_gemm_rows(const uint8_t *w, int k_pad, const int8_t *q, const int32_t *qsum, int M,
                   int r0, int r1, int32_t *acc, int ld_acc);

/* The ternary linear with its epilogue, for rows [r0, r1):
 *   y = (float)acc / s[m] * gamma;   out[m * ld_out + r] = y      (accumulate == 0)
 *                                    out[m * ld_out + r] += y     (accumulate != 0, residual)
 * _ref is the scalar oracle (all rows); _rows is the fast path. */
void w2a8_linear_ref(const uint8_t *w, int n_out, int k_pad, float gamma, const int8_t *q,
                     const float *s, int M, float *out, int ld_out, int accumulate);
int w2a8_linear_rows(const uint8_t *w, int k_pad, float gamma, const int8_t *q,
                     const int32_t *qsum, const float *s, int M, int r0, int r1, float *out,
                     int ld_out, int accumulate);

/* Flags of the _ex / _mt forms. W2A8_CODES_VALID: the caller checked (i2s_codes_valid) that
 * the rows hold no code 3, which lets the decode GEMV mask the 2-bit fields in place instead of
 * shifting and remapping them (half the vector work per byte). Without it, code 3 reads as 0. */
enum { W2A8_CODES_VALID = 1 };
int w2a8_linear_rows_ex(const uint8_t *w, int k_pad, float gamma, const int8_t *q,
                        const int32_t *qsum, const float *s, int M, int r0, int r1, float *out,
                        int ld_out, int accumulate, int flags);
/* 1 if no 2-bit field of the n_bytes of I2_S codes is 3 (the unused code). */
int i2s_codes_valid(const uint8_t *w, size_t n_bytes);

/* Multithreaded whole-matrix linear on a pool (threads claim chunks of rows); _ex takes the
 * flags above (w2a8_linear_mt = flags 0: any codes accepted). */
int w2a8_linear_mt(CpuPool *p, const uint8_t *w, int n_out, int k_pad, float gamma,
                   const int8_t *q, const int32_t *qsum, const float *s, int M, float *out,
                   int ld_out, int accumulate);
int w2a8_linear_mt_ex(CpuPool *p, const uint8_t *w, int n_out, int k_pad, float gamma,
                      const int8_t *q, const int32_t *qsum, const float *s, int M, float *out,
                      int ld_out, int accumulate, int flags);

/* The row-interleaved layout R16 (cpu_w2a8_r16.c explains it and why): the CPU backend repacks
 * I2_S matrices into it at load when the CPU has AVX-512 VNNI, and its kernels equal the I2_S
 * ones (and so w2a8_linear_ref) bit for bit. Rows come in groups of R16_ROWS; n_out is padded
 * to a multiple of R16_ROWS with zero weights; code 3 is stored as 1 (read as 0, as everywhere). */
enum { R16_ROWS = 16 };
static inline size_t w2a8_r16_bytes(int n_out, int k_pad) {
    return (size_t)((n_out + R16_ROWS - 1) / R16_ROWS) * R16_ROWS * i2s_row_bytes(k_pad);
}
/* Writes groups [g0, g1) of the R16 form of I2_S rows w [n_out][k_pad] into dst (the whole
 * matrix's buffer, w2a8_r16_bytes long; groups are independent, so threads may share the work). */
void w2a8_r16_pack(const uint8_t *w, int n_out, int k_pad, int g0, int g1, uint8_t *dst);
/* w2a8_linear_rows_ex on R16 weights wr (the whole matrix of n_out rows): rows [r0, r1), r0 a
 * multiple of R16_ROWS, r1 <= n_out; same outputs bit for bit. n_out bounds the decode GEMV's
 * prefetch, which runs on past r1 (rows another thread may be reading: on this CPU it then takes
 * them from our cache, not DRAM). _mt: the whole matrix on a pool. */
int w2a8_linear_r16_rows(const uint8_t *wr, int n_out, int k_pad, float gamma, const int8_t *q,
                         const int32_t *qsum, const float *s, int M, int r0, int r1, float *out,
                         int ld_out, int accumulate);
int w2a8_linear_r16_mt(CpuPool *p, const uint8_t *wr, int n_out, int k_pad, float gamma,
                       const int8_t *q, const int32_t *qsum, const float *s, int M, float *out,
                       int ld_out, int accumulate);

/* ---- dense matrices (embedding / lm_head), fp32 accumulation ----------------------------------- */

typedef enum { CPU_DENSE_F32 = 0, CPU_DENSE_F16 = 1, CPU_DENSE_BF16 = 30 } CpuDenseType;

/* y[m * ld_y + r] = sum_j W[r][j] * x[m * k + j] for M rows of x and rows r of W [n][k].
 * _ref: scalar, accumulates in double (the oracle). _rows: fast, rows [r0, r1). */
void dense_gemm_ref(CpuDenseType type, const void *w, int n, int k, const float *x, int M,
                    float *y, int ld_y);
void dense_gemm_rows(CpuDenseType type, const void *w, int k, const float *x, int M, int r0,
                     int r1, float *y, int ld_y);
void dense_gemm_mt(CpuPool *p, CpuDenseType type, const void *w, int n, int k, const float *x,
                   int M, float *y, int ld_y);
/* Row r of W as fp32 (embedding lookup). _ref: scalar (the oracle); the other: F16C for f16
 * rows, bit-identical. */
void dense_row_to_f32_ref(CpuDenseType type, const void *w, int k, int r, float *out);
void dense_row_to_f32(CpuDenseType type, const void *w, int k, int r, float *out);

/* The optional int8 lm_head (bitnet-chat --lm-head int8), scalar references:
 * per-row absmax quantization of W [n][k]: scale[r] = max|W[r]| / 127 (fp32), q = rint(W / scale)
 * (round half to even, clamped to +-127; an all-zero row gives scale 0, q 0), the same bytes as
 * kcuda_quant_rows_i8; and y[r] = scale[r] * sum_j q[r][j] * x[j] accumulated in double. */
void lm_head_quant_i8_ref(CpuDenseType type, const void *w, int n, int k, int8_t *q, float *scale);
void lm_head_i8_gemv_ref(const int8_t *q, const float *scale, int n, int k, const float *x, float *y);
/* Fast twins: _quant_i8_cpu makes the same bytes and scales as the reference; the GEMV sums in
 * fp32 lanes (agrees with the reference to fp32 rounding). _gemm_mt: M rows of x (each token's
 * logits; the weights are re-read per token, as only prompts with all logits use M > 1). */
void lm_head_quant_i8_cpu(CpuDenseType type, const void *w, int n, int k, int8_t *q, float *scale);
void lm_head_i8_gemv_rows(const int8_t *q, const float *scale, int k, const float *x, int r0,
                          int r1, float *y);
void lm_head_i8_gemm_mt(CpuPool *p, const int8_t *q, const float *scale, int n, int k,
                        const float *x, int M, float *y, int ld_y);

/* One row of dense_gemm_rows with M == 1 (the decode lm_head): returns exactly the value, bits
 * included, that dense_gemm_rows(type, w, k, x, 1, r0, r1, y, 0) stores in y[r] for any range
 * holding r, on the active ISA (the GEMV's 4-row groups and its leftover rows do the same
 * operations per row). */
float dense_dot_row(CpuDenseType type, const void *w, int k, const float *x, int r);

/* ---- the screened exact lm_head ------------------------------------------------------------------
 * The decode lm_head reads the whole f16 table (657 MB on the 2B model) to give the sampler
 * logits of which it only looks at the k best (greedy: 1; top-k sampling: k). The screen
 * reads the int8 copy of the table instead (half the bytes), gets an approximate logit a_r of
 * every row and a rigorous radius b_r with |exact_r - a_r| <= b_r, where exact_r is what
 * dense_dot_row computes (its float roundings included). With T the k-th largest a_r - b_r,
 * every row with a_r + b_r < T is strictly below the k-th best exact logit; only the others
 * (about 1% of the rows on the 2B model) are computed exactly. The sampler then sees exact
 * logits for every row that can matter and -inf for the rest: it picks the same token.
 *
 * The contract (u = 2^-24, K = k + 16, gamma = K u / (1 - K u)):
 *   exact_r = fl(sum_j w_rj x_j)          fp32, any order: |err| <= gamma ||w_r||_2 ||x||_2
 *   a_r = fl(s_r * fl(sum_j q_rj x_j))    fp32:  |err| <= gamma s_r ||q_r||_2 ||x||_2 + u |a_r|
 *   |sum_j (w_rj - s_r q_rj) x_j| <= E_r ||x||_2, E_r = ||w_r - s_r q_r||_2 (exact reals)
 * K covers every summation tree the kernels use: no term of a dot goes through more than K
 * roundings (the f16 GEMV: k/16 + 20; the scalar paths: k/8 + 12 and, for the int8 one, k).
 * So with B_r >= E_r + gamma (||w_r||_2 + s_r ||q_r||_2) (made at load, in double, rounded up)
 * and xnorm >= ||x||_2 (lm_screen_xnorm), lm_screen_radius gives b_r; its slack (1e-5 relative
 * and 2.5e-7 |a_r|) also covers the float roundings of b_r, a_r - b_r and a_r + b_r. */
void lm_head_screen_bound_ref(CpuDenseType type, const void *w, const int8_t *q,
                              const float *scale, int n, int k, float *B);
/* Fast twin (AVX2 in double lanes): upper bounds as rigorous as the reference's, equal to it to
 * ~1e-12 relative (the double sums run in another order). Rows whose weights are not finite get
 * a non-finite B, which makes every token screened with them fall back to the full head. */
void lm_head_screen_bound_cpu(CpuDenseType type, const void *w, const int8_t *q,
                              const float *scale, int n, int k, float *B);
/* ||x||_2 of the lm_head input, summed in double, rounded up to fp32. */
float lm_screen_xnorm(const float *x, int k);
static inline float lm_screen_radius(float a, float B, float xnorm) {
    return B * xnorm * 1.00001f + 2.5e-7f * (a < 0 ? -a : a);
}

/* Scratch of the screen (sized once: rows, threads, the largest k asked for). */
typedef struct LmScreen LmScreen;
LmScreen *lm_screen_create(int n_rows, int n_threads, int max_k); /* NULL: out of memory */
void lm_screen_free(LmScreen *s);                                 /* NULL ok */

typedef struct {
    int k;               /* the sampler keeps the k best (1 <= k <= max_k, k < n) */
    float penalty;       /* repetition penalty p > 0 of the rows flagged in mask (1: none) */
    const uint8_t *mask; /* [n] 1 for the penalised rows, or NULL */
    int cap;             /* most candidates worth computing exactly (else fall back) */
} LmScreenQuery;

enum { LM_SCREEN_NONFINITE = -1, LM_SCREEN_OVER_CAP = -2 };

/* The screened lm_head for one token x [k] on the pool: the int8 table q/scale and the bound
 * constants B of the f16/bf16/f32 table w [n][k]. On success returns the number of candidates
 * (>= qy->k) and fills logits [n]: dense_dot_row's value for every candidate, -inf elsewhere.
 * Returns LM_SCREEN_NONFINITE when some bound is not finite (NaN/inf weights or activations)
 * and LM_SCREEN_OVER_CAP when more than qy->cap rows remain (flat logits); logits is then
 * partly written and the caller computes the full head. */
int lm_screen_mt(CpuPool *p, LmScreen *s, CpuDenseType type, const void *w, const int8_t *q,
                 const float *scale, const float *B, int n, int k, const float *x,
                 const LmScreenQuery *qy, float *logits);

/* IEEE half / bfloat16 conversions, round to nearest even (scalar, exact). */
uint16_t f32_to_f16_ref(float f);
float f16_to_f32_ref(uint16_t h);
float bf16_to_f32_ref(uint16_t h);
/* Element i of a dense matrix as fp32 (scalar; the reference's and the fast paths' tails). */
static inline float dense_get(CpuDenseType type, const void *w, size_t i) {
    switch (type) {
    case CPU_DENSE_F16: return f16_to_f32_ref(((const uint16_t *)w)[i]);
    case CPU_DENSE_BF16: return bf16_to_f32_ref(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}
/* n values; fast paths (F16C) with scalar fallback; bit-identical to the _ref conversions. */
void f32_to_f16_row(const float *x, uint16_t *h, int n);
void f16_to_f32_row(const uint16_t *h, float *x, int n);

/* ---- norms, RoPE, attention, elementwise ------------------------------------------------------- */

/* Dot product in the reference's fixed fp32 order (see cpu_ref.c): 8 interleaved fused
 * multiply-add partial sums, a fixed pairwise combination, then the tail. RMSNorm and attention use this order in
 * both their _ref and fast forms, so those fast paths are bit-identical to the reference. */
float dot_f32_ref(const float *a, const float *b, int n);

/* out = w * (x * (1 / sqrt(dot_f32_ref(x, x) / n + eps))), fp32; _cpu is bit-identical. */
void rmsnorm_ref(const float *x, const float *w, int n, float eps, float *out);
void rmsnorm_cpu(const float *x, const float *w, int n, float eps, float *out);

/* The RoPE table for positions [0, n_pos): cs[(p * hd/2 + i) * 2 + {0,1}] = cos, sin of
 * p * theta^(-2i/hd), computed in fp32 the way transformers does (inv_freq in fp32). */
void rope_table_init(float *cs, int n_pos, int head_dim, float theta);
/* Rows [p0, p1) of the same table, so a long context fills rows only as positions are used. */
void rope_table_fill(float *cs, int p0, int p1, int head_dim, float theta);
/* Rotates n_heads heads of head_dim at one position in place. style 0: pairs (i, i + hd/2)
 * ("rotate half", HF/GGUF); style 1: pairs (2i, 2i+1). cs_pos = table row of the position. */
void rope_apply_ref(float *x, int n_heads, int head_dim, const float *cs_pos, int style);

/* One query head against a KV cache: out[hd] = softmax(q . K[t] / sqrt(hd), t < n_ctx) V, with
 * dot_f32_ref's order for q . K, exp_ref, and out accumulated by fmaf in t order.
 * K/V rows are `kv_stride` elements apart (f32 or f16 per kv_f16).
 * scratch: n_ctx floats. _cpu is bit-identical to _ref (same sums in the same order, expf). */
void attention_head_ref(const float *q, const void *k, const void *v, int kv_f16,
                        size_t kv_stride, int n_ctx, int head_dim, float *scratch, float *out);
void attention_head_cpu(const float *q, const void *k, const void *v, int kv_f16,
                        size_t kv_stride, int n_ctx, int head_dim, float *scratch, float *out);

/* G query heads that share one KV head (GQA): q and out hold G consecutive heads of head_dim,
 * scratch G * n_ctx floats. Same results as attention_head_ref on each head; the fast path
 * reads each K and V row once for all G heads. */
void attention_group_ref(const float *q, int G, const void *k, const void *v, int kv_f16,
                         size_t kv_stride, int n_ctx, int head_dim, float *scratch, float *out);
void attention_group_cpu(const float *q, int G, const void *k, const void *v, int kv_f16,
                         size_t kv_stride, int n_ctx, int head_dim, float *scratch, float *out);

/* e^x as the attention softmax computes it (scalar; the SIMD twin is bit-identical): within
 * 2 ulp of e^x, 0 below -87. */
float exp_ref(float x);

/* m[i] = relu(g[i])^2 * u[i], as (r * r) * u; _cpu is bit-identical (m may alias g). */
void relu2_mul_ref(const float *g, const float *u, int n, float *m);
void relu2_mul_cpu(const float *g, const float *u, int n, float *m);
/* m[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u (the Llama-style FFN; m may alias g). Scalar
 * only: it runs once per FFN element per token, next to a matrix row of work for each. */
void silu_mul_ref(const float *g, const float *u, int n, float *m);

/* ---- benchmark probes -------------------------------------------------------------------------- */

/* Read bandwidth of main memory, GB/s (1e9 bytes/s): all cores stream a buffer much larger
 * than the last-level cache with vector loads; best of a few passes. Takes ~0.5 s.
 * n_threads 0 = all cores. Returns 0 if the buffer cannot be allocated. */
double cpu_measure_read_bandwidth_gbs_threads(int n_threads);
double cpu_measure_read_bandwidth_gbs(void);

#ifdef __cplusplus
}
#endif
#endif
