#!/bin/sh
# bench/run.sh — code-generation benchmarks: each DL kernel against the same
# algorithm in C (clang -O2; OpenBLAS directly for matmul), timed in the same
# run (best of 3 wall-clock runs), printed as a Markdown table of ratios.
#   usage: bench/run.sh [DCC]      (default: build/compiler/dcc)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
dcc=${1:-$top/build/compiler/dcc}
cc=${CC_BENCH:-clang}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

best_of_3() { # prints the best wall time in seconds of 3 runs of "$@"
    b=
    for _ in 1 2 3; do
        s=$(date +%s.%N)
        "$@" > "$work/out" 2>&1 || { cat "$work/out" >&2; echo "bench: $* failed" >&2; exit 1; }
        e=$(date +%s.%N)
        t=$(echo "$e - $s" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
    done
    echo "$b"
}

same_value() { # the two outputs agree to 1e-9 relative
    python3 -c "import sys; a=float(open(sys.argv[1]).read()); b=float(open(sys.argv[2]).read());
sys.exit(0 if abs(a-b) <= 1e-9*max(1.0,abs(a)) else 1)" "$1" "$2"
}

echo "| kernel | C (s) | dcc (s) | dcc / C | goal |"
echo "|---|---|---|---|---|"
for k in dot saxpy stencil sines matmul; do
    libs=-lm; goal=1.2
    [ $k = matmul ] && { libs="-lopenblas -lm"; goal=1.05; }
    # shellcheck disable=SC2086
    $cc -O2 -o "$work/$k-c" "$here/kernels/$k.c" $libs
    "$dcc" -O2 -o "$work/$k-dl" "$here/kernels/$k.dl"
    tc=$(best_of_3 "$work/$k-c"); cp "$work/out" "$work/$k-c.out"
    td=$(best_of_3 "$work/$k-dl"); cp "$work/out" "$work/$k-dl.out"
    same_value "$work/$k-c.out" "$work/$k-dl.out" || echo "bench: $k: results differ" >&2
    printf '| %s | %.3f | %.3f | %.2f | <= %s |\n' $k "$tc" "$td" "$(echo "$td / $tc" | bc -l)" $goal
done
largest=$(ls -S "$top"/examples/*.dl | head -n 1)
tcomp=$(best_of_3 "$dcc" -O2 -o "$work/largest" "$largest")
printf '| compile %s | | %.3f | | <= 1 s |\n' "$(basename "$largest")" "$tcomp"
