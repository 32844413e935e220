"""A corpus directory in asr.data.corpus's on-disk format, made from generated audio in
milliseconds: for tests of code that reads a built corpus, without building the real one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def noise_audio(rate_hz: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(rate_hz * seconds))).astype(np.float32)


def fake_corpus(root: Path, texts: dict[str, list[str]], audio=noise_audio) -> Path:
    """`texts`: subset -> transcripts; `audio(rate_hz, seconds, seed)` makes each waveform."""
    from asr.features import log_mel
    d = Path(root) / "corpus-fake"
    d.mkdir(parents=True)
    for k, (subset, tx) in enumerate(texts.items()):
        feats, offsets = [], [0]
        with open(d / f"{subset}.jsonl", "w") as fh:
            for i, text in enumerate(tx):
                wave = audio(16000, 1.0 + 0.1 * i, 10 * k + i)
                f = log_mel(wave, 16000).astype(np.float16)
                feats.append(f)
                offsets.append(offsets[-1] + f.shape[0])
                fh.write(json.dumps({"id": f"{subset}-{i}", "path": f"wav/{i}.wav", "text": text,
                                     "voice": "v", "duration_s": wave.size / 16000}) + "\n")
        np.save(d / f"{subset}.feats.npy", np.concatenate(feats))
        np.save(d / f"{subset}.offsets.npy", np.array(offsets, np.int64))
    (d / "complete.json").write_text(json.dumps({"fake": True}))
    return d
