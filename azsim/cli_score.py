"""`azsim score`: run a test set through the simulated chip under a compression recipe.

    azsim score --recipe recipes/int8-sparse50.toml --preset default --limit 50 --json
"""
from __future__ import annotations

from azsim.argtypes import positive_int


def register(sub) -> None:
    from azsim.workflows.score import DEFAULT_MODEL, DEFAULT_RECIPE, SUBSETS

    p = sub.add_parser("score", help="WER, latency, traffic, energy and footprint of a recipe on the chip",
                       description="Quantize the model with a recipe, run a test subset through the "
                                   "simulated chip (encoder, prediction and joint networks on the "
                                   "engine, beam search on the host) and report WER from the chip's "
                                   "outputs with its latency, off-chip traffic, energy and footprint.")
    p.add_argument("--model", default=None,
                   help="float export (.npz, quantized here) or a quantized .npz (default: the model "
                        f"the recipe names, built first if missing or stale, else {DEFAULT_MODEL})")
    p.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe TOML (default: %(default)s)")
    p.add_argument("--preset", default="default", help="hardware preset name or .toml (default: default)")
    p.add_argument("--subset", default="test_clean", choices=SUBSETS, help="test subset (default: test_clean)")
    p.add_argument("--limit", type=positive_int("--limit"), default=None,
                   help="score only the first N utterances")
    p.add_argument("--beam", type=positive_int("--beam"), default=4, help="beam width (default: 4)")
    p.add_argument("--corpus", default=None,
                   help="a built corpus directory (default: the corpus of the model's config, "
                        "built if missing)")
    p.add_argument("--config", default=None, help="config whose [data] names the corpus")
    p.add_argument("--compare-float", action="store_true",
                   help="also decode with the float model on the host and report float_wer")
    p.add_argument("--per-utterance", action="store_true", help="with --json: include per-utterance rows")
    p.add_argument("--save-quantized", default=None, metavar="NPZ",
                   help="write the quantized model (usable as --model later)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from azsim.workflows.score import format_report, score

    r = score(model=args.model, recipe=args.recipe, preset=args.preset, subset=args.subset,
              limit=args.limit, beam=args.beam, corpus=args.corpus, config=args.config,
              compare_float=args.compare_float, per_utterance=args.per_utterance,
              progress=True, save_quantized=args.save_quantized)
    if args.json:
        print(json.dumps(r))
    else:
        print(format_report(r))
    return 0
