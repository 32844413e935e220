"""The RNN-T recognizer in torch: causal LSTM encoder, prediction network, joint network.

Input is 3 stacked 80-dim log-mel frames (240 dims, 30 ms per frame). Feature normalization
lives inside the model as fixed buffers (global mean/std of the training features) so that the
shipped model is causal end to end and every inference path (numpy, chip) normalizes the same
way. Without normalization the pilot learned only the grammar (FACTS.md).

The blank token (0) doubles as the start-of-sequence input of the prediction network.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from asr import text as asr_text
from azsim.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    input_dim: int = 240
    encoder_layers: int = 3
    encoder_dim: int = 256
    bidirectional: bool = False
    pred_embed_dim: int = 64
    pred_dim: int = 256
    pred_layers: int = 1
    joint_dim: int = 192
    dropout: float = 0.0          # training only: between encoder layers and on its output
    vocab_size: int = asr_text.VOCAB_SIZE
    blank: int = asr_text.BLANK

    @classmethod
    def from_dict(cls, d: dict, source: str = "[model]") -> "ModelConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown}; allowed: {sorted(known)}")
        cfg = cls(**d)
        for name in ("input_dim", "encoder_layers", "encoder_dim", "pred_embed_dim", "pred_dim",
                     "pred_layers", "joint_dim", "vocab_size"):
            v = getattr(cfg, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 4096:
                raise ConfigError(f"{source}: {name} = {v!r} must be an integer in [1, 4096]")
        if isinstance(cfg.dropout, bool) or not isinstance(cfg.dropout, (int, float)) or not 0 <= cfg.dropout < 1:
            raise ConfigError(f"{source}: dropout = {cfg.dropout!r} must be a number in [0, 1)")
        if not isinstance(cfg.bidirectional, bool):
            raise ConfigError(f"{source}: bidirectional = {cfg.bidirectional!r} must be true or false")
        if not 0 <= cfg.blank < cfg.vocab_size:
            raise ConfigError(f"{source}: blank = {cfg.blank} must be in [0, vocab_size)")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


class RNNT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("feat_mean", torch.zeros(cfg.input_dim))
        self.register_buffer("feat_std", torch.ones(cfg.input_dim))
        self.encoder = nn.LSTM(cfg.input_dim, cfg.encoder_dim, num_layers=cfg.encoder_layers,
                               batch_first=True, bidirectional=cfg.bidirectional,
                               dropout=cfg.dropout if cfg.encoder_layers > 1 else 0.0)
        self.enc_dropout = nn.Dropout(cfg.dropout)
        enc_out = cfg.encoder_dim * (2 if cfg.bidirectional else 1)
        self.enc_proj = nn.Linear(enc_out, cfg.joint_dim)
        # Auxiliary CTC head: training only (sped up convergence in the pilot); not exported.
        self.ctc_head = nn.Linear(enc_out, cfg.vocab_size)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.pred_embed_dim)
        self.pred_lstm = nn.LSTM(cfg.pred_embed_dim, cfg.pred_dim, num_layers=cfg.pred_layers,
                                 batch_first=True)
        self.pred_proj = nn.Linear(cfg.pred_dim, cfg.joint_dim)
        self.joint_out = nn.Linear(cfg.joint_dim, cfg.vocab_size)
        # Forget-gate bias 1 (b_ih + b_hh): LSTMs start by remembering, which speeds up training.
        for lstm in (self.encoder, self.pred_lstm):
            for name, p in lstm.named_parameters():
                if name.startswith("bias_"):
                    with torch.no_grad():
                        p[p.shape[0] // 4: p.shape[0] // 2].fill_(0.5)

    # --- normalization -------------------------------------------------------------------
    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feat_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feat_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-3))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.feat_mean) / self.feat_std

    # --- parts ---------------------------------------------------------------------------
    def encoder_hidden(self, x: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, input_dim) raw stacked features -> (B, T, enc_out) LSTM outputs."""
        h = self.normalize(x)
        if lens is not None and self.cfg.bidirectional:
            packed = nn.utils.rnn.pack_padded_sequence(h, lens.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            out, _ = self.encoder(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                      total_length=x.shape[1])
            return out
        # Causal encoder: padding at the end cannot influence earlier frames, no packing needed.
        out, _ = self.encoder(h)
        return out

    def encode(self, x: torch.Tensor, lens: torch.Tensor | None = None):
        """(enc projected to joint dim (B,T,J), CTC logits (B,T,V))."""
        h = self.enc_dropout(self.encoder_hidden(x, lens))
        return self.enc_proj(h), self.ctc_head(h)

    def predict(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, U) labels -> (B, U+1, J): prediction outputs after SOS(blank), y1, ..., yU."""
        sos = torch.full((tokens.shape[0], 1), self.cfg.blank, dtype=torch.long, device=tokens.device)
        emb = self.embed(torch.cat([sos, tokens.clamp(min=0)], dim=1))
        out, _ = self.pred_lstm(emb)
        return self.pred_proj(out)

    def joint(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Broadcasting joint: enc (..., J) + pred (..., J) -> logits (..., V)."""
        return self.joint_out(torch.tanh(enc + pred))

    def forward(self, x, x_lens, tokens):
        """Full-lattice logits (B, T, U+1, V) and CTC logits (B, T, V)."""
        enc, ctc_logits = self.encode(x, x_lens)
        pred = self.predict(tokens)
        logits = self.joint(enc[:, :, None, :], pred[:, None, :, :])
        return logits, ctc_logits

    def n_params(self, exported_only: bool = True) -> int:
        return sum(p.numel() for n, p in self.named_parameters()
                   if not (exported_only and n.startswith("ctc_head")))
