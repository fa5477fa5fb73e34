"""Sp2Emo: emotion embedding q_emo and distribution l_emo from MFCC windows of speech.

A small 1-D CNN over one-second MFCC windows (``WINDOW_FRAMES * MEL_PER_FRAME`` rows of
``N_MFCC`` coefficients), attentive statistics pooling, then a bounded embedding ``q_emo``
(tanh, ``emb_dim`` values) and logits over the 7 emotions of :mod:`.vocabulary`.

Features are normalised per utterance (mean over the speech rows, one scale, see :func:`normalise`):
the same function serves training and inference, so the statistics always match.
The model is applied to a window centred on each video frame; :class:`EmotionRecognizer`
does that for a whole utterance in a few batched passes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..audio import log_mel, mfcc
from ..config import MEL_PER_FRAME, N_MFCC, WINDOW_FRAMES
from .vocabulary import EMOTIONS, N_EMOTIONS

SPEECH_RANGE_DB = 35.0      # rows within this of the loud rows (95th percentile) count as speech
FLOOR_LOG = -9.0            # mean log-mel below this is digital silence, never speech


# --- features --------------------------------------------------------------------------------------------------
def loud_rows(mel: np.ndarray) -> np.ndarray:
    """Boolean (rows,) mask of the log-Mel rows within SPEECH_RANGE_DB of the recording's loud rows."""
    if len(mel) == 0:
        return np.zeros(0, bool)
    e = np.logaddexp.reduce(mel, axis=1)
    return e > np.quantile(e, 0.95) - SPEECH_RANGE_DB / (10 / np.log(10))


