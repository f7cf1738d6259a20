/* Infer: picks a backend (CUDA when built in and a device answers, else CPU) and forwards
 * through its BackendOps table. The default token pick runs the host sampler on a copy of the
 * backend's logits (the sampler may rewrite the logits it is given). */
#include "infer/infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kernels_cpu.h"

struct Infer {
    const BackendOps *ops;
    void *b;
    BackendKind kind;
    int ctx, vocab;
    float *sample_buf;      /* [vocab] scratch for the host sampler */
    char note[256];         /* why CUDA was not used, when AUTO fell back to the CPU */
};

static const BackendOps *cuda_ops(void) {
#ifdef BITNET_HAVE_CUDA
    return &backend_cuda_ops;
#else
    return NULL;
#endif
}

Infer *infer_create(const Model *m, const InferOptions *o, Err *err) {
    InferOptions opt = {.backend = BACKEND_AUTO, .threads = 0, .ctx = 0, .lm_head_int8 = 0};
    if (o) opt = *o;
    if (!m || !m->layers) {
        err_set(err, "infer_create: no model");
        return NULL;
    }
    Infer *inf = calloc(1, sizeof *inf);
    if (!inf) {
        err_set(err, "infer_create: out of memory");
        return NULL;
    }
    inf->vocab = m->cfg.vocab_size;
    /* The model was trained on ctx_len positions: a longer request is capped (callers compare
     * infer_ctx with what they asked for to tell the user), never given a cache it cannot use. */
    if (m->cfg.ctx_len > 0 && opt.ctx > m->cfg.ctx_len) opt.ctx = m->cfg.ctx_len;
    inf->ctx = opt.ctx > 0 ? opt.ctx : m->cfg.ctx_len;
    inf->sample_buf = malloc((size_t)inf->vocab * sizeof(float));
    if (!inf->sample_buf) {
        free(inf);
        err_set(err, "infer_create: out of memory");
        return NULL;
    }

    const BackendOps *cuda = cuda_ops();
    if (opt.kv_f32 && opt.backend == BACKEND_CUDA) {
        err_set(err, "an f32 KV cache is available on the CPU backend only");
        goto fail;
    }
    if (opt.backend == BACKEND_CUDA || (opt.backend == BACKEND_AUTO && !opt.kv_f32)) {
        if (cuda) {
            Err cerr = {{0}};
            inf->b = cuda->create(m, &opt, &cerr);
            if (inf->b) {
                inf->ops = cuda;
                inf->kind = BACKEND_CUDA;
                return inf;
            }
            if (opt.backend == BACKEND_CUDA) {
                err_set(err, "CUDA backend: %s", cerr.msg);
                goto fail;
            }
            snprintf(inf->note, sizeof inf->note, "CUDA unavailable: %s", cerr.msg);
        } else if (opt.backend == BACKEND_CUDA) {
            err_set(err, "this build has no CUDA backend");
            goto fail;
        }
    }
    if (opt.kv_f32 && opt.backend == BACKEND_AUTO && cuda)
        snprintf(inf->note, sizeof inf->note, "the f32 KV cache is CPU only");
    inf->b = backend_cpu_ops.create(m, &opt, err);
    if (!inf->b) goto fail;
    inf->ops = &backend_cpu_ops;
    inf->kind = BACKEND_CPU;
    return inf;
fail:
    free(inf->sample_buf);
    free(inf);
    return NULL;
}

void infer_destroy(Infer *inf) {
    if (!inf) return;
    if (inf->b) inf->ops->destroy(inf->b);
    free(inf->sample_buf);
    free(inf);
}

int infer_eval(Infer *inf, const int32_t *tokens, int n, int pos, float *all_logits, Err *err) {
    if (!tokens || n <= 0) return err_set(err, "infer_eval: no tokens");
    return inf->ops->eval(inf->b, tokens, n, pos, all_logits, err);
}

const float *infer_logits(Infer *inf) { return inf->ops->logits(inf->b); }

int infer_sample(Infer *inf, Sampler *s, int32_t *tok, Err *err) {
    if (inf->ops->sample) {
        const int r = inf->ops->sample(inf->b, s, tok, err);
        if (r != 0) return r < 0 ? -1 : 0;
    }
    const float *lg = inf->ops->logits(inf->b);
    if (!lg) return err_set(err, "infer_sample: no logits yet");
    if (!s) { /* no sampler: greedy */
        int32_t best = 0;
        for (int32_t i = 1; i < inf->vocab; i++)
            if (lg[i] > lg[best]) best = i;
        *tok = best;
        return 0;
    }
    memcpy(inf->sample_buf, lg, (size_t)inf->vocab * sizeof(float));
    *tok = sampler_sample(s, inf->sample_buf, inf->vocab);
    if (*tok < 0 || *tok >= inf->vocab) return err_set(err, "infer_sample: sampler returned %d", *tok);
    return 0;
}

int infer_eval_queues(const Infer *inf) { return inf->ops->eval_queues; }

int infer_ctx(const Infer *inf) { return inf->ctx; }

BackendKind infer_backend(const Infer *inf) { return inf->kind; }

int infer_memory(Infer *inf, InferMemPart *parts, int cap) {
    return inf->ops->memory && cap > 0 ? inf->ops->memory(inf->b, parts, cap) : 0;
}

int infer_cpu_count(void) { return cpu_num_cores(); }

void infer_describe(Infer *inf, char *buf, int cap) {
    if (cap <= 0) return;
    inf->ops->describe(inf->b, buf, cap);
    if (inf->note[0]) {
        const size_t len = strlen(buf);
        if (len + 3 < (size_t)cap) snprintf(buf + len, (size_t)cap - len, " (%s)", inf->note);
    }
}
