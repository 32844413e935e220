"""ChipRNNT: the quantized RNN-T compiled to azsim graphs and run on simulated chip Sessions.

Three programs share one chip (one clock, one weight SRAM):

* encoder   one call per 30 ms frame: LSTM layers + enc_proj (int8 enc out)
* predictor one call per token a hypothesis extends by: embedding + LSTM layers + pred_proj
* joint     one call per search step, M rows = the hypotheses scored at that step:
            add (Q3.12) -> tanh LUT (Q0.15) -> requant (int8) -> joint_out (int32 accumulators)

Beam search runs on the host (asr.decode, unchanged); every encode/predict/joint it asks for
is a chip call. Integer outputs equal asr.quant.int_rnnt.IntRNNT exactly (same reference
semantics; tests/test_chip_rnnt.py).

Weight SRAM is split between the programs in the order joint, predictor, encoder (the most
often used bytes first): each gets its double buffer, then its weights become resident while
room is left; the rest stream from off-chip memory on every use.

Timeline (per utterance, `start_utterance` .. `finish_utterance`): stacked frame t needs the
samples up to 30 t + 45 ms (3 hops of 10 ms, 25 ms window), so it arrives then; its chip work
(encoder call, then the joint/predictor calls of the search on that frame) starts at
max(arrival, chip free). Latency = end of the last frame's work - arrival of the last frame
(end of speech as far as the recognizer hears it). Host time of the beam search itself is not
modelled (the host runs beside the chip); the chip's queueing is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asr.quant.int_rnnt import QuantRNNTBase
from asr.quant.qmodel import QuantModel, layer_kind
from azsim import compile as azc
from azsim import compress
from azsim.engine import ENERGY_COMPONENTS, Session, counter_names
from azsim.errors import ConfigError
from azsim.graph import Graph

FRAME_MS = 30.0
FIRST_FRAME_MS = 45.0     # stacked frame 0 = log-mel frames 0..2: samples [0, 720) at 16 kHz
PROGRAMS = ("joint", "predictor", "encoder")   # SRAM priority order


def resolve_format(arrays, bits: int, fmt: str, levels: int, allowed) -> tuple[str, int]:
    """The format for a layer's weight matrices: `fmt`, or for "auto" the smallest lossless
    one the chip's decoder reads (sizes summed over the layer's matrices)."""
    k = levels or 16
    if fmt != "auto":
        return fmt, k
    best = None
    for f in allowed:
        try:
            size = sum(compress.size_bytes(a, f, bits, k) for a in arrays)
        except ConfigError:
            continue   # the format cannot hold these weights
        if best is None or size < best[1]:
            best = (f, size)
    if best is None:
        raise ConfigError(f"format auto: none of the decoder formats {list(allowed)} can hold "
                          f"these {bits}-bit weights")
    return best[0], k


@dataclass
class FrameRecord:
    frame: int
    arrival_cycle: int
    start_cycle: int
    end_cycle: int


@dataclass
class UtteranceRecord:
    base_cycle: int
    frames: list = field(default_factory=list)
    snap: dict = field(default_factory=dict)   # program -> counters at start
    calls: dict = field(default_factory=lambda: {p: 0 for p in PROGRAMS})


class ChipRNNT(QuantRNNTBase):
    """The quantized model on a simulated chip (`hw`: an azsim.hw.HwConfig or native dict)."""

    def __init__(self, qm: QuantModel, hw, *, placement: str = "greedy"):
        super().__init__(qm)
        self.hw = hw
        cfg = azc.native_config(hw)
        self.clock_hz = float(cfg["clock_hz"])
        self.frame_cycles = FRAME_MS * 1e-3 * self.clock_hz
        self.first_frame_cycles = FIRST_FRAME_MS * 1e-3 * self.clock_hz
        allowed = list(cfg["decoder_formats"])
        self.formats = {}
        for name, arrs in qm.weight_arrays().items():
            if name == "embed":
                continue
            m = qm.layer_meta[name]
            self.formats[name] = resolve_format(arrs, int(m["bits"]), m["format"], int(m["levels"]), allowed)
        graphs = {"encoder": self._encoder_graph(), "predictor": self._predictor_graph(),
                  "joint": self._joint_graph()}
        self.programs = self._place(graphs, cfg, placement)
        self.sessions = {p: Session(self.programs[p], keep_timeline=False) for p in PROGRAMS}
        self.free_cycle = 0
        self.utt: UtteranceRecord | None = None

    # --- graphs ------------------------------------------------------------------------------
    def _lstm(self, g, name, x, h, c):
        L, (fmt, k) = self.qm.layers[name], self.formats[name]
        return g.lstm_cell(x, h, c, wx=L["wx"], wh=L["wh"], bias=L["bias"], mult_x=L["mult_x"],
                           shift_x=L["shift_x"], mult_h=L["mult_h"], shift_h=L["shift_h"],
                           h_mult=int(L["h_mult"]), h_shift=int(L["h_shift"]),
                           bits=int(self.qm.layer_meta[name]["bits"]), format=fmt, codebook_k=k,
                           sig_table=self.qm.sig_table, tanh_table=self.qm.tanh_table, name=name)

    def _linear(self, g, name, x, raw: bool = False):
        L, (fmt, k) = self.qm.layers[name], self.formats[name]
        bits = int(self.qm.layer_meta[name]["bits"])
        if raw:
            return g.matmul(x, L["w"], bias=L["bias"], out_dtype="int32", bits=bits, format=fmt,
                            codebook_k=k, name=name)
        return g.matmul(x, L["w"], bias=L["bias"], mult=L["mult"], shift=L["shift"], bits=bits,
                        format=fmt, codebook_k=k, name=name)

    def _encoder_graph(self) -> Graph:
        g = Graph("encoder")
        x = g.input("x", self.input_dim)
        outs = []
        for k, H in enumerate(self.enc_hidden):
            h, c = g.input(f"h{k}", H), g.input(f"c{k}", H, "int16")
            h2, c2 = self._lstm(g, f"encoder.l{k}", x, h, c)
            outs += [h2, c2]
            x = h2
        enc = self._linear(g, "enc_proj", x)
        g.output(*outs, enc)
        return g

    def _predictor_graph(self) -> Graph:
        g = Graph("predictor")
        tok = g.index_input("token")
        x = g.embedding(tok, self.qm.layers["embed"]["table"], name="embed")
        outs = []
        for k, H in enumerate(self.pred_hidden):
            h, c = g.input(f"h{k}", H), g.input(f"c{k}", H, "int16")
            h2, c2 = self._lstm(g, f"pred.l{k}", x, h, c)
            outs += [h2, c2]
            x = h2
        g.output(*outs, self._linear(g, "pred_proj", x))
        return g

    def _joint_graph(self) -> Graph:
        J = self.qm.layers["joint"]
        g = Graph("joint")
        e, p = g.input("enc", self.joint_dim), g.input("pred", self.joint_dim)
        s = g.add(e, p, a_mult=int(J["a_mult"]), b_mult=int(J["b_mult"]), shift=int(J["add_shift"]),
                  out_dtype="int16", name="joint_add")
        t = g.lut(s, self.qm.tanh_table, name="joint_tanh")
        t8 = g.requant(t, mult=int(J["tanh_mult"]), shift=int(J["tanh_shift"]), name="joint_requant")
        g.output(self._linear(g, "joint_out", t8, raw=True))
        return g

    @staticmethod
    def _place(graphs: dict, cfg: dict, placement: str) -> dict:
        """Compile the programs with a share of the one weight SRAM each (module doc)."""
        total = int(cfg["weight_sram_bytes"])
        rows, cols = int(cfg["rows"]), int(cfg["cols"])
        stream = {p: azc.compile(graphs[p], cfg, placement="stream") for p in PROGRAMS}
        # Each program's double buffer: two of its largest compressed tiles, and at least two
        # dense array folds (what compile() insists on for the smallest share).
        base = {}
        for p in PROGRAMS:
            ws = stream[p].weights
            tiles = max((w.max_tile_bytes for w in ws), default=0)
            fold = max((-(-min(w.shape[0], cols) * min(w.shape[1], rows) * w.bits // 8) for w in ws),
                       default=0)
            base[p] = 2 * max(tiles, fold)
        if sum(base.values()) > total:
            raise ConfigError(f"weight_sram_bytes: {total} cannot hold the double buffers of the "
                              f"encoder, predictor and joint programs ({sum(base.values())} "
                              f"bytes); allowed: >= {sum(base.values())}")
        if placement == "stream":
            return stream
        free = total - sum(base.values())
        progs = {}
        for p in PROGRAMS:
            need = sum(w.bytes for w in stream[p].weights)
            sub = dict(cfg, weight_sram_bytes=base[p] + min(need, free))
            progs[p] = azc.compile(graphs[p], sub, placement="greedy")
            reserve = 2 * max((w.max_tile_bytes for w in progs[p].weights), default=0)
            free -= progs[p].resident_bytes + max(0, reserve - base[p])
        return progs

    # --- footprint ---------------------------------------------------------------------------
    def weight_bytes(self) -> int:
        """Compressed weight bytes of all programs (what the chip's flash/DRAM holds)."""
        return int(sum(self.programs[p].weight_bytes for p in PROGRAMS))

    def param_bytes(self) -> int:
        """Weights plus biases, requantization constants (int32 each) and LUT tables."""
        n = self.weight_bytes()
        for L in self.qm.layers.values():
            for f, a in L.items():
                a = np.asarray(a)
                if f in ("wx", "wh", "w", "table") or a.dtype.kind == "f":
                    continue
                n += 4 * a.size
        n += 4 * self.vocab_size          # joint_out dequantization scales (host side)
        n += 2 * (self.qm.sig_table.size + self.qm.tanh_table.size)
        return int(n)

    def sram_bytes(self, beam: int = 4) -> dict:
        """Weight SRAM in use (resident + double buffers) and an activation estimate:
        recurrent states (encoder once, predictor per hypothesis, x2 for the branches a step
        creates) plus the largest working set of one op at `beam` rows."""
        weight = 0
        for p in PROGRAMS:
            pr = self.programs[p]
            weight += pr.resident_bytes + 2 * max((w.max_tile_bytes for w in pr.weights), default=0)
        state = sum(3 * h for h in self.enc_hidden) + 2 * beam * sum(3 * h for h in self.pred_hidden)
        el = {"int8": 1, "int16": 2, "int32": 4}
        work = 0
        for p in PROGRAMS:
            g = self.programs[p].graph
            rows = beam if p == "joint" else 1
            for op in g.ops:
                work = max(work, rows * sum(g.tensors[n].cols * el[g.tensors[n].dtype]
                                            for n in op.inputs + op.outputs))
        return {"weight_sram_bytes": int(weight), "act_sram_bytes": int(state + work),
                "peak_sram_bytes": int(weight + state + work)}

    def placement(self) -> list[dict]:
        rows = []
        for p in PROGRAMS:
            for w in self.programs[p].weights:
                rows.append({"program": p, "weight": w.name, "shape": list(w.shape), "bits": w.bits,
                             "format": w.format, "bytes": w.bytes, "resident": w.resident})
        return rows

    # --- timeline ----------------------------------------------------------------------------
    def start_utterance(self) -> UtteranceRecord:
        """Begin a new utterance: its audio starts now (the chip's free cycle)."""
        self.utt = UtteranceRecord(base_cycle=self.free_cycle)
        self.utt.snap = {p: self._totals(p) for p in PROGRAMS}
        return self.utt

    def _totals(self, p) -> np.ndarray:
        return self.sessions[p].totals().counters.sum(axis=0)

    def _run(self, prog: str, inputs: dict, arrival: int | None = None):
        start = self.free_cycle if arrival is None else max(self.free_cycle, int(arrival))
        res = self.sessions[prog].run(inputs, arrival_cycle=start)
        self.free_cycle = res.end_cycle
        if self.utt is not None:
            self.utt.calls[prog] += 1
            if self.utt.frames and arrival is None:
                self.utt.frames[-1].end_cycle = res.end_cycle
        return res

    def finish_utterance(self) -> dict:
        """Per-utterance chip figures since start_utterance (cycles, bytes, energy, latency)."""
        u = self.utt
        if u is None:
            raise RuntimeError("finish_utterance() without start_utterance()")
        names = counter_names()
        d = sum(self._totals(p) - u.snap[p] for p in PROGRAMS)
        c = dict(zip(names, (float(v) for v in d)))
        by_prog = {p: dict(zip(names, (float(v) for v in self._totals(p) - u.snap[p]))) for p in PROGRAMS}
        n = len(u.frames)
        last = u.frames[-1] if n else None
        latency_cycles = (self.free_cycle - last.arrival_cycle) if last else 0
        backlog = max((f.start_cycle - f.arrival_cycle for f in u.frames), default=0)
        energy = {k: c[f"energy_{k}_pj"] * 1e-9 for k in ENERGY_COMPONENTS}
        energy["total"] = c["energy_total_pj"] * 1e-9
        out = {
            "frames": n,
            "audio_s": (n * self.frame_cycles + (self.first_frame_cycles - self.frame_cycles)) / self.clock_hz
            if n else 0.0,
            "latency_ms": 1e3 * latency_cycles / self.clock_hz,
            "max_backlog_ms": 1e3 * backlog / self.clock_hz,
            "cycles": int(c["cycles"]),
            "compute_cycles": int(c["compute_cycles"]),
            "stall_memory_cycles": int(c["stall_memory_cycles"]),
            "stall_decoder_cycles": int(c["stall_decoder_cycles"]),
            "chip_busy_s": c["cycles"] / self.clock_hz,
            "offchip_bytes": int(c["offchip_read_bytes"] + c["offchip_write_bytes"]),
            "macs": int(c["macs"]), "macs_executed": int(c["macs_executed"]),
            "energy_mj": energy,
            "calls": dict(u.calls),
            "cycles_by_program": {p: int(by_prog[p]["cycles"]) for p in PROGRAMS},
            "energy_mj_by_program": {p: by_prog[p]["energy_total_pj"] * 1e-9 for p in PROGRAMS},
        }
        self.utt = None
        return out

    # --- integer steps on the chip -----------------------------------------------------------
    def encode_int(self, xq, state):
        t0, layer_states = state
        xq = np.asarray(xq, np.int8)
        out = np.empty((xq.shape[0], self.joint_dim), np.int8)
        states = list(layer_states)
        base = self.utt.base_cycle if self.utt is not None else 0
        for i in range(xq.shape[0]):
            t = t0 + i
            inputs = {"x": xq[i:i + 1]}
            for k, (h, c) in enumerate(states):
                inputs[f"h{k}"] = h.reshape(1, -1)
                inputs[f"c{k}"] = c.reshape(1, -1)
            arrival = int(base + self.first_frame_cycles + t * self.frame_cycles)
            res = self._run("encoder", inputs, arrival)
            if self.utt is not None:
                self.utt.frames.append(FrameRecord(t, arrival, res.start_cycle, res.end_cycle))
            o = res.outputs
            states = [(o[f"encoder.l{k}:h"][0], o[f"encoder.l{k}:c"][0]) for k in range(len(states))]
            out[i] = o["enc_proj:out"][0]
        return out, (t0 + xq.shape[0], tuple(states))

    def predict_int(self, token, state):
        inputs = {"token": np.array([token], np.int32)}
        for k, (h, c) in enumerate(state):
            inputs[f"h{k}"] = h.reshape(1, -1)
            inputs[f"c{k}"] = c.reshape(1, -1)
        o = self._run("predictor", inputs).outputs
        new = tuple((o[f"pred.l{k}:h"][0], o[f"pred.l{k}:c"][0]) for k in range(len(state)))
        return o["pred_proj:out"][0], new

    def joint_int(self, enc_q, pred_q):
        o = self._run("joint", {"enc": np.ascontiguousarray(enc_q, np.int8),
                                "pred": np.ascontiguousarray(pred_q, np.int8)}).outputs
        return o["joint_out:out"]


__all__ = ["ChipRNNT", "resolve_format", "layer_kind"]
