/* The CUDA backend (BackendOps backend_cuda_ops): uploads a Model once (ternary matrices as
 * device I2_S rows, QKV fused, gate/up interleaved), keeps an f16 KV cache, and runs
 *   - prefill (n > 1) as per-row RMSNorm+quant + W2A8 GEMM on int8 tensor cores, in chunks of
 *     PREFILL_MAX tokens, then the lm_head on the last token;
 *   - decode (n == 1) as one CUDA graph captured on first use and replayed per token: token and
 *     position are read from device memory, 5 kernels per layer (QKV GEMV with fused RMSNorm
 *     +quant, attention with RoPE + KV write, O GEMV + residual, gate/up GEMV with relu^2*up,
 *     down GEMV + residual), then the lm_head with the final norm and a greedy argmax, chained
 *     with programmatic dependent launch so each kernel's weight loads overlap the previous one;
 *     where each kernel of a layer lets its successor launch is chosen per kernel (trig).
 * Logits stay on the device until logits() asks for them; greedy sampling returns one int.
 * Compiled only with the CUDA toolkit (BITNET_HAVE_CUDA). */
#ifdef BITNET_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/w2a8.h"

enum { PREFILL_MAX = 512 };
/* Default lookahead of the decode L2 prefetch, in layers (BITNET_CUDA_PREFETCH overrides). */
#define DECODE_PREFETCH_LAYERS 0.0
/* Default trigger placement per kernel of a layer (see CudaBackend.trig); "" = global settings. */
#define DECODE_TRIGGERS "LLELL"

/* The sampler lives in another area of the tree; until it is linked in, greedy is assumed
 * only when no sampler is given. */
#pragma weak sampler_params

typedef struct {
    KcudaTernary qkv, o, gu, down;
    const float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm; /* device */
    uint16_t *kc, *vc;                                                /* [n_kv][ctx][hd] f16 */
} CudaLayer;

typedef struct {
    ModelConfig cfg;
    int ctx, dim, hd, q_dim, kv_dim, qkv_dim, ffn, vocab, kd, ko, kf;
    int pdl;
    /* decode L2 prefetch: lookahead in bytes along the weight stream (0 = off), whether the
     * stream goes on into the lm_head, and the stream's bytes (all layers' ternary matrices,
     * in the order decode reads them: one allocation, d_tern) */
    size_t pf_bytes, pf_lm_bytes, tern_bytes;
    /* lab timeline (BITNET_CUDA_TRACE=file): 3 slots per decode kernel, see kcuda_set_trace */
    unsigned long long *d_trace;
    int n_trace;
    /* trigger placement per kernel of a layer (QKV, attention, O, gate/up, down): 'E' the next
     * kernel may launch at this one's start, 'L' after its PDL wait, 'M' after its main work
     * (dot products / softmax), other = the global setting (BITNET_CUDA_TRIGGER overrides
     * DECODE_TRIGGERS) */
    char trig[6];
    /* per kernel of a layer, 'P': this kernel prefetches into L2 the whole weights of the next
     * GEMV of the chain (BITNET_CUDA_PREFETCH_NEXT; lab) */
    char pf_next[6];
    cudaStream_t st;
    CudaLayer *L;
    KcudaAttnShape ash;
    KcudaDtype emb_type, out_type;
    const void *d_emb, *d_outw;
    /* the optional int8 lm_head (InferOptions.lm_head_int8): rows quantized at load, one f32
     * scale per row; replaces d_outw in decode and prefill (d_outw is then freed unless the
     * embedding shares it) */
    int8_t *d_lm_q;
    float *d_lm_s;
    const float *d_out_norm;
    /* one allocation each for weights, norms + rope, KV cache, scratch */
    void *d_tern, *d_dense, *d_kv, *d_scratch, *d_emb_own, *d_out_own;
    /* decode scratch */
    float *d_x, *d_qkv, *d_att, *d_gu, *d_logits, *d_part;
    int *d_io, *d_best, *d_argmax, *d_err, *d_count;
    /* prefill scratch */
    float *p_x, *p_qkv, *p_att, *p_gu, *p_s;
    int8_t *p_q;
    int32_t *p_qsum, *p_tok;
    cudaGraphExec_t graph;
    int *h_pin;        /* pinned: [0] token, [1] position (read by the graph), [2] greedy pick */
    int inflight;      /* work queued that reads h_pin[0..1] */
    float *h_logits;
    int logits_valid;
    char desc[256];
} CudaBackend;

static int cuda_err(Err *err, const char *what, cudaError_t e) {
    return err_set(err, "cuda: %s: %s", what, cudaGetErrorString(e));
}
static int kc_err(Err *err, const char *what, int rc) {
    (void)rc;
    return err_set(err, "cuda: %s: %s", what, kcuda_last_error());
}

