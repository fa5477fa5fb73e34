"""Piecewise-affine mesh warp of the source photo, driven by 68 target landmarks.

The mesh is the 68 landmarks, a row of forehead points that follow the head rigidly, a point
in each eye that carries the iris (so the gaze can stay on the camera while the head turns), six
mouth-interior points that split the inner-lip opening into an upper part (riding on the
upper lip), a lower part (riding on the lower lip) and a "tear" between them (the newly
opened cavity, painted by :mod:`.mouth`), and a fixed elliptical ring of anchors around the
face. Everything outside the ring is never touched, so the background cannot swim.

Rendering is backward mapping: a triangle-id image is rasterised in the destination, each
pixel takes its triangle's affine dst->src map, and ``cv2.remap`` samples the photo. All of it
is restricted to the bounding box of the triangles that actually moved.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import N_LANDMARKS
from ..face.topology import (BROWS, EYES, INNER_LIPS, JAW, LEFT_EYE, LID_PAIRS, MIRROR, MOUTH, OUTER_LIPS, RIGHT_EYE,
                             STABLE, eye_centres, interocular, lid_gap)

FOREHEAD_HEIGHT = 0.6        # forehead row above the brows, in inter-ocular distances
RING_SCALE = 1.7             # anchor ellipse diameter over the size of the face (landmarks + forehead)
RING_POINTS = 24
RING_LIMIT = 0.9             # moving vertices are kept inside this fraction of the ring
REF_OPENINGS = (0.2, 0.35, 0.5)  # mouth openings (inter-ocular units) tried for the reference mesh
MOVE_EPS = 1e-3              # pixels; triangles whose vertices all move less are left alone
MIN_AREA = 1e-6              # pixels^2 (twice the area); flatter destination triangles are not drawn
SUBPIXEL_BITS = 4            # fixed-point precision of the rasteriser
BOX_PAD = 1.0                # pixels of slack around each triangle's source box
UNBOUNDED = 1e6              # source box of the identity (unmoved) pixels
GAZE_LIMIT = 0.15            # the irises never move against the lids by more than this share of the eye's width
EYEBALL_GROW = 1.15          # the eyeball layer reaches this far past the eye outline (from its centre), under the skin
CREASE_SHARE = 0.3           # the lid crease lies this share of the way from the upper lid to the brow
LID_BROW = ((37, 19), (38, 20), (43, 23), (44, 24))   # upper-lid point and the brow point above it
UPPER_LIDS = np.array([u for u, _ in LID_PAIRS])       # 37, 38, 43, 44
LOWER_LIDS = np.array([d for _, d in LID_PAIRS])       # 41, 40, 47, 46
MAX_TRIANGLES = 255          # ids 1..255 in a uint8 image, 0 is "not moved"
# Every motion we draw was read by dlib's 68-point model (training clips, emotion patterns, driving videos), and it
# reads only part of a lip spread drawn on a photo: lips spread by a known amount read back at 0.60 of it (median of
# 21 faces, IQR 0.55-0.69; openings read in full), so spread and rounding are drawn 1 / SPREAD_READ as large, the
# geometry that reads as the motion (tools/reading_gain.py measures it on any faces).
SPREAD_READ = 0.60

FAR = 4.0                    # targets are first clipped to this many image sizes around the image

UPPER_CHAIN = INNER_LIPS[:5]                   # 60-64: corner, upper inner lip, corner
UPPER_INNER = INNER_LIPS[1:4]                  # 61-63
LOWER_INNER = INNER_LIPS[[7, 6, 5]]            # 67-65, paired with UPPER_INNER
CORNERS = INNER_LIPS[[0, 4]]                   # 60, 64
LOWER_BLOCK = np.concatenate([JAW[5:12], OUTER_LIPS[7:], LOWER_INNER])  # what a jaw drop moves
FOREHEAD_FROM = BROWS[[0, 2, 4, 5, 7, 9]]      # brow ends and middles
DELAUNAY_ROOM = 500.0        # the triangulation's rectangle is this many times the points' size (see _delaunay)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (2, 3) mapping points ``src`` to ``dst`` (no reflection)."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    den = (s ** 2).sum()
    if not den > 0:
        return np.array([[1.0, 0.0, md[0] - ms[0]], [0.0, 1.0, md[1] - ms[1]]])
    a = (s * d).sum() / den
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / den
    r = np.array([[a, -b], [b, a]])
    return np.concatenate([r, (md - r @ ms)[:, None]], axis=1)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _strip(a: list[int], b: list[int]) -> list[tuple[int, int, int]]:
    """Triangles filling the band between two chains that share their end points."""
    n = len(a)
    tris = [(a[0], a[1], b[1])]
    for i in range(1, n - 2):
        tris += [(a[i], a[i + 1], b[i + 1]), (a[i], b[i + 1], b[i])]
    tris.append((a[n - 2], a[n - 1], b[n - 2]))
    return tris


def _eye_heights(k: np.ndarray) -> np.ndarray:
    """Each eye's lid opening (2,), right then left."""
    return np.array([lid_gap(k, e) for e in (RIGHT_EYE, LEFT_EYE)])


