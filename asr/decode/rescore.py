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
of that class (the ``max_candidates`` closest in spelling, by rapidfuzz's ratio) is put in its
place and the whole hypothesis is scored by

    log P(y | x) - ilm_weight * log P_ILM(y)

log P(y | x) is the RNN-T's full-sum log-likelihood over all alignments, from the utterance's
encoder outputs (asr.model.rnnt_lattice). log P_ILM(y) is the internal-LM estimate: the joint
network with the encoder's contribution set to zero and blank left out (Meng et al., "Internal
language model estimation for domain-adaptive end-to-end speech recognition", SLT 2021).
Subtracting it removes the prior that made the recognizer prefer a name it knows, and keeps
the acoustic evidence. The best candidate replaces the span if its score beats the
hypothesis's own by more than ``margin``.

    rescorer = SlotRescorer(model, vocab=training_words, ilm_weight=1.0)
    text = rescorer.rescore(enc, best_text, [SlotClass(contacts, ["call", "text"], known_contacts)]).text
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asr.decode.biasing import normalize_names
from azsim.errors import ConfigError

ILM_WEIGHT_RANGE = (0.0, 5.0)
MARGIN_RANGE = (0.0, 100.0)
MAX_CANDIDATES_RANGE = (1, 1000)
MAX_SPAN_WORDS_RANGE = (1, 8)


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


class SlotRescorer:
    def __init__(self, model, vocab, ilm_weight: float = 1.0, margin: float = 0.0,
                 max_candidates: int = 20, max_span_words: int = 3):
        self.model = model
        self.vocab = frozenset(vocab)
        self.ilm_weight = float(_check("ilm_weight", ilm_weight, *ILM_WEIGHT_RANGE))
        self.margin = float(_check("margin", margin, *MARGIN_RANGE))
        self.max_candidates = _check("max_candidates", max_candidates, *MAX_CANDIDATES_RANGE, integer=True)
        self.max_span_words = _check("max_span_words", max_span_words, *MAX_SPAN_WORDS_RANGE, integer=True)

    # ------------------------------------------------------------------ slots
    def suspect_slots(self, words: list[str], classes: list[_Compiled]) -> list[tuple[int, int, _Compiled]]:
        """(start, number of words, class) of each suspect span, left to right."""
        out = []
        for i in range(1, len(words)):
            for cls in classes:
                if not any(words[max(0, i - len(p)):i] == p for p in cls.prefix_words):
                    continue
                rest = words[i:i + self.max_span_words]
                spans = [" ".join(rest[:j]) for j in range(len(rest), 0, -1)]   # longest first
                if any(s in cls.name_set for s in spans):
                    continue
                for j, s in zip(range(len(rest), 0, -1), spans):
                    if s in cls.suspect or all(w not in self.vocab for w in rest[:j]):
                        out.append((i, j, cls))
                        break
                else:
                    continue
                break
        return out

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

    # ------------------------------------------------------------------ scoring
    def scores(self, enc: np.ndarray, texts: list[str]) -> np.ndarray:
        """log P(y | x) - ilm_weight * log P_ILM(y) for each text, from encoder outputs (T, D)."""
        from asr.model.rnnt_lattice import rnnt_loss_numpy
        from asr.text import encode
        m = self.model
        seqs = [np.asarray(encode(t), np.int64) for t in texts]
        head, tails = self._predictions(seqs)
        # Row u of a text's lattice uses the prediction after its first u tokens. Rows up to the
        # shared prefix are the same for every text: the joint runs on them once, and once on
        # all the texts' own rows together.
        own = np.concatenate(tails) if any(len(t) for t in tails) else np.zeros((0, head.shape[1]), np.float32)
        lp_head = m.joint(enc[:, None, :], head[None, :, :])                  # (T, common+1, V)
        lp_own = m.joint(enc[:, None, :], own[None, :, :])                    # (T, sum of own rows, V)
        nonblank = np.arange(m.vocab_size) != m.blank

        def ilm_lp(p):   # internal LM: no encoder, blank left out, renormalized
            z = m.joint(np.zeros_like(p), p)[:, nonblank]
            return z - np.logaddexp.reduce(z, axis=1, keepdims=True)

        ilm_head, ilm_own = ilm_lp(head), ilm_lp(own)
        n_t, max_u = enc.shape[0], max(len(s) for s in seqs)
        blank_lp = np.zeros((len(seqs), n_t, max_u + 1))
        label_lp = np.zeros((len(seqs), n_t, max_u))
        ilm = np.zeros(len(seqs))
        start = 0
        for b, (s, tail) in enumerate(zip(seqs, tails)):
            rows = slice(start, start + len(tail))
            start += len(tail)
            lp = np.concatenate([lp_head, lp_own[:, rows]], axis=1)             # (T, U+1, V)
            blank_lp[b, :, :len(s) + 1] = lp[:, :, m.blank]
            label_lp[b, :, :len(s)] = lp[:, np.arange(len(s)), s]
            z = np.concatenate([ilm_head, ilm_own[rows]])[:len(s)]
            ilm[b] = z[np.arange(len(s)), s - (s > m.blank)].sum()
        losses, _, _ = rnnt_loss_numpy(blank_lp, label_lp, np.full(len(seqs), n_t),
                                       np.array([len(s) for s in seqs]))
        return -losses - self.ilm_weight * ilm

    def _predictions(self, seqs: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Prediction-network outputs before each token and after the last, split into the rows
        all sequences share (the common prefix, computed once) and each one's own rows; the own
        rows of all sequences advance together when the model has ``predict_batch``."""
        m = self.model
        common = 0
        while all(len(s) > common and s[common] == seqs[0][common] for s in seqs):
            common += 1
        state = m.predictor_init()
        pred, state = m.predict(m.blank, state)
        head = [pred]
        for t in seqs[0][:common]:
            pred, state = m.predict(int(t), state)
            head.append(pred)
        rests = [s[common:] for s in seqs]
        dim = head[0].shape[-1]
        if not hasattr(m, "predict_batch"):
            tails = []
            for rest in rests:
                rows, st = [], state
                for t in rest:
                    p, st = m.predict(int(t), st)
                    rows.append(p)
                tails.append(np.array(rows, np.float32).reshape(len(rows), dim))
            return np.stack(head), tails
        tails = [np.empty((len(r), dim), np.float32) for r in rests]
        batch = tuple((np.repeat(h[None], len(seqs), 0), np.repeat(c[None], len(seqs), 0)) for h, c in state)
        for k in range(max(len(r) for r in rests)):
            live = np.array([b for b, r in enumerate(rests) if len(r) > k])
            sub = tuple((h[live], c[live]) for h, c in batch)
            out, sub = m.predict_batch([rests[b][k] for b in live], sub)
            for (h, c), (h2, c2) in zip(batch, sub):
                h[live], c[live] = h2, c2
            for j, b in enumerate(live):
                tails[b][k] = out[j]
        return np.stack(head), tails

    # ------------------------------------------------------------------ the pass
    def rescore(self, enc: np.ndarray, text: str, classes) -> Rescored:
        """The text with each suspect slot re-decided among the list's names of its class.
        `classes`: SlotClass objects, or what compile_classes made of them (cheaper when one
        request's list is rescored more than once)."""
        from rapidfuzz import fuzz, process
        if not all(isinstance(c, _Compiled) for c in classes):   # compile once per request, pass the result
            classes = self.compile_classes(classes)
        words = text.split()
        result = Rescored(text)
        done = 0
        while True:
            slots = [s for s in self.suspect_slots(words, classes) if s[0] >= done]
            if not slots:
                break
            i, j, cls = slots[0]
            result.suspect_slots += 1
            span = " ".join(words[i:i + j])
            names = [n for n, _, _ in process.extract(span, cls.names, scorer=fuzz.ratio,
                                                      limit=self.max_candidates)]
            texts = [" ".join(words)] + [" ".join(words[:i] + [n] + words[i + j:]) for n in names]
            s = self.scores(enc, texts)
            result.candidates_scored += len(names)
            k = int(np.argmax(s[1:])) + 1
            if s[k] - s[0] > self.margin:
                words = words[:i] + names[k - 1].split() + words[i + j:]
                result.replacements.append((span, names[k - 1]))
                done = i + len(names[k - 1].split())
            else:
                done = i + j
        result.text = " ".join(words)
        result.changed = result.text != text
        return result


__all__ = ["SlotRescorer", "SlotClass", "Rescored"]
