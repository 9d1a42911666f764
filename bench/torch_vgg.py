#!/usr/bin/python3
"""PyTorch peer of bench/bench_vgg.c: the notes' VGG_A (§16) forward and
training step at 3x224x224 batch 4 (1000 classes) and 3x32x32 batch 64 (10
classes, classifier 512 -> 4096 -> 4096 -> 10), random images and labels,
SGD (lr 0.01, momentum 0.9) with cross-entropy, dropout on in training;
forward in eval mode under torch.no_grad(). Median of the rounds, ms per
image (wall, and CPU time of all threads); peak RSS; last line the 224x224
training throughput.
    /usr/bin/python3 bench/torch_vgg.py [--threads 2] [--rounds 3] [--size 224|32|0]
"""
import argparse
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def vgg11(size, classes):
    """The notes' VGG_A with the classifier's input following the feature map."""
    layers, c = [], 3
    for v in [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]:
        if v:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
        else:
            layers.append(nn.MaxPool2d(2, 2))
    f = size // 32
    model = nn.Sequential()
    model.features = nn.Sequential(*layers)
    model.flatten = nn.Flatten(1)
    model.classifier = nn.Sequential(
        nn.Linear(512 * f * f, 4096), nn.ReLU(True), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
        nn.Linear(4096, classes))
    return model


def median(xs):
    return sorted(xs)[len(xs) // 2]


def bench(size, batch, classes, rounds):
    torch.manual_seed(0)
    model = vgg11(size, classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, classes, (batch,))
    model.eval()
    fwd, fwd_cpu = [], []
    with torch.no_grad():
        model(x)
        for _ in range(rounds):
            t, c = time.perf_counter(), time.process_time()
            model(x)
            fwd.append((time.perf_counter() - t) / batch)
            fwd_cpu.append((time.process_time() - c) / batch)
    model.train()
    train, train_cpu = [], []
    for k in range(rounds + 1):
        t, c = time.perf_counter(), time.process_time()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if k:
            train.append((time.perf_counter() - t) / batch)
            train_cpu.append((time.process_time() - c) / batch)
    return [1e3 * median(v) for v in (fwd, train, fwd_cpu, train_cpu)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=0, choices=[0, 32, 224])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    last = None
    for size, batch, classes in [(32, 64, 10), (224, 4, 1000)]:
        if a.size and a.size != size:
            continue
        f, t, fc, tc = bench(size, batch, classes, a.rounds)
        print(f"torch vgg11 {size}x{size} batch {batch} threads {a.threads}: forward {f:.2f} ms/img, "
              f"train step {t:.2f} ms/img; CPU time: forward {fc:.2f}, train step {tc:.2f} ms/img", flush=True)
        last = (size, batch, t)
    print(f"torch vgg11 peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    print(f"torch {torch.__version__} vgg11 {last[0]} train batch {last[1]} threads {a.threads}: "
          f"{1e3 / last[2]:.3f} img/s")


if __name__ == "__main__":
    main()
