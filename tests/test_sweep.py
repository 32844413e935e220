"""azsim sweep: spec validation, point keys, local/Dask runs, resume after a kill, prepare-once."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from azsim.errors import ConfigError, FormatError
from azsim.workflows import spec as spec_mod
from azsim.workflows import sweep
from azsim.workflows.evaluators import Evaluator
from azsim.workflows.store import ResultStore, load_rows

ROOT = Path(__file__).resolve().parents[1]
FAKE = "test_sweep:FakeEvaluator"


class FakeEvaluator(Evaluator):
    """Cheap, deterministic metrics from the chip config; counts prepare() calls in a directory."""
    OPTIONS = {"delay_s": 0.0, "count_dir": ""}

    @classmethod
    def check_recipe(cls, value, where):
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: a fake recipe is a number")
        return float(value)

    def prepare(self, recipe_name, recipe):
        if self.options["count_dir"]:
            d = Path(self.options["count_dir"])
            (d / f"prepare-{recipe_name}-{os.getpid()}-{time.monotonic_ns()}").touch()
        return {"factor": recipe}

    def evaluate(self, art, config):
        time.sleep(self.options["delay_s"])
        m = config.mac_array
        if m.rows == 13:
            raise ConfigError("mac_array.rows = 13: this fake model cannot tile onto 13 rows")
        return {"latency_ms": 1000.0 / (m.rows * m.cols) + 1.0 / config.offchip.bytes_per_cycle,
                "energy_mj": 0.01 * m.rows * m.cols * art["factor"],
                "weight_bytes": int(1000 * art["factor"])}


def write_spec(tmp_path, body: str, name="s.toml") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


def fake_spec(tmp_path, delay=0.0, rows=(8, 16, 32), bws=(2.0, 8.0), count_dir=None) -> Path:
    cd = count_dir or (tmp_path / "prep")
    cd.mkdir(exist_ok=True)
    return write_spec(tmp_path, f"""
[sweep]
evaluator = "{FAKE}"
preset = "default"
[options]
delay_s = {delay}
count_dir = "{cd}"
[recipes]
a = 1.0
b = 2.0
[hw]
"mac_array.rows" = {list(rows)}
"offchip.bytes_per_cycle" = {list(bws)}
""")


def table(path) -> dict:
    return {r["key"]: (r["params"], r["metrics"]) for r in load_rows(path)}


# --- spec --------------------------------------------------------------------------------------
def test_grid_points_and_stable_keys(tmp_path):
    s1 = spec_mod.load(fake_spec(tmp_path))
    s2 = spec_mod.load(fake_spec(tmp_path))
    assert len(s1.points) == 2 * 3 * 2
    assert [p.key for p in s1.points] == [p.key for p in s2.points]
    assert len({p.key for p in s1.points}) == 12
    assert {p.hw["mac_array.rows"] for p in s1.points} == {8, 16, 32}


def test_random_mode_is_seeded(tmp_path):
    body = f"""
[sweep]
evaluator = "{FAKE}"
mode = "random"
samples = 10
seed = SEED
[recipes]
a = 1.0
[hw]
"offchip.bytes_per_cycle" = {{ min = 1, max = 16, log = true }}
"mac_array.rows" = {{ min = 8, max = 64 }}
"sram.weight_bytes" = ["256KB", "1MB"]
"""
    a = spec_mod.load(write_spec(tmp_path, body.replace("SEED", "3"), "a.toml"))
    b = spec_mod.load(write_spec(tmp_path, body.replace("SEED", "3"), "b.toml"))
    c = spec_mod.load(write_spec(tmp_path, body.replace("SEED", "4"), "c.toml"))
    assert [p.hw for p in a.points] == [p.hw for p in b.points]
    assert [p.hw for p in a.points] != [p.hw for p in c.points]
    for p in a.points:
        assert 1 <= p.hw["offchip.bytes_per_cycle"] <= 16
        assert isinstance(p.hw["mac_array.rows"], int) and 8 <= p.hw["mac_array.rows"] <= 64
        assert p.hw["sram.weight_bytes"] in (256 * 1024, 1024 * 1024)


def test_grid_range_with_steps(tmp_path):
    s = spec_mod.load(write_spec(tmp_path, f"""
