"""RNN-T beam search returning an N-best list.

Algorithm: icefall's *modified beam search* (Kang et al., "Fast and parallel decoding for
transducer", 2022: every hypothesis advances one frame per step, so all hypotheses stay
time-synchronous), generalized from one symbol per frame to up to
``max_symbols_per_frame = S`` symbols per frame:

    for each encoder frame t:
        active <- current hypotheses, finished <- {}
        for step s in 0 .. S-1:
            score every active hypothesis with the joint network at frame t;
            take each hypothesis's ``beam`` best symbols, add the scorer bonus (if any) to
            non-blank ones, and keep the ``beam`` best candidates over all hypotheses;
            blank -> the hypothesis is done with frame t (goes to `finished`);
            a token -> extended hypothesis stays on frame t for the next step, except at
            the last step, where emitting a token also ends the frame (as greedy does).
        hypotheses with the same token sequence are merged (log-add of their scores, the
        better one's alignment kept); the ``beam`` best finished ones go on to frame t+1.

With S = 1 this is exactly modified beam search. With beam 1 it is exactly greedy search
with the same S (greedy.py): the same path, the same score, the same tie-breaking
(lowest token id). The default S (greedy.MAX_SYMBOLS_PER_FRAME = 4) is shared with greedy.

Hooks for later pieces (issue 7):
- a ``TokenScorer`` (shallow-fusion biasing) adds a bonus for every non-blank token and a
  final bonus at the end (to withdraw the boost of an unfinished match);
- ``observers`` see the search after every frame (end-pointers);
- ``nbest()`` does not modify the search, so a lattice can be taken mid-utterance.

Unbiased reserve (``reserve = R``, with a scorer): of the ``beam`` places kept at every step
and every frame, R go to the best candidates by the model's own log-probability (score minus
scorer bonus), the rest by biased score as usual. Shallow fusion boosts partial matches; a
boosted prefix that later breaks has its boost withdrawn, but by then it may have pushed the
unbiased best path out of a small beam ("call eight four ..." heard as "call et four ...", the
"e" of "ethan" boosted). The reserve keeps the path an unbiased search would follow alive, so a
withdrawn boost falls back to it. R = 0 is plain fusion.

Speed: each step's candidate choice (top tokens, automaton bonuses, ranking, reserve) runs in
compiled code (beam_kernel.select) without a scorer or with a BiasList, and in Python
(``_python_candidates``) for any other TokenScorer; the two give the same N-best lists to the
bit (tested). What stays in Python is per kept candidate: merging, hypotheses, the predictor.
"""
from __future__ import annotations

from dataclasses import replace
from operator import attrgetter, itemgetter
from typing import Any, Callable, Protocol

import numpy as np

from asr.decode.greedy import MAX_SYMBOLS_PER_FRAME, check_max_symbols, initial_hypothesis
from asr.decode.hyp import Hypothesis


class TokenScorer(Protocol):
    """A per-token score added during search (shallow fusion, e.g. a biasing prefix tree).

    States must be a function of the token sequence alone: hypotheses with the same tokens
    are merged and keep one state.
    """

    def initial_state(self) -> Any: ...

    def advance(self, state: Any, token: int) -> tuple[float, Any]:
        """(bonus in log-prob units for appending ``token``, new state)."""

    def final(self, state: Any) -> float:
        """Bonus applied once when the N-best list is taken (e.g. minus an unfinished boost)."""

    # Optional: ``automaton_tables()``, the scorer as a dense automaton (asr.decode.biasing's
    # BiasList). With it, each step's candidates are chosen in compiled code (beam_kernel).


_CACHE_LIMIT = 2048  # predictor cache entries kept before pruning to live histories
# Each step's candidates are chosen by beam_kernel.select when there is no scorer or the
# scorer is a dense automaton; False forces the Python path (tests compare the two).
_USE_KERNEL = True
# The kernel's automaton arguments when there is no scorer (same types as a BiasList's, so
# one compiled version serves both).
_NO_TABLES = (np.zeros((1, 1), np.int32), np.zeros(1, np.int64), np.zeros(1, np.bool_), 0.0, 0.0, 0)


