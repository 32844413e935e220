"""Codesign workflow commands: sweep, pareto, fit, report, compare.

    azsim sweep examples/gemm-grid.toml --results gemm.db --jobs 2
    azsim pareto gemm.db --objectives latency_ms,energy_mj,weight_bytes --plot front.png
    azsim fit --recipe recipes/int8.toml --preset default --budget flash=2MB,sram=512KB,wer=8
    azsim report gemm.db -o report/
    azsim compare before.json after.json --threshold 5%
"""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("sweep", help="sweep hardware parameters x recipes; results to SQLite",
                       description="Evaluate every point of a sweep spec (see azsim.workflows.spec), "
                                   "in parallel, writing each finished point to the results file. "
                                   "Rerunning skips finished points.")
    p.add_argument("spec", help="sweep spec TOML")
    p.add_argument("--results", default=None, help="SQLite results file (default: <spec name>.db here)")
    p.add_argument("--jobs", type=int, default=None, help="local worker processes (default: CPU count)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a dask.distributed scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the Dask scheduler (default: 10)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the points; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_sweep)

    p = sub.add_parser("pareto", help="non-dominated points of a sweep's results")
    p.add_argument("results", help="results file from azsim sweep (.db) or a JSON list of rows")
    p.add_argument("--objectives", default="wer,latency_ms,energy_mj,weight_bytes",
                   help="comma-separated metrics to minimize; '-name' maximizes (default: %(default)s)")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a plot of the front")
    p.add_argument("--json", action="store_true", help="print the front as JSON rows")
    p.set_defaults(func=run_pareto)

    p = sub.add_parser("fit", help="check a recipe on a chip against product budgets (exit 1 if over)",
                       description="Score a recipe on a preset (as azsim score does) and compare each "
                                   "figure with its budget. Exit 0 when every budget holds, 1 "
                                   "otherwise. Budgets: flash, weights, sram, latency_ms, "
                                   "latency_ms_p95, energy_mj, wer (percent), rtf, offchip (B/s).")
    p.add_argument("--model", default=None, help="model .npz (default: the shipped model)")
    p.add_argument("--recipe", default=None, help="recipe TOML (default: recipes/int8.toml)")
    p.add_argument("--preset", default="default", help="hardware preset name or .toml")
    p.add_argument("--budget", required=True,
                   help="NAME=VALUE[,...], e.g. flash=2MB,sram=512KB,latency_ms=200,energy_mj=5,wer=8")
    p.add_argument("--subset", default="test_clean", help="test subset (default: test_clean)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N utterances")
    p.add_argument("--beam", type=int, default=4, help="beam width (default: 4)")
    p.add_argument("--corpus", default=None, help="a built corpus directory (default: the model's)")
    p.add_argument("--figures", default=None, metavar="JSON",
                   help="check figures from a saved `azsim score --json` output instead of scoring")
    p.add_argument("--json", action="store_true", help="print the check as JSON")
    p.set_defaults(func=run_fit)

    p = sub.add_parser("report", help="HTML report of a sweep: Pareto front, roofline, timeline, energy")
    p.add_argument("results", help="results file from azsim sweep")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--spec", default=None, help="the sweep spec (default: found from the results' "
                                                 "sweep name next to the results file)")
    p.add_argument("--objectives", default=None, help="Pareto objectives (default: those present of "
                                                      "wer,latency_ms,energy_mj,weight_bytes)")
    p.add_argument("--point", default=None, help="key of the point to detail (default: the front's "
                                                 "lowest-energy point)")
    p.set_defaults(func=run_report)

    p = sub.add_parser("compare", help="compare two benchmark JSON files; exit 1 on a regression")
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--threshold", default="5%", help="relative change that counts (default: 5%%)")
    p.add_argument("--all", action="store_true", help="also list figures that did not move")
    p.set_defaults(func=run_compare)


def run_sweep(args) -> int:
    from pathlib import Path

    from azsim.errors import ConfigError
    from azsim.workflows import spec as spec_mod
    from azsim.workflows import sweep
    from azsim.workflows.store import ResultStore

    if args.jobs is not None and not 1 <= args.jobs <= 256:
        raise ConfigError(f"--jobs: {args.jobs} (allowed: 1..256)")
    spec = spec_mod.load(args.spec)                  # validates everything before any work
    results = args.results or f"{Path(args.spec).stem}.db"
    client = sweep.check_scheduler(args.scheduler, args.connect_timeout) if args.scheduler and not args.dry_run else None
    try:
        ResultStore(results).close()                 # a foreign file fails here, before work
    except Exception:
        if client is not None:
            client.close()
        raise
    print(spec.describe(), flush=True)
    if args.dry_run:
        done = ResultStore(results).keys()
        for p in spec.points:
            print(f"  {p.key}  {'done ' if p.key in done else 'to do'}  {p.recipe}  "
                  + " ".join(f"{k}={v}" for k, v in p.hw.items()))
        return 0
    try:
        s = sweep.run(spec, results, jobs=args.jobs, client=client, progress=not args.quiet,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        from azsim.workflows.store import load_rows
        n = sum(r["sweep"] == spec.name for r in load_rows(results))
        print(f"\ninterrupted: {n} of {len(spec.points)} points are in {results}; "
              "rerun the same command to continue", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
    print(s.text())
    print(f"results: {results}")
    return 0


def run_pareto(args) -> int:
    import json

    from azsim.workflows import pareto
    from azsim.workflows.store import load_rows

    rows = load_rows(args.results)
    if not rows:
        print(f"{args.results}: no points yet")
        return 0
    obj = pareto.parse_objectives(args.objectives, rows)
    front, skipped = pareto.front(rows, obj)
    if args.json:
        print(json.dumps(front, indent=1))
    else:
        print(f"Pareto front over {', '.join(('max ' if s < 0 else '') + m for m, s in obj)}: "
              f"{len(front)} of {len(rows)} points" + (f" ({len(skipped)} without every objective left out)"
                                                        if skipped else ""))
        print(pareto.table(front, obj))
    if args.plot:
        pareto.plot(rows, front, obj, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


def run_fit(args) -> int:
    import json
    from pathlib import Path

    from azsim.errors import ConfigError, FormatError
    from azsim.workflows import budget

    budgets = budget.parse_budgets(args.budget)      # unit errors before any scoring
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: {args.limit} (allowed: an integer >= 1)")
    if args.figures:
        p = Path(args.figures)
        if not p.is_file():
            raise FormatError(f"--figures: {p}: no such file")
        try:
            figures = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise FormatError(f"--figures: {p}: not valid JSON: {err}") from None
        if not isinstance(figures, dict):
            raise FormatError(f"--figures: {p}: expected one JSON object (azsim score --json)")
        what = str(p)
    else:
        from azsim.workflows.score import score
        figures = score(model=args.model, recipe=args.recipe, preset=args.preset, subset=args.subset,
                        limit=args.limit, beam=args.beam, corpus=args.corpus, progress=not args.json)
        what = f"recipe {figures.get('recipe')} on preset {figures.get('preset')}, {figures.get('n')} utterances"
    rows, ok = budget.check(figures, budgets)
    if args.json:
        print(json.dumps({"ok": ok, "budgets": rows}, indent=1))
    else:
        print(f"azsim fit: {what}")
        print(budget.format_table(rows))
        print("FITS: every budget holds" if ok else
              f"DOES NOT FIT: {sum(not r['ok'] for r in rows)} of {len(rows)} budget(s) exceeded")
    return 0 if ok else 1


def run_report(args) -> int:
    from azsim.report import html

    out = html.build(args.results, args.out, spec_path=args.spec, objectives=args.objectives,
                     point_key=args.point)
    print(f"report: {out}")
    return 0


def run_compare(args) -> int:
    from azsim.workflows import bench

    thr = bench.parse_threshold(args.threshold)
    before, after = bench.load(args.before), bench.load(args.after)
    rows, regressed = bench.compare(before, after, thr)
    print(bench.format_rows(rows, show_all=args.all))
    n = {s: sum(r["status"] == s for r in rows) for s in ("regression", "improved", "same", "new", "gone")}
    print(f"{n['regression']} regression(s), {n['improved']} improvement(s) beyond {thr:g}%, "
          f"{n['same']} within, {n['new']} new, {n['gone']} gone")
    return 1 if regressed else 0
