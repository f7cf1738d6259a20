/* Command-line parsing: one table of options (name, argument kind, range, target field, help
 * text) drives getopt_long, the value checks and --help; what concerns several options at once
 * (modes that exclude each other, the positional arguments) follows the parse. */
#include "app/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/infer.h"

/* What an option's argument is; each kind writes one type of field of AppConfig. */
typedef enum {
    ARG_NONE,        /* a switch: bool = true */
    ARG_TEXT,        /* const char * = the argument as given */
    ARG_INT,         /* int = a whole number in [ilo, ihi] */
    ARG_I64,         /* int64_t (or uint64_t, ilo >= 0) = a whole number in [ilo, ihi] */
    ARG_REAL,        /* float = a number in [dlo, dhi] */
    ARG_CHOICE,      /* const char * = one of choices */
    ARG_CHOICE_BOOL, /* bool = the argument is the second of two choices ("f16" or "int8") */
} ArgKind;

typedef struct {
    const char *name;       /* long name, without "--" */
    char short_name;        /* 0: none */
    ArgKind kind;
    const char *arg;        /* the argument's name in --help ("PATH"); NULL for ARG_NONE */
    long long ilo, ihi;     /* ARG_INT, ARG_I64 */
    double dlo, dhi;        /* ARG_REAL */
    const char *const *choices; /* ARG_CHOICE*: NULL-terminated */
    size_t target;          /* offsetof(AppConfig, field) */
    unsigned set_bit;       /* a SAMPLER_SET_* bit set in sampling.set when it is given */
    AppMode mode;           /* the mode the option selects; MODE_CHAT: none */
    bool ends_parse;        /* --help, --version: the mode is taken and the parse ends */
    bool say_short;         /* messages name it by its short form (-p), as it is typed */
    const char *empty_why;  /* ARG_TEXT: an empty argument is refused with this reason */
    const char *section;    /* --help starts this section before the option */
    const char *help;       /* lines separated by \n */
} CliOption;

/* Offset 0 is the mode, which no option writes through its offset: 0 can mean "none". */
_Static_assert(offsetof(AppConfig, mode) == 0, "AppConfig.mode must come first");
#define AT(field) offsetof(AppConfig, field)

static const char *const backends[] = {"auto", "cpu", "cuda", NULL};
static const char *const formats[] = {"md", "json", NULL};
static const char *const lm_heads[] = {"f16", "int8", NULL};
static const char *const kv_caches[] = {"f16", "f32", NULL};

/* The session ids of --show, --export, --delete and --resume. */
#define SESSION_ID ARG_I64, "ID", .ilo = 1, .ihi = INT64_MAX

