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

from ..errors import FaceNotFoundError, InputError, MissingWeightsError, existing_file

DETECT_MAX_SIDE = 640     # detection runs on a copy no larger than this (HOG cost grows with area) ...
DETECT_RETRY_SIDE = 4096  # ... and, only when that finds no face, on one this large (a small face in a big photo: ~0.6 s)
MAX_PHOTO_SIDE = 4096    # bigger photos are downscaled on load: the output is at most 512 px, detection needs less
MAX_PHOTO_PIXELS = 150_000_000  # more than this is refused before decoding (a decompression bomb; 450 MB as RGB) ...
MAX_WHOLE_PIXELS = 40_000_000   # ... and more than this in a format decoded whole (not JPEG, which decodes scaled)
MIN_PHOTO_FACE_PX = 64    # a face narrower than this in the photo is enlarged into a soft video: say so
FACE_SCORE = 0.5          # HOG detector score above which a box is taken for a real face (a face-like badge: 0.0)
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SUBPIXEL = 4              # landmarks are predicted on a crop enlarged this much (dlib answers in whole pixels) ...
MAX_CROP = 2048           # ... less where the crop would pass this many pixels a side (a big face needs no help) ...
FAST_CROP = 640          # (a video's track, smoothed over time, needs less: one box on a crop at most this big)
BOX_SHIFTS = ((0.0, 0.0), (0.03, 0.0), (-0.03, 0.0), (0.0, 0.03), (0.0, -0.03))   # ... from these box shifts
                          # (fractions of the box width), averaged: a still face's jitter 0.0105 -> 0.005 IOD


class TooManyPixels(InputError):
    """A photo refused from its header for its pixel count, before it is decoded."""


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


