#!/usr/bin/python3
"""Golden values of the activations and losses, from PyTorch, for
tests/test_golden.c. Writes tests/fixtures/golden.txt.

Run with Debian's torch:  /usr/bin/python3 scripts/gen_fixtures.py
The output is deterministic (torch.manual_seed, float32, one thread), so
running it again gives the same file; the C tests never need Python.

File format (plain text, one record per line, fields separated by spaces):

    # comment
    case NAME                          starts a case; NAME is FAMILY.VARIANT
    tensor KEY NDIM D0 ... V0 V1 ...   a float tensor: NDIM, the NDIM sizes,
                                       then the values row-major ('%.9g', so a
                                       float32 reads back exactly)
    int KEY N V0 ... V(N-1)            N integers
    float KEY V                        one number
    end                                closes the case

Keys: inputs `x` (activations), `input`, `target`, `weight`; options
`axis`, `slope`, `reduction` (0 mean, 1 sum, 2 none, 3 batchmean, as
nb_reduction), `ignore_index`, `log_target`, `p`, `margin`; results `y` or
`out` (forward), `dx`, `dinput`, `dtarget` (gradients). When a case has `r`,
the gradients are those of sum(out * r); otherwise of the scalar loss itself.
"""
import os
import sys
import warnings

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")  # torch warns about broadcasting in mse/l1
torch.manual_seed(20240607)
torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

RED = {"mean": 0, "sum": 1, "none": 2, "batchmean": 3}
lines = []


def fmt(v):
    return "%.9g" % v


def put_tensor(key, t):
    t = t.detach().to(torch.float32).contiguous()
    vals = " ".join(fmt(v) for v in t.reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    lines.append(" ".join(s for s in ("tensor", key, str(t.dim()), dims, vals) if s))


def put_int(key, vals):
    vals = [int(v) for v in vals]
    lines.append(" ".join(["int", key, str(len(vals))] + [str(v) for v in vals]))


def case(name, **items):
    lines.append("case " + name)
    for k, v in items.items():
        if isinstance(v, torch.Tensor):
            put_tensor(k, v)
        elif isinstance(v, (list, tuple)):
            put_int(k, v)
        elif isinstance(v, bool) or isinstance(v, int):
            put_int(k, [v])
        else:
            lines.append("float %s %s" % (k, fmt(v)))
    lines.append("end")


def leaf(t):
    return t.detach().clone().requires_grad_(True)


# ---- activations: y = f(x), dx of sum(y * r) ------------------------------
def activation(name, fn, x, **opts):
    x = leaf(x)
    y = fn(x)
    r = torch.randn(y.shape)
    (y * r).sum().backward()
    case(name, x=x, **opts, r=r, y=y, dx=x.grad)


def with_zeros(shape, idx):
    x = torch.randn(shape)
    x.view(-1)[idx] = 0.0
    return x


activation("sigmoid.basic", torch.sigmoid, torch.randn(3, 5) * 3)
activation("sigmoid.extreme", torch.sigmoid,
           torch.tensor([-100.0, -30.0, -10.0, -1e-3, 0.0, 1e-3, 10.0, 30.0, 100.0]))
activation("tanh.basic", torch.tanh, torch.randn(3, 5) * 2)
activation("tanh.extreme", torch.tanh, torch.tensor([-50.0, -10.0, -1.0, 0.0, 1e-4, 1.0, 10.0, 50.0]))
activation("relu.basic", F.relu, with_zeros((4, 5), [0, 7, 8, 19]))
activation("relu.scalar_zero", F.relu, torch.tensor(0.0))
activation("leaky_relu.default", lambda x: F.leaky_relu(x, 0.01), with_zeros((4, 5), [1, 6, 13]),
           slope=0.01)
activation("leaky_relu.slope02", lambda x: F.leaky_relu(x, 0.2), with_zeros((3, 4), [0, 5]),
           slope=0.2)

for fam, fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
    activation(fam + ".last_2d", lambda x: fn(x, dim=1), torch.randn(4, 6) * 2, axis=1)
    activation(fam + ".axis0_3d", lambda x: fn(x, dim=0), torch.randn(3, 4, 5), axis=0)
    activation(fam + ".axis1_3d", lambda x: fn(x, dim=1), torch.randn(3, 4, 5), axis=1)
    activation(fam + ".axis_neg1_3d", lambda x: fn(x, dim=-1), torch.randn(2, 3, 4), axis=-1)
    activation(fam + ".axis2_4d", lambda x: fn(x, dim=2), torch.randn(2, 3, 4, 2), axis=2)
    activation(fam + ".axis0_wide", lambda x: fn(x, dim=0), torch.randn(3, 70), axis=0)
    activation(fam + ".big", lambda x: fn(x, dim=0), torch.tensor([1000.0, 1.0]), axis=0)
    activation(fam + ".big_rows", lambda x: fn(x, dim=-1),
               torch.tensor([[1000.0, 1.0, -1000.0], [-50.0, 80.0, 79.0]]), axis=-1)


# ---- pointwise losses -----------------------------------------------------
def pointwise(name, fn, inp, tgt, red, target_grad=False, **opts):
    inp = leaf(inp)
    tgt = leaf(tgt) if target_grad else tgt.detach().clone()
    kw = {"reduction": red}
    out = fn(inp, tgt, **kw)
    items = dict(input=inp, target=tgt, reduction=RED[red], **opts)
    if out.dim() > 0 or red == "none":
        r = torch.randn(out.shape)
        (out * r).sum().backward()
        items["r"] = r
    else:
        out.backward()
    items.update(out=out, dinput=inp.grad)
    if target_grad:
        items["dtarget"] = tgt.grad
    case(name, **items)


for red in ("mean", "sum", "none"):
    pointwise("mse." + red, F.mse_loss, torch.randn(4, 5), torch.randn(4, 5), red, True)
pointwise("mse.broadcast", F.mse_loss, torch.randn(4, 3), torch.randn(3), "mean", True)
pointwise("mse.broadcast_none", F.mse_loss, torch.randn(4, 1), torch.randn(1, 3), "none", True)

for red in ("mean", "sum", "none"):
    a = torch.randn(4, 5)
    b = torch.randn(4, 5)
    b.view(-1)[[2, 11]] = a.view(-1)[[2, 11]]  # exact ties: sign(0) = 0
    pointwise("l1." + red, F.l1_loss, a, b, red, True)
pointwise("l1.broadcast", F.l1_loss, torch.randn(2, 3, 4), torch.randn(3, 1), "sum", True)

for red in ("mean", "sum", "none"):
    pointwise("bce." + red, F.binary_cross_entropy, torch.sigmoid(torch.randn(3, 4) * 2),
              torch.rand(3, 4), red)
# probabilities at exactly 0 and 1: logs clamp at -100, gradient over max(x(1-x), 1e-12)
pointwise("bce.edges", F.binary_cross_entropy,
          torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 1e-30]),
          torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 0.3, 0.25, 1.0]), "sum")

