"""Timing and energy directions on constructed cases whose answers follow by hand
from the rules documented in csrc/azsim/engine.hpp and engine.cpp."""
from __future__ import annotations

import math

import numpy as np
import pytest

from azsim import reference as ref
from azsim.compile import compile as compile_graph
from azsim.engine import Session
from azsim.errors import ConfigError
from azsim.graph import Graph

from engine_helpers import hw, matmul_graph, random_weights, run_once

R = C = 8
WS_FOLD = 2 * R + C - 2 + 1   # WS fold with M = 1: fill + drain + 1 streamed row


def lanes_with_nnz(counts, K=64, seed=0) -> np.ndarray:
    """(len(counts), K) weights; lane n has exactly counts[n] nonzeros."""
    rng = np.random.default_rng(seed)
    w = np.zeros((len(counts), K), np.int8)
    for n, c in enumerate(counts):
        pos = rng.choice(K, size=c, replace=False)
        w[n, pos] = rng.choice([-3, -1, 2, 5], size=c)
    return w


def compute_cycles(w, zero="skip", dataflow="ws", x=None, **over):
    K = w.shape[1]
    x = np.full((1, K), 3, np.int8) if x is None else x
    _, _, res = run_once(matmul_graph(w), hw(zero=zero, dataflow=dataflow, rows=R, cols=C, **over), x)
    return res


def test_dense_cycles_match_scalesim_formulas():
    M, K, N, r, c = 5, 40, 24, 8, 16
    want = {"ws": math.ceil(K / r) * math.ceil(N / c) * (2 * r + c + M - 2) - 1,
            "os": math.ceil(M / r) * math.ceil(N / c) * (r + c + K - 2) - 1,
            "is": math.ceil(K / r) * math.ceil(M / c) * (2 * r + c + N - 2) - 1}
    rng = np.random.default_rng(0)
    w = random_weights(rng, N, K, 8, 0.0, "dense")
    x = rng.integers(-128, 128, (M, K)).astype(np.int8)
    for df, cyc in want.items():
        for tile_bytes in (64, 100000):   # tiling must not change the dense total
            _, _, res = run_once(matmul_graph(w), hw(dataflow=df, rows=r, cols=c), x,
                                 tile_bytes=tile_bytes)
            assert res.stats["compute_cycles"] == cyc, (df, tile_bytes)


def test_skip_cycles_fall_with_sparsity_ws():
    dense = 8 * WS_FOLD - 1       # ceil(64/8) K-folds x 1 N-fold, minus SCALE-Sim's last index
    seen = []
    for nnz in (64, 48, 32, 16, 8):
        res = compute_cycles(lanes_with_nnz([nnz] * 8))
        kfolds = math.ceil(nnz / R)
        assert res.stats["compute_cycles"] == math.ceil(dense * kfolds / 8)
        seen.append(res.stats["compute_cycles"])
        assert res.stats["macs_executed"] == 8 * nnz
        assert res.stats["macs_skipped"] == 8 * 64 - 8 * nnz
    assert seen == sorted(seen, reverse=True) and seen[0] > seen[-1]
    assert compute_cycles(lanes_with_nnz([64] * 8), zero="none").stats["compute_cycles"] == dense


def test_skip_imbalance_one_dense_lane_holds_everyone_up():
    dense = 8 * WS_FOLD - 1
    unbalanced = compute_cycles(lanes_with_nnz([64, 0, 0, 0, 0, 0, 0, 0]))
    balanced = compute_cycles(lanes_with_nnz([8] * 8))        # same 64 nonzeros in total
    assert unbalanced.stats["macs_executed"] == balanced.stats["macs_executed"] == 64
    assert unbalanced.stats["compute_cycles"] == dense          # 8 K-folds, like dense
    assert balanced.stats["compute_cycles"] == math.ceil(dense / 8)   # 1 K-fold
    assert unbalanced.stats["compute_cycles"] > balanced.stats["compute_cycles"]


def test_skip_activation_zeros_count_for_matrix_vector():
    w = lanes_with_nnz([64] * 8)
    x = np.full((1, 64), 3, np.int8)
    x[0, 32:] = 0
    res = compute_cycles(w, x=x)
    assert res.stats["macs_executed"] == 8 * 32
    assert res.stats["compute_cycles"] == math.ceil((8 * WS_FOLD - 1) * 4 / 8)


