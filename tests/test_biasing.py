"""Context biasing: the Aho-Corasick prefix tree (failure arcs, boost withdrawal), shallow
fusion in beam search, and bad bias lists."""
from __future__ import annotations

import numpy as np
import pytest

from asr import text as asr_text
from asr.decode import BeamSearch, beam_search
from asr.decode.biasing import MAX_NAME_CHARS, MAX_NAMES, BiasList, load_names, normalize_names
from asr.text import BLANK, VOCAB_SIZE
from azsim.errors import AzsimError, ConfigError


def _toks(s):
    return asr_text.encode(s)


def _walk(bias, s):
    """Per-token bonuses and the state after each token."""
    st, out = bias.initial_state(), []
    for t in _toks(s):
        b, st = bias.advance(st, t)
        out.append((b, st))
    return out


# ------------------------------------------------------------------ the automaton
def test_failure_arcs_point_to_longest_suffix_prefix():
    bias = BiasList.compile(["ann", "anna bell", "bella"])
    for node in range(1, bias.num_nodes):
        text, fail_text = bias.node_text(node), bias.node_text(int(bias.fail[node]))
        assert text.endswith(fail_text) and len(fail_text) < len(text)
        # no longer proper suffix of `text` is a node of the trie
        nodes = {bias.node_text(v) for v in range(bias.num_nodes)}
        longer = [text[i:] for i in range(1, len(text)) if len(text[i:]) > len(fail_text)]
        assert not any(s in nodes for s in longer)
    # " anna bel" fails on "x"... but " anna bell" then " bella"-style overlaps follow arcs:
    node = [st[0] for _, st in _walk(bias, "anna bell")][-1]
    assert bias.node_text(node) == " anna bell"
    assert bias.node_text(int(bias.fail[node])) == " bell"


def test_matches_whole_words_only_and_overlaps():
    bias = BiasList.compile(["ann", "anna bell", "bella", "bell"])
    assert bias.matches("call anna bell now") == ["anna bell", "bell"]
    assert bias.matches("call joanna") == []          # "ann" inside a word does not count
    assert bias.matches("ann") == ["ann"]              # start and end of text are boundaries
    assert bias.matches("bella and ann") == ["bella", "ann"]


def test_boost_per_matched_token_and_locked_when_complete():
    w = 2.0
    bias = BiasList.compile(["john"], weight=w)
    steps = _walk(bias, "call john now")
    bonuses = [b for b, _ in steps]
    # "call " earns nothing (no name starts with c), "john" earns w per char, the trailing
    # space completes the name (w, locked), "now" earns nothing.
    assert bonuses == pytest.approx([0, 0, 0, 0, 0, w, w, w, w, w, 0, 0, 0])
    assert steps[9][1][1] == 0                  # locked
    assert bias.final(steps[-1][1]) == 0.0
    assert bias.total_bonus(_toks("call john now")) == pytest.approx(5 * w)


def test_carrier_prefix_gates_the_boost():
    w = 2.0
    bias = BiasList.compile(["john smith"], weight=w, prefixes=["call", "text"])
    name_tokens = len("john smith") + 1                       # the name and its trailing boundary
    assert bias.total_bonus(_toks("call john smith")) == pytest.approx(name_tokens * w)
    assert bias.total_bonus(_toks("text john smith now")) == pytest.approx(name_tokens * w)
    assert bias.total_bonus(_toks("john smith")) == 0.0       # no carrier word: no boost
    assert bias.total_bonus(_toks("play john smith")) == 0.0
    assert bias.total_bonus(_toks("call jo")) == 0.0          # unfinished: withdrawn
    # the carrier word itself never earns: every step up to the name's first letter is 0
    steps = _walk(bias, "call john smith")
    assert [b for b, _ in steps][:5] == [0, 0, 0, 0, 0] and steps[5][0] == pytest.approx(w)
    assert bias.matches("please call john smith") == ["john smith"]
    assert bias.names == ["john smith"]


def test_classes_mix_gated_and_ungated_names():
    w = 1.0
    bias = BiasList.compile_classes([(["ann lee"], ["call"]), (["fan"], None)], weight=w)
    assert bias.total_bonus(_toks("call ann lee")) == pytest.approx(8 * w)
    assert bias.total_bonus(_toks("ann lee")) == 0.0
    assert bias.total_bonus(_toks("turn on the fan")) == pytest.approx(4 * w)
    assert sorted(bias.names) == ["ann lee", "fan"]
    with pytest.raises(ConfigError, match="prefixes"):
        BiasList.compile(["ann"], prefixes=["c@ll"])
    names = [f"name {chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676)}" for i in range(5000)]
    with pytest.raises(ConfigError, match="name-prefix pairs"):
        BiasList.compile(names, prefixes=[f"w{chr(97 + k)}" for k in range(11)])


