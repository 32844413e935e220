"""QAT: fake quantization lands on PTQ's integer grid, the sine regularizer pulls weights to the
grid, and the fake-quantized network tracks the integer reference (IntRNNT)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.model.rnnt import RNNT, ModelConfig
from asr.quant import ptq
from asr.quant import recipe as recipe_mod
from asr.train import qat
from azsim.errors import ConfigError

TINY = ModelConfig(encoder_layers=2, encoder_dim=24, pred_embed_dim=8, pred_dim=16, joint_dim=20)


def _model(seed=0):
    torch.manual_seed(seed)
    m = RNNT(TINY)
    rng = np.random.default_rng(seed)
    m.set_normalization(torch.from_numpy(rng.normal(0, 1, 240).astype(np.float32)),
                        torch.from_numpy(rng.uniform(0.5, 2, 240).astype(np.float32)))
    return m.eval()


def _calib(n=3, frames=30, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.normal(0, 1.5, (frames, 240)).astype(np.float32),
             rng.integers(1, TINY.vocab_size, 5).tolist()) for _ in range(n)]


def test_fake_quant_weight_is_ptq_grid():
    w = torch.randn(12, 30) * torch.linspace(0.01, 2, 12)[:, None]
    w[3] = 0.0
    for bits in (4, 8):
        q_ptq, s_ptq = ptq.quantize_weight(w.numpy(), bits)
        np.testing.assert_array_equal(qat.weight_ints(w, bits), q_ptq)
        fq = qat.fake_quant_weight(w, bits)
        np.testing.assert_allclose(fq.numpy(), q_ptq * s_ptq[:, None], rtol=1e-6, atol=1e-12)
        # straight-through: the gradient reaches the float weight unchanged
        w2 = w.clone().requires_grad_(True)
        (qat.fake_quant_weight(w2, bits) * torch.arange(30.0)).sum().backward()
        np.testing.assert_array_equal(w2.grad.numpy(), np.tile(np.arange(30.0), (12, 1)))


@pytest.mark.parametrize("bits", [4, 8])
def test_export_then_ptq_gives_identical_ints(bits):
    m = _model()
    qm = qat.QATRNNT(m, weight_bits=bits, mode="ste", act_scales=qat.calibrate(m, _calib()))
    want = {n: qat.weight_ints(p, bits) for n, p in qm.quantized_weights().items()}
    exported = qm.export_model()
    rec = recipe_mod.from_dict({"name": "t", "bits": bits})
    q = ptq.quantize(qat.numpy_model(exported), rec, _calib())
    got = {}
    for prefix, lstm in (("encoder", "encoder"), ("pred", "pred_lstm")):
        n_layers = TINY.encoder_layers if prefix == "encoder" else TINY.pred_layers
        for k in range(n_layers):
            got[f"{lstm}.weight_ih_l{k}"] = q.layers[f"{prefix}.l{k}"]["wx"]
            got[f"{lstm}.weight_hh_l{k}"] = q.layers[f"{prefix}.l{k}"]["wh"]
    for name in ("enc_proj", "pred_proj", "joint_out"):
        got[f"{name}.weight"] = q.layers[name]["w"]
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # the embedding is int8 per tensor in both
    emb_scale = exported.embed.weight.abs().max().item() / 127
    np.testing.assert_array_equal(q.layers["embed"]["table"],
                                  np.rint(exported.embed.weight.detach().numpy() / emb_scale))


def test_sine_regularizer_gradient_points_to_grid():
    w = torch.tensor([[1.0, 0.3, -0.52, 0.0, 0.11]], requires_grad=True)   # Δ = 1/127 (8 bits)
    step = 1.0 / 127
    r = w.detach() / step
    qat.sine_penalty(w, 8).backward()
    off = (r - torch.round(r))[0]
    g = w.grad[0]
    for j in range(5):
        if abs(off[j]) > 1e-3:   # descent (-g) moves toward the nearest grid point
            assert torch.sign(g[j]) == torch.sign(off[j]), (j, off[j], g[j])
    on_grid = torch.tensor([[1.0, -64 / 127, 3 / 127]])                    # Δ = 1/127
    assert qat.sine_penalty(on_grid, 8) < 1e-4
    half_way = torch.tensor([[1.0, -64.5 / 127, 3.5 / 127]])               # max (Δ) unchanged
    assert qat.sine_penalty(half_way, 8) == pytest.approx(2 / 3, abs=1e-3)


def test_regularizer_alone_moves_weights_onto_grid():
    m = _model(2)
    qm = qat.QATRNNT(m, weight_bits=4, mode="reg", act_quant=False, reg_weight=1.0)
    before = qm.grid_distance()
    assert 0.2 < before < 0.3        # random weights: ~uniform offsets
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(40):
        opt.zero_grad()
        qm.penalty().backward()
        opt.step()
    assert qm.grid_distance() < 0.5 * before
    # STE mode has no penalty
    assert float(qat.QATRNNT(m, 4, "ste", act_quant=False).penalty()) == 0.0


def test_fake_quant_network_tracks_integer_reference():
    from asr.quant.int_rnnt import IntRNNT

    m = _model(3)
    calib = _calib()
    qm = qat.QATRNNT(m, weight_bits=8, mode="ste", act_scales=qat.calibrate(m, calib))
    exported = qm.export_model()
    # PTQ of the exported (on-grid) model, calibrated on the same data as QAT's scales
    qat_scales = qat.calibrate(exported, calib)
    qm = qat.QATRNNT(exported, weight_bits=8, mode="ste", act_scales=qat_scales)
    q = ptq.quantize(qat.numpy_model(exported), recipe_mod.from_dict({"name": "t", "bits": 8}), calib)
    assert q.s_enc == pytest.approx(qat_scales["enc"])
    ir = IntRNNT(q)
    x = calib[0][0]
    enc_int, _ = ir.encode_int(q.quantize_input(x), ir.encoder_init())
    with torch.no_grad():
        enc_fq, _ = qm.encode(torch.from_numpy(x)[None])
    enc_fq_int = np.rint(enc_fq[0].numpy() / qat_scales["enc"]).astype(int)
    diff = np.abs(enc_fq_int - enc_int.astype(int))
    # LUT interpolation and the chip's two separate requantizations of Wx·x and Wh·h are not
    # modelled in the float fake-quant path: at most one int8 step apart, mostly identical.
    assert diff.max() <= 1 and np.mean(diff == 0) > 0.8, (diff.max(), np.mean(diff == 0))


def test_qat_forward_close_to_float_and_trains():
    from asr.model.loss import rnnt_loss

    m = _model(4)
    calib = _calib()
    qm = qat.QATRNNT(m, weight_bits=8, mode="ste", act_scales=qat.calibrate(m, calib))
    x = torch.from_numpy(np.stack([c[0] for c in calib]))
    lens = torch.full((3,), 30)
    y = torch.tensor([c[1] for c in calib])
    with torch.no_grad():
        lf, _ = m(x, lens, y)
        lq, _ = qm(x, lens, y)
    assert lq.shape == lf.shape
    assert float((lq - lf).abs().max()) < 0.05 * float(lf.abs().max()) + 0.05
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        logits, _ = qm(x, lens, y)
        loss = rnnt_loss(logits, y, lens, torch.full((3,), 5)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    hyps = qm.greedy(x, lens)
    assert len(hyps) == 3 and all(isinstance(t, int) for h in hyps for t in h)


def test_bad_qat_settings():
    m = _model()
    with pytest.raises(ConfigError, match="weight_bits"):
        qat.QATRNNT(m, weight_bits=6, act_quant=False)
    with pytest.raises(ConfigError, match="mode"):
        qat.QATRNNT(m, mode="lsq", act_quant=False)
    with pytest.raises(ConfigError, match="act_scales"):
        qat.QATRNNT(m)
    bi = RNNT(ModelConfig(encoder_layers=1, encoder_dim=8, bidirectional=True, pred_embed_dim=4,
                          pred_dim=8, joint_dim=8))
    with pytest.raises(ConfigError, match="bidirectional"):
        qat.QATRNNT(bi, act_quant=False)


def test_build_key_follows_config_and_init_model(tmp_path):
    from asr.train import compress_train as ct
    init = tmp_path / "init.npz"
    init.write_bytes(b"model one")
    cfg = tmp_path / "ft.toml"
    cfg.write_text(f'name = "pytest-ft"\ninit = "{init}"\n[compress]\nmethod = "finetune"\n')
    k1 = ct.build_key(cfg)
    assert ct.build_key(cfg) == k1                      # deterministic
    init.write_bytes(b"model two")                       # a new shipped model: stale
    k2 = ct.build_key(cfg)
    cfg.write_text(cfg.read_text() + "[train]\nmax_steps = 3\n")   # another config: stale
    assert len({k1, k2, ct.build_key(cfg)}) == 3
    assert ct.output_path(cfg) == ct.REPO_ROOT / "models" / "compress" / "pytest-ft" / "model.npz"
    assert not ct.is_current(cfg)
