"""The Free Spoken Digit Dataset: real recordings of digits 0-9 by 4 speakers (8 kHz WAV).

Files are named {digit}_{speaker}_{take}.wav. FSDD's own split: takes 0-4 are test, 5-49 train.
The data lives beside the repository in ../shared/data/fsdd (override with env AZSIM_FSDD).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from asr.data.grammar import DIGIT_WORDS

_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
TEST_TAKES = range(0, 5)


@dataclass(frozen=True)
class FsddItem:
    path: Path
    digit: int
    speaker: str
    take: int

    @property
    def text(self) -> str:
        return DIGIT_WORDS[self.digit]


def fsdd_dir() -> Path:
    env = os.environ.get("AZSIM_FSDD")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return (repo / ".." / "shared" / "data" / "fsdd").resolve()


def list_items(root: Path | None = None) -> list[FsddItem]:
    """All recordings, sorted by (speaker, digit, take). Raises FileNotFoundError if absent."""
    root = Path(root) if root else fsdd_dir()
    rec = root / "recordings" if (root / "recordings").is_dir() else root
    if not rec.is_dir():
        raise FileNotFoundError(f"FSDD recordings not found at {rec} (set AZSIM_FSDD)")
    items = []
    for p in rec.iterdir():
        m = _NAME.match(p.name)
        if m:
            items.append(FsddItem(p, int(m.group(1)), m.group(2), int(m.group(3))))
    if not items:
        raise FileNotFoundError(f"no FSDD recordings ({{digit}}_{{speaker}}_{{take}}.wav) in {rec} "
                                f"(set AZSIM_FSDD)")
    return sorted(items, key=lambda i: (i.speaker, i.digit, i.take))


def split(items: list[FsddItem]) -> tuple[list[FsddItem], list[FsddItem]]:
    """(train: takes >= 5, test: takes 0-4)."""
    train = [i for i in items if i.take not in TEST_TAKES]
    test = [i for i in items if i.take in TEST_TAKES]
    return train, test
