/* The CUDA backend (BackendOps backend_cuda_ops): uploads a Model once (ternary matrices as
 * device I2_S rows, QKV fused, gate/up interleaved), keeps an f16 KV cache, and runs
 *   - prefill (n > 1) as per-row RMSNorm+quant + W2A8 GEMM on int8 tensor cores, in chunks of
 *     PREFILL_MAX tokens, then the lm_head on the last token;
 *   - decode (n == 1) as a CUDA graph captured on first use and replayed per token (up to four
 *     graphs: the attention kernel chosen per token by position, ATTN_GRAPHS, times the lm_head,
 *     full or screened): token and
 *     position are read from device memory, 5 kernels per layer (QKV GEMV with fused RMSNorm
 *     +quant, attention with RoPE + KV write, O GEMV + residual, gate/up GEMV with act(g)*up,
 *     down GEMV + residual), then the lm_head with the final norm and a greedy argmax, chained
 *     with programmatic dependent launch so each kernel's weight loads overlap the previous one;
 *     where each kernel of a layer lets its successor launch is chosen per kernel (DECODE_PDL).
 * The float lm_head is screened by default (kernels_cuda.h, "the screened exact lm_head"): an
 * int8 copy made at load bounds every row's f16 logit, and only the rows that can reach the m
 * best the sampler looks at are computed in f16, the others -inf: the same tokens as the full
 * head for half its bytes. m is the last draw's need (kcuda_screen_m: 1 for greedy, top-k plus
 * the penalised ids); a draw that needs more gets the exact pass again in its sampler graph;
 * logits() and all_logits get the full head (on demand after a screened step).
 * Logits stay on the device until logits() asks for them; sampling runs on the device, so one int
 * per token crosses: plain greedy is the decode graph's argmax; every other setting is a second,
 * small graph (the sampler's arguments in, one of three samplers chosen by the settings, its
 * result out) launched while the decode graph still runs, and waited for once. After such a
 * draw the backend decodes ahead ("decoding ahead" below): the next step, with the draw behind
 * it, is queued before the host has read the token, so in the engine's loop the device runs step
 * after step without waiting for the host.
 * Compiled only with the CUDA toolkit (BITNET_HAVE_CUDA). */
#ifdef BITNET_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/backend_cuda.h"
#include "infer/infer.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/w2a8.h"

enum { PREFILL_MAX = 512 }; /* tokens per prefill batch: the prompt buffers' size */

/* The decode graphs, by attention kernel: below kcuda_attn_decode_head_until positions the
 * per-query-head kernel is faster, from there the per-KV-group kernel (kernels/cuda/attention.cu
 * has the figures). The host knows each step's position, so it picks the graph; each is captured
 * when a step first needs it (a chat that stays short never captures the long one).
 * Why two graphs rather than one that chooses on the device: the two kernels differ in grid,
 * block and shared memory, so one launch cannot be both, and a second launch per layer that
 * leaves at once costs 2.3-3.8 us per layer in the chain (H100, dev_attn_decode sweep "EMPTY"),
 * more than the choice gains at most positions; a second graph cost 0.46 ms once (capture,
 * instantiate, upload of 150 kernels) and no device memory cudaMemGetInfo could see
 * (kernels/dev/README.md, "Decode attention by position"). */
enum { ATTN_HEAD = 0, ATTN_GROUP = 1, ATTN_GRAPHS = 2 };

/* Distinct penalised ids the device sampler takes per token; a wider penalty window (the CLI
 * allows up to 65536 tokens) hands the pick to the host sampler. 16 KiB of pinned copy. */
enum { SAMPLE_MAX_PEN = 4096 };

/* The device sampler's graphs, by setting (sample_graph_for): greedy with a penalty (the
 * penalised argmax), top-k on up to KCUDA_SAMPLE_TOPK_MAX (the defaults), everything else (the
 * sort of the whole vocabulary). */
typedef enum { SAMPLE_ARGMAX, SAMPLE_TOPK, SAMPLE_SORTED, SAMPLE_GRAPHS } SampleGraph;

/* Decoding ahead, by setting: greedy without a penalty (the decode graph's argmax), then the
 * sampler graphs' three. */
typedef enum { AHEAD_GREEDY, AHEAD_ARGMAX, AHEAD_TOPK, AHEAD_SORTED, AHEAD_KINDS } AheadKind;

/* What starting a pipeline uploads, one copy: the draw state, the first step's inputs (token,
 * position, m) and the draw that precedes it (token, used, declined). */
typedef struct {
    KcudaDrawState st;
    int io[3];
    int draw[3];
} AheadUpload;

typedef struct {
    KcudaTernary qkv, o, gu, down;
    const float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm; /* device; sub-norms NULL
                                                                         * without cfg.sub_norms */
    uint16_t *kc, *vc;                                                /* [n_kv][ctx][hd] f16 */
} CudaLayer;

typedef struct {
    ModelConfig cfg;
    int ctx, dim, hd, q_dim, kv_dim, qkv_dim, ffn, vocab, kd, ko, kf;
    int pdl;           /* decode chained with programmatic dependent launch (else plain) */
    int wide_attn;     /* heads the tiled prefill attention cannot hold: kcuda_attn_prefill_wide */
    cudaStream_t st;
    CudaLayer *L;
    KcudaAttnShape ash;
    KcudaDtype emb_type, out_type;
    const void *d_emb, *d_outw;
    /* the optional int8 lm_head (InferOptions.lm_head_int8): rows quantized at load, one f32
     * scale per row; replaces d_outw in decode and prefill (d_outw is then freed unless the
     * embedding shares it). The screen (float head, unless InferOptions.lm_head_full) keeps
     * d_outw and adds the same int8 copy with its bound constants d_lm_b (kernels_cuda.h). */
    int8_t *d_lm_q;
    float *d_lm_s, *d_lm_b;
    int lm_int8, screen, tied;
    float *d_lohi, *d_bmax; /* the screen's [lo, hi] per row and warp maxima */
    int screen_nb;          /* its warps: the most rows a screened step serves (set at load) */
    const float *d_out_norm;
    /* Every device buffer sits in one allocation, d_all (alloc_device sizes them first; each
     * cudaMalloc would round its own up to 2 MiB pages): the weights, norms + RoPE, the
     * embedding, an untied float lm_head, the int8 lm_head, the KV cache, the scratch. Only a
     * float lm_head that the int8 head replaces (--lm-head int8, untied) has its own, d_out_tmp,
     * freed once quantized. */
    void *d_all, *d_out_tmp;
    void *d_tern, *d_dense, *d_kv, *d_scratch, *d_emb_own, *d_out_own;
    /* their bytes (cuda_memory), the int8 head's (table, scales, bounds), the scratch's parts,
     * and the device memory instantiating the graphs took (cudaMemGetInfo around each
     * instantiation + upload: instantiate_graph) */
    size_t n_tern, n_dense, n_kv, n_emb, n_out, n_lm_q, n_graphs, n_scratch;
    size_t n_scratch_decode, n_scratch_screen, n_scratch_sampler, n_scratch_prefill;
    int graphs;          /* graphs instantiated */
    char graphs_what[80]; /* their line in cuda_memory */
    /* decode scratch */
    float *d_x, *d_qkv, *d_att, *d_gu, *d_logits, *d_part;
    int *d_io, *d_best, *d_argmax, *d_err, *d_count;
    /* prefill scratch */
    float *p_x, *p_qkv, *p_att, *p_gu, *p_s;
    int8_t *p_q;
    int32_t *p_qsum, *p_tok;
    /* decode, by attention kernel (ATTN_*) and lm_head ([0] the full head, [1] the screened one) */
    cudaGraphExec_t graph[ATTN_GRAPHS][2];
    int head_until; /* positions below take ATTN_HEAD */
    /* the device sampler, one graph per SampleGraph, captured when a draw first needs it; [1]:
     * with the screen's exact pass in front (a draw that needs more rows than the decode step
     * served) */
    cudaGraphExec_t sample_graph[SAMPLE_GRAPHS][2];
    int *h_pin;        /* pinned: [0] token, [1] position, [2] the rows the screened head serves
                        * (kcuda_screen_m; KCUDA_SCREEN_FULL after a full head) (read by the
                        * graph), [3] greedy pick, [4] sampled token, [5] whether the sample used
                        * the uniform, [6] whether the sampler declined (kcuda_sample_topk outside
                        * its range: never, as sample_graph_for chooses) */
    /* The screen's bookkeeping: m_pred = the rows the next decode step screens for (the last
     * draw's need: settings rarely change within a reply), logits_full = d_logits holds every
     * row, logits_asked = logits() was called since the last decode step (the next one then
     * computes the full head at once). */
    int m_pred, logits_full, logits_asked;
    int m_served;      /* the rows the logits on the device serve (KCUDA_SCREEN_FULL: all) */
    int last_screened; /* the last decode step ran the screened head */
    /* device sampler: pinned arguments + penalty ids (copied per token by the sampler graph),
     * their device twin, its result (d_sout: token, used the uniform, declined) and scratch */
    KcudaSampleArgs *h_sargs, *d_sargs;
    int *d_sout;
    void *d_sscratch;
    size_t sscratch_bytes;
    int inflight;      /* work queued that reads h_pin[0..2] */
    /* Decoding ahead ("decoding ahead" below): the device's copy of the host sampler's state
     * (uploaded from h_up when a pipeline starts), the draws' ring (host memory the device
     * writes), each step's completion event by ring slot, the graphs by attention kernel,
     * lm_head and AheadKind. */
    KcudaDrawState *d_dstate;
    AheadUpload *h_up, *d_up;
    int *h_ring, *d_ring;
    cudaEvent_t ev[KCUDA_DRAW_RING];
    cudaGraphExec_t ahead_graph[ATTN_GRAPHS][2][AHEAD_KINDS];
    int no_ahead;            /* InferOptions.decode_plain */
    int ahead;               /* the device holds a draw state that mirrors ahead_s */
    Sampler *ahead_s;
    SamplerParams ahead_p;   /* its settings when the pipeline started */
    int ahead_kind, ahead_screened;
    int cur_ahead, cur_seq;  /* the current step was queued ahead; its draw's sequence number */
    int32_t cur_tok;         /* the current step's token and position (a plain redo needs them) */
    int cur_pos;
    int spec_queued, spec_seq, spec_pos; /* the step after the current one is queued */
    int32_t last_drawn;      /* the token the last draw returned (the queued step's input) */
    long n_adopted, n_redone; /* steps adopted as queued ahead; steps done again (cuda_ahead_counts) */
    float *h_logits;
    int logits_valid;
    char desc[256];
} CudaBackend;

