"""`azsim layer`: simulate one GEMM layer (random weights at a given sparsity) on a preset.

    azsim layer --preset default --gemm 1,1024,4096 --sparsity 0.5 --format bitmask --json

GEMM (M, K, N): M activation rows (frames) x K inputs, N outputs. Flags
override the preset's values. One call of a fresh Session is simulated
(weights come from off-chip memory once, as on a first inference).
"""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("layer", help="simulate one GEMM layer on a hardware preset")
    p.add_argument("--preset", default="default", help="preset name or .toml path (default: default)")
    p.add_argument("--gemm", required=True, metavar="M,K,N",
                   help="M rows of activations, K inputs, N outputs")
    p.add_argument("--rows", type=int, help="MAC array rows (overrides the preset)")
    p.add_argument("--cols", type=int, help="MAC array columns (overrides the preset)")
    p.add_argument("--dataflow", choices=["ws", "os", "is"], help="overrides the preset")
    p.add_argument("--zero", choices=["none", "gate", "skip"], help="zero handling (overrides the preset)")
    p.add_argument("--bits", type=int, choices=[8, 4], help="weight bits (overrides the preset's array width)")
    p.add_argument("--sparsity", type=float, default=0.0, help="fraction of zero weights in [0, 1)")
    p.add_argument("--format", help="weight format (default: dense for 8 bits, int4 for 4 bits)")
    p.add_argument("--seed", type=int, default=0, help="random seed for weights and activations")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def parse_gemm(text: str) -> tuple[int, int, int]:
    from azsim.errors import ConfigError

    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1 or max(dims) > 1 << 20:
        raise ConfigError(f"--gemm: {text!r} (expected M,K,N: three integers in [1, 1048576])")
    return dims


def random_layer(M: int, K: int, N: int, bits: int, sparsity: float, fmt: str, seed: int):
    """Gaussian-like int weights (N, K) with round(sparsity*N*K) zeros at random places,
    and int8 activations (M, K). Codebook formats get 15 nonzero levels (+ zero)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    hi = 7 if bits == 4 else 127
    if fmt.startswith("codebook"):
        levels = np.unique(np.round(np.linspace(-hi, hi, 16)).astype(np.int64))
        levels = levels[levels != 0][:15]
        w = rng.choice(levels, size=(N, K))
    else:
        sigma = hi / 3.0
        w = np.clip(np.round(rng.normal(0, sigma, (N, K))), -hi - 1, hi)
        zero = w == 0
        w[zero] = rng.choice([-1, 1], size=int(zero.sum()))   # zeros only where asked
    n_zero = int(round(sparsity * N * K))
    if n_zero:
        idx = rng.choice(N * K, size=n_zero, replace=False)
        w.reshape(-1)[idx] = 0
    x = rng.integers(-128, 128, size=(M, K), dtype=np.int64)
    return w.astype(np.int8), x.astype(np.int8)


def simulate(cfg, M: int, K: int, N: int, *, bits: int, sparsity: float, fmt: str, seed: int) -> dict:
    """Build, compile and run the layer once; returns the JSON-ready result."""
    import numpy as np

    from azsim import reference as ref
    from azsim.compile import compile as compile_graph
    from azsim.engine import Session
    from azsim.graph import Graph

    w, x = random_layer(M, K, N, bits, sparsity, fmt, seed)
    g = Graph("layer")
    xin = g.input("x", K)
    mult, shift = ref.quantize_multiplier(np.full(N, 1.0 / (64.0 * K)))
    y = g.matmul(xin, w, mult=mult, shift=shift, bits=bits, format=fmt, name="layer")
    g.output(y)
    prog = compile_graph(g, cfg)
    sess = Session(prog)
    res = sess.run({"x": x})
    d = res.stats.to_dict(per_op=False)
    wi = prog.weights[0]
    out = {
        "preset": cfg.name, "gemm": [M, K, N], "rows": cfg.mac_array.rows,
        "cols": cfg.mac_array.cols, "dataflow": cfg.mac_array.dataflow, "zero": cfg.mac_array.zero,
        "bits": bits, "format": fmt, "sparsity": sparsity, "seed": seed,
        "compute_cycles": d["compute_cycles"], "total_cycles": d["cycles"],
        "stall_memory_cycles": d["stall_memory_cycles"],
        "stall_decoder_cycles": d["stall_decoder_cycles"],
        "stall_compute_cycles": d["stall_compute_cycles"], "vector_cycles": d["vector_cycles"],
        "offchip_bytes": d["offchip_bytes"], "weight_bytes": prog.weight_bytes,
        "weight_bits_per_weight": 8.0 * prog.weight_bytes / (N * K),
        "resident": wi.resident, "tiles": wi.n_tiles, "tile_n": wi.tile_n, "tile_k": wi.tile_k,
        "macs": d["macs"], "macs_executed": d["macs_executed"], "macs_skipped": d["macs_skipped"],
        "macs_gated": d["macs_gated"],
        "weight_sram_read_bytes": d["weight_sram_read_bytes"],
        "weight_sram_write_bytes": d["weight_sram_write_bytes"],
        "act_sram_read_bytes": d["act_sram_read_bytes"],
        "act_sram_write_bytes": d["act_sram_write_bytes"],
        "time_s": d["time_s"], "energy_pj": d["energy_pj"],
        "table": res.stats.table(),
    }
    return out


def run(args) -> int:
    from azsim import hw
    from azsim.errors import ConfigError

    M, K, N = parse_gemm(args.gemm)
    if not (0.0 <= args.sparsity < 1.0):
        raise ConfigError(f"--sparsity: {args.sparsity} (allowed: [0, 1))")
    cfg = hw.load(args.preset)
    over = {}
    for flag, path in (("rows", "mac_array.rows"), ("cols", "mac_array.cols"),
                       ("dataflow", "mac_array.dataflow"), ("zero", "mac_array.zero"),
                       ("bits", "mac_array.bits")):
        v = getattr(args, flag)
        if v is not None:
            over[path] = v
    if over:
        cfg = cfg.with_overrides(over)
    bits = cfg.mac_array.bits
    fmt = args.format or ("int4" if bits == 4 else "dense")
    out = simulate(cfg, M, K, N, bits=bits, sparsity=args.sparsity, fmt=fmt, seed=args.seed)
    table = out.pop("table")
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"layer GEMM M={M} K={K} N={N} on '{cfg.name}' ({out['rows']}x{out['cols']} {out['dataflow']}, "
          f"zero={out['zero']}, {bits}-bit {fmt}, sparsity {args.sparsity:g})")
    print(table)
    e = out["energy_pj"]
    print(f"weight bytes {out['weight_bytes']} ({out['weight_bits_per_weight']:.2f} bits/weight), "
          f"off-chip bytes {out['offchip_bytes']}, time {out['time_s'] * 1e6:.1f} us")
    print("energy pJ: " + ", ".join(f"{k} {v:.4g}" for k, v in e.items()))
    return 0
