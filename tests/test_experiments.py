"""The experiment machinery (without a trained model): audio surgery, downstream timing of
end-point events, EOQ tuning, bias lists, and the `azsim experiment` command."""
from __future__ import annotations

import numpy as np
import pytest

from asr.decode.endpoint import EndpointEvent
from asr.experiments import biasing as B
from asr.experiments import common as C
from asr.experiments import endpointing as E


def _bursts(spec, rate=16000, seed=0):
    """Noise bursts ('s', ms) and silences ('-', ms)."""
    rng = np.random.default_rng(seed)
    parts = []
    for kind, ms in spec:
        n = int(ms * rate / 1000)
        parts.append(rng.standard_normal(n).astype(np.float32) * 0.3 if kind == "s" else np.zeros(n, np.float32))
    return np.concatenate(parts)


def test_speech_bounds_and_gaps():
    x = _bursts([("-", 100), ("s", 300), ("-", 60), ("s", 300), ("-", 200)])
    b = C.speech_bounds(x)
    assert b == (1600, 1600 + 4800 + 960 + 4800)
    gaps = C.internal_gaps(x, b, margin_ms=100)
    assert len(gaps) == 1 and 1600 + 4800 <= gaps[0] <= 1600 + 4800 + 960
    assert C.speech_bounds(np.zeros(1600, np.float32)) is None


def test_prepare_inserts_pause_and_moves_end_of_speech(tmp_path):
    from asr.audio import write_wav
    x = _bursts([("-", 50), ("s", 400), ("-", 60), ("s", 400), ("-", 50)])
    p = tmp_path / "u.wav"
    write_wav(p, x, 16000)
    with_pause = without = None
    for seed in range(20):   # P_PAUSE = 0.5: find one draw of each kind
        r = E.prepare(p, np.random.default_rng(seed))
        if r["pause_ms"] > 0 and with_pause is None:
            with_pause = r
        if r["pause_ms"] == 0 and without is None:
            without = r
    assert with_pause and without
    speech_end_ms = 50 + 400 + 60 + 400
    assert without["eos_ms"] == pytest.approx(E.LEAD_MS + speech_end_ms, abs=10)
    assert E.PAUSE_MS[0] - 1 <= with_pause["pause_ms"] <= E.PAUSE_MS[1] + 1
    assert with_pause["eos_ms"] == pytest.approx(without["eos_ms"] + with_pause["pause_ms"], abs=10)
    assert with_pause["audio_ms"] == pytest.approx(with_pause["eos_ms"] + 50 + E.TRAIL_MS, abs=15)
    assert with_pause["feats"].shape[1] == 240


def test_frame_labels():
    y = E.frame_labels(10, 100.0)
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]   # 30 t >= 100 from t = 4


def _ev(kind, frame, size=300):
    class Lat:
        def size_bytes(self):
            return size
    return EndpointEvent(kind, frame, 45.0 + 30 * frame, ("a",), None if kind == "confirm" else Lat())


def test_downstream_timing_confirm_reset_final():
    decision = 45.0 + 30.0 * np.arange(100) + 1.0   # chip done 1 ms after each frame arrives
    eos = 500.0
    send = E.send_ms(300)
    # final only: ready = decision + send + downstream work
    o = E.outcome([_ev("final", 30)], decision, eos)
    assert o["ready_ms"] == pytest.approx(decision[30] + send + E.DOWNSTREAM_MS)
    # confirmed speculation 7 frames earlier: downstream work already under way
    o2 = E.outcome([_ev("speculate", 23), _ev("confirm", 30)], decision, eos)
    assert o2["ready_ms"] == pytest.approx(max(decision[30] + E.send_ms(E.CONFIRM_BYTES),
                                               decision[23] + send + E.DOWNSTREAM_MS))
    assert o["ready_ms"] - o2["ready_ms"] == pytest.approx(210.0)
    assert o2["confirmed"] and o2["wasted_ms"] == 0
    # a reset wastes the downstream work done until it arrives
    o3 = E.outcome([_ev("speculate", 10), _ev("reset", 15), _ev("final", 40)], decision, eos)
    assert o3["wasted_ms"] == pytest.approx(decision[15] + E.NETWORK_MS - (decision[10] + send))
    assert not o3["confirmed"] and o3["n_reset"] == 1
    assert o3["ready_ms"] == pytest.approx(decision[40] + send + E.DOWNSTREAM_MS)


