"""Neural context biasing: a tree-constrained pointer generator (TCPGen; Sun et al. 2021) on the
RNN-T: multi-head attention over embeddings of the bias list's prefix-tree nodes, trained
jointly with the whole RNN-T.

Why not the plain context-aware transducer (attention over one embedding per name, added to the
encoder and predictor outputs)? We trained that design first (12 minutes, 1283 steps on 2 cores):
it learned to ignore its list (a control with the spoken names removed from the list gave
identical output), because turning a whole-name embedding into "which character comes next"
is more than our training budget can teach. TCPGen gives the network that structure: the
symbolic prefix tree of the request's names says which characters may continue a name at this
point of the hypothesis, and the network only learns *whether and which*.

Per request, the list's names are compiled into a prefix tree over tokens. A hypothesis carries
its tree node in the predictor state: the root at the start and after every space (a name may
begin at any word), the child when the emitted token continues a name, and "dead" otherwise
until the next space. At every joint step (frame t, hypothesis u):
  valid  = tokens that continue a name from the node (plus space after a complete name)
  q      = W_qe enc_t + W_qp pred_u + b_q, split into HEADS heads q_h      (D = HEADS x d)
  p_h    = softmax over valid c of  q_h . K_h[c] / sqrt(d)   (head h's attention; K: token
           embeddings, each head reading its d-slice)
  ctx    = concat_h sum_c p_h,c V_h[c]                        (D)
  ptr    = sum_h a_h p_h                  (a = softmax of learned head-mixture weights)
  g      = sigmoid(w_h . tanh(enc_t + pred_u) + w_c . ctx + w_depth[node depth] + b_g),
           0 where nothing is valid (the depth term lets the gate trust the pointer more the
           further into a name the hypothesis is)
  P(blank) = P_rnnt(blank);  P(k) = (1 - P_rnnt(blank)) ((1 - g) P_rnnt(k | not blank) + g ptr_k)
So the module can only move probability toward tokens that continue a listed name, and where
no name is in progress (dead node) the output is the RNN-T's (up to rounding).

Training (``finetune``): the pointer and the RNN-T (JOINT_PARTS + ENCODER_PARTS: all of it)
trained together with the RNN-T loss on the mixed distribution, for a bounded wall-clock time,
plus learning without forgetting: on the batch's utterances without names, KD_WEIGHT times the
KL divergence from the frozen base model's output (the jointly trained RNN-T otherwise drifts
on name-free speech). ``--frozen-encoder`` keeps the encoder as shipped (the chip's encoder
program and cached encoder outputs then stay valid, and the file is 1.6 MB instead of 8 MB).
Half of each batch are synthesized commands (training voices) naming contacts and appliances
that neither the corpus nor the test sets contain (asr.experiments.biasing.build_train_set),
the rest corpus utterances with and without names.
A batch shares one bias list: the names of its utterances (each kept with probability P_KEEP,
so the gate also learns lists that miss the spoken name) plus distractor names up to
TRAIN_LIST_SIZE, the list size of the test requests. The file holds the pointer and the
trained RNN-T parts; the rest is read from the base model, checked by its sha256.

Inference (``NeuralBiasRNNT``): numpy, the asr.decode model interface bound to one request's
list; beam search runs unchanged (the predictor output carries the node's query part and
valid-token mask to the joint). ``chip_cost`` builds the module's per-frame, per-token and
per-joint-step work as azsim graphs and runs them on the simulated chip for cycles and bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from asr import text as asr_text
from azsim.errors import ConfigError, ModelError

ATTN_DIM = 64
HEADS = 4                   # attention heads over the tree node's children (ATTN_DIM / HEADS each)
TRAIN_LIST_SIZE = 100
P_KEEP = 0.8
N_NOVEL = 1200              # synthesized commands naming contacts and appliances no corpus has
MAX_DEPTH = 8              # the gate's depth feature: characters into a name, capped
BASE_LR = 1e-4              # the RNN-T's learning rate, trained with the pointer
JOINT_PARTS = ("embed", "pred_lstm", "pred_proj", "joint_out")
ENCODER_PARTS = ("encoder", "enc_proj")   # trained too unless the encoder is kept frozen
KD_WEIGHT = 30.0            # KL to the frozen base on name-free utterances (learning without forgetting)
GATE_BIAS_INIT = -3.0       # the gate starts near closed: training starts at the RNN-T's output
FORMAT = "azsim-neural-bias-v3"
SPACE = asr_text.VOCAB.index(" ")
DEAD = -1
_NEG = -1e4                 # a finite "minus infinity": masked scores, gate off (no NaN gradients)


def default_path() -> Path:
    """The module trained on the shipped model, shipped beside it (the pointer and the jointly
    trained RNN-T: 8 MB)."""
    return Path(__file__).resolve().parents[2] / "models" / "neural_bias" / "model.npz"


# ------------------------------------------------------------------ the prefix tree
class PrefixTree:
    """Token prefix tree of a request's names. Node 0 is the root; ``step`` is the transition a
    hypothesis makes per emitted token; ``valid[node]`` the (V,) mask of tokens that continue a
    name from that node (space after a complete name included)."""

    def __init__(self, names, vocab_size: int = asr_text.VOCAB_SIZE):
        self.children: list[dict[int, int]] = [{}]
        self.complete: list[bool] = [False]
        self.depth: list[int] = [0]
        for name in names:
            node = 0
            for tok in asr_text.encode(name):
                nxt = self.children[node].get(tok)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][tok] = nxt
                    self.children.append({})
                    self.complete.append(False)
                    self.depth.append(self.depth[node] + 1)
                node = nxt
            self.complete[node] = True
        self.valid = np.zeros((len(self.children), vocab_size), bool)
        for n, ch in enumerate(self.children):
            self.valid[n, list(ch)] = True
            if self.complete[n]:
                self.valid[n, SPACE] = True
        self.valid.setflags(write=False)

    def step(self, node: int, token: int) -> int:
        if token == asr_text.BLANK:
            return node
        if node != DEAD:
            nxt = self.children[node].get(token)
            if nxt is not None:
                return nxt
        return 0 if token == SPACE else DEAD

    def nodes_of(self, tokens) -> list[int]:
        """The node before each token and after the last: len(tokens) + 1 nodes."""
        out = [0]
        for t in tokens:
            out.append(self.step(out[-1], int(t)))
        return out

    def gate_depth(self, node: int) -> int:
        """The node's depth as the gate sees it (capped at MAX_DEPTH; 0 for dead)."""
        return 0 if node == DEAD else min(self.depth[node], MAX_DEPTH)

    def mask(self, node: int) -> np.ndarray:
        if node == DEAD:
            return np.zeros(self.valid.shape[1], bool)
        return self.valid[node]

    @property
    def n_edges(self) -> int:
        return sum(len(c) for c in self.children)

    def nbytes(self) -> int:
        """Its size as a device would store it: per edge a token (1 B) and a child index
        (2 B), per node a first-edge index (2 B) and a complete flag (1 B)."""
        return 3 * self.n_edges + 3 * len(self.children)


