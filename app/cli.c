#include "app/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/infer.h"

void cli_usage(FILE *to) {
    fputs(
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
        "shipped in assets/ is used.\n"
        "\n"
        "Model and backend:\n"
        "  -m, --model PATH         model file or directory\n"
        "  -b, --backend B          auto (default), cpu or cuda\n"
        "  -t, --threads N          CPU threads (default and maximum: all cores)\n"
        "  -c, --ctx N              context length (default and maximum: the model's)\n"
        "      --lm-head T          f16 (default) or int8: int8 lm_head with per-row\n"
        "                           scales (half the bytes; top-1 may differ; CUDA:\n"
        "                           experimental, not yet run on a GPU)\n"
        "      --kv-cache T         f16 (default) or f32: f32 keeps the KV cache unrounded\n"
        "                           (CPU backend only; for comparisons with a reference)\n"
        "      --mmap               CPU backend: read the weights in place from the file\n"
        "                           (default: copied onto huge pages at load; faster decode)\n"
        "\n"
        "Generation:\n"
        "  -p, --prompt TEXT        answer TEXT on stdout, stats on stderr, then exit;\n"
        "                           - reads the prompt from stdin, and stdin that is not a\n"
        "                           terminal is added after TEXT (cat f | ... -p \"Sum up:\")\n"
        "  -f, --file FILE          the prompt (after -p TEXT, if given) from FILE (- = stdin)\n"
        "  -s, --system TEXT        system prompt\n"
        "      --temp T             temperature, 0 = greedy (default 0.7)\n"
        "      --top-k K            keep the K most likely tokens, 0 = off (default 40)\n"
        "      --top-p P            nucleus sampling, 1 = off (default 0.95)\n"
        "      --min-p P            drop tokens below P x the top probability (default 0.05)\n"
        "      --repeat-penalty R   penalty for recent tokens, 1 = off (default 1.1)\n"
        "      --seed N             random seed (default: from the clock)\n"
        "  -n, --max-tokens N       reply length limit (default 1024)\n"
        "\n"
        "History:\n"
        "      --db PATH            history database (default\n"
        "                           $XDG_DATA_HOME/bitnet-chat/history.db)\n"
        "      --no-history         do not read or write the history database\n"
        "      --sessions           list saved sessions\n"
        "      --show ID            print a session with per-reply stats\n"
        "      --search TEXT        full-text search across all messages\n"
        "      --export ID          export a session (--format md|json, -o FILE)\n"
        "      --format F           md (default) or json; json also for --sessions, --show\n"
        "                           and --search\n"
        "  -o, --output FILE        write the export to FILE instead of stdout\n"
        "      --force              let --export -o replace an existing FILE\n"
        "      --delete ID          delete a session (asks unless --yes)\n"
        "  -y, --yes                do not ask for confirmation\n"
        "      --browse             open the session browser\n"
        "      --continue           chat on in the newest saved session\n"
        "      --resume ID          chat on in saved session ID\n"
        "\n"
        "Other:\n"
        "      --jsonl              tokenize: read {\"text\": ...} lines, write {\"ids\": [...]}\n"
        "      --quick              bench: fewer repetitions\n"
        "                           (bench --backend cpu --model M adds rows on the file M)\n"
        "      --skip-kernels       bench: no kernel table\n"
        "      --profile            bench: one short end-to-end run (64 in, 8 out) instead of\n"
        "                           the end-to-end tables (to run under a profiler)\n"
        "      --chunks N           perplexity: score at most the first N chunks\n"
        "      --kl-divergence-base F\n"
        "                           perplexity: save the scored positions' logits to F\n"
        "      --kl-divergence F    perplexity: compare with the base file F (its tokens\n"
        "                           are scored): KL divergence, top-1 agreement, delta PPL\n"
        "  -h, --help               show this help\n"
        "  -V, --version            show the version\n",
        to);
}