def _cycle(points) -> set[frozenset]:
    """The edges of a closed outline through ``points``."""
    p = [int(i) for i in points]
    return {frozenset((p[i], p[(i + 1) % len(p)])) for i in range(len(p))}


def _edges(tris) -> set[frozenset]:
    """The edges of triangles (N, 3) of vertex indices."""
    return {frozenset((int(a), int(b))) for t in tris for a, b in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}


def _creases(k: np.ndarray, lids: np.ndarray) -> np.ndarray:
    """The lid crease above each upper-lid point (LID_BROW order), given where the lids are when open:
    CREASE_SHARE of the way up to the brow, so a closing lid leaves it where it is."""
    brows = k[[b for _, b in LID_BROW]]
    return lids + CREASE_SHARE * (brows - lids)


def _face_frame(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (right, down) of the face: along the eye line and perpendicular to it."""
    right, left = eye_centres(k)
    d = left - right
    x = d / (np.linalg.norm(d) + 1e-9)
    return x, np.array([-x[1], x[0]])


def _delaunay(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (N, 3) of ``points`` (M, 2), as indices (the first of any repeated point): OpenCV's
    Subdiv2D, the same triangles as SciPy's (checked on six faces), whose import costs a cold process 0.3 s."""
    pts = np.asarray(points, np.float64)
    # Subdiv2D starts from three virtual vertices outside its rectangle; near them the hull's thin triangles go
    # missing, so the rectangle is far larger than the points (at 5x their size, 12 % of random sets differed)
    centre, half = (pts.min(0) + pts.max(0)) / 2, DELAUNAY_ROOM * (float(np.ptp(pts, axis=0).max()) + 1.0)
    x0, y0 = (int(np.floor(v - half)) for v in centre)
    sub = cv2.Subdiv2D((x0, y0, int(2 * half) + 1, int(2 * half) + 1))
    index: dict[tuple[float, float], int] = {}
    for i, p in enumerate(pts):
        v = sub.insert((float(p[0]), float(p[1])))
        index.setdefault(tuple(map(float, sub.getVertex(v)[0])), i)
    tris = []
    for t in sub.getTriangleList():                      # corners as float32 coordinates; those of the
        corners = [index.get((float(t[j]), float(t[j + 1]))) for j in (0, 2, 4)]   # outer virtual ones match none
        if None not in corners:
            tris.append(corners)
    return np.asarray(tris, np.int64).reshape(-1, 3)


class MeshWarper:
    """The mesh built once on the source face, and the per-frame warp."""

    def __init__(self, image_shape: tuple[int, ...], landmarks: np.ndarray, like: "MeshWarper | None" = None):
        """``like``: a mesh of the same face a moment before (a video's previous frame), whose triangles are
        reused when none of them turns over on this face (Delaunay costs more than the warp itself)."""
        self.h, self.w = image_shape[:2]
        k = np.asarray(landmarks, dtype=np.float64)
        iod = float(interocular(k))
        ex, ey = _face_frame(k)
        self.across, self.down = ex, ey
        self.forehead = k[FOREHEAD_FROM] - ey * FOREHEAD_HEIGHT * iod
        # anchor ring: an ellipse around landmarks + forehead, aligned with the face
        pts = np.concatenate([k, self.forehead])
        u, v = pts @ ex, pts @ ey
        cu, cv = (u.min() + u.max()) / 2, (v.min() + v.max()) / 2
        self.ring_centre = cu * ex + cv * ey
        self.ring_axes = RING_SCALE / 2 * np.array([u.max() - u.min(), v.max() - v.min()])
        self.ring_frame = np.stack([ex, ey])
        phi = np.linspace(0, 2 * np.pi, RING_POINTS, endpoint=False)
        ring = self.ring_centre + np.cos(phi)[:, None] * self.ring_axes[0] * ex + np.sin(phi)[:, None] * self.ring_axes[1] * ey
        crease = _creases(k, k[UPPER_LIDS])
        self.landmarks = k
        # mouth-interior points: the midpoints of the inner-lip pairs, twice (upper and lower copy)
        mid = (k[UPPER_INNER] + k[LOWER_INNER]) / 2
        eyes = np.stack(eye_centres(k))
        ball = np.concatenate([c + EYEBALL_GROW * (k[e] - c) for c, e in zip(eyes, (RIGHT_EYE, LEFT_EYE))])
        parts = {"landmarks": k, "forehead": self.forehead, "crease": crease, "ring": ring, "upper": mid,
                 "lower": mid, "eyes": eyes, "ball": ball, "lids": k[UPPER_LIDS]}
        start = np.cumsum([0] + [len(p) for p in parts.values()])
        idx = {name: np.arange(a, b) for name, a, b in zip(parts, start[:-1], start[1:])}
        self.i_crease, self.i_ring, self.i_upper, self.i_lower = idx["crease"], idx["ring"], idx["upper"], idx["lower"]
        self.i_eyes, self.i_ball, self.i_lids = idx["eyes"], idx["ball"], idx["lids"]
        self.src = np.concatenate(list(parts.values())).astype(np.float64)
        self.src_eye_open = _eye_heights(k)
        self.src_eye_width = float(np.linalg.norm(k[39] - k[36]) + np.linalg.norm(k[45] - k[42])) / 2
        self.src_gap = np.linalg.norm(k[LOWER_INNER] - k[UPPER_INNER], axis=1)
        if like is not None and len(like.src) == len(self.src) and self._keeps(like):
            self.triangles, self.signs = like.triangles, like.signs
        else:
            self.triangles = self._triangulate(k, iod, ey)
            self.signs = self._areas(self.triangles)
        if len(self.triangles) > MAX_TRIANGLES:
            raise ValueError(f"mesh has {len(self.triangles)} triangles, more than a uint8 id map holds")

    def _areas(self, tris: np.ndarray) -> np.ndarray:
        """Signed areas (twice) of triangles on this mesh's source points."""
        a, b, c = (self.src[tris[:, i]] for i in range(3))
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    def _keeps(self, like: "MeshWarper") -> bool:
        """Whether ``like``'s triangles are still a mesh here: every one that had an area keeps its orientation."""
        now, was = self._areas(like.triangles), like.signs
        big = np.abs(was) > 1e-3 * float(np.abs(was).max(initial=1.0))
        return bool(np.all(np.sign(now[big]) == np.sign(was[big])) and np.all(np.abs(now[big]) > 1e-6))

    def _triangulate(self, k: np.ndarray, iod: float, down: np.ndarray) -> np.ndarray:
        """Delaunay on the face with the mouth opened, so no triangle spans the lip opening.

        The opening grows until every inner-lip edge is a mesh edge (the last try is kept
        otherwise), then the inside of the inner lips is replaced by explicit strips and the
        inside of each eye by the eyeball's fan, drawn first so the skin around covers it.
        """
        edges = _cycle(INNER_LIPS)
        n_flat = self.i_ring[-1] + 1                                       # landmarks, forehead, creases, ring
        for opening in REF_OPENINGS:
            ref = self.src[:n_flat].copy()
            ref[LOWER_BLOCK] += down * opening * iod
            tris = _delaunay(ref)
            poly = ref[INNER_LIPS].astype(np.float32)
            keep = [t for t in tris
                    if cv2.pointPolygonTest(poly, tuple(map(float, ref[t].mean(0))), False) < 0]
            if edges <= _edges(keep):
                break
        a, b = (int(c) for c in CORNERS)
        up, lo = [a, *self.i_upper.tolist(), b], [a, *self.i_lower.tolist(), b]
        mouth = (_strip(up, lo)                                             # tear (new cavity)
                 + _strip(UPPER_CHAIN.tolist(), up)                         # upper interior
                 + _strip(lo, [a, *LOWER_INNER.tolist(), b]))               # lower interior
        keep = np.asarray(keep, dtype=np.int64).reshape(-1, 3)
        # each eye: a fan from its centre to the eyeball's own outline, so the iris moves with the centre
        # as a whole and the lids slide over it (where the eye outline is a chain of mesh edges, as it is
        # on any ordinary face)
        balls = []
        for c, e, ball in zip(self.i_eyes, (RIGHT_EYE, LEFT_EYE), self.i_ball.reshape(2, 6)):
            if _cycle(e) <= _edges(keep):
                poly = k[e].astype(np.float32)
                keep = np.array([t for t in keep if not (set(t.tolist()) <= set(e.tolist()) and
                                 cv2.pointPolygonTest(poly, tuple(map(float, k[t].mean(0))), False) > 0)])
                balls += [(c, int(ball[i]), int(ball[(i + 1) % 6])) for i in range(6)]
        # the skin's upper-lid corners are the open lid's own vertices
        lut = np.arange(len(self.src))
        lut[UPPER_LIDS] = self.i_lids
        keep = lut[keep]
        # eyeballs and mouth first: the skin drawn after covers the eyeball, and where the lips close,
        # the lip triangles cover the thin strips
        return np.concatenate([np.array(balls, dtype=np.int64).reshape(-1, 3), np.array(mouth), keep])

    # ----------------------------------------------------------------------------- per frame
    def vertices(self, target: np.ndarray, gaze: np.ndarray | None = None) -> np.ndarray:
        """Destination mesh vertices for target landmarks (68, 2), all finite; ``gaze`` (2,) moves the
        irises against the lids, in pixels (scaled down as an eye closes, so a blink never folds it)."""
        far = FAR * max(self.h, self.w)
        k = self._inside_ring(np.clip(np.asarray(target, dtype=np.float64), -far, far))
        head = similarity(self.src[STABLE], k[STABLE])
        k[MOUTH] = self._inside_ring(self._as_drawn(k, head))
        fore = self._inside_ring(_apply(head, self.forehead))
        d = k[LOWER_INNER] - k[UPPER_INNER]
        gap = np.linalg.norm(d, axis=1)
        # each interior half keeps its source size and rides on its lip; the rest is new cavity
        f = np.where(gap > 1e-6, np.minimum(0.5, self.src_gap / 2 / np.maximum(gap, 1e-6)), 0.5)[:, None]
        upper = k[UPPER_INNER] + f * d
        lower = k[LOWER_INNER] - f * d
        # the eyeball moves with the head; where the lids open wider than in the photo it opens with them
        down = head[:, :2] @ self.down
        down /= np.linalg.norm(down) + 1e-12
        rigid = _apply(head, self.landmarks)
        wider = np.zeros(N_LANDMARKS)
        wider[UPPER_LIDS] = np.minimum((k[UPPER_LIDS] - rigid[UPPER_LIDS]) @ down, 0.0)
        wider[LOWER_LIDS] = np.maximum((k[LOWER_LIDS] - rigid[LOWER_LIDS]) @ down, 0.0)
        ball = _apply(head, self.src[self.i_ball]) + wider[EYES][:, None] * down
        lids = rigid[UPPER_LIDS] + wider[UPPER_LIDS][:, None] * down
        crease = self._inside_ring(_creases(k, lids))
        eyes = _apply(head, self.src[self.i_eyes])
        if gaze is not None:
            g = np.clip(np.nan_to_num(np.asarray(gaze, np.float64)), -far, far)
            open_share = np.clip(_eye_heights(k) / np.maximum(self.src_eye_open, 1e-6), 0.0, 1.0)
            g = g * min(1.0, GAZE_LIMIT * self.src_eye_width / (float(np.linalg.norm(g)) + 1e-9))
            eyes = eyes + open_share[:, None] * g
        return np.concatenate([k, fore, crease, self.src[self.i_ring], upper, lower, eyes, ball, lids])

    def _as_drawn(self, k: np.ndarray, head: np.ndarray) -> np.ndarray:
        """The lips (MOUTH rows) of read landmarks ``k`` as geometry to draw: their spread (the motion across the
        face against the photo's lips, head motion ``head`` taken out, alike on both sides of the mouth) grown by
        1 / SPREAD_READ, so that a reader reads back the spread it was given. The mouth moving as a whole or
        one side against the other (what a turn does to it, seen against the eyes) and everything up and down
        the face are drawn as read."""
        rigid = _apply(head, self.landmarks[MOUTH])
        across = head[:, :2] @ self.across
        across /= np.linalg.norm(across) + 1e-12
        x = (k[MOUTH] - rigid) @ across
        spread = (x - x[MIRROR[MOUTH] - MOUTH[0]]) / 2
        return k[MOUTH] + np.outer(spread * (1 / SPREAD_READ - 1), across)

    def mouth_chains(self, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower outlines (5, 2) of the tear in destination vertices ``dst``, corner to corner."""
        a, b = dst[CORNERS[0]], dst[CORNERS[1]]
        return (np.concatenate([[a], dst[self.i_upper], [b]]),
                np.concatenate([[a], dst[self.i_lower], [b]]))

    def _inside_ring(self, p: np.ndarray) -> np.ndarray:
        """Pull points back inside the anchor ring so no triangle folds over it."""
        q = ((p - self.ring_centre) @ self.ring_frame.T) / self.ring_axes
        r = np.linalg.norm(q, axis=1, keepdims=True)
        q = q * np.minimum(1.0, RING_LIMIT / np.maximum(r, 1e-12))
        return self.ring_centre + (q * self.ring_axes) @ self.ring_frame

    def warp(self, image: np.ndarray, dst: np.ndarray, out: np.ndarray) -> None:
        """Write the warp of ``image`` for destination vertices ``dst`` into ``out`` (a copy of it)."""
        moved = np.abs(dst - self.src).max(axis=1) > MOVE_EPS
        tris = self.triangles[moved[self.triangles].any(axis=1)]
        if len(tris) == 0:
            return
        td, ts = dst[tris], self.src[tris]                    # (T, 3, 2)
        # affine dst->src per triangle: [sx, sy] = M @ [x, y, 1]
        e1, e2 = td[:, 1] - td[:, 0], td[:, 2] - td[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        lo_t, hi_t = td.min(axis=1), td.max(axis=1)                 # triangles wholly off the image draw nothing
        ok = (np.abs(det) > MIN_AREA) & np.all(hi_t >= 0, axis=1) & (lo_t[:, 0] < self.w) & (lo_t[:, 1] < self.h)
        td, ts, e1, e2, det = td[ok], ts[ok], e1[ok], e2[ok], det[ok]
        if len(td) == 0:
            return
        inv = np.stack([np.stack([e2[:, 1], -e2[:, 0]], -1), np.stack([-e1[:, 1], e1[:, 0]], -1)], 1) / det[:, None, None]
        s1, s2 = ts[:, 1] - ts[:, 0], ts[:, 2] - ts[:, 0]
        lin = np.stack([s1, s2], -1) @ inv                    # (T, 2, 2)
        off = ts[:, 0] - np.einsum("tij,tj->ti", lin, td[:, 0])

        lo = np.floor(td.reshape(-1, 2).min(0)).astype(int) - 1
        hi = np.ceil(td.reshape(-1, 2).max(0)).astype(int) + 2
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], self.w), min(hi[1], self.h)
        if x1 <= x0 or y1 <= y0:
            return
        # triangle ids fit a uint8 image (the mesh has under 255 triangles), so cv2.LUT gathers
        # the per-pixel coefficients far faster than numpy indexing
        ids = np.zeros((y1 - y0, x1 - x0), np.uint8)          # 0: not covered, identity map
        scale = 1 << SUBPIXEL_BITS
        fixed = np.round((td - [x0, y0]) * scale).astype(np.int32)
        for i, tri in enumerate(fixed, start=1):
            cv2.fillConvexPoly(ids, tri, i, cv2.LINE_8, SUBPIXEL_BITS)
        # coefficients relative to the ROI origin, then the source box of each triangle; row 0
        # is the identity with no bounds
        coef = np.zeros((10, 256), np.float32)
        coef[:, 0] = (1, 0, x0, 0, 1, y0, -UNBOUNDED, UNBOUNDED, -UNBOUNDED, UNBOUNDED)
        n = len(td) + 1
        coef[0, 1:n], coef[1, 1:n] = lin[:, 0, 0], lin[:, 0, 1]
        coef[2, 1:n] = off[:, 0] + lin[:, 0, 0] * x0 + lin[:, 0, 1] * y0
        coef[3, 1:n], coef[4, 1:n] = lin[:, 1, 0], lin[:, 1, 1]
        coef[5, 1:n] = off[:, 1] + lin[:, 1, 0] * x0 + lin[:, 1, 1] * y0
        coef[6, 1:n], coef[7, 1:n] = ts[:, :, 0].min(1) - BOX_PAD, ts[:, :, 0].max(1) + BOX_PAD
        coef[8, 1:n], coef[9, 1:n] = ts[:, :, 1].min(1) - BOX_PAD, ts[:, :, 1].max(1) + BOX_PAD
        xs = np.arange(x1 - x0, dtype=np.float32)[None, :]
        ys = np.arange(y1 - y0, dtype=np.float32)[:, None]
        maps = []
        for row, box in ((0, 6), (3, 8)):
            m = cv2.LUT(ids, coef[row])
            m *= xs
            m += cv2.LUT(ids, coef[row + 2])
            t = cv2.LUT(ids, coef[row + 1])
            t *= ys
            m += t
            # a pixel on the rim of a sliver triangle would extrapolate far away: keep it in its source box
            np.maximum(m, cv2.LUT(ids, coef[box]), out=m)
            np.minimum(m, cv2.LUT(ids, coef[box + 1]), out=m)
            maps.append(m)
        # fixed-point maps remap about twice as fast as float ones
        m1, m2 = cv2.convertMaps(maps[0], maps[1], cv2.CV_16SC2)
        out[y0:y1, x0:x1] = cv2.remap(image, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
