"""Streaming recognition: audio chunks in, partial text out, N-best and lattice at the end.

    rec = Recognizer(model, beam=4)
    for chunk in chunks:
        partial = rec.accept_audio(chunk, rate_hz)
    result = rec.finalize()        # result.text, result.nbest, result.lattice

Each chunk goes through asr.features.FeatureStream (frames as soon as their samples exist),
the model's chunk-streamable encoder and the incremental search, so the final result
equals offline decoding of the whole signal (``recognize``), whatever the chunk sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asr.decode.beam import BeamSearch, TokenScorer
from asr.decode.greedy import MAX_SYMBOLS_PER_FRAME, GreedySearch
from asr.decode.hyp import Hypothesis
from asr.decode.lattice import Lattice

FRAME_MS = 30.0  # one stacked feature frame (3 x 10 ms hops)


@dataclass
class RecognitionResult:
    text: str
    nbest: list[Hypothesis]
    lattice: Lattice
    frames: int
    audio_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"text": self.text,
                "nbest": [{"text": h.text, "score": round(float(h.score), 4)} for h in self.nbest],
                "lattice_bytes": self.lattice.size_bytes(), "frames": self.frames}


def make_search(model, beam: int = 4, max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME,
                scorer: TokenScorer | None = None, observers=None):
    """Greedy search for beam 1 without a scorer (same result, less work), else beam search."""
    if beam == 1 and scorer is None:
        return GreedySearch(model, max_symbols_per_frame, observers)
    return BeamSearch(model, beam, max_symbols_per_frame, scorer, observers=observers)


def _result(search, frame_ms: float, audio_seconds: float | None) -> RecognitionResult:
    nbest = search.nbest()
    return RecognitionResult(nbest[0].text, nbest, Lattice.from_hypotheses(nbest, frame_ms),
                             search.frames_done, audio_seconds)


class Recognizer:
    """Streaming recognizer over any model with the asr.decode interface."""

    def __init__(self, model, beam: int = 4, max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME,
                 scorer: TokenScorer | None = None, observers=None, frame_ms: float = FRAME_MS):
        self.model = model
        self.beam = beam
        self.max_symbols_per_frame = max_symbols_per_frame
        self.scorer = scorer
        self.observers = observers
        self.frame_ms = frame_ms
        self.reset()

    def reset(self) -> None:
        self.search = make_search(self.model, self.beam, self.max_symbols_per_frame,
                                  self.scorer, self.observers)
        self._enc_state = self.model.encoder_init()
        self._features = None
        self.rate_hz: int | None = None
        self.samples_in = 0
        self._finalized = False

    def _feed(self, feats: np.ndarray) -> None:
        if feats.shape[0]:
            enc, self._enc_state = self.model.encode(feats, self._enc_state)
            self.search.advance(enc)

    def accept_audio(self, chunk: np.ndarray, rate_hz: int) -> str:
        """Push mono float samples in [-1, 1]; returns the current best partial text."""
        from asr.features import FeatureStream
        if self._finalized:
            raise RuntimeError("Recognizer.accept_audio after finalize(); call reset() first")
        if self._features is None:
            self._features = FeatureStream(int(rate_hz))
            self.rate_hz = int(rate_hz)
        elif int(rate_hz) != self.rate_hz:
            raise ValueError(f"sample rate changed mid-stream: {rate_hz} Hz after {self.rate_hz} Hz")
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        self.samples_in += chunk.shape[0]
        self._feed(self._features.push(chunk))
        return self.partial_text

    def accept_features(self, feats: np.ndarray) -> str:
        """Push stacked (k, 240) feature frames directly (when features were computed elsewhere)."""
        if self._finalized:
            raise RuntimeError("Recognizer.accept_features after finalize(); call reset() first")
        self._feed(np.asarray(feats, np.float32))
        return self.partial_text

    @property
    def partial_text(self) -> str:
        return self.search.best.text

    def snapshot(self) -> RecognitionResult:
        """N-best and lattice of the audio so far, without ending the stream (what a
        speculative end-pointer sends downstream)."""
        seconds = self.samples_in / self.rate_hz if self.rate_hz else None
        return _result(self.search, self.frame_ms, seconds)

    def finalize(self) -> RecognitionResult:
        """Flush the feature stream and return text, N-best list and lattice."""
        if self._features is not None and not self._finalized:
            self._feed(self._features.flush())
        self._finalized = True
        seconds = self.samples_in / self.rate_hz if self.rate_hz else None
        return _result(self.search, self.frame_ms, seconds)


def decode_features(model, feats: np.ndarray, beam: int = 4, max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME,
                    scorer: TokenScorer | None = None, frame_ms: float = FRAME_MS) -> RecognitionResult:
    """Offline decoding of stacked (T, 240) features: one encode call, then the search."""
    search = make_search(model, beam, max_symbols_per_frame, scorer)
    feats = np.asarray(feats, np.float32)
    if feats.shape[0]:
        enc, _ = model.encode(feats, model.encoder_init())
        search.advance(enc)
    return _result(search, frame_ms, None)


def recognize(model, samples: np.ndarray, rate_hz: int, beam: int = 4, max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME,
              scorer: TokenScorer | None = None) -> RecognitionResult:
    """Offline recognition of a whole signal (the reference the streaming path must equal)."""
    from asr.features import features
    samples = np.asarray(samples, np.float32).reshape(-1)
    result = decode_features(model, features(samples, rate_hz), beam, max_symbols_per_frame, scorer)
    result.audio_seconds = samples.shape[0] / float(rate_hz)
    return result
