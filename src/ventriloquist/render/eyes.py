"""Closed eyes that read as closed: lid skin drawn over the eye, lashes along the closed line.

The mesh warp alone squashes the eyeball into a dark zigzag when the lids meet, which neither a
viewer nor a landmark detector takes for a closed eye. Where the target lids are much closer than
in the photo, the eye is covered by the person's own upper-lid skin tone (sampled once from the
photo, between the lid and the brow), shaded towards the lash line, and a lash line is drawn along
where the lids meet. Open and half-open eyes are left to the warp.
"""
from __future__ import annotations

import numpy as np

from ..face.topology import LEFT_EYE, RIGHT_EYE, lid_gap

CLOSING = (0.45, 0.85)      # lid closure (1 - opening / photo's opening) over which the painted lid fades in
COVER_UP = 1.1             # the painted lid reaches this share of the photo's eye opening above the closed line
COVER_DOWN = 0.3           # ... and this share below it
LASH_WIDTH_IOD = 1 / 40     # lash line thickness, in inter-ocular distances
LASH_TONE = 0.18            # lash colour as a share of the lid's skin colour


def _smoothstep(x: float, lo: float, hi: float) -> float:
    t = min(1.0, max(0.0, (x - lo) / (hi - lo)))
    return t * t * (3 - 2 * t)


class EyelidPainter:
    """Paints closed lids into rendered frames of one photo."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, iod: float):
        import cv2
        self.iod = iod
        self.eyes = []
        for eye in (RIGHT_EYE, LEFT_EYE):
            pts = landmarks[eye]
            opening = max(lid_gap(landmarks, eye), 0.04 * iod)
            up = np.array([0.0, -1.0]) * opening
            lower = np.vstack([pts[3:], pts[:1]])
            above = np.vstack([pts[:4] + 1.0 * up, (pts[:4] + 2.0 * up)[::-1]])     # the lid, under the brow
            below = np.vstack([lower - 0.8 * up, (lower - 1.6 * up)[::-1]])          # and the cheek under the eye
            mask = np.zeros(image.shape[:2], np.uint8)
            cv2.fillPoly(mask, [np.round(above).astype(np.int32), np.round(below).astype(np.int32)], 1)
            sel = image[mask > 0]
            skin = np.median(sel, axis=0) if len(sel) >= 4 else np.median(image.reshape(-1, 3), axis=0)
            self.eyes.append((eye, opening, skin.astype(np.float32)))

    def paint(self, frame: np.ndarray, target: np.ndarray) -> None:
        """Cover the eyes that the target closes, in place (``target``: the frame's 68 landmarks)."""
        import cv2
        for eye, opening, skin in self.eyes:
            alpha = _smoothstep(1 - lid_gap(target, eye) / opening, *CLOSING)
            if alpha <= 0:
                continue
            pts = target[eye]
            upper, lower = pts[:4], np.vstack([pts[3:], pts[:1]])          # 36-39 and 39-40-41-36
            meet = (upper[1:3] + lower[1:3][::-1]) / 2                      # where the lids meet
            a, b = upper[0], upper[3]
            s = np.linspace(0, 1, 13)[:, None]
            sag = meet.mean(0) - (a + b) / 2                                # the closed lid curves like a smile
            line = a + s * (b - a) + 4 * s * (1 - s) * sag
            up = np.array([0.0, -1.0]) * opening
            bulge = np.sqrt(4 * s * (1 - s))                               # full height but at the corners
            cover = np.vstack([line + COVER_UP * up * bulge, (line - COVER_DOWN * up * bulge)[::-1]])
            x0, y0 = np.floor(cover.min(0) - 0.1 * self.iod).astype(int)
            x1, y1 = np.ceil(cover.max(0) + 0.1 * self.iod).astype(int)
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            off = np.array([x0, y0], np.float64)
            scale = 4                                                      # sub-pixel polygons, drawn 4x
            mask = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale), np.uint8)
            cv2.fillPoly(mask, [np.round((cover - off) * scale).astype(np.int32)], 255, cv2.LINE_AA)
            mask = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
            mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, 0.012 * self.iod))[..., None]
            # the lid is a little darker where it folds into the lashes
            ys = np.arange(y0, y1, dtype=np.float32)[:, None, None]
            depth = np.clip((ys - (line[:, 1].mean() - COVER_UP * opening)) / max(COVER_UP * opening, 1), 0, 1)
            lid = skin * (1.0 - 0.12 * depth)
            lash = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale), np.uint8)
            cv2.polylines(lash, [np.round((line - off) * scale).astype(np.int32)], False, 255,
                          max(1, int(round(LASH_WIDTH_IOD * self.iod * scale))), cv2.LINE_AA)
            roi = frame[y0:y1, x0:x1].astype(np.float32)
            roi = roi * (1 - alpha * mask) + lid * (alpha * mask)
            lash_a = cv2.resize(lash, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32)[..., None] / 255
            roi = roi * (1 - 0.9 * alpha * lash_a) + (LASH_TONE * skin) * (0.9 * alpha * lash_a)
            frame[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)
