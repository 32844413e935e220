"""`azsim experiment NAME [--quick] [--json] ...`: the measured experiments of the issues.

    azsim experiment endpointing --quick
    azsim experiment biasing --json

A small registry: NAME -> the module that runs it. An experiment module provides
``add_arguments(parser)`` (its own options; --quick and --json are added here),
``run_args(args) -> dict`` (JSON-serializable results) and ``format_tables(result) -> str``.
To add one, add a line to EXPERIMENTS.
"""
from __future__ import annotations

import importlib

EXPERIMENTS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "endpointing": ("asr.experiments.endpointing",
                    "final vs speculative end-pointers: delay, resets, cut-offs, user-perceived latency, uplink bytes"),
    "biasing": ("asr.experiments.biasing",
                "context biasing (shallow fusion, neural): WER on name-bearing and name-free utterances, decode time"),
    "amortized": ("asr.experiments.amortized", "branching lean/full encoders vs single encoders: WER, MFLOP/frame, end-of-speech latency"),
    "diffs": ("asr.experiments.diffs", "5 model updates as sparse diffs, hash diffs, full fine-tunes: bytes, WER, chip apply cost"),
}


def register(sub) -> None:
    p = sub.add_parser("experiment", help="run a measured experiment (" + ", ".join(EXPERIMENTS) + ")",
                       description=__doc__.splitlines()[0])
    names = p.add_subparsers(dest="experiment", required=True, metavar="NAME")
    for name, (module, help_text) in EXPERIMENTS.items():
        q = names.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--quick", action="store_true",
                       help="smaller sets (finishes in under 10 minutes on 2 cores)")
        q.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
        q.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
        # the module's own options; imported lazily (numpy/torch stay out of `azsim --help`)
        _module(module).add_arguments(q)
        q.set_defaults(func=run, experiment_module=module)


def _module(name: str):
    return importlib.import_module(name)


def run(args) -> int:
    import json

    mod = _module(args.experiment_module)
    result = mod.run_args(args)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(mod.format_tables(result))
    return 0
