"""Reading and writing WAV files, with every bad input turned into an AudioError.

Reading uses the stdlib `wave` module for the header (so a 2-hour file is refused from its
frame count without reading its samples) and scipy.io.wavfile for the samples, which also
covers IEEE-float WAVs that `wave` cannot open.
"""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np

from azsim.errors import AudioError

ALLOWED_RATES_HZ: tuple[int, ...] = (8000, 16000, 22050, 44100, 48000)
MAX_DURATION_S = 600.0  # 10 minutes: commands are seconds long; longer input is a mistake


def _header(path: Path) -> tuple[int, int, int, int, int]:
    """(format_tag, channels, rate_hz, bits_per_sample, n_frames) from the RIFF header.

    Parses chunks directly so float WAVs (format 3) and WAVE_FORMAT_EXTENSIBLE are covered.
    """
    with open(path, "rb") as f:
        riff = f.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise AudioError(f"{path}: not a WAV file (no RIFF/WAVE header)")
        fmt = None
        while True:
            hdr = f.read(8)
            if len(hdr) < 8:
                break
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"fmt ":
                body = f.read(size)
                if len(body) < 16:
                    raise AudioError(f"{path}: not a WAV file (truncated fmt chunk)")
                tag, ch, rate, _, block, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == 0xFFFE and len(body) >= 26:  # extensible: real tag in the subformat GUID
                    tag = struct.unpack("<H", body[24:26])[0]
                fmt = (tag, ch, rate, bits, block)
            elif cid == b"data":
                if fmt is None:
                    raise AudioError(f"{path}: not a WAV file (data chunk before fmt chunk)")
                tag, ch, rate, bits, block = fmt
                n_frames = size // block if block else 0
                return tag, ch, rate, bits, n_frames
            else:
                f.seek(size + (size & 1), 1)
        raise AudioError(f"{path}: not a WAV file (no fmt/data chunk)")


def load_wav(path, max_duration_s: float = MAX_DURATION_S) -> tuple[np.ndarray, int]:
    """Samples (float32, mono, in [-1, 1]) and the sample rate in Hz.

    Raises AudioError for: a missing file, a file that is not a WAV, no samples, 8-bit PCM,
    NaN/inf samples, a rate outside ALLOWED_RATES_HZ, or a duration over `max_duration_s`.
    Multichannel audio is averaged to mono with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    tag, channels, rate_hz, bits, n_frames = _header(path)
    if tag not in (1, 3):
        raise AudioError(f"{path}: WAV format tag {tag} is unsupported; allowed: 1 (PCM), 3 (float)")
    if tag == 1 and bits == 8:
        # 8-bit WAV is unsigned and has 48 dB of dynamic range: too coarse for the recognizer
        # and almost always a sign of telephony files that should be re-exported.
        raise AudioError(f"{path}: 8-bit PCM is unsupported; allowed sample formats: "
                         f"16/24/32-bit PCM or 32/64-bit float")
    if rate_hz not in ALLOWED_RATES_HZ:
        raise AudioError(f"{path}: sample rate {rate_hz} Hz is unsupported; allowed: "
                         f"{', '.join(str(r) for r in ALLOWED_RATES_HZ)} Hz")
    if n_frames == 0:
        raise AudioError(f"{path}: WAV file has no samples (duration 0 s)")
    duration_s = n_frames / rate_hz
    if duration_s > max_duration_s:
        raise AudioError(f"{path}: duration {duration_s:.1f} s exceeds the limit of "
                         f"{max_duration_s:.0f} s")
    import scipy.io.wavfile
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.io.wavfile.WavFileWarning)
            _, data = scipy.io.wavfile.read(path, mmap=False)
    except (ValueError, EOFError, OSError) as err:
        raise AudioError(f"{path}: not a readable WAV file ({err})") from None
    if data.size == 0:
        raise AudioError(f"{path}: WAV file has no samples (duration 0 s)")
    if data.dtype == np.int16:
        x = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:  # 24-bit is returned left-justified in int32 by scipy
        x = (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif data.dtype in (np.float32, np.float64):
        if not np.all(np.isfinite(data)):
            bad = int(np.count_nonzero(~np.isfinite(data)))
            raise AudioError(f"{path}: {bad} samples are NaN or infinite; allowed: finite values "
                             f"in [-1, 1]")
        x = np.clip(data, -1.0, 1.0).astype(np.float32)
    else:
        raise AudioError(f"{path}: sample type {data.dtype} is unsupported; allowed: "
                         f"16/24/32-bit PCM or 32/64-bit float")
    if x.ndim == 2:
        if x.shape[1] > 1:
            warnings.warn(f"{path}: {x.shape[1]} channels averaged to mono", stacklevel=2)
        x = x.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32), int(rate_hz)


def write_wav(path, samples: np.ndarray, rate_hz: int) -> None:
    """Write mono 16-bit PCM; samples are float in [-1, 1] (clipped)."""
    import scipy.io.wavfile
    if int(rate_hz) not in ALLOWED_RATES_HZ:
        raise AudioError(f"{path}: sample rate {rate_hz} Hz is unsupported; allowed: "
                         f"{', '.join(str(r) for r in ALLOWED_RATES_HZ)} Hz")
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise AudioError(f"{path}: samples must be 1-D mono, got shape {x.shape}")
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    scipy.io.wavfile.write(path, int(rate_hz), pcm)
