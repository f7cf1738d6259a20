/* app/cli.c without a process per case: what each option sets, the exact one-line message of
 * every value an option refuses (its range, its choices), the modes and the checks across
 * options. The command-line tests (tests/cli/) run the binary on some of these; this one covers
 * every option, so that a change in how the options are parsed shows here first. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cli.h"
#include "check.h"
#include "infer/infer.h"

static AppConfig cfg;
static char err_text[4096];

/* cli_parse over the arguments (a NULL-terminated list after "bitnet-chat"), with what it
 * writes to stderr kept in err_text. Returns cli_parse's code. */
static int parse_v(const char *first, va_list ap) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "bitnet-chat";
    for (const char *s = first; s && argc < 63; s = va_arg(ap, const char *))
        argv[argc++] = (char *)s;
    argv[argc] = NULL;
    fflush(stderr);
    int saved = dup(2);
    FILE *tmp = tmpfile();
    REQUIRE(saved >= 0 && tmp != NULL);
    dup2(fileno(tmp), 2);
    int rc = cli_parse(&cfg, argc, argv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(err_text, 1, sizeof err_text - 1, tmp);
    err_text[n] = 0;
    fclose(tmp);
    return rc;
}

static int parse(const char *first, ...) {
    va_list ap;
    va_start(ap, first);
    int rc = parse_v(first, ap);
    va_end(ap);
    return rc;
}

/* The arguments must be refused (exit code 2) with exactly this on stderr. */
#define REFUSED(want, ...)                                                                    \
    do {                                                                                      \
        int rc_ = parse(__VA_ARGS__, (const char *)NULL);                                     \
        CHECK_MSG(rc_ == 2, "%s: rc %d", want, rc_);                                          \
        CHECK_STREQ(err_text, want);                                                          \
    } while (0)

/* The arguments must be accepted, silently. */
#define ACCEPTED(...)                                                                         \
    do {                                                                                      \
        int rc_ = parse(__VA_ARGS__, (const char *)NULL);                                     \
        CHECK_MSG(rc_ == 0, "rc %d: %s", rc_, err_text);                                      \
        CHECK_STREQ(err_text, "");                                                            \
    } while (0)

static void test_defaults(void) {
    ACCEPTED("--no-history");
    CHECK_EQ_INT(cfg.mode, MODE_CHAT);
    CHECK_STREQ(cfg.backend, "auto");
    CHECK(cfg.model == NULL && cfg.prompt == NULL && cfg.prompt_file == NULL);
    CHECK_EQ_INT(cfg.sampling.set, 0); /* no sampling setting given */
    CHECK_EQ_INT(cfg.threads, 0);
    CHECK_EQ_INT(cfg.ctx, 0);
    CHECK(cfg.no_history && !cfg.lm_head_int8 && !cfg.kv_f32 && !cfg.mmap_weights);
    CHECK(cfg.format == NULL && cfg.output == NULL && cfg.db_path == NULL);
    CHECK_EQ_INT(cfg.npos, 0);
}

