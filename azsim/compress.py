"""Weight formats: encode/decode int8 weights with the bit-exact C++ codecs.

The byte size of every format (all metadata included) is defined by its
codec in ``csrc/azsim/formats/``; this module only asks the codec and never
re-derives a size. Stream layouts are documented at the top of each codec file.

Formats (names used on the CLI and in recipes):
  dense             int8, one byte per weight (also for 4-bit weights)
  int4              two 4-bit weights per byte
  bitmask           1 presence bit per weight + the nonzero values
  rle               EIE-style (zero-run, value) entries with padding entries
  codebook          a value table + log2(k)-bit index per weight
  codebook-bitmask  presence bits + log2(k)-bit index per nonzero
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from azsim.errors import ConfigError, FormatError

FORMATS: tuple[str, ...] = ("dense", "int4", "bitmask", "rle", "codebook", "codebook-bitmask")
BITS: tuple[int, ...] = (8, 4)

__all__ = [
    "FORMATS",
    "BITS",
    "encode",
    "decode",
    "decode_cycles",
    "size_bytes",
    "bits_per_weight",
    "best_lossless",
    "check_format",
    "check_bits",
    "check_codebook_k",
]


def _native():
    try:
        from azsim._native import formats
    except ImportError as e:  # pragma: no cover - only without a build
        raise ImportError(
            "azsim._native is not built; run `python setup.py build_ext --inplace`"
        ) from e
    return formats


def check_format(fmt: str, field: str = "format") -> str:
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ConfigError(f"{field} = {fmt!r} (allowed: {', '.join(FORMATS)})")
    return fmt


def check_bits(bits: int, field: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in BITS:
        raise ConfigError(f"{field} = {bits!r} (allowed: 4 or 8)")
    return int(bits)


def check_codebook_k(k: int, field: str = "codebook_k") -> int:
    ok = isinstance(k, (int, np.integer)) and not isinstance(k, bool)
    if not ok or not (2 <= int(k) <= 256) or (int(k) & (int(k) - 1)) != 0:
        raise ConfigError(f"{field} = {k!r} (allowed: a power of two in [2, 256])")
    return int(k)


def _as_int8(w) -> np.ndarray:
    """Flattens w (C order) to int8, refusing values that would wrap."""
    a = np.asarray(w)
    if a.dtype == np.int8:
        return np.ascontiguousarray(a).reshape(-1)
    if a.size == 0 and a.dtype.kind in "iuf":
        return np.zeros(0, np.int8)
    if a.dtype.kind not in "iu":
        raise ConfigError(f"weights: dtype {a.dtype} (allowed: an integer dtype with values in [-128, 127])")
    lo, hi = int(a.min()), int(a.max())
    if lo < -128 or hi > 127:
        raise ConfigError(f"weights: values span [{lo}, {hi}] (allowed: [-128, 127])")
    return np.ascontiguousarray(a, dtype=np.int8).reshape(-1)


def encode(w, fmt: str, bits: int = 8, codebook_k: int = 16) -> bytes:
    """Encodes integer weights (flattened in C order) into the exact stream of ``fmt``.

    ``bits`` is the width of the stored values (8 or 4). Raises ConfigError when
    the weights cannot be represented (e.g. outside [-8, 7] for 4-bit values, or
    more distinct values than ``codebook_k``).
    """
    check_format(fmt)
    bits = check_bits(bits)
    codebook_k = check_codebook_k(codebook_k)
    return _native().encode(fmt, _as_int8(w), bits, codebook_k)


def decode(data, fmt: str, n: int) -> np.ndarray:
    """Decodes exactly ``n`` int8 weights; raises FormatError on a malformed stream."""
    check_format(fmt)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 0:
        raise ConfigError(f"n = {n!r} (allowed: an integer >= 0)")
    if not isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        raise FormatError(f"{fmt} stream: data is {type(data).__name__} (allowed: bytes)")
    return _native().decode(fmt, data, int(n))


def decode_cycles(data, fmt: str, n: int, bytes_per_cycle: float, weights_per_cycle: float) -> int:
    """Cycles the on-chip decoder spends on this stream (see each codec's comment)."""
    check_format(fmt)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 0:
        raise ConfigError(f"n = {n!r} (allowed: an integer >= 0)")
    for name, v in (("bytes_per_cycle", bytes_per_cycle), ("weights_per_cycle", weights_per_cycle)):
        if not np.isfinite(v) or v <= 0:
            raise ConfigError(f"{name} = {v!r} (allowed: a finite number > 0)")
    return int(_native().decode_cycles(fmt, data, int(n), float(bytes_per_cycle), float(weights_per_cycle)))


def size_bytes(w, fmt: str, bits: int = 8, codebook_k: int = 16) -> int:
    """Exact compressed size in bytes, all metadata included (asks the codec)."""
    return len(encode(w, fmt, bits, codebook_k))


def bits_per_weight(w, fmt: str, bits: int = 8, codebook_k: int = 16) -> float:
    n = np.asarray(w).size
    if n == 0:
        raise ConfigError("weights: empty tensor (bits per weight needs at least one weight)")
    return 8.0 * size_bytes(w, fmt, bits, codebook_k) / n


def best_lossless(
    w, bits: int = 8, formats: Iterable[str] | None = None, codebook_k: int = 16
) -> tuple[str, int]:
    """The smallest format that represents ``w`` exactly: (name, bytes).

    Formats that cannot hold w (int4 with values outside [-8, 7], a codebook
    with more distinct values than ``codebook_k``) are skipped. Ties go to the
    earlier name in ``formats`` (default FORMATS order, simplest first).
    """
    bits = check_bits(bits)
    codebook_k = check_codebook_k(codebook_k)
    names = FORMATS if formats is None else tuple(formats)
    if not names:
        raise ConfigError(f"formats: empty (allowed: a non-empty subset of {', '.join(FORMATS)})")
    for f in names:
        check_format(f, "formats")
    a = _as_int8(w)
    best: tuple[str, int] | None = None
    for f in names:
        try:
            size = len(_native().encode(f, a, bits, codebook_k))
        except ConfigError:
            continue  # this format cannot represent w
        if best is None or size < best[1]:
            best = (f, size)
    if best is None:
        raise ConfigError(
            f"formats: none of {', '.join(names)} can represent these weights at bits={bits}"
        )
    return best
