"""IntRNNT: the quantized RNN-T in plain numpy, built only from azsim.reference ops.

This is the integer reference the chip (asr.chip.ChipRNNT) must equal bit for bit. Both
implement the decode interface of asr.decode on top of three integer steps:

  encode_int(x_q (T, D) int8, state) -> (enc_q (T, J) int8, state)
  predict_int(token, state)          -> (pred_q (J,) int8, state)
  joint_int(enc_q (M, J), pred_q (M, J)) -> acc (M, V) int32 raw joint_out accumulators

and the float boundary of asr.quant.qmodel: features are quantized on the host, enc/pred are
handed to the decoders as float32 q * scale (exactly invertible: joint() rounds them back to
the same integers), and log-probs come from acc * out_scale by a float log_softmax.

States: encoder (frames_seen, ((h int8 (H,), c int16 (H,)), ...)); predictor
((h, c), ...). They are never modified in place (beam search branches from any of them).
"""
from __future__ import annotations

import numpy as np

from asr.quant.qmodel import QuantModel, layer_kind
from azsim import reference as ref


class QuantRNNTBase:
    """The float-facing decode interface over the integer steps (subclasses supply them)."""

    def __init__(self, qm: QuantModel):
        self.qm = qm
        cfg = qm.config
        self.config = cfg
        self.vocab = qm.vocab
        self.vocab_size = int(cfg["vocab_size"])
        self.blank = int(cfg["blank"])
        self.joint_dim = int(cfg["joint_dim"])
        self.input_dim = int(cfg["input_dim"])
        self.s_enc = np.float64(qm.s_enc)
        self.s_pred = np.float64(qm.s_pred)
        self.out_scale = qm.layers["joint_out"]["out_scale"].astype(np.float64)
        self.enc_hidden = [qm.layers[f"encoder.l{k}"]["wh"].shape[1] for k in range(cfg["encoder_layers"])]
        self.pred_hidden = [qm.layers[f"pred.l{k}"]["wh"].shape[1] for k in range(cfg["pred_layers"])]

    # --- integer steps (subclasses) --------------------------------------------------------
    def encode_int(self, xq, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_int(self, token: int, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def joint_int(self, enc_q, pred_q):  # pragma: no cover - abstract
        raise NotImplementedError

    # --- decode interface ------------------------------------------------------------------
    def encoder_init(self):
        return (0, tuple((np.zeros(h, np.int8), np.zeros(h, np.int16)) for h in self.enc_hidden))

    def predictor_init(self):
        return tuple((np.zeros(h, np.int8), np.zeros(h, np.int16)) for h in self.pred_hidden)

    def encode(self, x, state):
        xq = self.qm.quantize_input(x)
        enc_q, state = self.encode_int(xq, state)
        return (enc_q.astype(np.float64) * self.s_enc).astype(np.float32), state

    def predict(self, token: int, state):
        if not 0 <= int(token) < self.vocab_size:
            raise ValueError(f"token {token} outside [0, {self.vocab_size})")
        pred_q, state = self.predict_int(int(token), state)
        return (pred_q.astype(np.float64) * self.s_pred).astype(np.float32), state

    @staticmethod
    def _to_q(a, scale) -> np.ndarray:
        q = np.rint(np.asarray(a, np.float64) / scale)
        return np.minimum(np.maximum(q, -128.0, out=q), 127.0, out=q).astype(np.int8)

    def joint_logits(self, enc, pred) -> np.ndarray:
        """Dequantized joint logits (..., V) float64."""
        eq, pq = self._to_q(enc, self.s_enc), self._to_q(pred, self.s_pred)
        if eq.ndim == 2 and pq.ndim == 2 and eq.shape[0] == 1:
            # beam search's shape: one encoder frame against every hypothesis
            shape = pq.shape[:-1]
            e2, p2 = np.repeat(eq, pq.shape[0], axis=0), pq
        else:
            e, p = np.broadcast_arrays(eq, pq)
            shape = e.shape[:-1]
            e2 = np.ascontiguousarray(e.reshape(-1, self.joint_dim))
            p2 = np.ascontiguousarray(p.reshape(-1, self.joint_dim))
        acc = self.joint_int(e2, p2)
        return (acc.astype(np.float64) * self.out_scale).reshape(shape + (self.vocab_size,))

    def joint(self, enc, pred) -> np.ndarray:
        z = self.joint_logits(enc, pred)
        z = z - z.max(axis=-1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)


class IntRNNT(QuantRNNTBase):
    """Numpy integer reference (azsim.reference ops only)."""

    def _lstm(self, name, x, h, c):
        L = self.qm.layers[name]
        return ref.lstm_cell(x, h, c, L["wx"], L["wh"], L["bias"], L["mult_x"], L["shift_x"],
                             L["mult_h"], L["shift_h"], int(L["h_mult"]), int(L["h_shift"]),
                             self.qm.sig_table, self.qm.tanh_table)

    def _linear(self, name, x):
        L = self.qm.layers[name]
        return ref.matmul(x, L["w"], L["bias"], L["mult"], L["shift"], "int8")

    def encode_int(self, xq, state):
        t0, layer_states = state
        xq = np.asarray(xq, np.int8)
        states = [(h[None, :], c[None, :]) for h, c in layer_states]
        out = np.empty((xq.shape[0], self.joint_dim), np.int8)
        for t in range(xq.shape[0]):
            x = xq[t:t + 1]
            for k in range(len(states)):
                h, c = self._lstm(f"encoder.l{k}", x, *states[k])
                states[k] = (h, c)
                x = h
            out[t] = self._linear("enc_proj", x)[0]
        return out, (t0 + xq.shape[0], tuple((h[0], c[0]) for h, c in states))

    def predict_int(self, token, state):
        x = ref.embedding([token], self.qm.layers["embed"]["table"])
        new = []
        for k, (h, c) in enumerate(state):
            h2, c2 = self._lstm(f"pred.l{k}", x, h[None, :], c[None, :])
            new.append((h2[0], c2[0]))
            x = h2
        return self._linear("pred_proj", x)[0], tuple(new)

    def joint_int(self, enc_q, pred_q):
        J = self.qm.layers["joint"]
        s = ref.add(enc_q, pred_q, int(J["a_mult"]), int(J["b_mult"]), int(J["add_shift"]), "int16")
        t = ref.lut(s, self.qm.tanh_table)
        t8 = ref.requantize(t, int(J["tanh_mult"]), int(J["tanh_shift"]), "int8")
        L = self.qm.layers["joint_out"]
        return ref.matmul(t8, L["w"], L["bias"], None, None, "int32")


__all__ = ["QuantRNNTBase", "IntRNNT", "layer_kind"]
