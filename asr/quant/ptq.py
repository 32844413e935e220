"""Post-training quantization (and one-shot magnitude pruning) of an exported float RNN-T.

    fm = NumpyRNNT.load("models/shipped/model.npz")
    qm = quantize(fm, recipe.load("recipes/int8.toml"), calibration_set(fm, utterances))
    qm.save("int8.npz")

Weights: per output channel (per gate row for LSTMs) symmetric, scale max|w| / qmax with
qmax = 127 (8 bits) or 7 (4 bits); the embedding table per tensor (its rows feed one LSTM
input scale). Optional, before quantizing: magnitude pruning to the recipe's sparsity per
tensor (unstructured: the smallest |w| of the tensor; N:M: the N largest |w| of every M
consecutive inputs of a row are kept) and, after, a k-means snap to at most ``levels``
distinct integer values per tensor (for the codebook formats).

Activations: symmetric int8 scales from the float model on calibration utterances (max or a
percentile of |x|): the normalized input, every LSTM layer's h, the enc and pred outputs.
Gates and cell states use the fixed Q3.12 / Q0.15 formats of azsim.reference.

Solvers (recipe field ``solver``): "round" = magnitude pruning + round to nearest; "gptq" =
GPTQ / SparseGPT, which picks the pruning mask and the rounding column by column and spreads
each column's error over the columns not yet done, using the calibration inputs of that
weight (function ``gptq``). Both are one shot; training-time methods (QAT, gradual
Zhu-Gupta sparsification with asr.quant.sparsify, distillation) live in asr/train.
"""
from __future__ import annotations

import numpy as np

from asr.quant.qmodel import QuantModel, TANH_SCALE, weight_layer_names
from asr.quant.recipe import Calibration, LayerRecipe, Recipe
from azsim import reference as ref
from azsim.errors import ConfigError, ModelError

GATE_SCALE = 2.0 ** -ref.GATE_FRAC_BITS   # Q3.12


# ----------------------------------------------------------------------------- pruning
def prune(w: np.ndarray, sparsity: float = 0.0, nm: tuple[int, int] | None = None) -> np.ndarray:
    """Magnitude pruning of a float (N, K) matrix; returns a copy with zeros."""
    w = np.array(w, dtype=np.float32, copy=True, order="C")
    if nm is not None:
        n_keep, m = nm
        N, K = w.shape
        pad = (-K) % m
        a = np.abs(np.pad(w, ((0, 0), (0, pad)))).reshape(N, -1, m)
        # rank within each group (stable: ties keep the earlier input)
        order = np.argsort(-a, axis=2, kind="stable")
        drop = np.zeros_like(a, dtype=bool)
        np.put_along_axis(drop, order[:, :, n_keep:], True, axis=2)
        drop = drop.reshape(N, -1)[:, :K]
        w[drop] = 0.0
        return w
    k = int(round(float(sparsity) * w.size))
    if k > 0:
        flat = w.reshape(-1)
        idx = np.argsort(np.abs(flat), kind="stable")[:k]
        flat[idx] = 0.0
    return w


# ----------------------------------------------------------------------------- weights
def _snap_levels(q: np.ndarray, levels: int, qmax: int) -> np.ndarray:
    """At most `levels` distinct integer values: 1-D k-means over the value histogram
    (zero kept as its own level when present, so pruned weights stay zero)."""
    vals, counts = np.unique(q, return_counts=True)
    if vals.size <= levels:
        return q
    has_zero = bool(np.any(vals == 0))
    nz = vals != 0
    v, c = vals[nz].astype(np.float64), counts[nz].astype(np.float64)
    k = levels - 1 if has_zero else levels
    # init at weighted quantiles; deterministic
    cdf = np.cumsum(c) / c.sum()
    cent = np.array([v[min(np.searchsorted(cdf, (i + 0.5) / k), v.size - 1)] for i in range(k)])
    for _ in range(50):
        a = np.argmin(np.abs(v[:, None] - cent[None, :]), axis=1)
        new = np.array([np.sum(v[a == j] * c[a == j]) / np.sum(c[a == j]) if np.any(a == j)
                        else cent[j] for j in range(k)])
        if np.allclose(new, cent):
            break
        cent = new
    cent = np.unique(np.clip(np.rint(cent), -qmax, qmax))
    cent = cent[cent != 0] if has_zero else cent
    table = np.concatenate([[0.0], cent]) if has_zero else cent
    lut = {int(x): int(table[np.argmin(np.abs(table - x))]) for x in vals}
    mapper = np.vectorize(lut.__getitem__, otypes=[np.int64])
    return mapper(q).astype(q.dtype)


