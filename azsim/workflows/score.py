"""`azsim score`: what a compression recipe costs and buys, measured on the simulated chip.

    report = score(model="models/shipped/model.npz", recipe="recipes/int8.toml",
                   preset="default", subset="test_clean", limit=None, beam=4)

Pipeline: load and validate the recipe and the hardware preset -> load the model (a float
export is quantized here with the recipe, calibrated on the corpus's dev utterances; a
quantized .npz is used as is) -> compile encoder / predictor / joint programs for the chip
(asr.chip.ChipRNNT) -> for each test utterance: frames arrive every 30 ms, the encoder runs
per frame on the chip, the beam search runs on the host and scores every hypothesis with the
chip's joint and predictor -> WER from the chip's own outputs (asr.metrics, jiwer) and the
chip's counters per utterance.

Before the first utterance one warm-up call per program loads the resident weights, so
per-utterance figures are steady state (the one-time load is reported as warmup_offchip_bytes).

Energy per utterance is the engine's count (dynamic energy + leakage while the chip is busy);
`energy_idle_leakage_mj` adds leakage for the idle rest of the utterance's audio time for
chips that are not power-gated between frames. Host time of the beam search is not modelled.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "shipped" / "model.npz"
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "int8.toml"
SUBSETS = ("test_clean", "test_noisy", "test_fsdd")


def _corpus_dir(model_path, corpus, config):
    from asr.cli import eval_config
    from asr.data import corpus as corpus_mod
    from azsim.errors import ConfigError

    if corpus is not None:
        d = Path(corpus)
        if not (d / "dev.jsonl").exists() and not any(d.glob("test_*.jsonl")):
            raise ConfigError(f"--corpus: {d} is not a built corpus directory (no *.jsonl manifests)")
        return d
    cfg, _ = eval_config(str(model_path), config)
    cache_dir = cfg.get("train", {}).get("cache_dir") or None
    # dev (calibration) and the test sets: no need to synthesize the training set to score
    return corpus_mod.build(cfg["data"], cache_dir, subsets=("dev",) + SUBSETS)


def _p95(values) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, np.float64), 95)) if len(values) else 0.0


def resolve_model(model, rec) -> Path:
    """The model to score: the one given, else the recipe's (made by its `build` fine-tunes
    when missing), else the shipped model."""
    if model is not None:
        return Path(model)
    path = rec.model_path() or DEFAULT_MODEL
    if rec.builds_its_model():   # made when missing, remade when its config or init model changed
        from asr.train.compress_train import ensure_built
        ensure_built(rec.build)
    return path


def prepare(model=None, recipe=None, preset="default", corpus=None, config=None):
    """(ChipRNNT, QuantModel, float model or None, recipe, hw config, corpus dir, model path)."""
    from asr.chip import ChipRNNT
    from asr.quant import ptq
    from asr.quant import recipe as recipe_mod
    from asr.quant.qmodel import QuantModel, load_any
    from azsim import hw

    rec = recipe_mod.load(recipe if recipe is not None else DEFAULT_RECIPE)   # cheap errors first
    cfg = hw.load(preset)
    model = resolve_model(model, rec)
    m = load_any(model)
    corpus_dir = None
    if isinstance(m, QuantModel):
        qm, fm = m, None
    else:
        fm = m
        corpus_dir = _corpus_dir(model, corpus, config)
        qm = ptq.quantize_from_corpus(fm, rec, corpus_dir, source=str(model))
    return ChipRNNT(qm, cfg), qm, fm, rec, cfg, corpus_dir, model


def utterance_figures(cm, r: dict, audio_s: float) -> dict:
    """Complete ChipRNNT.finish_utterance()'s figures with the utterance's audio duration."""
    r["audio_s"] = audio_s
    r["offchip_bytes_per_s"] = r["offchip_bytes"] / audio_s
    r["rtf"] = r["chip_busy_s"] / audio_s
    leak_mw = float(cm.programs["encoder"].hw["leakage_mw"])
    r["energy_idle_leakage_mj"] = leak_mw * max(0.0, audio_s - r["chip_busy_s"])  # mW * s = mJ
    return r


def chip_figures(cm, qm, rows: list[dict], beam: int) -> dict:
    """The scalar figures of a scored run: the model on this chip (bytes, SRAM) and the
    per-utterance rows (utterance_figures) aggregated. azsim score and the sweep's replay
    both report these, so one function computes them."""
    import numpy as np

    audio_s = sum(r["audio_s"] for r in rows)
    lat = [r["latency_ms"] for r in rows]
    sram = cm.sram_bytes(beam)
    n_params = qm.n_params()
    return {
        "weight_bytes": cm.weight_bytes(), "flash_bytes": cm.param_bytes(), "float32_bytes": 4 * n_params,
        "weight_bytes_vs_float32": cm.weight_bytes() / (4 * n_params), "params": n_params,
        "peak_sram_bytes": sram["peak_sram_bytes"], "weight_sram_bytes": sram["weight_sram_bytes"],
        "act_sram_bytes": sram["act_sram_bytes"],
        "resident_bytes": int(sum(cm.programs[p].resident_bytes for p in cm.programs)),
        "streamed_weight_bytes": int(sum(cm.programs[p].streamed_bytes for p in cm.programs)),
        "latency_ms": float(np.mean(lat)), "latency_ms_p95": _p95(lat),
        "latency_ms_max": float(np.max(lat)),
        "max_backlog_ms": float(max(r["max_backlog_ms"] for r in rows)),
        "energy_mj": float(np.mean([r["energy_mj"]["total"] for r in rows])),
        "energy_idle_leakage_mj": float(np.mean([r["energy_idle_leakage_mj"] for r in rows])),
        "cycles": float(np.mean([r["cycles"] for r in rows])),
        "compute_cycles": float(np.mean([r["compute_cycles"] for r in rows])),
        "offchip_bytes_per_s": sum(r["offchip_bytes"] for r in rows) / audio_s,
        "macs_per_s": sum(r["macs"] for r in rows) / audio_s,
        "macs_executed_per_s": sum(r["macs_executed"] for r in rows) / audio_s,
        "rtf": sum(r["chip_busy_s"] for r in rows) / audio_s,
        "audio_s": audio_s,
    }


def _warm_up(cm) -> int:
    """One call per program: resident weights come in from off-chip memory once."""
    import numpy as np

    before = sum(cm._totals(p) for p in ("encoder", "predictor", "joint"))
    st = cm.encoder_init()
    cm.encode(np.zeros((1, cm.input_dim), np.float32) + cm.qm.feat_mean, st)
    pred, _ = cm.predict(cm.blank, cm.predictor_init())
    cm.joint(np.zeros(cm.joint_dim, np.float32), pred)
    from azsim.engine import counter_names
    after = sum(cm._totals(p) for p in ("encoder", "predictor", "joint"))
    i = counter_names().index("offchip_read_bytes")
    return int(after[i] - before[i])


def score(model=None, recipe=None, preset="default", subset="test_clean", limit=None, beam=4,
          corpus=None, config=None, compare_float=False, per_utterance=False, progress=True,
          save_quantized=None) -> dict:
    import numpy as np
    from tqdm import tqdm

    from asr.data import corpus as corpus_mod
    from asr.features import stack_frames
    from asr.metrics import digit_accuracy, error_rates
    from asr.stream import decode_features, make_search
    from azsim.errors import ConfigError

    if subset not in SUBSETS:
        raise ConfigError(f"--subset: {subset!r} (allowed: {', '.join(SUBSETS)})")
    if not isinstance(beam, int) or beam < 1:
        raise ConfigError(f"--beam: {beam!r} (allowed: an integer >= 1)")
    t_setup = time.perf_counter()
    cm, qm, fm, rec, hwcfg, corpus_dir, model = prepare(model, recipe, preset, corpus, config)
    if save_quantized:
        qm.save(save_quantized)
    if corpus_dir is None:
        corpus_dir = _corpus_dir(model, corpus, config)
    utts = corpus_mod.load_subset(corpus_dir, subset)
    if limit:
        utts = utts[:limit]
    if not utts:
        raise ConfigError(f"{corpus_dir}: subset {subset!r} has no utterances")
    warm_bytes = _warm_up(cm)
    setup_s = time.perf_counter() - t_setup

    # A quantized model file carries its own recipe; the --recipe given is not applied to it.
    rec_name = rec.name if fm is not None else qm.meta.get("recipe", {}).get("name", "?")
    rec_file = rec.source if fm is not None else qm.meta.get("recipe", {}).get("source", "?")
    refs, hyps, float_hyps, rows = [], [], [], []
    host_s = cpu_s = 0.0
    for utt in tqdm(utts, desc=f"score {rec_name}", unit="utt", file=sys.stderr,
                    disable=not progress, leave=False):
        x = stack_frames(np.asarray(utt.feats, np.float32))
        t0, c0 = time.perf_counter(), time.process_time()
        cm.start_utterance()
        search = make_search(cm, beam)
        state = cm.encoder_init()
        for t in range(x.shape[0]):          # frame by frame, as the audio arrives
            enc, state = cm.encode(x[t:t + 1], state)
            search.advance(enc)
        text = search.nbest()[0].text
        r = cm.finish_utterance()
        host_s += time.perf_counter() - t0
        cpu_s += time.process_time() - c0
        r = utterance_figures(cm, r, float(utt.duration_s))
        r["text"], r["ref"] = text, utt.text
        rows.append(r)
        refs.append(utt.text)
        hyps.append(text)
        if compare_float and fm is not None:
            float_hyps.append(decode_features(fm, x, beam=beam).text)

    er = error_rates(refs, hyps)
    audio_s = sum(r["audio_s"] for r in rows)
    report = {
        "model": str(model),
        "recipe": rec_name, "recipe_file": rec_file, "quantized_here": fm is not None, "preset": hwcfg.name, "subset": subset,
        "corpus": str(corpus_dir), "n": len(rows), "beam": beam, "limit": limit,
        "wer": er["wer"], "cer": er["cer"], "word_errors": er["word_errors"],
        "ref_words": er["ref_words"],
        **chip_figures(cm, qm, rows, beam),
        "formats": {k: v[0] for k, v in cm.formats.items()},
        "sparsity": {k: round(float(v["sparsity"]), 4) for k, v in qm.layer_meta.items()},
        "energy_mj_by_component": {c: float(np.mean([r["energy_mj"][c] for r in rows])) for c in rows[0]["energy_mj"]},
        "energy_mj_by_program": {p: float(np.mean([r["energy_mj_by_program"][p] for r in rows]))
                                 for p in rows[0]["energy_mj_by_program"]},
        "calls_per_s": {p: sum(r["calls"][p] for r in rows) / audio_s for p in rows[0]["calls"]},
        "warmup_offchip_bytes": warm_bytes,
        "host_s": host_s, "setup_s": setup_s,
        "sim_speed_x": audio_s / host_s if host_s > 0 else None,
        # CPU time of this process: the speed on one core even when other jobs share the host
        "host_cpu_s": cpu_s, "sim_speed_x_cpu": audio_s / cpu_s if cpu_s > 0 else None,
        "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:3]],
    }
    if subset == "test_fsdd":
        report["digit_accuracy"] = digit_accuracy(refs, hyps)
    if compare_float and fm is not None:
        fe = error_rates(refs, float_hyps)
        report["float_wer"] = fe["wer"]
        report["wer_delta_vs_float"] = er["wer"] - fe["wer"]
    if per_utterance:
        report["utterances"] = rows
    return report


def format_report(r: dict) -> str:
    e = r["energy_mj_by_component"]
    lines = [
        f"azsim score: recipe {r['recipe']} on preset {r['preset']}, {r['subset']} "
        f"({r['n']} utterances, {r['audio_s']:.1f} s of audio, beam {r['beam']})",
        f"  WER                  {100 * r['wer']:.2f} %" + (
            f"   (float {100 * r['float_wer']:.2f} %)" if "float_wer" in r else ""),
        f"  weight bytes         {r['weight_bytes']:,} ({100 * r['weight_bytes_vs_float32']:.1f} % of "
        f"float32 {r['float32_bytes']:,}); flash with constants {r['flash_bytes']:,}",
        f"  peak SRAM            {r['peak_sram_bytes']:,} bytes (weights {r['weight_sram_bytes']:,}, "
        f"activations {r['act_sram_bytes']:,})",
        f"  latency              mean {r['latency_ms']:.3f} ms, p95 {r['latency_ms_p95']:.3f} ms "
        f"(end of speech -> final result); max backlog {r['max_backlog_ms']:.3f} ms",
        f"  energy / utterance   {r['energy_mj']:.4f} mJ (" + ", ".join(
            f"{k} {v:.4f}" for k, v in e.items() if k != "total") + f"); idle leakage "
        f"+{r['energy_idle_leakage_mj']:.3f} mJ",
        f"  off-chip traffic     {r['offchip_bytes_per_s'] / 1e6:.3f} MB per s of audio",
        f"  compute              {r['macs_per_s'] / 1e6:.1f} MMAC per s of audio, "
        f"{r['cycles']:.0f} cycles per utterance, chip RTF {r['rtf']:.5f}",
        f"  simulation speed     {r['sim_speed_x']:.1f}x real time on the host "
        f"({r['host_s']:.1f} s wall, {r['host_cpu_s']:.1f} s CPU = {r['sim_speed_x_cpu']:.1f}x, "
        f"for {r['audio_s']:.1f} s of audio)",
    ]
    return "\n".join(lines)
