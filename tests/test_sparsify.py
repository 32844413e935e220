"""Gradual sparsification inside the compression fine-tune (asr.quant.sparsify's Zhu-Gupta
pruner driven by asr.train.compress_train): schedule values, the exported model's sparsity and
N:M structure, and that PTQ of the export keeps exactly the trained zeros and integers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.model.rnnt import RNNT, ModelConfig
from asr.quant import ptq
from asr.quant import recipe as recipe_mod
from asr.quant.sparsify import zhu_gupta_sparsity
from asr.train import compress_train, qat

from test_distill import synthetic_corpus

TINY = ModelConfig(encoder_layers=1, encoder_dim=16, pred_embed_dim=8, pred_dim=16, joint_dim=16)
MATRICES = ("encoder.weight_ih_l0", "encoder.weight_hh_l0", "pred_lstm.weight_ih_l0",
            "pred_lstm.weight_hh_l0", "enc_proj.weight", "pred_proj.weight", "joint_out.weight")


def test_zhu_gupta_values():
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, t0 = 100, n dt = 400, dt = 50
    for t, want in ((0, 0.1), (100, 0.1), (150, 0.8 - 0.7 * (1 - 50 / 400) ** 3),
                    (320, 0.8 - 0.7 * (1 - 200 / 400) ** 3), (499, 0.8 - 0.7 * (1 - 350 / 400) ** 3),
                    (500, 0.8), (900, 0.8)):
        got = zhu_gupta_sparsity(t, 0.8, 0.1, begin_step=100, end_step=500, frequency=50)
        assert got == pytest.approx(want), t
    # monotone, fast first: the first update prunes more than the last
    s = [zhu_gupta_sparsity(t, 0.5, 0.0, 0, 1000, 100) for t in range(0, 1001, 100)]
    assert all(b >= a for a, b in zip(s, s[1:]))
    assert s[1] - s[0] > s[-1] - s[-2]


def _run(tmp_path, compress: str, steps=6):
    torch.manual_seed(0)
    init = tmp_path / "init.pt"
    m = RNNT(TINY)
    torch.save({"model_cfg": m.cfg.to_dict(), "model": m.state_dict()}, init)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "c"\ninit = "{init}"\nbase_config = "none.toml"\n[compress]\n{compress}\n'
                   "[train]\nthreads = 1\nbatch_size = 8\nlr = 3e-3\nmax_minutes = 2.0\n"
                   f"max_steps = {steps}\nn_dev_eval = 4\nlog_every = 100\neval_at_start = false\n")
    s = compress_train.run(cfg, out_root=tmp_path / "models", runs_root=tmp_path / "runs",
                           train_examples=synthetic_corpus(24, 5), dev_examples=synthetic_corpus(4, 6),
                           echo=False)
    with np.load(tmp_path / "models" / "c" / "model.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return s, arrays


def test_qat_with_gradual_unstructured_pruning(tmp_path):
    s, arrays = _run(tmp_path, 'method = "qat"\nweight_bits = 8\nact_quant = false\nsparsity = 0.5\n'
                               'prune_begin_step = 0\nprune_end_step = 4\nprune_frequency = 1')
    for name in MATRICES:
        w = arrays[name]
        assert np.mean(w == 0) == pytest.approx(0.5, abs=1.0 / w.size + 1e-9), name
        assert s["sparsity_per_tensor"][name] >= 0.5 - 1.0 / w.size
    # PTQ with the int8-sparse50 rule prunes nothing more and gives the same ints
    from asr.model.numpy_rnnt import NumpyRNNT
    fm = NumpyRNNT.load(tmp_path / "models" / "c" / "model.npz")
    calib = [(np.random.default_rng(0).normal(0, 1, (20, 240)).astype(np.float32), [1, 2])]
    q = ptq.quantize(fm, recipe_mod.from_dict({"name": "s", "bits": 8, "sparsity": 0.5}), calib)
    for lname, key, pname in (("encoder.l0", "wx", "encoder.weight_ih_l0"), ("joint_out", "w", "joint_out.weight"),
                              ("pred.l0", "wh", "pred_lstm.weight_hh_l0")):
        np.testing.assert_array_equal(q.layers[lname][key], qat.weight_ints(torch.from_numpy(arrays[pname]), 8))
        np.testing.assert_array_equal(q.layers[lname][key] == 0, arrays[pname] == 0)


def test_budget_end_prunes_to_target(tmp_path):
    # end step far beyond the run: the runner still leaves with the target sparsity
    s, arrays = _run(tmp_path, 'method = "finetune"\nsparsity = 0.8\nprune_begin_step = 0\n'
                               'prune_end_step = 1000\nprune_frequency = 2', steps=3)
    for name in MATRICES:
        assert np.mean(arrays[name] == 0) == pytest.approx(0.8, abs=1.0 / arrays[name].size + 1e-9)


def test_n_of_m_structure(tmp_path):
    s, arrays = _run(tmp_path, 'method = "qat"\nweight_bits = 4\nact_quant = false\npattern = "2:4"\n'
                               'prune_begin_step = 0\nprune_end_step = 4\nprune_frequency = 2')
    for name in MATRICES:
        w = arrays[name]
        n_out, k = w.shape
        groups = np.pad(w, ((0, 0), (0, (-k) % 4))).reshape(n_out, -1, 4)
        nonzero = np.count_nonzero(groups, axis=2)
        assert nonzero.max() <= 2, name                 # at most 2 of every 4 consecutive inputs
        full = groups[:, : k // 4]
        assert np.mean(np.count_nonzero(full, axis=2) == 2) > 0.95   # and (almost) exactly 2
    # 4-bit: the exported values are on the int4 grid
    w = torch.from_numpy(arrays["joint_out.weight"])
    assert np.abs(qat.weight_ints(w, 4)).max() <= 7
    torch.testing.assert_close(qat.fake_quant_weight(w, 4), w)


def test_time_based_schedule_reaches_target(tmp_path):
    # begin/end in thousandths of the budget: max_steps = 6 makes the run fraction step / 6
    s, arrays = _run(tmp_path, 'method = "finetune"\nsparsity = 0.5\nprune_by_time = true\n'
                               'prune_begin_step = 0\nprune_end_step = 500\nprune_frequency = 100', steps=6)
    log = (tmp_path / "runs" / "c" / "log.txt").read_text()
    assert "pruning the rest of the way" not in log      # reached within the run
    for name in MATRICES:
        assert np.mean(arrays[name] == 0) == pytest.approx(0.5, abs=1.0 / arrays[name].size + 1e-9)
