"""Shared pieces of the experiments: the model and corpus to run on, the chip backend, audio
surgery (speech bounds, pauses, padding), tables."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "shipped" / "model.npz"
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "int8.toml"
RATE_HZ = 16000


def sizes(quick: bool, quick_sizes: dict, full_sizes: dict, minimum: dict, *, medium: bool = False,
          medium_sizes: dict | None = None, **given) -> dict:
    """The experiment's sizes: quick, medium (where the experiment has that mode) or full
    defaults, overridden by the options given (None: not given); each must be an integer >= its
    minimum, else a ConfigError naming the option."""
    from azsim.errors import ConfigError

    if quick and medium:
        raise ConfigError("--quick and --medium: pick one (allowed: --quick, --medium or neither for full)")
    out = dict(quick_sizes if quick else medium_sizes if medium else full_sizes)
    for name, v in given.items():
        if v is not None:
            out[name] = v
    for name, lo in minimum.items():
        v = out[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"--{name.replace('_', '-')}: {v!r} (allowed: an integer >= {lo})")
    return out


def resolve_model(model=None) -> Path:
    from azsim.errors import ModelError
    p = Path(model) if model is not None else DEFAULT_MODEL
    if not p.is_file():
        raise ModelError(f"{p}: model file not found (train it with `azsim train configs/shipped.toml` "
                         f"or pass --model)")
    return p


def corpus_dir_for(model_path: Path, corpus=None, config=None, subsets=None) -> Path:
    """The model's corpus (built and cached by asr.data.corpus; reused when it exists).
    `subsets`: only those (see asr.data.corpus.build; () makes just the folder and config)."""
    from asr.cli import eval_config
    from asr.data import corpus as corpus_mod
    from azsim.errors import ConfigError
    if corpus is not None:
        d = Path(corpus)
        if not (d / "complete.json").exists():
            raise ConfigError(f"--corpus: {d} is not a built corpus directory (no complete.json)")
        return d
    cfg, _ = eval_config(str(model_path), config)
    cache_dir = cfg.get("train", {}).get("cache_dir") or None
    return corpus_mod.build(cfg["data"], cache_dir, progress=False, subsets=subsets)


def load_float(model_path: Path):
    from asr.model.numpy_rnnt import NumpyRNNT
    return NumpyRNNT.load(model_path)


def load_chip(fm, model_path: Path, corpus_dir: Path, recipe=None, preset: str = "default"):
    """The float model quantized with `recipe` (PTQ, calibrated on the corpus) on a simulated
    chip (asr.chip.ChipRNNT), with its resident weights loaded (one warm-up call per program)."""
    from asr.chip import ChipRNNT
    from asr.quant import ptq
    from asr.quant import recipe as recipe_mod
    from azsim import hw
    rec = recipe_mod.load(recipe if recipe is not None else DEFAULT_RECIPE)
    qm = ptq.quantize_from_corpus(fm, rec, corpus_dir, source=str(model_path))
    cm = ChipRNNT(qm, hw.load(preset))
    st = cm.encoder_init()
    cm.encode(np.zeros((1, cm.input_dim), np.float32) + cm.qm.feat_mean, st)
    pred, _ = cm.predict(cm.blank, cm.predictor_init())
    cm.joint(np.zeros(cm.joint_dim, np.float32), pred)
    return cm, rec


# ------------------------------------------------------------------ audio surgery
def frame_energy_db(x: np.ndarray, hop: int = 160) -> np.ndarray:
    n = len(x) // hop
    if n == 0:
        return np.zeros(0)
    e = np.mean(np.square(x[:n * hop].reshape(n, hop), dtype=np.float64), axis=1)
    return 10 * np.log10(e + 1e-12)


def speech_bounds(x: np.ndarray, rel_db: float = -35.0, hop: int = 160) -> tuple[int, int] | None:
    """(first, last+1) sample of speech: 10 ms frames within `rel_db` of the loudest frame."""
    db = frame_energy_db(x, hop)
    if db.size == 0 or db.max() < -90.0:   # nothing above the float noise floor: no speech
        return None
    on = np.flatnonzero(db >= db.max() + rel_db)
    if on.size == 0:
        return None
    return int(on[0] * hop), int((on[-1] + 1) * hop)


def internal_gaps(x: np.ndarray, bounds, rel_db: float = -35.0, min_ms: float = 30.0,
                  margin_ms: float = 200.0, hop: int = 160) -> list[int]:
    """Sample positions (gap middles) of quiet stretches inside the speech, at least
    `margin_ms` from its ends: where a speaker could plausibly pause (word boundaries, stop
    closures)."""
    db = frame_energy_db(x, hop)
    quiet = db < db.max() + rel_db
    lo = (bounds[0] + int(margin_ms * RATE_HZ / 1000)) // hop
    hi = (bounds[1] - int(margin_ms * RATE_HZ / 1000)) // hop
    need = int(np.ceil(min_ms * RATE_HZ / 1000 / hop))
    gaps, run = [], 0
    for i in range(max(lo, 0), max(hi, 0)):
        if quiet[i]:
            run += 1
        else:
            if run >= need:
                gaps.append((i - run // 2) * hop)
            run = 0
    return gaps


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    from asr.data.augment import pink_noise as pn
    return pn(n, rng)


# ------------------------------------------------------------------ tables
def pct(values, q) -> float:
    v = np.asarray(list(values), np.float64)
    return float(np.percentile(v, q)) if v.size else float("nan")


def mean(values) -> float:
    v = np.asarray(list(values), np.float64)
    return float(v.mean()) if v.size else float("nan")


def format_table(rows: list[dict], columns: list[tuple[str, str, str]], title: str = "") -> str:
    """rows: dicts; columns: (key, header, format spec like '.1f' or 's')."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        line = []
        for key, _, fmt in columns:
            v = r.get(key)
            if v is None or (isinstance(v, float) and np.isnan(v)):
                line.append("-")
            else:
                line.append(format(v, fmt) if fmt != "s" else str(v))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    out = [title] if title else []
    for k, c in enumerate(cells):
        out.append("  ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(c, widths))))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# ------------------------------------------------------------------ resume
def code_digest() -> str:
    """sha256 of the code an experiment's numbers depend on (asr/, azsim/ and csrc/ sources):
    finished rows are reused only by the code that made them, while commits to the README,
    tests or benchmarks leave them valid."""
    h = hashlib.sha256()
    for top in ("asr", "azsim", "csrc"):
        for f in sorted((REPO_ROOT / top).rglob("*")):
            if f.suffix in (".py", ".cpp", ".h", ".hpp") and f.is_file():
                h.update(str(f.relative_to(REPO_ROOT)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()


class RowStore:
    """Finished rows of a long experiment, kept in a JSON file named by the hash of everything
    the rows depend on (the experiment's settings, the model file's sha256, the code), so that a
    rerun after an interruption skips what was done. Each row is written (atomically) as soon as
    it is finished; `fresh=True` ignores and replaces what is there."""

    def __init__(self, experiment: str, cache_dir: Path, key: dict, fresh: bool = False):
        blob = json.dumps(key, sort_keys=True, default=str)
        self.path = Path(cache_dir) / "runs" / f"{experiment}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"
        self.key = json.loads(blob)      # as the file holds it, for the comparison on reading
        self.rows: dict[str, dict] = {}
        if not fresh and self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if data.get("key") == self.key:
                    self.rows = dict(data.get("rows", {}))
            except (OSError, ValueError):
                self.rows = {}   # a damaged file is redone, not trusted

    @classmethod
    def for_run(cls, experiment: str, model_path: Path, corpus_dir: Path, settings: dict,
                fresh: bool = False) -> "RowStore":
        """The store of one experiment run: keyed by its settings, the model file's sha256, the
        corpus and the code; kept under the corpus's cache directory."""
        key = {"settings": settings, "corpus": Path(corpus_dir).name, "code": code_digest(),
               "model_sha256": hashlib.sha256(Path(model_path).read_bytes()).hexdigest()}
        return cls(experiment, Path(corpus_dir).parent, key, fresh)

    def get(self, name: str) -> dict | None:
        return self.rows.get(name)

    def put(self, name: str, row: dict) -> None:
        self.rows[name] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": self.key, "rows": self.rows}, default=float))
        tmp.replace(self.path)


class Clock:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
