"""Rebuild the bundled demo motion from GRID (needs ../shared/data/talking_face).

Writes ``src/ventriloquist/assets/grid_s1_demo.npz`` (landmarks tracked on two held-out
GRID s1 clips, concatenated) and ``grid_s1_demo.flac`` (their audio, 16 kHz mono). GRID is
CC BY 4.0 (Cooke, Barker, Cunningham & Shao, 2006); only derived landmarks and the short
audio are committed, never the videos.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from ventriloquist.audio import load_audio
from ventriloquist.config import SAMPLE_RATE
from ventriloquist.face.track import track_video
from ventriloquist.motion.sequence import LandmarkSequence

CLIPS = ["lbiq2p", "lbix4n"]          # test split: never used for training


def main(data: Path = Path(__file__).resolve().parents[2] / "shared" / "data" / "talking_face" / "grid_s1") -> None:
    out = Path(__file__).resolve().parents[1] / "src" / "ventriloquist" / "assets"
    ks, ys = [], []
    for name in CLIPS:
        video = data / f"{name}.mp4"
        k, fps, (w, h) = track_video(video, carry_box=False)     # as the shipped asset was made
        y = load_audio(video)
        n = min(len(k), int(round(len(y) / SAMPLE_RATE * fps)))
        ks.append(k[:n])
        ys.append(y[: int(round(n / fps * SAMPLE_RATE))])
    LandmarkSequence(np.concatenate(ks), fps, w, h).save(out / "grid_s1_demo.npz")
    sf.write(out / "grid_s1_demo.flac", np.concatenate(ys), SAMPLE_RATE, subtype="PCM_16")
    print(f"wrote {out / 'grid_s1_demo.npz'} and {out / 'grid_s1_demo.flac'}")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
