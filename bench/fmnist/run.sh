#!/bin/sh
# bench/fmnist/run.sh — examples/fashion_mnist.dl against the same model in
# PyTorch (bench/fmnist/torch_fmnist.py): MLP 784-256-10 in float64, Adam
# 1e-3, batch 128, the whole training set, the same thread count for both
# (OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = torch.set_num_threads).
#
#   usage: bench/fmnist/run.sh [DCC] [EPOCHS (2)] [THREADS (1)] [REPS (3)]
#
# Each program runs for 1 and for EPOCHS epochs under /usr/bin/time -v, REPS
# times, the two programs taking turns; each figure is the best (smallest)
# over the repetitions, as other load on the machine only ever adds time.
# Printed, one Markdown table:
#   wall s/epoch   the mean of the epoch times the program prints itself
#                  (monotonic clock around the training loop of the epoch)
#   CPU s/epoch    (user + sys of the EPOCHS run - that of the 1-epoch run)
#                  / (EPOCHS - 1): the cost of an epoch without loading,
#                  start-up and the test pass
#   test acc       after EPOCHS epochs (the same in every repetition)
#   peak RSS       of the EPOCHS run (/usr/bin/time's maximum resident set)
#   RSS growth     (peak RSS of the EPOCHS run - that of the 1-epoch run)
#                  / (EPOCHS - 1): memory kept per epoch (a leak shows here)
# and the ratios dcc / PyTorch (goal: <= 0.5 on time), with the load average
# of the machine at the start and at the end.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$(dirname "$here")")
dcc=${1:-$top/build/compiler/dcc}
epochs=${2:-2}
threads=${3:-1}
reps=${4:-3}
[ "$epochs" -ge 2 ] || { echo "run.sh: EPOCHS must be at least 2" >&2; exit 2; }
python=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"

"$dcc" -O2 -o "$work/fm" "$top/examples/fashion_mnist.dl"
# other load on the machine makes the figures larger: reported with them
load0=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

# run NAME EPOCHS REP CMD...: output in $work/NAME.EPOCHS.REP.{out,err,time}
run() {
    name=$1 e=$2 r=$3
    shift 3
    f=$work/$name.$e.$r
    if ! /usr/bin/time -v -o "$f.time" "$@" >"$f.out" 2>"$f.err"; then
        cat "$f.out" "$f.err" >&2
        echo "run.sh: $name failed" >&2
        exit 1
    fi
}
r=1
while [ "$r" -le "$reps" ]; do
    for e in 1 "$epochs"; do
        run dcc "$e" "$r" "$work/fm" --epochs "$e" --plot ""
        run torch "$e" "$r" "$python" "$here/torch_fmnist.py" --epochs "$e" --threads "$threads"
    done
    r=$((r + 1))
done

cpu() { awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.3f", s }' "$1"; }
rss() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
wall() { awk '/^epoch [0-9]+\/[0-9]+: / { for (i = 1; i <= NF; i++) if ($i == "s,") { s += $(i - 1); n++ } }
              END { printf "%.3f", n ? s / n : 0 }' "$1"; }
acc() { awk '/^test accuracy/ { print $3 }' "$1"; }
# best NAME E FUNC: the smallest FUNC over the repetitions of NAME's E-epoch run
best() {
    for f in "$work/$1.$2".*."$4"; do $3 "$f"; echo; done | sort -g | head -n 1
}

for t in dcc torch; do
    eval "${t}_wall=\$(best \$t \$epochs wall out)"
    c1=$(best $t 1 cpu time); cn=$(best $t "$epochs" cpu time)
    eval "${t}_cpu=\$(echo \"($cn - $c1) / ($epochs - 1)\" | bc -l)"
    eval "${t}_acc=\$(acc \"\$work/\$t.\$epochs.1.out\")"
    r1=$(best $t 1 rss time); rn=$(best $t "$epochs" rss time)
    eval "${t}_rss=$rn"
    eval "${t}_grow=\$(echo \"($rn - $r1) / ($epochs - 1)\" | bc -l)"
done

load1=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
echo "Fashion-MNIST MLP 784-256-10 (f64), Adam 1e-3, batch 128, $epochs epochs, $threads thread(s), best of $reps"
echo "load average (1, 5, 15 min) at the start: $load0, at the end: $load1 ($(getconf _NPROCESSORS_ONLN 2>/dev/null || echo ?) CPUs)"
echo
echo "| | wall s/epoch | CPU s/epoch | test acc | peak RSS (MB) | RSS growth/epoch (MB) |"
echo "|---|---|---|---|---|---|"
# shellcheck disable=SC2154
{
printf '| dcc | %.2f | %.2f | %s | %.0f | %.1f |\n' "$dcc_wall" "$dcc_cpu" "$dcc_acc" "$dcc_rss" "$dcc_grow"
printf '| PyTorch %s | %.2f | %.2f | %s | %.0f | %.1f |\n' \
    "$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null)" \
    "$torch_wall" "$torch_cpu" "$torch_acc" "$torch_rss" "$torch_grow"
printf '| dcc / PyTorch | %.2f | %.2f | | %.2f | |\n' \
    "$(echo "$dcc_wall / $torch_wall" | bc -l)" "$(echo "$dcc_cpu / $torch_cpu" | bc -l)" \
    "$(echo "$dcc_rss / $torch_rss" | bc -l)"
}
echo
echo "goal: dcc / PyTorch <= 0.5 on time"
