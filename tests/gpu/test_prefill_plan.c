/* The CUDA backend's prefill scratch plan (cuda_prefill_plan) against the buffers' lifetimes,
 * stated here independently of the backend: the steps of a prefill chunk in stream order (the
 * embedding, each layer's ten kernels as prefill_layer launches them, the lm_head on the last
 * rows) with what each reads and writes. In every step the buffers it touches and those live
 * across it (written before, read later with no write between) must not share a byte, and each
 * buffer must hold what the shapes put in it. Runs without a device (CUDA builds only), over the
 * model shapes the backend takes: 2B-4T, Llama3-8B, Falcon3's head_dim 256, a toy model, ragged
 * sizes. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "infer/backend_cuda.h"
#include "infer/model.h"
#include "kernels/w2a8.h"

enum { X, QKV, ATT, GU, S, QSUM, TOK, Q, NBUF };
static const char *const NAME[NBUF] = {"x", "qkv", "att", "gu", "s", "qsum", "tok", "q"};

/* One step: the buffers it reads and writes (bit masks over the enum). */
typedef struct {
    const char *what;
    unsigned reads, writes;
} Step;
#define B(i) (1u << (i))
#define QUANT_OUT (B(Q) | B(S) | B(QSUM))
static const Step LAYER[10] = {
    {"QKV input norm + int8", B(X), QUANT_OUT},
    {"QKV GEMM", QUANT_OUT, B(QKV)},
    {"attention (q roped in place)", B(QKV), B(QKV) | B(ATT)},
    {"o_proj input norm + int8", B(ATT), QUANT_OUT},
    {"o_proj GEMM + residual", QUANT_OUT | B(X), B(X)},
    {"gate/up input norm + int8", B(X), QUANT_OUT},
    {"gate/up GEMM", QUANT_OUT, B(GU)},
    {"down input norm + int8", B(GU), QUANT_OUT},
    {"down GEMM + residual", QUANT_OUT | B(X), B(X)},
    {NULL, 0, 0},
};

enum { LAYERS = 3, MAXSTEPS = 2 + 10 * LAYERS };

static int check_shape(const char *label, const ModelConfig *c, int T) {
    CudaPrefillPlan p;
    cuda_prefill_plan(c, T, &p);
    const size_t off[NBUF] = {p.x, p.qkv, p.att, p.gu, p.s, p.qsum, p.tok, p.q};
    const size_t q = (size_t)c->n_heads * c->head_dim, kv = (size_t)c->n_kv_heads * c->head_dim;
    size_t maxk = (size_t)i2s_round_up_k(c->dim);
    if ((size_t)i2s_round_up_k((int)q) > maxk) maxk = (size_t)i2s_round_up_k((int)q);
    if ((size_t)i2s_round_up_k(c->ffn_dim) > maxk) maxk = (size_t)i2s_round_up_k(c->ffn_dim);
    const size_t len[NBUF] = {(size_t)T * c->dim * 4, (size_t)T * (q + 2 * kv) * 4, (size_t)T * q * 4,
                              (size_t)T * c->ffn_dim * 4, (size_t)T * 4, (size_t)T * 4, (size_t)T * 4, (size_t)T * maxk};
    for (int i = 0; i < NBUF; i++)
        CHECK_MSG(off[i] + len[i] <= p.bytes && off[i] % 16 == 0, "%s: %s at %zu + %zu of %zu", label, NAME[i], off[i],
                  len[i], p.bytes);
    /* the chunk: tokens in, the embedding, LAYERS layers, the lm_head reading x */
    Step st[MAXSTEPS];
    int n = 0;
    st[n++] = (Step){"embedding", B(TOK), B(X)};
    for (int l = 0; l < LAYERS; l++)
        for (int i = 0; LAYER[i].what; i++) st[n++] = LAYER[i];
    st[n++] = (Step){"lm_head", B(X), 0};
    int bad = 0;
    for (int i = 0; i < n; i++) {
        unsigned used = st[i].reads | st[i].writes;
        for (int b = 0; b < NBUF; b++) {
            /* live across step i: read at a later step before any write to it (the tokens are
             * written by the copy in before the chunk) */
            int written_before = b == TOK;
            for (int j = 0; j < i; j++) written_before |= (st[j].writes >> b) & 1;
            for (int j = i + 1; j < n && written_before; j++) {
                if ((st[j].reads >> b) & 1) {
                    used |= B(b);
                    break;
                }
                if ((st[j].writes >> b) & 1) break;
            }
        }
        for (int a = 0; a < NBUF; a++)
            for (int b = a + 1; b < NBUF; b++) {
                if (!((used >> a) & 1) || !((used >> b) & 1)) continue;
                const int overlap = off[a] < off[b] + len[b] && off[b] < off[a] + len[a];
                CHECK_MSG(!overlap, "%s: step %d (%s): %s [%zu, %zu) and %s [%zu, %zu) are both in use and overlap",
                          label, i, st[i].what, NAME[a], off[a], off[a] + len[a], NAME[b], off[b], off[b] + len[b]);
                bad += overlap;
            }
    }
    /* the aliasing is what makes the plan smaller than one buffer each (256-byte aligned) */
    size_t apart = 0;
    for (int i = 0; i < NBUF; i++) apart += (len[i] + 255) / 256 * 256;
    printf("%-10s T %3d: %9zu bytes (%.1f KB a token; one buffer each: %.1f KB)\n", label, T, p.bytes,
           p.bytes / 1000.0 / T, apart / 1000.0 / T);
    CHECK(p.bytes < apart);
    return bad;
}

int main(void) {
    const ModelConfig b2 = model_config_bitnet_2b(), l8 = model_config_llama3_8b();
    ModelConfig falcon = l8, toy = b2, ragged = b2;
    falcon.dim = 3072, falcon.n_heads = 12, falcon.n_kv_heads = 4, falcon.head_dim = 256, falcon.ffn_dim = 23040;
    toy.dim = 64, toy.n_heads = 4, toy.n_kv_heads = 2, toy.head_dim = 16, toy.ffn_dim = 128;
    ragged.dim = 200, ragged.n_heads = 2, ragged.n_kv_heads = 1, ragged.head_dim = 100, ragged.ffn_dim = 320;
    const struct {
        const char *label;
        const ModelConfig *c;
    } shapes[] = {{"2B-4T", &b2}, {"Llama3-8B", &l8}, {"Falcon3", &falcon}, {"toy", &toy}, {"ragged", &ragged}};
    const int Ts[] = {1, 7, 512};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t t = 0; t < sizeof Ts / sizeof Ts[0]; t++) check_shape(shapes[s].label, shapes[s].c, Ts[t]);
    /* the 2B model's figure the backend's comment gives: 44.8 KB a token */
    CudaPrefillPlan p;
    cuda_prefill_plan(&b2, 512, &p);
    CHECK(p.bytes == 512 * (size_t)(2560 * 4 + 6912 * 4 + 6912 + 12));
    return check_report("test_prefill_plan");
}
