/* The non-interactive entry points, one per mode; each returns the process exit code.
 * Each lives in its own file (app/cmd_*.c) so that the areas can grow independently. */
#ifndef BN_COMMANDS_CLI_H
#define BN_COMMANDS_CLI_H

#include <stddef.h>

#include "app/cli.h"

int cmd_prompt(const AppConfig *cfg);      /* app/cmd_prompt.c */
int cmd_perplexity(const AppConfig *cfg);  /* app/cmd_prompt.c */
int cmd_convert(const AppConfig *cfg);     /* app/cmd_convert.c */
int cmd_tokenize(const AppConfig *cfg);    /* app/cmd_tokenize.c */
int cmd_bench(const AppConfig *cfg);       /* app/cmd_bench.c */
int cmd_sessions(const AppConfig *cfg);    /* app/cmd_sessions.c: --sessions/--show/--search/
                                              --export/--delete */

/* Path of the default model (assets/ next to the binary, the install prefix or the source
 * tree); NULL if none is found. */
const char *app_default_model_path(void);
/* Makes path (a buffer of cap bytes) absolute and normalised in place, as the history stores
 * model paths ("models/x.gguf" and "build/../assets/x.gguf" were stored as typed); left as it
 * is when it cannot be resolved. */
void app_absolute_path(char *path, size_t cap);

#endif