for red in ("mean", "sum", "none"):
    pointwise("bcewl." + red, F.binary_cross_entropy_with_logits, torch.randn(3, 4) * 3,
              torch.rand(3, 4), red)
pointwise("bcewl.extreme", F.binary_cross_entropy_with_logits,
          torch.tensor([100.0, -100.0, 100.0, -100.0, 100.0, -100.0, 0.0, 30.0]),
          torch.tensor([1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0]), "none")


def kl(log_target):
    return lambda i, t, reduction: F.kl_div(i, t, reduction=reduction, log_target=log_target)


kl_in = F.log_softmax(torch.randn(3, 5), dim=1)
kl_t = F.softmax(torch.randn(3, 5) * 2, dim=1)
kl_t0 = kl_t.clone()
kl_t0[0, 1] = 0.0
kl_t0[2, 4] = 0.0
for red in ("mean", "sum", "none", "batchmean"):
    pointwise("kl." + red, kl(False), kl_in, kl_t0, red, log_target=0)
    pointwise("kl.log_target_" + red, kl(True), kl_in, F.log_softmax(torch.randn(3, 5), dim=1),
              red, log_target=1)
pointwise("kl.batchmean_3d", kl(False), F.log_softmax(torch.randn(2, 3, 4), dim=1),
          F.softmax(torch.randn(2, 3, 4), dim=1), "batchmean", log_target=0)


def hinge(i, t, reduction):
    # the notes' binary hinge; relu's gradient is 0 at the kink, like nabla's
    l = F.relu(1 - t * i)
    return {"mean": l.mean, "sum": l.sum, "none": lambda: l}[reduction]()


def away_from_kink(x, y):
    m = 1 - y * x
    bump = torch.where(m.abs() < 0.1, 0.3 * y, torch.zeros_like(x))
    return x - bump  # moves margin m by +0.3 (y * y = 1)


for red in ("mean", "sum", "none"):
    y = torch.randint(0, 2, (4, 5)).float() * 2 - 1
    x = away_from_kink(torch.randn(4, 5) * 1.5, y)
    pointwise("hinge." + red, hinge, x, y, red)


# ---- cross_entropy --------------------------------------------------------
def cross_entropy(name, logits, target, red, weight=None, ignore_index=-100):
    logits = leaf(logits)
    out = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction=red)
    items = dict(input=logits, target=target.reshape(-1).tolist(), reduction=RED[red],
                 ignore_index=ignore_index)
    if weight is not None:
        items["weight"] = weight
    if red == "none":
        r = torch.randn(out.shape)
        (out * r).sum().backward()
        items["r"] = r
    else:
        out.backward()
    items.update(out=out, dinput=logits.grad)
    case(name, **items)


