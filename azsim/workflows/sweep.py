"""Run a sweep spec: points in parallel (process pool or Dask), results row by row to SQLite.

    summary = run(spec, "results.db", jobs=2)                     # local processes
    summary = run(spec, "results.db", scheduler="tcp://host:8786") # a dask.distributed cluster

Work per recipe is done once: `prepare` (quantize/compress; hardware-independent) runs as its
own task, then every hardware point of that recipe evaluates against its result. Locally the
prepared artifact is pickled once into `<results>.cache/` and each worker process loads it at
most once (kept in memory), so reruns after a kill do not redo it either; on Dask the artifact
is a future that the cluster hands to the point tasks.

Finished points are skipped by key (a stable hash of evaluator, options, recipe content and the
resolved chip config), so rerunning a spec after a kill does only what is missing.
"""
from __future__ import annotations

import hashlib
import os
import signal
import pickle
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from azsim.errors import ConfigError
from azsim.workflows.spec import Point, Spec, recipe_digest
from azsim.workflows.store import ResultStore


@dataclass
class Summary:
    total: int = 0
    skipped: int = 0          # finished in an earlier run
    done: int = 0             # evaluated in this run
    prepared: int = 0         # recipes prepared in this run (not found in the cache)
    failed: int = 0           # points whose evaluator raised a user-facing error (row has "error")
    wall_s: float = 0.0
    prepare_s: dict = field(default_factory=dict)
    eval_s: list = field(default_factory=list)

    def text(self) -> str:
        per = sum(self.eval_s) / len(self.eval_s) if self.eval_s else 0.0
        thr = self.wall_s / self.done if self.done else 0.0
        prep = ", ".join(f"{k} {v:.1f} s" for k, v in self.prepare_s.items()) or "none"
        bad = f" ({self.failed} infeasible, see their error)" if self.failed else ""
        return (f"{self.done} point(s) evaluated{bad}, {self.skipped} already done, {self.total} in the spec; "
                f"wall {self.wall_s:.1f} s; {per:.2f} s per point (evaluation), "
                f"{thr:.2f} s per point (wall / points); recipes prepared: {prep}")


# --- worker side -------------------------------------------------------------------------------
_EVALUATORS: dict = {}
_ARTIFACTS: dict = {}


def _evaluator(name: str, options: dict):
    from azsim.workflows.evaluators import make_evaluator

    k = (name, repr(sorted(options.items())))
    ev = _EVALUATORS.get(k)
    if ev is None:
        ev = _EVALUATORS[k] = make_evaluator(name, options)
    return ev


def _prepare_to_file(name, options, recipe_name, recipe, path) -> float:
    t0 = time.perf_counter()
    art = _evaluator(name, options).prepare(recipe_name, recipe)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(art, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)   # atomic: a killed prepare leaves no half file behind
    return time.perf_counter() - t0


def _load_artifact(path):
    art = _ARTIFACTS.get(path)
    if art is None:
        with open(path, "rb") as f:
            art = pickle.load(f)
        if len(_ARTIFACTS) >= 4:      # a few recipes' artifacts per process; points come grouped
            _ARTIFACTS.pop(next(iter(_ARTIFACTS)))
        _ARTIFACTS[path] = art
    return art


def _eval_point(name, options, art, config) -> tuple[dict, float]:
    from azsim.errors import AzsimError

    t0 = time.perf_counter()
    try:
        metrics = _evaluator(name, options).evaluate(art, config)
    except AzsimError as err:
        # a chip this model cannot run on (e.g. too little SRAM for a tile) is a result, not a
        # crash: the row records why, Pareto fronts leave it out, reruns do not retry it
        metrics = {"error": f"{type(err).__name__}: {err}"}
    return metrics, time.perf_counter() - t0


def _eval_from_file(name, options, path, config):
    return _eval_point(name, options, _load_artifact(path), config)


# --- driver ------------------------------------------------------------------------------------
def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="pt", desc="sweep", file=sys.stderr,
                disable=not enabled, dynamic_ncols=True)


