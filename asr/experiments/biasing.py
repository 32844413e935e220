"""`azsim experiment biasing`: contextual biasing with the user's contact and appliance names.

Test sets (synthesized here with eSpeak NG in the corpus's *test* voices, never heard in
training; cached under ``<corpus>/biasing/``):
- ``names``: commands naming a contact (call / message templates of asr.data.grammar) that
  occurs at most once in the training transcripts (most occur never), or an appliance that is
  among the rarest in training or absent from it (NOVEL_APPLIANCES);
- ``no_names``: commands of the grammar's intents without a contact or appliance slot.
A small tuning set of both kinds in the *dev* voices picks the boost weight and completion
bonus (``pick_weight``: the lowest names WER over WEIGHTS that keeps the no-names WER within
the goal's 0.2 points), so the test sets are not used for tuning.

Each utterance is one request with its own bias list: the names the utterance contains (for
``names``) plus distractors (other contacts and appliances, then random first name + surname
pairs) up to LIST_SIZE names; ``no_names`` utterances get a list of the same size (so false
boosts show up). A list of LARGE_LIST_SIZE names measures the decode-time cost.

Fusion is run plain and gated: a gated list boosts a class's names only after a phrase that a
slot of that class usually follows in training (``slot_phrases``: "call", "turn the", room
names; not "the" alone, which mostly precedes other words). Gating on every word seen before a
slot (1 % of its occurrences, "the" included), as up to commit 3dcea0f, cost +1.30 points on
the name-free test utterances at beam 16 with 100 names (+7.26 with 1000).

Slot rescoring (``asr.decode.rescore``) follows each fusion variant as a further method: after
a phrase that a slot usually follows in training (``slot_phrases``), a slot that holds a contact
or appliance the recognizer knows from training but the user does not have, or out-of-vocabulary
words, is re-decided among the list's names of its class by RNN-T log-likelihood minus a
weighted internal-LM estimate. Until commit 201679c known appliances did not count. Decoding
the full mode's 200 + 200 dev utterances at beam 4 (gated fusion at 0.75 per token, no
reserve, ILM weight 1), counting them took the names' relative WER reduction after rescoring
from 25.4 % to 31.6 % and changed no further name-free utterance. The fusion weight and the ILM weight (ILM_WEIGHTS) are chosen together on the dev
voices by the same rule (``rescore_grid``).

Fusion keeps half of the beam's places (``--reserve``, rounded down) for the best hypotheses
by the model's own score (``asr.decode.beam``, unbiased reserve): a boosted partial match that
later breaks then falls back to the path an unbiased search would have kept. On the full
mode's 200 + 200 dev utterances at beam 4, fusion after slot phrases at 0.5 per token cost
+1.71 points on name-free utterances without it ("call eight four ..." heard as "call et four
..."), +1.37 with 1 place reserved and +0.34 with 2.

Decoding: the float model on the host (biasing acts on the host's beam search; the encoder
output is computed once per utterance and shared by all conditions). Decode time is the beam
search's host time per utterance, conditions interleaved utterance by utterance so that load
from other processes hits all of them alike, with BLAS on one thread (a device decodes on one
core; and on these small matmuls a second BLAS thread stalls behind any other process: beside
one other job, slot rescoring took 30-40 ms per utterance with two threads against 1.4-1.9
with one).

Neural biasing (``asr.decode.neural_bias``, a tree-constrained pointer), when its trained
model file exists, is reported as a further row, with a control (the spoken names taken out of
each list) and its chip cost from azsim graphs of its matmuls.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from asr.experiments import common as C

LIST_SIZE = 100
LARGE_LIST_SIZE = 1000
# (per-token weight, completion bonus) pairs tried on the dev-voice tuning sets
WEIGHTS = ((0.25, 0.0), (0.5, 0.0), (0.75, 0.0), (1.0, 0.0), (1.25, 0.0), (2.0, 0.0), (0.25, 2.0),
           (0.5, 2.0), (0.5, 4.0), (1.0, 1.0), (1.0, 2.0), (1.0, 4.0), (1.5, 4.0))
NO_NAMES_SLACK = 0.002     # the goal's bound on the no-names WER increase, applied when tuning
RARE_MAX_TRAIN_COUNT = 1
RAREST_APPLIANCES = 10
NOVEL_APPLIANCES = ("dehumidifier", "espresso machine", "robot vacuum", "garage door opener",
                    "sprinkler", "aquarium pump", "space heater", "bread maker", "tumble dryer",
                    "electric blanket", "soundbar", "chandelier", "sound machine", "hot tub",
                    "pool pump", "waffle iron", "foot spa", "record player", "lava lamp", "jukebox")
# appliances for training neural biasing: in neither the grammar nor NOVEL_APPLIANCES
TRAIN_APPLIANCES = ("rice cooker", "slow cooker", "air fryer", "heat lamp", "towel warmer", "wine cooler",
                    "ice maker", "baby monitor", "salt lamp", "tower fan", "game console", "treadmill",
                    "massage chair", "bottle warmer", "popcorn maker", "shoe dryer", "bug zapper",
                    "pressure cooker", "nail dryer", "label printer")
# internal-LM weights tried for slot rescoring (asr.decode.rescore), with each fusion weight
ILM_WEIGHTS = (0.5, 0.75, 1.0, 1.25)
QUICK = {"n_test": 100, "n_tune": 40}
# 200 + 200 dev utterances: with 80 + 80 the 0.2-point no-names bound was under one word error,
# too coarse to tell the weights apart
FULL = {"n_test": 300, "n_tune": 200}
_CACHE_VERSION = 1

_CONTACT_TEMPLATES = ("call {c}", "call {c} please", "phone {c}", "give {c} a call", "ring {c}",
                      "call {c} on mobile", "send a message to {c} saying {m}", "text {c} {m}",
                      "message {c} {m}")
_APPLIANCE_TEMPLATES = ("turn on the {r} {a}", "turn off the {a}", "switch on the {a}",
                        "switch off the {a} in the {r}", "turn the {a} on in the {r}",
                        "turn the {a} off")
_NAME_INTENTS = {"call_contact", "send_message", "turn_on", "turn_off"}


# ------------------------------------------------------------------ names and lists
def _train_slots(corpus_dir) -> list[tuple[str, dict]]:
    """(transcript, slot annotations) of every training utterance of the corpus's config,
    from asr.data.corpus.train_transcripts: equal to train.jsonl's, without synthesizing it."""
    from asr.data import corpus as corpus_mod
    cfg = json.loads((Path(corpus_dir) / "config.json").read_text())
    return [(r["text"], r["slots"]) for r in corpus_mod.train_transcripts(cfg)]


def train_counts(corpus_dir, records=None) -> tuple[dict, dict]:
    contacts, appliances = {}, {}
    for _text, s in records if records is not None else _train_slots(corpus_dir):
        if "contact" in s:
            contacts[s["contact"]] = contacts.get(s["contact"], 0) + 1
        if "appliance" in s:
            appliances[s["appliance"]] = appliances.get(s["appliance"], 0) + 1
    return contacts, appliances


def _slot_start(words: list[str], value) -> int | None:
    """Index of the first word of the slot `value` in `words`, if it occurs after word 0."""
    if not isinstance(value, str):
        return None
    v = value.split()
    return next((i for i in range(1, len(words) - len(v) + 1) if words[i:i + len(v)] == v), None)


