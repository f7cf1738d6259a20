/* Where the default (demo) model is found: next to the binary (build tree), under the install
 * prefix (share/bitnet-chat), or in the source tree the binary was built from. Where the
 * per-user data lives: app_data_file. */
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/paths.h"

#define DEMO_MODEL "bitnet-demo.gguf"

char *app_data_file(const char *name) {
    const char *xdg = getenv("XDG_DATA_HOME");
    char buf[4096];
    if (xdg && xdg[0] == '/') { /* the XDG spec: relative values are ignored */
        snprintf(buf, sizeof buf, "%s/bitnet-chat/%s", xdg, name);
    } else {
        const char *home = getenv("HOME");
        if (!home || !home[0]) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home) return NULL;
        snprintf(buf, sizeof buf, "%s/.local/share/bitnet-chat/%s", home, name);
    }
    return strdup(buf);
}

const char *app_default_model_path(void) {
    static char found[PATH_MAX + 64];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *rel[] = {"/assets/", "/../share/bitnet-chat/", "/../assets/"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(found, sizeof found, "%s%s%s", exe, rel[i], DEMO_MODEL);
            if (access(found, R_OK) == 0) return found;
        }
    }
#ifdef BITNET_SOURCE_DIR
    snprintf(found, sizeof found, "%s/assets/%s", BITNET_SOURCE_DIR, DEMO_MODEL);
    if (access(found, R_OK) == 0) return found;
#endif
    return NULL;
}

void app_absolute_path(char *path, size_t cap) {
    char *r = path[0] ? realpath(path, NULL) : NULL;
    if (r && strlen(r) < cap) snprintf(path, cap, "%s", r);
    free(r);
}
