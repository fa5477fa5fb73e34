"""Emotions on four faces: one speech frame per emotion, and how each compares with real actors.

For every face the same speech is rendered with ``--emotion neutral`` and each of the six emotions;
landmarks are re-detected on the videos (dlib), aligned per frame, and the median over the frames of
``emotion - neutral`` is compared with what the emotion videos' actors do (their emotion clip minus the
same actor's neutral clip, averaged over actors; jaw outline left out on both sides: it follows the
head's pitch more than the face): cosine and magnitude ratio per face and emotion. Writes
``docs/emotion_strip.jpg`` (faces x emotions, face crops) and ``emotion_check.json`` beside it, and
with ``--judge DIR`` the crops, shuffled and renamed, for a blind judge (key beside it: DIR_key.json).

    python tools/make_emotion_strip.py --faces a.png b.png c.png d.png --speech speech.wav [--judge DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ventriloquist.config import GenerateConfig, RenderConfig
from ventriloquist.face.align import normalise
from ventriloquist.face.track import track_video
from ventriloquist.motion.expression import FACE_POINTS, cosine
from ventriloquist.pipeline import Ventriloquist
from ventriloquist.video import read_frames

SHOWN = ("neutral", "happy", "sad", "angry", "surprise", "disgust", "fear")
EMOTION_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emotion_video"
TILE = 192


def aligned(k: np.ndarray) -> np.ndarray:
    """Per-frame canonical landmarks (T, 68, 2) of tracked pixel landmarks (NaN frames dropped)."""
    k = k[np.isfinite(k).all(axis=(1, 2))]
    return np.stack([normalise(x)[0] for x in k])


def actor_patterns(folder: Path = EMOTION_VIDEOS) -> dict[str, np.ndarray]:
    """Per emotion, the actors' mean of (median emotion landmarks - median neutral landmarks), re-detected."""
    from ventriloquist.emotion.vocabulary import EMOTIONS, to_index
    rows = list(csv.DictReader(open(folder / "labels.csv", newline="")))
    med = {(r["speaker"], EMOTIONS[to_index(r["emotion"])]): np.median(aligned(track_video(folder / r["path"],
                                                                                            progress=False)[0]), axis=0)
           for r in rows if to_index(r["emotion"]) is not None and r["emotion"] != "contempt"}
    out = {}
    for e in SHOWN[1:]:
        diffs = [m - med[(a, "neutral")] for (a, lab), m in med.items() if lab == e and (a, "neutral") in med]
        if diffs:
            out[e] = np.mean(diffs, axis=0)
    return out


def compare(ours: np.ndarray, real: np.ndarray) -> dict:
    a, b = ours[FACE_POINTS].ravel(), real[FACE_POINTS].ravel()
    return {"cosine": round(cosine(ours, real), 3),
            "magnitude": round(float(np.linalg.norm(a) / (np.linalg.norm(b) + 1e-12)), 3)}


def crop(frame: np.ndarray, k: np.ndarray) -> np.ndarray:
    lo, hi = k.min(axis=0), k.max(axis=0)
    c, s = (lo + hi) / 2, 1.15 * float((hi - lo).max())        # the whole face, brows to chin
    m = np.float32([[TILE / s, 0, -(c[0] - s / 2) * TILE / s], [0, TILE / s, -(c[1] - s / 2) * TILE / s]])
    return cv2.warpAffine(frame, m, (TILE, TILE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def main(faces: list[Path], speech: Path, out: Path, judge: Path | None) -> dict:
    real = actor_patterns()
    vt = Ventriloquist(GenerateConfig(render=RenderConfig(size=384, crop="face")))
    report, rows, crops = {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        for face in faces:
            meds, tiles = {}, []
            for e in SHOWN:
                vt.cfg.emotion = e
                video = Path(tmp) / f"{face.stem}_{e}.mp4"
                vt.generate(face, video, audio=speech, progress=False)
                k, _, _ = track_video(video, progress=False)
                meds[e] = np.median(aligned(k), axis=0)
                frames = list(read_frames(video))
                i = len(frames) // 2                           # a speech frame, the same one for every emotion
                t = crop(frames[i], k[i] if np.isfinite(k[i]).all() else np.nanmedian(k, axis=0))
                crops.append((face.stem, e, t.copy()))
                cv2.putText(t, e, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
                tiles.append(t)
            rows.append(np.hstack(tiles))
            report[face.name] = {e: compare(meds[e] - meds["neutral"], real[e]) for e in SHOWN[1:] if e in real}
            print(face.name, report[face.name], flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    (out.parent / "emotion_check.json").write_text(json.dumps(report, indent=1))
    if judge is not None:
        judge.mkdir(parents=True, exist_ok=True)
        random.Random(0).shuffle(crops)
        key = {}
        for n, (face, e, t) in enumerate(crops):
            cv2.imwrite(str(judge / f"{n:02d}.png"), cv2.cvtColor(t, cv2.COLOR_RGB2BGR))
            key[f"{n:02d}.png"] = {"face": face, "emotion": e}
        (judge.parent / f"{judge.name}_key.json").write_text(json.dumps(key, indent=1))
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", nargs="+", type=Path, required=True)
    ap.add_argument("--speech", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/emotion_strip.jpg"))
    ap.add_argument("--judge", type=Path, default=None, help="also write shuffled crops here for a blind judge")
    a = ap.parse_args()
    main(a.faces, a.speech, a.out, a.judge)
