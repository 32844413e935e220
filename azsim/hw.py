"""Hardware configuration: dataclasses, TOML presets, validation (once, here, at the edge).

A preset is a TOML file in azsim/presets/ (or any path). Every numeric field must
cite its source in the preset's [sources] table, keyed by the field's dotted path,
so that no default energy or bandwidth is an unexplained number. The C++ engine
receives `HwConfig.to_native()`: a flat dict it trusts without re-checking.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azsim.compress import FORMATS
from azsim.errors import ConfigError
from azsim.tomlio import read_toml

PRESET_DIR = Path(__file__).parent / "presets"

DATAFLOWS = ("ws", "os", "is")
ZERO_MODES = ("none", "gate", "skip")
OFFCHIP_KINDS = ("dram", "flash")
OPERAND_BITS = (8, 4)
KNOWN_FORMATS = FORMATS  # as the native codec registry spells them (test_hw checks they agree)


@dataclass(frozen=True)
class MacArray:
    rows: int
    cols: int
    bits: int          # weight operand width; activations are int8
    dataflow: str      # ws | os | is
    zero: str          # none | gate (energy saved) | skip (time and energy saved)

    @property
    def macs(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Sram:
    weight_bytes: int
    activation_bytes: int


@dataclass(frozen=True)
class Offchip:
    kind: str               # dram | flash
    bytes_per_cycle: float  # sustained bandwidth in chip clock cycles
    latency_cycles: int     # first-byte latency of one request
    burst_bytes: int        # transfers are rounded up to whole bursts
    pj_per_byte: float


@dataclass(frozen=True)
class Decoder:
    formats: tuple[str, ...]
    bytes_per_cycle: float    # compressed bytes consumed per cycle
    weights_per_cycle: float  # decoded weights produced per cycle


@dataclass(frozen=True)
class Vector:
    lanes: int


@dataclass(frozen=True)
class Host:
    mflops: float  # host CPU core for host-side work (beam search, features)


@dataclass(frozen=True)
class Energy:
    mac_int8_pj: float
    mac_int4_pj: float
    mac_gated_pj: float       # a MAC with a zero operand under clock gating
    sram_pj_per_byte: tuple[tuple[int, float], ...]  # (SRAM size bytes, pJ/byte), by size
    decode_pj_per_byte: float  # per decoded output byte
    vector_pj_per_op: float
    leakage_mw: float

    def sram_pj_at(self, size_bytes: int) -> float:
        """pJ/byte of an SRAM of this size: log-size interpolation of the table, clamped at its ends."""
        table = self.sram_pj_per_byte
        if size_bytes <= table[0][0]:
            return table[0][1]
        for (s0, e0), (s1, e1) in zip(table, table[1:]):
            if size_bytes <= s1:
                t = math.log(size_bytes / s0) / math.log(s1 / s0)
                return e0 + t * (e1 - e0)
        return table[-1][1]


@dataclass(frozen=True)
class HwConfig:
    name: str
    description: str
    clock_hz: float
    mac_array: MacArray
    sram: Sram
    offchip: Offchip
    decoder: Decoder
    vector: Vector
    host: Host
    energy: Energy
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    origin: str = field(default="<memory>", compare=False)  # file it came from, for messages

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("origin")
        d["decoder"]["formats"] = list(self.decoder.formats)
        d["energy"]["sram_pj_per_byte"] = [list(row) for row in self.energy.sram_pj_per_byte]
        return d

    def with_overrides(self, overrides: dict[str, Any]) -> "HwConfig":
        """A validated copy with dotted-path fields replaced, e.g. {"mac_array.rows": 16}."""
        d = self.to_dict()
        for path, value in overrides.items():
            node = d
            *parents, leaf = path.split(".")
            for p in parents:
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"{self.origin}: override {path!r}: no section {p!r}")
                node = node[p]
            if leaf not in node:
                raise ConfigError(f"{self.origin}: override {path!r}: unknown field {leaf!r} "
                                  f"(known: {', '.join(sorted(node))})")
            node[leaf] = value
        return from_dict(d, origin=f"{self.origin} with overrides")

    def to_native(self) -> dict[str, Any]:
        """Flat dict for the C++ engine; values are already validated."""
        m, s, o, dec, e = self.mac_array, self.sram, self.offchip, self.decoder, self.energy
        return {
            "clock_hz": float(self.clock_hz),
            "rows": m.rows, "cols": m.cols, "bits": m.bits,
            "dataflow": m.dataflow, "zero": m.zero,
            "weight_sram_bytes": s.weight_bytes, "act_sram_bytes": s.activation_bytes,
            "offchip_bytes_per_cycle": float(o.bytes_per_cycle),
            "offchip_latency_cycles": o.latency_cycles,
            "offchip_burst_bytes": o.burst_bytes,
            "offchip_pj_per_byte": float(o.pj_per_byte),
            "decoder_bytes_per_cycle": float(dec.bytes_per_cycle),
            "decoder_weights_per_cycle": float(dec.weights_per_cycle),
            "decoder_formats": list(dec.formats),
            "vector_lanes": self.vector.lanes,
            "mac_pj": float(e.mac_int8_pj if m.bits == 8 else e.mac_int4_pj),
            "mac_gated_pj": float(e.mac_gated_pj),
            "weight_sram_pj_per_byte": e.sram_pj_at(s.weight_bytes),
            "act_sram_pj_per_byte": e.sram_pj_at(s.activation_bytes),
            "decode_pj_per_byte": float(e.decode_pj_per_byte),
            "vector_pj_per_op": float(e.vector_pj_per_op),
            "leakage_mw": float(e.leakage_mw),
            "host_mflops": float(self.host.mflops),
        }


# --- schema -----------------------------------------------------------------------
# field -> (kind, low, high, unit); kind: int | float | str choices | list
_NUM = {
    "clock_hz": ("float", 1e6, 1e10, "Hz"),
    "mac_array.rows": ("int", 1, 1024, "PEs"),
    "mac_array.cols": ("int", 1, 1024, "PEs"),
    "sram.weight_bytes": ("int", 1, 1 << 34, "bytes"),
    "sram.activation_bytes": ("int", 1, 1 << 34, "bytes"),
    "offchip.bytes_per_cycle": ("float", 1e-3, 4096, "bytes/cycle"),
    "offchip.latency_cycles": ("int", 0, 1_000_000, "cycles"),
    "offchip.burst_bytes": ("int", 1, 4096, "bytes"),
    "offchip.pj_per_byte": ("float", 0, 1e5, "pJ/byte"),
    "decoder.bytes_per_cycle": ("float", 1e-3, 4096, "bytes/cycle"),
    "decoder.weights_per_cycle": ("float", 1e-3, 65536, "weights/cycle"),
    "vector.lanes": ("int", 1, 4096, "lanes"),
    "host.mflops": ("float", 1e-3, 1e9, "MFLOP/s"),
    "energy.mac_int8_pj": ("float", 0, 1e4, "pJ/MAC"),
    "energy.mac_int4_pj": ("float", 0, 1e4, "pJ/MAC"),
    "energy.mac_gated_pj": ("float", 0, 1e4, "pJ/MAC"),
    "energy.decode_pj_per_byte": ("float", 0, 1e4, "pJ/byte"),
    "energy.vector_pj_per_op": ("float", 0, 1e4, "pJ/op"),
    "energy.leakage_mw": ("float", 0, 1e6, "mW"),
}
_CHOICES = {
    "mac_array.bits": OPERAND_BITS,
    "mac_array.dataflow": DATAFLOWS,
    "mac_array.zero": ZERO_MODES,
    "offchip.kind": OFFCHIP_KINDS,
}
_SECTIONS = {
    "mac_array": ("rows", "cols", "bits", "dataflow", "zero"),
    "sram": ("weight_bytes", "activation_bytes"),
    "offchip": ("kind", "bytes_per_cycle", "latency_cycles", "burst_bytes", "pj_per_byte"),
    "decoder": ("formats", "bytes_per_cycle", "weights_per_cycle"),
    "vector": ("lanes",),
    "host": ("mflops",),
    "energy": ("mac_int8_pj", "mac_int4_pj", "mac_gated_pj", "sram_pj_per_byte",
               "decode_pj_per_byte", "vector_pj_per_op", "leakage_mw"),
}
_TOP = ("name", "description", "clock_hz", "sources") + tuple(_SECTIONS)
UNITS = {k: v[3] for k, v in _NUM.items()} | {"energy.sram_pj_per_byte": "(bytes, pJ/byte)"}


def _check_number(origin: str, path: str, value: Any) -> int | float:
    kind, lo, hi, unit = _NUM[path]
    ok_type = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{origin}: {path} = {value!r}: must be {'an integer' if kind == 'int' else 'a number'} "
                          f"in [{lo:g}, {hi:g}] {unit}")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"{origin}: {path} = {value!r} is out of range: allowed [{lo:g}, {hi:g}] {unit}")
    return value


def _section(origin: str, data: dict, name: str) -> dict:
    sec = data.get(name)
    if not isinstance(sec, dict):
        raise ConfigError(f"{origin}: missing section [{name}] (fields: {', '.join(_SECTIONS[name])})")
    unknown = set(sec) - set(_SECTIONS[name])
    if unknown:
        raise ConfigError(f"{origin}: [{name}] has unknown field(s) {', '.join(sorted(unknown))} "
                          f"(allowed: {', '.join(_SECTIONS[name])})")
    missing = [f for f in _SECTIONS[name] if f not in sec]
    if missing:
        raise ConfigError(f"{origin}: [{name}] is missing field(s) {', '.join(missing)}")
    out = {}
    for key, value in sec.items():
        path = f"{name}.{key}"
        if path in _NUM:
            out[key] = _check_number(origin, path, value)
        elif path in _CHOICES:
            if value not in _CHOICES[path]:
                allowed = ", ".join(map(str, _CHOICES[path]))
                raise ConfigError(f"{origin}: {path} = {value!r}: allowed values are {allowed}")
            out[key] = value
        else:
            out[key] = value
    return out


def from_dict(data: dict[str, Any], origin: str = "<memory>") -> HwConfig:
    """Validate a preset's contents and build the config. Raises ConfigError naming the field."""
    unknown = set(data) - set(_TOP)
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(_TOP)})")
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{origin}: {key} must be a non-empty string")
    if "clock_hz" not in data:
        raise ConfigError(f"{origin}: missing clock_hz")
    clock_hz = float(_check_number(origin, "clock_hz", data["clock_hz"]))
    s = {name: _section(origin, data, name) for name in _SECTIONS}

    formats = s["decoder"]["formats"]
    if not isinstance(formats, list) or not formats:
        raise ConfigError(f"{origin}: decoder.formats must be a non-empty list of {', '.join(KNOWN_FORMATS)}")
    for f in formats:
        if f not in KNOWN_FORMATS:
            raise ConfigError(f"{origin}: decoder.formats has unknown format {f!r} "
                              f"(allowed: {', '.join(KNOWN_FORMATS)})")
    if s["offchip"]["burst_bytes"] & (s["offchip"]["burst_bytes"] - 1):
        raise ConfigError(f"{origin}: offchip.burst_bytes = {s['offchip']['burst_bytes']}: must be a power of two in [1, 4096]")

    table = s["energy"]["sram_pj_per_byte"]
    rows_ok = isinstance(table, list) and table and all(
        isinstance(r, list) and len(r) == 2 and isinstance(r[0], int) and r[0] > 0
        and isinstance(r[1], (int, float)) and math.isfinite(r[1]) and r[1] >= 0 for r in table)
    if not rows_ok or [r[0] for r in table] != sorted({r[0] for r in table}):
        raise ConfigError(f"{origin}: energy.sram_pj_per_byte must be a list of [size_bytes > 0, pJ/byte >= 0] "
                          "rows with strictly increasing sizes")

    m = s["mac_array"]
    tile_bytes = m["rows"] * m["cols"] * m["bits"] // 8
    if s["sram"]["weight_bytes"] < 2 * tile_bytes:
        raise ConfigError(f"{origin}: sram.weight_bytes = {s['sram']['weight_bytes']} is smaller than two weight "
                          f"tiles of the {m['rows']}x{m['cols']} int{m['bits']} array (double buffering): "
                          f"allowed >= {2 * tile_bytes} bytes")
    min_act_bytes = 2 * 4 * (m["rows"] + m["cols"])  # one int32 input and output slice, double-buffered
    if s["sram"]["activation_bytes"] < min_act_bytes:
        raise ConfigError(f"{origin}: sram.activation_bytes = {s['sram']['activation_bytes']} cannot hold the "
                          f"array's double-buffered int32 input/output slices: allowed >= {min_act_bytes} bytes")

    sources = data.get("sources", {})
    if not isinstance(sources, dict):
        raise ConfigError(f"{origin}: [sources] must be a table of field -> citation")
    cited = ["clock_hz"] + [f"{sec}.{k}" for sec, keys in _SECTIONS.items() for k in keys
                            if f"{sec}.{k}" in _NUM or f"{sec}.{k}" == "energy.sram_pj_per_byte"
                            or f"{sec}.{k}" == "offchip.kind"]
    uncited = [p for p in cited if not str(sources.get(p, "")).strip()]
    if uncited:
        raise ConfigError(f"{origin}: [sources] must cite every figure; missing: {', '.join(uncited)}")

    e = s["energy"]
    return HwConfig(
        name=data["name"], description=data["description"], clock_hz=clock_hz,
        mac_array=MacArray(**m), sram=Sram(**s["sram"]), offchip=Offchip(**s["offchip"]),
        decoder=Decoder(formats=tuple(formats), bytes_per_cycle=float(s["decoder"]["bytes_per_cycle"]),
                        weights_per_cycle=float(s["decoder"]["weights_per_cycle"])),
        vector=Vector(**s["vector"]), host=Host(mflops=float(s["host"]["mflops"])),
        energy=Energy(**{k: (tuple((int(a), float(b)) for a, b in v) if k == "sram_pj_per_byte" else float(v))
                         for k, v in e.items()}),
        sources=dict(sources), origin=origin,
    )


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load(name_or_path: str | Path) -> HwConfig:
    """Load a preset by name (see `azsim presets`) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PRESET_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {str(name_or_path)!r} (available: {', '.join(preset_names())}; "
                              "or give a path to a .toml file)")
    return from_dict(read_toml(path, "hardware config"), origin=str(path))
