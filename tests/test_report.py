"""azsim report: the HTML page, its plots, and that it renders in headless Chromium."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from azsim.workflows import spec as spec_mod
from azsim.workflows import sweep

ROOT = Path(__file__).resolve().parents[1]
SPEC = """
[sweep]
evaluator = "layer"
[options]
layers = [[1, 256, 512], [1, 512, 256], [1, 128, 32]]
frames = 6
frame_ms = 0.05
[recipes]
dense = { bits = 8, format = "dense" }
sparse = { bits = 8, format = "bitmask", sparsity = 0.5 }
[hw]
"mac_array.rows" = [8, 32]
"offchip.bytes_per_cycle" = [0.5, 8.0]
"sram.weight_bytes" = ["64KB", "1MB"]
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    (d / "spec.toml").write_text(SPEC)
    db = d / "r.db"
    sweep.run(spec_mod.load(d / "spec.toml"), db, jobs=1, progress=False)
    out = d / "out"
    r = subprocess.run([sys.executable, "-m", "azsim.cli", "report", str(db), "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    return out


def test_page_has_every_section_and_embeds_its_plots(report):
    page = (report / "index.html").read_text()
    for h in ("Pareto front", "Roofline of each layer", "Per-frame timeline against the real-time deadline",
              "Energy by component", "Sweep table"):
        assert h in page
    for png in ("pareto.png", "roofline.png", "timeline.png", "energy.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.count("src='data:image/png;base64,") == 4      # self-contained
    assert page.count("<tr class='front") >= 2                   # front rows in both tables
    assert "not available" not in page
    # 16 points in the sweep table (+ header), front table first
    assert page.split("Sweep table")[1].count("<tr") == 17


def test_slow_chip_misses_the_deadline_in_the_timeline(tmp_path):
    """frame_ms = 0.05 ms is tight: the chosen point's timeline says how many frames miss it."""
    from azsim.report import html
    d = tmp_path
    (d / "spec.toml").write_text(SPEC)
    db = d / "r.db"
    sweep.run(spec_mod.load(d / "spec.toml"), db, jobs=1, progress=False)
    from azsim.workflows.store import load_rows
    slow = next(r for r in load_rows(db) if r["params"]["mac_array.rows"] == 8
                and r["params"]["offchip.bytes_per_cycle"] == 0.5 and r["recipe"] == "dense"
                and r["params"]["sram.weight_bytes"] == 65536)
    assert slow["metrics"]["latency_ms"] > 0.05
    path = html.build(db, d / "out", point_key=slow["key"][:12])
    page = path.read_text()
    assert f"<code>{slow['key']}</code>" in page


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed "
                    "(Debian: apt-get install -y chromium); the page itself is still tested above")
def test_renders_in_headless_chromium(report):
    shot = report / "screenshot.png"
    r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1200,2400", f"--screenshot={shot}", (report / "index.html").as_uri()],
                       capture_output=True, text=True, timeout=120, cwd=report)
    assert shot.is_file(), r.stderr[-2000:]
    from PIL import Image
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape[:2] == (2400, 1200)
    # not a blank page: the plots and tables put plenty of dark and mid-grey pixels on it
    assert (img < 128).mean() > 0.01 and img.std() > 20
