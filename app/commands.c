/* The slash-command table and its handlers (see commands.h). Ranges match the command-line
 * options in app/cli.c so that a value accepted there is accepted here. */
#include "app/commands.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cmd_parse_double(const char *s, double lo, double hi, double *out, char *why, size_t whylen) {
    while (isspace((unsigned char)*s)) s++;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (isspace((unsigned char)*end)) end++;
    if (!*s || errno || end == s || *end || !(v >= lo && v <= hi)) {
        snprintf(why, whylen, "expected a number from %g to %g", lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_parse_int(const char *s, long long lo, long long hi, long long *out, char *why,
                  size_t whylen) {
    while (isspace((unsigned char)*s)) s++;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    while (isspace((unsigned char)*end)) end++;
    if (!*s || errno || end == s || *end || v < lo || v > hi) {
        snprintf(why, whylen, "expected a whole number from %lld to %lld", lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* The one format of an argument mistake: "/temp: expected ... (usage: /temp [T])". */
static int bad_arg(App *a, const Command *self, const char *why) {
    app_set_hint(a, "%s: %s (usage: %s)", self->name, why, self->usage);
    return REACT_STATUS;
}

/* ---- sampling settings: shown without an argument, validated and set with one ---------- */

typedef enum { F_TEMP, F_TOP_P, F_MIN_P, F_REPEAT, F_TOP_K, F_MAX_TOKENS } Field;

/* /temp, /top_p, /min_p, /repeat_penalty, /top_k, /max_tokens: the entry's variant says which. */
static int cmd_setting(const Command *self, App *a, const CmdArgs *args) {
    const Field f = (Field)self->variant;
    SamplerParams s = app_get_sampling(a);
    static const char *names[] = {"temperature", "top-p", "min-p", "repeat penalty", "top-k",
                                  "max tokens"};
    if (!args->n) {
        switch (f) {
        case F_TEMP: app_set_hint(a, "temperature %.2f", s.temperature); break;
        case F_TOP_P: app_set_hint(a, "top-p %.2f", s.top_p); break;
        case F_MIN_P: app_set_hint(a, "min-p %.2f", s.min_p); break;
        case F_REPEAT: app_set_hint(a, "repeat penalty %.2f", s.repeat_penalty); break;
        case F_TOP_K: app_set_hint(a, "top-k %d", s.top_k); break;
        case F_MAX_TOKENS: app_set_hint(a, "max tokens %d", s.max_tokens); break;
        }
        return REACT_STATUS;
    }
    const char *v = args->v[0];
    char why[128];
    double d = 0;
    long long i;
    switch (f) {
    case F_TEMP:
        if (cmd_parse_double(v, 0, 100, &d, why, sizeof why)) return bad_arg(a, self, why);
        s.temperature = (float)d;
        break;
    case F_TOP_P:
        if (cmd_parse_double(v, 0, 1, &d, why, sizeof why)) return bad_arg(a, self, why);
        s.top_p = (float)d;
        break;
    case F_MIN_P:
        if (cmd_parse_double(v, 0, 1, &d, why, sizeof why)) return bad_arg(a, self, why);
        s.min_p = (float)d;
        break;
    case F_REPEAT:
        if (cmd_parse_double(v, 0.01, 100, &d, why, sizeof why)) return bad_arg(a, self, why);
        s.repeat_penalty = (float)d;
        break;
    case F_TOP_K:
        if (cmd_parse_int(v, 0, 1 << 24, &i, why, sizeof why)) return bad_arg(a, self, why);
        s.top_k = (int)i;
        break;
    case F_MAX_TOKENS:
        if (cmd_parse_int(v, 1, 1 << 24, &i, why, sizeof why)) return bad_arg(a, self, why);
        s.max_tokens = (int)i;
        break;
    }
    int r = app_set_sampling(a, &s);
    char val[64];
    switch (f) {
    case F_TOP_K: snprintf(val, sizeof val, "%d", s.top_k); break;
    case F_MAX_TOKENS: snprintf(val, sizeof val, "%d", s.max_tokens); break;
    default: snprintf(val, sizeof val, "%.2f", d); break;
    }
    app_set_hint(a, "%s set to %s%s", names[f], val, app_busy(a) ? " (from the next reply)" : "");
    return r | REACT_STATUS;
}

static int cmd_seed(const Command *self, App *a, const CmdArgs *args) {
    SamplerParams s = app_get_sampling(a);
    char buf[64];
    snprintf(buf, sizeof buf, "%s", args->n ? args->v[0] : "");
    if (!*buf) {
        if (s.set & SAMPLER_SET_SEED) app_set_hint(a, "seed %lld", (long long)s.seed);
        else app_set_hint(a, "seed: a new random seed for every reply");
        return REACT_STATUS;
    }
    if (!strcmp(buf, "random") || !strcmp(buf, "off")) {
        s.set &= ~SAMPLER_SET_SEED;
        app_set_sampling(a, &s);
        app_set_hint(a, "seed: a new random seed for every reply");
        return REACT_STATUS;
    }
    long long v;
    char why[128];
    if (cmd_parse_int(buf, 0, INT64_MAX, &v, why, sizeof why)) {
        snprintf(why, sizeof why, "expected a whole number >= 0 or 'random'");
        return bad_arg(a, self, why);
    }
    s.seed = (uint64_t)v;
    s.set |= SAMPLER_SET_SEED;
    app_set_sampling(a, &s);
    app_set_hint(a, "seed set to %lld: replies are reproducible", v);
    return REACT_STATUS;
}

static int cmd_params(const Command *self, App *a, const CmdArgs *args) {
    SamplerParams s = app_get_sampling(a);
    char seed[48];
    if (s.set & SAMPLER_SET_SEED) snprintf(seed, sizeof seed, "%lld", (long long)s.seed);
    else snprintf(seed, sizeof seed, "random per reply");
    const char *sys = app_get_system(a);
    /* Values in one column wide enough for the longest ("random per reply"), so that the
     * command names line up. */
    char v[7][48];
    snprintf(v[0], sizeof v[0], "%.2f", s.temperature);
    snprintf(v[1], sizeof v[1], "%.2f", s.top_p);
    snprintf(v[2], sizeof v[2], "%d", s.top_k);
    snprintf(v[3], sizeof v[3], "%.2f", s.min_p);
    snprintf(v[4], sizeof v[4], "%.2f", s.repeat_penalty);
    snprintf(v[5], sizeof v[5], "%s", seed);
    snprintf(v[6], sizeof v[6], "%d", s.max_tokens);
    app_note(a, MSG_NOTE,
             "Settings:\n"
             "  temperature     %-16s  /temp\n"
             "  top-p           %-16s  /top_p\n"
             "  top-k           %-16s  /top_k\n"
             "  min-p           %-16s  /min_p\n"
             "  repeat penalty  %-16s  /repeat_penalty\n"
             "  seed            %-16s  /seed\n"
             "  max tokens      %-16s  /max_tokens\n"
             "  system prompt   %s%s%s",
             v[0], v[1], v[2], v[3], v[4], v[5], v[6], *sys ? "\"" : "(none)", sys,
             *sys ? "\"" : "");
    return REACT_CHAT;
}

static int cmd_system(const Command *self, App *a, const CmdArgs *args) {
    if (!args->n) {
        const char *cur = app_get_system(a);
        if (*cur) app_note(a, MSG_NOTE, "System prompt: %s\n(/system - clears it)", cur);
        else app_set_hint(a, "No system prompt. Set one with /system TEXT.");
        return REACT_CHAT | REACT_STATUS;
    }
    int r;
    if (!strcmp(args->v[0], "-")) {
        r = app_set_system(a, NULL);
        app_set_hint(a, "System prompt cleared.");
    } else {
        r = app_set_system(a, args->v[0]);
        app_set_hint(a, "System prompt set; it applies from the next reply.");
    }
    return r | REACT_STATUS;
}

/* ~/ at the start of a path is expanded here, since no shell did it. */
static void expand_home(const char *path, char *out, size_t cap) {
    const char *home = getenv("HOME");
    if (path[0] == '~' && (path[1] == '/' || !path[1]) && home && *home)
        snprintf(out, cap, "%s%s", home, path + 1);
    else
        snprintf(out, cap, "%s", path);
}

static int cmd_load(const Command *self, App *a, const CmdArgs *args) {
    char path[1024];
    snprintf(path, sizeof path, "%s", args->v[0]);
    char full[1200];
    expand_home(path, full, sizeof full);
    return app_load_model(a, full);
}

static int cmd_new(const Command *self, App *a, const CmdArgs *args) {
    return app_new_session(a);
}

static int cmd_regen(const Command *self, App *a, const CmdArgs *args) {
    return app_regenerate(a);
}

static int cmd_clear(const Command *self, App *a, const CmdArgs *args) {
    if (app_busy(a)) {
        /* Clearing would hide the reply being written while it goes on out of sight. */
        app_set_hint(a, "Stop the reply first (Esc), then /clear.");
        return REACT_STATUS;
    }
    return app_clear_view(a);
}

static int cmd_sessions(const Command *self, App *a, const CmdArgs *args) {
    return app_open_browser(a, "");
}

static int cmd_search(const Command *self, App *a, const CmdArgs *args) {
    char q[256];
    snprintf(q, sizeof q, "%s", args->v[0]);
    return app_open_browser(a, q);
}

static int cmd_rename(const Command *self, App *a, const CmdArgs *args) {
    char t[160];
    snprintf(t, sizeof t, "%s", args->v[0]);
    return app_rename_session(a, t);
}

static int cmd_export(const Command *self, App *a, const CmdArgs *args) {
    static const char *const formats[][2] = {{"md", "md"}, {"markdown", "md"}, {"json", "json"}};
    const char *format = "md";
    bool is_format = false;
    /* The first word may be the format; the path is what follows it, or the whole text. */
    for (size_t i = 0; args->n && i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(args->v[0], formats[i][0])) {
            format = formats[i][1];
            is_format = true;
        }
    if (!is_format && args->n == 1) {
        /* One bare word that names another format ("/export txt") is a mistake, not a file
         * name: a file called "txt" in the working directory would surprise. */
        static const char *const others[] = {"txt", "text", "html", "xml", "csv", "yaml",
                                             "yml", "pdf", "org", "rst", "jsonl"};
        for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
            if (!strcmp(args->v[0], others[i])) {
                char why[120];
                snprintf(why, sizeof why, "no format '%s': md or json (a file named so: ./%s)",
                         others[i], others[i]);
                return bad_arg(a, self, why);
            }
    }
    char path[1200];
    snprintf(path, sizeof path, "%s", is_format ? (args->n > 1 ? args->v[1] : "") : args->all);
    if (*path && !strcmp(format, "md") && !is_format) {
        size_t pl = strlen(path);
        if (pl > 5 && !strcmp(path + pl - 5, ".json")) format = "json";
    }
    char full[1300];
    if (*path) {
        expand_home(path, full, sizeof full);
        /* Never overwrite: an existing file may be anything, a previous export included. A
         * directory takes a new time-stamped file (app_export). */
        struct stat sb;
        if (stat(full, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
            char why[1400];
            snprintf(why, sizeof why, "%s already exists; choose another name", full);
            return bad_arg(a, self, why);
        }
    }
    char written[1400], why[512];
    if (app_export(a, format, *path ? full : NULL, written, sizeof written, why, sizeof why)) {
        app_set_hint(a, "Export failed: %s", why);
        return REACT_STATUS;
    }
    app_set_hint(a, "Exported to %s", written);
    return REACT_STATUS;
}

/* "1 token", "2 tokens". */
static const char *plural(int n, const char *one, const char *many) { return n == 1 ? one : many; }

static int cmd_stats(const Command *self, App *a, const CmdArgs *args) {
    AppStatus st;
    app_status(a, &st);
    const AppTranscript *t = app_transcript(a);
    /* The running reply counts too (its figures so far); mean speed over replies that had one. */
    int replies = 0, tokens = 0, users = 0, timed = 0;
    double tok_s_sum = 0;
    for (int i = 0; i < t->n; i++) {
        const AppMessage *m = &t->msgs[i];
        if (m->kind == MSG_USER) users++;
        if (m->kind != MSG_ASSISTANT) continue;
        replies++;
        tokens += m->gen_tokens;
        if (m->tok_s > 0) tok_s_sum += m->tok_s, timed++;
    }
    char last[200], session[200], mean[48];
    if (st.gen_tokens || st.generating)
        snprintf(last, sizeof last, "%s%d %s, %.1f tok/s, first token after %.0f ms, prompt %d %s",
                 st.generating ? "(being written) " : "", st.gen_tokens,
                 plural(st.gen_tokens, "token", "tokens"), st.tok_s, st.ttft_ms, st.prompt_tokens,
                 plural(st.prompt_tokens, "token", "tokens"));
    else
        snprintf(last, sizeof last, "none yet");
    if (timed) snprintf(mean, sizeof mean, ", mean %.1f tok/s", tok_s_sum / timed);
    else mean[0] = 0;
    snprintf(session, sizeof session, "%d %s, %d %s, %d reply %s%s", users + replies,
             plural(users + replies, "message", "messages"), replies,
             plural(replies, "reply", "replies"), tokens, plural(tokens, "token", "tokens"), mean);
    app_note(a, MSG_NOTE,
             "Model: %s\nBackend: %s\nContext: %d of %d tokens in use\n"
             "Last reply: %s\nThis session: %s\nHistory: %s",
             st.model_loaded ? st.model : "(none)", st.model_loaded ? st.backend : "-",
             st.ctx_used, st.ctx_size, last, session, st.history_ok ? "saved" : st.history_msg);
    return REACT_CHAT;
}

static int cmd_reset(const Command *self, App *a, const CmdArgs *args) {
    return app_reset_context(a);
}

static int cmd_undo(const Command *self, App *a, const CmdArgs *args) {
    return app_undo(a);
}

static int cmd_edit(const Command *self, App *a, const CmdArgs *args) {
    return app_edit_last(a);
}

static int cmd_reply(const Command *self, App *a, const CmdArgs *args) {
    long long n = 0;
    char why[128];
    if (cmd_parse_int(args->v[0], 1, 1000, &n, why, sizeof why)) return bad_arg(a, self, why);
    return app_switch_reply(a, (int)n);
}

static int cmd_copy(const Command *self, App *a, const CmdArgs *args) {
    long long n = 0;
    char why[128];
    if (args->n && cmd_parse_int(args->v[0], 1, 1000, &n, why, sizeof why))
        return bad_arg(a, self, why);
    return app_copy_reply(a, (int)n);
}

/* /show and /info: what is loaded, with the long backend description the status bar shortens. */
static int cmd_show(const Command *self, App *a, const CmdArgs *args) {
    AppStatus st;
    app_status(a, &st);
    if (!st.model_loaded) {
        app_set_hint(a, st.loading ? "The model is still loading."
                                   : "No model is loaded: use /load PATH.");
        return REACT_STATUS;
    }
    app_note(a, MSG_NOTE,
             "Model: %s\nFile: %s (%s)\nArchitecture: %s\nParameters: %d million\n"
             "Weights: %s\nVocabulary: %d tokens\nContext: %d tokens in use, trained %d\n"
             "Chat format: %s%s%s%s\nBackend: %s\nLoaded in %.2f s",
             st.model, st.model_path, st.format, st.arch, st.n_params_m, st.weights,
             st.vocab_size, st.ctx_size, st.ctx_train, st.chat_format,
             st.chat_note[0] ? " (" : "", st.chat_note, st.chat_note[0] ? ")" : "", st.backend,
             st.load_ms / 1000.0);
    return REACT_CHAT;
}

static const Command *find_exact(const char *name);

/* /set NAME VALUE: the names Ollama and llama.cpp users type, as aliases of the commands. */
static int cmd_set(const Command *self, App *a, const CmdArgs *args) {
    static const struct {
        const char *name, *command;
    } names[] = {
        {"temp", "/temp"}, {"temperature", "/temp"}, {"top_p", "/top_p"}, {"top-p", "/top_p"},
        {"top_k", "/top_k"}, {"top-k", "/top_k"}, {"min_p", "/min_p"}, {"min-p", "/min_p"},
        {"repeat_penalty", "/repeat_penalty"}, {"repeat-penalty", "/repeat_penalty"},
        {"seed", "/seed"}, {"max_tokens", "/max_tokens"}, {"max-tokens", "/max_tokens"},
        {"num_predict", "/max_tokens"}, {"system", "/system"},
    };
    if (!args->n) return commands_exec(find_exact("/params"), a, "");
    const char *name = args->v[0], *value = args->n > 1 ? args->v[1] : "";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(names[i].name, name))
            return commands_exec(find_exact(names[i].command), a, value);
    char why[200];
    snprintf(why, sizeof why, "no setting '%.40s': temperature, top_p, top_k, min_p, "
             "repeat_penalty, seed, max_tokens or system", name);
    return bad_arg(a, self, why);
}

static int cmd_help(const Command *self, App *a, const CmdArgs *args);

static int cmd_quit(const Command *self, App *a, const CmdArgs *args) { return REACT_QUIT; }

/* One entry per command, in /help's order; min_args and max_args count as CmdArgs does. */
static const Command table[] = {
    {.name = "/help", .usage = "/help [COMMAND]", .min_args = 0, .max_args = 1, .exec = cmd_help,
     .help = "list the commands, or explain one"},
    {.name = "/load", .usage = "/load PATH", .min_args = 1, .max_args = 1, .exec = cmd_load,
     .help = "switch to another model (the conversation is kept)", .arg_is_path = true},
    {.name = "/temp", .usage = "/temp [T]", .min_args = 0, .max_args = 1,
     .exec = cmd_setting, .variant = F_TEMP, .help = "temperature, 0 = greedy (show or set)"},
    {.name = "/top_p", .usage = "/top_p [P]", .min_args = 0, .max_args = 1,
     .exec = cmd_setting, .variant = F_TOP_P, .help = "nucleus sampling, 1 = off"},
    {.name = "/top_k", .usage = "/top_k [K]", .min_args = 0, .max_args = 1,
     .exec = cmd_setting, .variant = F_TOP_K, .help = "keep the K most likely tokens, 0 = off"},
    {.name = "/min_p", .usage = "/min_p [P]", .min_args = 0, .max_args = 1,
     .exec = cmd_setting, .variant = F_MIN_P, .help = "drop tokens below P x the top probability"},
    {.name = "/repeat_penalty", .usage = "/repeat_penalty [R]", .min_args = 0, .max_args = 1,
     .exec = cmd_setting, .variant = F_REPEAT, .help = "penalty for repeated tokens, 1 = off"},
    {.name = "/seed", .usage = "/seed [N|random]", .min_args = 0, .max_args = 1, .exec = cmd_seed,
     .help = "fixed seed (reproducible replies) or random"},
    {.name = "/max_tokens", .usage = "/max_tokens [N]", .min_args = 0, .max_args = 1,
     .exec = cmd_setting, .variant = F_MAX_TOKENS, .help = "reply length limit"},
    {.name = "/params", .usage = "/params", .min_args = 0, .max_args = 0, .exec = cmd_params,
     .help = "show all settings"},
    {.name = "/set", .usage = "/set [NAME VALUE]", .min_args = 0, .max_args = 2, .exec = cmd_set,
     .help = "set temperature, top_p, top_k, ..., system (Ollama's names)"},
    {.name = "/show", .usage = "/show", .min_args = 0, .max_args = 0, .exec = cmd_show,
     .help = "the model: file, architecture, weights, vocabulary, context, chat format, backend"},
    {.name = "/info", .usage = "/info", .min_args = 0, .max_args = 0, .exec = cmd_show,
     .help = "the same as /show"},
    {.name = "/system", .usage = "/system [TEXT|-]", .min_args = 0, .max_args = 1,
     .exec = cmd_system, .help = "show, set or (with -) clear the system prompt"},
    {.name = "/new", .usage = "/new", .min_args = 0, .max_args = 0, .exec = cmd_new,
     .help = "start a new session (model and settings kept)", .full_name = true},
    {.name = "/regen", .usage = "/regen", .min_args = 0, .max_args = 0, .exec = cmd_regen,
     .help = "write the last reply again (the old one stays as a branch)", .full_name = true},
    {.name = "/reply", .usage = "/reply N", .min_args = 1, .max_args = 1, .exec = cmd_reply,
     .help = "show version N of the last reply (\"2/2\" under one made again)"},
    {.name = "/undo", .usage = "/undo", .min_args = 0, .max_args = 0, .exec = cmd_undo,
     .help = "drop your last message and its reply (kept as a branch)", .full_name = true},
    {.name = "/edit", .usage = "/edit", .min_args = 0, .max_args = 0, .exec = cmd_edit,
     .help = "take your last message back into the input line to change and resend",
     .full_name = true},
    {.name = "/copy", .usage = "/copy [N]", .min_args = 0, .max_args = 1, .exec = cmd_copy,
     .help = "put the last reply (or its N-th code block) on the clipboard"},
    {.name = "/sessions", .usage = "/sessions", .min_args = 0, .max_args = 0, .exec = cmd_sessions,
     .help = "browse saved sessions"},
    {.name = "/search", .usage = "/search TEXT", .min_args = 1, .max_args = 1, .exec = cmd_search,
     .help = "search all saved sessions"},
    {.name = "/rename", .usage = "/rename TITLE", .min_args = 1, .max_args = 1, .exec = cmd_rename,
     .help = "rename this session"},
    {.name = "/export", .usage = "/export [md|json] [PATH]", .min_args = 0, .max_args = 2,
     .exec = cmd_export, .help = "write this conversation to a file", .arg_is_path = true},
    {.name = "/stats", .usage = "/stats", .min_args = 0, .max_args = 0, .exec = cmd_stats,
     .help = "figures of the last reply and the session"},
    {.name = "/clear", .usage = "/clear", .min_args = 0, .max_args = 0, .exec = cmd_clear,
     .help = "clear the screen (the model still sees the conversation)", .full_name = true},
    {.name = "/reset", .usage = "/reset", .min_args = 0, .max_args = 0, .exec = cmd_reset,
     .help = "new context, same screen: the model forgets the text above", .full_name = true},
    {.name = "/quit", .usage = "/quit", .min_args = 0, .max_args = 0, .exec = cmd_quit,
     .help = "leave (also Ctrl-D)", .full_name = true},
    {.name = "/exit", .usage = "/exit", .min_args = 0, .max_args = 0, .exec = cmd_quit,
     .help = "leave (the same as /quit)", .full_name = true},
    {.name = "/bye", .usage = "/bye", .min_args = 0, .max_args = 0, .exec = cmd_quit,
     .help = "leave (the same as /quit)", .full_name = true},
};
enum { N_COMMANDS = sizeof table / sizeof table[0] };

static const Command *find_exact(const char *name) {
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(table[i].name, name)) return &table[i];
    return NULL;
}

const Command *commands_table(int *n) {
    *n = N_COMMANDS;
    return table;
}

CmdMatch commands_match(const char *name, size_t len, const Command **out) {
    *out = NULL;
    int n_prefix = 0;
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strlen(table[i].name) == len && !strncmp(table[i].name, name, len)) {
            *out = &table[i];
            return CMD_FOUND;
        }
        if (len > 1 && !strncmp(table[i].name, name, len)) {
            if (!n_prefix) *out = &table[i];
            n_prefix++;
        }
    }
    if (n_prefix == 0) return CMD_UNKNOWN;
    if (n_prefix > 1) return CMD_AMBIGUOUS;
    return (*out)->full_name ? CMD_FULL_NAME : CMD_FOUND;
}

void commands_prefixed(const char *name, size_t len, char *out, size_t cap) {
    size_t o = 0;
    if (cap) out[0] = 0;
    for (int i = 0; i < N_COMMANDS && o < cap; i++)
        if (!strncmp(table[i].name, name, len))
            o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? " " : "", table[i].name);
}

const Command *commands_find(const char *name, size_t len) {
    const Command *c;
    return commands_match(name, len, &c) == CMD_FOUND ? c : NULL;
}

static int cmd_help(const Command *self, App *a, const CmdArgs *args) {
    char name[64];
    snprintf(name, sizeof name, "%s", args->n ? args->v[0] : "");
    if (*name) {
        char with_slash[72];
        snprintf(with_slash, sizeof with_slash, "%s%s", name[0] == '/' ? "" : "/", name);
        /* Help is harmless: any unique prefix explains its command. */
        const Command *c;
        CmdMatch m = commands_match(with_slash, strlen(with_slash), &c);
        if (m == CMD_AMBIGUOUS) {
            char names[300], why[340];
            commands_prefixed(with_slash, strlen(with_slash), names, sizeof names);
            snprintf(why, sizeof why, "ambiguous: %s", names);
            return bad_arg(a, self, why);
        }
        if (m == CMD_UNKNOWN) return bad_arg(a, self, "no such command");
        app_note(a, MSG_NOTE, "%s\n  %s", c->usage, c->help);
        return REACT_CHAT;
    }
    char buf[4096];
    size_t o = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "Commands:");
    for (int i = 0; i < N_COMMANDS && o < sizeof buf; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "\n  %-26s %s", table[i].usage,
                              table[i].help);
    if (o < sizeof buf)
        snprintf(buf + o, sizeof buf - o,
                 /* Broken by hand at most 78 columns wide: whole in an 80-column terminal. */
                 "\nKeys: Enter send, Ctrl-J new line, Esc/Ctrl-C stop a reply, PgUp/PgDn scroll,"
                 "\n  Home/End (empty input) top/bottom, Ctrl-R search input history,"
                 "\n  Tab complete, Ctrl-L redraw, Ctrl-Z suspend, Ctrl-D quit."
                 "\n//text sends a line starting with /."
                 "\nA command may be shortened while it is unambiguous (/he), except those that"
                 "\n  leave or drop text.");
    app_note(a, MSG_NOTE, "%s", buf);
    return REACT_CHAT;
}

