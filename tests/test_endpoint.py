"""End-pointers and the speculate / confirm / reset state machine."""
from __future__ import annotations

import numpy as np
import pytest

from asr.decode import BeamSearch
from asr.decode.endpoint import (DONE, LISTENING, SPECULATED, ClassifierEndpointer, EndpointStateMachine,
                                 EOQClassifier, FrameObs, SilenceEndpointer, frame_end_ms)
from azsim.errors import ConfigError, ModelError


def _script(spec, n_frames, blank=-0.01, blank_at=None):
    """FrameObs for a script {frame: word emitted at that frame}: the words so far, token
    counts, last token frame. ``blank_at`` overrides the blank log-prob per frame."""
    words, n_tok, last, out = [], 0, -1, []
    for t in range(n_frames):
        if t in spec:
            words.append(spec[t])
            n_tok += len(spec[t]) + 1
            last = t
        b = blank_at.get(t, blank) if blank_at else blank
        out.append(FrameObs(t, tuple(words), n_tok, last, b))
    return out


def _run(machine, obs):
    events = []
    for o in obs:
        events += machine.step(o)
        if machine.done:
            break
    return events


def test_speculate_then_confirm():
    obs = _script({2: "call", 5: "john"}, 60)
    m = EndpointStateMachine(final=SilenceEndpointer(600), speculative=SilenceEndpointer(300))
    ev = _run(m, obs)
    assert [e.kind for e in ev] == ["speculate", "confirm"]
    assert ev[0].frame == 5 + 10 and ev[1].frame == 5 + 20   # 300 / 30 and 600 / 30 quiet frames
    assert ev[0].words == ev[1].words == ("call", "john")
    assert ev[1].time_ms - ev[0].time_ms == pytest.approx(300.0)
    assert m.state == DONE


def test_speculate_reset_then_speculate_again_and_confirm():
    # a 12-frame (360 ms) pause after "call": the speculative end-pointer (300 ms) fires,
    # then "john" arrives: reset; it speculates again after "john" and the final confirms.
    obs = _script({2: "call", 14: "john"}, 80)
    m = EndpointStateMachine(final=SilenceEndpointer(600), speculative=SilenceEndpointer(300))
    ev = _run(m, obs)
    assert [e.kind for e in ev] == ["speculate", "reset", "speculate", "confirm"]
    assert ev[0].words == ("call",) and ev[0].frame == 12
    assert ev[1].frame == 14 and ev[1].words == ("call", "john")
    assert ev[2].frame == 24 and ev[3].frame == 34


def test_final_without_speculation_and_cut_off():
    # no speculative end-pointer: one "final" event
    m = EndpointStateMachine(final=SilenceEndpointer(600))
    ev = _run(m, _script({2: "call", 5: "john"}, 60))
    assert [e.kind for e in ev] == ["final"] and ev[0].frame == 25
    # a pause longer than the final rule cuts the user off: final fires mid-utterance
    m = EndpointStateMachine(final=SilenceEndpointer(600), speculative=SilenceEndpointer(300))
    ev = _run(m, _script({2: "call", 40: "john"}, 80))
    assert [e.kind for e in ev] == ["speculate", "confirm"]
    assert ev[-1].words == ("call",) and ev[-1].frame == 22


def test_final_with_changed_words_resets_then_finals():
    # words change on the very frame the final end-pointer fires (only possible when the final
    # end-pointer does not depend on the words): reset, then final with the new words
    class FireAt:
        def __init__(self, t):
            self.t = t

        def reset(self):
            pass

        def update(self, obs):
            return obs.t >= self.t

    obs = _script({2: "call", 10: "john"}, 30)
    m = EndpointStateMachine(final=FireAt(10), speculative=FireAt(5))
    ev = _run(m, obs)
    assert [e.kind for e in ev] == ["speculate", "reset", "final"]
    assert ev[-1].words == ("call", "john")


def test_states_and_machine_reset():
    m = EndpointStateMachine(final=SilenceEndpointer(600), speculative=SilenceEndpointer(300))
    obs = _script({2: "call"}, 40)
    for o in obs[:12]:
        m.step(o)
    assert m.state == LISTENING
    m.step(obs[12])
    assert m.state == SPECULATED
    m.reset()
    assert m.state == LISTENING and m.events == []
    assert [e.kind for e in _run(m, obs)] == ["speculate", "confirm"]
    assert m.step(obs[-1]) == []           # nothing after DONE


