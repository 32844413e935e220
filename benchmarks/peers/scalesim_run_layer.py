"""Run SCALE-Sim v3 (PyPI ``scalesim==3.0.0``) on GEMM layers; print one JSON line per layer.

This script runs INSIDE SCALE-Sim's own throwaway venv (it needs ``scalesim`` and
``numpy<2.4``), never inside azsim's venv; ``scalesim_compare.py`` drives it.

Usage:
    python scalesim_run_layer.py M,K,N,R,C,DF[,SRAM_KB] [...]

M,K,N is the GEMM (A: MxK activations, B: KxN weights, output MxN), R x C the
array (ArrayHeight x ArrayWidth), DF one of ws/os/is.  Output per layer:
    {"M":..,"K":..,"N":..,"rows":..,"cols":..,"dataflow":..,
     "compute_cycles":..,"stall_cycles":..,"total_cycles_incl_prefetch":..,"wall_s":..}

Settings that make "compute_cycles" mean what azsim compares against:
- InterfaceBandwidth = CALC: reads never stall (read_buffer_estimate_bw.service_reads);
  USER mode's stall numbers are unreliable in 3.0.0 (prefetch-index bug).
- SRAMs large enough (DEFAULT_SRAM_KB) that the ofmap write buffer does not fill
  (write_buffer.service_writes can otherwise add stall cycles).  stall_cycles is
  reported so callers can assert it is 0.
- save_disk_space=True turns trace writing off.
"Compute cycles" is the second column of COMPUTE_REPORT.csv ("Total Cycles"), which
single_layer_sim.calc_report_data takes from memory_system.get_total_compute_cycles();
it is the figure SCALE-Sim prints as "Compute cycles:".
"""
import contextlib
import io
import json
import os
import sys
import tempfile
import time

# SRAM size per buffer.  Large enough that the ofmap write buffer does not stall on the
# layers we run (stall_cycles is reported and checked by the caller), small enough that
# read_buffer_estimate_bw.complete_all_prefetches (whose run time grows with the SRAM
# size: 1 GiB buffers cost ~4 s per layer) stays cheap.
DEFAULT_SRAM_KB = 1024

CONFIG_TEMPLATE = """[general]
run_name = azsim_cmp

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:    {sram_kb}
FilterSramSzkB:   {sram_kb}
OfmapSramSzkB:    {sram_kb}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Dataflow : {df}
Bandwidth : 10
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

# One layer row per conv-style layout file; unused because custom layouts are off,
# but scalesim.layout_utils.load_layout_conv opens the file unconditionally.
LAYOUT_TEXT = (
    "Layer name, IFMAP Height Intraline Factor, IFMAP Width Intraline Factor, "
    "Filter Height Intraline Factor, Filter Width Intraline Factor, "
    "Channel Intraline Factor, Num Filter Intraline Factor,\n"
)


def run_one(m, k, n, rows, cols, df, sram_kb=DEFAULT_SRAM_KB):
    from scalesim.scale_sim import scalesim

    with tempfile.TemporaryDirectory(prefix="scalesim_") as tmp:
        cfg = os.path.join(tmp, "azsim.cfg")
        topo = os.path.join(tmp, "layer.csv")
        layout = os.path.join(tmp, "layout.csv")
        with open(cfg, "w") as f:
            f.write(CONFIG_TEMPLATE.format(rows=rows, cols=cols, df=df, sram_kb=sram_kb))
        # GEMM topology convention (topology_utils.load_arrays_gemm): header line skipped,
        # rows are "name, M, N, K," with N = output columns and a mandatory trailing comma.
        with open(topo, "w") as f:
            f.write("Layer, M, N, K,\n")
            f.write(f"gemm, {m}, {n}, {k},\n")
        with open(layout, "w") as f:
            f.write(LAYOUT_TEXT)
        out_dir = os.path.join(tmp, "out")
        t0 = time.perf_counter()
        # SCALE-Sim prints banners even with verbose=False; keep our stdout pure JSON.
        with contextlib.redirect_stdout(io.StringIO()):
            sim = scalesim(save_disk_space=True, verbose=False, config=cfg,
                           topology=topo, layout=layout, input_type_gemm=True)
            sim.run_scale(top_path=out_dir)
        wall_s = time.perf_counter() - t0
        report = os.path.join(out_dir, "azsim_cmp", "COMPUTE_REPORT.csv")
        with open(report) as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
        fields = [x.strip() for x in lines[1].split(",")]
        # LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, ...
        return {
            "M": m, "K": k, "N": n, "rows": rows, "cols": cols, "dataflow": df,
            "compute_cycles": int(fields[2]),
            "stall_cycles": int(fields[3]),
            "total_cycles_incl_prefetch": int(float(fields[1])),
            "wall_s": wall_s,
        }


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    status = 0
    for spec in argv:
        parts = spec.split(",")
        m, k, n, rows, cols = (int(x) for x in parts[:5])
        df = parts[5].strip().lower()
        sram_kb = int(parts[6]) if len(parts) > 6 else DEFAULT_SRAM_KB
        try:
            rec = run_one(m, k, n, rows, cols, df, sram_kb)
        except Exception as exc:  # SCALE-Sim itself failed on this layer: report, go on
            rec = {"M": m, "K": k, "N": n, "rows": rows, "cols": cols, "dataflow": df,
                   "error": f"{type(exc).__name__}: {exc}"}
            status = 1
        print(json.dumps(rec), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
