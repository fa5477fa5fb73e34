"""Sp2Emo as PyTorch modules, for training: a small 1-D CNN over one-second MFCC windows.

Attentive statistics pooling, then a bounded embedding ``q_emo`` (tanh, ``emb_dim`` values) and
logits over the 7 emotions of :mod:`.vocabulary`. Inference runs the same nets without torch
(:mod:`.sp2emo`); tests hold the two equal.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..config import N_MFCC
from .vocabulary import N_EMOTIONS


@dataclass
class Sp2EmoConfig:
    n_in: int = N_MFCC
    channels: tuple[int, int, int] = (64, 128, 128)
    emb_dim: int = 64
    dropout: float = 0.3
    deltas: int = 0          # 1: add delta-MFCC channels, 2: also delta-delta (computed inside the window)


def mfcc_deltas(x: torch.Tensor, order: int) -> torch.Tensor:
    """(B, rows, F) -> (B, rows, F * (1 + order)): x with its regression deltas (N = 2, edge rows repeated)."""
    out, cur = [x], x
    k = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=x.dtype, device=x.device) / 10.0
    for _ in range(order):
        pad = torch.cat([cur[:, :1].expand(-1, 2, -1), cur, cur[:, -1:].expand(-1, 2, -1)], dim=1)
        cur = sum(k[i] * pad[:, i:i + cur.shape[1]] for i in range(5))
        out.append(cur)
    return torch.cat(out, dim=2)


def _block(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
                         nn.BatchNorm1d(cout), nn.GELU())


class Sp2Emo(nn.Module):
    """MFCC windows (B, rows, n_in) -> (q_emo (B, emb_dim) in [-1, 1], logits (B, 7))."""

    def __init__(self, n_in: int = N_MFCC, channels: tuple[int, int, int] = (64, 128, 128), emb_dim: int = 64,
                 dropout: float = 0.3, deltas: int = 0) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.config = Sp2EmoConfig(n_in, tuple(channels), emb_dim, dropout, int(deltas))
        self.trunk = nn.Sequential(
            _block(n_in * (1 + int(deltas)), c1, 5), _block(c1, c1, 5), nn.MaxPool1d(2),        # 10 ms rows -> 20 ms
            _block(c1, c2, 5), nn.MaxPool1d(2),                             # -> 40 ms (one video frame)
            _block(c2, c3, 3, dilation=2), _block(c3, c3, 3, dilation=4))
        self.attn = nn.Conv1d(c3, 1, 1)
        self.emb = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c3, emb_dim), nn.Tanh())
        self.head = nn.Sequential(nn.Dropout(dropout / 2), nn.Linear(emb_dim, N_EMOTIONS))

    @classmethod
    def from_config(cls, cfg: dict) -> "Sp2Emo":
        return cls(**cfg)

    @property
    def emb_dim(self) -> int:
        return self.config.emb_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.deltas:
            x = mfcc_deltas(x, self.config.deltas)
        h = self.trunk(x.transpose(1, 2))                       # (B, C, T)
        w = torch.softmax(self.attn(h), dim=2)                  # attention over time
        mu = (h * w).sum(dim=2)
        sd = ((h - mu[..., None]) ** 2 * w).sum(dim=2).clamp_min(1e-5).sqrt()
        q = self.emb(torch.cat([mu, sd], dim=1))
        return q, self.head(q)


class Sp2EmoEnsemble(nn.Module):
    """Several Sp2Emo nets trained from different seeds: their probabilities are averaged, their embeddings joined.

    One net's emotion call swings by several points of UA with its seed on a few hundred
    clips; the average of three is steadier and better on the validation speakers
    (docs/MODEL_CARD.md). Each member's embedding lives in its own space, so q_emo is their
    concatenation (members x emb_dim values), never an average. The "logits" returned are the
    log of the averaged probabilities, so a softmax of them is that average.
    """

    def __init__(self, members: list[Sp2Emo]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one Sp2Emo")
        self.members = nn.ModuleList(members)

    @property
    def emb_dim(self) -> int:
        return sum(m.emb_dim for m in self.members)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qs, probs = zip(*[(q, torch.softmax(logits, dim=1)) for q, logits in (m(x) for m in self.members)])
        return torch.cat(qs, dim=1), torch.log(torch.stack(probs).mean(dim=0).clamp_min(1e-12))


def load_sp2emo(ckpt: dict) -> Sp2EmoEnsemble:
    """The model in a checkpoint dict: ``members`` (a list of {config, state_dict}) or one net's own form."""
    entries = ckpt["members"] if "members" in ckpt else [ckpt]
    nets = []
    for e in entries:
        net = Sp2Emo.from_config(e["config"])
        net.load_state_dict(e["state_dict"])
        nets.append(net)
    return Sp2EmoEnsemble(nets).eval()



def config_dict(model: Sp2Emo) -> dict:
    d = asdict(model.config)
    d["channels"] = list(d["channels"])
    return d
