#!/usr/bin/python3
"""Golden learning rates of torch.optim.lr_scheduler and golden gradients of
torch.nn.utils.clip_grad_norm_ / clip_grad_value_, written as safetensors to
tests/fixtures/schedule.safetensors.

Run with Debian's torch:  /usr/bin/python3 scripts/gen_schedule_fixtures.py

Schedules: an SGD optimizer with two parameter groups (lr 0.1 and 0.025);
each case makes its scheduler, then 40 times calls optimizer.step() and
scheduler.step() (or scheduler.step(metric) for ReduceLROnPlateau). Stored:
<case>.lrs (41, 2): both groups' lrs after creation and after each step, as
float32, and <case>.lrs_lo, the float32 rounding of what float32 lost, so
lrs + lrs_lo in double is torch's double to about 1e-14 relative. A
case with "halve_after" k halves both lrs by hand after step k (what the
recursive form of torch's schedulers must carry on from). Plateau cases read
the metrics schedule.loss or schedule.acc (40 values, float32 numbers, so
the C test feeds the same doubles). The nabla spec of each case is in the
metadata ("cases"); tests/test_schedule.c holds the same table.

Clipping: a model of float32 gradients (clip.grad.<param>, the frozen
parameter's and the buffer's included, which clipping must leave alone);
torch clips the trainable ones in float64 (the exact result up to float64
rounding), stored per case as clip.<case>.total (the norm before clipping)
and clip.<case>.<param> (the clipped gradients).
"""
import json
import math
import sys

import torch

from safetensors_io import write_f32

S = torch.optim.lr_scheduler
STEPS = 40
BASE_LRS = (0.1, 0.025)


def seq(warmup, start_factor, make):
    """SequentialLR([LinearLR warm-up, make(opt)], milestones=[warmup])"""
    return lambda opt: S.SequentialLR(opt, [S.LinearLR(opt, start_factor, 1.0, warmup), make(opt)], [warmup])


def constant(opt):
    return S.ConstantLR(opt, factor=1.0, total_iters=0)


# name: (nabla spec, total steps given to nb_schedule_parse, torch factory, halve_after, metrics)
CASES = {
    "constant": ("constant", 0, constant, None, None),
    "step_3": ("step:3:0.5", 0, lambda o: S.StepLR(o, 3, 0.5), None, None),
    "step_10": ("step:10", 0, lambda o: S.StepLR(o, 10), None, None),
    "step_halved": ("step:4:0.5", 0, lambda o: S.StepLR(o, 4, 0.5), 9, None),
    "multistep": ("multistep:4,10,10,25:0.3", 0, lambda o: S.MultiStepLR(o, [4, 10, 10, 25], 0.3), None, None),
    "multistep_0": ("multistep:0,7:0.5", 0, lambda o: S.MultiStepLR(o, [0, 7], 0.5), None, None),
    "exp": ("exp:0.95", 0, lambda o: S.ExponentialLR(o, 0.95), None, None),
    "exp_fast": ("exp:0.7", 0, lambda o: S.ExponentialLR(o, 0.7), None, None),
    "cosine": ("cosine", 40, lambda o: S.CosineAnnealingLR(o, 40), None, None),
    "cosine_periods": ("cosine:10:0.001", 0, lambda o: S.CosineAnnealingLR(o, 10, 0.001), None, None),
    "cosine_eta_above": ("cosine:7:0.03", 0, lambda o: S.CosineAnnealingLR(o, 7, 0.03), None, None),
    "cosine_halved": ("cosine:15:0.001", 0, lambda o: S.CosineAnnealingLR(o, 15, 0.001), 12, None),
    "linear": ("linear", 0, lambda o: S.LinearLR(o), None, None),
    "linear_warm": ("linear:0.1:10", 0, lambda o: S.LinearLR(o, 0.1, 1.0, 10), None, None),
    "linear_decay": ("linear:1:30:0.2", 0, lambda o: S.LinearLR(o, 1.0, 0.2, 30), None, None),
    "warmup_cosine": ("warmup:5:0.1+cosine", 40, seq(5, 0.1, lambda o: S.CosineAnnealingLR(o, 35)), None, None),
    "warmup_step": ("warmup:3+step:5:0.5", 0, seq(3, 1.0 / 3, lambda o: S.StepLR(o, 5, 0.5)), None, None),
    "warmup_multistep": ("warmup:4:0.25+multistep:10,20:0.1", 0,
                         seq(4, 0.25, lambda o: S.MultiStepLR(o, [10, 20], 0.1)), None, None),
    "warmup_multistep_0": ("warmup:3+multistep:0,5:0.5", 0,
                           seq(3, 1.0 / 3, lambda o: S.MultiStepLR(o, [0, 5], 0.5)), None, None),
    "warmup_exp": ("warmup:2:0.5+exp:0.9", 0, seq(2, 0.5, lambda o: S.ExponentialLR(o, 0.9)), None, None),
    "warmup_linear": ("warmup:6:0.2+linear:1:20:0.1", 0,
                      seq(6, 0.2, lambda o: S.LinearLR(o, 1.0, 0.1, 20)), None, None),
    "warmup_constant": ("warmup:3", 0, seq(3, 1.0 / 3, constant), None, None),
    "warmup_cosine_halved": ("warmup:4:0.1+cosine:12", 0, seq(4, 0.1, lambda o: S.CosineAnnealingLR(o, 12)),
                             20, None),
    "plateau_min": ("plateau:0.5:2", 0, lambda o: S.ReduceLROnPlateau(o, "min", 0.5, 2), None, "loss"),
    "plateau_max": ("plateau:0.5:3:mode=max:threshold=0.01:cooldown=2:min_lr=0.004", 0,
                    lambda o: S.ReduceLROnPlateau(o, "max", 0.5, 3, threshold=0.01, cooldown=2, min_lr=0.004),
                    None, "acc"),
    "plateau_min_abs": ("plateau:0.1:1:threshold_mode=abs:threshold=0.05:eps=0.001", 0,
                        lambda o: S.ReduceLROnPlateau(o, "min", 0.1, 1, threshold=0.05, threshold_mode="abs",
                                                      eps=0.001), None, "loss"),
    "plateau_max_abs": ("plateau:0.5:0:max:0:abs:1", 0,
                        lambda o: S.ReduceLROnPlateau(o, "max", 0.5, 0, threshold=0.0, threshold_mode="abs",
                                                      cooldown=1), None, "acc"),
}


