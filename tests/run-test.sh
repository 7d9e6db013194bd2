#!/bin/sh
# Runs one DL test file (the Automake LOG_COMPILER for .dl tests).
#
#   tests/programs/*.dl  must compile; when dcc can build executables, the
#                        program runs and its output must equal the
#                        `-- expect: TEXT` lines in order; `-- expect-error: TEXT`
#                        means it must fail at run time (status 1) with TEXT on
#                        stderr. `-- args: A B` passes arguments;
#                        `-- flags: F` runs it again compiled with F.
#   tests/errors/*.dl    must be rejected (status 1) with exactly the errors
#                        written as `-- error: LINE:COL: TEXT` (TEXT a substring
#                        of the message); `-- warning: LINE:COL: TEXT` lines
#                        must appear too. `-- check: types` means the error
#                        is expected from `dcc --emit=types` already.
#   tests/ad/*.dl        like programs.
#   tests/c/*.dl         a module with a C program NAME.c (see below).
#   tests/repl/*.repl    a REPL session (see below).
# Exit status: 0 pass, 1 fail, 77 skip (Automake's convention).
set -u
t=$1
: "${DCC:=dcc}"
name=$(basename "$t" .dl)
work=${TMPDIR:-/tmp}/dcc-test.$$.$name
mkdir -p "$work" || exit 99
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $t: $*"; exit 1; }

# tests/ad/*.dl that run to their expected output also round-trip through
# --emit=ad: the program it prints as DL must compile, run with the same
# arguments and print exactly what the program printed ($work/out).
roundtrip_ad() {
    # shellcheck disable=SC2086
    "$DCC" ${flags:-} --emit=ad --color=never "$t" >"$work/ad.dl" 2>"$work/ad.err" ||
        { cat "$work/ad.err"; fail "round trip: dcc --emit=ad failed"; }
    # shellcheck disable=SC2086
    "$DCC" ${flags:-} --color=never -o "$work/ad.prog" "$work/ad.dl" 2>"$work/ad.cerr" ||
        { cat "$work/ad.cerr"; fail "round trip: the DL printed by --emit=ad does not compile"; }
    # shellcheck disable=SC2086
    (cd "$(dirname "$t")" && "$work/ad.prog" $args) >"$work/ad.out" 2>"$work/ad.rerr"
    st=$?
    [ $st -eq 0 ] || { cat "$work/ad.rerr"; fail "round trip: the recompiled --emit=ad output exits with status $st"; }
    diff -u "$work/out" "$work/ad.out" ||
        fail "round trip: the recompiled --emit=ad output prints something else"
    echo "round trip: --emit=ad output recompiled, same output"
}

