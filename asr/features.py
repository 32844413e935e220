"""The one feature pipeline: used by training, numpy inference and the chip.

Choices (fixed; changing any of them invalidates every trained model and feature cache):
- Input resampled to 16 kHz with scipy.signal.resample_poly (its default Kaiser-windowed FIR).
- Frames: 25 ms window (400 samples), 10 ms hop (160 samples), no padding at either end, so
  frame t covers samples [160 t, 160 t + 400) and a signal of N samples gives
  max(0, 1 + (N - 400) // 160) frames. No padding keeps the streaming path identical.
- Periodic Hann window w[n] = 0.5 - 0.5 cos(2 pi n / 400); no pre-emphasis, no dither
  (deterministic output).
- 512-point real FFT (frame zero-padded), power spectrum |X[k]|^2 on 257 bins (31.25 Hz apart).
- 80 triangular mel filters on the HTK mel scale mel(f) = 2595 log10(1 + f / 700), edges
  evenly spaced in mel from 20 Hz to 7600 Hz, peak height 1 (no area normalization). The 20 Hz
  floor drops DC/hum; 7600 Hz keeps the top filter below Nyquist's roll-off of the resampler.
- log(mel_energy + 1e-6), natural log, float32. Samples are floats in [-1, 1].
- Stacking: 3 consecutive frames concatenated -> 240 dims at a 30 ms frame rate; a tail of
  fewer than 3 frames is dropped (stacked frame i uses frames 3i, 3i+1, 3i+2).
"""
from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

SAMPLE_RATE_HZ = 16000
WIN_SAMPLES = 400
HOP_SAMPLES = 160
N_FFT = 512
N_MELS = 80
FMIN_HZ = 20.0
FMAX_HZ = 7600.0
LOG_FLOOR = 1e-6
STACK = 3
STACKED_DIM = N_MELS * STACK


