"""Neural diffs: hashes, payload round trips, exact application, bad diff files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from asr import text as asr_text
from asr.diff import format as F
from asr.diff.chip import apply_cost, touched_bursts
from asr.diff.hashing import bucket_and_sign
from asr.diff.train import (DiffTrainConfig, finetune_full, from_torch, keep_fraction_at,
                            target_names, temperature_at, train_hash_diff, train_sparse_diff)
from asr.model.rnnt import RNNT, ModelConfig
from azsim.errors import FormatError, ModelError

TINY = dict(input_dim=240, encoder_layers=1, encoder_dim=16, pred_embed_dim=8, pred_dim=16,
            pred_layers=1, joint_dim=12)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    model = RNNT(cfg)
    cfg_d = cfg.to_dict()
    base = from_torch(model, {}, target_names(cfg_d) + ["feat_mean", "feat_std"])
    return base, cfg_d


@pytest.fixture(scope="module")
def examples():
    from asr.train.loop import Example
    rng = np.random.default_rng(0)
    out = []
    for text in ("call ingrid", "ring rupert", "text magnus hello", "phone sigrid"):
        feats = rng.normal(0, 1, (12, 240)).astype(np.float16)
        out.append(Example(feats, np.asarray(asr_text.encode(text), np.int64), text))
    return out


def _snapshot(d):
    return {k: np.array(v, copy=True) for k, v in d.items()}


def _same(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


# --- hashes ------------------------------------------------------------------------------------

def test_hash_determinism_and_range():
    i1, s1 = bucket_and_sign(10_000, 257, seed=42)
    i2, s2 = bucket_and_sign(10_000, 257, seed=42)
    i3, s3 = bucket_and_sign(10_000, 257, seed=43)
    assert np.array_equal(i1, i2) and np.array_equal(s1, s2)
    assert not np.array_equal(i1, i3) and not np.array_equal(s1, s3)
    assert i1.min() >= 0 and i1.max() < 257
    assert set(np.unique(s1)) == {-1.0, 1.0}
    # Buckets and signs are close to uniform (chi-square-like loose bounds).
    counts = np.bincount(i1, minlength=257)
    assert counts.min() > 10_000 / 257 * 0.4 and counts.max() < 10_000 / 257 * 1.8
    assert abs(float(s1.mean())) < 0.05
    # A prefix does not depend on n: the device can hash any slice on its own.
    i4, s4 = bucket_and_sign(100, 257, seed=42)
    assert np.array_equal(i4, i1[:100]) and np.array_equal(s4, s1[:100])


# --- payload round trips -----------------------------------------------------------------------

def test_sparse_payload_round_trip(tiny):
    base, cfg = tiny
    rng = np.random.default_rng(1)
    tensors = []
    for n in target_names(cfg):
        q = rng.integers(-127, 128, base[n].shape).astype(np.int8)
        q[rng.random(q.shape) < 0.9] = 0
        tensors.append(F.SparseTensor(n, base[n].shape, float(np.float32(0.01)), q))
    diff = F.SparseDiff(F.model_hash(base), tensors)
    data = F.encode_diff(diff)
    back = F.decode_diff(data)
    assert back.base_hash == diff.base_hash
    for a, b in zip(diff.tensors, back.tensors):
        assert a.name == b.name and a.shape == b.shape and a.scale == b.scale
        assert np.array_equal(a.q, b.q)
        assert b.fmt in F.SPARSE_FORMATS
    # 90% zeros: a sparse format must beat one byte per value.
    n_total = sum(base[n].size for n in target_names(cfg))
    assert len(data) < 0.5 * n_total


def test_hash_payload_round_trip_and_size(tiny):
    base, cfg = tiny
    vals = np.random.default_rng(2).integers(-127, 128, 300).astype(np.int8)
    targets = [(n, base[n].shape) for n in target_names(cfg)]
    diff = F.HashDiff(F.model_hash(base), 123456789, 0.002, vals, targets)
    data = F.encode_diff(diff)
    back = F.decode_diff(data)
    assert back.seed == 123456789 and back.k == 300 and np.array_equal(back.values, vals)
    assert back.targets == targets and back.scale == np.float32(0.002)
    # Payload: K values + seed + names; independent of the model's size.
    assert len(data) < F.HEADER_BYTES + 300 + 20 + sum(len(n) + 12 for n, _ in targets) + 20


def test_apply_sparse_is_base_plus_scaled_q(tiny):
    base, cfg = tiny
    n = target_names(cfg)[0]
    q = np.zeros(base[n].shape, np.int8)
    q.flat[[0, 5, 17]] = [3, -127, 1]
    diff = F.SparseDiff(F.model_hash(base), [F.SparseTensor(n, base[n].shape, 0.5, q)])
    new = F.apply_diff(base, F.decode_diff(F.encode_diff(diff)))
    d = new[n] - base[n]
    assert np.count_nonzero(d) == 3
    assert np.allclose(d.flat[[0, 5, 17]], [1.5, -63.5, 0.5])
    for other in target_names(cfg)[1:]:
        assert np.array_equal(new[other], base[other])


# --- training reproduces exactly ---------------------------------------------------------------

def test_sparse_diff_reproduces_trained_model(tiny, examples, tmp_path):
    base, cfg = tiny
    before = _snapshot(base)
    tc = DiffTrainConfig(steps=4, batch_size=4, lr=1e-2, replay_fraction=0.0, budget_fraction=0.1)
    diff, trained, info = train_sparse_diff(base, cfg, examples, [], tc)
    assert _same(base, before)
    size = F.save_diff(diff, tmp_path / "u.azdiff")
    assert size == info["payload_bytes"] <= info["budget_bytes"]
    applied = F.apply_diff_file(base, tmp_path / "u.azdiff")
    assert _same(applied, trained)             # bit for bit
    changed = sum(np.count_nonzero(trained[n] != base[n]) for n in target_names(cfg))
    assert 0 < changed <= info["nnz"] < info["n_params"]


def test_hash_diff_reproduces_trained_model(tiny, examples, tmp_path):
    base, cfg = tiny
    tc = DiffTrainConfig(steps=3, batch_size=4, replay_fraction=0.0, hash_k=64, hash_lr=1e-2)
    diff, trained, info = train_hash_diff(base, cfg, examples, [], tc)
    F.save_diff(diff, tmp_path / "h.azdiff")
    applied = F.apply_diff_file(base, tmp_path / "h.azdiff")
    assert _same(applied, trained)
    assert diff.k == 64 and np.count_nonzero(diff.values) > 0
    # Every weight in a nonzero bucket moves: a hash diff touches (nearly) all weights.
    changed = sum(np.count_nonzero(trained[n] != base[n]) for n in target_names(cfg))
    assert changed > 0.5 * info["n_params"]


def test_full_finetune_lowers_loss(tiny, examples):
    from asr.diff.train import _loss, to_torch
    from asr.train.loop import collate
    base, cfg = tiny
    tc = DiffTrainConfig(steps=8, batch_size=4, lr=1e-2, replay_fraction=0.0)
    new = finetune_full(base, cfg, examples, [], tc)
    batch = collate(examples, range(4))
    with torch.no_grad():
        l0 = float(_loss(to_torch(base, cfg), batch))
        l1 = float(_loss(to_torch(new, cfg), batch))
    assert l1 < l0


def test_schedules():
    assert keep_fraction_at(0, 100, 0.1, 0.7) == pytest.approx(1.0)
    assert keep_fraction_at(70, 100, 0.1, 0.7) == pytest.approx(0.1)
    assert keep_fraction_at(100, 100, 0.1, 0.7) == pytest.approx(0.1)
    ks = [keep_fraction_at(s, 100, 0.1, 0.7) for s in range(101)]
    assert all(a >= b for a, b in zip(ks, ks[1:]))
    assert temperature_at(0, 50, 1.0, 0.01) == pytest.approx(1.0)
    assert temperature_at(49, 50, 1.0, 0.01) == pytest.approx(0.01)


# --- bad diff files ----------------------------------------------------------------------------

@pytest.fixture()
def good_file(tiny, tmp_path):
    base, cfg = tiny
    n = target_names(cfg)[0]
    q = np.zeros(base[n].shape, np.int8)
    q.flat[:10] = 7
    path = tmp_path / "good.azdiff"
    F.save_diff(F.SparseDiff(F.model_hash(base), [F.SparseTensor(n, base[n].shape, 0.1, q)]), path)
    return path


def test_wrong_base_hash_rejected_base_untouched(tiny, good_file):
    base, cfg = tiny
    other = _snapshot(base)
    other[target_names(cfg)[1]].flat[0] += 1.0
    before = _snapshot(other)
    with pytest.raises(ModelError, match="base_sha256"):
        F.apply_diff_file(other, good_file)
    assert _same(other, before)


@pytest.mark.parametrize("cut", [0, 5, F.HEADER_BYTES - 1, F.HEADER_BYTES + 3, -1])
def test_truncated_file_rejected(tiny, good_file, tmp_path, cut):
    base, _ = tiny
    before = _snapshot(base)
    data = good_file.read_bytes()
    bad = tmp_path / "bad.azdiff"
    bad.write_bytes(data[:cut] if cut >= 0 else data[:-1])
    with pytest.raises(FormatError, match="bad.azdiff"):
        F.apply_diff_file(base, bad)
    assert _same(base, before)


def test_corrupt_and_foreign_files_rejected(tiny, good_file, tmp_path):
    base, _ = tiny
    data = bytearray(good_file.read_bytes())
    flipped = bytearray(data)
    flipped[-2] ^= 0x40
    (tmp_path / "flip.azdiff").write_bytes(bytes(flipped))
    with pytest.raises(FormatError, match="payload_sha256"):
        F.apply_diff_file(base, tmp_path / "flip.azdiff")
    (tmp_path / "magic.azdiff").write_bytes(b"PK\x03\x04" + bytes(data[4:]))
    with pytest.raises(FormatError, match="magic"):
        F.apply_diff_file(base, tmp_path / "magic.azdiff")
    kind = bytearray(data)
    kind[8] = 9
    (tmp_path / "kind.azdiff").write_bytes(bytes(kind))
    with pytest.raises(FormatError, match="kind"):
        F.apply_diff_file(base, tmp_path / "kind.azdiff")
    with pytest.raises(ModelError, match="not found"):
        F.apply_diff_file(base, tmp_path / "missing.azdiff")


def test_diff_for_wrong_architecture_rejected(tiny):
    base, cfg = tiny
    n = target_names(cfg)[0]
    q = np.zeros((3, 3), np.int8)
    diff = F.SparseDiff(F.model_hash(base), [F.SparseTensor(n, (3, 3), 0.1, q)])
    before = _snapshot(base)
    with pytest.raises(ModelError, match="shape"):
        F.apply_diff(base, F.decode_diff(F.encode_diff(diff)))
    assert _same(base, before)


# --- chip cost -----------------------------------------------------------------------------------

def test_touched_bursts_and_apply_cost():
    from azsim import hw as azhw
    m1 = np.zeros(200, bool)
    m1[[0, 1, 63, 64, 190]] = True          # bursts 0, 1, 2 (one run)
    m2 = np.zeros(100, bool)
    m2[99] = True                           # global offset 299 -> burst 4 (second run)
    assert touched_bursts([m1, m2], 64) == (4, 2)
    assert touched_bursts([np.zeros(10, bool)], 64) == (0, 0)
    h = azhw.load("default")
    c = apply_cost([m1, m2], payload_bytes=100, hw=h)
    assert c["offchip_write_bytes"] == 4 * 64
    assert c["offchip_read_bytes"] == 128 + 4 * 64
    full = apply_cost([np.ones(300, bool)], payload_bytes=300, hw=h)
    assert full["offchip_write_bytes"] == 5 * 64 and c["apply_ms"] > 0
    # bytes / (8 B/cycle) + one request latency (80 cycles) for the payload and two per run
    assert full["apply_ms"] == pytest.approx(1e3 * ((320 + 320 + 320) / 8 + 3 * 80) / 800e6)


def test_experiment_cli_rejects_bad_options(capsys):
    from azsim.cli import main
    assert main(["experiment", "diffs", "--quick", "--updates", "0"]) == 2
    assert "--updates" in capsys.readouterr().err
    assert main(["experiment", "diffs", "--quick", "--budget", "2"]) == 2
    assert "--budget" in capsys.readouterr().err
    assert main(["experiment", "diffs", "--quick", "--medium"]) == 2
    assert "--medium" in capsys.readouterr().err
    assert main(["experiment", "diffs", "--quick", "--prune-end", "0"]) == 2
    assert "--prune-end" in capsys.readouterr().err


def test_diffs_experiment_resumes_finished_updates(tmp_path):
    """A longer run reuses a shorter run's updates (rows and the lineages' models) and gets the
    same numbers as a run from scratch; --fresh redoes everything."""
    from corpus_helpers import fake_corpus
    from asr.experiments import diffs as D
    texts = ["call mom", "turn on the lights", "stop", "play music"]
    corpus = fake_corpus(tmp_path, {"train": texts, "test_clean": texts[:2]})
    small = {"n_old": 4, "n_test": 2, "shift_train": 2, "shift_test": 2, "steps": 1, "batch_size": 2}
    D.run(sizes=small, updates=1, fresh=True, progress=False, corpus=corpus)
    resumed = D.run(sizes=small, updates=2, progress=False, corpus=corpus)
    assert resumed["resumed"] == ["1-sparse", "1-hash", "1-full"]
    assert (tmp_path / "runs").is_dir()
    scratch = D.run(sizes=small, updates=2, fresh=True, progress=False, corpus=corpus)
    assert scratch["resumed"] == []
    keys = ("update", "method", "payload_bytes", "changed_weights", "wer_new", "wer_seen", "wer_orig")
    assert ([[r[k] for k in keys] for r in resumed["rows"]]
            == [[r[k] for k in keys] for r in scratch["rows"]])
