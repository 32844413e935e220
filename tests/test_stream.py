"""Streaming recognition equals offline recognition, whatever the chunk sizes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asr.decode.toy import RandomRNNT, save_random_numpy_rnnt
from asr.stream import Recognizer, decode_features, recognize


def _audio(rate_hz: int, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Gliding tones with syllable-like amplitude bursts plus a little noise (seeded)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    f = 300 + 200 * np.sin(2 * np.pi * 0.7 * t) + 150 * rng.standard_normal() * t
    env = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 2
    x = 0.3 * env * (np.sin(2 * np.pi * np.cumsum(f) / rate_hz) + 0.4 * np.sin(2 * np.pi * 3 * np.cumsum(f) / rate_hz))
    return (x + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def numpy_model(tmp_path_factory):
    from asr.model.numpy_rnnt import NumpyRNNT
    return NumpyRNNT.load(save_random_numpy_rnnt(tmp_path_factory.mktemp("m") / "random.npz", seed=3))


def _stream(model, audio, rate_hz, beam, seed):
    rec = Recognizer(model, beam=beam)
    rng = np.random.default_rng(seed)
    i, partials = 0, []
    while i < audio.size:
        n = int(rng.integers(1, 3000))
        partials.append(rec.accept_audio(audio[i:i + n], rate_hz))
        i += n
    return rec.finalize(), partials


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("rate_hz", [16000, 8000, 22050])
def test_streaming_equals_offline_toy(beam, rate_hz):
    model = RandomRNNT(1, blank_bias=2.5)
    audio = _audio(rate_hz, seed=rate_hz)
    offline = recognize(model, audio, rate_hz, beam=beam)
    for seed in range(2):
        result, partials = _stream(model, audio, rate_hz, beam, seed)
        assert result.frames == offline.frames > 50
        assert result.text == offline.text
        assert [h.tokens for h in result.nbest] == [h.tokens for h in offline.nbest]
        assert [h.score for h in result.nbest] == pytest.approx([h.score for h in offline.nbest], abs=1e-3)
        assert result.lattice.paths() is not None
        assert result.audio_seconds == pytest.approx(audio.size / rate_hz)
    assert offline.text  # the random model does say something


@pytest.mark.parametrize("beam", [1, 4])
def test_streaming_equals_offline_numpy_rnnt(numpy_model, beam):
    audio = _audio(16000, 2.5, seed=7)
    offline = recognize(numpy_model, audio, 16000, beam=beam)
    result, partials = _stream(numpy_model, audio, 16000, beam, seed=5)
    assert offline.text
    assert result.text == offline.text
    assert [h.tokens for h in result.nbest] == [h.tokens for h in offline.nbest]
    assert result.lattice.to_json() == offline.lattice.to_json()


def test_partials_grow_and_finalize_is_final():
    model = RandomRNNT(1, blank_bias=2.5)
    audio = _audio(16000, 3.0, seed=2)
    rec = Recognizer(model, beam=4)
    partials = [rec.accept_audio(audio[i:i + 1600], 16000) for i in range(0, audio.size, 1600)]
    assert partials[0] == "" or len(partials[0]) <= len(partials[-1])
    assert any(partials)
    result = rec.finalize()
    assert result.nbest[0].text == result.text
    with pytest.raises(RuntimeError, match="after finalize"):
        rec.accept_audio(audio[:100], 16000)
    rec.reset()
    rec.accept_audio(audio, 16000)
    assert rec.finalize().text == result.text


def test_rate_change_mid_stream_is_refused():
    rec = Recognizer(RandomRNNT(0))
    rec.accept_audio(np.zeros(800, np.float32), 16000)
    with pytest.raises(ValueError, match="sample rate changed"):
        rec.accept_audio(np.zeros(800, np.float32), 8000)


def test_accept_features_matches_decode_features():
    model = RandomRNNT(4)
    feats = np.random.default_rng(0).standard_normal((40, 240)).astype(np.float32)
    rec = Recognizer(model, beam=4)
    rec.accept_features(feats[:13])
    rec.accept_features(feats[13:])
    assert rec.finalize().text == decode_features(model, feats, beam=4).text


def test_result_dict():
    model = RandomRNNT(1, blank_bias=2.5)
    result = recognize(model, _audio(16000), 16000, beam=4)
    d = result.as_dict()
    assert d["text"] == result.text
    assert [n["text"] for n in d["nbest"]] == [h.text for h in result.nbest]
    assert d["lattice_bytes"] == len(result.lattice.to_json().encode())


def test_snapshot_does_not_disturb_the_stream():
    model = RandomRNNT(1, blank_bias=2.5)
    audio = _audio(16000, 3.0, seed=4)
    plain, snooped = Recognizer(model, beam=4), Recognizer(model, beam=4)
    snaps = []
    for i in range(0, audio.size, 4000):
        plain.accept_audio(audio[i:i + 4000], 16000)
        snooped.accept_audio(audio[i:i + 4000], 16000)
        snaps.append(snooped.snapshot())
        assert snaps[-1].text == snooped.partial_text
        assert snaps[-1].frames == snooped.search.frames_done
    a, b = plain.finalize(), snooped.finalize()
    assert [(h.tokens, h.score) for h in a.nbest] == [(h.tokens, h.score) for h in b.nbest]
    assert any(s.text for s in snaps) and snaps[0].frames < snaps[-1].frames


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "shipped" / "model.npz"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped model")
def test_shipped_model_on_real_recordings():
    """The trained model on real human digits (FSDD test takes, 8 kHz): streaming in random
    chunks equals offline, beam 1 equals greedy, and the lattice holds the N-best list."""
    from asr.audio import load_wav
    from asr.data.fsdd import fsdd_dir
    from asr.decode import Lattice, beam_search, greedy_search
    from asr.model.numpy_rnnt import NumpyRNNT
    wavs = [fsdd_dir() / "recordings" / f"{d}_jackson_0.wav" for d in (3, 7)]
    if not all(w.is_file() for w in wavs):
        pytest.skip("FSDD recordings not available")
    model = NumpyRNNT.load(SHIPPED)
    for wav in wavs:
        audio, rate_hz = load_wav(wav)
        offline = recognize(model, audio, rate_hz, beam=4)
        result, _ = _stream(model, audio, rate_hz, 4, seed=1)
        assert result.text == offline.text
        assert [h.tokens for h in result.nbest] == [h.tokens for h in offline.nbest]
        from asr.features import features
        enc, _ = model.encode(features(audio, rate_hz), model.encoder_init())
        (b1,) = beam_search(model, enc, beam=1)
        g = greedy_search(model, enc)
        assert b1.tokens == g.tokens and b1.score == pytest.approx(g.score, abs=1e-4)
        paths = dict(Lattice.from_hypotheses(offline.nbest).paths())
        assert all(tuple(h.text.split()) in paths for h in offline.nbest)
