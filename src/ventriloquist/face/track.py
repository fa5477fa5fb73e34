"""68-point landmarks for every frame of a video, tracked so detection runs rarely."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FaceNotFoundError
from ..video import read_frames, video_info
from .detect import box_from_landmarks, detect_box, landmarks_in_box

REDETECT_EVERY = 25      # frames between full detections; the predictor alone follows the face between them


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False)


def track_video(path: str | Path, progress: bool = True) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Landmarks (T, 68, 2) in pixels, the video's fps and its (width, height).

    Frames where no face is found are filled by interpolating their neighbours; a video
    with no face at all is an error.
    """
    info = video_info(path)
    out: list[np.ndarray | None] = []
    prev = None
    with _progress(info["frames"] or None, f"landmarks {Path(path).name}", progress) as bar:
        for i, frame in enumerate(read_frames(path)):
            box = None
            if prev is None or i % REDETECT_EVERY == 0:
                box = detect_box(frame, thorough=False)
            if box is None and prev is not None:
                box = box_from_landmarks(prev)
            k = landmarks_in_box(frame, box) if box is not None else None
            out.append(k)
            prev = k if k is not None else prev
            bar.update(1)
    return fill_gaps(out, str(path)), info["fps"], (info["width"], info["height"])


def fill_gaps(seq: list[np.ndarray | None], source: str) -> np.ndarray:
    """Stack per-frame landmarks, interpolating frames without a face."""
    ok = np.array([k is not None for k in seq])
    if not ok.any():
        raise FaceNotFoundError(f"no face found in any frame of {source}; use a video showing one face clearly")
    arr = np.stack([k if k is not None else np.zeros((68, 2), np.float32) for k in seq]).astype(np.float32)
    if not ok.all():
        idx = np.arange(len(seq))
        flat = arr.reshape(len(seq), -1)
        for j in range(flat.shape[1]):
            flat[~ok, j] = np.interp(idx[~ok], idx[ok], flat[ok, j])
        arr = flat.reshape(arr.shape)
    return arr