static const char *const TRACE_NAMES[5] = {"QKV GEMV", "attention", "O GEMV", "gate/up GEMV", "down GEMV"};

/* Appends the timeline of the last decode step to the file named by BITNET_CUDA_TRACE: per kernel
 * of a layer (means over layers 1..n-1, ns): entry, wait release and end of work, each relative
 * to the end of work of the kernel before it; then the embedding and the lm_head. */
static void trace_dump(CudaBackend *b) {
    const char *path = getenv("BITNET_CUDA_TRACE");
    if (!path || !b->d_trace || !b->graph) return;
    const int n = b->n_trace, NL = b->cfg.n_layers;
    unsigned long long *h = malloc(sizeof *h * 4 * (size_t)n);
    FILE *f = h ? fopen(path, "a") : NULL;
    if (!f || cudaStreamSynchronize(b->st) != cudaSuccess ||
        cudaMemcpy(h, b->d_trace, sizeof *h * 4 * (size_t)n, cudaMemcpyDeviceToHost) != cudaSuccess) {
        if (f) fclose(f);
        free(h);
        return;
    }
    for (int k = 0; k < n; k++) h[4 * k + 2] = ~h[4 * k + 2], h[4 * k + 3] = ~h[4 * k + 3];
    const double t0 = (double)h[0];
    fprintf(f, "\n%s; prefetch %zu bytes ahead%s (mode %s); %s%s\n", b->desc, b->pf_bytes,
            b->pf_lm_bytes ? " into the lm_head" : "", getenv("BITNET_CUDA_PREFETCH_MODE") ? getenv("BITNET_CUDA_PREFETCH_MODE") : "0",
            getenv("BITNET_CUDA_TRACE_LABEL") ? getenv("BITNET_CUDA_TRACE_LABEL") : "", "");
    fprintf(f, "step %.2f us (embed entry to lm_head end); per layer kernel, mean of layers 1..%d, us after the previous kernel's end:\n",
            (h[4 * (n - 1) + 2] - t0) / 1e3, NL - 1);
    fprintf(f, "| kernel | first entry | last entry | wait released | work done | wait->done |\n|---|---:|---:|---:|---:|---:|\n");
    for (int j = 0; j < 6; j++) {
        double e = 0, e2 = 0, w = 0, d = 0;
        const int cnt = j < 5 ? NL - 1 : 1;
        for (int l = 1; l < NL || (j == 5 && l == 1); l++) {
            const int k = j < 5 ? 1 + 5 * l + j : n - 1;
            const double prev = (double)h[4 * (k - 1) + 2];
            e += ((double)h[4 * k] - prev) / cnt;
            e2 += ((double)h[4 * k + 3] - prev) / cnt;
            w += ((double)h[4 * k + 1] - prev) / cnt;
            d += ((double)h[4 * k + 2] - prev) / cnt;
            if (j == 5) break;
        }
        fprintf(f, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", j < 5 ? TRACE_NAMES[j] : "lm_head", e / 1e3, e2 / 1e3, w / 1e3,
                d / 1e3, (d - w) / 1e3);
    }
    fprintf(f, "layers: %.2f us from the embedding's end to the last layer's end (%.2f per layer)\n",
            ((double)h[4 * (n - 2) + 2] - (double)h[2]) / 1e3, ((double)h[4 * (n - 2) + 2] - (double)h[2]) / 1e3 / NL);
    fclose(f);
    free(h);
}

