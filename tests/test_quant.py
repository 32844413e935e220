"""Recipes (validation errors), pruning, weight quantization, PTQ accuracy and the quantized
model file (round trip, bad files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asr.quant import ptq, recipe, toy
from asr.quant.int_rnnt import IntRNNT
from asr.quant.qmodel import QuantModel, load_any
from azsim.errors import ConfigError, ModelError

REPO = Path(__file__).resolve().parents[1]


def _calib(n=4, frames=40):
    return [(toy.random_features(frames, s), list(np.random.default_rng(s).integers(1, 29, 12)))
            for s in range(n)]


@pytest.fixture(scope="module")
def fm():
    return toy.random_model(seed=2)


# ------------------------------------------------------------------------------ recipes
def test_shipped_recipes_load():
    names = {p.stem: recipe.load(p) for p in sorted((REPO / "recipes").glob("*.toml"))}
    assert {"int8", "int8-sparse50"} <= set(names)
    assert names["int8"].default.bits == 8 and names["int8"].default.sparsity == 0.0
    # 50% of all weights: LSTMs at 52.5%, the small projections dense (see the recipe)
    s50 = names["int8-sparse50"]
    assert s50.default.sparsity == 0.525 and s50.layer("joint_out").sparsity == 0.0
    for name, r in names.items():
        if r.method == "ptq":
            assert r.model is None and not r.build and r.model_path() is None
        else:   # trained methods name their fine-tunes, and the model is the last one's export
            assert r.build and all((REPO / b).is_file() for b in r.build)
            assert r.model_path().name == "model.npz" and "models/compress" in r.model_path().as_posix()
            assert r.builds_its_model()
    assert names["int8-qat"].method == "qat" and names["int4-regqat"].method == "reg-qat"
    assert names["distilled-int8"].build[0].endswith("teacher-bi.toml")


BAD = [
    ('bits = 6\n', "bits", "4 or 8"),
    ('sparsity = 1.0\n', "sparsity", "[0, 1)"),
    ('sparsity = -0.1\n', "sparsity", "[0, 1)"),
    ('format = "zip"\n', "format", "auto, dense"),
    ('bitz = 8\n', "bitz", "unknown field"),
    ('method = "qat"\n', "method", "needs the fine-tuned model"),
    ('method = "magic"\n', "method", "allowed: ptq, qat, reg-qat, sparse, distill"),
    ('model = 3\n', "model", ".npz model export"),
    ('model = "m.pt"\n', "model", ".npz model export"),
    ('build = "configs/compress/nope.toml"\n', "build", "no such file"),
    ('build = [1]\n', "build", "compression fine-tune configs"),
    ('format = "int4"\n', "format", "4-bit weights only"),
    ('format = "codebook"\n', "format", "needs levels"),
    ('levels = 12\n', "levels", "power of two"),
    ('pattern = "4:2"\n', "pattern", "N:M"),
    ('pattern = "2:4"\nsparsity = 0.3\n', "sparsity", "N:M pattern sets the sparsity"),
    ('[layers."encoder.lx"]\nbits = 8\n', "layers.encoder.lx", "unknown layer"),
    ('[layers.decoder]\nbits = 8\n', "layers.decoder", "unknown layer"),
    ('[layers.embed]\nbits = 4\n', "layers.embed", "int8 dense"),
    ('[layers.joint_out]\nbits = 3\n', "layers.joint_out.bits", "4 or 8"),
    ('[layers.enc_proj]\nformat = "huffman"\n', "layers.enc_proj.format", "allowed"),
    ('[layers.enc_proj]\nsparsity = 1.5\n', "layers.enc_proj.sparsity", "[0, 1)"),
    ('[calibration]\nsubset = "test_clean"\n', "calibration.subset", "never a test subset"),
    ('[calibration]\nutterances = 0\n', "calibration.utterances", "[1, 10000]"),
    ('[calibration]\nstatistic = "mean"\n', "calibration.statistic", "max, percentile"),
    ('solver = "obs"\n', "solver", "round, gptq"),
]


@pytest.mark.parametrize("body,field,hint", BAD)
def test_recipe_errors_name_file_and_field(tmp_path, body, field, hint):
    p = tmp_path / "bad.toml"
    p.write_text('name = "bad"\n' + body)
    with pytest.raises(ConfigError) as e:
        recipe.load(p)
    msg = str(e.value)
    assert str(p) in msg and field in msg and hint in msg


def test_recipe_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        recipe.load(tmp_path / "nope.toml")
    p = tmp_path / "broken.toml"
    p.write_text("bits = = 8\n")
    with pytest.raises(ConfigError, match="not valid TOML") as e:
        recipe.load(p)
    assert str(p) in str(e.value)


def test_recipe_layer_missing_from_model(tmp_path, fm):
    p = tmp_path / "r.toml"
    p.write_text('name = "r"\n[layers."encoder.l7"]\nbits = 4\n')
    r = recipe.load(p)      # a plausible name: checked against the model when quantizing
    with pytest.raises(ConfigError) as e:
        ptq.quantize(fm, r, _calib(1))
    assert str(p) in str(e.value) and "encoder.l7" in str(e.value) and "encoder.l0" in str(e.value)


def test_layer_overrides_apply(fm):
    r = recipe.from_dict({"name": "mix", "bits": 8, "layers": {"encoder.l1": {"bits": 4},
                                                               "joint_out": {"sparsity": 0.5}}})
    qm = ptq.quantize(fm, r, _calib(2))
    assert qm.layer_meta["encoder.l1"]["bits"] == 4 and qm.layer_meta["encoder.l0"]["bits"] == 8
    assert np.abs(qm.layers["encoder.l1"]["wx"]).max() <= 7
    assert np.abs(qm.layers["encoder.l0"]["wx"]).max() == 127
    assert qm.layer_meta["joint_out"]["sparsity"] >= 0.5 and qm.layer_meta["enc_proj"]["sparsity"] < 0.1


# ------------------------------------------------------------------------------ pruning / weights
def test_prune_unstructured_exact():
    w = np.random.default_rng(0).normal(size=(64, 48)).astype(np.float32)
    p = ptq.prune(w, 0.5)
    assert np.count_nonzero(p == 0) == 64 * 48 // 2
    kept = np.abs(w[p != 0]).min()
    assert kept >= np.abs(w[p == 0]).max()          # the smallest magnitudes went
    assert np.array_equal(p[p != 0], w[p != 0])


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8)])
def test_prune_n_of_m(n, m):
    w = np.random.default_rng(1).normal(size=(16, 30)).astype(np.float32)   # 30: a ragged group
    p = ptq.prune(w, nm=(n, m))
    pad = np.pad(p, ((0, 0), (0, (-30) % m))).reshape(16, -1, m)
    assert (np.count_nonzero(pad, axis=2) <= n).all()
    assert (np.count_nonzero(pad[:, :-1], axis=2) == n).all()   # full groups keep exactly N


@pytest.mark.parametrize("bits,qmax", [(8, 127), (4, 7)])
def test_quantize_weight_per_channel(bits, qmax):
    rng = np.random.default_rng(2)
    w = rng.normal(size=(10, 20)) * rng.uniform(0.01, 3.0, size=(10, 1))
    w[3] = 0.0                                   # an all-zero (pruned) row
    q, s = ptq.quantize_weight(w, bits)
    assert q.dtype == np.int8 and np.abs(q).max() <= qmax
    live = np.arange(10) != 3
    assert (np.abs(q[live]).max(axis=1) == qmax).all()
    assert not q[3].any() and s[3] == 1.0
    assert np.abs(q * s[:, None] - w)[live].max() <= (s[live].max() / 2) + 1e-12


def test_levels_snap():
    w = np.random.default_rng(3).normal(size=(32, 64))
    w = ptq.prune(w, 0.4)
    q, _ = ptq.quantize_weight(w, 8, levels=16)
    vals = np.unique(q)
    assert len(vals) <= 16 and 0 in vals
    assert np.count_nonzero(q == 0) >= int(0.4 * q.size)   # pruned weights stay zero


def _correlated(seed=0, n=2000, k=64):
    """Inputs like an LSTM layer's: correlated, with very different scales per input."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, k)) @ rng.normal(size=(k, k)) * 0.3) * np.logspace(-1, 0.5, k)


