"""End-pointers: deciding, frame by frame, that the user has finished speaking.

Two kinds of rule, each usable as a *final* end-pointer (stop listening, send the result) or
as a *speculative* one (tuned to fire earlier; send the lattice so far so downstream work can
start, and take it back if the user goes on):

- ``SilenceEndpointer``: trailing-blank rule on the recognizer's own outputs. It fires once
  the best hypothesis has emitted at least one token and then nothing for ``trailing_ms``,
  counting only frames whose blank log-probability is at least ``min_blank_logprob`` (a frame
  where the model is unsure is not silence).
- ``ClassifierEndpointer``: a learned end-of-query classifier (``EOQClassifier``: logistic
  regression or a one-hidden-layer MLP, in numpy) on the encoder output of each frame. It
  fires once P(end of query) >= ``threshold`` for ``hold_frames`` frames in a row, after at
  least one token. It sees the encoder's summary of everything said so far, so it can learn
  that "turn on the" followed by a pause is not the end.

``EndpointStateMachine`` runs a speculative and a final end-pointer together and emits events:

    LISTENING --speculative fires--> SPECULATED            event "speculate" (lattice so far)
    SPECULATED --best words change--> LISTENING            event "reset" (revised lattice)
    SPECULATED --final fires, same words--> DONE           event "confirm"
    LISTENING  --final fires--> DONE                       event "final" (lattice)

Downstream work started at "speculate" is wasted when a "reset" follows; on "confirm" it is
already under way (or done), which is where speculation saves user-perceived latency. The
machine is a beam-search observer (``BeamSearch(..., observers=[machine])``), or is fed
``FrameObs`` records directly (``machine.step(obs)``): end-pointers read only what a
``FrameObs`` holds, so replaying recorded observations gives exactly the live decisions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from azsim.errors import ConfigError, ModelError

FRAME_MS = 30.0
FIRST_FRAME_MS = 45.0   # stacked frame t holds the audio up to 45 + 30 t ms (asr.chip)


def frame_end_ms(t: int, frame_ms: float = FRAME_MS) -> float:
    """Audio time (ms from the start) up to which stacked frame t has heard."""
    return FIRST_FRAME_MS + frame_ms * t


@dataclass(frozen=True)
class FrameObs:
    """What an end-pointer may look at after frame ``t`` (from the search, per frame)."""

    t: int
    words: tuple[str, ...]        # best hypothesis's words so far
    n_tokens: int                 # tokens in the best hypothesis
    last_token_frame: int         # frame of its last token (-1: none yet)
    blank_logprob: float          # blank log-prob the best hypothesis gave this frame
    enc: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_search(cls, t: int, search) -> "FrameObs":
        best = search.best
        frames = best.token_frames
        return cls(t, tuple(best.text.split()), len(best.tokens), frames[-1] if frames else -1,
                   float(search.last_blank_logprob),
                   None if search.last_enc is None else np.asarray(search.last_enc, np.float32))


class Endpointer:
    """Base: ``update(obs) -> bool`` (fired on this frame), ``reset()``."""

    name = "endpointer"

    def reset(self) -> None:
        pass

    def update(self, obs: FrameObs) -> bool:
        raise NotImplementedError


class SilenceEndpointer(Endpointer):
    def __init__(self, trailing_ms: float = 600.0, min_blank_logprob: float = float(np.log(0.5)),
                 frame_ms: float = FRAME_MS, name: str | None = None):
        if not (isinstance(trailing_ms, (int, float)) and 0 < trailing_ms <= 10_000):
            raise ConfigError(f"end-pointer trailing_ms = {trailing_ms!r}; allowed: (0, 10000] ms")
        if not (isinstance(min_blank_logprob, (int, float)) and min_blank_logprob <= 0):
            raise ConfigError(f"end-pointer min_blank_logprob = {min_blank_logprob!r}; allowed: <= 0")
        self.trailing_ms = float(trailing_ms)
        self.min_blank_logprob = float(min_blank_logprob)
        self.frame_ms = float(frame_ms)
        self.name = name or f"silence{int(round(trailing_ms))}ms"
        self.reset()

    def reset(self) -> None:
        self._quiet_frames = 0
        self._last_token_frame = -1

    def update(self, obs: FrameObs) -> bool:
        if obs.n_tokens == 0:
            return False
        if obs.last_token_frame != self._last_token_frame or obs.last_token_frame == obs.t:
            # a token on this frame (or the best path changed): silence starts over
            self._last_token_frame = obs.last_token_frame
            self._quiet_frames = 0
            return False
        if obs.blank_logprob >= self.min_blank_logprob:
            self._quiet_frames += 1
        else:
            self._quiet_frames = 0
        return self._quiet_frames * self.frame_ms >= self.trailing_ms


# ------------------------------------------------------------------ learned end-of-query
class EOQClassifier:
    """P(end of query | encoder output of this frame): logistic regression or a tiny MLP.

    Trained with full-batch Adam on standardized inputs, binary cross-entropy with class
    weights (end-of-query frames are the minority). Deterministic from ``seed``.
    """

    KINDS = ("logreg", "mlp")

    def __init__(self, kind: str = "logreg", hidden: int = 32, seed: int = 0):
        if kind not in self.KINDS:
            raise ConfigError(f"EOQ classifier kind = {kind!r}; allowed: {list(self.KINDS)}")
        self.kind, self.hidden, self.seed = kind, int(hidden), int(seed)
        self.params: dict[str, np.ndarray] = {}

    # -- model
    def _forward(self, x: np.ndarray, p: dict):
        z = (x - p["mu"]) * p["inv_sd"]
        if self.kind == "logreg":
            return z @ p["w"] + p["b"][0], z, None
        h = np.maximum(0.0, z @ p["w1"] + p["b1"])
        return h @ p["w2"] + p["b2"][0], z, h

    def decision(self, x: np.ndarray) -> np.ndarray:
        return self._forward(np.atleast_2d(np.asarray(x, np.float32)), self.params)[0]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * self.decision(x)))

    # -- training
    def fit(self, x: np.ndarray, y: np.ndarray, steps: int = 400, lr: float = 0.01,
            l2: float = 1e-4) -> "EOQClassifier":
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.float32).reshape(-1)
        if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"fit: x {x.shape} and y {y.shape} must be (N, D) and (N,), N > 0")
        rng = np.random.default_rng(self.seed)
        d = x.shape[1]
        mu = x.mean(0)
        inv_sd = 1.0 / (x.std(0) + 1e-3)
        p: dict[str, np.ndarray] = {"mu": mu.astype(np.float32), "inv_sd": inv_sd.astype(np.float32)}
        if self.kind == "logreg":
            p.update(w=np.zeros(d, np.float32), b=np.zeros(1, np.float32))
        else:
            p.update(w1=(rng.standard_normal((d, self.hidden)) * np.sqrt(2.0 / d)).astype(np.float32),
                     b1=np.zeros(self.hidden, np.float32),
                     w2=(rng.standard_normal(self.hidden) * np.sqrt(1.0 / self.hidden)).astype(np.float32),
                     b2=np.zeros(1, np.float32))
        pos = max(1.0, float(y.sum()))
        neg = max(1.0, float(y.size - y.sum()))
        sw = np.where(y > 0.5, 0.5 * y.size / pos, 0.5 * y.size / neg).astype(np.float32)
        trainable = [k for k in p if k not in ("mu", "inv_sd")]
        m = {k: np.zeros_like(p[k]) for k in trainable}
        v = {k: np.zeros_like(p[k]) for k in trainable}
        b1, b2 = 0.9, 0.999
        for step in range(1, steps + 1):
            logit, z, h = self._forward(x, p)
            prob = 0.5 * (1.0 + np.tanh(0.5 * logit))
            g = (prob - y) * sw / y.size           # d(weighted mean BCE)/d logit
            grads = {}
            if self.kind == "logreg":
                grads["w"] = z.T @ g + l2 * p["w"]
                grads["b"] = np.array([g.sum()], np.float32)
            else:
                grads["w2"] = h.T @ g + l2 * p["w2"]
                grads["b2"] = np.array([g.sum()], np.float32)
                gh = np.outer(g, p["w2"]) * (h > 0)
                grads["w1"] = z.T @ gh + l2 * p["w1"]
                grads["b1"] = gh.sum(0)
            for k in trainable:
                m[k] = b1 * m[k] + (1 - b1) * grads[k]
                v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
                mh = m[k] / (1 - b1 ** step)
                vh = v[k] / (1 - b2 ** step)
                p[k] = (p[k] - lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
        self.params = p
        return self

    # -- files
    def save(self, path) -> None:
        np.savez(path, kind=np.array(self.kind), hidden=np.array(self.hidden),
                 seed=np.array(self.seed), **self.params)

    @classmethod
    def load(cls, path) -> "EOQClassifier":
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: end-of-query classifier file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                kind = str(z["kind"])
                clf = cls(kind, int(z["hidden"]), int(z["seed"]))
                keys = ("mu", "inv_sd", "w", "b") if kind == "logreg" else ("mu", "inv_sd", "w1", "b1", "w2", "b2")
                clf.params = {k: z[k].astype(np.float32) for k in keys}
        except (KeyError, ValueError, OSError) as err:
            raise ModelError(f"{path}: not an end-of-query classifier file ({err})") from None
        return clf


class ClassifierEndpointer(Endpointer):
    def __init__(self, clf: EOQClassifier, threshold: float = 0.5, hold_frames: int = 3,
                 name: str | None = None):
        if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
            raise ConfigError(f"end-pointer threshold = {threshold!r}; allowed: (0, 1)")
        if not (isinstance(hold_frames, (int, np.integer)) and 1 <= hold_frames <= 300):
            raise ConfigError(f"end-pointer hold_frames = {hold_frames!r}; allowed: 1..300")
        self.clf, self.threshold, self.hold_frames = clf, float(threshold), int(hold_frames)
        self._logit = float(np.log(threshold / (1.0 - threshold)))
        self.name = name or f"eoq-{clf.kind}@{threshold:g}x{hold_frames}"
        self.reset()

    def reset(self) -> None:
        self._run = 0

    def update(self, obs: FrameObs) -> bool:
        if obs.enc is None:
            raise ValueError("ClassifierEndpointer needs the encoder output in FrameObs.enc")
        hit = float(self.clf.decision(obs.enc)[0]) >= self._logit
        self._run = self._run + 1 if hit else 0
        return obs.n_tokens > 0 and self._run >= self.hold_frames


# ------------------------------------------------------------------ state machine
LISTENING, SPECULATED, DONE = "listening", "speculated", "done"


@dataclass
class EndpointEvent:
    kind: str            # "speculate" | "reset" | "confirm" | "final"
    frame: int
    time_ms: float       # audio time the decision was made at (frame_end_ms)
    words: tuple[str, ...]
    lattice: object | None = None   # asr.decode.lattice.Lattice sent downstream (not on confirm)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def as_dict(self) -> dict:
        d = {"kind": self.kind, "frame": self.frame, "time_ms": self.time_ms, "text": self.text}
        if self.lattice is not None:
            d["lattice_bytes"] = self.lattice.size_bytes()
        return d


class EndpointStateMachine:
    """Speculative + final end-pointing with speculate / reset / confirm / final events.

    ``speculative`` may be None (final end-pointing only). ``snapshot`` returns the lattice
    to send (called with no arguments at speculate/reset/final); as a beam-search observer the
    machine takes it from the search's N-best list.
    """

    def __init__(self, final: Endpointer, speculative: Endpointer | None = None,
                 frame_ms: float = FRAME_MS):
        self.final_ep, self.spec_ep, self.frame_ms = final, speculative, frame_ms
        self.reset()

    def reset(self) -> None:
        self.state = LISTENING
        self.events: list[EndpointEvent] = []
        self.speculated_words: tuple[str, ...] | None = None
        self.final_ep.reset()
        if self.spec_ep is not None:
            self.spec_ep.reset()

    @property
    def done(self) -> bool:
        return self.state == DONE

    def _emit(self, kind, obs, snapshot) -> EndpointEvent:
        ev = EndpointEvent(kind, obs.t, frame_end_ms(obs.t, self.frame_ms), obs.words,
                           snapshot() if (snapshot is not None and kind != "confirm") else None)
        self.events.append(ev)
        return ev

    def step(self, obs: FrameObs, snapshot=None) -> list[EndpointEvent]:
        """Feed one frame's observation; returns the events it caused (possibly none)."""
        if self.state == DONE:
            return []
        out = []
        final_fired = self.final_ep.update(obs)
        spec_fired = self.spec_ep.update(obs) if self.spec_ep is not None else False
        if self.state == SPECULATED and obs.words != self.speculated_words:
            out.append(self._emit("reset", obs, snapshot))      # the user went on: take it back
            self.state, self.speculated_words = LISTENING, None
        if final_fired:
            if self.state == SPECULATED:
                out.append(self._emit("confirm", obs, snapshot))
            else:
                out.append(self._emit("final", obs, snapshot))
            self.state = DONE
            return out
        if spec_fired and self.state == LISTENING and not (out and out[-1].kind == "reset"):
            out.append(self._emit("speculate", obs, snapshot))
            self.state, self.speculated_words = SPECULATED, obs.words
        return out

    def __call__(self, t: int, search) -> None:
        """Beam-search observer hook."""
        from asr.decode.lattice import Lattice
        self.step(FrameObs.from_search(t, search),
                  lambda: Lattice.from_hypotheses(search.nbest(), self.frame_ms))

    def finish(self, obs: FrameObs, snapshot=None) -> list[EndpointEvent]:
        """The audio ended before the final end-pointer fired: end-point at the last frame."""
        if self.state == DONE:
            return []
        kind = "confirm" if (self.state == SPECULATED and obs.words == self.speculated_words) else "final"
        if self.state == SPECULATED and kind == "final":
            self._emit("reset", obs, snapshot)
        ev = self._emit(kind, obs, snapshot)
        self.state = DONE
        return [ev]