static void cuda_destroy(void *vb) {
    CudaBackend *b = vb;
    if (!b) return;
    trace_dump(b);
    cudaFree(b->d_trace);
    if (b->graph) cudaGraphExecDestroy(b->graph);
    cudaFree(b->d_tern);
    cudaFree(b->d_dense);
    cudaFree(b->d_kv);
    cudaFree(b->d_scratch);
    cudaFree(b->d_emb_own);
    cudaFree(b->d_out_own);
    cudaFree(b->d_lm_q);
    if (b->st) cudaStreamDestroy(b->st);
    if (b->h_pin) cudaFreeHost(b->h_pin);
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
    if (b->d_lm_q)
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
    /* The model families (ModelConfig) the kernels do not implement yet: the fused FFN
     * epilogue computes relu(g)^2 * u, and o_proj / down_proj fuse the sub-norm into their
     * input quantization. */
    if (c->ffn_act != FFN_RELU2)
        return err_set(err, "cuda: the SiLU feed-forward of %s models is not implemented on the GPU "
                            "yet (--backend cpu runs it)", c->sub_norms ? "1bitLLM" : "Llama-style");
    if (!c->sub_norms)
        return err_set(err, "cuda: plain Llama blocks without sub-norms (Llama3-8B-1.58, Falcon3, "
                            "Falcon-E) are not implemented on the GPU yet (--backend cpu runs them)");
    if (c->n_heads % c->n_kv_heads || c->n_heads / c->n_kv_heads > 8 || c->head_dim % 16 || c->head_dim > 128)
        return err_set(err, "cuda: attention shape %d/%d heads, head_dim %d unsupported (head_dim a multiple of 16 up to 128, at most 8 query heads per KV head)",
                       c->n_heads, c->n_kv_heads, c->head_dim);
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
        if (!w->attn_norm || !w->attn_sub_norm || !w->ffn_norm || !w->ffn_sub_norm)
            return err_set(err, "cuda: layer %d: missing norm weights", l);
    }
    if (!m->tok_embd.data || !m->output.data || !m->output_norm)
        return err_set(err, "cuda: missing embedding, lm_head or output norm");
    if (m->tok_embd.rows != c->vocab_size || m->tok_embd.cols != c->dim || m->output.rows != c->vocab_size ||
        m->output.cols != c->dim)
        return err_set(err, "cuda: embedding/lm_head shape does not match the config");
    return 0;
}

static int upload_ternary(KcudaTernary *t, uint8_t **cursor, const TernaryMatrix *const *parts, int n_parts,
                          int interleave, Err *err) {
    const int k_pad = parts[0]->n_in_pad;
    int rows = 0;
    for (int i = 0; i < n_parts; i++) rows += parts[i]->n_out;
    memset(t, 0, sizeof *t);
    t->d_codes = *cursor;
    t->n_out = rows;
    t->k_pad = k_pad;
    t->glu = interleave;
    t->seg_end[0] = t->seg_end[1] = rows;
    int row0 = 0;
    for (int i = 0; i < n_parts; i++) {
        const TernaryMatrix *p = parts[i];
        if (kcuda_upload_i2s(*cursor, p->codes, p->n_out, k_pad, interleave ? i : row0, interleave ? 2 : 1))
            return kc_err(err, "upload", -1);
        t->gamma[i] = p->scale;
        row0 += p->n_out;
        if (!interleave && i < 2) t->seg_end[i] = row0;
    }
    if (!interleave && n_parts == 1) t->gamma[1] = t->gamma[2] = t->gamma[0];
    *cursor += (size_t)rows * k_pad / 4;
    return 0;
}