def test_first_fire_and_tuning():
    lg = np.array([-1, 2, 2, -1, 2, 2, 2, -1], float)
    assert E.first_fire(lg, 0.0, 3, 0) == 6
    assert E.first_fire(lg, 0.0, 2, 0) == 2
    assert E.first_fire(lg, 0.0, 4, 0) is None

    class Clf:   # decision = the first feature
        def decision(self, x):
            return np.asarray(x)[:, 0]

    sets = []
    for k in range(10):
        eos = 300.0 + 30 * k
        t = np.arange(40)
        logit = np.where(30 * t >= eos, 3.0, -3.0)
        logit[5] = 3.0   # one spurious early frame: a hold of 1 would cut every user off
        sets.append({"enc": logit[:, None], "eos_ms": eos, "sos_ms": 0.0, "audio_ms": 1245.0})
    tuned = E.tune(Clf(), sets, thresholds=(0.5,), holds=range(1, 10))
    assert tuned["hold"] == 2 and tuned["train_cutoff"] == 0.0


def test_bias_list_contains_true_names_and_is_deterministic():
    pool = B.distractor_pool(0, B.NOVEL_APPLIANCES)
    assert len(pool) == 5000 and len(set(pool)) == 5000
    a = B.bias_list(["zed zulu"], 100, pool, np.random.default_rng(1))
    b = B.bias_list(["zed zulu"], 100, pool, np.random.default_rng(1))
    assert a == b and len(a) == 100 and "zed zulu" in a and len(set(a)) == 100
    assert len(B.bias_list([], 1000, pool, np.random.default_rng(2))) == 1000


def test_paired_bootstrap_intervals():
    from asr.metrics import error_rates, paired_bootstrap, utterance_word_errors
    refs = ["call ann lee", "stop", "turn on the fan", "what time is it"]
    hyps = ["call an lee", "stop", "turn on fan", "what time is it now"]
    e, w = utterance_word_errors(refs, hyps)
    agg = error_rates(refs, hyps)
    assert list(e) == [1, 0, 1, 1] and list(w) == [3, 1, 4, 4]
    assert e.sum() == agg["word_errors"] and w.sum() == agg["ref_words"]
    same = paired_bootstrap(w, e, e, lambda a, b: b - a)
    assert same == (0.0, 0.0)                     # identical systems: no difference at all
    lo, hi = paired_bootstrap(w, e, np.zeros_like(e), lambda a, b: b - a, n=500)
    assert -agg["wer"] - 0.5 < lo <= hi <= 0.0    # a perfect system is never worse
    assert paired_bootstrap(w, e, e, lambda a, b: b - a, seed=1) == same
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(w, e[:2], e, lambda a, b: b - a)
    per_utt = {"names": {"none": (e, w), "x": (np.zeros_like(e), w)},
               "no_names": {"none": (e, w), "x": (e, w)}}
    ci = B._intervals(per_utt, "x")
    assert ci["change_ci95"] == [0.0, 0.0] and ci["rel_ci95"][1] == pytest.approx(1.0)


def test_name_recall():
    rows = [{"names": ["ann lee"]}, {"names": ["fan"]}, {"names": []}]
    assert B.name_recall(rows, ["call ann lee", "turn on the fan", "stop"]) == 1.0
    assert B.name_recall(rows, ["call anne lee", "turn on the fancy", "stop"]) == 0.0
    assert B.name_recall(rows[2:], ["stop"]) is None


def test_pick_weight_respects_the_no_names_bound():
    base = {"tune_names": 0.40, "tune_no_names": 0.10}
    rows = [{"weight": 0.5, "end_bonus": 0.0, "tune_names": 0.33, "tune_no_names": 0.100},
            {"weight": 1.0, "end_bonus": 4.0, "tune_names": 0.28, "tune_no_names": 0.102},
            {"weight": 2.0, "end_bonus": 4.0, "tune_names": 0.20, "tune_no_names": 0.130}]
    # the strongest boost breaks the no-names bound; of the others the lower names WER wins
    assert B.pick_weight(rows, base)["weight"] == 1.0
    worse = [dict(r, tune_no_names=r["tune_no_names"] + 0.01) for r in rows]
    assert B.pick_weight(worse, base)["weight"] == 2.0      # none within: lowest summed WER