def models_loaded() -> bool:
    """Whether this process has loaded dlib's face models (about 0.9 s the first time)."""
    return _models.cache_info().currsize > 0


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    im = image[..., :3]
    if im.dtype != np.uint8:
        return np.ascontiguousarray(im.mean(axis=2).astype(np.uint8))
    # the channels' mean rounded down, as the float mean gives it, in integers (4x cheaper)
    total = im[..., 0].astype(np.uint16) + im[..., 1] + im[..., 2]
    return np.ascontiguousarray((total // 3).astype(np.uint8))


def face_boxes(image: np.ndarray, thorough: bool = True) -> tuple[list[tuple[int, int, int, int]], list[float]]:
    """All face boxes ``(left, top, right, bottom)`` of an RGB or gray image and their detector scores.

    ``thorough`` adds a last pass at up to DETECT_RETRY_SIDE pixels when the quick passes find
    nothing: worth it once for a photo, too slow to repeat on every faceless video frame.
    """
    import cv2
    detector, _ = _models()
    gray = _gray(image)
    passes = [(DETECT_MAX_SIDE, 0), (DETECT_MAX_SIDE, 1)]     # upsampling finds smaller faces, at 4x the cost
    if thorough and max(gray.shape) > 2 * DETECT_MAX_SIDE:    # (the upsampled pass saw smaller images in full)
        passes.append((DETECT_RETRY_SIDE, 0))
    dets, scores, scale = [], [], 1.0
    for max_side, upsample in passes:
        scale = min(1.0, max_side / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        dets, scores, _ = detector.run(small, upsample, 0.0)
        if len(dets):
            break
    boxes = [(int(d.left() / scale), int(d.top() / scale), int(d.right() / scale), int(d.bottom() / scale))
             for d in dets]
    return boxes, [float(x) for x in scores]


def detect_box(image: np.ndarray, thorough: bool = True) -> tuple[int, int, int, int] | None:
    """The main face box ``(left, top, right, bottom)`` in an RGB or gray image, or None.

    The largest of the boxes that are clearly faces (score >= FACE_SCORE), so in a photo of
    several people the most prominent one talks; size alone is not enough, as on a photo with a
    face-like badge or print the biggest box can be the badge. With no clear face, the most
    confident box.
    """
    boxes, scores = face_boxes(image, thorough)
    if not boxes:
        return None
    clear = [i for i, sc in enumerate(scores) if sc >= FACE_SCORE]
    area = [(r - l) * (b - t) for l, t, r, b in boxes]
    return boxes[max(clear, key=lambda i: area[i])] if clear else boxes[int(np.argmax(scores))]


def landmarks_in_box(image: np.ndarray, box: tuple[int, int, int, int], fast: bool = False) -> np.ndarray:
    """68x2 float landmarks (x, y in pixels, sub-pixel) inside a given face box.

    dlib returns whole pixels and its answer shifts with the box, so a still face jitters by
    about a pixel from frame to frame (on a 100-px face, a fifth of a lip's movement). The
    predictor therefore runs on a crop enlarged up to SUBPIXEL times, from the box and a few
    slightly shifted copies of it (BOX_SHIFTS), and the answers are averaged: per frame, so real
    motion is kept while the detector's noise roughly halves. ``fast``: one box on a crop of at most
    FAST_CROP pixels, for a video whose track is smoothed over time anyway (5-8x cheaper).
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
    s = max(1.0, min(SUBPIXEL, (FAST_CROP if fast else MAX_CROP) / max(x1 - x0, y1 - y0)))
    crop = gray[y0:y1, x0:x1]
    if s > 1:
        crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
    crop = np.ascontiguousarray(crop)          # dlib reads contiguous rows: copied once, not per box shift
    # resize maps pixel centres: image point v lands on crop point (v - origin + 0.5) * s - 0.5
    origin = np.array([x0, y0, x0, y0], np.float64)
    w = r - l
    out = np.zeros((68, 2), np.float64)
    shifts = BOX_SHIFTS[:1] if fast else BOX_SHIFTS
    for dx, dy in shifts:
        shifted = np.array([l, t, r, b]) + w * np.array([dx, dy, dx, dy])
        rect = dlib.rectangle(*[int(round(v)) for v in (shifted - origin + 0.5) * s - 0.5])
        out += [(p.x, p.y) for p in predictor(crop, rect).parts()]
    return ((out / len(shifts) + 0.5) / s - 0.5 + (x0, y0)).astype(np.float32)


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


def _to_rgb(im) -> np.ndarray:
    """Any Pillow mode as RGB uint8: 16-bit and float scaled (not clipped), transparency over white."""
    from PIL import Image
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I") and a.max(initial=0) > 255 else max(255.0, a.max(initial=0))
        if im.mode == "F" and a.max(initial=0) <= 1.0:
            top = 1.0
        a = np.nan_to_num(np.clip(a / top, 0, 1) * 255)
        return np.repeat(a.round().astype(np.uint8)[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as RGB uint8, upright as its EXIF orientation says, no larger than MAX_PHOTO_SIDE.

    Any mode Pillow reads is accepted (gray, CMYK, 16-bit, palette, transparent over white); a
    missing, empty, damaged or oversized file is one clear error.
    """
    import warnings

    from PIL import Image, ImageOps
    path = existing_file(path, "face image", "pass an existing photo with --face")
    if path.stat().st_size == 0:
        raise InputError(f"face image {path} is empty (0 bytes); pass a JPEG or PNG photo")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # our own limit follows
            with Image.open(path) as im:
                limit = MAX_PHOTO_PIXELS if im.format == "JPEG" else MAX_WHOLE_PIXELS
                if im.size[0] * im.size[1] > limit:
                    raise TooManyPixels(f"face image {path} has {im.size[0]}x{im.size[1]} pixels, too many to read "
                                        f"safely; downscale it below {limit // 1_000_000} megapixels")
                if max(im.size) > MAX_PHOTO_SIDE:
                    im.draft("RGB", (MAX_PHOTO_SIDE, MAX_PHOTO_SIDE))     # a JPEG decodes at 1/2, 1/4 or 1/8 scale
                im = ImageOps.exif_transpose(im)
                img = _to_rgb(im)
    except TooManyPixels:
        raise
    except Image.DecompressionBombError:
        raise TooManyPixels(f"face image {path} has too many pixels to read safely; downscale it below "
                            f"{MAX_PHOTO_PIXELS // 1_000_000} megapixels") from None
    except Exception:
        raise InputError(f"{path} is not a readable image (damaged, truncated or not a photo); "
                         "use a JPEG or PNG photo") from None
    scale = MAX_PHOTO_SIDE / max(img.shape[:2])
    if scale < 1:
        import cv2
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def face_landmarks(image: np.ndarray, source: str = "image", index: int | None = None) -> np.ndarray:
    """Landmarks of the main face of a photo (see ``detect_box``), or of face ``index`` counted from the
    left; a FaceNotFoundError naming ``source`` when there is none, a warning when the face is small."""
    import warnings

    from ..errors import InputWarning
    if index is None:
        box = detect_box(image)
    else:
        found, scores = face_boxes(image)
        clear = [b for b, sc in zip(found, scores) if sc >= FACE_SCORE]
        boxes = sorted(clear or found)                 # a face-like print is not counted among real faces
        if not boxes:
            box = None
        elif not 0 <= index < len(boxes):
            raise InputError(f"{source} shows {len(boxes)} face(s); --face-index must be 0-{len(boxes) - 1} "
                             "(counted from the left)")
        else:
            box = boxes[index]
    if box is None:
        raise FaceNotFoundError(
            f"no face found in {source}; use a photo with one clearly visible, roughly frontal face "
            f"at least {MIN_PHOTO_FACE_PX} px wide")
    k = landmarks_in_box(image, box)
    width = float(np.ptp(k[:, 0]))
    if width < MIN_PHOTO_FACE_PX:
        warnings.warn(f"the face in {source} is only {width:.0f} px wide; the video will look soft: use a photo "
                      f"where it is at least {MIN_PHOTO_FACE_PX} px wide", InputWarning, stacklevel=2)
    return k


LIP_PAIRS = ((61, 50), (62, 51), (63, 52), (67, 58), (66, 57), (65, 56))   # inner-lip point, outer point beyond it
LIP_KEEP = 0.3            # a seated inner-lip point leaves at least this share of the lip's thickness
LIP_STEPS = 24            # samples from the inner point towards the outer one
LIP_GAP = 4               # this many samples of lip in a row end the teeth (a gap between two teeth is shorter)


def seat_inner_lips(image: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Landmarks (68, 2) with the inner-lip points moved off the teeth, onto the lips' inner edges.

    On a photo showing teeth (a smile, mid-word) dlib often puts the inner-lip points on the teeth,
    so teeth would be warped as part of the lips and show as a white line once the mouth closes.
    Each inner point moves out towards its outer-lip point over the pixels that look like the photo's
    teeth (nearer their colour than the lips'); photos that show no teeth are returned unchanged.
    """
    import cv2

    from ..render.mouth import lip_colour, photo_teeth
    lips = lip_colour(image, k)
    teeth = photo_teeth(image, k, lips)
    out = np.array(k, dtype=np.float64)
    if teeth is None or lips is None:
        return out
    steps = np.linspace(0.0, 1.0 - LIP_KEEP, LIP_STEPS)
    for inner, outer in LIP_PAIRS:
        path = out[inner] + steps[:, None] * (out[outer] - out[inner])
        px = cv2.remap(image, path[:, 0:1].astype(np.float32), path[:, 1:2].astype(np.float32),
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3).astype(np.float64)
        toothy = np.linalg.norm(px - teeth, axis=1) < np.linalg.norm(px - lips, axis=1)
        # teeth from the inner point on, through the dark gaps between teeth: they end where LIP_GAP samples
        # in a row are lip
        lip_run = np.convolve(~toothy, np.ones(LIP_GAP, int), "valid") == LIP_GAP
        run = 0 if not toothy[0] else int(np.argmax(lip_run)) if lip_run.any() else len(toothy)
        if run > 1:
            out[inner] = path[run - 1]
    return out
