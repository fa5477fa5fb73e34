"""Landmark sequences: the file format the tool exports and reads, and time resampling.

A sequence holds 68 points per frame in image pixels, the frame rate and the frame size
it refers to. ``.npz`` keys: ``landmarks`` (T, 68, 2) float32, ``fps``, ``width``,
``height``; ``.json`` has the same fields plus ``frame_count``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import FPS_RANGE
from ..errors import InputError, existing_file
from ..face.align import normalise, reference_shape, relative_pose


@dataclass
class LandmarkSequence:
    landmarks: np.ndarray        # (T, 68, 2) image pixels
    fps: float
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.landmarks)

    @property
    def duration(self) -> float:
        return len(self) / self.fps

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.suffix == ".json":
            path.write_text(json.dumps({
                "fps": self.fps, "frame_count": len(self), "width": self.width, "height": self.height,
                "landmarks": np.round(self.landmarks.astype(float), 2).tolist()}))
        elif path.suffix == ".npz":
            np.savez_compressed(path, landmarks=self.landmarks.astype(np.float32), fps=self.fps,
                                width=self.width, height=self.height)
        else:
            raise InputError(f"cannot export landmarks to {path}; use a .npz or .json file name")

    @classmethod
    def load(cls, path: str | Path) -> "LandmarkSequence":
        path = existing_file(path, "landmark file", "export one with --export-landmarks")
        try:
            if path.suffix == ".json":
                d = json.loads(path.read_text())
            else:
                with np.load(path) as z:
                    d = {k: z[k] for k in z.files}
            k = np.asarray(d["landmarks"], dtype=np.float32)
            seq = cls(k, float(d["fps"]), int(d["width"]), int(d["height"]))
        except Exception as exc:
            raise InputError(f"{path} is not a landmark sequence ({type(exc).__name__}); "
                             "it needs landmarks (T, 68, 2), fps, width and height") from None
        if (k.ndim != 3 or k.shape[1:] != (68, 2) or len(k) == 0 or not np.all(np.isfinite(k))
                or not (np.isfinite(seq.fps) and seq.fps > 0) or seq.width < 1 or seq.height < 1):
            raise InputError(f"{path} does not hold a valid (T, 68, 2) landmark sequence with a positive fps "
                             "and frame size")
        if not FPS_RANGE[0] <= seq.fps <= FPS_RANGE[1]:
            raise InputError(f"{path} says {seq.fps:g} fps; a landmark sequence must run at {FPS_RANGE[0]:g}-"
                             f"{FPS_RANGE[1]:g} fps (fix its fps field)")
        return seq


def resample(x: np.ndarray, fps_in: float, fps_out: float, n_out: int) -> np.ndarray:
    """Linear resampling in time of (T, ...) to ``n_out`` frames at ``fps_out`` (holds the last frame)."""
    t_in = np.arange(len(x)) / fps_in
    t_out = np.arange(n_out) / fps_out
    flat = x.reshape(len(x), -1)
    out = np.empty((n_out, flat.shape[1]), dtype=np.float64)
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t_out, t_in, flat[:, j])
    return out.reshape((n_out,) + x.shape[1:])


def smooth(x: np.ndarray, passes: int = 1) -> np.ndarray:
    """A light [1, 2, 1] / 4 temporal filter that removes detector jitter but keeps lip closures."""
    y = np.asarray(x, dtype=np.float64)
    for _ in range(passes):
        if len(y) < 3:
            break
        y = np.concatenate([y[:1], (y[:-2] + 2 * y[1:-1] + y[2:]) / 4, y[-1:]])
    return y


@dataclass
class Motion:
    """Face-independent motion: normalised shapes, their rest shape, and the relative head pose."""

    shapes: np.ndarray      # (T, 68, 2) canonical space
    rest: np.ndarray        # (68, 2) canonical space
    pose: np.ndarray        # (T, 4) relative head pose
    fps: float

    @classmethod
    def from_sequence(cls, seq: LandmarkSequence) -> "Motion":
        kn, m = normalise(seq.landmarks)
        return cls(smooth(kn), reference_shape(kn), smooth(relative_pose(m)), seq.fps)

    def retimed(self, fps: float, n_frames: int) -> "Motion":
        """The same motion sampled at ``fps`` for ``n_frames`` frames."""
        return Motion(resample(self.shapes, self.fps, fps, n_frames), self.rest,
                      resample(self.pose, self.fps, fps, n_frames), fps)


def rest_faces(clips: list[dict]) -> dict[str, np.ndarray]:
    """Each speaker's rest face in canonical space: the mean of their neutral clips, else of all their clips.

    Deformations measured from a person's own rest face carry expression and speech but not
    identity, which is what lets a handful of actors teach expressions for any face.
    """
    by_speaker: dict[str, list[np.ndarray]] = {}
    neutral: dict[str, list[np.ndarray]] = {}
    for c in clips:
        spk = speaker_key(c)
        by_speaker.setdefault(spk, []).append(c["shapes"].mean(axis=0))
        if c.get("emotion") == "neutral":
            neutral.setdefault(spk, []).append(c["shapes"].mean(axis=0))
    return {s: np.mean(neutral.get(s) or v, axis=0) for s, v in by_speaker.items()}


def speaker_key(clip: dict) -> str:
    """``corpus/speaker``: speaker ids repeat across corpora."""
    return f"{clip['corpus']}/{clip['speaker']}"


class RestDeformations(Sequence):
    """:func:`rest_deformations` of ``clips``, each computed when it is read: a training set kept on disk
    (train/store.py) is then never held whole. ``rest``: the speakers' rest faces, if already known."""

    def __init__(self, clips: Sequence[dict], rest: dict[str, np.ndarray] | None = None) -> None:
        self.clips = clips
        # one pass over the clips (each read from disk, for a store): speakers and per-clip mean faces
        summary = [{"corpus": c["corpus"], "speaker": c["speaker"], "emotion": c.get("emotion"),
                    "shapes": c["shapes"].mean(axis=0, keepdims=True)} for c in clips]
        self.speakers = [speaker_key(c) for c in summary]
        self.rest = rest_faces(summary) if rest is None else rest

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> np.ndarray:
        return (self.clips[i]["shapes"] - self.rest[self.speakers[i]]).astype(np.float32)


def rest_deformations(clips: list[dict]) -> list[np.ndarray]:
    """Each clip's canonical shapes (T, 68, 2) minus its speaker's rest face (see :func:`rest_faces`)."""
    rest = rest_faces(clips)
    return [(c["shapes"] - rest[speaker_key(c)]).astype(np.float32) for c in clips]
