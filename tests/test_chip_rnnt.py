"""The quantized RNN-T on the simulated chip equals the numpy integer reference bit for bit.

ChipRNNT (azsim graphs on engine Sessions) vs IntRNNT (azsim.reference ops): encoder outputs
and states, predictor outputs and states, raw joint accumulators, and whole beam searches,
for int8 and int4 weights and several weight formats; plus the per-frame timeline.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.chip import ChipRNNT
from asr.decode import beam_search
from asr.quant import ptq, recipe, toy
from asr.quant.int_rnnt import IntRNNT
from azsim import hw

REPO = Path(__file__).resolve().parents[1]
HW = hw.load("default")

RECIPES = {
    "int8-dense": {"bits": 8, "format": "dense"},
    "int8-auto": {"bits": 8, "format": "auto"},
    "int4-int4": {"bits": 4, "format": "int4"},
    "int8-sparse50-bitmask": {"bits": 8, "sparsity": 0.5, "format": "bitmask"},
    "int8-2:4-rle": {"bits": 8, "pattern": "2:4", "format": "rle"},
    "codebook16": {"bits": 8, "levels": 16, "format": "codebook"},
    "int4-sparse-codebook-bitmask": {"bits": 4, "sparsity": 0.6, "levels": 8,
                                     "format": "codebook-bitmask"},
}


def _calib(n=4, frames=40):
    return [(toy.random_features(frames, s), list(np.random.default_rng(s).integers(1, 29, 12)))
            for s in range(n)]


@pytest.fixture(scope="module")
def float_model():
    return toy.random_model(seed=1)


@pytest.fixture(scope="module")
def models(float_model):
    out = {}
    calib = _calib()
    for name, d in RECIPES.items():
        qm = ptq.quantize(float_model, recipe.from_dict({"name": name, **d}), calib)
        out[name] = (IntRNNT(qm), ChipRNNT(qm, HW))
    return out


def _states_equal(a, b) -> bool:
    return all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))


@pytest.mark.parametrize("name", list(RECIPES))
def test_chip_equals_reference(models, name):
    im, cm = models[name]
    if name.startswith("int4"):
        assert all(f == ("int4" if "int4-int4" == name else "codebook-bitmask")
                   for f, _ in cm.formats.values())
    xq = im.qm.quantize_input(toy.random_features(25, 7))
    ea, sa = im.encode_int(xq, im.encoder_init())
    eb, sb = cm.encode_int(xq, cm.encoder_init())
    assert ea.dtype == eb.dtype == np.int8
    assert np.array_equal(ea, eb) and sa[0] == sb[0] == 25 and _states_equal(sa[1], sb[1])
    pa, pb = im.predictor_init(), cm.predictor_init()
    for tok in (0, 5, 1, 28, 3):
        qa, pa = im.predict_int(tok, pa)
        qb, pb = cm.predict_int(tok, pb)
        assert np.array_equal(qa, qb) and _states_equal(pa, pb)
    rows = np.repeat(qa[None], ea.shape[0], axis=0)
    ja, jb = im.joint_int(ea, rows), cm.joint_int(ea, rows)
    assert ja.dtype == jb.dtype == np.int32 and np.array_equal(ja, jb)


def _recipe_files():
    return sorted((REPO / "recipes").glob("*.toml"))


@pytest.mark.parametrize("path", _recipe_files(), ids=lambda p: p.stem)
def test_every_shipped_recipe_is_exact_on_the_chip(float_model, path):
    """Each recipe in recipes/ (its bits, sparsity, levels, formats and solver; the toy model
    stands in for the fine-tuned one a trained method names) on the chip equals the numpy
    integer reference exactly."""
    rec = recipe.load(path)
    qm = ptq.quantize(float_model, rec, _calib())
    im, cm = IntRNNT(qm), ChipRNNT(qm, HW)
    xq = im.qm.quantize_input(toy.random_features(12, 3))
    ea, sa = im.encode_int(xq, im.encoder_init())
    eb, sb = cm.encode_int(xq, cm.encoder_init())
    assert np.array_equal(ea, eb) and _states_equal(sa[1], sb[1])
    pa, pb = im.predictor_init(), cm.predictor_init()
    for tok in (0, 7, 2):
        qa, pa = im.predict_int(tok, pa)
        qb, pb = cm.predict_int(tok, pb)
        assert np.array_equal(qa, qb) and _states_equal(pa, pb)
    rows = np.repeat(qa[None], ea.shape[0], axis=0)
    assert np.array_equal(im.joint_int(ea, rows), cm.joint_int(ea, rows))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), frames=st.integers(1, 6), loud=st.floats(0.1, 20.0),
       tokens=st.lists(st.integers(0, 28), min_size=1, max_size=5))
def test_chip_equals_reference_random_inputs(models, seed, frames, loud, tokens):
    """Random inputs, including features far outside the calibration range (clamps, saturated
    gates and cells), from random (int8) encoder states."""
    im, cm = models["int8-auto"]
    rng = np.random.default_rng(seed)
    x = (toy.random_features(frames, seed) * loud).astype(np.float32)
    state = (0, tuple((rng.integers(-128, 128, h, dtype=np.int8),
                       rng.integers(-32768, 32768, h, dtype=np.int16)) for h in im.enc_hidden))
    xq = im.qm.quantize_input(x)
    ea, sa = im.encode_int(xq, state)
    eb, sb = cm.encode_int(xq, state)
    assert np.array_equal(ea, eb) and _states_equal(sa[1], sb[1])
    pa = pb = im.predictor_init()
    for t in tokens:
        qa, pa = im.predict_int(t, pa)
        qb, pb = cm.predict_int(t, pb)
        assert np.array_equal(qa, qb)
    e = rng.integers(-128, 128, (4, im.joint_dim), dtype=np.int8)
    p = rng.integers(-128, 128, (4, im.joint_dim), dtype=np.int8)
    assert np.array_equal(im.joint_int(e, p), cm.joint_int(e, p))


@pytest.mark.parametrize("name", ["int8-auto", "int4-int4"])
def test_beam_search_identical(models, name):
    """The decoders see the same numbers from chip and reference: same N-best, same scores."""
    im, cm = models[name]
    x = toy.random_features(30, 11)
    ea, _ = im.encode(x, im.encoder_init())
    eb, _ = cm.encode(x, cm.encoder_init())
    assert np.array_equal(ea, eb)
    na, nb = beam_search(im, ea, beam=4), beam_search(cm, eb, beam=4)
    assert [h.tokens for h in na] == [h.tokens for h in nb]
    assert [h.score for h in na] == [h.score for h in nb]


def test_float_boundary_round_trips(models):
    """enc/pred floats handed to the decoders map back to the very same integers."""
    im, _ = models["int8-dense"]
    xq = im.qm.quantize_input(toy.random_features(10, 3))
    eq, _ = im.encode_int(xq, im.encoder_init())
    ef = (eq.astype(np.float64) * im.s_enc).astype(np.float32)
    assert np.array_equal(im._to_q(ef, im.s_enc), eq)


def test_streaming_chunks_equal_whole(models):
    im, cm = models["int8-auto"]
    x = toy.random_features(17, 4)
    whole, _ = cm.encode(x, cm.encoder_init())
    st_, parts = cm.encoder_init(), []
    for a, b in ((0, 5), (5, 6), (6, 17)):
        e, st_ = cm.encode(x[a:b], st_)
        parts.append(e)
    assert np.array_equal(np.concatenate(parts), whole) and st_[0] == 17


def test_timeline(models):
    _, cm = models["int8-sparse50-bitmask"]
    u = cm.start_utterance()
    from asr.stream import make_search
    search = make_search(cm, 2)
    state = cm.encoder_init()
    x = toy.random_features(12, 9)
    for t in range(12):
        enc, state = cm.encode(x[t:t + 1], state)
        search.advance(enc)
    frames = list(u.frames)
    rec = cm.finish_utterance()
    assert rec["frames"] == 12 and len(frames) == 12
    fc = cm.frame_cycles
    for i, f in enumerate(frames):
        assert f.arrival_cycle == int(u.base_cycle + cm.first_frame_cycles + i * fc)
        assert f.start_cycle >= f.arrival_cycle and f.end_cycle > f.start_cycle
        if i:
            assert f.start_cycle >= frames[i - 1].end_cycle
    # a small model keeps up: every frame starts on arrival, latency = last frame's work
    assert rec["max_backlog_ms"] == 0.0
    assert rec["latency_ms"] == pytest.approx(1e3 * (frames[-1].end_cycle - frames[-1].arrival_cycle)
                                              / cm.clock_hz)
    assert rec["calls"]["encoder"] == 12 and rec["calls"]["joint"] >= 12
    e = rec["energy_mj"]
    assert e["total"] == pytest.approx(sum(v for k, v in e.items() if k != "total"))
    assert rec["macs"] > 0 and rec["cycles"] >= rec["compute_cycles"]


def test_weight_sram_shared(models):
    for name, (_, cm) in models.items():
        s = cm.sram_bytes()
        assert s["weight_sram_bytes"] <= HW.sram.weight_bytes, name
        assert cm.weight_bytes() == sum(r["bytes"] for r in cm.placement())


def test_sparse_formats_are_smaller(models):
    dense = models["int8-dense"][1].weight_bytes()
    assert models["int8-sparse50-bitmask"][1].weight_bytes() < 0.75 * dense
    assert models["int4-int4"][1].weight_bytes() < 0.55 * dense


def _fsdd_corpus():
    """The shipped config's real FSDD test recordings (built in seconds: no synthesis)."""
    import tomllib
    from asr.data import corpus
    cfg = tomllib.loads((REPO / "configs" / "shipped.toml").read_text())["data"]
    return corpus.build(cfg, progress=False, subsets=["test_fsdd"])


