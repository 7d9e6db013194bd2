#!/bin/sh
# Checks the PTX of every program in tests/programs (and tests/gpu): each
# is compiled with `dcc --target=nvptx --emit=ptx`, and the module must
# assemble with ptxas for sm_80 and sm_90. The programs named in
# tests/gpu/offloaded.txt must produce at least one kernel, so the test
# fails when array loops stop being offloaded. Needs no GPU; skipped (77)
# without ptxas (PTXAS, default /usr/local/cuda/bin/ptxas).
set -u
: "${DCC:=dcc}"
: "${PTXAS:=/usr/local/cuda/bin/ptxas}"
src=${DCC_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if [ ! -x "$PTXAS" ]; then
    echo "SKIP: no ptxas at $PTXAS"
    exit 77
fi
work=${TMPDIR:-/tmp}/dcc-ptxas.$$
mkdir -p "$work" || exit 99
trap 'rm -rf "$work"' EXIT
fails=0 programs=0 with=0 kernels=0
for f in "$src"/tests/programs/*.dl "$src"/tests/gpu/*.dl; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .dl)
    programs=$((programs + 1))
    if ! "$DCC" --target=nvptx --emit=ptx -o "$work/$n.ptx" "$f" 2>"$work/err"; then
        echo "FAIL: $n: dcc --emit=ptx failed"; cat "$work/err"; fails=$((fails + 1)); continue
    fi
    if grep -q 'no PTX for the GPU kernels' "$work/err"; then
        echo "FAIL: $n: no PTX"; cat "$work/err"; fails=$((fails + 1)); continue
    fi
    k=$(grep -c '^\.visible \.entry' "$work/$n.ptx")
    kernels=$((kernels + k))
    [ "$k" -gt 0 ] && with=$((with + 1))
    if [ "$k" -eq 0 ] && grep -qx "$n" "$src/tests/gpu/offloaded.txt"; then
        echo "FAIL: $n: no kernel (listed in tests/gpu/offloaded.txt)"; fails=$((fails + 1))
    fi
    for arch in sm_80 sm_90; do
        if ! "$PTXAS" -arch=$arch "$work/$n.ptx" -o "$work/$n.cubin" 2>"$work/perr"; then
            echo "FAIL: $n: ptxas -arch=$arch:"; head -n 5 "$work/perr"; fails=$((fails + 1))
        fi
    done
done
echo "$programs programs, $with with kernels, $kernels kernels; $fails failures"
[ "$with" -gt 0 ] || { echo "FAIL: no kernels at all"; exit 1; }
[ "$fails" -eq 0 ]
