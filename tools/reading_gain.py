"""How much of a lip motion drawn on a face dlib's 68-point model reads back.

Every motion ventriloquist draws was read by that model (training clips, emotion patterns, driving videos),
so what it under-reads is drawn too small. Each face (a photo, or a video's first frame) is rendered with known
lip motions: the lips spread across the face by up to ±12 %, the corners lifted by up to ±0.06 IOD, the jaw
and lower lip dropped by up to 0.08 IOD; its landmarks are read again, and the slope of read against drawn is
printed per face and as a median. The renderer draws a read spread larger by 1 / ``SPREAD_READ``
(render/warp.py), so spread reads back near 1; ``--raw`` draws it as read, which measures that constant (0.60
over 21 faces: six photos and paintings, the 15 wild clips' first frames; lift 0.67, opening 1.14). The corners'
lift is not corrected: drawn larger, the corners moved with every opening and dlib lost the opening on smiling
photos.

    python tools/reading_gain.py [--raw] face.png clip.mp4 ...
"""
from __future__ import annotations

import argparse

import numpy as np

from ventriloquist.evaluate.resynthesis import first_frame
from ventriloquist.face.detect import face_landmarks, load_image
from ventriloquist.face.topology import INNER_LIPS, OUTER_LIPS, interocular, mouth_aperture, mouth_width
from ventriloquist.render import Renderer, warp
from ventriloquist.render.warp import LOWER_BLOCK
from ventriloquist.video import is_video

LIPS = np.r_[OUTER_LIPS, INNER_LIPS]
CORNERS = np.array([48, 54, 60, 64])
STEPS = (-1.0, -0.5, 0.0, 0.5, 1.0)
SPREAD, LIFT, DROP = 0.12, 0.06, 0.08      # the largest drawn motion of each kind (share of width; IOD; IOD)


def _axes(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = k[45] - k[36]
    x = x / np.linalg.norm(x)
    return x, np.array([-x[1], x[0]])


def corner_height(k: np.ndarray) -> float:
    """The mouth corners' height below the lips' centre, in IOD (a smile makes it smaller)."""
    _, down = _axes(k)
    return float(((k[[48, 54]] - k[LIPS].mean(0)) @ down).mean() / interocular(k))


def moved(k: np.ndarray, kind: str, s: float) -> np.ndarray:
    """``k`` with the lips moved by step ``s`` (-1..1) of motion ``kind``."""
    t = k.copy()
    across, down = _axes(k)
    iod = interocular(k)
    if kind == "spread":
        t[LIPS] += SPREAD * s * np.outer((t[LIPS] - k[LIPS].mean(0)) @ across, across)
    elif kind == "lift":
        t[CORNERS] -= LIFT * s * iod * down
    else:
        t[LOWER_BLOCK] += DROP * (s + 1) / 2 * iod * down
    return t


READ = {"spread": mouth_width, "lift": corner_height, "open": mouth_aperture}


def slopes(image: np.ndarray, name: str) -> dict[str, float]:
    """Read-against-drawn slope of each motion on one face."""
    k = face_landmarks(image, name).astype(np.float64)
    r = Renderer(image, k)
    out = {}
    for kind, read in READ.items():
        pairs = []
        for s in STEPS:
            t = moved(k, kind, s)
            try:
                pairs.append((read(t), read(face_landmarks(r.render(t), name).astype(np.float64))))
            except Exception:            # the reader lost the face: that step says nothing
                continue
        pairs = np.array(pairs)
        out[kind] = float(np.polyfit(pairs[:, 0], pairs[:, 1], 1)[0]) if len(pairs) > 2 else float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("faces", nargs="+", help="photos or videos (their first frame)")
    ap.add_argument("--raw", action="store_true", help="draw a read spread as read (measures SPREAD_READ)")
    args = ap.parse_args()
    if args.raw:
        warp.SPREAD_READ = 1.0
    rows = []
    for path in args.faces:
        image = first_frame(path) if is_video(path) else load_image(path)
        rows.append(slopes(image, path))
        print(f"{path}: " + "  ".join(f"{k} {v:.2f}" for k, v in rows[-1].items()), flush=True)
    for kind in READ:
        v = np.array([r[kind] for r in rows])
        lo, mid, hi = np.nanpercentile(v, [25, 50, 75])
        print(f"{kind:6s} median {mid:.2f} (IQR {lo:.2f}-{hi:.2f}) over {np.isfinite(v).sum()} faces")


if __name__ == "__main__":
    main()
