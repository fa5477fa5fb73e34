"""The emotive generator G and the sequence discriminator D as PyTorch modules, for training.

G maps per-frame Mel features and the speech emotion embedding to landmark deformations
δk(t) from a mean face k̄ (canonical space); :mod:`.generator` says how, and runs the shipped G
without torch. Tests hold the two equal.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import MEL_PER_FRAME, N_MELS
from .generator import DEFORM_LIMIT, EMO_DILATIONS, EXPR_LIMIT, N_POINTS, branch_masks, receptive_field


def _conv(conv: nn.Conv1d, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """``conv`` over frames; causal: padded on the past side only (the module itself pads nothing)."""
    if causal:
        x = torch.nn.functional.pad(x, (conv.dilation[0] * (conv.kernel_size[0] - 1), 0))
    return conv(x)


class TemporalBlock(nn.Module):
    """Residual dilated 1-D convolution over frames.

    Normalised per frame (LayerNorm over channels), never over time, so an output frame
    depends only on its receptive field: a window with enough context gives exactly what
    the whole utterance would. ``causal``: a frame hears only itself and earlier frames.
    """

    def __init__(self, ch: int, dilation: int, dropout: float, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.conv = nn.Conv1d(ch, ch, 3, padding=0 if causal else dilation, dilation=dilation)
        self.norm = nn.LayerNorm(ch)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(_conv(self.conv, x, self.causal).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(torch.nn.functional.gelu(y))


class EmotiveGenerator(nn.Module):
    """G(s(t), q_emo(t)) -> δk(t). Inputs: speech rows (B, T*MEL_PER_FRAME, N_MELS + n_artic) from
    :func:`speech_input` (normalised log-Mel, then ``n_artic`` phonetic values), q_emo (B, T, E).

    ``causal`` with ``lookahead`` L: frame t hears speech up to frame t + L only (zeros past the end), so a
    live stream needs L frames of the future, not the symmetric context of the offline G.

    ``emo_dim`` 0 builds G without its emotion branch: lips only, trained as inference uses
    them, and independent of the emotion networks (expressions come from ``motion.expression``).

    ``lips_basis`` (K, 68, 2): the linguistic branch speaks in these K real jaw-and-lip deformations
    instead of moving each coordinate on its own, so whatever it says stays a real mouth's shape (a
    free G twisted its inner lips across each other on voices it never heard)."""

    def __init__(self, mean_face: np.ndarray, expr_basis: np.ndarray, emo_dim: int,
                 hidden: int = 128, dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2), dropout: float = 0.1,
                 n_artic: int = 0, mel_bottleneck: int = 0, causal: bool = False, lookahead: int = 0,
                 n_enc: int = 0, enc_bottleneck: int = 0, lips_basis: np.ndarray | None = None) -> None:
        super().__init__()
        self.causal, self.lookahead = causal, int(lookahead) if causal else 0
        self.emo_dim = emo_dim
        self.n_artic = n_artic
        self.mel_bottleneck = mel_bottleneck
        self.n_enc, self.enc_bottleneck = n_enc, enc_bottleneck
        self.register_buffer("mean_face", torch.as_tensor(mean_face, dtype=torch.float32))
        self.register_buffer("expr_basis", torch.as_tensor(expr_basis, dtype=torch.float32))  # (K, 68, 2)
        free = lips_basis is None or not len(lips_basis)        # None: not in the state dict
        self.register_buffer("lips_basis", None if free else torch.as_tensor(lips_basis, dtype=torch.float32))
        ling, emo = branch_masks()
        self.register_buffer("mask_ling", torch.from_numpy(ling))
        self.register_buffer("mask_emo", torch.from_numpy(emo))
        # with a bottleneck, a frame's Mel rows reach G only through this many values (the phonetic rows in
        # full): room for loudness and the spectrum's broad shape, not for one voice's fine detail
        self.mel_in = nn.Linear(MEL_PER_FRAME * N_MELS, mel_bottleneck) if mel_bottleneck else None
        width = mel_bottleneck + MEL_PER_FRAME * n_artic if mel_bottleneck else MEL_PER_FRAME * (N_MELS + n_artic)
        # the speech encoder's rows (384 a row) reach G through their own bottleneck
        self.enc_in = nn.Linear(MEL_PER_FRAME * n_enc, enc_bottleneck) if n_enc and enc_bottleneck else None
        width += (enc_bottleneck or MEL_PER_FRAME * n_enc) if n_enc else 0
        self.frame_in = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.ling = nn.Sequential(*[TemporalBlock(hidden, d, dropout, causal) for d in dilations])
        n_ling = N_POINTS * 2 if self.lips_basis is None else self.lips_basis.shape[0]
        self.ling_out = nn.Conv1d(hidden, n_ling, 3, padding=0 if causal else 1)
        k = self.expr_basis.shape[0]
        outs = [self.ling_out]
        if emo_dim:
            self.emo_in = nn.Conv1d(emo_dim + hidden, hidden // 2, 5, padding=0 if causal else 2)
            self.emo = nn.Sequential(*[TemporalBlock(hidden // 2, d, dropout, causal) for d in EMO_DILATIONS])
            self.emo_out = nn.Conv1d(hidden // 2, k, 5, padding=0 if causal else 2)
            outs.append(self.emo_out)
        for out in outs:                               # start from the mean face, not from noise
            nn.init.normal_(out.weight, std=1e-3)
            nn.init.zeros_(out.bias)

    @property
    def n_extra(self) -> int:
        """Columns G reads beside each Mel row (phones, encoder rows)."""
        return self.n_artic + self.n_enc

    @property
    def receptive_field(self) -> int:
        """Frames of context each side that influence one output frame (causal: of the past; the
        future it hears is ``lookahead``)."""
        return receptive_field(tuple(b.conv.dilation[0] for b in self.ling), self.causal, self.emo_dim > 0)

    def forward(self, mel: torch.Tensor, q_emo: torch.Tensor | None, emotion: bool = True,
                strength: float | torch.Tensor = 1.0, return_coef: bool = False):
        """``emotion=False`` drops the emotion branch (ablation); ``strength`` (a number, or (B, T) per
        frame) scales the expression it adds.

        With ``return_coef`` also the emotion branch's basis coefficients (B, T, K) (None without it).
        """
        b, rows, _ = mel.shape
        t = rows // MEL_PER_FRAME
        la, c = self.lookahead, self.causal
        x = mel.reshape(b, t, MEL_PER_FRAME * (N_MELS + self.n_extra))
        if la:             # the last frames' future: silence in normalised units, the emotion held
            x = torch.nn.functional.pad(x, (0, 0, 0, la))
            if q_emo is not None:
                q_emo = torch.cat([q_emo, q_emo[:, -1:].expand(-1, la, -1)], dim=1)
            if torch.is_tensor(strength):
                strength = torch.cat([strength, strength[:, -1:].expand(-1, la)], dim=1)
        r = x.reshape(b, t + la, MEL_PER_FRAME, N_MELS + self.n_extra)
        base = r[..., : N_MELS + self.n_artic]
        if self.mel_in is not None:
            x = torch.cat([self.mel_in(base[..., :N_MELS].reshape(b, t + la, -1)),
                           base[..., N_MELS:].reshape(b, t + la, -1)], -1)
        else:
            x = base.reshape(b, t + la, -1)
        if self.n_enc:
            enc = r[..., N_MELS + self.n_artic:].reshape(b, t + la, -1)
            x = torch.cat([x, self.enc_in(enc) if self.enc_in is not None else enc], -1)
        h = self.frame_in(x).transpose(1, 2)   # (B, H, T + la)
        q_ling = self.ling(h)
        out = _conv(self.ling_out, q_ling, c).transpose(1, 2)
        if self.lips_basis is None:
            out = out.reshape(b, t + la, N_POINTS, 2) * self.mask_ling
        else:
            out = torch.einsum("btk,kpc->btpc", out, self.lips_basis) * self.mask_ling
        coef = None
        if emotion and q_emo is not None and self.emo_dim:
            q_emo = q_emo[..., : self.emo_dim]       # an ensemble's embedding: G may read only the first nets'
            e = torch.cat([q_emo.transpose(1, 2), q_ling.detach()], dim=1)
            coef = _conv(self.emo_out, self.emo(torch.nn.functional.gelu(_conv(self.emo_in, e, c))), c).transpose(1, 2)
            # bounded, so that pleasing the frozen emotion judge can never mean a caricature
            gain = strength[..., None] if torch.is_tensor(strength) else strength
            coef = gain * EXPR_LIMIT * torch.tanh(coef / EXPR_LIMIT)
            out = out + torch.einsum("btk,kpc->btpc", coef, self.expr_basis) * self.mask_emo
        out = DEFORM_LIMIT * torch.tanh(out[:, la:] / DEFORM_LIMIT)
        coef = None if coef is None else coef[:, la:]          # (B, T, K)
        return (out, coef) if return_coef else out


class SequenceDiscriminator(nn.Module):
    """Bi-LSTM over a whole δk sequence: catches static faces, jitter and impossible shapes."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_POINTS * 2 * 2, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 1)

    def forward(self, dk: torch.Tensor) -> torch.Tensor:
        x = dk.flatten(2)
        vel = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)
        h, _ = self.lstm(torch.cat([x, vel * 5.0], dim=-1))
        return self.out(h).mean(dim=(1, 2))
