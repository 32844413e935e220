"""Build, cache and load the training/evaluation corpus.

`build(data_cfg, cache_dir)` makes (or reuses) `<cache_dir>/corpus-<hash>/`, where the hash
covers the data config merged with DEFAULTS and CORPUS_VERSION. Subsets:

  train       synthesized commands, train voice pool, augmented; plus FSDD takes 5-49 (augmented)
  dev         synthesized commands, dev voice pool, clean
  test_clean  synthesized commands, test voice pool (never in train/dev), clean
  test_noisy  the same test utterances with noise at `test_snr_db` (10 dB)
  test_fsdd   FSDD takes 0-4 of the 4 speakers (the original recordings)

The split is by voice *variant*: every eSpeak variant (m1, f3, klatt2, ...) belongs to exactly
one pool, and families of near-identical variants (klatt..klatt6) stay together; all 8 English
bases (accents) are shared. A voice is (base, variant, rate, pitch).

Per subset the corpus directory holds:
  <subset>.jsonl         one JSON object per utterance (id, path, text, voice, duration_s,
                         intent, slots, snr_db, noise, aug, source); `path` is relative to the
                         corpus directory for generated WAVs, absolute for FSDD originals;
  <subset>.feats.npy     float16 (sum T, 80) log-mel frames of all utterances, concatenated;
  <subset>.offsets.npy   int64 (N + 1,): utterance i is feats[offsets[i]:offsets[i+1]].
The features are computed from the 16-bit samples stored in the WAV, so
asr.features.log_mel(*load_wav(path)) reproduces them (to float16 rounding).

Deterministic from data_cfg['seed']: every build of a config writes the same transcripts,
voices and augmentation choices, whatever the number of workers or the order shards finish in,
and the same audio except for a few voices (below). eSpeak NG's output depends on what it
synthesized before in the same process (asr.data.synth), so shards are grouped into *chains*
(`_chains`) and each chain starts from a freshly reset synthesizer: test shard k and dev shard
k form one chain (the order corpus version 1 happened to use, which keeps its dev set byte for
byte and its test texts), every other shard is a chain of its own. Training transcripts and
voices come from their own random stream, apart from audio and augmentation, so
`train_transcripts(cfg)` lists them without synthesizing anything (the biasing experiment
reads only these); each training utterance's gain and augmentation has a stream of its own.

The few voices: those in `synth.unstable_variants()` (breath noise; 8 of the 71 training
variants, 1 of the 10 test variants, none of the dev ones) sound slightly different from one
process to the next, whatever the history. Their utterances keep their texts and lengths but
not their exact samples between builds: in the default corpus the 47 test_clean utterances in
the test voice `sandro`, and test_noisy's babble-noised utterances, whose babble bank
(version 1's) draws training voices. The training split's babble bank leaves those voices out,
so there only their own utterances vary.

The corpus is cached because building it takes minutes. Work is split into shards (default 250
utterances) written atomically, so an interrupted build resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from azsim.errors import ConfigError

# 2: synthesizer reset per chain of shards (deterministic builds); training transcripts from
# their own random stream. Version 1's training split depended on worker scheduling.
CORPUS_VERSION = 2
SAMPLE_RATE_HZ = 16000
SUBSETS = ("train", "dev", "test_clean", "test_noisy", "test_fsdd")

DEFAULTS: dict = {
    "seed": 0,               # every random choice derives from it
    "n_train": 20000,        # synthesized training utterances (FSDD comes on top)
    "n_dev": 500,            # dev utterances (dev voices, clean)
    "n_test": 500,           # utterances in test_clean (and the same in test_noisy)
    "dev_variants": 6,       # eSpeak variants held out for dev
    "test_variants": 10,     # eSpeak variants held out for test (never in train or dev)
    "rate_wpm": [130, 200],  # speaking rate range (uniform, inclusive)
    "pitch": [25, 75],       # eSpeak pitch range 0-99 (uniform, inclusive)
    "snr_db": [0, 5, 10, 15, 20],  # training noise SNRs (one drawn uniformly per noisy utterance)
    "test_snr_db": 10,       # SNR of test_noisy
    "noise_types": ["white", "pink", "babble"],
    "p_noise": 0.5,          # probability a training utterance gets additive noise
    "p_speed": 0.3,          # ... speed perturbation (0.9 or 1.1, equally likely)
    "p_reverb": 0.2,         # ... reverberation (RT60 uniform 0.2-0.7 s)
    "p_band8k": 0.15,        # ... 8 kHz band-limiting
    "fsdd_train": True,      # add FSDD takes 5-49 to train
    "fsdd_copies": 2,        # each FSDD training take appears this many times (augmented anew)
    "shard_size": 250,       # utterances per resumable shard
}

_JOB_CODES = {"train": 1, "dev": 2, "test": 3, "fsdd_train": 4, "fsdd_test": 5}


def default_cache_dir() -> Path:
    env = os.environ.get("AZSIM_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "cache"


# ---------------------------------------------------------------------------------------------
# config

def resolve_config(data_cfg: dict | None) -> dict:
    """DEFAULTS overlaid with data_cfg, validated (ConfigError names the key and range)."""
    data_cfg = dict(data_cfg or {})
    unknown = sorted(set(data_cfg) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"[data]: unknown key(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **data_cfg}

    def _int(key, lo, hi):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"[data] {key} = {v!r}: must be an integer in [{lo}, {hi}]")

    def _prob(key):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ConfigError(f"[data] {key} = {v!r}: must be a probability in [0, 1]")

    def _range(key, lo, hi):
        v = cfg[key]
        if (not isinstance(v, (list, tuple)) or len(v) != 2 or not all(isinstance(a, int) for a in v)
                or not lo <= v[0] <= v[1] <= hi):
            raise ConfigError(f"[data] {key} = {v!r}: must be [min, max] integers within [{lo}, {hi}]")
        cfg[key] = [int(v[0]), int(v[1])]

    _int("seed", 0, 2**32 - 1)
    _int("n_train", 0, 1_000_000)
    _int("n_dev", 0, 100_000)
    _int("n_test", 0, 100_000)
    _int("dev_variants", 1, 30)
    _int("test_variants", 1, 30)
    _int("fsdd_copies", 0, 20)
    _int("shard_size", 1, 10_000)
    _range("rate_wpm", 80, 450)
    _range("pitch", 0, 99)
    for k in ("p_noise", "p_speed", "p_reverb", "p_band8k"):
        _prob(k)
    snrs = cfg["snr_db"]
    if (not isinstance(snrs, (list, tuple)) or not snrs
            or not all(isinstance(s, (int, float)) and -10 <= s <= 60 for s in snrs)):
        raise ConfigError(f"[data] snr_db = {snrs!r}: must be a non-empty list of dB values in [-10, 60]")
    cfg["snr_db"] = [float(s) for s in snrs]
    t = cfg["test_snr_db"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not -10 <= t <= 60:
        raise ConfigError(f"[data] test_snr_db = {t!r}: must be a dB value in [-10, 60]")
    cfg["test_snr_db"] = float(t)
    from asr.data.augment import NOISE_TYPES
    nt = cfg["noise_types"]
    if not isinstance(nt, (list, tuple)) or not nt or not set(nt) <= set(NOISE_TYPES):
        raise ConfigError(f"[data] noise_types = {nt!r}: must be a non-empty subset of {list(NOISE_TYPES)}")
    cfg["noise_types"] = list(nt)
    if not isinstance(cfg["fsdd_train"], bool):
        raise ConfigError(f"[data] fsdd_train = {cfg['fsdd_train']!r}: must be true or false")
    return cfg


def config_hash(cfg: dict) -> str:
    blob = json.dumps({"version": CORPUS_VERSION, **cfg}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def variant_family(variant: str) -> str:
    """Variants that are tweaks of one voice (klatt..klatt6, iven..iven4, Mike/mike2) share a family.

    The numbered m1-m8 and f1-f5 are distinct voices and stay separate.
    """
    stem = variant.lower().rstrip("0123456789")
    return stem if len(stem) > 1 else variant


def voice_pools(cfg: dict) -> dict[str, list[str]]:
    """Variant names per pool ('train', 'dev', 'test'), disjoint, chosen by the seed.

    Whole families go to one pool, so a test voice is never a near-copy of a training voice.
    A pool is filled family by family (in seeded order) without exceeding its requested size.
    """
    from asr.data.synth import speech_like_variants
    variants = speech_like_variants()
    n_dev, n_test = cfg["dev_variants"], cfg["test_variants"]
    families: dict[str, list[str]] = {}
    for v in variants:
        families.setdefault(variant_family(v), []).append(v)
    if n_dev + n_test > len(families) // 2:
        raise ConfigError(f"[data] dev_variants + test_variants = {n_dev + n_test}: must be at most "
                          f"{len(families) // 2} (half the {len(families)} eSpeak voice families)")
    keys = sorted(families)
    order = [keys[i] for i in np.random.default_rng([cfg["seed"], 77]).permutation(len(keys))]
    pools: dict[str, list[str]] = {"test": [], "dev": [], "train": []}
    want = {"test": n_test, "dev": n_dev}
    for fam in order:
        for name in ("test", "dev"):
            if len(pools[name]) + len(families[fam]) <= want[name] and len(pools[name]) < want[name]:
                pools[name] += families[fam]
                break
        else:
            pools["train"] += families[fam]
    return {k: sorted(v) for k, v in pools.items()}


# ---------------------------------------------------------------------------------------------
# shard jobs (run in worker processes)

@dataclass
class _Job:
    name: str          # shard directory name
    kind: str          # key of _JOB_CODES
    index: int
    n: int             # utterances (for fsdd jobs: items given explicitly)
    fsdd_items: list = field(default_factory=list)   # (path, text, speaker, take, copy)


def _draw_voice(rng, cfg, pool):
    from asr.data.synth import ENGLISH_BASES, Voice
    return Voice(ENGLISH_BASES[int(rng.integers(len(ENGLISH_BASES)))],
                 pool[int(rng.integers(len(pool)))],
                 int(rng.integers(cfg["rate_wpm"][0], cfg["rate_wpm"][1] + 1)),
                 int(rng.integers(cfg["pitch"][0], cfg["pitch"][1] + 1)))


def _draw_command(rng, cfg, pool):
    """(text, intent, slots, voice): one command of the grammar and the voice that says it."""
    from asr.data import grammar
    text, intent, slots = grammar.sample(rng)
    return text, intent, slots, _draw_voice(rng, cfg, pool)


def _fsdd_train_meta(text, speaker, take, copy) -> dict:
    return {"text": text, "voice": f"fsdd:{speaker}", "variant": f"fsdd:{speaker}", "intent": "digit",
            "slots": {"digit": text, "take": take, "copy": copy}}


def _synth16k(text, voice) -> np.ndarray:
    from scipy.signal import resample_poly
    from asr.data.synth import SYNTH_RATE_HZ, synthesize
    x = synthesize(text, voice)
    assert SYNTH_RATE_HZ == 22050
    return resample_poly(x, 320, 441).astype(np.float32)  # 22050 -> 16000


def _gain(x, rng):
    """Scale to a random peak level in [0.2, 0.9] so the model sees varied loudness."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return x if peak == 0 else (x * (rng.uniform(0.2, 0.9) / peak)).astype(np.float32)