class _Pending:
    """Predictor input not yet run: computed only for candidates that survive merging."""

    __slots__ = ("state", "token")

    def __init__(self, state, token):
        self.state, self.token = state, token


def _with(h: Hypothesis, score: float, pred, pred_state) -> Hypothesis:
    """h with another score and predictor output. A plain construction rather than
    dataclasses.replace: this runs for every candidate of every frame, and replace() costs
    several times as much."""
    return Hypothesis(h.tokens, h.token_frames, h.token_scores, score, h.bonus, pred, pred_state,
                      h.scorer_state)


def _merge(pool: dict, hyp: Hypothesis) -> None:
    old = pool.get(hyp.tokens)
    if old is None:
        pool[hyp.tokens] = hyp
        return
    b = hyp if hyp.score > old.score else old
    pred, pred_state = b.pred, b.pred_state
    if pred is None:  # keep a predictor output either one already has
        for h in (hyp, old):
            if not isinstance(h.pred_state, _Pending):
                pred, pred_state = h.pred, h.pred_state
                break
    pool[hyp.tokens] = _with(b, float(np.logaddexp(old.score, hyp.score)), pred, pred_state)


def _keep_reserve(cands: list, active, tll: list, topl: list, beam: int, reserve: int) -> list[tuple]:
    """The `beam` candidates kept at a step: the `reserve` best by the model's log-probability
    (score without the scorer's bonuses), then the best of `cands` (sorted best first), best
    first. `topl`, `tll`: each hypothesis's top tokens and their log-probs, as plain lists.

    Each hypothesis's top tokens are in log-prob order, so the `reserve` best overall are among
    every hypothesis's first `reserve`; ties go in candidate order (hypothesis, then rank), as
    a stable sort of the full list would put them. Usually they are already among the biased
    best, and nothing else is computed."""
    own = [h.score - h.bonus for h in active]
    ranked = sorted([(-(own[i] + lp), i, r) for i, row in enumerate(tll) for r, lp in enumerate(row[:reserve])])
    head = cands[:beam]
    ids = {(c[1], c[2]) for c in head}
    need = [(i, topl[i][r], r) for _, i, r in ranked[:reserve]]
    if all(x[:2] in ids for x in need):
        return head
    scored = {(c[1], c[2]): c for c in cands}
    return _with_reserve(cands, [scored[(i, j)] for i, j, _ in need], beam, _CAND_ID, _CAND_SCORE)


def _bonuses_differ(hyps, cands=()) -> bool:
    """Whether biased and unbiased scores can rank these hypotheses (and their candidates)
    differently. When every hypothesis carries the same bonus and no candidate earns one, the
    two orders are one constant apart, so the reserve's places are already in the beam and
    need no search. (Plain loops: cheaper than any() over a generator here.)"""
    b0 = hyps[0].bonus
    for h in hyps:
        if h.bonus != b0:
            return True
    for c in cands:
        if c[3] != 0.0:
            return True
    return False


_CAND_ID, _CAND_SCORE = itemgetter(1, 2), itemgetter(0)      # a candidate: (score, i, j, ...)
_HYP_SCORE = attrgetter("score")


def _with_reserve(items: list, must: list, n: int, ident, score) -> list:
    """`n` items: `must` (the unbiased best), then the best of `items` (sorted best first by
    `score`) that are not among them by `ident`; best first by score. Serves both the
    candidates of a step and the hypotheses that end a frame."""
    keys = {ident(x) for x in must}
    head = items[:n]
    if sum(ident(x) in keys for x in head) == len(keys):    # the usual case: already there
        return head
    rest = []
    for x in items:
        if ident(x) not in keys:
            rest.append(x)
            if len(rest) == n - len(must):
                break
    return sorted(must + rest, key=lambda x: -score(x))


