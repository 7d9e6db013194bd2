#!/bin/sh
# bench/adbench.sh — reverse-mode baselines on ADBench's GMM and LSTM problems
# (Srajer, Kukelova & Fitzgibbon 2018; shared/design/BENCHMARKS.md): the hand-written C
# gradients (bench/gmm/manual.c, bench/lstm/manual.c, cc -O2) and PyTorch autograd
# (float64, one thread), with a column kept for dcc's compiler-generated gradients.
#
#   usage: bench/adbench.sh [--cpu-time] [--dcc-gmm CMD] [--dcc-lstm CMD]
#     --cpu-time (or BENCH_CLOCK=cpu) times with each process's CPU time instead of
#     the wall clock: steadier when other jobs share the cores.
#     CMD (or $DCC_GMM_BENCH / $DCC_LSTM_BENCH) is run as `CMD FILE` and must print
#     gmm_bench's lines: objective_s S, gradient_s S, objective F (%.17g), and
#     optionally `gradient G0 G1 ...` (its first entries); without it the dcc columns
#     read n/a. Data: $ADBENCH_DATA, else shared/data/adbench beside or inside the repo.
#
# It builds the C drivers, checks each C gradient against central differences
# (gmm_bench --check) and against PyTorch's (1e-8, ADBench's tolerance), checks every
# objective against C's to 1e-10 relative, then times each problem (best of N samples,
# N so that a measurement lasts >= 0.2 s) and prints one Markdown table. It exits 1 if
# a check fails.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
dcc_gmm=${DCC_GMM_BENCH:-}
dcc_lstm=${DCC_LSTM_BENCH:-}
while [ $# -gt 0 ]; do
    case $1 in
    --dcc-gmm) dcc_gmm=$2; shift 2 ;;
    --dcc-lstm) dcc_lstm=$2; shift 2 ;;
    --cpu-time) BENCH_CLOCK=cpu; shift ;;
    *) echo "usage: $0 [--cpu-time] [--dcc-gmm CMD] [--dcc-lstm CMD]" >&2; exit 2 ;;
    esac
done
data=${ADBENCH_DATA:-}
for d in "$top/shared/data/adbench" "$top/../shared/data/adbench"; do
    [ -z "$data" ] && [ -d "$d" ] && data=$(cd "$d" && pwd)
done
[ -n "$data" ] || { echo "adbench: no data (set ADBENCH_DATA)" >&2; exit 2; }
export BENCH_CLOCK=${BENCH_CLOCK:-wall}
py=/usr/bin/python3
cc=${CC:-cc}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gmm_files="gmm/test.txt gmm/1k/gmm_d2_K5.txt gmm/1k/gmm_d10_K5.txt gmm/1k/gmm_d10_K25.txt
gmm/1k/gmm_d20_K10.txt gmm/1k/gmm_d64_K25.txt"
lstm_files="lstm/lstm_l2_c1024.txt"
gmm_paths=; for f in $gmm_files; do gmm_paths="$gmm_paths $data/$f"; done
lstm_paths=; for f in $lstm_files; do lstm_paths="$lstm_paths $data/$f"; done

$cc -O2 -o "$work/gmm_bench" "$here/gmm/gmm_bench.c" "$here/gmm/gmm.c" "$here/gmm/manual.c" -lm
$cc -O2 -o "$work/lstm_bench" "$here/lstm/lstm_bench.c" "$here/lstm/lstm.c" "$here/lstm/manual.c" -lm

# Checks, on two lanes: the largest finite-difference check alone (100 coordinates:
# each costs two long-double objectives), everything else on the other.
ok=1
"$work/gmm_bench" --check "$data/gmm/1k/gmm_d64_K25.txt" 100 > "$work/check-d64" 2>&1 &
lane=$!
for f in $gmm_files; do
    [ "$f" = gmm/1k/gmm_d64_K25.txt ] && continue
    "$work/gmm_bench" --check "$data/$f" > "$work/check-$(basename "$f")" 2>&1 || ok=0
done
for f in $lstm_files; do
    "$work/lstm_bench" --check "$data/$f" > "$work/check-$(basename "$f")" 2>&1 || ok=0
done
for f in $gmm_files; do "$work/gmm_bench" --grad "$data/$f"; done > "$work/grad-c-gmm"
for f in $lstm_files; do "$work/lstm_bench" --grad "$data/$f"; done > "$work/grad-c-lstm"
# shellcheck disable=SC2086
$py "$here/gmm/torch_gmm.py" --grad $gmm_paths > "$work/grad-torch-gmm"
# shellcheck disable=SC2086
$py "$here/lstm/torch_lstm.py" --grad $lstm_paths > "$work/grad-torch-lstm"
wait $lane || ok=0
for c in "$work"/check-*; do
    if grep -q FAIL "$c" || ! grep -q ': ok$' "$c"; then
        ok=0
        cat "$c" >&2
    else
        printf '%s: %s\n' "$(sed -n 's/^file //p' "$c" | sed "s|$data/||")" "$(tail -n 1 "$c")" >&2
    fi
