#!/usr/bin/python3
"""Golden values for nn.Linear, an MLP and torch.optim.SGD, written as
safetensors (by hand, following the spec) to tests/fixtures/nn_sgd.safetensors.

Run with Debian's torch:  /usr/bin/python3 scripts/gen_nn_fixtures.py
The C tests read the file with nabla's own safetensors reader, so this also
checks that files written outside nabla load.
"""
import json
import sys

import torch

from safetensors_io import write_f32

torch.manual_seed(1234)
torch.set_default_dtype(torch.float32)
out = {}

# ---- Linear: forward and the gradients of sum(y * R) ----------------------
lin = torch.nn.Linear(4, 3)
x = torch.randn(5, 4, requires_grad=True)
r = torch.randn(5, 3)
y = lin(x)
(y * r).sum().backward()
out.update({"linear.x": x, "linear.weight": lin.weight, "linear.bias": lin.bias,
            "linear.r": r, "linear.y": y, "linear.dx": x.grad,
            "linear.dweight": lin.weight.grad, "linear.dbias": lin.bias.grad})

# ---- SGD: 50 steps of an MLP on a fixed batch, several options -------------
def mlp():
    torch.manual_seed(7)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8),
                               torch.nn.ReLU(), torch.nn.Linear(8, 3))

data = torch.randn(16, 1, 2, 3)
labels = torch.randint(0, 3, (16,))
out["sgd.data"] = data
out["sgd.labels"] = labels.float()
for k, v in mlp().state_dict().items():
    out["sgd.init." + k] = v

CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.9, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "decay": dict(lr=0.05, momentum=0.5, weight_decay=0.01),
}
for name, cfg in CONFIGS.items():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), **cfg)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(data), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out["sgd.%s.losses" % name] = torch.tensor(losses)
    for k, v in model.state_dict().items():
        out["sgd.%s.final.%s" % (name, k)] = v


path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/nn_sgd.safetensors"
write_f32(path, out, {"generator": "scripts/gen_nn_fixtures.py",
                              "torch": torch.__version__,
                              "configs": json.dumps(CONFIGS)})
print("wrote", path, len(out), "tensors")
