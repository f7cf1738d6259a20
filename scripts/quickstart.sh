#!/bin/sh
# One-step setup for a fresh Debian 12 / Ubuntu machine: lists the Debian packages that are
# missing and the command that installs them, asks, installs, builds into ./build, then either
# starts the chat or runs the whole test suite.
#   sh scripts/quickstart.sh [--yes] chat [ARGS...]   build, then run bitnet-chat ARGS
#   sh scripts/quickstart.sh [--yes] test             build, then run every ctest test
# --yes installs without asking (where no terminal can answer). --werror builds with warnings
# as errors: CI's `.ci/run` is `--yes --werror test`. Users build without it, so that a newer
# compiler's new warning cannot break a first build.
set -eu
cd "$(dirname "$0")/.."

usage() { echo "usage: sh scripts/quickstart.sh [--yes] [--werror] chat [ARGS...] | test" >&2; }
yes=0
werror=OFF
while [ $# -gt 0 ]; do
    case $1 in
    --yes) yes=1 ;;
    --werror) werror=ON ;;
    -h|--help) usage; exit 0 ;;
    -*) usage; exit 2 ;;
    *) break ;;
    esac
    shift
done
what=${1:-chat}
[ $# -gt 0 ] && shift
case $what in
chat|test) ;;
*) usage; exit 2 ;;
esac

pkgs="build-essential cmake ninja-build pkg-config libncurses-dev libreadline-dev
      libsqlite3-dev libpcre2-dev libjansson-dev tmux"
if ! command -v dpkg >/dev/null 2>&1; then
    echo "quickstart: not a Debian system; make sure the equivalents of these are installed:"
    echo "  "$pkgs
else
    missing=""
    for p in $pkgs; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        SUDO=""
        [ "$(id -u)" -ne 0 ] && SUDO="sudo "
        echo "quickstart: these Debian packages are missing:$missing"
        echo "quickstart: they are installed with:"
        echo "  ${SUDO}apt-get update"
        echo "  ${SUDO}apt-get install -y --no-install-recommends$missing"
        if [ $yes -eq 0 ]; then
            if [ ! -t 0 ]; then
                echo "quickstart: no terminal to ask; run those commands, or this script with --yes" >&2
                exit 1
            fi
            printf "Run them now? [y/N] "
            read -r answer || answer=""
            case $answer in
            y|Y|yes|YES) ;;
            *) echo "quickstart: nothing installed"; exit 1 ;;
            esac
        fi
        ${SUDO}apt-get update
        ${SUDO}env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    fi
fi

jobs=$(nproc 2>/dev/null || echo 2)
if [ ! -f build/CMakeCache.txt ]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBITNET_WERROR=$werror
else
    cmake -S . -B build -DBITNET_WERROR=$werror >/dev/null
fi
cmake --build build -j "$jobs"

case "$what" in
chat) exec ./build/bitnet-chat "$@" ;;
test) exec ctest --test-dir build --output-on-failure -j "$jobs" ;;
esac
