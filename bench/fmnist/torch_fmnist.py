#!/usr/bin/python3
"""Fashion-MNIST MLP in PyTorch: the baseline of examples/fashion_mnist.dl.

The same model and training as the DL example: pixels scaled to [0, 1],
784-256-10 with ReLU in float64, He-normal weights (kaiming_normal_, fan_in,
relu) and zero biases, softmax cross-entropy (mean), Adam with rate 1e-3,
batches of 128 in a fresh random order each epoch (the last batch smaller).
The data are read from the IDX gz files with gzip and struct.

Prints one line per epoch and the test accuracy, in the DL example's format:
    epoch 1/2: mean loss 0.5231, 3.21 s, 18692 examples/s
    test accuracy 0.8431

usage: torch_fmnist.py [--epochs N] [--threads N] [--train N] [--seed N]
                       [--device cpu|cuda]

With --device cuda the data, the model and the optimiser live on the GPU
(bench/gpu.sh); the random order is drawn on the CPU either way.
"""
import argparse
import gzip
import struct
import sys
import time

import torch

DATA = "/usr/share/datasets/fashion-mnist/"


def read_idx(path):
    """An IDX file of unsigned bytes as a tensor of that shape (uint8)."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        sys.exit("cannot open %s (install the Debian package dataset-fashion-mnist)" % path)
    zero, kind, rank = struct.unpack(">HBB", data[:4])
    if zero != 0 or kind != 0x08:
        sys.exit("%s: not an IDX file of unsigned bytes" % path)
    dims = struct.unpack(">%dI" % rank, data[4:4 + 4 * rank])
    body = bytearray(data[4 + 4 * rank:])
    return torch.frombuffer(body, dtype=torch.uint8).reshape(dims)


def load(split, n=None):
    x = read_idx(DATA + split + "-images-idx3-ubyte.gz")
    y = read_idx(DATA + split + "-labels-idx1-ubyte.gz")
    x = x.reshape(x.shape[0], -1).to(torch.float64) / 255.0
    y = y.to(torch.int64)
    if n is not None:
        x, y = x[:n], y[:n]
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train", type=int, default=60000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_fmnist.py: --device cuda, but torch.cuda.is_available() is false")
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    x, y = load("train", a.train)
    xt, yt = load("t10k")
    x, y, xt, yt = x.to(dev), y.to(dev), xt.to(dev), yt.to(dev)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).double().to(dev)
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, batch = x.shape[0], 128
    nb = (n + batch - 1) // batch
    for e in range(a.epochs):
        t0 = time.monotonic()
        order = torch.randperm(n)
        total = 0.0
        for i in range(nb):
            idx = order[i * batch:(i + 1) * batch].to(dev)
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item()
        dt = time.monotonic() - t0
        print("epoch %d/%d: mean loss %.4f, %.2f s, %d examples/s"
              % (e + 1, a.epochs, total / nb, dt, int(n / dt)), flush=True)
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).double().mean().item()
    print("test accuracy %.4f" % acc)


if __name__ == "__main__":
    main()
