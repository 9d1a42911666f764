#!/usr/bin/env python3
"""Writes the safetensors test fixture and the fuzz seed corpus.

    /usr/bin/python3 scripts/gen_safetensors_fixtures.py   (needs torch)

tests/fixtures/st_reference.safetensors is laid out the way the reference
implementation (huggingface/safetensors, save_file) lays out a PyTorch
state_dict: "__metadata__" first, tensors sorted by dtype (widest first) then
name, contiguous data_offsets, compact JSON padded with spaces to a multiple
of 8 bytes, tensor bytes as torch stores them (little-endian). The safetensors
package is not needed: the format is simple enough to write by hand here, and
tests/test_safetensors.c checks the values the script put in.

tests/fuzz/corpus/ gets small valid and invalid inputs to seed the fuzz
targets: safetensors/ (the reader), json/ (its JSON parser) and model/ (model
files of the zoo's mlp and cnn in small configurations, for
nb_model_load_file). The outputs are committed; tests never run Python.
"""
import json
import os
import struct

import torch

from safetensors_io import serialize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def raw(header_text, data=b""):
    """A file with a hand-written (possibly invalid) header."""
    h = header_text.encode()
    return struct.pack("<Q", len(h)) + h + data


def write(rel, blob):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)
    print(f"{rel}: {len(blob)} bytes")


def main():
    torch.manual_seed(0)
    randn = torch.randn(4, 5)
    tensors = {
        "weight": (torch.arange(6, dtype=torch.float32) * 0.25 - 0.5).reshape(2, 3),
        "scalar": torch.tensor(7.0),
        "empty": torch.zeros(0, 3),
        "bias.f16": torch.tensor([1.5, -2.0, 65504.0, 2.0 ** -24], dtype=torch.float16),
        "emb.bf16": torch.tensor([[1.0, -0.5], [3.140625, float("-inf")]], dtype=torch.bfloat16),
        "x.f64": torch.tensor([0.1, -1e300, 2.5], dtype=torch.float64),
        "features.0.randn": randn,
    }
    meta = {"format": "pt", "randn_sum": repr(float(randn.double().sum())), "note": "caf\u00e9 \u2713"}
    ref = serialize(tensors, meta)
    write("tests/fixtures/st_reference.safetensors", ref)

    c = "tests/fuzz/corpus/safetensors/"
    write(c + "valid_reference.safetensors", ref)
    write(c + "valid_empty.safetensors", serialize({}))
    write(c + "valid_meta_only.safetensors", serialize({}, {"a": "b", "esc\"\\\n": "\u00e9"}))
    write(c + "valid_small_f32.safetensors", serialize({"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}))
    write(c + "valid_mixed.safetensors", serialize({
        "a": torch.tensor([0.5, -0.0], dtype=torch.float16),
        "b": torch.tensor([1.0, float("nan")], dtype=torch.bfloat16),
        "c": torch.tensor([1e-40], dtype=torch.float64),
        "z": torch.zeros(2, 0, 2),
    }))
    write(c + "valid_escaped_names.safetensors",
          raw('{"\\u00e9\\ud83d\\ude00\\n":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
              '"__metadata__":{"k":"\\"v\\""}}   ', b"\x00\x00\x80\x3f"))
    write(c + "valid_integers.safetensors", serialize({
        "n": torch.tensor([-2, 2 ** 40], dtype=torch.int64),
        "i": torch.tensor([-7], dtype=torch.int32),
        "s": torch.tensor([300, -300], dtype=torch.int16),
        "c": torch.tensor([-128], dtype=torch.int8),
        "u": torch.tensor([255, 0], dtype=torch.uint8),
        "b": torch.tensor([True, False]),
    }))
    write(c + "bad_dtype.safetensors", raw('{"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}', b"\0"))
    write(c + "bad_overlap.safetensors",
          raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
              '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8))
    write(c + "bad_hole.safetensors",
          raw('{"a":{"dtype":"F16","shape":[1],"data_offsets":[2,4]}}', b"\0" * 4))
    write(c + "bad_truncated.safetensors", ref[:-5])
    write(c + "bad_json.safetensors", raw('{"a":{"dtype":"F32","shape":[1,],"data_offsets":[0,4]}}', b"\0" * 4))
    write(c + "bad_meta.safetensors", raw('{"__metadata__":{"a":1}}'))

    json_corpus()
    model_corpus()


def json_corpus():
    c = "tests/fuzz/corpus/json/"
    for name, text in [
        ("object.json", '{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"k":"v"}}'),
        ("values.json", ' [true, false, null, 0, -0, 12, -3.5e+2, 1E-7, 9007199254740993, "", {}] '),
        ("escapes.json", '"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u00e9\\ud83d\\ude00 caf\u00e9"'),
        ("nested.json", '{"a":[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]}'),
        ("numbers.json", '[0.0, 1e400, -1e-400, 123456789012345678901234567890, 2.5E3]'),
        ("bad_trailing_comma.json", '{"a":1,}'),
        ("bad_surrogate.json", '"\\ud800x"'),
        ("bad_utf8.json", b'"\xc0\x80"'),
        ("bad_leading_zero.json", '[01]'),
        ("bad_deep.json", "[" * 17 + "]" * 17),
    ]:
        write(c + name, text if isinstance(text, bytes) else text.encode())


def zoo_model(name, config):
    """nabla's zoo model as torch's nn.Sequential (names and layouts match)."""
    from torch import nn
    v = [int(x) for x in config.split(",")]
    if name == "mlp":
        layers = [nn.Flatten()]
        for i in range(len(v) - 1):
            layers += [nn.Linear(v[i], v[i + 1])] + ([nn.ReLU()] if i + 2 < len(v) else [])
        return nn.Sequential(*layers)
    c, h, w, c1, c2, hidden, classes = v
    return nn.Sequential(nn.Conv2d(c, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), hidden), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(hidden, classes))


def model_corpus():
    c = "tests/fuzz/corpus/model/"
    torch.manual_seed(3)
    mlp = zoo_model("mlp", "6,5,3").state_dict()
    cnn = zoo_model("cnn", "1,4,4,2,2,3,2").state_dict()
    meta = lambda name, config: {"model": name, "config": config, "format": "nabla 0.1.0"}
    write(c + "mlp.safetensors", serialize(mlp, meta("mlp", "6,5,3")))
    write(c + "mlp_f16.safetensors", serialize({k: v.half() for k, v in mlp.items()}, meta("mlp", "6,5,3")))
    write(c + "cnn.safetensors", serialize(cnn, meta("cnn", "1,4,4,2,2,3,2")))
    write(c + "bad_config.safetensors", serialize(mlp, meta("mlp", "6,5,4")))
    write(c + "bad_model.safetensors", serialize(mlp, meta("resnet", "6,5,3")))
    write(c + "no_metadata.safetensors", serialize(mlp, {"format": "pt"}))


if __name__ == "__main__":
    main()
