"""azsim compare and the pytest figures plugin (CI dashboards)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from azsim.errors import ConfigError, FormatError
from azsim.workflows import bench

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def write(p, items):
    p.write_text(json.dumps(items))
    return p


def cli(*args):
    return subprocess.run([sys.executable, "-m", "azsim.cli", "compare", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, env=ENV)


def test_entries_shape_and_units():
    e = bench.entries({"total_cycles": 10, "energy_pj": {"mac": 2.0}, "latency_ms": 1.5, "ok": True,
                       "name": "x"}, prefix="layer")
    assert e == [{"name": "layer.total_cycles", "unit": "cycles", "value": 10.0},
                 {"name": "layer.energy_pj.mac", "unit": "pJ", "value": 2.0},
                 {"name": "layer.latency_ms", "unit": "ms", "value": 1.5}]


def test_compare_statuses():
    before = {"a": {"name": "a", "unit": "", "value": 100.0}, "b": {"name": "b", "unit": "", "value": 100.0},
              "c": {"name": "c", "unit": "", "value": 100.0}, "gone": {"name": "gone", "unit": "", "value": 1}}
    after = {"a": {"name": "a", "unit": "", "value": 106.0}, "b": {"name": "b", "unit": "", "value": 104.9},
             "c": {"name": "c", "unit": "", "value": 90.0}, "new": {"name": "new", "unit": "", "value": 1}}
    rows, reg = bench.compare(before, after, 5.0)
    st = {r["name"]: r["status"] for r in rows}
    assert st == {"a": "regression", "b": "same", "c": "improved", "gone": "gone", "new": "new"}
    assert reg


def test_cli_regression_exit_1(tmp_path):
    b = write(tmp_path / "b.json", [{"name": "x.cycles", "unit": "cycles", "value": 1000},
                                    {"name": "x.energy_mj", "unit": "mJ", "value": 2.0}])
    a = write(tmp_path / "a.json", [{"name": "x.cycles", "unit": "cycles", "value": 1100},
                                    {"name": "x.energy_mj", "unit": "mJ", "value": 2.01}])
    r = cli(b, a, "--threshold", "5%")
    assert r.returncode == 1
    assert "regression  x.cycles" in r.stdout and "+10.00%" in r.stdout
    assert "x.energy_mj" not in r.stdout      # moved 0.5%: within the threshold
    r = cli(b, a, "--threshold", "15%")
    assert r.returncode == 0 and "0 regression(s)" in r.stdout
    r = cli(a, b, "--threshold", "5%")
    assert r.returncode == 0 and "improved" in r.stdout


def test_cli_bad_input(tmp_path):
    good = write(tmp_path / "g.json", [{"name": "x", "unit": "", "value": 1}])
    bad = write(tmp_path / "bad.json", {"x": 1})
    r = cli(good, bad)
    assert r.returncode == 2 and "customSmallerIsBetter" in r.stderr
    r = cli(good, good, "--threshold", "five")
    assert r.returncode == 2 and "--threshold" in r.stderr
    with pytest.raises(FormatError, match="appears twice"):
        bench.load(write(tmp_path / "d.json", [{"name": "x", "unit": "", "value": 1}] * 2))
    with pytest.raises(ConfigError):
        bench.parse_threshold("-3%")


PLUGIN_TEST = '''
from azsim.cli_layer import simulate
from azsim import hw

def test_layer(benchmark, azsim_figures):
    cfg = hw.load("default")
    out = benchmark.pedantic(simulate, args=(cfg, 1, 256, 256),
                             kwargs=dict(bits=8, sparsity=0.0, fmt="dense", seed=0), rounds=1, iterations=1)
    azsim_figures.record("layer_1x256x256", total_cycles=out["total_cycles"],
                         offchip_bytes=out["offchip_bytes"], energy_pj=out["energy_pj"]["total"])
    assert benchmark.extra_info["layer_1x256x256.total_cycles"] == out["total_cycles"]

def test_plain(azsim_figures):
    azsim_figures.record("plain", latency_ms=1.25)
'''


def test_pytest_plugin_writes_custom_smaller_is_better(tmp_path):
    (tmp_path / "test_fig.py").write_text(PLUGIN_TEST)
    out = tmp_path / "figs.json"
    bj = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "azsim.pytest_plugin", str(tmp_path / "test_fig.py"),
                        f"--azsim-figures={out}", f"--benchmark-json={bj}", "-p", "no:cacheprovider"],
                       capture_output=True, text=True, cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    items = json.loads(out.read_text())
    names = {e["name"]: e for e in items}
    assert set(names) == {"layer_1x256x256.total_cycles", "layer_1x256x256.offchip_bytes",
                          "layer_1x256x256.energy_pj", "plain.latency_ms"}
    assert names["layer_1x256x256.total_cycles"]["unit"] == "cycles"
    assert names["plain.latency_ms"] == {"name": "plain.latency_ms", "unit": "ms", "value": 1.25}
    assert all(set(e) == {"name", "unit", "value"} for e in items)
    extra = json.loads(bj.read_text())["benchmarks"][0]["extra_info"]
    assert extra["layer_1x256x256.total_cycles"] == names["layer_1x256x256.total_cycles"]["value"]
    # a run against itself moves nothing
    assert cli(out, out).returncode == 0
