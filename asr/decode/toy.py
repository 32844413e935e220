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


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def _lstm_step(x, h, c, wx, wh, b):
    hidden = h.shape[-1]
    z = x @ wx + h @ wh + b
    i = _sigmoid(z[:hidden])
    f = _sigmoid(z[hidden:2 * hidden])
    g = np.tanh(z[2 * hidden:3 * hidden])
    o = _sigmoid(z[3 * hidden:])
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


def save_random_numpy_rnnt(path, seed: int = 0, encoder_dim: int = 32, pred_dim: int = 32,
                           joint_dim: int = 32, encoder_layers: int = 1, blank_bias: float = 3.0):
    """Write a random-weight model in the asr.model.export .npz format (loadable by
    asr.model.numpy_rnnt.NumpyRNNT.load and so by the CLI); returns the path."""
    import json
    from pathlib import Path

    from asr.model.export import FORMAT
    from asr.model.numpy_rnnt import NumpyRNNT
    from asr.text import VOCAB

    cfg = {"input_dim": 240, "encoder_layers": encoder_layers, "encoder_dim": encoder_dim,
           "bidirectional": False, "pred_embed_dim": 16, "pred_dim": pred_dim, "pred_layers": 1,
           "joint_dim": joint_dim, "vocab_size": len(VOCAB), "blank": BLANK}
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, shape in NumpyRNNT._expected_shapes(cfg).items():
        fan_in = shape[-1] if len(shape) > 1 else 1
        arrays[key] = (rng.standard_normal(shape) * (1.5 / np.sqrt(fan_in))).astype(np.float32)
    # log-mel values sit around -5 with a spread of a few nats
    arrays["feat_mean"] = np.full(240, -5.0, np.float32)
    arrays["feat_std"] = np.full(240, 3.0, np.float32)
    # a strong encoder and a weak predictor make the output follow the audio, not loop
    arrays["joint_out.weight"] *= 3.0
    arrays["enc_proj.weight"] *= 2.0
    arrays["pred_proj.weight"] *= 0.3
    arrays["joint_out.bias"][:] = 0.0
    arrays["joint_out.bias"][BLANK] = blank_bias
    path = Path(path)
    np.savez(path, format=np.array(FORMAT), config_json=np.array(json.dumps(cfg, sort_keys=True)),
             vocab_json=np.array(json.dumps(list(VOCAB))), **arrays)
    return path
