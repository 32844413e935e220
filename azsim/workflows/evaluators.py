"""Evaluators: what a sweep computes at one point, split at the hardware boundary.

An evaluator has two stages so that hardware points sharing a recipe share its model work:

    art = ev.prepare(recipe_name, recipe)   # hardware-independent (quantize, compress); once per recipe
    row = ev.evaluate(art, config)          # one chip (HwConfig); returns a flat dict of metrics
    det = ev.detail(art, config)            # optional: per-layer / per-frame data for reports

`art` must pickle (it travels to worker processes and Dask workers). Class methods check
options and recipes before any work starts (ConfigError naming the spec file and field).

Built in:
  layer  a stack of GEMM layers (`azsim layer` shapes) run once per frame as frames arrive
         every frame_ms: random weights per recipe (bits, format, sparsity), exact engine timing
  score  the shipped RNN-T through `azsim score` (azsim.workflows.score)
Any other name is imported as "package.module:Class".
"""
from __future__ import annotations

import importlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from azsim.errors import ConfigError

BUILTIN = {"layer": "azsim.workflows.evaluators:LayerEvaluator",
           "score": "azsim.workflows.evaluators:ScoreEvaluator"}


def get_evaluator_class(name: str, where: str = "evaluator"):
    target = BUILTIN.get(name, name)
    if ":" not in target:
        raise ConfigError(f"{where} = {name!r}: unknown evaluator (allowed: {', '.join(BUILTIN)}, "
                          "or package.module:Class)")
    mod_name, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(mod_name)
        cls = getattr(mod, attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{where} = {name!r}: cannot import it ({err})") from None
    for m in ("prepare", "evaluate", "check_options", "check_recipe"):
        if not hasattr(cls, m):
            raise ConfigError(f"{where} = {name!r}: {target} has no {m}() (not an evaluator)")
    return cls


def make_evaluator(name: str, options: dict):
    return get_evaluator_class(name)(options)


class Evaluator:
    """Base: override prepare/evaluate; optionally detail, check_options, check_recipe."""
    OPTIONS: dict[str, Any] = {}

    def __init__(self, options: dict):
        self.options = {**self.OPTIONS, **options}

    @classmethod
    def check_options(cls, options: dict, where: str) -> dict:
        unknown = set(options) - set(cls.OPTIONS)
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(unknown))} "
                              f"(allowed: {', '.join(cls.OPTIONS) or 'none'})")
        return dict(options)

    @classmethod
    def check_recipe(cls, value, where: str):
        return value

    @classmethod
    def default_recipes(cls) -> dict:
        return {}

    def prepare(self, recipe_name: str, recipe) -> Any:
        raise NotImplementedError

    def evaluate(self, art, config) -> dict:
        raise NotImplementedError

    def detail(self, art, config) -> dict:
        return {}


# --- layer: GEMM stacks ----------------------------------------------------------------

_LAYER_RECIPE_KEYS = ("bits", "format", "sparsity")


