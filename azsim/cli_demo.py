"""`azsim demo`: the main job on the bundled defaults.

The shipped streaming RNN-T, compressed by recipes/int8.toml, run on the `default` chip:
WER from the chip's own integer outputs (next to the float model's), latency, off-chip
traffic, energy and footprint, on the held-out synthesized voices and the real FSDD
recordings. Equivalent to `azsim score --compare-float` on each subset.
"""
from __future__ import annotations

from azsim.argtypes import positive_int

DEMO_SUBSETS = ("test_clean", "test_fsdd")


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job on the bundled defaults: shipped model, int8, default chip",
                       description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=positive_int("--limit"), default=None, help="score only the first N utterances of each subset")
    p.add_argument("--json", action="store_true", help="one JSON object per subset")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from azsim.workflows.score import DEFAULT_MODEL, DEFAULT_RECIPE, format_report, score

    for subset in DEMO_SUBSETS:
        r = score(model=str(DEFAULT_MODEL), recipe=str(DEFAULT_RECIPE), preset="default", subset=subset,
                  limit=args.limit, beam=4, compare_float=True, progress=True)
        if args.json:
            print(json.dumps({"subset": subset, **r}))
        else:
            print(f"=== {subset} ===")
            print(format_report(r))
    return 0
