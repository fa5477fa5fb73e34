"""The iBUG-68 landmark scheme: index groups, defined once for the whole package."""
from __future__ import annotations

import numpy as np

JAW = np.arange(0, 17)
RIGHT_BROW = np.arange(17, 22)     # subject's right = image left
LEFT_BROW = np.arange(22, 27)
BROWS = np.arange(17, 27)
NOSE_BRIDGE = np.arange(27, 31)
NOSE = np.arange(27, 36)
RIGHT_EYE = np.arange(36, 42)
LEFT_EYE = np.arange(42, 48)
EYES = np.arange(36, 48)
OUTER_LIPS = np.arange(48, 60)
INNER_LIPS = np.arange(60, 68)
MOUTH = np.arange(48, 68)
LOWER_FACE = np.concatenate([JAW, MOUTH])          # what speech drives (linguistic branch)
UPPER_FACE = np.concatenate([BROWS, NOSE, EYES])    # what emotion drives the most
LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))  # (upper, lower) eyelid points facing each other
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))      # (upper, lower) inner-lip points facing each other
LIDS = np.array([p for pair in LID_PAIRS for p in pair])

# Landmarks that barely move with expression: used to estimate head pose robustly.
STABLE = np.concatenate([NOSE_BRIDGE, [0, 16, 36, 39, 42, 45]])

# Mirror permutation: index i of a face maps to MIRROR[i] in its horizontally flipped copy.
MIRROR = np.array(
    list(range(16, -1, -1))                       # jaw
    + list(range(26, 16, -1))                     # brows
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]     # nose
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]     # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]                      # inner lips
)


def eye_centres(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) eye centres of landmarks ``(..., 68, 2)``."""
    return k[..., RIGHT_EYE, :].mean(-2), k[..., LEFT_EYE, :].mean(-2)


def interocular(k: np.ndarray) -> np.ndarray:
    """Distance between the eye centres: the unit of all normalised distances."""
    r, l = eye_centres(k)
    return np.linalg.norm(l - r, axis=-1)


def mouth_aperture(k: np.ndarray) -> np.ndarray:
    """Mean inner-lip opening (pairs 61-67, 62-66, 63-65) over inter-ocular distance."""
    gap = sum(np.linalg.norm(k[..., u, :] - k[..., d, :], axis=-1) for u, d in INNER_LIP_PAIRS) / 3.0
    return gap / (interocular(k) + 1e-8)


def mouth_height(k: np.ndarray) -> np.ndarray:
    """Outer-lip height (51-57) over inter-ocular distance: unlike the inner opening it still grows where
    dlib lays the inner-lip points together over parted teeth."""
    return np.linalg.norm(k[..., 51, :] - k[..., 57, :], axis=-1) / (interocular(k) + 1e-8)


def corner_lift(k: np.ndarray) -> float:
    """How far the mouth corners (48, 54) sit above the lip centre line (51, 57, 62, 66), y down, in the
    units of ``k`` (68, 2): a smile is positive. Also of a displacement: how much it lifts them."""
    return float(k[[51, 57, 62, 66], 1].mean() - k[[48, 54], 1].mean())


def mouth_width(k: np.ndarray) -> np.ndarray:
    """Outer mouth width (corners 48-54) over inter-ocular distance: spread (/i/) and rounding (/u/)."""
    return np.linalg.norm(k[..., 54, :] - k[..., 48, :], axis=-1) / (interocular(k) + 1e-8)


def eye_opening(k: np.ndarray) -> np.ndarray:
    """Mean lid opening of both eyes over inter-ocular distance (blink detector input)."""
    gap = (np.linalg.norm(k[..., 37, :] - k[..., 41, :], axis=-1)
           + np.linalg.norm(k[..., 38, :] - k[..., 40, :], axis=-1)
           + np.linalg.norm(k[..., 43, :] - k[..., 47, :], axis=-1)
           + np.linalg.norm(k[..., 44, :] - k[..., 46, :], axis=-1)) / 4.0
    return gap / (interocular(k) + 1e-8)


def lid_gap(k: np.ndarray, eye: np.ndarray) -> float:
    """One eye's opening in pixels (landmarks (68, 2), ``eye`` = RIGHT_EYE or LEFT_EYE): the mean
    distance between its facing lid points (LID_PAIRS)."""
    pairs = [(u, d) for u, d in LID_PAIRS if u in eye]
    return float(sum(np.linalg.norm(k[u] - k[d]) for u, d in pairs) / len(pairs))
