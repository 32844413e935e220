"""Compression recipes: a TOML file naming method, bits, sparsity and weight format per layer.

    name = "int8-sparse50"
    description = "..."
    method = "ptq"            # how the weights were obtained: "ptq" (post-training, from the
                              #   model as given), or a training method: "qat" (straight-through
                              #   fake quantization), "reg-qat" (quantization regularizer),
                              #   "sparse" (gradual magnitude pruning), "distill" (teacher-student)
    model = "models/compress/qat-int8/model.npz"  # optional: the float export the recipe is for
                              #   (default: the shipped model); relative to the repository root
    build = ["configs/compress/qat-int8.toml"]  # training methods: compression fine-tunes
                              #   (azsim compress) that make `model`, run in order when it is
                              #   missing or stale; `model` defaults to the last one's export
    bits = 8                  # 4 or 8: weight width of every layer unless a layer says otherwise
    sparsity = 0.5            # fraction of weights pruned by magnitude before quantizing, [0, 1)
    pattern = "unstructured"  # or "N:M" (keep the N largest of every M consecutive inputs)
    levels = 0                # 0, or a power of two in [2, 256]: at most this many distinct
                              #   integer values per tensor (k-means), for the codebook formats
    format = "auto"           # a weight format of azsim.compress, or "auto": the smallest
                              #   lossless format for each tensor among the chip's decoder formats
    solver = "round"          # "round": magnitude pruning + round to nearest; "gptq": pruning
                              #   mask and rounding chosen column by column, each column's error
                              #   compensated on the remaining ones with calibration inputs
                              #   (GPTQ / SparseGPT, one shot, no training)

    [calibration]             # activation scales, measured on the float model
    subset = "dev"            # corpus subset the utterances come from
    utterances = 32
    statistic = "percentile"  # or "max" (of |x|)
    percentile = 99.99

    [layers."encoder.l0"]     # per-layer overrides of bits / sparsity / pattern / levels / format
    sparsity = 0.3

The integer conversion is the same for every method: per-channel symmetric rounding (or the
GPTQ solver) with calibrated activation scales. A QAT export already lies on its integer grid,
so round-to-nearest gives back the trained integers.

Layer names: encoder.l<k>, enc_proj, pred.l<k>, pred_proj, joint_out. The embedding table
is always int8 dense (the chip's embedding op reads int8 rows) and takes no overrides.

Everything is validated once, here: ConfigError names the file, the field and what is allowed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from azsim.compress import FORMATS
from azsim.errors import ConfigError
from azsim.tomlio import read_toml

METHODS = ("ptq", "qat", "reg-qat", "sparse", "distill")
TRAINED_METHODS = METHODS[1:]     # these need a fine-tuned model: `build` says how it is made
REPO_ROOT = Path(__file__).resolve().parents[2]
STATISTICS = ("max", "percentile")
LAYER_FIELDS = ("bits", "sparsity", "pattern", "levels", "format", "solver")
SOLVERS = ("round", "gptq")
TOP_FIELDS = ("name", "description", "method", "model", "build", "calibration", "layers") + LAYER_FIELDS
CALIBRATION_FIELDS = ("subset", "utterances", "statistic", "percentile", "seed")
_LAYER_RE = re.compile(r"^(encoder\.l\d+|pred\.l\d+|enc_proj|pred_proj|joint_out)$")
LAYER_NAMES_HINT = "encoder.l<k>, enc_proj, pred.l<k>, pred_proj, joint_out"


@dataclass(frozen=True)
class LayerRecipe:
    bits: int = 8
    sparsity: float = 0.0
    pattern: str = "unstructured"
    levels: int = 0
    format: str = "auto"
    solver: str = "round"

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) for an N:M pattern, None for unstructured."""
        if self.pattern == "unstructured":
            return None
        n, m = self.pattern.split(":")
        return int(n), int(m)

    def to_dict(self) -> dict:
        return {"bits": self.bits, "sparsity": self.sparsity, "pattern": self.pattern,
                "levels": self.levels, "format": self.format, "solver": self.solver}


