"""Emotion chosen by the user: one emotion for the whole video, or a timeline of time ranges.

A timeline is a JSON list (or ``{"segments": [...]}``) or a CSV file of rows ``start, end`` (seconds)
with either an ``emotion`` (a name, or ``auto`` for what the voice says) or one column per emotion
(a distribution), and an optional ``intensity``. Outside every range the video's own ``--emotion``
holds. Changes are eased over TRANSITION_S so the face never jumps. ``--export-emotions`` writes the
per-frame distribution in this same format, so an export is itself a timeline.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import FPS, MAX_EXPRESSION
from ..errors import InputError, existing_file, shown
from .vocabulary import AUTO, EMOTION_CHOICES, EMOTIONS, N_EMOTIONS, emotion_weights, to_index

TRANSITION_S = 0.8           # a change of emotion or intensity is eased over this long (a ramp centred on it;
                             # G 4.1's emotions lie further apart, and over 0.6 s its happy-to-angry switch stepped
                             # beyond the face's own motion)
MAX_ENTRIES = 100_000        # a timeline longer than this is refused (an hour of a per-frame export is 90,000)
MAX_SECONDS = 86_400.0       # times past a day mean "to the end"


@dataclass(frozen=True)
class Segment:
    """From ``start`` to ``end`` seconds: ``weights`` over EMOTIONS (None: the voice's own), at ``intensity``."""

    start: float
    end: float
    weights: tuple[float, ...] | None
    intensity: float = 1.0


def _number(value, name: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name} must be a number, not {shown(value)}{where}") from None
    if not np.isfinite(v):
        raise InputError(f"{name} must be a finite number{where}")
    return v


def _segment(row: dict, where: str) -> Segment:
    row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    if "start" not in row or "end" not in row:
        raise InputError(f"each entry needs start and end (seconds){where}")
    start, end = _number(row["start"], "start", where), _number(row["end"], "end", where)
    if not 0 <= start < end:
        raise InputError(f"start {start:g} and end {end:g} must satisfy 0 <= start < end{where}")
    end = min(end, MAX_SECONDS)                  # "until the end": any later time means the same
    if start >= end:
        raise InputError(f"start {start:g} is later than any speech ({MAX_SECONDS:g} s){where}")
    intensity = row.get("intensity")
    intensity = 1.0 if intensity in (None, "") else _number(intensity, "intensity", where)
    if not 0 <= intensity <= MAX_EXPRESSION:
        raise InputError(f"intensity {intensity:g} is outside 0-{MAX_EXPRESSION:g}{where}")
    emotion = row.get("emotion")
    if isinstance(emotion, dict):
        dist = emotion
    elif emotion not in (None, ""):
        return Segment(start, end, emotion_weights(str(emotion), where), intensity)
    else:
        dist = {e: row[e] for e in EMOTIONS if row.get(e) not in (None, "")}
    if not dist:
        raise InputError(f"each entry needs an emotion (a name, or one value per emotion){where}")
    w = np.zeros(N_EMOTIONS)
    for name, value in dist.items():
        k = to_index(str(name))
        if k is None:
            raise InputError(f"unknown emotion {name!r}{where}; use one of {', '.join(EMOTIONS)}")
        w[k] = _number(value, str(name), where)
    if (w < 0).any() or w.max() <= 0:
        raise InputError(f"emotion weights must be >= 0 and not all 0{where}")
    with np.errstate(over="ignore"):
        total = w.sum()
    if not np.isfinite(total):       # weights near the float limit: scaled down, so their sum is finite
        w = w / w.max()
        total = w.sum()
    return Segment(start, end, tuple((w / total).tolist()), intensity)


def load_timeline(path: str | Path) -> list[Segment]:
    """Segments of a timeline file (.json or .csv), checked; the message names the file and the entry."""
    path = existing_file(path, "emotion timeline", "pass a .json or .csv file (see the README)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read emotion timeline {path} ({exc}); give a UTF-8 .json or .csv file") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"emotion timeline {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        except (RecursionError, ValueError) as exc:      # nested too deep, or an integer of thousands of digits
            raise InputError(f"emotion timeline {path} is not usable JSON ({type(exc).__name__}); "
                             "give a list of {start, end, emotion} objects") from None
        rows = data.get("segments") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(f"emotion timeline {path} must be a list of {{start, end, emotion}} objects")
    elif path.suffix.lower() == ".csv":
        try:
            rows = list(csv.DictReader(text.splitlines()))
        except csv.Error as exc:
            raise InputError(f"emotion timeline {path} is not a readable CSV file ({exc})") from None
    else:
        raise InputError(f"emotion timeline {path} must be a .json or .csv file")
    if not rows:
        raise InputError(f"emotion timeline {path} holds no entries")
    if len(rows) > MAX_ENTRIES:
        raise InputError(f"emotion timeline {path} has {len(rows)} entries, more than {MAX_ENTRIES} (an hour of a "
                         "per-frame export); merge neighbouring entries or split the speech")
    return [_segment(r, f" (entry {i + 1} of {path})") for i, r in enumerate(rows)]


def _eased(x: np.ndarray, step: float) -> np.ndarray:
    """``x`` (T, C) with every change spread so no frame moves more than ``step``: the mean of a forward
    and a backward slew limit, so a jump becomes a ramp centred on it and a track already that smooth
    (an export) is left exactly as it is."""
    fwd, bwd = x.copy(), x.copy()
    for t in range(1, len(x)):
        fwd[t] = np.clip(x[t], fwd[t - 1] - step, fwd[t - 1] + step)
        bwd[-t - 1] = np.clip(x[-t - 1], bwd[-t] - step, bwd[-t] + step)
    return (fwd + bwd) / 2


def emotion_track(n: int, default: str = AUTO, intensity: float = 1.0,
                  segments: list[Segment] | tuple[Segment, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per model frame: the voice's share (T,), chosen weights (T, N_EMOTIONS) and intensity (T,).

    Voice share plus the weights sum to 1 in every frame. A later segment overrides an earlier one
    where they overlap. A change of emotion or intensity is eased over TRANSITION_S, which keeps
    each frame-to-frame step of the face small.
    """
    base = emotion_weights(default, " (--emotion)")
    mix = np.zeros((n, N_EMOTIONS + 2))              # the voice's share, the weights, the intensity
    mix[:, 0] = 1.0 if base is None else 0.0
    if base is not None:
        mix[:, 1:-1] = base
    mix[:, -1] = intensity
    for s in segments:
        a, b = int(round(s.start * FPS)), min(n, int(round(s.end * FPS)))
        if b <= a:
            continue
        mix[a:b, 0] = 1.0 if s.weights is None else 0.0
        mix[a:b, 1:-1] = 0.0 if s.weights is None else np.asarray(s.weights)
        mix[a:b, -1] = s.intensity
    if segments and n > 1:
        mix = _eased(mix, 2.0 / (TRANSITION_S * FPS))
        mix[:, :-1] /= mix[:, :-1].sum(axis=1, keepdims=True)
    return mix[:, 0].astype(np.float32), mix[:, 1:-1].astype(np.float32), mix[:, -1].astype(np.float32)


def export_emotions(path: str | Path, probs: np.ndarray, intensity: np.ndarray, fps: float = FPS) -> Path:
    """Write the per-frame emotion distribution (T, N_EMOTIONS) and intensity (T,) as a timeline file."""
    path = Path(path)
    rows = [{"start": round(i / fps, 4), "end": round((i + 1) / fps, 4),
             **{e: round(float(p), 5) for e, p in zip(EMOTIONS, probs[i])}, "intensity": round(float(intensity[i]), 5)}
            for i in range(len(probs))]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"fps": fps, "emotions": list(EMOTIONS), "segments": [
            {"start": r["start"], "end": r["end"], "emotion": {e: r[e] for e in EMOTIONS}, "intensity": r["intensity"]}
            for r in rows]}, indent=1))
    elif path.suffix.lower() == ".csv":
        with path.open("w", newline="") as f:
            out = csv.DictWriter(f, ["start", "end", *EMOTIONS, "intensity"])
            out.writeheader()
            out.writerows(rows)
    else:
        raise InputError(f"cannot export emotions to {path}; use a .csv or .json file name")
    return path
