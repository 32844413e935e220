"""`azsim table`: one row per compression method, each scored on the simulated chip.

    result = table(rows="configs/compress/table.toml", subset="test_clean", limit=100)
    print(format_table(result))

A rows file lists what to compare (see configs/compress/table.toml):

    [[row]]
    id = "int8-qat"                     # goals below refer to rows by id
    label = "int8 QAT"
    recipe = "recipes/int8-qat.toml"    # its `model` / `build` name the fine-tuned model
    model = "..."                       # optional: overrides the recipe's model (default: shipped)
    float = false                       # true: decode `model` in float32 on the host (no chip)
    build = ["configs/compress/finetune.toml"]   # float rows only: the fine-tunes that make `model`

A row whose model is missing, or stale (made from another version of its config or init
model), is reported as such with the command that makes it; with build=True (`azsim table
--build`) the recipe's `build` fine-tunes make it first.

Each chip row is `azsim score` (azsim.workflows.score.score) with the row's model and recipe on
the same utterances; the float rows decode with the float model on the host (weight bytes are
4 per parameter; no chip latency or energy: the chip is integer-only). Results are cached in
runs/table/ keyed by the model file's hash, the recipe text and the scoring options.

Goals (issue 4), each "pass", "FAIL" or "not measured" (a row missing):
  int8 PTQ and int8 QAT within 0.5 absolute WER (percentage points) of float32;
  int8 + 50% sparse within 1.0; int4 QAT within 2.0; int4 regularized QAT at least as good
  as int4 STE QAT; int8 + 50% sparse weight bytes <= 18% of float32's.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROWS = REPO_ROOT / "configs" / "compress" / "table.toml"
DEFAULT_MODEL = REPO_ROOT / "models" / "shipped" / "model.npz"
CACHE_DIR = REPO_ROOT / "runs" / "table"
ROW_FIELDS = ("id", "label", "model", "recipe", "float", "build", "note")
COLUMNS = ("wer", "cer", "weight_bytes", "weight_bytes_vs_float32", "peak_sram_bytes", "latency_ms",
           "latency_ms_p95", "energy_mj", "offchip_bytes_per_s", "rtf", "macs_per_s", "n", "audio_s",
           "sparsity", "formats", "float32_bytes")

# (goal id, text, check) -- check(rows by id) -> (status, measured text)
GOALS = (
    ("int8-ptq-wer", "int8 PTQ within 0.5 abs WER of float32", ("int8-ptq", "float32", 0.5)),
    ("int8-qat-wer", "int8 QAT within 0.5 abs WER of float32", ("int8-qat", "float32", 0.5)),
    ("int8-sparse50-wer", "int8 + 50% sparse within 1.0 abs WER of float32", ("int8-sparse50", "float32", 1.0)),
    ("int4-qat-wer", "int4 QAT within 2.0 abs WER of float32", ("int4-qat", "float32", 2.0)),
    ("int4-reg-vs-ste", "int4 regularized QAT WER <= int4 STE QAT WER", ("int4-regqat", "int4-qat", 0.0)),
    ("int8-sparse50-bytes", "int8 + 50% sparse weight bytes <= 18% of float32", None),
)


def load_rows(path=None) -> list[dict]:
    from azsim.errors import ConfigError

    from azsim.tomlio import read_toml

    path = Path(path) if path is not None else DEFAULT_ROWS
    data = read_toml(path, "rows")
    rows = data.get("row")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{path}: no [[row]] tables (each needs id, label and a recipe, or a model "
                          "and float = true)")
    seen = set()
    out = []
    for i, r in enumerate(rows):
        where = f"{path}: row {i + 1}"
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: must be a table")
        unknown = sorted(set(r) - set(ROW_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown} (allowed: {', '.join(ROW_FIELDS)})")
        for key in ("id", "label"):
            if not isinstance(r.get(key), str) or not r[key]:
                raise ConfigError(f"{where}: {key} must be a non-empty string")
        if "model" in r and (not isinstance(r["model"], str) or not r["model"]):
            raise ConfigError(f"{where}: model must be a non-empty string")
        if r["id"] in seen:
            raise ConfigError(f"{where}: id {r['id']!r} appears twice")
        seen.add(r["id"])
        is_float = r.get("float", False)
        if not isinstance(is_float, bool):
            raise ConfigError(f"{where}: float = {is_float!r} (allowed: true or false)")
        if not is_float and not isinstance(r.get("recipe"), str):
            raise ConfigError(f"{where} ({r['id']}): recipe must name a recipe TOML (or set float = true)")
        if is_float and "model" not in r:
            raise ConfigError(f"{where} ({r['id']}): a float row names its model")
        row = {k: r.get(k) for k in ROW_FIELDS}
        row["float"] = is_float
        row["build"] = ()
        if is_float and r.get("build") is not None:   # a float row has no recipe to say it
            b = r["build"]
            if not isinstance(b, list) or not all(isinstance(x, str) for x in b):
                raise ConfigError(f"{where} ({r['id']}): build must be a list of fine-tune configs")
            row["build"] = tuple(b)
        elif r.get("build") is not None:
            raise ConfigError(f"{where} ({r['id']}): build belongs in the row's recipe")
        if not is_float:   # the recipe says which model it is for and how that model is made
            from asr.quant import recipe as recipe_mod
            rpath = _resolve(r["recipe"])
            if not rpath.is_file():
                raise ConfigError(f"{where} ({r['id']}): recipe {r['recipe']}: no such file")
            rec = recipe_mod.load(rpath)
            if row["model"] is None:
                row["model"] = str(rec.model_path() or DEFAULT_MODEL)
            if rec.builds(_resolve(row["model"])):   # the fine-tunes are this row's to run
                row["build"] = rec.build
        out.append(row)
    return out


def _resolve(p) -> Path:
    p = Path(p)
    return p if p.is_absolute() or p.exists() else REPO_ROOT / p


def _key(row, subset, limit, preset, beam, corpus=None) -> str:
    h = hashlib.sha256()
    model = _resolve(row["model"])
    h.update(model.read_bytes())
    if not row["float"]:
        h.update(_resolve(row["recipe"]).read_bytes())
        h.update(str(preset).encode())
    h.update(json.dumps([subset, limit, beam, row["float"], None if corpus is None else str(corpus)]).encode())
    return h.hexdigest()[:16]


def _score_float(model_path, subset, limit, beam, progress, corpus=None) -> dict:
    """WER of the float model on the host, same utterances as azsim score uses."""
    import numpy as np
    from tqdm import tqdm

    from asr.data import corpus as corpus_mod
    from asr.features import stack_frames
    from asr.metrics import error_rates
    from asr.model.numpy_rnnt import NumpyRNNT
    from asr.stream import decode_features
    from azsim.workflows.score import _corpus_dir

    fm = NumpyRNNT.load(model_path)
    cdir = _corpus_dir(model_path, corpus, None)
    utts = corpus_mod.load_subset(cdir, subset)
    if limit:
        utts = utts[:limit]
    refs, hyps = [], []
    for u in tqdm(utts, desc=f"float {Path(model_path).parent.name}", unit="utt", file=sys.stderr,
                  disable=not progress, leave=False):
        refs.append(u.text)
        hyps.append(decode_features(fm, stack_frames(np.asarray(u.feats, np.float32)), beam=beam).text)
    er = error_rates(refs, hyps)
    n_params = int(fm.n_params())
    return {"wer": er["wer"], "cer": er["cer"], "n": len(utts), "audio_s": float(sum(u.duration_s for u in utts)),
            "weight_bytes": 4 * n_params, "float32_bytes": 4 * n_params, "weight_bytes_vs_float32": 1.0}


def score_row(row, subset="test_clean", limit=None, preset="default", beam=4, cache_dir=CACHE_DIR,
              fresh=False, progress=True, corpus=None) -> dict:
    """One row's result: the row fields plus status ("ok", "missing", "stale", "error") and COLUMNS."""
    import time

    out = dict(row)
    out["build"] = list(row.get("build") or ())
    model = _resolve(row["model"])
    if model.is_file() and row.get("build"):
        from asr.train.compress_train import is_current, output_path
        last = _resolve(row["build"][-1])   # earlier builds make teachers, never the row's model
        if output_path(last) == model and not is_current(last):
            out["status"] = "stale"
            out["error"] = (f"{model}: made from another version of {row['build'][-1]} or of its "
                            "init model (azsim table --build remakes it)")
            return out
    if not model.is_file():
        out["status"] = "missing"
        out["error"] = f"{model}: not built" + (
            f" (azsim table --build, or python -m asr.train.compress_train {' '.join(row['build'])})"
            if row.get("build") else "")
        return out
    key = _key(row, subset, limit, preset, beam, corpus)
    cache = Path(cache_dir) / f"{row['id']}-{key}.json"
    if cache.is_file() and not fresh:
        out.update(json.loads(cache.read_text()))
        out["cached"] = True
        return out
    t0 = time.perf_counter()
    try:
        if row["float"]:
            res = _score_float(model, subset, limit, beam, progress, corpus)
        else:
            from azsim.workflows.score import score
            rep = score(model=model, recipe=_resolve(row["recipe"]), preset=preset, subset=subset,
                        limit=limit, beam=beam, progress=progress, corpus=corpus)
            res = {k: rep[k] for k in COLUMNS if k in rep}
    except Exception as err:   # one bad row must not hide the others; the message says which
        out["status"] = "error"
        out["error"] = f"{type(err).__name__}: {err}"
        return out
    res["status"] = "ok"
    res["score_s"] = time.perf_counter() - t0
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res))
    out.update(res)
    out["cached"] = False
    return out


