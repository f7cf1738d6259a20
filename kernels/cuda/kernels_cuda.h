/* CUDA kernels of the BitNet b1.58 forward pass (W2A8), callable from C.
 *
 * Layout on the device: a ternary matrix keeps the host I2_S rows (kernels/w2a8.h) byte for
 * byte, row-major, k_pad/4 bytes a row, with code 3 rewritten to 1 at upload. Why no tile
 * permutation: a 16-byte load of an I2_S block half gives, after (word >> 6/4/2/0) & 0x03030303,
 * four int8 words of four consecutive weights each, which feed dp4a against activations at
 * offsets +0/+32/+64/+96 of the block; rows are contiguous, so a warp reading consecutive
 * 16-byte pieces of a few rows is fully coalesced. Codes stay unsigned {0,1,2}; the kernels
 * compute sum(c*q) - sum(q) (exact int32), which equals sum(t*q) with t = c - 1.
 * Fused matrices (QKV, gate+up) are one device matrix whose rows are the parts' rows:
 * QKV concatenated (segment scales at the true part boundaries), gate/up interleaved row by row
 * (g0,u0,g1,u1,...) so one warp sees both halves of a relu^2(g)*u output.
 *
 * Every launcher checks its shape and arguments and returns KCUDA_OK (0) or a negative
 * KCUDA_ERR_*; kcuda_last_error() then holds one line saying why. Nothing prints or exits.
 * Streams are passed as void * (a cudaStream_t; NULL = the legacy default stream) so that C
 * files need no CUDA header. Pointers named d_* are device memory. */
#ifndef BN_KERNELS_CUDA_H
#define BN_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kerr.h"

/* Inline helpers of this header that device code uses too (sample.cu, screen.cu). */
#ifdef __CUDACC__
#define KCUDA_HOST_DEVICE __host__ __device__
#else
#define KCUDA_HOST_DEVICE
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The launchers' names for the kernel return codes of kernels/kerr.h. */
enum {
    KCUDA_OK = KERR_OK,
    KCUDA_ERR_SHAPE = KERR_SHAPE,
    KCUDA_ERR_ARG = KERR_ARG,
    KCUDA_ERR_CUDA = KERR_CUDA,
};

/* The launch option `pdl` of the decode launchers: 0 = a plain launch; otherwise programmatic
 * dependent launch (the kernel starts its weight loads before the previous kernel finishes, and
 * reads that kernel's outputs after its PDL wait), with where it lets the NEXT kernel launch:
 * at its start (EARLY), after its PDL wait (LATE) or after its main work (AFTER_WORK: GEMV the
 * dot products, attention the softmax). Other launchers take only 0 or EARLY. */
enum { KCUDA_PDL_OFF = 0, KCUDA_PDL_EARLY = 1, KCUDA_PDL_LATE = 2, KCUDA_PDL_AFTER_WORK = 3 };

/* Message of the last failure on this thread ("" if none). */
const char *kcuda_last_error(void);

/* Number of usable CUDA devices; 0 when the driver or device is missing (never fails). */
int kcuda_device_count(void);
/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB" */
int kcuda_device_describe(char *buf, int cap);

/* ---- ternary matrices ----------------------------------------------------------------------- */

typedef struct {
    const uint8_t *d_codes;  /* device: n_out rows of k_pad/4 bytes, I2_S, codes 0..2 */
    int n_out, k_pad;        /* k_pad % 128 == 0 */
    int glu;                 /* rows interleaved gate/up (output n_out/2, act(g)*u) */
    /* Scale per row segment: rows [0, seg_end[0]) gamma[0], [seg_end[0], seg_end[1])
     * gamma[1], rest gamma[2]. With glu: even rows gamma[0] (gate), odd rows gamma[1] (up). */
    int seg_end[2];
    float gamma[3];
    /* The GLU epilogue's activation (ModelConfig.ffn_act, set at upload): KCUDA_ACT_RELU2
     * relu(g)^2 * u (BitNet 2B-4T; 0, so a zeroed struct keeps it), KCUDA_ACT_SILU
     * g / (1 + e^-g) * u (the Llama-style families). A field of the matrix, not a template
     * parameter: the branch is uniform per launch and costs nothing next to the weight stream,
     * and it doubles no kernel instantiations. */
    int act;
} KcudaTernary;

