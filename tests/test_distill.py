"""Distillation: the widened bidirectional teacher starts as the student, the lattice KL
falls when the student learns from it, pseudo-labels come from the teacher, and the runner
trains a teacher and a student (with untranscribed audio) on a tiny synthetic corpus."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asr.model.loss import rnnt_loss
from asr.model.rnnt import RNNT, ModelConfig
from asr.train import distill
from asr.train.loop import collate, to_examples
from azsim.errors import ConfigError, ModelError

TINY = ModelConfig(encoder_layers=2, encoder_dim=16, pred_embed_dim=8, pred_dim=16, joint_dim=16)


class _Utt:
    def __init__(self, feats, text):
        self.feats, self.text = feats, text


def synthetic_corpus(n: int, seed: int):
    """Each character is a fixed random 80-dim 'spectrum' held for 6-9 frames, plus noise."""
    rng = np.random.default_rng(seed)
    patterns = {ch: np.random.default_rng(ord(ch)).normal(0, 3, 80) for ch in "abcd "}
    utts = []
    for _ in range(n):
        words = ["".join(rng.choice(list("abcd"), rng.integers(1, 4))) for _ in range(rng.integers(1, 3))]
        text = " ".join(words)
        frames = [np.tile(patterns[ch], (int(rng.integers(6, 10)), 1)) for ch in text]
        feats = np.concatenate(frames) + rng.normal(0, 0.5, (sum(len(f) for f in frames), 80))
        utts.append(_Utt(feats.astype(np.float16), text))
    return to_examples(utts)


def _student(seed=0):
    torch.manual_seed(seed)
    return RNNT(TINY).eval()


def _batch(examples):
    return collate(examples, np.arange(len(examples)))


def test_widened_teacher_starts_equal_to_student():
    s = _student()
    t = distill.widen_to_bidirectional(s)
    assert t.cfg.bidirectional and not s.cfg.bidirectional
    x, x_lens, y, y_lens = _batch(synthetic_corpus(4, 0))
    with torch.no_grad():
        ls, cs = s(x, x_lens, y)
        lt, ct = t(x, x_lens, y)
    # causal student vs bidirectional teacher: equal on every valid frame
    for b in range(len(x_lens)):
        n = int(x_lens[b])
        torch.testing.assert_close(lt[b, :n], ls[b, :n], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ct[b, :n], cs[b, :n], rtol=1e-5, atol=1e-5)
    # and it can learn: the backward direction is wired in through trainable (zeroed) weights
    loss = rnnt_loss(t(x, x_lens, y)[0], y, x_lens, y_lens).mean()
    loss.backward()
    assert t.enc_proj.weight.grad[:, TINY.encoder_dim:].abs().sum() > 0


def test_lattice_kd_zero_for_equal_and_masked():
    torch.manual_seed(0)
    a = torch.randn(2, 5, 4, 7)
    x_lens, y_lens = torch.tensor([5, 3]), torch.tensor([3, 1])
    assert float(distill.lattice_kd(a, a, x_lens, y_lens)) == pytest.approx(0.0, abs=1e-6)
    b = a.clone()
    b[1, 3:] += 5.0                # outside utterance 1's lattice (t >= 3): ignored
    b[1, :, 2:] -= 5.0             # u > 1: ignored
    assert float(distill.lattice_kd(b, a, x_lens, y_lens)) == pytest.approx(0.0, abs=1e-6)
    b[0, 0, 0, 0] += 3.0
    assert float(distill.lattice_kd(b, a, x_lens, y_lens)) > 0


def test_distillation_loss_decreases_in_a_few_steps():
    ex = synthetic_corpus(8, 1)
    x, x_lens, y, y_lens = _batch(ex)
    teacher = distill.widen_to_bidirectional(_student(1))
    with torch.no_grad():    # make the teacher differ from the student
        for p in teacher.parameters():
            p.add_(0.3 * torch.randn_like(p))
        t_logits, _ = teacher(x, x_lens, y)
    student = _student(2).train()
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    kds = []
    for _ in range(8):
        s_logits, _ = student(x, x_lens, y)
        kd = distill.lattice_kd(s_logits, t_logits, x_lens, y_lens)
        opt.zero_grad()
        kd.backward()
        opt.step()
        kds.append(float(kd.detach()))
    assert kds[-1] < 0.7 * kds[0], kds


def test_pseudo_labels_are_teacher_greedy():
    from asr.train.loop import greedy_batch

    t = distill.widen_to_bidirectional(_student(3))
    x, x_lens, _, _ = _batch(synthetic_corpus(3, 2))
    y, y_lens = distill.pseudo_labels(t, x, x_lens)
    hyps = greedy_batch(t, x, x_lens)
    assert y_lens.tolist() == [len(h) for h in hyps]
    for b, h in enumerate(hyps):
        assert y[b, :len(h)].tolist() == h


def _write_init(tmp_path, model):
    p = tmp_path / "init.pt"
    torch.save({"model_cfg": model.cfg.to_dict(), "model": model.state_dict()}, p)
    return p


def test_runner_teacher_then_student_with_untranscribed_audio(tmp_path):
    from asr.train import compress_train

    init = _write_init(tmp_path, _student(4))
    train_ex, dev_ex = synthetic_corpus(24, 3), synthetic_corpus(4, 4)
    common = ("[train]\nthreads = 1\nbatch_size = 8\nlr = 3e-3\nmax_steps = 4\nmax_minutes = 2.0\n"
              "n_dev_eval = 4\nlog_every = 2\n")
    (tmp_path / "teacher.toml").write_text(
        f'name = "t"\ninit = "{init}"\nbase_config = "none.toml"\n[compress]\nmethod = "teacher"\n' + common)
    s = compress_train.run(tmp_path / "teacher.toml", out_root=tmp_path / "models",
                           runs_root=tmp_path / "runs", train_examples=train_ex, dev_examples=dev_ex,
                           echo=False)
    assert s["steps"] == 4 and (tmp_path / "runs" / "t" / "teacher.pt").is_file()
    teacher = distill.load_teacher(tmp_path / "runs" / "t" / "teacher.pt")
    assert teacher.cfg.bidirectional
    (tmp_path / "student.toml").write_text(
        f'name = "s"\ninit = "{init}"\nbase_config = "none.toml"\n[compress]\nmethod = "distill"\n'
        f'teacher = "{tmp_path / "runs" / "t" / "teacher.pt"}"\nunlabelled_fraction = 0.5\n' + common)
    s = compress_train.run(tmp_path / "student.toml", out_root=tmp_path / "models",
                           runs_root=tmp_path / "runs", train_examples=train_ex, dev_examples=dev_ex,
                           echo=False)
    assert s["steps"] == 4 and "dev_wer_end" in s
    assert (tmp_path / "models" / "s" / "model.npz").is_file()
    summary = json.loads((tmp_path / "models" / "s" / "summary.json").read_text())
    assert summary["compress"]["unlabelled_fraction"] == 0.5
    log = (tmp_path / "runs" / "s" / "log.txt").read_text()
    assert " kd " in log


def test_distill_config_errors(tmp_path):
    from asr.train import compress_train

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[compress]\nmethod = "distill"\n')
    with pytest.raises(ConfigError, match="teacher"):
        compress_train.load_config(bad)
    bad.write_text('name = "x"\n[compress]\nmethod = "qat"\nunlabelled_fraction = 0.3\n')
    with pytest.raises(ConfigError, match="unlabelled_fraction"):
        compress_train.load_config(bad)
    bad.write_text('name = "x"\n[compress]\nmethod = "qat"\nweight_bits = 6\n')
    with pytest.raises(ConfigError, match="weight_bits"):
        compress_train.load_config(bad)
    bad.write_text('name = "x"\n[compress]\nmethod = "prune"\n')
    with pytest.raises(ConfigError, match="method"):
        compress_train.load_config(bad)
    bad.write_text('name = "x"\n[train]\nlr = "fast"\n')
    with pytest.raises(ConfigError, match="lr"):
        compress_train.load_config(bad)
    with pytest.raises(ModelError, match="teacher checkpoint not found"):
        distill.load_teacher(tmp_path / "nope.pt")
