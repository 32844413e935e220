"""asr.data: grammar, synthesis, augmentation, FSDD, and a tiny end-to-end corpus build."""
import collections
import json
import os
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from asr.data import augment as A
from asr.data import corpus, fsdd, grammar
from asr.text import encode, normalize
from azsim.errors import ConfigError
from azsim.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ grammar

def test_grammar_intents_and_texts():
    rng = np.random.default_rng(0)
    seen = collections.Counter()
    for _ in range(3000):
        text, intent, slots = grammar.sample(rng)
        assert text == normalize(text) and text
        assert all(i > 0 for i in encode(text))
        assert not any(ch.isdigit() for ch in text)
        assert isinstance(slots, dict)
        assert len(text.split()) <= 16  # short commands (2-5 s of speech)
        seen[intent] += 1
    assert len(grammar.INTENTS) >= 10
    assert set(seen) == set(grammar.INTENTS)


def test_grammar_slot_sizes_and_rare_names():
    lists = grammar.slot_lists()
    assert len(lists["contact"]) >= 300
    assert len(lists["first_name"]) >= 150 and len(lists["surname"]) >= 100
    assert len(lists["appliance"]) >= 24 and len(lists["room"]) >= 10
    assert len(lists["city"]) >= 30 and len(lists["artist"]) >= 30 and len(lists["song"]) >= 30
    assert any(" " in c for c in lists["contact"]) and any(" " not in c for c in lists["contact"])
    for vals in lists.values():
        for v in vals:
            encode(v)
    # Zipf-like: the top contact is common, many contacts are rare.
    rng = np.random.default_rng(1)
    counts = collections.Counter(grammar.zipf_choice(rng, lists["contact"]) for _ in range(20000))
    assert counts.most_common(1)[0][0] == lists["contact"][0]
    assert counts.most_common(1)[0][1] > 10 * 20000 / len(lists["contact"])  # 10x uniform
    rare = sum(1 for c in lists["contact"] if counts[c] <= 3)
    assert rare >= 30


def test_grammar_is_seeded():
    a = [grammar.sample(np.random.default_rng(5)) for _ in range(1)]
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    assert [grammar.sample(r1) for _ in range(50)] == [grammar.sample(r2) for _ in range(50)]
    assert a


def test_number_words():
    assert grammar.number_words(0) == "zero"
    assert grammar.number_words(17) == "seventeen"
    assert grammar.number_words(40) == "forty"
    assert grammar.number_words(125) == "one hundred twenty five"


# ------------------------------------------------------------------ synthesis

def test_synth_two_voices_non_silent_and_distinct():
    from asr.data.synth import SYNTH_RATE_HZ, Voice, available_variants, synthesize
    assert "m3" in available_variants() and "f2" in available_variants()
    a = synthesize("turn on the kitchen light", Voice("en-us", "m3", 160, 50))
    b = synthesize("turn on the kitchen light", Voice("en", "f2", 180, 70))
    for x in (a, b):
        assert x.dtype == np.float32 and 0.5 * SYNTH_RATE_HZ < x.shape[0] < 5 * SYNTH_RATE_HZ
        assert np.sqrt(np.mean(x ** 2)) > 0.01 and np.max(np.abs(x)) <= 1.0
    assert a.shape != b.shape or not np.allclose(a, b)


def test_synth_rejects_unknown_variant():
    from asr.data.synth import Voice, synthesize
    with pytest.raises(ValueError, match="variant"):
        synthesize("stop", Voice("en-us", "no_such_variant", 160, 50))


# ------------------------------------------------------------------ augmentation

def _speechlike(n=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * env * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1500 * t))
            + 0.01 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("kind", A.NOISE_TYPES)
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_add_noise_snr_measured(kind, snr_db):
    x = _speechlike() * 0.2  # low level: no clipping rescale, so y - x is exactly the noise
    rng = np.random.default_rng(3)
    noise = A.make_noise(kind, x.shape[0], rng, bank=[_speechlike(8000, 1), _speechlike(12000, 2)])
    y = A.add_noise(x, noise, snr_db)
    assert y.shape == x.shape
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert abs(measured - snr_db) < 0.05


def test_noise_is_seeded():
    a = A.make_noise("pink", 1000, np.random.default_rng(1))
    b = A.make_noise("pink", 1000, np.random.default_rng(1))
    assert np.array_equal(a, b)


