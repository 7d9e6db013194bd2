#!/bin/sh
# bench/adbench.sh — reverse mode on ADBench's GMM and LSTM problems (Srajer, Kukelova &
# Fitzgibbon 2018; shared/design/BENCHMARKS.md) and an MLP: dcc's compiler-generated
# gradients (bench/gmm/gmm_bench.dl, bench/lstm/lstm_bench.dl, bench/mlp/mlp_bench.dl)
# next to hand-written C gradients (bench/gmm/manual.c, bench/lstm/manual.c, cc -O2)
# and PyTorch autograd (float64, one thread).
#
#   usage: bench/adbench.sh [--cpu-time] [--dcc DCC] [--dcc-gmm CMD] [--dcc-lstm CMD]
#     --cpu-time (or BENCH_CLOCK=cpu) times every program with its process's CPU time
#     instead of the wall clock (the DL drivers through DL_CLOCK=cpu, which makes DL's
#     `clock ()` read it); steadier when other jobs share the cores.
#     DCC (or $DCC; default build/compiler/dcc, else dcc on the PATH) compiles the DL
#     drivers; without one the dcc columns read n/a.
#     CMD (or $DCC_GMM_BENCH / $DCC_LSTM_BENCH) replaces a DL driver: it is run as
#     `CMD FILE [MODE]` with ADBench's FILE and must behave as gmm_bench.dl: without
#     MODE it prints objective_s S, gradient_s S, objective F and `gradient G0 G1 ...`
#     (its first entries); MODE grad prints the objective and the whole gradient; check
#     a finite-difference check ending in ': ok'; objective / gradient one evaluation.
#     Data: $ADBENCH_DATA, else shared/data/adbench beside or inside the repo.
#
# It builds the C drivers, checks each C gradient against central differences
# (gmm_bench --check) and against PyTorch's (1e-8, ADBench's tolerance), checks dcc's
# whole gradient against C's (1e-8) and against central differences (the DL drivers'
# check mode, 1e-6), checks every objective against C's to 1e-10 relative, then times
# each problem (best of N samples, N so that a measurement lasts >= 0.2 s), measures
# the peak resident memory of one objective and of one gradient (/usr/bin/time %M, the
# whole process: input data and runtime included) and prints one Markdown table. It
# exits 1 if a check fails.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
dcc_gmm=${DCC_GMM_BENCH:-}
dcc_lstm=${DCC_LSTM_BENCH:-}
dcc=${DCC:-}
while [ $# -gt 0 ]; do
    case $1 in
    --dcc) dcc=$2; shift 2 ;;
    --dcc-gmm) dcc_gmm=$2; shift 2 ;;
    --dcc-lstm) dcc_lstm=$2; shift 2 ;;
    --cpu-time) BENCH_CLOCK=cpu; shift ;;
    *) echo "usage: $0 [--cpu-time] [--dcc DCC] [--dcc-gmm CMD] [--dcc-lstm CMD]" >&2; exit 2 ;;
    esac
done
data=${ADBENCH_DATA:-}
for d in "$top/shared/data/adbench" "$top/../shared/data/adbench"; do
    [ -z "$data" ] && [ -d "$d" ] && data=$(cd "$d" && pwd)
done
[ -n "$data" ] || { echo "adbench: no data (set ADBENCH_DATA)" >&2; exit 2; }
export BENCH_CLOCK=${BENCH_CLOCK:-wall}
# The DL drivers read DL's clock (): the process's CPU time with DL_CLOCK=cpu.
export DL_CLOCK=$BENCH_CLOCK
# One thread for OpenBLAS in the DL programs, as C and PyTorch (set_num_threads(1)).
export OPENBLAS_NUM_THREADS=1
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

# The DL drivers. DL reads numbers with read_csv (fields split at commas), so each
# driver is wrapped by a script that hands it ADBench's file with one number a line.
if [ -z "$dcc" ]; then
    if [ -x "$top/build/compiler/dcc" ]; then dcc=$top/build/compiler/dcc
    elif command -v dcc >/dev/null 2>&1; then dcc=dcc; fi
fi
mlp=
if [ -n "$dcc" ]; then
    for b in gmm lstm; do
        "$dcc" -O2 -o "$work/${b}_dl" "$here/$b/${b}_bench.dl"
        {
            printf '%s\n' '#!/bin/sh' 'f=$1; shift' \
                '[ $# -gt 0 ] || echo "clock $BENCH_CLOCK"' \
                "flat=\"$work/flat-\$(basename \"\$f\")\"" \
                '[ -s "$flat" ] || tr -s " \t\r" "\n\n\n" < "$f" | grep -v "^$" > "$flat"' \
                "exec \"$work/${b}_dl\" \"\$flat\" \"\$@\""
        } > "$work/dcc-$b"
        chmod +x "$work/dcc-$b"
    done
    [ -n "$dcc_gmm" ] || dcc_gmm=$work/dcc-gmm
    [ -n "$dcc_lstm" ] || dcc_lstm=$work/dcc-lstm
    "$dcc" -O2 -o "$work/mlp_dl" "$here/mlp/mlp_bench.dl"
    mlp=$work/mlp_dl
