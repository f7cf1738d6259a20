/* Prints what /help shows in the chat (the command table as the user sees it), from an App
 * over the scripted engine with no model and no history. tests/ui/test_manpage.sh compares it
 * with the man page and the README. */
#include <stdio.h>

#include "app/app.h"
#include "app/cli.h"

int main(void) {
    static char *argv[] = {"bitnet-chat", "--no-history", NULL};
    AppConfig cfg;
    if (cli_parse(&cfg, 2, argv)) return 1;
    char why[256];
    AppOptions opt = {.load_model = false};
    App *a = app_create(&cfg, &opt, why, sizeof why);
    if (!a) {
        fprintf(stderr, "slash_help: %s\n", why);
        return 1;
    }
    const int n0 = app_transcript(a)->n;
    app_submit_line(a, "/help");
    const AppTranscript *t = app_transcript(a);
    int rc = 1;
    if (t->n == n0 + 1 && t->msgs[t->n - 1].kind == MSG_NOTE) {
        printf("%s\n", t->msgs[t->n - 1].text);
        rc = 0;
    } else {
        fprintf(stderr, "slash_help: /help wrote no note\n");
    }
    app_destroy(a);
    return rc;
}
