"""Run a compiled program on the native engine: exact outputs plus counters.

    g = azsim.graph.Graph()
    with g.group("enc"):                       # optional: groups run separately
        x = g.input("x", 240)
        y = g.matmul(x, w, mult=m, shift=s, name="fc")   # output tensor "fc:out"
    g.output(y)
    prog = azsim.compile.compile(g, azsim.hw.load("default"))
    sess = Session(prog)
    res = sess.run({"x": x_int8}, arrival_cycle=None, group="enc")
    res.outputs["fc:out"], res.stats.to_dict(), res.start_cycle, res.end_cycle

The Session keeps the chip clock: a call starts at max(arrival_cycle, the
cycle the chip became free), so a caller feeding frames as they arrive gets
a per-frame timeline (queueing included) from start_cycle / end_cycle; all
groups of one program share that clock, the weight SRAM placement and the
loaded weights. Resident weights are fetched from off-chip memory on their
first use in a Session only. Energy counts busy cycles only (leakage while
idle between calls is the caller's to add: leakage_mw x idle time).
"""
from __future__ import annotations

import numpy as np

from azsim.errors import ModelError

_NATIVE_NAMES = None


def counter_names() -> list[str]:
    global _NATIVE_NAMES
    if _NATIVE_NAMES is None:
        from azsim import _native
        _NATIVE_NAMES = list(_native.engine_counter_names())
    return _NATIVE_NAMES


ENERGY_COMPONENTS = ("offchip", "sram", "mac", "decoder", "vector", "leakage")


class Stats:
    """Counters of one call (or a sum of calls), per op.

    stats["cycles"] -> total of a counter over ops; stats.op("fc") -> one
    op's counters; to_dict() -> JSON-ready dict; table() -> per-op text table.
    Counter names (units in the names): cycles, compute_cycles,
    stall_memory_cycles, stall_decoder_cycles, stall_compute_cycles (DMA
    backpressure, not part of cycles), vector_cycles, offchip_read_bytes,
    offchip_write_bytes, weight_sram_read_bytes, weight_sram_write_bytes,
    act_sram_read_bytes, act_sram_write_bytes, weight_bytes (compressed bytes of
    the weights an op used, per call: a sum over calls counts them per call;
    the footprint is Program.weight_bytes), decoded_bytes,
    macs, macs_executed, macs_skipped, macs_gated, vector_ops,
    energy_<component>_pj for offchip, sram, mac, decoder, vector, leakage,
    and energy_total_pj.
    """

    def __init__(self, op_names, op_kinds, counters: np.ndarray, clock_hz: float, calls: int = 1):
        self.op_names = list(op_names)
        self.op_kinds = list(op_kinds)
        self.counters = counters          # (n_ops, n_counters) float64
        self.clock_hz = float(clock_hz)
        self.calls = calls
        self._idx = {n: i for i, n in enumerate(counter_names())}

    def __getitem__(self, name: str) -> float:
        return float(self.counters[:, self._idx[name]].sum())

    def totals(self) -> dict:
        return {n: float(v) for n, v in zip(counter_names(), self.counters.sum(axis=0))}

    def op(self, name: str) -> dict:
        i = self.op_names.index(name)
        return {n: float(v) for n, v in zip(counter_names(), self.counters[i])}

    def __add__(self, other: "Stats") -> "Stats":
        return Stats(self.op_names, self.op_kinds, self.counters + other.counters, self.clock_hz,
                     self.calls + other.calls)

    @property
    def time_s(self) -> float:
        return self["cycles"] / self.clock_hz

    def to_dict(self, per_op: bool = True) -> dict:
        t = self.totals()
        d = {k: (int(v) if not k.startswith("energy_") else v) for k, v in t.items()
             if not k.startswith("energy_")}
        d["calls"] = self.calls
        d["offchip_bytes"] = d["offchip_read_bytes"] + d["offchip_write_bytes"]
        d["time_s"] = self.time_s
        d["energy_pj"] = {c: t[f"energy_{c}_pj"] for c in ENERGY_COMPONENTS}
        d["energy_pj"]["total"] = t["energy_total_pj"]
        if per_op:
            d["ops"] = []
            for i, (name, kind) in enumerate(zip(self.op_names, self.op_kinds)):
                row = {"name": name, "kind": kind}
                row.update({n: float(v) for n, v in zip(counter_names(), self.counters[i])})
                d["ops"].append(row)
        return d

    def table(self) -> str:
        cols = ("cycles", "compute_cycles", "stall_memory_cycles", "stall_decoder_cycles",
                "offchip_read_bytes", "macs", "macs_skipped", "energy_total_pj")
        heads = ("op", "kind", "cycles", "compute", "stall_mem", "stall_dec", "offchip_B",
                 "macs", "skipped", "energy_pJ")
        rows = [heads]
        for i, (name, kind) in enumerate(zip(self.op_names, self.op_kinds)):
            rows.append((name, kind) + tuple(f"{self.counters[i, self._idx[c]]:.0f}" for c in cols))
        tot = self.counters.sum(axis=0)
        rows.append(("total", "") + tuple(f"{tot[self._idx[c]]:.0f}" for c in cols))
        widths = [max(len(r[j]) for r in rows) for j in range(len(heads))]
        return "\n".join("  ".join(s.rjust(w) if j > 1 else s.ljust(w)
                                   for j, (s, w) in enumerate(zip(r, widths))) for r in rows)


