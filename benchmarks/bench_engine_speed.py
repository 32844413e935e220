"""Simulator speed: a 4096x1024 int8 matrix-vector, full functional + timing
simulation of one Session.run on the `default` preset (zero = skip, so the
per-lane nonzero counting runs too), at 0 / 50 / 90 % weight sparsity.

Reported as a ratio against numpy float32 `W @ x` on the same shape, timed in
the same process right before (goal: ratio <= 1.0). The simulator runs on one
core, so the headline ratio is against numpy with its BLAS pinned to one
thread; the ratio against numpy's default threading is reported beside it
(on a loaded 2-core machine multi-threaded BLAS can be far slower, which
would flatter us).

    PYTHONPATH=. python -m pytest benchmarks/bench_engine_speed.py -q -s
"""
from __future__ import annotations

import time

import numpy as np
import pytest

N, K = 4096, 1024


def _openblas_set_threads():
    """numpy's bundled OpenBLAS thread setter, or None when not found."""
    import ctypes
    import glob
    import os

    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(libdir, "libscipy_openblas*.so")):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            getn = getattr(lib, name.replace("set_", "get_"), None)
            if fn is not None and getn is not None:
                return fn, getn
    return None


def _numpy_f32_seconds(w: np.ndarray, x: np.ndarray, repeats: int = 30,
                       threads: int | None = None) -> float:
    setter = _openblas_set_threads() if threads is not None else None
    if threads is not None and setter is None:
        return float("nan")
    if setter is not None:
        old = setter[1]()
        setter[0](threads)
    try:
        return _time_numpy(w, x, repeats)
    finally:
        if setter is not None:
            setter[0](old)


def _time_numpy(w: np.ndarray, x: np.ndarray, repeats: int) -> float:
    wf = w.astype(np.float32)
    xf = x.astype(np.float32).reshape(-1)
    wf @ xf   # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        wf @ xf
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_matvec_speed_vs_numpy(benchmark, sparsity):
    from azsim import hw
    from azsim import reference as ref
    from azsim.compile import compile as compile_graph
    from azsim.engine import Session
    from azsim.graph import Graph

    rng = np.random.default_rng(0)
    w = np.clip(np.round(rng.normal(0, 40, (N, K))), -128, 127).astype(np.int8)
    w[rng.random((N, K)) < sparsity] = 0
    x = rng.integers(-128, 128, (1, K)).astype(np.int8)
    g = Graph("bench")
    xin = g.input("x", K)
    m, s = ref.quantize_multiplier(np.full(N, 1.0 / (40 * K)))
    fmt = "dense" if sparsity == 0.0 else "bitmask"
    g.output(g.matmul(xin, w, mult=m, shift=s, format=fmt, name="fc"))
    sess = Session(compile_graph(g, hw.load("default")), keep_timeline=False)
    inputs = {"x": x}
    res = sess.run(inputs)
    np.testing.assert_array_equal(res.outputs["fc:out"], ref.run_graph(g, inputs)["fc:out"])

    numpy_s = _numpy_f32_seconds(w, x, threads=1)
    numpy_default_s = _numpy_f32_seconds(w, x)
    if not np.isfinite(numpy_s):   # no way to pin BLAS threads: use the default
        numpy_s = numpy_default_s
    benchmark.pedantic(sess.run, args=(inputs,), rounds=30, iterations=1, warmup_rounds=2)
    sim_s = benchmark.stats.stats.median
    ratio = sim_s / numpy_s
    benchmark.extra_info.update({"sparsity": sparsity, "format": fmt, "numpy_f32_s": numpy_s,
                                 "numpy_f32_default_threads_s": numpy_default_s,
                                 "sim_s": sim_s, "ratio_vs_numpy_f32": ratio,
                                 "ratio_vs_numpy_f32_default_threads": sim_s / numpy_default_s})
    print(f"\nsparsity {sparsity:.0%} ({fmt}): sim {sim_s * 1e3:.3f} ms, numpy f32 1 thread "
          f"{numpy_s * 1e3:.3f} ms -> ratio {ratio:.2f}; numpy default threads "
          f"{numpy_default_s * 1e3:.3f} ms -> ratio {sim_s / numpy_default_s:.2f}")