def test_reverb_and_bandlimit_keep_length():
    x = _speechlike()
    r = A.reverberate(x, np.random.default_rng(0), 0.5)
    assert r.shape == x.shape and not np.allclose(r, x)
    assert abs(np.sqrt(np.mean(r ** 2)) - np.sqrt(np.mean(x ** 2))) < 1e-3
    h = A.room_impulse_response(np.random.default_rng(0), 0.5)
    assert h[0] == 1.0 and h.shape[0] == 8000
    # decays: the last 10% of the response is >= 40 dB below the first reflections
    assert np.sqrt(np.mean(h[-800:] ** 2)) < 0.01 * np.sqrt(np.mean(h[32:832] ** 2))
    w = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    b = A.band_limit_8k(w)
    assert b.shape == w.shape
    spec = np.abs(np.fft.rfft(b[1000:-1000])) ** 2
    f = np.fft.rfftfreq(14000, 1 / 16000)
    assert spec[f > 4300].mean() < 1e-3 * spec[f < 3500].mean()


def test_speed_perturb_lengths():
    x = _speechlike(16000)
    assert abs(A.speed_perturb(x, 1.1).shape[0] - 16000 / 1.1) <= 1
    assert abs(A.speed_perturb(x, 0.9).shape[0] - 16000 / 0.9) <= 1
    assert np.array_equal(A.speed_perturb(x, 1.0), x)


# ------------------------------------------------------------------ FSDD

def test_fsdd_split():
    items = fsdd.list_items()
    assert len(items) == 2000
    train, test = fsdd.split(items)
    assert len(test) == 4 * 10 * 5 and len(train) == 4 * 10 * 45
    assert {i.take for i in test} == set(range(5))
    assert {i.speaker for i in items} == {"jackson", "nicolas", "theo", "yweweler"}
    assert {i.text for i in test} == set(grammar.DIGIT_WORDS)


def test_fsdd_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("AZSIM_FSDD", str(tmp_path))
    assert fsdd.fsdd_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="AZSIM_FSDD"):
        fsdd.list_items()


# ------------------------------------------------------------------ corpus

def test_voice_pools_disjoint_families():
    for seed in range(5):
        pools = corpus.voice_pools(corpus.resolve_config({"seed": seed}))
        assert len(pools["test"]) == 10 and len(pools["dev"]) == 6
        fams = {k: {corpus.variant_family(v) for v in vs} for k, vs in pools.items()}
        assert not (fams["train"] & fams["test"]) and not (fams["train"] & fams["dev"])
        assert not (fams["dev"] & fams["test"])


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown key.*noise_prob"):
        corpus.resolve_config({"noise_prob": 0.5})
    with pytest.raises(ConfigError, match="p_noise = 1.5.*\\[0, 1\\]"):
        corpus.resolve_config({"p_noise": 1.5})
    with pytest.raises(ConfigError, match="n_train"):
        corpus.resolve_config({"n_train": -1})
    with pytest.raises(ConfigError, match="noise_types"):
        corpus.resolve_config({"noise_types": ["brown"]})
    assert corpus.config_hash(corpus.resolve_config({})) == corpus.config_hash(
        corpus.resolve_config({"seed": 0}))
    assert corpus.config_hash(corpus.resolve_config({"seed": 1})) != corpus.config_hash(
        corpus.resolve_config({"seed": 0}))


def test_shipped_data_section_is_valid():
    p = REPO / "configs" / "shipped.toml"
    if not p.exists():
        pytest.skip("configs/shipped.toml not present")
    corpus.resolve_config(tomllib.loads(p.read_text()).get("data", {}))


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    cfg = {"seed": 3, "n_train": 8, "n_dev": 3, "n_test": 4, "shard_size": 40, "fsdd_copies": 1,
           "p_noise": 1.0}
    cache = tmp_path_factory.mktemp("cache")
    # A mini FSDD (all speakers and digits, takes 0, 1 (test) and 5, 6 (train)) keeps this fast.
    mini = tmp_path_factory.mktemp("fsdd") / "recordings"
    mini.mkdir()
    for item in fsdd.list_items():
        if item.take in (0, 1, 5, 6):
            (mini / item.path.name).symlink_to(item.path)
    old_env = os.environ.get("AZSIM_FSDD")
    os.environ["AZSIM_FSDD"] = str(mini.parent)
    # Build one shard first, as an interrupted build would have, then let build() resume.
    full = corpus.resolve_config(cfg)
    d = cache / f"corpus-{corpus.config_hash(full)}"
    d.mkdir(parents=True)
    jobs = corpus._plan(full)
    corpus._run_job((jobs[0], full, corpus.voice_pools(full), str(d)))
    n_jobs = len(jobs)
    path = corpus.build(cfg, cache, workers=1, progress=False)
    yield path, cfg, n_jobs
    if old_env is None:
        os.environ.pop("AZSIM_FSDD", None)
    else:
        os.environ["AZSIM_FSDD"] = old_env