@pytest.mark.parametrize("dataflow", ["os", "is"])
def test_skip_cycles_fall_with_sparsity_os_is(dataflow):
    seen = [compute_cycles(lanes_with_nnz([nnz] * 8), dataflow=dataflow).stats["compute_cycles"]
            for nnz in (64, 32, 8)]
    assert seen[0] > seen[1] > seen[2]
    none = compute_cycles(lanes_with_nnz([64] * 8), zero="none", dataflow=dataflow)
    assert seen[0] == none.stats["compute_cycles"]
    if dataflow == "os":   # one fold: (R + C - 2 + K) - 1 dense; K -> 32 under skip
        assert seen[1] == math.ceil((R + C - 2 + 64 - 1) * (R + C - 2 + 32) / (R + C - 2 + 64))


def test_gate_lowers_energy_not_cycles():
    rng = np.random.default_rng(1)
    w = random_weights(rng, 16, 64, 8, 0.6, "dense")
    x = rng.integers(-128, 128, (1, 64)).astype(np.int8)
    x[0, :10] = 0
    none = compute_cycles(w, zero="none", x=x).stats
    gate = compute_cycles(w, zero="gate", x=x).stats
    assert gate["cycles"] == none["cycles"]
    assert gate["compute_cycles"] == none["compute_cycles"]
    nz = int(((w != 0) & (x[0] != 0)[None, :]).sum())
    assert gate["macs_gated"] == 16 * 64 - nz
    assert gate["energy_mac_pj"] == pytest.approx(nz * 1.0 + (16 * 64 - nz) * 0.1)
    assert none["energy_mac_pj"] == pytest.approx(16 * 64 * 1.0)
    assert gate["energy_total_pj"] < none["energy_total_pj"]


def test_compressed_formats_cut_offchip_bytes():
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (1, 256)).astype(np.int8)
    for sparsity in (0.5, 0.9):
        w = random_weights(rng, 64, 256, 8, sparsity, "dense")
        by = {}
        for fmt in ("dense", "bitmask", "rle"):
            prog, _, res = run_once(matmul_graph(w, fmt=fmt), hw(), x, placement="stream")
            by[fmt] = res.stats["offchip_read_bytes"]
            assert by[fmt] == prog.weight_bytes   # burst 1: bus bytes = stream bytes
        assert by["bitmask"] < by["dense"] and by["rle"] < by["dense"]
    wc = random_weights(rng, 64, 256, 8, 0.0, "codebook")   # 15 levels: 4-bit indices
    dense = run_once(matmul_graph(wc), hw(), x, placement="stream")[2].stats["offchip_read_bytes"]
    cb = run_once(matmul_graph(wc, fmt="codebook"), hw(), x,
                  placement="stream")[2].stats["offchip_read_bytes"]
    assert cb < 0.6 * dense


def _tiled(cfg, tile_bytes=1024):
    rng = np.random.default_rng(4)
    w = random_weights(rng, 64, 256, 8, 0.0, "dense")
    x = rng.integers(-128, 128, (1, 256)).astype(np.int8)
    prog, _, res = run_once(matmul_graph(w), cfg, x, placement="stream", tile_bytes=tile_bytes)
    return prog, res.stats


def test_decoder_slower_than_memory_is_the_bottleneck():
    prog, s = _tiled(hw(decoder_bytes_per_cycle=0.25))
    tiles = prog.native.weight_tiles(0)
    assert len(tiles["bytes"]) == 16
    dec = int(tiles["decode_cycles"].sum())
    assert s["stall_decoder_cycles"] > 0.9 * (s["cycles"] - s["compute_cycles"])
    assert s["stall_memory_cycles"] <= 16      # one cycle per DMA at 1e6 B/cycle
    assert s["cycles"] >= dec                  # the decoder is busy end to end
    assert s["cycles"] <= dec + s["compute_cycles"] + 16 + s["vector_cycles"]


def test_memory_slower_than_decoder_stalls_on_memory():
    prog, s = _tiled(hw(offchip_bytes_per_cycle=0.25, offchip_latency_cycles=50))
    tiles = prog.native.weight_tiles(0)
    dma = [50 + math.ceil(b / 0.25) for b in tiles["bytes"]]
    last_compute = s["compute_cycles"] / 16     # equal tiles: equal shares (dense)
    assert s["stall_memory_cycles"] > 0.99 * (s["cycles"] - s["compute_cycles"] - s["vector_cycles"])
    # DMAs back to back; each tile then takes 1 decode cycle; the last one computes.
    assert s["cycles"] - s["vector_cycles"] == pytest.approx(sum(dma) + 1 + last_compute, abs=1)