class _Babble:
    """A small bank of other synthesized utterances (train voices) for babble noise, built lazily."""

    def __init__(self, cfg, pools, job_code, index):
        self._args = (cfg, pools, job_code, index)
        self._bank = None

    def bank(self):
        if self._bank is None:
            from asr.data import synth
            cfg, pools, code, index = self._args
            rng = np.random.default_rng([cfg["seed"], 9, code, index])
            voices = pools["train"]
            if code in (_JOB_CODES["train"], _JOB_CODES["fsdd_train"]):
                # a bank voice that sounds different in another process would change every
                # babble-noised utterance of the shard (test shards keep version 1's bank)
                unstable = synth.unstable_variants()
                voices = [v for v in voices if v not in unstable] or voices
            self._bank = [_synth16k(c[0], c[3]) for c in (_draw_command(rng, cfg, voices) for _ in range(8))]
        return self._bank


def _augment(x, rng, cfg, babble):
    """Training augmentation. Returns (audio, snr_db or None, noise type or None, applied list)."""
    from asr.data import augment as A
    applied = []
    if rng.random() < cfg["p_speed"]:
        f = 0.9 if rng.random() < 0.5 else 1.1
        x = A.speed_perturb(x, f)
        applied.append(f"speed{f}")
    if rng.random() < cfg["p_reverb"]:
        rt60 = float(rng.uniform(0.2, 0.7))
        x = A.reverberate(x, rng, rt60, SAMPLE_RATE_HZ)
        applied.append(f"reverb{rt60:.2f}")
    snr = noise = None
    if rng.random() < cfg["p_noise"]:
        snr = float(cfg["snr_db"][int(rng.integers(len(cfg["snr_db"])))])
        noise = cfg["noise_types"][int(rng.integers(len(cfg["noise_types"])))]
        x = A.add_noise(x, A.make_noise(noise, x.shape[0], rng, babble.bank() if noise == "babble" else None), snr)
        applied.append(f"noise_{noise}{snr:g}")
    if rng.random() < cfg["p_band8k"]:
        x = A.band_limit_8k(x, SAMPLE_RATE_HZ)
        applied.append("band8k")
    return x, snr, noise, applied


