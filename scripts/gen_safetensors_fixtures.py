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

tests/fuzz/corpus/safetensors/ gets a few small valid and invalid files to
seed the fuzz target. The outputs are committed; tests never run Python.
"""
import json
import os
import struct

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ORDER = {torch.float64: 4, torch.float32: 3, torch.bfloat16: 2, torch.float16: 1}
NAMES = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: go through int16
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def serialize(tensors, metadata=None):
    """Bytes of a safetensors file, as safetensors.torch.save would make them."""
    items = sorted(tensors.items(), key=lambda kv: (-ORDER[kv[1].dtype], kv[0]))
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in items:
        b = tensor_bytes(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


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
    write(c + "bad_dtype.safetensors", raw('{"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', b"\0" * 8))
    write(c + "bad_overlap.safetensors",
          raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
              '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8))
    write(c + "bad_hole.safetensors",
          raw('{"a":{"dtype":"F16","shape":[1],"data_offsets":[2,4]}}', b"\0" * 4))
    write(c + "bad_truncated.safetensors", ref[:-5])
    write(c + "bad_json.safetensors", raw('{"a":{"dtype":"F32","shape":[1,],"data_offsets":[0,4]}}', b"\0" * 4))
    write(c + "bad_meta.safetensors", raw('{"__metadata__":{"a":1}}'))


if __name__ == "__main__":
    main()