class BeamSearch:
    """Incremental beam search; feed encoder frames with ``advance``, read ``nbest()``."""

    def __init__(self, model, beam: int = 4, max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME,
                 scorer: TokenScorer | None = None, nbest_size: int | None = None,
                 observers: list[Callable[[int, "BeamSearch"], None]] | None = None,
                 reserve: int = 0):
        if not isinstance(beam, (int, np.integer)) or beam < 1:
            raise ValueError(f"beam must be an integer >= 1, got {beam!r}")
        if not isinstance(reserve, (int, np.integer)) or not 0 <= reserve < beam:
            raise ValueError(f"reserve must be an integer in [0, beam - 1] = [0, {beam - 1}], got {reserve!r}")
        self.model = model
        self.beam = int(beam)
        self.max_symbols_per_frame = check_max_symbols(max_symbols_per_frame)
        self.scorer = scorer
        self.reserve = int(reserve) if scorer is not None else 0   # module doc: unbiased reserve
        self.nbest_size = self.beam if nbest_size is None else max(1, int(nbest_size))
        self.observers = list(observers or [])
        self.frames_done = 0
        # What per-frame observers (end-pointers) may read after each frame: the encoder
        # frame just consumed, and the blank log-prob the best hypothesis gave it.
        self.last_enc: np.ndarray | None = None
        self.last_blank_logprob = 0.0
        self._hyps = [initial_hypothesis(model, scorer)]
        self._pred_cache: dict[tuple, tuple] = {}
        self._rows = np.arange(self.beam)[:, None]    # row index for gathering each hypothesis's top
        tables = getattr(scorer, "automaton_tables", None)
        self._tables = (None if not _USE_KERNEL else _NO_TABLES if scorer is None
                        else tables() if tables is not None else None)
        if self._tables is not None:
            from asr.decode.beam_kernel import select    # numba: imported only when used
            self._select = select
            self._zeros = np.zeros(self.beam), np.zeros(self.beam, np.int64)   # states without a scorer

    @property
    def hyps(self) -> list[Hypothesis]:
        """Current hypotheses, best first (scores without the scorer's final bonus)."""
        return list(self._hyps)

    @property
    def best(self) -> Hypothesis:
        return self._hyps[0]

    def advance(self, enc: np.ndarray) -> None:
        for e in np.asarray(enc, np.float32):
            t = self.frames_done
            self._hyps = self._frame(e, t)
            if len(self._pred_cache) > _CACHE_LIMIT:
                # histories no current hypothesis extends are unlikely to come back
                live = {h.tokens[:n] for h in self._hyps for n in range(max(0, len(h.tokens) - 2), len(h.tokens) + 1)}
                self._pred_cache = {k: v for k, v in self._pred_cache.items() if k[:-1] in live}
            self.frames_done += 1
            for observer in self.observers:
                observer(t, self)

    def _frame(self, e: np.ndarray, t: int) -> list[Hypothesis]:
        model, beam = self.model, self.beam
        blank = model.blank
        finished: dict[tuple, Hypothesis] = {}
        active = self._hyps
        for step in range(self.max_symbols_per_frame):
            last = step == self.max_symbols_per_frame - 1
            lp = np.asarray(model.joint(e[None, :], np.stack([h.pred for h in active])))
            if step == 0:
                self.last_enc, self.last_blank_logprob = e, float(lp[0, blank])
            if self._tables is not None:
                cands = self._kernel_candidates(lp, active)
            else:
                cands = self._python_candidates(lp, active)
            next_active: dict[tuple, Hypothesis] = {}
            for score, i, j, bonus, sstate in cands:
                h = active[i]
                if j == blank:
                    _merge(finished, _with(h, score, h.pred, h.pred_state))
                    continue
                new = Hypothesis(h.tokens + (j,), h.token_frames + (t,), h.token_scores + (score,),
                                 score, h.bonus + bonus, None, _Pending(h.pred_state, j), sstate)
                _merge(finished if last else next_active, new)
            active = [self._resolve(h) for h in sorted(next_active.values(), key=lambda h: -h.score)]
            if not active:
                break
        done = sorted(finished.values(), key=lambda h: -h.score)
        if self.reserve and len(done) > beam and _bonuses_differ(done):
            must = sorted(done, key=lambda h: -(h.score - h.bonus))[:self.reserve]
            done = _with_reserve(done, must, beam, id, _HYP_SCORE)
        return [self._resolve(h) for h in done[:beam]]

    def _kernel_candidates(self, lp: np.ndarray, active: list[Hypothesis]) -> list[tuple]:
        """The step's kept candidates, best first, as (score, hypothesis, token, bonus, scorer
        state), chosen in compiled code (beam_kernel.select)."""
        scorer = self.scorer
        scores = np.array([h.score for h in active])
        if scorer is None:
            n = len(active)
            bonus, node = self._zeros[0][:n], self._zeros[1][:n]
            since = node
        else:
            if lp.shape[1] > self._tables[0].shape[1]:   # compiled code does not check indices
                raise ValueError(f"the model's vocabulary ({lp.shape[1]} tokens) is larger than the "
                                 f"bias list's ({self._tables[0].shape[1]})")
            bonus = np.array([h.bonus for h in active])
            node = np.array([h.scorer_state[0] for h in active], np.int64)
            since = np.array([h.scorer_state[1] for h in active], np.int64)
        f, g = self._select(np.ascontiguousarray(lp), scores, bonus, node, since, self.beam,
                            self.model.blank, self.reserve, scorer is not None, *self._tables)
        if scorer is None:
            return [(s, i, j, b, None) for (s, b), (i, j, _, _) in zip(f.tolist(), g.tolist())]
        return [(s, i, j, b, (nd, sn)) for (s, b), (i, j, nd, sn) in zip(f.tolist(), g.tolist())]

    def _python_candidates(self, lp: np.ndarray, active: list[Hypothesis]) -> list[tuple]:
        """The same as _kernel_candidates for any TokenScorer, in Python."""
        scorer, beam, blank = self.scorer, self.beam, self.model.blank
        k = min(beam, lp.shape[1])
        # Stable sorts keep greedy's tie-breaking (lowest token id first).
        top = np.argsort(-lp, axis=1, kind="stable")[:, :k]
        topl = top.tolist()
        tll = lp[self._rows[:len(active)], top].tolist()   # the top tokens' log-probs, as floats
        cands = []
        for i, h in enumerate(active):
            for j, logp in zip(topl[i], tll[i]):
                if j == blank or scorer is None:
                    cands.append((h.score + logp, i, j, 0.0, h.scorer_state))
                else:
                    bonus, sstate = scorer.advance(h.scorer_state, j)
                    cands.append((h.score + logp + bonus, i, j, float(bonus), sstate))
        cands.sort(key=lambda c: -c[0])
        if self.reserve and _bonuses_differ(active, cands):
            return _keep_reserve(cands, active, tll, topl, beam, self.reserve)
        return cands[:beam]

    def _resolve(self, h: Hypothesis) -> Hypothesis:
        if h.pred is not None:
            return h
        # The same token history is often extended again on later frames (a candidate pruned
        # at frame t comes back at t+1): cache predictor outputs by token history.
        hit = self._pred_cache.get(h.tokens)
        if hit is None:
            pred, pstate = self.model.predict(h.pred_state.token, h.pred_state.state)
            hit = self._pred_cache[h.tokens] = (np.asarray(pred, np.float32), pstate)
        return _with(h, h.score, hit[0], hit[1])

    def nbest(self) -> list[Hypothesis]:
        """The N-best list, best first, with the scorer's final bonus applied."""
        hyps = self._hyps
        if self.scorer is not None:
            hyps = []
            for h in self._hyps:
                fb = float(self.scorer.final(h.scorer_state))
                hyps.append(replace(h, score=h.score + fb, bonus=h.bonus + fb))
            hyps.sort(key=lambda h: -h.score)
        return hyps[:self.nbest_size]


def beam_search(model, enc: np.ndarray, beam: int = 4, max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME,
                scorer: TokenScorer | None = None, nbest_size: int | None = None) -> list[Hypothesis]:
    """Beam search over a whole utterance's encoder output (T, J); N-best list, best first."""
    search = BeamSearch(model, beam, max_symbols_per_frame, scorer, nbest_size)
    search.advance(enc)
    return search.nbest()