def test_unfinished_match_is_withdrawn():
    w = 1.5
    bias = BiasList.compile(["johnson"], weight=w)
    steps = _walk(bias, "call john now")
    bonuses = [b for b, _ in steps]
    # "john" earns 4w, the space breaks " johnson": the whole 4w is withdrawn at once.
    assert bonuses[5:9] == pytest.approx([w] * 4)
    assert bonuses[9] == pytest.approx(-4 * w)
    assert bias.total_bonus(_toks("call john now")) == pytest.approx(0.0)
    # ending the utterance inside a match withdraws it in final()
    steps = _walk(bias, "call john")
    assert sum(b for b, _ in steps) == pytest.approx(4 * w)
    assert bias.final(steps[-1][1]) == pytest.approx(-4 * w)
    assert bias.total_bonus(_toks("call john")) == pytest.approx(0.0)


def test_name_at_end_of_utterance_keeps_its_boost():
    w = 1.0
    bias = BiasList.compile(["john"], weight=w)
    assert bias.total_bonus(_toks("call john")) == pytest.approx(5 * w)   # boundary granted
    assert bias.total_bonus(_toks("call johnny")) == pytest.approx(0.0)


def test_failure_arc_keeps_the_boost_of_the_suffix_that_still_matches():
    w = 1.0
    bias = BiasList.compile(["al green", "greene"], weight=w)
    steps = _walk(bias, "al greene")
    # " al green" partial: a l ' ' g r e e n = 8w; then "e" breaks it, the failure arc goes to
    # " greene" (a name that is a suffix): its 6 chars stay boosted, "al " (3w) is withdrawn,
    # and the new token earns w.
    assert sum(b for b, _ in steps[:8]) == pytest.approx(8 * w)
    assert steps[8][0] == pytest.approx(-3 * w + w)
    assert bias.node_text(steps[8][1][0]) == " greene"
    assert bias.total_bonus(_toks("al greene")) == pytest.approx(7 * w)   # " greene " complete


def test_prefix_name_then_longer_name():
    w = 1.0
    bias = BiasList.compile(["john", "john smith"], weight=w)
    # "john " completes (5w locked), "smith " continues the longer name: 6 more tokens
    assert bias.total_bonus(_toks("call john smith")) == pytest.approx(11 * w)
    # "john s" then a break: only " s"'s 1w is withdrawn, john's 5w stay
    assert bias.total_bonus(_toks("call john sat")) == pytest.approx(5 * w)


def test_no_double_boost_over_a_locked_name():
    w = 1.0
    bias = BiasList.compile(["mary ann", "ann eve"], weight=w)
    # " mary ann " completes (9w); the failure arc then sits on " ann e..." but only tokens
    # after the lock earn a boost: "eve " 4w more.
    assert bias.total_bonus(_toks("mary ann eve")) == pytest.approx(9 * w + 4 * w)


def test_random_texts_net_bonus_is_weight_times_matched_tokens():
    """Property: the total bonus never exceeds weight x (tokens) and is zero without a match."""
    rng = np.random.default_rng(0)
    names = ["ann", "bob", "anna", "bobby tables", "kathleen bailey", "o'neil"]
    bias = BiasList.compile(names, weight=1.0)
    words = ["ann", "anna", "bob", "bobby", "tables", "kathleen", "bailey", "kath", "o'neil", "call", "x"]
    for _ in range(300):
        text = " ".join(rng.choice(words, size=int(rng.integers(1, 6))))
        total = bias.total_bonus(_toks(text))
        assert -1e-9 <= total <= len(text) + 1 + 1e-9
        if not bias.matches(text):
            assert total == pytest.approx(0.0)
        else:
            assert total > 0


