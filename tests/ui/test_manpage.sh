#!/bin/sh
# The man page, `bitnet-chat --help`, the chat's /help and the README must agree: the man page
# describes the options of --help and nothing else, each with the argument --help names; the man page's SLASH COMMANDS section and
# the README's command table list exactly the commands /help lists (/help is made from the
# command table, so this is the table as the user sees it); the README's option tables hold only
# real options, and it mentions every option. Prints what is missing on either side.
# Then the same comparison runs on copies with one planted disagreement each, and must find
# every one, so that a check that quietly stopped looking cannot pass (SHOW_PLANTED=1 prints
# what it found in each).
# usage: test_manpage.sh SLASH_HELP (env BN_BIN, BN_SOURCE_DIR); SLASH_HELP prints /help's text
BIN=${BN_BIN:?BN_BIN not set}
SRC=${BN_SOURCE_DIR:?BN_SOURCE_DIR not set}
SLASH=${1:?usage: test_manpage.sh SLASH_HELP}
MAN="$SRC/man/bitnet-chat.1"
README="$SRC/README.md"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0

[ -f "$MAN" ] || { echo "FAIL: $MAN is missing"; exit 1; }
"$BIN" --help >"$tmp/help" || { echo "FAIL: --help failed"; exit 1; }
"$SLASH" >"$tmp/slash" || { echo "FAIL: $SLASH failed"; exit 1; }

# compare MAN README HELP SLASH: prints a FAIL line for each disagreement; returns 1 if any.
compare() {
    c_man=$1 c_readme=$2 c_help=$3 c_slash=$4 c_bad=0
    w="$tmp/w"
    rm -rf "$w" && mkdir "$w"
    # groff writes a minus sign as \- ; undo that before looking for options.
    sed 's/\\-/-/g' "$c_man" >"$w/man"

    grep -oE -- '--[a-z][a-z-]*' "$c_help" | sort -u >"$w/help_long"
    grep -oE -- '--[a-z][a-z-]*' "$w/man" | sort -u >"$w/man_long"
    # Short options: "-x," at the start of a help line; "-x" as a word in the man page.
    grep -oE -- '^ +-[a-zA-Z],' "$c_help" | tr -d ' ,' | sort -u >"$w/help_short"

    [ -s "$w/help_long" ] || { echo "FAIL: no long options found in --help"; return 1; }
    for o in $(cat "$w/help_long"); do
        grep -qx -- "$o" "$w/man_long" || { echo "FAIL: $o is in --help but not in the man page"; c_bad=1; }
    done
    for o in $(cat "$w/man_long"); do
        grep -qx -- "$o" "$w/help_long" || { echo "FAIL: $o is in the man page but not in --help"; c_bad=1; }
    done
    for o in $(cat "$w/help_short"); do
        grep -qE -- "(^|[ \"])$o([ ,\"]|$)" "$w/man" || { echo "FAIL: $o is in --help but not in the man page"; c_bad=1; }
    done

    # Each option's argument: its name in --help ("--ctx N") is the man page's, in the heading
    # line after each .TP of the OPTIONS section.
    grep -E '^  (-[a-zA-Z], |    )--' "$c_help" | sed -E 's/^ +(-[a-zA-Z], )?//' |
        grep -oE -- '^--[a-z][a-z-]*( [A-Z][A-Z_]*)?' | sort -u >"$w/help_args"
    sed -n '/^\.SH OPTIONS/,/^\.SH /p' "$w/man" | awk '/^\.TP/ { getline; print }' |
        sed 's/\\f[IRBP]//g; s/"//g' | tr -s ' ' |
        grep -oE -- '--[a-z][a-z-]*( [A-Z][A-Z_]*)?' | sort -u >"$w/man_args"
    for o in $(sed 's/ /=/' "$w/help_args"); do
        a=$(echo "$o" | tr '=' ' ')
        grep -qx -- "$a" "$w/man_args" ||
            { echo "FAIL: --help gives '$a', the man page's OPTIONS do not"; c_bad=1; }
    done

    # Slash commands: /help's list (one "  /name ..." line each, between "Commands:" and
    # "Keys:") against the man page's SLASH COMMANDS section.
    sed -n '/^Commands:/,/^Keys:/p' "$c_slash" | grep -oE '^  /[a-z_]+' | tr -d ' ' | sort -u >"$w/cmds"
    [ -s "$w/cmds" ] || { echo "FAIL: no commands found in /help"; return 1; }
    sed -n '/^\.SH SLASH COMMANDS/,/^\.SH /p' "$w/man" | grep -oE '^\.B[IR]? /[a-z_]+' |
        grep -oE '/[a-z_]+' | sort -u >"$w/man_cmds"
    for c in $(cat "$w/cmds"); do
        grep -qx -- "$c" "$w/man_cmds" || { echo "FAIL: command $c is in /help but not in the man page"; c_bad=1; }
    done
    for c in $(cat "$w/man_cmds"); do
        grep -qx -- "$c" "$w/cmds" || { echo "FAIL: the man page lists $c, which /help lacks"; c_bad=1; }
    done

    # The README: the slash commands of its command table (the chat screen section) are
    # exactly /help's; every option named in an option row of its tables ("| `--opt ...")
    # exists in --help, and every option of --help is documented somewhere in it.
    sed -n '/^## The chat screen/,/^## /p' "$c_readme" | grep -E '^\| `/' | grep -oE '`/[a-z_]+' |
        tr -d '`' | sort -u >"$w/readme_cmds"
    [ -s "$w/readme_cmds" ] || { echo "FAIL: no command table found in the README"; c_bad=1; }
    for c in $(cat "$w/cmds"); do
        grep -qx -- "$c" "$w/readme_cmds" || { echo "FAIL: command $c is in /help but not in the README's command table"; c_bad=1; }
    done
    for c in $(cat "$w/readme_cmds"); do
        grep -qx -- "$c" "$w/cmds" || { echo "FAIL: the README's command table lists $c, which /help lacks"; c_bad=1; }
    done
    grep -E '^\| `-' "$c_readme" | grep -oE -- '(^|[ `(])--[a-z][a-z-]*' | grep -oE -- '--[a-z][a-z-]*' |
        sort -u >"$w/readme_table_long"
    for o in $(cat "$w/readme_table_long"); do
        grep -qx -- "$o" "$w/help_long" || { echo "FAIL: $o is in a README table but not in --help"; c_bad=1; }
    done
    for o in $(cat "$w/help_long"); do
        grep -q -- "$o\\b" "$c_readme" || { echo "FAIL: $o is in --help but not in the README"; c_bad=1; }
    done
    n_long=$(wc -l <"$w/help_long")
    n_cmds=$(wc -l <"$w/cmds")
    return $c_bad
}