def _prep_key(spec: Spec, rname: str) -> str:
    blob = repr((spec.evaluator, sorted(spec.options.items()), recipe_digest(spec.recipes[rname])))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def check_scheduler(address: str, timeout_s: float = 10.0):
    """A connected dask Client, or ConfigError naming the address."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed (pip install 'dask[distributed]')") from None
    try:
        return Client(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as err:
        raise ConfigError(f"--scheduler {address}: cannot reach the Dask scheduler ({type(err).__name__}: "
                          f"{err})") from None


def run(spec: Spec, results: str | Path, *, jobs: int | None = None, scheduler=None,
        progress: bool = True, log=None, client=None) -> Summary:
    """Evaluate every point of `spec` not yet in `results`. `scheduler` is an address; `client` an
    existing dask Client (tests). Returns a Summary; rows are in the results file."""
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    store = ResultStore(results)
    s = Summary(total=len(spec.points))
    try:
        # what the report needs to re-create a point: the spec as read, and where it was
        store.set_meta(f"spec:{spec.name}", {"path": str(Path(spec.path).resolve()), "data": spec.raw})
        done = store.keys()
        todo = [p for p in spec.points if p.key not in done]
        s.skipped = s.total - len(todo)
        if not todo:
            return s
        by_recipe: dict[str, list[Point]] = {}
        for p in todo:
            by_recipe.setdefault(p.recipe, []).append(p)
        bar = _progress(s.total, s.skipped, progress)

        def finish(p: Point, metrics: dict, eval_s: float):
            store.add(p.key, spec.name, p.params(), metrics, eval_s)
            s.done += 1
            s.eval_s.append(eval_s)
            hw = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.hw.items())
            msg = f"[{s.skipped + s.done}/{s.total}] {p.recipe} {hw}: {eval_s:.2f} s"
            if "error" in metrics:
                s.failed += 1
                msg += f" (infeasible: {metrics['error']})"
            bar.write(msg, file=sys.stderr) if progress else log(msg)
            bar.update(1)

        try:
            if client is not None or scheduler is not None:
                _run_dask(spec, by_recipe, s, finish, client, scheduler, log)
            else:
                _run_local(spec, by_recipe, s, finish, Path(str(results) + ".cache"), jobs, log)
        finally:
            bar.close()
    finally:
        store.close()
        s.wall_s = time.perf_counter() - t_start
    return s


def _run_local(spec, by_recipe, s, finish, cache_dir: Path, jobs, log):
    cache_dir.mkdir(parents=True, exist_ok=True)
    jobs = jobs or min(os.cpu_count() or 1, 8)
    args = (spec.evaluator, spec.options)
    paths = {r: str(cache_dir / f"{_prep_key(spec, r)}.pkl") for r in by_recipe}
    if jobs == 1:   # in this process: simplest to debug, no pickling of configs
        for r, pts in by_recipe.items():
            if not os.path.exists(paths[r]):
                s.prepare_s[r] = _prepare_to_file(*args, r, spec.recipes[r], paths[r])
                s.prepared += 1
                log(f"prepared recipe {r} in {s.prepare_s[r]:.1f} s")
            for p in pts:
                finish(p, *_eval_from_file(*args, paths[r], p.config))
        return
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_ignore_sigint)
    try:
        _drain_local(pool, spec, by_recipe, s, finish, paths, args, log)
    except BaseException:
        # Ctrl-C or a failing evaluator: drop the queued points instead of finishing them, and
        # stop the points in flight (their rows were never written, so a rerun redoes them).
        workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            proc.terminate()
        raise
    pool.shutdown(wait=True)


def _ignore_sigint():
    # Ctrl-C reaches the whole process group: only the parent decides what stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _drain_local(pool, spec, by_recipe, s, finish, paths, args, log):
    pending = {}
    for r, pts in by_recipe.items():
        if os.path.exists(paths[r]):
            for p in pts:
                pending[pool.submit(_eval_from_file, *args, paths[r], p.config)] = ("pt", p)
        else:
            pending[pool.submit(_prepare_to_file, *args, r, spec.recipes[r], paths[r])] = ("prep", r)
    while pending:
        ready, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in ready:
            kind, what = pending.pop(fut)
            result = fut.result()   # an evaluator error stops the sweep: finished rows are kept
            if kind == "prep":
                s.prepare_s[what] = result
                s.prepared += 1
                log(f"prepared recipe {what} in {result:.1f} s")
                for p in by_recipe[what]:
                    pending[pool.submit(_eval_from_file, *args, paths[what], p.config)] = ("pt", p)
            else:
                finish(what, *result)


def _dask_prepare(name, options, recipe_name, recipe):
    t0 = time.perf_counter()
    art = _evaluator(name, options).prepare(recipe_name, recipe)
    return art, time.perf_counter() - t0


def _dask_eval(name, options, prepared, config):
    return _eval_point(name, options, prepared[0], config)


def _run_dask(spec, by_recipe, s, finish, client, scheduler, log):
    from distributed import as_completed

    own = client is None
    if own:
        client = check_scheduler(scheduler)
    try:
        args = (spec.evaluator, spec.options)
        futures = {}
        for r, pts in by_recipe.items():
            prep = client.submit(_dask_prepare, *args, r, spec.recipes[r], key=f"prepare-{_prep_key(spec, r)}")
            futures[prep] = ("prep", r)
            for p in pts:
                futures[client.submit(_dask_eval, *args, prep, p.config, key=f"point-{p.key}")] = ("pt", p)
        for fut in as_completed(list(futures)):
            kind, what = futures[fut]
            result = fut.result()
            if kind == "prep":
                s.prepare_s[what] = result[1]
                s.prepared += 1
                log(f"prepared recipe {what} in {result[1]:.1f} s")
            else:
                finish(what, *result)
            fut.release()
    finally:
        if own:
            client.close()
