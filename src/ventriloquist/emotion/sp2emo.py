"""Sp2Emo: emotion embedding q_emo and distribution l_emo from MFCC windows of speech.

A small 1-D CNN over one-second MFCC windows (``WINDOW_FRAMES * MEL_PER_FRAME`` rows of
``N_MFCC`` coefficients), attentive statistics pooling, then a bounded embedding ``q_emo``
(tanh, ``emb_dim`` values) and logits over the 7 emotions of :mod:`.vocabulary`. This module is
the inference side and needs no PyTorch: the features, the shipped nets on numpy
(:class:`Sp2EmoNumpy`) and :class:`EmotionRecognizer`; the torch modules that training fits are
in :mod:`.sp2emo_net`.

Features are normalised per utterance (mean over the speech rows, one scale, see :func:`normalise`):
the same function serves training and inference, so the statistics always match.
The model is applied to a window centred on each video frame; :class:`EmotionRecognizer`
does that for a whole utterance in a few batched passes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import layers
from ..audio import log_mel, mfcc
from ..config import MEL_PER_FRAME, WINDOW_FRAMES
from .vocabulary import EMOTIONS

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
    centres = np.asarray(centres, dtype=np.int64)
    if not len(centres):
        return np.zeros((0, rows, feats.shape[1]), np.float32)
    # only the rows these windows cover are padded (a batch of a long speech's windows is a small part of it)
    c0 = int(centres.min())
    lo = c0 * MEL_PER_FRAME - (frames // 2) * MEL_PER_FRAME
    hi = int(centres.max()) * MEL_PER_FRAME - (frames // 2) * MEL_PER_FRAME + rows
    part = feats[max(lo, 0):max(0, min(hi, len(feats)))]
    before = max(0, -lo)
    padded = np.concatenate([np.repeat(pad[None], before, 0), part,
                             np.repeat(pad[None], hi - lo - before - len(part), 0)])
    padded = padded.astype(np.float32, copy=False)
    view = np.lib.stride_tricks.sliding_window_view(padded, (rows, feats.shape[1]))[::MEL_PER_FRAME, 0]
    return np.ascontiguousarray(view[centres - c0])



# --- model (numpy) ------------------------------------------------------------------------------------------
# the trunk of sp2emo_net.Sp2Emo: (module index, dilation) of each conv block; None is a 2x max-pool
TRUNK = ((0, 1), (1, 1), None, (3, 1), None, (5, 2), (6, 4))
DELTA_KERNEL = np.array([-2.0, -1.0, 0.0, 1.0, 2.0], np.float32) / 10.0


def mfcc_deltas(x: np.ndarray, order: int) -> np.ndarray:
    """(B, rows, F) -> (B, rows, F * (1 + order)): x with its regression deltas (N = 2, edge rows repeated)."""
    out, cur = [x], x
    for _ in range(order):
        pad = np.concatenate([np.repeat(cur[:, :1], 2, 1), cur, np.repeat(cur[:, -1:], 2, 1)], axis=1)
        cur = sum(DELTA_KERNEL[i] * pad[:, i:i + cur.shape[1]] for i in range(5))
        out.append(cur)
    return np.concatenate(out, axis=2).astype(np.float32)


class _Net:
    """One Sp2Emo net's eval forward from its state dict."""

    def __init__(self, config: dict, state: dict[str, np.ndarray]) -> None:
        self.deltas = int(config.get("deltas", 0))
        self.emb_dim = int(config["emb_dim"])
        self.state = {k: np.asarray(v, np.float32) for k, v in state.items() if not k.endswith("num_batches_tracked")}

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        st = self.state
        if self.deltas:
            x = mfcc_deltas(x, self.deltas)
        h = np.ascontiguousarray(x.transpose(0, 2, 1))
        for block in TRUNK:
            if block is None:
                h = layers.max_pool1d(h, 2)
                continue
            i, dilation = block
            w = st[f"trunk.{i}.0.weight"]
            h = layers.conv1d(h, w, padding=dilation * (w.shape[2] // 2), dilation=dilation)
            h = layers.gelu(layers.batch_norm(h, st, f"trunk.{i}.1"))
        w = layers.softmax(layers.conv1d(h, st["attn.weight"], st["attn.bias"]), axis=2)
        mu = (h * w).sum(axis=2)
        sd = np.sqrt(np.maximum(((h - mu[..., None]) ** 2 * w).sum(axis=2), 1e-5))
        q = np.tanh(layers.linear(np.concatenate([mu, sd], axis=1), st, "emb.1"))
        return q, layers.softmax(layers.linear(q, st, "head.1"), axis=1)


class Sp2EmoNumpy:
    """The shipped Sp2Emo ensemble's forward on numpy: windows (B, rows, F) -> (q_emo (B, E), probabilities (B, 7)).

    As ``sp2emo_net.Sp2EmoEnsemble``: the members' embeddings joined, their probabilities averaged.
    """

    def __init__(self, members: list[_Net]) -> None:
        self.members = members

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "Sp2EmoNumpy":
        entries = ckpt["members"] if "members" in ckpt else [ckpt]
        return cls([_Net(e["config"], e["state_dict"]) for e in entries])

    @property
    def emb_dim(self) -> int:
        return sum(m.emb_dim for m in self.members)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        qs, probs = zip(*(m(x) for m in self.members))
        return np.concatenate(qs, axis=1), np.mean(probs, axis=0)


# --- inference -------------------------------------------------------------------------------------------------
class EmotionRecognizer:
    """Sp2Emo applied to whole utterances (samples at SAMPLE_RATE): the shipped nets on numpy, or (in
    training) a torch ``Sp2Emo`` / ``Sp2EmoEnsemble`` being fitted."""

    def __init__(self, model, stride: int = 4, batch: int = 256) -> None:
        self.model = model
        if hasattr(model, "eval"):
            model.eval()
        self.stride = max(1, int(stride))          # video frames between evaluated windows (interpolated between)
        self.batch = batch
        self.emb_dim = model.emb_dim
        self.classes = EMOTIONS

    @classmethod
    def from_weights(cls, folder: Path | None = None, **kw) -> "EmotionRecognizer":
        from ..weights import read_checkpoint
        return cls(Sp2EmoNumpy.from_checkpoint(read_checkpoint("sp2emo", folder)), **kw)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.model, Sp2EmoNumpy):
            return self.model(x)
        import torch
        with torch.inference_mode():
            q, logits = self.model(torch.from_numpy(x))
            return q.numpy(), torch.softmax(logits, dim=1).numpy()

    def _run(self, feats: np.ndarray, pad: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and probabilities of the windows centred on ``centres``, built a batch at a time
        (all windows of a 10-minute speech at once would be tens of MB)."""
        embs, probs = [], []
        for i in range(0, len(centres), self.batch):
            q, p = self._forward(windows(feats, pad, centres[i:i + self.batch]))
            embs.append(q)
            probs.append(p)
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


