"""How a shut eye is lit across, real blinks against ours: the light along a line across each eye, from
0.7 eye widths above its corners' line to 0.5 below, as a share of the skin's light under the eye.

For each talking clip, the frames where dlib reads both eyes under half their median opening are real
blinks; ours is the clip's first frame rendered with the lids shut (``motion.life.apply_blinks``). Real
blinks are bright from just over the lash line up to the brow's shadow (0.84-0.91 of the skin under the
eye, wild clips and GRID's other speakers) over a narrow dark lash line; the open eye there is the crease's
and the lid's shadow. Prints per clip, the medians and their mean absolute difference.

    python tools/blink_profile.py [folder_or_clip ...]     (default: ../shared/data/talking_face/wild)

The wild clips are for measuring only (most have research licences).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from ventriloquist.face.detect import face_landmarks
from ventriloquist.face.topology import eye_opening
from ventriloquist.face.track import track_video
from ventriloquist.motion.life import apply_blinks
from ventriloquist.render import Renderer
from ventriloquist.video import read_frames

WILD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "talking_face" / "wild"
ACROSS = np.linspace(-0.7, 0.5, 25)      # eye widths from the corners' line (negative: above)
ALONG = np.linspace(0.35, 0.65, 7)       # the middle of the eye, corner to corner
BLINK_SHARE = 0.5                        # a real blink: both eyes under this share of their median opening
MAX_BLINK_FRAMES = 20


def profile(image: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Light along ACROSS (averaged over ALONG and both eyes), over the light at the profile's bottom."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    out = []
    for a, b in ((k[36], k[39]), (k[42], k[45])):
        width = float(np.linalg.norm(b - a))
        ex = (b - a) / width
        ey = np.array([-ex[1], ex[0]]) * (1 if ex[0] > 0 else -1)
        pts = a + (ALONG[None, :, None] * width) * ex + (ACROSS[:, None, None] * width) * ey
        v = cv2.remap(gray, pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32), cv2.INTER_LINEAR).mean(1)
        out.append(v / max(float(v[-1]), 1.0))
    return np.mean(out, 0)


def measure(clip: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(real blinks' profile, our shut eye's profile) for ``clip``, or None where no blink is read."""
    k = track_video(clip, progress=False)[0]
    ok = np.isfinite(k).all(axis=(1, 2))
    opening = np.full(len(k), np.inf)
    opening[ok] = eye_opening(k[ok])
    shut = np.flatnonzero(opening < BLINK_SHARE * np.median(opening[ok]))[:MAX_BLINK_FRAMES]
    if not len(shut):
        return None
    real, first = [], None
    for i, frame in enumerate(read_frames(clip)):
        if i == 0:
            first = frame
        if i in shut:
            real.append(profile(frame, k[i]))
        if i >= shut[-1]:
            break
    k0 = face_landmarks(first)
    ours = Renderer(first, k0).render(apply_blinks(k0[None], np.array([1.0]))[0])
    return np.mean(real, 0), profile(ours, k0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="*", type=Path, default=[WILD])
    args = ap.parse_args()
    clips = [c for p in args.clips for c in (sorted(p.glob("*.mp4")) if p.is_dir() else [p])]
    real, ours = [], []
    for clip in clips:
        got = measure(clip)
        if got is None:
            print(f"{clip.stem:28s} no blink read")
            continue
        real.append(got[0])
        ours.append(got[1])
        print(f"{clip.stem:28s} real " + " ".join(f"{x:.2f}" for x in got[0][::3])
              + "   ours " + " ".join(f"{x:.2f}" for x in got[1][::3]))
    if not real:
        raise SystemExit("no clip with a blink that dlib reads")
    real_m, ours_m = np.median(real, 0), np.median(ours, 0)
    print("eye widths " + " ".join(f"{x:+.2f}" for x in ACROSS[::2]))
    print("real       " + " ".join(f"{x:.2f}" for x in real_m[::2]))
    print("ours       " + " ".join(f"{x:.2f}" for x in ours_m[::2]))
    print(f"mean |ours - real|: medians {np.abs(ours_m - real_m).mean():.3f}, "
          f"per clip {np.abs(np.array(ours) - np.array(real)).mean():.3f} ({len(real)} clips)")


if __name__ == "__main__":
    main()