static int cuda_err(Err *err, const char *what, cudaError_t e) {
    return err_set(err, "cuda: %s: %s", what, cudaGetErrorString(e));
}
/* A kernel launcher's failure: its own message says why (kcuda_last_error). */
static int kc_err(Err *err, const char *what) {
    return err_set(err, "cuda: %s: %s", what, kcuda_last_error());
}

static void cuda_destroy(void *vb) {
    CudaBackend *b = vb;
    if (!b) return;
    /* a step queued ahead may still run (a reply that stopped): it writes the mapped ring */
    if (b->st) cudaStreamSynchronize(b->st);
    for (int i = 0; i < ATTN_GRAPHS; i++)
        for (int j = 0; j < 2; j++)
            if (b->graph[i][j]) cudaGraphExecDestroy(b->graph[i][j]);
    for (int i = 0; i < SAMPLE_GRAPHS; i++)
        for (int j = 0; j < 2; j++)
            if (b->sample_graph[i][j]) cudaGraphExecDestroy(b->sample_graph[i][j]);
    for (int i = 0; i < ATTN_GRAPHS; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < AHEAD_KINDS; k++)
                if (b->ahead_graph[i][j][k]) cudaGraphExecDestroy(b->ahead_graph[i][j][k]);
    for (int i = 0; i < KCUDA_DRAW_RING; i++)
        if (b->ev[i]) cudaEventDestroy(b->ev[i]);
    if (b->h_up) cudaFreeHost(b->h_up);
    if (b->h_ring) cudaFreeHost(b->h_ring);
    cudaFree(b->d_all);
    cudaFree(b->d_out_tmp);
    if (b->st) cudaStreamDestroy(b->st);
    if (b->h_pin) cudaFreeHost(b->h_pin);
    if (b->h_sargs) cudaFreeHost(b->h_sargs);
    free(b->L);
    free(b->h_logits);
    free(b);
}

static size_t align256(size_t x) { return (x + 255) / 256 * 256; }

static int dtype_of(FloatType t, KcudaDtype *out) {
    switch (t) {
    case FT_F32: *out = KCUDA_F32; return 0;
    case FT_F16: *out = KCUDA_F16; return 0;
    case FT_BF16: *out = KCUDA_BF16; return 0;
    default: return -1;
    }
}
static size_t dtype_size(KcudaDtype t) { return t == KCUDA_F32 ? 4 : 2; }

/* The lm_head (final RMSNorm fused, greedy argmax when best/argmax are given): f16 (or the
 * model's float type) by default, int8 with per-row scales when asked for. */
static int lm_head(CudaBackend *b, const float *d_x, int pdl) {
    const float eps = b->cfg.norm_eps;
    if (b->lm_int8)
        return kcuda_lm_head_i8(b->d_lm_q, b->d_lm_s, b->vocab, b->dim, d_x, b->d_out_norm, eps, b->d_logits,
                                b->d_best, b->d_argmax, pdl, b->st);
    return kcuda_lm_head(b->out_type, b->d_outw, b->vocab, b->dim, d_x, b->d_out_norm, eps, b->d_logits, b->d_best,
                         b->d_argmax, pdl, b->st);
}

/* Checks that the model has shapes the kernels support; a clear message otherwise. */
static int check_model(const Model *m, Err *err) {
    const ModelConfig *c = &m->cfg;
    if (c->n_layers <= 0 || c->dim <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 ||
        c->ffn_dim <= 0 || c->vocab_size <= 0 || !m->layers)
        return err_set(err, "cuda: model config incomplete");
    /* The model families (ModelConfig): the gate/up epilogue takes either activation
     * (KcudaTernary.act); without sub-norms o_proj / down_proj quantize their input as is. */
    if (c->ffn_act != FFN_RELU2 && c->ffn_act != FFN_SILU)
        return err_set(err, "cuda: feed-forward activation %d unsupported", (int)c->ffn_act);
    /* Decode attention takes any even head_dim up to 256 and any grouping; the tiled prefill
     * kernels hold head_dim <= 128 in multiples of 16 and up to 8 query heads per KV head, and
     * other heads (Falcon3's 256, 1bitLLM's 96 and 100) prefill with attention_wide.cu. */
    if (c->n_heads % c->n_kv_heads || c->head_dim % 2 || c->head_dim > 256)
        return err_set(err, "cuda: attention shape %d/%d heads, head_dim %d unsupported on the GPU (an even head_dim "
                            "up to 256, query heads a multiple of KV heads); --backend cpu runs this model",
                       c->n_heads, c->n_kv_heads, c->head_dim);
    /* the sub-norm before o_proj is [dim] (model.h) and normalizes the attention output */
    if (c->sub_norms && c->n_heads * c->head_dim != c->dim)
        return err_set(err, "cuda: sub-norms with %d x %d attention outputs for hidden size %d unsupported",
                       c->n_heads, c->head_dim, c->dim);
    const int kd = i2s_round_up_k(c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *w = &m->layers[l];
        const TernaryMatrix *in_dim[5] = {&w->wq, &w->wk, &w->wv, &w->w_gate, &w->w_up};
        for (int i = 0; i < 5; i++)
            if (!in_dim[i]->codes || in_dim[i]->n_in != c->dim || in_dim[i]->n_in_pad != kd)
                return err_set(err, "cuda: layer %d: a projection of the hidden state has input %d (pad %d), expected %d",
                               l, in_dim[i]->n_in, in_dim[i]->n_in_pad, c->dim);
        if (w->wq.n_out != c->n_heads * c->head_dim || w->wk.n_out != c->n_kv_heads * c->head_dim ||
            w->wv.n_out != w->wk.n_out || w->w_gate.n_out != c->ffn_dim || w->w_up.n_out != c->ffn_dim)
            return err_set(err, "cuda: layer %d: projection output sizes do not match the config", l);
        if (!w->wo.codes || w->wo.n_in != c->n_heads * c->head_dim || w->wo.n_out != c->dim ||
            !w->w_down.codes || w->w_down.n_in != c->ffn_dim || w->w_down.n_out != c->dim)
            return err_set(err, "cuda: layer %d: o/down projection shapes do not match the config", l);
        if (!w->attn_norm || !w->ffn_norm || !w->attn_sub_norm != !c->sub_norms || !w->ffn_sub_norm != !c->sub_norms)
            return err_set(err, "cuda: layer %d: norm weights do not match the config (%s)", l,
                           c->sub_norms ? "attn/ffn norms and both sub-norms" : "attn/ffn norms only");
    }
    if (!m->tok_embd.data || !m->output.data || !m->output_norm)
        return err_set(err, "cuda: missing embedding, lm_head or output norm");
    if (m->tok_embd.rows != c->vocab_size || m->tok_embd.cols != c->dim || m->output.rows != c->vocab_size ||
        m->output.cols != c->dim)
        return err_set(err, "cuda: embedding/lm_head shape does not match the config");
    /* kcuda_lm_head reads rows in 16-byte pieces and keeps the normed input in shared memory */
    const size_t row_bytes = (size_t)c->dim * (m->output.type == FT_F32 ? 4 : 2);
    if (row_bytes % 16 || c->dim > 16384)
        return err_set(err, "cuda: lm_head rows of %d values unsupported on the GPU (a multiple of 16 bytes, at most "
                            "16384 values); --backend cpu runs this model", c->dim);
    return 0;
}

/* Copies parts (one matrix, QKV's three or gate/up's two) into one device matrix at *cursor and
 * moves the cursor past it: parts concatenated with a scale per segment, or, for gate/up,
 * interleaved row by row (kernels_cuda.h). */
static int upload_matrix(KcudaTernary *t, uint8_t **cursor, const TernaryMatrix *const *parts, int n_parts,
                         int interleave, int act, Err *err) {
    const int k_pad = parts[0]->n_in_pad;
    int rows = 0;
    for (int i = 0; i < n_parts; i++) rows += parts[i]->n_out;
    memset(t, 0, sizeof *t);
    t->d_codes = *cursor;
    t->n_out = rows;
    t->k_pad = k_pad;
    t->glu = interleave;
    t->act = act;
    t->seg_end[0] = t->seg_end[1] = rows;
    int row0 = 0;
    for (int i = 0; i < n_parts; i++) {
        const TernaryMatrix *p = parts[i];
        if (kcuda_upload_i2s(*cursor, p->codes, p->n_out, k_pad, interleave ? i : row0, interleave ? 2 : 1))
            return kc_err(err, "upload");
        t->gamma[i] = p->scale;
        row0 += p->n_out;
        if (!interleave && i < 2) t->seg_end[i] = row0;
    }
    if (!interleave && n_parts == 1) t->gamma[1] = t->gamma[2] = t->gamma[0];
    *cursor += (size_t)rows * k_pad / 4;
    return 0;
}

/* Bytes of every layer's ternary matrices on the device. */
static size_t ternary_bytes(const CudaBackend *b, const Model *m) {
    size_t bytes = 0;
    for (int l = 0; l < b->cfg.n_layers; l++) {
        const LayerWeights *w = &m->layers[l];
        bytes += (size_t)(w->wq.n_out + w->wk.n_out + w->wv.n_out + 2 * w->w_gate.n_out) * b->kd / 4;
        bytes += (size_t)w->wo.n_out * w->wo.n_in_pad / 4 + (size_t)w->w_down.n_out * w->w_down.n_in_pad / 4;
    }
    return bytes;
}

/* Every layer's ternary matrices into d_tern, in the order decode reads them (QKV fused, O,
 * gate/up interleaved, down). */
static int upload_ternary(CudaBackend *b, const Model *m, Err *err) {
    const int NL = b->cfg.n_layers;
    uint8_t *cur = b->d_tern;
    for (int l = 0; l < NL; l++) {
        const LayerWeights *w = &m->layers[l];
        CudaLayer *L = &b->L[l];
        const TernaryMatrix *qkv[3] = {&w->wq, &w->wk, &w->wv};
        const TernaryMatrix *gu[2] = {&w->w_gate, &w->w_up};
        const TernaryMatrix *om[1] = {&w->wo};
        const TernaryMatrix *dm[1] = {&w->w_down};
        const int act = b->cfg.ffn_act == FFN_SILU ? KCUDA_ACT_SILU : KCUDA_ACT_RELU2;
        if (upload_matrix(&L->qkv, &cur, qkv, 3, 0, 0, err)) return -1;
        if (upload_matrix(&L->o, &cur, om, 1, 0, 0, err)) return -1;
        if (upload_matrix(&L->gu, &cur, gu, 2, 1, act, err)) return -1;
        if (upload_matrix(&L->down, &cur, dm, 1, 0, 0, err)) return -1;
    }
    return 0;
}

