#!/bin/sh
# bench/forward.sh — forward mode and Taylor mode against the primal (issue 4):
#   jvp ÷ primal for an MLP loss (784-256-10, batch 128) and ADBench's GMM objective
#     (d10 K25 N1000, bench/gmm/gmm.dl), over all parameters; goal <= 1.5;
#   jet of order k = 1..8 ÷ primal, for a scalar-heavy map and a tanh MLP of its
#     input; goal: growing like k², not 2^k;
#   the STDE Laplacian (std/pde, 16 Rademacher samples) against the exact one (d jets)
#     for an MLP d-128-128-1 at d = 100 and 1000: time and relative error.
# Every row is measured in one run of bench/forward/forward_bench.dl (best of N samples
# per row, N so that a row lasts >= 0.2 s), the primal of each ratio in the same run.
#
#   usage: bench/forward.sh [--cpu-time] [DCC]     (DCC default: build/compiler/dcc)
#     --cpu-time (or BENCH_CLOCK=cpu): time with the process's CPU time instead of the
#     wall clock (DL_CLOCK=cpu), steadier when other jobs share the cores.
#     Data: $ADBENCH_DATA, else shared/data/adbench beside or inside the repo.
# Prints a header (date, commit, load average) and one Markdown table.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
clock=${BENCH_CLOCK:-wall}
dcc=
while [ $# -gt 0 ]; do
    case $1 in
    --cpu-time) clock=cpu; shift ;;
    -*) echo "usage: $0 [--cpu-time] [DCC]" >&2; exit 2 ;;
    *) dcc=$1; shift ;;
    esac
done
[ -n "$dcc" ] || dcc=$top/build/compiler/dcc
data=${ADBENCH_DATA:-}
for d in "$top/shared/data/adbench" "$top/../shared/data/adbench"; do
    [ -z "$data" ] && [ -d "$d" ] && data=$(cd "$d" && pwd)
done
[ -n "$data" ] || { echo "forward: no ADBench data (set ADBENCH_DATA)" >&2; exit 2; }
export DL_CLOCK=$clock
export OPENBLAS_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# gmm_read takes one number a line
tr -s ' \t\r' '\n\n\n' < "$data/gmm/1k/gmm_d10_K25.txt" | grep -v '^$' > "$work/gmm.txt"
"$dcc" -O2 -o "$work/forward_bench" "$here/forward/forward_bench.dl"
commit=$(cd "$top" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(cd "$top" && git status --porcelain 2>/dev/null | head -n 1)" ] && commit="$commit (with uncommitted changes)"
echo "Date $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $clock clock,"
echo "load average before: $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo
echo "| program | primal (s) | derived (s) | ratio | goal |"
echo "|---|---|---|---|---|"
"$work/forward_bench" "$work/gmm.txt"
echo
echo "load average after: $(cut -d ' ' -f 1-3 /proc/loadavg)"