class LayerEvaluator(Evaluator):
    """A stack of GEMMs (M, K, N), each with its own input, run once per frame.

    options: layers = [[M, K, N], ...] (default: three RNN-T-sized layers),
             frames (default 10), frame_ms (default 30.0), seed (default 0)
    recipe:  { bits = 8 | 4, format = "dense" | "bitmask" | ..., sparsity = [0, 1) }
    Metrics follow `azsim score`'s names where they mean the same thing: latency_ms (mean
    over frames, arrival to end of work), latency_ms_p95, energy_mj (all frames),
    weight_bytes, peak_sram_bytes (resident weights + the streaming double buffer),
    offchip_bytes_per_s (per second of frames), rtf (chip busy time / frames' time).
    """
    OPTIONS = {"layers": [[1, 320, 1024], [1, 256, 1024], [1, 160, 32]], "frames": 10,
               "frame_ms": 30.0, "seed": 0}

    @classmethod
    def check_options(cls, options: dict, where: str) -> dict:
        opts = super().check_options(options, where)
        full = {**cls.OPTIONS, **opts}
        layers = full["layers"]
        if not isinstance(layers, list) or not layers:
            raise ConfigError(f"{where} layers: must be a non-empty list of [M, K, N]")
        for i, l in enumerate(layers):
            if (not isinstance(l, list) or len(l) != 3
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65536 for v in l)):
                raise ConfigError(f"{where} layers[{i}] = {l!r}: must be [M, K, N], integers in [1, 65536]")
        f = full["frames"]
        if isinstance(f, bool) or not isinstance(f, int) or not 1 <= f <= 10000:
            raise ConfigError(f"{where} frames = {f!r}: must be an integer in [1, 10000]")
        fm = full["frame_ms"]
        if isinstance(fm, bool) or not isinstance(fm, (int, float)) or not 0.01 <= fm <= 10000:
            raise ConfigError(f"{where} frame_ms = {fm!r}: must be a number in [0.01, 10000] ms")
        s = full["seed"]
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"{where} seed = {s!r}: must be an integer >= 0")
        return opts

    @classmethod
    def check_recipe(cls, value, where: str):
        from azsim import compress

        if not isinstance(value, dict):
            raise ConfigError(f"{where}: a layer recipe is a table {{ bits = 8, format = \"dense\", "
                              f"sparsity = 0.0 }}, got {value!r}")
        unknown = set(value) - set(_LAYER_RECIPE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                              f"(allowed: {', '.join(_LAYER_RECIPE_KEYS)})")
        bits = value.get("bits", 8)
        if bits not in (4, 8) or isinstance(bits, bool):
            raise ConfigError(f"{where}: bits = {bits!r} (allowed: 4, 8)")
        fmt = value.get("format", "int4" if bits == 4 else "dense")
        try:
            compress.check_format(fmt, field=f"{where}: format")
        except ConfigError as err:
            raise ConfigError(str(err)) from None
        sp = value.get("sparsity", 0.0)
        if isinstance(sp, bool) or not isinstance(sp, (int, float)) or not 0.0 <= sp < 1.0:
            raise ConfigError(f"{where}: sparsity = {sp!r} (allowed: [0, 1))")
        return {"bits": int(bits), "format": fmt, "sparsity": float(sp)}

    @classmethod
    def default_recipes(cls) -> dict:
        return {"int8": {"bits": 8, "format": "dense", "sparsity": 0.0}}

    def prepare(self, recipe_name: str, recipe) -> dict:
        """Weights and inputs per layer (hardware-independent), with their compressed sizes."""
        from azsim import compress
        from azsim.cli_layer import random_layer

        layers = []
        for i, (M, K, N) in enumerate(self.options["layers"]):
            w, x = random_layer(M, K, N, recipe["bits"], recipe["sparsity"], recipe["format"],
                                int(self.options["seed"]) + i)
            size = compress.size_bytes(w, recipe["format"], recipe["bits"])
            layers.append({"name": f"l{i}", "w": w, "x": x, "compressed_bytes": int(size)})
        return {"recipe": recipe_name, **recipe, "layers": layers}

    def _run(self, art, config):
        from azsim import reference as ref
        from azsim.compile import compile as compile_graph
        from azsim.engine import Session
        from azsim.graph import Graph

        if config.mac_array.bits != art["bits"]:
            config = config.with_overrides({"mac_array.bits": art["bits"]})
        g = Graph("layers")
        inputs = {}
        for L in art["layers"]:
            N, K = L["w"].shape
            xin = g.input("x_" + L["name"], K)
            mult, shift = ref.quantize_multiplier(np.full(N, 1.0 / (64.0 * K)))
            y = g.matmul(xin, L["w"], mult=mult, shift=shift, bits=art["bits"], format=art["format"],
                         name=L["name"])
            g.output(y)
            inputs["x_" + L["name"]] = L["x"]
        prog = compile_graph(g, config)
        sess = Session(prog)
        clock = config.clock_hz
        frame_cycles = self.options["frame_ms"] * 1e-3 * clock
        frames = []
        for f in range(int(self.options["frames"])):
            arrival = int(round(f * frame_cycles))
            r = sess.run(inputs, arrival_cycle=arrival)
            frames.append((arrival, r.start_cycle, r.end_cycle))
        return prog, sess, frames, config

    def evaluate(self, art, config) -> dict:
        prog, sess, frames, config = self._run(art, config)
        st = sess.totals().to_dict(per_op=False)
        clock = config.clock_hz
        lat_ms = np.array([(e - a) / clock * 1e3 for a, _, e in frames])
        audio_s = len(frames) * self.options["frame_ms"] * 1e-3
        streamed = [w.max_tile_bytes for w in prog.weights if not w.resident]
        return {
            "latency_ms": float(lat_ms.mean()),
            "latency_ms_p95": float(np.percentile(lat_ms, 95)),
            "energy_mj": st["energy_pj"]["total"] * 1e-9,
            "weight_bytes": int(prog.weight_bytes),
            "peak_sram_bytes": int(prog.resident_bytes + 2 * max(streamed, default=0)),
            "offchip_bytes_per_s": st["offchip_bytes"] / audio_s,
            "rtf": st["cycles"] / clock / audio_s,
            "cycles": int(st["cycles"]),
            "compute_cycles": int(st["compute_cycles"]),
            "macs": int(st["macs"]),
        }

    def detail(self, art, config) -> dict:
        prog, sess, frames, config = self._run(art, config)
        d = sess.totals().to_dict(per_op=True)
        clock = config.clock_hz
        layers = []
        for op in d["ops"]:
            if op["kind"] != "matmul":
                continue
            layers.append({"name": op["name"], "macs": op["macs"], "cycles": op["cycles"],
                           "offchip_bytes": op["offchip_read_bytes"] + op["offchip_write_bytes"]})
        return {
            "clock_hz": clock,
            "peak_macs_per_s": config.mac_array.macs * clock,
            "offchip_bytes_per_s_peak": config.offchip.bytes_per_cycle * clock,
            "layers": layers,
            "frame_ms": float(self.options["frame_ms"]),
            "frames": [{"arrival_ms": a / clock * 1e3, "start_ms": s / clock * 1e3,
                        "end_ms": e / clock * 1e3} for a, s, e in frames],
            "energy_mj_by_component": {k: v * 1e-9 for k, v in d["energy_pj"].items() if k != "total"},
        }