def slot_phrases(corpus_dir, min_precision: float = 0.5, min_share: float = 0.005, max_words: int = 3,
                 records=None) -> dict[str, list[str]]:
    """{"contact": [...], "appliance": [...]}: the phrases (1 to `max_words` words) that precede
    each slot in the training transcripts and that the slot follows at least `min_precision` of
    the time (at least `min_share` of the slot's occurrences; none whose shorter ending already
    qualifies). Not which words come before a slot but after which phrases a slot is expected:
    "the" precedes appliances but is mostly followed by other words ("play the ..."), while
    "turn the" is mostly followed by an appliance. Gated fusion boosts a class's names only
    after these, and slot rescoring acts only after them."""
    seen: dict[tuple, int] = {}
    hits = {"contact": {}, "appliance": {}}
    for text, slots in records if records is not None else _train_slots(corpus_dir):
        words = text.split()
        for n in range(1, max_words + 1):
            for i in range(n, len(words)):
                g = tuple(words[i - n:i])
                seen[g] = seen.get(g, 0) + 1
        for slot, h in hits.items():
            i = _slot_start(words, slots.get(slot))
            for n in range(1, min(max_words, i or 0) + 1):
                g = tuple(words[i - n:i])
                h[g] = h.get(g, 0) + 1
    out = {}
    for slot, h in hits.items():
        total = sum(c for g, c in h.items() if len(g) == 1)
        ok = {g for g, c in h.items() if total and c / seen[g] >= min_precision and c / total >= min_share}
        out[slot] = sorted(" ".join(g) for g in ok if not any(g[-m:] in ok for m in range(1, len(g))))
    return out


def bias_classes(names: list[str], prefixes: dict[str, list[str]]) -> list[tuple[list[str], list[str]]]:
    """A request's list split into (contacts, their prefixes), (appliances, theirs)."""
    from asr.data import grammar
    appliances = set(grammar.slot_lists()["appliance"]) | set(NOVEL_APPLIANCES)
    app = [n for n in names if n in appliances]
    con = [n for n in names if n not in appliances]
    return [(c, prefixes[k]) for c, k in ((con, "contact"), (app, "appliance")) if c]


def rare_names(corpus_dir, records=None) -> tuple[list[str], list[str], dict]:
    from asr.data import grammar
    lists = grammar.slot_lists()
    cc, ac = train_counts(corpus_dir, records)
    contacts = [c for c in lists["contact"] if cc.get(c, 0) <= RARE_MAX_TRAIN_COUNT]
    known = set(lists["appliance"])
    rare_app = sorted(lists["appliance"], key=lambda a: (ac.get(a, 0), a))[:RAREST_APPLIANCES]
    novel = [a for a in NOVEL_APPLIANCES if a not in known]
    counts = {"contacts_rare": len(contacts),
              "contacts_absent": sum(1 for c in contacts if cc.get(c, 0) == 0),
              "appliances_rare": len(rare_app), "appliances_absent": len(novel),
              "rare_appliance_train_counts": {a: ac.get(a, 0) for a in rare_app}}
    return contacts, rare_app + novel, counts


def distractor_pool(seed: int, extra_appliances) -> list[str]:
    """Every contact and appliance, then random first name + surname pairs (to 5,000)."""
    from asr.data import grammar
    lists = grammar.slot_lists()
    pool = list(dict.fromkeys(list(lists["contact"]) + list(lists["appliance"]) + list(extra_appliances)))
    rng = np.random.default_rng([seed, 31])
    first, last = lists["first_name"], lists["surname"]
    seen = set(pool)
    while len(pool) < 5000:
        n = f"{first[int(rng.integers(len(first)))]} {last[int(rng.integers(len(last)))]}"
        if n not in seen:
            seen.add(n)
            pool.append(n)
    return pool


def bias_list(names: list[str], size: int, pool: list[str], rng) -> list[str]:
    out = list(dict.fromkeys(names))
    chosen = set(out)
    for i in rng.permutation(len(pool)):
        if len(out) >= size:
            break
        if pool[i] not in chosen:
            out.append(pool[i])
            chosen.add(pool[i])
    return [out[i] for i in rng.permutation(len(out))]   # the true name is not first


# ------------------------------------------------------------------ synthesis
def _texts(kind: str, n: int, rng, contacts, appliances) -> list[dict]:
    from asr.data import grammar
    lists = grammar.slot_lists()
    out = []
    while len(out) < n:
        if kind == "names":
            if rng.random() < 2 / 3:
                c = contacts[int(rng.integers(len(contacts)))]
                m = grammar.zipf_choice(rng, lists["message"])
                t = _CONTACT_TEMPLATES[int(rng.integers(len(_CONTACT_TEMPLATES)))].format(c=c, m=m)
                out.append({"text": t, "names": [c]})
            else:
                a = appliances[int(rng.integers(len(appliances)))]
                r = grammar.zipf_choice(rng, lists["room"])
                t = _APPLIANCE_TEMPLATES[int(rng.integers(len(_APPLIANCE_TEMPLATES)))].format(a=a, r=r)
                out.append({"text": t, "names": [a]})
        else:
            text, intent, _slots = grammar.sample(rng)
            if intent not in _NAME_INTENTS:
                out.append({"text": text, "names": []})
    return out


def _synth(text, voice, rng) -> np.ndarray:
    from scipy.signal import resample_poly
    from asr.data.synth import synthesize
    from asr.features import features
    x = resample_poly(synthesize(text, voice), 320, 441).astype(np.float32)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0:
        x = x * (rng.uniform(0.2, 0.9) / peak)
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)   # what a WAV would hold
    return features(pcm.astype(np.float32) / 32768.0, C.RATE_HZ)


def build_sets(corpus_dir, n_test: int, n_tune: int, seed: int, progress: bool,
               records=None) -> tuple[dict, dict]:
    """{'names', 'no_names', 'tune_names', 'tune_no_names'}: lists of {text, names, voice, feats}.
    `records`: _train_slots(corpus_dir) when the caller has read them already."""
    contacts, appliances, counts = rare_names(corpus_dir, records)
    specs = {"names": ("names", n_test, "test"), "no_names": ("no_names", n_test, "test"),
             "tune_names": ("names", n_tune, "dev"), "tune_no_names": ("no_names", n_tune, "dev")}
    pools = _voice_pools(corpus_dir)
    key = [_CACHE_VERSION, n_test, n_tune, seed, contacts, appliances, pools["test"], pools["dev"]]
    return _synth_sets(corpus_dir, "sets", key, 0, specs, pools, contacts, appliances, seed,
                       progress), counts


def novel_contacts(n: int, seed: int) -> list[str]:
    """n first name + surname pairs that are no contact of the grammar (so absent from the
    training transcripts and from the test sets), for training neural biasing on names the
    recognizer has not learned."""
    from asr.data import grammar
    lists = grammar.slot_lists()
    known = set(lists["contact"])
    rng = np.random.default_rng([seed, 71])
    out: dict[str, None] = {}
    while len(out) < n:
        c = f"{lists['first_name'][int(rng.integers(len(lists['first_name'])))]} " \
            f"{lists['surname'][int(rng.integers(len(lists['surname'])))]}"
        if c not in known:
            out[c] = None
    return list(out)