def test_weights_grid_parsing_and_errors():
    from azsim.errors import ConfigError
    assert B.parse_weights("0.5/0, 0.5/1,1,0.5/0") == ((0.5, 0.0), (0.5, 1.0), (1.0, 0.0))
    assert B.parse_weights([(0.25, 2), (1, 0)]) == ((0.25, 2.0), (1.0, 0.0))
    for bad, words in (("", "0 pairs"), ("x", "'x' is not WEIGHT"), ("1/2/3", "is not WEIGHT"),
                       ("21", "out of range"), ("0.5/-1", "out of range"), ("nan", "out of range"),
                       (",".join(["1"] * (B.MAX_WEIGHT_PAIRS + 1)), "41 pairs")):
        with pytest.raises(ConfigError, match=words) as err:
            B.parse_weights(bad)
        assert "--weights" in str(err.value) and "[0, 20]" in str(err.value)


def _toy_utterances(m, rng, n_frames, distractors):
    """utt(text, names) -> a biasing-set row with random audio encoded by model `m` and a list
    of its names plus `distractors`."""
    def utt(text, names):
        enc = m.encode(rng.standard_normal((n_frames, m.input_dim)).astype(np.float32), m.encoder_init())[0]
        return {"text": text, "names": names, "enc": enc, "list": names + distractors}
    return utt


def test_tradeoff_curve_rows_and_zero_weight_is_the_baseline():
    from asr.decode.biasing import BiasList
    from asr.decode.toy import RandomRNNT
    m = RandomRNNT(seed=3)
    utt = _toy_utterances(m, np.random.default_rng(0), 25, ["zed zulu", "lamp"])
    prefixes = {"contact": ["call"], "appliance": ["the"]}

    sets = {"names": [utt("call ann lee", ["ann lee"]), utt("turn on the fan", ["fan"])],
            "no_names": [utt("stop", []), utt("what time is it", [])]}

    def compile_list(names, w, eb, gated):
        if gated:
            return BiasList.compile_classes(B.bias_classes(names, prefixes), w, end_bonus=eb)
        return BiasList.compile(names, w, end_bonus=eb)

    rows = B.tradeoff_curve(m, sets, ((0.0, 0.0), (3.0, 2.0)), compile_list, beam=2)
    assert [(r["gated"], r["weight"], r["end_bonus"]) for r in rows] == [
        (False, 0.0, 0.0), (False, 3.0, 2.0), (True, 0.0, 0.0), (True, 3.0, 2.0)]
    for r in rows:
        if r["weight"] == 0.0:      # no boost, no bonus: the unbiased decode exactly
            assert r["rel_wer_reduction_names"] == 0.0 and r["abs_wer_change_no_names"] == 0.0
    base = B.set_wer(m, sets["names"], lambda r: None, 2)
    assert rows[1]["wer_names"] == B.set_wer(m, sets["names"], lambda r: compile_list(r["list"], 3.0, 2.0, False), 2)
    assert rows[1]["rel_wer_reduction_names"] == pytest.approx((base - rows[1]["wer_names"]) / base)


def test_ilm_weights_parsing_and_errors():
    from azsim.errors import ConfigError
    assert B.parse_ilm_weights("0.5, 1,0.5") == (0.5, 1.0)
    assert B.parse_ilm_weights([0.7]) == (0.7,)
    for bad, words in (("", "0 weights"), ("x", "'x' is not a number"), ("6", "out of range"),
                       ("-0.1", "out of range"), ("nan", "out of range"),
                       (",".join(["1"] * (B.MAX_ILM_WEIGHTS + 1)), "11 weights")):
        with pytest.raises(ConfigError, match=words) as err:
            B.parse_ilm_weights(bad)
        assert "--ilm-weights" in str(err.value) and "[0, 5]" in str(err.value)


def test_slot_classes_mark_known_names_of_each_class():
    prefixes = {"contact": ["call"], "appliance": ["the"]}
    classes = B.slot_classes(["ann lee", "dishwasher"], prefixes, {"kathleen"}, {"stereo"})
    by_prefix = {tuple(c.prefixes): c for c in classes}
    assert by_prefix[("call",)].names == ["ann lee"] and by_prefix[("call",)].suspect == {"kathleen"}
    assert by_prefix[("the",)].names == ["dishwasher"] and by_prefix[("the",)].suspect == {"stereo"}
    assert B.slot_classes(["dishwasher"], prefixes, {"kathleen"})[0].suspect == frozenset()


