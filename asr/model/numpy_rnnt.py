"""Torch-free float32 inference of an exported RNN-T (.npz from asr.model.export).

The interface below is the contract every model backend implements (this float model, and the
int8 on-chip model later), so the decoders in asr.decode work on any of them:

  vocab_size, blank                     attributes
  encoder_init() -> state
  encode(x (T, 240) float32 raw stacked features, state) -> (enc (T, J), new_state)
      streaming: encoding chunks one after another equals encoding the whole utterance
  predictor_init() -> state            (the first call is predict(blank, state): blank is SOS)
  predict(token, state) -> (pred (J,), new_state)
  joint(enc (..., J), pred (..., J)) -> log_probs (..., V), broadcasting

States are tuples of arrays and are never modified in place, so a beam search may branch
from any state it holds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asr.model.export import FORMAT, weight_names
from azsim.errors import ModelError


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warnings for large negative x.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _cell(g: np.ndarray, c: np.ndarray, n: int):
    """The LSTM cell on gate pre-activations g (..., 4n) in torch's order (input, forget,
    cell, output) and the cell state c (..., n) -> new h, c."""
    c = _sigmoid(g[..., n:2 * n]) * c + _sigmoid(g[..., :n]) * np.tanh(g[..., 2 * n:3 * n])
    return _sigmoid(g[..., 3 * n:]) * np.tanh(c), c


class _LSTMLayer:
    def __init__(self, w_ih, w_hh, b_ih, b_hh):
        self.w_ih_t = np.ascontiguousarray(w_ih.T)
        self.w_hh_t = np.ascontiguousarray(w_hh.T)
        self.bias = (b_ih + b_hh).astype(np.float32)
        self.hidden = w_hh.shape[1]

    def run(self, x: np.ndarray, h: np.ndarray, c: np.ndarray):
        """x (T, in) -> outputs (T, H), final h, c."""
        n = self.hidden
        pre = x @ self.w_ih_t + self.bias
        out = np.empty((x.shape[0], n), np.float32)
        for t in range(x.shape[0]):
            h, c = _cell(pre[t] + h @ self.w_hh_t, c, n)
            out[t] = h
        return out, h, c

    def step_batch(self, x: np.ndarray, h: np.ndarray, c: np.ndarray):
        """One time step of N independent sequences: x (N, in), h and c (N, H) -> new h, c."""
        h, c = _cell(x @ self.w_ih_t + self.bias + h @ self.w_hh_t, c, self.hidden)
        return h.astype(np.float32), c.astype(np.float32)


class NumpyRNNT:
    def __init__(self, arrays: dict[str, np.ndarray], cfg: dict, vocab: list[str], source: str = "<memory>"):
        self.source = source
        self.config = dict(cfg)
        self.vocab = list(vocab)
        self.vocab_size = int(cfg["vocab_size"])
        self.blank = int(cfg["blank"])
        self.joint_dim = int(cfg["joint_dim"])
        self.input_dim = int(cfg["input_dim"])
        self.feat_mean = arrays["feat_mean"]
        self.inv_std = (1.0 / arrays["feat_std"]).astype(np.float32)
        self.enc_layers = [_LSTMLayer(*(arrays[f"encoder.{w}_l{k}"] for w in
                                        ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
                           for k in range(int(cfg["encoder_layers"]))]
        self.pred_layers = [_LSTMLayer(*(arrays[f"pred_lstm.{w}_l{k}"] for w in
                                         ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
                            for k in range(int(cfg["pred_layers"]))]
        self.enc_proj_w_t = np.ascontiguousarray(arrays["enc_proj.weight"].T)
        self.enc_proj_b = arrays["enc_proj.bias"]
        self.embed = arrays["embed.weight"]
        self.pred_proj_w_t = np.ascontiguousarray(arrays["pred_proj.weight"].T)
        self.pred_proj_b = arrays["pred_proj.bias"]
        self.out_w_t = np.ascontiguousarray(arrays["joint_out.weight"].T)
        self.out_b = arrays["joint_out.bias"]

    # --- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "NumpyRNNT":
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        except Exception as err:  # zipfile/format errors of many kinds: all mean "not our npz"
            raise ModelError(f"{path}: not a readable .npz model file ({type(err).__name__}: {err})") from None
        return cls.from_arrays(raw, source=str(path))

    @classmethod
    def from_arrays(cls, raw: dict, source: str = "<memory>") -> "NumpyRNNT":
        """A model from the arrays of an export (as np.load gives them), validated as ``load``
        does; errors name `source`."""
        for key in ("format", "config_json", "vocab_json", "feat_mean", "feat_std"):
            if key not in raw:
                raise ModelError(f"{source}: missing key {key!r} (expected an {FORMAT} export)")
        if str(raw["format"]) != FORMAT:
            raise ModelError(f"{source}: key 'format' is {str(raw['format'])!r}, expected {FORMAT!r}")
        try:
            cfg = json.loads(str(raw["config_json"]))
            vocab = json.loads(str(raw["vocab_json"]))
        except json.JSONDecodeError as err:
            raise ModelError(f"{source}: key 'config_json'/'vocab_json' is not valid JSON ({err})") from None
        required = ("input_dim", "encoder_layers", "encoder_dim", "pred_embed_dim", "pred_dim",
                    "pred_layers", "joint_dim", "vocab_size", "blank")
        for key in required:
            if not isinstance(cfg.get(key), int) or cfg[key] < 0:
                raise ModelError(f"{source}: config_json field {key!r} = {cfg.get(key)!r} must be a "
                                 "non-negative integer")
        if cfg.get("bidirectional"):
            raise ModelError(f"{source}: config_json field 'bidirectional' is true; only causal models "
                             "can be run for streaming inference")
        if not isinstance(vocab, list) or len(vocab) != cfg["vocab_size"]:
            raise ModelError(f"{source}: vocab_json must list vocab_size = {cfg['vocab_size']} tokens")
        expected = cls._expected_shapes(cfg)
        arrays = {}
        for key, shape in expected.items():
            if key not in raw:
                raise ModelError(f"{source}: missing weight {key!r}")
            arr = raw[key]
            if arr.shape != shape:
                raise ModelError(f"{source}: weight {key!r} has shape {arr.shape}, expected {shape}")
            if not np.issubdtype(arr.dtype, np.floating):
                raise ModelError(f"{source}: weight {key!r} has dtype {arr.dtype}, expected float32")
            arr = arr.astype(np.float32)
            if not np.all(np.isfinite(arr)):
                raise ModelError(f"{source}: weight {key!r} contains NaN or infinite values")
            arrays[key] = arr
        if np.any(arrays["feat_std"] <= 0):
            raise ModelError(f"{source}: 'feat_std' must be > 0 everywhere")
        return cls(arrays, cfg, vocab, source=source)

    @staticmethod
    def _expected_shapes(cfg: dict) -> dict[str, tuple]:
        shapes = {"feat_mean": (cfg["input_dim"],), "feat_std": (cfg["input_dim"],)}
        for prefix, layers, n_in, n_h in (
                ("encoder", cfg["encoder_layers"], cfg["input_dim"], cfg["encoder_dim"]),
                ("pred_lstm", cfg["pred_layers"], cfg["pred_embed_dim"], cfg["pred_dim"])):
            for k in range(layers):
                shapes[f"{prefix}.weight_ih_l{k}"] = (4 * n_h, n_in if k == 0 else n_h)
                shapes[f"{prefix}.weight_hh_l{k}"] = (4 * n_h, n_h)
                shapes[f"{prefix}.bias_ih_l{k}"] = (4 * n_h,)
                shapes[f"{prefix}.bias_hh_l{k}"] = (4 * n_h,)
        j, v = cfg["joint_dim"], cfg["vocab_size"]
        shapes.update({"enc_proj.weight": (j, cfg["encoder_dim"]), "enc_proj.bias": (j,),
                       "embed.weight": (v, cfg["pred_embed_dim"]),
                       "pred_proj.weight": (j, cfg["pred_dim"]), "pred_proj.bias": (j,),
                       "joint_out.weight": (v, j), "joint_out.bias": (v,)})
        assert set(shapes) == set(weight_names(cfg)) | {"feat_mean", "feat_std"}
        return shapes

    # --- the decoder-facing interface -------------------------------------------------------
    def encoder_init(self):
        return tuple((np.zeros(l.hidden, np.float32), np.zeros(l.hidden, np.float32))
                     for l in self.enc_layers)

    def encode(self, x: np.ndarray, state):
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"encode expects (T, {self.input_dim}) stacked features, got {x.shape}")
        h = (x - self.feat_mean) * self.inv_std
        new_state = []
        for layer, (h0, c0) in zip(self.enc_layers, state):
            h, h_last, c_last = layer.run(h, h0, c0)
            new_state.append((h_last, c_last))
        enc = h @ self.enc_proj_w_t + self.enc_proj_b
        return enc.astype(np.float32), tuple(new_state)

    def predictor_init(self):
        return tuple((np.zeros(l.hidden, np.float32), np.zeros(l.hidden, np.float32))
                     for l in self.pred_layers)

    def predict(self, token: int, state):
        if not 0 <= int(token) < self.vocab_size:
            raise ValueError(f"token {token} outside [0, {self.vocab_size})")
        h = self.embed[int(token)][None, :]
        new_state = []
        for layer, (h0, c0) in zip(self.pred_layers, state):
            h, h_last, c_last = layer.run(h, h0, c0)
            new_state.append((h_last, c_last))
        pred = h[0] @ self.pred_proj_w_t + self.pred_proj_b
        return pred.astype(np.float32), tuple(new_state)

    def predict_batch(self, tokens, state):
        """`predict` for N hypotheses at once: tokens (N,), state per layer (h, c) of shape
        (N, H) (np.repeat a `predict` state to start) -> outputs (N, D), new state."""
        tokens = np.asarray(tokens, np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"token outside [0, {self.vocab_size})")
        h = self.embed[tokens]
        new_state = []
        for layer, (h0, c0) in zip(self.pred_layers, state):
            h, c = layer.step_batch(h, h0, c0)
            new_state.append((h, c))
        return (h @ self.pred_proj_w_t + self.pred_proj_b).astype(np.float32), tuple(new_state)

    def joint(self, enc: np.ndarray, pred: np.ndarray) -> np.ndarray:
        z = np.tanh(np.asarray(enc, np.float32) + np.asarray(pred, np.float32)) @ self.out_w_t + self.out_b
        z = z - z.max(axis=-1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)

    def n_params(self) -> int:
        n = sum(l.w_ih_t.size + l.w_hh_t.size + 2 * l.bias.size for l in self.enc_layers + self.pred_layers)
        return int(n + self.enc_proj_w_t.size + self.enc_proj_b.size + self.embed.size
                   + self.pred_proj_w_t.size + self.pred_proj_b.size + self.out_w_t.size + self.out_b.size)
