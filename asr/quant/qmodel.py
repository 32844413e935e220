"""The quantized RNN-T: integer weights, scales and requantization constants, saved as .npz.

Where integer ends and float begins (the same in IntRNNT and ChipRNNT):

* host, float: features are normalized with the model's feat_mean / feat_std and quantized
  to int8 with the calibrated input scale ``s_in`` (``quantize_input``);
* chip, integer (azsim.reference semantics): encoder LSTM layers (int8 x/h, Q3.12 gates and
  cell, LUT sigmoid/tanh), enc_proj -> int8 enc (scale s_enc); embedding (int8 table),
  prediction LSTM layers, pred_proj -> int8 pred (scale s_pred); joint: enc + pred added
  into int16 Q3.12, tanh by the 513-entry LUT (Q0.15), requantized to int8 (scale 1/127),
  joint_out matmul -> raw int32 accumulators (bias included);
* host, float: logits = acc * out_scale (per output channel), then log_softmax.

Layers (``QuantModel.layers``):
  encoder.l<k>, pred.l<k>  LSTM: wx (4H, K) int8, wh (4H, H) int8, bias int32 (x-product
                           scale), mult_x/shift_x, mult_h/shift_h int32 (4H,), h_mult/h_shift
  enc_proj, pred_proj      linear: w (N, K) int8, bias int32, mult/shift int32 (N,)
  embed                    table (V, E) int8
  joint_out                linear: w (V, J), bias int32, out_scale float64 (V,) (no requant)
  joint                    a_mult, b_mult, add_shift (enc + pred -> Q3.12), tanh_mult,
                           tanh_shift (Q0.15 -> int8 at 1/127)
Every weight layer also records bits, format ("auto" or a format name), levels and its
float scales (s_x input, s_w per channel, s_y output) for reports.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from azsim import reference as ref
from azsim.errors import ModelError

FORMAT = "azsim-qrnnt-v1"
TANH_SCALE = 1.0 / 127.0  # joint tanh output (int8)

LSTM_FIELDS = {"wx": np.int8, "wh": np.int8, "bias": np.int32, "mult_x": np.int32,
               "shift_x": np.int32, "mult_h": np.int32, "shift_h": np.int32, "h_mult": np.int64,
               "h_shift": np.int64, "s_wx": np.float64, "s_wh": np.float64}
LINEAR_FIELDS = {"w": np.int8, "bias": np.int32, "mult": np.int32, "shift": np.int32,
                 "s_w": np.float64}
OUT_FIELDS = {"w": np.int8, "bias": np.int32, "out_scale": np.float64, "s_w": np.float64}
JOINT_FIELDS = {"a_mult": np.int64, "b_mult": np.int64, "add_shift": np.int64,
                "tanh_mult": np.int64, "tanh_shift": np.int64}
# Scalars kept in meta_json per weight layer: bits, format, levels, s_x, s_y, sparsity.


def lstm_names(cfg: dict) -> list[str]:
    return ([f"encoder.l{k}" for k in range(cfg["encoder_layers"])]
            + [f"pred.l{k}" for k in range(cfg["pred_layers"])])


def weight_layer_names(cfg: dict) -> list[str]:
    """Layers a recipe may configure, in model order."""
    return ([f"encoder.l{k}" for k in range(cfg["encoder_layers"])] + ["enc_proj"]
            + [f"pred.l{k}" for k in range(cfg["pred_layers"])] + ["pred_proj", "joint_out"])


def layer_kind(name: str) -> str:
    if name.startswith(("encoder.l", "pred.l")):
        return "lstm"
    return {"enc_proj": "linear", "pred_proj": "linear", "joint_out": "out", "embed": "embed",
            "joint": "joint"}[name]


def _shapes(cfg: dict) -> dict:
    """Expected array shapes: {layer: {field: shape}}."""
    out = {}
    for prefix, n, n_in, h in (("encoder", cfg["encoder_layers"], cfg["input_dim"], cfg["encoder_dim"]),
                               ("pred", cfg["pred_layers"], cfg["pred_embed_dim"], cfg["pred_dim"])):
        for k in range(n):
            G, K = 4 * h, (n_in if k == 0 else h)
            out[f"{prefix}.l{k}"] = {"wx": (G, K), "wh": (G, h), "bias": (G,), "mult_x": (G,),
                                     "shift_x": (G,), "mult_h": (G,), "shift_h": (G,), "h_mult": (),
                                     "h_shift": (), "s_wx": (G,), "s_wh": (G,)}
    j, v = cfg["joint_dim"], cfg["vocab_size"]
    for name, n_out, n_in in (("enc_proj", j, cfg["encoder_dim"]), ("pred_proj", j, cfg["pred_dim"])):
        out[name] = {"w": (n_out, n_in), "bias": (n_out,), "mult": (n_out,), "shift": (n_out,),
                     "s_w": (n_out,)}
    out["joint_out"] = {"w": (v, j), "bias": (v,), "out_scale": (v,), "s_w": (v,)}
    out["embed"] = {"table": (v, cfg["pred_embed_dim"])}
    out["joint"] = {k: () for k in JOINT_FIELDS}
    return out


def _dtypes(name: str) -> dict:
    kind = layer_kind(name)
    return {"lstm": LSTM_FIELDS, "linear": LINEAR_FIELDS, "out": OUT_FIELDS,
            "embed": {"table": np.int8}, "joint": JOINT_FIELDS}[kind]


class QuantModel:
    """A quantized RNN-T (see the module doc). Build with asr.quant.ptq; save/load as .npz."""

    def __init__(self, config: dict, vocab: list, feat_mean, feat_std, s_in: float, layers: dict,
                 layer_meta: dict, meta: dict | None = None, source: str = "<memory>"):
        self.config = dict(config)
        self.vocab = list(vocab)
        self.feat_mean = np.asarray(feat_mean, np.float32)
        self.feat_std = np.asarray(feat_std, np.float32)
        self.inv_std = (1.0 / self.feat_std).astype(np.float32)
        self.s_in = float(s_in)
        self.layers = layers          # {name: {field: array}}
        self.layer_meta = layer_meta  # {name: {bits, format, levels, s_x, s_y, sparsity}}
        self.meta = dict(meta or {})
        self.source = source
        self.sig_table = ref.sigmoid_table()
        self.tanh_table = ref.tanh_table()

    # --- handy scales ----------------------------------------------------------------------
    @property
    def s_enc(self) -> float:
        return float(self.layer_meta["enc_proj"]["s_y"])

    @property
    def s_pred(self) -> float:
        return float(self.layer_meta["pred_proj"]["s_y"])

    def quantize_input(self, x) -> np.ndarray:
        """Host side: raw stacked features (T, D) float -> normalized int8 (T, D)."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.config["input_dim"]:
            raise ValueError(f"expected (T, {self.config['input_dim']}) stacked features, got {x.shape}")
        z = (x - self.feat_mean) * self.inv_std / np.float32(self.s_in)
        return np.clip(np.rint(z), -127, 127).astype(np.int8)

    def weight_arrays(self) -> dict:
        """{layer: [int weight matrices]} of every layer held by the chip's weight memory."""
        out = {}
        for name in weight_layer_names(self.config):
            L = self.layers[name]
            out[name] = [L["wx"], L["wh"]] if layer_kind(name) == "lstm" else [L["w"]]
        out["embed"] = [self.layers["embed"]["table"]]
        return out

    def n_params(self) -> int:
        """Parameters of the float model this came from (weights + biases, embedding included)."""
        n = 0
        for name, arrs in self.weight_arrays().items():
            n += sum(a.size for a in arrs)
            if name != "embed":
                b = self.layers[name]["bias"].size
                n += 2 * b if layer_kind(name) == "lstm" else b   # torch LSTMs keep two biases
        return int(n)

    # --- persistence -----------------------------------------------------------------------
    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{ln}/{f}": np.asarray(a) for ln, d in self.layers.items() for f, a in d.items()}
        meta = {"config": self.config, "vocab": self.vocab, "s_in": self.s_in,
                "layer_meta": self.layer_meta, "meta": self.meta}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, format=np.array(FORMAT), meta_json=np.array(json.dumps(meta, sort_keys=True)),
                 feat_mean=self.feat_mean, feat_std=self.feat_std, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "QuantModel":
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        except Exception as err:  # zip/npy errors of many kinds all mean "not a readable npz"
            raise ModelError(f"{path}: not a readable .npz model file ({type(err).__name__}: {err})") from None
        fmt = str(raw.get("format", ""))
        if fmt != FORMAT:
            raise ModelError(f"{path}: key 'format' is {fmt!r}, expected {FORMAT!r} (a quantized model)")
        try:
            meta = json.loads(str(raw["meta_json"]))
            cfg, vocab, s_in = meta["config"], meta["vocab"], float(meta["s_in"])
            layer_meta = meta["layer_meta"]
        except (KeyError, ValueError, TypeError) as err:
            raise ModelError(f"{path}: key 'meta_json' is missing or malformed ({err})") from None
        shapes = _shapes(cfg)
        layers = {}
        for ln, fields in shapes.items():
            layers[ln] = {}
            for f, shape in fields.items():
                key = f"{ln}/{f}"
                if key not in raw:
                    raise ModelError(f"{path}: missing array {key!r}")
                a = raw[key]
                want = _dtypes(ln)[f]
                if a.shape != shape or a.dtype != want:
                    raise ModelError(f"{path}: array {key!r} is {a.dtype}{list(a.shape)}, expected "
                                     f"{np.dtype(want)}{list(shape)}")
                layers[ln][f] = a
        for key in ("feat_mean", "feat_std"):
            if key not in raw or raw[key].shape != (cfg["input_dim"],):
                raise ModelError(f"{path}: {key!r} missing or not of shape ({cfg['input_dim']},)")
        for ln in weight_layer_names(cfg) + ["enc_proj", "pred_proj"]:
            if ln not in layer_meta:
                raise ModelError(f"{path}: meta_json has no layer_meta for {ln!r}")
        return cls(cfg, vocab, raw["feat_mean"], raw["feat_std"], s_in, layers, layer_meta,
                   meta.get("meta", {}), source=str(path))


def load_any(path):
    """A float export (azsim-rnnt-v1) as NumpyRNNT, or a quantized one as QuantModel."""
    from asr.model.numpy_rnnt import NumpyRNNT

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            fmt = str(z["format"]) if "format" in z.files else ""
    except Exception as err:
        raise ModelError(f"{path}: not a readable .npz model file ({type(err).__name__}: {err})") from None
    if fmt == FORMAT:
        return QuantModel.load(path)
    return NumpyRNNT.load(path)
