#!/usr/bin/python3
"""torch_lstm.py — PyTorch (autograd, float64) baseline for ADBench's LSTM loss.

    /usr/bin/python3 bench/lstm/torch_lstm.py [--threads N] [--reps N] [--grad] FILE...

For each file prints, in lstm_bench's format: objective_s (the loss alone, under
torch.no_grad), gradient_s (forward + backward through autograd, with respect to the
main then the extra parameters), ratio, objective (%.17g) and the gradient's first
entries; --grad prints the whole gradient instead of timing. The loss is
shared/design/BENCHMARKS.md's, as in lstm_objective.inc: one vector op per gate and
step, as ADBench's own PyTorch version."""
import argparse
import math
import os
import sys
import time

import torch


def read_lstm(path):
    """ADBench LSTM file: l c b; 2*l*4*b main, 3*b extra parameters; 2*l*b initial
    state (per layer hidden, cell); c*b sequence values."""
    with open(path) as fp:
        tok = fp.read().split()
    l, c, b = int(tok[0]), int(tok[1]), int(tok[2])
    v = [float(t) for t in tok[3:]]
    np_, ns = 8 * l * b + 3 * b, 2 * l * b
    if len(v) != np_ + ns + c * b:
        sys.exit(f"{path}: not an ADBench LSTM file ({len(v)} values)")
    f64 = torch.float64
    return dict(l=l, c=c, b=b, theta=torch.tensor(v[:np_], dtype=f64),
                state=torch.tensor(v[np_:np_ + ns], dtype=f64).view(l, 2, b),
                seq=torch.tensor(v[np_ + ns:], dtype=f64).view(c, b))


def objective(p, theta):
    l, c, b, seq = p["l"], p["c"], p["b"], p["seq"].unbind(0)
    main = theta[:8 * l * b].view(l, 2, 4, b)      # layer, (weights, biases), gate, unit
    in_w, out_w, out_b = theta[8 * l * b:].view(3, b).unbind(0)
    gates = [(main[k, 0].unbind(0), main[k, 1].unbind(0)) for k in range(l)]  # once, not per step
    hid = [p["state"][k, 0] for k in range(l)]
    cell = [p["state"][k, 1] for k in range(l)]
    total = 0.0
    for t in range(c - 1):
        y = seq[t] * in_w
        for k in range(l):
            (wf, wi, wo, wg), (bf, bi, bo, bg) = gates[k]
            f = torch.sigmoid(y * wf + bf)
            ig = torch.sigmoid(hid[k] * wi + bi)
            o = torch.sigmoid(y * wo + bo)
            g = torch.tanh(hid[k] * wg + bg)
            cell[k] = cell[k] * f + ig * g
            hid[k] = o * torch.tanh(cell[k])
            y = hid[k]
        y = y * out_w + out_b
        lse = torch.log(torch.exp(y).sum() + 2)    # ADBench's logsumexp, with "+ 2"
        total = total + (seq[t + 1] * (y - lse)).sum()
    return -total / ((c - 1) * b)


# Wall clock, or this process's CPU time when BENCH_CLOCK=cpu, as the C drivers.
CPU_CLOCK = os.environ.get("BENCH_CLOCK") == "cpu"
now = time.process_time if CPU_CLOCK else time.perf_counter


def time_best(fn, reps):
    """Seconds per call, best of N samples; a sample repeats the call `inner` times,
    doubled until a sample lasts >= 1 ms; N makes the samples together last >= 0.2 s
    (N >= 5), or N = reps."""
    inner = 1
    while True:
        t0 = now()
        for _ in range(inner):
            fn()
        if now() - t0 >= 1e-3:
            break
        inner *= 2
    best, total, s = math.inf, 0.0, 0
    while (s < reps) if reps > 0 else (s < 5 or total < 0.2):
        t0 = now()
        for _ in range(inner):
            fn()
        t = now() - t0
        total, best, s = total + t, min(best, t), s + 1
    return best / inner


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--reps", type=int, default=0, help="samples per best-of (default automatic)")
    ap.add_argument("--grad", action="store_true", help="print the whole gradient, no timing")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for path in a.files:
        p = read_lstm(path)
        theta0 = p["theta"]

        def run_objective():
            with torch.no_grad():
                return objective(p, theta0)

        def run_gradient():
            theta = theta0.detach().requires_grad_()
            f = objective(p, theta)
            (g,) = torch.autograd.grad(f, theta)
            return f, g

        f, g = run_gradient()
        print(f"file {path}")
        if a.grad:
            print(f"objective {f.item():.17g}")
            print("\n".join(f"{v:.17g}" for v in g.tolist()))
            continue
        print(f"size l={p['l']} c={p['c']} b={p['b']} params={theta0.numel()}")
        to, tg = time_best(run_objective, a.reps), time_best(run_gradient, a.reps)
        print(f"clock {'cpu' if CPU_CLOCK else 'wall'}")
        print(f"objective_s {to:.6e}\ngradient_s {tg:.6e}\nratio {tg / to:.3f}")
        print(f"objective {run_objective().item():.17g}")
        print("gradient " + " ".join(f"{v:.10g}" for v in g[:8].tolist())
              + (" ..." if g.numel() > 8 else ""), flush=True)


if __name__ == "__main__":
    main()
