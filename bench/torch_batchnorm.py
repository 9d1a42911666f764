#!/usr/bin/python3
"""PyTorch peer of bench/bench_batchnorm.c: F.batch_norm in training mode
(affine, running statistics updated) forward, and its backward (x, weight and
bias gradients, one autograd call on a kept graph), on the same shapes; best
of the runs, Melem/s = numel(x) / time. Last line:
    "torch 1.13.0 batch_norm fwd+bwd resnet 64ch 56x56 b32 threads 2: 900.0 Melem/s"
Run with Debian's python3-torch: /usr/bin/python3 bench/torch_batchnorm.py"""
import argparse
import time

import torch
import torch.nn.functional as F

CASES = [("resnet 64ch 56x56 b32", (32, 64, 56, 56)),
         ("cnn 32ch 28x28 b64", (64, 32, 28, 28)),
         ("bn1d 512 features b256", (256, 512))]


def best(fn, secs):
    t_best, start, runs = 1e30, time.perf_counter(), 0
    while runs < 3 or time.perf_counter() - start < secs:
        t = time.perf_counter()
        fn()
        t_best = min(t_best, time.perf_counter() - t)
        runs += 1
    return t_best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.5)
    a = ap.parse_args()
    print("torch %s F.batch_norm (training, affine); best of %.1f s" % (torch.__version__, a.seconds))
    print("%-26s %3s %9s %9s %9s %9s %11s" % ("case", "thr", "fwd ms", "Melem/s", "bwd ms", "Melem/s", "fwd+bwd/s"))
    headline = 0.0
    for i, (name, shape) in enumerate(CASES):
        c = shape[1]
        x = (torch.rand(*shape) * 2 - 1 + 1).requires_grad_(True)
        w = (torch.rand(c) + 0.5).requires_grad_(True)
        b = (torch.rand(c) - 0.5).requires_grad_(True)
        rm, rv = torch.zeros(c), torch.ones(c)
        g = torch.rand(*shape) - 0.5
        n = x.numel()
        for thr in (1, 2):
            torch.set_num_threads(thr)
            with torch.no_grad():
                fwd = best(lambda: F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5), a.seconds)
            y = F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)
            bwd = best(lambda: torch.autograd.grad(y, (x, w, b), g, retain_graph=True), a.seconds)
            both = n / (fwd + bwd) / 1e6
            print("%-26s %3d %9.3f %9.1f %9.3f %9.1f %11.1f" % (name, thr, 1e3 * fwd, n / fwd / 1e6, 1e3 * bwd,
                                                                  n / bwd / 1e6, both))
            if i == 0 and thr == 2:
                headline = both
    print("torch %s batch_norm fwd+bwd resnet 64ch 56x56 b32 threads 2: %.1f Melem/s"
          % (torch.__version__.split("a")[0], headline))


if __name__ == "__main__":
    main()
