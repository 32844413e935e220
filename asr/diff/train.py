"""Learning model updates: sparse diffs, hash diffs and full-parameter fine-tuning.

All three train the same RNN-T loss on the same batches (new-shift data mixed with replayed
original training data, so the update does not simply overwrite the old task) and return
(diff or None, new float32 arrays). The arrays a diff trainer returns are exactly
`apply_diff(base, diff)`: the trainer finishes by quantizing its delta to the payload and
applying it with the same function a device would use.

Sparse diff (theta' = theta + m * delta): the full parameters are trained, and after every
optimizer step delta = theta - theta0 is pulled through a soft mask
m = sigmoid((|delta| - thr) / (tau * thr)), thr = the k-th largest |delta| where the kept
fraction k/N follows a cubic schedule from 1 down to the budget's fraction, and tau (the
temperature) shrinks geometrically so the mask sharpens from a soft shrinkage into a hard
top-k. At the end a hard top-k mask is taken, delta quantized per tensor to int8 and encoded;
k is lowered until the encoded file fits the byte budget.

Hash diff (delta_i = xi(i) * v[h(i)]): only the K bucket values v are trained. The gradient of v
is the signed scatter-add of the parameters' gradients over each bucket's members.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asr.diff.format import (HashDiff, SparseDiff, SparseTensor, apply_diff, encode_diff,
                             model_hash)
from asr.diff.hashing import bucket_and_sign
from asr.model.export import to_torch, weight_names
from asr.model.loss import rnnt_loss
from asr.model.rnnt import RNNT


# --- model <-> arrays -------------------------------------------------------------------------

def load_arrays(path) -> tuple[dict, dict]:
    """(arrays, config dict) of an exported model.npz (asr.model.export layout)."""
    import json
    from pathlib import Path
    from azsim.errors import ModelError
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        cfg = json.loads(str(arrays["config_json"]))
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"{path}: not an exported azsim RNN-T model.npz ({err})") from None
    return arrays, cfg


def target_names(cfg: dict) -> list[str]:
    """The tensors a diff may touch: every exported weight and bias (not the normalization)."""
    return weight_names(cfg)


def from_torch(model: RNNT, base: dict, names) -> dict:
    out = dict(base)
    sd = model.state_dict()
    for n in names:
        out[n] = sd[n].detach().cpu().numpy().astype(np.float32).copy()
    return out


# --- training ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffTrainConfig:
    steps: int = 60
    batch_size: int = 16
    # SGD, not Adam: a fresh Adam moves every weight by ~lr per step whatever its gradient,
    # which wrecked the shipped model's original-test WER in a 25-step probe (34.7% -> 44.7% at
    # lr 1e-4 while the new names barely improved); SGD moves weights in proportion to their
    # gradients.
    lr: float = 5e-3
    optimizer: str = "sgd"           # sgd (momentum 0.9) | adam: for theta and for hash values
    replay_fraction: float = 0.5     # share of each batch drawn from the original training data
    seed: int = 0
    # sparse diff
    budget_fraction: float = 0.10    # encoded diff bytes <= this x the float32 model bytes
    prune_end_fraction: float = 0.7  # the kept fraction reaches its target at this step fraction
    tau_start: float = 1.0
    tau_end: float = 0.01
    # hash diff
    hash_k: int = 4096
    hash_lr: float = 5e-3


def _optimizer(params, lr: float, kind: str):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer = {kind!r} (allowed: adam, sgd)")


def _batches(new_ex, old_ex, cfg: DiffTrainConfig, rng: np.random.Generator):
    from asr.train.loop import collate
    n_old = int(round(cfg.batch_size * cfg.replay_fraction)) if old_ex else 0
    n_new = cfg.batch_size - n_old
    for _ in range(cfg.steps):
        items = [new_ex[i] for i in rng.integers(0, len(new_ex), n_new)]
        if n_old:
            items += [old_ex[i] for i in rng.integers(0, len(old_ex), n_old)]
        yield collate(items, range(len(items)))


def _loss(model: RNNT, batch) -> torch.Tensor:
    x, x_lens, y, y_lens = batch
    logits, _ = model(x, x_lens, y)
    return rnnt_loss(logits, y, x_lens, y_lens, blank=model.cfg.blank).mean()


def _model_float_bytes(base: dict, names) -> int:
    return int(sum(np.asarray(base[n]).size for n in names) * 4)


def finetune_full(base: dict, cfg_model: dict, new_ex, old_ex, cfg: DiffTrainConfig) -> dict:
    """Full-parameter fine-tune (the reference a diff is compared with)."""
    torch.manual_seed(cfg.seed)
    model = to_torch(base, cfg_model)
    names = target_names(cfg_model)
    params = dict(model.named_parameters())
    opt = _optimizer([params[n] for n in names], cfg.lr, cfg.optimizer)
    model.train()
    for batch in _batches(new_ex, old_ex, cfg, np.random.default_rng([cfg.seed, 1])):
        opt.zero_grad(set_to_none=True)
        _loss(model, batch).backward()
        torch.nn.utils.clip_grad_norm_([params[n] for n in names], 5.0)
        opt.step()
    return from_torch(model, base, names)


def keep_fraction_at(step: int, total: int, final: float, end_fraction: float) -> float:
    """Cubic decay of the kept fraction from 1 to `final`, reached at end_fraction * total."""
    end = max(1, int(end_fraction * total))
    frac = min(1.0, step / end)
    return final + (1.0 - final) * (1.0 - frac) ** 3


def temperature_at(step: int, total: int, start: float, end: float) -> float:
    return start * (end / start) ** min(1.0, step / max(1, total - 1))


def _kth_largest(absd: torch.Tensor, k: int) -> float:
    n = absd.numel()
    k = max(1, min(n, k))
    return float(torch.kthvalue(absd, n - k + 1).values)


def quantize_sparse(deltas: dict, k: int, base_hash: str, names) -> SparseDiff:
    """Hard top-k (by |delta| over all tensors) then per-tensor symmetric int8."""
    flat = np.concatenate([np.abs(deltas[n]).reshape(-1) for n in names])
    if k <= 0:
        thr = np.inf
    elif k >= flat.size:
        thr = 0.0
    else:
        thr = np.partition(flat, flat.size - k)[flat.size - k]
    tensors = []
    for n in names:
        d = deltas[n]
        m = np.abs(d) >= thr if np.isfinite(thr) else np.zeros(d.shape, bool)
        if thr == 0.0:
            m = np.abs(d) > 0
        kept = np.where(m, d, 0.0)
        amax = float(np.abs(kept).max()) if kept.size else 0.0
        scale = np.float32(amax / 127.0) if amax > 0 else np.float32(1.0)
        q = np.clip(np.round(kept / scale), -127, 127).astype(np.int8)
        tensors.append(SparseTensor(n, tuple(d.shape), float(scale), q))
    return SparseDiff(base_hash, tensors)


def fit_budget(deltas: dict, budget_bytes: int, base_hash: str, names, k_start: int):
    """The largest k (found by shrinking from k_start) whose encoded diff fits budget_bytes."""
    k = k_start
    for _ in range(40):
        diff = quantize_sparse(deltas, k, base_hash, names)
        size = len(encode_diff(diff))
        if size <= budget_bytes:
            return diff, size, k
        k = int(k * min(0.97, budget_bytes / size))
    raise RuntimeError(f"could not fit the diff into {budget_bytes} bytes")


def train_sparse_diff(base: dict, cfg_model: dict, new_ex, old_ex, cfg: DiffTrainConfig):
    """(SparseDiff, theta' = apply_diff(base, diff), info dict)."""
    torch.manual_seed(cfg.seed)
    names = target_names(cfg_model)
    budget_bytes = int(cfg.budget_fraction * _model_float_bytes(base, names))
    model = to_torch(base, cfg_model)
    params = dict(model.named_parameters())
    theta0 = {n: params[n].detach().clone() for n in names}
    n_total = sum(theta0[n].numel() for n in names)
    # A first guess of the kept fraction: bitmask costs N/8 bytes + one byte per kept value.
    final_keep = max(1e-4, min(1.0, (budget_bytes - n_total / 8) / n_total))
    opt = _optimizer([params[n] for n in names], cfg.lr, cfg.optimizer)
    model.train()
    for step, batch in enumerate(_batches(new_ex, old_ex, cfg, np.random.default_rng([cfg.seed, 1]))):
        opt.zero_grad(set_to_none=True)
        _loss(model, batch).backward()
        torch.nn.utils.clip_grad_norm_([params[n] for n in names], 5.0)
        opt.step()
        keep = keep_fraction_at(step + 1, cfg.steps, final_keep, cfg.prune_end_fraction)
        tau = temperature_at(step, cfg.steps, cfg.tau_start, cfg.tau_end)
        with torch.no_grad():
            deltas = {n: params[n] - theta0[n] for n in names}
            absd = torch.cat([d.abs().reshape(-1) for d in deltas.values()])
            thr = _kth_largest(absd, int(keep * n_total))
            if thr > 0:
                for n in names:
                    m = torch.sigmoid((deltas[n].abs() - thr) / (tau * thr))
                    params[n].copy_(theta0[n] + m * deltas[n])
    deltas = {n: (params[n] - theta0[n]).detach().numpy().astype(np.float32) for n in names}
    bh = model_hash(base)
    diff, size, k = fit_budget(deltas, budget_bytes, bh, names, int(final_keep * n_total))
    new = apply_diff(base, diff)
    return diff, new, {"payload_bytes": size, "budget_bytes": budget_bytes, "nnz": diff.nnz(),
                       "n_params": n_total, "k": k}


def train_hash_diff(base: dict, cfg_model: dict, new_ex, old_ex, cfg: DiffTrainConfig):
    """(HashDiff, theta' = apply_diff(base, diff), info dict)."""
    torch.manual_seed(cfg.seed)
    names = target_names(cfg_model)
    model = to_torch(base, cfg_model)
    params = dict(model.named_parameters())
    theta0 = {n: params[n].detach().clone() for n in names}
    sizes = [theta0[n].numel() for n in names]
    n_total = sum(sizes)
    hash_seed = int(np.random.default_rng([cfg.seed, 7]).integers(0, 2**62))
    idx_np, sign_np = bucket_and_sign(n_total, cfg.hash_k, hash_seed)
    idx, sign = torch.from_numpy(idx_np), torch.from_numpy(sign_np)
    v = torch.zeros(cfg.hash_k, requires_grad=True)
    opt = _optimizer([v], cfg.hash_lr, cfg.optimizer)
    offsets = np.concatenate([[0], np.cumsum(sizes)])

    def set_params(vv):
        flat = sign * vv[idx]
        with torch.no_grad():
            for j, n in enumerate(names):
                params[n].copy_(theta0[n] + flat[offsets[j]:offsets[j + 1]].view_as(theta0[n]))

    model.train()
    for batch in _batches(new_ex, old_ex, cfg, np.random.default_rng([cfg.seed, 1])):
        set_params(v.detach())
        model.zero_grad(set_to_none=True)
        _loss(model, batch).backward()
        g = torch.cat([params[n].grad.reshape(-1) for n in names])
        gv = torch.zeros(cfg.hash_k).index_add_(0, idx, sign * g)
        gn = float(gv.norm())
        if gn > 5.0:
            gv *= 5.0 / gn
        opt.zero_grad(set_to_none=True)
        v.grad = gv
        opt.step()
    vals = v.detach().numpy().astype(np.float32)
    amax = float(np.abs(vals).max())
    scale = np.float32(amax / 127.0) if amax > 0 else np.float32(1.0)
    q = np.clip(np.round(vals / scale), -127, 127).astype(np.int8)
    diff = HashDiff(model_hash(base), hash_seed, float(scale), q,
                    [(n, tuple(theta0[n].shape)) for n in names])
    new = apply_diff(base, diff)
    return diff, new, {"payload_bytes": len(encode_diff(diff)), "k": cfg.hash_k,
                       "n_params": n_total}


def float_model_bytes(base: dict, cfg_model: dict) -> int:
    return _model_float_bytes(base, target_names(cfg_model))

