"""Blinks and head motion: the life a face needs that speech does not determine.

Speech fixes the mouth but not when someone blinks or how the head sways, so these are
sampled (seeded, reproducible) from simple models of human behaviour: blinks every few
seconds (about 10-20 per minute while speaking) with a fast close and slower opening, drawn
to the pauses where they fall near one; a slow head sway whose amplitude follows the speech
energy (calm in silence), and a small nod on each stressed syllable.
"""
from __future__ import annotations

import numpy as np

from ..config import FPS
from ..face.topology import LID_PAIRS

BLINKS_PER_MIN = 14.0
BLINK_SHAPE = np.array([0.35, 0.8, 1.0, 0.85, 0.55, 0.25, 0.08])   # closure per frame at 25 fps
MIN_BLINK_GAP_S = 1.2
HEAD_ANGLE = 0.10       # radians, sway amplitude at full speech energy (wild clips re-made: re-detected roll
                        # spread 2.4 deg, the real videos' 3.2; 0.035 gave 0.9)
HEAD_SHIFT = 0.08       # inter-ocular units (nose position spread 0.067 IOD, was 0.062; real 0.12)
HEAD_SCALE = 0.01       # log-scale
SILENT_DRIVE = 0.15     # share of the sway left in silence
HEAD_YAW = 0.12         # radians, the head's turns left and right at full speech energy
HEAD_PITCH = 0.06       # radians, its tipping up and down
TURN_S = 0.20           # time scale of the turns: quicker than the sway, as heads move with the phrasing
NOD_PITCH = 0.09        # radians the head tips down on the strongest stressed syllable (the eyes dip ~0.1 IOD)
NOD_S = 0.4             # a nod's duration
NOD_GAP_S = 0.25        # stressed syllables closer than this make one nod
BLINK_SNAP_S = 0.8      # a blink this close to a pause moves into it
LOWER_LID_RISE = 0.4    # a shut eye's lids meet this share of the way up from the lower lid (the upper lid travels
                        # the rest)


def pause_starts(voiced: np.ndarray) -> np.ndarray:
    """Frames where the voice stops (a phrase end or a pause): voiced followed by unvoiced."""
    v = np.asarray(voiced, bool)
    return np.flatnonzero(v[:-1] & ~v[1:]) + 1


def blink_track(n: int, rng: np.random.Generator, fps: float = FPS, rate: float = BLINKS_PER_MIN,
                voiced: np.ndarray | None = None) -> np.ndarray:
    """Eye closure in [0, 1] per frame, blinks at gamma-distributed intervals; with ``voiced`` (T,),
    a blink within BLINK_SNAP_S of a pause moves into it, as people blink at phrase ends."""
    closure = np.zeros(n)
    mean_gap = 60.0 / rate
    t = rng.uniform(0.3, mean_gap)
    shape = np.interp(np.arange(0, len(BLINK_SHAPE), FPS / fps), np.arange(len(BLINK_SHAPE)), BLINK_SHAPE)
    pauses = pause_starts(voiced) if voiced is not None else np.zeros(0, int)
    last = -np.inf
    while True:
        i = int(t * fps)
        if i >= n:
            break
        if len(pauses):
            near = pauses[np.argmin(np.abs(pauses - i))]
            if abs(near - i) <= BLINK_SNAP_S * fps and (near - last) >= MIN_BLINK_GAP_S * fps:
                i = int(near)
        m = min(len(shape), n - i)
        closure[i:i + m] = np.maximum(closure[i:i + m], shape[:m])
        last = i
        t = i / fps + max(MIN_BLINK_GAP_S, rng.gamma(4.0, mean_gap / 4.0))
    return closure


def apply_blinks(shapes: np.ndarray, closure: np.ndarray) -> np.ndarray:
    """Close the lids of canonical shapes (T, 68, 2) by ``closure`` (T,): the lids meet LOWER_LID_RISE of the
    way up from the lower lid."""
    out = shapes.copy()
    c = closure[:, None]
    for up, lo in LID_PAIRS:
        mid = out[:, lo] + LOWER_LID_RISE * (out[:, up] - out[:, lo])
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


