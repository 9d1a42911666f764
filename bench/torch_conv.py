#!/usr/bin/python3
"""PyTorch peer of bench/bench_conv.c: the same convolutions, forward
(F.conv2d under no_grad) and backward (aten::convolution_backward for the
input, weight and bias gradients, as nabla's nb__bw_conv2d), best time of
the runs, GFLOP/s for 1 and 2 threads. The share of the machine's peak is
bench_conv's column (its FMA probe); compare the GFLOP/s here with it.

Run with Debian's torch:  /usr/bin/python3 bench/torch_conv.py [seconds]
The last line is the headline number for scripts/bench.sh (2 threads, as
torch.set_num_threads(2)).
"""
import sys
import time

import torch

CASES = [  # name, N, C, H, W, O, k, pad, stride
    ("vgg 64->64 56x56 b32", 32, 64, 56, 56, 64, 3, 1, 1),
    ("fmnist conv1 1->32 28x28 b64", 64, 1, 28, 28, 32, 3, 1, 1),
    ("fmnist conv2 32->64 14x14 b64", 64, 32, 14, 14, 64, 3, 1, 1),
]


def best(fn, secs):
    fn()  # warm up (oneDNN primitive creation, allocations)
    t_best, start, runs = 1e30, time.perf_counter(), 0
    while runs < 3 or time.perf_counter() - start < secs:
        t = time.perf_counter()
        fn()
        t_best = min(t_best, time.perf_counter() - t)
        runs += 1
    return t_best


def main():
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    torch.manual_seed(0)
    print("torch %s, mkldnn %s; best of %.1f s"
          % (torch.__version__, torch.backends.mkldnn.is_available(), secs))
    print("%-32s %3s %9s %8s %9s %8s %10s"
          % ("case", "thr", "fwd ms", "GFLOP/s", "bwd ms", "GFLOP/s", "fwd+bwd"))
    headline = 0.0
    for i, (name, n, c, h, w, o, k, pad, stride) in enumerate(CASES):
        x = torch.rand(n, c, h, w) - 0.5
        wt = torch.rand(o, c, k, k) - 0.5
        b = torch.rand(o) - 0.5
        with torch.no_grad():
            y = torch.nn.functional.conv2d(x, wt, b, stride=stride, padding=pad)
        g = torch.rand_like(y) - 0.5
        oh, ow = y.shape[2], y.shape[3]
        flop = 2.0 * n * o * oh * ow * c * k * k

        def fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(x, wt, b, stride=stride, padding=pad)

        def bwd():
            torch.ops.aten.convolution_backward(g, x, wt, [o], [stride, stride], [pad, pad], [1, 1], False,
                                                [0, 0], 1, [True, True, True])

        for th in (1, 2):
            torch.set_num_threads(th)
            tf, tb = best(fwd, secs), best(bwd, secs)
            gt = 3 * flop / (tf + tb) * 1e-9
            print("%-32s %3d %9.3f %8.1f %9.3f %8.1f %10.1f"
                  % (name, th, tf * 1e3, flop / tf * 1e-9, tb * 1e3, 2 * flop / tb * 1e-9, gt))
            sys.stdout.flush()
            if i == 0 and th == 2:
                headline = gt
    torch.set_num_threads(2)
    print("conv 64->64 56x56 b32 forward+backward, 2 threads: %.1f GFLOP/s" % headline)


if __name__ == "__main__":
    main()