/* Floats of the norm weights of every layer (the sub-norms only where the model has them: their
 * pointers stay NULL otherwise, and the GEMV / prefill quantization then takes its input as is,
 * as the CPU forward does), the output norm and the RoPE table. */
static size_t norms_rope_floats(const CudaBackend *b) {
    const size_t per_layer = (size_t)2 * b->dim + (b->cfg.sub_norms ? (size_t)b->dim + b->ffn : 0);
    return per_layer * b->cfg.n_layers + b->dim + (size_t)b->ctx * b->hd;
}

/* The norm weights of every layer, the output norm and the RoPE table into d_dense. */
static int upload_norms_rope(CudaBackend *b, const Model *m, Err *err) {
    const ModelConfig *c = &b->cfg;
    const int NL = c->n_layers;
    const int sn = c->sub_norms;
    const size_t nfl = norms_rope_floats(b);
    float *h = malloc(nfl * sizeof(float));
    if (!h) return err_set(err, "cuda: out of memory");
    float *p = h;
    for (int l = 0; l < NL; l++) {
        const LayerWeights *w = &m->layers[l];
        memcpy(p, w->attn_norm, b->dim * sizeof(float)), p += b->dim;
        if (sn) memcpy(p, w->attn_sub_norm, b->dim * sizeof(float)), p += b->dim;
        memcpy(p, w->ffn_norm, b->dim * sizeof(float)), p += b->dim;
        if (sn) memcpy(p, w->ffn_sub_norm, b->ffn * sizeof(float)), p += b->ffn;
    }
    memcpy(p, m->output_norm, b->dim * sizeof(float)), p += b->dim;
    /* RoPE table as kernels/cpu rope_table_init computes it (fp32 inv_freq, cosf/sinf). */
    const int half = b->hd / 2;
    for (int i = 0; i < half; i++) {
        const float inv_freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)b->hd);
        for (int pp = 0; pp < b->ctx; pp++) {
            const float a = (float)pp * inv_freq;
            p[((size_t)pp * half + i) * 2 + 0] = cosf(a);
            p[((size_t)pp * half + i) * 2 + 1] = sinf(a);
        }
    }
    const cudaError_t e = cudaMemcpy(b->d_dense, h, nfl * sizeof(float), cudaMemcpyHostToDevice);
    free(h);
    if (e != cudaSuccess) return cuda_err(err, "uploading norms", e);
    const float *d = b->d_dense;
    for (int l = 0; l < NL; l++) {
        b->L[l].attn_norm = d, d += b->dim;
        if (sn) b->L[l].attn_sub_norm = d, d += b->dim;
        b->L[l].ffn_norm = d, d += b->dim;
        if (sn) b->L[l].ffn_sub_norm = d, d += b->ffn;
    }
    b->d_out_norm = d, d += b->dim;
    b->ash.d_rope = d;
    return 0;
}

/* The attention shape (the RoPE table's pointer comes with the upload) and the kernels it takes. */
static void set_attention(CudaBackend *b) {
    const ModelConfig *c = &b->cfg;
    b->ash.n_heads = c->n_heads;
    b->ash.n_kv = c->n_kv_heads;
    b->ash.head_dim = b->hd;
    b->ash.ctx = b->ctx;
    b->ash.rope_style = c->rope_style == ROPE_ADJACENT ? 1 : 0;
    b->head_until = kcuda_attn_decode_head_until(&b->ash);
    b->wide_attn = b->hd % 16 || b->hd > 128 || c->n_heads / c->n_kv_heads > 8;
}

/* The embedding and the lm_head's sizes and types (one table when tied), the int8 copy's with
 * lm_head_int8 or the screen (which needs its k in multiples of 16; other shapes run the full
 * head): n_emb, n_out (0 when tied or when the int8 head replaces an untied float one), n_lm_q. */
static int plan_embeddings(CudaBackend *b, const Model *m, int lm_head_int8, int screen, Err *err) {
    if (dtype_of(m->tok_embd.type, &b->emb_type) || dtype_of(m->output.type, &b->out_type))
        return err_set(err, "cuda: unsupported embedding type");
    b->n_emb = (size_t)b->vocab * b->dim * dtype_size(b->emb_type);
    b->tied = m->output.data == m->tok_embd.data && m->output.type == m->tok_embd.type;
    b->n_out = b->tied || lm_head_int8 ? 0 : (size_t)b->vocab * b->dim * dtype_size(b->out_type);
    b->screen = !lm_head_int8 && screen && b->dim % 16 == 0;
    if (lm_head_int8 && b->dim % 16)
        return err_set(err, "cuda: --lm-head int8 needs a hidden size that is a multiple of 16 (this model: %d)", b->dim);
    const size_t qb = align256((size_t)b->vocab * b->dim), sb = align256((size_t)b->vocab * sizeof(float));
    b->n_lm_q = lm_head_int8 || b->screen ? qb + sb + (b->screen ? sb : 0) : 0;
    return 0;
}

/* The embedding and the lm_head (one table when tied) into their places, and with lm_head_int8 the
 * int8 copy of the lm_head, quantized on the device (one block per row, a few ms); the float
 * lm_head then goes unless the embedding lookup shares it. */
static int upload_embeddings(CudaBackend *b, const Model *m, int lm_head_int8, Err *err) {
    cudaError_t e;
    if ((e = cudaMemcpy(b->d_emb_own, m->tok_embd.data, b->n_emb, cudaMemcpyHostToDevice)) != cudaSuccess)
        return cuda_err(err, "uploading the embedding", e);
    b->d_emb = b->d_emb_own;
    if (b->tied) {
        b->d_outw = b->d_emb;
    } else {
        const size_t ob = (size_t)b->vocab * b->dim * dtype_size(b->out_type);
        if (lm_head_int8 && (e = cudaMalloc(&b->d_out_tmp, ob)) != cudaSuccess) {
            b->d_out_tmp = NULL;
            return cuda_err(err, "allocating the lm_head", e);
        }
        void *dst = lm_head_int8 ? b->d_out_tmp : b->d_out_own;
        if ((e = cudaMemcpy(dst, m->output.data, ob, cudaMemcpyHostToDevice)) != cudaSuccess)
            return cuda_err(err, "uploading the lm_head", e);
        b->d_outw = dst;
    }
    if (!lm_head_int8 && !b->screen) return 0;
    const size_t qb = align256((size_t)b->vocab * b->dim), sb = align256((size_t)b->vocab * sizeof(float));
    b->d_lm_s = (float *)((char *)b->d_lm_q + qb);
    if (b->screen) b->d_lm_b = (float *)((char *)b->d_lm_q + qb + sb);
    /* the table was copied with cudaMemcpy from pageable memory on the legacy stream, whose
     * DMA may still be under way when it returns; b->st does not wait for that stream */
    if ((e = cudaDeviceSynchronize()) != cudaSuccess) return cuda_err(err, "uploading the lm_head", e);
    if (kcuda_quant_rows_i8(b->out_type, b->d_outw, b->vocab, b->dim, b->d_lm_q, b->d_lm_s, b->st))
        return kc_err(err, "quantizing the lm_head");
    if (b->screen) {
        if (kcuda_screen_prepare(b->out_type, b->d_outw, b->d_lm_q, b->d_lm_s, b->vocab, b->dim, b->d_lm_b, b->st))
            return kc_err(err, "the lm_head screen's bounds");
        if ((e = cudaStreamSynchronize(b->st)) != cudaSuccess) return cuda_err(err, "the lm_head screen's bounds", e);
        return 0;
    }
    if ((e = cudaStreamSynchronize(b->st)) != cudaSuccess) return cuda_err(err, "quantizing the lm_head", e);
    b->lm_int8 = 1;
    if (b->d_out_tmp) {
        cudaFree(b->d_out_tmp);
        b->d_out_tmp = NULL;
    }
    b->d_outw = b->d_lm_q;
    return 0;
}

/* The f16 KV cache of every layer: d_kv split by layer. */
static void place_kv(CudaBackend *b) {
    const size_t per = (size_t)b->cfg.n_kv_heads * b->ctx * b->hd;
    uint16_t *kv = b->d_kv;
    for (int l = 0; l < b->cfg.n_layers; l++) {
        b->L[l].kc = kv, kv += per;
        b->L[l].vc = kv, kv += per;
    }
}

/* The device sampler's per-token arguments: the settings and the penalty ids after them. */
static size_t sample_args_bytes(void) { return sizeof(KcudaSampleArgs) + SAMPLE_MAX_PEN * sizeof(int32_t); }

/* Hands out 256-byte aligned pieces of one allocation: a first pass with base NULL only adds up
 * the size, a second one with the allocation sets the pointers. */
typedef struct {
    char *base;
    size_t used;
} Arena;
static void *carve(Arena *a, size_t bytes) {
    void *p = a->base ? a->base + a->used : NULL;
    a->used += align256(bytes);
    return p;
}

void cuda_prefill_plan(const ModelConfig *c, int T, CudaPrefillPlan *p) {
    const size_t dim = (size_t)c->dim, q = (size_t)c->n_heads * c->head_dim, qkv = q + 2 * (size_t)c->n_kv_heads * c->head_dim;
    const size_t ffn = (size_t)c->ffn_dim, kd = (size_t)i2s_round_up_k(c->dim), ko = (size_t)i2s_round_up_k((int)q),
                 kf = (size_t)i2s_round_up_k(c->ffn_dim);
    const size_t maxk = kf > kd ? (kf > ko ? kf : ko) : (kd > ko ? kd : ko);
    /* One region holds qkv with the attention output beside it, or gate/up's output. In stream
     * order (prefill_layer) qkv lives from the QKV GEMM to the attention kernel (which ropes q in
     * place and writes its output, rows < T, into its own part), the output until o_proj's
     * quantization (into q) has read it; gate/up's GEMM then writes the region and down's
     * quantization reads it before the next layer's QKV GEMM. x, q, s, qsum and tok are read or
     * written while the region is live, so they stay apart (test_prefill_plan checks the plan
     * against these lifetimes). 2B: 70.4 -> 44.8 KB a token of the batch, 36.0 -> 22.9 MB at
     * PREFILL_MAX. */
    const size_t region = qkv + q > ffn ? qkv + q : ffn;
    size_t at = 0;
    p->x = at, at += align256((size_t)T * dim * 4);
    p->gu = p->qkv = at, at += align256((size_t)T * region * 4);
    p->att = p->qkv + (size_t)T * qkv * 4;
    p->s = at, at += align256((size_t)T * 4);
    p->qsum = at, at += align256((size_t)T * 4);
    p->tok = at, at += align256((size_t)T * 4);
    p->q = at, at += align256((size_t)T * maxk);
    p->bytes = at;
}

