"""Closing lids: the photo's own upper lid slides down over the still eyeball.

The mesh warp (:mod:`.warp`) keeps each eye open and its eyeball rigid with the head. Where the
target closes an eye, the upper lid (the band from its crease to its lash line, with the photo's
texture and lashes) is stretched down over the eyeball along smooth curves through the lid
landmarks, in the eye's own coordinates: it follows the eye's curve, ends at its corners on any
head pose, and its edge is anti-aliased. Its top, the fold, spans the eye in a flat arch as high as the
crease, as a shut lid does (real blinks are bright from the lash line up to the brow's shadow, on the
wild clips and GRID). Shut, it keeps its lash line, and above it is one smooth
sheet of skin: the skin just over the crease, read upwards (an open lid's own band is a fold in
shadow, mostly hidden), smoothed along the eye and lit towards the skin under the eye, where a
socket's shadow or eyeshadow would otherwise leave a grey patch that neither a person nor a landmark
detector reads as a closed eye; its top rises over the crease so the lashes there go with it. An eye
that does not close is left to the warp.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..face.topology import LEFT_EYE, RIGHT_EYE, lid_gap

LASH_SEARCH = (-0.4, 0.1)    # the lash line is the darkest row this far (eye openings) above/below the lid landmarks
LASH_BELOW = 0.06            # the lid ends this far (eye openings) under its lash line, so the lashes come down with it
LASH_KEEP = 0.3              # the bottom share of the lid (its lash line) is kept as it is; above it, lashes that
LASH_DARK = 0.7              # curl up over the lid (darker than this share of its bright skin) are filled with skin ...
CLEAR_FROM = (0.3, 0.9)      # ... shown as the eye closes over this range of closure (open, the lashes stay)
SHUT = (0.8, 1.0)            # closure over which a lid comes to cover the eye right into its corners
OVERLAP = 0.3                # a closed lid's edge overlaps the lower lid's rim by this share of the eye's opening
MIN_CLOSURE = 0.01           # closure (1 - opening / the photo's) from which the lid is drawn
TOP_FEATHER = 0.15           # a closing lid fades into the skin over this share of its height above the crease
LID_SMOOTH = 0.05            # a closing lid's skin is smoothed along the eye over this share of its width
FOLD_SHAPE = 0.5             # a shut lid's fold spans the eye as (4 s (1 - s)) ** (FOLD_SHAPE / 2) (an ellipse: 1)
RAISE = 0.5                  # a closing lid's top rises this many open-lid heights over the crease
LID_SHADE = 0.1              # a shut lid's skin is a shade darker towards the lash line, where it curves away from
                             # the light ...
TONE_SHARE = 0.6             # ... and brought this share of the way (in gain) to the skin under the eye ...
TONE_GAIN = (0.6, 1.8)       # ... by a gain never beyond this (before the share) ...
BULGE = 0.6                  # ... in full from this share of the way down from the crease (it meets the crease unlit)
UNDER_EYE = (0.2, 0.5)       # the skin under the eye is read this far below the lower lid (eye widths)
OCCLUDER_SPAN = 1.5          # a thin dark line across the eye this many eye widths long is in front of the lid ...
OCCLUDER_WIDTH = 0.08        # ... (a line: darker than its surround within this share of the eye's width ...
OCCLUDER_CONTRAST = 0.12     # ... by this share of the skin's brightness), and apart from the open eye by this
OCCLUDER_GAP = 0.1           # share of its opening; looked for only where a glasses bridge crosses the nose,
BRIDGE_SPAN = 0.9            # a line this share of the way between the inner eye corners
CORNER_REACH = 0.2           # about each corner, this share of the eye's width ...
CORNER_RISE = 0.6            # ... and this many eye openings over its corner line hold lashes that shut with the lid
CORNER_EXT = 0.15            # a closing lid spans this share of the eye's width past each corner dlib puts (on
                             # small and deep-set eyes dlib's corners lie inside the real ones: the open eye's
                             # dark corner showed beside a shut lid)
LASH_SOFT = 0.2              # a closing lid's lash-line edge is soft over this share of the eye's opening (a hard
                             # one-pixel edge read as a drawn slit)
SAMPLES = 33                 # points along each curve, corner to corner
GRID = np.linspace(0.0, 1.0, SAMPLES)
BUMP = np.sqrt(4 * GRID * (1 - GRID))     # 1 mid-eye, 0 at the corners


def _smoothstep(x: float | np.ndarray, lo: float, hi: float) -> float | np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class _EyeFrame:
    """An eye's own coordinates: ``s`` from one corner (0) to the other (1), ``t`` pixels across,
    growing from the crease towards the lash line."""

    def __init__(self, a: np.ndarray, b: np.ndarray, above: np.ndarray):
        d = b - a
        self.a, self.length = a, max(float(np.linalg.norm(d)), 1e-6)
        self.ex = d / self.length
        ey = np.array([-self.ex[1], self.ex[0]])
        self.ey = ey if float((above - (a + b) / 2) @ ey) < 0 else -ey

    def curve(self, points: np.ndarray) -> np.ndarray:
        """``t`` on GRID of the cubic through ``points`` (4, 2), corner to corner: ``s(1 - s)(p + q s)``,
        which arches as a lid does right into the corners (a spline with free ends runs straight there)."""
        rel = points[1:3] - self.a
        s, t = rel @ self.ex / self.length, rel @ self.ey
        base = s * (1 - s)
        if np.all(base > 1e-3) and abs(s[1] - s[0]) > 1e-3:
            p, q = np.linalg.solve(np.stack([base, base * s], 1), t)
            return GRID * (1 - GRID) * (p + q * GRID)
        return np.interp(GRID, np.concatenate([[0.0], np.maximum.accumulate(np.clip(s, 0, 1)), [1.0]]),
                         np.concatenate([[0.0], t, [0.0]]))

    def coords(self, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """``s`` and ``t`` of each pixel of the box ``x0:x1``, ``y0:y1``."""
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        px, py = xx - self.a[0], yy - self.a[1]
        return (px * self.ex[0] + py * self.ex[1]) / self.length, px * self.ey[0] + py * self.ey[1]

    def point(self, s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (self.a[0] + s * self.length * self.ex[0] + t * self.ey[0],
                self.a[1] + s * self.length * self.ex[1] + t * self.ey[1])

    def sample(self, image: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``image`` read at the eye coordinates (``s``, ``t``) (bilinear, edges repeated)."""
        mx, my = self.point(s, t)
        return cv2.remap(image, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)


