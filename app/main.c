/* bitnet-chat: the composition root. Parses the command line and hands over to one mode:
 * the full-screen chat (ui/), a one-shot prompt, the history tools, or a utility subcommand.
 * This is the one file of app/ allowed to call into ui/. */
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "app/cli.h"
#include "app/modes.h"
#include "ui/ui.h"

static int run_mode(const AppConfig *cfg) {
    switch (cfg->mode) {
    case MODE_HELP: cli_usage(stdout); return 0;
    case MODE_VERSION: printf("bitnet-chat %s\n", BITNET_VERSION); return 0;
    case MODE_CHAT: return ui_run_chat(cfg);
    case MODE_BROWSE: return ui_run_browser(cfg);
    case MODE_PROMPT: return mode_prompt(cfg);
    case MODE_PERPLEXITY: return mode_perplexity(cfg);
    case MODE_CONVERT: return mode_convert(cfg);
    case MODE_TOKENIZE: return mode_tokenize(cfg);
    case MODE_BENCH: return mode_bench(cfg);
    case MODE_SESSIONS:
    case MODE_SHOW:
    case MODE_SEARCH:
    case MODE_EXPORT:
    case MODE_DELETE: return mode_sessions(cfg);
    }
    return 2;
}

int main(int argc, char **argv) {
    setlocale(LC_ALL, "");
    AppConfig cfg;
    int rc = cli_parse(&cfg, argc, argv);
    if (rc) return rc;
    rc = run_mode(&cfg);
    /* Output that never arrived (a full disk, a closed stdout) is a failure even where a mode
     * did not check its writes (--help, --version, bench printed into /dev/full and exited 0);
     * modes that did check have already said so and returned nonzero. */
    errno = 0;
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "bitnet-chat: writing to stdout failed: %s\n",
                errno ? strerror(errno) : "the output is incomplete");
        rc = 1;
    }
    return rc;
}
