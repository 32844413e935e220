"""Seeded index and sign hashes for hash diffs: delta_i = xi(i) * v[h(i)].

Both hashes are the splitmix64 finalizer over (i + a seed-derived key) in wrapping uint64
arithmetic: portable (no Python `hash`, no platform RNG), so a device recomputes h and xi from
the seed alone and the payload is only K values + seed.
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INDEX_SALT = 0x1D1CE5
_SIGN_SALT = 0x5161


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on a uint64 array (wraps mod 2^64)."""
    z = np.asarray(x, np.uint64).copy()
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def _key(seed: int, salt: int) -> np.uint64:
    with np.errstate(over="ignore"):
        return mix64(np.array([(int(seed) * 0x100000001B3 + salt) & (2**64 - 1)], np.uint64))[0]


def bucket_and_sign(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(h, xi) for global indices 0..n-1: h in [0, k) (int64), xi in {-1, +1} (float32)."""
    if k < 1:
        raise ValueError(f"k = {k} (allowed: >= 1)")
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        hi = mix64((i * _GOLDEN) ^ _key(seed, _INDEX_SALT))
        hs = mix64((i * _GOLDEN) ^ _key(seed, _SIGN_SALT))
    idx = (hi % np.uint64(k)).astype(np.int64)
    sign = np.where((hs >> np.uint64(63)) == 0, np.float32(1.0), np.float32(-1.0)).astype(np.float32)
    return idx, sign
