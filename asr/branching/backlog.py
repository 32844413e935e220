"""Audio backlog, the amortization penalty, and end-of-speech latency.

Frame t (one 30 ms stacked frame) costs c_t compute units on the device (chip cycles of the
branch it was routed to); the device does C (= C-bar) units per frame period. The backlog after
frame t is

    b_t = max(0, b_{t-1} + c_t - C),  b_{-1} = 0,

work still queued when the next frame arrives. The amortization penalty is mean_t(b_t / C):
an expensive frame is fine when cheap frames follow to absorb it, but runs of expensive frames
that outpace the device are penalized for as long as their queue lasts. The average-cost penalty mean_t(c_t / C)
only counts total work, not when it happens.

With frames arriving every period P, the device idle at the first arrival and C equal to
one period's compute, b_t is exactly how long frame t+1 waits before it starts, so the
end-of-speech latency (last frame's arrival to the end of its work) is b_{T-2} + c_{T-1};
timeline() computes the full queueing timeline directly (tests check the identity).
"""
from __future__ import annotations

import numpy as np
import torch


def backlog(costs, budget: float) -> np.ndarray:
    """b_t for one utterance: costs (T,) in units of work, budget C-bar in the same units."""
    c = np.asarray(costs, np.float64)
    if budget <= 0:
        raise ValueError(f"budget = {budget} (allowed: > 0)")
    b = np.empty_like(c)
    prev = 0.0
    for t, ct in enumerate(c):
        prev = max(0.0, prev + ct - budget)
        b[t] = prev
    return b


def backlog_torch(costs: torch.Tensor, budget: float) -> torch.Tensor:
    """Differentiable b_t for a batch: costs (B, T) -> (B, T). The max(0, .) passes gradient
    only where the queue is non-empty, which is what makes early cheap frames 'pay' for the
    expensive frames they would let pile up."""
    out = []
    prev = torch.zeros_like(costs[:, 0])
    for t in range(costs.shape[1]):
        prev = torch.relu(prev + costs[:, t] - budget)
        out.append(prev)
    return torch.stack(out, dim=1)


def _mask(lens: torch.Tensor, n_t: int) -> torch.Tensor:
    return (torch.arange(n_t)[None, :] < lens[:, None]).to(torch.float32)


def backlog_penalty(costs: torch.Tensor, lens: torch.Tensor, budget: float) -> torch.Tensor:
    """mean over valid frames of b_t / C (padding frames come after the valid ones, so they
    cannot change a valid frame's backlog; they are only masked out of the mean)."""
    m = _mask(lens, costs.shape[1])
    b = backlog_torch(costs, budget) / budget
    return (b * m).sum() / m.sum()


def average_cost_penalty(costs: torch.Tensor, lens: torch.Tensor, budget: float) -> torch.Tensor:
    m = _mask(lens, costs.shape[1])
    return (costs / budget * m).sum() / m.sum()


def timeline(costs_s, period_s: float, first_arrival_s: float = 0.0) -> dict:
    """Queueing timeline of one utterance: frame t arrives at first_arrival + t * period and
    runs for costs_s[t] once the device is free. Returns start/end times, the backlog (work
    queued at each arrival, s) and the end-of-speech latency (end of the last frame's work
    minus its arrival, s)."""
    c = np.asarray(costs_s, np.float64)
    arrival = first_arrival_s + period_s * np.arange(c.size)
    start = np.empty_like(c)
    end = np.empty_like(c)
    free = -np.inf
    for t in range(c.size):
        start[t] = max(arrival[t], free)
        end[t] = start[t] + c[t]
        free = end[t]
    latency = float(end[-1] - arrival[-1]) if c.size else 0.0
    return {"arrival_s": arrival, "start_s": start, "end_s": end,
            "wait_s": start - arrival, "latency_s": latency}
