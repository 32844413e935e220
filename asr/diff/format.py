"""Neural-diff payloads: in-memory diffs, the .azdiff file format, and applying a diff.

A diff turns a deployed model theta (a dict name -> float32 array, as in model.npz) into
theta' = theta + delta without shipping theta'. Two kinds:

* sparse: per tensor, int8 values q (zeros where the mask is off) and one float32 scale;
  delta = scale * q. The int8 stream is stored in one of azsim.compress's formats (the smallest
  lossless one), so its size is what the chip's codecs say.
* hash:   K int8 bucket values v, one scale and a seed; delta_i = xi(i) * scale * v[h(i)] with
  seeded index and sign hashes over the global index i of the diff's tensors
  (asr.diff.hashing). Payload: K values + seed, independent of the model size.

Applying is done in float32 with one fixed expression (`base + scale * q`), so
`apply_diff(base, diff)` reproduces the model the trainer evaluated bit for bit.

File layout (little-endian):
    magic          8 bytes  b"AZDIFF\\x00\\x01"
    kind           u8       1 = sparse, 2 = hash
    reserved       3 bytes  zero
    base_sha256    32 bytes model_hash() of the base model the diff was trained against
    payload_bytes  u64
    payload_sha256 32 bytes (catches truncation and corruption before anything is applied)
    payload        payload_bytes bytes
Sparse payload: u32 n_tensors, then per tensor: u16 name length, name (utf-8), u8 ndim,
    u32 dims[ndim], f32 scale, u8 format id (index into azsim.compress.FORMATS), u32 stream
    bytes, stream.
Hash payload: u64 seed, u32 K, f32 scale, u32 n_tensors, per tensor: name and dims as above,
    then the K int8 values as a "dense" stream.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from azsim import compress
from azsim.errors import FormatError, ModelError

MAGIC = b"AZDIFF\x00\x01"
KIND_SPARSE, KIND_HASH = 1, 2
_KINDS = {KIND_SPARSE: "sparse", KIND_HASH: "hash"}
HEADER_BYTES = 8 + 1 + 3 + 32 + 8 + 32
# Formats a sparse diff's int8 stream may use (all lossless for int8 values).
SPARSE_FORMATS = ("dense", "bitmask", "rle")


def model_hash(arrays: dict) -> str:
    """sha256 (hex) over every array of a model, in sorted name order, names/dtypes/shapes
    included: two models hash equal only if every weight is bit-identical."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        if a.dtype.kind not in "biuf":
            continue  # config/vocab strings in model.npz describe, they are not weights
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(struct.pack("<I", a.ndim))
        h.update(struct.pack(f"<{a.ndim}Q", *a.shape))
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class SparseTensor:
    name: str
    shape: tuple
    scale: float          # float32 step of q
    q: np.ndarray         # int8, shape `shape`, zeros where the diff does not touch theta
    fmt: str = "bitmask"


@dataclass
class SparseDiff:
    base_hash: str
    tensors: list = field(default_factory=list)   # list[SparseTensor]
    kind: str = "sparse"

    def nnz(self) -> int:
        return int(sum(np.count_nonzero(t.q) for t in self.tensors))


@dataclass
class HashDiff:
    base_hash: str
    seed: int
    scale: float
    values: np.ndarray            # (K,) int8 bucket values
    targets: list = field(default_factory=list)   # list[(name, shape)] in global-index order
    kind: str = "hash"

    @property
    def k(self) -> int:
        return int(self.values.size)


# --- applying ------------------------------------------------------------------------------

def sparse_delta(t: SparseTensor) -> np.ndarray:
    return np.float32(t.scale) * t.q.astype(np.float32)


def hash_deltas(d: HashDiff) -> dict:
    from asr.diff.hashing import bucket_and_sign
    total = sum(int(np.prod(s)) for _, s in d.targets)
    idx, sign = bucket_and_sign(total, d.k, d.seed)
    flat = sign * (np.float32(d.scale) * d.values.astype(np.float32))[idx]
    out, off = {}, 0
    for name, shape in d.targets:
        n = int(np.prod(shape))
        out[name] = flat[off:off + n].reshape(shape)
        off += n
    return out


