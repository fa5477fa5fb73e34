"""Blind-judge pairs: real talking clips beside our re-synthesis of them, shuffled, for a judge who did not
make them (issue #33's test of whether what moves looks real).

Each clip of ``../shared/data/talking_face/wild`` is re-made from its first frame and its own audio (cached in
the output folder), landmarks are re-detected on both videos, and pairs are cut at 3x zoom:

- ``mouth``: a real frame and ours at the same inner opening (within 0.02 IOD), spread over the clip's
  speaking openings (its open frames' 35th to 98th percentile);
- ``eye``: the real frame a detector reads most closed (a blink) and the frame where we drew the eye most
  closed, the right eye; several per clip, at least a second apart.

Each pair is one PNG (A left, B right); ``key.json`` says which side is ours. Give the judge the PNGs only,
ask which of A and B is synthetic (one line per pair: ``pair_07 B``), then score:

    python tools/judge_pairs.py make OUT [--kind mouth|eye] [--pairs 40] [--seed 0] [clip.mp4 ...]
    python tools/judge_pairs.py score OUT/key.json ANSWERS.txt

The wild clips are for measuring only (most have research licences): pairs are never shipped.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ventriloquist.evaluate.resynthesis import first_frame
from ventriloquist.face.topology import MOUTH, RIGHT_EYE, eye_opening, interocular, mouth_aperture
from ventriloquist.face.track import track_video
from ventriloquist.pipeline import Ventriloquist
from ventriloquist.video import read_frames, video_info

WILD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "talking_face" / "wild"
MATCH_IOD = 0.02                 # our mouth opens within this of the real one
SPREAD = (0.35, 0.98)            # mouth pairs spread over these percentiles of a clip's open frames ...
OPEN_IOD = 0.05                  # ... (open: inner opening above this)
APART_S = 0.4                    # frames of one clip used for pairs lie at least this far apart
EYE_APART_S = 1.0                # blinks at least this far apart ...
BLINK_SHARE = 0.6                # ... where the eye is open less than this share of its median opening
TILES = {"mouth": ((240, 160), 1.2, MOUTH), "eye": ((240, 160), 0.9, RIGHT_EYE)}   # size, width in IOD, centre


def resynthesised(clip: Path, cache: Path, vt: Ventriloquist) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """Our re-synthesis of ``clip`` (cached), the real and our re-detected landmarks, and our drawn ones."""
    ours = cache / f"{clip.stem}.mp4"
    files = [cache / f"{clip.stem}.{k}.npy" for k in ("real", "ours", "drawn")]
    if not (ours.exists() and all(f.exists() for f in files)):
        with tempfile.TemporaryDirectory() as tmp:
            photo = Path(tmp) / "photo.png"
            cv2.imwrite(str(photo), cv2.cvtColor(first_frame(clip), cv2.COLOR_RGB2BGR))
            drawn = vt.generate(photo, ours, audio=clip, progress=False).landmarks.landmarks
        np.save(files[0], track_video(clip, progress=False)[0])
        np.save(files[1], track_video(ours, progress=False)[0])
        np.save(files[2], drawn)
    return ours, *(np.load(f) for f in files)


def tile(frame: np.ndarray, k: np.ndarray, kind: str) -> np.ndarray:
    size, width_iod, part = TILES[kind]
    width = width_iod * float(interocular(k))
    centre = k[part].mean(0)
    h = width * size[1] / size[0]
    m = np.float32([[size[0] / width, 0, -(centre[0] - width / 2) * size[0] / width],
                    [0, size[1] / h, -(centre[1] - h / 2) * size[1] / h]])
    return cv2.warpAffine(frame, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _apart(i: int, used: list[int], gap: int) -> bool:
    return all(abs(i - u) >= gap for u in used)


def mouth_pairs(real_k: np.ndarray, ours_k: np.ndarray, per: int, fps: float) -> list[tuple[int, int]]:
    n = min(len(real_k), len(ours_k))
    ra, oa = mouth_aperture(real_k[:n]), mouth_aperture(ours_k[:n])
    ra, oa = np.nan_to_num(ra, nan=-1.0), np.nan_to_num(oa, nan=-1.0)
    opened = ra[ra > OPEN_IOD]
    if not len(opened):
        return []
    gap = max(1, int(APART_S * fps))
    used_r: list[int] = []
    used_o: list[int] = []
    for q in np.quantile(opened, np.linspace(*SPREAD, per)):
        for i in np.argsort(np.abs(ra - q)):
            if not _apart(int(i), used_r, gap):
                continue
            near = [int(j) for j in np.argsort(np.abs(oa - ra[i]))
                    if abs(oa[j] - ra[i]) <= MATCH_IOD and _apart(int(j), used_o, gap)]
            if near:
                used_r.append(int(i))
                used_o.append(near[0])
                break
    return list(zip(used_r, used_o))


def eye_pairs(real_k: np.ndarray, drawn: np.ndarray, per: int, fps: float) -> list[tuple[int, int]]:
    n = min(len(real_k), len(drawn))
    re_, de = np.nan_to_num(eye_opening(real_k[:n]), nan=9.0), eye_opening(drawn[:n])
    gap = max(1, int(EYE_APART_S * fps))

    def pick(e: np.ndarray) -> list[int]:             # the most closed frames of blinks, not of an open eye
        return [int(i) for i in np.argsort(e)[: 10 * per] if e[i] < BLINK_SHARE * np.median(e)]
    used_r: list[int] = []
    used_o: list[int] = []
    for i in pick(re_):
        if len(used_r) < per and _apart(int(i), used_r, gap):
            used_r.append(int(i))
    for j in pick(de):
        if len(used_o) < len(used_r) and _apart(int(j), used_o, gap):
            used_o.append(int(j))
    return list(zip(used_r, used_o))


def frames_at(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    return {i: f for i, f in enumerate(read_frames(path)) if i in wanted}


def make(out: Path, kind: str, pairs: int, seed: int, clips: list[Path]) -> None:
    rng = random.Random(seed)
    cache = out / "resynthesis"
    cache.mkdir(parents=True, exist_ok=True)
    vt = Ventriloquist()
    per = -(-pairs // len(clips)) + (1 if kind == "mouth" else 0)
    found = []
    for clip in clips:
        ours, real_k, ours_k, drawn = resynthesised(clip, cache, vt)
        fps = float(video_info(clip)["fps"]) or 25.0
        got = mouth_pairs(real_k, ours_k, per, fps) if kind == "mouth" else eye_pairs(real_k, drawn, per, fps)
        found += [(clip, ours, real_k, ours_k, i, j) for i, j in got]
        print(f"{clip.stem}: {len(got)} pairs", flush=True)
    rng.shuffle(found)
    found = found[:pairs]
    key = {}
    images = []
    for clip in sorted({f[0] for f in found}):
        mine = [f for f in found if f[0] == clip]
        real_f = frames_at(clip, {f[4] for f in mine})
        ours_f = frames_at(mine[0][1], {f[5] for f in mine})
        for _, _, real_k, ours_k, i, j in mine:
            images.append((clip.stem, i, j, tile(real_f[i], real_k[i], kind), tile(ours_f[j], ours_k[j], kind)))
    rng.shuffle(images)
    gap = np.full((TILES[kind][0][1], 12, 3), 255, np.uint8)
    for n, (name, i, j, real_t, ours_t) in enumerate(images):
        left = rng.random() < 0.5
        im = np.hstack([ours_t, gap, real_t] if left else [real_t, gap, ours_t])
        cv2.imwrite(str(out / f"pair_{n:02d}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
        key[f"pair_{n:02d}"] = {"ours": "A" if left else "B", "clip": name, "real_frame": i, "our_frame": j}
    (out / "key.json").write_text(json.dumps(key, indent=1))
    print(f"wrote {len(images)} {kind} pairs to {out} (key: {out / 'key.json'}; give the judge the PNGs only)")


def score(key_path: Path, answers: Path) -> None:
    key = json.loads(key_path.read_text())
    said = {m.group(1): m.group(2).upper() for m in re.finditer(r"(pair_\d+)\W+([ABab])\b", answers.read_text())}
    right = sum(said.get(p) == v["ours"] for p, v in key.items())
    print(f"the judge picked ours in {right} of {len(key)} pairs ({100 * right / len(key):.0f} %; 50 % is chance), "
          f"answered {len(said)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out", type=Path)
    m.add_argument("clips", nargs="*", type=Path, help="talking videos (default: the wild set)")
    m.add_argument("--kind", choices=sorted(TILES), default="mouth")
    m.add_argument("--pairs", type=int, default=40)
    m.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score")
    s.add_argument("key", type=Path)
    s.add_argument("answers", type=Path)
    a = ap.parse_args()
    if a.cmd == "make":
        clips = a.clips or sorted(WILD.glob("*.mp4"))
        if not clips:
            raise SystemExit(f"no clips: {WILD} is missing; pass talking videos")
        make(a.out, a.kind, a.pairs, a.seed, clips)
    else:
        score(a.key, a.answers)


if __name__ == "__main__":
    main()