def test_real_utterance_bit_exact(models):
    """A real human recording (FSDD) through the shipped model when it exists, else through
    the small random model."""
    from asr.data import corpus
    from asr.features import stack_frames
    utts = corpus.load_subset(_fsdd_corpus(), "test_fsdd")
    x = stack_frames(np.asarray(utts[0].feats, np.float32))
    shipped = REPO / "models" / "shipped" / "model.npz"
    if shipped.exists():
        from asr.model.numpy_rnnt import NumpyRNNT
        fm = NumpyRNNT.load(shipped)
        calib = ptq.calibration_set(utts[1:5])
        qm = ptq.quantize(fm, recipe.from_dict({"name": "int8"}), calib)
        im, cm = IntRNNT(qm), ChipRNNT(qm, HW)
        x = x[:40]
    else:
        im, cm = models["int8-auto"]
    ea, sa = im.encode(x, im.encoder_init())
    eb, sb = cm.encode(x, cm.encoder_init())
    assert np.array_equal(ea, eb) and _states_equal(sa[1], sb[1])
    na, nb = beam_search(im, ea[:20], beam=2), beam_search(cm, eb[:20], beam=2)
    assert [h.tokens for h in na] == [h.tokens for h in nb]


def test_slow_chip_builds_a_backlog(float_model):
    """A chip slower than real time queues frames: each starts when the previous work ends,
    the backlog grows frame by frame and the latency exceeds the audio's frame period."""
    qm = ptq.quantize(float_model, recipe.from_dict({"name": "int8"}), _calib(2))
    slow = HW.with_overrides({"clock_hz": 1e6, "offchip.bytes_per_cycle": 0.5})
    cm = ChipRNNT(qm, slow, placement="stream")
    u = cm.start_utterance()
    from asr.stream import make_search
    search, state = make_search(cm, 2), cm.encoder_init()
    x = toy.random_features(10, 2)
    for t in range(10):
        enc, state = cm.encode(x[t:t + 1], state)
        search.advance(enc)
    frames = list(u.frames)
    rec = cm.finish_utterance()
    waits = [f.start_cycle - f.arrival_cycle for f in frames]
    assert waits[0] == 0 and all(b > a for a, b in zip(waits[1:], waits[2:]))
    for a, b in zip(frames, frames[1:]):
        assert b.start_cycle == max(b.arrival_cycle, a.end_cycle)
    assert rec["max_backlog_ms"] == pytest.approx(1e3 * waits[-1] / 1e6)
    assert rec["latency_ms"] > 30.0 and rec["chip_busy_s"] > rec["audio_s"]