# ------------------------------------------------------------------ shallow fusion in search
class FrameModel:
    """Joint = the encoder frame's own log-probs (the predictor is ignored): a fixed lattice of
    per-frame choices, so we know exactly which spelling the acoustics prefer."""

    vocab_size, blank = VOCAB_SIZE, BLANK

    def encoder_init(self):
        return None

    def encode(self, x, state):
        return np.asarray(x, np.float32), state

    def predictor_init(self):
        return None

    def predict(self, token, state):
        return np.zeros(VOCAB_SIZE, np.float32), state

    def joint(self, enc, pred):
        return np.asarray(enc, np.float32) + 0 * np.asarray(pred, np.float32)


def _frames(spec):
    """spec: list of {char: prob}; the rest of each frame's mass goes to blank."""
    rows = []
    for d in spec:
        p = np.full(VOCAB_SIZE, 1e-6)
        for ch, q in d.items():
            p[asr_text.encode(ch)[0]] = q
        p[BLANK] = max(1e-6, 1.0 - sum(d.values()))
        rows.append(np.log(p / p.sum()))
    return np.array(rows, np.float32)


def _john_or_jon():
    # "call jo(h)n": the acoustics prefer no "h" (0.3 vs blank 0.7)
    spec = [{c: 0.9} for c in "call jo"] + [{"h": 0.3}] + [{"n": 0.9}]
    return _frames(spec)


def test_biasing_recovers_a_name_the_acoustics_slightly_disfavour():
    model, enc = FrameModel(), _john_or_jon()
    plain = beam_search(model, enc, beam=4, max_symbols_per_frame=1)
    assert plain[0].text == "call jon"
    bias = BiasList.compile(["john", "mary"], weight=1.0)
    biased = beam_search(model, enc, beam=4, max_symbols_per_frame=1, scorer=bias)
    assert biased[0].text == "call john"
    assert biased[0].bonus == pytest.approx(5.0)          # j o h n + boundary, kept
    assert biased[0].log_prob == pytest.approx(biased[0].score - 5.0)


def test_biasing_with_unrelated_names_changes_nothing():
    model, enc = FrameModel(), _john_or_jon()
    plain = beam_search(model, enc, beam=4, max_symbols_per_frame=1)
    bias = BiasList.compile(["mary", "zoe", "kitchen light"], weight=3.0)
    biased = beam_search(model, enc, beam=4, max_symbols_per_frame=1, scorer=bias)
    assert [h.text for h in biased] == [h.text for h in plain]
    assert [h.score for h in biased] == pytest.approx([h.score for h in plain])


def test_unfinished_match_withdrawn_in_search():
    """'jonas' is in the list; the audio says 'jon' then stops: the partial boost of 'jon'
    is withdrawn at the end, so the final score is the plain log-prob."""
    model, enc = FrameModel(), _john_or_jon()
    bias = BiasList.compile(["jonas"], weight=2.0)
    search = BeamSearch(model, beam=4, max_symbols_per_frame=1, scorer=bias)
    search.advance(enc)
    best_running = search.best
    assert best_running.text == "call jon" and best_running.bonus == pytest.approx(6.0)
    final = search.nbest()
    top = next(h for h in final if h.text == "call jon")
    assert top.bonus == pytest.approx(0.0)
    assert top.score == pytest.approx(top.log_prob)


def test_unbiased_reserve_keeps_the_path_a_boost_would_push_out():
    """The audio says "call eight" ("e" or "o", then "i" or "t"); "ethan" and "otis" are on
    the list. At beam 2 the boosted "et" and "ot" fill both places and "ei" drops out; when
    the matches break ("etg", "otg") their boosts are withdrawn, but "eight" is gone. With
    one place kept for the best unbiased path, "ei" stays and wins."""
    model = FrameModel()
    enc = _frames([{c: 0.9} for c in "call "] + [{"e": 0.6, "o": 0.35}, {"i": 0.5, "t": 0.45}]
                  + [{c: 0.9} for c in "ght"])
    bias = BiasList.compile(["ethan", "otis"], weight=2.0)
    assert beam_search(model, enc, beam=2, max_symbols_per_frame=1)[0].text == "call eight"
    hijacked = beam_search(model, enc, beam=2, max_symbols_per_frame=1, scorer=bias)
    assert hijacked[0].text != "call eight" and hijacked[0].bonus == pytest.approx(0.0)
    search = BeamSearch(model, beam=2, max_symbols_per_frame=1, scorer=bias, reserve=1)
    search.advance(enc)
    assert search.nbest()[0].text == "call eight"
    # without a scorer the reserve has nothing to do: plain beam search
    plain = BeamSearch(model, beam=2, max_symbols_per_frame=1, reserve=1)
    plain.advance(enc)
    assert [h.tokens for h in plain.nbest()] == [h.tokens for h in beam_search(model, enc, beam=2, max_symbols_per_frame=1)]
    for bad in (2, -1, 1.5, None):
        with pytest.raises(ValueError, match="reserve"):
            BeamSearch(model, beam=2, scorer=bias, reserve=bad)


