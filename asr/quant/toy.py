"""Small random float RNN-Ts for tests and benchmarks (no torch, no training)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asr import text as asr_text
from asr.model.export import FORMAT


def random_arrays(cfg: dict, seed: int = 0) -> dict:
    """Float32 weights shaped like an export of `cfg`, drawn like torch's default init
    (uniform +-1/sqrt(fan)), plus a feature normalization."""
    from asr.model.numpy_rnnt import NumpyRNNT

    rng = np.random.default_rng(seed)
    arrays = {}
    for key, shape in NumpyRNNT._expected_shapes(cfg).items():
        if key == "feat_mean":
            arrays[key] = rng.normal(-5.0, 1.0, shape).astype(np.float32)
        elif key == "feat_std":
            arrays[key] = rng.uniform(1.0, 3.0, shape).astype(np.float32)
        elif key == "embed.weight":
            arrays[key] = rng.normal(0.0, 1.0, shape).astype(np.float32)
        else:
            fan = shape[-1] if len(shape) == 2 else shape[0] // 4 if "bias" in key and (
                key.startswith("encoder") or key.startswith("pred_lstm")) else shape[0]
            bound = 1.0 / np.sqrt(max(fan, 1))
            arrays[key] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return arrays


def tiny_config(**over) -> dict:
    cfg = {"input_dim": 240, "encoder_layers": 2, "encoder_dim": 32, "bidirectional": False,
           "pred_embed_dim": 16, "pred_dim": 32, "pred_layers": 1, "joint_dim": 24,
           "vocab_size": asr_text.VOCAB_SIZE, "blank": asr_text.BLANK}
    cfg.update(over)
    return cfg


def random_model(cfg: dict | None = None, seed: int = 0):
    from asr.model.numpy_rnnt import NumpyRNNT

    cfg = tiny_config() if cfg is None else cfg
    return NumpyRNNT(random_arrays(cfg, seed), cfg, list(asr_text.VOCAB), source=f"<random seed {seed}>")


def save_random_model(path, cfg: dict | None = None, seed: int = 0) -> Path:
    """Write a random model in the float export layout (asr.model.export)."""
    cfg = tiny_config() if cfg is None else cfg
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, format=np.array(FORMAT), config_json=np.array(json.dumps(cfg, sort_keys=True)),
             vocab_json=np.array(json.dumps(list(asr_text.VOCAB))), **random_arrays(cfg, seed))
    return path


def random_features(n_frames: int, seed: int = 0, dim: int = 240) -> np.ndarray:
    """Log-mel-like stacked features."""
    rng = np.random.default_rng(seed)
    return rng.normal(-5.0, 2.0, (n_frames, dim)).astype(np.float32)
