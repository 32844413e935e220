"""Pareto fronts over sweep results: the points no other point beats on every objective.

All objectives are minimized (wer, latency_ms, energy_mj, weight_bytes ...); prefix a name
with '-' to maximize it instead (e.g. -rtf_headroom).
"""
from __future__ import annotations

import numpy as np

from azsim.errors import ConfigError
from azsim.workflows.store import finite


def parse_objectives(text: str, rows: list[dict], where: str = "--objectives") -> list[tuple[str, float]]:
    """[(metric, sign)] with sign +1 to minimize, -1 to maximize; every name must be a metric."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError(f"{where}: give at least one metric name, e.g. wer,latency_ms")
    known = sorted({k for r in rows for k, v in r["metrics"].items() if finite(v)})
    out = []
    for n in names:
        sign = -1.0 if n.startswith("-") else 1.0
        m = n.lstrip("-")
        if m not in known:
            raise ConfigError(f"{where}: unknown metric {m!r} (the results have: {', '.join(known)})")
        out.append((m, sign))
    if len({m for m, _ in out}) != len(out):
        raise ConfigError(f"{where}: a metric is named twice in {text!r}")
    return out


def front_mask(values: np.ndarray) -> np.ndarray:
    """values (n, k), all minimized -> bool mask of the non-dominated rows. Rows with equal
    values keep each other (neither dominates)."""
    n = values.shape[0]
    keep = np.ones(n, bool)
    for i in range(n):
        if not keep[i]:
            continue
        le = np.all(values <= values[i], axis=1)
        lt = np.any(values < values[i], axis=1)
        if np.any(le & lt):        # someone is at least as good everywhere and better somewhere
            keep[i] = False
    return keep


def front(rows: list[dict], objectives: list[tuple[str, float]]) -> tuple[list[dict], list[dict]]:
    """(front rows sorted by the first objective, rows left out for a missing/non-finite metric)."""
    usable, skipped = [], []
    for r in rows:
        (usable if all(finite(r["metrics"].get(m)) for m, _ in objectives) else skipped).append(r)
    if not usable:
        return [], skipped
    vals = np.array([[s * float(r["metrics"][m]) for m, s in objectives] for r in usable])
    mask = front_mask(vals)
    out = [r for r, k in zip(usable, mask) if k]
    m0, s0 = objectives[0]
    out.sort(key=lambda r: s0 * r["metrics"][m0])
    return out, skipped


def table(rows: list[dict], objectives: list[tuple[str, float]]) -> str:
    params = []
    for r in rows:
        for k in r["params"]:
            if k not in params:
                params.append(k)
    heads = params + [m for m, _ in objectives]
    lines = [heads]
    for r in rows:
        lines.append([str(r["params"].get(k, "")) for k in params]
                     + [f"{r['metrics'][m]:.6g}" for m, _ in objectives])
    w = [max(len(l[j]) for l in lines) for j in range(len(heads))]
    return "\n".join("  ".join(c.ljust(w[j]) for j, c in enumerate(l)).rstrip() for l in lines)


def plot(all_rows: list[dict], front_rows: list[dict], objectives, out_path: str) -> None:
    """Scatter of every point with the front highlighted: one panel per pair of objectives
    (the first objective against each of the others), or a strip for a single objective."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m, _ in objectives]
    pairs = [(names[0], n) for n in names[1:]] or [(names[0], None)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    keys = {r["key"] for r in front_rows}
    for ax, (x, y) in zip(axes[0], pairs):
        rest = [r for r in all_rows if r["key"] not in keys and finite(r["metrics"].get(x))
                and (y is None or finite(r["metrics"].get(y)))]
        fy = (lambda r: r["metrics"][y]) if y else (lambda r: 0.0)
        ax.scatter([r["metrics"][x] for r in rest], [fy(r) for r in rest], s=14, c="#9aa5b1",
                   label="dominated")
        fr = sorted(front_rows, key=lambda r: r["metrics"][x])
        ax.scatter([r["metrics"][x] for r in fr], [fy(r) for r in fr], s=28, c="#d1495b",
                   label="Pareto front", zorder=3)
        ax.set_xlabel(x)
        ax.set_ylabel(y or "")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Pareto front over {', '.join(names)} ({len(front_rows)} of {len(all_rows)} points)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
