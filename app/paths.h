/* Where the program's files live: the per-user data, the default model; how model paths are
 * kept. */
#ifndef BN_PATHS_H
#define BN_PATHS_H

#include <stddef.h>

/* PATH of NAME in the per-user data directory, "$XDG_DATA_HOME/bitnet-chat/NAME": a relative
 * XDG_DATA_HOME is ignored, as the XDG spec says; then "$HOME/.local/share/bitnet-chat/NAME",
 * with the password database standing in for an empty $HOME. malloc'ed; NULL when no home
 * directory is known or out of memory. The directory is not created here. */
char *app_data_file(const char *name);

/* Path of the default model (assets/ next to the binary, the install prefix or the source
 * tree); NULL if none is found. */
const char *app_default_model_path(void);
/* Makes path (a buffer of cap bytes) absolute and normalised in place, as the history stores
 * model paths ("models/x.gguf" and "build/../assets/x.gguf" were stored as typed); left as it
 * is when it cannot be resolved. */
void app_absolute_path(char *path, size_t cap);

#endif
