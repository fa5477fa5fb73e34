"""Quality metrics for generated landmark sequences, emotion outputs and rendered frames.

All landmark metrics work in the canonical space of :mod:`ventriloquist.face.align`
(eye centres at (-0.5, 0) and (0.5, 0)), so every distance is in units of the
inter-ocular distance (IOD) and is independent of the image size and head pose.
Everything here is plain numpy except the identity/sharpness helpers, which need dlib
and OpenCV. ``docs/METRICS.md`` lists every metric with units and direction.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import numpy as np

from ..config import FPS
from ..face import topology
from ..face.align import apply, normalise, to_canonical

# --- constants -------------------------------------------------------------------------------
EPS = 1e-9
SYNC_MAX_LAG = 6                 # frames searched either side of lag 0 (240 ms at 25 fps)
FOLLOW_MAX_LAG = 3               # generated vs real mouth: lags searched (120 ms), as measure.py follow does
BLINK_CLOSE = 0.6                # eye counts as closing below this fraction of the clip's median opening
BLINK_REOPEN = 0.8               # ... and as open again above this fraction (hysteresis against jitter)
BLINK_MIN_S = 0.04               # shortest closure counted as a blink (one frame at 25 fps)
BLINK_MAX_S = 1.0                # longer closures are eyes shut / looking down, not blinks
REAL_STEP_P99 = 0.12             # IOD: a real face's 99th-percentile largest landmark step per frame (largest_steps), the
                                 # median over 51 real clips (7 wild speakers, 20 GRID s1, 24 MEAD emotion videos; dlib landmarks
                                 # as detected; 0.077 after the pipeline's light smoothing): what an emotion switch must stay under
SAME_PERSON = 0.6                # dlib ResNet descriptor distance below which faces are the same person
MOUTH_BOX_MARGIN = 0.25          # mouth box grows by this fraction of its size on every side
MOUTH_CROP_WIDTH = 96            # mouth crops are resized to this width so sharpness is resolution-free


# --- alignment and landmark distances --------------------------------------------------------
def align_clip(k: np.ndarray, per: str = "frame") -> np.ndarray:
    """Landmarks (T, 68, 2) -> canonical space by eye-centre similarity normalisation.

    ``per="frame"`` (default): k'(t) = S_t k(t), S_t putting frame t's eye centres at
    (±0.5, 0) — distances become multiples of the IOD and head rotation/translation/scale are
    removed frame by frame. Idempotent, so already-normalised sequences (the cache's
    ``shapes``) pass through unchanged. ``per="clip"``: one similarity S for the whole clip,
    from its *mean* eye centres, k'(t) = S k(t) — head motion inside the clip is kept (this
    is the stricter reading used for the issue's reference numbers; see docs/METRICS.md).
    """
    k = np.asarray(k, dtype=np.float64)
    if per == "frame":
        return normalise(k)[0]
    if per == "clip":
        return apply(to_canonical(k.mean(axis=0)), k)
    raise ValueError(f"per must be 'frame' or 'clip', not {per!r}")


def _select(k: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    return k if idx is None else k[..., np.asarray(idx), :]


def _pair(gen: np.ndarray, real: np.ndarray, align: bool | str) -> tuple[np.ndarray, np.ndarray]:
    """Equal-length copies, aligned per frame (True / "frame"), per clip ("clip") or not (False)."""
    gen, real = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    if gen.shape != real.shape:
        n = min(len(gen), len(real))
        gen, real = gen[:n], real[:n]
    if align:
        per = "frame" if align is True else align
        gen, real = align_clip(gen, per), align_clip(real, per)
    return gen, real


def lmd(gen: np.ndarray, real: np.ndarray, idx: np.ndarray | None = None,
        align: bool | str = True) -> float:
    """Landmark distance (IOD units, lower is better).

    LMD = 1/(T·N) Σ_t Σ_{i∈idx} ‖g_i(t) − r_i(t)‖₂ on eye-centre-normalised landmarks
    (``align_clip``; ``align="clip"`` for one transform per clip, False for inputs already
    aligned); ``idx`` picks a group, e.g. ``topology.MOUTH`` (48-67). Sequences of unequal
    length are compared over the shorter one. This absolute form also charges a
    generator for differences in face *shape* (e.g. another person's rest mouth).
    """
    g, r = _pair(gen, real, align)
    return float(np.linalg.norm(_select(g, idx) - _select(r, idx), axis=-1).mean())


def lmd_relative(gen: np.ndarray, real: np.ndarray, idx: np.ndarray | None = topology.MOUTH,
                 align: bool | str = True) -> float:
    """Motion-only landmark distance: the model issue's LMD (IOD units, lower is better).

    Definition (mouth landmarks 48-67 by default): both clips are per-frame similarity-
    normalised by the eye centres (distances in units of inter-ocular distance); each
    sequence has its own temporal mean shape removed and the *real* clip's mean shape r̄
    added back to both, i.e. g̃(t) = g(t) − mean_t g + mean_t r and r̃(t) = r(t); then

        LMD_rel = 1/(T·N) Σ_t Σ_{i∈idx} ‖(g_i(t) − ḡ_i) − (r_i(t) − r̄_i)‖₂ .

    Only motion around each clip's own mean face is compared, so identity/face-shape
    differences cost nothing, and a static face scores the magnitude of the real motion,
    mean ‖r(t) − r̄‖ (the "do nothing" reference).

    "Per clip similarity-normalised" is read by default as each frame of the clip normalised
    by its own eye centres (``align=True``), which removes head motion; ``align="clip"``
    uses one transform per clip and keeps head motion in the real motion (larger numbers,
    ≈ the issue author's reference figures).
    """
    g, r = _pair(gen, real, align)
    g, r = _select(g, idx), _select(r, idx)
    g = g - g.mean(axis=0) + r.mean(axis=0)
    return float(np.linalg.norm(g - r, axis=-1).mean())


# --- audio-visual sync -----------------------------------------------------------------------
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > EPS else 0.0


def lagged_corr(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """Pearson r between x(t + lag) and y(t) over the overlap (positive lag: x happens later)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    if lag >= 0:
        a, b = x[lag:], y[:n - lag]
    else:
        a, b = x[:n + lag], y[-lag:]
    return _pearson(a, b) if len(a) > 2 else 0.0


def sync(aperture: np.ndarray, energy: np.ndarray, max_lag: int = SYNC_MAX_LAG) -> dict:
    """Mouth-opening vs speech-energy sync: r at lag 0, and the best lag and its r (higher r is better).

    r(ℓ) = Pearson( a(t + ℓ), e(t) ) over the overlapping frames, ℓ ∈ [−max_lag, max_lag].
    Sign convention (same as shared/tools/measure.py): **positive lag = the mouth lags
    behind the audio** (a mouth delayed by 3 frames reports lag 3); the ideal is a small
    lag (0..2 frames: lips often move slightly *before* the sound, giving a negative lag).
    """
    a, e = np.asarray(aperture, np.float64), np.asarray(energy, np.float64)
    cs = {lag: lagged_corr(a, e, lag) for lag in range(-max_lag, max_lag + 1)}
    best = max(cs, key=lambda k: (cs[k], -abs(k)))
    return {"corr0": cs[0], "best_lag": int(best), "best_corr": cs[best]}


def follow(gen_aperture: np.ndarray, real_aperture: np.ndarray, max_lag: int = FOLLOW_MAX_LAG) -> dict:
    """How a generated mouth opening follows the real one (same definitions as ``measure.py follow``).

    ``best_corr`` = max over ℓ ∈ [−max_lag, max_lag] of Pearson( a_real(t + ℓ), a_gen(t) ), ``best_lag``
    its ℓ (positive: the real mouth moves later than ours); ``amplitude_ratio`` = std(a_gen) / std(a_real):
    1 = as wide a range as the real person's, < 1 = under-articulated.
    """
    g, r = np.asarray(gen_aperture, np.float64), np.asarray(real_aperture, np.float64)
    n = min(len(g), len(r))
    g, r = g[:n], r[:n]
    cs = {lag: lagged_corr(r, g, lag) for lag in range(-max_lag, max_lag + 1)}
    best = max(cs, key=lambda k: (cs[k], -abs(k)))
    return {"corr0": cs[0], "best_corr": cs[best], "best_lag": int(best),
            "amplitude_ratio": float(g.std() / max(r.std(), EPS))}


def opening_bound(real: np.ndarray) -> np.ndarray:
    """The real clip (T, 68, 2) with its mouth reduced to what its opening alone predicts.

    Each mouth coordinate (per-frame eye-aligned) is replaced by its least-squares line in the
    real inner-lip opening a(t), fitted on the clip itself: a mouth that opens and closes exactly
    as the real one, in the one shape per opening that suits this clip best. Its ``lmd_relative``
    is what lips that follow the opening perfectly could reach at best; what is left over is
    width, corners and asymmetry (smiles, a head turn), which speech hardly says. Canonical out.
    """
    k = align_clip(real)
    if len(k) < 2:
        return k
    a = topology.mouth_aperture(k)
    x = np.stack([np.ones_like(a), a - a.mean()], axis=1)                  # (T, 2)
    m = k[:, topology.MOUTH].reshape(len(k), -1)
    coef, *_ = np.linalg.lstsq(x, m, rcond=None)
    out = k.copy()
    out[:, topology.MOUTH] = (x @ coef).reshape(len(k), -1, 2)
    return out


def aperture_corr(gen: np.ndarray, real: np.ndarray) -> float:
    """Pearson r of mouth opening (``topology.mouth_aperture``) generated vs real, frame by frame.

    r = Pearson( ap(g(t)), ap(r(t)) ); 1 = the mouth opens and closes exactly when the real
    one does (scale-free: an under-articulated mouth can still score 1). Higher is better.
    """
    n = min(len(gen), len(real))
    return _pearson(topology.mouth_aperture(np.asarray(gen[:n], np.float64)),
                    topology.mouth_aperture(np.asarray(real[:n], np.float64)))


# --- motion statistics -----------------------------------------------------------------------
def deformations(k: np.ndarray, mean_face: np.ndarray | None = None) -> np.ndarray:
    """δk(t) = align_clip(k)(t) − mean face (the clip's temporal mean unless one is given)."""
    kn = align_clip(k)
    return kn - (kn.mean(axis=0) if mean_face is None else np.asarray(mean_face, np.float64))


def stability_ratio(dk: np.ndarray) -> float:
    """Stability ratio of deformations δk (T, 68, 2), in [0, 1].

    SR = 1/N Σ_i ‖(1/T) Σ_t δk_i(t)‖₂ / ((1/T) Σ_t ‖δk_i(t)‖₂): per landmark, the norm of the
    temporal mean over the temporal mean of the norm, averaged over landmarks (landmarks that
    never move are skipped). 1 = a constant offset (a frozen expression), ≈0 = motion that
    oscillates around the reference face. Compare with the same figure on real data.
    """
    dk = np.asarray(dk, np.float64)
    num = np.linalg.norm(dk.mean(axis=0), axis=-1)
    den = np.linalg.norm(dk, axis=-1).mean(axis=0)
    ok = den > EPS
    return float(np.mean(num[ok] / den[ok])) if ok.any() else float("nan")


def velocity_energy(dk: np.ndarray) -> float:
    """Mean landmark speed: 1/((T−1)·N) Σ_t Σ_i ‖δk_i(t+1) − δk_i(t)‖₂, IOD per frame.

    0 for a static face; compare with real data (too low = wooden, too high = jitter).
    """
    dk = np.asarray(dk, np.float64)
    if len(dk) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(dk, axis=0), axis=-1).mean())