def check_goals(rows: list[dict]) -> list[dict]:
    by = {r["id"]: r for r in rows if r.get("status") == "ok"}
    goals = []
    for gid, text, spec in GOALS:
        g = {"id": gid, "goal": text}
        if spec is None:
            a, b = by.get("int8-sparse50"), by.get("float32")
            if a is None:
                g.update(status="not measured", measured="int8-sparse50 row missing")
            else:
                ratio = a["weight_bytes"] / a["float32_bytes"]
                g.update(status="pass" if ratio <= 0.18 else "FAIL",
                         measured=f"{100 * ratio:.1f}% ({a['weight_bytes']:,} of {a['float32_bytes']:,} bytes)")
        else:
            rid, base, tol_pp = spec
            a, b = by.get(rid), by.get(base)
            if a is None or b is None:
                g.update(status="not measured", measured=f"{rid if a is None else base} row missing")
            else:
                d = 100 * (a["wer"] - b["wer"])
                ok = d <= tol_pp + 1e-9
                g.update(status="pass" if ok else "FAIL",
                         measured=f"{100 * a['wer']:.2f}% vs {100 * b['wer']:.2f}% ({d:+.2f} pp)")
                if a.get("n") != b.get("n"):
                    g["measured"] += f" [different utterance counts {a.get('n')} / {b.get('n')}]"
        goals.append(g)
    return goals