def speech_rows(mel: np.ndarray) -> np.ndarray:
    """Boolean (rows,) mask of the feature rows that carry speech, from log-Mel energy."""
    if len(mel) == 0:
        return np.zeros(0, bool)
    mask = loud_rows(mel) & (mel.mean(axis=1) > FLOOR_LOG)
    if mask.sum() < max(1, len(mel) // 10):          # (nearly) all silent or all loud: use every row
        mask = np.ones(len(mel), bool)
    return mask


def speech_frames(mask_rows: np.ndarray) -> np.ndarray:
    """Per-video-frame speech mask: a frame is speech when half its rows are."""
    n = len(mask_rows) // MEL_PER_FRAME
    return mask_rows[: n * MEL_PER_FRAME].reshape(n, MEL_PER_FRAME).mean(axis=1) >= 0.5


def normalise(coeffs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-utterance normalisation; returns (features, pad row). Training and inference both call this.

    Cepstral mean normalisation over the speech rows (removes the speaker's and the channel's
    average spectral envelope), then one scale for the whole utterance (the mean of the
    coefficients' standard deviations) - not per-coefficient variance normalisation, which
    also erases how much each coefficient moves, an emotion cue: on the validation speakers it
    lowered EmoDB UA from 0.72 to 0.65-0.68 (means over epochs).
    The pad row (the utterance's own quietest rows, normalised) fills windows that reach past
    either end, so an edge looks like this recording's silence, not like a cliff.
    """
    sel = coeffs[mask] if mask.any() else coeffs
    feats = ((coeffs - sel.mean(axis=0)) / (coeffs.std(axis=0).mean() + 1e-2)).astype(np.float32)
    quiet = np.argsort(coeffs[:, 0])[: max(1, len(coeffs) // 10)]
    return feats, feats[quiet].mean(axis=0).astype(np.float32)


def features_from_mel(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised MFCC (rows, N_MFCC), pad row (N_MFCC,), per-row speech mask) from a log-Mel."""
    mask = speech_rows(mel)
    feats, pad = normalise(mfcc(mel=mel), mask)
    return feats, pad, mask


def features(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`features_from_mel` of samples at SAMPLE_RATE."""
    return features_from_mel(log_mel(y))


def windows(feats: np.ndarray, pad: np.ndarray, centres: np.ndarray, frames: int = WINDOW_FRAMES) -> np.ndarray:
    """(len(centres), frames * MEL_PER_FRAME, F) windows centred on the given video frames (a strided view, copied).

    Same placement as :func:`ventriloquist.audio.frame_window`: window t covers rows
    ``[(t - frames // 2) * MEL_PER_FRAME, (t - frames // 2 + frames) * MEL_PER_FRAME)``.
    """
    rows = frames * MEL_PER_FRAME
    lead = (frames // 2) * MEL_PER_FRAME
    padded = np.concatenate([np.repeat(pad[None], lead, 0), feats, np.repeat(pad[None], rows, 0)]).astype(np.float32)
    view = np.lib.stride_tricks.sliding_window_view(padded, (rows, feats.shape[1]))[::MEL_PER_FRAME, 0]
    return np.ascontiguousarray(view[np.asarray(centres, dtype=np.int64)])


# --- model -----------------------------------------------------------------------------------------------------
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


# --- inference -------------------------------------------------------------------------------------------------
class EmotionRecognizer:
    """Sp2Emo (one net or an ensemble) applied to whole utterances (samples at SAMPLE_RATE)."""

    def __init__(self, model: Sp2Emo | Sp2EmoEnsemble, stride: int = 4, batch: int = 256) -> None:
        self.model = model.eval()
        self.stride = max(1, int(stride))          # video frames between evaluated windows (interpolated between)
        self.batch = batch
        self.emb_dim = model.emb_dim
        self.classes = EMOTIONS

    @classmethod
    def from_weights(cls, folder: Path | None = None, **kw) -> "EmotionRecognizer":
        from ..weights import load_checkpoint
        return cls(load_sp2emo(load_checkpoint("sp2emo", folder)), **kw)

    def _run(self, feats: np.ndarray, pad: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and probabilities of the windows centred on ``centres``, built a batch at a time
        (all windows of a 10-minute speech at once would be tens of MB)."""
        embs, probs = [], []
        with torch.inference_mode():
            for i in range(0, len(centres), self.batch):
                q, logits = self.model(torch.from_numpy(windows(feats, pad, centres[i:i + self.batch])))
                embs.append(q.numpy())
                probs.append(torch.softmax(logits, dim=1).numpy())
        return np.concatenate(embs), np.concatenate(probs)

    def per_frame_features(self, feats: np.ndarray, pad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(emb (T, D), probs (T, 7)) from normalised features, T = rows // MEL_PER_FRAME."""
        t_total = max(1, len(feats) // MEL_PER_FRAME)
        centres = np.arange(0, t_total, self.stride)
        if centres[-1] != t_total - 1:
            centres = np.append(centres, t_total - 1)
        emb, probs = self._run(feats, pad, centres)
        if len(centres) == t_total:
            return emb, probs
        t = np.arange(t_total)
        emb = np.stack([np.interp(t, centres, emb[:, j]) for j in range(emb.shape[1])], 1).astype(np.float32)
        probs = np.stack([np.interp(t, centres, probs[:, j]) for j in range(probs.shape[1])], 1)
        return emb, (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)

    def per_frame(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Emotion embedding (T, D) and distribution (T, 7) of each video frame, T = audio.num_frames(len(y))."""
        feats, pad, _ = features(y)
        return self.per_frame_features(feats, pad)

    def clip_features(self, feats: np.ndarray, pad: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Clip-level distribution (7,): mean of window probabilities over the speech frames."""
        t_total = max(1, len(feats) // MEL_PER_FRAME)
        speech = np.flatnonzero(speech_frames(mask))
        centres = speech if len(speech) else np.arange(t_total)
        centres = centres[:: self.stride] if len(centres) > self.stride else centres
        _, probs = self._run(feats, pad, centres)
        p = probs.mean(axis=0)
        return (p / p.sum()).astype(np.float32)

    def clip(self, y: np.ndarray) -> np.ndarray:
        """Distribution over the 7 emotions (sums to 1) for a whole utterance, ignoring silent frames."""
        return self.clip_features(*features(y))


def config_dict(model: Sp2Emo) -> dict:
    d = asdict(model.config)
    d["channels"] = list(d["channels"])
    return d
