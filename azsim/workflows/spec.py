"""Sweep specs: a TOML file naming an evaluator, a base preset, recipes and hardware axes.

    [sweep]
    evaluator = "layer"        # layer | score | package.module:Class
    preset = "default"         # base hardware (name or .toml path)
    mode = "grid"              # grid: every combination; random: `samples` draws
    samples = 24               # random only
    seed = 0                   # random only

    [options]                  # passed to the evaluator (e.g. limit = 8 for score)

    [recipes]                  # name -> recipe: a path (score) or an inline table (layer)
    int8 = "recipes/int8.toml"

    [hw]                       # dotted HwConfig paths -> values
    "mac_array.rows" = [16, 32]                      # a list: these values
    "sram.weight_bytes" = ["256KB", "1MB"]           # byte fields take units
    "offchip.bytes_per_cycle" = { min = 1, max = 8, steps = 4, log = true }  # a range

A range needs `steps` in grid mode; in random mode it is sampled uniformly (log-uniformly with
log = true; integers for integer fields). Everything is validated here, before any work: unknown
keys, empty ranges, values each HwConfig field rejects, and every combination's config.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from azsim import hw as hwmod
from azsim.errors import ConfigError
from azsim.tomlio import read_toml
from azsim.workflows import units

SECTIONS = ("sweep", "options", "recipes", "hw")
SWEEP_KEYS = ("evaluator", "preset", "mode", "samples", "seed", "name")
MODES = ("grid", "random")
RANGE_KEYS = ("min", "max", "steps", "log")
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Point:
    key: str                    # stable hash of what the point computes
    recipe: str                 # recipe name
    hw: dict                    # dotted path -> value (the overrides)
    config: Any = field(repr=False, compare=False, default=None)   # resolved HwConfig

    def params(self) -> dict:
        return {"recipe": self.recipe, **self.hw}


@dataclass
class Spec:
    path: str
    name: str
    evaluator: str
    preset: str
    mode: str
    samples: int
    seed: int
    options: dict
    recipes: dict               # name -> recipe value (path string resolved, or table)
    axes: dict                  # dotted path -> list of values or a range dict
    base: Any = None            # HwConfig
    points: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)    # the spec as read (kept with the results)

    def describe(self) -> str:
        return (f"sweep '{self.name}': evaluator {self.evaluator}, preset {self.base.name}, "
                f"{self.mode}, {len(self.recipes)} recipe(s) x {len(self.axes)} hardware axis(es) "
                f"= {len(self.points)} point(s)")


def _field_kind(path: str) -> str:
    if path.endswith("_bytes"):
        return "bytes"
    if path.endswith("_hz"):
        return "hz"
    return ""


def _coerce(spec_path: str, path: str, value: Any, base_value: Any) -> Any:
    """A spec value as the HwConfig field wants it: units parsed for byte/Hz fields,
    integers kept integers."""
    where = f"{spec_path}: [hw] {path!r}"
    kind = _field_kind(path)
    if kind and isinstance(value, str):
        v = units.parse(value, kind, where)
        return int(v) if isinstance(base_value, int) and float(v).is_integer() else v
    if isinstance(base_value, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _expand_range(spec_path: str, path: str, r: dict, base_value: Any, mode: str, rng=None) -> list:
    where = f"{spec_path}: [hw] {path!r}"
    unknown = set(r) - set(RANGE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown range key(s) {', '.join(sorted(unknown))} "
                          f"(allowed: {', '.join(RANGE_KEYS)})")
    if "min" not in r or "max" not in r:
        raise ConfigError(f"{where}: a range needs min and max")
    kind = _field_kind(path)
    lo = units.parse(r["min"], kind or "ratio", where + ".min") if kind else r["min"]
    hi = units.parse(r["max"], kind or "ratio", where + ".max") if kind else r["max"]
    for nm, v in (("min", lo), ("max", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}.{nm} = {v!r}: must be a number")
    if lo > hi:
        raise ConfigError(f"{where}: empty range (min {lo} > max {hi})")
    log = r.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log = {log!r}: must be true or false")
    if log and lo <= 0:
        raise ConfigError(f"{where}: log range needs min > 0 (got {lo})")
    is_int = isinstance(base_value, int) and not isinstance(base_value, bool)
    if is_int and math.floor(hi) < math.ceil(lo):
        raise ConfigError(f"{where}: empty range (no integer in [{lo}, {hi}])")
    if mode == "grid":
        steps = r.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"{where}: a range in grid mode needs steps = an integer >= 1 (got {steps!r})")
        vals = (np.geomspace(lo, hi, steps) if log else np.linspace(lo, hi, steps)).tolist()
        if is_int:
            vals = sorted({int(round(v)) for v in vals})
        return vals
    return []  # random mode draws per sample


def _draw(rng, r: dict, spec_path: str, path: str, base_value: Any):
    kind = _field_kind(path)
    where = f"{spec_path}: [hw] {path!r}"
    lo = units.parse(r["min"], kind, where) if kind else float(r["min"])
    hi = units.parse(r["max"], kind, where) if kind else float(r["max"])
    if r.get("log", False):
        v = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    else:
        v = float(rng.uniform(lo, hi))
    if isinstance(base_value, int) and not isinstance(base_value, bool):
        v = int(min(max(round(v), math.ceil(lo)), math.floor(hi)))
    return v


def _base_value(base, spec_path: str, path: str):
    node: Any = base.to_dict()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{spec_path}: [hw] {path!r} is not a hardware field "
                              f"(fields are dotted paths such as mac_array.rows, sram.weight_bytes, "
                              f"offchip.bytes_per_cycle, clock_hz; see the preset TOML)")
        node = node[part]
    if isinstance(node, dict) or path in ("name", "description", "sources"):
        raise ConfigError(f"{spec_path}: [hw] {path!r} is a section, not a field")
    return node


def point_key(evaluator: str, options: dict, recipe_digest: str, config) -> str:
    """Stable across runs and machines: what the point computes, not how the spec spelled it."""
    cfg = config.to_dict()
    cfg.pop("sources", None)
    cfg.pop("description", None)
    blob = json.dumps({"evaluator": evaluator, "options": options, "recipe": recipe_digest,
                       "hw": cfg}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def recipe_digest(value: Any) -> str:
    """Content hash of a recipe: the file's bytes for a path, the table itself otherwise."""
    if isinstance(value, str) and Path(value).is_file():
        data = Path(value).read_bytes()
    else:
        data = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:20]


