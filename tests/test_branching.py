"""Branching encoder: backlog (hand cases), Gumbel routing, the model, chip/host costs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from asr import text as asr_text
from asr.branching.backlog import (average_cost_penalty, backlog, backlog_penalty, backlog_torch,
                                   timeline)
from asr.branching.gumbel import anneal_temperature, gumbel_softmax_st
from asr.model.rnnt import RNNT, ModelConfig

TINY = dict(input_dim=240, encoder_layers=2, encoder_dim=16, pred_embed_dim=8, pred_dim=16,
            pred_layers=1, joint_dim=12)


# --- backlog --------------------------------------------------------------------------------

def test_backlog_hand_cases():
    # budget 10: 15 -> 5 queued; 15 -> 10; 0 -> 0; 12 -> 2; 5 -> 0
    assert backlog([15, 15, 0, 12, 5], 10).tolist() == [5, 10, 0, 2, 0]
    assert backlog([3, 4, 9], 10).tolist() == [0, 0, 0]          # never behind
    assert backlog([20, 20, 20], 10).tolist() == [10, 20, 30]     # falls behind linearly
    # Same total work, different order: expensive frames at the end leave a backlog at the end
    # (the end-of-speech latency), expensive frames early are absorbed by the cheap ones after.
    assert backlog([20, 20, 0, 0], 10).tolist() == [10, 20, 10, 0]
    assert backlog([0, 0, 20, 20], 10).tolist() == [0, 0, 10, 20]
    with pytest.raises(ValueError):
        backlog([1.0], 0)


def test_backlog_torch_matches_numpy_and_has_gradient():
    c = torch.tensor([[15.0, 15, 0, 12, 5], [20, 20, 20, 0, 0]], requires_grad=True)
    b = backlog_torch(c, 10.0)
    assert b.detach().numpy().tolist() == [backlog([15, 15, 0, 12, 5], 10).tolist(),
                                           backlog([20, 20, 20, 0, 0], 10).tolist()]
    b[:, -1].sum().backward()
    # Row 0's final backlog is 0: no gradient. Row 1: b_4 = 0 as well (20+20+20-50 < 0? no:
    # 10, 20, 30, 20, 10) -> d b_4 / d c_t = 1 for every t.
    assert c.grad[0].tolist() == [0, 0, 0, 0, 0]
    assert c.grad[1].tolist() == [1, 1, 1, 1, 1]


def test_penalties_mask_padding():
    c = torch.tensor([[20.0, 20, 0, 0], [20, 20, 99, 99]])
    lens = torch.tensor([4, 2])
    # Valid b: row0 [10, 20, 10, 0], row1 [10, 20] -> mean over 6 frames / 10
    assert float(backlog_penalty(c, lens, 10.0)) == pytest.approx((10 + 20 + 10 + 0 + 10 + 20) / 6 / 10)
    assert float(average_cost_penalty(c, lens, 10.0)) == pytest.approx((40 + 40) / 6 / 10)


def test_timeline_matches_backlog_identity():
    rng = np.random.default_rng(0)
    costs = rng.uniform(0, 0.05, 40)      # seconds of work per 30 ms frame
    tl = timeline(costs, 0.030)
    b = backlog(costs, 0.030)
    # The wait of frame t+1 is the backlog after frame t.
    assert np.allclose(tl["wait_s"][1:], b[:-1])
    assert tl["latency_s"] == pytest.approx(b[-2] + costs[-1])
    assert timeline([0.01, 0.01], 0.030)["latency_s"] == pytest.approx(0.01)


# --- Gumbel routing -------------------------------------------------------------------------

def test_gumbel_forward_is_hard_one_hot():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, 2)
    y = gumbel_softmax_st(logits, 0.5, g)
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    assert torch.all(y.sum(-1) == 1)
    # Without noise the choice is the argmax.
    y0 = gumbel_softmax_st(logits, 0.5, noise=False)
    assert torch.equal(y0.argmax(-1), logits.argmax(-1))


def test_gumbel_straight_through_gradient_is_soft_gradient():
    logits = torch.tensor([[0.3, -0.2], [1.0, 2.0]], requires_grad=True)
    w = torch.tensor([[1.0, 3.0], [-2.0, 0.5]])
    g = torch.Generator().manual_seed(1)
    y = gumbel_softmax_st(logits, 0.7, g)
    (y * w).sum().backward()
    grad_st = logits.grad.clone()
    # Same noise, the relaxed sample's gradient.
    logits2 = logits.detach().clone().requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    from asr.branching.gumbel import sample_gumbel
    soft = torch.softmax((logits2 + sample_gumbel(logits2.shape, g)) / 0.7, -1)
    (soft * w).sum().backward()
    assert torch.allclose(grad_st, logits2.grad)
    assert grad_st.abs().sum() > 0


def test_gumbel_sampling_follows_softmax():
    g = torch.Generator().manual_seed(2)
    logits = torch.tensor([1.0, 0.0]).expand(20000, 2)
    y = gumbel_softmax_st(logits, 1.0, g)
    p = float(y[:, 0].mean())
    assert p == pytest.approx(float(torch.softmax(torch.tensor([1.0, 0.0]), 0)[0]), abs=0.02)


def test_temperature_annealing():
    taus = [anneal_temperature(s, 50, 2.0, 0.1) for s in range(60)]
    assert taus[0] == pytest.approx(2.0) and taus[49] == pytest.approx(0.1) and taus[59] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(taus[:49], taus[1:50]))
    # Low temperature: the relaxed sample is already (nearly) one-hot.
    logits = torch.tensor([[0.2, 0.0]])
    soft = torch.softmax(logits / taus[49], -1)
    assert float(soft.max()) > 0.85


# --- the model ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    m = RNNT(ModelConfig(**TINY))
    m.eval()
    return m


def test_forced_full_equals_base_encoder(base):
    from asr.branching.model import BranchingRNNT
    x = torch.randn(2, 9, 240)
    m = BranchingRNNT(base, lean="lowrank", rank=4, force="full").eval()
    with torch.no_grad():
        ours, _ = m.encode(x)
        ref, _ = base.encode(x)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_full_rank_lowrank_lean_equals_full(base):
    from asr.branching.model import BranchingRNNT
    x = torch.randn(2, 9, 240)
    m = BranchingRNNT(base, lean="lowrank", rank=64, force="lean").eval()   # rank >= min dims
    with torch.no_grad():
        ours, _ = m.encode(x)
        ref, _ = base.encode(x)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_routed_output_uses_chosen_branch_per_frame(base):
    from asr.branching.model import BranchingRNNT
    torch.manual_seed(3)
    x = torch.randn(1, 8, 240)
    m = BranchingRNNT(base, lean="sparse", sparsity=0.7).eval()
    with torch.no_grad():
        enc, _ = m.encode(x)
        route = m.last_route[0].bool()
        # Replay by hand: each layer, each frame, the chosen branch's weights only.
        h_in = base.normalize(x)[0]
        for layer in m.layers:
            h = torch.zeros(layer.hidden)
            c = torch.zeros(layer.hidden)
            outs = []
            for t in range(8):
                if route[t]:
                    g = layer.w_ih @ h_in[t] + layer.bias + layer.w_hh @ h
                else:
                    g = (layer.l_ih * layer.m_ih) @ h_in[t] + layer.lean_bias + (layer.l_hh * layer.m_hh) @ h
                i, f, gg, o = g.chunk(4)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
                outs.append(h)
            h_in = torch.stack(outs)
        ref = base.enc_proj(h_in)
    assert torch.allclose(enc[0], ref, atol=1e-5)
    assert 0.6 < float((m.layers[0].m_ih == 0).float().mean()) < 0.8


def test_arbitrator_reads_previous_top_layer_state(base):
    """Route t is decided from x_t and the top layer's output of frame t-1 (zeros at t = 0)."""
    from asr.branching.model import BranchingRNNT
    torch.manual_seed(4)
    x = torch.randn(2, 7, 240)
    m = BranchingRNNT(base, lean="lowrank", rank=3).eval()
    seen = []
    step = m.arbitrator.step

    def spy(x_t, enc_h, state):
        seen.append((x_t.clone(), enc_h.clone()))
        return step(x_t, enc_h, state)

    m.arbitrator.step = spy
    with torch.no_grad():
        m.encode(x)
        route = m.last_route.bool()
        # Replay the encoder with the recorded routes to get the top layer's h_t.
        h_in = base.normalize(x)
        for layer in m.layers:
            h = torch.zeros(2, layer.hidden)
            c = torch.zeros(2, layer.hidden)
            outs = []
            for t in range(7):
                gf = layer.full_in(h_in[:, t]) + layer.full_rec(h)
                gl = layer.lean_in(h_in[:, t]) + layer.lean_rec(h)
                h, c = layer.cell(torch.where(route[:, t, None], gf, gl), c)
                outs.append(h)
            h_in = torch.stack(outs, dim=1)
        tops = h_in
    assert len(seen) == 7
    assert torch.all(seen[0][1] == 0)
    for t in range(1, 7):
        assert torch.allclose(seen[t][1], tops[:, t - 1], atol=1e-6)
        assert torch.allclose(seen[t][0], base.normalize(x)[:, t])
    # The state changes the decision: the same input frame with another encoder state gives
    # other logits.
    s0 = m.arbitrator.init_state(1)
    a, _ = step(seen[3][0][:1], seen[3][1][:1], s0)
    b, _ = step(seen[3][0][:1], seen[3][1][:1] + 0.5, s0)
    assert not torch.allclose(a, b)