def test_per_request_lists_are_independent():
    model, enc = FrameModel(), _john_or_jon()
    a = BiasList.compile(["john"], weight=1.0)
    b = BiasList.compile(["jon"], weight=1.0)
    assert beam_search(model, enc, beam=4, max_symbols_per_frame=1, scorer=a)[0].text == "call john"
    assert beam_search(model, enc, beam=4, max_symbols_per_frame=1, scorer=b)[0].text == "call jon"


def test_thousand_names_compile_and_score_fast():
    import time
    rng = np.random.default_rng(1)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    names = ["".join(rng.choice(letters, int(rng.integers(3, 9)))) + " "
             + "".join(rng.choice(letters, int(rng.integers(3, 10)))) for _ in range(1000)]
    t0 = time.perf_counter()
    bias = BiasList.compile(names)
    assert time.perf_counter() - t0 < 5.0
    assert bias.num_nodes > 5000
    assert bias.matches(f"call {names[123]} now") == [names[123]]


# ------------------------------------------------------------------ bad lists
@pytest.mark.parametrize("names, fragment", [
    ([], "is empty"),
    ("john", "must be a list"),
    (42, "must be a list"),
    (["john", 7], "entry 1 is int"),
    (["john", b"mary"], "entry 1 is bytes"),
    (["john", "   "], "entry 1"),
    (["zoë"], "outside the recognizer's vocabulary"),
    (["agent 007"], "spell digits out"),
    (["x" * (MAX_NAME_CHARS + 1)], f"allowed: 1 to {MAX_NAME_CHARS}"),
    (["n"] * (MAX_NAMES + 1), f"allowed: 1 to {MAX_NAMES}"),
])
def test_bad_bias_lists_raise_config_error(names, fragment):
    with pytest.raises(ConfigError) as err:
        BiasList.compile(names)
    assert fragment in str(err.value)
    assert isinstance(err.value, AzsimError)


@pytest.mark.parametrize("weight", [-1.0, 100.0, "2", True, float("nan")])
def test_bad_weight(weight):
    with pytest.raises(ConfigError, match="boost weight"):
        BiasList.compile(["john"], weight=weight)


def test_normalization_and_dedup():
    assert normalize_names(["John  Smith", "john smith", "O'Neil"]) == ["john smith", "o'neil"]