enum { KCUDA_ACT_RELU2 = 0, KCUDA_ACT_SILU = 1 };

/* Copies I2_S rows (host) into d_dst (device, rows*k_pad/4 bytes) starting at device row
 * `row0` with row stride `row_step` (1 = consecutive; 2 = interleave for gate/up), code 3
 * rewritten to 1. Synchronous. */
int kcuda_upload_i2s(uint8_t *d_dst, const uint8_t *h_rows, int rows, int k_pad, int row0,
                     int row_step);

/* Epilogues of the ternary linear: y = (float)acc / s * gamma(row). */
typedef enum {
    KCUDA_EP_F32 = 0,        /* out[r] = y                               (float) */
    KCUDA_EP_RESID = 1,      /* out[r] += y  (residual add in place)     (float) */
    KCUDA_EP_GLU = 2,        /* out[r/2] = act(y_gate) * y_up (KcudaTernary.act); needs glu matrix (float) */
    KCUDA_EP_I32 = 3,        /* out[r] = acc, exact int32 (tests)        (int32) */
} KcudaEpilogue;

/* Decode GEMV, batch 1. Input either
 *   (a) d_x (float, k_in <= k_pad values) with an optional RMSNorm (d_norm_w != NULL, eps):
 *       every block recomputes x_n = norm_w * (x * inv_rms), s = 127/max|x_n|, q = rint(x_n*s)
 *       in shared memory (the "fused RMSNorm + quant" prologue), or
 *   (b) pre-quantized d_q (k_pad int8) with d_s (its scale) and d_qsum (sum of q): d_x NULL.
 * Launched with programmatic dependent launch when pdl != 0 (the weight loads start before the
 * previous kernel finishes; inputs are read after it), the next kernel let in where pdl says
 * (KCUDA_PDL_EARLY, LATE or AFTER_WORK). All matrices give the bits of w2a8_gemv_ref; which
 * kernel runs is chosen by shape (w2a8_gemv.cu). */
int kcuda_w2a8_gemv(const KcudaTernary *w, const float *d_x, int k_in, const float *d_norm_w,
                    float eps, const int8_t *d_q, const float *d_s, const int32_t *d_qsum,
                    KcudaEpilogue ep, void *d_out, int pdl, void *stream);


/* Per-row RMSNorm (optional) + int8 quantization, the same arithmetic as the GEMV prologue:
 * rows of x [rows][ld_x] (k_in used) -> q [rows][k_pad] (zeros past k_in), s[rows], qsum[rows].
 * d_norm_w NULL = quantize x as is (then q equals quant_act_ref exactly). */
int kcuda_rmsnorm_quant(const float *d_x, int rows, int ld_x, int k_in, int k_pad,
                        const float *d_norm_w, float eps, int8_t *d_q, float *d_s,
                        int32_t *d_qsum, int pdl, void *stream);

/* The same for prefill rows: each row read once into registers. Same arithmetic except the
 * order of the sum of squares; rows that do not fit (k_pad > 8192, k_in or ld_x not multiples of
 * 4, unaligned pointers) go to kcuda_rmsnorm_quant. */
int kcuda_rmsnorm_quant_prefill(const float *d_x, int rows, int ld_x, int k_in, int k_pad,
                                const float *d_norm_w, float eps, int8_t *d_q, float *d_s,
                                int32_t *d_qsum, int pdl, void *stream);

/* Prefill GEMM on int8 tensor cores: tokens q [M][k_pad] (from kcuda_rmsnorm_quant), out rows of
 * ld_out elements, epilogue as above per token. mma.sync m16n8k32 s8 with the tile (64x128, 64x64
 * or 64x16) chosen by shape, split over K where that fills the GPU. With pdl != 0 (programmatic dependent launch) the first weight tiles
 * are fetched before the previous kernel finishes. */
int kcuda_w2a8_gemm(const KcudaTernary *w, const int8_t *d_q, const float *d_s,
                    const int32_t *d_qsum, int M, KcudaEpilogue ep, void *d_out, int ld_out,
                    int pdl, void *stream);

/* ---- dense matrices (embedding, lm_head) ----------------------------------------------------- */

typedef enum { KCUDA_F32 = 0, KCUDA_F16 = 1, KCUDA_BF16 = 30 } KcudaDtype;

