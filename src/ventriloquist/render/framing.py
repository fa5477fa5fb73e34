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


def make_canvas(photo: np.ndarray, landmarks: np.ndarray, cfg: RenderConfig) -> Canvas:
    """Resize (``crop="full"``) or crop around the face (``crop="face"``) to the requested size."""
    import cv2
    h, w = photo.shape[:2]
    if cfg.crop == "face":
        lo, hi = landmarks.min(0), landmarks.max(0)
        centre = (lo + hi) / 2
        side = float(max(hi - lo)) * (1 + 2 * cfg.face_margin)
        out = _even(cfg.size or min(cfg.max_side, side))
        s = out / side
        m = np.array([[s, 0, out / 2 - s * centre[0]], [0, s, out / 2 - s * centre[1]]])
        img = cv2.warpAffine(photo, m, (out, out), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        return Canvas(img, m)
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
