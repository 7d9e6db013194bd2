#!/bin/sh
# Runs one DL test file (the Automake LOG_COMPILER for .dl tests).
#
#   tests/programs/*.dl  must compile; when dcc can build executables, the
#                        program runs and its output must equal the
#                        `-- expect: TEXT` lines in order; `-- expect-error: TEXT`
#                        means it must fail at run time (status 1) with TEXT on
#                        stderr. `-- args: A B` passes arguments.
#   tests/errors/*.dl    must be rejected (status 1) with exactly the errors
#                        written as `-- error: LINE:COL: TEXT` (TEXT a substring
#                        of the message); `-- warning: LINE:COL: TEXT` lines
#                        must appear too. `-- check: types` means the error
#                        is expected from `dcc --emit=types` already.
#   tests/ad/*.dl        like programs.
# Exit status: 0 pass, 1 fail, 77 skip (Automake's convention).
set -u
t=$1
: "${DCC:=dcc}"
name=$(basename "$t" .dl)
work=${TMPDIR:-/tmp}/dcc-test.$$.$name
mkdir -p "$work" || exit 99
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $t: $*"; exit 1; }

case $t in
*/errors/*)
    "$DCC" --emit=types --color=never "$t" >"$work/out" 2>"$work/err"
    st=$?
    cat "$work/err"
    [ $st -eq 1 ] || fail "expected exit status 1, got $st"
    grep -q 'internal error\|AddressSanitizer\|runtime error:' "$work/err" && fail "crash"
    nexp=0
    # expected errors, in any order, each must appear
    grep -E -- '^ *-- (error|warning): ' "$t" | sed -E 's/^ *-- //' > "$work/exp"
    while IFS= read -r line; do
        kind=${line%%:*}; rest=${line#*: }
        pos=${rest%%: *}; text=${rest#*: }
        [ "$kind" = error ] && nexp=$((nexp + 1))
        grep -F -- ":$pos: $kind: " "$work/err" | grep -qF -- "$text" ||
            fail "missing '$kind' at $pos containing '$text'"
    done < "$work/exp"
    [ $nexp -gt 0 ] || fail "no '-- error:' expectation in the test"
    ngot=$(grep -c -E '^[^ ]+:[0-9]+:[0-9]+: error: ' "$work/err")
    [ "$ngot" -eq "$nexp" ] || fail "expected $nexp errors, got $ngot"
    exit 0 ;;
*)
    "$DCC" --emit=types --color=never "$t" >"$work/types" 2>"$work/err"
    st=$?
    [ $st -eq 0 ] || { cat "$work/err"; fail "does not type-check (status $st)"; }
    # Programs run once the compiler can build executables.
    if ! "$DCC" --version | grep -q 'codegen: yes'; then
        echo "checked: type-checks (code generation not built yet)"
        exit 0
    fi
    args=$(sed -n 's/^ *-- args: //p' "$t" | head -n 1)
    if ! "$DCC" -o "$work/prog" "$t" 2>"$work/cerr"; then
        cat "$work/cerr"
        # A derivative form whose AD stage does not exist yet: skipped, and
        # said so in the log (it runs again as soon as the stage lands).
        if grep -q "is not implemented yet: this dcc has no AD stages" "$work/cerr" &&
           [ "$(grep -c ': error: ' "$work/cerr")" -eq "$(grep -c 'is not implemented yet' "$work/cerr")" ]; then
            echo "SKIP: $t: needs an AD stage that is not built yet"
            exit 77
        fi
        fail "does not compile"
    fi
    # shellcheck disable=SC2086
    (cd "$(dirname "$t")" && "$work/prog" $args) >"$work/out" 2>"$work/err"
    st=$?
    sed -n 's/^ *-- expect: \{0,1\}//p' "$t" > "$work/exp"
    experr=$(sed -n 's/^ *-- expect-error: //p' "$t" | head -n 1)
    if [ -n "$experr" ]; then
        cat "$work/err"
        [ $st -eq 1 ] || fail "expected a run-time error (status 1), got $st"
        grep -qF -- "$experr" "$work/err" || fail "stderr lacks '$experr'"
    else
        [ $st -eq 0 ] || { cat "$work/err"; fail "exit status $st"; }
    fi
    if ! diff -u "$work/exp" "$work/out"; then fail "output differs"; fi
    [ -s "$work/exp" ] || [ -n "$experr" ] || fail "no '-- expect:' lines in the test"
    exit 0 ;;
esac