/* Decode and prefill scratch (activations, logits, attention partials, greedy pick, sampler),
 * zeroed (the attention split counters must start at zero). */
static void carve_scratch(CudaBackend *b, Arena *a) {
    b->d_x = carve(a, (size_t)b->dim * 4);
    b->d_qkv = carve(a, (size_t)b->qkv_dim * 4);
    b->d_att = carve(a, (size_t)b->q_dim * 4);
    b->d_gu = carve(a, (size_t)b->ffn * 4);
    b->d_logits = carve(a, (size_t)b->vocab * 4);
    b->d_part = carve(a, kcuda_attn_decode_scratch(&b->ash) * 4);
    b->d_io = carve(a, 3 * sizeof(int));
    b->d_best = carve(a, (size_t)kcuda_lm_head_scratch(b->vocab) * 4);
    b->d_argmax = carve(a, sizeof(int));
    b->d_err = carve(a, sizeof(int));
    b->d_count = carve(a, (size_t)b->cfg.n_heads * 4);
    b->n_scratch_decode = a->used;
    if (b->screen) {
        b->d_lohi = carve(a, (size_t)b->vocab * 2 * sizeof(float));
        b->d_bmax = carve(a, (size_t)kcuda_screen_warps_max() * sizeof(float));
    }
    b->n_scratch_screen = a->used - b->n_scratch_decode;
    b->d_sargs = carve(a, sample_args_bytes());
    b->d_sout = carve(a, 3 * sizeof(int));
    b->sscratch_bytes = kcuda_sample_scratch(b->vocab);
    b->d_sscratch = carve(a, b->sscratch_bytes);
    b->d_up = carve(a, sizeof *b->d_up);
    b->d_dstate = b->d_up ? &b->d_up->st : NULL;
    b->n_scratch_sampler = a->used - b->n_scratch_decode - b->n_scratch_screen;
    const size_t before_prefill = a->used;
    CudaPrefillPlan pp;
    cuda_prefill_plan(&b->cfg, PREFILL_MAX, &pp);
    char *pre = carve(a, pp.bytes); /* NULL: the sizing pass */
    b->n_scratch_prefill = a->used - before_prefill;
    b->p_x = pre ? (float *)(pre + pp.x) : NULL;
    b->p_qkv = pre ? (float *)(pre + pp.qkv) : NULL;
    b->p_att = pre ? (float *)(pre + pp.att) : NULL;
    b->p_gu = pre ? (float *)(pre + pp.gu) : NULL;
    b->p_s = pre ? (float *)(pre + pp.s) : NULL;
    b->p_qsum = pre ? (int32_t *)(pre + pp.qsum) : NULL;
    b->p_tok = pre ? (int32_t *)(pre + pp.tok) : NULL;
    b->p_q = pre ? (int8_t *)(pre + pp.q) : NULL;
}

/* Sizes every device buffer (b->n_*), then makes the one allocation and places them in it:
 * the scratch zeroed (the attention split counters and the sampler's tickets start at zero). */
static int alloc_device(CudaBackend *b, const Model *m, int lm_head_int8, int screen, Err *err) {
    if (plan_embeddings(b, m, lm_head_int8, screen, err)) return -1;
    set_attention(b);
    b->n_tern = ternary_bytes(b, m);
    b->n_dense = norms_rope_floats(b) * sizeof(float);
    b->n_kv = (size_t)b->cfg.n_kv_heads * b->ctx * b->hd * 2 * b->cfg.n_layers * sizeof(uint16_t);
    Arena a = {NULL, 0};
    carve_scratch(b, &a);
    b->n_scratch = a.used;
    Arena all = {NULL, 0};
    void **const at[7] = {&b->d_tern, &b->d_dense, &b->d_emb_own, &b->d_out_own, (void **)&b->d_lm_q, &b->d_kv,
                          &b->d_scratch};
    const size_t len[7] = {b->n_tern, b->n_dense, b->n_emb, b->n_out, b->n_lm_q, b->n_kv, b->n_scratch};
    for (int i = 0; i < 7; i++) carve(&all, len[i]);
    cudaError_t e;
    if ((e = cudaMalloc(&b->d_all, all.used)) != cudaSuccess) {
        b->d_all = NULL;
        return cuda_err(err, "allocating device memory for the model, KV cache and scratch", e);
    }
    all = (Arena){b->d_all, 0};
    for (int i = 0; i < 7; i++) {
        void *p = carve(&all, len[i]);
        *at[i] = len[i] ? p : NULL;
    }
    if ((e = cudaMemset(b->d_scratch, 0, b->n_scratch)) != cudaSuccess) return cuda_err(err, "zeroing scratch", e);
    a = (Arena){b->d_scratch, 0};
    carve_scratch(b, &a);
    place_kv(b);
    return 0;
}

/* The stream and the pinned host buffers: token/position/picks, the sampler's arguments, the
 * host copy of the logits. */
static int alloc_host(CudaBackend *b, Err *err) {
    cudaError_t e;
    if ((e = cudaStreamCreateWithFlags(&b->st, cudaStreamNonBlocking)) != cudaSuccess) return cuda_err(err, "stream", e);
    if ((e = cudaMallocHost((void **)&b->h_pin, 64)) != cudaSuccess) {
        b->h_pin = NULL;
        return cuda_err(err, "pinned buffer", e);
    }
    if ((e = cudaMallocHost((void **)&b->h_sargs, sample_args_bytes())) != cudaSuccess) {
        b->h_sargs = NULL;
        return cuda_err(err, "pinned buffer", e);
    }
    if ((e = cudaMallocHost((void **)&b->h_up, sizeof *b->h_up)) != cudaSuccess) {
        b->h_up = NULL;
        return cuda_err(err, "pinned buffer", e);
    }
    if ((e = cudaHostAlloc((void **)&b->h_ring, KCUDA_DRAW_RING * KCUDA_DRAW_SLOT * sizeof(int), cudaHostAllocMapped)) !=
        cudaSuccess) {
        b->h_ring = NULL;
        return cuda_err(err, "mapped buffer", e);
    }
    if ((e = cudaHostGetDevicePointer((void **)&b->d_ring, b->h_ring, 0)) != cudaSuccess)
        return cuda_err(err, "mapped buffer", e);
    for (int i = 0; i < KCUDA_DRAW_RING; i++)
        if ((e = cudaEventCreateWithFlags(&b->ev[i], cudaEventDisableTiming)) != cudaSuccess) {
            b->ev[i] = NULL;
            return cuda_err(err, "event", e);
        }
    b->L = calloc((size_t)b->cfg.n_layers, sizeof *b->L);
    b->h_logits = malloc((size_t)b->vocab * sizeof(float));
    if (!b->L || !b->h_logits) return err_set(err, "cuda: out of memory");
    return 0;
}

/* Everything the backend holds on the device, in order; each step names itself in err. */
static int upload_model(CudaBackend *b, const Model *m, int lm_head_int8, int screen, Err *err) {
    if (alloc_host(b, err) || alloc_device(b, m, lm_head_int8, screen, err)) return -1;
    if (upload_ternary(b, m, err)) return -1;
    if (upload_norms_rope(b, m, err)) return -1;
    return upload_embeddings(b, m, lm_head_int8, err);
}

/* Instantiates a captured graph into *exec and uploads it, adding the device memory that took
 * (cudaMemGetInfo before and after: exact while no other thread of the process allocates) to
 * n_graphs for cuda_memory. That is the graph's own (~0.3 MiB for 160 kernels on an H100, in 2
 * MiB chunks: kernels/dev/README.md, "Device memory") and, the first time a kernel appears, what
 * the context takes for it: its code (loaded lazily) and the stack reserve its frame needs. */
static cudaError_t instantiate_graph(CudaBackend *b, cudaGraphExec_t *exec, cudaGraph_t g) {
    const size_t before = kcuda_mem_used();
    cudaError_t e = cudaGraphInstantiate(exec, g, 0);
    if (e != cudaSuccess) return e;
    if ((e = cudaGraphUpload(*exec, b->st)) != cudaSuccess) {
        cudaGraphExecDestroy(*exec);
        *exec = NULL;
        return e;
    }
    const size_t after = kcuda_mem_used();
    b->n_graphs += after > before ? after - before : 0;
    b->graphs++;
    return cudaSuccess;
}

/* The device sampler as a graph (sample_graph[which]): the arguments and penalty ids in from
 * pinned memory (the whole list, a fixed 16 KiB, so the graph never changes), the sampler on the
 * logits, its result out. Launched after the decode graph (or prefill), it costs the host one
 * launch while the GPU still decodes, and one wait. (The kernels reading the arguments from and
 * writing the result to mapped pinned memory instead, without the two copies, measured slower:
 * 53.7 us a graph launch + wait against 36.2 with the copies, the top-k kernel alone 26.7, H100,
 * 2026-12-06, `test_sample_cuda time`.) */
static int capture_sampler(CudaBackend *b, SampleGraph which, int exact_pass, Err *err) {
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamBeginCapture(b->st, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) return cuda_err(err, "begin capture", e);
    int rc = 0;
    if ((e = cudaMemcpyAsync(b->d_sargs, b->h_sargs, sample_args_bytes(), cudaMemcpyHostToDevice, b->st)) != cudaSuccess)
        rc = cuda_err(err, "capturing the sampler's argument copy", e);
    const int32_t *ids = (const int32_t *)(b->d_sargs + 1);
    /* after a screened decode step: the exact rows this draw needs beyond those it served */
    if (!rc && exact_pass &&
        kcuda_screen_exact(b->out_type, b->d_outw, b->vocab, b->dim, b->d_x, b->d_out_norm, b->cfg.norm_eps, b->d_lohi,
                           b->d_bmax, b->screen_nb, b->d_io + 2, b->d_sargs, b->d_logits, NULL, NULL, NULL,
                           KCUDA_PDL_OFF, b->st))
        rc = kc_err(err, "capturing the screened lm_head's sampler pass");
    if (!rc) {
        int krc;
        switch (which) {
        case SAMPLE_ARGMAX:
            krc = kcuda_sample_argmax(b->d_logits, b->vocab, b->d_sargs, ids, b->d_sscratch, b->sscratch_bytes, b->d_sout, b->st);
            break;
        case SAMPLE_TOPK:
            krc = kcuda_sample_topk(b->d_logits, b->vocab, b->d_sargs, ids, b->d_sscratch, b->sscratch_bytes, b->d_sout, b->st);
            break;
        default:
            krc = kcuda_sample_sorted(b->d_logits, b->vocab, b->d_sargs, ids, b->d_sscratch, b->sscratch_bytes, b->d_sout, b->st);
            break;
        }
        if (krc) rc = kc_err(err, "capturing the sampler");
    }
    if (!rc && (e = cudaMemcpyAsync(b->h_pin + 4, b->d_sout, 3 * sizeof(int), cudaMemcpyDeviceToHost, b->st)) !=
                   cudaSuccess)
        rc = cuda_err(err, "capturing the sampler's result copy", e);
    e = cudaStreamEndCapture(b->st, &g);
    if (!rc && e != cudaSuccess) rc = cuda_err(err, "capturing the sampler graph", e);
    if (!rc && (e = instantiate_graph(b, &b->sample_graph[which][exact_pass], g)) != cudaSuccess)
        rc = cuda_err(err, "instantiating the sampler graph", e);
    if (g) cudaGraphDestroy(g);
    return rc;
}

