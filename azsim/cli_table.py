"""`azsim table`: the compression comparison table (issue 4), every row scored on the chip.

    azsim table --limit 100            # rows from configs/compress/table.toml
    azsim table --only float32 int8-ptq int8-qat --json
"""
from __future__ import annotations

from azsim.argtypes import positive_int


def register(sub) -> None:
    from azsim.workflows.compare_recipes import CACHE_DIR, DEFAULT_ROWS
    from azsim.workflows.score import SUBSETS

    p = sub.add_parser("table", help="compare compression methods: WER, weight bytes, latency, energy per row",
                       description="Score every row of a rows file (model + recipe, or a float model on "
                                   "the host) on the same test utterances and print one table with the "
                                   "issue-4 accuracy and footprint goals checked.")
    p.add_argument("--rows", default=str(DEFAULT_ROWS), help="rows TOML (default: %(default)s)")
    p.add_argument("--only", nargs="+", metavar="ID", default=None, help="score only these row ids")
    p.add_argument("--subset", default="test_clean", choices=SUBSETS, help="test subset (default: test_clean)")
    p.add_argument("--limit", type=positive_int("--limit"), default=None,
                   help="score only the first N utterances of the subset")
    p.add_argument("--preset", default="default", help="hardware preset name or .toml (default: default)")
    p.add_argument("--beam", type=positive_int("--beam"), default=4, help="beam width (default: 4)")
    p.add_argument("--jobs", type=positive_int("--jobs"), default=1, help="rows scored in parallel (default: 1)")
    p.add_argument("--cache-dir", default=str(CACHE_DIR), help="where row results are cached (default: %(default)s)")
    p.add_argument("--corpus", default=None,
                   help="a built corpus directory (default: the corpus of each model's config)")
    p.add_argument("--fresh", action="store_true", help="ignore cached row results")
    p.add_argument("--build", action="store_true",
                   help="make missing fine-tuned models first with their recipes' build configs "
                        "(minutes each, one after another)")
    p.add_argument("--json", action="store_true", help="print one JSON object (rows and goals)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from azsim.workflows.compare_recipes import format_table, table

    r = table(rows=args.rows, subset=args.subset, limit=args.limit, preset=args.preset, beam=args.beam,
              only=args.only, cache_dir=args.cache_dir, fresh=args.fresh, jobs=args.jobs,
              progress=not args.json, corpus=args.corpus, build=args.build)
    print(json.dumps(r) if args.json else format_table(r))
    return 0
