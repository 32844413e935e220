"""One beam-search step's candidate selection, compiled with numba.

Outside the model, beam search (asr.decode.beam) chooses each step's candidates: every
hypothesis's ``beam`` best tokens, each scored with the biasing automaton's bonus, the ``beam``
best kept, and with an unbiased reserve the model's own best put back. In Python that was a
few dozen tuples and sorts per step, and with 1000 names and a reserve of 4 it made fusion
1.21x the time of plain search at beam 8 (benchmarks/bench_biasing_speed.py at commit
5b3e3bb); compiled, the same command printed 0.99x.

``select`` reproduces BeamSearch._python_candidates exactly: the same candidates, scores to
the bit, order and tie-breaking (tokens by log-prob, the lowest id first among equals;
candidates by score, ties in (hypothesis, rank) order; the reserve's places chosen and merged
as ``_keep_reserve`` does). tests/test_biasing.py compares the N-best lists of the two paths
on random lattices. The automaton is asr.decode.biasing's dense table
(``BiasList.automaton_tables``), stepped with the same arithmetic as ``BiasList.advance``.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _pending(boosted, weight, node, since):
    d = boosted[node]
    if d > 0:
        return weight * (d if d < since else since)
    return 0.0


@numba.njit(cache=True)
def select(lp, score, bonus, node, since, beam, blank, reserve, has_scorer,
           goto, boosted, is_end, weight, end_bonus, max_depth):
    """The step's kept candidates, best first.

    lp: (n, V) the joint's log-probs for the n active hypotheses; score, bonus: (n,) their
    scores and accumulated bonuses; node, since: (n,) their automaton states (ignored without
    a scorer). Returns (f, g): f[:, 0] score and f[:, 1] bonus of each kept candidate, g[:, 0]
    hypothesis, g[:, 1] token, g[:, 2:4] the automaton state after it.
    """
    n, vocab = lp.shape
    k = min(beam, vocab)
    m = n * k
    c_score = np.empty(m)
    c_bonus = np.zeros(m)
    c_lp = np.empty(m)
    c_tok = np.empty(m, np.int64)
    c_node = np.zeros(m, np.int64)
    c_since = np.zeros(m, np.int64)
    used = np.zeros(vocab, np.bool_)
    differ = False
    for i in range(n):
        if bonus[i] != bonus[0]:
            differ = True
        used[:] = False
        for r in range(k):
            best = -1
            for v in range(vocab):     # the largest unused; ties: the lowest id (a stable sort)
                if not used[v] and (best < 0 or lp[i, v] > lp[i, best]):
                    best = v
            used[best] = True
            c = i * k + r
            x = np.float64(lp[i, best])
            c_lp[c] = x
            c_tok[c] = best
            s = score[i] + x
            if has_scorer:
                nd, sn = node[i], since[i]
                if best != blank:
                    nxt = goto[nd, best]
                    before = _pending(boosted, weight, nd, sn)
                    sn = sn + 1 if sn < max_depth else sn
                    after = _pending(boosted, weight, nxt, sn)
                    if is_end[nxt]:
                        b = after - before + end_bonus
                        sn = 0
                    else:
                        b = after - before
                    nd = nxt
                    s = s + b
                    c_bonus[c] = b
                    if b != 0.0:
                        differ = True
                c_node[c], c_since[c] = nd, sn
            c_score[c] = s
    order = np.argsort(-c_score, kind="mergesort")
    h = min(beam, m)
    keep = order[:h]
    if reserve > 0 and has_scorer and differ and m > h:
        # the reserve's places: the `reserve` best by log-prob alone, from each hypothesis's
        # first `reserve` tokens (in log-prob order), ties in (hypothesis, rank) order
        kr = min(reserve, k)
        idx = np.empty(n * kr, np.int64)
        u = np.empty(n * kr)
        q = 0
        for i in range(n):
            own = score[i] - bonus[i]
            for r in range(kr):
                idx[q] = i * k + r
                u[q] = -(own + c_lp[i * k + r])
                q += 1
        need = idx[np.argsort(u, kind="mergesort")[:reserve]]
        in_head = np.zeros(m, np.bool_)
        for c in keep:
            in_head[c] = True
        missing = False
        for c in need:
            if not in_head[c]:
                missing = True
        if missing:
            is_need = np.zeros(m, np.bool_)
            for c in need:
                is_need[c] = True
            merged = np.empty(h, np.int64)
            q = 0
            for c in need:
                merged[q] = c
                q += 1
            for c in order:
                if q == h:
                    break
                if not is_need[c]:
                    merged[q] = c
                    q += 1
            merged_scores = np.empty(h)
            for q in range(h):
                merged_scores[q] = -c_score[merged[q]]
            keep = merged[np.argsort(merged_scores, kind="mergesort")]
    f = np.empty((h, 2))
    g = np.empty((h, 4), np.int64)
    for q in range(h):
        c = keep[q]
        f[q, 0], f[q, 1] = c_score[c], c_bonus[c]
        g[q, 0], g[q, 1], g[q, 2], g[q, 3] = c // k, c_tok[c], c_node[c], c_since[c]
    return f, g
