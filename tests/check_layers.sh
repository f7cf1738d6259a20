#!/bin/sh
# Layering rule: ui -> app -> infer -> kernels. A folder may include only itself and the folders
# below it. app/main.c is the composition root and may include ui/. Fails listing violations.
root=${1:-.}
cd "$root" || exit 1
bad=0
check() { # folder, forbidden-regex
    hits=$(grep -nE "#[[:space:]]*include[[:space:]]*\"($2)/" $(find "$1" -name '*.[ch]' -o -name '*.cu' -o -name '*.cuh' | grep -v '^app/main.c$') 2>/dev/null)
    if [ -n "$hits" ]; then
        echo "layering violation: $1 may not include $2:"; echo "$hits"; bad=1
    fi
}
check kernels 'infer|app|ui'
check infer 'app|ui'
check app 'ui'
# Probe: the checker itself must catch a violation, or it proves nothing.
tmp=$(mktemp -d); mkdir -p "$tmp/kernels"; echo '#include "ui/ui.h"' > "$tmp/kernels/x.c"
if ! (cd "$tmp" && grep -qE '#[[:space:]]*include[[:space:]]*"(infer|app|ui)/' kernels/x.c); then
    echo "checker self-test failed"; bad=1
fi
rm -rf "$tmp"
[ $bad -eq 0 ] && echo "layering ok: ui -> app -> infer -> kernels"
exit $bad