/* Each option lands in its field, by its long and (where it has one) its short name. */
static void test_values(void) {
    ACCEPTED("-m", "x.gguf", "-b", "cpu", "-t", "1", "-c", "64", "-s", "Be brief.", "-n", "9");
    CHECK_STREQ(cfg.model, "x.gguf");
    CHECK_STREQ(cfg.backend, "cpu");
    CHECK_EQ_INT(cfg.threads, 1);
    CHECK_EQ_INT(cfg.ctx, 64);
    CHECK_STREQ(cfg.system, "Be brief.");
    CHECK_EQ_INT(cfg.sampling.max_tokens, 9);
    CHECK_EQ_INT(cfg.sampling.set, SAMPLER_SET_MAX_TOKENS);
    ACCEPTED("--model", "y", "--backend", "cuda", "--threads", "1", "--ctx", "1048576",
             "--system", "s", "--max-tokens", "16777216");
    CHECK_STREQ(cfg.model, "y");
    CHECK_STREQ(cfg.backend, "cuda");
    CHECK_EQ_INT(cfg.ctx, 1 << 20);
    CHECK_EQ_INT(cfg.sampling.max_tokens, 1 << 24);
    ACCEPTED("--temp", "0.25", "--top-k", "0", "--top-p", "1", "--min-p", "0",
             "--repeat-penalty", "0.01", "--seed", "9223372036854775807");
    CHECK_NEAR(cfg.sampling.temperature, 0.25, 0);
    CHECK_EQ_INT(cfg.sampling.top_k, 0);
    CHECK_NEAR(cfg.sampling.top_p, 1, 0);
    CHECK_NEAR(cfg.sampling.min_p, 0, 0);
    CHECK_NEAR(cfg.sampling.repeat_penalty, 0.01f, 0);
    CHECK(cfg.sampling.seed == (uint64_t)INT64_MAX);
    CHECK_EQ_INT(cfg.sampling.set, SAMPLER_SET_TEMPERATURE | SAMPLER_SET_TOP_K | SAMPLER_SET_TOP_P |
                                       SAMPLER_SET_MIN_P | SAMPLER_SET_REPEAT_PENALTY |
                                       SAMPLER_SET_SEED);
    ACCEPTED("--temp", "100", "--top-k", "16777216", "--repeat-penalty", "100", "--seed", "0");
    CHECK_NEAR(cfg.sampling.temperature, 100, 0);
    CHECK_EQ_INT(cfg.sampling.top_k, 1 << 24);
    CHECK_NEAR(cfg.sampling.repeat_penalty, 100, 0);
    CHECK((cfg.sampling.set & SAMPLER_SET_SEED) && cfg.sampling.seed == 0);
    ACCEPTED("--lm-head", "int8", "--kv-cache", "f32", "--mmap", "--db", "h.db", "--continue");
    CHECK(cfg.lm_head_int8 && cfg.kv_f32 && cfg.mmap_weights && cfg.resume_latest);
    CHECK_STREQ(cfg.db_path, "h.db");
    ACCEPTED("--lm-head", "f16", "--kv-cache", "f16", "--resume", "7");
    CHECK(!cfg.lm_head_int8 && !cfg.kv_f32 && !cfg.resume_latest);
    CHECK_EQ_INT(cfg.resume_id, 7);
    ACCEPTED("--backend", "auto", "m.gguf");
    CHECK_STREQ(cfg.model, "m.gguf");
    CHECK_EQ_INT(cfg.npos, 1);
    /* a long option may be shortened while it is unambiguous (getopt_long) */
    ACCEPTED("--sess");
    CHECK_EQ_INT(cfg.mode, MODE_SESSIONS);
    ACCEPTED("--repeat", "2");
    CHECK_NEAR(cfg.sampling.repeat_penalty, 2, 0);
}

static void test_modes(void) {
    ACCEPTED("-p", "hi", "-f", "-");
    CHECK_EQ_INT(cfg.mode, MODE_PROMPT);
    CHECK_STREQ(cfg.prompt, "hi");
    CHECK_STREQ(cfg.prompt_file, "-");
    ACCEPTED("--prompt", "-", "--file", "f.txt");
    CHECK_STREQ(cfg.prompt, "-");
    CHECK_STREQ(cfg.prompt_file, "f.txt");
    ACCEPTED("--sessions", "--format", "json");
    CHECK_EQ_INT(cfg.mode, MODE_SESSIONS);
    CHECK_STREQ(cfg.format, "json");
    ACCEPTED("--show", "3");
    CHECK_EQ_INT(cfg.mode, MODE_SHOW);
    CHECK_EQ_INT(cfg.session_id, 3);
    ACCEPTED("--export", "9223372036854775807", "--format", "md", "-o", "out.md", "--force");
    CHECK_EQ_INT(cfg.mode, MODE_EXPORT);
    CHECK(cfg.session_id == INT64_MAX && cfg.force);
    CHECK_STREQ(cfg.output, "out.md");
    ACCEPTED("--delete", "1", "-y");
    CHECK_EQ_INT(cfg.mode, MODE_DELETE);
    CHECK(cfg.yes);
    ACCEPTED("--delete", "2", "--yes", "--output", "o");
    CHECK(cfg.yes && cfg.session_id == 2);
    ACCEPTED("--search", "cats");
    CHECK_EQ_INT(cfg.mode, MODE_SEARCH);
    CHECK_STREQ(cfg.search, "cats");
    ACCEPTED("--browse", "m.gguf");
    CHECK_EQ_INT(cfg.mode, MODE_BROWSE);
    CHECK_STREQ(cfg.model, "m.gguf");
    ACCEPTED("convert", "a", "b.gguf");
    CHECK_EQ_INT(cfg.mode, MODE_CONVERT);
    CHECK(cfg.npos == 2 && !strcmp(cfg.pos[0], "a") && !strcmp(cfg.pos[1], "b.gguf"));
    ACCEPTED("tokenize", "--jsonl", "m");
    CHECK_EQ_INT(cfg.mode, MODE_TOKENIZE);
    CHECK(cfg.jsonl && cfg.npos == 1);
    ACCEPTED("tokenize", "m", "some text");
    CHECK_EQ_INT(cfg.npos, 2);
    ACCEPTED("bench", "--quick", "--backend", "cpu");
    CHECK_EQ_INT(cfg.mode, MODE_BENCH);
    CHECK(cfg.quick);
    CHECK(!cfg.bench_skip_kernels && !cfg.bench_profile);
    ACCEPTED("bench", "--skip-kernels", "--profile");
    CHECK(cfg.bench_skip_kernels && cfg.bench_profile);
    ACCEPTED("perplexity", "--model", "m", "t.txt", "--chunks", "1073741824",
             "--kl-divergence-base", "b.kl");
    CHECK_EQ_INT(cfg.mode, MODE_PERPLEXITY);
    CHECK_EQ_INT(cfg.chunks, 1 << 30);
    CHECK_STREQ(cfg.kl_base, "b.kl");
    ACCEPTED("perplexity", "--model", "m", "--kl-divergence", "b.kl");
    CHECK_STREQ(cfg.kl_compare, "b.kl");
    CHECK_EQ_INT(cfg.npos, 0);
    /* help and version end the parse: what follows is not looked at */
    ACCEPTED("-h", "--temp", "nan");
    CHECK_EQ_INT(cfg.mode, MODE_HELP);
    ACCEPTED("--sessions", "--help");
    CHECK_EQ_INT(cfg.mode, MODE_HELP);
    ACCEPTED("convert", "--version", "x");
    CHECK_EQ_INT(cfg.mode, MODE_VERSION);
    ACCEPTED("-V");
    CHECK_EQ_INT(cfg.mode, MODE_VERSION);
}