w4 = torch.rand(4) + 0.5
for red in ("mean", "sum", "none"):
    cross_entropy("ce." + red, torch.randn(5, 4) * 2, torch.randint(0, 4, (5,)), red)
    cross_entropy("ce.weight_" + red, torch.randn(6, 4) * 2, torch.randint(0, 4, (6,)), red, weight=w4)
t_ign = torch.tensor([0, -100, 3, 2, -100, 1])
cross_entropy("ce.ignore_mean", torch.randn(6, 4), t_ign, "mean")
cross_entropy("ce.ignore_weight_mean", torch.randn(6, 4), t_ign, "mean", weight=w4)
cross_entropy("ce.ignore_index1_weight_sum", torch.randn(6, 4), torch.tensor([1, 0, 1, 3, 2, 1]),
              "sum", weight=w4, ignore_index=1)
cross_entropy("ce.spatial_mean", torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5)), "mean")
t_sp = torch.randint(0, 4, (2, 3))
t_sp[0, 1] = -100
t_sp[1, 2] = -100
cross_entropy("ce.spatial_weight_ignore_none", torch.randn(2, 4, 3), t_sp, "none", weight=w4)
cross_entropy("ce.spatial_weight_ignore_mean", torch.randn(2, 4, 3), t_sp, "mean", weight=w4)
cross_entropy("ce.spatial_wide_sum", torch.randn(2, 3, 70), torch.randint(0, 3, (2, 70)), "sum")
cross_entropy("ce.large_logits", torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 999.0],
                                               [-1000.0, -1000.0, -999.0]]),
              torch.tensor([1, 2, 2]), "mean")
cross_entropy("ce.unbatched", torch.randn(5), torch.tensor(3), "none")


# ---- multi_margin_loss -----------------------------------------------------
def multi_margin(name, x, target, p, margin, red, weight=None):
    x = leaf(x)
    out = F.multi_margin_loss(x, target, p=p, margin=margin, weight=weight, reduction=red)
    items = dict(input=x, target=target.reshape(-1).tolist(), p=p, margin=margin, reduction=RED[red])
    if weight is not None:
        items["weight"] = weight
    if red == "none":
        r = torch.randn(out.shape)
        (out * r).sum().backward()
        items["r"] = r
    else:
        out.backward()
    items.update(out=out, dinput=x.grad)
    case(name, **items)


w5 = torch.rand(5) + 0.5
multi_margin("mm.p1_mean", torch.randn(6, 5), torch.randint(0, 5, (6,)), 1, 1.0, "mean")
multi_margin("mm.p2_sum", torch.randn(6, 5), torch.randint(0, 5, (6,)), 2, 1.0, "sum")
multi_margin("mm.p1_none", torch.randn(6, 5), torch.randint(0, 5, (6,)), 1, 1.0, "none")
multi_margin("mm.p1_weight_none", torch.randn(6, 5), torch.randint(0, 5, (6,)), 1, 1.0, "none", w5)
multi_margin("mm.p2_weight_mean", torch.randn(6, 5), torch.randint(0, 5, (6,)), 2, 1.0, "mean", w5)
multi_margin("mm.p1_margin05_sum", torch.randn(6, 5), torch.randint(0, 5, (6,)), 1, 0.5, "sum")
multi_margin("mm.p2_margin2_weight_sum", torch.randn(4, 3), torch.randint(0, 3, (4,)), 2, 2.0, "sum", torch.rand(3) + 0.5)
multi_margin("mm.unbatched", torch.randn(5), torch.tensor(2), 1, 1.0, "none")

# ---- write ------------------------------------------------------------------
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
path = os.path.join(root, "tests", "fixtures", "golden.txt")
header = [
    "# golden.txt: PyTorch %s reference values for tests/test_golden.c." % torch.__version__,
    "# Generated by scripts/gen_fixtures.py; do not edit (run the script again).",
    "# Records, one per line, space-separated:",
    "#   case NAME                        (NAME = FAMILY.VARIANT)",
    "#   tensor KEY NDIM D0 .. V0 V1 ..   (float32 values row-major, %.9g)",
    "#   int KEY N V0 .. V(N-1)",
    "#   float KEY V",
    "#   end",
    "# Gradients are of sum(out * r) when the case has r, else of the scalar loss.",
]
with open(path, "w") as f:
    f.write("\n".join(header + lines) + "\n")
print("wrote %s (%d bytes, %d cases)" % (path, os.path.getsize(path),
                                         sum(1 for l in lines if l.startswith("case "))),
      file=sys.stderr)
