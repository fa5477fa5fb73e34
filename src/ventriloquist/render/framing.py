"""Choosing the output canvas from the photo: full frame (resized) or a square crop around the face."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..config import RenderConfig
from ..errors import InputWarning

MIN_FACE_PX = 32             # a face narrower than this in a full-frame output hides its lips: say so


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


@dataclass
class Canvas:
    """The working image and the affine map from photo pixels to it."""

    image: np.ndarray          # (H, W, 3) uint8 RGB, even sizes
    photo_to_canvas: np.ndarray  # (2, 3)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def map(self, pts: np.ndarray) -> np.ndarray:
        return pts @ self.photo_to_canvas[:, :2].T + self.photo_to_canvas[:, 2]


def face_square(lo: np.ndarray, hi: np.ndarray, margin: float, w: int, h: int) -> tuple[np.ndarray, float]:
    """Centre and side of the square ``crop="face"`` cuts from a ``w`` x ``h`` photo.

    The square is the face box plus ``margin`` face sizes of context, shrunk (never below the face
    itself) and shifted so that it stays inside the photo: a head shot the face nearly fills gets less
    margin rather than invented borders.
    """
    centre = (lo + hi) / 2
    face = float(max(hi - lo))
    side = min(face * (1 + 2 * margin), max(face, float(min(w, h))))
    shifted = [float(np.clip(c, side / 2, n - side / 2)) if side <= n else n / 2 for c, n in zip(centre, (w, h))]
    return np.array(shifted), side


def fill_outside(img: np.ndarray, photo: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Canvas pixels the photo does not cover, filled with a blurred mirror of it (not smeared edges).

    ``img`` was warped from ``photo`` by ``m`` with a reflecting border; where that reflection shows,
    it is blurred so that it reads as out-of-focus background, eased in over a few pixels.
    """
    import cv2
    size = (img.shape[1], img.shape[0])
    inside = cv2.warpAffine(np.ones(photo.shape[:2], np.float32), m, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if inside.min() >= 0.999:
        return img
    sigma = max(2.0, max(size) / 40)
    blurred = cv2.GaussianBlur(img, (0, 0), sigma)
    ease = cv2.GaussianBlur(cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=2), (0, 0), 2.0)[..., None]
    return np.clip(ease * img + (1 - ease) * blurred, 0, 255).astype(np.uint8)


def make_canvas(photo: np.ndarray, landmarks: np.ndarray, cfg: RenderConfig) -> Canvas:
    """Resize (``crop="full"``) or crop around the face (``crop="face"``) to the requested size."""
    import cv2
    h, w = photo.shape[:2]
    if cfg.crop == "face":
        centre, side = face_square(landmarks.min(0), landmarks.max(0), cfg.face_margin, w, h)
        out = _even(cfg.size or min(cfg.max_side, side))
        s = out / side
        m = np.array([[s, 0, out / 2 - s * centre[0]], [0, s, out / 2 - s * centre[1]]])
        img = cv2.warpAffine(photo, m, (out, out), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
        return Canvas(fill_outside(img, photo, m), m)
    if cfg.crop != "full":
        raise ValueError(f"unknown crop mode {cfg.crop!r}; use 'full' or 'face'")
    side = cfg.size or min(cfg.max_side, max(h, w))
    s = side / max(h, w)
    ow, oh = _even(w * s), _even(h * s)
    m = np.array([[ow / w, 0, 0], [0, oh / h, 0]])
    img = cv2.resize(photo, (ow, oh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    face_px = float(np.ptp(landmarks[:, 0])) * ow / w
    if face_px < MIN_FACE_PX:
        warnings.warn(f"the face is only {face_px:.0f} px wide in the {ow}x{oh} video, too small to see the lips; "
                      "use --crop face for a close-up", InputWarning, stacklevel=2)
    return Canvas(img, m)
