"""Bit-exactness of every engine op against azsim/reference.py on random data,
for every weight format and both weight widths (hypothesis)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azsim import reference as ref
from azsim.compile import compile as compile_graph
from azsim.engine import Session
from azsim.graph import Graph

from engine_helpers import formats_for, hw, matmul_graph, random_weights

# AZSIM_HYPOTHESIS_EXAMPLES=400 for a deeper run; 40 keeps the suite fast.
SETTINGS = settings(max_examples=int(os.environ.get("AZSIM_HYPOTHESIS_EXAMPLES", "40")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def matmul_case(draw):
    bits = draw(st.sampled_from([8, 4]))
    fmt = draw(st.sampled_from(formats_for(bits)))
    M = draw(st.integers(1, 5))
    K = draw(st.integers(1, 80))
    N = draw(st.integers(1, 40))
    sparsity = draw(st.sampled_from([0.0, 0.3, 0.7, 0.95, 1.0]))
    out_dtype = draw(st.sampled_from(["int8", "int16", "int32"]))
    dataflow = draw(st.sampled_from(["ws", "os", "is"]))
    zero = draw(st.sampled_from(["none", "gate", "skip"]))
    rows = draw(st.sampled_from([2, 4, 8]))
    cols = draw(st.sampled_from([2, 4, 8]))
    tile_bytes = draw(st.sampled_from([16, 64, 100000]))
    seed = draw(st.integers(0, 2**31 - 1))
    return bits, fmt, M, K, N, sparsity, out_dtype, dataflow, zero, rows, cols, tile_bytes, seed


@SETTINGS
@given(matmul_case())
def test_matmul_bit_exact(case):
    bits, fmt, M, K, N, sparsity, out_dtype, dataflow, zero, rows, cols, tile_bytes, seed = case
    rng = np.random.default_rng(seed)
    w = random_weights(rng, N, K, bits, sparsity, fmt)
    bias = rng.integers(-(2**20), 2**20, N)
    x = rng.integers(-128, 128, (M, K)).astype(np.int8)
    x[:, rng.random(K) < 0.3] = 0   # whole zero columns too (skip logic)
    scale = rng.uniform(1e-5, 1e-2, N)
    g = matmul_graph(w, bits=bits, fmt=fmt, out_dtype=out_dtype, bias=bias, scale=scale)
    cfg = hw(rows=rows, cols=cols, dataflow=dataflow, zero=zero, bits=8)
    prog = compile_graph(g, cfg, tile_bytes=tile_bytes)
    np.testing.assert_array_equal(prog.decoded_weight(prog.weights[0]), w)  # lossless formats
    res = Session(prog).run({"x": x})
    want = ref.run_graph(g, {"x": x})["fc:out"]
    got = res.outputs["fc:out"]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    st_ = res.stats
    assert st_["macs"] == M * K * N
    assert st_["macs_executed"] + st_["macs_skipped"] == M * K * N


def test_matmul_extremes_exact():
    # -128 x -128 everywhere: the worst case for int8 SIMD tricks.
    for K in (15, 16, 17, 64, 1000):
        w = np.full((5, K), -128, np.int8)
        x = np.full((2, K), -128, np.int8)
        g = matmul_graph(w, out_dtype="int32")
        _, _, res = run_once_helper(g, x)
        np.testing.assert_array_equal(res.outputs["fc:out"], ref.matmul(x, w))
        assert res.outputs["fc:out"][0, 0] == 16384 * K


def run_once_helper(g, x):
    prog = compile_graph(g, hw())
    s = Session(prog)
    return prog, s, s.run({"x": x})


def test_int32_wraparound_matches_reference():
    w = np.full((1, 2), 127, np.int8)
    g = matmul_graph(w, out_dtype="int32", bias=np.array([2**31 - 1]))
    x = np.array([[127, 127]], np.int8)
    _, _, res = run_once_helper(g, x)
    np.testing.assert_array_equal(res.outputs["fc:out"], ref.matmul(x, w, bias=[2**31 - 1]))


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from(["int8", "int16"]),
       st.sampled_from(["int8", "int16"]), st.integers(1, 50), st.integers(1, 3))
def test_vector_ops_bit_exact(seed, dta, dto, cols, rows):
    rng = np.random.default_rng(seed)
    g = Graph()
    a = g.input("a", cols, dta)
    b = g.input("b", cols, dta)
    lo, hi = ref.dtype_range(dta)
    ma, mb, mm = (int(v) for v in rng.integers(0, 2**31, 3))
    sh = int(rng.integers(1, 63))
    s_add = g.add(a, b, a_mult=ma, b_mult=mb, shift=sh, out_dtype=dto, name="add")
    s_mul = g.mul(a, b, mult=mm, shift=sh, out_dtype=dto, name="mul")
    if dta == "int8":
        table = rng.integers(-128, 128, 256).astype(np.int8 if dto == "int8" else np.int16)
        if dto == "int16":
            table = rng.integers(-32768, 32768, 256).astype(np.int16)
    else:
        table = ref.sigmoid_table() if dto == "int16" else rng.integers(-128, 128, 513).astype(np.int8)
    s_lut = g.lut(a, table, name="lut")
    pm = rng.integers(0, 2**31, cols)
    ps = rng.integers(1, 63, cols)
    s_rq = g.requant(a, mult=pm, shift=ps, out_dtype=dto, name="rq")
    g.output(s_add, s_mul, s_lut, s_rq)
    inputs = {"a": rng.integers(lo, hi + 1, (rows, cols)).astype(dta),
              "b": rng.integers(lo, hi + 1, (rows, cols)).astype(dta)}
    res = Session(compile_graph(g, hw())).run(inputs)
    want = ref.run_graph(g, inputs)
    for name in want:
        np.testing.assert_array_equal(res.outputs[name], want[name], err_msg=name)


def lstm_params(rng, Kx, H, bits, fmt, sparsity):
    wx = random_weights(rng, 4 * H, Kx, bits, sparsity, fmt)
    wh = random_weights(rng, 4 * H, H, bits, sparsity, fmt)
    s_x, s_h = 0.05, 1.0 / 127
    wscale = (0.5 if bits == 4 else 0.02)
    mult_x, shift_x = ref.quantize_multiplier(np.full(4 * H, s_x * wscale * 4096))
    mult_h, shift_h = ref.quantize_multiplier(np.full(4 * H, s_h * wscale * 4096))
    h_mult, h_shift = ref.quantize_multiplier(1.0 / (2.0**30 * s_h))
    return dict(wx=wx, wh=wh, bias=rng.integers(-5000, 5000, 4 * H), mult_x=mult_x,
                shift_x=shift_x, mult_h=mult_h, shift_h=shift_h, h_mult=int(h_mult[0]),
                h_shift=int(h_shift[0]), bits=bits, format=fmt)


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from([8, 4]), st.integers(1, 40),
       st.integers(1, 24), st.integers(1, 3), st.sampled_from(["none", "gate", "skip"]),
       st.data())
def test_lstm_cell_bit_exact(seed, bits, Kx, H, M, zero, data):
    fmt = data.draw(st.sampled_from(formats_for(bits)))
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.input("x", Kx)
    h = g.input("h", H)
    c = g.input("c", H, "int16")
    p = lstm_params(rng, Kx, H, bits, fmt, float(rng.choice([0.0, 0.5, 0.9])))
    ho, co = g.lstm_cell(x, h, c, name="lstm", **p)
    g.output(ho, co)
    sess = Session(compile_graph(g, hw(zero=zero, rows=4, cols=4), tile_bytes=64))
    hs = rng.integers(-128, 128, (M, H)).astype(np.int8)
    cs = rng.integers(-32768, 32768, (M, H)).astype(np.int16)
    for _ in range(3):   # a few recurrent steps: state feeds back
        xs = rng.integers(-128, 128, (M, Kx)).astype(np.int8)
        inp = {"x": xs, "h": hs, "c": cs}
        res = sess.run(inp)
        want = ref.run_graph(g, inp)
        np.testing.assert_array_equal(res.outputs["lstm:h"], want["lstm:h"])
        np.testing.assert_array_equal(res.outputs["lstm:c"], want["lstm:c"])
        hs, cs = res.outputs["lstm:h"], res.outputs["lstm:c"]


def test_lstm_cell_tracks_float_lstm():
    """The documented fixed-point formats give a usable LSTM: close to float math."""
    rng = np.random.default_rng(3)
    Kx, H = 16, 8
    wx_f = rng.normal(0, 0.3, (4 * H, Kx))
    wh_f = rng.normal(0, 0.3, (4 * H, H))
    b_f = rng.normal(0, 0.1, 4 * H)
    s_x, s_h = 2.0 / 127, 1.0 / 127
    sw_x = np.abs(wx_f).max(axis=1) / 127
    sw_h = np.abs(wh_f).max(axis=1) / 127
    wx = np.round(wx_f / sw_x[:, None]).astype(np.int8)
    wh = np.round(wh_f / sw_h[:, None]).astype(np.int8)
    bias = np.round(b_f / (s_x * sw_x)).astype(np.int64)
    q = ref.lstm_multipliers(s_x, s_h, sw_x, sw_h)
    mx, sx, mh, sh = q["mult_x"], q["shift_x"], q["mult_h"], q["shift_h"]
    hm, hs = [q["h_mult"]], [q["h_shift"]]
    x_f = rng.uniform(-2, 2, (1, Kx))
    h_f = rng.uniform(-1, 1, (1, H))
    c_f = rng.uniform(-2, 2, (1, H))
    xq = np.clip(np.round(x_f / s_x), -128, 127).astype(np.int8)
    hq = np.clip(np.round(h_f / s_h), -128, 127).astype(np.int8)
    cq = np.round(c_f * 4096).astype(np.int16)
    h2, c2 = ref.lstm_cell(xq, hq, cq, wx, wh, bias, mx, sx, mh, sh, int(hm[0]), int(hs[0]))
    z = (xq * s_x) @ (wx * sw_x[:, None]).T + b_f + (hq * s_h) @ (wh * sw_h[:, None]).T
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, gg, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
    c_ref = f * (cq / 4096) + i * gg
    h_ref = o * np.tanh(c_ref)
    assert np.abs(c2 / 4096 - c_ref).max() < 0.01
    assert np.abs(h2 * s_h - h_ref).max() < 0.02


def test_lut16_interpolation_and_tables():
    t = ref.sigmoid_table()
    assert t.shape == (513,) and t.dtype == np.int16
    x = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    y = ref.lut(x, t).astype(np.float64) / 32768
    assert np.abs(y - 1 / (1 + np.exp(-x.astype(np.float64) / 4096.0))).max() < 2e-4


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 40), st.integers(1, 6))
def test_embedding_bit_exact(seed, V, D, M):
    rng = np.random.default_rng(seed)
    table = rng.integers(-128, 128, (V, D)).astype(np.int8)
    g = Graph()
    idx = g.index_input("tok")
    e = g.embedding(idx, table, name="emb")
    g.output(e)
    sess = Session(compile_graph(g, hw()))
    ids = rng.integers(0, V, M)
    res = sess.run({"tok": ids})
    np.testing.assert_array_equal(res.outputs["emb:out"], ref.run_graph(g, {"tok": ids})["emb:out"])


def test_quantize_multiplier_roundtrip():
    real = np.array([1e-9, 1e-5, 0.3, 0.999999, 1.0, 7.5, 1e5])
    m, s = ref.quantize_multiplier(real)
    assert np.all((m >= 2**30) & (m < 2**31)) and np.all((s >= 1) & (s <= 62))
    np.testing.assert_allclose(m / 2.0**s, real, rtol=1e-9)


def test_multi_op_graph_chains_exactly():
    rng = np.random.default_rng(7)
    g = Graph()
    x = g.input("x", 24)
    w1 = rng.integers(-128, 128, (32, 24)).astype(np.int8)
    w2 = rng.integers(-8, 8, (10, 32)).astype(np.int8)
    m1, s1 = ref.quantize_multiplier(np.full(32, 1 / 3000.0))
    m2, s2 = ref.quantize_multiplier(np.full(10, 1 / 400.0))
    h = g.matmul(x, w1, mult=m1, shift=s1, name="fc1")
    a = g.lut(h, ref.table8(np.tanh, 1 / 32, 1 / 127), name="act")
    y = g.matmul(a, w2, mult=m2, shift=s2, bits=4, format="int4", name="fc2")
    g.output(y, h)
    prog = compile_graph(g, hw())
    xs = rng.integers(-128, 128, (3, 24)).astype(np.int8)
    res = Session(prog).run({"x": xs})
    want = ref.run_graph(g, {"x": xs})
    for k in want:
        np.testing.assert_array_equal(res.outputs[k], want[k])
    assert [r["name"] for r in res.stats.to_dict()["ops"]] == ["fc1", "act", "fc2"]


def test_run_input_errors():
    from azsim.errors import ModelError
    g = matmul_graph(np.ones((4, 8), np.int8))
    s = Session(compile_graph(g, hw()))
    with pytest.raises(ModelError, match="missing input 'x'"):
        s.run({})
    with pytest.raises(ModelError, match="dtype"):
        s.run({"x": np.zeros(8, np.int16)})
    with pytest.raises(ModelError, match="shape"):
        s.run({"x": np.zeros((1, 9), np.int8)})


def test_groups_share_one_chip_and_broadcast_rows():
    """An RNN-T-shaped graph: encoder / predictor / joint groups on one Session."""
    rng = np.random.default_rng(11)
    D, V, E = 16, 12, 8
    g = Graph("rnnt")
    with g.group("enc"):
        f = g.input("feat", 20)
        m, s = ref.quantize_multiplier(np.full(D, 1 / 2000.0))
        enc = g.matmul(f, rng.integers(-128, 128, (D, 20)), mult=m, shift=s, name="enc_fc")
    with g.group("pred"):
        tok = g.index_input("tok")
        emb = g.embedding(tok, rng.integers(-128, 128, (V, E)), name="emb")
        pred = g.matmul(emb, rng.integers(-8, 8, (D, E)), mult=m, shift=s, bits=4,
                        format="int4", name="pred_fc")
    with g.group("joint"):
        je = g.input("enc_in", D)
        jp = g.input("pred_in", D)
        z = g.add(je, jp, a_mult=1 << 20, b_mult=1 << 20, shift=21, name="jadd")
        t = g.lut(z, ref.table8(np.tanh, 1 / 32, 1 / 127), name="jtanh")
        mo, so = ref.quantize_multiplier(np.full(V, 1 / 500.0))
        logits = g.matmul(t, rng.integers(-128, 128, (V, D)), mult=mo, shift=so,
                          out_dtype="int16", name="jout")
    g.output(enc, pred, logits)
    assert g.groups == ["enc", "pred", "joint"]
    prog = compile_graph(g, hw())
    sess = Session(prog)
    feat = rng.integers(-128, 128, (1, 20)).astype(np.int8)
    r_enc = sess.run({"feat": feat}, arrival_cycle=0, group="enc")
    assert list(r_enc.outputs) == ["enc_fc:out"]
    np.testing.assert_array_equal(r_enc.outputs["enc_fc:out"],
                                  ref.run_graph(g, {"feat": feat}, group="enc")["enc_fc:out"])
    r_pred = sess.run({"tok": np.array([1, 5, 7])}, group="pred")
    assert r_pred.start_cycle == r_enc.end_cycle and r_pred.outputs["pred_fc:out"].shape == (3, D)
    inp = {"enc_in": r_enc.outputs["enc_fc:out"], "pred_in": r_pred.outputs["pred_fc:out"]}
    r_joint = sess.run(inp, group="joint")
    want = ref.run_graph(g, inp, group="joint")["jout:out"]
    assert want.shape == (3, V)
    np.testing.assert_array_equal(r_joint.outputs["jout:out"], want)
    assert r_joint.stats.op_names == ["jadd", "jtanh", "jout"]
    tot = sess.totals()
    assert tot.calls == 3 and tot["macs"] == 20 * D + 3 * E * D + 3 * D * V
    from azsim.errors import ModelError
    with pytest.raises(ModelError, match="unknown group"):
        sess.run({}, group="nope")
    with pytest.raises(ModelError, match="indices"):
        sess.run({"tok": np.array([V])}, group="pred")


def test_portable_kernels_match_reference():
    """AZSIM_NO_SIMD=1 forces the scalar matmul and popcount paths (the ones a
    CPU without AVX2/POPCNT runs); they must give the same bits and counts."""
    import subprocess
    import sys
    code = (
        "import numpy as np\n"
        "from azsim import reference as ref\n"
        "from azsim.compile import compile as C\n"
        "from azsim.engine import Session\n"
        "import engine_helpers as H\n"
        "rng = np.random.default_rng(1)\n"
        "for M, K, N in ((1, 100, 37), (3, 64, 20), (2, 333, 9)):\n"
        "    w = H.random_weights(rng, N, K, 8, 0.5, 'dense')\n"
        "    x = rng.integers(-128, 128, (M, K)).astype(np.int8)\n"
        "    g = H.matmul_graph(w, out_dtype='int32')\n"
        "    for zero in ('gate', 'skip'):\n"
        "        r = Session(C(g, H.hw(zero=zero), tile_bytes=96)).run({'x': x})\n"
        "        assert np.array_equal(r.outputs['fc:out'], ref.matmul(x, w))\n"
        "        nz = int(((w != 0)[None] & (x != 0)[:, None]).sum())\n"
        "        if zero == 'gate':\n"
        "            assert r.stats['macs_gated'] == M * K * N - nz\n"
        "        else:\n"
        "            act = (x != 0).any(axis=0)\n"
        "            assert r.stats['macs_executed'] == M * ((w != 0) & act).sum()\n"
        "print('ok')\n")
    import os
    env = dict(os.environ, AZSIM_NO_SIMD="1")
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), here, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_graph_errors_name_op_and_field():
    from azsim.errors import ModelError
    g = Graph()
    x = g.input("x", 4)
    x16 = g.input("x16", 4, "int16")
    cases = [
        (lambda: g.matmul(x, np.ones((2, 5), np.int8), mult=1, shift=1, name="a"), "'a': weight: K = 5"),
        (lambda: g.matmul(x16, np.ones((2, 4), np.int8), mult=1, shift=1, name="b"), "'b': x"),
        (lambda: g.matmul(x, np.ones((2, 4), np.int8), name="c"), "'c': mult"),
        (lambda: g.matmul(x, np.ones((2, 4), np.int8), mult=1, shift=63, name="d"),
         r"'d': shift: values must lie in \[1, 62\]"),
        (lambda: g.matmul(x, np.ones((2, 4), np.int8), mult=2**31, shift=1, name="e"), "'e': mult"),
        (lambda: g.add(x, g.input("y", 5), a_mult=1, b_mult=1, shift=1, name="f"), "'f': b"),
        (lambda: g.lut(x, np.zeros(10, np.int8), name="h"), "'h': table"),
        (lambda: g.requant(x, mult=[1, 2], shift=1, name="i"), "'i': mult"),
        (lambda: g.input("x", 4), "used twice"),
        (lambda: g.input("z", 0), "cols"),
    ]
    for fn, msg in cases:
        with pytest.raises(ModelError, match=msg):
            fn()