def test_finish_at_end_of_audio():
    m = EndpointStateMachine(final=SilenceEndpointer(600), speculative=SilenceEndpointer(300))
    obs = _script({2: "call", 5: "john"}, 18)            # audio ends 12 frames after "john"
    ev = _run(m, obs) + m.finish(obs[-1])
    assert [e.kind for e in ev] == ["speculate", "confirm"] and ev[-1].frame == 17
    m = EndpointStateMachine(final=SilenceEndpointer(600))
    assert [e.kind for e in m.finish(obs[3])] == ["final"]


def test_silence_rule_needs_a_token_and_confident_blanks():
    ep = SilenceEndpointer(300)
    assert not any(ep.update(o) for o in _script({}, 50))      # leading silence never fires
    # frames where blank is unlikely (model unsure) break the silence run
    unsure = {t: np.log(0.2) for t in range(8, 12)}
    ep = SilenceEndpointer(300)
    fired = [o.t for o in _script({2: "call"}, 40, blank_at=unsure) if ep.update(o)]
    assert fired[0] == 11 + 10
    with pytest.raises(ConfigError, match="trailing_ms"):
        SilenceEndpointer(0)
    with pytest.raises(ConfigError, match="min_blank_logprob"):
        SilenceEndpointer(300, min_blank_logprob=0.5)


def test_frame_times():
    assert frame_end_ms(0) == 45.0 and frame_end_ms(10) == 345.0


# ------------------------------------------------------------------ learned classifier
def _toy_data(n=2000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32) * 3 + 1
    y = ((x[:, 0] - 1) + 0.5 * (x[:, 1] - 1) > 1.0).astype(np.float32)
    xor = np.logical_xor(x[:, 2] > 1, x[:, 3] > 1).astype(np.float32)   # not linearly separable
    return x, y, xor


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_eoq_classifier_learns_and_round_trips(kind, tmp_path):
    x, y, _ = _toy_data()
    clf = EOQClassifier(kind, hidden=16, seed=1).fit(x[:1500], y[:1500], steps=300, lr=0.05)
    acc = float(np.mean((clf.predict_proba(x[1500:]) > 0.5) == (y[1500:] > 0.5)))
    assert acc > 0.95
    p = tmp_path / "eoq.npz"
    clf.save(p)
    again = EOQClassifier.load(p)
    assert np.array_equal(again.decision(x[:50]), clf.decision(x[:50]))


def test_mlp_beats_logreg_on_a_nonlinear_target():
    x, _, xor = _toy_data(3000)
    lin = EOQClassifier("logreg").fit(x[:2000], xor[:2000], steps=300, lr=0.05)
    mlp = EOQClassifier("mlp", hidden=16, seed=0).fit(x[:2000], xor[:2000], steps=600, lr=0.05)
    acc = lambda c: float(np.mean((c.predict_proba(x[2000:]) > 0.5) == (xor[2000:] > 0.5)))
    assert acc(lin) < 0.7 < 0.85 < acc(mlp)


def test_classifier_endpointer_hold_and_errors(tmp_path):
    class Fixed:                       # a classifier whose decision is the first input
        kind = "fixed"

        def decision(self, x):
            return np.atleast_2d(x)[:, 0]

    ep = ClassifierEndpointer(Fixed(), threshold=0.5, hold_frames=3)
    logits = [-1, 2, 2, -1, 2, 2, 2, 2]
    fired = [t for t, l in enumerate(logits)
             if ep.update(FrameObs(t, ("x",), 1, 0, 0.0, np.array([l], np.float32)))]
    assert fired == [6, 7]
    with pytest.raises(ConfigError, match="threshold"):
        ClassifierEndpointer(Fixed(), threshold=1.5)
    with pytest.raises(ConfigError, match="hold_frames"):
        ClassifierEndpointer(Fixed(), hold_frames=0)
    with pytest.raises(ConfigError, match="kind"):
        EOQClassifier("svm")
    with pytest.raises(ModelError, match="not found"):
        EOQClassifier.load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(ModelError, match="not an end-of-query"):
        EOQClassifier.load(bad)


# ------------------------------------------------------------------ live, as a search observer
def test_machine_as_beam_search_observer_sends_lattices():
    from tests.test_biasing import FrameModel, _frames
    spec = [{c: 0.9} for c in "call john"] + [{}] * 30
    enc = _frames(spec)
    m = EndpointStateMachine(final=SilenceEndpointer(600), speculative=SilenceEndpointer(300))
    search = BeamSearch(FrameModel(), beam=4, max_symbols_per_frame=1, observers=[m])
    search.advance(enc)
    kinds = [e.kind for e in m.events]
    assert kinds == ["speculate", "confirm"]
    sp = m.events[0]
    assert sp.lattice is not None and sp.lattice.best_path()[0] == ("call", "john")
    assert sp.as_dict()["lattice_bytes"] == sp.lattice.size_bytes() > 0
    assert m.events[1].lattice is None          # a confirm carries no lattice
