"""Teacher-student distillation for the RNN-T: a bidirectional teacher, the causal student.

Teacher. ``widen_to_bidirectional(student)`` builds a bidirectional RNNT of the same sizes
whose forward direction, prediction and joint networks are copies of the student and whose
backward direction starts with zero influence (the weights that read it are zero), so the
teacher starts exactly as good as the student and its short training (minutes on this CPU)
only has to learn what looking ahead adds. Without this warm start a teacher trained for
10 minutes here would be worse than the 27-minute student (FACTS.md: the pilots).

Loss (``lattice_kd``): the KL divergence KL(teacher || student) between the two joint-network
output distributions at every node (t, u) of the RNN-T lattice of a label sequence, averaged
over the valid nodes (t < T, u <= U), optionally at a temperature (Hinton et al.'s T² factor).
This is the full-vocabulary form of the lattice distillation of Panchapagesan et al. (2021);
the vocabulary here is ~30 symbols, so there is no need to collapse it to 3 classes.

Untranscribed audio: the teacher labels it (``pseudo_labels``: batched greedy decoding of
the teacher), and the student learns from those labels with the RNN-T loss plus the lattice
KL on the pseudo-label lattice. Both signals come from the teacher; no reference text is read.
"""
from __future__ import annotations

from dataclasses import replace

import torch


def widen_to_bidirectional(student):
    """A bidirectional teacher computing exactly what `student` (causal RNNT) computes."""
    from asr.model.rnnt import RNNT

    cfg = replace(student.cfg, bidirectional=True)
    teacher = RNNT(cfg)
    src = student.state_dict()
    H = cfg.encoder_dim
    with torch.no_grad():
        teacher.feat_mean.copy_(src["feat_mean"])
        teacher.feat_std.copy_(src["feat_std"])
        for k in range(cfg.encoder_layers):
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                t = getattr(teacher.encoder, f"{w}_l{k}")
                s = src[f"encoder.{w}_l{k}"]
                if w == "weight_ih" and k > 0:      # input = [forward h, backward h]
                    t.zero_()
                    t[:, :H].copy_(s)
                else:
                    t.copy_(s)
            # The backward direction of layer k>0 reads both directions of layer k-1 too;
            # its own weights keep their random init (it has no influence yet).
        for lin in ("enc_proj", "ctc_head"):
            t = getattr(teacher, lin)
            t.weight.zero_()
            t.weight[:, :H].copy_(src[f"{lin}.weight"])
            t.bias.copy_(src[f"{lin}.bias"])
        for name, p in teacher.named_parameters():
            if name.startswith(("embed.", "pred_lstm.", "pred_proj.", "joint_out.")):
                p.copy_(src[name])
    return teacher


def lattice_kd(student_logits, teacher_logits, x_lens, y_lens, temperature: float = 1.0):
    """Mean over valid lattice nodes of KL(teacher || student) over the vocabulary.
    Logits (B, T, U+1, V); node (b, t, u) is valid when t < x_lens[b] and u <= y_lens[b]."""
    tau = float(temperature)
    ls = torch.log_softmax(student_logits / tau, dim=-1)
    lt = torch.log_softmax(teacher_logits.detach() / tau, dim=-1)
    kl = (lt.exp() * (lt - ls)).sum(-1)                       # (B, T, U+1)
    B, T, U1 = kl.shape
    t_ok = torch.arange(T)[None, :] < x_lens[:, None]          # (B, T)
    u_ok = torch.arange(U1)[None, :] <= y_lens[:, None]        # (B, U+1)
    mask = (t_ok[:, :, None] & u_ok[:, None, :]).to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1.0) * tau * tau


@torch.no_grad()
def pseudo_labels(teacher, x, x_lens, max_symbols: int = 4):
    """Teacher greedy transcripts of a batch as (y (B, U) long, y_lens (B,) long)."""
    from asr.train.loop import greedy_batch

    teacher.eval()
    hyps = greedy_batch(teacher, x, x_lens, max_symbols=max_symbols)
    u_max = max(1, max(len(h) for h in hyps))
    y = torch.zeros((len(hyps), u_max), dtype=torch.long)
    for b, h in enumerate(hyps):
        if h:
            y[b, :len(h)] = torch.tensor(h, dtype=torch.long)
    return y, torch.tensor([len(h) for h in hyps], dtype=torch.long)


def save_teacher(model, path, info: dict | None = None):
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model_cfg": model.cfg.to_dict(), "model": model.state_dict(), "info": info or {}}, tmp)
    tmp.replace(path)
    return path


def load_teacher(path):
    from pathlib import Path

    from asr.model.rnnt import RNNT, ModelConfig
    from azsim.errors import ModelError

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: teacher checkpoint not found (train it first: "
                         "python -m asr.train.compress_train configs/compress/teacher-bi.toml)")
    try:
        ck = torch.load(path, weights_only=False)
        model = RNNT(ModelConfig.from_dict(ck["model_cfg"], f"{path} model_cfg"))
        model.load_state_dict(ck["model"])
    except (KeyError, RuntimeError, EOFError, TypeError) as err:
        raise ModelError(f"{path}: not a teacher checkpoint ({type(err).__name__}: {err})") from None
    return model.eval()