def _to_pcm(x) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 32767.0), -32768, 32767).astype(np.int16)


class _SubsetWriter:
    def __init__(self, corpus_dir: Path, shard_dir: Path, subset: str, job_name: str,
                 replay: bool = False):
        self.corpus_dir, self.shard_dir, self.subset, self.job = corpus_dir, shard_dir, subset, job_name
        self.records, self.feats = [], []
        self.replay = replay   # a finished shard synthesized again: write nothing
        (corpus_dir / "wav" / subset).mkdir(parents=True, exist_ok=True)

    def add(self, i, x16, rec, wav_path: Path | None = None):
        """Store one utterance: WAV (unless wav_path is given), features, manifest record."""
        if self.replay:
            return
        import scipy.io.wavfile
        from asr.features import log_mel
        if wav_path is None:
            pcm = _to_pcm(x16)
            rel = Path("wav") / self.subset / f"{self.job}_{i:05d}.wav"
            scipy.io.wavfile.write(self.corpus_dir / rel, SAMPLE_RATE_HZ, pcm)
            x_q = pcm.astype(np.float32) / 32768.0  # features of exactly what the WAV holds
            path, rate = str(rel), SAMPLE_RATE_HZ
        else:
            x_q, rate, path = x16, rec.pop("_rate"), str(wav_path)
        f = log_mel(x_q, rate).astype(np.float16)
        rec = {"id": f"{self.subset}/{self.job}_{i:05d}", "path": path,
               "duration_s": round(x_q.shape[0] / rate, 4), **rec}
        self.records.append(rec)
        self.feats.append(f)

    def save(self):
        tmp = self.shard_dir
        with open(tmp / f"{self.subset}.jsonl", "w") as fh:
            for r in self.records:
                fh.write(json.dumps(r) + "\n")
        lens = np.array([f.shape[0] for f in self.feats], np.int64)
        feats = np.concatenate(self.feats) if self.feats else np.zeros((0, 80), np.float16)
        np.save(tmp / f"{self.subset}.feats.npy", feats)
        np.save(tmp / f"{self.subset}.lens.npy", lens)


