"""Face detection and 68-point landmarks with dlib (HOG detector + the iBUG-68 shape predictor).

The predictor file ships with the ``face-recognition-models`` package; we locate it without
importing that package, whose ``__init__`` needs the absent ``pkg_resources``.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import FaceNotFoundError, InputError, MissingWeightsError

DETECT_MAX_SIDE = 640     # detection runs on a copy no larger than this (HOG cost grows with area) ...
DETECT_RETRY_SIDE = 4096  # ... and, only when that finds no face, on one this large (a small face in a big photo: ~0.6 s)
FACE_SCORE = 0.5          # HOG detector score above which a box is taken for a real face (a face-like badge: 0.0)
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SUBPIXEL = 4              # landmarks are predicted on a crop enlarged this much (dlib answers in whole pixels) ...
MAX_CROP = 2048           # ... less where the crop would pass this many pixels a side (a big face needs no help) ...
BOX_SHIFTS = ((0.0, 0.0), (0.03, 0.0), (-0.03, 0.0), (0.0, 0.03), (0.0, -0.03))   # ... from these box shifts
                          # (fractions of the box width), averaged: a still face's jitter 0.0105 -> 0.005 IOD


def model_file(name: str) -> str:
    """Path of a model file shipped by ``face-recognition-models``."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            f"the dlib model {name} is missing; install it with `pip install face-recognition-models`")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
    if not os.path.exists(path):
        raise MissingWeightsError(f"{path} is missing; reinstall with `pip install --force-reinstall face-recognition-models`")
    return path


@lru_cache(maxsize=1)
def _models():
    import dlib
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(model_file(PREDICTOR_FILE))


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    return np.ascontiguousarray(image[..., :3].mean(axis=2).astype(np.uint8))


def detect_box(image: np.ndarray, thorough: bool = True) -> tuple[int, int, int, int] | None:
    """The main face box ``(left, top, right, bottom)`` in an RGB or gray image, or None.

    ``thorough`` adds a last pass at up to DETECT_RETRY_SIDE pixels when the quick passes find
    nothing: worth it once for a photo, too slow to repeat on every faceless video frame.

    The largest of the boxes that are clearly faces (score >= FACE_SCORE), so in a photo of
    several people the most prominent one talks; size alone is not enough, as on a photo with a
    face-like badge or print the biggest box can be the badge. With no clear face, the most
    confident box.
    """
    import cv2
    detector, _ = _models()
    gray = _gray(image)
    passes = [(DETECT_MAX_SIDE, 0), (DETECT_MAX_SIDE, 1)]     # upsampling finds smaller faces, at 4x the cost
    if thorough and max(gray.shape) > 2 * DETECT_MAX_SIDE:    # (the upsampled pass saw smaller images in full)
        passes.append((DETECT_RETRY_SIDE, 0))
    dets, scale = [], 1.0
    for max_side, upsample in passes:
        scale = min(1.0, max_side / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        dets, scores, _ = detector.run(small, upsample, 0.0)
        if len(dets):
            break
    if len(dets) == 0:
        return None
    clear = [i for i, sc in enumerate(scores) if sc >= FACE_SCORE]
    d = dets[max(clear, key=lambda i: dets[i].area())] if clear else dets[int(np.argmax(scores))]
    return (int(d.left() / scale), int(d.top() / scale), int(d.right() / scale), int(d.bottom() / scale))


def landmarks_in_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """68x2 float landmarks (x, y in pixels, sub-pixel) inside a given face box.

    dlib returns whole pixels and its answer shifts with the box, so a still face jitters by
    about a pixel from frame to frame (on a 100-px face, a fifth of a lip's movement). The
    predictor therefore runs on a crop enlarged up to SUBPIXEL times, from the box and a few
    slightly shifted copies of it (BOX_SHIFTS), and the answers are averaged: per frame, so real
    motion is kept while the detector's noise roughly halves.
    """
    import cv2
    import dlib
    _, predictor = _models()
    gray = _gray(image)
    l, t, r, b = (float(v) for v in box)
    pad = 0.25 * max(r - l, b - t, 1.0)
    x0, y0 = max(0, int(l - pad)), max(0, int(t - pad))
    x1, y1 = min(gray.shape[1], int(np.ceil(r + pad))), min(gray.shape[0], int(np.ceil(b + pad)))
    if x1 - x0 < 2 or y1 - y0 < 2:            # a box off the image: the predictor extrapolates from the frame
        x0, y0, x1, y1 = 0, 0, gray.shape[1], gray.shape[0]
    s = max(1.0, min(SUBPIXEL, MAX_CROP / max(x1 - x0, y1 - y0)))
    crop = gray[y0:y1, x0:x1]
    if s > 1:
        crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
    crop = np.ascontiguousarray(crop)          # dlib reads contiguous rows: copied once, not per box shift
    # resize maps pixel centres: image point v lands on crop point (v - origin + 0.5) * s - 0.5
    origin = np.array([x0, y0, x0, y0], np.float64)
    w = r - l
    out = np.zeros((68, 2), np.float64)
    for dx, dy in BOX_SHIFTS:
        shifted = np.array([l, t, r, b]) + w * np.array([dx, dy, dx, dy])
        rect = dlib.rectangle(*[int(round(v)) for v in (shifted - origin + 0.5) * s - 0.5])
        out += [(p.x, p.y) for p in predictor(crop, rect).parts()]
    return ((out / len(BOX_SHIFTS) + 0.5) / s - 0.5 + (x0, y0)).astype(np.float32)


def detect_landmarks(image: np.ndarray) -> np.ndarray | None:
    """68x2 landmarks of the main face (see ``detect_box``), or None when there is no face."""
    box = detect_box(image)
    return None if box is None else landmarks_in_box(image, box)


def box_from_landmarks(k: np.ndarray) -> tuple[int, int, int, int]:
    """A detector-like box around landmarks, used to track a face from frame to frame."""
    x0, y0 = k.min(0)
    x1, y1 = k.max(0)
    w, h = x1 - x0, y1 - y0
    # dlib boxes sit a little above the brows and tight on the jaw
    return (int(x0 - 0.05 * w), int(y0 - 0.12 * h), int(x1 + 0.05 * w), int(y1 + 0.02 * h))


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as RGB uint8, with a clear error when it is missing or not an image."""
    import cv2
    path = Path(path)
    if not path.is_file():
        raise InputError(f"face image {path} does not exist; pass an existing photo with --face")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(f"{path} is not a readable image; use a JPEG or PNG photo")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def face_landmarks(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Landmarks of the main face of a photo, or a FaceNotFoundError naming ``source``."""
    k = detect_landmarks(image)
    if k is None:
        raise FaceNotFoundError(
            f"no face found in {source}; use a photo with one clearly visible, roughly frontal face")
    return k
