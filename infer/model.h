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

/* The gated FFN's activation: m = act(gate) * up. BitNet-b1.58-2B-4T trained with relu(g)^2;
 * the Llama-style ternary models (Llama3-8B-1.58, Falcon3, Falcon-E) and 1bitLLM's
 * reproductions with SiLU, g * sigmoid(g). */
typedef enum { FFN_RELU2 = 0, FFN_SILU = 1 } FfnAct;

/* How a conversation is laid out in tokens (infer/chat_template.h renders each one). Chosen at
 * load from the template the model ships (tokenizer_config.json chat_template or GGUF
 * tokenizer.chat_template), never from the architecture name. */
typedef enum {
    CHAT_BITNET = 0, /* BitNet-b1.58-2B-4T: "Role: text<|eot_id|>" */
    CHAT_LLAMA3,     /* <|start_header_id|>role<|end_header_id|>\n\ntext<|eot_id|> */
    CHAT_FALCON3,    /* <|role|>\ntext\n, replies end with the eos token */
    CHAT_CHATML,     /* <|im_start|>role\ntext<|im_end|>\n */
    CHAT_PLAIN       /* no usable template: "Role: text" lines (base models, 1bitLLM) */
} ChatFormat;

typedef struct {
    int n_out, n_in;        /* logical shape: y[n_out] = W[n_out][n_in] x[n_in] */
    int n_in_pad;           /* n_in rounded up to I2S_BLOCK; rows are n_in_pad/4 bytes */
    const uint8_t *codes;   /* n_out * n_in_pad / 4 bytes, I2_S layout */
    float scale;            /* gamma, always a multiplier: y = gamma * (t . x). Checkpoints of
                               transformers' BitLinear store 1/gamma as weight_scale (the
                               forward divides), AutoBitLinear and I2_S store gamma; the
                               loaders convert, so backends never see the convention. */
} TernaryMatrix;

typedef struct {
    FloatType type;
    int rows, cols;         /* [rows][cols], row-major */
    const void *data;
} DenseMatrix;

typedef struct {
    char arch[32];          /* "bitnet-b1.58", "bitnet-25", "llama" (GGUF); "bitnet", "llama" (HF) */
    char name[128];         /* general.name or the directory name */
    int n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size;
    int ctx_len;            /* trained context (max positions) */
    float rope_theta, norm_eps;
    RopeStyle rope_style;
    int bos_id;             /* -1 if none */
    int n_stop;             /* stop tokens, e.g. 128009 <|eot_id|> and 128001 <|end_of_text|> */
    int stop_ids[8];
    /* What differs between the BitNet families (data, not forks of the forward pass): */
    FfnAct ffn_act;
    int sub_norms;          /* 1: attn_sub_norm before o_proj and ffn_sub_norm before down_proj
                               (BitNet 2B-4T, 1bitLLM's inner_attn_ln / ffn_layernorm);
                               0: a plain Llama block (Llama3-8B-1.58, Falcon3, Falcon-E) */
    int tied;               /* 1: the lm_head is the token embedding */
    ChatFormat chat_format;
} ModelConfig;

typedef struct {
    const float *attn_norm;      /* [dim]    input_layernorm / blk.N.attn_norm */
    const float *attn_sub_norm;  /* [dim]    before o_proj; NULL unless cfg.sub_norms */
    const float *ffn_norm;       /* [dim]    post_attention_layernorm / blk.N.ffn_norm */
    const float *ffn_sub_norm;   /* [ffn]    before down_proj; NULL unless cfg.sub_norms */
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
    char *chat_template;         /* as found in the file; cfg.chat_format is what it asks for */
    char chat_note[192];         /* why cfg.chat_format is a fallback, "" when it is not */
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
/* Config of Llama3-8B-1.58-100B-tokens (4096 hidden, 32 layers, 32/8 heads, ffn 14336, vocab
 * 128256, SiLU, no sub-norms, untied lm_head): the largest Llama-style shape, for benchmarks. */
ModelConfig model_config_llama3_8b(void);
/* The same vocabulary, RoPE and stop tokens at toy shapes (2 layers, dim 64, 4/2 heads of 16,
 * ffn 128, context 1024): a model that runs in microseconds, for tests. */
ModelConfig model_config_tiny(void);

#endif