/* The screen's warp count (the exact pass's threshold takes the m-th largest of their maxima;
 * fixed per shape and device): one launch of the screen on the zeroed scratch. */
static int screen_warps(CudaBackend *b, Err *err) {
    if (!b->screen) return 0;
    if (kcuda_screen_bounds(b->d_lm_q, b->d_lm_s, b->d_lm_b, b->vocab, b->dim, b->d_x, b->d_out_norm, b->cfg.norm_eps,
                            b->d_lohi, b->d_bmax, &b->screen_nb, KCUDA_PDL_OFF, b->st))
        return kc_err(err, "the lm_head screen");
    cudaError_t e = cudaStreamSynchronize(b->st);
    return e == cudaSuccess ? 0 : cuda_err(err, "the lm_head screen", e);
}

/* Which sampler draws with these settings (kernel times per token, H100, 2026-12-06, vocab
 * 128256): greedy with a penalty: the penalised argmax (7.7 us); top-k on, up to
 * KCUDA_SAMPLE_TOPK_MAX: kcuda_sample_topk (22.1 us for the defaults); everything else: the sort
 * (79 us). */
static SampleGraph sample_graph_for(const SamplerParams *p, int vocab) {
    if (!(p->temperature > 0.0f)) return SAMPLE_ARGMAX;
    if (p->top_k >= 1 && p->top_k < vocab && p->top_k <= KCUDA_SAMPLE_TOPK_MAX) return SAMPLE_TOPK;
    return SAMPLE_SORTED;
}

static void *cuda_create(const Model *m, const InferOptions *o, Err *err) {
    if (kcuda_device_count() <= 0) {
        err_set(err, "cuda: no CUDA device");
        return NULL;
    }
    if (check_model(m, err)) return NULL;
    kcuda_context_trim();
    CudaBackend *b = calloc(1, sizeof *b);
    if (!b) {
        err_set(err, "cuda: out of memory");
        return NULL;
    }
    const ModelConfig *c = &m->cfg;
    b->cfg = *c;
    b->dim = c->dim;
    b->hd = c->head_dim;
    b->q_dim = c->n_heads * c->head_dim;
    b->kv_dim = c->n_kv_heads * c->head_dim;
    b->qkv_dim = b->q_dim + 2 * b->kv_dim;
    b->ffn = c->ffn_dim;
    b->vocab = c->vocab_size;
    b->kd = i2s_round_up_k(c->dim);
    b->ko = i2s_round_up_k(b->q_dim);
    b->kf = i2s_round_up_k(c->ffn_dim);
    b->ctx = o && o->ctx > 0 ? o->ctx : (c->ctx_len > 0 ? c->ctx_len : 4096);
    b->pdl = 1; /* capture_graph falls back to plain launches where PDL cannot be captured */
    b->m_pred = 1;
    b->m_served = KCUDA_SCREEN_FULL;
    b->logits_full = 1;
    b->no_ahead = o && o->decode_plain;
    if (upload_model(b, m, o && o->lm_head_int8, !(o && o->lm_head_full), err) || screen_warps(b, err)) {
        cuda_destroy(b);
        return NULL;
    }
    char dev[160] = "?";
    kcuda_device_describe(dev, sizeof dev);
    snprintf(b->desc, sizeof b->desc, "CUDA: %s; W2A8 dp4a GEMV, int8 mma GEMM, graph + PDL; %s lm_head; device sampler", dev,
             b->lm_int8 ? "int8" : b->screen ? "screened f16" : "f16");
    return b;
}

/* When each kernel of a decode layer lets its successor launch (programmatic dependent launch):
 * QKV and attention after their PDL wait, O at its start, gate/up and down after their wait
 * ("LLELL"). Measured end to end on an H100, 64/64 decode, against all-at-start and other
 * placements: 1071 tok/s vs 1049 for the next best (kernels/dev/README.md, 2026-11). */
enum {
    PDL_QKV = KCUDA_PDL_LATE,
    PDL_ATTN = KCUDA_PDL_LATE,
    PDL_O = KCUDA_PDL_EARLY,
    PDL_GATE_UP = KCUDA_PDL_LATE,
    PDL_DOWN = KCUDA_PDL_LATE,
};

/* The launch option of a decode kernel: opt when the step is chained with PDL, else plain. */
static int pdl_opt(int pdl, int opt) { return pdl ? opt : KCUDA_PDL_OFF; }

static int layer_err(Err *err, const char *phase, int l, const char *step) {
    return err_set(err, "cuda: %s layer %d, %s: %s", phase, l, step, kcuda_last_error());
}

/* One decode layer, five kernels: QKV (fused RMSNorm + int8), attention (RoPE, KV write, split
 * over the context; the kernel by attn, ATTN_*), O + residual, gate/up with act(g)*u, down +
 * residual. pdl = 0 launches every kernel plainly; otherwise each lets its successor in where
 * PDL_* says. */
static int decode_layer(CudaBackend *b, int l, int attn, int pdl, Err *err) {
    const CudaLayer *L = &b->L[l];
    const float eps = b->cfg.norm_eps;
    int rc = kcuda_w2a8_gemv(&L->qkv, b->d_x, b->dim, L->attn_norm, eps, NULL, NULL, NULL, KCUDA_EP_F32, b->d_qkv,
                             pdl_opt(pdl, PDL_QKV), b->st);
    if (rc) return layer_err(err, "decode", l, "QKV projection");
    rc = (attn == ATTN_HEAD ? kcuda_attn_decode_head : kcuda_attn_decode)(
        &b->ash, b->d_qkv, L->kc, L->vc, b->d_io + 1, b->d_att, b->d_part, b->d_count, pdl_opt(pdl, PDL_ATTN), b->st);
    if (rc) return layer_err(err, "decode", l, "attention");
    rc = kcuda_w2a8_gemv(&L->o, b->d_att, b->q_dim, L->attn_sub_norm, eps, NULL, NULL, NULL, KCUDA_EP_RESID, b->d_x,
                         pdl_opt(pdl, PDL_O), b->st);
    if (rc) return layer_err(err, "decode", l, "output projection");
    rc = kcuda_w2a8_gemv(&L->gu, b->d_x, b->dim, L->ffn_norm, eps, NULL, NULL, NULL, KCUDA_EP_GLU, b->d_gu,
                         pdl_opt(pdl, PDL_GATE_UP), b->st);
    if (rc) return layer_err(err, "decode", l, "gate/up projection");
    rc = kcuda_w2a8_gemv(&L->down, b->d_gu, b->ffn, L->ffn_sub_norm, eps, NULL, NULL, NULL, KCUDA_EP_RESID, b->d_x,
                         pdl_opt(pdl, PDL_DOWN), b->st);
    if (rc) return layer_err(err, "decode", l, "down projection");
    return 0;
}

/* The screened lm_head on d_x, enqueued: the int8 bounds, then the exact rows for the m = d_io[2]
 * best (decode steps and the prompt's last position; phase names the caller in errors). */
static int screened_head(CudaBackend *b, int pdl, const char *phase, Err *err) {
    int nb = 0;
    if (kcuda_screen_bounds(b->d_lm_q, b->d_lm_s, b->d_lm_b, b->vocab, b->dim, b->d_x, b->d_out_norm, b->cfg.norm_eps,
                            b->d_lohi, b->d_bmax, &nb, pdl, b->st))
        return err_set(err, "cuda: %s: lm_head screen: %s", phase, kcuda_last_error());
    if (nb != b->screen_nb)
        return err_set(err, "cuda: %s: lm_head screen launched %d warps, expected %d", phase, nb, b->screen_nb);
    if (kcuda_screen_exact(b->out_type, b->d_outw, b->vocab, b->dim, b->d_x, b->d_out_norm, b->cfg.norm_eps, b->d_lohi,
                           b->d_bmax, b->screen_nb, b->d_io + 2, NULL, b->d_logits, b->d_best, b->d_argmax, NULL, pdl,
                           b->st))
        return err_set(err, "cuda: %s: lm_head exact rows: %s", phase, kcuda_last_error());
    return 0;
}

/* Enqueues one decode step: the token in d_io[0] and its position in d_io[1] (device memory) in,
 * the logits and the greedy pick (d_argmax) out: embedding, the layers (attention kernel attn:
 * ATTN_*), the lm_head (screened: the int8 bounds and the exact rows, else the full head). */
static int enqueue_decode(CudaBackend *b, int attn, int pdl, int screened, Err *err) {
    const int early = pdl_opt(pdl, KCUDA_PDL_EARLY);
    if (kcuda_embed(b->emb_type, b->d_emb, b->vocab, b->dim, b->d_io, 1, b->d_x, b->d_err, early, b->st))
        return kc_err(err, "decode: embedding");
    for (int l = 0; l < b->cfg.n_layers; l++)
        if (decode_layer(b, l, attn, pdl, err)) return -1;
    if (!screened) {
        if (lm_head(b, b->d_x, early)) return kc_err(err, "decode: lm_head");
        return 0;
    }
    return screened_head(b, early, "decode", err);
}

