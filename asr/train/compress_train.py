"""Compression fine-tuning from the shipped model: `azsim compress CONFIG` (= python -m asr.train.compress_train).

One bounded run (minutes of wall clock) per config in configs/compress/:

    name = "qat-int8"
    init = "models/shipped/model.npz"   # a float .npz export (or a loop.py checkpoint, which
                                        #   also carries the training-only CTC head)
    base_config = "configs/shipped.toml" # its [data] names the corpus, copied next to the export

    [compress]
    method = "qat"          # qat | finetune | teacher | distill
    mode = "ste"            # qat: ste (fake quant) | reg (sine regularizer) | none
    weight_bits = 8         # 4 or 8
    act_quant = true        # fake-quantize activations where the chip does (asr.train.qat)
    reg_weight = 0.0        # λ of the regularizer (mode = "reg"), ramped up over reg_ramp_steps
    sparsity = 0.0          # gradual magnitude pruning target (asr.quant.sparsify, Zhu-Gupta)
    pattern = "unstructured"  # or "N:M"
    prune_begin_step = 0, prune_end_step = 200, prune_frequency = 20
    prune_by_time = false   # true: those three are thousandths of the time budget, not steps
    teacher = ""            # distill: a teacher checkpoint written by a method = "teacher" run
    kd_weight = 1.0, kd_temperature = 1.0
    unlabelled_fraction = 0.0   # distill: share of batches whose labels the teacher makes

    [train]                 # FinetuneConfig below

Methods: "qat" fine-tunes through asr.train.qat.QATRNNT (optionally with gradual pruning);
"finetune" trains the float model (with optional pruning: the sparse float baseline);
"teacher" widens the student to a bidirectional teacher (asr.train.distill) and trains it;
"distill" trains the float student with RNN-T + CTC + lattice KL from the teacher.

Outputs: models/compress/<name>/model.npz (float32 export, on the integer grid for STE QAT),
config.toml (base config: the corpus for `azsim score`), compress.toml, summary.json;
runs/compress/<name>/log.txt; teachers: runs/compress/<name>/teacher.pt.
Score with the recipe that names the config in its `build` (e.g. `azsim score --recipe
recipes/int8-qat.toml`, which runs the fine-tune first when its model is missing); its
round-to-nearest conversion gives back an STE-QAT export's trained weight integers.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from azsim.errors import ConfigError, ModelError
from azsim.tomlio import read_toml

REPO_ROOT = Path(__file__).resolve().parents[2]
METHODS = ("qat", "finetune", "teacher", "distill")


def _check_fields(cls, d: dict, source: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown} (allowed: {sorted(known)})")
    for k, v in d.items():
        want = type(getattr(cls(), k))
        ok = (isinstance(v, want) and not (want is not bool and isinstance(v, bool))) or \
             (want is float and isinstance(v, int) and not isinstance(v, bool))
        if not ok:
            raise ConfigError(f"{source}: {k} = {v!r} must be of type {want.__name__}")


def _range(source, name, v, lo, hi):
    if not lo <= v <= hi:
        raise ConfigError(f"{source}: {name} = {v!r} (allowed: [{lo}, {hi}])")


@dataclass(frozen=True)
class CompressConfig:
    method: str = "qat"
    mode: str = "ste"
    weight_bits: int = 8
    act_quant: bool = True
    reg_weight: float = 0.0
    reg_balance: float = 0.0        # > 0: λ = reg_balance * |grad task| / |grad R| on the first batch
    reg_ramp_steps: int = 0         # 0: λ grows linearly with the run's fraction done
    sparsity: float = 0.0
    pattern: str = "unstructured"
    prune_begin_step: int = 0
    prune_end_step: int = 200
    prune_frequency: int = 20
    prune_by_time: bool = False     # begin/end/frequency in thousandths of the time budget, not steps
    teacher: str = ""
    kd_weight: float = 1.0
    kd_temperature: float = 1.0
    unlabelled_fraction: float = 0.0
    calib_utterances: int = 32      # dev utterances for the activation scales (PTQ's default)

    @classmethod
    def from_dict(cls, d: dict, source: str = "[compress]") -> "CompressConfig":
        _check_fields(cls, d, source)
        c = cls(**{k: (float(v) if isinstance(getattr(cls(), k), float) else v) for k, v in d.items()})
        if c.method not in METHODS:
            raise ConfigError(f"{source}: method = {c.method!r} (allowed: {', '.join(METHODS)})")
        from asr.train.qat import MODES
        if c.mode not in MODES:
            raise ConfigError(f"{source}: mode = {c.mode!r} (allowed: {', '.join(MODES)})")
        if c.weight_bits not in (4, 8):
            raise ConfigError(f"{source}: weight_bits = {c.weight_bits!r} (allowed: 4 or 8)")
        if not 0.0 <= c.sparsity < 1.0:
            raise ConfigError(f"{source}: sparsity = {c.sparsity!r} (allowed: [0, 1))")
        if c.pattern != "unstructured":
            try:
                n, m = (int(v) for v in c.pattern.split(":"))
            except ValueError:
                n = m = 0
            if not 0 < n < m <= 64:
                raise ConfigError(f"{source}: pattern = {c.pattern!r} (allowed: \"unstructured\" or "
                                  "\"N:M\" with 0 < N < M <= 64)")
            if c.sparsity:
                raise ConfigError(f"{source}: sparsity = {c.sparsity} with pattern {c.pattern!r}: "
                                  "an N:M pattern sets the sparsity itself; give one of them")
        _range(source, "reg_weight", c.reg_weight, 0.0, 1e6)
        _range(source, "reg_balance", c.reg_balance, 0.0, 1e3)
        if c.mode == "reg" and c.method == "qat" and not (c.reg_weight or c.reg_balance):
            raise ConfigError(f"{source}: mode = \"reg\" needs reg_weight > 0 or reg_balance > 0")
        _range(source, "kd_weight", c.kd_weight, 0.0, 1e4)
        _range(source, "kd_temperature", c.kd_temperature, 0.1, 100.0)
        _range(source, "unlabelled_fraction", c.unlabelled_fraction, 0.0, 1.0)
        _range(source, "calib_utterances", c.calib_utterances, 1, 10000)
        if c.prune_end_step <= c.prune_begin_step or c.prune_frequency < 1 or c.prune_begin_step < 0:
            raise ConfigError(f"{source}: prune_begin_step {c.prune_begin_step}, prune_end_step "
                              f"{c.prune_end_step}, prune_frequency {c.prune_frequency} (allowed: "
                              "0 <= begin < end, frequency >= 1)")
        if c.method == "distill" and not c.teacher:
            raise ConfigError(f"{source}: method = \"distill\" needs teacher = \"<teacher.pt>\"")
        if c.method != "distill" and c.unlabelled_fraction:
            raise ConfigError(f"{source}: unlabelled_fraction needs method = \"distill\" "
                              "(only a teacher can label untranscribed audio)")
        return c

    @property
    def prunes(self) -> bool:
        return self.sparsity > 0 or self.pattern != "unstructured"


@dataclass(frozen=True)
class FinetuneConfig:
    seed: int = 0
    threads: int = 1
    batch_size: int = 32
    lr: float = 3e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    max_minutes: float = 5.0
    max_steps: int = 100000
    grad_clip: float = 5.0
    ctc_weight: float = 0.5
    n_train: int = 8000             # training utterances drawn (seeded) from the corpus
    n_dev_eval: int = 200           # dev utterances decoded greedily before and after
    eval_at_start: bool = True
    log_every: int = 10

    @classmethod
    def from_dict(cls, d: dict, source: str = "[train]") -> "FinetuneConfig":
        _check_fields(cls, d, source)
        c = cls(**{k: (float(v) if isinstance(getattr(cls(), k), float) else v) for k, v in d.items()})
        for name, lo, hi in (("seed", 0, 2**31 - 1), ("threads", 1, 64), ("batch_size", 1, 4096),
                             ("warmup_steps", 0, 10**7), ("max_steps", 1, 10**9), ("n_train", 1, 10**7),
                             ("n_dev_eval", 0, 10**6), ("log_every", 1, 10**9), ("lr", 1e-7, 1.0),
                             ("min_lr_ratio", 0.0, 1.0), ("max_minutes", 0.01, 10000.0),
                             ("grad_clip", 0.0, 1e6), ("ctc_weight", 0.0, 10.0)):
            _range(source, name, getattr(c, name), lo, hi)
        return c


def load_config(path) -> dict:
    path = Path(path)
    cfg = read_toml(path, "config")
    allowed = {"name", "description", "init", "base_config", "compress", "train"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {unknown} (allowed: {sorted(allowed)})")
    name = cfg.get("name", path.stem)
    if not isinstance(name, str) or not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise ConfigError(f"{path}: name = {name!r} must be a non-empty string of letters, digits, '-', '_', '.'")
    cfg["name"] = name
    cfg["compress"] = CompressConfig.from_dict(cfg.get("compress", {}), f"{path} [compress]")
    cfg["train"] = FinetuneConfig.from_dict(cfg.get("train", {}), f"{path} [train]")
    cfg.setdefault("init", "models/shipped/model.npz")
    cfg.setdefault("base_config", "configs/shipped.toml")
    cfg["source"] = str(path)
    return cfg


def _out_dir(name: str, out_root=None) -> Path:
    return Path(out_root or REPO_ROOT / "models" / "compress") / name


def _run_dir(name: str, runs_root=None) -> Path:
    return Path(runs_root or REPO_ROOT / "runs" / "compress") / name


def output_path(config_path) -> Path:
    """Where run(config_path) leaves its result: the model export (a teacher: teacher.pt)."""
    cfg = load_config(config_path)
    if cfg["compress"].method == "teacher":
        return _run_dir(cfg["name"]) / "teacher.pt"
    return _out_dir(cfg["name"]) / "model.npz"


def build_key(config_path) -> str:
    """What an output was made from: the config's text and its init model's bytes (a new
    shipped model makes every fine-tune from it stale)."""
    import hashlib
    cfg = load_config(config_path)
    h = hashlib.sha256(Path(config_path).read_bytes())
    init = _resolve(cfg["init"])
    if init.is_file():
        h.update(init.read_bytes())
    if cfg["compress"].method == "distill":
        teacher = _resolve(cfg["compress"].teacher)
        if teacher.is_file():
            h.update(teacher.read_bytes())
    return h.hexdigest()[:16]


def _key_file(out: Path) -> Path:
    return out.with_name(out.name + ".build_key")


def is_current(config_path) -> bool:
    """The config's output exists and was made from this config text and init model."""
    path = _resolve(config_path)
    out = output_path(path)
    kf = _key_file(out)
    return out.is_file() and kf.is_file() and kf.read_text().strip() == build_key(path)


