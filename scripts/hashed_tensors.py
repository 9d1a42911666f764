"""Deterministic test inputs that the C tests can reproduce without files:
values from a 32-bit integer hash (lowbias32) of the element index."""
import numpy as np
import torch


def hashed(n, seed):
    """n values in [-1, 1): lowbias32 of i + seed * golden ratio, top 24 bits."""
    m = np.uint64(0xFFFFFFFF)
    h = (np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B9)) & m
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x7FEB352D)) & m
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x846CA68B)) & m
    h ^= h >> np.uint64(16)
    return ((h >> np.uint64(8)).astype(np.float64) / 8388608.0 - 1.0).astype(np.float32)


def tensor(shape, seed, scale=1.0):
    """A float32 tensor of `shape` filled with hashed(numel, seed) * scale."""
    n = int(np.prod(shape))
    return torch.from_numpy(hashed(n, seed).reshape(shape) * np.float32(scale))