def load(path: str | Path) -> Spec:
    """Read and validate a spec file and expand its points. Raises ConfigError (file + field)."""
    p = Path(path)
    return from_dict(read_toml(p, "sweep spec"), str(p), base_dir=p.parent)


def from_dict(data: dict, origin: str = "<spec>", base_dir: Path | None = None) -> Spec:
    from azsim.workflows.evaluators import get_evaluator_class

    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{origin}: unknown section(s) {', '.join(sorted(unknown))} "
                          f"(allowed: {', '.join(SECTIONS)})")
    for sec in SECTIONS:
        if sec in data and not isinstance(data[sec], dict):
            raise ConfigError(f"{origin}: {sec} must be a table [{sec}]")
    sw = data.get("sweep", {})
    unknown = set(sw) - set(SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"{origin}: [sweep] has unknown key(s) {', '.join(sorted(unknown))} "
                          f"(allowed: {', '.join(SWEEP_KEYS)})")
    evaluator = sw.get("evaluator", "score")
    if not isinstance(evaluator, str) or not evaluator:
        raise ConfigError(f"{origin}: [sweep] evaluator must be a name (layer, score) or module:Class")
    ev_cls = get_evaluator_class(evaluator, where=f"{origin}: [sweep] evaluator")
    mode = sw.get("mode", "grid")
    if mode not in MODES:
        raise ConfigError(f"{origin}: [sweep] mode = {mode!r}: allowed values are {', '.join(MODES)}")
    seed = sw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{origin}: [sweep] seed = {seed!r}: must be an integer >= 0")
    samples = sw.get("samples", 0)
    if mode == "random":
        if isinstance(samples, bool) or not isinstance(samples, int) or not (1 <= samples <= MAX_POINTS):
            raise ConfigError(f"{origin}: [sweep] samples = {samples!r}: random mode needs an integer "
                              f"in [1, {MAX_POINTS}]")
    elif "samples" in sw:
        raise ConfigError(f"{origin}: [sweep] samples is only used in random mode (mode = \"random\")")
    preset = sw.get("preset", "default")
    if isinstance(preset, str) and preset.endswith(".toml") and base_dir is not None \
            and not Path(preset).is_file() and (base_dir / preset).is_file():
        preset = str(base_dir / preset)
    base = hwmod.load(preset)
    name = sw.get("name", Path(origin).stem)

    options = dict(data.get("options", {}))
    options = ev_cls.check_options(options, where=f"{origin}: [options]")

    recipes_in = data.get("recipes", {})
    if not recipes_in:
        recipes_in = ev_cls.default_recipes()
        if not recipes_in:
            raise ConfigError(f"{origin}: [recipes] is empty: name at least one recipe")
    recipes = {}
    for rname, rval in recipes_in.items():
        where = f"{origin}: [recipes] {rname!r}"
        if isinstance(rval, str) and base_dir is not None and not Path(rval).is_file() \
                and (base_dir / rval).is_file():
            rval = str(base_dir / rval)
        recipes[rname] = ev_cls.check_recipe(rval, where=where)

    axes_in = data.get("hw", {})
    axes: dict = {}
    base_vals = {}
    for path, vals in axes_in.items():
        bv = _base_value(base, origin, path)
        base_vals[path] = bv
        where = f"{origin}: [hw] {path!r}"
        if isinstance(vals, dict):
            _expand_range(origin, path, vals, bv, mode)  # validates
            axes[path] = dict(vals)
        else:
            if not isinstance(vals, list):
                vals = [vals]
            if not vals:
                raise ConfigError(f"{where}: empty list of values (give at least one)")
            coerced = [_coerce(origin, path, v, bv) for v in vals]
            for v in coerced:   # each value alone, for a message naming this field
                try:
                    _single(base, path, v)
                except ConfigError as err:
                    raise ConfigError(f"{where}: value {v!r} rejected: {_strip(err)}") from None
            axes[path] = coerced

    spec = Spec(path=origin, name=str(name), evaluator=evaluator, preset=preset, mode=mode,
                samples=samples, seed=seed, options=options, recipes=recipes, axes=axes, base=base)
    spec.points = expand(spec, base_vals)
    spec.raw = data
    return spec


