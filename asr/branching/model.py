"""A branching (amortized) RNN-T encoder: per frame, an arbitrator routes to a lean or full branch.

Both branches are LSTM stacks of the same shape (layers x H) that share one recurrent state:
at frame t every layer computes its gates with the chosen branch's weights from the shared
(h, c). So a frame routed to the lean branch still carries the full context forward, and on a
device a frame runs only its branch's weights. The full branch starts as the shipped encoder;
the lean branch is a compressed copy of it:
  * "lowrank": each W (4H x K) replaced by A (4H x r) @ B (r x K), initialized by truncated SVD;
  * "sparse":  each W masked to the given sparsity by magnitude (fixed mask, kept while training).
The arbitrator is small and causal: Linear(240, A) -> tanh -> GRU(A) -> Linear(A, 2) on the
normalized input frames (its GRU state is the running summary of the utterance it decides from).
Routing is Gumbel-softmax straight-through while training (asr.branching.gumbel) and argmax at
inference. `force="full"` / `force="lean"` turn the model into a single-encoder baseline
(the shipped full encoder, or the sparse / low-rank single encoder).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from asr.branching.gumbel import gumbel_softmax_st
from asr.model.rnnt import RNNT

FULL, LEAN = 0, 1


def _svd_init(w: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(w.detach(), full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    return (u[:, :r] * root).contiguous(), (root[:, None] * vh[:r]).contiguous()


def magnitude_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """1 for the (1 - sparsity) largest-magnitude entries of w, else 0."""
    n = w.numel()
    k_drop = int(round(sparsity * n))
    if k_drop <= 0:
        return torch.ones_like(w)
    thr = torch.kthvalue(w.detach().abs().reshape(-1), k_drop).values
    return (w.detach().abs() > thr).to(w.dtype)


class _Layer(nn.Module):
    def __init__(self, w_ih, w_hh, bias, lean: str, rank: int, sparsity: float):
        super().__init__()
        self.hidden = w_hh.shape[1]
        self.w_ih = nn.Parameter(w_ih.clone())
        self.w_hh = nn.Parameter(w_hh.clone())
        self.bias = nn.Parameter(bias.clone())
        self.lean_kind = lean
        self.lean_bias = nn.Parameter(bias.clone())
        if lean == "lowrank":
            a, b = _svd_init(w_ih, rank)
            self.a_ih, self.b_ih = nn.Parameter(a), nn.Parameter(b)
            a, b = _svd_init(w_hh, rank)
            self.a_hh, self.b_hh = nn.Parameter(a), nn.Parameter(b)
        elif lean == "sparse":
            self.register_buffer("m_ih", magnitude_mask(w_ih, sparsity))
            self.register_buffer("m_hh", magnitude_mask(w_hh, sparsity))
            self.l_ih = nn.Parameter(w_ih.clone() * self.m_ih)
            self.l_hh = nn.Parameter(w_hh.clone() * self.m_hh)
        else:
            raise ValueError(f"lean = {lean!r} (allowed: lowrank, sparse)")

    def lean_matrices(self) -> dict:
        """The lean branch's weight matrices as a device stores them (name -> (N, K))."""
        if self.lean_kind == "lowrank":
            return {"b_ih": self.b_ih, "a_ih": self.a_ih, "b_hh": self.b_hh, "a_hh": self.a_hh}
        return {"w_ih": self.l_ih * self.m_ih, "w_hh": self.l_hh * self.m_hh}

    def full_matrices(self) -> dict:
        return {"w_ih": self.w_ih, "w_hh": self.w_hh}

    def _lean_in(self, x):
        if self.lean_kind == "lowrank":
            return (x @ self.b_ih.T) @ self.a_ih.T + self.lean_bias
        return x @ (self.l_ih * self.m_ih).T + self.lean_bias

    def _lean_rec(self, h):
        if self.lean_kind == "lowrank":
            return (h @ self.b_hh.T) @ self.a_hh.T
        return h @ (self.l_hh * self.m_hh).T

    def forward(self, x: torch.Tensor, route: torch.Tensor | None, force: str | None):
        """x (B, T, K); route (B, T, 2) one-hot (straight-through) or None with force set."""
        n_b, n_t, _ = x.shape
        use_full = force in (None, "full")
        use_lean = force in (None, "lean")
        xf = x @ self.w_ih.T + self.bias if use_full else None
        xl = self._lean_in(x) if use_lean else None
        h = x.new_zeros(n_b, self.hidden)
        c = x.new_zeros(n_b, self.hidden)
        outs = []
        for t in range(n_t):
            if force == "full":
                g = xf[:, t] + h @ self.w_hh.T
            elif force == "lean":
                g = xl[:, t] + self._lean_rec(h)
            else:
                r = route[:, t]
                g = r[:, FULL:FULL + 1] * (xf[:, t] + h @ self.w_hh.T) + \
                    r[:, LEAN:LEAN + 1] * (xl[:, t] + self._lean_rec(h))
            i, f, gg, o = g.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs, dim=1)


