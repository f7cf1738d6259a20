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
    bool full_name;     /* leaves or drops what the chat holds: never run from a prefix */
} Command;

const Command *commands_table(int *n);

typedef enum {
    CMD_FOUND,      /* the exact name, or a prefix of exactly one command */
    CMD_UNKNOWN,    /* no command starts so */
    CMD_AMBIGUOUS,  /* a prefix of several: *out is the first of them */
    CMD_FULL_NAME,  /* a prefix of one command that must be typed in full: *out is it */
} CmdMatch;
/* Looks up name[0..len) ("/he" -> /help). Prefixes are taken only when they name one command
 * and that command is harmless to run by mistake (not full_name). */
CmdMatch commands_match(const char *name, size_t len, const Command **out);
/* The names starting with name[0..len), space-separated ("/regen /rename ..."). */
void commands_prefixed(const char *name, size_t len, char *out, size_t cap);
/* commands_match() == CMD_FOUND ? that command : NULL. */
const Command *commands_find(const char *name, size_t len);
/* line starts with '/'. Returns reactions. */
int commands_run(App *a, const char *line);

/* Argument parsing shared by the handlers (exported for tests). Each returns 0 and the value,
 * or -1 with a one-line reason in why. */
int cmd_parse_double(const char *s, double lo, double hi, double *out, char *why, size_t whylen);
int cmd_parse_int(const char *s, long long lo, long long hi, long long *out, char *why,
                  size_t whylen);

#endif