/* logits[r] = sum_j W[r][j] * x_n[j] (fp32 accumulation) for W [n][k], x_n = RMSNorm(x, norm_w)
 * (norm skipped when d_norm_w is NULL). When d_best != NULL, also the greedy pick: block
 * maxima go to d_best (2 ints per block, scratch of kcuda_lm_head_scratch ints) and
 * d_argmax[0] receives the index of the largest logit (lowest index on ties). */
int kcuda_lm_head(KcudaDtype type, const void *d_w, int n, int k, const float *d_x,
                  const float *d_norm_w, float eps, float *d_logits, int *d_best, int *d_argmax,
                  int pdl, void *stream);
int kcuda_lm_head_scratch(int n);

/* The optional int8 lm_head: the same as kcuda_lm_head (fused RMSNorm, f32 activations, greedy
 * argmax epilogue) over int8 rows d_q [n][k] with one f32 scale per row:
 * logits[r] = d_scale[r] * sum_j q[r][j] * x_n[j]. k a multiple of 16. */
int kcuda_lm_head_i8(const int8_t *d_q, const float *d_scale, int n, int k, const float *d_x,
                     const float *d_norm_w, float eps, float *d_logits, int *d_best,
                     int *d_argmax, int pdl, void *stream);
/* Per-row absmax int8 quantization of a dense matrix W [n][k] (f32/f16/bf16) on the device:
 * scale[r] = max|W[r]| / 127, q = rint(W / scale[r]) (half to even, clamped to +-127; an all-zero
 * row gives scale 0 and q 0). Byte for byte what lm_head_quant_i8_ref (kernels_cpu.h) gives. */
int kcuda_quant_rows_i8(KcudaDtype type, const void *d_w, int n, int k, int8_t *d_q,
                        float *d_scale, void *stream);

/* x[t][:] = float(E[tok[t]][:]) for t < T; tokens out of range give an error flag in
 * d_err (set to 1) and a zero row. */
int kcuda_embed(KcudaDtype type, const void *d_e, int vocab, int dim, const int32_t *d_tok,
                int T, float *d_x, int *d_err, int pdl, void *stream);

/* ---- sampling ------------------------------------------------------------------------------ */

/* One draw of the host sampler (infer/sampler.c) on the device, from d_logits [n_vocab] (left
 * unchanged). The arguments live in device memory (the caller copies them per token): */
typedef struct {
    float temperature;    /* <= 0: greedy (argmax of the penalised logits, lowest id on ties) */
    int top_k;            /* <= 0 or >= n_vocab: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float log_min_p;      /* logf(min_p), computed on the host so the threshold has its bits */
    float penalty;        /* applied to the logits of pen_ids (positive / penalty, else * penalty) */
    int n_pen;            /* distinct penalised ids, ascending, in d_pen_ids[0..n_pen) */
    int pad_;
    double inv_temp;      /* 1.0 / (double)temperature */
    double u01;           /* the host sampler's next uniform in [0, 1) */
} KcudaSampleArgs;

/* The largest top-k kcuda_sample_topk takes: its merge sorts up to 3 x 256 list heads in one
 * block. At 256 it takes 33.5-37.7 us against 79 for the sort of the vocabulary (H100,
 * 2026-12-06); its first version at 1024 took 181-299 us, slower than the sort. */
enum { KCUDA_SAMPLE_TOPK_MAX = 256 };

/* Three launchers, each the host's draw where its settings apply (the caller chooses by them):
 *   - kcuda_sample_argmax: greedy, the argmax of the penalised logits (lowest id on ties; a NaN
 *     first logit stays the pick, as on the host), whatever the temperature (one kernel);
 *   - kcuda_sample_topk: top-k on with 1 <= top_k <= KCUDA_SAMPLE_TOPK_MAX and top_k < n_vocab,
 *     every other setting free (one kernel); outside that range it declines: d_out = {-1, 0, 1};
 *   - kcuda_sample_sorted: every setting (a radix sort of the whole vocabulary, three launches).
 * d_out[0] = the token, d_out[1] = 1 when the draw used the uniform (the host then consumes it;
 * greedy and degenerate logits do not), d_out[2] = 1 only when kcuda_sample_topk declined.
 * d_scratch: kcuda_sample_scratch(n_vocab) bytes, 256-byte aligned, zeroed once before its first
 * use (the kernels leave their counters zero after each draw); one draw at a time per scratch.
 * n_vocab up to 1048576; min_p at most 1. All can be captured in a CUDA graph (the arguments are
 * read on the device when it runs). */
