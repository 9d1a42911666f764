#!/usr/bin/python3
"""Golden trajectories of torch.optim (SGD, RMSprop, Adagrad, Adam, AdamW and
parameter groups) written as safetensors to tests/fixtures/optim.safetensors.

Run with Debian's torch:  /usr/bin/python3 scripts/gen_optim_fixtures.py

The problem: the MLP 6-8-3 (Flatten, Linear, ReLU, Linear) with cross-entropy
on a fixed batch of 16, 50 full-batch steps per case. The reference runs in
float64 (weights and data are float32 values, exact in float64; the
hyperparameters are the same decimal numbers as the C test's doubles), so it
is the exact trajectory up to float64 rounding, and nabla's float32 run is
measured against it. The same cases are also run in float32 with torch, and
how far torch's own float32 trajectory lands from the float64 one is stored in
the metadata ("torch_f32_error") to show what float32 allows.

Stored (all F32): optim.data (16,1,2,3), optim.labels (16), optim.init.<param>;
per case <case>.losses (50, the loss before each step), <case>.step1.<param>
(weights after the first step) and <case>.final.<param> (after 50 steps).
"""
import json
import sys

import torch

from safetensors_io import write_f32

STEPS = 50
O = torch.optim
F = dict(foreach=False)   # torch 1.13's single-tensor code (the CPU default)

# name: (class, group-0 kwargs, extra groups as (param-name filter, kwargs))
BIAS = "bias"
CASES = {
    "sgd_plain": (O.SGD, dict(lr=0.1), []),
    "sgd_momentum": (O.SGD, dict(lr=0.05, momentum=0.9), []),
    "sgd_nesterov": (O.SGD, dict(lr=0.05, momentum=0.9, nesterov=True), []),
    "sgd_dampening": (O.SGD, dict(lr=0.05, momentum=0.9, dampening=0.3), []),
    "sgd_weight_decay": (O.SGD, dict(lr=0.05, momentum=0.5, weight_decay=0.01), []),
    "rmsprop_default": (O.RMSprop, dict(), []),
    "rmsprop_centered": (O.RMSprop, dict(lr=0.01, centered=True), []),
    "rmsprop_momentum": (O.RMSprop, dict(lr=0.001, momentum=0.9), []),
    "rmsprop_centered_momentum": (O.RMSprop, dict(lr=0.001, momentum=0.5, centered=True, alpha=0.9), []),
    "rmsprop_weight_decay": (O.RMSprop, dict(lr=0.01, weight_decay=0.01), []),
    "adagrad_default": (O.Adagrad, dict(), []),
    "adagrad_lr_decay": (O.Adagrad, dict(lr=0.1, lr_decay=0.05), []),
    "adagrad_initial_accumulator": (O.Adagrad, dict(lr=0.1, initial_accumulator_value=0.1), []),
    "adagrad_weight_decay": (O.Adagrad, dict(lr=0.1, weight_decay=0.01), []),
    "adam_default": (O.Adam, dict(), []),
    "adam_amsgrad": (O.Adam, dict(lr=0.01, amsgrad=True), []),
    "adam_weight_decay": (O.Adam, dict(lr=0.01, weight_decay=0.01), []),
    "adam_betas": (O.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6), []),
    "adamw_default": (O.AdamW, dict(), []),
    "adamw_amsgrad": (O.AdamW, dict(lr=0.01, weight_decay=0.05, amsgrad=True), []),
    # two groups: biases without weight decay and with another lr
    "groups_sgd": (O.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01),
                   [(BIAS, dict(lr=0.1, weight_decay=0.0))]),
    "groups_adamw": (O.AdamW, dict(lr=0.01, weight_decay=0.1),
                     [(BIAS, dict(lr=0.005, weight_decay=0.0))]),
    # torch 1.13 starts every sum at the constructor's initial_accumulator_value
    # (0.1 here) and ignores the group's 0.5; nabla does the same
    "groups_adagrad": (O.Adagrad, dict(lr=0.05, initial_accumulator_value=0.1),
                       [(BIAS, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.5))]),
}


def mlp(dtype):
    torch.manual_seed(7)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8),
                            torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return m.to(dtype)


torch.manual_seed(1234)
data32 = torch.randn(16, 1, 2, 3)
labels = torch.randint(0, 3, (16,))
init = {k: v.clone() for k, v in mlp(torch.float32).state_dict().items()}


def run(case, dtype):
    cls, kw, extra = CASES[case]
    model = mlp(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in init.items()})
    named = list(model.named_parameters())
    taken = set()
    groups = []
    for filt, gkw in extra:
        ps = [p for n, p in named if filt in n]
        taken.update(id(p) for p in ps)
        groups.append(dict(params=ps, **gkw))
    groups.insert(0, dict(params=[p for _, p in named if id(p) not in taken]))
    opt = cls(groups, **kw, **F)
    x = data32.to(dtype)
    losses, step1 = [], None
    for step in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step == 0:
            step1 = {k: v.clone() for k, v in model.state_dict().items()}
    return torch.tensor(losses, dtype=torch.float64), step1, model.state_dict()


def rel_err(a, b, floor):
    """max |a - b| / max(|b|, floor), in float64"""
    a, b = a.double(), b.double()
    return ((a - b).abs() / b.abs().clamp(min=floor)).max().item()


out = {"optim.data": data32, "optim.labels": labels.float()}
for k, v in init.items():
    out["optim.init." + k] = v
errors = {}
for case in CASES:
    losses, step1, final = run(case, torch.float64)
    out[case + ".losses"] = losses
    for k in final:
        out["%s.step1.%s" % (case, k)] = step1[k]
        out["%s.final.%s" % (case, k)] = final[k]
    l32, s32, f32 = run(case, torch.float32)
    errors[case] = {
        "loss": rel_err(l32, losses, 1e-30),
        "step1": max(rel_err(s32[k], step1[k], 1e-2) for k in final),
        "final": max(rel_err(f32[k], final[k], 1e-2) for k in final),
    }
    print("%-28s torch float32 vs float64: loss %.2e  step1 %.2e  final %.2e  (loss %.4f -> %.4f)" % (
        case, errors[case]["loss"], errors[case]["step1"], errors[case]["final"], losses[0], losses[-1]))


cases_meta = {c: {"optimizer": cls.__name__, "group0": kw,
                  "groups": [{"params with": f, **g} for f, g in extra]}
              for c, (cls, kw, extra) in CASES.items()}
path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/optim.safetensors"
write_f32(path, out, {"generator": "scripts/gen_optim_fixtures.py",
                              "torch": torch.__version__,
                              "reference": "float64",
                              "rel_err": "max |a - b| / max(|b|, 0.01) over weights; losses plain relative",
                              "cases": json.dumps(cases_meta),
                              "torch_f32_error": json.dumps(errors)})
print("wrote", path, len(out), "tensors")
