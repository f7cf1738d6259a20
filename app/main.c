/* bitnet-chat: the composition root. Parses the command line and hands over to one mode:
 * the full-screen chat (ui/), a one-shot prompt, the history tools, or a utility subcommand.
 * This is the one file of app/ allowed to call into ui/. */
#include <locale.h>
#include <stdio.h>

#include "app/cli.h"
#include "app/commands_cli.h"
#include "ui/ui.h"

int main(int argc, char **argv) {
    setlocale(LC_ALL, "");
    AppConfig cfg;
    int rc = cli_parse(&cfg, argc, argv);
    if (rc) return rc;
    switch (cfg.mode) {
    case MODE_HELP: cli_usage(stdout); return 0;
    case MODE_VERSION: printf("bitnet-chat %s\n", BITNET_VERSION); return 0;
    case MODE_CHAT: return ui_run_chat(&cfg);
    case MODE_BROWSE: return ui_run_browser(&cfg);
    case MODE_PROMPT: return cmd_prompt(&cfg);
    case MODE_PERPLEXITY: return cmd_perplexity(&cfg);
    case MODE_CONVERT: return cmd_convert(&cfg);
    case MODE_TOKENIZE: return cmd_tokenize(&cfg);
    case MODE_BENCH: return cmd_bench(&cfg);
    case MODE_SESSIONS:
    case MODE_SHOW:
    case MODE_SEARCH:
    case MODE_EXPORT:
    case MODE_DELETE: return cmd_sessions(&cfg);
    }
    return 2;
}
