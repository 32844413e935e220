"""Second pass for context biasing: re-decide a slot that the first pass filled with a name the
user does not have.

After a carrier word ("call", "text", ...), a recognizer trained on a fixed set of names tends
to hear a name it was trained on ("kathleen") instead of the user's rare contact ("karen"): its
prediction network acts as an internal language model (ILM) that favours the spellings it has
seen. Shallow fusion can only boost names whose prefixes survive in the beam. This pass looks
at the best hypothesis afterwards, so it also reaches names the beam had dropped.

A slot is *suspect* when the span after a carrier is

- a name of that class that the recognizer knows (``SlotClass.suspect``, e.g. the contacts of
  its training data) but that is not on this request's list, or
- words outside the recognizer's training vocabulary (a name it could not spell).

A span that is already one of the list's names, or ordinary known words ("set the thermostat"
when no thermostat is listed), is never touched. For a suspect span, each of the list's names
of that class (the ``max_candidates`` closest in spelling, by rapidfuzz's ratio) is scored
against the span itself by

    log P(slot | audio of the slot, words before it) - ilm_weight * log P_ILM(slot | words before it)

The first term is the RNN-T's full-sum log-likelihood (all alignments, asr.model.rnnt_lattice)
of the slot's tokens and the space after them, over the encoder frames from the token before
the slot to the token after it in the first pass's alignment (widened by ``pad_frames`` on
each side; 0 by default: padding frames belong to the neighbouring words, and the window's
lattice must explain them as blanks), starting from the prediction network's state after the
words before the slot. Scoring only the slot's window, not the whole utterance, keeps the pass
cheap: every candidate shares the same frames and the same context. The second term is the internal-LM
estimate: the joint network with the encoder's contribution set to zero and blank left out
(Meng et al., "Internal language model estimation for domain-adaptive end-to-end speech
recognition", SLT 2021). Subtracting it removes the prior that made the recognizer prefer a
name it knows, and keeps the acoustic evidence. The best candidate replaces the span if its
score beats the span's own by more than ``margin``.

    rescorer = SlotRescorer(model, vocab=training_words, ilm_weight=0.85)
    best = BeamSearch(model, beam=4, scorer=bias).nbest()[0]          # tokens + token frames
    text = rescorer.rescore(enc, best, [SlotClass(contacts, ["call", "text"], known_contacts)]).text
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asr.decode.biasing import normalize_names
from asr.text import VOCAB
from azsim.errors import ConfigError

ILM_WEIGHT_RANGE = (0.0, 5.0)
MARGIN_RANGE = (0.0, 100.0)
MAX_CANDIDATES_RANGE = (1, 1000)
MAX_SPAN_WORDS_RANGE = (1, 8)
PAD_FRAMES_RANGE = (0, 100)
_SPACE = VOCAB.index(" ")


@dataclass(frozen=True)
class SlotClass:
    """One class of slot in a request: the user's names of that class, the carrier words or
    phrases that precede it, and the names the recognizer knows that mark a misrecognition
    when heard there but missing from the list."""
    names: list[str]
    prefixes: list[str]
    suspect: frozenset = frozenset()


@dataclass(frozen=True)
class _Compiled:
    names: list[str]
    name_set: frozenset
    prefix_words: list[list[str]]
    suspect: frozenset


@dataclass
class Rescored:
    text: str
    changed: bool = False
    suspect_slots: int = 0
    candidates_scored: int = 0
    replacements: list = field(default_factory=list)   # (span heard, name put in its place)


def _check(label: str, value, lo, hi, integer: bool = False):
    ok_type = (isinstance(value, int) if integer else isinstance(value, (int, float))) and not isinstance(value, bool)
    if not ok_type or not (lo <= value <= hi):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"slot rescoring: {label} = {value!r}; allowed: {kind} in [{lo}, {hi}]")
    return value


def _words(tokens) -> list[tuple[str, int, int]]:
    """(word, first token index, one past its last) for each space-separated word."""
    out, start = [], None
    for k, t in enumerate(list(tokens) + [_SPACE]):
        if t == _SPACE:
            if start is not None:
                out.append(("".join(VOCAB[x] for x in tokens[start:k]), start, k))
                start = None
        elif start is None:
            start = k
    return out


class SlotRescorer:
    def __init__(self, model, vocab, ilm_weight: float = 1.0, margin: float = 0.0,
                 max_candidates: int = 10, max_span_words: int = 3, pad_frames: int = 0):
        self.model = model
        self.vocab = frozenset(vocab)
        self.ilm_weight = float(_check("ilm_weight", ilm_weight, *ILM_WEIGHT_RANGE))
        self.margin = float(_check("margin", margin, *MARGIN_RANGE))
        self.max_candidates = _check("max_candidates", max_candidates, *MAX_CANDIDATES_RANGE, integer=True)
        self.max_span_words = _check("max_span_words", max_span_words, *MAX_SPAN_WORDS_RANGE, integer=True)
        self.pad_frames = _check("pad_frames", pad_frames, *PAD_FRAMES_RANGE, integer=True)

    # ------------------------------------------------------------------ slots
    @staticmethod
    def compile_classes(classes) -> list[_Compiled]:
        """Validated classes: names and prefixes checked and normalized as for a bias list."""
        out = []
        for c in classes:
            names = normalize_names(c.names, "slot rescoring names")
            prefixes = normalize_names(c.prefixes, "slot rescoring prefixes")
            suspect = frozenset(" ".join(str(n).lower().split()) for n in c.suspect)
            out.append(_Compiled(names, frozenset(names), [p.split() for p in prefixes], suspect))
        return out

    def suspect_slots(self, words: list[str], classes: list[_Compiled]) -> list[tuple[int, int, _Compiled]]:
        """(first word, number of words, class) of each suspect span, left to right, not overlapping."""
        out, free = [], 1
        for i in range(1, len(words)):
            if i < free:
                continue
            for cls in classes:
                if not any(words[max(0, i - len(p)):i] == p for p in cls.prefix_words):
                    continue
                rest = words[i:i + self.max_span_words]
                spans = [" ".join(rest[:j]) for j in range(len(rest), 0, -1)]   # longest first
                if any(s in cls.name_set for s in spans):
                    continue
                hit = next((j for j, s in zip(range(len(rest), 0, -1), spans)
                            if s in cls.suspect or all(w not in self.vocab for w in rest[:j])), None)
                if hit:
                    out.append((i, hit, cls))
                    free = i + hit
                    break
        return out

    # ------------------------------------------------------------------ scoring
    def segment_scores(self, enc: np.ndarray, context, slots) -> np.ndarray:
        """log P(slot | enc) - ilm_weight * log P_ILM(slot) for each token sequence in `slots`,
        each decoded from the start of `enc` (the window's frames, (T, D)) after the tokens
        `context`, and ending with a blank on the last frame."""
        from asr.model.rnnt_lattice import rnnt_log_likelihood
        m = self.model
        state = m.predictor_init()
        pred, state = m.predict(m.blank, state)
        for t in context:
            pred, state = m.predict(int(t), state)
        seqs = [np.asarray(s, np.int64) for s in slots]
        own = self._predictions(state, seqs, pred.shape[-1])   # (len(s), D) each: after each token
        rows = np.concatenate([pred[None]] + own)        # shared first row, then every sequence's own
        lp = m.joint(enc[:, None, :], rows[None, :, :])  # (T, 1 + sum of lengths, V)
        nonblank = np.arange(m.vocab_size) != m.blank
        z = m.joint(np.zeros_like(rows), rows)[:, nonblank]          # internal LM: no encoder, no blank
        z = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
        n_t, max_u = enc.shape[0], max(len(s) for s in seqs)
        blank_lp = np.zeros((len(seqs), n_t, max_u + 1))
        label_lp = np.zeros((len(seqs), n_t, max_u))
        ilm = np.zeros(len(seqs))
        start = 1
        for b, s in enumerate(seqs):
            idx = np.concatenate([[0], np.arange(start, start + len(s))])   # lattice rows 0..U
            start += len(s)
            blank_lp[b, :, :len(s) + 1] = lp[:, idx, m.blank]
            label_lp[b, :, :len(s)] = lp[:, idx[:-1], s]
            ilm[b] = z[idx[:-1], s - (s > m.blank)].sum()
        log_p = rnnt_log_likelihood(blank_lp, label_lp, np.full(len(seqs), n_t),
                                    np.array([len(s) for s in seqs]))
        return log_p - self.ilm_weight * ilm

    def _predictions(self, state, seqs: list[np.ndarray], dim: int) -> list[np.ndarray]:
        """Prediction-network outputs after each token of each sequence, all from `state`; the
        sequences advance together when the model has ``predict_batch``."""
        m = self.model
        if not hasattr(m, "predict_batch"):
            out = []
            for s in seqs:
                rows, st = [], state
                for t in s:
                    p, st = m.predict(int(t), st)
                    rows.append(p)
                out.append(np.array(rows, np.float32).reshape(len(rows), dim))
            return out
        out = [np.empty((len(s), dim), np.float32) for s in seqs]
        batch = tuple((np.repeat(h[None], len(seqs), 0), np.repeat(c[None], len(seqs), 0)) for h, c in state)
        for k in range(max(len(s) for s in seqs)):
            live = np.array([b for b, s in enumerate(seqs) if len(s) > k])
            sub = tuple((h[live], c[live]) for h, c in batch)
            pred, sub = m.predict_batch([seqs[b][k] for b in live], sub)
            for (h, c), (h2, c2) in zip(batch, sub):
                h[live], c[live] = h2, c2
            for j, b in enumerate(live):
                out[b][k] = pred[j]
        return out

    # ------------------------------------------------------------------ the pass
    def rescore(self, enc: np.ndarray, hyp, classes) -> Rescored:
        """The first pass's best hypothesis (``tokens`` and ``token_frames``, e.g. an
        asr.decode.Hypothesis) with each suspect slot re-decided among the list's names of its
        class. `classes`: SlotClass objects, or what compile_classes made of them (cheaper when
        one request's list is rescored more than once)."""
        from rapidfuzz import fuzz, process
        from asr.text import encode
        if not all(isinstance(c, _Compiled) for c in classes):
            classes = self.compile_classes(classes)
        tokens, frames = list(hyp.tokens), list(hyp.token_frames)
        if len(frames) != len(tokens):
            raise ValueError(f"hypothesis has {len(tokens)} tokens but {len(frames)} token frames")
        words = _words(tokens)
        out = [w for w, _, _ in words]
        text = " ".join(out)
        result = Rescored(text)
        for i, j, cls in self.suspect_slots(out, classes):
            result.suspect_slots += 1
            span = " ".join(out[i:i + j])
            a, b = words[i][1], words[i + j - 1][2]        # the slot's tokens: a .. b-1
            t_lo = frames[a - 1] if a > 0 else 0
            t_hi = frames[b] if b < len(tokens) else enc.shape[0] - 1
            lo, hi = max(0, t_lo - self.pad_frames), min(enc.shape[0] - 1, t_hi + self.pad_frames)
            after = [_SPACE] if b < len(tokens) else []
            names = [n for n, _, _ in process.extract(span, cls.names, scorer=fuzz.ratio,
                                                      limit=self.max_candidates)]
            slots = [tokens[a:b] + after] + [encode(n) + after for n in names]
            s = self.segment_scores(enc[lo:hi + 1], tokens[:a], slots)
            result.candidates_scored += len(names)
            k = int(np.argmax(s[1:])) + 1
            if s[k] - s[0] > self.margin:
                out[i:i + j] = [names[k - 1]] + [""] * (j - 1)
                result.replacements.append((span, names[k - 1]))
        result.text = " ".join(w for w in out if w)
        result.changed = result.text != text
        return result


__all__ = ["SlotRescorer", "SlotClass", "Rescored"]