int kcuda_sample_argmax(const float *d_logits, int n_vocab, const KcudaSampleArgs *d_args,
                        const int32_t *d_pen_ids, void *d_scratch, size_t scratch_bytes,
                        int *d_out, void *stream);
int kcuda_sample_topk(const float *d_logits, int n_vocab, const KcudaSampleArgs *d_args,
                      const int32_t *d_pen_ids, void *d_scratch, size_t scratch_bytes,
                      int *d_out, void *stream);
int kcuda_sample_sorted(const float *d_logits, int n_vocab, const KcudaSampleArgs *d_args,
                        const int32_t *d_pen_ids, void *d_scratch, size_t scratch_bytes,
                        int *d_out, void *stream);
size_t kcuda_sample_scratch(int n_vocab);

/* ---- decoding ahead: the next step's inputs made on the device --------------------------------
 * What the host sampler (infer/sampler.c) carries from one draw to the next, kept on the device so
 * that the backend can queue a decode step before the host has read the previous token: its
 * xoshiro256** state and its penalty window (a ring of win_cap tokens, win_n used, the oldest at
 * win_head: the host's layout). The window holds at most KCUDA_DRAW_WINDOW_MAX tokens (the
 * backend decodes ahead only with such a window). */
enum { KCUDA_DRAW_WINDOW_MAX = 1024, KCUDA_DRAW_RING = 4 };
typedef struct {
    unsigned long long rng[4];
    int win_cap, win_n, win_head;
    int step; /* draws recorded since the state was set: the result ring's next slot */
    int32_t window[KCUDA_DRAW_WINDOW_MAX];
} KcudaDrawState;

/* After a step's draw, one block does what the host does between two draws, in its order:
 * record the draw in slot step % KCUDA_DRAW_RING of ring (KCUDA_DRAW_SLOT ints a slot, host
 * memory mapped for the device, read by the host after the step's completion); unless the
 * sampler declined, consume the uniform if the draw used it (sampler_skip_uniform), append the
 * token to the window (sampler_accept), and make the next draw's arguments: d_args->u01
 * (sampler_peek_uniform), the window's distinct ids ascending in d_pen_ids with d_args->n_pen
 * (sampler_penalty_ids), d_io[2] = kcuda_screen_m, and the next step's token and position
 * d_io[0] = token, d_io[1] += 1; the slot also gets those arguments' fingerprint
 * (kcuda_draw_fingerprint), so the host can check that its sampler reached the same state.
 * d_draw: the samplers' d_out, or with greedy_pick the argmax's single int (used = declined = 0). */
enum {
    KCUDA_DRAW_TOKEN, KCUDA_DRAW_USED, KCUDA_DRAW_DECLINED, KCUDA_DRAW_SEQ, /* seq: step + 1 */
    KCUDA_DRAW_FP_N, KCUDA_DRAW_FP_IDS, KCUDA_DRAW_FP_U_LO, KCUDA_DRAW_FP_U_HI, /* the next draw's */
    KCUDA_DRAW_SLOT
};
/* The fingerprint of a draw's arguments: n_pen, a hash of the ids (in order), the uniform's bits. */
static inline KCUDA_HOST_DEVICE uint32_t kcuda_draw_id_hash(int32_t id, int i) {
    uint32_t h = (uint32_t)id * 0x9e3779b1u + (uint32_t)i * 0x85ebca77u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}
/* The host's side of the fingerprint: what the slot's FP_* hold for these arguments. */
static inline void kcuda_draw_fingerprint(const KcudaSampleArgs *a, const int32_t *ids, int fp[4]) {
    uint32_t h = 0;
    for (int i = 0; i < a->n_pen; i++) h += kcuda_draw_id_hash(ids[i], i);
    uint64_t ub;
    memcpy(&ub, &a->u01, sizeof ub);
    fp[0] = a->n_pen, fp[1] = (int)h, fp[2] = (int)(uint32_t)ub, fp[3] = (int)(uint32_t)(ub >> 32);
}
int kcuda_draw_advance(const int *d_draw, int greedy_pick, KcudaDrawState *d_state, KcudaSampleArgs *d_args,
                       int32_t *d_pen_ids, int *d_io, int n_vocab, int *ring, void *stream);