@pytest.mark.parametrize("bits,sparsity,nm", [(8, 0.0, None), (4, 0.0, None), (8, 0.5, None),
                                              (8, 0.0, (2, 4))])
def test_gptq_beats_round_to_nearest(bits, sparsity, nm):
    """Same grid and the same number of zeros, smaller output error on the calibration inputs."""
    X = _correlated()
    W = np.random.default_rng(1).normal(size=(96, 64))
    q, s = ptq.gptq(W, ptq.hessian([X]), bits, sparsity, nm)
    r, rs = ptq.quantize_weight(ptq.prune(W, sparsity, nm) if (sparsity or nm) else W, bits)
    assert q.dtype == np.int8 and np.abs(q).max() <= (127 if bits == 8 else 7)
    assert np.allclose(s, rs)                     # same per-row grid
    err_g = np.linalg.norm(X @ (W - q * s[:, None]).T)
    err_r = np.linalg.norm(X @ (W - r * rs[:, None]).T)
    assert err_g < err_r
    if sparsity:
        assert np.count_nonzero(q == 0) >= int(sparsity * q.size)
    if nm:
        assert (np.count_nonzero(q.reshape(96, -1, 4), axis=2) <= 2).all()


def test_gptq_solver_in_quantize(fm):
    qm = ptq.quantize(fm, recipe.from_dict({"name": "g", "sparsity": 0.5, "solver": "gptq"}), _calib())
    for name in ("encoder.l0", "encoder.l1", "pred.l0"):
        assert qm.layer_meta[name]["sparsity"] >= 0.5
    im = IntRNNT(qm)
    x = toy.random_features(10, 5)
    lq = im.joint(im.encode(x, im.encoder_init())[0], im.predict(0, im.predictor_init())[0][None])
    assert np.isfinite(lq).all()


