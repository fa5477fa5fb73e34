"""The emotive generator G and the sequence discriminator D.

G maps per-frame Mel features and the speech emotion embedding to landmark deformations
δk(t) from a mean face k̄ (canonical space). Two branches are summed through fixed masks:
the linguistic branch drives jaw and lips, the emotion branch the rest of the face (and,
more weakly, the mouth corners). The emotion branch speaks in a small basis of real
expression deformations, so whatever it learns stays a face.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import MEL_PER_FRAME, N_MELS
from ..face.topology import LOWER_FACE

N_POINTS = 68
EMO_MOUTH_WEIGHT = 0.25      # share of the mouth the emotion branch may move (smiles, frowns)
# expression coefficients stay within ±1 std of real emotional faces: at ±2, angry voices made the
# face squint so hard that dlib no longer saw the same person (descriptor distance 0.61 vs 0.48)
EXPR_LIMIT = 1.0
DEFORM_LIMIT = 0.8           # no landmark moves further than this (inter-ocular units) from the mean face


def branch_masks() -> tuple[torch.Tensor, torch.Tensor]:
    """(linguistic, emotion) masks over the 68x2 outputs, fixed (not learned)."""
    ling = torch.zeros(N_POINTS, 2)
    ling[LOWER_FACE] = 1.0
    emo = torch.ones(N_POINTS, 2)
    emo[LOWER_FACE] = EMO_MOUTH_WEIGHT
    return ling, emo


def speech_input(mel: np.ndarray, artic: np.ndarray | None = None) -> np.ndarray:
    """G's input rows: the per-utterance normalised log-Mel, then the phonetic rows (``phonetics``) if any."""
    x = normalise_mel(mel)
    if artic is None:
        return x
    n = min(len(x), len(artic))
    return np.concatenate([x[:n], np.asarray(artic[:n], np.float32)], axis=1)


def normalise_mel(mel: np.ndarray) -> np.ndarray:
    """Per-utterance mean/variance normalisation of log-Mel rows.

    Removes the microphone's and the voice's fixed colouring, so G sees articulation, not
    the recording; computed once per utterance so every window sees the same statistics.
    """
    mu = mel.mean(axis=0, keepdims=True)
    x = mel - mu
    # np.std's own steps on the centred rows (the same numbers), without its extra copies of them
    sd = np.sqrt(np.add.reduce(x * x, axis=0, keepdims=True) / len(mel)) + 0.1
    x /= sd
    return x.astype(np.float32, copy=False)


LIMIT_FACTOR = 2.0           # inference: a landmark may move twice as far as real talking faces do (99.5th pct.)
RANGE_PERCENTILE = 0.5       # a jaw or lip coordinate's real range: its 0.5th to 99.5th percentile in talking faces
RANGE_MARGIN = 0.1           # ... which G may overshoot by at most this share of the range


def motion_limits(deformations: list[np.ndarray]) -> np.ndarray:
    """Per-landmark reach (68,) from real motion: LIMIT_FACTOR x the 99.5th percentile of |δk|."""
    d = np.concatenate([np.linalg.norm(x, axis=-1) for x in deformations])
    return (LIMIT_FACTOR * np.percentile(d, 99.5, axis=0)).astype(np.float32)