/* ---- the screened exact lm_head -------------------------------------------------------------
 * The logits the float head (kcuda_lm_head) computes, bit for bit, for every row a sampler that
 * looks at the m best logits can see, and -inf for every other row, reading the int8 copy of the
 * head (kcuda_quant_rows_i8) and the candidate float rows instead of all float rows.
 *
 * Contract. Both heads see the same xs (lm_load_x, lm_head.cuh). The float head computes row r's
 * logit e_r with the fused multiply-adds of kcuda_lm_head (lane l of a warp: chunks l, l + 32, ...
 * in order, then a 5-step warp sum); the int8 head a_r = s_r * fl(sum_j q_rj xs_j) with the same
 * structure. With X >= ||xs||_2, u = 2^-24, gamma_D = D u / (1 - D u), D the roundings a product
 * meets (EPC ceil(C / 32) + 5; EPC = 8 for f16/bf16, 4 for f32, 16 for int8, C = k / EPC):
 *   |e_r - w_r.xs|          <= gamma_Df ||w_r|| X                 (float head's roundings)
 *   |w_r.xs - s_r q_r.xs|   <= E_r X, E_r = ||w_r - s_r q_r||_2    (the int8 copy's error)
 *   |s_r q_r.xs - s_r fl()| <= gamma_D8 s_r ||q_r|| X              (int8 head's sum)
 *   |s_r fl() - a_r|        <= u / (1 - u) |a_r|                   (its scale multiply)
 * so |e_r - a_r| <= b_r = B_r X + 4u |a_r| + 1e-30 (the last term above every underflow error
 * while s_r <= 1e12; a row with a larger scale gets B_r = inf),
 * B_r = E_r + gamma_Df ||w_r|| + gamma_D8 s_r ||q_r|| made at load in double and rounded up,
 * X in double and rounded up, lo_r = a_r - b_r rounded down, hi_r = a_r + b_r rounded up. A row
 * with a non-finite a_r or a bound above 1e30 (where a partial sum could overflow) gets
 * [-inf, +inf]. The activations are f32 in both heads (no quantization of x).
 * Selection: the m-th largest of the screen warps' maxima of lo is a T with at least m rows at
 * lo >= T (in distinct warps). A sampler that keeps the k best after a repetition penalty
 * p >= 1 on at most P ids needs m = k + P: at least k of those m rows are unpenalised with a
 * final logit >= T, and the penalty only lowers logits, so every row with hi < T is strictly
 * below the k-th best and can neither enter the k best nor tie with them. Candidates (hi >= T)
 * get their exact logit, every other row -inf; the samplers and the argmax then pick what they
 * pick from the full logits. m > the screen warps, or KCUDA_SCREEN_FULL: every row exact. */
enum { KCUDA_SCREEN_FULL = 0x7f7f7f7f, KCUDA_SCREEN_STATS = 6 };

/* The rows m a draw with these settings needs exactly (KCUDA_SCREEN_FULL: all): greedy 1, top-k
 * k (1 <= k < n_vocab, temperature > 0), else all; plus the penalised ids with a penalty >= 1,
 * all with a penalty below 1. The host's and the device's (screen.cu, sample.cu) one formula. */
static inline KCUDA_HOST_DEVICE int kcuda_screen_m(const KcudaSampleArgs *a, int n_vocab) {
    int m;
    if (!(a->temperature > 0.0f)) m = 1;
    else if (a->top_k >= 1 && a->top_k < n_vocab) m = a->top_k;
    else return KCUDA_SCREEN_FULL;
    if (a->n_pen > 0) {
        if (!(a->penalty >= 1.0f) || a->n_pen >= KCUDA_SCREEN_FULL - m) return KCUDA_SCREEN_FULL;
        m += a->n_pen;
    }
    return m;
}

/* At load: d_bound[r] = B_r for the float head d_w (type) and its int8 copy d_q / d_scale, n x k
 * (k a multiple of 16). */
int kcuda_screen_prepare(KcudaDtype type, const void *d_w, const int8_t *d_q, const float *d_scale,
                         int n, int k, float *d_bound, void *stream);
/* The screen: the int8 head (kcuda_lm_head_i8's kernel, fused RMSNorm) writing [lo_r, hi_r] to
 * d_lohi [2n] and each warp's largest lo to d_bmax (kcuda_screen_warps_max() floats); *nb_out
 * = the warps launched, the most rows m the exact pass can screen for (fixed per shape and
 * device: a graph may keep it; 2112 for the 2B head on an H100). */
