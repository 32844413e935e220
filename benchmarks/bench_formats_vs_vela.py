"""Bits per weight of our lossless formats against Arm Vela's weight codec.

Plain script:  PYTHONPATH=. python benchmarks/bench_formats_vs_vela.py [--n N] [--seed S]
Under pytest:  pytest benchmarks/bench_formats_vs_vela.py  (asserts the 10% goal,
               times the best-lossless search with pytest-benchmark)

Weights: seeded Gaussian int8, sigma = 40, rounded and clipped to [-127, 127].
Why 40: Vela's 7.41 bits/weight at 0% zeros is close to the entropy of a
rounded Gaussian, log2(sigma * sqrt(2*pi*e)) bits, which is 7.37 at sigma = 40;
a narrower spread would make our fixed-width 8-bit values look worse than
they are against an entropy coder, a wider one would clip heavily. Then a
seeded random fraction s of the positions is set to zero (the Gaussian itself
adds about 1% natural zeros; the printed table shows the measured fraction).

Vela's figures are the measured values in /work/shared/FACTS.md (ethos-u-vela
5.2.0 on Gaussian int8 weights); they are quoted, not re-measured here.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from azsim import compress

SIGMA = 40.0
SPARSITIES = (0.0, 0.25, 0.50, 0.75, 0.90, 0.95)
# Vela 5.2.0 bits/weight on Gaussian int8 weights (FACTS.md)
VELA_BITS = {0.0: 7.41, 0.25: 6.53, 0.50: 4.75, 0.75: 2.82, 0.90: 1.28, 0.95: 0.70}
GOAL_SPARSITIES = (0.0, 0.50, 0.90)
GOAL_RATIO = 1.10
# Formats that can hold arbitrary int8 weights (int4/codebooks are lossy here
# and best_lossless skips them; they are listed in the table as "-").
SHOWN = compress.FORMATS
LABEL = {"codebook-bitmask": "cb-bitmask"}


def gaussian_weights(n: int, sparsity: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = np.clip(np.round(rng.normal(0.0, SIGMA, n)), -127, 127).astype(np.int8)
    zero = rng.permutation(n)[: int(round(sparsity * n))]
    w[zero] = 0
    return w


def measure(n: int = 1 << 16, seed: int = 0, codebook_k: int = 256) -> list[dict]:
    rows = []
    for s in SPARSITIES:
        w = gaussian_weights(n, s, seed)
        per_fmt = {}
        for f in SHOWN:
            try:
                per_fmt[f] = compress.bits_per_weight(w, f, bits=8, codebook_k=codebook_k)
            except Exception:  # cannot represent these weights (ConfigError)
                per_fmt[f] = None
        best_fmt, best_bytes = compress.best_lossless(w, bits=8, codebook_k=codebook_k)
        best = 8.0 * best_bytes / n
        rows.append(dict(sparsity=s, zeros=float(np.mean(w == 0)), per_fmt=per_fmt,
                         best_fmt=best_fmt, best=best, vela=VELA_BITS[s], ratio=best / VELA_BITS[s]))
    return rows


def print_table(rows: list[dict], n: int, seed: int) -> None:
    print(f"Gaussian int8 weights, sigma={SIGMA:g}, n={n}, seed={seed}; bits per weight "
          f"(all headers/metadata included; codebook k=256)")
    head = f"{'zeros':>6} {'meas':>6} " + " ".join(f"{LABEL.get(f, f):>10}" for f in SHOWN)
    head += f" {'best':>7} {'(format)':<10} {'vela':>5} {'ratio':>6} goal"
    print(head)
    for r in rows:
        cells = " ".join(f"{'-':>10}" if v is None else f"{v:10.3f}" for v in r["per_fmt"].values())
        goal = ""
        if r["sparsity"] in GOAL_SPARSITIES:
            goal = "ok" if r["ratio"] <= GOAL_RATIO else "MISS"
        print(f"{r['sparsity']:6.0%} {r['zeros']:6.1%} {cells} {r['best']:7.3f} "
              f"{'(' + r['best_fmt'] + ')':<10} {r['vela']:5.2f} {r['ratio']:6.3f} {goal}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 16, help="weights per tensor (default 65536)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rows = measure(a.n, a.seed)
    print_table(rows, a.n, a.seed)
    missed = [r for r in rows if r["sparsity"] in GOAL_SPARSITIES and r["ratio"] > GOAL_RATIO]
    return 1 if missed else 0


def test_within_10_percent_of_vela(benchmark):
    rows = benchmark.pedantic(measure, rounds=1, iterations=1)
    print_table(rows, 1 << 16, 0)
    for r in rows:
        if r["sparsity"] in GOAL_SPARSITIES:
            assert r["ratio"] <= GOAL_RATIO, r


if __name__ == "__main__":
    sys.exit(main())
