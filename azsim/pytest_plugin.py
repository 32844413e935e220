"""pytest plugin: record simulated figures for CI dashboards.

Enable with `-p azsim.pytest_plugin` (or `pytest_plugins = ["azsim.pytest_plugin"]` in a
conftest). Tests then ask for the `azsim_figures` fixture:

    def test_layer_speed(benchmark, azsim_figures):
        out = benchmark(simulate_layer)
        azsim_figures.record("layer_1x1024x4096", cycles=out["total_cycles"],
                             energy_pj=out["energy_pj"]["total"])

Each figure goes into pytest-benchmark's `extra_info` (when the test uses `benchmark`) and into
a session-wide list that `--azsim-figures PATH` writes at the end in github-action-benchmark's
customSmallerIsBetter shape ([{"name", "unit", "value"}]); compare two such files with
`azsim compare BEFORE.json AFTER.json --threshold 5%`.
"""
from __future__ import annotations

import math

import pytest

from azsim.workflows import bench

_KEY = pytest.StashKey[list]()


def pytest_addoption(parser):
    parser.addoption("--azsim-figures", metavar="PATH", default=None,
                     help="write simulated figures recorded by azsim_figures as customSmallerIsBetter JSON")


def pytest_configure(config):
    config.stash[_KEY] = []


class FigureRecorder:
    def __init__(self, sink: list, request):
        self._sink = sink
        self._request = request
        self.recorded: list[dict] = []

    def record(self, prefix: str, unit: str | None = None, **figures) -> None:
        """Record figures named `<prefix>.<key>`; the unit comes from the name's suffix
        (_cycles, _bytes, _ms, _mj, _pj, cycles) unless `unit` is given."""
        bm = None
        if "benchmark" in self._request.fixturenames:
            bm = self._request.getfixturevalue("benchmark")
        for k, v in figures.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"azsim_figures.record: {k} = {v!r} is not a finite number")
            name = f"{prefix}.{k}" if prefix else k
            e = {"name": name, "unit": unit if unit is not None else bench.unit_of(name), "value": float(v)}
            self.recorded.append(e)
            self._sink.append(e)
            if bm is not None:
                bm.extra_info[name] = e["value"]


@pytest.fixture
def azsim_figures(request) -> FigureRecorder:
    return FigureRecorder(request.config.stash[_KEY], request)


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--azsim-figures")
    if path:
        items = session.config.stash[_KEY]
        merged = {e["name"]: e for e in items}    # the last record of a name wins
        bench.write(path, list(merged.values()))
