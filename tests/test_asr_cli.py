"""`azsim transcribe` / `eval` / `train` wiring, error exits, and the metrics they report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr.audio import write_wav
from asr.decode.toy import save_random_numpy_rnnt
from asr.metrics import digit_accuracy, error_rates, subset_metrics
from azsim.cli import main

REPO = Path(__file__).resolve().parents[1]


def _speechy(rate_hz, seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    f = 250 + 150 * np.sin(2 * np.pi * (0.5 + rng.random()) * t)
    env = np.clip(np.sin(2 * np.pi * 2.7 * t), 0, None)
    return (0.3 * env * np.sin(2 * np.pi * np.cumsum(f) / rate_hz)
            + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_random_numpy_rnnt(tmp_path_factory.mktemp("model") / "model.npz", seed=3)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("wav")
    out = []
    for i, (rate, sec) in enumerate([(16000, 1.5), (8000, 1.0)]):
        p = d / f"utt{i}.wav"
        write_wav(p, _speechy(rate, sec, i), rate)
        out.append((p, sec))
    return out


def test_transcribe_json(model_path, wavs, capsys):
    from asr.audio import load_wav
    from asr.model.numpy_rnnt import NumpyRNNT
    from asr.stream import recognize

    rc = main(["transcribe", *[str(p) for p, _ in wavs], "--model", str(model_path), "--beam", "4", "--json"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(wavs)
    model = NumpyRNNT.load(model_path)
    for line, (path, sec) in zip(lines, wavs):
        obj = json.loads(line)
        assert obj["file"] == str(path)
        assert obj["seconds"] == pytest.approx(sec, abs=1e-3)
        assert obj["decode_seconds"] > 0
        assert 1 <= len(obj["nbest"]) <= 4
        scores = [n["score"] for n in obj["nbest"]]
        assert scores == sorted(scores, reverse=True)
        assert obj["nbest"][0]["text"] == obj["text"]
        expected = recognize(model, *load_wav(path), beam=4)
        assert obj["text"] == expected.text
        assert obj["lattice_bytes"] == expected.lattice.size_bytes() > 0


def test_transcribe_streaming_equals_offline(model_path, wavs, capsys):
    args = [str(p) for p, _ in wavs] + ["--model", str(model_path), "--json"]
    assert main(["transcribe", *args]) == 0
    offline = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main(["transcribe", *args, "--chunk-ms", "70"]) == 0
    streamed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["text"] for o in streamed] == [o["text"] for o in offline]
    assert [o["lattice_bytes"] for o in streamed] == [o["lattice_bytes"] for o in offline]


def test_transcribe_plain_and_lattice(model_path, wavs, capsys):
    path = str(wavs[0][0])
    assert main(["transcribe", path, "--model", str(model_path), "--beam", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ")
    assert main(["transcribe", path, "--model", str(model_path), "--json", "--lattice"]) == 0
    obj = json.loads(capsys.readouterr().out)
    from asr.decode import Lattice
    lat = Lattice.from_json(json.dumps(obj["lattice"]))
    assert lat.size_bytes() == obj["lattice_bytes"]
    assert " ".join(lat.best_path()[0]) == obj["text"]


def test_missing_wav_and_model_exit_2(model_path, wavs, tmp_path, capsys):
    missing = tmp_path / "nope.wav"
    assert main(["transcribe", str(missing), "--model", str(model_path)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err and len(err.strip().splitlines()) == 1
    bad_model = tmp_path / "nope.npz"
    assert main(["transcribe", str(wavs[0][0]), "--model", str(bad_model)]) == 2
    err = capsys.readouterr().err
    assert str(bad_model) in err and len(err.strip().splitlines()) == 1
    not_wav = tmp_path / "x.wav"
    not_wav.write_text("hello")
    assert main(["transcribe", str(not_wav), "--model", str(model_path)]) == 2
    assert str(not_wav) in capsys.readouterr().err
    assert main(["train", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err


def test_bad_beam_is_a_usage_error(model_path, wavs):
    with pytest.raises(SystemExit) as exc:
        main(["transcribe", str(wavs[0][0]), "--model", str(model_path), "--beam", "0"])
    assert exc.value.code == 2


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from azsim.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'numba', 'asr.model', 'asr.decode') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _fake_corpus(root: Path) -> Path:
    from corpus_helpers import fake_corpus
    return fake_corpus(root, {"test_clean": ["turn on the lights", "call mom"], "test_noisy": ["stop"],
                              "test_fsdd": ["seven", "zero", "one"]}, audio=_speechy)


def test_eval_on_tiny_corpus(model_path, tmp_path, capsys, monkeypatch):
    from asr.data import corpus
    corpus_dir = _fake_corpus(tmp_path)
    seen = {}

    def fake_build(data_cfg, cache_dir=None, **kw):
        seen["data"] = data_cfg
        return corpus_dir

    monkeypatch.setattr(corpus, "build", fake_build)
    rc = main(["eval", "--model", str(model_path), "--beam", "2", "--limit", "2", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    # no config.toml beside the model: the corpus comes from configs/shipped.toml's [data]
    assert report["config"].endswith("configs/shipped.toml") and seen["data"]["seed"] == 0
    subs = report["subsets"]
    assert set(subs) == {"test_clean", "test_noisy", "test_fsdd"}
    assert [subs[s]["n"] for s in ("test_clean", "test_noisy", "test_fsdd")] == [2, 1, 2]
    assert "digit_accuracy" in subs["test_fsdd"] and "digit_accuracy" not in subs["test_clean"]
    for r in subs.values():
        assert r["wer"] >= 0 and r["cer"] >= 0 and r["rtf"] > 0 and r["audio_seconds"] > 0
        assert r["rtf_cpu"] > 0
    # the same numbers from the metrics module, decoding the same features directly
    from asr.features import stack_frames
    from asr.model.numpy_rnnt import NumpyRNNT
    from asr.stream import decode_features
    model = NumpyRNNT.load(model_path)
    utts = corpus.load_subset(corpus_dir, "test_clean")
    hyps = [decode_features(model, stack_frames(np.asarray(u.feats, np.float32)), beam=2).text for u in utts]
    assert subs["test_clean"]["wer"] == pytest.approx(error_rates([u.text for u in utts], hyps)["wer"])
    # table output
    assert main(["eval", "--model", str(model_path), "--subsets", "test_fsdd", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "test_fsdd" in out and "test_clean" not in out


def test_metrics():
    r = error_rates(["call mom", "turn on the light"], ["call tom", "turn on the light"])
    assert r["wer"] == pytest.approx(1 / 6) and r["ref_words"] == 6
    assert r["cer"] == pytest.approx(1 / 25)
    # normalization: case, punctuation and digits do not count
    assert error_rates(["Call Mom!"], ["call mom"])["wer"] == 0.0
    assert error_rates(["set a timer for 5 minutes"], ["set a timer for five minutes"])["wer"] == 0.0
    # empty reference: every hypothesis word is an insertion
    assert error_rates(["", "a b"], ["x", "a b"])["word_errors"] == 1
    assert digit_accuracy(["seven", "one"], ["seven", "won"]) == 0.5
    assert subset_metrics(["one"], ["one"], digits=True)["digit_accuracy"] == 1.0
    with pytest.raises(ValueError, match="references"):
        error_rates(["a"], [])


def test_eval_on_a_given_corpus_directory(model_path, tmp_path, capsys):
    """--corpus decodes another build (no corpus.build call); a directory without the subset
    is a clear error naming it."""
    corpus_dir = _fake_corpus(tmp_path)
    rc = main(["eval", "--model", str(model_path), "--corpus", str(corpus_dir), "--subsets", "test_noisy",
               "--beam", "1", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["corpus"] == str(corpus_dir) and report["subsets"]["test_noisy"]["n"] == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--model", str(model_path), "--corpus", str(empty), "--subsets", "test_clean"]) == 2
    assert "has no built subset(s) test_clean" in capsys.readouterr().err
