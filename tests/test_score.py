"""`azsim score`: a small model on a small hand-built corpus, through the CLI and in process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr.quant import toy

REPO = Path(__file__).resolve().parents[1]
KEYS = ("wer", "weight_bytes", "peak_sram_bytes", "latency_ms", "latency_ms_p95", "energy_mj",
        "offchip_bytes_per_s", "rtf")
TEXTS = ["go back", "turn on the kitchen light", "call anna", "set a timer for two minutes",
         "stop", "what is the weather in paris"]


def _write_subset(d: Path, subset: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    feats, offsets, lines = [], [0], []
    for i in range(n):
        t = int(rng.integers(40, 90))                   # 10 ms log-mel frames
        feats.append(rng.normal(-5.0, 2.0, (t, 80)).astype(np.float16))
        offsets.append(offsets[-1] + t)
        lines.append(json.dumps({"path": f"wav/{subset}/{i}.wav", "text": TEXTS[i % len(TEXTS)],
                                 "voice": "v", "duration_s": (t * 160 + 240) / 16000}))
    np.save(d / f"{subset}.feats.npy", np.concatenate(feats))
    np.save(d / f"{subset}.offsets.npy", np.asarray(offsets, np.int64))
    (d / f"{subset}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    corpus = d / "corpus"
    corpus.mkdir()
    _write_subset(corpus, "dev", 4, 0)
    _write_subset(corpus, "test_clean", 5, 1)
    model = toy.save_random_model(d / "tiny.npz", seed=3)
    return d, corpus, model


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "azsim.cli", "score", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_score_cli_json(setup):
    d, corpus, model = setup
    p = _cli("--model", model, "--corpus", corpus, "--limit", 3, "--json", "--beam", 2)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    for k in KEYS:
        assert k in r and isinstance(r[k], (int, float)), k
    assert r["n"] == 3 and r["recipe"] == "int8" and r["preset"] == "default"
    assert r["wer"] >= 0 and r["weight_bytes"] > 0 and r["latency_ms"] > 0
    assert r["latency_ms_p95"] >= r["latency_ms"] * 0.999 or r["n"] < 3
    assert r["energy_mj"] > 0 and r["rtf"] > 0 and r["peak_sram_bytes"] >= r["weight_bytes"] * 0.5
    assert r["weight_bytes"] < 0.3 * r["float32_bytes"]
    assert "score int8" in p.stderr          # the progress bar


def test_score_in_process(setup, tmp_path):
    from azsim.workflows.score import score
    d, corpus, model = setup
    a = score(model=model, corpus=corpus, limit=3, beam=2, progress=False, compare_float=True,
              per_utterance=True, save_quantized=tmp_path / "q.npz")
    b = score(model=model, recipe=REPO / "recipes" / "int8-sparse50.toml", corpus=corpus, limit=3,
              beam=2, progress=False)
    assert b["weight_bytes"] < 0.75 * a["weight_bytes"]
    assert "float_wer" in a and len(a["utterances"]) == 3
    for u in a["utterances"]:
        assert u["latency_ms"] > 0 and u["energy_mj"]["total"] > 0 and u["frames"] > 0
    # the saved quantized model scores identically (same integer model, no recalibration)
    c = score(model=tmp_path / "q.npz", corpus=corpus, limit=3, beam=2, progress=False,
              per_utterance=True)
    assert [u["text"] for u in c["utterances"]] == [u["text"] for u in a["utterances"]]
    assert c["weight_bytes"] == a["weight_bytes"] and c["energy_mj"] == pytest.approx(a["energy_mj"])


def test_score_takes_the_model_a_recipe_names(setup, tmp_path):
    from azsim.workflows.score import score
    d, corpus, model = setup
    rec = tmp_path / "qat.toml"
    rec.write_text(f'name = "qat"\nmethod = "qat"\nmodel = "{model}"\n'
                   f'build = ["configs/compress/qat-int8.toml"]\nsolver = "round"\n')
    from asr.quant import recipe as recipe_mod
    assert not recipe_mod.load(rec).builds_its_model()   # `model` names another file: no build
    r = score(recipe=rec, corpus=corpus, limit=1, beam=1, progress=False)
    assert r["model"] == str(model) and r["recipe"] == "qat"
    p = _cli("--recipe", rec, "--corpus", corpus, "--limit", 1, "--beam", 1, "--json")   # the CLI too
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["model"] == str(model)


def test_score_errors(setup, tmp_path):
    d, corpus, model = setup
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(model.read_bytes()[:1000])
    p = _cli("--model", trunc, "--corpus", corpus, "--limit", 1)
    assert p.returncode == 2 and str(trunc) in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nbits = 6\n')
    p = _cli("--model", model, "--corpus", corpus, "--recipe", bad, "--limit", 1)
    assert p.returncode == 2 and str(bad) in p.stderr and "bits" in p.stderr
    assert "Traceback" not in p.stderr
