/* Command-line parsing: argv -> AppConfig, from one table of options (app/cli.c) that also
 * writes --help. --help and man/bitnet-chat.1 describe the same options; test_manpage checks
 * that they agree, test_cli what each option does and refuses. */
#ifndef BN_CLI_H
#define BN_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "infer/sampler_params.h"

typedef enum {
    MODE_CHAT = 0,   /* full-screen chat (default) */
    MODE_PROMPT,     /* -p: one-shot prompt to stdout */
    MODE_SESSIONS,   /* --sessions */
    MODE_SHOW,       /* --show ID */
    MODE_SEARCH,     /* --search TEXT */
    MODE_EXPORT,     /* --export ID */
    MODE_DELETE,     /* --delete ID */
    MODE_BROWSE,     /* --browse */
    MODE_CONVERT,    /* convert SRC OUT.gguf */
    MODE_TOKENIZE,   /* tokenize MODEL_OR_TOKENIZER [TEXT] */
    MODE_BENCH,      /* bench */
    MODE_PERPLEXITY, /* perplexity --model M FILE */
    MODE_HELP,
    MODE_VERSION,
} AppMode;

typedef struct {
    AppMode mode;
    const char *model;         /* --model or the positional MODEL; NULL: the default model */
    const char *prompt;        /* -p TEXT ("-": read standard input) */
    const char *prompt_file;   /* -f FILE ("-": standard input): the prompt, after -p TEXT */
    const char *system;        /* --system */
    const char *backend;       /* "auto" (default), "cpu", "cuda" */
    int threads;               /* 0 = all cores */
    int ctx;                   /* 0 = model's context */
    bool lm_head_int8;         /* --lm-head int8 (CUDA backend) */
    bool kv_f32;               /* --kv-cache f32 (CPU backend) */
    bool mmap_weights;         /* --mmap: CPU backend reads the weights in place (no copy) */
    SamplerParams sampling;    /* --temp, --top-k, ...: set bits mark the options given */
    const char *db_path;       /* --db */
    bool no_history;
    int64_t session_id;        /* --show/--export/--delete ID */
    int64_t resume_id;         /* --resume ID: the chat continues this saved session */
    bool resume_latest;        /* --continue: the chat continues the newest saved session */
    const char *search;        /* --search TEXT */
    const char *format;        /* --format md|json; NULL: not given (md) */
    const char *output;        /* -o FILE */
    bool yes;                  /* --yes */
    bool force;                /* --force: --export -o may replace an existing file */
    bool jsonl;                /* tokenize --jsonl */
    bool quick;                /* bench --quick */
    bool bench_skip_kernels;   /* bench --skip-kernels: no kernel table */
    bool bench_profile;        /* bench --profile: one short end-to-end pass only */
    const char *kl_base;       /* perplexity --kl-divergence-base FILE */
    const char *kl_compare;    /* perplexity --kl-divergence FILE */
    int chunks;                /* perplexity --chunks N; 0 = all */
    int npos;                  /* positional arguments after the subcommand */
    char **pos;
} AppConfig;

/* Returns 0 on success, 2 on a usage error (message already printed to stderr). */
int cli_parse(AppConfig *cfg, int argc, char **argv);
void cli_usage(FILE *to);

#endif