def test_load_names_file(tmp_path):
    p = tmp_path / "names.txt"
    p.write_text("Kathleen Bailey\n\nfridge\n")
    assert load_names(p) == ["kathleen bailey", "fridge"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_names(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_names(tmp_path / "missing.txt")


# ------------------------------------------------------------------ neural biasing (TCPGen)
def test_pointer_prefix_tree_nodes_and_valid_tokens():
    from asr.decode.neural_bias import DEAD, SPACE, PrefixTree
    tree = PrefixTree(["ann lee", "anna", "bo"])
    nodes = tree.nodes_of(_toks("call anna lee bo"))
    # "call" is no name (dead until the space), "anna" walks the tree, the space after it goes
    # back to the root, "lee" alone is no name, "bo" is one
    assert nodes[1:5] == [DEAD] * 4 and nodes[5] == 0
    anna = nodes[9]
    assert tree.complete[anna] and tree.mask(anna)[SPACE] and tree.mask(anna).sum() == 1
    assert nodes[10] == 0 and nodes[11] == DEAD and nodes[14] == 0 and tree.complete[nodes[-1]]
    ann = tree.nodes_of(_toks("ann"))[-1]
    # after "ann": "a" (anna) or the space inside "ann lee"; "ann" itself is no name
    assert set(np.flatnonzero(tree.mask(ann))) == {asr_text.encode("a")[0], SPACE}
    assert tree.step(tree.step(ann, SPACE), asr_text.encode("l")[0]) not in (0, DEAD)
    assert tree.step(ann, BLANK) == ann                         # blank emits nothing
    assert set(np.flatnonzero(tree.mask(0))) == set(asr_text.encode("ab"))
    assert not tree.mask(DEAD).any()
    assert tree.nbytes() == 3 * tree.n_edges + 3 * len(tree.children)
    assert tree.gate_depth(anna) == 4 and tree.gate_depth(0) == 0 and tree.gate_depth(DEAD) == 0


def _tiny_neural(tmp_path, gate_bias: float, joint=False):
    """joint: False (base frozen), True (prediction and joint networks moved) or "all" (the
    encoder too, as with train_encoder)."""
    torch = pytest.importorskip("torch")
    from asr.decode import neural_bias as NB
    from asr.model.rnnt import RNNT, ModelConfig
    cfg = ModelConfig(encoder_layers=1, encoder_dim=16, pred_embed_dim=8, pred_dim=16, joint_dim=12)
    torch.manual_seed(0)
    base = RNNT(cfg)
    mod = NB._torch_module(cfg.vocab_size, cfg.joint_dim)
    with torch.no_grad():
        for p in mod.parameters():
            p.normal_(0, 0.5)
        mod.gate_h.bias.fill_(gate_bias)
    from asr.model.export import export_npz
    base_path = export_npz(base, tmp_path / "base.npz")
    trained = None
    if joint:   # as after joint training: the prediction and joint networks (and encoder) moved
        parts = NB.JOINT_PARTS + (NB.ENCODER_PARTS if joint == "all" else ())
        with torch.no_grad():
            for n, p in base.named_parameters():
                if n.split(".")[0] in parts:
                    p.add_(0.3 * torch.randn_like(p))
        trained = {k: v for k, v in base.state_dict().items() if k.split(".")[0] in parts}
    path = NB.save(tmp_path / "nb.npz", mod, {"steps": 0, "minutes": 0.0,
                                              "base_sha256": NB.file_sha256(base_path)}, trained_base=trained)
    return NB, NB.NeuralBias(path, base_path), base, mod


def _joint_grid(m, x, text):
    """The bound model's joint log-probs over (frames, label prefixes) of `text`."""
    enc, _ = m.encode(x, m.encoder_init())
    st = m.predictor_init()
    pred, st = m.predict(m.blank, st)
    preds = [pred]
    for t in _toks(text):
        pred, st = m.predict(t, st)
        preds.append(pred)
    return m.joint(enc[:, None, :], np.stack(preds)[None])


@pytest.mark.parametrize("joint", [False, True, "all"])
def test_neural_bias_numpy_matches_torch(tmp_path, joint):
    """numpy inference == the torch module, with the base frozen, its prediction and joint
    networks trained, or the whole RNN-T trained (read back from the file over the base's)."""
    import torch
    NB, nb, base, mod = _tiny_neural(tmp_path, gate_bias=0.5, joint=joint)
    assert (nb.base is nb.shipped) != bool(joint)
    assert nb.own_encoder == (joint == "all")
    names = ["ann lee", "fridge", "o'neil"]
    m = nb.bind(names)
    x = np.random.default_rng(1).standard_normal((15, 240)).astype(np.float32)
    text = "call ann lee now"
    lp = _joint_grid(m, x, text)
    y = np.array([_toks(text)])
    valid, depth = (torch.from_numpy(a) for a in NB.valid_masks(NB.PrefixTree(names), y, np.array([y.shape[1]])))
    with torch.no_grad():
        enc, _ = base.encode(torch.from_numpy(x)[None])
        pred = base.predict(torch.from_numpy(y))
        e4, p4 = enc[:, :, None], pred[:, None]
        ref = mod.log_probs(e4, p4, base.joint(e4, p4), valid[:, None], depth[:, None])[0].numpy()
        plain = torch.log_softmax(base.joint(e4, p4), -1)[0].numpy()
    assert np.abs(lp - ref).max() < 1e-4
    assert np.abs(np.exp(lp).sum(-1) - 1).max() < 1e-5
    nodes = NB.PrefixTree(names).nodes_of(y[0])
    for u, node in enumerate(nodes):
        if node == NB.DEAD:          # no name in progress: the RNN-T's own distribution
            assert np.abs(lp[:, u] - plain[:, u]).max() < 1e-5
        else:                        # mass moves only toward tokens that continue a name
            ok = NB.PrefixTree(names).mask(node).copy()
            ok[BLANK] = True
            assert np.all(lp[:, u, ~ok] <= plain[:, u, ~ok] + 1e-5)
            assert np.abs(lp[:, u] - plain[:, u]).max() > 1e-3
    hyps = beam_search(m, m.encode(x, m.encoder_init())[0], beam=2)
    assert hyps and all(isinstance(h.text, str) for h in hyps)
    with pytest.raises(ConfigError, match="neural bias list"):
        nb.bind([])


def test_neural_bias_closed_gate_is_the_base_model(tmp_path):
    NB, nb, _, _ = _tiny_neural(tmp_path, gate_bias=-1e4)
    x = np.random.default_rng(2).standard_normal((12, 240)).astype(np.float32)
    lp = _joint_grid(nb.bind(["ann lee"]), x, "ann lee")
    plain = _joint_grid(nb.base, x, "ann lee")
    assert np.abs(lp - plain).max() < 1e-5


def test_neural_bias_chip_cost(tmp_path):
    NB, nb, _, _ = _tiny_neural(tmp_path, gate_bias=0.0)
    cost = NB.chip_cost(nb, n_names=10, name_chars=8)
    rows = {r["part"]: r for r in cost["rows"]}
    J, D, V = 12, NB.ATTN_DIM, VOCAB_SIZE
    assert rows["per frame (encoder query)"]["macs"] == D * J
    assert rows["per token (predictor query)"]["macs"] == D * J
    step = rows["per joint step (pointer + gate)"]
    assert step["macs"] == V * D + D * V + J + D
    assert all(r["cycles"] > 0 and r["weight_bytes"] > 0 for r in cost["rows"])
    assert cost["memory_bytes_per_request"] > 3 * 10 * 8       # >= 80 edges and nodes


def test_neural_bias_bad_files(tmp_path):
    from asr.decode import neural_bias as NB
    from azsim.errors import ModelError
    _, nb, _, _ = _tiny_neural(tmp_path, gate_bias=0.0)
    base = tmp_path / "base.npz"
    with pytest.raises(FileNotFoundError, match="not found"):
        NB.NeuralBias(tmp_path / "none.npz", base)
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(2))
    with pytest.raises(ModelError, match="nb_format"):
        NB.NeuralBias(p, base)
    p.write_bytes(nb.path.read_bytes()[:300])                     # truncated
    with pytest.raises(ModelError, match="x.npz"):
        NB.NeuralBias(p, base)
    with np.load(nb.path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["nb_format"] = np.array("azsim-neural-bias-v1")      # the older design's files
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    with pytest.raises(ModelError, match="nb_format"):
        NB.NeuralBias(old, base)
    arrays["nb_format"] = np.array(NB.FORMAT)
    other = tmp_path / "other.npz"
    other.write_bytes(base.read_bytes() + b"\0")                  # another base model's bytes
    np.savez(old, **arrays)
    with pytest.raises(ModelError, match="another base model"):
        NB.NeuralBias(old, other)
    bad = dict(arrays, **{"base.feat_mean": np.zeros(240, np.float32)})
    np.savez(old, **bad)                              # only the RNN-T's trainable parts may change
    with pytest.raises(ModelError, match="base.feat_mean"):
        NB.NeuralBias(old, base)
    bad = dict(arrays, **{"base.encoder.weight_ih_l0": np.zeros((4, 4), np.float32)})
    np.savez(old, **bad)                                            # ... with the base's shapes
    with pytest.raises(ModelError, match="base.encoder.weight_ih_l0"):
        NB.NeuralBias(old, base)
    bad = dict(arrays, **{"base.joint_out.weight": np.zeros((3, 3), np.float32)})
    np.savez(old, **bad)                                            # ... with the base's shapes
    with pytest.raises(ModelError, match="base.joint_out.weight"):
        NB.NeuralBias(old, base)
    with np.load(base) as z:                                        # ... and finite values
        shape = z["joint_out.weight"].shape
    bad = dict(arrays, **{"base.joint_out.weight": np.full(shape, np.nan, np.float32)})
    np.savez(old, **bad)
    with pytest.raises(ModelError, match="old.npz on .*'joint_out.weight' contains NaN"):
        NB.NeuralBias(old, base)
    del arrays["nb.keys.weight"]
    np.savez(old, **arrays)
    with pytest.raises(ModelError, match="keys.weight"):
        NB.NeuralBias(old, base)


def test_end_bonus_only_for_completed_names():
    bias = BiasList.compile(["john"], weight=1.0, end_bonus=3.0)
    assert bias.total_bonus(_toks("call john now")) == pytest.approx(5.0 + 3.0)
    assert bias.total_bonus(_toks("call john")) == pytest.approx(5.0 + 3.0)      # at the very end
    assert bias.total_bonus(_toks("call johnny")) == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="end bonus"):
        BiasList.compile(["john"], end_bonus=-1)


def test_neural_bias_finetune_rejects_bad_base_lr(tmp_path):
    pytest.importorskip("torch")
    from asr.decode import neural_bias as NB
    for bad in (-1e-4, 0.5):
        with pytest.raises(ConfigError, match="base_lr"):
            NB.finetune(tmp_path / "none.npz", tmp_path, base_lr=bad)
    with pytest.raises(ConfigError, match="frozen-encoder turns it off.*needs base_lr > 0"):
        NB.finetune(tmp_path / "none.npz", tmp_path, base_lr=0.0, train_encoder=True)


@pytest.mark.parametrize("joint", [True, "all"])
def test_neural_bias_experiment_rows(tmp_path, joint):
    """The experiment hook on a tiny jointly trained model: the neural row, its control, the
    trained RNN-T alone, and fusion on top with its weight picked on the tuning sets. A model
    whose encoder was trained too is decoded from its own encoder outputs."""
    NB, nb, _, _ = _tiny_neural(tmp_path, gate_bias=0.0, joint=joint)
    rng = np.random.default_rng(3)
    sets = {}
    for name in ("names", "no_names", "tune_names", "tune_no_names"):
        sets[name] = []
        for i in range(2):
            feats = rng.standard_normal((10, 240)).astype(np.float32)
            spoken = ["ann lee"] if "no_names" not in name else []
            sets[name].append({"text": "call ann lee" if spoken else "stop", "names": spoken, "feats": feats,
                               "enc": nb.shipped.encode(feats, nb.shipped.encoder_init())[0],
                               "list": spoken + ["bob", "fridge"], "list_large": ["carol", "dan", "eve"]})
    tried = []

    def fusion(names, w, eb):
        tried.append((w, eb))
        return BiasList.compile(names, w, end_bonus=eb)

    from asr.experiments.biasing import evaluate_neural
    res = evaluate_neural(sets, tmp_path / "base.npz", beam=2, path=nb.path,
                          progress=False, fusion=fusion, weights=((0.5, 0.0), (1.0, 2.0)))
    methods = [r["method"].strip() for r in res["rows"]]
    assert methods[0].startswith("neural biasing, 4-head TCPGen, joint with "
                                 + ("the whole RNN-T" if joint == "all" else "pred+joint nets"))
    assert methods[1:] == ["control: spoken names left out of the list",
                           "its jointly trained RNN-T alone (no list)", "with shallow fusion"]
    assert {(0.5, 0.0), (1.0, 2.0)} <= set(tried)
    from asr.experiments.biasing import set_wer
    own_enc = [dict(r, enc=nb.base.encode(r["feats"], nb.base.encoder_init())[0]) for r in sets["names"]]
    assert res["rows"][2]["wer_names"] == set_wer(nb.base, own_enc if joint == "all" else sets["names"],
                                                  lambda r: None, 2)
    assert res["fusion_tuning"]["chosen_weight"] in (0.5, 1.0)
    assert res["rows"][-1]["weight"] in ("0.5/0", "1/2")
    assert all(0.0 <= r["wer_names"] for r in res["rows"])
    assert res["chip_cost"] and res["memory_bytes_per_request"] > 0


def test_neural_bias_kd_loss_is_zero_for_the_teacher_and_ignores_padding():
    """The learning-without-forgetting term: KL(teacher || model) over valid lattice positions."""
    torch = pytest.importorskip("torch")
    from asr.decode import neural_bias as NB
    from asr.model.rnnt import RNNT, ModelConfig
    torch.manual_seed(0)
    teacher = RNNT(ModelConfig(encoder_layers=1, encoder_dim=16, pred_embed_dim=8, pred_dim=16, joint_dim=12))
    teacher.eval()
    x = torch.randn(3, 9, 240)
    x_lens = torch.tensor([9, 6, 4])
    y = torch.tensor([[3, 4, 5], [6, 7, 0], [8, 0, 0]])
    y_lens = torch.tensor([3, 2, 1])
    with torch.no_grad():
        enc, _ = teacher.encode(x, x_lens)
        pred = teacher.predict(y)
        lp = torch.log_softmax(teacher.joint(enc[:, :, None, :], pred[:, None, :, :]), -1)
    rows = torch.tensor([1, 2])
    assert float(NB._kd_loss(teacher, lp, x, x_lens, y, y_lens, rows)) == pytest.approx(0.0, abs=1e-6)
    padded = lp.clone()
    padded[1, 6:] = torch.log_softmax(torch.randn_like(padded[1, 6:]), -1)   # frames past T = 6
    padded[2, :, 2:] = torch.log_softmax(torch.randn_like(padded[2, :, 2:]), -1)  # labels past U = 1
    assert float(NB._kd_loss(teacher, padded, x, x_lens, y, y_lens, rows)) == pytest.approx(0.0, abs=1e-6)
    moved = lp.clone()
    moved[1, :2, :2] = torch.log_softmax(torch.randn_like(moved[1, :2, :2]) * 3, -1)
    assert float(NB._kd_loss(teacher, moved, x, x_lens, y, y_lens, rows)) > 1e-3
    with pytest.raises(ConfigError, match="kd_weight"):
        NB.finetune("none.npz", ".", kd_weight=-1.0)


class _PlainScorer:
    """The same scorer without its automaton tables: beam search scores it in Python."""

    def __init__(self, bias):
        self.bias = bias

    def initial_state(self):
        return self.bias.initial_state()

    def advance(self, state, token):
        return self.bias.advance(state, token)

    def final(self, state):
        return self.bias.final(state)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), beam=st.integers(1, 16), symbols=st.integers(1, 3),
       weight=st.floats(0.0, 4.0), end_bonus=st.floats(0.0, 2.0), sharp=st.floats(0.3, 3.0),
       reserve_share=st.floats(0.0, 1.0))
