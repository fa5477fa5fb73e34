"""68-point landmarks for every frame of a video, tracked so detection runs rarely."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FaceNotFoundError
from ..video import ahead, read_frames, timed_frames, video_info
from .detect import box_from_landmarks, detect_box, landmarks_in_box, seat_inner_lips

REDETECT_EVERY = 25      # frames between full detections; the predictor alone follows the face between them


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False)


def track_video(path: str | Path, progress: bool = True, carry_box: bool = True
                ) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Landmarks (T, 68, 2) in pixels, the video's fps and its (width, height).

    Frames where no face is found are filled by interpolating their neighbours; a video
    with no face at all is an error. Between detections the detector's box follows the picture
    (:class:`_Followed`); ``carry_box=False`` re-makes it from the last landmarks instead, which
    drifts onto the cheek on a turned head: it is how the training cache (format 3), and so the
    shipped weights, were made, and is kept for them until they are next retrained.
    """
    info = video_info(path)
    out: list[np.ndarray | None] = []
    prev = det = None
    with _progress(info["frames"] or None, f"landmarks {Path(path).name}", progress) as bar:
        for i, frame in enumerate(read_frames(path)):
            box = None
            if prev is None or i % REDETECT_EVERY == 0:
                box = detect_box(frame, thorough=False)
                if box is not None and carry_box:
                    det = _Followed(box, frame)
            if box is None and prev is not None:
                moved = det.moved(frame) if det is not None else None
                if moved is not None:
                    box = _whole(moved)
                elif det is not None and (found := detect_box(frame, thorough=False)) is not None:
                    box, det = found, _Followed(found, frame)
                else:
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
MOTION_PX = 96           # between detections the face box follows the picture, measured on crops this small ...
MOTION_PEAK = 0.3        # ... where the two crops correlate at least this well (a moved picture: 0.8-1.0)


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


class _Followed:
    """A detected face box and the picture inside it, to follow between detections (:meth:`moved`).

    Between detections the box follows the picture, not the landmarks: a box re-made from the landmarks'
    extent sits off a turned head, and a box moved with the landmarks feeds each fit's error into the next
    (on a face cut by the frame's edge the landmarks crept up a few pixels a frame and off the picture);
    the picture's own motion has no such loop. It is measured from the detection's frame, not frame to frame:
    phase correlation under-reads sub-pixel steps, and those would add up. The detection's crop is cut once."""

    def __init__(self, box: tuple[int, int, int, int], frame: np.ndarray) -> None:
        import cv2
        self.box = tuple(float(v) for v in box)
        h, w = frame.shape[:2]
        l, t, r, b = self.box
        self.region = x0, y0, x1, y1 = max(int(round(l)), 0), max(int(round(t)), 0), min(int(round(r)), w), \
            min(int(round(b)), h)
        self.crop = self.window = None
        if x1 - x0 < 8 or y1 - y0 < 8:
            return
        # even sides: OpenCV's phase correlation is half a pixel off on odd ones
        k = min(1.0, MOTION_PX / max(x1 - x0, y1 - y0))
        self.size = (2 * int(k * (x1 - x0) / 2), 2 * int(k * (y1 - y0) / 2))
        self.crop = self._grey(frame)
        self.window = cv2.createHanningWindow(self.size, cv2.CV_32F)

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        import cv2
        x0, y0, x1, y1 = self.region
        return cv2.resize(cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32),
                          self.size, interpolation=cv2.INTER_AREA)

    def moved(self, frame: np.ndarray) -> tuple[float, float, float, float] | None:
        """The box (l, t, r, b) moved as the picture inside it moved by ``frame`` (phase correlation of the two
        crops, at most MOTION_PX across); None where the picture did not just move (a weak correlation peak, or
        a jump of over LOST_JUMP of the box: a cut, a reframing), to detect again."""
        import cv2
        if self.crop is None:
            return None
        (dx, dy), peak = cv2.phaseCorrelate(self.crop, self._grey(frame), self.window)
        x0, y0, x1, y1 = self.region
        dx, dy = dx * (x1 - x0) / self.size[0], dy * (y1 - y0) / self.size[1]
        l, t, r, b = self.box
        if peak < MOTION_PEAK or max(abs(dx), abs(dy)) > LOST_JUMP * max(r - l, b - t):
            return None
        return (l + dx, t + dy, r + dx, b + dy)