# ------------------------------------------------------------------ uplink payloads
PCM_BYTES_PER_S = 16000 * 2          # 16 kHz, 16-bit mono
CODEC_BITS_PER_S = 24000             # a 24 kbit/s speech codec (e.g. Opus wideband voice)


def nbest_json(nbest) -> str:
    """The N-best list as compact JSON (text and score per hypothesis): an alternative payload."""
    import json
    return json.dumps([[h.text, round(float(h.score), 4)] for h in nbest], separators=(",", ":"))


def uplink_bytes(nbest, lattice, audio_s: float) -> dict:
    """Bytes per utterance sent to the cloud for each choice of payload."""
    lat = lattice.size_bytes()
    nb = len(nbest_json(nbest).encode("utf-8"))
    return {"lattice_bytes": lat, "nbest_bytes": nb, "lattice_nbest_bytes": lat + nb,
            "pcm16_bytes": int(round(PCM_BYTES_PER_S * audio_s)),
            "codec24k_bytes": int(round(CODEC_BITS_PER_S / 8 * audio_s))}


__all__ = ["FrameObs", "Endpointer", "SilenceEndpointer", "EOQClassifier", "ClassifierEndpointer",
           "EndpointStateMachine", "EndpointEvent", "frame_end_ms", "LISTENING", "SPECULATED", "DONE",
           "nbest_json", "uplink_bytes", "PCM_BYTES_PER_S", "CODEC_BITS_PER_S"]
