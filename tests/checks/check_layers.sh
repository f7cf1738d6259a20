#!/bin/sh
# Layering rule: ui -> app -> infer -> kernels. A folder's files include headers of their own
# folder and of the one below, nothing else. Three named exceptions: app/main.c is the
# composition root and starts the UI; app/cmd_bench.c holds the kernel tables of `bitnet-chat
# bench` (they belong in kernels/dev); ui/ may include infer/utf8.h and infer/sampler_params.h,
# which depend on nothing (the UTF-8 rules exist once; the sampling settings the UI shows). The build enforces the same rule for what it compiles (each library sees
# only its own and the next layer's headers, see CMakeLists.txt); this check also covers files no
# build compiles. Usage: check_layers.sh [ROOT]. Exits 1 listing the violations.

# check_tree DIR: prints every violation under DIR; returns 1 if there is one.
check_tree() {
    (
        cd "$1" || exit 2
        bad=0
        # rule FOLDER FORBIDDEN-REGEX [ALLOWED-FILE [ALLOWED-HEADER...]]
        rule() {
            folder=$1 forbidden=$2 except=${3:-(none)}
            [ -d "$folder" ] || return 0
            hits=$(find "$folder" \( -name '*.[ch]' -o -name '*.cu' -o -name '*.cuh' \) ! -path "$except" \
                       -exec grep -nHE "#[[:space:]]*include[[:space:]]*\"($forbidden)/" {} +)
            [ $# -gt 3 ] && shift 3 || set --
            for allowed in "$@"; do hits=$(printf '%s\n' "$hits" | grep -vF "\"$allowed\""); done
            if [ -n "$hits" ]; then
                echo "layering violation: $folder may not include $forbidden:"; echo "$hits"; bad=1
            fi
        }
        rule kernels 'infer|app|ui'
        rule infer 'app|ui'
        rule app 'ui' app/main.c
        rule app 'kernels' app/cmd_bench.c
        rule ui 'infer|kernels' '(none)' infer/utf8.h infer/sampler_params.h
        exit $bad
    )
}

# Self-test: the same check_tree must pass a tree that keeps the rule and fail on each planted
# violation (one per rule), or a green result would prove nothing.
self_test() {
    tmp=$(mktemp -d) || return 1
    ok=0
    for d in kernels infer app ui; do mkdir -p "$tmp/$d"; done
    echo '#include "kernels/w2a8.h"' > "$tmp/kernels/k.c"
    echo '#include "kernels/w2a8.h"' > "$tmp/infer/i.c"
    echo '#include "infer/err.h"' > "$tmp/app/a.c"
    echo '#include "ui/ui.h"' > "$tmp/app/main.c"
    echo '#include "kernels/w2a8.h"' > "$tmp/app/cmd_bench.c"
    echo '#include "app/app.h"' > "$tmp/ui/u.c"
    echo '#include "infer/utf8.h"' > "$tmp/ui/w.c"
    echo '#include "infer/sampler_params.h"' > "$tmp/ui/s.c"
    if ! check_tree "$tmp" > /dev/null; then
        echo "checker self-test: a tree that keeps the rule was refused:"; check_tree "$tmp"; ok=1
    fi
    for plant in 'kernels/p.cuh:infer/err.h' 'kernels/p.c:app/app.h' 'infer/p.c:app/app.h' \
                 'infer/p.h:ui/ui.h' 'app/p.c:ui/ui.h' 'app/p.c:kernels/w2a8.h' \
                 'ui/p.c:infer/err.h' 'ui/p.c:kernels/w2a8.h' 'ui/p.c:  #  include "infer/err.h' \
                 'ui/p.c:infer/utf8.hh' 'ui/p.c:infer/sampler.h'; do
        file=${plant%%:*}; inc=${plant#*:}
        case $inc in *'"'*) line="$inc\"" ;; *) line="#include \"$inc\"" ;; esac
        echo "$line" > "$tmp/$file"
        if check_tree "$tmp" > /dev/null; then
            echo "checker self-test: missed '$line' in $file"; ok=1
        fi
        rm -f "$tmp/$file"
    done
    rm -rf "$tmp"
    return $ok
}

bad=0
self_test || bad=1
check_tree "${1:-.}" || bad=1
[ $bad -eq 0 ] && echo "layering ok: ui -> app -> infer -> kernels"
exit $bad