enum {
    OPT_TEMP = 1000, OPT_TOPK, OPT_TOPP, OPT_MINP, OPT_REPEAT, OPT_SEED, OPT_DB, OPT_NOHIST,
    OPT_SESSIONS, OPT_SHOW, OPT_SEARCH, OPT_EXPORT, OPT_FORMAT, OPT_DELETE, OPT_BROWSE,
    OPT_JSONL, OPT_QUICK, OPT_LMHEAD, OPT_CONTINUE, OPT_RESUME, OPT_FORCE, OPT_KLBASE, OPT_KL,
    OPT_KVCACHE, OPT_CHUNKS, OPT_MMAP, OPT_SKIP_KERNELS, OPT_PROFILE,
};

static const struct option long_opts[] = {
    {"model", required_argument, 0, 'm'},     {"backend", required_argument, 0, 'b'},
    {"threads", required_argument, 0, 't'},   {"ctx", required_argument, 0, 'c'},
    {"prompt", required_argument, 0, 'p'},    {"system", required_argument, 0, 's'},
    {"file", required_argument, 0, 'f'},
    {"temp", required_argument, 0, OPT_TEMP}, {"top-k", required_argument, 0, OPT_TOPK},
    {"top-p", required_argument, 0, OPT_TOPP}, {"min-p", required_argument, 0, OPT_MINP},
    {"repeat-penalty", required_argument, 0, OPT_REPEAT},
    {"seed", required_argument, 0, OPT_SEED}, {"max-tokens", required_argument, 0, 'n'},
    {"db", required_argument, 0, OPT_DB},     {"no-history", no_argument, 0, OPT_NOHIST},
    {"sessions", no_argument, 0, OPT_SESSIONS}, {"show", required_argument, 0, OPT_SHOW},
    {"search", required_argument, 0, OPT_SEARCH}, {"export", required_argument, 0, OPT_EXPORT},
    {"format", required_argument, 0, OPT_FORMAT}, {"output", required_argument, 0, 'o'},
    {"delete", required_argument, 0, OPT_DELETE}, {"yes", no_argument, 0, 'y'},
    {"browse", no_argument, 0, OPT_BROWSE},   {"jsonl", no_argument, 0, OPT_JSONL},
    {"continue", no_argument, 0, OPT_CONTINUE}, {"resume", required_argument, 0, OPT_RESUME},
    {"force", no_argument, 0, OPT_FORCE},
    {"quick", no_argument, 0, OPT_QUICK},     {"lm-head", required_argument, 0, OPT_LMHEAD},     {"help", no_argument, 0, 'h'},
    {"kl-divergence-base", required_argument, 0, OPT_KLBASE},
    {"kl-divergence", required_argument, 0, OPT_KL},
    {"kv-cache", required_argument, 0, OPT_KVCACHE},
    {"mmap", no_argument, 0, OPT_MMAP},
    {"skip-kernels", no_argument, 0, OPT_SKIP_KERNELS},
    {"profile", no_argument, 0, OPT_PROFILE},
    {"chunks", required_argument, 0, OPT_CHUNKS},
    {"version", no_argument, 0, 'V'},         {0, 0, 0, 0},
};