class Arbitrator(nn.Module):
    def __init__(self, input_dim: int, hidden: int = 32, full_bias: float = 0.0):
        super().__init__()
        self.inp = nn.Linear(input_dim, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 2)
        with torch.no_grad():
            self.out.bias.copy_(torch.tensor([full_bias, 0.0]))

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(torch.tanh(self.inp(xn)))
        return self.out(h)

    def matrices(self) -> dict:
        return {"inp": self.inp.weight, "gru_ih": self.gru.weight_ih_l0,
                "gru_hh": self.gru.weight_hh_l0, "out": self.out.weight}


class BranchingRNNT(nn.Module):
    """The shipped RNN-T with its encoder replaced by a routed full/lean pair. Exposes what
    asr.train.loop.greedy_batch/evaluate use (encode, embed, pred_lstm, pred_proj, joint, cfg)."""

    def __init__(self, base: RNNT, lean: str = "lowrank", rank: int = 64, sparsity: float = 0.5,
                 arbitrator_dim: int = 32, force: str | None = None, full_bias: float = 0.0):
        super().__init__()
        if base.cfg.bidirectional:
            raise ValueError("a branching encoder needs a causal (unidirectional) base model")
        self.base = base
        self.cfg = base.cfg
        self.force = force
        self.lean_kind, self.rank, self.sparsity = lean, rank, sparsity
        enc = base.encoder
        self.layers = nn.ModuleList(
            _Layer(getattr(enc, f"weight_ih_l{k}"), getattr(enc, f"weight_hh_l{k}"),
                   (getattr(enc, f"bias_ih_l{k}") + getattr(enc, f"bias_hh_l{k}")).detach(),
                   lean, rank, sparsity)
            for k in range(base.cfg.encoder_layers))
        self.arbitrator = Arbitrator(base.cfg.input_dim, arbitrator_dim, full_bias)
        self.tau = 1.0
        self.generator: torch.Generator | None = None
        self.last_route: torch.Tensor | None = None     # (B, T) 1 where the full branch ran
        self.last_soft_route: torch.Tensor | None = None  # (B, T, 2) straight-through routing

    # the parts greedy decoding uses
    @property
    def embed(self):
        return self.base.embed

    @property
    def pred_lstm(self):
        return self.base.pred_lstm

    @property
    def pred_proj(self):
        return self.base.pred_proj

    def joint(self, enc, pred):
        return self.base.joint(enc, pred)

    def predict(self, tokens):
        return self.base.predict(tokens)

    def route(self, xn: torch.Tensor) -> torch.Tensor | None:
        if self.force is not None:
            return None
        logits = self.arbitrator(xn)
        if self.training:
            return gumbel_softmax_st(logits, self.tau, self.generator)
        return nn.functional.one_hot(logits.argmax(-1), 2).to(xn.dtype)

    def encode(self, x: torch.Tensor, lens: torch.Tensor | None = None):
        xn = self.base.normalize(x)
        r = self.route(xn)
        h = xn
        for layer in self.layers:
            h = layer(h, r, self.force)
        n_b, n_t = x.shape[:2]
        if r is None:
            full = torch.full((n_b, n_t), 1.0 if self.force == "full" else 0.0)
            r = torch.stack([full, 1.0 - full], dim=-1)
        self.last_soft_route = r
        self.last_route = r[..., FULL].detach()
        return self.base.enc_proj(h), None

    def forward(self, x, x_lens, tokens):
        enc, _ = self.encode(x, x_lens)
        pred = self.base.predict(tokens)
        return self.base.joint(enc[:, :, None, :], pred[:, None, :, :])

    # --- what a frame costs ---------------------------------------------------------------
    def branch_matrices(self) -> dict:
        """{'full': [(name, W)], 'lean': [(name, W)], 'arbitrator': [...], 'shared': [...]},
        float weight matrices (N, K) in the order a frame uses them."""
        out = {"full": [], "lean": []}
        for k, layer in enumerate(self.layers):
            # A single-encoder model (force) stores only the branch it runs.
            if self.force in (None, "full"):
                out["full"] += [(f"l{k}.{n}", w.detach()) for n, w in layer.full_matrices().items()]
            if self.force in (None, "lean"):
                out["lean"] += [(f"l{k}.{n}", w.detach()) for n, w in layer.lean_matrices().items()]
        out["arbitrator"] = [] if self.force is not None else \
            [(n, w.detach()) for n, w in self.arbitrator.matrices().items()]
        out["shared"] = [("enc_proj", self.base.enc_proj.weight.detach())]
        return out


def nonzero_macs(mats) -> int:
    return int(sum(int(torch.count_nonzero(w)) for _, w in mats))


def dense_macs(mats) -> int:
    return int(sum(w.numel() for _, w in mats))


def lowrank_for_ratio(layers_shapes, ratio: float) -> int:
    """The rank r whose low-rank MACs are `ratio` x the dense MACs over (N, K) shapes."""
    dense = sum(n * k for n, k in layers_shapes)
    per_rank = sum(n + k for n, k in layers_shapes)
    return max(1, int(np.floor(ratio * dense / per_rank)))
