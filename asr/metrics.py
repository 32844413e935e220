"""Word/character error rates (jiwer) and digit accuracy, per test subset.

References and hypotheses are normalized with asr.text.normalize first, so casing,
punctuation and digits-vs-words never count as errors.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jiwer
import numpy as np

from asr.text import normalize


def _normalized(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return [normalize(r) for r in refs], [normalize(h) for h in hyps]


def _rates(refs: list[str], hyps: list[str], chars: bool) -> tuple[int, int]:
    """(errors, reference units). jiwer refuses empty references, so those count directly:
    every hypothesis unit is an insertion."""
    errors = units = 0
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    for r, h in zip(refs, hyps):
        if not r:
            errors += len(h) if chars else len(h.split())
    if pairs:
        process = jiwer.process_characters if chars else jiwer.process_words
        out = process([r for r, _ in pairs], [h for _, h in pairs])
        errors += out.substitutions + out.deletions + out.insertions
        units += out.substitutions + out.deletions + out.hits
    return errors, units


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    """{"wer", "cer", "n", "ref_words", "word_errors", "ref_chars", "char_errors"}."""
    refs, hyps = _normalized(refs, hyps)
    we, wn = _rates(refs, hyps, chars=False)
    ce, cn = _rates(refs, hyps, chars=True)
    return {"wer": we / wn if wn else (0.0 if we == 0 else float("inf")),
            "cer": ce / cn if cn else (0.0 if ce == 0 else float("inf")),
            "n": len(refs), "ref_words": wn, "word_errors": we, "ref_chars": cn, "char_errors": ce}


def utterance_word_errors(refs: Sequence[str], hyps: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(word errors, reference words) of each utterance, as error_rates counts them."""
    refs, hyps = _normalized(refs, hyps)
    pairs = [_rates([r], [h], chars=False) for r, h in zip(refs, hyps)]
    return np.array([e for e, _ in pairs], np.int64), np.array([n for _, n in pairs], np.int64)


def paired_bootstrap(words: np.ndarray, errors_a: np.ndarray, errors_b: np.ndarray,
                     stat: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int = 1000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``stat(wer_a, wer_b)`` over `n` resamples of the utterances (the
    same utterances for both systems: a paired bootstrap). `words`, `errors_a`, `errors_b`:
    per-utterance counts (utterance_word_errors); stat takes arrays of resampled WERs."""
    words, errors_a, errors_b = (np.asarray(a, np.float64) for a in (words, errors_a, errors_b))
    if not (words.shape == errors_a.shape == errors_b.shape) or words.ndim != 1 or words.size == 0:
        raise ValueError(f"per-utterance counts must be equal-length 1-D arrays, got "
                         f"{words.shape}, {errors_a.shape}, {errors_b.shape}")
    idx = np.random.default_rng(seed).integers(0, words.size, (n, words.size))
    w = words[idx].sum(1)
    w = np.where(w > 0, w, np.nan)      # a resample of empty references has no WER
    values = stat(errors_a[idx].sum(1) / w, errors_b[idx].sum(1) / w)
    lo, hi = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def digit_accuracy(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Fraction of single-word utterances (spoken digits) recognized exactly."""
    refs, hyps = _normalized(refs, hyps)
    if not refs:
        return float("nan")
    return sum(r == h for r, h in zip(refs, hyps)) / len(refs)


def subset_metrics(refs: Sequence[str], hyps: Sequence[str], digits: bool = False) -> dict:
    """Error rates of one subset, plus digit accuracy for digit subsets (e.g. test_fsdd)."""
    out = error_rates(refs, hyps)
    if digits:
        out["digit_accuracy"] = digit_accuracy(refs, hyps)
    return out
