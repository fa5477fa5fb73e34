"""Mouth-interior synthesis: what shows between the lips where the opening grew.

The warp stretches a one-pixel line of the photo across the new opening (the mesh "tear"
between the interior halves that ride on each lip). Here that region is painted as an open
mouth: a dark, slightly red cavity derived from the photo's own lip colour, deeper in the
middle, with a row of upper teeth under the upper lip (shaded, arched, with a soft biting edge),
a thin, darker lower row and a hint of tongue when the mouth opens wide, all feathered and
blended only inside the inner-lip polygon, on a small ROI, in the mouth's own coordinates.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..face.topology import INNER_LIPS, JAW, NOSE, OUTER_LIPS, interocular

DEFAULT_LIP = np.array([170.0, 95.0, 95.0])   # when the lips cover too few pixels to measure
DEFAULT_SKIN = np.array([200.0, 160.0, 140.0])
CHEEKS = ((JAW[2], NOSE[4]), (JAW[14], NOSE[8]))  # skin is sampled midway between these points
CHEEK_RADIUS = 0.15                          # in inter-ocular distances
SKIN_LUMA_REF = 165.0                        # skin brightness at which teeth keep TEETH_RGB
RIM_SHADE = np.array([0.42, 0.20, 0.20])     # cavity colour near the lips, times the lip colour
DEEP_SHADE = np.array([0.13, 0.05, 0.06])    # cavity colour in the middle, times the lip colour
TEETH_RGB = np.array([240.0, 236.0, 226.0])  # teeth before matching the photo's brightness
TEETH_SKIN_MIX = 0.15                        # share of skin tint in the teeth colour
TEETH_FRAC = 0.32                            # upper teeth height over the lip opening
TEETH_MAX = 0.14                             # ... and at most this, in inter-ocular distances
TEETH_SIDE_SHADE = 0.45                      # teeth at the ends of the row are this much darker (they recede)
TEETH_LIP_SHADOW = 0.72                      # brightness just under the lip (its shadow), rising to 1 ...
TEETH_EDGE_DARK = 0.25                       # ... and falling by this much at the translucent biting edge
TOOTH_WIDTHS = (1.0, 0.8, 0.75, 0.7, 0.65)   # central incisor to premolars, relative widths
TOOTH_GAP_DARK = 0.12                        # the faint line between two teeth ...
TOOTH_GAP_PX = 0.7                           # ... about this many pixels wide
TOOTH_SCALLOP = 0.12                         # the biting edge is this much shorter at a tooth's sides
TONGUE_FRAC = 0.5                            # tongue height over the opening beyond TONGUE_FROM ...
TONGUE_FROM = 0.06                           # ... (inter-ocular distances: a nearly closed mouth hides it)
TONGUE_MAX = 0.12                            # ... and at most this
TONGUE_WIDTH = 0.7                           # share of the mouth width the tongue spans
TONGUE_RGB = np.array([0.85, 0.42, 0.45])    # tongue colour, times the lip colour
TONGUE_BACK = 0.45                           # its brightness at the back, rising to 1 at the front
REAL_TEETH_WEIGHT = 2.0                      # real teeth of this height (over the photo's half opening) count as shown
PHOTO_TEETH_MIN_PX = 20                      # a photo opening this large (pixels) can show teeth
PHOTO_TEETH_SHARE = 0.3                      # its brightest share is taken for teeth ...
PHOTO_TEETH_LUMA = 0.85                      # ... when that is at least this bright relative to the skin
PHOTO_TEETH_SAT = 0.2                        # ... and this pale (lips are more saturated)
LOWER_TEETH = 0.3                            # lower teeth height over the upper teeth height
LOWER_TEETH_SHADE = 0.62
LOWER_TEETH_WIDTH = 0.5                      # share of the mouth width the lower teeth span
TEETH_WIDTH = 0.8                            # share of the mouth width the teeth span
MOUTH_FEATHER = 0.12                         # edge softness, share of the renderer's feather
MIN_GAP = 0.6                                # pixels; thinner openings are left to the warp
EDGE_GAIN = 1.6                              # keeps the feathered cavity opaque inside the tear
DILATE = np.ones((3, 3), np.uint8)
SS = 4                                       # fixed-point bits for anti-aliased polygons


def _poly_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """Anti-aliased float mask in [0, 1] of a polygon given in ROI pixel coordinates."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(pts * (1 << SS)).astype(np.int32)], 255, cv2.LINE_AA, SS)
    return m.astype(np.float32) / 255.0


