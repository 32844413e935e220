"""`azsim experiment diffs`: 5 consecutive model updates as sparse diffs, hash diffs and full
fine-tunes, each on a new data shift.

Shift s (asr.diff.shifts): commands addressing NAMES_PER_SHIFT contacts whose names are in no
slot list the shipped model was trained on, synthesized with eSpeak NG (training-pool voices
for the update's training data, held-out test voices for its test set). Three update lineages
start from the shipped model and run the 5 updates in order, each update trained on the shift's
data mixed half and half with replayed original training utterances:
  sparse  a fresh sparse diff per update, encoded size <= BUDGET x the float32 model's bytes
  hash    a fresh hash diff per update (K bucket values + seed)
  full    full-parameter fine-tuning (the update ships the whole model)
After each update: payload bytes (the .azdiff file, header included; a full update ships the
float32 weights), WER on that shift's test set, on every shift so far, and on the original
test_clean utterances; and the chip's cost to apply it (asr.diff.chip: payload read plus a
read-modify-write of every off-chip burst of the int8 weight image holding a changed weight,
at the preset's off-chip bandwidth). Every diff is written to disk, read back and applied
with the base-hash check, so the evaluated model is exactly what a device would have.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from asr.experiments import common as C

QUICK = {"n_old": 400, "n_test": 60, "shift_train": 48, "shift_test": 24, "steps": 25, "batch_size": 12}
# 60 test utterances per shift (~300 words) made one word 0.3 WER points, as large as a third
# of the 1.0-point goal; 200 make it ~0.1.
FULL = {"n_old": 3000, "n_test": 500, "shift_train": 200, "shift_test": 200, "steps": 150, "batch_size": 16}
# --medium: the full mode's data with fewer steps (about 25 minutes on one core).
MEDIUM = {"n_old": 1500, "n_test": 200, "shift_train": 200, "shift_test": 200, "steps": 60, "batch_size": 16}
N_UPDATES = 5
BUDGET = 0.10
HASH_K = 4096
GOAL = ("sparse diff at <= 10% of model bytes within 1.0 absolute WER of full fine-tuning after "
        "every one of 5 updates; a hash-diff row showing how it drifts")


def _log(msg, progress):
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _decode(arrays, cfg, examples) -> tuple[list[str], list[str]]:
    """Greedy (refs, hyps) of the float model `arrays` on `examples`."""
    import torch
    from asr import text as asr_text
    from asr.diff.train import to_torch
    from asr.train.loop import collate, greedy_batch
    model = to_torch(arrays, cfg)
    refs, hyps = [], []
    with torch.no_grad():
        for i in range(0, len(examples), 32):
            idx = list(range(i, min(len(examples), i + 32)))
            x, x_lens, _, _ = collate(examples, idx)
            for j, ids in zip(idx, greedy_batch(model, x, x_lens)):
                refs.append(examples[j].text)
                hyps.append(asr_text.decode(ids).strip())
    return refs, hyps


def _wer_of(pairs) -> float:
    from asr.train.loop import error_rates
    refs = [r for p in pairs for r in p[0]]
    hyps = [h for p in pairs for h in p[1]]
    return float(error_rates(refs, hyps)[1])


def _wer(arrays, cfg, examples) -> float:
    return _wer_of([_decode(arrays, cfg, examples)])


def run(quick: bool = False, model=None, preset: str = "default", updates: int = N_UPDATES,
        steps=None, budget: float = BUDGET, hash_k: int = HASH_K, seed: int = 0, corpus=None,
        config=None, progress: bool = True, out_dir=None, sizes: dict | None = None,
        medium: bool = False, prune_end: float | None = None, fresh: bool = False) -> dict:
    import torch
    from asr.cli import eval_config
    from asr.data import corpus as corpus_mod
    from asr.diff import format as F
    from asr.diff.chip import apply_cost
    from asr.diff.shifts import make_shift, shift_names
    from asr.diff.train import (DiffTrainConfig, finetune_full, float_model_bytes, load_arrays,
                                target_names, train_hash_diff, train_sparse_diff)
    from asr.train.loop import to_examples
    from azsim import hw as azhw
    from azsim.errors import ConfigError

    clock = C.Clock()
    unknown = sorted(set(sizes or {}) - set(FULL))
    if unknown:
        raise ConfigError(f"sizes: {unknown}; allowed keys {sorted(FULL)} with integers >= 1")
    given = dict(sizes or {})
    if steps is not None:
        given["steps"] = steps
    opts = C.sizes(quick, QUICK, FULL, {k: 1 for k in FULL}, medium=medium, medium_sizes=MEDIUM, **given)
    if not isinstance(updates, int) or not 1 <= updates <= 20:
        raise ConfigError(f"--updates: {updates!r}; allowed: an integer in [1, 20]")
    if not 0.001 <= budget <= 1.0:
        raise ConfigError(f"--budget: {budget}; allowed: [0.001, 1] (fraction of the float32 model bytes)")
    if not isinstance(hash_k, int) or not 16 <= hash_k <= 1 << 22:
        raise ConfigError(f"--hash-k: {hash_k!r}; allowed: an integer in [16, 4194304]")
    if prune_end is None:
        prune_end = DiffTrainConfig.prune_end_fraction
    if not 0.05 <= prune_end <= 1.0:
        raise ConfigError(f"--prune-end: {prune_end}; allowed: [0.05, 1] (fraction of the steps)")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model_path = C.resolve_model(model)
    base, cfg = load_arrays(model_path)
    run_cfg, _ = eval_config(str(model_path), config)
    cdir = C.corpus_dir_for(model_path, corpus, config)
    old_ex = to_examples(corpus_mod.load_subset(cdir, "train")[: opts["n_old"]])
    orig_test = to_examples(corpus_mod.load_subset(cdir, "test_clean")[: opts["n_test"]])
    hw = azhw.load(preset)
    names = target_names(cfg)
    model_bytes = float_model_bytes(base, cfg)
    n_params = model_bytes // 4
    tc = DiffTrainConfig(steps=opts["steps"], batch_size=opts["batch_size"], seed=seed,
                         budget_fraction=budget, hash_k=hash_k, prune_end_fraction=prune_end)
    # Finished updates are kept (rows, .azdiff files, the full updates' weights) so an
    # interrupted run resumes where it stopped, and a run with more --updates extends a shorter
    # one (update s depends on shifts 1..s only); the diff files are what the lineages replay.
    store = C.RowStore.for_run("diffs", model_path, cdir, fresh=fresh, settings={
        **opts, "budget": budget, "hash_k": hash_k, "seed": seed, "prune_end": prune_end,
        "preset": preset})
    state_dir = store.path.with_suffix("")
    tmp = Path(out_dir) if out_dir else state_dir
    tmp.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)

    shifts = []
    for s in range(updates):
        _log(f"diffs: synthesizing shift {s + 1} ({', '.join(shift_names(s, seed))})", progress)
        tr, te = make_shift(s, opts["shift_train"], opts["shift_test"], run_cfg["data"], seed)
        shifts.append((to_examples(tr), to_examples(te)))

    base_orig = _wer(base, cfg, orig_test)
    base_shift = [_wer(base, cfg, te) for _, te in shifts]
    _log(f"base model: original test WER {100 * base_orig:.2f}%, shift WERs "
         f"{', '.join(f'{100 * w:.1f}%' for w in base_shift)}", progress)

    current = {"sparse": base, "hash": base, "full": base}
    rows, resumed = [], []
    for s, (tr, te) in enumerate(shifts):
        for method in ("sparse", "hash", "full"):
            t0 = clock()
            prev = current[method]
            done = store.get(f"{s + 1}-{method}")
            kept = (tmp / f"update{s + 1}-{method}.azdiff" if method != "full"
                    else state_dir / f"full-update{s + 1}.npz")
            if done is not None and kept.exists():
                if method == "full":
                    with np.load(kept, allow_pickle=False) as z:
                        current[method] = {**prev, **{n: z[n] for n in names}}
                else:
                    current[method] = F.apply_diff_file(prev, kept)
                rows.append(done)
                resumed.append(f"{s + 1}-{method}")
                _log(f"update {s + 1} {method}: finished in an earlier run, reused from {store.path}", progress)
                continue
            tcs = dataclasses.replace(tc, seed=seed + 100 * s)
            info = {}
            if method == "full":
                new = finetune_full(prev, cfg, tr, old_ex, tcs)
                payload = model_bytes
            else:
                trainer = train_sparse_diff if method == "sparse" else train_hash_diff
                diff, trained, info = trainer(prev, cfg, tr, old_ex, tcs)
                path = tmp / f"update{s + 1}-{method}.azdiff"
                payload = F.save_diff(diff, path)
                new = F.apply_diff_file(prev, path)          # what the device would run
                if not all(np.array_equal(new[n], trained[n]) for n in names):
                    raise RuntimeError(f"{path}: applying the diff did not reproduce the trained model")
            changed = [new[n] != prev[n] for n in names]
            decoded = [_decode(new, cfg, t) for _, t in shifts[: s + 1]]   # every shift so far
            cost = apply_cost(changed, payload, hw)
            row = {"update": s + 1, "method": method, "payload_bytes": int(payload),
                   "payload_vs_model": payload / model_bytes,
                   "payload_vs_int8_model": payload / n_params,
                   "changed_weights": int(sum(int(c.sum()) for c in changed)),
                   "wer_new": _wer_of(decoded[-1:]), "wer_seen": _wer_of(decoded),
                   "wer_orig": _wer(new, cfg, orig_test), **cost, "seconds": clock() - t0}
            if method == "sparse":
                row["budget_bytes"] = info["budget_bytes"]
            if method == "full":   # a full update has no diff file to replay: keep its weights
                np.savez(state_dir / f"full-update{s + 1}.npz", **{n: new[n] for n in names})
            rows.append(row)
            store.put(f"{s + 1}-{method}", row)
            current[method] = new
            _log(f"update {s + 1} {method}: {row['payload_bytes']} B ({100 * row['payload_vs_model']:.2f}% "
                 f"of model), WER new {100 * row['wer_new']:.1f}% seen {100 * row['wer_seen']:.1f}% "
                 f"orig {100 * row['wer_orig']:.1f}% ({row['seconds']:.0f} s)", progress)

    by = {(r["update"], r["method"]): r for r in rows}
    gaps = [by[(u, "sparse")]["wer_new"] - by[(u, "full")]["wer_new"] for u in range(1, updates + 1)]
    sizes_ok = all(by[(u, "sparse")]["payload_vs_model"] <= budget for u in range(1, updates + 1))
    goals = {"sparse_within_1wer_of_full_each_update": {"gaps_wer_new": gaps,
                                                        "met": sizes_ok and all(g <= 0.01 for g in gaps)}}
    return {"experiment": "diffs", "quick": quick, "medium": medium, "model": str(model_path), "preset": preset,
            "settings": {**opts, "updates": updates, "budget": budget, "hash_k": hash_k, "seed": seed,
                         "prune_end": prune_end,
                         "model_float32_bytes": model_bytes, "model_int8_bytes": n_params,
                         "diff_dir": str(tmp)},
            "base": {"wer_orig": base_orig, "wer_shift": base_shift},
            "shift_names": [shift_names(s, seed) for s in range(updates)],
            "rows": rows, "goals": goals, "goal": GOAL, "seconds": clock(), "resumed": resumed,
            "seconds_with_resumed": sum(r["seconds"] for r in rows)}


def format_tables(r: dict) -> str:
    s = r["settings"]
    rows = [{**x, "pct": 100 * x["payload_vs_model"], "pct8": 100 * x["payload_vs_int8_model"], "wn": 100 * x["wer_new"], "ws": 100 * x["wer_seen"],
             "wo": 100 * x["wer_orig"], "wkb": x["offchip_write_bytes"] / 1024} for x in r["rows"]]
    t = C.format_table(rows, [
        ("update", "update", "d"), ("method", "method", "s"), ("payload_bytes", "payload B", "d"),
        ("pct", "% of f32 model", ".2f"), ("pct8", "% of int8 model", ".1f"), ("changed_weights", "weights changed", "d"),
        ("wn", "WER new %", ".1f"), ("ws", "WER all shifts %", ".1f"), ("wo", "WER orig %", ".1f"),
        ("wkb", "chip write KiB", ".1f"), ("apply_ms", "apply ms", ".3f")],
        f"Model updates ({s['steps']} steps x batch {s['batch_size']} each; shift data: "
        f"{s['shift_train']} train / {s['shift_test']} test utterances; original test: {s['n_test']})")
    b = r["base"]
    head = (f"diffs: model {s['model_float32_bytes']} B float32 ({s['model_int8_bytes']} B as int8); "
            f"sparse budget {100 * s['budget']:g}% of float32 bytes, reached at {100 * s['prune_end']:g}% "
            f"of the steps; hash K = {s['hash_k']}\n"
            f"before any update: WER orig {100 * b['wer_orig']:.1f}%, on each shift "
            + ", ".join(f"{100 * w:.1f}%" for w in b["wer_shift"])
            + "\nnew names per shift: " + " | ".join(", ".join(n) for n in r["shift_names"]))
    g = r["goals"]["sparse_within_1wer_of_full_each_update"]
    goals = (f"goal: {r['goal']}\n  sparse - full WER on new data per update: "
             + ", ".join(f"{100 * x:+.1f}" for x in g["gaps_wer_new"]) + f" -> met: {g['met']}")
    took = f"took {r['seconds']:.0f} s"
    if r.get("resumed"):
        took += (f" ({len(r['resumed'])} updates reused from an interrupted run; "
                 f"{r['seconds_with_resumed']:.0f} s of update work in all)")
    return "\n\n".join([head, t, goals, took])


# ------------------------------------------------------------------ CLI glue (azsim.cli_experiment)
def add_arguments(p) -> None:
    p.add_argument("--model", default=None, help="float .npz export (default: models/shipped/model.npz)")
    p.add_argument("--preset", default="default", help="hardware preset for the apply cost (default: default)")
    p.add_argument("--updates", type=int, default=N_UPDATES, help=f"consecutive updates (default {N_UPDATES})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps per update (default {FULL['steps']}, --quick {QUICK['steps']})")
    p.add_argument("--budget", type=float, default=BUDGET,
                   help=f"sparse diff size / float32 model bytes (default {BUDGET:g})")
    p.add_argument("--hash-k", type=int, default=HASH_K, help=f"hash diff buckets (default {HASH_K})")
    p.add_argument("--medium", action="store_true",
                   help=f"medium sizes {MEDIUM} (about 25 minutes on one core)")
    p.add_argument("--prune-end", type=float, default=None,
                   help="sparse diff: fraction of the steps after which the mask keeps only the budget "
                        "(default: DiffTrainConfig's 0.7)")
    p.add_argument("--out-dir", default=None,
                   help="where the .azdiff files are written (default: beside the run's resume record "
                        "under <cache>/runs/)")
    p.add_argument("--fresh", action="store_true",
                   help="redo every update (default: reuse the updates an interrupted run with the same "
                        "settings, model and code finished)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    p.add_argument("--corpus", default=None, help="a built corpus directory (default: the model's)")
    p.add_argument("--config", default=None, help="config whose [data] names the corpus")


def run_args(args) -> dict:
    return run(quick=args.quick, model=args.model, preset=args.preset, updates=args.updates,
               steps=args.steps, budget=args.budget, hash_k=args.hash_k, seed=args.seed,
               corpus=args.corpus, config=args.config, out_dir=args.out_dir, medium=args.medium,
               prune_end=args.prune_end, fresh=args.fresh,
               progress=not getattr(args, "no_progress", False))
