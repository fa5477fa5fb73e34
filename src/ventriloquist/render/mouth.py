"""Mouth-interior synthesis: what shows between the lips where the opening grew.

The warp stretches a one-pixel line of the photo across the new opening (the mesh "tear"
between the interior halves that ride on each lip). Here that region is painted as an open
mouth: a dark, slightly red cavity derived from the photo's own lip colour, deeper in the
middle, with a light band of upper teeth just below the upper lip (and a smaller, darker
lower band), all feathered and blended only inside the inner-lip polygon, on a small ROI.
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
REAL_TEETH_WEIGHT = 1.0                      # synthetic teeth only add to what the photo's interior shows
PHOTO_TEETH_MIN_PX = 20                      # a photo opening this large (pixels) can show teeth
PHOTO_TEETH_SHARE = 0.3                      # its brightest share is taken for teeth ...
PHOTO_TEETH_LUMA = 0.85                      # ... when that is at least this bright relative to the skin
PHOTO_TEETH_SAT = 0.2                        # ... and this pale (lips are more saturated)
LOWER_TEETH = 0.25                           # lower teeth height over the upper teeth height
LOWER_TEETH_SHADE = 0.65
LOWER_TEETH_REACH = 0.4                      # lower teeth end this far from the middle points toward the corners
TEETH_UNDER_LIP = 2.0                        # teeth bands reach this many edge sigmas under the lips
TEETH_WIDTH = 0.8                            # share of the mouth width the teeth span
DEPTH_SIGMA = 0.35                           # cavity depth shading blur, over the opening
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


def _photo_teeth(image: np.ndarray, k: np.ndarray, skin: np.ndarray, default: np.ndarray) -> np.ndarray:
    """Colour of the teeth the photo shows between its lips, so synthetic ones match; else ``default``."""
    inner = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(k[INNER_LIPS]).astype(np.int32)], 1)
    px = image[inner > 0].astype(np.float64)
    if len(px) < PHOTO_TEETH_MIN_PX:
        return default
    luma = px.mean(1)
    c = px[luma >= np.quantile(luma, 1 - PHOTO_TEETH_SHARE)].mean(0)
    saturation = (c.max() - c.min()) / max(c.max(), 1.0)
    return c if c.mean() > PHOTO_TEETH_LUMA * skin.mean() and saturation < PHOTO_TEETH_SAT else default


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
        light = np.clip(skin.mean() / SKIN_LUMA_REF, 0.55, 1.05)   # teeth as lit as the face
        teeth = light * ((1 - TEETH_SKIN_MIX) * TEETH_RGB + TEETH_SKIN_MIX * skin)
        self.teeth = np.clip(_photo_teeth(image, k, skin, teeth), 0, 255).astype(np.float32)
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
        depth = cv2.GaussianBlur(hole, (0, 0), max(self.sigma, DEPTH_SIGMA * float(gaps.max())))
        depth = (depth / max(float(depth.max()), 1e-6))[..., None]
        colour = self.rim + (self.deep - self.rim) * depth
        if teeth:
            lip_gaps = np.linalg.norm(inner[[7, 6, 5]] - inner[1:4], axis=1)
            colour = self._teeth(colour, upper - org, lower - org, lip_gaps, src_half_gap, iod, shape)
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        a = alpha[..., None]
        frame[y0:y1, x0:x1] = np.clip(roi + (colour - roi) * a + 0.5, 0, 255).astype(np.uint8)

    def _teeth(self, colour: np.ndarray, upper: np.ndarray, lower: np.ndarray, lip_gaps: np.ndarray,
               src_half_gap: np.ndarray, iod: float, shape: tuple[int, int]) -> np.ndarray:
        """Blend lens-shaped bands of teeth under the upper chain and over the lower chain.

        Teeth the photo already shows ride on the lips through the warp, so synthetic ones
        only add the height they lack; bands grow from zero height, anti-aliased, so they
        never pop in.
        """
        d = lower[1:4] - upper[1:4]
        down = d / np.maximum(np.linalg.norm(d, axis=1), 1e-6)[:, None]
        t = np.clip(np.minimum(TEETH_FRAC * lip_gaps, TEETH_MAX * iod) - REAL_TEETH_WEIGHT * src_half_gap, 0, None)
        if not t.max() > 0.25:
            return colour
        span = (1 - TEETH_WIDTH) / 2
        left = upper[0] + span * (upper[4] - upper[0])
        right = upper[4] + span * (upper[0] - upper[4])
        # bands start under the lips so the feathered cavity edge shows teeth, not a dark outline
        lip = TEETH_UNDER_LIP * self.sigma * down
        band = np.concatenate([[left], (upper[1:4] - lip), [right], (upper[1:4] + t[:, None] * down)[::-1]])
        tl = LOWER_TEETH * t
        l_left = lower[1] + LOWER_TEETH_REACH * (lower[0] - lower[1])
        l_right = lower[3] + LOWER_TEETH_REACH * (lower[4] - lower[3])
        lband = np.concatenate([[l_left], (lower[1:4] + lip), [l_right], (lower[1:4] - tl[:, None] * down)[::-1]])
        soft = max(0.5, 0.5 * self.sigma)
        m_up = cv2.GaussianBlur(_poly_mask(shape, band), (0, 0), soft)[..., None]
        m_lo = cv2.GaussianBlur(_poly_mask(shape, lband), (0, 0), soft)[..., None] if tl.max() > 0.5 else 0.0
        colour = colour + (self.teeth - colour) * m_up
        return colour + (self.teeth * LOWER_TEETH_SHADE - colour) * m_lo
