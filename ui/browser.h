/* The saved-sessions browser (/sessions, /search TEXT, bitnet-chat --browse): a list of
 * sessions, newest first (title, model, date, message count), full-text search with the
 * matches highlighted, a read-only view of a session with per-reply figures, resume, rename
 * and delete (with confirmation). All data comes through app.h. */
#ifndef BN_BROWSER_H
#define BN_BROWSER_H

#include "app/app.h"
#include "ui/keys.h"
#include "ui/screen.h"

typedef struct Browser Browser;

typedef enum {
    BROWSER_STAY = 0,
    BROWSER_CLOSE,    /* back to the chat */
    BROWSER_RESUMED,  /* a session became the live chat */
    BROWSER_QUIT,
} BrowserResult;

/* query: a search to run at once ("" or NULL: the list of sessions). */
Browser *browser_open(App *a, const char *query);
void browser_free(Browser *b);
BrowserResult browser_key(Browser *b, const Key *k);
/* Text pasted while the browser is open (goes to the search or rename prompt). */
void browser_paste(Browser *b, const char *text, size_t n);
void browser_draw(Browser *b, WINDOW *w);

#endif
