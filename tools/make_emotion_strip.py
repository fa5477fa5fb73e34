"""One sentence in three chosen emotions: frames side by side, for the README (docs/emotion_strip.png).

    python tools/make_emotion_strip.py [speech.wav]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ventriloquist.config import GenerateConfig, RenderConfig
from ventriloquist.demo import DEMO_SPEECH, demo_face
from ventriloquist.pipeline import Ventriloquist
from ventriloquist.video import read_frames

EMOTIONS = ("happy", "sad", "angry")
SHARES = (0.3, 0.5, 0.7)        # where in the sentence the frames are taken


def main(speech: Path = DEMO_SPEECH, out: Path = Path("docs/emotion_strip.png")) -> Path:
    rows = []
    vt = Ventriloquist(GenerateConfig(render=RenderConfig(size=256, crop="face")))
    with tempfile.TemporaryDirectory() as tmp:
        for emotion in EMOTIONS:
            vt.cfg.emotion = emotion
            video = Path(tmp) / f"{emotion}.mp4"
            vt.generate(demo_face(), video, audio=speech, progress=False)
            frames = list(read_frames(video))
            tiles = [frames[int(s * (len(frames) - 1))].copy() for s in SHARES]
            cv2.putText(tiles[0], emotion, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
            rows.append(np.hstack(tiles))
    cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return out


if __name__ == "__main__":
    print(main(*(Path(a) for a in sys.argv[1:2])))
