"""Torch RNNT -> .npz -> NumpyRNNT: same log-probs, streaming equals whole, corrupt files rejected."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from asr.model.export import export_npz
from asr.model.numpy_rnnt import NumpyRNNT
from asr.model.rnnt import ModelConfig, RNNT
from azsim.errors import ConfigError, ModelError

SMALL = ModelConfig(encoder_layers=2, encoder_dim=48, pred_embed_dim=16, pred_dim=32, joint_dim=40)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = RNNT(SMALL).eval()
    rng = np.random.default_rng(0)
    # Non-trivial normalization so a numpy path that skipped it would not match.
    model.set_normalization(torch.tensor(rng.normal(-5, 1, 240)), torch.tensor(rng.uniform(0.5, 3, 240)))
    path = export_npz(model, tmp_path_factory.mktemp("m") / "model.npz")
    return model, path


def _features(rng, n_t):
    return (rng.normal(-5, 2, (n_t, 240))).astype(np.float32)


def test_numpy_matches_torch_log_probs(exported):
    model, path = exported
    np_model = NumpyRNNT.load(path)
    rng = np.random.default_rng(1)
    x = _features(rng, 57)
    tokens = [int(t) for t in rng.integers(1, 29, 12)]
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(x)[None], torch.tensor([57]), torch.tensor([tokens]))
        ref = torch.log_softmax(logits, dim=-1)[0].numpy()  # (T, U+1, V)

    enc, _ = np_model.encode(x, np_model.encoder_init())
    preds = []
    state = np_model.predictor_init()
    for tok in [np_model.blank] + tokens:
        p, state = np_model.predict(tok, state)
        preds.append(p)
    got = np_model.joint(enc[:, None, :], np.stack(preds)[None, :, :])
    assert got.shape == ref.shape == (57, 13, 29)
    assert np.max(np.abs(got - ref)) < 1e-4


def test_chunked_encode_equals_whole(exported):
    _, path = exported
    m = NumpyRNNT.load(path)
    x = _features(np.random.default_rng(2), 50)
    whole, whole_state = m.encode(x, m.encoder_init())
    state = m.encoder_init()
    parts = []
    for a, b in ((0, 1), (1, 8), (8, 9), (9, 33), (33, 50)):
        enc, state = m.encode(x[a:b], state)
        parts.append(enc)
    assert np.allclose(np.concatenate(parts), whole, atol=1e-6)
    for (h1, c1), (h2, c2) in zip(state, whole_state):
        assert np.allclose(h1, h2, atol=1e-6) and np.allclose(c1, c2, atol=1e-6)


def test_states_are_not_mutated(exported):
    _, path = exported
    m = NumpyRNNT.load(path)
    s0 = m.predictor_init()
    p1, s1 = m.predict(0, s0)
    p1b, _ = m.predict(0, s0)
    assert np.array_equal(p1, p1b) and np.all(s0[0][0] == 0)


def test_predict_batch_equals_predict_per_hypothesis(exported):
    _, path = exported
    m = NumpyRNNT.load(path)
    rng = np.random.default_rng(4)
    seqs = [list(rng.integers(1, m.vocab_size, n)) for n in (3, 5, 1)]
    states = []
    for s in seqs[:2] + [seqs[2]]:
        st = m.predictor_init()
        for t in s[:-1]:
            st = m.predict(int(t), st)[1]
        states.append(st)
    batch = tuple((np.stack([s[i][0] for s in states]), np.stack([s[i][1] for s in states]))
                  for i in range(len(states[0])))
    out, new = m.predict_batch([s[-1] for s in seqs], batch)
    for b, (s, st) in enumerate(zip(seqs, states)):
        want, want_state = m.predict(int(s[-1]), st)
        assert np.allclose(out[b], want, atol=1e-5)
        for (h, c), (wh, wc) in zip(new, want_state):
            assert np.allclose(h[b], wh, atol=1e-5) and np.allclose(c[b], wc, atol=1e-5)
    with pytest.raises(ValueError, match="token outside"):
        m.predict_batch([m.vocab_size], batch)


def test_interface_attributes(exported):
    _, path = exported
    m = NumpyRNNT.load(path)
    assert m.vocab_size == 29 and m.blank == 0 and m.vocab[1] == " "
    enc, _ = m.encode(np.zeros((3, 240), np.float32), m.encoder_init())
    assert enc.shape == (3, SMALL.joint_dim) and enc.dtype == np.float32
    lp = m.joint(enc, m.predict(0, m.predictor_init())[0])
    assert lp.shape == (3, 29)
    assert np.allclose(np.exp(lp).sum(-1), 1, atol=1e-5)


def _rewrite(src, dst, drop=(), replace=None):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    arrays.update(replace or {})
    np.savez(dst, **arrays)
    return dst


def test_corrupt_files_raise_model_error(exported, tmp_path):
    _, path = exported
    with pytest.raises(ModelError, match="not found"):
        NumpyRNNT.load(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ModelError, match="junk.npz"):
        NumpyRNNT.load(junk)
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(ModelError, match="trunc.npz"):
        NumpyRNNT.load(trunc)
    with pytest.raises(ModelError, match="joint_out.weight"):
        NumpyRNNT.load(_rewrite(path, tmp_path / "a.npz", drop=("joint_out.weight",)))
    with pytest.raises(ModelError, match="feat_std"):
        NumpyRNNT.load(_rewrite(path, tmp_path / "b.npz", drop=("feat_std",)))
    with pytest.raises(ModelError, match="enc_proj.weight.*shape"):
        NumpyRNNT.load(_rewrite(path, tmp_path / "c.npz",
                                replace={"enc_proj.weight": np.zeros((3, 3), np.float32)}))
    with pytest.raises(ModelError, match="config_json"):
        NumpyRNNT.load(_rewrite(path, tmp_path / "d.npz", replace={"config_json": np.array("{oops")}))
    bad = tmp_path / "e.npz"
    nan = np.load(path)["embed.weight"].copy()
    nan[0, 0] = np.nan
    with pytest.raises(ModelError, match="embed.weight.*NaN"):
        NumpyRNNT.load(_rewrite(path, bad, replace={"embed.weight": nan}))
    cfg = json.loads(str(np.load(path)["config_json"]))
    cfg["encoder_layers"] = 3
    with pytest.raises(ModelError, match="encoder.weight_ih_l2"):
        NumpyRNNT.load(_rewrite(path, tmp_path / "f.npz", replace={"config_json": np.array(json.dumps(cfg))}))
    assert zipfile.is_zipfile(path)


def test_model_config_validation():
    with pytest.raises(ConfigError, match="encoder_dim"):
        ModelConfig.from_dict({"encoder_dim": 0})
    with pytest.raises(ConfigError, match="unknown"):
        ModelConfig.from_dict({"encoder_size": 10})
    assert ModelConfig.from_dict({"encoder_dim": 64}).encoder_dim == 64


def test_bidirectional_teacher_runs_but_is_not_exported(tmp_path):
    cfg = ModelConfig(encoder_layers=1, encoder_dim=16, pred_dim=16, pred_embed_dim=8, joint_dim=8,
                      bidirectional=True)
    model = RNNT(cfg)
    logits, ctc = model(torch.zeros(2, 5, 240), torch.tensor([5, 3]), torch.ones(2, 2, dtype=torch.long))
    assert logits.shape == (2, 5, 3, 29) and ctc.shape == (2, 5, 29)
    with pytest.raises(ValueError):
        export_npz(model, tmp_path / "t.npz")
