/* app/commands.c without a terminal: argument parsing and validation, the command table,
 * and the effect of each command on an App (over the scripted engine, no model, no history
 * unless a test asks for one). A bad argument must change nothing and leave a hint. */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/app.h"
#include "app/cli.h"
#include "app/commands.h"
#include "app/store.h"
#include "check.h"

static App *make_app(const char *db) {
    static char *argv_hist[] = {"bitnet-chat", "--db", NULL, NULL};
    static char *argv_nohist[] = {"bitnet-chat", "--no-history", NULL};
    static AppConfig cfg; /* the App keeps pointers into it */
    int rc;
    if (db) {
        argv_hist[2] = (char *)db;
        rc = cli_parse(&cfg, 3, argv_hist);
    } else {
        rc = cli_parse(&cfg, 2, argv_nohist);
    }
    REQUIRE(rc == 0);
    cfg.model = "/nonexistent/model.gguf";
    char why[256];
    AppOptions opt = {.load_model = false};
    App *a = app_create(&cfg, &opt, why, sizeof why);
    REQUIRE(a != NULL);
    return a;
}

static const char *hint(App *a) { return app_hint(a, NULL); }

static void test_parse(void) {
    char why[128];
    double d;
    long long i;
    CHECK_EQ_INT(cmd_parse_double("0.5", 0, 1, &d, why, sizeof why), 0);
    CHECK_NEAR(d, 0.5, 1e-12);
    CHECK_EQ_INT(cmd_parse_double("  1  ", 0, 1, &d, why, sizeof why), 0);
    CHECK_EQ_INT(cmd_parse_double("1.01", 0, 1, &d, why, sizeof why), -1);
    CHECK(strstr(why, "from 0 to 1") != NULL);
    CHECK_EQ_INT(cmd_parse_double("", 0, 1, &d, why, sizeof why), -1);
    CHECK_EQ_INT(cmd_parse_double("abc", 0, 1, &d, why, sizeof why), -1);
    CHECK_EQ_INT(cmd_parse_double("0.5x", 0, 1, &d, why, sizeof why), -1);
    CHECK_EQ_INT(cmd_parse_double("nan", 0, 1, &d, why, sizeof why), -1);
    CHECK_EQ_INT(cmd_parse_double("inf", 0, 1e300, &d, why, sizeof why), -1);
    CHECK_EQ_INT(cmd_parse_double("1e999", 0, 1e300, &d, why, sizeof why), -1);
    CHECK_EQ_INT(cmd_parse_int("42", 0, 100, &i, why, sizeof why), 0);
    CHECK_EQ_INT(i, 42);
    CHECK_EQ_INT(cmd_parse_int("-1", 0, 100, &i, why, sizeof why), -1);
    CHECK_EQ_INT(cmd_parse_int("4.5", 0, 100, &i, why, sizeof why), -1);
    CHECK_EQ_INT(cmd_parse_int("99999999999999999999999", 0, 100, &i, why, sizeof why), -1);
    CHECK_EQ_INT(cmd_parse_int("9223372036854775807", 0, INT64_MAX, &i, why, sizeof why), 0);
}

