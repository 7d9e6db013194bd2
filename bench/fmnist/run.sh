#!/bin/sh
# bench/fmnist/run.sh — examples/fashion_mnist.dl against the same model in
# PyTorch (bench/fmnist/torch_fmnist.py): MLP 784-256-10 in float64, Adam
# 1e-3, batch 128, the whole training set, the same thread count for both
# (OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = torch.set_num_threads).
#
#   usage: bench/fmnist/run.sh [DCC] [EPOCHS (2)] [THREADS (1)]
#
# Each program runs twice, for 1 and for EPOCHS epochs, under /usr/bin/time -v.
# Printed, one Markdown table:
#   wall s/epoch   the mean of the epoch times the program prints itself
#                  (monotonic clock around the training loop of the epoch)
#   CPU s/epoch    (user + sys of the EPOCHS run - that of the 1-epoch run)
#                  / (EPOCHS - 1): the cost of an epoch without loading,
#                  start-up and the test pass, immune to other load on the
#                  machine
#   test acc       after EPOCHS epochs
#   peak RSS       of the EPOCHS run (/usr/bin/time's maximum resident set)
#   RSS growth     (peak RSS of the EPOCHS run - that of the 1-epoch run)
#                  / (EPOCHS - 1): memory kept per epoch (a leak shows here)
# and the ratios dcc / PyTorch (goal: <= 0.5 on time).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$(dirname "$here")")
dcc=${1:-$top/build/compiler/dcc}
epochs=${2:-2}
threads=${3:-1}
[ "$epochs" -ge 2 ] || { echo "run.sh: EPOCHS must be at least 2" >&2; exit 2; }
python=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"

"$dcc" -O2 -o "$work/fm" "$top/examples/fashion_mnist.dl"

# run NAME EPOCHS CMD...: output in $work/NAME.EPOCHS.{out,time}
run() {
    name=$1 e=$2
    shift 2
    if ! /usr/bin/time -v -o "$work/$name.$e.time" "$@" >"$work/$name.$e.out" 2>"$work/$name.$e.err"; then
        cat "$work/$name.$e.out" "$work/$name.$e.err" >&2
        echo "run.sh: $name failed" >&2
        exit 1
    fi
}
for e in 1 "$epochs"; do
    run dcc "$e" "$work/fm" --epochs "$e" --plot ""
    run torch "$e" "$python" "$here/torch_fmnist.py" --epochs "$e" --threads "$threads"
done

cpu() { awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.3f", s }' "$1"; }
rss() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
wall() { awk '/^epoch [0-9]+\/[0-9]+: / { for (i = 1; i <= NF; i++) if ($i == "s,") { s += $(i - 1); n++ } }
              END { printf "%.3f", n ? s / n : 0 }' "$1"; }
acc() { awk '/^test accuracy/ { print $3 }' "$1"; }

for t in dcc torch; do
    eval "${t}_wall=\$(wall \"\$work/\$t.\$epochs.out\")"
    c1=$(cpu "$work/$t.1.time"); cn=$(cpu "$work/$t.$epochs.time")
    eval "${t}_cpu=\$(echo \"($cn - $c1) / ($epochs - 1)\" | bc -l)"
    eval "${t}_acc=\$(acc \"\$work/\$t.\$epochs.out\")"
    r1=$(rss "$work/$t.1.time"); rn=$(rss "$work/$t.$epochs.time")
    eval "${t}_rss=$rn"
    eval "${t}_grow=\$(echo \"($rn - $r1) / ($epochs - 1)\" | bc -l)"
done

echo "Fashion-MNIST MLP 784-256-10 (f64), Adam 1e-3, batch 128, $epochs epochs, $threads thread(s)"
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