[sweep]
evaluator = "{FAKE}"
[recipes]
a = 1.0
[hw]
"offchip.bytes_per_cycle" = {{ min = 1, max = 16, steps = 5, log = true }}
"""))
    assert [p.hw["offchip.bytes_per_cycle"] for p in s.points] == pytest.approx([1, 2, 4, 8, 16])


BAD_SPECS = [
    ('[sweep]\nevaluator = "F"\n[recipes]\na = 1.0\n[hw]\n"mac_array.rows" = [8]\n[extra]\nx = 1\n',
     "unknown section(s) extra"),
    ('[sweep]\nevaluator = "F"\nspeed = 3\n[recipes]\na = 1.0\n', "[sweep] has unknown key(s) speed"),
    ('[sweep]\nevaluator = "F"\n[recipes]\na = 1.0\n[hw]\n"mac_array.rowz" = [8]\n',
     "'mac_array.rowz' is not a hardware field"),
    ('[sweep]\nevaluator = "F"\n[recipes]\na = 1.0\n[hw]\n"mac_array.rows" = []\n', "empty list"),
    ('[sweep]\nevaluator = "F"\nmode = "random"\nsamples = 3\n[recipes]\na = 1.0\n[hw]\n'
     '"mac_array.rows" = { min = 64, max = 8 }\n', "empty range"),
    ('[sweep]\nevaluator = "F"\n[recipes]\na = 1.0\n[hw]\n"mac_array.rows" = [8, 0]\n',
     "'mac_array.rows': value 0 rejected"),
    ('[sweep]\nevaluator = "F"\n[recipes]\na = 1.0\n[hw]\n"sram.weight_bytes" = ["2XB"]\n',
     "unknown unit 'XB'"),
    ('[sweep]\nevaluator = "F"\n[recipes]\na = 1.0\n[hw]\n"mac_array.zero" = ["sometimes"]\n',
     "allowed values are none, gate, skip"),
    ('[sweep]\nevaluator = "F"\n[recipes]\na = 1.0\n[hw]\n"mac_array.rows" = [512]\n'
     '"sram.weight_bytes" = [4096]\n', "combination"),
    ('[sweep]\nevaluator = "nosuch"\n[recipes]\na = 1.0\n', "unknown evaluator"),
    ('[sweep]\nevaluator = "F"\nmode = "random"\n[recipes]\na = 1.0\n', "samples"),
    ('[sweep]\nevaluator = "F"\n[recipes]\na = "text"\n', "[recipes] 'a'"),
    ('[sweep]\nevaluator = "F"\n[options]\nturbo = true\n[recipes]\na = 1.0\n', "unknown option(s) turbo"),
    ('[sweep]\nevaluator = "F"\n[recipes]\na = 1.0\n[hw]\n"offchip.bytes_per_cycle" = { min = 1, max = 2 }\n',
     "needs steps"),
    ('[sweep\n', "not valid TOML"),
]


@pytest.mark.parametrize("body,needle", BAD_SPECS)
def test_bad_specs_fail_before_work(tmp_path, body, needle):
    p = write_spec(tmp_path, body.replace('"F"', f'"{FAKE}"'), "bad.toml")
    with pytest.raises(ConfigError) as ei:
        spec_mod.load(p)
    assert needle in str(ei.value)
    assert str(p) in str(ei.value)


def test_layer_recipe_errors_name_field(tmp_path):
    p = write_spec(tmp_path, '[sweep]\nevaluator = "layer"\n[recipes]\nx = { bits = 5 }\n')
    with pytest.raises(ConfigError, match=r"\[recipes\] 'x': bits = 5 \(allowed: 4, 8\)"):
        spec_mod.load(p)
    p = write_spec(tmp_path, '[sweep]\nevaluator = "layer"\n[recipes]\nx = { format = "zip" }\n')
    with pytest.raises(ConfigError, match="zip"):
        spec_mod.load(p)


def test_cli_bad_spec_exit_2_and_no_results(tmp_path):
    p = write_spec(tmp_path, '[sweep]\nevaluator = "layer"\n[hw]\n"mac_array.rows" = []\n')
    r = subprocess.run([sys.executable, "-m", "azsim.cli", "sweep", str(p), "--results",
                        str(tmp_path / "r.db")], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2
    assert "empty list" in r.stderr and str(p) in r.stderr
    assert not (tmp_path / "r.db").exists()


def test_unreachable_scheduler_errors_before_work(tmp_path):
    with pytest.raises(ConfigError, match="tcp://127.0.0.1:9: cannot reach the Dask scheduler"):
        sweep.check_scheduler("tcp://127.0.0.1:9", timeout_s=2)
    spec = fake_spec(tmp_path)
    r = subprocess.run([sys.executable, "-m", "azsim.cli", "sweep", str(spec), "--results",
                        str(tmp_path / "r.db"), "--scheduler", "tcp://127.0.0.1:9",
                        "--connect-timeout", "1"],
                       capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"})
    assert r.returncode == 2, r.stderr
    assert "cannot reach the Dask scheduler" in r.stderr
    assert not (tmp_path / "r.db").exists()
    assert not list((tmp_path / "prep").iterdir())


def test_foreign_results_file_is_refused(tmp_path):
    bad = tmp_path / "x.db"
    bad.write_text("not sqlite at all " * 100)
    with pytest.raises(FormatError, match="not an azsim results file"):
        ResultStore(bad)


# --- running -----------------------------------------------------------------------------------
def test_local_run_prepares_each_recipe_once_and_resumes(tmp_path):
    spec = spec_mod.load(fake_spec(tmp_path))
    db = tmp_path / "r.db"
    s = sweep.run(spec, db, jobs=2, progress=False)
    assert (s.done, s.skipped, s.prepared) == (12, 0, 2)
    assert len(list((tmp_path / "prep").iterdir())) == 2      # not once per hardware point
    rows = table(db)
    assert len(rows) == 12
    for params, m in rows.values():
        assert m["energy_mj"] == pytest.approx(0.01 * params["mac_array.rows"] * 32 * {"a": 1, "b": 2}[params["recipe"]])
    s2 = sweep.run(spec, db, jobs=2, progress=False)
    assert (s2.done, s2.skipped, s2.prepared) == (0, 12, 0)
    assert len(list((tmp_path / "prep").iterdir())) == 2
    # flat columns for direct SQL
    con = sqlite3.connect(db)
    n = con.execute('SELECT count(*) FROM points WHERE "mac_array.rows" = 8 AND energy_mj > 0').fetchone()[0]
    assert n == 4


def test_infeasible_point_is_recorded_not_fatal(tmp_path):
    spec = spec_mod.load(fake_spec(tmp_path, rows=(8, 13), bws=(2.0,)))
    s = sweep.run(spec, tmp_path / "r.db", jobs=2, progress=False)
    assert (s.done, s.failed) == (4, 2)
    rows = load_rows(tmp_path / "r.db")
    bad = [r for r in rows if "error" in r["metrics"]]
    assert {r["params"]["mac_array.rows"] for r in bad} == {13}
    assert "cannot tile onto 13 rows" in bad[0]["metrics"]["error"]
    assert sweep.run(spec, tmp_path / "r.db", jobs=2, progress=False).done == 0   # not retried
    from azsim.workflows import pareto
    front, skipped = pareto.front(rows, [("latency_ms", 1.0)])
    assert len(skipped) == 2 and all(r["params"]["mac_array.rows"] == 8 for r in front)


def test_jobs_1_equals_jobs_2(tmp_path):
    spec = spec_mod.load(fake_spec(tmp_path))
    sweep.run(spec, tmp_path / "a.db", jobs=1, progress=False)
    sweep.run(spec, tmp_path / "b.db", jobs=2, progress=False)
    assert table(tmp_path / "a.db") == table(tmp_path / "b.db")     # same keys, same rows


def test_killed_sweep_resumes_to_the_same_results(tmp_path):
    work, ref = tmp_path / "work", tmp_path / "ref"
    work.mkdir(), ref.mkdir()
    rows8 = (8, 16, 32, 64)
    spec_path = fake_spec(work, delay=0.25, rows=rows8, bws=(2.0, 4.0, 8.0))     # 24 points
    db = work / "r.db"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    proc = subprocess.Popen([sys.executable, "-m", "azsim.cli", "sweep", str(spec_path), "--results",
                             str(db), "--jobs", "2", "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        n = 0
        while time.time() < deadline:
            time.sleep(0.1)
            if db.exists():
                try:
                    n = sqlite3.connect(db, timeout=1).execute("SELECT count(*) FROM points").fetchone()[0]
                except sqlite3.OperationalError:
                    n = 0
            if n >= 4:
                break
        assert n >= 4, "the sweep did not start writing rows"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)      # the driver and its workers, mid-run
        proc.wait()
    partial = table(db)
    assert 4 <= len(partial) < 24
    s = sweep.run(spec_mod.load(spec_path), db, jobs=2, progress=False)
    assert s.skipped == len(partial) and s.done == 24 - len(partial)
    sweep.run(spec_mod.load(fake_spec(ref, delay=0.0, rows=rows8, bws=(2.0, 4.0, 8.0))), ref / "r.db",
              jobs=1, progress=False)
    # same keys: the delay option differs, so compare by parameters instead of keys
    got = sorted((json.dumps(p, sort_keys=True), json.dumps(m, sort_keys=True)) for p, m in table(db).values())
    want = sorted((json.dumps(p, sort_keys=True), json.dumps(m, sort_keys=True)) for p, m in table(ref / "r.db").values())
    assert got == want
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*), count(DISTINCT key) FROM points").fetchone() == (24, 24)


def test_dask_local_cluster_equals_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = spec_mod.load(fake_spec(tmp_path))
    sweep.run(spec, tmp_path / "local.db", jobs=1, progress=False)
    for f in (tmp_path / "prep").iterdir():
        f.unlink()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        s = sweep.run(spec, tmp_path / "dask.db", client=client, progress=False)
    assert (s.done, s.prepared) == (12, 2)
    assert len(list((tmp_path / "prep").iterdir())) == 2      # once per recipe on the cluster too
    assert table(tmp_path / "local.db") == table(tmp_path / "dask.db")


def test_layer_evaluator_end_to_end(tmp_path):
    p = write_spec(tmp_path, """
