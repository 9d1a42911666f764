#!/usr/bin/python3
"""VGG11 parity fixtures: the notes' PyTorch class VGG_A (§16) with weights
from a formula, its logits and one training step's gradients, written to
tests/fixtures/vgg11.safetensors.

Run with Debian's torch:  /usr/bin/python3 scripts/gen_vgg_fixtures.py

No weights are committed: parameter number p (in named_parameters order) has
element i (row-major) equal to

    x = lowbias32((i * 0x9E3779B1 + (p + 1) * 0x85EBCA77 + seed) mod 2^32)
    u = (x >> 8) / 2^24                       (exact in float32)
    w = float32(2u - 1) * float32(bound)      (one float32 rounding)

with bound = sqrt(6 / fan_in) for weights (He's uniform: activations keep
their size through the ReLUs) and 0.05 for biases; BatchNorm weights are
1 + that value with bound 0.1. The input images use p = 1000 with bound 1
shifted to [0, 1): u itself. tests/test_vgg.c computes the same bits in C.
The reference runs in float64 (the float32 weights are exact there), so the
fixtures hold the exact results rounded once to float32.

Cases (prefix.):
  full   the notes' VGG_A, batch 2 of 3x224x224, eval mode (dropout off:
         torch's dropout masks cannot be reproduced), 1000 classes
  small  vgg11 config in=3,size=32,classes=10,width=0.125,hidden=64, batch 2,
         eval mode: the case the sanitizer build runs
  bn     vgg11_bn config in=1,size=28,pad_to=32,classes=10,width=0.125,
         hidden=64,dropout=0, batch 4, train mode (batch statistics)
Each case stores logits (N, classes), loss (cross-entropy, mean, labels
i*7+3 mod classes), grad_norm (P: the 2-norm of each parameter's gradient)
and grad_sample (P, 8: the gradient at 8 element indices per parameter,
index k = lowbias32(k * 0x27D4EB2F + (p + 1) * 0x165667B1) mod numel).
Metadata <case>.names lists the parameter names in order.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from safetensors_io import write_f32

M32 = 0xFFFFFFFF


def mul32(x, c):
    """(x * c) mod 2^32 for int64 tensors x < 2^32 without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & M32


def lowbias32(x):
    x = x ^ (x >> 16)
    x = mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniform01(p, n, seed=0):
    """n float32 values u in [0, 1) of parameter number p (chunked)."""
    out = torch.empty(n, dtype=torch.float32)
    base = ((p + 1) * 0x85EBCA77 + seed) & M32
    step = 1 << 24
    for s in range(0, n, step):
        i = torch.arange(s, min(n, s + step), dtype=torch.int64)
        x = lowbias32((mul32(i & M32, 0x9E3779B1) + base) & M32)
        out[s:s + len(i)] = (x >> 8).to(torch.float32) * (1.0 / (1 << 24))
    return out


def formula(p, shape, bound):
    n = math.prod(shape)
    u = uniform01(p, n)
    return ((u * 2 - 1) * torch.tensor(bound, dtype=torch.float32)).reshape(shape)


def fill(model):
    """The formula's weights into model (float32 values)."""
    with torch.no_grad():
        for p, (name, t) in enumerate(model.named_parameters()):
            if name.endswith("bias"):
                bound = 0.05
            elif t.dim() == 1:   # BatchNorm weight: 1 + U(-0.1, 0.1)
                t.copy_(1 + formula(p, t.shape, 0.1))
                continue
            else:
                bound = math.sqrt(6.0 / (t[0].numel()))
            t.copy_(formula(p, t.shape, bound))


class VGG_A(nn.Module):
    """The notes' class (§16), verbatim."""

    def __init__(self, num_classes=1000):
        super(VGG_A, self).__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(64, 128, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(128, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(256, 512, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(512, 512, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


class VGG(nn.Module):
    """VGG_A with nabla's options: input channels, zero padding to pad_to,
    width multiplier, classifier width, BatchNorm (torchvision's vgg11_bn)."""

    def __init__(self, cin, size, classes, width, hidden, pad_to=0, bn=False, dropout=0.5):
        super().__init__()
        self.pad = nn.ZeroPad2d(((pad_to - size) // 2, pad_to - size - (pad_to - size) // 2) * 2) \
            if pad_to > size else None
        layers, c = [], cin
        for v in [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]:
            if not v:
                layers.append(nn.MaxPool2d(2, 2))
                continue
            out = max(1, round(v * width))
            layers.append(nn.Conv2d(c, out, 3, padding=1))
            if bn:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            c = out
        self.features = nn.Sequential(*layers)
        f = (pad_to or size) // 32
        self.classifier = nn.Sequential(
            nn.Linear(c * f * f, hidden), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(hidden, classes))

    def forward(self, x):
        if self.pad is not None:
            x = self.pad(x)
        return self.classifier(torch.flatten(self.features(x), 1))


def sample_index(p, k, n):
    x = torch.tensor([(k * 0x27D4EB2F + (p + 1) * 0x165667B1) & M32], dtype=torch.int64)
    return int(lowbias32(x)[0]) % n


def run_case(prefix, model, shape, classes, train, tensors, meta):
    fill(model)
    model = model.double()
    model.train(train)
    x = uniform01(1000, math.prod(shape)).reshape(shape).double()
    y = torch.tensor([(i * 7 + 3) % classes for i in range(shape[0])])
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    names, norms, samples = [], [], []
    for p, (name, t) in enumerate(model.named_parameters()):
        g = t.grad.reshape(-1)
        names.append(name)
        norms.append(g.norm())
        samples.append(torch.stack([g[sample_index(p, k, g.numel())] for k in range(8)]))
    tensors[prefix + ".logits"] = logits
    tensors[prefix + ".loss"] = loss.reshape(1)
    tensors[prefix + ".grad_norm"] = torch.stack(norms)
    tensors[prefix + ".grad_sample"] = torch.stack(samples)
    meta[prefix + ".names"] = ",".join(names)
    print(prefix, "loss", float(loss), "logits[0,:4]", logits[0, :4].tolist())


def main():
    torch.manual_seed(0)
    tensors, meta = {}, {}
    full = VGG_A()
    general = VGG(3, 224, 1000, 1.0, 4096)
    assert [n for n, _ in full.named_parameters()] == [n for n, _ in general.named_parameters()]
    assert sum(t.numel() for t in full.parameters()) == 132863336
    del general
    run_case("full", full, (2, 3, 224, 224), 1000, False, tensors, meta)
    del full
    run_case("small", VGG(3, 32, 10, 0.125, 64), (2, 3, 32, 32), 10, False, tensors, meta)
    run_case("bn", VGG(1, 28, 10, 0.125, 64, pad_to=32, bn=True, dropout=0.0), (4, 1, 28, 28), 10, True, tensors,
             meta)
    write_f32("tests/fixtures/vgg11.safetensors", tensors, meta)


if __name__ == "__main__":
    main()
