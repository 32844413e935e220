"""Gradual magnitude sparsification during training (Zhu & Gupta, "To prune, or not to prune",
2017), unstructured or N:M.

Schedule: from step t0, every dt steps for n updates, the target sparsity is

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3

(fast pruning early while the network can recover, slow at the end); before t0 it is s_i
(no pruning when s_i = 0) and after t0 + n*dt it stays s_f. At each update the smallest-
magnitude weights of every pruned tensor are masked to reach s_t (masks only grow: a pruned
weight stays pruned); after every optimizer step ``apply()`` re-zeroes the masked weights.

N:M: the final pattern keeps N of every M consecutive inputs of a row; on the way there the
number kept per group falls from M to N following the same cubic curve, so s_f = 1 - N/M.

    pruner = GradualPruner.for_rnnt(model, final_sparsity=0.5, begin_step=500, end_step=3000)
    for step in ...:
        loss.backward(); opt.step(); pruner.step(step)

Used by asr/train/compress_train.py (the sparse compression configs): the hook point is right
after ``opt.step()``, plus ``state_dict()`` / ``load_state_dict()`` in the checkpoint.
"""
from __future__ import annotations

import math

import numpy as np

from azsim.errors import ConfigError


def zhu_gupta_sparsity(step: int, final: float, initial: float = 0.0, begin_step: int = 0,
                       end_step: int = 1000, frequency: int = 100) -> float:
    """Target sparsity at `step` (held constant between updates every `frequency` steps)."""
    if not 0.0 <= initial <= final < 1.0:
        raise ConfigError(f"sparsity: initial {initial} / final {final} (allowed: 0 <= initial <= final < 1)")
    if end_step <= begin_step or frequency < 1:
        raise ConfigError(f"sparsity schedule: begin_step {begin_step}, end_step {end_step}, "
                          f"frequency {frequency} (allowed: end_step > begin_step, frequency >= 1)")
    if step < begin_step:
        return initial
    if step >= end_step:
        return final
    t = begin_step + ((step - begin_step) // frequency) * frequency   # last update point
    frac = (t - begin_step) / (end_step - begin_step)
    return final + (initial - final) * (1.0 - frac) ** 3


def rnnt_prunable(model) -> dict:
    """{name: parameter} of the RNN-T weight matrices the chip stores (LSTM ih/hh weights,
    enc_proj, pred_proj, joint_out); not the embedding, biases, or the training-only CTC head."""
    out = {}
    for name, p in model.named_parameters():
        if name.startswith(("encoder.weight_", "pred_lstm.weight_")) or name in (
                "enc_proj.weight", "pred_proj.weight", "joint_out.weight"):
            out[name] = p
    return out


class GradualPruner:
    def __init__(self, params: dict, final_sparsity: float = 0.5, *, initial_sparsity: float = 0.0,
                 begin_step: int = 0, end_step: int = 1000, frequency: int = 100,
                 pattern: str = "unstructured"):
        self.params = dict(params)
        self.pattern = pattern
        self.nm = None
        if pattern != "unstructured":
            try:
                n, m = (int(v) for v in pattern.split(":"))
            except ValueError:
                n = m = 0
            if not 0 < n < m:
                raise ConfigError(f"pattern: {pattern!r} (allowed: \"unstructured\" or \"N:M\", 0 < N < M)")
            self.nm = (n, m)
            final_sparsity = 1.0 - n / m
        self.final = float(final_sparsity)
        self.initial = float(initial_sparsity)
        self.begin_step, self.end_step, self.frequency = int(begin_step), int(end_step), int(frequency)
        zhu_gupta_sparsity(0, self.final, self.initial, self.begin_step, self.end_step, self.frequency)
        self.masks = {k: None for k in self.params}
        self.current = 0.0

    @classmethod
    def for_rnnt(cls, model, final_sparsity: float = 0.5, **kw) -> "GradualPruner":
        return cls(rnnt_prunable(model), final_sparsity, **kw)

    def target(self, step: int) -> float:
        return zhu_gupta_sparsity(step, self.final, self.initial, self.begin_step, self.end_step,
                                  self.frequency)

    def _is_update(self, step: int) -> bool:
        if step < self.begin_step:
            return False
        if step >= self.end_step:
            return self.current < self.final
        return (step - self.begin_step) % self.frequency == 0

    def step(self, step: int) -> float:
        """Call after each optimizer step: updates masks on schedule, re-applies them."""
        if self._is_update(step):
            s = self.target(step)
            if s > self.current or step >= self.end_step:
                self._update_masks(s)
                self.current = s
        self.apply()
        return self.current

    def _update_masks(self, s: float) -> None:
        import torch

        with torch.no_grad():
            for name, p in self.params.items():
                w = p.detach().abs().float()
                old = self.masks[name]
                if old is not None:
                    w = w * old            # already pruned weights stay pruned (and count first)
                if self.nm is None:
                    k = int(round(s * w.numel()))
                    mask = torch.ones_like(w, dtype=torch.bool)
                    if k > 0:
                        idx = torch.argsort(w.reshape(-1), stable=True)[:k]
                        mask.view(-1)[idx] = False
                else:
                    n, m = self.nm
                    keep = max(n, m - int(math.floor(s * m + 1e-9)))
                    mask = _nm_mask(w, keep, m)
                if old is not None:
                    mask &= old
                self.masks[name] = mask

    def apply(self) -> None:
        import torch

        with torch.no_grad():
            for name, p in self.params.items():
                if self.masks[name] is not None:
                    p.mul_(self.masks[name].to(p.dtype))

    def sparsity(self) -> dict:
        """Measured fraction of zeros per tensor."""
        return {k: float((p.detach() == 0).float().mean()) for k, p in self.params.items()}

    def state_dict(self) -> dict:
        return {"current": self.current, "masks": {k: (None if v is None else v.cpu())
                                                   for k, v in self.masks.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.current = float(d["current"])
        self.masks = {k: d["masks"].get(k) for k in self.params}


def _nm_mask(w, keep: int, m: int):
    """Keep the `keep` largest |w| of every m consecutive inputs (last axis) of each row."""
    import torch

    rows = w.reshape(w.shape[0], -1) if w.dim() > 1 else w.reshape(1, -1)
    N, K = rows.shape
    pad = (-K) % m
    a = torch.nn.functional.pad(rows, (0, pad)).reshape(N, -1, m)
    order = torch.argsort(-a, dim=2, stable=True)
    mask = torch.zeros_like(a, dtype=torch.bool)
    mask.scatter_(2, order[:, :, :keep], True)
    return mask.reshape(N, -1)[:, :K].reshape(w.shape)


def schedule_table(final: float, begin_step: int, end_step: int, frequency: int) -> np.ndarray:
    """(step, target) rows at every update point, for logs and plots."""
    steps = np.arange(begin_step, end_step + 1, frequency)
    return np.array([(s, zhu_gupta_sparsity(int(s), final, 0.0, begin_step, end_step, frequency))
                     for s in steps])
