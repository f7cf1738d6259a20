#!/bin/sh
# The man page and `bitnet-chat --help` must describe the same options, the man page must
# list exactly the slash commands of app/commands.c, and so must the README's command table
# (its option tables hold only real options, and it mentions every option). Prints what is
# missing on either side.
# usage: test_manpage.sh (env BN_BIN, BN_SOURCE_DIR)
BIN=${BN_BIN:?BN_BIN not set}
SRC=${BN_SOURCE_DIR:?BN_SOURCE_DIR not set}
MAN="$SRC/man/bitnet-chat.1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0

[ -f "$MAN" ] || { echo "FAIL: $MAN is missing"; exit 1; }
"$BIN" --help >"$tmp/help" || { echo "FAIL: --help failed"; exit 1; }

# groff writes a minus sign as \- ; undo that before looking for options.
sed 's/\\-/-/g' "$MAN" >"$tmp/man"

grep -oE -- '--[a-z][a-z-]*' "$tmp/help" | sort -u >"$tmp/help_long"
grep -oE -- '--[a-z][a-z-]*' "$tmp/man" | sort -u >"$tmp/man_long"
# Short options: "-x," at the start of a help line; "-x" as a word in the man page.
grep -oE -- '^ +-[a-zA-Z],' "$tmp/help" | tr -d ' ,' | sort -u >"$tmp/help_short"

[ -s "$tmp/help_long" ] || { echo "FAIL: no long options found in --help"; exit 1; }
for o in $(cat "$tmp/help_long"); do
    grep -qx -- "$o" "$tmp/man_long" || { echo "FAIL: $o is in --help but not in the man page"; bad=1; }
done
for o in $(cat "$tmp/man_long"); do
    grep -qx -- "$o" "$tmp/help_long" || { echo "FAIL: $o is in the man page but not in --help"; bad=1; }
done
for o in $(cat "$tmp/help_short"); do
    grep -qE -- "(^|[ \"])$o([ ,\"]|$)" "$tmp/man" || { echo "FAIL: $o is in --help but not in the man page"; bad=1; }
done

# Slash commands: the table in app/commands.c against the man page's SLASH COMMANDS section.
grep -oE '^    \{"/[a-z_]+"' "$SRC/app/commands.c" | grep -oE '/[a-z_]+' | sort -u >"$tmp/cmds"
[ -s "$tmp/cmds" ] || { echo "FAIL: no commands found in app/commands.c"; exit 1; }
sed -n '/^\.SH SLASH COMMANDS/,/^\.SH /p' "$tmp/man" | grep -oE '^\.B[IR]? /[a-z_]+' |
    grep -oE '/[a-z_]+' | sort -u >"$tmp/man_cmds"
for c in $(cat "$tmp/cmds"); do
    grep -qx -- "$c" "$tmp/man_cmds" || { echo "FAIL: command $c is not in the man page"; bad=1; }
done
for c in $(cat "$tmp/man_cmds"); do
    grep -qx -- "$c" "$tmp/cmds" || { echo "FAIL: the man page lists $c, which app/commands.c lacks"; bad=1; }
done

# The README: the slash commands of its command table (the chat screen section) are exactly
# the table's; every option named in an option row of its tables ("| `--opt ...") exists in
# --help, and every option of --help is documented somewhere in it.
README="$SRC/README.md"
sed -n '/^## The chat screen/,/^## /p' "$README" | grep -E '^\| `/' | grep -oE '`/[a-z_]+' |
    tr -d '`' | sort -u >"$tmp/readme_cmds"
[ -s "$tmp/readme_cmds" ] || { echo "FAIL: no command table found in the README"; bad=1; }
for c in $(cat "$tmp/cmds"); do
    grep -qx -- "$c" "$tmp/readme_cmds" || { echo "FAIL: command $c is not in the README's command table"; bad=1; }
done
for c in $(cat "$tmp/readme_cmds"); do
    grep -qx -- "$c" "$tmp/cmds" || { echo "FAIL: the README's command table lists $c, which app/commands.c lacks"; bad=1; }
done
grep -E '^\| `-' "$README" | grep -oE -- '(^|[ `(])--[a-z][a-z-]*' | grep -oE -- '--[a-z][a-z-]*' |
    sort -u >"$tmp/readme_table_long"
for o in $(cat "$tmp/readme_table_long"); do
    grep -qx -- "$o" "$tmp/help_long" || { echo "FAIL: $o is in a README table but not in --help"; bad=1; }
done
for o in $(cat "$tmp/help_long"); do
    grep -q -- "$o" "$README" || { echo "FAIL: $o is in --help but not in the README"; bad=1; }
done

n_long=$(wc -l <"$tmp/help_long")
n_cmds=$(wc -l <"$tmp/cmds")
if [ $bad -eq 0 ]; then
    echo "man page agrees with --help ($n_long long options) and with the command table ($n_cmds commands)"
fi
exit $bad