static void test_table(void) {
    int n;
    const Command *t = commands_table(&n);
    CHECK(n >= 20);
    for (int i = 0; i < n; i++) {
        CHECK(t[i].name[0] == '/');
        CHECK(!strncmp(t[i].usage, t[i].name, strlen(t[i].name)));
        CHECK(t[i].help && *t[i].help && t[i].exec);
        CHECK(t[i].min_args >= 0 && t[i].min_args <= t[i].max_args);
        CHECK(t[i].max_args <= CMD_MAX_ARGS);
        for (int j = 0; j < i; j++) CHECK(strcmp(t[i].name, t[j].name) != 0);
    }
    const char *required[] = {"/load", "/temp", "/top_p", "/top_k", "/min_p", "/repeat_penalty",
                              "/seed", "/max_tokens", "/params", "/system", "/new", "/regen",
                              "/sessions", "/search", "/rename", "/export", "/stats", "/clear",
                              "/help", "/quit"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        CHECK_MSG(commands_find(required[i], strlen(required[i])) != NULL, "%s", required[i]);
    CHECK(commands_find("/he", 3) == commands_find("/help", 5));   /* unique prefix */
    CHECK(commands_find("/t", 2) == NULL);                         /* ambiguous */
    CHECK(commands_find("/exit", 5)->exec == commands_find("/quit", 5)->exec); /* alias */
    CHECK(commands_find("/nope", 5) == NULL);
    CHECK(commands_find("/load", 5)->arg_is_path);
}

static void test_settings(void) {
    App *a = make_app(NULL);
    SamplerParams before = app_get_sampling(a);
    int r = app_submit_line(a, "/temp 0.25");
    CHECK(r & REACT_STATUS);
    CHECK(app_get_sampling(a).temperature == 0.25f);
    AppStatus st;
    app_status(a, &st);
    CHECK(st.sampling.temperature == 0.25f); /* what the status bar shows */

    /* Bad values change nothing and explain themselves. */
    const char *bad[] = {"/temp hot", "/temp -1", "/temp 101", "/temp", "/top_p 1.5",
                         "/top_p x", "/top_k -3", "/top_k 2.5", "/min_p 2", "/repeat_penalty 0",
                         "/max_tokens 0", "/seed -5", "/seed abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        SamplerParams s0 = app_get_sampling(a);
        unsigned h0, h1;
        app_hint(a, &h0);
        app_submit_line(a, bad[i]);
        app_hint(a, &h1);
        SamplerParams s1 = app_get_sampling(a);
        CHECK_MSG(!memcmp(&s0, &s1, sizeof s0), "%s changed the settings", bad[i]);
        CHECK_MSG(h1 != h0 && *hint(a), "%s gave no hint", bad[i]);
    }
    app_submit_line(a, "/temp hot");
    CHECK(strstr(hint(a), "expected a number from 0 to 100") != NULL);
    CHECK(strstr(hint(a), "usage: /temp") != NULL);
    app_submit_line(a, "/temp");
    CHECK(strstr(hint(a), "temperature 0.25") != NULL); /* no argument: shows the value */

    app_submit_line(a, "/top_p 0.5");
    app_submit_line(a, "/top_k 7");
    app_submit_line(a, "/min_p 0.1");
    app_submit_line(a, "/repeat_penalty 1.3");
    app_submit_line(a, "/max_tokens 77");
    app_submit_line(a, "/seed 42");
    SamplerParams s = app_get_sampling(a);
    CHECK(s.top_p == 0.5f);
    CHECK_EQ_INT(s.top_k, 7);
    CHECK(s.min_p == 0.1f);
    CHECK(s.repeat_penalty == 1.3f);
    CHECK_EQ_INT(s.max_tokens, 77);
    CHECK((s.set & SAMPLER_SET_SEED) && s.seed == 42);
    app_submit_line(a, "/seed random");
    CHECK(!(app_get_sampling(a).set & SAMPLER_SET_SEED));
    CHECK(before.temperature != s.temperature);

    /* /params lists everything as a note in the transcript. */
    int n0 = app_transcript(a)->n;
    r = app_submit_line(a, "/params");
    CHECK(r & REACT_CHAT);
    const AppTranscript *t = app_transcript(a);
    REQUIRE(t->n == n0 + 1);
    CHECK_EQ_INT(t->msgs[t->n - 1].kind, MSG_NOTE);
    CHECK(strstr(t->msgs[t->n - 1].text, "top-k           7") != NULL);
    CHECK(strstr(t->msgs[t->n - 1].text, "max tokens      77") != NULL);
    app_destroy(a);
}

static void test_actions(void) {
    App *a = make_app(NULL);
    CHECK_EQ_INT(app_submit_line(a, "/quit") & REACT_QUIT, REACT_QUIT);
    CHECK_EQ_INT(app_submit_line(a, "/exit") & REACT_QUIT, REACT_QUIT);
    CHECK_EQ_INT(app_submit_line(a, "/nosuch") & REACT_QUIT, 0);
    CHECK(strstr(hint(a), "Unknown command /nosuch") != NULL);

    int r = app_submit_line(a, "/sessions");
    CHECK(r & REACT_BROWSER);
    CHECK_STREQ(app_browser_query(a), "");
    r = app_submit_line(a, "/search  hello world ");
    CHECK(r & REACT_BROWSER);
    CHECK_STREQ(app_browser_query(a), "hello world");
    r = app_submit_line(a, "/search");
    CHECK(!(r & REACT_BROWSER));

    app_submit_line(a, "/system Be brief.");
    CHECK_STREQ(app_get_system(a), "Be brief.");
    app_submit_line(a, "/system -");
    CHECK_STREQ(app_get_system(a), "");

    CHECK(!(app_submit_line(a, "/load") & REACT_QUIT));
    CHECK(strstr(hint(a), "usage: /load PATH") != NULL);

    app_submit_line(a, "/regen");
    CHECK(strstr(hint(a), "No model") != NULL || strstr(hint(a), "Nothing to regenerate") != NULL);

    /* A message with no model is refused and not handed back to the input line (a /load
     * typed next would be appended to it); the hint says where it is. */
    r = app_submit_line(a, "hello");
    CHECK(!(r & REACT_KEEP_INPUT));
    CHECK(strstr(hint(a), "No model is loaded") != NULL);
    CHECK(strstr(hint(a), "Up brings the message back") != NULL);
    /* "//" sends a literal slash (refused the same way here, not run as a command). */
    app_set_hint(a, "-");
    r = app_submit_line(a, "//temp 5");
    CHECK(strstr(hint(a), "No model is loaded") != NULL);
    CHECK(app_get_sampling(a).temperature != 5);
    CHECK_EQ_INT(app_submit_line(a, "   "), REACT_NONE);

    int n0 = app_transcript(a)->n;
    app_submit_line(a, "/help");
    const AppTranscript *t = app_transcript(a);
    REQUIRE(t->n == n0 + 1);
    int n;
    const Command *tab = commands_table(&n);
    for (int i = 0; i < n; i++) CHECK_MSG(strstr(t->msgs[t->n - 1].text, tab[i].name), "%s", tab[i].name);
    app_submit_line(a, "/help temp");
    CHECK(strstr(app_transcript(a)->msgs[app_transcript(a)->n - 1].text, "/temp [T]") != NULL);

    r = app_submit_line(a, "/clear");
    CHECK(r & REACT_REDRAW);
    CHECK_EQ_INT(app_transcript(a)->view_start, app_transcript(a)->n);
    r = app_submit_line(a, "/new");
    CHECK(r & REACT_REDRAW);
    CHECK_EQ_INT(app_transcript(a)->n, 0);

    /* Hostile lines: long, control bytes, invalid UTF-8 -> hints, never a crash. */
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[0] = '/';
    big[sizeof big - 1] = 0;
    app_submit_line(a, big);
    CHECK(strstr(hint(a), "Unknown command") != NULL);
    CHECK(strlen(hint(a)) < 200);
    app_submit_line(a, "/temp \x1b[31m\xff\xfe");
    CHECK(strstr(hint(a), "expected a number") != NULL);
    unsigned seed = 7;
    for (int k = 0; k < 2000; k++) {
        char line[64];
        int len = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 60;
        line[0] = '/';
        for (int j = 1; j < len; j++) line[j] = (char)(((seed = seed * 1103515245u + 12345u) >> 16) & 0xff);
        line[len] = 0;
        app_submit_line(a, line);
    }
    /* after them the App still works: a valid setting takes effect */
    app_submit_line(a, "/temp 0.25");
    CHECK(app_get_sampling(a).temperature == 0.25f);
    app_destroy(a);
}

/* Issue 15: what a line starting with '/' does. Every such line is a command (the man page's
 * rule); prefixes run only when they name one harmless command. */
static void test_prefixes(void) {
    App *a = make_app(NULL);
    double t0 = app_get_sampling(a).temperature;
    /* "/ temp" is not sent to the model (it would be, as a chat message, before). */
    int n0 = app_transcript(a)->n;
    int r = app_submit_line(a, "/ temp 0.5");
    CHECK(!(r & REACT_KEEP_INPUT));
    CHECK(strstr(hint(a), "No command after /") != NULL);
    CHECK_EQ_INT(app_transcript(a)->n, n0);
    CHECK(app_get_sampling(a).temperature == t0);
    app_set_hint(a, "-");
    app_submit_line(a, "/");
    CHECK(strstr(hint(a), "No command after /") != NULL);
    CHECK_EQ_INT(app_transcript(a)->n, n0);

    /* "/ex" names /exit and /export: neither runs. */
    r = app_submit_line(a, "/ex");
    CHECK(!(r & REACT_QUIT));
    CHECK(strstr(hint(a), "/ex is ambiguous: /export /exit") != NULL);
    /* "/q" names only /quit, which leaves: it must be typed in full. */
    r = app_submit_line(a, "/q");
    CHECK(!(r & REACT_QUIT));
    CHECK(strstr(hint(a), "type /quit in full") != NULL);
    r = app_submit_line(a, "/qui");
    CHECK(!(r & REACT_QUIT));
    CHECK(strstr(hint(a), "type /quit in full") != NULL);
    /* "/re" lists its candidates instead of "Unknown command". */
    app_submit_line(a, "/re");
    CHECK(strstr(hint(a), "ambiguous: /repeat_penalty /regen /reply /rename /reset") != NULL);
    /* /new, /clear and /regen drop or replace text: never from a prefix. */
    app_submit_line(a, "/ne");
    CHECK(strstr(hint(a), "type /new in full") != NULL);
    app_submit_line(a, "/cle");
    CHECK(strstr(hint(a), "type /clear in full") != NULL);
    CHECK_EQ_INT(app_transcript(a)->view_start, 0);
    /* A harmless unique prefix still works. */
    app_submit_line(a, "/tem 0.4");
    CHECK(app_get_sampling(a).temperature == 0.4f);
    app_submit_line(a, "/para");
    CHECK_EQ_INT(app_transcript(a)->msgs[app_transcript(a)->n - 1].kind, MSG_NOTE);
    /* /help explains any unique prefix, a full-name command included. */
    app_submit_line(a, "/help q");
    CHECK(strstr(app_transcript(a)->msgs[app_transcript(a)->n - 1].text, "/quit") != NULL);
    app_submit_line(a, "/help re");
    CHECK(strstr(hint(a), "ambiguous") != NULL);
    app_destroy(a);
}

/* Issue 15: the commands Ollama and llama.cpp users reach for. */
static void test_more_commands(void) {
    App *a = make_app(NULL);
    app_submit_line(a, "/set temperature 0.3");
    CHECK(app_get_sampling(a).temperature == 0.3f);
    app_submit_line(a, "/set num_predict 99");
    CHECK_EQ_INT(app_get_sampling(a).max_tokens, 99);
    app_submit_line(a, "/set top-k 5");
    CHECK_EQ_INT(app_get_sampling(a).top_k, 5);
    app_submit_line(a, "/set system Be terse.");
    CHECK_STREQ(app_get_system(a), "Be terse.");
    app_submit_line(a, "/set warmth 3");
    CHECK(strstr(hint(a), "no setting 'warmth'") != NULL);
    app_submit_line(a, "/set temperature hot");
    CHECK(strstr(hint(a), "expected a number") != NULL);
    CHECK(app_get_sampling(a).temperature == 0.3f);
    CHECK_EQ_INT(app_submit_line(a, "/bye") & REACT_QUIT, REACT_QUIT);
    CHECK_EQ_INT(app_submit_line(a, "/by") & REACT_QUIT, 0);
    app_submit_line(a, "/show");
    CHECK(strstr(hint(a), "No model is loaded") != NULL);
    app_submit_line(a, "/info");
    CHECK(strstr(hint(a), "No model is loaded") != NULL);
    app_submit_line(a, "/undo");
    CHECK(strstr(hint(a), "Nothing to undo") != NULL);
    int r = app_submit_line(a, "/edit");
    CHECK(strstr(hint(a), "Nothing to edit") != NULL);
    CHECK(!(r & REACT_SET_INPUT));
    r = app_submit_line(a, "/copy");
    CHECK(strstr(hint(a), "Nothing to copy") != NULL);
    CHECK(!(r & REACT_COPY));
    app_submit_line(a, "/copy x");
    CHECK(strstr(hint(a), "usage: /copy") != NULL);
    int n0 = app_transcript(a)->n;
    r = app_submit_line(a, "/reset");
    CHECK(r & REACT_CHAT);
    CHECK_EQ_INT(app_transcript(a)->n, n0 + 1);
    CHECK_EQ_INT(app_transcript(a)->ctx_start, app_transcript(a)->n);
    CHECK(strstr(app_transcript(a)->msgs[n0].text, "Context reset") != NULL);
    /* /stats on an empty session: no "0 tok/s" figures, no "1 tokens". */
    app_submit_line(a, "/stats");
    const char *stats = app_transcript(a)->msgs[app_transcript(a)->n - 1].text;
    CHECK(strstr(stats, "Last reply: none yet") != NULL);
    CHECK(strstr(stats, "This session: 0 messages, 0 replies, 0 reply tokens\n") != NULL);
    CHECK(strstr(stats, "tok/s") == NULL);
    /* /params: the command names in one column. */
    app_submit_line(a, "/seed 7");
    app_submit_line(a, "/params");
    const char *params = app_transcript(a)->msgs[app_transcript(a)->n - 1].text;
    int col = -1;
    for (const char *l = params; (l = strstr(l, "\n  ")) != NULL; l++) {
        const char *slash = strchr(l + 1, '/'), *eol = strchr(l + 1, '\n');
        if (!slash || (eol && slash > eol)) continue; /* the system prompt line */
        int c = (int)(slash - l);
        CHECK_MSG(col < 0 || c == col, "/params column %d, expected %d", c, col);
        col = c;
    }
    CHECK(col > 0);
    /* /help says what /clear and /reset each do (Ollama users expect /clear to forget). */
    app_submit_line(a, "/help");
    const char *help = app_transcript(a)->msgs[app_transcript(a)->n - 1].text;
    CHECK(strstr(help, "/clear") && strstr(help, "the model still sees the conversation"));
    CHECK(strstr(help, "/reset") && strstr(help, "the model forgets the text above"));
    CHECK(strstr(help, "/exit") != NULL);
    /* Its other lines (the keys) are broken by hand to fit 80 columns whole (a command's row
     * may wrap: it hangs under its description). All ASCII: bytes are columns. */
    for (const char *l = help; *l;) {
        size_t len = strcspn(l, "\n");
        if (strncmp(l, "  /", 3))
            CHECK_MSG(len <= 78, "/help line of %zu columns: %.*s", len, (int)len, l);
        l += len + (l[len] == '\n');
    }
    app_destroy(a);
}

/* The table's arity, checked in one place with one message format: a command that takes no
 * argument refuses one, a command that needs one says so, each naming itself (an alias too:
 * "/info x" named /show when handlers looked their entry up by function). Nothing runs. */
static void test_arity(void) {
    App *a = make_app(NULL);
    int n;
    const Command *t = commands_table(&n);
    for (int i = 0; i < n; i++) {
        char line[80], want[200];
        const int n0 = app_transcript(a)->n;
        if (t[i].max_args == 0) {
            snprintf(line, sizeof line, "%s now", t[i].name);
            snprintf(want, sizeof want, "%s: takes no argument (usage: %s)", t[i].name,
                     t[i].usage);
        } else if (t[i].min_args > 0) {
            snprintf(line, sizeof line, "%s  \t ", t[i].name);
            snprintf(want, sizeof want, "%s: missing argument (usage: %s)", t[i].name,
                     t[i].usage);
        } else {
            continue;
        }
        int r = app_submit_line(a, line);
        CHECK_MSG(!strcmp(hint(a), want), "%s: hint \"%s\", expected \"%s\"", line, hint(a),
                  want);
        CHECK_MSG(!(r & (REACT_QUIT | REACT_BROWSER | REACT_REDRAW)), "%s ran", line);
        CHECK_EQ_INT(app_transcript(a)->n, n0);
    }
    /* the last argument a command takes runs to the end of the line */
    app_submit_line(a, "/temp 0.5 0.6");
    CHECK_STREQ(hint(a), "/temp: expected a number from 0 to 100 (usage: /temp [T])");
    app_submit_line(a, "/system   two  words\t ");
    CHECK_STREQ(app_get_system(a), "two  words");
    app_submit_line(a, "/set temp");
    CHECK(strstr(hint(a), "temperature ") == hint(a)); /* shows the value */
    app_submit_line(a, "/set temp 0.5 0.6");
    CHECK_STREQ(hint(a), "/temp: expected a number from 0 to 100 (usage: /temp [T])");
    app_submit_line(a, "/set  repeat-penalty\t1.5 ");
    CHECK_NEAR(app_get_sampling(a).repeat_penalty, 1.5, 1e-12);
    app_submit_line(a, "/help temp top_p");
    CHECK_STREQ(hint(a), "/help: no such command (usage: /help [COMMAND])");
    /* a path with spaces, after a format and without one */
    char dir[128], line[400], path[300];
    snprintf(dir, sizeof dir, "/tmp/bn test arity %d", (int)getpid());
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/a b.md", dir);
    snprintf(line, sizeof line, "/export json %s", path);
    app_submit_line(a, line);
    CHECK(strstr(hint(a), "Exported to") != NULL);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (f) CHECK(fgetc(f) == '{'); /* JSON, as asked, despite the .md name */
    if (f) fclose(f);
    unlink(path);
    snprintf(path, sizeof path, "%s/c d.json", dir);
    snprintf(line, sizeof line, "/export   %s  ", path);
    app_submit_line(a, line);
    CHECK(strstr(hint(a), "Exported to") != NULL);
    CHECK(access(path, F_OK) == 0);
    unlink(path);
    CHECK_EQ_INT(rmdir(dir), 0);
    app_destroy(a);
}

/* The slash commands take the values the command line takes (app/cli.c's options and
 * app/commands.c's cmd_setting hold a range each): both accept each range's ends and refuse
 * just beyond. */
static void test_ranges_match_cli(void) {
    static const struct {
        const char *option, *command, *in[2], *out[2];
    } r[] = {
        {"--temp", "/temp", {"0", "100"}, {"-0.001", "100.001"}},
        {"--top-p", "/top_p", {"0", "1"}, {"-0.001", "1.001"}},
        {"--min-p", "/min_p", {"0", "1"}, {"-0.001", "1.001"}},
        {"--repeat-penalty", "/repeat_penalty", {"0.01", "100"}, {"0.0099", "100.001"}},
        {"--top-k", "/top_k", {"0", "16777216"}, {"-1", "16777217"}},
        {"--max-tokens", "/max_tokens", {"1", "16777216"}, {"0", "16777217"}},
        {"--seed", "/seed", {"0", "9223372036854775807"}, {"-1", "9223372036854775808"}},
    };
    App *a = make_app(NULL);
    fflush(stderr);
    int saved = dup(2), null = open("/dev/null", O_WRONLY); /* the refusals' messages */
    REQUIRE(saved >= 0 && null >= 0);
    dup2(null, 2);
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        for (int k = 0; k < 4; k++) {
            const char *v = k < 2 ? r[i].in[k] : r[i].out[k - 2];
            const bool ok = k < 2;
            char *argv[] = {"bitnet-chat", (char *)r[i].option, (char *)v, NULL};
            AppConfig cfg;
            int rc = cli_parse(&cfg, 3, argv);
            char line[128];
            snprintf(line, sizeof line, "%s %s", r[i].command, v);
            app_set_hint(a, "-");
            app_submit_line(a, line);
            const bool slash_ok = strstr(hint(a), "usage:") == NULL;
            CHECK_MSG((rc == 0) == ok, "%s %s: cli_parse %d", r[i].option, v, rc);
            CHECK_MSG(slash_ok == ok, "%s: %s", line, hint(a));
        }
    dup2(saved, 2);
    close(saved);
    close(null);
    app_destroy(a);
}

static void test_export(void) {
    App *a = make_app(NULL);
    char path[256], written[512], why[256];
    snprintf(path, sizeof path, "/tmp/bn_test_export_%d.json", (int)getpid());
    CHECK_EQ_INT(app_submit_line(a, "/system Be brief.") & REACT_QUIT, 0);
    char line[300];
    snprintf(line, sizeof line, "/export json %s", path);
    app_submit_line(a, line);
    CHECK(strstr(hint(a), "Exported to") != NULL);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CHECK(j != NULL);
    if (j) {
        /* Not saved (--no-history), yet the documented format, as for a saved session. */
        CHECK_STREQ(json_string_value(json_object_get(j, "format")), "bitnet-chat-session");
        json_t *js = json_object_get(j, "session");
        CHECK_STREQ(json_string_value(json_object_get(js, "system_prompt")), "Be brief.");
        CHECK(json_is_null(json_object_get(js, "id"))); /* no row */
        CHECK(json_is_array(json_object_get(j, "messages")));
        json_decref(j);
    }
    /* An existing file is never overwritten; the file keeps its content. */
    app_submit_line(a, line);
    CHECK(strstr(hint(a), "already exists") != NULL);
    j = json_load_file(path, 0, &je);
    CHECK(j != NULL);
    json_decref(j);
    unlink(path);
    /* A bare word naming another format is refused, nothing is written. */
    char cwd[1024], dir[256];
    snprintf(dir, sizeof dir, "/tmp/bn_test_export_dir_%d", (int)getpid());
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    CHECK_EQ_INT(chdir(dir), 0);
    app_submit_line(a, "/export xml");
    CHECK(strstr(hint(a), "no format 'xml'") != NULL);
    CHECK(access("xml", F_OK) != 0);
    CHECK_EQ_INT(chdir(cwd), 0);
    CHECK_EQ_INT(rmdir(dir), 0);
    /* "markdown" is md; ~/ is the home directory. */
    char home[256], md[300];
    snprintf(home, sizeof home, "/tmp/bn_test_export_home_%d", (int)getpid());
    CHECK_EQ_INT(mkdir(home, 0700), 0);
    const char *old_home = getenv("HOME");
    char *saved_home = old_home ? strdup(old_home) : NULL;
    setenv("HOME", home, 1);
    app_submit_line(a, "/export markdown ~/out.md");
    snprintf(md, sizeof md, "%s/out.md", home);
    CHECK(strstr(hint(a), md) != NULL);
    FILE *f = fopen(md, "r");
    CHECK(f != NULL);
    if (f) {
        char first[64] = "";
        CHECK(fgets(first, sizeof first, f) != NULL);
        CHECK(strncmp(first, "# ", 2) == 0); /* Markdown, not JSON */
        fclose(f);
    }
    unlink(md);
    rmdir(home);
    if (saved_home) setenv("HOME", saved_home, 1);
    else unsetenv("HOME");
    free(saved_home);
    CHECK_EQ_INT(app_export(a, "md", "/nonexistent-dir/x.md", written, sizeof written, why, sizeof why), -1);
    CHECK(strstr(why, "nonexistent-dir") != NULL);
    /* A directory takes a new time-stamped file (it was refused as "already exists"); two in
     * the same second get two names, neither replaced. */
    snprintf(dir, sizeof dir, "/tmp/bn_test_export_into_%d", (int)getpid());
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    snprintf(line, sizeof line, "/export json %s/", dir);
    char got[2][600] = {"", ""};
    for (int i = 0; i < 2; i++) {
        app_submit_line(a, line);
        const char *h = strstr(hint(a), "Exported to ");
        CHECK_MSG(h != NULL, "%s", hint(a));
        if (h) snprintf(got[i], sizeof got[i], "%s", h + strlen("Exported to "));
        CHECK_MSG(strncmp(got[i], dir, strlen(dir)) == 0 && strstr(got[i], "/bitnet-chat-") &&
                      strstr(got[i], ".json"),
                  "%s", got[i]);
        struct stat sb;
        CHECK(stat(got[i], &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 0777) == 0600);
        line[strlen(line) - 1] = 0; /* the second time without the trailing slash */
    }
    CHECK(strcmp(got[0], got[1]) != 0);
    for (int i = 0; i < 2; i++) unlink(got[i]);
    CHECK_EQ_INT(rmdir(dir), 0);
    app_destroy(a);
}

/* The export writers over a conversation held in memory (what /export writes when it is not
 * saved): ids 0 are null, text that is not UTF-8 is repaired, Markdown has no session line. */
static void test_export_view(void) {
    StoreSession ss = {.title = "t", .system_prompt = "sys", .message_count = 2};
    ss.sampling = (SamplerParams){.temperature = 0.5f, .set = SAMPLER_SET_TEMPERATURE};
    StoreMessage m[2] = {{.role = "user", .text = "hi \xe2\x82", .on_active_branch = 1},
                         {.role = "assistant", .text = "hello", .reply_tokens = 3,
                          .stop_reason = "eos", .on_active_branch = 1}};
    char path[256];
    snprintf(path, sizeof path, "/tmp/bn_test_export_view_%d", (int)getpid());
    Err err = {{0}};
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    CHECK_EQ_INT(store_write_json(&ss, m, 2, f, &err), 0);
    fclose(f);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CHECK(j != NULL);
    if (j) {
        CHECK(json_is_null(json_object_get(json_object_get(j, "session"), "id")));
        CHECK(json_is_null(json_object_get(json_object_get(j, "session"), "active_leaf")));
        json_t *arr = json_object_get(j, "messages");
        CHECK_EQ_INT(json_array_size(arr), 2);
        json_t *u = json_array_get(arr, 0), *r = json_array_get(arr, 1);
        CHECK(json_is_null(json_object_get(u, "id")) && json_is_null(json_object_get(u, "parent_id")));
        CHECK_STREQ(json_string_value(json_object_get(u, "text")), "hi \xef\xbf\xbd\xef\xbf\xbd");
        CHECK_EQ_INT(json_integer_value(json_object_get(r, "reply_tokens")), 3);
        CHECK(json_is_true(json_object_get(r, "on_active_branch")));
        json_decref(j);
    }
    f = fopen(path, "w");
    REQUIRE(f != NULL);
    CHECK_EQ_INT(store_write_markdown(&ss, m, 2, f, &err), 0);
    fclose(f);
    char text[1024] = "";
    f = fopen(path, "r");
    REQUIRE(f != NULL);
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = 0;
    fclose(f);
    CHECK(strncmp(text, "# t\n", 4) == 0);
    CHECK(strstr(text, "- Session:") == NULL && strstr(text, "- Created:") == NULL);
    CHECK(strstr(text, "## System prompt\n\nsys\n") != NULL);
    CHECK(strstr(text, "## User\n\nhi ") != NULL && strstr(text, "## Assistant\n\nhello\n") != NULL);
    unlink(path);
}

/* A database that is not a database: the chat opens, says history is not saved. */
static void test_broken_history(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/bn_test_broken_%d.db", (int)getpid());
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs("this is not an SQLite database, just some text that is long enough ...........\n", f);
    for (int i = 0; i < 200; i++) fputs("garbage garbage garbage garbage\n", f);
    fclose(f);
    App *a = make_app(path);
    AppStatus st;
    app_status(a, &st);
    CHECK(!st.history_ok);
    CHECK(strstr(st.history_msg, "history not saved") != NULL);
    const AppTranscript *t = app_transcript(a);
    CHECK(t->n >= 1 && t->msgs[0].kind == MSG_ERROR);
    app_destroy(a);
    unlink(path);
}

/* A search hit in an older /regen branch opens the branch that holds it (with a note), not the
 * session's active branch; a hit on the active branch opens that, without the note. */
static int64_t add_msg(Store *s, int64_t sid, int64_t parent, const char *role, const char *text) {
    Err err = {{0}};
    StoreMessage m = {.session_id = sid, .parent_id = parent, .text = (char *)text};
    snprintf(m.role, sizeof m.role, "%s", role);
    int64_t id = store_message_add(s, &m, &err);
    REQUIRE(id > 0);
    return id;
}

static bool view_has(const AppTranscript *t, const char *needle) {
    for (int i = 0; i < t->n; i++)
        if (t->msgs[i].text && strstr(t->msgs[i].text, needle)) return true;
    return false;
}

/* Resuming a session takes its stored settings over the ones in use: a value out of range is
 * left out (the one in use stays), the seed is fixed only when one was stored, and a reply
 * shows the settings it was stored with. */
static void test_resume_settings(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/bn_test_resume_settings_%d.db", (int)getpid());
    unlink(path);
    Err err = {{0}};
    Store *s = store_open(path, &err);
    REQUIRE(s != NULL);
    StoreSession fixed = {.title = "fixed", .sampling = {.temperature = 0.2f, .top_p = -1.0f,
                                                         .seed = 5,
                                                         .set = SAMPLER_SET_TEMPERATURE |
                                                                SAMPLER_SET_TOP_P |
                                                                SAMPLER_SET_SEED}};
    int64_t s1 = store_session_create(s, &fixed, &err);
    StoreSession random = {.title = "random", .sampling = {.top_k = 3, .set = SAMPLER_SET_TOP_K}};
    int64_t s2 = store_session_create(s, &random, &err);
    REQUIRE(s1 > 0 && s2 > 0);
    int64_t u = add_msg(s, s1, 0, "user", "hello");
    StoreMessage r = {.session_id = s1, .parent_id = u, .text = "hi",
                      .sampling = {.min_p = 0.25f, .seed = 77,
                                   .set = SAMPLER_SET_MIN_P | SAMPLER_SET_SEED}};
    snprintf(r.role, sizeof r.role, "assistant");
    REQUIRE(store_message_add(s, &r, &err) > 0);
    store_close(s);

    App *a = make_app(path);
    const SamplerParams before = app_get_sampling(a);
    char why[256];
    REQUIRE(app_session_resume(a, s1, why, sizeof why) == 0);
    SamplerParams now = app_get_sampling(a);
    CHECK(now.temperature == 0.2f);
    CHECK(now.top_p == before.top_p); /* -1 stored: damage, the one in use stays */
    CHECK_EQ_INT(now.top_k, before.top_k);
    CHECK((now.set & SAMPLER_SET_SEED) && now.seed == 5);
    CHECK_EQ_INT(now.set, SAMPLER_SET_ALL);
    const AppTranscript *t = app_transcript(a);
    int replies = 0;
    for (int i = 0; i < t->n; i++)
        if (t->msgs[i].kind == MSG_ASSISTANT) {
            const SamplerParams *m = &t->msgs[i].sampling;
            CHECK(m->min_p == 0.25f && m->seed == 77);
            CHECK(m->temperature == before.temperature); /* not stored with it: those in use */
            replies++;
        }
    CHECK_EQ_INT(replies, 1);
    REQUIRE(app_session_resume(a, s2, why, sizeof why) == 0);
    now = app_get_sampling(a);
    CHECK_EQ_INT(now.top_k, 3);
    CHECK(now.temperature == 0.2f);
    CHECK(!(now.set & SAMPLER_SET_SEED)); /* none stored: a new seed per reply */
    app_destroy(a);
    unlink(path);
}

/* A reply that failed comes back with its reason, in the browser's view and on resume (it read
 * as an empty "interrupted" reply). */
static void test_failed_reply_resumed(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/bn_test_failed_%d.db", (int)getpid());
    unlink(path);
    Err err = {{0}};
    Store *s = store_open(path, &err);
    REQUIRE(s != NULL);
    StoreSession in = {.title = "failed"};
    int64_t sid = store_session_create(s, &in, &err);
    REQUIRE(sid > 0);
    int64_t u1 = add_msg(s, sid, 0, "user", "hello");
    StoreMessage r = {.session_id = sid, .parent_id = u1, .text = "", .interrupted = 1};
    snprintf(r.role, sizeof r.role, "assistant");
    snprintf(r.stop_reason, sizeof r.stop_reason, "error");
    snprintf(r.error, sizeof r.error, "the backend ran out of memory");
    REQUIRE(store_message_add(s, &r, &err) > 0);
    store_close(s);

    App *a = make_app(path);
    AppSessionRow row;
    AppTranscript t;
    char why[256];
    REQUIRE(app_session_view(a, sid, &row, &t, why, sizeof why) == 0);
    int found = 0;
    for (int i = 0; i < t.n; i++)
        if (t.msgs[i].kind == MSG_ASSISTANT) {
            CHECK_STREQ(t.msgs[i].error, "the backend ran out of memory");
            CHECK_STREQ(t.msgs[i].stop_reason, "error");
            found++;
        }
    CHECK_EQ_INT(found, 1);
    app_transcript_free(&t);
    REQUIRE(app_session_resume(a, sid, why, sizeof why) == 0);
    const AppTranscript *live = app_transcript(a);
    found = 0;
    for (int i = 0; i < live->n; i++)
        if (live->msgs[i].kind == MSG_ASSISTANT) {
            CHECK_STREQ(live->msgs[i].error, "the backend ran out of memory");
            found++;
        }
    CHECK_EQ_INT(found, 1);
    app_destroy(a);
    unlink(path);
}

/* /reply N shows version N as it was stored: its text, figures, time and backend (the time and
 * backend of the version replaced stayed). */
static void test_switch_reply_fields(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/bn_test_switch_%d.db", (int)getpid());
    unlink(path);
    Err err = {{0}};
    Store *s = store_open(path, &err);
    REQUIRE(s != NULL);
    StoreSession in = {.title = "versions"};
    int64_t sid = store_session_create(s, &in, &err);
    REQUIRE(sid > 0);
    int64_t u = add_msg(s, sid, 0, "user", "name a bird");
    StoreMessage v1 = {.session_id = sid, .parent_id = u, .text = "a heron", .created_at = 1000000,
                       .reply_tokens = 3, .backend = "CPU, 2 threads", .model_name = "m1"};
    StoreMessage v2 = {.session_id = sid, .parent_id = u, .text = "a wren", .created_at = 2000000,
                       .reply_tokens = 4, .backend = "CUDA", .model_name = "m2"};
    snprintf(v1.role, sizeof v1.role, "assistant");
    snprintf(v2.role, sizeof v2.role, "assistant");
    REQUIRE(store_message_add(s, &v1, &err) > 0);
    REQUIRE(store_message_add(s, &v2, &err) > 0); /* the active version */
    store_close(s);

    App *a = make_app(path);
    char why[256];
    REQUIRE(app_session_resume(a, sid, why, sizeof why) == 0);
    app_switch_reply(a, 1);
    const AppTranscript *t = app_transcript(a);
    const AppMessage *r = NULL;
    for (int i = 0; i < t->n; i++)
        if (t->msgs[i].kind == MSG_ASSISTANT) r = &t->msgs[i];
    REQUIRE(r != NULL);
    CHECK_STREQ(r->text, "a heron");
    CHECK_EQ_INT(r->gen_tokens, 3);
    CHECK_STREQ(r->model, "m1");
    CHECK_STREQ(r->backend, "CPU, 2 threads");
    CHECK_EQ_INT(r->created_at, 1000000);
    CHECK_EQ_INT(r->alt_i, 1);
    app_destroy(a);
    unlink(path);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", path), unlink(side);
    snprintf(side, sizeof side, "%s-shm", path), unlink(side);
}

static void test_view_branch_of_hit(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/bn_test_branch_%d.db", (int)getpid());
    unlink(path);
    Err err = {{0}};
    Store *s = store_open(path, &err);
    REQUIRE(s != NULL);
    StoreSession in = {.title = "branches"};
    int64_t sid = store_session_create(s, &in, &err);
    REQUIRE(sid > 0);
    int64_t u1 = add_msg(s, sid, 0, "user", "tell me about animals");
    int64_t old_reply = add_msg(s, sid, u1, "assistant", "the zebra has stripes");
    int64_t u2 = add_msg(s, sid, old_reply, "user", "and its food");
    add_msg(s, sid, u2, "assistant", "grass, mostly");
    int64_t new_reply = add_msg(s, sid, u1, "assistant", "the giraffe is tall"); /* /regen: now active */
    store_close(s);

    App *a = make_app(path);
    AppSessionRow row;
    AppTranscript t;
    char why[256];
    AppSearchHit *hits = NULL;
    int n_hits = 0;
    CHECK_EQ_INT(app_search(a, "zebra", &hits, &n_hits, why, sizeof why), 0);
    CHECK_EQ_INT(n_hits, 1);
    if (n_hits == 1) CHECK(hits[0].message_id == old_reply && hits[0].session_id == sid);
    free(hits);

    CHECK_EQ_INT(app_session_view(a, sid, &row, &t, why, sizeof why), 0);
    CHECK(view_has(&t, "giraffe") && !view_has(&t, "zebra") && !view_has(&t, "earlier branch"));
    app_transcript_free(&t);

    /* the older branch, followed to its newest leaf, with the note first */
    CHECK_EQ_INT(app_session_view_at(a, sid, old_reply, &row, &t, why, sizeof why), 0);
    CHECK(view_has(&t, "zebra") && view_has(&t, "grass, mostly") && !view_has(&t, "giraffe"));
    CHECK(t.n == 5 && t.msgs[0].kind == MSG_NOTE && strstr(t.msgs[0].text, "earlier branch"));
    CHECK(t.n == 5 && t.msgs[1].kind == MSG_USER && t.msgs[4].kind == MSG_ASSISTANT);
    app_transcript_free(&t);

    /* a hit on the active branch: the usual view */
    CHECK_EQ_INT(app_session_view_at(a, sid, new_reply, &row, &t, why, sizeof why), 0);
    CHECK(view_has(&t, "giraffe") && !view_has(&t, "zebra") && !view_has(&t, "earlier branch"));
    app_transcript_free(&t);
    app_destroy(a);
    unlink(path);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", path), unlink(side);
    snprintf(side, sizeof side, "%s-shm", path), unlink(side);
}

int main(void) {
    test_parse();
    test_table();
    test_settings();
    test_actions();
    test_prefixes();
    test_more_commands();
    test_arity();
    test_ranges_match_cli();
    test_export();
    test_export_view();
    test_broken_history();
    test_view_branch_of_hit();
    test_failed_reply_resumed();
    test_resume_settings();
    test_switch_reply_fields();
    return check_report("test_commands");
}
