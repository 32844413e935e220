"""asr.features against references computed independently in this file."""
import numpy as np
import pytest

from asr import features as F


def _tone(f_hz, seconds=0.5, rate=16000, amp=0.5):
    return (amp * np.sin(2 * np.pi * f_hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_frame_count_rule():
    assert F.n_frames(399) == 0
    assert F.n_frames(400) == 1
    assert F.n_frames(559) == 1
    assert F.n_frames(560) == 2
    assert F.log_mel(np.zeros(16000, np.float32), 16000).shape == (98, 80)
    assert F.log_mel(np.zeros(100, np.float32), 16000).shape == (0, 80)


def test_filterbank_is_htk_triangles():
    fb = F.mel_filterbank()
    assert fb.shape == (257, 80) and fb.dtype == np.float32
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = inv(np.linspace(mel(20.0), mel(7600.0), 82))
    bins_hz = np.arange(257) * 16000 / 512
    for j in (0, 40, 79):
        col = fb[:, j]
        nz = bins_hz[col > 0]
        assert nz.min() > edges[j] and nz.max() < edges[j + 2]  # support inside the edges
        assert col.max() <= 1.0 + 1e-6
    assert np.all(fb[bins_hz < 20.0] == 0) and np.all(fb[bins_hz > 7600.0] == 0)


def test_1khz_tone_matches_direct_dft():
    x = _tone(1000.0)
    feats = F.log_mel(x, 16000)
    # The loudest mel band is one whose triangle contains 1 kHz.
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = inv(np.linspace(mel(20.0), mel(7600.0), 82))
    peak = int(np.argmax(feats[10]))
    assert edges[peak] < 1000.0 < edges[peak + 2]
    assert abs(edges[peak + 1] - 1000.0) < (edges[peak + 2] - edges[peak]) / 2
    # Frame 7 by hand: samples [1120, 1520), periodic Hann, 512-point DFT as an explicit sum.
    t = 7
    seg = x[160 * t: 160 * t + 400].astype(np.float64)
    n = np.arange(400)
    seg = seg * (0.5 - 0.5 * np.cos(2 * np.pi * n / 400))
    k = np.arange(257)[:, None]
    re = (seg[None, :] * np.cos(2 * np.pi * k * n[None, :] / 512)).sum(1)
    im = (seg[None, :] * np.sin(2 * np.pi * k * n[None, :] / 512)).sum(1)
    power = re ** 2 + im ** 2
    ref = np.log(power @ F.mel_filterbank().astype(np.float64) + 1e-6)
    assert np.allclose(feats[t], ref, atol=2e-4, rtol=1e-4)
    # Every frame of a steady tone is the same up to phase effects, and the peak is large.
    assert np.all(np.argmax(feats, axis=1) == peak)
    assert feats[t, peak] > feats[t].mean() + 10


def test_resample_8k_to_16k():
    x8 = _tone(500.0, rate=8000)
    y = F.resample_to_16k(x8, 8000)
    assert y.shape[0] == 2 * x8.shape[0] and y.dtype == np.float32
    ref = _tone(500.0, rate=16000)
    mid = slice(200, -200)  # away from the filter's edge transients
    assert np.max(np.abs(y[mid] - ref[mid])) < 1e-2
    f8, f16 = F.log_mel(x8, 8000), F.log_mel(ref, 16000)
    assert f8.shape == f16.shape
    assert np.argmax(f8[5]) == np.argmax(f16[5])


def test_stack_frames_shapes_and_order():
    feats = np.arange(10 * 80, dtype=np.float32).reshape(10, 80)
    st = F.stack_frames(feats, 3)
    assert st.shape == (3, 240)
    assert np.array_equal(st[1], np.concatenate([feats[3], feats[4], feats[5]]))
    assert F.stack_frames(feats[:2], 3).shape == (0, 240)  # tail shorter than 3 frames is dropped
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    out = F.features(x, 16000)
    assert out.shape == (98 // 3, 240) and out.dtype == np.float32


@pytest.mark.parametrize("rate", [16000, 8000, 22050, 44100, 48000])
def test_stream_equals_batch(rate):
    rng = np.random.default_rng(rate)
    x = (rng.standard_normal(int(1.3 * rate)) * 0.1).astype(np.float32)
    ref = F.features(x, rate)
    stream = F.FeatureStream(rate)
    outs, i = [], 0
    while i < x.shape[0]:
        n = int(rng.integers(1, 2500))
        outs.append(stream.push(x[i:i + n]))
        i += n
    outs.append(stream.flush())
    got = np.concatenate(outs)
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) < 1e-4


def test_stream_emits_early_at_16k():
    s = F.FeatureStream(16000)
    assert s.push(np.zeros(400 + 2 * 160 - 1, np.float32)).shape == (0, 240)
    assert s.push(np.zeros(1, np.float32)).shape == (1, 240)  # third frame complete -> one stack
    with pytest.raises(RuntimeError):
        s.flush(); s.push(np.zeros(10, np.float32))  # noqa: E702