def test_corpus_subsets_and_manifest(tiny_corpus):
    path, cfg, n_jobs = tiny_corpus
    info = corpus.corpus_info(path)
    assert info["shards_built_this_run"] == n_jobs - 1  # the pre-built shard was reused
    subs = {s: corpus.load_subset(path, s) for s in corpus.SUBSETS}
    assert len(subs["dev"]) == 3 and len(subs["test_clean"]) == 4 and len(subs["test_noisy"]) == 4
    assert len(subs["test_fsdd"]) == 4 * 10 * 2
    assert len(subs["train"]) == 8 + 4 * 10 * 2
    for name, utts in subs.items():
        for u in utts[:20] + utts[-5:]:
            assert u.feats.dtype == np.float16 and u.feats.ndim == 2 and u.feats.shape[1] == 80
            assert u.path.is_file() and u.duration_s > 0.2 and u.text == normalize(u.text)
            for key in ("id", "path", "text", "voice", "duration_s", "intent", "snr_db", "source"):
                assert key in u.meta
    # test_noisy = test_clean's utterances at the configured SNR
    assert [u.text for u in subs["test_noisy"]] == [u.text for u in subs["test_clean"]]
    assert all(u.snr_db == 10.0 for u in subs["test_noisy"])
    assert all(u.snr_db is None for u in subs["test_clean"])
    assert all(u.snr_db in cfg.get("snr_db", corpus.DEFAULTS["snr_db"]) for u in subs["train"])
    assert {u.meta["slots"]["take"] for u in subs["test_fsdd"]} == {0, 1}
    assert {u.meta["slots"]["take"] for u in subs["train"] if u.meta["source"] == "fsdd"} == {5, 6}


def test_corpus_split_by_voice(tiny_corpus):
    path, _, _ = tiny_corpus
    variants = {s: {u.meta["variant"] for u in corpus.load_subset(path, s)} for s in corpus.SUBSETS}
    synth_train = {v for v in variants["train"] if not v.startswith("fsdd:")}
    assert not synth_train & variants["dev"]
    assert not synth_train & variants["test_clean"]
    assert not variants["dev"] & variants["test_clean"]
    pools = corpus.corpus_info(path)["pools"]
    assert synth_train <= set(pools["train"]) and variants["test_clean"] <= set(pools["test"])


def test_corpus_features_match_wav(tiny_corpus):
    from asr.audio import load_wav
    from asr.features import log_mel
    path, _, _ = tiny_corpus
    for s in ("train", "test_noisy", "test_fsdd"):
        u = corpus.load_subset(path, s)[0]
        ref = log_mel(*load_wav(u.path))
        assert ref.shape == u.feats.shape
        assert np.max(np.abs(ref - u.feats.astype(np.float32))) < 0.02  # float16 rounding


def test_corpus_reuse_is_instant(tiny_corpus):
    import time
    path, cfg, _ = tiny_corpus
    t0 = time.perf_counter()
    assert corpus.build(cfg, path.parent, workers=1, progress=False) == path
    assert time.perf_counter() - t0 < 1.0
    assert json.loads((path / "config.json").read_text())["seed"] == 3


def test_partial_build_makes_only_the_asked_subsets_and_full_build_reuses_them(tmp_path, monkeypatch):
    mini = tmp_path / "fsdd" / "recordings"
    mini.mkdir(parents=True)
    for item in fsdd.list_items():
        if item.take in (0, 5):
            (mini / item.path.name).symlink_to(item.path)
    monkeypatch.setenv("AZSIM_FSDD", str(mini.parent))
    cfg = {"seed": 4, "n_train": 2, "n_dev": 2, "n_test": 2, "shard_size": 40, "fsdd_copies": 1}
    cache = tmp_path / "cache"
    path = corpus.build(cfg, cache, workers=1, progress=False, subsets=["test_clean", "test_fsdd"])
    assert len(corpus.load_subset(path, "test_clean")) == 2
    assert len(corpus.load_subset(path, "test_noisy")) == 2  # same job, so it comes along
    assert len(corpus.load_subset(path, "test_fsdd")) == 4 * 10
    with pytest.raises(FileNotFoundError):
        corpus.load_subset(path, "train")
    assert not (path / "complete.json").exists()
    kept = sorted(p.name for p in (path / "shards").iterdir())
    # dev shard 0 is synthesized right after test shard 0 (one chain), so it comes along
    assert kept == ["dev_0000", "test_0000", "test_fsdd_0000"]
    # asking again for a subset already built is instant: nothing is synthesized
    assert corpus.build(cfg, cache, workers=1, progress=False, subsets=["test_fsdd"]) == path
    full = corpus.build(cfg, cache, workers=1, progress=False)
    assert full == path and corpus.corpus_info(path)["shards_built_this_run"] == 2  # train, fsdd train
    assert len(corpus.load_subset(path, "train")) == 2 + 4 * 10
    with pytest.raises(ConfigError, match="unknown subset"):
        corpus.build(cfg, cache, subsets=["tset"])