static int capture_graph(CudaBackend *b, int attn, int screened, Err *err) {
    for (int attempt = 0; attempt < 2; attempt++) {
        const int pdl = attempt == 0 ? b->pdl : 0;
        cudaGraph_t g = NULL;
        cudaError_t e = cudaStreamBeginCapture(b->st, cudaStreamCaptureModeThreadLocal);
        if (e != cudaSuccess) return cuda_err(err, "begin capture", e);
        /* token and position in from pinned memory, the greedy pick out: one small copy each
         * way inside the graph, so a step costs the host one launch and one wait. */
        int rc = 0;
        if ((e = cudaMemcpyAsync(b->d_io, b->h_pin, 3 * sizeof(int), cudaMemcpyHostToDevice, b->st)) != cudaSuccess)
            rc = cuda_err(err, "capturing the token copy", e);
        if (!rc) rc = enqueue_decode(b, attn, pdl, screened, err);
        if (!rc && (e = cudaMemcpyAsync(b->h_pin + 3, b->d_argmax, sizeof(int), cudaMemcpyDeviceToHost, b->st)) != cudaSuccess)
            rc = cuda_err(err, "capturing the result copy", e);
        e = cudaStreamEndCapture(b->st, &g);
        if (rc) {
            if (g) cudaGraphDestroy(g);
            return -1;
        }
        if (e == cudaSuccess) {
            e = instantiate_graph(b, &b->graph[attn][screened], g);
            cudaGraphDestroy(g);
            if (e == cudaSuccess) {
                b->pdl = pdl;
                return 0;
            }
        }
        cudaGetLastError();
        if (!pdl) return cuda_err(err, "capturing the decode graph", e);
    }
    return err_set(err, "cuda: capturing the decode graph failed");
}

/* Prefill launches plainly: chaining its ~10 kernels per layer with PDL made prefill 512
 * slower on the H100 (8.75 vs 8.27 ms, bench 2026-11-23). */
enum { PREFILL_PDL = KCUDA_PDL_OFF };

/* One prefill projection over T rows: per-row RMSNorm (norm_w NULL: none) + int8 quantization of
 * x [T][k_in] into the prefill scratch, then the GEMM into out (rows of ld_out). */
static int prefill_linear(CudaBackend *b, const KcudaTernary *w, const float *x, int k_in, const float *norm_w, int T,
                          KcudaEpilogue ep, float *out, int ld_out, int l, const char *step, Err *err) {
    if (kcuda_rmsnorm_quant_prefill(x, T, k_in, k_in, w->k_pad, norm_w, b->cfg.norm_eps, b->p_q, b->p_s, b->p_qsum,
                                    PREFILL_PDL, b->st))
        return err_set(err, "cuda: prefill layer %d, %s, input norm + int8: %s", l, step, kcuda_last_error());
    if (kcuda_w2a8_gemm(w, b->p_q, b->p_s, b->p_qsum, T, ep, out, ld_out, PREFILL_PDL, b->st))
        return layer_err(err, "prefill", l, step);
    return 0;
}

/* One prefill layer over T tokens at positions pos0..: the same five steps as decode_layer. */
static int prefill_layer(CudaBackend *b, int l, int T, int pos0, Err *err) {
    const CudaLayer *L = &b->L[l];
    if (prefill_linear(b, &L->qkv, b->p_x, b->dim, L->attn_norm, T, KCUDA_EP_F32, b->p_qkv, b->qkv_dim, l,
                       "QKV projection", err))
        return -1;
    int rc;
    if (b->wide_attn)
        rc = kcuda_attn_prefill_wide(&b->ash, b->p_qkv, b->qkv_dim, T, pos0, L->kc, L->vc, b->p_att, b->st);
    else
        rc = kcuda_attn_prefill(&b->ash, b->p_qkv, b->qkv_dim, T, pos0, L->kc, L->vc, b->p_att, PREFILL_PDL, b->st);
    if (rc) return layer_err(err, "prefill", l, "attention");
    if (prefill_linear(b, &L->o, b->p_att, b->q_dim, L->attn_sub_norm, T, KCUDA_EP_RESID, b->p_x, b->dim, l,
                       "output projection", err))
        return -1;
    if (prefill_linear(b, &L->gu, b->p_x, b->dim, L->ffn_norm, T, KCUDA_EP_GLU, b->p_gu, b->ffn, l,
                       "gate/up projection", err))
        return -1;
    if (prefill_linear(b, &L->down, b->p_gu, b->ffn, L->ffn_sub_norm, T, KCUDA_EP_RESID, b->p_x, b->dim, l,
                       "down projection", err))
        return -1;
    return 0;
}

/* The head of the prompt's last position: its hidden state x into d_x (where decode's head, the
 * sampler graphs' exact pass and logits() read it), then the screened head for the rows the next
 * draw is predicted to need, as a decode step takes it (decode_plain), else the whole head. The
 * whole f16 head is 224 us on an H100, the int8 screen 111 us (kernels/dev/README.md). */
static int prefill_head(CudaBackend *b, const float *x, Err *err) {
    const int screened = b->screen && !b->logits_asked && b->m_pred <= b->screen_nb;
    b->logits_asked = 0;
    cudaError_t e = cudaMemcpyAsync(b->d_x, x, (size_t)b->dim * sizeof(float), cudaMemcpyDeviceToDevice, b->st);
    if (e != cudaSuccess) return cuda_err(err, "prefill: the last position's hidden state", e);
    b->h_pin[2] = screened ? b->m_pred : KCUDA_SCREEN_FULL; /* read by the exact pass through d_io[2] */
    if ((e = cudaMemcpyAsync(b->d_io + 2, b->h_pin + 2, sizeof(int), cudaMemcpyHostToDevice, b->st)) != cudaSuccess)
        return cuda_err(err, "prefill: the screened rows", e);
    if (screened) {
        if (screened_head(b, PREFILL_PDL, "prefill", err)) return -1;
    } else if (lm_head(b, b->d_x, PREFILL_PDL)) {
        return kc_err(err, "prefill: lm_head");
    }
    b->logits_full = !screened;
    b->m_served = screened ? b->m_pred : KCUDA_SCREEN_FULL;
    b->last_screened = screened;
    return 0;
}

/* T <= PREFILL_MAX tokens at positions pos0..: embedding, the layers, then the lm_head on the
 * last token (when `last`: prefill_head) or on every token (all_logits, copied out per token). */
static int prefill_chunk(CudaBackend *b, const int32_t *tokens, int T, int pos0, float *all_logits, int last,
                         Err *err) {
    cudaError_t e = cudaMemcpyAsync(b->p_tok, tokens, (size_t)T * 4, cudaMemcpyHostToDevice, b->st);
    if (e != cudaSuccess) return cuda_err(err, "copying tokens", e);
    if (kcuda_embed(b->emb_type, b->d_emb, b->vocab, b->dim, b->p_tok, T, b->p_x, b->d_err, PREFILL_PDL, b->st))
        return kc_err(err, "prefill: embedding");
    for (int l = 0; l < b->cfg.n_layers; l++)
        if (prefill_layer(b, l, T, pos0, err)) return -1;
    if (!all_logits) return last ? prefill_head(b, b->p_x + (size_t)(T - 1) * b->dim, err) : 0;
    for (int t = 0; t < T; t++) {
        if (lm_head(b, b->p_x + (size_t)t * b->dim, PREFILL_PDL)) return kc_err(err, "prefill: lm_head");
        e = cudaMemcpyAsync(all_logits + (size_t)t * b->vocab, b->d_logits, (size_t)b->vocab * 4,
                            cudaMemcpyDeviceToHost, b->st);
        if (e != cudaSuccess) return cuda_err(err, "copying logits", e);
    }
    b->logits_full = 1;
    b->m_served = KCUDA_SCREEN_FULL;
    b->last_screened = 0;
    return 0;
}

/* One decode step the plain way: token and position in through h_pin, the decode graph, the
 * greedy pick out (and with all_logits the whole head, copied out). */
static int decode_plain(CudaBackend *b, int32_t tok, int pos, float *all_logits, Err *err) {
    cudaError_t e;
    /* the screened head unless these logits are wanted whole (all_logits, logits() last step)
     * or the last draw needed every row (or more than the screen's warps can bound) */
    const int screened = b->screen && !all_logits && !b->logits_asked && b->m_pred <= b->screen_nb;
    b->logits_asked = 0;
    const int attn = pos < b->head_until ? ATTN_HEAD : ATTN_GROUP;
    if (!b->graph[attn][screened] && capture_graph(b, attn, screened, err)) return -1;
    if (b->inflight && (e = cudaStreamSynchronize(b->st)) != cudaSuccess) return cuda_err(err, "decode", e);
    b->h_pin[0] = tok;
    b->h_pin[1] = pos;
    b->h_pin[2] = screened ? b->m_pred : KCUDA_SCREEN_FULL;
    if ((e = cudaGraphLaunch(b->graph[attn][screened], b->st)) != cudaSuccess) return cuda_err(err, "decode graph", e);
    b->inflight = 1;
    b->cur_tok = tok;
    b->cur_pos = pos;
    b->cur_ahead = 0;
    b->logits_full = !screened;
    b->m_served = screened ? b->m_pred : KCUDA_SCREEN_FULL;
    b->last_screened = screened;
    if (all_logits) {
        if ((e = cudaMemcpyAsync(all_logits, b->d_logits, (size_t)b->vocab * 4, cudaMemcpyDeviceToHost, b->st)) !=
            cudaSuccess)
            return cuda_err(err, "copying logits", e);
        if ((e = cudaStreamSynchronize(b->st)) != cudaSuccess) return cuda_err(err, "decode", e);
    }
    return 0;
}

/* ---- decoding ahead ----------------------------------------------------------------------------
 * Once a draw is made on the device with settings it can mirror, the backend queues the NEXT
 * decode step at once, before the host has read the token: one graph (ahead_graph) decodes the
 * token the last draw left in d_io[0] at position d_io[1], draws with the arguments the device
 * made (kcuda_draw_advance repeats the host sampler's steps: the used uniform, the token into
 * the penalty window), and leaves the next step's inputs. The caller's eval() of that token at
 * that position then adopts the queued step; its sample() checks that the host sampler reached
 * the state the device assumed (the arguments' fingerprint and the settings), queues the step
 * after, and waits for the current draw only. So the device no longer waits between tokens
 * for the host to wake, read the token, and launch. Measured on an H100 (2026-12-06, CUPTI
 * timeline of `-p` with the defaults, kernels/dev/run_timeline_device.sh): 134-143 us between
 * steps before, 1.7 us after; `-p`, 500 tokens, defaults 1168 -> 1222 tok/s, greedy 1229 -> 1257
 * (alternated with the previous build in one call).
 * Anything else (another token or position, a prefill, other settings or another sampler,
 * logits() once the next step is queued) settles: waits for the stream and forgets the queued
 * step; its KV row lies at a position the caller has not evaluated, which the next step there
 * writes again. */

/* The draw an ahead pipeline makes with these settings: the decode graph's argmax only where no
 * later draw can have a penalty (an empty window now may fill). win_cap: the window's slots. */