def _region_mean(image: np.ndarray, mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    sel = mask > 0
    return image[sel].reshape(-1, 3).astype(np.float64).mean(0) if sel.sum() >= 4 else fallback


def _photo_teeth(image: np.ndarray, k: np.ndarray, skin: np.ndarray) -> np.ndarray | None:
    """Colour of the teeth the photo shows between its lips, or None when it shows none."""
    inner = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(k[INNER_LIPS]).astype(np.int32)], 1)
    px = image[inner > 0].astype(np.float64)
    if len(px) < PHOTO_TEETH_MIN_PX:
        return None
    luma = px.mean(1)
    c = px[luma >= np.quantile(luma, 1 - PHOTO_TEETH_SHARE)].mean(0)
    saturation = (c.max() - c.min()) / max(c.max(), 1.0)
    return c if c.mean() > PHOTO_TEETH_LUMA * skin.mean() and saturation < PHOTO_TEETH_SAT else None


class MouthPainter:
    """Colours measured once on the source photo, and the per-frame painting.

    ``feather_px`` is the renderer's seam softness in pixels; the cavity edge uses a share
    of it (MOUTH_FEATHER), since the mouth is small next to the face.
    """

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, feather_px: float):
        k = np.asarray(landmarks, dtype=np.float64)
        h, w = image.shape[:2]
        lips = np.zeros((h, w), np.uint8)
        cv2.fillPoly(lips, [np.round(k[OUTER_LIPS]).astype(np.int32)], 1)
        cv2.fillPoly(lips, [np.round(k[INNER_LIPS]).astype(np.int32)], 0)
        lip = _region_mean(image, lips, DEFAULT_LIP)
        cheeks = np.zeros((h, w), np.uint8)
        r = max(1, int(CHEEK_RADIUS * interocular(k)))
        for a, b in CHEEKS:
            c = np.round((k[a] + k[b]) / 2).astype(int)
            cv2.circle(cheeks, (int(c[0]), int(c[1])), r, 1, -1)
        skin = _region_mean(image, cheeks, DEFAULT_SKIN)
        self.rim = (lip * RIM_SHADE).astype(np.float32)
        self.deep = (lip * DEEP_SHADE).astype(np.float32)
        self.tongue = (lip * TONGUE_RGB).astype(np.float32)
        light = np.clip(skin.mean() / SKIN_LUMA_REF, 0.55, 1.05)   # teeth as lit as the face
        real = _photo_teeth(image, k, skin)
        # teeth the photo shows ride on its upper lip through the warp; where it shows none (a dark
        # interior), synthetic teeth grow from the lip itself, over the photo's interior
        self.photo_teeth = real is not None
        teeth = real if real is not None else light * ((1 - TEETH_SKIN_MIX) * TEETH_RGB + TEETH_SKIN_MIX * skin)
        self.teeth = np.clip(teeth, 0, 255).astype(np.float32)
        self.sigma = max(0.5, MOUTH_FEATHER * feather_px)

    def paint(self, frame: np.ndarray, inner: np.ndarray, upper: np.ndarray, lower: np.ndarray,
              src_half_gap: np.ndarray, iod: float, teeth: bool) -> None:
        """Paint the opening between chains ``upper`` and ``lower`` (5, 2) of ``frame``, in place.

        ``inner`` is the destination inner-lip polygon (8, 2); the chains share their ends
        (the mouth corners); ``src_half_gap`` (3,) is how much of each lip's interior the
        photo already shows, which real teeth may fill, so synthetic teeth only add the rest.
        """
        gaps = np.linalg.norm(lower[1:4] - upper[1:4], axis=1)
        if not gaps.max() > MIN_GAP:
            return
        h, w = frame.shape[:2]
        pad = int(np.ceil(3 * self.sigma)) + 2
        lo = np.floor(inner.min(0)).astype(int) - pad
        hi = np.ceil(inner.max(0)).astype(int) + pad
        x0, y0, x1, y1 = max(lo[0], 0), max(lo[1], 0), min(hi[0], w), min(hi[1], h)
        if x1 <= x0 or y1 <= y0:
            return
        org = np.array([x0, y0], np.float64)
        shape = (y1 - y0, x1 - x0)
        tear = np.concatenate([upper, lower[::-1][1:-1]]) - org
        hole = _poly_mask(shape, tear)
        # grown by a pixel so the stretched line under the tear never shows, then softened outwards
        alpha = cv2.GaussianBlur(cv2.dilate(hole, DILATE), (0, 0), self.sigma)
        alpha = np.clip(EDGE_GAIN * alpha, 0, 1) * _poly_mask(shape, inner - org)
        m = _MouthCoords(upper - org, lower - org, shape, src_half_gap)
        colour = self._cavity(m)
        if teeth:
            colour = self._tongue(colour, m, iod)
            colour, upper_teeth = self._teeth(colour, m, iod)
            if not self.photo_teeth:
                alpha = np.maximum(alpha, upper_teeth * _poly_mask(shape, inner - org))
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        a = alpha[..., None]
        frame[y0:y1, x0:x1] = np.clip(roi + (colour - roi) * a + 0.5, 0, 255).astype(np.uint8)

    def _cavity(self, m: "_MouthCoords") -> np.ndarray:
        """Dark, reddish, deepest in the middle and back, lighter (lip-coloured) towards the lips and corners."""
        across = np.clip(np.sin(np.pi * np.clip(m.s, 0, 1)), 0, 1) ** 0.6
        between = np.clip(1 - (2 * np.clip(m.v, 0, 1) - 1) ** 2, 0, 1) ** 0.5
        depth = (across * between)[..., None]
        return (self.rim + (self.deep - self.rim) * depth).astype(np.float32)

    def _tongue(self, colour: np.ndarray, m: "_MouthCoords", iod: float) -> np.ndarray:
        """A hint of tongue rising from the floor of the mouth once it opens wide: pinker than the
        cavity, lit at its front (near the lower lip), fading into the dark towards the back."""
        full = m.gap + 2 * m.half
        height = np.minimum(TONGUE_FRAC * np.maximum(full - TONGUE_FROM * iod, 0), TONGUE_MAX * iod)
        height = height * _arch(m.s, TONGUE_WIDTH) - m.half          # the photo's own lower interior shows first
        depth = m.t_lower - m.t                                        # pixels above the lower chain
        mask = np.clip(height - depth + 0.5, 0, 1) * (height > 0.5)
        if not mask.any():
            return colour
        front = np.clip(1 - depth / np.maximum(height, 1e-6), 0, 1)[..., None]
        tongue = self.tongue * (TONGUE_BACK + (1 - TONGUE_BACK) * front)
        return colour + (tongue - colour) * cv2.GaussianBlur(mask, (0, 0), 0.6)[..., None]

    def _teeth(self, colour: np.ndarray, m: "_MouthCoords", iod: float) -> tuple[np.ndarray, np.ndarray]:
        """Upper teeth under the upper lip (and, wide open, a thin row of lower ones over the lower lip).

        Each row is an arch: tallest in the middle, receding and darker towards the corners, shaded
        under the lip, with a soft, slightly scalloped biting edge and faint gaps between the teeth.
        Teeth the photo already shows ride on the lips through the warp, so synthetic ones only add
        the height they lack; else the upper row starts at the lip, over the photo's own interior.
        Rows grow from zero height, so they never pop in. Returns the colour and the upper row's mask.
        """
        full = m.gap + 2 * m.half
        arch = _arch(m.s, TEETH_WIDTH)
        tall = np.minimum(TEETH_FRAC * full, TEETH_MAX * iod) * arch
        if self.photo_teeth:
            top, height = m.t_upper, tall * _scallop(m.s) - REAL_TEETH_WEIGHT * m.half
        else:
            top, height = m.t_upper - m.half, tall * _scallop(m.s)
        x = np.clip((m.s - 0.5) / (TEETH_WIDTH / 2), -1, 1)
        side = (1 - TEETH_SIDE_SHADE * x ** 2)[..., None]
        gaps = _tooth_gaps(m.s, m.length)
        rows = ((m.t - top, height, 1.0),
                (m.t_lower - m.t, LOWER_TEETH * tall * _arch(m.s, LOWER_TEETH_WIDTH) - m.half, LOWER_TEETH_SHADE))
        masks = []
        for depth, height, shade in rows:
            mask = np.clip(height - depth + 0.5, 0, 1) * (height > 0.25) * (depth > -0.5)
            masks.append(mask)
            if not mask.any():
                continue
            rel = np.clip(depth / np.maximum(height, 1e-6), 0, 1)
            under_lip = TEETH_LIP_SHADOW + (1 - TEETH_LIP_SHADOW) * np.clip(rel / 0.35, 0, 1)
            edge = 1 - TEETH_EDGE_DARK * np.clip((rel - 0.7) / 0.3, 0, 1)        # the biting edge is translucent
            tone = (shade * under_lip * edge * gaps)[..., None] * side
            colour = colour + (self.teeth * tone - colour) * cv2.GaussianBlur(mask, (0, 0), 0.5)[..., None]
        return colour, masks[0]