/* Every option with a range or a set of values: the exact message at each side. */
static void test_ranges(void) {
    REFUSED("bitnet-chat: --threads: '0' is not an integer in [1, 1024]\n", "--threads", "0");
    REFUSED("bitnet-chat: --threads: '1025' is not an integer in [1, 1024]\n", "-t", "1025");
    REFUSED("bitnet-chat: --threads: 'two' is not an integer in [1, 1024]\n", "-t", "two");
    REFUSED("bitnet-chat: --ctx: '0' is not an integer in [1, 1048576]\n", "-c", "0");
    REFUSED("bitnet-chat: --ctx: '1048577' is not an integer in [1, 1048576]\n", "--ctx",
            "1048577");
    REFUSED("bitnet-chat: --ctx: '1x' is not an integer in [1, 1048576]\n", "--ctx", "1x");
    REFUSED("bitnet-chat: --temp: '-0.5' is not a number in [0, 100]\n", "--temp", "-0.5");
    REFUSED("bitnet-chat: --temp: '100.5' is not a number in [0, 100]\n", "--temp", "100.5");
    REFUSED("bitnet-chat: --temp: 'nan' is not a number in [0, 100]\n", "--temp", "nan");
    REFUSED("bitnet-chat: --temp: '' is not a number in [0, 100]\n", "--temp", "");
    REFUSED("bitnet-chat: --top-k: '-1' is not an integer in [0, 16777216]\n", "--top-k", "-1");
    REFUSED("bitnet-chat: --top-k: '16777217' is not an integer in [0, 16777216]\n", "--top-k",
            "16777217");
    REFUSED("bitnet-chat: --top-p: '-0.1' is not a number in [0, 1]\n", "--top-p", "-0.1");
    REFUSED("bitnet-chat: --top-p: '1.5' is not a number in [0, 1]\n", "--top-p", "1.5");
    REFUSED("bitnet-chat: --min-p: '-1' is not a number in [0, 1]\n", "--min-p", "-1");
    REFUSED("bitnet-chat: --min-p: '2' is not a number in [0, 1]\n", "--min-p", "2");
    REFUSED("bitnet-chat: --repeat-penalty: '0' is not a number in [0.01, 100]\n",
            "--repeat-penalty", "0");
    REFUSED("bitnet-chat: --repeat-penalty: '101' is not a number in [0.01, 100]\n",
            "--repeat-penalty", "101");
    REFUSED("bitnet-chat: --seed: '-1' is not an integer in [0, 9223372036854775807]\n",
            "--seed", "-1");
    REFUSED("bitnet-chat: --seed: '9223372036854775808' is not an integer in "
            "[0, 9223372036854775807]\n", "--seed", "9223372036854775808");
    REFUSED("bitnet-chat: --max-tokens: '0' is not an integer in [1, 16777216]\n", "-n", "0");
    REFUSED("bitnet-chat: --max-tokens: '16777217' is not an integer in [1, 16777216]\n",
            "--max-tokens", "16777217");
    REFUSED("bitnet-chat: --show: '0' is not an integer in [1, 9223372036854775807]\n",
            "--show", "0");
    REFUSED("bitnet-chat: --export: 'x' is not an integer in [1, 9223372036854775807]\n",
            "--export", "x");
    REFUSED("bitnet-chat: --delete: '-3' is not an integer in [1, 9223372036854775807]\n",
            "--delete", "-3");
    REFUSED("bitnet-chat: --resume: '0' is not an integer in [1, 9223372036854775807]\n",
            "--resume", "0");
    REFUSED("bitnet-chat: --chunks: '0' is not an integer in [1, 1073741824]\n", "perplexity",
            "--chunks", "0");
    REFUSED("bitnet-chat: --chunks: '1073741825' is not an integer in [1, 1073741824]\n",
            "perplexity", "--chunks", "1073741825");
    REFUSED("bitnet-chat: --backend: expected auto, cpu or cuda, not 'gpu'\n", "-b", "gpu");
    REFUSED("bitnet-chat: --backend: expected auto, cpu or cuda, not ''\n", "--backend", "");
    REFUSED("bitnet-chat: --format: expected md or json, not 'html'\n", "--export", "1",
            "--format", "html");
    REFUSED("bitnet-chat: --kv-cache: expected f16 or f32, not 'f8'\n", "--kv-cache", "f8");
    REFUSED("bitnet-chat: --lm-head: expected f16 or int8, not 'int4'\n", "--lm-head", "int4");
    REFUSED("bitnet-chat: -f: empty file name (- reads stdin)\n", "-f", "");
    /* the first bad option is the one reported */
    REFUSED("bitnet-chat: --temp: 'hot' is not a number in [0, 100]\n", "--temp", "hot",
            "--top-p", "2");
}

