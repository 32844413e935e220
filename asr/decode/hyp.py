"""The hypothesis record shared by greedy search, beam search and the lattice builder."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asr import text as _text


@dataclass
class Hypothesis:
    """One partial or complete transcription.

    ``score`` is what the search ranks by: the model's log-probability of the hypothesis
    (summed over the alignments that were merged into it) plus any scorer bonuses
    (``bonus``); ``log_prob = score - bonus``. ``token_frames[i]`` is the encoder frame at
    which ``tokens[i]`` was emitted and ``token_scores[i]`` the running score just after it
    (what the lattice uses to give each word its share of the score).
    """

    tokens: tuple[int, ...] = ()
    token_frames: tuple[int, ...] = ()
    token_scores: tuple[float, ...] = ()
    score: float = 0.0
    bonus: float = 0.0
    # Predictor output and state after feeding `tokens` (kept with the hypothesis so that
    # each token history is run through the predictor once).
    pred: np.ndarray | None = field(default=None, repr=False, compare=False)
    pred_state: Any = field(default=None, repr=False, compare=False)
    scorer_state: Any = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        return " ".join(_text.decode(self.tokens).split())

    @property
    def log_prob(self) -> float:
        return self.score - self.bonus

    def token_times_ms(self, frame_ms: float) -> list[float]:
        return [f * frame_ms for f in self.token_frames]

    def as_dict(self, frame_ms: float | None = None) -> dict:
        out = {"text": self.text, "score": round(float(self.score), 4),
               "log_prob": round(float(self.log_prob), 4), "tokens": list(self.tokens),
               "token_frames": list(self.token_frames)}
        if frame_ms is not None:
            out["token_times_ms"] = self.token_times_ms(frame_ms)
        return out
