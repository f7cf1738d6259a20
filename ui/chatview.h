/* The transcript pane: lays the conversation out as word-wrapped lines (user and assistant
 * turns under distinct labels, program notes and errors in their own styles), scrolls, and
 * follows a streaming reply only while the view is at the bottom. Wrapping is cached per
 * message and redone only for messages that changed or when the width changed; a re-wrap
 * keeps the first visible line's text at the top. */
#ifndef BN_CHATVIEW_H
#define BN_CHATVIEW_H

#include <stdbool.h>

#include "app/app.h"
#include "ui/screen.h"

typedef struct ChatView ChatView;

/* detailed: replies show their full sampling settings and backend (read-only session view). */
ChatView *chatview_new(bool detailed);
void chatview_free(ChatView *v);

void chatview_draw(ChatView *v, WINDOW *w, const AppTranscript *t);

/* Scroll requests, applied at the next draw. */
void chatview_scroll(ChatView *v, int lines); /* < 0: towards the start */
void chatview_page(ChatView *v, int pages);
void chatview_home(ChatView *v);
void chatview_end(ChatView *v);
bool chatview_following(const ChatView *v);
/* Lines above the view (0 at the top), for a "more above" indicator. */
int chatview_lines_below(const ChatView *v);

#endif