def test_lean_teacher_distillation(base):
    """A forced lean model with a teacher computes the same output as without one, plus a
    per-frame gate MSE against the full branch that is 0 where the two branches agree."""
    import copy
    from asr.branching.model import BranchingRNNT
    x = torch.randn(2, 6, 240)
    plain = BranchingRNNT(copy.deepcopy(base), lean="lowrank", rank=3, force="lean").train()
    taught = BranchingRNNT(copy.deepcopy(base), lean="lowrank", rank=3, force="lean", teacher=True).train()
    with torch.no_grad():
        a, _ = plain.encode(x)
        b, _ = taught.encode(x)
    assert torch.allclose(a, b, atol=1e-5)
    assert plain.last_distill is None
    assert taught.last_distill.shape == (2, 6) and float(taught.last_distill.min()) > 0
    exact = BranchingRNNT(copy.deepcopy(base), lean="lowrank", rank=64, force="lean", teacher=True).train()
    with torch.no_grad():
        exact.encode(x)
    assert float(exact.last_distill.max()) < 1e-8     # full rank: lean == full
    taught.eval()
    with torch.no_grad():
        taught.encode(x)
    assert taught.last_distill is None                # deployed: the lean branch alone


def test_training_steps_run_and_sparse_mask_holds(base):
    import copy
    from asr.branching.model import BranchingRNNT
    from asr.branching.train import BranchTrainConfig, train_branching
    from asr.train.loop import Example
    rng = np.random.default_rng(0)
    ex = [Example(rng.normal(0, 1, (10, 240)).astype(np.float16),
                  np.asarray(asr_text.encode(t), np.int64), t) for t in ("call ann", "stop", "ring bo")]
    m = BranchingRNNT(copy.deepcopy(base), lean="sparse", sparsity=0.5)
    full_before = m.layers[0].w_ih.detach().clone()
    lean_before = m.layers[0].l_ih.detach().clone()
    hist = train_branching(m, ex, BranchTrainConfig(steps=3, batch_size=3, penalty="backlog", lam=1.0,
                                                    distill=1.0),
                           cost_full=1.5, cost_lean=0.5)
    assert len(hist) == 3 and all(np.isfinite(h["rnnt"]) for h in hist)
    assert all(h["distill"] > 0 for h in hist)
    # Default lr 0: the shipped parts stay as shipped (and trainable again afterwards); the
    # lean branch moved.
    assert torch.equal(m.layers[0].w_ih, full_before) and m.layers[0].w_ih.requires_grad
    assert not torch.equal(m.layers[0].l_ih, lean_before)
    assert hist[-1]["tau"] == pytest.approx(0.1)
    for layer in m.layers:
        assert torch.all(layer.l_ih[layer.m_ih == 0] == 0)
    # Gradient reached the arbitrator through the straight-through routing and the penalty.
    assert m.arbitrator.out.weight.grad is not None and m.arbitrator.out.weight.grad.abs().sum() > 0
    # ... and to the weights that read the encoder state (columns after the 240 input features).
    assert m.arbitrator.inp.weight.grad[:, 240:].abs().sum() > 0


