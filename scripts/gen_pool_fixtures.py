#!/usr/bin/python3
"""Golden values for max_pool2d, avg_pool2d and adaptive_avg_pool2d: for
each configuration the input x, a random r, y = pool(x) and dx, the gradient
of sum(y * r), written as safetensors (by hand, following the spec) to
tests/fixtures/pool.safetensors.

Run with Debian's torch:  /usr/bin/python3 scripts/gen_pool_fixtures.py
Each configuration is stored beside its tensors ("<op>.<i>.cfg"), so the C
test (tests/test_pool.c) reads it from the file:
  max: kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode   (stride 0 = torch's default)
  avg: kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad
  adaptive: out_h, out_w
"""
import sys

import torch
import torch.nn.functional as F

from safetensors_io import write_f32

torch.manual_seed(2024)
torch.set_default_dtype(torch.float32)
out = {}

# shape, kernel, stride (0 = default), padding, dilation, ceil_mode
MAX = [
    ((2, 3, 8, 8), (2, 2), (0, 0), (0, 0), (1, 1), 0),
    ((2, 3, 9, 9), (3, 3), (2, 2), (1, 1), (1, 1), 0),
    ((1, 2, 6, 7), (3, 3), (1, 1), (1, 1), (1, 1), 0),
    ((1, 2, 7, 7), (2, 2), (2, 2), (0, 0), (1, 1), 1),
    ((1, 2, 5, 5), (2, 2), (3, 3), (1, 1), (1, 1), 1),   # last window dropped by the ceil rule
    ((1, 2, 7, 7), (3, 3), (1, 1), (1, 1), (2, 2), 0),
    ((2, 2, 6, 7), (2, 3), (1, 2), (1, 1), (1, 1), 0),
    ((3, 6, 6), (2, 2), (2, 2), (0, 0), (1, 1), 0),       # (C,H,W)
    ((1, 2, 32, 33), (2, 2), (2, 2), (0, 0), (1, 1), 0),
    ((1, 2, 31, 30), (3, 3), (2, 2), (1, 1), (1, 1), 0),
    ((1, 3, 11, 10), (3, 3), (2, 2), (1, 1), (1, 1), 1),
    ((1, 2, 9, 9), (3, 2), (2, 1), (1, 1), (2, 3), 0),
    ((1, 2, 16, 17), (2, 2), (2, 2), (0, 0), (1, 1), 1),
]
# shape, kernel, stride (0 = default), padding, ceil_mode, count_include_pad
AVG = [
    ((2, 3, 8, 8), (2, 2), (0, 0), (0, 0), 0, 1),
    ((2, 3, 9, 9), (3, 3), (2, 2), (1, 1), 0, 1),
    ((2, 3, 9, 9), (3, 3), (2, 2), (1, 1), 0, 0),
    ((1, 2, 8, 8), (3, 3), (2, 2), (1, 1), 1, 1),
    ((1, 2, 8, 8), (3, 3), (2, 2), (1, 1), 1, 0),
    ((1, 2, 5, 5), (2, 2), (3, 3), (1, 1), 1, 1),
    ((1, 2, 5, 5), (2, 2), (3, 3), (1, 1), 1, 0),
    ((2, 2, 6, 7), (2, 3), (1, 2), (1, 1), 0, 0),
    ((3, 6, 6), (3, 3), (1, 1), (1, 1), 0, 1),            # (C,H,W)
    ((1, 2, 32, 33), (2, 2), (2, 2), (0, 0), 0, 1),
    ((1, 2, 31, 30), (3, 3), (2, 2), (1, 1), 0, 0),
    ((1, 2, 10, 10), (4, 4), (3, 3), (2, 2), 1, 1),
    ((1, 2, 10, 10), (4, 4), (3, 3), (2, 2), 1, 0),
]
# shape, output size
ADAPTIVE = [
    ((2, 3, 7, 7), (3, 3)),
    ((1, 2, 5, 5), (2, 2)),
    ((2, 2, 8, 8), (4, 4)),
    ((1, 2, 6, 9), (4, 5)),
    ((2, 3, 5, 5), (1, 1)),
    ((1, 2, 3, 3), (5, 5)),
    ((2, 6, 6), (3, 2)),                                   # (C,H,W)
    ((1, 2, 20, 20), (1, 1)),
    ((2, 4, 7, 7), (7, 7)),
]


def record(prefix, cfg, x, fn):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    r = torch.randn(y.shape)
    (y * r).sum().backward()
    out.update({prefix + ".cfg": torch.tensor(cfg, dtype=torch.float32), prefix + ".x": x,
                prefix + ".r": r, prefix + ".y": y, prefix + ".dx": x.grad})


for i, (shape, k, s, p, d, ceil) in enumerate(MAX):
    record("max.%d" % i, list(k) + list(s) + list(p) + list(d) + [ceil], torch.randn(shape),
           lambda x: F.max_pool2d(x, k, None if s == (0, 0) else s, p, d, ceil_mode=bool(ceil)))
for i, (shape, k, s, p, ceil, cip) in enumerate(AVG):
    record("avg.%d" % i, list(k) + list(s) + list(p) + [ceil, cip], torch.randn(shape),
           lambda x: F.avg_pool2d(x, k, None if s == (0, 0) else s, p, ceil_mode=bool(ceil),
                                  count_include_pad=bool(cip)))
for i, (shape, o) in enumerate(ADAPTIVE):
    record("adaptive.%d" % i, list(o), torch.randn(shape), lambda x: F.adaptive_avg_pool2d(x, o))


path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/pool.safetensors"
write_f32(path, out, {"generator": "scripts/gen_pool_fixtures.py", "torch": torch.__version__})
print("wrote", path, len(out), "tensors")