static int parse_double(const char *opt, const char *s, double lo, double hi, double *out) {
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

static int parse_i64(const char *opt, const char *s, long long lo, long long hi, int64_t *out) {
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

/* A sampling option: its value into *dst, and its bit into the set-mask (given). */
static int parse_setting(AppConfig *c, const char *opt, const char *s, double lo, double hi,
                         float *dst, unsigned bit) {
    double v;
    if (parse_double(opt, s, lo, hi, &v)) return -1;
    *dst = (float)v;
    c->sampling.set |= bit;
    return 0;
}

/* True when s holds something besides spaces, tabs and line breaks. */
static bool has_visible_text(const char *s) {
    for (; s && *s; s++)
        if (!strchr(" \t\r\n\v\f", *s)) return true;
    return false;
}

static int set_mode(AppConfig *c, AppMode m, const char *opt) {
    if (c->mode != MODE_CHAT && c->mode != m) {
        fprintf(stderr, "bitnet-chat: %s cannot be combined with another mode\n", opt);
        return -1;
    }
    c->mode = m;
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

int cli_parse(AppConfig *c, int argc, char **argv) {
    protect_std_fds();
    memset(c, 0, sizeof *c);
    c->backend = "auto";

    /* A leading word selects a subcommand. */
    int first = 1;
    if (argc > 1) {
        const char *w = argv[1];
        if (!strcmp(w, "convert")) c->mode = MODE_CONVERT, first = 2;
        else if (!strcmp(w, "tokenize")) c->mode = MODE_TOKENIZE, first = 2;
        else if (!strcmp(w, "bench")) c->mode = MODE_BENCH, first = 2;
        else if (!strcmp(w, "perplexity")) c->mode = MODE_PERPLEXITY, first = 2;
    }
    optind = first;
    opterr = 1;
    int ch;
    int64_t iv;
    double dv;
    while ((ch = getopt_long(argc, argv, "m:b:t:c:p:f:s:n:o:yhV", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'm': c->model = optarg; break;
        case 'b':
            if (strcmp(optarg, "auto") && strcmp(optarg, "cpu") && strcmp(optarg, "cuda")) {
                fprintf(stderr, "bitnet-chat: --backend: expected auto, cpu or cuda, not '%s'\n",
                        optarg);
                return 2;
            }
            c->backend = optarg;
            break;
        case 't':
            /* 0 is refused rather than read as "all cores": leaving the option out says that */
            if (parse_i64("--threads", optarg, 1, 1024, &iv)) return 2;
            c->threads = (int)iv;
            break;
        case 'c':
            if (parse_i64("--ctx", optarg, 1, 1 << 20, &iv)) return 2;
            c->ctx = (int)iv;
            break;
        case 'p':
            if (c->mode != MODE_CHAT && c->mode != MODE_PROMPT) {
                fprintf(stderr, "bitnet-chat: -p cannot be combined with a subcommand\n");
                return 2;
            }
            c->mode = MODE_PROMPT;
            c->prompt = optarg;
            break;
        case 'f':
            if (c->mode != MODE_CHAT && c->mode != MODE_PROMPT) {
                fprintf(stderr, "bitnet-chat: -f cannot be combined with a subcommand\n");
                return 2;
            }
            if (!optarg[0]) {
                fprintf(stderr, "bitnet-chat: -f: empty file name (- reads stdin)\n");
                return 2;
            }
            c->mode = MODE_PROMPT;
            c->prompt_file = optarg;
            break;
        case 's': c->system = optarg; break;
        case OPT_TEMP:
            if (parse_setting(c, "--temp", optarg, 0, 100, &c->sampling.temperature,
                              SAMPLER_SET_TEMPERATURE))
                return 2;
            break;
        case OPT_TOPK:
            if (parse_i64("--top-k", optarg, 0, 1 << 24, &iv)) return 2;
            c->sampling.top_k = (int)iv;
            c->sampling.set |= SAMPLER_SET_TOP_K;
            break;
        case OPT_TOPP:
            if (parse_setting(c, "--top-p", optarg, 0, 1, &c->sampling.top_p, SAMPLER_SET_TOP_P))
                return 2;
            break;
        case OPT_MINP:
            if (parse_setting(c, "--min-p", optarg, 0, 1, &c->sampling.min_p, SAMPLER_SET_MIN_P))
                return 2;
            break;
        case OPT_REPEAT:
            if (parse_setting(c, "--repeat-penalty", optarg, 0.01, 100, &c->sampling.repeat_penalty,
                              SAMPLER_SET_REPEAT_PENALTY))
                return 2;
            break;
        case OPT_SEED:
            if (parse_i64("--seed", optarg, 0, INT64_MAX, &iv)) return 2;
            c->sampling.seed = (uint64_t)iv;
            c->sampling.set |= SAMPLER_SET_SEED;
            break;
        case 'n':
            if (parse_i64("--max-tokens", optarg, 1, 1 << 24, &iv)) return 2;
            c->sampling.max_tokens = (int)iv;
            c->sampling.set |= SAMPLER_SET_MAX_TOKENS;
            break;
        case OPT_DB: c->db_path = optarg; break;
        case OPT_NOHIST: c->no_history = true; break;
        case OPT_SESSIONS: if (set_mode(c, MODE_SESSIONS, "--sessions")) return 2; break;
        case OPT_SHOW:
        case OPT_EXPORT:
        case OPT_DELETE: {
            const char *name = ch == OPT_SHOW ? "--show" : ch == OPT_EXPORT ? "--export" : "--delete";
            if (parse_i64(name, optarg, 1, INT64_MAX, &c->session_id)) return 2;
            if (set_mode(c, ch == OPT_SHOW ? MODE_SHOW : ch == OPT_EXPORT ? MODE_EXPORT : MODE_DELETE,
                         name))
                return 2;
            break;
        }
        case OPT_SEARCH:
            if (set_mode(c, MODE_SEARCH, "--search")) return 2;
            c->search = optarg;
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "md") && strcmp(optarg, "json")) {
                fprintf(stderr, "bitnet-chat: --format: expected md or json, not '%s'\n", optarg);
                return 2;
            }
            c->format = optarg;
            break;
        case 'o': c->output = optarg; break;
        case 'y': c->yes = true; break;
        case OPT_BROWSE: if (set_mode(c, MODE_BROWSE, "--browse")) return 2; break;
        case OPT_CONTINUE: c->resume_latest = true; break;
        case OPT_FORCE: c->force = true; break;
        case OPT_RESUME:
            if (parse_i64("--resume", optarg, 1, INT64_MAX, &c->resume_id)) return 2;
            break;
        case OPT_JSONL: c->jsonl = true; break;
        case OPT_QUICK: c->quick = true; break;
        case OPT_SKIP_KERNELS: c->bench_skip_kernels = true; break;
        case OPT_PROFILE: c->bench_profile = true; break;
        case OPT_KLBASE: c->kl_base = optarg; break;
        case OPT_KL: c->kl_compare = optarg; break;
        case OPT_CHUNKS:
            if (parse_i64("--chunks", optarg, 1, 1 << 30, &iv)) return 2;
            c->chunks = (int)iv;
            break;
        case OPT_MMAP: c->mmap_weights = true; break;
        case OPT_KVCACHE:
            if (strcmp(optarg, "f16") && strcmp(optarg, "f32")) {
                fprintf(stderr, "bitnet-chat: --kv-cache: expected f16 or f32, not '%s'\n", optarg);
                return 2;
            }
            c->kv_f32 = !strcmp(optarg, "f32");
            break;
        case OPT_LMHEAD:
            if (strcmp(optarg, "f16") && strcmp(optarg, "int8")) {
                fprintf(stderr, "bitnet-chat: --lm-head: expected f16 or int8, not '%s'\n", optarg);
                return 2;
            }
            c->lm_head_int8 = !strcmp(optarg, "int8");
            break;
        case 'h': c->mode = MODE_HELP; return 0;
        case 'V': c->mode = MODE_VERSION; return 0;
        default:
            fprintf(stderr, "Try 'bitnet-chat --help' for more information.\n");
            return 2;
        }
    }
    (void)dv;
    if (c->db_path && !c->db_path[0]) {
        fprintf(stderr, "bitnet-chat: --db: empty path (leave the option out for the default)\n");
        return 2;
    }
    if (c->prompt && c->prompt_file && !strcmp(c->prompt, "-") && !strcmp(c->prompt_file, "-")) {
        fprintf(stderr, "bitnet-chat: -p - and -f - both read stdin: give one of them\n");
        return 2;
    }
    if ((c->resume_latest || c->resume_id) && c->mode != MODE_CHAT) {
        fprintf(stderr, "bitnet-chat: --continue and --resume open the chat; they cannot be "
                        "combined with another mode\n");
        return 2;
    }
    if (c->resume_latest && c->resume_id) {
        fprintf(stderr, "bitnet-chat: give either --continue or --resume ID\n");
        return 2;
    }
    if ((c->resume_latest || c->resume_id) && c->no_history) {
        fprintf(stderr, "bitnet-chat: --continue and --resume write to the history; they cannot "
                        "be combined with --no-history\n");
        return 2;
    }
    if (c->format && c->mode != MODE_EXPORT && c->mode != MODE_SESSIONS && c->mode != MODE_SHOW &&
        c->mode != MODE_SEARCH) {
        fprintf(stderr, "bitnet-chat: --format applies to --export, --sessions, --show and "
                        "--search only\n");
        return 2;
    }
    if (c->mode == MODE_PROMPT && c->prompt && !has_visible_text(c->prompt)) {
        fprintf(stderr, "bitnet-chat: -p: the prompt is empty\n");
        return 2;
    }
    c->npos = argc - optind;
    c->pos = argv + optind;
    /* Threads beyond the CPUs this process may run on only wait for each other (1000 made the
     * first token take 15 s), so the request is capped, and said once. */
    const int cpus = infer_cpu_count();
    if (c->threads > cpus) {
        const bool runs_model = c->mode == MODE_CHAT || c->mode == MODE_PROMPT ||
                                c->mode == MODE_PERPLEXITY || c->mode == MODE_BENCH;
        if (runs_model)
            fprintf(stderr, "bitnet-chat: --threads %d is more than the %d CPU%s available; "
                            "using %d\n", c->threads, cpus, cpus == 1 ? "" : "s", cpus);
        c->threads = cpus;
    }

    if ((c->kl_base || c->kl_compare || c->chunks) && c->mode != MODE_PERPLEXITY) {
        fprintf(stderr, "bitnet-chat: %s belongs to the perplexity subcommand\n",
                c->kl_base ? "--kl-divergence-base" : c->kl_compare ? "--kl-divergence" : "--chunks");
        return 2;
    }

    switch (c->mode) {
    case MODE_CHAT:
    case MODE_PROMPT:
    case MODE_BROWSE:
        if (c->npos > 1) {
            fprintf(stderr, "bitnet-chat: unexpected argument '%s'\n", c->pos[1]);
            return 2;
        }
        if (c->npos == 1) {
            if (c->model) {
                fprintf(stderr, "bitnet-chat: give the model either as MODEL or with --model\n");
                return 2;
            }
            c->model = c->pos[0];
        }
        break;
    case MODE_CONVERT:
        if (c->npos != 2) {
            fprintf(stderr, "bitnet-chat: usage: bitnet-chat convert SRC OUT.gguf\n");
            return 2;
        }
        break;
    case MODE_TOKENIZE:
        if (c->npos < 1 || c->npos > 2) {
            fprintf(stderr, "bitnet-chat: usage: bitnet-chat tokenize MODEL_OR_TOKENIZER [TEXT]\n");
            return 2;
        }
        break;
    case MODE_PERPLEXITY:
        /* with --kl-divergence the tokens come from the base file; a text FILE is optional */
        if (c->npos > 1 || (c->npos == 0 && !c->kl_compare) || !c->model) {
            fprintf(stderr, "bitnet-chat: usage: bitnet-chat perplexity --model M FILE [--ctx N] "
                            "[--kl-divergence-base BASE] or --kl-divergence BASE\n");
            return 2;
        }
        break;
    default:
        if (c->npos) {
            fprintf(stderr, "bitnet-chat: unexpected argument '%s'\n", c->pos[0]);
            return 2;
        }
    }
    return 0;
}