[sweep]
evaluator = "layer"
[options]
layers = [[1, 64, 128], [1, 128, 64]]
frames = 3
[recipes]
dense = { bits = 8, format = "dense" }
sparse = { bits = 8, format = "bitmask", sparsity = 0.5 }
[hw]
"offchip.bytes_per_cycle" = [1.0, 8.0]
""")
    db = tmp_path / "r.db"
    s = sweep.run(spec_mod.load(p), db, jobs=1, progress=False)
    assert s.done == 4
    rows = load_rows(db)
    wb = {r["recipe"]: r["metrics"]["weight_bytes"] for r in rows}
    assert wb["sparse"] < wb["dense"]
    for r in rows:
        m = r["metrics"]
        assert m["latency_ms"] > 0 and m["energy_mj"] > 0 and m["cycles"] > 0
        assert m["macs"] == 3 * (64 * 128 + 128 * 64)


# --- the score evaluator on a tiny model -------------------------------------------------------
def _tiny_corpus(d: Path):
    import numpy as np

    texts = ["go back", "call anna", "stop", "turn on the light"]
    for subset, n, seed in (("dev", 3, 0), ("test_clean", 3, 1)):
        rng = np.random.default_rng(seed)
        feats, offsets, lines = [], [0], []
        for i in range(n):
            t = int(rng.integers(40, 70))
            feats.append(rng.normal(-5.0, 2.0, (t, 80)).astype(np.float16))
            offsets.append(offsets[-1] + t)
            lines.append(json.dumps({"path": f"{subset}/{i}.wav", "text": texts[i % 4], "voice": "v",
                                     "duration_s": (t * 160 + 240) / 16000}))
        np.save(d / f"{subset}.feats.npy", np.concatenate(feats))
        np.save(d / f"{subset}.offsets.npy", np.asarray(offsets, np.int64))
        (d / f"{subset}.jsonl").write_text("\n".join(lines) + "\n")


SCORE_KEYS = ("wer", "cer", "weight_bytes", "flash_bytes", "peak_sram_bytes", "resident_bytes",
              "latency_ms", "latency_ms_p95", "latency_ms_max", "max_backlog_ms", "energy_mj",
              "energy_idle_leakage_mj", "offchip_bytes_per_s", "macs_per_s", "rtf", "cycles",
              "compute_cycles", "audio_s", "warmup_offchip_bytes")


@pytest.mark.parametrize("replay", [True, False])
def test_score_evaluator_matches_azsim_score(tmp_path, replay):
    """Both ways of sharing a recipe's work across chips (replaying the recorded chip calls, or
    re-running azsim score's pipeline on the quantized model) give what azsim score gives."""
    toy = pytest.importorskip("asr.quant.toy")
    import tomli_w

    from azsim.workflows.score import score

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _tiny_corpus(corpus)
    model = toy.save_random_model(tmp_path / "tiny.npz", seed=3)
    p = write_spec(tmp_path, f"""
[sweep]
evaluator = "score"
[options]
model = "{model}"
corpus = "{corpus}"
limit = 3
beam = 2
replay = {str(replay).lower()}
[recipes]
int8 = "{ROOT / 'recipes' / 'int8.toml'}"
sparse = "{ROOT / 'recipes' / 'int8-sparse50.toml'}"
[hw]
"mac_array.zero" = ["none", "skip"]
"sram.weight_bytes" = ["64KB", "1MB"]
"clock_hz" = ["100MHz", "800MHz"]
""")
    spec = spec_mod.load(p)
    db = tmp_path / "r.db"
    s = sweep.run(spec, db, jobs=1, progress=False)
    assert (s.done, s.prepared) == (16, 2)          # the model is quantized once per recipe
    rows = {(r["recipe"], r["params"]["mac_array.zero"], r["params"]["sram.weight_bytes"],
             r["params"]["clock_hz"]): r["metrics"] for r in load_rows(db)}
    fast = rows[("sparse", "skip", 1 << 20, 800e6)]
    assert fast["weight_bytes"] < rows[("int8", "skip", 1 << 20, 800e6)]["weight_bytes"]
    assert fast["cycles"] < rows[("sparse", "none", 1 << 20, 800e6)]["cycles"]          # zeros skipped
    assert rows[("int8", "skip", 1 << 20, 800e6)]["offchip_bytes_per_s"] < rows[("int8", "skip", 65536, 800e6)]["offchip_bytes_per_s"]
    assert fast["latency_ms"] < rows[("sparse", "skip", 1 << 20, 100e6)]["latency_ms"]
    for pt in spec.points:
        if pt.hw["clock_hz"] != 100e6 or pt.hw["mac_array.zero"] != "skip":
            continue
        preset = tmp_path / "chip.toml"
        preset.write_bytes(tomli_w.dumps(pt.config.to_dict()).encode())
        direct = score(model=model, recipe=spec.recipes[pt.recipe], preset=str(preset),
                       corpus=corpus, limit=3, beam=2, progress=False)
        got = rows[(pt.recipe, "skip", pt.hw["sram.weight_bytes"], 100e6)]
        for k in SCORE_KEYS:
            assert got[k] == pytest.approx(direct[k], rel=1e-12), (pt.recipe, k)
        for c, v in direct["energy_mj_by_component"].items():
            assert got[f"energy_mj.{c}"] == pytest.approx(v, rel=1e-12), c


