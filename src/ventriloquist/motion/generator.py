"""The emotive generator G and the sequence discriminator D.

G maps per-frame Mel features and the speech emotion embedding to landmark deformations
δk(t) from a mean face k̄ (canonical space). Two branches are summed through fixed masks:
the linguistic branch drives jaw and lips, the emotion branch the rest of the face (and,
more weakly, the mouth corners). The emotion branch speaks in a small basis of real
expression deformations, so whatever it learns stays a face.

This module is inference and needs no PyTorch: G's inputs, the limits on its outputs, and the
shipped G on numpy (:class:`Generator`). The torch modules that training fits, G and the sequence
discriminator D, are in :mod:`.generator_net`.
"""
from __future__ import annotations

import numpy as np

from .. import layers
from ..config import MEL_PER_FRAME, N_MELS
from ..face.topology import LOWER_FACE

N_POINTS = 68
EMO_MOUTH_WEIGHT = 0.25      # share of the mouth the emotion branch may move (smiles, frowns)
# expression coefficients stay within ±1 std of real emotional faces: at ±2, angry voices made the
# face squint so hard that dlib no longer saw the same person (descriptor distance 0.61 vs 0.48)
EXPR_LIMIT = 1.0
DEFORM_LIMIT = 0.8           # no landmark moves further than this (inter-ocular units) from the mean face
EMO_DILATIONS = (2, 4)       # the emotion branch's temporal blocks (the linguistic branch's are configured)


def branch_masks() -> tuple[np.ndarray, np.ndarray]:
    """(linguistic, emotion) masks over the 68x2 outputs, fixed (not learned)."""
    ling = np.zeros((N_POINTS, 2), np.float32)
    ling[LOWER_FACE] = 1.0
    emo = np.ones((N_POINTS, 2), np.float32)
    emo[LOWER_FACE] = EMO_MOUTH_WEIGHT
    return ling, emo


def speech_input(mel: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """G's input rows: the per-utterance normalised log-Mel, then the rows G reads beside it if any
    (:func:`ventriloquist.motion.speech.extra_rows`: phones, then speech-encoder rows)."""
    x = normalise_mel(mel)
    if extra is None:
        return x
    n = min(len(x), len(extra))
    return np.concatenate([x[:n], np.asarray(extra[:n], np.float32)], axis=1)


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


def receptive_field(dilations: tuple[int, ...], causal: bool = False, expressive: bool = True) -> int:
    """Frames of context each side (causal: before) that influence one of G's output frames: the
    linguistic blocks (kernel 3), then the larger of its output conv (3) and, in a G that has one
    (``expressive``), the emotion branch (5, blocks, 5)."""
    reach = 2 if causal else 1                          # frames per dilation step a kernel-3 conv reaches on a side
    emo = 2 * reach + reach * sum(EMO_DILATIONS) + 2 * reach if expressive else 0
    return reach * sum(dilations) + max(reach, emo)


def _causal_pad(x: np.ndarray, frames: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (frames, 0)))