/* In --help order. The ranges match the slash commands' (app/commands.c). */
static const CliOption options[] = {
    {"model", 'm', ARG_TEXT, "PATH", .target = AT(model), .section = "Model and backend",
     .help = "model file or directory"},
    {"backend", 'b', ARG_CHOICE, "B", .choices = backends, .target = AT(backend),
     .help = "auto (default), cpu or cuda"},
    /* 0 is refused rather than read as "all cores": leaving the option out says that */
    {"threads", 't', ARG_INT, "N", .ilo = 1, .ihi = 1024, .target = AT(threads),
     .help = "CPU threads (default and maximum: all cores)"},
    {"ctx", 'c', ARG_INT, "N", .ilo = 1, .ihi = 1 << 20, .target = AT(ctx),
     .help = "context length (default and maximum: the model's)"},
    {"lm-head", 0, ARG_CHOICE_BOOL, "T", .choices = lm_heads, .target = AT(lm_head_int8),
     .help = "f16 (default) or int8: int8 lm_head with per-row\n"
             "scales (half the bytes; the top-1 token may differ\n"
             "from f16's, ~1% of positions: README, GPU section)"},
    {"kv-cache", 0, ARG_CHOICE_BOOL, "T", .choices = kv_caches, .target = AT(kv_f32),
     .help = "f16 (default) or f32: f32 keeps the KV cache unrounded\n"
             "(CPU backend only; for comparisons with a reference)"},
    {"mmap", 0, ARG_NONE, NULL, .target = AT(mmap_weights),
     .help = "CPU backend: read the weights in place from the file\n"
             "(default: copied onto huge pages at load; faster decode)"},

    {"prompt", 'p', ARG_TEXT, "TEXT", .target = AT(prompt), .mode = MODE_PROMPT,
     .say_short = true, .section = "Generation",
     .help = "answer TEXT on stdout, stats on stderr, then exit;\n"
             "- reads the prompt from stdin, and stdin that is not a\n"
             "terminal is added after TEXT (cat f | ... -p \"Sum up:\")"},
    {"file", 'f', ARG_TEXT, "FILE", .target = AT(prompt_file), .mode = MODE_PROMPT,
     .say_short = true, .empty_why = "empty file name (- reads stdin)",
     .help = "the prompt (after -p TEXT, if given) from FILE (- = stdin)"},
    {"system", 's', ARG_TEXT, "TEXT", .target = AT(system), .help = "system prompt"},
    {"temp", 0, ARG_REAL, "T", .dlo = 0, .dhi = 100, .target = AT(sampling.temperature),
     .set_bit = SAMPLER_SET_TEMPERATURE,
     .help = "temperature, 0 = greedy (default 0.7)"},
    {"top-k", 0, ARG_INT, "K", .ilo = 0, .ihi = 1 << 24, .target = AT(sampling.top_k),
     .set_bit = SAMPLER_SET_TOP_K,
     .help = "keep the K most likely tokens, 0 = off (default 40)"},
    {"top-p", 0, ARG_REAL, "P", .dlo = 0, .dhi = 1, .target = AT(sampling.top_p),
     .set_bit = SAMPLER_SET_TOP_P,
     .help = "nucleus sampling, 1 = off (default 0.95)"},
    {"min-p", 0, ARG_REAL, "P", .dlo = 0, .dhi = 1, .target = AT(sampling.min_p),
     .set_bit = SAMPLER_SET_MIN_P,
     .help = "drop tokens below P x the top probability (default 0.05)"},
    {"repeat-penalty", 0, ARG_REAL, "R", .dlo = 0.01, .dhi = 100,
     .target = AT(sampling.repeat_penalty), .set_bit = SAMPLER_SET_REPEAT_PENALTY,
     .help = "penalty for recent tokens, 1 = off (default 1.1)"},
    {"seed", 0, ARG_I64, "N", .ilo = 0, .ihi = INT64_MAX, .target = AT(sampling.seed),
     .set_bit = SAMPLER_SET_SEED, .help = "random seed (default: from the clock)"},
    {"max-tokens", 'n', ARG_INT, "N", .ilo = 1, .ihi = 1 << 24, .target = AT(sampling.max_tokens),
     .set_bit = SAMPLER_SET_MAX_TOKENS,
     .help = "reply length limit (default 1024)"},

    {"db", 0, ARG_TEXT, "PATH", .target = AT(db_path), .section = "History",
     .help = "history database (default\n$XDG_DATA_HOME/bitnet-chat/history.db)"},
    {"no-history", 0, ARG_NONE, NULL, .target = AT(no_history),
     .help = "do not read or write the history database"},
    {"sessions", 0, ARG_NONE, NULL, .mode = MODE_SESSIONS, .help = "list saved sessions"},
    {"show", 0, SESSION_ID, .target = AT(session_id), .mode = MODE_SHOW,
     .help = "print a session with per-reply stats"},
    {"search", 0, ARG_TEXT, "TEXT", .target = AT(search), .mode = MODE_SEARCH,
     .help = "full-text search across all messages"},
    {"export", 0, SESSION_ID, .target = AT(session_id), .mode = MODE_EXPORT,
     .help = "export a session (--format md|json, -o FILE)"},
    {"format", 0, ARG_CHOICE, "F", .choices = formats, .target = AT(format),
     .help = "md (default) or json; json also for --sessions, --show\nand --search"},
    {"output", 'o', ARG_TEXT, "FILE", .target = AT(output),
     .help = "write the export to FILE instead of stdout"},
    {"force", 0, ARG_NONE, NULL, .target = AT(force),
     .help = "let --export -o replace an existing FILE"},
    {"delete", 0, SESSION_ID, .target = AT(session_id), .mode = MODE_DELETE,
     .help = "delete a session (asks unless --yes)"},
    {"yes", 'y', ARG_NONE, NULL, .target = AT(yes), .help = "do not ask for confirmation"},
    {"browse", 0, ARG_NONE, NULL, .mode = MODE_BROWSE, .help = "open the session browser"},
    {"continue", 0, ARG_NONE, NULL, .target = AT(resume_latest),
     .help = "chat on in the newest saved session"},
    {"resume", 0, SESSION_ID, .target = AT(resume_id), .help = "chat on in saved session ID"},

    {"jsonl", 0, ARG_NONE, NULL, .target = AT(jsonl), .section = "Other",
     .help = "tokenize: read {\"text\": ...} lines, write {\"ids\": [...]}"},
    {"quick", 0, ARG_NONE, NULL, .target = AT(quick),
     .help = "bench: fewer repetitions\n(bench --backend cpu --model M adds rows on the file M)"},
    {"skip-kernels", 0, ARG_NONE, NULL, .target = AT(bench_skip_kernels),
     .help = "bench: no kernel table"},
    {"profile", 0, ARG_NONE, NULL, .target = AT(bench_profile),
     .help = "bench: one short end-to-end run (64 in, 8 out) instead of\n"
             "the end-to-end tables (to run under a profiler)"},
    {"chunks", 0, ARG_INT, "N", .ilo = 1, .ihi = 1 << 30, .target = AT(chunks),
     .help = "perplexity: score at most the first N chunks"},
    {"kl-divergence-base", 0, ARG_TEXT, "F", .target = AT(kl_base),
     .help = "perplexity: save the scored positions' logits to F"},
    {"kl-divergence", 0, ARG_TEXT, "F", .target = AT(kl_compare),
     .help = "perplexity: compare with the base file F (its tokens\n"
             "are scored): KL divergence, top-1 agreement, delta PPL"},
    {"help", 'h', ARG_NONE, NULL, .mode = MODE_HELP, .ends_parse = true, .help = "show this help"},
    {"version", 'V', ARG_NONE, NULL, .mode = MODE_VERSION, .ends_parse = true,
     .help = "show the version"},
};
enum { N_OPTIONS = sizeof options / sizeof options[0] };

