"""Graph + hardware config -> program: tiles, compression per tile, placement.

* Tiles: each weight matrix (N, K) is cut into tiles of tile_n output
  channels x tile_k reduction rows, aligned to the array (tile_n a multiple
  of cols, tile_k a multiple of rows, unless the matrix is smaller), as large
  as fits the tile budget (default 16 KiB dense, at most half the weight
  SRAM). Big tiles amortize the DMA latency; the double buffer needs two.
* Compression: every tile is encoded independently with its op's format by
  the native codecs (the decoder must be able to start on any tile alone);
  the engine caches the decoded tiles and their decode cycles.
* Placement (greedy, in op order): the double buffer for streamed tiles is
  reserved first (2 x the largest compressed tile of the program); each
  weight whose compressed bytes fit in what is left becomes resident (loaded
  once per Session), the others stream on every use.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from azsim.errors import ConfigError, ModelError
from azsim.graph import Graph

DEFAULT_TILE_BYTES = 16 * 1024

NATIVE_KEYS = (
    "clock_hz", "rows", "cols", "bits", "dataflow", "zero", "weight_sram_bytes", "act_sram_bytes",
    "offchip_bytes_per_cycle", "offchip_latency_cycles", "offchip_burst_bytes",
    "offchip_pj_per_byte", "decoder_bytes_per_cycle", "decoder_weights_per_cycle",
    "decoder_formats", "vector_lanes", "mac_pj", "mac_gated_pj", "weight_sram_pj_per_byte",
    "act_sram_pj_per_byte", "decode_pj_per_byte", "vector_pj_per_op", "leakage_mw",
    "host_mflops",
)


@dataclass
class WeightInfo:
    """One compiled weight matrix."""
    name: str            # "<op>" or "<op>.wx" / "<op>.wh" for LSTM cells
    op: str
    shape: tuple          # (N, K)
    bits: int
    format: str
    bytes: int           # compressed bytes, all tiles, all metadata
    tile_n: int
    tile_k: int
    n_tiles: int
    max_tile_bytes: int
    decode_cycles: int   # all tiles, on this config's decoder
    resident: bool = False
    wid: int = -1


def native_config(hw) -> dict:
    """The engine's config dict from an HwConfig (to_native()) or a dict."""
    d = hw.to_native() if hasattr(hw, "to_native") else dict(hw)
    missing = [k for k in NATIVE_KEYS if k not in d]
    if missing:
        raise ConfigError(f"hardware config: missing fields {', '.join(missing)}")
    return d


def _codec_names() -> list[str]:
    from azsim import _native
    fm = getattr(_native, "formats", None)
    if fm is not None and hasattr(fm, "codec_names"):
        return list(fm.codec_names())
    return ["dense", "int4", "bitmask", "rle", "codebook", "codebook-bitmask"]


