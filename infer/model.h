/* Model: the one in-memory representation every model file is mapped to, whatever its format
 * (GGUF I2_S / TQ2_0 / TQ1_0 / F32 / F16 / BF16, Hugging Face bf16 master or packed uint8).
 *   - each ternary linear: I2_S codes (kernels/w2a8.h) + one scale gamma (W = gamma * t);
 *   - norms: f32;
 *   - token embedding (and lm_head): f16, bf16 or f32, used in place where the file allows.
 * Loading maps the file (mmap) and only allocates what must be converted, so the official
 * 1.2 GB GGUF is never copied twice. Backends (infer/infer.h) read a Model and never change it. */
#ifndef BN_MODEL_H
#define BN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"

typedef struct Tokenizer Tokenizer;

/* Float tensor element types; values are the ggml type ids. */
typedef enum { FT_F32 = 0, FT_F16 = 1, FT_BF16 = 30 } FloatType;

/* RoPE pairing: HF and GGUF weights pair dim i with i + head_dim/2 ("rotate half", NEOX);
 * Microsoft's gpu/ checkpoints pair 2i with 2i+1. */
typedef enum { ROPE_HALF = 0, ROPE_ADJACENT = 1 } RopeStyle;

typedef struct {
    int n_out, n_in;        /* logical shape: y[n_out] = W[n_out][n_in] x[n_in] */
    int n_in_pad;           /* n_in rounded up to I2S_BLOCK; rows are n_in_pad/4 bytes */
    const uint8_t *codes;   /* n_out * n_in_pad / 4 bytes, I2_S layout */
    float scale;            /* gamma */
} TernaryMatrix;

typedef struct {
    FloatType type;
    int rows, cols;         /* [rows][cols], row-major */
    const void *data;
} DenseMatrix;

typedef struct {
    char arch[32];          /* "bitnet-b1.58", "bitnet-25", "bitnet" (HF) */
    char name[128];         /* general.name or the directory name */
    int n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size;
    int ctx_len;            /* trained context (max positions) */
    float rope_theta, norm_eps;
    RopeStyle rope_style;
    int bos_id;             /* -1 if none */
    int n_stop;             /* stop tokens, e.g. 128009 <|eot_id|> and 128001 <|end_of_text|> */
    int stop_ids[8];
} ModelConfig;

typedef struct {
    const float *attn_norm;      /* [dim]    input_layernorm / blk.N.attn_norm */
    const float *attn_sub_norm;  /* [dim]    before o_proj */
    const float *ffn_norm;       /* [dim]    post_attention_layernorm / blk.N.ffn_norm */
    const float *ffn_sub_norm;   /* [ffn]    before down_proj */
    TernaryMatrix wq;            /* [n_heads*head_dim][dim] */
    TernaryMatrix wk, wv;        /* [n_kv_heads*head_dim][dim] */
    TernaryMatrix wo;            /* [dim][n_heads*head_dim] */
    TernaryMatrix w_gate, w_up;  /* [ffn][dim] */
    TernaryMatrix w_down;        /* [dim][ffn] */
} LayerWeights;

typedef struct ModelStorage ModelStorage; /* mappings and owned buffers (infer/model_storage.h) */

typedef struct Model {
    ModelConfig cfg;
    DenseMatrix tok_embd;        /* [vocab][dim] */
    DenseMatrix output;          /* lm_head [vocab][dim]; .data == tok_embd.data when tied */
    const float *output_norm;    /* [dim] */
    LayerWeights *layers;        /* [n_layers] */
    Tokenizer *tok;              /* owned; may be NULL only for synthetic benchmark models */
    /* layers and chat_template are malloc'ed and freed by model_free; tensor data lives in
     * storage (mappings or model_storage_alloc buffers). */
    char *chat_template;         /* as found in the file (informational; we render our own) */
    char path[4096];
    char format[32];             /* "gguf", "hf-safetensors" ... */
    ModelStorage *storage;
} Model;

typedef struct {
    /* Called from the loading thread with 0..1 and a short stage name; may be NULL. */
    void (*progress)(void *user, float frac, const char *stage);
    void *user;
    /* Polled between tensors; a nonzero value stops the load with an error. May be NULL. */
    const volatile int *cancel;
} ModelLoadOptions;

/* Loads a GGUF file or a Hugging Face directory (config.json + *.safetensors + tokenizer.json).
 * On failure returns -1, leaves *m zeroed, and err names the file and the problem. */
int model_load(Model *m, const char *path, const ModelLoadOptions *opt, Err *err);
void model_free(Model *m);

/* Loads only the tokenizer of a GGUF file, an HF directory, or a tokenizer.json. */
Tokenizer *model_load_tokenizer(const char *path, Err *err);

/* A synthetic model with the given shapes and random ternary weights (seeded), for benchmarks
 * and tests; its tokenizer is NULL. Norm weights are 1, embedding f16 N(0, 1). */
int model_init_random(Model *m, const ModelConfig *cfg, uint64_t seed, Err *err);

/* Config of BitNet-b1.58-2B-4T (2560 hidden, 30 layers, 20/5 heads, ffn 6912, vocab 128256). */
ModelConfig model_config_bitnet_2b(void);
/* The same vocabulary, RoPE and stop tokens at toy shapes (2 layers, dim 64, 4/2 heads of 16,
 * ffn 128, context 1024): a model that runs in microseconds, for tests. */
ModelConfig model_config_tiny(void);

#endif