def build_train_set(corpus_dir, n: int, seed: int, progress: bool) -> list[dict]:
    """Name-bearing commands in the *training* voices naming novel_contacts and
    TRAIN_APPLIANCES (disjoint from every test name), for asr.decode.neural_bias."""
    specs = {"train_names": ("names", n, "train")}
    contacts, appliances = novel_contacts(2000, seed), list(TRAIN_APPLIANCES)
    pools = _voice_pools(corpus_dir)
    key = [_CACHE_VERSION, seed, contacts, appliances, pools["train"], sorted(specs.items())]
    return _synth_sets(corpus_dir, "train", key, 10, specs, pools, contacts, appliances, seed,
                       progress)["train_names"]


def _voice_pools(corpus_dir) -> dict:
    from asr.data import corpus as corpus_mod
    cfg = json.loads((Path(corpus_dir) / "config.json").read_text())
    return corpus_mod.voice_pools(corpus_mod.resolve_config(cfg))


def _synth_sets(corpus_dir, label: str, key_parts: list, stream: int, specs: dict, pools: dict,
                contacts, appliances, seed: int, progress: bool) -> dict:
    """Synthesize (or load from the corpus's biasing/ cache, file ``<label>-<hash of
    key_parts>.npz``) sets named by `specs`: name -> (kind, count, voice pool), voices from
    `pools` (_voice_pools). Set k draws its texts and voices from the random stream
    (seed, 41, stream + k)."""
    from tqdm import tqdm
    from asr.data.synth import ENGLISH_BASES, Voice
    corpus_dir = Path(corpus_dir)
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:12]
    cache = corpus_dir / "biasing" / f"{label}-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            sets = {}
            for name in specs:
                feats, offs = z[f"{name}_feats"], z[f"{name}_offsets"]
                sets[name] = [{**m, "feats": feats[offs[i]:offs[i + 1]].astype(np.float32)}
                              for i, m in enumerate(meta[name])]
        return sets
    cfg = json.loads((corpus_dir / "config.json").read_text())   # the voices' rate and pitch ranges
    from asr.data import synth as synth_mod
    synth_mod.reset()   # the same audio whatever this process synthesized before
    sets = {}
    total = sum(s[1] for s in specs.values())
    bar = tqdm(total=total, desc=f"synthesize biasing {label}", unit="utt", file=sys.stderr,
               disable=not progress, leave=False)
    for k, (name, (kind, n, pool)) in enumerate(specs.items()):
        rng = np.random.default_rng([seed, 41, k + stream])
        rows = []
        for item in _texts(kind, n, rng, contacts, appliances):
            voice = Voice(ENGLISH_BASES[int(rng.integers(len(ENGLISH_BASES)))],
                          pools[pool][int(rng.integers(len(pools[pool])))],
                          int(rng.integers(cfg["rate_wpm"][0], cfg["rate_wpm"][1] + 1)),
                          int(rng.integers(cfg["pitch"][0], cfg["pitch"][1] + 1)))
            rows.append({**item, "voice": voice.name, "feats": _synth(item["text"], voice, rng)})
            bar.update(1)
        sets[name] = rows
    bar.close()
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays, meta = {}, {}
    for name, rows in sets.items():
        lens = [r["feats"].shape[0] for r in rows]
        arrays[f"{name}_feats"] = (np.concatenate([r["feats"] for r in rows]) if rows
                                   else np.zeros((0, 240))).astype(np.float16)
        arrays[f"{name}_offsets"] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        meta[name] = [{k: v for k, v in r.items() if k != "feats"} for r in rows]
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(cache)
    # the cached float16 features are what later runs see: use them now too
    for rows in sets.values():
        for r in rows:
            r["feats"] = r["feats"].astype(np.float16).astype(np.float32)
    return sets


MAX_WEIGHT_PAIRS = 40


def parse_weights(spec, source: str = "--weights") -> tuple[tuple[float, float], ...]:
    """The tuning grid: ``"0.5/0,0.5/1,1"`` or ``[(0.5, 0), (0.5, 1), (1, 0)]`` ->
    ((0.5, 0.0), (0.5, 1.0), (1.0, 0.0)): (per-token weight, completion bonus) pairs, the bonus 0
    where left out, duplicates dropped. ConfigError names the entry and the allowed range."""
    from asr.decode.biasing import WEIGHT_RANGE
    from azsim.errors import ConfigError
    lo, hi = WEIGHT_RANGE
    allowed = (f"1 to {MAX_WEIGHT_PAIRS} WEIGHT[/END_BONUS] pairs, comma-separated, each number in "
               f"[{lo:g}, {hi:g}] (log-prob units)")
    entries = ([e.strip() for e in spec.split(",")] if isinstance(spec, str)
               else ["/".join(str(v) for v in e) if isinstance(e, (tuple, list)) else str(e) for e in spec])
    if not entries or entries == [""] or len(entries) > MAX_WEIGHT_PAIRS:
        raise ConfigError(f"{source}: {len(entries) if entries != [''] else 0} pairs; allowed: {allowed}")
    out: dict[tuple[float, float], None] = {}
    for e in entries:
        parts = e.split("/")
        try:
            if len(parts) > 2:
                raise ValueError(e)
            w, eb = float(parts[0]), (float(parts[1]) if len(parts) == 2 else 0.0)
        except ValueError:
            raise ConfigError(f"{source}: entry {e!r} is not WEIGHT or WEIGHT/END_BONUS; "
                              f"allowed: {allowed}") from None
        if not (lo <= w <= hi and lo <= eb <= hi):     # also rejects nan
            raise ConfigError(f"{source}: entry {e!r} is out of range; allowed: {allowed}")
        out[(w, eb)] = None
    return tuple(out)


MAX_ILM_WEIGHTS = 10


def parse_ilm_weights(spec, source: str = "--ilm-weights") -> tuple[float, ...]:
    """The slot-rescoring grid: ``"0.5,1"`` or ``[0.5, 1]`` -> (0.5, 1.0), duplicates dropped.
    ConfigError names the entry and the allowed range."""
    from asr.decode.rescore import ILM_WEIGHT_RANGE
    from azsim.errors import ConfigError
    lo, hi = ILM_WEIGHT_RANGE
    allowed = f"1 to {MAX_ILM_WEIGHTS} numbers, comma-separated, each in [{lo:g}, {hi:g}]"
    entries = [e.strip() for e in spec.split(",")] if isinstance(spec, str) else [str(e) for e in spec]
    if not entries or entries == [""] or len(entries) > MAX_ILM_WEIGHTS:
        raise ConfigError(f"{source}: {len(entries) if entries != [''] else 0} weights; allowed: {allowed}")
    out: dict[float, None] = {}
    for e in entries:
        try:
            v = float(e)
        except ValueError:
            raise ConfigError(f"{source}: entry {e!r} is not a number; allowed: {allowed}") from None
        if not lo <= v <= hi:     # also rejects nan
            raise ConfigError(f"{source}: entry {e!r} is out of range; allowed: {allowed}")
        out[v] = None
    return tuple(out)


def set_hyps(model, rows: list[dict], make_scorer, beam: int, reserve: int = 0) -> list:
    """One set decoded with ``make_scorer(row)`` (a TokenScorer or None) per utterance: the
    best hypothesis of each (tokens and token frames only)."""
    return [decode_best(model, r["enc"], make_scorer(r), beam, reserve)[0] for r in rows]


