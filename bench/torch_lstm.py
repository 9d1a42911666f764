#!/usr/bin/python3
"""PyTorch peer of bench/bench_lstm.c: the same models (--model rows: LSTM(28,
128, batch_first) over 28 rows of 28 pixels -> last step -> Linear(128, 10);
--model char: Embedding(100, 64) -> 2-layer LSTM(64, 256, batch_first) ->
Linear(256, 100) over every position of 100), random data, batch 64, SGD
(lr 0.05, momentum 0.9), cross entropy, the same timing (warm-up, then
rounds of --seconds, median). Prints peak RSS, then on its last line:
    "torch 1.13.0 lstm rows train batch 64 threads 2: 2500 seq/s"
Run with Debian's python3-torch: /usr/bin/python3 bench/torch_lstm.py --model char"""
import argparse
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Rows(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(28, 128, batch_first=True)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


class Char(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 64)
        self.rnn = nn.LSTM(64, 256, num_layers=2, batch_first=True)
        self.fc = nn.Linear(256, 100)

    def forward(self, x):
        y, _ = self.rnn(self.emb(x))
        return self.fc(y.reshape(-1, 256))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("rows", "char"), default="rows")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "rows":
        model = Rows()
        x, y = torch.rand(a.batch, 28, 28), torch.randint(0, 10, (a.batch,))
    else:
        model = Char()
        x, y = torch.randint(0, 100, (a.batch, 100)), torch.randint(0, 100, (a.batch * 100,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.3 or k < 5:  # warm-up
        step()
        k += 1
    rates = []
    for rd in range(a.rounds):
        steps, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            step()
            steps += 1
            t = time.perf_counter() - t0
            if t >= a.seconds:
                break
        rates.append(steps * a.batch / t)
        cpu = 1e3 * (time.process_time() - c0) / steps  # all threads: steadier on shared cores
        print(f"  round {rd + 1}: {steps} steps, {rates[-1]:.0f} seq/s, {1e3 * t / steps:.2f} ms/step, "
              f"{cpu:.2f} CPU ms/step", file=sys.stderr)
    print(f"torch lstm {a.model} peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    print(f"torch {torch.__version__} lstm {a.model} train batch {a.batch} threads {torch.get_num_threads()}: "
          f"{statistics.median(rates):.0f} seq/s")


if __name__ == "__main__":
    main()
