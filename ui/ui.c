/* Placeholder until the full-screen chat lands: fails loudly, never pretends. */
#include "ui/ui.h"

#include <stdio.h>

int ui_run_chat(const AppConfig *cfg) {
    (void)cfg;
    fprintf(stderr, "bitnet-chat: the full-screen chat is not implemented yet\n");
    return 2;
}

int ui_run_browser(const AppConfig *cfg) {
    (void)cfg;
    fprintf(stderr, "bitnet-chat: the session browser is not implemented yet\n");
    return 2;
}
