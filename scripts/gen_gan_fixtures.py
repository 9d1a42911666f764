#!/usr/bin/python3
"""Golden values for the GAN building blocks from PyTorch, written as
safetensors (read by tests/test_convt.c):

  tests/fixtures/convt.safetensors     nb_conv_transpose2d
  tests/fixtures/instnorm.safetensors  nb_instance_norm / InstanceNorm2d

Run with Debian's torch:  /usr/bin/python3 scripts/gen_gan_fixtures.py

convt: for every configuration NAME
  NAME.cfg  20 numbers: N Cin H W Cout kh kw stride_h stride_w pad_h pad_w
            outpad_h outpad_w dil_h dil_w groups bias xstep scale_w_log2 0
  NAME.y    torch.nn.functional.conv_transpose2d(x, w, b, ...)
  NAME.dx, NAME.dw, NAME.db (if bias)   gradients of sum(y * r)
instnorm: for every configuration NAME
  NAME.cfg  6 numbers: N C H W affine transposed
  NAME.y, NAME.dx, NAME.dw and NAME.db (if affine)   as above, eps 1e-5
The inputs are not stored: x, w, b and r come from a 32-bit integer hash of
the element index (hashed(), mirrored in the C test), exact in float32, so
both sides start from the same bits. convt's x is a view base[..., ::xstep]
of a (N, Cin, H, W*xstep) tensor; instnorm's x with transposed = 1 is
base.transpose(2, 3) of a (N, C, W, H) tensor: both check strided inputs.
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F

from hashed_tensors import tensor
from safetensors_io import write_f32

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)


# name: N, Cin, H, W, Cout, (kh, kw), stride, padding, output_padding, dilation, groups, bias, xstep
CONVT = {
    "basic":      (2, 3, 5, 6, 4, (3, 3), (1, 1), (0, 0), (0, 0), (1, 1), 1, 1, 1),
    "dcgan":      (2, 8, 7, 7, 4, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1, 0, 1),
    "dcgan_proj": (3, 16, 1, 1, 8, (7, 7), (1, 1), (0, 0), (0, 0), (1, 1), 1, 0, 1),
    "outpad":     (2, 4, 4, 5, 3, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1, 1, 1),
    "outpad_dil": (1, 3, 5, 4, 2, (3, 2), (1, 1), (0, 1), (1, 1), (2, 2), 1, 1, 1),
    "rect_s32":   (2, 3, 4, 6, 5, (2, 3), (3, 2), (1, 0), (2, 1), (1, 2), 1, 1, 1),
    "groups2":    (2, 4, 5, 5, 6, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 2, 1, 1),
    "depthwise":  (2, 4, 6, 6, 4, (3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 4, 1, 1),
    "strided_x":  (2, 3, 5, 5, 4, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1, 1, 2),
    "big_pad":    (1, 2, 8, 8, 3, (3, 3), (1, 1), (3, 2), (0, 0), (1, 1), 1, 1, 1),
    "wide":       (2, 16, 7, 7, 32, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1, 1, 1),
    # K*W above the 256K-float column tile: one input row per tile
    "tiled":      (1, 4, 3, 520, 8, (2, 32), (1, 1), (0, 0), (0, 0), (1, 1), 1, 1, 1),
}

# name: N, C, H, W, affine, transposed
INSTNORM = {
    "plain":      (2, 3, 5, 6, 0, 0),
    "affine":     (3, 4, 7, 7, 1, 0),
    "transposed": (2, 3, 4, 6, 1, 1),
    "big":        (2, 8, 14, 14, 1, 0),
}


def convt_fixtures():
    out = {}
    for name, (N, C, H, W, O, k, s, p, op, d, g, bias, xstep) in CONVT.items():
        fan = O // g * k[0] * k[1]
        # weights scaled by a power of two near 1/sqrt(fan): exact in float32
        wlog2 = -int(round(np.log2(np.sqrt(fan))))
        base = tensor((N, C, H, W * xstep), 1)
        x = base[..., ::xstep].detach().requires_grad_(True)
        w = tensor((C, O // g, k[0], k[1]), 2, 2.0 ** wlog2).requires_grad_(True)
        b = tensor((O,), 3, 0.5).requires_grad_(True) if bias else None
        y = F.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op, groups=g, dilation=d)
        r = tensor(tuple(y.shape), 4)
        (y * r).sum().backward()
        out[name + ".cfg"] = torch.tensor([N, C, H, W, O, k[0], k[1], s[0], s[1], p[0], p[1], op[0], op[1],
                                           d[0], d[1], g, bias, xstep, wlog2, 0], dtype=torch.float32)
        out[name + ".y"] = y
        out[name + ".dx"] = x.grad
        out[name + ".dw"] = w.grad
        if bias:
            out[name + ".db"] = b.grad
    return out


def instnorm_fixtures():
    out = {}
    for name, (N, C, H, W, affine, transposed) in INSTNORM.items():
        # a shifted, scaled input: the statistics matter
        base = tensor((N, C, W, H) if transposed else (N, C, H, W), 1, 2.0) + 0.75
        x = (base.transpose(2, 3) if transposed else base).detach().requires_grad_(True)
        w = (tensor((C,), 2, 0.5) + 1.0).requires_grad_(True) if affine else None
        b = tensor((C,), 3, 0.5).requires_grad_(True) if affine else None
        y = F.instance_norm(x, weight=w, bias=b, eps=1e-5)
        r = tensor(tuple(y.shape), 4)
        (y * r).sum().backward()
        out[name + ".cfg"] = torch.tensor([N, C, H, W, affine, transposed], dtype=torch.float32)
        out[name + ".y"] = y
        out[name + ".dx"] = x.grad
        if affine:
            out[name + ".dw"] = w.grad
            out[name + ".db"] = b.grad
    return out


fixtures = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
meta = {"generator": "scripts/gen_gan_fixtures.py", "torch": torch.__version__}
for file, make, configs in (("convt", convt_fixtures, CONVT), ("instnorm", instnorm_fixtures, INSTNORM)):
    tensors = make()
    path = "%s/%s.safetensors" % (fixtures, file)
    write_f32(path, tensors, meta)
    print("wrote %s (%d tensors, %d configurations)" % (path, len(tensors), len(configs)))
