"""`azsim experiment endpointing`: final and speculative end-pointers measured on test
utterances with trailing silence and mid-utterance pauses, on the simulated chip's timeline.

Test audio. Held-out test voices (the corpus's test_clean WAVs). Each utterance gets
LEAD_MS of silence before it, TRAIL_MS after it and, with probability P_PAUSE, one pause of
PAUSE_MS (uniform) inserted at a quiet spot inside the speech (a gap of >= 30 ms at least
200 ms from either end: a word boundary or a stop closure, where people hesitate); then pink
noise SNR_DB below the speech power over the whole signal. The true end of speech is the end
of the last 10 ms frame within 35 dB of the loudest one (before padding), shifted by the
lead and the pause. Everything is drawn from the seed.

End-pointers (asr.decode.endpoint):
- silence-N: final when the best hypothesis has emitted nothing for N ms of confident blanks;
- eoq-logreg / eoq-mlp: a learned end-of-query classifier on the encoder output of each frame,
  trained here on clean training utterances prepared the same way, from the backend's own
  encoder outputs (labels: frames wholly after the known end of speech); its threshold and
  hold are tuned on those training utterances for <= 0.5% cut-offs at the smallest mean delay
  (frame-level, without the search).
The speculative partner of each is the same rule firing SPEC_LEAD_FRAMES frames (210 ms)
earlier (a shorter silence, or a shorter hold).

Timeline. The model runs on the simulated chip (asr.chip.ChipRNNT, int8 PTQ recipe): frame t
arrives at 45 + 30 t ms, and a decision taken on frame t is known when the chip has finished
that frame's encoder, joint and predictor work (its per-frame record). With ``backend="host"``
the float model runs on the host instead and every decision is taken HOST_MS_PER_FRAME after
its frame arrives (a documented constant, not a measurement).

User-perceived latency = the time the downstream response is ready - the true end of speech.
Downstream (not simulated; assumptions with defaults NETWORK_MS, UPLINK_BITS_PER_S and
DOWNSTREAM_MS, which --network-ms, --uplink-kbps and --downstream-ms replace with a user's own
measured figures): a payload reaches the cloud network_ms + bytes / uplink rate after it is
sent, and the response needs downstream_ms of work on the lattice (NLU, fulfilment). Without
speculation that work starts when the final lattice arrives. With speculation it starts when a
speculative lattice arrives; a reset cancels it (the work done until the reset arrives is
wasted), a confirm lets it finish: ready at max(confirm arrival, speculative arrival +
downstream_ms).

A cut-off is a final end-point taken before the true end of speech (the user was still
going to speak). "Speculation right" = the share of speculative end-points later confirmed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from asr.experiments import common as C

LEAD_MS = 0.0                   # the corpus WAVs keep 50 ms before speech; the model never saw more
TRAIL_MS = 1500.0
P_PAUSE = 0.5
PAUSE_MS = (100.0, 500.0)
SNR_DB = 30.0
SPEC_LEAD_FRAMES = 7            # speculative rule fires 7 frames (210 ms) before its final rule
NETWORK_MS = 50.0               # one way, device -> cloud
UPLINK_BITS_PER_S = 1_000_000
DOWNSTREAM_MS = 300.0           # NLU + fulfilment on a lattice
CONFIRM_BYTES = 16
HOST_MS_PER_FRAME = 5.0         # host backend only: compute time charged per frame
MAX_CUTOFF_TUNE = 0.005         # EOQ tuning target on training utterances
SILENCE_FINAL_MS = (450, 600, 750)
QUICK = {"n_test": 100, "n_train": 300}
FULL = {"n_test": 300, "n_train": 1000}


# ------------------------------------------------------------------ data
def prepare(path, rng) -> dict | None:
    """Padded, paused, noisy features of one WAV and its true end of speech (module doc)."""
    from asr.audio import load_wav
    from asr.features import features
    x, rate = load_wav(path)
    if rate != C.RATE_HZ:
        from asr.features import resample_to_16k
        x = resample_to_16k(x, rate)
    b = C.speech_bounds(x)
    if b is None:
        return None
    pause_ms, pause_at_ms = 0.0, None
    if rng.random() < P_PAUSE:
        gaps = C.internal_gaps(x, b)
        length = float(rng.uniform(*PAUSE_MS))
        if gaps:
            pos = gaps[int(rng.integers(len(gaps)))]
            n = int(round(length * C.RATE_HZ / 1000))
            x = np.concatenate([x[:pos], np.zeros(n, np.float32), x[pos:]])
            pause_ms, pause_at_ms = n * 1000.0 / C.RATE_HZ, pos * 1000.0 / C.RATE_HZ + LEAD_MS
    speech = x[b[0]:b[1] + int(round(pause_ms * C.RATE_HZ / 1000))]
    lead = int(LEAD_MS * C.RATE_HZ / 1000)
    trail = int(TRAIL_MS * C.RATE_HZ / 1000)
    y = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(trail, np.float32)])
    noise = C.pink_noise(y.shape[0], rng)
    p_speech = float(np.mean(np.square(speech, dtype=np.float64)))
    y = (y + noise * np.sqrt(p_speech / 10 ** (SNR_DB / 10))).astype(np.float32)
    y = np.clip(y, -1.0, 1.0)
    eos_ms = (lead + b[1]) * 1000.0 / C.RATE_HZ + pause_ms
    sos_ms = (lead + b[0]) * 1000.0 / C.RATE_HZ
    return {"feats": features(y, C.RATE_HZ), "eos_ms": eos_ms, "sos_ms": sos_ms, "pause_ms": pause_ms,
            "pause_at_ms": pause_at_ms, "audio_ms": y.shape[0] * 1000.0 / C.RATE_HZ}


def pick(utts, n, seed, salt):
    rng = np.random.default_rng([seed, salt])
    idx = sorted(rng.choice(len(utts), size=min(n, len(utts)), replace=False).tolist())
    return [utts[i] for i in idx]


def frame_labels(n_frames: int, eos_ms: float) -> np.ndarray:
    """1 for frames that lie wholly after the end of speech (frame t covers [30t, 30t+45] ms)."""
    return (30.0 * np.arange(n_frames) >= eos_ms).astype(np.float32)


# ------------------------------------------------------------------ EOQ classifiers
def first_fire(logits: np.ndarray, logit_thr: float, hold: int, start: int) -> int | None:
    run = 0
    for t in range(start, logits.shape[0]):
        run = run + 1 if logits[t] >= logit_thr else 0
        if run >= hold:
            return t
    return None


def tune(clf, sets, thresholds=(0.5, 0.7, 0.8, 0.9, 0.95), holds=range(1, 31)) -> dict:
    """(threshold, hold) with at most MAX_CUTOFF_TUNE cut-offs and the smallest mean delay,
    on the classifier's frame decisions of training utterances (start: first speech frame)."""
    from asr.decode.endpoint import frame_end_ms
    logits = [clf.decision(s["enc"]) for s in sets]
    best = None
    for thr in thresholds:
        lt = float(np.log(thr / (1 - thr)))
        for k in holds:
            delays, cuts = [], 0
            for s, lg in zip(sets, logits):
                start = int(s["sos_ms"] // 30)
                f = first_fire(lg, lt, k, start)
                t_ms = frame_end_ms(f) if f is not None else s["audio_ms"]
                delays.append(t_ms - s["eos_ms"])
                cuts += t_ms < s["eos_ms"]
            rate = cuts / len(sets)
            if rate <= MAX_CUTOFF_TUNE:
                cand = (float(np.mean(delays)), thr, k, rate)
                if best is None or cand[0] < best[0]:
                    best = cand
                break   # larger holds only add delay at this threshold
    if best is None:
        return {"threshold": 0.95, "hold": max(holds), "train_mean_delay_ms": None, "train_cutoff": None}
    return {"threshold": best[1], "hold": best[2], "train_mean_delay_ms": best[0], "train_cutoff": best[3]}


def train_eoq(fm, corpus_dir, n, seed, progress) -> tuple[dict, dict]:
    from tqdm import tqdm
    from asr.data import corpus as corpus_mod
    from asr.decode.endpoint import EOQClassifier
    utts = [u for u in corpus_mod.load_subset(corpus_dir, "train")
            if u.meta.get("source") == "espeak" and not u.meta.get("aug")]
    utts = pick(utts, n, seed, 11)
    sets = []
    for i, u in enumerate(tqdm(utts, desc="eoq train set", unit="utt", file=sys.stderr,
                               disable=not progress, leave=False)):
        p = prepare(u.path, np.random.default_rng([seed, 12, i]))
        if p is None:
            continue
        p["enc"] = fm.encode(p.pop("feats"), fm.encoder_init())[0]
        sets.append(p)
    split = max(1, int(0.8 * len(sets)))
    fit_sets, held = sets[:split], sets[split:] or sets[:1]

    def xy(ss):
        xs, ys = [], []
        for s in ss:
            start = int(s["sos_ms"] // 30)
            xs.append(s["enc"][start:])
            ys.append(frame_labels(s["enc"].shape[0], s["eos_ms"])[start:])
        return np.concatenate(xs), np.concatenate(ys)

    x, y = xy(fit_sets)
    xh, yh = xy(held)
    clfs, info = {}, {}
    for kind in ("logreg", "mlp"):
        clf = EOQClassifier(kind, hidden=32, seed=seed).fit(x, y, steps=300, lr=0.02)
        acc = float(np.mean((clf.decision(xh) >= 0) == (yh > 0.5)))
        tuned = tune(clf, sets)
        clfs[kind] = (clf, tuned)
        info[kind] = {"frames": int(x.shape[0]), "heldout_frame_accuracy": acc, **tuned}
    info["utterances"] = len(sets)
    return clfs, info


# ------------------------------------------------------------------ traces and replay
def record(model, feats, beam, chip: bool):
    """Run the model frame by frame as the audio arrives; per-frame observations, N-best
    lists and decision times (ms of audio time)."""
    from asr.decode import BeamSearch
    from asr.decode.endpoint import FrameObs, frame_end_ms
    if chip:
        model.start_utterance()
    search = BeamSearch(model, beam)
    state = model.encoder_init()
    obs, nbests = [], []
    for t in range(feats.shape[0]):
        enc, state = model.encode(feats[t:t + 1], state)
        search.advance(enc)
        obs.append(FrameObs.from_search(t, search))
        nbests.append(search.nbest())
    if chip:
        u = model.utt
        decision = [1e3 * (f.end_cycle - u.base_cycle) / model.clock_hz for f in u.frames]
        chip_rec = model.finish_utterance()
    else:
        decision = [frame_end_ms(t) + HOST_MS_PER_FRAME for t in range(feats.shape[0])]
        chip_rec = None
    return obs, nbests, np.asarray(decision), chip_rec


def replay(machine, obs, nbests):
    from asr.decode.lattice import Lattice
    machine.reset()
    for o in obs:
        machine.step(o, lambda t=o.t: Lattice.from_hypotheses(nbests[t], 30.0))
        if machine.done:
            break
    else:
        machine.finish(obs[-1], lambda: Lattice.from_hypotheses(nbests[-1], 30.0))
    return list(machine.events)


@dataclass(frozen=True)
class Downstream:
    """The off-device side (module doc): assumptions, not simulated; a user with measured
    figures for their own network and NLU passes them (--network-ms, --downstream-ms,
    --uplink-kbps)."""
    network_ms: float = NETWORK_MS
    downstream_ms: float = DOWNSTREAM_MS
    uplink_bits_per_s: float = UPLINK_BITS_PER_S

    def __post_init__(self):
        from azsim.errors import ConfigError
        for name, v, lo, hi in (("--network-ms", self.network_ms, 0.0, 10_000.0),
                                ("--downstream-ms", self.downstream_ms, 0.0, 60_000.0),
                                ("--uplink-kbps", self.uplink_bits_per_s / 1e3, 1.0, 10_000_000.0)):
            if not lo <= v <= hi:
                raise ConfigError(f"{name}: {v:g}; allowed: [{lo:g}, {hi:g}]")


def send_ms(n_bytes: int, ds: Downstream = Downstream()) -> float:
    return ds.network_ms + 1e3 * 8.0 * n_bytes / ds.uplink_bits_per_s


def outcome(events, decision_ms, eos_ms, ds: Downstream = Downstream()) -> dict:
    """Downstream timing of one utterance's events (module doc)."""
    job, wasted, ready, final_ev = None, 0.0, None, None
    spec_times = []
    for ev in events:
        t_dec = float(decision_ms[ev.frame])
        if ev.kind == "speculate":
            job = t_dec + send_ms(ev.lattice.size_bytes(), ds)
            spec_times.append(ev.time_ms)
        elif ev.kind == "reset":
            if job is not None:
                wasted += float(np.clip(t_dec + ds.network_ms - job, 0.0, ds.downstream_ms))
            job = None
        elif ev.kind == "confirm":
            ready = max(t_dec + send_ms(CONFIRM_BYTES, ds), job + ds.downstream_ms)
            final_ev = ev
        elif ev.kind == "final":
            ready = t_dec + send_ms(ev.lattice.size_bytes(), ds) + ds.downstream_ms
            final_ev = ev
    return {"final": final_ev, "ready_ms": ready, "upl_ms": ready - eos_ms, "wasted_ms": wasted,
            "n_spec": sum(e.kind == "speculate" for e in events),
            "n_reset": sum(e.kind == "reset" for e in events),
            "confirmed": final_ev is not None and final_ev.kind == "confirm",
            "first_spec_ms": spec_times[0] if spec_times else None}


# ------------------------------------------------------------------ the experiment
def _endpointers(clfs):
    from asr.decode.endpoint import ClassifierEndpointer, SilenceEndpointer
    pairs = {}
    for ms in SILENCE_FINAL_MS:
        pairs[f"silence-{ms}"] = (lambda ms=ms: SilenceEndpointer(ms),
                                  lambda ms=ms: SilenceEndpointer(ms - 30 * SPEC_LEAD_FRAMES))
    for kind, (clf, tuned) in clfs.items():
        thr, k = tuned["threshold"], tuned["hold"]
        pairs[f"eoq-{kind}"] = (lambda clf=clf, thr=thr, k=k: ClassifierEndpointer(clf, thr, k),
                                lambda clf=clf, thr=thr, k=k: ClassifierEndpointer(
                                    clf, thr, max(1, k - SPEC_LEAD_FRAMES)))
    return pairs


def run(quick: bool = False, model=None, backend: str = "chip", recipe=None, preset: str = "default",
        n_test: int | None = None, n_train: int | None = None, beam: int = 4, seed: int = 0,
        corpus=None, config=None, progress: bool = True, downstream: Downstream = Downstream()) -> dict:
    from tqdm import tqdm
    from asr.data import corpus as corpus_mod
    from asr.decode.endpoint import EndpointStateMachine, uplink_bytes
    from asr.metrics import error_rates
    from azsim.errors import ConfigError

    if backend not in ("chip", "host"):
        raise ConfigError(f"--backend: {backend!r}; allowed: chip, host")
    sizes = C.sizes(quick, QUICK, FULL, {"n_test": 1, "n_train": 5}, n_test=n_test, n_train=n_train)
    clock = C.Clock()
    model_path = C.resolve_model(model)
    corpus_dir = C.corpus_dir_for(model_path, corpus, config)
    fm = C.load_float(model_path)
    if backend == "chip":
        runner, rec = C.load_chip(fm, model_path, corpus_dir, recipe, preset)
        backend_desc = f"chip ({rec.name} PTQ, preset {preset}): decisions on the chip's per-frame timeline"
    else:
        runner = fm
        backend_desc = (f"host float model; decision time = frame arrival + {HOST_MS_PER_FRAME:g} ms "
                        f"per frame (documented constant, not a chip measurement)")
    t_setup = clock()
    # the classifiers learn from the encoder outputs they will see: the backend's own
    clfs, eoq_info = train_eoq(runner, corpus_dir, sizes["n_train"], seed, progress)
    t_train = clock() - t_setup
    pairs = _endpointers(clfs)
    tests = pick(corpus_mod.load_subset(corpus_dir, "test_clean"), sizes["n_test"], seed, 21)
    per = {name: [] for name in pairs}
    refs, chip_latency = [], []
    n_paused = 0
    for i, u in enumerate(tqdm(tests, desc="endpointing", unit="utt", file=sys.stderr,
                               disable=not progress, leave=False)):
        p = prepare(u.path, np.random.default_rng([seed, 22, i]))
        if p is None:
            continue
        n_paused += p["pause_ms"] > 0
        obs, nbests, decision, chip_rec = record(runner, p["feats"], beam, backend == "chip")
        if chip_rec is not None:
            chip_latency.append(float(np.mean(decision - (45.0 + 30.0 * np.arange(len(decision))))))
        refs.append(u.text)
        for name, (make_final, make_spec) in pairs.items():
            with_spec = outcome(replay(EndpointStateMachine(make_final(), make_spec()), obs, nbests),
                                decision, p["eos_ms"], downstream)
            alone = outcome(replay(EndpointStateMachine(make_final()), obs, nbests), decision, p["eos_ms"],
                            downstream)
            fin = alone["final"]
            lat = fin.lattice
            up = uplink_bytes(nbests[fin.frame], lat, fin.time_ms / 1000.0)
            per[name].append({
                "eos_ms": p["eos_ms"], "pause_ms": p["pause_ms"],
                "final_delay_ms": fin.time_ms - p["eos_ms"],
                "cutoff": fin.time_ms < p["eos_ms"],
                "spec_delay_ms": (with_spec["first_spec_ms"] - p["eos_ms"]) if with_spec["first_spec_ms"] is not None else None,
                "n_spec": with_spec["n_spec"], "n_reset": with_spec["n_reset"],
                "confirmed": with_spec["confirmed"], "wasted_ms": with_spec["wasted_ms"],
                "upl_nospec_ms": alone["upl_ms"], "upl_spec_ms": with_spec["upl_ms"],
                "text": fin.text, **up})
    if not refs:
        raise ConfigError(f"{corpus_dir}: no usable test utterances")
    rows = []
    for name, rs in per.items():
        n = len(rs)
        specs = sum(r["n_spec"] for r in rs)
        ok = [r for r in rs if not r["cutoff"]]
        er = error_rates(refs, [r["text"] for r in rs])
        rows.append({
            "endpointer": name, "n": n,
            "final_delay_ms": C.mean(r["final_delay_ms"] for r in ok),
            "final_delay_p90_ms": C.pct([r["final_delay_ms"] for r in ok], 90),
            "spec_delay_ms": C.mean(r["spec_delay_ms"] for r in ok if r["spec_delay_ms"] is not None),
            "spec_delay_p90_ms": C.pct([r["spec_delay_ms"] for r in ok if r["spec_delay_ms"] is not None], 90),
            "cutoff_rate": sum(r["cutoff"] for r in rs) / n,
            "spec_right": (sum(r["n_spec"] - r["n_reset"] for r in rs) / specs) if specs else None,
            "reset_rate": sum(r["n_reset"] > 0 for r in rs) / n,
            "resets_per_spec": (sum(r["n_reset"] for r in rs) / specs) if specs else None,
            "wasted_ms": C.mean(r["wasted_ms"] for r in rs),
            "upl_nospec_ms": C.mean(r["upl_nospec_ms"] for r in ok),
            "upl_nospec_p90_ms": C.pct([r["upl_nospec_ms"] for r in ok], 90),
            "upl_spec_ms": C.mean(r["upl_spec_ms"] for r in ok),
            "upl_spec_p90_ms": C.pct([r["upl_spec_ms"] for r in ok], 90),
            "saving_ms": C.mean(r["upl_nospec_ms"] - r["upl_spec_ms"] for r in ok),
            "wer_at_endpoint": er["wer"],
            "lattice_bytes": C.mean(r["lattice_bytes"] for r in rs),
            "nbest_bytes": C.mean(r["nbest_bytes"] for r in rs),
            "lattice_nbest_bytes": C.mean(r["lattice_nbest_bytes"] for r in rs),
            "pcm16_bytes": C.mean(r["pcm16_bytes"] for r in rs),
            "codec24k_bytes": C.mean(r["codec24k_bytes"] for r in rs),
        })
        r = rows[-1]
        r["goal_met"] = bool(r["saving_ms"] >= 150 and r["reset_rate"] <= 0.05 and r["cutoff_rate"] <= 0.01)
    return {
        "experiment": "endpointing", "quick": quick, "model": str(model_path), "corpus": str(corpus_dir),
        "backend": backend, "backend_desc": backend_desc, "beam": beam, "seed": seed,
        "n_test": len(refs), "n_with_pause": int(n_paused),
        "settings": {"lead_ms": LEAD_MS, "trail_ms": TRAIL_MS, "p_pause": P_PAUSE, "pause_ms": list(PAUSE_MS),
                     "snr_db": SNR_DB, "spec_lead_frames": SPEC_LEAD_FRAMES, "network_ms": downstream.network_ms,
                     "uplink_bits_per_s": downstream.uplink_bits_per_s,
                     "downstream_ms": downstream.downstream_ms,
                     "host_ms_per_frame": HOST_MS_PER_FRAME if backend == "host" else None},
        "eoq": eoq_info,
        "chip_mean_frame_latency_ms": C.mean(chip_latency) if chip_latency else None,
        "rows": rows,
        "goal": "speculation saves >= 150 ms mean user-perceived latency with <= 5% resets and <= 1% cut-offs",
        "seconds": {"setup": t_setup, "eoq_training": t_train, "total": clock()},
    }


def format_tables(r: dict) -> str:
    rows = r["rows"]
    t1 = C.format_table(rows, [
        ("endpointer", "end-pointer", "s"),
        ("final_delay_ms", "final delay ms", ".0f"), ("final_delay_p90_ms", "p90", ".0f"),
        ("spec_delay_ms", "spec delay ms", ".0f"), ("spec_delay_p90_ms", "p90", ".0f"),
        ("cutoff_rate", "cut-off", ".1%"), ("wer_at_endpoint", "WER", ".1%")],
        "End-point delay after the true end of speech (utterances not cut off)")
    t2 = C.format_table(rows, [
        ("endpointer", "end-pointer", "s"),
        ("spec_right", "spec right", ".1%"), ("reset_rate", "utts w/ reset", ".1%"),
        ("wasted_ms", "wasted ms/utt", ".0f"),
        ("upl_nospec_ms", "UPL no spec", ".0f"), ("upl_nospec_p90_ms", "p90", ".0f"),
        ("upl_spec_ms", "UPL spec", ".0f"), ("upl_spec_p90_ms", "p90", ".0f"),
        ("saving_ms", "saved ms", ".0f"), ("goal_met", "goal", "s")],
        "Speculation: user-perceived latency (end of speech -> downstream response ready, ms)")
    t3 = C.format_table(rows, [
        ("endpointer", "end-pointer", "s"), ("lattice_bytes", "lattice B", ".0f"),
        ("nbest_bytes", "N-best B", ".0f"), ("lattice_nbest_bytes", "lattice+N-best B", ".0f"),
        ("pcm16_bytes", "PCM16 B", ".0f"), ("codec24k_bytes", "24 kbit/s codec B", ".0f")],
        "Uplink bytes per utterance (audio streamed up to the final end-point)")
    eoq = r["eoq"]
    head = (f"endpointing: {r['n_test']} test utterances ({r['n_with_pause']} with a pause), "
            f"backend: {r['backend_desc']}\n"
            f"downstream: {r['settings']['network_ms']:g} ms network, {r['settings']['downstream_ms']:g} ms "
            f"work; EOQ classifiers on {eoq['utterances']} training utterances: "
            + ", ".join(f"{k} acc {eoq[k]['heldout_frame_accuracy']:.3f} (p>={eoq[k]['threshold']:g} "
                        f"x{eoq[k]['hold']} frames)" for k in ("logreg", "mlp")))
    return "\n\n".join([head, t1, t2, t3, f"goal: {r['goal']}", f"took {r['seconds']['total']:.0f} s"])


# ------------------------------------------------------------------ CLI glue (azsim.cli_experiment)
def add_arguments(p) -> None:
    p.add_argument("--model", default=None, help="float .npz export (default: models/shipped/model.npz)")
    p.add_argument("--backend", default="chip", choices=("chip", "host"),
                   help="chip: int8 model on the simulated chip's timeline (default); host: float "
                        f"model, {HOST_MS_PER_FRAME:g} ms per frame charged")
    p.add_argument("--recipe", default=None, help="compression recipe for the chip (default: recipes/int8.toml)")
    p.add_argument("--preset", default="default", help="hardware preset (default: default)")
    p.add_argument("--n-test", type=int, default=None,
                   help=f"test utterances (default {FULL['n_test']}, --quick {QUICK['n_test']})")
    p.add_argument("--n-train", type=int, default=None,
                   help=f"training utterances for the EOQ classifiers (default {FULL['n_train']}, "
                        f"--quick {QUICK['n_train']})")
    p.add_argument("--beam", type=int, default=4, help="beam width (default: 4)")
    p.add_argument("--network-ms", type=float, default=NETWORK_MS,
                   help=f"one-way device -> cloud latency (default {NETWORK_MS:g}; an assumption)")
    p.add_argument("--downstream-ms", type=float, default=DOWNSTREAM_MS,
                   help=f"NLU + fulfilment time per lattice (default {DOWNSTREAM_MS:g}; an assumption)")
    p.add_argument("--uplink-kbps", type=float, default=UPLINK_BITS_PER_S / 1e3,
                   help=f"uplink rate (default {UPLINK_BITS_PER_S / 1e3:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    p.add_argument("--corpus", default=None, help="a built corpus directory (default: the model's)")
    p.add_argument("--config", default=None, help="config whose [data] names the corpus")


def run_args(args) -> dict:
    from azsim.errors import ConfigError
    if args.beam < 1:
        raise ConfigError(f"--beam: {args.beam}; allowed: an integer >= 1")
    return run(quick=args.quick, model=args.model, backend=args.backend, recipe=args.recipe,
               preset=args.preset, n_test=args.n_test, n_train=args.n_train, beam=args.beam,
               seed=args.seed, corpus=args.corpus, config=args.config, progress=not args.no_progress,
               downstream=Downstream(args.network_ms, args.downstream_ms, 1e3 * args.uplink_kbps))
