#!/usr/bin/python3
"""Golden values for BatchNorm1d/2d, weight_norm and a ResNet BasicBlock,
written as safetensors to tests/fixtures/batchnorm.safetensors.

Run with Debian's torch:  /usr/bin/python3 scripts/gen_bn_fixtures.py
tests/test_batchnorm.c checks nabla against every tensor here. Torch computes
in float64 from inputs and parameters that are float32 values, so the golden
values are exact up to their final rounding (torch's own float32 kernels
differ from exact by up to ~1e-6 relative in BN's backward).

  bn.<cfg>.*       3 training steps (x<k>, r<k> -> y<k> and the gradients of
                   sum(y * r) for x, weight, bias), the running statistics
                   after them, then one evaluation step (xe, re -> ye, ...).
  wn.<cfg>.*       weight_norm(Linear or Conv2d): parameters, output y, dx and
                   grad.<name> (g, v, bias); metadata wn.<cfg>.keys holds
                   the state_dict names of nn.Sequential(weight_norm(layer)).
  block<s>.*       torchvision's BasicBlock (written out below: torchvision is
                   not a dependency) with stride s: init.<name> its state_dict
                   before, y/dx/grad.<name> from a training-mode forward,
                   after.<name> the buffers after it, ye an eval forward.
"""
import json
import sys

import torch
import torch.nn as nn

from safetensors_io import write_f32

torch.manual_seed(2024)
torch.set_default_dtype(torch.float64)


def rnd(*shape):
    """N(0, 1) values that are float32 numbers, as float64."""
    return torch.randn(*shape, dtype=torch.float32).double()