static int ahead_kind_for(const SamplerParams *p, int vocab, int win_cap) {
    const int pen_off = p->repeat_penalty == 1.0f || p->repeat_penalty <= 0.0f || win_cap <= 0;
    if (!(p->temperature > 0.0f) && pen_off) return AHEAD_GREEDY;
    switch (sample_graph_for(p, vocab)) {
    case SAMPLE_ARGMAX: return AHEAD_ARGMAX;
    case SAMPLE_TOPK: return AHEAD_TOPK;
    default: return AHEAD_SORTED;
    }
}

/* decode (token and position from d_io, the screened head for d_io[2] rows) + the draw + the
 * next step's inputs; no copies. */
static int capture_ahead(CudaBackend *b, int attn, int screened, int kind, Err *err) {
    for (int attempt = 0; attempt < 2; attempt++) {
        const int pdl = attempt == 0 ? b->pdl : 0;
        cudaGraph_t g = NULL;
        cudaError_t e = cudaStreamBeginCapture(b->st, cudaStreamCaptureModeThreadLocal);
        if (e != cudaSuccess) return cuda_err(err, "begin capture", e);
        int rc = enqueue_decode(b, attn, pdl, screened, err);
        const int32_t *ids = (const int32_t *)(b->d_sargs + 1);
        int krc = 0;
        if (!rc) {
            switch (kind) {
            case AHEAD_GREEDY: break;
            case AHEAD_ARGMAX:
                krc = kcuda_sample_argmax(b->d_logits, b->vocab, b->d_sargs, ids, b->d_sscratch, b->sscratch_bytes, b->d_sout, b->st);
                break;
            case AHEAD_TOPK:
                krc = kcuda_sample_topk(b->d_logits, b->vocab, b->d_sargs, ids, b->d_sscratch, b->sscratch_bytes, b->d_sout, b->st);
                break;
            default:
                krc = kcuda_sample_sorted(b->d_logits, b->vocab, b->d_sargs, ids, b->d_sscratch, b->sscratch_bytes, b->d_sout, b->st);
                break;
            }
            if (!krc)
                krc = kcuda_draw_advance(kind == AHEAD_GREEDY ? b->d_argmax : b->d_sout, kind == AHEAD_GREEDY, b->d_dstate,
                                         b->d_sargs, (int32_t *)ids, b->d_io, b->vocab, b->d_ring, b->st);
            if (krc) rc = kc_err(err, "capturing the draw ahead");
        }
        e = cudaStreamEndCapture(b->st, &g);
        if (rc) {
            if (g) cudaGraphDestroy(g);
            return -1;
        }
        if (e == cudaSuccess) {
            e = instantiate_graph(b, &b->ahead_graph[attn][screened][kind], g);
            cudaGraphDestroy(g);
            if (e == cudaSuccess) return 0;
        }
        cudaGetLastError();
        if (!pdl) return cuda_err(err, "capturing the decode-ahead graph", e);
    }
    return err_set(err, "cuda: capturing the decode-ahead graph failed");
}

/* Waits for the queue and forgets the step queued ahead. */
static int ahead_settle(CudaBackend *b, Err *err) {
    if (!b->ahead && !b->spec_queued) return 0;
    b->ahead = 0;
    b->spec_queued = 0;
    b->cur_ahead = 0;
    cudaError_t e = cudaStreamSynchronize(b->st);
    b->inflight = 0;
    return e == cudaSuccess ? 0 : cuda_err(err, "decode ahead", e);
}

/* Queues the step at pos whose input is the draw before it (sequence number seq). */
static int ahead_queue(CudaBackend *b, int pos, int seq, Err *err) {
    const int attn = pos < b->head_until ? ATTN_HEAD : ATTN_GROUP;
    cudaGraphExec_t *g = &b->ahead_graph[attn][b->ahead_screened][b->ahead_kind];
    if (!*g && capture_ahead(b, attn, b->ahead_screened, b->ahead_kind, err)) return -1;
    cudaError_t e;
    if ((e = cudaGraphLaunch(*g, b->st)) != cudaSuccess || (e = cudaEventRecord(b->ev[seq % KCUDA_DRAW_RING], b->st)) != cudaSuccess)
        return cuda_err(err, "decode-ahead graph", e);
    b->spec_queued = 1;
    b->spec_seq = seq;
    b->spec_pos = pos;
    return 0;
}

/* After a draw of token tok for the step at cur_pos (made the plain way, the uniform already
 * consumed on the host when used): uploads the host sampler's state, lets the device append tok
 * as sampler_accept will, and queues the next step. Returns 0 also where it does not start (the
 * settings, the context's end): decoding then goes on the plain way. */
static int ahead_start(CudaBackend *b, Sampler *s, int32_t tok, Err *err) {
    if (!s || b->no_ahead || b->cur_pos < 0 || b->cur_pos + 1 >= b->ctx) return 0;
    const SamplerParams *p = sampler_params(s);
    KcudaSampleArgs *a = b->h_sargs; /* the sampler graph that read it has completed */
    const int np = cuda_sample_args(s, a, (int32_t *)(a + 1), SAMPLE_MAX_PEN);
    AheadUpload *u = b->h_up;
    if (np < 0 || sampler_draw_state(s, (uint64_t *)u->st.rng, u->st.window, KCUDA_DRAW_WINDOW_MAX, &u->st.win_cap,
                                     &u->st.win_n, &u->st.win_head))
        return 0;
    u->st.step = 0;
    /* the screened head where the largest m this window can ask for fits the screen */
    KcudaSampleArgs worst = *a;
    worst.n_pen = u->st.win_cap;
    const int kind = ahead_kind_for(p, b->vocab, u->st.win_cap);
    const int screened = b->screen && kcuda_screen_m(&worst, b->vocab) <= b->screen_nb;
    u->io[0] = tok, u->io[1] = b->cur_pos, u->io[2] = KCUDA_SCREEN_FULL;
    u->draw[0] = tok, u->draw[1] = 0, u->draw[2] = 0;
    cudaError_t e;
    if ((e = cudaMemcpyAsync(b->d_up, u, sizeof *u, cudaMemcpyHostToDevice, b->st)) != cudaSuccess ||
        (e = cudaMemcpyAsync(b->d_sargs, a, sizeof *a, cudaMemcpyHostToDevice, b->st)) != cudaSuccess ||
        (e = cudaMemcpyAsync(b->d_io, b->d_up->io, sizeof u->io, cudaMemcpyDeviceToDevice, b->st)) != cudaSuccess)
        return cuda_err(err, "starting decode ahead", e);
    if (kcuda_draw_advance(b->d_up->draw, 0, b->d_dstate, b->d_sargs, (int32_t *)(b->d_sargs + 1), b->d_io, b->vocab,
                           b->d_ring, b->st))
        return kc_err(err, "starting decode ahead");
    if ((e = cudaEventRecord(b->ev[0], b->st)) != cudaSuccess) return cuda_err(err, "starting decode ahead", e);
    b->ahead = 1;
    b->ahead_s = s;
    b->ahead_p = *p;
    b->ahead_kind = kind;
    b->ahead_screened = screened;
    b->last_drawn = tok;
    b->inflight = 1;
    return ahead_queue(b, b->cur_pos + 1, 1, err);
}

/* The current step was queued ahead: checks that the host sampler s is in the state the device
 * assumed for its draw, queues the next step, waits for this draw and returns its token (1).
 * Returns 0 when s does not match (nothing taken: the caller settles and redoes the step), -1 on
 * an error. */
static int ahead_take(CudaBackend *b, Sampler *s, int32_t *tok, Err *err) {
    cudaError_t e;
    const int q = b->cur_seq;
    if (s != b->ahead_s || memcmp(sampler_params(s), &b->ahead_p, sizeof b->ahead_p) != 0) return 0;
    /* the arguments the device made for this draw: in the previous draw's slot */
    if ((e = cudaEventSynchronize(b->ev[(q - 1) % KCUDA_DRAW_RING])) != cudaSuccess) return cuda_err(err, "decode ahead", e);
    KcudaSampleArgs *a = b->h_sargs; /* staging only: no copy reads it while a pipeline runs */
    if (cuda_sample_args(s, a, (int32_t *)(a + 1), SAMPLE_MAX_PEN) < 0) return 0;
    int fp[4];
    kcuda_draw_fingerprint(a, (const int32_t *)(a + 1), fp);
    if (memcmp(fp, b->h_ring + KCUDA_DRAW_SLOT * ((q - 1) % KCUDA_DRAW_RING) + KCUDA_DRAW_FP_N, sizeof fp) != 0) return 0;
    if (b->cur_pos + 1 < b->ctx && !b->logits_asked && ahead_queue(b, b->cur_pos + 1, q + 1, err)) return -1;
    if ((e = cudaEventSynchronize(b->ev[q % KCUDA_DRAW_RING])) != cudaSuccess) return cuda_err(err, "decode ahead", e);
    const int *slot = b->h_ring + KCUDA_DRAW_SLOT * (q % KCUDA_DRAW_RING);
    if (slot[KCUDA_DRAW_SEQ] != q + 1) return err_set(err, "cuda: decode ahead: draw %d not recorded", q);
    if (slot[KCUDA_DRAW_DECLINED]) return err_set(err, "cuda: sample: the device sampler declined its settings");
    if (slot[KCUDA_DRAW_USED]) sampler_skip_uniform(s);
    *tok = slot[KCUDA_DRAW_TOKEN];
    b->last_drawn = *tok;
    b->cur_ahead = 0;
    if (!b->spec_queued) {
        b->ahead = 0;
        b->inflight = 0;
    }
    return 1;
}