def test_rescore_grid_rows_match_rescoring_each_text():
    from asr.decode.biasing import BiasList
    from asr.decode.rescore import SlotRescorer
    from asr.decode.toy import RandomRNNT
    from asr.metrics import error_rates
    m = RandomRNNT(seed=5)
    utt = _toy_utterances(m, np.random.default_rng(1), 20, ["zed zulu"])
    prefixes = {"contact": ["call"], "appliance": ["the"]}

    sets = {"tune_names": [utt("call ann lee", ["ann lee"]), utt("call bo", ["bo"])],
            "tune_no_names": [utt("stop", []), utt("call me", [])]}
    hyps: dict = {}
    rows = B.grid_wers(m, sets, ("tune_names", "tune_no_names"), ((0.5, 0.0), (2.0, 1.0)),
                       lambda names, w, eb, g: BiasList.compile(names, w, end_bonus=eb), 2, "t", hyps=hyps)
    assert set(hyps) == {(g, w, eb, n) for g in (False, True) for w, eb in ((0.5, 0.0), (2.0, 1.0))
                         for n in ("tune_names", "tune_no_names")}
    vocab = {"call", "me", "stop"}
    rescorers = {lam: SlotRescorer(m, vocab, ilm_weight=lam) for lam in (0.0, 1.0)}
    classes_of = lambda names: B.slot_classes(names, prefixes, {"kathleen"})   # noqa: E731
    out = B.rescore_grid(rescorers, sets, rows, hyps, classes_of)
    assert len(out) == len(rows) * 2
    for r in out:
        for n in ("tune_names", "tune_no_names"):
            texts = [rescorers[r["ilm_weight"]].rescore(u["enc"], h, classes_of(u["list"])).text
                     for u, h in zip(sets[n], hyps[(r["gated"], r["weight"], r["end_bonus"], n)])]
            assert r[n] == error_rates([u["text"] for u in sets[n]], texts)["wer"]


def test_table_format():
    t = C.format_table([{"a": "x", "b": 0.5}, {"a": "yy", "b": None}], [("a", "A", "s"), ("b", "B", ".1%")], "T")
    assert t.splitlines()[0] == "T" and "50.0%" in t and t.splitlines()[-1].rstrip().endswith("-")


# ------------------------------------------------------------------ the command
def test_experiment_command_registered_and_errors(tmp_path, capsys):
    from azsim.cli import build_parser, main
    from azsim.cli_experiment import EXPERIMENTS
    p = build_parser()
    for name in EXPERIMENTS:
        args = p.parse_args(["experiment", name, "--quick", "--json"])
        assert args.quick and args.json
    with pytest.raises(SystemExit):
        p.parse_args(["experiment", "nope"])
    rc = main(["experiment", "endpointing", "--quick", "--model", str(tmp_path / "missing.npz")])
    assert rc == 2 and "model file not found" in capsys.readouterr().err
    rc = main(["experiment", "biasing", "--quick", "--beam", "0", "--model", str(tmp_path / "m.npz")])
    assert rc == 2 and "--beam" in capsys.readouterr().err
    rc = main(["experiment", "biasing", "--quick", "--reserve", "4", "--model", str(tmp_path / "m.npz")])
    assert rc == 2 and "--reserve: 4; allowed: an integer in [0, 3]" in capsys.readouterr().err
    rc = main(["experiment", "biasing", "--quick", "--weights", "0.5/x", "--model", str(tmp_path / "m.npz")])
    assert rc == 2 and "--weights: entry '0.5/x'" in capsys.readouterr().err
    rc = main(["experiment", "biasing", "--quick", "--ilm-weights", "9", "--model", str(tmp_path / "m.npz")])
    assert rc == 2 and "--ilm-weights: entry '9'" in capsys.readouterr().err


def test_sizes_defaults_overrides_and_errors():
    from azsim.errors import ConfigError
    quick, full = {"n_test": 10, "n_train": 20}, {"n_test": 100, "n_train": 200}
    mins = {"n_test": 1, "n_train": 5}
    assert C.sizes(True, quick, full, mins) == quick
    assert C.sizes(False, quick, full, mins, n_test=7, n_train=None) == {"n_test": 7, "n_train": 200}
    for bad in ({"n_train": 4}, {"n_test": 0}, {"n_test": 2.5}, {"n_test": True}):
        with pytest.raises(ConfigError, match="--n-t"):
            C.sizes(True, quick, full, mins, **bad)
    medium = {"n_test": 50, "n_train": 100}
    assert C.sizes(False, quick, full, mins, medium=True, medium_sizes=medium, n_test=3) == {"n_test": 3, "n_train": 100}
    with pytest.raises(ConfigError, match="--quick and --medium"):
        C.sizes(True, quick, full, mins, medium=True, medium_sizes=medium)