/* Each mode: the word that selects it (a subcommand), and the positional arguments it takes.
 * usage is printed when their number is wrong; without one, the first extra argument is named. */
typedef struct {
    const char *word;
    int min_pos, max_pos;
    const char *usage;
    bool pos_is_model;  /* the one positional argument is the model (the chat and -p) */
    bool runs_model;    /* loads a model, so that --threads matters */
} ModeInfo;

static const ModeInfo modes[] = {
    [MODE_CHAT] = {.max_pos = 1, .pos_is_model = true, .runs_model = true},
    [MODE_PROMPT] = {.max_pos = 1, .pos_is_model = true, .runs_model = true},
    [MODE_SESSIONS] = {0},
    [MODE_SHOW] = {0},
    [MODE_SEARCH] = {0},
    [MODE_EXPORT] = {0},
    [MODE_DELETE] = {0},
    [MODE_BROWSE] = {.max_pos = 1, .pos_is_model = true},
    [MODE_CONVERT] = {"convert", 2, 2, "bitnet-chat convert SRC OUT.gguf"},
    [MODE_TOKENIZE] = {"tokenize", 1, 2, "bitnet-chat tokenize MODEL_OR_TOKENIZER [TEXT]"},
    [MODE_BENCH] = {"bench", .runs_model = true},
    /* with --kl-divergence the tokens come from the base file; a text FILE is optional */
    [MODE_PERPLEXITY] = {"perplexity", 0, 1,
                         "bitnet-chat perplexity --model M FILE [--ctx N] "
                         "[--kl-divergence-base BASE] or --kl-divergence BASE",
                         .runs_model = true},
    [MODE_HELP] = {0},
    [MODE_VERSION] = {0},
};
enum { N_MODES = sizeof modes / sizeof modes[0] };
_Static_assert(N_MODES == MODE_VERSION + 1, "modes[] has one entry per AppMode");

