"""What a frame of a branching encoder costs: chip cycles (azsim engine) and host FLOPs.

One azsim program holds every matrix a frame may use, in groups:
  "arbitrator" (routed models only), "full", "lean", "shared" (enc_proj).
A frame on the chip = the arbitrator call (if any), then the chosen branch's group, then the
shared group, each starting when the chip is free; the first call waits for the frame's arrival.
The arbitrator's first matrix reads the input frame and the encoder's top-layer state of the frame
before, which the chip has by then (frames run in order), so its group is the same every frame.
So the chip runs only the chosen branch's weights, and the Session's clock gives the per-frame
timeline (queueing included). Weights are the model's own float weights quantized to int8 per
output row (zeros stay zeros, so a pruned branch's zero-skipping is real). Only the matrix
products are modelled (the LSTM gate nonlinearities are the same H-wide vector work in both
branches and are left out of both).

Host model: a single-threaded core at `mflops` MFLOP/s running the same matrices, 2 FLOPs per
nonzero weight (a sparse kernel that skips zeros; dense matrices count every weight).
"""
from __future__ import annotations

import numpy as np

FRAME_S = 0.030
FIRST_FRAME_S = 0.045   # stacked frame 0 needs 45 ms of audio (asr.chip)
GROUPS = ("arbitrator", "full", "lean", "shared")


def quantize_rows(w) -> np.ndarray:
    w = np.asarray(w, np.float32)
    amax = np.abs(w).max(axis=1, keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8)


def _lowrank_pairs(mats):
    """Group a lean low-rank list [(lk.b_ih, B), (lk.a_ih, A), ...] into chains B then A."""
    chains, pending = [], {}
    for name, w in mats:
        layer, _, kind = name.rpartition(".")
        if layer and kind.startswith("b_"):
            pending[(layer, kind[2:])] = (name, w)
        elif layer and kind.startswith("a_"):
            chains.append([pending.pop((layer, kind[2:])), (name, w)])
        else:
            chains.append([(name, w)])
    return chains


def build_program(branch_mats: dict, hw, placement: str = "greedy"):
    """An azsim Program with one group per part of a frame (see module doc). Each matrix is
    stored in the smallest lossless format the chip's decoder reads (so a pruned branch's
    zeros also shrink the bytes it streams)."""
    from azsim import compile as azc
    from azsim import compress
    from azsim.graph import Graph
    g = Graph("branching-encoder")
    for group in GROUPS:
        mats = branch_mats.get(group) or []
        if not mats:
            continue
        with g.group(group):
            for chain in _lowrank_pairs(mats):
                x = None
                for j, (name, w) in enumerate(chain):
                    q = quantize_rows(np.asarray(w))
                    fmt, _ = compress.best_lossless(q, 8, [f for f in hw.decoder.formats
                                                           if f in ("dense", "bitmask", "rle")])
                    if x is None:
                        x = g.input(f"{group}.{name}:in", q.shape[1])
                    last = j == len(chain) - 1
                    if last:
                        y = g.matmul(x, q, out_dtype="int32", format=fmt, name=f"{group}.{name}")
                    else:
                        y = g.matmul(x, q, mult=1 << 14, shift=24, format=fmt,
                                     name=f"{group}.{name}")
                    x = y
                g.output(x)
    return azc.compile(g, hw, placement=placement)


class ChipFrames:
    """Feeds frames to a Session: frame_costs(route) -> per-frame (start, end) cycles."""

    def __init__(self, branch_mats: dict, hw, seed: int = 0, clock_hz: float | None = None):
        """clock_hz: run the preset's chip at another clock. Every timing of the preset is in
        cycles (off-chip bandwidth in bytes/cycle, latencies in cycles), so a clock change only
        changes how many cycles one frame period holds; this also allows clocks below the
        preset validator's range."""
        from azsim.engine import Session
        self.prog = build_program(branch_mats, hw)
        self.hw = hw
        self.clock_hz = float(hw.clock_hz if clock_hz is None else clock_hz)
        self.session = Session(self.prog, keep_timeline=False)
        self.groups = [gname for gname in GROUPS if branch_mats.get(gname)]
        self._rng = np.random.default_rng(seed)
        self._inputs_cache: dict = {}

    def _inputs(self, group):
        """Random int8 inputs, fixed per group (timing depends on shapes and weight zeros)."""
        if group not in self._inputs_cache:
            ins = self.prog.groups[group][1]
            self._inputs_cache[group] = {t.name: self._rng.integers(-100, 100, (1, t.cols)).astype(np.int8)
                                         for t in ins}
        return self._inputs_cache[group]

    def run_utterance(self, full_route) -> dict:
        """full_route (T,) bool: frame t runs the full branch. Returns per-frame cycles and
        the end-of-speech latency (s) from the Session's clock."""
        base = self.session.free_cycle
        first = int(round(FIRST_FRAME_S * self.clock_hz))
        period = int(round(FRAME_S * self.clock_hz))
        n = len(full_route)
        start = np.empty(n, np.int64)
        end = np.empty(n, np.int64)
        for t, full in enumerate(full_route):
            arrival = base + first + t * period
            seq = (["arbitrator"] if "arbitrator" in self.groups else []) + \
                [("full" if full else "lean")] + (["shared"] if "shared" in self.groups else [])
            for j, gname in enumerate(seq):
                res = self.session.run(self._inputs(gname), arrival_cycle=arrival if j == 0 else None,
                                       group=gname)
                if j == 0:
                    start[t] = res.start_cycle
            end[t] = res.end_cycle
        arrival_last = base + first + (n - 1) * period
        return {"cycles": end - start, "latency_s": float(end[-1] - arrival_last) / self.clock_hz,
                "max_wait_s": float(np.max(start - (base + first + np.arange(n) * period))) / self.clock_hz}


def steady_cycles(chip: ChipFrames) -> dict:
    """Cycles of one frame through each path once weights are warm: {'full': c, 'lean': c}."""
    out = {}
    for _ in range(2):          # the first pass fetches resident weights
        for branch in ("full", "lean"):
            if branch not in chip.groups:
                continue
            r = chip.run_utterance([branch == "full"])
            out[branch] = int(r["cycles"][0])
    return out


def host_flops(branch_mats: dict) -> dict:
    """FLOPs per frame on the host model: 2 per nonzero weight, for each path."""
    def f(mats):
        return 2 * int(sum(int(np.count_nonzero(np.asarray(w))) for _, w in mats))
    extra = f(branch_mats.get("arbitrator") or []) + f(branch_mats.get("shared") or [])
    return {"full": f(branch_mats["full"]) + extra, "lean": f(branch_mats["lean"]) + extra,
            "arbitrator": f(branch_mats.get("arbitrator") or [])}
