"""Slot rescoring (asr.decode.rescore): which slots are suspect, the rescoring score against a
plain-Python reference, re-deciding a misheard name, and bad settings."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from asr import text as asr_text
from asr.decode.hyp import Hypothesis
from asr.decode.rescore import SlotClass, SlotRescorer
from asr.text import BLANK, VOCAB_SIZE
from azsim.errors import ConfigError
from tests.test_biasing import FrameModel   # joint = the frame's log-probs: a flat internal LM

VOCAB = {"call", "text", "me", "set", "the", "thermostat", "kathleen", "please", "to", "on"}
CONTACTS = SlotClass(["karen smith", "bob"], ["call", "text"], frozenset({"kathleen", "nancy"}))


class HistoryModel:
    """A tiny RNN-T whose prediction output depends on the whole token history (so the
    internal LM is not constant) and whose joint is log_softmax(tanh(enc + pred) @ W + b)."""

    vocab_size, blank = VOCAB_SIZE, BLANK

    def __init__(self, seed=0, dim=6):
        rng = np.random.default_rng(seed)
        self.table = rng.normal(0, 1, (97, dim)).astype(np.float32)
        self.w = rng.normal(0, 1, (dim, VOCAB_SIZE)).astype(np.float32)
        self.b = rng.normal(0, 1, VOCAB_SIZE).astype(np.float32)

    def predictor_init(self):
        return ()

    def predict(self, token, state):
        state = state + (int(token),)
        return self.table[hash(state) % len(self.table)], state

    def joint(self, enc, pred):
        z = np.tanh(np.asarray(enc, np.float32) + np.asarray(pred, np.float32)) @ self.w + self.b
        z = z - z.max(axis=-1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)


def _reference_score(model, enc, context, slot, ilm_weight):
    """log P(slot | enc, context) by the forward recursion over every alignment, minus the
    weighted ILM, in plain Python."""
    state = model.predictor_init()
    pred, state = model.predict(model.blank, state)
    for t in context:
        pred, state = model.predict(t, state)
    preds = [pred]
    for t in slot:
        pred, state = model.predict(t, state)
        preds.append(pred)
    n_t, n_u = enc.shape[0], len(slot)
    lp = [[model.joint(enc[t], preds[u]).astype(np.float64) for u in range(n_u + 1)] for t in range(n_t)]
    alpha = [[-math.inf] * (n_u + 1) for _ in range(n_t)]
    alpha[0][0] = 0.0
    for t in range(n_t):
        for u in range(n_u + 1):
            if t == 0 and u == 0:
                continue
            terms = []
            if t > 0:
                terms.append(alpha[t - 1][u] + lp[t - 1][u][model.blank])
            if u > 0:
                terms.append(alpha[t][u - 1] + lp[t][u - 1][slot[u - 1]])
            alpha[t][u] = float(np.logaddexp.reduce(terms))
    ll = alpha[n_t - 1][n_u] + lp[n_t - 1][n_u][model.blank]
    ilm = 0.0
    for u, tok in enumerate(slot):
        z = model.joint(np.zeros_like(preds[u]), preds[u]).astype(np.float64)
        nb = [v for k, v in enumerate(z) if k != model.blank]
        ilm += z[tok] - np.logaddexp.reduce(nb)
    return ll - ilm_weight * ilm


_words = st.lists(st.sampled_from(["call", "bob", "karen", "me", "a", "zed"]), min_size=1, max_size=3)


@settings(max_examples=25, deadline=None)
@given(context=_words.map(" ".join), slots=st.lists(_words.map(" ".join), min_size=1, max_size=4),
       n_t=st.integers(1, 12), seed=st.integers(0, 1000), ilm_weight=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_segment_scores_match_plain_python_reference(context, slots, n_t, seed, ilm_weight):
    model = HistoryModel(seed)
    enc = np.random.default_rng(seed + 1).normal(0, 1, (n_t, 6)).astype(np.float32)
    ctx = asr_text.encode(context + " ")
    toks = [asr_text.encode(s) for s in slots]
    got = SlotRescorer(model, VOCAB, ilm_weight=ilm_weight).segment_scores(enc, ctx, toks)
    want = [_reference_score(model, enc, ctx, t, ilm_weight) for t in toks]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------ suspect slots
def _suspects(text, classes=(CONTACTS,)):
    rs = SlotRescorer(HistoryModel(), VOCAB)
    words = text.split()
    return [" ".join(words[i:i + j]) for i, j, _ in rs.suspect_slots(words, rs.compile_classes(classes))]


def test_a_known_name_missing_from_the_list_is_suspect():
    assert _suspects("call kathleen please") == ["kathleen"]
    assert _suspects("text nancy") == ["nancy"]


def test_words_outside_the_vocabulary_are_suspect_longest_span_first():
    assert _suspects("call karn smyth") == ["karn smyth"]
    assert _suspects("call karn please") == ["karn"]


def test_list_names_and_ordinary_words_are_left_alone():
    assert _suspects("call karen smith") == []
    assert _suspects("call bob please") == []
    assert _suspects("call me") == []                          # a known word, not a known name
    assert _suspects("set the thermostat to kathleen") == []   # no carrier before it
    assert _suspects("kathleen call") == []                    # nothing after the carrier


def test_carrier_phrases_of_several_words():
    cls = SlotClass(["bob"], ["send a message to"], frozenset({"kathleen"}))
    assert _suspects("send a message to kathleen", [cls]) == ["kathleen"]
    assert _suspects("to kathleen", [cls]) == []


# ------------------------------------------------------------------ the pass
def _frames(text, p=0.9):
    """Per-frame log-probs that spell `text` (each char then nothing)."""
    rows = []
    for ch in text:
        q = np.full(VOCAB_SIZE, 1e-4)
        q[asr_text.encode(ch)[0]] = p
        q[BLANK] = 1 - p
        rows.append(np.log(q / q.sum()))
    return np.array(rows, np.float32)


def _hyp(text, audio):
    """A first-pass hypothesis for `text` heard on audio that spells `audio` one character per
    frame: words before the first difference keep their frames, the rest are spread over the
    remaining frames."""
    toks = asr_text.encode(text)
    same = next((k for k, (x, y) in enumerate(zip(text, audio)) if x != y), min(len(text), len(audio)))
    n = len(audio)
    frames = [k if k < same else min(n - 1, same + (k - same) * (n - same) // max(1, len(text) - same))
              for k in range(len(toks))]
    return Hypothesis(tuple(toks), tuple(frames))


def test_a_misheard_known_name_is_replaced_by_the_list_name_the_audio_says():
    rs = SlotRescorer(FrameModel(), VOCAB, ilm_weight=0.0)
    audio = "call karen smith please"
    out = rs.rescore(_frames(audio), _hyp("call kathleen please", audio), [CONTACTS])
    assert out.text == "call karen smith please"
    assert out.changed and out.replacements == [("kathleen", "karen smith")]
    assert out.suspect_slots == 1 and out.candidates_scored == 2


def test_kept_when_the_audio_says_the_heard_name_or_the_margin_is_not_passed():
    rs = SlotRescorer(FrameModel(), VOCAB, ilm_weight=0.0)
    audio = "call kathleen please"
    out = rs.rescore(_frames(audio), _hyp(audio, audio), [CONTACTS])
    assert out.text == "call kathleen please" and not out.changed and out.suspect_slots == 1
    strict = SlotRescorer(FrameModel(), VOCAB, ilm_weight=0.0, margin=100.0)
    audio = "call karen smith please"
    out = strict.rescore(_frames(audio), _hyp("call kathleen please", audio), [CONTACTS])
    assert out.text == "call kathleen please"


def test_nothing_to_do_without_a_suspect_slot():
    rs = SlotRescorer(FrameModel(), VOCAB)
    out = rs.rescore(_frames("set the thermostat"), _hyp("set the thermostat", "set the thermostat"), [CONTACTS])
    assert out.text == "set the thermostat" and out.suspect_slots == 0 and out.candidates_scored == 0


def test_max_candidates_keeps_the_closest_spellings():
    names = ["karen smith", "bob", "zoe", "quentin"]
    rs = SlotRescorer(FrameModel(), VOCAB, ilm_weight=0.0, max_candidates=1)
    out = rs.rescore(_frames("call karen smith"), _hyp("call karan smith", "call karen smith"),
                     [SlotClass(names, ["call"], frozenset())])
    assert out.candidates_scored == 1 and out.text == "call karen smith"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"ilm_weight": -0.1}, "ilm_weight"), ({"ilm_weight": float("nan")}, "ilm_weight"),
    ({"ilm_weight": True}, "ilm_weight"), ({"margin": 1e9}, "margin"),
    ({"max_candidates": 0}, "max_candidates"), ({"max_candidates": 2.5}, "max_candidates"),
    ({"max_span_words": 9}, "max_span_words"), ({"pad_frames": -1}, "pad_frames")])
def test_bad_settings_raise_config_error(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        SlotRescorer(FrameModel(), VOCAB, **kwargs)


def test_bad_names_raise_config_error():
    rs = SlotRescorer(FrameModel(), VOCAB)
    with pytest.raises(ConfigError, match="slot rescoring names"):
        rs.rescore(_frames("call bob"), _hyp("call bobb", "call bob"), [SlotClass([], ["call"])])
    with pytest.raises(ConfigError, match="slot rescoring names"):
        rs.rescore(_frames("call bob"), _hyp("call bobb", "call bob"), [SlotClass(["bob!"], ["call"])])
    with pytest.raises(ValueError, match="token frames"):
        rs.rescore(_frames("call bob"), Hypothesis((3, 4), (0,)), [CONTACTS])


def test_each_suspect_slot_is_re_decided_in_its_own_window():
    rs = SlotRescorer(FrameModel(), VOCAB | {"and"}, ilm_weight=0.0)
    audio = "call karen smith and text bob"
    toks = asr_text.encode("call kathleen and text nancy")
    # the first pass's alignment: "kathleen" over karen smith's frames, "nancy" over bob's
    frames = list(range(5)) + [5 + k * 11 // 8 for k in range(8)] + list(range(16, 26)) + [26, 26, 27, 28, 28]
    out = rs.rescore(_frames(audio), Hypothesis(tuple(toks), tuple(frames)), [CONTACTS])
    assert out.suspect_slots == 2
    assert out.replacements == [("kathleen", "karen smith"), ("nancy", "bob")]
    assert out.text == "call karen smith and text bob"


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_batch=st.integers(1, 5), max_t=st.integers(1, 9),
       max_u=st.integers(0, 6))
def test_log_likelihood_equals_minus_the_loss_exactly(seed, n_batch, max_t, max_u):
    """Rescoring's one-thread, backward-only log P(y|x) is bit for bit minus the training
    loss kernel's loss, on random lattices with padding."""
    from asr.model.rnnt_lattice import rnnt_log_likelihood, rnnt_loss_numpy
    rng = np.random.default_rng(seed)
    blank_lp = np.log(rng.uniform(0.01, 1.0, (n_batch, max_t, max_u + 1)))
    label_lp = np.log(rng.uniform(0.01, 1.0, (n_batch, max_t, max_u)))
    t_lens = rng.integers(1, max_t + 1, n_batch)
    u_lens = rng.integers(0, max_u + 1, n_batch)
    losses, _, _ = rnnt_loss_numpy(blank_lp, label_lp, t_lens, u_lens)
    assert np.array_equal(rnnt_log_likelihood(blank_lp, label_lp, t_lens, u_lens), -losses)
    with pytest.raises(ValueError, match="t_lens"):
        rnnt_log_likelihood(blank_lp, label_lp, t_lens * 0, u_lens)
