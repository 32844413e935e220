"""Compare azsim's dense compute cycles with SCALE-Sim v3 (PyPI scalesim==3.0.0).

For each RNN-T-sized GEMM layer and each dataflow (ws, os, is) this runs
  - SCALE-Sim in its own throwaway venv (CALC bandwidth, traces off; see
    scalesim_run_layer.py for the exact configuration), and
  - `python -m azsim.cli layer --preset default --gemm M,K,N --rows R --cols C
     --dataflow D --zero none --json` and reads its `compute_cycles`,
then prints M,K,N, the array, the dataflow, both cycle counts, the relative error
and both wall times.  Exit status 1 if any error exceeds --tolerance (default 1%),
if SCALE-Sim reported stall cycles (then its figure is not a pure compute count),
or if either side failed on a layer.

Usage (from the repository root, any Python >= 3.9 with venv + pip):
    PYTHONPATH=$PWD .venv/bin/python benchmarks/peers/scalesim_compare.py
    ... --quick                # three small layers only (seconds)
    ... --backend header       # azsim side from csrc/azsim/systolic.hpp via a g++
                               # driver instead of the CLI (checks the script itself)
    ... --jobs 2               # run SCALE-Sim layers in 2 processes
    ... --json out.json        # also write the table as JSON

The venv is created once under $AZSIM_CACHE_DIR/scalesim-venv (default
~/.cache/azsim/scalesim-venv) with scalesim==3.0.0 and numpy<2.4 (scalesim 3.0.0
crashes with numpy>=2.4) and reused afterwards.

SCALE-Sim time: it steps one Python loop iteration per simulated cycle, about
2-7k simulated cycles/s on this 2-core machine depending on the array width.  The
default table below simulates 0.44 M cycles in total; measured with --jobs 1 on the
shared 2-core machine: 214 s wall (84 s CPU) for all 21 layer/dataflow runs.  Keep
SRAMs small in the runner: 1 GiB SRAMs alone cost ~4 s per layer.  Wall times: scalesim_s is measured inside the SCALE-Sim process
(interpreter start and imports excluded); azsim_s likewise times `azsim.cli.main`
for the same command inside one warm process (and its compute_cycles must equal
the subprocess's); azsim_proc_s is the whole `python -m azsim.cli layer`
subprocess, interpreter start and imports included.  With --backend header,
azsim_s is the C++ formula alone and azsim_proc_s is not measured.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RUNNER = HERE / "scalesim_run_layer.py"
SCALESIM_REQS = ["scalesim==3.0.0", "numpy<2.4"]
DATAFLOWS = ("ws", "os", "is")

# RNN-T-sized layers: (name, M, K, N, rows, cols).  M = frames (or batch) per call,
# K = reduction, N = output features.  LSTM gate matmuls have N = 4 * hidden.
LAYERS = [
    ("enc1 LSTM input proj, 4 frames, 240->4x256", 4, 240, 1024, 32, 32),
    ("enc LSTM recurrent+input, 1 frame, 512->4x256", 1, 512, 1024, 32, 32),
    ("pred-net LSTM, 1 token, 320->4x256 (16x16 MCU array)", 1, 320, 1024, 16, 16),
    ("big enc LSTM, 16 frames, 512->4x512", 16, 512, 2048, 64, 64),
    ("joint enc/pred proj, 16 frames, 256->320", 16, 256, 320, 32, 32),
    ("joint output, 16 frames, 320->32 vocab", 16, 320, 32, 32, 32),
    ("enc LSTM on non-square 16x64 array, 8 frames, 496->1024", 8, 496, 1024, 16, 64),
]
QUICK_LAYERS = [
    ("joint output, 16 frames, 320->32 vocab", 16, 320, 32, 32, 32),
    ("small LSTM step, 1 frame, 96->128 (partial folds)", 1, 96, 128, 32, 16),
    ("small proj, 5 frames, 40->24 (partial folds)", 5, 40, 24, 8, 16),
]


def cache_dir() -> Path:
    base = os.environ.get("AZSIM_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "azsim"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def scalesim_ready(py: Path) -> bool:
    if not py.exists():
        return False
    probe = ("import numpy, importlib.metadata as m, scalesim.scale_sim; "
             "v = tuple(int(x) for x in numpy.__version__.split('.')[:2]); "
             "assert m.version('scalesim') == '3.0.0' and v < (2, 4)")
    return subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0


def ensure_venv(venv: Path) -> Path:
    py = venv_python(venv)
    if scalesim_ready(py):
        return py
    print(f"[setup] creating SCALE-Sim venv at {venv} ({' '.join(SCALESIM_REQS)})", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *SCALESIM_REQS], check=True)
    if not scalesim_ready(py):
        raise SystemExit(f"error: {venv}: scalesim==3.0.0 with numpy<2.4 did not import after install")
    return py


def run_scalesim(py: Path, specs: list[tuple], jobs: int) -> dict:
    """specs: (M, K, N, R, C, df). Returns {spec: record} from scalesim_run_layer.py."""
    def one(spec):
        arg = ",".join(str(x) for x in spec)
        proc = subprocess.run([str(py), str(RUNNER), arg], capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            return spec, {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        return spec, json.loads(lines[-1])

    out = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for spec, rec in pool.map(one, specs):
            out[spec] = rec
            tag = rec.get("compute_cycles", rec.get("error"))
            print(f"[scalesim] {spec}: {tag} ({rec.get('wall_s', 0):.1f} s)", flush=True)
    return out


def run_azsim_cli(spec: tuple, repo: Path = REPO) -> dict:
    cmd = [sys.executable, "-m", "azsim.cli", *cli_argv(spec)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, env=env)
    wall_s = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": f"rc={proc.returncode}: " + (proc.stderr.strip().splitlines() or [""])[-1]}
    try:
        data = json.loads(proc.stdout)
        return {"compute_cycles": int(data["compute_cycles"]), "wall_s": wall_s}
    except (ValueError, KeyError, TypeError) as exc:
        return {"error": f"unreadable `azsim layer` output ({exc}): {proc.stdout[:200]!r}"}


# Times `azsim layer` in one warm process (interpreter start and imports excluded), the
# way scalesim_run_layer.py times SCALE-Sim, so the two wall-time columns are comparable.
INPROC_WORKER = r"""
import contextlib, io, json, sys, time
from azsim.cli import main
for line in sys.stdin:
    argv = json.loads(line)
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    dt = time.perf_counter() - t0
    try:
        cyc = int(json.loads(buf.getvalue())["compute_cycles"])
    except Exception:
        cyc = None
    print(json.dumps({"rc": rc, "compute_cycles": cyc, "wall_s": dt}), flush=True)