static const char usage_head[] =
    "Usage: bitnet-chat [OPTIONS] [MODEL]          full-screen chat\n"
    "       bitnet-chat -p PROMPT|-f FILE [OPTIONS] one reply to stdout\n"
    "       bitnet-chat convert SRC OUT.gguf        write a GGUF I2_S model\n"
    "       bitnet-chat tokenize MODEL [TEXT]       print token ids (stdin without TEXT)\n"
    "       bitnet-chat bench [--backend B]         kernel and end-to-end benchmark\n"
    "       bitnet-chat perplexity --model M FILE   perplexity of a text file\n"
    "       bitnet-chat perplexity --model M --kl-divergence BASE\n"
    "                                               compare with saved logits\n"
    "\n"
    "MODEL is a GGUF file or a Hugging Face directory; without one the small demo model\n"
    "shipped in assets/ is used.\n";

/* --help's columns: the option from column 2, its help from column 27 (on a line of its own
 * when the option and its argument are too wide). */
enum { HELP_COL = 27, HELP_OPT_WIDTH = HELP_COL - 6 };

void cli_usage(FILE *to) {
    fputs(usage_head, to);
    for (int i = 0; i < N_OPTIONS; i++) {
        const CliOption *o = &options[i];
        if (o->section) fprintf(to, "\n%s:\n", o->section);
        char opt[64];
        int w = snprintf(opt, sizeof opt, "--%s%s%s", o->name, o->arg ? " " : "",
                         o->arg ? o->arg : "");
        if (o->short_name) fprintf(to, "  -%c, ", o->short_name);
        else fputs("      ", to);
        if (w <= HELP_OPT_WIDTH - 2) fprintf(to, "%-*s", HELP_OPT_WIDTH, opt);
        else fprintf(to, "%s\n%*s", opt, HELP_COL, "");
        for (const char *h = o->help; *h;) {
            size_t n = strcspn(h, "\n");
            fprintf(to, "%.*s\n", (int)n, h);
            h += n;
            if (*h == '\n' && *++h) fprintf(to, "%*s", HELP_COL, "");
        }
    }
}

/* How messages name an option: "--threads", or "-p" for the few typed short. */
static void option_label(const CliOption *o, char *buf, size_t cap) {
    if (o->say_short) snprintf(buf, cap, "-%c", o->short_name);
    else snprintf(buf, cap, "--%s", o->name);
}

/* True when s holds something besides spaces, tabs and line breaks. */
static bool has_visible_text(const char *s) {
    for (; s && *s; s++)
        if (!strchr(" \t\r\n\v\f", *s)) return true;
    return false;
}

static int set_mode(AppConfig *c, AppMode m, const char *opt) {
    if (c->mode != MODE_CHAT && c->mode != m) {
        /* -p and -f name the one-shot form, which excludes the subcommands and the history
         * tools alike */
        fprintf(stderr, "bitnet-chat: %s cannot be combined with %s\n", opt,
                m == MODE_PROMPT ? "a subcommand" : "another mode");
        return -1;
    }
    c->mode = m;
    return 0;
}

/* A whole number in [lo, hi], or a one-line message naming the option. */
static int parse_integer(const char *opt, const char *s, long long lo, long long hi,
                         long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "bitnet-chat: %s: '%s' is not an integer in [%lld, %lld]\n", opt, s, lo,
                hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_real(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "bitnet-chat: %s: '%s' is not a number in [%g, %g]\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* The index of s in choices, or -1 with "expected a, b or c, not 's'". */
static int parse_choice(const char *opt, const char *s, const char *const *choices) {
    int n = 0;
    while (choices[n]) n++;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, choices[i])) return i;
    fprintf(stderr, "bitnet-chat: %s: expected ", opt);
    for (int i = 0; i < n; i++)
        fprintf(stderr, "%s%s", choices[i], i + 2 < n ? ", " : i + 2 == n ? " or " : "");
    fprintf(stderr, ", not '%s'\n", s);
    return -1;
}