int kcuda_screen_bounds(const int8_t *d_q, const float *d_scale, const float *d_bound, int n,
                        int k, const float *d_x, const float *d_norm_w, float eps, float *d_lohi,
                        float *d_bmax, int *nb_out, int pdl, void *stream);
int kcuda_screen_warps_max(void);
/* The exact pass after the screen (same d_x, norm and eps): m = *d_m when d_args is NULL, else
 * m = kcuda_screen_m(d_args) and nothing happens when m <= *d_m (the logits already serve it).
 * Writes d_logits (exact or -inf), and with d_argmax the greedy pick as kcuda_lm_head does
 * (d_best: kcuda_lm_head_scratch ints). d_stats (KCUDA_SCREEN_STATS ints, zeroed before the
 * first use, or NULL): [0] += exact rows, [1] += steps, [2] = max(exact rows of a step),
 * [5] += steps that took every row; [3], [4] the step's scratch. */
int kcuda_screen_exact(KcudaDtype type, const void *d_w, int n, int k, const float *d_x,
                       const float *d_norm_w, float eps, const float *d_lohi, const float *d_bmax,
                       int nb, const int *d_m, const KcudaSampleArgs *d_args, float *d_logits,
                       int *d_best, int *d_argmax, int *d_stats, int pdl, void *stream);

/* ---- attention ----------------------------------------------------------------------------- */

/* KV cache of one layer: K and V, each [n_kv][ctx][head_dim] f16. */
typedef struct {
    int n_heads, n_kv, head_dim, ctx;
    int rope_style;          /* 0: pairs (i, i+hd/2); 1: pairs (2i, 2i+1) */
    const float *d_rope;     /* [ctx][hd/2][2] cos, sin (kernels_cpu.h rope_table_init) */
} KcudaAttnShape;

/* Decode: one token at position *d_pos (device int), qkv = [q | k | v] (f32, n_heads*hd +
 * 2*n_kv*hd). Applies RoPE, writes k, v (f16) at *d_pos, attends positions 0..*d_pos, writes
 * out [n_heads*hd]. Any even head_dim up to 256, any number of query heads per KV head. One
 * block per (KV head, split of the context) computes all the query heads of its group (up to 8
 * a block); the splits fill the SMs and the last block of a group combines them. d_part
 * (kcuda_attn_decode_scratch floats, 16-byte aligned) and d_count (n_heads ints, zero at start,
 * left zero) are scratch; the caches must be 16-byte aligned when head_dim % 8 == 0 (else 4).
 * The rows < *d_pos and *d_pos itself are read before the PDL wait (they must not be written by
 * the previous kernel); q/k/v after it. pdl: KCUDA_PDL_* (AFTER_WORK: after the last tile). */
int kcuda_attn_decode(const KcudaAttnShape *a, const float *d_qkv, uint16_t *d_kc,
                      uint16_t *d_vc, const int *d_pos, float *d_out, float *d_part,
                      int *d_count, int pdl, void *stream);
/* Decode below kcuda_attn_decode_head_until(a) positions: the same contract as
 * kcuda_attn_decode (same scratch, counters, results within f32 rounding) by one block per
 * (query head, 64 positions), faster there than kcuda_attn_decode. The limit: where those blocks
 * stop fitting in one wave of the GPU (1664 positions for 20 query heads on an H100; attention.cu
 * has the figures), at most ctx; 0 where the shape has no such kernel (head_dim not a multiple of
 * 16 or above 128). A position at or past the limit makes the output NaN. */
int kcuda_attn_decode_head(const KcudaAttnShape *a, const float *d_qkv, uint16_t *d_kc,
                           uint16_t *d_vc, const int *d_pos, float *d_out, float *d_part,
                           int *d_count, int pdl, void *stream);
int kcuda_attn_decode_head_until(const KcudaAttnShape *a);
/* Scratch floats of either decode kernel. */
size_t kcuda_attn_decode_scratch(const KcudaAttnShape *a);

/* Prefill: T tokens at positions pos0..pos0+T-1, qkv [T][ld_qkv]. RoPE on q (in place) and k,
 * k/v written to the cache, then causal attention over positions 0..pos0+t for each t;
 * out [T][n_heads*hd]. Both of its kernels launched with programmatic dependent launch when
 * pdl != 0. */