# `-- flags: FLAGS` lines (tests/programs, tests/ad): after the run with
# dcc's defaults, the program is compiled again with each FLAGS (-O0 ...)
# and must print the same expected output (tests/ad: and round-trip with
# the same FLAGS).
run_flag_sets() {
    sed -n 's/^ *-- flags: //p' "$t" > "$work/flagsets"
    while IFS= read -r flags <&3; do
        # shellcheck disable=SC2086
        "$DCC" $flags --color=never -o "$work/prog" "$t" 2>"$work/cerr" ||
            { cat "$work/cerr"; fail "does not compile with $flags"; }
        # shellcheck disable=SC2086
        (cd "$(dirname "$t")" && "$work/prog" $args) >"$work/out" 2>"$work/err"
        st=$?
        [ -n "$experr" ] || [ $st -eq 0 ] || { cat "$work/err"; fail "exit status $st with $flags"; }
        diff -u "$work/exp" "$work/out" || fail "output differs with $flags"
        case $t in */ad/*) [ -n "$experr" ] || roundtrip_ad ;; esac
        echo "with $flags: same output"
    done 3< "$work/flagsets"
    flags=
}

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
*/repl/*)
    # A REPL session: NAME.repl is what is typed. NAME.tty is the expected
    # transcript on a terminal (typed into a pseudo-terminal by ptyrun, which
    # also reads the "#!" actions: ctrl-c, keys, restart ...); NAME.out the
    # expected output (stdout and stderr) of the same lines piped to dcc
    # ("#!" lines left out). "#!args ARGS" gives dcc's arguments, "#!status N"
    # the piped session's exit status. Sessions run in a scratch directory
    # holding a copy of tests/repl/data (as data/), which "#!sh" may change.
    dir=$(cd "$(dirname "$t")" && pwd)
    name=$(basename "$t" .repl)
    # a crash that exhausts the stack: ASan cannot clean the 1 GiB stack the
    # REPL jumps back out of and says so in the transcript
    case $name in *crash*)
        if [ -n "${DCC_TEST_SANFLAGS:-}" ]; then
            echo "SKIP: $t: stack exhaustion under AddressSanitizer (it warns on the jump back)"
            exit 77
        fi ;;
    esac
    base=$dir/$name
    [ -d "$dir/data" ] && cp -R "$dir/data" "$work/data"
    args=$(sed -n 's/^#!args //p' "$t" | head -n 1)
    want=$(sed -n 's/^#!status //p' "$t" | head -n 1)
    ptyrun=${DCC_BUILDDIR:-.}/tests/repl/ptyrun
    HOME=$work TERM=dumb NO_COLOR=1 OPENBLAS_NUM_THREADS=1
    export HOME TERM NO_COLOR OPENBLAS_NUM_THREADS
    grep -v '^#!args\|^#!status' "$t" > "$work/script"
    ran=0
    if [ -f "$base.tty" ]; then
        [ -x "$ptyrun" ] || fail "no $ptyrun (make check builds it)"
        # shellcheck disable=SC2086
        (cd "$work" && "$ptyrun" "$work/script" "$DCC" $args) >"$work/tty" 2>"$work/ptyerr"
        st=$?
        cat "$work/ptyerr"
        diff -u "$base.tty" "$work/tty" || fail "the terminal transcript differs"
        [ $st -ne 124 ] || fail "timed out on the terminal"
        ran=1
    fi
    if [ -f "$base.out" ]; then
        # shellcheck disable=SC2086
        rm -rf "$work/data"
        [ -d "$dir/data" ] && cp -R "$dir/data" "$work/data"
        grep -v '^#!' "$t" | (cd "$work" && "$DCC" $args) >"$work/out" 2>&1
        st=$?
        diff -u "$base.out" "$work/out" || fail "the piped session's output differs"
        [ "$st" -eq "${want:-0}" ] || fail "the piped session exited with $st, not ${want:-0}"
        ran=1
    fi
    [ $ran -eq 1 ] || fail "neither $name.tty nor $name.out to compare with"
    exit 0 ;;
*/c/*)
    # A C program NAME.c calling the DL module NAME.dl through the header
    # dcc writes; its output must equal its "// expect: TEXT" lines, and its
    # exit status must be 0. It runs under valgrind (errors and leaks fail)
    # when valgrind is installed, unless the file says "// no-valgrind" or
    # the build has sanitizers ($DCC_TEST_SANFLAGS, which it is compiled
    # with: ASan then finds the errors and leaks instead).
    src=${t%.dl}.c
    [ -f "$src" ] || fail "no $src next to the module"
    "$DCC" -c --color=never "$t" -o "$work/$name.o" --header "$work/$name.h" 2>"$work/cerr" ||
        { cat "$work/cerr"; fail "dcc -c failed"; }
    libs=${DCC_BUILDDIR:-.}/runtime/.libs
    san=${DCC_TEST_SANFLAGS:-}
    # shellcheck disable=SC2086
    ${CC:-cc} -std=c11 -Wall -Wextra -Werror -pedantic -g $san -I"$work" -I"${DCC_SRCDIR:-.}/runtime" \
        -o "$work/prog" "$src" "$work/$name.o" -L"$libs" -ldlrt -Wl,-rpath,"$libs" -lpthread -lm \
        2>"$work/ccerr" || { cat "$work/ccerr"; fail "the C program does not compile against the header"; }
    run=
    if [ -z "$san" ] && command -v valgrind >/dev/null 2>&1 && ! grep -q 'no-valgrind' "$src"; then
        run="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"
        run="$run --show-leak-kinds=definite,indirect"
    fi
    OPENBLAS_NUM_THREADS=1; export OPENBLAS_NUM_THREADS
    # shellcheck disable=SC2086
    (cd "$(dirname "$t")" && $run "$work/prog") >"$work/out" 2>"$work/err"
    st=$?
    cat "$work/err"
    [ $st -eq 0 ] || fail "exit status $st"
    sed -n 's|^ *// expect: \{0,1\}||p' "$src" > "$work/exp"
    [ -s "$work/exp" ] || fail "no '// expect:' lines in $src"
    diff -u "$work/exp" "$work/out" || fail "output differs"
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
        sed -n 's/^ *-- expect-error: //p' "$t" > "$work/experr"
        while IFS= read -r e; do
            grep -qF -- "$e" "$work/err" || fail "stderr lacks '$e'"
        done < "$work/experr"
    else
        [ $st -eq 0 ] || { cat "$work/err"; fail "exit status $st"; }
    fi
    if ! diff -u "$work/exp" "$work/out"; then fail "output differs"; fi
    [ -s "$work/exp" ] || [ -n "$experr" ] || fail "no '-- expect:' lines in the test"
    case $t in */ad/*) [ -n "$experr" ] || roundtrip_ad ;; esac
    run_flag_sets
    exit 0 ;;
esac