def set_wer(model, rows: list[dict], make_scorer, beam: int, reserve: int = 0) -> float:
    """WER of one set decoded with ``make_scorer(row)`` per utterance."""
    from asr.metrics import error_rates
    return error_rates([r["text"] for r in rows],
                       [h.text for h in set_hyps(model, rows, make_scorer, beam, reserve)])["wer"]


def grid_wers(model, sets: dict, set_names, grid, compile_list, beam: int, desc: str,
              progress: bool = False, hyps: dict | None = None, reserve: int = 0) -> list[dict]:
    """{gated, weight, end_bonus, <set name>: WER, ...} for every (weight, end bonus) of `grid`,
    plain and after slot phrases (``compile_list(names, w, eb, gated)``). With `hyps` (a dict),
    the best hypotheses are kept there under (gated, weight, end_bonus, set name)."""
    from tqdm import tqdm
    from asr.metrics import error_rates
    out = []
    jobs = [(g, w, eb) for g in (False, True) for w, eb in grid]
    for gated, w, eb in tqdm(jobs, desc=desc, unit="weight", file=sys.stderr, disable=not progress,
                             leave=False):
        row = {"gated": gated, "weight": w, "end_bonus": eb}
        for n in set_names:
            h = set_hyps(model, sets[n], lambda r: compile_list(r["list"], w, eb, gated), beam, reserve)
            row[n] = error_rates([r["text"] for r in sets[n]], [x.text for x in h])["wer"]
            if hyps is not None:
                hyps[(gated, w, eb, n)] = h
        out.append(row)
    return out


def tradeoff_curve(model, sets: dict, grid, compile_list, beam: int, progress: bool = False,
                   reserve: int = 0) -> list[dict]:
    """Every (weight, end bonus) of `grid` on the *test* sets, plain and after slot phrases:
    the names / no-names trade-off a user reads to see how far a goal is from the chosen point.
    Not used to choose anything (the dev voices choose)."""
    base = {n: set_wer(model, sets[n], lambda r: None, beam) for n in ("names", "no_names")}
    return [{"gated": r["gated"], "weight": r["weight"], "end_bonus": r["end_bonus"],
             "wer_names": r["names"],
             "rel_wer_reduction_names": (base["names"] - r["names"]) / base["names"] if base["names"] else None,
             "wer_no_names": r["no_names"], "abs_wer_change_no_names": r["no_names"] - base["no_names"]}
            for r in grid_wers(model, sets, ("names", "no_names"), grid, compile_list, beam,
                               "trade-off curve", progress, reserve=reserve)]


def _intervals(per_utt: dict, cond: str) -> dict:
    """95 % paired-bootstrap intervals of a condition's relative WER reduction on names and its
    WER change on name-free utterances, against no biasing (per_utt: set -> condition ->
    (word errors, reference words) per utterance)."""
    from asr.metrics import paired_bootstrap
    out = {}
    for name, key, stat in (("names", "rel_ci95", lambda a, b: (a - b) / np.where(a > 0, a, np.nan)),
                            ("no_names", "change_ci95", lambda a, b: b - a)):
        (e0, words), (e1, _) = per_utt[name]["none"], per_utt[name][cond]
        out[key] = list(paired_bootstrap(words, e0, e1, stat)) if words.size else None
    return out


def pick_weight(rows: list[dict], base: dict) -> dict:
    """The tuning row with the lowest names WER among those that keep the no-names WER within
    NO_NAMES_SLACK of the unbiased decoder's (the goal's own bound, on the dev voices); if none
    does, the lowest summed WER. Ties go to the smaller weight, bonus and ILM weight."""
    ok = [r for r in rows if r["tune_no_names"] - base["tune_no_names"] <= NO_NAMES_SLACK + 1e-12]
    mild = lambda r: (r["weight"], r["end_bonus"], r.get("ilm_weight", 0.0))   # noqa: E731
    if ok:
        return min(ok, key=lambda r: (r["tune_names"], *mild(r)))
    return min(rows, key=lambda r: (r["tune_names"] + r["tune_no_names"], *mild(r)))


def slot_classes(names: list[str], phrases: dict, known_contacts, known_appliances=()) -> list:
    """A request's list as slot-rescoring classes (asr.decode.rescore.SlotClass), each after its
    slot_phrases. A contact or appliance the recognizer knows from training but the user does
    not have, heard right after such a phrase, marks a misheard slot ("turn off the stereo" when
    the user has a chandelier and no stereo). Only after the phrases: "set the thermostat" is
    not an appliance slot, since "set the" is no appliance phrase."""
    from asr.decode.rescore import SlotClass
    return [SlotClass(c, pre, frozenset(known_contacts if pre is phrases["contact"] else known_appliances))
            for c, pre in bias_classes(names, phrases)]


class SlotLexicon:
    """What gated fusion and slot rescoring take from the training transcripts: the phrases a
    slot follows (slot_phrases), the contacts and appliances the recognizer knows, and its
    vocabulary."""

    def __init__(self, corpus_dir, records=None):
        records = records if records is not None else _train_slots(corpus_dir)
        self.phrases = slot_phrases(corpus_dir, records=records)
        contacts, appliances = train_counts(corpus_dir, records)
        self.known_contacts, self.known_appliances = frozenset(contacts), frozenset(appliances)
        self.vocab = frozenset(w for text, _ in records for w in text.split())

    def classes(self, names: list[str]) -> list:
        """A request's list as compiled slot-rescoring classes (build once per request)."""
        from asr.decode.rescore import SlotRescorer
        return SlotRescorer.compile_classes(slot_classes(names, self.phrases, self.known_contacts,
                                                         self.known_appliances))


def rescore_grid(rescorers: dict, sets: dict, tune_rows: list[dict], hyps: dict, classes_of,
                 progress: bool = False) -> list[dict]:
    """Every fusion tuning row x ILM weight, with the dev sets' first-pass hypotheses (`hyps`,
    from grid_wers) rescored: {gated, weight, end_bonus, ilm_weight, tune_names, tune_no_names}.
    Hypotheses the grid decoded alike are rescored once."""
    from tqdm import tqdm
    from asr.metrics import error_rates
    cache: dict = {}
    classes: dict = {}
    out = []
    jobs = [(row, lam) for row in tune_rows for lam in rescorers]
    for row, lam in tqdm(jobs, desc="tune slot rescoring (dev voices)", unit="weight", file=sys.stderr,
                         disable=not progress, leave=False):
        new = dict(row, ilm_weight=lam)
        for n in ("tune_names", "tune_no_names"):
            texts = []
            for i, (r, h) in enumerate(zip(sets[n], hyps[(row["gated"], row["weight"], row["end_bonus"], n)])):
                key = (lam, n, i, h.tokens, h.token_frames)
                if key not in cache:
                    if (n, i) not in classes:
                        classes[(n, i)] = classes_of(r["list"])
                    cache[key] = rescorers[lam].rescore(r["enc"], h, classes[(n, i)]).text
                texts.append(cache[key])
            new[n] = error_rates([r["text"] for r in sets[n]], texts)["wer"]
        out.append(new)
    return out