def largest_steps(k: np.ndarray) -> np.ndarray:
    """Per frame (T−1,): the largest distance any landmark moves to the next frame, IOD, after
    per-frame alignment, so head motion does not count: how abrupt a face's change is."""
    kn = align_clip(k)
    return np.linalg.norm(np.diff(kn, axis=0), axis=-1).max(axis=1) if len(kn) > 1 else np.zeros(0)


def blinks(opening: np.ndarray, fps: float = FPS) -> list[tuple[int, int]]:
    """(start, end) frames of each blink in an eye-opening signal.

    A blink starts when the opening drops below BLINK_CLOSE × the clip's median and ends
    when it is back above BLINK_REOPEN × median (hysteresis, so landmark jitter around one
    threshold does not split or invent blinks); closures shorter than BLINK_MIN_S or longer
    than BLINK_MAX_S are dropped.
    """
    o = np.asarray(opening, np.float64)
    med = float(np.median(o)) if len(o) else 0.0
    if med <= EPS:
        return []
    lo, hi = BLINK_CLOSE * med, BLINK_REOPEN * med
    min_n, max_n = max(1, int(round(BLINK_MIN_S * fps))), int(round(BLINK_MAX_S * fps))
    out, start = [], None
    for t, v in enumerate(o):
        if start is None and v < lo:
            start = t
        elif start is not None and v > hi:
            closed = int(np.sum(o[start:t] < lo))
            if min_n <= closed and t - start <= max_n:
                out.append((start, t))
            start = None
    if start is not None and min_n <= int(np.sum(o[start:] < lo)) and len(o) - start <= max_n:
        out.append((start, len(o)))
    return out


