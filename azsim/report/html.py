"""`azsim report`: one self-contained HTML page about a sweep.

Sections: the Pareto front (plot + table), a roofline of each layer on the chosen chip, a
per-frame timeline of one utterance against the real-time deadline, energy by component, and
the sweep table. PNGs are written next to index.html and also embedded (data URIs), so the
page alone can be mailed around.

The chosen point (default: the front's lowest-energy point) is re-run through its evaluator's
detail() — the sweep's spec is kept in the results file — to get per-layer and per-frame data.
"""
from __future__ import annotations

import base64
import html
import math
import pickle
import time
from pathlib import Path

from azsim.errors import ConfigError, FormatError
from azsim.workflows import pareto
from azsim.workflows.store import ResultStore, finite

DEFAULT_OBJECTIVES = ("wer", "latency_ms", "energy_mj", "weight_bytes")
TABLE_METRICS = ("wer", "latency_ms", "latency_ms_p95", "energy_mj", "weight_bytes", "peak_sram_bytes",
                 "offchip_bytes_per_s", "rtf")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out: Path, name: str) -> str:
    path = out / name
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return name


def _img(out: Path, name: str | None, alt: str) -> str:
    if not name:
        return f"<p class='na'>{html.escape(alt)}: not available.</p>"
    b64 = base64.b64encode((out / name).read_bytes()).decode()
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def _detail(results: Path, rows: list[dict], point: dict, spec_path: str | None):
    """(spec point, detail dict) for the chosen row, or (None, reason)."""
    from azsim.workflows import spec as spec_mod
    from azsim.workflows import sweep as sweep_mod
    from azsim.workflows.evaluators import make_evaluator

    if spec_path:
        spec = spec_mod.load(spec_path)
    else:
        st = ResultStore(results, create=False)
        try:
            meta = st.meta(f"spec:{point.get('sweep')}")
        finally:
            st.close()
        if not meta:
            return None, "the results file does not name its spec (give --spec)"
        try:
            spec = spec_mod.from_dict(meta["data"], meta["path"], base_dir=Path(meta["path"]).parent)
        except ConfigError as err:
            return None, f"the sweep's spec no longer loads: {err}"
    p = next((q for q in spec.points if q.key == point["key"]), None)
    if p is None:
        return None, f"point {point['key']} is not in the spec {spec.path}"
    ev = make_evaluator(spec.evaluator, spec.options)
    cache = Path(str(results) + ".cache") / f"{sweep_mod._prep_key(spec, p.recipe)}.pkl"
    if cache.is_file():
        with open(cache, "rb") as f:
            art = pickle.load(f)
    else:
        art = ev.prepare(p.recipe, spec.recipes[p.recipe])
    return p, ev.detail(art, p.config)


def _pareto_png(out, rows, front, obj):
    if not front:
        return None
    pareto.plot(rows, front, obj, str(out / "pareto.png"))
    return "pareto.png"


