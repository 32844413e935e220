"""Numbers with units, as users type them: `2MB`, `512KB`, `200ms`, `5mJ`, `800MHz`, `8%`.

Byte units follow the JEDEC memory convention (KB = 1024 bytes, MB = 1024**2, GB = 1024**3);
KiB/MiB/GiB are accepted as the same values, since SRAM and flash sizes are powers of two.
"""
from __future__ import annotations

import math
import re

from azsim.errors import ConfigError

# kind -> {unit: factor to the base unit}; the base unit is the key with factor 1
UNITS: dict[str, dict[str, float]] = {
    "bytes": {"B": 1, "KB": 1024, "KiB": 1024, "MB": 1024**2, "MiB": 1024**2,
              "GB": 1024**3, "GiB": 1024**3},
    "ms": {"us": 1e-3, "ms": 1, "s": 1e3},
    "mj": {"uJ": 1e-3, "mJ": 1, "J": 1e3},
    "hz": {"Hz": 1, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9},
    "percent": {"%": 1, "": 1},
    "ratio": {"": 1},
    "bytes_per_s": {"B/s": 1, "KB/s": 1024, "MB/s": 1024**2, "GB/s": 1024**3},
}
_NUM = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z%/]*)\s*$")


def parse(text, kind: str, where: str) -> float:
    """`text` ("2MB", "200", 5.0) in the base unit of `kind`. A bare number is in the base unit.
    Raises ConfigError naming `where`, the unit and the allowed units."""
    table = UNITS[kind]
    if isinstance(text, bool):
        raise ConfigError(f"{where}: {text!r} is not a number")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        m = _NUM.match(str(text))
        if not m:
            raise ConfigError(f"{where}: {text!r} is not a number with a unit "
                              f"(allowed units: {allowed(kind)})")
        value, unit = float(m.group(1)), m.group(2)
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {text!r} is not a finite number")
    if unit == "":
        return value
    # case-insensitive match, but keep 'mB' vs 'MB' etc. unambiguous: exact first
    factor = table.get(unit)
    if factor is None:
        folded = {u.lower(): f for u, f in table.items()}
        factor = folded.get(unit.lower())
    if factor is None:
        raise ConfigError(f"{where}: unknown unit {unit!r} in {text!r} (allowed units: {allowed(kind)})")
    return value * factor


def allowed(kind: str) -> str:
    units = [u for u in UNITS[kind] if u]
    return ", ".join(units) if units else "none (a plain number)"


def fmt_bytes(n: float) -> str:
    for unit, f in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if abs(n) >= f:
            return f"{n / f:.3g} {unit}"
    return f"{n:.0f} B"