def test_slot_phrases_keep_the_phrases_a_slot_usually_follows():
    recs = [("call ann lee", {"contact": "ann lee"}), ("call me back", {}),
            ("call bo please", {"contact": "bo"}),                  # call: 2 of 3 -> kept
            ("play the song", {}), ("play the album", {}), ("play the hits", {}),
            ("turn the lamp on", {"appliance": "lamp"}),             # the: 2 of 5; turn the: 2 of 2
            ("turn the fan off", {"appliance": "fan"}),
            ("send a message to ann lee", {"contact": "ann lee"})]  # to: 1 of 1
    p = B.slot_phrases(None, records=recs)
    assert p == {"contact": ["call", "to"], "appliance": ["turn the"]}
    assert B.slot_phrases(None, min_precision=0.3, records=recs)["appliance"] == ["the"]
    assert B.slot_phrases(None, max_words=1, records=recs)["appliance"] == []


def test_slot_lexicon_reads_phrases_contacts_and_vocabulary():
    recs = [("call ann lee", {"contact": "ann lee"}), ("call bo please", {"contact": "bo"}),
            ("turn the lamp on", {"appliance": "lamp"})]
    lex = B.SlotLexicon(None, recs)
    assert lex.phrases == B.slot_phrases(None, records=recs)
    assert lex.known_contacts == {"ann lee", "bo"} and lex.known_appliances == {"lamp"}
    assert lex.vocab == {"call", "ann", "lee", "bo", "please", "turn", "the", "lamp", "on"}
    contacts, lamps = lex.classes(["kim", "lamp"])
    assert contacts.names == ["kim"] and contacts.suspect == {"ann lee", "bo"}
    assert lamps.names == ["lamp"] and lamps.suspect == {"lamp"}


def test_row_store_resumes_only_the_same_run(tmp_path):
    key = {"settings": {"steps": 3}, "code": "abc"}
    s = C.RowStore("exp", tmp_path, key)
    assert s.get("a") is None
    s.put("a", {"wer": 0.125, "seconds": 1.0})
    assert C.RowStore("exp", tmp_path, dict(key)).get("a") == {"wer": 0.125, "seconds": 1.0}
    assert C.RowStore("exp", tmp_path, {**key, "code": "abd"}).get("a") is None   # other code
    assert C.RowStore("exp", tmp_path, key, fresh=True).get("a") is None
    s.path.write_text("{not json")
    assert C.RowStore("exp", tmp_path, key).get("a") is None                     # damaged: redone
    assert not list(s.path.parent.glob("*.tmp"))


def test_code_digest_is_stable():
    assert C.code_digest() == C.code_digest() and len(C.code_digest()) == 64


def test_downstream_assumptions_are_options(capsys):
    """The off-device figures change the timing as the model says, and are range-checked."""
    from azsim.cli import main
    from azsim.errors import ConfigError
    decision = np.arange(40, dtype=np.float64) * 30.0
    slow = E.Downstream(network_ms=120.0, downstream_ms=800.0, uplink_bits_per_s=64_000.0)
    a = E.outcome([_ev("final", 30)], decision, 600.0)
    b = E.outcome([_ev("final", 30)], decision, 600.0, slow)
    nb = _ev("final", 30).lattice.size_bytes()
    assert b["ready_ms"] - a["ready_ms"] == pytest.approx(
        (120.0 - E.NETWORK_MS) + (800.0 - E.DOWNSTREAM_MS) + 8e3 * nb * (1 / 64_000.0 - 1 / E.UPLINK_BITS_PER_S))
    with pytest.raises(ConfigError, match="--downstream-ms"):
        E.Downstream(downstream_ms=-1.0)
    assert main(["experiment", "endpointing", "--quick", "--network-ms", "-5"]) == 2
    assert "--network-ms" in capsys.readouterr().err


def test_biasing_reads_the_planned_training_transcripts(tmp_path):
    """The experiment's training statistics come from the corpus config alone (no audio)."""
    import json
    from asr.data import corpus
    cfg = corpus.resolve_config({"n_train": 30, "seed": 7, "fsdd_train": False})
    d = corpus.build(cfg, tmp_path, subsets=())
    assert json.loads((d / "config.json").read_text()) == cfg and not list(d.glob("*.jsonl"))
    recs = B._train_slots(d)
    assert recs == [(r["text"], r["slots"]) for r in corpus.train_transcripts(cfg)]
    assert len(recs) == 30