def blink_rate(k: np.ndarray, fps: float = FPS) -> float:
    """Blinks per minute from landmarks (T, 68, 2) or an eye-opening signal (T,).

    rate = #blinks / (T / fps / 60), blinks as in :func:`blinks` on ``topology.eye_opening``.
    Humans: about 8-21/min at rest, fewer while speaking; 0 = staring.
    """
    k = np.asarray(k, np.float64)
    o = k if k.ndim == 1 else topology.eye_opening(k)
    minutes = len(o) / fps / 60.0
    return len(blinks(o, fps)) / minutes if minutes > 0 else 0.0


def head_motion_energy(pose_or_k: np.ndarray, fps: float = FPS) -> float:
    """Mean head speed in IOD per second (compare with real video).

    From landmarks (T, 68, 2) in image pixels: c(t) = midpoint of the eye centres and
    speed = fps · mean_t ‖c(t+1) − c(t)‖ / IOD(t) (IOD = mean of the two frames'). From
    relative poses (T, 4) of ``align.relative_pose`` (angle, log-scale, dx, dy with dx, dy already in
    IOD), or (T, 6) with yaw and pitch after them: speed = fps · mean_t ‖(dx, dy)(t+1) − (dx, dy)(t)‖. Canonical-space
    landmarks carry no head motion and score 0.
    """
    p = np.asarray(pose_or_k, np.float64)
    if len(p) < 2:
        return 0.0
    if p.ndim == 2 and p.shape[1] in (4, 6):
        return float(fps * np.linalg.norm(np.diff(p[:, 2:], axis=0), axis=-1).mean())
    r, l = topology.eye_centres(p)
    c, iod = (r + l) / 2, topology.interocular(p)
    step = np.linalg.norm(np.diff(c, axis=0), axis=-1) / ((iod[1:] + iod[:-1]) / 2 + EPS)
    return float(fps * step.mean())