"""


def cli_argv(spec: tuple) -> list[str]:
    m, k, n, r, c, df = spec
    return ["layer", "--preset", "default", "--gemm", f"{m},{k},{n}", "--rows", str(r),
            "--cols", str(c), "--dataflow", df, "--zero", "none", "--json"]


def run_azsim_inproc(specs: list[tuple], repo: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # the first spec twice: its first run pays the lazy imports (native module, numpy) and
    # is dropped, so every timed call runs warm
    inp = "".join(json.dumps(cli_argv(s)) + "\n" for s in [specs[0], *specs])
    proc = subprocess.run([sys.executable, "-c", INPROC_WORKER], input=inp, capture_output=True,
                          text=True, cwd=repo, env=env)
    recs = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")][1:]
    return {s: r for s, r in zip(specs, recs)}


HEADER_DRIVER = r"""
#include "azsim/systolic.hpp"
#include <chrono>
#include <iostream>
int main() {
  unsigned long long m, k, n, r, c; std::string df;
  while (std::cin >> m >> k >> n >> r >> c >> df) {
    auto t0 = std::chrono::steady_clock::now();
    auto cyc = azsim::systolic::dense_compute_cycles(m, k, n, r, c,
                                                      azsim::systolic::parse_dataflow(df));
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << cyc << " " << s << "\n";
  }
}
"""


def run_azsim_header(specs: list[tuple], repo: Path = REPO) -> dict:
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if not cxx:
        raise SystemExit("error: --backend header needs a C++17 compiler (g++ or c++) on PATH")
    with tempfile.TemporaryDirectory(prefix="azsim_sys_") as tmp:
        src, exe = Path(tmp, "drv.cpp"), Path(tmp, "drv")
        src.write_text(HEADER_DRIVER)
        subprocess.run([cxx, "-std=c++17", "-O2", f"-I{repo / 'csrc'}", str(src), "-o", str(exe)],
                       check=True)
        inp = "".join(" ".join(str(x) for x in s) + "\n" for s in specs)
        out = subprocess.run([str(exe)], input=inp, capture_output=True, text=True, check=True)
    res = {}
    for spec, line in zip(specs, out.stdout.splitlines()):
        cyc, wall = line.split()
        res[spec] = {"compute_cycles": int(cyc), "wall_s": float(wall)}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=None,
                    help="SCALE-Sim venv (default: $AZSIM_CACHE_DIR or ~/.cache/azsim, /scalesim-venv)")
    ap.add_argument("--backend", choices=("cli", "header"), default="cli",
                    help="azsim side: the `azsim layer` CLI (default) or systolic.hpp via g++")
    ap.add_argument("--repo", type=Path, default=REPO,
                    help="azsim source tree to run (default: the one holding this script)")
    ap.add_argument("--quick", action="store_true", help="three small layers only")
    ap.add_argument("--jobs", type=int, default=1, help="SCALE-Sim processes in parallel")
    ap.add_argument("--tolerance", type=float, default=0.01, help="max relative error (0.01 = 1%%)")
    ap.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = ap.parse_args(argv)

    layers = QUICK_LAYERS if args.quick else LAYERS
    specs = [(m, k, n, r, c, df) for (_, m, k, n, r, c) in layers for df in DATAFLOWS]
    names = {(m, k, n, r, c, df): name for (name, m, k, n, r, c) in layers for df in DATAFLOWS}

    py = ensure_venv(args.venv or cache_dir() / "scalesim-venv")
    t0 = time.perf_counter()
    ss = run_scalesim(py, specs, args.jobs)
    ss_total_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    if args.backend == "cli":
        az = {s: run_azsim_cli(s, args.repo.resolve()) for s in specs}
        warm = run_azsim_inproc(specs, args.repo.resolve())
        for spec, rec in az.items():
            w = warm.get(spec)
            if "error" in rec:
                continue
            if w is None or w.get("rc") != 0 or w.get("compute_cycles") != rec["compute_cycles"]:
                rec["error"] = f"in-process `azsim layer` disagrees with the subprocess: {w}"
            else:
                rec["proc_wall_s"], rec["wall_s"] = rec["wall_s"], w["wall_s"]
    else:
        az = run_azsim_header(specs, args.repo.resolve())
    az_total_s = time.perf_counter() - t0

    rows, failures, failed_specs = [], [], set()
    hdr = (f"{'M':>4} {'K':>5} {'N':>5} {'RxC':>7} {'df':>3} {'scalesim_cyc':>12} "
           f"{'azsim_cyc':>10} {'rel_err':>9} {'scalesim_s':>10} {'azsim_s':>8} {'azsim_proc_s':>12}")
    print()
    print(f"azsim backend: {args.backend}   tolerance: {args.tolerance:.2%}")
    print(hdr)
    print("-" * len(hdr))
    for spec in specs:
        m, k, n, r, c, df = spec
        s, a = ss[spec], az[spec]
        row = {"layer": names[spec], "M": m, "K": k, "N": n, "rows": r, "cols": c, "dataflow": df,
               "scalesim_cycles": s.get("compute_cycles"), "scalesim_stall_cycles": s.get("stall_cycles"),
               "azsim_cycles": a.get("compute_cycles"), "scalesim_wall_s": s.get("wall_s"),
               "azsim_wall_s": a.get("wall_s"), "azsim_proc_wall_s": a.get("proc_wall_s"),
               "rel_err": None}
        if "error" in s or "error" in a:
            failures.append(f"{spec}: scalesim={s.get('error', 'ok')} azsim={a.get('error', 'ok')}")
            failed_specs.add(spec)
            print(f"{m:>4} {k:>5} {n:>5} {f'{r}x{c}':>7} {df:>3}  FAILED: "
                  f"{s.get('error') or a.get('error')}")
        else:
            err = abs(a["compute_cycles"] - s["compute_cycles"]) / max(1, s["compute_cycles"])
            row["rel_err"] = err
            if err > args.tolerance:
                failures.append(f"{spec}: relative error {err:.3%} > {args.tolerance:.2%}")
                failed_specs.add(spec)
            if s.get("stall_cycles", 0) != 0:
                failures.append(f"{spec}: SCALE-Sim reported {s['stall_cycles']} stall cycles")
                failed_specs.add(spec)
            print(f"{m:>4} {k:>5} {n:>5} {f'{r}x{c}':>7} {df:>3} {s['compute_cycles']:>12} "
                  f"{a['compute_cycles']:>10} {err:>9.3%} {s['wall_s']:>10.2f} {a['wall_s']:>8.2g} "
                  f"{a.get('proc_wall_s', float('nan')):>12.2f}")
        rows.append(row)
    print("-" * len(hdr))
    print(f"total wall: SCALE-Sim {ss_total_s:.1f} s, azsim ({args.backend}) {az_total_s:.2f} s; "
          f"{len(specs) - len(failed_specs)}/{len(specs)} within tolerance")
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, "tolerance": args.tolerance,
                                         "rows": rows}, indent=1))
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