# --- costs ----------------------------------------------------------------------------------

def test_chip_and_host_costs(base):
    from asr.branching.costs import ChipFrames, host_flops, steady_cycles
    from asr.branching.model import BranchingRNNT
    from azsim import hw as azhw
    m = BranchingRNNT(base, lean="lowrank", rank=2)
    mats = m.branch_matrices()
    fl = host_flops(mats)
    assert fl["lean"] < fl["full"]
    dense_full = 2 * sum(w.numel() for _, w in mats["full"] + mats["arbitrator"] + mats["shared"])
    assert fl["full"] == dense_full
    chip = ChipFrames(mats, azhw.load("default"))
    cyc = steady_cycles(chip)
    assert 0 < cyc["lean"] < cyc["full"]
    # The arbitrator's first matrix reads the input frame and the encoder's top-layer state.
    arb = dict(mats["arbitrator"])
    assert arb["inp"].shape == (32, 240 + TINY["encoder_dim"])
    assert fl["arbitrator"] == 2 * sum(w.numel() for w in arb.values())
    # The Session's timeline: idle chip, cheap frames -> latency = the last frame's own work.
    r = chip.run_utterance([True, False, True])
    assert r["latency_s"] * chip.clock_hz == pytest.approx(r["cycles"][-1])

def test_chip_backlog_on_a_slow_clock():
    from asr.branching.backlog import timeline
    from asr.branching.costs import ChipFrames, steady_cycles
    from asr.branching.model import BranchingRNNT
    from azsim import hw as azhw
    torch.manual_seed(0)
    big = RNNT(ModelConfig(**{**TINY, "encoder_dim": 128}))
    mats = BranchingRNNT(big, lean="lowrank", rank=8).branch_matrices()
    slow = azhw.load("default").with_overrides({"clock_hz": 1e6})
    chip = ChipFrames(mats, slow)
    cyc = steady_cycles(chip)
    assert cyc["full"] > 30_000 > cyc["lean"]        # full frames slower than real time
    route = [True] * 6 + [False] * 4
    r = chip.run_utterance(route)
    assert list(r["cycles"]) == [cyc["full"] if f else cyc["lean"] for f in route]
    tl = timeline(np.array(r["cycles"]) / 1e6, 0.030)
    assert r["latency_s"] == pytest.approx(tl["latency_s"], abs=2e-6)
    assert r["max_wait_s"] > 0.0


