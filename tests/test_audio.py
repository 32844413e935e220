"""asr.audio: WAV round trip and every bad-input case raising AudioError."""
import struct
import time
import warnings

import numpy as np
import pytest
import scipy.io.wavfile

from asr.audio import ALLOWED_RATES_HZ, load_wav, write_wav
from azsim.errors import AudioError


def _tone(n, rate=16000, f=440.0, amp=0.5):
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / rate)).astype(np.float32)


def test_roundtrip_16bit(tmp_path):
    x = _tone(1600)
    write_wav(tmp_path / "a.wav", x, 16000)
    y, rate = load_wav(tmp_path / "a.wav")
    assert rate == 16000 and y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) < 1e-4
    r, raw = scipy.io.wavfile.read(tmp_path / "a.wav")
    assert raw.dtype == np.int16


@pytest.mark.parametrize("rate", ALLOWED_RATES_HZ)
def test_allowed_rates_load(tmp_path, rate):
    write_wav(tmp_path / "r.wav", _tone(rate // 10, rate), rate)
    assert load_wav(tmp_path / "r.wav")[1] == rate


def test_float_wav_loads(tmp_path):
    scipy.io.wavfile.write(tmp_path / "f.wav", 16000, _tone(800))
    y, _ = load_wav(tmp_path / "f.wav")
    assert np.allclose(y, _tone(800))


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="nope.wav.*not found"):
        load_wav(tmp_path / "nope.wav")


def test_not_a_wav(tmp_path):
    p = tmp_path / "text.wav"
    p.write_text("hello, I am not audio\n" * 10)
    with pytest.raises(AudioError, match="text.wav.*not a WAV"):
        load_wav(p)


def test_truncated_header(tmp_path):
    p = tmp_path / "short.wav"
    p.write_bytes(b"RIFF\x00")
    with pytest.raises(AudioError, match="short.wav"):
        load_wav(p)


def test_empty_wav(tmp_path):
    p = tmp_path / "empty.wav"
    scipy.io.wavfile.write(p, 16000, np.zeros(0, np.int16))
    with pytest.raises(AudioError, match="empty.wav.*no samples"):
        load_wav(p)


def test_8bit_rejected(tmp_path):
    p = tmp_path / "u8.wav"
    scipy.io.wavfile.write(p, 16000, (128 + 100 * np.sin(np.arange(800) / 5)).astype(np.uint8))
    with pytest.raises(AudioError, match="u8.wav.*8-bit"):
        load_wav(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_samples(tmp_path, bad):
    x = _tone(800)
    x[100] = bad
    p = tmp_path / "nan.wav"
    scipy.io.wavfile.write(p, 16000, x)
    with pytest.raises(AudioError, match="nan.wav.*NaN or infinite"):
        load_wav(p)


@pytest.mark.parametrize("rate", [11025, 12000, 32000, 96000])
def test_unsupported_rate(tmp_path, rate):
    p = tmp_path / "rate.wav"
    scipy.io.wavfile.write(p, rate, (_tone(rate // 10, rate) * 32767).astype(np.int16))
    with pytest.raises(AudioError, match=rf"rate.wav.*{rate} Hz.*8000, 16000, 22050, 44100, 48000"):
        load_wav(p)


def test_two_hour_file_fails_fast(tmp_path):
    # A real 2-hour 16 kHz 16-bit WAV (230 MB, written as a sparse file so the test is quick).
    p = tmp_path / "long.wav"
    rate, n = 16000, 2 * 3600 * 16000
    data_bytes = 2 * n
    hdr = (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
           + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
           + b"data" + struct.pack("<I", data_bytes))
    with open(p, "wb") as f:
        f.write(hdr)
        f.seek(len(hdr) + data_bytes - 2)
        f.write(b"\x00\x00")
    t0 = time.perf_counter()
    with pytest.raises(AudioError, match=r"long.wav.*7200.0 s exceeds the limit of 600 s"):
        load_wav(p)
    assert time.perf_counter() - t0 < 0.5  # decided from the header, not by reading 230 MB


def test_stereo_to_mono_warns(tmp_path):
    left, right = _tone(800, f=300), _tone(800, f=700, amp=0.25)
    p = tmp_path / "stereo.wav"
    scipy.io.wavfile.write(p, 16000, (np.stack([left, right], 1) * 32767).astype(np.int16))
    with pytest.warns(UserWarning, match="stereo.wav.*2 channels averaged to mono"):
        y, rate = load_wav(p)
    assert y.ndim == 1 and y.shape[0] == 800
    assert np.max(np.abs(y - (left + right) / 2)) < 1e-3


def test_mono_does_not_warn(tmp_path):
    write_wav(tmp_path / "m.wav", _tone(800), 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_wav(tmp_path / "m.wav")


def test_write_rejects_bad_rate(tmp_path):
    with pytest.raises(AudioError, match="12345 Hz"):
        write_wav(tmp_path / "x.wav", _tone(100), 12345)


def test_24bit_pcm_loads(tmp_path):
    x = 0.5 * np.sin(np.arange(1600) / 10)
    v = np.round(x * (2 ** 23 - 1)).astype(np.int32)
    body = b"".join(struct.pack("<i", int(s))[:3] for s in v)
    hdr = (b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE"
           + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 48000, 3, 24)
           + b"data" + struct.pack("<I", len(body)))
    (tmp_path / "x24.wav").write_bytes(hdr + body)
    y, rate = load_wav(tmp_path / "x24.wav")
    assert rate == 16000 and np.max(np.abs(y - x)) < 1e-6