def hz_to_mel(f_hz):
    return 2595.0 * np.log10(1.0 + np.asarray(f_hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(257, 80) float32 matrix: power spectrum bins -> mel energies (HTK triangles, peak 1)."""
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(FMIN_HZ), hz_to_mel(FMAX_HZ), N_MELS + 2))
    bin_hz = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE_HZ / N_FFT
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    up = (bin_hz[None, :] - lo) / (mid - lo)
    down = (hi - bin_hz[None, :]) / (hi - mid)
    fb = np.clip(np.minimum(up, down), 0.0, None)  # (80, 257)
    fb.setflags(write=False)
    return np.ascontiguousarray(fb.T, dtype=np.float32)


@lru_cache(maxsize=1)
def hann_window() -> np.ndarray:
    n = np.arange(WIN_SAMPLES)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_SAMPLES)).astype(np.float32)


def _ratio(rate_hz: int) -> tuple[int, int]:
    g = gcd(int(rate_hz), SAMPLE_RATE_HZ)
    return SAMPLE_RATE_HZ // g, int(rate_hz) // g


def resample_to_16k(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """float32 samples at 16 kHz (a copy-free pass-through when already 16 kHz)."""
    x = np.asarray(samples, dtype=np.float32)
    if int(rate_hz) <= 0:
        raise ValueError(f"sample rate must be positive, got {rate_hz} Hz")
    if int(rate_hz) == SAMPLE_RATE_HZ:
        return x
    from scipy.signal import resample_poly
    up, down = _ratio(rate_hz)
    return resample_poly(x, up, down).astype(np.float32)


def n_frames(n_samples: int) -> int:
    return max(0, 1 + (int(n_samples) - WIN_SAMPLES) // HOP_SAMPLES) if n_samples >= WIN_SAMPLES else 0


def _frames_to_logmel(frames: np.ndarray) -> np.ndarray:
    spec = np.fft.rfft(frames * hann_window(), n=N_FFT, axis=-1)
    power = (spec.real * spec.real + spec.imag * spec.imag).astype(np.float32)
    return np.log(power @ mel_filterbank() + np.float32(LOG_FLOOR)).astype(np.float32)


def log_mel_16k(x16: np.ndarray) -> np.ndarray:
    """(T, 80) float32 log-mel of float samples already at 16 kHz."""
    x16 = np.ascontiguousarray(x16, dtype=np.float32)
    t = n_frames(x16.shape[0])
    if t == 0:
        return np.zeros((0, N_MELS), np.float32)
    frames = np.lib.stride_tricks.as_strided(
        x16, shape=(t, WIN_SAMPLES), strides=(HOP_SAMPLES * x16.strides[0], x16.strides[0]),
        writeable=False)
    return _frames_to_logmel(frames)


def log_mel(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """(T, 80) float32 log-mel features, 10 ms apart, of mono float samples at `rate_hz`."""
    return log_mel_16k(resample_to_16k(samples, rate_hz))


def stack_frames(feats: np.ndarray, stack: int = STACK) -> np.ndarray:
    """(T // stack, stack * D): consecutive frames concatenated; a shorter tail is dropped."""
    feats = np.asarray(feats)
    t = feats.shape[0] // stack
    return np.ascontiguousarray(feats[: t * stack].reshape(t, stack * feats.shape[1]))


def features(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """(T // 3, 240) float32 stacked log-mel at a 30 ms frame rate: what the encoder consumes."""
    return stack_frames(log_mel(samples, rate_hz), STACK)


class FeatureStream:
    """Streaming features: push audio chunks of any size, get stacked frames as soon as they exist.

    The concatenation of everything returned by `push` and `flush` equals
    `features(all_audio, rate_hz)` (same arithmetic per frame; equal to float32 rounding).
    At 16 kHz a frame is emitted as soon as its 400 samples arrived. At other rates the
    resampler's FIR needs a few input samples of look-ahead (about 1 ms), so output lags by
    that much; `flush` supplies the zero padding resample_poly applies at the end.
    """

    def __init__(self, rate_hz: int = SAMPLE_RATE_HZ):
        if int(rate_hz) <= 0:
            raise ValueError(f"sample rate must be positive, got {rate_hz} Hz")
        self.rate_hz = int(rate_hz)
        self._up, self._down = _ratio(self.rate_hz)
        # Input samples either side that one output sample depends on (resample_poly uses a
        # filter of 2 * 10 * max(up, down) + 1 taps in the upsampled domain).
        self._ctx = -(-10 * max(self._up, self._down) // self._up) + 2
        self._raw = np.zeros(0, np.float32)   # input not yet fully resampled
        self._raw_start = 0                    # absolute index of _raw[0]
        self._n_in = 0
        self._n_out16 = 0                      # 16 kHz samples produced so far
        self._buf16 = np.zeros(0, np.float32)  # 16 kHz samples not yet consumed by framing
        self._pending = np.zeros((0, N_MELS), np.float32)  # frames waiting for a full stack
        self._done = False

    def _resample_step(self, final: bool) -> np.ndarray:
        if self.rate_hz == SAMPLE_RATE_HZ:
            out, self._raw = self._raw, np.zeros(0, np.float32)
            self._raw_start = self._n_in
            return out
        up, down, ctx = self._up, self._down, self._ctx
        if final:
            m_end = -(-self._n_in * up // down)  # ceil: resample_poly's output length
        else:
            m_end = max(self._n_out16, ((self._n_in - ctx) * up) // down) if self._n_in > ctx else self._n_out16
        if m_end <= self._n_out16:
            return np.zeros(0, np.float32)
        # Segment start: a multiple of `down` (so it maps to an integer output index) at least
        # ctx input samples before the first wanted output.
        first_in = (self._n_out16 * down) // up - ctx
        a = max(0, (first_in // down) * down) if first_in > 0 else 0
        a = max(a, self._raw_start)
        if a > 0 and a % down:
            raise AssertionError("internal: resample segment misaligned")
        from scipy.signal import resample_poly
        seg = self._raw[a - self._raw_start:]
        y = resample_poly(seg, up, down).astype(np.float32)
        off = (a // down) * up
        out = y[self._n_out16 - off: m_end - off]
        self._n_out16 = m_end
        # Keep what the next segment can start from.
        next_first = (self._n_out16 * down) // up - ctx
        keep_from = max(self._raw_start, (next_first // down) * down if next_first > 0 else 0)
        self._raw = self._raw[keep_from - self._raw_start:]
        self._raw_start = keep_from
        return out

    def _frame_step(self, new16: np.ndarray) -> np.ndarray:
        if new16.size:
            self._buf16 = np.concatenate([self._buf16, new16])
        t = n_frames(self._buf16.shape[0])
        if t:
            mel = log_mel_16k(self._buf16[: (t - 1) * HOP_SAMPLES + WIN_SAMPLES])
            self._buf16 = self._buf16[t * HOP_SAMPLES:]
            self._pending = np.concatenate([self._pending, mel])
        k = self._pending.shape[0] // STACK
        out = stack_frames(self._pending[: k * STACK], STACK)
        self._pending = self._pending[k * STACK:]
        return out

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """(k, 240) float32 stacked frames completed by this chunk (k may be 0)."""
        if self._done:
            raise RuntimeError("FeatureStream.push after flush")
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._raw = np.concatenate([self._raw, chunk])
        self._n_in += chunk.shape[0]
        return self._frame_step(self._resample_step(final=False))

    def flush(self) -> np.ndarray:
        """Stacked frames left at the end of the stream (the tail of < 3 frames is dropped)."""
        if self._done:
            return np.zeros((0, STACKED_DIM), np.float32)
        out = self._frame_step(self._resample_step(final=True))
        self._done = True
        return out
