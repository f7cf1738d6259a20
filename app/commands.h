/* Slash commands of the chat: one table of {name, usage, help, fn}. Handlers parse and
 * validate their arguments, change the App, and return AppReaction flags (app/app.h); they
 * never draw. A mistake (unknown command, bad argument) sets the App's one-line hint. */
#ifndef BN_COMMANDS_H
#define BN_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/app.h"

typedef int (*CommandFn)(App *a, const char *args);

typedef struct {
    const char *name;   /* "/temp" */
    const char *usage;  /* "/temp T" */
    const char *help;   /* one line */
    CommandFn fn;
    bool arg_is_path;   /* Tab completes file names in its argument */
} Command;

const Command *commands_table(int *n);
/* Exact name, or a unique prefix ("/he" -> /help); NULL if none or ambiguous. */
const Command *commands_find(const char *name, size_t len);
/* line starts with '/'. Returns reactions. */
int commands_run(App *a, const char *line);

/* Argument parsing shared by the handlers (exported for tests). Each returns 0 and the value,
 * or -1 with a one-line reason in why. */
int cmd_parse_double(const char *s, double lo, double hi, double *out, char *why, size_t whylen);
int cmd_parse_int(const char *s, long long lo, long long hi, long long *out, char *why,
                  size_t whylen);

#endif
