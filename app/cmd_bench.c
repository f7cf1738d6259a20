/* Placeholder until this mode is implemented: fails loudly, never pretends. */
#include <stdio.h>

#include "app/commands_cli.h"

int cmd_bench(const AppConfig *cfg) {
    (void)cfg;
    fprintf(stderr, "bitnet-chat: 'bench' is not implemented yet\n");
    return 2;
}