def check_reserve(beam: int, reserve: int | None, source: str = "reserve") -> int:
    """The unbiased reserve for `beam` (None: half the beam, rounded down); ConfigError names
    `source` and the allowed range."""
    from azsim.errors import ConfigError
    if reserve is None:
        return beam // 2
    if isinstance(reserve, bool) or not isinstance(reserve, int) or not 0 <= reserve < beam:
        raise ConfigError(f"{source}: {reserve!r}; allowed: an integer in [0, {beam - 1}] (below the beam width)")
    return reserve


def decode_best(model, enc, scorer, beam, reserve: int = 0):
    """(best hypothesis, reduced to its tokens and token frames; seconds taken). `reserve`:
    beam places kept for the unbiased best (asr.decode.beam), when there is a scorer."""
    from asr.decode import BeamSearch
    from asr.decode.hyp import Hypothesis
    t0 = time.perf_counter()
    s = BeamSearch(model, beam, scorer=scorer, reserve=reserve)   # without a scorer it keeps no reserve
    s.advance(enc)
    h = s.nbest()[0]
    return Hypothesis(h.tokens, h.token_frames), time.perf_counter() - t0


def decode(model, enc, scorer, beam, reserve: int = 0):
    h, sec = decode_best(model, enc, scorer, beam, reserve)
    return h.text, sec


def name_recall(rows, hyps) -> float | None:
    hits = total = 0
    for r, h in zip(rows, hyps):
        for n in r["names"]:
            total += 1
            hits += f" {n} " in f" {h} "
    return hits / total if total else None


