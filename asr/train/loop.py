"""Training loop for the RNN-T: `python -m asr.train.loop CONFIG` or `azsim train CONFIG`.

A config TOML has a top-level `name`, and sections [data] (handed unchanged to
asr.data.corpus.build), [model] (asr.model.rnnt.ModelConfig) and [train] (TrainConfig below).
Outputs:
  runs/<name>/ckpt.pt       last checkpoint (resumed from when resume=True)
  runs/<name>/train_log.txt one line per eval: step, minutes, losses, lr, dev CER/WER
  models/<name>/model.npz   exported float32 model, plus config.toml and train_log.txt copies

Why it looks like this (FACTS.md, pilots on this 2-core CPU):
- Features are normalized inside the model with global training statistics (causal).
- An auxiliary CTC loss on the encoder (weight ~0.5) speeds up convergence.
- Batches are buckets of similar length (padding wastes joint-network compute, which
  dominates small RNN-Ts), visited in a seeded random order.
- Training is budgeted in wall-clock minutes; the cosine schedule follows the larger of the
  step fraction and the time fraction so the learning rate has decayed when time runs out.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from asr import text as asr_text
from asr.model.export import export_npz
from asr.model.loss import rnnt_loss
from asr.model.rnnt import RNNT, ModelConfig
from asr.train.feat_augment import augment_batch
from azsim.errors import ConfigError
from azsim.tomlio import read_toml

STACK = 3


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    threads: int = 2
    batch_size: int = 32
    max_frames_per_batch: int = 0      # 0: fixed batch_size; else cap B * T_max (stacked frames)
    lr: float = 2e-3
    warmup_steps: int = 300
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    ctc_weight: float = 0.5
    max_minutes: float = 27.0
    max_steps: int = 100000
    eval_every: int = 250
    checkpoint_every: int = 250
    n_dev_eval: int = 200
    spec_time_masks: int = 2
    spec_time_mask_max: int = 10
    spec_freq_masks: int = 2
    spec_freq_mask_max: int = 20
    log_every: int = 50
    sorted_first_epoch: bool = False   # SortaGrad: epoch 0 visits batches from short to long
    # feature-domain augmentation drawn anew each step (asr.train.feat_augment)
    p_gain: float = 0.0
    gain_db: tuple = (-30.0, 0.0)      # level change in dB (power scaling of the mel energies)
    p_vtlp: float = 0.0
    vtlp_alpha: tuple = (0.9, 1.1)     # frequency warp factor
    p_feat_noise: float = 0.0
    feat_snr_db: tuple = (5.0, 20.0)   # SNR of white, pink or babble noise added to the mel power
    runs_dir: str = "runs"
    models_dir: str = "models"
    cache_dir: str = ""                # "": asr.data.corpus's default ($AZSIM_CACHE or <repo>/cache)

    @classmethod
    def from_dict(cls, d: dict, source: str = "[train]") -> "TrainConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown}; allowed: {sorted(known)}")
        cfg = cls(**d)
        ranges = {"seed": (0, 2**31 - 1), "threads": (1, 64), "batch_size": (1, 4096),
                  "max_frames_per_batch": (0, 10**7), "warmup_steps": (0, 10**7),
                  "max_steps": (1, 10**9), "eval_every": (1, 10**9), "checkpoint_every": (1, 10**9),
                  "n_dev_eval": (1, 10**7), "spec_time_masks": (0, 100), "spec_time_mask_max": (0, 1000),
                  "spec_freq_masks": (0, 100), "spec_freq_mask_max": (0, 80), "log_every": (1, 10**9)}
        for name, (lo, hi) in ranges.items():
            v = getattr(cfg, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"{source}: {name} = {v!r} must be an integer in [{lo}, {hi}]")
        franges = {"lr": (1e-6, 1.0), "min_lr_ratio": (0.0, 1.0), "weight_decay": (0.0, 1.0),
                   "grad_clip": (0.0, 1e6), "ctc_weight": (0.0, 10.0), "max_minutes": (0.01, 10000.0),
                   "p_gain": (0.0, 1.0), "p_vtlp": (0.0, 1.0), "p_feat_noise": (0.0, 1.0)}
        for name, (lo, hi) in franges.items():
            v = getattr(cfg, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"{source}: {name} = {v!r} must be a number in [{lo}, {hi}]")
        pairs = {"gain_db": (-60.0, 20.0), "vtlp_alpha": (0.5, 2.0), "feat_snr_db": (-10.0, 60.0)}
        for name, (lo, hi) in pairs.items():
            v = getattr(cfg, name)
            if (not isinstance(v, (list, tuple)) or len(v) != 2
                    or not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
                    or not lo <= v[0] <= v[1] <= hi):
                raise ConfigError(f"{source}: {name} = {v!r} must be [low, high] with "
                                  f"{lo} <= low <= high <= {hi}")
            object.__setattr__(cfg, name, (float(v[0]), float(v[1])))  # frozen: normalize once
        if not isinstance(cfg.sorted_first_epoch, bool):
            raise ConfigError(f"{source}: sorted_first_epoch = {cfg.sorted_first_epoch!r} must be true or false")
        return cfg


# --- data --------------------------------------------------------------------------------

@dataclass
class Example:
    feats: np.ndarray      # (T, 240) float16 stacked log-mel (kept fp16 to halve memory)
    tokens: np.ndarray     # (U,) int64
    text: str


def to_examples(utts) -> list[Example]:
    """Utterances with (T, 80) log-mel `feats` and `text` -> stacked examples (empty ones dropped)."""
    out = []
    for u in utts:
        feats = np.asarray(u.feats)
        t = feats.shape[0] // STACK
        if t < 1:
            continue
        stacked = feats[: t * STACK].reshape(t, STACK * feats.shape[1]).astype(np.float16)
        norm = asr_text.normalize(u.text)
        out.append(Example(stacked, np.asarray(asr_text.encode(norm), np.int64), norm))
    return out


def feature_stats(examples: list[Example], max_frames: int = 400_000) -> tuple[np.ndarray, np.ndarray]:
    """Global per-dimension mean/std over (up to max_frames of) the training frames."""
    total = sum(len(e.feats) for e in examples)
    step = max(1, math.ceil(total / max_frames))
    frames = np.concatenate([e.feats[::step] for e in examples]).astype(np.float64)
    return frames.mean(0).astype(np.float32), np.maximum(frames.std(0), 1e-3).astype(np.float32)


def make_batches(lengths: np.ndarray, cfg: TrainConfig, rng: np.random.Generator,
                 shortest_first: bool = False) -> list[np.ndarray]:
    """Length-bucketed batches in random order (or from short to long with `shortest_first`).
    Lengths are jittered before sorting so buckets differ between epochs."""
    jitter = rng.uniform(0.9, 1.1, len(lengths))
    order = np.argsort(lengths * jitter, kind="stable")
    batches = []
    i = 0
    while i < len(order):
        if cfg.max_frames_per_batch > 0:
            j = i + 1
            t_max = lengths[order[i]]
            while j < len(order) and j - i < cfg.batch_size:
                t_new = max(t_max, lengths[order[j]])
                if (j - i + 1) * t_new > cfg.max_frames_per_batch:
                    break
                t_max = t_new
                j += 1
        else:
            j = min(len(order), i + cfg.batch_size)
        batches.append(order[i:j])
        i = j
    perm = rng.permutation(len(batches))
    if shortest_first:
        return batches
    return [batches[k] for k in perm]


def collate(examples: list[Example], idx) -> tuple[torch.Tensor, ...]:
    items = [examples[i] for i in idx]
    t_max = max(len(e.feats) for e in items)
    u_max = max(1, max(len(e.tokens) for e in items))
    x = np.zeros((len(items), t_max, items[0].feats.shape[1]), np.float32)
    y = np.zeros((len(items), u_max), np.int64)
    for b, e in enumerate(items):
        x[b, : len(e.feats)] = e.feats
        y[b, : len(e.tokens)] = e.tokens
    x_lens = torch.tensor([len(e.feats) for e in items], dtype=torch.long)
    y_lens = torch.tensor([len(e.tokens) for e in items], dtype=torch.long)
    return torch.from_numpy(x), x_lens, torch.from_numpy(y), y_lens


def spec_augment(x: torch.Tensor, x_lens: torch.Tensor, cfg: TrainConfig, rng: np.random.Generator,
                 mean: torch.Tensor) -> torch.Tensor:
    """Time and frequency masks, filled with the feature mean (i.e. 0 after normalization).
    Frequency masks hit the same mel bins in all 3 stacked sub-frames."""
    if cfg.spec_time_masks == 0 and cfg.spec_freq_masks == 0:
        return x
    x = x.clone()
    n_mel = x.shape[2] // STACK
    mean3 = mean.view(STACK, n_mel)
    for b in range(x.shape[0]):
        n_t = int(x_lens[b])
        for _ in range(cfg.spec_time_masks):
            w = int(rng.integers(0, cfg.spec_time_mask_max + 1))
            w = min(w, n_t // 5)
            if w > 0:
                t0 = int(rng.integers(0, n_t - w + 1))
                x[b, t0:t0 + w] = mean
        view = x[b].view(-1, STACK, n_mel)
        for _ in range(cfg.spec_freq_masks):
            w = int(rng.integers(0, cfg.spec_freq_mask_max + 1))
            if w > 0:
                f0 = int(rng.integers(0, n_mel - w + 1))
                view[:, :, f0:f0 + w] = mean3[:, f0:f0 + w]
    return x


# --- decoding and scoring ----------------------------------------------------------------

@torch.no_grad()
def greedy_batch(model: RNNT, x: torch.Tensor, x_lens: torch.Tensor, max_symbols: int = 4) -> list[list[int]]:
    """Batched greedy RNN-T decoding: at most `max_symbols` labels per encoder frame."""
    blank = model.cfg.blank
    enc, _ = model.encode(x, x_lens)
    n_b, n_t, _ = enc.shape
    tok = torch.full((n_b, 1), blank, dtype=torch.long)
    out, (h, c) = model.pred_lstm(model.embed(tok))
    pred = model.pred_proj(out[:, 0])
    hyps: list[list[int]] = [[] for _ in range(n_b)]
    for t in range(n_t):
        active = x_lens > t
        for _ in range(max_symbols):
            k = model.joint(enc[:, t], pred).argmax(-1)
            emit = active & (k != blank)
            if not bool(emit.any()):
                break
            out2, (h2, c2) = model.pred_lstm(model.embed(k[:, None]), (h, c))
            p2 = model.pred_proj(out2[:, 0])
            pred = torch.where(emit[:, None], p2, pred)
            h = torch.where(emit[None, :, None], h2, h)
            c = torch.where(emit[None, :, None], c2, c)
            for b in torch.nonzero(emit).flatten().tolist():
                hyps[b].append(int(k[b]))
            active = emit
    return hyps


def error_rates(refs: list[str], hyps: list[str]) -> tuple[float, float]:
    """(CER, WER) over a corpus: total edit distance / total reference length."""
    import jiwer
    refs_nonempty = [r if r else "<empty>" for r in refs]
    hyps_fixed = [h if h else "" for h in hyps]
    wer = jiwer.wer(refs_nonempty, hyps_fixed)
    cer = jiwer.cer(refs_nonempty, hyps_fixed)
    return float(cer), float(wer)


def evaluate(model: RNNT, examples: list[Example], batch_size: int = 64) -> dict:
    model.eval()
    order = np.argsort([len(e.feats) for e in examples], kind="stable")
    refs, hyps = [], []
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        x, x_lens, _, _ = collate(examples, idx)
        for j, ids in zip(idx, greedy_batch(model, x, x_lens)):
            refs.append(examples[j].text)
            hyps.append(asr_text.decode(ids).strip())
    model.train()
    cer, wer = error_rates(refs, hyps)
    return {"cer": cer, "wer": wer, "n": len(refs), "examples": list(zip(refs[-3:], hyps[-3:]))}


# --- training ----------------------------------------------------------------------------

def _lr_at(cfg: TrainConfig, step: int, elapsed_s: float) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    frac = min(1.0, max(step / cfg.max_steps, elapsed_s / (60.0 * cfg.max_minutes)))
    cos = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))
    return cfg.lr * warm * cos


class _Log:
    def __init__(self, path: Path | None, echo: bool = True):
        self.path = path
        self.echo = echo

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}"
        if self.echo:
            print(line, flush=True)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(line + "\n")


def train(model_cfg: ModelConfig, cfg: TrainConfig, train_examples: list[Example],
          dev_examples: list[Example], run_dir: Path, resume: bool = True,
          log: _Log | None = None, time_limit_offset_s: float = 0.0,
          stop_at_step: int | None = None) -> tuple[RNNT, dict]:
    """Train (or resume) and return the model and a summary. `time_limit_offset_s` is time
    already spent before training (loading data) that counts against max_minutes.
    `stop_at_step` interrupts the run early (checkpointed) without changing its schedule."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = log or _Log(run_dir / "train_log.txt")
    torch.set_num_threads(cfg.threads)
    try:
        import numba
        numba.set_num_threads(min(cfg.threads, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass
    torch.manual_seed(cfg.seed)
    model = RNNT(model_cfg)
    mean, std = feature_stats(train_examples)
    model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, epoch, pos, elapsed_s = 0, 0, 0, 0.0
    history: list[dict] = []
    ckpt_path = run_dir / "ckpt.pt"
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        if ck["model_cfg"] != model_cfg.to_dict():
            raise ConfigError(f"{ckpt_path}: checkpoint was trained with [model] {ck['model_cfg']}, "
                              f"config now says {model_cfg.to_dict()}; delete {run_dir} to start over")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, epoch, pos, elapsed_s = ck["step"], ck["epoch"], ck["pos"], ck["elapsed_s"]
        history = ck.get("history", [])
        log(f"resumed from {ckpt_path} at step {step} (epoch {epoch}, {elapsed_s / 60:.2f} min trained)")
    else:
        log(f"start: {len(train_examples)} train / {len(dev_examples)} dev utterances, "
            f"{model.n_params()} exported params ({model.n_params() * 4 / 1e6:.2f} MB float32), "
            f"threads={cfg.threads} seed={cfg.seed}")
    model.train()
    lengths = np.array([len(e.feats) for e in train_examples])
    dev_eval = dev_examples[: cfg.n_dev_eval]
    budget_s = 60.0 * cfg.max_minutes - time_limit_offset_s
    session_start = time.monotonic()
    session_elapsed0 = elapsed_s
    mean_t = model.feat_mean.detach().clone()

    def save():
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "epoch": epoch, "pos": pos, "elapsed_s": elapsed_s, "history": history,
                    "model_cfg": model_cfg.to_dict(), "train_cfg": asdict(cfg)}, tmp)
        tmp.replace(ckpt_path)

    run_loss = run_rnnt = run_ctc = 0.0
    run_n = 0
    t_log = time.monotonic()
    steps_at_log = step
    batches, batches_epoch = None, -1
    last_step = cfg.max_steps if stop_at_step is None else min(cfg.max_steps, stop_at_step)
    while step < last_step and elapsed_s < budget_s:
        if batches_epoch != epoch:
            batches = make_batches(lengths, cfg, np.random.default_rng([cfg.seed, epoch]),
                                   shortest_first=cfg.sorted_first_epoch and epoch == 0)
            batches_epoch = epoch
        if pos >= len(batches):
            epoch, pos = epoch + 1, 0
            continue
        idx = batches[pos]
        x, x_lens, y, y_lens = collate(train_examples, idx)
        x = augment_batch(x, x_lens, cfg, np.random.default_rng([cfg.seed, 2, step]))
        x = spec_augment(x, x_lens, cfg, np.random.default_rng([cfg.seed, 1, step]), mean_t)
        lr = _lr_at(cfg, step, elapsed_s)
        for g in opt.param_groups:
            g["lr"] = lr
        logits, ctc_logits = model(x, x_lens, y)
        l_rnnt = rnnt_loss(logits, y, x_lens, y_lens, blank=model_cfg.blank).mean()
        loss = l_rnnt
        l_ctc = torch.zeros(())
        if cfg.ctc_weight > 0:
            lp = torch.log_softmax(ctc_logits, -1).transpose(0, 1)
            l_ctc = torch.nn.functional.ctc_loss(lp, y, x_lens, y_lens, blank=model_cfg.blank,
                                                 reduction="sum", zero_infinity=True) / len(idx)
            loss = loss + cfg.ctc_weight * l_ctc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if step == 0:
            history.append({"step": 0, "first_loss": float(loss.detach())})
        step += 1
        pos += 1
        if pos >= len(batches):
            epoch, pos = epoch + 1, 0
        elapsed_s = session_elapsed0 + (time.monotonic() - session_start)
        run_loss += float(loss.detach())
        run_rnnt += float(l_rnnt.detach())
        run_ctc += float(l_ctc.detach())
        run_n += 1
        if step % cfg.log_every == 0:
            now = time.monotonic()
            log(f"step {step} ep {epoch} min {elapsed_s / 60:.2f} loss {run_loss / run_n:.3f} "
                f"rnnt {run_rnnt / run_n:.3f} ctc {run_ctc / run_n:.3f} lr {lr:.2e} "
                f"s/step {(now - t_log) / max(1, step - steps_at_log):.3f}")
            run_loss = run_rnnt = run_ctc = 0.0
            run_n = 0
            t_log, steps_at_log = now, step
        if step % cfg.eval_every == 0 and dev_eval:
            r = evaluate(model, dev_eval)
            history.append({"step": step, "minutes": elapsed_s / 60, "dev_cer": r["cer"], "dev_wer": r["wer"]})
            log(f"eval step {step} min {elapsed_s / 60:.2f} dev[{r['n']}] CER {100 * r['cer']:.2f}% "
                f"WER {100 * r['wer']:.2f}% e.g. {r['examples'][-1]}")
            elapsed_s = session_elapsed0 + (time.monotonic() - session_start)
        if step % cfg.checkpoint_every == 0:
            save()
    save()
    model.eval()
    summary = {"steps": step, "epochs_done": epoch + pos / max(1, math.ceil(len(lengths) / cfg.batch_size)),
               "train_minutes": elapsed_s / 60, "history": history}
    return model, summary