/* One option as getopt found it: its value checked and stored, its mode taken. In that order,
 * so that of two mistakes in one option a bad number is reported before the mode; an empty
 * name is looked at last. */
static int apply_option(AppConfig *c, const CliOption *o, const char *arg) {
    char opt[40];
    option_label(o, opt, sizeof opt);
    char *field = (char *)c + o->target;
    long long iv;
    double dv;
    int k;
    switch (o->kind) {
    case ARG_NONE:
        if (o->target) *(bool *)field = true;
        break;
    case ARG_TEXT: *(const char **)field = arg; break;
    case ARG_INT:
        if (parse_integer(opt, arg, o->ilo, o->ihi, &iv)) return -1;
        *(int *)field = (int)iv;
        break;
    case ARG_I64:
        if (parse_integer(opt, arg, o->ilo, o->ihi, &iv)) return -1;
        *(int64_t *)field = iv;
        break;
    case ARG_REAL:
        if (parse_real(opt, arg, o->dlo, o->dhi, &dv)) return -1;
        *(float *)field = (float)dv;
        break;
    case ARG_CHOICE:
        if (parse_choice(opt, arg, o->choices) < 0) return -1;
        *(const char **)field = arg;
        break;
    case ARG_CHOICE_BOOL:
        if ((k = parse_choice(opt, arg, o->choices)) < 0) return -1;
        *(bool *)field = k == 1;
        break;
    }
    c->sampling.set |= o->set_bit;
    if (o->ends_parse) {
        c->mode = o->mode;
        return 0;
    }
    if (o->mode != MODE_CHAT && set_mode(c, o->mode, opt)) return -1;
    if (o->empty_why && !arg[0]) {
        fprintf(stderr, "bitnet-chat: %s: %s\n", opt, o->empty_why);
        return -1;
    }
    return 0;
}

/* A process started with stdin, stdout or stderr closed would hand those numbers to the next
 * files it opens: the engine's wake pipe became fd 0/1, so the reply was written into that pipe
 * (lost, exit 0, and a long reply blocked forever on the full pipe). Each closed one is given
 * /dev/null, read-only, so that writes to stdout or stderr still fail (EBADF) as they would. */
static void protect_std_fds(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        int nfd = open("/dev/null", O_RDONLY);
        if (nfd < 0) return;
        if (nfd != fd) { /* a lower number was free: cannot happen, fds are taken in order */
            close(nfd);
            return;
        }
    }
}

/* getopt_long's tables, made from options[]: a short option's code is its letter, a long-only
 * option's is FIRST_LONG_ONLY + its index. */
enum { FIRST_LONG_ONLY = 256 };

static void getopt_tables(struct option *longs, char *shorts) {
    for (int i = 0; i < N_OPTIONS; i++) {
        const CliOption *o = &options[i];
        longs[i] = (struct option){o->name, o->kind == ARG_NONE ? no_argument : required_argument,
                                   NULL, o->short_name ? o->short_name : FIRST_LONG_ONLY + i};
        if (o->short_name) {
            *shorts++ = o->short_name;
            if (o->kind != ARG_NONE) *shorts++ = ':';
        }
    }
    longs[N_OPTIONS] = (struct option){0, 0, 0, 0};
    *shorts = 0;
}

static const CliOption *option_of_code(int code) {
    if (code >= FIRST_LONG_ONLY && code < FIRST_LONG_ONLY + N_OPTIONS)
        return &options[code - FIRST_LONG_ONLY];
    for (int i = 0; i < N_OPTIONS; i++)
        if (options[i].short_name && options[i].short_name == code) return &options[i];
    return NULL;
}