/* Options that do not go together, modes, positional arguments. */
static void test_combinations(void) {
    REFUSED("bitnet-chat: --search cannot be combined with another mode\n", "--sessions",
            "--search", "x");
    REFUSED("bitnet-chat: --sessions cannot be combined with another mode\n", "-p", "hi",
            "--sessions");
    REFUSED("bitnet-chat: --browse cannot be combined with another mode\n", "--show", "1",
            "--browse");
    REFUSED("bitnet-chat: --export cannot be combined with another mode\n", "bench",
            "--export", "1");
    REFUSED("bitnet-chat: -p cannot be combined with a subcommand\n", "convert", "-p", "x");
    REFUSED("bitnet-chat: -p cannot be combined with a subcommand\n", "--sessions", "-p", "x");
    REFUSED("bitnet-chat: -f cannot be combined with a subcommand\n", "tokenize", "-f", "x");
    REFUSED("bitnet-chat: --db: empty path (leave the option out for the default)\n", "--db", "",
            "--sessions");
    REFUSED("bitnet-chat: -p - and -f - both read stdin: give one of them\n", "-p", "-", "-f",
            "-");
    REFUSED("bitnet-chat: --continue and --resume open the chat; they cannot be combined with "
            "another mode\n", "--continue", "--sessions");
    REFUSED("bitnet-chat: give either --continue or --resume ID\n", "--continue", "--resume", "2");
    REFUSED("bitnet-chat: --continue and --resume write to the history; they cannot be combined "
            "with --no-history\n", "--resume", "2", "--no-history");
    REFUSED("bitnet-chat: --format applies to --export, --sessions, --show and --search only\n",
            "--format", "json", "-p", "hi");
    REFUSED("bitnet-chat: -p: the prompt is empty\n", "-p", " \t\n");
    REFUSED("bitnet-chat: --kl-divergence-base belongs to the perplexity subcommand\n", "-p", "hi",
            "--kl-divergence-base", "b", "--chunks", "2");
    REFUSED("bitnet-chat: --kl-divergence belongs to the perplexity subcommand\n", "--chunks", "2",
            "--kl-divergence", "b");
    REFUSED("bitnet-chat: --chunks belongs to the perplexity subcommand\n", "bench", "--chunks",
            "2");
    REFUSED("bitnet-chat: unexpected argument 'b'\n", "-p", "hi", "a", "b");
    REFUSED("bitnet-chat: unexpected argument 'x'\n", "--sessions", "x");
    REFUSED("bitnet-chat: unexpected argument 'x'\n", "bench", "x");
    REFUSED("bitnet-chat: give the model either as MODEL or with --model\n", "-m", "a", "b");
    REFUSED("bitnet-chat: usage: bitnet-chat convert SRC OUT.gguf\n", "convert", "a");
    REFUSED("bitnet-chat: usage: bitnet-chat convert SRC OUT.gguf\n", "convert", "a", "b", "c");
    REFUSED("bitnet-chat: usage: bitnet-chat tokenize MODEL_OR_TOKENIZER [TEXT]\n", "tokenize");
    REFUSED("bitnet-chat: usage: bitnet-chat tokenize MODEL_OR_TOKENIZER [TEXT]\n", "tokenize",
            "a", "b", "c");
    static const char ppl_usage[] = "bitnet-chat: usage: bitnet-chat perplexity --model M FILE "
                                    "[--ctx N] [--kl-divergence-base BASE] or --kl-divergence "
                                    "BASE\n";
    REFUSED(ppl_usage, "perplexity", "--model", "m");
    REFUSED(ppl_usage, "perplexity", "t.txt");
    REFUSED(ppl_usage, "perplexity", "--model", "m", "a", "b");
    /* both wrong: a number or a choice is read before the mode is taken, and a name's
     * emptiness is looked at after it */
    REFUSED("bitnet-chat: --show: '0' is not an integer in [1, 9223372036854775807]\n",
            "--sessions", "--show", "0");
    REFUSED("bitnet-chat: -f cannot be combined with a subcommand\n", "bench", "-f", "");
    /* getopt's own messages, then the pointer to --help */
    int rc = parse("--no-such-option", (const char *)NULL);
    CHECK_EQ_INT(rc, 2);
    CHECK(strstr(err_text, "no-such-option") != NULL);
    CHECK(strstr(err_text, "Try 'bitnet-chat --help' for more information.\n") != NULL);
    rc = parse("--temp", (const char *)NULL);
    CHECK_EQ_INT(rc, 2);
    CHECK(strstr(err_text, "requires an argument") != NULL);
    rc = parse("--t", "1", (const char *)NULL); /* --temp, --threads, --top-k, --top-p */
    CHECK_EQ_INT(rc, 2);
    CHECK(strstr(err_text, "ambiguous") != NULL);
    rc = parse("-x", (const char *)NULL);
    CHECK_EQ_INT(rc, 2);
    CHECK(strstr(err_text, "invalid option") != NULL);
}

