"""The numba RNN-T loss against a brute-force sum over every alignment, loss and gradient."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from asr.model.loss import rnnt_loss


def _brute_force_nll(logits: torch.Tensor, y: list[int], n_t: int, blank: int = 0) -> torch.Tensor:
    """-log sum over all alignments of T blanks and U labels (last step is the final blank).

    An alignment is a sequence of T + U moves; blanks advance t, labels advance u. Every path
    must end with a blank emitted at (T-1, U). Differentiable, so autograd gives the reference
    gradient too.
    """
    lp = torch.log_softmax(logits, dim=-1)
    n_u = len(y)
    path_scores = []
    # Choose which of the T+U moves are labels; the last move must be a blank.
    for label_pos in itertools.combinations(range(n_t + n_u - 1), n_u):
        t = u = 0
        score = lp.new_zeros(())
        label_set = set(label_pos)
        for step in range(n_t + n_u):
            if step in label_set:
                score = score + lp[t, u, y[u]]
                u += 1
            else:
                score = score + lp[t, u, blank]
                t += 1
        path_scores.append(score)
    return -torch.logsumexp(torch.stack(path_scores), dim=0)


CASES = [(1, 0, 3), (1, 1, 3), (2, 1, 4), (3, 2, 3), (4, 4, 5), (4, 2, 5), (2, 4, 4), (4, 3, 3)]


@pytest.mark.parametrize("n_t,n_u,vocab", CASES)
def test_loss_and_grad_match_brute_force(n_t, n_u, vocab):
    rng = np.random.default_rng(100 * n_t + 10 * n_u + vocab)
    logits = torch.tensor(rng.normal(0, 2, (1, n_t, n_u + 1, vocab)), dtype=torch.float64,
                          requires_grad=True)
    y = [int(v) for v in rng.integers(1, vocab, n_u)]
    targets = torch.tensor([y], dtype=torch.int64).reshape(1, n_u)
    loss = rnnt_loss(logits, targets, torch.tensor([n_t]), torch.tensor([n_u]))
    (grad,) = torch.autograd.grad(loss.sum(), logits)

    ref_logits = logits.detach().clone().requires_grad_(True)
    ref = _brute_force_nll(ref_logits[0], y, n_t)
    (ref_grad,) = torch.autograd.grad(ref, ref_logits)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-9)
    assert torch.allclose(grad, ref_grad, atol=1e-9)
    assert math.isfinite(loss.item()) and loss.item() > 0


def test_batch_with_padding_equals_separate_utterances():
    rng = np.random.default_rng(7)
    vocab, max_t, max_u = 5, 4, 3
    lens = [(4, 3), (2, 1), (3, 0)]
    logits = torch.tensor(rng.normal(0, 1, (3, max_t, max_u + 1, vocab)), dtype=torch.float64,
                          requires_grad=True)
    targets = torch.tensor(rng.integers(1, vocab, (3, max_u)), dtype=torch.int64)
    t_lens = torch.tensor([t for t, _ in lens])
    u_lens = torch.tensor([u for _, u in lens])
    losses = rnnt_loss(logits, targets, t_lens, u_lens)
    (grad,) = torch.autograd.grad(losses.sum(), logits)
    for b, (n_t, n_u) in enumerate(lens):
        ref = _brute_force_nll(logits[b, :n_t, :n_u + 1].detach(), targets[b, :n_u].tolist(), n_t)
        assert losses[b].item() == pytest.approx(ref.item(), abs=1e-9)
        # Padding outside the utterance's lattice gets no gradient.
        pad = grad[b].clone()
        pad[:n_t, :n_u + 1] = 0
        assert torch.count_nonzero(pad) == 0


def test_gradcheck_finite_differences():
    rng = np.random.default_rng(3)
    logits = torch.tensor(rng.normal(0, 1, (2, 3, 3, 4)), dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1, 3], [2, 0]], dtype=torch.int64)
    t_lens = torch.tensor([3, 2])
    u_lens = torch.tensor([2, 1])
    assert torch.autograd.gradcheck(lambda x: rnnt_loss(x, targets, t_lens, u_lens), (logits,),
                                    eps=1e-6, atol=1e-6)


def test_float32_matches_float64():
    rng = np.random.default_rng(11)
    logits64 = torch.tensor(rng.normal(0, 3, (2, 20, 8, 29)), dtype=torch.float64)
    targets = torch.tensor(rng.integers(1, 29, (2, 7)), dtype=torch.int64)
    t_lens, u_lens = torch.tensor([20, 15]), torch.tensor([7, 5])
    l64 = rnnt_loss(logits64, targets, t_lens, u_lens)
    l32 = rnnt_loss(logits64.float(), targets, t_lens, u_lens)
    assert l32.dtype == torch.float32
    assert torch.allclose(l32.double(), l64, rtol=1e-5)


def test_rejects_bad_lengths():
    logits = torch.zeros(1, 3, 2, 4)
    with pytest.raises(ValueError):
        rnnt_loss(logits, torch.ones(1, 1, dtype=torch.int64), torch.tensor([4]), torch.tensor([1]))
