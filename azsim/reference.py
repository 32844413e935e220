"""The integer math of the chip, in plain numpy: the specification every engine
op must reproduce bit-exactly (tests/test_engine_exact.py checks it).

Conventions
-----------
* Activations are symmetric int8 (zero point 0); weights are int8 or int4
  (int4 values held in int8 arrays in [-8, 7]). Weight matrices are (N, K):
  N output channels x K inputs, like ``torch.nn.Linear.weight``; a matmul is
  ``y = x @ W.T`` with x of shape (M, K).
* Accumulators are int32 with two's-complement wrap-around (bias added in the
  accumulator, also wrapping); real layers never come close to wrapping.
* Requantization (per output channel)::

      y = clamp((acc * mult + 2**(shift - 1)) >> shift, out_min, out_max)

  computed in int64 with an arithmetic (floor) right shift; mult in
  [0, 2**31), shift in [1, 62]. ``quantize_multiplier`` turns a real scale
  into (mult, shift).
* Elementwise add: ``clamp((a*ma + b*mb + 2**(sh-1)) >> sh)``; mul:
  ``clamp((a*b*m + 2**(sh-1)) >> sh)``; a, b int8 or int16, int64 inside.
* LUT activations: an int8 input indexes a 256-entry table at ``x + 128``.
  An int16 input uses a 513-entry table sampled every 128 input steps and
  linear interpolation on the low 7 bits::

      u = x + 32768; i = u >> 7; f = u & 127
      y = T[i] + (((T[i+1] - T[i]) * f + 64) >> 7)

Fixed-point formats of the integer LSTM cell (``lstm_cell``)
-----------------------------------------------------------
Gate order i, f, g, o (rows [0,H), [H,2H), [2H,3H), [3H,4H) of the weights).

* gate pre-activations ``z``: int16 **Q3.12** (real = z / 4096, range [-8, 8)).
  ``z = clamp16(rq(Wx@x + bias, mult_x, shift_x) + rq(Wh@h, mult_h, shift_h))``
  where ``rq`` is the requantization above without its clamp. mult_x/shift_x
  map the x-product scale (s_x * s_wx[n]) to 2**-12, likewise for h.
* sigmoid / tanh outputs: int16 **Q0.15** (real = v / 32768), from the 513-entry
  int16-input tables ``sigmoid_table()`` / ``tanh_table()`` (input Q3.12).
* cell state ``c``: int16 **Q3.12**, same format as the gates, so tanh(c) uses
  the same table. Cell states are clamped to [-8, 8): clip c to that range
  in quantization-aware training.
  ``c' = clamp16((f*c*8 + i*g + 2**17) >> 18)``  (f*c is Q3.27, *8 -> Q.30,
  i*g is Q0.30; >> 18 -> Q.12, one rounding).
* hidden output ``h'``: int8 with the layer's h scale s_h:
  ``h' = clamp8((o * tanh(c') * h_mult + 2**(h_shift-1)) >> h_shift)`` where
  (h_mult, h_shift) = quantize_multiplier(1 / (2**30 * s_h)).
"""
from __future__ import annotations

import numpy as np

GATE_FRAC_BITS = 12   # gates and cell state: int16 Q3.12
ACT_FRAC_BITS = 15    # sigmoid / tanh outputs: int16 Q0.15
LUT16_STEP_BITS = 7   # int16-input LUT: a sample every 128 input steps
LUT16_SIZE = (1 << (16 - LUT16_STEP_BITS)) + 1  # 513

_RANGES = {"int8": (-128, 127), "int16": (-32768, 32767), "int32": (-(2**31), 2**31 - 1)}


def dtype_range(dtype: str) -> tuple[int, int]:
    return _RANGES[str(np.dtype(dtype))]


def _clamp(v: np.ndarray, dtype: str) -> np.ndarray:
    lo, hi = dtype_range(dtype)
    return np.clip(v, lo, hi).astype(dtype)