# ------------------------------------------------------------------------------ PTQ accuracy
# Tolerances on the small random model (measured: int8 ~0.01, int4 ~0.03 max |delta log-prob|).
@pytest.mark.parametrize("bits,tol", [(8, 0.05), (4, 0.15)])
def test_ptq_log_probs_close_to_float(fm, bits, tol):
    qm = ptq.quantize(fm, recipe.from_dict({"name": "q", "bits": bits}), _calib())
    im = IntRNNT(qm)
    x = toy.random_features(30, 99)
    ef, _ = fm.encode(x, fm.encoder_init())
    eq, _ = im.encode(x, im.encoder_init())
    pf, sf = fm.predictor_init(), None
    pq = im.predictor_init()
    worst = 0.0
    for tok in (0, 7, 1, 12):
        pf_out, pf = fm.predict(tok, pf)
        pq_out, pq = im.predict(tok, pq)
        lf = fm.joint(ef, pf_out[None, :])
        lq = im.joint(eq, pq_out[None, :])
        assert lq.shape == lf.shape == (30, fm.vocab_size)
        assert np.allclose(np.exp(lq).sum(axis=-1), 1.0, atol=1e-4)
        worst = max(worst, float(np.abs(lf - lq).max()))
    assert worst < tol


def test_calibration_statistics(fm):
    cal = _calib()
    qmax = ptq.quantize(fm, recipe.from_dict({"name": "a", "calibration": {"statistic": "max"}}), cal)
    qpct = ptq.quantize(fm, recipe.from_dict({"name": "b", "calibration": {"percentile": 99.0}}), cal)
    assert qpct.s_in < qmax.s_in and qpct.s_enc <= qmax.s_enc
    acts = ptq.collect_activations(fm, cal)
    assert qmax.s_in == pytest.approx(max(np.abs(a).max() for a in acts["input"]) / 127)


# ------------------------------------------------------------------------------ model files
def test_quant_model_round_trip(tmp_path, fm):
    qm = ptq.quantize(fm, recipe.from_dict({"name": "s", "sparsity": 0.5}), _calib(2))
    path = qm.save(tmp_path / "q.npz")
    q2 = load_any(path)
    assert isinstance(q2, QuantModel) and q2.layer_meta == qm.layer_meta and q2.s_in == qm.s_in
    for ln, d in qm.layers.items():
        for f, a in d.items():
            assert np.array_equal(a, q2.layers[ln][f]), (ln, f)
    x = toy.random_features(5, 1)
    a, _ = IntRNNT(qm).encode(x, IntRNNT(qm).encoder_init())
    b, _ = IntRNNT(q2).encode(x, IntRNNT(q2).encoder_init())
    assert np.array_equal(a, b)