int commands_run(App *a, const char *line) {
    const char *p = line;
    while (*p && !isspace((unsigned char)*p)) p++;
    size_t len = (size_t)(p - line);
    int shown = len > 40 ? 40 : (int)len;
    const char *more = len > 40 ? "..." : "";
    if (len == 1) {
        app_set_hint(a, "No command after /: write /help, or //text to send a line starting "
                        "with /.");
        return REACT_STATUS;
    }
    const Command *c;
    switch (commands_match(line, len, &c)) {
    case CMD_FOUND: break;
    case CMD_UNKNOWN:
        app_set_hint(a, "Unknown command %.*s%s: /help lists the commands.", shown, line, more);
        return REACT_STATUS;
    case CMD_AMBIGUOUS: {
        char names[300];
        commands_prefixed(line, len, names, sizeof names);
        app_set_hint(a, "%.*s is ambiguous: %s", shown, line, names);
        return REACT_STATUS;
    }
    case CMD_FULL_NAME:
        app_set_hint(a, "%.*s: type %s in full (commands that leave or drop text are never "
                        "abbreviated).", shown, line, c->name);
        return REACT_STATUS;
    }
    return commands_exec(c, a, p) | REACT_STATUS;
}

/* s without the white space around it, in place. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

int commands_exec(const Command *c, App *a, const char *text) {
    /* One copy for the words, one for the whole text. */
    size_t len = strlen(text);
    char *buf = malloc(2 * len + 2);
    if (!buf) {
        app_set_hint(a, "%s: out of memory", c->name);
        return REACT_STATUS;
    }
    char *words = buf, *all = buf + len + 1;
    memcpy(words, text, len + 1);
    memcpy(all, text, len + 1);
    CmdArgs args = {.all = trim(all)};
    char *p = trim(words);
    while (*p && args.n < c->max_args) {
        if (args.n == c->max_args - 1) { /* the last argument runs to the end */
            args.v[args.n++] = p;
            break;
        }
        size_t wl = strcspn(p, " \t");
        args.v[args.n++] = p;
        p += wl;
        if (*p) *p++ = 0;
        while (*p == ' ' || *p == '\t') p++;
    }
    int r;
    if (*args.all && c->max_args == 0) r = bad_arg(a, c, "takes no argument");
    else if (args.n < c->min_args) r = bad_arg(a, c, "missing argument");
    else r = c->exec(c, a, &args);
    free(buf);
    return r;
}