class Generator:
    """G's eval forward on numpy: ``generator_net.EmotiveGenerator`` without torch, from its state dict.

    Inputs and output as that module's, as arrays: speech rows (B, T*MEL_PER_FRAME, N_MELS + n_artic),
    q_emo (B, T, E) -> δk (B, T, 68, 2). :func:`ventriloquist.motion.speech.load_generator` adds
    what inference needs of the checkpoint (reach, range, rest, gain). ``emo_dim`` 0: a G without
    an emotion branch (lips only), which ignores ``q_emo``. A state with ``lips_basis``: the linguistic
    branch's output is coefficients of that basis of real jaw-and-lip deformations.
    """

    def __init__(self, state: dict[str, np.ndarray], emo_dim: int, dilations: tuple[int, ...],
                 n_artic: int = 0, mel_bottleneck: int = 0, causal: bool = False, lookahead: int = 0,
                 n_enc: int = 0, enc_bottleneck: int = 0) -> None:
        self.state = st = {k: np.asarray(v, np.float32) for k, v in state.items()}
        self.causal, self.lookahead = causal, int(lookahead) if causal else 0
        self.mean_face, self.expr_basis = st["mean_face"], st["expr_basis"]
        self.lips_basis = st.get("lips_basis")
        self.emo_dim, self.dilations = emo_dim, tuple(dilations)
        self.n_artic, self.mel_bottleneck = n_artic, mel_bottleneck
        self.n_enc, self.enc_bottleneck = n_enc, enc_bottleneck

    @property
    def n_extra(self) -> int:
        """Columns G reads beside each Mel row (phones, encoder rows)."""
        return self.n_artic + self.n_enc

    @property
    def receptive_field(self) -> int:
        """Frames of context each side (causal: of the past) that influence one output frame."""
        return receptive_field(self.dilations, self.causal, self.emo_dim > 0)

    def _conv(self, x: np.ndarray, name: str, dilation: int = 1) -> np.ndarray:
        """The ``name`` conv of G (zero padded, symmetric or, causal, on the past side)."""
        w, b = self.state[f"{name}.weight"], self.state[f"{name}.bias"]
        reach = dilation * (w.shape[2] - 1)
        if self.causal:
            return layers.conv1d(_causal_pad(x, reach), w, b, dilation=dilation)
        return layers.conv1d(x, w, b, padding=reach // 2, dilation=dilation)

    def _block(self, h: np.ndarray, name: str, dilation: int) -> np.ndarray:
        y = self._conv(h, f"{name}.conv", dilation)
        return h + layers.gelu(layers.layer_norm(y, self.state, f"{name}.norm", axis=1))

    def __call__(self, mel: np.ndarray, q_emo: np.ndarray | None, emotion: bool = True,
                 strength: float | np.ndarray = 1.0) -> np.ndarray:
        st = self.state
        b, rows, _ = mel.shape
        t = rows // MEL_PER_FRAME
        la = self.lookahead
        x = mel.reshape(b, t, MEL_PER_FRAME * (N_MELS + self.n_extra))
        if la:             # the last frames' future: silence in normalised units, the emotion held
            x = np.pad(x, ((0, 0), (0, la), (0, 0)))
            if q_emo is not None:
                q_emo = np.concatenate([q_emo, np.repeat(q_emo[:, -1:], la, axis=1)], axis=1)
            if np.ndim(strength):
                strength = np.concatenate([strength, np.repeat(strength[:, -1:], la, axis=1)], axis=1)
        r = x.reshape(b, t + la, MEL_PER_FRAME, N_MELS + self.n_extra)
        base = r[..., : N_MELS + self.n_artic]
        if self.mel_bottleneck:
            x = np.concatenate([layers.linear(base[..., :N_MELS].reshape(b, t + la, -1), st, "mel_in"),
                                base[..., N_MELS:].reshape(b, t + la, -1)], axis=-1)
        else:
            x = base.reshape(b, t + la, -1)
        if self.n_enc:
            enc = r[..., N_MELS + self.n_artic:].reshape(b, t + la, -1)
            x = np.concatenate([x, layers.linear(enc, st, "enc_in") if self.enc_bottleneck else enc], axis=-1)
        h = layers.linear(layers.gelu(layers.linear(x, st, "frame_in.0")), st, "frame_in.2").transpose(0, 2, 1)
        for i, d in enumerate(self.dilations):
            h = self._block(h, f"ling.{i}", d)
        out = self._conv(h, "ling_out").transpose(0, 2, 1)
        if self.lips_basis is not None:
            k = self.lips_basis.shape[0]
            out = out @ self.lips_basis.reshape(k, -1)
        out = out.reshape(b, t + la, N_POINTS, 2) * st["mask_ling"]
        if emotion and q_emo is not None and self.emo_dim:
            e = np.concatenate([q_emo[..., : self.emo_dim].transpose(0, 2, 1), h], axis=1)
            e = layers.gelu(self._conv(e, "emo_in"))
            for i, d in enumerate(EMO_DILATIONS):
                e = self._block(e, f"emo.{i}", d)
            coef = self._conv(e, "emo_out").transpose(0, 2, 1)
            gain = np.asarray(strength, np.float32)[..., None] if np.ndim(strength) else np.float32(strength)
            coef = gain * EXPR_LIMIT * np.tanh(coef / EXPR_LIMIT)
            k = self.expr_basis.shape[0]
            out = out + (coef @ self.expr_basis.reshape(k, -1)).reshape(b, t + la, N_POINTS, 2) * st["mask_emo"]
        return (DEFORM_LIMIT * np.tanh(out[:, la:] / DEFORM_LIMIT)).astype(np.float32)