@threadpool_limits.wrap(limits=1, user_api="blas")     # module doc: decoding
def run(quick: bool = False, model=None, n_test: int | None = None, n_tune: int | None = None,
        beam: int = 4, seed: int = 0, corpus=None, config=None, neural=None, progress: bool = True,
        weights=None, curve: bool = False, ilm_weights=None, reserve: int | None = None) -> dict:
    from tqdm import tqdm
    from asr.decode.biasing import BiasList
    from asr.metrics import error_rates, utterance_word_errors

    reserve = check_reserve(beam, reserve)
    sizes = C.sizes(quick, QUICK, FULL, {"n_test": 1, "n_tune": 1}, n_test=n_test, n_tune=n_tune)
    grid = WEIGHTS if weights is None else parse_weights(weights, "weights")
    ilm_weights = ILM_WEIGHTS if ilm_weights is None else parse_ilm_weights(ilm_weights, "ilm_weights")
    clock = C.Clock()
    model_path = C.resolve_model(model)
    # only the corpus's config and cache folder: the training transcripts are planned, not read
    corpus_dir = C.corpus_dir_for(model_path, corpus, config, subsets=())
    fm = C.load_float(model_path)
    records = _train_slots(corpus_dir)
    sets, name_counts = build_sets(corpus_dir, sizes["n_test"], sizes["n_tune"], seed, progress, records)
    t_sets = clock()
    pool = distractor_pool(seed, NOVEL_APPLIANCES)
    for k, name in enumerate(("names", "no_names", "tune_names", "tune_no_names")):
        for i, r in enumerate(sets[name]):
            r["enc"] = fm.encode(r["feats"], fm.encoder_init())[0]
            rng = np.random.default_rng([seed, 51, k, i])
            r["list"] = bias_list(r["names"], LIST_SIZE, pool, rng)
            r["list_large"] = bias_list(r["names"], LARGE_LIST_SIZE, pool, rng)

    # gated fusion and slot rescoring act after the same phrases (slot_phrases)
    lexicon = SlotLexicon(corpus_dir, records)
    prefixes = lexicon.phrases

    def compile_list(names, w, eb, gated):
        if gated:
            return BiasList.compile_classes(bias_classes(names, prefixes), w, end_bonus=eb)
        return BiasList.compile(names, w, end_bonus=eb)

    # --- tune the boost weight on the dev-voice sets, for plain and prefix-gated fusion
    tune_hyps: dict = {}
    tune_rows = grid_wers(fm, sets, ("tune_names", "tune_no_names"), grid, compile_list, beam,
                          "tune boost weights (dev voices)", progress, hyps=tune_hyps, reserve=reserve)
    base_tune = {name: set_wer(fm, sets[name], lambda r: None, beam) for name in ("tune_names", "tune_no_names")}
    best_of = {g: pick_weight([r for r in tune_rows if r["gated"] == g], base_tune) for g in (False, True)}
    best = best_of[False]
    best_w, best_eb = best["weight"], best["end_bonus"]
    gw, geb = best_of[True]["weight"], best_of[True]["end_bonus"]

    # --- slot rescoring after fusion: fusion weight and ILM weight tuned together, same rule
    from asr.decode.rescore import SlotRescorer
    rescorers = {lam: SlotRescorer(fm, lexicon.vocab, ilm_weight=lam) for lam in ilm_weights}
    rescore_rows = rescore_grid(rescorers, sets, tune_rows, tune_hyps, lexicon.classes, progress)
    rs_best = {g: pick_weight([r for r in rescore_rows if r["gated"] == g], base_tune) for g in (False, True)}

    # --- the test sets: baseline, shallow fusion (LIST_SIZE and LARGE_LIST_SIZE names), each
    # also followed by slot rescoring. cond -> (gated, weight, end bonus, list key, ILM weight)
    spec = {"none": None}
    for tag, gated, (w, eb) in (("sf", False, (best_w, best_eb)), ("sf-prefix", True, (gw, geb))):
        for size, key in ((LIST_SIZE, "list"), (LARGE_LIST_SIZE, "list_large")):
            spec[f"{tag}-{size}"] = (gated, w, eb, key, None)
    for tag, gated in (("sf-rescore", False), ("sf-prefix-rescore", True)):
        r = rs_best[gated]
        for size, key in ((LIST_SIZE, "list"), (LARGE_LIST_SIZE, "list_large")):
            spec[f"{tag}-{size}"] = (gated, r["weight"], r["end_bonus"], key, r["ilm_weight"])
    conds = tuple(spec)
    results = {}
    per_utt = {}     # set -> condition -> (word errors, reference words) per utterance
    rescore_stats = {}
    for name in ("names", "no_names"):
        rows = sets[name]
        hyps = {c: [] for c in conds}
        secs = {c: 0.0 for c in conds}
        compile_s = 0.0
        classes_s = {"list": 0.0, "list_large": 0.0}
        changed = {c: 0 for c in conds}
        for r in tqdm(rows, desc=f"biasing {name}", unit="utt", file=sys.stderr,
                      disable=not progress, leave=False):
            first = {}     # (gated, weight, end bonus, list key) -> (best hypothesis, seconds)
            slot_lists = {}   # list key -> compiled slot-rescoring classes
            for c in conds:
                sp = spec[c]
                if sp is None:
                    text, sec = decode(fm, r["enc"], None, beam)
                else:
                    gated, w, eb, key, lam = sp
                    k = (gated, w, eb, key)
                    if k not in first:
                        t0 = time.perf_counter()
                        scorer = compile_list(r[key], w, eb, gated)
                        t_compile = time.perf_counter() - t0
                        if c in (f"sf-{LIST_SIZE}", f"sf-{LARGE_LIST_SIZE}"):
                            compile_s += t_compile
                        first[k] = decode_best(fm, r["enc"], scorer, beam, reserve)
                    best_hyp, sec = first[k]
                    text = best_hyp.text
                    if lam is not None:
                        if key not in slot_lists:   # per request, like the automaton: not in decode time
                            t0 = time.perf_counter()
                            slot_lists[key] = lexicon.classes(r[key])
                            classes_s[key] += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        out = rescorers[lam].rescore(r["enc"], best_hyp, slot_lists[key])
                        sec += time.perf_counter() - t0
                        text = out.text
                        changed[c] += out.changed
                hyps[c].append(text)
                secs[c] += sec
        refs = [r["text"] for r in rows]
        per_utt[name] = {c: utterance_word_errors(refs, hyps[c]) for c in conds}
        frames = sum(r["enc"].shape[0] for r in rows)
        results[name] = {c: {**error_rates(refs, hyps[c]), "name_recall": name_recall(rows, hyps[c]),
                             "decode_ms_per_utt": 1e3 * secs[c] / len(rows),
                             "decode_ms_per_frame": 1e3 * secs[c] / frames,
                             "examples": [{"ref": a, "hyp": b} for a, b in list(zip(refs, hyps[c]))[:3]]}
                         for c in conds}
        results[name]["compile_ms_per_request"] = 1e3 * compile_s / len(rows) / 2
        results[name]["slot_classes_ms_per_request"] = {k: 1e3 * v / len(rows) for k, v in classes_s.items()}
        rescore_stats[name] = {c: changed[c] for c in conds if spec[c] and spec[c][4] is not None}

    neural_result = None
    if neural is not False:
        from azsim.errors import ModelError
        try:
            neural_result = evaluate_neural(
                sets, model_path, beam, path=neural, progress=progress,
                fusion=lambda names, w, eb: compile_list(names, w, eb, True),
                fusion_label=" after slot phrases", weights=grid, reserve=reserve)
        except (ImportError, FileNotFoundError, ModelError) as err:   # no usable file: the row says why
            neural_result = {"skipped": f"{type(err).__name__}: {err}"}

    curve_rows = tradeoff_curve(fm, sets, grid, compile_list, beam, progress, reserve) if curve else None

    rows = []
    base_names = results["names"]["none"]["wer"]
    base_none = results["no_names"]["none"]["wer"]
    base_ms = results["names"]["none"]["decode_ms_per_utt"] + results["no_names"]["none"]["decode_ms_per_utt"]
    labels = {"none": "no biasing"}
    for size in (LIST_SIZE, LARGE_LIST_SIZE):
        labels[f"sf-{size}"] = f"shallow fusion, {size} names"
        labels[f"sf-prefix-{size}"] = f"  after slot phrases, {size} names"
        labels[f"sf-rescore-{size}"] = f"shallow fusion + slot rescoring, {size} names"
        labels[f"sf-prefix-rescore-{size}"] = f"  after slot phrases + slot rescoring, {size} names"
    row_of = {}
    for c in conds:
        n, o = results["names"][c], results["no_names"][c]
        ms = n["decode_ms_per_utt"] + o["decode_ms_per_utt"]
        sp = spec[c]
        w = None if sp is None else f"{sp[1]:g}/{sp[2]:g}" + ("" if sp[4] is None else f", ilm {sp[4]:g}")
        row_of[c] = {"method": labels[c], "weight": w,
                     "wer_names": n["wer"], "wer_no_names": o["wer"], "name_recall": n["name_recall"],
                     "rel_wer_reduction_names": (base_names - n["wer"]) / base_names if base_names else None,
                     "abs_wer_change_no_names": o["wer"] - base_none,
                     "decode_ms_per_utt": ms / 2, "decode_time_ratio": ms / base_ms,
                     **({} if c == "none" else _intervals(per_utt, c))}
        rows.append(row_of[c])
    if neural_result and "rows" in neural_result:
        for r in neural_result["rows"]:
            r["rel_wer_reduction_names"] = ((base_names - r["wer_names"]) / base_names
                                            if base_names and r.get("wer_names") is not None else None)
            r["abs_wer_change_no_names"] = r["wer_no_names"] - base_none
            r["decode_time_ratio"] = (2 * r["decode_ms_per_utt"] / base_ms
                                      if r.get("decode_ms_per_utt") is not None else None)
            rows.append(r)

    def goals_of(sf, sf_large=None):
        g = {"names_rel_wer_reduction_ge_30pct": bool(sf["rel_wer_reduction_names"] is not None
                                                      and sf["rel_wer_reduction_names"] >= 0.30),
             "no_names_abs_wer_increase_le_0.2": bool(sf["abs_wer_change_no_names"] <= 0.002)}
        if sf_large is not None:     # the neural rows decode LIST_SIZE names only
            g["large_list_extra_time_le_20pct"] = bool(sf_large["decode_time_ratio"] <= 1.20)
        return g

    goals = {method: goals_of(row_of[f"{tag}-{LIST_SIZE}"], row_of[f"{tag}-{LARGE_LIST_SIZE}"])
             for method, tag in (("shallow fusion", "sf"), ("shallow fusion after slot phrases", "sf-prefix"),
                                 ("shallow fusion + slot rescoring", "sf-rescore"),
                                 ("shallow fusion after slot phrases + slot rescoring", "sf-prefix-rescore"))}
    for r in rows[len(conds):]:
        if r.get("goal_name") and r.get("wer_names") is not None:
            goals[r["goal_name"]] = goals_of(r)
    return {"experiment": "biasing", "quick": quick, "model": str(model_path), "corpus": str(corpus_dir),
            "beam": beam, "reserve": reserve, "seed": seed, "n_test": sizes["n_test"], "n_tune": sizes["n_tune"],
            "list_size": LIST_SIZE, "large_list_size": LARGE_LIST_SIZE, "names": name_counts,
            "tuning": {"weights": tune_rows, "baseline": base_tune, "chosen_weight": best_w,
                       "chosen_end_bonus": best_eb, "chosen_weight_prefix": gw,
                       "chosen_end_bonus_prefix": geb, "rescoring": rescore_rows,
                       "chosen_rescoring": {"plain": rs_best[False], "after_slot_phrases": rs_best[True]}},
            "rescoring_changed_utterances": rescore_stats,
            "slot_phrases": lexicon.phrases,
            "rows": rows, "details": results, "neural": neural_result, "goals": goals, "curve": curve_rows,
            "goal_note": "'0.2 absolute WER' read as 0.2 percentage points (0.002)",
            "seconds": {"sets": t_sets, "total": clock()}}


def _ci_text(ci, scale: float, fmt: str) -> str | None:
    return None if not ci else f"{format(ci[0] * scale, fmt)}..{format(ci[1] * scale, fmt)}"


