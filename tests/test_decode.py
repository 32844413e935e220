"""Greedy and beam search, the N-best list and the word lattice, on tiny random RNN-Ts."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from asr import text as asr_text
from asr.decode import BeamSearch, GreedySearch, Hypothesis, Lattice, beam_search, greedy_search
from asr.decode.toy import RandomRNNT
from azsim.errors import FormatError


def _enc(model, seed=1, frames=60):
    x = np.random.default_rng(seed).standard_normal((frames, model.input_dim)).astype(np.float32)
    return model.encode(x, model.encoder_init())[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_sym", [1, 2, 3, 4])
def test_beam_1_equals_greedy(seed, max_sym):
    model = RandomRNNT(seed)
    enc = _enc(model, seed + 10)
    g = greedy_search(model, enc, max_sym)
    (b,) = beam_search(model, enc, beam=1, max_symbols_per_frame=max_sym)
    assert len(g.tokens) > 3  # the random model does emit something
    assert b.tokens == g.tokens
    assert b.token_frames == g.token_frames
    assert b.score == pytest.approx(g.score, abs=1e-5)


def test_nbest_sorted_distinct_and_sized():
    model = RandomRNNT(3)
    enc = _enc(model, 4, 80)
    for beam in (2, 4, 8):
        nbest = beam_search(model, enc, beam=beam)
        assert 1 <= len(nbest) <= beam
        scores = [h.score for h in nbest]
        assert scores == sorted(scores, reverse=True)
        assert len({h.tokens for h in nbest}) == len(nbest)
        for h in nbest:
            assert len(h.tokens) == len(h.token_frames) == len(h.token_scores)
            assert list(h.token_frames) == sorted(h.token_frames)
            assert all(0 <= f < enc.shape[0] for f in h.token_frames)


def _alignment_score(model, enc, hyp, max_sym):
    """Log-prob of the single alignment implied by the hypothesis's token frames."""
    pred, state = model.predict(model.blank, model.predictor_init())
    score, i = 0.0, 0
    for t in range(enc.shape[0]):
        emitted = 0
        while i < len(hyp.tokens) and hyp.token_frames[i] == t:
            score += float(model.joint(enc[t], pred)[hyp.tokens[i]])
            pred, state = model.predict(hyp.tokens[i], state)
            i, emitted = i + 1, emitted + 1
        if emitted < max_sym:
            score += float(model.joint(enc[t], pred)[model.blank])
    return score


def test_scores_cover_their_alignment():
    model = RandomRNNT(5)
    enc = _enc(model, 6, 50)
    for h in beam_search(model, enc, beam=4):
        # merged hypotheses sum several alignments: never less than the kept one
        assert h.score >= _alignment_score(model, enc, h, 3) - 1e-4
    g = greedy_search(model, enc, 3)
    assert g.score == pytest.approx(_alignment_score(model, enc, g, 3), abs=1e-4)


def _brute_force(model, enc, max_sym):
    """log P(tokens) summed over every alignment with <= max_sym symbols per frame."""
    totals: dict[tuple, float] = {}
    V = model.vocab_size

    def frame_options():
        for n in range(max_sym + 1):
            yield from itertools.product(range(1, V), repeat=n)

    def walk(t, tokens, pred, state, logp):
        if t == enc.shape[0]:
            totals[tokens] = np.logaddexp(totals.get(tokens, -np.inf), logp)
            return
        for emit in frame_options():
            p, s, lp = pred, state, logp
            for k in emit:
                lp += float(model.joint(enc[t], p)[k])
                p, s = model.predict(k, s)
            if len(emit) < max_sym:
                lp += float(model.joint(enc[t], p)[model.blank])
            walk(t + 1, tokens + emit, p, s, lp)

    pred, state = model.predict(model.blank, model.predictor_init())
    walk(0, (), pred, state, 0.0)
    return totals


