"""Quantization-aware training of the RNN-T: straight-through fake quantization, and the
regularizer alternative that pulls float weights toward the quantization grid.

    qm = QATRNNT(model, weight_bits=8, mode="ste", act_scales=calibrate(model, calib))
    logits, ctc = qm(x, x_lens, y)           # same contract as RNNT.forward
    loss = rnnt_loss(...) + qm.penalty()     # penalty() is 0 in "ste" mode
    export_npz(qm.export_model(), path)      # then asr.quant.ptq gives the trained grid

Weights (the rule of asr.quant.ptq.quantize_weight, so PTQ of an exported QAT model lands on
the integers the model was trained with): per output channel (per gate row of an LSTM, wx and
wh separately) symmetric, step Δ = max|w| / qmax, qmax = 127 (8 bits) or 7 (4 bits),
q = clip(round(w / Δ), -qmax, qmax). The embedding table is int8 per tensor, as in PTQ.

Modes
  "ste"  forward uses Δ·q; the gradient passes straight through the rounding to the float
         weight (Bengio et al. 2013). Exported weights are Δ·q exactly, so PTQ reproduces q.
  "reg"  forward uses the float weights; the loss adds λ·R with the absolute-sine penalty
         R = mean |sin(π w / Δ)| (zero exactly on the grid; its gradient points every weight
         to its nearest grid point). Δ is recomputed from the current weights and not
         differentiated. Exported weights are the float weights; PTQ rounds them.
         (A mean rather than the sum Σ, so λ does not depend on the model size.)
  "none" float weights, no penalty (activation fake quantization only, if act_bits).

Activations are fake-quantized where the chip quantizes (asr.quant.qmodel's boundary): the
normalized input and every LSTM h to int8 with their calibrated scales; LSTM gate
pre-activations and cell states clipped to int16 Q3.12's range [-8, 8) (the chip's
fixed-point range, azsim.reference; the 2**-12 rounding itself is not modelled); enc / pred
projections to int8; the joint's enc + pred sum clipped like Q3.12 and its tanh to int8 at 1/127. Sigmoid / tanh are the float functions (the
chip's 513-entry tables interpolate them to ~1e-4). Rounding uses the straight-through
estimator; clipping passes zero gradient outside the range.

Activation scales are calibrated once on the model the fine-tune starts from, with the same
statistic PTQ uses (a percentile of |x| on dev utterances, h scales capped at 1/127), and held
fixed. PTQ recalibrates on the fine-tuned model, so its activation scales are close to, not
identical with, the trained ones; the weight grid is identical (tests/test_qat.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from azsim.errors import ConfigError

QMAX = {8: 127, 4: 7}
Q312_STEP = 2.0 ** -12                 # azsim.reference GATE_FRAC_BITS
Q312_LO, Q312_HI = -8.0, 8.0 - Q312_STEP
MODES = ("ste", "reg", "none")


# ----------------------------------------------------------------------------- primitives
def weight_step(w: torch.Tensor, bits: int, per_row: bool = True) -> torch.Tensor:
    """Δ of PTQ's rule: max|w| / qmax per row (or per tensor); 1 for all-zero rows."""
    qmax = QMAX[bits]
    a = w.detach().abs()
    amax = a.amax(dim=1, keepdim=True) if per_row else a.max().reshape(1, 1)
    return torch.where(amax > 0, amax / qmax, torch.ones_like(amax))


def fake_quant_weight(w: torch.Tensor, bits: int, per_row: bool = True) -> torch.Tensor:
    """Δ·clip(round(w/Δ)) forward, identity gradient (straight-through)."""
    qmax = QMAX[bits]
    step = weight_step(w, bits, per_row)
    wq = torch.clamp(torch.round(w.detach() / step), -qmax, qmax) * step
    return w + (wq - w).detach()


def weight_ints(w: torch.Tensor, bits: int, per_row: bool = True) -> np.ndarray:
    """The integers fake_quant_weight puts `w` on (for tests and reports)."""
    qmax = QMAX[bits]
    step = weight_step(w, bits, per_row)
    return torch.clamp(torch.round(w.detach() / step), -qmax, qmax).to(torch.int8).numpy()


def fake_quant(x: torch.Tensor, step: float, lo: float, hi: float) -> torch.Tensor:
    """Clip to [lo*step, hi*step] (zero gradient outside), round to multiples of step (STE)."""
    xc = torch.clamp(x, lo * step, hi * step)
    return xc + (torch.round(xc.detach() / step) * step - xc.detach())


def q312(x: torch.Tensor, round_: bool = False) -> torch.Tensor:
    """int16 Q3.12: gates, cell states and the joint sum on the chip; clips to [-8, 8).
    The 2**-12 rounding is far below the int8 activations' noise and costs three passes over
    the joint's (B, T, U+1, J) tensor per step, so it is off unless asked for."""
    xc = torch.clamp(x, Q312_LO, Q312_HI)
    if not round_:
        return xc
    return xc + (torch.round(xc.detach() / Q312_STEP) * Q312_STEP - xc.detach())


