#!/usr/bin/python3
"""PyTorch peer of bench/bench_<model>.c (--model mlp or cnn): the same model
(the MLP 784-256-128-100-10 with ReLU, or the notes' CNN), the same batch, the
same optimizer (the MLP SGD lr 0.05 momentum 0.9, the CNN Adam lr 1e-3, its
recipe) on the Fashion-MNIST training images in order (random images when
the dataset is missing), the same timing (warm-up, then rounds of --seconds,
median). The line before the last is the
process's peak resident memory (getrusage ru_maxrss), "torch cnn peak RSS:
612.0 MiB"; the last line:
    "torch 1.13.0 mlp train batch 64 threads 2 (Fashion-MNIST): 17000 img/s"
Run with Debian's python3-torch: /usr/bin/python3 bench/torch_train.py --model cnn"""
import gzip
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_timing import arguments, median_rate, peak_rss_mib

SYNTHETIC = 60000


def idx(path):
    """An IDX file (raw or .gz) as a uint8 tensor."""
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with open(p, "rb") as f:
                raw = f.read()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            ndim = raw[3]
            dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
            data = torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8)
            return data.reshape(dims)
    raise FileNotFoundError(path)


def fashion_mnist_train():
    d = os.environ.get("NABLA_FASHION_MNIST") or "/usr/share/datasets/fashion-mnist"
    x = idx(os.path.join(d, "train-images-idx3-ubyte")).float().div_(255).reshape(-1, 1, 28, 28)
    y = idx(os.path.join(d, "train-labels-idx1-ubyte")).long()
    return x, y


def main():
    ap = arguments("PyTorch peer of bench_mlp and bench_cnn")
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                              nn.Linear(128, 100), nn.ReLU(), nn.Linear(100, 10))
    else:
        model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))
    if a.model == "mlp":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    try:
        x, y = fashion_mnist_train()
        source = "Fashion-MNIST"
    except FileNotFoundError as e:
        print(f"torch_train: {e} not found; using random images instead", file=sys.stderr)
        x, y = torch.rand(SYNTHETIC, 1, 28, 28), torch.randint(0, 10, (SYNTHETIC,))
        source = "random images"
    nb = x.shape[0] // a.batch  # whole batches, cycled in order
    xs = [x[i * a.batch:(i + 1) * a.batch] for i in range(nb)]
    ys = [y[i * a.batch:(i + 1) * a.batch] for i in range(nb)]

    k = 0

    def step():
        nonlocal k
        x, y = xs[k % nb], ys[k % nb]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        k += 1

    rate = median_rate(step, a.batch, a.seconds, a.rounds, "img/s", 20)
    print(f"torch {a.model} peak RSS: {peak_rss_mib():.1f} MiB")
    print(f"torch {torch.__version__} {a.model} train batch {a.batch} threads {torch.get_num_threads()} "
          f"({source}): {rate:.0f} img/s")


if __name__ == "__main__":
    main()