@dataclass(frozen=True)
class Calibration:
    subset: str = "dev"
    utterances: int = 32
    statistic: str = "percentile"
    percentile: float = 99.99
    seed: int = 0


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str = ""
    method: str = "ptq"
    default: LayerRecipe = LayerRecipe()
    layers: dict = field(default_factory=dict)   # layer name -> LayerRecipe (full, merged)
    calibration: Calibration = Calibration()
    source: str = "<memory>"
    model: str | None = None      # repository-relative or absolute path of the float export
    build: tuple = ()             # compression fine-tune configs that make `model`

    def model_path(self) -> Path | None:
        """The model this recipe is for (None: the caller's default, the shipped model)."""
        if self.model is not None:
            return resolve_path(self.model)
        if self.build:
            from asr.train.compress_train import output_path
            return output_path(resolve_path(self.build[-1]))
        return None

    def builds(self, model_path) -> bool:
        """Whether `build` makes this model file (its last config's export)."""
        if not self.build:
            return False
        from asr.train.compress_train import output_path
        return Path(model_path) == output_path(resolve_path(self.build[-1]))

    def builds_its_model(self) -> bool:
        """Whether `build` makes the model this recipe is for (not so when `model` names
        another file: then build is documentation and is never run)."""
        return self.model_path() is not None and self.builds(self.model_path())

    def layer(self, name: str) -> LayerRecipe:
        return self.layers.get(name, self.default)

    def check_layers(self, layer_names) -> None:
        """Every overridden layer must exist in the model (called once the model is known)."""
        known = set(layer_names)
        for name in self.layers:
            if name not in known:
                raise ConfigError(f"{self.source}: [layers.\"{name}\"]: no such layer in this model "
                                  f"(layers: {', '.join(sorted(known))})")

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "method": self.method,
                "model": self.model, "build": list(self.build),
                "default": self.default.to_dict(),
                "layers": {k: v.to_dict() for k, v in self.layers.items()},
                "calibration": vars(self.calibration).copy(), "source": self.source}


def resolve_path(p) -> Path:
    p = Path(p)
    return p if p.is_absolute() else REPO_ROOT / p


def _err(src: str, fld: str, msg: str) -> ConfigError:
    return ConfigError(f"{src}: {fld}: {msg}")


def _int(src, fld, v, lo, hi) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _err(src, fld, f"{v!r} (allowed: an integer in [{lo}, {hi}])")
    return v


def _layer(src: str, where: str, d: dict, base: LayerRecipe) -> LayerRecipe:
    vals = base.to_dict()
    for key, v in d.items():
        fld = f"{where}{key}"
        if key == "bits":
            if isinstance(v, bool) or v not in (4, 8):
                raise _err(src, fld, f"{v!r} (allowed: 4 or 8)")
        elif key == "sparsity":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
                raise _err(src, fld, f"{v!r} (allowed: a number in [0, 1))")
            v = float(v)
        elif key == "pattern":
            m = re.fullmatch(r"(\d+):(\d+)", v) if isinstance(v, str) else None
            if v != "unstructured" and not (m and 0 < int(m[1]) < int(m[2]) <= 64):
                raise _err(src, fld, f"{v!r} (allowed: \"unstructured\" or \"N:M\" with "
                                     "0 < N < M <= 64, e.g. \"2:4\")")
        elif key == "levels":
            v = _int(src, fld, v, 0, 256)
            if v and (v < 2 or v & (v - 1)):
                raise _err(src, fld, f"{v} (allowed: 0 for none, or a power of two in [2, 256])")
        elif key == "format":
            if v != "auto" and v not in FORMATS:
                raise _err(src, fld, f"{v!r} (allowed: auto, {', '.join(FORMATS)})")
        elif key == "solver":
            if v not in SOLVERS:
                raise _err(src, fld, f"{v!r} (allowed: {', '.join(SOLVERS)})")
        else:
            raise _err(src, fld, f"unknown field (allowed: {', '.join(LAYER_FIELDS)})")
        vals[key] = v
    lr = LayerRecipe(**vals)
    # Combinations the formats cannot hold: say so now rather than at compile time.
    loc = where.rstrip(".") or "top level"
    if lr.nm is not None and lr.sparsity:
        raise _err(src, f"{where}sparsity", f"{lr.sparsity} given with pattern {lr.pattern!r}; an N:M "
                                            "pattern sets the sparsity (1 - N/M) itself: use one of them")
    if lr.format == "int4" and lr.bits != 4:
        raise _err(src, f"{where}format", f"'int4' holds 4-bit weights only, but bits = {lr.bits} ({loc})")
    if lr.format in ("codebook", "codebook-bitmask") and lr.levels == 0:
        raise _err(src, f"{where}format", f"{lr.format!r} needs levels (at most 2**k distinct values; "
                                          f"e.g. levels = 16) ({loc})")
    return lr