# ------------------------------------------------------------------ torch module (training)
def _torch_module(vocab_size: int, joint_dim: int):
    import torch
    from torch import nn

    class TreePointer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_enc = nn.Linear(joint_dim, ATTN_DIM)
            self.q_pred = nn.Linear(joint_dim, ATTN_DIM, bias=False)
            self.keys = nn.Embedding(vocab_size, ATTN_DIM)
            self.values = nn.Embedding(vocab_size, ATTN_DIM)
            self.head_mix = nn.Parameter(torch.zeros(HEADS))   # pointer = a mixture of the heads'
            self.gate_h = nn.Linear(joint_dim, 1)
            self.gate_c = nn.Linear(ATTN_DIM, 1, bias=False)
            self.gate_depth = nn.Embedding(MAX_DEPTH + 1, 1)
            nn.init.zeros_(self.gate_depth.weight)
            with torch.no_grad():
                self.gate_h.bias.fill_(GATE_BIAS_INIT)

        def log_probs(self, enc, pred, base_logits, valid, depth):
            """enc (..., J) and pred (..., J) broadcast to the joint's grid; base_logits the
            RNN-T joint's logits there; valid (..., V) bool and depth (...) int64 (the node's
            gate_depth), broadcast likewise. -> (..., V) log-probabilities of the mixture."""
            dh = ATTN_DIM // HEADS
            q = (self.q_enc(enc) + self.q_pred(pred)).unflatten(-1, (HEADS, dh))        # (..., H, dh)
            keys = self.keys.weight.view(-1, HEADS, dh)
            s = torch.einsum("...hd,vhd->...hv", q, keys) / dh ** 0.5
            s = torch.where(valid.unsqueeze(-2), s, torch.full_like(s, _NEG))
            head_log = torch.log_softmax(s, -1)                                        # (..., H, V)
            ctx = torch.einsum("...hv,vhd->...hd", head_log.exp(),
                               self.values.weight.view(-1, HEADS, dh)).flatten(-2)       # (..., D)
            mix_log = torch.log_softmax(self.head_mix, -1)[:, None]
            ptr_log = torch.logsumexp(head_log + mix_log, -2)
            g = self.gate_h(torch.tanh(enc + pred)) + self.gate_c(ctx) + self.gate_depth(depth)
            g = torch.where(valid.any(-1, keepdim=True), g, torch.full_like(g, _NEG))
            lp = torch.log_softmax(base_logits, -1)
            lp_blank = lp[..., :1]
            lp_rest = lp[..., 1:]
            lp_not_blank = torch.logsumexp(lp_rest, -1, keepdim=True)
            mix = torch.logaddexp(nn.functional.logsigmoid(-g) + lp_rest - lp_not_blank,
                                  nn.functional.logsigmoid(g) + ptr_log[..., 1:])
            return torch.cat([lp_blank, lp_not_blank + mix], -1)

    return TreePointer()


