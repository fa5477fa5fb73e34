"""Ours beside real: each talking clip re-made from its first frame and its own audio, then its widest
real mouth openings next to our frame at the same opening (within 0.02 IOD, landmarks re-detected on
both videos), and its most closed real eye next to the frame where we drew the eye most closed (a blink).

By default the clips of ``../shared/data/talking_face/wild`` whose licence allows showing them (no
"research" in ``clips.csv``) are used; writes ``docs/mouth_strip.png``.

    python tools/make_mouth_strip.py [clip.mp4 ...] [--out docs/mouth_strip.png]
"""
from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ventriloquist.evaluate.resynthesis import first_frame
from ventriloquist.face.topology import MOUTH, RIGHT_EYE, eye_opening, interocular, mouth_aperture
from ventriloquist.face.track import track_video
from ventriloquist.pipeline import Ventriloquist
from ventriloquist.video import read_frames

WILD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "talking_face" / "wild"
WIDEST = 2              # mouth pairs per clip
MATCH_IOD = 0.02        # our frame opens within this of the real one
TILE = (210, 140)       # tile size in pixels (width, height): about 3x a 200-px face's mouth


def shown_clips(folder: Path) -> list[Path]:
    """The clips of a talking_face folder whose licence lets their frames be shown."""
    with open(folder / "clips.csv", newline="") as f:
        return [folder / r["path"] for r in csv.DictReader(f) if "research" not in r["license"].lower()]


def tile(frame: np.ndarray, centre: np.ndarray, width: float, text: str) -> np.ndarray:
    h = width * TILE[1] / TILE[0]
    m = np.float32([[TILE[0] / width, 0, -(centre[0] - width / 2) * TILE[0] / width],
                    [0, TILE[1] / h, -(centre[1] - h / 2) * TILE[1] / h]])
    t = cv2.warpAffine(frame, m, TILE, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    cv2.putText(t, text, (6, TILE[1] - 8), 0, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def row(clip: Path, vt: Ventriloquist, tmp: Path) -> np.ndarray:
    photo, ours = tmp / "photo.png", tmp / "ours.mp4"
    cv2.imwrite(str(photo), cv2.cvtColor(first_frame(clip), cv2.COLOR_RGB2BGR))
    drawn = vt.generate(photo, ours, audio=clip, progress=False).landmarks.landmarks
    real_k, ours_k = track_video(clip, progress=False)[0], track_video(ours, progress=False)[0]
    real_f, ours_f = list(read_frames(clip)), list(read_frames(ours))
    n = min(len(real_k), len(ours_k), len(real_f), len(ours_f))
    ra, oa = mouth_aperture(real_k[:n]), mouth_aperture(ours_k[:n])
    tiles, used = [], set()
    for i in np.argsort(-ra):
        near = [j for j in np.argsort(np.abs(oa - ra[i])) if abs(oa[j] - ra[i]) <= MATCH_IOD and j not in used]
        if not near:
            continue
        j = int(near[0])
        used.add(j)
        for f, k, who in ((real_f[i], real_k[i], "real"), (ours_f[j], ours_k[j], "ours")):
            tiles.append(tile(f, k[MOUTH].mean(0), 1.2 * float(interocular(k)), f"{who} {mouth_aperture(k):.2f} IOD"))
        if len(tiles) == 2 * WIDEST:
            break
    # the real blink is the frame a detector reads most closed; ours, the frame we drew most closed (a detector
    # reads our shut lids less closed than real ones), labelled with what the detector reads there
    re, oe = eye_opening(real_k[:n]), eye_opening(ours_k[:n])
    i, j = int(np.argmin(re)), int(np.argmin(eye_opening(drawn[:n])))
    for f, k, e, at, who in ((real_f[i], real_k[i], re, i, "real"), (ours_f[j], ours_k[j], oe, j, "ours")):
        tiles.append(tile(f, k[RIGHT_EYE].mean(0), 0.9 * float(interocular(k)),
                          f"{who} blink {float(e[at] / np.median(e)):.2f}"))
    return np.hstack(tiles + [np.zeros_like(tiles[0])] * (2 * WIDEST + 2 - len(tiles)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*", type=Path, help="talking videos (default: the showable clips of the wild set)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "mouth_strip.png")
    a = ap.parse_args()
    clips = a.clips or shown_clips(WILD)
    vt = Ventriloquist()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row(c, vt, Path(tmp)) for c in clips]
    cv2.imwrite(str(a.out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    print(f"wrote {a.out}: {len(rows)} clips, {WIDEST} widest real openings beside ours, then a real and our blink")


if __name__ == "__main__":
    main()