/* More threads than CPUs: capped, said where a model runs, silent elsewhere. */
static void test_threads_cap(void) {
    const int cpus = infer_cpu_count();
    if (cpus >= 1024) return;
    char want[200];
    snprintf(want, sizeof want, "bitnet-chat: --threads 1024 is more than the %d CPU%s available; "
             "using %d\n", cpus, cpus == 1 ? "" : "s", cpus);
    CHECK_EQ_INT(parse("-p", "hi", "-t", "1024", (const char *)NULL), 0);
    CHECK_STREQ(err_text, want);
    CHECK_EQ_INT(cfg.threads, cpus);
    ACCEPTED("--sessions", "-t", "1024");
    CHECK_EQ_INT(cfg.threads, cpus);
}

/* --help: every line fits a terminal of 80 columns or says why not, and each option of the
 * parser is in it (tests/ui/test_manpage.sh compares it with the man page and the README). */
static void test_usage(void) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    REQUIRE(f != NULL);
    cli_usage(f);
    fclose(f);
    CHECK(strncmp(text, "Usage: bitnet-chat ", 19) == 0);
    const char *names[] = {"--model", "--backend", "--threads", "--ctx", "--lm-head",
                           "--kv-cache", "--mmap", "--prompt", "--file", "--system", "--temp",
                           "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--seed",
                           "--max-tokens", "--db", "--no-history", "--sessions", "--show",
                           "--search", "--export", "--format", "--output", "--force",
                           "--delete", "--yes", "--browse", "--continue", "--resume", "--jsonl",
                           "--quick", "--skip-kernels", "--profile", "--chunks",
                           "--kl-divergence-base", "--kl-divergence", "--help", "--version"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s ", names[i]);
        char key_nl[64];
        snprintf(key_nl, sizeof key_nl, "%s\n", names[i]);
        CHECK_MSG(strstr(text, key) || strstr(text, key_nl), "%s is not in --help", names[i]);
    }
    free(text);
}

int main(void) {
    test_defaults();
    test_values();
    test_modes();
    test_ranges();
    test_combinations();
    test_threads_cap();
    test_usage();
    return check_report("test_cli");
}
