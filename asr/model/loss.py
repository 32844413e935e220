"""RNN-T loss: a numba alpha/beta kernel (asr.model.rnnt_lattice) wrapped in a
torch.autograd.Function.

The kernel only needs two slices of the (B, T, U+1, V) log-softmaxed joint output: the blank
log-probabilities (B, T, U+1) and the log-probabilities of the next label (B, T, U). Gathering
them in torch keeps the kernel small and lets torch's gather/log_softmax backward scatter the
gradient into the full tensor, so the Function returns gradients for just those two slices.
"""
from __future__ import annotations

import torch

# first: it pins numba's threading layer before anything parallel runs (see that module)
from asr.model.rnnt_lattice import rnnt_loss_numpy


class _RNNTLossFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, blank_lp, label_lp, t_lens, u_lens):
        losses, g_blank, g_label = rnnt_loss_numpy(
            blank_lp.detach().cpu().numpy(), label_lp.detach().cpu().numpy(),
            t_lens.cpu().numpy(), u_lens.cpu().numpy())
        ctx.save_for_backward(torch.from_numpy(g_blank).to(blank_lp.dtype),
                              torch.from_numpy(g_label).to(label_lp.dtype))
        return torch.from_numpy(losses).to(blank_lp.dtype)

    @staticmethod
    def backward(ctx, grad_losses):
        g_blank, g_label = ctx.saved_tensors
        scale = grad_losses.view(-1, 1, 1)
        return g_blank * scale, g_label * scale, None, None


def rnnt_loss(logits: torch.Tensor, targets: torch.Tensor, t_lens: torch.Tensor,
              u_lens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """Per-utterance RNN-T negative log-likelihood (B,), differentiable wrt `logits`.

    logits: (B, T, U+1, V) unnormalized joint outputs; targets: (B, U) int64 labels (padding
    anywhere past u_lens[b] is ignored); t_lens, u_lens: (B,) valid lengths.
    """
    if logits.dim() != 4 or targets.dim() != 2:
        raise ValueError(f"logits must be (B,T,U+1,V) and targets (B,U); got {tuple(logits.shape)}"
                         f" and {tuple(targets.shape)}")
    n_batch, _, max_u1, _ = logits.shape
    if targets.shape != (n_batch, max_u1 - 1):
        raise ValueError(f"targets shape {tuple(targets.shape)} must be {(n_batch, max_u1 - 1)}")
    log_probs = torch.log_softmax(logits, dim=-1)
    blank_lp = log_probs[..., blank]
    index = targets.clamp(min=0)[:, None, :, None].expand(-1, logits.shape[1], -1, 1)
    label_lp = log_probs[:, :, :-1, :].gather(3, index).squeeze(3)
    return _RNNTLossFn.apply(blank_lp, label_lp, t_lens, u_lens)