def f32(module):
    """Round a module's parameters and buffers to float32 values (kept float64)."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(t.float().double())
    return module

out = {}
meta = {"generator": "scripts/gen_bn_fixtures.py", "torch": torch.__version__}


def grads_of(prefix, model, x):
    for name, p in model.named_parameters():
        out["%s.grad.%s" % (prefix, name)] = p.grad.clone()
    out[prefix + ".dx"] = x.grad.clone()


# ---- BatchNorm ------------------------------------------------------------------
BN = {
    # name: (module, input shape, input scale, input shift)
    "bn1d": (lambda: nn.BatchNorm1d(5), (8, 5), 1.0, 0.0),
    "bn1d_seq": (lambda: nn.BatchNorm1d(3), (4, 3, 6), 2.0, -1.0),
    "bn1d_wide": (lambda: nn.BatchNorm1d(70, momentum=0.2), (6, 70), 1.0, 3.0),
    "bn1d_cma": (lambda: nn.BatchNorm1d(4, momentum=None), (6, 4), 1.0, 0.5),
    "bn2d": (lambda: nn.BatchNorm2d(4), (3, 4, 5, 5), 2.0, 1.0),
    "bn2d_plain": (lambda: nn.BatchNorm2d(3, eps=1e-3, momentum=0.3, affine=False), (2, 3, 4, 4), 0.5, 0.0),
}
for cfg, (make, shape, scale, shift) in BN.items():
    bn = make()
    if bn.affine:
        with torch.no_grad():
            bn.weight.copy_(1 + 0.5 * rnd(bn.num_features))
            bn.bias.copy_(0.5 * rnd(bn.num_features))
        f32(bn)
        out["bn.%s.weight" % cfg] = bn.weight.detach().clone()
        out["bn.%s.bias" % cfg] = bn.bias.detach().clone()
    pre = "bn." + cfg
    for k in ["0", "1", "2", "e"]:
        if k == "e":
            bn.eval()
        x = (rnd(*shape) * scale + shift).float().double().requires_grad_(True)
        r = rnd(*shape)
        bn.zero_grad()
        y = bn(x)
        (y * r).sum().backward()
        out["%s.x%s" % (pre, k)] = x.detach().clone()
        out["%s.r%s" % (pre, k)] = r
        out["%s.y%s" % (pre, k)] = y.detach().clone()
        out["%s.dx%s" % (pre, k)] = x.grad.clone()
        if bn.affine:
            out["%s.dweight%s" % (pre, k)] = bn.weight.grad.clone()
            out["%s.dbias%s" % (pre, k)] = bn.bias.grad.clone()
        if k == "2":
            out[pre + ".running_mean"] = bn.running_mean.clone()
            out[pre + ".running_var"] = bn.running_var.clone()
            out[pre + ".num_batches_tracked"] = bn.num_batches_tracked.float().clone()
    meta[pre + ".config"] = repr(bn)

# ---- weight_norm ---------------------------------------------------------------------
WN = {
    "linear": (lambda: nn.Linear(4, 3), 0, (5, 4)),
    "linear_dim1": (lambda: nn.Linear(4, 3), 1, (5, 4)),
    "linear_all": (lambda: nn.Linear(4, 3), None, (5, 4)),
    "conv": (lambda: nn.Conv2d(2, 3, 3, padding=1), 0, (2, 2, 5, 5)),
}
for cfg, (make, dim, xshape) in WN.items():
    layer = f32(make())
    pre = "wn." + cfg
    out[pre + ".weight"] = layer.weight.detach().clone()   # before: g, v come from it
    seq = nn.Sequential(nn.utils.weight_norm(layer, dim=dim))
    meta[pre + ".keys"] = json.dumps(list(seq.state_dict().keys()))
    out[pre + ".g_init"] = layer.weight_g.detach().clone()
    with torch.no_grad():   # move g away from ||v|| so w != v
        layer.weight_g.mul_(1 + 0.5 * torch.rand_like(layer.weight_g))
    f32(layer)
    for name, t in seq.state_dict().items():
        out["%s.%s" % (pre, name)] = t.clone()
    x = rnd(*xshape).requires_grad_(True)
    y = seq(x)
    r = rnd(*y.shape)
    (y * r).sum().backward()
    out[pre + ".x"] = x.detach().clone()
    out[pre + ".r"] = r
    out[pre + ".y"] = y.detach().clone()
    grads_of(pre, seq, x)


# ---- torchvision's BasicBlock --------------------------------------------------------
def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=3, stride=stride, padding=1, groups=1, bias=False, dilation=1)


def conv1x1(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


def block(inplanes, planes, stride):
    ds = None
    if stride != 1 or inplanes != planes:   # torchvision's _make_layer
        ds = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    return BasicBlock(inplanes, planes, stride, ds)


for stride, (cin, cout) in [(1, (4, 4)), (2, (4, 8))]:
    m = block(cin, cout, stride)
    with torch.no_grad():   # non-trivial BN state so every term matters
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.copy_(1 + 0.3 * rnd(mod.num_features))
                mod.bias.copy_(0.3 * rnd(mod.num_features))
                mod.running_mean.copy_(0.2 * rnd(mod.num_features))
                mod.running_var.copy_(1 + 0.5 * torch.rand(mod.num_features))
    f32(m)
    pre = "block%d" % stride
    meta[pre + ".keys"] = json.dumps(list(m.state_dict().keys()))
    for name, t in m.state_dict().items():
        out["%s.init.%s" % (pre, name)] = t.float().clone()
    x = rnd(2, cin, 8, 8).requires_grad_(True)
    y = m(x)
    r = rnd(*y.shape)
    (y * r).sum().backward()
    out[pre + ".x"] = x.detach().clone()
    out[pre + ".r"] = r
    out[pre + ".y"] = y.detach().clone()
    out[pre + ".dx"] = x.grad.clone()
    for name, p in m.named_parameters():
        out["%s.grad.%s" % (pre, name)] = p.grad.clone()
    for name, b in m.named_buffers():
        out["%s.after.%s" % (pre, name)] = b.float().clone()
    m.eval()
    with torch.no_grad():
        out[pre + ".ye"] = m(x).clone()


path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/batchnorm.safetensors"
write_f32(path, out, meta)
print("wrote", path, len(out), "tensors")