def _roofline_png(out, det):
    layers = det.get("layers")
    if not layers:
        return None
    plt = _plt()
    peak = det["peak_macs_per_s"]
    bw = det["offchip_bytes_per_s_peak"]
    clock = det["clock_hz"]
    pts = []
    for L in layers:
        if L["cycles"] <= 0 or L["macs"] <= 0:
            continue
        perf = L["macs"] / (L["cycles"] / clock)
        oi = L["macs"] / L["offchip_bytes"] if L["offchip_bytes"] > 0 else math.inf
        pts.append((L["name"], oi, perf))
    if not pts:
        return None
    finite_oi = [p[1] for p in pts if math.isfinite(p[1])]
    ridge = peak / bw
    hi = max(finite_oi + [ridge]) * 20
    lo = min(finite_oi + [ridge]) / 20
    fig, ax = plt.subplots(figsize=(10, 4.8))
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(peak, bw * x) for x in xs], color="#333", lw=1.5,
            label=f"roof: {peak / 1e9:.3g} GMAC/s, {bw / 1e9:.3g} GB/s off-chip")
    for name, oi, perf in pts:
        x = oi if math.isfinite(oi) else hi / 2
        ax.scatter([x], [perf], s=30, marker="o" if math.isfinite(oi) else ">",
                   label=name + ("" if math.isfinite(oi) else " (resident: no off-chip bytes)"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("operational intensity (MACs per off-chip byte)")
    ax.set_ylabel("achieved MAC/s")
    ax.set_title("Roofline: each layer on the chosen chip")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if len(pts) < 14 else 2)
    fig.tight_layout()
    return _save(fig, out, "roofline.png")


def _timeline_png(out, det):
    frames = det.get("frames")
    if not frames:
        return None
    plt = _plt()
    fms = det["frame_ms"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7.5, 5.2), gridspec_kw={"height_ratios": [1.2, 1]})
    n = len(frames)
    lat = [f["end_ms"] - f["arrival_ms"] for f in frames]
    a1.bar(range(n), lat, color=["#d1495b" if l > fms else "#2e86ab" for l in lat], label="latency of the frame's work")
    a1.axhline(fms, color="#d1495b", ls="--", lw=1, label=f"real-time deadline ({fms:g} ms: the next frame arrives)")
    a1.set_xlabel("frame")
    a1.set_ylabel("arrival -> done (ms)")
    a1.set_yscale("log" if max(lat) < fms / 50 else "linear")
    a1.legend(fontsize=7)
    a1.set_title(f"Per-frame timeline of one utterance ({sum(l > fms for l in lat)} of {n} frames miss the deadline)",
                 fontsize=10)
    for i, f in enumerate(frames):
        a2.barh(0, fms, left=f["arrival_ms"], height=0.5, color="#e9ecef", edgecolor="#adb5bd", lw=0.4)
        a2.barh(0, max(f["end_ms"] - f["start_ms"], fms / 200), left=f["start_ms"], height=0.5, color="#2e86ab")
    a2.set_yticks([])
    a2.set_xlabel("time (ms) — grey: each frame's slot until the next arrives; blue: chip busy")
    fig.tight_layout()
    return _save(fig, out, "timeline.png")


def _energy_png(out, det, front, rows):
    comps = det.get("energy_mj_by_component") or {}
    plt = _plt()
    keyed = [r for r in front if any(k.startswith("energy_mj.") for k in r["metrics"])]
    if not comps and not keyed:
        return None
    fig, axes = plt.subplots(1, 2 if keyed else 1, figsize=(9 if keyed else 5.5, 3.8), squeeze=False)
    ax = axes[0][0]
    if comps:
        ax.bar(list(comps), [v * 1e3 for v in comps.values()], color="#2e86ab")
        ax.set_ylabel("energy (uJ)")
        ax.set_title("Chosen point: energy by component", fontsize=10)
        ax.tick_params(axis="x", rotation=30)
    if keyed:
        ax = axes[0][1]
        names = sorted({k[len("energy_mj."):] for r in keyed for k in r["metrics"]
                        if k.startswith("energy_mj.") and k != "energy_mj.total"})
        bottom = [0.0] * len(keyed)
        for c in names:
            vals = [r["metrics"].get(f"energy_mj.{c}", 0.0) for r in keyed]
            ax.bar(range(len(keyed)), vals, bottom=bottom, label=c)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(range(len(keyed)))
        ax.set_xticklabels([r["key"][:6] for r in keyed], rotation=60, fontsize=6)
        ax.set_ylabel("energy (mJ)")
        ax.set_title("Pareto points: energy by component", fontsize=10)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, out, "energy.png")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    return html.escape(str(v))


