"""Data augmentation on 16 kHz float32 audio. Every random choice takes a numpy Generator.

- additive noise at a requested SNR: white, pink (1/f power) or babble (a sum of other
  synthesized utterances); the SNR is over the whole utterance (signal power / noise power);
- speed perturbation by resampling (changes tempo and pitch together, as in Kaldi recipes);
- reverberation with a synthetic room impulse response: a direct path plus exponentially
  decaying Gaussian noise whose decay reaches -60 dB at RT60;
- 8 kHz band-limiting: down to 8 kHz and back, which removes everything above 4 kHz like a
  telephone channel.
All but speed perturbation keep the number of samples.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve, resample_poly

NOISE_TYPES = ("white", "pink", "babble")


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise shaped to a 1/f power spectrum (amplitude 1/sqrt(f)), unit variance."""
    if n == 0:
        return np.zeros(0, np.float32)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n=n)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def babble_noise(n: int, rng: np.random.Generator, bank: list[np.ndarray], talkers: int = 4) -> np.ndarray:
    """Sum of `talkers` utterances from `bank`, each looped and circularly shifted, unit variance."""
    if not bank:
        raise ValueError("babble_noise needs a non-empty bank of utterances")
    out = np.zeros(n, np.float64)
    for _ in range(talkers):
        u = bank[int(rng.integers(len(bank)))]
        if u.size == 0:
            continue
        u = np.resize(u, n)  # loops a short utterance to cover n samples
        out += np.roll(u, int(rng.integers(n))) / (np.sqrt(_power(u)) + 1e-12)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def make_noise(kind: str, n: int, rng: np.random.Generator, bank: list[np.ndarray] | None = None) -> np.ndarray:
    if kind == "white":
        return white_noise(n, rng)
    if kind == "pink":
        return pink_noise(n, rng)
    if kind == "babble":
        return babble_noise(n, rng, bank or [])
    raise ValueError(f"unknown noise type {kind!r}; allowed: {NOISE_TYPES}")


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """x + scaled noise so that 10 log10(P(x) / P(scaled noise)) == snr_db; same length as x.

    If the sum would clip at +/-1, both are scaled down together (the SNR is unchanged).
    """
    x = np.asarray(x, np.float32)
    noise = np.resize(np.asarray(noise, np.float32), x.shape[0])
    px, pn = _power(x), _power(noise)
    if px == 0.0 or pn == 0.0:
        return x.copy()
    gain = np.sqrt(px / (pn * 10.0 ** (snr_db / 10.0)))
    y = x.astype(np.float64) + gain * noise
    peak = np.max(np.abs(y))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (0.9 slower, 1.1 faster): length becomes about len(x) / factor."""
    if factor == 1.0:
        return np.asarray(x, np.float32).copy()
    up, down = 100, int(round(100 * factor))
    from math import gcd
    g = gcd(up, down)
    return resample_poly(np.asarray(x, np.float32), up // g, down // g).astype(np.float32)


def room_impulse_response(rng: np.random.Generator, rt60_s: float, rate_hz: int = 16000) -> np.ndarray:
    """Direct path (1.0) followed by Gaussian noise decaying exponentially to -60 dB at rt60_s."""
    n = max(2, int(rt60_s * rate_hz))
    t = np.arange(n) / rate_hz
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)  # ln(1000) = 6.9078: -60 dB
    # A 2 ms pre-delay before reflections; the tail carries about as much energy as the direct path.
    tail[: int(0.002 * rate_hz)] = 0.0
    tail *= 1.0 / (np.sqrt(np.sum(tail ** 2)) + 1e-12)
    h = tail
    h[0] = 1.0
    return h.astype(np.float32)


def reverberate(x: np.ndarray, rng: np.random.Generator, rt60_s: float = 0.4, rate_hz: int = 16000) -> np.ndarray:
    """x convolved with a synthetic room response, cut to len(x), RMS restored to that of x."""
    x = np.asarray(x, np.float32)
    if x.size == 0:
        return x.copy()
    y = fftconvolve(x, room_impulse_response(rng, rt60_s, rate_hz))[: x.shape[0]]
    y *= np.sqrt(_power(x) / (_power(y) + 1e-20))
    peak = np.max(np.abs(y))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)


def band_limit_8k(x: np.ndarray, rate_hz: int = 16000) -> np.ndarray:
    """Down to 8 kHz and back (content above 4 kHz removed); same length as x."""
    x = np.asarray(x, np.float32)
    if rate_hz == 8000:
        return x.copy()
    from math import gcd
    g = gcd(8000, rate_hz)
    low = resample_poly(x, 8000 // g, rate_hz // g)
    back = resample_poly(low, rate_hz // g, 8000 // g)
    out = np.zeros_like(x)
    m = min(x.shape[0], back.shape[0])
    out[:m] = back[:m]
    return out.astype(np.float32)
