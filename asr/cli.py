"""`azsim transcribe`, `azsim train` and `azsim eval`: the speech workload's commands.

Heavy imports (numpy, torch, the data pipeline) live inside the command functions so that
`azsim --help` stays fast and never imports torch.
"""
from __future__ import annotations

import sys
from pathlib import Path

from azsim.argtypes import positive_int
from azsim.tomlio import read_toml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "shipped" / "model.npz"
DEFAULT_CONFIG = REPO_ROOT / "configs" / "shipped.toml"
TEST_SUBSETS = ("test_clean", "test_noisy", "test_fsdd")
DIGIT_SUBSETS = ("test_fsdd",)


def register(subparsers) -> None:
    p = subparsers.add_parser("transcribe", help="recognize speech in WAV files",
                              description="Recognize speech in WAV files with the RNN-T (numpy inference).")
    p.add_argument("wavs", nargs="+", metavar="WAV", help="WAV files (8/16/22.05/44.1/48 kHz)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="exported .npz model (default: %(default)s)")
    p.add_argument("--beam", type=positive_int("--beam"), default=4,
                   help="beam width; 1 = greedy search (default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file and line: file, text, nbest, lattice_bytes, seconds, "
                        "decode_seconds")
    p.add_argument("--lattice", action="store_true", help="with --json, include the lattice itself")
    p.add_argument("--chunk-ms", type=positive_int("--chunk-ms"), default=None,
                   help="run the streaming recognizer on chunks of this many ms (default: offline; "
                        "the final result is the same)")
    p.set_defaults(func=cmd_transcribe)

    p = subparsers.add_parser("train", help="train an RNN-T from a config file",
                              description="Build/reuse the corpus named by [data], train per [model]/[train], "
                                          "export models/<name>/model.npz.")
    p.add_argument("config", metavar="CONFIG", help="TOML config, e.g. configs/shipped.toml")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming a checkpoint")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("compress", help="compression fine-tune (QAT, pruning, distillation) from a config",
                              description="Run configs/compress/*.toml one after another (python -m "
                                          "asr.train.compress_train): export models/compress/<name>/model.npz.")
    p.add_argument("config", nargs="+", metavar="CONFIG", help="e.g. configs/compress/qat-int8.toml")
    p.add_argument("--corpus", default=None, help="a built corpus directory (default: base_config's)")
    p.set_defaults(func=cmd_compress)

    p = subparsers.add_parser("eval", help="WER/CER of a model on the test subsets",
                              description="Decode the test subsets of the corpus the model was trained on "
                                          "(its config.toml [data], else configs/shipped.toml) and report "
                                          "WER/CER (digit accuracy on test_fsdd) and decode real-time factor.")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="exported .npz model (default: %(default)s)")
    p.add_argument("--subsets", nargs="+", choices=TEST_SUBSETS, default=list(TEST_SUBSETS),
                   help="subsets to decode (default: all three)")
    p.add_argument("--beam", type=positive_int("--beam"), default=4, help="beam width (default: %(default)s)")
    p.add_argument("--limit", type=positive_int("--limit"), default=None,
                   help="decode only the first N utterances of each subset")
    p.add_argument("--config", default=None,
                   help="config whose [data] names the corpus (default: the model's config.toml, "
                        "else configs/shipped.toml)")
    p.add_argument("--cache-dir", default=None, help="corpus cache directory (default: the data pipeline's)")
    p.add_argument("--corpus", default=None,
                   help="a built corpus directory to decode instead (e.g. another build of the same config)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--by-voice", action="store_true", help="also word errors per voice variant (speaker analysis)")
    p.set_defaults(func=cmd_eval)


def _load_model(path: str):
    from asr.model.numpy_rnnt import NumpyRNNT
    return NumpyRNNT.load(path)


# ------------------------------------------------------------------------------ transcribe
def cmd_transcribe(args) -> int:
    import json
    import time

    from asr.audio import load_wav
    from asr.stream import Recognizer, recognize

    import scipy.signal  # noqa: F401  (resampling; imported here so decode_seconds excludes it)

    model = _load_model(args.model)
    for wav in args.wavs:
        samples, rate_hz = load_wav(wav)
        t0 = time.perf_counter()
        if args.chunk_ms:
            rec = Recognizer(model, beam=args.beam)
            step = max(1, int(rate_hz * args.chunk_ms / 1000))
            for i in range(0, samples.shape[0], step):
                rec.accept_audio(samples[i:i + step], rate_hz)
            result = rec.finalize()
        else:
            result = recognize(model, samples, rate_hz, beam=args.beam)
        decode_s = time.perf_counter() - t0
        if args.json:
            out = {"file": str(wav), **result.as_dict(), "seconds": round(samples.shape[0] / rate_hz, 4),
                   "decode_seconds": round(decode_s, 4)}
            if args.lattice:
                out["lattice"] = result.lattice.to_dict()
            print(json.dumps(out), flush=True)
        else:
            print(f"{wav}: {result.text}", flush=True)
    return 0


# ------------------------------------------------------------------------------ train
def cmd_train(args) -> int:
    from azsim.errors import ConfigError
    if not Path(args.config).is_file():
        raise ConfigError(f"{args.config}: config file not found")
    from asr.train.loop import train_from_config
    print(train_from_config(args.config, resume=not args.no_resume))
    return 0


def cmd_compress(args) -> int:
    from asr.train.compress_train import run
    for c in args.config:
        run(c, corpus_dir=args.corpus)
    return 0


