/* The command line's modes besides the chat (app/main.c picks one from AppConfig.mode): one
 * entry point each, returning the process exit code. Each lives in its own file (app/cmd_*.c).
 * Named mode_* so that they are never confused with the chat's slash commands (app/commands.h). */
#ifndef BN_MODES_H
#define BN_MODES_H

#include <stddef.h>

#include "app/cli.h"
#include "app/termsafe.h"

int mode_prompt(const AppConfig *cfg);      /* -p, -f: app/cmd_prompt.c */
int mode_perplexity(const AppConfig *cfg);  /* perplexity: app/cmd_prompt.c */
int mode_convert(const AppConfig *cfg);     /* convert: app/cmd_convert.c */
int mode_tokenize(const AppConfig *cfg);    /* tokenize: app/cmd_tokenize.c */
int mode_bench(const AppConfig *cfg);       /* bench: app/cmd_bench.c */
int mode_sessions(const AppConfig *cfg);    /* --sessions/--show/--search/--export/--delete:
                                               app/cmd_sessions.c */

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

#endif