def test_synth_reset_restores_a_fresh_process_state():
    """eSpeak's output depends on what it synthesized before; reset() removes that history."""
    from asr.data import synth
    v = synth.Voice("en-GB-x-gbclan", "aunty", 186, 36)
    synth.reset()
    first = [synth.synthesize("go back", v) for _ in range(2)]
    synth.synthesize("call patricia in the kitchen", synth.Voice("en-US-nyc", "Hugo", 141, 39))
    assert not np.array_equal(first[0], synth.synthesize("go back", v))   # the history shows
    synth.reset()
    again = [synth.synthesize("go back", v) for _ in range(2)]
    for a, b in zip(first, again):
        assert np.array_equal(a, b)


def _assert_same_corpus(a: Path, b: Path):
    """Every record, feature matrix and WAV equal, except where a voice in
    synth.unstable_variants() speaks (its audio may differ between processes), and test_noisy's
    babble (its bank may hold such a voice). In the test shards (version 1's single random
    stream) an unstable utterance's length feeds the noise draws of the rest of its shard, so
    comparison of that shard stops there."""
    from asr.data import synth
    unstable = synth.unstable_variants()
    assert (a / "config.json").read_bytes() == (b / "config.json").read_bytes()
    compared = 0
    for subset in corpus.SUBSETS:
        ra, rb = (corpus.load_subset(d, subset) for d in (a, b))
        assert len(ra) == len(rb)
        stopped = set()
        for ua, ub in zip(ra, rb):
            shard = ua.meta["id"].rsplit("_", 1)[0]
            if shard in stopped:
                continue
            if ua.meta["variant"] in unstable:
                assert ua.text == ub.text and ua.meta["voice"] == ub.meta["voice"]
                if subset.startswith("test"):
                    stopped.add(shard)
                continue
            assert ua.meta == ub.meta
            if ua.meta.get("noise") == "babble" and subset == "test_noisy":
                continue
            assert np.array_equal(ua.feats, ub.feats)
            assert ua.path.read_bytes() == ub.path.read_bytes()
            compared += 1
    assert compared >= 30


def test_corpus_build_is_identical_whatever_the_workers_and_history(tmp_path, monkeypatch):
    """Two builds of one config write the same utterances, with 1 or 2 workers, after other
    synthesis in the calling process, and when resumed after a chain was interrupted half-way
    (the resumed build replays the chain's finished shard to reach the same synthesizer state)."""
    from asr.data import synth
    mini = tmp_path / "fsdd" / "recordings"
    mini.mkdir(parents=True)
    for item in fsdd.list_items():
        if item.take in (0, 5) and item.digit < 3:
            (mini / item.path.name).symlink_to(item.path)
    monkeypatch.setenv("AZSIM_FSDD", str(mini.parent))
    cfg = {"seed": 5, "n_train": 6, "n_dev": 4, "n_test": 4, "shard_size": 2, "fsdd_copies": 1,
           "p_noise": 1.0}
    a = corpus.build(cfg, tmp_path / "a", workers=2, progress=False)
    synth.synthesize("turn on the porch light", synth.Voice("en-us", "m3", 150, 50))
    b = corpus.build(cfg, tmp_path / "b", workers=1, progress=False)
    _assert_same_corpus(a, b)
    # interrupted: test shard 1 finished, dev shard 1 (same chain) not
    c = corpus.build(cfg, tmp_path / "c", workers=1, progress=False, subsets=["dev"])
    shutil.rmtree(c / "shards" / "dev_0001")
    corpus.build(cfg, tmp_path / "c", workers=1, progress=False)
    _assert_same_corpus(a, c)


def test_unstable_variants_are_the_breath_voices():
    from asr.data import synth
    unstable = synth.unstable_variants()
    assert {"f2", "f3", "f5", "Alicia", "sandro", "victor"} <= unstable
    assert not {"m3", "f1", "f4", "Hugo"} & unstable


def test_train_transcripts_equal_the_built_training_split(tiny_corpus):
    path, cfg, _ = tiny_corpus
    built = [json.loads(line) for line in (path / "train.jsonl").read_text().splitlines()]
    planned = corpus.train_transcripts(cfg)
    assert len(planned) == len(built)
    for p, r in zip(planned, built):
        assert p == {k: r[k] for k in p}