compare "$MAN" "$README" "$tmp/help" "$tmp/slash" || bad=1
[ $bad -eq 0 ] &&
    echo "man page, --help ($n_long long options), /help ($n_cmds commands) and README agree"

# The planted disagreements: each copy differs from the real files in one place.
P="$tmp/planted"
mkdir "$P"
planted() { # planted WHAT MAN README HELP SLASH: the comparison must fail
    what=$1
    shift
    compare "$@" >"$P/out"
    c_rc=$?
    [ -n "${SHOW_PLANTED:-}" ] && { echo "-- planted: $what"; cat "$P/out"; }
    if [ $c_rc -eq 0 ]; then
        echo "FAIL: the comparison missed a planted disagreement: $what"
        bad=1
    elif ! grep -q '^FAIL: ' "$P/out"; then
        echo "FAIL: a planted disagreement ($what) failed without saying why"
        bad=1
    fi
}
sed '/^\.BI \/temp /d' "$MAN" >"$P/man_less"
sed '/^\.SH SLASH COMMANDS/a .B /nosuch' "$MAN" >"$P/man_more"
sed 's/^\.BR \/copy /.BR \/copyx /' "$MAN" >"$P/man_renamed"
sed '/^\.SH SLASH COMMANDS/,/^\.SH /s/^\.B \/stats$/.B \/statz/' "$MAN" >"$P/man_stats"
sed '/^Commands:/a\  /nosuch  planted' "$tmp/slash" >"$P/slash_more"
grep -v '^  /rename ' "$tmp/slash" >"$P/slash_less"
grep -v -- '--mmap ' "$tmp/help" >"$P/help_less"
sed 's/^  -y, --yes /  -y, --yesss /' "$tmp/help" >"$P/help_renamed"
sed 's/^  -c, --ctx N  /  -c, --ctx SIZE/' "$tmp/help" >"$P/help_arg"
sed 's/^\.BI \\-\\-seed " N"/.BI \\-\\-seed " SEED"/' "$MAN" >"$P/man_arg"
sed 's/`\/stats`, //' "$README" >"$P/readme_less"
sed '/^## The chat screen/,/^## /s/^| `\/load PATH` |/| `\/nosuch` | planted |\n&/' "$README" >"$P/readme_more"
sed 's/--kv-cache/--kv-cachex/g' "$README" >"$P/readme_option"
differs() { # differs ORIGINAL PLANTED: a planting that changed nothing is itself a failure
    cmp -s "$1" "$2" && { echo "FAIL: planting $2 changed nothing"; bad=1; }
    return 0
}
for f in man_less man_more man_renamed man_stats man_arg; do differs "$MAN" "$P/$f"; done
for f in slash_more slash_less; do differs "$tmp/slash" "$P/$f"; done
for f in help_less help_renamed help_arg; do differs "$tmp/help" "$P/$f"; done
for f in readme_less readme_more readme_option; do differs "$README" "$P/$f"; done
planted "a command missing from the man page" "$P/man_less" "$README" "$tmp/help" "$tmp/slash"
planted "a command only the man page has" "$P/man_more" "$README" "$tmp/help" "$tmp/slash"
planted "a command renamed in the man page" "$P/man_renamed" "$README" "$tmp/help" "$tmp/slash"
planted "/stats misspelt in the man page" "$P/man_stats" "$README" "$tmp/help" "$tmp/slash"
planted "a command only /help has" "$MAN" "$README" "$tmp/help" "$P/slash_more"
planted "a command missing from /help" "$MAN" "$README" "$tmp/help" "$P/slash_less"
planted "an option missing from --help" "$MAN" "$README" "$P/help_less" "$tmp/slash"
planted "an option renamed in --help" "$MAN" "$README" "$P/help_renamed" "$tmp/slash"
planted "an option's argument named otherwise in --help" "$MAN" "$README" "$P/help_arg" "$tmp/slash"
planted "an option's argument named otherwise in the man page" "$P/man_arg" "$README" "$tmp/help" "$tmp/slash"
planted "a command missing from the README" "$MAN" "$P/readme_less" "$tmp/help" "$tmp/slash"
planted "a command only the README has" "$MAN" "$P/readme_more" "$tmp/help" "$tmp/slash"
planted "an option the README names wrongly" "$MAN" "$P/readme_option" "$tmp/help" "$tmp/slash"
exit $bad