def _train_text_rng(cfg: dict, job: _Job):
    return np.random.default_rng([cfg["seed"], _JOB_CODES["train"], job.index, 1])


def train_transcripts(cfg: dict) -> list[dict]:
    """The training split's records without its audio: id, text, voice, variant, intent, slots
    and source, in train.jsonl's order and equal to its fields (tested). Milliseconds, where
    building the split takes minutes."""
    cfg = resolve_config(cfg)
    pool = voice_pools(cfg)["train"]
    out = []
    for job in _plan(cfg):
        if job.kind == "train":
            rng = _train_text_rng(cfg, job)
            for i in range(job.n):
                text, intent, slots, voice = _draw_command(rng, cfg, pool)
                out.append({"id": f"train/{job.name}_{i:05d}", "text": text, "voice": voice.name,
                            "variant": voice.variant, "intent": intent, "slots": slots,
                            "source": "espeak"})
        elif job.kind == "fsdd_train":
            for i, (_path, text, speaker, take, copy) in enumerate(job.fsdd_items):
                out.append({"id": f"train/{job.name}_{i:05d}",
                            **_fsdd_train_meta(text, speaker, take, copy), "source": "fsdd"})
    return out


def _chains(jobs: list[_Job]) -> list[list[_Job]]:
    """Shards that share one synthesizer history, in order (see the module doc)."""
    by_name = {j.name: j for j in jobs}
    chains, taken = [], set()
    for j in jobs:
        if j.name in taken:
            continue
        chain = [j]
        if j.kind == "test" and f"dev_{j.index:04d}" in by_name:
            chain.append(by_name[f"dev_{j.index:04d}"])
        elif j.kind == "dev" and f"test_{j.index:04d}" in by_name:
            continue   # built after its test shard
        taken.update(c.name for c in chain)
        chains.append(chain)
    return chains