def apply_diff(base: dict, diff, source: str = "<memory>") -> dict:
    """A new dict theta' = theta + delta; `base` is never modified. Raises ModelError when the
    diff was trained against another model (hash mismatch) or names tensors the model lacks."""
    got = model_hash(base)
    if got != diff.base_hash:
        raise ModelError(f"{source}: base_sha256 = {diff.base_hash[:16]}... does not match the "
                         f"model's hash {got[:16]}... (allowed: a diff made for this exact model)")
    if diff.kind == "sparse":
        deltas = {t.name: (t.shape, sparse_delta(t)) for t in diff.tensors}
    else:
        deltas = {n: (tuple(s), v) for (n, s), v in zip(diff.targets, hash_deltas(diff).values())}
    for name, (shape, _) in deltas.items():
        if name not in base:
            raise ModelError(f"{source}: tensor {name!r} is not in the model "
                             f"(allowed: {sorted(k for k in base if np.asarray(base[k]).dtype.kind == 'f')})")
        if tuple(np.shape(base[name])) != tuple(shape):
            raise ModelError(f"{source}: tensor {name!r} has shape {tuple(shape)} in the diff but "
                             f"{tuple(np.shape(base[name]))} in the model")
    out = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in base.items()}
    for name, (shape, delta) in deltas.items():
        out[name] = (np.asarray(base[name], np.float32) + delta.reshape(shape)).astype(np.float32)
    return out


# --- encoding ------------------------------------------------------------------------------

def _pack_name_shape(name: str, shape) -> bytes:
    nb = name.encode()
    return struct.pack("<H", len(nb)) + nb + struct.pack("<B", len(shape)) + \
        struct.pack(f"<{len(shape)}I", *shape)


def choose_format(q: np.ndarray) -> tuple[str, bytes]:
    """The smallest lossless stream (of SPARSE_FORMATS) for int8 values q."""
    fmt, _ = compress.best_lossless(q.reshape(-1), 8, SPARSE_FORMATS)
    return fmt, compress.encode(q.reshape(-1), fmt, 8)


def encode_diff(diff) -> bytes:
    """The .azdiff bytes of a SparseDiff or HashDiff (header + payload)."""
    if diff.kind == "sparse":
        parts = [struct.pack("<I", len(diff.tensors))]
        for t in diff.tensors:
            fmt, stream = choose_format(np.asarray(t.q, np.int8))
            t.fmt = fmt
            parts += [_pack_name_shape(t.name, t.shape), struct.pack("<f", t.scale),
                      struct.pack("<B", compress.FORMATS.index(fmt)),
                      struct.pack("<I", len(stream)), stream]
        kind = KIND_SPARSE
    elif diff.kind == "hash":
        parts = [struct.pack("<QIfI", int(diff.seed), diff.k, diff.scale, len(diff.targets))]
        parts += [_pack_name_shape(n, s) for n, s in diff.targets]
        parts.append(compress.encode(np.asarray(diff.values, np.int8), "dense", 8))
        kind = KIND_HASH
    else:
        raise ValueError(f"unknown diff kind {diff.kind!r}")
    payload = b"".join(parts)
    header = MAGIC + struct.pack("<B3x", kind) + bytes.fromhex(diff.base_hash) + \
        struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest()
    return header + payload


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"{self.source}: payload truncated reading {what} at byte "
                              f"{self.pos} (needs {n} bytes, {len(self.data) - self.pos} left)")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def name_shape(self):
        (n,) = self.unpack("<H", "name length")
        try:
            name = self.take(n, "tensor name").decode()
        except UnicodeDecodeError:
            raise FormatError(f"{self.source}: tensor name at byte {self.pos - n} is not utf-8") from None
        (ndim,) = self.unpack("<B", f"{name} ndim")
        if not 1 <= ndim <= 4:
            raise FormatError(f"{self.source}: tensor {name!r}: ndim = {ndim} (allowed: 1..4)")
        shape = self.unpack(f"<{ndim}I", f"{name} shape")
        if int(np.prod(shape)) > 1 << 28:
            raise FormatError(f"{self.source}: tensor {name!r}: shape {shape} too large "
                              f"(allowed: at most 2^28 elements)")
        return name, tuple(int(s) for s in shape)