# ------------------------------------------------------------------------------ eval
def eval_config(model_path: str, config: str | None = None) -> tuple[dict, Path]:
    """The run config naming the model's corpus: --config, else the config.toml that
    `azsim train` copies next to model.npz, else configs/shipped.toml."""
    from azsim.errors import ConfigError
    candidates = [Path(config)] if config else [Path(model_path).parent / "config.toml", DEFAULT_CONFIG]
    for path in candidates:
        if path.is_file() or config:
            cfg = read_toml(path, "config")
            if not isinstance(cfg.get("data"), dict):
                raise ConfigError(f"{path}: missing section [data] (the corpus the model is evaluated on)")
            return cfg, path
    raise ConfigError(f"no config found for {model_path}: tried {', '.join(map(str, candidates))}")


def evaluate_subset(model, utterances, beam: int = 4, digits: bool = False, progress: bool = True,
                    desc: str = "", by_voice: bool = False) -> dict:
    """Decode cached (T, 80) features of one subset; metrics plus decode speed (and with
    by_voice, word errors per voice variant: the manifest's `variant`, e.g. "steph3" or
    "fsdd:theo")."""
    import time

    import numpy as np
    from tqdm import tqdm

    from asr.features import stack_frames
    from asr.metrics import subset_metrics
    from asr.stream import decode_features

    refs, hyps, decode_s, cpu_s, audio_s = [], [], 0.0, 0.0, 0.0
    for utt in tqdm(utterances, desc=desc, unit="utt", file=sys.stderr, disable=not progress, leave=False):
        feats = stack_frames(np.asarray(utt.feats, np.float32))
        t0, c0 = time.perf_counter(), time.process_time()
        result = decode_features(model, feats, beam=beam)
        decode_s += time.perf_counter() - t0
        cpu_s += time.process_time() - c0
        audio_s += float(utt.duration_s)
        refs.append(utt.text)
        hyps.append(result.text)
    out = subset_metrics(refs, hyps, digits=digits)
    if by_voice:
        from asr.metrics import error_rates
        groups: dict[str, list[int]] = {}
        for i, utt in enumerate(utterances):
            # eSpeak voices are grouped by variant (steph3 in every accent), FSDD by speaker
            key = (getattr(utt, "meta", None) or {}).get("variant") or str(getattr(utt, "voice", "?")).split("@")[0]
            groups.setdefault(key, []).append(i)
        out["by_voice"] = {}
        for voice, idx in sorted(groups.items()):
            er = error_rates([refs[i] for i in idx], [hyps[i] for i in idx])
            out["by_voice"][voice] = {"n": len(idx), "ref_words": er["ref_words"],
                                      "word_errors": er["word_errors"], "wer": er["wer"]}
    out.update({"audio_seconds": round(audio_s, 3), "decode_seconds": round(decode_s, 3),
                "rtf": round(decode_s / audio_s, 5) if audio_s else None,
                # CPU seconds (all threads) per audio second: robust to other jobs on the machine
                "decode_cpu_seconds": round(cpu_s, 3), "rtf_cpu": round(cpu_s / audio_s, 5) if audio_s else None,
                "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:3]]})
    return out


def cmd_eval(args) -> int:
    import json

    from asr.data import corpus

    model = _load_model(args.model)
    cfg, cfg_path = eval_config(args.model, args.config)
    cache_dir = args.cache_dir or cfg.get("train", {}).get("cache_dir") or None
    if args.corpus is not None:
        from azsim.errors import ConfigError
        corpus_dir = Path(args.corpus)
        missing = [s for s in args.subsets if not (corpus_dir / f"{s}.jsonl").is_file()]
        if missing:
            raise ConfigError(f"--corpus: {corpus_dir} has no built subset(s) {', '.join(missing)} "
                              f"(no <subset>.jsonl)")
    else:
        corpus_dir = corpus.build(cfg["data"], cache_dir, subsets=args.subsets)
    report = {"model": str(args.model), "config": str(cfg_path), "corpus": str(corpus_dir),
              "beam": args.beam, "limit": args.limit, "subsets": {}}
    for subset in args.subsets:
        utts = corpus.load_subset(corpus_dir, subset)
        if args.limit:
            utts = utts[:args.limit]
        report["subsets"][subset] = evaluate_subset(model, utts, args.beam, subset in DIGIT_SUBSETS,
                                                    progress=True, desc=subset, by_voice=args.by_voice)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"model {report['model']}  beam {args.beam}  corpus {corpus_dir}")
        print(f"{'subset':<12}{'n':>6}{'WER %':>9}{'CER %':>9}{'digit acc %':>13}{'RTF':>9}")
        for name, r in report["subsets"].items():
            acc = f"{100 * r['digit_accuracy']:.1f}" if "digit_accuracy" in r else "-"
            rtf = f"{r['rtf']:.4f}" if r["rtf"] is not None else "-"
            print(f"{name:<12}{r['n']:>6}{100 * r['wer']:>9.2f}{100 * r['cer']:>9.2f}{acc:>13}{rtf:>9}")
        for name, r in report["subsets"].items():
            if "by_voice" in r:
                print(f"\n{name}: word errors by voice variant, worst first")
                for voice, v in sorted(r["by_voice"].items(), key=lambda kv: -kv[1]["wer"]):
                    print(f"  {voice:<40}{v['n']:>5} utts {v['word_errors']:>5}/{v['ref_words']:<5}"
                          f"{100 * v['wer']:>7.1f} %")
    return 0