def _table(rows: list[dict], front_keys: set, metrics: list[str], chosen: str | None) -> str:
    params = []
    for r in rows:
        for k in r["params"]:
            if k not in params:
                params.append(k)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["key"] + params + metrics + ["eval s", "front"])
    body = []
    for r in rows:
        cls = " class='front'" if r["key"] in front_keys else ""
        if r["key"] == chosen:
            cls = " class='front chosen'"
        cells = [f"<td><code>{r['key'][:10]}</code></td>"]
        cells += [f"<td>{_fmt(r['params'].get(k, ''))}</td>" for k in params]
        cells += [f"<td class='num'>{_fmt(r['metrics'].get(m, ''))}</td>" for m in metrics]
        cells += [f"<td class='num'>{_fmt(r.get('eval_s') or 0.0)}</td>",
                  f"<td>{'&#9733;' if r['key'] in front_keys else ''}</td>"]
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table></div>")


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}h1{font-size:1.5em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
img{max-width:100%;border:1px solid #eee}table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.front{background:#fff4e6}tr.chosen{background:#ffd8a8}.na{color:#888;font-style:italic}
.meta{color:#555;font-size:13px}.wide{overflow-x:auto}"""


def build(results, out_dir, *, spec_path=None, objectives=None, point_key=None) -> Path:
    """Write out_dir/index.html (+ PNGs). Returns the HTML path."""
    from azsim.workflows.store import load_rows

    results = Path(results)
    rows = load_rows(results)
    if not rows:
        raise FormatError(f"{results}: no points yet (run azsim sweep first)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    present = {k for r in rows for k, v in r["metrics"].items() if finite(v)}
    if objectives is None:
        objectives = ",".join(m for m in DEFAULT_OBJECTIVES if m in present)
    obj = pareto.parse_objectives(objectives, rows, where="--objectives")
    front, skipped = pareto.front(rows, obj)
    front_keys = {r["key"] for r in front}
    if point_key:
        match = [r for r in rows if r["key"].startswith(point_key)]
        if len(match) != 1:
            raise ConfigError(f"--point {point_key!r}: matches {len(match)} points (give more of the key)")
        chosen = match[0]
    else:
        pool = front or rows
        chosen = min(pool, key=lambda r: r["metrics"].get("energy_mj", 0.0) if finite(r["metrics"].get("energy_mj")) else math.inf)
    point, det = _detail(results, rows, chosen, spec_path)
    note = ""
    if point is None:
        note, det = det, {}

    imgs = {
        "pareto": _pareto_png(out, rows, front, obj),
        "roofline": _roofline_png(out, det),
        "timeline": _timeline_png(out, det),
        "energy": _energy_png(out, det, front, rows),
    }
    metrics = [m for m in TABLE_METRICS if m in present] + sorted(
        m for m in present if m not in TABLE_METRICS and not m.startswith("energy_mj.")
        and m in {"cycles", "macs", "compute_cycles"})
    evals = [r["eval_s"] for r in rows if r.get("eval_s")]
    chosen_desc = ", ".join(f"{k}={v}" for k, v in chosen["params"].items())
    detail_txt = f"<p class='na'>Detail not available: {html.escape(note)}</p>" if note else ""
    utter = f" Utterance: “{html.escape(det['utterance'])}”." if det.get("utterance") else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>azsim sweep report: {html.escape(results.name)}</title>
<style>{CSS}</style></head><body>
<h1>azsim sweep report</h1>
<p class="meta">Results <code>{html.escape(str(results))}</code>: {len(rows)} points; mean evaluation
{(sum(evals) / len(evals) if evals else 0):.3g} s per point. Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.</p>
<h2>Pareto front</h2>
<p>Minimizing {html.escape(', '.join(('max ' if s < 0 else '') + m for m, s in obj))}: {len(front)} of {len(rows)} points
are not dominated{f' ({len(skipped)} points lack an objective)' if skipped else ''}.</p>
{_img(out, imgs['pareto'], 'Pareto front')}
{_table(front, front_keys, [m for m, _ in obj] + [m for m in metrics if m not in [o for o, _ in obj]][:4], chosen['key'])}
<h2>Chosen point</h2>
<p><code>{chosen['key']}</code>: {html.escape(chosen_desc)}.{utter}</p>{detail_txt}
<h3>Roofline of each layer</h3>
{_img(out, imgs['roofline'], 'Roofline')}
<h3>Per-frame timeline against the real-time deadline</h3>
{_img(out, imgs['timeline'], 'Timeline')}
<h3>Energy by component</h3>
{_img(out, imgs['energy'], 'Energy by component')}
<h2>Sweep table</h2>
<p>Highlighted: Pareto front; darker: the chosen point.</p>
{_table(rows, front_keys, metrics, chosen['key'])}
</body></html>
"""
    path = out / "index.html"
    path.write_text(page)
    return path
