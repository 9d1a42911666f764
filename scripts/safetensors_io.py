"""safetensors for the fixture and interop scripts, written and read by hand.

The safetensors package is not needed: the format is an 8-byte little-endian
header length, compact JSON padded with spaces to a multiple of 8 bytes, then
the tensors' bytes. Files are laid out as the reference implementation
(huggingface/safetensors save_file) lays out a state_dict: "__metadata__"
first, tensors sorted by dtype (widest first) then by name, contiguous
data_offsets. Every script in scripts/ writes through this one module.
"""
import json
import struct

import numpy as np
import torch

# The reference sorts tensors by its Dtype enum, largest first, then by name.
DTYPE_ENUM = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
              "I64", "U64"]
NAMES = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
         torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
         torch.bool: "BOOL"}
TORCH_DTYPE = {n: t for t, n in NAMES.items()}
ORDER = {t: DTYPE_ENUM.index(n) for t, n in NAMES.items()}


def tensor_bytes(t):
    """Little-endian bytes of a CPU tensor as torch stores it."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: go through int16
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    a = t.numpy()
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


def serialize(tensors, metadata=None):
    """Bytes of a safetensors file holding `tensors` (name -> tensor) in their
    own dtypes; metadata is a dict of strings or None."""
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
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def save(path, tensors, metadata=None):
    """Write `tensors` in their own dtypes."""
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def write_f32(path, tensors, metadata):
    """A test fixture: every tensor converted to float32 (what the C tests
    read), float64 references rounded once here."""
    save(path, {n: t.detach().float() for n, t in tensors.items()}, metadata)


def load(path):
    """(tensors, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data, out = blob[8 + n:], {}
    for name, e in header.items():
        dtype = TORCH_DTYPE[e["dtype"]]
        b, end = e["data_offsets"]
        if dtype == torch.bfloat16:
            arr = np.frombuffer(data[b:end], dtype="<i2").reshape(e["shape"])
            out[name] = torch.from_numpy(arr.copy()).view(torch.bfloat16)
        else:
            np_dtype = torch.empty(0, dtype=dtype).numpy().dtype.newbyteorder("<")
            arr = np.frombuffer(data[b:end], dtype=np_dtype).reshape(e["shape"])
            out[name] = torch.from_numpy(arr.copy()).to(dtype)
    return out, meta
