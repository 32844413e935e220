"""Training loop on a tiny synthetic corpus: loss drops, resume is exact, seeds are honoured."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from asr.model.loss import rnnt_loss
from asr.model.rnnt import ModelConfig
from asr.train.loop import (TrainConfig, collate, greedy_batch, load_config, make_batches,
                            to_examples, train)
from azsim.errors import ConfigError

TINY = ModelConfig(encoder_layers=1, encoder_dim=32, pred_embed_dim=8, pred_dim=16, joint_dim=24)


@dataclass
class Utt:
    feats: np.ndarray
    text: str


def synthetic_corpus(n: int, seed: int) -> list[Utt]:
    """Each character is a fixed random 80-dim 'spectrum' held for 6-9 frames, plus noise."""
    rng = np.random.default_rng(seed)
    patterns = {ch: np.random.default_rng(ord(ch)).normal(0, 3, 80) for ch in "abcd "}
    utts = []
    for _ in range(n):
        words = ["".join(rng.choice(list("abcd"), rng.integers(1, 4))) for _ in range(rng.integers(1, 3))]
        text = " ".join(words)
        frames = [np.tile(patterns[ch], (int(rng.integers(6, 10)), 1)) for ch in text]
        feats = np.concatenate(frames) + rng.normal(0, 0.5, (sum(len(f) for f in frames), 80))
        utts.append(Utt(feats.astype(np.float16), text))
    return utts


def _cfg(**kw) -> TrainConfig:
    base = dict(seed=0, threads=1, batch_size=8, lr=5e-3, warmup_steps=5, max_minutes=100.0,
                max_steps=40, eval_every=1000, checkpoint_every=1000, n_dev_eval=8,
                spec_time_masks=0, spec_freq_masks=0, log_every=1000)
    base.update(kw)
    return TrainConfig(**base)


def _mean_loss(model, examples) -> float:
    x, x_lens, y, y_lens = collate(examples, np.arange(len(examples)))
    with torch.no_grad():
        logits, _ = model(x, x_lens, y)
        return float(rnnt_loss(logits, y, x_lens, y_lens).mean())


@pytest.fixture(scope="module")
def corpus():
    return to_examples(synthetic_corpus(48, 0)), to_examples(synthetic_corpus(8, 1))


def test_few_steps_lower_the_loss(corpus, tmp_path):
    train_ex, dev_ex = corpus
    model0, _ = train(TINY, _cfg(max_steps=1, lr=1e-9), train_ex, dev_ex, tmp_path / "a", resume=False)
    before = _mean_loss(model0, dev_ex)
    model, summary = train(TINY, _cfg(max_steps=40), train_ex, dev_ex, tmp_path / "b", resume=False)
    after = _mean_loss(model, dev_ex)
    assert summary["steps"] == 40
    assert after < 0.7 * before, (before, after)


def test_resume_continues_the_same_run(corpus, tmp_path):
    train_ex, dev_ex = corpus
    straight, s1 = train(TINY, _cfg(max_steps=10), train_ex, dev_ex, tmp_path / "straight", resume=False)
    run = tmp_path / "split"
    _, s_half = train(TINY, _cfg(max_steps=10), train_ex, dev_ex, run, resume=False, stop_at_step=6)
    assert s_half["steps"] == 6 and (run / "ckpt.pt").exists()
    resumed, s2 = train(TINY, _cfg(max_steps=10), train_ex, dev_ex, run, resume=True)
    assert s2["steps"] == 10
    assert "resumed from" in (run / "train_log.txt").read_text()
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_same_seed_same_first_loss(corpus, tmp_path):
    train_ex, dev_ex = corpus
    first = []
    for i, seed in enumerate((3, 3, 4)):
        _, s = train(TINY, _cfg(max_steps=1, seed=seed), train_ex, dev_ex, tmp_path / str(i), resume=False)
        first.append(s["history"][0]["first_loss"])
    assert first[0] == first[1]
    assert first[0] != first[2]


def test_batches_cover_every_utterance_once():
    lengths = np.random.default_rng(0).integers(10, 200, 101)
    batches = make_batches(lengths, _cfg(batch_size=8), np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(101))
    capped = make_batches(lengths, _cfg(batch_size=64, max_frames_per_batch=800), np.random.default_rng(1))
    assert all(len(b) == 1 or len(b) * lengths[b].max() <= 800 for b in capped)
    ordered = make_batches(lengths, _cfg(batch_size=8), np.random.default_rng(1), shortest_first=True)
    maxima = [lengths[b].max() for b in ordered]
    assert maxima[0] < np.median(maxima) < maxima[-1]


def test_greedy_decoder_returns_token_lists(corpus, tmp_path):
    train_ex, dev_ex = corpus
    model, _ = train(TINY, _cfg(max_steps=2), train_ex, dev_ex, tmp_path, resume=False)
    x, x_lens, _, _ = collate(dev_ex, np.arange(4))
    hyps = greedy_batch(model, x, x_lens)
    assert len(hyps) == 4 and all(all(1 <= t < 29 for t in h) for h in hyps)


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[data]\n[model]\n")
    with pytest.raises(ConfigError, match=r"\[train\]"):
        load_config(bad)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": 0})
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_shipped_config_parses():
    from pathlib import Path
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "shipped.toml")
    ModelConfig.from_dict(cfg["model"])
    TrainConfig.from_dict(cfg["train"])
    assert cfg["name"] == "shipped"