def table(rows=None, subset="test_clean", limit=None, preset="default", beam=4, only=None,
          cache_dir=CACHE_DIR, fresh=False, jobs=1, progress=True, corpus=None, build=False) -> dict:
    from azsim.errors import ConfigError
    from azsim.workflows.score import SUBSETS

    if subset not in SUBSETS:
        raise ConfigError(f"--subset: {subset!r} (allowed: {', '.join(SUBSETS)})")
    spec = load_rows(rows)
    if only:
        ids = {r["id"] for r in spec}
        bad = [o for o in only if o not in ids]
        if bad:
            raise ConfigError(f"--only: unknown row id(s) {bad} (rows: {', '.join(sorted(ids))})")
        spec = [r for r in spec if r["id"] in only]
    if build:   # one after another (a distilled student needs its teacher); missing or stale
        from asr.train.compress_train import ensure_built
        for r in spec:
            if r["build"]:
                ensure_built(r["build"])
    kw = dict(subset=subset, limit=limit, preset=preset, beam=beam, cache_dir=cache_dir, fresh=fresh,
              corpus=corpus)
    if jobs > 1 and len(spec) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            results = list(ex.map(_score_row_kw, [(r, kw) for r in spec]))
    else:
        results = [score_row(r, progress=progress, **kw) for r in spec]
    return {"subset": subset, "limit": limit, "preset": preset, "beam": beam, "rows": results,
            "goals": check_goals(results)}


def _score_row_kw(args):
    row, kw = args
    return score_row(row, progress=False, **kw)


def _fmt(v, spec, scale=1.0):
    return "-" if v is None else format(v * scale, spec)


def format_table(result: dict) -> str:
    head = (f"{'method':<26} {'WER %':>7} {'weight bytes':>13} {'% f32':>6} {'latency ms':>10} "
            f"{'p95 ms':>8} {'energy mJ':>10} {'offchip KB/s':>12} {'RTF':>8}")
    lines = [f"azsim table: {result['subset']}" + (f" (first {result['limit']} utterances)" if result["limit"] else "")
             + f", preset {result['preset']}, beam {result['beam']}", head, "-" * len(head)]
    notes = []
    for r in result["rows"]:
        if r.get("status") != "ok":
            lines.append(f"{r['label']:<26} {r.get('status', '?'):>7}  {r.get('error', '')}")
            continue
        obs = r.get("offchip_bytes_per_s")
        lines.append(
            f"{r['label']:<26} {_fmt(r.get('wer'), '.2f', 100):>7} {r['weight_bytes']:>13,} "
            f"{_fmt(r.get('weight_bytes_vs_float32'), '.1f', 100):>6} {_fmt(r.get('latency_ms'), '.3f'):>10} "
            f"{_fmt(r.get('latency_ms_p95'), '.3f'):>8} {_fmt(r.get('energy_mj'), '.4f'):>10} "
            f"{_fmt(obs, '.1f', 1e-3):>12} {_fmt(r.get('rtf'), '.5f'):>8}")
        if r.get("note"):
            notes.append(f"  {r['label']}: {r['note']}")
    ns = {r.get("n") for r in result["rows"] if r.get("status") == "ok"}
    lines.append(f"({'/'.join(str(n) for n in sorted(ns))} utterances per row; float rows run on the host: "
                 "no chip latency/energy)")
    if notes:
        lines += ["notes:"] + notes
    lines.append("goals (issue 4):")
    for g in result["goals"]:
        lines.append(f"  [{g['status']:>12}] {g['goal']}: {g['measured']}")
    return "\n".join(lines)