def ensure_built(configs, echo: bool = True) -> list[Path]:
    """Run, in order, each config whose output is missing or stale (made from another config
    text or init model: build_key); the outputs' paths. Up-to-date outputs are kept."""
    outs = []
    for c in configs:
        path = _resolve(c)
        out = output_path(path)
        if not is_current(path):
            why = "stale" if out.is_file() else "missing"
            print(f"building {out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out} "
                  f"({why}) with {c}: a bounded fine-tune, its [train] max_minutes plus evaluation",
                  file=sys.stderr, flush=True)
            run(path, echo=echo, log_stream=sys.stderr)   # stdout may be a command's JSON
            _key_file(out).write_text(build_key(path) + "\n")
        outs.append(out)
    return outs


def _resolve(p) -> Path:
    p = Path(p)
    return p if p.is_absolute() or p.exists() else REPO_ROOT / p


# ----------------------------------------------------------------------------- models
def load_float_model(path):
    """(RNNT, has_ctc_head) from a loop.py checkpoint (.pt) or a float export (.npz)."""
    from asr.model.rnnt import RNNT, ModelConfig

    path = _resolve(path)
    if not path.is_file():
        raise ModelError(f"{path}: init model not found")
    if path.suffix == ".npz":
        from asr.model.export import to_torch
        from asr.model.numpy_rnnt import NumpyRNNT   # validates format and shapes
        fm = NumpyRNNT.load(path)
        ModelConfig.from_dict(fm.config, f"{path} config_json")   # validates the config
        with np.load(path, allow_pickle=False) as z:
            model = to_torch({k: z[k] for k in z.files}, fm.config)
        model.train()           # as a checkpoint loads: the caller picks the mode
        return model, False     # the training-only CTC head is not exported: it is random here
    try:
        ck = torch.load(path, weights_only=False)
        model = RNNT(ModelConfig.from_dict(ck["model_cfg"], f"{path} model_cfg"))
        model.load_state_dict(ck["model"])
    except (KeyError, RuntimeError, EOFError, TypeError) as err:
        raise ModelError(f"{path}: not a training checkpoint ({type(err).__name__}: {err})") from None
    return model, True


