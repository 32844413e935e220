"""Data shifts for model updates: commands with contact names the deployed model never heard.

Shift s (0-based) has its own NAMES_PER_SHIFT new contacts: real given names and surnames
that are in none of asr/data/slots/*.txt (checked against the grammar's slot lists), filled up
with seeded pseudo-names when the hand list runs out. Sentences use the grammar's contact
templates (call / message / text ...), so only the names are new. Audio is eSpeak NG: the
shift's training utterances use training-pool voices, its test utterances held-out test-pool
voices (asr.data.corpus.voice_pools), as in the main corpus. Cached per (seed, shift, counts).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

NAMES_PER_SHIFT = 8
# Candidates, filtered against the slot lists at run time (a name in any list is dropped).
_FIRST = ("ingrid", "oluwaseun", "thaddeus", "wilhelmina", "bartholomew", "guinevere",
          "ignatius", "philippa", "cornelius", "henrietta", "leopold", "octavia", "barnaby",
          "clementine", "ptolemy", "rosalind", "horatio", "persephone", "lysander", "marigold",
          "evander", "winifred", "casimir", "seraphina", "augustin", "beatrix", "desmond",
          "imogen", "quentin", "ottoline", "rupert", "philomena", "ezekiel", "cordelia",
          "balthazar", "eulalia", "florian", "hortense", "jasper", "leocadia", "magnus",
          "nerissa", "osvaldo", "prudence", "radomir", "sigrid", "tiberius", "ulrika")
_LAST = ("vandersloot", "okonkwo", "przybylski", "fitzwilliam", "abernathy", "quackenbush",
         "zoltanski", "haverbrook", "marchetti", "lindqvist", "oyelaran", "thistlewood",
         "kowalczyk", "featherstone", "achterberg", "montgomery", "ravensworth", "szymanski",
         "wolfenden", "yamamura", "blackwood", "delacroix", "ellingsworth", "grimaldi")
_SYLLABLES = ("ka", "lo", "vim", "dre", "sa", "tor", "ne", "bri", "zu", "mal", "fen", "rho")
_TEMPLATES = ("call {c}", "call {c} please", "phone {c}", "give {c} a call", "ring {c}",
              "send a message to {c} saying {m}", "text {c} {m}", "tell {c} {m}")


def _known_words() -> set[str]:
    from asr.data.grammar import slot_lists
    words = set()
    for values in slot_lists().values():
        for v in values:
            words.update(v.split())
    return words


def shift_names(shift: int, seed: int = 0) -> list[str]:
    """NAMES_PER_SHIFT contact names for `shift`, disjoint from the slot lists and from every
    other shift's names."""
    known = _known_words()
    first = [w for w in _FIRST if w not in known]
    last = [w for w in _LAST if w not in known]
    rng = np.random.default_rng([seed, 4242])
    first = [first[i] for i in rng.permutation(len(first))]
    last = [last[i] for i in rng.permutation(len(last))]
    k = NAMES_PER_SHIFT
    out = []
    for j in range(k * shift, k * (shift + 1)):
        if j < len(first):
            name = first[j]
        else:   # pseudo-name: seeded syllables, never a known word
            r = np.random.default_rng([seed, 99, j])
            name = "".join(_SYLLABLES[int(i)] for i in r.integers(0, len(_SYLLABLES), 3))
            while name in known:
                name += _SYLLABLES[int(r.integers(len(_SYLLABLES)))]
        if j % 2 == 1:
            name = f"{name} {last[j % len(last)]}"
        out.append(name)
    return out


def _sentences(shift: int, n: int, seed: int, salt: int) -> list[str]:
    from asr.data.grammar import slot_lists
    names = shift_names(shift, seed)
    messages = slot_lists()["message"]
    rng = np.random.default_rng([seed, shift, salt])
    out = []
    for i in range(n):
        c = names[i % len(names)]   # every name appears; round-robin keeps counts even
        t = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
        out.append(t.format(c=c, m=messages[int(rng.integers(min(20, len(messages))))]))
    return out


def _synth_set(texts: list[str], pool: list[str], data_cfg: dict, seed: int, salt: int):
    from asr.data import synth
    from asr.data.corpus import _draw_voice, _synth16k
    from asr.features import log_mel_16k
    synth.reset()   # the same audio whatever this process synthesized before
    rng = np.random.default_rng([seed, salt])
    feats, voices = [], []
    for t in texts:
        v = _draw_voice(rng, data_cfg, pool)
        x = _synth16k(t, v)
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak > 0:
            x = x * (0.5 / peak)
        feats.append(log_mel_16k(x).astype(np.float16))
        voices.append(v.name if hasattr(v, "name") else str(v))
    return feats, voices


def make_shift(shift: int, n_train: int, n_test: int, data_cfg: dict | None = None,
               seed: int = 0, cache_dir: Path | None = None):
    """(train utterances, test utterances) of one shift; each has .feats (T, 80) and .text."""
    from asr.data.corpus import default_cache_dir, resolve_config, voice_pools
    cfg = resolve_config(data_cfg or {})
    # 2: each set synthesized from a reset synthesizer (asr.data.synth)
    key = hashlib.sha256(json.dumps([2, shift, n_train, n_test, seed, cfg["seed"],
                                     shift_names(shift, seed)]).encode()).hexdigest()[:12]
    cache = Path(cache_dir or default_cache_dir()) / f"diff-shift-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    else:
        pools = voice_pools(cfg)
        tr_text = _sentences(shift, n_train, seed, 1)
        te_text = _sentences(shift, n_test, seed, 2)
        tr, _ = _synth_set(tr_text, pools["train"], cfg, seed, 100 + shift)
        te, _ = _synth_set(te_text, pools["test"], cfg, seed, 200 + shift)
        data = {"train_text": np.array(tr_text), "test_text": np.array(te_text),
                "train_len": np.array([len(f) for f in tr]), "test_len": np.array([len(f) for f in te]),
                "train_feats": np.concatenate(tr), "test_feats": np.concatenate(te)}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, **data)
        tmp.replace(cache)

    def split(prefix):
        offs = np.concatenate([[0], np.cumsum(data[f"{prefix}_len"])])
        return [SimpleNamespace(feats=data[f"{prefix}_feats"][offs[i]:offs[i + 1]], text=str(t))
                for i, t in enumerate(data[f"{prefix}_text"])]
    return split("train"), split("test")
