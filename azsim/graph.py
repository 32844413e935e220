"""The neutral contract between a model and the chip: ops on integer tensors.

A Graph is built op by op; every parameter is checked here (ModelError names
the op and the field). Tensors are 2-D (rows, cols): rows is dynamic (set by
the inputs of each run, e.g. M = 1 for a matrix-vector step), cols is fixed.
The integer semantics of every op are those of azsim/reference.py.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from azsim.errors import ModelError

DTYPES = ("int8", "int16", "int32")
FORMATS_HINT = "dense, int4, bitmask, rle, codebook, codebook-bitmask"


@dataclass(frozen=True)
class Tensor:
    """A graph value: name, element dtype, fixed column count, optional real scale."""
    name: str
    dtype: str
    cols: int
    scale: float | None = None
    kind: str = "value"   # "value" or "index" (int32 indices of an embedding lookup)


@dataclass
class Op:
    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict = field(default_factory=dict)
    group: str = "main"


def _err(op: str, fld: str, msg: str) -> ModelError:
    return ModelError(f"op '{op}': {fld}: {msg}")


def _int_array(op, fld, a, n, lo, hi, dtype) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 0:
        a = np.full(n, a)
    if a.shape != (n,):
        raise _err(op, fld, f"expected shape ({n},), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise _err(op, fld, "expected integers")
    a64 = a.astype(np.int64)
    if a64.size and (a64.min() < lo or a64.max() > hi):
        raise _err(op, fld, f"values must lie in [{lo}, {hi}]")
    return a64.astype(dtype)


def _weight(op, fld, w, bits) -> np.ndarray:
    if bits not in (4, 8):
        raise _err(op, "bits", f"{bits} (allowed: 4 or 8)")
    w = np.asarray(w)
    if w.ndim != 2 or min(w.shape) < 1:
        raise _err(op, fld, f"expected a 2-D (N, K) weight matrix, got shape {w.shape}")
    if not np.issubdtype(w.dtype, np.integer):
        raise _err(op, fld, f"expected integer weights, got {w.dtype}")
    lo, hi = (-8, 7) if bits == 4 else (-128, 127)
    if w.min() < lo or w.max() > hi:
        raise _err(op, fld, f"{bits}-bit weights must lie in [{lo}, {hi}]")
    return np.ascontiguousarray(w, dtype=np.int8)


class Graph:
    """Build with input(), the op methods and output(); compile with azsim.compile."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Tensor] = []
        self.outputs: list[str] = []
        self.ops: list[Op] = []
        self.tensors: dict[str, Tensor] = {}
        self._group = "main"

    @contextmanager
    def group(self, name: str):
        """Ops added inside `with g.group("enc"):` form a group that a Session can
        run on its own (Session.run(..., group="enc")), sharing the chip's clock,
        weight SRAM and loaded weights with the other groups of the graph."""
        if not isinstance(name, str) or not name:
            raise ModelError(f"graph '{self.name}': group name must be a non-empty string")
        prev, self._group = self._group, name
        try:
            yield self
        finally:
            self._group = prev

    @property
    def groups(self) -> list[str]:
        """Group names in order of first use."""
        seen = []
        for op in self.ops:
            if op.group not in seen:
                seen.append(op.group)
        return seen

    def _add(self, op: Op) -> None:
        op.group = self._group
        self.ops.append(op)

    # -- helpers --------------------------------------------------------
    def _new(self, name: str, dtype: str, cols: int, scale=None, kind="value") -> Tensor:
        if name in self.tensors:
            raise ModelError(f"graph '{self.name}': tensor name '{name}' used twice")
        t = Tensor(name, dtype, int(cols), scale, kind)
        self.tensors[name] = t
        return t

    def _name(self, name, kind) -> str:
        return name if name is not None else f"{kind}{len(self.ops)}"

    def _get(self, t) -> Tensor:
        name = t.name if isinstance(t, Tensor) else t
        if name not in self.tensors:
            raise ModelError(f"graph '{self.name}': unknown tensor '{name}'")
        return self.tensors[name]

    @staticmethod
    def _dtype(op, fld, dtype, allowed=DTYPES) -> str:
        if dtype not in allowed:
            raise _err(op, fld, f"'{dtype}' (allowed: {', '.join(allowed)})")
        return dtype

    # -- graph interface --------------------------------------------------
    def input(self, name: str, cols: int, dtype: str = "int8", scale: float | None = None) -> Tensor:
        """A run-time input of shape (rows, cols)."""
        self._dtype(name, "dtype", dtype)
        if int(cols) < 1:
            raise _err(name, "cols", f"{cols} (allowed: >= 1)")
        t = self._new(name, dtype, cols, scale)
        self.inputs.append(t)
        return t

    def index_input(self, name: str) -> Tensor:
        """int32 indices for embedding(): a 1-D array of M indices per run."""
        t = self._new(name, "int32", 1, None, kind="index")
        self.inputs.append(t)
        return t

    def output(self, *tensors) -> None:
        for t in tensors:
            self.outputs.append(self._get(t).name)

    # -- ops ---------------------------------------------------------------
    def matmul(self, x, weight, *, bias=None, mult=None, shift=None, out_dtype: str = "int8",
               bits: int = 8, format: str = "dense", codebook_k: int = 16,
               name: str | None = None, out_scale: float | None = None) -> Tensor:
        """y[m, n] = requant(sum_k x[m, k] * weight[n, k] + bias[n]); weight (N, K).

        mult/shift per output channel (or scalars). Leave both None with
        out_dtype="int32" for the raw int32 accumulators (bias still added).
        """
        name = self._name(name, "matmul")
        x = self._get(x)
        if x.dtype != "int8":
            raise _err(name, "x", f"matmul inputs must be int8, got {x.dtype}")
        w = _weight(name, "weight", weight, bits)
        N, K = w.shape
        if K != x.cols:
            raise _err(name, "weight", f"K = {K} does not match input cols {x.cols}")
        self._dtype(name, "out_dtype", out_dtype)
        p = {"weight": w, "bits": bits, "format": format, "codebook_k": int(codebook_k),
             "out_dtype": out_dtype}
        p["bias"] = None if bias is None else _int_array(name, "bias", bias, N, -(2**31),
                                                          2**31 - 1, np.int32)
        if mult is None and shift is None:
            if out_dtype != "int32":
                raise _err(name, "mult", "required unless out_dtype is int32 (raw accumulators)")
            p["mult"] = p["shift"] = None
        else:
            p["mult"] = _int_array(name, "mult", mult, N, 0, 2**31 - 1, np.int32)
            p["shift"] = _int_array(name, "shift", shift, N, 1, 62, np.int32)
        y = self._new(name + ":out", out_dtype, N, out_scale)
        self._add(Op("matmul", name, [x.name], [y.name], p))
        return y

    def _vec_operand(self, name, fld, t, allowed=("int8", "int16")) -> Tensor:
        t = self._get(t)
        if t.dtype not in allowed or t.kind != "value":
            raise _err(name, fld, f"dtype {t.dtype} (allowed: {', '.join(allowed)})")
        return t

    def add(self, a, b, *, a_mult: int, b_mult: int, shift: int, out_dtype: str = "int8",
            name: str | None = None) -> Tensor:
        """clamp((a*a_mult + b*b_mult + 2**(shift-1)) >> shift); a, b int8/int16 with the same
        cols; a one-row operand is broadcast over the other's rows."""
        name = self._name(name, "add")
        a, b = self._vec_operand(name, "a", a), self._vec_operand(name, "b", b)
        if a.cols != b.cols:
            raise _err(name, "b", f"cols {b.cols} differ from a's {a.cols}")
        p = {"a_mult": self._scalar(name, "a_mult", a_mult, 0, 2**31 - 1),
             "b_mult": self._scalar(name, "b_mult", b_mult, 0, 2**31 - 1),
             "shift": self._scalar(name, "shift", shift, 1, 62),
             "out_dtype": self._dtype(name, "out_dtype", out_dtype, ("int8", "int16"))}
        y = self._new(name + ":out", out_dtype, a.cols)
        self._add(Op("add", name, [a.name, b.name], [y.name], p))
        return y

    def mul(self, a, b, *, mult: int, shift: int, out_dtype: str = "int8",
            name: str | None = None) -> Tensor:
        """clamp((a*b*mult + 2**(shift-1)) >> shift); a, b int8/int16, same cols (one-row
        operands broadcast)."""
        name = self._name(name, "mul")
        a, b = self._vec_operand(name, "a", a), self._vec_operand(name, "b", b)
        if a.cols != b.cols:
            raise _err(name, "b", f"cols {b.cols} differ from a's {a.cols}")
        p = {"mult": self._scalar(name, "mult", mult, 0, 2**31 - 1),
             "shift": self._scalar(name, "shift", shift, 1, 62),
             "out_dtype": self._dtype(name, "out_dtype", out_dtype, ("int8", "int16"))}
        y = self._new(name + ":out", out_dtype, a.cols)
        self._add(Op("mul", name, [a.name, b.name], [y.name], p))
        return y

    def lut(self, x, table, *, name: str | None = None) -> Tensor:
        """Table activation: int8 input -> 256 entries; int16 input -> 513 entries
        (interpolated, see reference.lut). Output dtype = table dtype (int8/int16)."""
        name = self._name(name, "lut")
        x = self._vec_operand(name, "x", x)
        t = np.asarray(table)
        if t.dtype not in (np.int8, np.int16):
            raise _err(name, "table", f"dtype {t.dtype} (allowed: int8, int16)")
        want = 256 if x.dtype == "int8" else 513
        if t.shape != (want,):
            raise _err(name, "table", f"expected {want} entries for an {x.dtype} input, "
                                      f"got shape {t.shape}")
        y = self._new(name + ":out", str(t.dtype), x.cols)
        self._add(Op("lut", name, [x.name], [y.name], {"table": t.copy()}))
        return y

    def requant(self, x, *, mult, shift, out_dtype: str = "int8",
                name: str | None = None) -> Tensor:
        """Per-channel (length cols) or scalar requantization of an int8/16/32 tensor."""
        name = self._name(name, "requant")
        x = self._vec_operand(name, "x", x, DTYPES)
        n = np.size(mult)
        if n not in (1, x.cols):
            raise _err(name, "mult", f"expected 1 or {x.cols} values")
        if np.size(shift) not in (1, n):
            raise _err(name, "shift", f"expected 1 or {n} values (as many as mult)")
        p = {"mult": _int_array(name, "mult", np.ravel(mult), n, 0, 2**31 - 1, np.int32),
             "shift": _int_array(name, "shift", np.broadcast_to(np.ravel(shift), (n,)), n, 1, 62,
                                 np.int32),
             "out_dtype": self._dtype(name, "out_dtype", out_dtype, ("int8", "int16"))}
        y = self._new(name + ":out", out_dtype, x.cols)
        self._add(Op("requant", name, [x.name], [y.name], p))
        return y

    def lstm_cell(self, x, h, c, *, wx, wh, bias, mult_x, shift_x, mult_h, shift_h, h_mult: int,
                  h_shift: int, bits: int = 8, format: str = "dense", codebook_k: int = 16,
                  sig_table=None, tanh_table=None, name: str | None = None,
                  h_scale: float | None = None) -> tuple[Tensor, Tensor]:
        """Fused integer LSTM step (formats in azsim/reference.py). x, h int8; c int16 Q3.12.

        wx (4H, Kx), wh (4H, H), gate order i, f, g, o; bias int32 (4H) at scale
        s_x * w_scale_x. mult_*/shift_*/h_mult/h_shift: see reference.lstm_multipliers.
        Returns (h' int8, c' int16 Q3.12), named "<name>:h" and "<name>:c"."""
        from azsim import reference as ref

        name = self._name(name, "lstm")
        x = self._get(x)
        h = self._get(h)
        c = self._get(c)
        if x.dtype != "int8" or h.dtype != "int8" or c.dtype != "int16":
            raise _err(name, "inputs", "x and h must be int8, c int16")
        wx = _weight(name, "wx", wx, bits)
        wh = _weight(name, "wh", wh, bits)
        G, Kx = wx.shape
        H = h.cols
        if G != 4 * H or wh.shape != (4 * H, H) or c.cols != H:
            raise _err(name, "wh", f"expected wx (4H, Kx), wh (4H, H), c cols H with H = {H}; "
                                   f"got wx {wx.shape}, wh {wh.shape}, c cols {c.cols}")
        if Kx != x.cols:
            raise _err(name, "wx", f"K = {Kx} does not match x cols {x.cols}")
        sig = ref.sigmoid_table() if sig_table is None else np.asarray(sig_table)
        th = ref.tanh_table() if tanh_table is None else np.asarray(tanh_table)
        for fld, t in (("sig_table", sig), ("tanh_table", th)):
            if t.shape != (ref.LUT16_SIZE,) or t.dtype != np.int16:
                raise _err(name, fld, f"expected {ref.LUT16_SIZE} int16 entries")
        p = {"wx": wx, "wh": wh, "bits": bits, "format": format, "codebook_k": int(codebook_k),
             "bias": _int_array(name, "bias", bias, G, -(2**31), 2**31 - 1, np.int32),
             "mult_x": _int_array(name, "mult_x", mult_x, G, 0, 2**31 - 1, np.int32),
             "shift_x": _int_array(name, "shift_x", shift_x, G, 1, 62, np.int32),
             "mult_h": _int_array(name, "mult_h", mult_h, G, 0, 2**31 - 1, np.int32),
             "shift_h": _int_array(name, "shift_h", shift_h, G, 1, 62, np.int32),
             "h_mult": self._scalar(name, "h_mult", h_mult, 0, 2**31 - 1),
             "h_shift": self._scalar(name, "h_shift", h_shift, 1, 62),
             "sig_table": sig.copy(), "tanh_table": th.copy(), "hidden": H}
        ho = self._new(name + ":h", "int8", H, h_scale)
        co = self._new(name + ":c", "int16", H, 2.0**-ref.GATE_FRAC_BITS)
        self._add(Op("lstm", name, [x.name, h.name, c.name], [ho.name, co.name], p))
        return ho, co

    def embedding(self, idx, table, *, name: str | None = None) -> Tensor:
        """Rows of an int8 (V, D) table for int32 indices in [0, V); out (M, D) int8."""
        name = self._name(name, "embed")
        idx = self._get(idx)
        if idx.kind != "index":
            raise _err(name, "idx", "expected a tensor from index_input()")
        t = _weight(name, "table", table, 8)
        y = self._new(name + ":out", "int8", t.shape[1])
        self._add(Op("embed", name, [idx.name], [y.name],
                           {"table": t, "bits": 8, "format": "dense", "codebook_k": 16}))
        return y

    @staticmethod
    def _scalar(op, fld, v, lo, hi) -> int:
        try:
            iv = int(v)
        except (TypeError, ValueError):
            raise _err(op, fld, f"{v!r} is not an integer") from None
        if iv != v or not lo <= iv <= hi:
            raise _err(op, fld, f"{v} (allowed: integers in [{lo}, {hi}])")
        return iv
