#!/usr/bin/python3
"""Golden outputs and gradients of torch.nn.RNN, LSTM and GRU written as
safetensors to tests/fixtures/rnn.safetensors.

Run with Debian's torch:  /usr/bin/python3 scripts/gen_rnn_fixtures.py

Each case builds a small layer (the CASES table; tests/test_rnn.c has the
same table), draws its weights, the input x, initial states when the case has
them and fixed random tensors ry, rh, rc, then computes in float64
    loss = sum(y * ry) + sum(hn * rh) [+ sum(cn * rc) for LSTM]
and back-propagates. Weights and inputs are float32 values (exact in
float64), so the stored results are the exact ones up to float64 rounding.

Stored (all F32) per case <c>: <c>.x, <c>.h0, <c>.c0 (when given), <c>.ry,
<c>.rh, <c>.rc, <c>.param.<name> (the state_dict), <c>.y, <c>.hn, <c>.cn,
<c>.grad.<name>, <c>.grad_x, <c>.grad_h0, <c>.grad_c0.
"""
import sys

import torch

from safetensors_io import write_f32

T, N, I, H = 5, 3, 4, 6

# name: (class, kwargs, initial states given)
CASES = {
    "rnn_tanh": (torch.nn.RNN, dict(), True),
    "rnn_relu_2l_bf": (torch.nn.RNN, dict(nonlinearity="relu", num_layers=2, batch_first=True), False),
    "lstm_1l": (torch.nn.LSTM, dict(), True),
    "lstm_2l_bf": (torch.nn.LSTM, dict(num_layers=2, batch_first=True), True),
    "lstm_2l_bi": (torch.nn.LSTM, dict(num_layers=2, bidirectional=True), True),
    "lstm_nobias_bf_bi": (torch.nn.LSTM, dict(bias=False, batch_first=True, bidirectional=True), False),
    "gru_1l_bi": (torch.nn.GRU, dict(bidirectional=True), True),
    "gru_2l_bf": (torch.nn.GRU, dict(num_layers=2, batch_first=True), True),
}


def f32(shape, scale=1.0):
    return (torch.randn(*shape) * scale).float()


def run_case(name, cls, kw, states, out):
    layer = cls(I, H, **kw)
    for p in layer.parameters():     # torch's init, rounded to float32
        p.data = p.data.float()
    L, D = layer.num_layers, 2 if layer.bidirectional else 1
    bf = layer.batch_first
    x = f32((N, T, I) if bf else (T, N, I))
    lstm = cls is torch.nn.LSTM
    h0 = f32((L * D, N, H), 0.5) if states else None
    c0 = f32((L * D, N, H), 0.5) if states and lstm else None
    ry = f32((N, T, D * H) if bf else (T, N, D * H))
    rh, rc = f32((L * D, N, H)), f32((L * D, N, H))
    out[name + ".x"], out[name + ".ry"], out[name + ".rh"], out[name + ".rc"] = x, ry, rh, rc
    for pname, p in layer.state_dict().items():
        out[f"{name}.param.{pname}"] = p.clone()
    layer = layer.double()
    xd = x.double().requires_grad_()
    args = []
    if states:
        h0d = h0.double().requires_grad_()
        out[name + ".h0"] = h0
        if lstm:
            c0d = c0.double().requires_grad_()
            out[name + ".c0"] = c0
            args = [(h0d, c0d)]
        else:
            args = [h0d]
    y, st = layer(xd, *args)
    hn, cn = (st if lstm else (st, None))
    loss = (y * ry.double()).sum() + (hn * rh.double()).sum()
    if lstm:
        loss = loss + (cn * rc.double()).sum()
    loss.backward()
    out[name + ".y"], out[name + ".hn"] = y, hn
    if lstm:
        out[name + ".cn"] = cn
    for pname, p in layer.named_parameters():
        out[f"{name}.grad.{pname}"] = p.grad
    out[name + ".grad_x"] = xd.grad
    if states:
        out[name + ".grad_h0"] = h0d.grad
        if lstm:
            out[name + ".grad_c0"] = c0d.grad


def main():
    torch.manual_seed(7)
    out = {}
    for name, (cls, kw, states) in CASES.items():
        run_case(name, cls, kw, states, out)
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/rnn.safetensors"
    write_f32(path, out, {"torch": torch.__version__, "sizes": f"T={T},N={N},I={I},H={H}"})


if __name__ == "__main__":
    main()