class EyelidLayer:
    """The upper lids of one photo, redrawn over closing eyes in rendered frames."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, creases: np.ndarray):
        """``creases`` (4, 2): the mesh's crease points above 37, 38, 43, 44 (``MeshWarper.i_crease``)."""
        self.image = image
        self.skin = image.copy()              # the lid skin, lashes that curl over it filled in
        self.eyes = []
        for j, eye in enumerate((RIGHT_EYE, LEFT_EYE)):
            opening = max(lid_gap(landmarks, eye), 1e-3)
            lid, crease = _chains(landmarks, creases, eye, j)
            f = _EyeFrame(lid[0], lid[3], crease.mean(0))
            curve = f.curve(lid)
            lash, top = _lash_line(image, f, curve, opening), _fold(f.curve(crease))
            raise_px = RAISE * float(np.max(lash - top))
            _clear_lashes(self.skin, f, top, lash)
            _clear_lashes(self.skin, f, top - raise_px, top, whole=True)
            for end in (0, 1):
                _fill_dark(self.skin, _corner(f, end, opening))
            # the skin under the eye: its median colour is what a shut lid's skin is brought towards
            lower = f.curve(landmarks[[eye[0], eye[5], eye[4], eye[3]]])
            under = f.sample(image, GRID[None, 4:-4], lower[None, 4:-4] + np.linspace(*UNDER_EYE, 6)[:, None] * f.length)
            tone = np.median(under.reshape(-1, under.shape[-1]), axis=0).astype(np.float32)
            self.eyes.append((eye, j, opening, f, top, lash, lash - curve, raise_px, tone))
        self.glasses = _wears_glasses(image, landmarks)

    def paint(self, frame: np.ndarray, target: np.ndarray, creases: np.ndarray) -> None:
        """Draw the lids of the eyes that ``target`` (68, 2) closes into ``frame``, in place
        (``creases``: the frame's crease points, as in :meth:`__init__`)."""
        for eye, j, opening, src, src_top, src_edge, lash, raise_px, tone in self.eyes:
            open_share = lid_gap(target, eye) / opening
            if open_share > 1 - MIN_CLOSURE:
                continue
            lid, crease = _chains(target, creases, eye, j)
            f = _EyeFrame(lid[0], lid[3], crease.mean(0))
            # the lash line keeps its place over the lid landmarks while open, and overlaps the lower lid closed
            open_share = max(open_share, 0.0)
            top = _fold(f.curve(crease))
            edge = f.curve(lid) + open_share * lash + (1 - open_share) * OVERLAP * opening * BUMP
            # shut, the lid reaches the lower lid all along, right into the corners, where a curve through
            # the upper lid's points alone leaves a sliver of the eye (its dark corner) uncovered
            below = target[[eye[0], eye[5], eye[4], eye[3]]]
            reach = f.curve(below) + OVERLAP * opening * BUMP
            edge = edge + float(_smoothstep(1 - open_share, *SHUT)) * np.maximum(reach - edge, 0)
            # closing, the lid's top rises over the crease and fades in there, over the photo's own skin with its
            # lashes cleared: near the corners the open lid's lashes reach above the crease
            clear = float(_smoothstep(1 - open_share, *CLEAR_FROM))
            lift = clear * raise_px * f.length / src.length
            soft = max(1.0, LASH_SOFT * opening * f.length / src.length)
            # the box holds the lid's whole edge (it overlaps the lower lid): cut by the box, a shut lid ended in
            # a straight line
            box = np.concatenate([lid, crease, below, crease - (lift + TOP_FEATHER * float(np.max(edge - top))) * f.ey,
                                  np.stack(f.point(GRID, edge + soft), 1)])
            x0, y0, x1, y1 = _pixel_box(box, frame.shape, 2)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            s, t = f.coords(x0, y0, x1, y1)
            inside = (s > 0) & (s < 1)
            tc, tu = np.interp(s, GRID, top), np.interp(s, GRID, edge)
            height = tu - tc
            # the top arches over the crease, down to it at the corners (risen evenly, it ended in a vertical edge
            # there), and fades in above the crease only (a fade reaching below it let the open eye under it, its
            # lashes and the top of its iris, show through a shut lid where the crease sits close over the eye)
            rise = lift * np.interp(s, GRID, BUMP) + TOP_FEATHER * height
            alpha = (np.clip((tu - t) / soft + 0.5, 0, 1) * _smoothstep((t - tc + rise) / np.maximum(rise, 1e-3), 0.0, 1.0)
                     * inside * (height > 0.5))
            if not alpha.any():
                continue
            if self.glasses:
                alpha = alpha * (1 - _in_front(frame, f, (x0, y0, x1, y1), src_edge * f.length / src.length, reach))
            sc, su = np.interp(s, GRID, src_top), np.interp(s, GRID, src_edge)
            # the lid's margin (its lashes, LASH_KEEP of it) keeps its size; the skin above unfolds to cover the rest
            margin = LASH_KEEP * (su - sc)
            rim = np.minimum(margin * f.length / src.length, 0.5 * height)
            depth = t - tc
            skin_part = np.clip(depth / np.maximum(height - rim, 1e-3), 0, 1) * (su - sc - margin)
            rim_part = np.clip((depth - (height - rim)) / np.maximum(rim, 1e-3), 0, 1) * margin
            over = np.minimum(depth, 0) * src.length / f.length          # over the crease: the skin there, unmoved
            mx, my = (m.astype(np.float32) for m in src.point(s, sc + over + skin_part + rim_part))
            lid_px = cv2.remap(self.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
            if clear > 0:
                skin = cv2.remap(self.skin, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
                # above its lash line a shut lid is the skin just over the crease, read upwards as far as the shut
                # lid reaches below the eye's corners (``reach``): read as far up as the lid is tall, it took in
                # the brow or the socket's shadow (dlib read six shut eyes at 0.92 of open, against 0.59)
                u = np.clip(depth / np.maximum(height - rim, 1e-3), 0, 1)
                bx, by = (m.astype(np.float32) for m in src.point(s, sc + over - u * np.interp(s, GRID, reach)))
                bone = cv2.remap(self.skin, bx, by, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
                bone = cv2.GaussianBlur(bone, (0, 0), sigmaX=LID_SMOOTH * f.length, sigmaY=0.5)
                covered = alpha > 0.5
                if covered.any():
                    gain = np.clip(tone / np.maximum(bone[covered].mean(0), 1.0), *TONE_GAIN) ** TONE_SHARE
                    # lit where the lid bulges over the eyeball: down from the crease and in from the corners, which
                    # stay in the socket's shade (lit into the corners, the lid was a bright box beside them)
                    bulge = (_smoothstep(u, 0.0, BULGE) * np.interp(s, GRID, BUMP))[..., None].astype(np.float32)
                    bone *= 1 + bulge * (gain - 1)
                bone *= (1 - LID_SHADE * u * u)[..., None].astype(np.float32)
                above = np.clip((height - rim - depth) / np.maximum(rim, 1e-3), 0, 1)[..., None].astype(np.float32)
                skin += above * (bone - skin)
                lid_px += clear * (skin - lid_px)
            if clear > 0:
                for end in (0, 1):
                    self._shut_corner(frame, f, src, end, opening, clear, top)
            roi = frame[y0:y1, x0:x1].astype(np.float32)
            a = alpha.astype(np.float32)[..., None]
            frame[y0:y1, x0:x1] = np.clip(roi + (lid_px - roi) * a + 0.5, 0, 255).astype(np.uint8)

    def _shut_corner(self, frame: np.ndarray, f: _EyeFrame, src: _EyeFrame, end: int, opening: float,
                     clear: float, top: np.ndarray) -> None:
        """At a closing eye's corner, over its crease ``top`` and past the corner, the lashes fanned out there
        go with the lid: the photo's skin with them cleared (``_corner``) fades in (the lid is drawn after)."""
        scale = f.length / src.length
        op = opening * scale
        poly = _corner(f, end, op)
        x0, y0, x1, y1 = _pixel_box(poly, frame.shape, 2)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        s, t = f.coords(x0, y0, x1, y1)
        beyond = np.abs(s - 1 if end else s)
        tc = np.minimum(np.interp(s, GRID, top), 0) + 0.15 * op
        weight = ((1 - _smoothstep(beyond, 0.5 * CORNER_REACH, CORNER_REACH))
                  * _smoothstep(t, -CORNER_RISE * op, -0.7 * CORNER_RISE * op) * (1 - _smoothstep(t - tc, -0.1 * op, 0.0)))
        if not (weight > 0).any():
            return
        mx, my = (m.astype(np.float32) for m in src.point(s, t / scale))
        skin = cv2.remap(self.skin, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        a = (clear * weight).astype(np.float32)[..., None]
        frame[y0:y1, x0:x1] = np.clip(roi + (skin - roi) * a + 0.5, 0, 255).astype(np.uint8)


def _fold(crease: np.ndarray) -> np.ndarray:
    """The top of a closing lid (``t`` on GRID): its fold spans the eye in a flat arch, FOLD_SHAPE, as high as
    the crease, or the crease where that is higher. The crease's own curve, pinned to the eye's corners, rose
    like a tent and left the open lid's shaded corners beside the shut lid."""
    return np.minimum(crease, crease.min() * BUMP ** FOLD_SHAPE)


def _wears_glasses(image: np.ndarray, k: np.ndarray) -> bool:
    """Whether a bridge crosses the nose between the eyes: a dark line from one inner eye corner's side to the
    other's, between the brows and the eyes, that skin does not draw. Only then are lines across an eye taken
    for a rim (a small soft face's crease and brow run on past its corners too)."""
    a, b = k[39], k[42]
    width = float(np.linalg.norm(k[39] - k[36]) + np.linalg.norm(k[45] - k[42])) / 2
    x0, x1 = int(round(min(a[0], b[0]))), int(round(max(a[0], b[0])))
    y0 = int(round(min(k[21, 1], k[22, 1])))
    y1 = int(round(max(a[1], b[1]) + 0.2 * width))
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 6 or y1 - y0 < 4:
        return False
    n, labels, stats, _ = cv2.connectedComponentsWithStats(_dark_lines(image[y0:y1, x0:x1], width), connectivity=8)
    return bool(n > 1 and stats[1:, cv2.CC_STAT_WIDTH].max() >= BRIDGE_SPAN * (x1 - x0))


def _dark_lines(image: np.ndarray, width: float) -> np.ndarray:
    """1 where ``image`` has a thin dark line (a black-hat within OCCLUDER_WIDTH of an eye ``width``, darker
    than its surround by OCCLUDER_CONTRAST of the median brightness), else 0 (uint8)."""
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    size = 2 * max(1, int(round(OCCLUDER_WIDTH * width))) + 1
    lines = cv2.morphologyEx(luma, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return (lines > OCCLUDER_CONTRAST * max(float(np.median(luma)), 1.0)).astype(np.uint8)


def _in_front(frame: np.ndarray, f: _EyeFrame, box: tuple[int, int, int, int], lash: np.ndarray,
              lower: np.ndarray) -> np.ndarray:
    """Over ``box`` of ``frame``: 1 where a thin dark line runs across the eye and on past both its corners
    (a glasses rim, a strand of hair), which a closing lid passes behind, and over the lid above such a
    line. The open eye itself, between its lash line ``lash`` and its lower lid ``lower`` (``t`` on GRID),
    is left out, so that its own outline run on into a shadow is not taken for one. A lid drawn over a rim
    broke the frame of the glasses with a patch of skin."""
    x0, y0, x1, y1 = box
    h, w = frame.shape[:2]
    pad = int(np.ceil(OCCLUDER_SPAN * f.length / 2))
    X0, Y0, X1, Y1 = max(x0 - pad, 0), max(y0 - 2, 0), min(x1 + pad, w), min(y1 + 2, h)
    s, t = f.coords(X0, Y0, X1, Y1)
    top, bottom = np.interp(s, GRID, lash), np.interp(s, GRID, lower)
    eye = (s > -0.05) & (s < 1.05) & (t > top - OCCLUDER_GAP * (bottom - top)) & (t < bottom)
    n, labels = cv2.connectedComponents(_dark_lines(frame[Y0:Y1, X0:X1], f.length) * ~eye, connectivity=8)
    out = np.zeros(s.shape, np.float32)
    if n > 1:
        lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
        np.minimum.at(lo, labels.ravel(), s.ravel())
        np.maximum.at(hi, labels.ravel(), s.ravel())
        across = (lo < -(OCCLUDER_SPAN - 1) / 2) & (hi > 1 + (OCCLUDER_SPAN - 1) / 2)
        across[0] = False
        if across.any():
            line = across[labels].astype(np.float32)
            # a line above the eye hides the lid above it, too: the lid is drawn only below the line
            mid = (s > 0.1) & (s < 0.9) & (t < top)
            high = across & (np.bincount(labels[mid], minlength=n) > 0)
            if high.any():
                line = np.maximum(line, np.maximum.accumulate(high[labels][::-1], axis=0)[::-1])
            out = cv2.GaussianBlur(cv2.dilate(line, np.ones((3, 3), np.uint8)), (3, 3), 0)
    return out[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0]


def _lash_line(image: np.ndarray, f: _EyeFrame, lid: np.ndarray, opening: float) -> np.ndarray:
    """Where the lid's edge is in the photo (``t`` on GRID): the darkest row (lashes, the lid's
    shadow) near the lid landmarks, smoothed along the eye, so the lid that closes carries them."""
    rows = np.linspace(*LASH_SEARCH, 15) * opening
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    luma = f.sample(gray, GRID[None, :], lid[None, :] + rows[:, None]).astype(np.float32)
    luma = cv2.GaussianBlur(luma, (0, 0), sigmaX=2.0, sigmaY=0.7)
    dark = rows[np.argmin(luma, axis=0)]
    # a line across the eye, not a zigzag: a quadratic in s, fitted to the middle where the lid is clear
    mid = (GRID > 0.15) & (GRID < 0.85)
    fit = np.polyval(np.polyfit(GRID[mid], dark[mid], 2), GRID)
    return lid + (np.clip(fit, *(np.array(LASH_SEARCH) * opening)) + LASH_BELOW * opening) * BUMP


def _clear_lashes(image: np.ndarray, f: _EyeFrame, top: np.ndarray, lash: np.ndarray, whole: bool = False) -> None:
    """Fill, in place, the dark lashes and liner that lie over the lid between the crease ``top`` and
    the lash line with lid skin, so a closed lid shows skin above its lash line, not lashes stretched tall."""
    v = np.linspace(0.0, 1.0 if whole else 1.0 - LASH_KEEP, 24)
    mx, my = f.point(GRID[None, :], top[None, :] + v[:, None] * (lash - top)[None, :])
    _fill_dark(image, np.concatenate([np.stack([mx[0], my[0]], 1), np.stack([mx[-1], my[-1]], 1)[::-1]]))


def _corner(f: _EyeFrame, end: int, opening: float) -> np.ndarray:
    """The patch (4, 2) about an eye's corner (``end`` 0 or 1) where the open lid's outermost lashes and liner
    fan out over the skin: left there, they stood as a dark wedge beside a shut lid."""
    out = 1.0 + CORNER_REACH if end else -CORNER_REACH
    s = np.array([2 * end - out, out, out, 2 * end - out], float)
    t = np.array([-CORNER_RISE, -0.5 * CORNER_RISE, 0.15, 0.15]) * opening
    return np.stack(f.point(s, t), 1)


def _fill_dark(image: np.ndarray, poly: np.ndarray) -> None:
    """Fill, in place, what is dark (lashes, liner) inside ``poly`` with the skin around it."""
    x0, y0, x1, y1 = _pixel_box(poly, image.shape, 3)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return
    roi = image[y0:y1, x0:x1]
    band = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(band, [np.round(poly - (x0, y0)).astype(np.int32)], 1)
    if band.sum() < 8:
        return
    luma = cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY)
    dark = ((luma < LASH_DARK * np.percentile(luma[band > 0], 80)) & (band > 0)).astype(np.uint8)
    if dark.any():
        image[y0:y1, x0:x1] = cv2.inpaint(roi, cv2.dilate(dark, np.ones((3, 3), np.uint8)), 3, cv2.INPAINT_TELEA)


def _pixel_box(points: np.ndarray, shape: tuple, pad: int) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1``: the pixels about ``points`` (N, 2), ``pad`` more each side, within an image of ``shape``."""
    x0, y0 = np.maximum(np.floor(points.min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + pad + 1, (shape[1], shape[0]))
    return int(x0), int(y0), int(x1), int(y1)


def _chains(k: np.ndarray, creases: np.ndarray, eye: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """An eye's upper lid (4, 2), corner to corner (each corner moved CORNER_EXT of the eye's width outwards), and
    its crease through the same corners."""
    lid = k[eye[:4]].astype(np.float64)
    a, b = lid[0].copy(), lid[3].copy()
    lid[0], lid[3] = a + CORNER_EXT * (a - b), b + CORNER_EXT * (b - a)
    return lid, np.stack([lid[0], creases[2 * j], creases[2 * j + 1], lid[3]])
