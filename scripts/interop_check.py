#!/usr/bin/env python3
"""Round trip of model weights between PyTorch and nabla, checked on logits.

    /usr/bin/python3 scripts/interop_check.py [--nabla build/nabla] [--data DIR]

For each model of nabla's zoo (mlp 784-256-128-100-10 and the cnn of
src/models/zoo.c), built here as the same nn.Sequential so the state_dict
names and layouts are nabla's:

  torch -> nabla   a randomly initialised PyTorch model (BatchNorm running
                   statistics made non-trivial) is written as safetensors the
                   way safetensors.torch.save_file writes a state_dict (with
                   num_batches_tracked as I64, no nabla metadata); `nabla run
                   --model NAME` computes the logits of a batch of
                   Fashion-MNIST test images; they must match PyTorch's.
  nabla -> torch   `nabla train --limit-train 500 --epochs 1 --out W` trains
                   the model; W is loaded into the PyTorch model
                   (load_state_dict, strict) and PyTorch's logits must match
                   those of `nabla run --weights W`.

Both models run in eval mode. "Match" means max|nabla - torch| <= 1e-5 *
max|torch| over the batch's logits (float32 sums in a different order differ
by a few ulps, so an element-wise relative test would fail on logits near
zero). The safetensors package is not needed: the format is written and read
by hand. Exit status 0 when every check passes, 1 otherwise, 2 on a usage
error. `make test` runs this through tests/test_interop.c when torch is
installed and counts it as skipped otherwise.
"""
import argparse
import gzip
import os
import subprocess
import sys
import tempfile

import torch
from torch import nn

from safetensors_io import load, save

RTOL = 1e-5
BATCH = 64


def build(name):
    """nabla's zoo model `name` with its default configuration, as torch."""
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 100), nn.ReLU(), nn.Linear(100, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))


def test_images(data_dir, n):
    """The first n Fashion-MNIST test images as [n, 1, 28, 28] in [0, 1], as
    nabla loads them; seeded uniform noise when the dataset is missing."""
    path = os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        print(f"  ({path} missing: random inputs)")
        return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with gzip.open(path, "rb") as f:
        raw = f.read(16 + n * 784)
    x = torch.tensor(list(raw[16:]), dtype=torch.float32).reshape(n, 1, 28, 28)
    return x / 255.0


def nabla(binary, *args):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"nabla {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def compare(what, got, want):
    err = (got - want).abs().max().item()
    scale = want.abs().max().item()
    rel = err / scale if scale > 0 else err
    ok = got.shape == want.shape and rel <= RTOL
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: max |nabla - torch| = {err:.3g}, relative {rel:.3g} "
          f"(limit {RTOL:g}), {tuple(want.shape)} logits")
    return ok


def torch_logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def torch_to_nabla(binary, name, x_path, x, work):
    torch.manual_seed(2024)
    model = build(name)
    for m in model.modules():  # running statistics that make eval mode matter
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.num_batches_tracked.fill_(7)
    w = os.path.join(work, f"torch_{name}.safetensors")
    y = os.path.join(work, f"torch_{name}_out.safetensors")
    save(w, model.state_dict(), {"format": "pt"})
    nabla(binary, "run", "--model", name, "--weights", w, "--input", x_path, "--output", y, "--threads", "2")
    got = load(y)[0]["output"]
    return compare(f"{name} torch -> nabla", got, torch_logits(model, x))


def nabla_to_torch(binary, name, x_path, x, work, data_dir):
    w = os.path.join(work, f"nabla_{name}.safetensors")
    y = os.path.join(work, f"nabla_{name}_out.safetensors")
    nabla(binary, "train", "--model", name, "--limit-train", "500", "--epochs", "1", "--seed", "3",
          "--threads", "2", "--quiet", "--data", data_dir, "--out", w)
    state, meta = load(w)
    if meta.get("model") != name:
        print(f"  FAIL {name}: the file's metadata names model {meta.get('model')!r}")
        return False
    model = build(name)
    ref = model.state_dict()
    # nabla keeps num_batches_tracked as a float count; torch as int64.
    model.load_state_dict({k: v.to(ref[k].dtype) for k, v in state.items()}, strict=True)
    nabla(binary, "run", "--weights", w, "--input", x_path, "--output", y, "--threads", "2")
    got = load(y)[0]["output"]
    return compare(f"{name} nabla -> torch", got, torch_logits(model, x))


def main():
    ap = argparse.ArgumentParser(description="PyTorch <-> nabla weights round trip, checked on logits")
    ap.add_argument("--nabla", default="build/nabla", help="the nabla binary (default build/nabla)")
    ap.add_argument("--data", default=os.environ.get("NABLA_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"),
                    help="Fashion-MNIST directory")
    ap.add_argument("--models", default="mlp,cnn", help="comma-separated zoo models (default mlp,cnn)")
    args = ap.parse_args()
    if not os.access(args.nabla, os.X_OK):
        ap.error(f"{args.nabla} is not an executable (build it with make)")
    torch.set_num_threads(2)
    ok = True
    with tempfile.TemporaryDirectory(prefix="nabla-interop-") as work:
        x = test_images(args.data, BATCH)
        x_path = os.path.join(work, "x.safetensors")
        save(x_path, {"input": x})
        for name in args.models.split(","):
            try:
                ok &= torch_to_nabla(args.nabla, name, x_path, x, work)
                ok &= nabla_to_torch(args.nabla, name, x_path, x, work, args.data)
            except (RuntimeError, KeyError) as e:
                print(f"  FAIL {name}: {e}")
                ok = False
    print("interop: all checks passed" if ok else "interop: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