class _MouthCoords:
    """Coordinates of every ROI pixel in the opening: ``s`` from corner (0) to corner (1) and ``v``
    from the upper chain (0) to the lower one (1), with the chains' distances in pixels; the
    painting follows the mouth's own line, so a tilted head tilts its teeth."""

    def __init__(self, upper: np.ndarray, lower: np.ndarray, shape: tuple[int, int], src_half_gap: np.ndarray):
        a, b = upper[0], upper[-1]
        d = b - a
        self.length = max(float(np.linalg.norm(d)), 1e-6)
        ex = d / self.length
        ey = np.array([-ex[1], ex[0]])
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
        px, py = xx - a[0], yy - a[1]
        self.s = (px * ex[0] + py * ex[1]) / self.length
        self.t = px * ey[0] + py * ey[1]

        def chain(c: np.ndarray) -> np.ndarray:
            cs = np.maximum.accumulate(((c - a) @ ex) / self.length)
            return np.interp(self.s, cs, (c - a) @ ey)
        self.t_upper, self.t_lower = chain(upper), chain(lower)
        self.gap = np.maximum(self.t_lower - self.t_upper, 0.0)
        self.v = (self.t - self.t_upper) / np.maximum(self.gap, 1e-6)
        s_mid = np.maximum.accumulate(((upper[1:4] - a) @ ex) / self.length)
        self.half = np.interp(self.s, np.concatenate([[0.0], s_mid, [1.0]]),
                              np.concatenate([[0.0], src_half_gap, [0.0]]))