static void *cuda_create(const Model *m, const InferOptions *o, Err *err) {
    if (kcuda_device_count() <= 0) {
        err_set(err, "cuda: no CUDA device");
        return NULL;
    }
    if (check_model(m, err)) return NULL;
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
    const char *pdl_env = getenv("BITNET_CUDA_PDL");
    b->pdl = !(pdl_env && pdl_env[0] == '0');
    cudaError_t e;
    const int NL = c->n_layers;
    if ((e = cudaStreamCreateWithFlags(&b->st, cudaStreamNonBlocking)) != cudaSuccess) {
        cuda_err(err, "stream", e);
        goto fail;
    }
    if ((e = cudaMallocHost((void **)&b->h_pin, 64)) != cudaSuccess) {
        b->h_pin = NULL;
        cuda_err(err, "pinned buffer", e);
        goto fail;
    }
    b->L = calloc((size_t)NL, sizeof *b->L);
    b->h_logits = malloc((size_t)b->vocab * sizeof(float));
    if (!b->L || !b->h_logits) {
        err_set(err, "cuda: out of memory");
        goto fail;
    }
    /* ternary weights, one allocation */
    size_t tern = 0;
    for (int l = 0; l < NL; l++) {
        const LayerWeights *w = &m->layers[l];
        tern += (size_t)(w->wq.n_out + w->wk.n_out + w->wv.n_out + 2 * w->w_gate.n_out) * b->kd / 4;
        tern += (size_t)w->wo.n_out * w->wo.n_in_pad / 4 + (size_t)w->w_down.n_out * w->w_down.n_in_pad / 4;
    }
    b->tern_bytes = tern;
    if ((e = cudaMalloc(&b->d_tern, tern)) != cudaSuccess) {
        cuda_err(err, "allocating ternary weights", e);
        goto fail;
    }
    uint8_t *cur = b->d_tern;
    for (int l = 0; l < NL; l++) {
        const LayerWeights *w = &m->layers[l];
        CudaLayer *L = &b->L[l];
        const TernaryMatrix *qkv[3] = {&w->wq, &w->wk, &w->wv};
        const TernaryMatrix *gu[2] = {&w->w_gate, &w->w_up};
        const TernaryMatrix *om[1] = {&w->wo};
        const TernaryMatrix *dm[1] = {&w->w_down};
        if (upload_ternary(&L->qkv, &cur, qkv, 3, 0, err) || upload_ternary(&L->o, &cur, om, 1, 0, err) ||
            upload_ternary(&L->gu, &cur, gu, 2, 1, err) || upload_ternary(&L->down, &cur, dm, 1, 0, err))
            goto fail;
    }
    /* norms + rope table */
    {
        const size_t per_layer = (size_t)3 * b->dim + b->ffn;
        const size_t rope_n = (size_t)b->ctx * b->hd;
        const size_t nfl = per_layer * NL + b->dim + rope_n;
        float *h = malloc(nfl * sizeof(float));
        if (!h) {
            err_set(err, "cuda: out of memory");
            goto fail;
        }
        float *p = h;
        for (int l = 0; l < NL; l++) {
            const LayerWeights *w = &m->layers[l];
            memcpy(p, w->attn_norm, b->dim * sizeof(float)), p += b->dim;
            memcpy(p, w->attn_sub_norm, b->dim * sizeof(float)), p += b->dim;
            memcpy(p, w->ffn_norm, b->dim * sizeof(float)), p += b->dim;
            memcpy(p, w->ffn_sub_norm, b->ffn * sizeof(float)), p += b->ffn;
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
        e = cudaMalloc(&b->d_dense, nfl * sizeof(float));
        if (e == cudaSuccess) e = cudaMemcpy(b->d_dense, h, nfl * sizeof(float), cudaMemcpyHostToDevice);
        free(h);
        if (e != cudaSuccess) {
            cuda_err(err, "uploading norms", e);
            goto fail;
        }
        const float *d = b->d_dense;
        for (int l = 0; l < NL; l++) {
            b->L[l].attn_norm = d, d += b->dim;
            b->L[l].attn_sub_norm = d, d += b->dim;
            b->L[l].ffn_norm = d, d += b->dim;
            b->L[l].ffn_sub_norm = d, d += b->ffn;
        }
        b->d_out_norm = d, d += b->dim;
        b->ash.d_rope = d;
    }
    b->ash.n_heads = c->n_heads;
    b->ash.n_kv = c->n_kv_heads;
    b->ash.head_dim = b->hd;
    b->ash.ctx = b->ctx;
    b->ash.rope_style = c->rope_style == ROPE_ADJACENT ? 1 : 0;
    /* embedding and lm_head (shared when tied) */
    if (dtype_of(m->tok_embd.type, &b->emb_type) || dtype_of(m->output.type, &b->out_type)) {
        err_set(err, "cuda: unsupported embedding type");
        goto fail;
    }
    {
        const size_t eb = (size_t)b->vocab * b->dim * dtype_size(b->emb_type);
        if ((e = cudaMalloc(&b->d_emb_own, eb)) != cudaSuccess ||
            (e = cudaMemcpy(b->d_emb_own, m->tok_embd.data, eb, cudaMemcpyHostToDevice)) != cudaSuccess) {
            cuda_err(err, "uploading the embedding", e);
            goto fail;
        }
        b->d_emb = b->d_emb_own;
        if (m->output.data == m->tok_embd.data && m->output.type == m->tok_embd.type) {
            b->d_outw = b->d_emb;
        } else {
            const size_t ob = (size_t)b->vocab * b->dim * dtype_size(b->out_type);
            if ((e = cudaMalloc(&b->d_out_own, ob)) != cudaSuccess ||
                (e = cudaMemcpy(b->d_out_own, m->output.data, ob, cudaMemcpyHostToDevice)) != cudaSuccess) {
                cuda_err(err, "uploading the lm_head", e);
                goto fail;
            }
            b->d_outw = b->d_out_own;
        }
    }
    if (o && o->lm_head_int8) {
        /* int8 lm_head: quantized on the device from the uploaded table (one block per row, a
         * few ms), then the float copy goes unless the embedding lookup shares it (tied). */
        if (b->dim % 16) {
            err_set(err, "cuda: --lm-head int8 needs a hidden size that is a multiple of 16 (this model: %d)", b->dim);
            goto fail;
        }
        const size_t qb = align256((size_t)b->vocab * b->dim);
        if ((e = cudaMalloc((void **)&b->d_lm_q, qb + (size_t)b->vocab * sizeof(float))) != cudaSuccess) {
            b->d_lm_q = NULL;
            cuda_err(err, "allocating the int8 lm_head", e);
            goto fail;
        }
        b->d_lm_s = (float *)((char *)b->d_lm_q + qb);
        /* the table was copied with cudaMemcpy from pageable memory on the legacy stream, whose
         * DMA may still be under way when it returns; b->st does not wait for that stream */
        if ((e = cudaDeviceSynchronize()) != cudaSuccess) {
            cuda_err(err, "uploading the lm_head", e);
            goto fail;
        }
        if (kcuda_quant_rows_i8(b->out_type, b->d_outw, b->vocab, b->dim, b->d_lm_q, b->d_lm_s, b->st)) {
            kc_err(err, "quantizing the lm_head", -1);
            goto fail;
        }
        if ((e = cudaStreamSynchronize(b->st)) != cudaSuccess) {
            cuda_err(err, "quantizing the lm_head", e);
            goto fail;
        }
        if (b->d_out_own) {
            cudaFree(b->d_out_own);
            b->d_out_own = NULL;
        }
        b->d_outw = b->d_lm_q;
    }
    /* KV cache */
    {
        const size_t per = (size_t)c->n_kv_heads * b->ctx * b->hd;
        if ((e = cudaMalloc(&b->d_kv, per * 2 * NL * sizeof(uint16_t))) != cudaSuccess) {
            cuda_err(err, "allocating the KV cache", e);
            goto fail;
        }
        uint16_t *kv = b->d_kv;
        for (int l = 0; l < NL; l++) {
            b->L[l].kc = kv, kv += per;
            b->L[l].vc = kv, kv += per;
        }
    }
    /* scratch */
    {
        const int maxk = b->kf > b->kd ? (b->kf > b->ko ? b->kf : b->ko) : (b->kd > b->ko ? b->kd : b->ko);
        const size_t T = PREFILL_MAX;
        size_t sizes[17] = {
            (size_t)b->dim * 4, (size_t)b->qkv_dim * 4, (size_t)b->q_dim * 4, (size_t)b->ffn * 4,
            (size_t)b->vocab * 4, kcuda_attn_decode_scratch(&b->ash) * 4,
            16, (size_t)kcuda_lm_head_scratch(b->vocab) * 4, 16, 16, (size_t)c->n_heads * 4,
            T * b->dim * 4, T * b->qkv_dim * 4, T * b->q_dim * 4, T * b->ffn * 4, T * 4 * 3,
            T * (size_t)maxk};
        size_t tot = 0;
        for (int i = 0; i < 17; i++) tot += align256(sizes[i]);
        if ((e = cudaMalloc(&b->d_scratch, tot)) != cudaSuccess || (e = cudaMemset(b->d_scratch, 0, tot)) != cudaSuccess) {
            cuda_err(err, "allocating scratch", e);
            goto fail;
        }
        char *p = b->d_scratch;
        void **ptrs[17] = {(void **)&b->d_x, (void **)&b->d_qkv, (void **)&b->d_att, (void **)&b->d_gu,
                           (void **)&b->d_logits, (void **)&b->d_part, (void **)&b->d_io, (void **)&b->d_best,
                           (void **)&b->d_argmax, (void **)&b->d_err, (void **)&b->d_count, (void **)&b->p_x,
                           (void **)&b->p_qkv, (void **)&b->p_att, (void **)&b->p_gu, (void **)&b->p_s,
                           (void **)&b->p_q};
        for (int i = 0; i < 17; i++) {
            *ptrs[i] = p;
            p += align256(sizes[i]);
        }
        b->p_qsum = (int32_t *)(b->p_s + T);
        b->p_tok = b->p_qsum + T;
    }
    {
        /* Lookahead of the L2 prefetch in layers (BITNET_CUDA_PREFETCH, 0 = off) and whether the
         * last layers prefetch the start of the lm_head too (BITNET_CUDA_PREFETCH_LM=1). */
        const char *pf = getenv("BITNET_CUDA_PREFETCH");
        const double layers = pf ? atof(pf) : DECODE_PREFETCH_LAYERS;
        const size_t per_layer = NL > 0 ? tern / (size_t)NL : 0;
        b->pf_bytes = layers > 0 && layers < 64 ? (size_t)(layers * (double)per_layer) : 0;
        const char *pfl = getenv("BITNET_CUDA_PREFETCH_LM");
        if (b->pf_bytes && pfl && atoi(pfl) != 0)
            b->pf_lm_bytes = (size_t)b->vocab * b->dim * (b->d_lm_q ? 1 : dtype_size(b->out_type));
        const char *tg = getenv("BITNET_CUDA_TRIGGER");
        snprintf(b->trig, sizeof b->trig, "%s", tg ? tg : DECODE_TRIGGERS);
        const char *pn = getenv("BITNET_CUDA_PREFETCH_NEXT");
        snprintf(b->pf_next, sizeof b->pf_next, "%s", pn ? pn : "");
        b->n_trace = 2 + 5 * NL;
        if (getenv("BITNET_CUDA_TRACE") &&
            cudaMalloc((void **)&b->d_trace, sizeof(unsigned long long) * 4 * (size_t)b->n_trace) != cudaSuccess) {
            b->d_trace = NULL;
            cudaGetLastError();
        }
    }
    {
        char dev[160] = "?";
        kcuda_device_describe(dev, sizeof dev);
        snprintf(b->desc, sizeof b->desc, "CUDA: %s; W2A8 dp4a GEMV, int8 mma GEMM, graph%s%s; %s lm_head", dev,
                 b->pdl ? " + PDL" : "", b->pf_bytes ? " + L2 prefetch" : "", b->d_lm_q ? "int8" : "f16");
    }
    return b;
fail:
    cuda_destroy(b);
    return NULL;
}

/* The L2 prefetch of the next launch: bytes [a, e) of the decode weight stream (the ternary
 * matrices of all layers in decode order, then, with pf_lm_bytes, the lm_head), clipped to it. */
static int set_prefetch(CudaBackend *b, size_t a, size_t e) {
    const size_t T = b->tern_bytes, total = T + b->pf_lm_bytes;
    if (e > total) e = total;
    if (!b->pf_bytes || a >= e) return 0;
    const uint8_t *t = b->d_tern, *lm = b->d_outw;
    const size_t ta = a < T ? a : T, te = e < T ? e : T;
    const size_t la = a > T ? a - T : 0, le = e > T ? e - T : 0;
    return kcuda_set_l2_prefetch(ta < te ? t + ta : NULL, te - ta, la < le ? lm + la : NULL, le - la);
}

/* Bytes of the weight stream up to the end of matrix m. */
static size_t stream_end(const CudaBackend *b, const KcudaTernary *m) {
    return (size_t)(m->d_codes - (const uint8_t *)b->d_tern) + (size_t)m->n_out * m->k_pad / 4;
}

/* Enqueues one decode step (token in d_io[0], position in d_io[1]). With the L2 prefetch, each
 * GEMV asks for the weights pf_bytes further along the stream than its own (the embedding
 * kernel for the first pf_bytes), so the HBM streams ahead of the dependency chain and every
 * GEMV after the first reads its weights from L2. */
static int enqueue_decode(CudaBackend *b, int pdl, Err *err) {
    const float eps = b->cfg.norm_eps;
    const size_t D = b->pf_bytes;
    size_t done = 0; /* stream bytes whose prefetch has been asked for, minus D */
    int tk = 0;      /* timeline slot of the next kernel */
#define TR() (b->d_trace ? (kcuda_set_trace(b->d_trace + 4 * tk++), 0) : 0)
#define TG(j) (b->trig[j] == 'E' || b->trig[j] == 'L' || b->trig[j] == 'M' \
                   ? (kcuda_set_next_trigger(b->trig[j] == 'E' ? 0 : b->trig[j] == 'L' ? 1 : 2), 0) : 0)
    /* prefetch of the next GEMV's weights (lab): m = that matrix */
#define PN(j, m) (b->pf_next[j] == 'P' ? kcuda_set_l2_prefetch((m)->d_codes, (size_t)(m)->n_out * (m)->k_pad / 4, NULL, 0) : 0)
    if (b->d_trace && cudaMemsetAsync(b->d_trace, 0xff, sizeof(unsigned long long) * 4 * (size_t)b->n_trace, b->st) != cudaSuccess)
        return err_set(err, "cuda: trace reset");
    if (TR() || set_prefetch(b, 0, D) ||
        kcuda_embed(b->emb_type, b->d_emb, b->vocab, b->dim, b->d_io, 1, b->d_x, b->d_err, pdl, b->st))
        return kc_err(err, "embed", -1);
#define PF(m) (TR() || set_prefetch(b, done + D, stream_end(b, m) + D) || (done = stream_end(b, m), 0))
    for (int l = 0; l < b->cfg.n_layers; l++) {
        CudaLayer *L = &b->L[l];
        const KcudaTernary *next_qkv = l + 1 < b->cfg.n_layers ? &b->L[l + 1].qkv : &b->L[0].qkv;
        if (PF(&L->qkv) || TG(0) || PN(0, &L->o) ||
            kcuda_w2a8_gemv(&L->qkv, b->d_x, b->dim, L->attn_norm, eps, NULL, NULL, NULL, KCUDA_EP_F32, b->d_qkv, pdl, b->st) ||
            TR() || TG(1) || PN(1, &L->o) ||
            kcuda_attn_decode(&b->ash, b->d_qkv, L->kc, L->vc, b->d_io + 1, b->d_att, b->d_part, b->d_count, pdl, b->st) ||
            PF(&L->o) || TG(2) || PN(2, &L->gu) ||
            kcuda_w2a8_gemv(&L->o, b->d_att, b->q_dim, L->attn_sub_norm, eps, NULL, NULL, NULL, KCUDA_EP_RESID, b->d_x, pdl, b->st) ||
            PF(&L->gu) || TG(3) || PN(3, &L->down) ||
            kcuda_w2a8_gemv(&L->gu, b->d_x, b->dim, L->ffn_norm, eps, NULL, NULL, NULL, KCUDA_EP_GLU, b->d_gu, pdl, b->st) ||
            PF(&L->down) || TG(4) || PN(4, next_qkv) ||
            kcuda_w2a8_gemv(&L->down, b->d_gu, b->ffn, L->ffn_sub_norm, eps, NULL, NULL, NULL, KCUDA_EP_RESID, b->d_x, pdl, b->st))
            return kc_err(err, "decode layer", -1);
    }
#undef PF
#undef TG
#undef PN
    TR();
#undef TR
    if (lm_head(b, b->d_x, pdl)) return kc_err(err, "lm_head", -1);
    return 0;
}

