"""The one `azsim` entry point. Each floor registers its own subcommands.

Command modules must keep heavy imports (torch, the native engine) inside the
command functions so that `azsim --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from azsim.errors import AzsimError

# module -> it exposes register(subparsers), adding parsers with set_defaults(func=...)
_COMMAND_MODULES = (
    "azsim.cli_demo",        # demo (the main job on the bundled defaults)
    "azsim.cli_presets",     # presets
    "azsim.cli_layer",       # layer
    "asr.cli",               # transcribe, train, compress, eval
    "azsim.cli_score",       # score
    "azsim.cli_table",       # table
    "azsim.cli_workflows",   # sweep, pareto, fit, report, compare
    "azsim.cli_experiment",  # experiment (endpointing, biasing, amortized, diffs)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="azsim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except (AzsimError, FileNotFoundError) as err:
        print(f"azsim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
