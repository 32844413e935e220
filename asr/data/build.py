"""`python -m asr.data.build --config configs/shipped.toml`: build the corpus of a config's [data].

Prints the corpus directory and, per subset, utterances, hours and distinct voices.
"""
from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

from azsim.errors import AzsimError, ConfigError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asr.data.build", description=__doc__)
    ap.add_argument("--config", required=True, help="TOML file with a [data] section")
    ap.add_argument("--cache-dir", default=None, help="default: $AZSIM_CACHE or <repo>/cache")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    from asr.data.corpus import build, corpus_info
    try:
        path = Path(a.config)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data_cfg = tomllib.loads(path.read_text()).get("data", {})
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML ({err})") from None
        t0 = time.time()
        corpus = build(data_cfg, a.cache_dir, workers=a.workers, progress=not a.no_progress)
        info = corpus_info(corpus)
    except AzsimError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"corpus: {corpus}  (this run {time.time() - t0:.1f} s; recorded build {info['build_s']} s)")
    for name, s in info["subsets"].items():
        print(f"  {name:11s} {s['utterances']:7d} utt  {s['hours']:8.3f} h  {s['voices']:6d} voices  "
              f"{s['variants']:4d} variants")
    return 0


if __name__ == "__main__":
    sys.exit(main())
