"""Sweep results in one SQLite file, one row per point, written as points finish.

Table `points`: key (the point's stable hash, primary key), sweep, recipe, params_json,
metrics_json, eval_s (seconds the evaluation took), finished_at (UTC), plus one column per
parameter (dotted hardware paths) and per scalar metric, added as they first appear, so that
`sqlite3 results.db 'select recipe, "mac_array.rows", wer from points'` works.

Every row is committed on its own: a killed sweep loses only the points in flight, and a row
is either all there or absent. INSERT OR IGNORE on the key keeps reruns from duplicating rows.
"""
from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path

from azsim.errors import FormatError

FIXED = ("key", "sweep", "recipe", "params_json", "metrics_json", "eval_s", "finished_at")
_SCHEMA = """CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY, sweep TEXT, recipe TEXT, params_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL, eval_s REAL, finished_at TEXT)"""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ResultStore:
    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FormatError(f"{self.path}: no such results file")
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL") if create else None
            if create:
                self.db.execute(_SCHEMA)
                self.db.commit()
            cols = [r[1] for r in self.db.execute("PRAGMA table_info(points)")]
        except sqlite3.DatabaseError as err:
            raise FormatError(f"{self.path}: not an azsim results file ({err})") from None
        if not set(FIXED) <= set(cols):
            raise FormatError(f"{self.path}: not an azsim results file (no points table with "
                              f"columns {', '.join(FIXED)})")
        self.columns = set(cols)

    def keys(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT key FROM points")}

    def add(self, key: str, sweep: str, params: dict, metrics: dict, eval_s: float) -> bool:
        """Insert one finished point (committed at once). False if the key was already there."""
        flat = {k: v for k, v in params.items() if k != "recipe"}
        flat.update({k: v for k, v in metrics.items()
                     if isinstance(v, (int, float, str)) and not isinstance(v, bool) and k not in flat})
        flat = {k: v for k, v in flat.items() if k not in FIXED}
        for k in flat:
            if k not in self.columns:
                self.db.execute(f"ALTER TABLE points ADD COLUMN {_q(k)}")
                self.columns.add(k)
        cols = list(FIXED) + list(flat)
        vals = [key, sweep, params.get("recipe"), json.dumps(params),
                json.dumps(metrics, sort_keys=True, default=float), float(eval_s),
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())] + list(flat.values())
        cur = self.db.execute(f"INSERT OR IGNORE INTO points ({', '.join(map(_q, cols))}) "
                              f"VALUES ({', '.join('?' * len(cols))})", vals)
        self.db.commit()
        return cur.rowcount == 1

    def rows(self) -> list[dict]:
        """Every point: {key, recipe, eval_s, params: {...}, metrics: {...}} in insertion order."""
        out = []
        for key, sweep, recipe, pj, mj, es, fin in self.db.execute(
                "SELECT key, sweep, recipe, params_json, metrics_json, eval_s, finished_at "
                "FROM points ORDER BY rowid"):
            out.append({"key": key, "sweep": sweep, "recipe": recipe, "params": json.loads(pj),
                        "metrics": json.loads(mj), "eval_s": es, "finished_at": fin})
        return out

    def close(self) -> None:
        self.db.close()


def load_rows(path: str | Path) -> list[dict]:
    """Rows of a results file (SQLite from `azsim sweep`, or a JSON list of such rows)."""
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: no such results file")
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise FormatError(f"{p}: not valid JSON: {err}") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) and "metrics" in r for r in data):
            raise FormatError(f"{p}: expected a JSON list of rows with a 'metrics' object")
        return data
    st = ResultStore(p, create=False)
    try:
        return st.rows()
    finally:
        st.close()


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
