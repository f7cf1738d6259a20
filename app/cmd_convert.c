/* Placeholder until this mode is implemented: fails loudly, never pretends. */
#include <stdio.h>

#include "app/commands_cli.h"

int cmd_convert(const AppConfig *cfg) {
    (void)cfg;
    fprintf(stderr, "bitnet-chat: 'convert' is not implemented yet\n");
    return 2;
}