def decode_diff(data: bytes, source: str = "<bytes>"):
    """Parse .azdiff bytes into a SparseDiff or HashDiff; FormatError on anything malformed."""
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise FormatError(f"{source}: {len(data)} bytes is shorter than the {HEADER_BYTES}-byte "
                          f"diff header (file truncated or not a diff)")
    if data[:8] != MAGIC:
        raise FormatError(f"{source}: magic = {data[:8]!r} (allowed: {MAGIC!r}; not an azsim diff)")
    kind = data[8]
    if kind not in _KINDS:
        raise FormatError(f"{source}: kind = {kind} (allowed: 1 sparse, 2 hash)")
    base_hash = data[12:44].hex()
    (n_payload,) = struct.unpack("<Q", data[44:52])
    digest = data[52:84]
    payload = data[HEADER_BYTES:]
    if len(payload) != n_payload:
        raise FormatError(f"{source}: payload_bytes = {n_payload} but the file holds "
                          f"{len(payload)} payload bytes (truncated or padded)")
    if hashlib.sha256(payload).digest() != digest:
        raise FormatError(f"{source}: payload_sha256 does not match the payload (corrupted file)")
    r = _Reader(payload, source)
    if kind == KIND_SPARSE:
        (n,) = r.unpack("<I", "tensor count")
        tensors = []
        for _ in range(n):
            name, shape = r.name_shape()
            (scale,) = r.unpack("<f", f"{name} scale")
            (fid,) = r.unpack("<B", f"{name} format")
            if fid >= len(compress.FORMATS) or compress.FORMATS[fid] not in SPARSE_FORMATS:
                raise FormatError(f"{source}: tensor {name!r}: format id {fid} "
                                  f"(allowed: {[compress.FORMATS.index(f) for f in SPARSE_FORMATS]})")
            (nb,) = r.unpack("<I", f"{name} stream length")
            stream = r.take(nb, f"{name} stream")
            fmt = compress.FORMATS[fid]
            q = compress.decode(stream, fmt, int(np.prod(shape))).reshape(shape)
            if not np.isfinite(scale):
                raise FormatError(f"{source}: tensor {name!r}: scale = {scale} (allowed: finite)")
            tensors.append(SparseTensor(name, shape, float(scale), q, fmt))
        diff = SparseDiff(base_hash, tensors)
    else:
        seed, k, scale, n = r.unpack("<QIfI", "hash header")
        if not 1 <= k <= 1 << 26:
            raise FormatError(f"{source}: K = {k} (allowed: 1..2^26)")
        if not np.isfinite(scale):
            raise FormatError(f"{source}: scale = {scale} (allowed: finite)")
        targets = [r.name_shape() for _ in range(n)]
        values = compress.decode(r.take(len(payload) - r.pos, "bucket values"), "dense", k)
        diff = HashDiff(base_hash, int(seed), float(scale), values, targets)
        r.pos = len(payload)
    if r.pos != len(payload):
        raise FormatError(f"{source}: {len(payload) - r.pos} unexpected bytes after the payload")
    return diff


def save_diff(diff, path) -> int:
    """Write the diff; returns its size in bytes."""
    data = encode_diff(diff)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def load_diff(path):
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: diff file not found")
    return decode_diff(path.read_bytes(), str(path))


def apply_diff_file(base: dict, path) -> dict:
    """Load, validate and apply a diff file; `base` is left untouched on any error."""
    return apply_diff(base, load_diff(path), str(path))
