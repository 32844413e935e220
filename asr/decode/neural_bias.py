"""Neural context biasing: multi-head attention over embeddings of the bias list, trained
jointly with the RNN-T (a small context-aware transducer).

Architecture (per request, the list of N names is encoded once):
- name encoder: character embedding (E) -> one LSTM layer (D) over the name's characters; its
  last state is the name's embedding. A learned "no bias" entry is always present, so the
  attention can attend to nothing: memory M is (N + 1, D).
- two multi-head attentions (H heads of D / H), one queried by every encoder frame, one by
  every prediction-network output: q = W_q x, keys W_k M, values W_v M, context W_o [heads];
  the context is *added* to the encoder (resp. predictor) output before the joint network.
  W_o starts at zero, so fine-tuning starts exactly from the shipped model.

Training (``finetune``): from the shipped model's weights, all parameters trainable (the base
at a lower learning rate), RNN-T loss, for a bounded wall-clock time. A batch shares one bias
list: the contact/appliance names of its utterances (each kept with probability P_KEEP, so
the model also learns lists that miss the spoken name) plus distractor names up to
TRAIN_LIST_SIZE.

Inference (``NeuralBiasRNNT``): numpy, the asr.decode model interface, bound to one request's
list; beam search runs unchanged. ``chip_cost`` builds the module's per-frame, per-token and
per-request work as azsim graphs (int8 matmuls, LUTs, an LSTM cell) and runs them on the
simulated chip for cycles and bytes.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from asr import text as asr_text
from azsim.errors import ModelError

EMBED_DIM = 64
MEM_DIM = 64
HEADS = 4
TRAIN_LIST_SIZE = 40
P_KEEP = 0.8
FORMAT = "azsim-neural-bias-v1"


def default_path() -> Path:
    from asr.data.corpus import default_cache_dir
    return default_cache_dir() / "neural_bias" / "model.npz"


def _name_tokens(names) -> tuple[np.ndarray, np.ndarray]:
    toks = [asr_text.encode(n) for n in names]
    L = max(1, max(len(t) for t in toks))
    arr = np.zeros((len(toks), L), np.int64)
    for i, t in enumerate(toks):
        arr[i, :len(t)] = t
    return arr, np.array([len(t) for t in toks], np.int64)


# ------------------------------------------------------------------ torch module (training)
def _torch_module(vocab_size: int, joint_dim: int):
    import torch
    from torch import nn

    class MHA(nn.Module):
        def __init__(self):
            super().__init__()
            self.wq = nn.Linear(joint_dim, MEM_DIM)
            self.wk = nn.Linear(MEM_DIM, MEM_DIM)
            self.wv = nn.Linear(MEM_DIM, MEM_DIM)
            self.wo = nn.Linear(MEM_DIM, joint_dim)
            nn.init.zeros_(self.wo.weight)
            nn.init.zeros_(self.wo.bias)

        def forward(self, x, mem):
            dh = MEM_DIM // HEADS
            q = self.wq(x).unflatten(-1, (HEADS, dh))                    # (..., H, dh)
            k = self.wk(mem).unflatten(-1, (HEADS, dh))                  # (N, H, dh)
            v = self.wv(mem).unflatten(-1, (HEADS, dh))
            s = torch.einsum("...hd,nhd->...hn", q, k) / dh ** 0.5
            a = torch.softmax(s, -1)
            c = torch.einsum("...hn,nhd->...hd", a, v).flatten(-2)
            return self.wo(c)

    class BiasAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.char_embed = nn.Embedding(vocab_size, EMBED_DIM)
            self.name_lstm = nn.LSTM(EMBED_DIM, MEM_DIM, batch_first=True)
            self.no_bias = nn.Parameter(torch.zeros(1, MEM_DIM))
            self.enc_attn = MHA()
            self.pred_attn = MHA()

        def memory(self, toks, lens):
            out, _ = self.name_lstm(self.char_embed(toks))
            last = out[torch.arange(out.shape[0]), lens - 1]
            return torch.cat([self.no_bias, last], 0)

    return BiasAttention()


def _base_torch(npz_path: Path):
    import torch
    from asr.model.rnnt import RNNT, ModelConfig
    with np.load(npz_path, allow_pickle=False) as z:
        cfg = json.loads(str(z["config_json"]))
        arrays = {k: z[k] for k in z.files if k not in ("format", "config_json", "vocab_json")}
    mc = ModelConfig.from_dict({k: v for k, v in cfg.items() if k in ModelConfig.__dataclass_fields__})
    model = RNNT(mc)
    state = model.state_dict()
    for k, v in arrays.items():
        if k in state:
            state[k] = torch.from_numpy(np.asarray(v, np.float32))
    model.load_state_dict(state)
    return model, cfg


def finetune(model_path, corpus_dir, out_path=None, minutes: float = 8.0, seed: int = 0,
             batch_size: int = 16, lr_base: float = 2e-4, lr_bias: float = 2e-3, threads: int = 1,
             log=print) -> dict:
    """Fine-tune the shipped model with the attention module for `minutes` of wall clock."""
    import torch
    from asr.data import corpus as corpus_mod
    from asr.experiments.biasing import NOVEL_APPLIANCES, distractor_pool
    from asr.model.loss import rnnt_loss
    from asr.train.loop import collate, to_examples

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng([seed, 61])
    model_path = Path(model_path)
    base, cfg = _base_torch(model_path)
    mod = _torch_module(int(cfg["vocab_size"]), int(cfg["joint_dim"]))
    utts = [u for u in corpus_mod.load_subset(corpus_dir, "train") if u.meta.get("source") == "espeak"]
    names_of = []
    for u in utts:
        s = u.meta.get("slots") or {}
        names_of.append([s[k] for k in ("contact", "appliance") if k in s])
    examples = to_examples(utts)
    assert len(examples) == len(utts)
    with_names = [i for i, n in enumerate(names_of) if n]
    without = [i for i, n in enumerate(names_of) if not n]
    pool = distractor_pool(seed, NOVEL_APPLIANCES)
    opt = torch.optim.Adam([{"params": base.parameters(), "lr": lr_base},
                            {"params": mod.parameters(), "lr": lr_bias}])
    base.train()
    t0, step, run = time.time(), 0, []
    while time.time() - t0 < 60.0 * minutes:
        k = int(round(batch_size * 0.75))
        idx = list(rng.choice(with_names, k, replace=False)) + list(rng.choice(without, batch_size - k, replace=False))
        names = []
        for i in idx:
            names += [n for n in names_of[i] if rng.random() < P_KEEP]
        names = list(dict.fromkeys(names))
        while len(names) < TRAIN_LIST_SIZE:
            n = pool[int(rng.integers(len(pool)))]
            if n not in names:
                names.append(n)
        toks, lens = _name_tokens(names)
        x, x_lens, y, y_lens = collate(examples, idx)
        mem = mod.memory(torch.from_numpy(toks), torch.from_numpy(lens))
        enc, _ = base.encode(x, x_lens)
        pred = base.predict(y)
        enc = enc + mod.enc_attn(enc, mem)
        pred = pred + mod.pred_attn(pred, mem)
        logits = base.joint(enc[:, :, None, :], pred[:, None, :, :])
        loss = rnnt_loss(logits, y, x_lens, y_lens, blank=int(cfg["blank"])).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(base.parameters()) + list(mod.parameters()), 5.0)
        opt.step()
        step += 1
        run.append(float(loss.detach()))
        if step % 25 == 0:
            log(f"neural-bias step {step} min {(time.time() - t0) / 60:.2f} loss {np.mean(run[-25:]):.3f}")
    out_path = Path(out_path) if out_path else default_path()
    save(out_path, base, mod, cfg, {"steps": step, "minutes": (time.time() - t0) / 60, "seed": seed,
                                    "batch_size": batch_size, "lr_base": lr_base, "lr_bias": lr_bias,
                                    "train_list_size": TRAIN_LIST_SIZE, "p_keep": P_KEEP,
                                    "final_loss": float(np.mean(run[-25:])) if run else None,
                                    "base": str(model_path), "base_sha256": file_sha256(model_path)})
    return {"path": str(out_path), "steps": step, "minutes": (time.time() - t0) / 60,
            "final_loss": float(np.mean(run[-25:])) if run else None}


def file_sha256(path) -> str:
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(out_path, base, mod, cfg: dict, meta: dict) -> Path:
    """The fine-tuned base (the asr.model.export layout, so NumpyRNNT loads it) plus the
    module's weights under ``nb.*``."""
    from asr.model.export import FORMAT as BASE_FORMAT
    from asr.model.export import weight_names
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().float().numpy() for k, v in base.state_dict().items()}
    arrays = {n: np.ascontiguousarray(sd[n], np.float32) for n in weight_names(cfg)}
    arrays["feat_mean"], arrays["feat_std"] = sd["feat_mean"], sd["feat_std"]
    for k, v in mod.state_dict().items():
        arrays[f"nb.{k}"] = v.detach().cpu().float().numpy()
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez(tmp, format=np.array(BASE_FORMAT), nb_format=np.array(FORMAT),
             config_json=np.array(json.dumps(cfg, sort_keys=True)),
             vocab_json=np.array(json.dumps(list(asr_text.VOCAB))),
             nb_meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(out_path)
    return out_path


# ------------------------------------------------------------------ numpy inference
def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class NeuralBias:
    """The trained module's weights (numpy) and the fine-tuned base model."""

    def __init__(self, path):
        from asr.model.numpy_rnnt import NumpyRNNT
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: neural-biasing model not found (train it with "
                                    f"`python -m asr.decode.neural_bias --minutes 8`)")
        self.base = NumpyRNNT.load(path)
        with np.load(path, allow_pickle=False) as z:
            if "nb_format" not in z.files or str(z["nb_format"]) != FORMAT:
                raise ModelError(f"{path}: not a neural-biasing model (missing nb_format = {FORMAT!r})")
            self.w = {k[3:]: z[k].astype(np.float32) for k in z.files if k.startswith("nb.")}
            self.meta = json.loads(str(z["nb_meta"]))
        self.path = path

    def memory(self, names) -> np.ndarray:
        """(N + 1, D): the no-bias entry, then each name's last LSTM state."""
        w = self.w
        wih, whh = w["name_lstm.weight_ih_l0"], w["name_lstm.weight_hh_l0"]
        b = w["name_lstm.bias_ih_l0"] + w["name_lstm.bias_hh_l0"]
        toks, lens = _name_tokens(names)
        emb = w["char_embed.weight"][toks]                  # (N, L, E)
        n, L = toks.shape
        h = np.zeros((n, MEM_DIM), np.float32)
        c = np.zeros((n, MEM_DIM), np.float32)
        last = np.zeros((n, MEM_DIM), np.float32)
        pre = emb @ wih.T + b
        for t in range(L):
            g = pre[:, t] + h @ whh.T
            i, f = _sigmoid(g[:, :MEM_DIM]), _sigmoid(g[:, MEM_DIM:2 * MEM_DIM])
            cell, o = np.tanh(g[:, 2 * MEM_DIM:3 * MEM_DIM]), _sigmoid(g[:, 3 * MEM_DIM:])
            c = f * c + i * cell
            h = o * np.tanh(c)
            last[lens - 1 == t] = h[lens - 1 == t]
        return np.concatenate([w["no_bias"], last], 0).astype(np.float32)

    def bind(self, names) -> "NeuralBiasRNNT":
        return NeuralBiasRNNT(self, names)


class _Attn:
    def __init__(self, w: dict, prefix: str, mem: np.ndarray):
        g = lambda n: w[f"{prefix}.{n}"]
        dh = MEM_DIM // HEADS
        self.wq, self.bq = g("wq.weight").T / np.float32(dh ** 0.5), g("wq.bias") / np.float32(dh ** 0.5)
        self.k = (mem @ g("wk.weight").T + g("wk.bias")).reshape(-1, HEADS, dh)   # (N+1, H, dh)
        self.v = (mem @ g("wv.weight").T + g("wv.bias")).reshape(-1, HEADS, dh)
        self.wo, self.bo = g("wo.weight").T, g("wo.bias")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        q = (x @ self.wq + self.bq).reshape(x.shape[:-1] + (HEADS, -1))
        s = np.einsum("...hd,nhd->...hn", q, self.k)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = s / s.sum(-1, keepdims=True)
        ctx = np.einsum("...hn,nhd->...hd", a, self.v).reshape(x.shape[:-1] + (MEM_DIM,))
        return (ctx @ self.wo + self.bo).astype(np.float32)


class NeuralBiasRNNT:
    """The asr.decode model interface with the attention bound to one request's names."""

    def __init__(self, nb: NeuralBias, names):
        from asr.decode.biasing import normalize_names
        self.names = normalize_names(names, "neural bias list")
        mem = nb.memory(self.names)
        self.base = nb.base
        self.vocab_size, self.blank = self.base.vocab_size, self.base.blank
        self.enc_attn = _Attn(nb.w, "enc_attn", mem)
        self.pred_attn = _Attn(nb.w, "pred_attn", mem)

    def encoder_init(self):
        return self.base.encoder_init()

    def encode(self, x, state):
        enc, state = self.base.encode(x, state)
        return enc + self.enc_attn(enc), state

    def predictor_init(self):
        return self.base.predictor_init()

    def predict(self, token, state):
        pred, state = self.base.predict(token, state)
        return pred + self.pred_attn(pred), state

    def joint(self, enc, pred):
        return self.base.joint(enc, pred)


# ------------------------------------------------------------------ chip cost
def chip_cost(nb: NeuralBias, n_names: int = 100, name_chars: int = 12, preset: str = "default") -> dict:
    """Cycles and bytes of the module on the simulated chip, from azsim graphs of its int8
    matmuls (weights quantized per output channel, symmetric; the attention memory of a
    request is the K/V "weights" of the score and context matmuls).

    per frame:   q = W_q enc; per head: scores = K_h q_h (N+1), exp LUT, context = V_h^T p
                 (int32), requant; out = W_o ctx  -> added to enc (the vector unit's add)
    per token:   the same on the predictor output
    per request: for each name, name_chars LSTM-cell steps (embedding + cell), then W_k, W_v
                 (the per-frame/per-token weight bytes include that request's K/V memory).
    The softmax's division by the row sum is a per-head scalar on the host (not modelled).
    """
    from azsim import compile as azc
    from azsim import hw as hw_mod
    from azsim.engine import Session
    from azsim.graph import Graph

    cfg = azc.native_config(hw_mod.load(preset))
    rng = np.random.default_rng(0)
    dh = MEM_DIM // HEADS
    J = nb.base.joint_dim
    n1 = n_names + 1

    def q8(w):
        w = np.asarray(w, np.float32)
        s = np.maximum(np.abs(w).max(1, keepdims=True), 1e-8) / 127.0
        return np.clip(np.rint(w / s), -127, 127).astype(np.int8)

    mult, shift = np.full(1, 1 << 14, np.int32), np.full(1, 22, np.int32)
    exp_table = np.clip(np.rint(127 * np.exp((np.arange(256) - 255) / 32.0)), 0, 127).astype(np.int8)

    def attn_graph(prefix):
        g = Graph(f"nb_{prefix}")
        x = g.input("x", J)
        wq = nb.w[f"{prefix}.wq.weight"]
        ctxs = []
        for h in range(HEADS):
            q = g.matmul(x, q8(wq[h * dh:(h + 1) * dh]), mult=np.repeat(mult, dh), shift=np.repeat(shift, dh),
                         name=f"q{h}")
            k = rng.integers(-127, 128, (n1, dh)).astype(np.int8)         # per-request memory
            s = g.matmul(q, k, mult=np.repeat(mult, n1), shift=np.repeat(shift, n1), name=f"score{h}")
            p = g.lut(s, exp_table, name=f"exp{h}")
            v = rng.integers(-127, 128, (dh, n1)).astype(np.int8)
            ctxs.append(g.matmul(p, v, mult=np.repeat(mult, dh), shift=np.repeat(shift, dh), name=f"ctx{h}"))
        wo = nb.w[f"{prefix}.wo.weight"]
        outs = [g.matmul(ctxs[h], q8(wo[:, h * dh:(h + 1) * dh]), mult=np.repeat(mult, J),
                         shift=np.repeat(shift, J), name=f"out{h}") for h in range(HEADS)]
        acc = outs[0]
        for h in range(1, HEADS):
            acc = g.add(acc, outs[h], a_mult=1, b_mult=1, shift=1, name=f"sum{h}")
        g.output(acc)
        return g

    def cell_graph():
        g = Graph("nb_name_cell")
        tok = g.index_input("token")
        x = g.embedding(tok, q8(nb.w["char_embed.weight"]), name="char_embed")
        h, c = g.input("h", MEM_DIM), g.input("c", MEM_DIM, "int16")
        wih, whh = q8(nb.w["name_lstm.weight_ih_l0"]), q8(nb.w["name_lstm.weight_hh_l0"])
        m4 = np.repeat(mult, 4 * MEM_DIM)
        s4 = np.repeat(shift, 4 * MEM_DIM)
        h2, c2 = g.lstm_cell(x, h, c, wx=wih, wh=whh, bias=np.zeros(4 * MEM_DIM, np.int32), mult_x=m4,
                             shift_x=s4, mult_h=m4, shift_h=s4, h_mult=1 << 14, h_shift=22,
                             name="name_lstm")
        g.output(h2, c2)
        return g

    def kv_graph():
        g = Graph("nb_name_kv")
        h = g.input("h", MEM_DIM)
        kv = g.matmul(h, q8(np.concatenate([nb.w["enc_attn.wk.weight"], nb.w["enc_attn.wv.weight"],
                                            nb.w["pred_attn.wk.weight"], nb.w["pred_attn.wv.weight"]])),
                      mult=np.repeat(mult, 4 * MEM_DIM), shift=np.repeat(shift, 4 * MEM_DIM), name="kv")
        g.output(kv)
        return g

    rows = []
    for part, graph in (("per frame (encoder query)", attn_graph("enc_attn")),
                        ("per token (predictor query)", attn_graph("pred_attn")),
                        ("name encoder, per character", cell_graph()),
                        ("name K/V projections, per name", kv_graph())):
        prog = azc.compile(graph, cfg, placement="greedy")
        sess = Session(prog, keep_timeline=False)
        inputs = {}
        for tt in graph.inputs:
            name = tt.name
            if tt.kind == "index":
                inputs[name] = np.array([5], np.int32)
            elif tt.dtype == "int16":
                inputs[name] = np.zeros((1, tt.cols), np.int16)
            else:
                inputs[name] = rng.integers(-60, 60, (1, tt.cols)).astype(np.int8)
        sess.run(inputs)              # warm-up: resident weights come in once
        res = sess.run(inputs)
        st = res.stats.totals()
        rows.append({"part": part, "macs": int(st["macs"]), "cycles": int(res.cycles),
                     "weight_bytes": int(prog.weight_bytes), "offchip_bytes": int(st["offchip_read_bytes"] + st["offchip_write_bytes"]),
                     "energy_pj": float(st.get("energy_total_pj", 0.0))})
    cell, kv = rows[2], rows[3]
    nc = n_names * name_chars
    rows.append({"part": f"per request ({n_names} names x {name_chars} chars)",
                 **{k: cell[k] * nc + kv[k] * n_names for k in ("macs", "cycles", "offchip_bytes", "energy_pj")},
                 "weight_bytes": cell["weight_bytes"] + kv["weight_bytes"]})
    return {"rows": rows, "n_names": n_names, "clock_hz": float(cfg["clock_hz"]),
            "memory_bytes_per_request": int(2 * 2 * n1 * MEM_DIM),
            "note": (f"neural biasing on the chip ({preset} preset), list of {n_names} names; K/V memory "
                     f"{2 * 2 * n1 * MEM_DIM} int8 bytes per request; softmax normalization not modelled")}


# ------------------------------------------------------------------ experiment hook
def evaluate_experiment(sets, fm, model_path, beam, seed, path=None, progress=True) -> dict:
    """Rows for asr.experiments.biasing: WER with the neural model (list bound per request),
    with and without shallow fusion on top, and the module's chip cost."""
    from tqdm import tqdm
    from asr.decode.biasing import BiasList
    from asr.experiments.biasing import decode
    from asr.metrics import error_rates
    nb = NeuralBias(path or default_path())
    if nb.meta.get("base_sha256") != file_sha256(model_path):
        # fine-tuned from another model: its rows would compare two different recognizers
        raise ModelError(f"{nb.path} was fine-tuned from another base model than {model_path}; "
                         f"retrain it with `python -m asr.decode.neural_bias --minutes 8`")
    out, results = [], {}
    for name in ("names", "no_names"):
        rows = sets[name]
        hyps, secs = [], 0.0
        for r in tqdm(rows, desc=f"neural bias {name}", unit="utt", file=sys.stderr,
                      disable=not progress, leave=False):
            m = nb.bind(r["list"])
            enc = m.encode(r["feats"], m.encoder_init())[0]
            text, s = decode(m, enc, None, beam)
            hyps.append(text)
            secs += s
        results[name] = {**error_rates([r["text"] for r in rows], hyps),
                         "decode_ms_per_utt": 1e3 * secs / len(rows), "hyps": hyps}
    # Control: the same fine-tuned model, each names-utterance's list with its spoken names
    # swapped for other distractors. What remains of the gain is fine-tuning, not biasing.
    rows = sets["names"]
    ctrl = []
    for r in tqdm(rows, desc="neural bias control", unit="utt", file=sys.stderr,
                  disable=not progress, leave=False):
        spoken = set(r["names"])
        others = [n for n in sets["no_names"][0]["list"] + r["list_large"] if n not in spoken]
        lst = list(dict.fromkeys([n for n in r["list"] if n not in spoken] + others))[:len(r["list"])]
        m = nb.bind(lst)
        ctrl.append(decode(m, m.encode(r["feats"], m.encoder_init())[0], None, beam)[0])
    from asr.experiments.biasing import name_recall
    out.append({"method": f"neural biasing ({nb.meta['steps']} steps, {nb.meta['minutes']:.1f} min)",
                "weight": None, "wer_names": results["names"]["wer"],
                "wer_no_names": results["no_names"]["wer"],
                "name_recall": name_recall(sets["names"], results["names"]["hyps"]),
                "decode_ms_per_utt": (results["names"]["decode_ms_per_utt"] + results["no_names"]["decode_ms_per_utt"]) / 2})
    out.append({"method": "  control: same model, spoken names left out of the list",
                "weight": None, "wer_names": error_rates([r["text"] for r in rows], ctrl)["wer"],
                "wer_no_names": results["no_names"]["wer"], "name_recall": name_recall(rows, ctrl),
                "decode_ms_per_utt": None})
    cost = chip_cost(nb, n_names=len(sets["names"][0]["list"]) if sets["names"] else 100)
    return {"rows": out, "meta": nb.meta, "chip_cost": cost["rows"], "chip_note": cost["note"],
            "memory_bytes_per_request": cost["memory_bytes_per_request"]}


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m asr.decode.neural_bias",
                                 description="Fine-tune the shipped model with the neural-biasing module.")
    ap.add_argument("--model", default=None, help="base float export (default: models/shipped/model.npz)")
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--out", default=None, help=f"output .npz (default: {default_path()})")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from asr.experiments import common as C
    mp = C.resolve_model(a.model)
    cd = C.corpus_dir_for(mp, a.corpus)
    r = finetune(mp, cd, a.out, minutes=a.minutes, seed=a.seed, threads=a.threads)
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