def _whole(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    return tuple(int(round(v)) for v in box)


def _near(frame: np.ndarray, box: tuple[float, float, float, float] | None, prev: np.ndarray) -> np.ndarray | None:
    """The landmarks fitted in ``box`` (fast), or None where there is no box or they jumped more than LOST_JUMP
    of the face from the last frame's ``prev``: then the face is looked for again."""
    if box is None:
        return None
    k = landmarks_in_box(frame, _whole(box), fast=True)
    size = float(np.ptp(prev, axis=0).max())
    return None if float(np.abs(k.mean(0) - prev.mean(0)).max()) > LOST_JUMP * size else k


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest")`` (the same kernel, 4 sigma wide), in
    NumPy: a dub's process does not import SciPy (0.3 s)."""
    radius = int(4.0 * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    w /= w.sum()
    padded = np.concatenate([np.repeat(x[:1], radius, 0), x, np.repeat(x[-1:], radius, 0)])
    return sum(w[j] * padded[j:j + len(x)] for j in range(2 * radius + 1)).astype(x.dtype)


def follow_face(path: str | Path, progress: bool = True,
                on_face: Callable[[np.ndarray, np.ndarray, int, int], None] | None = None) -> FaceTrack:
    """Landmarks of the main face in every frame of a video, for dubbing.

    The face is detected on the first frame, after every cut (a sudden change of the whole picture),
    every DUB_REDETECT_EVERY frames and whenever it jumps; between detections the predictor fits it in the
    detector's box moved as the picture moved (:class:`_Followed`), and where the detector loses a face the picture
    still shows, in its last box, for as long again. A frame where no face is found has none (it will pass
    through unchanged): nothing is interpolated across a cut, an occlusion or an empty shot. Within each run
    of found frames the landmarks are smoothed without lag (a zero-phase Gaussian), which removes the
    detector's jitter.
    ``on_face`` is called with each frame that has a face, its landmarks (not yet smoothed), its shot and its
    index (what a dub learns from the video while it is read once: its own mouth interiors, its lips at rest).
    """
    info = video_info(path)
    ks: list[np.ndarray | None] = []
    shots, times = [], []
    prev_k, prev_thumb, shot, since = None, None, 0, 0
    det = last_box = None
    with _progress(info["frames"] or None, f"following the face in {Path(path).name}", progress) as bar:
        for t, frame in ahead(timed_frames(path)):
            times.append(t if t is not None else len(times) / info["fps"])
            thumb = _thumb(frame)
            cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > CUT_LEVEL
            prev_thumb = thumb
            if cut:
                shot, prev_k = shot + 1, None
            k = None
            if prev_k is not None and since < DUB_REDETECT_EVERY:
                box = det.moved(frame)
                k = _near(frame, box, prev_k)
                since += 1
            if k is None:
                box = detect_box(frame, thorough=False)
                if box is not None:
                    k = landmarks_in_box(frame, box, fast=True)
                    det, since = _Followed(box, frame), 0
                elif prev_k is not None and since < 2 * DUB_REDETECT_EVERY:
                    # the detector lost a face the picture still shows (a turn): fit it where it last was,
                    # for as long again as between detections (then the face is taken for gone)
                    box = last_box
                    k = _near(frame, box, prev_k)
                    since += 1
            last_box = box if k is not None else None
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
            arr[sel] = _gaussian(arr[sel], SMOOTH_FRAMES)
    return FaceTrack(arr, found, shots_a, np.array(times), float(info["fps"]), (info["width"], info["height"]))
