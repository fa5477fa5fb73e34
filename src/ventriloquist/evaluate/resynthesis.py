"""Re-synthesis: each real talking video re-made from its first frame and its own audio.

What users feel is how the lips do on a face and a voice the models never saw. Here the
first frame of a real clip is the photo and the clip's own audio is the speech; the
generated video is compared with the real one through landmarks re-detected on both (the
way ``shared/tools/measure.py follow`` judges a video from the outside). The same clip's
real landmarks rendered through our renderer onto the same photo give the ceiling: what
a perfect motion model would score after rendering and re-detection. The opening bound is the
real mouth reduced to what its opening predicts: the best that lips following the opening
exactly could score on mouth LMD (:func:`.metrics.opening_bound`).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..config import FPS, MEL_PER_FRAME, GenerateConfig, RenderConfig
from ..face import topology
from . import metrics, plots

IDENTITY_EVERY = 5            # identity and face presence are checked on every 5th generated frame
FOLLOWABLE_R = 0.15           # a real mouth whose opening follows its own speech energy less than this (Pearson r,
                              # lag 0) is not followable: dubbed or mis-synced footage (real talking clips: 0.2-0.45)
CLOSED_APERTURE = 0.03        # an inner-lip opening (IOD) below this counts as closed lips


def first_frame(source: str | Path) -> np.ndarray:
    """The first decodable frame of a video (RGB uint8): the photo a user would give."""
    from ..video import read_frames
    for frame in read_frames(source):
        return frame
    raise ValueError(f"{source} has no video frames")


def closing_frames(artic: np.ndarray | None, n: int) -> np.ndarray | None:
    """Frames (T,) where the phone recogniser hears the lips closed: /m b p/ or silence."""
    if artic is None:
        return None
    from ..phonetics import ARTICULATORS
    rows = artic[: n * MEL_PER_FRAME]
    closed = np.maximum(rows[:, ARTICULATORS.index("bilabial")], rows[:, ARTICULATORS.index("silence")])
    out = np.zeros(n, bool)
    out[: len(rows) // MEL_PER_FRAME] = closed[: len(rows) // MEL_PER_FRAME * MEL_PER_FRAME].reshape(-1, MEL_PER_FRAME).max(1) > 0.5
    return out


def loud_frames(energy: np.ndarray | None, n: int) -> np.ndarray | None:
    """Frames (T,) of loud speech: speech energy above the median of the clip's voiced frames."""
    if energy is None or not len(energy):
        return None
    e = np.asarray(energy[:n], np.float64)
    voiced = e > e.min() + 0.1 * (e.max() - e.min())
    if voiced.sum() < 2:
        return None
    out = np.zeros(n, bool)
    out[: len(e)] = e > np.median(e[voiced])
    return out


def followable(real: np.ndarray, energy: np.ndarray | None) -> float | None:
    """Pearson r at lag 0 of the real mouth's opening with its own speech energy (None without energy)."""
    if energy is None:
        return None
    n = min(len(real), len(energy))
    return float(metrics.sync(topology.mouth_aperture(np.asarray(real[:n], np.float64)), energy[:n])["corr0"])


def scores(gen: np.ndarray, real: np.ndarray, closing: np.ndarray | None = None,
           loud: np.ndarray | None = None) -> dict:
    """How a landmark sequence's mouth (T, 68, 2; pixels or canonical) follows the real one's: opening
    (follow r, amplitude), width variation (ours ÷ real), LMD; with ``closing`` (frames heard as /m b p/ or
    silence) also how far it stays open there beyond the real mouth, and with ``loud`` (frames of loud speech)
    the share of them with closed lips (real speakers close in some)."""
    n = min(len(gen), len(real))
    g, r = np.asarray(gen[:n], np.float64), np.asarray(real[:n], np.float64)
    a_gen, a_real = topology.mouth_aperture(g), topology.mouth_aperture(r)
    f = metrics.follow(a_gen, a_real)
    static = metrics.lmd_relative(np.repeat(np.asarray(real[:1]), n, axis=0), real[:n])
    lmd = metrics.lmd_relative(gen[:n], real[:n])
    out = {"follow_r": f["best_corr"], "follow_lag": f["best_lag"], "amplitude_ratio": f["amplitude_ratio"],
           "width_ratio": float(topology.mouth_width(g).std() / max(topology.mouth_width(r).std(), 1e-9)),
           "mouth_lmd_per_frame": lmd, "static_lmd_per_frame": static, "lmd_vs_static": lmd / max(static, 1e-9)}
    if closing is not None and closing[:n].any():
        sel = closing[:n]
        out["closure_excess"] = float(np.median(a_gen[sel]) - np.median(a_real[sel]))
    if loud is not None and loud[:n].any():
        sel = loud[:n]
        out["loud_closed"] = float((a_gen[sel] < CLOSED_APERTURE).mean())
        out["loud_closed_real"] = float((a_real[sel] < CLOSED_APERTURE).mean())
    return out


def _track(path: Path) -> np.ndarray:
    from ..face.track import track_video
    k, _, _ = track_video(path, progress=False)
    return k