def test_bad_model_files(tmp_path, fm):
    qm = ptq.quantize(fm, recipe.from_dict({"name": "s"}), _calib(1))
    good = qm.save(tmp_path / "q.npz")
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for loader in (QuantModel.load, load_any):
        with pytest.raises(ModelError) as e:
            loader(trunc)
        assert str(trunc) in str(e.value)
    # a float export is not a quantized model
    flt = toy.save_random_model(tmp_path / "float.npz")
    with pytest.raises(ModelError, match="azsim-qrnnt-v1"):
        QuantModel.load(flt)
    # another architecture: shapes that do not match the stored config
    other = tmp_path / "other.npz"
    with np.load(good) as z:
        d = {k: z[k] for k in z.files}
    d["encoder.l0/wx"] = d["encoder.l0/wx"][:, :100]
    np.savez(other, **d)
    with pytest.raises(ModelError) as e:
        QuantModel.load(other)
    assert str(other) in str(e.value) and "encoder.l0/wx" in str(e.value)
    # a float model of another architecture (a missing weight)
    arrays = toy.random_arrays(toy.tiny_config(), 0)
    arrays.pop("joint_out.weight")
    import json
    odd = tmp_path / "odd.npz"
    np.savez(odd, format=np.array("azsim-rnnt-v1"), config_json=np.array(json.dumps(toy.tiny_config())),
             vocab_json=np.array(json.dumps(list(fm.vocab))), **arrays)
    with pytest.raises(ModelError) as e:
        load_any(odd)
    assert str(odd) in str(e.value) and "joint_out.weight" in str(e.value)
    with pytest.raises(ModelError, match="not found"):
        load_any(tmp_path / "missing.npz")


# ------------------------------------------------------------------------------ gradual sparsity
def test_zhu_gupta_schedule():
    from asr.quant.sparsify import schedule_table, zhu_gupta_sparsity as s
    assert s(0, 0.8, begin_step=100, end_step=1100, frequency=100) == 0.0
    assert s(100, 0.8, begin_step=100, end_step=1100, frequency=100) == 0.0
    assert s(600, 0.8, begin_step=100, end_step=1100, frequency=100) == pytest.approx(0.8 * (1 - 0.5**3))
    assert s(650, 0.8, begin_step=100, end_step=1100, frequency=100) == s(600, 0.8, begin_step=100,
                                                                           end_step=1100, frequency=100)
    assert s(5000, 0.8, begin_step=100, end_step=1100, frequency=100) == 0.8
    tab = schedule_table(0.8, 100, 1100, 100)
    assert (np.diff(tab[:, 1]) >= 0).all() and tab[-1, 1] == 0.8
    with pytest.raises(ConfigError, match="final"):
        s(0, 1.0)
    with pytest.raises(ConfigError, match="end_step"):
        s(0, 0.5, begin_step=10, end_step=10)


def _train_with_pruner(pattern="unstructured", final=0.75, steps=60):
    import torch
    from asr.quant.sparsify import GradualPruner
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 16)
    opt = torch.optim.SGD(lin.parameters(), lr=0.05)
    x = torch.randn(256, 32)
    y = x @ torch.randn(32, 16)
    pr = GradualPruner({"w": lin.weight}, final, begin_step=0, end_step=40, frequency=10,
                       pattern=pattern)
    seen, losses = [], []
    for step in range(steps):
        opt.zero_grad()
        loss = ((lin(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        seen.append(pr.step(step))
        losses.append(loss.item())
    return lin, pr, seen, losses


def test_gradual_pruner_reaches_target_and_keeps_zeros():
    lin, pr, seen, losses = _train_with_pruner()
    assert seen[0] == 0.0 and seen[-1] == 0.75 and (np.diff(seen) >= 0).all()
    assert 0.0 < seen[25] < 0.75                       # gradual, not one shot
    assert pr.sparsity()["w"] == pytest.approx(0.75, abs=1 / 512)
    assert losses[-1] < losses[0]


def test_gradual_pruner_n_of_m():
    lin, pr, seen, _ = _train_with_pruner(pattern="2:4")
    w = lin.weight.detach().numpy().reshape(16, -1, 4)
    assert (np.count_nonzero(w, axis=2) <= 2).all() and seen[-1] == 0.5
    with pytest.raises(ConfigError, match="pattern"):
        from asr.quant.sparsify import GradualPruner
        GradualPruner({}, pattern="4:2")


def test_pruner_selects_rnnt_weights():
    from asr.model.rnnt import ModelConfig, RNNT
    from asr.quant.sparsify import rnnt_prunable
    names = set(rnnt_prunable(RNNT(ModelConfig(encoder_layers=2, encoder_dim=16, pred_dim=16,
                                               pred_embed_dim=8, joint_dim=8))))
    assert names == {"encoder.weight_ih_l0", "encoder.weight_hh_l0", "encoder.weight_ih_l1",
                     "encoder.weight_hh_l1", "pred_lstm.weight_ih_l0", "pred_lstm.weight_hh_l0",
                     "enc_proj.weight", "pred_proj.weight", "joint_out.weight"}
