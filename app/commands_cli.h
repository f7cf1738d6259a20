/* The non-interactive entry points, one per mode; each returns the process exit code.
 * Each lives in its own file (app/cmd_*.c) so that the areas can grow independently. */
#ifndef BN_COMMANDS_CLI_H
#define BN_COMMANDS_CLI_H

#include <stddef.h>

#include "app/cli.h"
#include "app/termsafe.h"

int cmd_prompt(const AppConfig *cfg);      /* app/cmd_prompt.c */
int cmd_perplexity(const AppConfig *cfg);  /* app/cmd_prompt.c */
int cmd_convert(const AppConfig *cfg);     /* app/cmd_convert.c */
int cmd_tokenize(const AppConfig *cfg);    /* app/cmd_tokenize.c */
int cmd_bench(const AppConfig *cfg);       /* app/cmd_bench.c */
int cmd_sessions(const AppConfig *cfg);    /* app/cmd_sessions.c: --sessions/--show/--search/
                                              --export/--delete */

/* -p's reply writer. To a terminal the model's bytes are made safe (app/termsafe.h): a reply
 * holding ESC, BEL or a C1 control must not drive the terminal; pipes and files get the bytes
 * exactly. The first failed write is kept in err (an errno): later writes are skipped, so the
 * caller stops the reply (which is still saved). */
typedef struct {
    FILE *f;
    int tty;            /* isatty(fileno(f)) at init */
    TermSafe ts;
    int err;
    int ended_newline;  /* the text so far ends with a newline (or is empty) */
} PromptOut;
void prompt_out_init(PromptOut *o, FILE *f);
/* Writes a piece of the reply. Returns 0, or -1 once a write has failed. */
int prompt_out_write(PromptOut *o, const char *s, size_t n);
/* The reply ended: a held byte is written, then a newline unless the text ended with one. */
void prompt_out_end(PromptOut *o);

/* Path of the default model (assets/ next to the binary, the install prefix or the source
 * tree); NULL if none is found. */
const char *app_default_model_path(void);
/* Makes path (a buffer of cap bytes) absolute and normalised in place, as the history stores
 * model paths ("models/x.gguf" and "build/../assets/x.gguf" were stored as typed); left as it
 * is when it cannot be resolved. */
void app_absolute_path(char *path, size_t cap);

#endif
