"""A branching (amortized) RNN-T encoder: per frame, an arbitrator routes to a lean or full branch.

Both branches are LSTM stacks of the same shape (layers x H) that share one recurrent state:
at frame t every layer computes its gates with the chosen branch's weights from the shared
(h, c). So a frame routed to the lean branch still carries the full context forward, and on a
device a frame runs only its branch's weights. The full branch starts as the shipped encoder;
the lean branch is a compressed copy of it:
  * "lowrank": each W (4H x K) replaced by A (4H x r) @ B (r x K), initialized by truncated SVD;
  * "sparse":  each W masked to the given sparsity by magnitude (fixed mask, kept while training).
The arbitrator is small and causal: at frame t it reads the normalized input frame x_t and the
encoder state, the top layer's output h_{t-1} of the frame before (what the encoder has made of
the utterance so far), through Linear(240 + H, A) -> tanh -> GRUCell(A) -> Linear(A, 2). Because
route t needs h_{t-1}, a routed encoder runs time-outer (all layers of frame t, then frame t+1),
which is also the order a device runs it in.
Routing is Gumbel-softmax straight-through while training (asr.branching.gumbel) and argmax at
inference. `force="full"` / `force="lean"` turn the model into a single-encoder baseline
(the shipped full encoder, or the sparse / low-rank single encoder).

Distillation: whenever both branches are computed for a frame (every routed training frame, and
a forced lean model with `teacher=True`), `last_distill` holds, per frame, the mean squared
difference between the lean branch's gate pre-activations and the full branch's (detached) on the
same state: the lean branch is taught to do what the full one would have done at that frame.
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

    def full_in(self, x):
        return x @ self.w_ih.T + self.bias

    def lean_in(self, x):
        if self.lean_kind == "lowrank":
            return (x @ self.b_ih.T) @ self.a_ih.T + self.lean_bias
        return x @ (self.l_ih * self.m_ih).T + self.lean_bias

    def full_rec(self, h):
        return h @ self.w_hh.T

    def lean_rec(self, h):
        if self.lean_kind == "lowrank":
            return (h @ self.b_hh.T) @ self.a_hh.T
        return h @ (self.l_hh * self.m_hh).T

    @staticmethod
    def cell(g, c):
        i, f, gg, o = g.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x: torch.Tensor, force: str):
        """A single-branch layer over a whole sequence: x (B, T, K) -> (B, T, H). Without
        routing no frame depends on the layer above, so layer-outer order gives the same result
        as the routed time-outer loop, faster."""
        n_b, n_t, _ = x.shape
        gx = self.full_in(x) if force == "full" else self.lean_in(x)
        rec = self.full_rec if force == "full" else self.lean_rec
        h = x.new_zeros(n_b, self.hidden)
        c = x.new_zeros(n_b, self.hidden)
        outs = []
        for t in range(n_t):
            h, c = self.cell(gx[:, t] + rec(h), c)
            outs.append(h)
        return torch.stack(outs, dim=1)


class Arbitrator(nn.Module):
    """Routing logits for frame t from (x_t, h_{t-1} of the encoder's top layer) and its own
    GRU state. full_bias > 0 starts it preferring the full branch (logit order: FULL, LEAN)."""

    def __init__(self, input_dim: int, state_dim: int, hidden: int = 32, full_bias: float = 0.0):
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(input_dim + state_dim, hidden)
        self.gru = nn.GRUCell(hidden, hidden)
        self.out = nn.Linear(hidden, 2)
        with torch.no_grad():
            self.out.bias.copy_(torch.tensor([full_bias, 0.0]))

    def init_state(self, n_b: int) -> torch.Tensor:
        return torch.zeros(n_b, self.hidden)

    def step(self, x_t: torch.Tensor, enc_h: torch.Tensor, state: torch.Tensor):
        """x_t (B, input_dim), enc_h (B, H) -> (logits (B, 2), new state (B, A))."""
        state = self.gru(torch.tanh(self.inp(torch.cat([x_t, enc_h], dim=-1))), state)
        return self.out(state), state

    def matrices(self) -> dict:
        return {"inp": self.inp.weight, "gru_ih": self.gru.weight_ih,
                "gru_hh": self.gru.weight_hh, "out": self.out.weight}


class BranchingRNNT(nn.Module):
    """The shipped RNN-T with its encoder replaced by a routed full/lean pair. Exposes what
    asr.train.loop.greedy_batch/evaluate use (encode, embed, pred_lstm, pred_proj, joint, cfg)."""

    def __init__(self, base: RNNT, lean: str = "lowrank", rank: int = 64, sparsity: float = 0.5,
                 arbitrator_dim: int = 32, force: str | None = None, full_bias: float = 0.0,
                 teacher: bool = False):
        super().__init__()
        if base.cfg.bidirectional:
            raise ValueError("a branching encoder needs a causal (unidirectional) base model")
        self.base = base
        self.cfg = base.cfg
        if force not in (None, "full", "lean"):
            raise ValueError(f"force = {force!r} (allowed: None, 'full', 'lean')")
        self.force = force
        # A forced lean model with a teacher also computes the full branch's gates (training
        # only) for the distillation term; a deployed one runs the lean branch alone.
        self.teacher = teacher and force == "lean"
        self.lean_kind, self.rank, self.sparsity = lean, rank, sparsity
        enc = base.encoder
        self.layers = nn.ModuleList(
            _Layer(getattr(enc, f"weight_ih_l{k}"), getattr(enc, f"weight_hh_l{k}"),
                   (getattr(enc, f"bias_ih_l{k}") + getattr(enc, f"bias_hh_l{k}")).detach(),
                   lean, rank, sparsity)
            for k in range(base.cfg.encoder_layers))
        self.arbitrator = Arbitrator(base.cfg.input_dim, base.cfg.encoder_dim, arbitrator_dim, full_bias)
        self.tau = 1.0
        self.generator: torch.Generator | None = None
        self.last_route: torch.Tensor | None = None     # (B, T) 1 where the full branch ran
        self.last_soft_route: torch.Tensor | None = None  # (B, T, 2) straight-through routing
        self.last_distill: torch.Tensor | None = None     # (B, T) lean-vs-full gate MSE (training)

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

    def _choose(self, logits: torch.Tensor) -> torch.Tensor:
        if self.training:
            return gumbel_softmax_st(logits, self.tau, self.generator)
        return nn.functional.one_hot(logits.argmax(-1), 2).to(logits.dtype)

    def encode(self, x: torch.Tensor, lens: torch.Tensor | None = None):
        xn = self.base.normalize(x)
        n_b, n_t = x.shape[:2]
        self.last_distill = None
        if self.force is not None and not (self.teacher and self.training):
            h = xn
            for layer in self.layers:
                h = layer(h, self.force)
            full = torch.full((n_b, n_t), 1.0 if self.force == "full" else 0.0)
            self.last_soft_route = torch.stack([full, 1.0 - full], dim=-1)
            self.last_route = full
            return self.base.enc_proj(h), None
        return self._encode_routed(xn)

    def _encode_routed(self, xn: torch.Tensor):
        """Time-outer loop: route t from (x_t, top-layer h_{t-1}), then every layer of frame t
        with the routed mix of the two branches (a one-hot mix: exactly the chosen branch)."""
        n_b, n_t = xn.shape[:2]
        distill = self.training
        lean_only = None
        if self.force == "lean":
            lean_only = torch.stack([torch.zeros(n_b), torch.ones(n_b)], dim=-1)
        first = self.layers[0]
        # Layer 0's inputs do not depend on routing: project all frames at once.
        gx_full, gx_lean = first.full_in(xn), first.lean_in(xn)
        hs = [xn.new_zeros(n_b, layer.hidden) for layer in self.layers]
        cs = [xn.new_zeros(n_b, layer.hidden) for layer in self.layers]
        arb_state = self.arbitrator.init_state(n_b)
        outs, routes, dists = [], [], []
        for t in range(n_t):
            if lean_only is None:
                # The encoder state is read, not trained through the routing: the penalty's
                # gradient should change which branch runs, not what the encoder represents.
                logits, arb_state = self.arbitrator.step(xn[:, t], hs[-1].detach(), arb_state)
                r = self._choose(logits)
            else:
                r = lean_only
            r_full, r_lean = r[:, FULL:FULL + 1], r[:, LEAN:LEAN + 1]
            inp = None
            d_t = 0.0
            for k, layer in enumerate(self.layers):
                if k == 0:
                    gf, gl = gx_full[:, t], gx_lean[:, t]
                else:
                    gf, gl = layer.full_in(inp), layer.lean_in(inp)
                gf = gf + layer.full_rec(hs[k])
                gl = gl + layer.lean_rec(hs[k])
                if distill:
                    d_t = d_t + (gl - gf.detach()).pow(2).mean(dim=1)
                hs[k], cs[k] = layer.cell(r_full * gf + r_lean * gl, cs[k])
                inp = hs[k]
            outs.append(inp)
            routes.append(r)
            if distill:
                dists.append(d_t / len(self.layers))
        r = torch.stack(routes, dim=1)
        self.last_soft_route = r
        self.last_route = r[..., FULL].detach()
        if distill:
            self.last_distill = torch.stack(dists, dim=1)
        return self.base.enc_proj(torch.stack(outs, dim=1)), None

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