def soft_limit(dk: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Shrink each landmark's displacement smoothly towards its reach: unseen voices (shouts,
    screams, other languages) may push G outside what faces do; this keeps the face a face."""
    mag = np.linalg.norm(dk, axis=-1, keepdims=True)
    lim = limits[:, None]
    return dk * (lim * np.tanh(mag / lim) / np.maximum(mag, 1e-9))


def motion_range(deformations: list[np.ndarray]) -> np.ndarray:
    """Per-coordinate (lo, hi) of real motion, (2, 68, 2): the RANGE_PERCENTILE tails of δk."""
    d = np.concatenate(deformations)
    return np.stack([np.percentile(d, RANGE_PERCENTILE, axis=0),
                     np.percentile(d, 100 - RANGE_PERCENTILE, axis=0)]).astype(np.float32)


def soft_range(dk: np.ndarray, span: np.ndarray, points: np.ndarray | list[int]) -> np.ndarray:
    """Keep the ``points``' coordinates inside their real range: unchanged within it, eased beyond
    it to at most RANGE_MARGIN of the range further.

    The magnitude limit alone let the chin rise far above its closed rest while the jaw
    narrowed (on a noisy pause before speech), a shape no face makes, in which dlib no longer
    found a face; each coordinate on its own stays where real jaws and lips go.
    """
    out = dk.copy()
    x = dk[:, points]
    lo, hi = span[0][points], span[1][points]
    m = np.maximum(RANGE_MARGIN * (hi - lo), 1e-4)
    y = np.where(x > hi, hi + m * np.tanh((x - hi) / m), x)
    out[:, points] = np.where(x < lo, lo - m * np.tanh((lo - x) / m), y)
    return out


class TemporalBlock(nn.Module):
    """Residual dilated 1-D convolution over frames.

    Normalised per frame (LayerNorm over channels), never over time, so an output frame
    depends only on its receptive field: a window with enough context gives exactly what
    the whole utterance would.
    """

    def __init__(self, ch: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(ch, ch, 3, padding=dilation, dilation=dilation)
        self.norm = nn.LayerNorm(ch)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(torch.nn.functional.gelu(y))


class EmotiveGenerator(nn.Module):
    """G(s(t), q_emo(t)) -> δk(t). Inputs: speech rows (B, T*MEL_PER_FRAME, N_MELS + n_artic) from
    :func:`speech_input` (normalised log-Mel, then ``n_artic`` phonetic values), q_emo (B, T, E)."""

    def __init__(self, mean_face: np.ndarray, expr_basis: np.ndarray, emo_dim: int,
                 hidden: int = 128, dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2), dropout: float = 0.1,
                 n_artic: int = 0, mel_bottleneck: int = 0) -> None:
        super().__init__()
        self.emo_dim = emo_dim
        self.n_artic = n_artic
        self.mel_bottleneck = mel_bottleneck
        self.register_buffer("mean_face", torch.as_tensor(mean_face, dtype=torch.float32))
        self.register_buffer("expr_basis", torch.as_tensor(expr_basis, dtype=torch.float32))  # (K, 68, 2)
        ling, emo = branch_masks()
        self.register_buffer("mask_ling", ling)
        self.register_buffer("mask_emo", emo)
        # with a bottleneck, a frame's Mel rows reach G only through this many values (the phonetic rows in
        # full): room for loudness and the spectrum's broad shape, not for one voice's fine detail
        self.mel_in = nn.Linear(MEL_PER_FRAME * N_MELS, mel_bottleneck) if mel_bottleneck else None
        width = mel_bottleneck + MEL_PER_FRAME * n_artic if mel_bottleneck else MEL_PER_FRAME * (N_MELS + n_artic)
        self.frame_in = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.ling = nn.Sequential(*[TemporalBlock(hidden, d, dropout) for d in dilations])
        self.ling_out = nn.Conv1d(hidden, N_POINTS * 2, 3, padding=1)
        k = self.expr_basis.shape[0]
        self.emo_in = nn.Conv1d(emo_dim + hidden, hidden // 2, 5, padding=2)
        self.emo = nn.Sequential(TemporalBlock(hidden // 2, 2, dropout), TemporalBlock(hidden // 2, 4, dropout))
        self.emo_out = nn.Conv1d(hidden // 2, k, 5, padding=2)
        for out in (self.ling_out, self.emo_out):      # start from the mean face, not from noise
            nn.init.normal_(out.weight, std=1e-3)
            nn.init.zeros_(out.bias)

    @property
    def receptive_field(self) -> int:
        """Frames of context each side that influence one output frame."""
        ling = sum(b.conv.dilation[0] for b in self.ling)
        emo = self.emo_in.padding[0] + sum(b.conv.dilation[0] for b in self.emo) + self.emo_out.padding[0]
        return ling + max(self.ling_out.padding[0], emo)

    def forward(self, mel: torch.Tensor, q_emo: torch.Tensor | None, emotion: bool = True,
                strength: float | torch.Tensor = 1.0, return_coef: bool = False):
        """``emotion=False`` drops the emotion branch (ablation); ``strength`` (a number, or (B, T) per
        frame) scales the expression it adds.

        With ``return_coef`` also the emotion branch's basis coefficients (B, T, K) (None without it).
        """
        b, rows, _ = mel.shape
        t = rows // MEL_PER_FRAME
        x = mel.reshape(b, t, MEL_PER_FRAME * (N_MELS + self.n_artic))
        if self.mel_in is not None:
            rows = x.reshape(b, t, MEL_PER_FRAME, N_MELS + self.n_artic)
            x = torch.cat([self.mel_in(rows[..., :N_MELS].reshape(b, t, -1)), rows[..., N_MELS:].reshape(b, t, -1)], -1)
        h = self.frame_in(x).transpose(1, 2)   # (B, H, T)
        q_ling = self.ling(h)
        out = self.ling_out(q_ling).transpose(1, 2).reshape(b, t, N_POINTS, 2) * self.mask_ling
        coef = None
        if emotion and q_emo is not None:
            q_emo = q_emo[..., : self.emo_dim]       # an ensemble's embedding: G may read only the first nets'
            e = torch.cat([q_emo.transpose(1, 2), q_ling.detach()], dim=1)
            coef = self.emo_out(self.emo(torch.nn.functional.gelu(self.emo_in(e)))).transpose(1, 2)   # (B, T, K)
            # bounded, so that pleasing the frozen emotion judge can never mean a caricature
            gain = strength[..., None] if torch.is_tensor(strength) else strength
            coef = gain * EXPR_LIMIT * torch.tanh(coef / EXPR_LIMIT)
            out = out + torch.einsum("btk,kpc->btpc", coef, self.expr_basis) * self.mask_emo
        out = DEFORM_LIMIT * torch.tanh(out / DEFORM_LIMIT)
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
