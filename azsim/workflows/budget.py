"""Budget checks: does a scored model fit the product's limits?

    budgets = parse_budgets("flash=2MB,sram=512KB,latency_ms=200,energy_mj=5,wer=8")
    rows, ok = check(figures, budgets)      # figures: `azsim score --json`'s object

Every budget is an upper limit. Names, the figure each reads and its unit:
"""
from __future__ import annotations

from dataclasses import dataclass

from azsim.errors import ConfigError
from azsim.workflows import units


@dataclass(frozen=True)
class Budget:
    name: str
    metrics: tuple[str, ...]   # the first one present in the figures is used
    kind: str                  # units.UNITS key
    scale: float               # figure * scale is in the budget's base unit
    show: str                  # how the value is printed


BUDGETS = {
    "flash": Budget("flash", ("flash_bytes", "weight_bytes"), "bytes", 1.0, "bytes"),
    "weights": Budget("weights", ("weight_bytes",), "bytes", 1.0, "bytes"),
    "sram": Budget("sram", ("peak_sram_bytes",), "bytes", 1.0, "bytes"),
    "latency_ms": Budget("latency_ms", ("latency_ms",), "ms", 1.0, "ms"),
    "latency_ms_p95": Budget("latency_ms_p95", ("latency_ms_p95",), "ms", 1.0, "ms"),
    "energy_mj": Budget("energy_mj", ("energy_mj",), "mj", 1.0, "mJ"),
    "wer": Budget("wer", ("wer",), "percent", 100.0, "%"),   # score's wer is a fraction
    "rtf": Budget("rtf", ("rtf",), "ratio", 1.0, ""),
    "offchip": Budget("offchip", ("offchip_bytes_per_s",), "bytes_per_s", 1.0, "B/s"),
}
__doc__ += "\n".join(f"    {b.name:<15} {'/'.join(b.metrics):<26} units: {units.allowed(b.kind)}"
                     for b in BUDGETS.values()) + \
    "\nflash reads flash_bytes (weights + constants) when the figures have it, else weight_bytes.\n"


def parse_budgets(text: str, where: str = "--budget") -> dict[str, float]:
    """'flash=2MB,wer=8' -> {'flash': 2097152.0, 'wer': 8.0} (values in each budget's base unit)."""
    out: dict[str, float] = {}
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{where}: empty; give NAME=VALUE pairs such as flash=2MB,wer=8 "
                          f"(names: {', '.join(BUDGETS)})")
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not value.strip():
            raise ConfigError(f"{where}: {item!r} is not NAME=VALUE (e.g. flash=2MB)")
        if name not in BUDGETS:
            raise ConfigError(f"{where}: unknown budget {name!r} (allowed: {', '.join(BUDGETS)})")
        if name in out:
            raise ConfigError(f"{where}: budget {name!r} given twice")
        b = BUDGETS[name]
        v = units.parse(value.strip(), b.kind, f"{where} {name}")
        if v < 0:
            raise ConfigError(f"{where} {name}: {value!r} is negative (allowed: >= 0)")
        out[name] = v
    return out


def check(figures: dict, budgets: dict[str, float]) -> tuple[list[dict], bool]:
    """One row per budget: figure, value, budget, margin (budget - value, in the budget's unit),
    margin_pct (of the budget) and ok. A figure missing from `figures` is a failure."""
    rows, ok_all = [], True
    for name, limit in budgets.items():
        b = BUDGETS[name]
        metric = next((m for m in b.metrics if isinstance(figures.get(m), (int, float))
                       and not isinstance(figures.get(m), bool)), None)
        if metric is None:
            rows.append({"budget": name, "figure": "/".join(b.metrics), "value": None, "limit": limit,
                         "margin": None, "margin_pct": None, "ok": False, "unit": b.show,
                         "note": "figure missing"})
            ok_all = False
            continue
        value = float(figures[metric]) * b.scale
        margin = limit - value
        ok = value <= limit
        ok_all &= ok
        rows.append({"budget": name, "figure": metric, "value": value, "limit": limit, "margin": margin,
                     "margin_pct": 100.0 * margin / limit if limit else None, "ok": ok, "unit": b.show,
                     "note": ""})
    return rows, ok_all


def _fmt(v, unit):
    if v is None:
        return "-"
    if unit == "bytes":
        return units.fmt_bytes(v)
    return f"{v:.4g} {unit}".rstrip()


def format_table(rows: list[dict]) -> str:
    heads = ("budget", "figure", "value", "limit", "margin", "margin %", "status")
    lines = [heads]
    for r in rows:
        lines.append((r["budget"], r["figure"], _fmt(r["value"], r["unit"]), _fmt(r["limit"], r["unit"]),
                      _fmt(r["margin"], r["unit"]),
                      "-" if r["margin_pct"] is None else f"{r['margin_pct']:+.1f}",
                      "ok" if r["ok"] else ("MISSING" if r["note"] else "OVER")))
    w = [max(len(l[j]) for l in lines) for j in range(len(heads))]
    return "\n".join("  ".join(c.ljust(w[j]) for j, c in enumerate(l)).rstrip() for l in lines)