def test_resident_weights_are_fetched_once():
    rng = np.random.default_rng(5)
    w = random_weights(rng, 32, 64, 8, 0.0, "dense")
    x = rng.integers(-128, 128, (1, 64)).astype(np.int8)
    g = matmul_graph(w)
    prog = compile_graph(g, hw())
    assert prog.weights[0].resident
    assert prog.weight_sram_used_bytes == prog.weight_bytes + 2 * prog.weights[0].max_tile_bytes
    assert prog.peak_act_bytes(rows=2) == 2 * (64 + 32)     # int8 x (64) and y (32) per row
    s = Session(prog)
    first, second = s.run({"x": x}).stats, s.run({"x": x}).stats
    assert first["offchip_read_bytes"] == prog.weight_bytes
    assert second["offchip_read_bytes"] == 0
    assert second["cycles"] < first["cycles"]
    assert s.totals()["offchip_read_bytes"] == prog.weight_bytes
    streamed = Session(compile_graph(g, hw(), placement="stream"))
    a, b = streamed.run({"x": x}).stats, streamed.run({"x": x}).stats
    assert a["offchip_read_bytes"] == b["offchip_read_bytes"] == prog.weight_bytes
    # an SRAM that holds only the double buffer streams automatically
    tight = compile_graph(g, hw(weight_sram_bytes=2 * prog.weights[0].max_tile_bytes + 10))
    assert not tight.weights[0].resident


def test_session_clock_and_timeline():
    w = random_weights(np.random.default_rng(6), 16, 32, 8, 0.0, "dense")
    s = Session(compile_graph(matmul_graph(w), hw()))
    x = np.ones((1, 32), np.int8)
    r1 = s.run({"x": x}, arrival_cycle=0)
    r2 = s.run({"x": x}, arrival_cycle=1)          # chip still busy: queues
    r3 = s.run({"x": x}, arrival_cycle=10**9)      # chip idle: starts on arrival
    assert r1.start_cycle == 0 and r2.start_cycle == r1.end_cycle
    assert r3.start_cycle == 10**9 and r3.end_cycle > r3.start_cycle
    assert s.timeline == [(r.start_cycle, r.end_cycle) for r in (r1, r2, r3)]
    assert r1.end_cycle - r1.start_cycle == r1.stats["cycles"]
    s.reset()
    assert s.free_cycle == 0 and s.timeline == []


def test_energy_components_add_up_and_leakage():
    rng = np.random.default_rng(8)
    w = random_weights(rng, 16, 32, 8, 0.3, "dense")
    _, _, res = run_once(matmul_graph(w), hw(leakage_mw=2.0, clock_hz=5e8),
                         rng.integers(-128, 128, (2, 32)).astype(np.int8))
    d = res.stats.to_dict()
    e = d["energy_pj"]
    assert e["leakage"] == pytest.approx(2.0 * 1e9 * d["cycles"] / 5e8)
    assert e["total"] == pytest.approx(sum(v for k, v in e.items() if k != "total"))
    assert e["offchip"] == pytest.approx(d["offchip_read_bytes"] * 10.0)
    assert "ops" in d and d["ops"][0]["name"] == "fc"
    assert "fc" in res.stats.table()


def test_lstm_timing_streams_both_weights():
    rng = np.random.default_rng(9)
    H, Kx = 16, 24
    g = Graph()
    x, h, c = g.input("x", Kx), g.input("h", H), g.input("c", H, "int16")
    m, s = ref.quantize_multiplier(np.full(4 * H, 1e-3))
    hm, hs = ref.quantize_multiplier(1.0 / (2.0**30 / 127))
    ho, co = g.lstm_cell(x, h, c, wx=random_weights(rng, 4 * H, Kx, 8, 0, "dense"),
                         wh=random_weights(rng, 4 * H, H, 8, 0, "dense"), bias=np.zeros(4 * H),
                         mult_x=m, shift_x=s, mult_h=m, shift_h=s, h_mult=int(hm[0]),
                         h_shift=int(hs[0]), name="lstm")
    g.output(ho, co)
    prog = compile_graph(g, hw(), placement="stream")
    st = Session(prog).run({"x": np.ones((1, Kx), np.int8), "h": np.ones((1, H), np.int8),
                            "c": np.zeros((1, H), np.int16)}).stats
    assert st["macs"] == 4 * H * (Kx + H)
    assert st["offchip_read_bytes"] == prog.weight_bytes
    assert st["vector_ops"] > 0 and st["cycles"] > st["compute_cycles"]