def quantize_weight(w: np.ndarray, bits: int, levels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric quantization: (int8 array with values in [-qmax, qmax], scales (N,))."""
    qmax = 127 if bits == 8 else 7
    w = np.asarray(w, np.float64)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    q = np.clip(np.rint(w / scale[:, None]), -qmax, qmax).astype(np.int8)
    if levels:
        q = _snap_levels(q, levels, qmax)
    return q, scale


def gptq(w: np.ndarray, H: np.ndarray, bits: int, sparsity: float = 0.0,
         nm: tuple[int, int] | None = None, block: int = 64, damp: float = 0.01):
    """One-shot pruning + quantization with error compensation (GPTQ, Frantar et al. 2022;
    SparseGPT, Frantar & Alistarh 2023): columns are handled left to right; each column is
    pruned (mask by w^2 / [H^-1]_jj^2, per block of columns, or per N:M group) and rounded to
    the row's grid, and its error is spread over the columns not yet handled so that
    ||W X - Q X|| stays small on the calibration inputs X (H = X^T X).

    Returns (int8 weights, per-row scales) like quantize_weight."""
    qmax = 127 if bits == 8 else 7
    W = np.array(w, dtype=np.float64, copy=True, order="C")
    N, K = W.shape
    H = np.array(H, dtype=np.float64, copy=True)
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H[np.diag_indices(K)] += damp * float(np.mean(np.diag(H)))
    amax = np.abs(W).max(axis=1)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).T          # upper Cholesky factor of H^-1
    Q = np.zeros_like(W)
    for i1 in range(0, K, block):
        i2 = min(i1 + block, K)
        W1 = W[:, i1:i2].copy()
        Hb = Hinv[i1:i2, i1:i2]
        dg = np.diag(Hb)
        mask = np.zeros_like(W1, dtype=bool)                # True = pruned
        if nm is None and sparsity > 0:
            tmp = W1**2 / dg[None, :] ** 2
            k = int(round(tmp.size * sparsity))
            if k:
                mask.reshape(-1)[np.argsort(tmp.reshape(-1), kind="stable")[:k]] = True
        Err = np.zeros_like(W1)
        for j in range(i2 - i1):
            if nm is not None and (i1 + j) % nm[1] == 0:
                n_keep, m = nm
                tmp = W1[:, j:j + m] ** 2 / dg[None, j:j + m] ** 2
                order = np.argsort(tmp, axis=1, kind="stable")
                drop = order[:, :max(0, tmp.shape[1] - n_keep)]
                np.put_along_axis(mask[:, j:j + m], drop, True, axis=1)
            col = W1[:, j]
            q = np.clip(np.rint(col / scale), -qmax, qmax) * scale
            q[mask[:, j]] = 0.0
            Q[:, i1 + j] = q
            err = (col - q) / Hb[j, j]
            W1[:, j:] -= np.outer(err, Hb[j, j:])
            Err[:, j] = err
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    return np.clip(np.rint(Q / scale[:, None]), -qmax, qmax).astype(np.int8), scale


def hessian(xs) -> np.ndarray:
    """X^T X over calibration rows (a list of (T, K) arrays), float64."""
    K = xs[0].shape[1]
    H = np.zeros((K, K))
    for x in xs:
        x = np.asarray(x, np.float64)
        H += x.T @ x
    return H


def _bias_q(b: np.ndarray, prod_scale: np.ndarray) -> np.ndarray:
    q = np.rint(np.asarray(b, np.float64) / prod_scale)
    return np.clip(q, -(2**31), 2**31 - 1).astype(np.int32)


def _qm(real) -> tuple[np.ndarray, np.ndarray]:
    m, s = ref.quantize_multiplier(real)
    return m.astype(np.int32), s.astype(np.int32)


# ----------------------------------------------------------------------------- calibration
def _stat(values: list[np.ndarray], cal: Calibration) -> float:
    a = np.abs(np.concatenate([np.asarray(v, np.float64).reshape(-1) for v in values]))
    if a.size == 0:
        return 1.0
    v = float(a.max()) if cal.statistic == "max" else float(np.percentile(a, cal.percentile))
    return v if v > 0 else max(float(a.max()), 1e-6)


def calibration_set(utterances, limit: int | None = None) -> list[tuple[np.ndarray, list[int]]]:
    """(stacked features (T, 240), reference tokens) of corpus utterances (asr.data.corpus)."""
    from asr import text as asr_text
    from asr.features import stack_frames

    out = []
    for u in list(utterances)[:limit]:
        feats = stack_frames(np.asarray(u.feats, np.float32))
        if feats.shape[0]:
            out.append((feats, asr_text.encode(asr_text.normalize(u.text))))
    return out


def collect_activations(fm, calib) -> dict:
    """Float activations of the model on calibration data: {name: [arrays]}."""
    acts = {"input": [], "enc": [], "pred": [], "embed_out": []}
    for k in range(len(fm.enc_layers)):
        acts[f"encoder.l{k}"] = []
    for k in range(len(fm.pred_layers)):
        acts[f"pred.l{k}"] = []
    for feats, tokens in calib:
        h = (np.asarray(feats, np.float32) - fm.feat_mean) * fm.inv_std
        acts["input"].append(h)
        for k, layer in enumerate(fm.enc_layers):
            z = np.zeros(layer.hidden, np.float32)
            h, _, _ = layer.run(h, z, z)
            acts[f"encoder.l{k}"].append(h)
        acts["enc"].append(h @ fm.enc_proj_w_t + fm.enc_proj_b)
        # The predictor sees SOS (blank) and then the reference tokens.
        h = fm.embed[np.asarray([fm.blank] + list(tokens), np.int64)]
        acts["embed_out"].append(h)
        for k, layer in enumerate(fm.pred_layers):
            z = np.zeros(layer.hidden, np.float32)
            h, _, _ = layer.run(h, z, z)
            acts[f"pred.l{k}"].append(h)
        acts["pred"].append(h @ fm.pred_proj_w_t + fm.pred_proj_b)
    return acts


# ----------------------------------------------------------------------------- quantize
def _float_arrays(fm) -> dict:
    """The float weights of a NumpyRNNT as (N, K) matrices (undoing its transposes)."""
    d = {}
    for prefix, layers in (("encoder", fm.enc_layers), ("pred", fm.pred_layers)):
        for k, L in enumerate(layers):
            d[f"{prefix}.l{k}"] = {"wx": L.w_ih_t.T, "wh": L.w_hh_t.T, "b": L.bias}
    d["enc_proj"] = {"w": fm.enc_proj_w_t.T, "b": fm.enc_proj_b}
    d["pred_proj"] = {"w": fm.pred_proj_w_t.T, "b": fm.pred_proj_b}
    d["joint_out"] = {"w": fm.out_w_t.T, "b": fm.out_b}
    return d


def _layer_inputs(acts: dict, name: str, which: str) -> list:
    """Float inputs seen by a weight matrix on the calibration data (for the gptq solver)."""
    prefix, k = name.split(".l")
    k = int(k)
    if which == "wh":   # h_{t-1}: the layer's own outputs shifted by one step
        return [np.vstack([np.zeros((1, h.shape[1]), h.dtype), h[:-1]]) for h in acts[name]]
    if k > 0:
        return acts[f"{prefix}.l{k - 1}"]
    return acts["input"] if prefix == "encoder" else acts["embed_out"]


def _joint_inputs(acts: dict, seed: int, pairs: int = 512) -> list:
    """tanh(enc_t + pred_u) on sampled (t, u) pairs of each calibration utterance."""
    rng = np.random.default_rng(seed)
    out = []
    for enc, pred in zip(acts["enc"], acts["pred"]):
        t = rng.integers(0, enc.shape[0], pairs)
        u = rng.integers(0, pred.shape[0], pairs)
        out.append(np.tanh(enc[t] + pred[u]))
    return out


def _prep(w, lr: LayerRecipe, inputs=None) -> tuple[np.ndarray, np.ndarray]:
    if lr.solver == "gptq" and inputs is not None:
        q, s = gptq(w, hessian(inputs), lr.bits, 0.0 if lr.nm else lr.sparsity, lr.nm)
        if lr.levels:
            q = _snap_levels(q, lr.levels, 127 if lr.bits == 8 else 7)
        return q, s
    wp = prune(w, lr.sparsity, lr.nm) if (lr.sparsity or lr.nm) else np.asarray(w, np.float32)
    q, s = quantize_weight(wp, lr.bits, lr.levels)
    return q, s


def quantize(fm, recipe: Recipe, calib, source: str = "") -> QuantModel:
    """Quantize a NumpyRNNT with `recipe`, activation scales from `calib`
    (a list of (stacked features, tokens), see calibration_set)."""
    cfg = fm.config
    if not calib:
        raise ConfigError(f"{recipe.source}: calibration: no utterances to calibrate on")
    # Every method ends here: the trained ones (QAT, sparse, distill) hand over a fine-tuned
    # float model, and this conversion gives it its integers.
    names = weight_layer_names(cfg)
    recipe.check_layers(names)
    acts = collect_activations(fm, calib)
    cal = recipe.calibration
    s_in = _stat(acts["input"], cal) / 127.0
    fw = _float_arrays(fm)
    layers, lmeta = {}, {}

    def meta(name, lr, s_x, s_y, arrays):
        n = sum(a.size for a in arrays)
        z = sum(int(np.count_nonzero(a == 0)) for a in arrays)
        lmeta[name] = {"bits": lr.bits, "format": lr.format, "levels": lr.levels,
                       "pattern": lr.pattern, "target_sparsity": lr.sparsity if lr.nm is None
                       else 1.0 - lr.nm[0] / lr.nm[1], "sparsity": z / n, "s_x": s_x, "s_y": s_y}

    # LSTM stacks: x scale of layer k = h scale of layer k-1 (input scale / embedding scale first)
    emb = np.asarray(fm.embed, np.float64)
    s_emb = float(np.abs(emb).max()) / 127.0 or 1.0
    layers["embed"] = {"table": np.clip(np.rint(emb / s_emb), -127, 127).astype(np.int8)}
    lmeta["embed"] = {"bits": 8, "format": "dense", "levels": 0, "pattern": "unstructured",
                      "target_sparsity": 0.0, "sparsity": float(np.mean(layers["embed"]["table"] == 0)),
                      "s_x": None, "s_y": s_emb}
    for prefix, n_layers, s_first in (("encoder", len(fm.enc_layers), s_in),
                                      ("pred", len(fm.pred_layers), s_emb)):
        s_x = s_first
        for k in range(n_layers):
            name = f"{prefix}.l{k}"
            lr = recipe.layer(name)
            s_h = min(_stat(acts[name], cal), 1.0) / 127.0
            wx, s_wx = _prep(fw[name]["wx"], lr, _layer_inputs(acts, name, "wx"))
            wh, s_wh = _prep(fw[name]["wh"], lr, _layer_inputs(acts, name, "wh"))
            mult_x, shift_x = _qm(s_x * s_wx / GATE_SCALE)
            mult_h, shift_h = _qm(s_h * s_wh / GATE_SCALE)
            h_mult, h_shift = ref.quantize_multiplier(1.0 / (2.0**30 * s_h))
            layers[name] = {"wx": wx, "wh": wh, "bias": _bias_q(fw[name]["b"], s_x * s_wx),
                            "mult_x": mult_x, "shift_x": shift_x, "mult_h": mult_h,
                            "shift_h": shift_h, "h_mult": np.int64(h_mult[0]),
                            "h_shift": np.int64(h_shift[0]), "s_wx": s_wx, "s_wh": s_wh}
            meta(name, lr, s_x, s_h, [wx, wh])
            s_x = s_h
        proj = "enc_proj" if prefix == "encoder" else "pred_proj"
        lr = recipe.layer(proj)
        s_y = _stat(acts["enc" if prefix == "encoder" else "pred"], cal) / 127.0
        w, s_w = _prep(fw[proj]["w"], lr, acts[f"{prefix}.l{n_layers - 1}"])
        mult, shift = _qm(s_x * s_w / s_y)
        layers[proj] = {"w": w, "bias": _bias_q(fw[proj]["b"], s_x * s_w), "mult": mult,
                        "shift": shift, "s_w": s_w}
        meta(proj, lr, s_x, s_y, [w])

    s_enc, s_pred = lmeta["enc_proj"]["s_y"], lmeta["pred_proj"]["s_y"]
    (ma,), (sa,) = ref.quantize_multiplier(s_enc / GATE_SCALE)
    (mb,), (sb,) = ref.quantize_multiplier(s_pred / GATE_SCALE)
    sh = int(min(sa, sb))           # one shift for both: scale the other multiplier down
    ma, mb = int(round(ma * 2.0 ** (sh - sa))), int(round(mb * 2.0 ** (sh - sb)))
    (tm,), (ts,) = ref.quantize_multiplier(2.0**-ref.ACT_FRAC_BITS / TANH_SCALE)
    layers["joint"] = {"a_mult": np.int64(ma), "b_mult": np.int64(mb), "add_shift": np.int64(sh),
                       "tanh_mult": np.int64(tm), "tanh_shift": np.int64(ts)}
    lr = recipe.layer("joint_out")
    w, s_w = _prep(fw["joint_out"]["w"], lr, _joint_inputs(acts, cal.seed)
                   if lr.solver == "gptq" else None)
    layers["joint_out"] = {"w": w, "bias": _bias_q(fw["joint_out"]["b"], TANH_SCALE * s_w),
                           "out_scale": TANH_SCALE * s_w, "s_w": s_w}
    meta("joint_out", lr, TANH_SCALE, None, [w])

    info = {"recipe": recipe.to_dict(), "source_model": source or getattr(fm, "source", ""),
            "calibration_utterances": len(calib), "float_params": int(fm.n_params())}
    return QuantModel(cfg, fm.vocab, fm.feat_mean, 1.0 / fm.inv_std, s_in, layers, lmeta, info)


def quantize_from_corpus(fm, recipe: Recipe, corpus_dir, source: str = "") -> QuantModel:
    """PTQ with the recipe's calibration utterances taken from a built corpus."""
    from asr.data import corpus

    cal = recipe.calibration
    utts = corpus.load_subset(corpus_dir, cal.subset)
    if not utts:
        raise ModelError(f"{corpus_dir}: subset {cal.subset!r} is empty; nothing to calibrate on")
    rng = np.random.default_rng(cal.seed)
    pick = sorted(rng.choice(len(utts), size=min(cal.utterances, len(utts)), replace=False).tolist())
    return quantize(fm, recipe, calibration_set([utts[i] for i in pick]), source)


def main(argv=None) -> int:
    """python -m asr.quant.ptq --recipe R --out Q.npz [--model M] [--corpus DIR]"""
    import argparse
    import sys

    from asr.quant import recipe as recipe_mod
    from asr.quant.qmodel import QuantModel, load_any
    from azsim.errors import AzsimError

    ap = argparse.ArgumentParser(prog="python -m asr.quant.ptq",
                                 description="Quantize a float RNN-T export with a recipe; write the "
                                             "quantized .npz (what `azsim score --model` also takes).")
    ap.add_argument("--model", default=None, help="float export (default: the shipped model)")
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", default=None, help="built corpus directory (calibration utterances)")
    a = ap.parse_args(argv)
    try:
        from azsim.workflows.score import DEFAULT_MODEL, _corpus_dir
        model = a.model or str(DEFAULT_MODEL)
        rec = recipe_mod.load(a.recipe)
        fm = load_any(model)
        if isinstance(fm, QuantModel):
            raise ModelError(f"{model}: already quantized (expected a float export)")
        qm = quantize_from_corpus(fm, rec, _corpus_dir(model, a.corpus, None), source=model)
        qm.save(a.out)
    except AzsimError as err:
        print(f"asr.quant.ptq: error: {err}", file=sys.stderr)
        return 2
    print(f"{a.out}: {rec.name}, sparsity " + ", ".join(
        f"{k} {v['sparsity']:.2f}" for k, v in qm.layer_meta.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