def metrics():
    """A validation loss that falls with noise and stalls, and an accuracy
    from it; float32 numbers (as the C test reads them)."""
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(STEPS, generator=g, dtype=torch.float64)
    i = torch.arange(STEPS, dtype=torch.float64)
    loss = 0.4 + 1.6 * torch.exp(-i / 6) + 0.04 * noise
    loss[15:22] = loss[15]          # a flat stretch
    loss = loss.float()
    acc = (1 - loss / 3).float()
    return {"loss": loss, "acc": acc}


def run_schedule(case, mets):
    _, _, make, halve_after, metric = CASES[case]
    params = [torch.zeros(2, requires_grad=True) for _ in BASE_LRS]
    opt = torch.optim.SGD([dict(params=[p], lr=lr) for p, lr in zip(params, BASE_LRS)], lr=BASE_LRS[0])
    sched = make(opt)
    lrs = [[g["lr"] for g in opt.param_groups]]
    for step in range(STEPS):
        opt.step()                  # no gradients: nothing moves, but torch sees the order it expects
        if metric:
            sched.step(mets[metric][step].item())
        else:
            sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        if halve_after == step + 1:
            for g in opt.param_groups:
                g["lr"] *= 0.5
    return torch.tensor(lrs, dtype=torch.float64)


# ---- clipping ----

# name, shape, kind ("param", "frozen": requires_grad off, "buffer")
CLIP_PARAMS = [("fc1.weight", (5, 4), "param"), ("fc1.bias", (5,), "param"),
               ("frozen.weight", (3, 3), "frozen"), ("bn.running_mean", (5,), "buffer"),
               ("fc2.weight", (3, 5), "param"), ("fc2.bias", (3,), "param"), ("scale", (), "param")]
# name: (function, max_norm or clip_value, norm_type)
CLIP_CASES = {
    "norm2": ("norm", 1.0, 2.0),
    "norm2_below": ("norm", 100.0, 2.0),
    "norm1": ("norm", 2.0, 1.0),
    "norm_inf": ("norm", 0.1, math.inf),
    "norm3": ("norm", 0.5, 3.0),
    "norm_half": ("norm", 1.0, 0.5),
    "norm2_zero": ("norm", 0.0, 2.0),
    "value": ("value", 0.05, None),
}


def clip_grads():
    g = torch.Generator().manual_seed(11)
    return {n: (0.3 * torch.randn(s, generator=g)).float() for n, s, _ in CLIP_PARAMS}


def run_clip(case, grads):
    fn, arg, p = CLIP_CASES[case]
    params = []
    for n, s, kind in CLIP_PARAMS:
        if kind == "param":
            t = torch.zeros(s, dtype=torch.float64, requires_grad=True)
            t.grad = grads[n].double().clone()
            params.append((n, t))
    if fn == "norm":
        total = torch.nn.utils.clip_grad_norm_([t for _, t in params], arg, p).item()
    else:
        torch.nn.utils.clip_grad_value_([t for _, t in params], arg)
        total = 0.0
    return total, {n: t.grad for n, t in params}


def main():
    mets = metrics()
    out = {"schedule.loss": mets["loss"], "schedule.acc": mets["acc"]}
    for case in CASES:
        lrs = run_schedule(case, mets)
        hi = lrs.float()
        out["schedule.%s.lrs" % case] = hi
        out["schedule.%s.lrs_lo" % case] = (lrs - hi.double()).float()
        changes = int((lrs[1:] != lrs[:-1]).any(dim=1).sum())
        print("%-22s %2d changes, last lrs %.6g %.6g" % (case, changes, lrs[-1, 0], lrs[-1, 1]))
    grads = clip_grads()
    for n, t in grads.items():
        out["clip.grad." + n] = t
    for case in CLIP_CASES:
        total, clipped = run_clip(case, grads)
        out["clip.%s.total" % case] = torch.tensor([total], dtype=torch.float64)
        for n, t in clipped.items():
            out["clip.%s.%s" % (case, n)] = t
        print("clip %-12s total %.6g" % (case, total))
    meta = {"generator": "scripts/gen_schedule_fixtures.py", "torch": torch.__version__,
            "base_lrs": json.dumps(BASE_LRS), "steps": str(STEPS),
            "cases": json.dumps({c: {"spec": v[0], "total_steps": v[1], "halve_after": v[3], "metric": v[4]}
                                 for c, v in CASES.items()}),
            "clip_cases": json.dumps({c: [f, a, str(p)] for c, (f, a, p) in CLIP_CASES.items()})}
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/schedule.safetensors"
    write_f32(path, out, meta)
    print("wrote", path, len(out), "tensors")


main()