def _arch(s: np.ndarray, width: float) -> np.ndarray:
    """1 in the middle of the mouth, falling smoothly to 0 at ``width`` / 2 either side."""
    x = (s - 0.5) / (width / 2)
    return np.sqrt(np.clip(1 - x * x, 0, 1))


def _tooth_edges(length: float) -> np.ndarray:
    """Positions (0-1 across the mouth) between the teeth: incisors widest in the middle."""
    widths = np.array(TOOTH_WIDTHS) * TEETH_WIDTH / (2 * sum(TOOTH_WIDTHS))
    right = 0.5 + np.cumsum(widths)
    return np.concatenate([[0.5], right, 1 - right])


def _tooth_gaps(s: np.ndarray, length: float) -> np.ndarray:
    """Multiplier (< 1 on a faint line between neighbouring teeth), a pixel or so wide whatever the size."""
    edges = _tooth_edges(length)
    dist = np.min(np.abs(s[..., None] - edges), axis=-1) * length
    return 1 - TOOTH_GAP_DARK * np.exp(-(dist / TOOTH_GAP_PX) ** 2)


def _scallop(s: np.ndarray) -> np.ndarray:
    """The biting edge rounds off a little at every tooth's sides."""
    edges = np.sort(_tooth_edges(1.0))
    i = np.clip(np.searchsorted(edges, s) - 1, 0, len(edges) - 2)
    lo, hi = edges[i], edges[i + 1]
    u = np.clip((s - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    return 1 - TOOTH_SCALLOP * (1 - np.sin(np.pi * u))