def find_peaks(x: np.ndarray, height: float, distance: int) -> np.ndarray:
    """``scipy.signal.find_peaks(x, height=height, distance=distance)[0]``, whose import (scipy.signal
    pulls in scipy.stats) cost two seconds of every start: local maxima (a plateau counts once, at its
    middle), at least ``height``, then the highest first, dropping any closer than ``distance``."""
    rising = np.flatnonzero(np.diff(x) > 0) + 1                 # candidates: x[i-1] < x[i]
    peaks = []
    for i in rising:
        j = i
        while j + 1 < len(x) and x[j + 1] == x[i]:
            j += 1
        if j + 1 < len(x) and x[j + 1] < x[i]:
            peaks.append((i + j) // 2)
    peaks = np.array([p for p in peaks if x[p] >= height], np.int64)
    keep = np.ones(len(peaks), bool)
    for k in np.argsort(x[peaks])[::-1]:                         # scipy's order, equal heights included
        if keep[k]:
            lo, hi = np.searchsorted(peaks, [peaks[k] - distance + 1, peaks[k] + distance])
            keep[lo:k] = keep[k + 1:hi] = False
    return peaks[keep]


def stressed(energy: np.ndarray, fps: float = FPS) -> tuple[np.ndarray, np.ndarray]:
    """Frames where a stressed syllable starts (the loudness rises fastest) and how strong (0-1)."""
    from scipy.ndimage import gaussian_filter1d
    e = gaussian_filter1d(energy / (np.percentile(energy, 95) + 1e-9), sigma=1.0)
    rise = np.diff(e, prepend=e[:1])
    peaks = find_peaks(rise, height=0.04, distance=max(1, int(NOD_GAP_S * fps)))
    return peaks, np.clip(rise[peaks] / 0.2, 0, 1)


def head_sway(n: int, rng: np.random.Generator, fps: float = FPS) -> np.ndarray:
    """The head's sway and turns (n, 6) at full speech energy, before the voice drives them."""
    return np.stack([HEAD_ANGLE * _smooth_noise(n, rng, 0.6, fps),
                     HEAD_SCALE * _smooth_noise(n, rng, 1.0, fps),
                     HEAD_SHIFT * _smooth_noise(n, rng, 0.8, fps),
                     0.6 * HEAD_SHIFT * _smooth_noise(n, rng, 0.5, fps),
                     HEAD_YAW * _smooth_noise(n, rng, TURN_S, fps),
                     HEAD_PITCH * _smooth_noise(n, rng, TURN_S, fps)], axis=1)


def head_drive(level: np.ndarray) -> np.ndarray:
    """How much of the sway shows (T,) for a smoothed speech level relative to the loud frames (0-1+)."""
    return SILENT_DRIVE + (1 - SILENT_DRIVE) * np.clip(level, 0, 1)


def head_motion(energy: np.ndarray, rng: np.random.Generator, fps: float = FPS, scale: float = 1.0) -> np.ndarray:
    """Relative head pose (T, 6) = (angle, log-scale, dx, dy, yaw, pitch) (``align.POSE_COLUMNS``): a
    sway and small turns, livelier while speaking, calm in silence, and a nod (the head tips down and
    comes back) on each stressed syllable; ``scale`` multiplies it all (0 = a still head)."""
    n = len(energy)
    e = energy / (np.percentile(energy, 95) + 1e-9)
    from scipy.ndimage import gaussian_filter1d
    pose = head_sway(n, rng, fps) * head_drive(gaussian_filter1d(e, sigma=0.5 * fps))[:, None]
    width = max(2, int(round(NOD_S * fps)))
    bump = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(width) / width)
    nods = np.zeros(n)
    for i, strength in zip(*stressed(energy, fps)):
        m = min(width, n - i)
        nods[i:i + m] = np.maximum(nods[i:i + m], strength * bump[:m])
    pose[:, 5] += NOD_PITCH * nods
    return pose * scale
