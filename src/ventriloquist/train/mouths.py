"""Stage ``mouths``: the library of real mouth interiors the renderer paints between opening lips.

Only clips whose licence allows shipping derived data are read (GRID, CC BY 4.0: ``grid_s1`` and
``grid_others``; a licence that says research use is skipped). For each speaker every frame's 68
landmarks are tracked and the opening between the inner lips is cut out in mouth coordinates
(corner to corner x upper to lower lip, :func:`ventriloquist.render.mouth.interior_maps`); per bin
of opening the sharpest frame whose lips hold still is kept. The speaker's eye whites, lips and
teeth are measured too, so the renderer can match an interior to any photo's light. The result is
deterministic (the seed is unused) and small: ``--publish`` installs it as the ``mouths`` weights.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..face.topology import INNER_LIPS, interocular
from ..render.mouth import S_SAMPLES, V_SAMPLES, cut_interior, eye_whites, inner_gaps, lip_colour, mouth_frame
from ..render.mouth import trim_lips as trim_interior
from . import TrainOptions
from .common import load_config, progress, write_json

RECIPE = "ventriloquist train mouths --config configs/mouths.toml --publish"
VERSION = "1"


@dataclass
class MouthsConfig:
    licence: str = "CC BY 4.0"        # a clip is used only where its licence names this ...
    exclude: str = "research"         # ... and does not say this (research-only footage is never shipped)
    s1_clips: int = 120               # GRID s1 clips read (the first of its train split, by name); 0 for all
    bin_width: float = 0.03           # openings are binned by inner gap over inner mouth width ...
    max_gap: float = 0.6              # ... up to this
    still: float = 0.02               # lips whose landmarks jump more than this (inter-ocular units) are not kept
    tint: float = 0.05                # nor frames whose light's colour strays this far from the speaker's usual
    closed: float = 0.05              # frames opened less than this measure the lips and the mouth's width
    teeth_share: float = 0.15         # the brightest share of the open interiors is taken for the teeth
    lip_rows: float = 0.3             # at most this share of an interior's rows, each side, may be cut as lip


def clips(data: Path, cfg: MouthsConfig, smoke: bool = False) -> list[dict]:
    """The talking-face clips of ``data`` that may give shipped data: path, speaker, licence."""
    root = data / "talking_face"
    rows: list[dict] = []
    grid = root / "clips.csv"
    if grid.is_file():                                   # GRID s1 (CC BY 4.0, see the data README)
        with open(grid, newline="") as f:
            s1 = sorted((r for r in csv.DictReader(f) if r.get("split") == "train"), key=lambda r: r["path"])
        s1 = s1[: cfg.s1_clips] if cfg.s1_clips else s1
        rows += [{"path": root / r["path"], "speaker": r["speaker"], "licence": "GRID corpus CC BY 4.0"} for r in s1]
    for listing in sorted(root.glob("*/clips.csv")):
        with open(listing, newline="") as f:
            for r in csv.DictReader(f):
                licence = r.get("license") or r.get("licence") or ""
                if cfg.licence in licence and cfg.exclude not in licence.lower():
                    rows.append({"path": listing.parent / r["path"], "speaker": r["speaker"], "licence": licence})
    rows = [r for r in rows if Path(r["path"]).is_file()]
    if smoke:
        speakers = sorted({r["speaker"] for r in rows})[:2]
        rows = [r for r in rows if r["speaker"] in speakers][:4]
    if not rows:
        raise InputError(f"no talking-face clips with a {cfg.licence} licence under {root}; pass --data pointing at "
                         "a data root such as ../shared/data that holds talking_face/clips.csv (see docs/DATA.md)")
    return rows


def speaker_frames(paths: list[Path]) -> list[dict]:
    """Per frame of a speaker's clips: its interior texture, openings, width, steadiness and colours."""
    from ..face.track import track_video
    from ..video import read_frames
    out = []
    for path in paths:
        k_all, _, _ = track_video(path, progress=False, carry_box=False)     # as the shipped library was made
        iod = interocular(k_all)
        lips = k_all[:, INNER_LIPS]
        jump = np.zeros(len(k_all))
        if len(k_all) > 2:
            jump[1:-1] = np.linalg.norm(lips[2:] + lips[:-2] - 2 * lips[1:-1], axis=2).mean(1) / iod[1:-1]
        for i, frame in enumerate(read_frames(path)):
            if i >= len(k_all):
                break
            k = k_all[i].astype(np.float64)
            tex, profile, sharp = cut_interior(frame, k)
            out.append({"texture": tex, "gaps": inner_gaps(k), "profile": profile, "jump": float(jump[i]),
                        "sharp": sharp, "width": mouth_frame(k)[3] / float(iod[i]),
                        "balance": _balance(frame), "whites": eye_whites(frame, k) if i % 5 == 0 else None,
                        "lips": lip_colour(frame, k)})
    return out


def select(frames: list[dict], cfg: MouthsConfig) -> list[dict]:
    """Per bin of opening, the sharpest frame whose lips hold still (none where the bin is empty)."""
    kept = []
    edges = np.arange(0.0, cfg.max_gap + 1e-9, cfg.bin_width)
    gaps = np.array([f["gaps"].mean() for f in frames])
    balance = np.array([f["balance"] for f in frames])
    off = np.abs(balance - np.median(balance, axis=0)).max(1)       # a flash of coloured light, a codec's tint
    ok = np.array([f["jump"] <= cfg.still and np.all(f["gaps"] >= 0) for f in frames]) & (off <= cfg.tint)
    for lo, hi in zip(edges[:-1], edges[1:]):
        idx = np.flatnonzero(ok & (gaps >= lo) & (gaps < hi))
        if len(idx):
            kept.append(frames[int(idx[np.argmax([frames[i]["sharp"] for i in idx])])])
    return kept