/* What concerns several options at once, after all were read. */
static int check_combinations(const AppConfig *c) {
    const char *why = NULL;
    if (c->db_path && !c->db_path[0])
        why = "--db: empty path (leave the option out for the default)";
    else if (c->prompt && c->prompt_file && !strcmp(c->prompt, "-") &&
             !strcmp(c->prompt_file, "-"))
        why = "-p - and -f - both read stdin: give one of them";
    else if ((c->resume_latest || c->resume_id) && c->mode != MODE_CHAT)
        why = "--continue and --resume open the chat; they cannot be combined with another mode";
    else if (c->resume_latest && c->resume_id)
        why = "give either --continue or --resume ID";
    else if ((c->resume_latest || c->resume_id) && c->no_history)
        why = "--continue and --resume write to the history; they cannot be combined with "
              "--no-history";
    else if (c->format && c->mode != MODE_EXPORT && c->mode != MODE_SESSIONS &&
             c->mode != MODE_SHOW && c->mode != MODE_SEARCH)
        why = "--format applies to --export, --sessions, --show and --search only";
    else if (c->mode == MODE_PROMPT && c->prompt && !has_visible_text(c->prompt))
        why = "-p: the prompt is empty";
    if (why) {
        fprintf(stderr, "bitnet-chat: %s\n", why);
        return -1;
    }
    return 0;
}

/* The positional arguments against the mode's count; in the chat modes the one positional is
 * the model. */
static int check_positional(AppConfig *c) {
    const ModeInfo *m = &modes[c->mode];
    bool bad = c->npos < m->min_pos || c->npos > m->max_pos;
    if (c->mode == MODE_PERPLEXITY) bad = bad || (c->npos == 0 && !c->kl_compare) || !c->model;
    if (bad && m->usage) {
        fprintf(stderr, "bitnet-chat: usage: %s\n", m->usage);
        return -1;
    }
    if (bad) {
        fprintf(stderr, "bitnet-chat: unexpected argument '%s'\n", c->pos[m->max_pos]);
        return -1;
    }
    if (m->pos_is_model && c->npos == 1) {
        if (c->model) {
            fprintf(stderr, "bitnet-chat: give the model either as MODEL or with --model\n");
            return -1;
        }
        c->model = c->pos[0];
    }
    return 0;
}

int cli_parse(AppConfig *c, int argc, char **argv) {
    protect_std_fds();
    memset(c, 0, sizeof *c);
    c->backend = "auto";

    /* A leading word selects a subcommand. */
    int first = 1;
    for (int m = 0; argc > 1 && m < N_MODES; m++)
        if (modes[m].word && !strcmp(argv[1], modes[m].word)) c->mode = (AppMode)m, first = 2;

    struct option longs[N_OPTIONS + 1];
    char shorts[2 * N_OPTIONS + 1];
    getopt_tables(longs, shorts);
    optind = first;
    opterr = 1;
    int code;
    while ((code = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        const CliOption *o = option_of_code(code);
        if (!o) { /* getopt has said what was wrong */
            fprintf(stderr, "Try 'bitnet-chat --help' for more information.\n");
            return 2;
        }
        if (apply_option(c, o, optarg)) return 2;
        if (o->ends_parse) return 0;
    }
    if (check_combinations(c)) return 2;
    c->npos = argc - optind;
    c->pos = argv + optind;
    /* Threads beyond the CPUs this process may run on only wait for each other (1000 made the
     * first token take 15 s), so the request is capped, and said once. */
    const int cpus = infer_cpu_count();
    if (c->threads > cpus) {
        if (modes[c->mode].runs_model)
            fprintf(stderr, "bitnet-chat: --threads %d is more than the %d CPU%s available; "
                            "using %d\n", c->threads, cpus, cpus == 1 ? "" : "s", cpus);
        c->threads = cpus;
    }
    if ((c->kl_base || c->kl_compare || c->chunks) && c->mode != MODE_PERPLEXITY) {
        fprintf(stderr, "bitnet-chat: %s belongs to the perplexity subcommand\n",
                c->kl_base ? "--kl-divergence-base" : c->kl_compare ? "--kl-divergence" : "--chunks");
        return 2;
    }
    return check_positional(c) ? 2 : 0;
}