def _run_chain(args) -> tuple[list[str], int]:
    """Build a chain's unfinished shards from a reset synthesizer. A finished shard before an
    unfinished one is synthesized again (and discarded) so that the later shard starts from
    the same synthesizer state as in an uninterrupted build."""
    from asr.data import synth
    chain, cfg, pools, corpus_dir = args
    done = [(Path(corpus_dir) / "shards" / j.name / "done").exists() for j in chain]
    if all(done):
        return [j.name for j in chain], 0
    last = max(k for k, d in enumerate(done) if not d)
    synth.reset()
    count = 0
    for k, job in enumerate(chain[: last + 1]):
        count += _run_job((job, cfg, pools, corpus_dir), replay=done[k])[1]
    return [j.name for j in chain], count


def _run_job(args, replay: bool = False) -> tuple[str, int]:
    """Build one shard. replay=True: synthesize it again only to advance the synthesizer's
    state, leave the finished shard as it is and count nothing."""
    job, cfg, pools, corpus_dir = args
    from asr.audio import load_wav
    from asr.data import augment as A
    from asr.features import resample_to_16k
    corpus_dir = Path(corpus_dir)
    final = corpus_dir / "shards" / job.name
    if (final / "done").exists() and not replay:
        return job.name, 0
    tmp = corpus_dir / "shards" / f".tmp_{job.name}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    code = _JOB_CODES[job.kind]
    rng = np.random.default_rng([cfg["seed"], code, job.index])
    babble = _Babble(cfg, pools, code, job.index)
    count = 0
    if job.kind in ("train", "dev"):
        w = _SubsetWriter(corpus_dir, tmp, job.kind, job.name, replay)
        pool = pools[job.kind]
        # dev keeps version 1's single stream (its bytes are unchanged); train draws texts
        # and voices apart from the audio, see train_transcripts
        text_rng = _train_text_rng(cfg, job) if job.kind == "train" else rng
        for i in range(job.n):
            text, intent, slots, voice = _draw_command(text_rng, cfg, pool)
            # train: one stream per utterance, so an utterance whose audio differs between
            # builds (a voice in synth.unstable_variants()) changes nothing after it
            a_rng = np.random.default_rng([cfg["seed"], code, job.index, 2, i]) if job.kind == "train" else rng
            x = _gain(_synth16k(text, voice), a_rng)
            snr = noise = None
            aug = []
            if job.kind == "train":
                x, snr, noise, aug = _augment(x, a_rng, cfg, babble)
            w.add(i, x, {"text": text, "voice": voice.name, "variant": voice.variant,
                         "intent": intent, "slots": slots, "snr_db": snr, "noise": noise,
                         "aug": aug, "source": "espeak"})
        w.save()
        count = job.n
    elif job.kind == "test":
        wc = _SubsetWriter(corpus_dir, tmp, "test_clean", job.name, replay)
        wn = _SubsetWriter(corpus_dir, tmp, "test_noisy", job.name, replay)
        for i in range(job.n):
            text, intent, slots, voice = _draw_command(rng, cfg, pools["test"])
            x = _gain(_synth16k(text, voice), rng)
            base = {"text": text, "voice": voice.name, "variant": voice.variant, "intent": intent,
                    "slots": slots, "source": "espeak"}
            wc.add(i, x, {**base, "snr_db": None, "noise": None, "aug": []})
            noise = cfg["noise_types"][int(rng.integers(len(cfg["noise_types"])))]
            snr = cfg["test_snr_db"]
            xn = A.add_noise(x, A.make_noise(noise, x.shape[0], rng, babble.bank() if noise == "babble" else None), snr)
            wn.add(i, xn, {**base, "snr_db": snr, "noise": noise, "aug": [f"noise_{noise}{snr:g}"]})
        wc.save()
        wn.save()
        count = 2 * job.n
    elif job.kind == "fsdd_train":
        w = _SubsetWriter(corpus_dir, tmp, "train", job.name, replay)
        for i, (path, text, speaker, take, copy) in enumerate(job.fsdd_items):
            x, rate = load_wav(path)
            a_rng = np.random.default_rng([cfg["seed"], code, job.index, 2, i])
            x = _gain(resample_to_16k(x, rate), a_rng)
            x, snr, noise, aug = _augment(x, a_rng, cfg, babble)
            w.add(i, x, {**_fsdd_train_meta(text, speaker, take, copy),
                         "snr_db": snr, "noise": noise, "aug": aug, "source": "fsdd"})
        w.save()
        count = len(job.fsdd_items)
    elif job.kind == "fsdd_test":
        w = _SubsetWriter(corpus_dir, tmp, "test_fsdd", job.name, replay)
        for i, (path, text, speaker, take, _copy) in enumerate(job.fsdd_items):
            x, rate = load_wav(path)
            w.add(i, x, {"text": text, "voice": f"fsdd:{speaker}", "variant": f"fsdd:{speaker}",
                         "intent": "digit", "slots": {"digit": text, "take": take},
                         "snr_db": None, "noise": None, "aug": [], "source": "fsdd", "_rate": rate},
                  wav_path=Path(path).resolve())
        w.save()
        count = len(job.fsdd_items)
    if replay:
        shutil.rmtree(tmp, ignore_errors=True)
        return job.name, 0
    (tmp / "done").write_text("ok\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return job.name, count


def _plan(cfg: dict) -> list[_Job]:
    from asr.data import fsdd
    s = cfg["shard_size"]
    jobs: list[_Job] = []

    def split_n(kind, n, prefix):
        for k in range(math.ceil(n / s)):
            jobs.append(_Job(f"{prefix}_{k:04d}", kind, k, min(s, n - k * s)))

    split_n("test", cfg["n_test"], "test")
    split_n("dev", cfg["n_dev"], "dev")
    items = fsdd.list_items()
    train_items, test_items = fsdd.split(items)
    jobs.append(_Job("test_fsdd_0000", "fsdd_test", 0, len(test_items),
                     [(str(i.path), i.text, i.speaker, i.take, 0) for i in test_items]))
    split_n("train", cfg["n_train"], "train")
    if cfg["fsdd_train"] and cfg["fsdd_copies"] > 0:
        tr = [(str(i.path), i.text, i.speaker, i.take, c)
              for c in range(cfg["fsdd_copies"]) for i in train_items]
        for k in range(math.ceil(len(tr) / s)):
            chunk = tr[k * s:(k + 1) * s]
            jobs.append(_Job(f"train_fsdd_{k:04d}", "fsdd_train", k, len(chunk), chunk))
    return jobs


def _merge(corpus_dir: Path, jobs: list[_Job], subsets=SUBSETS) -> dict:
    stats = {}
    for subset in subsets:
        recs, feats = [], []
        for job in jobs:
            mf = corpus_dir / "shards" / job.name / f"{subset}.jsonl"
            if not mf.exists():
                continue
            with open(mf) as fh:
                recs += [json.loads(line) for line in fh]
            feats.append(np.load(corpus_dir / "shards" / job.name / f"{subset}.feats.npy"))
            lens = np.load(corpus_dir / "shards" / job.name / f"{subset}.lens.npy")
            for r, n in zip(recs[len(recs) - len(lens):], lens):
                r["n_frames"] = int(n)
        all_feats = np.concatenate(feats) if feats else np.zeros((0, 80), np.float16)
        offsets = np.zeros(len(recs) + 1, np.int64)
        offsets[1:] = np.cumsum([r["n_frames"] for r in recs])
        assert offsets[-1] == all_feats.shape[0]
        np.save(corpus_dir / f"{subset}.feats.npy", all_feats)
        np.save(corpus_dir / f"{subset}.offsets.npy", offsets)
        with open(corpus_dir / f"{subset}.jsonl.tmp", "w") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
        os.replace(corpus_dir / f"{subset}.jsonl.tmp", corpus_dir / f"{subset}.jsonl")
        stats[subset] = {"utterances": len(recs),
                         "hours": round(sum(r["duration_s"] for r in recs) / 3600.0, 4),
                         "voices": len({r["voice"] for r in recs}),
                         "variants": len({r["variant"] for r in recs})}
    return stats


# which subsets each kind of job writes
_JOB_SUBSETS = {"train": ("train",), "fsdd_train": ("train",), "dev": ("dev",),
                "test": ("test_clean", "test_noisy"), "fsdd_test": ("test_fsdd",)}


def build(data_cfg: dict | None, cache_dir=None, workers: int = 2, progress: bool = True,
          subsets=None) -> Path:
    """Build (or reuse) the corpus for `data_cfg`; returns its directory. See the module doc.

    `subsets` (default: all) builds only the chains those subsets need, so evaluating a model
    on a fresh machine synthesizes the test sets without the 20k-utterance training set.
    A partial build keeps its shards, so a later full build reuses them. `subsets=()` only
    makes the directory and its config.json (for readers of `train_transcripts` and caches).
    """
    cfg = resolve_config(data_cfg)
    wanted = tuple(SUBSETS if subsets is None else subsets)
    bad = [s for s in wanted if s not in SUBSETS]
    if bad:
        raise ConfigError(f"unknown subset(s) {', '.join(bad)} (allowed: {', '.join(SUBSETS)})")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    corpus_dir = cache_dir / f"corpus-{config_hash(cfg)}"
    if wanted and ((corpus_dir / "complete.json").exists() or all(
            (corpus_dir / f"{s}.complete").exists() for s in wanted)):
        return corpus_dir
    corpus_dir.mkdir(parents=True, exist_ok=True)
    if not (corpus_dir / "config.json").exists():
        (corpus_dir / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
    if not wanted:
        return corpus_dir
    pools = voice_pools(cfg)
    chains = [c for c in _chains(_plan(cfg))
              if any(set(_JOB_SUBSETS[j.kind]) & set(wanted) for j in c)]
    jobs = [j for c in chains for j in c]
    todo = [j for j in jobs if not (corpus_dir / "shards" / j.name / "done").exists()]
    total = sum(j.n * (2 if j.kind == "test" else 1) for j in todo)
    t0 = time.time()
    from tqdm import tqdm
    bar = tqdm(total=total, desc=f"corpus {corpus_dir.name}", unit="utt", disable=not progress)
    todo_names = {t.name for t in todo}
    args = [(c, cfg, pools, str(corpus_dir)) for c in chains if any(j.name in todo_names for j in c)]
    # Always in worker processes with one BLAS thread, even for workers=1: the features'
    # float sums depend on the thread count (measured: 1 vs 2 threads change dev.feats.npy),
    # and the caller's synthesizer history must not leak in. Spawn, not fork: the caller may
    # be a torch process whose threads do not survive fork.
    import multiprocessing as mp
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})
    try:
        if args:
            with mp.get_context("spawn").Pool(max(1, min(workers, len(args)))) as pool:
                for _names, n in pool.imap_unordered(_run_chain, args):
                    bar.update(n)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    bar.close()
    made = [s for s in SUBSETS if any(s in _JOB_SUBSETS[j.kind] for j in jobs)]
    stats = _merge(corpus_dir, jobs, made)
    for s in made:
        (corpus_dir / f"{s}.complete").write_text("ok\n")
    if set(wanted) == set(SUBSETS):
        info = {"config_hash": corpus_dir.name, "build_s": round(time.time() - t0, 1),
                "shards_built_this_run": len(todo), "workers": workers, "pools": pools, "subsets": stats}
        (corpus_dir / "complete.json").write_text(json.dumps(info, indent=1) + "\n")
        # Shards only serve resuming; the merged files hold everything (WAVs stay in wav/).
        shutil.rmtree(corpus_dir / "shards", ignore_errors=True)
    return corpus_dir


