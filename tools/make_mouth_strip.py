"""Crops of the widest-open frames on several faces: how the painted mouth interior reads at 512 px.

Each face (the demo portrait, and the first frame of each talking clip given) speaks (its own
clip's audio, or the demo speech) through the shipped pipeline at 512 px; the frames where the
lips are furthest apart are cropped around the mouth, next to the most closed one. Writes
``docs/mouth_strip.png`` by default.

    python tools/make_mouth_strip.py ../shared/data/talking_face/wild/*.mp4
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ventriloquist.config import GenerateConfig, RenderConfig
from ventriloquist.demo import DEMO_SPEECH, demo_face
from ventriloquist.evaluate.resynthesis import first_frame
from ventriloquist.face.topology import MOUTH, interocular, mouth_aperture
from ventriloquist.pipeline import Ventriloquist
from ventriloquist.video import read_frames

WIDEST = 3              # crops per face of the widest openings, plus the most closed frame
CROP_IOD = 1.1          # crop width in inter-ocular distances
TILE = (240, 150)       # tile size in pixels (width, height)


def crops(photo: Path, audio: Path, vt: Ventriloquist, tmp: Path) -> list[np.ndarray]:
    res = vt.generate(photo, tmp / "talk.mp4", audio=audio, progress=False)
    k = res.landmarks.landmarks
    ap = mouth_aperture(k)
    order = np.argsort(ap)
    picks = [int(order[0])] + sorted(int(i) for i in order[::-1][: 8 * WIDEST: 8])   # not neighbouring frames
    frames = {i: f for i, f in enumerate(read_frames(tmp / "talk.mp4")) if i in picks}
    out = []
    for i in picks:
        c, w = k[i][MOUTH].mean(0), CROP_IOD * float(interocular(k[i]))
        h = w * TILE[1] / TILE[0]
        x0, y0 = int(round(c[0] - w / 2)), int(round(c[1] - h / 2))
        crop = frames[i][max(0, y0):y0 + int(h), max(0, x0):x0 + int(w)]
        tile = cv2.resize(crop, TILE, interpolation=cv2.INTER_AREA)
        cv2.putText(tile, f"{ap[i]:.2f} IOD", (6, TILE[1] - 8), 0, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        out.append(tile)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*", type=Path, help="talking videos: first frame = photo, own audio = speech")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "mouth_strip.png")
    a = ap.parse_args()
    vt = Ventriloquist(GenerateConfig(render=RenderConfig(size=512, crop="face")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows.append(np.hstack(crops(demo_face(), DEMO_SPEECH, vt, tmp)))
        for clip in a.clips:
            photo = tmp / "photo.png"
            cv2.imwrite(str(photo), cv2.cvtColor(first_frame(clip), cv2.COLOR_RGB2BGR))
            rows.append(np.hstack(crops(photo, clip, vt, tmp)))
    cv2.imwrite(str(a.out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    print(f"wrote {a.out} ({len(rows)} faces: the most closed frame, then the {WIDEST} widest openings)")


if __name__ == "__main__":
    main()