def test_compiled_fusion_equals_python_fusion(seed, beam, symbols, weight, end_bonus, sharp,
                                              reserve_share):
    """Beam search with a BiasList chooses each step's candidates in compiled code
    (asr.decode.beam_kernel); the N-best lists (tokens, frames, scores, bonuses, to the bit)
    equal those of the Python path with the same scorer, with or without places reserved for
    the unbiased best; and without a scorer too."""
    reserve = min(beam - 1, int(reserve_share * beam))
    rng = np.random.default_rng(seed)
    letters = "abno '"
    names = sorted({"".join(rng.choice(list("abno"), size=int(rng.integers(1, 5))))
                    for _ in range(int(rng.integers(1, 6)))})
    rows = []
    for _ in range(int(rng.integers(3, 14))):
        logits = np.full(VOCAB_SIZE, -8.0)
        for ch in letters:
            logits[asr_text.encode(ch)[0]] = rng.normal(0, sharp)
        logits[BLANK] = rng.normal(0.5, sharp)
        rows.append(logits - np.logaddexp.reduce(logits))
    enc = np.array(rows, np.float32)
    bias = BiasList.compile(names, weight=weight, end_bonus=end_bonus)
    model = FrameModel()
    from asr.decode import beam as beam_mod

    def nbest(scorer, kernel=True):
        saved, beam_mod._USE_KERNEL = beam_mod._USE_KERNEL, kernel
        try:
            search = BeamSearch(model, beam, symbols, scorer=scorer, reserve=reserve)
        finally:
            beam_mod._USE_KERNEL = saved
        assert (search._tables is not None) == kernel
        search.advance(enc)
        return [(h.tokens, h.token_frames, h.token_scores, h.score, h.bonus, h.scorer_state)
                for h in search.nbest()]

    assert nbest(bias) == nbest(_PlainScorer(bias), kernel=False)
    assert nbest(None) == nbest(None, kernel=False)


def test_compiled_fusion_rejects_a_model_with_a_larger_vocabulary():
    """The compiled step indexes the automaton by token without bounds checks: a model whose
    tokens the list cannot index is refused with a message, not read past the table."""
    class Wide(FrameModel):
        def joint(self, enc, pred):
            lp = super().joint(enc, pred)
            return np.concatenate([lp, np.full(lp.shape[:-1] + (3,), -30.0, lp.dtype)], axis=-1)
    bias = BiasList.compile(["ann"], weight=1.0)
    search = BeamSearch(Wide(), 2, scorer=bias)
    with pytest.raises(ValueError, match="vocabulary"):
        search.advance(np.zeros((2, VOCAB_SIZE), np.float32))