def valid_masks(tree: PrefixTree, y: np.ndarray, y_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, U+1, V) valid-token masks and (B, U+1) gate depths along each label sequence (the
    node after y_1..y_u)."""
    n_b, max_u = y.shape
    out = np.zeros((n_b, max_u + 1, tree.valid.shape[1]), bool)
    depth = np.zeros((n_b, max_u + 1), np.int64)
    for b in range(n_b):
        for u, node in enumerate(tree.nodes_of(y[b, :int(y_lens[b])])):
            out[b, u] = tree.mask(node)
            depth[b, u] = tree.gate_depth(node)
    return out, depth


def finetune(model_path, corpus_dir, out_path=None, minutes: float = 15.0, seed: int = 0,
             batch_size: int = 16, lr: float = 3e-3, base_lr: float = BASE_LR, threads: int = 1,
             n_novel: int = N_NOVEL, train_encoder: bool = True, kd_weight: float = KD_WEIGHT,
             log=print) -> dict:
    """Train the pointer for `minutes` of wall clock, jointly with the RNN-T's prediction and
    joint networks (JOINT_PARTS, at `base_lr`; 0 keeps the whole RNN-T frozen) and, with
    `train_encoder` (the default), its encoder (ENCODER_PARTS): the whole RNN-T moves with the
    pointer and the file holds the encoder as well. Without it the encoder stays as shipped (the
    chip's encoder program and every cached encoder output stay valid). `kd_weight` > 0 adds,
    on the batch's utterances without names, the KL divergence from the frozen base model's
    output to the biased model's (mean over lattice positions; learning without forgetting), so
    what the RNN-T learns about names costs less on everything else."""
    import torch
    from asr.data import corpus as corpus_mod
    from asr.experiments.biasing import NOVEL_APPLIANCES, bias_list, build_train_set, distractor_pool
    from asr.model.loss import rnnt_loss
    from asr.train.compress_train import load_float_model
    from asr.train.loop import Example, collate, to_examples

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng([seed, 61])
    model_path = Path(model_path)
    if not 0.0 <= base_lr <= 0.01:
        raise ConfigError(f"base_lr = {base_lr}; allowed: [0, 0.01]")
    if train_encoder and base_lr == 0:
        raise ConfigError("train_encoder (the default; --frozen-encoder turns it off) needs "
                          "base_lr > 0: the encoder trains at base_lr")
    if not 0.0 <= kd_weight <= 1000.0:
        raise ConfigError(f"kd_weight = {kd_weight}; allowed: [0, 1000]")
    parts = JOINT_PARTS + (ENCODER_PARTS if train_encoder else ())
    base, _ = load_float_model(model_path)
    base.eval()
    teacher = None
    if kd_weight > 0:
        import copy
        teacher = copy.deepcopy(base)
        for p in teacher.parameters():
            p.requires_grad_(False)
    rnnt_params = [p for n, p in base.named_parameters() if n.split(".")[0] in parts]
    for p in base.parameters():
        p.requires_grad_(False)
    for p in rnnt_params if base_lr > 0 else []:
        p.requires_grad_(True)
    mod = _torch_module(base.cfg.vocab_size, base.cfg.joint_dim)
    utts = [u for u in corpus_mod.load_subset(corpus_dir, "train") if u.meta.get("source") == "espeak"]
    names_of = []
    for u in utts:
        s = u.meta.get("slots") or {}
        names_of.append([s[k] for k in ("contact", "appliance") if k in s])
    examples = to_examples(utts)
    assert len(examples) == len(utts)
    # Names the recognizer never learned: where the list is the only help, so the gate learns
    # to open. (Trained on the corpus's own names alone, the pointer learned to stay shut.)
    novel = build_train_set(corpus_dir, n_novel, seed, progress=True)
    for r in novel:
        text = asr_text.normalize(r["text"])
        examples.append(Example(r["feats"].astype(np.float16), np.asarray(asr_text.encode(text), np.int64), text))
        names_of.append(list(r["names"]))
    groups = [list(range(len(utts), len(examples))),                        # novel names
              [i for i in range(len(utts)) if names_of[i]],                   # corpus names
              [i for i in range(len(utts)) if not names_of[i]]]               # no names
    shares = (0.5, 0.25, 0.25)
    pool = distractor_pool(seed, NOVEL_APPLIANCES)
    param_groups = [{"params": list(mod.parameters()), "lr": lr}]
    if base_lr > 0:
        param_groups.append({"params": rnnt_params, "lr": base_lr})
    opt = torch.optim.Adam(param_groups)
    t0, step, run = time.time(), 0, []
    while time.time() - t0 < 60.0 * minutes:
        idx = []
        for grp, share in zip(groups, shares):
            k = int(round(batch_size * share))
            idx += list(rng.choice(grp, min(k, len(grp)), replace=False))
        names = []
        for i in idx:
            names += [n for n in names_of[i] if rng.random() < P_KEEP]
        names = bias_list(names, TRAIN_LIST_SIZE, pool, rng)
        x, x_lens, y, y_lens = collate(examples, idx)
        valid, depth = (torch.from_numpy(a) for a in valid_masks(PrefixTree(names), y.numpy(), y_lens.numpy()))
        with torch.set_grad_enabled(train_encoder):
            enc, _ = base.encode(x, x_lens)
        with torch.set_grad_enabled(base_lr > 0):
            pred = base.predict(y)
            enc4, pred4 = enc[:, :, None, :], pred[:, None, :, :]
            logits = base.joint(enc4, pred4)
        lp = mod.log_probs(enc4, pred4, logits, valid[:, None], depth[:, None])
        loss = rnnt_loss(lp, y, x_lens, y_lens, blank=base.cfg.blank).mean()
        plain = [j for j, i in enumerate(idx) if not names_of[i]]
        if teacher is not None and plain:
            loss = loss + kd_weight * _kd_loss(teacher, lp, x, x_lens, y, y_lens, torch.tensor(plain))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for grp in param_groups for p in grp["params"]], 5.0)
        opt.step()
        step += 1
        run.append(float(loss.detach()))
        if step % 25 == 0:
            log(f"neural-bias step {step} min {(time.time() - t0) / 60:.2f} loss {np.mean(run[-25:]):.3f}")
    out_path = Path(out_path) if out_path else default_path()
    trained = ({k: v for k, v in base.state_dict().items() if k.split(".")[0] in parts}
               if base_lr > 0 else {})
    save(out_path, mod, {"steps": step, "minutes": (time.time() - t0) / 60, "seed": seed,
                         "batch_size": batch_size, "lr": lr, "base_lr": base_lr, "heads": HEADS,
                         "kd_weight": kd_weight,
                         "joint_parts": sorted({k.split(".")[0] for k in trained}),
                         "train_list_size": TRAIN_LIST_SIZE, "p_keep": P_KEEP, "n_novel": n_novel,
                         "final_loss": float(np.mean(run[-25:])) if run else None,
                         "base": _repo_relative(model_path), "base_sha256": file_sha256(model_path)},
         trained_base=trained)
    return {"path": str(out_path), "steps": step, "minutes": (time.time() - t0) / 60,
            "final_loss": float(np.mean(run[-25:])) if run else None}


def _kd_loss(teacher, lp, x, x_lens, y, y_lens, rows):
    """Mean over `rows` of the mean KL(teacher || biased model) over each one's valid lattice
    positions (t < T, u <= U); lp: the biased model's (B, T, U+1, V) log-probs."""
    import torch
    with torch.no_grad():
        enc, _ = teacher.encode(x[rows], x_lens[rows])
        pred = teacher.predict(y[rows])
        ref = torch.log_softmax(teacher.joint(enc[:, :, None, :], pred[:, None, :, :]), -1)
    out = lp[rows]
    t_ok = torch.arange(out.shape[1])[None, :, None] < x_lens[rows][:, None, None]
    u_ok = torch.arange(out.shape[2])[None, None, :] <= y_lens[rows][:, None, None]
    mask = (t_ok & u_ok).to(out.dtype)
    kl = (ref.exp() * (ref - out)).sum(-1)
    return ((kl * mask).sum((1, 2)) / mask.sum((1, 2))).mean()


def _repo_relative(path: Path) -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(out_path, mod, meta: dict, trained_base: dict | None = None) -> Path:
    """The module's weights under ``nb.*``, the jointly trained RNN-T parts under
    ``base.*``, and the meta, which must name the sha256 of the base model they were trained
    from: the file holds what changed, the rest is read from that base."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"nb.{k}": v.detach().cpu().float().numpy() for k, v in mod.state_dict().items()}
    arrays.update({f"base.{k}": v.detach().cpu().float().numpy() for k, v in (trained_base or {}).items()})
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez(tmp, nb_format=np.array(FORMAT), nb_meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(out_path)
    return out_path


# ------------------------------------------------------------------ numpy inference
_WEIGHTS = ("q_enc.weight", "q_enc.bias", "q_pred.weight", "keys.weight", "values.weight",
            "head_mix", "gate_h.weight", "gate_h.bias", "gate_c.weight", "gate_depth.weight")


class NeuralBias:
    """The trained module's weights (numpy) and the base model it was trained on (the float
    export at `base_path`; rejected unless its sha256 is the one the module was trained on)."""

    def __init__(self, path, base_path):
        from asr.model.numpy_rnnt import NumpyRNNT
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: neural-biasing model not found (train it with "
                                    f"`python -m asr.decode.neural_bias --minutes 15`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                fmt = str(z["nb_format"]) if "nb_format" in z.files else None
                if fmt != FORMAT:
                    raise ModelError(f"{path}: nb_format = {fmt!r}; allowed: {FORMAT!r} (retrain it "
                                     f"with `python -m asr.decode.neural_bias`)")
                self.w = {k[3:]: z[k].astype(np.float32) for k in z.files if k.startswith("nb.")}
                trained = {k[5:]: z[k].astype(np.float32) for k in z.files if k.startswith("base.")}
                self.meta = json.loads(str(z["nb_meta"])) if "nb_meta" in z.files else {}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ModelError(f"{path}: not a readable .npz ({err})") from None
        missing = [k for k in _WEIGHTS if k not in self.w]
        if missing:
            raise ModelError(f"{path}: missing neural-biasing weights {missing}")
        base_bytes = Path(base_path).read_bytes()   # read once: hashed, then parsed
        if self.meta.get("base_sha256") != hashlib.sha256(base_bytes).hexdigest():
            # the pointer learned where this base errs: on another base its gate means nothing
            raise ModelError(f"{path}: trained on another base model than {base_path} (base_sha256 "
                             f"{str(self.meta.get('base_sha256'))[:12]}...); retrain it with "
                             f"`python -m asr.decode.neural_bias --minutes 15`")
        try:
            with np.load(io.BytesIO(base_bytes), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as err:  # zipfile/format errors of many kinds
            raise ModelError(f"{base_path}: not a readable .npz model file ({type(err).__name__}: {err})") from None
        self.shipped = NumpyRNNT.from_arrays(arrays, source=str(base_path))
        self.base = self.shipped
        if trained:   # the jointly trained parts replace the shipped ones
            for k, v in trained.items():
                if (k.split(".")[0] not in JOINT_PARTS + ENCODER_PARTS or k not in arrays
                        or arrays[k].shape != v.shape):
                    raise ModelError(f"{path}: base.{k} {v.shape} is not a trained part of {base_path} "
                                     f"(allowed: {JOINT_PARTS + ENCODER_PARTS} with the base's shapes)")
            self.base = NumpyRNNT.from_arrays({**arrays, **trained}, source=f"{path} on {base_path}")
        # trained with its encoder (train_encoder): encoder outputs of the shipped model don't fit it
        self.own_encoder = any(k.split(".")[0] in ENCODER_PARTS for k in trained)
        self.path = path

    def bind(self, names) -> "NeuralBiasRNNT":
        return NeuralBiasRNNT(self, names)


class NeuralBiasRNNT:
    """The asr.decode model interface with the pointer bound to one request's names. The
    predictor output is the RNN-T's (J) followed by the query's predictor part (D), the node's
    valid-token mask (V) and its depth's gate term (1), so the joint sees each hypothesis's node."""

    def __init__(self, nb: NeuralBias, names):
        from asr.decode.biasing import normalize_names
        self.names = normalize_names(names, "neural bias list")
        self.tree = PrefixTree(self.names, nb.base.vocab_size)
        self.base = nb.base
        self.vocab_size, self.blank = self.base.vocab_size, self.base.blank
        w = nb.w
        self.J = self.base.joint_dim
        self.wqe_t, self.bq = w["q_enc.weight"].T.copy(), w["q_enc.bias"]
        self.wqp_t = w["q_pred.weight"].T.copy()
        dh = ATTN_DIM // HEADS
        # (H, dh, V) keys scaled by 1/sqrt(dh); (H, V, dh) values; head mixture weights
        self.keys_h = (w["keys.weight"].reshape(-1, HEADS, dh).transpose(1, 2, 0)
                       / np.float32(dh ** 0.5)).astype(np.float32)
        self.values_h = np.ascontiguousarray(w["values.weight"].reshape(-1, HEADS, dh).transpose(1, 0, 2))
        hm = w["head_mix"].astype(np.float64)
        self.head_w = (np.exp(hm - hm.max()) / np.exp(hm - hm.max()).sum()).astype(np.float32)
        self.gh, self.gb = w["gate_h.weight"][0], float(w["gate_h.bias"][0])
        self.gc = w["gate_c.weight"][0]
        self.gd = w["gate_depth.weight"][:, 0]

    def encoder_init(self):
        return self.base.encoder_init()

    def encode(self, x, state):
        return self.base.encode(x, state)

    def predictor_init(self):
        return (self.base.predictor_init(), 0)

    def predict(self, token, state):
        base_state, node = state
        pred, base_state = self.base.predict(token, base_state)
        node = self.tree.step(node, int(token))
        extra = np.concatenate([pred @ self.wqp_t, self.tree.mask(node).astype(np.float32),
                                [self.gd[self.tree.gate_depth(node)]]])
        return np.concatenate([pred, extra]).astype(np.float32), (base_state, node)

    def joint(self, enc, pred):
        enc = np.asarray(enc, np.float32)
        pred = np.asarray(pred, np.float32)
        J = self.J
        p, qp = pred[..., :J], pred[..., J:J + ATTN_DIM]
        valid, g_depth = pred[..., J + ATTN_DIM:-1] > 0.5, pred[..., -1:]
        h = np.tanh(enc + p)
        z = h @ self.base.out_w_t + self.base.out_b
        z = z - z.max(-1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        q = enc @ self.wqe_t + self.bq + qp
        qh = q.reshape(q.shape[:-1] + (HEADS, 1, ATTN_DIM // HEADS))                # (..., H, 1, dh)
        s = (qh @ self.keys_h)[..., 0, :]                                             # (..., H, V)
        s = np.where(valid[..., None, :], s, np.float32(_NEG))
        s = s - s.max(-1, keepdims=True)
        heads = np.exp(s)
        heads /= heads.sum(-1, keepdims=True)
        heads = np.where(valid[..., None, :], heads, 0.0)
        ctx = (heads[..., None, :] @ self.values_h)[..., 0, :]                       # (..., H, dh)
        ctx = ctx.reshape(ctx.shape[:-2] + (ATTN_DIM,))
        ptr = np.einsum("...hv,h->...v", heads, self.head_w)
        g = (h @ self.gh + self.gb + ctx @ self.gc)[..., None] + g_depth
        g = np.where(valid.any(-1, keepdims=True), 0.5 * (1.0 + np.tanh(0.5 * g)), 0.0)
        lp_not_blank = np.log(np.exp(lp[..., 1:]).sum(-1, keepdims=True))
        p_rest = np.exp(lp[..., 1:] - lp_not_blank)
        mix = (1.0 - g) * p_rest + g * ptr[..., 1:]
        with np.errstate(divide="ignore"):
            out = np.concatenate([lp[..., :1], lp_not_blank + np.log(mix)], -1)
        return np.maximum(out, np.float32(-1e30)).astype(np.float32)


# ------------------------------------------------------------------ chip cost
def chip_cost(nb: NeuralBias, n_names: int = 100, name_chars: int = 12, preset: str = "default") -> dict:
    """Cycles and bytes of the module on the simulated chip, from azsim graphs of its int8
    matmuls (weights quantized per output channel, symmetric):
      per frame:      q_e = W_qe enc                                   (D x J)
      per token:      q_p = W_qp pred                                  (D x J)
      per joint step: per head h (HEADS of them, d = D / HEADS): q_h = q_e,h + q_p,h;
                      scores_h = K_h q_h (V x d); exp LUT; ctx_h = V_h^T p_h (d x V);
                      gate = w_h . tanh-hidden + sum_h w_c,h . ctx_h (1 x J, 1 x d each)
    The masking of invalid tokens, the softmax's division by the row sum, the mixture of the
    heads' distributions and the mixing with the RNN-T's are V-wide vector work on the host (not
    modelled). The per-request prefix
    tree is compiled on the host; its bytes are reported (3 B per edge and per node)."""
    from azsim import compile as azc
    from azsim import hw as hw_mod
    from azsim.engine import Session
    from azsim.graph import Graph

    cfg = azc.native_config(hw_mod.load(preset))
    rng = np.random.default_rng(0)
    J, D, V = nb.base.joint_dim, ATTN_DIM, nb.base.vocab_size
    w = nb.w

    def q8(m):
        m = np.asarray(m, np.float32)
        s = np.maximum(np.abs(m).max(1, keepdims=True), 1e-8) / 127.0
        return np.clip(np.rint(m / s), -127, 127).astype(np.int8)

    def req(n):
        return np.full(n, 1 << 14, np.int32), np.full(n, 22, np.int32)

    exp_table = np.clip(np.rint(127 * np.exp((np.arange(256) - 255) / 32.0)), 0, 127).astype(np.int8)

    def query_graph(kind):
        g = Graph(f"nb_q_{kind}")
        x = g.input("x", J)
        m, s = req(D)
        g.output(g.matmul(x, q8(w[f"q_{kind}.weight"]), mult=m, shift=s, name=f"q_{kind}"))
        return g

    def step_graph():
        # one scores / exp / context chain per head on its ATTN_DIM / HEADS slice of the query
        g = Graph("nb_step")
        dh = D // HEADS
        h = g.input("hidden", J)
        outs = [g.matmul(h, q8(w["gate_h.weight"]), out_dtype="int32", name="gate_h")]
        keys = w["keys.weight"].reshape(V, HEADS, dh)
        values = w["values.weight"].reshape(V, HEADS, dh)
        gate_c = w["gate_c.weight"].reshape(1, HEADS, dh)
        for k in range(HEADS):
            qe, qp = g.input(f"q_e{k}", dh), g.input(f"q_p{k}", dh)
            q = g.add(qe, qp, a_mult=1, b_mult=1, shift=1, name=f"q{k}")
            m, s = req(V)
            scores = g.matmul(q, q8(keys[:, k]), mult=m, shift=s, name=f"scores{k}")
            p = g.lut(scores, exp_table, name=f"exp{k}")
            m, s = req(dh)
            ctx = g.matmul(p, q8(values[:, k].T), mult=m, shift=s, name=f"ctx{k}")
            outs += [p, g.matmul(ctx, q8(gate_c[:, k]), out_dtype="int32", name=f"gate_c{k}")]
        g.output(*outs)
        return g

    rows = []
    for part, graph in (("per frame (encoder query)", query_graph("enc")),
                        ("per token (predictor query)", query_graph("pred")),
                        ("per joint step (pointer + gate)", step_graph())):
        prog = azc.compile(graph, cfg, placement="greedy")
        sess = Session(prog, keep_timeline=False)
        inputs = {tt.name: rng.integers(-60, 60, (1, tt.cols)).astype(np.int8) for tt in graph.inputs}
        sess.run(inputs)              # warm-up: resident weights come in once
        res = sess.run(inputs)
        st = res.stats.totals()
        rows.append({"part": part, "macs": int(st["macs"]), "cycles": int(res.cycles),
                     "weight_bytes": int(prog.weight_bytes),
                     "offchip_bytes": int(st["offchip_read_bytes"] + st["offchip_write_bytes"]),
                     "energy_pj": float(st.get("energy_total_pj", 0.0))})
    letters = [c for c in asr_text.VOCAB[3:]]
    names = ["".join(rng.choice(letters, name_chars)) for _ in range(n_names)]
    tree_bytes = PrefixTree(names).nbytes()
    return {"rows": rows, "n_names": n_names, "clock_hz": float(cfg["clock_hz"]),
            "memory_bytes_per_request": int(tree_bytes),
            "note": (f"neural biasing on the chip ({preset} preset): per-request prefix tree of "
                     f"{n_names} random {name_chars}-letter names {tree_bytes:,} B (host-built); "
                     f"masking, softmax division and mixing not modelled")}


# ------------------------------------------------------------------ training command
def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m asr.decode.neural_bias",
                                 description="Train the neural-biasing pointer on the shipped model.")
    ap.add_argument("--model", default=None, help="base float export (default: models/shipped/model.npz)")
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--out", default=None, help=f"output .npz (default: {default_path()})")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--base-lr", type=float, default=BASE_LR,
                    help=f"learning rate of the RNN-T, trained with the pointer (default "
                         f"{BASE_LR:g}; 0 keeps the RNN-T frozen, with --frozen-encoder)")
    ap.add_argument("--frozen-encoder", action="store_true",
                    help="keep the encoder as shipped: train the pointer with the prediction and "
                         "joint networks only (a 1.6 MB file instead of 8 MB)")
    ap.add_argument("--kd-weight", type=float, default=KD_WEIGHT,
                    help=f"weight of the KL to the frozen base model on utterances without names "
                         f"(default {KD_WEIGHT:g}; 0: off)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from asr.experiments import common as C
    mp = C.resolve_model(a.model)
    cd = C.corpus_dir_for(mp, a.corpus)
    r = finetune(mp, cd, a.out, minutes=a.minutes, seed=a.seed, threads=a.threads, base_lr=a.base_lr,
                 train_encoder=not a.frozen_encoder, kd_weight=a.kd_weight)
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
