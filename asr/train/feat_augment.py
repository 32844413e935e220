"""Augmentation of cached log-mel features during training: gain, vocal-tract warp, noise.

The corpus caches features, so waveform-level augmentation is frozen when the cache is built.
These transforms act on a batch's log-mel instead, drawn anew every step:

- gain: a level change is an exact scaling of mel power, log(g P + floor), undoing and redoing
  the feature's log floor. The synthesized corpus is normalized to peaks of -14..-1 dBFS, while
  real recordings arrive far quieter (two FSDD speakers peak near -22 and -31 dBFS), and a
  model never shown quiet speech fails on them.
- VTLP (vocal-tract length perturbation, Jaitly & Hinton 2013): the mel axis is resampled as if
  every frequency were scaled by alpha, which imitates a shorter or longer vocal tract: held-out
  voices differ from training voices mostly in formant positions.
- noise: white, pink or babble (other utterances of the batch) added in the power domain at an
  SNR measured on total mel energy. For independent signals expected powers add, so this is the
  feature-domain image of additive noise, up to the per-frame cross terms.

All transforms act on the valid frames of each utterance; padding is left alone.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from asr.features import FMAX_HZ, FMIN_HZ, LOG_FLOOR, N_MELS, STACK, hz_to_mel, log_mel_16k, mel_to_hz

NOISE_KINDS = ("white", "pink", "babble")


@lru_cache(maxsize=1)
def _noise_bank_power() -> dict[str, np.ndarray]:
    """(frames, 80) mel power of 20 s of white and pink noise at unit sample variance."""
    from asr.data import augment as A
    rng = np.random.default_rng(20261121)
    n = 16000 * 20
    bank = {}
    for kind, gen in (("white", A.white_noise), ("pink", A.pink_noise)):
        x = gen(n, rng).astype(np.float32)
        x /= np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12
        bank[kind] = np.maximum(np.exp(log_mel_16k(0.1 * x).astype(np.float64)) - LOG_FLOOR, 0.0)
    return bank


@lru_cache(maxsize=8)
def _vtlp_sources(alpha_milli: int) -> np.ndarray:
    """Fractional mel-bin index whose frequency maps onto each bin's centre under warp alpha."""
    alpha = alpha_milli / 1000.0
    centres_mel = np.linspace(hz_to_mel(FMIN_HZ), hz_to_mel(FMAX_HZ), N_MELS + 2)[1:-1]
    src_hz = np.clip(mel_to_hz(centres_mel) / alpha, FMIN_HZ, FMAX_HZ)
    return np.interp(hz_to_mel(src_hz), centres_mel, np.arange(N_MELS, dtype=np.float64))


def _warp(logmel: np.ndarray, alpha: float) -> np.ndarray:
    src = _vtlp_sources(int(round(alpha * 1000)))
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, N_MELS - 1)
    w = src - lo
    return logmel[:, lo] * (1.0 - w) + logmel[:, hi] * w


def augment_batch(x: torch.Tensor, x_lens: torch.Tensor, cfg, rng: np.random.Generator) -> torch.Tensor:
    """A new (B, T, 240) tensor with each utterance independently warped, noised and gained,
    with the probabilities and ranges of `cfg` (an asr.train.loop.TrainConfig)."""
    if cfg.p_gain == 0 and cfg.p_vtlp == 0 and cfg.p_feat_noise == 0:
        return x
    out = x.clone()
    xs = x.numpy()
    lens = [int(n) for n in x_lens]
    powers = [None] * len(lens)

    def power(b):  # mel power of utterance b as it was before this batch's augmentation
        if powers[b] is None:
            f = xs[b, :lens[b]].reshape(-1, N_MELS).astype(np.float64)
            powers[b] = np.maximum(np.exp(f) - LOG_FLOOR, 0.0)
        return powers[b]

    for b, n in enumerate(lens):
        do_warp = rng.random() < cfg.p_vtlp
        do_noise = rng.random() < cfg.p_feat_noise
        do_gain = rng.random() < cfg.p_gain
        if n == 0 or not (do_warp or do_noise or do_gain):
            continue
        p = power(b)
        if do_warp:
            alpha = rng.uniform(*cfg.vtlp_alpha)
            p = np.maximum(np.exp(_warp(np.log(p + LOG_FLOOR), alpha)) - LOG_FLOOR, 0.0)
        if do_noise:
            kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
            noise = _noise(kind, p.shape[0], b, lens, power, rng)
            if noise is not None and noise.sum() > 0:
                snr_db = rng.uniform(*cfg.feat_snr_db)
                p = p + noise * (p.sum() / (noise.sum() * 10.0 ** (snr_db / 10.0)))
        if do_gain:
            p = p * 10.0 ** (rng.uniform(*cfg.gain_db) / 10.0)
        out[b, :n] = torch.from_numpy(np.log(p + LOG_FLOOR).astype(np.float32).reshape(n, STACK * N_MELS))
    return out


def _noise(kind: str, n_frames: int, b: int, lens: list[int], power, rng) -> np.ndarray | None:
    if kind == "babble":
        others = [j for j in range(len(lens)) if j != b and lens[j] > 0]
        if not others:
            return None
        total = np.zeros((n_frames, N_MELS))
        for j in rng.choice(others, size=min(3, len(others)), replace=False):
            pj = power(int(j))
            reps = -(-n_frames // pj.shape[0])
            start = int(rng.integers(pj.shape[0]))
            total += np.roll(np.tile(pj, (reps, 1)), -start, axis=0)[:n_frames] / pj.mean()
        return total
    bank = _noise_bank_power()[kind]
    start = int(rng.integers(0, bank.shape[0] - n_frames)) if bank.shape[0] > n_frames else 0
    seg = bank[start:start + n_frames]
    if seg.shape[0] < n_frames:
        seg = np.tile(seg, (-(-n_frames // seg.shape[0]), 1))[:n_frames]
    return seg
