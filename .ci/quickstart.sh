#!/bin/sh
# One-step setup for a fresh Debian 12 / Ubuntu machine: installs the Debian packages that are
# missing, builds into ./build, then either starts the chat or runs the whole test suite.
#   sh .ci/quickstart.sh chat [ARGS...]   build, then run bitnet-chat ARGS
#   sh .ci/quickstart.sh test             build, then run every ctest test (what CI runs)
set -eu
cd "$(dirname "$0")/.."
what=${1:-chat}
[ $# -gt 0 ] && shift

pkgs="build-essential cmake ninja-build pkg-config libncurses-dev libreadline-dev
      libsqlite3-dev libpcre2-dev libjansson-dev tmux"
missing=""
for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "quickstart: installing:$missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
fi

jobs=$(nproc 2>/dev/null || echo 2)
if [ ! -f build/CMakeCache.txt ]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBITNET_WERROR=ON
fi
cmake --build build -j "$jobs"

case "$what" in
chat) exec ./build/bitnet-chat "$@" ;;
test) exec ctest --test-dir build --output-on-failure -j "$jobs" ;;
*) echo "usage: sh .ci/quickstart.sh chat|test" >&2; exit 2 ;;
esac
