/* Where the program's per-user files live. */
#ifndef BN_PATHS_H
#define BN_PATHS_H

/* PATH of NAME in the per-user data directory, "$XDG_DATA_HOME/bitnet-chat/NAME": a relative
 * XDG_DATA_HOME is ignored, as the XDG spec says; then "$HOME/.local/share/bitnet-chat/NAME",
 * with the password database standing in for an empty $HOME. malloc'ed; NULL when no home
 * directory is known or out of memory. The directory is not created here. */
char *app_data_file(const char *name);

#endif
