#!/bin/sh
# The build itself enforces the layering: each library is compiled seeing only its own folder's
# headers and the next layer's (CMakeLists.txt, bn_layer_headers). This test takes the real compile
# command of one file per layer from compile_commands.json and compiles a one-line probe with its
# include options: an include of the layer below must compile (or the probe proves nothing), an
# include that skips or climbs a layer must not. Usage: check_layers_build.sh BUILD_DIR
db=${1:?usage: check_layers_build.sh BUILD_DIR}/compile_commands.json
if [ ! -r "$db" ]; then
    echo "SKIP: $db not found (the generator writes none)"; exit 77
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
bad=0

# flags FILE: the compiler and the -I options of FILE's compile command (CMake writes "command"
# just before "file" for each entry).
flags() {
    awk -v want="\"file\": \"$1\"" '
        /"command":/ { cmd = $0 }
        index($0, want) { print cmd; exit }' "$db" |
        sed 's/^[[:space:]]*"command": "//' |
        tr ' ' '\n' | awk 'NR == 1 || /^-I/' | tr '\n' ' '
}

# probe FILE INCLUDE yes|no: does a file with FILE's include options compile "#include INCLUDE"?
probe() {
    cmd=$(flags "$1")
    if [ -z "$cmd" ]; then
        echo "FAIL: no compile command for $1 in $db"; bad=1; return
    fi
    printf '#include "%s"\n' "$2" > "$tmp/probe.c"
    # shellcheck disable=SC2086
    if $cmd -fsyntax-only "$tmp/probe.c" > "$tmp/out" 2>&1; then got=yes; else got=no; fi
    if [ "$got" != "$3" ]; then
        echo "FAIL: $1's include options: \"$2\" compiles: $got, expected $3"; cat "$tmp/out"; bad=1
    else
        echo "ok: $1 + \"$2\": compiles $got"
    fi
}

src=$(awk -F'"' '/"file":/ && /\/infer\/infer\.c"/ { print $4; exit }' "$db")
root=${src%/infer/infer.c}
if [ -z "$src" ]; then
    echo "FAIL: infer/infer.c not in $db"; exit 1
fi
# FILE (whose include options the probe takes), INCLUDE, whether it must compile
while read -r file include want; do
    probe "$root/$file" "$include" "$want"
done <<PROBES
kernels/w2a8_ref.c kernels/w2a8.h yes
kernels/w2a8_ref.c infer/err.h no
infer/infer.c kernels/w2a8.h yes
infer/infer.c app/app.h no
app/app.c infer/err.h yes
app/app.c kernels/w2a8.h no
app/app.c ui/ui.h no
ui/ui.c app/app.h yes
ui/ui.c infer/err.h no
ui/ui.c infer/utf8.h yes
ui/ui.c infer/sampler_params.h yes
ui/ui.c infer/sampler.h no
ui/ui.c kernels/w2a8.h no
PROBES
exit $bad
