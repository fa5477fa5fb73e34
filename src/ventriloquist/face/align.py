"""Canonical landmark space and retargeting of motion onto a new face.

Canonical space: the eye centres sit at (-0.5, 0) and (0.5, 0), so one unit is the
inter-ocular distance and the face is upright. Motion is carried between faces as
*offsets* in this space (expression) plus a relative head pose (rotation, scale,
translation), so the target keeps its own face shape — we move a face, we do not paste
another one onto it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .topology import (EYES, INNER_LIP_PAIRS, JAW, LID_PAIRS, LIDS, MOUTH, corner_lift, eye_centres, eye_opening,
                       mouth_aperture)

# (upper, lower) inner-lip pairs that must never cross (the eyelids' are topology.LID_PAIRS).

# How far each jaw and lip point moves down (canonical units) per unit of mouth opening: the
# least-squares slope of every point's vertical motion on the inner-lip opening, measured with
# ``opening_profile`` on the 280 GRID s1 training clips (cache format 2: sub-pixel landmarks; a jaw
# drop: chin +0.81, lower inner lip +0.74, upper inner lip -0.27). Used to close a photo's open
# mouth the way a real mouth closes.
_OPENING_DY = {
    **dict(zip(range(0, 17), (-0.13, -0.01, 0.12, 0.25, 0.38, 0.51, 0.65, 0.77, 0.81, 0.73, 0.55, 0.41, 0.27,
                              0.14, 0.03, -0.07, -0.16))),
    **dict(zip(range(48, 60), (0.29, -0.04, -0.14, -0.16, -0.11, -0.01, 0.25, 0.67, 0.84, 0.87, 0.84, 0.67))),
    **dict(zip(range(60, 68), (0.28, -0.27, -0.28, -0.23, 0.26, 0.74, 0.74, 0.75))),
}
OPENING_PROFILE = np.zeros((68, 2))
OPENING_PROFILE[list(_OPENING_DY), 1] = list(_OPENING_DY.values())


def to_canonical(k: np.ndarray) -> np.ndarray:
    """Similarity transforms ``(..., 2, 3)`` that map image points of ``k`` (..., 68, 2) to canonical space."""
    r, l = eye_centres(np.asarray(k, dtype=np.float64))
    d = l - r
    iod = np.linalg.norm(d, axis=-1) + 1e-9
    c, s = d[..., 0] / iod, d[..., 1] / iod          # rotation that makes the eye line horizontal
    mid = (r + l) / 2
    a, b = c / iod, s / iod
    m = np.zeros(k.shape[:-2] + (2, 3))
    m[..., 0, 0], m[..., 0, 1] = a, b
    m[..., 1, 0], m[..., 1, 1] = -b, a
    m[..., 0, 2] = -(a * mid[..., 0] + b * mid[..., 1])
    m[..., 1, 2] = -(-b * mid[..., 0] + a * mid[..., 1])
    return m


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply affine ``m`` (..., 2, 3) to points (..., N, 2)."""
    return pts @ np.swapaxes(m[..., :, :2], -1, -2) + m[..., None, :, 2]


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of affine transforms (..., 2, 3)."""
    a = np.linalg.inv(m[..., :, :2])
    t = -(a @ m[..., :, 2:3])
    return np.concatenate([a, t], axis=-1)


def normalise(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks in canonical space and the transforms that took them there."""
    m = to_canonical(k)
    return apply(m, np.asarray(k, dtype=np.float64)), m


def pose_params(m: np.ndarray) -> np.ndarray:
    """(angle, log-scale, tx, ty) of the inverse of canonical transforms: the head pose in the image."""
    inv = invert(m)
    a, b = inv[..., 0, 0], inv[..., 1, 0]
    return np.stack([np.arctan2(b, a), np.log(np.hypot(a, b)), inv[..., 0, 2], inv[..., 1, 2]], axis=-1)