# ----------------------------------------------------------------------------- running
class _Log:
    def __init__(self, path: Path, echo: bool = True, stream=None):
        self.path, self.echo, self.stream = path, echo, stream
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}"
        if self.echo:
            print(line, flush=True, file=self.stream or sys.stdout)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def evaluate(net, examples, batch_size: int = 32) -> dict:
    """Greedy dev WER of a float RNNT or a QATRNNT (through its fake-quantized network)."""
    from asr import text as asr_text
    from asr.train.loop import collate, error_rates, greedy_batch
    from asr.train.qat import QATRNNT

    if not examples:
        return {"wer": float("nan"), "cer": float("nan"), "n": 0}
    net.eval()
    order = np.argsort([len(e.feats) for e in examples], kind="stable")
    refs, hyps = [], []
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        x, x_lens, _, _ = collate(examples, idx)
        out = net.greedy(x, x_lens) if isinstance(net, QATRNNT) else greedy_batch(net, x, x_lens)
        for j, ids in zip(idx, out):
            refs.append(examples[j].text)
            hyps.append(asr_text.decode(ids).strip())
    net.train()
    cer, wer = error_rates(refs, hyps)
    return {"wer": wer, "cer": cer, "n": len(refs)}


def _lr(cfg: FinetuneConfig, step: int, frac: float) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    cos = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return cfg.lr * warm * cos