def sine_penalty(w: torch.Tensor, bits: int, per_row: bool = True) -> torch.Tensor:
    """mean |sin(π w / Δ)|: 0 on the grid, 1 half way between grid points."""
    step = weight_step(w, bits, per_row)
    return torch.abs(torch.sin(math.pi * w / step)).mean()


# ----------------------------------------------------------------------------- calibration
def _statistic(arrays, statistic: str = "percentile", percentile: float = 99.99) -> float:
    """PTQ's activation statistic (asr.quant.ptq): max or a percentile of |x|."""
    a = np.abs(np.concatenate([np.asarray(v, np.float64).reshape(-1) for v in arrays]))
    if a.size == 0:
        return 1.0
    v = float(a.max()) if statistic == "max" else float(np.percentile(a, percentile))
    return v if v > 0 else max(float(a.max()), 1e-6)


def numpy_model(model):
    """A torch RNNT as asr.model.numpy_rnnt.NumpyRNNT (same arrays as export_npz writes)."""
    from asr import text as asr_text
    from asr.model.export import weight_names
    from asr.model.numpy_rnnt import NumpyRNNT

    cfg = model.cfg.to_dict()
    state = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    arrays = {n: np.ascontiguousarray(state[n]) for n in weight_names(cfg)}
    arrays["feat_mean"], arrays["feat_std"] = state["feat_mean"], state["feat_std"]
    return NumpyRNNT(arrays, cfg, list(asr_text.VOCAB))


def calibrate(model, calib, statistic: str = "percentile", percentile: float = 99.99) -> dict:
    """Activation scales {input, encoder.l<k>, pred.l<k>, enc, pred} of a float RNNT on
    `calib` (a list of (stacked features, tokens), asr.quant.ptq.calibration_set), by PTQ's rule."""
    from asr.quant.ptq import collect_activations

    if not calib:
        raise ConfigError("calibration: no utterances to calibrate on")
    acts = collect_activations(numpy_model(model), calib)
    scales = {"input": _statistic(acts["input"], statistic, percentile) / 127.0,
              "enc": _statistic(acts["enc"], statistic, percentile) / 127.0,
              "pred": _statistic(acts["pred"], statistic, percentile) / 127.0}
    for name, vals in acts.items():
        if name.startswith(("encoder.l", "pred.l")):
            scales[name] = min(_statistic(vals, statistic, percentile), 1.0) / 127.0
    return scales


