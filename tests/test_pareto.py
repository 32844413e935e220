"""azsim pareto: the non-dominated front on cases with known answers, printed and plotted."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from azsim.errors import ConfigError
from azsim.workflows import pareto
from azsim.workflows.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]


def rows_from(points):
    return [{"key": f"k{i}", "params": {"recipe": "r", "i": i}, "metrics": m} for i, m in enumerate(points)]


def brute_front(vals):
    n = len(vals)
    return [i for i in range(n) if not any(all(vals[j] <= vals[i]) and any(vals[j] < vals[i])
                                           for j in range(n) if j != i)]


def test_known_front():
    pts = [{"a": 1, "b": 5}, {"a": 2, "b": 2}, {"a": 5, "b": 1}, {"a": 3, "b": 3}, {"a": 2, "b": 2},
           {"a": 6, "b": 6}]
    front, skipped = pareto.front(rows_from(pts), [("a", 1.0), ("b", 1.0)])
    assert [r["key"] for r in front] == ["k0", "k1", "k4", "k2"]      # ties keep each other
    assert skipped == []


def test_maximize_and_missing():
    pts = [{"a": 1, "b": 5}, {"a": 1, "b": 6}, {"a": 2}]
    front, skipped = pareto.front(rows_from(pts), [("a", 1.0), ("b", -1.0)])
    assert [r["key"] for r in front] == ["k1"] and [r["key"] for r in skipped] == ["k2"]


def test_matches_brute_force_on_random_points():
    rng = np.random.default_rng(0)
    for _ in range(20):
        vals = rng.integers(0, 6, size=(30, 3)).astype(float)
        mask = pareto.front_mask(vals)
        assert list(np.flatnonzero(mask)) == brute_front(vals)


def test_unknown_objective():
    with pytest.raises(ConfigError, match="unknown metric 'wer'.*latency_ms"):
        pareto.parse_objectives("wer,latency_ms", rows_from([{"latency_ms": 1.0}]))


def test_cli_prints_and_plots(tmp_path):
    db = tmp_path / "r.db"
    st = ResultStore(db)
    for i, (x, y) in enumerate(itertools.product(range(4), range(4))):
        st.add(f"k{i}", "t", {"recipe": "r", "mac_array.rows": x}, {"latency_ms": float(x),
                                                                   "energy_mj": float(3 - x + y)}, 0.1)
    st.close()
    png = tmp_path / "front.png"
    r = subprocess.run([sys.executable, "-m", "azsim.cli", "pareto", str(db), "--objectives",
                        "latency_ms,energy_mj", "--plot", str(png)], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert "4 of 16 points" in r.stdout
    assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = subprocess.run([sys.executable, "-m", "azsim.cli", "pareto", str(db), "--objectives", "wer"],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "unknown metric 'wer'" in r.stderr
