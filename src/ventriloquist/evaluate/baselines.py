"""Baselines the motion model must beat, all speaking the cache's clip format.

A clip is a dict with ``shapes`` (T, 68, 2) canonical landmarks (eye centres at (±0.5, 0)),
``mel`` (T * MEL_PER_FRAME, N_MELS) log-Mel rows and ``energy`` (T,) RMS per video frame,
at ``FPS``. Every baseline returns a canonical landmark sequence (T, 68, 2) built on a
given reference face (normally the test clip's own mean face), so it is scored with
``metrics.lmd_relative`` exactly like the model:

* ``static_face``  – no motion at all (scores the magnitude of the real motion);
* ``energy_jaw``   – opens jaw and lower lip in proportion to the loudness envelope;
* ``RidgeMouth``   – linear regression from an 11-frame log-Mel window to the mouth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..config import MEL_PER_FRAME, N_LANDMARKS
from ..face import topology

# --- constants -------------------------------------------------------------------------------
ENERGY_REF_QUANTILE = 0.95        # envelope is divided by this quantile of the clip's energy ...
ENERGY_CLIP = 1.5                 # ... and clipped here, so one shout does not dominate
CONTEXT = 5                       # RidgeMouth sees video frames t-5 .. t+5 (11 frames, 440 ms)
ALPHAS = tuple(10.0 ** np.arange(-1, 5.5, 0.5))  # ridge penalties tried on the validation clips
VAL_FRACTION = 0.15               # share of training clips held out to choose alpha
# Anatomical fallback opening: lower lip and chin move down (canonical +y), in IOD per unit envelope.
_ANATOMICAL = {57: 1.0, 56: 0.9, 58: 0.9, 55: 0.5, 59: 0.5, 66: 0.9, 65: 0.7, 67: 0.7,
               8: 0.9, 7: 0.8, 9: 0.8, 6: 0.6, 10: 0.6, 5: 0.35, 11: 0.35}
ANATOMICAL_GAIN = 0.08


Clip = dict  # {"shapes": (T,68,2), "mel": (T*MEL_PER_FRAME, N_MELS), "energy": (T,)}


def _frames(clip: Clip) -> int:
    """Frames usable in a clip: shapes, energy and mel rows may disagree by a frame."""
    t = len(clip["shapes"])
    if "mel" in clip:
        t = min(t, len(clip["mel"]) // MEL_PER_FRAME)
    if "energy" in clip:
        t = min(t, len(clip["energy"]))
    return t


# --- static face -----------------------------------------------------------------------------
def static_face(mean_face: np.ndarray, T: int) -> np.ndarray:
    """The reference face repeated for T frames: the 'do nothing' baseline."""
    return np.repeat(np.asarray(mean_face, np.float64)[None], T, axis=0)


# --- energy jaw ------------------------------------------------------------------------------
def envelope(energy: np.ndarray) -> np.ndarray:
    """Loudness envelope in [0, ENERGY_CLIP]: RMS over the clip's 95th percentile, clipped.

    Per-clip normalisation makes the baseline independent of recording level.
    """
    e = np.asarray(energy, np.float64)
    ref = np.quantile(e, ENERGY_REF_QUANTILE) if len(e) else 0.0
    return np.clip(e / ref, 0.0, ENERGY_CLIP) if ref > 0 else np.zeros_like(e)


def anatomical_direction() -> np.ndarray:
    """Fixed opening deformation (68, 2): lower lip and chin straight down, IOD per unit envelope."""
    d = np.zeros((N_LANDMARKS, 2))
    for i, w in _ANATOMICAL.items():
        d[i, 1] = w * ANATOMICAL_GAIN
    return d


@dataclass
class EnergyJaw:
    """Fitted parameters of the energy-jaw baseline: an opening direction and its gain."""

    direction: np.ndarray = field(default_factory=lambda: anatomical_direction() / ANATOMICAL_GAIN)
    gain: float = ANATOMICAL_GAIN

    def predict(self, energy: np.ndarray, mean_face: np.ndarray) -> np.ndarray:
        return energy_jaw(mean_face, energy, self.gain, self.direction)


def energy_jaw(mean_face: np.ndarray, energy: np.ndarray, gain: float = ANATOMICAL_GAIN,
               direction: np.ndarray | None = None, centred: bool = True) -> np.ndarray:
    """k(t) = mean_face + gain · (u(t) − ū) · D: jaw/lower lip open with loudness.

    u = :func:`envelope` (energy), D (68, 2) a unit-norm opening direction (fixed anatomical
    one by default). ``centred`` subtracts the clip's mean envelope ū because a *mean* face
    already contains the average opening; pass ``centred=False`` with a closed rest face.
    """
    u = envelope(energy)
    if centred:
        u = u - u.mean()
    d = anatomical_direction() if direction is None else np.asarray(direction, np.float64)
    d = d / (np.linalg.norm(d) + 1e-12)
    return np.asarray(mean_face, np.float64)[None] + gain * u[:, None, None] * d[None]


def fit_energy_jaw(train_clips: Sequence[Clip], lower_face_only: bool = True) -> EnergyJaw:
    """Least-squares opening direction and gain from training clips.

    Minimises Σ_clips Σ_t ‖δk(t) − (u(t) − ū)·W‖² over W (68, 2), with δk the clip's shapes
    minus their temporal mean: W = Σ (u − ū) δk / Σ (u − ū)². Then gain = ‖W‖ and
    direction = W / ‖W‖ — the mean opening deformation per unit of loudness. Restricted to the
    jaw and mouth (``topology.LOWER_FACE``) so eye and brow noise do not leak in.
    """
    num = np.zeros((N_LANDMARKS, 2))
    den = 0.0
    for c in train_clips:
        t = _frames(c)
        s = np.asarray(c["shapes"][:t], np.float64)
        u = envelope(c["energy"][:t])
        u = u - u.mean()
        num += np.einsum("t,tij->ij", u, s - s.mean(axis=0))
        den += float(u @ u)
    w = num / max(den, 1e-12)
    if lower_face_only:
        mask = np.zeros(N_LANDMARKS, bool)
        mask[topology.LOWER_FACE] = True
        w[~mask] = 0.0
    g = float(np.linalg.norm(w))
    return EnergyJaw(direction=w / max(g, 1e-12), gain=g)


# --- ridge regression mouth ------------------------------------------------------------------
def mel_context(mel: np.ndarray, context: int = CONTEXT, T: int | None = None) -> np.ndarray:
    """Per-frame context features (T, (2·context+1)·MEL_PER_FRAME·N_MELS).

    Row t holds the mel rows of video frames t−context .. t+context; frames outside the clip
    repeat the first/last frame (GRID clips start and end in silence, so this reads as quiet).
    """
    mel = np.asarray(mel, np.float32)
    T = len(mel) // MEL_PER_FRAME if T is None else T
    per = mel[:T * MEL_PER_FRAME].reshape(T, MEL_PER_FRAME * mel.shape[1])
    idx = np.clip(np.arange(T)[:, None] + np.arange(-context, context + 1)[None], 0, T - 1)
    return per[idx].reshape(T, -1)


@dataclass
class RidgeMouth:
    """Ridge regression from standardised log-Mel context windows to mouth deformations.

    ŷ(t) = W·z(t) + b, with z the 11-frame mel window standardised per mel bin over the
    training set, y(t) = shapes[t, 48:68] − mean_t shapes[:, 48:68] (mouth motion around the
    clip's mean face, 40 numbers). ``alpha`` is chosen on held-out training clips by mean
    squared error, then the model is refitted on all training clips.
    """

    context: int = CONTEXT
    alphas: tuple = ALPHAS
    alpha: float | None = None
    mu: np.ndarray | None = None       # per mel bin
    sd: np.ndarray | None = None
    W: np.ndarray | None = None        # (features, 40)
    b: np.ndarray | None = None        # (40,)
    val_scores: dict = field(default_factory=dict)

    def _xy(self, clips: Sequence[Clip]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for c in clips:
            t = _frames(c)
            mel = (np.asarray(c["mel"][:t * MEL_PER_FRAME], np.float32) - self.mu) / self.sd
            xs.append(mel_context(mel, self.context, t))
            m = np.asarray(c["shapes"][:t], np.float64)[:, topology.MOUTH]
            ys.append((m - m.mean(axis=0)).reshape(t, -1))
        return np.concatenate(xs), np.concatenate(ys).astype(np.float32)

    @staticmethod
    def _solve(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]):
        """Ridge solutions (W, b) for each alpha: Cholesky solves for a few, one eigh of XᵀX for many."""
        import scipy.linalg
        xm, ym = x.mean(0), y.mean(0)
        xc = x - xm
        g = (xc.T @ xc).astype(np.float64)
        r = (xc.T @ (y - ym)).astype(np.float64)
        del xc
        if len(alphas) > 3:
            ev, V = np.linalg.eigh(g)
            vr = V.T @ r
            sols = ((a, V @ (vr / (ev + a)[:, None])) for a in alphas)
        else:
            eye = np.eye(len(g))
            sols = ((a, scipy.linalg.solve(g + a * eye, r, assume_a="pos")) for a in alphas)
        for a, w in sols:
            yield a, w.astype(np.float32), (ym - xm @ w).astype(np.float32)

    def fit(self, clips: Sequence[Clip], val_clips: Sequence[Clip] | None = None,
            seed: int = 0) -> "RidgeMouth":
        """Standardise, pick alpha on validation clips (a held-out share if none given), refit on all."""
        clips = list(clips)
        mel = np.concatenate([np.asarray(c["mel"], np.float64) for c in clips])
        self.mu, self.sd = mel.mean(0).astype(np.float32), (mel.std(0) + 1e-6).astype(np.float32)
        if val_clips is None:
            order = np.random.default_rng(seed).permutation(len(clips))
            n_val = int(round(VAL_FRACTION * len(clips))) if len(clips) > 2 else 0
            fit_clips, val_clips = [clips[i] for i in order[n_val:]], [clips[i] for i in order[:n_val]]
            all_clips = clips
        else:
            fit_clips, val_clips = clips, list(val_clips)
            all_clips = clips + val_clips
        if val_clips and len(self.alphas) > 1:
            x, y = self._xy(fit_clips)
            xv, yv = self._xy(val_clips)
            self.val_scores = {a: float(np.mean((xv @ w + b - yv) ** 2))
                               for a, w, b in self._solve(x, y, self.alphas)}
            self.alpha = min(self.val_scores, key=self.val_scores.get)
            del x, y, xv, yv
        elif self.alpha is None:
            self.alpha = float(self.alphas[len(self.alphas) // 2])
        x, y = self._xy(all_clips)
        _, self.W, self.b = next(self._solve(x, y, [self.alpha]))
        return self

    def predict_deformation(self, mel: np.ndarray, T: int | None = None) -> np.ndarray:
        """Mouth deformations (T, 20, 2) relative to the clip's mean face."""
        if self.W is None:
            raise RuntimeError("RidgeMouth.predict before fit")
        T = len(mel) // MEL_PER_FRAME if T is None else T
        z = (np.asarray(mel[:T * MEL_PER_FRAME], np.float32) - self.mu) / self.sd
        return (mel_context(z, self.context, T) @ self.W + self.b).reshape(T, len(topology.MOUTH), 2)

    def predict(self, mel: np.ndarray, mean_face: np.ndarray, T: int | None = None) -> np.ndarray:
        """Canonical landmarks (T, 68, 2): the mean face with the predicted mouth motion added."""
        d = self.predict_deformation(mel, T)
        out = static_face(mean_face, len(d))
        out[:, topology.MOUTH] += d
        return out


def load_clip(path: str) -> Clip:
    """A cache clip (npz with shapes, mel, energy) as a dict of arrays."""
    with np.load(path) as z:
        return {k: z[k] for k in ("shapes", "mel", "energy") if k in z}
