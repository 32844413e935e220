"""`azsim presets` and `azsim presets show NAME`: the hardware presets, with units and sources."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("presets", help="list hardware presets, or show one with units and sources")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="preset name or path to a .toml file (for `show`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _fmt_bytes(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def run(args) -> int:
    from azsim import hw
    from azsim.errors import ConfigError

    if args.action == "list":
        configs = [hw.load(n) for n in hw.preset_names()]
        if args.json:
            print(json.dumps([c.to_dict() for c in configs]))
            return 0
        print(f"{'name':<10} {'MACs':>6} {'array':>7} {'clock':>9} {'weight SRAM':>12} {'off-chip':>16}  description")
        for c in configs:
            m, o = c.mac_array, c.offchip
            gbps = o.bytes_per_cycle * c.clock_hz / 1e9
            print(f"{c.name:<10} {m.macs:>6} {m.rows:>3}x{m.cols:<3} {c.clock_hz / 1e6:>5.0f} MHz "
                  f"{_fmt_bytes(c.sram.weight_bytes):>12} {o.kind:>5} {gbps:>5.2f} GB/s  {c.description}")
        return 0

    if not args.name:
        raise ConfigError("`azsim presets show` needs a preset name (see `azsim presets`)")
    cfg = hw.load(args.name)
    if args.json:
        print(json.dumps(cfg.to_dict()))
        return 0
    print(f"{cfg.name}: {cfg.description}   [{cfg.origin}]")
    d = cfg.to_dict()
    rows = [("clock_hz", d["clock_hz"])]
    for section in ("mac_array", "sram", "offchip", "decoder", "vector", "host", "energy"):
        rows += [(f"{section}.{k}", v) for k, v in d[section].items()]
    for path, value in rows:
        unit = hw.UNITS.get(path, "")
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        src = cfg.sources.get(path, "")
        print(f"  {path:<28} {shown:>18} {unit:<16} {src}")
    n = cfg.to_native()
    print(f"  derived: weight SRAM {n['weight_sram_pj_per_byte']:.2f} pJ/byte, "
          f"activation SRAM {n['act_sram_pj_per_byte']:.2f} pJ/byte, "
          f"off-chip {n['offchip_bytes_per_cycle'] * cfg.clock_hz / 1e9:.2f} GB/s")
    return 0