# ----------------------------------------------------------------------------- the model
class QATRNNT(nn.Module):
    """Wraps a (causal) asr.model.rnnt.RNNT; shares its parameters (training it trains them)."""

    def __init__(self, model, weight_bits: int = 8, mode: str = "ste", act_scales: dict | None = None,
                 act_quant: bool = True, reg_weight: float = 0.0):
        super().__init__()
        if model.cfg.bidirectional:
            raise ConfigError("qat: the model is bidirectional; only the causal student is quantized")
        if weight_bits not in QMAX:
            raise ConfigError(f"qat: weight_bits = {weight_bits!r} (allowed: 4 or 8)")
        if mode not in MODES:
            raise ConfigError(f"qat: mode = {mode!r} (allowed: {', '.join(MODES)})")
        if act_quant and act_scales is None:
            raise ConfigError("qat: act_quant needs act_scales (see calibrate())")
        self.model = model
        self.cfg = model.cfg
        self.bits = int(weight_bits)
        self.mode = mode
        self.act_quant = bool(act_quant)
        self.act_scales = dict(act_scales or {})
        self.reg_weight = float(reg_weight)

    # --- weights ---------------------------------------------------------------------------
    def quantized_weights(self) -> dict:
        """{param name: parameter} of every matrix the chip stores at weight_bits."""
        from asr.quant.sparsify import rnnt_prunable
        return rnnt_prunable(self.model)

    def _w(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant_weight(w, self.bits) if self.mode == "ste" else w

    def _emb(self) -> torch.Tensor:
        # The chip's embedding table is always int8 per tensor (PTQ's rule), whatever the mode.
        w = self.model.embed.weight
        return fake_quant_weight(w, 8, per_row=False) if (self.mode == "ste" or self.act_quant) else w

    def penalty(self) -> torch.Tensor:
        """λ·R in "reg" mode (averaged over the quantized tensors), else 0."""
        if self.mode != "reg" or self.reg_weight == 0.0:
            return torch.zeros(())
        ws = list(self.quantized_weights().values())
        return self.reg_weight * sum(sine_penalty(w, self.bits) for w in ws) / len(ws)

    def grid_distance(self) -> float:
        """Mean |w/Δ - round(w/Δ)| over the quantized weights (0 on the grid, 0.25 uniform)."""
        tot, n = 0.0, 0
        with torch.no_grad():
            for w in self.quantized_weights().values():
                r = w / weight_step(w, self.bits)
                tot += float((r - torch.round(r)).abs().sum())
                n += w.numel()
        return tot / max(n, 1)

    # --- activations -----------------------------------------------------------------------
    def _act(self, x, name, lo=-128, hi=127):
        return fake_quant(x, self.act_scales[name], lo, hi) if self.act_quant else x

    def _gate(self, z):
        return q312(z) if self.act_quant else z

    def _lstm(self, x, w_ih, w_hh, b, h_name, state=None):
        """One fake-quantized LSTM layer over (B, T, K) -> (B, T, H), (h, c)."""
        H = w_hh.shape[1]
        gx = x @ self._w(w_ih).t() + b
        wh_t = self._w(w_hh).t()
        if state is None:
            h = x.new_zeros(x.shape[0], H)
            c = x.new_zeros(x.shape[0], H)
        else:
            h, c = state
        outs = []
        for t in range(x.shape[1]):
            z = self._gate(gx[:, t] + h @ wh_t)
            i, f, g, o = z.chunk(4, dim=1)
            c = self._gate(torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g))
            h = self._act(torch.sigmoid(o) * torch.tanh(c), h_name)
            outs.append(h)
        return torch.stack(outs, dim=1), (h, c)

    def _lstm_params(self, lstm, k):
        return (getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}"),
                getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}"))

    def encoder_hidden(self, x):
        m = self.model
        h = self._act(m.normalize(x), "input", -127, 127)
        for k in range(self.cfg.encoder_layers):
            h, _ = self._lstm(h, *self._lstm_params(m.encoder, k), f"encoder.l{k}")
        return h

    def encode(self, x, lens=None):
        """(enc (B, T, J) as the chip's int8 enc, CTC logits (B, T, V) on the LSTM output)."""
        m = self.model
        h = self.encoder_hidden(x)
        enc = nn.functional.linear(h, self._w(m.enc_proj.weight), m.enc_proj.bias)
        return self._act(enc, "enc"), m.ctc_head(h)

    def predict_step(self, tokens, state=None):
        """(B, U) tokens -> ((B, U, J) pred outputs, per-layer (h, c) states)."""
        m = self.model
        h = nn.functional.embedding(tokens, self._emb())
        new = []
        for k in range(self.cfg.pred_layers):
            h, st = self._lstm(h, *self._lstm_params(m.pred_lstm, k), f"pred.l{k}",
                               None if state is None else state[k])
            new.append(st)
        p = nn.functional.linear(h, self._w(m.pred_proj.weight), m.pred_proj.bias)
        return self._act(p, "pred"), new

    def predict(self, tokens):
        sos = torch.full((tokens.shape[0], 1), self.cfg.blank, dtype=torch.long, device=tokens.device)
        return self.predict_step(torch.cat([sos, tokens.clamp(min=0)], dim=1))[0]

    def joint(self, enc, pred):
        m = self.model
        s = self._gate(enc + pred)
        t = torch.tanh(s)
        if self.act_quant:
            t = fake_quant(t, 1.0 / 127.0, -128, 127)
        return nn.functional.linear(t, self._w(m.joint_out.weight), m.joint_out.bias)

    def forward(self, x, x_lens, tokens):
        enc, ctc_logits = self.encode(x, x_lens)
        pred = self.predict(tokens)
        return self.joint(enc[:, :, None, :], pred[:, None, :, :]), ctc_logits

    # --- decoding and export ---------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, x, x_lens, max_symbols: int = 4) -> list[list[int]]:
        """Batched greedy decoding through the fake-quantized network."""
        blank = self.cfg.blank
        enc, _ = self.encode(x, x_lens)
        n_b = enc.shape[0]
        tok = torch.full((n_b, 1), blank, dtype=torch.long)
        pred, state = self.predict_step(tok)
        pred = pred[:, 0]
        hyps: list[list[int]] = [[] for _ in range(n_b)]
        for t in range(enc.shape[1]):
            active = x_lens > t
            for _ in range(max_symbols):
                k = self.joint(enc[:, t], pred).argmax(-1)
                emit = active & (k != blank)
                if not bool(emit.any()):
                    break
                p2, st2 = self.predict_step(k[:, None], state)
                pred = torch.where(emit[:, None], p2[:, 0], pred)
                state = [(torch.where(emit[:, None], h2, h), torch.where(emit[:, None], c2, c))
                         for (h2, c2), (h, c) in zip(st2, state)]
                for b in torch.nonzero(emit).flatten().tolist():
                    hyps[b].append(int(k[b]))
                active = emit
        return hyps

    @torch.no_grad()
    def export_model(self):
        """A copy of the wrapped RNNT whose weights are what the chip should hold: on the
        grid (Δ·q) in "ste" mode, the float weights otherwise."""
        import copy

        out = copy.deepcopy(self.model)
        if self.mode == "ste":
            names = set(self.quantized_weights())
            for name, p in out.named_parameters():
                if name in names:
                    p.copy_(fake_quant_weight(p, self.bits))
                elif name == "embed.weight":
                    p.copy_(fake_quant_weight(p, 8, per_row=False))
        return out
