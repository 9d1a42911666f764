#!/usr/bin/python3
"""Golden values for nb_conv2d from PyTorch, written as safetensors to
tests/fixtures/conv.safetensors (read by tests/test_conv.c).

Run with Debian's torch:  /usr/bin/python3 scripts/gen_conv_fixtures.py

For every configuration NAME the file holds
  NAME.cfg  17 numbers: N C H W O kh kw stride_h stride_w pad_h pad_w
            dil_h dil_w groups bias xstep scale_w_log2
  NAME.y    torch.nn.functional.conv2d(x, w, b, ...)
  NAME.dx, NAME.dw, NAME.db (if bias)   gradients of sum(y * r)
The inputs are not stored: x, w, b and r come from a 32-bit integer hash of
the element index (hashed(), mirrored in the C test), exact in float32, so
both sides start from the same bits. x is a view base[..., ::xstep] of a
(N, C, H, W*xstep) tensor, so xstep = 2 checks a strided input.
"""
import sys

import numpy as np
import torch

from hashed_tensors import tensor
from safetensors_io import write_f32

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)


# name: N, C, H, W, O, (kh, kw), stride, padding, dilation, groups, bias, xstep
CONFIGS = {
    "basic":      (2, 3, 7, 7, 4, (3, 3), (1, 1), (0, 0), (1, 1), 1, 1, 1),
    "stride2":    (3, 4, 9, 8, 6, (3, 3), (2, 2), (1, 1), (1, 1), 1, 1, 1),
    "pad2_dil2":  (1, 3, 10, 11, 5, (3, 3), (1, 1), (2, 2), (2, 2), 1, 0, 1),
    "groups2":    (2, 4, 6, 8, 6, (2, 3), (1, 2), (1, 0), (1, 1), 2, 1, 1),
    "depthwise":  (2, 6, 8, 8, 12, (3, 3), (1, 1), (1, 1), (1, 1), 6, 1, 1),
    "pointwise":  (3, 8, 5, 6, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1, 1, 1),
    "strided_x":  (2, 3, 6, 7, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, 2),
    "rect_s21":   (1, 2, 9, 12, 3, (3, 5), (2, 1), (0, 2), (1, 2), 1, 0, 1),
    "mnist1":     (2, 1, 12, 12, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, 1),
    "vgg64":      (1, 64, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, 1),
    "wide_dil":   (2, 16, 7, 9, 16, (3, 2), (1, 1), (2, 1), (2, 1), 1, 1, 1),
    "wide_g2":    (2, 32, 6, 5, 32, (3, 3), (1, 1), (1, 1), (1, 1), 2, 0, 2),
}

out = {}
for name, (N, C, H, W, O, k, s, p, d, g, bias, xstep) in CONFIGS.items():
    fan_in = C // g * k[0] * k[1]
    # weights scaled by a power of two near 1/sqrt(fan_in): exact in float32
    wlog2 = -int(round(np.log2(np.sqrt(fan_in))))
    base = tensor((N, C, H, W * xstep), 1)
    x = base[..., ::xstep].detach().requires_grad_(True)
    w = tensor((O, C // g, k[0], k[1]), 2, 2.0 ** wlog2).requires_grad_(True)
    b = tensor((O,), 3, 0.5).requires_grad_(True) if bias else None
    y = torch.nn.functional.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g)
    r = tensor(tuple(y.shape), 4)
    (y * r).sum().backward()
    out[name + ".cfg"] = torch.tensor([N, C, H, W, O, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], g,
                                       bias, xstep, wlog2], dtype=torch.float32)
    out[name + ".y"] = y
    out[name + ".dx"] = x.grad
    out[name + ".dw"] = w.grad
    if bias:
        out[name + ".db"] = b.grad


path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/conv.safetensors"
write_f32(path, out, {"generator": "scripts/gen_conv_fixtures.py", "torch": torch.__version__})
print("wrote %s (%d tensors, %d configurations)" % (path, len(out), len(CONFIGS)))