def from_dict(data: dict, source: str = "<memory>") -> Recipe:
    src = source
    unknown = sorted(set(data) - set(TOP_FIELDS))
    if unknown:
        raise _err(src, unknown[0], f"unknown field (allowed: {', '.join(TOP_FIELDS)})")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise _err(src, "name", f"{name!r} (allowed: a non-empty string)")
    method = data.get("method", "ptq")
    if method not in METHODS:
        raise _err(src, "method", f"{method!r} (allowed: {', '.join(METHODS)})")
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.endswith(".npz")):
        raise _err(src, "model", f"{model!r} (allowed: the path of a .npz model export)")
    build = data.get("build", [])
    if isinstance(build, str):
        build = [build]
    if not isinstance(build, list) or not all(isinstance(b, str) and b.endswith(".toml") for b in build):
        raise _err(src, "build", f"{build!r} (allowed: a list of compression fine-tune configs, "
                                 "e.g. [\"configs/compress/qat-int8.toml\"])")
    for b in build:
        if not resolve_path(b).is_file():
            raise _err(src, "build", f"{b}: no such file")
    if method in TRAINED_METHODS and not build and model is None:
        raise _err(src, "method", f"{method!r} needs the fine-tuned model: give `build` (the "
                                  "configs that make it) or `model`")
    default = _layer(src, "", {k: data[k] for k in LAYER_FIELDS if k in data}, LayerRecipe())

    cal = data.get("calibration", {})
    if not isinstance(cal, dict):
        raise _err(src, "calibration", "must be a table [calibration]")
    for key in cal:
        if key not in CALIBRATION_FIELDS:
            raise _err(src, f"calibration.{key}", f"unknown field (allowed: {', '.join(CALIBRATION_FIELDS)})")
    c = Calibration()
    if "subset" in cal:
        if cal["subset"] not in ("train", "dev"):
            raise _err(src, "calibration.subset", f"{cal['subset']!r} (allowed: train, dev; never a test subset)")
        c = replace(c, subset=cal["subset"])
    if "utterances" in cal:
        c = replace(c, utterances=_int(src, "calibration.utterances", cal["utterances"], 1, 10000))
    if "statistic" in cal:
        if cal["statistic"] not in STATISTICS:
            raise _err(src, "calibration.statistic", f"{cal['statistic']!r} (allowed: {', '.join(STATISTICS)})")
        c = replace(c, statistic=cal["statistic"])
    if "percentile" in cal:
        p = cal["percentile"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 50.0 <= p <= 100.0:
            raise _err(src, "calibration.percentile", f"{p!r} (allowed: a number in [50, 100])")
        c = replace(c, percentile=float(p))
    if "seed" in cal:
        c = replace(c, seed=_int(src, "calibration.seed", cal["seed"], 0, 2**31 - 1))

    layers = {}
    lay = data.get("layers", {})
    if not isinstance(lay, dict):
        raise _err(src, "layers", "must be tables [layers.\"<name>\"]")
    for lname, ld in lay.items():
        if lname == "embed":
            raise _err(src, "layers.embed", "the embedding table is always int8 dense (the chip's "
                                            f"embedding op); allowed layers: {LAYER_NAMES_HINT}")
        if not _LAYER_RE.match(lname):
            raise _err(src, f"layers.{lname}", f"unknown layer (allowed: {LAYER_NAMES_HINT})")
        if not isinstance(ld, dict):
            raise _err(src, f"layers.{lname}", "must be a table")
        layers[lname] = _layer(src, f"layers.{lname}.", ld, default)
    return Recipe(name=name, description=str(data.get("description", "")), method=method,
                  default=default, layers=layers, calibration=c, source=src, model=model,
                  build=tuple(build))


def load(path) -> Recipe:
    """Read and validate a recipe TOML file."""
    path = Path(path)
    return from_dict(read_toml(path, "recipe"), str(path))
