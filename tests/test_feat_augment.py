"""Feature-domain training augmentation (asr/train/feat_augment.py)."""
import numpy as np
import pytest
import torch

from asr.features import LOG_FLOOR, N_MELS, STACK, log_mel, stack_frames
from asr.train.feat_augment import augment_batch
from asr.train.loop import TrainConfig
from azsim.errors import ConfigError


def _speechlike(seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def _batch():
    a = stack_frames(log_mel(_speechlike(1.0, 0), 16000))
    b = stack_frames(log_mel(_speechlike(0.6, 1), 16000))
    x = np.zeros((2, len(a), STACK * N_MELS), np.float32)
    x[0], x[1, :len(b)] = a, b
    return torch.from_numpy(x), torch.tensor([len(a), len(b)])


def _power(f):
    return np.maximum(np.exp(f.astype(np.float64)) - LOG_FLOOR, 0.0)


def test_gain_equals_scaling_the_waveform():
    x = _speechlike()
    cfg = TrainConfig.from_dict({"p_gain": 1.0, "gain_db": [-20.0, -20.0]})
    f = torch.from_numpy(stack_frames(log_mel(x, 16000)))[None]
    got = augment_batch(f, torch.tensor([f.shape[1]]), cfg, np.random.default_rng(0))[0].numpy()
    want = stack_frames(log_mel(x * 0.1, 16000))
    assert np.abs(got - want).max() < 1e-3
    assert np.abs(f[0].numpy() - want).mean() > 1.0  # a real change, not a no-op


def test_padding_untouched_and_deterministic():
    x, lens = _batch()
    cfg = TrainConfig.from_dict({"p_gain": 1.0, "p_vtlp": 1.0, "p_feat_noise": 1.0})
    a = augment_batch(x, lens, cfg, np.random.default_rng(5))
    b = augment_batch(x, lens, cfg, np.random.default_rng(5))
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()
    assert torch.equal(a[1, lens[1]:], x[1, lens[1]:])
    assert not torch.equal(a[0], x[0])
    assert torch.equal(augment_batch(x, lens, TrainConfig.from_dict({}), np.random.default_rng(5)), x)


def test_vtlp_identity_at_alpha_one():
    x, lens = _batch()
    cfg = TrainConfig.from_dict({"p_vtlp": 1.0, "vtlp_alpha": [1.0, 1.0]})
    y = augment_batch(x, lens, cfg, np.random.default_rng(0))
    assert torch.allclose(y[:, :lens[1]], x[:, :lens[1]], atol=1e-4)


def test_vtlp_moves_energy_up_for_alpha_above_one():
    x, lens = _batch()
    cfg = TrainConfig.from_dict({"p_vtlp": 1.0, "vtlp_alpha": [1.2, 1.2]})
    y = augment_batch(x, lens, cfg, np.random.default_rng(0))
    bins = np.arange(N_MELS)

    def centroid(f):
        p = _power(f[: int(lens[0])].reshape(-1, N_MELS)).sum(0)
        return (p * bins).sum() / p.sum()

    assert centroid(y[0].numpy()) > centroid(x[0].numpy()) + 1.0


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_noise_lands_at_the_requested_snr(snr_db):
    x, lens = _batch()
    cfg = TrainConfig.from_dict({"p_feat_noise": 1.0, "feat_snr_db": [snr_db, snr_db]})
    y = augment_batch(x, lens, cfg, np.random.default_rng(3))
    for b in range(2):
        n = int(lens[b])
        p0, p1 = _power(x[b, :n].numpy()), _power(y[b, :n].numpy())
        measured = 10 * np.log10(p0.sum() / (p1 - p0).sum())
        assert abs(measured - snr_db) < 0.05


@pytest.mark.parametrize("field,value", [
    ("gain_db", [0.0, -10.0]), ("gain_db", [-100.0, 0.0]), ("gain_db", [1.0]),
    ("vtlp_alpha", [0.9, "x"]), ("p_vtlp", 1.5), ("p_gain", True), ("feat_snr_db", 5.0)])
def test_bad_augmentation_config(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_dict({field: value})
