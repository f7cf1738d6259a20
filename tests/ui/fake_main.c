/* bitnet-chat-fake: the real UI and App over the scripted engine (tests/ui/fake_engine.c).
 * With BN_FAKE_REPORT_TERM set it prints, after the screen is given back, how the start-up
 * probe found the terminal to draw emoji sequences (tests/ui/test_probe.py checks it). */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#include "app/cli.h"
#include "ui/textwidth.h"
#include "ui/ui.h"

int main(int argc, char **argv) {
    setlocale(LC_ALL, "");
    AppConfig cfg;
    int rc = cli_parse(&cfg, argc, argv);
    if (rc) return rc;
    rc = cfg.mode == MODE_BROWSE ? ui_run_browser(&cfg) : ui_run_chat(&cfg);
    if (getenv("BN_FAKE_REPORT_TERM")) {
        TwTerm t = tw_get_terminal();
        fprintf(stderr, "terminal: zwj_joins=%d modifier_joins=%d vs16_widens=%d\n", t.zwj_joins,
                t.modifier_joins, t.vs16_widens);
    }
    return rc;
}
