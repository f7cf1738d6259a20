/* Slash commands of the chat: one table of {name, usage, help, arity, exec}, in the manner of
 * tmux's command entries. The table's arity is checked in one place (commands_exec); each exec
 * receives its own entry and its split arguments, validates their values, changes the App and
 * returns AppReaction flags (app/app.h); it never draws. A mistake (unknown command, bad
 * argument) sets the App's one-line hint, always as "NAME: why (usage: USAGE)" for arguments. */
#ifndef BN_COMMANDS_H
#define BN_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/app.h"

typedef struct Command Command;

/* A command's arguments: words separated by spaces or tabs, except that the last one a command
 * takes runs to the end of the line (a path, a title or a system prompt may hold spaces):
 * "/export md my notes.md" gives "md" and "my notes.md". */
enum { CMD_MAX_ARGS = 2 };
typedef struct {
    int n;                        /* how many were given, at most the command's max_args */
    const char *v[CMD_MAX_ARGS];  /* each without the white space around it */
    const char *all;              /* the whole argument text, trimmed */
} CmdArgs;

/* Runs the command; self is its own table entry (its name and usage for messages). The number
 * of arguments has been checked against min_args/max_args. Returns AppReaction flags. */
typedef int (*CommandExec)(const Command *self, App *a, const CmdArgs *args);

struct Command {
    const char *name;   /* "/temp" */
    const char *usage;  /* "/temp [T]" */
    const char *help;   /* one line */
    int min_args, max_args; /* 0..CMD_MAX_ARGS */
    CommandExec exec;
    int variant;        /* tells apart the commands that share one exec (the settings) */
    bool arg_is_path;   /* Tab completes file names in its argument */
    bool full_name;     /* leaves or drops what the chat holds: never run from a prefix */
};

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
/* Runs c with the argument text args: splits it, checks the arity, calls c->exec. */
int commands_exec(const Command *c, App *a, const char *args);

/* Argument parsing shared by the handlers (exported for tests). Each returns 0 and the value,
 * or -1 with a one-line reason in why. */
int cmd_parse_double(const char *s, double lo, double hi, double *out, char *why, size_t whylen);
int cmd_parse_int(const char *s, long long lo, long long hi, long long *out, char *why,
                  size_t whylen);

#endif
