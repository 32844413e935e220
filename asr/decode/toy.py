"""A tiny random-weight RNN-T with the decoder-facing model interface.

For tests and demos of the searches, the lattice and the streaming recognizer without a
trained model. It computes frame by frame (no batched input projection), so encoding a
sequence in chunks gives bit-identical results to encoding it at once.
"""
from __future__ import annotations

import numpy as np

from asr.text import BLANK, VOCAB_SIZE


def _lstm_params(rng: np.random.Generator, in_dim: int, hidden: int, scale: float):
    wx = (rng.standard_normal((in_dim, 4 * hidden)) * scale / np.sqrt(in_dim)).astype(np.float32)
    wh = (rng.standard_normal((hidden, 4 * hidden)) / np.sqrt(hidden)).astype(np.float32)
    b = np.zeros(4 * hidden, np.float32)
    b[hidden:2 * hidden] = 1.0  # forget-gate bias: keeps some memory across frames
    return wx, wh, b


def _lstm_step(x, h, c, wx, wh, b):
    hidden = h.shape[-1]
    z = x @ wx + h @ wh + b
    i = 1.0 / (1.0 + np.exp(-z[:hidden]))
    f = 1.0 / (1.0 + np.exp(-z[hidden:2 * hidden]))
    g = np.tanh(z[2 * hidden:3 * hidden])
    o = 1.0 / (1.0 + np.exp(-z[3 * hidden:]))
    c = f * c + i * g
    return o * np.tanh(c), c


class RandomRNNT:
    """Random RNN-T: 1-layer LSTM encoder, embedding + 1-layer LSTM predictor, tanh joint.

    ``blank_bias`` raises the blank logit so that, as in a trained model, most frames emit
    nothing and a few emit one or more characters.
    """

    def __init__(self, seed: int = 0, input_dim: int = 240, hidden: int = 24, joint_dim: int = 24,
                 vocab_size: int = VOCAB_SIZE, blank_bias: float = 2.0, logit_scale: float = 3.0):
        rng = np.random.default_rng(seed)
        self.vocab_size = vocab_size
        self.blank = BLANK
        self.input_dim = input_dim
        self.enc_lstm = _lstm_params(rng, input_dim, hidden, 3.0)
        self.enc_proj = (rng.standard_normal((hidden, joint_dim)) / np.sqrt(hidden)).astype(np.float32)
        self.embed = rng.standard_normal((vocab_size, hidden)).astype(np.float32)
        self.pred_lstm = _lstm_params(rng, hidden, hidden, 1.0)
        self.pred_proj = (rng.standard_normal((hidden, joint_dim)) / np.sqrt(hidden)).astype(np.float32)
        self.out = (rng.standard_normal((joint_dim, vocab_size)) * logit_scale
                    / np.sqrt(joint_dim)).astype(np.float32)
        self.out_bias = np.zeros(vocab_size, np.float32)
        self.out_bias[BLANK] = blank_bias
        self.hidden = hidden

    def encoder_init(self):
        z = np.zeros(self.hidden, np.float32)
        return (z, z.copy())

    def encode(self, x: np.ndarray, state):
        x = np.asarray(x, np.float32)
        h, c = state
        out = np.empty((x.shape[0], self.enc_proj.shape[1]), np.float32)
        for t in range(x.shape[0]):
            h, c = _lstm_step(x[t], h, c, *self.enc_lstm)
            out[t] = h @ self.enc_proj
        return out, (h, c)

    def predictor_init(self):
        z = np.zeros(self.hidden, np.float32)
        return (z, z.copy())

    def predict(self, token: int, state):
        h, c = _lstm_step(self.embed[token], state[0], state[1], *self.pred_lstm)
        return h @ self.pred_proj, (h, c)

    def joint(self, enc: np.ndarray, pred: np.ndarray) -> np.ndarray:
        logits = np.tanh(enc + pred) @ self.out + self.out_bias
        m = logits.max(axis=-1, keepdims=True)
        return logits - (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))
