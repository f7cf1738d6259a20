/* Where the program's files are: the default model and the per-user data. */
#ifndef BN_PATHS_H
#define BN_PATHS_H

/* PATH of NAME in the per-user data directory, "$XDG_DATA_HOME/bitnet-chat/NAME": a relative
 * XDG_DATA_HOME is ignored, as the XDG spec says; then "$HOME/.local/share/bitnet-chat/NAME",
 * with the password database standing in for an empty $HOME. malloc'ed; NULL when no home
 * directory is known or out of memory. The directory is not created here. */
char *app_data_file(const char *name);

/* Path of the default model (assets/ next to the binary, the install prefix or the source
 * tree); NULL if none is found. */
const char *app_default_model_path(void);

#endif
