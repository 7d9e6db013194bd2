#!/usr/bin/python3
"""torch_gmm.py — PyTorch (autograd, float64) baseline for the ADBench GMM objective.

    /usr/bin/python3 bench/gmm/torch_gmm.py [--threads N] [--reps N] [--grad] FILE...

For each file prints, in gmm_bench's format: objective_s (the objective alone, under
torch.no_grad), gradient_s (forward + backward through autograd), ratio, objective
(%.17g) and the gradient's first entries; --grad prints the whole gradient instead of
timing. The objective is shared/design/BENCHMARKS.md's, as in gmm_objective.inc."""
import argparse
import math
import os
import sys
import time

import torch


def read_gmm(path):
    """ADBench GMM file: D K N; alphas; means; per component q then l; N points (or one,
    replicated N times); gamma m. Returns a dict of float64 tensors and numbers."""
    with open(path) as fp:
        v = [float(t) for t in fp.read().split()]
    d, k, n = int(v[0]), int(v[1]), int(v[2])
    np_ = k + k * d + k * d * (d + 1) // 2
    if len(v) == 3 + np_ + n * d + 2:
        pts, replicated = v[3 + np_:3 + np_ + n * d], False
    elif len(v) == 3 + np_ + d + 2:
        pts, replicated = v[3 + np_:3 + np_ + d] * n, True
    else:
        sys.exit(f"{path}: not an ADBench GMM file ({len(v)} numbers)")
    return dict(d=d, k=k, n=n, replicated=replicated,
                theta=torch.tensor(v[3:3 + np_], dtype=torch.float64),
                x=torch.tensor(pts, dtype=torch.float64).view(n, d),
                gamma=v[-2], m=v[-1])


def lower_index(d):
    """Flat positions in a D x D matrix of l's entries: column by column,
    Q[j][i] = l[idx++] for i = 0..D-1, j = i+1..D-1."""
    return torch.tensor([j * d + i for i in range(d) for j in range(i + 1, d)], dtype=torch.long)


def objective(p, theta, lidx):
    d, k, n, x, g, m = p["d"], p["k"], p["n"], p["x"], p["gamma"], p["m"]
    isz = d * (d + 1) // 2
    alpha = theta[:k]
    mu = theta[k:k + k * d].view(k, d)
    icf = theta[k + k * d:].view(k, isz)
    q, l = icf[:, :d], icf[:, d:]
    qd = torch.exp(q)
    lower = torch.zeros(k, d * d, dtype=theta.dtype).index_copy(1, lidx, l).view(k, d, d)
    Q = torch.diag_embed(qd) + lower
    z = x.unsqueeze(0) - mu.unsqueeze(1)                   # k, n, d
    y = torch.matmul(z, Q.transpose(1, 2))                 # y[k, n] = Q_k z[k, n]
    sumq = q.sum(1)
    beta = (alpha + sumq).unsqueeze(1) - 0.5 * (y * y).sum(2)   # k, n
    f = (-n * d * 0.5 * math.log(2 * math.pi) + torch.logsumexp(beta, 0).sum()
         - n * torch.logsumexp(alpha, 0))
    nn = d + m + 1
    lgd = 0.25 * d * (d - 1) * math.log(math.pi) + sum(
        math.lgamma(0.5 * nn + 0.5 * (1 - j)) for j in range(1, d + 1))
    cst = nn * d * (math.log(g) - 0.5 * math.log(2)) - lgd
    fro = (qd * qd).sum(1) + (l * l).sum(1)
    return f + (0.5 * g * g * fro - m * sumq).sum() - k * cst


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
        p = read_gmm(path)
        lidx = lower_index(p["d"])
        theta0 = p["theta"]

        def run_objective():
            with torch.no_grad():
                return objective(p, theta0, lidx)

        def run_gradient():
            theta = theta0.detach().requires_grad_()
            f = objective(p, theta, lidx)
            (g,) = torch.autograd.grad(f, theta)
            return f, g

        f, g = run_gradient()
        print(f"file {path}")
        if a.grad:
            print(f"objective {f.item():.17g}")
            print("\n".join(f"{v:.17g}" for v in g.tolist()))
            continue
        print(f"size d={p['d']} K={p['k']} N={p['n']} params={theta0.numel()}"
              + (" (one point replicated)" if p["replicated"] else ""))
        to, tg = time_best(run_objective, a.reps), time_best(run_gradient, a.reps)
        print(f"clock {'cpu' if CPU_CLOCK else 'wall'}")
        print(f"objective_s {to:.6e}\ngradient_s {tg:.6e}\nratio {tg / to:.3f}")
        print(f"objective {run_objective().item():.17g}")
        print("gradient " + " ".join(f"{v:.10g}" for v in g[:8].tolist())
              + (" ..." if g.numel() > 8 else ""), flush=True)


if __name__ == "__main__":
    main()
