"""azsim fit: budgets parsed with units, each kind of breach flagged on cases with known answers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from azsim.errors import ConfigError
from azsim.workflows import budget

ROOT = Path(__file__).resolve().parents[1]
FIG = {"weight_bytes": 1_500_000, "flash_bytes": 1_600_000, "peak_sram_bytes": 400 * 1024,
       "latency_ms": 150.0, "latency_ms_p95": 190.0, "energy_mj": 4.0, "wer": 0.07, "rtf": 0.2,
       "offchip_bytes_per_s": 3e6}
ALL_OK = "flash=2MB,sram=512KB,latency_ms=200,energy_mj=5,wer=8"


def test_parse_units():
    b = budget.parse_budgets("flash=2MB,sram=512KB,latency_ms=0.2s,energy_mj=5000uJ,wer=8%,rtf=0.5")
    assert b == {"flash": 2 * 1024**2, "sram": 512 * 1024, "latency_ms": pytest.approx(200.0),
                 "energy_mj": pytest.approx(5.0), "wer": 8.0, "rtf": 0.5}
    assert budget.parse_budgets("flash=2048")["flash"] == 2048.0   # bare number: base unit (bytes)


@pytest.mark.parametrize("text,needle", [
    ("flash=2XB", "unknown unit 'XB' in '2XB' (allowed units: B, KB, KiB, MB, MiB, GB, GiB)"),
    ("latency_ms=3parsecs", "unknown unit 'parsecs'"),
    ("ram=1MB", "unknown budget 'ram' (allowed: flash"),
    ("flash", "is not NAME=VALUE"),
    ("flash=", "is not NAME=VALUE"),
    ("flash=lots", "not a number with a unit"),
    ("wer=8,wer=9", "given twice"),
    ("energy_mj=-1", "negative"),
    ("", "empty"),
])
def test_bad_budgets(text, needle):
    with pytest.raises(ConfigError) as ei:
        budget.parse_budgets(text)
    assert needle in str(ei.value)


def test_everything_fits():
    rows, ok = budget.check(FIG, budget.parse_budgets(ALL_OK))
    assert ok and all(r["ok"] for r in rows)
    by = {r["budget"]: r for r in rows}
    assert by["flash"]["figure"] == "flash_bytes"            # weights + constants when known
    assert by["flash"]["margin"] == 2 * 1024**2 - 1_600_000
    assert by["wer"]["value"] == pytest.approx(7.0) and by["wer"]["margin"] == pytest.approx(1.0)
    assert by["latency_ms"]["margin_pct"] == pytest.approx(25.0)


@pytest.mark.parametrize("name,metric,bad_value", [
    ("flash", "flash_bytes", 2 * 1024**2 + 1),
    ("sram", "peak_sram_bytes", 512 * 1024 + 1),
    ("latency_ms", "latency_ms", 200.01),
    ("energy_mj", "energy_mj", 5.001),
    ("wer", "wer", 0.0801),
])
def test_each_breach_is_flagged_alone(name, metric, bad_value):
    fig = dict(FIG, **{metric: bad_value})
    rows, ok = budget.check(fig, budget.parse_budgets(ALL_OK))
    assert not ok
    assert [r["budget"] for r in rows if not r["ok"]] == [name]
    r = next(r for r in rows if r["budget"] == name)
    assert r["margin"] < 0 and r["margin_pct"] < 0
    assert "OVER" in budget.format_table(rows)


def test_exactly_at_budget_fits_and_missing_figure_fails():
    rows, ok = budget.check({"energy_mj": 5.0}, budget.parse_budgets("energy_mj=5"))
    assert ok and rows[0]["margin"] == 0
    rows, ok = budget.check({"energy_mj": 5.0}, budget.parse_budgets("energy_mj=5,sram=1MB"))
    assert not ok and rows[1]["note"] == "figure missing"
    assert "MISSING" in budget.format_table(rows)


def _fit(tmp_path, figures, budgets):
    f = tmp_path / "score.json"
    f.write_text(json.dumps(figures))
    return subprocess.run([sys.executable, "-m", "azsim.cli", "fit", "--figures", str(f), "--budget", budgets],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli_exit_codes(tmp_path):
    r = _fit(tmp_path, FIG, ALL_OK)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FITS" in r.stdout and "margin" in r.stdout
    r = _fit(tmp_path, dict(FIG, latency_ms=250.0, wer=0.09), ALL_OK)
    assert r.returncode == 1
    assert "DOES NOT FIT: 2 of 5" in r.stdout
    r = _fit(tmp_path, FIG, "flash=2XB")
    assert r.returncode == 2
    assert "unknown unit 'XB'" in r.stderr and "allowed units" in r.stderr


def test_fit_scores_a_tiny_model_end_to_end(tmp_path):
    """Budgets set 1% above / below what azsim score measures: fits, then each flagged."""
    toy = pytest.importorskip("asr.quant.toy")
    sys.path.insert(0, str(ROOT / "tests"))
    from test_sweep import _tiny_corpus

    from azsim.workflows.score import score

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _tiny_corpus(corpus)
    model = toy.save_random_model(tmp_path / "tiny.npz", seed=3)
    recipe = ROOT / "recipes" / "int8.toml"
    r = score(model=model, recipe=recipe, corpus=corpus, limit=2, beam=2, progress=False)
    figs = {"flash": r["flash_bytes"], "sram": r["peak_sram_bytes"], "latency_ms": r["latency_ms"],
            "energy_mj": r["energy_mj"]}

    def run(scale):
        b = ",".join(f"{k}={v * scale:.9g}" for k, v in figs.items())
        return subprocess.run([sys.executable, "-m", "azsim.cli", "fit", "--model", str(model), "--recipe",
                               str(recipe), "--corpus", str(corpus), "--limit", "2", "--beam", "2",
                               "--budget", b, "--json"], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    ok = run(1.01)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    over = run(0.99)
    assert over.returncode == 1
    rows = json.loads(over.stdout)["budgets"]
    assert sorted(r["budget"] for r in rows if not r["ok"]) == sorted(figs)