def format_tables(r: dict) -> str:
    rows = [dict(row, rel_ci_text=_ci_text(row.get("rel_ci95"), 100, ".0f"),
                 change_ci_text=_ci_text(row.get("change_ci95"), 100, "+.2f")) for row in r["rows"]]
    t1 = C.format_table(rows, [
        ("method", "method", "s"), ("weight", "weight/end", "s"),
        ("wer_names", "WER names", ".1%"), ("rel_wer_reduction_names", "rel. reduction", ".1%"),
        ("rel_ci_text", "95% CI, %", "s"), ("name_recall", "name recall", ".1%"),
        ("wer_no_names", "WER no names", ".1%"), ("abs_wer_change_no_names", "change", "+.2%"),
        ("change_ci_text", "95% CI, points", "s"),
        ("decode_ms_per_utt", "decode ms/utt", ".1f"), ("decode_time_ratio", "time x", ".2f")],
        f"Context biasing: {r['n_test']} name-bearing and {r['n_test']} name-free test utterances "
        f"(test voices), beam {r['beam']}"
        + (f", {r['reserve']} of its places kept for the unbiased best" if r.get("reserve") else ""))
    t2 = C.format_table(r["tuning"]["weights"], [
        ("gated", "after slot phrases", "s"), ("weight", "weight", "g"), ("end_bonus", "end bonus", "g"),
        ("tune_names", "WER names (dev voices)", ".1%"),
        ("tune_no_names", "WER no names (dev voices)", ".1%")],
        f"Boost weight tuning (baseline {r['tuning']['baseline']['tune_names']:.1%} / "
        f"{r['tuning']['baseline']['tune_no_names']:.1%}; chosen {r['tuning']['chosen_weight']:g} per token, "
        f"{r['tuning']['chosen_end_bonus']:g} per completed name; after slot phrases "
        f"{r['tuning']['chosen_weight_prefix']:g} / {r['tuning']['chosen_end_bonus_prefix']:g})")
    parts = [t1, t2]
    rs = r["tuning"].get("rescoring")
    if rs:
        lams = sorted({x["ilm_weight"] for x in rs})
        pivot = {}
        for x in rs:
            k = (x["gated"], x["weight"], x["end_bonus"])
            pivot.setdefault(k, {"gated": x["gated"], "weight": x["weight"], "end_bonus": x["end_bonus"]})
            pivot[k][f"ilm {x['ilm_weight']:g}"] = f"{x['tune_names']:.1%} / {x['tune_no_names']:.1%}"
        ch = r["tuning"]["chosen_rescoring"]
        parts.append(C.format_table(list(pivot.values()), [
            ("gated", "after slot phrases", "s"), ("weight", "weight", "g"), ("end_bonus", "end bonus", "g"),
            *[(f"ilm {lam:g}", f"ILM {lam:g}: names / no names", "s") for lam in lams]],
            "Slot rescoring tuning, WER on the dev voices after fusion at each weight (chosen: plain "
            + ", after slot phrases ".join(f"{c['weight']:g} / {c['end_bonus']:g}, ILM weight {c['ilm_weight']:g}"
                                            for c in (ch["plain"], ch["after_slot_phrases"])) + ")"))
        ch_utts = r.get("rescoring_changed_utterances") or {}
        if ch_utts:
            d = r["details"]
            parts.append(
                f"slot rescoring changed, of {r['n_test']} name-bearing / {r['n_test']} name-free test "
                f"utterances: " + "; ".join(
                    f"{label}: {ch_utts['names'][c]} / {ch_utts['no_names'][c]}"
                    for c, label in ((f"sf-rescore-{LIST_SIZE}", "plain"),
                                            (f"sf-prefix-rescore-{LIST_SIZE}", "after slot phrases")))
                + f" ({LIST_SIZE} names). A request's slot classes take "
                f"{d['names']['slot_classes_ms_per_request']['list']:.1f} ms to build with {LIST_SIZE} names, "
                f"{d['names']['slot_classes_ms_per_request']['list_large']:.1f} ms with {LARGE_LIST_SIZE} "
                f"(the automaton: {d['names']['compile_ms_per_request']:.1f} ms, mean of both sizes); neither is "
                f"in the decode time")
    n = r["names"]
    parts += [
             f"names: {n['contacts_rare']} contacts seen <= {RARE_MAX_TRAIN_COUNT}x in training "
             f"({n['contacts_absent']} never), {n['appliances_rare']} rarest appliances "
             f"(train counts {min(n['rare_appliance_train_counts'].values())}-"
             f"{max(n['rare_appliance_train_counts'].values())}), {n['appliances_absent']} absent appliances"]
    sp = r.get("slot_phrases")
    if sp:
        parts.append(f"slot phrases, after which gated fusion boosts and slot rescoring acts (in training, a slot "
                     f"follows each at least half the time): contacts {', '.join(sp['contact'])}; appliances {', '.join(sp['appliance'])}")
    if r.get("curve"):
        parts.append(C.format_table(r["curve"], [
            ("gated", "after slot phrases", "s"), ("weight", "weight", "g"), ("end_bonus", "end bonus", "g"),
            ("wer_names", "WER names", ".1%"), ("rel_wer_reduction_names", "rel. reduction", ".1%"),
            ("wer_no_names", "WER no names", ".1%"), ("abs_wer_change_no_names", "change", "+.2%")],
            f"Trade-off on the test sets, {LIST_SIZE} names, every tuning weight (--curve; for reading "
            f"only: the rows above use the weights chosen on the dev voices)"))
    for method, g in r["goals"].items():
        parts.append(f"goals, {method}: " + ", ".join(f"{k}={'met' if v else 'NOT met'}" for k, v in g.items())
                     + f" ({r['goal_note']})")
    nr = r.get("neural")
    if nr and "chip_cost" in nr:
        parts.append(C.format_table(nr["chip_cost"], [
            ("part", "neural biasing on the chip", "s"), ("macs", "MACs", ",d"),
            ("cycles", "cycles", ",d"), ("weight_bytes", "weight B", ",d"),
            ("offchip_bytes", "off-chip B", ",d")], nr.get("chip_note", "")))
        nt = nr.get("fusion_tuning")
        if nt:
            parts.append(f"neural biasing + fusion after slot phrases: weight tuned on the dev voices as above, "
                         f"chosen {nt['chosen_weight']:g} / {nt['chosen_end_bonus']:g} (neural alone there: "
                         f"{nt['baseline']['tune_names']:.1%} names, {nt['baseline']['tune_no_names']:.1%} no names)")
    elif nr and "skipped" in nr:
        parts.append(f"neural biasing: not run ({nr['skipped']})")
    parts.append(f"took {r['seconds']['total']:.0f} s")
    return "\n\n".join(parts)