fi

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
: > "$work/grad-dcc-gmm"
: > "$work/grad-dcc-lstm"
if [ -n "$dcc_gmm" ]; then
    for f in $gmm_files; do
        { echo "file $data/$f"; $dcc_gmm "$data/$f" check; } > "$work/check-dcc-$(basename "$f")" 2>&1 || ok=0
        { echo "file $data/$f"; $dcc_gmm "$data/$f" grad; } >> "$work/grad-dcc-gmm" || ok=0
    done
fi
if [ -n "$dcc_lstm" ]; then
    for f in $lstm_files; do
        { echo "file $data/$f"; $dcc_lstm "$data/$f" check; } > "$work/check-dcc-$(basename "$f")" 2>&1 || ok=0
        { echo "file $data/$f"; $dcc_lstm "$data/$f" grad; } >> "$work/grad-dcc-lstm" || ok=0
    done
fi
wait $lane || ok=0
for c in "$work"/check-*; do
    if grep -q FAIL "$c" || ! grep -q ': ok$' "$c"; then
        ok=0
        cat "$c" >&2
    else
        case $c in */check-dcc-*) who="dcc " ;; *) who="C " ;; esac
        printf '%s%s: %s\n' "$who" "$(sed -n 's/^file //p' "$c" | sed "s|$data/||")" "$(tail -n 1 "$c")" >&2
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
: > "$work/time-dcc-mlp"
[ -z "$mlp" ] || { echo "clock $BENCH_CLOCK"; "$mlp"; } > "$work/time-dcc-mlp"

# Peak resident memory (kB) of one objective and of one gradient, each in a process.
peak() { /usr/bin/time -f %M -o "$work/rss" "$@" > /dev/null && tail -n 1 "$work/rss"; }
: > "$work/mem-dcc"
if [ -x /usr/bin/time ]; then
    if [ -n "$dcc_gmm" ]; then
        for f in $gmm_files; do
            echo "$f $(peak $dcc_gmm "$data/$f" objective) $(peak $dcc_gmm "$data/$f" gradient)"
        done
    fi >> "$work/mem-dcc"
    if [ -n "$dcc_lstm" ]; then
        for f in $lstm_files; do
            echo "$f $(peak $dcc_lstm "$data/$f" objective) $(peak $dcc_lstm "$data/$f" gradient)"
        done
    fi >> "$work/mem-dcc"
    if [ -n "$mlp" ]; then
        echo "mlp $(peak "$mlp" objective) $(peak "$mlp" gradient)" >> "$work/mem-dcc"
    fi
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
    # dcc's whole gradient against C's, when the dcc drivers ran.
    d = gradients("grad-dcc-" + bench)
    for f, (fd, gd) in d.items():
        fc, gc = c[f]
        worst = max((abs(a - b) / max(1.0, abs(a), abs(b)) for a, b in zip(gc, gd)),
                    default=float("inf"))
        good = len(gc) == len(gd) and worst <= 1e-8 and close(fc, fd, 1e-10)
        ok &= good
        print(f"{f}: C and dcc gradients ({len(gd)} entries) agree to {worst:.2g}"
              + ("" if good else " -- FAIL"), file=sys.stderr)

# Peak resident memory of one objective and one gradient (kB, whole process).
mem = {}
for line in open(os.path.join(work, "mem-dcc")):
    f, *kb = line.split()
    if len(kb) == 2:
        mem[f] = [int(v) for v in kb]
def mem_cols(f):
    if f not in mem:
        return ["n/a"] * 3
    o, g = mem[f]
    return [f"{o / 1024:.1f}", f"{g / 1024:.1f}", f"{g / o:.2f}"]

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
        rows.append(row + mem_cols(f))

# The MLP: dcc only; "gradient" is a whole training step (loss, gradient, update).
path = os.path.join(work, "time-dcc-mlp")
if os.path.exists(path) and os.path.getsize(path):
    r = dict(l.strip().partition(" ")[::2] for l in open(path) if l.strip())
    to, tg = float(r["objective_s"]), float(r["gradient_s"])
    clocks.add(r.get("clock", "?"))
    rows.append(["mlp 784-256-10 b128 (step)"] + ["n/a"] * 6
                + [f"{to:.3g}", f"{tg:.3g}", f"{tg / to:.2f}"] + mem_cols("mlp"))

print(f"times: best of N, {' / '.join(sorted(clocks))} clock, seconds per call", file=sys.stderr)
print("| problem | C obj (s) | C grad (s) | C ratio | PyTorch obj (s) | PyTorch grad (s) "
      "| PyTorch ratio | dcc obj (s) | dcc grad (s) | dcc ratio "
      "| dcc obj peak (MB) | dcc grad peak (MB) | peak ratio |")
print("|---" * 13 + "|")
for r in rows:
    print("| " + " | ".join(r) + " |")
sys.exit(0 if ok else 1)
PY