def trim_lips(frame: dict, lips: np.ndarray, most: float) -> dict:
    """The frame's interior without the rows of lip at its top and bottom
    (:func:`~ventriloquist.render.mouth.trim_lips`); the openings shrink by the share kept."""
    texture, keep = trim_interior(frame["texture"], lips, most)
    return {**frame, "texture": texture, "gaps": frame["gaps"] * keep, "profile": frame["profile"] * keep}


def _balance(texture: np.ndarray) -> np.ndarray:
    """Red and blue over green of an image's mean colour: the light's colour balance."""
    r, g, b = texture.reshape(-1, 3).astype(np.float64).mean(0) + 1.0
    return np.array([r / g, b / g])


def build(data: Path, cfg: MouthsConfig, smoke: bool = False) -> dict:
    """The library as a checkpoint dict (numpy arrays), from the clips of ``data``."""
    rows = clips(data, cfg, smoke)
    speakers = sorted({r["speaker"] for r in rows})
    textures, gaps, profiles, who, sclera, lips, teeth, width, quality = [], [], [], [], [], [], [], [], []
    for m, name in enumerate(progress(speakers, desc="speakers")):
        frames = speaker_frames([Path(r["path"]) for r in rows if r["speaker"] == name])
        kept = select(frames, cfg)
        if not kept:
            raise InputError(f"no usable mouth frames for speaker {name}; check its clips show one face clearly")
        closed = [f for f in frames if f["gaps"].mean() < cfg.closed] or frames
        whites = [f["whites"] for f in frames if f["whites"] is not None]
        lip = [f["lips"] for f in closed if f["lips"] is not None]
        kept = [trim_lips(f, np.median(lip, axis=0), cfg.lip_rows) for f in kept]
        opened = np.concatenate([f["texture"].reshape(-1, 3) for f in kept if f["gaps"].mean() >= 0.15] or
                                [kept[-1]["texture"].reshape(-1, 3)]).astype(np.float64)
        luma = opened.mean(1)
        bright = opened[luma >= np.quantile(luma, 1 - cfg.teeth_share)]
        textures += [f["texture"] for f in kept]
        gaps += [f["gaps"] for f in kept]
        profiles += [f["profile"] for f in kept]
        who += [m] * len(kept)
        sclera.append(np.median(whites, axis=0) if whites else np.median(bright, axis=0))
        lips.append(np.median(lip, axis=0))
        teeth.append(np.median(bright, axis=0))
        width.append(float(np.median([f["width"] for f in closed])))
        # how much an interior of this speaker shows: sharpness of the open ones times the widest opening
        wide = [f for f in kept if f["gaps"].mean() >= cfg.closed] or kept
        quality.append(float(np.mean([f["sharp"] for f in wide]) * max(f["gaps"].mean() for f in kept)))
    return {"textures": np.stack(textures).astype(np.uint8), "gaps": np.stack(gaps).astype(np.float32),
            "profile": np.stack(profiles).astype(np.float32), "speaker": np.array(who, np.int64),
            "speakers": speakers, "sclera": np.stack(sclera).astype(np.float32),
            "lips": np.stack(lips).astype(np.float32), "teeth": np.stack(teeth).astype(np.float32),
            "width": np.array(width, np.float32), "quality": np.array(quality, np.float32), "config": asdict(cfg),
            "sources": [f"{Path(r['path']).parent.name}/{Path(r['path']).name}: {r['licence']}" for r in rows]}


def contact_sheet(library: dict, path: Path) -> Path:
    """One row per speaker of its interiors, from closed to wide open (3x): for looking at."""
    rows = []
    width = max(int(np.sum(library["speaker"] == m)) for m in range(len(library["speakers"])))
    for m in range(len(library["speakers"])):
        tiles = [cv2.resize(t, (3 * S_SAMPLES, 3 * V_SAMPLES), interpolation=cv2.INTER_CUBIC)
                 for t in library["textures"][library["speaker"] == m]]
        tiles += [np.zeros_like(tiles[0])] * (width - len(tiles))
        rows.append(np.hstack(tiles))
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return path


def run(opts: TrainOptions) -> dict:
    cfg = load_config(MouthsConfig, opts.config)
    out = Path(opts.out) / "mouths"
    out.mkdir(parents=True, exist_ok=True)
    library = build(Path(opts.data), cfg, opts.smoke)
    metrics = {"interiors": int(len(library["textures"])), "speakers": library["speakers"],
               "per_speaker": [int(np.sum(library["speaker"] == m)) for m in range(len(library["speakers"]))],
               "sheet": str(contact_sheet(library, out / "library.png"))}
    import torch
    checkpoint = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in library.items()}
    torch.save(checkpoint, out / "mouths.pt")
    if opts.publish:
        from ..weights import publish
        metrics["published"] = str(publish("mouths", checkpoint, VERSION, RECIPE))
    write_json(out / "metrics.json", metrics)
    return metrics
