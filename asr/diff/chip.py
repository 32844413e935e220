"""What applying an update costs the chip: off-chip write traffic and time.

Model of the device: the model's weights live in off-chip memory as int8, one byte per weight,
tensor after tensor in asr.model.export.weight_names order (a dense layout; every weight keeps
its per-channel scale, so a changed float weight is a changed byte). Applying an update:
  1. read the update payload (diff file or full model) from off-chip memory once;
  2. for every burst of the weight image holding at least one changed weight, read the burst
     and write it back (read-modify-write; the memory moves whole bursts).
A full model (full fine-tune, or a hash diff, which touches every weight) rewrites every burst.
Time = bytes moved / the preset's off-chip bytes_per_cycle / clock, plus one request latency
per burst run (contiguous touched bursts are one request).
"""
from __future__ import annotations

import numpy as np


def touched_bursts(changed_masks: list[np.ndarray], burst_bytes: int) -> tuple[int, int]:
    """(bursts touched, contiguous runs of them) in the dense int8 weight image."""
    offsets, off = [], 0
    for m in changed_masks:
        flat = np.flatnonzero(np.asarray(m).reshape(-1))
        offsets.append(flat + off)
        off += np.asarray(m).size
    if not offsets or off == 0:
        return 0, 0
    b = np.unique(np.concatenate(offsets) // burst_bytes)
    if b.size == 0:
        return 0, 0
    runs = 1 + int(np.count_nonzero(np.diff(b) > 1))
    return int(b.size), runs


def apply_cost(changed_masks: list[np.ndarray], payload_bytes: int, hw) -> dict:
    """Off-chip traffic (bytes) and time (ms) to apply an update whose changed weights are
    `changed_masks` (one bool array per weight tensor) and whose payload is `payload_bytes`."""
    o = hw.offchip
    burst = int(o.burst_bytes)
    n_bursts, runs = touched_bursts(changed_masks, burst)
    payload_read = int(np.ceil(payload_bytes / burst) * burst)
    rmw = n_bursts * burst
    read_bytes, write_bytes = payload_read + rmw, rmw
    cycles = (read_bytes + write_bytes) / float(o.bytes_per_cycle) + \
        (1 + 2 * runs) * int(o.latency_cycles)
    return {"offchip_read_bytes": read_bytes, "offchip_write_bytes": write_bytes,
            "bursts_rewritten": n_bursts, "apply_ms": 1e3 * cycles / float(hw.clock_hz),
            "energy_uj": (read_bytes + write_bytes) * float(o.pj_per_byte) * 1e-6}
