"""Blinks and head motion: the life a face needs that speech does not determine.

Speech fixes the mouth but not when someone blinks or how the head sways, so these are
sampled (seeded, reproducible) from simple models of human behaviour: blinks every few
seconds (about 10-20 per minute while speaking) with a fast close and slower opening,
and a slow head sway whose amplitude follows the speech energy.
"""
from __future__ import annotations

import numpy as np

from ..config import FPS
from ..face.topology import LID_PAIRS

BLINKS_PER_MIN = 14.0
BLINK_SHAPE = np.array([0.35, 0.8, 1.0, 0.85, 0.55, 0.25, 0.08])   # closure per frame at 25 fps
MIN_BLINK_GAP_S = 1.2
HEAD_ANGLE = 0.035      # radians, sway amplitude at full speech energy
HEAD_SHIFT = 0.04       # inter-ocular units
HEAD_SCALE = 0.01       # log-scale


def blink_track(n: int, rng: np.random.Generator, fps: float = FPS, rate: float = BLINKS_PER_MIN) -> np.ndarray:
    """Eye closure in [0, 1] per frame, blinks at gamma-distributed intervals."""
    closure = np.zeros(n)
    mean_gap = 60.0 / rate
    t = rng.uniform(0.3, mean_gap)
    shape = np.interp(np.arange(0, len(BLINK_SHAPE), FPS / fps), np.arange(len(BLINK_SHAPE)), BLINK_SHAPE)
    while True:
        i = int(t * fps)
        if i >= n:
            break
        m = min(len(shape), n - i)
        closure[i:i + m] = np.maximum(closure[i:i + m], shape[:m])
        t += max(MIN_BLINK_GAP_S, rng.gamma(4.0, mean_gap / 4.0))
    return closure


def apply_blinks(shapes: np.ndarray, closure: np.ndarray) -> np.ndarray:
    """Close the lids of canonical shapes (T, 68, 2) by ``closure`` (T,): both lids meet near the middle."""
    out = shapes.copy()
    c = closure[:, None]
    for up, lo in LID_PAIRS:
        mid = 0.6 * out[:, lo] + 0.4 * out[:, up]       # upper lid travels further, as in a real blink
        out[:, up] += c * (mid - out[:, up])
        out[:, lo] += c * (mid - out[:, lo])
    return out


def _smooth_noise(n: int, rng: np.random.Generator, seconds: float, fps: float) -> np.ndarray:
    """Noise of unit variance (in expectation) with a time scale of ``seconds``: filtered white noise.

    Scaled by the filter's own gain, not by the clip's spread: a short clip is a slice of the
    usual sway, where rescaling each clip to unit variance swung a 1-s clip 0.4 IOD.
    """
    from scipy.ndimage import gaussian_filter1d
    sigma = seconds * fps
    pad = int(np.ceil(4 * sigma))
    impulse = np.zeros(2 * pad + 1)
    impulse[pad] = 1.0
    gain = np.sqrt(np.sum(gaussian_filter1d(impulse, sigma=sigma, mode="constant") ** 2))
    x = gaussian_filter1d(rng.normal(size=n + 2 * pad), sigma=sigma, mode="constant")[pad:pad + n]
    return x / gain


def head_motion(energy: np.ndarray, rng: np.random.Generator, fps: float = FPS) -> np.ndarray:
    """Relative head pose (T, 4) = (angle, log-scale, dx, dy), livelier while speaking."""
    n = len(energy)
    e = energy / (np.percentile(energy, 95) + 1e-9)
    from scipy.ndimage import gaussian_filter1d
    drive = 0.35 + 0.65 * np.clip(gaussian_filter1d(e, sigma=0.5 * fps), 0, 1)
    pose = np.stack([HEAD_ANGLE * _smooth_noise(n, rng, 0.6, fps),
                     HEAD_SCALE * _smooth_noise(n, rng, 1.0, fps),
                     HEAD_SHIFT * _smooth_noise(n, rng, 0.8, fps),
                     0.6 * HEAD_SHIFT * _smooth_noise(n, rng, 0.5, fps)], axis=1)
    return pose * drive[:, None] * 0.5
