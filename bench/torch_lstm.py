#!/usr/bin/python3
"""PyTorch peer of bench/bench_lstm.c: the same models (--model rows: LSTM(28,
128, batch_first) over 28 rows of 28 pixels -> last step -> Linear(128, 10);
--model char: Embedding(100, 64) -> 2-layer LSTM(64, 256, batch_first) ->
Linear(256, 100) over every position of 100), random data, batch 64, SGD
(lr 0.05, momentum 0.9), cross entropy, the same timing (warm-up, then
rounds of --seconds, median). Prints peak RSS, then on its last line:
    "torch 1.13.0 lstm rows train batch 64 threads 2: 2500 seq/s"
Run with Debian's python3-torch: /usr/bin/python3 bench/torch_lstm.py --model char"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_timing import arguments, median_rate, peak_rss_mib


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
    ap = arguments("PyTorch peer of bench_lstm")
    ap.add_argument("--model", choices=("rows", "char"), default="rows")
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

    rate = median_rate(step, a.batch, a.seconds, a.rounds, "seq/s", 5)
    print(f"torch lstm {a.model} peak RSS: {peak_rss_mib():.1f} MiB")
    print(f"torch {torch.__version__} lstm {a.model} train batch {a.batch} threads {torch.get_num_threads()}: "
          f"{rate:.0f} seq/s")


if __name__ == "__main__":
    main()