def test_experiment_cli_rejects_bad_options(capsys):
    from azsim.cli import main
    assert main(["experiment", "amortized", "--quick", "--load", "0.5"]) == 2
    assert "--load" in capsys.readouterr().err
    assert main(["experiment", "amortized", "--quick", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
    for opt, bad in (("--sparsity", "0.99"), ("--lean-ratio", "0"), ("--distill", "-1"), ("--lean-lr", "0")):
        assert main(["experiment", "amortized", "--quick", opt, bad]) == 2
        assert opt in capsys.readouterr().err
    assert main(["experiment", "amortized", "--quick", "--medium"]) == 2
    assert "--medium" in capsys.readouterr().err


def test_amortized_resumes_finished_rows(tmp_path):
    """An interrupted run's finished models are reused, not retrained; --fresh redoes them."""
    from corpus_helpers import fake_corpus
    from asr.experiments import amortized as A
    texts = ["call mom", "turn on the lights", "stop", "what time is it", "play music", "pause"]
    corpus = fake_corpus(tmp_path, {"train": texts, "test_clean": texts[:2]})
    small = dict(n_train=6, n_test=2, steps=1, batch_size=2, progress=False, corpus=corpus)
    first = A.run(models=["full", "lowrank"], fresh=True, **small)
    again = A.run(models=["full", "lowrank"], **small)
    assert again["resumed"] == ["full", "lowrank"]
    assert [r["wer"] for r in again["rows"]] == [r["wer"] for r in first["rows"]]
    assert A.run(models=["full"], fresh=True, **small)["resumed"] == []
