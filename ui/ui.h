/* The full-screen interface. Only ui/ touches the terminal. */
#ifndef BN_UI_H
#define BN_UI_H

#include "app/cli.h"

/* Full-screen chat; returns the process exit code. The terminal is restored on every path. */
int ui_run_chat(const AppConfig *cfg);
/* Session browser on its own (bitnet-chat --browse). */
int ui_run_browser(const AppConfig *cfg);

#endif