static int capture_graph(CudaBackend *b, Err *err) {
    for (int attempt = 0; attempt < 2; attempt++) {
        const int pdl = attempt == 0 ? b->pdl : 0;
        cudaGraph_t g = NULL;
        cudaError_t e = cudaStreamBeginCapture(b->st, cudaStreamCaptureModeThreadLocal);
        if (e != cudaSuccess) return cuda_err(err, "begin capture", e);
        /* token and position in from pinned memory, the greedy pick out: one small copy each
         * way inside the graph, so a step costs the host one launch and one wait. */
        int rc = 0;
        if ((e = cudaMemcpyAsync(b->d_io, b->h_pin, 2 * sizeof(int), cudaMemcpyHostToDevice, b->st)) != cudaSuccess)
            rc = cuda_err(err, "capturing the token copy", e);
        if (!rc) rc = enqueue_decode(b, pdl, err);
        if (!rc && (e = cudaMemcpyAsync(b->h_pin + 2, b->d_argmax, sizeof(int), cudaMemcpyDeviceToHost, b->st)) != cudaSuccess)
            rc = cuda_err(err, "capturing the result copy", e);
        e = cudaStreamEndCapture(b->st, &g);
        if (rc) {
            if (g) cudaGraphDestroy(g);
            return -1;
        }
        if (e == cudaSuccess) {
            e = cudaGraphInstantiate(&b->graph, g, 0);
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

static int prefill_chunk(CudaBackend *b, const int32_t *tokens, int T, int pos0, float *all_logits, int last,
                         Err *err) {
    const float eps = b->cfg.norm_eps;
    /* BITNET_CUDA_PREFILL_PDL=1 chains the ~10 kernels of a layer with PDL (the next launch and
     * a GEMM's first weight loads overlap the tail of the kernel before). Off by default: on the
     * H100 it made prefill 512 slower (8.75 vs 8.27 ms, bench 2026-11-23). */
    const char *pe = getenv("BITNET_CUDA_PREFILL_PDL");
    const int pdl = b->pdl && pe && pe[0] == '1';
    cudaError_t e = cudaMemcpyAsync(b->p_tok, tokens, (size_t)T * 4, cudaMemcpyHostToDevice, b->st);
    if (e != cudaSuccess) return cuda_err(err, "copying tokens", e);
    if (kcuda_embed(b->emb_type, b->d_emb, b->vocab, b->dim, b->p_tok, T, b->p_x, b->d_err, 0, b->st))
        return kc_err(err, "embed", -1);
    for (int l = 0; l < b->cfg.n_layers; l++) {
        CudaLayer *L = &b->L[l];
        if (kcuda_rmsnorm_quant_prefill(b->p_x, T, b->dim, b->dim, b->kd, L->attn_norm, eps, b->p_q, b->p_s, b->p_qsum, pdl, b->st) ||
            kcuda_w2a8_gemm_ex(&L->qkv, b->p_q, b->p_s, b->p_qsum, T, KCUDA_EP_F32, b->p_qkv, b->qkv_dim, pdl, b->st) ||
            kcuda_attn_prefill_ex(&b->ash, b->p_qkv, b->qkv_dim, T, pos0, L->kc, L->vc, b->p_att, pdl, b->st) ||
            kcuda_rmsnorm_quant_prefill(b->p_att, T, b->q_dim, b->q_dim, b->ko, L->attn_sub_norm, eps, b->p_q, b->p_s, b->p_qsum, pdl, b->st) ||
            kcuda_w2a8_gemm_ex(&L->o, b->p_q, b->p_s, b->p_qsum, T, KCUDA_EP_RESID, b->p_x, b->dim, pdl, b->st) ||
            kcuda_rmsnorm_quant_prefill(b->p_x, T, b->dim, b->dim, b->kd, L->ffn_norm, eps, b->p_q, b->p_s, b->p_qsum, pdl, b->st) ||
            kcuda_w2a8_gemm_ex(&L->gu, b->p_q, b->p_s, b->p_qsum, T, KCUDA_EP_GLU, b->p_gu, b->ffn, pdl, b->st) ||
            kcuda_rmsnorm_quant_prefill(b->p_gu, T, b->ffn, b->ffn, b->kf, L->ffn_sub_norm, eps, b->p_q, b->p_s, b->p_qsum, pdl, b->st) ||
            kcuda_w2a8_gemm_ex(&L->down, b->p_q, b->p_s, b->p_qsum, T, KCUDA_EP_RESID, b->p_x, b->dim, pdl, b->st))
            return kc_err(err, "prefill layer", -1);
    }
    for (int t = all_logits ? 0 : T - 1; t < T; t++) {
        if (!all_logits && !last) break;
        if (lm_head(b, b->p_x + (size_t)t * b->dim, 0)) return kc_err(err, "lm_head", -1);
        if (all_logits) {
            e = cudaMemcpyAsync(all_logits + (size_t)t * b->vocab, b->d_logits, (size_t)b->vocab * 4,
                                cudaMemcpyDeviceToHost, b->st);
            if (e != cudaSuccess) return cuda_err(err, "copying logits", e);
        }
    }
    return 0;
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
    if (n == 1) {
        if (!b->graph && capture_graph(b, err)) return -1;
        if (b->inflight && (e = cudaStreamSynchronize(b->st)) != cudaSuccess) return cuda_err(err, "decode", e);
        b->h_pin[0] = tokens[0];
        b->h_pin[1] = pos;
        if ((e = cudaGraphLaunch(b->graph, b->st)) != cudaSuccess) return cuda_err(err, "decode graph", e);
        b->inflight = 1;
        if (all_logits) {
            if ((e = cudaMemcpyAsync(all_logits, b->d_logits, (size_t)b->vocab * 4, cudaMemcpyDeviceToHost, b->st)) !=
                cudaSuccess)
                return cuda_err(err, "copying logits", e);
            if ((e = cudaStreamSynchronize(b->st)) != cudaSuccess) return cuda_err(err, "decode", e);
        }
        return 0;
    }
    for (int done = 0; done < n; done += PREFILL_MAX) {
        const int T = n - done < PREFILL_MAX ? n - done : PREFILL_MAX;
        if (prefill_chunk(b, tokens + done, T, pos + done, all_logits ? all_logits + (size_t)done * b->vocab : NULL,
                          done + T == n, err))
            return -1;
        /* tokens are copied from pageable memory (staged at once), so the loop may go on. */
    }
    if ((e = cudaMemcpyAsync(b->h_pin + 2, b->d_argmax, sizeof(int), cudaMemcpyDeviceToHost, b->st)) != cudaSuccess ||
        (e = cudaStreamSynchronize(b->st)) != cudaSuccess)
        return cuda_err(err, "prefill", e);
    return 0;
}

static const float *cuda_logits(void *vb) {
    CudaBackend *b = vb;
    if (!b->logits_valid) {
        if (cudaMemcpyAsync(b->h_logits, b->d_logits, (size_t)b->vocab * 4, cudaMemcpyDeviceToHost, b->st) !=
                cudaSuccess ||
            cudaStreamSynchronize(b->st) != cudaSuccess)
            return NULL;
        b->inflight = 0;
        b->logits_valid = 1;
    }
    return b->h_logits;
}

static int cuda_sample(void *vb, Sampler *s, int32_t *tok, Err *err) {
    CudaBackend *b = vb;
    if (s && !sampler_params) return 0;
    const SamplerParams *p = s ? sampler_params(s) : NULL;
    if (p && !(p->temperature <= 0.0f && p->repeat_penalty == 1.0f)) return 0;
    cudaError_t e = cudaStreamSynchronize(b->st);
    if (e != cudaSuccess) return cuda_err(err, "greedy sample", e);
    b->inflight = 0;
    *tok = b->h_pin[2];
    return 1;
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
};

#endif /* BITNET_HAVE_CUDA */
