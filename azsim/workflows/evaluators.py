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
            **{f"energy_mj.{k}": v * 1e-9 for k, v in st["energy_pj"].items() if k != "total"},
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
    """`azsim score` per point, with the hardware-independent work done once per recipe.

    prepare(): quantizes the model with the recipe (calibration included) and, with replay on
    (the default), decodes the test utterances once on a chip, recording every chip call the
    beam search makes (program, integer inputs, frame). The chip's integer outputs are exact and
    do not depend on timing parameters, so the hypotheses, WER and the call sequence are the same
    on every chip. evaluate(): compiles the quantized model for the point's chip and replays the
    recorded calls on it with the frames arriving in real time: cycles, latency, traffic and
    energy of that chip, without redoing quantization or the beam search.
    With replay = false each point runs azsim score's own pipeline (the cross-check).

    options: model (default: the shipped model), subset (test_clean), limit (utterances),
             beam (4), corpus (a built corpus directory; default: the model's), replay (true)
    recipe:  a recipe TOML path (relative to the spec file or the working directory)
    """
    OPTIONS = {"model": None, "subset": "test_clean", "limit": None, "beam": 4, "corpus": None,
               "replay": True}

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
        if not isinstance(full["replay"], bool):
            raise ConfigError(f"{where} replay = {full['replay']!r}: must be true or false")
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
        art = {"recipe": recipe_name, "recipe_path": recipe, "qmodel_npz": blob, "corpus": str(corpus_dir)}
        if self.options["replay"]:
            art["trace"] = _record(qm, corpus_dir, self.options)
        return art

    _files: dict = {}
    _qmodels: dict = {}

    def _qmodel(self, art):
        """The quantized model, loaded once per process."""
        from asr.quant.qmodel import load_any

        path = self._qmodel_path(art)
        qm = self._qmodels.get(path)
        if qm is None:
            qm = self._qmodels[path] = load_any(Path(path))
        return qm

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
        if "trace" in art:
            return _replay(self._qmodel(art), art["trace"], config, int(self.options["beam"]))
        r = self._score(art, config)
        out = {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for k, v in r.get("energy_mj_by_component", {}).items():
            out[f"energy_mj.{k}"] = v
        return out

    def detail(self, art, config) -> dict:
        """One test utterance on this chip: per-frame timeline, per-op roofline figures, energy
        by component (same pipeline as score(): warm-up first, then frame by frame)."""
        import numpy as np

        from asr.data import corpus as corpus_mod
        from asr.features import stack_frames
        from asr.stream import make_search
        from azsim.engine import Stats
        from azsim.workflows import score as score_mod

        preset = self._preset_path(config)
        try:
            cm, *_ = score_mod.prepare(self._qmodel_path(art), art["recipe_path"], preset, art["corpus"])
        finally:
            os.unlink(preset)
        score_mod._warm_up(cm)
        utt = corpus_mod.load_subset(art["corpus"], self.options["subset"])[0]
        before = {p: cm.sessions[p].totals().counters.copy() for p in cm.sessions}
        x = stack_frames(np.asarray(utt.feats, np.float32))
        u = cm.start_utterance()
        search = make_search(cm, int(self.options["beam"]))
        state = cm.encoder_init()
        for t in range(x.shape[0]):
            enc, state = cm.encode(x[t:t + 1], state)
            search.advance(enc)
        frames = [(f.arrival_cycle, f.start_cycle, f.end_cycle) for f in u.frames]
        base = u.base_cycle
        r = cm.finish_utterance()
        clock = config.clock_hz
        layers = []
        for p, sess in cm.sessions.items():
            prog = sess.program
            st = Stats(prog.op_names, prog.op_kinds, sess.totals().counters - before[p], clock)
            for op in st.to_dict(per_op=True)["ops"]:
                if op["macs"] > 0:
                    layers.append({"name": f"{p}.{op['name']}", "macs": op["macs"], "cycles": op["cycles"],
                                   "offchip_bytes": op["offchip_read_bytes"] + op["offchip_write_bytes"]})
        return {
            "clock_hz": clock, "peak_macs_per_s": config.mac_array.macs * clock,
            "offchip_bytes_per_s_peak": config.offchip.bytes_per_cycle * clock,
            "layers": layers, "frame_ms": 30.0, "utterance": utt.text,
            "frames": [{"arrival_ms": (a - base) / clock * 1e3, "start_ms": (s - base) / clock * 1e3,
                        "end_ms": (e - base) / clock * 1e3} for a, s, e in frames],
            "energy_mj_by_component": {k: v for k, v in r["energy_mj"].items() if k != "total"},
        }


# --- record once, replay per chip ------------------------------------------------------------
def _recording_chip_class():
    from asr.chip import ChipRNNT

    class RecordingChip(ChipRNNT):
        """ChipRNNT that keeps every call of the current utterance: (program, inputs, frame)."""
        calls = None

        def _run(self, prog, inputs, arrival=None):
            if self.calls is not None:
                t = None
                if arrival is not None:    # encoder call of frame t (see ChipRNNT.encode_int)
                    t = int(round((arrival - self.utt.base_cycle - self.first_frame_cycles) / self.frame_cycles))
                self.calls.append((prog, {k: np.array(v, copy=True) for k, v in inputs.items()}, t))
            return super()._run(prog, inputs, arrival)

    return RecordingChip


def _record(qm, corpus_dir, options) -> dict:
    """Decode the test utterances once (chip in the loop) and keep what every chip shares."""
    from asr.data import corpus as corpus_mod
    from asr.features import stack_frames
    from asr.metrics import error_rates
    from asr.stream import make_search
    from azsim import hw
    from azsim.errors import ConfigError
    from azsim.workflows import score as score_mod

    utts = corpus_mod.load_subset(corpus_dir, options["subset"])
    if options["limit"]:
        utts = utts[:options["limit"]]
    if not utts:
        raise ConfigError(f"{corpus_dir}: subset {options['subset']!r} has no utterances")
    cm = _recording_chip_class()(qm, hw.load("default"))
    score_mod._warm_up(cm)
    out, refs, hyps = [], [], []
    for utt in utts:
        x = stack_frames(np.asarray(utt.feats, np.float32))
        cm.start_utterance()
        cm.calls = []
        search = make_search(cm, int(options["beam"]))
        state = cm.encoder_init()
        for t in range(x.shape[0]):
            enc, state = cm.encode(x[t:t + 1], state)
            search.advance(enc)
        text = search.nbest()[0].text
        cm.finish_utterance()
        out.append({"calls": cm.calls, "audio_s": float(utt.duration_s)})
        cm.calls = None
        refs.append(utt.text)
        hyps.append(text)
    er = error_rates(refs, hyps)
    return {"utterances": out, "wer": er["wer"], "cer": er["cer"], "word_errors": er["word_errors"],
            "ref_words": er["ref_words"], "n": len(utts)}


def _replay(qm, trace: dict, config, beam: int) -> dict:
    """The recorded calls on this chip, frames arriving in real time; figures as azsim score
    computes them (tests/test_sweep.py checks they are equal)."""
    import time

    from asr.chip import ChipRNNT, FrameRecord
    from azsim.workflows import score as score_mod

    t_setup = time.perf_counter()
    cm = ChipRNNT(qm, config)
    warm_bytes = score_mod._warm_up(cm)
    setup_s = time.perf_counter() - t_setup
    rows = []
    t0 = time.perf_counter()
    for u in trace["utterances"]:
        cm.start_utterance()
        base = cm.utt.base_cycle
        for prog, inputs, t in u["calls"]:
            if t is None:
                cm._run(prog, inputs)
            else:
                arrival = int(base + cm.first_frame_cycles + t * cm.frame_cycles)
                res = cm._run(prog, inputs, arrival)
                cm.utt.frames.append(FrameRecord(t, arrival, res.start_cycle, res.end_cycle))
        rows.append(score_mod.utterance_figures(cm, cm.finish_utterance(), u["audio_s"]))
    host_s = time.perf_counter() - t0
    out = {"n": trace["n"], "wer": trace["wer"], "cer": trace["cer"], "word_errors": trace["word_errors"],
           "ref_words": trace["ref_words"], **score_mod.chip_figures(cm, qm, rows, beam),
           "warmup_offchip_bytes": warm_bytes, "host_s": host_s, "setup_s": setup_s}
    out["sim_speed_x"] = out["audio_s"] / host_s if host_s > 0 else 0.0
    for c in rows[0]["energy_mj"]:
        out[f"energy_mj.{c}"] = float(np.mean([r["energy_mj"][c] for r in rows]))
    return out