# --- emotion ---------------------------------------------------------------------------------
def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of items predicted correctly (weighted accuracy, WA); higher is better."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Counts C (n, n): C[i, j] = number of items of true class i predicted as j."""
    c = np.zeros((n, n), np.int64)
    np.add.at(c, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return c


def unweighted_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n: int | None = None) -> float:
    """UA = mean over classes present in y_true of the per-class recall C[i, i] / Σ_j C[i, j].

    Unlike accuracy it is not dominated by the largest class; chance = 1 / #classes.
    """
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    if not len(y_true):
        return float("nan")
    n = int(max(y_true.max(), y_pred.max()) + 1) if n is None else n
    c = confusion(y_true, y_pred, n)
    support = c.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(c)[present] / support[present]))


def agreement(p: np.ndarray, q: np.ndarray) -> dict:
    """Agreement of two class-probability arrays (N, C), e.g. Exp2Emo(video) vs Sp2Emo(speech).

    ``argmax``: fraction of items with argmax p = argmax q; ``cosine``: mean over items of
    p·q / (‖p‖‖q‖). Both higher is better, 1 = identical decisions / distributions.
    """
    p, q = np.atleast_2d(np.asarray(p, np.float64)), np.atleast_2d(np.asarray(q, np.float64))
    arg = float(np.mean(p.argmax(-1) == q.argmax(-1)))
    cos = (p * q).sum(-1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(q, axis=-1) + EPS)
    return {"argmax": arg, "cosine": float(cos.mean())}


