/* bitnet-chat-fake: the real UI and App over the scripted engine (tests/ui/fake_engine.c). */
#include <locale.h>

#include "app/cli.h"
#include "ui/ui.h"

int main(int argc, char **argv) {
    setlocale(LC_ALL, "");
    AppConfig cfg;
    int rc = cli_parse(&cfg, argc, argv);
    if (rc) return rc;
    if (cfg.mode == MODE_BROWSE) return ui_run_browser(&cfg);
    return ui_run_chat(&cfg);
}