def wrap_int32(v: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of an integer array to int32."""
    return np.asarray(v, dtype=np.int64).astype(np.uint64).astype(np.uint32).view(np.int32)


def requantize(acc, mult, shift, out_dtype: str = "int8") -> np.ndarray:
    """Per-channel (last axis) or scalar rounding right-shift requantization."""
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    return _clamp(_rq(acc, mult, shift), out_dtype)


def _rq(acc, mult, shift):
    return (acc * mult + (np.int64(1) << (shift - 1))) >> shift


def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """(mult, shift) with mult in [2**30, 2**31) and real ~= mult / 2**shift.

    Works elementwise. real == 0 gives (0, 1). Scales too small for shift 62
    keep shift 62 with a smaller mult; scales >= 2**30 are not representable.
    """
    real = np.atleast_1d(np.asarray(real, dtype=np.float64))
    if np.any(~np.isfinite(real)) or np.any(real < 0) or np.any(real >= 2.0**30):
        raise ValueError("quantize_multiplier: scale must be finite and in [0, 2**30)")
    mult = np.zeros(real.shape, dtype=np.int64)
    shift = np.ones(real.shape, dtype=np.int64)
    nz = real > 0
    if np.any(nz):
        m, e = np.frexp(real[nz])          # real = m * 2**e, m in [0.5, 1)
        sh = 31 - e
        q = np.round(m * 2.0**31).astype(np.int64)
        over = q >= 2**31
        q[over] //= 2
        sh[over] -= 1
        small = sh > 62
        if np.any(small):
            q[small] = np.round(real[nz][small] * 2.0**62).astype(np.int64)
            sh[small] = 62
        if np.any(sh < 1):
            raise ValueError("quantize_multiplier: scale too large for shift >= 1")
        mult[nz] = q
        shift[nz] = sh
    return mult, shift


def matmul(x, w, bias=None, mult=None, shift=None, out_dtype: str = "int8") -> np.ndarray:
    """y = requant(x @ w.T + bias). mult=None with out_dtype int32: raw accumulators."""
    x = np.asarray(x, dtype=np.int64)
    acc = x @ np.asarray(w, dtype=np.int64).T
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    acc = wrap_int32(acc).astype(np.int64)
    if mult is None:
        return acc.astype(np.int32)
    return requantize(acc, mult, shift, out_dtype)


def add(a, b, a_mult: int, b_mult: int, shift: int, out_dtype: str = "int8") -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    return _clamp((a * a_mult + b * b_mult + (1 << (shift - 1))) >> shift, out_dtype)


def mul(a, b, mult: int, shift: int, out_dtype: str = "int8") -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    return _clamp((a * b * mult + (1 << (shift - 1))) >> shift, out_dtype)


def lut(x, table) -> np.ndarray:
    """Apply an activation table (see module doc); output dtype = table dtype."""
    x = np.asarray(x)
    t = np.asarray(table)
    if x.dtype == np.int8:
        return t[x.astype(np.int64) + 128]
    return _lut16(x.astype(np.int64), t.astype(np.int64)).astype(t.dtype)


def _lut16(x, t):
    u = x + 32768
    i = u >> LUT16_STEP_BITS
    f = u & ((1 << LUT16_STEP_BITS) - 1)
    a = t[i]
    b = t[i + 1]
    return a + (((b - a) * f + (1 << (LUT16_STEP_BITS - 1))) >> LUT16_STEP_BITS)


def table16(fn, in_frac_bits: int = GATE_FRAC_BITS, out_frac_bits: int = ACT_FRAC_BITS,
            out_dtype: str = "int16") -> np.ndarray:
    """513-entry table for an int16 input with `in_frac_bits` fractional bits."""
    u = np.arange(LUT16_SIZE, dtype=np.int64) * (1 << LUT16_STEP_BITS) - 32768
    y = fn(u / float(1 << in_frac_bits)) * (1 << out_frac_bits)
    return _clamp(np.round(y), out_dtype)


def table8(fn, in_scale: float, out_scale: float, out_dtype: str = "int8") -> np.ndarray:
    """256-entry table for an int8 input: y_q = round(fn(x_q * in_scale) / out_scale)."""
    xq = np.arange(-128, 128, dtype=np.float64)
    return _clamp(np.round(fn(xq * in_scale) / out_scale), out_dtype)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def sigmoid_table() -> np.ndarray:
    """Q3.12 int16 in -> Q0.15 int16 out (513 entries)."""
    return table16(_sigmoid)


def tanh_table() -> np.ndarray:
    """Q3.12 int16 in -> Q0.15 int16 out (513 entries)."""
    return table16(np.tanh)


def lstm_multipliers(s_x: float, s_h: float, w_scale_x, w_scale_h) -> dict:
    """Requantization parameters of lstm_cell from real scales.

    s_x, s_h: scales of the int8 x and h (real = q * s); w_scale_x / w_scale_h:
    per-gate-row weight scales (length 4H) of wx / wh. The int32 bias must be
    quantized with scale s_x * w_scale_x: bias_q = round(b / (s_x * w_scale_x)).
    Returns mult_x, shift_x, mult_h, shift_h (arrays) and h_mult, h_shift (ints).
    """
    mx, sx = quantize_multiplier(s_x * np.asarray(w_scale_x, np.float64) * (1 << GATE_FRAC_BITS))
    mh, sh = quantize_multiplier(s_h * np.asarray(w_scale_h, np.float64) * (1 << GATE_FRAC_BITS))
    hm, hs = quantize_multiplier(1.0 / (2.0 ** (2 * ACT_FRAC_BITS) * s_h))
    return {"mult_x": mx, "shift_x": sx, "mult_h": mh, "shift_h": sh,
            "h_mult": int(hm[0]), "h_shift": int(hs[0])}


def lstm_gates(x, h, wx, wh, bias, mult_x, shift_x, mult_h, shift_h) -> np.ndarray:
    """int16 Q3.12 gate pre-activations (M, 4H)."""
    ax = matmul(x, wx, bias).astype(np.int64)
    ah = matmul(h, wh).astype(np.int64)
    z = _rq(ax, np.asarray(mult_x, np.int64), np.asarray(shift_x, np.int64)) + _rq(
        ah, np.asarray(mult_h, np.int64), np.asarray(shift_h, np.int64))
    return _clamp(z, "int16")


def lstm_cell(x, h, c, wx, wh, bias, mult_x, shift_x, mult_h, shift_h, h_mult, h_shift,
              sig_table=None, tanh_tab=None) -> tuple[np.ndarray, np.ndarray]:
    """One integer LSTM step; returns (h' int8 (M,H), c' int16 Q3.12 (M,H))."""
    sig = sigmoid_table() if sig_table is None else np.asarray(sig_table)
    th = tanh_table() if tanh_tab is None else np.asarray(tanh_tab)
    z = lstm_gates(x, h, wx, wh, bias, mult_x, shift_x, mult_h, shift_h)
    H = z.shape[1] // 4
    i = lut(z[:, :H], sig).astype(np.int64)
    f = lut(z[:, H:2 * H], sig).astype(np.int64)
    g = lut(z[:, 2 * H:3 * H], th).astype(np.int64)
    o = lut(z[:, 3 * H:], sig).astype(np.int64)
    c = np.asarray(c, dtype=np.int64)
    c_new = _clamp((f * c * 8 + i * g + (1 << 17)) >> 18, "int16")
    t = lut(c_new, th).astype(np.int64)
    h_new = _clamp(_rq(o * t, np.int64(h_mult), np.int64(h_shift)), "int8")
    return h_new, c_new


def embedding(idx, table) -> np.ndarray:
    return np.asarray(table)[np.asarray(idx, dtype=np.int64).reshape(-1)]


def run_graph(graph, inputs: dict, group: str | None = None) -> dict:
    """Evaluate an azsim.graph.Graph (or one group of it) with this module's integer math."""
    env = {}
    ops = [op for op in graph.ops if group is None or op.group == group]
    for t in graph.inputs:
        if t.name not in inputs:
            continue
        a = np.asarray(inputs[t.name])
        env[t.name] = a.reshape(1, -1) if a.ndim == 1 and t.kind != "index" else a
    produced = set(env)
    for op in ops:
        produced.update(op.outputs)
    for op in ops:
        p = op.params
        if op.kind == "matmul":
            y = matmul(env[op.inputs[0]], p["weight"], p.get("bias"), p.get("mult"),
                       p.get("shift"), p["out_dtype"])
            env[op.outputs[0]] = y
        elif op.kind == "add":
            env[op.outputs[0]] = add(env[op.inputs[0]], env[op.inputs[1]], p["a_mult"],
                                     p["b_mult"], p["shift"], p["out_dtype"])
        elif op.kind == "mul":
            env[op.outputs[0]] = mul(env[op.inputs[0]], env[op.inputs[1]], p["mult"],
                                     p["shift"], p["out_dtype"])
        elif op.kind == "lut":
            env[op.outputs[0]] = lut(env[op.inputs[0]], p["table"])
        elif op.kind == "requant":
            env[op.outputs[0]] = requantize(env[op.inputs[0]], p["mult"], p["shift"],
                                            p["out_dtype"])
        elif op.kind == "lstm":
            x, h, c = (env[n] for n in op.inputs)
            h2, c2 = lstm_cell(x, h, c, p["wx"], p["wh"], p["bias"], p["mult_x"], p["shift_x"],
                               p["mult_h"], p["shift_h"], p["h_mult"], p["h_shift"],
                               p["sig_table"], p["tanh_table"])
            env[op.outputs[0]] = h2
            env[op.outputs[1]] = c2
        elif op.kind == "embed":
            env[op.outputs[0]] = embedding(env[op.inputs[0]], p["table"])
        else:  # pragma: no cover - graph.py only builds the kinds above
            raise ValueError(f"unknown op kind {op.kind}")
    return {name: env[name] for name in graph.outputs if name in produced and name in env}