def relative_pose(m: np.ndarray) -> np.ndarray:
    """Per-frame head motion (T, 4) relative to the clip's median pose, in canonical units.

    Returns (d_angle, d_log_scale, dx, dy) with the translation measured in inter-ocular
    distances of the reference pose, so it can be replayed on any face at any resolution.
    """
    p = pose_params(m)
    ref = np.median(p, axis=0)
    scale = np.exp(ref[1])
    out = p - ref
    out[:, 2:] /= scale
    return out


# Depth of each landmark towards the camera on an average face (canonical units, eye centres at 0):
# what lets 2-D landmarks turn a little out of plane. Hand-set from facial proportions (the nose tip
# stands ~0.4 inter-ocular distances proud of the eyes, the jaw's ends ~0.75 behind them).
_JAW_T = np.abs(np.arange(17) - 8) / 8.0
DEPTH = np.concatenate([
    0.05 - 0.8 * _JAW_T ** 1.6,                                                  # jaw 0-16
    [-0.25, -0.1, 0.0, 0.06, 0.08, 0.08, 0.06, 0.0, -0.1, -0.25],                # brows 17-26
    [0.05, 0.15, 0.27, 0.40, 0.12, 0.2, 0.25, 0.2, 0.12],                        # nose 27-35
    [-0.12, 0.0, 0.02, -0.02, 0.0, -0.02, -0.02, 0.02, 0.0, -0.12, -0.02, 0.0],  # eyes 36-47
    [0.02, 0.14, 0.22, 0.25, 0.22, 0.14, 0.02, 0.12, 0.18, 0.2, 0.18, 0.12],     # outer lips 48-59
    [0.04, 0.16, 0.18, 0.16, 0.04, 0.14, 0.16, 0.14],                            # inner lips 60-67
])
TURN_PIVOT = (0.5, -1.2)     # (y, depth) of the axis a head turns and nods about: the neck, behind the ears
EYEBALL_RADIUS = 0.19        # 12 mm over a 63-mm inter-ocular distance: how far the iris sits before the eye's centre
POSE_COLUMNS = ("angle", "log_scale", "dx", "dy", "yaw", "pitch")   # a pose row; the last two are optional