@pytest.mark.parametrize("max_sym", [1, 2])
def test_wide_beam_is_exact_on_tiny_case(max_sym):
    # 3 frames, 3 non-blank tokens: a beam wider than the number of alignments keeps
    # everything, so merged scores must equal the brute-force sum over alignments.
    model = RandomRNNT(7, vocab_size=4, blank_bias=0.0)
    enc = _enc(model, 8, 3)
    exact = _brute_force(model, enc, max_sym)
    nbest = beam_search(model, enc, beam=10_000, max_symbols_per_frame=max_sym)
    assert len(nbest) == len(exact)
    assert math.log(sum(math.exp(v) for v in exact.values())) == pytest.approx(0.0, abs=1e-5)
    for h in nbest:
        assert h.score == pytest.approx(exact[h.tokens], abs=1e-5)


def test_chunked_advance_equals_whole():
    model = RandomRNNT(9)
    enc = _enc(model, 10, 70)
    whole = beam_search(model, enc, beam=4)
    search = BeamSearch(model, beam=4)
    for a, b in [(0, 1), (1, 17), (17, 18), (18, 70)]:
        search.advance(enc[a:b])
    assert [(h.tokens, h.score) for h in search.nbest()] == [(h.tokens, h.score) for h in whole]
    greedy = GreedySearch(model)
    greedy.advance(enc[:33])
    greedy.advance(enc[33:])
    assert greedy.best.tokens == greedy_search(model, enc).tokens


def test_observers_see_every_frame():
    model = RandomRNNT(11)
    enc = _enc(model, 12, 25)
    for search_cls in (BeamSearch, GreedySearch):
        seen = []
        search = search_cls(model, observers=[lambda t, s: seen.append(
            (t, s.frames_done, s.best.text, s.last_enc, s.last_blank_logprob))])
        search.advance(enc)
        assert [x[0] for x in seen] == list(range(25))
        assert all(done == t + 1 for t, done, *_ in seen)
        assert all(np.array_equal(x[3], enc[x[0]]) and x[4] <= 0.0 for x in seen)
    # beam 1 and greedy see the same per-frame blank log-probs
    blanks = {}
    for name, search in (("g", GreedySearch(model)), ("b", BeamSearch(model, beam=1))):
        blanks[name] = []
        search.observers.append(lambda t, s, out=blanks[name]: out.append(s.last_blank_logprob))
        search.advance(enc)
    assert blanks["g"] == pytest.approx(blanks["b"])


class _BoostToken:
    """Scorer: bonus per occurrence of one token; the final hook takes back half of it."""

    def __init__(self, token, bonus):
        self.token, self.bonus = token, bonus

    def initial_state(self):
        return 0

    def advance(self, state, token):
        return (self.bonus, state + 1) if token == self.token else (0.0, state)

    def final(self, state):
        return -0.5 * self.bonus * state


def test_token_bonus_hook():
    model = RandomRNNT(13)
    enc = _enc(model, 14, 60)
    a = asr_text.VOCAB.index("a")
    plain = beam_search(model, enc, beam=4)
    boosted = beam_search(model, enc, beam=4, scorer=_BoostToken(a, 3.0))
    assert boosted[0].tokens.count(a) > plain[0].tokens.count(a)
    for h in boosted:
        assert h.bonus == pytest.approx(1.5 * h.tokens.count(a))
        assert h.log_prob == pytest.approx(h.score - h.bonus)
    assert [h.score for h in boosted] == sorted((h.score for h in boosted), reverse=True)
    # a zero bonus changes nothing
    zero = beam_search(model, enc, beam=4, scorer=_BoostToken(a, 0.0))
    assert [(h.tokens, round(h.score, 6)) for h in zero] == [(h.tokens, round(h.score, 6)) for h in plain]


def test_bad_search_arguments():
    model = RandomRNNT(0)
    with pytest.raises(ValueError, match="beam"):
        BeamSearch(model, beam=0)
    with pytest.raises(ValueError, match="max_symbols_per_frame"):
        GreedySearch(model, max_symbols_per_frame=0)


def test_empty_input():
    model = RandomRNNT(0)
    enc = np.zeros((0, 24), np.float32)
    assert greedy_search(model, enc).text == ""
    (h,) = beam_search(model, enc, beam=4)
    assert h.text == "" and h.score == 0.0
    lat = Lattice.from_hypotheses([h])
    assert list(lat.paths()) == [((), 0.0)]


