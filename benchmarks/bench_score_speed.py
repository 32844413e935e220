"""Simulation speed of `azsim score` on one core: seconds of audio simulated per second of host time.

Plain script:  PYTHONPATH=. python benchmarks/bench_score_speed.py [--model M] [--recipe R] [--limit N]
Under pytest:  pytest benchmarks/bench_score_speed.py  (pytest-benchmark; the speed is in
               extra_info["sim_speed_x"]; the goal is >= 20x real time on one core)

One core: the measurement runs in a child process pinned to one CPU (sched_setaffinity) with
every thread pool (OpenMP, OpenBLAS, MKL, numba) at one thread, set before numpy loads. Both
wall-clock and CPU-time speeds are printed; on a machine busy with other work only the CPU-time
figure means anything.

What is timed: the per-utterance loop of azsim.workflows.score (frame-by-frame chip encoder,
host beam search (beam 4) with the chip's joint and predictor, per-utterance counters) on
the first N test_clean utterances of the built corpus. Model loading, PTQ calibration and
compilation are setup, not timed. Needs the shipped model and its corpus; skips without them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "shipped" / "model.npz"
RECIPE = REPO / "recipes" / "int8.toml"
GOAL_X = 20.0


def _corpus():
    for d in sorted((REPO / "cache").glob("corpus-*")):
        if (d / "complete.json").exists() and (d / "test_clean.jsonl").exists():
            return d
    return None


def run(model=MODEL, recipe=RECIPE, limit=40, beam=4) -> dict:
    from azsim.workflows.score import score
    return score(model=model, recipe=recipe, limit=limit, beam=beam, corpus=_corpus(), progress=False)


_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                  "NUMBA_NUM_THREADS")}


def run_one_core(model=MODEL, recipe=RECIPE, limit=40, beam=4) -> dict:
    """run() in a child process on one CPU with single-threaded libraries."""
    cmd = [sys.executable, __file__, "--child", "--model", str(model), "--recipe", str(recipe),
           "--limit", str(limit), "--beam", str(beam)]
    env = {**os.environ, **_ONE_THREAD, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not MODEL.exists() or _corpus() is None,
                    reason="needs models/shipped/model.npz and its built corpus in cache/")
def test_score_speed(benchmark):
    limit = int(os.environ.get("AZSIM_BENCH_UTTS", "40"))
    r = benchmark.pedantic(run_one_core, kwargs={"limit": limit}, rounds=1, iterations=1)
    benchmark.extra_info.update({"sim_speed_x": r["sim_speed_x"], "sim_speed_x_cpu": r["sim_speed_x_cpu"],
                                 "host_cpu_s": r["host_cpu_s"], "audio_s": r["audio_s"],
                                 "host_s": r["host_s"], "utterances": r["n"], "beam": r["beam"],
                                 "recipe": r["recipe"], "goal_x": GOAL_X})
    print(f"\nazsim score: {r['audio_s']:.1f} s of audio in {r['host_s']:.2f} s of host time = "
          f"{r['sim_speed_x']:.1f}x real time (CPU time {r['host_cpu_s']:.2f} s = "
          f"{r['sim_speed_x_cpu']:.1f}x; goal >= {GOAL_X:.0f}x)")
    assert r["sim_speed_x"] > 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--recipe", default=str(RECIPE))
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:  # pinned, single-threaded; one JSON line for run_one_core
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        r = run(a.model, a.recipe, a.limit, a.beam)
        keys = ("sim_speed_x", "sim_speed_x_cpu", "host_cpu_s", "audio_s", "host_s", "n", "beam",
                "recipe", "wer")
        print(json.dumps({k: r[k] for k in keys}, default=str))
        return 0
    r = run_one_core(a.model, a.recipe, a.limit, a.beam)
    print(f"{r['n']} utterances, {r['audio_s']:.1f} s of audio in {r['host_s']:.2f} s of host time: "
          f"{r['sim_speed_x']:.1f}x real time; CPU time {r['host_cpu_s']:.2f} s = {r['sim_speed_x_cpu']:.1f}x "
          f"(goal >= {GOAL_X:.0f}x); WER {100 * r['wer']:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
