/* Placeholder until this mode is implemented: fails loudly, never pretends. */
#include <stdio.h>

#include "app/commands_cli.h"

int cmd_prompt(const AppConfig *cfg) {
    (void)cfg;
    fprintf(stderr, "bitnet-chat: 'prompt' is not implemented yet\n");
    return 2;
}

int cmd_perplexity(const AppConfig *cfg) {
    (void)cfg;
    fprintf(stderr, "bitnet-chat: 'perplexity' is not implemented yet\n");
    return 2;
}
