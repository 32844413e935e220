"""Export a trained torch RNNT to a self-contained .npz (float32 weights + JSON config + vocab).

Layout (all arrays float32 unless noted):
  format            str   "azsim-rnnt-v1"
  config_json       str   ModelConfig as JSON
  vocab_json        str   list of token strings, index = token id
  feat_mean, feat_std     (input_dim,) causal global normalization of stacked features
  encoder.weight_ih_l{k}, encoder.weight_hh_l{k}, encoder.bias_ih_l{k}, encoder.bias_hh_l{k}
  enc_proj.weight, enc_proj.bias, embed.weight,
  pred_lstm.weight_ih_l{k}, ... (same as encoder), pred_proj.weight, pred_proj.bias,
  joint_out.weight, joint_out.bias
LSTM gate order is torch's (input, forget, cell, output). The CTC head is training-only and
not exported.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asr import text as asr_text

FORMAT = "azsim-rnnt-v1"


def weight_names(cfg: dict) -> list[str]:
    """Every weight key the npz must hold for a (unidirectional) model with config `cfg`."""
    names = []
    for prefix, layers in (("encoder", cfg["encoder_layers"]), ("pred_lstm", cfg["pred_layers"])):
        for k in range(layers):
            names += [f"{prefix}.weight_ih_l{k}", f"{prefix}.weight_hh_l{k}",
                      f"{prefix}.bias_ih_l{k}", f"{prefix}.bias_hh_l{k}"]
    names += ["enc_proj.weight", "enc_proj.bias", "embed.weight", "pred_proj.weight",
              "pred_proj.bias", "joint_out.weight", "joint_out.bias"]
    return names


def to_torch(arrays: dict, cfg: dict):
    """The torch RNNT (eval mode) holding an export's arrays (`arrays` as read from the npz, or
    changed in memory, e.g. by a neural diff); the training-only CTC head stays random."""
    import torch
    from asr.model.rnnt import RNNT, ModelConfig
    known = set(ModelConfig.__dataclass_fields__)
    model = RNNT(ModelConfig(**{k: v for k, v in cfg.items() if k in known}))
    state = model.state_dict()
    with torch.no_grad():
        for name in weight_names(cfg) + ["feat_mean", "feat_std"]:
            state[name].copy_(torch.from_numpy(np.asarray(arrays[name], np.float32)))
    model.eval()
    return model


def export_npz(model, path: str | Path) -> Path:
    """Write `model` (asr.model.rnnt.RNNT) to `path`; returns the path."""
    cfg = model.cfg.to_dict()
    if cfg["bidirectional"]:
        raise ValueError("only causal (unidirectional) models are exported for streaming inference")
    state = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    arrays = {name: np.ascontiguousarray(state[name], np.float32) for name in weight_names(cfg)}
    arrays["feat_mean"] = state["feat_mean"].astype(np.float32)
    arrays["feat_std"] = state["feat_std"].astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, format=np.array(FORMAT), config_json=np.array(json.dumps(cfg, sort_keys=True)),
             vocab_json=np.array(json.dumps(list(asr_text.VOCAB))), **arrays)
    tmp.replace(path)
    return path