def turn(k: np.ndarray, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Canonical landmarks (T, 68, 2) seen after the head turns by ``yaw`` and nods by ``pitch`` (T,), radians.

    The points get :data:`DEPTH` and rotate about the neck (:data:`TURN_PIVOT`), seen in parallel
    projection: the nose swings further than the eyes and one cheek's outline widens as the other
    narrows, which a 2-D warp of the photo renders as a small turn. Positive yaw turns the nose to
    the image's right, positive pitch tips it down.
    """
    yp, zp = TURN_PIVOT
    k = np.asarray(k, np.float64)
    cy, sy = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    cp, sp = np.cos(pitch)[:, None], np.sin(pitch)[:, None]
    x, y, z = k[..., 0], k[..., 1], DEPTH[None, :] - zp
    x2 = x * cy + z * sy
    z2 = -x * sy + z * cy
    y2 = yp + (y - yp) * cp + z2 * sp
    return np.stack([x2, y2], axis=-1)


def gaze_shift(yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Canonical shift (T, 2) of the irises against the eye's outline that keeps them on the camera
    while the head turns: the eyes counter-rotate, so the iris lags the lids by EYEBALL_RADIUS · sin."""
    return -EYEBALL_RADIUS * np.stack([np.sin(yaw), np.sin(pitch)], axis=-1)


def pose_matrix(rel: np.ndarray) -> np.ndarray:
    """Canonical-space similarity (T, 2, 3) for relative poses from :func:`relative_pose`."""
    ang, ls, tx, ty = rel[..., 0], rel[..., 1], rel[..., 2], rel[..., 3]
    s = np.exp(ls)
    m = np.zeros(rel.shape[:-1] + (2, 3))
    m[..., 0, 0], m[..., 0, 1], m[..., 0, 2] = s * np.cos(ang), -s * np.sin(ang), tx
    m[..., 1, 0], m[..., 1, 1], m[..., 1, 2] = s * np.sin(ang), s * np.cos(ang), ty
    return m


def opening_profile(sequences: list[np.ndarray]) -> np.ndarray:
    """Per-point displacement (68, 2) per unit of mouth opening, from canonical sequences (T, 68, 2).

    Least squares over all frames of x_i(t) - mean_t x_i = p_i (a(t) - mean_t a), a = mouth
    aperture: the motion that comes with opening the mouth (jaw, lips), whatever else moves.
    ``OPENING_PROFILE`` holds its vertical part for GRID s1's training clips.
    """
    d = np.concatenate([s - s.mean(axis=0) for s in sequences])
    a = np.concatenate([mouth_aperture(s) - mouth_aperture(s).mean() for s in sequences])
    return (d * a[:, None, None]).sum(axis=0) / max(float((a * a).sum()), 1e-12)


REST_POINTS = np.r_[5:12, 48:68]   # chin and lips: what a dubbed frame takes from its video's mouth at rest
SMILE_FROM = 0.05        # mouth corners higher than the reference's (over its lip centre) by more than this are a smile
SMILE_POINTS = {48: 1.0, 54: 1.0, 60: 1.0, 64: 1.0, 49: 0.5, 53: 0.5, 59: 0.5, 55: 0.5}   # corners and their neighbours


def smile_offset(k: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(68, 2) offset that lowers a photo's smiling mouth corners to a neutral face's: by how far they sit above
    the reference's beyond SMILE_FROM (the range of neutral faces). A photo that smiles told ``sad`` then loses
    its smile; a neutral photo is unchanged."""
    out = np.zeros((68, 2))
    excess = corner_lift(k) - corner_lift(ref) - SMILE_FROM
    if excess > 0:
        for i, w in SMILE_POINTS.items():
            out[i, 1] = w * excess
    return out


CLOSED_SHARE = 0.1       # the frames whose mouth is among this most closed share stand for the mouth at rest


def closed_frames(k: np.ndarray) -> np.ndarray:
    """Boolean (T,) mask of a sequence's frames with the mouth at its most closed (CLOSED_SHARE)."""
    ap = mouth_aperture(k)
    return ap <= np.quantile(ap, CLOSED_SHARE)


def reference_shape(kn: np.ndarray) -> np.ndarray:
    """A rest shape for a normalised sequence (T, 68, 2): median face, mouth at its most closed.

    Offsets are measured from this shape, so a driver's closed mouth maps to the target's
    own mouth at rest, whatever the driver's first frame looks like.
    """
    ref = np.median(kn, axis=0)
    ref[MOUTH] = kn[closed_frames(kn)][:, MOUTH].mean(axis=0)
    return ref


def _width(k: np.ndarray, i: int, j: int) -> float:
    return float(np.linalg.norm(k[i] - k[j]))


def _uncross(k: np.ndarray, pairs) -> None:
    """Where a lower point went above its upper partner, meet in the middle (in place)."""
    for u, d in pairs:
        bad = k[..., d, 1] < k[..., u, 1]
        if np.any(bad):
            mid = (k[..., u, 1] + k[..., d, 1]) / 2
            k[..., u, 1] = np.where(bad, mid, k[..., u, 1])
            k[..., d, 1] = np.where(bad, mid, k[..., d, 1])


@dataclass
class Retargeter:
    """Maps normalised motion onto one source face (its landmarks in image pixels)."""

    source: np.ndarray                   # (68, 2) landmarks of the photo, image pixels
    head_motion: float = 1.0             # 0 freezes the head, 1 replays the driver's pose
    neutral: bool = False                # take the photo's own smile out first (an emotion was asked for)
    mouth_rest: np.ndarray | None = None  # dubbing: the video's own mouth at rest (68, 2 canonical; chin and lips used),
                                          # which replaces each frame's, so none of its old words show through

    def __post_init__(self) -> None:
        self.source_n, m = normalise(self.source)
        self.to_image = invert(m)

    def closed_source(self, ref: np.ndarray, mouth_scale: float) -> np.ndarray:
        """The photo's canonical landmarks with its mouth no more open than the reference's.

        Motion is added to the photo as offsets, so a photo taken mid-word or with a toothy
        smile would keep that opening as its rest and never close its lips (the re-detected
        opening then barely follows the speech). The excess is taken out along
        ``OPENING_PROFILE``, jaw and lips together, as a real mouth closes.
        """
        if self.mouth_rest is not None:
            out = self.source_n.copy()
            out[REST_POINTS] = np.asarray(self.mouth_rest, np.float64)[REST_POINTS]
            return out
        excess = float(mouth_aperture(self.source_n) - mouth_aperture(ref) * mouth_scale)
        out = self.source_n - max(excess, 0.0) * OPENING_PROFILE
        if excess > 0:
            # ... and evenly: where one inner-lip point sits further out than its neighbours (seated past teeth, a
            # crooked smile), a closing by the mean left that side open at rest and crossed the others. Each pair's
            # vertical gap goes to the pairs' mean (the closing itself unchanged), its two points sharing the move
            # as the profile shares a closing
            extra = np.array([out[d, 1] - out[u, 1] - (ref[d, 1] - ref[u, 1]) * mouth_scale for u, d in INNER_LIP_PAIRS])
            for (u, d), e in zip(INNER_LIP_PAIRS, extra - extra.mean()):
                down, up = OPENING_PROFILE[d, 1], -OPENING_PROFILE[u, 1]
                out[u, 1] += e * up / (up + down)
                out[d, 1] -= e * down / (up + down)
        if self.neutral:
            out = out + smile_offset(out, ref)
        return out

    def __call__(self, kn: np.ndarray, ref: np.ndarray, pose: np.ndarray | None = None) -> np.ndarray:
        """Landmarks in image pixels (T, 68, 2) for normalised frames ``kn`` relative to ``ref``.

        Offsets are scaled per region by the ratio of the source's feature sizes to the
        reference's (mouth width for the lower face, eye width for the eyes, eye opening for
        the lids), which keeps the person's own proportions. A photo's mouth open wider than
        the reference's is closed to it first (:meth:`closed_source`): the reference's rest is
        the output's rest.
        """
        kn, ref = np.asarray(kn, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        delta = kn - ref
        src = self.source_n
        # a dubbed frame's mouth is scaled by its rest's width: its own narrows as it opens on the old words
        lips = src if self.mouth_rest is None else np.asarray(self.mouth_rest, np.float64)
        mouth_s = float(np.clip(_width(lips, 48, 54) / max(_width(ref, 48, 54), 1e-6), 0.6, 1.6))
        eye_s = (_width(src, 36, 39) + _width(src, 42, 45)) / max(_width(ref, 36, 39) + _width(ref, 42, 45), 1e-6)
        scale = np.ones((68, 1))
        scale[np.concatenate([JAW, MOUTH])] = mouth_s
        scale[EYES] = np.clip(eye_s, 0.6, 1.6)
        # lids move by the eye's opening, not its width: a blink or a squint closes any eye by its own share
        scale[LIDS] = np.clip(eye_opening(src) / max(float(eye_opening(ref)), 1e-6), 0.5, 2.0)
        out = self.closed_source(ref, mouth_s) + delta * scale
        _uncross(out, INNER_LIP_PAIRS)
        _uncross(out, LID_PAIRS)
        if pose is not None and self.head_motion > 0:
            p = np.asarray(pose, np.float64) * self.head_motion
            if p.shape[-1] > 4:
                out = turn(out, p[:, 4], p[:, 5])
            out = apply(pose_matrix(p[:, :4]), out)
        return apply(self.to_image, out)

    def gaze(self, pose: np.ndarray | None, n: int) -> np.ndarray:
        """Image-pixel shift (n, 2) of the irises against the lids that keeps the eyes on the camera
        through the head's out-of-plane turns (zero without them); the renderer applies it."""
        p = None if pose is None or self.head_motion <= 0 else np.asarray(pose, np.float64) * self.head_motion
        if p is None or p.shape[-1] <= 4:
            return np.zeros((n, 2))
        m = pose_matrix(p[:, :4])[:, :, :2]
        lin = np.einsum("ij,tjk->tik", self.to_image[:, :2], m)
        return np.einsum("tij,tj->ti", lin, gaze_shift(p[:, 4], p[:, 5]))