# ------------------------------------------------------------------------------ lattice
def _hyp(text, frames, step_score=-1.0, tail=-0.5):
    tokens = tuple(asr_text.encode(text))
    scores = tuple(step_score * (i + 1) for i in range(len(tokens)))
    return Hypothesis(tokens, tuple(frames), scores, scores[-1] + tail if scores else tail)


def test_lattice_merges_prefixes_and_suffixes():
    # "call mom now" / "call tom now": shared first word (prefix) and shared last word at the
    # same times with the same score (suffix) -> 4 nodes, 4 edges instead of 6 nodes/6 edges.
    f1 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    hyps = [_hyp("call mom now", f1), _hyp("call tom now", f1)]
    lat = Lattice.from_hypotheses(hyps)
    assert lat.num_nodes == 4 and len(lat.edges) == 4
    paths = dict(lat.paths())
    assert set(paths) == {("call", "mom", "now"), ("call", "tom", "now")}
    for h in hyps:
        assert paths[tuple(h.text.split())] == pytest.approx(h.score, abs=1e-3)
    # word times: "call" spans frames 0..3 -> [0, 4); "now" starts at its 'n' (frame 9)
    call = [e for e in lat.edges if e.word == "call"][0]
    now = [e for e in lat.edges if e.word == "now"][0]
    assert (call.start, call.end) == (0, 4) and (now.start, now.end) == (9, 12)
    assert lat.node_frames[now.dst] == 12


def test_lattice_contains_every_nbest_hypothesis():
    for seed in range(4):
        model = RandomRNNT(seed, blank_bias=3.0)
        enc = _enc(model, 20 + seed, 120)
        nbest = beam_search(model, enc, beam=6)
        lat = Lattice.from_hypotheses(nbest)
        paths = dict(lat.paths())
        assert set(paths) == {tuple(h.text.split()) for h in nbest}
        best_by_words = {}
        for h in nbest:
            best_by_words.setdefault(tuple(h.text.split()), []).append(h.score)
        for words, scores in best_by_words.items():
            assert paths[words] == pytest.approx(float(np.logaddexp.reduce(scores)), abs=1e-3)
        assert lat.best_path()[0] == tuple(nbest[0].text.split())
        # never more edges than the N-best list has words (shared prefixes are merged)
        assert len(lat.edges) <= sum(len(h.text.split()) for h in nbest)
        for e in lat.edges:
            assert e.start < e.end == lat.node_frames[e.dst]
            assert lat.node_frames[e.src] <= e.start


def test_lattice_json_round_trip_and_size():
    model = RandomRNNT(2, blank_bias=3.0)
    lat = Lattice.from_hypotheses(beam_search(model, _enc(model, 3, 100), beam=4))
    payload = lat.to_json()
    assert " " not in payload.replace('" "', "")  # compact separators
    assert lat.size_bytes() == len(payload.encode("utf-8"))
    back = Lattice.from_json(payload)
    assert back == lat
    assert back.to_json() == payload
    assert list(back.paths()) == list(lat.paths())
    assert json.loads(payload)["frame_ms"] == 30.0


@pytest.mark.parametrize("payload", [
    "not json", "{}", '{"frame_ms":30,"words":[],"nodes":[0],"edges":[[0,5,0,0,1,0.0]],"final":[]}',
    '{"frame_ms":30,"words":["a"],"nodes":[0],"edges":[],"final":[[3,0.0]]}',
])
def test_lattice_bad_json(payload):
    with pytest.raises(FormatError, match="lattice JSON"):
        Lattice.from_json(payload)


def test_predictor_cache_pruning_changes_nothing(monkeypatch):
    import asr.decode.beam as beam_mod
    model = RandomRNNT(15)
    enc = _enc(model, 16, 80)
    full = beam_search(model, enc, beam=4)
    monkeypatch.setattr(beam_mod, "_CACHE_LIMIT", 3)
    calls = []
    real_predict = model.predict
    monkeypatch.setattr(model, "predict", lambda k, s: calls.append(k) or real_predict(k, s))
    pruned = beam_search(model, enc, beam=4)
    assert [(h.tokens, h.score) for h in pruned] == [(h.tokens, h.score) for h in full]
    assert calls  # the cache was pruned and predictions recomputed where needed