# ---- bad configuration ---------------------------------------------------------
def test_bad_config_errors_name_the_field():
    w = np.ones((16, 16), np.int8)
    g = matmul_graph(w)
    with pytest.raises(ConfigError, match="weight_sram_bytes.*allowed: >= 128"):
        compile_graph(g, hw(weight_sram_bytes=100))
    with pytest.raises(ConfigError, match="bits"):
        compile_graph(g, hw(bits=4))
    with pytest.raises(ConfigError, match="format.*allowed"):
        compile_graph(matmul_graph(w, fmt="zip"), hw())
    with pytest.raises(ConfigError, match="decoder_formats"):
        compile_graph(matmul_graph(w, fmt="rle"), hw(decoder_formats=["dense"]))
    with pytest.raises(ConfigError, match="act_sram_bytes"):
        compile_graph(g, hw(act_sram_bytes=8))
    with pytest.raises(ConfigError, match="missing fields"):
        compile_graph(g, {"rows": 8})


def test_bad_hw_values_via_presets_name_the_field():
    from azsim import hw as hwmod
    base = hwmod.load("default")
    for path, value in (("mac_array.rows", 0), ("mac_array.bits", 3), ("sram.weight_bytes", -1),
                        ("decoder.formats", ["zip"]), ("sram.weight_bytes", 100)):
        with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
            base.with_overrides({path: value})


def test_weight_values_outside_bits_rejected():
    from azsim.errors import ModelError
    g = Graph()
    x = g.input("x", 4)
    with pytest.raises(ModelError, match="4-bit weights must lie in"):
        g.matmul(x, np.full((2, 4), 9), mult=1, shift=1, bits=4)
    with pytest.raises(ModelError, match="bits"):
        g.matmul(x, np.ones((2, 4)), mult=1, shift=1, bits=2)


@pytest.mark.parametrize("tile_bytes", [8 * 24, 8 * 64 * 2, 100000])   # unaligned / aligned / one K-tile
@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_skip_cycles_follow_the_documented_rule(tile_bytes, dataflow):
    """Re-derive the skip timing in numpy from the rule in engine.cpp (tile share of
    the dense total, scaled by effective / dense fold work) and compare."""
    rng = np.random.default_rng(12)
    N, K, M = 40, 300, 2
    w = random_weights(rng, N, K, 8, 0.0, "dense")
    w[rng.random((N, K)) < rng.uniform(0.2, 0.95, (N, 1))] = 0     # uneven lanes
    x = rng.integers(-128, 128, (M, K)).astype(np.int8)
    x[:, rng.random(K) < 0.2] = 0
    prog, _, res = run_once(matmul_graph(w), hw(zero="skip", dataflow=dataflow, rows=R, cols=C),
                            x, tile_bytes=tile_bytes)
    t = prog.native.weight_tiles(0)
    act = (x != 0).any(axis=0)
    nz = (w != 0) & act[None, :]
    assert res.stats["macs_executed"] == M * nz.sum()
    if dataflow == "ws":
        dense_total = math.ceil(K / R) * math.ceil(N / C) * (2 * R + C + M - 2) - 1
    else:
        dense_total = math.ceil(M / R) * math.ceil(N / C) * (R + C + K - 2) - 1
    fold = lambda T: 0 if T <= 0 else (R + C - 2 + T)  # noqa: E731  (OS fold, stream T)
    cum, prev, want = 0, 0, 0
    for n0, n1, k0, k1 in zip(t["n0"], t["n1"], t["k0"], t["k1"]):
        cum += (n1 - n0) * (k1 - k0)
        upto = cum * dense_total // (N * K)
        share, prev = upto - prev, upto
        eff = dense = 0
        for f0 in range(n0, n1, C):
            mx = nz[f0:min(n1, f0 + C), k0:k1].sum(axis=1).max()
            if dataflow == "ws":
                eff += math.ceil(mx / R)
                dense += math.ceil((k1 - k0) / R)
            else:
                eff += math.ceil(M / R) * fold(mx)
                dense += math.ceil(M / R) * fold(k1 - k0)
        want += math.ceil(share * eff / dense) if share else 0
    assert res.stats["compute_cycles"] == want


def test_embedding_on_a_4bit_array_and_its_traffic():
    table = np.arange(5 * 6, dtype=np.int64).reshape(5, 6).astype(np.int8)
    g = Graph()
    e = g.embedding(g.index_input("tok"), table, name="emb")
    g.output(e)
    s = Session(compile_graph(g, hw(bits=4, decoder_formats=["int4"])))
    r1, r2 = s.run({"tok": [4, 0]}), s.run({"tok": [1]})
    np.testing.assert_array_equal(r1.outputs["emb:out"], table[[4, 0]])
    assert r1.stats["offchip_read_bytes"] > 0 and r2.stats["offchip_read_bytes"] == 0  # resident
    streamed = Session(compile_graph(g, hw(), placement="stream"))
    assert streamed.run({"tok": [1, 2, 3]}).stats["offchip_read_bytes"] == 3 * 6