static int cuda_eval(void *vb, const int32_t *tokens, int n, int pos, float *all_logits, Err *err) {
    CudaBackend *b = vb;
    if (!tokens || n <= 0) return err_set(err, "cuda: eval needs at least one token");
    if (pos < 0 || pos > b->ctx - n)
        return err_set(err, "cuda: positions %d..%d beyond the context of %d tokens", pos, pos + n - 1, b->ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= b->vocab)
            return err_set(err, "cuda: token id %d out of range (vocab %d)", tokens[i], b->vocab);
    b->logits_valid = 0;
    cudaError_t e;
    if (n == 1 && !all_logits && b->spec_queued && pos == b->spec_pos && tokens[0] == b->last_drawn) {
        /* the step queued ahead: adopted as it runs */
        b->n_adopted++;
        b->spec_queued = 0;
        b->cur_ahead = 1;
        b->cur_seq = b->spec_seq;
        b->cur_tok = tokens[0];
        b->cur_pos = pos;
        b->logits_asked = 0;
        b->logits_full = !b->ahead_screened;
        b->m_served = b->ahead_screened ? 0 : KCUDA_SCREEN_FULL;
        b->last_screened = b->ahead_screened;
        return 0;
    }
    if (ahead_settle(b, err)) return -1;
    if (n == 1) return decode_plain(b, tokens[0], pos, all_logits, err);
    b->cur_pos = -1; /* the prefill's last token: no decode step to redo (ahead_start waits) */
    /* prefill_head writes h_pin[2], which a decode step still queued may read */
    if (b->inflight && (e = cudaStreamSynchronize(b->st)) != cudaSuccess) return cuda_err(err, "prefill", e);
    b->inflight = 0;
    for (int done = 0; done < n; done += PREFILL_MAX) {
        const int T = n - done < PREFILL_MAX ? n - done : PREFILL_MAX;
        if (prefill_chunk(b, tokens + done, T, pos + done, all_logits ? all_logits + (size_t)done * b->vocab : NULL,
                          done + T == n, err))
            return -1;
        /* tokens are copied from pageable memory (staged at once), so the loop may go on. */
    }
    /* with all_logits the full head ran: a sampler graph's screen pass has nothing to add
     * (KCUDA_SCREEN_FULL is 0x7f in every byte) */
    if ((all_logits && (e = cudaMemsetAsync(b->d_io + 2, 0x7f, sizeof(int), b->st)) != cudaSuccess) ||
        (e = cudaMemcpyAsync(b->h_pin + 3, b->d_argmax, sizeof(int), cudaMemcpyDeviceToHost, b->st)) != cudaSuccess ||
        (e = cudaStreamSynchronize(b->st)) != cudaSuccess)
        return cuda_err(err, "prefill", e);
    return 0;
}

static const float *cuda_logits(void *vb) {
    CudaBackend *b = vb;
    b->logits_asked = 1;
    if (!b->logits_valid && b->spec_queued) {
        /* the step queued ahead overwrites this step's hidden state: this step again */
        Err e2 = {{0}};
        b->n_redone++;
        if (ahead_settle(b, &e2) || decode_plain(b, b->cur_tok, b->cur_pos, NULL, &e2)) return NULL;
    }
    if (!b->logits_valid) {
        /* after a screened step: the full head on the same hidden state, on demand */
        if (!b->logits_full) {
            if (lm_head(b, b->d_x, KCUDA_PDL_OFF) || cudaMemsetAsync(b->d_io + 2, 0x7f, sizeof(int), b->st) != cudaSuccess)
                return NULL;
            b->logits_full = 1;
            b->m_served = KCUDA_SCREEN_FULL;
        }
        if (cudaMemcpyAsync(b->h_logits, b->d_logits, (size_t)b->vocab * 4, cudaMemcpyDeviceToHost, b->st) !=
                cudaSuccess ||
            cudaStreamSynchronize(b->st) != cudaSuccess)
            return NULL;
        b->inflight = 0;
        b->logits_valid = 1;
    }
    return b->h_logits;
}

/* Packs sampler s's settings, its penalty ids (at most max_ids, into ids) and its next uniform
 * for the device sampler (kcuda_sample_*); returns the number of ids, or -1 when the penalty
 * window holds more distinct tokens than max_ids (the host then samples). The one packing the
 * backend and its test use. */
int cuda_sample_args(Sampler *s, KcudaSampleArgs *a, int32_t *ids, int max_ids) {
    const SamplerParams *p = sampler_params(s);
    const int np = sampler_penalty_ids(s, ids, max_ids);
    if (np < 0) return -1;
    a->temperature = p->temperature;
    a->top_k = p->top_k;
    a->top_p = p->top_p;
    a->min_p = p->min_p;
    a->log_min_p = p->min_p > 0.0f ? logf(p->min_p) : 0.0f;
    a->penalty = p->repeat_penalty;
    a->n_pen = np;
    a->inv_temp = p->temperature > 0.0f ? 1.0 / (double)p->temperature : 0.0;
    a->u01 = p->temperature > 0.0f ? sampler_peek_uniform(s) : 0.0;
    return np;
}

/* Greedy without a penalty: the decode graph's argmax (one int already on its way). Anything
 * else: the sampler graph for the settings after the logits, with the host sampler's penalty ids
 * and next uniform, so it draws what sampler_sample() would from the same logits. */
/* The plain draw: greedy without a penalty from the decode graph's pick, else the sampler graph
 * for the settings. */
static int sample_plain(CudaBackend *b, Sampler *s, int32_t *tok, Err *err) {
    const SamplerParams *p = s ? sampler_params(s) : NULL;
    KcudaSampleArgs *a = b->h_sargs; /* not read by any work in flight: the last sampler graph was waited for */
    const int np = p ? cuda_sample_args(s, a, (int32_t *)(a + 1), SAMPLE_MAX_PEN) : 0;
    /* the next step screens for this draw's need (settings rarely change within a reply) */
    b->m_pred = np < 0 ? KCUDA_SCREEN_FULL : p ? kcuda_screen_m(a, b->vocab) : 1;
    if (np < 0) return 0; /* a penalty window wider than the device list: the host samples */
    cudaError_t e;
    if ((!p || !(p->temperature > 0.0f)) && np == 0) {
        if ((e = cudaStreamSynchronize(b->st)) != cudaSuccess) return cuda_err(err, "greedy sample", e);
        b->inflight = 0;
        *tok = b->h_pin[3];
        return 1;
    }
    /* the exact pass only where this draw needs rows the decode step did not serve (it checks
     * that again on the device, from d_io[2]) */
    const int need = kcuda_screen_m(a, b->vocab), pass = b->screen && need > b->m_served;
    if (pass) b->m_served = need;
    /* each sampler graph is captured when a draw first needs it, not at creation: instantiating
     * the sort's graph grows the context's stack reserve to its pick kernel's 72-byte frame
     * (+16 MiB on an H100, whose reserve moves in 4 MiB steps; the other kernels' frames are at
     * most 8 bytes) and loads the sort's kernels, which the default settings and greedy never run */
    const SampleGraph which = sample_graph_for(p, b->vocab);
    if (!b->sample_graph[which][pass] && capture_sampler(b, which, pass, err)) return -1;
    if ((e = cudaGraphLaunch(b->sample_graph[which][pass], b->st)) != cudaSuccess ||
        (e = cudaStreamSynchronize(b->st)) != cudaSuccess)
        return cuda_err(err, "sample", e);
    b->inflight = 0;
    if (b->h_pin[6]) return err_set(err, "cuda: sample: the device sampler declined its settings");
    if (b->h_pin[5]) sampler_skip_uniform(s);
    *tok = b->h_pin[4];
    return 1;
}

static int screen_probe(CudaBackend *b, float *lohi, int *exact_rows) {
    if (cudaStreamSynchronize(b->st) != cudaSuccess) return -1;
    b->inflight = 0;
    if (exact_rows) *exact_rows = 0;
    if (!b->screen || !b->last_screened || b->logits_full) return 0;
    if (lohi && cudaMemcpy(lohi, b->d_lohi, (size_t)b->vocab * 2 * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
        return -1;
    if (exact_rows) {
        /* the logits' rows other than -inf (an exact -inf also counts as left out: rare) */
        if (cudaMemcpy(b->h_logits, b->d_logits, (size_t)b->vocab * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
            return -1;
        for (int r = 0; r < b->vocab; r++) *exact_rows += b->h_logits[r] != -INFINITY;
    }
    return 1;
}

static int cuda_sample(void *vb, Sampler *s, int32_t *tok, Err *err) {
    CudaBackend *b = vb;
    if (b->cur_ahead) {
        const int rc = ahead_take(b, s, tok, err);
        if (rc) return rc;
        /* the host sampler is not where the device assumed: this step again, the plain way */
        b->n_redone++;
        if (ahead_settle(b, err) || decode_plain(b, b->cur_tok, b->cur_pos, NULL, err)) return -1;
    } else if (b->spec_queued) {
        /* a second draw for a step whose successor is queued: settle, this step again */
        b->n_redone++;
        if (ahead_settle(b, err) || decode_plain(b, b->cur_tok, b->cur_pos, NULL, err)) return -1;
    }
    const int rc = sample_plain(b, s, tok, err);
    if (rc == 1 && ahead_start(b, s, *tok, err)) return -1;
    return rc;
}

/* BackendOps.memory: every device allocation by kind, as sized at load (the graphs as measured
 * when instantiated). */
static int cuda_memory(void *vb, InferMemPart *parts, int cap) {
    CudaBackend *b = vb;
    snprintf(b->graphs_what, sizeof b->graphs_what, "CUDA graphs (%d), with the kernel code and stack they load",
             b->graphs);
    const InferMemPart all[] = {
        {"ternary weights (2-bit)", b->n_tern},
        {b->d_outw == b->d_emb ? "embedding = lm_head (float)" : "embedding (float)", b->n_emb},
        {"lm_head (float, untied)", b->n_out},
        {b->lm_int8 ? "int8 lm_head (rows, scales)" : "int8 lm_head screen (rows, scales, bounds)", b->n_lm_q},
        {"KV cache (f16)", b->n_kv},
        {"norms + RoPE table", b->n_dense},
        {"scratch: prefill batch", b->n_scratch_prefill},
        {"scratch: decode (activations, attention partials)", b->n_scratch_decode},
        {"scratch: lm_head screen (bounds)", b->n_scratch_screen},
        {"scratch: sampler, draw state", b->n_scratch_sampler},
        {b->graphs_what, b->n_graphs},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0] && n < cap; i++)
        if (all[i].bytes || all[i].what == b->graphs_what) parts[n++] = all[i];
    return n;
}

int cuda_screen_probe(void *vb, float *lohi, int *exact_rows) {
    CudaBackend *b = vb;
    if (b->spec_queued) { /* the queued step would overwrite what the probe reads */
        Err e2 = {{0}};
        b->n_redone++;
        if (ahead_settle(b, &e2) || decode_plain(b, b->cur_tok, b->cur_pos, NULL, &e2)) return -1;
    }
    return screen_probe(b, lohi, exact_rows);
}

void cuda_ahead_counts(void *vb, long *adopted, long *redone) {
    const CudaBackend *b = vb;
    *adopted = b->n_adopted;
    *redone = b->n_redone;
}

static void cuda_describe(void *vb, char *buf, int cap) {
    CudaBackend *b = vb;
    snprintf(buf, (size_t)cap, "%s", b->desc);
}

const BackendOps backend_cuda_ops = {
    .kind = "cuda",
    .create = cuda_create,
    .destroy = cuda_destroy,
    .eval = cuda_eval,
    .logits = cuda_logits,
    .sample = cuda_sample,
    .describe = cuda_describe,
    .eval_queues = 1, /* decode is one graph launch on the stream; sample() synchronizes */
    .memory = cuda_memory,
};

#endif /* BITNET_HAVE_CUDA */