def choose_tile(N: int, K: int, bits: int, rows: int, cols: int, budget_bytes: int) -> tuple[int, int]:
    """(tile_n, tile_k): the largest array-aligned tile whose dense size fits the budget."""
    bpw = bits / 8.0
    tile_n = min(N, cols)
    if K * tile_n * bpw <= budget_bytes:
        tile_k = K
        groups = int(budget_bytes // (K * bpw * cols)) if K * bpw * cols > 0 else 1
        tile_n = min(N, max(cols, groups * cols)) if N > cols else N
    else:
        tile_k = max(rows, int(budget_bytes // (tile_n * bpw)) // rows * rows)
        tile_k = min(tile_k, K)
    return tile_n, tile_k


class Program:
    """A compiled graph: the native program plus what Sessions and reports need."""

    def __init__(self, graph: Graph, hw: dict, native, tensor_ids: dict, weights: list,
                 op_weights: dict, tile_budget_bytes: int, stream_buffer_bytes: int = 0):
        self.graph = graph
        self.stream_buffer_bytes = stream_buffer_bytes   # double buffer reserved in weight SRAM
        self.hw = hw
        self.native = native
        self.tensor_ids = tensor_ids
        self.weights = weights
        self.op_weights = op_weights   # op name -> list[WeightInfo]
        self.tile_budget_bytes = tile_budget_bytes
        self.op_names = [op.name for op in graph.ops]
        self.op_kinds = [op.kind for op in graph.ops]
        self.inputs = list(graph.inputs)
        self.outputs = list(graph.outputs)
        # group name -> (op indices, input tensors it reads, outputs it produces)
        self.groups: dict[str, tuple[list[int], list, list[str]]] = {}
        for name in graph.groups:
            ids = [i for i, op in enumerate(graph.ops) if op.group == name]
            self.groups[name] = self._group_io(ids)
        self.groups[None] = (list(range(len(graph.ops))), list(graph.inputs), list(graph.outputs))

    def _group_io(self, ids):
        ops = [self.graph.ops[i] for i in ids]
        read = {n for op in ops for n in op.inputs}
        made = {n for op in ops for n in op.outputs}
        ins = [t for t in self.graph.inputs if t.name in read]
        outs = [n for n in self.graph.outputs if n in made]
        return ids, ins, outs

    @property
    def weight_bytes(self) -> int:
        """Compressed weight footprint (off-chip storage), all weights."""
        return sum(w.bytes for w in self.weights)

    @property
    def resident_bytes(self) -> int:
        return sum(w.bytes for w in self.weights if w.resident)

    @property
    def streamed_bytes(self) -> int:
        return sum(w.bytes for w in self.weights if not w.resident)

    @property
    def weight_sram_used_bytes(self) -> int:
        """Resident weights plus the streaming double buffer."""
        return self.resident_bytes + self.stream_buffer_bytes

    def peak_act_bytes(self, rows: int = 1) -> int:
        """Largest inputs + outputs of one op for `rows` rows (activation SRAM high-water mark)."""
        size = {"int8": 1, "int16": 2, "int32": 4}
        t = self.graph.tensors
        return max((rows * sum(t[n].cols * size[t[n].dtype] for n in op.inputs + op.outputs)
                    for op in self.graph.ops), default=0)

    def decoded_weight(self, w: WeightInfo) -> np.ndarray:
        """What the array computes with (decoded from the compressed tiles)."""
        return self.native.decoded_weight(w.wid)


def compile(graph: Graph, hw, *, placement: str = "greedy",
            tile_bytes: int | None = None) -> Program:
    """Compile `graph` for `hw` (HwConfig or native dict).

    placement: "greedy" (resident when it fits), "stream" (nothing resident)
    tile_bytes: tile budget in dense bytes (default min(16 KiB, weight SRAM / 2)).
    Raises ConfigError for hardware the graph cannot run on (field + range).
    """
    from azsim import _native

    cfg = native_config(hw)
    if placement not in ("greedy", "stream"):
        raise ConfigError(f"placement: '{placement}' (allowed: greedy, stream)")
    rows, cols = int(cfg["rows"]), int(cfg["cols"])
    sram = int(cfg["weight_sram_bytes"])
    budget = DEFAULT_TILE_BYTES if tile_bytes is None else int(tile_bytes)
    if budget < 1:
        raise ConfigError(f"tile_bytes: {tile_bytes} (allowed: >= 1)")
    budget = min(budget, sram // 2)
    codecs = set(_codec_names())
    allowed_formats = list(cfg["decoder_formats"])

    weight_specs = []   # (op, name, array, bits, format, codebook_k)
    for op in graph.ops:
        p = op.params
        if op.kind not in ("matmul", "lstm", "embed"):
            continue
        bits, fmt = p["bits"], p["format"]
        if fmt not in codecs:
            raise ConfigError(f"op '{op.name}': format: '{fmt}' (allowed: {', '.join(sorted(codecs))})")
        if op.kind == "embed":
            # Table rows are copied, not multiplied or decoded: no array or
            # decoder constraint applies.
            weight_specs.append((op, op.name, p["table"], bits, fmt, p["codebook_k"]))
            continue
        if fmt not in allowed_formats:
            raise ConfigError(f"op '{op.name}': format '{fmt}' is not supported by this chip's "
                              f"decoder: decoder_formats = {allowed_formats}")
        if bits > int(cfg["bits"]):
            raise ConfigError(f"op '{op.name}': {bits}-bit weights need a MAC array with "
                              f"bits >= {bits}; the config has bits = {cfg['bits']} "
                              f"(allowed: 4 or 8)")
        if op.kind == "lstm":
            weight_specs.append((op, op.name + ".wx", p["wx"], bits, fmt, p["codebook_k"]))
            weight_specs.append((op, op.name + ".wh", p["wh"], bits, fmt, p["codebook_k"]))
        else:
            weight_specs.append((op, op.name, p["weight"], bits, fmt, p["codebook_k"]))

    # Minimum tile: one fold of the array. Two of them must fit (double buffer).
    for op, wname, arr, bits, fmt, _ in weight_specs:
        N, K = arr.shape
        min_tile = int(np.ceil(min(N, cols) * min(K, rows) * bits / 8))
        if sram < 2 * min_tile:
            raise ConfigError(
                f"weight_sram_bytes: {sram} is smaller than two weight tiles ({min_tile} bytes "
                f"each: one {min(K, rows)}x{min(N, cols)} fold of '{wname}' at {bits} bits); "
                f"allowed: >= {2 * min_tile}")

    while True:
        native = _native.EngineProgram(cfg)
        infos, op_weights = [], {}
        for op, wname, arr, bits, fmt, ck in weight_specs:
            N, K = arr.shape
            tn, tk = choose_tile(N, K, bits, rows, cols, budget)
            try:
                wid = native.add_weight(wname, arr, bits, fmt, tn, tk, ck)
            except ConfigError as e:
                raise ConfigError(f"op '{op.name}': {e}") from None
            except ValueError as e:
                raise ModelError(f"op '{op.name}': format '{fmt}': {e}") from None
            t = native.weight_tiles(wid)
            info = WeightInfo(wname, op.name, (N, K), bits, fmt, int(t["bytes"].sum()), tn, tk,
                              len(t["bytes"]), int(t["bytes"].max()),
                              int(t["decode_cycles"].sum()), False, wid)
            infos.append(info)
            op_weights.setdefault(op.name, []).append(info)
        reserve = 2 * max((w.max_tile_bytes for w in infos), default=0)
        if reserve <= sram:
            break
        # Compressed tiles can outgrow their dense size (metadata): shrink the
        # budget until the double buffer fits, down to one fold per tile.
        if budget <= 1:
            raise ConfigError(f"weight_sram_bytes: {sram} is smaller than two compressed weight "
                              f"tiles ({reserve // 2} bytes each); allowed: >= {reserve}")
        budget //= 2

    free = sram - reserve
    if placement == "greedy":
        for w in infos:
            if w.bytes <= free:
                w.resident = True
                free -= w.bytes
                native.set_resident(w.wid, True)

    tensor_ids = {}
    for name, t in graph.tensors.items():
        tensor_ids[name] = native.add_tensor(name, t.dtype, t.cols)

    act_sram = int(cfg["act_sram_bytes"])
    elsize = {"int8": 1, "int16": 2, "int32": 4}
    for op in graph.ops:
        live = sum(graph.tensors[n].cols * elsize[graph.tensors[n].dtype]
                   for n in op.inputs + op.outputs)
        if live > act_sram:
            raise ConfigError(f"act_sram_bytes: {act_sram} cannot hold the inputs and outputs of "
                              f"op '{op.name}' for one row ({live} bytes); allowed: >= {live}")

    for op in graph.ops:
        p = op.params
        ins = [tensor_ids[n] for n in op.inputs]
        outs = [tensor_ids[n] for n in op.outputs]
        ws = op_weights.get(op.name, [])
        if op.kind == "matmul":
            prm = {"weight": ws[0].wid, "bias": p["bias"], "out_dtype": p["out_dtype"],
                   "requant": p["mult"] is not None, "mult": p["mult"], "shift": p["shift"]}
        elif op.kind == "lstm":
            prm = {"weight": ws[0].wid, "weight2": ws[1].wid, "bias": p["bias"],
                   "mult": p["mult_x"], "shift": p["shift_x"], "mult2": p["mult_h"],
                   "shift2": p["shift_h"], "table": p["sig_table"], "table2": p["tanh_table"],
                   "h_mult": p["h_mult"], "h_shift": p["h_shift"], "hidden": p["hidden"],
                   "out_dtype": "int8"}
        elif op.kind == "embed":
            prm = {"weight": ws[0].wid, "out_dtype": "int8"}
        elif op.kind == "add":
            prm = {"ma": p["a_mult"], "mb": p["b_mult"], "sh": p["shift"],
                   "out_dtype": p["out_dtype"]}
        elif op.kind == "mul":
            prm = {"ma": p["mult"], "sh": p["shift"], "out_dtype": p["out_dtype"]}
        elif op.kind == "lut":
            prm = {"table": p["table"].astype(np.int16), "out_dtype": str(p["table"].dtype)}
        elif op.kind == "requant":
            prm = {"mult": p["mult"], "shift": p["shift"], "out_dtype": p["out_dtype"]}
        else:  # pragma: no cover
            raise ModelError(f"op '{op.name}': unknown kind {op.kind}")
        native.add_op(op.kind, op.name, ins, outs, prm)

    return Program(graph, cfg, native, tensor_ids, infos, op_weights, budget, reserve)
