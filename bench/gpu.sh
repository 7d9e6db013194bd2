#!/bin/sh
# bench/gpu.sh — the GPU check of issue 8: builds (./dev build), runs the GPU
# tests, then trains the Fashion-MNIST MLP (examples/fashion_mnist.dl,
# 784-256-10 in f64, Adam, batch 128) compiled with --gpu, compiled for the
# CPU, and in PyTorch on CUDA (bench/fmnist/torch_fmnist.py --device cuda)
# where torch.cuda.is_available(), and prints one table of epoch times.
#
#   usage: bench/gpu.sh [EPOCHS (2)] [TRAIN (60000)] [THREADS (1)]
#   DCC_BUILD=DIR bench/gpu.sh ...   use the configured build in DIR instead of
#                                    ./dev build (which builds in ./build)
#
# Without an NVIDIA GPU it says so, and still runs what does not need one:
# the tests (the device tests are skipped), the --gpu program on its CPU
# fallback, and the CPU build. Times are the mean of the epoch times each
# program prints (a monotonic clock around each epoch's training loop), so
# loading the data, start-up and the test pass are left out.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
epochs=${1:-2}
train=${2:-60000}
threads=${3:-1}
python=${PYTHON:-python3}
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== build"
if [ -n "${DCC_BUILD:-}" ]; then
    build=$(cd "$DCC_BUILD" && pwd)
    make -C "$build" -s -j"$(nproc 2>/dev/null || echo 2)" >"$work/make.log" 2>&1 ||
        { tail -n 30 "$work/make.log"; echo "gpu.sh: build failed"; exit 1; }
else
    "$top/dev" build
    build=$top/build
fi
dcc=$build/compiler/dcc

echo "== GPU tests"
gpu_tests="tests/unit/test_rt_gpu tests/unit/test_rt_gpu_device"
for f in "$top"/tests/gpu/*.dl "$top"/tests/gpu/*.sh; do
    [ -f "$f" ] && gpu_tests="$gpu_tests tests/gpu/$(basename "$f")"
done
tests_ok=yes
make -C "$build" -s check TESTS="$gpu_tests" >"$work/check.log" 2>&1 || tests_ok=no
grep -E '^(PASS|FAIL|SKIP|ERROR|XFAIL|XPASS):' "$work/check.log" || tail -n 30 "$work/check.log"
[ "$tests_ok" = yes ] || echo "gpu.sh: some GPU tests failed (see $build/test-suite.log)"

# A GPU is there when the device test finds one (it exits 77 when not).
gpu=no
"$build/tests/unit/test_rt_gpu_device" >"$work/device.log" 2>&1 && gpu=yes || true
if [ "$gpu" = yes ]; then
    echo "== NVIDIA GPU present"
    command -v nvidia-smi >/dev/null && nvidia-smi -L || true
else
    echo "== NO NVIDIA GPU on this machine: the --gpu program runs on its CPU fallback"
    grep -h '^dlrt: no CUDA GPU' "$work/device.log" || true
fi

echo "== training (epochs $epochs, $train images, $threads thread(s))"
mean_epoch() { awk '/^epoch [0-9]+\/[0-9]+: / { for (i = 1; i <= NF; i++) if ($i == "s,") { s += $(i - 1); n++ } }
                    END { if (n) printf "%.3f", s / n; else printf "-" }' "$1"; }
acc() { awk '/^test accuracy/ { print $3 }' "$1"; }
ex=$top/examples/fashion_mnist.dl
results=

# run NAME LABEL CMD...: the program's output in $work/NAME.out, its stderr in .err
run() {
    name=$1 label=$2
    shift 2
    if "$@" >"$work/$name.out" 2>"$work/$name.err"; then
        results="$results$name|$label|$(mean_epoch "$work/$name.out")|$(acc "$work/$name.out")
"
    else
        echo "gpu.sh: $label failed:"; tail -n 5 "$work/$name.err"
        results="$results$name|$label (failed)|-|-
"
    fi
}

if "$dcc" -O2 --gpu -o "$work/fm_gpu" "$ex" 2>"$work/compile.err"; then
    DL_GPU_VERBOSE=1 run dcc_gpu "dcc --gpu" "$work/fm_gpu" --epochs "$epochs" --train "$train" --plot ""
    grep -h '^dlrt:' "$work/dcc_gpu.err" || true
else
    echo "gpu.sh: dcc --gpu failed to compile $ex:"; tail -n 5 "$work/compile.err"
    results="${results}dcc_gpu|dcc --gpu (no build)|-|-
"
fi
"$dcc" -O2 -o "$work/fm_cpu" "$ex"
run dcc_cpu "dcc (CPU)" "$work/fm_cpu" --epochs "$epochs" --train "$train" --plot ""

torch_cuda=$("$python" -c 'import torch; print("yes" if torch.cuda.is_available() else "no")' 2>/dev/null || echo none)
case $torch_cuda in
yes) run torch "PyTorch $("$python" -c 'import torch; print(torch.__version__)') (CUDA)" \
         "$python" "$top/bench/fmnist/torch_fmnist.py" --epochs "$epochs" --train "$train" --device cuda ;;
no) echo "gpu.sh: PyTorch is installed but torch.cuda.is_available() is false: no PyTorch-on-CUDA run" ;;
*) echo "gpu.sh: PyTorch is not installed: no PyTorch run" ;;
esac

echo
echo "Fashion-MNIST MLP 784-256-10 (f64), Adam 1e-3, batch 128, $epochs epoch(s) of $train images;" \
     "GPU: $gpu; $(date -u +%Y-%m-%d)"
echo
echo "| program | s/epoch | test acc |"
echo "|---|---|---|"
printf '%s' "$results" | while IFS='|' read -r _ label t a; do
    echo "| $label | $t | $a |"
done
t_of() { printf '%s' "$results" | awk -F'|' -v n="$1" '$1 == n { print $3 }'; }
g=$(t_of dcc_gpu); c=$(t_of dcc_cpu); p=$(t_of torch)
ratio() { case "$1$2" in *-*|'') echo "-" ;; *) echo "$1 / $2" | bc -l | xargs printf '%.2f' ;; esac; }
[ -n "$p" ] && echo "| dcc --gpu / PyTorch CUDA | $(ratio "$g" "$p") | |"
echo "| dcc --gpu / dcc (CPU) | $(ratio "$g" "$c") | |"
if [ "$gpu" = no ]; then
    echo
    echo "No NVIDIA GPU here: 'dcc --gpu' ran on its CPU fallback, so its time measures"
    echo "the cost of the fallback checks, not the GPU."
fi
[ "$tests_ok" = yes ]