# --- score: the shipped RNN-T ---------------------------------------------------------------

class ScoreEvaluator(Evaluator):
    """`azsim score` per point. prepare() quantizes the model with the recipe once (calibration
    included) and keeps the quantized model's bytes; evaluate() compiles it for the point's chip
    and runs the test subset through it.

    options: model (default: the shipped model), subset (test_clean), limit (utterances),
             beam (4), corpus (a built corpus directory; default: the model's)
    recipe:  a recipe TOML path (relative to the spec file or the working directory)
    """
    OPTIONS = {"model": None, "subset": "test_clean", "limit": None, "beam": 4, "corpus": None}

    @classmethod
    def check_options(cls, options: dict, where: str) -> dict:
        from azsim.workflows import score as score_mod

        opts = super().check_options(options, where)
        full = {**cls.OPTIONS, **opts}
        if full["subset"] not in score_mod.SUBSETS:
            raise ConfigError(f"{where} subset = {full['subset']!r} (allowed: {', '.join(score_mod.SUBSETS)})")
        for k in ("limit", "beam"):
            v = full[k]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{where} {k} = {v!r}: must be an integer >= 1")
        model = Path(full["model"]) if full["model"] else score_mod.DEFAULT_MODEL
        if not model.is_file():
            raise ConfigError(f"{where} model: {model}: model file not found")
        return opts

    @classmethod
    def check_recipe(cls, value, where: str):
        from asr.quant import recipe as recipe_mod

        if not isinstance(value, str):
            raise ConfigError(f"{where}: a score recipe is a path to a recipe TOML, got {value!r}")
        try:
            recipe_mod.load(value)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        return str(Path(value).resolve())

    def _model(self) -> Path:
        from azsim.workflows import score as score_mod
        return Path(self.options["model"]) if self.options["model"] else score_mod.DEFAULT_MODEL

    def prepare(self, recipe_name: str, recipe) -> dict:
        from asr.quant import ptq
        from asr.quant import recipe as recipe_mod
        from asr.quant.qmodel import QuantModel, load_any
        from azsim.workflows import score as score_mod

        model = self._model()
        rec = recipe_mod.load(recipe)
        m = load_any(model)
        corpus_dir = score_mod._corpus_dir(model, self.options["corpus"], None)
        qm = m if isinstance(m, QuantModel) else ptq.quantize_from_corpus(m, rec, corpus_dir, source=str(model))
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "q.npz"
            qm.save(p)
            blob = p.read_bytes()
        return {"recipe": recipe_name, "recipe_path": recipe, "qmodel_npz": blob,
                "corpus": str(corpus_dir)}

    _files: dict = {}

    def _qmodel_path(self, art) -> str:
        import hashlib
        key = hashlib.sha256(art["qmodel_npz"]).hexdigest()[:16]
        path = self._files.get(key)
        if path is None or not os.path.exists(path):
            fd, path = tempfile.mkstemp(prefix=f"azsim-q-{key}-", suffix=".npz")
            with os.fdopen(fd, "wb") as f:
                f.write(art["qmodel_npz"])
            self._files[key] = path
        return path

    @staticmethod
    def _preset_path(config) -> str:
        import tomli_w
        d = config.to_dict()
        fd, path = tempfile.mkstemp(prefix="azsim-hw-", suffix=".toml")
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(d, f)
        return path

    def _score(self, art, config, per_utterance=False) -> dict:
        from azsim.workflows.score import score

        preset = self._preset_path(config)
        try:
            return score(model=self._qmodel_path(art), recipe=art["recipe_path"], preset=preset,
                         subset=self.options["subset"], limit=self.options["limit"],
                         beam=self.options["beam"], corpus=art["corpus"], progress=False,
                         per_utterance=per_utterance)
        finally:
            os.unlink(preset)

    def evaluate(self, art, config) -> dict:
        r = self._score(art, config)
        out = {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for k, v in r.get("energy_mj_by_component", {}).items():
            out[f"energy_mj.{k}"] = v
        return out

    def detail(self, art, config) -> dict:
        r = self._score(art, config, per_utterance=True)
        utt = (r.get("utterances") or [{}])[0]
        det = {"clock_hz": config.clock_hz, "peak_macs_per_s": config.mac_array.macs * config.clock_hz,
               "offchip_bytes_per_s_peak": config.offchip.bytes_per_cycle * config.clock_hz,
               "energy_mj_by_component": r.get("energy_mj_by_component", {}), "frame_ms": 30.0}
        frames = utt.get("frames")
        if frames:
            det["frames"] = frames
        if utt.get("layers"):
            det["layers"] = utt["layers"]
        return det
