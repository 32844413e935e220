"""CI dashboards: simulated figures as benchmark series, and a regression check between runs.

The JSON shape is github-action-benchmark's `customSmallerIsBetter` input: a list of
{"name": str, "unit": str, "value": number} (optionally "extra": str). Simulated cycles,
bytes, latency and energy are deterministic, so a change is the code's doing, not noise.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from azsim.errors import ConfigError, FormatError

UNIT_BY_SUFFIX = (("_cycles", "cycles"), ("cycles", "cycles"), ("_bytes_per_s", "B/s"), ("_bytes", "bytes"),
                  ("_ms", "ms"), ("_mj", "mJ"), ("_pj", "pJ"), ("_s", "s"), ("_hz", "Hz"))


def unit_of(name: str) -> str:
    for part in reversed(name.split(".")):     # energy_pj.mac: the unit sits on a parent
        for suf, unit in UNIT_BY_SUFFIX:
            if part.endswith(suf):
                return unit
    return ""


def entries(figures: dict, prefix: str = "") -> list[dict]:
    """Flat numeric figures -> [{name, unit, value}] (nested dicts flattened with '.')."""
    out = []

    def walk(d, pre):
        for k, v in d.items():
            name = f"{pre}{k}"
            if isinstance(v, dict):
                walk(v, name + ".")
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.append({"name": name, "unit": unit_of(name), "value": float(v)})
    walk(figures, f"{prefix}." if prefix else "")
    return out


def write(path: str | Path, items: list[dict]) -> None:
    Path(path).write_text(json.dumps(items, indent=1) + "\n")


def load(path: str | Path) -> dict[str, dict]:
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: no such benchmark file")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(f"{p}: not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise FormatError(f"{p}: expected a JSON list of {{name, unit, value}} (customSmallerIsBetter)")
    out = {}
    for i, e in enumerate(data):
        if (not isinstance(e, dict) or not isinstance(e.get("name"), str)
                or isinstance(e.get("value"), bool) or not isinstance(e.get("value"), (int, float))):
            raise FormatError(f"{p}: entry {i} is not {{name: str, unit: str, value: number}}: {e!r}")
        if e["name"] in out:
            raise FormatError(f"{p}: entry {i}: name {e['name']!r} appears twice")
        out[e["name"]] = e
    return out


def parse_threshold(text: str) -> float:
    t = text.strip()
    try:
        v = float(t[:-1]) if t.endswith("%") else float(t)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"--threshold: {text!r} (allowed: a percentage >= 0, e.g. 5%)")
    return v


def compare(before: dict, after: dict, threshold_pct: float) -> tuple[list[dict], bool]:
    """Rows {name, unit, before, after, change_pct, status}; status regression | improved |
    same | new | gone. Smaller is better; a change beyond the threshold counts.
    Returns (rows, regressed)."""
    rows, regressed = [], False
    for name in list(before) + [n for n in after if n not in before]:
        b, a = before.get(name), after.get(name)
        unit = (a or b).get("unit", "")
        if b is None or a is None:
            rows.append({"name": name, "unit": unit, "before": b and b["value"], "after": a and a["value"],
                         "change_pct": None, "status": "new" if b is None else "gone"})
            continue
        bv, av = float(b["value"]), float(a["value"])
        if bv == av:
            ch = 0.0
        elif bv == 0:
            ch = math.inf if av > 0 else -math.inf
        else:
            ch = 100.0 * (av - bv) / abs(bv)
        status = "regression" if ch > threshold_pct else ("improved" if ch < -threshold_pct else "same")
        regressed |= status == "regression"
        rows.append({"name": name, "unit": unit, "before": bv, "after": av, "change_pct": ch, "status": status})
    return rows, regressed


def format_rows(rows: list[dict], show_all: bool = False) -> str:
    shown = [r for r in rows if show_all or r["status"] != "same"]
    if not shown:
        return "nothing moved beyond the threshold"
    heads = ("status", "name", "before", "after", "change")
    lines = [heads]
    for r in shown:
        f = lambda v: "-" if v is None else f"{v:.6g} {r['unit']}".rstrip()
        ch = "-" if r["change_pct"] is None else f"{r['change_pct']:+.2f}%"
        lines.append((r["status"], r["name"], f(r["before"]), f(r["after"]), ch))
    w = [max(len(l[j]) for l in lines) for j in range(len(heads))]
    return "\n".join("  ".join(c.ljust(w[j]) for j, c in enumerate(l)).rstrip() for l in lines)