def test_cli_scheduler_address_equals_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    p = write_spec(tmp_path, """
[sweep]
evaluator = "layer"
[options]
layers = [[1, 64, 96], [1, 96, 32]]
frames = 2
[recipes]
dense = { bits = 8, format = "dense" }
rle = { bits = 8, format = "rle", sparsity = 0.6 }
[hw]
"mac_array.zero" = ["none", "skip"]
"offchip.bytes_per_cycle" = [1.0, 4.0]
""")
    sweep.run(spec_mod.load(p), tmp_path / "local.db", jobs=2, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                                  dashboard_address=None) as cluster:
        r = subprocess.run([sys.executable, "-m", "azsim.cli", "sweep", str(p), "--results",
                            str(tmp_path / "dask.db"), "--scheduler", cluster.scheduler_address, "--quiet"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "8 point(s) evaluated" in r.stdout and "s per point" in r.stdout
    assert table(tmp_path / "local.db") == table(tmp_path / "dask.db")


def test_ctrl_c_stops_promptly_and_says_how_to_continue(tmp_path):
    # 1 s per point: the 24 points take >= 12 s, so the interrupt lands mid-sweep even on a loaded machine
    spec_path = fake_spec(tmp_path, delay=1.0, rows=(8, 16, 32, 64), bws=(2.0, 4.0, 8.0))
    db = tmp_path / "r.db"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    proc = subprocess.Popen([sys.executable, "-m", "azsim.cli", "sweep", str(spec_path), "--results", str(db),
                             "--jobs", "2", "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # as from a terminal: a shell's background jobs (CI runners, nohup)
                            # inherit SIGINT ignored, and Python keeps it ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.1)
        try:
            if db.exists() and sqlite3.connect(db, timeout=1).execute(
                    "SELECT count(*) FROM points").fetchone()[0] >= 2:
                break
        except sqlite3.OperationalError:
            pass
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)           # what Ctrl-C in a terminal does
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.time() - t0 < 10
    assert proc.returncode == 130, err[-2000:]
    assert "rerun the same command to continue" in err
    assert len(load_rows(db)) < 24