def evaluate_neural(sets, model_path, beam, path=None, progress=True, fusion=None,
                    fusion_label: str = "", weights=(), reserve: int = 0) -> dict:
    """The neural-biasing rows (asr.decode.neural_bias, the file at `path` trained on the model
    at `model_path`): WER with the list bound per request, a control with the spoken names
    taken out of the list, the jointly trained RNN-T alone, the neural model with shallow fusion
    on top when `fusion` ((list, weight, end bonus) -> TokenScorer) is given, its weight picked
    from `weights` on the dev-voice tuning sets as for fusion alone (pick_weight), and the
    module's chip cost."""
    from tqdm import tqdm
    from asr.decode.neural_bias import HEADS, NeuralBias, chip_cost, default_path
    from asr.metrics import error_rates
    nb = NeuralBias(path or default_path(), model_path)
    if nb.own_encoder:   # its encoder was trained too: its own encoder outputs for every row
        sets = {name: [dict(r, enc=nb.base.encode(r["feats"], nb.base.encoder_init())[0]) for r in rows]
                for name, rows in sets.items()}

    def wer(rows, hyps) -> float:
        return error_rates([r["text"] for r in rows], hyps)["wer"]

    def run(rows, lists, desc, fuse=None):
        hyps, secs = [], 0.0
        for r, lst in tqdm(list(zip(rows, lists)), desc=desc, unit="utt", file=sys.stderr,
                           disable=not progress, leave=False):
            text, s = decode(nb.bind(lst), r["enc"], None if fuse is None else fuse(lst), beam, reserve)
            hyps.append(text)
            secs += s
        return hyps, secs

    results = {}
    for name in ("names", "no_names"):
        rows = sets[name]
        hyps, secs = run(rows, [r["list"] for r in rows], f"neural bias {name}")
        results[name] = {**error_rates([r["text"] for r in rows], hyps),
                         "decode_ms_per_utt": 1e3 * secs / len(rows), "hyps": hyps}
    # Control: each names-utterance's list with its spoken names swapped for other distractors.
    # What remains of the gain there is not biasing toward the spoken name.
    rows = sets["names"]
    ctrl_lists = []
    for r in rows:
        spoken = set(r["names"])
        others = [n for n in sets["no_names"][0]["list"] + r["list_large"] if n not in spoken]
        ctrl_lists.append(list(dict.fromkeys([n for n in r["list"] if n not in spoken] + others))[:len(r["list"])])
    ctrl, _ = run(rows, ctrl_lists, "neural bias control")
    own = None
    if nb.base is not nb.shipped:
        # the jointly trained RNN-T without its pointer: what the list itself adds
        own = {name: set_wer(nb.base, sets[name], lambda r: None, beam) for name in ("names", "no_names")}
    label = (f"{HEADS}-head TCPGen, "
             + ("joint with the whole RNN-T" if nb.own_encoder
                else "joint with pred+joint nets" if nb.base is not nb.shipped else "base frozen"))
    out = [{"method": f"neural biasing, {label} ({nb.meta['steps']} steps, {nb.meta['minutes']:.1f} min)",
            "goal_name": "neural biasing", "weight": None, "wer_names": results["names"]["wer"],
            "wer_no_names": results["no_names"]["wer"],
            "name_recall": name_recall(sets["names"], results["names"]["hyps"]),
            "decode_ms_per_utt": (results["names"]["decode_ms_per_utt"]
                                  + results["no_names"]["decode_ms_per_utt"]) / 2},
           {"method": "  control: spoken names left out of the list",
            "weight": None, "wer_names": wer(rows, ctrl),
            "wer_no_names": results["no_names"]["wer"], "name_recall": name_recall(rows, ctrl),
            "decode_ms_per_utt": None}]
    if own is not None:
        out.append({"method": "  its jointly trained RNN-T alone (no list)", "weight": None,
                    "wer_names": own["names"], "wer_no_names": own["no_names"], "decode_ms_per_utt": None})
    tuning = None
    if fusion is not None:
        def tune_wer(name, fuse):
            rows = sets[name]
            return wer(rows, run(rows, [r["list"] for r in rows], f"neural tuning {name}", fuse)[0])

        base_tune = {name: tune_wer(name, None) for name in ("tune_names", "tune_no_names")}
        tune_rows = [{"weight": w, "end_bonus": eb,
                      **{name: tune_wer(name, lambda lst, w=w, eb=eb: fusion(lst, w, eb))
                         for name in ("tune_names", "tune_no_names")}} for w, eb in weights]
        best = pick_weight(tune_rows, base_tune)
        w, eb = best["weight"], best["end_bonus"]
        tuning = {"weights": tune_rows, "baseline": base_tune, "chosen_weight": w, "chosen_end_bonus": eb}
        fuse = lambda lst: fusion(lst, w, eb)   # noqa: E731
        fused = {name: run(sets[name], [r["list"] for r in sets[name]], f"neural + fusion {name}", fuse)
                 for name in ("names", "no_names")}
        out.append({"method": f"  with shallow fusion{fusion_label}", "weight": f"{w:g}/{eb:g}",
                    "goal_name": f"neural biasing with shallow fusion{fusion_label}",
                    "wer_names": wer(sets["names"], fused["names"][0]),
                    "wer_no_names": wer(sets["no_names"], fused["no_names"][0]),
                    "name_recall": name_recall(sets["names"], fused["names"][0]),
                    "decode_ms_per_utt": 1e3 * (fused["names"][1] / len(sets["names"])
                                                + fused["no_names"][1] / len(sets["no_names"])) / 2})
    cost = chip_cost(nb, n_names=len(sets["names"][0]["list"]) if sets["names"] else 100)
    return {"rows": out, "meta": nb.meta, "fusion_tuning": tuning, "chip_cost": cost["rows"], "chip_note": cost["note"],
            "memory_bytes_per_request": cost["memory_bytes_per_request"]}


# ------------------------------------------------------------------ CLI glue (azsim.cli_experiment)
def add_arguments(p) -> None:
    p.add_argument("--model", default=None, help="float .npz export (default: models/shipped/model.npz)")
    p.add_argument("--n-test", type=int, default=None,
                   help=f"utterances per test set (default {FULL['n_test']}, --quick {QUICK['n_test']})")
    p.add_argument("--n-tune", type=int, default=None,
                   help=f"utterances per weight-tuning set (default {FULL['n_tune']}, --quick {QUICK['n_tune']})")
    p.add_argument("--beam", type=int, default=4, help="beam width (default: 4)")
    p.add_argument("--reserve", type=int, default=None,
                   help="beam places kept for the best hypotheses by the model's own score while "
                        "fusing (asr.decode.beam; default: half the beam, rounded down; 0: plain fusion)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    p.add_argument("--corpus", default=None, help="a built corpus directory (default: the model's)")
    p.add_argument("--config", default=None, help="config whose [data] names the corpus")
    p.add_argument("--neural", default=None,
                   help="neural-biasing model file (default: models/neural_bias/model.npz when present)")
    p.add_argument("--no-neural", action="store_true", help="skip the neural-biasing row")
    p.add_argument("--weights", default=None,
                   help="boost weights tried on the dev voices, WEIGHT[/END_BONUS] pairs, e.g. "
                        "'0.5/0,0.5/1,0.75' (default: " + ",".join(f"{w:g}/{e:g}" for w, e in WEIGHTS) + ")")
    p.add_argument("--ilm-weights", default=None,
                   help="internal-LM weights tried for slot rescoring on the dev voices, e.g. '0.5,1' "
                        "(default: " + ",".join(f"{w:g}" for w in ILM_WEIGHTS) + ")")
    p.add_argument("--curve", action="store_true",
                   help="also decode the test sets at every weight (the names / no-names trade-off)")


def run_args(args) -> dict:
    from azsim.errors import ConfigError
    if args.beam < 1:
        raise ConfigError(f"--beam: {args.beam}; allowed: an integer >= 1")
    check_reserve(args.beam, args.reserve, "--reserve")
    return run(quick=args.quick, model=args.model, n_test=args.n_test, n_tune=args.n_tune, beam=args.beam,
               reserve=args.reserve, seed=args.seed, corpus=args.corpus, config=args.config,
               neural=False if args.no_neural else args.neural, progress=not args.no_progress,
               weights=None if args.weights is None else parse_weights(args.weights), curve=args.curve,
               ilm_weights=None if args.ilm_weights is None else parse_ilm_weights(args.ilm_weights))
