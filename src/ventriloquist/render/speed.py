"""CPU cost of rendering, on the photo shipped with scikit-image, for the ``bench`` command."""
from __future__ import annotations

import time

import cv2
import numpy as np

from ..face.topology import INNER_LIPS, JAW, NOSE_BRIDGE, OUTER_LIPS, interocular
from . import Renderer
from .warp import LOWER_BLOCK

CROP_FACES = 2.0          # side of the square crop, in face sizes: the face fills about half of it
MOUTH_OPEN = 0.3          # peak jaw drop, in inter-ocular distances
HEAD_TURN_DEG = 4.0       # peak in-plane head rotation
MOUTH_CORNERS = np.concatenate([JAW[[4, 12]], OUTER_LIPS[[0, 6]], INNER_LIPS[[0, 4]]])
CORNER_SHARE = 0.3        # mouth corners drop this share of the jaw drop


def astronaut_face(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` x ``size`` RGB crop around the astronaut's face, and its landmarks.

    Detection runs on the upper half only: on the whole photo the detector's largest box
    is the mission patch on the suit, not the face.
    """
    from skimage.data import astronaut

    from ..face.detect import detect_landmarks

    image = astronaut()
    k = detect_landmarks(image[: image.shape[0] // 2])
    if k is None:
        raise RuntimeError("no face found on skimage's astronaut photo")
    k = k.astype(np.float64)
    centre = (k.min(0) + k.max(0)) / 2
    side = CROP_FACES * float((k.max(0) - k.min(0)).max())
    scale = size / side
    m = np.array([[scale, 0, size / 2 - scale * centre[0]], [0, scale, size / 2 - scale * centre[1]]])
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    return crop, k @ m[:, :2].T + m[:, 2]


def talking_motion(k: np.ndarray, frames: int) -> np.ndarray:
    """Landmark frames (T, 68, 2): the mouth opening and closing and a small head rotation."""
    iod = float(interocular(k))
    pivot = k[NOSE_BRIDGE].mean(0)
    out = np.repeat(k[None].astype(np.float64), frames, axis=0)
    for i in range(frames):
        drop = MOUTH_OPEN * iod * 0.5 * (1 - np.cos(2 * np.pi * i / 12.0))
        out[i, LOWER_BLOCK, 1] += drop
        out[i, MOUTH_CORNERS, 1] += CORNER_SHARE * drop
        rot = cv2.getRotationMatrix2D((float(pivot[0]), float(pivot[1])), HEAD_TURN_DEG * np.sin(2 * np.pi * i / 40.0), 1.0)
        out[i] = out[i] @ rot[:, :2].T + rot[:, 2]
    return out


def time_render(size: int, frames: int) -> dict:
    """Process-CPU seconds per rendered frame at ``size`` x ``size``, on one thread."""
    if frames < 1:
        raise ValueError("frames must be at least 1")
    image, k = astronaut_face(size)
    motion = talking_motion(k, frames)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        renderer = Renderer(image, k)
        renderer.render(motion[-1])                         # warm-up outside the timing
        start = time.process_time()
        for t in motion:
            renderer.render(t)
        cpu = (time.process_time() - start) / frames
    finally:
        cv2.setNumThreads(threads)
    return {"size": size, "frames": frames, "cpu_s_per_frame": cpu, "fps": 1.0 / cpu if cpu > 0 else float("inf")}