def _grad_ratio(net, task_loss) -> float:
    """|d task / d W| / |d R / d W| over the quantized weights (R unweighted)."""
    ws = list(net.quantized_weights().values())
    g_task = torch.autograd.grad(task_loss, ws, retain_graph=True, allow_unused=True)
    lam = net.reg_weight
    net.reg_weight = 1.0
    g_reg = torch.autograd.grad(net.penalty(), ws, allow_unused=True)
    net.reg_weight = lam
    norm = lambda gs: math.sqrt(sum(float((g ** 2).sum()) for g in gs if g is not None))
    return norm(g_task) / max(norm(g_reg), 1e-12)


def run(config_path, corpus_dir=None, out_root=None, runs_root=None, train_examples=None,
        dev_examples=None, echo: bool = True, log_stream=None) -> dict:
    """Run one compression fine-tune; returns the summary (also written as summary.json).
    `train_examples` / `dev_examples` (asr.train.loop.Example lists) bypass the corpus (tests)."""
    from asr.model.export import export_npz
    from asr.model.loss import rnnt_loss
    from asr.train import distill, qat
    from asr.train.loop import collate, make_batches, to_examples, TrainConfig

    t_start = time.monotonic()
    cfg = load_config(config_path)
    cc: CompressConfig = cfg["compress"]
    tc: FinetuneConfig = cfg["train"]
    name = cfg["name"]
    out_dir, run_dir = _out_dir(name, out_root), _run_dir(name, runs_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log.txt").unlink(missing_ok=True)
    log = _Log(run_dir / "log.txt", echo, log_stream)
    log(f"config {cfg['source']} (name {name}, method {cc.method}); command: {' '.join(sys.orig_argv)}")
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)

    # --- data ------------------------------------------------------------------------------
    base_cfg_path = _resolve(cfg["base_config"])
    if train_examples is None:
        from asr.data import corpus as corpus_mod
        from asr.train.loop import load_config as load_train_config
        base = load_train_config(base_cfg_path)
        cdir = Path(corpus_dir) if corpus_dir else corpus_mod.build(
            base["data"], base["train"].get("cache_dir") or None, progress=True)
        utts = corpus_mod.load_subset(cdir, "train")
        pick = np.sort(rng.choice(len(utts), size=min(tc.n_train, len(utts)), replace=False))
        train_examples = to_examples([utts[i] for i in pick])
        dev_utts = corpus_mod.load_subset(cdir, "dev")
        dev_examples = to_examples(dev_utts[:tc.n_dev_eval])
        calib_utts = dev_utts      # PTQ calibrates on dev too (recipe [calibration] subset)
        log(f"corpus {cdir}: {len(train_examples)} train (of {len(utts)}), {len(dev_examples)} dev")
    else:
        calib_utts = None
    dev_examples = list(dev_examples or [])[:tc.n_dev_eval]

    # --- models ----------------------------------------------------------------------------
    student, has_ctc = load_float_model(cfg["init"])
    ctc_weight = tc.ctc_weight if has_ctc else 0.0
    if not has_ctc and tc.ctc_weight:
        log("init is an .npz export without the CTC head: ctc_weight set to 0")
    model = distill.widen_to_bidirectional(student) if cc.method == "teacher" else student
    teacher = distill.load_teacher(_resolve(cc.teacher)) if cc.method == "distill" else None
    net = model
    if cc.method == "qat":
        if cc.act_quant:
            if calib_utts is not None:
                from asr.quant.ptq import calibration_set
                crng = np.random.default_rng(0)     # PTQ's default calibration draw (seed 0)
                sel = sorted(crng.choice(len(calib_utts), size=min(cc.calib_utterances, len(calib_utts)),
                                         replace=False).tolist())
                calib = calibration_set([calib_utts[i] for i in sel])
            else:
                calib = [(e.feats.astype(np.float32), e.tokens.tolist()) for e in dev_examples[:cc.calib_utterances]]
            scales = qat.calibrate(model, calib)
        else:
            scales = None
        net = qat.QATRNNT(model, cc.weight_bits, cc.mode, scales, cc.act_quant, cc.reg_weight)
    pruner = None
    if cc.prunes:
        from asr.quant.sparsify import GradualPruner
        pruner = GradualPruner.for_rnnt(model, cc.sparsity, begin_step=cc.prune_begin_step,
                                        end_step=cc.prune_end_step, frequency=cc.prune_frequency,
                                        pattern=cc.pattern)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=0.0)
    summary = {"name": name, "method": cc.method, "compress": asdict(cc), "train": asdict(tc),
               "init": str(cfg["init"]), "params": student.n_params()}
    if tc.eval_at_start and dev_examples:
        r = evaluate(net, dev_examples)
        summary["dev_wer_start"], summary["dev_cer_start"] = r["wer"], r["cer"]
        log(f"start: dev[{r['n']}] WER {100 * r['wer']:.2f}% CER {100 * r['cer']:.2f}%"
            + (f" (fake-quantized, {cc.weight_bits}-bit {cc.mode})" if cc.method == "qat" else ""))
    if isinstance(net, qat.QATRNNT):
        summary["grid_distance_start"] = net.grid_distance()

    # --- batches: labelled pool, and the pool whose labels only the teacher sees -------------
    n_unl = int(round(cc.unlabelled_fraction * len(train_examples)))
    labelled, unlabelled = train_examples[:len(train_examples) - n_unl], train_examples[len(train_examples) - n_unl:]
    bcfg = TrainConfig(batch_size=tc.batch_size)
    pools = []
    for pool in (labelled, unlabelled):
        lens = np.array([len(e.feats) for e in pool])
        pools.append({"ex": pool, "lens": lens, "epoch": 0, "pos": 0,
                      "batches": make_batches(lens, bcfg, np.random.default_rng([tc.seed, 0])) if len(pool) else []})

    def next_batch(p):
        if p["pos"] >= len(p["batches"]):
            p["epoch"] += 1
            p["pos"] = 0
            p["batches"] = make_batches(p["lens"], bcfg, np.random.default_rng([tc.seed, p["epoch"]]))
        idx = p["batches"][p["pos"]]
        p["pos"] += 1
        return collate(p["ex"], idx)

    budget_s = 60.0 * tc.max_minutes
    t_train = time.monotonic()
    step = 0
    acc = {"loss": 0.0, "rnnt": 0.0, "ctc": 0.0, "kd": 0.0, "reg": 0.0, "n": 0}
    net.train()
    while step < tc.max_steps and time.monotonic() - t_train < budget_s:
        frac = max(step / tc.max_steps, (time.monotonic() - t_train) / budget_s)
        lr = _lr(tc, step, frac)
        for g in opt.param_groups:
            g["lr"] = lr
        use_unl = bool(len(unlabelled)) and (not len(labelled) or rng.random() < cc.unlabelled_fraction)
        x, x_lens, y, y_lens = next_batch(pools[1] if use_unl else pools[0])
        if use_unl:
            y, y_lens = distill.pseudo_labels(teacher, x, x_lens)
        logits, ctc_logits = net(x, x_lens, y)
        l_rnnt = rnnt_loss(logits, y, x_lens, y_lens, blank=model.cfg.blank).mean()
        loss = l_rnnt
        l_ctc = l_kd = l_reg = torch.zeros(())
        if ctc_weight > 0 and int(y_lens.min()) > 0:
            lp = torch.log_softmax(ctc_logits, -1).transpose(0, 1)
            l_ctc = torch.nn.functional.ctc_loss(lp, y, x_lens, y_lens, blank=model.cfg.blank,
                                                 reduction="sum", zero_infinity=True) / len(y)
            loss = loss + ctc_weight * l_ctc
        if teacher is not None and cc.kd_weight > 0:
            with torch.no_grad():
                t_logits, _ = teacher(x, x_lens, y)
            l_kd = distill.lattice_kd(logits, t_logits, x_lens, y_lens, cc.kd_temperature)
            loss = loss + cc.kd_weight * l_kd
        if isinstance(net, qat.QATRNNT) and cc.mode == "reg":
            if step == 0 and cc.reg_balance > 0:
                net.reg_weight = cc.reg_balance * _grad_ratio(net, loss)
                summary["reg_weight"] = net.reg_weight
                log(f"reg_balance {cc.reg_balance}: lambda = {net.reg_weight:.4g} "
                    "(|grad task| / |grad R| on the first batch, times reg_balance)")
            ramp = min(1.0, (step + 1) / cc.reg_ramp_steps) if cc.reg_ramp_steps else min(1.0, frac)
            l_reg = ramp * net.penalty()
            loss = loss + l_reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        step += 1
        if pruner is not None:
            # Wall-clock budgets on a shared CPU give unpredictable step counts: a time-based
            # schedule still ends pruning at the same fraction of the run.
            pruner.step(int(1000 * min(1.0, max(step / tc.max_steps, (time.monotonic() - t_train) / budget_s)))
                        if cc.prune_by_time else step)
        for k, v in (("loss", loss), ("rnnt", l_rnnt), ("ctc", l_ctc), ("kd", l_kd), ("reg", l_reg)):
            acc[k] += float(v.detach())
        acc["n"] += 1
        if step % tc.log_every == 0:
            n = acc.pop("n")
            extra = f" sparsity {pruner.current:.3f}" if pruner is not None else ""
            if isinstance(net, qat.QATRNNT):
                extra += f" grid_dist {net.grid_distance():.4f}"
            log(f"step {step} min {(time.monotonic() - t_train) / 60:.2f} lr {lr:.2e} "
                + " ".join(f"{k} {v / n:.4f}" for k, v in acc.items()) + extra)
            acc = {k: 0.0 for k in acc}
            acc["n"] = 0
    train_s = time.monotonic() - t_train
    if pruner is not None:
        # A run stopped by its time budget before prune_end_step still leaves with the target.
        if pruner.current < pruner.final:
            log(f"time budget ended at step {step} before prune_end_step {cc.prune_end_step}: "
                f"pruning the rest of the way ({pruner.current:.3f} -> {pruner.final:.3f}) at once")
        pruner.step(max(1000 if cc.prune_by_time else step, cc.prune_end_step))
        summary["sparsity_per_tensor"] = pruner.sparsity()
    summary.update({"steps": step, "train_minutes": train_s / 60})
    if isinstance(net, qat.QATRNNT):
        summary["grid_distance_end"] = net.grid_distance()
    if dev_examples:
        r = evaluate(net, dev_examples)
        summary["dev_wer_end"], summary["dev_cer_end"] = r["wer"], r["cer"]
        log(f"end: {step} steps in {train_s / 60:.2f} min; dev[{r['n']}] WER {100 * r['wer']:.2f}% "
            f"CER {100 * r['cer']:.2f}%")

    # --- outputs ---------------------------------------------------------------------------
    out_dir.mkdir(parents=True, exist_ok=True)
    if cc.method == "teacher":
        path = distill.save_teacher(model, run_dir / "teacher.pt", summary)
        summary["teacher"] = str(path)
    else:
        final = net.export_model() if isinstance(net, qat.QATRNNT) else model
        path = export_npz(final, out_dir / "model.npz")
        summary["model"] = str(path)
        if base_cfg_path.is_file():     # `azsim score --model` finds the corpus through it
            (out_dir / "config.toml").write_text(base_cfg_path.read_text())
    (out_dir / "compress.toml").write_text(Path(cfg["source"]).read_text())
    summary["wall_minutes"] = (time.monotonic() - t_start) / 60
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    log(f"wrote {path} ({summary['wall_minutes']:.2f} min wall)")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asr.train.compress_train",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="+", help="configs/compress/*.toml, run one after another")
    ap.add_argument("--corpus", default=None, help="a built corpus directory (default: base_config's)")
    args = ap.parse_args(argv)
    try:
        for c in args.config:
            run(c, corpus_dir=args.corpus)
    except (ConfigError, ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