done

# Timing, one thing at a time.
for f in $gmm_files; do "$work/gmm_bench" "$data/$f"; done > "$work/time-c-gmm"
for f in $lstm_files; do "$work/lstm_bench" "$data/$f"; done > "$work/time-c-lstm"
# shellcheck disable=SC2086
$py "$here/gmm/torch_gmm.py" $gmm_paths > "$work/time-torch-gmm"
# shellcheck disable=SC2086
$py "$here/lstm/torch_lstm.py" $lstm_paths > "$work/time-torch-lstm"
: > "$work/time-dcc-gmm"
: > "$work/time-dcc-lstm"
if [ -n "$dcc_gmm" ]; then
    for f in $gmm_files; do echo "file $data/$f"; $dcc_gmm "$data/$f"; done > "$work/time-dcc-gmm"
fi
if [ -n "$dcc_lstm" ]; then
    for f in $lstm_files; do echo "file $data/$f"; $dcc_lstm "$data/$f"; done > "$work/time-dcc-lstm"
fi

$py - "$work" "$data" "$ok" <<'PY' || exit 1
import os, sys
work, data, ok = sys.argv[1], sys.argv[2], sys.argv[3] == "1"

def blocks(name):
    """file PATH -> {key: rest of line} for a driver's key-value output."""
    out, cur = {}, None
    path = os.path.join(work, name)
    for line in open(path) if os.path.exists(path) else []:
        key, _, rest = line.strip().partition(" ")
        if key == "file":
            cur = out.setdefault(os.path.relpath(rest, data), {})
        elif cur is not None and key and not key[0].isdigit() and key[0] != "-":
            cur[key] = rest
    return out

def gradients(name):
    """file PATH -> (objective, [gradient]) for --grad output."""
    out, cur = {}, None
    for line in open(os.path.join(work, name)):
        key, _, rest = line.strip().partition(" ")
        if key == "file":
            cur = out.setdefault(os.path.relpath(rest, data), [None, []])
        elif key == "objective":
            cur[0] = float(rest)
        elif key and key != "size":
            cur[1].append(float(key))
    return out

def close(a, b, tol):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))

# C's gradient against PyTorch's, entry by entry (ADBench compares to 1e-8).
for bench in ("gmm", "lstm"):
    c, t = gradients("grad-c-" + bench), gradients("grad-torch-" + bench)
    for f, (fc, gc) in c.items():
        ft, gt = t[f]
        worst = max(abs(a - b) / max(1.0, abs(a), abs(b)) for a, b in zip(gc, gt))
        good = len(gc) == len(gt) and worst <= 1e-8 and close(fc, ft, 1e-10)
        ok &= good
        print(f"{f}: C and PyTorch gradients ({len(gc)} entries) agree to {worst:.2g}"
              + ("" if good else " -- FAIL"), file=sys.stderr)

rows, clocks = [], set()
for bench in ("gmm", "lstm"):
    impls = [blocks(f"time-{i}-{bench}") for i in ("c", "torch", "dcc")]
    for f, c in impls[0].items():
        row = [os.path.splitext(f)[0].replace("gmm/1k/gmm_", "gmm 1k ").replace("gmm/", "gmm ")
               .replace("lstm/lstm_", "lstm ")]
        for name, impl in zip(("PyTorch", "dcc"), impls[1:]):
            r = impl.get(f)
            if r and not close(float(r["objective"]), float(c["objective"]), 1e-10):
                ok = False
                print(f"{f}: {name} objective {r['objective']} differs from C's {c['objective']}",
                      file=sys.stderr)
            if r and "gradient" in r:
                ga = [float(v) for v in c["gradient"].split() if v != "..."]
                gb = [float(v) for v in r["gradient"].split() if v != "..."]
                if not all(close(a, b, 1e-8) for a, b in zip(ga, gb)):
                    ok = False
                    print(f"{f}: {name} gradient {r['gradient']} differs from C's {c['gradient']}",
                          file=sys.stderr)
        for r in (c, impls[1].get(f), impls[2].get(f)):
            if r:
                clocks.add(r.get("clock", "?"))
                to, tg = float(r["objective_s"]), float(r["gradient_s"])
                row += [f"{to:.3g}", f"{tg:.3g}", f"{tg / to:.2f}"]
            else:
                row += ["n/a"] * 3
        rows.append(row)

print(f"times: best of N, {' / '.join(sorted(clocks))} clock, seconds per call", file=sys.stderr)
print("| problem | C obj (s) | C grad (s) | C ratio | PyTorch obj (s) | PyTorch grad (s) "
      "| PyTorch ratio | dcc obj (s) | dcc grad (s) | dcc ratio |")
print("|---" * 10 + "|")
for r in rows:
    print("| " + " | ".join(r) + " |")
sys.exit(0 if ok else 1)
PY
