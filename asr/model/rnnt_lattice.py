"""The RNN-T lattice in numba: the forward-backward pass behind the training loss, and the
log-likelihood of given label sequences that second-pass rescoring uses. No torch here, so
decoding code can use it without the training extra.

numba's default OpenMP threading layer clashes with torch's (torch steps ran ~14x slower after
the first parallel numba call, see FACTS.md), so the threading layer is pinned to `workqueue`
here, before this module compiles or runs anything parallel.
"""
from __future__ import annotations

import math

import numba
import numpy as np

# Must happen before the first parallel numba call anywhere in the process.
numba.config.THREADING_LAYER = "workqueue"


@numba.njit(cache=True, fastmath=False)
def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = a if a > b else b
    return m + math.log1p(math.exp(-abs(a - b)))


@numba.njit(cache=True)
def _beta(blank_lp, label_lp, b, n_t, n_u, beta):
    """The backward variables of utterance b: beta[t, u] = log P(the rest | t, u); beta[0, 0]
    is log P(y|x)."""
    for t in range(n_t - 1, -1, -1):
        for u in range(n_u, -1, -1):
            if t == n_t - 1 and u == n_u:
                beta[t, u] = blank_lp[b, t, u]
                continue
            v = -math.inf
            if t < n_t - 1:
                v = beta[t + 1, u] + blank_lp[b, t, u]
            if u < n_u:
                v = _logaddexp(v, beta[t, u + 1] + label_lp[b, t, u])
            beta[t, u] = v


@numba.njit(cache=True)
def _log_likelihood_kernel(blank_lp, label_lp, t_lens, u_lens, out):
    """log P(y|x) of each utterance, backward pass only, on one thread: second-pass rescoring
    scores a few short windows per request, where threads cost more than they save (and
    stall behind other processes on a busy machine)."""
    beta = np.empty(blank_lp.shape[1:], np.float64)
    for b in range(blank_lp.shape[0]):
        _beta(blank_lp, label_lp, b, t_lens[b], u_lens[b], beta)
        out[b] = beta[0, 0]


@numba.njit(cache=True, parallel=True)
def _rnnt_kernel(blank_lp, label_lp, t_lens, u_lens, losses, g_blank, g_label):
    """Per utterance b: alpha and beta over the (T_b, U_b + 1) lattice, loss = -log P(y|x).

    blank_lp[b, t, u]: log P(blank | t, u);  label_lp[b, t, u]: log P(y[u+1] | t, u).
    Writes losses[b] and the gradients of losses[b] wrt both inputs (zero outside the lattice).
    """
    n_batch = blank_lp.shape[0]
    max_t = blank_lp.shape[1]
    max_u1 = blank_lp.shape[2]
    for b in numba.prange(n_batch):
        n_t = t_lens[b]
        n_u = u_lens[b]
        alpha = np.empty((max_t, max_u1), np.float64)
        beta = np.empty((max_t, max_u1), np.float64)
        alpha[0, 0] = 0.0
        for t in range(n_t):
            for u in range(n_u + 1):
                if t == 0 and u == 0:
                    continue
                a = -math.inf
                if t > 0:
                    a = alpha[t - 1, u] + blank_lp[b, t - 1, u]
                if u > 0:
                    a = _logaddexp(a, alpha[t, u - 1] + label_lp[b, t, u - 1])
                alpha[t, u] = a
        _beta(blank_lp, label_lp, b, n_t, n_u, beta)
        log_z = beta[0, 0]
        losses[b] = -log_z
        for t in range(max_t):
            for u in range(max_u1):
                g_blank[b, t, u] = 0.0
                if u < max_u1 - 1:
                    g_label[b, t, u] = 0.0
        for t in range(n_t):
            for u in range(n_u + 1):
                if t < n_t - 1:
                    g_blank[b, t, u] = -math.exp(alpha[t, u] + blank_lp[b, t, u] + beta[t + 1, u] - log_z)
                elif u == n_u:
                    g_blank[b, t, u] = -math.exp(alpha[t, u] + blank_lp[b, t, u] - log_z)
                if u < n_u:
                    g_label[b, t, u] = -math.exp(alpha[t, u] + label_lp[b, t, u] + beta[t, u + 1] - log_z)


def _checked(blank_lp, label_lp, t_lens, u_lens):
    blank_lp = np.ascontiguousarray(blank_lp, np.float64)
    label_lp = np.ascontiguousarray(label_lp, np.float64)
    n_batch, max_t, max_u1 = blank_lp.shape
    if label_lp.shape != (n_batch, max_t, max_u1 - 1):
        raise ValueError(f"label_lp shape {label_lp.shape} must be {(n_batch, max_t, max_u1 - 1)}")
    t_lens = np.ascontiguousarray(t_lens, np.int64)
    u_lens = np.ascontiguousarray(u_lens, np.int64)
    if np.any(t_lens < 1) or np.any(t_lens > max_t) or np.any(u_lens < 0) or np.any(u_lens > max_u1 - 1):
        raise ValueError("t_lens must be in [1, T] and u_lens in [0, U]")
    return blank_lp, label_lp, t_lens, u_lens


def rnnt_loss_numpy(blank_lp: np.ndarray, label_lp: np.ndarray, t_lens: np.ndarray,
                    u_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(losses (B,), d loss / d blank_lp, d loss / d label_lp), computed in float64."""
    blank_lp, label_lp, t_lens, u_lens = _checked(blank_lp, label_lp, t_lens, u_lens)
    losses = np.empty(blank_lp.shape[0], np.float64)
    g_blank = np.empty_like(blank_lp)
    g_label = np.empty_like(label_lp)
    _rnnt_kernel(blank_lp, label_lp, t_lens, u_lens, losses, g_blank, g_label)
    return losses, g_blank, g_label


def rnnt_log_likelihood(blank_lp: np.ndarray, label_lp: np.ndarray, t_lens: np.ndarray,
                        u_lens: np.ndarray) -> np.ndarray:
    """log P(y|x) per utterance (B,), in float64: exactly minus rnnt_loss_numpy's losses,
    without the forward pass and the gradients, on one thread."""
    blank_lp, label_lp, t_lens, u_lens = _checked(blank_lp, label_lp, t_lens, u_lens)
    out = np.empty(blank_lp.shape[0], np.float64)
    _log_likelihood_kernel(blank_lp, label_lp, t_lens, u_lens, out)
    return out