class RunResult:
    """outputs: {tensor name: array (rows, cols)}; stats: Stats of this call."""
    __slots__ = ("outputs", "_counters", "_prog", "start_cycle", "end_cycle", "_stats", "_names")

    def __init__(self, outputs, counters, prog, start_cycle, end_cycle):
        self.outputs = outputs
        self._counters = counters
        self._prog = prog
        self.start_cycle = start_cycle
        self.end_cycle = end_cycle
        self._stats = None
        self._names = (prog.op_names, prog.op_kinds)

    @property
    def cycles(self) -> int:
        return self.end_cycle - self.start_cycle

    @property
    def counters(self) -> np.ndarray:
        """Raw (n_ops, n_counters) array; column order = counter_names()."""
        return self._counters

    @property
    def stats(self) -> Stats:
        if self._stats is None:
            names, kinds = self._names
            self._stats = Stats(names, kinds, self._counters, self._prog.hw["clock_hz"])
        return self._stats


def _as_slice(ids):
    """A slice when the op ids are consecutive (cheap accumulation), else the list."""
    if ids and list(ids) == list(range(ids[0], ids[-1] + 1)):
        return slice(ids[0], ids[-1] + 1)
    return list(ids)


class Session:
    """One chip running one compiled program; keeps the clock and what is loaded."""

    def __init__(self, program, keep_timeline: bool = True):
        from azsim import _native

        self.program = program
        self._native = _native.EngineSession(program.native)
        self._plans = {}
        for group, (op_ids, ins, outs) in program.groups.items():
            specs = [(t.name, t.cols, t.dtype, np.dtype(t.dtype), t.kind == "index") for t in ins]
            self._plans[group] = (
                specs, [program.tensor_ids[t.name] for t in ins], [t.cols for t in ins],
                [t.dtype for t in ins], [program.tensor_ids[n] for n in outs], list(outs),
                list(op_ids), _as_slice(op_ids),
                ([program.op_names[i] for i in op_ids], [program.op_kinds[i] for i in op_ids]))
        self.keep_timeline = keep_timeline
        self.timeline: list[tuple[int, int]] = []
        self._total = None
        self.calls = 0

    @property
    def free_cycle(self) -> int:
        """The cycle at which the chip finishes its last call."""
        return int(self._native.free_cycle)

    def run(self, inputs: dict, arrival_cycle: int | None = None,
            group: str | None = None) -> RunResult:
        """Run the ops of `group` (default: every op of the graph) once.

        inputs: {input name: array} for the inputs those ops read; int8/int16
        arrays of shape (rows, cols) or (cols,) for one row; index inputs: 1-D
        integer indices. The call starts at max(arrival_cycle, free_cycle);
        arrival_cycle=None means "as soon as the chip is free".
        """
        try:
            specs, ids, cols, dts, out_ids, out_names, op_ids, op_slice, names = \
                self._plans[group]
        except KeyError:
            raise ModelError(f"run: unknown group {group!r} (groups: "
                             f"{', '.join(g for g in self._plans if g is not None)})") from None
        arrays = []
        for name, ncols, dtype, npdt, is_index in specs:
            try:
                a = inputs[name]
            except KeyError:
                raise ModelError(f"run: missing input '{name}'") from None
            if is_index:
                a = np.asarray(a)
                if a.ndim > 1 or not np.issubdtype(a.dtype, np.integer):
                    raise ModelError(f"run: input '{name}': expected 1-D integer indices")
                self._check_indices(name, a)
                a = np.ascontiguousarray(a.reshape(-1, 1), dtype=np.int32)
            else:
                if type(a) is not np.ndarray:
                    a = np.asarray(a)
                if a.dtype != npdt:
                    raise ModelError(f"run: input '{name}': dtype {a.dtype} (expected {dtype})")
                if a.ndim == 1:
                    a = a.reshape(1, -1)
                shape = a.shape
                if len(shape) != 2 or shape[1] != ncols or shape[0] < 1:
                    raise ModelError(f"run: input '{name}': shape {shape} "
                                     f"(expected (rows >= 1, {ncols}))")
                if not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a)
            arrays.append(a)
        # The native side starts at max(start, the cycle the chip is free).
        start = 0 if arrival_cycle is None else max(int(arrival_cycle), 0)
        try:
            outs, counters, s0, s1 = self._native.run(ids, arrays, cols, dts, out_ids, op_ids,
                                                      start)
        except (ValueError, IndexError) as err:
            raise ModelError(f"run: {err}") from None
        self.calls += 1
        if self._total is None:
            self._total = np.zeros((len(self.program.op_names), counters.shape[1]))
        self._total[op_slice] += counters
        if self.keep_timeline:
            self.timeline.append((s0, s1))
        res = RunResult(dict(zip(out_names, outs)), counters, self.program, s0, s1)
        res._names = names
        return res

    def _check_indices(self, name, a):
        for op in self.program.graph.ops:
            if op.kind == "embed" and op.inputs[0] == name:
                V = op.params["table"].shape[0]
                if a.size and (a.min() < 0 or a.max() >= V):
                    raise ModelError(f"run: input '{name}': indices must lie in [0, {V})")

    def totals(self) -> Stats:
        """Stats summed over every call since creation (or reset())."""
        p = self.program
        c = self._total if self._total is not None else np.zeros((len(p.op_names),
                                                                  len(counter_names())))
        return Stats(p.op_names, p.op_kinds, c, p.hw["clock_hz"], self.calls)

    def reset(self) -> None:
        """A fresh power-up: clock 0, nothing resident loaded, totals and timeline cleared."""
        self._native.reset()
        self._total = None
        self.calls = 0
        self.timeline = []