# ---------------------------------------------------------------------------------------------
# loading

@dataclass
class Utterance:
    feats: np.ndarray        # (T, 80) float16 log-mel (a read-only view into the subset's cache)
    text: str
    voice: str
    path: Path
    duration_s: float
    intent: str | None = None
    snr_db: float | None = None
    meta: dict = field(default_factory=dict)  # the whole manifest record


def load_subset(corpus_dir, subset: str) -> list[Utterance]:
    """Utterances of one subset, features memory-mapped from <subset>.feats.npy."""
    corpus_dir = Path(corpus_dir)
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; allowed: {SUBSETS}")
    manifest = corpus_dir / f"{subset}.jsonl"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: no such manifest (build the corpus first)")
    feats = np.load(corpus_dir / f"{subset}.feats.npy", mmap_mode="r")
    offsets = np.load(corpus_dir / f"{subset}.offsets.npy")
    out = []
    with open(manifest) as fh:
        for i, line in enumerate(fh):
            r = json.loads(line)
            out.append(Utterance(feats[offsets[i]:offsets[i + 1]], r["text"], r["voice"],
                                 corpus_dir / r["path"], float(r["duration_s"]), r.get("intent"),
                                 r.get("snr_db"), r))
    if len(out) != len(offsets) - 1:
        raise ValueError(f"{manifest}: {len(out)} records but {len(offsets) - 1} feature offsets")
    return out


def corpus_info(corpus_dir) -> dict:
    return json.loads((Path(corpus_dir) / "complete.json").read_text())