# --- identity and image quality --------------------------------------------------------------
@lru_cache(maxsize=1)
def _recogniser():
    import dlib
    from ..face.detect import RECOGNITION_FILE, model_file
    return dlib.face_recognition_model_v1(model_file(RECOGNITION_FILE))


def face_descriptor(rgb: np.ndarray) -> np.ndarray | None:
    """128-d dlib ResNet descriptor of the largest face in an RGB image, or None without a face.

    Uses the project's detector and 68-point predictor (``face.detect``), so the face box and
    landmarks are exactly those the pipeline sees.
    """
    import dlib
    from ..face.detect import _gray, _models, detect_box
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    box = detect_box(rgb)
    if box is None:
        return None
    _, predictor = _models()
    shape = predictor(_gray(rgb), dlib.rectangle(*box))
    return np.asarray(_recogniser().compute_face_descriptor(rgb, shape), np.float64)


def identity_distance(photo_rgb: np.ndarray, frames: Iterable[np.ndarray], every: int = 1) -> dict:
    """Descriptor distance ‖d(photo) − d(frame)‖₂ over (every ``every``-th) frame; lower is better.

    Returns mean and max over frames with a face, the number checked, and the fraction of
    frames where no face was found; below SAME_PERSON (0.6) dlib calls it the same person.
    """
    src = face_descriptor(photo_rgb)
    if src is None:
        raise ValueError("no face found in the source photo")
    dists, missed = [], 0
    for i, f in enumerate(frames):
        if i % every:
            continue
        d = face_descriptor(f)
        if d is None:
            missed += 1
        else:
            dists.append(float(np.linalg.norm(d - src)))
    n = len(dists)
    return {"mean": float(np.mean(dists)) if n else float("nan"),
            "max": float(np.max(dists)) if n else float("nan"),
            "frames": n, "no_face": missed / max(1, n + missed)}


def mouth_box(k: np.ndarray, margin: float = MOUTH_BOX_MARGIN) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box around landmarks 48-67, grown by ``margin`` of its size."""
    m = np.asarray(k, np.float64)[topology.MOUTH]
    (x0, y0), (x1, y1) = m.min(0), m.max(0)
    dx, dy = margin * (x1 - x0), margin * max(y1 - y0, 0.3 * (x1 - x0))
    return int(np.floor(x0 - dx)), int(np.floor(y0 - dy)), int(np.ceil(x1 + dx)), int(np.ceil(y1 + dy))


def mouth_sharpness(frame: np.ndarray, k: np.ndarray) -> float:
    """Variance of the Laplacian of the gray mouth box (higher = more detail; blur lowers it).

    The crop (``mouth_box``) is resized to MOUTH_CROP_WIDTH pixels wide first, so photos and
    videos of different resolutions are compared at the same scale.
    """
    import cv2
    img = np.asarray(frame)
    gray = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img[..., :3], np.uint8), cv2.COLOR_RGB2GRAY)
    x0, y0, x1, y1 = mouth_box(k)
    h, w = gray.shape[:2]
    crop = gray[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    if crop.size < 4:
        return float("nan")
    s = MOUTH_CROP_WIDTH / crop.shape[1]
    crop = cv2.resize(crop, (MOUTH_CROP_WIDTH, max(2, int(round(crop.shape[0] * s)))),
                      interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return float(cv2.Laplacian(crop.astype(np.float64), cv2.CV_64F).var())


def sharpness_ratio(frames: Iterable[np.ndarray], ks: Iterable[np.ndarray],
                    photo: np.ndarray, photo_k: np.ndarray) -> float:
    """mean_t sharpness(frame_t, k_t) / sharpness(photo): 1 = as sharp as the source, < 1 = blurrier."""
    vals = [mouth_sharpness(f, k) for f, k in zip(frames, ks)]
    ref = mouth_sharpness(photo, photo_k)
    return float(np.nanmean(vals) / ref) if vals and ref > EPS else float("nan")