def render_real(vt, photo: np.ndarray, photo_path: Path, landmarks: np.ndarray, fps: float, out: Path,
                source: str = "") -> None:
    """``out``: the photo (``photo_path``, its pixels ``photo``) moved by a video's real ``landmarks`` (T, 68, 2
    pixels, at ``fps``), retargeted as a driving video's are and rendered by ``vt`` (a Ventriloquist): the
    re-synthesis ceiling, what our renderer shows of real motion."""
    from ..face.align import Retargeter
    from ..face.detect import face_landmarks
    from ..motion.sequence import LandmarkSequence, Motion
    from ..render.framing import make_canvas
    k0 = face_landmarks(photo, source or str(photo_path))
    canvas = make_canvas(photo, k0, vt.cfg.render)
    m = Motion.from_sequence(LandmarkSequence(landmarks, fps, 1, 1))
    real_px = Retargeter(canvas.map(k0))(m.shapes, m.rest, m.pose).astype(np.float32)
    npz = out.with_suffix(".npz")
    LandmarkSequence(real_px, fps, *canvas.size).save(npz)
    vt.generate(photo_path, out, landmarks=npz, progress=False)


def resynthesise_clip(c: dict, speech, tmp: Path, out: Path | None = None, baselines: dict | None = None) -> dict:
    """One clip's row: ours rendered and re-detected, the real landmarks rendered (the ceiling), and
    any canonical ``baselines`` ({name: shapes (T, 68, 2)}) scored against the real canonical shapes."""
    import cv2

    from ..pipeline import Ventriloquist
    from ..video import read_frames
    photo = first_frame(c["source"])
    photo_path = tmp / "photo.png"
    cv2.imwrite(str(photo_path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    # the head stays still: our turns are not the person's, and a turn moves the mouth against the eyes,
    # which per-frame alignment (unlike an in-plane sway) cannot take out; this compares lips
    cfg = GenerateConfig(render=RenderConfig(size=min(512, max(photo.shape[:2]))), seed=speech.seed,
                         expression=speech.strength if speech.emotion else 0.0, articulation=speech.articulation,
                         head_motion=0.0)
    vt = Ventriloquist(cfg, speech_motion=speech)
    ours_mp4 = tmp / "ours.mp4"
    res = vt.generate(photo_path, ours_mp4, audio=c["source"], progress=False)
    k_ours = _track(ours_mp4)
    up_mp4 = tmp / "upper.mp4"
    render_real(vt, photo, photo_path, c["landmarks"], FPS, up_mp4, str(c["source"]))
    k_up = _track(up_mp4)
    real = c["landmarks"]
    frames = list(read_frames(ours_mp4))[::IDENTITY_EVERY]
    ident = metrics.identity_distance(photo, frames)
    closing = closing_frames(c.get("artic"), len(real))
    loud = loud_frames(c.get("energy"), len(real))
    own = followable(real, c.get("energy"))
    row = {"clip": Path(str(c["source"])).name, "frames": int(min(len(k_ours), len(real))),
           "own_sync_r": own, "followable": own is None or own >= FOLLOWABLE_R,
           "ours": scores(k_ours, real, closing, loud), "upper_bound": scores(k_up, real, closing, loud),
           "opening_bound": scores(metrics.opening_bound(real), real, closing, loud),
           "identity_mean": ident["mean"], "identity_max": ident["max"], "face_lost_share": ident["no_face"],
           "ours_landmarks": scores(res.landmarks.landmarks, real, closing, loud)}
    for name, shapes in (baselines or {}).items():
        row[name] = scores(shapes, c["shapes"], closing, loud)
    if out is not None:
        n = row["frames"]
        tag = Path(row["clip"]).stem
        plots.line_plot(out / f"resynthesis_{tag}.png",
                        {"real mouth": topology.mouth_aperture(real[:n]),
                         "ours, re-detected": topology.mouth_aperture(k_ours[:n]),
                         "real landmarks rendered, re-detected": topology.mouth_aperture(k_up[:n])},
                        x=np.arange(n) / FPS, title=f"{row['clip']}: mouth opening, real vs re-synthesised",
                        xlabel="s", ylabel="inner-lip opening / IOD")
    return row


def aggregate(rows: list[dict]) -> dict:
    """Medians over the followable clips of every method's scores, plus identity and face-presence extremes
    (over every clip); ``not_followable`` lists the clips left out of the medians."""
    if not rows:
        return {}
    every = rows
    left_out = [r["clip"] for r in rows if not r.get("followable", True)]
    rows = [r for r in rows if r.get("followable", True)] or rows
    methods = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    out = {m: {k: float(np.nanmedian([r[m].get(k, np.nan) for r in rows]))
               for k in dict.fromkeys(k for r in rows for k in r[m])} for m in methods}
    out["identity_max"] = float(np.nanmax([r["identity_max"] for r in every]))
    out["face_lost_share_max"] = float(max(r["face_lost_share"] for r in every))
    out["not_followable"] = left_out
    return out


def resynthesis(clips: list[dict], speech, out: Path | None, baselines=None, progress: bool = True) -> dict:
    """Rows for every clip (see :func:`resynthesise_clip`) and their medians.

    ``baselines(c)`` may return {name: canonical shapes} per clip (the energy jaw, the ridge).
    """
    from ..train.common import progress as bar
    rows = []
    for c in bar(clips, "re-synthesis", enabled=progress):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(resynthesise_clip(c, speech, Path(tmp), out, baselines(c) if baselines else None))
    return {"clips": rows, "median": aggregate(rows)}
