# Shared setup of the command-line tests, sourced by tests/cli/test_*.sh:
#     . "$BN_SOURCE_DIR/tests/cli/lib.sh"
# Needs BN_BIN (the bitnet-chat under test) and BN_SOURCE_DIR, as ctest sets them. Gives:
#   M        the I2_S fixture model (tests/data/models/i2s.gguf)
#   T        a fresh temporary folder, removed when the script exits
#   fail MSG             count a failure and say what it was
#   expect_fail RC TEXT CMD...
#            run CMD (stdin from /dev/null); it must exit RC, write exactly one line to stderr
#            holding TEXT, and nothing to stdout: the contract for every bad input
#   usage_error TEXT ARGS...   expect_fail 2 TEXT "$BN_BIN" ARGS... (refused before any work)
#   cli_done             print "NAME: all passed" when nothing failed, and exit 0 or 1
set -u
: "${BN_BIN:?BN_BIN must point at bitnet-chat}"
: "${BN_SOURCE_DIR:?BN_SOURCE_DIR must point at the source tree}"
BN_TEST_NAME=$(basename "$0" .sh)
M="$BN_SOURCE_DIR/tests/data/models/i2s.gguf"
T=$(mktemp -d "${TMPDIR:-/tmp}/bn_$BN_TEST_NAME.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fails=0

fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

expect_fail() {
    want_rc=$1
    want=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    [ $rc = "$want_rc" ] || fail "$*: exit $rc, expected $want_rc"
    [ "$(wc -l <"$T/err")" = 1 ] || { fail "$*: not one line"; cat "$T/err"; }
    grep -q -- "$want" "$T/err" || { fail "$*: message lacks '$want'"; cat "$T/err"; }
    [ -s "$T/out" ] && fail "$*: wrote to stdout"
    return 0
}

usage_error() {
    want=$1
    shift
    expect_fail 2 "$want" "$BN_BIN" "$@"
}

cli_done() {
    [ $fails = 0 ] && echo "$BN_TEST_NAME: all passed"
    exit $((fails > 0))
}
