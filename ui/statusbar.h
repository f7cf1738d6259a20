/* The status bar: one line under the transcript. While a model loads it shows a progress
 * bar; otherwise the model, the backend, the live (then final) figures of the reply (tok/s,
 * time to first token, tokens, context use) and the temperature, plus warnings (history not
 * saved). Fields are dropped from the least important when the terminal is narrow. */
#ifndef BN_STATUSBAR_H
#define BN_STATUSBAR_H

#include <stddef.h>

#include "app/app.h"
#include "ui/screen.h"

/* The bar's text for a terminal cols wide (pure: tested without a terminal). The part from
 * *busy_at (byte offset, -1 if none) is drawn highlighted; likewise *warn_at. */
void statusbar_format(const AppStatus *st, int cols, char *out, size_t cap, int *busy_at,
                      int *warn_at);
void statusbar_draw(WINDOW *w, const AppStatus *st);

#endif
