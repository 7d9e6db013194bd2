#!/bin/sh
# Runs the programs tests/gpu/*.dl compiled with `dcc --gpu` and compares
# their output with their `-- expect:` lines. With a CUDA GPU the array
# loops run as kernels; without one the programs run on the CPU, and stderr
# must hold exactly the one line "dlrt: no CUDA GPU (...); running on the
# CPU". With DL_GPU=0 the output must be the same and stderr empty.
set -u
: "${DCC:=dcc}"
src=${DCC_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
work=${TMPDIR:-/tmp}/dcc-gpurun.$$
mkdir -p "$work" || exit 99
trap 'rm -rf "$work"' EXIT
fails=0 ran=0 gpu=0
for f in "$src"/tests/gpu/*.dl; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .dl)
    if ! "$DCC" --gpu -o "$work/$n" "$f" 2>"$work/cerr"; then
        echo "FAIL: $n: does not compile with --gpu"; cat "$work/cerr"; fails=$((fails + 1)); continue
    fi
    sed -n 's/^ *-- expect: //p' "$f" > "$work/exp"
    [ -s "$work/exp" ] || { echo "FAIL: $n: no '-- expect:' lines"; fails=$((fails + 1)); continue; }
    ran=$((ran + 1))
    (unset DL_GPU; "$work/$n") >"$work/out" 2>"$work/err"
    st=$?
    if [ $st -ne 0 ] || ! cmp -s "$work/exp" "$work/out"; then
        echo "FAIL: $n: status $st, output:"; diff "$work/exp" "$work/out"; cat "$work/err"; fails=$((fails + 1))
    fi
    nl=$(grep -c 'dlrt: no CUDA GPU (.*); running on the CPU' "$work/err")
    other=$(grep -vc 'dlrt: no CUDA GPU' "$work/err")
    if [ "$nl" -eq 0 ]; then
        gpu=$((gpu + 1))
    elif [ "$nl" -ne 1 ] || [ "$other" -ne 0 ]; then
        echo "FAIL: $n: stderr is not the one no-GPU line:"; cat "$work/err"; fails=$((fails + 1))
    fi
    DL_GPU=0 "$work/$n" >"$work/out0" 2>"$work/err0"
    if ! cmp -s "$work/exp" "$work/out0" || [ -s "$work/err0" ]; then
        echo "FAIL: $n: with DL_GPU=0:"; diff "$work/exp" "$work/out0"; cat "$work/err0"; fails=$((fails + 1))
    fi
done
echo "$ran programs, $gpu of them on a GPU; $fails failures"
[ "$ran" -gt 0 ] && [ "$fails" -eq 0 ]
