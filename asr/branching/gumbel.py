"""Straight-through Gumbel-softmax routing with an annealed temperature.

Forward: a hard one-hot choice argmax(logits + g) with g ~ Gumbel(0, 1) (a sample from
softmax(logits)); backward: the gradient of the relaxed sample softmax((logits + g) / tau).
As tau falls the relaxation approaches the hard choice, so the train-time routing and the
deployed (hard, argmax) routing agree by the end of training.
"""
from __future__ import annotations

import math

import torch


def sample_gumbel(shape, generator: torch.Generator | None = None) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def gumbel_softmax_st(logits: torch.Tensor, tau: float, generator: torch.Generator | None = None,
                      noise: bool = True) -> torch.Tensor:
    """One-hot routing over the last dim, forward exact one-hot, gradient of the soft sample."""
    if tau <= 0:
        raise ValueError(f"tau = {tau} (allowed: > 0)")
    g = sample_gumbel(logits.shape, generator) if noise else torch.zeros_like(logits)
    soft = torch.softmax((logits + g) / tau, dim=-1)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def anneal_temperature(step: int, total_steps: int, tau_start: float = 2.0,
                       tau_end: float = 0.1) -> float:
    """Geometric decay from tau_start (step 0) to tau_end (step total_steps - 1 and after)."""
    if total_steps <= 1:
        return tau_end
    frac = min(1.0, max(0.0, step / (total_steps - 1)))
    return float(math.exp(math.log(tau_start) + frac * (math.log(tau_end) - math.log(tau_start))))