def _strip(err: Exception) -> str:
    msg = str(err)
    return msg.split(": ", 1)[1] if ": " in msg else msg


def _single(base, path, value):
    if path == "clock_hz" or "." in path:
        return base.with_overrides({path: value})
    raise ConfigError(f"{path!r} is not a hardware field")


def expand(spec: Spec, base_vals: dict) -> list[Point]:
    """The spec's points in a fixed order; every combination's config validated."""
    combos: list[tuple[str, dict]] = []
    paths = list(spec.axes)
    if spec.mode == "grid":
        value_lists = [spec.axes[p] if isinstance(spec.axes[p], list)
                       else _expand_range(spec.path, p, spec.axes[p], base_vals[p], "grid")
                       for p in paths]
        n = len(spec.recipes) * math.prod(len(v) for v in value_lists)
        if n > MAX_POINTS:
            raise ConfigError(f"{spec.path}: {n} points is more than {MAX_POINTS}; use mode = \"random\"")
        for rname in spec.recipes:
            for combo in itertools.product(*value_lists):
                combos.append((rname, dict(zip(paths, combo))))
    else:
        rng = np.random.default_rng(spec.seed)
        names = list(spec.recipes)
        for _ in range(spec.samples):
            rname = names[int(rng.integers(len(names)))]
            hw = {}
            for p in paths:
                ax = spec.axes[p]
                hw[p] = ax[int(rng.integers(len(ax)))] if isinstance(ax, list) \
                    else _draw(rng, ax, spec.path, p, base_vals[p])
            combos.append((rname, hw))
    digests = {r: recipe_digest(v) for r, v in spec.recipes.items()}
    points, seen = [], set()
    for rname, hw in combos:
        try:
            cfg = spec.base.with_overrides(hw) if hw else spec.base
        except ConfigError as err:
            raise ConfigError(f"{spec.path}: [hw] combination {hw} is not a valid chip: "
                              f"{_strip(err)}") from None
        key = point_key(spec.evaluator, spec.options, digests[rname], cfg)
        if key in seen:      # random draws may repeat a point; grids cannot
            continue
        seen.add(key)
        points.append(Point(key=key, recipe=rname, hw=hw, config=cfg))
    return points
