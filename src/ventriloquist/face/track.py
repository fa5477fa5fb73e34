"""68-point landmarks for every frame of a video, tracked so detection runs rarely."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FaceNotFoundError
from ..video import read_frames, upright, video_info
from .detect import box_from_landmarks, detect_box, landmarks_in_box, seat_inner_lips

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


CUT_LEVEL = 40.0         # mean absolute change (0-255) of a 32x18 grey thumbnail that marks a cut
LOST_JUMP = 0.3          # the face box moving by more than this share of its size in one frame: look again
DUB_REDETECT_EVERY = 12  # frames between full detections while a face is followed
SMOOTH_FRAMES = 0.8      # Gaussian sigma (frames) of the zero-phase smoothing of a followed face


@dataclass
class FaceTrack:
    """A face followed through a video: landmarks (T, 68, 2) in pixels (NaN where no face), which frames have
    one, the shot each frame belongs to (a cut starts a new one), each frame's time (s), fps and size."""

    landmarks: np.ndarray
    found: np.ndarray
    shot: np.ndarray
    times: np.ndarray
    fps: float
    size: tuple[int, int]

    @property
    def missing(self) -> int:
        return int((~self.found).sum())


def _thumb(frame: np.ndarray) -> np.ndarray:
    import cv2
    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)


def _carried(box: tuple[int, int, int, int], at: np.ndarray, now: np.ndarray) -> tuple[int, int, int, int]:
    """The detector's ``box`` (found with landmarks ``at``) moved and scaled as the landmarks moved to ``now``.

    A box re-made from the landmarks' own extent is not the box the predictor was trained on (on a turned head it
    sits off the face), so each frame's fit pulls the next box further aside until the landmarks slide onto the
    cheek; the detector's own box, carried along, stays on the face."""
    c0, c1 = at.mean(0), now.mean(0)
    s = float(np.sqrt(((now - c1) ** 2).sum(1).mean() / max(((at - c0) ** 2).sum(1).mean(), 1e-9)))
    l, t, r, b = (float(v) for v in box)
    mid = c1 + (np.array([(l + r) / 2, (t + b) / 2]) - c0) * s
    hw, hh = (r - l) / 2 * s, (b - t) / 2 * s
    return (int(round(mid[0] - hw)), int(round(mid[1] - hh)), int(round(mid[0] + hw)), int(round(mid[1] + hh)))


def follow_face(path: str | Path, progress: bool = True,
                on_face: Callable[[np.ndarray, np.ndarray, int, int], None] | None = None) -> FaceTrack:
    """Landmarks of the main face in every frame of a video, for dubbing.

    The face is detected on the first frame, after every cut (a sudden change of the whole picture),
    every DUB_REDETECT_EVERY frames and whenever it jumps; between detections the predictor follows it
    from its last landmarks. A frame where no face is detected has none (it will pass through unchanged):
    nothing is interpolated across a cut, an occlusion or an empty shot. Within each run of found frames
    the landmarks are smoothed without lag (a zero-phase Gaussian), which removes the detector's jitter.
    ``on_face`` is called with each frame that has a face, its landmarks (not yet smoothed), its shot and its
    index (what a dub learns from the video while it is read once: its own mouth interiors, its lips at rest).
    """
    import av
    from scipy.ndimage import gaussian_filter1d

    from ..audio import decoded_packets
    info = video_info(path)
    ks: list[np.ndarray | None] = []
    shots, times = [], []
    prev_k, prev_thumb, shot, since = None, None, 0, 0
    det_box = det_k = None
    with _progress(info["frames"] or None, f"following the face in {Path(path).name}", progress) as bar, \
            av.open(str(path)) as c:
        stream = c.streams.video[0]
        for _, frames in decoded_packets(c, stream):
            for f in frames or ():
                frame = upright(f)
                times.append(float(f.time) if f.time is not None else len(times) / info["fps"])
                thumb = _thumb(frame)
                cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > CUT_LEVEL
                prev_thumb = thumb
                if cut:
                    shot, prev_k = shot + 1, None
                k = None
                if prev_k is not None and since < DUB_REDETECT_EVERY:
                    k = landmarks_in_box(frame, _carried(det_box, det_k, prev_k), fast=True)
                    size = float(np.ptp(prev_k, axis=0).max())
                    if float(np.abs(k.mean(0) - prev_k.mean(0)).max()) > LOST_JUMP * size:
                        k = None
                    since += 1
                if k is None:
                    box = detect_box(frame, thorough=False)
                    k = landmarks_in_box(frame, box, fast=True) if box is not None else None
                    det_box, det_k = box, k
                    since = 0
                # inner lips on the lips' edges, not on teeth: teeth warped as lip show as a white line when
                # the new speech closes the mouth
                seated = None if k is None else seat_inner_lips(frame, k).astype(np.float32)
                if seated is not None and on_face is not None:
                    on_face(frame, seated, shot, len(ks))
                ks.append(seated)
                shots.append(shot)
                prev_k = k
                bar.update(1)
    if not ks:
        raise FaceNotFoundError(f"no frame of {path} could be decoded; re-export or re-download it")
    found = np.array([k is not None for k in ks])
    if not found.any():
        raise FaceNotFoundError(f"no face found in any frame of {path}; use a video showing one face clearly")
    arr = np.full((len(ks), 68, 2), np.nan, np.float32)
    for i, k in enumerate(ks):
        if k is not None:
            arr[i] = k
    shots_a = np.array(shots)
    # runs of found frames within one shot, each smoothed on its own
    run = np.cumsum(np.r_[True, (found[1:] != found[:-1]) | (shots_a[1:] != shots_a[:-1])])
    for r in np.unique(run[found]):
        sel = np.flatnonzero((run == r) & found)
        if len(sel) > 2:
            arr[sel] = gaussian_filter1d(arr[sel], SMOOTH_FRAMES, axis=0, mode="nearest")
    return FaceTrack(arr, found, shots_a, np.array(times), float(info["fps"]), (info["width"], info["height"]))
