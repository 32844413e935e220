"""`azsim table`: rows scored on the chip (and float on the host) over the same utterances,
missing rows reported, goals checked, results cached; the CLI prints text or JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from asr.quant import toy
from azsim.errors import ConfigError
from azsim.workflows import compare_recipes as cr

from test_score import _write_subset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("table")
    corpus = d / "corpus"
    corpus.mkdir()
    _write_subset(corpus, "dev", 4, 0)
    _write_subset(corpus, "test_clean", 4, 1)
    model = toy.save_random_model(d / "tiny.npz", seed=3)
    rows = d / "rows.toml"
    rows.write_text(f'''
[[row]]
id = "float32"
label = "float32"
model = "{model}"
float = true

[[row]]
id = "int8-ptq"
label = "int8 PTQ"
model = "{model}"
recipe = "{REPO / 'recipes' / 'int8.toml'}"

[[row]]
id = "int8-sparse50"
label = "int8 + 50% sparse"
model = "{model}"
recipe = "{REPO / 'recipes' / 'int8-sparse50.toml'}"
note = "one-shot here"

[[row]]
id = "int4-qat"
label = "int4 QAT"
recipe = "{d / 'int4-qat.toml'}"
''')
    # a trained-method recipe: the row takes the model (missing here) and its build from it
    # (a fine-tune config whose export, models/compress/pytest-never-built/, does not exist)
    (d / "never-built.toml").write_text('name = "pytest-never-built"\n[compress]\nmethod = "qat"\n')
    (d / "int4-qat.toml").write_text(f'''name = "int4-qat"
method = "qat"
build = ["{d / 'never-built.toml'}"]
bits = 4
solver = "round"
''')
    return d, corpus, model, rows


def test_table_rows_goals_and_cache(setup):
    d, corpus, model, rows = setup
    r = cr.table(rows=rows, limit=2, beam=2, corpus=corpus, cache_dir=d / "cache", progress=False)
    by = {x["id"]: x for x in r["rows"]}
    assert [x["id"] for x in r["rows"]] == ["float32", "int8-ptq", "int8-sparse50", "int4-qat"]
    assert by["int4-qat"]["status"] == "missing" and "never-built.toml" in by["int4-qat"]["error"]
    for rid in ("float32", "int8-ptq", "int8-sparse50"):
        assert by[rid]["status"] == "ok" and by[rid]["n"] == 2 and 0 <= by[rid]["wer"]
    f32 = by["float32"]
    assert f32["weight_bytes"] == by["int8-ptq"]["float32_bytes"]      # same parameter count
    assert f32.get("latency_ms") is None                                # no chip for float rows
    for rid in ("int8-ptq", "int8-sparse50"):
        assert by[rid]["latency_ms"] > 0 and by[rid]["energy_mj"] > 0
    assert by["int8-sparse50"]["weight_bytes"] < by["int8-ptq"]["weight_bytes"]
    goals = {g["id"]: g for g in r["goals"]}
    assert goals["int4-qat-wer"]["status"] == "not measured"
    assert goals["int8-qat-wer"]["status"] == "not measured"
    ratio = by["int8-sparse50"]["weight_bytes"] / by["int8-sparse50"]["float32_bytes"]
    assert goals["int8-sparse50-bytes"]["status"] == ("pass" if ratio <= 0.18 else "FAIL")
    d_pp = 100 * (by["int8-ptq"]["wer"] - f32["wer"])
    assert goals["int8-ptq-wer"]["status"] == ("pass" if d_pp <= 0.5 else "FAIL")
    assert f"{d_pp:+.2f} pp" in goals["int8-ptq-wer"]["measured"]
    text = cr.format_table(r)
    assert "int8 PTQ" in text and "missing" in text and "goals" in text and "one-shot here" in text
    # second run: every scored row comes from the cache, same numbers
    r2 = cr.table(rows=rows, limit=2, beam=2, corpus=corpus, cache_dir=d / "cache", progress=False,
                  only=["int8-ptq"])
    assert r2["rows"][0]["cached"] and r2["rows"][0]["wer"] == by["int8-ptq"]["wer"]


def test_goal_logic():
    rows = [{"id": "float32", "status": "ok", "wer": 0.100, "n": 10},
            {"id": "int8-ptq", "status": "ok", "wer": 0.104, "n": 10},
            {"id": "int8-qat", "status": "ok", "wer": 0.106, "n": 10},
            {"id": "int4-qat", "status": "ok", "wer": 0.115, "n": 10},
            {"id": "int4-regqat", "status": "ok", "wer": 0.114, "n": 10},
            {"id": "int8-sparse50", "status": "ok", "wer": 0.111, "n": 10, "weight_bytes": 170,
             "float32_bytes": 1000}]
    g = {x["id"]: x["status"] for x in cr.check_goals(rows)}
    assert g == {"int8-ptq-wer": "pass", "int8-qat-wer": "FAIL", "int8-sparse50-wer": "FAIL",
                 "int4-qat-wer": "pass", "int4-reg-vs-ste": "pass", "int8-sparse50-bytes": "pass"}


def test_rows_file_errors(tmp_path):
    p = tmp_path / "rows.toml"
    for body, match in (('[[row]]\nid = "a"\nlabel = "a"\nmodel = "m.npz"\n', "recipe"),
                        ('[[row]]\nid = "a"\nlabel = "a"\nmodel = "m.npz"\nfloat = 1\n', "float"),
                        ('[[row]]\nid = "a"\nlabel = "a"\nmodel = "m.npz"\nfloat = true\nbits = 4\n', "unknown"),
                        ('[[row]]\nid = "a"\nlabel = "a"\nmodel = "m"\nfloat = true\n'
                         '[[row]]\nid = "a"\nlabel = "b"\nmodel = "m"\nfloat = true\n', "twice"),
                        ('[[row]]\nid = "a"\nlabel = "a"\nfloat = true\n', "names its model"),
                        ('[[row]]\nid = "a"\nlabel = "a"\nmodel = "m"\nfloat = true\nbuild = "x"\n', "list of fine-tune"),
                        ('[[row]]\nid = "a"\nlabel = "a"\nrecipe = "recipes/int8.toml"\nbuild = ["x"]\n', "belongs in the row's recipe"),
                        ('[[row]]\nid = "a"\nlabel = "a"\nrecipe = "nope.toml"\n', "no such file"),
                        ('title = "x"\n', "no \\[\\[row\\]\\]"), ("[[row]\n", "TOML")):
        p.write_text(body)
        with pytest.raises(ConfigError, match=match):
            cr.load_rows(p)
    with pytest.raises(ConfigError, match="not found"):
        cr.load_rows(tmp_path / "none.toml")
    p.write_text('[[row]]\nid = "a"\nlabel = "a"\nmodel = "m"\nfloat = true\n')
    with pytest.raises(ConfigError, match="--only"):
        cr.table(rows=p, only=["b"])


def test_cli_json_and_shipped_rows_file(setup, capsys):
    from azsim.cli import main

    d, corpus, model, rows = setup
    rc = main(["table", "--rows", str(rows), "--limit", "2", "--beam", "2", "--corpus", str(corpus),
               "--cache-dir", str(d / "cache"), "--only", "float32", "int8-ptq", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in out["rows"]] == ["float32", "int8-ptq"] and len(out["goals"]) == 6
    # the repository's rows file names every row of issue 4's table
    ids = {r["id"] for r in cr.load_rows()}
    assert {"float32", "int8-ptq", "int8-qat", "int8-regqat", "int4-qat", "int8-sparse50",
            "int8-sparse80", "codebook4", "distilled"} <= ids