def load_config(path: str | Path) -> dict:
    path = Path(path)
    cfg = read_toml(path, "config")
    for section in ("data", "model", "train"):
        if not isinstance(cfg.get(section), dict):
            raise ConfigError(f"{path}: missing section [{section}]")
    name = cfg.get("name", path.stem)
    if not isinstance(name, str) or not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise ConfigError(f"{path}: name = {name!r} must be a non-empty string of letters, digits, '-', '_', '.'")
    cfg["name"] = name
    return cfg


def train_from_config(path: str | Path, resume: bool = True) -> Path:
    """Build/load the corpus named by [data], train per [model]/[train], export; returns the npz path."""
    t0 = time.monotonic()
    path = Path(path)
    cfg = load_config(path)
    model_cfg = ModelConfig.from_dict(cfg["model"], f"{path} [model]")
    train_cfg = TrainConfig.from_dict(cfg["train"], f"{path} [train]")
    run_dir = Path(train_cfg.runs_dir) / cfg["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        for p in ("ckpt.pt", "train_log.txt"):
            (run_dir / p).unlink(missing_ok=True)
    log = _Log(run_dir / "train_log.txt")
    log(f"config {path} (name {cfg['name']}); command: {' '.join(sys.orig_argv)}")
    torch.set_num_threads(train_cfg.threads)
    from asr.data import corpus
    corpus_dir = corpus.build(cfg["data"], Path(train_cfg.cache_dir) if train_cfg.cache_dir else None)
    train_ex = to_examples(corpus.load_subset(corpus_dir, "train"))
    dev_ex = to_examples(corpus.load_subset(corpus_dir, "dev"))
    load_s = time.monotonic() - t0
    log(f"corpus {corpus_dir}: {len(train_ex)} train, {len(dev_ex)} dev utterances loaded in {load_s:.1f} s")
    model, summary = train(model_cfg, train_cfg, train_ex, dev_ex, run_dir, resume=resume, log=log,
                           time_limit_offset_s=load_s)
    final = evaluate(model, dev_ex)
    wall_s = time.monotonic() - t0
    log(f"final: {summary['steps']} steps, {summary['train_minutes']:.2f} train minutes, "
        f"dev[{final['n']}] CER {100 * final['cer']:.2f}% WER {100 * final['wer']:.2f}%, "
        f"wall {wall_s / 60:.2f} min this session")
    out_dir = Path(train_cfg.models_dir) / cfg["name"]
    npz = export_npz(model, out_dir / "model.npz")
    shutil.copyfile(path, out_dir / "config.toml")
    shutil.copyfile(run_dir / "train_log.txt", out_dir / "train_log.txt")
    log(f"exported {npz} ({npz.stat().st_size / 1e6:.2f} MB)")
    shutil.copyfile(run_dir / "train_log.txt", out_dir / "train_log.txt")
    return npz


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asr.train.loop", description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--no-resume", action="store_true", help="start over instead of resuming")
    args = ap.parse_args(argv)
    try:
        print(train_from_config(args.config, resume=not args.no_resume))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
