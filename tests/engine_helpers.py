"""Shared helpers for the engine tests: small hardware configs and random weights."""
from __future__ import annotations

import numpy as np

from azsim import reference as ref
from azsim.compile import compile as compile_graph
from azsim.engine import Session
from azsim.graph import Graph

ALL_FORMATS = ["dense", "int4", "bitmask", "rle", "codebook", "codebook-bitmask"]


def hw(**over) -> dict:
    """A small native config with no surprises; override any key."""
    d = dict(clock_hz=1e9, rows=8, cols=8, bits=8, dataflow="ws", zero="none",
             weight_sram_bytes=1 << 20, act_sram_bytes=1 << 20, offchip_bytes_per_cycle=1e6,
             offchip_latency_cycles=0, offchip_burst_bytes=1, offchip_pj_per_byte=10.0,
             decoder_bytes_per_cycle=1e6, decoder_weights_per_cycle=1e6,
             decoder_formats=list(ALL_FORMATS), vector_lanes=8, mac_pj=1.0, mac_gated_pj=0.1,
             weight_sram_pj_per_byte=1.0, act_sram_pj_per_byte=1.0, decode_pj_per_byte=0.1,
             vector_pj_per_op=0.1, leakage_mw=1.0, host_mflops=1000.0)
    d.update(over)
    return d


def formats_for(bits: int) -> list[str]:
    from azsim.compile import _codec_names
    names = _codec_names()
    return [f for f in names if not (bits == 8 and f == "int4")]


def random_weights(rng, N, K, bits, sparsity, fmt) -> np.ndarray:
    hi = 7 if bits == 4 else 127
    if fmt.startswith("codebook"):
        levels = rng.choice(np.arange(-hi - 1, hi + 1), size=15, replace=False)
        w = rng.choice(levels, size=(N, K))
    else:
        w = rng.integers(-hi - 1, hi + 1, size=(N, K))
    w[rng.random((N, K)) < sparsity] = 0
    return w.astype(np.int8)


def matmul_graph(w, *, bits=8, fmt="dense", out_dtype="int8", bias=None, scale=None, name="fc"):
    N, K = w.shape
    g = Graph()
    x = g.input("x", K)
    if out_dtype == "int32":
        y = g.matmul(x, w, bias=bias, out_dtype="int32", bits=bits, format=fmt, name=name)
    else:
        s = scale if scale is not None else np.full(N, 1.0 / (16.0 * K))
        m, sh = ref.quantize_multiplier(s)
        y = g.matmul(x, w, bias=bias, mult=m, shift=sh, out_dtype=out_dtype, bits=bits,
                     format=fmt, name=name)
    g.output(y)
    return g


def run_once(g, config, x, **compile_kw):
    prog = compile_graph(g, config, **compile_kw)
    sess = Session(prog)
    return prog, sess, sess.run({"x": x})