int kcuda_attn_prefill(const KcudaAttnShape *a, float *d_qkv, int ld_qkv, int T, int pos0,
                       uint16_t *d_kc, uint16_t *d_vc, float *d_out, int pdl, void *stream);
/* Prefill for heads the tiled prefill kernels cannot hold (head_dim not a multiple of 16 or
 * above 128, or more than 8 query heads per KV head): any even head_dim up to 256 (Falcon3 256,
 * 1bitLLM 96 and 100), any grouping. Plain kernels (attention_wide.cu): k/v roped and written to
 * the cache, then one block per (query head, token) with an online softmax; same cache, RoPE
 * table and arithmetic as the tiled kernels, q left unchanged. Launched without PDL. (Decode
 * takes every such shape: kcuda_attn_decode.) */
int kcuda_attn_prefill_wide(const KcudaAttnShape *a, const float *d_qkv, int ld_qkv, int T,
                            int pos0, uint16_t *d_kc, uint16_t *d_vc, float *d_out, void *stream);

/* ---- benchmark ------------------------------------------------------------------------------ */

typedef struct {
    int n, k;
    /* per launch, L2-cold (rotating buffers), in a CUDA graph: f32 input with the fused
     * quantization prologue (as decode uses it), and int8 input (as the seed kernel takes it),
     * each without and with programmatic dependent launch */
    double w2a8_us, w2a8_pdl_us, w2a8_q_us, w2a8_q_pdl_us;
    double cublas_us;             /* cuBLAS bf16 GEMV, same method; < 0 if unavailable */
    double w2a8_bytes, bf16_bytes;
    int rot_w2a8, rot_bf16;       /* number of rotating weight buffers */
    int checked_rows;             /* rows compared exactly against w2a8_gemv_ref */
} KcudaGemvBench;

/* Device-to-device copy bandwidth (read + write bytes counted), GB/s, median of reps. */
double kcuda_copy_bandwidth_gbs(size_t bytes, int reps);
/* Times the W2A8 GEMV and a cuBLAS bf16 GEMV for each shape (see KcudaGemvBench). Each W2A8
 * shape is first checked exactly against w2a8_gemv_ref on sampled rows; a mismatch fails. */
int kcuda_bench_gemv(KcudaGemvBench *rows, int n_rows, int quick);
/* Four GEMVs of one 2B layer (QKV, O, gate/up, down) in sequence, L2-cold, in a graph:
 * microseconds per layer, with and without PDL. */
int kcuda_bench_layer(int dim, int ffn, int n_kv_dim, double *us, double *us_pdl);

/* The f16 and the int8 lm_head at n x k (random weights, final norm and greedy argmax included,
 * no PDL): median microseconds per launch over reps (1..101) after 2 warm-ups, event-timed on
 * the default stream; *same_argmax = 1 when both picked the same token. */
int kcuda_bench_lm_head(int n, int k, int reps, double *us_f16, double *us_i8, int *same_argmax);

/* The screened f16 lm_head against the full one at n x k: random weights N(0, 0.02) (a normal's
 * tails: the int8 copy's error relative to the logits' spread is a trained head's), activations
 * N(0, 1) with 1% of the entries 20x, a new activation vector each launch; median event-timed
 * microseconds per launch (final norm + rows + greedy argmax, no PDL) over reps (1..101) after 2
 * warm-ups: the full head, and the screen + exact pass for m[0] = 1 (greedy) and m[1] = 104 (the
 * defaults: top-k 40 + 64 penalised ids), with the exact rows per pass (mean, max); same = 1 when
 * the screened greedy pick equalled the full one on every activation vector. */
typedef struct {
    double us_full, us_screen[2], rows_mean[2];
    int rows_max[2], m[2], same, warps;
} KcudaScreenBench;
int kcuda_bench_lm_head_screen(int n, int k, int reps, KcudaScreenBench *out);

/* Bytes of device memory in use now (cudaMemGetInfo total - free). */
size_t kcuda_mem_used(void);
/* Shrinks the CUDA context's per-thread stack reserve to what the kernels launched need (the
 * limit set to 0, once per process; ~260 MiB less on an H100; runtime.cu says why that is safe).
 * The CUDA backend calls it at creation; the bench before it measures the context. */
void kcuda_context_trim(void);

#ifdef __cplusplus
}
#endif
#endif
